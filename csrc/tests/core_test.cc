// core_test.cc — C++ unit tests of the scoring core (ctest). No framework: CHECK prints the
// failure and the test exits non-zero.
//
//   * hand-built trees with hand-computed answers for each library's rules (<= vs <,
//     float32 rounding, NaN defaults, MissingNone/Zero/NaN, categorical NaN/negative/unseen)
//   * random ensembles and adversarial inputs (thresholds, ±1 ulp, NaN, ±inf, the zero
//     range, negative categories) where every fast kernel the CPU has must agree
//     bit-for-bit with the generic walk, on float64 and float32 rows
//   * deep, unbalanced trees of up to 1,023 leaves and categorical features of up to
//     65,535 categories: fast, and bit-identical at every batch size from one row
//   * bad specs: each is rejected with a message naming the problem
//   * concurrent predict calls on one handle
//   * background scoring: the same results from the idle-priority pool, and withdrawal
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../core_internal.h"
#include "../predictd.h"

static int failures = 0;
#define CHECK(cond, ...)                                        \
  do {                                                          \
    if (!(cond)) {                                              \
      std::fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                        \
      std::fprintf(stderr, "\n");                               \
      if (++failures > 20) std::exit(1);                        \
    }                                                           \
  } while (0)

static const double kNaN = std::numeric_limits<double>::quiet_NaN();
static const double kInf = std::numeric_limits<double>::infinity();

// SpecBuilder owns the arrays a pd_ensemble_spec points to.
struct SpecBuilder {
  int semantics = PD_SEMANTICS_LIGHTGBM;
  int num_features = 1, num_outputs = 1;
  std::vector<double> base{0.0};
  std::vector<int32_t> node_start{0}, leaf_start{0}, tree_output;
  std::vector<double> tree_weight;
  std::vector<int32_t> feature, left, right, cat_set;
  std::vector<double> threshold, leaf_value;
  std::vector<uint8_t> flags;
  std::vector<int32_t> cat_start{0};
  std::vector<uint32_t> cat_bits;
  std::vector<double> linear_weights, linear_bias;

  // A tree given as (feature, threshold, flags, cat_set, left, right) per node plus leaves.
  struct N {
    int f;
    double t;
    uint8_t fl;
    int cs;
    int l, r;
  };
  void AddTree(const std::vector<N>& nodes, const std::vector<double>& leaves, int output = 0) {
    for (const N& n : nodes) {
      feature.push_back(n.f);
      threshold.push_back(n.t);
      flags.push_back(n.fl);
      cat_set.push_back(n.cs);
      left.push_back(n.l);
      right.push_back(n.r);
    }
    leaf_value.insert(leaf_value.end(), leaves.begin(), leaves.end());
    node_start.push_back(int32_t(feature.size()));
    leaf_start.push_back(int32_t(leaf_value.size()));
    tree_output.push_back(output);
  }
  int AddCatSet(const std::vector<uint32_t>& words) {
    cat_bits.insert(cat_bits.end(), words.begin(), words.end());
    cat_start.push_back(int32_t(cat_bits.size()));
    return int(cat_start.size()) - 2;
  }
  pd_ensemble_spec Spec() const {
    pd_ensemble_spec s{};
    s.semantics = semantics;
    s.num_features = num_features;
    s.num_outputs = num_outputs;
    s.base_score = base.data();
    s.num_trees = int32_t(tree_output.size());
    s.node_start = node_start.data();
    s.leaf_start = leaf_start.data();
    s.tree_output = tree_output.data();
    s.tree_weight = tree_weight.empty() ? nullptr : tree_weight.data();
    s.feature = feature.data();
    s.threshold = threshold.data();
    s.flags = flags.data();
    s.left = left.data();
    s.right = right.data();
    s.cat_set = cat_set.data();
    s.leaf_value = leaf_value.data();
    s.num_cat_sets = int32_t(cat_start.size()) - 1;
    s.cat_start = s.num_cat_sets > 0 ? cat_start.data() : nullptr;
    s.cat_bits = cat_bits.empty() ? nullptr : cat_bits.data();
    s.linear_weights = linear_weights.empty() ? nullptr : linear_weights.data();
    s.linear_bias = linear_bias.empty() ? nullptr : linear_bias.data();
    return s;
  }
  pd_ensemble* New() const {
    pd_ensemble_spec s = Spec();
    pd_ensemble* e = nullptr;
    char err[256] = {0};
    int rc = pd_ensemble_new(&s, &e, err, sizeof err);
    CHECK(rc == PD_OK, "pd_ensemble_new: %s", err);
    return e;
  }
};

static uint8_t Flags(bool cat, bool dl, unsigned missing) {
  return uint8_t((cat ? PD_FLAG_CATEGORICAL : 0u) | (dl ? PD_FLAG_DEFAULT_LEFT : 0u) | (missing << 2));
}

// The ISA kernels, then the same with the walks forced (no leaf tables).
static const int kKernels[] = {PD_KERNEL_GENERIC,
                               PD_KERNEL_SCALAR,
                               PD_KERNEL_AVX2,
                               PD_KERNEL_AVX512,
                               PD_KERNEL_SCALAR | PD_KERNEL_WALK,
                               PD_KERNEL_AVX2 | PD_KERNEL_WALK,
                               PD_KERNEL_AVX512 | PD_KERNEL_WALK};

static std::string KName(int k) {
  std::string n = pd::KernelName(pd::Kernel(k & ~PD_KERNEL_WALK));
  return (k & PD_KERNEL_WALK) ? n + "-walk" : n;
}

static pd_ensemble_info Info(const pd_ensemble* e) {
  pd_ensemble_info info{};
  char err[256] = {0};
  CHECK(pd_ensemble_get_info(e, &info, err, sizeof err) == PD_OK, "pd_ensemble_get_info: %s", err);
  return info;
}

// PredictAll scores all nrows rows with kernel k, shapes taken from the model.
template <class T>
static int PredictAll(const pd_ensemble* e, int k, const T* rows, size_t nrows, double* out) {
  const pd_ensemble_info info = Info(e);
  const size_t nf = size_t(info.num_features), nout = nrows * size_t(info.num_outputs);
  char err[256] = {0};
  int rc;
  if constexpr (sizeof(T) == sizeof(float)) rc = pd_predict_f32(e, k, rows, nrows, nf, out, nout, err, sizeof err);
  else rc = pd_predict_f64(e, k, rows, nrows, nf, out, nout, err, sizeof err);
  CHECK(rc == PD_OK, "kernel %s: %s", KName(k).c_str(), err);
  return rc;
}

// Scores rows with every kernel the CPU has and checks each against want (and generic).
static void Expect(pd_ensemble* e, const std::vector<double>& rows, int nfeat, const std::vector<double>& want,
                   const char* what) {
  const size_t n = rows.size() / nfeat;
  for (int k : kKernels) {
    if (!pd_kernel_supported(k)) continue;
    std::vector<double> got(want.size(), -12345.0);
    CHECK(PredictAll(e, k, rows.data(), n, got.data()) == PD_OK, "%s", what);
    for (size_t i = 0; i < want.size(); i++)
      CHECK(got[i] == want[i] || (std::isnan(got[i]) && std::isnan(want[i])),
            "%s, kernel %s, value %zu: got %.17g want %.17g", what, KName(k).c_str(), i, got[i], want[i]);
  }
}

