// ssm::discretize (include/ssm/discretize.hpp). Oracles:
// - scipy.signal.cont2discrete 1.10: tests/data/discretize_golden.json, made by
//   tests/data/make_discretize_golden.py, output C and D conventions included;
// - closed forms for 1x1 systems, evaluated in long double;
// - the dense path (expm / LU), for the element-wise diagonal path.
#include <ssm/discretize.hpp>

#include "util.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <complex>
#include <fstream>
#include <iostream>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#ifndef SSM_TEST_DATA_DIR
#error "define SSM_TEST_DATA_DIR as the directory of discretize_golden.json"
#endif

namespace {

using json = nlohmann::json;
using ssm::Method;
using cdouble = std::complex<double>;
template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
using NamedMethod = std::pair<const char*, Method>;

// Every method, by its scipy name.
const NamedMethod methods[] = {
    {"zoh", Method::zoh},         {"foh", Method::foh},     {"impulse", Method::impulse},
    {"bilinear", Method::bilinear}, {"euler", Method::euler}, {"backward_diff", Method::backward_euler},
    {"gbt", Method::gbt}};

Method method_named(const std::string& scipy_name) {
  for (const auto& [name, method] : methods)
    if (scipy_name == name) return method;
  throw std::runtime_error("unknown method " + scipy_name);
}

const json& golden() {
  static const json data = [] {
    const std::string path = std::string(SSM_TEST_DATA_DIR) + "/discretize_golden.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    return json::parse(in);
  }();
  return data;
}

// A matrix as the generator writes it: a list of rows of numbers, or of
// [re, im] pairs in a complex system. Read in double, then rounded to T.
template <class T>
Mat<T> read_matrix(const json& rows) {
  Mat<T> m(rows.size(), rows.empty() ? 0 : rows[0].size());
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j) {
      const json& x = rows[i][j];
      if constexpr (test::is_complex<T>::value)
        m(i, j) = T(cdouble(x[0].get<double>(), x[1].get<double>()));
      else
        m(i, j) = T(x.get<double>());
    }
  return m;
}

// The four matrices of a discrete system, A as a dense matrix.
template <class System>
std::array<Mat<typename System::Scalar>, 4> matrices(const System& d) {
  Mat<typename System::Scalar> A;
  if constexpr (System::IsDiagonal)
    A = d.A.asDiagonal();
  else
    A = d.A;
  return {A, d.B, d.C, d.D};
}

#define REQUIRE_INVALID(expr, matcher) REQUIRE_THROWS_MATCHES(expr, std::invalid_argument, matcher)

// Catch2 v2 has Message (the whole text) but no matcher for a part of it.
struct MessageContains : Catch::MatcherBase<std::exception> {
  std::string part;
  explicit MessageContains(std::string p) : part(std::move(p)) {}
  bool match(const std::exception& e) const override {
    return std::string(e.what()).find(part) != std::string::npos;
  }
  std::string describe() const override { return "message contains \"" + part + "\""; }
};

struct Worst {
  double err = 0, scaled = 0;  // scaled: err / (u (1 + ||A dt||)), for float
  std::string where;
  void update(double e, double scale, const std::string& at) {
    if (e > err) err = e, where = at;
    scaled = std::max(scaled, e / scale);
  }
};

