// Time-domain evaluation of a discrete system: one step at a time (`step`,
// for streaming), over a whole input sequence step after step
// (`recurrent`), or in parallel over time (`scan`).
//
// Convention (S4, Mamba): x_t = A x_{t-1} + B u_t, y_t = C x_t + D u_t, with
// x_{-1} the initial state (zero unless given). u holds one row per time step
// (L x P); y likewise (L x Q).
#pragma once

#include <ssm/detail/omp.hpp>
#include <ssm/linear_recurrence.hpp>
#include <ssm/system.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <complex>
#include <vector>
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
/// Throws std::invalid_argument if sys's shapes disagree, u_t does not have
/// P entries or x does not have N.
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

namespace detail {

template <class T>
struct has_simd : std::bool_constant<std::is_same<T, float>::value || std::is_same<T, double>::value ||
                                     std::is_same<T, std::complex<float>>::value ||
                                     std::is_same<T, std::complex<double>>::value> {};

// dst = lhs * rhs (or += with add), on the calling thread. Built with
// OpenMP, Eigen threads a matrix product whose destination may have more
// than 32 rows (parallelize_gemm, Eigen/src/Core/products/Parallelizer.h):
// recurrent() would open a parallel region per block of steps (with
// C = I and N = 64, each y block), and on a machine whose other cores are
// busy each region waits for a descheduled thread (examples/04_hippo_memory:
// 1 s alone, 8-12 s beside a compiler). So a product Eigen could thread
// (from 2 x 50000 multiply-adds: kMinTaskSize there) goes 32 rows at a
// time through a destination of at most 32 rows, which Eigen never threads;
// smaller ones stay whole (in panels, N = 4 to 16: 1.2x slower per step).
template <class Dst, class Lhs, class Rhs>
void product_one_thread(Dst& dst, const Lhs& lhs, const Rhs& rhs, bool add) {
  if (double(lhs.rows()) * double(lhs.cols()) * double(rhs.cols()) < 1e5) {
    if (add)
      dst.noalias() += lhs * rhs;
    else
      dst.noalias() = lhs * rhs;
    return;
  }
  using Scalar = typename Lhs::Scalar;
  constexpr Eigen::Index rows = 32;
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor, rows, Eigen::Dynamic> panel;
  for (Eigen::Index r = 0; r < lhs.rows(); r += rows) {
    const Eigen::Index n = std::min(rows, lhs.rows() - r);
    panel.noalias() = lhs.middleRows(r, n) * rhs;
    if (add)
      dst.middleRows(r, n) += panel;
    else
      dst.middleRows(r, n) = panel;
  }
}

// The recurrence over steps [t0, t1) of u from the state x (updated in
// place), writing rows [t0, t1) of y (none when y is null: the state still
// advances). Blocks of steps: the input terms B u_t of a block in one product,
// then the states (the scan core for diagonal A, one matrix-vector product
// per step for dense A), then the outputs in one product.
template <class System, class Derived, class Y>
void run_steps(const System& sys, const Eigen::MatrixBase<Derived>& u, Eigen::Index t0,
               Eigen::Index t1, typename System::StateVector& x, Y* y) {
  using Scalar = typename System::Scalar;
  using States = Eigen::Matrix<Scalar, Eigen::Dynamic, System::StateSize,
                               System::StateSize == 1 ? Eigen::ColMajor : Eigen::RowMajor>;
  constexpr Eigen::Index block = 256;
  const Eigen::Index N = sys.state_size();
  States X;
  typename System::StateVector tmp(N);
  for (Eigen::Index s = t0; s < t1; s += block) {
    const Eigen::Index len = std::min(block, t1 - s);
    const auto ub = u.middleRows(s, len).template cast<Scalar>();
    X.resize(len, N);
    product_one_thread(X, ub, sys.B.transpose(), false);  // (len, P) -> (len, N): B u_t, then x_t
    if constexpr (System::IsDiagonal && has_simd<Scalar>::value) {
      linear_recurrence<Scalar>(std::size_t(len), std::size_t(N), {sys.A.data(), 0}, {X.data(), N},
                                x.data(), {X.data(), N}, 1);
    } else {
      for (Eigen::Index t = 0; t < len; ++t) {
        propagate(sys, x, tmp);
        x += X.row(t).transpose();
        X.row(t) = x.transpose();
      }
    }
    if (y) {
      auto yb = y->middleRows(s, len);
      product_one_thread(yb, X, sys.C.transpose(), false);
      product_one_thread(yb, ub, sys.D.transpose(), true);
    }
  }
}

// A^k by repeated squaring: O(N^3 log k).
template <class Matrix>
Matrix matrix_power(const Matrix& A, Eigen::Index k) {
  Matrix result = Matrix::Identity(A.rows(), A.cols()), base = A;
  for (; k > 0; k >>= 1) {
    if (k & 1) result = result * base;
    base = base * base;
  }
  return result;
}

}  // namespace detail

/// Runs the recurrence over all L rows of u (L x P), one step after another,
/// and returns y (L x Q). x: the initial state x_{-1} on entry, the final
/// state x_{L-1} on return. O(L N^2) for dense A, O(L N) for diagonal A
/// (through the SIMD scan core); beyond u and y it holds O(N) numbers per
/// step of one 256-step block, whatever L. Single-threaded and
/// deterministic; scan() is the multi-threaded evaluation.
/// Throws std::invalid_argument if sys's shapes disagree, u does not have P
/// columns or x does not have N entries (x is then unchanged).
template <class System, class Derived,
          detail::enable_if_discrete_t<System> = 0>
