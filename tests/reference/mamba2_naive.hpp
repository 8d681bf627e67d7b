// Mamba-2 in double precision with plain loops, written from the formulas
// of Dao & Gu 2024 and the semantics of transformers' Mamba2Mixer /
// state-spaces/mamba's Mamba2 (read, not run): the oracle of ssm/ssd.hpp
// and, with the per-group gated norm that transformers lacks, of
// ssm::Mamba2LM. Shares no code with the library.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace naive {

inline double softplus(double x) { return x > 20 ? x : std::log1p(std::exp(x)); }
inline double silu(double x) { return x / (1 + std::exp(-x)); }

// The SSM over heads: x, y (batch, L, H, P); dt (batch, L, H); A, D,
// dt_bias (H); B, C (batch, L, G, N); state (batch, H, N, P), n-major.
struct Ssd {
  std::size_t batch = 1, L = 0, H = 0, P = 0, N = 0, G = 1;
  std::vector<double> x, dt, A, B, C, D, dt_bias, state;
  bool softplus = false;
  double dt_min = 0, dt_max = INFINITY;

  // The scales of the rounding errors (cancelling sums make them much
  // larger than |h| and |y|): m_t = e^{dt A} m_{t-1} + |dt x B| per state,
  // sum_n |C| m + |D x| per output.
  std::vector<double> state_magnitude, y_magnitude;

  // Returns y; `state` (zeros if empty) is the initial state and becomes
  // the final one.
  std::vector<double> run() {
    std::vector<double> y(batch * L * H * P, 0.0);
    y_magnitude.assign(y.size(), 0.0);
    if (state.empty()) state.assign(batch * H * N * P, 0.0);
    state_magnitude.resize(state.size());
    for (std::size_t i = 0; i < state.size(); ++i) state_magnitude[i] = std::abs(state[i]);
    for (std::size_t b = 0; b < batch; ++b)
      for (std::size_t h = 0; h < H; ++h) {
        const std::size_t g = h / (H / G);
        for (std::size_t t = 0; t < L; ++t) {
          double d = dt[(b * L + t) * H + h] + (dt_bias.empty() ? 0.0 : dt_bias[h]);
          if (softplus) d = naive::softplus(d);
          d = std::min(std::max(d, dt_min), dt_max);
          const double decay = std::exp(d * A[h]);
          const double* Bt = B.data() + ((b * L + t) * G + g) * N;  // (not &B[...]: empty at N = 0)
          const double* Ct = C.data() + ((b * L + t) * G + g) * N;
          for (std::size_t p = 0; p < P; ++p) {
            const double xv = x[((b * L + t) * H + h) * P + p];
            double acc = 0, mag = 0;
            for (std::size_t n = 0; n < N; ++n) {
              const std::size_t k = ((b * H + h) * N + n) * P + p;
              state[k] = decay * state[k] + d * xv * Bt[n];
              state_magnitude[k] = decay * state_magnitude[k] + std::abs(d * xv * Bt[n]);
              acc += Ct[n] * state[k];
              mag += std::abs(Ct[n]) * state_magnitude[k];
            }
            if (!D.empty()) acc += D[h] * xv, mag += std::abs(D[h] * xv);
            y[((b * L + t) * H + h) * P + p] = acc;
            y_magnitude[((b * L + t) * H + h) * P + p] = mag;
          }
        }
      }
    return y;
  }
};

}  // namespace naive

namespace naive {

// A Mamba-2 language model (RMSNorm blocks) in double: embedding, layers of
// x + Mixer(RMSNorm(x)), RMSNorm, head. Matrices row-major (out, in) as
// PyTorch stores them; conv_weight (conv_dim, K) as conv1d's (conv_dim, 1, K).
struct Mamba2 {
  struct Layer {
    std::vector<double> norm, in_proj, in_proj_bias, conv_weight, conv_bias, dt_bias, A, D, gate_norm,
        out_proj, out_proj_bias;
  };
  std::size_t d_model = 0, d_inner = 0, H = 0, P = 0, N = 0, G = 1, K = 4, vocab = 0;
  double eps = 1e-5, dt_min = 0, dt_max = INFINITY;
  bool per_group_norm = false;  // state-spaces' RMSNormGated(group_size = d_inner / G)
  std::vector<double> embedding, norm_f, head;
  std::vector<Layer> layers;

