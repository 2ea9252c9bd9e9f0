package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/predictd/predictd/internal/parsefloat"
)

// ParseXGBoostJSON parses an XGBoost model saved as JSON (save_model("*.json"), schema
// 1.x to 3.x) or as UBJSON (save_model("*.ubj"), the default of XGBoost 2.x), told apart
// by their first bytes, into an Ensemble. The result is not yet validated; Parse calls
// Validate.
//
// Supported boosters: gbtree, dart (weight_drop becomes TreeWeight) and gblinear.
// Objectives: reg:squarederror, reg:linear, reg:squaredlogerror, reg:pseudohubererror,
// reg:absoluteerror, reg:quantileerror, binary:logitraw, rank:pairwise, rank:ndcg,
// rank:map (identity); binary:logistic, reg:logistic (sigmoid); binary:hinge (1 when the
// margin is > 0, else 0); multi:softprob (softmax); multi:softmax (argmax);
// count:poisson, reg:gamma, reg:tweedie, survival:cox, survival:aft (exp). Any other
// objective is ErrUnsupported.
// Categorical splits (split_type 1, partition and one-hot alike) keep XGBoost's rule: a
// category in the node's set goes to the right child; any other value (a category not in
// the set, a negative value, one at or beyond 2^24) goes to the left child; NaN follows
// default_left. Their split_conditions may be the bare token NaN, which XGBoost writes
// there although it is not JSON. Vector-leaf (multi-output) trees are reported as
// ErrUnsupported.
//
// A model loads only when it is whole: tree_info, gbtree_model_param.num_trees and the
// trees array agree on the number of trees, each tree's id is its index, and every node
// array has tree_param.num_nodes entries.
//
// A LightGBM dump_model() JSON document (no "learner", a top-level "tree_info") is
// handed to the LightGBM JSON parser, since both are .json files.
//
// The base margin follows XGBoost's ProbToMargin in float32: logit(base_score) for
// binary:logistic and reg:logistic, log(base_score) for the exp objectives, base_score
// otherwise (binary:logitraw included). base_score is one value ("5E-1", 1.x-3.0) or
// one per output ("[5E-1]", "[a,b,c]", 3.1+), in the objective's output space.
func ParseXGBoostJSON(data []byte) (*Ensemble, error) {
	if IsUBJSON(data) {
		return ParseXGBoostUBJSON(data)
	}
	if IsXGBoostBinary(data) {
		return nil, fmt.Errorf("xgboost: %w: XGBoost's binary model format (save_model to a name not ending in .json or .ubj); "+
			"load it in XGBoost and save it as model.json or model.ubj", ErrUnsupported)
	}
	m, err := decodeXGBModel(&jsonReader{b: data})
	if err != nil {
		return nil, fmt.Errorf("xgboost: %w", err)
	}
	if m.Learner == nil {
		if m.lightgbmDump {
			// A .json file is taken for XGBoost; this one is a LightGBM dump_model().
			return parseLightGBMJSON(data)
		}
		return nil, errors.New("xgboost: no \"learner\" object: not an XGBoost JSON model")
	}
	return m.ensemble()
}

// IsXGBoostBinary reports whether data starts like XGBoost's own binary model format
// ("binf", or "bs64" for its base64 form), which XGBoost 1.x-3.x writes for any file name
// but *.json and *.ubj.
func IsXGBoostBinary(data []byte) bool {
	return bytes.HasPrefix(data, []byte("binf")) || bytes.HasPrefix(data, []byte("bs64"))
}

// ParseXGBoostUBJSON parses an XGBoost model saved as UBJSON (Universal Binary JSON,
// save_model("*.ubj")). It reads the same fields as ParseXGBoostJSON and builds the
// same Ensemble from the same model saved either way.
func ParseXGBoostUBJSON(data []byte) (*Ensemble, error) {
	m, err := decodeXGBModel(&ubjReader{b: data})
	if err != nil {
		return nil, fmt.Errorf("xgboost ubjson: %w", err)
	}
	if m.Learner == nil {
		return nil, errors.New("xgboost ubjson: no \"learner\" object: not an XGBoost model")
	}
	return m.ensemble()
}

