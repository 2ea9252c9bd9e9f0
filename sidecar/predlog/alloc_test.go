//go:build !race

package predlog

import (
	"testing"
)

// TestLogAllocs checks that the request path (Sample, fill, Log) allocates nothing once
// the record pool is warm.
func TestLogAllocs(t *testing.T) {
	lg, err := New(Config{Dir: t.TempDir(), Prefix: "m", QueueSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	names := []string{"a", "b", "c", "d"}
	rows, preds := make([]float64, 16*4), make([]float64, 16)
	ids := []string{"c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9", "c10", "c11", "c12", "c13", "c14", "c15"}
	idBytes := make([][]byte, len(ids))
	for i, id := range ids {
		idBytes[i] = []byte(id)
	}
	logOne := func() {
		rec := lg.Sample()
		rec.Model, rec.Version, rec.FeatureNames = "m", "1", names
		rec.SetRequestID("request-id-0123456789")
		rec.SetRows(rows, 16, 4)
		rec.SetPredictions(preds, 1)
		for i, id := range ids {
			if i%2 == 0 {
				rec.AddID(id)
			} else {
				rec.AddIDBytes(idBytes[i])
			}
		}
		lg.Log(rec)
	}
	for i := 0; i < 1000; i++ {
		logOne()
	}
	// AllocsPerRun truncates the average: the few records the pool creates while the
	// writer holds queued ones amortize to zero; a per-call allocation would not.
	if a := testing.AllocsPerRun(1000, logOne); a != 0 {
		t.Fatalf("%v allocations per logged request, want 0", a)
	}
}
