// The evaluation paths of one discrete system (step, recurrent, kernel,
// convolve) against a naive double-precision loop and against each other.
#include <ssm/conv.hpp>
#include <ssm/scan.hpp>
#include <ssm/system.hpp>

#include "reference/naive.hpp"
#include "util.hpp"

#include <algorithm>
#include <cmath>
#include <complex>
#include <vector>

namespace {

using Eigen::Dynamic;
using Eigen::Index;

template <class T>
using Matrix = Eigen::Matrix<T, Dynamic, Dynamic>;

// The oracle's precision: double, or complex<double>.
template <class T>
using Wide = std::conditional_t<test::is_complex<T>::value, std::complex<double>, double>;

// The spectral norm by power iteration on A^H A (an SVD would cost this
// translation unit a minute of compile time per scalar type).
template <class T>
double spectral_norm(const Matrix<T>& A) {
  Eigen::Matrix<T, Dynamic, 1> v = Eigen::Matrix<T, Dynamic, 1>::Ones(A.cols());
  for (int i = 0; i < 200; ++i) v = (A.adjoint() * (A * v)).normalized();
  return double((A * v).norm());
}

// A random stable system: dense A scaled to spectral norm 0.95, or a
// diagonal A with |lambda| <= 0.98, so every power stays bounded.
template <class System>
System random_system(Index N, Index P, Index Q) {
  using T = typename System::Scalar;
  System s;
  if constexpr (System::IsDiagonal) {
    s.A.resize(N);
    for (Index i = 0; i < N; ++i) {
      const T z = test::uniform<T>();
      s.A(i) = z * test::real_t<T>(0.98 / std::max(1.0, double(std::abs(z))));
    }
  } else {
    Matrix<T> A = test::random_matrix<T>(N, N);
    if (N > 0) A *= test::real_t<T>(0.95 / spectral_norm(A));
    s.A = A;
  }
  s.B = test::random_matrix<T>(N, P);
  s.C = test::random_matrix<T>(Q, N);
  s.D = test::random_matrix<T>(Q, P);
  return s;
}

template <class System>
naive::Mat<Wide<typename System::Scalar>> dense_a(const System& s) {
  using W = Wide<typename System::Scalar>;
  if constexpr (System::IsDiagonal) return naive::from<W>(Matrix<W>(s.A.template cast<W>().asDiagonal()));
  else return naive::from<W>(s.A);
}

template <class W>
Matrix<W> to_eigen(const naive::Mat<W>& m) {
  Matrix<W> out(Index(m.rows), Index(m.cols));
  for (std::size_t i = 0; i < m.rows; ++i)
    for (std::size_t j = 0; j < m.cols; ++j) out(Index(i), Index(j)) = m(i, j);
  return out;
}

// |m| entry by entry, in double.
template <class W>
naive::Mat<double> magnitudes(const naive::Mat<W>& m) {
  naive::Mat<double> r(m.rows, m.cols);
  for (std::size_t i = 0; i < m.v.size(); ++i) r.v[i] = std::abs(m.v[i]);
  return r;
}

// Tolerances relative to the size of the terms summed (see
// check_against_naive): rounding grows with the length of the recurrence
// and the FFT; float keeps ~1e-7 per operation.
template <class T>
double tolerance() {
  return std::is_same<test::real_t<T>, float>::value ? 1e-4 : 1e-10;
}

template <class System>
void check_against_naive(Index N, Index P, Index Q, Index L) {
  using T = typename System::Scalar;
  using W = Wide<T>;
  const auto sys = random_system<System>(N, P, Q);
  const Matrix<T> u = test::random_matrix<T>(L, P);
  typename System::StateVector x0(N);
  for (Index i = 0; i < N; ++i) x0(i) = test::uniform<T>();

  std::vector<W> x_ref(x0.data(), x0.data() + N);
  const Matrix<W> y_ref = to_eigen(naive::recurrent(
      dense_a(sys), naive::from<W>(sys.B), naive::from<W>(sys.C),
      naive::from<W>(sys.D), naive::from<W>(u), x_ref));
  const Eigen::Map<const Eigen::Matrix<W, Dynamic, 1>> x_end(x_ref.data(), N);
  const double tol = tolerance<T>();

  // Errors are measured against the size of the terms each result sums: the
  // same computations on |A|, |B|, |C|, |D|, |u| and |x_-1| (the classic
  // bound on a float sum's rounding). Against the results themselves, a sum
  // that cancels far below its terms failed at random seeds, about 1 in
  // 150 (N = 1, L = 2: x_1 = a^2 x_-1 + a b u_0 + b u_1; L = 1, Q = 1:
  // y_0 = (C B + D) u_0).
  const auto A_abs = magnitudes(dense_a(sys)), B_abs = magnitudes(naive::from<W>(sys.B));
  const auto C_abs = magnitudes(naive::from<W>(sys.C)), D_abs = magnitudes(naive::from<W>(sys.D));
  const auto u_abs = magnitudes(naive::from<W>(u));
  // naive::recurrent's state is in/out: |x_-1| in, the final state's terms out
  std::vector<double> x_terms(std::size_t(N), 0.0), zero(std::size_t(N), 0.0);
  for (Index i = 0; i < N; ++i) x_terms[std::size_t(i)] = std::abs(x0(i));
  const double y_scale = test::max_abs(to_eigen(naive::recurrent(A_abs, B_abs, C_abs, D_abs, u_abs, x_terms)));
  const double x_scale = test::max_abs(Eigen::Map<const Eigen::VectorXd>(x_terms.data(), N));
  const double y0_scale = test::max_abs(to_eigen(naive::recurrent(A_abs, B_abs, C_abs, D_abs, u_abs, zero)));
  const double K_scale = test::max_abs(to_eigen(naive::kernel(A_abs, B_abs, C_abs, std::size_t(L))));
  INFO("N=" << N << " P=" << P << " Q=" << Q << " L=" << L);

  SECTION("recurrent from a given state, returning the final state") {
    auto x = x0;
    const Matrix<T> y = ssm::recurrent(sys, u, x);
    CHECK(test::abs_err(y, y_ref) <= tol * y_scale);
    if (N > 0) CHECK(test::abs_err(x, x_end) <= tol * x_scale);
  }
  SECTION("step by step") {
    auto x = x0;
    Matrix<T> y(L, Q);
    for (Index t = 0; t < L; ++t) y.row(t) = ssm::step(sys, x, u.row(t).transpose()).transpose();
    CHECK(test::abs_err(y, y_ref) <= tol * y_scale);
  }
  SECTION("convolve (zero state) equals recurrent (zero state)") {
    const Matrix<T> yc = ssm::convolve(sys, u), yr = ssm::recurrent(sys, u);
    REQUIRE(yc.rows() == L);
    CHECK(test::abs_err(yc, yr) <= tol * y0_scale);
  }
  SECTION("kernel equals C A^k B from repeated products") {
    const Matrix<W> K_ref = to_eigen(naive::kernel(
        dense_a(sys), naive::from<W>(sys.B), naive::from<W>(sys.C), std::size_t(L)));
    CHECK(test::abs_err(ssm::kernel(sys, L), K_ref) <= tol * K_scale);
  }
}

}  // namespace