// ensemble converts a decoded XGBoost model.
func (m *xgbModel) ensemble() (*Ensemble, error) {
	l := m.Learner
	p := l.ModelParam
	nfeat, err := xgbParamInt("learner_model_param.num_feature", p.NumFeature, 0)
	if err != nil {
		return nil, err
	}
	if nfeat < 1 || nfeat > maxFeatures {
		return nil, fmt.Errorf("xgboost: learner_model_param.num_feature=%d: want 1..%d", nfeat, maxFeatures)
	}
	numClass, err := xgbParamInt("learner_model_param.num_class", p.NumClass, 0)
	if err != nil {
		return nil, err
	}
	numTarget, err := xgbParamInt("learner_model_param.num_target", p.NumTarget, 1)
	if err != nil {
		return nil, err
	}
	if numClass < 0 || numClass > maxOutputs || numTarget < 0 || numTarget > maxOutputs {
		return nil, fmt.Errorf("xgboost: learner_model_param num_class=%d num_target=%d: want 0..%d", numClass, numTarget, maxOutputs)
	}
	if numClass > 1 && numTarget > 1 {
		return nil, fmt.Errorf("xgboost: num_class=%d with num_target=%d: %w: multi-target multiclass", numClass, numTarget, ErrUnsupported)
	}
	nout := max(numClass, numTarget, 1)

	e := &Ensemble{Semantics: SemanticsXGBoost, NumFeatures: nfeat, NumOutputs: nout}
	if len(l.FeatureNames) == nfeat {
		e.FeatureNames = l.FeatureNames
	} else {
		if len(l.FeatureNames) != 0 {
			return nil, fmt.Errorf("xgboost: learner.feature_names has %d names, num_feature is %d", len(l.FeatureNames), nfeat)
		}
		e.FeatureNames = make([]string, nfeat)
		for i := range e.FeatureNames {
			e.FeatureNames[i] = "f" + strconv.Itoa(i)
		}
	}
	if len(l.FeatureTypes) != 0 && len(l.FeatureTypes) != nfeat {
		return nil, fmt.Errorf("xgboost: learner.feature_types has %d entries, num_feature is %d", len(l.FeatureTypes), nfeat)
	}

	// Objective and base margin.
	base, err := xgbBaseScore(p.BaseScore, nout)
	if err != nil {
		return nil, err
	}
	obj := l.Objective.Name
	e.Objective = Objective{Name: obj, Transform: TransformIdentity, SigmoidK: 1}
	margin := func(b float32) float32 { return b }
	logMargin := func(b float32) float32 { return float32(math.Log(float64(b))) }
	switch {
	case obj == "binary:logistic" || obj == "reg:logistic":
		e.Objective.Transform = TransformSigmoid
		margin = xgbLogit
	case obj == "binary:logitraw":
		// LogisticRaw::ProbToMargin is the identity since XGBoost 1.3.1: base_score is the
		// base margin itself, not a probability. 1.0-1.3.0 applied the logit; current
		// releases score the models those wrote as here.
	case obj == "binary:hinge":
		e.Objective.Transform = TransformHinge
	case obj == "multi:softprob":
		e.Objective.Transform = TransformSoftmax
	case obj == "multi:softmax":
		e.Objective.Transform = TransformArgmax
	case obj == "count:poisson" || obj == "reg:gamma" || obj == "reg:tweedie" ||
		obj == "survival:cox" || obj == "survival:aft":
		e.Objective.Transform = TransformExp
		margin = logMargin
	case obj == "reg:squarederror" || obj == "reg:linear" || obj == "reg:squaredlogerror" ||
		obj == "reg:pseudohubererror" || obj == "reg:absoluteerror" || obj == "reg:quantileerror" ||
		obj == "rank:pairwise" || obj == "rank:ndcg" || obj == "rank:map":
	case obj == "":
		return nil, errors.New("xgboost: learner.objective.name is missing")
	default:
		// reg:expectileerror (XGBoost 3.2) and anything newer: their output transform and
		// base margin are not the ones above, and a guess would mis-score silently.
		return nil, fmt.Errorf("xgboost: learner.objective.name %q: %w: objective predictd does not know (it scores %s)", clip(obj), ErrUnsupported, xgbObjectiveList)
	}
	if (e.Objective.Transform == TransformSoftmax || e.Objective.Transform == TransformArgmax) && numClass < 1 {
		return nil, fmt.Errorf("xgboost: objective %q needs learner_model_param.num_class >= 1, got %d", clip(obj), numClass)
	}
	e.BaseScore = make([]float64, nout)
	for k := range e.BaseScore {
		b := margin(base[k])
		if math.IsNaN(float64(b)) || math.IsInf(float64(b), 0) {
			return nil, fmt.Errorf("xgboost: learner_model_param.base_score=%q gives base margin %v for objective %s", clip(p.BaseScore), b, clip(obj))
		}
		e.BaseScore[k] = float64(b)
	}

	gb := &l.Booster
	switch gb.Name {
	case "gbtree":
		if gb.Model == nil {
			return nil, errors.New("xgboost: gradient_booster.model is missing")
		}
		err = e.addXGBTrees(gb.Model, nil, "gradient_booster.model")
	case "dart":
		if gb.GBTree == nil || gb.GBTree.Model == nil {
			return nil, errors.New("xgboost: dart booster has no gradient_booster.gbtree.model")
		}
		err = e.addXGBTrees(gb.GBTree.Model, gb.WeightDrop, "gradient_booster.gbtree.model")
	case "gblinear":
		if gb.Model == nil {
			return nil, errors.New("xgboost: gradient_booster.model is missing")
		}
		err = e.addXGBLinear(gb.Model.Weights)
	case "":
		return nil, errors.New("xgboost: learner.gradient_booster.name is missing")
	default:
		return nil, fmt.Errorf("xgboost: learner.gradient_booster.name %q: want gbtree, dart or gblinear", clip(gb.Name))
	}
	if err != nil {
		return nil, err
	}
	e.Objective.NumIterations = max(1, e.NumTrees()/nout)
	return e, nil
}

