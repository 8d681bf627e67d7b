// Helpers shared by the tests: seeded random inputs and error measures.
#pragma once

#include <catch2/catch.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <complex>
#include <random>
#include <type_traits>

namespace test {

template <class T>
struct is_complex : std::false_type {};
template <class T>
struct is_complex<std::complex<T>> : std::true_type {};

template <class T>
using real_t = typename Eigen::NumTraits<T>::Real;

// A generator seeded from Catch's --rng-seed (the tests run with
// `--rng-seed time`; a failure prints the seed that replays it).
inline std::mt19937& rng() {
  static std::mt19937 gen(Catch::rngSeed());
  return gen;
}

// Uniform in [-1, 1) (each part, for complex T).
template <class T>
T uniform() {
  std::uniform_real_distribution<double> d(-1.0, 1.0);
  if constexpr (is_complex<T>::value)
    return T(real_t<T>(d(rng())), real_t<T>(d(rng())));
  else
    return T(d(rng()));
}

template <class T>
Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> random_matrix(Eigen::Index rows,
                                                               Eigen::Index cols) {
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> m(rows, cols);
  for (Eigen::Index j = 0; j < cols; ++j)
    for (Eigen::Index i = 0; i < rows; ++i) m(i, j) = uniform<T>();
  return m;
}

// x in double or complex<double>, for comparing across precisions.
template <class T>
auto widen(const T& x) {
  if constexpr (is_complex<T>::value)
    return std::complex<double>(x);
  else
    return double(x);
}

// max |b| over every entry.
template <class B>
double max_abs(const B& b) {
  double m = 0;
  for (Eigen::Index j = 0; j < b.cols(); ++j)
    for (Eigen::Index i = 0; i < b.rows(); ++i) m = std::max(m, double(std::abs(widen(b(i, j)))));
  return m;
}

// max |a - b| over every entry.
template <class A, class B>
double abs_err(const A& a, const B& b) {
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  double diff = 0;
  for (Eigen::Index j = 0; j < b.cols(); ++j)
    for (Eigen::Index i = 0; i < b.rows(); ++i)
      diff = std::max(diff, double(std::abs(widen(a(i, j)) - widen(b(i, j)))));
  return diff;
}

// max |a - b| / max |b|: the error relative to the reference's scale, which
// is what floating-point evaluation can promise for every entry at once.
template <class A, class B>
double rel_err(const A& a, const B& b) {
  const double diff = abs_err(a, b), scale = max_abs(b);
  return scale == 0 ? diff : diff / scale;
}

}  // namespace test
