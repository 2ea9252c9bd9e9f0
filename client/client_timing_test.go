package client

import (
	"math"
	"strconv"
	"testing"

	"github.com/predictd/predictd/api/predictpb"
	"google.golang.org/protobuf/proto"
)

// Codec benchmarks: the client's hand-written dense encoder and score decoder beside
// proto.Marshal and proto.Unmarshal on the same messages (1,000 rows of 100 features; a
// response of 1,000 scores). The hand-written code is kept only while it is at least
// twice as fast:
//
//	go test ./client -run '^$' -bench 'Decode|Encode' -count 3

func benchDense() DenseRequest {
	rows := make([]float64, 1000*100)
	for i := range rows {
		rows[i] = 1 / float64(i+3)
	}
	return DenseRequest{Model: "ranker", Version: "2", Rows: rows, NCols: 100}
}

func BenchmarkEncodeDense(b *testing.B) {
	in := benchDense()
	m := &predictpb.PredictRequest{Model: in.Model, Version: in.Version}
	for lo := 0; lo < len(in.Rows); lo += in.NCols {
		m.Rows = append(m.Rows, &predictpb.Row{Values: in.Rows[lo : lo+in.NCols]})
	}
	var buf []byte
	b.Run("predictd", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = appendDense(buf[:0], &in)
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("proto.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf[:0], m); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(len(buf)))
	})
}

func BenchmarkDecodeScores(b *testing.B) {
	for _, width := range []int{1, 3} {
		m := &predictpb.PredictResponse{Model: "ranker", Version: "2"}
		for i := 0; i < 1000; i++ {
			p := &predictpb.Prediction{Id: "c" + strconv.Itoa(i), Score: 1 / float64(i+3)}
			if width > 1 {
				p.Scores = []float64{p.Score, 2 * p.Score, math.Pi}
			}
			m.Predictions = append(m.Predictions, p)
		}
		body, err := proto.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		pre := "width=" + strconv.Itoa(width) + "/"
		b.Run(pre+"predictd", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			dst := make([]float64, 0, 1000*width)
			for b.Loop() {
				if dst, err = decodeScores(body, dst[:0]); err != nil || len(dst) != 1000*width {
					b.Fatal(err)
				}
			}
		})
		b.Run(pre+"proto.Unmarshal", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			var out predictpb.PredictResponse
			for b.Loop() {
				if err := proto.Unmarshal(body, &out); err != nil || len(out.Predictions) != 1000 {
					b.Fatal(err)
				}
			}
		})
	}
}
