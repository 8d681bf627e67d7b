// SIMD kernels of the first-order linear recurrence h_t = a_t * h_{t-1} + b_t,
// element-wise over channels, written once against xsimd::batch.
//
// Layout: step t of a sequence starts at data + t * stride, channels
// contiguous (time-major, as a (L, channels) row-major matrix); stride 0
// repeats one row (a time-invariant coefficient).
#pragma once

#include <ssm/detail/aligned.hpp>

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>

// Kernel helpers must inline into their loops whatever the optimization
// level: a call per batch would cost more than the work it does.
#if defined(__GNUC__) || defined(__clang__)
#define SSM_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define SSM_ALWAYS_INLINE inline
#endif

namespace ssm::detail {

// What a kernel writes at each step besides updating the state.
enum class Emit {
  none,           // only the final state
  states,         // every h_t, to out
  readout_first,  // y_t[w] = c_t[j] h_t[j] for the channels j of the first group
  readout_add,    // y_t[w] += c_t[j] h_t[j] for the channels of the other groups
};

// Channel j belongs to group j / width and feeds output w = j % width.
template <class T>
struct RecurrenceArgs {
  const T* a;
  std::ptrdiff_t a_stride;  // 0: time-invariant
  const T* b;
  std::ptrdiff_t b_stride;
  T* out = nullptr;         // Emit::states
  std::ptrdiff_t out_stride = 0;
  const T* c = nullptr;     // Emit::readout_*: the readout weights
  std::ptrdiff_t c_stride = 0;
  T* y = nullptr;           // Emit::readout_*: outputs, `width` per step
  std::ptrdiff_t y_stride = 0;
  std::size_t width = 0;

  // The same arguments from step t0 on.
  RecurrenceArgs from(std::size_t t0) const {
    const auto t = std::ptrdiff_t(t0);
    RecurrenceArgs r = *this;
    r.a += t * a_stride;
    r.b += t * b_stride;
    if (out) r.out += t * out_stride;
    if (c) r.c += t * c_stride;
    if (y) r.y += t * y_stride;
    return r;
  }
};

template <class T>
struct is_complex_scalar : std::false_type {};
template <class T>
struct is_complex_scalar<std::complex<T>> : std::true_type {};

// a * h + b: fused for real batches. Scalars and complex values use the
// plain expression (which the compiler may contract), so the SIMD lanes and
// the scalar tail can differ in the last bit.
template <class T, class Arch>
SSM_ALWAYS_INLINE xsimd::batch<T, Arch> affine(const xsimd::batch<T, Arch>& a, const xsimd::batch<T, Arch>& h,
                             const xsimd::batch<T, Arch>& b) {
  return xsimd::fma(a, h, b);
}
template <class T, class Arch>
SSM_ALWAYS_INLINE xsimd::batch<std::complex<T>, Arch> affine(const xsimd::batch<std::complex<T>, Arch>& a,
                                           const xsimd::batch<std::complex<T>, Arch>& h,
                                           const xsimd::batch<std::complex<T>, Arch>& b) {
  return a * h + b;
}
template <class T>
SSM_ALWAYS_INLINE T affine(const T& a, const T& h, const T& b) {
  return a * h + b;
}

// A hint to fetch the cache line at p (to be written, if Write); no effect
// on the result.
template <bool Write = false>
SSM_ALWAYS_INLINE void prefetch([[maybe_unused]] const void* p) {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p, Write ? 1 : 0);
#endif
}

