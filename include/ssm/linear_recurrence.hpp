// The scan core: the first-order linear recurrence
//     h_t = a_t .* h_{t-1} + b_t,   t = 0 .. L-1,
// over many independent channels, vectorized across channels (or, for a
// single contiguous channel, across time within a register) and threaded
// across channel blocks or, when channels are few, across time chunks.
//
// Memory layout: a `Steps` names a (L, channels) time-major array: step t
// starts at data + t * stride and holds the channels contiguously; stride 0
// repeats one step (a time-invariant coefficient, the S4D case).
#pragma once

#include <ssm/detail/omp.hpp>
#include <ssm/detail/recurrence.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace ssm {

/// A time-major sequence: step t starts at data + t * stride (elements).
template <class T>
struct Steps {
  T* data = nullptr;
  std::ptrdiff_t stride = 0;  ///< 0: the same values at every step
};

namespace detail {

// A recurrence over its channels, runnable over any range of steps and of
// outputs: the piece that the serial, channel-parallel and time-chunked
// evaluations share.
template <class Arch, class T>
class Recurrence {
 public:
  Recurrence(const RecurrenceArgs<T>& r, std::size_t channels, std::size_t groups)
      : r_(r), channels_(channels), groups_(groups), width_(groups ? channels / groups : 0) {
    r_.width = width_;
    readout_ = r.y != nullptr;
    writes_ = readout_ || r.out != nullptr;
    // One channel, stride 1: the lanes of a batch can hold consecutive steps.
    contiguous_ = !is_complex_scalar<T>::value && channels == 1 && !readout_ &&
                  r.b_stride == 1 && (r.a_stride == 0 || r.a_stride == 1) &&
                  (!r.out || r.out_stride == 1);
  }

  std::size_t channels() const { return channels_; }
  std::size_t width() const { return width_; }
  bool writes() const { return writes_; }
  bool contiguous() const { return contiguous_; }

  // Steps [t0, t0 + len) for outputs [w0, w1) of every group, from the
  // states h (updated in place). Write: emit states or readout; Prod: store
  // the product of the a_t in prod.
  template <bool Write, bool Prod>
  void run(std::size_t t0, std::size_t len, std::size_t w0, std::size_t w1, T* h,
           T* prod) const {
    const RecurrenceArgs<T> r = r_.from(t0);
    if (r_.a_stride == 0)
      run_from<true, Write, Prod>(r, len, w0, w1, h, prod);
    else
      run_from<false, Write, Prod>(r, len, w0, w1, h, prod);
  }

 private:
  template <bool ConstA, bool Write, bool Prod>
  void run_from(const RecurrenceArgs<T>& r, std::size_t len, std::size_t w0,
                std::size_t w1, T* h, T* prod) const {
    if constexpr (!is_complex_scalar<T>::value) {
      if (contiguous_) {
        T unused;
        recurrence_contiguous<Arch, ConstA, Write, Prod>(r, h[0], Prod ? prod[0] : unused, len);
        return;
      }
    }
    for (std::size_t g = 0; g < groups_; ++g) {
      const std::size_t c0 = g * width_ + w0, c1 = g * width_ + w1;
      if constexpr (!Write) {
        recurrence_channels<Arch, ConstA, Emit::none, Prod>(r, h, prod, len, c0, c1);
      } else if (!readout_) {
        recurrence_channels<Arch, ConstA, Emit::states, Prod>(r, h, prod, len, c0, c1);
      } else if (g == 0) {
        recurrence_channels<Arch, ConstA, Emit::readout_first, Prod>(r, h, prod, len, c0, c1);
      } else {
        recurrence_channels<Arch, ConstA, Emit::readout_add, Prod>(r, h, prod, len, c0, c1);
      }
    }
  }

