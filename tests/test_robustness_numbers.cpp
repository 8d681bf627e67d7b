// What the numerical operations do with bad or extreme input (the models,
// checkpoints and sampling: test_robustness.cpp); docs/robustness.md lists
// each behaviour with the test that checks it.
// - NaN / Inf in inputs: how each path propagates them. The oracle is the
//   same computation on clean input: entries that cannot depend on the bad
//   value are bitwise those of the clean run, the others are NaN (or not
//   finite, for Inf).
// - Unstable systems: the closed form of their growth, up to overflow.
// - Empty sequences and sizes that overflow.
#include <ssm/conv.hpp>
#include <ssm/discretize.hpp>
#include <ssm/linear_recurrence.hpp>
#include <ssm/scan.hpp>
#include <ssm/selective_scan.hpp>

#include "util.hpp"

#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace {

using Catch::Matchers::Message;
using Matrix = Eigen::MatrixXd;

const float nan_f = std::numeric_limits<float>::quiet_NaN();
const float inf_f = std::numeric_limits<float>::infinity();
const double nan_d = std::numeric_limits<double>::quiet_NaN();
const double inf_d = std::numeric_limits<double>::infinity();

// Entries of `bad` are NaN (nan_only) or not finite where `affected` says,
// and bitwise those of `clean` elsewhere (within `tolerance`, if given).
template <class M>
void check_propagation(const M& bad, const M& clean,
                       const std::function<bool(Eigen::Index, Eigen::Index)>& affected,
                       bool nan_only, double tolerance = 0) {
  REQUIRE(bad.rows() == clean.rows());
  REQUIRE(bad.cols() == clean.cols());
  for (Eigen::Index i = 0; i < bad.rows(); ++i)
    for (Eigen::Index j = 0; j < bad.cols(); ++j) {
      INFO("entry (" << i << ", " << j << ") = " << bad(i, j));
      if (!affected(i, j) && tolerance == 0)
        REQUIRE(bad(i, j) == clean(i, j));
      else if (!affected(i, j))
        REQUIRE(std::abs(double(bad(i, j)) - double(clean(i, j))) <= tolerance);
      else if (nan_only)
        REQUIRE(std::isnan(bad(i, j)));
      else
        REQUIRE(!std::isfinite(bad(i, j)));
    }
}

ssm::Discrete<double> random_system(Eigen::Index N, Eigen::Index P, Eigen::Index Q) {
  ssm::Discrete<double> d;
  d.A = 0.9 * test::random_matrix<double>(N, N) / double(N);  // stable: |A| < 0.9
  d.B = test::random_matrix<double>(N, P);
  d.C = test::random_matrix<double>(Q, N);
  d.D = test::random_matrix<double>(Q, P);
  return d;
}

}  // namespace

// ---------------------------------------------------------------------------
// NaN and Inf in inputs

TEST_CASE("recurrent, scan and step: a NaN or Inf input spoils its step and every later one",
          "[robustness][nan]") {
  const double value = GENERATE(nan_d, inf_d);
  const Eigen::Index L = 50, t = 20, long_L = 10000, long_t = 6000;
  const Matrix u = test::random_matrix<double>(L, 2), ul = test::random_matrix<double>(long_L, 2);
  Matrix v = u, vl = ul;
  v(t, 1) = value;
  vl(long_t, 0) = value;
  // (B has no zero entry, so the bad input reaches every state and output)
  auto check_system = [&](const auto& sys) {
    check_propagation(ssm::recurrent(sys, v), ssm::recurrent(sys, u),
                      [&](Eigen::Index i, Eigen::Index) { return i >= t; }, std::isnan(value));
    // the parallel scan: chunks before the bad step are untouched
    check_propagation(ssm::scan(sys, vl, 2), ssm::scan(sys, ul, 2),
                      [&](Eigen::Index i, Eigen::Index) { return i >= long_t; }, std::isnan(value));
    Eigen::VectorXd x = Eigen::VectorXd::Zero(4);
    const Eigen::VectorXd y = ssm::step(sys, x, v.row(t).transpose());
    CHECK(!y.allFinite());
    CHECK(!x.allFinite());
  };
  const auto d = random_system(4, 2, 3);
  SECTION("dense A") { check_system(d); }
  SECTION("diagonal A") {
    ssm::DiscreteDiagonal<double> diag;
    diag.A = Eigen::Vector4d(0.5, -0.3, 0.9, 0.1);
    diag.B = d.B, diag.C = d.C, diag.D = d.D;
    check_system(diag);
  }
}

