package loadtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// ResultSchema is the version of result.json's layout. Version 2 added the per-window
// histograms, errors, predictions and CPU that compare bootstraps over, and p95; readers
// take versions 1 and 2 (a version 1 profile compares on its window means and rates only).
const ResultSchema = 2

// minResultSchema is the oldest layout ParseResult reads.
const minResultSchema = 1

// Result is result.json: everything one run measured.
type Result struct {
	Schema      int       `json:"schema"`
	Scenario    string    `json:"scenario"`
	Description string    `json:"description,omitempty"`
	RunID       string    `json:"run_id"`
	StartedAt   time.Time `json:"started_at"`
	EndedAt     time.Time `json:"ended_at"`
	Target      string    `json:"target"`
	Protocol    string    `json:"protocol"`
	Arrival     string    `json:"arrival"`
	Mode        string    `json:"mode"`
	// Interrupted is set when the run was stopped early (Ctrl-C); Steps holds what was
	// measured until then.
	Interrupted bool    `json:"interrupted,omitempty"`
	Machine     Machine `json:"machine"`
	Sidecar     Sidecar `json:"sidecar"`
	SLO         SLOJSON `json:"slo"`
	// Generator describes the load generator's own settings and limits.
	Generator GeneratorInfo `json:"generator"`
	Steps     []StepResult  `json:"steps"`
	Search    *SearchResult `json:"search,omitempty"`
	Hooks     []HookEvent   `json:"hooks,omitempty"`
	// Interleaved names the other side of an interleaved run (Config.Interleave): the
	// two results' steps were measured over the same windows, request by request in turn.
	Interleaved *Interleaved `json:"interleaved,omitempty"`
	Notes       []string     `json:"notes,omitempty"`
	// ScenarioYAML is the scenario file as run.
	ScenarioYAML string `json:"scenario_yaml"`
}

// Interleaved describes one side of an interleaved run.
type Interleaved struct {
	Side        string `json:"side"`         // "a" (--target) or "b" (--interleave)
	OtherTarget string `json:"other_target"` // the other side's target
	OtherRunID  string `json:"other_run_id"`
}

// Sidecar describes the process under test.
type Sidecar struct {
	PID          int    `json:"pid,omitempty"` // 0 when unknown: no CPU or RSS figures
	PIDSource    string `json:"pid_source,omitempty"`
	PprofEnabled bool   `json:"pprof_enabled"`
	// CPUProfile is the file name of the CPU profile taken at the peak step, if any.
	CPUProfile     string   `json:"cpu_profile,omitempty"`
	CPUProfileStep int      `json:"cpu_profile_step,omitempty"`
	ProfileNote    string   `json:"profile_note,omitempty"`
	Models         []string `json:"models,omitempty"`
}

// SLOJSON is the SLO in result.json units.
type SLOJSON struct {
	P99Ms        float64 `json:"p99_ms"`
	MaxErrorRate float64 `json:"max_error_rate"`
}

// GeneratorInfo records how the generator ran.
type GeneratorInfo struct {
	MaxInFlight     int     `json:"max_in_flight"`
	LateThresholdMs float64 `json:"late_threshold_ms"`
	LimitedLagMs    float64 `json:"limited_lag_ms"`
	WindowS         float64 `json:"window_s"`
	WarmupS         float64 `json:"warmup_s"`
	TimeoutS        float64 `json:"timeout_s"`
}

