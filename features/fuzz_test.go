package features

import (
	"bytes"
	"context"
	"math"
	"testing"
)

func FuzzParseGroup(f *testing.F) {
	f.Add([]byte(shopYAML))
	f.Add([]byte("name: g\nkey: k\nfeatures: [{name: a, type: list, len: 3}]\n"))
	f.Add([]byte("name: g\nkey: k\nttl: 5s\nfeatures: [{name: a, type: float32, default: .nan}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := ParseGroup(data)
		if err != nil {
			return
		}
		ids := map[uint32]bool{timestampField: true}
		for i := range g.Features {
			if ids[g.Features[i].ID()] {
				t.Fatalf("accepted colliding field id of %q", g.Features[i].Name)
			}
			ids[g.Features[i].ID()] = true
		}
	})
}

// FuzzDecodeValue feeds arbitrary stored bytes (as a corrupt or hostile Redis would) to
// every feature type's decoder: errors are fine, panics and over-long outputs are not.
func FuzzDecodeValue(f *testing.F) {
	g := shopGroup(f)
	for i := range g.Features {
		ft := &g.Features[i]
		var v Value
		switch ft.Type {
		case List:
			v.V = []float32{1, 2, 3, 3, 3, 3}
		case Embedding:
			v.V = make([]float32, ft.Dim)
		case String:
			v.S = []byte("x")
		}
		enc, err := g.EncodeValue(nil, ft, v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), enc)
	}
	f.Add(uint8(4), []byte{3, 0x28, 0xb5, 0x2f, 0xfd, 0, 0})
	f.Fuzz(func(t *testing.T, which uint8, raw []byte) {
		ft := &g.Features[int(which)%len(g.Features)]
		v, err := DecodeValue(ft, raw)
		if err == nil && len(v.V) > max(ft.Len, ft.Dim) {
			t.Fatalf("%s decoded to %d values", ft.Name, len(v.V))
		}
		if ft.Width() > 0 {
			out := make([]float64, ft.Width())
			if _, err := decodeNumeric(ft, raw, out, nil); err == nil && (ft.Type == List || ft.Type == Embedding) {
				// What decodes must re-encode to the same values.
				w, _ := DecodeValue(ft, raw)
				for k, x := range w.V {
					if float64(x) != out[k] && !math.IsNaN(out[k]) {
						t.Fatalf("decodeNumeric and DecodeValue disagree at %d", k)
					}
				}
			}
		}
	})
}

func FuzzReadSnapshot(f *testing.F) {
	g := shopGroup(f)
	e := NewEmbedded()
	loadShop(f, g, e, genShopRows(3, 8))
	var buf bytes.Buffer
	if err := e.WriteSnapshot(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		e := NewEmbedded()
		if err := e.ReadSnapshot(bytes.NewReader(data)); err != nil {
			if e.Len("shop") != 0 {
				t.Fatal("a failed read left entities behind")
			}
			return
		}
		// A snapshot that reads must serve lookups without error or panic.
		s, _ := Open(Config{Groups: map[string]*Group{"shop": g}, Embedded: e})
		defer s.Close()
		for ent := range e.groups["shop"] {
			s.Lookup(context.Background(), "shop", ent)
		}
	})
}

// FuzzLoadCSV loads arbitrary CSV: every row is written or refused whole, and every written
// row decodes.
func FuzzLoadCSV(f *testing.F) {
	f.Add(shopCSV(genShopRows(4, 9)))
	f.Add([]byte("store_id,rating,recent\na,1,1 2\nb,x,\n\"c,1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := shopGroup(t)
		e := NewEmbedded()
		st, err := Load(context.Background(), bytes.NewReader(data), LoadConfig{Group: g, Sink: e, MaxBadRows: 1 << 20})
		if err != nil {
			return
		}
		if e.Len("shop") > st.Rows {
			t.Fatalf("%d entities stored from %d rows", e.Len("shop"), st.Rows)
		}
		s, _ := Open(Config{Groups: map[string]*Group{"shop": g}, Embedded: e})
		defer s.Close()
		for ent := range e.groups["shop"] {
			if _, _, _, err := s.Lookup(context.Background(), "shop", ent); err != nil {
				t.Fatalf("stored row %q does not decode: %v", ent, err)
			}
		}
	})
}
