// Continuous -> discrete conversion with the conventions of
// scipy.signal.cont2discrete (scipy 1.10), output matrices C and D included.
#pragma once

#include <ssm/system.hpp>

#include <Eigen/LU>
#include <unsupported/Eigen/MatrixFunctions>

#include <algorithm>
#include <cmath>
#include <complex>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace ssm {

/// How the input is assumed to behave between samples.
enum class Method {
  zoh,             ///< zero-order hold: u constant over each step (exact for it)
  foh,             ///< first-order hold: u linear between samples
  impulse,         ///< impulse invariance (requires D = 0)
  bilinear,        ///< Tustin / trapezoid rule: gbt with alpha = 1/2
  euler,           ///< forward Euler: gbt with alpha = 0
  backward_euler,  ///< backward Euler: gbt with alpha = 1 (scipy "backward_diff")
  gbt,             ///< generalized bilinear transform with the given alpha
};

namespace detail {

// Discretization is done in at least double precision (float systems are
// promoted and the result rounded once): it is cheap next to any evaluation.
template <class Scalar>
struct promote {
  using type = Scalar;
};
template <>
struct promote<float> {
  using type = double;
};
template <>
struct promote<std::complex<float>> {
  using type = std::complex<double>;
};

template <class T>
struct is_complex : std::false_type {};
template <class T>
struct is_complex<std::complex<T>> : std::true_type {};

// exp(z) - 1 without cancellation for small |z|, real or complex:
// e^x (cos y + i sin y) - 1 = (expm1(x) cos y - 2 sin^2(y/2)) + i e^x sin y.
template <class T>
T expm1(T x) {
  return std::expm1(x);
}
template <class T>
std::complex<T> expm1(std::complex<T> z) {
  const T x = z.real(), y = z.imag(), s = std::sin(y / 2);
  return {std::expm1(x) * std::cos(y) - 2 * s * s, std::exp(x) * std::sin(y)};
}

// phi1(z) = (e^z - 1) / z and phi2(z) = (e^z - 1 - z) / z^2, the ZOH and FOH
// integrals of e^{z s} over the step. phi1 through expm1, exact near 0;
// phi2 by its series near 0, where the closed form cancels (|z| < 0.1: 14
// terms leave a remainder below 1e-17 relative).
template <class T>
T phi1(T z) {
  if (std::abs(z) == 0) return T(1);
  return expm1(z) / z;
}
template <class T>
T phi2(T z) {
  if (std::abs(z) < 0.1) {
    T sum(0), term(1);  // term = z^k / (k + 2)!
    for (int k = 0; k < 14; ++k) {
      term = k == 0 ? T(0.5) : term * z / T(k + 2);
      sum += term;
    }
    return sum;
  }
  return (expm1(z) - z) / (z * z);
}

template <class Real>
void check_dt(Real dt, Method method, Real alpha) {
  if (!(dt > 0) || !std::isfinite(dt)) {
    std::ostringstream s;
    s << "ssm::discretize: dt must be positive and finite, got " << dt;
    throw std::invalid_argument(s.str());
  }
  if (method == Method::gbt && !(alpha >= 0 && alpha <= 1)) {
    std::ostringstream s;
    s << "ssm::discretize: gbt alpha must lie in [0, 1], got " << alpha;
    throw std::invalid_argument(s.str());
  }
}

template <class System>
void check_finite(const System& sys) {
  auto check = [](const auto& m, const char* name) {
    if (!m.allFinite())
      throw std::invalid_argument(std::string("ssm::discretize: ") + name +
                                  " has a non-finite entry");
  };
  check(sys.A, "A");
  check(sys.B, "B");
  check(sys.C, "C");
  check(sys.D, "D");
}

template <class Real>
Real gbt_alpha(Method method, Real alpha) {
  switch (method) {
    case Method::bilinear: return Real(0.5);
    case Method::euler: return Real(0);
    case Method::backward_euler: return Real(1);
    default: return alpha;
  }
}

template <class Real>
[[noreturn]] void throw_singular(Real alpha, Real dt, Real rcond) {
  std::ostringstream s;
  s << "ssm::discretize: I - alpha*dt*A is singular to working precision "
       "(alpha = "
    << alpha << ", dt = " << dt << ", reciprocal condition " << rcond << ")";
  throw std::invalid_argument(s.str());
}

template <class Scalar>
void check_impulse_d(const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>& D) {
  // scipy: np.allclose(d, 0), i.e. |d| <= 1e-8
  if (D.size() > 0 && D.cwiseAbs().maxCoeff() > 1e-8)
    throw std::invalid_argument(
        "ssm::discretize: the impulse method needs a strictly proper system "
        "(D = 0)");
}

}  // namespace detail

