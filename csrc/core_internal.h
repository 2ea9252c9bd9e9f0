// core_internal.h — the C++ side of predictd's scoring core: the laid-out model and the
// kernels. Only csrc/*.cc and the C++ unit tests include it; everyone else uses predictd.h.
#ifndef PREDICTD_CORE_INTERNAL_H_
#define PREDICTD_CORE_INTERNAL_H_

#include <cstddef>
#include <cstdint>
#include <new>
#include <string>
#include <vector>

#include "predictd.h"

namespace pd {

// AlignedAlloc hands out 64-byte aligned storage (aligned vector loads of whole tables).
template <class T>
struct AlignedAlloc {
  using value_type = T;
  AlignedAlloc() = default;
  template <class U>
  AlignedAlloc(const AlignedAlloc<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  bool operator==(const AlignedAlloc&) const { return true; }
  bool operator!=(const AlignedAlloc&) const { return false; }
};

// LightGBM's kZeroThreshold is the float literal 1e-35f widened to double
// (1.0000000180025095e-35); MissingZero sends -k <= x <= k the default way (tree.h IsZero).
constexpr double kZeroThreshold = static_cast<double>(1e-35f);

// Kernel names the traversal code a predict call runs (PD_KERNEL_* in predictd.h).
enum class Kernel : int {
  kGeneric = PD_KERNEL_GENERIC,  // exact row-by-row walk over the original values (every model)
  kScalar = PD_KERNEL_SCALAR,    // binned, row-blocked, branchless; compiled for baseline x86-64
  kAVX2 = PD_KERNEL_AVX2,        // the same code compiled for AVX2 (+BMI2, FMA)
  kAVX512 = PD_KERNEL_AVX512,    // the same code compiled for AVX-512 (F, BW, VL, DQ)
};

const char* KernelName(Kernel k);

// The kernel chosen once per process: the best the CPU supports, or PREDICTD_KERNEL
// (generic|scalar|avx2|avx512) when set; a kernel the CPU lacks falls back to the best one.
Kernel DefaultKernel();
bool CPUSupports(Kernel k);

// Binned-node layout (the fast path). A tree is a pre-order array of 8-byte nodes; leaves
// are nodes that loop to themselves, so every row of a block can take exactly depth steps.
struct Node {
  uint16_t feat;   // bits 0-14: slot of the split feature in the binned row; bit 15: missing
                   // goes left (added to the bin, so the missing bin 0xFFFF wraps to 0)
  uint16_t kk;     // numerical: go left when uint16(bin + bit15) <= kk;
                   // categorical: the node's set number (its words start at cat_off[kk] in cat_pool)
  uint16_t left;   // tree-local node index
  uint16_t right;  // bits 0-14: tree-local node index; bit 15: categorical node
};

constexpr uint16_t kMissingBin = 0xFFFF;
constexpr uint16_t kCatFlag = 0x8000;
constexpr int kMaxFastTreeNodes = 0x7FFF;
constexpr int kMaxFastSlots = 0x7FFF;
constexpr int kMaxFastThresholds = 0x7FF0;  // bins 0..2n must stay below kMissingBin
// Categories 0..0xFFFE are bins of their own; bin ncat (at most 0xFFFF) is "anything else",
// and on an XGBoost slot bin ncat+1 (so ncat is at most 0xFFFE there) is NaN (CatBins).
constexpr int kMaxFastCategories = 0xFFFF;
// Distinct categorical sets a model may have (a node names its set in 16 bits) and the
// words of their category-major matrices together (Ensemble::cat_pool).
constexpr size_t kMaxCatSets = 0x10000;
constexpr size_t kMaxCatPoolWords = size_t(1) << 23;  // cat_off's 23-bit offsets
// Leaf tables above this size (before bins with equal leaf sets are merged) are not built.
constexpr size_t kMaxLeafTableBytes = size_t(16) << 20;
// Kernel flag: walk the trees even where the model has leaf tables or a heap layout
// (benchmarks compare the traversals in one process).
constexpr int kKernelWalkFlag = PD_KERNEL_WALK;
// The table kernel keeps one pointer per used feature on the stack.
constexpr size_t kMaxTableSlots = 64;

// How one used feature is binned.
struct FeatureBin {
  int32_t feature;      // column in the input row
  uint8_t categorical;  // 1: bin = category (0..ncat-1) or ncat for anything else
  uint8_t missing;      // numerical, LightGBM: PD_MISSING_*; XGBoost: PD_MISSING_NAN.
                        // Categorical: PD_MISSING_NONE (LightGBM: NaN is "anything else")
                        // or PD_MISSING_NAN (XGBoost: NaN is bin ncat+1, which each node
                        // sends its own default way)
  uint32_t thr_off;     // thresholds [thr_off, thr_off+thr_n) in thr64 / thr32, ascending,
                        // then kGuideProbes NaNs (they compare false both ways)
  uint32_t thr_n;
  uint32_t ncat;
  // Guide (when guide_n > 0): a value falls in one of guide_n buckets by a function that
  // never decreases with the value (GuideBucket), guide[guide_off + bucket] counts the
  // thresholds in lower buckets, and no bucket holds more than kGuideProbes thresholds, so
  // kGuideProbes compares finish the count. Replaces the binary search over thr_n
  // thresholds. Buckets are equal steps of the value (guide_linear: floor((x - guide_min)
  // * guide_scale) in double) or of its order key (OrderKey, in the threshold's own
  // precision: (k - guide_kmin) >> guide_shift), clamped to [0, guide_n - 1].
  uint32_t guide_off;
  uint32_t guide_n;
  uint32_t guide_shift;
  uint32_t guide_linear;
  uint64_t guide_kmin;
  double guide_min, guide_scale;
};

constexpr uint32_t kGuideProbes = 4;
constexpr int kMaxHeapDepth = 10;
constexpr size_t kMaxHeapBytes = size_t(64) << 20;
// Leaf tables whose build would test more (path step, bin) pairs are not built.
constexpr size_t kMaxLeafTableWork = size_t(1) << 28;
// ... or that have more leaf-path steps (a leaf's path node, 16 bytes each while building).
constexpr size_t kMaxLeafTableSteps = size_t(1) << 22;
constexpr uint32_t kMaxGuideBuckets = 8192;

// OrderKey maps a non-NaN float or double to an unsigned integer in the same order
// (-0.0 and 0.0 to one key).
inline uint64_t OrderKey(double x) {
  x += 0.0;  // -0.0 → +0.0
  uint64_t b;
  __builtin_memcpy(&b, &x, sizeof b);
  return (b >> 63) ? ~b : (b | (uint64_t(1) << 63));
}
inline uint64_t OrderKey(float x) {
  x += 0.0f;
  uint32_t b;
  __builtin_memcpy(&b, &x, sizeof b);
  return (b >> 31) ? uint32_t(~b) : (b | (uint32_t(1) << 31));
}

// GuideBucket is the guide bucket of a non-NaN value x (FeatureBin::guide_*). Build and
// predict call this one function, so thresholds and values are bucketed alike.
template <class V>
inline uint32_t GuideBucket(const FeatureBin& fb, V x) {
  const uint32_t last = fb.guide_n - 1;
  if (fb.guide_linear) {
    const double d = (double(x) - fb.guide_min) * fb.guide_scale;
    return d < 0.0 ? 0u : d >= double(last) ? last : uint32_t(d);
  }
  const uint64_t k = OrderKey(x);
  const uint64_t d = k < fb.guide_kmin ? 0 : (k - fb.guide_kmin) >> fb.guide_shift;
  return d >= last ? last : uint32_t(d);
}

// CatBins is the number of bins of a categorical slot: its categories, "anything else",
// and on XGBoost slots NaN (FeatureBin::missing).
inline uint32_t CatBins(const FeatureBin& fb) { return fb.ncat + 1 + (fb.missing == PD_MISSING_NAN ? 1 : 0); }

// CatLeft is a categorical node's binned decision: whether bin b is in the node's set
// (cat_off entry c, Ensemble::cat_pool).
inline bool CatLeft(const uint32_t* pool, uint32_t c, uint32_t b) {
  return (pool[(c & 0x7FFFFFu) + (b << (c >> 28))] >> ((c >> 23) & 31u)) & 1u;
}

struct Ensemble {
  int semantics = 0;
  int num_features = 0;
  int num_outputs = 0;
  int num_trees = 0;
  std::vector<double> base;  // num_outputs

