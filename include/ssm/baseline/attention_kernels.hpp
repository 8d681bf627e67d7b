// Kernels of tiled causal softmax attention (FlashAttention on a CPU),
// written once against xsimd::batch, and the packed key/value layout they
// read (owned by ssm::baseline::KvCache).
//
// The algorithm: Dao et al. 2022, "FlashAttention: Fast and Memory-Efficient
// Exact Attention with IO-Awareness", with the loop order of Dao 2023,
// "FlashAttention-2" (queries outer, keys inner, one division at the end).
// Each query row keeps a running max m and sum l of its softmax (Milakov &
// Gimelshein 2018, "Online normalizer calculation for softmax"): for a block
// of scores s_j with block max b,
//   m' = max(m, b),  alpha = exp(m - m'),
//   l' = alpha l + sum_j exp(s_j - m'),  o' = alpha o + sum_j exp(s_j - m') v_j,
// and the output is o / l after the last block. No L x L matrix exists: the
// extra memory is one strip of scores per thread plus O(L) for the packing.
// The kernels work in base 2 (scores times log2 e, folded into the query
// scale; exp2 saves exp's extended-precision range reduction); the weights
// are the same.
//
// Register tiling (as in a GEMM micro-kernel): a strip of R query rows times
// C SIMD batches of keys (scores) or of head dimensions (outputs) stays in
// R*C registers while the reduction runs; R*C is 24 with 32 vector registers
// (AVX-512), 12 with 16.
#pragma once

#include <ssm/detail/aligned.hpp>
#include <ssm/detail/omp.hpp>

#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

// GCC 12 reports its own AVX-512 intrinsics (_mm512_undefined_ps) as
// uninitialized once inlined here (GCC bug 105593, fixed in 13).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#define SSM_ATTENTION_DIAGNOSTIC_PUSHED
#endif

namespace ssm::detail {

// Keys per block: the width of a packed K^T panel and the unit of causal
// skipping. A multiple of every SIMD width times C (64 floats = 4 AVX-512
// batches), so the cache layout does not depend on the architecture.
inline constexpr std::size_t attention_key_block = 64;

// Rows of packed V are padded to a multiple of 64 bytes, which every SIMD
// width divides.
template <class T>
constexpr std::size_t attention_padded_dim(std::size_t head_dim) {
  constexpr std::size_t unit = 64 / sizeof(T);
  return (head_dim + unit - 1) / unit * unit;
}

// 64-byte aligned storage whose resize() leaves new elements uninitialized:
// the packed cache is written before it is read, and zeroing megabytes first
// would touch every page twice.
template <class T>
struct uninitialized_allocator : xsimd::aligned_allocator<T, cache_line_bytes> {
  template <class U>
  struct rebind {
    using other = uninitialized_allocator<U>;
  };
  uninitialized_allocator() = default;
  template <class U>
  uninitialized_allocator(const uninitialized_allocator<U>&) noexcept {}
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    if constexpr (sizeof...(Args) == 0)
      ::new (static_cast<void*>(p)) U;  // default-initialized: no write
    else
      ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

// Packed keys and values of `size` tokens, in blocks of Bc = 64 tokens.
// Block b of head h: K^T as a (head_dim, Bc) panel at
// kt + (b * heads + h) * head_dim * Bc, and V as a (Bc, padded_dim) panel at
// v + (b * heads + h) * Bc * padded_dim. Block-major, so appending tokens
// never moves what is stored.
template <class T>
struct PackedKv {
  const T* kt;
  const T* v;
  std::size_t heads, head_dim, padded_dim, size;

