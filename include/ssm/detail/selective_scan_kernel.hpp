// The SIMD kernel of the selective scan: W channels (one xsimd batch) of one
// sequence at a time, their N states in registers for the whole sequence,
// vectorized across channels so the readout sum over n needs no horizontal
// reduction. The cost is one exponential per state update, so the kernel
// computes e^{Delta A} as 2^{Delta (A log2 e)} with log2(e) folded into A.
#pragma once

#include <ssm/detail/exp.hpp>
#include <ssm/detail/recurrence.hpp>  // static_for, SSM_ALWAYS_INLINE

#include <xsimd/xsimd.hpp>

#include <cmath>
#include <cstddef>

namespace ssm::detail {

// One block of channels of one sequence; every pointer at the block's first
// channel, time strides in elements.
struct SelectiveBlock {
  std::size_t L = 0, N = 0;
  const float* u = nullptr;
  std::ptrdiff_t u_ts = 0;
  const float* delta = nullptr;
  std::ptrdiff_t delta_ts = 0;
  const float* B = nullptr;  // B_t[n] at B[t * B_ts + n]
  std::ptrdiff_t B_ts = 0;
  const float* C = nullptr;
  std::ptrdiff_t C_ts = 0;
  const float* z = nullptr;  // optional gate
  std::ptrdiff_t z_ts = 0;
  const float* A2 = nullptr;      // (N, width): A[d, n] log2(e), packed
  const float* D_skip = nullptr;  // optional, width values
  const float* bias = nullptr;    // optional, width values
  bool softplus = false;
  float* state = nullptr;  // (N, width), packed: initial state in, final out
  float* y = nullptr;
  std::ptrdiff_t y_ts = 0;
};

// log1p(e) for e in [0, 1]: 2 atanh(s) with s = e / (2 + e) in [0, 1/3],
// its odd series to s^13 (remainder below 1e-8).
template <class batch>
SSM_ALWAYS_INLINE batch log1p_unit(const batch& e) {
  const batch s = e / (batch(2.f) + e), w = s * s;
  batch p = xsimd::fma(batch(1.f / 13), w, batch(1.f / 11));
  p = xsimd::fma(p, w, batch(1.f / 9));
  p = xsimd::fma(p, w, batch(1.f / 7));
  p = xsimd::fma(p, w, batch(1.f / 5));
  p = xsimd::fma(p, w, batch(1.f / 3));
  p = xsimd::fma(p, w, batch(1.f));
  return (s + s) * p;
}

// log2(e): e^x = 2^(x log2 e). The double for sums that must not round at
// each step (the Mamba-2 kernel's log2 of its scale).
constexpr double log2e_double = 1.44269504088896340736;
constexpr float log2e = float(log2e_double);

// e^{-|x|} in (0, 1], through the non-positive exponential
template <class Arch>
SSM_ALWAYS_INLINE xsimd::batch<float, Arch> exp_minus_abs(const xsimd::batch<float, Arch>& x) {
  return exp2_nonpositive<Arch>(xsimd::abs(x) * xsimd::batch<float, Arch>(-log2e));
}

// softplus(x) = log1p(e^x) = max(x, 0) + log1p(e^{-|x|}): the same function
// as PyTorch's softplus (which returns x itself above 20, 2e-9 away). x86's
// max returns its second operand when either is NaN: x second keeps NaN.
template <class Arch>
SSM_ALWAYS_INLINE xsimd::batch<float, Arch> softplus(const xsimd::batch<float, Arch>& x) {
  using batch = xsimd::batch<float, Arch>;
  return xsimd::max(batch(0.f), x) + log1p_unit(exp_minus_abs<Arch>(x));
}
inline float softplus(float x) { return x > 20.f ? x : std::log1p(std::exp(x)); }

// silu(x) = x sigmoid(x), sigmoid(x) = 1 / (1 + e^{-x}) = e^x / (1 + e^x)
// for x < 0: either way through e^{-|x|} <= 1, which cannot overflow.
template <class Arch>
SSM_ALWAYS_INLINE xsimd::batch<float, Arch> silu(const xsimd::batch<float, Arch>& x) {
  using batch = xsimd::batch<float, Arch>;
  const batch e = exp_minus_abs<Arch>(x);
  return x * xsimd::select(x >= batch(0.f), batch(1.f), e) / (batch(1.f) + e);
}
inline float silu(float x) { return x / (1.f + std::exp(-x)); }

// States [n0, n0 + NB) of a W-channel block over all L steps. first: y gets
// this pass's sums (else they are added to y); last: the D skip and gate
// are applied. FastExp: every Delta A <= 0, so exp2_nonpositive applies.
template <class Arch, std::size_t NB, bool FastExp>
void selective_block(const SelectiveBlock& k, std::size_t n0, bool first, bool last) {
  using batch = xsimd::batch<float, Arch>;
  constexpr std::size_t W = batch::size;
  batch h[NB];
  static_for<NB>([&](auto n) { h[n] = batch::load_unaligned(k.state + (n0 + n) * W); });
  const float* A2 = k.A2 + n0 * W;
  const batch bias = k.bias ? batch::load_unaligned(k.bias) : batch(0.f);
  const batch D_skip = k.D_skip ? batch::load_unaligned(k.D_skip) : batch(0.f);
  const bool gate = last && k.z;
  // Delta and the gate of step t + 1 are computed during step t: their long
  // dependency chains (exp, division) then overlap the state updates.
  auto step_delta = [&](std::ptrdiff_t t) {
    const batch dt = batch::load_unaligned(k.delta + t * k.delta_ts) + bias;
    return k.softplus ? softplus<Arch>(dt) : dt;
  };
  auto step_gate = [&](std::ptrdiff_t t) {
    return gate ? silu<Arch>(batch::load_unaligned(k.z + t * k.z_ts)) : batch(1.f);
  };
  batch dt_next = k.L ? step_delta(0) : batch(0.f), gate_next = k.L ? step_gate(0) : batch(1.f);
  for (std::size_t i = 0; i < k.L; ++i) {
    const auto t = std::ptrdiff_t(i);
    const batch dt = dt_next, g = gate_next;
    if (i + 1 < k.L) {
      dt_next = step_delta(t + 1);
      gate_next = step_gate(t + 1);
    }
    const batch u = batch::load_unaligned(k.u + t * k.u_ts);
    const batch du = dt * u;
    const float* B = k.B + t * k.B_ts + n0;
    const float* C = k.C + t * k.C_ts + n0;
    // two partial sums halve the dependency chain of the readout
    batch acc[2] = {first ? batch(0.f) : batch::load_unaligned(k.y + t * k.y_ts), batch(0.f)};
    static_for<NB>([&](auto n) {
      const batch x = dt * batch::load_unaligned(A2 + n * W);
      const batch dA = FastExp ? exp2_nonpositive<Arch>(x) : xsimd::exp2(x);
      h[n] = xsimd::fma(dA, h[n], du * batch(B[n]));
      acc[n % 2] = xsimd::fma(h[n], batch(C[n]), acc[n % 2]);
    });
    batch y = acc[0] + acc[1];
    if (last && k.D_skip) y = xsimd::fma(D_skip, u, y);
    if (gate) y *= g;
    y.store_unaligned(k.y + t * k.y_ts);
  }
  static_for<NB>([&](auto n) { h[n].store_unaligned(k.state + (n0 + n) * W); });
}

// All N states of a W-channel block: passes of 16, 8, 4, 2 and 1 states,
// each unrolled with its states in registers (N = 16, Mamba's usual size,
// is one pass).
inline void selective_block_scalar(const SelectiveBlock& k, std::size_t width);

template <class Arch, bool FastExp>
void selective_block_all(const SelectiveBlock& k) {
  if (k.N == 0) {  // no states: y = D u, gated
    selective_block_scalar(k, xsimd::batch<float, Arch>::size);
    return;
  }
  std::size_t n0 = 0;
  auto passes = [&](auto nb) {
    constexpr std::size_t NB = decltype(nb)::value;
    for (; n0 + NB <= k.N; n0 += NB)
      selective_block<Arch, NB, FastExp>(k, n0, n0 == 0, n0 + NB == k.N);
  };
  passes(std::integral_constant<std::size_t, 16>{});
  passes(std::integral_constant<std::size_t, 8>{});
  passes(std::integral_constant<std::size_t, 4>{});
  passes(std::integral_constant<std::size_t, 2>{});
  passes(std::integral_constant<std::size_t, 1>{});
}

// The same computation one channel at a time, for blocks narrower than a
// batch (fewer channels, or groups narrower than the SIMD width).
inline void selective_block_scalar(const SelectiveBlock& k, std::size_t width) {
  for (std::size_t c = 0; c < width; ++c) {
    for (std::size_t i = 0; i < k.L; ++i) {
      const auto t = std::ptrdiff_t(i);
      float dt = k.delta[t * k.delta_ts + std::ptrdiff_t(c)] + (k.bias ? k.bias[c] : 0.f);
      if (k.softplus) dt = softplus(dt);
      const float u = k.u[t * k.u_ts + std::ptrdiff_t(c)];
      float y = 0;
      for (std::size_t n = 0; n < k.N; ++n) {
        float& h = k.state[n * width + c];
        h = std::exp2(dt * k.A2[n * width + c]) * h + dt * u * k.B[t * k.B_ts + std::ptrdiff_t(n)];
        y += h * k.C[t * k.C_ts + std::ptrdiff_t(n)];
      }
      if (k.D_skip) y += k.D_skip[c] * u;
      if (k.z) y *= silu(k.z[t * k.z_ts + std::ptrdiff_t(c)]);
      k.y[t * k.y_ts + std::ptrdiff_t(c)] = y;
    }
  }
}

}  // namespace ssm::detail
