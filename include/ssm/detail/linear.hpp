// Dense layers y = x W^T (+ b) with W stored row-major (out x in), as
// checkpoints store it: a batched matrix-vector kernel for decoding (a few
// rows of x: bound by reading W once), Eigen's GEMM for prompts.
#pragma once

#include <ssm/detail/omp.hpp>
#include <ssm/detail/recurrence.hpp>  // SSM_ALWAYS_INLINE, static_for

#include <Eigen/Core>
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>

namespace ssm::detail {

using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// The order the matrix-vector kernel reads W's rows in:
// streams: each thread's rows cut into S contiguous parts, read side by side
//   (a row of each part at a time: S long streams), each asking for its
//   lines 1 KiB ahead. The rows of a checkpoint are a few KiB, and the
//   hardware prefetchers stop at every 4 KiB page; the pattern is the one
//   that reads fastest on Zen 5 (bench::read_bandwidth's 4 streams, 1 KiB
//   ahead). Against 8 neighbouring rows side by side with the next 8
//   prefetched (until stop 37): 26-27 -> 31-32 GB/s on one Zen 5 core,
//   48-51 -> 62-64 on two, over a Mamba-1 130m token's matrices; on an
//   Emerald Rapids Xeon 20-21 -> 22, 35-41 -> 41-44 (bench/RESULTS.md,
//   "Stop 37").
// one_by_one: a row after another, one stream. On a Zen 4 VM, whose cores
//   read one stream at 25-29 GB/s and several at 10-19, it read 22-28 GB/s
//   where 8 rows side by side read 17-19 ("Stop 35").
// Both sum every row in the same order, so the order changes no bit of the
// result, only its speed; `automatic` times both on this machine.
enum class RowOrder { automatic, streams, one_by_one };

// Rows [r0, r1) of y_j = W x_j for up to 4 inputs at once: every W element
// is read once for all of them. Each output is the same sum in the same
// order whatever the number of inputs (and whatever the row order), so a
// batched decode step gives bitwise the results of decoding each sequence
// alone (where the arch's fma is one instruction: an emulated a * b + c may
// be contracted in one instantiation and not in another). `rows` x `in`
// floats at W.
template <class Arch, std::size_t NX>
void matvec_rows(const float* W, std::size_t rows, std::size_t in, std::size_t r0, std::size_t r1,
                 const float* const* x, float* const* y, RowOrder order) {
  using batch = xsimd::batch<float, Arch>;
  constexpr std::size_t W_ = batch::size;
  // S x NX accumulators, within half the vector registers (32 with 64-byte
  // batches, else 16)
  constexpr std::size_t S = NX * 4 <= (W_ * sizeof(float) >= 64 ? 16 : 8) ? 4 : 2;
  constexpr std::size_t ahead = 1024 / sizeof(float);
  const std::size_t last = rows * in - 1;  // prefetches stay inside W
  auto finish = [&](std::size_t r, std::size_t c, batch* acc) {
    static_for<NX>([&](auto j) {
      float s = xsimd::hadd(acc[j]);
      for (std::size_t k = c; k < in; ++k) s += W[r * in + k] * x[j][k];
      y[j][r] = s;
    });
  };
  std::size_t r = r0;
  if (order != RowOrder::one_by_one) {
    const std::size_t part = (r1 - r0) / S;
    for (std::size_t i = 0; i < part; ++i) {
      batch acc[S][NX];
      static_for<S>([&](auto k) { static_for<NX>([&](auto j) { acc[k][j] = batch(0.f); }); });
      std::size_t c = 0;
      for (; c + W_ <= in; c += W_) {
        batch xv[NX];
        static_for<NX>([&](auto j) { xv[j] = batch::load_unaligned(x[j] + c); });
        static_for<S>([&](auto k) {
          const std::size_t at = (r0 + k * part + i) * in + c;
          prefetch(W + std::min(at + ahead, last));
          const batch w = batch::load_unaligned(W + at);
          static_for<NX>([&](auto j) { acc[k][j] = xsimd::fma(w, xv[j], acc[k][j]); });
        });
      }
      static_for<S>([&](auto k) { finish(r0 + k * part + i, c, acc[k]); });
    }
    r = r0 + S * part;
  }
  for (; r < r1; ++r) {  // one at a time (or the last rows), summed the same way
    batch acc[NX];
    static_for<NX>([&](auto j) { acc[j] = batch(0.f); });
    std::size_t c = 0;
    for (; c + W_ <= in; c += W_) {
      const batch w = batch::load_unaligned(W + r * in + c);
      static_for<NX>([&](auto j) { acc[j] = xsimd::fma(w, batch::load_unaligned(x[j] + c), acc[j]); });
    }
    finish(r, c, acc);
  }
}

template <class Arch = xsimd::default_arch>
void add_bias(const float* bias, std::size_t out, std::size_t n, float* Y, std::ptrdiff_t ldy) {
  if (!bias) return;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t o = 0; o < out; ++o) Y[std::ptrdiff_t(i) * ldy + std::ptrdiff_t(o)] += bias[o];
}