  // Original form, used by the generic path.
  std::vector<int32_t> node_start, leaf_start, tree_output;
  std::vector<int32_t> feature, left, right, cat_set;
  std::vector<double> threshold;
  std::vector<float> threshold32;  // XGBoost: thresholds rounded to float once
  std::vector<uint8_t> flags;
  std::vector<double> leaf_value;  // already multiplied by the tree weight (LightGBM)
  std::vector<float> leaf_value32; // XGBoost: float32(float32(w) * float32(leaf))
  std::vector<int32_t> cat_start;
  std::vector<uint32_t> cat_bits;
  std::vector<double> linear_weights, linear_bias;

  // Fast path; fast == false when some part of the model is outside its limits.
  bool fast = false;
  std::string fallback_reason;  // why fast is false, for tests and diagnostics
  std::vector<FeatureBin> slots;
  std::vector<double> thr64;
  std::vector<float> thr32;
  std::vector<uint16_t> guide;
  std::vector<Node> nodes;       // all trees, concatenated
  // The same nodes split for the vector kernels: info = feat | kk << 16;
  // kids = left | right << 16 | (categorical ? 1 << 31 : 0).
  std::vector<uint32_t> info32, kids32;
  // small_trees: every tree has at most 64 nodes, the model uses at most 8 features and
  // every node's kk fits 15 bits. pk64 then holds each node in one word, 64 words per tree
  // (64-byte aligned) for the register-table walks:
  //   left | right << 6 | slot << 12 | missing-left << 15 | kk << 16 | categorical << 31.
  bool small_trees = false;
  std::vector<uint32_t, AlignedAlloc<uint32_t>> pk64;
  // Leaf tables (the table kernel), when every tree has at most 32 leaves and the tables
  // fit kMaxLeafTableBytes. A tree cuts feature space into boxes, one per leaf; the row's
  // leaf is the one box that holds it. For each used feature (slot) and each of its bins,
  // lt_mask holds, per tree, the set of leaves (bit = leaf number in pre-order) whose box
  // admits that bin on that feature: the leaves whose path has no node on the feature that
  // sends the bin the other way. AND-ing the sets of a row's bins over all slots leaves
  // exactly one bit: the leaf. Bins with equal sets share one row of lt_mask ("class").
  bool leaf_tables = false;
  uint32_t lt_stride = 0;  // words per class row: num_trees rounded up to 16
  std::vector<uint32_t, AlignedAlloc<uint32_t>> lt_mask;
  // Per slot s: lt_map[lt_map_off[s] + min(bin, lt_map_n[s] - 1)] is the word offset in
  // lt_mask of the bin's class row (numerical: bins 0..2n and missing; categorical: its
  // CatBins bins).
  std::vector<uint32_t> lt_map, lt_map_off, lt_map_n;
  std::vector<double> lt_val64;  // num_trees * 32: leaf values by leaf number
  std::vector<float> lt_val32;
  // Heap layout (the heap walk), for models without categorical splits and without leaf
  // tables whose trees are at most kMaxHeapDepth deep and mostly full: every tree padded
  // to a complete tree of depth heap_depth, node h's children at 2h+1 and 2h+2, so a walk
  // needs no child pointers and always takes heap_depth steps. heap_node: (2^depth - 1)
  // words per tree, info32's format (slot | missing-left << 15 | kk << 16; padding nodes
  // send every bin left); heap_val64/32: 2^depth leaf values per tree (a leaf above the
  // bottom sits at its leftmost descendant's place).
  int heap_depth = 0;
  std::vector<uint32_t> heap_node;
  std::vector<double> heap_val64;
  std::vector<float> heap_val32;
  std::vector<uint32_t> tree_off;  // num_trees+1, into nodes / val64 / val32
  std::vector<uint16_t> tree_depth;
  std::vector<double> val64;     // per node: leaf value (0 for internal nodes)
  std::vector<float> val32;
  // Categorical sets, category-major: per categorical slot a matrix of CatBins rows (bins)
  // of 2^shift words, bit j of row c set when the slot's set j holds category c (row
  // ncat, "anything else", is empty; XGBoost's NaN row ncat+1 has bit j set when set j's
  // nodes send NaN left: sets are told apart by that direction too), so a
  // row's lookups on one feature read one row of words whatever the set (a set-major pool
  // cost ranker_255 45% of its walk time in cache misses). cat_off[set number] =
  // word offset of the set's column in row 0 (bits 0-22) | j & 31 (bits 23-27) |
  // shift (bits 28-31); CatLeft reads it.
  std::vector<uint32_t> cat_pool;
  std::vector<uint32_t> cat_off;
  bool has_cat = false;
  int max_depth = 0;
};

// Build validates spec and lays it out. On error it returns a status and sets *msg.
int Build(const pd_ensemble_spec* spec, Ensemble* out, std::string* msg);

// Predict scores rows with kernel k (which must be supported by the CPU; kGeneric always
// works; k may carry kKernelWalkFlag). T is double or float. ncols == num_features, out
// has nrows*num_outputs values.
template <class T>
void Predict(const Ensemble& e, Kernel k, const T* rows, size_t nrows, double* out);

}  // namespace pd

#endif  // PREDICTD_CORE_INTERNAL_H_