static void TestLightGBMRules() {
  // Stump on feature 0 at 1.5, leaves -1 / +1, once per missing type and default side.
  for (unsigned mt : {PD_MISSING_NONE, PD_MISSING_ZERO, PD_MISSING_NAN}) {
    for (bool dl : {false, true}) {
      SpecBuilder b;
      b.AddTree({{0, 1.5, Flags(false, dl, mt), -1, -1, -2}}, {-1.0, 1.0});
      pd_ensemble* e = b.New();
      const double L = -1, R = 1, D = dl ? L : R;
      std::vector<double> rows = {1.5, std::nextafter(1.5, 2.0), 1.0, 2.0, kNaN, 0.0, 1e-36, -1e-36,
                                  pd::kZeroThreshold, std::nextafter(pd::kZeroThreshold, 1.0), -kInf, kInf};
      std::vector<double> want;
      // 1.5 <= 1.5 goes left (LightGBM's <=); just above goes right.
      want = {L, R, L, R};
      // NaN: None scores it as 0.0 (left of 1.5); Zero sends it the default way (NaN -> 0 -> zero
      // range); NaN sends it the default way.
      want.push_back(mt == PD_MISSING_NONE ? L : D);
      // 0.0, ±1e-36, ±kZeroThreshold: the default way only for MissingZero.
      const double z = mt == PD_MISSING_ZERO ? D : L;
      want.insert(want.end(), {z, z, z, z, L, L, R});
      Expect(e, rows, 1, want, "lightgbm stump");
      pd_ensemble_free(e);
    }
  }
  // LightGBM's predictor reads |x| <= kZeroThreshold as 0.0 before any rule: with the
  // threshold at -kZeroThreshold, x = -kZeroThreshold goes right (0.0 > t).
  for (unsigned mt : {PD_MISSING_NONE, PD_MISSING_NAN}) {
    SpecBuilder b;
    b.AddTree({{0, -pd::kZeroThreshold, Flags(false, true, mt), -1, -1, -2}}, {-1.0, 1.0});
    pd_ensemble* e = b.New();
    Expect(e, {-pd::kZeroThreshold, std::nextafter(-pd::kZeroThreshold, -1.0), 0.0, -0.0, kNaN}, 1,
           {1, -1, 1, 1, mt == PD_MISSING_NONE ? 1.0 : -1.0}, "lightgbm zero range");
    pd_ensemble_free(e);
  }
  // Categorical: set {1, 3, 33}; NaN, negative (<= -1), unseen and beyond the bitset go right,
  // -0.5 truncates to category 0 (right), 3.9 to 3 (left).
  SpecBuilder b;
  int cs = b.AddCatSet({(1u << 1) | (1u << 3), 1u << 1});
  b.AddTree({{0, 0.0, Flags(true, false, PD_MISSING_NONE), cs, -1, -2}}, {10.0, 20.0});
  pd_ensemble* e = b.New();
  Expect(e, {1, 3, 33, 3.9, 0, -0.5, -1, -3, kNaN, 2, 64, 1e12, kInf, -kInf, 32},
         1, {10, 10, 10, 10, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20}, "lightgbm categorical");
  pd_ensemble_free(e);
}

static void TestXGBoostRules() {
  // XGBoost: float32(x) < float32(t). t = 0.1 rounds to 0.100000001490116...
  const double t = 0.1;
  const float tf = float(t);
  for (bool dl : {false, true}) {
    SpecBuilder b;
    b.semantics = PD_SEMANTICS_XGBOOST;
    b.base = {0.5};
    b.AddTree({{0, double(tf), Flags(false, dl, PD_MISSING_NAN), -1, -1, -2}}, {-0.25, 0.75});
    pd_ensemble* e = b.New();
    const double L = double(0.5f + -0.25f), R = double(0.5f + 0.75f), D = dl ? L : R;
    // float(tf) == tf goes right (strict <); a double just below tf that rounds to tf goes
    // right too; one float ulp below goes left; NaN takes the default side.
    Expect(e, {double(tf), std::nextafter(double(tf), 0.0), double(std::nextafter(tf, 0.0f)), kNaN, -kInf, kInf},
           1, {R, R, L, D, L, R}, "xgboost stump");
    pd_ensemble_free(e);
  }
  // float32 sums: base 0.1f plus 1e-8 ten times stays 0.1f in float32.
  SpecBuilder b;
  b.semantics = PD_SEMANTICS_XGBOOST;
  b.base = {0.1};
  for (int i = 0; i < 10; i++) b.AddTree({}, {1e-8});
  pd_ensemble* e = b.New();
  float want = 0.1f;
  for (int i = 0; i < 10; i++) want += 1e-8f;
  Expect(e, {0.0}, 1, {double(want)}, "xgboost float32 sum");
  pd_ensemble_free(e);
}

static void TestMulticlassWeightsLinear() {
  SpecBuilder b;
  b.num_features = 2;
  b.num_outputs = 3;
  b.base = {0.0, 1.0, 2.0};
  for (int i = 0; i < 6; i++) b.AddTree({{i % 2, 0.5, Flags(false, false, PD_MISSING_NONE), -1, -1, -2}}, {double(i), 10.0 * i}, i % 3);
  b.tree_weight = {1, 2, 0.5, 1, 1, 3};
  pd_ensemble* e = b.New();
  // Row (0, 1): tree i tests feature i%2: f0=0 <= .5 left, f1=1 > .5 right.
  std::vector<double> want(3);
  want = {0.0, 1.0, 2.0};
  for (int i = 0; i < 6; i++) {
    const double leaf = (i % 2 == 0) ? double(i) : 10.0 * i;
    want[i % 3] += b.tree_weight[i] * leaf;
  }
  Expect(e, {0.0, 1.0}, 2, want, "multiclass with tree weights");
  pd_ensemble_free(e);

  SpecBuilder lin;
  lin.semantics = PD_SEMANTICS_XGBOOST;
  lin.num_features = 3;
  lin.base = {0.5};
  lin.linear_weights = {0.25, -2.0, 4.0};
  lin.linear_bias = {0.125};
  e = lin.New();
  float w = 0.5f + 0.125f;
  w += 1.0f * 0.25f;
  w += 3.0f * 4.0f;  // feature 1 is NaN: skipped
  Expect(e, {1.0, kNaN, 3.0}, 3, {double(w)}, "gblinear");
  pd_ensemble_free(e);

  // Random linear models: an AVX2/AVX-512 kernel that fused x*w+s into an FMA would round
  // differently from the generic path (compiled for baseline x86-64, which has no FMA).
  std::mt19937_64 rng(99);
  std::uniform_real_distribution<double> u(-3, 3);
  for (int sem : {PD_SEMANTICS_LIGHTGBM, PD_SEMANTICS_XGBOOST}) {
    SpecBuilder r;
    r.semantics = sem;
    r.num_features = 40;
    r.num_outputs = 2;
    r.base = {u(rng), u(rng)};
    for (int i = 0; i < 80; i++) r.linear_weights.push_back(u(rng));
    r.linear_bias = {u(rng), u(rng)};
    r.AddTree({{3, 0.5, 0, -1, -1, -2}}, {u(rng), u(rng)}, 1);
    e = r.New();
    std::vector<double> rows(40 * 70);
    for (auto& v : rows) v = rng() % 10 == 0 ? kNaN : u(rng);
    std::vector<double> want(140);
    CHECK(PredictAll(e, PD_KERNEL_GENERIC, rows.data(), 70, want.data()) == PD_OK, "generic");
    Expect(e, rows, 40, want, sem ? "random gblinear (xgboost)" : "random linear (lightgbm)");
    pd_ensemble_free(e);
  }
}

