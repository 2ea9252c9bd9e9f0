package sidecar

import (
	"encoding/binary"
	"math"

	"github.com/predictd/predictd/api/wire"
	"google.golang.org/protobuf/encoding/protowire"
)

// response is what the encoders write: scores for nrows rows of width outputs each,
// row-major in out. Only scalar fields; it points into the request.
type response struct {
	model, version string
	req            *request
	out            []float64
	nrows, width   int
}

// appendJSONResponse appends the JSON form of resp to dst:
//
//	{"model":"m","version":"2","predictions":[{"id":"s1","score":0.73}]}
//
// Strings and scores follow wire.AppendJSONString and wire.AppendJSONFloat: scores keep
// every bit (the shortest text that parses back to the same float64), and NaN and ±Inf,
// which JSON cannot carry, are written as null. Multi-output models add "scores" with
// every output; "score" is then the first.
func appendJSONResponse(dst []byte, resp *response) []byte {
	dst = append(dst, `{"model":`...)
	dst = wire.AppendJSONString(dst, resp.model)
	dst = append(dst, `,"version":`...)
	dst = wire.AppendJSONString(dst, resp.version)
	dst = append(dst, `,"predictions":[`...)
	r := resp.req
	for i := 0; i < resp.nrows; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '{')
		if !r.dense {
			dst = append(dst, `"id":`...)
			dst = wire.AppendJSONString(dst, r.id(i))
			dst = append(dst, ',')
		}
		row := resp.out[i*resp.width : (i+1)*resp.width]
		dst = append(dst, `"score":`...)
		dst = wire.AppendJSONFloat(dst, row[0])
		if resp.width > 1 {
			dst = append(dst, `,"scores":[`...)
			for k, v := range row {
				if k > 0 {
					dst = append(dst, ',')
				}
				dst = wire.AppendJSONFloat(dst, v)
			}
			dst = append(dst, ']')
		}
		dst = append(dst, '}')
	}
	dst = append(dst, ']')
	if len(r.degraded) > 0 {
		dst = append(dst, `,"degraded":true,"degraded_groups":[`...)
		for i, g := range r.degraded {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = wire.AppendJSONString(dst, g)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

// appendJSONString is wire.AppendJSONString, the one JSON string rule, under the name
// the sidecar's error writer calls.
func appendJSONString[S string | []byte](dst []byte, s S) []byte {
	return wire.AppendJSONString(dst, s)
}

// appendProtoResponse appends resp as a protobuf PredictResponse.
func appendProtoResponse(dst []byte, resp *response) []byte {
	dst = protowire.AppendTag(dst, wire.ResponseModel, protowire.BytesType)
	dst = protowire.AppendString(dst, resp.model)
	dst = protowire.AppendTag(dst, wire.ResponseVersion, protowire.BytesType)
	dst = protowire.AppendString(dst, resp.version)
	r := resp.req
	for i := 0; i < resp.nrows; i++ {
		row := resp.out[i*resp.width : (i+1)*resp.width]
		var id []byte
		size := protowire.SizeTag(wire.PredictionScore) + 8
		if !r.dense && r.cands[i].id.n > 0 {
			id = r.id(i)
			size += protowire.SizeTag(wire.PredictionID) + protowire.SizeBytes(len(id))
		}
		if resp.width > 1 {
			size += protowire.SizeTag(wire.PredictionScores) + protowire.SizeBytes(8*len(row))
		}
		dst = protowire.AppendTag(dst, wire.ResponsePredictions, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(size))
		if id != nil {
			dst = protowire.AppendTag(dst, wire.PredictionID, protowire.BytesType)
			dst = protowire.AppendBytes(dst, id)
		}
		dst = protowire.AppendTag(dst, wire.PredictionScore, protowire.Fixed64Type)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(row[0]))
		if resp.width > 1 {
			dst = protowire.AppendTag(dst, wire.PredictionScores, protowire.BytesType)
			dst = protowire.AppendVarint(dst, uint64(8*len(row)))
			for _, v := range row {
				dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
			}
		}
	}
	if len(r.degraded) > 0 {
		dst = protowire.AppendTag(dst, wire.ResponseDegraded, protowire.VarintType)
		dst = protowire.AppendVarint(dst, 1)
		for _, g := range r.degraded {
			dst = protowire.AppendTag(dst, wire.ResponseDegradedGroups, protowire.BytesType)
			dst = protowire.AppendString(dst, g)
		}
	}
	return dst
}
