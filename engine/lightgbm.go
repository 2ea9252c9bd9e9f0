package engine

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/predictd/predictd/internal/parsefloat"
)

// maxFeatures and maxOutputs bound the header counts a model may declare; both parsers
// check them before allocating anything sized by a count.
const (
	maxFeatures = 1 << 20
	maxOutputs  = 1 << 16
)

// ParseLightGBM parses a LightGBM text model (model.txt, versions v2–v4) into an
// Ensemble. The result is not yet validated; Parse calls Validate.
//
// Supported: numerical splits with decision_type bits (default direction, missing type),
// categorical splits (cat_boundaries / cat_threshold bitsets), multiclass models (tree i
// adds to output i % num_tree_per_iteration), average_output (random forest) and
// every objective LightGBM ships, each with its ConvertOutput (see lgbObjective). Linear
// trees (is_linear=1) and an objective LightGBM does not define are reported as
// ErrUnsupported.
//
// A model loads only when it is whole: the trees must be numbered Tree=0, Tree=1, ... in
// order and end with the "end of trees" line, and when the header has tree_sizes (one
// entry per tree; LightGBM writes it since v3) it must list as many trees as the file
// holds. A file cut short, or with trees added or removed, is refused with a message
// naming what disagrees. After "end of trees" only pandas_categorical and the
// categorical_feature parameter are read, for the category names (categories.go).
//
// Data that starts with '{' is read as LightGBM's dump_model() JSON instead.
func ParseLightGBM(data []byte) (*Ensemble, error) {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return parseLightGBMJSON(data)
	}
	p := lgbParser{data: data}
	return p.parse()
}

type lgbParser struct {
	data []byte
	pos  int
	line int // number of the line last returned by next
}

// next returns the next line without its line terminator; ok is false at the end.
func (p *lgbParser) next() (line string, ok bool) {
	if p.pos >= len(p.data) {
		return "", false
	}
	rest := p.data[p.pos:]
	i := bytes.IndexByte(rest, '\n')
	var l []byte
	if i < 0 {
		l = rest
		p.pos = len(p.data)
	} else {
		l = rest[:i]
		p.pos += i + 1
	}
	p.line++
	return strings.TrimRight(string(l), "\r"), true
}

// lgbField is one key=value line of a tree block.
type lgbField struct {
	value string
	line  int
}

// lgbEndOfTrees is the line LightGBM writes after the last tree.
const lgbEndOfTrees = "end of trees"

// section reads key=value lines up to the next "Tree=" line or the "end of trees" line,
// which it returns, or to the end of the file (returning ""). The header has bare keys
// too (average_output), so bareKeys accepts a line without "="; a tree's lines must all
// be key=value.
func (p *lgbParser) section(what string, bareKeys bool) (map[string]lgbField, string, error) {
	fields := map[string]lgbField{}
	for {
		l, ok := p.next()
		if !ok {
			return fields, "", nil
		}
		if l == lgbEndOfTrees {
			return fields, l, nil
		}
		if strings.HasPrefix(l, "Tree=") {
			return fields, l, nil
		}
		if l == "" {
			continue
		}
		k, v, found := strings.Cut(l, "=")
		if !found && !bareKeys {
			return nil, "", fmt.Errorf("lightgbm: line %d: %s: want key=value, Tree= or %q, got %s", p.line, what, lgbEndOfTrees, describeLine(l))
		}
		// A key twice in one tree is two trees run together: a Tree= line lost
		// (with tree_sizes gone too, nothing else would tell).
		if prev, dup := fields[k]; dup && !bareKeys {
			return nil, "", fmt.Errorf("lightgbm: line %d: %s: key %s again (first at line %d): is a Tree= line missing?", p.line, what, describeLine(k), prev.line)
		}
		fields[k] = lgbField{v, p.line}
	}
}

