// Vectors on cache lines. A large std::vector's data lies 16 bytes past a
// line, so a 64-byte batch loaded from it spans two lines. On lines, the
// SSD kernel with its scratch ran up to 1.15x as fast, and the scan core on
// rows of one batch 1.07x (1.2x where only the output had been off a line)
// (bench/LOG.md, "Cache-line-aligned scratch" and scan core "Stop 45").
#pragma once

#include <xsimd/xsimd.hpp>

#include <cstddef>
#include <vector>

namespace ssm::detail {

constexpr std::size_t cache_line_bytes = 64;

template <class T>
using line_vector = std::vector<T, xsimd::aligned_allocator<T, cache_line_bytes>>;

}  // namespace ssm::detail