// One scipy result against ssm::discretize in T (float, double or their
// complex): dense systems through the dense path; diagonal ones through the
// diagonal path and through to_dense. Tolerances, relative (test::rel_err):
// - double: scipy's and Eigen's expm (Pade with scaling and squaring) and LU
//   are backward stable and agree to ~1e-14 on these well-conditioned
//   systems; 1e-12 leaves room.
// - float: ssm promotes to double and rounds the result once. What remains is
//   the rounding of the inputs to float (u = 2^-24 relative, per part when
//   complex), which moves exp(A dt) and the gbt's rational function of A dt
//   by about u ||A dt||, plus about u each from B, C, D and the output.
//   Measured: at most 2.1 u (1 + ||A dt||_inf). The tolerance, 4 u (1 +
//   ||A dt||_inf), is 2.4e-7 for small dt and 5.5e-5 for S4D-Inv (|lambda| up
//   to 76) at dt = 3, whose e^{lambda dt} moves by 5e-6 when lambda is rounded.
template <class T>
void check_golden(const json& sys, const json& res, Worst& worst) {
  using Real = test::real_t<T>;
  using Ref = std::conditional_t<test::is_complex<T>::value, cdouble, double>;
  const Method method = method_named(res["method"]);
  const double dt = res["dt"].get<double>();
  const Real alpha = res["alpha"].is_null() ? Real(0.5) : Real(res["alpha"].get<double>());
  const double norm_A = read_matrix<Ref>(sys["A"]).cwiseAbs().rowwise().sum().maxCoeff();
  const double float_scale = 0x1p-24 * (1 + norm_A * dt);  // diagonal: N x 1, max |lambda|
  const double tol = std::is_same<Real, float>::value ? 4 * float_scale : 1e-12;
  const std::array<Mat<Ref>, 4> expected = {read_matrix<Ref>(res["A"]), read_matrix<Ref>(res["B"]),
                                            read_matrix<Ref>(res["C"]), read_matrix<Ref>(res["D"])};
  const std::string at = sys["name"].get<std::string>() + ", " + res["method"].get<std::string>() +
                         (res["alpha"].is_null() ? "" : " " + res["alpha"].dump()) +
                         ", dt = " + res["dt"].dump();
  auto compare = [&](const auto& discrete, const std::string& path) {
    const auto got = matrices(discrete);
    for (int k = 0; k < 4; ++k) {
      const double e = test::rel_err(got[k], expected[k]);
      INFO(at << ", " << path << ", matrix " << "ABCD"[k]);
      CHECK(e <= tol);
      worst.update(e, float_scale, at + ", " + path + ", " + "ABCD"[k]);
    }
  };
  if (sys["diagonal"].get<bool>()) {
    ssm::ContinuousDiagonal<T> c;
    c.A = read_matrix<T>(sys["A"]);  // N x 1: the diagonal
    c.B = read_matrix<T>(sys["B"]), c.C = read_matrix<T>(sys["C"]), c.D = read_matrix<T>(sys["D"]);
    compare(ssm::discretize(c, Real(dt), method, alpha), "diagonal path");
    compare(ssm::discretize(ssm::to_dense(c), Real(dt), method, alpha), "to_dense");
  } else {
    ssm::Continuous<T> c;
    c.A = read_matrix<T>(sys["A"]), c.B = read_matrix<T>(sys["B"]);
    c.C = read_matrix<T>(sys["C"]), c.D = read_matrix<T>(sys["D"]);
    compare(ssm::discretize(c, Real(dt), method, alpha), "dense");
  }
}

// Every golden case in Real and std::complex<Real>; prints the worst
// relative errors once, for quoting.
template <class Real>
void check_all_golden() {
  const json& data = golden();
  REQUIRE(data["systems"].size() > 0);
  Worst real, complex;
  for (const json& sys : data["systems"])
    for (const json& res : sys["results"]) {
      if (sys["complex"].get<bool>())
        check_golden<std::complex<Real>>(sys, res, complex);
      else
        check_golden<Real>(sys, res, real);
    }
  const bool is_float = std::is_same<Real, float>::value;
  const std::string type = is_float ? "float" : "double";
  std::cout << "discretize vs scipy " << data["scipy"].get<std::string>() << ", worst relative error:\n";
  for (const auto& [name, w] : {std::pair(type, real), std::pair("complex<" + type + ">", complex)}) {
    std::cout << "  " << name << ": " << w.err << " (" << w.where << ")";
    if (is_float) std::cout << "; at most " << w.scaled << " u (1 + ||A dt||)";
    std::cout << "\n";
  }
}

// A random stable system: A = -I + 0.3 R with R uniform in [-1, 1) (dense), or
// eigenvalues -U(0.1, 2) + i U(-3, 3) (diagonal); D = 0 for impulse.
template <class System>
System random_system(Eigen::Index n, Eigen::Index p, Eigen::Index q, Method method) {
  using T = typename System::Scalar;
  using Real = test::real_t<T>;
  System sys;
  if constexpr (System::IsDiagonal) {
    sys.A.resize(n);
    for (Eigen::Index i = 0; i < n; ++i) {
      const Real rate = Real(1.05) + Real(0.95) * test::uniform<Real>(), freq = 3 * test::uniform<Real>();
      if constexpr (test::is_complex<T>::value)
        sys.A(i) = T(-rate, freq);
      else
        sys.A(i) = -rate;
    }
  } else {
    sys.A = Real(0.3) * test::random_matrix<T>(n, n);
    sys.A.diagonal().array() -= T(1);
  }
  sys.B = test::random_matrix<T>(n, p);
  sys.C = test::random_matrix<T>(q, n);
  sys.D = test::random_matrix<T>(q, p);
  if (method == Method::impulse) sys.D.setZero();
  return sys;
}

