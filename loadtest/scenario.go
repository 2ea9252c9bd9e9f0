package loadtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written in YAML as a Go duration string ("500ms", "10s").
// Bare numbers are refused: "10" could mean seconds or nanoseconds.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as \"10s\"", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: bad duration %q: want a Go duration such as \"500ms\" or \"10s\"", n.Line, n.Value)
	}
	if v < 0 {
		return fmt.Errorf("line %d: negative duration %q", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Scenario is one load-test scenario, read from YAML (see docs/loadtest.md and
// loadtest/scenarios/). Unknown keys are errors. Defaults are applied by ParseScenario.
type Scenario struct {
	Name        string   `yaml:"name"`        // required; names the profile directory
	Description string   `yaml:"description"` // free text for the report
	Protocol    string   `yaml:"protocol"`    // "protobuf" (default) or "json"
	Arrival     string   `yaml:"arrival"`     // "poisson" (default) or "constant"
	Mode        string   `yaml:"mode"`        // "steps" (default), "ramp", "search" or "concurrency"
	Warmup      Duration `yaml:"warmup"`      // excluded from results at the start of each step; default 1s
	Window      Duration `yaml:"window"`      // measurement window for stability and CPU sampling; default 1s
	Timeout     Duration `yaml:"timeout"`     // per request; a request still unanswered counts as "timeout"; default 5s
	// MaxInFlight caps concurrent requests (and connections); default 4096. When it is
	// reached the scheduler waits and every later send is counted as late.
	MaxInFlight int `yaml:"max_in_flight"`
	// ProfileSeconds is the length of the sidecar CPU profile taken during the peak step;
	// default: the peak step's measured time, at most 30.
	ProfileSeconds int `yaml:"profile_seconds"`

	Steps  []Step  `yaml:"steps"`  // mode steps: run each rate in turn
	Ramp   *Ramp   `yaml:"ramp"`   // mode ramp: a linear rate ramp; each window is reported as a step
	Search *Search `yaml:"search"` // mode search: find the highest rate that holds the SLO
	// Concurrency is mode concurrency: a closed-loop sweep over numbers of requests in
	// flight, like perf_analyzer's concurrency mode.
	Concurrency *ConcurrencySweep `yaml:"concurrency"`
	SLO         SLO               `yaml:"slo"`

	Workloads []Workload `yaml:"workloads"` // at least one
	Hooks     []Hook     `yaml:"hooks"`     // commands run at fixed offsets from the start
}

// Step is one rate held for a duration. Rate is the total over the workloads that take a
// share; workloads with a fixed_rate add to it.
type Step struct {
	Rate     float64  `yaml:"rate"`     // requests/s
	Duration Duration `yaml:"duration"` // including warmup
}

// ConcurrencySweep runs each level in turn for Duration (including warm-up): level
// workers per workload share, each sending its next request as soon as the last one
// answered. A closed loop measures latency from the actual send and so has coordinated
// omission by design: it answers "how fast at N in flight", not "how slow at rate R".
type ConcurrencySweep struct {
	Levels   []int    `yaml:"levels"`
	Duration Duration `yaml:"duration"`
}

// Ramp raises the rate linearly from From to To over Duration (after Warmup at From).
type Ramp struct {
	From     float64  `yaml:"from"`
	To       float64  `yaml:"to"`
	Duration Duration `yaml:"duration"`
}

// Search finds the highest rate that holds the SLO: it multiplies the rate by Factor from
// Start until a trial fails or the generator cannot drive the rate, then bisects
// Bisections times. A trial runs windows until the last three are stable (mean latency
// and achieved rate within Stability of their average, the rule of Triton's
// perf_analyzer, and not climbing window after window) or MaxWindows pass (then it fails
// as unstable). A trial passes when it is stable and its p99 and error rate meet the SLO.
// Every trial starts after the target drained (nothing in flight, probes back at the
// idle latency). Confirm steps then run from the highest passing rate down; the first
// that passes is the answer.
type Search struct {
	Start      float64 `yaml:"start"`       // first rate tried; required
	Max        float64 `yaml:"max"`         // highest rate tried; required
	Factor     float64 `yaml:"factor"`      // default 2
	Bisections int     `yaml:"bisections"`  // default 4
	MaxWindows int     `yaml:"max_windows"` // default 10
	Stability  float64 `yaml:"stability"`   // default 0.10
}

// SLO is the service-level objective steps are judged by.
type SLO struct {
	P99          Duration `yaml:"p99"`            // default 100ms
	MaxErrorRate float64  `yaml:"max_error_rate"` // fraction; default 0.01
}

// Workload is one stream of requests: one model, one request shape.
type Workload struct {
	Name string `yaml:"name"` // default "w<index>"
	// Model is the model name; "auto" takes the first model listed by GET /v1/models.
	Model   string `yaml:"model"`
	Version string `yaml:"version"` // "" is the highest loaded version
	Output  string `yaml:"output"`  // "", "transformed" or "raw"
	// Share is this workload's fraction of each step's rate; default: an equal share among
	// workloads without a FixedRate.
	Share float64 `yaml:"share"`
	// FixedRate sends at this rate in every step, independent of the step rate (the quiet
	// model of noisy-neighbor).
	FixedRate  float64  `yaml:"fixed_rate"`
	Candidates Count    `yaml:"candidates"` // per request; default 1
	Dense      bool     `yaml:"dense"`      // send "rows" in model order instead of named candidates
	Features   Features `yaml:"features"`
	// Keys are per-candidate entity keys for feature-store lookups.
	Keys []KeySpec `yaml:"keys"`
	// ContextKeys are request-level entity keys (e.g. user_id).
	ContextKeys []KeySpec `yaml:"context_keys"`
	// Pool is how many distinct request bodies are generated ahead of the run and cycled;
	// default 64. Generating ahead keeps the generator's CPU off the measured path.
	Pool int   `yaml:"pool"`
	Seed int64 `yaml:"seed"` // random seed; default 1
	// Replay sends recorded requests (a bodies file or prediction logs) instead of
	// generated ones; candidates, features, keys and pool then do not apply.
	Replay *Replay `yaml:"replay"`
}

// Features says which features come in the request.
type Features struct {
	Names []string `yaml:"names"` // per-candidate features, in model order for dense
	// Count generates names Prefix+"0".."Count-1" when Names is empty.
	Count  int    `yaml:"count"`
	Prefix string `yaml:"prefix"` // default "f"
	// FromModel asks the sidecar (GET /v1/models/{model}) for the model's request features.
	FromModel bool     `yaml:"from_model"`
	Context   []string `yaml:"context"` // request-level features, same value for every candidate
	Missing   float64  `yaml:"missing"` // fraction of values sent as missing (null)
	// Vectors are per-candidate vector features sent whole (a JSON array, protobuf
	// Feature.values), beside the named scalars.
	Vectors []VectorSpec `yaml:"vectors"`
}

// VectorSpec is a vector feature sent whole: Dim values per candidate.
type VectorSpec struct {
	Name string `yaml:"name"`
	Dim  int    `yaml:"dim"`
}

// KeySpec draws entity keys: Name is the key name ("store_id"), values are
// Prefix+integer in [0, Cardinality), drawn uniformly or Zipf-distributed (rank 0 most
// frequent), which sets the feature-store cache hit rate.
type KeySpec struct {
	Name        string  `yaml:"name"`
	Cardinality int     `yaml:"cardinality"` // required, >= 1
	Dist        string  `yaml:"dist"`        // "uniform" (default) or "zipf"
	ZipfS       float64 `yaml:"zipf_s"`      // Zipf exponent, > 1; default 1.1
	Prefix      string  `yaml:"prefix"`      // prepended to the number; default ""
}

// Hook runs a shell command (sh -c) at a fixed offset from the run's start, e.g. to slow
// or stop Redis mid-run. The environment gets LOADTEST_TARGET and LOADTEST_OUT.
type Hook struct {
	At  Duration `yaml:"at"`
	Run string   `yaml:"run"`
}

// Count is a per-request candidate count: a plain integer (fixed) or a mapping
// {dist: uniform, min: A, max: B} (inclusive).
type Count struct {
	Dist string // "fixed" or "uniform"
	N    int    // fixed count
	Min  int
	Max  int
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (c *Count) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		var v int
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("line %d: candidates: want an integer or {dist: uniform, min: A, max: B}", n.Line)
		}
		*c = Count{Dist: "fixed", N: v}
		return nil
	case yaml.MappingNode:
		var out Count
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			var err error
			switch k.Value {
			case "dist":
				err = v.Decode(&out.Dist)
			case "min":
				err = v.Decode(&out.Min)
			case "max":
				err = v.Decode(&out.Max)
			case "n":
				err = v.Decode(&out.N)
			default:
				return fmt.Errorf("line %d: candidates: unknown key %q (want dist, min, max, n)", k.Line, k.Value)
			}
			if err != nil {
				return fmt.Errorf("line %d: candidates.%s: %v", k.Line, k.Value, err)
			}
		}
		*c = out
		return nil
	}
	return fmt.Errorf("line %d: candidates: want an integer or {dist: uniform, min: A, max: B}", n.Line)
}

