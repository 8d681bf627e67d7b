// Causal convolution of many real channels at once through FFTs, lanes of a
// SIMD batch holding channels (written once against xsimd::batch):
//   y[t] = sum_{k <= t} K[k] u[t - k],  t < L,  per channel.
//
// Each real sequence of length n = 2m (a power of two >= 2L - 1) is packed as
// the m complex numbers z_j = x_2j + i x_2j+1, transformed by a radix-2
// complex FFT of size m, and split into the real spectrum by
//   X_k = E_k + w^k O_k,  E_k = (Z_k + conj Z_{m-k}) / 2,
//   O_k = (Z_k - conj Z_{m-k}) / 2i,  w = exp(-2 pi i / n)
// (the classic two-for-one real FFT). The forward transform is decimation in
// frequency (natural order in, bit-reversed out), the inverse decimation in
// time (bit-reversed in, natural out), so no permutation pass is needed: the
// products happen in bit-reversed order. Transforms larger than the cache
// recurse depth-first, so only their outer stages stream through memory.
//
// Layout: a block of W channels stores element j of lane c at [j * W + c],
// real and imaginary parts in separate arrays.
#pragma once

#include <xsimd/xsimd.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ssm::detail {

// Twiddles and orders for real sequences of length n = 2m.
template <class T>
struct RealFftPlan {
  std::size_t m = 1;
  std::vector<T> tw_re, tw_im;      // exp(-2 pi i j / m), j < m / 2
  std::vector<std::uint32_t> rev;   // bit-reversed position -> frequency
  std::vector<T> w_re, w_im;        // exp(-2 pi i k / n) at k = rev[p]

  // The plan for convolutions of length L >= 1: n >= max(4, 2L - 1).
  explicit RealFftPlan(std::size_t L) {
    std::size_t n = 4;
    while (n < 2 * L - 1) n *= 2;
    m = n / 2;
    const double pi = 3.14159265358979323846;
    for (std::size_t j = 0; j < m / 2; ++j) {
      tw_re.push_back(T(std::cos(2 * pi * double(j) / double(m))));
      tw_im.push_back(T(-std::sin(2 * pi * double(j) / double(m))));
    }
    std::size_t bits = 0;
    while ((std::size_t(1) << bits) < m) ++bits;
    rev.resize(m);
    w_re.resize(m);
    w_im.resize(m);
    for (std::size_t p = 0; p < m; ++p) {
      std::size_t k = 0;
      for (std::size_t b = 0; b < bits; ++b) k |= ((p >> b) & 1) << (bits - 1 - b);
      rev[p] = std::uint32_t(k);
      w_re[p] = T(std::cos(2 * pi * double(k) / double(n)));
      w_im[p] = T(-std::sin(2 * pi * double(k) / double(n)));
    }
  }
};

template <class Arch, class T>
struct Lanes {
  using batch = xsimd::batch<T, Arch>;
  static constexpr std::size_t W = batch::size;
  T* re;
  T* im;
  batch r(std::size_t j) const { return batch::load_aligned(re + j * W); }
  batch i(std::size_t j) const { return batch::load_aligned(im + j * W); }
  void put(std::size_t j, batch a, batch b) const {
    a.store_aligned(re + j * W);
    b.store_aligned(im + j * W);
  }
};

// The butterflies of one stage: blocks of 2h elements in [0, size).
// Forward (DIF): a, b -> a + b, (a - b) w^k. Inverse (DIT): a, b -> a + b w^-k, a - b w^-k.
template <bool Forward, class Arch, class T>
void fft_stage(const RealFftPlan<T>& plan, const Lanes<Arch, T>& x, std::size_t size,
               std::size_t h) {
  using batch = xsimd::batch<T, Arch>;
  const std::size_t step = plan.m / (2 * h);
  for (std::size_t j0 = 0; j0 < size; j0 += 2 * h)
    for (std::size_t k = 0; k < h; ++k) {
      const batch wr(plan.tw_re[k * step]), wi(Forward ? plan.tw_im[k * step] : -plan.tw_im[k * step]);
      const std::size_t a = j0 + k, b = a + h;
      const batch ar = x.r(a), ai = x.i(a), br = x.r(b), bi = x.i(b);
      if (Forward) {
        const batch dr = ar - br, di = ai - bi;
        x.put(a, ar + br, ai + bi);
        x.put(b, xsimd::fnma(di, wi, dr * wr), xsimd::fma(dr, wi, di * wr));
      } else {
        const batch tr = xsimd::fnma(bi, wi, br * wr), ti = xsimd::fma(br, wi, bi * wr);
        x.put(a, ar + tr, ai + ti);
        x.put(b, ar - tr, ai - ti);
      }
    }
}

