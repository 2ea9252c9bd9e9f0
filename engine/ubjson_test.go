package engine

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// jsonToUBJSON re-encodes an XGBoost JSON model as UBJSON the way XGBoost does: numeric
// arrays as typed arrays ("[$l#", "[$d#"), string and boolean arrays with a count,
// arrays of objects closed by ']', floats as float32 ('d'). The bare NaN XGBoost writes
// in split_conditions becomes a float32 NaN. It exercises every container form the
// reader accepts.
func jsonToUBJSON(t testing.TB, js []byte) []byte {
	t.Helper()
	const nan = "\x00NaN"
	js = regexp.MustCompile(`([\[,:])\s*NaN\b`).ReplaceAll(js, []byte(`$1"\u0000NaN"`))
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("jsonToUBJSON: %v", err)
	}
	var b bytes.Buffer
	length := func(n int) {
		b.WriteByte('L')
		_ = binary.Write(&b, binary.BigEndian, int64(n))
	}
	isInt := func(x any) bool {
		n, ok := x.(json.Number)
		if !ok {
			return false
		}
		_, err := strconv.ParseInt(string(n), 10, 64)
		return err == nil
	}
	isNum := func(x any) bool {
		_, ok := x.(json.Number)
		return ok || x == nan
	}
	f32 := func(x any) float32 {
		if x == nan {
			return float32(math.NaN())
		}
		f, err := strconv.ParseFloat(string(x.(json.Number)), 32)
		if err != nil {
			t.Fatalf("jsonToUBJSON: %v", err)
		}
		return float32(f)
	}
	var enc func(v any, marker bool)
	enc = func(v any, marker bool) {
		switch x := v.(type) {
		case nil:
			b.WriteByte('Z')
		case bool:
			b.WriteByte(map[bool]byte{true: 'T', false: 'F'}[x])
		case string:
			if x == nan {
				b.WriteByte('d')
				_ = binary.Write(&b, binary.BigEndian, float32(math.NaN()))
				return
			}
			b.WriteByte('S')
			length(len(x))
			b.WriteString(x)
		case json.Number:
			if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
				switch {
				case i >= -128 && i < 128:
					b.WriteByte('i')
					b.WriteByte(byte(int8(i)))
				case i >= 0 && i < 256:
					b.WriteByte('U')
					b.WriteByte(byte(i))
				case i >= math.MinInt16 && i <= math.MaxInt16:
					b.WriteByte('I')
					_ = binary.Write(&b, binary.BigEndian, int16(i))
				case i >= math.MinInt32 && i <= math.MaxInt32:
					b.WriteByte('l')
					_ = binary.Write(&b, binary.BigEndian, int32(i))
				default:
					b.WriteByte('L')
					_ = binary.Write(&b, binary.BigEndian, i)
				}
				return
			}
			b.WriteByte('d')
			_ = binary.Write(&b, binary.BigEndian, f32(x))
		case []any:
			allInt, allNum, allStr := len(x) > 0, len(x) > 0, len(x) > 0
			for _, e := range x {
				allInt = allInt && isInt(e)
				allNum = allNum && isNum(e)
				_, s := e.(string)
				allStr = allStr && s && e != nan
			}
			switch {
			case allInt:
				b.WriteString("[$l#")
				length(len(x))
				for _, e := range x {
					i, _ := strconv.ParseInt(string(e.(json.Number)), 10, 64)
					if i < math.MinInt32 || i > math.MaxInt32 {
						t.Fatalf("jsonToUBJSON: %d does not fit a typed int32 array", i)
					}
					_ = binary.Write(&b, binary.BigEndian, int32(i))
				}
			case allNum:
				b.WriteString("[$d#")
				length(len(x))
				for _, e := range x {
					_ = binary.Write(&b, binary.BigEndian, f32(e))
				}
			case allStr:
				b.WriteString("[#")
				length(len(x))
				for _, e := range x {
					enc(e, true)
				}
			default:
				b.WriteByte('[')
				for _, e := range x {
					enc(e, true)
				}
				b.WriteByte(']')
			}
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			b.WriteByte('{')
			for _, k := range keys {
				if len(k) < 256 {
					b.WriteByte('U')
					b.WriteByte(byte(len(k)))
				} else {
					length(len(k))
				}
				b.WriteString(k)
				enc(x[k], true)
			}
			b.WriteByte('}')
		default:
			t.Fatalf("jsonToUBJSON: %T", v)
		}
	}
	enc(v, true)
	return b.Bytes()
}

// TestUBJSONRoundTrip: small models re-encoded as UBJSON parse to the ensembles of their
// JSON.
func TestUBJSONRoundTrip(t *testing.T) {
	models := map[string][]byte{
		"categorical": []byte(xgbCatModel("40,0,3,33", true)),
	}
	for _, p := range []string{"leaves_agaricus", "leaves_dermatology", "leaves_gblinear_agaricus", "leaves_dart_agaricus"} {
		models[p] = readFixture(t, "xgboost/"+p+"/model.json")
	}
	for name, js := range models {
		ub := jsonToUBJSON(t, js)
		ej, err := Parse(FormatXGBoost, js)
		if err != nil {
			t.Fatalf("%s json: %v", name, err)
		}
		eu, err := Parse(FormatXGBoost, ub)
		if err != nil {
			t.Fatalf("%s ubjson: %v", name, err)
		}
		if !reflect.DeepEqual(ej, eu) {
			t.Errorf("%s: the UBJSON model parses to a different ensemble", name)
		}
	}
}

// TestUBJSONBadInput: malformed UBJSON is refused with a positioned message.
func TestUBJSONBadInput(t *testing.T) {
	good := jsonToUBJSON(t, []byte(xgbCatModel("40,0,3,33", true)))
	if _, err := ParseXGBoostUBJSON(good); err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(good, []byte("split_conditions[$d#L"))
	if i < 0 {
		t.Fatal("layout changed")
	}
	countAt := i + len("split_conditions[$d#L")
	hugeCount := append([]byte(nil), good...)
	binary.BigEndian.PutUint64(hugeCount[countAt:], 1<<40)
	negCount := append([]byte(nil), good...)
	binary.BigEndian.PutUint64(negCount[countAt:], math.MaxUint64)
	typedBool := bytes.Replace(good, []byte("split_conditions[$d#"), []byte("split_conditions[$T#"), 1)
	badMarker := bytes.Replace(good, []byte("SL"), []byte("XL"), 1)
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "offset 0: unexpected end of input, want a value"},
		{"truncated", good[:len(good)/2], "offset "},
		{"truncated in a typed array", good[:countAt+8+5], "count 3: want 0..1 (the bytes left)"},
		{"trailing data", append(append([]byte(nil), good...), '{', '}'), "unexpected data after the model"},
		{"count beyond the data", hugeCount, "count 1099511627776: want 0.."},
		{"negative count", negCount, "count -1: want 0.."},
		{"typed array of booleans", typedBool, "for a typed array"},
		{"unknown marker", badMarker, `unexpected marker 'X'`},
		{"deep nesting", append([]byte("{U\x01a"), bytes.Repeat([]byte("["), 5000)...), "nested deeper than 4096 levels"},
	} {
		_, err := ParseXGBoostUBJSON(c.data)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to mention %q", c.name, err, c.want)
		}
	}
}