// p * a for a running product of coefficients (the time-chunked scan's
// maps), flushed to zero below sqrt(min normal): a product of decaying
// coefficients would otherwise pass through the subnormal range, where
// Intel cores take a ~100-cycle microcode assist per multiply (2 threads
// ran at 0.4x of one on an Emerald Rapids Xeon). Such a product multiplies a state
// of the same sequence, so its part in any result is under 2^-63 (float)
// of the sequence's magnitude. Complex products are left alone.
template <class T>
SSM_ALWAYS_INLINE T flushed_product(const T& p, const T& a) {
  if constexpr (is_complex_scalar<T>::value) {
    return p * a;
  } else {
    const T r = p * a;
    return std::abs(r) < std::sqrt(std::numeric_limits<T>::min()) ? T(0) : r;
  }
}
template <class T, class Arch>
SSM_ALWAYS_INLINE xsimd::batch<T, Arch> flushed_product(const xsimd::batch<T, Arch>& p,
                                                        const xsimd::batch<T, Arch>& a) {
  if constexpr (is_complex_scalar<T>::value) {
    return p * a;
  } else {
    const xsimd::batch<T, Arch> r = p * a;
    const xsimd::batch<T, Arch> tiny(std::sqrt(std::numeric_limits<T>::min()));
    return xsimd::select(xsimd::abs(r) < tiny, xsimd::batch<T, Arch>(T(0)), r);
  }
}

// Calls f(std::integral_constant<std::size_t, k>) for k = 0 .. K-1, unrolled,
// so arrays of batches indexed by k stay in registers.
template <std::size_t... k, class F>
SSM_ALWAYS_INLINE void static_for(std::index_sequence<k...>, F&& f) {
  (f(std::integral_constant<std::size_t, k>{}), ...);
}
template <std::size_t K, class F>
SSM_ALWAYS_INLINE void static_for(F&& f) {
  static_for(std::make_index_sequence<K>{}, std::forward<F>(f));
}

// A bundle of K chains: K W neighbouring channels over one range of steps,
// chain k the W channels from k W on. Pointers at the bundle's first
// channel and first step: a and b; out at its first state (Emit::states)
// or readout output (readout modes); c likewise.
template <class T>
struct Chain {
  const T* a;
  const T* b;
  T* out;
  const T* c;
  T* h;     // K W states: in, and out
  T* prod;  // K W products of a over the steps (Prod)
};

// K chains in lockstep over L steps, each with its states in registers:
// K independent dependency chains hide the FMA latency. Strides (elements
// per step) come from r.
template <class Arch, std::size_t K, bool ConstA, Emit E, bool Prod, class T>
void recurrence_chains(const RecurrenceArgs<T>& r, const Chain<T>& ch, std::size_t L) {
  using batch = xsimd::batch<T, Arch>;
  constexpr std::size_t W = batch::size;
  constexpr bool Readout = E == Emit::readout_first || E == Emit::readout_add;
  // Operands in locals, one pointer per array: a vector store may alias
  // anything, so fields of ch and r read in the loop were read again after
  // every store (five loads a step for one chain beside its two of data;
  // Zen 4, 16 channels x 1024 steps in L2: 0.82x-0.90x of the same loop
  // written by hand), and a pointer per chain left the registers at 8 chains.
  const T* const a = ch.a;
  const T* const b = ch.b;
  const T* const c = ch.c;
  T* const out = ch.out;
  batch s[K], p[K], a_const[K];
  static_for<K>([&](auto k) {
    s[k] = batch::load_unaligned(ch.h + k * W);
    if constexpr (Prod) p[k] = batch(T(1));
    if constexpr (ConstA) a_const[k] = batch::load_unaligned(a + k * W);
  });
  const std::ptrdiff_t a_stride = r.a_stride, b_stride = r.b_stride, c_stride = r.c_stride;
  const std::ptrdiff_t out_stride = Readout ? r.y_stride : r.out_stride;
  std::ptrdiff_t ia = 0, ib = 0, io = 0, ic = 0;  // element offsets of step t
  for (std::size_t t = 0; t < L; ++t) {
    static_for<K>([&](auto k) {
      const batch a_t = ConstA ? a_const[k] : batch::load_unaligned(a + ia + k * W);
      const batch b_t = batch::load_unaligned(b + ib + k * W);
      // Each state stored after the next batch's loads (the last chain's
      // after the next step's first): a load 16-63 bytes above a pending
      // store modulo 4 KiB waits for it, and arrays malloc'd one after
      // another lie 16 bytes apart, so the next line of a or b came just
      // above the store issued before it (Zen 5, 64 channels x 1024 steps in
      // L2: 7.1-7.7 -> 9.3-9.9 G updates/s; the 16-core Xeon, 64 x 2^18
      // beyond the caches: 1.22-1.28 -> 1.39-1.46).
      if constexpr (E == Emit::states) {
        if constexpr (k > 0) s[k - 1].store_unaligned(out + io + (k - 1) * W);
        else if (t > 0) s[K - 1].store_unaligned(out + io - out_stride + (K - 1) * W);
      }
      s[k] = affine(a_t, s[k], b_t);
      if constexpr (Prod) p[k] = flushed_product(p[k], a_t);
      if constexpr (E == Emit::readout_first)
        (batch::load_unaligned(c + ic + k * W) * s[k]).store_unaligned(out + io + k * W);
      if constexpr (E == Emit::readout_add)
        affine(batch::load_unaligned(c + ic + k * W), s[k], batch::load_unaligned(out + io + k * W))
            .store_unaligned(out + io + k * W);
    });
    if constexpr (!ConstA) ia += a_stride;
    ib += b_stride;
    if constexpr (Readout) ic += c_stride;
    if constexpr (E != Emit::none) io += out_stride;
  }
  if constexpr (E == Emit::states)
    if (L > 0) s[K - 1].store_unaligned(out + io - out_stride + (K - 1) * W);
  static_for<K>([&](auto k) {
    s[k].store_unaligned(ch.h + k * W);
    if constexpr (Prod) p[k].store_unaligned(ch.prod + k * W);
  });
}

