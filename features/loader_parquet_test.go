package features

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

// pqShopRow is genShopRows' row as a Parquet writer sees it: nil pointers and nil lists are
// nulls. The embedding is written as doubles to cover a LIST of DOUBLE.
type pqShopRow struct {
	Rating  *float32  `parquet:"rating,optional"`
	StoreID string    `parquet:"store_id"`
	Revenue *float64  `parquet:"revenue,optional"`
	Orders  *int64    `parquet:"orders,optional"`
	Cuisine *string   `parquet:"cuisine,optional"`
	Recent  []float32 `parquet:"recent,list,optional"`
	Emb     []float64 `parquet:"emb,list,optional"`
}

func writeParquet[T any](t testing.TB, rows []T, opts ...parquet.WriterOption) []byte {
	t.Helper()
	var b bytes.Buffer
	w := parquet.NewGenericWriter[T](&b, opts...)
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func shopParquet(t testing.TB, rows []shopRow, opts ...parquet.WriterOption) []byte {
	t.Helper()
	pq := make([]pqShopRow, len(rows))
	for i, r := range rows {
		p := pqShopRow{StoreID: r.id, Rating: r.rating, Revenue: r.revenue, Orders: r.orders, Recent: r.recent}
		if r.cuisine != "" {
			p.Cuisine = &r.cuisine
		}
		for _, x := range r.emb {
			p.Emb = append(p.Emb, float64(x))
		}
		pq[i] = p
	}
	return writeParquet(t, pq, opts...)
}

func loadParquet(t testing.TB, g *Group, sink Sink, r io.Reader) LoadStats {
	t.Helper()
	st, err := Load(context.Background(), r, LoadConfig{Group: g, Sink: sink, Format: "parquet", BatchRows: 7})
	if err != nil {
		t.Fatalf("load: %v (%+v)", err, st.BadRows)
	}
	return st
}

// TestLoadParquet loads generated rows from a multi-row-group Parquet file, from a seekable
// reader and from a pipe-like one (spooled to a temporary file), and reads every value back.
func TestLoadParquet(t *testing.T) {
	g := shopGroup(t)
	rows := genShopRows(300, 21)
	data := shopParquet(t, rows, parquet.MaxRowsPerRowGroup(64))
	if f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data))); err != nil || len(f.RowGroups()) < 4 {
		t.Fatalf("test file: err %v; want several row groups", err)
	}
	inputs := map[string]io.Reader{
		"seekable": bytes.NewReader(data),
		"pipe":     struct{ io.Reader }{bytes.NewReader(data)},
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			e := NewEmbedded()
			st := loadParquet(t, g, e, in)
			if st.Rows != len(rows) || st.Bad != 0 {
				t.Fatalf("%d rows, %d bad (%+v); want %d, 0", st.Rows, st.Bad, st.BadRows, len(rows))
			}
			s, err := Open(Config{Groups: map[string]*Group{"shop": g}, Embedded: e})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			checkShop(t, s, rows)
			// Loading the same file again leaves the same state.
			before := fmt.Sprint(len(e.groups["shop"]))
			loadParquet(t, g, e, bytes.NewReader(data))
			if after := fmt.Sprint(len(e.groups["shop"])); after != before {
				t.Fatalf("reload: %s entities, want %s", after, before)
			}
			checkShop(t, s, rows)
		})
	}
}

// pqOddRow uses other Parquet types for the same features: an unsigned integer key, doubles
// for float32 and int64 features, an int32 for a float64 and an integer for a string; the
// embedding is a required LIST of FLOAT (an empty list is a missing value).
type pqOddRow struct {
	StoreID uint32    `parquet:"store_id"`
	Rating  *float64  `parquet:"rating,optional"`
	Orders  *float64  `parquet:"orders,optional"`
	Revenue *int32    `parquet:"revenue,optional"`
	Cuisine *int64    `parquet:"cuisine,optional"`
	Recent  []float64 `parquet:"recent,list,optional"`
	Emb     []float32 `parquet:"emb,list"`
}

func ptr[T any](v T) *T { return &v }