// xgbObjectiveList names the objectives ParseXGBoostJSON scores, for its error message.
const xgbObjectiveList = "reg:squarederror, reg:squaredlogerror, reg:logistic, reg:pseudohubererror, reg:absoluteerror, " +
	"reg:quantileerror, reg:gamma, reg:tweedie, count:poisson, binary:logistic, binary:logitraw, binary:hinge, " +
	"multi:softmax, multi:softprob, rank:pairwise, rank:ndcg, rank:map, survival:cox, survival:aft"

// xgbLogit is XGBoost's ProbToMargin for the logistic objectives, in float32:
// -log(1/p - 1).
func xgbLogit(p float32) float32 {
	t := float32(1)/p - float32(1)
	return -float32(math.Log(float64(t)))
}

// xgbModel is the part of an XGBoost JSON model the parser reads. The json tags document
// the schema (and let the benchmark decode with encoding/json); ParseXGBoostJSON decodes
// with jsonReader or ubjReader, which are faster (see xgboost_timing_test.go).
type xgbModel struct {
	Learner *xgbLearner `json:"learner"`
	// lightgbmDump: the document has LightGBM dump_model()'s "tree_info" at the top.
	lightgbmDump bool
}

type xgbLearner struct {
	FeatureNames []string      `json:"feature_names"`
	FeatureTypes []string      `json:"feature_types"`
	Booster      xgbBooster    `json:"gradient_booster"`
	ModelParam   xgbModelParam `json:"learner_model_param"`
	Objective    struct {
		Name string `json:"name"`
	} `json:"objective"`
}

type xgbModelParam struct {
	BaseScore  string `json:"base_score"`
	NumClass   string `json:"num_class"`
	NumFeature string `json:"num_feature"`
	NumTarget  string `json:"num_target"`
}

type xgbBooster struct {
	Name       string         `json:"name"`
	Model      *xgbTreesModel `json:"model"`
	GBTree     *xgbBooster    `json:"gbtree"`      // dart
	WeightDrop []float32      `json:"weight_drop"` // dart
}

// xgbTreesModel holds the fields of a gbtree model and of a gblinear model.
type xgbTreesModel struct {
	Param    xgbGBTreeParam `json:"gbtree_model_param"`
	TreeInfo []int32        `json:"tree_info"`
	Trees    []xgbTree      `json:"trees"`
	Weights  []float32      `json:"weights"` // gblinear
}

type xgbGBTreeParam struct {
	NumTrees string `json:"num_trees"`
}

type xgbTree struct {
	ID          string       `json:"-"` // "id": a number, kept as its text
	Param       xgbTreeParam `json:"tree_param"`
	Left        []int32      `json:"left_children"`
	Right       []int32      `json:"right_children"`
	SplitIndex  []int64      `json:"split_indices"`
	SplitCond   []float32    `json:"split_conditions"`
	DefaultLeft xgbBools     `json:"default_left"`
	SplitType   []int32      `json:"split_type"`
	// Categorical splits: node CategoryNodes[k] (in increasing node order) sends the
	// categories Categories[CategorySegments[k] : CategorySegments[k]+CategorySizes[k]]
	// to its right child.
	Categories       []int64 `json:"categories"`
	CategoryNodes    []int64 `json:"categories_nodes"`
	CategorySegments []int64 `json:"categories_segments"`
	CategorySizes    []int64 `json:"categories_sizes"`
}

type xgbTreeParam struct {
	NumNodes       string `json:"num_nodes"`
	SizeLeafVector string `json:"size_leaf_vector"`
}

// xgbBools decodes default_left, which XGBoost writes as 0/1 numbers (1.x) or booleans.
type xgbBools []bool

func (b *xgbBools) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if bytes.Equal(data, []byte("null")) {
		*b = nil
		return nil
	}
	if len(data) < 2 || data[0] != '[' || data[len(data)-1] != ']' {
		return errors.New("default_left: want an array")
	}
	inner := bytes.TrimSpace(data[1 : len(data)-1])
	out := (*b)[:0]
	if len(inner) == 0 {
		*b = out
		return nil
	}
	for len(inner) > 0 {
		tok := inner
		if i := bytes.IndexByte(inner, ','); i >= 0 {
			tok, inner = inner[:i], inner[i+1:]
		} else {
			inner = nil
		}
		switch string(bytes.TrimSpace(tok)) {
		case "0", "false":
			out = append(out, false)
		case "1", "true":
			out = append(out, true)
		default:
			return fmt.Errorf("default_left[%d]=%q: want 0, 1, true or false", len(out), clip(string(tok)))
		}
	}
	*b = out
	return nil
}