// Latency holds percentiles in milliseconds, measured from each request's intended send
// time (less up to late_threshold_ms of send lag, the generator's timer granularity).
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P95  float64 `json:"p95_ms,omitempty"` // schema 2
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// Stats are the measurements of one step, for all workloads or one.
type Stats struct {
	OfferedRPS  float64 `json:"offered_rps"`  // the scheduled request rate
	AchievedRPS float64 `json:"achieved_rps"` // answers (any outcome) completed per second
	SentRPS     float64 `json:"sent_rps"`     // requests actually sent per second
	Requests    int64   `json:"requests"`     // scheduled in the measured part of the step
	OK          int64   `json:"ok"`
	// Errors counts failed requests by kind: "http_<status>[/<code>]", "timeout",
	// "connection", "generator_no_free_conns", "other".
	Errors    map[string]int64 `json:"errors,omitempty"`
	ErrorRate float64          `json:"error_rate"`
	Degraded  int64            `json:"degraded,omitempty"` // 2xx answers flagged degraded
	// PredictionsPerSec counts candidates in successful answers per second.
	PredictionsPerSec float64 `json:"predictions_per_sec"`
	Latency           Latency `json:"latency"`
	// LateSends counts requests sent more than LateThresholdMs after their intended time:
	// the generator fell behind (scheduler, goroutines or the in-flight cap).
	LateSends     int64   `json:"late_sends"`
	SendLagP90Ms  float64 `json:"send_lag_p90_ms,omitempty"` // schema 2
	SendLagP99Ms  float64 `json:"send_lag_p99_ms"`
	SendLagMaxMs  float64 `json:"send_lag_max_ms"`
	InFlightWaits int64   `json:"in_flight_waits"` // times the scheduler waited for max_in_flight
	// Per measured window: p99, mean latency and achieved rate. Stability is judged on
	// the mean and the rate (the mean is steady with a few dozen samples; p99 is not).
	WindowP99Ms    []float64 `json:"window_p99_ms,omitempty"`
	WindowMeanMs   []float64 `json:"window_mean_ms,omitempty"`
	WindowAchieved []float64 `json:"window_achieved_rps,omitempty"`
	// WindowLatencyUs is each measured window's latency histogram (schema 2), sparse:
	// pairs of bucket value in µs (the bucket's highest equivalent value) and count,
	// values ascending. Windows are by intended send time, like the step's percentiles.
	WindowLatencyUs [][]int64 `json:"window_latency_us,omitempty"`
	// WindowErrors and WindowPredictions count failed requests (by intended time) and
	// candidates in successful answers (by completion time) per window (schema 2).
	WindowErrors      []int64 `json:"window_errors,omitempty"`
	WindowPredictions []int64 `json:"window_predictions,omitempty"`
}

// StepResult is one step (or ramp window, or search trial).
type StepResult struct {
	Index int    `json:"index"`
	Phase string `json:"phase"` // "step", "ramp", "search", "confirm" or "concurrency"
	// Concurrency is the closed-loop level of a concurrency step (requests kept in
	// flight per workload share); its offered_rps is then what it sent.
	Concurrency int     `json:"concurrency,omitempty"`
	MeasuredS   float64 `json:"measured_s"`
	Stats
	// Stable: the last three windows' mean latency and achieved rate each lie within
	// the stability tolerance of their average (perf_analyzer's rule).
	Stable bool `json:"stable"`
	SLOMet bool `json:"slo_met"`
	// GeneratorLimited: the generator, not the sidecar, shaped this step: the p90 send
	// lag exceeded LimitedLag (10ms) without waits for max_in_flight (the generator's own
	// CPU fell behind for a tenth of the requests or more, not one stall of a busy
	// machine), or it waited for max_in_flight while that cap is below twice what
	// a sidecar meeting the SLO would hold in flight (rate × SLO p99). Waits for a larger
	// cap are the sidecar's backlog, not the generator's limit. A request the generator
	// could not send for want of a connection (generator_no_free_conns) counts as such a
	// wait; when the step is generator-limited those errors do not count against the
	// SLO. capacity ignores such steps; search does not raise the rate past one.
	GeneratorLimited bool `json:"generator_limited,omitempty"`
	// Verdict of a search trial or confirm step: "pass", "fail" or "generator-limited".
	Verdict string `json:"verdict,omitempty"`
	// DrainS is how long the search waited for the target to drain before this step.
	DrainS float64 `json:"drain_s,omitempty"`
	// Sidecar figures over the measured part; zero when the sidecar pid is unknown.
	SidecarCPUSeconds          float64 `json:"sidecar_cpu_seconds"`
	SidecarCores               float64 `json:"sidecar_cores"` // CPU-seconds per second
	CPUSecondsPer1kPredictions float64 `json:"cpu_seconds_per_1k_predictions"`
	RSSBytes                   int64   `json:"rss_bytes"` // peak sampled
	// StoreMissesPerSec is the sidecar's feature-store cache misses per second (its
	// /metrics counter), for the CPU model; zero without a store or /metrics (schema 2).
	StoreMissesPerSec float64 `json:"store_misses_per_sec,omitempty"`
	// WindowCPUSeconds is the sidecar's CPU time in each measured window (schema 2).
	WindowCPUSeconds []float64       `json:"window_cpu_s,omitempty"`
	Workloads        []WorkloadStats `json:"workloads,omitempty"` // when more than one
}