func (p *lgbParser) parse() (*Ensemble, error) {
	// Header: "tree", then key=value lines up to the first "Tree=" line.
	first := ""
	for {
		l, ok := p.next()
		if !ok {
			return nil, fmt.Errorf("lightgbm: empty model file")
		}
		if l = strings.TrimSpace(l); l != "" {
			first = l
			break
		}
	}
	if first != "tree" {
		return nil, fmt.Errorf("lightgbm: line %d: want \"tree\" (the first line of a LightGBM text model), got a line of %d bytes (not shown): not a LightGBM text model", p.line, len(first))
	}
	header, treeLine, err := p.section("header", true)
	if err != nil {
		return nil, err
	}

	e := &Ensemble{Semantics: SemanticsLightGBM}
	if f, ok := header["version"]; ok {
		switch f.value {
		case "v2", "v3", "v4":
		default:
			return nil, fmt.Errorf("lightgbm: line %d: version=%s: want v2, v3 or v4", f.line, clip(f.value))
		}
	}
	maxIdx, err := headerInt(header, "max_feature_idx", -1)
	if err != nil {
		return nil, err
	}
	if maxIdx < 0 || maxIdx >= maxFeatures {
		return nil, fmt.Errorf("lightgbm: line %d: max_feature_idx=%d: want 0..%d", header["max_feature_idx"].line, maxIdx, maxFeatures-1)
	}
	e.NumFeatures = maxIdx + 1
	numClass, err := headerInt(header, "num_class", 1)
	if err != nil {
		return nil, err
	}
	perIter, err := headerInt(header, "num_tree_per_iteration", numClass)
	if err != nil {
		return nil, err
	}
	if perIter < 1 || perIter > maxOutputs {
		return nil, fmt.Errorf("lightgbm: num_tree_per_iteration=%d: want 1..%d", perIter, maxOutputs)
	}
	if numClass < 1 || numClass > maxOutputs {
		return nil, fmt.Errorf("lightgbm: num_class=%d: want 1..%d", numClass, maxOutputs)
	}
	e.NumOutputs = perIter
	e.BaseScore = make([]float64, perIter)

	if f, ok := header["feature_names"]; ok {
		names := strings.Fields(f.value)
		if len(names) != e.NumFeatures {
			return nil, fmt.Errorf("lightgbm: line %d: feature_names has %d names, max_feature_idx says %d features", f.line, len(names), e.NumFeatures)
		}
		e.FeatureNames = names
	} else {
		e.FeatureNames = make([]string, e.NumFeatures)
		for i := range e.FeatureNames {
			e.FeatureNames[i] = "Column_" + strconv.Itoa(i)
		}
	}

	obj := header["objective"]
	e.Objective, err = lgbObjective(obj.value)
	if err != nil {
		return nil, fmt.Errorf("lightgbm: line %d: %w", obj.line, err)
	}
	if e.Objective.Transform == TransformSoftmax || e.Objective.Transform == TransformSigmoidOVA {
		if perIter != numClass {
			return nil, fmt.Errorf("lightgbm: objective %q with num_class=%d but num_tree_per_iteration=%d", clip(obj.value), numClass, perIter)
		}
	}
	if e.Objective.Transform == TransformSoftmax && numClass < 2 {
		return nil, fmt.Errorf("lightgbm: line %d: objective %q needs num_class >= 2, got %d", obj.line, clip(obj.value), numClass)
	}
	_, e.Objective.AverageOutput = header["average_output"]

	var sizes []int64
	sizesField, haveSizes := header["tree_sizes"]
	if haveSizes {
		if sizes, err = parseInts(sizesField.value); err != nil {
			return nil, fmt.Errorf("lightgbm: line %d: tree_sizes: %w", sizesField.line, err)
		}
	}

	e.NodeStart = []int32{0}
	e.LeafStart = []int32{0}
	e.CatStart = []int32{0}
	for treeLine != lgbEndOfTrees {
		if treeLine == "" {
			if e.NumTrees() == 0 {
				return nil, fmt.Errorf("lightgbm: the model has no trees (no Tree= line before the end of the file)")
			}
			return nil, fmt.Errorf("lightgbm: the file ends in tree %d without the %q line: it is cut short%s", e.NumTrees()-1, lgbEndOfTrees, lgbSizesNote(sizes, haveSizes))
		}
		id, err := strconv.Atoi(strings.TrimPrefix(treeLine, "Tree="))
		if err != nil || id != e.NumTrees() {
			return nil, fmt.Errorf("lightgbm: line %d: %q: want Tree=%d (trees numbered in order)", p.line, clip(treeLine), e.NumTrees())
		}
		treeStart := p.line
		fields, next, err := p.section("tree "+strconv.Itoa(id), false)
		if err != nil {
			return nil, err
		}
		treeLine = next
		err = e.addLGBTree(id, treeStart, fields)
		if next == "" {
			// The last tree may look whole, but nothing says the file ends after it.
			msg := fmt.Sprintf("lightgbm: the file ends in tree %d without the %q line: it is cut short%s", id, lgbEndOfTrees, lgbSizesNote(sizes, haveSizes))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", msg, err)
			}
			return nil, errors.New(msg)
		}
		if err != nil {
			return nil, err
		}
	}
	if e.NumTrees() == 0 {
		return nil, fmt.Errorf("lightgbm: the model has no trees")
	}
	if haveSizes && len(sizes) != e.NumTrees() {
		return nil, fmt.Errorf("lightgbm: line %d: tree_sizes lists %d trees but the file has %d before %q", sizesField.line, len(sizes), e.NumTrees(), lgbEndOfTrees)
	}
	if err := e.lgbCategoryNames(p.data[p.pos:]); err != nil {
		return nil, err
	}
	if e.NumTrees()%perIter != 0 {
		return nil, fmt.Errorf("lightgbm: %d trees is not a multiple of num_tree_per_iteration=%d", e.NumTrees(), perIter)
	}
	e.Objective.NumIterations = e.NumTrees() / perIter
	e.TreeOutput = make([]int32, e.NumTrees())
	for i := range e.TreeOutput {
		e.TreeOutput[i] = int32(i % perIter)
	}
	if len(e.CatBits) == 0 {
		e.CatStart, e.CatBits = nil, nil
	}
	return e, nil
}

