// The S4 layer (Gu, Goel & Re 2022, "Efficiently Modeling Long Sequences with
// Structured State Spaces"): H channels, each the real system of size N = 2M
// whose state matrix is diagonal plus low rank in a conjugate-paired basis,
//   A = diag(Lf) - Pf Pf^*,  Lf = [Lambda; conj(Lambda)], Pf = [P; conj(P)],
// with Bf = [B; conj(B)], y = Cf x + D u, Cf = [C, conj(C)] (= 2 Re(C x) on
// the half of the state that is stored), discretized by the bilinear
// transform at the channel's step dt = exp(log_dt):
//   dA = (I - dt/2 A)^{-1} (I + dt/2 A),  dB = (I - dt/2 A)^{-1} dt B.
// Evaluated
//   - as a convolution, the kernel computed as S4 does (Algorithm 1): the
//     truncated generating function at the roots of unity, from a Cauchy
//     kernel and the Woodbury identity, then an inverse FFT;
//   - as a recurrence, through the DPLR step (O(N R) per step) or the
//     materialized dense dA (O(N^2) per step).
// The HiPPO initializations are in ssm/hippo.hpp (hippo::dplr).
#pragma once

#include <ssm/detail/omp.hpp>
#include <ssm/hippo.hpp>
#include <ssm/s4d.hpp>

#include <Eigen/Core>
#include <Eigen/LU>
#include <Eigen/QR>
#include <unsupported/Eigen/FFT>

#include <cmath>
#include <complex>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace ssm {

/// S4 parameters: H channels of M = N/2 stored modes, rank R.
///   log_dt: H;  Lambda, B, C: H x M;  P: R matrices H x M (P[r](h, m));
///   D: H. The state of a channel is the first half of its paired state.
template <class Scalar>
struct S4 {
  using Real = Scalar;                                                  ///< float or double
  using Complex = std::complex<Scalar>;                                 ///< the modes' scalar
  using Vector = Eigen::Matrix<Real, Eigen::Dynamic, 1>;                ///< one value per channel
  using Modes = Eigen::Matrix<Complex, Eigen::Dynamic, Eigen::Dynamic>; ///< H x M: channels x modes

  Vector log_dt;         ///< H
  Modes Lambda;          ///< H x M, one of each conjugate pair
  std::vector<Modes> P;  ///< R matrices, H x M each
  Modes B, C;            ///< H x M each
  Vector D;              ///< H

  Eigen::Index channels() const { return Lambda.rows(); }     ///< H
  Eigen::Index modes() const { return Lambda.cols(); }        ///< M, modes per channel
  Eigen::Index rank() const { return Eigen::Index(P.size()); }  ///< R, of the low-rank term
};

/// How recurrent() advances an S4 state.
enum class S4Step {
  dplr,   ///< the DPLR structure: Woodbury on the low rank, O(N R) per step
  dense,  ///< dA materialized (LU of the dense I - dt/2 A), O(N^2) per step
};

/// The recurrent state of an S4 layer: H x M complex (half of the pairs).
template <class Scalar>
using S4State = Eigen::Matrix<std::complex<Scalar>, Eigen::Dynamic, Eigen::Dynamic>;

namespace detail {

template <class Scalar>
void check_s4(const S4<Scalar>& s, const char* where) {
  const Eigen::Index H = s.channels(), M = s.modes();
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument(std::string(where) + ": " + what);
  };
  if (H <= 0 || M <= 0)
    fail("S4 needs H > 0 channels and M > 0 modes, got H = " + std::to_string(H) +
         ", M = " + std::to_string(M));
  auto check = [&](const auto& m, const std::string& name) {
    if (m.rows() != H || m.cols() != M)
      fail(name + " must be " + shape(H, M) + " (H x M), got " + shape(m.rows(), m.cols()));
  };
  check(s.B, "B");
  check(s.C, "C");
  for (std::size_t r = 0; r < s.P.size(); ++r) check(s.P[r], "P[" + std::to_string(r) + "]");
  if (s.log_dt.size() != H || s.D.size() != H)
    fail("log_dt and D must have H = " + std::to_string(H) + " entries, got " +
         std::to_string(s.log_dt.size()) + " and " + std::to_string(s.D.size()));
  if (!s.log_dt.allFinite()) fail("log_dt has a non-finite entry");
}