  RecurrenceArgs<T> r_;
  std::size_t channels_, groups_, width_;
  bool readout_ = false, writes_ = false, contiguous_ = false;
};

// Threads over channel blocks: each thread runs every step for its own range
// of outputs (a multiple of the SIMD width), so no thread waits for another.
template <class Arch, class T>
void run_channel_parallel(const Recurrence<Arch, T>& rec, std::size_t L, T* h, int threads) {
  constexpr std::size_t W = xsimd::batch<T, Arch>::size;
  const std::size_t width = rec.width(), units = (width + W - 1) / W;
#pragma omp parallel num_threads(threads)
  {
    const std::size_t j = std::size_t(thread_index()), n = std::size_t(team_size());
    const std::size_t w0 = std::min(width, units * j / n * W);
    const std::size_t w1 = std::min(width, units * (j + 1) / n * W);
    if (w0 < w1) {
      if (rec.writes())
        rec.template run<true, false>(0, L, w0, w1, h, nullptr);
      else
        rec.template run<false, false>(0, L, w0, w1, h, nullptr);
    }
  }
}

// Threads over time (Blelloch 1990's two-pass scan, one chunk per thread, in
// cache-sized super-blocks): thread 0 runs its chunk from the true state while
// thread j > 0 reduces its chunk to the affine map h -> P_j h + E_j; then each
// j > 0 composes the maps before it into its true initial state and reruns its
// chunk (now in cache) emitting outputs. Thread 0's chunk is longer, since
// the others pass over theirs twice.
template <class Arch, class T>
void run_time_parallel(const Recurrence<Arch, T>& rec, std::size_t L, T* h, int threads) {
  const std::size_t C = rec.channels();
  // per thread and step: a, b and what is written; aim at ~256 KiB per chunk
  const std::size_t bytes_per_step = C * sizeof(T) * (rec.writes() ? 3 : 2);
  const std::size_t chunk = std::max<std::size_t>(2048, (std::size_t(256) << 10) / bytes_per_step);
  std::vector<T> maps(2 * C * std::size_t(threads));  // (P_j, E_j) per thread
  std::vector<T> state(C * std::size_t(threads));
#pragma omp parallel num_threads(threads)
  {
    const std::size_t j = std::size_t(thread_index()), n = std::size_t(team_size());
    T* P = maps.data() + 2 * C * j;
    T* E = P + C;
    T* x = state.data() + C * j;
    // thread 0 gets weight 3, the others 2: lengths 3k, 2k, ..., 2k
    const std::size_t super = chunk * (2 * n + 1) / 2;
    for (std::size_t s0 = 0; s0 < L; s0 += super) {
      const std::size_t len_all = std::min(super, L - s0);
      auto start = [&](std::size_t i) {
        return i == 0 ? 0 : std::min(len_all, len_all * (2 * i + 1) / (2 * n + 1));
      };
      const std::size_t t0 = s0 + start(j), len = s0 + start(j + 1) - t0;
      if (j == 0) {
        if (rec.writes())
          rec.template run<true, false>(t0, len, 0, rec.width(), h, nullptr);
        else
          rec.template run<false, false>(t0, len, 0, rec.width(), h, nullptr);
      } else {
        std::fill(E, E + C, T(0));
        rec.template run<false, true>(t0, len, 0, rec.width(), E, P);
      }
#pragma omp barrier
      if (j > 0) {
        std::copy(h, h + C, x);
        for (std::size_t i = 1; i < j; ++i) {
          const T* Pi = maps.data() + 2 * C * i;
          for (std::size_t c = 0; c < C; ++c) x[c] = Pi[c] * x[c] + Pi[C + c];
        }
        if (rec.writes())
          rec.template run<true, false>(t0, len, 0, rec.width(), x, nullptr);
        else
          for (std::size_t c = 0; c < C; ++c) x[c] = P[c] * x[c] + E[c];
      }
#pragma omp barrier
      if (j + 1 == n && j > 0) std::copy(x, x + C, h);
#pragma omp barrier
    }
  }
}

template <class Arch, class T>
void run_recurrence(const RecurrenceArgs<T>& args, std::size_t L, std::size_t channels,
                    std::size_t groups, T* h, int requested_threads) {
  constexpr std::size_t W = xsimd::batch<T, Arch>::size;
  const Recurrence<Arch, T> rec(args, channels, groups);
  const int threads = resolve_threads(requested_threads);
  // Below ~64K state updates a thread costs more than it saves.
  const bool worth_threads = threads > 1 && L * channels >= (std::size_t(1) << 16);
  if (worth_threads && rec.width() >= std::size_t(threads) * 4 * W) {
    run_channel_parallel(rec, L, h, threads);
  } else if (worth_threads && L >= std::size_t(threads) * 4096) {
    run_time_parallel(rec, L, h, threads);
  } else if (rec.writes()) {
    rec.template run<true, false>(0, L, 0, rec.width(), h, nullptr);
  } else {
    rec.template run<false, false>(0, L, 0, rec.width(), h, nullptr);
  }
}

template <class T>
void check_steps(const char* where, const char* name, const T* data, std::size_t L,
                 std::size_t channels) {
  if (L > 0 && channels > 0 && data == nullptr)
    throw std::invalid_argument(std::string(where) + ": " + name + " is null for L = " +
                                std::to_string(L) + ", " + std::to_string(channels) +
                                " channels");
}

}  // namespace detail