// MarshalYAML implements yaml.Marshaler.
func (c Count) MarshalYAML() (any, error) {
	if c.Dist == "fixed" || c.Dist == "" {
		return c.N, nil
	}
	return map[string]any{"dist": c.Dist, "min": c.Min, "max": c.Max}, nil
}

// Mean returns the expected count.
func (c Count) Mean() float64 {
	if c.Dist == "uniform" {
		return float64(c.Min+c.Max) / 2
	}
	return float64(c.N)
}

// Limits that keep a typo from exhausting memory.
const (
	maxCandidates = 1_000_000
	maxFeatures   = 100_000
	maxPool       = 100_000
	// maxPoolValues bounds the feature values generated ahead of a run (~12 bytes each
	// in JSON): 2e8 is a few GiB at worst.
	maxPoolValues = 200_000_000
)

// LoadScenario reads and parses a scenario file.
func LoadScenario(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sc, err := ParseScenario(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sc, nil
}

// ParseScenario parses scenario YAML, applies defaults and validates it. Every problem is
// an error that names the key.
func ParseScenario(data []byte) (*Scenario, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var sc Scenario
	if err := dec.Decode(&sc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty scenario")
		}
		return nil, err
	}
	if err := sc.normalize(); err != nil {
		return nil, err
	}
	return &sc, nil
}