func TestLoadParquetConversionsAndBadRows(t *testing.T) {
	g := shopGroup(t)
	e := NewEmbedded()
	// Entity 6 holds values that the Parquet file's nulls must delete.
	pre := "store_id,rating,recent,emb\n6,2.5,1 2," + strings.TrimSpace(strings.Repeat("1 ", 16)) + "\n"
	if st, err := Load(context.Background(), strings.NewReader(pre), LoadConfig{Group: g, Sink: e}); err != nil || st.Rows != 1 {
		t.Fatalf("preload: %+v %v", st, err)
	}
	emb16 := make([]float32, 16)
	for i := range emb16 {
		emb16[i] = float32(i) / 4
	}
	rows := []pqOddRow{
		{StoreID: 4_000_000_000, Rating: ptr(1.5), Orders: ptr(12.0), Revenue: ptr[int32](-7), Cuisine: ptr[int64](-99), Recent: []float64{1, 2.25}, Emb: emb16},
		{StoreID: 2, Recent: []float64{1, 2, 3, 4, 5, 6, 7, 8, 9}},       // row 2: list longer than len
		{StoreID: 3, Emb: []float32{1, 2, 3}},                            // row 3: wrong embedding dim
		{StoreID: 4, Rating: ptr(1e300)},                                 // row 4: does not fit a float32
		{StoreID: 5, Orders: ptr(4.5)},                                   // row 5: not an integer
		{StoreID: 6},                                                     // row 6: nulls delete
		{StoreID: 7, Orders: ptr[float64](1 << 53), Recent: []float64{}}, // row 7: an empty list is missing
		{StoreID: 8, Recent: []float64{1, 1e39}},                         // row 8: element does not fit a float32
	}
	data := writeParquet(t, rows, parquet.MaxRowsPerRowGroup(3))
	st := loadParquet(t, g, e, bytes.NewReader(data))
	var got []string
	for _, b := range st.BadRows {
		got = append(got, fmt.Sprintf("%d %s", b.Line, b.Err))
	}
	want := []string{
		`2 "recent": more than 8 values`,
		`3 "emb": embedding needs 16 values, got 3`,
		`4 "rating": 1e+300 does not fit a float32`,
		`5 "orders": 4.5 is not an int64`,
		`8 "recent": value 2, 1e+39, does not fit a float32`,
	}
	if st.Rows != 3 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("rows %d; bad rows:\n%s\nwant:\n%s", st.Rows, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	s, err := Open(Config{Groups: map[string]*Group{"shop": g}, Embedded: e})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for _, id := range []string{"2", "3", "4", "5", "8"} {
		if _, _, found, _ := s.Lookup(ctx, "shop", id); found {
			t.Errorf("bad row %s was written", id)
		}
	}
	v, _, found, err := s.Lookup(ctx, "shop", "4000000000")
	if err != nil || !found {
		t.Fatalf("4000000000: found %v err %v", found, err)
	}
	if v["rating"].F != 1.5 || v["orders"].I != 12 || v["revenue"].F != -7 || string(v["cuisine"].S) != "-99" ||
		floats32(v["recent"].V) != "1 2.25" || floats32(v["emb"].V) != floats32(emb16) {
		t.Errorf("4000000000: %+v", v)
	}
	v, _, found, _ = s.Lookup(ctx, "shop", "6")
	if !found || len(v) != 0 {
		t.Errorf("6: nulls should delete every stored value, found %v: %+v", found, v)
	}
	v, _, found, _ = s.Lookup(ctx, "shop", "7")
	if _, ok := v["recent"]; !found || ok || v["orders"].I != 1<<53 {
		t.Errorf("7: %+v", v)
	}

	// MaxBadRows stops the load and says where.
	_, err = Load(ctx, bytes.NewReader(data), LoadConfig{Group: g, Sink: NewEmbedded(), Format: "parquet", MaxBadRows: 2})
	if err == nil || !strings.Contains(err.Error(), "stopped at row 4") {
		t.Errorf("MaxBadRows: %v", err)
	}
}

// TestLoadParquetSchemaErrors: a column that cannot map to the group refuses the file
// before anything is written, with a message naming the column.
func TestLoadParquetSchemaErrors(t *testing.T) {
	g := shopGroup(t)
	f := func(data []byte, want string) {
		t.Helper()
		e := NewEmbedded()
		_, err := Load(context.Background(), bytes.NewReader(data), LoadConfig{Group: g, Sink: e, Format: "parquet"})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want an error containing %q", err, want)
		}
		if e.Len("shop") != 0 {
			t.Errorf("%q: %d entities written", want, e.Len("shop"))
		}
	}
	f(writeParquet(t, []struct {
		StoreID string  `parquet:"store_id"`
		Ratin   float32 `parquet:"ratin"`
	}{{"a", 1}}), `unknown feature "ratin"`)
	f(writeParquet(t, []struct {
		Rating float32 `parquet:"rating"`
	}{{1}}), `no key column "store_id"`)
	f(writeParquet(t, []struct {
		StoreID string `parquet:"store_id"`
		Rating  string `parquet:"rating"`
	}{{"a", "1"}}), `column "rating" is BYTE_ARRAY (STRING), but a float32 feature needs an integer, float or double`)
	f(writeParquet(t, []struct {
		StoreID float64 `parquet:"store_id"`
	}{{1}}), `column "store_id" is DOUBLE, but the key needs a string or integer`)
	f(writeParquet(t, []struct {
		StoreID string    `parquet:"store_id"`
		Rating  []float32 `parquet:"rating,list"`
	}{{"a", nil}}), `column "rating" is LIST of FLOAT, but a float32 feature needs`)
	f(writeParquet(t, []struct {
		StoreID string  `parquet:"store_id"`
		Recent  float32 `parquet:"recent"`
	}{{"a", 1}}), `but a list feature needs a LIST of float or double`)
	f(writeParquet(t, []struct {
		StoreID string    `parquet:"store_id"`
		Orders  time.Time `parquet:"orders"`
	}{{"a", time.Unix(1, 0)}}), `column "orders" has Parquet type INT64 (TIMESTAMP`)
	f(writeParquet(t, []struct {
		StoreID string `parquet:"store_id"`
		Rating  bool   `parquet:"rating"`
	}{{"a", true}}), `column "rating" has Parquet type BOOLEAN`)
	f(writeParquet(t, []struct {
		StoreID string `parquet:"store_id"`
		Recent  struct {
			A float32 `parquet:"a"`
			B float32 `parquet:"b"`
		} `parquet:"recent"`
	}{{StoreID: "a"}}), `column "recent" is a group of 2 fields`)
}