// complex<float> shares every code path with float and complex<double>; it
// is left out to keep this translation unit quick to compile.
TEMPLATE_TEST_CASE("paths agree with a naive double loop", "[paths]", float, double,
                   std::complex<double>) {
  const Index N = GENERATE(1, 3, 8), P = GENERATE(1, 2), Q = GENERATE(1, 3);
  const Index L = GENERATE(0, 1, 2, 17, 600);
  SECTION("dense A") { check_against_naive<ssm::Discrete<TestType>>(N, P, Q, L); }
  SECTION("diagonal A") { check_against_naive<ssm::DiscreteDiagonal<TestType>>(N, P, Q, L); }
}

TEMPLATE_TEST_CASE("recurrent and convolve agree on long sequences", "[paths][long]",
                   float, double) {
  // The FFT's rounding grows like log L, the recurrence's like L |lambda|^k
  // summed: both stay inside the tolerance up to 10^5 steps.
  const Index L = GENERATE(4096, 100000);
  const Index N = 16;
  const auto dense = random_system<ssm::Discrete<TestType>>(N, 1, 1);
  const auto diag = random_system<ssm::DiscreteDiagonal<TestType>>(N, 1, 1);
  const Matrix<TestType> u = test::random_matrix<TestType>(L, 1);
  INFO("L=" << L);
  CHECK(test::rel_err(ssm::convolve(dense, u), ssm::recurrent(dense, u)) <= tolerance<TestType>());
  CHECK(test::rel_err(ssm::convolve(diag, u), ssm::recurrent(diag, u)) <= tolerance<TestType>());
}

