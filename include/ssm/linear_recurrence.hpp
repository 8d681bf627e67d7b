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
#include <cassert>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace ssm {

/// A time-major sequence: step t starts at data + t * stride (elements).
template <class T>
struct Steps {
  T* data = nullptr;          ///< step 0; null: absent (an optional output)
  std::ptrdiff_t stride = 0;  ///< 0: the same values at every step (inputs only)
};

namespace detail {

// Whether adding `carry` to the state s would change it by at most half an
// ulp of |s| (false for NaN or infinite s: those propagate).
template <class T>
bool carry_negligible(const T& carry, const T& s) {
  using R = decltype(std::abs(s));
  const R scale = std::abs(s);
  return scale <= std::numeric_limits<R>::max() &&
         std::abs(carry) <= std::numeric_limits<R>::epsilon() / 2 * scale;
}

// Calls f(std::integral_constant<bool, v>{}): a runtime flag made a template
// argument, so each kernel is compiled for both cases. Inlined: as nested
// calls, the dispatch to one channel's kernel cost ~9 ns a call (Zen 4).
template <class F>
SSM_ALWAYS_INLINE void with_flag(bool v, F&& f) {
  if (v)
    f(std::true_type{});
  else
    f(std::false_type{});
}

// Calls f(std::integral_constant<Emit, e>{}), as with_flag does for a bool.
template <class F>
SSM_ALWAYS_INLINE void with_emit(Emit e, F&& f) {
  switch (e) {
    case Emit::none: f(std::integral_constant<Emit, Emit::none>{}); break;
    case Emit::states: f(std::integral_constant<Emit, Emit::states>{}); break;
    case Emit::readout_first: f(std::integral_constant<Emit, Emit::readout_first>{}); break;
    case Emit::readout_add: f(std::integral_constant<Emit, Emit::readout_add>{}); break;
  }
}

// The recurrence over its channels, cut into the pieces the kernels run:
// chains of W channels (SIMD), single channels (the tail of a group), one
// contiguous channel (its steps in the lanes), or, for rows of kSweepBytes
// or more, sweeps of whole rows a step at a time (recurrence_rows).
template <class Arch, class T>
class RecurrencePlan {
 public:
  static constexpr std::size_t W = xsimd::batch<T, Arch>::size;

  // The most chains run in lockstep: half the vector registers hold their
  // states (32 registers with 64-byte batches, else 16). A row of up to
  // kChains batches then streams through whole, step after step, where
  // bundles of 4 walked a 256-byte column of it: one thread, Zen 5, 65536 x
  // 256 floats 2.65 -> 3.4-3.5 G updates/s, 4096 x 128 6.4 -> 8.0. Complex
  // chains (two registers each) stay at 4: in bundles of 8 they gained
  // 1.1x-1.15x, for 3-4 s more of test_scan_core's sanitizer compile.
  static constexpr std::size_t kChains =
      is_complex_scalar<T>::value ? 4 : W * sizeof(T) == 64 ? 16 : 8;

  // Rows at least this wide are swept step by step (recurrence_rows): a time
  // tile of chains reads each row in as many passes as it takes bundles,
  // and a chain's column crosses a page every step or few. Real rows from
  // two widest bundles on (2 KiB of floats with AVX-512, 512 bytes with
  // AVX2), complex ones from 2 KiB. Zen 3 (AVX2), swept against chains: 192
  // and 256 channels 1.5x-2x, 384 1.1x-1.6x; 128 (two bundles) 0.7x-1.2x,
  // 72-96 0.66x-0.91x. An Emerald Rapids Xeon (AVX-512): 256 channels (one
  // bundle) 0.91x-0.96x swept, 384 1.03x-1.05x.
  static constexpr std::size_t kSweepBytes =
      is_complex_scalar<T>::value ? 2048 : 2 * kChains * W * sizeof(T);

  // The channels left over from the batches: half a batch of them (if at
  // least half are left) in one chain of the arch of half the width, the
  // others in scalar chains. On a Sapphire Rapids Xeon (AVX-512), 40
  // channels (two batches and 8 left) of 4096 steps ran at 0.63 of the
  // ceiling with 8 scalar chains for the rest.
  using Half = typename half_width<Arch>::type;
  static constexpr std::size_t kHalf = [] {
    if constexpr (std::is_void<Half>::value) return std::size_t(0);
    else return xsimd::batch<T, Half>::size;
  }();

