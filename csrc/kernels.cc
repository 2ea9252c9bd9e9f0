// kernels.cc — the scoring kernels and their run-time dispatch.
//
// Generic path: row by row, tree by tree, a plain walk over the original values with each
// library's exact decision rule. It covers every valid model and is the reference the fast
// kernels are tested against.
//
// Fast path, per block of up to 128 rows (1,024 for the partition walk):
//   1. Bin: each used feature value becomes a uint16 bin index against the sorted, distinct
//      thresholds of that feature (TL2cgen's quantisation: 2i+1 = equal to threshold i,
//      2i = strictly between thresholds i-1 and i), so LightGBM's `x <= t` (double) and
//      XGBoost's `float(x) < t` (float) both become one exact integer compare, and missing
//      values (NaN; LightGBM's zero range) become bin 0xFFFF. Bins are feature-major. A
//      feature's guide (FeatureBin::guide_*) finds the bin with one bucket lookup and four
//      compares; features whose thresholds crowd too closely keep a branch-free search.
//      The AVX-512 kernel bins numerical features eight (LightGBM, double) or sixteen
//      (XGBoost, float) rows per vector; otherwise an XGBoost slot with a guide is
//      binned a slot at a time with no branch per row.
//   2. Score, by the first of these the model has:
//      - Leaf tables (trees of at most 32 leaves): a tree cuts feature space into boxes,
//        one per leaf, and a row lands in the one box that holds it. Per feature and bin,
//        a precomputed word per tree holds the leaves whose box admits that bin; AND-ing
//        the words of a row's bins over the used features leaves one bit, the leaf. No
//        walk, no branches; 16 trees per AVX-512 op (8 with AVX2).
//      - Heap walk (trees at most 10 deep, mostly full, no categorical splits): trees
//        padded to complete trees, children at 2h+1 and 2h+2, depth steps per row.
//      - Partition walk (the rest but models of small trees, at batches of at least 16 /
//        64 / 128 rows for the scalar / AVX2 / AVX-512 kernel): blocks of up to 1,024
//        rows, tree by tree, the rows' indices partitioned down the tree; each node reads
//        one column of bins for its rows, a leaf adds its value to its rows (a node whose
//        children are both leaves adds each row its leaf's value at once), small ranges
//        finish in a refill walk. The AVX2 and AVX-512 kernels split eight rows at a time
//        (one permute puts the left rows first, the right ones last).
//      - Pointer walks (smaller batches, and models of small trees): every tree, all rows
//        of the block in lock step; leaves loop to themselves, so rows that arrive early
//        just stay, and a level where no row moved ends the tree. Scalar: 8-byte pre-order nodes, one row at a time per
//        level, or, on deep trees, the refill walk (16 rows in flight, each on its own
//        path, a finished lane taking the block's next row). AVX2 / AVX-512: 8 / 16 rows
//        per vector; nodes and bins gathered (a vector whose lanes are all at leaves stops),
//        or, for trees of at most 64 nodes over at most 8 features, a tree held in
//        registers and looked up with permutes. Categorical nodes read their set's bit in
//        the row of the bin (category) of their feature's category-major matrix (CatLeft);
//        XGBoost's NaN has a row of its own there, holding each set's default direction.
//   3. Sum leaves per row in tree order (float for XGBoost, double for LightGBM).
// The scalar, AVX2 and AVX-512 kernels are compiled from this file with
// __attribute__((target)); the CPU picks one at run time. No -march=native. Every kernel
// is bit-identical to the generic walk (csrc/tests/core_test.cc checks it).
// Not QuickScorer: no per-feature scans of sorted thresholds, no masks of "false" nodes,
// no exit leaf read off the lowest set bit of a partial mask (patent US11106685B2 covers
// that traversal). The leaf tables are indexed by the row's bin and hold each leaf's full
// box membership, so exactly one leaf survives the AND. Whether that is far enough from
// the patent's claims is a question for a lawyer, not settled here (docs/benchmarks.md).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif
// GCC 12 warns inside its own AVX-512 gather headers (_mm512_undefined_epi32).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "core_internal.h"

// Sums must round exactly as the libraries' do: never fuse a multiply and an add (the
// AVX2/AVX-512 kernels have FMA, and g++ contracts by default even in ISO mode; cgo does
// not accept -ffp-contract=off as a flag).
// Loops start on 32-byte boundaries: the partition walk's split and leaf-pair loops ran
// 25% slower (XGBoost depth-12 trees, AVX-512) wherever an unrelated change elsewhere in
// this file left them misaligned; aligned, their speed no longer depends on what precedes
// them (docs/benchmarks.md, "Production-shaped models" step 13). cgo refuses
// -falign-loops too. Both in one pragma after the includes: functions whose optimize
// options differ are not inlined into each other, so core_internal.h's helpers must
// carry neither, as before.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off", "align-loops=32")
#elif defined(__clang__)
#pragma clang fp contract(off)
#endif

#if defined(__GNUC__)
#define PD_INLINE __attribute__((always_inline)) inline
#else
#define PD_INLINE inline
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#define PD_X86 1
#define PD_TARGET_AVX2 __attribute__((target("avx2,bmi,bmi2,fma,popcnt,lzcnt")))
#define PD_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,bmi,bmi2,fma,popcnt,lzcnt")))
#else
#define PD_X86 0
#endif