// Static sizes N, P, Q give the numbers of Dynamic ones: the library converts
// to dynamic double matrices first; 4 ulps of T leave room for a future
// fixed-size path.
template <template <class, int, int, int> class System, class T, int N, int P, int Q>
void check_static_sizes(const NamedMethod& method) {
  const auto fixed = random_system<System<T, N, P, Q>>(N, P, Q, method.second);
  System<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::Dynamic> dynamic;
  dynamic.A = fixed.A, dynamic.B = fixed.B, dynamic.C = fixed.C, dynamic.D = fixed.D;
  const auto d_fixed = ssm::discretize(fixed, 0.1f, method.second, 0.3f);
  const auto d_dynamic = ssm::discretize(dynamic, 0.1f, method.second, 0.3f);
  static_assert(decltype(d_fixed.A)::RowsAtCompileTime == N, "sizes are kept");
  static_assert(decltype(d_fixed.D)::ColsAtCompileTime == P, "sizes are kept");
  const auto got = matrices(d_fixed), expected = matrices(d_dynamic);
  for (int k = 0; k < 4; ++k) {
    INFO(method.first << ", N = " << N << ", matrix " << "ABCD"[k]);
    CHECK(test::rel_err(got[k], expected[k]) <= 4 * std::numeric_limits<test::real_t<T>>::epsilon());
  }
}

// Diagonal path == dense path (expm / LU on diag(lambda)) on a random system
// whose eigenvalues include 0, |lambda dt| = 1e-9 (where expm1 and the phi2
// series matter: naive (e^z - 1) / z is off by ~5e-8 there), both sides of
// phi2's series switch |z| = 0.1, and |lambda dt| up to ~6 (dt = 3).
template <class T>
void check_diagonal_vs_dense(double dt, const NamedMethod& method) {
  auto sys = random_system<ssm::ContinuousDiagonal<T>>(12, 2, 3, method.second);
  std::vector<cdouble> z = {0.0, -1e-9, 1e-9, -0.0999, -0.1001};
  if constexpr (test::is_complex<T>::value)
    z.insert(z.end(), {{0, 1e-9}, {-1e-9, -1e-9}, {0.06, -0.08}, {-0.0601, 0.08}, {0, 2}});
  for (std::size_t i = 0; i < z.size(); ++i) {
    if constexpr (test::is_complex<T>::value)
      sys.A(i) = z[i] / dt;
    else
      sys.A(i) = z[i].real() / dt;
  }
  const auto got = matrices(ssm::discretize(sys, dt, method.second, 0.3));
  const auto expected = matrices(ssm::discretize(ssm::to_dense(sys), dt, method.second, 0.3));
  // Both paths are accurate to a few ulps of the largest entry; 1e-13 leaves
  // room for the expm of a 16 x 16 block matrix (foh).
  for (int k = 0; k < 4; ++k) {
    INFO(method.first << (test::is_complex<T>::value ? ", complex" : ", real") << ", dt = " << dt
                      << ", matrix " << "ABCD"[k]);
    CHECK(test::rel_err(got[k], expected[k]) <= 1e-13);
  }
}

}  // namespace

TEST_CASE("discretize matches scipy.signal.cont2discrete in double", "[discretize][scipy]") {
  check_all_golden<double>();  // tolerances: see check_golden
}

TEST_CASE("discretize matches scipy.signal.cont2discrete in float", "[discretize][scipy]") {
  check_all_golden<float>();
}

