// kernels.cc — the scoring kernels and their run-time dispatch.
//
// Generic path: row by row, tree by tree, a plain walk over the original values with each
// library's exact decision rule. It covers every valid model and is the reference the fast
// kernels are tested against.
//
// Fast path, per block of up to 64 rows:
//   1. Bin: each used feature value becomes a uint16 bin index against the sorted, distinct
//      thresholds of that feature (TL2cgen's quantisation: 2i+1 = equal to threshold i,
//      2i = strictly between thresholds i-1 and i), so LightGBM's `x <= t` (double) and
//      XGBoost's `float(x) < t` (float) both become one exact integer compare, and missing
//      values (NaN; LightGBM's zero range) become bin 0xFFFF.
//   2. Walk: every tree, all rows of the block in lock step, exactly depth(tree) branchless
//      steps over 8-byte pre-order nodes; leaves loop to themselves, so rows that arrive
//      early just stay. Rows are independent, so the CPU overlaps their load chains.
//   3. Sum leaves per row in tree order (float for XGBoost, double for LightGBM).
// The same source is compiled three times (baseline x86-64, AVX2, AVX-512) with
// __attribute__((target)); the CPU picks one at run time. No -march=native.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core_internal.h"

// Sums must round exactly as the libraries' do: never fuse a multiply and an add (the
// AVX2/AVX-512 kernels have FMA, and g++ contracts by default even in ISO mode; cgo does
// not accept -ffp-contract=off as a flag).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
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
  std::vector<double> acc64(K);
  std::vector<float> acc32(K);
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
          else if (fl & PD_FLAG_CATEGORICAL) left = InCatSet(e, e.cat_set[i], double(v));
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

constexpr size_t kMaxBlock = 64;         // rows walked in lock step
constexpr size_t kStackBins = 8192;      // uint16 bins kept on the stack: 16 KiB, half of L1d
constexpr size_t kStackAcc = 1024;       // accumulators kept on the stack

// Count of thresholds strictly below x (branchless lower bound).
template <class V>
PD_INLINE uint32_t CountBelow(const V* thr, uint32_t n, V x) {
  if (n <= 16) {
    uint32_t c = 0;
    for (uint32_t j = 0; j < n; j++) c += thr[j] < x;
    return c;
  }
  const V* p = thr;
  uint32_t len = n;
  while (len > 1) {
    const uint32_t half = len / 2;
    p = (p[half - 1] < x) ? p + half : p;
    len -= half;
  }
  return uint32_t(p - thr) + (*p < x);
}

template <class V>
PD_INLINE uint16_t BinValue(const V* thr, uint32_t n, V x) {
  const uint32_t c = CountBelow(thr, n, x);
  return uint16_t(2 * c + (c < n && thr[c] == x));
}