namespace pd {

const char* KernelName(Kernel k) {
  switch (k) {
    case Kernel::kGeneric: return "generic";
    case Kernel::kScalar: return "scalar";
    case Kernel::kAVX2: return "avx2";
    case Kernel::kAVX512: return "avx512";
  }
  return "unknown";
}

bool CPUSupports(Kernel k) {
  switch (k) {
    case Kernel::kGeneric:
    case Kernel::kScalar:
      return true;
#if PD_X86
    case Kernel::kAVX2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2") &&
             __builtin_cpu_supports("fma");
    case Kernel::kAVX512:
      return CPUSupports(Kernel::kAVX2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq");
#else
    default:
      return false;
#endif
  }
  return false;
}

static Kernel ChooseKernel() {
  Kernel best = Kernel::kScalar;
  if (CPUSupports(Kernel::kAVX2)) best = Kernel::kAVX2;
  if (CPUSupports(Kernel::kAVX512)) best = Kernel::kAVX512;
  const char* env = std::getenv("PREDICTD_KERNEL");
  if (env == nullptr || *env == 0) return best;
  for (Kernel k : {Kernel::kGeneric, Kernel::kScalar, Kernel::kAVX2, Kernel::kAVX512})
    if (std::strcmp(env, KernelName(k)) == 0 && CPUSupports(k)) return k;
  return best;
}

Kernel DefaultKernel() {
  static const Kernel k = ChooseKernel();  // read once; thread-safe static init
  return k;
}

// ---------------------------------------------------------------------------------------
// Generic path.

namespace {

// LightGBM categorical rule (tree.h CategoricalDecision): NaN and negative categories go
// right; the category is the value truncated toward zero; a category beyond the set's bits
// goes right.
PD_INLINE bool InCatSet(const Ensemble& e, int cs, double x) {
  if (!(x > -1.0) || !(x < 2147483648.0)) return false;  // NaN, (int)x < 0, or too big
  const uint32_t c = uint32_t(int32_t(x));
  const uint32_t words = uint32_t(e.cat_start[cs + 1] - e.cat_start[cs]);
  if (c / 32 >= words) return false;
  return (e.cat_bits[e.cat_start[cs] + c / 32] >> (c % 32)) & 1u;
}

template <class T>
void PredictGeneric(const Ensemble& e, const T* rows, size_t nrows, double* out) {
  const size_t F = size_t(e.num_features), K = size_t(e.num_outputs);
  const bool xgb = e.semantics == PD_SEMANTICS_XGBOOST;
  // Accumulators on the stack for the usual few outputs (a 1-row call allocates nothing).
  constexpr size_t kStackOut = 64;
  double stack64[kStackOut];
  float stack32[kStackOut];
  std::vector<double> heap64;
  std::vector<float> heap32;
  double* acc64 = stack64;
  float* acc32 = stack32;
  if (K > kStackOut) {
    heap64.resize(K);
    heap32.resize(K);
    acc64 = heap64.data();
    acc32 = heap32.data();
  }
  for (size_t r = 0; r < nrows; r++) {
    const T* x = rows + r * F;
    for (size_t k = 0; k < K; k++) {
      acc64[k] = e.base[k];
      acc32[k] = float(e.base[k]);
    }
    for (int t = 0; t < e.num_trees; t++) {
      const int32_t n0 = e.node_start[t];
      int32_t c = e.node_start[t + 1] > n0 ? 0 : -1;
      while (c >= 0) {
        const int32_t i = n0 + c;
        const uint8_t fl = e.flags[i];
        const bool dl = fl & PD_FLAG_DEFAULT_LEFT;
        bool left;
        if (xgb) {
          // XGBoost: float32(x) < float32 threshold; NaN follows the default direction.
          const float v = float(x[e.feature[i]]);
          if (std::isnan(v)) left = dl;
          // XGBoost categorical (children swapped at parse: the set goes "left"): any
          // negative value is no category (common/categorical.h), unlike LightGBM's
          // truncation of (-1, 0) to category 0.
          else if (fl & PD_FLAG_CATEGORICAL) left = v >= 0.0f && InCatSet(e, e.cat_set[i], double(v));
          else left = v < e.threshold32[i];
        } else {
          double v = double(x[e.feature[i]]);
          if (fl & PD_FLAG_CATEGORICAL) {
            left = InCatSet(e, e.cat_set[i], v);
          } else {
            // LightGBM's predictor turns a dense row into (index, value) pairs that keep
            // only NaN and |x| > kZeroThreshold; absent features read as 0.0.
            if (v >= -kZeroThreshold && v <= kZeroThreshold) v = 0.0;
            // Then tree.h NumericalDecision, in double.
            const unsigned mt = (fl >> 2) & 3u;
            if (std::isnan(v) && mt != PD_MISSING_NAN) v = 0.0;
            if ((mt == PD_MISSING_ZERO && v >= -kZeroThreshold && v <= kZeroThreshold) ||
                (mt == PD_MISSING_NAN && std::isnan(v)))
              left = dl;
            else
              left = v <= e.threshold[i];
          }
        }
        c = left ? e.left[i] : e.right[i];
      }
      const int32_t leaf = e.leaf_start[t] + (-c - 1);
      const size_t k = size_t(e.tree_output[t]);
      if (xgb) acc32[k] += e.leaf_value32[leaf];
      else acc64[k] += e.leaf_value[leaf];
    }
    if (!e.linear_weights.empty()) {
      for (size_t k = 0; k < K; k++) {
        if (xgb) {
          // XGBoost gblinear: float sums, absent (NaN) features skipped.
          acc32[k] += float(e.linear_bias[k]);
          for (size_t f = 0; f < F; f++) {
            const float v = float(x[f]);
            if (!std::isnan(v)) acc32[k] += v * float(e.linear_weights[f * K + k]);
          }
        } else {
          double sum = e.linear_bias[k];
          for (size_t f = 0; f < F; f++) {
            const double v = double(x[f]);
            if (!std::isnan(v)) sum += v * e.linear_weights[f * K + k];
          }
          acc64[k] += sum;
        }
      }
    }
    for (size_t k = 0; k < K; k++) out[r * K + k] = xgb ? double(acc32[k]) : acc64[k];
  }
}

// ---------------------------------------------------------------------------------------
// Fast path.

constexpr size_t kMaxBlock = 128;        // rows walked in lock step
// uint16 bins kept on the stack (64 KiB; cgo runs C on the thread's system stack). A block
// holds kStackBins / used-features rows, at most kMaxBlock.
constexpr size_t kStackBins = 32768;
constexpr size_t kStackAcc = 1024;       // accumulators kept on the stack

// Pick returns the double or the float copy of a model array, matching the accumulator
// type A (double for LightGBM, float for XGBoost).
template <class A>
PD_INLINE const A* Pick(const std::vector<double>& v64, const std::vector<float>& v32) {
  if constexpr (sizeof(A) == sizeof(float)) return v32.data();
  else return v64.data();
}

// RowOffsets fills o[i] = min(g*L + i, nb - 1) for the block's vectors of L rows: the vector
// walks' row index per lane (lanes past the block repeat its last row).
PD_INLINE void RowOffsets(int32_t* o, size_t L, size_t nb) {
  for (size_t i = 0; i < (nb + L - 1) / L * L; i++) o[i] = int32_t(std::min(i, nb - 1));
}

// Count of thresholds strictly below x (branchless lower bound).
template <class V>
PD_INLINE uint32_t CountBelow(const V* thr, uint32_t n, V x) {
  if (n <= 16) {
    uint32_t c = 0;
    for (uint32_t j = 0; j < n; j++) c += thr[j] < x;
    return c;
  }
  // Arithmetic, not a ternary: the compiler must not turn the step into a branch that
  // mispredicts half the time.
  const V* p = thr;
  uint32_t len = n;
  while (len > 1) {
    const uint32_t half = len / 2;
    p += half * uint32_t(p[half - 1] < x);
    len -= half;
  }
  return uint32_t(p - thr) + uint32_t(*p < x);
}

template <class V>
PD_INLINE uint16_t BinValue(const V* thr, uint32_t n, V x) {
  const uint32_t c = CountBelow(thr, n, x);
  return uint16_t(2 * c + (c < n && thr[c] == x));
}

// BinGuided is BinValue through the slot's guide (FeatureBin::guide_*): one bucket lookup
// and kGuideProbes compares, no search. The NaN padding after the thresholds compares
// false.
template <class V>
PD_INLINE uint16_t BinGuided(const Ensemble& e, const FeatureBin& fb, V x) {
  const uint32_t g = e.guide[fb.guide_off + GuideBucket(fb, x)];
  const V* thr;
  if constexpr (sizeof(V) == sizeof(float)) thr = e.thr32.data() + fb.thr_off;
  else thr = e.thr64.data() + fb.thr_off;
  uint32_t c = g;
  for (uint32_t j = 0; j < kGuideProbes; j++) c += thr[g + j] < x;
  return uint16_t(2 * c + (thr[c] == x));
}

template <class T, bool kXGB>
PD_INLINE uint16_t BinFeature(const Ensemble& e, const FeatureBin& fb, const T* row) {
  if (fb.feature < 0) return 0;
  const T raw = row[fb.feature];
  if (fb.categorical) {
    if (kXGB) {
      // PredictGeneric's XGBoost rule: NaN takes the node's default direction (the NaN bin,
      // CatBins); any negative value, -0.5 too, is no category; -0.0 is category 0.
      const float v = float(raw);
      if (std::isnan(v)) return uint16_t(fb.ncat + 1);
      if (!(v >= 0.0f) || !(v < float(fb.ncat))) return uint16_t(fb.ncat);  // negative, unseen
      return uint16_t(int32_t(v));
    }
    const double v = double(raw);
    if (!(v > -1.0) || !(v < double(fb.ncat))) return uint16_t(fb.ncat);  // NaN, negative, unseen
    return uint16_t(int32_t(v));
  }
  if (kXGB) {
    const float v = float(raw);
    if (std::isnan(v)) return kMissingBin;
    if (fb.guide_n) return BinGuided<float>(e, fb, v);
    return BinValue<float>(e.thr32.data() + fb.thr_off, fb.thr_n, v);
  }
  double v = double(raw);
  if (std::isnan(v)) {
    if (fb.missing == PD_MISSING_NONE) v = 0.0;
    else return kMissingBin;
  }
  if (v >= -kZeroThreshold && v <= kZeroThreshold) {
    // LightGBM's predictor drops such values from the row, so they read as 0.0
    // (PredictGeneric); MissingZero sends 0.0 the default way.
    if (fb.missing == PD_MISSING_ZERO) return kMissingBin;
    v = 0.0;
  }
  if (fb.guide_n) return BinGuided<double>(e, fb, v);
  return BinValue<double>(e.thr64.data() + fb.thr_off, fb.thr_n, v);
}

// BinSlotXGBGuided: BinFeature's XGBoost rule over the block's rows for one numerical
// slot with a guide, the slot's fields read once and no branch per row (BinFeature tests
// the slot's kind per row and branches on NaN, which mispredicts where NaNs fall at
// random rows): a NaN is binned as 0.0, then replaced by the missing bin. The same
// arithmetic as GuideBucket and BinGuided, so every bin is theirs.
template <class T>
PD_INLINE void BinSlotXGBGuided(const Ensemble& e, const FeatureBin& fb, const T* blk, size_t F, size_t nb,
                                uint16_t* out) {
  const T* x = blk + fb.feature;
  const uint16_t* guide = e.guide.data() + fb.guide_off;
  const float* thr = e.thr32.data() + fb.thr_off;
  const uint32_t last = fb.guide_n - 1;
  static_assert(kGuideProbes == 4, "the probes below are unrolled");
  const auto finish = [&](uint32_t bucket, float w) {
    uint32_t c = guide[bucket];
    const float* t = thr + c;
    c += uint32_t(t[0] < w) + uint32_t(t[1] < w) + uint32_t(t[2] < w) + uint32_t(t[3] < w);
    return uint16_t(2 * c + uint32_t(thr[c] == w));
  };
  if (fb.guide_linear) {
    const double gmin = fb.guide_min, gscale = fb.guide_scale, dlast = double(last);
    for (size_t r = 0; r < nb; r++) {
      const float v = float(x[r * F]);
      const bool nan = std::isnan(v);
      const float w = nan ? 0.0f : v;
      const double d = (double(w) - gmin) * gscale;
      const uint32_t k = d < 0.0 ? 0u : d >= dlast ? last : uint32_t(d);
      const uint16_t b = finish(k, w);
      out[r] = nan ? kMissingBin : b;
    }
    return;
  }
  const uint64_t kmin = fb.guide_kmin;
  const uint32_t shift = fb.guide_shift;
  for (size_t r = 0; r < nb; r++) {
    const float v = float(x[r * F]);
    const bool nan = std::isnan(v);
    const float w = nan ? 0.0f : v;
    const uint64_t key = OrderKey(w);
    const uint64_t d = key < kmin ? 0 : (key - kmin) >> shift;
    const uint32_t k = d >= last ? last : uint32_t(d);
    const uint16_t b = finish(k, w);
    out[r] = nan ? kMissingBin : b;
  }
}

// BinSlotVectorizes: LightGBM numerical slots with a guide or at most 16 thresholds are
// binned eight rows at a time by BinSlotAVX512.
PD_INLINE bool BinSlotVectorizes(const FeatureBin& fb) {
  return fb.feature >= 0 && !fb.categorical && (fb.guide_n > 0 || fb.thr_n <= 16);
}

// BinSlotVectorizesXGB: XGBoost numerical slots likewise, by BinSlotXGBAVX512 (sixteen
// rows at a time); a float's order key, and so guide_kmin, fits 32 bits.
PD_INLINE bool BinSlotVectorizesXGB(const FeatureBin& fb) {
  return BinSlotVectorizes(fb) && (fb.guide_n == 0 || fb.guide_linear || fb.guide_kmin <= 0xFFFFFFFFu);
}

#if PD_X86
// BinSlotAVX512: BinFeature's LightGBM numerical rule for eight rows per vector: the rows'
// values gathered and widened to double, NaN and the zero range handled per missing type,
// then the guide's bucket, its kGuideProbes compares (gathered thresholds) and the
// equality test, or, for a few thresholds, one broadcast compare per threshold.
template <class T>
PD_TARGET_AVX512 inline void BinSlotAVX512(const Ensemble& e, const FeatureBin& fb, const T* blk, size_t F,
                                           size_t nb, uint16_t* out) {
  const double* thr = e.thr64.data() + fb.thr_off;
  const int* guide = reinterpret_cast<const int*>(e.guide.data() + fb.guide_off);
  const __m512d zero = _mm512_setzero_pd(), kz = _mm512_set1_pd(kZeroThreshold), nkz = _mm512_set1_pd(-kZeroThreshold);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i rstep = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(int(F)));
  const T* col = blk + fb.feature;
  for (size_t r = 0; r < nb; r += 8) {
    const __mmask8 live = nb - r >= 8 ? __mmask8(0xFF) : __mmask8((1u << (nb - r)) - 1);
    // The base moves with the rows, so the 32-bit indices stay below 8 rows' width.
    const T* base = col + r * F;
    __m512d x;
    if constexpr (sizeof(T) == sizeof(double)) {
      x = _mm512_mask_i32gather_pd(zero, live, rstep, base, 8);
    } else {
      x = _mm512_cvtps_pd(_mm256_mmask_i32gather_ps(_mm256_setzero_ps(), live, rstep, base, 4));
    }
    const __mmask8 nan = _mm512_cmp_pd_mask(x, x, _CMP_UNORD_Q);
    const __mmask8 inzero = _mm512_cmp_pd_mask(x, nkz, _CMP_GE_OQ) & _mm512_cmp_pd_mask(x, kz, _CMP_LE_OQ);
    // As BinFeature: NaN reads 0.0 under MissingNone, else it is missing; the zero range
    // reads 0.0, or is missing under MissingZero. Missing lanes bin from 0.0, then 0xFFFF.
    const __mmask8 missing = fb.missing == PD_MISSING_NONE ? __mmask8(0)
                             : fb.missing == PD_MISSING_ZERO ? __mmask8(nan | inzero)
                                                             : nan;
    x = _mm512_mask_mov_pd(x, __mmask8(nan | inzero), zero);
    __m256i c;
    if (fb.guide_n) {
      __m256i b;
      const uint32_t last = fb.guide_n - 1;
      if (fb.guide_linear) {
        __m512d d = _mm512_mul_pd(_mm512_sub_pd(x, _mm512_set1_pd(fb.guide_min)), _mm512_set1_pd(fb.guide_scale));
        d = _mm512_min_pd(_mm512_max_pd(d, zero), _mm512_set1_pd(double(last)));
        b = _mm512_cvttpd_epi32(d);
      } else {
        const __m512i bits = _mm512_castpd_si512(_mm512_add_pd(x, zero));  // -0.0 → +0.0
        const __mmask8 neg = _mm512_movepi64_mask(bits);
        const __m512i key = _mm512_mask_xor_epi64(_mm512_or_si512(bits, _mm512_set1_epi64(INT64_MIN)), neg,
                                                  bits, _mm512_set1_epi64(-1));
        const __m512i kmin = _mm512_set1_epi64(int64_t(fb.guide_kmin));
        __m512i d = _mm512_maskz_sub_epi64(_mm512_cmpge_epu64_mask(key, kmin), key, kmin);
        d = _mm512_srl_epi64(d, _mm_cvtsi32_si128(int(fb.guide_shift)));
        d = _mm512_min_epu64(d, _mm512_set1_epi64(int64_t(last)));
        b = _mm512_cvtepi64_epi32(d);
      }
      // uint16 guide entries, read as 32-bit words (Layout pads the guide by one entry).
      const __m256i g = _mm256_and_si256(_mm256_i32gather_epi32(guide, b, 2), _mm256_set1_epi32(0xFFFF));
      c = g;
      for (uint32_t j = 0; j < kGuideProbes; j++) {
        const __m512d t = _mm512_i32gather_pd(_mm256_add_epi32(g, _mm256_set1_epi32(int(j))), thr, 8);
        c = _mm256_mask_add_epi32(c, _mm512_cmp_pd_mask(t, x, _CMP_LT_OQ), c, one);
      }
    } else {
      c = _mm256_setzero_si256();
      for (uint32_t j = 0; j < fb.thr_n; j++)
        c = _mm256_mask_add_epi32(c, _mm512_cmp_pd_mask(_mm512_set1_pd(thr[j]), x, _CMP_LT_OQ), c, one);
    }
    // thr[n] is NaN padding: never equal.
    const __mmask8 eq = _mm512_cmp_pd_mask(_mm512_i32gather_pd(c, thr, 8), x, _CMP_EQ_OQ);
    __m256i bin = _mm256_add_epi32(c, c);
    bin = _mm256_mask_add_epi32(bin, eq, bin, one);
    bin = _mm256_mask_mov_epi32(bin, missing, _mm256_set1_epi32(kMissingBin));
    _mm_mask_storeu_epi16(out + r, live, _mm256_cvtepi32_epi16(bin));
  }
}
// BinSlotXGBAVX512: BinFeature's XGBoost numerical rule for sixteen rows per vector: the
// rows' values gathered and rounded to float, NaN to the missing bin, then the guide's
// bucket (equal value steps in double, eight lanes at a time, or the float's order key in
// 32 bits), its kGuideProbes compares against gathered float thresholds and the equality
// test, or, for a few thresholds, one broadcast compare per threshold. The same
// arithmetic as GuideBucket and BinGuided, so every bin is the scalar one.
template <class T>
PD_TARGET_AVX512 inline void BinSlotXGBAVX512(const Ensemble& e, const FeatureBin& fb, const T* blk, size_t F,
                                              size_t nb, uint16_t* out) {
  const float* thr = e.thr32.data() + fb.thr_off;
  const int* guide = reinterpret_cast<const int*>(e.guide.data() + fb.guide_off);
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i rstep =
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(int(F)));
  const __m512d dzero = _mm512_setzero_pd();
  const T* col = blk + fb.feature;
  for (size_t r = 0; r < nb; r += 16) {
    const __mmask16 live = nb - r >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (nb - r)) - 1);
    // The base moves with the rows, so the 32-bit indices stay below 16 rows' width.
    const T* base = col + r * F;
    __m512 x;
    if constexpr (sizeof(T) == sizeof(double)) {
      const __m512d lo = _mm512_mask_i32gather_pd(dzero, __mmask8(live), _mm512_castsi512_si256(rstep), base, 8);
      const __m512d hi = _mm512_mask_i32gather_pd(dzero, __mmask8(live >> 8), _mm512_extracti64x4_epi64(rstep, 1), base, 8);
      x = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)), _mm512_cvtpd_ps(hi), 1);
    } else {
      x = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), live, rstep, base, 4);
    }
    // NaN lanes (and lanes past the block, zero) bin from 0.0, then become the missing bin.
    const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    x = _mm512_mask_mov_ps(x, nan, _mm512_setzero_ps());
    __m512i c;
    if (fb.guide_n) {
      const uint32_t last = fb.guide_n - 1;
      __m512i b;
      if (fb.guide_linear) {
        const __m512d mn = _mm512_set1_pd(fb.guide_min), sc = _mm512_set1_pd(fb.guide_scale),
                      dl = _mm512_set1_pd(double(last));
        __m512d d0 = _mm512_mul_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(x)), mn), sc);
        __m512d d1 = _mm512_mul_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(x, 1)), mn), sc);
        d0 = _mm512_min_pd(_mm512_max_pd(d0, dzero), dl);
        d1 = _mm512_min_pd(_mm512_max_pd(d1, dzero), dl);
        b = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvttpd_epi32(d0)), _mm512_cvttpd_epi32(d1), 1);
      } else {
        // OrderKey(float): -0.0 → +0.0, then negative values' bits inverted, the others'
        // sign bit set. Float keys and guide_kmin fit 32 bits (BinSlotVectorizesXGB).
        const __m512i bits = _mm512_castps_si512(_mm512_add_ps(x, _mm512_setzero_ps()));
        const __mmask16 neg = _mm512_movepi32_mask(bits);
        const __m512i key = _mm512_mask_xor_epi32(_mm512_or_si512(bits, _mm512_set1_epi32(INT32_MIN)), neg, bits,
                                                  _mm512_set1_epi32(-1));
        const __m512i kmin = _mm512_set1_epi32(int32_t(uint32_t(fb.guide_kmin)));
        __m512i d = _mm512_maskz_sub_epi32(_mm512_cmpge_epu32_mask(key, kmin), key, kmin);
        // A shift of 32 or more gives 0, as the scalar 64-bit shift of a 32-bit key does.
        d = _mm512_srl_epi32(d, _mm_cvtsi32_si128(int(fb.guide_shift)));
        b = _mm512_min_epu32(d, _mm512_set1_epi32(int(last)));
      }
      // uint16 guide entries, read as 32-bit words (Layout pads the guide by one entry).
      const __m512i g = _mm512_and_si512(_mm512_i32gather_epi32(b, guide, 2), _mm512_set1_epi32(0xFFFF));
      c = g;
      for (uint32_t j = 0; j < kGuideProbes; j++) {
        const __m512 t = _mm512_i32gather_ps(_mm512_add_epi32(g, _mm512_set1_epi32(int(j))), thr, 4);
        c = _mm512_mask_add_epi32(c, _mm512_cmp_ps_mask(t, x, _CMP_LT_OQ), c, one);
      }
    } else {
      c = _mm512_setzero_si512();
      for (uint32_t j = 0; j < fb.thr_n; j++)
        c = _mm512_mask_add_epi32(c, _mm512_cmp_ps_mask(_mm512_set1_ps(thr[j]), x, _CMP_LT_OQ), c, one);
    }
    // thr[n] is NaN padding: never equal.
    const __mmask16 eq = _mm512_cmp_ps_mask(_mm512_i32gather_ps(c, thr, 4), x, _CMP_EQ_OQ);
    __m512i bin = _mm512_add_epi32(c, c);
    bin = _mm512_mask_add_epi32(bin, eq, bin, one);
    bin = _mm512_mask_mov_epi32(bin, nan, _mm512_set1_epi32(kMissingBin));
    _mm256_mask_storeu_epi16(out + r, live, _mm512_cvtepi32_epi16(bin));
  }
}
#endif

