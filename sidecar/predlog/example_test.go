package predlog_test

import (
	"fmt"
	"os"

	"github.com/predictd/predictd/sidecar/predlog"
)

// The request path samples, copies the scored rows into a pooled record and hands it to
// the background writer; Close at shutdown writes out everything accepted.
func Example() {
	dir, _ := os.MkdirTemp("", "predlog")
	defer os.RemoveAll(dir)
	lg, err := predlog.New(predlog.Config{Dir: dir, Prefix: "ctr", Rate: 1})
	if err != nil {
		panic(err)
	}
	names := []string{"age", "price"}
	rows := []float64{31, 9.5, 44, 12}
	scores := []float64{0.12, 0.53}
	if rec := lg.Sample(); rec != nil {
		rec.Model, rec.Version, rec.FeatureNames = "ctr", "3", names
		rec.SetRequestID("r-17")
		rec.SetRows(rows, 2, 2)
		rec.SetPredictions(scores, 1)
		rec.AddID("a")
		rec.AddID("b")
		lg.Log(rec)
	}
	if err := lg.Close(); err != nil {
		panic(err)
	}
	st := lg.Stats()
	fmt.Println("written", st.Written, "files", st.Files)
	// Output: written 1 files 1
}