func (sc *Scenario) normalize() error {
	if sc.Name == "" {
		return errors.New("name: required")
	}
	if strings.ContainsAny(sc.Name, "/\\") || sc.Name == "." || sc.Name == ".." {
		return fmt.Errorf("name %q: must not contain path separators", sc.Name)
	}
	switch sc.Protocol {
	case "":
		sc.Protocol = "protobuf"
	case "protobuf", "json":
	default:
		return fmt.Errorf("protocol %q: want protobuf or json", sc.Protocol)
	}
	switch sc.Arrival {
	case "":
		sc.Arrival = "poisson"
	case "poisson", "constant":
	default:
		return fmt.Errorf("arrival %q: want poisson or constant", sc.Arrival)
	}
	if sc.Warmup == 0 {
		sc.Warmup = Duration(time.Second)
	}
	if sc.Window == 0 {
		sc.Window = Duration(time.Second)
	}
	if sc.Window.D() < 10*time.Millisecond {
		return fmt.Errorf("window %v: must be at least 10ms", sc.Window.D())
	}
	if sc.Timeout == 0 {
		sc.Timeout = Duration(5 * time.Second)
	}
	if sc.MaxInFlight == 0 {
		sc.MaxInFlight = 4096
	}
	if sc.MaxInFlight < 1 || sc.MaxInFlight > 1_000_000 {
		return fmt.Errorf("max_in_flight %d: want 1..1000000", sc.MaxInFlight)
	}
	if sc.ProfileSeconds < 0 || sc.ProfileSeconds > 300 {
		return fmt.Errorf("profile_seconds %d: want 0..300", sc.ProfileSeconds)
	}
	if sc.SLO.P99 == 0 {
		sc.SLO.P99 = Duration(100 * time.Millisecond)
	}
	if sc.SLO.MaxErrorRate == 0 {
		sc.SLO.MaxErrorRate = 0.01
	}
	if sc.SLO.MaxErrorRate < 0 || sc.SLO.MaxErrorRate > 1 {
		return fmt.Errorf("slo.max_error_rate %v: want a fraction 0..1", sc.SLO.MaxErrorRate)
	}
	if sc.Mode == "" {
		sc.Mode = "steps"
	}
	rateOK := func(key string, r float64) error {
		if !(r >= 0 && r <= 10_000_000) { // also rejects NaN
			return fmt.Errorf("%s %v: want 0..10000000 requests/s", key, r)
		}
		return nil
	}
	switch sc.Mode {
	case "steps":
		if len(sc.Steps) == 0 {
			return errors.New("steps: mode steps needs at least one step")
		}
		for i, st := range sc.Steps {
			if err := rateOK(fmt.Sprintf("steps[%d].rate", i), st.Rate); err != nil {
				return err
			}
			if st.Duration.D() <= sc.Warmup.D() {
				return fmt.Errorf("steps[%d].duration %v: must be longer than warmup %v", i, st.Duration.D(), sc.Warmup.D())
			}
		}
	case "ramp":
		if sc.Ramp == nil {
			return errors.New("ramp: mode ramp needs ramp: {from, to, duration}")
		}
		if err := rateOK("ramp.from", sc.Ramp.From); err != nil {
			return err
		}
		if err := rateOK("ramp.to", sc.Ramp.To); err != nil {
			return err
		}
		if sc.Ramp.Duration.D() < sc.Window.D() {
			return fmt.Errorf("ramp.duration %v: must be at least one window (%v)", sc.Ramp.Duration.D(), sc.Window.D())
		}
	case "search":
		s := sc.Search
		if s == nil {
			return errors.New("search: mode search needs search: {start, max}")
		}
		if err := rateOK("search.start", s.Start); err != nil {
			return err
		}
		if err := rateOK("search.max", s.Max); err != nil {
			return err
		}
		if s.Start <= 0 || s.Max < s.Start {
			return fmt.Errorf("search: want 0 < start <= max (start %v, max %v)", s.Start, s.Max)
		}
		if s.Factor == 0 {
			s.Factor = 2
		}
		if !(s.Factor > 1 && s.Factor <= 100) {
			return fmt.Errorf("search.factor %v: want > 1", s.Factor)
		}
		if s.Bisections == 0 {
			s.Bisections = 4
		}
		if s.Bisections < 0 || s.Bisections > 20 {
			return fmt.Errorf("search.bisections %d: want 0..20", s.Bisections)
		}
		if s.MaxWindows == 0 {
			s.MaxWindows = 10
		}
		if s.MaxWindows < 3 || s.MaxWindows > 1000 {
			return fmt.Errorf("search.max_windows %d: want 3..1000 (stability needs three windows)", s.MaxWindows)
		}
		if s.Stability == 0 {
			s.Stability = 0.10
		}
		if !(s.Stability > 0 && s.Stability < 1) {
			return fmt.Errorf("search.stability %v: want a fraction 0..1", s.Stability)
		}
	case "concurrency":
		c := sc.Concurrency
		if c == nil || len(c.Levels) == 0 {
			return errors.New("concurrency: mode concurrency needs concurrency: {levels: [1, 2, 4], duration}")
		}
		for i, n := range c.Levels {
			if n < 1 || n > sc.MaxInFlight {
				return fmt.Errorf("concurrency.levels[%d] %d: want 1..max_in_flight (%d)", i, n, sc.MaxInFlight)
			}
		}
		if c.Duration.D() <= sc.Warmup.D() {
			return fmt.Errorf("concurrency.duration %v: must be longer than warmup %v", c.Duration.D(), sc.Warmup.D())
		}
	default:
		return fmt.Errorf("mode %q: want steps, ramp, search or concurrency", sc.Mode)
	}
	if len(sc.Workloads) == 0 {
		return errors.New("workloads: need at least one workload")
	}
	names := map[string]bool{}
	shareSum := 0.0
	for i := range sc.Workloads {
		w := &sc.Workloads[i]
		if err := w.normalize(i); err != nil {
			return fmt.Errorf("workloads[%d]: %w", i, err)
		}
		if w.Replay != nil {
			if err := w.Replay.normalize(sc.Protocol); err != nil {
				return fmt.Errorf("workloads[%d]: %w", i, err)
			}
		}
		if names[w.Name] {
			return fmt.Errorf("workloads[%d]: duplicate name %q", i, w.Name)
		}
		names[w.Name] = true
		if err := rateOK(fmt.Sprintf("workloads[%d].fixed_rate", i), w.FixedRate); err != nil {
			return err
		}
		if w.FixedRate == 0 {
			shareSum += w.Share
		} else if w.Share != 0 {
			return fmt.Errorf("workloads[%d]: set share or fixed_rate, not both", i)
		}
	}
	// Workloads without an explicit share split what is left equally.
	unset := 0
	for _, w := range sc.Workloads {
		if w.FixedRate == 0 && w.Share == 0 {
			unset++
		}
	}
	if shareSum > 1+1e-9 {
		return fmt.Errorf("workloads: shares sum to %v, more than 1", shareSum)
	}
	for i := range sc.Workloads {
		w := &sc.Workloads[i]
		if w.FixedRate == 0 && w.Share == 0 {
			w.Share = (1 - shareSum) / float64(unset)
		}
	}
	for i, h := range sc.Hooks {
		if strings.TrimSpace(h.Run) == "" {
			return fmt.Errorf("hooks[%d].run: required", i)
		}
	}
	return nil
}

