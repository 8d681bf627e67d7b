// HiPPO transition matrices (Gu, Dao, Ermon, Rudra & Re 2020, "HiPPO:
// Recurrent Memory with Optimal Polynomial Projections") in the conventions of
// the S4 line of work, which these functions reproduce entry for entry:
// S4 (Gu, Goel & Re 2022, "Efficiently Modeling Long Sequences with Structured
// State Spaces"), "How to Train Your HiPPO" (Gu, Johnson, Timalsina, Rudra &
// Re 2023) and S4D (Gu, Gupta, Goel & Re 2022, "On the Parameterization and
// Initialization of Diagonal State Space Models").
//
// Each measure's x' = A x + B u keeps x(t) equal to the projection of the input
// history u onto N basis functions; the comment on each function says which,
// and tests/test_hippo_s4.cpp checks it by quadrature. Also here: the
// normal-plus-low-rank (NPLR) form A = V (Lambda - P Q^*) V^* (S4, Thm. 1), the
// diagonal-plus-low-rank (DPLR) parameters S4 keeps (one of each conjugate
// pair), and the diagonal S4D initializations.
#pragma once

#include <ssm/system.hpp>

#include <Eigen/Core>
#include <Eigen/Eigenvalues>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstddef>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace ssm::hippo {

/// A HiPPO transition x' = A x + B u, with the low-rank correction that makes
/// A normal: A + P P^T = c I + S with S skew-symmetric (S4, Thm. 1).
/// A: N x N, B: N x 1, P: N x R (R = 1, or 2 for LegT).
template <class Scalar>
struct Transition {
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> A;  ///< N x N
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> B;               ///< N
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> P;  ///< N x R, the low-rank term

  /// N, the order of the approximation
  Eigen::Index state_size() const { return A.rows(); }

  /// The continuous system x' = A x + B u, y = C x + D u, with C: Q x N and
  /// D: Q x 1. Throws std::invalid_argument if C or D has the wrong shape.
  template <class DerivedC, class DerivedD>
  Continuous<Scalar> system(const Eigen::MatrixBase<DerivedC>& C,
                            const Eigen::MatrixBase<DerivedD>& D) const {
    Continuous<Scalar> sys;
    sys.A = A;
    sys.B = B;
    sys.C = C.template cast<Scalar>();
    sys.D = D.template cast<Scalar>();
    ssm::detail::check_shapes(sys, "ssm::hippo::Transition::system");
    return sys;
  }
};

namespace detail {

inline void check_size(Eigen::Index N, const char* where) {
  if (N <= 0)
    throw std::invalid_argument(std::string(where) + ": N must be positive, got " +
                                std::to_string(N));
}

// r_n = sqrt(2n + 1), the norms that make the Legendre bases orthonormal.
inline double r(Eigen::Index n) { return std::sqrt(2.0 * double(n) + 1.0); }

template <class Scalar>
Transition<Scalar> make(Eigen::Index N, Eigen::Index R) {
  Transition<Scalar> t;
  t.A.setZero(N, N);
  t.B.setZero(N);
  t.P.setZero(N, R);
  return t;
}

}  // namespace detail

/// HiPPO-LegS (scaled Legendre), as in S4:
///   A_nk = -sqrt(2n+1) sqrt(2k+1) for n > k, -(n+1) for n = k, 0 for n < k;
///   B_n = sqrt(2n+1);  P_n = sqrt(n + 1/2) (A + P P^T = -I/2 + skew).
/// x_n(t) = (1/t) int_0^t u(s) sqrt(2n+1) P_n(2s/t - 1) ds, the projection onto
/// Legendre polynomials of the whole history, obeys x' = (A x + B u) / t
/// (HiPPO, Thm. 2); S4 uses the time-invariant x' = A x + B u.
/// Throws std::invalid_argument unless N > 0.
template <class Scalar>
Transition<Scalar> legs(Eigen::Index N) {
  detail::check_size(N, "ssm::hippo::legs");
  auto t = detail::make<Scalar>(N, 1);
  for (Eigen::Index n = 0; n < N; ++n) {
    for (Eigen::Index k = 0; k < n; ++k) t.A(n, k) = Scalar(-detail::r(n) * detail::r(k));
    t.A(n, n) = Scalar(-double(n + 1));
    t.B(n) = Scalar(detail::r(n));
    t.P(n, 0) = Scalar(std::sqrt(double(n) + 0.5));
  }
  return t;
}

