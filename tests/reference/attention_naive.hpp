// Double-precision oracle of causal multi-head softmax attention, written as
// the definition reads, with plain loops (no Eigen, no SIMD, no tiling):
//   out[i, h] = sum_{j <= i} softmax_j(q[i, h] . k[j, h] / sqrt(Dh)) v[j, h].
// Shares no code with ssm/baseline/attention.hpp.
#pragma once

#include "naive.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace naive {

// q, k, v, out: (L, heads * Dh) row-major, head h in columns h*Dh .. h*Dh+Dh-1.
inline Mat<double> causal_attention(const Mat<double>& q, const Mat<double>& k,
                                    const Mat<double>& v, std::size_t heads) {
  const std::size_t L = q.rows, Dh = q.cols / heads;
  Mat<double> out(L, q.cols);
  std::vector<double> w(L);
  for (std::size_t h = 0; h < heads; ++h)
    for (std::size_t i = 0; i < L; ++i) {
      double top = -INFINITY;
      for (std::size_t j = 0; j <= i; ++j) {
        double dot = 0;
        for (std::size_t d = 0; d < Dh; ++d) dot += q(i, h * Dh + d) * k(j, h * Dh + d);
        w[j] = dot / std::sqrt(double(Dh));
        top = std::max(top, w[j]);
      }
      double total = 0;
      for (std::size_t j = 0; j <= i; ++j) total += w[j] = std::exp(w[j] - top);
      for (std::size_t d = 0; d < Dh; ++d) {
        double acc = 0;
        for (std::size_t j = 0; j <= i; ++j) acc += w[j] * v(j, h * Dh + d);
        out(i, h * Dh + d) = acc / total;
      }
    }
  return out;
}

// x W^T for x (L, in) and W (out, in), as nn.Linear without bias.
inline Mat<double> linear(const Mat<double>& x, const Mat<double>& w) {
  Mat<double> y(x.rows, w.rows);
  for (std::size_t t = 0; t < x.rows; ++t)
    for (std::size_t o = 0; o < w.rows; ++o) {
      double s = 0;
      for (std::size_t i = 0; i < x.cols; ++i) s += x(t, i) * w(o, i);
      y(t, o) = s;
    }
  return y;
}

// The attention layer: Q, K, V projections, attention, output projection.
inline Mat<double> attention_layer(const Mat<double>& x, const Mat<double>& wq,
                                   const Mat<double>& wk, const Mat<double>& wv,
                                   const Mat<double>& wo, std::size_t heads) {
  return linear(causal_attention(linear(x, wq), linear(x, wk), linear(x, wv), heads), wo);
}

}  // namespace naive
