// The selective scan of Mamba (Gu & Dao 2023, Algorithm 2), with the
// semantics of selective_scan_ref in state-spaces/mamba:
//   Delta = softplus(delta + delta_bias)          (each optional)
//   h_t[d, n] = exp(Delta_t[d] A[d, n]) h_{t-1}[d, n] + Delta_t[d] B_t[g(d), n] u_t[d]
//   y_t[d]    = sum_n C_t[g(d), n] h_t[d, n] + D[d] u_t[d]
//   y_t[d]   *= silu(z_t[d])                        (optional gate)
// with g(d) = d / (channels / groups) the group of channel d. Float only:
// the scan is bound by its exponentials; see detail/selective_scan_kernel.hpp.
#pragma once

#include <ssm/detail/omp.hpp>
#include <ssm/detail/selective_scan_kernel.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace ssm {

/// The operands of a selective scan as strided views, so that slices of a
/// model's buffers (e.g. the B and C columns of x_proj's output) are used in
/// place. Element [b, t, d] of a (batch, L, D) operand sits at
/// data[b * batch_stride + t * time_stride + d]: channels contiguous.
struct SelectiveScanArgs {
  /// sequences, steps, channels, and states per channel (A is D x N)
  std::size_t batch = 1, L = 0, D = 0, N = 0;
  std::size_t groups = 1;  ///< B and C are shared by the D / groups channels of a group

  const float* u = nullptr;  ///< (batch, L, D)
  std::ptrdiff_t u_batch_stride = 0, u_time_stride = 0;  ///< in elements, as every stride here
  const float* delta = nullptr;  ///< (batch, L, D), before bias and softplus
  std::ptrdiff_t delta_batch_stride = 0, delta_time_stride = 0;
  /// A[d, n] at A[d * A_d_stride + n * A_n_stride]; Mamba's (D, N) layout has
  /// A_d_stride = N, A_n_stride = 1. Must be finite; the fast exponential
  /// also needs A <= 0 (as A = -exp(A_log) always is), else xsimd::exp is used.
  const float* A = nullptr;
  std::ptrdiff_t A_d_stride = 0, A_n_stride = 1;
  /// B[b, t, g, n] at B[b * B_batch_stride + t * B_time_stride + g * B_group_stride + n]
  const float* B = nullptr;
  std::ptrdiff_t B_batch_stride = 0, B_time_stride = 0, B_group_stride = 0;
  const float* C = nullptr;  ///< as B
  std::ptrdiff_t C_batch_stride = 0, C_time_stride = 0, C_group_stride = 0;

  const float* D_skip = nullptr;      ///< optional (D): y += D u
  const float* z = nullptr;           ///< optional (batch, L, D): y *= silu(z)
  std::ptrdiff_t z_batch_stride = 0, z_time_stride = 0;
  const float* delta_bias = nullptr;  ///< optional (D), added to delta
  /// Delta = softplus(delta + bias), softplus(x) = log1p(e^x) (x itself
  /// above 20, as PyTorch); else Delta = delta + bias
  bool delta_softplus = false;

  /// optional (batch, D, N): the initial state on entry, the final state on
  /// return; zero initial state when null. Element [b, d, n] at
  /// state[b * state_batch_stride + d * state_d_stride + n * state_n_stride];
  /// state_d_stride = 1 (channels contiguous) is the fastest.
  float* state = nullptr;
  std::ptrdiff_t state_batch_stride = 0, state_d_stride = 0, state_n_stride = 1;

  float* y = nullptr;  ///< (batch, L, D), written
  std::ptrdiff_t y_batch_stride = 0, y_time_stride = 0;
};

namespace detail {

// Sizes and operands; with check_A, also that A is finite (once per plan).
inline void check_selective_scan(const SelectiveScanArgs& p, bool check_A) {
  auto fail = [](const std::string& what) {
    throw std::invalid_argument("ssm::selective_scan: " + what);
  };
  if (p.groups == 0 || p.D % p.groups != 0)
    fail(std::to_string(p.D) + " channels do not split into " + std::to_string(p.groups) +
         " groups");
  if (check_A && p.N > 0 && p.D > 0 && !p.A) fail("A must be given");
  if (p.batch * p.L * p.D > 0 && (!p.u || !p.delta || !p.B || !p.C || !p.y))
    fail("u, delta, B, C and y must be given");
  for (std::size_t d = 0; check_A && d < p.D; ++d)
    for (std::size_t n = 0; n < p.N; ++n)
      if (!std::isfinite(p.A[std::ptrdiff_t(d) * p.A_d_stride + std::ptrdiff_t(n) * p.A_n_stride]))
        fail("A[" + std::to_string(d) + ", " + std::to_string(n) + "] is not finite");
}

}  // namespace detail