// addXGBTrees converts gbtree trees. XGBoost node ids are renumbered: internal nodes and
// leaves reachable from the root, in depth-first order (pruned, deleted nodes are
// unreachable and dropped).
//
// A categorical node (split_type 1) sends a category in its set to XGBoost's right child
// and everything else to the left child. The Ensemble's categorical rule is "in the set
// goes left", so the node's children are swapped and its default direction with them.
func (e *Ensemble) addXGBTrees(m *xgbTreesModel, weights []float32, where string) error {
	if s := m.Param.NumTrees; s != "" && s != strconv.Itoa(len(m.Trees)) {
		return fmt.Errorf("xgboost: %s: gbtree_model_param.num_trees=%s but the trees array has %d trees", where, clip(s), len(m.Trees))
	}
	if len(m.TreeInfo) != len(m.Trees) {
		return fmt.Errorf("xgboost: %s: tree_info has %d entries for %d trees", where, len(m.TreeInfo), len(m.Trees))
	}
	if weights != nil && len(weights) != len(m.Trees) {
		return fmt.Errorf("xgboost: dart weight_drop has %d entries for %d trees", len(weights), len(m.Trees))
	}
	e.NodeStart = []int32{0}
	e.LeafStart = []int32{0}
	e.CatStart = []int32{0}
	e.TreeOutput = make([]int32, len(m.Trees))
	if weights != nil {
		e.TreeWeight = make([]float64, len(weights))
		for i, w := range weights {
			e.TreeWeight[i] = float64(w)
		}
	}
	var (
		local []int32 // XGBoost node id → local reference
		stack []int32
		catOf []int32 // XGBoost node id → index into categories_nodes, -1 if none
	)
	for t := range m.Trees {
		tr := &m.Trees[t]
		ctx := fmt.Sprintf("xgboost: %s.trees[%d]", where, t)
		if tr.ID != "" && tr.ID != strconv.Itoa(t) {
			return fmt.Errorf("%s: id=%s: want %d (trees in order, none missing)", ctx, clip(tr.ID), t)
		}
		out := m.TreeInfo[t]
		if out < 0 || int(out) >= e.NumOutputs {
			return fmt.Errorf("xgboost: %s.tree_info[%d]=%d out of range (%d outputs)", where, t, out, e.NumOutputs)
		}
		e.TreeOutput[t] = out
		if s := tr.Param.SizeLeafVector; s != "" && s != "0" && s != "1" {
			return fmt.Errorf("%s: tree_param.size_leaf_vector=%s: %w: vector-leaf trees", ctx, clip(s), ErrUnsupported)
		}
		n := len(tr.Left)
		if n == 0 {
			return fmt.Errorf("%s: no nodes", ctx)
		}
		if s := tr.Param.NumNodes; s != "" && s != strconv.Itoa(n) {
			return fmt.Errorf("%s: tree_param.num_nodes=%s but left_children has %d entries", ctx, clip(s), n)
		}
		for _, f := range []struct {
			name string
			n    int
		}{{"right_children", len(tr.Right)}, {"split_indices", len(tr.SplitIndex)}, {"split_conditions", len(tr.SplitCond)}, {"default_left", len(tr.DefaultLeft)}} {
			if f.n != n {
				return fmt.Errorf("%s: %s has %d entries, left_children has %d", ctx, f.name, f.n, n)
			}
		}
		if len(tr.SplitType) != 0 && len(tr.SplitType) != n {
			return fmt.Errorf("%s: split_type has %d entries, left_children has %d", ctx, len(tr.SplitType), n)
		}
		if cap(catOf) < n {
			catOf = make([]int32, n)
		}
		catOf = catOf[:n]
		if err := xgbCatIndex(tr, catOf, ctx); err != nil {
			return err
		}
		if cap(local) < n {
			local = make([]int32, n)
		}
		local = local[:n]
		const unseen = math.MinInt32
		for i := range local {
			local[i] = unseen
		}
		isLeaf := func(id int32) bool { return tr.Left[id] == -1 }
		nodeBase := len(e.Feature)
		var nInt, nLeaf int32
		assign := func(id int32, parent int) error {
			if id < 0 || int(id) >= n {
				return fmt.Errorf("%s: node %d: child %d out of range (%d nodes)", ctx, parent, id, n)
			}
			if local[id] != unseen {
				return fmt.Errorf("%s: node %d is reached twice (a cycle or a shared child)", ctx, id)
			}
			if isLeaf(id) {
				if tr.Right[id] != -1 {
					return fmt.Errorf("%s: node %d: left child -1 but right child %d", ctx, id, tr.Right[id])
				}
				v := tr.SplitCond[id]
				local[id] = ^nLeaf
				nLeaf++
				e.LeafValue = append(e.LeafValue, float64(v))
				return nil
			}
			local[id] = nInt
			nInt++
			f := tr.SplitIndex[id]
			if f < 0 || f >= int64(e.NumFeatures) {
				return fmt.Errorf("%s: node %d: split_indices=%d out of range (num_feature=%d)", ctx, id, f, e.NumFeatures)
			}
			cs := int32(-1)
			thr := float64(tr.SplitCond[id])
			if k := catOf[id]; k >= 0 {
				// split_conditions of a categorical node is unused (XGBoost writes NaN).
				set, err := e.addXGBCatSet(tr, int(k), ctx, id)
				if err != nil {
					return err
				}
				cs, thr = set, 0
			} else if thr != thr {
				return fmt.Errorf("%s: node %d: split_conditions is NaN", ctx, id)
			}
			e.Feature = append(e.Feature, int32(f))
			e.Threshold = append(e.Threshold, thr)
			// Categorical nodes: children swapped (see above), so default_left is too.
			e.Flags = append(e.Flags, MakeFlags(cs >= 0, tr.DefaultLeft[id] != (cs >= 0), MissingNaN))
			e.Left = append(e.Left, 0) // filled when the children are numbered
			e.Right = append(e.Right, 0)
			e.CatSet = append(e.CatSet, cs)
			stack = append(stack, id)
			return nil
		}
		stack = stack[:0]
		if err := assign(0, -1); err != nil {
			return err
		}
		for len(stack) > 0 {
			id := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if err := assign(tr.Left[id], int(id)); err != nil {
				return err
			}
			if err := assign(tr.Right[id], int(id)); err != nil {
				return err
			}
			li := nodeBase + int(local[id])
			l, r := local[tr.Left[id]], local[tr.Right[id]]
			if e.CatSet[li] >= 0 {
				l, r = r, l
			}
			e.Left[li], e.Right[li] = l, r
		}
		if len(e.Feature) > math.MaxInt32/2 || len(e.LeafValue) > math.MaxInt32/2 {
			return fmt.Errorf("%s: too many nodes", ctx)
		}
		e.NodeStart = append(e.NodeStart, int32(len(e.Feature)))
		e.LeafStart = append(e.LeafStart, int32(len(e.LeafValue)))
	}
	if len(e.CatBits) == 0 {
		e.CatStart, e.CatBits = nil, nil
	}
	return nil
}

