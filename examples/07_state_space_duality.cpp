// 07: Mamba-2's state space duality: one layer, a recurrence and a masked
// attention at once.
//
// Mamba-2 keeps Mamba's selective step size but makes the decay one scalar
// per head and step, a_t = exp(dt_t A). Its SSM, per head, with a P x N state
// (P channels of x, N states):
//   h_t = a_t h_{t-1} + dt_t x_t B_t^T,   y_t = h_t C_t + D x_t.
// Unrolled, y_t = sum_{s <= t} M[t][s] x_s + D x_t with
//   M[t][s] = (C_t . B_s) (a_{s+1} ... a_t) dt_s,
// a lower-triangular L x L matrix: causal attention whose scores are C_t . B_s
// (queries C, keys B, values x) and whose mask is the decay between s and t
// (Dao and Gu, "Transformers are SSMs", 2024). So the same weights can run
//   - recurrently (ssm::ssd_recurrent): O(L N P), one step at a time,
//     constant memory: decoding, and prefill on CPUs;
//   - quadratically: y = M x, O(L^2 (N + P)), all steps at once like
//     attention (here written out in double, as the oracle);
//   - chunked (ssm::ssd_chunked): the quadratic form inside chunks of Q
//     steps, the recurrence across chunks: matrix products, fast on GPUs.
#include "no_options.hpp"  // --help

#include <ssm/ssd.hpp>  // ssd_recurrent, ssd_chunked, SsdArgs

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

namespace {

constexpr std::size_t H = 2, P = 8, N = 16;  // heads, channels per head, states

// One sequence of L steps: rows (L, H, P) of x and y, (L, H) of dt, (L, N)
// of B and C (one group: every head shares them).
struct Layer {
  std::size_t L;
  std::vector<float> x, dt, B, C, y;
  float A[H] = {-1.0f, -0.25f}, D[H] = {0.5f, 0.5f};

  Layer(std::size_t L_, std::mt19937& rng) : L(L_), x(L * H * P), dt(L * H), B(L * N), C(L * N), y(L * H * P) {
    std::uniform_real_distribution<float> u(-1, 1), step(0.02f, 0.3f);
    for (auto* v : {&x, &B, &C})
      for (auto& e : *v) e = u(rng);
    for (auto& e : dt) e = step(rng);
  }
  ssm::SsdArgs args() {
    ssm::SsdArgs p;
    p.L = L, p.heads = H, p.head_dim = P, p.N = N;
    p.x = x.data(), p.x_time_stride = H * P;
    p.dt = dt.data(), p.dt_time_stride = H;  // dt as given: no bias, softplus or clamp
    p.A = A, p.D = D;
    p.B = B.data(), p.B_time_stride = N;
    p.C = C.data(), p.C_time_stride = N;
    p.y = y.data(), p.y_time_stride = H * P;
    return p;
  }
  // C_t . B_s, in double
  double score(std::size_t t, std::size_t s) const {
    double sum = 0;
    for (std::size_t n = 0; n < N; ++n) sum += double(C[t * N + n]) * B[s * N + n];
    return sum;
  }
  // the mask decay[t][s] = a_{s+1} ... a_t of head h (s <= t), in double
  double decay(std::size_t h, std::size_t t, std::size_t s) const {
    double log_decay = 0;
    for (std::size_t k = s + 1; k <= t; ++k) log_decay += double(dt[k * H + h]) * A[h];
    return std::exp(log_decay);
  }
  // y = M x + D x, every head, in double: O(L^2 (N + P))
  std::vector<double> quadratic() const {
    std::vector<double> out(L * H * P, 0.0);
    for (std::size_t h = 0; h < H; ++h)
      for (std::size_t t = 0; t < L; ++t) {
        double* yt = &out[(t * H + h) * P];
        double log_decay = 0;  // log(a_{s+1} ... a_t), s from t down to 0
        for (std::size_t s = t + 1; s-- > 0;) {
          const double m = score(t, s) * std::exp(log_decay) * dt[s * H + h];
          for (std::size_t p = 0; p < P; ++p) yt[p] += m * x[(s * H + h) * P + p];
          log_decay += double(dt[s * H + h]) * A[h];
        }
        for (std::size_t p = 0; p < P; ++p) yt[p] += double(D[h]) * x[(t * H + h) * P + p];
      }
    return out;
  }
};

double max_relative_difference(const std::vector<float>& y, const std::vector<double>& ref) {
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    diff = std::max(diff, std::abs(y[i] - ref[i]));
    scale = std::max(scale, std::abs(ref[i]));
  }
  return diff / scale;
}