// Everything below runs in double whatever the layer's Scalar (Real = double
// at every call); they are templates so that including this header compiles
// none of their complex decompositions until a layer is used.
template <class Real>
using CVector = Eigen::Matrix<std::complex<Real>, Eigen::Dynamic, 1>;
template <class Real>
using CMatrix = Eigen::Matrix<std::complex<Real>, Eigen::Dynamic, Eigen::Dynamic>;

// The bilinear step of one channel on the stored half of a conjugate-paired
// state: x <- (I - dt/2 A)^{-1} ((I + dt/2 A) x + v), with A = diag(Lf) - Pf Pf^*.
// Inner products with Pf over the full state are 2 Re(P^* x) over the half.
// (I - dt/2 A)^{-1} = (E + dt/2 Pf Pf^*)^{-1}, E = I - dt/2 Lf, by Woodbury:
// E^{-1} - E^{-1} Pf G^{-1} Pf^* E^{-1}, G = 2/dt I + Pf^* E^{-1} Pf (R x R, real).
// transpose = true steps with A^T = diag(Lf) - conj(Pf) conj(Pf)^*, for
// row vectors: x^T <- x^T dA.
template <class Real>
class DplrBilinear {
 public:
  using Complex = std::complex<Real>;
  using RMatrix = Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic>;
  using RVector = Eigen::Matrix<Real, Eigen::Dynamic, 1>;

  DplrBilinear(const CVector<Real>& lambda, const CMatrix<Real>& P, Real dt, bool transpose)
      : lambda_(lambda), P_(transpose ? CMatrix<Real>(P.conjugate()) : P), dt_(dt) {
    e_inv_ = (Real(1) - dt / 2 * lambda_.array()).inverse().matrix();
    const Eigen::Index R = P_.cols();
    RMatrix G = (2 / dt) * RMatrix::Identity(R, R);
    G += 2 * (P_.adjoint() * e_inv_.asDiagonal() * P_).real();
    g_inv_ = R > 0 ? RMatrix(G.inverse()) : G;
  }

  void step(CVector<Real>& x, const CVector<Real>& v) const {
    const RVector r = inner(x);
    CVector<Real> y = x + dt_ / 2 * (lambda_.cwiseProduct(x) - P_ * r.template cast<Complex>()) + v;
    y = e_inv_.cwiseProduct(y);
    const RVector m = g_inv_ * inner(y);
    x = y - e_inv_.cwiseProduct(P_ * m.template cast<Complex>());
  }

 private:
  RVector inner(const CVector<Real>& x) const { return 2 * (P_.adjoint() * x).real(); }

  CVector<Real> lambda_;
  CMatrix<Real> P_;
  Real dt_;
  CVector<Real> e_inv_;
  RMatrix g_inv_;
};

// One channel's parameters, in Real.
template <class Real>
struct S4Channel {
  CVector<Real> lambda, B, C;
  CMatrix<Real> P;  // M x R
  Real dt, D;

  // Full paired vectors [v; conj(v)] and [P; conj(P)] (N = 2M).
  static CVector<Real> paired(const CVector<Real>& v) {
    CVector<Real> f(2 * v.size());
    f << v, v.conjugate();
    return f;
  }
  CMatrix<Real> paired_P() const {
    CMatrix<Real> f(2 * P.rows(), P.cols());
    f << P, P.conjugate();
    return f;
  }
};

template <class Real, class Scalar>
S4Channel<Real> channel(const S4<Scalar>& s, Eigen::Index h) {
  using Complex = std::complex<Real>;
  S4Channel<Real> c;
  c.lambda = s.Lambda.row(h).transpose().template cast<Complex>();
  c.B = s.B.row(h).transpose().template cast<Complex>();
  c.C = s.C.row(h).transpose().template cast<Complex>();
  c.P.resize(s.modes(), s.rank());
  for (Eigen::Index r = 0; r < s.rank(); ++r)
    c.P.col(r) = s.P[std::size_t(r)].row(h).transpose().template cast<Complex>();
  c.dt = std::exp(Real(s.log_dt(h)));
  c.D = Real(s.D(h));
  return c;
}

// C~f w with M(z) w = dt Bf, the dense M(z) = (1 - z) I - dt/2 (1 + z) A: one
// frequency of the kernel's generating function, for s4_channel_kernel.
template <class Real>
std::complex<Real> s4_dense_spectrum(const S4Channel<Real>& c, const CVector<Real>& Ct,
                                     std::complex<Real> z) {
  const CMatrix<Real> Pf = c.paired_P();
  const std::complex<Real> s = c.dt / 2 * (Real(1) + z);
  CMatrix<Real> Mz = s * Pf * Pf.adjoint();
  Mz.diagonal().array() += (Real(1) - z) - s * S4Channel<Real>::paired(c.lambda).array();
  // least squares: M(z) may be singular (FouT's inert state makes A so), but
  // its null space is annihilated by C~ = Cf (I - dA^Lp), so any solution will do
  const CVector<Real> w =
      Eigen::CompleteOrthogonalDecomposition<CMatrix<Real>>(Mz).solve(S4Channel<Real>::paired(c.B));
  return c.dt * (S4Channel<Real>::paired(Ct).transpose() * w)(0);
}