// WalkScalar: every tree over the block's nb rows in lock step, one row at a time per
// level (the rows' load chains are independent, so the CPU overlaps them). Leaves loop to
// themselves, and a level where no row moved ends the tree early.
template <class A, bool kCat>
PD_INLINE void WalkScalar(const Ensemble& e, const uint16_t* bins, size_t /*S*/, size_t B, size_t nb, A* acc, size_t K) {
  const Node* nodes = e.nodes.data();
  const uint32_t* pool = e.cat_pool.data();
  const uint32_t* cat_off = e.cat_off.data();
  const A* vals = Pick<A>(e.val64, e.val32);
  uint32_t idx[kMaxBlock];
  for (int t = 0; t < e.num_trees; t++) {
    const Node* nd = nodes + e.tree_off[t];
    const A* val = vals + e.tree_off[t];
    const int depth = e.tree_depth[t];
    A* a = acc + e.tree_output[t];
    for (size_t r = 0; r < nb; r++) idx[r] = 0;
    for (int d = 0; d < depth; d++) {
      uint32_t moved = 0;
      for (size_t r = 0; r < nb; r++) {
        const Node n = nd[idx[r]];
        const uint32_t b = bins[(n.feat & 0x7FFFu) * B + r];
        bool left;
        if (kCat && (n.right & kCatFlag)) left = CatLeft(pool, cat_off[n.kk], b);
        else left = uint16_t(b + (n.feat >> 15)) <= n.kk;
        const uint32_t nxt = left ? n.left : (n.right & 0x7FFFu);
        moved |= nxt ^ idx[r];
        idx[r] = nxt;
      }
      if (!moved) break;
    }
    for (size_t r = 0; r < nb; r++) a[r * K] += val[idx[r]];
  }
}

// WalkRefill: every tree over the block's nb rows, kRefillRows rows in flight, each on
// its own path: a row that reaches its leaf adds the leaf's value and its lane takes the
// next row of the block at the tree's root. Every row takes its own depth in steps (plus
// one to see its leaf), where the lock-step walks take the deepest row's depth for all:
// far fewer steps on deep, unbalanced trees (deep_unbalanced: leaves 35 deep on average,
// trees 63). The lanes' load chains are independent, so the CPU overlaps them. Each row
// still adds its trees in tree order. Scalar only: UseRefill says where.
constexpr size_t kRefillRows = 16;

// Tests and benchmarks only (pd_walk_lockstep): bit 0 sends every model that would take
// the refill walk to the lock-step walks instead; bit 1 keeps every vector of the AVX2 and
// AVX-512 gather walks stepping until the whole block is at its leaves; bit 2 turns the
// partition walk off (every batch takes the walks below); bit 3 takes the partition walk's
// leaf pairs through the split and the leaves like any other node, and bins XGBoost rows
// with scalar code; bit 4 bins XGBoost rows with BinFeature row by row rather than
// BinSlotXGBGuided; bit 5 splits with PartSplit's scalar loop in the AVX2 and AVX-512
// kernels too (not PartSplitAVX2). Bits 0 and 1: the design before the refill walk; bit 2
// alone: the one before the partition walk; bits 3, 4 and 5: the one before leaf pairs
// and XGBoost's AVX-512 binning; bits 4 and 5: the one before BinSlotXGBGuided and
// PartSplitAVX2.
static int g_walk_lockstep = 0;

template <class A, bool kCat>
PD_INLINE void WalkRefill(const Ensemble& e, const uint16_t* bins, size_t B, size_t nb, A* acc, size_t K) {
  const Node* nodes = e.nodes.data();
  const uint32_t* pool = e.cat_pool.data();
  const uint32_t* cat_off = e.cat_off.data();
  const A* vals = Pick<A>(e.val64, e.val32);
  constexpr size_t R = kRefillRows;
  for (int t = 0; t < e.num_trees; t++) {
    const Node* nd = nodes + e.tree_off[t];
    const A* val = vals + e.tree_off[t];
    A* a = acc + e.tree_output[t];
    uint32_t cur[R], row[R];
    size_t live = std::min(R, nb), next = live;
    for (size_t i = 0; i < live; i++) {
      cur[i] = 0;
      row[i] = uint32_t(i);
    }
    while (live > 0) {
      for (size_t i = 0; i < live;) {
        const Node n = nd[cur[i]];
        if (n.left == n.right) {  // a leaf
          a[row[i] * K] += val[cur[i]];
          if (next < nb) {
            row[i] = uint32_t(next++);
            cur[i] = 0;
            i++;
          } else {  // no rows left: the last lane moves here and is stepped next
            live--;
            cur[i] = cur[live];
            row[i] = row[live];
          }
          continue;
        }
        const uint32_t b = bins[(n.feat & 0x7FFFu) * B + row[i]];
        bool left;
        if (kCat && (n.right & kCatFlag)) left = CatLeft(pool, cat_off[n.kk], b);
        else left = uint16_t(b + (n.feat >> 15)) <= n.kk;
        cur[i] = left ? n.left : (n.right & 0x7FFFu);
        i++;
      }
    }
  }
}

#if PD_X86
// CatLeft's word index and bit shift for a vector of cat_off entries and bins.
PD_TARGET_AVX2 PD_INLINE __m256i CatIndexAVX2(__m256i off, __m256i b) {
  return _mm256_add_epi32(_mm256_and_si256(off, _mm256_set1_epi32(0x7FFFFF)), _mm256_sllv_epi32(b, _mm256_srli_epi32(off, 28)));
}
PD_TARGET_AVX2 PD_INLINE __m256i CatBitAVX2(__m256i off) {
  return _mm256_and_si256(_mm256_srli_epi32(off, 23), _mm256_set1_epi32(31));
}
PD_TARGET_AVX512 PD_INLINE __m512i CatIndexAVX512(__m512i off, __m512i b) {
  return _mm512_add_epi32(_mm512_and_si512(off, _mm512_set1_epi32(0x7FFFFF)), _mm512_sllv_epi32(b, _mm512_srli_epi32(off, 28)));
}
PD_TARGET_AVX512 PD_INLINE __m512i CatBitAVX512(__m512i off) {
  return _mm512_and_si512(_mm512_srli_epi32(off, 23), _mm512_set1_epi32(31));
}
#endif