// lgbSizesNote adds what tree_sizes expected to a truncation message.
func lgbSizesNote(sizes []int64, have bool) string {
	if !have {
		return ""
	}
	return fmt.Sprintf(" (tree_sizes lists %d trees)", len(sizes))
}

// addLGBTree appends one tree block to e.
func (e *Ensemble) addLGBTree(id, line int, f map[string]lgbField) error {
	where := func(k string) string {
		if fl, ok := f[k]; ok {
			return fmt.Sprintf("lightgbm: line %d: tree %d", fl.line, id)
		}
		return fmt.Sprintf("lightgbm: line %d: tree %d", line, id)
	}
	if lin, ok := f["is_linear"]; ok && strings.TrimSpace(lin.value) != "0" {
		return fmt.Errorf("%s: is_linear=%s: %w: linear trees (a model trained with linear_tree=true)", where("is_linear"), clip(lin.value), ErrUnsupported)
	}
	nl, ok := f["num_leaves"]
	if !ok {
		return fmt.Errorf("%s: missing num_leaves", where(""))
	}
	numLeaves, err := strconv.Atoi(strings.TrimSpace(nl.value))
	if err != nil || numLeaves < 1 {
		return fmt.Errorf("%s: num_leaves=%s: want a positive integer", where("num_leaves"), clip(nl.value))
	}
	// Every count below is checked against the tokens actually present before use.
	leafVals, err := lgbFloats(f, "leaf_value", numLeaves)
	if err != nil {
		return fmt.Errorf("%s: %w", where("leaf_value"), err)
	}
	nInternal := numLeaves - 1
	numCat := 0
	if nc, ok := f["num_cat"]; ok {
		numCat, err = strconv.Atoi(strings.TrimSpace(nc.value))
		if err != nil || numCat < 0 || numCat > max(nInternal, 0) {
			return fmt.Errorf("%s: num_cat=%s: want 0..%d (the number of internal nodes)", where("num_cat"), clip(nc.value), nInternal)
		}
	}
	if nInternal > 0 {
		feat, err := lgbInts(f, "split_feature", nInternal)
		if err != nil {
			return fmt.Errorf("%s: %w", where("split_feature"), err)
		}
		thr, err := lgbFloats(f, "threshold", nInternal)
		if err != nil {
			return fmt.Errorf("%s: %w", where("threshold"), err)
		}
		dt, err := lgbInts(f, "decision_type", nInternal)
		if err != nil {
			return fmt.Errorf("%s: %w", where("decision_type"), err)
		}
		left, err := lgbInts(f, "left_child", nInternal)
		if err != nil {
			return fmt.Errorf("%s: %w", where("left_child"), err)
		}
		right, err := lgbInts(f, "right_child", nInternal)
		if err != nil {
			return fmt.Errorf("%s: %w", where("right_child"), err)
		}
		var catBound, catThr []int64
		setBase := int32(len(e.CatStart) - 1)
		if numCat > 0 {
			catBound, err = lgbInts(f, "cat_boundaries", numCat+1)
			if err != nil {
				return fmt.Errorf("%s: %w", where("cat_boundaries"), err)
			}
			ct, ok := f["cat_threshold"]
			if !ok {
				return fmt.Errorf("%s: missing cat_threshold", where(""))
			}
			catThr, err = parseInts(ct.value)
			if err != nil {
				return fmt.Errorf("%s: cat_threshold: %w", where("cat_threshold"), err)
			}
			if catBound[0] != 0 {
				return fmt.Errorf("%s: cat_boundaries[0]=%d: want 0", where("cat_boundaries"), catBound[0])
			}
			for i := 1; i <= numCat; i++ {
				if catBound[i] < catBound[i-1] {
					return fmt.Errorf("%s: cat_boundaries[%d]=%d is less than cat_boundaries[%d]=%d", where("cat_boundaries"), i, catBound[i], i-1, catBound[i-1])
				}
			}
			if catBound[numCat] != int64(len(catThr)) {
				return fmt.Errorf("%s: cat_boundaries ends at %d but cat_threshold has %d words", where("cat_boundaries"), catBound[numCat], len(catThr))
			}
			for i, w := range catThr {
				if w < 0 || w > math.MaxUint32 {
					return fmt.Errorf("%s: cat_threshold[%d]=%d: not a 32-bit word", where("cat_threshold"), i, w)
				}
			}
		}
		for i := 0; i < nInternal; i++ {
			if feat[i] < 0 || feat[i] >= int64(e.NumFeatures) {
				return fmt.Errorf("%s: split_feature[%d]=%d out of range (max_feature_idx=%d)", where("split_feature"), i, feat[i], e.NumFeatures-1)
			}
			if dt[i] < 0 || dt[i] > 0xF || NodeMissingType(uint8(dt[i])) > MissingNaN {
				return fmt.Errorf("%s: decision_type[%d]=%d: unknown bits", where("decision_type"), i, dt[i])
			}
			for _, c := range [2]struct {
				name string
				v    int64
			}{{"left_child", left[i]}, {"right_child", right[i]}} {
				if c.v >= int64(nInternal) || c.v < -int64(numLeaves) {
					return fmt.Errorf("%s: %s[%d]=%d out of range (num_leaves=%d)", where(c.name), c.name, i, c.v, numLeaves)
				}
			}
			flags := uint8(dt[i])
			cs := int32(-1)
			t := thr[i]
			if flags&FlagCategorical != 0 {
				// For a categorical node, threshold is the index of its bitset.
				ci := int64(t)
				if numCat == 0 {
					return fmt.Errorf("%s: decision_type[%d]=%d: categorical split but num_cat=0", where("decision_type"), i, dt[i])
				}
				if math.IsNaN(t) || t != float64(ci) || ci < 0 || ci >= int64(numCat) {
					return fmt.Errorf("%s: threshold[%d]=%v: categorical split needs a set index in 0..%d (num_cat=%d)", where("threshold"), i, t, numCat-1, numCat)
				}
				cs = setBase + int32(ci)
				t = 0
			} else if math.IsNaN(t) {
				return fmt.Errorf("%s: threshold[%d] is NaN", where("threshold"), i)
			}
			e.Feature = append(e.Feature, int32(feat[i]))
			e.Threshold = append(e.Threshold, t)
			e.Flags = append(e.Flags, flags)
			e.Left = append(e.Left, int32(left[i]))
			e.Right = append(e.Right, int32(right[i]))
			e.CatSet = append(e.CatSet, cs)
		}
		for s := 0; s < numCat; s++ {
			for _, w := range catThr[catBound[s]:catBound[s+1]] {
				e.CatBits = append(e.CatBits, uint32(w))
			}
			e.CatStart = append(e.CatStart, int32(len(e.CatBits)))
		}
	}
	if len(e.Feature) > math.MaxInt32 || len(e.LeafValue)+numLeaves > math.MaxInt32 {
		return fmt.Errorf("%s: too many nodes", where(""))
	}
	e.LeafValue = append(e.LeafValue, leafVals...)
	e.NodeStart = append(e.NodeStart, int32(len(e.Feature)))
	e.LeafStart = append(e.LeafStart, int32(len(e.LeafValue)))
	return nil
}

