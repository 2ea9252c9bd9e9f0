package client_test

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/predictd/predictd/api/predictpb"
	"github.com/predictd/predictd/client"
	"github.com/predictd/predictd/examples"
	"github.com/predictd/predictd/sidecar"
	"google.golang.org/protobuf/proto"
)

// serve starts a sidecar with the demo model on loopback TCP and a Unix socket.
func serve(t *testing.T) (tcp, unix string) {
	t.Helper()
	s, err := sidecar.New(sidecar.Config{ModelFS: examples.Models(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	s.Reload()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "pdclient")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	ux, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	go s.Serve(ux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		os.RemoveAll(dir)
	})
	return ln.Addr().String(), sock
}

var row = []float64{6, 3, 0, 4, 0, 18, 55, 50, 43} // the demo's first fixture row

const lightgbm = 3.747921901318901350e-02 // LightGBM's prediction for it

func TestClient(t *testing.T) {
	tcp, unix := serve(t)
	names := []string{"VehBrand", "VehPower", "VehGas", "Region", "Area", "VehAge", "DrivAge", "BonusMalus", "Density"}
	cand := &predictpb.Candidate{Id: "policy-1"}
	for i, n := range names {
		cand.Features = append(cand.Features, &predictpb.Feature{Name: n, Value: proto.Float64(row[i])})
	}
	for _, c := range []struct {
		addr string
		opts client.Options
	}{
		{tcp, client.Options{}},
		{"http://" + tcp, client.Options{JSON: true}},
		{"unix:" + unix, client.Options{}},
		{"unix:" + unix, client.Options{JSON: true}},
	} {
		cl, err := client.New(c.addr, c.opts)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx := context.Background()
		resp, err := cl.Predict(ctx, &predictpb.PredictRequest{Model: "claims", Candidates: []*predictpb.Candidate{cand, {Id: "empty"}}})
		if err != nil {
			t.Fatalf("%s json=%v: %v", c.addr, c.opts.JSON, err)
		}
		if resp.Version != "1" || len(resp.Predictions) != 2 || resp.Predictions[0].Id != "policy-1" ||
			math.Abs(resp.Predictions[0].Score-lightgbm) > 1e-12*lightgbm {
			t.Fatalf("%s json=%v: %v", c.addr, c.opts.JSON, resp)
		}
		scores, err := cl.PredictRows(ctx, client.DenseRequest{Model: "claims", Rows: append(row, row...), NCols: 9}, nil)
		if err != nil || len(scores) != 2 || scores[0] != resp.Predictions[0].Score || scores[1] != scores[0] {
			t.Fatalf("PredictRows: %v %v, Predict said %v", scores, err, resp.Predictions[0].Score)
		}
		transformed := scores[0]
		raw, err := cl.PredictRows(ctx, client.DenseRequest{Model: "claims", Rows: row, NCols: 9, Raw: true}, scores)
		if err != nil || len(raw) != 1 || math.Abs(math.Exp(raw[0])-transformed) > 1e-15 {
			t.Fatalf("raw: %v %v", raw, err)
		}

		// Typed errors.
		_, err = cl.Predict(ctx, &predictpb.PredictRequest{Model: "nope"})
		var e *client.Error
		if !errors.As(err, &e) || e.Status != 404 || e.Code != client.CodeUnknownModel || !client.IsCode(err, client.CodeUnknownModel) {
			t.Fatalf("unknown model: %v", err)
		}
		_, err = cl.PredictRows(ctx, client.DenseRequest{Model: "claims", Rows: row[:3], NCols: 3}, nil)
		if !client.IsCode(err, client.CodeFeatureCount) {
			t.Fatalf("wrong width: %v", err)
		}
		// An expired context never reaches the server; a short one the server honours.
		done, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := cl.PredictRows(done, client.DenseRequest{Model: "claims", Rows: row, NCols: 9}, nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled context: %v", err)
		}
		big := make([]float64, 9*100_000)
		short, cancel2 := context.WithTimeout(ctx, 2*time.Millisecond)
		_, err = cl.PredictRows(short, client.DenseRequest{Model: "claims", Rows: big, NCols: 9}, nil)
		cancel2()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("2ms deadline on 100,000 rows: %v", err)
		}
	}
	if _, err := client.New("localhost", client.Options{}); err == nil {
		t.Error("an address without a port was accepted")
	}
}
