//go:build !amd64 || purego

package sidecar

// wordRun is wordRunGo where there is no assembly for it.
func wordRun(b []byte, i int, places []place, pre []byte, row []float64, k int) (int, int) {
	return wordRunGo(b, i, places, pre, row, k)
}
