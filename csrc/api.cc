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

int pd_predict_f64(const pd_ensemble* e, const double* rows, size_t nrows, size_t ncols, double* out,
                   size_t out_len, char* err, size_t err_len) {
  return PredictChecked<double>(e, pd::DefaultKernel(), rows, nrows, ncols, out, out_len, err, err_len);
}

int pd_predict_f32(const pd_ensemble* e, const float* rows, size_t nrows, size_t ncols, double* out,
                   size_t out_len, char* err, size_t err_len) {
  return PredictChecked<float>(e, pd::DefaultKernel(), rows, nrows, ncols, out, out_len, err, err_len);
}

const char* pd_kernel_name(void) { return pd::KernelName(pd::DefaultKernel()); }

}  // extern "C"

// Internal entry points (core_internal.h).
extern "C" {

int pd_kernel_supported(int kernel) {
  const int isa = kernel & ~pd::kKernelWalkFlag;  // the flag keeps the walks (no leaf tables)
  return kernel >= 0 && isa <= 3 && pd::CPUSupports(pd::Kernel(isa));
}

int pd_predict_kernel_f64(const pd_ensemble* e, int kernel, const double* rows, size_t nrows, size_t ncols,
                          double* out, size_t out_len, char* err, size_t err_len) {
  if (kernel < 0) return pd_predict_f64(e, rows, nrows, ncols, out, out_len, err, err_len);
  if (!pd_kernel_supported(kernel)) {
    SetErr(err, err_len, "predict: kernel %d is not supported by this CPU", kernel);
    return PD_ERR_INVALID_ARGUMENT;
  }
  return PredictChecked<double>(e, pd::Kernel(kernel), rows, nrows, ncols, out, out_len, err, err_len);
}

int pd_predict_kernel_f32(const pd_ensemble* e, int kernel, const float* rows, size_t nrows, size_t ncols,
                          double* out, size_t out_len, char* err, size_t err_len) {
  if (kernel < 0) return pd_predict_f32(e, rows, nrows, ncols, out, out_len, err, err_len);
  if (!pd_kernel_supported(kernel)) {
    SetErr(err, err_len, "predict: kernel %d is not supported by this CPU", kernel);
    return PD_ERR_INVALID_ARGUMENT;
  }
  return PredictChecked<float>(e, pd::Kernel(kernel), rows, nrows, ncols, out, out_len, err, err_len);
}

const char* pd_ensemble_slow_reason(const pd_ensemble* e) {
  return e == nullptr || e->e.fast ? "" : e->e.slow_reason.c_str();
}

int pd_ensemble_is_fast(const pd_ensemble* e) {
  if (e == nullptr || !e->e.fast) return 0;
  return e->e.leaf_tables ? 2 : e->e.heap_depth > 0 ? 3 : 1;
}

}  // extern "C"

int pd_predict_f64_kernel(const pd_ensemble* e, int kernel, const double* rows, size_t nrows, double* out) {
  const size_t nf = e ? size_t(e->e.num_features) : 0;
  return pd_predict_kernel_f64(e, kernel, rows, nrows, nf, out, SIZE_MAX, nullptr, 0);
}

int pd_predict_f32_kernel(const pd_ensemble* e, int kernel, const float* rows, size_t nrows, double* out) {
  const size_t nf = e ? size_t(e->e.num_features) : 0;
  return pd_predict_kernel_f32(e, kernel, rows, nrows, nf, out, SIZE_MAX, nullptr, 0);
}