// The arch of half Arch's batch width, with FMA (AVX-512 -> AVX2, AVX2 ->
// SSE4.2), or void: it runs half a batch of the channels left over from
// the full ones (see RecurrencePlan::run_range).
template <class Arch>
struct half_width {
  static constexpr std::size_t bytes = Arch::alignment();  // a register's
  using type = std::conditional_t<
      bytes == 64 && xsimd::fma3<xsimd::avx2>::supported(), xsimd::fma3<xsimd::avx2>,
      std::conditional_t<bytes == 32 && xsimd::fma3<xsimd::sse4_2>::supported(),
                         xsimd::fma3<xsimd::sse4_2>, void>>;
};

// Elements of T from p to the next cache line (0 if p is on one, or if p
// is not aligned to T itself).
template <class T>
std::size_t lead_to_line(const T* p) {
  const auto bytes = reinterpret_cast<std::uintptr_t>(p) % cache_line_bytes;
  return bytes == 0 || bytes % sizeof(T) != 0 ? 0 : (cache_line_bytes - bytes) / sizeof(T);
}

// Wide rows: L steps of channels [w0, w1) of every group, each step sweeping
// its row in address order, the states in h (or, emitting them, in the rows
// of out: h holds the final ones) and the products in prod, n = w1 - w0
// values per group, group after group. Chains walking a column of a wide
// row touch a new page every step, one stream per row, which the hardware
// prefetchers do not follow; a sweep reads and writes every array as a
// single stream. E is Emit::readout_first for a readout: group 0 writes y,
// the others add to it.
template <class Arch, bool ConstA, Emit E, bool Prod, class T>
void recurrence_rows(const RecurrenceArgs<T>& r, std::size_t groups, std::size_t w0,
                     std::size_t w1, T* h, T* prod, std::size_t L) {
  using batch = xsimd::batch<T, Arch>;
  constexpr std::size_t W = batch::size;
  constexpr bool Readout = E == Emit::readout_first;
  const std::size_t n = w1 - w0;
  for (std::size_t t = 0; t < L; ++t) {
    const auto step = std::ptrdiff_t(t);
    T* y = Readout ? r.y + step * r.y_stride + w0 : nullptr;
    for (std::size_t g = 0; g < groups; ++g) {
      const auto c0 = std::ptrdiff_t(g * r.width + w0);
      const T* a = r.a + (ConstA ? 0 : step * r.a_stride) + c0;
      const T* b = r.b + step * r.b_stride + c0;
      T* out = E == Emit::states ? r.out + step * r.out_stride + c0 : nullptr;
      const T* c = Readout ? r.c + step * r.c_stride + c0 : nullptr;
      T* hg = h + g * n;
      T* pg = Prod ? prod + g * n : nullptr;
      // Emitting the states, step t reads h_{t-1} from the row it wrote
      // at t - 1 and writes only out: one store per batch, not two (on an
      // Emerald Rapids Xeon 1.13x in L3 and 1.3x-1.4x beyond it, 4 KiB-16
      // KiB rows; on Zen 5 no change beyond its spread).
      const T* hin = E == Emit::states && t > 0 ? out - r.out_stride : hg;
      T* hout = E == Emit::states ? out : hg;
      auto one = [&](std::size_t i) {
        hout[i] = affine(a[i], hin[i], b[i]);
        if constexpr (Prod) pg[i] = flushed_product(pg[i], a[i]);
        if constexpr (Readout) y[i] = g == 0 ? c[i] * hout[i] : affine(c[i], hout[i], y[i]);
      };
      // The first values one at a time, up to where the widest stream (out,
      // else b) starts a cache line: arrays from malloc sit 16 bytes past
      // one, and every batch then spans two lines (Zen 5, 4096 x 4096
      // floats at +16 bytes: 0.87x of a streaming loop over the same
      // arrays, 1.09x peeled).
      std::size_t i = 0;
      for (const std::size_t head = std::min(n, lead_to_line(E == Emit::states ? hout : b)); i < head; ++i)
        one(i);
      if constexpr (!Prod && !Readout) {
        // Each batch stored after the next one's loads: a load 16-63 bytes
        // above a pending store modulo 4 KiB waits for it, and arrays
        // malloc'd one after another lie 16 bytes apart (16384 x 1024
        // floats, a, b, out at 0, 16, 32 bytes: 0.70x-0.94x of a streaming
        // loop stored in order, 1.00x-1.03x so).
        auto at = [&](std::size_t j) {
          return affine(batch::load_unaligned(a + j), batch::load_unaligned(hin + j), batch::load_unaligned(b + j));
        };
        if (i + W <= n) {
          batch s = at(i);
          for (; i + 2 * W <= n; i += W) {
            const batch next = at(i + W);
            s.store_unaligned(hout + i);
            s = next;
          }
          s.store_unaligned(hout + i);
          i += W;
        }
      }
      for (; i + W <= n; i += W) {
        const batch a_t = batch::load_unaligned(a + i);
        const batch s = affine(a_t, batch::load_unaligned(hin + i), batch::load_unaligned(b + i));
        s.store_unaligned(hout + i);
        if constexpr (Prod) flushed_product(batch::load_unaligned(pg + i), a_t).store_unaligned(pg + i);
        if constexpr (Readout) {
          const batch c_t = batch::load_unaligned(c + i);
          (g == 0 ? c_t * s : affine(c_t, s, batch::load_unaligned(y + i))).store_unaligned(y + i);
        }
      }
      for (; i < n; ++i) one(i);
    }
  }
  if constexpr (E == Emit::states)  // the final states, from the last row
    for (std::size_t g = 0; g < groups && L > 0; ++g) {
      const T* last = r.out + std::ptrdiff_t(L - 1) * r.out_stride + std::ptrdiff_t(g * r.width + w0);
      std::copy(last, last + n, h + g * n);
    }
}