/// A selective scan prepared for one A (and D, N, groups): A is packed
/// once, so repeated calls (a decoding loop, the layers of a model) only
/// run the kernel, without allocating after the first call on a thread.
/// run() is const and may be called from several threads at once (each
/// thread keeps its own scratch).
template <class Arch = xsimd::default_arch>
class SelectiveScanPlan {
 public:
  /// Takes D, N, groups and A from `p`; the other operands are not read,
  /// but must be non-null if batch * L * D > 0 (the same check as run()).
  /// Throws std::invalid_argument if groups is 0 or does not divide D, A is
  /// null (N, D > 0) or has a non-finite entry, or an operand is missing.
  explicit SelectiveScanPlan(const SelectiveScanArgs& p) : D_(p.D), N_(p.N), groups_(p.groups) {
    detail::check_selective_scan(p, true);
    constexpr std::size_t W = xsimd::batch<float, Arch>::size;
    const std::size_t width = groups_ ? D_ / groups_ : 0;
    for (std::size_t g = 0; g < groups_; ++g) {
      const std::size_t g0 = g * width, g1 = g0 + width;
      if (width < W) {
        blocks_.push_back({g, g0, width, 0, false, 0});
        continue;
      }
      for (std::size_t c = g0; c + W <= g1; c += W) blocks_.push_back({g, c, W, 0, true, 0});
      // the rest: the last W channels of the group, keeping only the new ones
      if (width % W) blocks_.push_back({g, g1 - W, W, W - width % W, true, 0});
    }
    non_positive_ = true;
    for (auto& b : blocks_) {
      b.a_offset = A2_.size();
      for (std::size_t n = 0; n < N_; ++n)
        for (std::size_t c = 0; c < b.width; ++c) {
          const float a = p.A[std::ptrdiff_t(b.c0 + c) * p.A_d_stride + std::ptrdiff_t(n) * p.A_n_stride];
          non_positive_ = non_positive_ && a <= 0;
          A2_.push_back(a * detail::log2e);
        }
    }
  }

  /// Runs the scan on the operands of `p`, whose D, N and groups must be
  /// those of the plan (its A is not read again). threads: <= 0 uses
  /// OpenMP's maximum; 1 below 2^17 state updates or inside a parallel
  /// region; the work splits over batch x channel blocks. Throws
  /// std::invalid_argument if D, N or groups differ from the plan's, or u,
  /// delta, B, C or y is null while batch * L * D > 0.
  void run(const SelectiveScanArgs& p, int threads = 0) const {
    if (p.D != D_ || p.N != N_ || p.groups != groups_)
      throw std::invalid_argument("ssm::SelectiveScanPlan::run: the plan is for D = " +
                                  std::to_string(D_) + ", N = " + std::to_string(N_) +
                                  ", groups = " + std::to_string(groups_) + ", got " +
                                  std::to_string(p.D) + ", " + std::to_string(p.N) + ", " +
                                  std::to_string(p.groups));
    detail::check_selective_scan(p, false);
    if (p.batch * p.D == 0) return;
    const bool fast = non_positive_ && (p.delta_softplus || deltas_non_negative(p));
    const std::size_t jobs = p.batch * blocks_.size();
    // below ~2^17 updates (~25 us) a parallel region costs more than it saves
    [[maybe_unused]] const int nt =
        p.batch * p.L * p.D * p.N >= (std::size_t(1) << 17) ? detail::resolve_threads(threads) : 1;
    detail::ParallelErrors errors;
    SSM_OMP(parallel for num_threads(nt) schedule(static) if (nt > 1))
    for (std::ptrdiff_t i = 0; i < std::ptrdiff_t(jobs); ++i)
      errors.run([&] {
        run_block(p, std::size_t(i) / blocks_.size(), blocks_[std::size_t(i) % blocks_.size()], fast);
      });
    errors.rethrow();
  }

 private:
  struct Block {
    std::size_t group, c0, width;
    std::size_t skip;  // leading channels computed by the previous block too: not written
    bool simd;
    std::size_t a_offset;
  };