// lgbObjective maps a LightGBM objective line ("binary sigmoid:1", "regression sqrt") to
// the transform of that objective's ConvertOutput, as LightGBM's predictor rebuilds the
// objective from this line (ObjectiveFunction::CreateObjectiveFunction):
//
//   - regression, regression_l1, quantile, fair, mape: identity, or sign(x)·x² when the
//     line has "sqrt" (reg_sqrt; RegressionL2loss and the losses derived from it);
//   - huber: identity (its constructor turns sqrt off);
//   - poisson, gamma, tweedie: exp (sqrt ignored);
//   - binary: 1/(1+exp(-sigmoid·x)); multiclassova: the same per class; multiclass:
//     softmax; cross_entropy (xentropy): 1/(1+exp(-x)); cross_entropy_lambda
//     (xentlambda): log(1+exp(x));
//   - lambdarank, rank_xendcg, custom/none/null/na, and no objective line at all (a custom
//     objective): identity.
func lgbObjective(line string) (Objective, error) {
	o := Objective{Name: line, Transform: TransformIdentity, SigmoidK: 1}
	fields := strings.Fields(line)
	if len(fields) == 0 {
		// No objective line: a model trained with a custom objective; raw output.
		return o, nil
	}
	sqrt := false
	for _, p := range fields[1:] {
		k, v, _ := strings.Cut(p, ":")
		switch k {
		case "sigmoid":
			s, err := parsefloat.ParseFloat(v, 64)
			if err != nil || math.IsNaN(s) || math.IsInf(s, 0) || s <= 0 {
				return o, fmt.Errorf("objective %q: sigmoid:%s: want a positive number", clip(line), clip(v))
			}
			o.SigmoidK = s
		case "sqrt":
			sqrt = true
		}
	}
	switch fields[0] {
	case "regression", "regression_l2", "l2", "mean_squared_error", "mse", "l2_root", "root_mean_squared_error", "rmse",
		"regression_l1", "l1", "mean_absolute_error", "mae",
		"fair", "quantile", "mape", "mean_absolute_percentage_error":
		if sqrt {
			o.Transform = TransformSignSquare
		}
	case "huber",
		"lambdarank", "rank_xendcg", "xendcg", "xe_ndcg", "xe_ndcg_mart", "xendcg_mart",
		"custom", "none", "null", "na":
	case "binary":
		o.Transform = TransformSigmoid
	case "cross_entropy", "xentropy":
		o.Transform, o.SigmoidK = TransformSigmoid, 1
	case "cross_entropy_lambda", "xentlambda":
		o.Transform = TransformSoftplus
	case "multiclass", "softmax":
		o.Transform = TransformSoftmax
	case "multiclassova", "multiclass_ova", "ova", "ovr":
		o.Transform = TransformSigmoidOVA
	case "poisson", "gamma", "tweedie":
		o.Transform = TransformExp
	default:
		return o, fmt.Errorf("objective %q: %w: objective predictd does not know", clip(fields[0]), ErrUnsupported)
	}
	return o, nil
}

