package engine

import "math"

// transform turns raw margins into predictions in place. out holds nrows×NumOutputs
// margins, row-major. For TransformArgmax the result is compacted to one value per row
// (out[:nrows]). With AverageOutput (LightGBM random forest) each margin is first divided
// by NumIterations; the raw margins the caller asked for stay plain sums.
//
// LightGBM models are transformed in float64 as LightGBM's ConvertOutput does; XGBoost
// models in float32 with XGBoost's PredTransform formulas (expf, its clamped sigmoid, its
// softmax with a double sum), so predictions match each library's own rounding.
func (e *Ensemble) transform(out []float64, nrows int) {
	k := e.NumOutputs
	out = out[:nrows*k]
	o := &e.Objective
	if o.AverageOutput && o.NumIterations > 0 {
		n := float64(o.NumIterations)
		for i := range out {
			out[i] /= n
		}
	}
	if e.Semantics == SemanticsXGBoost && transformXGB(o.Transform, out, nrows, k) {
		return
	}
	switch o.Transform {
	case TransformSigmoid, TransformSigmoidOVA:
		s := o.SigmoidK
		for i, x := range out {
			out[i] = 1 / (1 + math.Exp(-s*x))
		}
	case TransformExp:
		for i, x := range out {
			out[i] = math.Exp(x)
		}
	case TransformSoftmax:
		for r := 0; r < nrows; r++ {
			softmax64(out[r*k : r*k+k])
		}
	case TransformArgmax:
		argmax(out, nrows, k)
	case TransformHinge:
		hinge(out)
	case TransformSignSquare:
		// RegressionL2loss::ConvertOutput with sqrt: Common::Sign(x) * x * x, an int
		// sign times x, times x, in double (0 for 0, NaN for NaN).
		for i, x := range out {
			var sign float64
			if x > 0 {
				sign = 1
			} else if x < 0 {
				sign = -1
			}
			out[i] = sign * x * x
		}
	case TransformSoftplus:
		// CrossEntropyLambda::ConvertOutput: std::log(1.0f + std::exp(x)) in double (not
		// log1p: the rounding of 1+exp(x) is LightGBM's).
		for i, x := range out {
			out[i] = math.Log(1 + math.Exp(x))
		}
	}
}

// hinge is XGBoost's binary:hinge PredTransform: 1 when the margin is above 0, else 0
// (NaN included).
func hinge(out []float64) {
	for i, x := range out {
		if x > 0 {
			out[i] = 1
		} else {
			out[i] = 0
		}
	}
}

// softmax64 is LightGBM's Common::Softmax.
func softmax64(v []float64) {
	wmax := v[0]
	for _, x := range v[1:] {
		wmax = max(wmax, x)
	}
	var sum float64
	for i, x := range v {
		v[i] = math.Exp(x - wmax)
		sum += v[i]
	}
	for i := range v {
		v[i] /= sum
	}
}

// transformXGB applies XGBoost's float32 transforms; false for a kind XGBoost does not
// define, which transform then applies in float64.
func transformXGB(kind TransformKind, out []float64, nrows, k int) bool {
	switch kind {
	case TransformIdentity:
	case TransformSigmoid, TransformSigmoidOVA:
		for i, x := range out {
			out[i] = float64(sigmoid32(float32(x)))
		}
	case TransformExp:
		for i, x := range out {
			out[i] = float64(expf(float32(x)))
		}
	case TransformSoftmax:
		for r := 0; r < nrows; r++ {
			softmax32(out[r*k : r*k+k])
		}
	case TransformArgmax:
		argmax(out, nrows, k)
	case TransformHinge:
		hinge(out)
	default:
		return false
	}
	return true
}

// expf is C's expf: the float64 exponential rounded to float32.
func expf(x float32) float32 { return float32(math.Exp(float64(x))) }

// sigmoid32 is XGBoost's common::Sigmoid: 1 / (1 + expf(min(-x, 88.7f))) in float32 (the
// clamp keeps expf finite; its 1e-16 epsilon vanishes in float32 next to 1).
func sigmoid32(x float32) float32 {
	return 1 / (expf(min(-x, 88.7)) + 1)
}

// softmax32 is XGBoost's common::Softmax: float32 exponentials of x - max, summed in
// double, each divided by float32(sum).
func softmax32(v []float64) {
	wmax := float32(v[0])
	for _, x := range v[1:] {
		wmax = max(wmax, float32(x))
	}
	var sum float64
	for i, x := range v {
		y := expf(float32(x) - wmax)
		v[i] = float64(y)
		sum += float64(y)
	}
	s := float32(sum)
	for i, x := range v {
		v[i] = float64(float32(x) / s)
	}
}

// argmax replaces each row of k margins by the index of its largest (the first on ties),
// compacting the result to out[:nrows]. Reading row r (at r*k) before writing out[r] is
// safe because r <= r*k.
func argmax(out []float64, nrows, k int) {
	for r := 0; r < nrows; r++ {
		row := out[r*k : r*k+k]
		best := 0
		for i := 1; i < k; i++ {
			if row[i] > row[best] {
				best = i
			}
		}
		out[r] = float64(best)
	}
}