  // Without softplus, Delta = delta + bias must be >= 0 for the fast exp.
  bool deltas_non_negative(const SelectiveScanArgs& p) const {
    for (std::size_t b = 0; b < p.batch; ++b)
      for (std::size_t t = 0; t < p.L; ++t)
        for (std::size_t d = 0; d < p.D; ++d) {
          const float x = p.delta[std::ptrdiff_t(b) * p.delta_batch_stride +
                                  std::ptrdiff_t(t) * p.delta_time_stride + std::ptrdiff_t(d)] +
                          (p.delta_bias ? p.delta_bias[d] : 0.f);
          if (!(x >= 0)) return false;
        }
    return true;
  }

  void run_block(const SelectiveScanArgs& p, std::size_t b, const Block& blk, bool fast) const {
    // per-thread scratch, grown once: packed states and, for a block that
    // must not write all its channels, its outputs
    thread_local std::vector<float> state, y;
    const auto bs = std::ptrdiff_t(b);
    const auto c0 = std::ptrdiff_t(blk.c0);
    detail::SelectiveBlock k;
    k.L = p.L;
    k.N = N_;
    k.u = p.u + bs * p.u_batch_stride + c0;
    k.u_ts = p.u_time_stride;
    k.delta = p.delta + bs * p.delta_batch_stride + c0;
    k.delta_ts = p.delta_time_stride;
    const auto g = std::ptrdiff_t(blk.group);
    k.B = p.B + bs * p.B_batch_stride + g * p.B_group_stride;
    k.B_ts = p.B_time_stride;
    k.C = p.C + bs * p.C_batch_stride + g * p.C_group_stride;
    k.C_ts = p.C_time_stride;
    if (p.z) {
      k.z = p.z + bs * p.z_batch_stride + c0;
      k.z_ts = p.z_time_stride;
    }
    k.A2 = A2_.data() + blk.a_offset;
    k.D_skip = p.D_skip ? p.D_skip + c0 : nullptr;
    k.bias = p.delta_bias ? p.delta_bias + c0 : nullptr;
    k.softplus = p.delta_softplus;

    state.assign(N_ * blk.width, 0.f);
    float* const s0 = p.state ? p.state + bs * p.state_batch_stride : nullptr;
    auto at = [&](std::size_t n, std::size_t c) -> float& {
      return s0[std::ptrdiff_t(blk.c0 + c) * p.state_d_stride + std::ptrdiff_t(n) * p.state_n_stride];
    };
    if (s0 && p.state_d_stride == 1)  // rows of channels: copy them whole
      for (std::size_t n = 0; n < N_; ++n)
        std::copy_n(&at(n, 0), blk.width, &state[n * blk.width]);
    else if (s0)
      for (std::size_t n = 0; n < N_; ++n)
        for (std::size_t c = 0; c < blk.width; ++c) state[n * blk.width + c] = at(n, c);
    k.state = state.data();
    float* const y_out = p.y + bs * p.y_batch_stride + c0;
    if (blk.skip) {
      y.resize(p.L * blk.width);
      k.y = y.data();
      k.y_ts = std::ptrdiff_t(blk.width);
    } else {
      k.y = y_out;
      k.y_ts = p.y_time_stride;
    }

    if (!blk.simd)
      detail::selective_block_scalar(k, blk.width);
    else if (fast)
      detail::selective_block_all<Arch, true>(k);
    else
      detail::selective_block_all<Arch, false>(k);

    for (std::size_t t = 0; blk.skip && t < p.L; ++t)
      for (std::size_t c = blk.skip; c < blk.width; ++c)
        y_out[std::ptrdiff_t(t) * p.y_time_stride + std::ptrdiff_t(c)] = y[t * blk.width + c];
    if (s0 && p.state_d_stride == 1)
      for (std::size_t n = 0; n < N_; ++n)
        std::copy(&state[n * blk.width + blk.skip], &state[(n + 1) * blk.width], &at(n, blk.skip));
    else if (s0)
      for (std::size_t n = 0; n < N_; ++n)
        for (std::size_t c = blk.skip; c < blk.width; ++c) at(n, c) = state[n * blk.width + c];
  }

  std::size_t D_, N_, groups_;
  std::vector<Block> blocks_;
  std::vector<float> A2_;  // per block: (N, width) of A log2(e)
  bool non_positive_ = true;
};

