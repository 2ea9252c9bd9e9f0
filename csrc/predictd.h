/*
 * predictd.h — the C interface of predictd's tree-ensemble scoring core.
 *
 * Pure C (C99), usable from C, C++ and cgo. Conventions:
 *   - Opaque handles, created by pd_ensemble_new and released by pd_ensemble_free.
 *   - Every fallible call returns an int status (PD_OK or a PD_ERR_* code) and, on error,
 *     writes a NUL-terminated message into the caller's buffer (err, err_len) in the same
 *     call. There is no thread-local "last error": a Go goroutine may change OS threads
 *     between two cgo calls.
 *   - No C++ exception ever crosses this interface.
 *   - The core never keeps a pointer into caller memory after a call returns: the spec is
 *     copied (and re-laid-out) by pd_ensemble_new; rows and outputs are only used during
 *     the predict call.
 *   - A pd_ensemble is immutable after creation: any number of threads may call predict on
 *     the same handle concurrently.
 */
#ifndef PREDICTD_H_
#define PREDICTD_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PD_OK 0
#define PD_ERR_INVALID_ARGUMENT 1 /* NULL pointer, wrong shape, short output buffer */
#define PD_ERR_INVALID_MODEL 2    /* the spec is inconsistent (child out of range, cycle, ...) */
#define PD_ERR_NO_MEMORY 3
#define PD_ERR_INTERNAL 4
#define PD_ERR_DEADLINE 5 /* background: no worker started the batch within the timeout */

/* Numeric rules of the training library. */
#define PD_SEMANTICS_LIGHTGBM 0 /* float64: x <= t goes left, missing types, float64 sums */
#define PD_SEMANTICS_XGBOOST 1  /* float32: (float)x < (float)t goes left, float32 sums */

/* Node flags (LightGBM decision_type encoding). */
#define PD_FLAG_CATEGORICAL 1u  /* category in the node's set goes left */
#define PD_FLAG_DEFAULT_LEFT 2u /* missing goes left */
/* bits 2-3: missing type */
#define PD_MISSING_NONE 0u /* NaN scored as 0.0 */
#define PD_MISSING_ZERO 1u /* NaN and |x| <= (double)1e-35f take the default direction */
#define PD_MISSING_NAN 2u  /* NaN takes the default direction */

/*
 * pd_ensemble_spec: the internal form handed over once at load (mirrors Go's
 * engine.Ensemble). Arrays are concatenated over all trees:
 *   tree t owns internal nodes [node_start[t], node_start[t+1]) and leaves
 *   [leaf_start[t], leaf_start[t+1]); left/right are tree-local: c >= 0 is internal node
 *   node_start[t]+c, c < 0 is leaf leaf_start[t] + (-c-1). The root is local node 0; a
 *   tree with no internal nodes is its single leaf.
 * Categorical node i uses set cat_set[i]: bits cat_bits[cat_start[s] .. cat_start[s+1]).
 * raw[k] = base_score[k] + sum over trees with tree_output[t]==k of
 *          tree_weight[t] * leaf value (tree_weight may be NULL = all 1)
 *          (+ linear_bias[k] + sum_f linear_weights[f*num_outputs+k] * x[f] when
 *          linear_weights is not NULL).
 */
typedef struct pd_ensemble_spec {
  int32_t semantics; /* PD_SEMANTICS_* */
  int32_t num_features;
  int32_t num_outputs;
  const double* base_score; /* num_outputs */

  int32_t num_trees;
  const int32_t* node_start;  /* num_trees + 1 */
  const int32_t* leaf_start;  /* num_trees + 1 */
  const int32_t* tree_output; /* num_trees */
  const double* tree_weight;  /* num_trees, or NULL */

  /* internal nodes: node_start[num_trees] of each */
  const int32_t* feature;
  const double* threshold;
  const uint8_t* flags;
  const int32_t* left;
  const int32_t* right;
  const int32_t* cat_set; /* -1 for numerical nodes; may be NULL when no node is categorical */

  const double* leaf_value; /* leaf_start[num_trees] */

  int32_t num_cat_sets;
  const int32_t* cat_start; /* num_cat_sets + 1, or NULL when num_cat_sets == 0 */
  const uint32_t* cat_bits; /* cat_start[num_cat_sets] */

  const double* linear_weights; /* num_features * num_outputs, or NULL */
  const double* linear_bias;    /* num_outputs, or NULL (only with linear_weights) */
} pd_ensemble_spec;

typedef struct pd_ensemble pd_ensemble;

/* Validates and copies the spec into the core's own layout. On success *out owns a new
 * handle; on failure *out is NULL and err holds the reason. */
int pd_ensemble_new(const pd_ensemble_spec* spec, pd_ensemble** out, char* err, size_t err_len);

/* Releases a handle; NULL is allowed. */
void pd_ensemble_free(pd_ensemble* e);

/* Kernels: the traversal code a predict call runs. Every kernel gives bit-identical
 * results; models outside the binned kernels' limits (pd_ensemble_info) always take the
 * generic walk, whatever kernel is asked for. */
#define PD_KERNEL_DEFAULT (-1) /* the kernel this process chose (pd_kernel_name) */
#define PD_KERNEL_GENERIC 0    /* exact row-by-row walk over the original values */
#define PD_KERNEL_SCALAR 1     /* binned, row-blocked, branchless; baseline x86-64 */
#define PD_KERNEL_AVX2 2       /* the same code compiled for AVX2 (+BMI2, FMA) */
#define PD_KERNEL_AVX512 3     /* the same code compiled for AVX-512 (F, BW, VL, DQ) */
/* Flag, or-ed with SCALAR, AVX2 or AVX512: walk the trees even where the model has leaf
 * tables or a heap layout (benchmarks compare the traversals in one process). */