// RandomModel builds a random valid ensemble: trees of random shape, features drawn from a
// small set so thresholds repeat, LightGBM missing types fixed per feature (so the fast path
// applies) unless mixed is set.
static SpecBuilder RandomModel(std::mt19937_64& rng, int semantics, bool cats, bool mixed, int ntrees, int nout,
                               int max_internal = 24, int nfeat = 6) {
  SpecBuilder b;
  b.semantics = semantics;
  b.num_features = nfeat;
  b.num_outputs = nout;
  b.base.assign(nout, 0.0);
  for (auto& v : b.base) v = std::uniform_real_distribution<double>(-1, 1)(rng);
  std::vector<double> pool = {-2.5, -1.0, -1e-35, 0.0, pd::kZeroThreshold, 1e-20, 0.1, 0.3, 1.0, 1.5, 2.0, 7.25, 1e10};
  std::vector<unsigned> feat_missing(nfeat);
  for (auto& m : feat_missing) m = unsigned(rng() % 3);
  std::vector<bool> cat_feature(nfeat, false);
  cat_feature[4] = cat_feature[5] = cats;
  for (int t = 0; t < ntrees; t++) {
    const int n = int(rng() % max_internal);  // internal nodes
    std::vector<SpecBuilder::N> nodes(n);
    // Random binary tree: attach each new node to a free child slot.
    std::vector<std::pair<int, int>> free_slots;  // (node, side)
    if (n > 0) free_slots.push_back({0, 0}), free_slots.push_back({0, 1});
    for (auto& nd : nodes) nd.l = nd.r = 0;
    for (int j = 1; j < n; j++) {
      size_t pick = rng() % free_slots.size();
      auto [p, side] = free_slots[pick];
      free_slots.erase(free_slots.begin() + long(pick));
      (side == 0 ? nodes[p].l : nodes[p].r) = j;
      free_slots.push_back({j, 0});
      free_slots.push_back({j, 1});
    }
    // Remaining slots are leaves, numbered in a shuffled order.
    std::shuffle(free_slots.begin(), free_slots.end(), rng);
    for (size_t i = 0; i < free_slots.size(); i++) {
      auto [p, side] = free_slots[i];
      (side == 0 ? nodes[p].l : nodes[p].r) = -int(i) - 1;
    }
    for (auto& nd : nodes) {
      nd.f = int(rng() % nfeat);
      const bool dl = rng() % 2;
      if (cat_feature[nd.f]) {
        std::vector<uint32_t> words(1 + rng() % 3);
        for (auto& w : words) w = uint32_t(rng());
        nd.cs = b.AddCatSet(words);
        nd.fl = Flags(true, dl, 0);
        nd.t = 0;
      } else {
        nd.cs = -1;
        nd.t = pool[rng() % pool.size()];
        if (semantics == PD_SEMANTICS_XGBOOST) nd.t = double(float(nd.t));
        unsigned mt = semantics == PD_SEMANTICS_XGBOOST ? PD_MISSING_NAN : (mixed ? unsigned(rng() % 3) : feat_missing[nd.f]);
        nd.fl = Flags(false, dl, mt);
      }
    }
    std::vector<double> leaves(n + 1);
    for (auto& v : leaves) v = std::uniform_real_distribution<double>(-1, 1)(rng);
    b.AddTree(nodes, leaves, int(t % nout));
  }
  if (rng() % 2) {
    b.tree_weight.resize(ntrees);
    for (auto& w : b.tree_weight) w = std::uniform_real_distribution<double>(0.1, 2)(rng);
  }
  return b;
}

static std::vector<double> RandomRows(std::mt19937_64& rng, size_t nrows, int nfeat = 6) {
  std::vector<double> special = {kNaN, 0.0, -0.0, 1e-36, -1e-36, pd::kZeroThreshold, -pd::kZeroThreshold, 1e-35, -1e-35,
                                 kInf, -kInf, -0.5, -1.0, -3.0, 31.0, 32.0, 33.7, 95.0, 1e300};
  std::vector<double> pool = {-2.5, -1.0, -1e-35, 0.0, pd::kZeroThreshold, 1e-20, 0.1, 0.3, 1.0, 1.5, 2.0, 7.25, 1e10};
  std::vector<double> rows(nrows * nfeat);
  for (auto& v : rows) {
    switch (rng() % 6) {
      case 0: v = special[rng() % special.size()]; break;
      case 1: v = pool[rng() % pool.size()]; break;
      case 2: v = std::nextafter(pool[rng() % pool.size()], rng() % 2 ? kInf : -kInf); break;
      case 3: {  // float32 neighbours and values that round to a float32 threshold
        const float f = float(pool[rng() % pool.size()]);
        v = rng() % 2 ? double(std::nextafter(f, rng() % 2 ? 1e30f : -1e30f)) : std::nextafter(double(f), rng() % 2 ? kInf : -kInf);
        break;
      }
      case 4: v = double(int(rng() % 70) - 5); break;
      default: v = std::uniform_real_distribution<double>(-3, 12)(rng);
    }
  }
  return rows;
}

static void TestRandomAgainstGeneric() {
  std::mt19937_64 rng(20261126);
  int fast_models = 0, table_models = 0, heap_models = 0;
  for (int iter = 0; iter < 300; iter++) {
    const int sem = iter % 2 ? PD_SEMANTICS_XGBOOST : PD_SEMANTICS_LIGHTGBM;
    const bool cats = sem == PD_SEMANTICS_LIGHTGBM && iter % 3 == 0;
    const bool mixed = iter % 5 == 0;
    const int nout = iter % 4 == 0 ? 3 : 1;
    // Every third model has big trees (past the 64-node register tables) and 12 features
    // (past the 8 features whose bins the AVX-512 walk keeps in registers), so each vector
    // walk variant is compared with the generic path.
    const bool big = iter % 3 == 1;
    // Every other big model is mid-sized (40 splits, 41 leaves): past the leaf tables,
    // shallow enough for the heap walk.
    const int splits = !big ? 24 : iter % 2 == 1 ? 40 : 120;
    // Small trees over 12 features too (the table kernel's loop over more than 8 slots).
    const int nfeat = iter % 3 == 0 ? 6 : 12;
    SpecBuilder b = RandomModel(rng, sem, cats, mixed, 1 + int(rng() % 40), nout, splits, nfeat);
    pd_ensemble* e = b.New();
    if (e == nullptr) continue;
    const int traversal = Info(e).traversal;
    fast_models += traversal != PD_TRAVERSAL_GENERIC;
    table_models += traversal == PD_TRAVERSAL_LEAF_TABLES;
    heap_models += traversal == PD_TRAVERSAL_HEAP_WALK;
    const size_t nrows = 1 + rng() % 300;
    std::vector<double> rows = RandomRows(rng, nrows, nfeat);
    std::vector<float> rows32(rows.begin(), rows.end());
    std::vector<double> want(nrows * nout), want32(nrows * nout);
    CHECK(PredictAll(e, PD_KERNEL_GENERIC, rows.data(), nrows, want.data()) == PD_OK, "generic f64");
    CHECK(PredictAll(e, PD_KERNEL_GENERIC, rows32.data(), nrows, want32.data()) == PD_OK, "generic f32");
    for (int k : kKernels) {
      if (k == 0 || !pd_kernel_supported(k)) continue;
      std::vector<double> got(want.size()), got32(want.size());
      CHECK(PredictAll(e, k, rows.data(), nrows, got.data()) == PD_OK, "f64");
      CHECK(PredictAll(e, k, rows32.data(), nrows, got32.data()) == PD_OK, "f32");
      for (size_t i = 0; i < want.size(); i++) {
        CHECK(std::memcmp(&got[i], &want[i], sizeof(double)) == 0, "model %d (sem %d cats %d mixed %d traversal %d) kernel %s f64 value %zu: got %.17g want %.17g",
              iter, sem, cats, mixed, traversal, KName(k).c_str(), i, got[i], want[i]);
        CHECK(std::memcmp(&got32[i], &want32[i], sizeof(double)) == 0, "model %d kernel %s f32 value %zu: got %.17g want %.17g",
              iter, KName(k).c_str(), i, got32[i], want32[i]);
      }
    }
    // XGBoost semantics cast every input to float32, so float32 rows give the same margins.
    if (sem == PD_SEMANTICS_XGBOOST)
      for (size_t i = 0; i < want.size(); i++) CHECK(want[i] == want32[i], "xgboost f32 vs f64 value %zu", i);
    pd_ensemble_free(e);
  }
  // Mixed missing types keep some models on the generic path; the rest must be fast.
  CHECK(fast_models > 200, "only %d of 300 random models took the fast path", fast_models);
  // Trees of at most 25 leaves get leaf tables; the big ones (121 leaves) walk.
  CHECK(table_models > 100 && table_models < fast_models, "%d of %d fast random models have leaf tables", table_models,
        fast_models);
  CHECK(heap_models > 5, "%d of %d fast random models have the heap walk", heap_models, fast_models);
  std::printf("random models: %d fast, %d with leaf tables, %d with the heap walk\n", fast_models, table_models,
              heap_models);
}

