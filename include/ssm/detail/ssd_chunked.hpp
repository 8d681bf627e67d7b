// The chunked (state space dual) form of Mamba-2's SSM over one sequence
// (Dao & Gu 2024, Sec. 6): the sequence is cut into chunks of Q steps and
//   1. within a chunk, y = (L o C B^T) (dt x): a masked, decayed quadratic
//      term, L[t, s] = exp(sum_{s < k <= t} dt_k A) for s <= t, else 0;
//   2. each chunk's contribution to the state, S_c = (w o B)^T (dt x), with
//      w_s = exp(sum_{s < k <= end} dt_k A);
//   3. the states at chunk ends by the scan core over chunks,
//      H_c = exp(sum_{k in c} dt_k A) H_{c-1} + S_c;
//   4. the contribution of the state entering a chunk,
//      y_t += exp(sum_{start <= k <= t} dt_k A) C_t H_{c-1}.
// Steps 1, 2 and 4 are matrix products (Eigen). The exponents are the
// segment sums of dt A taken over each segment itself ("segsum" of
// state-spaces/mamba's ssd_minimal), never differences of running sums,
// which would lose their low bits to cancellation on long chunks.
#pragma once

#include <ssm/detail/exp.hpp>
#include <ssm/detail/omp.hpp>
#include <ssm/detail/ssd_kernel.hpp>  // StepSize
#include <ssm/linear_recurrence.hpp>