// K channels [channel, channel + K) over L steps from step 0 of r, a
// scalar chain each: the channels that do not fill a batch. h and prod
// hold those channels' states and products. The K chains are independent,
// so their latencies overlap. One channel at a time, every step waits on
// the last FMA: 1024 steps of 60 channels took 23 us on a Zen 3 against
// 12.5 for 56 (all in batches); 4 side by side, 18 us.
template <std::size_t K, bool ConstA, Emit E, bool Prod, class T>
void recurrence_scalar(const RecurrenceArgs<T>& r, T* h, T* prod, std::size_t L,
                       std::size_t channel) {
  const auto j = std::ptrdiff_t(channel);
  const std::ptrdiff_t w = r.width ? std::ptrdiff_t(channel % r.width) : 0;
  T s[K], p[K];
  for (std::size_t k = 0; k < K; ++k) s[k] = h[k], p[k] = T(1);
  for (std::size_t i = 0; i < L; ++i) {
    const auto t = std::ptrdiff_t(i);
    const T* a = r.a + (ConstA ? 0 : t * r.a_stride) + j;
    const T* b = r.b + t * r.b_stride + j;
    for (std::size_t k = 0; k < K; ++k) {  // b read before out is written: out may be b
      s[k] = affine(a[k], s[k], b[k]);
      if constexpr (Prod) p[k] = flushed_product(p[k], a[k]);
      const auto l = std::ptrdiff_t(k);
      if constexpr (E == Emit::states) r.out[t * r.out_stride + j + l] = s[k];
      if constexpr (E == Emit::readout_first) r.y[t * r.y_stride + w + l] = r.c[t * r.c_stride + j + l] * s[k];
      if constexpr (E == Emit::readout_add) r.y[t * r.y_stride + w + l] += r.c[t * r.c_stride + j + l] * s[k];
    }
  }
  for (std::size_t k = 0; k < K; ++k) {
    h[k] = s[k];
    if constexpr (Prod) prod[k] = p[k];
  }
}

