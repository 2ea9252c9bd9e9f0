//go:build cgo

package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

func threadCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(1, &ru) // RUSAGE_THREAD
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestZZScratch(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	dir := coreBenchFixtures()
	b := &testing.B{}
	for _, bm := range coreBenchModels {
		if os.Getenv("ZZMODEL") != "" && os.Getenv("ZZMODEL") != bm.name {
			continue
		}
		data, _ := os.ReadFile(filepath.Join(dir, bm.model))
		ens, _ := Parse(bm.format, data)
		rows := coreBenchCSV(b, filepath.Join(dir, bm.input), bm.header, ens.NumFeatures, 10000)
		rows32 := make([]float32, len(rows))
		for i, v := range rows {
			rows32[i] = float32(v)
		}
		nt := ens.NumTrees()
		for _, k := range []string{"avx512", "avx2", "scalar", "generic"} {
			sc, _ := newCScorerKernel(ens, k)
			for _, batch := range []int{1, 1000} {
				out := make([]float64, batch*ens.NumOutputs)
				n := 0
				start := threadCPU()
				for threadCPU()-start < 300*time.Millisecond {
					lo := (n * 997) % (10000 - batch + 1)
					if bm.format == FormatXGBoost {
						sc.predictF32(rows32[lo*ens.NumFeatures:(lo+batch)*ens.NumFeatures], batch, out)
					} else {
						sc.predictF64(rows[lo*ens.NumFeatures:(lo+batch)*ens.NumFeatures], batch, out)
					}
					n++
				}
				el := threadCPU() - start
				fmt.Printf("%s %s batch=%d: %.2f ns/tree·row (%d calls)\n", bm.name, k, batch, float64(el.Nanoseconds())/float64(n*batch*nt), n)
			}
			sc.close()
		}
	}
}
