package engine

import (
	"fmt"
	"math"
)

// Validate checks everything a scoring backend relies on, so that a backend can walk the
// trees without bounds checks: array lengths agree, counts are sane, every child reference
// is in range, every internal node and every leaf of a tree is reached exactly once from
// its root (no cycles, no sharing, nothing unreachable), features are in range,
// thresholds are not NaN, categorical sets exist, and weights, leaf values and base scores
// are finite. Errors name the tree and node.
func (e *Ensemble) Validate() error {
	if e == nil {
		return fmt.Errorf("invalid model: nil ensemble")
	}
	if err := e.validateHeader(); err != nil {
		return err
	}
	if err := e.validateObjective(); err != nil {
		return err
	}
	if err := e.validateTreeTable(); err != nil {
		return err
	}
	nsets, err := e.validateCatSets()
	if err != nil {
		return err
	}
	var w treeWalk
	for t := 0; t < e.NumTrees(); t++ {
		if err := e.validateTree(t, nsets, &w); err != nil {
			return err
		}
	}
	return e.validateLinear()
}

// validateHeader checks the semantics, the feature and output counts, and the base scores.
func (e *Ensemble) validateHeader() error {
	if e.Semantics != SemanticsLightGBM && e.Semantics != SemanticsXGBoost {
		return fmt.Errorf("invalid model: unknown semantics %d", e.Semantics)
	}
	if e.NumFeatures < 1 || e.NumFeatures > maxFeatures {
		return fmt.Errorf("invalid model: %d features: want 1..%d", e.NumFeatures, maxFeatures)
	}
	if e.NumOutputs < 1 || e.NumOutputs > maxOutputs {
		return fmt.Errorf("invalid model: %d outputs: want 1..%d", e.NumOutputs, maxOutputs)
	}
	if len(e.FeatureNames) != e.NumFeatures {
		return fmt.Errorf("invalid model: %d feature names for %d features", len(e.FeatureNames), e.NumFeatures)
	}
	if e.CategoryNames != nil && len(e.CategoryNames) != e.NumFeatures {
		return fmt.Errorf("invalid model: category names for %d features, the model has %d", len(e.CategoryNames), e.NumFeatures)
	}
	if len(e.BaseScore) != e.NumOutputs {
		return fmt.Errorf("invalid model: %d base scores for %d outputs", len(e.BaseScore), e.NumOutputs)
	}
	for k, b := range e.BaseScore {
		if !finite(b) {
			return fmt.Errorf("invalid model: base score of output %d is %v", k, b)
		}
	}
	return nil
}

// validateTreeTable checks that the per-tree and per-node arrays have matching lengths and
// that the tree table covers exactly the nodes and leaves.
func (e *Ensemble) validateTreeTable() error {
	if len(e.NodeStart) == 0 && len(e.LeafStart) == 0 {
		if len(e.Feature)+len(e.LeafValue)+len(e.TreeOutput) != 0 {
			return fmt.Errorf("invalid model: nodes without a tree table (NodeStart is empty)")
		}
	} else {
		if len(e.NodeStart) != len(e.LeafStart) {
			return fmt.Errorf("invalid model: NodeStart has %d entries, LeafStart %d", len(e.NodeStart), len(e.LeafStart))
		}
		if e.NodeStart[0] != 0 || e.LeafStart[0] != 0 {
			return fmt.Errorf("invalid model: NodeStart[0]=%d, LeafStart[0]=%d: want 0", e.NodeStart[0], e.LeafStart[0])
		}
	}
	nt := e.NumTrees()
	if len(e.TreeOutput) != nt {
		return fmt.Errorf("invalid model: TreeOutput has %d entries for %d trees", len(e.TreeOutput), nt)
	}
	if e.TreeWeight != nil && len(e.TreeWeight) != nt {
		return fmt.Errorf("invalid model: TreeWeight has %d entries for %d trees", len(e.TreeWeight), nt)
	}
	nn := len(e.Feature)
	for _, a := range []struct {
		name string
		n    int
	}{{"Threshold", len(e.Threshold)}, {"Flags", len(e.Flags)}, {"Left", len(e.Left)}, {"Right", len(e.Right)}} {
		if a.n != nn {
			return fmt.Errorf("invalid model: %s has %d entries, Feature has %d", a.name, a.n, nn)
		}
	}
	if e.CatSet != nil && len(e.CatSet) != nn {
		return fmt.Errorf("invalid model: CatSet has %d entries for %d nodes", len(e.CatSet), nn)
	}
	if nt > 0 && (int(e.NodeStart[nt]) != nn || int(e.LeafStart[nt]) != len(e.LeafValue)) {
		return fmt.Errorf("invalid model: the last tree ends at node %d, leaf %d; there are %d nodes, %d leaves",
			e.NodeStart[nt], e.LeafStart[nt], nn, len(e.LeafValue))
	}
	if nt == 0 && (nn != 0 || len(e.LeafValue) != 0) {
		return fmt.Errorf("invalid model: %d nodes and %d leaves but no trees", nn, len(e.LeafValue))
	}
	if nt == 0 && e.LinearWeights == nil {
		return fmt.Errorf("invalid model: no trees and no linear model")
	}
	return nil
}