#if PD_X86
// Up to this many used features, the vector walks keep each row's bins in registers.
constexpr size_t kSmallSlots = 8;

// BinsByLane copies the block's bins of the first S (<= kSmallSlots) slots into
// binv[vector][slot][lane], so a vector walk picks a row's bin from registers.
template <size_t L>
PD_INLINE void BinsByLane(int32_t (*binv)[kSmallSlots][L], const uint16_t* bins, size_t S, size_t B, size_t nb) {
  for (size_t g = 0; g < (nb + L - 1) / L; g++)
    for (size_t f = 0; f < S; f++)
      for (size_t i = 0; i < L; i++) binv[g][f][i] = bins[f * B + std::min(g * L + i, nb - 1)];
}

// PrefetchTree asks for tree t's node arrays while the previous tree is walked: a large
// model (1,000 trees of ~670 nodes) streams from L3 or memory once per block, and a tree's
// first levels would otherwise wait on each miss in turn.
PD_INLINE void PrefetchTree(const Ensemble& e, int t) {
  if (t >= e.num_trees) return;
  const uint32_t lo = e.tree_off[t], hi = e.tree_off[t + 1];
  if (hi - lo < 64) return;  // small trees stay cached across blocks
  const char* info = reinterpret_cast<const char*>(e.info32.data() + lo);
  const char* kids = reinterpret_cast<const char*>(e.kids32.data() + lo);
  for (size_t off = 0; off < (hi - lo) * 4; off += 64) {
    _mm_prefetch(info + off, _MM_HINT_T0);
    _mm_prefetch(kids + off, _MM_HINT_T0);
  }
}

// WalkAVX2 / WalkAVX512: the same walk, 8 or 16 rows per vector. Per level and vector: a
// gather of the nodes' split info (slot | missing-left bit | bin threshold), a gather of
// their children, a gather of the rows' bins, one integer compare and a blend. Several
// vectors are in flight per level to hide the gathers' latency.
template <class A, bool kCat>
PD_TARGET_AVX2 inline void WalkAVX2(const Ensemble& e, const uint16_t* bins, size_t S, size_t B, size_t nb, A* acc, size_t K) {
  constexpr size_t L = 8;
  const size_t ng = (nb + L - 1) / L;
  alignas(64) int32_t rowoff[kMaxBlock];
  RowOffsets(rowoff, L, nb);
  const __m128i shB = _mm_cvtsi32_si128(__builtin_ctzll(B));  // bins[slot * B + row], B a power of two
  // With few features, each row's bins are picked from per-feature vectors by compares
  // instead of a gather.
  const bool few = S <= kSmallSlots;
  alignas(32) int32_t binv[kMaxBlock / L][kSmallSlots][L];
  if (few) BinsByLane<L>(binv, bins, S, B, nb);
  const A* vals = Pick<A>(e.val64, e.val32);
  const int* pool = reinterpret_cast<const int*>(e.cat_pool.data());
  const int* cat_off = reinterpret_cast<const int*>(e.cat_off.data());
  const __m256i m15 = _mm256_set1_epi32(0x7FFF), m16 = _mm256_set1_epi32(0xFFFF), one = _mm256_set1_epi32(1);
  alignas(32) uint32_t idxs[kMaxBlock];
  __m256i idx[kMaxBlock / L];
  const bool keep_done = g_walk_lockstep & 2;  // tests and benchmarks: the previous design
  for (int t = 0; t < e.num_trees; t++) {
    const int* info = reinterpret_cast<const int*>(e.info32.data() + e.tree_off[t]);
    const int* kids = reinterpret_cast<const int*>(e.kids32.data() + e.tree_off[t]);
    const int depth = e.tree_depth[t];
    PrefetchTree(e, t + 1);
    for (size_t g = 0; g < ng; g++) idx[g] = _mm256_setzero_si256();
    // Vectors whose lanes all sat still are at their leaves: skipped from then on; a level
    // where no vector moved ends the tree.
    uint32_t live = (uint32_t(1) << ng) - 1;
    for (int d = 0; d < depth; d++) {
      bool moved = false;
      for (size_t g = 0; g < ng; g++) {
        if (!((live >> g) & 1u)) continue;
        const uint32_t skip = keep_done ? ~0u : ~(uint32_t(1) << g);
        const __m256i inf = _mm256_i32gather_epi32(info, idx[g], 4);
        const __m256i kd = _mm256_i32gather_epi32(kids, idx[g], 4);
        const __m256i slot = _mm256_and_si256(inf, m15);
        const __m256i kk = _mm256_srli_epi32(inf, 16);
        __m256i b;
        if (few) {
          b = _mm256_load_si256(reinterpret_cast<const __m256i*>(binv[g][0]));
          for (size_t f = 1; f < S; f++)
            b = _mm256_blendv_epi8(b, _mm256_load_si256(reinterpret_cast<const __m256i*>(binv[g][f])),
                                   _mm256_cmpeq_epi32(slot, _mm256_set1_epi32(int(f))));
        } else {
          b = _mm256_and_si256(
              _mm256_i32gather_epi32(reinterpret_cast<const int*>(bins), _mm256_add_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(rowoff + g * L)), _mm256_sll_epi32(slot, shB)), 2), m16);
        }
        // Bins and thresholds are below 2^16, so the signed compare is exact.
        __m256i right = _mm256_cmpgt_epi32(
            _mm256_and_si256(_mm256_add_epi32(b, _mm256_and_si256(_mm256_srli_epi32(inf, 15), one)), m16), kk);
        if (kCat) {
          const __m256i cat = _mm256_srai_epi32(kd, 31);  // all ones on categorical nodes
          if (!_mm256_testz_si256(cat, cat)) {
            const __m256i off = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), cat_off, kk, cat, 4);
            const __m256i w = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), pool, CatIndexAVX2(off, b), cat, 4);
            const __m256i bit = _mm256_and_si256(_mm256_srlv_epi32(w, CatBitAVX2(off)), one);
            const __m256i cat_right = _mm256_cmpeq_epi32(bit, _mm256_setzero_si256());
            right = _mm256_blendv_epi8(right, cat_right, cat);
          }
        }
        const __m256i lo = _mm256_and_si256(kd, m16);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi32(kd, 16), m15);
        const __m256i nxt = _mm256_blendv_epi8(lo, hi, right);
        if (_mm256_movemask_epi8(_mm256_cmpeq_epi32(nxt, idx[g])) == -1) live &= skip;  // every lane at its leaf
        else moved = true;
        idx[g] = nxt;
      }
      if (!moved) break;
    }
    const A* val = vals + e.tree_off[t];
    A* a = acc + e.tree_output[t];
    for (size_t g = 0; g < ng; g++) _mm256_store_si256(reinterpret_cast<__m256i*>(idxs + g * L), idx[g]);
    for (size_t r = 0; r < nb; r++) a[r * K] += val[idxs[r]];
  }
}

// Small-tree walks: models whose trees have at most 64 nodes (32 leaves, LightGBM's default
// num_leaves=31) over at most kSmallSlots features. No gathers for the walk itself: a
// tree's 64 packed nodes sit in registers and are looked up with permutes, and each row's
// bins are picked from per-feature registers with compares. Only categorical nodes still
// gather their set's word.

// Decision shared by both widths, per lane: packed node p, bin b.
//   numerical: left when uint16(b + missing-left) <= kk; categorical: bit b of the set.

template <class A, bool kCat>
PD_TARGET_AVX512 inline void WalkAVX512Small(const Ensemble& e, const uint16_t* bins, size_t S, size_t B, size_t nb,
                                             A* acc, size_t K) {
  constexpr size_t L = 16;
  const size_t ng = (nb + L - 1) / L;
  alignas(64) int32_t binv[kMaxBlock / L][kSmallSlots][L];
  BinsByLane<L>(binv, bins, S, B, nb);
  const A* vals = Pick<A>(e.val64, e.val32);
  const int* pool = reinterpret_cast<const int*>(e.cat_pool.data());
  const int* cat_off = reinterpret_cast<const int*>(e.cat_off.data());
  const __m512i m6 = _mm512_set1_epi32(63), m3 = _mm512_set1_epi32(7), m15 = _mm512_set1_epi32(0x7FFF),
                m16 = _mm512_set1_epi32(0xFFFF), one = _mm512_set1_epi32(1), bit5 = _mm512_set1_epi32(32);
  alignas(64) uint32_t idxs[kMaxBlock];
  __m512i idx[kMaxBlock / L];
  for (int t = 0; t < e.num_trees; t++) {
    const uint32_t* tp = e.pk64.data() + size_t(t) * 64;
    const __m512i P0 = _mm512_load_si512(tp), P1 = _mm512_load_si512(tp + 16), P2 = _mm512_load_si512(tp + 32),
                  P3 = _mm512_load_si512(tp + 48);
    const int depth = e.tree_depth[t];
    for (size_t g = 0; g < ng; g++) idx[g] = _mm512_setzero_si512();
    for (int d = 0; d < depth; d++) {
      __mmask16 moved = 0;
      for (size_t g = 0; g < ng; g++) {
        const __mmask16 upper = _mm512_test_epi32_mask(idx[g], bit5);
        const __m512i p = _mm512_mask_blend_epi32(upper, _mm512_permutex2var_epi32(P0, idx[g], P1),
                                                  _mm512_permutex2var_epi32(P2, idx[g], P3));
        const __m512i slot = _mm512_and_si512(_mm512_srli_epi32(p, 12), m3);
        const __m512i kk = _mm512_and_si512(_mm512_srli_epi32(p, 16), m15);
        __m512i b = _mm512_load_si512(binv[g][0]);
        for (size_t f = 1; f < S; f++)
          b = _mm512_mask_mov_epi32(b, _mm512_cmpeq_epi32_mask(slot, _mm512_set1_epi32(int(f))),
                                    _mm512_load_si512(binv[g][f]));
        const __m512i bb = _mm512_and_si512(_mm512_add_epi32(b, _mm512_and_si512(_mm512_srli_epi32(p, 15), one)), m16);
        __mmask16 left = _mm512_cmple_epu32_mask(bb, kk);
        if (kCat) {
          const __mmask16 cat = _mm512_movepi32_mask(p);
          if (cat) {
            const __m512i off = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), cat, kk, cat_off, 4);
            const __m512i w = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), cat, CatIndexAVX512(off, b), pool, 4);
            const __m512i bit = _mm512_srlv_epi32(w, CatBitAVX512(off));
            left = __mmask16((left & ~cat) | (_mm512_test_epi32_mask(bit, one) & cat));
          }
        }
        const __m512i nxt =
            _mm512_mask_blend_epi32(left, _mm512_and_si512(_mm512_srli_epi32(p, 6), m6), _mm512_and_si512(p, m6));
        moved |= _mm512_cmpneq_epi32_mask(nxt, idx[g]);
        idx[g] = nxt;
      }
      if (!moved) break;
    }
    const A* val = vals + e.tree_off[t];
    A* a = acc + e.tree_output[t];
    for (size_t g = 0; g < ng; g++) _mm512_store_si512(idxs + g * L, idx[g]);
    for (size_t r = 0; r < nb; r++) a[r * K] += val[idxs[r]];
  }
}

// SelectAVX2: entry idx (0..63) of a 64-word table held in eight registers: a permute per
// register on bits 0-2, then blends on bits 3, 4 and 5.
PD_TARGET_AVX2 PD_INLINE __m256i SelectAVX2(const __m256i* T, __m256i idx) {
  const __m256 s3 = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));
  const __m256 s4 = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 27));
  const __m256 s5 = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 26));
  __m256 q[4];
  for (int j = 0; j < 4; j++)
    q[j] = _mm256_blendv_ps(_mm256_castsi256_ps(_mm256_permutevar8x32_epi32(T[2 * j], idx)),
                            _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(T[2 * j + 1], idx)), s3);
  const __m256 r0 = _mm256_blendv_ps(q[0], q[1], s4), r1 = _mm256_blendv_ps(q[2], q[3], s4);
  return _mm256_castps_si256(_mm256_blendv_ps(r0, r1, s5));
}