/// HiPPO-LegT (translated Legendre) over a window of length 2, as S4's code
/// (which halves HiPPO's window-1 matrices):
///   A_nk = -(1/2) sqrt(2n+1) sqrt(2k+1) * (1 if n >= k, (-1)^(n-k) if n < k);
///   B_n = (1/2) sqrt(2n+1);  P = [odd-n entries, even-n entries of
///   sqrt(n + 1/2)] (rank 2; A + P P^T is skew-symmetric).
/// x_n(t) = (1/2) int_{t-2}^t u(s) sqrt(2n+1) P_n(1 + (s - t)) ds obeys
/// x' = A x + B u exactly while u is a polynomial of degree < N on the window
/// (HiPPO, Appendix D.1; the LMU of Voelker et al. 2019, up to a diagonal
/// similarity diag((-1)^n sqrt(2n+1))). Throws std::invalid_argument unless N > 0.
template <class Scalar>
Transition<Scalar> legt(Eigen::Index N) {
  detail::check_size(N, "ssm::hippo::legt");
  auto t = detail::make<Scalar>(N, 2);
  for (Eigen::Index n = 0; n < N; ++n) {
    for (Eigen::Index k = 0; k < N; ++k) {
      const double sign = n >= k || (k - n) % 2 == 0 ? 1.0 : -1.0;
      t.A(n, k) = Scalar(-0.5 * sign * detail::r(n) * detail::r(k));
    }
    t.B(n) = Scalar(0.5 * detail::r(n));
    t.P(n, n % 2 == 1 ? 0 : 1) = Scalar(std::sqrt(double(n) + 0.5));
  }
  return t;
}

/// HiPPO-LagT (translated Laguerre), as S4's code: A = -(tril(1) - I/2),
/// i.e. A_nk = -1 for n > k, -1/2 for n = k, 0 for n < k; B_n = 1;
/// P_n = sqrt(1/2) (A + P P^T is skew-symmetric).
/// x_n(t) = int_{-inf}^t u(s) L_n(t - s) e^{-(t - s)/2} ds, the coefficients in
/// the orthonormal Laguerre functions, obeys x' = A x + B u exactly (HiPPO,
/// Appendix D.2, with the exponential split evenly between measure and basis:
/// HiPPO's own LagT has -1 on the diagonal). Throws std::invalid_argument
/// unless N > 0.
template <class Scalar>
Transition<Scalar> lagt(Eigen::Index N) {
  detail::check_size(N, "ssm::hippo::lagt");
  auto t = detail::make<Scalar>(N, 1);
  for (Eigen::Index n = 0; n < N; ++n) {
    for (Eigen::Index k = 0; k < n; ++k) t.A(n, k) = Scalar(-1);
    t.A(n, n) = Scalar(-0.5);
    t.B(n) = Scalar(1);
    t.P(n, 0) = Scalar(std::sqrt(0.5));
  }
  return t;
}

/// HiPPO-FouT (translated Fourier) over a window of length 2, as S4's code:
/// the basis g_0 = 1, g_2k = sqrt(2) cos(pi k tau), g_2k+1 = sqrt(2) sin(pi k tau)
/// (k >= 1; state 1, the sine of frequency 0, is inert), with
///   A = pi Omega - B B^T, Omega_{2k+1,2k} = k = -Omega_{2k,2k+1};
///   B_0 = 1, B_2k = sqrt(2), B_2k+1 = 0;  P = B.
/// x_n(t) = (1/2) int_{t-2}^t u(s) g_n(t - s) ds obeys x' = A x + B u while u is
/// in the span of the basis ("How to Train Your HiPPO", Sec. 4: its FouT has
/// window 1 and frequencies 2 pi k, i.e. this with time scaled by 2). Odd N
/// truncates the N + 1 system, as Galerkin projection does. Throws
/// std::invalid_argument unless N > 0.
template <class Scalar>
Transition<Scalar> fout(Eigen::Index N) {
  detail::check_size(N, "ssm::hippo::fout");
  auto t = detail::make<Scalar>(N, 1);
  for (Eigen::Index n = 0; n < N; ++n) {
    t.B(n) = Scalar(n == 0 ? 1.0 : n % 2 == 0 ? std::sqrt(2.0) : 0.0);
    t.P(n, 0) = t.B(n);
  }
  const double pi = 3.14159265358979323846;
  for (Eigen::Index n = 0; n < N; ++n)
    for (Eigen::Index k = 0; k < N; ++k) {
      double omega = 0;
      if (n % 2 == 1 && k == n - 1) omega = double(n / 2);
      if (k % 2 == 1 && n == k - 1) omega = -double(k / 2);
      t.A(n, k) = Scalar(pi * omega - double(t.B(n)) * double(t.B(k)));
    }
  return t;
}