/// Runs h_t = a_t .* h_{t-1} + b_t for t = 0 .. L-1 over `channels` channels.
/// a, b: (L, channels) time-major (a.stride = 0: a time-invariant a).
/// h: the initial state h_{-1} (channels values) on entry, h_{L-1} on return.
/// out: if out.data is set, receives every h_t (it may alias b).
/// threads: 0 uses OpenMP's maximum; work is split across channel blocks
/// when there are enough channels, otherwise across time chunks (then the
/// result equals the sequential one up to rounding: tests/test_scan_core.cpp).
/// T: float, double, std::complex<float> or std::complex<double>.
template <class T, class Arch = xsimd::default_arch>
void linear_recurrence(std::size_t L, std::size_t channels, Steps<const T> a,
                       Steps<const T> b, T* h, Steps<T> out = {}, int threads = 0) {
  const char* where = "ssm::linear_recurrence";
  detail::check_steps(where, "a", a.data, L, channels);
  detail::check_steps(where, "b", b.data, L, channels);
  detail::check_steps(where, "h", h, 1, channels);
  detail::RecurrenceArgs<T> r{a.data, a.stride, b.data, b.stride};
  r.out = out.data;
  r.out_stride = out.stride;
  detail::run_recurrence<Arch>(r, L, channels, 1, h, threads);
}

/// The recurrence read out without storing the states: the channels form
/// `groups` groups of width = channels / groups, and
///     y_t[w] = sum_g c_t[g * width + w] * h_t[g * width + w],   w < width,
/// e.g. an SSM output y_t = sum_n C_n x_t[n] with channels laid out (N, H).
/// c: (L, channels) time-major, stride 0 for constant weights; y: (L, width).
/// Other arguments as linear_recurrence().
template <class T, class Arch = xsimd::default_arch>
void linear_recurrence_readout(std::size_t L, std::size_t channels, Steps<const T> a,
                               Steps<const T> b, T* h, Steps<const T> c, std::size_t groups,
                               Steps<T> y, int threads = 0) {
  const char* where = "ssm::linear_recurrence_readout";
  if (groups == 0 || channels % groups != 0)
    throw std::invalid_argument(std::string(where) + ": " + std::to_string(channels) +
                                " channels do not split into " + std::to_string(groups) +
                                " groups");
  detail::check_steps(where, "a", a.data, L, channels);
  detail::check_steps(where, "b", b.data, L, channels);
  detail::check_steps(where, "c", c.data, L, channels);
  detail::check_steps(where, "y", y.data, L, channels);
  detail::check_steps(where, "h", h, 1, channels);
  detail::RecurrenceArgs<T> r{a.data, a.stride, b.data, b.stride};
  r.c = c.data;
  r.c_stride = c.stride;
  r.y = y.data;
  r.y_stride = y.stride;
  detail::run_recurrence<Arch>(r, L, channels, groups, h, threads);
}

/// linear_recurrence() on Eigen matrices: a is L x C (or 1 x C for a
/// time-invariant a), b is L x C, h holds C states (in: h_{-1}, out: h_{L-1}).
/// Returns every h_t as an L x C matrix.
template <class T>
Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> linear_recurrence(
    const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>& a,
    const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>& b,
    Eigen::Matrix<T, Eigen::Dynamic, 1>& h, int threads = 0) {
  const Eigen::Index L = b.rows(), C = b.cols();
  if (a.cols() != C || (a.rows() != L && a.rows() != 1) || h.size() != C)
    throw std::invalid_argument(
        "ssm::linear_recurrence: a must be " + std::to_string(L) + "x" + std::to_string(C) +
        " or 1x" + std::to_string(C) + " and h " + std::to_string(C) + " long, got a " +
        std::to_string(a.rows()) + "x" + std::to_string(a.cols()) + ", b " + std::to_string(L) +
        "x" + std::to_string(C) + ", h " + std::to_string(h.size()));
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> out(L, C);
  linear_recurrence<T>(std::size_t(L), std::size_t(C),
                       {a.data(), a.rows() == 1 && L != 1 ? 0 : C}, {b.data(), C}, h.data(),
                       {out.data(), C}, threads);
  return out;
}

}  // namespace ssm
