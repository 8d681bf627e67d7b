// Time-domain evaluation of a discrete system: one step at a time (`step`,
// for streaming) or over a whole input sequence (`recurrent`).
//
// Convention (S4, Mamba): x_t = A x_{t-1} + B u_t, y_t = C x_t + D u_t, with
// x_{-1} the initial state (zero unless given). u holds one row per time step
// (L x P); y likewise (L x Q).
#pragma once

#include <ssm/system.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace ssm {

namespace detail {

template <class System>
using enable_if_discrete_t =
    std::enable_if_t<is_discrete<System>::value, int>;

template <class System, class Derived>
void check_input(const System& sys, const Eigen::MatrixBase<Derived>& u,
                 const char* where) {
  check_shapes(sys, where);
  if (u.cols() != sys.input_size())
    throw std::invalid_argument(
        std::string(where) + ": u must be L x " +
        std::to_string(sys.input_size()) + " (one row per step), got " +
        shape(u.rows(), u.cols()));
}

template <class System, class Derived>
void check_state(const System& sys, const Eigen::MatrixBase<Derived>& x,
                 const char* where) {
  if (x.rows() != sys.state_size() || x.cols() != 1)
    throw std::invalid_argument(std::string(where) + ": the state must be " +
                                shape(sys.state_size(), 1) + ", got " +
                                shape(x.rows(), x.cols()));
}

// x <- A x (dense) or A .* x (diagonal), through `tmp` to avoid aliasing.
template <class System, class Vec>
void propagate(const System& sys, Vec& x, Vec& tmp) {
  if constexpr (System::IsDiagonal) {
    x = sys.A.cwiseProduct(x);
  } else {
    tmp.noalias() = sys.A * x;
    x.swap(tmp);
  }
}

}  // namespace detail

/// One time step: x <- A x + B u_t, then returns y_t = C x + D u_t.
/// x: the state (N), updated in place; u_t: the input at this step (P).
template <class System, class Derived,
          detail::enable_if_discrete_t<System> = 0>
Eigen::Matrix<typename System::Scalar, System::OutputSize, 1> step(
    const System& sys, typename System::StateVector& x,
    const Eigen::MatrixBase<Derived>& u_t) {
  using Scalar = typename System::Scalar;
  detail::check_shapes(sys, "ssm::step");
  if (u_t.size() != sys.input_size())
    throw std::invalid_argument(
        "ssm::step: u_t must have " + std::to_string(sys.input_size()) +
        " entries, got " + std::to_string(u_t.size()));
  detail::check_state(sys, x, "ssm::step");
  const auto u = u_t.reshaped().template cast<Scalar>();
  typename System::StateVector tmp(x.rows());
  detail::propagate(sys, x, tmp);
  x.noalias() += sys.B * u;
  return sys.C * x + sys.D * u;
}

/// Runs the recurrence over all L rows of u (L x P) and returns y (L x Q).
/// x: the initial state x_{-1} on entry, the final state x_{L-1} on return.
/// O(L N^2) for dense A, O(L N) for diagonal A. Works through blocks of
/// steps, so beyond u and y it holds O(N) per step of one block, whatever L.
template <class System, class Derived,
          detail::enable_if_discrete_t<System> = 0>
Eigen::Matrix<typename System::Scalar, Eigen::Dynamic, System::OutputSize>
recurrent(const System& sys, const Eigen::MatrixBase<Derived>& u,
          typename System::StateVector& x) {
  using Scalar = typename System::Scalar;
  using States = Eigen::Matrix<Scalar, Eigen::Dynamic, System::StateSize,
                               System::StateSize == 1 ? Eigen::ColMajor
                                                      : Eigen::RowMajor>;
  detail::check_input(sys, u, "ssm::recurrent");
  detail::check_state(sys, x, "ssm::recurrent");
  const Eigen::Index L = u.rows(), block = 256;
  Eigen::Matrix<Scalar, Eigen::Dynamic, System::OutputSize> y(L, sys.output_size());
  States X;
  typename System::StateVector tmp(x.rows());
  for (Eigen::Index t0 = 0; t0 < L; t0 += block) {
    const Eigen::Index T = std::min(block, L - t0);
    const auto ub = u.middleRows(t0, T).template cast<Scalar>();
    // (T, P) -> (T, N): the input terms B u_t of the block in one product,
    // then overwritten row by row with the states x_t
    X.noalias() = ub * sys.B.transpose();
    for (Eigen::Index t = 0; t < T; ++t) {
      detail::propagate(sys, x, tmp);
      x += X.row(t).transpose();
      X.row(t) = x.transpose();
    }
    y.middleRows(t0, T).noalias() = X * sys.C.transpose();
    y.middleRows(t0, T).noalias() += ub * sys.D.transpose();
  }
  return y;
}

/// recurrent() from the zero state.
template <class System, class Derived,
          detail::enable_if_discrete_t<System> = 0>
Eigen::Matrix<typename System::Scalar, Eigen::Dynamic, System::OutputSize>
recurrent(const System& sys, const Eigen::MatrixBase<Derived>& u) {
  typename System::StateVector x =
      System::StateVector::Zero(sys.state_size());
  return recurrent(sys, u, x);
}

}  // namespace ssm