/// The normal-plus-low-rank form of a transition (S4, Thm. 1):
///   A = V (diag(Lambda) - P Q^*) V^*,  B = V B~,  V unitary,
/// here with Q = P, for the HiPPO measures above. Entries 0 .. M-1 (M = N/2,
/// rounded down) hold one of each conjugate pair, Im Lambda >= 0, by
/// increasing imaginary part; entries M .. 2M-1 their conjugates in the same
/// order (eigenvectors conjugated too, so the real system stays real); an odd
/// N ends with one real eigenvalue. P, B hold V^* P, V^* B.
/// Lambda: N, P: N x R, B: N, V: N x N.
template <class Real>
struct Nplr {
  using Complex = std::complex<Real>;  ///< the scalar of every member
  Eigen::Matrix<Complex, Eigen::Dynamic, 1> Lambda;          ///< N eigenvalues of the normal part
  Eigen::Matrix<Complex, Eigen::Dynamic, Eigen::Dynamic> P;  ///< N x R: V^* P
  Eigen::Matrix<Complex, Eigen::Dynamic, 1> B;               ///< N: V^* B
  Eigen::Matrix<Complex, Eigen::Dynamic, Eigen::Dynamic> V;  ///< N x N, unitary

  /// V (diag(Lambda) - P P^*) V^*: the transition's A again (N x N), up to
  /// rounding (tested to 1e-10 relative for N <= 256 in double,
  /// tests/test_hippo_s4.cpp).
  Eigen::Matrix<Complex, Eigen::Dynamic, Eigen::Dynamic> dense() const {
    Eigen::Matrix<Complex, Eigen::Dynamic, Eigen::Dynamic> inner = -P * P.adjoint();
    inner.diagonal() += Lambda;
    return V * inner * V.adjoint();
  }
};