  RecurrencePlan(const RecurrenceArgs<T>& r, std::size_t channels, std::size_t groups)
      : r_(r), C_(channels), groups_(groups) {
    r_.width = width_ = channels / groups;
    readout_ = r.y != nullptr;
    writes_ = readout_ || r.out != nullptr;
  }

  std::size_t width() const { return width_; }
  bool writes() const { return writes_; }

  // Whether the outputs of L steps overlap a, b or c (out may alias b).
  // Strides may be negative (rows in reverse): a span runs from the lowest
  // row to the end of the highest.
  bool overwrites_inputs(std::size_t L) const {
    if (L == 0) return false;
    const auto span = [&](const T* p, std::ptrdiff_t stride, std::size_t cols) {
      const std::ptrdiff_t last = stride * std::ptrdiff_t(L - 1);
      const auto at = [&](std::ptrdiff_t elements) {
        return reinterpret_cast<std::intptr_t>(p) + elements * std::ptrdiff_t(sizeof(T));
      };
      return std::pair{at(std::min<std::ptrdiff_t>(last, 0)), at(std::max<std::ptrdiff_t>(last, 0) + std::ptrdiff_t(cols))};
    };
    const auto out = readout_ ? span(r_.y, r_.y_stride, width_) : span(r_.out, r_.out_stride, C_);
    const auto meets = [&](const T* p, std::ptrdiff_t stride) {
      if (!p) return false;
      const auto in = span(p, stride, C_);
      return in.first < out.second && out.first < in.second;
    };
    return meets(r_.a, r_.a_stride) || meets(r_.b, r_.b_stride) || meets(r_.c, r_.c_stride);
  }

  // Steps [t0, t1) of outputs [w0, w1) of every group (w0, w1 multiples of
  // W, or w1 = width), from the states `state` (C values, updated). Rows of
  // kSweepBytes or more are swept a step at a time (if sweep); narrower ones
  // run in time tiles: each tile's rows stream through the cache once while
  // every batch's states stay in registers. Group g's chains run after group
  // g - 1's (the readout adds to its outputs). Write: emit the states or
  // the readout; prod (if set): the products of a over the steps (C values).
  void run_range(std::size_t w0, std::size_t w1, std::size_t t0, std::size_t t1, T* state,
                 T* prod, bool write, bool sweep = true) const {
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
    if (sweep && (w1 - w0) * groups_ * sizeof(T) >= kSweepBytes) {
      run_rows(r_.from(t0), w0, w1, state, prod, t1 - t0, write);
      return;
    }
    // Time tiles of 128 KiB of a, b and out where one bundle covers the
    // columns; where several passes (bundles, the scalar rest) read the
    // rows, ~24 KiB, so that the passes after the first find the tile's rows
    // in L1: 40-56 channels of 1024 steps ran 1.2x-1.3x faster so on a Zen
    // 3 (32 KiB of L1), while one bundle of 64 channels of 2^18 steps ran
    // 0.85x (0.79x-0.97x) with the small tiles.
    const std::size_t n = w1 - w0, row_bytes = std::max<std::size_t>(1, n * groups_ * sizeof(T) * 3);
    const bool one_pass = n % W == 0 && chain_bundle(n / W, prod != nullptr) * W == n;
    const std::size_t tile = one_pass ? std::max<std::size_t>(64, (std::size_t(128) << 10) / row_bytes)
                                      : std::max<std::size_t>(16, (std::size_t(24) << 10) / row_bytes);
    T tile_prod[4 * W];  // products of one tile's chains (or rest), multiplied into prod
    // the products of channels [c, c + n) over the tile, into prod
    const auto merge_products = [&](std::size_t c, std::size_t n) {
      for (std::size_t i = 0; i < n; ++i) prod[c + i] = flushed_product(prod[c + i], tile_prod[i]);
    };
    for (std::size_t s = t0; s < t1; s += tile) {
      const std::size_t len = std::min(tile, t1 - s);
      const RecurrenceArgs<T> r = r_.from(s);
      for (std::size_t g = 0; g < groups_; ++g) {
        const std::size_t c0 = g * width_ + w0, c1 = g * width_ + w1;
        const Emit e = !write ? Emit::none : !readout_ ? Emit::states
                       : g == 0 ? Emit::readout_first : Emit::readout_add;
        std::size_t c = c0;
        while (c + W <= c1) {
          const std::size_t k = chain_bundle((c1 - c) / W, prod != nullptr);
          Chain<T> ch = chains(r, c, state + c);
          if (prod) {
            ch.prod = tile_prod;
            run_chains<true>(r, ch, k, len, e);
            merge_products(c, k * W);
          } else {
            run_chains<false>(r, ch, k, len, e);
          }
          c += k * W;
        }
        if constexpr (kHalf > 0)
          if (c + kHalf <= c1) {  // half a batch of the rest in one chain
            Chain<T> ch = chains(r, c, state + c);
            ch.prod = tile_prod;
            run_half(r, ch, len, e, prod != nullptr);
            if (prod) merge_products(c, kHalf);
            c += kHalf;
          }
        while (c < c1) {  // the rest, up to 4 channels at a time
          const std::size_t k = std::min<std::size_t>(4, c1 - c);
          if (prod) {
            run_scalar<true>(r, state + c, tile_prod, len, c, k, e);
            merge_products(c, k);
          } else {
            run_scalar<false>(r, state + c, nullptr, len, c, k, e);
          }
          c += k;
        }
      }
    }
  }