// Production-shaped models: deep, unbalanced trees of up to 1,023 leaves (ranking models
// reach depth 95) and categorical features with up to 65,535 categories, whose distinct sets
// together far exceed 65,536 words. Every one must take a fast traversal, and every kernel,
// on the partition, refill and lock-step walks (pd_walk_lockstep), at every batch size
// from 1 row, must give the generic walk's bits.
static void TestDeepAndWideCategorical() {
  std::mt19937_64 rng(20261204);
  int deepest = 0;
  for (int iter = 0; iter < 24; iter++) {
    const int sem = iter % 4 == 3 ? PD_SEMANTICS_XGBOOST : PD_SEMANTICS_LIGHTGBM;
    const bool cats = iter % 2 == 0 || iter % 8 == 3;  // XGBoost's too (TestXGBoostCategorical)
    const int nfeat = 10;
    SpecBuilder b;
    b.semantics = sem;
    b.num_features = nfeat;
    b.num_outputs = iter % 5 == 0 ? 2 : 1;
    b.base.assign(b.num_outputs, 0.25);
    // Categorical features 7, 8, 9: up to 40, 3,000 and 65,535 categories (XGBoost: 65,534,
    // the most whose NaN bin still fits 16 bits).
    const uint32_t ncat[3] = {40, 3000, sem == PD_SEMANTICS_XGBOOST ? 65534u : 65535u};
    const int ntrees = 2 + int(rng() % 12);
    // Every third model grows paths of up to 1,000 levels (no depth limit on the fast
    // path), the others up to 200: a new node hangs off a random free slot one time in
    // `spread`, else off one of the two newest.
    const bool chains = iter % 3 == 2;
    const int max_depth = chains ? 1000 : 200;
    const unsigned spread = chains ? 32 : 4;
    for (int t = 0; t < ntrees; t++) {
      const int n = 1 + int(rng() % 1022);  // internal nodes: up to 1,023 leaves
      std::vector<SpecBuilder::N> nodes(n);
      for (auto& nd : nodes) nd.l = nd.r = 0;
      // Grow mostly at the deepest free slot: long, unbalanced paths (up to max_depth).
      std::vector<std::pair<int, int>> free_slots;
      std::vector<int> depth(n, 0);
      free_slots.push_back({0, 0});
      free_slots.push_back({0, 1});
      for (int j = 1; j < n; j++) {
        size_t pick = rng() % spread == 0 ? rng() % free_slots.size() : free_slots.size() - 1 - rng() % 2;
        auto [p, side] = free_slots[pick];
        if (depth[p] >= max_depth) pick = 0, p = free_slots[0].first, side = free_slots[0].second;
        free_slots.erase(free_slots.begin() + long(pick));
        (side == 0 ? nodes[p].l : nodes[p].r) = j;
        depth[j] = depth[p] + 1;
        deepest = std::max(deepest, depth[j]);
        free_slots.push_back({j, 0});
        free_slots.push_back({j, 1});
      }
      std::shuffle(free_slots.begin(), free_slots.end(), rng);
      for (size_t i = 0; i < free_slots.size(); i++) {
        auto [p, side] = free_slots[i];
        (side == 0 ? nodes[p].l : nodes[p].r) = -int(i) - 1;
      }
      for (auto& nd : nodes) {
        nd.f = int(rng() % nfeat);
        const bool dl = rng() % 2;
        if (cats && nd.f >= 7) {
          // A set of up to 64 categories below the feature's cardinality.
          const uint32_t top = 1 + uint32_t(rng() % ncat[nd.f - 7]);
          std::vector<uint32_t> words((top + 31) / 32, 0);
          const int k = 1 + int(rng() % 64);
          for (int i = 0; i < k; i++) {
            const uint32_t c = uint32_t(rng() % top);
            words[c / 32] |= 1u << (c % 32);
          }
          nd.cs = b.AddCatSet(words);
          nd.fl = Flags(true, dl, 0);
          nd.t = 0;
        } else {
          nd.cs = -1;
          nd.f = nd.f % 7;
          nd.t = std::round(std::uniform_real_distribution<double>(-3, 12)(rng) * 8) / 8;
          if (sem == PD_SEMANTICS_XGBOOST) nd.t = double(float(nd.t));
          nd.fl = Flags(false, dl, sem == PD_SEMANTICS_XGBOOST ? PD_MISSING_NAN : unsigned(nd.f % 3));
        }
      }
      std::vector<double> leaves(n + 1);
      for (auto& v : leaves) v = std::uniform_real_distribution<double>(-1, 1)(rng);
      b.AddTree(nodes, leaves, t % b.num_outputs);
    }
    pd_ensemble* e = b.New();
    CHECK(e != nullptr, "deep model %d: rejected", iter);
    if (e == nullptr) continue;
    CHECK(Info(e).traversal != PD_TRAVERSAL_GENERIC, "deep model %d: generic only (%s)", iter, Info(e).fallback_reason);
    const size_t nrows = 1 + rng() % 2500;  // up to three partition-walk blocks
    std::vector<double> rows = RandomRows(rng, nrows, nfeat);
    for (size_t r = 0; r < nrows; r++)
      for (int f = 7; f < nfeat; f++) {
        double& v = rows[r * nfeat + f];
        switch (rng() % 5) {
          case 0: break;  // RandomRows' specials: NaN, negative, fractions, infinities
          case 1: v = double(ncat[f - 7] + rng() % 300); break;  // unseen, above the sets
          default: v = double(rng() % ncat[f - 7]);
        }
      }
    std::vector<float> rows32(rows.begin(), rows.end());
    const size_t K = size_t(b.num_outputs);
    std::vector<double> want(nrows * K), want32(nrows * K);
    CHECK(PredictAll(e, PD_KERNEL_GENERIC, rows.data(), nrows, want.data()) == PD_OK, "generic f64");
    CHECK(PredictAll(e, PD_KERNEL_GENERIC, rows32.data(), nrows, want32.data()) == PD_OK, "generic f32");
    for (int lock : {0, 4, 5}) {  // now; without the partition walk; lock step only
      pd_walk_lockstep(lock);
      for (int k : kKernels) {
        if (k == PD_KERNEL_GENERIC || !pd_kernel_supported(k)) continue;
        std::vector<double> got(want.size()), got32(want.size());
        CHECK(PredictAll(e, k, rows.data(), nrows, got.data()) == PD_OK, "f64");
        CHECK(PredictAll(e, k, rows32.data(), nrows, got32.data()) == PD_OK, "f32");
        // Batches of 1 to 5 rows: the same bits.
        for (size_t r0 = 0, n = 1; r0 < nrows && r0 < 40; r0 += n, n = n % 5 + 1) {
          const size_t m = std::min(n, nrows - r0);
          CHECK(PredictAll(e, k, rows.data() + r0 * nfeat, m, got.data() + r0 * K) == PD_OK, "f64 small");
        }
        for (size_t i = 0; i < want.size(); i++) {
          CHECK(std::memcmp(&got[i], &want[i], sizeof(double)) == 0,
                "deep model %d (sem %d cats %d lockstep %d) kernel %s f64 value %zu: got %.17g want %.17g", iter, sem,
                cats, lock, KName(k).c_str(), i, got[i], want[i]);
          CHECK(std::memcmp(&got32[i], &want32[i], sizeof(double)) == 0,
                "deep model %d (lockstep %d) kernel %s f32 value %zu: got %.17g want %.17g", iter, lock,
                KName(k).c_str(), i, got32[i], want32[i]);
        }
      }
    }
    pd_walk_lockstep(0);
    pd_ensemble_free(e);
  }
  CHECK(deepest > 255, "the deepest tree is %d levels: the test should cover trees deeper than 255", deepest);
}