TEST_CASE("a diagonal system evaluates like its dense twin", "[paths]") {
  const auto diag = random_system<ssm::DiscreteDiagonal<std::complex<double>>>(6, 2, 2);
  const auto dense = ssm::to_dense(diag);
  const Matrix<double> u = test::random_matrix<double>(300, 2);  // real input, complex system
  CHECK(test::rel_err(ssm::recurrent(diag, u), ssm::recurrent(dense, u)) <= 1e-13);
  CHECK(test::rel_err(ssm::convolve(diag, u), ssm::convolve(dense, u)) <= 1e-13);
}

TEST_CASE("splitting a sequence carries the state across", "[paths]") {
  const auto sys = random_system<ssm::Discrete<double>>(5, 2, 1);
  const Matrix<double> u = test::random_matrix<double>(301, 2);
  const Matrix<double> whole = ssm::recurrent(sys, u);
  Eigen::VectorXd x = Eigen::VectorXd::Zero(5);
  Matrix<double> parts(301, 1);
  parts.topRows(100) = ssm::recurrent(sys, u.topRows(100), x);
  parts.bottomRows(201) = ssm::recurrent(sys, u.bottomRows(201), x);
  CHECK(test::rel_err(parts, whole) <= 1e-14);
}

TEST_CASE("static sizes give the same numbers as dynamic ones", "[paths]") {
  const auto dyn = random_system<ssm::Discrete<double>>(3, 2, 1);
  ssm::Discrete<double, 3, 2, 1> fixed;
  fixed.A = dyn.A;
  fixed.B = dyn.B;
  fixed.C = dyn.C;
  fixed.D = dyn.D;
  const Matrix<double> u = test::random_matrix<double>(257, 2);
  const Eigen::Matrix<double, Dynamic, 1> y = ssm::recurrent(fixed, u);
  // Eigen's fixed-size products round differently from its dynamic ones:
  // up to 1.2e-15 over 400 seeds (a wrong path is off by O(1))
  CHECK(test::rel_err(y, ssm::recurrent(dyn, u)) <= 1e-14);
  CHECK(test::rel_err(ssm::convolve(fixed, u), ssm::convolve(dyn, u)) <= 1e-14);
  Eigen::Vector3d x = Eigen::Vector3d::Zero();
  const Eigen::Matrix<double, 1, 1> y0 = ssm::step(fixed, x, u.row(0).transpose());
  // to rounding relative to the output's scale (y0 itself may be a sum
  // that cancels: 10 ulps of it at one seed in a few hundred)
  CHECK(std::abs(y0(0) - y(0)) <= 1e-15 * y.cwiseAbs().maxCoeff());
}

TEST_CASE("inputs through unaligned maps", "[paths]") {
  // Eigen maps of a buffer offset by one element: no alignment assumed.
  const auto sys = random_system<ssm::DiscreteDiagonal<float>>(17, 3, 2);
  const Index L = 333;
  std::vector<float> buffer(std::size_t(L * 3 + 1));
  for (auto& v : buffer) v = test::uniform<float>();
  const Eigen::Map<const Matrix<float>> u(buffer.data() + 1, L, 3);
  const Matrix<float> copy = u;
  CHECK(test::rel_err(ssm::recurrent(sys, u), ssm::recurrent(sys, copy)) == 0);
  CHECK(test::rel_err(ssm::convolve(sys, u), ssm::recurrent(sys, copy)) <= 1e-4);
}

