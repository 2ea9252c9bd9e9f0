package client

import (
	"math"
	"testing"

	"github.com/predictd/predictd/api/predictpb"
	"github.com/predictd/predictd/api/wire"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// FuzzDecodeScores: the score decoder reads the sidecar's answers, outside input. It
// never panics, accepts whatever the generated decoder accepts, and returns the same
// scores (each prediction's scores, or its score), bit for bit.
func FuzzDecodeScores(f *testing.F) {
	for _, m := range []*predictpb.PredictResponse{
		{Model: "m", Version: "1", Predictions: []*predictpb.Prediction{{Id: "a", Score: 0.5}, {Score: math.NaN()}}},
		{Model: "m", Predictions: []*predictpb.Prediction{{Score: 1, Scores: []float64{1, 2, 3}}}, Degraded: true, DegradedGroups: []string{"u"}},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("\x1a\x03\x1a\x01\x00")) // packed scores of 1 byte
	// Scores written unpacked, one fixed64 each: a valid encoding of a repeated double.
	for _, vs := range [][]float64{{0.25}, {0.25, -3}} {
		var pred []byte
		for _, v := range vs {
			pred = protowire.AppendTag(pred, wire.PredictionScores, protowire.Fixed64Type)
			pred = protowire.AppendFixed64(pred, math.Float64bits(v))
		}
		f.Add(protowire.AppendBytes(protowire.AppendTag(nil, wire.ResponsePredictions, protowire.BytesType), pred))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := decodeScores(data, nil)
		var ref predictpb.PredictResponse
		if proto.Unmarshal(data, &ref) != nil {
			return
		}
		if err != nil {
			t.Fatalf("rejected what the generated decoder accepts: %v", err)
		}
		var want []float64
		for _, p := range ref.Predictions {
			if len(p.Scores) > 0 {
				want = append(want, p.Scores...)
			} else {
				want = append(want, p.Score)
			}
		}
		if len(got) != len(want) {
			// An empty packed scores field is "scores: []" to the generated decoder and
			// no score at all to decodeScores; the sidecar never writes one.
			if len(got) > len(want) {
				t.Fatalf("%d scores, generated %d", len(got), len(want))
			}
			return
		}
		for i := range got {
			if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
				t.Fatalf("score %d: %v, generated %v", i, got[i], want[i])
			}
		}
	})
}
