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

// Calls f(std::integral_constant<bool, v>{}): a runtime flag made a template
// argument, so each kernel is compiled for both cases.
template <class F>
void with_flag(bool v, F&& f) {
  if (v)
    f(std::true_type{});
  else
    f(std::false_type{});
}

// The recurrence over its channels, cut into the pieces the kernels run:
// chains of W channels (SIMD), single channels (the tail of a group), or
// one contiguous channel (its steps in the lanes).
template <class Arch, class T>
class RecurrencePlan {
 public:
  static constexpr std::size_t W = xsimd::batch<T, Arch>::size;

  RecurrencePlan(const RecurrenceArgs<T>& r, std::size_t channels, std::size_t groups)
      : r_(r), C_(channels), groups_(groups) {
    r_.width = width_ = channels / groups;
    readout_ = r.y != nullptr;
    writes_ = readout_ || r.out != nullptr;
  }

  std::size_t width() const { return width_; }
  bool writes() const { return writes_; }

  // Steps [t0, t1) of outputs [w0, w1) of every group (w0, w1 multiples of
  // W, or w1 = width), from the states `state` (C values, updated), in time
  // tiles: each tile's rows stream through the cache once while every
  // batch's states stay in registers. Group g's chains run after group
  // g - 1's (the readout adds to its outputs). Write: emit the states or
  // the readout; prod (if set): the products of a over the steps (C values).
  void run_range(std::size_t w0, std::size_t w1, std::size_t t0, std::size_t t1, T* state,
                 T* prod, bool write) const {
    if constexpr (!is_complex_scalar<T>::value) {
      if (contiguous()) {  // one channel, stride 1: the lanes hold consecutive steps
        T unused;
        with_flag(r_.a_stride == 0, [&](auto ca) {
          with_flag(write, [&](auto wr) {
            with_flag(prod != nullptr, [&](auto pr) {
              recurrence_contiguous<Arch, decltype(ca)::value, decltype(wr)::value,
                                    decltype(pr)::value>(r_.from(t0), *state, prod ? *prod : unused,
                                                         t1 - t0);
            });
          });
        });
        return;
      }
    }
    if (prod)
      for (std::size_t g = 0; g < groups_; ++g)
        std::fill(prod + g * width_ + w0, prod + g * width_ + w1, T(1));
    const std::size_t row_bytes = (w1 - w0) * groups_ * sizeof(T) * 3;
    const std::size_t tile = std::max<std::size_t>(64, (std::size_t(128) << 10) / std::max<std::size_t>(row_bytes, 1));
    T tile_prod[4 * W];  // products of one tile's chains, multiplied into prod
    for (std::size_t s = t0; s < t1; s += tile) {
      const std::size_t len = std::min(tile, t1 - s);
      const RecurrenceArgs<T> r = r_.from(s);
      for (std::size_t g = 0; g < groups_; ++g) {
        const std::size_t c0 = g * width_ + w0, c1 = g * width_ + w1;
        const Emit e = !write ? Emit::none : !readout_ ? Emit::states
                       : g == 0 ? Emit::readout_first : Emit::readout_add;
        std::size_t c = c0;
        Chain<T> ch[4];
        std::size_t k = 0;
        auto flush = [&] {
          if (prod) {
            for (std::size_t q = 0; q < k; ++q) ch[q].prod = tile_prod + q * W;
            run_chains<true>(r, ch, k, len, e);  // e is Emit::none: see run_chains
            for (std::size_t q = 0; q < k; ++q)
              for (std::size_t i = 0; i < W; ++i) prod[(ch[q].h - state) + std::ptrdiff_t(i)] *= tile_prod[q * W + i];
          } else {
            run_chains<false>(r, ch, k, len, e);
          }
          k = 0;
        };
        for (; c + W <= c1; c += W) {
          ch[k++] = chain(r, c, state + c, nullptr);
          if (k == 4) flush();
        }
        if (k) flush();
        for (; c < c1; ++c) {
          T p(1);
          if (prod) run_scalar<true>(r, state[c], &p, len, c, e), prod[c] *= p;
          else run_scalar<false>(r, state[c], nullptr, len, c, e);
        }
      }
    }
  }

  bool contiguous() const {
    return C_ == 1 && !readout_ && r_.b_stride == 1 && (r_.a_stride == 0 || r_.a_stride == 1) &&
           (!r_.out || r_.out_stride == 1) && !is_complex_scalar<T>::value;
  }

 private:
  Chain<T> chain(const RecurrenceArgs<T>& r, std::size_t c, T* state, T* prod) const {
    Chain<T> ch{};
    ch.a = r.a + std::ptrdiff_t(c);
    ch.b = r.b + std::ptrdiff_t(c);
    if (readout_) {
      ch.out = r.y + std::ptrdiff_t(c % width_);
      ch.c = r.c + std::ptrdiff_t(c);
    } else if (r.out) {
      ch.out = r.out + std::ptrdiff_t(c);
    }
    ch.h = state;
    ch.prod = prod;
    return ch;
  }

