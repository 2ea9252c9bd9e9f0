package wire

import (
	"encoding/json"
	"math"
	"testing"
	"unicode/utf8"
)

func TestAppendJSONString(t *testing.T) {
	f := func(in, wantJSON, wantBack string) {
		t.Helper()
		for _, b := range [][]byte{AppendJSONString(nil, in), AppendJSONString(nil, []byte(in))} {
			if string(b) != wantJSON {
				t.Errorf("%q encodes to %s, want %s", in, b, wantJSON)
			}
			var got string
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("%q encodes to invalid JSON %s: %v", in, b, err)
			}
			if got != wantBack {
				t.Errorf("%q round-trips to %q, want %q", in, got, wantBack)
			}
		}
	}
	f("", `""`, "")
	f("plain", `"plain"`, "plain")
	f(`q"b\`, `"q\"b\\"`, `q"b\`)
	f("tab\tnl\ncr\r", `"tab\tnl\ncr\r"`, "tab\tnl\ncr\r")
	f("\x00\x1f\x7f\b", `"\u0000\u001f\u007f\u0008"`, "\x00\x1f\x7f\b")
	f("<&>/", `"<&>/"`, "<&>/")
	f("ünï✓😀\u2028", "\"ünï✓😀\u2028\"", "ünï✓😀\u2028")
	f("\ufffd", "\"\ufffd\"", "\ufffd")
	f("bad\xffbyte", `"bad\ufffdbyte"`, "bad\ufffdbyte")
	f("cut\xe2\x9c", `"cut\ufffd\ufffd"`, "cut\ufffd\ufffd")
	f("surrogate\xed\xa0\x80", `"surrogate\ufffd\ufffd\ufffd"`, "surrogate\ufffd\ufffd\ufffd")
	f("overlong\xc0\xaf", `"overlong\ufffd\ufffd"`, "overlong\ufffd\ufffd")
	f("\xf4\x90\x80\x80", `"\ufffd\ufffd\ufffd\ufffd"`, "\ufffd\ufffd\ufffd\ufffd") // above U+10FFFF
}

// TestAppendJSONStringAllocs: appending to a buffer with room allocates nothing, for
// strings and byte slices, valid or not.
func TestAppendJSONStringAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	for _, s := range []string{"plain-id", "ünï✓😀 \"q\" \n", "bad\xff\xe2\x9c"} {
		b := []byte(s)
		if n := testing.AllocsPerRun(100, func() { buf = AppendJSONString(buf[:0], s) }); n != 0 {
			t.Errorf("string %q: %.0f allocs", s, n)
		}
		if n := testing.AllocsPerRun(100, func() { buf = AppendJSONString(buf[:0], b) }); n != 0 {
			t.Errorf("[]byte %q: %.0f allocs", s, n)
		}
	}
}

// FuzzAppendJSONString: any bytes become one valid JSON string, valid UTF-8 comes back
// unchanged, and string and []byte give the same text.
func FuzzAppendJSONString(f *testing.F) {
	f.Add([]byte("req-1"))
	f.Add([]byte("\xff\xfe\"\\\n\x7f"))
	f.Add([]byte("✓\xe2\x9c"))
	f.Fuzz(func(t *testing.T, in []byte) {
		b := AppendJSONString(nil, in)
		if s := AppendJSONString(nil, string(in)); string(s) != string(b) {
			t.Fatalf("%q: []byte gives %s, string %s", in, b, s)
		}
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q encodes to invalid JSON %s: %v", in, b, err)
		}
		if utf8.Valid(in) && got != string(in) {
			t.Fatalf("valid UTF-8 %q came back as %q", in, got)
		}
	})
}

func TestAppendJSONFloat(t *testing.T) {
	f := func(v float64, want string) {
		t.Helper()
		if got := string(AppendJSONFloat(nil, v)); got != want {
			t.Errorf("%v: got %s, want %s", v, got, want)
		}
	}
	f(0, "0")
	f(-1.5, "-1.5")
	f(0.1, "0.1")
	f(1.0/3, "0.3333333333333333")
	f(1e21, "1e+21")
	f(5e-324, "5e-324")
	f(math.NaN(), "null")
	f(math.Inf(1), "null")
	f(math.Inf(-1), "null")
}