template <class A, bool kCat>
PD_TARGET_AVX2 inline void WalkAVX2Small(const Ensemble& e, const uint16_t* bins, size_t S, size_t B, size_t nb,
                                         A* acc, size_t K) {
  constexpr size_t L = 8;
  const size_t ng = (nb + L - 1) / L;
  alignas(32) int32_t binv[kMaxBlock / L][kSmallSlots][L];
  BinsByLane<L>(binv, bins, S, B, nb);
  const A* vals = Pick<A>(e.val64, e.val32);
  const int* pool = reinterpret_cast<const int*>(e.cat_pool.data());
  const int* cat_off = reinterpret_cast<const int*>(e.cat_off.data());
  const __m256i m6 = _mm256_set1_epi32(63), m3 = _mm256_set1_epi32(7), m15 = _mm256_set1_epi32(0x7FFF),
                m16 = _mm256_set1_epi32(0xFFFF), one = _mm256_set1_epi32(1);
  alignas(32) uint32_t idxs[kMaxBlock];
  __m256i idx[kMaxBlock / L];
  __m256i T[8];
  for (int t = 0; t < e.num_trees; t++) {
    const uint32_t* tp = e.pk64.data() + size_t(t) * 64;
    for (int j = 0; j < 8; j++) T[j] = _mm256_load_si256(reinterpret_cast<const __m256i*>(tp + 8 * j));
    const int depth = e.tree_depth[t];
    for (size_t g = 0; g < ng; g++) idx[g] = _mm256_setzero_si256();
    for (int d = 0; d < depth; d++) {
      int still = 0;
      for (size_t g = 0; g < ng; g++) {
        const __m256i p = SelectAVX2(T, idx[g]);
        const __m256i slot = _mm256_and_si256(_mm256_srli_epi32(p, 12), m3);
        const __m256i kk = _mm256_and_si256(_mm256_srli_epi32(p, 16), m15);
        __m256i b = _mm256_load_si256(reinterpret_cast<const __m256i*>(binv[g][0]));
        for (size_t f = 1; f < S; f++)
          b = _mm256_blendv_epi8(b, _mm256_load_si256(reinterpret_cast<const __m256i*>(binv[g][f])),
                                 _mm256_cmpeq_epi32(slot, _mm256_set1_epi32(int(f))));
        // Bins and thresholds are below 2^16, so the signed compare is exact.
        __m256i right = _mm256_cmpgt_epi32(
            _mm256_and_si256(_mm256_add_epi32(b, _mm256_and_si256(_mm256_srli_epi32(p, 15), one)), m16), kk);
        if (kCat) {
          const __m256i cat = _mm256_srai_epi32(p, 31);
          if (!_mm256_testz_si256(cat, cat)) {
            const __m256i off = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), cat_off, kk, cat, 4);
            const __m256i w = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(), pool, CatIndexAVX2(off, b), cat, 4);
            const __m256i bit = _mm256_and_si256(_mm256_srlv_epi32(w, CatBitAVX2(off)), one);
            right = _mm256_blendv_epi8(right, _mm256_cmpeq_epi32(bit, _mm256_setzero_si256()), cat);
          }
        }
        const __m256i nxt =
            _mm256_blendv_epi8(_mm256_and_si256(p, m6), _mm256_and_si256(_mm256_srli_epi32(p, 6), m6), right);
        still |= ~_mm256_movemask_epi8(_mm256_cmpeq_epi32(nxt, idx[g]));
        idx[g] = nxt;
      }
      if (!still) break;
    }
    const A* val = vals + e.tree_off[t];
    A* a = acc + e.tree_output[t];
    for (size_t g = 0; g < ng; g++) _mm256_store_si256(reinterpret_cast<__m256i*>(idxs + g * L), idx[g]);
    for (size_t r = 0; r < nb; r++) a[r * K] += val[idxs[r]];
  }
}

template <class A, bool kCat>
PD_TARGET_AVX512 inline void WalkAVX512(const Ensemble& e, const uint16_t* bins, size_t /*S*/, size_t B, size_t nb, A* acc, size_t K) {
  constexpr size_t L = 16;
  const size_t ng = (nb + L - 1) / L;
  alignas(64) int32_t rowoff[kMaxBlock];
  RowOffsets(rowoff, L, nb);
  const __m128i shB = _mm_cvtsi32_si128(__builtin_ctzll(B));  // bins[slot * B + row], B a power of two
  const A* vals = Pick<A>(e.val64, e.val32);
  const int* pool = reinterpret_cast<const int*>(e.cat_pool.data());
  const int* cat_off = reinterpret_cast<const int*>(e.cat_off.data());
  const __m512i m15 = _mm512_set1_epi32(0x7FFF), m16 = _mm512_set1_epi32(0xFFFF), one = _mm512_set1_epi32(1);
  alignas(64) uint32_t idxs[kMaxBlock];
  __m512i idx[kMaxBlock / L];
  const bool keep_done = g_walk_lockstep & 2;  // tests and benchmarks: the previous design
  for (int t = 0; t < e.num_trees; t++) {
    const int* info = reinterpret_cast<const int*>(e.info32.data() + e.tree_off[t]);
    const int* kids = reinterpret_cast<const int*>(e.kids32.data() + e.tree_off[t]);
    const int depth = e.tree_depth[t];
    PrefetchTree(e, t + 1);
    for (size_t g = 0; g < ng; g++) idx[g] = _mm512_setzero_si512();
    // Vectors whose lanes all sat still are at their leaves: skipped from then on; a level
    // where no vector moved ends the tree.
    uint32_t live = (uint32_t(1) << ng) - 1;
    for (int d = 0; d < depth; d++) {
      bool moved = false;
      for (size_t g = 0; g < ng; g++) {
        if (!((live >> g) & 1u)) continue;
        const uint32_t skip = keep_done ? ~0u : ~(uint32_t(1) << g);
        const __m512i inf = _mm512_i32gather_epi32(idx[g], info, 4);
        const __m512i kd = _mm512_i32gather_epi32(idx[g], kids, 4);
        const __m512i slot = _mm512_and_si512(inf, m15);
        const __m512i kk = _mm512_srli_epi32(inf, 16);
        const __m512i b = _mm512_and_si512(_mm512_i32gather_epi32(_mm512_add_epi32(_mm512_load_si512(rowoff + g * L), _mm512_sll_epi32(slot, shB)), bins, 2), m16);
        const __m512i bb = _mm512_and_si512(_mm512_add_epi32(b, _mm512_and_si512(_mm512_srli_epi32(inf, 15), one)), m16);
        __mmask16 left = _mm512_cmple_epu32_mask(bb, kk);
        if (kCat) {
          const __mmask16 cat = _mm512_movepi32_mask(kd);  // bit 31: categorical node
          if (cat) {
            const __m512i off = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), cat, kk, cat_off, 4);
            const __m512i w = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), cat, CatIndexAVX512(off, b), pool, 4);
            const __m512i bit = _mm512_srlv_epi32(w, CatBitAVX512(off));
            const __mmask16 cat_left = _mm512_test_epi32_mask(bit, one);
            left = __mmask16((left & ~cat) | (cat_left & cat));
          }
        }
        const __m512i lo = _mm512_and_si512(kd, m16);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi32(kd, 16), m15);
        const __m512i nxt = _mm512_mask_blend_epi32(left, hi, lo);
        if (!_mm512_cmpneq_epi32_mask(nxt, idx[g])) live &= skip;  // every lane at its leaf
        else moved = true;
        idx[g] = nxt;
      }
      if (!moved) break;
    }
    const A* val = vals + e.tree_off[t];
    A* a = acc + e.tree_output[t];
    for (size_t g = 0; g < ng; g++) _mm512_store_si512(idxs + g * L, idx[g]);
    for (size_t r = 0; r < nb; r++) a[r * K] += val[idxs[r]];
  }
}
#endif

enum class ISA { kScalar, kAVX2, kAVX512 };

// ---------------------------------------------------------------------------------------
// Table kernel (Ensemble::leaf_tables): no walk at all. A row's leaf in a tree is the one
// leaf whose box admits the row's bin on every feature, so per tree the leaf sets its bins
// select are AND-ed over the used features and exactly one bit is left: the leaf number.

constexpr size_t kTableChunk = 256;  // trees per pass (a block's leaf numbers: 32 KiB)

// LeafNumbers: for trees [0, tv) of a chunk (tv a multiple of 16), AND the S class rows in
// ps and write each tree's leaf number. One bit survives, so its number is the exponent of
// the mask converted to float (exact for a power of two; 2^31 reads as -2^31, the same
// exponent).
// RowClasses points ps[s] at the class row (offset by the chunk's first tree t0) that row
// r's bin selects on each slot.
PD_INLINE void RowClasses(const Ensemble& e, const uint16_t* bins, size_t S, size_t B, size_t r, size_t t0,
                          const uint32_t** ps) {
  for (size_t s = 0; s < S; s++) {
    const uint32_t b = std::min<uint32_t>(bins[s * B + r], e.lt_map_n[s] - 1);
    ps[s] = e.lt_mask.data() + e.lt_map[e.lt_map_off[s] + b] + t0;
  }
}

// LeafNumbers: for every row of the block and trees [t0, t0+tv) (tv a multiple of 16), AND
// the S class rows and write each tree's leaf number. One bit survives, so its number is
// the exponent of the mask converted to float (exact for a power of two; 2^31 reads as
// -2^31, the same exponent).
inline void LeafNumbersScalar(const Ensemble& e, const uint16_t* bins, size_t S, size_t B, size_t nb, size_t t0,
                              size_t tv, uint8_t (*leaf)[kTableChunk]) {
  const uint32_t* ps[kMaxTableSlots];
  for (size_t r = 0; r < nb; r++) {
    RowClasses(e, bins, S, B, r, t0, ps);
    for (size_t t = 0; t < tv; t++) {
      uint32_t m = ps[0][t];
      for (size_t s = 1; s < S; s++) m &= ps[s][t];
      leaf[r][t] = uint8_t(__builtin_ctz(m | 0x80000000u));
    }
  }
}

#if PD_X86
// Leaves16: the leaf numbers of 16 trees for one row, as bytes: the AND of the row's S
// class rows at word offset t, then each word's one bit as its float exponent.
PD_TARGET_AVX512 PD_INLINE __m128i Leaves16(const uint32_t* const* ps, size_t S, size_t t) {
  __m512i m = _mm512_loadu_si512(ps[0] + t);
  for (size_t s = 1; s < S; s++) m = _mm512_and_si512(m, _mm512_loadu_si512(ps[s] + t));
  const __m512i ex =
      _mm512_and_si512(_mm512_srli_epi32(_mm512_castps_si512(_mm512_cvtepi32_ps(m)), 23), _mm512_set1_epi32(0xFF));
  return _mm512_cvtepi32_epi8(_mm512_sub_epi32(ex, _mm512_set1_epi32(127)));
}

PD_TARGET_AVX512 inline void LeafNumbersAVX512(const Ensemble& e, const uint16_t* bins, size_t S, size_t B, size_t nb,
                                               size_t t0, size_t tv, uint8_t (*leaf)[kTableChunk]) {
  const uint32_t* ps[kMaxTableSlots];
  for (size_t r = 0; r < nb; r++) {
    RowClasses(e, bins, S, B, r, t0, ps);
    for (size_t t = 0; t < tv; t += 16)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(leaf[r] + t), Leaves16(ps, S, t));
  }
}