// XGBoost's native categorical splits on the fast path: NaN takes each node's default
// direction (a NaN bin whose row of the category-major matrix holds every set's direction),
// any negative value and any value at or past the categories goes the "not in the set" way,
// -0.0 is category 0 and fractions truncate. Hand-computed answers for one split, two
// splits on the same set that send NaN different ways (told apart when sets are shared),
// then random models against the generic walk on every kernel.
static void TestXGBoostCategorical() {
  // Children as the engine's parser lays them out: the set goes "left" (leaf 20).
  for (bool dl : {false, true}) {
    SpecBuilder b;
    b.semantics = PD_SEMANTICS_XGBOOST;
    b.num_features = 2;
    b.base = {0.0};
    const int cs = b.AddCatSet({(1u << 0) | (1u << 3), (1u << 1) | (1u << 8)});  // {0, 3, 33, 40}
    b.AddTree({{0, 0.0, Flags(true, dl, PD_MISSING_NAN), cs, -1, -2}}, {20.0, 10.0});
    pd_ensemble* e = b.New();
    CHECK(Info(e).traversal != PD_TRAVERSAL_GENERIC, "xgboost categorical stump: generic (%s)", Info(e).fallback_reason);
    const double I = 20, O = 10;
    std::vector<double> xs = {0, -0.0, 3, 3.9, 33, 40, 1, 2.9, 4, 39, 41, 63, 64, 1e6, -0.5, -1e-30, -1, -3, -40,
                              16777216.0, 16777219.0, 1e30, kInf, -kInf, kNaN};
    std::vector<double> want = {I, I, I, I, I, I, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, O, dl ? I : O};
    std::vector<double> rows;
    for (double x : xs) rows.insert(rows.end(), {x, 0.0});
    Expect(e, rows, 2, want, dl ? "xgboost categorical, NaN left" : "xgboost categorical, NaN right");
    // 40 rows: the vector walks' full vectors too.
    std::vector<double> rows40, want40;
    for (int r = 0; r < 40; r++) {
      rows40.insert(rows40.end(), {xs[r % xs.size()], 0.0});
      want40.push_back(want[r % xs.size()]);
    }
    Expect(e, rows40, 2, want40, "xgboost categorical, 40 rows");
    pd_ensemble_free(e);
  }
  {
    // The same set twice, NaN left in the first tree and right in the second.
    SpecBuilder b;
    b.semantics = PD_SEMANTICS_XGBOOST;
    b.base = {0.0};
    const int c1 = b.AddCatSet({1u << 3});
    const int c2 = b.AddCatSet({1u << 3});
    b.AddTree({{0, 0.0, Flags(true, true, PD_MISSING_NAN), c1, -1, -2}}, {1.0, 2.0});
    b.AddTree({{0, 0.0, Flags(true, false, PD_MISSING_NAN), c2, -1, -2}}, {4.0, 8.0});
    pd_ensemble* e = b.New();
    CHECK(Info(e).traversal != PD_TRAVERSAL_GENERIC, "xgboost shared set: generic (%s)", Info(e).fallback_reason);
    Expect(e, {kNaN, 3, 1, -1}, 1, {9, 5, 10, 10}, "xgboost categorical, one set, two NaN directions");
    pd_ensemble_free(e);
  }
  {
    // 65,535 categories (0..65,534) leave no bin for NaN: the generic walk, saying why.
    SpecBuilder b;
    b.semantics = PD_SEMANTICS_XGBOOST;
    std::vector<uint32_t> words(2048, 0);
    words[2047] = 1u << 30;  // category 65,534
    const int cs = b.AddCatSet(words);
    b.AddTree({{0, 0.0, Flags(true, true, PD_MISSING_NAN), cs, -1, -2}}, {1.0, 2.0});
    pd_ensemble* e = b.New();
    CHECK(Info(e).traversal == PD_TRAVERSAL_GENERIC && std::strstr(Info(e).fallback_reason, "too many categories"),
          "xgboost 65,535 categories: traversal %d (%s)", Info(e).traversal, Info(e).fallback_reason);
    Expect(e, {65534, 65533, kNaN, 70000}, 1, {1, 2, 1, 2}, "xgboost 65,535 categories");
    pd_ensemble_free(e);
  }
  // Random models with categorical features 4 and 5 (sets over up to 96 categories), small
  // and big trees, against the generic walk on every kernel.
  std::mt19937_64 rng(20261205);
  int fast = 0, tables = 0, walks = 0;
  for (int iter = 0; iter < 120; iter++) {
    const bool big = iter % 3 == 1;
    const int splits = !big ? 24 : iter % 2 == 1 ? 40 : 120;
    const int nfeat = iter % 3 == 0 ? 6 : 12;
    const int nout = iter % 4 == 0 ? 3 : 1;
    SpecBuilder b = RandomModel(rng, PD_SEMANTICS_XGBOOST, true, false, 1 + int(rng() % 40), nout, splits, nfeat);
    for (size_t i = 0; i < b.flags.size(); i++)
      if (b.flags[i] & PD_FLAG_CATEGORICAL) b.flags[i] |= uint8_t(PD_MISSING_NAN << 2);  // as the parser sets them
    pd_ensemble* e = b.New();
    if (e == nullptr) continue;
    const int traversal = Info(e).traversal;
    CHECK(traversal != PD_TRAVERSAL_GENERIC, "xgboost categorical model %d: generic (%s)", iter, Info(e).fallback_reason);
    fast += traversal != PD_TRAVERSAL_GENERIC;
    tables += traversal == PD_TRAVERSAL_LEAF_TABLES;
    walks += traversal == PD_TRAVERSAL_WALK;
    const size_t nrows = 1 + rng() % 300;
    std::vector<double> rows = RandomRows(rng, nrows, nfeat);
    for (size_t r = 0; r < nrows; r++)  // more NaN on the categorical features
      for (int f = 4; f < 6; f++)
        if (rng() % 8 == 0) rows[r * nfeat + f] = kNaN;
    std::vector<float> rows32(rows.begin(), rows.end());
    std::vector<double> want(nrows * nout), want32(nrows * nout);
    CHECK(PredictAll(e, PD_KERNEL_GENERIC, rows.data(), nrows, want.data()) == PD_OK, "generic f64");
    CHECK(PredictAll(e, PD_KERNEL_GENERIC, rows32.data(), nrows, want32.data()) == PD_OK, "generic f32");
    for (size_t i = 0; i < want.size(); i++) CHECK(want[i] == want32[i], "xgboost f32 vs f64 value %zu", i);
    for (int k : kKernels) {
      if (k == PD_KERNEL_GENERIC || !pd_kernel_supported(k)) continue;
      std::vector<double> got(want.size()), got32(want.size());
      CHECK(PredictAll(e, k, rows.data(), nrows, got.data()) == PD_OK, "f64");
      CHECK(PredictAll(e, k, rows32.data(), nrows, got32.data()) == PD_OK, "f32");
      for (size_t i = 0; i < want.size(); i++) {
        CHECK(std::memcmp(&got[i], &want[i], sizeof(double)) == 0,
              "xgboost categorical model %d (traversal %d) kernel %s f64 value %zu: got %.17g want %.17g", iter,
              traversal, KName(k).c_str(), i, got[i], want[i]);
        CHECK(std::memcmp(&got32[i], &want32[i], sizeof(double)) == 0,
              "xgboost categorical model %d kernel %s f32 value %zu: got %.17g want %.17g", iter, KName(k).c_str(), i,
              got32[i], want32[i]);
      }
    }
    pd_ensemble_free(e);
  }
  CHECK(tables > 20 && walks > 20, "xgboost categorical models: %d fast, %d with leaf tables, %d walks", fast, tables,
        walks);
  std::printf("xgboost categorical models: %d fast, %d with leaf tables, %d walks\n", fast, tables, walks);
}

