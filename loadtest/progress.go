package loadtest

// The live progress line and the sidecar CPU profile taken during a step.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

func (r *runner) progress(ph *phase) {
	if r.cfg.Progress == nil {
		return
	}
	var sent, ok, errs, late int64
	var p99 float64 // side a's, in an interleaved run; the counts are both sides'
	for _, pw := range append(ph.wlsB[:len(ph.wlsB):len(ph.wlsB)], ph.wls...) {
		for i := range pw.sent {
			sent += pw.sent[i].Load()
		}
		pw.mu.Lock()
		for i, ws := range pw.win {
			ok += ws.ok
			late += ws.late
			for _, n := range ws.errs {
				errs += n
			}
			if ws.hist.TotalCount() > 0 && i < ph.nWin {
				p99 = ms(time.Duration(ws.hist.ValueAtQuantile(99)) * time.Microsecond)
			}
		}
		pw.mu.Unlock()
	}
	var offered float64
	el := time.Since(ph.start)
	for _, pw := range ph.wls {
		offered += pw.rate(el)
	}
	rate := fmt.Sprintf("offered %.0f/s", offered)
	for _, pw := range ph.wls {
		if pw.workers > 0 {
			rate = fmt.Sprintf("sent %.0f/s", float64(sent)/max(el.Seconds(), 1e-3))
			break
		}
	}
	line := fmt.Sprintf("%s %5.0fs | %s | sent %d ok %d err %d | in-flight %d | p99 %.2fms | late %d",
		ph.name, time.Since(r.start).Seconds(), rate, sent, ok, errs, r.inFlight.Load(), p99, late)
	r.progMu.Lock()
	defer r.progMu.Unlock()
	if r.cfg.ProgressTTY {
		fmt.Fprintf(r.cfg.Progress, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(r.cfg.Progress, line)
	}
	r.progText = line
}

func (r *runner) clearProgress() {
	if r.cfg.Progress != nil && r.cfg.ProgressTTY && r.progText != "" {
		fmt.Fprintln(r.cfg.Progress)
	}
}

// takeProfile fetches a CPU profile of the sidecar into cpu.pprof. Cancelling ctx (an
// interrupted run) abandons it.
func (r *runner) takeProfile(ctx context.Context, secs int) {
	if !r.res.Sidecar.PprofEnabled {
		return
	}
	status, body, err := r.target.getContext(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), time.Duration(secs+15)*time.Second)
	switch {
	case ctx.Err() != nil:
		r.res.Sidecar.ProfileNote = "no CPU profile: the run was interrupted while profiling"
	case err != nil:
		r.res.Sidecar.ProfileNote = "CPU profile failed: " + err.Error()
	case status != 200 || len(body) == 0:
		r.res.Sidecar.ProfileNote = fmt.Sprintf("CPU profile failed: HTTP %d: %.200s", status, body)
	default:
		if err := os.WriteFile(filepath.Join(r.dir, "cpu.pprof"), body, 0o644); err != nil {
			r.res.Sidecar.ProfileNote = "CPU profile not written: " + err.Error()
			return
		}
		r.res.Sidecar.CPUProfile = "cpu.pprof"
		r.res.Sidecar.ProfileNote = fmt.Sprintf("CPU profile of %ds during step %d", secs, r.res.Sidecar.CPUProfileStep)
	}
}

// profileSeconds is how long to profile a step with the given measured time.
func (r *runner) profileSeconds(measured time.Duration) int {
	if r.sc.ProfileSeconds > 0 {
		return r.sc.ProfileSeconds
	}
	return max(1, min(30, int(measured/time.Second)))
}