// The kernel of one channel, K_l for l < L (L >= 1), by S4's Algorithm 1 at
// the Lp = 2^k >= L roots of unity z = exp(-2 pi i j / Lp):
//   C~ = Cf (I - dA^Lp)          (then K^(z) = sum_{l < Lp} K_l z^l exactly)
//   K^(z) = C~ (I - dA z)^{-1} dB = C~ M(z)^{-1} dt B,
//   M(z) = (1 - z) I - dt/2 (1 + z) A = diag(a) + s Pf Pf^*,
//   a_n = (1 - z) - s lambda_n,  s = dt/2 (1 + z),
// which is (1 + z) dt/2 times S4's Cauchy kernel 1 / (g(z) - lambda_n),
// g(z) = 2/dt (1 - z)/(1 + z), written so that z = -1 needs no limit. Woodbury:
//   K^(z) = dt (k00 - s k01 (I + s k11)^{-1} k10),
//   k00 = C~ a^{-1} B, k01 = C~ a^{-1} Pf, k10 = Pf^* a^{-1} B, k11 = Pf^* a^{-1} Pf,
// sums over the full state (each stored mode and its conjugate). Then K is
// the inverse real FFT of K^ over the Lp/2 + 1 non-redundant frequencies.
template <class Real>
Eigen::Matrix<Real, Eigen::Dynamic, 1> s4_channel_kernel(const S4Channel<Real>& c, Eigen::Index L) {
  using Complex = std::complex<Real>;
  const Eigen::Index M = c.lambda.size(), R = c.P.cols();
  Eigen::Index Lp = 2;
  while (Lp < L) Lp *= 2;

  // C~ = C - (dA^T)^Lp C on the stored half
  CVector<Real> v = c.C;
  const DplrBilinear<Real> transposed(c.lambda, c.P, c.dt, true);
  const CVector<Real> zero = CVector<Real>::Zero(M);
  for (Eigen::Index l = 0; l < Lp; ++l) transposed.step(v, zero);
  const CVector<Real> Ct = c.C - v;

  const Real pi = Real(3.14159265358979323846), one = 1;
  std::vector<Complex> spectrum(std::size_t(Lp / 2 + 1));
  CMatrix<Real> k11(R, R);
  CVector<Real> k01(R), k10(R);
  for (Eigen::Index j = 0; j <= Lp / 2; ++j) {
    const Complex z = std::polar(one, -2 * pi * Real(j) / Real(Lp));
    const Complex s = c.dt / 2 * (one + z);
    // A (near-)zero a_n (lambda = 0 at z = 1, as in FouT) leaves Woodbury
    // without a diagonal to invert: solve M(z) w = dt B densely instead
    bool singular = false;
    for (Eigen::Index n = 0; n < M; ++n)
      for (const Complex lambda : {c.lambda(n), std::conj(c.lambda(n))})
        singular |= std::abs((one - z) - s * lambda) <=
                    Real(1e-8) * (std::abs(one - z) + std::abs(s * lambda));
    if (singular) {
      spectrum[std::size_t(j)] = s4_dense_spectrum(c, Ct, z);
      continue;
    }
    Complex k00 = 0;
    k01.setZero();
    k10.setZero();
    k11.setZero();
    for (Eigen::Index n = 0; n < M; ++n)
      for (int conj = 0; conj < 2; ++conj) {
        // the stored mode, then its partner with every vector conjugated
        auto f = [conj](Complex x) { return conj ? std::conj(x) : x; };
        const Complex inv_a = one / ((one - z) - s * f(c.lambda(n)));
        const Complex ca = f(Ct(n)) * inv_a, ba = f(c.B(n)) * inv_a;
        k00 += ca * f(c.B(n));
        for (Eigen::Index r = 0; r < R; ++r) {
          const Complex p_r = f(c.P(n, r));
          k01(r) += ca * p_r;
          k10(r) += std::conj(p_r) * ba;
          for (Eigen::Index q = 0; q < R; ++q) k11(r, q) += std::conj(p_r) * inv_a * f(c.P(n, q));
        }
      }
    Complex k = k00;
    if (R > 0) {
      const CMatrix<Real> I = CMatrix<Real>::Identity(R, R);
      k -= s * k01.cwiseProduct((I + s * k11).partialPivLu().solve(k10)).sum();
    }
    spectrum[std::size_t(j)] = c.dt * k;
  }
  Eigen::FFT<Real> fft;
  fft.SetFlag(Eigen::FFT<Real>::HalfSpectrum);
  std::vector<Real> taps(static_cast<std::size_t>(Lp));
  fft.inv(taps.data(), spectrum.data(), Lp);
  return Eigen::Map<const Eigen::Matrix<Real, Eigen::Dynamic, 1>>(taps.data(), L);
}

