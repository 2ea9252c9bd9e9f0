// Package engine turns model files into one internal form and scores batches of rows
// against it.
//
// Every format parser (LightGBM text, XGBoost JSON) produces an *Ensemble: a flat,
// structure-of-arrays description of the trees (or the linear model) plus the rules of
// the library that trained it (Semantics). An Ensemble is immutable once built; the
// scoring backends (the C++ core through cgo, or the pure-Go scorer) lay it out for speed
// once at load time, so the hot path only reads.
package engine

// Semantics selects the numeric rules of the library that trained a model. The two
// libraries disagree in ways that change leaves, not just rounding, so each model is
// scored by its own library's rules (see testdata/README.md).
type Semantics uint8

const (
	// SemanticsLightGBM: everything in float64. A numerical split goes left when
	// x <= threshold; missing values follow the node's missing type; categorical splits
	// test the integer category against a bitset (set bit = left); leaves are summed in
	// float64.
	SemanticsLightGBM Semantics = 0
	// SemanticsXGBoost: everything in float32. The input is cast to float32 and a split
	// goes left when float32(x) < threshold (strictly less); NaN follows the node's
	// default direction; the margin starts at the base score and adds trees in order in
	// float32.
	SemanticsXGBoost Semantics = 1
)

func (s Semantics) String() string {
	switch s {
	case SemanticsLightGBM:
		return "lightgbm"
	case SemanticsXGBoost:
		return "xgboost"
	}
	return "unknown"
}

// Node flag bits. They reuse LightGBM's decision_type encoding so LightGBM models need no
// translation; XGBoost nodes always carry MissingNaN plus their default direction.
const (
	FlagCategorical uint8 = 1 << 0 // categorical split: category in the node's set goes left
	FlagDefaultLeft uint8 = 1 << 1 // missing values go left
	// Bits 2–3 hold the missing type (MissingNone, MissingZero, MissingNaN).
	flagMissingShift = 2
	flagMissingMask  = 3 << flagMissingShift
)

// MissingType is LightGBM's per-node rule for missing values.
type MissingType uint8

const (
	// MissingNone: NaN is scored as 0.0; no value takes the default direction.
	MissingNone MissingType = 0
	// MissingZero: NaN and values in [-ZeroThreshold, ZeroThreshold] take the default direction.
	MissingZero MissingType = 1
	// MissingNaN: NaN takes the default direction.
	MissingNaN MissingType = 2
)

// NodeMissingType returns the missing type encoded in node flags.
func NodeMissingType(flags uint8) MissingType {
	return MissingType((flags & flagMissingMask) >> flagMissingShift)
}

// MakeFlags builds node flags from their parts.
func MakeFlags(categorical, defaultLeft bool, missing MissingType) uint8 {
	var f uint8
	if categorical {
		f |= FlagCategorical
	}
	if defaultLeft {
		f |= FlagDefaultLeft
	}
	return f | uint8(missing)<<flagMissingShift
}

// ZeroThreshold is LightGBM's kZeroThreshold, declared there as `1e-35f`: a float literal
// widened to double (1.0000000180025095e-35). LightGBM's predictor scores values in the
// closed interval [-ZeroThreshold, ZeroThreshold] as 0.0, and with MissingZero they (and
// NaN) take the default direction. The conversion rounds the constant to float32 (Go
// constant conversions round to the target type), so the value is exactly LightGBM's.
const ZeroThreshold = float64(float32(1e-35))