// xgbMaxCat is XGBoost's OutOfRangeCat (2^24): its predictor sends a value at or above it
// to the left child, and no category of a split can reach it.
const xgbMaxCat = 1 << 24

// xgbCatIndex checks a tree's categorical arrays and fills catOf: for each node id, its
// index into categories_nodes, or -1 for a numerical node or a leaf.
func xgbCatIndex(tr *xgbTree, catOf []int32, ctx string) error {
	for i := range catOf {
		catOf[i] = -1
	}
	nc := len(tr.CategoryNodes)
	if len(tr.CategorySegments) != nc || len(tr.CategorySizes) != nc {
		return fmt.Errorf("%s: categories_nodes has %d entries, categories_segments %d, categories_sizes %d", ctx, nc, len(tr.CategorySegments), len(tr.CategorySizes))
	}
	if nc > 0 && len(tr.SplitType) == 0 {
		return fmt.Errorf("%s: categories_nodes has %d entries but split_type is missing", ctx, nc)
	}
	for id, st := range tr.SplitType {
		if st != 0 && st != 1 && tr.Left[id] != -1 {
			return fmt.Errorf("%s: node %d: split_type=%d: want 0 (numerical) or 1 (categorical)", ctx, id, st)
		}
	}
	prev := int64(-1)
	for k, id := range tr.CategoryNodes {
		if id <= prev || id >= int64(len(catOf)) {
			return fmt.Errorf("%s: categories_nodes[%d]=%d: want increasing node ids below %d", ctx, k, id, len(catOf))
		}
		prev = id
		if tr.SplitType[id] != 1 || tr.Left[id] == -1 {
			return fmt.Errorf("%s: categories_nodes[%d]=%d is not a categorical split (split_type %d)", ctx, k, id, tr.SplitType[id])
		}
		seg, size := tr.CategorySegments[k], tr.CategorySizes[k]
		if seg < 0 || size < 1 || seg > int64(len(tr.Categories)) || size > int64(len(tr.Categories))-seg {
			return fmt.Errorf("%s: node %d: categories_segments=%d categories_sizes=%d: want a non-empty range of the %d categories", ctx, id, seg, size, len(tr.Categories))
		}
		catOf[id] = int32(k)
	}
	for id, st := range tr.SplitType {
		if st == 1 && tr.Left[id] != -1 && catOf[id] < 0 {
			return fmt.Errorf("%s: node %d: split_type=1 (categorical) but categories_nodes does not list it", ctx, id)
		}
	}
	return nil
}

