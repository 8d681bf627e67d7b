#pragma once
#include <cstddef>

namespace bench {
// selective_scan_ref as a plain float loop (one sequence, no options):
// u, delta, y (L, D); A (D, N); B, C (L, N); state (D, N), zero on entry.
void scalar_selective_scan(const float* u, const float* delta, const float* A, const float* B,
                           const float* C, float* state, float* y, std::size_t L, std::size_t D,
                           std::size_t N);
}  // namespace bench