// The complex FFT of `size` elements in place: DIF forward, DIT inverse,
// depth-first above 2^11 elements (2^11 x 64-byte batches fit L2).
template <bool Forward, class Arch, class T>
void fft(const RealFftPlan<T>& plan, const Lanes<Arch, T>& x, std::size_t size) {
  constexpr std::size_t in_cache = 2048;
  if (size <= in_cache) {
    if (Forward)
      for (std::size_t h = size / 2; h >= 1; h /= 2) fft_stage<true>(plan, x, size, h);
    else
      for (std::size_t h = 1; h < size; h *= 2) fft_stage<false>(plan, x, size, h);
    return;
  }
  const std::size_t half = size / 2;
  const Lanes<Arch, T> upper{x.re + half * x.W, x.im + half * x.W};
  if (Forward) fft_stage<true>(plan, x, size, half);
  fft<Forward>(plan, x, half);
  fft<Forward>(plan, upper, half);
  if (!Forward) fft_stage<false>(plan, x, size, half);
}

// Given the packed transforms Z of the input and Q of the kernel (bit-reversed
// order), overwrite Z with the packed transform of their product's inverse:
// X = split(Z), Kf = split(Q), Y = X Kf, then Z' = E' + i O' with
// E'_k = (Y_k + conj Y_{m-k}) / 2, O'_k = (Y_k - conj Y_{m-k}) / (2 w^k),
// scaled by 1/m for the unscaled inverse. Pairs (k, m-k) are done together.
template <class Arch, class T>
void multiply_spectra(const RealFftPlan<T>& plan, const Lanes<Arch, T>& Z, const Lanes<Arch, T>& Q) {
  using batch = xsimd::batch<T, Arch>;
  const std::size_t m = plan.m;
  const batch half(T(0.5)), scale(T(1) / T(m));
  // k = 0 holds X_0 = Re + Im and X_m = Re - Im, both real
  {
    const batch zr = Z.r(0), zi = Z.i(0), qr = Q.r(0), qi = Q.i(0);
    const batch y0 = (zr + zi) * (qr + qi), ym = (zr - zi) * (qr - qi);
    Z.put(0, half * (y0 + ym) * scale, half * (y0 - ym) * scale);
  }
  // position of frequency k in bit-reversed order: rev is an involution
  for (std::size_t p = 1; p < m; ++p) {
    const std::size_t k = plan.rev[p], k2 = m - k, q = plan.rev[k2];
    if (k > k2) continue;  // done with its partner
    const batch wr(plan.w_re[p]), wi(plan.w_im[p]);
    // split a packed pair into (X_k, X_{m-k}) = (E + w O, conj(E) + w' conj(O)),
    // w' = w^{m-k} = -conj(w)
    auto split = [&](const Lanes<Arch, T>& S, batch& xr, batch& xi, batch& x2r, batch& x2i) {
      const batch ar = S.r(p), ai = S.i(p), br = S.r(q), bi = S.i(q);
      const batch er = half * (ar + br), ei = half * (ai - bi);  // (Z_k + conj Z_k2) / 2
      const batch orr = half * (ai + bi), oi = half * (br - ar);  // (Z_k - conj Z_k2) / 2i
      const batch wor = xsimd::fnma(wi, oi, wr * orr), woi = xsimd::fma(wr, oi, wi * orr);
      xr = er + wor;
      xi = ei + woi;
      // conj(E) - conj(w) conj(O) = conj(E - w O)
      x2r = er - wor;
      x2i = woi - ei;
    };
    batch xr, xi, x2r, x2i, kr, ki, k2r, k2i;
    split(Z, xr, xi, x2r, x2i);
    split(Q, kr, ki, k2r, k2i);
    const batch yr = xsimd::fnma(xi, ki, xr * kr), yi = xsimd::fma(xr, ki, xi * kr);
    const batch y2r = xsimd::fnma(x2i, k2i, x2r * k2r), y2i = xsimd::fma(x2r, k2i, x2i * k2r);
    // E' = (Y_k + conj Y_k2) / 2, O' = (Y_k - conj Y_k2) / (2 w), 1 / w = conj w
    const batch er = half * (yr + y2r), ei = half * (yi - y2i);
    const batch dr = half * (yr - y2r), di = half * (yi + y2i);
    const batch orr = xsimd::fma(di, wi, dr * wr), oi = xsimd::fnma(dr, wi, di * wr);
    // Z'_k = E' + i O', Z'_k2 = conj(E') + i conj(O')
    Z.put(p, (er - oi) * scale, (ei + orr) * scale);
    if (q != p) Z.put(q, (er + oi) * scale, (orr - ei) * scale);
  }
}

}  // namespace ssm::detail
