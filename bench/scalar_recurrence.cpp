// The plain scalar loop the SIMD core is measured against, in its own
// translation unit built with -fno-tree-vectorize (bench/CMakeLists.txt), so
// the compiler cannot vectorize it behind our back.
#include "scalar_recurrence.hpp"

namespace bench {

void scalar_recurrence(const float* a, const float* b, float* h, float* out, std::size_t L,
                       std::size_t C) {
  for (std::size_t t = 0; t < L; ++t)
    for (std::size_t c = 0; c < C; ++c) out[t * C + c] = h[c] = a[t * C + c] * h[c] + b[t * C + c];
}

}  // namespace bench