// WorkloadStats are one workload's figures within a step.
type WorkloadStats struct {
	Name  string `json:"name"`
	Model string `json:"model"`
	Stats
}

// SearchResult is the answer of a search run.
type SearchResult struct {
	// MaxRate is the headline: the highest request rate whose confirm step passed (stable,
	// SLO met, not generator-limited); 0 if none did.
	MaxRate float64 `json:"max_rate"`
	// MaxPredictionsPerSec is MaxRate times the mean candidates per request.
	MaxPredictionsPerSec float64 `json:"max_predictions_per_sec"`
	Trials               int     `json:"trials"`
	// HighestTrialRate is the highest rate a search trial passed at; the confirm steps
	// start there and step down to lower passing rates (at most three confirm steps).
	HighestTrialRate float64 `json:"highest_trial_rate,omitempty"`
	ConfirmAttempts  int     `json:"confirm_attempts,omitempty"`
	// SidecarFailedRate is the lowest rate at which a trial or confirm step failed on
	// the sidecar's account; 0 when none did (MaxRate is then a lower bound).
	SidecarFailedRate float64 `json:"sidecar_failed_rate,omitempty"`
	// GeneratorLimitRate is the lowest rate the generator could not drive; the search
	// did not raise the rate past it. 0 when the generator kept up.
	GeneratorLimitRate float64 `json:"generator_limit_rate,omitempty"`
	// BaselineMs is the idle target's latency (median of 7 lone probes) that drained
	// targets are held to before each trial.
	BaselineMs float64 `json:"baseline_ms,omitempty"`
}

// HookEvent records one hook's execution.
type HookEvent struct {
	AtS      float64 `json:"at_s"`
	Command  string  `json:"command"`
	ExitCode int     `json:"exit_code"`
	Error    string  `json:"error,omitempty"`
	Output   string  `json:"output,omitempty"`
}

// WriteResult writes r as indented JSON to dir/result.json.
func WriteResult(dir string, r *Result) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "result.json"), append(data, '\n'), 0o644)
}

// ParseResult decodes result.json; unknown fields are errors, so a file from another
// tool is refused rather than misread.
func ParseResult(data []byte) (*Result, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r Result
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("result.json: %w", err)
	}
	if r.Schema < minResultSchema || r.Schema > ResultSchema {
		return nil, fmt.Errorf("result.json: schema %d, this tool reads %d to %d", r.Schema, minResultSchema, ResultSchema)
	}
	if r.Scenario == "" {
		return nil, errors.New("result.json: no scenario")
	}
	return &r, nil
}

// LoadResult reads a profile: a run directory, or its result.json.
func LoadResult(path string) (*Result, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "result.json")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, err := ParseResult(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// FindResults returns the result.json files under root (a profile root, a scenario
// directory or a run directory), sorted.
func FindResults(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "result.json" {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("%s: no result.json found", root)
	}
	return out, err
}
