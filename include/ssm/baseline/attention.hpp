// Causal multi-head softmax attention: the O(L^2) baseline that the selective
// scan (O(L)) is measured against, as an op and as a layer.
//
//   out_h = softmax(Q_h K_h^T / sqrt(Dh) + causal mask) V_h   for each head h,
//
// with Q, K, V and out (L, H * Dh) row-major: one row per token, head h in
// columns [h * Dh, (h + 1) * Dh) (the layout of a projection x W^T).
//
// Two evaluations with the same answer:
// - causal_attention_naive: materializes each head's L x L scores (Eigen
//   products); O(L^2) memory. The textbook form, kept as a second opinion.
// - causal_attention: tiled online softmax (FlashAttention: Dao et al. 2022;
//   FlashAttention-2 loop order: Dao 2023; online softmax: Milakov &
//   Gimelshein 2018); O(L) extra memory, register-tiled xsimd kernels,
//   OpenMP over heads x query blocks. See ssm/baseline/attention_kernels.hpp.
// Decoding appends each token's K, V to a KvCache and attends over it.
//
// Measured (tests/test_attention.cpp, float, inputs in [-1, 1)): max |error|
// at most 3.3e-7 of max |out| for L <= 1000, Dh <= 80 (the test holds 1e-5,
// its error bound). Speed: bench/RESULTS.md
// (L = 4096, 12 heads of 64: about Eigen's sgemm rate on the same machine).
#pragma once

#include <ssm/baseline/attention_kernels.hpp>
#include <ssm/baseline/kv_cache.hpp>

#include <Eigen/Core>
#include <xsimd/xsimd.hpp>

#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace ssm::baseline {

namespace detail {

// (L, H * Dh) checks shared by the ops; returns Dh.
template <class DQ, class DK, class DV>
Eigen::Index check_qkv(const Eigen::MatrixBase<DQ>& q, const Eigen::MatrixBase<DK>& k,
                       const Eigen::MatrixBase<DV>& v, Eigen::Index num_heads,
                       const char* where) {
  static_assert(std::is_same<typename DQ::Scalar, typename DK::Scalar>::value &&
                    std::is_same<typename DQ::Scalar, typename DV::Scalar>::value,
                "ssm::baseline: q, k and v must have the same Scalar");
  if (num_heads <= 0)
    throw std::invalid_argument(std::string(where) + ": num_heads must be positive, got " +
                                std::to_string(num_heads));
  if (q.cols() == 0 || q.cols() % num_heads != 0)
    throw std::invalid_argument(std::string(where) + ": q must be L x (num_heads * head_dim) with " +
                                std::to_string(num_heads) + " heads, got " +
                                shape(q.rows(), q.cols()));
  const auto expect = shape(q.rows(), q.cols());
  if (k.rows() != q.rows() || k.cols() != q.cols())
    throw std::invalid_argument(std::string(where) + ": k must be " + expect + " (like q), got " +
                                shape(k.rows(), k.cols()));
  if (v.rows() != q.rows() || v.cols() != q.cols())
    throw std::invalid_argument(std::string(where) + ": v must be " + expect + " (like q), got " +
                                shape(v.rows(), v.cols()));
  return q.cols() / num_heads;
}

}  // namespace detail

/// Causal attention of the last q.rows() tokens of `cache` (positions
/// size - T .. size - 1; append their K, V first) over all its tokens.
/// q: (T, num_heads * head_dim); returns (T, num_heads * head_dim). T = 1 is
/// a decode step; T = cache.size() is the whole sequence. Threads (OpenMP's
/// maximum; one below ~1 MFLOP or inside a parallel region) over heads x
/// query blocks. Throws std::invalid_argument if q's width is not the
/// cache's or T > cache.size().
template <class Arch = xsimd::default_arch, class Scalar, class DerivedQ>
RowMatrix<Scalar> causal_attention(const Eigen::MatrixBase<DerivedQ>& q,
                                   const KvCache<Scalar>& cache) {
  static_assert(std::is_same<typename DerivedQ::Scalar, Scalar>::value,
                "ssm::baseline::causal_attention: q must hold the cache's Scalar");
  const Eigen::Index width = cache.num_heads() * cache.head_dim();
  if (q.cols() != width || q.rows() > cache.size())
    throw std::invalid_argument(
        "ssm::baseline::causal_attention: q must be T x " + std::to_string(width) +
        " with T <= " + std::to_string(cache.size()) + " (the tokens in the cache), got " +
        detail::shape(q.rows(), q.cols()));
  RowMatrix<Scalar> out(q.rows(), width);
  if (q.rows() == 0) return out;
  const detail::RowsRef<Scalar> qr(q);
  const Scalar scale = Scalar(1) / std::sqrt(Scalar(cache.head_dim()));
  ssm::detail::flash_attention<Arch>(qr.data(), qr.outerStride(), std::size_t(q.rows()),
                                     cache.packed(), scale, out.data(), out.outerStride());
  return out;
}

