package sidecar

import (
	"unicode/utf8"

	"github.com/predictd/predictd/api/wire"
	"google.golang.org/protobuf/encoding/protowire"
)

// peekModel reads the model's name from the start of a request body without decoding
// the rest, so that admission can run before the body is decoded (docs/production.md,
// "Request path"): a request its model's bulkhead rejects then costs no decoding. It
// finds the name only where the body's first field is the model:
//
//   - JSON: the body starts with {"model":"NAME" (whitespace allowed between tokens),
//     NAME without escapes, valid UTF-8, not empty;
//   - protobuf: the first field is field 1 (model), length-delimited, valid UTF-8, not
//     empty, as protobuf encoders write it (fields in number order).
//
// Otherwise it returns nil, and admission waits for the decoded request. end is the
// offset just past the name's field (the bytes a decoder reads for it). peekModel only
// reads body. The decoder still reads the whole body: a later duplicate model field
// wins there, and the sidecar then admits the request again for the decoded model.
func peekModel(body []byte, proto bool) (name []byte, end int) {
	if proto {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 || num != wire.RequestModel || typ != protowire.BytesType {
			return nil, 0
		}
		v, m := protowire.ConsumeBytes(body[n:])
		if m < 0 || len(v) == 0 || !utf8.Valid(v) {
			return nil, 0
		}
		return v, n + m
	}
	i := jsonSkipWS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return nil, 0
	}
	i = jsonSkipWS(body, i+1)
	const key = `"model"`
	if len(body)-i < len(key) || string(body[i:i+len(key)]) != key {
		return nil, 0
	}
	i = jsonSkipWS(body, i+len(key))
	if i >= len(body) || body[i] != ':' {
		return nil, 0
	}
	i = jsonSkipWS(body, i+1)
	if i >= len(body) || body[i] != '"' {
		return nil, 0
	}
	start := i + 1
	for j := start; j < len(body); j++ {
		switch c := body[j]; {
		case c == '"':
			if j == start || !utf8.Valid(body[start:j]) {
				return nil, 0
			}
			return body[start:j], j + 1
		case c == '\\' || c < 0x20:
			return nil, 0 // an escape (or an error the decoder reports): no peeking
		}
	}
	return nil, 0
}

// jsonSkipWS returns the offset of the first byte at or after i that is not JSON
// whitespace.
func jsonSkipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// peekVersion reads the version field that follows the model's (end: peekModel's end),
// so that a request's version can be resolved before its body is decoded: nil and true
// when the next field is not the version (the latest serves, unless a later field names
// one: the decoder then finds another version than the one resolved, and decodes on the
// generic path); false when the next field is a version peekVersion does not read
// (escaped, or malformed: the decoder reports it).
func peekVersion(body []byte, end int, proto bool) (ver []byte, ok bool) {
	if end <= 0 || end > len(body) {
		return nil, false
	}
	if proto {
		num, typ, n := protowire.ConsumeTag(body[end:])
		if n < 0 || num != wire.RequestVersion {
			return nil, true
		}
		v, m := protowire.ConsumeBytes(body[end+n:])
		if typ != protowire.BytesType || m < 0 || !utf8.Valid(v) {
			return nil, false
		}
		return v, true
	}
	i := jsonSkipWS(body, end)
	if i >= len(body) || body[i] != ',' {
		return nil, true
	}
	i = jsonSkipWS(body, i+1)
	const key = `"version"`
	if len(body)-i < len(key) || string(body[i:i+len(key)]) != key {
		return nil, true
	}
	i = jsonSkipWS(body, i+len(key))
	if i >= len(body) || body[i] != ':' {
		return nil, false
	}
	s := jsonScanner{b: body, i: jsonSkipWS(body, i+1)}
	switch c := s.peek(); {
	case c == '"':
		start := s.i + 1
		for j := start; j < len(body); j++ {
			switch c := body[j]; {
			case c == '"':
				if !utf8.Valid(body[start:j]) {
					return nil, false
				}
				return body[start:j], true
			case c == '\\' || c < 0x20:
				return nil, false
			}
		}
		return nil, false
	case c == 'n':
		return nil, len(body)-s.i >= 4 && string(body[s.i:s.i+4]) == "null"
	default:
		return s.numToken()
	}
}