/// Discretizes `sys` with step `dt` (> 0). For Method::gbt, `alpha` in [0, 1]
/// weights the implicit end (0: Euler, 1/2: bilinear, 1: backward Euler); it
/// is ignored by the other methods. Matches scipy.signal.cont2discrete,
/// including its output matrices: gbt gives C (I - alpha dt A)^{-1} and
/// D + alpha C B_d; foh gives D + C Gamma_2; impulse gives C B dt.
/// Computed in double for float systems; agrees with scipy to ~1e-14 relative
/// in double (tests/test_discretize.cpp).
/// Throws std::invalid_argument for mismatched shapes, dt <= 0 or not finite,
/// non-finite entries, alpha outside [0, 1] (Method::gbt only), I - alpha dt A
/// singular to working precision (reciprocal condition number, or that times
/// its 1-norm, <= epsilon), or an entry of D above 1e-8 in magnitude with the
/// impulse method (scipy's np.allclose(D, 0)).
template <class Scalar, int N, int P, int Q>
Discrete<Scalar, N, P, Q> discretize(
    const Continuous<Scalar, N, P, Q>& sys,
    typename Eigen::NumTraits<Scalar>::Real dt, Method method,
    typename Eigen::NumTraits<Scalar>::Real alpha = 0.5) {
  using Work = typename detail::promote<Scalar>::type;
  using Real = typename Eigen::NumTraits<Work>::Real;
  using Mat = Eigen::Matrix<Work, Eigen::Dynamic, Eigen::Dynamic>;
  detail::check_shapes(sys, "ssm::discretize");
  detail::check_dt(dt, method, alpha);
  detail::check_finite(sys);

  const Mat A = sys.A.template cast<Work>(), B = sys.B.template cast<Work>(),
            C = sys.C.template cast<Work>(), D = sys.D.template cast<Work>();
  const Eigen::Index n = A.rows(), p = B.cols();
  const Real h = Real(dt);
  Mat Ad, Bd, Cd = C, Dd = D;

  switch (method) {
    case Method::zoh: {
      // expm([[A, B], [0, 0]] dt) = [[A_d, B_d], [0, I]] (Van Loan 1978)
      Mat M = Mat::Zero(n + p, n + p);
      M.topLeftCorner(n, n) = A * h;
      M.topRightCorner(n, p) = B * h;
      const Mat E = M.exp();
      Ad = E.topLeftCorner(n, n);
      Bd = E.topRightCorner(n, p);
      break;
    }
    case Method::foh: {
      // expm([[A dt, B dt, 0], [0, 0, I], [0, 0, 0]]) holds Phi, Gamma_1 and
      // Gamma_2 in its first block row (Franklin, Powell & Workman, 4.3.4)
      Mat M = Mat::Zero(n + 2 * p, n + 2 * p);
      M.topLeftCorner(n, n) = A * h;
      M.block(0, n, n, p) = B * h;
      M.block(n, n + p, p, p).setIdentity();
      const Mat E = M.exp();
      Ad = E.topLeftCorner(n, n);
      const Mat G1 = E.block(0, n, n, p), G2 = E.block(0, n + p, n, p);
      Bd = G1 - G2 + Ad * G2;
      Dd = D + C * G2;
      break;
    }
    case Method::impulse: {
      detail::check_impulse_d(D);
      Ad = (A * h).exp();
      Bd = Ad * B * h;
      Dd = C * B * h;
      break;
    }
    default: {
      // (I - a dt A) x_t = (I + (1 - a) dt A) x_{t-1} + dt B u_t, solved by
      // LU, never by forming the inverse (Zhang, Chen & Sheng 2007 for gbt)
      const Real a = detail::gbt_alpha(method, Real(alpha));
      const Mat I = Mat::Identity(n, n);
      const Mat ima = I - a * h * A;
      const Eigen::PartialPivLU<Mat> lu(ima);
      // rcond is scale-free, so also reject a tiny multiple of a well-
      // conditioned matrix (1e-16 I when A = I / (alpha dt) up to rounding),
      // as the diagonal path does: rcond ||.||_1 estimates 1 / ||(.)^{-1}||_1
      const Real rcond = n > 0 ? lu.rcond() : Real(1);
      const Real inv_norm =
          n > 0 ? rcond * ima.cwiseAbs().colwise().sum().maxCoeff() : Real(1);
      if (!(rcond > std::numeric_limits<Real>::epsilon()) ||
          !(inv_norm > std::numeric_limits<Real>::epsilon()))
        detail::throw_singular(a, h, std::min(rcond, inv_norm));
      Ad = lu.solve(I + (1 - a) * h * A);
      Bd = lu.solve(h * B);
      // C_d = C (I - a dt A)^{-1}, as scipy: a solve with the transpose
      Cd = Eigen::PartialPivLU<Mat>(ima.transpose()).solve(C.transpose()).transpose();
      Dd = D + a * C * Bd;
      break;
    }
  }
  Discrete<Scalar, N, P, Q> out;
  out.A = Ad.template cast<Scalar>();
  out.B = Bd.template cast<Scalar>();
  out.C = Cd.template cast<Scalar>();
  out.D = Dd.template cast<Scalar>();
  return out;
}