func (w *Workload) normalize(i int) error {
	if w.Name == "" {
		w.Name = fmt.Sprintf("w%d", i)
	}
	if w.Model == "" {
		return errors.New("model: required (a model name, or auto for the first model the sidecar lists)")
	}
	switch w.Output {
	case "", "transformed", "raw":
	default:
		return fmt.Errorf("output %q: want transformed or raw", w.Output)
	}
	if !(w.Share >= 0 && w.Share <= 1) {
		return fmt.Errorf("share %v: want a fraction 0..1", w.Share)
	}
	c := &w.Candidates
	switch c.Dist {
	case "":
		*c = Count{Dist: "fixed", N: 1}
	case "fixed":
		if c.N < 1 || c.N > maxCandidates {
			return fmt.Errorf("candidates %d: want 1..%d", c.N, maxCandidates)
		}
	case "uniform":
		if c.Min < 1 || c.Max < c.Min || c.Max > maxCandidates {
			return fmt.Errorf("candidates: want 1 <= min <= max <= %d (min %d, max %d)", maxCandidates, c.Min, c.Max)
		}
	default:
		return fmt.Errorf("candidates.dist %q: want fixed or uniform", c.Dist)
	}
	f := &w.Features
	if f.Prefix == "" {
		f.Prefix = "f"
	}
	if f.Count < 0 || f.Count > maxFeatures || len(f.Names) > maxFeatures {
		return fmt.Errorf("features: at most %d", maxFeatures)
	}
	if len(f.Names) > 0 && f.Count > 0 {
		return errors.New("features: set names or count, not both")
	}
	if f.FromModel && (len(f.Names) > 0 || f.Count > 0) {
		return errors.New("features: from_model excludes names and count")
	}
	if !(f.Missing >= 0 && f.Missing <= 1) {
		return fmt.Errorf("features.missing %v: want a fraction 0..1", f.Missing)
	}
	vecValues := 0
	for j, v := range f.Vectors {
		if v.Name == "" || v.Dim < 1 || v.Dim > maxFeatures {
			return fmt.Errorf("features.vectors[%d]: want a name and 1 <= dim <= %d", j, maxFeatures)
		}
		vecValues += v.Dim
	}
	if vecValues > maxFeatures {
		return fmt.Errorf("features.vectors: at most %d values in all", maxFeatures)
	}
	if w.Dense && len(f.Vectors) > 0 {
		return errors.New("dense rows carry no vectors; drop features.vectors or dense")
	}
	if w.Dense && len(w.Keys) > 0 {
		return errors.New("dense rows carry no per-candidate keys; drop keys or dense")
	}
	for j := range w.Keys {
		if err := w.Keys[j].normalize(); err != nil {
			return fmt.Errorf("keys[%d]: %w", j, err)
		}
	}
	for j := range w.ContextKeys {
		if err := w.ContextKeys[j].normalize(); err != nil {
			return fmt.Errorf("context_keys[%d]: %w", j, err)
		}
	}
	if w.Pool == 0 {
		w.Pool = 64
	}
	if w.Pool < 1 || w.Pool > maxPool {
		return fmt.Errorf("pool %d: want 1..%d", w.Pool, maxPool)
	}
	if w.Seed == 0 {
		w.Seed = 1
	}
	maxC := c.N
	if c.Dist == "uniform" {
		maxC = c.Max
	}
	if v := float64(w.Pool) * float64(maxC) * float64(max(1, f.Count, len(f.Names))+vecValues); v > maxPoolValues {
		return fmt.Errorf("pool × candidates × features = %.3g values to pregenerate, more than %g; lower pool", v, float64(maxPoolValues))
	}
	return nil
}

