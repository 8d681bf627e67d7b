#pragma once
#include <cstddef>

namespace bench {
// h_t = a_t h_{t-1} + b_t over C channels, (L, C) row-major, states to out.
void scalar_recurrence(const float* a, const float* b, float* h, float* out, std::size_t L,
                       std::size_t C);
}  // namespace bench
