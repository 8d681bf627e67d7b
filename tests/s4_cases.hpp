// What the HiPPO, S4 and S4D tests share: the four measures by name,
// random layers, and conversions for the naive oracles (reference/s4_naive.hpp).
#pragma once

#include <ssm/hippo.hpp>
#include <ssm/s4d.hpp>

#include "util.hpp"

#include <algorithm>
#include <cmath>
#include <complex>
#include <type_traits>
#include <vector>

namespace test {

using Eigen::Index;
using cd = std::complex<double>;
template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;

enum class Measure { legs, legt, lagt, fout };
inline const char* const measure_names[] = {"legs", "legt", "lagt", "fout"};

inline ssm::hippo::Transition<double> transition(Measure m, Index N) {
  switch (m) {
    case Measure::legs: return ssm::hippo::legs<double>(N);
    case Measure::legt: return ssm::hippo::legt<double>(N);
    case Measure::lagt: return ssm::hippo::lagt<double>(N);
    default: return ssm::hippo::fout<double>(N);
  }
}

template <class Row>
std::vector<cd> to_vector(const Row& row) {
  std::vector<cd> v(std::size_t(row.size()));
  for (Index i = 0; i < row.size(); ++i) v[std::size_t(i)] = cd(row(i));
  return v;
}

template <class T>
double tolerance(double float_tol, double double_tol) {
  return std::is_same<T, float>::value ? float_tol : double_tol;
}

// A layer with one of the four initializations, or random stable modes
// (Re A in [-1, -0.1], Im A in [-10, 10], B complex).
template <class T>
ssm::S4D<T> random_s4d(Index H, Index N, int kind, ssm::Method method) {
  if (kind < 4)
    return ssm::make_s4d<T>(H, N, ssm::S4DInit(kind), test::rng(), 1e-3, 1e-1, method);
  auto layer = ssm::make_s4d<T>(H, N, ssm::S4DInit::lin, test::rng(), 1e-3, 1e-1, method);
  for (Index h = 0; h < H; ++h)
    for (Index n = 0; n < N; ++n) {
      const double u = test::uniform<double>();
      layer.A(h, n) = {T(-0.55 + 0.45 * u), T(10 * test::uniform<double>())};
      layer.B(h, n) = test::uniform<std::complex<T>>();
    }
  return layer;
}



// max |a - b| / scale: the error against a bound on the magnitude of the
// terms summed rather than on the result, which 2N terms of either sign can
// cancel to near zero (one output, L = 1, H = 1), where rel_err would blow
// up the same rounding. 0 for empty operands.
template <class A, class B>
double err_over(const A& a, const B& b, double scale) {
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  double diff = 0;
  for (Index j = 0; j < b.cols(); ++j)
    for (Index i = 0; i < b.rows(); ++i) diff = std::max(diff, std::abs(widen(a(i, j)) - widen(b(i, j))));
  return diff / scale;
}

// Elementwise |v| of a row of complex values, as the naive oracles take them.
template <class Row>
std::vector<cd> abs_vector(const Row& row) {
  std::vector<cd> v(std::size_t(row.size()));
  for (Index i = 0; i < row.size(); ++i) v[std::size_t(i)] = std::abs(cd(row(i)));
  return v;
}

}  // namespace test