/// The NPLR form of t. Throws std::invalid_argument if t's shapes are not
/// A N x N (N > 0), B N, P N x R, or if A + P P^T is not a multiple of I
/// plus a skew-symmetric matrix, to 1000 epsilon of max(1, its largest entry).
/// O(N^3): the real Schur form of the skew-symmetric part.
template <class Scalar>
Nplr<Scalar> nplr(const Transition<Scalar>& t) {
  using Mat = Eigen::MatrixXd;
  using CMat = Eigen::MatrixXcd;
  using Complex = std::complex<double>;
  const Eigen::Index N = t.A.rows();
  if (N == 0 || t.A.cols() != N || t.B.size() != N || t.P.rows() != N) {
    std::ostringstream s;
    s << "ssm::hippo::nplr: expected A N x N (N > 0), B N x 1, P N x R, got A "
      << t.A.rows() << 'x' << t.A.cols() << ", B " << t.B.size() << "x1, P " << t.P.rows()
      << 'x' << t.P.cols();
    throw std::invalid_argument(s.str());
  }
  const Mat A = t.A.template cast<double>(), P = t.P.template cast<double>();
  const Mat normal = A + P * P.transpose();
  const double shift = normal.trace() / double(N);
  Mat sym = (normal + normal.transpose()) / 2;
  sym.diagonal().array() -= shift;
  // rounding of the entries (float ones, too) leaves ~eps of the largest
  const double scale = std::max(1.0, normal.cwiseAbs().maxCoeff()),
               eps = double(std::numeric_limits<Scalar>::epsilon());
  if (sym.cwiseAbs().maxCoeff() > 1e3 * eps * scale) {
    std::ostringstream s;
    s << "ssm::hippo::nplr: A + P P^T must be c I + a skew-symmetric matrix; its "
         "symmetric part is off c I by "
      << sym.cwiseAbs().maxCoeff();
    throw std::invalid_argument(s.str());
  }
  const Mat skew = (normal - normal.transpose()) / 2;

  // Real Schur form S = U T U^T: for a skew-symmetric S, T is block diagonal
  // with 2x2 blocks +-[[0, w], [-w, 0]] and 1x1 zeros. A block on Schur
  // vectors (q1, q2) has the eigenvector (q1 + i sign(b) q2) / sqrt(2) of
  // i w, with b = T(i, i+1), and its conjugate for -i w.
  const Eigen::RealSchur<Mat> schur(skew);
  const Mat& T = schur.matrixT();
  const Mat& U = schur.matrixU();
  std::vector<std::pair<double, Eigen::VectorXcd>> pairs;  // (w, eigenvector of i w)
  std::vector<Eigen::Index> zeros;                         // 1x1 blocks
  const Complex i(0, 1);
  for (Eigen::Index k = 0; k < N;) {
    if (k + 1 < N && T(k + 1, k) != 0) {
      const double b = T(k, k + 1), w = std::sqrt(std::abs(b * T(k + 1, k)));
      const Eigen::VectorXcd v = (U.col(k).cast<Complex>() +
                                  (b > 0 ? i : -i) * U.col(k + 1).cast<Complex>()) /
                                 std::sqrt(2.0);
      pairs.emplace_back(w, v);
      k += 2;
    } else {
      zeros.push_back(k);
      k += 1;
    }
  }
  // Zero eigenvalues of S pair up like a block with w = 0.
  for (std::size_t z = 0; z + 1 < zeros.size(); z += 2)
    pairs.emplace_back(0.0, (U.col(zeros[z]).cast<Complex>() +
                             i * U.col(zeros[z + 1]).cast<Complex>()) /
                                std::sqrt(2.0));
  std::stable_sort(pairs.begin(), pairs.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });

  const Eigen::Index M = Eigen::Index(pairs.size());
  Eigen::VectorXcd Lambda(N);
  CMat V(N, N);
  for (Eigen::Index m = 0; m < M; ++m) {
    Lambda(m) = Complex(shift, pairs[std::size_t(m)].first);
    Lambda(M + m) = std::conj(Lambda(m));
    V.col(m) = pairs[std::size_t(m)].second;
    V.col(M + m) = V.col(m).conjugate();
  }
  if (2 * M < N) {  // odd N: the one real eigenvector left over
    Lambda(N - 1) = shift;
    V.col(N - 1) = U.col(zeros.back()).cast<Complex>();
  }

  Nplr<Scalar> out;
  out.Lambda = Lambda.cast<std::complex<Scalar>>();
  out.P = (V.adjoint() * P.cast<Complex>()).cast<std::complex<Scalar>>();
  out.B = (V.adjoint() * t.B.template cast<double>().template cast<Complex>())
              .template cast<std::complex<Scalar>>();
  out.V = V.cast<std::complex<Scalar>>();
  return out;
}

/// The diagonal-plus-low-rank parameters S4 trains: the first M = N/2 entries
/// of the NPLR form, one of each conjugate pair (Im Lambda >= 0; S4's code
/// keeps the other half, which gives the same real system). The full system
/// is A = Vf (diag(Lf) - Pf Pf^*) Vf^* with Lf = [Lambda; conj(Lambda)],
/// Pf = [P; conj(P)], Vf = [V, conj(V)], and B = Vf [B~; conj(B~)].
/// Lambda: M, P: M x R, B: M, V: N x M.
template <class Real>
struct Dplr {
  using Complex = std::complex<Real>;  ///< the scalar of every member
  Eigen::Matrix<Complex, Eigen::Dynamic, 1> Lambda;          ///< M, Im >= 0
  Eigen::Matrix<Complex, Eigen::Dynamic, Eigen::Dynamic> P;  ///< M x R
  Eigen::Matrix<Complex, Eigen::Dynamic, 1> B;               ///< M (B~)
  Eigen::Matrix<Complex, Eigen::Dynamic, Eigen::Dynamic> V;  ///< N x M
};

