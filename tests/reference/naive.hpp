// Naive oracles in double (or complex<double>) precision, written with plain
// loops and std::vector so they share no code with the library: the test
// suite's independent reference for the recurrence x_t = A x_{t-1} + B u_t,
// y_t = C x_t + D u_t.
#pragma once

#include <complex>
#include <cstddef>
#include <vector>

namespace naive {

// Row-major dense matrix of T.
template <class T>
struct Mat {
  std::size_t rows = 0, cols = 0;
  std::vector<T> v;
  Mat() = default;
  Mat(std::size_t r, std::size_t c) : rows(r), cols(c), v(r * c, T(0)) {}
  T& operator()(std::size_t i, std::size_t j) { return v[i * cols + j]; }
  const T& operator()(std::size_t i, std::size_t j) const { return v[i * cols + j]; }
};

// Copies any Eigen-like matrix (with rows(), cols(), operator()) into Mat<T>.
template <class T, class M>
Mat<T> from(const M& m) {
  Mat<T> out(std::size_t(m.rows()), std::size_t(m.cols()));
  for (std::size_t i = 0; i < out.rows; ++i)
    for (std::size_t j = 0; j < out.cols; ++j) out(i, j) = T(m(long(i), long(j)));
  return out;
}

template <class T>
Mat<T> matmul(const Mat<T>& a, const Mat<T>& b) {
  Mat<T> c(a.rows, b.cols);
  for (std::size_t i = 0; i < a.rows; ++i)
    for (std::size_t j = 0; j < b.cols; ++j) {
      T s(0);
      for (std::size_t k = 0; k < a.cols; ++k) s += a(i, k) * b(k, j);
      c(i, j) = s;
    }
  return c;
}

// y (L x Q) of the recurrence from state x (N), which ends as x_{L-1}.
// A is N x N; u is L x P.
template <class T>
Mat<T> recurrent(const Mat<T>& A, const Mat<T>& B, const Mat<T>& C,
                 const Mat<T>& D, const Mat<T>& u, std::vector<T>& x) {
  const std::size_t N = A.rows, P = B.cols, Q = C.rows, L = u.rows;
  Mat<T> y(L, Q);
  std::vector<T> next(N);
  for (std::size_t t = 0; t < L; ++t) {
    for (std::size_t i = 0; i < N; ++i) {
      T s(0);
      for (std::size_t j = 0; j < N; ++j) s += A(i, j) * x[j];
      for (std::size_t p = 0; p < P; ++p) s += B(i, p) * u(t, p);
      next[i] = s;
    }
    x = next;
    for (std::size_t q = 0; q < Q; ++q) {
      T s(0);
      for (std::size_t i = 0; i < N; ++i) s += C(q, i) * x[i];
      for (std::size_t p = 0; p < P; ++p) s += D(q, p) * u(t, p);
      y(t, q) = s;
    }
  }
  return y;
}

// Markov parameters: row k of the L x (Q P) result is C A^k B, row-major.
template <class T>
Mat<T> kernel(const Mat<T>& A, const Mat<T>& B, const Mat<T>& C, std::size_t L) {
  const std::size_t P = B.cols, Q = C.rows;
  Mat<T> K(L, Q * P), AkB = B;
  for (std::size_t k = 0; k < L; ++k) {
    const Mat<T> CAkB = matmul(C, AkB);
    for (std::size_t q = 0; q < Q; ++q)
      for (std::size_t p = 0; p < P; ++p) K(k, q * P + p) = CAkB(q, p);
    AkB = matmul(A, AkB);
  }
  return K;
}

}  // namespace naive
