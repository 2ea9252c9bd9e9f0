package features

import (
	"math/rand/v2"
	"testing"
)

// TestCodecsRoundTrip encodes compressible and incompressible vectors with every codec and
// decodes them through both decoders.
func TestCodecsRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for _, name := range []string{"none", "s2", "snappy", "zstd", "shuffle-snappy"} {
		g, err := ParseGroup([]byte("name: g\nkey: k\ncodec: " + name + "\nfeatures:\n  - {name: l, type: list, len: 40}\n  - {name: e, type: embedding, dim: 32}\n"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []*Feature{&g.Features[0], &g.Features[1]} {
			for trial := 0; trial < 20; trial++ {
				n := f.Dim
				if f.Type == List {
					n = rng.IntN(41)
				}
				v := make([]float32, n)
				for k := range v {
					if trial == 0 {
						v[k] = 3 // compresses with every codec
					} else if trial%2 == 0 {
						v[k] = float32(rng.IntN(10)) // compressible
					} else {
						v[k] = float32(rng.NormFloat64())
					}
				}
				enc, err := g.EncodeValue(nil, f, Value{V: v})
				if err != nil {
					t.Fatal(err)
				}
				got, err := DecodeValue(f, enc)
				if err != nil || floats32(got.V) != floats32(v) {
					t.Fatalf("%s %s: got %v (%v), want %v", name, f.Name, got.V, err, v)
				}
				cols := make([]float64, f.Width())
				if _, err := decodeNumeric(f, enc, cols, nil); err != nil {
					t.Fatal(err)
				}
				for k := range v {
					if cols[k] != float64(v[k]) {
						t.Fatalf("%s %s: column %d is %v, want %v", name, f.Name, k, cols[k], v[k])
					}
				}
				if trial == 0 && name != "none" && n > 8 && codec(enc[0]) == codecNone {
					t.Errorf("%s did not compress %v", name, v)
				}
			}
		}
	}
}
