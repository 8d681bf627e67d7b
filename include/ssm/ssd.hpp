// Mamba-2's SSM layer (Dao & Gu 2024, "Transformers are SSMs"), with the
// semantics of transformers' Mamba2Mixer (torch_forward) and state-spaces/
// mamba's ssd_minimal: per head h (of group g(h) = h / (heads / groups))
//   dt_t  = clamp(softplus(dt_t + dt_bias_h), dt_min, dt_max)   (each optional)
//   h_t   = exp(dt_t A_h) h_{t-1} + dt_t x_t B_t^T       (P x N state, scalar A_h <= 0)
//   y_t   = h_t C_t + D_h x_t
// with x_t, y_t in R^P (the head's channels) and B_t, C_t in R^N (its
// group's). Two evaluations with the same results:
// - ssd_recurrent(): step by step (detail/ssd_kernel.hpp), two FMAs per state
//   element and step; the decoding form, and the faster prefill on CPUs
//   (bench/RESULTS.md);
// - ssd_chunked(): the state space dual form in chunks of Q steps
//   (detail/ssd_chunked.hpp), matrix products plus a scan over chunks.
#pragma once

#include <ssm/detail/omp.hpp>
#include <ssm/detail/ssd_chunked.hpp>
#include <ssm/detail/ssd_kernel.hpp>
#include <ssm/linear_recurrence.hpp>  // detail::check_row_stride

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace ssm {

/// The operands of the Mamba-2 SSM as strided views of a model's buffers
/// (e.g. the x, B, C columns of the convolution's output, in place).
/// Element [b, t, h, p] of x and y sits at x[b * x_batch_stride +
/// t * x_time_stride + h * head_dim + p]: heads and channels contiguous.
struct SsdArgs {
  /// sequences, steps, heads, channels per head (P) and states per head (N)
  std::size_t batch = 1, L = 0, heads = 0, head_dim = 0, N = 0;
  std::size_t groups = 1;  ///< heads / groups consecutive heads share B and C

  const float* x = nullptr;  ///< (batch, L, heads, head_dim)
  std::ptrdiff_t x_batch_stride = 0, x_time_stride = 0;  ///< in elements, as every stride here
  const float* dt = nullptr;  ///< (batch, L, heads): before bias, softplus and clamp
  std::ptrdiff_t dt_batch_stride = 0, dt_time_stride = 0;
  const float* A = nullptr;  ///< (heads): finite and <= 0 (A = -exp(A_log))
  /// (batch, L, groups, N): B[b, t, g, n] at B[b * B_batch_stride + t * B_time_stride + g * N + n]
  const float* B = nullptr;
  std::ptrdiff_t B_batch_stride = 0, B_time_stride = 0;
  const float* C = nullptr;  ///< as B
  std::ptrdiff_t C_batch_stride = 0, C_time_stride = 0;

  const float* D = nullptr;        ///< optional (heads): y += D x
  const float* dt_bias = nullptr;  ///< optional (heads), added to dt
  bool dt_softplus = false;        ///< softplus(x) = log1p(e^x); x itself above 20
  /// dt is clamped to [dt_min, dt_max] last (transformers' time_step_limit,
  /// default (0, inf)); dt_min >= 0, so every decay exp(dt A) is <= 1
  float dt_min = 0, dt_max = INFINITY;

  /// optional (batch, heads, N, head_dim): the initial state on entry, the
  /// final one on return (zero initial state when null). n-major:
  /// h[b, h, n, p] at state[b * state_batch_stride + (h * N + n) * head_dim + p],
  /// the transpose of transformers' (head_dim, N) per head. On a cache line
  /// (64 bytes; a large std::vector's data is 16 bytes past one) with
  /// head_dim a multiple of 16, no row of it straddles two lines:
  /// ssd_recurrent ran 5%-10% faster so on a Zen 3 (bench/LOG.md, "The
  /// state on a cache line").
  float* state = nullptr;
  std::ptrdiff_t state_batch_stride = 0;

  float* y = nullptr;  ///< (batch, L, heads, head_dim), written; must not overlap the inputs
  std::ptrdiff_t y_batch_stride = 0, y_time_stride = 0;
};

namespace detail {

inline void check_ssd(const SsdArgs& p, const char* where) {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument(std::string(where) + ": " + what);
  };
  if (p.groups == 0 || p.heads % p.groups != 0)
    fail(std::to_string(p.heads) + " heads do not split into " + std::to_string(p.groups) + " groups");
  if (p.batch * p.heads > 0 && !p.A) fail("A must be given");
  if (p.batch * p.L * p.heads > 0) {
    std::string missing;
    for (auto [name, given] : {std::pair{"x", p.x != nullptr}, {"dt", p.dt != nullptr},
                               {"B", p.B != nullptr}, {"C", p.C != nullptr}, {"y", p.y != nullptr}})
      if (!given) missing += std::string(missing.empty() ? "" : ", ") + name;
    if (!missing.empty()) fail("x, dt, B, C and y must be given; null: " + missing);
  }
  for (std::size_t h = 0; h < p.heads && p.A; ++h)
    if (!(p.A[h] <= 0) || !std::isfinite(p.A[h]))
      fail("A[" + std::to_string(h) + "] must be finite and <= 0, got " + std::to_string(p.A[h]));
  if (!(p.dt_min >= 0 && p.dt_min <= p.dt_max))
    fail("the dt limits must satisfy 0 <= dt_min <= dt_max, got [" + std::to_string(p.dt_min) +
         ", " + std::to_string(p.dt_max) + "]");
  // outputs that a zero (or too short) stride would make overlap: the
  // defaults are 0, and threads writing the same rows race
  const std::size_t row = p.heads * p.head_dim, state = p.heads * p.N * p.head_dim;
  if (p.L > 1 && p.y) check_row_stride(where, "y_time_stride", p.y_time_stride, row, "heads * head_dim");
  if (p.batch > 1 && p.L > 0 && p.y)
    check_row_stride(where, "y_batch_stride", p.y_batch_stride, row, "heads * head_dim");
  if (p.batch > 1 && p.state)
    check_row_stride(where, "state_batch_stride", p.state_batch_stride, state, "heads * N * head_dim");
}

// Head h of sequence b as the recurrent kernel takes it.
inline SsdHead ssd_head(const SsdArgs& p, std::size_t b, std::size_t h, float* state) {
  const auto bs = std::ptrdiff_t(b), hs = std::ptrdiff_t(h);
  const auto g = std::ptrdiff_t(h / (p.heads / p.groups)), N = std::ptrdiff_t(p.N);
  SsdHead k;
  k.L = p.L, k.N = p.N, k.P = p.head_dim;
  k.x = p.x + bs * p.x_batch_stride + hs * std::ptrdiff_t(p.head_dim), k.x_ts = p.x_time_stride;
  k.dt = p.dt + bs * p.dt_batch_stride + hs, k.dt_ts = p.dt_time_stride;
  k.B = p.B + bs * p.B_batch_stride + g * N, k.B_ts = p.B_time_stride;
  k.C = p.C + bs * p.C_batch_stride + g * N, k.C_ts = p.C_time_stride;
  k.step = {p.dt_bias ? p.dt_bias[h] : 0.f, p.dt_softplus, p.dt_min, p.dt_max};
  k.A = p.A[h];
  k.D = p.D ? p.D[h] : 0.f;
  k.state = state;
  k.y = p.y + bs * p.y_batch_stride + hs * std::ptrdiff_t(p.head_dim), k.y_ts = p.y_time_stride;
  return k;
}

// Below ~2^17 state updates (~20 us) a parallel region costs more than it saves.
inline int ssd_threads(std::size_t updates, int threads) {
  return updates >= (std::size_t(1) << 17) ? resolve_threads(threads) : 1;
}
inline int ssd_threads(const SsdArgs& p, int threads) {
  return ssd_threads(p.batch * p.L * p.heads * p.N * p.head_dim, threads);
}

}  // namespace detail

