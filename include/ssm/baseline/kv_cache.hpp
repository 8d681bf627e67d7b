// The key/value cache of causal attention for token-by-token decoding: the
// keys and values of every token seen so far, packed for the tiled kernel
// (ssm/baseline/attention_kernels.hpp), so a decode step reads them as they
// are. Memory grows linearly with the sequence, which is the cost that a
// state space model's fixed-size state avoids.
#pragma once

#include <ssm/baseline/attention_kernels.hpp>

#include <Eigen/Core>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace ssm::baseline {

/// Row-major dynamic matrix: the layout of a sequence of tokens, one row per
/// token (as a projection x W^T produces it).
template <class Scalar>
using RowMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

namespace detail {

// A read-only view of rows with unit column stride: binds row-major matrices,
// maps (aligned or not) and column blocks of them without a copy.
template <class Scalar>
using RowsRef = Eigen::Ref<const RowMatrix<Scalar>, 0, Eigen::OuterStride<>>;

inline std::string shape(Eigen::Index rows, Eigen::Index cols) {
  return std::to_string(rows) + "x" + std::to_string(cols);
}

}  // namespace detail

/// Keys and values of one sequence, for num_heads heads of head_dim each:
/// the caller owns it, appends the K and V rows of each new token, and asks
/// ssm::baseline::causal_attention(q, cache) for the new tokens' outputs.
/// Storage is packed in blocks of 64 tokens (K transposed per block, V rows
/// padded to 64 bytes) and grows geometrically, like std::vector; reserve()
/// avoids the reallocations when the final length is known.
template <class Scalar = float>
class KvCache {
 public:
  static_assert(std::is_floating_point<Scalar>::value,
                "ssm::baseline::KvCache: Scalar must be float or double");

  /// An empty cache with room for `capacity` tokens. Throws
  /// std::invalid_argument unless num_heads, head_dim > 0 and capacity >= 0.
  KvCache(Eigen::Index num_heads, Eigen::Index head_dim, Eigen::Index capacity = 0)
      : heads_(std::size_t(num_heads)),
        head_dim_(std::size_t(head_dim)),
        padded_dim_(ssm::detail::attention_padded_dim<Scalar>(std::size_t(head_dim))) {
    if (num_heads <= 0 || head_dim <= 0)
      throw std::invalid_argument(
          "ssm::baseline::KvCache: num_heads and head_dim must be positive, got " +
          std::to_string(num_heads) + " and " + std::to_string(head_dim));
    reserve(capacity);
  }

  Eigen::Index num_heads() const { return Eigen::Index(heads_); }   ///< heads stored per token
  Eigen::Index head_dim() const { return Eigen::Index(head_dim_); }  ///< values per head
  /// Tokens stored.
  Eigen::Index size() const { return Eigen::Index(size_); }
  /// Tokens it can hold before it reallocates.
  Eigen::Index capacity() const {
    return Eigen::Index(kt_.capacity() / panel_keys() * Bc);
  }

  /// Bytes allocated for this sequence (keys and values, padding included):
  /// about 2 * size() * num_heads() * head_dim() * sizeof(Scalar) once
  /// reserved to the final length.
  std::size_t memory_bytes() const {
    return (kt_.capacity() + v_.capacity()) * sizeof(Scalar);
  }

  /// Makes room for `tokens` tokens in all; throws std::invalid_argument if
  /// tokens < 0.
  void reserve(Eigen::Index tokens) {
    if (tokens < 0)
      throw std::invalid_argument("ssm::baseline::KvCache::reserve: tokens must be >= 0, got " +
                                  std::to_string(tokens));
    const std::size_t blocks = (std::size_t(tokens) + Bc - 1) / Bc;
    kt_.reserve(blocks * panel_keys());
    v_.reserve(blocks * panel_values());
  }

  /// Forgets the tokens, keeps the memory.
  void clear() { size_ = 0; }

  /// Keeps the first `tokens` tokens (a rejected draft, a shared prompt),
  /// keeps the memory. Throws std::invalid_argument unless 0 <= tokens <=
  /// size().
  void truncate(Eigen::Index tokens) {
    if (tokens < 0 || tokens > size())
      throw std::invalid_argument("ssm::baseline::KvCache::truncate: tokens must be in [0, " +
                                  std::to_string(size_) + "], got " + std::to_string(tokens));
    size_ = std::size_t(tokens);
  }

  /// Appends T tokens: k and v are (T, num_heads * head_dim), head h in
  /// columns [h * head_dim, (h + 1) * head_dim), rows in sequence order.
  /// Throws std::invalid_argument for other shapes (the cache unchanged).
  template <class DerivedK, class DerivedV>
  void append(const Eigen::MatrixBase<DerivedK>& k, const Eigen::MatrixBase<DerivedV>& v) {
    static_assert(std::is_same<typename DerivedK::Scalar, Scalar>::value &&
                      std::is_same<typename DerivedV::Scalar, Scalar>::value,
                  "ssm::baseline::KvCache::append: k and v must hold the cache's Scalar");
    const Eigen::Index width = Eigen::Index(heads_ * head_dim_);
    if (k.cols() != width || v.rows() != k.rows() || v.cols() != width)
      throw std::invalid_argument(
          "ssm::baseline::KvCache::append: k and v must be T x " + std::to_string(width) +
          " (" + std::to_string(heads_) + " heads of " + std::to_string(head_dim_) +
          "), got " + detail::shape(k.rows(), k.cols()) + " and " +
          detail::shape(v.rows(), v.cols()));
    const detail::RowsRef<Scalar> kr(k), vr(v);
    const std::size_t count = std::size_t(k.rows());
    const std::size_t blocks = (size_ + count + Bc - 1) / Bc;
    if (blocks * panel_keys() > kt_.size()) {
      kt_.resize(blocks * panel_keys());
      v_.resize(blocks * panel_values());
    }
    ssm::detail::pack_kv(kr.data(), kr.outerStride(), vr.data(), vr.outerStride(), count,
                         size_, kt_.data(), v_.data(), heads_, head_dim_);
    size_ += count;
  }

  /// The packed layout, for ssm::detail::flash_attention (an implementation
  /// detail: the layout may change).
  ssm::detail::PackedKv<Scalar> packed() const {
    return {kt_.data(), v_.data(), heads_, head_dim_, padded_dim_, size_};
  }

 private:
  static constexpr std::size_t Bc = ssm::detail::attention_key_block;
  std::size_t panel_keys() const { return heads_ * head_dim_ * Bc; }
  std::size_t panel_values() const { return heads_ * Bc * padded_dim_; }

  std::size_t heads_, head_dim_, padded_dim_, size_ = 0;
  std::vector<Scalar, ssm::detail::uninitialized_allocator<Scalar>> kt_, v_;
};

}  // namespace ssm::baseline
