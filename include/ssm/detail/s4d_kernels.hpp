// SIMD kernels of a diagonal SSM with many channels (the S4D layer), written
// once against xsimd::batch: lanes hold channels, so a block of W channels
// updates together and the readout sum over states needs no horizontal add.
//
// Layout: in a block, the value for state n of lane j sits at [n * W + j]
// (real and imaginary parts in separate arrays); sequences of the block are
// time-major, step t at [t * W + j].
#pragma once

#include <xsimd/xsimd.hpp>

#include <array>
#include <complex>
#include <cstddef>
#include <vector>

namespace ssm::detail {

// The discretized parameters of all channels, in blocks of W lanes; channels
// past the last one are zero (they stay zero and are never read back).
//   a = dA;  b = dB (recurrence) or 2 C dB (kernel);  c = 2 C (recurrence).
template <class T>
struct PackedModes {
  std::size_t N = 0, W = 1, blocks = 0;
  std::vector<T> ar, ai, br, bi, cr, ci;

  PackedModes(std::size_t channels, std::size_t N_, std::size_t W_)
      : N(N_), W(W_), blocks((channels + W_ - 1) / W_) {
    for (auto* v : {&ar, &ai, &br, &bi, &cr, &ci}) v->assign(blocks * N * W, T(0));
  }
  std::size_t offset(std::size_t block) const { return block * N * W; }
  // Writes value v for (channel h, state n).
  static void put(std::vector<T>& re, std::vector<T>& im, std::size_t at, std::complex<T> v) {
    re[at] = v.real();
    im[at] = v.imag();
  }
  std::size_t index(std::size_t h, std::size_t n) const {
    return offset(h / W) + n * W + h % W;
  }
};

// G states of one block over `steps` steps, their state in registers:
//   x_n <- a_n x_n + b_n u_t,   y_t += sum_n Re(c_n x_n).
// a, b, c, x point at state n0 of the block; u, y at step 0 of the block.
template <std::size_t G, class Arch, class T>
void scan_states(const T* ar, const T* ai, const T* br, const T* bi, const T* cr,
                 const T* ci, T* xr, T* xi, const T* u, T* y, std::size_t steps) {
  using batch = xsimd::batch<T, Arch>;
  constexpr std::size_t W = batch::size;
  std::array<batch, G> a_r, a_i, b_r, b_i, c_r, c_i, x_r, x_i;
  for (std::size_t g = 0; g < G; ++g) {
    a_r[g] = batch::load_unaligned(ar + g * W);
    a_i[g] = batch::load_unaligned(ai + g * W);
    b_r[g] = batch::load_unaligned(br + g * W);
    b_i[g] = batch::load_unaligned(bi + g * W);
    c_r[g] = batch::load_unaligned(cr + g * W);
    c_i[g] = batch::load_unaligned(ci + g * W);
    x_r[g] = batch::load_unaligned(xr + g * W);
    x_i[g] = batch::load_unaligned(xi + g * W);
  }
  for (std::size_t t = 0; t < steps; ++t) {
    const batch ut = batch::load_unaligned(u + t * W);
    batch acc = batch::load_unaligned(y + t * W);
    for (std::size_t g = 0; g < G; ++g) {
      // (a_r + i a_i)(x_r + i x_i) + (b_r + i b_i) u: the products with u
      // do not depend on x, so the chain from step to step is two FMAs
      const batch re = xsimd::fnma(a_i[g], x_i[g], xsimd::fma(a_r[g], x_r[g], b_r[g] * ut));
      const batch im = xsimd::fma(a_i[g], x_r[g], xsimd::fma(a_r[g], x_i[g], b_i[g] * ut));
      x_r[g] = re;
      x_i[g] = im;
      acc = xsimd::fnma(c_i[g], im, xsimd::fma(c_r[g], re, acc));
    }
    acc.store_unaligned(y + t * W);
  }
  for (std::size_t g = 0; g < G; ++g) {
    x_r[g].store_unaligned(xr + g * W);
    x_i[g].store_unaligned(xi + g * W);
  }
}

// All N states of block `block` over `steps` steps (see scan_states); y holds
// D u_t on entry and the outputs on return; x is the block's state (N x W).
template <class Arch, class T>
void scan_block(const PackedModes<T>& p, std::size_t block, T* xr, T* xi, const T* u,
                T* y, std::size_t steps) {
  // 4 states: 8 state registers + 24 parameters fit AVX-512's 32 registers
  constexpr std::size_t G = 4;
  const std::size_t W = p.W, o = p.offset(block);
  std::size_t n = 0;
  for (; n + G <= p.N; n += G)
    scan_states<G, Arch>(&p.ar[o + n * W], &p.ai[o + n * W], &p.br[o + n * W],
                         &p.bi[o + n * W], &p.cr[o + n * W], &p.ci[o + n * W], xr + n * W,
                         xi + n * W, u, y, steps);
  for (; n < p.N; ++n)
    scan_states<1, Arch>(&p.ar[o + n * W], &p.ai[o + n * W], &p.br[o + n * W],
                         &p.bi[o + n * W], &p.cr[o + n * W], &p.ci[o + n * W], xr + n * W,
                         xi + n * W, u, y, steps);
}

// Vandermonde products of G states: K_l += sum_n Re(p_n z_n^l), l < steps,
// with p advanced to p z^steps on return.
template <std::size_t G, class Arch, class T>
void vandermonde_states(const T* zr, const T* zi, T* pr, T* pi, T* K, std::size_t steps) {
  using batch = xsimd::batch<T, Arch>;
  constexpr std::size_t W = batch::size;
  std::array<batch, G> z_r, z_i, p_r, p_i;
  for (std::size_t g = 0; g < G; ++g) {
    z_r[g] = batch::load_unaligned(zr + g * W);
    z_i[g] = batch::load_unaligned(zi + g * W);
    p_r[g] = batch::load_unaligned(pr + g * W);
    p_i[g] = batch::load_unaligned(pi + g * W);
  }
  for (std::size_t t = 0; t < steps; ++t) {
    batch acc = batch::load_unaligned(K + t * W);
    for (std::size_t g = 0; g < G; ++g) {
      acc += p_r[g];
      const batch re = xsimd::fnma(z_i[g], p_i[g], z_r[g] * p_r[g]);
      p_i[g] = xsimd::fma(z_i[g], p_r[g], z_r[g] * p_i[g]);
      p_r[g] = re;
    }
    acc.store_unaligned(K + t * W);
  }
  for (std::size_t g = 0; g < G; ++g) {
    p_r[g].store_unaligned(pr + g * W);
    p_i[g].store_unaligned(pi + g * W);
  }
}

// K_l for l < steps of one block (K: steps x W, zero on entry), from the
// starting values p = w z^{l0} (N x W, advanced in place).
template <class Arch, class T>
void vandermonde_block(const PackedModes<T>& p, std::size_t block, T* pr, T* pi, T* K,
                       std::size_t steps) {
  constexpr std::size_t G = 4;
  const std::size_t W = p.W, o = p.offset(block);
  std::size_t n = 0;
  for (; n + G <= p.N; n += G)
    vandermonde_states<G, Arch>(&p.ar[o + n * W], &p.ai[o + n * W], pr + n * W, pi + n * W,
                                K, steps);
  for (; n < p.N; ++n)
    vandermonde_states<1, Arch>(&p.ar[o + n * W], &p.ai[o + n * W], pr + n * W, pi + n * W,
                                K, steps);
}

}  // namespace ssm::detail
