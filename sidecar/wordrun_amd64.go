//go:build amd64 && !purego

package sidecar

import "unsafe"

// wordRun is wordRunAsm: wordRunGo in assembly, with the same results (TestWordRunAsm,
// FuzzWordRun). Go's register allocator runs wordRunGo's loop short of registers: its
// 64-bit constants are rebuilt on every member and a dozen of its values go to the
// stack and back. The assembly keeps them in registers and finds the ',' and the '.'
// with one SSE2 comparison each; two-decimal values, per named feature, 12.5 → 10.2 ns
// (BenchmarkNamedStages, medians of six runs alternated with a -tags purego build; see
// docs/benchmarks.md, "The comma first").
func wordRun(b []byte, i int, places []place, pre []byte, row []float64, k int) (int, int) {
	return wordRunAsm(unsafe.SliceData(b), len(b), i, unsafe.SliceData(places), len(places),
		unsafe.SliceData(row), len(row), k, unsafe.SliceData(pre), &exact10[0])
}

// wordRunAsm reads what wordRunGo reads, from b[:nb], places[:np] and into row[:nrow];
// pre is the layout's bytes and p10 exact10.
//
//go:noescape
func wordRunAsm(b *byte, nb int, i int, places *place, np int, row *float64, nrow int, k int, pre *byte, p10 *float64) (int, int)

// The layout of place that the assembly reads: col, pre, npre and w at 0, 4, 8 and 16,
// 40 bytes a place (a compile error otherwise: an index out of range, or a negative
// constant).
var (
	_ = [1]struct{}{}[unsafe.Offsetof(place{}.col)]
	_ = [1]struct{}{}[unsafe.Offsetof(place{}.pre)-4]
	_ = [1]struct{}{}[unsafe.Offsetof(place{}.npre)-8]
	_ = [1]struct{}{}[unsafe.Offsetof(place{}.w)-16]
	_ = [1]struct{}{}[unsafe.Sizeof(place{})-40]
)