/// Element-wise discretization of a diagonal system (the S4D case): the same
/// numbers as discretizing to_dense(sys), in O(N (P + Q)) instead of O(N^3).
/// zoh: A_d = e^{lambda dt}, B_d = (e^{lambda dt} - 1) / lambda B (dt B when
/// lambda = 0), through expm1 so small |lambda dt| keeps full precision.
/// Throws as the dense overload, except that gbt is refused only where some
/// |1 - alpha dt lambda_n| <= epsilon (no condition number).
template <class Scalar, int N, int P, int Q>
DiscreteDiagonal<Scalar, N, P, Q> discretize(
    const ContinuousDiagonal<Scalar, N, P, Q>& sys,
    typename Eigen::NumTraits<Scalar>::Real dt, Method method,
    typename Eigen::NumTraits<Scalar>::Real alpha = 0.5) {
  using Work = typename detail::promote<Scalar>::type;
  using Real = typename Eigen::NumTraits<Work>::Real;
  using Mat = Eigen::Matrix<Work, Eigen::Dynamic, Eigen::Dynamic>;
  using Vec = Eigen::Matrix<Work, Eigen::Dynamic, 1>;
  detail::check_shapes(sys, "ssm::discretize");
  detail::check_dt(dt, method, alpha);
  detail::check_finite(sys);

  const Vec lambda = sys.A.template cast<Work>();
  const Mat B = sys.B.template cast<Work>(), C = sys.C.template cast<Work>(),
            D = sys.D.template cast<Work>();
  const Eigen::Index n = lambda.size();
  const Real h = Real(dt);
  Vec Ad(n);
  Mat Bd(B.rows(), B.cols()), Cd = C, Dd = D;

  switch (method) {
    case Method::zoh:
      for (Eigen::Index i = 0; i < n; ++i) {
        const Work z = lambda(i) * h;
        Ad(i) = std::exp(z);
        Bd.row(i) = (h * detail::phi1(z)) * B.row(i);
      }
      break;
    case Method::foh: {
      Mat G2(B.rows(), B.cols());
      for (Eigen::Index i = 0; i < n; ++i) {
        const Work z = lambda(i) * h;
        Ad(i) = std::exp(z);
        G2.row(i) = (h * detail::phi2(z)) * B.row(i);
        // Gamma_1 - Gamma_2 + A_d Gamma_2
        Bd.row(i) = (h * detail::phi1(z)) * B.row(i) + (Ad(i) - Work(1)) * G2.row(i);
      }
      Dd = D + C * G2;
      break;
    }
    case Method::impulse:
      detail::check_impulse_d(D);
      for (Eigen::Index i = 0; i < n; ++i) {
        Ad(i) = std::exp(lambda(i) * h);
        Bd.row(i) = (Ad(i) * h) * B.row(i);
      }
      Dd = C * B * h;
      break;
    default: {
      const Real a = detail::gbt_alpha(method, Real(alpha));
      for (Eigen::Index i = 0; i < n; ++i) {
        const Work den = Work(1) - a * h * lambda(i);
        if (std::abs(den) <= std::numeric_limits<Real>::epsilon())
          detail::throw_singular(a, h, Real(std::abs(den)));
        Ad(i) = (Work(1) + (1 - a) * h * lambda(i)) / den;
        Bd.row(i) = (h / den) * B.row(i);
        Cd.col(i) = C.col(i) / den;
      }
      Dd = D + a * C * Bd;
      break;
    }
  }
  DiscreteDiagonal<Scalar, N, P, Q> out;
  out.A = Ad.template cast<Scalar>();
  out.B = Bd.template cast<Scalar>();
  out.C = Cd.template cast<Scalar>();
  out.D = Dd.template cast<Scalar>();
  return out;
}

}  // namespace ssm
