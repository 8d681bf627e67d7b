// OpenMP helpers that compile to the serial answer without OpenMP.
#pragma once

#ifdef _OPENMP
#include <omp.h>
#endif

#include <atomic>
#include <exception>

// SSM_OMP(parallel for ...) is `#pragma omp parallel for ...` with OpenMP and
// nothing without, so that a build without it gets no -Wunknown-pragmas
// from these headers.
#ifdef _OPENMP
#define SSM_OMP_STRING(...) #__VA_ARGS__
#define SSM_OMP(...) _Pragma(SSM_OMP_STRING(omp __VA_ARGS__))
#else
#define SSM_OMP(...)
#endif

namespace ssm::detail {

// Threads to use when the caller asked for `requested` (<= 0: OpenMP's
// current maximum). Always 1 inside an enclosing parallel region, so
// library calls made from the caller's own threads do not oversubscribe.
inline int resolve_threads(int requested) {
#ifdef _OPENMP
  if (omp_in_parallel()) return 1;
  return requested > 0 ? requested : omp_get_max_threads();
#else
  (void)requested;
  return 1;
#endif
}

inline int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

inline int team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// An exception may not leave a parallel region's structured block (the
// OpenMP standard; the program terminates), so work that may throw inside
// one (allocations, Eigen temporaries) runs through run(), and rethrow()
// after the region throws the first exception to the caller. Once one is kept,
// later run() calls on every thread skip their work. run() wraps the work
// between barriers and worksharing constructs, never one of them: every
// thread must still reach each.
class ParallelErrors {
 public:
  template <class F>
  void run(F&& f) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      f();
    } catch (...) {
      // only the first thread to fail writes first_
      if (!failed_.exchange(true)) first_ = std::current_exception();
    }
  }

  // After the region, whose closing barrier orders first_'s write before this read.
  void rethrow() const {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::exception_ptr first_;
};

}  // namespace ssm::detail