/// Tiled causal attention (FlashAttention) of q, k, v, each (L, num_heads *
/// head_dim); returns (L, num_heads * head_dim). Extra memory: K and V once,
/// packed (O(L)); never an L x L matrix. Row-major inputs, maps (any
/// alignment) and column blocks of them (e.g. of a fused QKV projection) are
/// read in place. Threads as above. Throws std::invalid_argument unless
/// num_heads > 0, q's columns are a positive multiple of it, and k, v have
/// q's shape.
template <class Arch = xsimd::default_arch, class DerivedQ, class DerivedK, class DerivedV>
RowMatrix<typename DerivedQ::Scalar> causal_attention(const Eigen::MatrixBase<DerivedQ>& q,
                                                      const Eigen::MatrixBase<DerivedK>& k,
                                                      const Eigen::MatrixBase<DerivedV>& v,
                                                      Eigen::Index num_heads) {
  const Eigen::Index dh = detail::check_qkv(q, k, v, num_heads, "ssm::baseline::causal_attention");
  KvCache<typename DerivedQ::Scalar> cache(num_heads, dh, q.rows());
  cache.append(k, v);
  return causal_attention<Arch>(q, cache);
}

/// The same attention with each head's L x L scores materialized (Eigen
/// products, a row-wise softmax); O(L^2) memory. q, k, v and throws as above.
template <class DerivedQ, class DerivedK, class DerivedV>
RowMatrix<typename DerivedQ::Scalar> causal_attention_naive(const Eigen::MatrixBase<DerivedQ>& q,
                                                            const Eigen::MatrixBase<DerivedK>& k,
                                                            const Eigen::MatrixBase<DerivedV>& v,
                                                            Eigen::Index num_heads) {
  using Scalar = typename DerivedQ::Scalar;
  const Eigen::Index dh =
      detail::check_qkv(q, k, v, num_heads, "ssm::baseline::causal_attention_naive");
  const Eigen::Index L = q.rows();
  const detail::RowsRef<Scalar> qr(q), kr(k), vr(v);
  RowMatrix<Scalar> out(L, q.cols());
  RowMatrix<Scalar> s(L, L);
  const Scalar scale = Scalar(1) / std::sqrt(Scalar(dh));
  for (Eigen::Index h = 0; h < num_heads; ++h) {
    const auto qh = qr.middleCols(h * dh, dh), kh = kr.middleCols(h * dh, dh);
    s.noalias() = scale * (qh * kh.transpose());  // (L, L)
    for (Eigen::Index i = 0; i < L; ++i) {  // softmax over keys 0..i
      auto seen = s.row(i).head(i + 1).array();
      seen = (seen - seen.maxCoeff()).exp();
      seen /= seen.sum();
      s.row(i).tail(L - 1 - i).setZero();
    }
    out.middleCols(h * dh, dh).noalias() = s * vr.middleCols(h * dh, dh);
  }
  return out;
}

/// Multi-head causal self-attention layer of width d_model (e.g. 768 with 12
/// heads of 64), the like-for-like counterpart of a Mamba block:
///   Q = x W_q^T, K = x W_k^T, V = x W_v^T, y = causal_attention(Q, K, V) W_o^T,
/// for x (L, d_model). Weights as PyTorch's nn.Linear (out, in), row-major,
/// without biases (as Mamba's projections); no positional encoding (the caller
/// adds it to x). Products through Eigen.
template <class Scalar = float>
class CausalSelfAttention {
 public:
  RowMatrix<Scalar> w_q, w_k, w_v, w_o;  ///< (d_model, d_model) each, zero at construction