// addXGBCatSet appends the category set of categories_nodes[k] (node id) as a bitset and
// returns its index.
func (e *Ensemble) addXGBCatSet(tr *xgbTree, k int, ctx string, id int32) (int32, error) {
	seg, size := tr.CategorySegments[k], tr.CategorySizes[k]
	cats := tr.Categories[seg : seg+size]
	var top int64
	for _, c := range cats {
		if c < 0 || c >= xgbMaxCat {
			return 0, fmt.Errorf("%s: node %d: category %d: want 0..%d", ctx, id, c, xgbMaxCat-1)
		}
		top = max(top, c)
	}
	words := int(top/32) + 1
	if len(e.CatBits)+words > maxCatWords {
		return 0, fmt.Errorf("%s: categorical sets need more than %d words", ctx, maxCatWords)
	}
	base := len(e.CatBits)
	e.CatBits = append(e.CatBits, make([]uint32, words)...)
	for _, c := range cats {
		e.CatBits[base+int(c/32)] |= 1 << (c % 32)
	}
	e.CatStart = append(e.CatStart, int32(len(e.CatBits)))
	return int32(len(e.CatStart) - 2), nil
}

// addXGBLinear converts a gblinear weight vector: (num_feature+1) × num_output entries,
// feature-major, the last row being the bias.
func (e *Ensemble) addXGBLinear(w []float32) error {
	nf, k := e.NumFeatures, e.NumOutputs
	if len(w) != (nf+1)*k {
		return fmt.Errorf("xgboost: gblinear weights has %d entries, want (num_feature+1)×outputs = %d", len(w), (nf+1)*k)
	}
	e.LinearWeights = make([]float64, nf*k)
	for i := range e.LinearWeights {
		e.LinearWeights[i] = float64(w[i])
	}
	e.LinearBias = make([]float64, k)
	for i := range e.LinearBias {
		e.LinearBias[i] = float64(w[nf*k+i])
	}
	e.NodeStart = []int32{0}
	e.LeafStart = []int32{0}
	return nil
}

// xgbBaseScore parses base_score: "5E-1" (1.x) or "[5E-1]" / "[a,b,...]" (2.x+), one
// value or one per output.
func xgbBaseScore(s string, nout int) ([]float32, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return nil, errors.New("xgboost: learner_model_param.base_score is missing")
	}
	if strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") {
		t = t[1 : len(t)-1]
	}
	parts := strings.Split(t, ",")
	if len(parts) != 1 && len(parts) != nout {
		return nil, fmt.Errorf("xgboost: learner_model_param.base_score %q has %d values for %d outputs", clip(s), len(parts), nout)
	}
	out := make([]float32, nout)
	for i := range out {
		p := parts[0]
		if len(parts) > 1 {
			p = parts[i]
		}
		v, err := parsefloat.ParseFloat(strings.TrimSpace(p), 32)
		if err != nil {
			return nil, fmt.Errorf("xgboost: learner_model_param.base_score %q: not a number", clip(s))
		}
		out[i] = float32(v)
	}
	return out, nil
}

func xgbParamInt(name, s string, def int) (int, error) {
	if s == "" {
		if def > 0 || name == "learner_model_param.num_class" {
			return def, nil
		}
		return 0, fmt.Errorf("xgboost: %s is missing", name)
	}
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("xgboost: %s=%q: want an integer", name, clip(s))
	}
	return v, nil
}

// xgbReader is what the XGBoost model decoder needs from a document reader. jsonReader
// (JSON text) and ubjReader (UBJSON) implement it, so both formats decode through the
// same code into the same xgbModel. After the first error every method is a no-op and
// finish returns that error.
type xgbReader interface {
	// object calls field for each key; field must consume the key's value.
	object(field func(key string))
	// array calls elem for each element; elem must consume it.
	array(elem func())
	str() string
	// scalar reads a string, or a number as its decimal text.
	scalar() string
	skip(depth int)
	strings() []string
	bools() []bool
	f32s() []float32
	i32s() []int32
	i64s() []int64
	fail(format string, args ...any)
	// finish checks that nothing follows the document and returns the first error.
	finish() error
}

// decodeXGBModel reads the fields of xgbModel from an XGBoost JSON or UBJSON document
// and skips the rest (base_weights, loss_changes, ...), checking the syntax throughout.
func decodeXGBModel(r xgbReader) (*xgbModel, error) {
	var m xgbModel
	r.object(func(k string) {
		if k != "learner" {
			m.lightgbmDump = m.lightgbmDump || k == "tree_info"
			r.skip(0)
			return
		}
		l := &xgbLearner{}
		m.Learner = l
		r.object(func(k string) {
			switch k {
			case "feature_names":
				l.FeatureNames = r.strings()
			case "feature_types":
				l.FeatureTypes = r.strings()
			case "gradient_booster":
				xgbDecodeBooster(r, &l.Booster, 0)
			case "learner_model_param":
				p := &l.ModelParam
				r.object(func(k string) {
					switch k {
					case "base_score":
						p.BaseScore = r.scalar()
					case "num_class":
						p.NumClass = r.scalar()
					case "num_feature":
						p.NumFeature = r.scalar()
					case "num_target":
						p.NumTarget = r.scalar()
					default:
						r.skip(0)
					}
				})
			case "objective":
				r.object(func(k string) {
					if k == "name" {
						l.Objective.Name = r.str()
					} else {
						r.skip(0)
					}
				})
			default:
				r.skip(0)
			}
		})
	})
	if err := r.finish(); err != nil {
		return nil, err
	}
	return &m, nil
}