func headerInt(h map[string]lgbField, key string, def int) (int, error) {
	f, ok := h[key]
	if !ok {
		if def < 0 {
			return 0, fmt.Errorf("lightgbm: header has no %s", key)
		}
		return def, nil
	}
	v, err := strconv.Atoi(strings.TrimSpace(f.value))
	if err != nil {
		return 0, fmt.Errorf("lightgbm: line %d: %s=%s: want an integer", f.line, key, clip(f.value))
	}
	return v, nil
}

// lgbInts parses field key of a tree as exactly n integers.
func lgbInts(f map[string]lgbField, key string, n int) ([]int64, error) {
	fl, ok := f[key]
	if !ok {
		return nil, fmt.Errorf("missing %s", key)
	}
	v, err := parseInts(fl.value)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if len(v) != n {
		return nil, fmt.Errorf("%s has %d values, want %d", key, len(v), n)
	}
	return v, nil
}

// lgbFloats parses field key of a tree as exactly n floats.
func lgbFloats(f map[string]lgbField, key string, n int) ([]float64, error) {
	fl, ok := f[key]
	if !ok {
		return nil, fmt.Errorf("missing %s", key)
	}
	toks := strings.Fields(fl.value)
	if len(toks) != n {
		return nil, fmt.Errorf("%s has %d values, want %d", key, len(toks), n)
	}
	out := make([]float64, 0, n)
	for i, s := range toks {
		v, err := parsefloat.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]=%q: not a number", key, i, clip(s))
		}
		out = append(out, v)
	}
	return out, nil
}