TEMPLATE_TEST_CASE("discretize x' = a x + b u, y = c x + d u in closed form", "[discretize]",
                   float, double) {
  using T = TestType;
  const double a = GENERATE(-3.0, -0.5, 0.25), dt = GENERATE(1e-3, 0.1, 1.0);
  const double b = 2, c = -1.5, d = 0.5;  // exact in float
  ssm::Continuous<T, 1, 1, 1> sys;
  sys.A << T(a), sys.B << T(b), sys.C << T(c), sys.D << T(d);
  // The oracle takes the dt that ssm sees (rounded to T), so for float the
  // only error is ssm's final rounding of a double result: <= 2^-24 relative.
  const T h_t = T(dt);
  const long double h = h_t, z = a * h, e = std::exp(z), em1 = std::expm1(z);
  const double eps = std::is_same<T, float>::value ? 0x1p-23 : 1e-14;
  auto check = [&](const ssm::Discrete<T, 1, 1, 1>& got, long double A, long double B,
                   long double C, long double D) {
    INFO("a = " << a << ", dt = " << dt);
    CHECK(got.A(0, 0) == Approx(double(A)).epsilon(eps));
    CHECK(got.B(0, 0) == Approx(double(B)).epsilon(eps));
    CHECK(got.C(0, 0) == Approx(double(C)).epsilon(eps));
    CHECK(got.D(0, 0) == Approx(double(D)).epsilon(eps));
  };
  SECTION("zoh: e^{a dt}, b (e^{a dt} - 1) / a; C, D unchanged") {
    check(ssm::discretize(sys, h_t, Method::zoh), e, b * em1 / a, c, d);
  }
  SECTION("foh: Gamma_1 = b (e^z - 1) / a, Gamma_2 = b (e^z - 1 - z) / (a^2 dt)") {
    // B_d = Gamma_1 - Gamma_2 + A_d Gamma_2, D_d = d + c Gamma_2 (scipy)
    const long double g1 = b * em1 / a, g2 = b * (em1 - z) / (a * a * h);
    check(ssm::discretize(sys, h_t, Method::foh), e, g1 + (e - 1) * g2, c, d + c * g2);
  }
  SECTION("impulse: B_d = e^{a dt} b dt, D_d = c b dt (needs d = 0)") {
    sys.D << T(0);
    check(ssm::discretize(sys, h_t, Method::impulse), e, e * b * h, c, c * b * h);
  }
  SECTION("gbt: A_d = (1 + (1 - alpha) z) / (1 - alpha z), C_d = c / (1 - alpha z)") {
    // B_d = b dt / (1 - alpha z), D_d = d + alpha c B_d (scipy)
    const auto [method, alpha] = GENERATE(table<Method, double>({{Method::euler, 0.0},
                                                                  {Method::bilinear, 0.5},
                                                                  {Method::backward_euler, 1.0},
                                                                  {Method::gbt, 0.25}}));
    const long double den = 1 - alpha * z, bd = b * h / den;
    check(ssm::discretize(sys, h_t, method, T(alpha)), (1 + (1 - alpha) * z) / den, bd, c / den,
          d + alpha * c * bd);
  }
}

TEST_CASE("static sizes give the same as dynamic", "[discretize]") {
  const auto method = GENERATE(from_range(std::begin(methods), std::end(methods)));
  check_static_sizes<ssm::Continuous, double, 2, 1, 1>(method);
  check_static_sizes<ssm::Continuous, float, 3, 2, 1>(method);
  check_static_sizes<ssm::Continuous, std::complex<double>, 4, 1, 2>(method);
  check_static_sizes<ssm::ContinuousDiagonal, std::complex<float>, 4, 1, 2>(method);
  check_static_sizes<ssm::ContinuousDiagonal, double, 5, 2, 1>(method);
}

TEST_CASE("the diagonal fast path equals the dense path", "[discretize][diagonal]") {
  const double dt = GENERATE(1e-3, 0.1, 1.0, 3.0);
  const auto method = GENERATE(from_range(std::begin(methods), std::end(methods)));
  check_diagonal_vs_dense<double>(dt, method);
  check_diagonal_vs_dense<std::complex<double>>(dt, method);
}

