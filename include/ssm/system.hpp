// State space systems: continuous-time x' = A x + B u, y = C x + D u, and
// discrete-time x_t = A x_{t-1} + B u_t, y_t = C x_t + D u_t.
//
// Sizes follow Eigen: N states, P inputs, Q outputs, each either a compile-time
// constant or Eigen::Dynamic. The dense types hold A as an N x N matrix; the
// diagonal types hold only its diagonal (an N-vector of possibly complex
// eigenvalues, the S4D / Mamba case) and are evaluated element-wise.
#pragma once

#include <Eigen/Core>

#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace ssm {

namespace detail {

inline std::string shape(Eigen::Index rows, Eigen::Index cols) {
  std::ostringstream s;
  s << rows << 'x' << cols;
  return s.str();
}

// Throws std::invalid_argument naming `where` unless A is n x n (or the
// n-vector of a diagonal system), B is n x p, C is q x n and D is q x p.
template <class System>
void check_shapes(const System& sys, const char* where) {
  const Eigen::Index n = sys.A.rows(), p = sys.B.cols(), q = sys.C.rows();
  auto fail = [&](const char* what, const std::string& expected,
                  const std::string& got) {
    throw std::invalid_argument(std::string(where) + ": " + what +
                                " must be " + expected + ", got " + got);
  };
  // (A's column count is fixed at 1 in the diagonal types)
  if (!System::IsDiagonal && sys.A.cols() != n) fail("A", "square", shape(n, sys.A.cols()));
  if (sys.B.rows() != n) fail("B", shape(n, p), shape(sys.B.rows(), p));
  if (sys.C.cols() != n) fail("C", shape(q, n), shape(q, sys.C.cols()));
  if (sys.D.rows() != q || sys.D.cols() != p)
    fail("D", shape(q, p), shape(sys.D.rows(), sys.D.cols()));
}

// The four matrices and their sizes, shared by the four system types below
// (their public members, hence documented with ///).
template <class Scalar_, int N, int P, int Q, bool Diagonal>
struct StateSpace {
  using Scalar = Scalar_;  ///< the entries' type (real or complex)
  /// the template sizes (Eigen::Dynamic where set at run time)
  static constexpr int StateSize = N, InputSize = P, OutputSize = Q;
  static constexpr bool IsDiagonal = Diagonal;  ///< A holds only the diagonal
  using StateVector = Eigen::Matrix<Scalar, N, 1>;  ///< x, N entries

  Eigen::Matrix<Scalar, N, Diagonal ? 1 : N> A;  ///< N x N, or its diagonal (N x 1)
  Eigen::Matrix<Scalar, N, P> B;                 ///< N x P
  Eigen::Matrix<Scalar, Q, N> C;                 ///< Q x N
  Eigen::Matrix<Scalar, Q, P> D;                 ///< Q x P

  // the sizes as the matrices hold them; the operations check that the
  // four shapes agree
  Eigen::Index state_size() const { return A.rows(); }   ///< N (A's rows)
  Eigen::Index input_size() const { return B.cols(); }   ///< P (B's columns)
  Eigen::Index output_size() const { return C.rows(); }  ///< Q (C's rows)
};

template <class T>
struct is_discrete : std::false_type {};

}  // namespace detail

/// Continuous-time system x'(t) = A x(t) + B u(t), y(t) = C x(t) + D u(t).
/// A: N x N, B: N x P, C: Q x N, D: Q x P.
template <class Scalar, int N = Eigen::Dynamic, int P = Eigen::Dynamic,
          int Q = Eigen::Dynamic>
struct Continuous : detail::StateSpace<Scalar, N, P, Q, false> {};

/// Discrete-time system x_t = A x_{t-1} + B u_t, y_t = C x_t + D u_t: the
/// state is updated before it is read, as in S4 and Mamba, so the impulse
/// response is D at lag 0 plus C A^k B at lag k >= 0. (scipy.signal.dlsim
/// reads the state before updating it: its y_{t+1} is our y_t, but for the
/// D u term, which it takes from u_{t+1}.)
template <class Scalar, int N = Eigen::Dynamic, int P = Eigen::Dynamic,
          int Q = Eigen::Dynamic>
struct Discrete : detail::StateSpace<Scalar, N, P, Q, false> {};

/// Continuous-time system whose A is diagonal: A holds the N eigenvalues as
/// an N-vector. Otherwise as Continuous.
template <class Scalar, int N = Eigen::Dynamic, int P = Eigen::Dynamic,
          int Q = Eigen::Dynamic>
struct ContinuousDiagonal : detail::StateSpace<Scalar, N, P, Q, true> {};

/// Discrete-time system x_t = A .* x_{t-1} + B u_t with A an N-vector.
/// Otherwise as Discrete.
template <class Scalar, int N = Eigen::Dynamic, int P = Eigen::Dynamic,
          int Q = Eigen::Dynamic>
struct DiscreteDiagonal : detail::StateSpace<Scalar, N, P, Q, true> {};

namespace detail {
template <class Scalar, int N, int P, int Q>
struct is_discrete<Discrete<Scalar, N, P, Q>> : std::true_type {};
template <class Scalar, int N, int P, int Q>
struct is_discrete<DiscreteDiagonal<Scalar, N, P, Q>> : std::true_type {};
}  // namespace detail

/// The dense system with A = diag(sys.A): for checking the diagonal fast
/// paths against the general ones, or for feeding a diagonal system to code
/// that wants a dense one.
template <class Scalar, int N, int P, int Q>
Continuous<Scalar, N, P, Q> to_dense(
    const ContinuousDiagonal<Scalar, N, P, Q>& sys) {
  Continuous<Scalar, N, P, Q> dense;
  dense.A = sys.A.asDiagonal();
  dense.B = sys.B;
  dense.C = sys.C;
  dense.D = sys.D;
  return dense;
}

/// The same discrete system with A as a dense (diagonal) matrix.
template <class Scalar, int N, int P, int Q>
Discrete<Scalar, N, P, Q> to_dense(const DiscreteDiagonal<Scalar, N, P, Q>& sys) {
  Discrete<Scalar, N, P, Q> dense;
  dense.A = sys.A.asDiagonal();
  dense.B = sys.B;
  dense.C = sys.C;
  dense.D = sys.D;
  return dense;
}

}  // namespace ssm