TEST_CASE("convolve: a NaN or Inf input spoils every output, earlier steps too (FFT)",
          "[robustness][nan]") {
  const double value = GENERATE(nan_d, inf_d);
  const auto d = random_system(4, 2, 3);
  Matrix u = test::random_matrix<double>(50, 2);
  u(20, 1) = value;
  const Matrix y = ssm::convolve(d, u);
  check_propagation(y, y, [](Eigen::Index, Eigen::Index) { return true; }, false);
}

TEST_CASE("a NaN in a discrete system's matrices reaches every output", "[robustness][nan]") {
  // the evaluation paths do not check the matrices (discretize does): NaN
  // times the zero initial state is NaN, and every output reads the state
  auto d = random_system(4, 2, 3);
  d.A(1, 2) = nan_d;
  const Matrix u = test::random_matrix<double>(30, 2);
  auto all = [](Eigen::Index, Eigen::Index) { return true; };
  const Matrix y = ssm::recurrent(d, u), yc = ssm::convolve(d, u);
  check_propagation(y, y, all, true);
  check_propagation(yc, yc, all, true);
}

TEMPLATE_TEST_CASE("linear_recurrence: a NaN or Inf spoils its channel from its step on",
                   "[robustness][nan]", float, double) {
  using T = TestType;
  using Rows = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  // 19 channels: SIMD blocks and a scalar tail; 1 channel of 100000 steps:
  // the contiguous kernel and, with 2 threads, time chunks; 5 channels of
  // 30011 steps: time chunks, whose reruns go on as long as a channel is
  // not finite, so the other channels' entries may differ in the last bits
  // (a rerun's value instead of pass 1's; both within rounding: see
  // run_time_parallel in linear_recurrence.hpp)
  const auto [C, L, t, c] = GENERATE(table<Eigen::Index, Eigen::Index, Eigen::Index, Eigen::Index>(
      {{19, 40, 15, 7}, {19, 40, 15, 18}, {1, 100000, 70001, 0}, {5, 30011, 13001, 3}}));
  const bool in_a = GENERATE(false, true);
  const T value = GENERATE(std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity());
  INFO(C << " channels, " << (in_a ? "a" : "b") << "[" << t << ", " << c << "] = " << value);
  Rows a = Rows::NullaryExpr(L, C, [] { return T(0.9) * test::uniform<T>(); });
  const Rows b = Rows::NullaryExpr(L, C, [] { return test::uniform<T>(); });
  Rows a_bad = a, b_bad = b;
  (in_a ? a_bad : b_bad)(t, c) = value;
  Eigen::Matrix<T, Eigen::Dynamic, 1> h0 = Eigen::Matrix<T, Eigen::Dynamic, 1>::Zero(C), h1 = h0;
  const Rows clean = ssm::linear_recurrence(a, b, h0, 2), out = ssm::linear_recurrence(a_bad, b_bad, h1, 2);
  // Inf in a meets h = 0 only if h_{t-1} = 0: the uniform draws make that impossible
  // |h| <= 10 (|a| <= 0.9, |b| <= 1): a few ulps of that
  const double tolerance = C == 5 ? 40 * double(std::numeric_limits<T>::epsilon()) : 0;
  // (structured bindings cannot be captured in C++17: clang rejects it)
  check_propagation(out, clean, [t = t, c = c](Eigen::Index i, Eigen::Index j) { return i >= t && j == c; },
                    std::isnan(value), tolerance);
}

