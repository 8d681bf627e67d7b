// The plain scalar selective scan the SIMD kernel is measured against, built
// with -fno-tree-vectorize (bench/CMakeLists.txt): one std::exp per update.
#include "scalar_selective_scan.hpp"

#include <cmath>

namespace bench {

void scalar_selective_scan(const float* u, const float* delta, const float* A, const float* B,
                           const float* C, float* state, float* y, std::size_t L, std::size_t D,
                           std::size_t N) {
  for (std::size_t t = 0; t < L; ++t)
    for (std::size_t d = 0; d < D; ++d) {
      const float dt = delta[t * D + d], du = dt * u[t * D + d];
      float acc = 0;
      for (std::size_t n = 0; n < N; ++n) {
        float& h = state[d * N + n];
        h = std::exp(dt * A[d * N + n]) * h + du * B[t * N + n];
        acc += h * C[t * N + n];
      }
      y[t * D + d] = acc;
    }
}

}  // namespace bench