PD_TARGET_AVX2 inline void LeafNumbersAVX2(const Ensemble& e, const uint16_t* bins, size_t S, size_t B, size_t nb,
                                           size_t t0, size_t tv, uint8_t (*leaf)[kTableChunk]) {
  const __m256i e127 = _mm256_set1_epi32(127), ff = _mm256_set1_epi32(0xFF);
  // Low byte of each 32-bit lane to the 128-bit lane's first four bytes.
  const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,  //
                                        0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  const uint32_t* ps[kMaxTableSlots];
  for (size_t r = 0; r < nb; r++) {
    RowClasses(e, bins, S, B, r, t0, ps);
    for (size_t t = 0; t < tv; t += 8) {
      __m256i m = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ps[0] + t));
      for (size_t s = 1; s < S; s++)
        m = _mm256_and_si256(m, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ps[s] + t)));
      const __m256i ex = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(_mm256_cvtepi32_ps(m)), 23), ff);
      const __m256i b = _mm256_shuffle_epi8(_mm256_sub_epi32(ex, e127), pick);
      _mm_storel_epi64(reinterpret_cast<__m128i*>(leaf[r] + t),
                       _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1)));
    }
  }
}

// TableAVX512: the table kernel for one output, 32 rows at a time, with no scalar loads
// in the sums. Per 16 trees each group of eight rows' leaf numbers (a 16x8 byte tile) is
// transposed to tree-major, so one 8-byte load gives a tree's leaf number for eight rows;
// the tree's 32 leaf values sit in four (double) or two (float) registers, loaded once for
// all 32 rows, and permutes pick each row's value. The vector lanes are rows, so every row
// still adds its trees in order (the walks' sums, bit for bit); four accumulators keep
// four add chains in flight. kS > 0: exactly kS slots (the AND loop unrolled); 0: S slots.
template <class A, size_t kS>
PD_TARGET_AVX512 inline void TableAVX512(const Ensemble& e, const uint16_t* bins, size_t S, size_t B, size_t nb,
                                         A* acc) {
  constexpr size_t R = 8, G = 4;  // rows per vector, vectors per pass
  const size_t NS = kS ? kS : S;
  const A* vals = Pick<A>(e.lt_val64, e.lt_val32);
  alignas(64) uint8_t leafT[G][kTableChunk * R];
  const uint32_t* ps[G * R][kMaxTableSlots];
  const size_t T = size_t(e.num_trees);
  for (size_t r0 = 0; r0 < nb; r0 += G * R) {
    const size_t ng = std::min(G, (nb - r0 + R - 1) / R);  // vectors this pass
    for (size_t i = 0; i < ng * R; i++) RowClasses(e, bins, NS, B, std::min(r0 + i, nb - 1), 0, ps[i]);
    alignas(64) A a[G * R];
    for (size_t i = 0; i < G * R; i++) a[i] = acc[std::min(r0 + i, nb - 1)];
    __m512d ad[G];
    __m256 af[G];
    for (size_t g = 0; g < G; g++) {
      if constexpr (sizeof(A) == sizeof(float)) af[g] = _mm256_load_ps(reinterpret_cast<const float*>(a + g * R));
      else ad[g] = _mm512_load_pd(a + g * R);
    }
    for (size_t t0 = 0; t0 < T; t0 += kTableChunk) {
      const size_t tn = std::min(kTableChunk, T - t0), tv = (tn + 15) / 16 * 16;
      for (size_t g = 0; g < ng; g++) {
        for (size_t t = 0; t < tv; t += 16) {
          __m128i x[R];
          for (size_t i = 0; i < R; i++) x[i] = Leaves16(ps[g * R + i], NS, t0 + t);  // row i: trees t..t+15
          // 8 rows x 16 trees of bytes -> 16 trees x 8 rows.
          const __m128i l01 = _mm_unpacklo_epi8(x[0], x[1]), h01 = _mm_unpackhi_epi8(x[0], x[1]);
          const __m128i l23 = _mm_unpacklo_epi8(x[2], x[3]), h23 = _mm_unpackhi_epi8(x[2], x[3]);
          const __m128i l45 = _mm_unpacklo_epi8(x[4], x[5]), h45 = _mm_unpackhi_epi8(x[4], x[5]);
          const __m128i l67 = _mm_unpacklo_epi8(x[6], x[7]), h67 = _mm_unpackhi_epi8(x[6], x[7]);
          const __m128i q[8] = {_mm_unpacklo_epi16(l01, l23), _mm_unpackhi_epi16(l01, l23),   // rows 0-3
                                _mm_unpacklo_epi16(h01, h23), _mm_unpackhi_epi16(h01, h23),   //
                                _mm_unpacklo_epi16(l45, l67), _mm_unpackhi_epi16(l45, l67),   // rows 4-7
                                _mm_unpacklo_epi16(h45, h67), _mm_unpackhi_epi16(h45, h67)};  //
          __m128i* out = reinterpret_cast<__m128i*>(leafT[g] + t * R);
          for (size_t j = 0; j < 4; j++) {  // trees t+4j .. t+4j+3
            _mm_store_si128(out + 2 * j, _mm_unpacklo_epi32(q[j], q[j + 4]));
            _mm_store_si128(out + 2 * j + 1, _mm_unpackhi_epi32(q[j], q[j + 4]));
          }
        }
      }
      const A* v = vals + t0 * 32;
      if constexpr (sizeof(A) == sizeof(float)) {
        for (size_t t = 0; t < tn; t++, v += 32) {
          const __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16);
          for (size_t g = 0; g < G; g++) {
            const __m512i idx = _mm512_castsi256_si512(
                _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(leafT[g] + t * R))));
            af[g] = _mm256_add_ps(af[g], _mm512_castps512_ps256(_mm512_permutex2var_ps(v0, idx, v1)));
          }
        }
      } else {
        const __m512i bit4 = _mm512_set1_epi64(16);
        for (size_t t = 0; t < tn; t++, v += 32) {
          const __m512d v0 = _mm512_loadu_pd(v), v1 = _mm512_loadu_pd(v + 8), v2 = _mm512_loadu_pd(v + 16),
                        v3 = _mm512_loadu_pd(v + 24);
          for (size_t g = 0; g < G; g++) {
            const __m512i idx = _mm512_cvtepu8_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(leafT[g] + t * R)));
            const __m512d lo = _mm512_permutex2var_pd(v0, idx, v1), hi = _mm512_permutex2var_pd(v2, idx, v3);
            ad[g] = _mm512_add_pd(ad[g], _mm512_mask_blend_pd(_mm512_test_epi64_mask(idx, bit4), lo, hi));
          }
        }
      }
    }
    for (size_t g = 0; g < G; g++) {
      if constexpr (sizeof(A) == sizeof(float)) _mm256_store_ps(reinterpret_cast<float*>(a + g * R), af[g]);
      else _mm512_store_pd(a + g * R, ad[g]);
    }
    for (size_t i = 0; i < G * R && r0 + i < nb; i++) acc[r0 + i] = a[i];
  }
}

template <class A>
PD_TARGET_AVX512 inline void TableAVX512Any(const Ensemble& e, const uint16_t* bins, size_t S, size_t B, size_t nb,
                                            A* acc) {
  switch (S) {
    case 1: TableAVX512<A, 1>(e, bins, S, B, nb, acc); return;
    case 2: TableAVX512<A, 2>(e, bins, S, B, nb, acc); return;
    case 3: TableAVX512<A, 3>(e, bins, S, B, nb, acc); return;
    case 4: TableAVX512<A, 4>(e, bins, S, B, nb, acc); return;
    case 5: TableAVX512<A, 5>(e, bins, S, B, nb, acc); return;
    case 6: TableAVX512<A, 6>(e, bins, S, B, nb, acc); return;
    case 7: TableAVX512<A, 7>(e, bins, S, B, nb, acc); return;
    case 8: TableAVX512<A, 8>(e, bins, S, B, nb, acc); return;
    default: TableAVX512<A, 0>(e, bins, S, B, nb, acc); return;
  }
}
#endif

// HeapWalk: the heap layout's walk (Ensemble::heap_*), tree by tree over the block,
// kHeapRows rows at a time (independent load chains the CPU overlaps): heap_depth steps
// of h = 2h + 1 + (bin goes right), no child pointers, no early exit to test.
constexpr size_t kHeapRows = 8;

template <class A>
PD_INLINE void HeapWalk(const Ensemble& e, const uint16_t* bins, size_t B, size_t nb, A* acc, size_t K) {
  const int D = e.heap_depth;
  const size_t ni = (size_t(1) << D) - 1, nl = size_t(1) << D;
  const A* vals = Pick<A>(e.heap_val64, e.heap_val32);
  auto step = [bins, B](const uint32_t* hn, uint32_t h, size_t r) {
    const uint32_t n = hn[h];
    const uint32_t b = bins[(n & 0x7FFFu) * B + r];
    return 2 * h + 1 + uint32_t(uint16_t(b + ((n >> 15) & 1u)) > (n >> 16));
  };
  for (size_t t = 0; t < size_t(e.num_trees); t++) {
    const uint32_t* hn = e.heap_node.data() + t * ni;
    const A* hv = vals + t * nl - ni;  // hv[h] for a bottom heap index h
    A* a = acc + e.tree_output[t];
    size_t r = 0;
    constexpr size_t R = kHeapRows;
    for (; r + R <= nb; r += R) {
      uint32_t h[R] = {};
      for (int d = 0; d < D; d++)
#pragma GCC unroll 16
        for (size_t i = 0; i < R; i++) h[i] = step(hn, h[i], r + i);
#pragma GCC unroll 16
      for (size_t i = 0; i < R; i++) a[(r + i) * K] += hv[h[i]];
    }
    for (; r < nb; r++) {
      uint32_t h = 0;
      for (int d = 0; d < D; d++) h = step(hn, h, r);
      a[r * K] += hv[h];
    }
  }
}