  const T* key_panel(std::size_t block, std::size_t h) const {
    return kt + (block * heads + h) * head_dim * attention_key_block;
  }
  const T* value_panel(std::size_t block, std::size_t h) const {
    return v + (block * heads + h) * attention_key_block * padded_dim;
  }
};

// Writes `count` tokens (rows of k and v, each (heads * head_dim) with head h
// at columns [h * head_dim, (h + 1) * head_dim)) at positions first,
// first + 1, ... of a packed layout whose storage already holds them. The
// padding of V rows and the K^T columns after the last token of its block
// are zeroed: kernels read them (and mask or drop what they give).
template <class T>
void pack_kv(const T* k, std::ptrdiff_t k_stride, const T* v,
             std::ptrdiff_t v_stride, std::size_t count, std::size_t first,
             T* kt_out, T* v_out, std::size_t heads, std::size_t head_dim) {
  constexpr std::size_t Bc = attention_key_block;
  const std::size_t dp = attention_padded_dim<T>(head_dim);
  const long H = long(heads);
  SSM_OMP(parallel for if (count * heads * head_dim > (1u << 16)))
  for (long hh = 0; hh < H; ++hh) {
    const std::size_t h = std::size_t(hh);
    for (std::size_t t = 0; t < count; ++t) {
      const std::size_t pos = first + t, block = pos / Bc, col = pos % Bc;
      const T* krow = k + std::ptrdiff_t(t) * k_stride + h * head_dim;
      const T* vrow = v + std::ptrdiff_t(t) * v_stride + h * head_dim;
      T* kt = kt_out + (block * heads + h) * head_dim * Bc + col;
      T* vp = v_out + ((block * heads + h) * Bc + col) * dp;
      for (std::size_t d = 0; d < head_dim; ++d) kt[d * Bc] = krow[d];
      std::fill(std::copy(vrow, vrow + head_dim, vp), vp + dp, T(0));
    }
    const std::size_t end = first + count, used = end % Bc;
    if (count > 0 && used != 0) {
      T* kt = kt_out + ((end / Bc) * heads + h) * head_dim * Bc;
      for (std::size_t d = 0; d < head_dim; ++d)
        std::fill(kt + d * Bc + used, kt + (d + 1) * Bc, T(0));
    }
  }
}

// Register tile of the micro-kernels for batches of T on Arch.
template <class T, class Arch>
struct AttentionTile {
  using batch = xsimd::batch<T, Arch>;
  static constexpr std::size_t W = batch::size;
  static constexpr std::size_t C = 4;  // batches per tile row
  // 24 accumulators + 4 loads + 1 broadcast of 32 registers (AVX-512);
  // 12 + the rest folded into memory operands of 16 otherwise.
  static constexpr std::size_t R = sizeof(T) * W == 64 ? 6 : 3;
  static_assert(attention_key_block % (C * W) == 0,
                "a key block must hold whole register tiles");
};

// Calls f(std::integral_constant<std::size_t, rows>()) for 1 <= rows <= Max,
// so that kernels see their row count at compile time.
template <std::size_t Max, class F>
void with_rows(std::size_t rows, F&& f) {
  if constexpr (Max > 1) {
    if (rows < Max) return with_rows<Max - 1>(rows, std::forward<F>(f));
  }
  f(std::integral_constant<std::size_t, Max>());
}

// s (Rows, Bc) = q (Rows, dh; row stride dh) times the K^T panel (dh, Bc).
template <class Arch, std::size_t Rows, class T>
void attention_scores(const T* q, std::size_t dh, const T* kt, T* s) {
  using Tile = AttentionTile<T, Arch>;
  using batch = typename Tile::batch;
  constexpr std::size_t W = Tile::W, C = Tile::C, Bc = attention_key_block;
  for (std::size_t c0 = 0; c0 < Bc; c0 += C * W) {
    batch acc[Rows][C];
    for (std::size_t r = 0; r < Rows; ++r)
      for (std::size_t c = 0; c < C; ++c) acc[r][c] = batch(T(0));
    const T* panel = kt + c0;
    for (std::size_t d = 0; d < dh; ++d, panel += Bc) {
      batch kv[C];
      for (std::size_t c = 0; c < C; ++c)
        kv[c] = batch::load_aligned(panel + c * W);
      for (std::size_t r = 0; r < Rows; ++r) {
        const batch qv(q[r * dh + d]);
        for (std::size_t c = 0; c < C; ++c)
          acc[r][c] = xsimd::fma(qv, kv[c], acc[r][c]);
      }
    }
    for (std::size_t r = 0; r < Rows; ++r)
      for (std::size_t c = 0; c < C; ++c)
        acc[r][c].store_aligned(s + r * Bc + c0 + c * W);
  }
}

// Lane i of a swizzle by xor_lanes<D> is lane i ^ D.
template <std::size_t D>
struct xor_lanes {
  static constexpr unsigned get(unsigned i, unsigned) { return unsigned(i ^ D); }
};

// Every lane becomes the largest lane: a butterfly of log2 W swizzles, in
// registers (xsimd 8.1 has no reduce_max).
template <class T, class Arch>
inline xsimd::batch<T, Arch> broadcast_max(xsimd::batch<T, Arch> x) {
  using index = xsimd::batch<std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>, Arch>;
  constexpr std::size_t W = xsimd::batch<T, Arch>::size;
  static_assert(W <= 16, "a batch of at most 16 lanes");
  if constexpr (W >= 16) x = xsimd::max(x, xsimd::swizzle(x, xsimd::make_batch_constant<index, xor_lanes<8>>()));
  if constexpr (W >= 8) x = xsimd::max(x, xsimd::swizzle(x, xsimd::make_batch_constant<index, xor_lanes<4>>()));
  if constexpr (W >= 4) x = xsimd::max(x, xsimd::swizzle(x, xsimd::make_batch_constant<index, xor_lanes<2>>()));
  if constexpr (W >= 2) x = xsimd::max(x, xsimd::swizzle(x, xsimd::make_batch_constant<index, xor_lanes<1>>()));
  return x;
}

// xsimd 8.1's exp2 for double converts its rounded argument to int64 with a
// scalar cast on targets without a vector one (AVX2, AVX-512F), undefined
// behaviour for -inf (a masked score), NaN and |x| >= 2^63. Clamped to
// [-1075, 1024] (beyond which 2^x is 0 or inf anyway), NaN put back after.
// float converts with cvttps2dq, defined for every input, so it is left as is.
template <class T, class Arch>
inline xsimd::batch<T, Arch> exp2_any(xsimd::batch<T, Arch> x) {
  using batch = xsimd::batch<T, Arch>;
  if constexpr (sizeof(T) == 8) {
    const batch lo(T(-1075)), hi(T(1024));
    const batch clamped = xsimd::select(x > hi, hi, xsimd::select(x >= lo, x, lo));
    return xsimd::select(x != x, x, xsimd::exp2(clamped));  // NaN fails x >= lo
  } else {
    return xsimd::exp2(x);
  }
}

// The online-softmax update of Rows rows of base-2 scores s (Rows, Bc), in
// place: s becomes p = 2^(s - m'), m and l are updated, alpha[r] = 2^(m - m').
// Masked scores are -inf and give p = 0. Every row has seen a finite score
// before (block 0 holds key 0), so m' is finite and alpha never NaN. The
// rows' maxima are found together: their reduction chains overlap.
template <class Arch, std::size_t Rows, class T>
void attention_online_softmax(T* s, T* m, T* l, T* alpha) {
  using batch = xsimd::batch<T, Arch>;
  constexpr std::size_t W = batch::size, Bc = attention_key_block;
  batch m_new[Rows];
  for (std::size_t r = 0; r < Rows; ++r) {
    const T* row = s + r * Bc;
    batch mx = batch::load_aligned(row);
    for (std::size_t j = W; j < Bc; j += W) mx = xsimd::max(mx, batch::load_aligned(row + j));
    m_new[r] = xsimd::max(broadcast_max(mx), batch(m[r]));
  }
  for (std::size_t r = 0; r < Rows; ++r) {
    T* row = s + r * Bc;
    batch sum(T(0));
    for (std::size_t j = 0; j < Bc; j += W) {
      const batch p = exp2_any(batch::load_aligned(row + j) - m_new[r]);
      sum += p;
      p.store_aligned(row + j);
    }
    const T mr = m_new[r].get(0);
    // 0 on the first block (m = -inf); mostly 1 later, as maxima settle.
    alpha[r] = mr == m[r] ? T(1) : std::exp2(m[r] - mr);
    l[r] = alpha[r] * l[r] + xsimd::hadd(sum);
    m[r] = mr;
  }
}

// o (Rows, dp) <- alpha o + p (Rows, Bc; first `keys` columns) V, for the
// Cb batches of output columns starting at column col.
template <class Arch, std::size_t Rows, std::size_t Cb, class T>
void attention_accumulate_cols(const T* p, std::size_t keys, const T* v,
                               std::size_t dp, std::size_t col,
                               const T* alpha, T* o) {
  using batch = xsimd::batch<T, Arch>;
  constexpr std::size_t W = batch::size, Bc = attention_key_block;
  batch acc[Rows][Cb];
  for (std::size_t r = 0; r < Rows; ++r) {
    const batch a(alpha[r]);
    for (std::size_t c = 0; c < Cb; ++c)
      acc[r][c] = batch::load_aligned(o + r * dp + col + c * W) * a;
  }
  const T* vrow = v + col;
  for (std::size_t j = 0; j < keys; ++j, vrow += dp) {
    batch vv[Cb];
    for (std::size_t c = 0; c < Cb; ++c)
      vv[c] = batch::load_aligned(vrow + c * W);
    for (std::size_t r = 0; r < Rows; ++r) {
      const batch pv(p[r * Bc + j]);
      for (std::size_t c = 0; c < Cb; ++c)
        acc[r][c] = xsimd::fma(pv, vv[c], acc[r][c]);
    }
  }
  for (std::size_t r = 0; r < Rows; ++r)
    for (std::size_t c = 0; c < Cb; ++c)
      acc[r][c].store_aligned(o + r * dp + col + c * W);
}

// All dp columns of o: tiles of C batches, then one of the rest.
template <class Arch, std::size_t Rows, class T>
void attention_accumulate(const T* p, std::size_t keys, const T* v,
                          std::size_t dp, const T* alpha, T* o) {
  using Tile = AttentionTile<T, Arch>;
  constexpr std::size_t W = Tile::W, C = Tile::C;
  std::size_t col = 0;
  for (; col + C * W <= dp; col += C * W)
    attention_accumulate_cols<Arch, Rows, C>(p, keys, v, dp, col, alpha, o);
  switch ((dp - col) / W) {  // < C
    case 1: attention_accumulate_cols<Arch, Rows, 1>(p, keys, v, dp, col, alpha, o); break;
    case 2: attention_accumulate_cols<Arch, Rows, 2>(p, keys, v, dp, col, alpha, o); break;
    case 3: attention_accumulate_cols<Arch, Rows, 3>(p, keys, v, dp, col, alpha, o); break;
    default: break;
  }
  static_assert(C == 4, "the switch above covers remainders up to C - 1");
}

// Per-thread buffers for one block of query rows.
template <class T>
struct AttentionScratch {
  line_vector<T> q, o, s, m, l, alpha;
  AttentionScratch(std::size_t rows, std::size_t strip, std::size_t dh, std::size_t dp)
      : q(rows * dh), o(rows * dp), s(strip * attention_key_block), m(rows),
        l(rows), alpha(strip) {}
};

// Causal attention of `count` queries at positions first .. first+count-1
// (rows of q, (heads * head_dim) each) over the kv.size() = first + count
// packed keys; writes rows of out. The softmax is of scale * q . k.
template <class Arch, class T>
void flash_attention(const T* q, std::ptrdiff_t q_stride, std::size_t count,
                     const PackedKv<T>& kv, T scale, T* out,
                     std::ptrdiff_t out_stride) {
  using Tile = AttentionTile<T, Arch>;
  constexpr std::size_t R = Tile::R, Bc = attention_key_block;
  // Query rows per task: each K/V panel, read from L1, serves 32 strips;
  // the task's Q and O blocks (2 x 48 KiB at Dh = 64) stay in L2.
  constexpr std::size_t Br = 32 * R;
  const std::size_t H = kv.heads, dh = kv.head_dim, dp = kv.padded_dim;
  const std::size_t first = kv.size - count;
  const T scale2 = scale * T(1.44269504088896340736);  // log2 e: base-2 scores
  const std::size_t q_blocks = (count + Br - 1) / Br;
  const long tasks = long(q_blocks * H);
  // Below ~1 MFLOP the threads cost more than they save.
  const bool parallel = double(count) * double(kv.size) * double(H * dh) > 2.5e5;
  const int threads = parallel ? resolve_threads(0) : 1;
  std::vector<AttentionScratch<T>> scratch;
  scratch.reserve(std::size_t(threads));
  for (int i = 0; i < threads; ++i) scratch.emplace_back(std::min(Br, count), R, dh, dp);

  SSM_OMP(parallel num_threads(threads) if (threads > 1))
  {
    AttentionScratch<T>& buf = scratch[std::size_t(thread_index())];
    // Later query blocks see more keys: hand them out first (longest
    // processing time first), one at a time.
    SSM_OMP(for schedule(dynamic, 1))
    for (long t = 0; t < tasks; ++t) {
      const std::size_t qb = q_blocks - 1 - std::size_t(t) / H;
      const std::size_t h = std::size_t(t) % H;
      const std::size_t q0 = qb * Br, rows = std::min(Br, count - q0);
      for (std::size_t i = 0; i < rows; ++i) {
        const T* src = q + std::ptrdiff_t(q0 + i) * q_stride + h * dh;
        for (std::size_t d = 0; d < dh; ++d) buf.q[i * dh + d] = src[d] * scale2;
      }
      std::fill(buf.o.begin(), buf.o.end(), T(0));
      std::fill(buf.m.begin(), buf.m.end(), -std::numeric_limits<T>::infinity());
      std::fill(buf.l.begin(), buf.l.end(), T(0));

      const std::size_t last_pos = first + q0 + rows - 1;
      for (std::size_t kb = 0; kb <= last_pos / Bc; ++kb) {
        const std::size_t k0 = kb * Bc;
        const T* kt = kv.key_panel(kb, h);
        const T* vp = kv.value_panel(kb, h);
        for (std::size_t s0 = 0; s0 < rows; s0 += R) {
          const std::size_t n = std::min(R, rows - s0);
          const std::size_t pos0 = first + q0 + s0, pos1 = pos0 + n - 1;
          if (k0 > pos1) continue;  // every key of the block is in the future
          with_rows<R>(n, [&](auto rows_c) {
            constexpr std::size_t Rows = decltype(rows_c)::value;
            T* s = buf.s.data();
            attention_scores<Arch, Rows>(buf.q.data() + s0 * dh, dh, kt, s);
            if (k0 + Bc - 1 > pos0)  // a diagonal block: key k0 + j > pos is masked
              for (std::size_t r = 0; r < Rows; ++r) {
                const std::size_t seen = pos0 + r + 1 > k0 ? pos0 + r + 1 - k0 : 0;
                std::fill(s + r * Bc + std::min(Bc, seen), s + (r + 1) * Bc,
                          -std::numeric_limits<T>::infinity());
              }
            attention_online_softmax<Arch, Rows>(s, buf.m.data() + s0, buf.l.data() + s0,
                                                 buf.alpha.data());
            attention_accumulate<Arch, Rows>(s, std::min(Bc, pos1 + 1 - k0), vp, dp,
                                             buf.alpha.data(), buf.o.data() + s0 * dp);
          });
        }
      }
      for (std::size_t i = 0; i < rows; ++i) {
        const T inv = T(1) / buf.l[i];
        T* dst = out + std::ptrdiff_t(q0 + i) * out_stride + h * dh;
        for (std::size_t d = 0; d < dh; ++d) dst[d] = buf.o[i * dp + d] * inv;
      }
    }
  }
}

}  // namespace ssm::detail

#ifdef SSM_ATTENTION_DIAGNOSTIC_PUSHED
#pragma GCC diagnostic pop
#undef SSM_ATTENTION_DIAGNOSTIC_PUSHED
#endif