  // Steps [t0, t1) again from the state x0 (C values), writing outputs, a
  // tile at a time, until the end of a tile where the carry p x0 (p: the
  // products of a since t0) is negligible in every state; returns the
  // steps run. scratch: 3 C values.
  std::size_t rerun(std::size_t t0, std::size_t t1, const T* x0, T* scratch) const {
    T* s = scratch;
    T* p = s + C_;
    T* tile_p = p + C_;
    std::copy(x0, x0 + C_, s);
    std::fill(p, p + C_, T(1));
    const std::size_t tile = std::max<std::size_t>(64, 4096 / C_);
    for (std::size_t t = t0; t < t1;) {
      const std::size_t e = std::min(t1, t + tile);
      run_range(0, width_, t, e, s, tile_p, true);
      bool negligible = true;
      for (std::size_t c = 0; c < C_; ++c) {
        p[c] = flushed_product(p[c], tile_p[c]);
        negligible = negligible && carry_negligible(p[c] * x0[c], s[c]);
      }
      t = e;
      if (negligible) return t - t0;
    }
    return t1 - t0;
  }

 private:
  // One real channel at stride 1: the lane scan runs its steps in the lanes.
  bool contiguous() const {
    return C_ == 1 && !readout_ && r_.b_stride == 1 && (r_.a_stride == 0 || r_.a_stride == 1) &&
           (!r_.out || r_.out_stride == 1) && !is_complex_scalar<T>::value;
  }

  // Batches in the next bundle (chains run in lockstep), `left` batches to
  // go: 5 to 7 in one bundle, where 4 and the rest would read the rows in two
  // passes (40 channels of 4096 steps, Zen 3: 1.15x-1.19x, at 0.95 of the
  // ceiling; bench/LOG.md, scan core "Stop 47"); else the widest bundle that
  // fits (kChains, kChains / 2, ..., 4), else all that are left. Bundles
  // tracking products (the time-chunked passes, which run only where
  // channels are few) stay at 4 or fewer, which compiles fewer kernels.
  static std::size_t chain_bundle(std::size_t left, bool prod) {
    if (!prod && kChains >= 8 && left > 4 && left < 8) return left;
    for (std::size_t g = kChains; g > 4 && !prod; g /= 2)
      if (left >= g) return g;
    return std::min<std::size_t>(left, 4);
  }

  // The sweep keeps its states (and products) in a buffer of its own, or
  // in out's rows when it emits them: a cache line of `state` shared with
  // another thread's channels would bounce between the cores every step.
  void run_rows(const RecurrenceArgs<T>& r, std::size_t w0, std::size_t w1, T* state, T* prod,
                std::size_t len, bool write) const {
    const std::size_t n = w1 - w0;
    std::vector<T> own(n * groups_ * (prod ? 2 : 1));
    T* h = own.data();
    T* p = prod ? h + n * groups_ : nullptr;
    auto transfer = [&](bool in) {  // the range's values of state (and prod) in or out
      for (std::size_t g = 0; g < groups_; ++g) {
        const std::size_t c0 = g * width_ + w0;
        auto one = [&](T* all, T* mine) {
          if (in) std::copy(all + c0, all + c0 + n, mine + g * n);
          else std::copy(mine + g * n, mine + (g + 1) * n, all + c0);
        };
        one(state, h);
        if (prod) one(prod, p);
      }
    };
    transfer(true);
    with_flag(r.a_stride == 0, [&](auto const_a) {
      constexpr bool CA = decltype(const_a)::value;
      with_flag(prod != nullptr, [&](auto pr) {
        constexpr bool P = decltype(pr)::value;
        if (!write)
          recurrence_rows<Arch, CA, Emit::none, P>(r, groups_, w0, w1, h, p, len);
        else if (readout_)
          recurrence_rows<Arch, CA, Emit::readout_first, P>(r, groups_, w0, w1, h, p, len);
        else
          recurrence_rows<Arch, CA, Emit::states, P>(r, groups_, w0, w1, h, p, len);
      });
    });
    transfer(false);
  }