TEST_CASE("bad shapes are rejected with the shapes in the message", "[paths][errors]") {
  auto sys = random_system<ssm::Discrete<double>>(4, 2, 3);
  const Matrix<double> u3 = test::random_matrix<double>(10, 3);
  REQUIRE_THROWS_MATCHES(ssm::recurrent(sys, u3), std::invalid_argument,
                         Catch::Matchers::Message("ssm::recurrent: u must be L x 2 (one row per step), got 10x3"));
  REQUIRE_THROWS_MATCHES(ssm::convolve(sys, u3), std::invalid_argument,
                         Catch::Matchers::Message("ssm::convolve: u must be L x 2 (one row per step), got 10x3"));
  Eigen::VectorXd x5 = Eigen::VectorXd::Zero(5);
  const Matrix<double> u2 = test::random_matrix<double>(10, 2);
  REQUIRE_THROWS_MATCHES(ssm::recurrent(sys, u2, x5), std::invalid_argument,
                         Catch::Matchers::Message("ssm::recurrent: the state must be 4x1, got 5x1"));
  REQUIRE_THROWS_MATCHES(ssm::step(sys, x5, u2.row(0).transpose()), std::invalid_argument,
                         Catch::Matchers::Message("ssm::step: the state must be 4x1, got 5x1"));
  REQUIRE_THROWS_MATCHES(ssm::kernel(sys, -1), std::invalid_argument,
                         Catch::Matchers::Message("ssm::kernel: L must be >= 0, got -1"));
  sys.C.resize(3, 5);
  REQUIRE_THROWS_MATCHES(ssm::convolve(sys, u2), std::invalid_argument,
                         Catch::Matchers::Message("ssm::convolve: C must be 3x4, got 3x5"));
  sys.C.resize(3, 4);
  sys.A.resize(4, 3);
  REQUIRE_THROWS_MATCHES(ssm::kernel(sys, 5), std::invalid_argument,
                         Catch::Matchers::Message("ssm::kernel: A must be square, got 4x3"));
}

TEMPLATE_TEST_CASE("scan (parallel over time) equals recurrent", "[paths][scan]", float, double,
                   std::complex<double>) {
  // Thread counts above the core count still run every chunk; the chunked
  // evaluation reorders the rounding only.
  const int threads = GENERATE(1, 2, 3, 5);
  const Index L = GENERATE(1, 5000, 40001);
  const Index N = GENERATE(1, 6, 40);
  INFO("threads=" << threads << " L=" << L << " N=" << N);
  const Matrix<TestType> u = test::random_matrix<TestType>(L, 2);
  SECTION("dense A") {
    const auto sys = random_system<ssm::Discrete<TestType>>(N, 2, 3);
    Eigen::Matrix<TestType, Dynamic, 1> x0(N), x1, x2;
    for (Index i = 0; i < N; ++i) x0(i) = test::uniform<TestType>();
    x1 = x0;
    x2 = x0;
    const Matrix<TestType> yr = ssm::recurrent(sys, u, x1), ys = ssm::scan(sys, u, x2, threads);
    CHECK(test::rel_err(ys, yr) <= tolerance<TestType>());
    CHECK(test::rel_err(x2, x1) <= tolerance<TestType>());
  }
  SECTION("diagonal A") {
    const auto sys = random_system<ssm::DiscreteDiagonal<TestType>>(N, 2, 3);
    Eigen::Matrix<TestType, Dynamic, 1> x1 = Eigen::Matrix<TestType, Dynamic, 1>::Ones(N), x2 = x1;
    const Matrix<TestType> yr = ssm::recurrent(sys, u, x1), ys = ssm::scan(sys, u, x2, threads);
    CHECK(test::rel_err(ys, yr) <= tolerance<TestType>());
    CHECK(test::rel_err(x2, x1) <= tolerance<TestType>());
  }
}
