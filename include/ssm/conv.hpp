// Convolutional evaluation of a discrete system: its impulse response
// (`kernel`) and the output as the causal convolution of the input with it
// (`convolve`), the S4 "convolution mode" (Gu, Goel & Re 2022, eq. 4-5).
#pragma once

#include <ssm/detail/fft.hpp>
#include <ssm/scan.hpp>
#include <ssm/system.hpp>

#include <Eigen/Core>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace ssm {

/// The impulse response K_k = C A^k B for k = 0 .. L-1 (D apart), as an
/// L x (Q P) matrix: row k holds K_k (Q x P) in row-major order, so entry
/// (k, q P + p) is the response of output q at lag k to an impulse on input p.
/// A single-input single-output system gives an L x 1 column.
/// O(L N^2 P) for dense A, O(L N P) for diagonal A. Throws
/// std::invalid_argument if sys's shapes disagree or L < 0, std::length_error
/// if L Q P entries overflow the size of an array.
template <class System, detail::enable_if_discrete_t<System> = 0>
Eigen::Matrix<typename System::Scalar, Eigen::Dynamic, Eigen::Dynamic> kernel(
    const System& sys, Eigen::Index L) {
  using Scalar = typename System::Scalar;
  detail::check_shapes(sys, "ssm::kernel");
  if (L < 0)
    throw std::invalid_argument("ssm::kernel: L must be >= 0, got " +
                                std::to_string(L));
  const Eigen::Index P = sys.input_size(), Q = sys.output_size();
  // L Q P numbers: a size whose bytes overflow is an error, not a bad_alloc
  if (Q * P > 0 && L > PTRDIFF_MAX / Eigen::Index(sizeof(Scalar)) / (Q * P))
    throw std::length_error("ssm::kernel: L = " + std::to_string(L) + " lags of a " +
                            std::to_string(Q) + "x" + std::to_string(P) +
                            " response overflow the size of an array");
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> K(L, Q * P);
  Eigen::Matrix<Scalar, System::StateSize, System::InputSize> AkB = sys.B, tmp;
  Eigen::Matrix<Scalar, System::OutputSize, System::InputSize> Kk;
  for (Eigen::Index k = 0; k < L; ++k) {
    Kk.noalias() = sys.C * AkB;
    for (Eigen::Index q = 0; q < Q; ++q)
      for (Eigen::Index p = 0; p < P; ++p) K(k, q * P + p) = Kk(q, p);
    if constexpr (System::IsDiagonal) {
      AkB = sys.A.asDiagonal() * AkB;
    } else {
      tmp.noalias() = sys.A * AkB;
      AkB.swap(tmp);
    }
  }
  return K;
}

/// y = K * u + D u: the causal convolution of u (L x P, one row per step)
/// with kernel(sys, L), through FFTs of length 2^ceil(log2(2L - 1)), plus the
/// direct term. Equals recurrent(sys, u) from the zero state up to rounding
/// (tests/test_paths.cpp: 1e-10 relative in double, 1e-4 in float).
/// O(L N^2 P) for the kernel (O(L N P) diagonal) and O(P Q L log L) for
/// the transforms; single-threaded. Throws std::invalid_argument if sys's
/// shapes disagree or u does not have P columns.
template <class System, class Derived, detail::enable_if_discrete_t<System> = 0>
Eigen::Matrix<typename System::Scalar, Eigen::Dynamic, System::OutputSize>
convolve(const System& sys, const Eigen::MatrixBase<Derived>& u) {
  using Scalar = typename System::Scalar;
  using Complex = typename detail::CausalFft<Scalar>::Complex;
  using Spectra = Eigen::Matrix<Complex, Eigen::Dynamic, Eigen::Dynamic>;
  detail::check_input(sys, u, "ssm::convolve");
  const Eigen::Index L = u.rows(), P = sys.input_size(),
                     Q = sys.output_size();
  const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> uc =
      u.template cast<Scalar>();
  Eigen::Matrix<Scalar, Eigen::Dynamic, System::OutputSize> y =
      uc * sys.D.transpose();
  if (L == 0) return y;

  const auto K = kernel(sys, L);
  detail::CausalFft<Scalar> fft(L);
  Spectra U(fft.bins(), P);  // one column per input
  for (Eigen::Index p = 0; p < P; ++p) fft.forward(&uc(0, p), 1, &U(0, p));
  Eigen::Matrix<Complex, Eigen::Dynamic, 1> Kf(fft.bins()), Yf(fft.bins());
  Eigen::Matrix<Scalar, Eigen::Dynamic, 1> conv(L);
  for (Eigen::Index q = 0; q < Q; ++q) {
    Yf.setZero();
    for (Eigen::Index p = 0; p < P; ++p) {
      fft.forward(&K(0, q * P + p), 1, Kf.data());
      Yf += Kf.cwiseProduct(U.col(p));
    }
    fft.inverse(Yf.data(), conv.data(), 1);
    y.col(q) += conv;
  }
  return y;
}

}  // namespace ssm