  // The bundle of chains from channel c on (its products, if tracked, set
  // by run_range).
  Chain<T> chains(const RecurrenceArgs<T>& r, std::size_t c, T* state) const {
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
    return ch;
  }

  template <bool Prod>
  void run_chains(const RecurrenceArgs<T>& r, const Chain<T>& ch, std::size_t n, std::size_t len,
                  Emit e) const {
    with_flag(r.a_stride == 0, [&](auto const_a) {
      constexpr bool CA = decltype(const_a)::value;
      auto go = [&](auto emit) {
        constexpr Emit E = decltype(emit)::value;
        const auto wide = [&](auto k) {  // 5 or more never track products (chain_bundle)
          constexpr std::size_t K = decltype(k)::value;
          if constexpr (kChains >= K && !Prod) recurrence_chains<Arch, K, CA, E, false>(r, ch, len);
        };
        switch (n) {
          case 16: wide(std::integral_constant<std::size_t, 16>{}); break;
          case 8: wide(std::integral_constant<std::size_t, 8>{}); break;
          case 7: wide(std::integral_constant<std::size_t, 7>{}); break;
          case 6: wide(std::integral_constant<std::size_t, 6>{}); break;
          case 5: wide(std::integral_constant<std::size_t, 5>{}); break;
          case 4: recurrence_chains<Arch, 4, CA, E, Prod>(r, ch, len); break;
          case 3: recurrence_chains<Arch, 3, CA, E, Prod>(r, ch, len); break;
          case 2: recurrence_chains<Arch, 2, CA, E, Prod>(r, ch, len); break;
          case 1: recurrence_chains<Arch, 1, CA, E, Prod>(r, ch, len); break;
          default: assert(false && "chain_bundle returns 1-8 or 16"); break;
        }
      };
      with_emit(e, go);
    });
  }

  // One chain of the half-width arch (kHalf channels), products if prod.
  void run_half(const RecurrenceArgs<T>& r, const Chain<T>& ch, std::size_t len, Emit e,
                bool prod) const {
    if constexpr (kHalf > 0) {
      with_flag(r.a_stride == 0, [&](auto const_a) {
        with_flag(prod, [&](auto pr) {
          with_emit(e, [&](auto emit) {
            recurrence_chains<Half, 1, decltype(const_a)::value, decltype(emit)::value,
                              decltype(pr)::value>(r, ch, len);
          });
        });
      });
    }
  }

  // k = 1 to 4 channels from c, their states at h (and products at prod)
  template <bool Prod>
  void run_scalar(const RecurrenceArgs<T>& r, T* h, T* prod, std::size_t len, std::size_t c,
                  std::size_t k, Emit e) const {
    with_flag(r.a_stride == 0, [&](auto const_a) {
      constexpr bool CA = decltype(const_a)::value;
      const auto go = [&](auto chains) {
        with_emit(e, [&](auto emit) {
          recurrence_scalar<decltype(chains)::value, CA, decltype(emit)::value, Prod>(r, h, prod, len, c);
        });
      };
      switch (k) {
        case 4: go(std::integral_constant<std::size_t, 4>{}); break;
        case 3: go(std::integral_constant<std::size_t, 3>{}); break;
        case 2: go(std::integral_constant<std::size_t, 2>{}); break;
        default: go(std::integral_constant<std::size_t, 1>{}); break;
      }
    });
  }