// dA and dB of one channel on the full paired state (N x N, N), from the
// dense matrices by LU: the independent check of the DPLR step.
template <class Real>
std::pair<CMatrix<Real>, CVector<Real>> s4_dense(const S4Channel<Real>& c) {
  const Eigen::Index N = 2 * c.lambda.size();
  const CMatrix<Real> Pf = c.paired_P();
  CMatrix<Real> A = -Pf * Pf.adjoint();
  A.diagonal() += S4Channel<Real>::paired(c.lambda);
  const CMatrix<Real> I = CMatrix<Real>::Identity(N, N);
  const Eigen::PartialPivLU<CMatrix<Real>> lu(I - c.dt / 2 * A);
  return {lu.solve(I + c.dt / 2 * A), lu.solve(c.dt * S4Channel<Real>::paired(c.B))};
}

}  // namespace detail

/// The S4 convolution kernel (L x H), K(l, h) = Cf dA^l dB of channel h, by
/// S4's Algorithm 1 (see detail::s4_channel_kernel), in double precision and
/// rounded once. Agrees with the powers of the dense dA to 1e-11 relative
/// in double (tests/test_hippo_s4.cpp). O(H (N R^2 + R^3) Lp) with Lp the
/// power of two >= L; threads (OpenMP's maximum) over channels. Throws
/// std::invalid_argument for H or M = 0, shapes other than those of S4, a
/// non-finite log_dt, or L < 0.
template <class Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> kernel(const S4<Scalar>& s,
                                                             Eigen::Index L) {
  detail::check_s4(s, "ssm::kernel (S4)");
  if (L < 0)
    throw std::invalid_argument("ssm::kernel (S4): L must be >= 0, got " + std::to_string(L));
  const Eigen::Index H = s.channels();
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> K(L, H);
  if (L == 0) return K;
  [[maybe_unused]] const int threads = detail::resolve_threads(0);
  detail::ParallelErrors errors;
  SSM_OMP(parallel for num_threads(threads) schedule(dynamic))
  for (Eigen::Index h = 0; h < H; ++h)
    errors.run([&] {
      K.col(h) = detail::s4_channel_kernel(detail::channel<double>(s, h), L).template cast<Scalar>();
    });
  errors.rethrow();
  return K;
}

/// Convolution mode: y = K * u + D u per channel (u, y: L x H), zero state;
/// threads as kernel(). Throws std::invalid_argument as kernel(), or if u
/// does not have H columns.
template <class Scalar, class Derived>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> convolve(
    const S4<Scalar>& s, const Eigen::MatrixBase<Derived>& u) {
  using Mat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  detail::check_s4(s, "ssm::convolve (S4)");
  detail::check_sequence(u, s.channels(), "ssm::convolve (S4)");
  const Eigen::Ref<const Mat> uc(u.template cast<Scalar>());
  return detail::convolve_channels<Scalar>(kernel(s, uc.rows()), uc, s.D);
}

