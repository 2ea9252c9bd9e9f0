//go:build cgo && linux && xgboost

package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkXGBoostShapes: the core against XGBoost's own C predictor (Debian
// libxgboost-dev 1.7.4, XGBoosterPredictFromDense with nthread=1: cgo_xgboost.go) on the
// production-shaped XGBoost models, gen_deep_d12 (depth-12 trees) and gen_categorical
// (native categorical splits), batches of 1,000 float32 rows, one thread, the thread's
// CPU time per tree·row (docs/benchmarks.md, "Production-shaped models"):
//
//	PREDICTD_FIXTURES=/path/to/fixtures go test -tags xgboost -run '^$' -bench XGBoostShapes -benchtime 1x ./engine
//
// Before timing, the core's default kernel must give the generic walk's outputs bit for
// bit, and XGBoost's margins must equal the core's exactly (both are float32) and the
// fixture's expected margins. XGBoost reads the model's model.ubj (the core its
// model.json: the same trees, TestXGBoostUBJSONMatchesJSON). XGBoost scores the same 1,000 rows every call (it reads
// them from C memory); the core scores them too. The process's CPU time is measured
// beside the thread's, so a predictor that used other threads would show (it is logged).
// Where the default kernel is another (AVX-512) and the CPU has AVX2, the AVX2 kernel
// is timed beside it (the goal is for both). PREDICTD_SHAPES limits the models as for BenchmarkShapesBatch. Needs libxgboost-dev
// (not in CI: benchmarks do not run there).
func BenchmarkXGBoostShapes(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const batch = 1000
	var lines []string
	for _, fx := range shapesFixtures {
		if !fx.xgb || !shapesBenchWanted(fx.name) {
			continue
		}
		l, ok := shapesLoad(b, fx)
		if !ok {
			lines = append(lines, fmt.Sprintf("%-16s absent (testdata/%s or PREDICTD_FIXTURES)", fx.name, fx.dir))
			continue
		}
		l = shapesAtLeast(l, batch)
		nf, T := l.ens.NumFeatures, float64(l.ens.NumTrees())
		rows32 := l.rows32[:batch*nf]

		// XGBoost loads a model from a file: the decompressed copy of model.ubj (testdata/
		// keeps it whole; its model.json lacks the training statistics XGBoost requires).
		mdata, ok := shapesRead(b, fx.dir, "model.ubj")
		if !ok {
			b.Fatalf("%s: no model.ubj for XGBoost", fx.name)
		}
		path := filepath.Join(b.TempDir(), "model.ubj")
		if err := os.WriteFile(path, mdata, 0o600); err != nil {
			b.Fatal(err)
		}
		xp, err := newXGBPeer(path, 1, rows32, nf)
		if err != nil {
			b.Fatalf("%s: XGBoost: %v", fx.name, err)
		}
		def, err := newCScorer(l.ens)
		if err != nil {
			b.Fatal(err)
		}
		cdef := def.(*cScorer)
		gen, err := newCScorerKernel(l.ens, "generic")
		if err != nil {
			b.Fatal(err)
		}

		type backend struct {
			name  string
			score func(out []float64) error
		}
		kname := "core/" + strings.TrimPrefix(cdef.name(), "c/")
		backends := []backend{
			{kname, func(out []float64) error { return cdef.predictF32(rows32, batch, out) }},
			{"core/generic", func(out []float64) error { return gen.predictF32(rows32, batch, out) }},
			{"xgboost", func(out []float64) error { return xp.predict(batch, out) }},
			// The same kernel without the partition walk's leaf pairs and XGBoost's AVX-512
			// binning (docs/benchmarks.md, "Production-shaped models" step 12).
			{kname + "-base", func(out []float64) error {
				setWalkFlags(shapesKernelFlags["-base"])
				defer setWalkFlags(0)
				return cdef.predictF32(rows32, batch, out)
			}},
			// ... and as it was before step 14 (row-by-row XGBoost binning, scalar split).
			{kname + "-step13", func(out []float64) error {
				setWalkFlags(shapesKernelFlags["-step13"])
				defer setWalkFlags(0)
				return cdef.predictF32(rows32, batch, out)
			}},
		}
		// The AVX2 kernel beside the default where the default is another (AVX-512) and
		// the CPU has AVX2: the goal holds for both.
		var avx2 *cScorer
		if kname != "core/avx2" {
			if avx2, err = newCScorerKernel(l.ens, "avx2"); err == nil {
				backends = append(backends,
					backend{"core/avx2", func(out []float64) error { return avx2.predictF32(rows32, batch, out) }},
					backend{"core/avx2-step13", func(out []float64) error {
						setWalkFlags(shapesKernelFlags["-step13"])
						defer setWalkFlags(0)
						return avx2.predictF32(rows32, batch, out)
					}})
			} else {
				avx2 = nil
			}
		}
		outs := make([][]float64, len(backends))
		for i, be := range backends {
			outs[i] = make([]float64, batch)
			if err := be.score(outs[i]); err != nil {
				b.Fatalf("%s %s: %v", fx.name, be.name, err)
			}
		}
		for i := range backends {
			if i == 1 || i == 2 {
				continue
			}
			if r := shapesFirstDiff(outs[i], outs[1]); r >= 0 {
				b.Fatalf("%s: %s row %d = %.17g, generic %.17g", fx.name, backends[i].name, r, outs[i][r], outs[1][r])
			}
		}
		for r := 0; r < batch; r++ {
			if float32(outs[2][r]) != float32(outs[0][r]) || !shapesClose(outs[0][r], l.want[r], true) {
				b.Fatalf("%s row %d: xgboost %.9g, core %.9g, expected %.9g", fx.name, r, outs[2][r], outs[0][r], l.want[r])
			}
		}

		tr := cdef.traversal()
		// Rounds of the backends alternate, each backend's best round counts: a neighbour
		// that takes the shared core for a while slows every backend's rounds alike rather
		// than one backend's.
		out := make([]float64, batch)
		best := make([]time.Duration, len(backends))
		for rep := 0; rep < 5; rep++ {
			for i, be := range backends {
				thread, proc := xgbShapesRound(b, 100*time.Millisecond, func() error { return be.score(out) })
				if rep == 0 || thread < best[i] {
					best[i] = thread
				}
				if float64(proc) > 1.5*float64(thread) {
					b.Logf("%s %s: process CPU %v against the thread's %v: other threads worked too", fx.name, be.name, proc, thread)
				}
			}
		}
		ns := make([]float64, len(backends))
		var parts []string
		for i, be := range backends {
			ns[i] = float64(best[i].Nanoseconds()) / (T * batch)
			parts = append(parts, fmt.Sprintf("%s %.2f", be.name, ns[i]))
		}
		extra := ""
		if avx2 != nil {
			extra = fmt.Sprintf(", %.1fx (avx2), %.1fx (avx2-step13)", ns[2]/ns[5], ns[2]/ns[6])
			avx2.close()
		}
		lines = append(lines, fmt.Sprintf("%-16s %-6s ns/tree·row: %s; XGBoost / core: %.1fx (default kernel), %.1fx (-base), %.1fx (-step13), %.2fx (generic walk)%s",
			fx.name, tr, strings.Join(parts, ", "), ns[2]/ns[0], ns[2]/ns[3], ns[2]/ns[4], ns[2]/ns[1], extra))
		def.close()
		gen.close()
		xp.close()
	}
	b.Logf("batch %d, one thread, CPU time, outputs equal; ns per tree·row:\n%s", batch, strings.Join(lines, "\n"))
}

// xgbShapesRound calls fn until at least minCPU of thread CPU time has passed and returns
// the thread CPU time and the process CPU time per call.
func xgbShapesRound(b *testing.B, minCPU time.Duration, fn func() error) (thread, proc time.Duration) {
	t0, p0 := shapesThreadCPU(), xgbShapesProcessCPU()
	calls := 0
	for shapesThreadCPU()-t0 < minCPU {
		if err := fn(); err != nil {
			b.Fatal(err)
		}
		calls++
	}
	return (shapesThreadCPU() - t0) / time.Duration(calls), (xgbShapesProcessCPU() - p0) / time.Duration(calls)
}

// xgbShapesProcessCPU is the process's CPU time (every thread, user + system).
func xgbShapesProcessCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