// validateCatSets checks the categorical sets' word ranges and returns how many sets
// there are.
func (e *Ensemble) validateCatSets() (int, error) {
	if len(e.CatStart) == 0 {
		if len(e.CatBits) != 0 {
			return 0, fmt.Errorf("invalid model: %d categorical words without CatStart", len(e.CatBits))
		}
		return 0, nil
	}
	nsets := len(e.CatStart) - 1
	if e.CatStart[0] != 0 || int(e.CatStart[nsets]) != len(e.CatBits) {
		return 0, fmt.Errorf("invalid model: categorical sets span words %d..%d of %d", e.CatStart[0], e.CatStart[nsets], len(e.CatBits))
	}
	for s := 0; s < nsets; s++ {
		if e.CatStart[s+1] < e.CatStart[s] {
			return 0, fmt.Errorf("invalid model: categorical set %d ends (%d) before it starts (%d)", s, e.CatStart[s+1], e.CatStart[s])
		}
	}
	return nsets, nil
}

// treeWalk is validateTree's scratch space, reused from tree to tree.
type treeWalk struct {
	seen  []bool // internal nodes, then leaves
	stack []int32
}

// validateTree checks tree t: its node and leaf ranges, output, weight and leaf values,
// each node's fields (nsets categorical sets exist), and that every internal node and leaf
// is reached exactly once from the root.
func (e *Ensemble) validateTree(t, nsets int, w *treeWalk) error {
	n0, n1 := int(e.NodeStart[t]), int(e.NodeStart[t+1])
	l0, l1 := int(e.LeafStart[t]), int(e.LeafStart[t+1])
	if n1 < n0 || n1 > len(e.Feature) || l1 < l0 || l1 > len(e.LeafValue) {
		return fmt.Errorf("invalid model: tree %d: node range [%d,%d) or leaf range [%d,%d) is out of order", t, n0, n1, l0, l1)
	}
	ni, nl := n1-n0, l1-l0
	if nl != ni+1 {
		return fmt.Errorf("invalid model: tree %d: %d internal nodes need %d leaves, has %d", t, ni, ni+1, nl)
	}
	if out := e.TreeOutput[t]; out < 0 || int(out) >= e.NumOutputs {
		return fmt.Errorf("invalid model: tree %d: output %d out of range (%d outputs)", t, out, e.NumOutputs)
	}
	if e.TreeWeight != nil && !finite(e.TreeWeight[t]) {
		return fmt.Errorf("invalid model: tree %d: weight %v is not finite", t, e.TreeWeight[t])
	}
	for j := l0; j < l1; j++ {
		if !finite(e.LeafValue[j]) {
			return fmt.Errorf("invalid model: tree %d: leaf %d value %v is not finite", t, j-l0, e.LeafValue[j])
		}
	}
	for i := n0; i < n1; i++ {
		if err := e.validateNode(t, i-n0, i, nsets); err != nil {
			return err
		}
	}
	if ni == 0 {
		return nil
	}
	return e.validateReach(t, n0, ni, nl, w)
}

// validateNode checks the fields of internal node i, node j of tree t.
func (e *Ensemble) validateNode(t, j, i, nsets int) error {
	if f := e.Feature[i]; f < 0 || int(f) >= e.NumFeatures {
		return fmt.Errorf("invalid model: tree %d: node %d: feature %d out of range (%d features)", t, j, f, e.NumFeatures)
	}
	fl := e.Flags[i]
	if fl&^(FlagCategorical|FlagDefaultLeft|flagMissingMask) != 0 || NodeMissingType(fl) > MissingNaN {
		return fmt.Errorf("invalid model: tree %d: node %d: unknown flag bits %#x", t, j, fl)
	}
	if fl&FlagCategorical != 0 {
		if e.CatSet == nil {
			return fmt.Errorf("invalid model: tree %d: node %d is categorical but the model has no CatSet", t, j)
		}
		if s := e.CatSet[i]; s < 0 || int(s) >= nsets {
			return fmt.Errorf("invalid model: tree %d: node %d: categorical set %d out of range (%d sets)", t, j, s, nsets)
		}
	} else if math.IsNaN(e.Threshold[i]) {
		return fmt.Errorf("invalid model: tree %d: node %d: threshold is NaN", t, j)
	}
	return nil
}

