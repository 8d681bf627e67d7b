// A checkpoint's tensors as the Mamba models take them: io::Checkpoint
// checks each shape before reading it, this checks each value, so a model
// never runs on a NaN or infinite weight. Every message starts with the
// loader's name, then the file and the tensor.
#pragma once

#include <ssm/detail/linear.hpp>  // RowMatrixXf
#include <ssm/io/checkpoint.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace ssm::detail {

class CheckedWeights {
 public:
  CheckedWeights(const io::Checkpoint& ck, const char* who) : ck_(ck), who_(who) {}

  RowMatrixXf matrix(const std::string& name, std::int64_t rows, std::int64_t cols) const {
    RowMatrixXf w = ck_.matrix(name, rows, cols);
    require_finite(w.data(), std::size_t(w.size()), name);
    return w;
  }

  Eigen::VectorXf vector(const std::string& name, std::int64_t n) const {
    Eigen::VectorXf v = ck_.vector(name, n);
    require_finite(v.data(), std::size_t(v.size()), name);
    return v;
  }

  // A depthwise conv1d weight, stored (channels, 1, K), as (K, channels):
  // row k holds tap k of every channel.
  RowMatrixXf conv(const std::string& name, std::int64_t channels, std::int64_t K) const {
    const std::vector<float> w = ck_.load(name, {channels, 1, K});
    require_finite(w.data(), w.size(), name);
    return Eigen::Map<const RowMatrixXf>(w.data(), channels, K).transpose();
  }

  // A = -exp(A_log), Mamba's parametrization of a negative A, refusing an
  // A_log whose exp overflows float: the scans need a finite A.
  template <class Plain>
  Plain negative_exp(const std::string& name, const Plain& A_log) const {
    Plain A = -A_log.array().exp().matrix();
    for (Eigen::Index k = 0; k < A.size(); ++k)
      if (!std::isfinite(A.data()[k]))
        throw std::runtime_error(prefix(name) + "': exp(A_log) overflows float (" +
                                 std::to_string(A_log.data()[k]) + " at element " + std::to_string(k) +
                                 ")");
    return A;
  }

 private:
  std::string prefix(const std::string& name) const {
    return std::string(who_) + ": " + ck_.file_path(name) + ": '" + name;
  }

  void require_finite(const float* data, std::size_t n, const std::string& name) const {
    for (std::size_t i = 0; i < n; ++i)
      if (!std::isfinite(data[i]))
        throw std::runtime_error(prefix(name) + "' has a non-finite value (" + std::to_string(data[i]) +
                                 " at element " + std::to_string(i) + ")");
  }

  const io::Checkpoint& ck_;
  const char* who_;
};

}  // namespace ssm::detail
