package loadtest

// Hooks: commands the scenario runs against the target while the load runs.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// startHooks runs the scenario's hooks at their offsets; the channel yields their events
// once all have run. Hooks not yet due when the run ends (runDone) are skipped.
func (r *runner) startHooks(ctx context.Context, runDone <-chan struct{}) <-chan []HookEvent {
	out := make(chan []HookEvent, 1)
	if len(r.sc.Hooks) == 0 {
		out <- nil
		return out
	}
	hooks := append([]Hook(nil), r.sc.Hooks...)
	sort.SliceStable(hooks, func(i, j int) bool { return hooks[i].At < hooks[j].At })
	end := r.start.Add(r.plannedDuration())
	go func() {
		var evs []HookEvent
		var log strings.Builder
		for _, h := range hooks {
			at := r.start.Add(h.At.D())
			if at.After(end) {
				evs = append(evs, HookEvent{AtS: h.At.D().Seconds(), Command: h.Run, ExitCode: -1, Error: "skipped: after the planned end of the run"})
				continue
			}
			select {
			case <-time.After(time.Until(at)):
			case <-ctx.Done():
				evs = append(evs, HookEvent{AtS: h.At.D().Seconds(), Command: h.Run, ExitCode: -1, Error: "skipped: run interrupted"})
				continue
			case <-runDone:
				evs = append(evs, HookEvent{AtS: h.At.D().Seconds(), Command: h.Run, ExitCode: -1, Error: "skipped: the run ended first"})
				continue
			}
			ev := runHook(ctx, h, r.cfg.Target, r.dir)
			ev.AtS = time.Since(r.start).Seconds()
			fmt.Fprintf(&log, "[%.2fs] $ %s\n%s(exit %d)\n", ev.AtS, ev.Command, ev.Output, ev.ExitCode)
			evs = append(evs, ev)
		}
		_ = os.WriteFile(filepath.Join(r.dir, "hooks.log"), []byte(log.String()), 0o644)
		out <- evs
	}()
	return out
}

// plannedDuration is the run's scheduled length (search runs have no fixed length: their
// upper bound is used).
func (r *runner) plannedDuration() time.Duration {
	sc := r.sc
	switch sc.Mode {
	case "steps":
		var d time.Duration
		for _, st := range sc.Steps {
			d += st.Duration.D()
		}
		return d
	case "ramp":
		return sc.Warmup.D() + sc.Ramp.Duration.D()
	case "concurrency":
		return time.Duration(len(sc.Concurrency.Levels)) * sc.Concurrency.Duration.D()
	}
	return 24 * time.Hour
}

// hookOutputLimit bounds the output kept per hook in result.json.
const hookOutputLimit = 4 << 10

// runHook runs one hook with sh -c, at most one minute.
func runHook(ctx context.Context, h Hook, target, dir string) HookEvent {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", h.Run)
	cmd.Env = append(os.Environ(), "LOADTEST_TARGET="+target, "LOADTEST_OUT="+dir)
	out, err := cmd.CombinedOutput()
	ev := HookEvent{Command: h.Run}
	if len(out) > hookOutputLimit {
		out = out[len(out)-hookOutputLimit:]
	}
	ev.Output = string(out)
	if err != nil {
		ev.Error = err.Error()
		ev.ExitCode = -1
		if ee, ok := err.(*exec.ExitError); ok {
			ev.ExitCode = ee.ExitCode()
		}
	}
	return ev
}
