// 01: the simplest state space model.
//
// A continuous-time linear system x'(t) = A x + B u, y = C x + D u is turned
// into a discrete one (x_t = A_d x_{t-1} + B_d u_t, y_t = C x_t + D u_t) and
// run over a sequence, one step at a time: the recurrence that S4 and Mamba
// are built on.
#include "best_time.hpp"   // best_seconds
#include "no_options.hpp"  // --help

#include <ssm/discretize.hpp>  // Continuous, discretize
#include <ssm/scan.hpp>        // recurrent, step

#include <Eigen/Eigenvalues>

#include <algorithm>
#include <cstdio>
#include <random>

int main(int argc, char** argv) {
  no_options(argc, argv,
             "A random 16-state SSM, discretized by zero-order hold and run over 2048\n"
             "steps with recurrent() and step(): the shapes, the spectral radius, the cost\n"
             "per step and a few outputs.\n");
  const int N = 16, P = 1, Q = 1, L = 2048;
  std::mt19937 rng(42);
  std::normal_distribution<double> normal;
  auto random = [&](int rows, int cols) {
    Eigen::MatrixXd m(rows, cols);
    for (auto& v : m.reshaped()) v = normal(rng);
    return m;
  };

  // A random system, made stable by shifting A's eigenvalues left.
  ssm::Continuous<double> sys;
  sys.A = random(N, N) / std::sqrt(double(N)) - 1.5 * Eigen::MatrixXd::Identity(N, N);
  sys.B = random(N, P);
  sys.C = random(Q, N);
  sys.D = random(Q, P);
  const double dt = 0.05;
  const auto d = ssm::discretize(sys, dt, ssm::Method::zoh);

  std::printf("A simple SSM: N = %d states, P = %d input, Q = %d output, L = %d steps\n", N, P,
              Q, L);
  std::printf("  continuous A %ldx%ld, B %ldx%ld, C %ldx%ld, D %ldx%ld\n", long(sys.A.rows()),
              long(sys.A.cols()), long(sys.B.rows()), long(sys.B.cols()), long(sys.C.rows()),
              long(sys.C.cols()), long(sys.D.rows()), long(sys.D.cols()));
  std::printf("  zero-order hold with dt = %.2f: A_d = expm(A dt), spectral radius %.4f (< 1: "
              "stable)\n",
              dt, d.A.eigenvalues().cwiseAbs().maxCoeff());

  // Input: a sine wave with noise; u has one row per time step (L x P).
  Eigen::MatrixXd u(L, P);
  for (int t = 0; t < L; ++t) u(t, 0) = std::sin(0.05 * t) + 0.1 * normal(rng);

  // The best of three runs: the first is ~3x slower (a cold start).
  Eigen::MatrixXd y;
  const double seconds = best_seconds([&] { y = ssm::recurrent(d, u); });

  std::printf("  y = recurrent(d, u): %ldx%ld; per step: N^2 + N (P + Q) + P Q = %d "
              "multiply-adds\n",
              long(y.rows()), long(y.cols()), N * N + N * (P + Q) + P * Q);
  std::printf("  time: %.3f ms for %d steps (best of 3 runs), %.1f ns per step\n", seconds * 1e3, L,
              seconds * 1e9 / L);
  std::printf("\n  t      u_t        y_t\n");
  for (int t : {0, 1, 2, 10, 100, 1000, L - 1}) std::printf("  %-5d %+.5f   %+.5f\n", t, u(t, 0), y(t, 0));

  // The same numbers, one step at a time, as a streaming application would run it.
  Eigen::VectorXd x = Eigen::VectorXd::Zero(N);
  double max_diff = 0;
  for (int t = 0; t < L; ++t)
    max_diff = std::max(max_diff, std::abs(ssm::step(d, x, u.row(t).transpose())(0) - y(t, 0)));
  std::printf("\n  step() one sample at a time matches recurrent(): max |difference| = %.1e\n",
              max_diff);
  return 0;
}
