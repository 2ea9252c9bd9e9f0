package engine

// goScorer is the pure-Go backend. It is the reference the C++ core is cross-checked
// against, so it follows each library's rules literally: one row at a time, each tree
// walked from its root, leaves summed in tree order. It allocates nothing per call and is
// safe for concurrent use (it only reads after newGoScorer).
type goScorer struct {
	sem   Semantics
	nfeat int
	nout  int
	base  []float64

	roots    []int32 // per tree: the root as a global reference (see goNode.left)
	treeOut  []int32
	weight   []float64 // nil when every tree weight is 1
	weight32 []float32
	nodes    []goNode
	leaf     []float64
	leaf32   []float32

	catStart []int32
	catBits  []uint32

	linW   []float64 // feature-major, nfeat*nout; nil for tree models
	linW32 []float32
	linB   []float64
}

// goNode is one internal node in the scorer's own layout.
type goNode struct {
	thr   float64
	thr32 float32 // thr rounded to float32 (XGBoost compares in float32)
	feat  int32
	// Children as global references: c >= 0 is nodes[c], c < 0 is leaf[^c].
	left, right int32
	cat         int32 // categorical set, -1 for numerical nodes
	kind        uint8
	defLeft     bool
}

// Decision kinds, resolved once from the node flags.
const (
	kindNumNone uint8 = iota // LightGBM missing type None: NaN is scored as 0.0
	kindNumZero              // LightGBM missing type Zero: NaN and |x| <= ZeroThreshold take the default
	kindNumNaN               // NaN takes the default direction
	kindCat                  // categorical bitset
)

// newGoScorer lays a validated ensemble out for the pure-Go backend.
func newGoScorer(e *Ensemble) (scorer, error) {
	s := &goScorer{
		sem:      e.Semantics,
		nfeat:    e.NumFeatures,
		nout:     e.NumOutputs,
		base:     append([]float64(nil), e.BaseScore...),
		treeOut:  append([]int32(nil), e.TreeOutput...),
		leaf:     append([]float64(nil), e.LeafValue...),
		catStart: append([]int32(nil), e.CatStart...),
		catBits:  append([]uint32(nil), e.CatBits...),
	}
	if e.TreeWeight != nil {
		s.weight = append([]float64(nil), e.TreeWeight...)
		s.weight32 = make([]float32, len(s.weight))
		for i, w := range s.weight {
			s.weight32[i] = float32(w)
		}
	}
	s.leaf32 = make([]float32, len(s.leaf))
	for i, v := range s.leaf {
		s.leaf32[i] = float32(v)
	}
	nt := e.NumTrees()
	s.roots = make([]int32, nt)
	s.nodes = make([]goNode, len(e.Feature))
	for t := 0; t < nt; t++ {
		n0, l0 := e.NodeStart[t], e.LeafStart[t]
		global := func(c int32) int32 {
			if c >= 0 {
				return n0 + c
			}
			return ^(l0 + ^c)
		}
		if e.NodeStart[t+1] == n0 {
			s.roots[t] = ^l0 // a single-leaf tree
		} else {
			s.roots[t] = n0
		}
		for i := n0; i < e.NodeStart[t+1]; i++ {
			fl := e.Flags[i]
			nd := goNode{
				thr:     e.Threshold[i],
				thr32:   float32(e.Threshold[i]),
				feat:    e.Feature[i],
				left:    global(e.Left[i]),
				right:   global(e.Right[i]),
				cat:     -1,
				defLeft: fl&FlagDefaultLeft != 0,
			}
			switch {
			case fl&FlagCategorical != 0:
				nd.kind, nd.cat = kindCat, e.CatSet[i]
			case e.Semantics == SemanticsXGBoost:
				nd.kind = kindNumNaN
			default:
				switch NodeMissingType(fl) {
				case MissingNone:
					nd.kind = kindNumNone
				case MissingZero:
					nd.kind = kindNumZero
				default:
					nd.kind = kindNumNaN
				}
			}
			s.nodes[i] = nd
		}
	}
	if e.LinearWeights != nil {
		s.linW = append([]float64(nil), e.LinearWeights...)
		s.linB = append([]float64(nil), e.LinearBias...)
		s.linW32 = make([]float32, len(s.linW))
		for i, w := range s.linW {
			s.linW32[i] = float32(w)
		}
	}
	return s, nil
}

func (s *goScorer) name() string { return "go" }
func (s *goScorer) close()       {}

func (s *goScorer) predictF64(rows []float64, nrows int, out []float64) error {
	scoreRows(s, rows, nrows, out)
	return nil
}

func (s *goScorer) predictF32(rows []float32, nrows int, out []float64) error {
	scoreRows(s, rows, nrows, out)
	return nil
}

// scoreRows computes raw margins for nrows rows. A float32 row value is widened to
// float64 exactly, so LightGBM semantics see the same number; XGBoost semantics round
// float64 input to float32 first, as XGBoost's DMatrix does.
func scoreRows[T float32 | float64](s *goScorer, rows []T, nrows int, out []float64) {
	nf, nk := s.nfeat, s.nout
	for r := 0; r < nrows; r++ {
		row := rows[r*nf : r*nf+nf : r*nf+nf]
		o := out[r*nk : r*nk+nk : r*nk+nk]
		copy(o, s.base)
		if s.sem == SemanticsXGBoost {
			scoreXGBRow(s, row, o)
		} else {
			scoreLGBRow(s, row, o)
		}
	}
}

