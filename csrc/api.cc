// api.cc — the extern "C" functions of predictd.h. Every entry point catches everything:
// no C++ exception crosses the C interface, and errors go into the caller's buffer.
#include <cstdarg>
#include <cstdio>
#include <new>
#include <string>

#include "core_internal.h"

struct pd_ensemble {
  pd::Ensemble e;
};

namespace {

void SetErr(char* err, size_t err_len, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
void SetErr(char* err, size_t err_len, const char* fmt, ...) {
  if (err == nullptr || err_len == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, err_len, fmt, ap);
  va_end(ap);
}

template <class T>
int PredictChecked(const pd_ensemble* h, pd::Kernel k, const T* rows, size_t nrows, size_t ncols,
                   double* out, size_t out_len, char* err, size_t err_len) {
  try {
    if (h == nullptr) {
      SetErr(err, err_len, "predict: NULL ensemble");
      return PD_ERR_INVALID_ARGUMENT;
    }
    const pd::Ensemble& e = h->e;
    if (ncols != size_t(e.num_features)) {
      SetErr(err, err_len, "predict: rows have %zu columns, the model takes %d features", ncols, e.num_features);
      return PD_ERR_INVALID_ARGUMENT;
    }
    if (nrows == 0) return PD_OK;
    const size_t K = size_t(e.num_outputs);
    if (nrows > SIZE_MAX / K || (ncols != 0 && nrows > SIZE_MAX / ncols)) {
      SetErr(err, err_len, "predict: %zu rows overflow the buffer sizes", nrows);
      return PD_ERR_INVALID_ARGUMENT;
    }
    if (out_len < nrows * K) {
      SetErr(err, err_len, "predict: output holds %zu values, %zu rows x %zu outputs need %zu", out_len, nrows, K, nrows * K);
      return PD_ERR_INVALID_ARGUMENT;
    }
    if (out == nullptr || (rows == nullptr && ncols != 0)) {
      SetErr(err, err_len, "predict: NULL %s", out == nullptr ? "output" : "rows");
      return PD_ERR_INVALID_ARGUMENT;
    }
    pd::Predict<T>(e, k, rows, nrows, out);
    return PD_OK;
  } catch (const std::bad_alloc&) {
    SetErr(err, err_len, "predict: out of memory");
    return PD_ERR_NO_MEMORY;
  } catch (...) {
    SetErr(err, err_len, "predict: internal error");
    return PD_ERR_INTERNAL;
  }
}

// CheckKernel answers whether kernel may run on this CPU, and says why not in err.
bool CheckKernel(int kernel, char* err, size_t err_len) {
  if (pd_kernel_supported(kernel)) return true;
  SetErr(err, err_len, "predict: kernel %d is not supported by this CPU", kernel);
  return false;
}

pd::Kernel ToKernel(int kernel) { return kernel == PD_KERNEL_DEFAULT ? pd::DefaultKernel() : pd::Kernel(kernel); }

int32_t Traversal(const pd::Ensemble& e) {
  if (!e.fast) return PD_TRAVERSAL_GENERIC;
  if (e.leaf_tables) return PD_TRAVERSAL_LEAF_TABLES;
  return e.heap_depth > 0 ? PD_TRAVERSAL_HEAP_WALK : PD_TRAVERSAL_WALK;
}

}  // namespace

extern "C" {

int pd_ensemble_new(const pd_ensemble_spec* spec, pd_ensemble** out, char* err, size_t err_len) {
  if (out == nullptr) {
    SetErr(err, err_len, "pd_ensemble_new: NULL out");
    return PD_ERR_INVALID_ARGUMENT;
  }
  *out = nullptr;
  if (spec == nullptr) {
    SetErr(err, err_len, "pd_ensemble_new: NULL spec");
    return PD_ERR_INVALID_ARGUMENT;
  }
  try {
    pd_ensemble* h = new pd_ensemble();
    std::string msg;
    const int rc = pd::Build(spec, &h->e, &msg);
    if (rc != PD_OK) {
      delete h;
      SetErr(err, err_len, "invalid model: %s", msg.c_str());
      return rc;
    }
    *out = h;
    return PD_OK;
  } catch (const std::bad_alloc&) {
    SetErr(err, err_len, "pd_ensemble_new: out of memory");
    return PD_ERR_NO_MEMORY;
  } catch (...) {
    SetErr(err, err_len, "pd_ensemble_new: internal error");
    return PD_ERR_INTERNAL;
  }
}

void pd_ensemble_free(pd_ensemble* e) { delete e; }

int pd_ensemble_get_info(const pd_ensemble* e, pd_ensemble_info* info, char* err, size_t err_len) {
  if (e == nullptr || info == nullptr) {
    SetErr(err, err_len, "pd_ensemble_get_info: NULL %s", e == nullptr ? "ensemble" : "info");
    return PD_ERR_INVALID_ARGUMENT;
  }
  info->num_features = e->e.num_features;
  info->num_outputs = e->e.num_outputs;
  info->num_trees = e->e.num_trees;
  info->traversal = Traversal(e->e);
  info->fallback_reason = e->e.fast ? "" : e->e.fallback_reason.c_str();
  return PD_OK;
}

int pd_predict_f64(const pd_ensemble* e, int kernel, const double* rows, size_t nrows, size_t ncols, double* out,
                   size_t out_len, char* err, size_t err_len) {
  if (!CheckKernel(kernel, err, err_len)) return PD_ERR_INVALID_ARGUMENT;
  return PredictChecked<double>(e, ToKernel(kernel), rows, nrows, ncols, out, out_len, err, err_len);
}

int pd_predict_f32(const pd_ensemble* e, int kernel, const float* rows, size_t nrows, size_t ncols, double* out,
                   size_t out_len, char* err, size_t err_len) {
  if (!CheckKernel(kernel, err, err_len)) return PD_ERR_INVALID_ARGUMENT;
  return PredictChecked<float>(e, ToKernel(kernel), rows, nrows, ncols, out, out_len, err, err_len);
}

const char* pd_kernel_name(void) { return pd::KernelName(pd::DefaultKernel()); }

int pd_kernel_supported(int kernel) {
  if (kernel == PD_KERNEL_DEFAULT) return 1;
  const int isa = kernel & ~PD_KERNEL_WALK;
  return kernel >= 0 && isa <= PD_KERNEL_AVX512 && pd::CPUSupports(pd::Kernel(isa));
}

}  // extern "C"
