// Package parsefloat is strconv.ParseFloat for numbers of any length.
//
// strconv.ParseFloat misreads a decimal number with more than 800 digits before its
// point: its slow path keeps 800 digits and places the point after the digits it kept,
// so "1" followed by 850 zeros and "e-850" reads as 1e-51, not 1. ParseFloat here gives
// strconv such a number rewritten with the point first, 0.DIGITSe±N (leading and
// trailing zeros dropped, the exponent adjusted), which strconv reads correctly. Strings
// of up to 800 bytes, which cannot hold that many digits, go to strconv as they are.
package parsefloat

import (
	"errors"
	"strconv"
)

// maxDigits is the length of strconv's decimal buffer.
const maxDigits = 800

// ParseFloat is strconv.ParseFloat(s, bitSize), correct for long decimal numbers too.
// An error is a *strconv.NumError naming s.
func ParseFloat(s string, bitSize int) (float64, error) {
	if len(s) <= maxDigits {
		return strconv.ParseFloat(s, bitSize)
	}
	c, ok := canonical(s)
	if !ok {
		return strconv.ParseFloat(s, bitSize)
	}
	v, err := strconv.ParseFloat(c, bitSize)
	if ne := (*strconv.NumError)(nil); errors.As(err, &ne) {
		err = &strconv.NumError{Func: ne.Func, Num: s, Err: ne.Err}
	}
	return v, err
}

// canonical rewrites a decimal number, [+-]digits[.digits][(e|E)[+-]digits], as
// [-]0.DIGITSeN with the same value, the first digit not zero (or as [-]0); ok is false
// for anything else (strconv's other forms, or not a number).
func canonical(s string) (string, bool) {
	i := 0
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	intStart := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	intEnd, fracStart, fracEnd := i, i, i
	if i < len(s) && s[i] == '.' {
		i++
		fracStart = i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		fracEnd = i
	}
	if intEnd == intStart && fracEnd == fracStart {
		return "", false
	}
	exp := 0
	if i < len(s) && s[i]|0x20 == 'e' {
		i++
		eneg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			eneg = s[i] == '-'
			i++
		}
		if i == len(s) {
			return "", false
		}
		for ; i < len(s) && isDigit(s[i]); i++ {
			if exp < 1<<30 { // beyond any float's range; the sum below stays an int
				exp = exp*10 + int(s[i]-'0')
			}
		}
		if eneg {
			exp = -exp
		}
	}
	if i != len(s) {
		return "", false
	}
	// The digits are s[intStart:intEnd] then s[fracStart:fracEnd], the point after
	// the first part: value = 0.DIGITS × 10^point.
	digit := func(k int) byte {
		if n := intEnd - intStart; k < n {
			return s[intStart+k]
		} else {
			return s[fracStart+k-n]
		}
	}
	n := intEnd - intStart + fracEnd - fracStart
	point := intEnd - intStart
	first := 0
	for first < n && digit(first) == '0' {
		first++
	}
	last := n
	for last > first && digit(last-1) == '0' {
		last--
	}
	out := make([]byte, 0, last-first+24)
	if neg {
		out = append(out, '-')
	}
	if first == last {
		return string(append(out, '0')), true
	}
	out = append(out, '0', '.')
	for k := first; k < last; k++ {
		out = append(out, digit(k))
	}
	out = append(out, 'e')
	out = strconv.AppendInt(out, int64(point-first+exp), 10)
	return string(out), true
}

func isDigit(c byte) bool { return c-'0' < 10 }
