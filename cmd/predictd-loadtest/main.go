// Command predictd-loadtest drives the predictd sidecar with open-loop load from a
// scenario file and writes capacity profiles (run), plans capacity from profiles
// (capacity) and compares two profiles (compare). See docs/loadtest.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/predictd/predictd/loadtest"
)

const usage = `predictd-loadtest — open-loop load generator and capacity profiles for predictd

Usage:
  predictd-loadtest run --scenario FILE --target ADDR|unix:PATH [--out DIR] [--repeat N]
  predictd-loadtest capacity --rps N [--candidates K] --p99 DUR [--headroom PCT] PROFILE...
  predictd-loadtest compare [thresholds] A B    (each side: a run, a --repeat directory, or RUN,RUN,...)
  predictd-loadtest help

Run "predictd-loadtest COMMAND --help" for a command's flags.
`

func main() {
	args := os.Args[1:]
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var code int
	switch args[0] {
	case "run":
		code = runCmd(args[1:])
	case "capacity":
		code = capacityCmd(args[1:])
	case "compare":
		code = compareCmd(args[1:])
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "predictd-loadtest: unknown command %q\n\n%s", args[0], usage)
		code = 2
	}
	os.Exit(code)
}

func newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) (ok bool, code int) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return false, 0
		}
		return false, 2
	}
	return true, 0
}

func runCmd(args []string) int {
	fs := newFlags("run", `Usage: predictd-loadtest run --scenario FILE --target ADDR|unix:PATH [flags]

Sends open-loop load (constant, Poisson or replayed arrivals; latency counted from each
request's intended send time), or with mode concurrency a closed-loop sweep, as the
scenario describes, prints a live progress line, and writes
OUT/<scenario>/<run-id>/ with result.json, latency.svg, cpu.svg, throughput.svg,
index.html and, when the sidecar runs with --pprof, cpu.pprof from the peak step.
Ctrl-C stops cleanly and keeps the partial results. With --repeat N the scenario runs N
times back to back into OUT/<scenario>/<run-id>/rep-1 ... rep-N, one side of compare.
With --interleave ADDR (steps mode) the generator schedules at twice the scenario's
rates and sends the requests to --target (side a) and ADDR (side b) in turn, so both
sidecars get the scenario's load over the same windows (under Poisson arrivals each
side's gaps are every other arrival's, less bursty than Poisson). It takes no CPU
profile and refuses hooks and recorded-timing replays. The two sides are written to
RUN-ID/a and RUN-ID/b (with --repeat: RUN-ID/a/rep-K and RUN-ID/b/rep-K), for
compare --paired RUN-ID/a RUN-ID/b.
Exit status 0 when the run finished, 1 on errors, 3 when any step missed the scenario's
SLO (with --fail-on-slo).`)
	scenario := fs.String("scenario", "", "scenario YAML file (see loadtest/scenarios/)")
	target := fs.String("target", "127.0.0.1:8080", "sidecar address: HOST:PORT or unix:PATH")
	out := fs.String("out", "profiles", "profile root directory")
	runID := fs.String("run-id", "", "run directory name (default: start time, UTC)")
	label := fs.String("label", "", "machine label recorded in the profile, e.g. \"2-vCPU CI VM\"")
	pid := fs.Int("sidecar-pid", 0, "sidecar pid for CPU and RSS (default: the process listening on --target)")
	progress := fs.Bool("progress", true, "print a live progress line on stderr")
	failSLO := fs.Bool("fail-on-slo", false, "exit 3 when a step missed the SLO")
	repeat := fs.Int("repeat", 1, "run the scenario N times into RUN-ID/rep-1 ... rep-N (repeats for compare)")
	interleave := fs.String("interleave", "", "a second sidecar `ADDR`ess (HOST:PORT or unix:PATH) sent every other request, interleaved with --target (steps mode)")
	interleavePID := fs.Int("interleave-pid", 0, "the --interleave sidecar's pid for CPU and RSS (default: the process listening on it)")
	if ok, code := parse(fs, args); !ok {
		return code
	}
	if *scenario == "" || fs.NArg() != 0 || *repeat < 1 {
		fmt.Fprintln(os.Stderr, "predictd-loadtest run: need --scenario FILE, --repeat ≥ 1 and no other arguments")
		fs.Usage()
		return 2
	}
	data, err := os.ReadFile(*scenario)
	if err != nil {
		fmt.Fprintln(os.Stderr, "predictd-loadtest:", err)
		return 1
	}
	sc, err := loadtest.ParseScenario(data)
	if err != nil {
		fmt.Fprintf(os.Stderr, "predictd-loadtest: %s: %v\n", *scenario, err)
		return 1
	}
	cfg := loadtest.Config{
		Target: *target, OutDir: *out, RunID: *runID, Label: *label, SidecarPID: *pid,
		ScenarioYAML: string(data), Interleave: *interleave, InterleavePID: *interleavePID,
	}
	if *progress {
		cfg.Progress = os.Stderr
		if st, err := os.Stderr.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			cfg.ProgressTTY = true
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills at once
	}()
	if *repeat == 1 {
		return runOnce(ctx, sc, cfg, *failSLO)
	}
	if cfg.RunID == "" {
		cfg.RunID = time.Now().UTC().Format("20060102T150405Z")
	}
	base, worst := cfg.RunID, 0
	for k := 1; k <= *repeat && ctx.Err() == nil; k++ {
		cfg.RunID = fmt.Sprintf("%s/rep-%d", base, k)
		if cfg.Interleave != "" {
			cfg.RunID, cfg.RunIDB = fmt.Sprintf("%s/a/rep-%d", base, k), fmt.Sprintf("%s/b/rep-%d", base, k)
		}
		code := runOnce(ctx, sc, cfg, *failSLO)
		if code == 1 {
			return 1
		}
		worst = max(worst, code)
	}
	return worst
}