Eigen::Matrix<typename System::Scalar, Eigen::Dynamic, System::OutputSize>
recurrent(const System& sys, const Eigen::MatrixBase<Derived>& u,
          typename System::StateVector& x) {
  detail::check_input(sys, u, "ssm::recurrent");
  detail::check_state(sys, x, "ssm::recurrent");
  Eigen::Matrix<typename System::Scalar, Eigen::Dynamic, System::OutputSize> y(
      u.rows(), sys.output_size());
  detail::run_steps(sys, u, 0, u.rows(), x, &y);
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

/// The same outputs as recurrent(), computed in parallel over time with
/// `threads` threads (<= 0: OpenMP's maximum; 1 inside an enclosing parallel
/// region): a parallel scan, equal to the sequential result up to rounding
/// (tests/test_paths.cpp). With one thread or L < 4096 it is recurrent().
/// Throws as recurrent().
/// Diagonal A: the scan core over super-blocks of 2^16 steps, or 4096 per
/// thread where that is more (time-chunked or channel-parallel threads).
/// Dense A: the sequence is cut in one chunk per thread; thread 0 runs its
/// chunk from x_{-1} while each other thread reduces its chunk to its end
/// state from zero; the chunk boundaries then follow in order (x_in' =
/// A^len x_in + end) and the other threads rerun their chunks from their
/// true initial states. Thread 0 gets a longer chunk, since the others pass
/// over theirs twice.
/// Assumes a stable or modest A: A^len is formed explicitly.
template <class System, class Derived, detail::enable_if_discrete_t<System> = 0>
Eigen::Matrix<typename System::Scalar, Eigen::Dynamic, System::OutputSize> scan(
    const System& sys, const Eigen::MatrixBase<Derived>& u, typename System::StateVector& x,
    int threads = 0) {
  using Scalar = typename System::Scalar;
  using Y = Eigen::Matrix<Scalar, Eigen::Dynamic, System::OutputSize>;
  detail::check_input(sys, u, "ssm::scan");
  detail::check_state(sys, x, "ssm::scan");
  const Eigen::Index L = u.rows(), N = sys.state_size();
  const int nt = detail::resolve_threads(threads);
  Y y(L, sys.output_size());
  if (nt <= 1 || L < 4096) {
    detail::run_steps(sys, u, 0, L, x, &y);
    return y;
  }
  if constexpr (System::IsDiagonal && detail::has_simd<Scalar>::value) {
    using States = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    // the scan core splits time only from kMinStepsPerTimeChunk steps per thread
    const Eigen::Index super =
        std::max(Eigen::Index(1) << 16, Eigen::Index(nt) * Eigen::Index(detail::kMinStepsPerTimeChunk));
    States X;
    for (Eigen::Index s = 0; s < L; s += super) {
      const Eigen::Index len = std::min(super, L - s);
      const auto ub = u.middleRows(s, len).template cast<Scalar>();
      X.noalias() = ub * sys.B.transpose();
      linear_recurrence<Scalar>(std::size_t(len), std::size_t(N), {sys.A.data(), 0}, {X.data(), N},
                                x.data(), {X.data(), N}, nt);
      y.middleRows(s, len).noalias() = X * sys.C.transpose();
      y.middleRows(s, len).noalias() += ub * sys.D.transpose();
    }
  } else {
    using State = typename System::StateVector;
    using Dense = Eigen::Matrix<Scalar, System::StateSize, System::StateSize>;
    const Dense A = [&] {
      if constexpr (System::IsDiagonal) return Dense(sys.A.asDiagonal());
      else return Dense(sys.A);
    }();
    // chunk j starts at L (2j + 1) / (2 nt + 1) for j > 0: thread 0 gets 3 parts, the others 2
    auto start = [&](Eigen::Index j) {
      return j == 0 ? 0 : std::min(L, L * (2 * j + 1) / (2 * nt + 1));
    };
    std::vector<State> ends(std::size_t(nt), State::Zero(N));
    // the pieces between the barriers (single's closing one included) run
    // through errors, so that every thread reaches each barrier
    detail::ParallelErrors errors;
    SSM_OMP(parallel num_threads(nt))
    {
      // chunks j, j + team, ...: all of them even if OpenMP gives fewer threads
      const int first = detail::thread_index(), stride = detail::team_size();
      errors.run([&] {
        for (int j = first; j < nt; j += stride) {
          if (j == 0)
            detail::run_steps(sys, u, 0, start(1), x, &y);
          else
            detail::run_steps(sys, u, start(j), start(j + 1), ends[std::size_t(j)],
                              static_cast<Y*>(nullptr));
        }
      });
      SSM_OMP(barrier)
      SSM_OMP(single)
      errors.run([&] {
        // ends[i] becomes chunk i's true initial state, x the final state
        State in = x;
        for (int i = 1; i < nt; ++i) {
          std::swap(in, ends[std::size_t(i)]);
          const State& init = ends[std::size_t(i)];
          if (i + 1 < nt)
            in = detail::matrix_power(A, start(i + 1) - start(i)) * init + in;
          else
            x = detail::matrix_power(A, L - start(i)) * init + in;
        }
      });
      errors.run([&] {
        for (int j = first == 0 ? stride : first; j < nt; j += stride) {
          State xj = ends[std::size_t(j)];
          detail::run_steps(sys, u, start(j), start(j + 1), xj, &y);
        }
      });
    }
    errors.rethrow();
  }
  return y;
}

/// scan() from the zero state.
template <class System, class Derived, detail::enable_if_discrete_t<System> = 0>
Eigen::Matrix<typename System::Scalar, Eigen::Dynamic, System::OutputSize> scan(
    const System& sys, const Eigen::MatrixBase<Derived>& u, int threads = 0) {
  typename System::StateVector x = System::StateVector::Zero(sys.state_size());
  return scan(sys, u, x, threads);
}

}  // namespace ssm