// The row order of automatic matvec calls: the first kTrials calls
// over at least kFloats weights each read half of every thread's
// rows in each order (which half first alternates) and add up the time of
// each; the faster order then stays for the process.
struct RowOrderChoice {
  static constexpr int kTrials = 16;
  static constexpr std::size_t kFloats = std::size_t(1) << 20;  // 4 MiB
  std::atomic<int> calls{0};
  std::atomic<long long> ns[2] = {};  // streams, one_by_one
  std::atomic<int> chosen{int(RowOrder::automatic)};
};
inline RowOrderChoice& row_order_choice() {
  static RowOrderChoice choice;
  return choice;
}

// Y (n x out) = X (n x in) W^T + bias, rows of X and Y `ldx`, `ldy` apart,
// by the matrix-vector kernel, 4 rows of X per pass over W, threads over W's
// rows: the decoding form, bound by reading W. order: automatic (see
// RowOrderChoice), or one order forced; the same bits either way.
template <class Arch = xsimd::default_arch>
void matvec(const RowMatrixXf& W, const float* bias, const float* X, std::ptrdiff_t ldx,
            std::size_t n, float* Y, std::ptrdiff_t ldy, int threads,
            RowOrder order = RowOrder::automatic) {
  const std::size_t out = std::size_t(W.rows()), in = std::size_t(W.cols());
  if (n == 0 || out == 0) return;
  const int nt = out * in >= (std::size_t(1) << 16) ? resolve_threads(threads) : 1;
  RowOrderChoice& choice = row_order_choice();
  int trial = -1;  // >= 0: this call times both orders
  if (order == RowOrder::automatic) {
    order = RowOrder(choice.chosen.load(std::memory_order_relaxed));
    // large enough to read from memory, with two halves of 8 rows or more
    // for every thread
    if (order == RowOrder::automatic && out * in >= RowOrderChoice::kFloats &&
        out >= 16 * std::size_t(nt))
      trial = choice.calls.fetch_add(1);
    if (trial >= RowOrderChoice::kTrials) trial = -1;  // another call decides
  }
  if (order == RowOrder::automatic) order = RowOrder::streams;
  SSM_OMP(parallel num_threads(nt) if (nt > 1))
  {
    const std::size_t j = std::size_t(thread_index()), m = std::size_t(team_size());
    // rows split in multiples of 8, so that two threads share few lines of
    // Y (which thread computes a row changes no bit of it)
    const std::size_t groups = (out + 7) / 8;
    const std::size_t r0 = std::min(out, groups * j / m * 8), r1 = std::min(out, groups * (j + 1) / m * 8);
    const std::size_t mid = std::min(r1, r0 + (r1 - r0) / 16 * 8);
    for (std::size_t i = 0; i < n; i += 4) {
      const float* xs[4];
      float* ys[4];
      const std::size_t k = std::min<std::size_t>(4, n - i);
      for (std::size_t q = 0; q < k; ++q) {
        xs[q] = X + std::ptrdiff_t(i + q) * ldx;
        ys[q] = Y + std::ptrdiff_t(i + q) * ldy;
      }
      auto rows = [&](std::size_t a, std::size_t b, RowOrder o) {
        switch (k) {
          case 1: matvec_rows<Arch, 1>(W.data(), out, in, a, b, xs, ys, o); break;
          case 2: matvec_rows<Arch, 2>(W.data(), out, in, a, b, xs, ys, o); break;
          case 3: matvec_rows<Arch, 3>(W.data(), out, in, a, b, xs, ys, o); break;
          default: matvec_rows<Arch, 4>(W.data(), out, in, a, b, xs, ys, o); break;
        }
      };
      if (trial < 0) {
        rows(r0, r1, order);
        continue;
      }
      const int first = trial % 2;  // 0: streams first
      const RowOrder orders[2] = {RowOrder::streams, RowOrder::one_by_one};
      const auto t0 = std::chrono::steady_clock::now();
      rows(r0, mid, orders[first]);
      const auto t1 = std::chrono::steady_clock::now();
      rows(mid, r1, orders[1 - first]);
      const auto t2 = std::chrono::steady_clock::now();
      using ns = std::chrono::nanoseconds;
      choice.ns[first] += std::chrono::duration_cast<ns>(t1 - t0).count();
      choice.ns[1 - first] += std::chrono::duration_cast<ns>(t2 - t1).count();
    }
  }
  if (trial == RowOrderChoice::kTrials - 1)
    choice.chosen.store(int(choice.ns[1] < choice.ns[0] ? RowOrder::one_by_one : RowOrder::streams));
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