// TableWalk: per chunk of trees, every row's leaf numbers, then the leaves' values added
// row by row in tree order (so every sum rounds exactly as the walks' do).
template <ISA kISA, class A>
PD_INLINE void TableWalk(const Ensemble& e, const uint16_t* bins, size_t S, size_t B, size_t nb, A* acc, size_t K) {
  const A* vals = Pick<A>(e.lt_val64, e.lt_val32);
  alignas(64) uint8_t leaf[kMaxBlock][kTableChunk];
  const size_t T = size_t(e.num_trees);
  for (size_t t0 = 0; t0 < T; t0 += kTableChunk) {
    const size_t tn = std::min(kTableChunk, T - t0), tv = (tn + 15) / 16 * 16;
#if PD_X86
    if constexpr (kISA == ISA::kAVX512) LeafNumbersAVX512(e, bins, S, B, nb, t0, tv, leaf);
    else if constexpr (kISA == ISA::kAVX2) LeafNumbersAVX2(e, bins, S, B, nb, t0, tv, leaf);
    else LeafNumbersScalar(e, bins, S, B, nb, t0, tv, leaf);
#else
    LeafNumbersScalar(e, bins, S, B, nb, t0, tv, leaf);
#endif
    const A* v0 = vals + t0 * 32;
    if (K == 1) {
      size_t r = 0;
      // Eight rows at a time: eight add chains hide the adds' latency.
      for (; r + 8 <= nb; r += 8) {
        A a[8];
        for (size_t i = 0; i < 8; i++) a[i] = acc[r + i];
        const A* v = v0;
        for (size_t t = 0; t < tn; t++, v += 32)
          for (size_t i = 0; i < 8; i++) a[i] += v[leaf[r + i][t]];
        for (size_t i = 0; i < 8; i++) acc[r + i] = a[i];
      }
      for (; r < nb; r++) {
        A a = acc[r];
        const A* v = v0;
        for (size_t t = 0; t < tn; t++, v += 32) a += v[leaf[r][t]];
        acc[r] = a;
      }
    } else {
      const int32_t* to = e.tree_output.data() + t0;
      for (size_t r = 0; r < nb; r++) {
        A* a = acc + r * K;
        const A* v = v0;
        for (size_t t = 0; t < tn; t++, v += 32) a[to[t]] += v[leaf[r][t]];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Partition walk (WalkPartition): tree-major over a block of up to kPartBlock rows, the
// rows partitioned down each tree. A node's split is one constant for all the rows that
// reach it, so the node reads one column of the feature-major bins (bins[slot * B + row])
// for its range of row indices and writes each index to the left or the right part of its
// children's range: no gathers of nodes, no per-row node loads, no steps past a row's leaf.
// Two index buffers alternate by depth (a node at depth d reads buffer d & 1 and writes
// buffer (d + 1) & 1 within its own range, which its subtree alone uses from then on).
// A leaf adds its value to the accumulator of each of its rows, and a node whose children
// are both leaves adds each row the value of the leaf it picks (PartLeaves), with no
// indices written and neither leaf visited; ranges under kPartSmall
// rows are finished by a refill walk over (row, node) pairs (PartFinish), whose rows step
// on their own paths with several in flight. Trees are taken in order, so each row adds
// its trees in tree order, as every other walk does.
constexpr size_t kPartBlock = 1024;
// The block's bins stay under this (L2): a wide model gets fewer rows per block.
constexpr size_t kPartBinBytes = size_t(512) << 10;
constexpr uint32_t kPartSmall = 4;
constexpr size_t kPartFinishRows = 16;

// PartPut writes row to the left part (at l) or the right part (below r) of a split,
// without a branch: to both candidate slots, advancing only one write position (the other
// slot is overwritten later or is the same).
PD_INLINE void PartPut(uint32_t* dst, uint32_t row, uint32_t gl, uint32_t& l, uint32_t& r) {
  dst[l] = row;
  dst[r - 1] = row;
  l += gl;
  r -= gl ^ 1u;
}

// PartSplitNum is a numerical node's split of src[i, hi) from write positions l and r;
// returns the final l.
PD_INLINE uint32_t PartSplitNum(const Node n, const uint16_t* col, const uint32_t* src, uint32_t* dst, uint32_t i,
                                uint32_t hi, uint32_t l, uint32_t r) {
  const uint32_t bias = n.feat >> 15, kk = n.kk;
  for (; i < hi; i++) {
    const uint32_t row = src[i];
    PartPut(dst, row, uint16_t(col[row] + bias) <= kk, l, r);
  }
  return l;
}

// PartSplit partitions src[lo, hi) by node n into dst: left rows to [lo, m), right rows
// to [m, hi); returns m (PartPut per row).
template <bool kCat>
PD_INLINE uint32_t PartSplit(const Node n, const uint16_t* col, const uint32_t* pool, const uint32_t* cat_off,
                             const uint32_t* src, uint32_t* dst, uint32_t lo, uint32_t hi) {
  if (kCat && (n.right & kCatFlag)) {
    uint32_t l = lo, r = hi;
    const uint32_t c = cat_off[n.kk];
    const uint32_t* base = pool + (c & 0x7FFFFFu);
    const uint32_t sh = c >> 28, bit = (c >> 23) & 31u;
    for (uint32_t i = lo; i < hi; i++) {
      const uint32_t row = src[i];
      PartPut(dst, row, (base[uint32_t(col[row]) << sh] >> bit) & 1u, l, r);
    }
    return l;
  }
  return PartSplitNum(n, col, src, dst, lo, hi, lo, hi);
}

#if PD_X86
// kPartPerm[m]: for an 8-lane "goes left" mask m, the lanes whose bit is set, in order,
// then the lanes whose bit is clear, in order (permutevar8x32 indices, one byte each).
struct PartPermTable {
  uint8_t idx[256][8];
};
constexpr PartPermTable MakePartPerm() {
  PartPermTable t{};
  for (int m = 0; m < 256; m++) {
    int k = 0;
    for (int j = 0; j < 8; j++)
      if ((m >> j) & 1) t.idx[m][k++] = uint8_t(j);
    for (int j = 0; j < 8; j++)
      if (!((m >> j) & 1)) t.idx[m][k++] = uint8_t(j);
  }
  return t;
}
alignas(64) constexpr PartPermTable kPartPerm = MakePartPerm();

// PartSplitAVX2 is PartSplit for a numerical node, eight rows per vector: eight scalar
// loads and compares of the rows' bins build an 8-bit "goes left" mask (an AVX2 gather
// of the bins was slower: docs/benchmarks.md, step 14), the mask picks a permutation that
// puts the left rows first and the right rows last, and the one permuted vector is stored
// twice, at the left write position and ending at the right one; each side's pointer then
// advances by its count. Every row moves l up or r down, so r - l is the rows not yet
// split; while at least 16 remain, the two stores ([l, l + 8) and [r - 8, r)) are
// disjoint and inside [l, r), the slots still unwritten, so neither reaches a row already
// written nor leaves the node's range. The last rows (fewer than 16) take PartSplitNum's
// scalar loop. Which rows go where is PartSplit's; only their order within each side
// differs, and a row's sums do not depend on it.
PD_TARGET_AVX2 inline uint32_t PartSplitAVX2(const Node n, const uint16_t* col, const uint32_t* src, uint32_t* dst,
                                             uint32_t lo, uint32_t hi) {
  uint32_t l = lo, r = hi, i = lo;
  const uint32_t bias1 = n.feat >> 15, kk = n.kk;
  for (; hi - i >= 16; i += 8) {
    const __m256i rows = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    uint32_t m = 0;
    for (uint32_t j = 0; j < 8; j++) m |= uint32_t(uint16_t(col[src[i + j]] + bias1) <= kk) << j;
    const __m256i perm = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(kPartPerm.idx[m])));
    const __m256i p = _mm256_permutevar8x32_epi32(rows, perm);
    const uint32_t nl = uint32_t(_mm_popcnt_u32(m));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + r - 8), p);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + l), p);
    l += nl;
    r -= 8 - nl;
  }
  return PartSplitNum(n, col, src, dst, i, hi, l, r);
}
#endif

// PartLeaves: a node whose children are both leaves adds to each row of src[lo, hi) the
// value of the leaf its bin picks: no indices written, no visit of either leaf.
template <class A, bool kCat>
PD_INLINE void PartLeaves(const Node n, const uint16_t* col, const uint32_t* pool, const uint32_t* cat_off,
                          const uint32_t* src, uint32_t lo, uint32_t hi, A vleft, A vright, A* a, size_t K) {
  const A v[2] = {vright, vleft};  // indexed by "goes left": a load, never a branch
  if (kCat && (n.right & kCatFlag)) {
    const uint32_t c = cat_off[n.kk];
    const uint32_t* base = pool + (c & 0x7FFFFFu);
    const uint32_t sh = c >> 28, bit = (c >> 23) & 31u;
    for (uint32_t i = lo; i < hi; i++) {
      const uint32_t row = src[i];
      a[row * K] += v[(base[uint32_t(col[row]) << sh] >> bit) & 1u];
    }
    return;
  }
  const uint32_t bias = n.feat >> 15, kk = n.kk;
  for (uint32_t i = lo; i < hi; i++) {
    const uint32_t row = src[i];
    a[row * K] += v[uint16_t(col[row] + bias) <= kk];
  }
}

// PartFinish walks each pending (row, node) pair to its leaf, kPartFinishRows in flight
// (WalkRefill's lanes), and adds the leaf's value to the row's accumulator. Its lane loop
// is WalkRefill's, kept apart: one template for both, the next pair from a lambda, was
// measured (BenchmarkShapesBatch, alternating builds) 6% slower on gen_categorical with
// the scalar kernel and 3% on deep_unbalanced with AVX2 (4% faster on gen_deep_d12 with
// AVX2), with identical code but the compiler's placement of it.
template <class A, bool kCat>
PD_INLINE void PartFinish(const Node* nd, const A* val, const uint16_t* bins, size_t B, const uint32_t* pool,
                          const uint32_t* cat_off, const uint32_t* prow, const uint32_t* pnode, size_t np, A* a,
                          size_t K) {
  constexpr size_t R = kPartFinishRows;
  uint32_t cur[R], row[R];
  size_t live = std::min(R, np), next = live;
  for (size_t i = 0; i < live; i++) {
    cur[i] = pnode[i];
    row[i] = prow[i];
  }
  while (live > 0) {
    for (size_t i = 0; i < live;) {
      const Node n = nd[cur[i]];
      if (n.left == n.right) {  // a leaf
        a[row[i] * K] += val[cur[i]];
        if (next < np) {
          row[i] = prow[next];
          cur[i] = pnode[next++];
          i++;
        } else {
          live--;
          cur[i] = cur[live];
          row[i] = row[live];
        }
        continue;
      }
      const uint32_t b = bins[(n.feat & 0x7FFFu) * B + row[i]];
      bool left;
      if (kCat && (n.right & kCatFlag)) left = CatLeft(pool, cat_off[n.kk], b);
      else left = uint16_t(b + (n.feat >> 15)) <= n.kk;
      cur[i] = left ? n.left : (n.right & 0x7FFFu);
      i++;
    }
  }
}

// Scratch of WalkPartition for a block of nb rows: the identity (the root's rows), two
// index buffers and the pending (row, node) pairs, each padded for a vector's tail, then
// its stack of ranges (one pending right child per level of the deepest tree, 4 words
// each).
PD_INLINE size_t PartScratch(size_t nb, int max_depth) { return 5 * (nb + 16) + 4 * (size_t(max_depth) + 2); }

template <ISA kISA, class A, bool kCat>
PD_INLINE void WalkPartition(const Ensemble& e, const uint16_t* bins, size_t B, size_t nb, A* acc, size_t K,
                             uint32_t* scratch) {
  const Node* nodes = e.nodes.data();
  const uint32_t* pool = e.cat_pool.data();
  const uint32_t* cat_off = e.cat_off.data();
  const A* vals = Pick<A>(e.val64, e.val32);
  const size_t P = nb + 16;
  uint32_t* ident = scratch;
  uint32_t* buf[2] = {scratch + P, scratch + 2 * P};
  uint32_t* prow = scratch + 3 * P;
  uint32_t* pnode = scratch + 4 * P;
  for (size_t r = 0; r < nb; r++) ident[r] = uint32_t(r);
  struct Range {
    uint32_t node, lo, hi, depth;
  };
  static_assert(sizeof(Range) == 4 * sizeof(uint32_t), "PartScratch counts 4 words per range");
  Range* stack = reinterpret_cast<Range*>(scratch + 5 * P);  // max_depth + 2 entries
  for (int t = 0; t < e.num_trees; t++) {
    const Node* nd = nodes + e.tree_off[t];
    const A* val = vals + e.tree_off[t];
    A* a = acc + e.tree_output[t];
    size_t np = 0, sp = 0;
    stack[sp++] = {0, 0, uint32_t(nb), 0};
    while (sp > 0) {
      Range q = stack[--sp];
      for (;;) {
        const Node n = nd[q.node];
        const uint32_t* src = q.depth == 0 ? ident : buf[q.depth & 1];
        if (n.left == n.right) {  // a leaf
          const A v = val[q.node];
          for (uint32_t i = q.lo; i < q.hi; i++) a[src[i] * K] += v;
          break;
        }
        // Both children leaves (most rows of a deep XGBoost tree end there): each row adds
        // the value its bin picks, and neither leaf is visited.
        const uint32_t li = n.left, ri = n.right & 0x7FFFu;
        const Node nl = nd[li], nr = nd[ri];
        if (nl.left == nl.right && nr.left == nr.right && !(g_walk_lockstep & 8)) {
          PartLeaves<A, kCat>(n, bins + (n.feat & 0x7FFFu) * B, pool, cat_off, src, q.lo, q.hi, val[li], val[ri], a, K);
          break;
        }
        if (q.hi - q.lo < kPartSmall) {
          for (uint32_t i = q.lo; i < q.hi; i++, np++) {
            prow[np] = src[i];
            pnode[np] = q.node;
          }
          break;
        }
        uint32_t* dst = buf[(q.depth + 1) & 1];
        const uint16_t* col = bins + (n.feat & 0x7FFFu) * B;
        uint32_t m;
#if PD_X86
        if constexpr (kISA != ISA::kScalar) {
          if (!(kCat && (n.right & kCatFlag)) && !(g_walk_lockstep & 32))
            m = PartSplitAVX2(n, col, src, dst, q.lo, q.hi);
          else
            m = PartSplit<kCat>(n, col, pool, cat_off, src, dst, q.lo, q.hi);
        } else
#endif
          m = PartSplit<kCat>(n, col, pool, cat_off, src, dst, q.lo, q.hi);
        if (m < q.hi) stack[sp++] = {ri, m, q.hi, q.depth + 1};
        if (m == q.lo) break;
        q = {li, q.lo, m, q.depth + 1};
      }
    }
    if (np > 0) PartFinish<A, kCat>(nd, val, bins, B, pool, cat_off, prow, pnode, np, a, K);
  }
}