TEST_CASE("selective_scan: how a NaN or Inf in each operand propagates", "[robustness][nan]") {
  // 19 channels: a full SIMD block, an overlapping one and (AVX-512) a
  // scalar block; N = 5: passes of 4 and 1 states
  const Eigen::Index D = GENERATE(3, 19), N = 5, L = 30, t = 12, d = 2;
  const bool softplus = GENERATE(false, true);
  const float value = GENERATE(nan_f, inf_f);
  auto uniform = [](Eigen::Index r, Eigen::Index c, float lo, float hi) {
    return Eigen::MatrixXf(Eigen::MatrixXf::NullaryExpr(r, c, [=] { return lo + (hi - lo) * (test::uniform<float>() + 1) / 2; }));
  };
  const Eigen::MatrixXf u = uniform(L, D, -1, 1), delta = uniform(L, D, 0, 0.5),
                        A = uniform(D, N, -2, -0.1), B = uniform(L, N, -1, 1),
                        C = uniform(L, N, -1, 1), z = uniform(L, D, -2, 2);
  const Eigen::VectorXf Dk = uniform(D, 1, -1, 1), bias = uniform(D, 1, -0.5, 0.5);
  auto run = [&](const std::string& operand, Eigen::MatrixXf* state) {
    Eigen::MatrixXf u2 = u, delta2 = delta, B2 = B, C2 = C, z2 = z;
    Eigen::VectorXf D2 = Dk, bias2 = bias;
    if (operand == "u") u2(t, d) = value;
    if (operand == "delta") delta2(t, d) = value;
    if (operand == "B") B2(t, 1) = value;
    if (operand == "C") C2(t, 1) = value;
    if (operand == "z") z2(t, d) = value;
    if (operand == "D") D2(d) = value;
    if (operand == "delta_bias") bias2(d) = value;
    ssm::SelectiveScanOptions opt;
    opt.D = &D2;
    opt.z = &z2;
    opt.delta_bias = &bias2;
    opt.delta_softplus = softplus;
    opt.state = state;
    return ssm::selective_scan(u2, delta2, A, B2, C2, opt);
  };
  using Where = std::function<bool(Eigen::Index, Eigen::Index)>;
  const Where channel_from_t = [&](Eigen::Index i, Eigen::Index j) { return i >= t && j == d; };
  const Where all_from_t = [&](Eigen::Index i, Eigen::Index) { return i >= t; };
  const Where row_t = [&](Eigen::Index i, Eigen::Index) { return i == t; };
  const Where entry_t = [&](Eigen::Index i, Eigen::Index j) { return i == t && j == d; };
  const Where channel = [&](Eigen::Index, Eigen::Index j) { return j == d; };
  const Where none = [](Eigen::Index, Eigen::Index) { return false; };
  // operand, the outputs it reaches, the states it reaches (rows: channels)
  const std::vector<std::tuple<std::string, Where, Where>> cases = {
      {"u", channel_from_t, [&](Eigen::Index i, Eigen::Index) { return i == d; }},
      {"delta", channel_from_t, [&](Eigen::Index i, Eigen::Index) { return i == d; }},
      {"delta_bias", channel, [&](Eigen::Index i, Eigen::Index) { return i == d; }},
      {"B", all_from_t, [](Eigen::Index, Eigen::Index n) { return n == 1; }},  // group-wide
      {"C", row_t, none},
      {"z", entry_t, none},
      {"D", channel, none},
  };
  Eigen::MatrixXf s0 = uniform(D, N, -1, 1);
  Eigen::MatrixXf clean_state = s0;
  const Eigen::MatrixXf clean = run("", &clean_state);
  for (const auto& [operand, outputs, states] : cases) {
    INFO(operand << " = " << value << ", D = " << D << (softplus ? ", softplus" : ""));
    Eigen::MatrixXf state = s0;
    const Eigen::MatrixXf y = run(operand, &state);
    // Inf in delta without softplus: Delta A = -inf, e^{Delta A} = 0 and
    // Delta u = +-inf; in C, z and D an Inf times a finite value stays
    // infinite or, times zero, NaN: not finite either way
    check_propagation(y, clean, outputs, std::isnan(value));
    check_propagation(state, clean_state, states, std::isnan(value));
  }
}

// ---------------------------------------------------------------------------
// Unstable systems