/// Recurrent mode over the rows of u (L x H) from state x (H x M), which
/// ends as the state after the last step. `mode` picks the DPLR step (O(N R)
/// per step) or the dense dA (O(N^2) per step, O(N^3) to set up per call).
/// Computed in double per channel; threads (OpenMP's maximum) over channels.
/// Throws std::invalid_argument as convolve(), or if x is not H x M.
template <class Scalar, class Derived>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> recurrent(
    const S4<Scalar>& s, const Eigen::MatrixBase<Derived>& u, S4State<Scalar>& x,
    S4Step mode = S4Step::dplr) {
  using Mat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  const char* where = "ssm::recurrent (S4)";
  detail::check_s4(s, where);
  detail::check_sequence(u, s.channels(), where);
  if (x.rows() != s.channels() || x.cols() != s.modes())
    throw std::invalid_argument(std::string(where) + ": the state must be " +
                                detail::shape(s.channels(), s.modes()) + " (H x M), got " +
                                detail::shape(x.rows(), x.cols()));
  const Eigen::Ref<const Mat> uc(u.template cast<Scalar>());
  const Eigen::Index L = uc.rows(), H = s.channels(), M = s.modes();
  Mat y(L, H);
  [[maybe_unused]] const int threads = detail::resolve_threads(0);
  detail::ParallelErrors errors;
  SSM_OMP(parallel for num_threads(threads) schedule(dynamic))
  for (Eigen::Index h = 0; h < H; ++h)
    errors.run([&] {
      const auto c = detail::channel<double>(s, h);
      Eigen::VectorXcd state = x.row(h).transpose().template cast<std::complex<double>>();
      if (mode == S4Step::dplr) {
        const detail::DplrBilinear<double> stepper(c.lambda, c.P, c.dt, false);
        for (Eigen::Index t = 0; t < L; ++t) {
          const double ut = double(uc(t, h));
          stepper.step(state, c.dt * ut * c.B);
          y(t, h) = Scalar(2 * c.C.cwiseProduct(state).sum().real() + c.D * ut);
        }
      } else {
        // x <- X x + Y conj(x) + dB u on the stored half of Af = [[X, Y], [.., ..]]
        const auto [dA, dB] = detail::s4_dense(c);
        const Eigen::MatrixXcd X = dA.topLeftCorner(M, M), Y = dA.topRightCorner(M, M);
        const Eigen::VectorXcd b = dB.head(M);
        Eigen::VectorXcd next(M);
        for (Eigen::Index t = 0; t < L; ++t) {
          const double ut = double(uc(t, h));
          next.noalias() = X * state;
          next.noalias() += Y * state.conjugate();
          state = next + ut * b;
          y(t, h) = Scalar(2 * c.C.cwiseProduct(state).sum().real() + c.D * ut);
        }
      }
      x.row(h) = state.transpose().template cast<std::complex<Scalar>>();
    });
  errors.rethrow();
  return y;
}

/// recurrent() from the zero state.
template <class Scalar, class Derived>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> recurrent(
    const S4<Scalar>& s, const Eigen::MatrixBase<Derived>& u, S4Step mode = S4Step::dplr) {
  S4State<Scalar> x = S4State<Scalar>::Zero(s.channels(), s.modes());
  return recurrent(s, u, x, mode);
}

/// An S4 layer as S4 initializes it: the DPLR form of `measure` (N even, e.g.
/// hippo::legs<double>(64)) in every channel, C complex normal (E|C|^2 = 1),
/// D standard normal, log_dt uniform in [log dt_min, log dt_max]. Throws
/// std::invalid_argument unless H > 0 and 0 < dt_min <= dt_max < inf, and as
/// hippo::dplr (N odd, or not of NPLR form).
template <class Scalar, class Rng>
S4<Scalar> make_s4(Eigen::Index H, const hippo::Transition<double>& measure, Rng& rng,
                   double dt_min = 1e-3, double dt_max = 1e-1) {
  if (H <= 0)
    throw std::invalid_argument("ssm::make_s4: H must be positive, got " + std::to_string(H));
  detail::check_dt_range("ssm::make_s4", dt_min, dt_max);
  const hippo::Dplr<double> d = hippo::dplr(measure);
  const Eigen::Index M = d.Lambda.size(), R = d.P.cols();
  using Complex = std::complex<Scalar>;
  S4<Scalar> s;
  s.Lambda = d.Lambda.transpose().replicate(H, 1).template cast<Complex>();
  s.B = d.B.transpose().replicate(H, 1).template cast<Complex>();
  for (Eigen::Index r = 0; r < R; ++r)
    s.P.push_back(d.P.col(r).transpose().replicate(H, 1).template cast<Complex>());
  s.C.resize(H, M);
  s.D.resize(H);
  s.log_dt.resize(H);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(std::log(dt_min), std::log(dt_max));
  const double half = std::sqrt(0.5);
  for (Eigen::Index h = 0; h < H; ++h) {
    for (Eigen::Index m = 0; m < M; ++m)
      s.C(h, m) = {Scalar(half * normal(rng)), Scalar(half * normal(rng))};
    s.D(h) = Scalar(normal(rng));
    s.log_dt(h) = Scalar(uniform(rng));
  }
  return s;
}

}  // namespace ssm
