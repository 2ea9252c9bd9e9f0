// build.cc — validates a pd_ensemble_spec (it is a C API: nothing is trusted) and lays the
// model out for the kernels: the original node arrays for the generic path, and binned
// 8-byte pre-order nodes for the fast path when the model fits its limits.
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <unordered_map>
#include <string>
#include <vector>

#include "core_internal.h"

namespace pd {
namespace {

// Hard limits on what a spec may declare, so a hostile spec cannot make us allocate without
// bound before we have looked at its arrays (the caller owns arrays of these sizes anyway).
constexpr int64_t kMaxFeatures = int64_t(1) << 24;
constexpr int64_t kMaxOutputs = int64_t(1) << 20;
constexpr int64_t kMaxTrees = int64_t(1) << 24;
constexpr int64_t kMaxNodes = int64_t(1) << 30;
constexpr int64_t kMaxCatWords = int64_t(1) << 28;

struct Fail {
  int code;
  std::string msg;
};

[[noreturn]] void fail(int code, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
[[noreturn]] void fail(int code, const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  throw Fail{code, buf};
}

template <class T>
std::vector<T> copy(const T* p, int64_t n, const char* name) {
  if (n == 0) return {};
  if (p == nullptr) fail(PD_ERR_INVALID_MODEL, "%s is NULL but %lld values are needed", name, (long long)n);
  return std::vector<T>(p, p + n);
}

// ValidateCounts checks the spec's scalars and copies them and the base scores.
void ValidateCounts(const pd_ensemble_spec& s, Ensemble* e) {
  if (s.semantics != PD_SEMANTICS_LIGHTGBM && s.semantics != PD_SEMANTICS_XGBOOST)
    fail(PD_ERR_INVALID_MODEL, "semantics %d: want %d (lightgbm) or %d (xgboost)", s.semantics,
         PD_SEMANTICS_LIGHTGBM, PD_SEMANTICS_XGBOOST);
  if (s.num_features < 0 || s.num_features > kMaxFeatures)
    fail(PD_ERR_INVALID_MODEL, "num_features %d out of range [0, %lld]", s.num_features, (long long)kMaxFeatures);
  if (s.num_outputs < 1 || s.num_outputs > kMaxOutputs)
    fail(PD_ERR_INVALID_MODEL, "num_outputs %d out of range [1, %lld]", s.num_outputs, (long long)kMaxOutputs);
  if (s.num_trees < 0 || s.num_trees > kMaxTrees)
    fail(PD_ERR_INVALID_MODEL, "num_trees %d out of range [0, %lld]", s.num_trees, (long long)kMaxTrees);
  if (s.num_cat_sets < 0 || s.num_cat_sets > kMaxNodes)
    fail(PD_ERR_INVALID_MODEL, "num_cat_sets %d out of range", s.num_cat_sets);
  e->semantics = s.semantics;
  e->num_features = s.num_features;
  e->num_outputs = s.num_outputs;
  e->num_trees = s.num_trees;
  e->base = copy(s.base_score, s.num_outputs, "base_score");
  for (int k = 0; k < s.num_outputs; k++)
    if (std::isnan(e->base[k])) fail(PD_ERR_INVALID_MODEL, "base_score[%d] is NaN", k);
}

// ValidateTreeTable copies the per-tree ranges and outputs and checks that each tree's
// ranges are in order, with one leaf more than it has internal nodes.
void ValidateTreeTable(const pd_ensemble_spec& s, Ensemble* e) {
  const int64_t T = s.num_trees;
  if (T > 0) {
    e->node_start = copy(s.node_start, T + 1, "node_start");
    e->leaf_start = copy(s.leaf_start, T + 1, "leaf_start");
    e->tree_output = copy(s.tree_output, T, "tree_output");
  } else {
    e->node_start = {0};
    e->leaf_start = {0};
  }
  if (e->node_start[0] != 0) fail(PD_ERR_INVALID_MODEL, "node_start[0] = %d, want 0", e->node_start[0]);
  if (e->leaf_start[0] != 0) fail(PD_ERR_INVALID_MODEL, "leaf_start[0] = %d, want 0", e->leaf_start[0]);
  for (int64_t t = 0; t < T; t++) {
    int64_t n = int64_t(e->node_start[t + 1]) - e->node_start[t];
    int64_t l = int64_t(e->leaf_start[t + 1]) - e->leaf_start[t];
    if (n < 0) fail(PD_ERR_INVALID_MODEL, "tree %lld: node_start decreases (%d then %d)", (long long)t, e->node_start[t], e->node_start[t + 1]);
    if (l != n + 1)
      fail(PD_ERR_INVALID_MODEL, "tree %lld: %lld internal nodes need %lld leaves, leaf_start gives %lld",
           (long long)t, (long long)n, (long long)(n + 1), (long long)l);
    if (e->tree_output[t] < 0 || e->tree_output[t] >= s.num_outputs)
      fail(PD_ERR_INVALID_MODEL, "tree %lld: tree_output %d out of range [0, %d)", (long long)t, e->tree_output[t], s.num_outputs);
  }
  const int64_t N = e->node_start[T], L = e->leaf_start[T];
  if (N > kMaxNodes || L > kMaxNodes) fail(PD_ERR_INVALID_MODEL, "%lld nodes exceed the limit of %lld", (long long)N, (long long)kMaxNodes);
}

// TreeWeights copies the optional tree weights (empty: all 1) and checks they are finite.
std::vector<double> TreeWeights(const pd_ensemble_spec& s) {
  std::vector<double> weight;
  if (s.tree_weight != nullptr && s.num_trees > 0) weight.assign(s.tree_weight, s.tree_weight + s.num_trees);
  for (size_t t = 0; t < weight.size(); t++)
    if (!std::isfinite(weight[t])) fail(PD_ERR_INVALID_MODEL, "tree %zu: tree_weight is %g", t, weight[t]);
  return weight;
}

// CopyNodes copies the node and leaf arrays, and the categorical sets with their ranges
// checked.
void CopyNodes(const pd_ensemble_spec& s, Ensemble* e) {
  const int64_t N = e->node_start[s.num_trees], L = e->leaf_start[s.num_trees];
  e->feature = copy(s.feature, N, "feature");
  e->threshold = copy(s.threshold, N, "threshold");
  e->flags = copy(s.flags, N, "flags");
  e->left = copy(s.left, N, "left");
  e->right = copy(s.right, N, "right");
  e->leaf_value = copy(s.leaf_value, L, "leaf_value");
  if (s.cat_set != nullptr) e->cat_set = copy(s.cat_set, N, "cat_set");
  else e->cat_set.assign(N, -1);

  if (s.num_cat_sets > 0) {
    e->cat_start = copy(s.cat_start, int64_t(s.num_cat_sets) + 1, "cat_start");
    if (e->cat_start[0] != 0) fail(PD_ERR_INVALID_MODEL, "cat_start[0] = %d, want 0", e->cat_start[0]);
    for (int i = 0; i < s.num_cat_sets; i++)
      if (e->cat_start[i + 1] < e->cat_start[i])
        fail(PD_ERR_INVALID_MODEL, "cat_start decreases at set %d (%d then %d)", i, e->cat_start[i], e->cat_start[i + 1]);
    if (e->cat_start[s.num_cat_sets] > kMaxCatWords) fail(PD_ERR_INVALID_MODEL, "cat_bits too long");
    e->cat_bits = copy(s.cat_bits, e->cat_start[s.num_cat_sets], "cat_bits");
  } else {
    e->cat_start = {0};
  }
}

// ValidateNodes checks the fields of tree t's internal nodes (num_cat_sets sets exist).
void ValidateNodes(const Ensemble& e, int64_t t, int num_cat_sets) {
  const int32_t n0 = e.node_start[t], n = e.node_start[t + 1] - n0;
  for (int32_t j = 0; j < n; j++) {
    const int64_t i = n0 + j;
    const uint8_t f = e.flags[i];
    if (f & ~0x0Fu) fail(PD_ERR_INVALID_MODEL, "tree %lld node %d: unknown flag bits 0x%x", (long long)t, j, f);
    if (((f >> 2) & 3u) == 3u) fail(PD_ERR_INVALID_MODEL, "tree %lld node %d: missing type 3 is not defined", (long long)t, j);
    if (e.feature[i] < 0 || e.feature[i] >= e.num_features)
      fail(PD_ERR_INVALID_MODEL, "tree %lld node %d: feature %d out of range [0, %d)", (long long)t, j, e.feature[i], e.num_features);
    if (f & PD_FLAG_CATEGORICAL) {
      if (e.cat_set[i] < 0 || e.cat_set[i] >= num_cat_sets)
        fail(PD_ERR_INVALID_MODEL, "tree %lld node %d: categorical set %d out of range [0, %d)", (long long)t, j, e.cat_set[i], num_cat_sets);
    } else if (std::isnan(e.threshold[i])) {
      fail(PD_ERR_INVALID_MODEL, "tree %lld node %d: threshold is NaN", (long long)t, j);
    }
  }
}

// ValidateReach checks that every node and leaf of tree t is reached exactly once from the
// root: that rules out cycles, shared subtrees and orphans. n internal nodes give 2n child
// references for n-1 nodes and n+1 leaves. Then that no leaf value is NaN.
void ValidateReach(const Ensemble& e, int64_t t) {
  const int32_t n0 = e.node_start[t], n = e.node_start[t + 1] - n0;
  std::vector<uint8_t> seen_node(n, 0), seen_leaf(n + 1, 0);
  std::vector<int32_t> stack;
  if (n > 0) {
    stack.push_back(0);
    seen_node[0] = 1;
  }
  while (!stack.empty()) {
    const int32_t j = stack.back();
    stack.pop_back();
    for (int side = 0; side < 2; side++) {
      const int32_t c = side == 0 ? e.left[n0 + j] : e.right[n0 + j];
      const char* sname = side == 0 ? "left" : "right";
      if (c >= 0) {
        if (c >= n) fail(PD_ERR_INVALID_MODEL, "tree %lld node %d: %s child %d out of range (tree has %d internal nodes)", (long long)t, j, sname, c, n);
        if (seen_node[c]) fail(PD_ERR_INVALID_MODEL, "tree %lld node %d: %s child %d is reached twice (cycle or shared subtree)", (long long)t, j, sname, c);
        seen_node[c] = 1;
        stack.push_back(c);
      } else {
        const int64_t leaf = -int64_t(c) - 1;
        if (leaf > n) fail(PD_ERR_INVALID_MODEL, "tree %lld node %d: %s leaf %lld out of range (tree has %d leaves)", (long long)t, j, sname, (long long)leaf, n + 1);
        if (seen_leaf[leaf]) fail(PD_ERR_INVALID_MODEL, "tree %lld node %d: %s leaf %lld is reached twice", (long long)t, j, sname, (long long)leaf);
        seen_leaf[leaf] = 1;
      }
    }
  }
  for (int32_t j = 0; j < n; j++)
    if (!seen_node[j]) fail(PD_ERR_INVALID_MODEL, "tree %lld: node %d is not reachable from the root", (long long)t, j);
  if (n > 0)
    for (int32_t j = 0; j <= n; j++)
      if (!seen_leaf[j]) fail(PD_ERR_INVALID_MODEL, "tree %lld: leaf %d is not reachable from the root", (long long)t, j);
  for (int32_t j = 0; j <= n; j++) {
    const double v = e.leaf_value[e.leaf_start[t] + j];
    if (std::isnan(v)) fail(PD_ERR_INVALID_MODEL, "tree %lld leaf %d: value is NaN", (long long)t, j);
  }
}

// FoldTreeWeights multiplies the tree weights into the leaf values, in each library's
// arithmetic, and rounds XGBoost's thresholds to float once.
void FoldTreeWeights(const std::vector<double>& weight, Ensemble* e) {
  const int64_t T = e->num_trees, N = e->node_start[T], L = e->leaf_start[T];
  if (e->semantics == PD_SEMANTICS_XGBOOST) {
    e->leaf_value32.resize(L);
    for (int64_t t = 0; t < T; t++) {
      const float w = weight.empty() ? 1.0f : float(weight[t]);
      for (int32_t i = e->leaf_start[t]; i < e->leaf_start[t + 1]; i++)
        e->leaf_value32[i] = weight.empty() ? float(e->leaf_value[i]) : w * float(e->leaf_value[i]);
    }
    e->threshold32.resize(N);
    for (int64_t i = 0; i < N; i++) e->threshold32[i] = float(e->threshold[i]);
  } else if (!weight.empty()) {
    for (int64_t t = 0; t < T; t++)
      for (int32_t i = e->leaf_start[t]; i < e->leaf_start[t + 1]; i++) e->leaf_value[i] *= weight[t];
  }
}

// CopyLinear copies the optional linear part (weights, then bias; a bias alone is an error).
void CopyLinear(const pd_ensemble_spec& s, Ensemble* e) {
  if (s.linear_weights != nullptr) {
    e->linear_weights = copy(s.linear_weights, int64_t(s.num_features) * s.num_outputs, "linear_weights");
    if (s.linear_bias != nullptr) e->linear_bias = copy(s.linear_bias, s.num_outputs, "linear_bias");
    else e->linear_bias.assign(s.num_outputs, 0.0);
  } else if (s.linear_bias != nullptr) {
    fail(PD_ERR_INVALID_MODEL, "linear_bias is set without linear_weights");
  }
}

// Validate checks the spec (it is a C API: nothing is trusted) while copying it into e.
void Validate(const pd_ensemble_spec& s, Ensemble* e) {
  ValidateCounts(s, e);
  ValidateTreeTable(s, e);
  const std::vector<double> weight = TreeWeights(s);
  CopyNodes(s, e);
  for (int64_t t = 0; t < s.num_trees; t++) {
    ValidateNodes(*e, t, s.num_cat_sets);
    ValidateReach(*e, t);
  }
  FoldTreeWeights(weight, e);
  CopyLinear(s, e);
}

// BuildGuide gives a numerical slot with more than 2*kGuideProbes thresholds its guide
// (FeatureBin::guide_*): the fewest buckets, equal steps of the value or of its order key,
// with at most kGuideProbes thresholds per bucket and at most kMaxGuideBuckets buckets.
// Thresholds too close for that keep the binary search.
template <class V>
bool TryGuide(FeatureBin* fb, const std::vector<V>& thr) {
  uint32_t most = 0, run = 0, prev = 0;
  for (size_t i = 0; i < thr.size(); i++) {
    const uint32_t b = GuideBucket(*fb, thr[i]);
    run = (i > 0 && b == prev) ? run + 1 : 1;
    prev = b;
    most = std::max(most, run);
  }
  return most <= kGuideProbes;
}

template <class V>
void BuildGuideIn(Ensemble* e, FeatureBin* fb, const std::vector<V>& thr) {
  FeatureBin best{};
  const double lo = double(thr.front()), hi = double(thr.back());
  const uint64_t kmin = OrderKey(thr.front()), span = OrderKey(thr.back()) - kmin;
  for (uint32_t nb = 2; nb <= kMaxGuideBuckets && best.guide_n == 0; nb *= 2) {
    FeatureBin c = *fb;
    c.guide_n = nb;
    c.guide_linear = 1;
    c.guide_min = lo;
    c.guide_scale = double(nb) / (hi - lo);
    if (std::isfinite(c.guide_scale) && c.guide_scale > 0 && TryGuide(&c, thr)) best = c;
    c.guide_linear = 0;
    c.guide_kmin = kmin;
    c.guide_shift = 0;
    while (c.guide_shift < 63 && (span >> c.guide_shift) + 1 > nb) c.guide_shift++;
    c.guide_n = uint32_t(std::min<uint64_t>(nb, (span >> c.guide_shift) + 1));
    if (best.guide_n == 0 && TryGuide(&c, thr)) best = c;
  }
  if (best.guide_n == 0) return;
  best.guide_off = uint32_t(e->guide.size());
  size_t below = 0;
  for (uint32_t b = 0; b < best.guide_n; b++) {
    while (below < thr.size() && GuideBucket(best, thr[below]) < b) below++;
    e->guide.push_back(uint16_t(below));
  }
  e->guide.push_back(0);  // a vector gather reads 4 bytes at the last 2-byte entry
  *fb = best;
}

void BuildGuide(Ensemble* e, FeatureBin* fb, const std::vector<double>& thr, bool xgb) {
  fb->guide_n = 0;
  if (thr.size() <= 2 * kGuideProbes) return;
  if (xgb) BuildGuideIn(e, fb, std::vector<float>(thr.begin(), thr.end()));
  else BuildGuideIn(e, fb, thr);
}

// NodeLeft is the binned decision of internal node n for bin b, exactly as the walks take it.
bool NodeLeft(const Ensemble& e, const Node& n, uint32_t b) {
  if (n.right & kCatFlag) return CatLeft(e.cat_pool.data(), e.cat_off[n.kk], b);
  return uint16_t(b + (n.feat >> 15)) <= n.kk;
}

// BuildHeap lays out the heap walk (Ensemble::heap_*) when the model has no leaf tables and
// no categorical splits, its trees are at most kMaxHeapDepth deep, and padding them to
// complete trees at most doubles the steps (the sum over trees of heap_depth is at most
// twice the sum of their own depths) and the layout stays under kMaxHeapBytes.
void BuildHeap(Ensemble* e) {
  e->heap_depth = 0;
  const size_t T = size_t(e->num_trees);
  if (T == 0 || e->leaf_tables || e->has_cat || e->max_depth < 1 || e->max_depth > kMaxHeapDepth) return;
  size_t own = 0;
  for (size_t t = 0; t < T; t++) own += e->tree_depth[t];
  if (size_t(e->max_depth) * T > 2 * own) return;
  const int D = e->max_depth;
  const size_t ni = (size_t(1) << D) - 1, nl = size_t(1) << D;
  // Padding a path-like tree of a few nodes costs 2^depth slots: kMaxHeapBytes in all.
  if (T * (ni * 4 + nl * 12) > kMaxHeapBytes) return;
  constexpr uint32_t kPad = 0xFFFFu << 16;  // slot 0, bin <= 0xFFFF: always left
  e->heap_node.assign(T * ni, kPad);
  e->heap_val64.assign(T * nl, 0.0);
  e->heap_val32.assign(T * nl, 0.0f);
  for (size_t t = 0; t < T; t++) {
    const uint32_t lo = e->tree_off[t];
    struct Item {
      uint32_t node;  // tree-local
      size_t h;       // heap index
      int depth;
    };
    std::vector<Item> stack{{0, 0, 0}};
    while (!stack.empty()) {
      const Item it = stack.back();
      stack.pop_back();
      const Node& nd = e->nodes[lo + it.node];
      if (nd.left == nd.right) {  // leaf: its leftmost descendant at the bottom
        size_t h = it.h;
        for (int d = it.depth; d < D; d++) h = 2 * h + 1;
        e->heap_val64[t * nl + (h - ni)] = e->val64[lo + it.node];
        e->heap_val32[t * nl + (h - ni)] = e->val32[lo + it.node];
        continue;
      }
      e->heap_node[t * ni + it.h] = e->info32[lo + it.node];
      stack.push_back({nd.left, 2 * it.h + 1, it.depth + 1});
      stack.push_back({uint32_t(nd.right & 0x7FFF), 2 * it.h + 2, it.depth + 1});
    }
  }
  e->heap_depth = D;
}

// BuildLeafTables lays out the table kernel's leaf sets (Ensemble::leaf_tables), when
// every tree has at most 32 leaves and the tables stay under kMaxLeafTableBytes; otherwise
// the model keeps the walks. Built from the binned nodes with NodeLeft, so a table
// reproduces the walks' decisions bin for bin.
void BuildLeafTables(Ensemble* e) {
  e->leaf_tables = false;
  const size_t T = size_t(e->num_trees), S = e->slots.size();
  if (T == 0 || S == 0 || S > kMaxTableSlots || e->slots[0].feature < 0) return;
  const uint32_t stride = uint32_t((T + 15) / 16 * 16);
  // Per slot: bin indices 0..n-1 (numerical 0..2n are bins, 2n+1 is the missing bin).
  std::vector<uint32_t> nbins(S);
  size_t total = 0;
  for (size_t s = 0; s < S; s++) {
    const FeatureBin& fb = e->slots[s];
    nbins[s] = fb.categorical ? CatBins(fb) : 2 * fb.thr_n + 2;
    total += size_t(nbins[s]) * stride * sizeof(uint32_t);
  }
  total += T * 32 * (sizeof(double) + sizeof(float));  // leaf values by leaf number
  if (total > kMaxLeafTableBytes) return;
  // Per slot: the (tree, leaf, node, went-left) constraints of every leaf's path.
  struct Step {
    uint32_t tree;
    uint32_t leaf;
    uint32_t node;  // global index into e->nodes
    bool left;
  };
  std::vector<std::vector<Step>> steps(S);
  size_t nsteps = 0;
  std::vector<uint32_t> full(stride, 1u);  // padding trees: leaf 0
  std::vector<double> val64(size_t(T) * 32, 0.0);
  std::vector<float> val32(size_t(T) * 32, 0.0f);
  for (size_t t = 0; t < T; t++) {
    const uint32_t lo = e->tree_off[t], n = e->tree_off[t + 1] - lo;
    std::vector<int32_t> parent(n, -1);
    std::vector<uint8_t> side(n, 0);
    for (uint32_t i = 0; i < n; i++) {
      const Node& nd = e->nodes[lo + i];
      if (nd.left == nd.right) continue;  // leaf
      parent[nd.left] = int32_t(i);
      side[nd.left] = 0;
      parent[nd.right & 0x7FFF] = int32_t(i);
      side[nd.right & 0x7FFF] = 1;
    }
    uint32_t leaf = 0;
    for (uint32_t i = 0; i < n; i++) {
      const Node& nd = e->nodes[lo + i];
      if (nd.left != nd.right) continue;
      if (leaf == 32) return;  // over 32 leaves: the walks only
      val64[t * 32 + leaf] = e->val64[lo + i];
      val32[t * 32 + leaf] = e->val32[lo + i];
      for (uint32_t c = i; parent[c] >= 0; c = uint32_t(parent[c])) {
        if (++nsteps > kMaxLeafTableSteps) return;  // memory for the steps: the walks only
        const uint32_t p = uint32_t(parent[c]);
        steps[e->nodes[lo + p].feat & 0x7FFF].push_back({uint32_t(t), leaf, lo + p, side[c] == 0});
      }
      leaf++;
    }
    full[t] = leaf == 32 ? ~0u : (1u << leaf) - 1;
  }
  // Bound the build's work (every path step against every bin of its feature): a hostile
  // model within the size limit could otherwise take minutes to load. Real models are
  // below (NYC_taxi ~8M, 1,000-tree mtpl2 ~15M; the demo model's trees 50 times over, 5,000
  // trees, over 2^26: 0.25 s to load with its tables, which score it 20x faster than the walk).
  size_t work = 0;
  for (size_t s = 0; s < S; s++) work += steps[s].size() * nbins[s];
  if (work > kMaxLeafTableWork) return;
  e->lt_stride = stride;
  e->lt_map_off.assign(S, 0);
  e->lt_map_n.assign(S, 0);
  e->lt_mask.clear();
  e->lt_map.clear();
  std::vector<uint32_t> rows;
  for (size_t s = 0; s < S; s++) {
    const uint32_t nb = nbins[s];
    const bool cat = e->slots[s].categorical;
    rows.resize(size_t(nb) * stride);
    for (uint32_t j = 0; j < nb; j++) std::copy(full.begin(), full.end(), rows.begin() + size_t(j) * stride);
    for (const Step& st : steps[s]) {
      const Node& nd = e->nodes[st.node];
      for (uint32_t j = 0; j < nb; j++) {
        const uint32_t b = (!cat && j == nb - 1) ? kMissingBin : j;
        if (NodeLeft(*e, nd, b) != st.left) rows[size_t(j) * stride + st.tree] &= ~(1u << st.leaf);
      }
    }
    e->lt_map_off[s] = uint32_t(e->lt_map.size());
    e->lt_map_n[s] = nb;
    for (uint32_t j = 0; j < nb; j++) {
      const uint32_t* row = rows.data() + size_t(j) * stride;
      const size_t last = e->lt_mask.size() - (e->lt_mask.empty() ? 0 : stride);
      if (j > 0 && std::equal(row, row + stride, e->lt_mask.begin() + last)) {
        e->lt_map.push_back(uint32_t(last));  // the same leaf sets as the bin before
        continue;
      }
      e->lt_map.push_back(uint32_t(e->lt_mask.size()));
      e->lt_mask.insert(e->lt_mask.end(), row, row + stride);
    }
  }
  e->lt_val64 = std::move(val64);
  e->lt_val32 = std::move(val32);
  e->leaf_tables = true;
}

// Fallback records why the model stays on the generic walk; the layout steps return it.
bool Fallback(Ensemble* e, std::string why) {
  e->fallback_reason = std::move(why);
  return false;
}

// ChooseSlots gives every feature the trees use a slot of the binned row (a FeatureBin:
// numerical with its missing type, or categorical, XGBoost's with a NaN bin) and sets
// (*slot_of)[f] to it, -1 for unused features.
bool ChooseSlots(Ensemble* e, std::vector<int>* slot_of) {
  const bool xgb = e->semantics == PD_SEMANTICS_XGBOOST;
  // Per feature: how its nodes use it.
  enum : uint8_t { kUnused = 0, kNumeric = 1, kCat = 2 };
  std::vector<uint8_t> use(e->num_features, kUnused);
  std::vector<int> miss(e->num_features, -1);
  for (size_t i = 0; i < e->feature.size(); i++) {
    const int f = e->feature[i];
    const bool cat = e->flags[i] & PD_FLAG_CATEGORICAL;
    const uint8_t u = cat ? kCat : kNumeric;
    if (use[f] != kUnused && use[f] != u)
      return Fallback(e, "feature " + std::to_string(f) + " has both numerical and categorical splits");
    use[f] = u;
    if (!cat) {
      const int m = xgb ? int(PD_MISSING_NAN) : int((e->flags[i] >> 2) & 3u);
      if (miss[f] >= 0 && miss[f] != m) return Fallback(e, "feature " + std::to_string(f) + " mixes missing types");
      miss[f] = m;
    } else if (xgb) {
      miss[f] = PD_MISSING_NAN;  // XGBoost sends NaN the node's default way: a bin of its own
    }
  }
  slot_of->assign(e->num_features, -1);
  for (int f = 0; f < e->num_features; f++) {
    if (use[f] == kUnused) continue;
    if (int(e->slots.size()) >= kMaxFastSlots) return Fallback(e, "too many features used");
    (*slot_of)[f] = int(e->slots.size());
    FeatureBin b{};
    b.feature = f;
    b.categorical = use[f] == kCat;
    b.missing = uint8_t(miss[f] < 0 ? 0 : miss[f]);
    e->slots.push_back(b);
  }
  if (e->slots.empty()) {  // bins are read by leaves
    FeatureBin none{};
    none.feature = -1;
    e->slots.push_back(none);
  }
  return true;
}

// BinThresholds gives each numerical slot its thresholds, sorted and deduplicated in the
// library's precision (a value's bin is its place among them), and its guide.
bool BinThresholds(Ensemble* e, const std::vector<int>& slot_of, std::vector<uint32_t>* thr_index) {
  const bool xgb = e->semantics == PD_SEMANTICS_XGBOOST;
  // Per slot, (threshold, node) sorted by threshold: the distinct thresholds and each
  // node's place among them in one pass (a binary search per node while laying out the
  // trees was a fifth of a 255-leaf ranker's layout).
  std::vector<std::vector<std::pair<double, uint32_t>>> thr(e->slots.size());
  for (size_t i = 0; i < e->feature.size(); i++) {
    if (e->flags[i] & PD_FLAG_CATEGORICAL) continue;
    thr[slot_of[e->feature[i]]].push_back({xgb ? double(e->threshold32[i]) : e->threshold[i], uint32_t(i)});
  }
  thr_index->assign(e->feature.size(), 0);
  std::vector<double> v;
  for (size_t s = 0; s < thr.size(); s++) {
    auto& p = thr[s];
    std::sort(p.begin(), p.end());
    v.clear();
    for (const auto& [t, node] : p) {
      if (v.empty() || !(v.back() == t)) v.push_back(t);  // == also merges -0.0 and 0.0
      (*thr_index)[node] = uint32_t(v.size() - 1);
    }
    if (int(v.size()) > kMaxFastThresholds)
      return Fallback(e, "feature " + std::to_string(e->slots[s].feature) + " has too many distinct thresholds");
    e->slots[s].thr_off = uint32_t(e->thr64.size());
    e->slots[s].thr_n = uint32_t(v.size());
    for (double t : v) {
      e->thr64.push_back(t);
      e->thr32.push_back(float(t));
    }
    for (uint32_t j = 0; j < kGuideProbes; j++) {
      e->thr64.push_back(std::nan(""));
      e->thr32.push_back(std::nanf(""));
    }
    BuildGuide(e, &e->slots[s], v, xgb);
  }
  return true;
}

// CountCategories sizes each categorical slot: bins 0..ncat-1 are categories, ncat is
// "anything else", and on XGBoost slots ncat+1 is NaN (CatBins), all within 16 bits.
bool CountCategories(Ensemble* e, const std::vector<int>& slot_of) {
  for (size_t i = 0; i < e->feature.size(); i++) {
    if (!(e->flags[i] & PD_FLAG_CATEGORICAL)) continue;
    const int cs = e->cat_set[i];
    uint32_t top = 0;  // one past the highest category in the set (its last non-zero word)
    for (int32_t w = e->cat_start[cs + 1] - 1; w >= e->cat_start[cs]; w--)
      if (e->cat_bits[w]) {
        top = uint32_t(w - e->cat_start[cs]) * 32 + 32 - __builtin_clz(e->cat_bits[w]);
        break;
      }
    auto& b = e->slots[slot_of[e->feature[i]]];
    b.ncat = std::max(b.ncat, top);
    if (b.ncat > uint32_t(kMaxFastCategories) - (b.missing == PD_MISSING_NAN ? 1 : 0))
      return Fallback(e, "categorical feature " + std::to_string(b.feature) + " has too many categories");
  }
  return true;
}

// CatSets numbers the distinct categorical sets by (feature, words, NaN direction: XGBoost
// nodes with the same set may send NaN different ways) while the trees are laid
// out. Hashed: a tree map's lookups (a cache miss per level, a compare of up to 2,048 words
// each) were 40% of the layout time of a model with 19,000 categorical splits. A key is a
// spec set read in place from Ensemble::cat_bits (words past the feature's categories, and
// trailing zero words, ignored): copying each node's words into a key and the set into a
// set-major pool was a third of that layout's time (allocations, copies, page faults).
struct CatSets {
  struct Key {
    int feature;
    const uint32_t* words;  // into Ensemble::cat_bits
    uint32_t n;             // trailing zero words trimmed
    bool nan_left;          // XGBoost: the node sends NaN left (LightGBM: false)
  };
  struct Hash {
    size_t operator()(const Key& k) const {
      // FNV-1a in four interleaved chains (one chain's multiplies were serial).
      constexpr uint64_t kP = 1099511628211ull;
      uint64_t h[4] = {1469598103934665603ull ^ uint64_t(uint32_t(k.feature)), 1, 2, 3 + uint64_t(k.nan_left)};
      uint32_t i = 0;
      for (; i + 4 <= k.n; i += 4)
        for (int l = 0; l < 4; l++) h[l] = (h[l] ^ k.words[i + l]) * kP;
      for (; i < k.n; i++) h[0] = (h[0] ^ k.words[i]) * kP;
      const uint64_t x = ((h[0] * kP ^ h[1]) * kP ^ h[2]) * kP ^ h[3];
      return size_t(x ^ (x >> 29));
    }
  };
  struct Eq {
    bool operator()(const Key& a, const Key& b) const {
      return a.feature == b.feature && a.n == b.n && a.nan_left == b.nan_left && std::equal(a.words, a.words + a.n, b.words);
    }
  };
  std::unordered_map<Key, uint32_t, Hash, Eq> index;
  std::vector<uint32_t> slot;  // per set number: its slot
  std::vector<Key> key;        // per set number: its words
};

// LayOutTree appends tree t's binned nodes in pre-order (left child next), leaves looping
// to themselves, with their leaf values, and the tree's extent and depth.
bool LayOutTree(Ensemble* e, int64_t t, const std::vector<int>& slot_of, const std::vector<uint32_t>& thr_index,
                CatSets* sets) {
  const bool xgb = e->semantics == PD_SEMANTICS_XGBOOST;
  const int32_t n0 = e->node_start[t], n = e->node_start[t + 1] - n0, l0 = e->leaf_start[t];
  if (2 * int64_t(n) + 1 > kMaxFastTreeNodes) return Fallback(e, "tree " + std::to_string(t) + " has too many nodes");
  const uint32_t base = uint32_t(e->nodes.size());
  struct Item {
    int32_t ref;  // spec child reference: >= 0 internal node, < 0 leaf
    int32_t parent;
    int side;
    int depth;
  };
  std::vector<Item> stack{{n > 0 ? 0 : -1, -1, 0, 0}};
  int depth = 0;
  while (!stack.empty()) {
    const Item it = stack.back();
    stack.pop_back();
    const uint16_t me = uint16_t(e->nodes.size() - base);
    if (it.parent >= 0) {
      Node& p = e->nodes[base + it.parent];
      if (it.side == 0) p.left = me;
      else p.right = uint16_t((p.right & kCatFlag) | me);
    }
    Node nd{};
    if (it.ref < 0) {
      depth = std::max(depth, it.depth);
      nd.feat = 0;
      nd.kk = 0xFFFF;  // every bin goes "left" ...
      nd.left = me;    // ... to itself
      nd.right = me;
      e->nodes.push_back(nd);
      const double v = e->leaf_value[l0 + (-it.ref - 1)];
      e->val64.push_back(v);
      e->val32.push_back(xgb ? e->leaf_value32[l0 + (-it.ref - 1)] : float(v));
      continue;
    }
    const int64_t i = n0 + it.ref;
    const int f = e->feature[i];
    const FeatureBin& fb = e->slots[slot_of[f]];
    nd.feat = uint16_t(slot_of[f]);
    if (e->flags[i] & PD_FLAG_CATEGORICAL) {
      // The node's set over bins 0..ncat (bin ncat, "other", is never in it), and on
      // XGBoost slots whether NaN (bin ncat+1) goes left.
      const int cs = e->cat_set[i];
      const uint32_t* w0 = e->cat_bits.data() + e->cat_start[cs];
      uint32_t nw = std::min<uint32_t>(uint32_t(e->cat_start[cs + 1] - e->cat_start[cs]), fb.ncat / 32 + 1);
      while (nw > 0 && w0[nw - 1] == 0) nw--;
      const bool nan_left = fb.missing == PD_MISSING_NAN && (e->flags[i] & PD_FLAG_DEFAULT_LEFT);
      const CatSets::Key key{f, w0, nw, nan_left};
      auto found = sets->index.find(key);
      uint32_t set;  // the set's number; cat_off[set] locates it (CategoryMajor)
      if (found != sets->index.end()) {
        set = found->second;
      } else {
        set = uint32_t(e->cat_off.size());
        if (set >= kMaxCatSets) return Fallback(e, "more than 65,536 distinct categorical sets");
        e->cat_off.push_back(0);  // set by CategoryMajor
        sets->slot.push_back(uint32_t(slot_of[f]));
        sets->key.push_back(key);
        sets->index.emplace(key, set);
      }
      nd.kk = uint16_t(set);
      nd.right = kCatFlag;
      e->has_cat = true;
    } else {
      const uint32_t ti = thr_index[i];  // the threshold's place among the slot's (BinThresholds)
      // Bins (BinNumeric in kernels.cc): 2i = strictly between thresholds i-1 and i,
      // 2i+1 = equal to threshold i. LightGBM x <= t_i  <=>  bin <= 2i+1;
      // XGBoost x < t_i  <=>  bin <= 2i.
      uint32_t kk = xgb ? 2 * ti : 2 * ti + 1;
      const bool missing_bin = xgb || fb.missing != PD_MISSING_NONE;
      if (missing_bin && (e->flags[i] & PD_FLAG_DEFAULT_LEFT)) {
        nd.feat |= 0x8000;  // bin 0xFFFF + 1 wraps to 0 <= kk+1
        kk += 1;
      }
      nd.kk = uint16_t(kk);
    }
    e->nodes.push_back(nd);
    e->val64.push_back(0);
    e->val32.push_back(0);
    // Push right first so the left subtree follows its parent.
    stack.push_back({e->right[i], me, 1, it.depth + 1});
    stack.push_back({e->left[i], me, 0, it.depth + 1});
  }
  e->tree_off.push_back(uint32_t(e->nodes.size()));
  e->tree_depth.push_back(uint16_t(depth));
  e->max_depth = std::max(e->max_depth, depth);
  return true;
}

// Transpose32 transposes a 32x32 bit matrix in place, row i = a[i], column j = bit 31-j
// (Hacker's Delight, 2nd ed., section 7-3).
void Transpose32(uint32_t* a) {
  uint32_t m = 0x0000FFFFu;
  for (uint32_t j = 16; j != 0; j >>= 1, m ^= m << j)
    for (uint32_t k = 0; k < 32; k = (k + j + 1) & ~j) {
      const uint32_t t = (a[k] ^ (a[k + j] >> j)) & m;
      a[k] ^= t;
      a[k + j] ^= t << j;
    }
}

// CategoryMajor turns the categorical sets category-major (Ensemble::cat_pool): per slot,
// its sets numbered j in order, rows of 2^shift words (at least ceil(sets / 32)), one row
// per bin (CatBins: categories, "anything else", XGBoost's NaN), so a node's test reads
// the row of the row's category, which the other
// nodes of the same feature share (cache misses on set-major sets were 45% of a
// 255-leaf ranker's time).
bool CategoryMajor(Ensemble* e, const CatSets& sets) {
  const std::vector<uint32_t>& set_slot = sets.slot;
  if (e->cat_off.empty()) return true;
  const size_t S = e->slots.size(), NS = e->cat_off.size();
  std::vector<uint32_t> nsets(S, 0), shift(S, 0), base(S, 0);
  for (size_t k = 0; k < NS; k++) nsets[set_slot[k]]++;
  size_t total = 0;
  for (size_t s = 0; s < S; s++) {
    if (nsets[s] == 0) continue;
    while ((size_t(32) << shift[s]) < nsets[s]) shift[s]++;
    base[s] = uint32_t(total);
    total += size_t(CatBins(e->slots[s])) << shift[s];
    if (total > kMaxCatPoolWords) return Fallback(e, "categorical sets exceed the fast path's pool");
  }
  std::vector<uint32_t> mat(total, 0);
  // Sets in groups of 32 of a slot (one column word), word by word: the group's bits of
  // categories 32w..32w+31 land in 32 rows that stay in L1 while the 32 sets are read
  // (set by set, every bit was a cache miss on a matrix of megabytes).
  std::vector<std::vector<uint32_t>> of_slot(S);
  for (size_t k = 0; k < NS; k++) of_slot[set_slot[k]].push_back(uint32_t(k));
  std::vector<uint32_t> grp;
  for (size_t s = 0; s < S; s++) {
    const std::vector<uint32_t>& ks = of_slot[s];
    for (size_t g = 0; g < ks.size(); g += 32) {
      const size_t ng = std::min<size_t>(32, ks.size() - g);
      const uint32_t col = base[s] + uint32_t(g >> 5);
      uint32_t most = 0;
      for (size_t i = 0; i < ng; i++) most = std::max(most, sets.key[ks[g + i]].n);
      // The group's sets copied word-major first, each read in order (reading word w of 32
      // sets scattered over cat_bits, w by w, missed the cache on most loads).
      grp.assign(size_t(most) * 32, 0);
      for (size_t i = 0; i < ng; i++) {
        const CatSets::Key& key = sets.key[ks[g + i]];
        for (uint32_t w = 0; w < key.n; w++) grp[size_t(w) * 32 + 31 - i] = key.words[w];
      }
      for (uint32_t w = 0; w < most; w++) {
        // The group's word w of each set, transposed: row 32w+b's column word is bit b of
        // every set (a dense set of thousands of categories made a bit-by-bit loop the
        // largest part of the layout).
        uint32_t* a = grp.data() + size_t(w) * 32;
        Transpose32(a);
        for (uint32_t b = 0; b < 32; b++)
          if (a[31 - b]) mat[col + (size_t(w * 32 + b) << shift[s])] = a[31 - b];
      }
      // XGBoost's NaN row: bit i when set i's nodes send NaN left.
      const uint32_t nan_row = e->slots[s].ncat + 1;
      for (size_t i = 0; i < ng; i++)
        if (sets.key[ks[g + i]].nan_left) mat[col + (size_t(nan_row) << shift[s])] |= 1u << i;
      for (size_t i = 0; i < ng; i++) e->cat_off[ks[g + i]] = col | uint32_t(i) << 23 | shift[s] << 28;
    }
  }
  e->cat_pool = std::move(mat);
  return true;
}

// SplitNodes copies the nodes into the vector kernels' split form (info32, kids32).
void SplitNodes(Ensemble* e) {
  e->info32.resize(e->nodes.size());
  e->kids32.resize(e->nodes.size());
  for (size_t i = 0; i < e->nodes.size(); i++) {
    const Node& n = e->nodes[i];
    e->info32[i] = uint32_t(n.feat) | uint32_t(n.kk) << 16;
    e->kids32[i] = uint32_t(n.left) | uint32_t(n.right & 0x7FFF) << 16 | ((n.right & kCatFlag) ? 0x80000000u : 0u);
  }
}

// PackSmallTrees builds the register tables (pk64) when every tree has at most 64 nodes,
// the model uses at most 8 features and every node's kk fits 15 bits.
void PackSmallTrees(Ensemble* e) {
  const int64_t T = e->num_trees;
  e->small_trees = T > 0 && e->slots.size() <= 8;
  for (int64_t t = 0; t < T && e->small_trees; t++)
    if (e->tree_off[t + 1] - e->tree_off[t] > 64) e->small_trees = false;
  for (size_t i = 0; i < e->nodes.size() && e->small_trees; i++)
    if (e->nodes[i].kk > 0x7FFF && e->nodes[i].left != e->nodes[i].right) e->small_trees = false;
  if (e->small_trees) {
    e->pk64.assign(size_t(T) * 64, 0);  // padding: node 0, never reached
    for (int64_t t = 0; t < T; t++)
      for (uint32_t i = e->tree_off[t]; i < e->tree_off[t + 1]; i++) {
        const Node& n = e->nodes[i];
        uint32_t w;
        if (n.left == n.right) {
          w = uint32_t(n.left) | uint32_t(n.left) << 6;  // leaf: both ways lead to itself
        } else {
          w = uint32_t(n.left) | uint32_t(n.right & 0x7FFF) << 6 | uint32_t(n.feat & 0x7FFF) << 12 |
              uint32_t(n.feat >> 15) << 15 | uint32_t(n.kk) << 16 | ((n.right & kCatFlag) ? 0x80000000u : 0u);
        }
        e->pk64[size_t(t) * 64 + (i - e->tree_off[t])] = w;
      }
  }
}

// Layout builds the binned fast path, or explains in e->fallback_reason why the model
// stays on the generic path. The steps: slots, binning (thresholds, guides, categories),
// the nodes tree by tree, then the traversals' own layouts: split nodes, register tables
// for small trees, leaf tables, the heap.
void Layout(Ensemble* e) {
  e->fast = false;
  std::vector<int> slot_of;
  std::vector<uint32_t> thr_index;
  if (!ChooseSlots(e, &slot_of) || !BinThresholds(e, slot_of, &thr_index) || !CountCategories(e, slot_of)) return;
  CatSets sets;
  e->tree_off.assign(1, 0);
  e->tree_depth.clear();
  const size_t nn = size_t(e->node_start[e->num_trees]) + size_t(e->leaf_start[e->num_trees]);
  e->nodes.reserve(nn);
  e->val64.reserve(nn);
  e->val32.reserve(nn);
  for (int64_t t = 0; t < e->num_trees; t++)
    if (!LayOutTree(e, t, slot_of, thr_index, &sets)) return;
  if (!CategoryMajor(e, sets)) return;
  SplitNodes(e);
  PackSmallTrees(e);
  BuildLeafTables(e);
  BuildHeap(e);
  e->fast = true;
}

}  // namespace

int Build(const pd_ensemble_spec* spec, Ensemble* out, std::string* msg) {
  try {
    Validate(*spec, out);
    Layout(out);
    return PD_OK;
  } catch (const Fail& f) {
    *msg = f.msg;
    return f.code;
  }
}

}  // namespace pd