// validateReach walks tree t (ni internal nodes from n0, nl leaves) from its root with an
// explicit stack: every child reference must be in range and every node and leaf reached
// exactly once (no cycles, no sharing, nothing unreachable).
func (e *Ensemble) validateReach(t, n0, ni, nl int, w *treeWalk) error {
	if cap(w.seen) < ni+nl {
		w.seen = make([]bool, ni+nl)
	}
	seen := w.seen[:ni+nl]
	clear(seen)
	seen[0] = true
	stack := append(w.stack[:0], 0)
	reached := 1
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for side, c := range [2]int32{e.Left[n0+int(v)], e.Right[n0+int(v)]} {
			var idx int
			if c >= 0 {
				if int(c) >= ni {
					return fmt.Errorf("invalid model: tree %d: node %d: %s child %d out of range (%d internal nodes)", t, v, sideName(side), c, ni)
				}
				idx = int(c)
			} else {
				leaf := int(^c)
				if leaf >= nl {
					return fmt.Errorf("invalid model: tree %d: node %d: %s child leaf %d out of range (%d leaves)", t, v, sideName(side), leaf, nl)
				}
				idx = ni + leaf
			}
			if seen[idx] {
				return fmt.Errorf("invalid model: tree %d: node %d: %s child %d is reached twice (a cycle or a shared node)", t, v, sideName(side), c)
			}
			seen[idx] = true
			reached++
			if c >= 0 {
				stack = append(stack, c)
			}
		}
	}
	w.stack = stack
	if reached != ni+nl {
		return fmt.Errorf("invalid model: tree %d: %d of %d nodes and leaves are unreachable from the root", t, ni+nl-reached, ni+nl)
	}
	return nil
}

// validateLinear checks the linear part: shapes, and finite weights and biases.
func (e *Ensemble) validateLinear() error {
	if e.LinearWeights == nil {
		if e.LinearBias != nil {
			return fmt.Errorf("invalid model: linear bias without linear weights")
		}
		return nil
	}
	if len(e.LinearWeights) != e.NumFeatures*e.NumOutputs || len(e.LinearBias) != e.NumOutputs {
		return fmt.Errorf("invalid model: linear model has %d weights and %d biases; want %d and %d",
			len(e.LinearWeights), len(e.LinearBias), e.NumFeatures*e.NumOutputs, e.NumOutputs)
	}
	for i, w := range e.LinearWeights {
		if !finite(w) {
			return fmt.Errorf("invalid model: linear weight of feature %d, output %d is %v", i/e.NumOutputs, i%e.NumOutputs, w)
		}
	}
	for k, b := range e.LinearBias {
		if !finite(b) {
			return fmt.Errorf("invalid model: linear bias of output %d is %v", k, b)
		}
	}
	return nil
}

func (e *Ensemble) validateObjective() error {
	o := &e.Objective
	switch o.Transform {
	case TransformIdentity, TransformExp, TransformArgmax, TransformHinge, TransformSignSquare, TransformSoftplus:
	case TransformSigmoid, TransformSigmoidOVA:
		if !finite(o.SigmoidK) || o.SigmoidK == 0 {
			return fmt.Errorf("invalid model: objective %q: sigmoid slope %v", clip(o.Name), o.SigmoidK)
		}
	case TransformSoftmax:
		if e.NumOutputs < 2 {
			return fmt.Errorf("invalid model: objective %q: softmax over %d output", clip(o.Name), e.NumOutputs)
		}
	default:
		return fmt.Errorf("invalid model: objective %q: unknown transform %d", clip(o.Name), o.Transform)
	}
	if o.AverageOutput && o.NumIterations < 1 {
		return fmt.Errorf("invalid model: average_output with %d iterations", o.NumIterations)
	}
	return nil
}

func sideName(side int) string {
	if side == 0 {
		return "left"
	}
	return "right"
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