// Lane i of a swizzle by ShiftIndex<S> holds lane i - S (lanes below S: lane
// 0, which the callers mask off).
template <std::size_t S>
struct ShiftIndex {
  static constexpr unsigned get(unsigned i, unsigned) { return i >= S ? i - S : 0; }
};
struct LastLane {
  static constexpr unsigned get(unsigned, unsigned n) { return n - 1; }
};

// fma(a, b, c) where m, else c; and x * y where m, else x. On AVX-512 one
// masked instruction each (the lane scan's blends cost as much as its
// arithmetic: 1.2x the lane scan's throughput on Zen 5); a blend elsewhere.
template <class batch>
SSM_ALWAYS_INLINE batch fma_where(const typename batch::batch_bool_type& m, const batch& a,
                                  const batch& b, const batch& c) {
#if XSIMD_WITH_AVX512F
  using T = typename batch::value_type;
  if constexpr (std::is_base_of<xsimd::avx512f, typename batch::arch_type>::value) {
    if constexpr (std::is_same<T, float>::value) return _mm512_mask3_fmadd_ps(a, b, c, m);
    if constexpr (std::is_same<T, double>::value) return _mm512_mask3_fmadd_pd(a, b, c, m);
  }
#endif
  return xsimd::select(m, xsimd::fma(a, b, c), c);
}
template <class batch>
SSM_ALWAYS_INLINE batch mul_where(const typename batch::batch_bool_type& m, const batch& x,
                                  const batch& y) {
#if XSIMD_WITH_AVX512F
  using T = typename batch::value_type;
  if constexpr (std::is_base_of<xsimd::avx512f, typename batch::arch_type>::value) {
    if constexpr (std::is_same<T, float>::value) return _mm512_mask_mul_ps(x, m, x, y);
    if constexpr (std::is_same<T, double>::value) return _mm512_mask_mul_pd(x, m, x, y);
  }
#endif
  return xsimd::select(m, x * y, x);
}

#if XSIMD_WITH_AVX2
// AVX2 helpers for scan_lanes on 256-bit registers, on the integer view of
// the lanes. x moved up by Bytes inside each 128-bit half, the bytes below
// taken from the top of fill's half.
template <int Bytes>
SSM_ALWAYS_INLINE __m256i shift_up_in_halves(__m256i x, __m256i fill) {
  return _mm256_alignr_epi8(x, fill, 16 - Bytes);
}
// The low half's last lane (of Size bytes) in every lane of the high half;
// fill's low half below.
template <std::size_t Size>
SSM_ALWAYS_INLINE __m256i low_last_to_high(__m256i x, __m256i fill) {
  const __m256i last = _mm256_shuffle_epi32(x, Size == 4 ? 0xFF : 0xEE);
  return _mm256_permute2x128_si256(fill, last, 0x20);
}
SSM_ALWAYS_INLINE __m256i int_view(__m256 x) { return _mm256_castps_si256(x); }
SSM_ALWAYS_INLINE __m256i int_view(__m256d x) { return _mm256_castpd_si256(x); }
template <class T>
SSM_ALWAYS_INLINE auto real_view(__m256i x) {
  if constexpr (std::is_same<T, float>::value) return _mm256_castsi256_ps(x);
  else return _mm256_castsi256_pd(x);
}