func (k *KeySpec) normalize() error {
	if k.Name == "" {
		return errors.New("name: required")
	}
	if k.Cardinality < 1 {
		return fmt.Errorf("cardinality %d: want >= 1", k.Cardinality)
	}
	switch k.Dist {
	case "":
		k.Dist = "uniform"
	case "uniform":
	case "zipf":
		if k.ZipfS == 0 {
			k.ZipfS = 1.1
		}
		if !(k.ZipfS > 1 && k.ZipfS < 100) {
			return fmt.Errorf("zipf_s %v: want > 1", k.ZipfS)
		}
	default:
		return fmt.Errorf("dist %q: want uniform or zipf", k.Dist)
	}
	return nil
}

// PeakRate returns the highest total offered rate the scenario schedules (requests/s).
func (sc *Scenario) PeakRate() float64 {
	var peak float64
	switch sc.Mode {
	case "steps":
		for _, st := range sc.Steps {
			peak = max(peak, st.Rate)
		}
	case "ramp":
		peak = max(sc.Ramp.From, sc.Ramp.To)
	case "search":
		peak = sc.Search.Max
	}
	return peak + sc.fixedRate()
}

func (sc *Scenario) fixedRate() float64 {
	var r float64
	for _, w := range sc.Workloads {
		r += w.FixedRate
	}
	return r
}