#define PD_KERNEL_WALK 8

/* Which kernel this process chose at run time: "avx512", "avx2" or "scalar" (the best
 * the CPU supports), or "generic". The environment variable
 * PREDICTD_KERNEL=generic|scalar|avx2|avx512, read once at the first call, forces one; a
 * kernel the CPU lacks falls back to the best it has. */
const char* pd_kernel_name(void);

/* 1 when this CPU can run kernel (a PD_KERNEL_* value, PD_KERNEL_WALK allowed), else 0.
 * PD_KERNEL_DEFAULT and PD_KERNEL_GENERIC always run. */
int pd_kernel_supported(int kernel);

/* How the binned kernels traverse a model (pd_ensemble_info.traversal). */
#define PD_TRAVERSAL_GENERIC 0     /* outside the binned kernels' limits: the generic walk
                                      only (20-100x slower); fallback_reason says why */
#define PD_TRAVERSAL_WALK 1        /* pointer walks over binned pre-order nodes */
#define PD_TRAVERSAL_LEAF_TABLES 2 /* leaf tables (trees of at most 32 leaves) */
#define PD_TRAVERSAL_HEAP_WALK 3   /* complete trees up to depth 10, no child pointers */

typedef struct pd_ensemble_info {
  int32_t num_features;
  int32_t num_outputs;
  int32_t num_trees;
  int32_t traversal; /* PD_TRAVERSAL_* */
  /* Why the model fell back to PD_TRAVERSAL_GENERIC ("" otherwise). NUL-terminated, owned
   * by the handle: valid until pd_ensemble_free. */
  const char* fallback_reason;
} pd_ensemble_info;

/* Describes e into *info. PD_ERR_INVALID_ARGUMENT for a NULL e or info. */
int pd_ensemble_get_info(const pd_ensemble* e, pd_ensemble_info* info, char* err, size_t err_len);

/* Raw margins for nrows row-major rows of exactly ncols (= num_features) values each;
 * NaN is a missing value. kernel is PD_KERNEL_DEFAULT, or one the CPU supports
 * (pd_kernel_supported). out must hold at least nrows*num_outputs doubles and receives
 * row r, output k at out[r*num_outputs + k]. With XGBoost semantics the values are float32
 * results widened to double. Returns PD_ERR_INVALID_ARGUMENT for a wrong ncols, a short
 * out_len or a kernel the CPU lacks. nrows == 0 is a no-op. */
int pd_predict_f64(const pd_ensemble* e, int kernel, const double* rows, size_t nrows, size_t ncols,
                   double* out, size_t out_len, char* err, size_t err_len);
int pd_predict_f32(const pd_ensemble* e, int kernel, const float* rows, size_t nrows, size_t ncols,
                   double* out, size_t out_len, char* err, size_t err_len);

/*
 * Background scoring (csrc/background.cc). pd_predict_*_background compute exactly what
 * pd_predict_* compute, on one of the core's own worker threads, which run at the lowest
 * CPU priority the OS grants without privileges (nice 19, else Linux SCHED_IDLE): a long
 * batch then takes little CPU time while normal-priority threads want it, and a normal
 * thread that wakes preempts it. The caller blocks until its batch is done.
 * timeout_ns > 0: a batch that no worker has started within that many nanoseconds is
 * withdrawn and PD_ERR_DEADLINE returned (low-priority threads hardly run while normal work
 * keeps every core busy); a started batch runs to its end. 0 waits as long as it takes.
 * cpu_ns (may be NULL) receives the worker's thread CPU time for the batch.
 * The pool starts at the first call with one thread per online CPU, unless
 * pd_background_start chose the count before.
 */
/* Starts the pool with `threads` workers (1..256) if it is not running; returns the number
 * of workers (the first start wins), 0 on failure. Safe to call from several threads. */
int pd_background_start(int threads);
/* The priority the workers run at: "nice 19, 0.1 ms slice" (a custom time slice, Linux
 * 6.12+), "nice 19", "SCHED_IDLE", or "normal (REASON)"; "" before
 * the pool has started. */
const char* pd_background_priority(void);
int pd_predict_f64_background(const pd_ensemble* e, int kernel, const double* rows, size_t nrows, size_t ncols,
                              double* out, size_t out_len, int64_t timeout_ns, int64_t* cpu_ns, char* err,
                              size_t err_len);
int pd_predict_f32_background(const pd_ensemble* e, int kernel, const float* rows, size_t nrows, size_t ncols,
                              double* out, size_t out_len, int64_t timeout_ns, int64_t* cpu_ns, char* err,
                              size_t err_len);
/* For tests of withdrawal: while paused (paused != 0), the workers start no new batch. */
void pd_background_pause(int paused);
/* Tests and benchmarks only: bit 0 sends models that take the refill walk to the
 * lock-step walks instead; bit 1 keeps finished vectors of the gather walks stepping
 * (3: the walks before both); bit 2 turns the partition walk off (4: the walks before it);
 * bit 3 turns off the partition walk's leaf pairs and XGBoost's AVX-512 binning; bit 4
 * bins XGBoost rows one row at a time, bit 5 splits the partition walk's rows with scalar
 * code in every kernel (56: the design before leaf pairs; 48: the design before the
 * slot-at-a-time XGBoost binning and the AVX2 split). Process-wide; must not race with
 * predict calls. */
void pd_walk_lockstep(int on);

#ifdef __cplusplus
}
#endif

#endif /* PREDICTD_H_ */