/// Runs the selective scan described by `p` with `threads` threads (as
/// SelectiveScanPlan::run()), split over batch x channel blocks. Agrees with a
/// double-precision loop to ~1e-6 relative (tests/test_selective_scan.cpp).
/// NaN in u or delta propagates to y and the state; bad sizes, missing
/// operands or a non-finite A throw std::invalid_argument, an allocation
/// failure std::bad_alloc. At long L each block of channels walks the rows
/// a 4 KiB page per step: operands in 2 MiB pages (as the models'
/// workspaces hold them, detail/pages.hpp) ran up to 1.9x faster on a Xeon
/// host (bench/RESULTS.md).
template <class Arch = xsimd::default_arch>
void selective_scan(const SelectiveScanArgs& p, int threads = 0) {
  SelectiveScanPlan<Arch>(p).run(p, threads);
}

/// Options of the Eigen form of selective_scan(): the optional operands.
struct SelectiveScanOptions {
  const Eigen::VectorXf* D = nullptr;           ///< (D): y += D u
  const Eigen::MatrixXf* z = nullptr;           ///< (L, D): y *= silu(z)
  const Eigen::VectorXf* delta_bias = nullptr;  ///< (D)
  bool delta_softplus = false;                  ///< Delta = softplus(delta + bias)
  Eigen::MatrixXf* state = nullptr;  ///< (D, N): initial state in, final state out
  int threads = 0;                   ///< 0: OpenMP's maximum
};

/// One sequence in Mamba's layouts: u and delta (L, D), A (D, N), B and C
/// (L, N) (one group); returns y (L, D). Eigen's column-major matrices are
/// accepted and reordered internally; the strided SelectiveScanArgs form
/// avoids copies. Throws std::invalid_argument for any other shape of the
/// operands or options (D, z, delta_bias, state) and for a non-finite A.
inline Eigen::MatrixXf selective_scan(const Eigen::MatrixXf& u, const Eigen::MatrixXf& delta,
                                      const Eigen::MatrixXf& A, const Eigen::MatrixXf& B,
                                      const Eigen::MatrixXf& C,
                                      const SelectiveScanOptions& opt = {}) {
  using Rows = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Index L = u.rows(), D = u.cols(), N = A.cols();
  auto shape = [](const char* name, Eigen::Index r, Eigen::Index c, Eigen::Index er,
                  Eigen::Index ec) {
    if (r != er || c != ec)
      throw std::invalid_argument("ssm::selective_scan: " + std::string(name) + " must be " +
                                  std::to_string(er) + "x" + std::to_string(ec) + ", got " +
                                  std::to_string(r) + "x" + std::to_string(c));
  };
  shape("delta", delta.rows(), delta.cols(), L, D);
  shape("A", A.rows(), A.cols(), D, N);
  shape("B", B.rows(), B.cols(), L, N);
  shape("C", C.rows(), C.cols(), L, N);
  if (opt.D) shape("D", opt.D->rows(), 1, D, 1);
  if (opt.z) shape("z", opt.z->rows(), opt.z->cols(), L, D);
  if (opt.delta_bias) shape("delta_bias", opt.delta_bias->rows(), 1, D, 1);
  if (opt.state) shape("state", opt.state->rows(), opt.state->cols(), D, N);

  const Rows u_r = u, delta_r = delta, B_r = B, C_r = C;
  Rows z_r;
  if (opt.z) z_r = *opt.z;
  Rows y(L, D);
  SelectiveScanArgs p;
  p.L = std::size_t(L);
  p.D = std::size_t(D);
  p.N = std::size_t(N);
  p.u = u_r.data();
  p.u_time_stride = D;
  p.delta = delta_r.data();
  p.delta_time_stride = D;
  p.A = A.data();  // column-major (D, N): A[d, n] at d + n D
  p.A_d_stride = 1;
  p.A_n_stride = D;
  p.B = B_r.data();
  p.B_time_stride = N;
  p.C = C_r.data();
  p.C_time_stride = N;
  p.D_skip = opt.D ? opt.D->data() : nullptr;
  p.z = opt.z ? z_r.data() : nullptr;
  p.z_time_stride = D;
  p.delta_bias = opt.delta_bias ? opt.delta_bias->data() : nullptr;
  p.delta_softplus = opt.delta_softplus;
  if (opt.state) {
    p.state = opt.state->data();  // column-major (D, N)
    p.state_d_stride = 1;
    p.state_n_stride = D;
  }
  p.y = y.data();
  p.y_time_stride = D;
  selective_scan(p, opt.threads);
  return y;
}

}  // namespace ssm
