// selective_scan_ref (state-spaces/mamba) in double precision with plain
// loops: the oracle of ssm::selective_scan. Layouts: u, delta, z, y
// (batch, L, D); A (D, N); B, C (batch, L, groups, N); state (batch, D, N).
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

namespace naive {

struct SelectiveScan {
  std::size_t batch, L, D, N, groups;
  std::vector<double> u, delta, A, B, C, D_skip, z, delta_bias, state;
  bool softplus = false;

  // The scales of the rounding errors, which cancelling sums make much
  // larger than |h| and |y| themselves: m_t = e^{Delta A} m_{t-1} +
  // |Delta B u| for each state (from |initial state|), and
  // sum_n |C| m + |D u| (times |gate|) for y.
  std::vector<double> state_magnitude, y_magnitude;

  // Returns y; `state` (if not empty) is the initial state and becomes the
  // final one.
  std::vector<double> run() {
    std::vector<double> y(batch * L * D);
    y_magnitude.assign(y.size(), 0.0);
    const std::size_t width = D / groups;
    if (state.empty()) state.assign(batch * D * N, 0.0);
    state_magnitude.resize(state.size());
    for (std::size_t i = 0; i < state.size(); ++i) state_magnitude[i] = std::abs(state[i]);
    for (std::size_t b = 0; b < batch; ++b)
      for (std::size_t d = 0; d < D; ++d) {
        const std::size_t g = d / width;
        for (std::size_t t = 0; t < L; ++t) {
          const std::size_t i = (b * L + t) * D + d;
          double dt = delta[i] + (delta_bias.empty() ? 0.0 : delta_bias[d]);
          if (softplus) dt = dt > 20 ? dt : std::log1p(std::exp(dt));
          double acc = 0, mag = 0;
          for (std::size_t n = 0; n < N; ++n) {
            const std::size_t j = ((b * L + t) * groups + g) * N + n;
            double& h = state[(b * D + d) * N + n];
            double& m = state_magnitude[(b * D + d) * N + n];
            const double a = std::exp(dt * A[d * N + n]), in = dt * B[j] * u[i];
            h = a * h + in;
            m = a * m + std::abs(in);
            acc += C[j] * h;
            mag += std::abs(C[j]) * m;
          }
          if (!D_skip.empty()) acc += D_skip[d] * u[i], mag += std::abs(D_skip[d] * u[i]);
          if (!z.empty()) {
            const double gate = z[i] / (1 + std::exp(-z[i]));
            acc *= gate, mag *= std::abs(gate);
          }
          y[i] = acc;
          y_magnitude[i] = mag;
        }
      }
    return y;
  }
};

}  // namespace naive