// scoreLGBRow: LightGBM rules, everything in float64.
func scoreLGBRow[T float32 | float64](s *goScorer, row []T, o []float64) {
	for t, n := range s.roots {
		leaf := walkLGB(s, row, n)
		v := s.leaf[leaf]
		if s.weight != nil {
			v *= s.weight[t]
		}
		o[s.treeOut[t]] += v
	}
	if s.linW != nil {
		nk := s.nout
		for k := range o {
			sum := s.linB[k]
			for f, x := range row {
				if x == x {
					sum += float64(x) * s.linW[f*nk+k]
				}
			}
			o[k] += sum
		}
	}
}

// walkLGB walks a tree from reference n under LightGBM rules and returns the global leaf.
func walkLGB[T float32 | float64](s *goScorer, row []T, n int32) int32 {
	for n >= 0 {
		nd := &s.nodes[n]
		x := float64(row[nd.feat])
		var left bool
		if nd.kind == kindCat {
			left = s.catLeft(nd.cat, x)
		} else {
			// LightGBM's predictor drops |x| <= kZeroThreshold from the row (its dense
			// rows go through a sparse (index, value) list that keeps only
			// fabs(x) > kZeroThreshold or NaN), so such values are scored as 0.0.
			if x >= -ZeroThreshold && x <= ZeroThreshold {
				x = 0
			}
			switch {
			case x != x && nd.kind == kindNumNaN:
				left = nd.defLeft
			case x != x && nd.kind == kindNumZero, nd.kind == kindNumZero && x == 0:
				left = nd.defLeft
			case x != x:
				left = 0 <= nd.thr // missing type None: NaN is scored as 0.0
			default:
				left = x <= nd.thr
			}
		}
		if left {
			n = nd.left
		} else {
			n = nd.right
		}
	}
	return ^n
}

// catLeft is LightGBM's CategoricalDecision: NaN goes right; otherwise the value is
// truncated to a C int (static_cast<int>), a negative category goes right, and a
// category goes left when its bit is set in the node's set. Values at or beyond 2^31
// (and ±Inf) convert to INT_MIN on x86, hence go right.
func (s *goScorer) catLeft(set int32, x float64) bool {
	if !(x > -1) || x >= 2147483648 {
		return false // NaN, x <= -1 (truncates to a negative int), or not representable
	}
	c := uint32(int32(x)) // truncation toward zero, as static_cast<int>
	w0, w1 := s.catStart[set], s.catStart[set+1]
	word := c / 32
	if word >= uint32(w1-w0) {
		return false
	}
	return s.catBits[uint32(w0)+word]>>(c%32)&1 != 0
}

// scoreXGBRow: XGBoost rules, everything in float32. The margin starts at the base margin
// and adds each tree's leaf in tree order, rounding to float32 after every addition
// (o holds float32 values widened to float64, which is exact).
func scoreXGBRow[T float32 | float64](s *goScorer, row []T, o []float64) {
	for t, n := range s.roots {
		leaf := walkXGB(s, row, n)
		v := s.leaf32[leaf]
		if s.weight32 != nil {
			v = float32(v * s.weight32[t]) // dart: leaf × weight_drop in float32
		}
		k := s.treeOut[t]
		o[k] = float64(float32(o[k]) + v)
	}
	if s.linW32 != nil {
		// gblinear: psum = bias + base, then += x·w over present features in index order.
		nk := s.nout
		for k := range o {
			psum := float32(o[k]) + float32(s.linB[k])
			for f, xv := range row {
				x := float32(xv)
				if x != x {
					continue
				}
				psum += float32(x * s.linW32[f*nk+k]) // the conversion forbids a fused multiply-add
			}
			o[k] = float64(psum)
		}
	}
}

func walkXGB[T float32 | float64](s *goScorer, row []T, n int32) int32 {
	for n >= 0 {
		nd := &s.nodes[n]
		x := float32(row[nd.feat])
		var left bool
		switch {
		case x != x:
			left = nd.defLeft
		case nd.kind == kindCat:
			// XGBoost's Decision: a negative value is no category (unlike LightGBM, which
			// truncates (-1, 0) to category 0), so it leaves the set.
			left = x >= 0 && s.catLeft(nd.cat, float64(x))
		default:
			left = x < nd.thr32 // XGBoost: strictly less, in float32
		}
		if left {
			n = nd.left
		} else {
			n = nd.right
		}
	}
	return ^n
}

// leafIndex returns, for one row, the tree-local index of the leaf that tree t reaches
// (LightGBM's pred_leaf numbering for LightGBM models). Used by tests.
func (s *goScorer) leafIndex(row []float64, t int, leafStart int32) int32 {
	if s.sem == SemanticsXGBoost {
		return walkXGB(s, row, s.roots[t]) - leafStart
	}
	return walkLGB(s, row, s.roots[t]) - leafStart
}