// runOnce runs the scenario once and prints its summary; it returns the exit status.
func runOnce(ctx context.Context, sc *loadtest.Scenario, cfg loadtest.Config, failSLO bool) int {
	res, dir, err := loadtest.Run(ctx, sc, cfg)
	if dir != "" {
		fmt.Printf("profile: %s\n", dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "predictd-loadtest:", err)
		return 1
	}
	missed := printSummary(res, "")
	if res.Interleaved != nil {
		dirB := filepath.Join(cfg.OutDir, sc.Name, res.Interleaved.OtherRunID)
		resB, err := loadtest.LoadResult(filepath.Join(dirB, "result.json"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "predictd-loadtest:", err)
			return 1
		}
		fmt.Printf("profile (b, %s): %s\n", resB.Target, dirB)
		missed += printSummary(resB, "b ")
	}
	if res.Interrupted {
		fmt.Println("interrupted: partial results written")
	}
	if failSLO && missed > 0 {
		return 3
	}
	return 0
}

// printSummary prints a run's steps and notes, each line after prefix, and returns how
// many steps missed the SLO (a search without a rate counts as one).
func printSummary(res *loadtest.Result, prefix string) int {
	missed := 0
	for _, st := range res.Steps {
		verdict := ""
		if st.Verdict != "" {
			verdict = " " + st.Verdict
			if st.DrainS > 0 {
				verdict += fmt.Sprintf(" (drained %.1fs)", st.DrainS)
			}
		}
		fmt.Printf("%sstep %2d %-7s offered %8.1f/s achieved %8.1f/s p50 %7.2fms p99 %7.2fms p99.9 %7.2fms max %7.2fms errors %5.2f%% late %d cpu/1k %.3fms slo %v%s\n",
			prefix, st.Index, st.Phase, st.OfferedRPS, st.AchievedRPS, st.Latency.P50, st.Latency.P99, st.Latency.P999, st.Latency.Max,
			100*st.ErrorRate, st.LateSends, st.CPUSecondsPer1kPredictions*1000, st.SLOMet, verdict)
		if !st.SLOMet && st.Phase != "search" && st.Phase != "confirm" {
			missed++
		}
	}
	if res.Search != nil {
		fmt.Println(searchSummary(res.Search))
		if res.Search.MaxRate == 0 {
			missed++
		}
	}
	for _, n := range res.Notes {
		fmt.Printf("%snote: %s\n", prefix, n)
	}
	if res.Sidecar.ProfileNote != "" {
		fmt.Printf("%snote: %s\n", prefix, res.Sidecar.ProfileNote)
	}
	return missed
}