/// The recurrent form: each (sequence, head) pair steps through its L steps
/// with its P x N state (SIMD over head_dim, a state tile in registers for
/// a block of 32 steps, all of a thread's heads block by block), pairs
/// split over `threads` threads (<= 0: OpenMP's maximum; 1 below 2^17
/// state updates or inside a parallel region). Agrees with a
/// double-precision loop to ~1e-6 of the scale of y (tests/test_ssd.cpp).
/// NaN in x or dt propagates. Bad sizes (groups 0 or not dividing heads),
/// missing operands, an A that is > 0 or not finite, dt limits outside
/// 0 <= dt_min <= dt_max, or output strides shorter than a row (y:
/// heads * head_dim; the state: heads * N * head_dim; e.g. left at 0)
/// throw std::invalid_argument;
/// an allocation failure throws std::bad_alloc.
/// At long L a head's rows of x, dt and y are walked a 4 KiB page per step:
/// operands in 2 MiB pages (as the models' workspaces hold them,
/// detail/pages.hpp) ran up to 2x faster on a Xeon host (bench/LOG.md, "The
/// rows in whole 2 MiB pages").
template <class Arch = xsimd::default_arch>
void ssd_recurrent(const SsdArgs& p, int threads = 0) {
  detail::check_ssd(p, "ssm::ssd_recurrent");
  if (p.L == 0) return;  // the state stays as given
  const std::size_t jobs = p.batch * p.heads, NP = p.N * p.head_dim;
  [[maybe_unused]] const int nt = detail::ssd_threads(p, threads);
  // every head's state when none is given, shared by the threads
  detail::SsdScratch::Buffer zero_states(p.state ? 0 : jobs * NP, 0.f);
  detail::ParallelErrors errors;
  SSM_OMP(parallel num_threads(nt) if (nt > 1))
  {
    thread_local detail::SsdScratch scratch;
    thread_local std::vector<double> carry;
    errors.run([&] {
      // a contiguous range of (sequence, head) pairs per thread
      const std::size_t i = std::size_t(detail::thread_index()), m = std::size_t(detail::team_size());
      const std::size_t j0 = jobs * i / m, j1 = jobs * (i + 1) / m;
      auto head = [&](std::size_t j) {
        const std::size_t b = j / p.heads, h = j % p.heads;
        float* state = p.state ? p.state + std::ptrdiff_t(b) * p.state_batch_stride + std::ptrdiff_t(h * NP)
                               : zero_states.data() + j * NP;
        return detail::ssd_head(p, b, h, state);
      };
      detail::ssd_heads_recurrent<Arch>(head, j0, j1, p.L, carry, scratch);
    });
  }
  errors.rethrow();
}