func xgbDecodeBooster(r xgbReader, b *xgbBooster, depth int) {
	if depth > 2 {
		r.fail("gradient_booster nested too deep")
		return
	}
	r.object(func(k string) {
		switch k {
		case "name":
			b.Name = r.str()
		case "model":
			b.Model = &xgbTreesModel{}
			xgbDecodeTrees(r, b.Model)
		case "gbtree":
			b.GBTree = &xgbBooster{}
			xgbDecodeBooster(r, b.GBTree, depth+1)
		case "weight_drop":
			b.WeightDrop = r.f32s()
			if b.WeightDrop == nil {
				b.WeightDrop = []float32{}
			}
		default:
			r.skip(0)
		}
	})
}

func xgbDecodeTrees(r xgbReader, m *xgbTreesModel) {
	r.object(func(k string) {
		switch k {
		case "gbtree_model_param":
			r.object(func(k string) {
				if k == "num_trees" {
					m.Param.NumTrees = r.scalar()
				} else {
					r.skip(0)
				}
			})
		case "tree_info":
			m.TreeInfo = r.i32s()
		case "weights":
			m.Weights = r.f32s()
		case "trees":
			r.array(func() {
				m.Trees = append(m.Trees, xgbTree{})
				xgbDecodeTree(r, &m.Trees[len(m.Trees)-1])
			})
		default:
			r.skip(0)
		}
	})
}

func xgbDecodeTree(r xgbReader, t *xgbTree) {
	r.object(func(k string) {
		switch k {
		case "id":
			t.ID = r.scalar()
		case "tree_param":
			r.object(func(k string) {
				switch k {
				case "num_nodes":
					t.Param.NumNodes = r.scalar()
				case "size_leaf_vector":
					t.Param.SizeLeafVector = r.scalar()
				default:
					r.skip(0)
				}
			})
		case "left_children":
			t.Left = r.i32s()
		case "right_children":
			t.Right = r.i32s()
		case "split_indices":
			t.SplitIndex = r.i64s()
		case "split_conditions":
			t.SplitCond = r.f32s()
		case "default_left":
			t.DefaultLeft = r.bools()
		case "split_type":
			t.SplitType = r.i32s()
		case "categories":
			t.Categories = r.i64s()
		case "categories_nodes":
			t.CategoryNodes = r.i64s()
		case "categories_segments":
			t.CategorySegments = r.i64s()
		case "categories_sizes":
			t.CategorySizes = r.i64s()
		default:
			r.skip(0)
		}
	})
}

// jsonReader is a minimal pull parser over an in-memory JSON document. After the first
// error every method is a no-op and r.err holds the error, positioned by line and column.
// Besides strict JSON it accepts the NaN / Infinity / -Infinity literals XGBoost writes
// for non-finite floats (Validate then rejects them where they matter).
type jsonReader struct {
	b   []byte
	i   int
	err error
}

// maxJSONDepth bounds the nesting skip follows, so hostile input cannot exhaust the stack.
const maxJSONDepth = 1 << 12

func (r *jsonReader) fail(format string, args ...any) {
	if r.err != nil {
		return
	}
	off := min(r.i, len(r.b))
	line := 1 + bytes.Count(r.b[:off], []byte("\n"))
	col := off - bytes.LastIndexByte(r.b[:off], '\n')
	r.err = fmt.Errorf("line %d, column %d: %s", line, col, fmt.Sprintf(format, args...))
	r.i = len(r.b)
}

