// Naive double-precision oracles for HiPPO, S4D and S4, written with plain
// loops and std::vector so they share no code with the library:
//   - Gauss-Legendre quadrature and the HiPPO projections c(t) = <u, g_n>
//     of an input history, from the definitions of the measures;
//   - the diagonal SSM (kernel by repeated products, and the recurrence);
//   - the dense S4 system: A = diag(Lf) - Pf Pf^* materialized, discretized by
//     the bilinear transform with Gauss-Jordan elimination, then powers.
#pragma once

#include "naive.hpp"

#include <cmath>
#include <complex>
#include <cstddef>
#include <functional>
#include <utility>
#include <vector>

namespace naive {

using cd = std::complex<double>;
const double pi = 3.14159265358979323846;

// P_n(x) and L_n(x) by their three-term recurrences.
inline double legendre(int n, double x) {
  double p0 = 1, p1 = x;
  if (n == 0) return p0;
  for (int k = 1; k < n; ++k) {
    const double p2 = ((2 * k + 1) * x * p1 - k * p0) / (k + 1);
    p0 = p1;
    p1 = p2;
  }
  return p1;
}
inline double laguerre(int n, double x) {
  double p0 = 1, p1 = 1 - x;
  if (n == 0) return p0;
  for (int k = 1; k < n; ++k) {
    const double p2 = ((2 * k + 1 - x) * p1 - k * p0) / (k + 1);
    p0 = p1;
    p1 = p2;
  }
  return p1;
}

// int_a^b f by `panels` panels of the 20-point Gauss-Legendre rule, whose
// nodes come from Newton's method on P_20.
inline double integrate(const std::function<double(double)>& f, double a, double b,
                        int panels = 8) {
  static const std::vector<std::pair<double, double>> rule = [] {
    const int n = 20;
    std::vector<std::pair<double, double>> r;
    for (int i = 0; i < n; ++i) {
      double x = std::cos(pi * (i + 0.75) / (n + 0.5)), dp = 0;
      for (int it = 0; it < 100; ++it) {
        const double p = legendre(n, x), q = legendre(n - 1, x);
        dp = n * (x * p - q) / (x * x - 1);
        const double dx = p / dp;
        x -= dx;
        if (std::abs(dx) < 1e-16) break;
      }
      const double p = legendre(n, x), q = legendre(n - 1, x);
      dp = n * (x * p - q) / (x * x - 1);
      r.emplace_back(x, 2 / ((1 - x * x) * dp * dp));
    }
    return r;
  }();
  double sum = 0;
  const double h = (b - a) / panels;
  for (int k = 0; k < panels; ++k)
    for (const auto& [x, w] : rule) sum += w * h / 2 * f(a + h * (k + (x + 1) / 2));
  return sum;
}

// The coefficients of the input history u(s), s <= t, in each measure's
// basis, as hippo.hpp documents them.
inline std::vector<double> project_legs(const std::function<double(double)>& u, double t,
                                        int N) {
  std::vector<double> c(N);
  for (int n = 0; n < N; ++n)
    c[n] = integrate([&](double s) { return u(s) * std::sqrt(2 * n + 1.0) * legendre(n, 2 * s / t - 1) / t; },
                     0, t);
  return c;
}
inline std::vector<double> project_legt(const std::function<double(double)>& u, double t,
                                        int N) {
  std::vector<double> c(N);
  for (int n = 0; n < N; ++n)
    c[n] = integrate([&](double s) { return u(s) * std::sqrt(2 * n + 1.0) * legendre(n, 1 + (s - t)) / 2; },
                     t - 2, t);
  return c;
}
inline std::vector<double> project_lagt(const std::function<double(double)>& u, double t,
                                        int N) {
  std::vector<double> c(N);
  for (int n = 0; n < N; ++n)  // e^{-tau/2} tau^k is below 1e-25 past tau = 160
    c[n] = integrate([&](double tau) { return u(t - tau) * laguerre(n, tau) * std::exp(-tau / 2); },
                     0, 160, 64);
  return c;
}
inline double fourier_basis(int n, double tau) {
  const int k = n / 2;
  if (n == 0) return 1;
  return std::sqrt(2.0) * (n % 2 == 0 ? std::cos(pi * k * tau) : std::sin(pi * k * tau));
}
inline std::vector<double> project_fout(const std::function<double(double)>& u, double t,
                                        int N) {
  std::vector<double> c(N);
  for (int n = 0; n < N; ++n)
    c[n] = integrate([&](double tau) { return u(t - tau) * fourier_basis(n, tau) / 2; }, 0, 2);
  return c;
}

// K_l = sum_n 2 Re(C_n dB_n dA_n^l), l < L, by repeated products.
inline std::vector<double> diagonal_kernel(const std::vector<cd>& dA, const std::vector<cd>& dB,
                                           const std::vector<cd>& C, std::size_t L) {
  std::vector<double> K(L, 0.0);
  for (std::size_t n = 0; n < dA.size(); ++n) {
    cd p = C[n] * dB[n];
    for (std::size_t l = 0; l < L; ++l) {
      K[l] += 2 * p.real();
      p *= dA[n];
    }
  }
  return K;
}

// y_t = 2 Re(C x_t) + D u_t, x_t = dA x_{t-1} + dB u_t, from state x (updated).
inline std::vector<double> diagonal_recurrence(const std::vector<cd>& dA, const std::vector<cd>& dB,
                                               const std::vector<cd>& C, double D,
                                               const std::vector<double>& u, std::vector<cd>& x) {
  std::vector<double> y(u.size());
  for (std::size_t t = 0; t < u.size(); ++t) {
    double s = D * u[t];
    for (std::size_t n = 0; n < dA.size(); ++n) {
      x[n] = dA[n] * x[n] + dB[n] * u[t];
      s += 2 * (C[n] * x[n]).real();
    }
    y[t] = s;
  }
  return y;
}

// The inverse of a square complex matrix by Gauss-Jordan with partial pivoting.
inline Mat<cd> inverse(Mat<cd> a) {
  const std::size_t n = a.rows;
  Mat<cd> inv(n, n);
  for (std::size_t i = 0; i < n; ++i) inv(i, i) = 1;
  for (std::size_t col = 0; col < n; ++col) {
    std::size_t piv = col;
    for (std::size_t r = col + 1; r < n; ++r)
      if (std::abs(a(r, col)) > std::abs(a(piv, col))) piv = r;
    for (std::size_t j = 0; j < n; ++j) {
      std::swap(a(col, j), a(piv, j));
      std::swap(inv(col, j), inv(piv, j));
    }
    const cd d = a(col, col);
    for (std::size_t j = 0; j < n; ++j) {
      a(col, j) /= d;
      inv(col, j) /= d;
    }
    for (std::size_t r = 0; r < n; ++r) {
      if (r == col) continue;
      const cd f = a(r, col);
      for (std::size_t j = 0; j < n; ++j) {
        a(r, j) -= f * a(col, j);
        inv(r, j) -= f * inv(col, j);
      }
    }
  }
  return inv;
}

// The kernel of one S4 channel from its dense paired system: lambda, B, C: M;
// P: R vectors of M; K_l = Re(Cf dA^l dB) for l < L with bilinear dA, dB.
inline std::vector<double> s4_dense_kernel(const std::vector<cd>& lambda,
                                           const std::vector<std::vector<cd>>& P,
                                           const std::vector<cd>& B, const std::vector<cd>& C,
                                           double dt, std::size_t L) {
  const std::size_t M = lambda.size(), N = 2 * M;
  auto full = [M](const std::vector<cd>& v, std::size_t i) {
    return i < M ? v[i] : std::conj(v[i - M]);
  };
  Mat<cd> minus(N, N), plus(N, N);  // I - dt/2 A and I + dt/2 A
  for (std::size_t i = 0; i < N; ++i)
    for (std::size_t j = 0; j < N; ++j) {
      cd a = i == j ? full(lambda, i) : cd(0);
      for (const auto& p : P) a -= full(p, i) * std::conj(full(p, j));
      minus(i, j) = (i == j ? 1.0 : 0.0) - dt / 2 * a;
      plus(i, j) = (i == j ? 1.0 : 0.0) + dt / 2 * a;
    }
  const Mat<cd> inv = inverse(minus), dA = matmul(inv, plus);
  Mat<cd> x(N, 1), b(N, 1);
  for (std::size_t i = 0; i < N; ++i) b(i, 0) = dt * full(B, i);
  x = matmul(inv, b);
  std::vector<double> K(L);
  for (std::size_t l = 0; l < L; ++l) {
    cd s = 0;
    for (std::size_t i = 0; i < N; ++i) s += full(C, i) * x(i, 0);
    K[l] = s.real();
    x = matmul(dA, x);
  }
  return K;
}

}  // namespace naive