/// The chunked (SSD) form with chunks of `chunk_size` steps (any L; the
/// last chunk may be shorter): per chunk, the intra-chunk quadratic term
/// and the chunk's state by matrix products, then the states at chunk
/// boundaries by the scan core (linear_recurrence) and their contribution
/// to the outputs. Same results as ssd_recurrent() to rounding (~1e-6 of
/// the scale of y); work split over heads and chunks. chunk_size changes
/// the cost, not the result (one longer than L is one chunk of L steps).
/// Same errors, plus chunk_size == 0.
template <class Arch = xsimd::default_arch>
void ssd_chunked(const SsdArgs& p, std::size_t chunk_size, int threads = 0) {
  detail::check_ssd(p, "ssm::ssd_chunked");
  if (chunk_size == 0) throw std::invalid_argument("ssm::ssd_chunked: chunk_size must be > 0");
  if (p.L == 0 || p.batch * p.heads * p.head_dim == 0) return;  // nothing to write
  chunk_size = std::min(chunk_size, p.L);  // a longer chunk is the same one chunk
  const std::size_t NP = p.N * p.head_dim;
  const int nt = detail::ssd_threads(p, threads);
  std::vector<float> zero_state;
  for (std::size_t b = 0; b < p.batch; ++b) {
    const auto bs = std::ptrdiff_t(b);
    detail::SsdSequence s;
    s.L = p.L, s.H = p.heads, s.P = p.head_dim, s.N = p.N, s.G = p.groups;
    s.x = p.x + bs * p.x_batch_stride, s.x_ts = p.x_time_stride;
    s.dt = p.dt + bs * p.dt_batch_stride, s.dt_ts = p.dt_time_stride;
    s.B = p.B + bs * p.B_batch_stride, s.B_ts = p.B_time_stride;
    s.C = p.C + bs * p.C_batch_stride, s.C_ts = p.C_time_stride;
    s.A = p.A, s.D = p.D, s.dt_bias = p.dt_bias;
    s.softplus = p.dt_softplus, s.dt_min = p.dt_min, s.dt_max = p.dt_max;
    if (p.state) {
      s.state = p.state + bs * p.state_batch_stride;
    } else {
      zero_state.assign(p.heads * NP, 0.f);
      s.state = zero_state.data();
    }
    s.y = p.y + bs * p.y_batch_stride, s.y_ts = p.y_time_stride;
    detail::SsdChunked<Arch>(s, chunk_size).run(nt);
  }
}

}  // namespace ssm