// UseRefill: whether the kernel walks with WalkRefill rather than the lock-step walks.
// Measured on the production-shaped fixtures (docs/benchmarks.md): the scalar kernel gains
// on deep trees (1.7x at mean depth 63, 2x on XGBoost depth-12 trees) but loses on shallower
// trees with categorical splits (ranker_63, max depth 25); the AVX2 and AVX-512 lock-step
// walks were as fast or faster than a refilling vector walk (compress and expand of rows
// per lane) on every such model, so they keep lock step.
template <ISA kISA>
PD_INLINE bool UseRefill(const Ensemble& e) {
  if (kISA != ISA::kScalar || e.small_trees || (g_walk_lockstep & 1)) return false;
  return !e.has_cat || e.max_depth > 32;
}

// UsePartition: whether a batch of nrows rows takes the partition walk (WalkPartition)
// rather than the walks above. Per-row costs on the production-shaped fixtures
// (docs/benchmarks.md, "Production-shaped models" step 10): the partition walk gains with
// the batch (a node's overhead is shared by more rows), the others do not; it overtook the
// scalar walks from about 16 rows, AVX2's gather walk from about 64 and AVX-512's from
// about 128. Models of small trees over few features keep their register-table walks.
template <ISA kISA>
PD_INLINE bool UsePartition(const Ensemble& e, size_t nrows) {
  if ((g_walk_lockstep & 4) || e.small_trees) return false;
  constexpr size_t kMinRows = kISA == ISA::kAVX512 ? 128 : kISA == ISA::kAVX2 ? 64 : 16;
  return nrows >= kMinRows;
}

template <ISA kISA, class T, class A, bool kXGB, bool kCat>
PD_INLINE void FastBody(const Ensemble& e, const T* rows, size_t nrows, double* out, bool tables) {
  // The walk flag (tables false) also keeps the pointer walks where the model has a heap.
  const bool heap = tables && e.heap_depth > 0;
  tables = tables && e.leaf_tables;
  const size_t F = size_t(e.num_features), K = size_t(e.num_outputs), S = e.slots.size();
  // Rows per block: a power of two, so the vector walks index bins[slot * B + row] with a
  // shift. Bins are feature-major within the block: rows that sit at the same node read
  // neighbouring bins (one cache line for a whole vector at a tree's top levels).
  size_t B = kMaxBlock;
  while (B > 1 && B * S > kStackBins) B /= 2;
  // The partition walk takes larger blocks (its bins on the heap), split evenly over the
  // batch so that no block is left with a few rows.
  const bool part = !heap && !tables && UsePartition<kISA>(e, nrows);
  std::vector<uint32_t> part_scratch;
  if (part) {
    // Blocks as large as kPartBinBytes of bins allow, but never above the stack
    // block's B for a model so wide that B rows already pass it.
    size_t maxb = kPartBlock;
    while (maxb > B && maxb * S * sizeof(uint16_t) > kPartBinBytes) maxb /= 2;
    maxb = std::max(maxb, B);
    const size_t nblk = (nrows + maxb - 1) / maxb;
    B = (nrows + nblk - 1) / nblk;
    part_scratch.resize(PartScratch(B, e.max_depth));
  }
  uint16_t bins_stack[kStackBins + 8];  // +8: vector gathers read 4 bytes at a 2-byte bin
  A acc_stack[kStackAcc];
  std::vector<uint16_t> bins_heap;
  std::vector<A> acc_heap;
  uint16_t* bins = bins_stack;
  A* acc = acc_stack;
  if (B * S > kStackBins) {
    bins_heap.resize(B * S + 8);
    bins = bins_heap.data();
  }
  if (B * K > kStackAcc) {
    acc_heap.resize(B * K);
    acc = acc_heap.data();
  }
  const FeatureBin* slots = e.slots.data();

  for (size_t r0 = 0; r0 < nrows; r0 += B) {
    const size_t nb = std::min(B, nrows - r0);
    const T* blk = rows + r0 * F;
    // Feature by feature, so one feature's thresholds stay in L1 while the block's rows
    // are binned (a wide model's thresholds do not fit in L1 together).
    for (size_t s = 0; s < S; s++) {
#if PD_X86
      if constexpr (kISA == ISA::kAVX512 && !kXGB) {
        // Eight rows per vector: under eight rows the gathers cost more than they save.
        if (nb >= 8 && BinSlotVectorizes(slots[s])) {
          BinSlotAVX512<T>(e, slots[s], blk, F, nb, bins + s * B);
          continue;
        }
      }
      if constexpr (kISA == ISA::kAVX512 && kXGB) {
        if (nb >= 8 && !(g_walk_lockstep & 8) && BinSlotVectorizesXGB(slots[s])) {
          BinSlotXGBAVX512<T>(e, slots[s], blk, F, nb, bins + s * B);
          continue;
        }
      }
#endif
      if constexpr (kXGB) {
        if (slots[s].feature >= 0 && !slots[s].categorical && slots[s].guide_n > 0 && !(g_walk_lockstep & 16)) {
          BinSlotXGBGuided<T>(e, slots[s], blk, F, nb, bins + s * B);
          continue;
        }
      }
      for (size_t r = 0; r < nb; r++) bins[s * B + r] = BinFeature<T, kXGB>(e, slots[s], blk + r * F);
    }
    for (size_t r = 0; r < nb; r++)
      for (size_t k = 0; k < K; k++) acc[r * K + k] = A(e.base[k]);

    if (heap) {
      // Scalar at every ISA: an AVX-512 version gathering nodes and bins (16 rows per
      // vector) measured no faster than eight interleaved scalar walks (docs/benchmarks.md).
      HeapWalk<A>(e, bins, B, nb, acc, K);
    } else if (tables) {
#if PD_X86
      if constexpr (kISA == ISA::kAVX512) {
        // Under 8 rows the 32-row passes mostly score copies of the last row.
        if (K == 1 && nb >= 8) TableAVX512Any<A>(e, bins, S, B, nb, acc);
        else TableWalk<kISA, A>(e, bins, S, B, nb, acc, K);
      } else {
        TableWalk<kISA, A>(e, bins, S, B, nb, acc, K);
      }
#else
      TableWalk<kISA, A>(e, bins, S, B, nb, acc, K);
#endif
    } else if (part) {
      WalkPartition<kISA, A, kCat>(e, bins, B, nb, acc, K, part_scratch.data());
    } else if (UseRefill<kISA>(e)) {
      WalkRefill<A, kCat>(e, bins, B, nb, acc, K);
    } else {
#if PD_X86
    // A vector walk pays gather latency per level; it needs a few full vectors in flight.
    if constexpr (kISA == ISA::kAVX512) {
      if (nb >= 16 && e.small_trees) WalkAVX512Small<A, kCat>(e, bins, S, B, nb, acc, K);
      else if (nb >= 16) WalkAVX512<A, kCat>(e, bins, S, B, nb, acc, K);
      else WalkScalar<A, kCat>(e, bins, S, B, nb, acc, K);
    } else if constexpr (kISA == ISA::kAVX2) {
      if (nb >= 8 && e.small_trees) WalkAVX2Small<A, kCat>(e, bins, S, B, nb, acc, K);
      else if (nb >= 8) WalkAVX2<A, kCat>(e, bins, S, B, nb, acc, K);
      else WalkScalar<A, kCat>(e, bins, S, B, nb, acc, K);
    } else {
      WalkScalar<A, kCat>(e, bins, S, B, nb, acc, K);
    }
#else
    WalkScalar<A, kCat>(e, bins, S, B, nb, acc, K);
#endif
    }

    if (!e.linear_weights.empty()) {
      for (size_t r = 0; r < nb; r++) {
        const T* x = blk + r * F;
        for (size_t k = 0; k < K; k++) {
          // XGBoost gblinear: psum = base + bias, then += x*w in float32. LightGBM-style
          // double: the linear part is summed on its own, then added.
          A s = kXGB ? acc[r * K + k] + A(e.linear_bias[k]) : A(e.linear_bias[k]);
          for (size_t f = 0; f < F; f++) {
            const A v = A(x[f]);
            if (!std::isnan(v)) s += v * A(e.linear_weights[f * K + k]);
          }
          acc[r * K + k] = kXGB ? s : acc[r * K + k] + s;
        }
      }
    }
    double* o = out + r0 * K;
    for (size_t i = 0; i < nb * K; i++) o[i] = double(acc[i]);
  }
}

template <ISA kISA, class T>
PD_INLINE void FastDispatch(const Ensemble& e, const T* rows, size_t nrows, double* out, bool tables) {
  if (e.semantics == PD_SEMANTICS_XGBOOST) {
    if (e.has_cat) FastBody<kISA, T, float, true, true>(e, rows, nrows, out, tables);
    else FastBody<kISA, T, float, true, false>(e, rows, nrows, out, tables);
  } else if (e.has_cat) {
    FastBody<kISA, T, double, false, true>(e, rows, nrows, out, tables);
  } else {
    FastBody<kISA, T, double, false, false>(e, rows, nrows, out, tables);
  }
}

template <class T>
void FastScalar(const Ensemble& e, const T* rows, size_t nrows, double* out, bool tables) {
  FastDispatch<ISA::kScalar, T>(e, rows, nrows, out, tables);
}

#if PD_X86
template <class T>
PD_TARGET_AVX2 void FastAVX2(const Ensemble& e, const T* rows, size_t nrows, double* out, bool tables) {
  FastDispatch<ISA::kAVX2, T>(e, rows, nrows, out, tables);
}
template <class T>
PD_TARGET_AVX512 void FastAVX512(const Ensemble& e, const T* rows, size_t nrows, double* out, bool tables) {
  FastDispatch<ISA::kAVX512, T>(e, rows, nrows, out, tables);
}
#endif

}  // namespace

template <class T>
void Predict(const Ensemble& e, Kernel kf, const T* rows, size_t nrows, double* out) {
  const Kernel k = Kernel(int(kf) & ~kKernelWalkFlag);
  // Every batch size takes the fast path, one row too: binning a row costs less than the
  // generic walk saves even on NYC_taxi's 100 small trees (docs/benchmarks.md).
  if (!e.fast || k == Kernel::kGeneric) {
    PredictGeneric<T>(e, rows, nrows, out);
    return;
  }
  const bool tables = !(int(kf) & kKernelWalkFlag);  // leaf tables or the heap, where built
  switch (k) {
#if PD_X86
    case Kernel::kAVX512: FastAVX512<T>(e, rows, nrows, out, tables); return;
    case Kernel::kAVX2: FastAVX2<T>(e, rows, nrows, out, tables); return;
#endif
    default: FastScalar<T>(e, rows, nrows, out, tables); return;
  }
}

template void Predict<double>(const Ensemble&, Kernel, const double*, size_t, double*);
template void Predict<float>(const Ensemble&, Kernel, const float*, size_t, double*);

}  // namespace pd

extern "C" void pd_walk_lockstep(int on) { pd::g_walk_lockstep = on; }
