// background.cc — background scoring: the same predictions on the core's own worker
// threads, which run at the lowest CPU priority the OS grants without privileges.
//
// Why: a sidecar serves short, latency-bound requests (a few hundred candidates, tens of
// microseconds of scoring) beside long ones (thousands of rows through thousands of trees,
// milliseconds). At one CPU priority a long batch holds its core for the kernel's whole
// time slice (about 3 ms on Linux's EEVDF scheduler), so a short request's thread, or the
// application's thread beside the sidecar, that wakes up on that core waits for the slice
// to end. Scored at nice 19, the long batch gives the core up to any normal-priority
// thread that wakes, and still uses every cycle nobody else wants.
//
// Design: a fixed pool (pd_background_start; first call wins) of detached threads, each
// switched to nice 19 at start (else SCHED_IDLE, else left as it is; the outcome is
// pd_background_priority). A caller pushes a job that lives on its own stack onto one
// FIFO queue, wakes the worker that went idle last, and blocks on the job's condition
// variable until a worker has run it; the worker runs the same checked predict as
// pd_predict_* and records the thread CPU time it spent. The threads are created here
// rather than by the Go runtime because a low-priority thread that the kernel does not
// run for a while must not hold one of Go's Ps (the
// scheduler would lose that P, and a stop-the-world would wait for it): the Go caller
// sits in a cgo call, which gives its P up like any other long cgo call.
//
// A job that no worker has started within the caller's timeout is withdrawn from the
// queue and fails with PD_ERR_DEADLINE: when normal-priority work keeps every core busy,
// nice-19 threads hardly run, and the caller's deadline must still hold. A job
// already started runs to its end.
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "core_internal.h"

