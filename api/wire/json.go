package wire

import (
	"math"
	"unicode/utf8"

	"github.com/predictd/predictd/sidecar/jsonnum"
)

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s to dst as a JSON string, by one rule for every body and log
// line predictd writes:
//
//   - '"' and '\' are escaped with a backslash; newline, carriage return and tab as \n,
//     \r and \t; every other byte below 0x20, and DEL (0x7f), as \u00XX;
//   - each byte that is not part of valid UTF-8 becomes \ufffd (U+FFFD), as
//     utf8.DecodeRune reads it, so any input gives a valid JSON string;
//   - everything else, valid multi-byte UTF-8 included, is copied as it is.
//
// Valid UTF-8 therefore round-trips exactly. It allocates only to grow dst.
func AppendJSONString[S string | []byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f && c != '"' && c != '\\' {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			// string() of at most 4 bytes that do not escape is not allocated.
			r, n := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
			if r != utf8.RuneError || n > 1 {
				i += n
				continue
			}
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			if c >= utf8.RuneSelf {
				dst = append(dst, `\ufffd`...)
			} else {
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// AppendJSONFloat appends v as a JSON number: the shortest text that parses back to the
// same float64, as strconv's 'g' with precision -1 writes it (jsonnum.AppendFloat, the
// same bytes in half the time). NaN and ±Inf, which JSON cannot carry, are written as
// null, which the API reads as a missing value.
func AppendJSONFloat(dst []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(dst, "null"...)
	}
	return jsonnum.AppendFloat(dst, v)
}