  /// Throws std::invalid_argument unless d_model is a positive multiple of
  /// num_heads.
  CausalSelfAttention(Eigen::Index d_model, Eigen::Index num_heads)
      : d_model_(d_model), heads_(num_heads) {
    if (num_heads <= 0 || d_model <= 0 || d_model % num_heads != 0)
      throw std::invalid_argument(
          "ssm::baseline::CausalSelfAttention: d_model must be a positive multiple of "
          "num_heads, got d_model " + std::to_string(d_model) + " and num_heads " +
          std::to_string(num_heads));
    for (auto* w : {&w_q, &w_k, &w_v, &w_o}) w->setZero(d_model, d_model);
  }

  Eigen::Index d_model() const { return d_model_; }            ///< the layer's width
  Eigen::Index num_heads() const { return heads_; }            ///< heads
  Eigen::Index head_dim() const { return d_model_ / heads_; }  ///< d_model / num_heads

  /// An empty cache for this layer, with room for `capacity` tokens.
  KvCache<Scalar> make_cache(Eigen::Index capacity = 0) const {
    return KvCache<Scalar>(heads_, head_dim(), capacity);
  }

  /// The whole sequence: x (L, d_model) -> y (L, d_model). Throws as step().
  template <class Arch = xsimd::default_arch, class Derived>
  RowMatrix<Scalar> forward(const Eigen::MatrixBase<Derived>& x) const {
    KvCache<Scalar> cache = make_cache(x.rows());
    return step<Arch>(x, cache);
  }

  /// T new tokens x (T, d_model) after the cache's tokens: appends their K, V
  /// to `cache` and returns their outputs (T, d_model). T = 1 decodes one
  /// token; a larger T prefills a prompt. Throws std::invalid_argument
  /// (the cache unchanged) if a weight is not d_model x d_model, x does not
  /// have d_model columns, or the cache's heads differ from the layer's.
  template <class Arch = xsimd::default_arch, class Derived>
  RowMatrix<Scalar> step(const Eigen::MatrixBase<Derived>& x, KvCache<Scalar>& cache) const {
    static_assert(std::is_same<typename Derived::Scalar, Scalar>::value,
                  "ssm::baseline::CausalSelfAttention: x must hold the layer's Scalar");
    check(x, cache);
    const RowMatrix<Scalar> q = x * w_q.transpose();  // (T, d_model)
    cache.append(x * w_k.transpose(), x * w_v.transpose());
    return causal_attention<Arch>(q, cache) * w_o.transpose();
  }

 private:
  template <class Derived>
  void check(const Eigen::MatrixBase<Derived>& x, const KvCache<Scalar>& cache) const {
    const char* where = "ssm::baseline::CausalSelfAttention";
    const auto square = detail::shape(d_model_, d_model_);
    const std::pair<const char*, const RowMatrix<Scalar>*> weights[] = {
        {"w_q", &w_q}, {"w_k", &w_k}, {"w_v", &w_v}, {"w_o", &w_o}};
    for (const auto& [name, w] : weights)
      if (w->rows() != d_model_ || w->cols() != d_model_)
        throw std::invalid_argument(std::string(where) + ": " + name + " must be " + square +
                                    ", got " + detail::shape(w->rows(), w->cols()));
    if (x.cols() != d_model_)
      throw std::invalid_argument(std::string(where) + ": x must be L x " +
                                  std::to_string(d_model_) + ", got " +
                                  detail::shape(x.rows(), x.cols()));
    if (cache.num_heads() != heads_ || cache.head_dim() != head_dim())
      throw std::invalid_argument(std::string(where) + ": the cache holds " +
                                  std::to_string(cache.num_heads()) + " heads of " +
                                  std::to_string(cache.head_dim()) + ", the layer has " +
                                  std::to_string(heads_) + " of " + std::to_string(head_dim()));
  }

  Eigen::Index d_model_, heads_;
};

}  // namespace ssm::baseline