func parseInts(s string) ([]int64, error) {
	toks := strings.Fields(s)
	out := make([]int64, 0, len(toks))
	for i, tok := range toks {
		v, err := strconv.ParseInt(tok, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("value %d %q: not an integer", i, clip(tok))
		}
		out = append(out, v)
	}
	return out, nil
}

// clip is how an error shows a value read from a model file: a short token of letters,
// digits and ".+-_=:|<>" (no space, no slash) as is (a number, a name), anything else only by its length, so an
// error (shown by GET /v1/models and in logs) never carries a file's contents: a model
// path that is a link to another file must not publish that file's lines.
// ClipText is clip for other packages' messages: a short, plain token as it is, anything
// else by its length only.
func ClipText(s string) string { return clip(s) }

func clip(s string) string {
	if len(s) <= 32 {
		safe := true
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '+' || c == '-' || c == '_' || c == '=' || c == ':' || c == '|' || c == '<' || c == '>') {
				safe = false
				break
			}
		}
		if safe {
			return s
		}
	}
	return fmt.Sprintf("(%d bytes, not shown)", len(s))
}

// describeLine names a line that is not what the parser wanted: quoted when clip would
// show it, else by its length only, so a file that is not a model at all (a link to
// another file) does not have its lines quoted.
func describeLine(s string) string {
	if c := clip(s); c == s {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("a line of %d bytes (not shown)", len(s))
}

// maxCatWords bounds the categorical bitset words a LightGBM JSON dump may make us
// allocate (its category lists are expanded into bitsets): 2^24 words is 64 MB.
const maxCatWords = 1 << 24

// lgbJSONNode is one node of a LightGBM dump_model() tree, before flattening.
type lgbJSONNode struct {
	isLeaf      bool
	value       float64 // leaf_value
	feature     int64
	threshold   float64
	cats        []int64 // categorical split: the categories that go left
	categorical bool
	defaultLeft bool
	missing     MissingType
	left, right *lgbJSONNode
}

// parseLightGBMJSON parses LightGBM's dump_model() JSON: the same trees as the text
// model, written as nested objects. Categorical thresholds are "a||b||c" category lists.
func parseLightGBMJSON(data []byte) (*Ensemble, error) {
	r := &jsonReader{b: data}
	var (
		name, objective     string
		numClass, perIter   int64 = 1, -1
		maxIdx              int64 = -1
		names               []string
		average             bool
		trees               []*lgbJSONNode
		haveName, haveTrees bool
		pandas              []byte // pandas_categorical, as written
	)
	r.object(func(k string) {
		switch k {
		case "name":
			name, haveName = r.str(), true
		case "num_class":
			numClass = r.integer(32)
		case "num_tree_per_iteration":
			perIter = r.integer(32)
		case "max_feature_idx":
			maxIdx = r.integer(32)
		case "objective":
			objective = r.str()
		case "average_output":
			average = r.boolean()
		case "feature_names":
			names = r.strings()
		case "pandas_categorical":
			r.ws()
			start := r.i
			r.skip(0)
			pandas = r.b[start:r.i]
		case "tree_info":
			haveTrees = true
			r.array(func() {
				var root *lgbJSONNode
				r.object(func(k string) {
					if k == "tree_structure" {
						root = r.lgbJSONNode(0)
					} else {
						r.skip(0)
					}
				})
				if root == nil && r.err == nil {
					r.fail("tree_info[%d] has no tree_structure", len(trees))
				}
				trees = append(trees, root)
			})
		default:
			r.skip(0)
		}
	})
	if r.err == nil {
		if r.ws(); r.i != len(r.b) {
			r.fail("unexpected data after the model")
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("lightgbm json: %w", r.err)
	}
	if !haveName || name != "tree" || !haveTrees {
		return nil, errors.New(`lightgbm json: want a LightGBM dump_model() document ("name": "tree" and "tree_info")`)
	}
	if maxIdx < 0 || maxIdx >= maxFeatures {
		return nil, fmt.Errorf("lightgbm json: max_feature_idx=%d: want 0..%d", maxIdx, maxFeatures-1)
	}
	if perIter < 0 {
		perIter = numClass
	}
	if numClass < 1 || numClass > maxOutputs || perIter < 1 || perIter > maxOutputs {
		return nil, fmt.Errorf("lightgbm json: num_class=%d num_tree_per_iteration=%d: want 1..%d", numClass, perIter, maxOutputs)
	}
	e := &Ensemble{Semantics: SemanticsLightGBM, NumFeatures: int(maxIdx) + 1, NumOutputs: int(perIter)}
	e.BaseScore = make([]float64, e.NumOutputs)
	if len(names) == e.NumFeatures {
		e.FeatureNames = names
	} else {
		// Hand-written dumps (such as leaves' test models) may list fewer names.
		e.FeatureNames = make([]string, e.NumFeatures)
		for i := range e.FeatureNames {
			e.FeatureNames[i] = "Column_" + strconv.Itoa(i)
		}
	}
	var err error
	if e.Objective, err = lgbObjective(objective); err != nil {
		return nil, fmt.Errorf("lightgbm json: %w", err)
	}
	e.Objective.AverageOutput = average
	if len(trees) == 0 || len(trees)%e.NumOutputs != 0 {
		return nil, fmt.Errorf("lightgbm json: %d trees for num_tree_per_iteration=%d", len(trees), e.NumOutputs)
	}
	e.NodeStart, e.LeafStart, e.CatStart = []int32{0}, []int32{0}, []int32{0}
	for t, root := range trees {
		if err := e.addLGBJSONTree(root); err != nil {
			return nil, fmt.Errorf("lightgbm json: tree %d: %w", t, err)
		}
		e.TreeOutput = append(e.TreeOutput, int32(t%e.NumOutputs))
	}
	e.Objective.NumIterations = len(trees) / e.NumOutputs
	// dump_model() has no parameters section: the lists go to the features with
	// categorical splits.
	if names, err := parsePandasCategorical(pandas); err != nil {
		return nil, err
	} else if len(names) > 0 {
		if err := e.placeCategoryNames(names, "", false); err != nil {
			return nil, err
		}
	}
	if len(e.CatBits) == 0 {
		e.CatStart, e.CatBits = nil, nil
	}
	return e, nil
}

// lgbJSONNode reads one tree_structure node and its subtree.
func (r *jsonReader) lgbJSONNode(depth int) *lgbJSONNode {
	if depth > maxJSONDepth {
		r.fail("tree deeper than %d levels", maxJSONDepth)
		return nil
	}
	n := &lgbJSONNode{}
	var haveLeaf, haveSplit bool
	var thrText string
	var thrIsText bool
	r.object(func(k string) {
		switch k {
		case "leaf_value":
			n.value, haveLeaf = r.float(64), true
		case "split_feature":
			n.feature, haveSplit = r.integer(64), true
		case "threshold":
			if r.peek() == '"' {
				thrText, thrIsText = r.str(), true
			} else {
				n.threshold = r.float(64)
			}
		case "decision_type":
			switch d := r.str(); d {
			case "<=":
			case "==":
				n.categorical = true
			default:
				if r.err == nil {
					r.fail("decision_type %q: want <= or ==", clip(d))
				}
			}
		case "default_left":
			n.defaultLeft = r.boolean()
		case "missing_type":
			switch m := r.str(); m {
			case "None":
				n.missing = MissingNone
			case "Zero":
				n.missing = MissingZero
			case "NaN":
				n.missing = MissingNaN
			default:
				if r.err == nil {
					r.fail("missing_type %q: want None, Zero or NaN", clip(m))
				}
			}
		case "left_child":
			n.left = r.lgbJSONNode(depth + 1)
		case "right_child":
			n.right = r.lgbJSONNode(depth + 1)
		default:
			r.skip(0)
		}
	})
	if r.err != nil {
		return nil
	}
	switch {
	case haveLeaf && !haveSplit:
		n.isLeaf = true
	case haveSplit && (n.left == nil || n.right == nil):
		r.fail("split node without left_child and right_child")
	case !haveSplit:
		r.fail("node has neither leaf_value nor split_feature")
	case n.categorical:
		if !thrIsText {
			thrText = strconv.FormatFloat(n.threshold, 'g', -1, 64)
		}
		for _, c := range strings.Split(thrText, "||") {
			v, err := strconv.ParseInt(strings.TrimSpace(c), 10, 32)
			if err != nil || v < 0 {
				r.fail("categorical threshold %q: want non-negative categories joined by ||", clip(thrText))
				return nil
			}
			n.cats = append(n.cats, v)
		}
	case thrIsText:
		v, err := parsefloat.ParseFloat(thrText, 64)
		if err != nil {
			r.fail("threshold %q is not a number", clip(thrText))
		}
		n.threshold = v
	}
	return n
}

// addLGBJSONTree flattens a dump tree: internal nodes in pre-order, leaves in the order
// the walk meets them.
func (e *Ensemble) addLGBJSONTree(root *lgbJSONNode) error {
	if root == nil {
		return errors.New("empty tree")
	}
	n0 := len(e.Feature)
	var nLeaf, nInt int32
	var ref func(n *lgbJSONNode) (int32, error)
	ref = func(n *lgbJSONNode) (int32, error) {
		if n.isLeaf {
			e.LeafValue = append(e.LeafValue, n.value)
			nLeaf++
			return ^(nLeaf - 1), nil
		}
		if n.feature < 0 || n.feature >= int64(e.NumFeatures) {
			return 0, fmt.Errorf("split_feature %d out of range (max_feature_idx=%d)", n.feature, e.NumFeatures-1)
		}
		me := nInt
		nInt++
		cs := int32(-1)
		thr := n.threshold
		if n.categorical {
			var maxCat int64
			for _, c := range n.cats {
				maxCat = max(maxCat, c)
			}
			words := int(maxCat/32) + 1
			if len(e.CatBits)+words > maxCatWords {
				return 0, fmt.Errorf("categorical sets need more than %d words", maxCatWords)
			}
			base := len(e.CatBits)
			e.CatBits = append(e.CatBits, make([]uint32, words)...)
			for _, c := range n.cats {
				e.CatBits[base+int(c/32)] |= 1 << (c % 32)
			}
			cs = int32(len(e.CatStart) - 1)
			e.CatStart = append(e.CatStart, int32(len(e.CatBits)))
			thr = 0
		}
		e.Feature = append(e.Feature, int32(n.feature))
		e.Threshold = append(e.Threshold, thr)
		e.Flags = append(e.Flags, MakeFlags(n.categorical, n.defaultLeft, n.missing))
		e.CatSet = append(e.CatSet, cs)
		e.Left = append(e.Left, 0)
		e.Right = append(e.Right, 0)
		l, err := ref(n.left)
		if err != nil {
			return 0, err
		}
		rr, err := ref(n.right)
		if err != nil {
			return 0, err
		}
		e.Left[n0+int(me)], e.Right[n0+int(me)] = l, rr
		return me, nil
	}
	if _, err := ref(root); err != nil {
		return err
	}
	e.NodeStart = append(e.NodeStart, int32(len(e.Feature)))
	e.LeafStart = append(e.LeafStart, int32(len(e.LeafValue)))
	return nil
}
