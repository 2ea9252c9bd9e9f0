package sidecar

import (
	"math"

	"github.com/predictd/predictd/engine"
)

// Category labels: a feature value sent as a string ("Region": "R24") names a category
// of a model that names its categories (engine.Info.CategoryNames: LightGBM's
// pandas_categorical). The decoders run before the model is known, so a label travels
// to the matrix boxed in a NaN, the span of its bytes in the body as the NaN's payload,
// and resolveLabels replaces each box by its code once the matrix is assembled. Only a
// request that sent a label (request.labels) is scanned, so the rest pay nothing.
//
// A box is a quiet NaN with payload bit 50 set: bits 0-31 hold the span's offset,
// bits 32-49 its length. JSON has no NaN literal and null decodes to Go's math.NaN()
// (bit 50 clear), so only a label makes a box; a protobuf double, which may be any NaN,
// is made canonical by protoDouble where it could read as one.

const (
	labelTag  = 0x7FFC_0000_0000_0000 // exponent all ones, quiet bit, bit 50
	labelMask = 0xFFFC_0000_0000_0000 // sign, exponent, quiet bit and bit 50
	// maxLabelBytes is the longest label a box holds (18 bits of length).
	maxLabelBytes = 1<<18 - 1
)

// protoDouble is a protobuf double as a feature value: a NaN that would read as a box
// (no encoder writes one) becomes the canonical NaN, so that only Feature.label boxes.
func protoDouble(bits uint64) float64 {
	if bits&labelMask == labelTag {
		bits = 0x7FF8_0000_0000_0001 // math.NaN()
	}
	return math.Float64frombits(bits)
}

func boxLabel(sp span) float64 {
	return math.Float64frombits(labelTag | uint64(sp.n)<<32 | uint64(sp.off))
}

func unboxLabel(x float64) (span, bool) {
	b := math.Float64bits(x)
	if b&labelMask != labelTag {
		return span{}, false
	}
	return span{off: uint32(b), n: uint32(b>>32) & maxLabelBytes}, true
}

// categoryCodes builds, per column, the code of each label the model names (nil for a
// column without names, and nil when no column has any). Columns are the model's
// input columns in order; a manifest that renames features keeps the model's order.
func categoryCodes(names [][]string, nf int) []map[string]float64 {
	if len(names) != nf {
		return nil
	}
	var codes []map[string]float64
	for col, labels := range names {
		if labels == nil {
			continue
		}
		if codes == nil {
			codes = make([]map[string]float64, nf)
		}
		codes[col] = engine.CategoryCodes(labels)
	}
	return codes
}

// resolveLabels replaces every boxed label in m64 by its category code, or by NaN
// (missing) for a label the model does not name, as LightGBM's predict() does with a
// pandas category it did not see in training. A label for a column without names is
// a bad request naming the feature.
//
// Dense rows are taken as sent (their doubles are not made canonical): only the
// context's labels are resolved in them, column by column.
func (r *request) resolveLabels(v *version, m64 []float64) error {
	nf := v.nfeat
	if r.dense {
		for _, c := range r.ctxCols {
			sp, ok := unboxLabel(c.value)
			if !ok {
				continue
			}
			code, err := r.labelCode(v, c.col, sp)
			if err != nil {
				return err
			}
			for i := c.col; i < len(m64); i += nf {
				m64[i] = code
			}
		}
		return nil
	}
	for i, x := range m64 {
		if x == x {
			continue
		}
		sp, ok := unboxLabel(x)
		if !ok || uint64(sp.off)+uint64(sp.n) > uint64(len(r.body)) {
			continue
		}
		code, err := r.labelCode(v, i%nf, sp)
		if err != nil {
			if !v.storedColumn(i % nf) {
				return err
			}
			// A NaN the store decoded, not a label: missing either way.
			code = math.NaN()
		}
		m64[i] = code
	}
	return nil
}

// storedColumn tells whether the feature store fills column col.
func (v *version) storedColumn(col int) bool {
	for _, s := range v.stored {
		if col >= s.Column && col < s.Column+max(s.Width, 1) {
			return true
		}
	}
	return false
}

// labelCode is the code of the label at sp in column col: NaN for a label the model
// does not name, an error for a column without labels.
func (r *request) labelCode(v *version, col int, sp span) (float64, error) {
	if v.labels == nil || v.labels[col] == nil {
		return 0, labelError(v, col, r.bytes(sp))
	}
	if code, ok := v.labels[col][string(r.bytes(sp))]; ok {
		return code, nil
	}
	return math.NaN(), nil
}

func labelError(v *version, col int, label []byte) error {
	if len(label) > 64 {
		label = append(label[:61:61], "..."...)
	}
	why := "the model names no categories for it: send the category's code"
	if v.info.CategoryNote != "" {
		why = v.info.CategoryNote + ": send the category's code"
	}
	return badRequest("feature %q: got the string %q, but %s (GET /v1/models/%s shows which features take labels)",
		v.names[col], label, why, v.model)
}

// describeLabels is the /v1/models entry: per feature with names, how many.
func describeLabels(v *version) map[string]int {
	if v.labels == nil {
		return nil
	}
	out := map[string]int{}
	for col, m := range v.labels {
		if m != nil {
			out[v.names[col]] = len(v.catNames[col])
		}
	}
	return out
}