/// The DPLR parameters of t; N must be even and positive (an odd N leaves a
/// real eigenvalue without a partner). Throws std::invalid_argument
/// otherwise, and as nplr() does.
template <class Scalar>
Dplr<Scalar> dplr(const Transition<Scalar>& t) {
  const Eigen::Index N = t.A.rows();
  if (N % 2 != 0 || N == 0)
    throw std::invalid_argument(
        "ssm::hippo::dplr: N must be even and positive (conjugate pairs), got " +
        std::to_string(N));
  const Nplr<Scalar> full = nplr(t);
  const Eigen::Index M = N / 2;
  Dplr<Scalar> out;
  out.Lambda = full.Lambda.head(M);
  out.P = full.P.topRows(M);
  out.B = full.B.head(M);
  out.V = full.V.leftCols(M);
  return out;
}

/// A diagonal initialization of N complex modes for S4D: x' = diag(A) x + B u,
/// read out as y = 2 Re(C x) (each mode stands for a conjugate pair of a real
/// system of size 2N, which is S4's d_state). A, B: N.
template <class Real>
struct DiagonalInit {
  Eigen::Matrix<std::complex<Real>, Eigen::Dynamic, 1> A;  ///< N continuous eigenvalues
  Eigen::Matrix<std::complex<Real>, Eigen::Dynamic, 1> B;  ///< N
};

namespace detail {
template <class Real>
DiagonalInit<Real> diagonal(Eigen::Index N, const char* where) {
  check_size(N, where);
  DiagonalInit<Real> d;
  d.A.resize(N);
  d.B.setOnes(N);
  return d;
}
}  // namespace detail

/// S4D-LegS (S4D, Sec. 4): the diagonal of the DPLR form of legs(2N), i.e. the
/// eigenvalues -1/2 + i w_n of LegS's normal part, with B = V^* B_legs.
/// (S4's code also clips Im B to [-2, 2]; this does not.) O(N^3). Throws
/// std::invalid_argument unless N > 0.
template <class Real>
DiagonalInit<Real> s4d_legs(Eigen::Index N) {
  detail::check_size(N, "ssm::hippo::s4d_legs");
  const auto d = dplr(legs<double>(2 * N));
  return {d.Lambda.template cast<std::complex<Real>>(), d.B.template cast<std::complex<Real>>()};
}

/// S4D-Inv (S4D, Sec. 4): A_n = -1/2 + i (N2/pi) (N2/(2n + 1) - 1) with N2 = 2N,
/// the asymptotics of LegS's eigenvalues; B = 1. Throws
/// std::invalid_argument unless N > 0.
template <class Real>
DiagonalInit<Real> s4d_inv(Eigen::Index N) {
  auto d = detail::diagonal<Real>(N, "ssm::hippo::s4d_inv");
  const double pi = 3.14159265358979323846, N2 = 2.0 * double(N);
  for (Eigen::Index n = 0; n < N; ++n)
    d.A(n) = {Real(-0.5), Real(N2 / pi * (N2 / (2.0 * double(n) + 1.0) - 1.0))};
  return d;
}

/// S4D-Lin (S4D, Sec. 4): A_n = -1/2 + i pi n, B = 1. Throws as s4d_inv.
template <class Real>
DiagonalInit<Real> s4d_lin(Eigen::Index N) {
  auto d = detail::diagonal<Real>(N, "ssm::hippo::s4d_lin");
  const double pi = 3.14159265358979323846;
  for (Eigen::Index n = 0; n < N; ++n) d.A(n) = {Real(-0.5), Real(pi * double(n))};
  return d;
}

/// S4D-Real (S4D, Sec. 4): A_n = -(n + 1), the eigenvalues of LegS, B = 1.
/// Throws as s4d_inv.
template <class Real>
DiagonalInit<Real> s4d_real(Eigen::Index N) {
  auto d = detail::diagonal<Real>(N, "ssm::hippo::s4d_real");
  for (Eigen::Index n = 0; n < N; ++n) d.A(n) = Real(-double(n + 1));
  return d;
}

}  // namespace ssm::hippo