  // (L, vocab) logits of every position
  std::vector<double> logits(const std::vector<int>& tokens) const {
    const std::size_t L = tokens.size(), cd = d_inner + 2 * G * N, ip = 2 * d_inner + 2 * G * N + H;
    std::vector<double> x(L * d_model);
    for (std::size_t t = 0; t < L; ++t)
      for (std::size_t i = 0; i < d_model; ++i) x[t * d_model + i] = embedding[std::size_t(tokens[t]) * d_model + i];
    for (const Layer& l : layers) {
      const std::vector<double> h = rms(x, L, d_model, l.norm, d_model);
      const std::vector<double> proj = linear(h, L, d_model, l.in_proj, l.in_proj_bias, ip);
      // causal depthwise conv over xBC, then silu
      std::vector<double> xbc(L * cd);
      for (std::size_t t = 0; t < L; ++t)
        for (std::size_t c = 0; c < cd; ++c) {
          double s = l.conv_bias.empty() ? 0 : l.conv_bias[c];
          for (std::size_t k = 0; k < K; ++k)
            if (t + k + 1 >= K) s += l.conv_weight[c * K + k] * proj[(t + k + 1 - K) * ip + d_inner + c];
          xbc[t * cd + c] = silu(s);
        }
      Ssd ssd;
      ssd.batch = 1, ssd.L = L, ssd.H = H, ssd.P = P, ssd.N = N, ssd.G = G;
      ssd.A = l.A, ssd.D = l.D, ssd.dt_bias = l.dt_bias;
      ssd.softplus = true, ssd.dt_min = dt_min, ssd.dt_max = dt_max;
      for (std::size_t t = 0; t < L; ++t) {
        for (std::size_t c = 0; c < d_inner; ++c) ssd.x.push_back(xbc[t * cd + c]);
        for (std::size_t c = 0; c < G * N; ++c) ssd.B.push_back(xbc[t * cd + d_inner + c]);
        for (std::size_t c = 0; c < G * N; ++c) ssd.C.push_back(xbc[t * cd + d_inner + G * N + c]);
        for (std::size_t c = 0; c < H; ++c) ssd.dt.push_back(proj[t * ip + d_inner + cd + c]);
      }
      std::vector<double> y = ssd.run();
      // y * silu(z), RMS-normalized over d_inner or over each group
      for (std::size_t t = 0; t < L; ++t)
        for (std::size_t c = 0; c < d_inner; ++c) y[t * d_inner + c] *= silu(proj[t * ip + c]);
      y = rms(y, L, d_inner, l.gate_norm, per_group_norm ? d_inner / G : d_inner);
      const std::vector<double> out = linear(y, L, d_inner, l.out_proj, l.out_proj_bias, d_model);
      for (std::size_t i = 0; i < x.size(); ++i) x[i] += out[i];
    }
    return linear(rms(x, L, d_model, norm_f, d_model), L, d_model, head, {}, vocab);
  }

  // x / sqrt(mean(x^2) + eps) * w over each `width` consecutive values of a row
  std::vector<double> rms(const std::vector<double>& x, std::size_t rows, std::size_t cols,
                          const std::vector<double>& w, std::size_t width) const {
    std::vector<double> y(x.size());
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c0 = 0; c0 < cols; c0 += width) {
        double ss = 0;
        for (std::size_t c = c0; c < c0 + width; ++c) ss += x[r * cols + c] * x[r * cols + c];
        const double scale = 1 / std::sqrt(ss / double(width) + eps);
        for (std::size_t c = c0; c < c0 + width; ++c) y[r * cols + c] = x[r * cols + c] * scale * w[c];
      }
    return y;
  }

  static std::vector<double> linear(const std::vector<double>& x, std::size_t rows, std::size_t in,
                                    const std::vector<double>& w, const std::vector<double>& b,
                                    std::size_t out) {
    std::vector<double> y(rows * out);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t o = 0; o < out; ++o) {
        double s = b.empty() ? 0 : b[o];
        for (std::size_t i = 0; i < in; ++i) s += w[o * in + i] * x[r * in + i];
        y[r * out + o] = s;
      }
    return y;
  }
};

}  // namespace naive