func (r *jsonReader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

func (r *jsonReader) peek() byte {
	r.ws()
	if r.i >= len(r.b) {
		return 0
	}
	return r.b[r.i]
}

func (r *jsonReader) consume(c byte) bool {
	if r.err == nil && r.peek() == c {
		r.i++
		return true
	}
	return false
}

// object calls field for each key; field must consume the key's value.
func (r *jsonReader) object(field func(key string)) {
	if r.err != nil {
		return
	}
	if !r.consume('{') {
		r.unexpected("an object")
		return
	}
	if r.consume('}') {
		return
	}
	for r.err == nil {
		key := r.str()
		if !r.consume(':') {
			r.unexpected("':' after an object key")
			return
		}
		field(key)
		if r.consume(',') {
			continue
		}
		if !r.consume('}') {
			r.unexpected("',' or '}' in an object")
		}
		return
	}
}

// array calls elem for each element; elem must consume it.
func (r *jsonReader) array(elem func()) {
	if r.err != nil {
		return
	}
	if !r.consume('[') {
		r.unexpected("an array")
		return
	}
	if r.consume(']') {
		return
	}
	for r.err == nil {
		elem()
		if r.consume(',') {
			continue
		}
		if !r.consume(']') {
			r.unexpected("',' or ']' in an array")
		}
		return
	}
}

func (r *jsonReader) unexpected(want string) {
	if r.err != nil {
		return
	}
	if r.peek() == 0 {
		r.fail("unexpected end of input, want %s", want)
		return
	}
	r.fail("unexpected %q, want %s", r.b[r.i], want)
}

func (r *jsonReader) str() string {
	if r.err != nil {
		return ""
	}
	if r.peek() != '"' {
		r.unexpected("a string")
		return ""
	}
	start := r.i
	r.i++
	escaped := false
	for r.i < len(r.b) {
		switch c := r.b[r.i]; {
		case c == '\\':
			escaped = true
			r.i += 2
			continue
		case c == '"':
			r.i++
			raw := r.b[start:r.i]
			if !escaped {
				return string(raw[1 : len(raw)-1])
			}
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				r.i = start
				r.fail("bad string: %v", err)
				return ""
			}
			return s
		case c < 0x20:
			r.fail("control character in a string")
			return ""
		}
		r.i++
	}
	r.fail("unterminated string")
	return ""
}

// token returns the bytes of a number or literal (true, false, null, NaN, -Infinity).
func (r *jsonReader) token() []byte {
	if r.err != nil {
		return nil
	}
	r.ws()
	start := r.i
	for r.i < len(r.b) {
		c := r.b[r.i]
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '+' || c == '.' {
			r.i++
			continue
		}
		break
	}
	if r.i == start {
		r.unexpected("a value")
		return nil
	}
	return r.b[start:r.i]
}

// scalar reads a string, or a number kept as its text (XGBoost writes parameters as
// strings; a number is accepted too).
func (r *jsonReader) scalar() string {
	if r.peek() == '"' {
		return r.str()
	}
	return string(r.token())
}

func (r *jsonReader) skip(depth int) {
	if depth > maxJSONDepth {
		r.fail("JSON nested deeper than %d levels", maxJSONDepth)
		return
	}
	switch r.peek() {
	case '{':
		r.object(func(string) { r.skip(depth + 1) })
	case '[':
		r.array(func() { r.skip(depth + 1) })
	case '"':
		r.str()
	default:
		start := r.i
		tok := r.token()
		switch string(tok) {
		case "true", "false", "null", "NaN", "Infinity", "-Infinity":
			return
		}
		if _, err := parsefloat.ParseFloat(string(tok), 64); err != nil && r.err == nil {
			r.i = start
			r.fail("%q is not a JSON value", clip(string(tok)))
		}
	}
}

func (r *jsonReader) finish() error {
	if r.err == nil {
		if r.ws(); r.i != len(r.b) {
			r.fail("unexpected data after the model")
		}
	}
	return r.err
}

func (r *jsonReader) bools() []bool {
	out := []bool{}
	r.array(func() { out = append(out, r.boolean()) })
	return out
}

func (r *jsonReader) strings() []string {
	out := []string{}
	r.array(func() { out = append(out, r.str()) })
	return out
}

func (r *jsonReader) float(bits int) float64 {
	start := r.i
	tok := r.token()
	if r.err != nil {
		return 0
	}
	switch string(tok) {
	case "NaN":
		return math.NaN()
	case "Infinity":
		return math.Inf(1)
	case "-Infinity":
		return math.Inf(-1)
	}
	v, err := parsefloat.ParseFloat(string(tok), bits)
	if err != nil {
		r.i = start
		r.ws()
		r.fail("%q is not a float%d", clip(string(tok)), bits)
	}
	return v
}

func (r *jsonReader) integer(bits int) int64 {
	start := r.i
	tok := r.token()
	if r.err != nil {
		return 0
	}
	v, err := strconv.ParseInt(string(tok), 10, bits)
	if err != nil {
		r.i = start
		r.ws()
		r.fail("%q is not an int%d", clip(string(tok)), bits)
	}
	return v
}

func (r *jsonReader) boolean() bool {
	start := r.i
	switch tok := r.token(); string(tok) {
	case "0", "false":
		return false
	case "1", "true":
		return true
	default:
		if r.err == nil {
			r.i = start
			r.ws()
			r.fail("%q: want 0, 1, true or false", clip(string(tok)))
		}
		return false
	}
}

func (r *jsonReader) f32s() []float32 {
	var out []float32
	r.array(func() { out = append(out, float32(r.float(32))) })
	return out
}

func (r *jsonReader) i32s() []int32 {
	var out []int32
	r.array(func() { out = append(out, int32(r.integer(32))) })
	return out
}

func (r *jsonReader) i64s() []int64 {
	var out []int64
	r.array(func() { out = append(out, r.integer(64)) })
	return out
}