TEST_CASE("unstable systems discretize and grow geometrically until they overflow",
          "[robustness][unstable]") {
  // x' = x + u: ZOH gives A_d = e, B_d = e - 1; the impulse response
  // (e - 1) e^k overflows double (1.8e308) at k = 710
  ssm::Continuous<double> sys;
  sys.A = Matrix::Ones(1, 1);
  sys.B = Matrix::Ones(1, 1);
  sys.C = Matrix::Ones(1, 1);
  sys.D = Matrix::Zero(1, 1);
  const auto d = ssm::discretize(sys, 1.0, ssm::Method::zoh);
  CHECK(d.A(0, 0) == Approx(std::exp(1.0)).epsilon(1e-15));
  const Matrix K = ssm::kernel(d, 800);
  Matrix impulse = Matrix::Zero(800, 1);
  impulse(0, 0) = 1;
  const Matrix y = ssm::recurrent(d, impulse);
  for (Eigen::Index k = 0; k < 800; ++k) {
    INFO("k = " << k);
    const double want = std::expm1(1.0) * std::exp(double(k));
    if (k < 700) {
      // each step rounds once: k ulps at most
      REQUIRE(K(k, 0) == Approx(want).epsilon(1e-13));
      REQUIRE(y(k, 0) == Approx(want).epsilon(1e-13));
    } else if (k >= 710) {
      REQUIRE(K(k, 0) == inf_d);
      REQUIRE(y(k, 0) == inf_d);
    }
  }
  // convolve with an infinite kernel: every output non-finite (FFT)
  const Matrix yc = ssm::convolve(d, impulse);
  check_propagation(yc, yc, [](Eigen::Index, Eigen::Index) { return true; }, false);
}

// ---------------------------------------------------------------------------
// Empty and enormous sizes

TEST_CASE("zero-length sequences give empty outputs and keep the state", "[robustness][empty]") {
  const auto d = random_system(4, 2, 3);
  const Matrix u(0, 2);
  const Eigen::VectorXd x0 = Eigen::VectorXd::Random(4);
  Eigen::VectorXd x = x0;
  CHECK(ssm::recurrent(d, u, x).rows() == 0);
  CHECK(x == x0);
  CHECK(ssm::scan(d, u, x, 2).rows() == 0);
  CHECK(x == x0);
  const Matrix yc = ssm::convolve(d, u);
  CHECK((yc.rows() == 0 && yc.cols() == 3));
  const Matrix K = ssm::kernel(d, 0);
  CHECK((K.rows() == 0 && K.cols() == 6));

  std::vector<float> h = {1, 2, 3};
  ssm::linear_recurrence<float>(0, 3, {nullptr, 0}, {nullptr, 0}, h.data());
  CHECK(h == std::vector<float>{1, 2, 3});

  const Eigen::MatrixXf empty(0, 5), A = -Eigen::MatrixXf::Ones(5, 3), BC(0, 3);
  Eigen::MatrixXf state = Eigen::MatrixXf::Ones(5, 3);
  ssm::SelectiveScanOptions opt;
  opt.state = &state;
  const Eigen::MatrixXf y = ssm::selective_scan(empty, empty, A, BC, BC, opt);
  CHECK((y.rows() == 0 && y.cols() == 5));
  CHECK(state == Eigen::MatrixXf::Ones(5, 3));
  ssm::SelectiveScanArgs p;  // L = 0: no operand needed
  p.D = 5, p.N = 3, p.A = A.data(), p.A_n_stride = 5;
  REQUIRE_NOTHROW(ssm::selective_scan(p));
}

TEST_CASE("enormous L: kernel() refuses sizes that overflow", "[robustness][huge]") {
  const auto d = random_system(4, 2, 3);
  const Eigen::Index huge = std::numeric_limits<Eigen::Index>::max();
  REQUIRE_THROWS_MATCHES(ssm::kernel(d, huge), std::length_error,
                         Message("ssm::kernel: L = 9223372036854775807 lags of a 3x2 response "
                                 "overflow the size of an array"));
  // L * 6 entries * 8 bytes just past PTRDIFF_MAX
  REQUIRE_THROWS_AS(ssm::kernel(d, huge / 48 + 1), std::length_error);
}