template <class F>
double milliseconds(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return 1e3 * std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  no_options(argc, argv,
             "Mamba-2's SSM as a recurrence and as masked attention: its decay mask, the\n"
             "same outputs from ssd_recurrent, ssd_chunked and y = M x, and the time of\n"
             "each as L grows.\n");
  std::mt19937 rng(2024);
  std::printf("Mamba-2's SSM, %zu heads of %zu channels, N = %zu states, one group\n\n", H, P, N);

  // 1. The mask. A large step at t = 4 decays the state by exp(dt A) =
  // exp(-4): for head 0, every decay[t][s] with s < 4 <= t is at least 55x
  // smaller than decay[3][s]; M multiplies it by the scores C_t . B_s and dt_s.
  Layer small(8, rng);
  small.dt[4 * H + 0] = 4.0f;
  std::printf("The mask decay[t][s] = a_{s+1} ... a_t of head 0 (A = -1) over 8 steps, with a\n"
              "large step dt_4 = 4. M[t][s] = decay[t][s] (C_t . B_s) dt_s is lower triangular,\n"
              "and the step at t = 4 all but erases what came before it\n\n");
  for (std::size_t t = 0; t < small.L; ++t) {
    std::printf("  t = %zu ", t);
    for (std::size_t s = 0; s <= t; ++s) std::printf(" %6.4f", small.decay(0, t, s));
    std::printf("\n");
  }

  // 2. The same outputs three ways; L not a multiple of the chunk sizes.
  Layer layer(300, rng);
  const std::vector<double> ref = layer.quadratic();
  std::printf("\nL = %zu: max |y - y_quadratic| / max |y_quadratic| (y_quadratic in double)\n",
              layer.L);
  double worst = 0;
  ssm::ssd_recurrent(layer.args());
  worst = std::max(worst, max_relative_difference(layer.y, ref));
  std::printf("  recurrent          %.1e\n", max_relative_difference(layer.y, ref));
  for (std::size_t Q : {16, 64, 256}) {
    std::fill(layer.y.begin(), layer.y.end(), 0.f);
    ssm::ssd_chunked(layer.args(), Q);
    worst = std::max(worst, max_relative_difference(layer.y, ref));
    std::printf("  chunked, Q = %-4zu  %.1e\n", Q, max_relative_difference(layer.y, ref));
  }
  if (!(worst < 1e-5)) {  // float rounding is ~1e-7 here
    std::printf("the three forms disagree: %.1e\n", worst);
    return 1;
  }

  // 3. What each costs as L grows (one thread).
  std::printf("\n  L       recurrent   chunked Q = 64   quadratic (double)\n");
  for (std::size_t L = 256; L <= 4096; L *= 4) {
    Layer l(L, rng);
    ssm::ssd_recurrent(l.args(), 1);  // warm-up
    const double rec = milliseconds([&] { ssm::ssd_recurrent(l.args(), 1); });
    const double chunked = milliseconds([&] { ssm::ssd_chunked(l.args(), 64, 1); });
    const double quad = milliseconds([&] { l.quadratic(); });
    std::printf("  %-6zu  %7.3f ms  %10.3f ms  %14.1f ms\n", L, rec, chunked, quad);
  }
  std::printf(
      "\nThe differences are float rounding. The recurrence and the chunked form grow\n"
      "linearly with L, the quadratic form as L^2, like attention. On a CPU the\n"
      "recurrence is the fastest (bench/RESULTS.md: the chunked form ran at 0.2-0.5 of\n"
      "its speed at every L measured), so Mamba2LM prefills with it; on a GPU the\n"
      "chunked form's matrix products win. Only the recurrence can decode: one step,\n"
      "a P x N state per head, whatever the context length.\n");
  return 0;
}