func capacityCmd(args []string) int {
	fs := newFlags("capacity", `Usage: predictd-loadtest capacity --rps N [--candidates K] --p99 DUR [--headroom PCT] PROFILE...
       predictd-loadtest capacity --predictions-per-sec N --p99 DUR [--headroom PCT] PROFILE...

Answers "for N requests/s of K candidates at p99 ≤ DUR you need C cores / S sidecars at
H% headroom" from each profile (a run directory, a result.json, or a directory searched for
them), and says what the answer rests on: the step with the most predictions/s that held
the p99 bound and the profile's error bound, its request shape, and whether that step was
at saturation (a real capacity) or below it (then the per-sidecar rate is only a lower
bound and the sidecar count an upper one). Cores come from the sidecar's measured CPU per
prediction. K defaults to the profile's own candidates per request; for another K the
answer uses a CPU model (CPU per request = fixed + per-candidate cost, fitted to the steps
of the profiles given from the same machine, which must hold at least two request
shapes) and says how good the fit is, or, without one, holds CPU per prediction constant
and says so.`)
	rps := fs.Float64("rps", 0, "required requests per second")
	cands := fs.Float64("candidates", 0, "candidates per request (default: the profile's)")
	pps := fs.Float64("predictions-per-sec", 0, "required predictions (scored candidates) per second, instead of --rps")
	rate := fs.Float64("rate", 0, "removed: it meant predictions/s; use --rps (requests/s) or --predictions-per-sec")
	p99s := fs.String("p99", "", "p99 latency bound: a duration (20ms, 0.5s) or a number of milliseconds")
	headroom := fs.Float64("headroom", 30, "spare capacity to keep, percent")
	if ok, code := parse(fs, args); !ok {
		return code
	}
	if *rate != 0 {
		fmt.Fprintln(os.Stderr, "predictd-loadtest capacity: --rate is ambiguous; say --rps N (requests/s, with --candidates K) or --predictions-per-sec N")
		return 2
	}
	p99, err := parseMs(*p99s)
	if err != nil {
		fmt.Fprintln(os.Stderr, "predictd-loadtest capacity: --p99:", err)
		return 2
	}
	if (*rps > 0) == (*pps > 0) || p99 <= 0 || fs.NArg() == 0 || *cands < 0 || (*cands > 0 && *rps == 0) {
		fmt.Fprintln(os.Stderr, "predictd-loadtest capacity: need one of --rps or --predictions-per-sec (--candidates goes with --rps), --p99 and at least one profile")
		fs.Usage()
		return 2
	}
	q := loadtest.CapacityQuery{RequestsPerSec: *rps, Candidates: *cands, PredictionsPerSec: *pps, P99Ms: p99, Headroom: *headroom / 100}
	failed := 0
	var results []*loadtest.Result
	for _, root := range fs.Args() {
		paths, err := loadtest.FindResults(root)
		if err != nil {
			fmt.Fprintln(os.Stderr, "predictd-loadtest:", err)
			failed++
			continue
		}
		for _, p := range paths {
			r, err := loadtest.LoadResult(p)
			if err != nil {
				fmt.Fprintln(os.Stderr, "predictd-loadtest:", err)
				failed++
				continue
			}
			results = append(results, r)
		}
	}
	q.FitWith = results
	for _, r := range results {
		a, err := loadtest.Capacity(r, q)
		if err != nil {
			fmt.Fprintln(os.Stderr, "predictd-loadtest:", err)
			failed++
			continue
		}
		fmt.Println(a.String(q))
	}
	if failed > 0 {
		return 1
	}
	return 0
}

