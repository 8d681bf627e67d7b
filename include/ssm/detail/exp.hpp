// A vectorized 2^x for the non-positive arguments of a selective scan
// (Delta * A * log2(e) with Delta >= 0 and A < 0): no overflow, NaN or
// infinity handling, which is what makes it cheaper than xsimd::exp. The
// scan folds log2(e) into A once, so e^{Delta A} costs one multiply less.
#pragma once

#include <ssm/detail/recurrence.hpp>  // SSM_ALWAYS_INLINE

#include <xsimd/xsimd.hpp>

#include <cstdint>
#include <type_traits>

namespace ssm::detail {

// Below this argument the result is 2^-125 (bit-trick path) or 0 and the
// subnormals (AVX-512 path): an absolute error under 2.4e-38 either way.
constexpr float exp2_nonpositive_floor = -125.0f;

// 2^r for r in [-1/2, 1/2], degree 6, coefficients from scripts/fit_exp_poly.py
template <class batch>
SSM_ALWAYS_INLINE batch exp2_reduced(const batch& r) {
  batch p = xsimd::fma(batch(1.537070493e-04f), r, batch(1.339984825e-03f));
  p = xsimd::fma(p, r, batch(9.618373588e-03f));
  p = xsimd::fma(p, r, batch(5.550329015e-02f));
  p = xsimd::fma(p, r, batch(2.402264774e-01f));
  p = xsimd::fma(p, r, batch(6.931471825e-01f));
  return xsimd::fma(p, r, batch(1.0f));
}

// 2^x for float x <= 0 (x > 0 is not supported: the result is wrong).
// x = k + r with k = round(x) and |r| <= 1/2, both exact; 2^r by a
// polynomial; then 2^k applied by AVX-512's vscalefps where there is one
// (10 operations), else added to the exponent bits (12 operations).
// Relative error <= 1.1e-7 for x in [-125, 0]: 8.0e-8 measured with
// hardware FMA, 1.04e-7 without (tests/test_selective_scan.cpp checks). NaN gives 2^-125
// or 0: callers keep NaN out of x (the selective scan checks A).
template <class Arch>
SSM_ALWAYS_INLINE xsimd::batch<float, Arch> exp2_nonpositive(xsimd::batch<float, Arch> x) {
  using batch = xsimd::batch<float, Arch>;
#if defined(__AVX512F__)
  if constexpr (std::is_base_of<xsimd::avx512f, Arch>::value) {
    x = xsimd::max(x, batch(-200.0f));  // keeps -inf out of x - round(x)
    const batch k = xsimd::nearbyint(x);
    return batch(_mm512_scalef_ps(exp2_reduced(x - k), k));
  } else
#endif
  {
    using ibatch = xsimd::batch<std::int32_t, Arch>;
    // Adding 1.5 * 2^23 rounds x to the integer k held in the low mantissa
    // bits of t; shifting t's bits left by 23 leaves k << 23, k's exponent.
    const batch shifter(12582912.0f);
    x = xsimd::max(x, batch(exp2_nonpositive_floor));
    const batch t = x + shifter;
    const batch p = exp2_reduced(x - (t - shifter));
    const ibatch scale = xsimd::bitwise_cast<ibatch>(t) << 23;
    return xsimd::bitwise_cast<batch>(xsimd::bitwise_cast<ibatch>(p) + scale);
  }
}

}  // namespace ssm::detail