// TestLoadParquetCorrupt: truncated and damaged files give an error or refused rows, never
// a panic, and nothing that does not decode is stored.
func TestLoadParquetCorrupt(t *testing.T) {
	g := shopGroup(t)
	data := shopParquet(t, genShopRows(40, 5), parquet.MaxRowsPerRowGroup(16))
	for _, n := range []int{0, 3, 4, 7, len(data) / 2, len(data) - 9, len(data) - 4, len(data) - 1} {
		_, err := Load(context.Background(), bytes.NewReader(data[:n]), LoadConfig{Group: g, Sink: NewEmbedded(), Format: "parquet"})
		if err == nil || !strings.Contains(err.Error(), "Parquet") {
			t.Errorf("truncated to %d of %d bytes: %v; want an error naming Parquet", n, len(data), err)
		}
	}
	errs := 0
	for i := 0; i < len(data); i += 7 {
		bad := bytes.Clone(data)
		bad[i] ^= 0x5a
		e := NewEmbedded()
		if _, err := Load(context.Background(), bytes.NewReader(bad), LoadConfig{Group: g, Sink: e, Format: "parquet", MaxBadRows: 1 << 20}); err != nil {
			errs++
		}
		checkDecodes(t, g, e)
	}
	if errs == 0 {
		t.Errorf("no damaged file was reported as an error")
	}
}

// checkDecodes fails the test if any stored entity of e does not decode.
func checkDecodes(t *testing.T, g *Group, e *Embedded) {
	t.Helper()
	s, _ := Open(Config{Groups: map[string]*Group{"shop": g}, Embedded: e})
	defer s.Close()
	for ent := range e.groups["shop"] {
		if _, _, _, err := s.Lookup(context.Background(), "shop", ent); err != nil {
			t.Fatalf("stored row %q does not decode: %v", ent, err)
		}
	}
}

// FuzzLoadParquet loads arbitrary bytes as Parquet: errors are fine; panics are not, and
// every written row decodes.
func FuzzLoadParquet(f *testing.F) {
	f.Add(shopParquet(f, genShopRows(5, 3), parquet.MaxRowsPerRowGroup(2)))
	f.Add(writeParquet(f, []pqOddRow{{StoreID: 1, Rating: ptr(math.Inf(1)), Recent: []float64{1, 2}}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := shopGroup(t)
		e := NewEmbedded()
		// A few bytes of run-length encoding can claim millions of rows: the deadline stops
		// such a load between reads, as it would stop a real one.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		st, err := Load(ctx, bytes.NewReader(data), LoadConfig{Group: g, Sink: e, Format: "parquet", MaxBadRows: 1000})
		if err == nil && e.Len("shop") > st.Rows {
			t.Fatalf("%d entities stored from %d rows", e.Len("shop"), st.Rows)
		}
		checkDecodes(t, g, e)
	})
}