func compareCmd(args []string) int {
	fs := newFlags("compare", `Usage: predictd-loadtest compare [flags] A B

Compares B (after) with A (before), step by step matched by phase and offered rate. Each
side is one or more runs of the scenario: a run directory or result.json, a directory
searched for result.json (such as the RUN-ID directory of run --repeat), or a
comma-separated list of those. Every figure gets a bootstrap confidence interval per side
(resampling runs, then each run's measured windows); it is a regression only when its
change passes the threshold below AND the intervals separate. Figures from too few
samples (p99 from fewer than 1,000 requests per side, fewer than 3 windows, fewer than
--min-runs runs per side) are shown as not judged. With --paired, the i-th run of A (by
start time) is paired with the i-th run of B: run the two builds interleaved (run
--interleave, then compare --paired RUN-ID/a RUN-ID/b) or alternately (A, B, A, B, ...),
and each figure's change is judged from the pairs' own changes, which share the
machine's state of the moment: a regression is a change past the threshold whose
Student's t interval over the pairs (a paired t test) excludes zero; a pair counts for a
figure only when each of its runs alone has the samples the figure needs. Exits 1 on any
regression (so it can gate CI), 0 otherwise, 2 on usage errors.`)
	lat := fs.Float64("latency", 10, "p50/p99 increase that is a regression, percent")
	thr := fs.Float64("throughput", 5, "achieved-rate decrease that is a regression, percent")
	cpu := fs.Float64("cpu", 10, "CPU-per-prediction increase that is a regression, percent")
	errs := fs.Float64("errors", 0.5, "error-rate increase that is a regression, percentage points")
	conf := fs.Float64("confidence", 95, "confidence of each side's interval, percent")
	minRuns := fs.Int("min-runs", 2, "fewest runs per side a step is judged from (1 trusts one run's windows to show all the noise); with --paired, the fewest pairs")
	paired := fs.Bool("paired", false, "pair the i-th run of A with the i-th of B by start time and judge each change from the pairs (runs of A and B interleaved or alternated)")
	if ok, code := parse(fs, args); !ok {
		return code
	}
	if *minRuns < 1 {
		fmt.Fprintln(os.Stderr, "predictd-loadtest compare: --min-runs must be at least 1")
		return 2
	}
	if *conf <= 0 || *conf >= 100 {
		fmt.Fprintln(os.Stderr, "predictd-loadtest compare: --confidence must lie between 0 and 100")
		return 2
	}
	if fs.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "predictd-loadtest compare: need two profiles, A (before) and B (after)")
		fs.Usage()
		return 2
	}
	a, err := loadSide(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "predictd-loadtest:", err)
		return 2
	}
	b, err := loadSide(fs.Arg(1))
	if err != nil {
		fmt.Fprintln(os.Stderr, "predictd-loadtest:", err)
		return 2
	}
	if *paired {
		if *minRuns < 2 {
			fmt.Fprintln(os.Stderr, "predictd-loadtest compare: --paired needs --min-runs of at least 2 (one pair has no spread to judge)")
			return 2
		}
		fmt.Printf("A: %d run(s), B: %d run(s), paired by start time; %.0f%% intervals: each side's by bootstrap, the change's by t over the pairs\n", len(a), len(b), *conf)
		if len(a) == len(b) && !loadtest.PairsAlternate(a, b) {
			fmt.Println("warning: the runs of A and B did not alternate in time; pairs of runs far apart carry the machine's drift into their change")
		}
	} else {
		fmt.Printf("A: %d run(s), B: %d run(s); %.0f%% bootstrap intervals\n", len(a), len(b), *conf)
	}
	findings, err := loadtest.Compare(a, b, loadtest.CompareThresholds{
		Latency: *lat / 100, Throughput: *thr / 100, CPU: *cpu / 100, ErrorRate: *errs / 100,
		Confidence: *conf / 100, MinRuns: *minRuns, Paired: *paired,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "predictd-loadtest:", err)
		return 2
	}
	fmt.Print(loadtest.FormatFindings(findings))
	n, noise, unjudged := 0, 0, 0
	for _, f := range findings {
		switch {
		case f.Regression:
			n++
		case !f.Judged:
			unjudged++
		case f.Beyond:
			noise++
		}
	}
	tail := fmt.Sprintf("%d past the threshold within the noise, %d not judged", noise, unjudged)
	if n > 0 {
		fmt.Printf("%d regression(s); %s\n", n, tail)
		return 1
	}
	fmt.Printf("no regressions; %s\n", tail)
	return 0
}

// loadSide reads one side of compare: comma-separated paths, each a run directory, a
// result.json, or a directory searched for result.json files.
func loadSide(arg string) ([]*loadtest.Result, error) {
	var out []*loadtest.Result
	for _, root := range strings.Split(arg, ",") {
		if root == "" {
			continue
		}
		paths, err := loadtest.FindResults(root)
		if err != nil {
			return nil, err
		}
		for _, p := range paths {
			r, err := loadtest.LoadResult(p)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q: no profiles", arg)
	}
	return out, nil
}

// searchSummary is the search's headline and what bounds it.
func searchSummary(s *loadtest.SearchResult) string {
	if s.MaxRate == 0 {
		line := fmt.Sprintf("search: no rate confirmed: %d confirm step(s) missed the SLO", s.ConfirmAttempts)
		if s.HighestTrialRate == 0 {
			line = "search: no trial held the SLO, not even the start rate"
		}
		if s.GeneratorLimitRate > 0 {
			line += fmt.Sprintf("; the generator could not drive %.1f requests/s", s.GeneratorLimitRate)
		}
		return line
	}
	line := fmt.Sprintf("search: highest rate whose confirm step held the SLO: %.1f requests/s (%.0f predictions/s)", s.MaxRate, s.MaxPredictionsPerSec)
	if s.HighestTrialRate > s.MaxRate {
		line += fmt.Sprintf("; a trial passed at %.1f/s but its confirm step did not", s.HighestTrialRate)
	}
	switch {
	case s.SidecarFailedRate > 0:
		line += fmt.Sprintf("; the sidecar failed at %.1f/s", s.SidecarFailedRate)
	case s.GeneratorLimitRate > 0:
		line += fmt.Sprintf("; a lower bound: the generator could not drive %.1f/s before the sidecar failed", s.GeneratorLimitRate)
	default:
		line += "; a lower bound: no trial up to search.max failed"
	}
	return line
}

// parseMs reads a latency bound: a Go duration ("20ms", "0.5s") or a bare number of
// milliseconds ("20").
func parseMs(s string) (float64, error) {
	if s == "" {
		return 0, errors.New("missing")
	}
	if ms, err := strconv.ParseFloat(s, 64); err == nil {
		return ms, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q: want a duration such as 20ms or a number of milliseconds", s)
	}
	return float64(d) / float64(time.Millisecond), nil
}