namespace {

struct BgJob {
  const pd_ensemble* e;
  int kernel;
  bool f32;
  const void* rows;
  size_t nrows, ncols;
  double* out;
  size_t out_len;
  char* err;
  size_t err_len;
  // Guarded by the pool's mutex.
  bool started = false, done = false;
  int rc = PD_OK;
  int64_t cpu_ns = 0;
  std::condition_variable cv;
};

int64_t ThreadCPUNanos() {
  timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

class Pool {
 public:
  // Start starts n threads (once) and waits until each has set its priority.
  // Every background call starts here, so the running pool is answered without the lock.
  int Start(int n) {
    if (const int t = started_.load(std::memory_order_acquire)) return t;
    std::unique_lock<std::mutex> lk(mu_);
    if (threads_ > 0) return threads_;
    n = std::max(1, std::min(n, 256));
    for (int i = 0; i < n; i++) std::thread([this] { Run(); }).detach();
    threads_ = n;
    ready_cv_.wait(lk, [&] { return ready_ == threads_; });
    started_.store(threads_, std::memory_order_release);
    return threads_;
  }

  // Pause stops (or lets) workers take new jobs; for tests of withdrawal.
  void Pause(bool paused) {
    std::lock_guard<std::mutex> lk(mu_);
    paused_ = paused;
    if (!paused) {
      for (Worker* w : idle_) {
        w->wake = true;
        w->cv.notify_one();
      }
      idle_.clear();
    }
  }

  const char* Priority() {
    std::lock_guard<std::mutex> lk(mu_);
    return threads_ == 0 ? "" : priority_.c_str();
  }

  // Submit runs j on a worker and returns its status; timeout_ns > 0 withdraws j if no
  // worker started it within that time.
  int Submit(BgJob* j, int64_t timeout_ns) {
    std::unique_lock<std::mutex> lk(mu_);
    queue_.push_back(j);
    WakeOne();
    if (timeout_ns > 0) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(timeout_ns);
      if (!j->cv.wait_until(lk, until, [j] { return j->started; })) {
        queue_.erase(std::find(queue_.begin(), queue_.end(), j));
        return PD_ERR_DEADLINE;
      }
    }
    j->cv.wait(lk, [j] { return j->done; });
    return j->rc;
  }

 private:
  // A worker sleeps on its own condition variable, so that Submit can wake the one that
  // went idle last (LIFO): its caches, and its core's L3, still hold the model it scored
  // last. A FIFO wake-up (one condition variable for all) alternated two workers on two
  // vCPUs and made a 5,000-tree model's 1,000-row batch 36% slower than on the calling
  // thread (BenchmarkBackground); LIFO keeps consecutive batches on one worker.
  struct Worker {
    std::condition_variable cv;
    bool wake = false;
  };

  // WakeOne wakes the most recently idle worker, if any is idle (else a busy one takes
  // the job when it finishes its own). Called with mu_ held.
  void WakeOne() {
    if (idle_.empty()) return;
    Worker* w = idle_.back();
    idle_.pop_back();
    w->wake = true;
    w->cv.notify_one();
  }

  void Run() {
    const std::string prio = LowerPriority();
    Worker self;
    std::unique_lock<std::mutex> lk(mu_);
    if (ready_++ == 0) priority_ = prio;
    ready_cv_.notify_all();
    for (;;) {
      if (queue_.empty() || paused_) {
        idle_.push_back(&self);
        self.wake = false;
        self.cv.wait(lk, [&] { return self.wake; });
        continue;
      }
      BgJob* j = queue_.front();
      queue_.pop_front();
      j->started = true;
      j->cv.notify_one();
      lk.unlock();
      const int64_t t0 = ThreadCPUNanos();
      const int rc = j->f32 ? pd_predict_f32(j->e, j->kernel, static_cast<const float*>(j->rows), j->nrows, j->ncols,
                                             j->out, j->out_len, j->err, j->err_len)
                            : pd_predict_f64(j->e, j->kernel, static_cast<const double*>(j->rows), j->nrows, j->ncols,
                                             j->out, j->out_len, j->err, j->err_len);
      const int64_t cpu = ThreadCPUNanos() - t0;
      lk.lock();
      // The caller owns j: it may return (and j go out of scope) as soon as the lock is
      // released, so j is not touched after that.
      j->rc = rc;
      j->cpu_ns = cpu;
      j->done = true;
      j->cv.notify_one();
    }
  }

  // LowerPriority moves the calling thread to nice 19, or failing that to SCHED_IDLE, and
  // says which (neither needs a privilege on Linux, but a seccomp profile may forbid them).
  // nice 19 first: measured on a 2-vCPU VM (Linux 6.18, EEVDF), a busy nice-19 thread
  // left a latency-bound neighbour's p99 as it was alone (1.06 ms against 0.93-1.09), a busy
  // SCHED_IDLE one doubled it (1.9-2.7 ms), likely because the kernel counts a CPU that runs
  // only SCHED_IDLE work as idle when it places a waking thread. The share is nearly the
  // same (weight 15 against 1024 for nice 0; SCHED_IDLE 3).
  static std::string LowerPriority() {
#ifdef __linux__
    const long tid = syscall(SYS_gettid);
    if (setpriority(PRIO_PROCESS, id_t(tid), 19) == 0) {
      // The shortest time slice the kernel grants (0.1 ms; a custom slice, Linux 6.12+):
      // EEVDF lets the running thread finish its slice before a woken one of the same class
      // takes the core (RUN_TO_PARITY), whatever their nice values, and the default slice
      // is 0.75 ms x (1 + log2 CPUs). Older kernels ignore sched_runtime for SCHED_OTHER.
      struct {
        uint32_t size, sched_policy;
        uint64_t sched_flags;
        int32_t sched_nice;
        uint32_t sched_priority;
        uint64_t sched_runtime, sched_deadline, sched_period;
      } attr{};
      attr.size = sizeof attr;
      attr.sched_policy = SCHED_OTHER;
      attr.sched_nice = 19;
      attr.sched_runtime = 100000;  // ns
#if defined(SYS_sched_setattr) && defined(SYS_sched_getattr)
      // Read back: a kernel without custom slices accepts the call and ignores the field.
      if (syscall(SYS_sched_setattr, 0, &attr, 0) == 0) {
        decltype(attr) got{};
        if (syscall(SYS_sched_getattr, 0, &got, sizeof got, 0) == 0 && got.sched_runtime == attr.sched_runtime)
          return "nice 19, 0.1 ms slice";
      }
#endif
      return "nice 19";
    }
    const int nice_errno = errno;
    sched_param sp{};
    sp.sched_priority = 0;
    const int rc = pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
    if (rc == 0) return "SCHED_IDLE";
    return "normal (nice 19 refused: error " + std::to_string(nice_errno) + "; SCHED_IDLE: error " + std::to_string(rc) + ")";
#else
    return "normal (no idle class on this OS)";
#endif
  }

  std::mutex mu_;
  std::condition_variable ready_cv_;
  std::deque<BgJob*> queue_;
  std::vector<Worker*> idle_;  // idle workers, the most recently idle last
  int threads_ = 0, ready_ = 0;
  std::atomic<int> started_{0};  // threads_ once every worker is ready
  bool paused_ = false;
  std::string priority_;
};

// Never destroyed: the workers live as long as the process (a static Pool's destructor
// would run while detached workers still use it).
Pool* ThePool() {
  static Pool* p = new Pool();
  return p;
}

template <class T>
int Background(const pd_ensemble* e, int kernel, const T* rows, size_t nrows, size_t ncols, double* out,
               size_t out_len, int64_t timeout_ns, int64_t* cpu_ns, char* err, size_t err_len) {
  if (cpu_ns != nullptr) *cpu_ns = 0;
  try {
    if (nrows == 0 || e == nullptr) {  // nothing to hand over: the checks answer at once
      return pd_predict_f64(e, kernel, nullptr, nrows, ncols, out, out_len, err, err_len);
    }
    Pool* p = ThePool();
    p->Start(int(std::max(1u, std::thread::hardware_concurrency())));
    BgJob j;
    j.e = e;
    j.kernel = kernel;
    j.f32 = sizeof(T) == sizeof(float);
    j.rows = rows;
    j.nrows = nrows;
    j.ncols = ncols;
    j.out = out;
    j.out_len = out_len;
    j.err = err;
    j.err_len = err_len;
    const int rc = p->Submit(&j, timeout_ns);
    if (rc == PD_ERR_DEADLINE) {
      if (err != nullptr && err_len > 0)
        std::snprintf(err, err_len, "no background thread started the batch within %.3f ms (normal-priority work kept every core busy)",
                      double(timeout_ns) / 1e6);
      return rc;
    }
    if (cpu_ns != nullptr) *cpu_ns = j.cpu_ns;
    return rc;
  } catch (const std::bad_alloc&) {
    if (err != nullptr && err_len > 0) std::snprintf(err, err_len, "background predict: out of memory");
    return PD_ERR_NO_MEMORY;
  } catch (...) {
    if (err != nullptr && err_len > 0) std::snprintf(err, err_len, "background predict: internal error");
    return PD_ERR_INTERNAL;
  }
}

}  // namespace

extern "C" {

int pd_background_start(int threads) {
  try {
    return ThePool()->Start(threads);
  } catch (...) {
    return 0;
  }
}

const char* pd_background_priority(void) { return ThePool()->Priority(); }

void pd_background_pause(int paused) { ThePool()->Pause(paused != 0); }

int pd_predict_f64_background(const pd_ensemble* e, int kernel, const double* rows, size_t nrows, size_t ncols,
                              double* out, size_t out_len, int64_t timeout_ns, int64_t* cpu_ns, char* err,
                              size_t err_len) {
  return Background<double>(e, kernel, rows, nrows, ncols, out, out_len, timeout_ns, cpu_ns, err, err_len);
}

int pd_predict_f32_background(const pd_ensemble* e, int kernel, const float* rows, size_t nrows, size_t ncols,
                              double* out, size_t out_len, int64_t timeout_ns, int64_t* cpu_ns, char* err,
                              size_t err_len) {
  return Background<float>(e, kernel, rows, nrows, ncols, out, out_len, timeout_ns, cpu_ns, err, err_len);
}

}  // extern "C"