// scan_lanes on AVX2: the doubling steps inside each 128-bit half (one-cycle
// shuffles that fill the low lanes themselves), then the high half composed
// after the low half's last lane (the top level of Sklansky's 1960 scan).
// Doubling steps across the whole register, a lane-crossing permute and a
// blend each (AVX2 has no masked arithmetic), ran one channel 1.36x slower
// on Zen 3.
template <class batch>
SSM_ALWAYS_INLINE void scan_lanes_avx2(batch& a, batch& b) {
  using T = typename batch::value_type;
  const __m256i one = int_view(batch(T(1)).data), zero = _mm256_setzero_si256();
  auto compose = [&](__m256i a_prev, __m256i b_prev) {
    b = xsimd::fma(a, batch(real_view<T>(b_prev)), b);
    a = a * batch(real_view<T>(a_prev));
  };
  compose(shift_up_in_halves<sizeof(T)>(int_view(a.data), one),
          shift_up_in_halves<sizeof(T)>(int_view(b.data), zero));
  if constexpr (sizeof(T) == 4)
    compose(shift_up_in_halves<8>(int_view(a.data), one), shift_up_in_halves<8>(int_view(b.data), zero));
  compose(low_last_to_high<sizeof(T)>(int_view(a.data), one),
          low_last_to_high<sizeof(T)>(int_view(b.data), zero));
}
#endif

// Inclusive scan of the affine maps h -> a_i h + b_i across the lanes (lane i
// becomes the composition of lanes 0..i): log2(W) doubling steps (Hillis &
// Steele 1986), (a, b) <- (a * a', a * b' + b) with (a', b') shifted by S,
// in the lanes from S up (from[k]: the lanes from 2^k up).
template <std::size_t S = 1, class batch>
SSM_ALWAYS_INLINE void scan_lanes(batch& a, batch& b,
                                  const typename batch::batch_bool_type* from) {
#if XSIMD_WITH_AVX2
  if constexpr (std::is_base_of<xsimd::avx2, typename batch::arch_type>::value) {
    scan_lanes_avx2(a, b);
    return;
  }
#endif
  if constexpr (S < batch::size) {
    using index = xsimd::batch<xsimd::as_unsigned_integer_t<typename batch::value_type>,
                               typename batch::arch_type>;
    constexpr auto shift = xsimd::make_batch_constant<index, ShiftIndex<S>>();
    const batch a_prev = xsimd::swizzle(a, shift), b_prev = xsimd::swizzle(b, shift);
    b = fma_where(*from, a, b_prev, b);
    a = mul_where(*from, a, a_prev);
    scan_lanes<2 * S>(a, b, from + 1);
  }
}

// The masks scan_lanes takes: from[k] holds the lanes from 2^k up. Built
// at run time, once per call: GCC does not always inline the conversion of
// xsimd's compile-time masks, which would then sit in the loop.
template <class batch>
struct LaneMasks {
  typename batch::batch_bool_type from[8];  // log2 of the lanes: 8 covers up to 256
  LaneMasks() {
    using T = typename batch::value_type;
    alignas(64) T lane_of[batch::size];
    for (std::size_t i = 0; i < batch::size; ++i) lane_of[i] = T(i);
    const batch lane = batch::load_aligned(lane_of);
    for (std::size_t k = 0; (std::size_t(1) << k) < batch::size; ++k) from[k] = lane >= batch(T(1 << k));
  }
};

// How recurrence_contiguous carries the state from batch to batch: by the
// batch's whole map (its last lane; the same operands as hv's last lane, so
// the same bits), carry = a_all carry + b_all, one FMA on the chain and the
// two broadcasts off it; or as hv's last lane, one shuffle fewer but a
// lane-crossing one on the chain. The map where the lane scan is cheap
// (AVX2's in-half shuffles: 1.33x on Zen 3), hv's lane where shuffles bound
// the loop (with the permutes' scan on Zen 3, the map was 1.15x slower).
template <class Arch>
inline constexpr bool carry_by_map = std::is_base_of<xsimd::avx2, Arch>::value;