// Many thresholds on one feature: the binning guide (FeatureBin::guide_*) must bin every
// value exactly as the binary search does, at and beside each threshold, for both
// libraries' semantics, and a feature whose thresholds cluster too tightly for a guide
// keeps the search.
static void TestGuidedBinning() {
  std::mt19937_64 rng(7);
  for (int semmiss : {0, 1, 2, 3}) {  // LightGBM with each missing type, then XGBoost
    const int sem = semmiss < 3 ? PD_SEMANTICS_LIGHTGBM : PD_SEMANTICS_XGBOOST;
    const unsigned miss = semmiss < 3 ? unsigned(semmiss) : unsigned(PD_MISSING_NAN);
    // 0: thresholds in equal steps (a guide in equal value steps), 1: in a geometric
    // series over both signs (equal order-key steps), 2: with a run of adjacent doubles /
    // floats longer than a bucket may hold (no guide: the binary search), 3: a few
    // thresholds (no guide: one compare per threshold, also in the vector binning).
    for (int kind : {0, 1, 2, 3}) {
      const bool clustered = kind == 2, few = kind == 3;
      std::vector<double> thr = {0.0, -0.0, 1e-35, -1e-35, pd::kZeroThreshold};
      for (int i = 1; i <= (few ? 2 : 150); i++) {
        const double jitter = std::uniform_real_distribution<double>(0, 0.1)(rng);
        if (kind == 1) {
          thr.push_back(std::exp2(i / 4.0 - 4 + jitter));
          thr.push_back(-std::exp2(i / 4.0 - 4 + jitter));
        } else {
          thr.push_back((i + jitter) * 0.37);
          thr.push_back(-(i + jitter) * 0.37);
        }
      }
      if (clustered) {
        double t = 26.5;
        for (int i = 0; i < 6; i++) {
          thr.push_back(t);
          t = sem == PD_SEMANTICS_XGBOOST ? double(std::nextafter(float(t), 1e30f)) : std::nextafter(t, kInf);
        }
      }
      if (sem == PD_SEMANTICS_XGBOOST)
        for (auto& t : thr) t = double(float(t));
      // A chain of stumps-in-a-tree: tree i splits feature 0 at thr[i], leaves 0 / 2^-i.
      SpecBuilder b;
      b.semantics = sem;
      for (size_t i = 0; i < thr.size(); i++)
        b.AddTree({{0, thr[i], Flags(false, i % 2, miss), -1, -1, -2}},
                  {0.0, std::ldexp(1.0, -int(i % 50))});
      pd::Ensemble ens;
      std::string msg;
      pd_ensemble_spec spec = b.Spec();
      CHECK(pd::Build(&spec, &ens, &msg) == PD_OK, "%s", msg.c_str());
      CHECK(ens.fast && ens.slots.size() == 1, "fast %d slots %zu", int(ens.fast), ens.slots.size());
      CHECK((ens.slots[0].guide_n > 0) == !(clustered || few), "sem %d kind %d: guide_n %u", sem, kind,
            ens.slots[0].guide_n);
      CHECK(!few || ens.slots[0].thr_n <= 16, "sem %d: %u thresholds", sem, ens.slots[0].thr_n);
      CHECK(int(ens.slots[0].missing) == int(miss), "missing %d", ens.slots[0].missing);
      if (!clustered && !few)
        CHECK(ens.slots[0].guide_linear == (kind == 0), "sem %d kind %d: guide_linear %u", sem, kind,
              ens.slots[0].guide_linear);
      std::vector<double> rows = {kNaN, kInf, -kInf, 0.0, -0.0, 5e-324, -5e-324, 1e300, -1e300};
      for (double t : thr) {
        rows.push_back(t);
        rows.push_back(std::nextafter(t, kInf));
        rows.push_back(std::nextafter(t, -kInf));
        rows.push_back(double(std::nextafter(float(t), 1e30f)));
        rows.push_back(double(std::nextafter(float(t), -1e30f)));
      }
      pd_ensemble* e = b.New();
      std::vector<double> want(rows.size());
      CHECK(PredictAll(e, PD_KERNEL_GENERIC, rows.data(), rows.size(), want.data()) == PD_OK, "generic");
      Expect(e, rows, 1, want, clustered ? "guided binning, clustered" : few ? "few thresholds" : "guided binning");
      // The same rows as float32 (LightGBM widens them to double; XGBoost reads float).
      std::vector<float> rows32(rows.begin(), rows.end());
      std::vector<double> want32(rows.size()), got32(rows.size());
      CHECK(PredictAll(e, PD_KERNEL_GENERIC, rows32.data(), rows.size(), want32.data()) == PD_OK, "generic f32");
      for (int k : kKernels) {
        if (k == 0 || !pd_kernel_supported(k)) continue;
        CHECK(PredictAll(e, k, rows32.data(), rows.size(), got32.data()) == PD_OK, "f32");
        for (size_t i = 0; i < rows.size(); i++)
          CHECK(std::memcmp(&got32[i], &want32[i], sizeof(double)) == 0, "guided binning f32, kernel %s, row %zu (%.17g)",
                KName(k).c_str(), i, double(rows32[i]));
      }
      pd_ensemble_free(e);
    }
  }
}

static void ExpectReject(SpecBuilder b, const char* want_substr) {
  pd_ensemble_spec s = b.Spec();
  pd_ensemble* e = reinterpret_cast<pd_ensemble*>(1);
  char err[256] = {0};
  int rc = pd_ensemble_new(&s, &e, err, sizeof err);
  CHECK(rc == PD_ERR_INVALID_MODEL, "want rejection containing '%s', got rc %d", want_substr, rc);
  CHECK(e == nullptr, "handle not cleared on error");
  CHECK(std::strstr(err, want_substr) != nullptr, "error '%s' does not mention '%s'", err, want_substr);
}

static SpecBuilder Small() {
  SpecBuilder b;
  b.num_features = 2;
  b.AddTree({{0, 1.0, 0, -1, 1, -1}, {1, 2.0, 0, -1, -2, -3}}, {1, 2, 3});
  return b;
}

