// OpenMP helpers that compile to the serial answer without OpenMP.
#pragma once

#ifdef _OPENMP
#include <omp.h>
#endif

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

}  // namespace ssm::detail