// The carry into the next batch, in every lane: a and b scanned by
// scan_lanes, hv = a carry + b the batch's states, last: LastLane's swizzle.
template <class batch, class Last>
SSM_ALWAYS_INLINE batch next_carry(const batch& a, const batch& b, const batch& hv,
                                   const batch& carry, const Last& last) {
  if constexpr (carry_by_map<typename batch::arch_type>)
    return xsimd::fma(xsimd::swizzle(a, last), carry, xsimd::swizzle(b, last));
  else
    return xsimd::swizzle(hv, last);
}

// A single channel stored contiguously (stride 1), real T: one channel has
// no parallelism across channels, so the time steps of a batch are combined
// by scan_lanes and the carry from the previous batch applied with one FMA;
// the dependency chain is one FMA and one broadcast per W steps instead of
// one FMA per step. h: the state in and out; prod (if Prod): prod_t a_t.
template <class Arch, bool ConstA, bool Store, bool Prod, class T>
void recurrence_contiguous(const RecurrenceArgs<T>& r, T& h, T& prod, std::size_t L) {
  using batch = xsimd::batch<T, Arch>;
  using index = xsimd::batch<xsimd::as_unsigned_integer_t<T>, Arch>;
  constexpr std::size_t W = batch::size;
  const auto last = xsimd::make_batch_constant<index, LastLane>();
  const LaneMasks<batch> masks;

  // The lane scan keeps the out-of-order window full of dependent work, so
  // it runs too few steps ahead to hide memory latency: prefetch 2 KiB ahead
  // (tuned on Zen 5 at 2^22-2^24 steps beyond the caches: 1.5x-1.6x against
  // none; 1.1x-1.2x against 4 KiB, the best before the masked lane scan).
  constexpr std::size_t ahead = 2048 / sizeof(T);
  // Each batch's states are stored after the next batch's loads: a store
  // followed by a load 16-63 bytes above it modulo 4 KiB (a or b just below
  // out, as consecutive heap blocks of a power-of-two size are) made the
  // load wait on the store, 1.2x slower on Zen 5 (and 2.7x for the first of
  // two threads in bench_scan_core); stored a batch later, every offset
  // runs at the same speed. (out may alias b: the store is behind the loads.)
  batch carry(h), p(T(1)), pending(T(0));
  std::size_t t = 0;
  for (; t + W <= L; t += W) {
    if (t + ahead < L) {
      prefetch(r.b + t + ahead);
      if constexpr (!ConstA) prefetch(r.a + t + ahead);
      if constexpr (Store) prefetch<true>(r.out + t + ahead);
    }
    batch a = ConstA ? batch(r.a[0]) : batch::load_unaligned(r.a + t);
    batch b = batch::load_unaligned(r.b + t);
    if constexpr (Store)
      if (t > 0) pending.store_unaligned(r.out + t - W);
    scan_lanes(a, b, masks.from);
    const batch hv = xsimd::fma(a, carry, b);
    if constexpr (Store) pending = hv;
    if constexpr (Prod) {
      // the flush (an and, a compare and a blend) on every batch made the
      // product's chain the longer of the two (the time-chunked scan's later
      // chunks ran 1.36x slower than the first); every 4th batch suffices
      // to keep the product out of the subnormals for all but 4 batches
      const batch a_all = xsimd::swizzle(a, last);
      p = t % (4 * W) == 3 * W ? flushed_product(p, a_all) : p * a_all;
    }
    carry = next_carry(a, b, hv, carry, last);
  }
  if constexpr (Store)
    if (t > 0) pending.store_unaligned(r.out + t - W);
  T s = carry.get(0), q = p.get(0);
  for (; t < L; ++t) {
    const T a_t = r.a[ConstA ? 0 : t];
    s = affine(a_t, s, r.b[t]);
    if constexpr (Prod) q = flushed_product(q, a_t);
    if constexpr (Store) r.out[t] = s;
  }
  h = s;
  if constexpr (Prod) prod = q;
}

}  // namespace ssm::detail