// Ensemble is the internal form of a tree ensemble or linear model, shared by every
// format parser and every scoring backend.
//
// Trees are stored concatenated, structure-of-arrays. Tree t owns internal nodes
// [NodeStart[t], NodeStart[t+1]) and leaves [LeafStart[t], LeafStart[t+1]). Child
// references (Left, Right) are local to the tree: a value c >= 0 is internal node
// NodeStart[t]+c, a value c < 0 is leaf LeafStart[t]+^c (that is, -c-1). The root is
// local node 0; a tree with no internal nodes is a single leaf (local leaf 0).
//
// Raw margin of output k for a row x:
//
//	raw[k] = BaseScore[k] + Σ_{t: TreeOutput[t]==k} TreeWeight[t] · leaf_t(x)
//	         (+ LinearBias[k] + Σ_f LinearWeights[f*NumOutputs+k] · x[f] for gblinear)
//
// computed with the arithmetic that Semantics names. An Ensemble must not be modified
// after Validate succeeds; backends keep their own copies of what they need.
type Ensemble struct {
	Semantics    Semantics
	NumFeatures  int      // columns of an input row
	NumOutputs   int      // raw outputs per row (classes for multiclass, else 1)
	FeatureNames []string // len NumFeatures; may hold generated names ("f0", "Column_0")
	Objective    Objective

	// BaseScore is the starting margin of each output (len NumOutputs). XGBoost's base
	// margin already in margin space (logit(base_score) for binary:logistic); zero for
	// LightGBM.
	BaseScore []float64

	NodeStart  []int32   // len NumTrees+1
	LeafStart  []int32   // len NumTrees+1
	TreeOutput []int32   // len NumTrees: which output the tree adds to
	TreeWeight []float64 // len NumTrees, or nil when every weight is 1 (XGBoost dart sets it)

	// Internal nodes, concatenated over all trees.
	Feature   []int32   // split feature, 0 <= Feature < NumFeatures
	Threshold []float64 // numerical threshold; unused (0) for categorical nodes
	Flags     []uint8   // FlagCategorical | FlagDefaultLeft | missing type << 2
	Left      []int32   // local child reference (see above)
	Right     []int32
	CatSet    []int32 // categorical nodes: index of the node's set in CatStart; -1 otherwise

	LeafValue []float64 // concatenated leaf outputs

	// Categorical sets: set s is the bitset CatBits[CatStart[s]:CatStart[s+1]]; category c
	// is in the set when bit c%32 of word c/32 is set.
	CatStart []int32
	CatBits  []uint32

	// Linear model (XGBoost gblinear): weights feature-major, len NumFeatures*NumOutputs,
	// and a bias per output. Nil for tree models.
	LinearWeights []float64
	LinearBias    []float64

	// CategoryNames, when the model names its categories (LightGBM's pandas_categorical,
	// categories.go), holds per feature the label of each category code (code i is
	// CategoryNames[f][i]); nil for a feature without names, and nil when none has.
	// CategoryNote says why names the file holds were not applied; empty otherwise.
	CategoryNames [][]string
	CategoryNote  string
}

// NumTrees returns the number of trees.
func (e *Ensemble) NumTrees() int {
	if len(e.NodeStart) == 0 {
		return 0
	}
	return len(e.NodeStart) - 1
}

// TransformKind is an objective's output transform.
type TransformKind uint8

const (
	TransformIdentity   TransformKind = iota // regression, ranking, raw margins
	TransformSigmoid                         // 1/(1+exp(-k·x)); LightGBM binary, cross_entropy
	TransformSoftmax                         // multiclass softmax over the outputs
	TransformSigmoidOVA                      // LightGBM multiclassova: sigmoid per output
	TransformExp                             // poisson, gamma, tweedie
	TransformArgmax                          // XGBoost multi:softmax: index of the largest margin
	TransformHinge                           // XGBoost binary:hinge: 1 if the margin is > 0, else 0
	TransformSignSquare                      // LightGBM reg_sqrt ("regression sqrt"): sign(x)·x²
	TransformSoftplus                        // LightGBM cross_entropy_lambda: log(1+exp(x))
)

// Objective names the training objective and how raw margins become predictions.
type Objective struct {
	Name      string        // as written in the model file ("binary sigmoid:1", "reg:logistic")
	Transform TransformKind // output transform
	SigmoidK  float64       // slope for TransformSigmoid / TransformSigmoidOVA (1 unless the model says)
	// AverageOutput (LightGBM random forest): the transformed prediction is computed from
	// raw/NumIterations; the raw prediction stays the plain sum, as LightGBM returns it.
	AverageOutput bool
	// NumIterations is NumTrees/NumOutputs, used by AverageOutput.
	NumIterations int
}

// OutputWidth returns how many values a row yields: NumOutputs for raw margins and most
// transforms, 1 for argmax.
func (e *Ensemble) OutputWidth(raw bool) int {
	if !raw && e.Objective.Transform == TransformArgmax {
		return 1
	}
	return e.NumOutputs
}