static void TestBadSpecs() {
  { auto b = Small(); b.left[0] = 5; ExpectReject(b, "left child 5 out of range"); }
  { auto b = Small(); b.right[1] = 0; b.left[1] = -2; ExpectReject(b, "reached twice"); }  // cycle back to root
  { auto b = Small(); b.left[1] = -1; ExpectReject(b, "leaf 0 is reached twice"); }
  { auto b = Small(); b.right[0] = -9; ExpectReject(b, "leaf 8 out of range"); }
  { auto b = Small(); b.threshold[1] = kNaN; ExpectReject(b, "threshold is NaN"); }
  { auto b = Small(); b.feature[0] = 2; ExpectReject(b, "feature 2 out of range"); }
  { auto b = Small(); b.feature[0] = -1; ExpectReject(b, "feature -1 out of range"); }
  { auto b = Small(); b.flags[0] = 0x30; ExpectReject(b, "unknown flag bits"); }
  { auto b = Small(); b.flags[0] = 3u << 2; ExpectReject(b, "missing type 3"); }
  { auto b = Small(); b.flags[0] = PD_FLAG_CATEGORICAL; ExpectReject(b, "categorical set -1 out of range"); }
  { auto b = Small(); b.tree_output[0] = 1; ExpectReject(b, "tree_output 1 out of range"); }
  { auto b = Small(); b.leaf_start[1] = 2; ExpectReject(b, "need 3 leaves"); }
  { auto b = Small(); b.node_start[1] = -1; ExpectReject(b, "node_start decreases"); }
  { auto b = Small(); b.num_features = -1; ExpectReject(b, "num_features -1"); }
  { auto b = Small(); b.num_outputs = 0; ExpectReject(b, "num_outputs 0"); }
  { auto b = Small(); b.semantics = 7; ExpectReject(b, "semantics 7"); }
  { auto b = Small(); b.leaf_value[2] = kNaN; ExpectReject(b, "value is NaN"); }
  { auto b = Small(); b.base[0] = kNaN; ExpectReject(b, "base_score[0] is NaN"); }
  {
    // Unreachable node: node 1 is never referenced, leaves are.
    SpecBuilder b;
    b.num_features = 1;
    b.AddTree({{0, 1.0, 0, -1, -1, -2}, {0, 1.0, 0, -1, -3, -4}}, {1, 2, 3});
    ExpectReject(b, "node 1 is not reachable");
  }
  {
    const SpecBuilder small = Small();
    pd_ensemble_spec s = small.Spec();
    s.num_trees = 1 << 30;
    pd_ensemble* e = nullptr;
    char err[256];
    CHECK(pd_ensemble_new(&s, &e, err, sizeof err) == PD_ERR_INVALID_MODEL && std::strstr(err, "num_trees"), "huge num_trees: %s", err);
    s = small.Spec();
    s.feature = nullptr;
    CHECK(pd_ensemble_new(&s, &e, err, sizeof err) == PD_ERR_INVALID_MODEL && std::strstr(err, "feature is NULL"), "NULL array: %s", err);
    CHECK(pd_ensemble_new(nullptr, &e, err, sizeof err) == PD_ERR_INVALID_ARGUMENT, "NULL spec");
    // A zero-length error buffer is allowed.
    CHECK(pd_ensemble_new(&s, &e, nullptr, 0) == PD_ERR_INVALID_MODEL, "no err buffer");
  }
}

static void TestPredictArgs() {
  SpecBuilder b = Small();
  pd_ensemble* e = b.New();
  double rows[4] = {0, 0, 5, 5}, out[2];
  char err[256];
  CHECK(pd_predict_f64(e, PD_KERNEL_DEFAULT, rows, 2, 3, out, 2, err, sizeof err) == PD_ERR_INVALID_ARGUMENT && std::strstr(err, "3 columns"), "ncols: %s", err);
  CHECK(pd_predict_f64(e, PD_KERNEL_DEFAULT, rows, 2, 2, out, 1, err, sizeof err) == PD_ERR_INVALID_ARGUMENT && std::strstr(err, "output holds 1"), "short out: %s", err);
  CHECK(pd_predict_f64(e, PD_KERNEL_DEFAULT, nullptr, 2, 2, out, 2, err, sizeof err) == PD_ERR_INVALID_ARGUMENT, "NULL rows");
  CHECK(pd_predict_f64(nullptr, PD_KERNEL_DEFAULT, rows, 2, 2, out, 2, err, sizeof err) == PD_ERR_INVALID_ARGUMENT, "NULL handle");
  CHECK(pd_predict_f64(e, PD_KERNEL_DEFAULT, nullptr, 0, 2, nullptr, 0, err, sizeof err) == PD_OK, "empty batch");
  CHECK(pd_predict_f64(e, PD_KERNEL_DEFAULT, rows, 2, 2, out, 2, err, sizeof err) == PD_OK, "ok");
  // Row (0,0): 0 <= 1 then 0 <= 2: leaf 1 (2). Row (5,5): 5 > 1: leaf 0 (1).
  CHECK(out[0] == 2 && out[1] == 1, "got %g %g", out[0], out[1]);
  // Kernels: every supported one gives the same; anything else is refused.
  CHECK(pd_kernel_supported(PD_KERNEL_DEFAULT) && pd_kernel_supported(PD_KERNEL_GENERIC) &&
            pd_kernel_supported(PD_KERNEL_SCALAR | PD_KERNEL_WALK),
        "default, generic and scalar-walk always run");
  for (int k : {-2, 4, 7, PD_KERNEL_GENERIC | PD_KERNEL_WALK | 16, 1 << 20}) {
    CHECK(!pd_kernel_supported(k), "kernel %d supported", k);
    CHECK(pd_predict_f64(e, k, rows, 2, 2, out, 2, err, sizeof err) == PD_ERR_INVALID_ARGUMENT && std::strstr(err, "kernel"),
          "kernel %d: %s", k, err);
  }
  pd_ensemble_info info{};
  CHECK(pd_ensemble_get_info(e, &info, err, sizeof err) == PD_OK, "%s", err);
  CHECK(info.num_features == 2 && info.num_outputs == 1 && size_t(info.num_trees) == b.tree_output.size(),
        "info: %d features, %d outputs, %d trees", info.num_features, info.num_outputs, info.num_trees);
  CHECK(info.traversal != PD_TRAVERSAL_GENERIC && info.fallback_reason != nullptr && *info.fallback_reason == 0,
        "traversal %d, fallback '%s'", info.traversal, info.fallback_reason);
  CHECK(pd_ensemble_get_info(nullptr, &info, err, sizeof err) == PD_ERR_INVALID_ARGUMENT, "NULL ensemble");
  CHECK(pd_ensemble_get_info(e, nullptr, err, sizeof err) == PD_ERR_INVALID_ARGUMENT, "NULL info");
  pd_ensemble_free(e);
  pd_ensemble_free(nullptr);

  // A model outside the binned kernels' limits says why it falls back.
  SpecBuilder mixed;
  mixed.num_features = 1;
  mixed.AddTree({{0, 0.5, Flags(false, false, PD_MISSING_NAN), -1, 1, -2}, {0, 1.5, Flags(false, false, PD_MISSING_ZERO), -1, -1, -3}},
                {1, 2, 3});
  e = mixed.New();
  info = Info(e);
  CHECK(info.traversal == PD_TRAVERSAL_GENERIC && std::strstr(info.fallback_reason, "mixes missing types"),
        "traversal %d, fallback '%s'", info.traversal, info.fallback_reason);
  pd_ensemble_free(e);
}

