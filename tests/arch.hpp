// The SIMD instruction sets a test runs its kernels on.
#pragma once

#include <xsimd/xsimd.hpp>

#include <type_traits>

namespace test {

// Calls f(Arch{}) for the widest arch compiled in and for AVX2 and SSE2
// where compiled in and available: the three batch widths of x86 (16, 8 and
// 4 floats, with 32, 16 and 16 registers), without instantiating all
// fourteen of xsimd's archs (which costs minutes of compile time).
template <class F>
void for_each_width(F&& f) {
  auto one = [&](auto arch) {
    using Arch = decltype(arch);
    if constexpr (Arch::supported())
      if (Arch::version() <= xsimd::available_architectures().best) f(arch);
  };
  one(xsimd::default_arch{});
  if constexpr (!std::is_same<xsimd::default_arch, xsimd::fma3<xsimd::avx2>>::value)
    one(xsimd::fma3<xsimd::avx2>{});
  if constexpr (!std::is_same<xsimd::default_arch, xsimd::sse2>::value) one(xsimd::sse2{});
}

}  // namespace test
