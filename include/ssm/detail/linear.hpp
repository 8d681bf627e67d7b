// Dense layers y = x W^T (+ b) with W stored row-major (out x in), as
// checkpoints store it: a batched matrix-vector kernel for decoding (a few
// rows of x: bound by reading W once), Eigen's GEMM for prompts.
#pragma once

#include <ssm/detail/omp.hpp>
#include <ssm/detail/recurrence.hpp>  // SSM_ALWAYS_INLINE, static_for

#include <Eigen/Core>
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cstddef>

namespace ssm::detail {

using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Up to 4 input rows at once, R rows of W at a time: every W element is read
// once for all of them. Each output is the same sum in the same order
// whatever the number of inputs, so a batched decode step gives bitwise the
// results of decoding each sequence alone (where the arch's fma is one
// instruction: an emulated a * b + c may be contracted in one instantiation
// and not in another).
//
// Reading W is the whole cost. A row of a checkpoint's matrix is a few KiB,
// and the hardware prefetchers stop at every 4 KiB page, so the kernel
// reads 8 rows side by side (as many as the registers allow: 8 streams)
// and asks for the next 8 rows' lines as it goes (one group ahead):
// 27 -> 38 GB/s on one Zen 5 core for a 3352 x 768 matrix, the in_proj of
// a 130M model (bench/RESULTS.md).
template <class Arch, std::size_t NX>
void matvec_rows(const float* W, std::size_t in, std::size_t r0, std::size_t r1,
                 const float* const* x, float* const* y) {
  using batch = xsimd::batch<float, Arch>;
  constexpr std::size_t W_ = batch::size;
  // accumulators R x NX, within half the vector registers (32 with 64-byte
  // batches, else 16)
  constexpr std::size_t R = NX * 8 <= (W_ * sizeof(float) >= 64 ? 16 : 8) ? 8 : 4;
  std::size_t r = r0;
  for (; r + R <= r1; r += R) {
    batch acc[R][NX];
    static_for<R>([&](auto i) { static_for<NX>([&](auto j) { acc[i][j] = batch(0.f); }); });
    const float* next = W + std::min(r + R, r1 - R) * in;  // the next group (the last: itself)
    std::size_t c = 0;
    for (; c + W_ <= in; c += W_) {
      batch xv[NX];
      static_for<NX>([&](auto j) { xv[j] = batch::load_unaligned(x[j] + c); });
      static_for<R>([&](auto i) {
        prefetch(next + i * in + c);
        const batch w = batch::load_unaligned(W + (r + i) * in + c);
        static_for<NX>([&](auto j) { acc[i][j] = xsimd::fma(w, xv[j], acc[i][j]); });
      });
    }
    static_for<R>([&](auto i) {
      static_for<NX>([&](auto j) {
        float s = xsimd::hadd(acc[i][j]);
        for (std::size_t k = c; k < in; ++k) s += W[(r + i) * in + k] * x[j][k];
        y[j][r + i] = s;
      });
    });
  }
  for (; r < r1; ++r) {  // the last rows, one at a time, summed the same way
    batch acc[NX];
    static_for<NX>([&](auto j) { acc[j] = batch(0.f); });
    std::size_t c = 0;
    for (; c + W_ <= in; c += W_) {
      const batch w = batch::load_unaligned(W + r * in + c);
      static_for<NX>([&](auto j) { acc[j] = xsimd::fma(w, batch::load_unaligned(x[j] + c), acc[j]); });
    }
    static_for<NX>([&](auto j) {
      float s = xsimd::hadd(acc[j]);
      for (std::size_t k = c; k < in; ++k) s += W[r * in + k] * x[j][k];
      y[j][r] = s;
    });
  }
}

template <class Arch = xsimd::default_arch>
void add_bias(const float* bias, std::size_t out, std::size_t n, float* Y, std::ptrdiff_t ldy) {
  if (!bias) return;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t o = 0; o < out; ++o) Y[std::ptrdiff_t(i) * ldy + std::ptrdiff_t(o)] += bias[o];
}

// Y (n x out) = X (n x in) W^T + bias, rows of X and Y `ldx`, `ldy` apart,
// by the matrix-vector kernel, 4 rows of X per pass over W, threads over W's
// rows: the decoding form, bound by reading W.
template <class Arch = xsimd::default_arch>
void matvec(const RowMatrixXf& W, const float* bias, const float* X, std::ptrdiff_t ldx,
            std::size_t n, float* Y, std::ptrdiff_t ldy, int threads) {
  const std::size_t out = std::size_t(W.rows()), in = std::size_t(W.cols());
  if (n == 0 || out == 0) return;
  [[maybe_unused]] const int nt = out * in >= (std::size_t(1) << 16) ? resolve_threads(threads) : 1;
  SSM_OMP(parallel num_threads(nt) if (nt > 1))
  {
    const std::size_t j = std::size_t(thread_index()), m = std::size_t(team_size());
    // rows split in multiples of 8: whole groups of the kernel for each
    // thread (which thread computes a row changes no bit of it)
    const std::size_t groups = (out + 7) / 8;
    const std::size_t r0 = std::min(out, groups * j / m * 8), r1 = std::min(out, groups * (j + 1) / m * 8);
    for (std::size_t i = 0; i < n; i += 4) {
      const float* xs[4];
      float* ys[4];
      const std::size_t k = std::min<std::size_t>(4, n - i);
      for (std::size_t q = 0; q < k; ++q) {
        xs[q] = X + std::ptrdiff_t(i + q) * ldx;
        ys[q] = Y + std::ptrdiff_t(i + q) * ldy;
      }
      switch (k) {
        case 1: matvec_rows<Arch, 1>(W.data(), in, r0, r1, xs, ys); break;
        case 2: matvec_rows<Arch, 2>(W.data(), in, r0, r1, xs, ys); break;
        case 3: matvec_rows<Arch, 3>(W.data(), in, r0, r1, xs, ys); break;
        default: matvec_rows<Arch, 4>(W.data(), in, r0, r1, xs, ys); break;
      }
    }
  }
  add_bias(bias, out, n, Y, ldy);
}

// The same product for any number of rows: matvec() for a few (decoding a
// token of a few sequences), Eigen's GEMM, threaded by Eigen, for a prompt.
template <class Arch = xsimd::default_arch>
void linear(const RowMatrixXf& W, const float* bias, const float* X, std::ptrdiff_t ldx,
            std::size_t n, float* Y, std::ptrdiff_t ldy, int threads) {
  if (n <= 8) {
    matvec<Arch>(W, bias, X, ldx, n, Y, ldy, threads);
    return;
  }
  using Stride = Eigen::OuterStride<>;
  const auto in = W.cols(), out = W.rows();
  Eigen::Map<const RowMatrixXf, 0, Stride> x(X, Eigen::Index(n), in, Stride(ldx));
  Eigen::Map<RowMatrixXf, 0, Stride> y(Y, Eigen::Index(n), out, Stride(ldy));
  y.noalias() = x * W.transpose();
  add_bias(bias, std::size_t(out), n, Y, ldy);
}

}  // namespace ssm::detail