static void TestConcurrent() {
  std::mt19937_64 rng(7);
  SpecBuilder b = RandomModel(rng, PD_SEMANTICS_LIGHTGBM, true, false, 50, 1);
  pd_ensemble* e = b.New();
  const size_t n = 500;
  std::vector<double> rows = RandomRows(rng, n), want(n);
  char err[256];
  CHECK(pd_predict_f64(e, PD_KERNEL_DEFAULT, rows.data(), n, 6, want.data(), n, err, sizeof err) == PD_OK, "%s", err);
  std::vector<std::thread> th;
  std::vector<int> bad(4, 0);
  for (int i = 0; i < 4; i++)
    th.emplace_back([&, i] {
      std::vector<double> got(n);
      char e2[256];
      for (int rep = 0; rep < 50; rep++) {
        size_t lo = (rep * 37) % n, cnt = std::min(n - lo, size_t(1 + rep * 11));
        if (pd_predict_f64(e, PD_KERNEL_DEFAULT, rows.data() + lo * 6, cnt, 6, got.data(), cnt, e2, sizeof e2) != PD_OK) bad[i]++;
        for (size_t r = 0; r < cnt; r++)
          if (got[r] != want[lo + r]) bad[i]++;
      }
    });
  for (auto& t : th) t.join();
  for (int i = 0; i < 4; i++) CHECK(bad[i] == 0, "thread %d saw %d mismatches", i, bad[i]);
  pd_ensemble_free(e);
}

// Background scoring: the same results as the foreground call, from the idle-priority
// pool, under concurrency; a batch that no worker starts within its timeout is withdrawn.
// Must run before any other background call in the process (it starts the pool with one
// worker, and the first start wins).
static void TestBackground() {
  CHECK(std::string(pd_background_priority()).empty(), "priority before start: %s", pd_background_priority());
  CHECK(pd_background_start(1) == 1, "start");
  CHECK(pd_background_start(8) == 1, "the first start wins");
#ifdef __linux__
  CHECK(std::string(pd_background_priority()).rfind("nice 19", 0) == 0, "priority: %s", pd_background_priority());
#endif
  std::mt19937_64 rng(11);
  SpecBuilder b = RandomModel(rng, PD_SEMANTICS_LIGHTGBM, true, true, 40, 2);
  pd_ensemble* e = b.New();
  const size_t n = 300;
  std::vector<double> rows = RandomRows(rng, n), want(2 * n), got(2 * n);
  std::vector<float> rows32(rows.begin(), rows.end());
  std::vector<double> want32(2 * n);
  char err[256];
  CHECK(pd_predict_f64(e, PD_KERNEL_DEFAULT, rows.data(), n, 6, want.data(), 2 * n, err, sizeof err) == PD_OK, "%s", err);
  CHECK(pd_predict_f32(e, PD_KERNEL_DEFAULT, rows32.data(), n, 6, want32.data(), 2 * n, err, sizeof err) == PD_OK, "%s", err);
  int64_t cpu = -1;
  CHECK(pd_predict_f64_background(e, PD_KERNEL_DEFAULT, rows.data(), n, 6, got.data(), 2 * n, 0, &cpu, err, sizeof err) == PD_OK, "%s", err);
  CHECK(got == want, "background f64 differs");
  CHECK(cpu >= 0, "cpu_ns %lld", (long long)cpu);
  CHECK(pd_predict_f32_background(e, PD_KERNEL_DEFAULT, rows32.data(), n, 6, got.data(), 2 * n, int64_t(10e9), nullptr, err, sizeof err) == PD_OK,
        "%s", err);
  CHECK(got == want32, "background f32 differs");
  // The foreground checks answer in the background too.
  CHECK(pd_predict_f64_background(e, PD_KERNEL_DEFAULT, rows.data(), n, 5, got.data(), 2 * n, 0, nullptr, err, sizeof err) == PD_ERR_INVALID_ARGUMENT &&
            std::strstr(err, "5 columns"),
        "ncols: %s", err);
  CHECK(pd_predict_f64_background(e, PD_KERNEL_DEFAULT, rows.data(), n, 6, got.data(), n, 0, nullptr, err, sizeof err) == PD_ERR_INVALID_ARGUMENT,
        "short out: %s", err);
  CHECK(pd_predict_f64_background(nullptr, PD_KERNEL_DEFAULT, rows.data(), n, 6, got.data(), 2 * n, 0, nullptr, err, sizeof err) == PD_ERR_INVALID_ARGUMENT,
        "NULL handle");
  CHECK(pd_predict_f64_background(e, PD_KERNEL_DEFAULT, nullptr, 0, 6, nullptr, 0, 0, nullptr, err, sizeof err) == PD_OK, "empty batch");

  // Four callers share the one worker.
  std::vector<std::thread> th;
  std::vector<int> bad(4, 0);
  for (int i = 0; i < 4; i++)
    th.emplace_back([&, i] {
      std::vector<double> out(2 * n);
      char e2[256];
      for (int rep = 0; rep < 20; rep++) {
        size_t lo = (rep * 31 + i * 7) % n, cnt = std::min(n - lo, size_t(1 + rep * 13));
        if (pd_predict_f64_background(e, PD_KERNEL_DEFAULT, rows.data() + lo * 6, cnt, 6, out.data(), 2 * cnt, 0, nullptr, e2, sizeof e2) != PD_OK)
          bad[i]++;
        for (size_t r = 0; r < 2 * cnt; r++)
          if (out[r] != want[2 * lo + r]) bad[i]++;
      }
    });
  for (auto& t : th) t.join();
  for (int i = 0; i < 4; i++) CHECK(bad[i] == 0, "thread %d saw %d mismatches", i, bad[i]);

  // Withdrawal: with the workers paused, a batch with a 1 ms timeout comes back
  // PD_ERR_DEADLINE without being scored (ASan would catch a worker touching the withdrawn
  // job later: it lived on the returned call's stack); a batch without a timeout waits and
  // is scored once the workers resume.
  pd_background_pause(1);
  std::fill(got.begin(), got.end(), -7.0);
  const int rc = pd_predict_f64_background(e, PD_KERNEL_DEFAULT, rows.data(), n, 6, got.data(), 2 * n, 1000000, nullptr, err, sizeof err);
  CHECK(rc == PD_ERR_DEADLINE && std::strstr(err, "no background thread started"), "rc %d: %s", rc, err);
  CHECK(got[0] == -7.0, "a withdrawn batch was scored");
  int waited_rc = -1;
  std::vector<double> waited(2 * n);
  std::thread waiter([&] {
    char e3[256];
    waited_rc = pd_predict_f64_background(e, PD_KERNEL_DEFAULT, rows.data(), n, 6, waited.data(), 2 * n, 0, nullptr, e3, sizeof e3);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  pd_background_pause(0);
  waiter.join();
  CHECK(waited_rc == PD_OK && waited == want, "the waiting batch: rc %d", waited_rc);
  pd_ensemble_free(e);
}

int main() {
  std::printf("kernel chosen: %s (avx2 %d, avx512 %d)\n", pd_kernel_name(), int(pd::CPUSupports(pd::Kernel::kAVX2)),
              int(pd::CPUSupports(pd::Kernel::kAVX512)));
  TestLightGBMRules();
  TestXGBoostRules();
  TestMulticlassWeightsLinear();
  TestRandomAgainstGeneric();
  TestDeepAndWideCategorical();
  TestXGBoostCategorical();
  TestGuidedBinning();
  TestBadSpecs();
  TestPredictArgs();
  TestConcurrent();
  TestBackground();
  if (failures) {
    std::fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  std::printf("ok\n");
  return 0;
}