TEST_CASE("discretize rejects bad arguments with std::invalid_argument", "[discretize][errors]") {
  using Catch::Matchers::Message;
  const std::string where = "ssm::discretize: ";
  ssm::Continuous<double> sys;
  sys.A = -Eigen::MatrixXd::Identity(3, 3);
  sys.B = Eigen::MatrixXd::Ones(3, 1), sys.C = Eigen::MatrixXd::Ones(1, 3);
  sys.D = Eigen::MatrixXd::Zero(1, 1);
  ssm::ContinuousDiagonal<double> diag;
  diag.A = -Eigen::VectorXd::Ones(3), diag.B = sys.B, diag.C = sys.C, diag.D = sys.D;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  REQUIRE_NOTHROW(ssm::discretize(sys, 0.1, Method::zoh));
  auto bad = sys;
  auto bad_diag = diag;

  SECTION("shapes") {
    bad.A = Eigen::MatrixXd::Zero(3, 4);
    REQUIRE_INVALID(ssm::discretize(bad, 0.1, Method::zoh), Message(where + "A must be square, got 3x4"));
    bad = sys, bad.B = Eigen::MatrixXd::Ones(2, 1);
    REQUIRE_INVALID(ssm::discretize(bad, 0.1, Method::zoh), Message(where + "B must be 3x1, got 2x1"));
    bad = sys, bad.C = Eigen::MatrixXd::Ones(1, 2);
    REQUIRE_INVALID(ssm::discretize(bad, 0.1, Method::foh), Message(where + "C must be 1x3, got 1x2"));
    bad = sys, bad.D = Eigen::MatrixXd::Zero(2, 2);
    REQUIRE_INVALID(ssm::discretize(bad, 0.1, Method::euler), Message(where + "D must be 1x1, got 2x2"));
    bad_diag.B = Eigen::MatrixXd::Ones(2, 1);
    REQUIRE_INVALID(ssm::discretize(bad_diag, 0.1, Method::zoh), Message(where + "B must be 3x1, got 2x1"));
  }
  SECTION("dt must be positive and finite") {
    const std::string message = where + "dt must be positive and finite, got ";
    REQUIRE_INVALID(ssm::discretize(sys, 0.0, Method::zoh), Message(message + "0"));
    REQUIRE_INVALID(ssm::discretize(sys, -0.1, Method::euler), Message(message + "-0.1"));
    for (const double dt : {nan, inf, -inf}) {  // printed as nan, -nan, inf...
      REQUIRE_INVALID(ssm::discretize(sys, dt, Method::zoh), MessageContains(message));
      REQUIRE_INVALID(ssm::discretize(diag, dt, Method::bilinear), MessageContains(message));
    }
  }
  SECTION("gbt alpha must lie in [0, 1]; the other methods ignore it") {
    const std::string message = where + "gbt alpha must lie in [0, 1], got ";
    REQUIRE_INVALID(ssm::discretize(sys, 0.1, Method::gbt, 1.5), Message(message + "1.5"));
    REQUIRE_INVALID(ssm::discretize(diag, 0.1, Method::gbt, -0.25), Message(message + "-0.25"));
    REQUIRE_INVALID(ssm::discretize(sys, 0.1, Method::gbt, nan), MessageContains(message));
    REQUIRE_NOTHROW(ssm::discretize(sys, 0.1, Method::bilinear, 7.0));
    REQUIRE_NOTHROW(ssm::discretize(sys, 0.1, Method::gbt, 1.0));
  }
  SECTION("I - alpha dt A singular: A = I / (alpha dt)") {
    // exactly singular, or (gbt 0.3, 0.3 and 0.9, 0.1) 1e-16 I after rounding
    const auto [method, alpha, dt] = GENERATE(table<Method, double, double>(
        {{Method::gbt, 0.5, 0.5}, {Method::bilinear, 0.5, 0.25}, {Method::backward_euler, 1, 0.5},
         {Method::gbt, 0.3, 0.3}, {Method::gbt, 0.9, 0.1}}));
    sys.A = Eigen::MatrixXd::Identity(3, 3) / (alpha * dt);
    diag.A = Eigen::VectorXd::Ones(3) / (alpha * dt);
    const std::string message = where + "I - alpha*dt*A is singular to working precision";
    REQUIRE_INVALID(ssm::discretize(sys, dt, method, alpha), MessageContains(message));
    REQUIRE_INVALID(ssm::discretize(diag, dt, method, alpha), MessageContains(message));
  }
  SECTION("impulse needs D = 0, to scipy's np.allclose(D, 0): |D| <= 1e-8") {
    const std::string message = where + "the impulse method needs a strictly proper system (D = 0)";
    sys.D << 1e-3, diag.D << -1e-3;
    REQUIRE_INVALID(ssm::discretize(sys, 0.1, Method::impulse), Message(message));
    REQUIRE_INVALID(ssm::discretize(diag, 0.1, Method::impulse), Message(message));
    sys.D << 1e-9;
    REQUIRE_NOTHROW(ssm::discretize(sys, 0.1, Method::impulse));
  }
  SECTION("non-finite entries") {
    bad.B(1, 0) = nan;
    REQUIRE_INVALID(ssm::discretize(bad, 0.1, Method::zoh), Message(where + "B has a non-finite entry"));
    bad = sys, bad.A(0, 2) = inf;
    REQUIRE_INVALID(ssm::discretize(bad, 0.1, Method::bilinear), Message(where + "A has a non-finite entry"));
    bad = sys, bad.D(0, 0) = nan;
    REQUIRE_INVALID(ssm::discretize(bad, 0.1, Method::foh), Message(where + "D has a non-finite entry"));
    bad_diag.C(0, 1) = -inf;
    REQUIRE_INVALID(ssm::discretize(bad_diag, 0.1, Method::zoh), Message(where + "C has a non-finite entry"));
  }
}