#include <Eigen/Core>
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace ssm::detail {

// One sequence, all heads; every pointer at the sequence's first step.
struct SsdSequence {
  std::size_t L = 0, H = 0, P = 0, N = 0, G = 1;
  const float* x = nullptr;   // x_t[h P + p] at x[t * x_ts + h P + p]
  std::ptrdiff_t x_ts = 0;
  const float* dt = nullptr;  // raw dt_t[h] at dt[t * dt_ts + h]
  std::ptrdiff_t dt_ts = 0;
  const float* B = nullptr;   // B_t[g N + n] at B[t * B_ts + g N + n]
  std::ptrdiff_t B_ts = 0;
  const float* C = nullptr;
  std::ptrdiff_t C_ts = 0;
  const float* A = nullptr;        // (H), <= 0
  const float* D = nullptr;        // (H) or null
  const float* dt_bias = nullptr;  // (H) or null
  bool softplus = false;
  float dt_min = 0, dt_max = INFINITY;
  float* state = nullptr;  // (H, N, P): in and out
  float* y = nullptr;      // y_t[h P + p] at y[t * y_ts + h P + p]
  std::ptrdiff_t y_ts = 0;
};

// Decays below 2^-64 are taken as 0. Their terms lie far below float's
// resolution of the sums they enter (2^-24), and the tiny and subnormal
// products they would make cost Intel cores a ~100-cycle microcode assist
// each in the matrix products: the chunked form ran at 0.05-0.11 of the
// recurrent one on an Emerald Rapids Xeon, 0.20-0.44 with this floor, as on
// Zen 5 (bench/LOG.md, "The chunked form without subnormals").
constexpr float ssd_log2_decay_floor = -64.f;

// 2^r for r <= 0, 0 below the floor; NaN stays NaN
inline float decay2(float r) { return r < ssd_log2_decay_floor ? 0.f : std::exp2(r); }

// out[i] = m[i] 2^{r[i]} for r <= 0, 0 below the floor
template <class Arch>
void times_exp2(const float* m, const float* r, float* out, std::size_t n) {
  using batch = xsimd::batch<float, Arch>;
  const batch floor(ssd_log2_decay_floor);
  std::size_t i = 0;
  for (; i + batch::size <= n; i += batch::size) {
    const batch rv = batch::load_unaligned(r + i);
    xsimd::select(rv < floor, batch(0.f), batch::load_unaligned(m + i) * exp2_nonpositive<Arch>(rv))
        .store_unaligned(out + i);
  }
  for (; i < n; ++i) out[i] = m[i] * decay2(r[i]);
}

template <class Arch>
class SsdChunked {
 public:
  using Rows = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Stride = Eigen::OuterStride<>;
  using ConstView = Eigen::Map<const Rows, 0, Stride>;
  using View = Eigen::Map<Rows, 0, Stride>;

  SsdChunked(const SsdSequence& s, std::size_t Q) : s_(s), Q_(Q) {}

  // The sequence in windows of about 256 steps (whole chunks): a head's
  // chunk states of a window stay in cache; the state carries over.
  void run(int threads) {
    const std::size_t window = std::max<std::size_t>(1, 256 / Q_) * Q_;
    for (std::size_t w0 = 0; w0 < s_.L; w0 += window) run_window(w0, std::min(window, s_.L - w0), threads);
  }

 private:
  // A thread's buffers: per chunk, and per head for the window.
  struct Scratch {
    std::vector<float> dt, a2, xdt, r, M, Bw, Cd;
    std::vector<float> states;    // (chunks + 1, N, P): entering state, then S_c / H_c
    std::vector<float> decay;     // (chunks, N * P): each chunk's total decay, repeated
    std::vector<float> decay_in;  // (window): decay from the chunk's start to t
  };

  // C B^T for every group and chunk, then each head through the window.
  void run_window(std::size_t w0, std::size_t Lw, [[maybe_unused]] int threads) {
    w0_ = w0;
    Lw_ = Lw;
    nc_ = (Lw + Q_ - 1) / Q_;
    CB_.resize(s_.G * nc_ * Q_ * Q_);
    const auto groups_x_chunks = std::ptrdiff_t(s_.G * nc_), heads = std::ptrdiff_t(s_.H);
    ParallelErrors errors;
    SSM_OMP(parallel num_threads(threads) if (threads > 1))
    {
      thread_local Scratch w;
      SSM_OMP(for schedule(static))
      for (std::ptrdiff_t j = 0; j < groups_x_chunks; ++j)
        errors.run([&] { chunk_CB(std::size_t(j) / nc_, std::size_t(j) % nc_); });
      SSM_OMP(for schedule(static))
      for (std::ptrdiff_t h = 0; h < heads; ++h)
        errors.run([&] {
          const std::size_t NP = s_.N * s_.P;
          w.states.resize((nc_ + 1) * NP);
          w.decay.resize(nc_ * NP);
          w.decay_in.resize(Lw_);
          for (std::size_t c = 0; c < nc_; ++c) chunk_inner(std::size_t(h), c, w);
          chunk_states(std::size_t(h), w);
          for (std::size_t c = 0; c < nc_; ++c) chunk_outer(std::size_t(h), c, w);
        });
    }
    errors.rethrow();
  }

  std::size_t chunk_len(std::size_t c) const { return std::min(Q_, Lw_ - c * Q_); }
  std::ptrdiff_t step(std::size_t c) const { return std::ptrdiff_t(w0_ + c * Q_); }

  // C B^T of group g, chunk c: (Qc, Qc), lower triangle (s <= t) only
  void chunk_CB(std::size_t g, std::size_t c) {
    const auto Qc = Eigen::Index(chunk_len(c)), N = Eigen::Index(s_.N);
    const ConstView Cc(s_.C + step(c) * s_.C_ts + std::ptrdiff_t(g * s_.N), Qc, N, Stride(s_.C_ts));
    const ConstView Bc(s_.B + step(c) * s_.B_ts + std::ptrdiff_t(g * s_.N), Qc, N, Stride(s_.B_ts));
    View CB(CB_.data() + (g * nc_ + c) * Q_ * Q_, Qc, Qc, Stride(Qc));
    if (N == 0)  // no states: no scores (Eigen's triangular product divides by N)
      CB.setZero();
    else
      CB.template triangularView<Eigen::Lower>() = Cc * Bc.transpose();
  }

  // Head h, chunk c: the quadratic term into y, the chunk's state term
  // S_c, its total decay (for the scan) and the decays from its start.
  void chunk_inner(std::size_t h, std::size_t c, Scratch& w) {
    const std::size_t Qc = chunk_len(c), P = s_.P, N = s_.N, g = h / (s_.H / s_.G);
    const StepSize make_dt{s_.dt_bias ? s_.dt_bias[h] : 0.f, s_.softplus, s_.dt_min, s_.dt_max};
    const float A2 = s_.A[h] * log2e;
    w.dt.resize(Qc);
    w.a2.resize(Qc);
    w.xdt.resize(Qc * P);
    w.M.resize(Qc * Qc);
    w.r.assign(Qc + 1, 0.f);
    for (std::size_t i = 0; i < Qc; ++i) {
      const std::ptrdiff_t t = step(c) + std::ptrdiff_t(i);
      w.dt[i] = make_dt(s_.dt[t * s_.dt_ts + std::ptrdiff_t(h)]);
      w.a2[i] = w.dt[i] * A2;
      const float* x = s_.x + t * s_.x_ts + std::ptrdiff_t(h * P);
      for (std::size_t p = 0; p < P; ++p) w.xdt[i * P + p] = x[p] * w.dt[i];
    }
    // Row i of the decays: r[0] = sum_{k <= i} a_k (from the chunk's start),
    // r[s + 1] = sum_{s < k <= i} a_k; each row adds a_i to the previous one.
    const float* CB = CB_.data() + (g * nc_ + c) * Q_ * Q_;
    float* din = w.decay_in.data() + c * Q_;
    for (std::size_t i = 0; i < Qc; ++i) {
      for (std::size_t j = 0; j <= i; ++j) w.r[j] += w.a2[i];
      w.r[i + 1] = 0;
      times_exp2<Arch>(CB + i * Qc, w.r.data() + 1, w.M.data() + i * Qc, i + 1);
      din[i] = decay2(w.r[0]);
    }
    const auto Q = Eigen::Index(Qc), Pi = Eigen::Index(P), Ni = Eigen::Index(N);
    const ConstView M(w.M.data(), Q, Q, Stride(Q)), X(w.xdt.data(), Q, Pi, Stride(Pi));
    View y(s_.y + step(c) * s_.y_ts + std::ptrdiff_t(h * P), Q, Pi, Stride(s_.y_ts));
    y.noalias() = M.template triangularView<Eigen::Lower>() * X;
    // the last row's decays weight each step's input to the chunk's state
    w.Bw.resize(Qc * N);
    const float* B = s_.B + step(c) * s_.B_ts + std::ptrdiff_t(g * N);
    for (std::size_t i = 0; i < Qc; ++i) {
      const float wi = decay2(w.r[i + 1]);
      for (std::size_t n = 0; n < N; ++n) w.Bw[i * N + n] = B[std::ptrdiff_t(i) * s_.B_ts + std::ptrdiff_t(n)] * wi;
    }
    const ConstView Bw(w.Bw.data(), Q, Ni, Stride(Ni));
    View S(w.states.data() + (c + 1) * N * P, Ni, Pi, Stride(Pi));
    S.noalias() = Bw.transpose() * X;
    std::fill_n(w.decay.data() + c * N * P, N * P, din[Qc - 1]);
  }

  // Head h: H_c = decay_c H_{c-1} + S_c over the chunks by the scan core;
  // slot 0 keeps the state entering the window, slot c + 1 gets H_c.
  void chunk_states(std::size_t h, Scratch& w) {
    const std::size_t NP = s_.N * s_.P;
    float* slots = w.states.data();
    float* state = s_.state + h * NP;
    std::copy_n(state, NP, slots);
    const auto stride = std::ptrdiff_t(NP);
    linear_recurrence<float, Arch>(nc_, NP, {w.decay.data(), stride}, {slots + NP, stride}, state,
                                   {slots + NP, stride}, 1);
  }

  // Head h, chunk c: y += diag(decay_in) C H_{c-1} + D x
  void chunk_outer(std::size_t h, std::size_t c, Scratch& w) {
    const std::size_t Qc = chunk_len(c), P = s_.P, N = s_.N, g = h / (s_.H / s_.G);
    const float* din = w.decay_in.data() + c * Q_;
    const float* C = s_.C + step(c) * s_.C_ts + std::ptrdiff_t(g * N);
    w.Cd.resize(Qc * N);
    for (std::size_t i = 0; i < Qc; ++i)
      for (std::size_t n = 0; n < N; ++n) w.Cd[i * N + n] = C[std::ptrdiff_t(i) * s_.C_ts + std::ptrdiff_t(n)] * din[i];
    const auto Q = Eigen::Index(Qc), Pi = Eigen::Index(P), Ni = Eigen::Index(N);
    const ConstView Cd(w.Cd.data(), Q, Ni, Stride(Ni));
    const ConstView Hprev(w.states.data() + c * N * P, Ni, Pi, Stride(Pi));
    View y(s_.y + step(c) * s_.y_ts + std::ptrdiff_t(h * P), Q, Pi, Stride(s_.y_ts));
    if (N > 0) y.noalias() += Cd * Hprev;
    if (s_.D) {
      const float Dh = s_.D[h];
      for (std::size_t i = 0; i < Qc; ++i) {
        const float* x = s_.x + (step(c) + std::ptrdiff_t(i)) * s_.x_ts + std::ptrdiff_t(h * P);
        for (std::size_t p = 0; p < P; ++p) y(Eigen::Index(i), Eigen::Index(p)) += Dh * x[p];
      }
    }
  }

  const SsdSequence& s_;
  std::size_t Q_, w0_ = 0, Lw_ = 0, nc_ = 0;
  std::vector<float> CB_;  // (G, chunks, Q, Q): C B^T per group and chunk
};

}  // namespace ssm::detail
