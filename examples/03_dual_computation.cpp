// 03: one system, two ways to compute it.
//
// A linear time-invariant SSM is a causal convolution: unrolling
// x_t = A x_{t-1} + B u_t gives y_t = sum_k C A^k B u_{t-k} + D u_t. So the same
// parameters can be evaluated
//   - recurrently: one step at a time, O(N^2) (diagonal A: O(N)) per step,
//     constant memory, inherently sequential: how you generate or stream;
//   - as a convolution: materialize the kernel K_k = C A^k B once, then
//     y = K * u with FFTs in O(L log L): parallel over time: how S4 trains.
// Both give the same numbers; which is faster depends on L and N.
#include "best_time.hpp"   // best_seconds
#include "no_options.hpp"  // --help

#include <ssm/conv.hpp>        // kernel, convolve
#include <ssm/discretize.hpp>  // ContinuousDiagonal, discretize
#include <ssm/scan.hpp>        // recurrent

#include <cstdio>
#include <random>

int main(int argc, char** argv) {
  no_options(argc, argv,
             "One S4D-like diagonal system (N = 64) run as a recurrence and as an FFT\n"
             "convolution for L = 256 to 262144: the time of each (best of three runs) and\n"
             "how far apart their outputs are.\n");
  const int N = 64;
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> uniform(-1, 1);

  // A diagonal system with complex eigenvalues, as in S4D: lambda = -1/2 + i pi n.
  ssm::ContinuousDiagonal<std::complex<double>> sys;
  sys.A.resize(N);
  sys.B.resize(N, 1);
  sys.C.resize(1, N);
  sys.D.resize(1, 1);
  for (int n = 0; n < N; ++n) {
    sys.A(n) = {-0.5, M_PI * n};
    sys.B(n, 0) = 1;
    sys.C(0, n) = {uniform(rng), uniform(rng)};
  }
  sys.D(0, 0) = 0.5;
  const auto d = ssm::discretize(sys, 0.01, ssm::Method::zoh);

  std::printf("S4D-like diagonal system, N = %d complex states, one input and output\n\n", N);
  std::printf("  L         recurrent    convolve     max |difference| / max |y|\n");
  for (int L = 256; L <= (1 << 18); L *= 4) {
    Eigen::VectorXd u(L);
    for (auto& v : u) v = uniform(rng);
    Eigen::VectorXcd y_rec, y_conv;
    const double t_rec = best_seconds([&] { y_rec = ssm::recurrent(d, u); });
    const double t_conv = best_seconds([&] { y_conv = ssm::convolve(d, u); });
    const double diff = (y_rec - y_conv).cwiseAbs().maxCoeff() / y_rec.cwiseAbs().maxCoeff();
    std::printf("  %-8d  %8.3f ms  %8.3f ms  %.1e\n", L, t_rec * 1e3, t_conv * 1e3, diff);
  }
  std::printf(
      "\nThe difference is rounding (~1e-15 in double). The recurrence costs O(L N) here;\n"
      "the convolution O(L N) for the kernel plus O(L log L) for the FFTs, so on one CPU\n"
      "core with one channel the recurrence is usually cheaper. The convolution pays off\n"
      "when the time steps are computed in parallel (GPUs: S4's training mode), or when\n"
      "the kernel is reused across many inputs; the recurrence is what streams and\n"
      "generates, one step at a time in constant memory.\n");
  return 0;
}
