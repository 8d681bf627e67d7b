// The recurrent form of Mamba-2's SSM for one head of one sequence: a
// P x N state per head, a scalar decay per step,
//   h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T,   y_t = h_t C_t + D x_t,
// stored n-major (N rows of P, as h[n, p]) so that both the rank-1 update
// and the readout are vertical over p: no horizontal sums.
//
// Since the decay is one scalar per head and step, the state is kept as
// g = h / s with s_t = prod exp(dt A) since the last renormalization: then
//   g_t = g_{t-1} + x_t ((dt_t / s_t) B_t)^T,   y_t = s_t (g_t C_t) + D x_t,
// two FMAs per state element and step (the update and the readout), where
// the direct form needs a third operation, the multiply by the decay. s is
// reset to 1 (g multiplied by it once) at the first step and whenever it
// falls below 2^-32, so 1/s stays below 2^32: g's terms keep the relative
// errors of h's, and nothing overflows that the true state would not.
// log2 s is summed in double: a float sum near -32 is 2^-19 apart, which
// put up to 1.3e-6 of error into each s, and each y, by itself.
#pragma once

#include <ssm/detail/aligned.hpp>
#include <ssm/detail/exp.hpp>
#include <ssm/detail/recurrence.hpp>             // static_for, prefetch, SSM_ALWAYS_INLINE
#include <ssm/detail/selective_scan_kernel.hpp>  // softplus, log2e_double

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace ssm::detail {

// log2 of the smallest scale s before the state is renormalized
constexpr float ssd_scale_floor = -32.f;

// Steps of one time block: a block's rows of x, B and C and its partial
// readouts stay in L1 while every state tile passes over them, and each
// column block of a head reads all of the block's scaled B and C again
// (2 x T x N floats: 32 KiB at T = 64, N = 64, all of Zen 3's L1). The
// tiles alone on Zen 3, N = 64 / 128: 0.88 / 0.82 of the FMA ceiling at 64
// steps, 0.93 / 0.91 at 32, 0.87 / 0.84 at 16; the whole kernel on a Xeon
// (AVX-512), 32 steps against 64: 1.00x-1.18x (bench/LOG.md, Mamba-2 "Stop 40").
constexpr std::size_t ssd_time_block = 32;

// How dt is made from the projection's raw value (transformers' Mamba-2):
// dt = clamp(softplus(raw + bias), lo, hi); NaN stays NaN.
struct StepSize {
  float bias = 0;
  bool softplus = false;
  float lo = 0, hi = INFINITY;
  float operator()(float raw) const {
    float dt = raw + bias;
    if (softplus) dt = detail::softplus(dt);
    return dt < lo ? lo : dt > hi ? hi : dt;
  }
};

// One head of one sequence; every pointer at the head's first element.
struct SsdHead {
  std::size_t L = 0, N = 0, P = 0;
  const float* x = nullptr;   // x_t[p] at x[t * x_ts + p]
  std::ptrdiff_t x_ts = 0;
  const float* dt = nullptr;  // raw dt_t at dt[t * dt_ts]
  std::ptrdiff_t dt_ts = 0;
  const float* B = nullptr;   // B_t[n] at B[t * B_ts + n]
  std::ptrdiff_t B_ts = 0;
  const float* C = nullptr;
  std::ptrdiff_t C_ts = 0;
  StepSize step;
  float A = 0;  // <= 0
  float D = 0;
  float* state = nullptr;  // (N, P): h_{-1} in, h_{L-1} out
  float* y = nullptr;      // y_t[p] at y[t * y_ts + p]
  std::ptrdiff_t y_ts = 0;
};

// Per-thread scratch of the recurrent form, grown once. Cache-line aligned:
// the tiles load rows of the partial readouts as whole batches, and from
// the heap's 16-byte alignment each 64-byte load spanned two lines
// (measured while x was packed here too, N = 64: 1.05x-1.15x on Zen 5 and
// on an Emerald Rapids Xeon).
struct SsdScratch {
  using Buffer = line_vector<float>;
  Buffer partial;    // (T, P): the readouts of the state rows done so far
  Buffer dt;         // per step: dt, then dt / s
  Buffer scale;      // per step: r = log2 s - k, then s = 2^k 2^r
  Buffer scale_exp;  // per step: k = round(log2 s)
  Buffer mult;       // per step: what a renormalization multiplies g by
  Buffer bs, C;      // (T, N): (dt / s) B; the block's rows of C, packed
  std::vector<unsigned char> renorm;
};

// One time block of a head for the tile kernels, every pointer at the
// block's first step: g += x_t bs_t^T with bs_t = (dt_t / s_t) B_t, after
// g *= mult[t] where renorm[t]; y_t = scale_t (g C_t) + D x_t, scale_t = s_t.
// Readouts of all but the last rows of n go through `partial` (contiguous:
// y's rows, often a multiple of 4 KiB apart, would share a few L1 sets).
struct SsdBlock {
  std::size_t T = 0, P = 0, N = 0;
  const float* x = nullptr;   // x_t[p] at x[t * x_ts + p]
  std::ptrdiff_t x_ts = 0;
  const float* bs = nullptr;  // (T, N)
  const float* C = nullptr;
  std::ptrdiff_t C_ts = 0;
  const float* scale = nullptr;  // s_t
  const unsigned char* renorm = nullptr;
  const float* mult = nullptr;
  float D = 0;
  float* partial = nullptr;  // (T, P)
  float* y = nullptr;
  std::ptrdiff_t y_ts = 0;
  float* state = nullptr;  // (N, P), scaled
  float out_scale = 1;     // applied to the state when stored (the last block: s)
  bool stream_y = false;   // y by streaming stores (its rows batch-aligned)
};

// A store that bypasses the caches, at p aligned to the batch: for output
// that is not read again before it would have left them. A plain store
// first reads the line it writes (the write-allocate), and for the SSD
// kernel's strided rows of y that read is one more miss beside those of
// x's rows. On an Emerald Rapids Xeon (24 heads, L = 256 and 2048, five
// paired rounds): 1.04x-1.75x at N = 64, 0.77x-1.37x at N = 128, median
// 1.15x; on Zen 5 within the spread.
template <class Arch>
SSM_ALWAYS_INLINE void store_streaming(float* p, const xsimd::batch<float, Arch>& v) {
#if XSIMD_WITH_AVX512F
  if constexpr (std::is_base_of<xsimd::avx512f, Arch>::value) {
    _mm512_stream_ps(p, v);
    return;
  }
#endif
#if XSIMD_WITH_AVX
  if constexpr (std::is_base_of<xsimd::avx, Arch>::value) {
    _mm256_stream_ps(p, v);
    return;
  }
#endif
#if XSIMD_WITH_SSE2
  if constexpr (std::is_base_of<xsimd::sse2, Arch>::value) {
    _mm_stream_ps(p, v);
    return;
  }
#endif
  v.store_aligned(p);
}

// Orders this thread's streaming stores before its later stores (and so
// before whatever synchronization follows them).
inline void streaming_fence() {
#if XSIMD_WITH_SSE2
  _mm_sfence();
#endif
}

// States [n0, n0 + R) x [p0, p0 + PV W) in registers for the whole block.
// first: the readout starts from 0, else from `partial`; last: the readout
// is complete and y is written, else `partial`. Middle: neither, known at
// compile time, for the tiles between a column block's first and last (11
// of 13 with 64 states on AVX2): their loop then tests no flag, which made
// the tiles 4%-7% faster over 16 and 32 steps on Zen 3, and the AVX-512
// ones no slower (bench/LOG.md, Mamba-2 "Stop 43"); the first and last tiles
// keep the flags at run time, which saves instantiating each tile 4 times.
template <class Arch, std::size_t R, std::size_t PV, bool Middle = false>
void ssd_tile(const SsdBlock& k, std::size_t n0, std::size_t p0, bool first_tile, bool last_tile) {
  const bool first = !Middle && first_tile, last = !Middle && last_tile;
  using batch = xsimd::batch<float, Arch>;
  constexpr std::size_t W = batch::size;
  // operands in locals: the stores could otherwise alias k's fields
  const std::size_t T = k.T, P = k.P, N = k.N;
  const std::ptrdiff_t x_ts = k.x_ts, C_ts = k.C_ts, y_ts = k.y_ts;
  const unsigned char* renorm = k.renorm;
  const float *mult = k.mult, *scale = k.scale;
  const bool stream = k.stream_y;
  const batch D(k.D);
  const float* x = k.x + p0;
  const float* B = k.bs + n0;
  const float* C = k.C + n0;
  float* partial = k.partial + p0;
  float* y = k.y + p0;
  float* const s0 = k.state + n0 * P + p0;
  batch g[R][PV];
  static_for<R>([&](auto r) {
    static_for<PV>([&](auto j) { g[r][j] = batch::load_unaligned(s0 + r * P + j * W); });
  });
  for (std::size_t t = 0; t < T; ++t, x += x_ts, B += N, C += C_ts, partial += P, y += y_ts) {
    if (renorm[t]) {
      const batch m(mult[t]);
      static_for<R>([&](auto r) { static_for<PV>([&](auto j) { g[r][j] *= m; }); });
    }
    batch xv[PV], acc[PV];
    static_for<PV>([&](auto j) {
      xv[j] = batch::load_unaligned(x + j * W);
      acc[j] = first ? batch(0.f) : batch::load_unaligned(partial + j * W);
    });
    static_for<R>([&](auto r) {  // g += x bs^T: one FMA per element
      const batch b(B[r]);
      static_for<PV>([&](auto j) { g[r][j] = xsimd::fma(b, xv[j], g[r][j]); });
    });
    static_for<R>([&](auto r) {  // y' += g C: one FMA per element
      const batch c(C[r]);
      static_for<PV>([&](auto j) { acc[j] = xsimd::fma(c, g[r][j], acc[j]); });
    });
    if (last) {
      const batch st(scale[t]);
      static_for<PV>([&](auto j) {
        const batch v = xsimd::fma(st, acc[j], D * xv[j]);
        if (stream)
          store_streaming<Arch>(y + j * W, v);
        else
          v.store_unaligned(y + j * W);
      });
    } else {
      static_for<PV>([&](auto j) { acc[j].store_unaligned(partial + j * W); });
    }
  }
  const batch out(k.out_scale);
  static_for<R>([&](auto r) {
    static_for<PV>([&](auto j) { (g[r][j] * out).store_unaligned(s0 + r * P + j * W); });
  });
}

// Columns [p0, p1) of every state row, one at a time: the p that do not
// fill a batch.
inline void ssd_columns_scalar(const SsdBlock& k, std::size_t p0, std::size_t p1) {
  const std::size_t N = k.N;
  for (std::size_t p = p0; p < p1; ++p)
    for (std::size_t t = 0; t < k.T; ++t) {
      const float x = k.x[std::ptrdiff_t(t) * k.x_ts + std::ptrdiff_t(p)];
      const float* B = k.bs + t * N;
      const float* C = k.C + std::ptrdiff_t(t) * k.C_ts;
      float acc = 0;
      for (std::size_t n = 0; n < N; ++n) {
        float& g = k.state[n * k.P + p];
        if (k.renorm[t]) g *= k.mult[t];
        g += B[n] * x;
        acc += C[n] * g;
      }
      k.y[std::ptrdiff_t(t) * k.y_ts + std::ptrdiff_t(p)] = k.scale[t] * acc + k.D * x;
    }
  for (std::size_t n = 0; n < N && k.out_scale != 1; ++n)
    for (std::size_t p = p0; p < p1; ++p) k.state[n * k.P + p] *= k.out_scale;
}

// Tiles of R rows of a PV-batch column block, then of 4 rows, then single
// rows: as many of R as leave a multiple of 4 where that is possible (with
// R = 5, 64 rows are 12 x 5 + 4 and 128 are 24 x 5 + 2 x 4; with R = 6,
// 10 x 6 + 4 and 20 x 6 + 2 x 4).
template <class Arch, std::size_t R, std::size_t PV>
void ssd_column_block(const SsdBlock& k, std::size_t p0) {
  const std::size_t N = k.N;
  std::size_t tiles = N / R;
  if constexpr (R != 4) {
    std::size_t fewer = tiles;
    while (fewer > 0 && (N - fewer * R) % 4 != 0) --fewer;
    if ((N - fewer * R) % 4 == 0) tiles = fewer;
  }
  std::size_t n0 = 0;
  for (; n0 < tiles * R; n0 += R) {
    if (n0 != 0 && n0 + R != N)
      ssd_tile<Arch, R, PV, true>(k, n0, p0, false, false);
    else
      ssd_tile<Arch, R, PV>(k, n0, p0, n0 == 0, n0 + R == N);
  }
  if constexpr (R != 4)  // at most a few
    for (; n0 + 4 <= N; n0 += 4) ssd_tile<Arch, 4, PV>(k, n0, p0, n0 == 0, n0 + 4 == N);
  for (; n0 < N; ++n0) ssd_tile<Arch, 1, PV>(k, n0, p0, n0 == 0, n0 + 1 == N);
}

// The block over all states: columns in blocks of PV batches, then the
// rest. A tile loads, per FMA, 1 / PV broadcasts of B and C and 1 / R rows
// of x and of the partial readouts, and stores 1 / (2 R) rows. With 16
// vector registers (AVX2), 5 x 2 (10 state registers, 15 in all): there
// what bounds the tile is its loads, and mostly the broadcasts (a 4 x 2
// tile ran at 0.83 of the FMA ceiling alone, 0.97-0.98 with them from
// registers); 0.8 loads and stores per FMA against 0.875 with 4 x 2 (0.88
// of the ceiling alone, on Zen 3). With 32 (AVX-512), 6 x 4 (24 state
// registers; the rows of x, then those of the readouts, and a broadcast in
// the other 8, with no spill): 0.5 loads and stores per FMA against 0.625
// with 4 x 4; the kernel 1.04x-1.10x as fast as with 4 x 4 on a Sapphire
// Rapids-class Xeon, 1.02x-1.07x on an Emerald Rapids one (bench/LOG.md,
// Mamba-2 "Stop 45").
template <class Arch>
void ssd_block(const SsdBlock& k) {
  using batch = xsimd::batch<float, Arch>;
  constexpr std::size_t W = batch::size, R = W >= 16 ? 6 : 5, PV = W >= 16 ? 4 : 2;
  if (k.N == 0) {  // no states: y = D x
    for (std::size_t t = 0; t < k.T; ++t)
      for (std::size_t p = 0; p < k.P; ++p)
        k.y[std::ptrdiff_t(t) * k.y_ts + std::ptrdiff_t(p)] =
            k.D * k.x[std::ptrdiff_t(t) * k.x_ts + std::ptrdiff_t(p)];
    return;
  }
  const std::size_t vectors = k.P / W;
  std::size_t v = 0;
  for (; v + PV <= vectors; v += PV) ssd_column_block<Arch, R, PV>(k, v * W);
  switch (vectors - v) {
    case 1: ssd_column_block<Arch, R, 1>(k, v * W); break;
    case 2: if constexpr (PV > 2) ssd_column_block<Arch, R, 2>(k, v * W); break;
    case 3: if constexpr (PV > 3) ssd_column_block<Arch, R, 3>(k, v * W); break;
    default: break;
  }
  ssd_columns_scalar(k, vectors * W, k.P);
}

// dt[i] = step(dt[i]) for n values, vectorized (softplus as detail::softplus)
template <class Arch>
void step_sizes(const StepSize& f, float* dt, std::size_t n) {
  using batch = xsimd::batch<float, Arch>;
  const batch bias(f.bias), lo(f.lo), hi(f.hi);
  std::size_t i = 0;
  for (; i + batch::size <= n; i += batch::size) {
    batch d = batch::load_unaligned(dt + i) + bias;
    if (f.softplus) d = softplus<Arch>(d);
    // NaN stays NaN: select on d < lo / d > hi, both false for NaN
    d = xsimd::select(d < lo, lo, xsimd::select(d > hi, hi, d));
    d.store_unaligned(dt + i);
  }
  for (; i < n; ++i) dt[i] = f(dt[i]);
}

// Asks for the cache lines of x (to read) and with Y those of y (to write)
// of steps [t0, t0 + n) of a head, and with BC those of B and C (which a
// block's first head fetches for the others).
inline void prefetch_head_rows(const SsdHead& h, std::size_t t0, std::size_t n, bool BC, bool Y) {
  auto lines = [](const float* p, std::size_t floats, auto write) {
    const char* c = reinterpret_cast<const char*>(p);
    for (std::size_t b = 0; b < floats * sizeof(float); b += 64) prefetch<decltype(write)::value>(c + b);
  };
  for (std::size_t i = 0; i < n; ++i) {
    const auto t = std::ptrdiff_t(t0 + i);
    lines(h.x + t * h.x_ts, h.P, std::false_type{});
    if (Y) lines(h.y + t * h.y_ts, h.P, std::true_type{});
    if (BC) {
      lines(h.B + t * h.B_ts, h.N, std::false_type{});
      lines(h.C + t * h.C_ts, h.N, std::false_type{});
    }
  }
}

// Rows [0, n) of `width` floats, `stride` apart, into `to`, back to back.
template <class Arch>
void pack_rows(const float* from, std::ptrdiff_t stride, std::size_t n, std::size_t width, float* to) {
  using batch = xsimd::batch<float, Arch>;
  for (std::size_t i = 0; i < n; ++i, from += stride, to += width) {
    std::size_t m = 0;
    for (; m + batch::size <= width; m += batch::size) batch::load_unaligned(from + m).store_unaligned(to + m);
    for (; m < width; ++m) to[m] = from[m];
  }
}

// Steps [t0, t0 + n) of a head (n <= ssd_time_block): the step sizes
// and the scales s (log2 s a running sum, then 2^k 2^r with k = round(log2 s)
// and r the rest: both exact in float; one exp2 per step, vectorized), the
// scaled B, then the tiles. c: log2 s, carried from block to block. The tiles
// read C from `C_packed` (the block's rows of C packed by the caller, n x N,
// or null to read them in place), which saves a pass over C's strided rows
// a page apart per tile (1.05x-1.12x on Zen 5 with 4 KiB pages), and x in
// place: packing x took its rows' misses up front, before any FMA; read by
// the first tile they can overlap with its FMAs. 1.00x-1.05x in a driver on
// Zen 5 (either page size; rows 8 or 16 KiB apart, whose lines share a few
// L1 sets, too), within the spread in bench_mamba2 (bench/LOG.md, "x read
// in place").
template <class Arch>
void ssd_head_block(const SsdHead& h, std::size_t t0, std::size_t n, double& c, SsdScratch& s,
                    const float* C_packed = nullptr, bool stream_y = false) {
  using batch = xsimd::batch<float, Arch>;
  constexpr std::size_t W = batch::size;
  const std::size_t T = ssd_time_block;
  s.partial.resize(T * h.P);
  s.bs.resize(T * h.N);
  s.dt.resize(T);
  s.scale.resize(T);
  s.scale_exp.resize(T);
  s.mult.resize(T);
  s.renorm.resize(T);
  const double A2 = double(h.A) * log2e_double;
  for (std::size_t i = 0; i < n; ++i) s.dt[i] = h.dt[std::ptrdiff_t(t0 + i) * h.dt_ts];
  step_sizes<Arch>(h.step, s.dt.data(), n);
  for (std::size_t i = 0; i < n; ++i) {
    const double next = c + double(s.dt[i]) * A2;
    // renormalize at the first step (then a single step is the direct
    // update) and when s falls below 2^-32; NaN renormalizes to NaN
    s.renorm[i] = t0 + i == 0 || !(next >= double(ssd_scale_floor));
    if (s.renorm[i]) {
      s.mult[i] = float(std::exp2(next));
      c = 0;
    } else {
      c = next;
    }
    const double k = std::nearbyint(c);
    s.scale_exp[i] = float(k);
    s.scale[i] = float(c - k);
  }
  std::size_t i = 0;  // s = 2^k 2^r, and dt / s scales B
  for (; i + W <= n; i += W) {
    const batch sc = exp2_reduced(batch::load_unaligned(s.scale.data() + i)) *
                     exp2_nonpositive<Arch>(batch::load_unaligned(s.scale_exp.data() + i));
    sc.store_unaligned(s.scale.data() + i);
    (batch::load_unaligned(s.dt.data() + i) / sc).store_unaligned(s.dt.data() + i);
  }
  for (; i < n; ++i) {
    s.scale[i] = std::ldexp(std::exp2(s.scale[i]), int(s.scale_exp[i]));
    s.dt[i] /= s.scale[i];
  }
  // (dt / s) B, once per step and state: the tiles broadcast it from memory,
  // which costs no vector instruction
  for (std::size_t t = 0; t < n; ++t) {
    const float* B = h.B + std::ptrdiff_t(t0 + t) * h.B_ts;
    for (std::size_t m = 0; m < h.N; ++m) s.bs[t * h.N + m] = B[m] * s.dt[t];
  }
  SsdBlock k;
  k.T = n;
  k.P = h.P;
  k.N = h.N;
  k.x = h.x + std::ptrdiff_t(t0) * h.x_ts;
  k.x_ts = h.x_ts;
  k.bs = s.bs.data();
  k.C = C_packed ? C_packed : h.C + std::ptrdiff_t(t0) * h.C_ts;
  k.C_ts = C_packed ? std::ptrdiff_t(h.N) : h.C_ts;
  k.scale = s.scale.data();
  k.renorm = s.renorm.data();
  k.mult = s.mult.data();
  k.D = h.D;
  k.partial = s.partial.data();
  k.y = h.y + std::ptrdiff_t(t0) * h.y_ts;
  k.y_ts = h.y_ts;
  k.state = h.state;
  k.out_scale = t0 + n == h.L ? s.scale[n - 1] : 1.f;
  k.stream_y = stream_y;
  ssd_block<Arch>(k);
}

// Heads [j0, j1) of `heads(j)` over all their steps, time block by time
// block, every head within a block: the rows of x, B, C and y of a block are
// read and written once for all the heads, and a block's C is packed once
// for the heads of a group. carry: log2 s of each head. y goes by streaming
// stores where its rows allow it and the heads write more of it than a
// typical L2 holds (1 MiB): most of it would have left the caches before
// anything reads it.
template <class Arch, class Heads>
void ssd_heads_recurrent(const Heads& heads, std::size_t j0, std::size_t j1, std::size_t L,
                         std::vector<double>& carry, SsdScratch& s) {
  constexpr std::size_t W = xsimd::batch<float, Arch>::size;
  carry.assign(j1 - j0, 0.0);
  const bool large = j0 < j1 && (j1 - j0) * L * heads(j0).P * sizeof(float) >= (std::size_t(1) << 20);
  auto streams = [&](const SsdHead& h) {
    return large && reinterpret_cast<std::uintptr_t>(h.y) % (W * sizeof(float)) == 0 &&
           h.y_ts % std::ptrdiff_t(W) == 0;
  };
  constexpr std::size_t T = ssd_time_block;
  for (std::size_t t0 = 0; t0 < L; t0 += T) {
    const std::size_t n = std::min(T, L - t0);
    const float* packed = nullptr;  // the rows of C now in s.C
    for (std::size_t j = j0; j < j1; ++j) {
      const SsdHead h = heads(j);
      const float* C = h.C + std::ptrdiff_t(t0) * h.C_ts;
      if (C != packed) {
        s.C.resize(T * h.N);
        pack_rows<Arch>(C, h.C_ts, n, h.N, s.C.data());
        packed = C;
      }
      // the next head's rows (and the next block's B and C), during this
      // head's block: strided rows the hardware prefetchers miss
      const std::size_t nj = j + 1 < j1 ? j + 1 : j0, nt0 = j + 1 < j1 ? t0 : t0 + T;
      if (nt0 < L) {
        const SsdHead next = heads(nj);
        prefetch_head_rows(next, nt0, std::min(T, L - nt0), nt0 != t0, !streams(next));
      }
      ssd_head_block<Arch>(h, t0, n, carry[j - j0], s, s.C.data(), streams(h));
    }
  }
  if (large) streaming_fence();
}

}  // namespace ssm::detail