  RecurrenceArgs<T> r_;
  std::size_t C_, groups_, width_;
  bool readout_ = false, writes_ = false;
};

// Threads over channel ranges: each runs every step for its own outputs
// (a multiple of the SIMD width), so no thread waits for another. They run
// chains, not sweeps: threads sweeping neighbouring parts of the same rows
// ran at half the speed of one thread on Zen 5 and the Xeon alike
// (likely the hardware prefetches of one fetching the lines the other
// writes). Without sweeps run_range allocates nothing: no exception to
// carry out of the region (ParallelErrors).
template <class Arch, class T>
void run_channel_parallel(const RecurrencePlan<Arch, T>& plan, std::size_t L, T* h,
                          [[maybe_unused]] int threads) {
  constexpr std::size_t W = RecurrencePlan<Arch, T>::W;
  const std::size_t width = plan.width(), units = (width + W - 1) / W;
  SSM_OMP(parallel num_threads(threads))
  {
    const std::size_t j = std::size_t(thread_index()), n = std::size_t(team_size());
    const std::size_t w0 = std::min(width, units * j / n * W);
    const std::size_t w1 = std::min(width, units * (j + 1) / n * W);
    if (w0 < w1) plan.run_range(w0, w1, 0, L, h, nullptr, plan.writes(), false);
  }
}

// Threads over time, in super-blocks of one chunk per thread and two
// passes (Blelloch 1990). Pass 1: thread 0 runs its chunk from the true
// state; thread j > 0 runs its chunk from h = 0, writing its outputs, and
// keeps the chunk's affine map h -> P_j h + E_j. Pass 2: thread j > 0
// composes the maps before it into its chunk's true initial state x_j and
// reruns the chunk from x_j (RecurrencePlan::rerun) until the carry that
// pass 1 left out, (a_t0 ... a_t) x_j, is negligible in every state: it
// then stays so to the end of the chunk, since it shrinks by the same
// factors |a_t| that the states' magnitude scale m_t = |a_t| m_(t-1) + |b_t|
// shrinks by at most. With decaying coefficients (every stable SSM) the
// rerun is short and the chunks are even; without decay it is the whole
// chunk, and thread 0, which has no rerun, takes a longer chunk: the split
// balances the rerun share measured in the previous super-block. Where
// the outputs overwrite an input (out may alias b), pass 1 writes nothing
// and pass 2 reruns the whole chunk. Products of a are flushed to zero
// below sqrt(min normal) (flushed_product; one channel's lane scan checks
// every 4 batches), so the result equals the sequential one to rounding
// relative to the largest state of the sequence.
// Steps of one thread's time chunk: ~2 MiB of a, b and what is written.
template <class T>
std::size_t time_chunk_steps(std::size_t C, bool writes) {
  const std::size_t bytes_per_step = C * sizeof(T) * (writes ? 3 : 2);
  return std::max<std::size_t>(2048, (std::size_t(2) << 20) / bytes_per_step);
}

// Whether, from step 0 on, every channel's product |a_0 ... a_t| falls
// below epsilon within `steps` steps: then a carry entering a time chunk
// is forgotten as fast, and pass 2 of run_time_parallel reruns only that
// many steps. A probe of the first steps stands for the sequence.
template <class T>
bool carry_fades_within(const RecurrenceArgs<T>& r, std::size_t C, std::size_t steps) {
  using R = decltype(std::abs(T()));
  std::vector<R> prod(C, R(1));
  for (std::size_t t = 0; t < steps; ++t) {
    const T* a = r.a + std::ptrdiff_t(t) * r.a_stride;
    R largest = 0;
    for (std::size_t c = 0; c < C; ++c) largest = std::max(largest, prod[c] *= std::abs(a[c]));
    if (largest < std::numeric_limits<R>::epsilon()) return true;
  }
  return false;
}

template <class Arch, class T>
void run_time_parallel(const RecurrencePlan<Arch, T>& plan, std::size_t L, std::size_t C, T* h,
                       int threads) {
  // A chunk's map applied to the state x entering it: P x + E. From x = 0
  // the chunk's first pass was the true run, E, even where the product P
  // overflowed (|a| > 1 over a long chunk), and inf * 0 would be NaN.
  const auto compose = [](T P, T x, T E) { return x == T(0) ? E : P * x + E; };
  const std::size_t part = time_chunk_steps<T>(C, plan.writes());
  const auto max_threads = std::size_t(threads);
  std::vector<T> work(6 * C * max_threads);  // P_j, E_j, x_j and the rerun's scratch
  std::vector<T> start(2 * C);  // each super-block's initial state, double-buffered
  std::copy(h, h + C, start.begin());
  std::vector<double> rerun_share(max_threads, 0.0);
  const std::size_t width = plan.width();
  // Pass 1 writes outputs only if they overwrite no input (out may alias b)
  const bool early = plan.writes() && !plan.overwrites_inputs(L);
  std::size_t blocks = 0;
  // pass 1 and pass 2 (sweeps of wide rows allocate) run through errors,
  // the barriers outside them: every thread reaches each
  ParallelErrors errors;
  SSM_OMP(parallel num_threads(threads))
  {
    const std::size_t j = std::size_t(thread_index()), n = std::size_t(team_size());
    T* P = work.data() + 6 * C * j;
    T* E = P + C;
    T* x = E + C;
    // the rerun expected of the first super-block: none if nothing is
    // written, a short one, or the whole chunk where pass 1 wrote nothing
    double share = !plan.writes() ? 0.0 : early ? 0.0625 : 0.5;
    std::size_t k = 0;
    for (std::size_t s0 = 0; s0 < L; ++k) {
      const std::size_t all = std::min(part * n, L - s0);
      // thread 0: 1 + share units of work, the others 1 unit each
      auto chunk_start = [&](std::size_t i) {
        return i == 0 ? 0 : i >= n ? all
                      : std::min(all, std::size_t(double(all) * (share + double(i)) / (double(n) + share)));
      };
      const std::size_t t0 = s0 + chunk_start(j), t1 = s0 + chunk_start(j + 1);
      // The last chunk's products of a serve only its end state, which the
      // rerun gives: run to the end, or stopped where the carry was
      // negligible, as it stays (the outputs of pass 1 after that point lack
      // it too). Without them its pass 1 runs the wide bundles of chunk 0
      // (Xeon, 256 channels: 1.17x slower with them, thread 0 waiting).
      const bool last_reruns = early && j > 0 && j + 1 == n;
      T* h_in = start.data() + C * (k % 2);
      T* h_out = start.data() + C * ((k + 1) % 2);
      errors.run([&] {
        if (j == 0) {
          plan.run_range(0, width, t0, t1, h_in, nullptr, plan.writes());
          if (n == 1) std::copy(h_in, h_in + C, h_out);
        } else {
          std::fill(E, E + C, T(0));
          plan.run_range(0, width, t0, t1, E, last_reruns ? nullptr : P, early);
        }
      });
      SSM_OMP(barrier)
      if (j > 0)
        errors.run([&] {
          std::copy(h_in, h_in + C, x);  // chunk 0's final state
          for (std::size_t i = 1; i < j; ++i) {
            const T* Pi = work.data() + 6 * C * i;
            for (std::size_t c = 0; c < C; ++c) x[c] = compose(Pi[c], x[c], Pi[C + c]);
          }
          std::size_t rerun = 0;
          if (early) {
            rerun = plan.rerun(t0, t1, x, x + C);
            rerun_share[j] = t1 > t0 ? double(rerun) / double(t1 - t0) : 0.0;
          } else if (plan.writes()) {  // the whole chunk; pass 1 (writing nothing) cost ~half
            std::copy(x, x + C, x + C);
            plan.run_range(0, width, t0, t1, x + C, nullptr, true);
            rerun_share[j] = 0.5;
          }
          if (last_reruns)  // the rerun's end state, or E where the carry faded
            std::copy_n(rerun == t1 - t0 ? x + C : E, C, h_out);
          else if (j + 1 == n)
            for (std::size_t c = 0; c < C; ++c) h_out[c] = compose(P[c], x[c], E[c]);
        });
      s0 += all;
      if (s0 >= L) {  // the end of the parallel region waits for every thread
        if (j == 0) blocks = k + 1;
        break;
      }
      SSM_OMP(barrier)
      share = *std::max_element(rerun_share.begin(), rerun_share.begin() + std::ptrdiff_t(n));
    }
  }
  errors.rethrow();
  const T* h_end = start.data() + C * (blocks % 2);
  std::copy(h_end, h_end + C, h);
}

// Rows of a page (4 KiB) or more: their own rules for splitting across
// threads (time_chunks_cheaper, run_recurrence).
template <class T>
constexpr bool page_rows(std::size_t channels) {
  return channels * sizeof(T) >= 4096;
}

// Whether time chunks beat channel blocks although there are channels
// enough for the threads. Channel blocks put every thread on every row:
// two threads streaming halves of each row moved 1.2x-1.5x the bytes of one
// thread on an Emerald Rapids Xeon (rows of 1-4 KiB), and 0.5x-0.9x on a
// Zen 4 VM (rows of 1-16 KiB), halves of the time 2.0x-2.2x and 1.1x-1.4x.
// Time chunks win where they need no rerun (nothing is written before the
// end) or a short one (the carry fades within an eighth of a chunk): 256 x
// 2^16 on two threads 1.15x-1.3x faster. With slow decay (an S4D-like |a|
// near 1) the rerun is the whole chunk and they ran 2x slower than channel
// blocks. Rows of a page or more go in time chunks only on two threads,
// where the last chunk tracks no products (run_time_parallel): 1024 x 2^14
// 1.3x-1.6x faster on the Zen 4 VM, 0.95x-1.1x on the Xeon; with middle
// chunks (4 or 8 threads) 0.7x-0.9x on the Xeon (bench/LOG.md, scan core
// "Stop 34" and "Stop 35").
template <class Arch, class T>
bool time_chunks_cheaper(const RecurrencePlan<Arch, T>& plan, const RecurrenceArgs<T>& args,
                         std::size_t L, std::size_t channels, int threads) {
  const bool wide = page_rows<T>(channels);
  if (!plan.writes()) return !wide;
  if (plan.overwrites_inputs(L)) return false;  // pass 2 reruns every chunk
  if (wide && threads != 2) return false;
  const std::size_t probe = time_chunk_steps<T>(channels, true) / 8;
  return carry_fades_within(args, channels, std::min(L, probe));
}

// The fewest steps per thread for which time is split across threads
// (scan() sizes its super-blocks by it, so that they are split too).
constexpr std::size_t kMinStepsPerTimeChunk = 4096;

template <class Arch, class T>
void run_recurrence(const RecurrenceArgs<T>& args, std::size_t L, std::size_t channels,
                    std::size_t groups, T* h, int requested_threads) {
  constexpr std::size_t W = xsimd::batch<T, Arch>::size;
  const RecurrencePlan<Arch, T> plan(args, channels, groups);
  // More threads than the work splits into (channel blocks of 4 batches,
  // time chunks of kMinStepsPerTimeChunk steps) run as many as it does, not
  // one: 64 x 2^14 on a 16-core Xeon ran serial with 16 threads, 1.86x with 2.
  const std::size_t splits = std::max(plan.width() / (4 * W), L / kMinStepsPerTimeChunk);
  const int threads = int(std::min<std::size_t>(std::size_t(resolve_threads(requested_threads)),
                                                std::max<std::size_t>(2, splits)));
  // Below ~64K state updates a thread costs more than it saves.
  const bool worth_threads = threads > 1 && L * channels >= (std::size_t(1) << 16);
  // Rows of a page or more on two threads split time from 1024 steps a
  // thread: 2048-4096 steps of 1024-4096 floats ran 1.2x-1.9x faster so
  // than in channel blocks on a Zen 3 VM (bench/LOG.md, scan core "Stop 39").
  const bool wide_pair = threads == 2 && page_rows<T>(channels);
  const std::size_t min_steps = wide_pair ? kMinStepsPerTimeChunk / 4 : kMinStepsPerTimeChunk;
  const bool time_splits = L >= std::size_t(threads) * min_steps;
  if (worth_threads && plan.width() >= std::size_t(threads) * 4 * W &&
      !(time_splits && time_chunks_cheaper(plan, args, L, channels, threads)))
    run_channel_parallel(plan, L, h, threads);
  else if (worth_threads && time_splits)
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

template <class T>
void check_state(const char* where, const T* h, std::size_t channels) {
  if (channels > 0 && h == nullptr)
    throw std::invalid_argument(std::string(where) + ": h is null for " + std::to_string(channels) +
                                " channels");
}

// Rows of an output must not overlap: a stride left at its default, 0,
// would write every step over one row, and threads over time would race.
// The message is built only on failure: two std::strings made for it on
// every call cost ~60 ns a call (Zen 4), as much as 150 steps of one channel.
inline std::invalid_argument row_stride_error(const char* where, const std::string& name,
                                              std::ptrdiff_t stride, std::size_t least,
                                              const std::string& why) {
  return std::invalid_argument(std::string(where) + ": " + name + " must be at least " +
                               std::to_string(least) + " in magnitude (" + why + "), got " +
                               std::to_string(stride));
}

inline bool stride_below(std::ptrdiff_t stride, std::size_t least) {
  return std::size_t(stride < 0 ? -stride : stride) < least;
}

// Throws unless |stride| >= least; `why` says where `least` comes from.
inline void check_row_stride(const char* where, const char* name, std::ptrdiff_t stride,
                             std::size_t least, const char* why) {
  if (stride_below(stride, least)) throw row_stride_error(where, name, stride, least, why);
}

template <class T>
void check_output_stride(const char* where, const char* name, Steps<T> s, std::size_t L,
                         std::size_t width) {
  if (s.data && L > 1 && stride_below(s.stride, width))
    throw row_stride_error(where, std::string(name) + ".stride", s.stride, width,
                           "its rows hold " + std::to_string(width) + " values");
}

}  // namespace detail

/// Runs h_t = a_t .* h_{t-1} + b_t for t = 0 .. L-1 over `channels` channels.
/// a, b: (L, channels) time-major (a.stride = 0: a time-invariant a; any
/// stride may be negative, rows in reverse).
/// h: the initial state h_{-1} (channels values) on entry, h_{L-1} on return.
/// out: if out.data is set, receives every h_t; it may be b itself (same
/// data and stride), and its rows must not overlap (|out.stride| >=
/// channels, else std::invalid_argument). Any alignment is correct; narrow
/// rows run fastest on 64-byte lines (16 floats in L2: 0.93x with a, b and
/// out 16 bytes off a line, as from malloc; 0.82x with out alone off one,
/// every store split across two lines).
/// threads: 0 uses OpenMP's maximum (negative: the same); inside an
/// enclosing parallel region it runs on the calling thread; fewer run where
/// the work does not split into that many (channel blocks of 4 SIMD
/// batches, time chunks of 4096 steps). Work is split
/// across channel blocks when there are enough channels, otherwise across
/// time chunks: then the result equals the sequential one up to rounding
/// relative to the largest state (tested to 2e-5 in float, 1e-13 in
/// double: tests/test_scan_core.cpp), as long as the product of |a_t| over
/// a chunk (up to ~2 MiB of steps) stays finite.
/// T: float, double, std::complex<float> or std::complex<double>. Arch: the
/// SIMD instruction set (default: what the compiler's -march enables).
/// Throws std::invalid_argument if a.data, b.data or h is null while L and
/// channels are positive, or out's rows overlap (L > 1).
template <class T, class Arch = xsimd::default_arch>
void linear_recurrence(std::size_t L, std::size_t channels, Steps<const T> a,
                       Steps<const T> b, T* h, Steps<T> out = {}, int threads = 0) {
  const char* where = "ssm::linear_recurrence";
  detail::check_steps(where, "a", a.data, L, channels);
  detail::check_steps(where, "b", b.data, L, channels);
  detail::check_state(where, h, channels);
  detail::check_output_stride(where, "out", out, L, channels);
  detail::RecurrenceArgs<T> r{a.data, a.stride, b.data, b.stride};
  r.out = out.data;
  r.out_stride = out.stride;
  detail::run_recurrence<Arch>(r, L, channels, 1, h, threads);
}

/// The recurrence read out without storing the states: the channels form
/// `groups` groups of width = channels / groups, and
///     y_t[w] = sum_g c_t[g * width + w] * h_t[g * width + w],   w < width,
/// e.g. an SSM output y_t = sum_n C_n x_t[n] with channels laid out (N, H).
/// c: (L, channels) time-major, stride 0 for constant weights; y: (L, width),
/// required (|y.stride| >= width when L > 1). Other arguments as
/// linear_recurrence(). Throws std::invalid_argument if groups is 0 or does
/// not divide channels, an operand is null while L and channels are
/// positive, or y's rows overlap.
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
  detail::check_steps(where, "y", y.data, L, channels / groups);
  detail::check_state(where, h, channels);
  detail::check_output_stride(where, "y", y, L, channels / groups);
  detail::RecurrenceArgs<T> r{a.data, a.stride, b.data, b.stride};
  r.c = c.data;
  r.c_stride = c.stride;
  r.y = y.data;
  r.y_stride = y.stride;
  detail::run_recurrence<Arch>(r, L, channels, groups, h, threads);
}

/// linear_recurrence() on Eigen matrices: a is L x C (or 1 x C for a
/// time-invariant a), b is L x C, h holds C states (in: h_{-1}, out: h_{L-1}).
/// Returns every h_t as an L x C matrix. Throws std::invalid_argument for
/// other shapes of a or h.
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