template <class T, bool kXGB>
PD_INLINE uint16_t BinFeature(const Ensemble& e, const FeatureBin& fb, const T* row) {
  if (fb.feature < 0) return 0;
  const T raw = row[fb.feature];
  if (fb.categorical) {
    const double v = double(kXGB ? float(raw) : raw);
    if (!(v > -1.0) || !(v < double(fb.ncat))) return uint16_t(fb.ncat);  // NaN, negative, unseen
    return uint16_t(int32_t(v));
  }
  if (kXGB) {
    const float v = float(raw);
    if (std::isnan(v)) return kMissingBin;
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
  return BinValue<double>(e.thr64.data() + fb.thr_off, fb.thr_n, v);
}

template <class T, class A, bool kXGB, bool kCat>
PD_INLINE void FastBody(const Ensemble& e, const T* rows, size_t nrows, double* out) {
  const size_t F = size_t(e.num_features), K = size_t(e.num_outputs), S = e.slots.size();
  size_t B = std::max<size_t>(1, std::min(kMaxBlock, kStackBins / S));
  uint16_t bins_stack[kStackBins];
  A acc_stack[kStackAcc];
  std::vector<uint16_t> bins_heap;
  std::vector<A> acc_heap;
  uint16_t* bins = bins_stack;
  A* acc = acc_stack;
  if (B * S > kStackBins) {
    bins_heap.resize(B * S);
    bins = bins_heap.data();
  }
  if (B * K > kStackAcc) {
    acc_heap.resize(B * K);
    acc = acc_heap.data();
  }
  const Node* nodes = e.nodes.data();
  const uint32_t* pool = e.cat_pool.data();
  const A* vals;
  if constexpr (sizeof(A) == sizeof(float)) vals = e.val32.data();
  else vals = e.val64.data();
  const FeatureBin* slots = e.slots.data();
  uint32_t idx[kMaxBlock];

  for (size_t r0 = 0; r0 < nrows; r0 += B) {
    const size_t nb = std::min(B, nrows - r0);
    const T* blk = rows + r0 * F;
    for (size_t r = 0; r < nb; r++)
      for (size_t s = 0; s < S; s++) bins[r * S + s] = BinFeature<T, kXGB>(e, slots[s], blk + r * F);
    for (size_t r = 0; r < nb; r++)
      for (size_t k = 0; k < K; k++) acc[r * K + k] = A(e.base[k]);

    for (int t = 0; t < e.num_trees; t++) {
      const Node* nd = nodes + e.tree_off[t];
      const A* val = vals + e.tree_off[t];
      const int depth = e.tree_depth[t];
      A* a = acc + e.tree_output[t];
      if (depth == 0) {
        for (size_t r = 0; r < nb; r++) a[r * K] += val[0];
        continue;
      }
      for (size_t r = 0; r < nb; r++) idx[r] = 0;
      for (int d = 0; d < depth; d++) {
        for (size_t r = 0; r < nb; r++) {
          const Node n = nd[idx[r]];
          const uint32_t b = bins[r * S + (n.feat & 0x7FFFu)];
          bool left;
          if (kCat && (n.right & kCatFlag)) left = (pool[n.kk + (b >> 5)] >> (b & 31u)) & 1u;
          else left = uint16_t(b + (n.feat >> 15)) <= n.kk;
          idx[r] = left ? n.left : (n.right & 0x7FFFu);
        }
      }
      for (size_t r = 0; r < nb; r++) a[r * K] += val[idx[r]];
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

template <class T>
PD_INLINE void FastDispatch(const Ensemble& e, const T* rows, size_t nrows, double* out) {
  if (e.semantics == PD_SEMANTICS_XGBOOST) {
    FastBody<T, float, true, false>(e, rows, nrows, out);  // Layout keeps XGBoost categoricals off the fast path
  } else if (e.has_cat) {
    FastBody<T, double, false, true>(e, rows, nrows, out);
  } else {
    FastBody<T, double, false, false>(e, rows, nrows, out);
  }
}

template <class T>
void FastScalar(const Ensemble& e, const T* rows, size_t nrows, double* out) {
  FastDispatch<T>(e, rows, nrows, out);
}

#if PD_X86
template <class T>
PD_TARGET_AVX2 void FastAVX2(const Ensemble& e, const T* rows, size_t nrows, double* out) {
  FastDispatch<T>(e, rows, nrows, out);
}
template <class T>
PD_TARGET_AVX512 void FastAVX512(const Ensemble& e, const T* rows, size_t nrows, double* out) {
  FastDispatch<T>(e, rows, nrows, out);
}
#endif

}  // namespace

template <class T>
void Predict(const Ensemble& e, Kernel k, const T* rows, size_t nrows, double* out) {
  if (!e.fast || k == Kernel::kGeneric) {
    PredictGeneric<T>(e, rows, nrows, out);
    return;
  }
  switch (k) {
#if PD_X86
    case Kernel::kAVX512: FastAVX512<T>(e, rows, nrows, out); return;
    case Kernel::kAVX2: FastAVX2<T>(e, rows, nrows, out); return;
#endif
    default: FastScalar<T>(e, rows, nrows, out); return;
  }
}

template void Predict<double>(const Ensemble&, Kernel, const double*, size_t, double*);
template void Predict<float>(const Ensemble&, Kernel, const float*, size_t, double*);

}  // namespace pd