  template <bool Prod>
  void run_chains(const RecurrenceArgs<T>& r, const Chain<T>* ch, std::size_t n, std::size_t len,
                  Emit e) const {
    with_flag(r.a_stride == 0, [&](auto const_a) {
      constexpr bool CA = decltype(const_a)::value;
      auto go = [&](auto emit) {
        constexpr Emit E = decltype(emit)::value;
        switch (n) {
          case 4: recurrence_chains<Arch, 4, CA, E, Prod>(r, ch, len); break;
          case 3: recurrence_chains<Arch, 3, CA, E, Prod>(r, ch, len); break;
          case 2: recurrence_chains<Arch, 2, CA, E, Prod>(r, ch, len); break;
          default: recurrence_chains<Arch, 1, CA, E, Prod>(r, ch, len); break;
        }
      };
      // Products are taken only by the reduce pass of run_time_parallel,
      // which writes nothing: no other Emit is instantiated with them.
      if constexpr (Prod) {
        go(std::integral_constant<Emit, Emit::none>{});
      } else {
        switch (e) {
          case Emit::none: go(std::integral_constant<Emit, Emit::none>{}); break;
          case Emit::states: go(std::integral_constant<Emit, Emit::states>{}); break;
          case Emit::readout_first: go(std::integral_constant<Emit, Emit::readout_first>{}); break;
          case Emit::readout_add: go(std::integral_constant<Emit, Emit::readout_add>{}); break;
        }
      }
    });
  }

  template <bool Prod>
  void run_scalar(const RecurrenceArgs<T>& r, T& h, T* prod, std::size_t len, std::size_t c,
                  Emit e) const {
    T unused;
    T& p = prod ? *prod : unused;
    with_flag(r.a_stride == 0, [&](auto const_a) {
      constexpr bool CA = decltype(const_a)::value;
      switch (e) {
        case Emit::none: recurrence_scalar<CA, Emit::none, Prod>(r, h, p, len, c); break;
        case Emit::states: recurrence_scalar<CA, Emit::states, Prod>(r, h, p, len, c); break;
        case Emit::readout_first: recurrence_scalar<CA, Emit::readout_first, Prod>(r, h, p, len, c); break;
        case Emit::readout_add: recurrence_scalar<CA, Emit::readout_add, Prod>(r, h, p, len, c); break;
      }
    });
  }

  RecurrenceArgs<T> r_;
  std::size_t C_, groups_, width_;
  bool readout_ = false, writes_ = false;
};

// Threads over channel ranges: each runs every step for its own outputs
// (a multiple of the SIMD width), so no thread waits for another.
template <class Arch, class T>
void run_channel_parallel(const RecurrencePlan<Arch, T>& plan, std::size_t L, T* h,
                          [[maybe_unused]] int threads) {
  constexpr std::size_t W = RecurrencePlan<Arch, T>::W;
  const std::size_t width = plan.width(), units = (width + W - 1) / W;
#pragma omp parallel num_threads(threads)
  {
    const std::size_t j = std::size_t(thread_index()), n = std::size_t(team_size());
    const std::size_t w0 = std::min(width, units * j / n * W);
    const std::size_t w1 = std::min(width, units * (j + 1) / n * W);
    if (w0 < w1) plan.run_range(w0, w1, 0, L, h, nullptr, plan.writes());
  }
}

// Threads over time (Blelloch 1990's two-pass scan, one chunk per thread, in
// cache-sized super-blocks): thread 0 runs its chunk from the true state
// while thread j > 0 reduces its chunk to the affine map h -> P_j h + E_j;
// then each j > 0 composes the maps before it into its true initial state
// and reruns its chunk (now in cache) emitting outputs. Thread 0's chunk is
// longer (3 parts to 2), since the others pass over theirs twice.
template <class Arch, class T>
void run_time_parallel(const RecurrencePlan<Arch, T>& plan, std::size_t L, std::size_t C, T* h,
                       int threads) {
  // per thread and step: a, b and what is written; aim at ~256 KiB per part
  const std::size_t bytes_per_step = C * sizeof(T) * (plan.writes() ? 3 : 2);
  const std::size_t part = std::max<std::size_t>(2048, (std::size_t(256) << 10) / bytes_per_step);
  std::vector<T> maps(2 * C * std::size_t(threads));  // (P_j, E_j) per thread
  std::vector<T> state(C * std::size_t(threads));
  const std::size_t width = plan.width();
#pragma omp parallel num_threads(threads)
  {
    const std::size_t j = std::size_t(thread_index()), n = std::size_t(team_size());
    T* P = maps.data() + 2 * C * j;
    T* E = P + C;
    T* x = state.data() + C * j;
    const std::size_t super = part * (2 * n + 1) / 2;
    for (std::size_t s0 = 0; s0 < L; s0 += super) {
      const std::size_t all = std::min(super, L - s0);
      auto start = [&](std::size_t i) {
        return i == 0 ? 0 : i >= n ? all : all * (2 * i + 1) / (2 * n + 1);
      };
      const std::size_t t0 = s0 + start(j), t1 = s0 + start(j + 1);
      if (j == 0) {
        plan.run_range(0, width, t0, t1, h, nullptr, plan.writes());
      } else {
        std::fill(E, E + C, T(0));
        plan.run_range(0, width, t0, t1, E, P, false);
      }
#pragma omp barrier
      if (j > 0) {
        std::copy(h, h + C, x);
        for (std::size_t i = 1; i < j; ++i) {
          const T* Pi = maps.data() + 2 * C * i;
          for (std::size_t c = 0; c < C; ++c) x[c] = Pi[c] * x[c] + Pi[C + c];
        }
        if (plan.writes())
          plan.run_range(0, width, t0, t1, x, nullptr, true);
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
  const RecurrencePlan<Arch, T> plan(args, channels, groups);
  const int threads = resolve_threads(requested_threads);
  // Below ~64K state updates a thread costs more than it saves.
  const bool worth_threads = threads > 1 && L * channels >= (std::size_t(1) << 16);
  if (worth_threads && plan.width() >= std::size_t(threads) * 4 * W)
    run_channel_parallel(plan, L, h, threads);
  else if (worth_threads && L >= std::size_t(threads) * 4096)
    run_time_parallel(plan, L, channels, h, threads);
  else
    plan.run_range(0, plan.width(), 0, L, h, nullptr, plan.writes());
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
