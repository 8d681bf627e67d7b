// The S4D layer (Gu, Gupta, Goel & Re 2022, "On the Parameterization and
// Initialization of Diagonal State Space Models"): H independent channels,
// each a diagonal SSM of N complex modes read out as a real signal,
//   x_t = dA .* x_{t-1} + dB u_t,   y_t = 2 Re(C x_t) + D u_t,
// with dA, dB the discretization of (A, B) at the channel's own step
// dt = exp(log_dt). One parameter type, evaluated three ways with the same
// answer:
//   - convolve: the kernel K_l = 2 Re(sum_n C_n dB_n dA_n^l) through a
//     Vandermonde product, then an FFT convolution: O(H N L + H L log L);
//   - recurrent: the recurrence over a chunk of steps, SIMD across channels,
//     O(H N L) time and O(H N) state whatever the length (chunks stream);
//   - step: one step, for token-by-token generation.
// Inputs and outputs hold one row per step and one column per channel (L x H).
#pragma once

#include <ssm/detail/fft_fast.hpp>
#include <ssm/detail/omp.hpp>
#include <ssm/detail/s4d_kernels.hpp>
#include <ssm/discretize.hpp>
#include <ssm/hippo.hpp>
#include <ssm/system.hpp>

#include <Eigen/Core>
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstddef>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace ssm {

/// S4D parameters: H channels of N complex modes. Scalar (float or double) is
/// the type of inputs and outputs.
///   log_dt: H, the step of channel h is exp(log_dt(h));
///   A: H x N, continuous eigenvalues (Re < 0 for a stable layer; S4D trains
///      A = -exp(log_A_real) + i A_imag, which keeps it so);
///   B, C: H x N;  D: H, the skip connection.
///   method: Method::zoh (dA = exp(dt A), dB = (exp(dt A) - 1) / A * B) or
///      Method::bilinear, as S4 (dA = (1 + dt A/2) / (1 - dt A/2),
///      dB = dt B / (1 - dt A/2); C and D unchanged, unlike scipy's).
template <class Scalar>
struct S4D {
  using Real = Scalar;                                                  ///< float or double
  using Complex = std::complex<Scalar>;                                 ///< the modes' scalar
  using Vector = Eigen::Matrix<Real, Eigen::Dynamic, 1>;                ///< one value per channel
  using Modes = Eigen::Matrix<Complex, Eigen::Dynamic, Eigen::Dynamic>; ///< H x N: channels x modes

  Vector log_dt;                ///< H
  Modes A, B, C;                ///< H x N each
  Vector D;                     ///< H
  Method method = Method::zoh;  ///< zoh or bilinear (see above)

  S4D() = default;  ///< no channels
  /// H channels of N modes, all zero (dt = 1).
  S4D(Eigen::Index H, Eigen::Index N)
      : log_dt(Vector::Zero(H)), A(Modes::Zero(H, N)), B(Modes::Zero(H, N)),
        C(Modes::Zero(H, N)), D(Vector::Zero(H)) {}

  Eigen::Index channels() const { return A.rows(); }    ///< H
  Eigen::Index state_size() const { return A.cols(); }  ///< N, modes per channel
};

/// The discretized layer: x_t = dA .* x_{t-1} + dB u_t, y_t = 2 Re(C x_t) + D u_t
/// per channel. dA, dB, C: H x N; D: H.
template <class Scalar>
struct S4DDiscrete {
  using Real = Scalar;                   ///< float or double
  using Complex = std::complex<Scalar>;  ///< the modes' scalar
  Eigen::Matrix<Complex, Eigen::Dynamic, Eigen::Dynamic> dA, dB, C;  ///< H x N each
  Eigen::Matrix<Real, Eigen::Dynamic, 1> D;                          ///< H

  Eigen::Index channels() const { return dA.rows(); }    ///< H
  Eigen::Index state_size() const { return dA.cols(); }  ///< N, modes per channel
};

/// The recurrent state of an S4D layer: H x N complex, zero at the start.
template <class Scalar>
using S4DState = Eigen::Matrix<std::complex<Scalar>, Eigen::Dynamic, Eigen::Dynamic>;

namespace detail {

template <class Layer>
void check_layer_sizes(const Layer& layer, Eigen::Index H, Eigen::Index N, const char* where) {
  auto fail = [&](const std::string& what) {
    throw std::invalid_argument(std::string(where) + ": " + what);
  };
  if (H <= 0 || N <= 0)
    fail("S4D needs H > 0 channels and N > 0 states, got H = " + std::to_string(H) +
         ", N = " + std::to_string(N));
  auto check = [&](const auto& m, const char* name) {
    if (m.rows() != H || m.cols() != N)
      fail(std::string(name) + " must be " + shape(H, N) + " (H x N), got " +
           shape(m.rows(), m.cols()));
  };
  auto check_vector = [&](const auto& v, const char* name) {
    if (v.size() != H)
      fail(std::string(name) + " must have H = " + std::to_string(H) + " entries, got " +
           std::to_string(v.size()));
  };
  if constexpr (std::is_same<Layer, S4DDiscrete<typename Layer::Real>>::value) {
    check(layer.dB, "dB");
    check(layer.C, "C");
  } else {
    check(layer.B, "B");
    check(layer.C, "C");
    check_vector(layer.log_dt, "log_dt");
  }
  check_vector(layer.D, "D");
}

template <class Scalar>
void check_layer(const S4D<Scalar>& layer, const char* where) {
  check_layer_sizes(layer, layer.A.rows(), layer.A.cols(), where);
}
template <class Scalar>
void check_layer(const S4DDiscrete<Scalar>& layer, const char* where) {
  check_layer_sizes(layer, layer.dA.rows(), layer.dA.cols(), where);
}

template <class Derived>
void check_sequence(const Eigen::MatrixBase<Derived>& u, Eigen::Index H, const char* where) {
  if (u.cols() != H)
    throw std::invalid_argument(std::string(where) + ": u must be L x " + std::to_string(H) +
                                " (one row per step, one column per channel), got " +
                                shape(u.rows(), u.cols()));
}

template <class Scalar>
void check_s4d_state(const S4DState<Scalar>& x, Eigen::Index H, Eigen::Index N,
                     const char* where) {
  if (x.rows() != H || x.cols() != N)
    throw std::invalid_argument(std::string(where) + ": the state must be " + shape(H, N) +
                                " (H x N), got " + shape(x.rows(), x.cols()));
}

}  // namespace detail

/// The discretization of every channel, computed in double and rounded once.
/// Throws std::invalid_argument for H or N = 0, bad shapes (B, C: H x N;
/// log_dt, D: H), a non-finite log_dt, a method other than zoh and
/// bilinear, or |1 - dt A/2| <= epsilon under bilinear.
template <class Scalar>
S4DDiscrete<Scalar> discretize(const S4D<Scalar>& layer) {
  using Complex = std::complex<double>;
  const char* where = "ssm::discretize (S4D)";
  detail::check_layer(layer, where);
  if (layer.method != Method::zoh && layer.method != Method::bilinear)
    throw std::invalid_argument(std::string(where) +
                                ": the method must be Method::zoh or Method::bilinear");
  if (!layer.log_dt.allFinite())
    throw std::invalid_argument(std::string(where) + ": log_dt has a non-finite entry");
  const Eigen::Index H = layer.channels(), N = layer.state_size();
  S4DDiscrete<Scalar> d;
  d.dA.resize(H, N);
  d.dB.resize(H, N);
  d.C = layer.C;
  d.D = layer.D;
  for (Eigen::Index h = 0; h < H; ++h) {
    const double dt = std::exp(double(layer.log_dt(h)));
    for (Eigen::Index n = 0; n < N; ++n) {
      const Complex z = dt * Complex(layer.A(h, n)), b = Complex(layer.B(h, n));
      Complex dA, dB;
      if (layer.method == Method::zoh) {
        dA = std::exp(z);
        dB = dt * detail::phi1(z) * b;  // (e^z - 1) / A = dt (e^z - 1) / z
      } else {
        const Complex den = 1.0 - z / 2.0;
        if (std::abs(den) <= std::numeric_limits<double>::epsilon())
          throw std::invalid_argument(std::string(where) +
                                      ": 1 - dt A / 2 = 0 under bilinear, channel " +
                                      std::to_string(h) + ", state " + std::to_string(n));
        dA = (1.0 + z / 2.0) / den;
        dB = dt * b / den;
      }
      d.dA(h, n) = std::complex<Scalar>(dA);
      d.dB(h, n) = std::complex<Scalar>(dB);
    }
  }
  return d;
}

/// The SSM convolution kernel K (L x H): K(l, h) = 2 Re(sum_n C dB dA^l) of
/// channel h, l = 0 .. L-1 (D apart), as a Vandermonde product: SIMD across
/// channels, powers restarted every 64 lags from double precision, so the
/// float error does not grow with L (tested to 1e-5 of 2 sum_n |C dB|, the
/// largest possible term, up to L = 5000: tests/test_s4d.cpp). O(H N L);
/// threads (OpenMP's maximum) over blocks of channels. Throws
/// std::invalid_argument for H or N = 0, mismatched shapes, or L < 0.
template <class Scalar, class Arch = xsimd::default_arch>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> kernel(const S4DDiscrete<Scalar>& d,
                                                             Eigen::Index L) {
  using T = Scalar;
  using CD = std::complex<double>;
  detail::check_layer(d, "ssm::kernel (S4D)");
  if (L < 0)
    throw std::invalid_argument("ssm::kernel (S4D): L must be >= 0, got " + std::to_string(L));
  const std::size_t H = std::size_t(d.channels()), N = std::size_t(d.state_size());
  constexpr std::size_t W = xsimd::batch<T, Arch>::size, chunk = 64;  // a power of two
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic> K(L, Eigen::Index(H));
  detail::PackedModes<T> p(H, N, W);
  for (std::size_t h = 0; h < H; ++h)
    for (std::size_t n = 0; n < N; ++n)
      p.put(p.ar, p.ai, p.index(h, n), d.dA(Eigen::Index(h), Eigen::Index(n)));
  [[maybe_unused]] const int threads = detail::resolve_threads(0);
  detail::ParallelErrors errors;
  SSM_OMP(parallel for num_threads(threads) schedule(dynamic))
  for (std::ptrdiff_t b = 0; b < std::ptrdiff_t(p.blocks); ++b)
    errors.run([&] {
      // w z^l0 and z^64 in double, per (state, lane): the start of each chunk
      std::vector<CD> start(N * W), z_chunk(N * W);
      std::vector<T> pr(N * W), pi(N * W), Kb(chunk * W);
      for (std::size_t n = 0; n < N; ++n)
        for (std::size_t j = 0; j < W; ++j) {
          const std::size_t h = std::size_t(b) * W + j;
          if (h >= H) continue;
          const auto hi = Eigen::Index(h), ni = Eigen::Index(n);
          const CD z = CD(d.dA(hi, ni));
          start[n * W + j] = 2.0 * CD(d.C(hi, ni)) * CD(d.dB(hi, ni));
          z_chunk[n * W + j] = z;
          for (std::size_t k = 1; k < chunk; k *= 2) z_chunk[n * W + j] *= z_chunk[n * W + j];
        }
      for (std::size_t l0 = 0; l0 < std::size_t(L); l0 += chunk) {
        const std::size_t steps = std::min(chunk, std::size_t(L) - l0);
        for (std::size_t i = 0; i < N * W; ++i) {
          pr[i] = T(start[i].real());
          pi[i] = T(start[i].imag());
          start[i] *= z_chunk[i];
        }
        std::fill(Kb.begin(), Kb.end(), T(0));
        detail::vandermonde_block<Arch>(p, std::size_t(b), pr.data(), pi.data(), Kb.data(), steps);
        for (std::size_t j = 0; j < W && std::size_t(b) * W + j < H; ++j)
          for (std::size_t t = 0; t < steps; ++t)
            K(Eigen::Index(l0 + t), Eigen::Index(std::size_t(b) * W + j)) = Kb[t * W + j];
      }
    });
  errors.rethrow();
  return K;
}

/// kernel(discretize(layer), L); throws as both.
template <class Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> kernel(const S4D<Scalar>& layer,
                                                             Eigen::Index L) {
  return kernel(discretize(layer), L);
}

namespace detail {

// y(:, h) = K(:, h) * u(:, h) (causal) + D(h) u(:, h) for every channel
// (K, u: L x H), by real FFTs of length 2^ceil(log2(2L - 1)) (detail/fft_fast.hpp),
// W channels per SIMD batch; threads over blocks of W channels.
template <class Real, class Arch = xsimd::default_arch>
Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic> convolve_channels(
    const Eigen::Ref<const Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic>>& K,
    const Eigen::Ref<const Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic>>& u,
    const Eigen::Matrix<Real, Eigen::Dynamic, 1>& D) {
  using Buffer = std::vector<Real, xsimd::aligned_allocator<Real>>;
  constexpr std::size_t W = xsimd::batch<Real, Arch>::size;
  const std::size_t L = std::size_t(u.rows()), H = std::size_t(u.cols());
  Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic> y(u.rows(), u.cols());
  if (L == 0) return y;
  const RealFftPlan<Real> plan(L);
  const std::size_t m = plan.m, blocks = (H + W - 1) / W;
  [[maybe_unused]] const int threads = resolve_threads(0);
  ParallelErrors errors;
  SSM_OMP(parallel num_threads(threads))
  {
    Buffer zr, zi, qr, qi;
    errors.run([&] {
      zr.resize(m * W);
      zi.resize(m * W);
      qr.resize(m * W);
      qi.resize(m * W);
    });
    const Lanes<Arch, Real> Z{zr.data(), zi.data()}, Q{qr.data(), qi.data()};
    // (L, lanes) columns -> z_j = x_2j + i x_2j+1, lane-interleaved, zero-padded;
    // in tiles of 64 steps, so the lane-strided writes stay in cache
    constexpr std::size_t tile = 64;
    auto pack = [&](const auto& x, std::size_t h0, std::size_t lanes, Buffer& re, Buffer& im) {
      std::fill(re.begin(), re.end(), Real(0));
      std::fill(im.begin(), im.end(), Real(0));
      for (std::size_t t0 = 0; t0 < L; t0 += tile)
        for (std::size_t c = 0; c < lanes; ++c)
          for (std::size_t t = t0; t < std::min(L, t0 + tile); ++t)
            (t % 2 ? im : re)[t / 2 * W + c] = x(Eigen::Index(t), Eigen::Index(h0 + c));
    };
    SSM_OMP(for schedule(dynamic))
    for (std::ptrdiff_t b = 0; b < std::ptrdiff_t(blocks); ++b)
      errors.run([&] {  // skipped where a thread's buffers failed
        const std::size_t h0 = std::size_t(b) * W, lanes = std::min(W, H - h0);
        pack(u, h0, lanes, zr, zi);
        pack(K, h0, lanes, qr, qi);
        fft<true>(plan, Z, m);
        fft<true>(plan, Q, m);
        multiply_spectra(plan, Z, Q);
        fft<false>(plan, Z, m);
        for (std::size_t t0 = 0; t0 < L; t0 += tile)
          for (std::size_t c = 0; c < lanes; ++c) {
            const auto h = Eigen::Index(h0 + c);
            for (std::size_t t = t0; t < std::min(L, t0 + tile); ++t)
              y(Eigen::Index(t), h) = (t % 2 ? zi : zr)[t / 2 * W + c] + D(h) * u(Eigen::Index(t), h);
          }
      });
  }
  errors.rethrow();
  return y;
}

}  // namespace detail

/// Convolution mode: y = K * u + D u per channel, K = kernel(d, L), through
/// FFTs. u: L x H (one row per step), from the zero state; returns L x H.
/// Equals recurrent(d, u) to 1e-4 relative in float, 1e-10 in double
/// (tests/test_s4d.cpp). O(H N L + H L log L); threads (OpenMP's maximum)
/// over blocks of channels. Throws std::invalid_argument as kernel(), or if
/// u does not have H columns.
template <class Scalar, class Derived>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> convolve(
    const S4DDiscrete<Scalar>& d, const Eigen::MatrixBase<Derived>& u) {
  using Mat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  detail::check_layer(d, "ssm::convolve (S4D)");
  detail::check_sequence(u, d.channels(), "ssm::convolve (S4D)");
  const Eigen::Ref<const Mat> uc(u.template cast<Scalar>());
  return detail::convolve_channels<Scalar>(kernel(d, uc.rows()), uc, d.D);
}

/// convolve(discretize(layer), u); throws as both.
template <class Scalar, class Derived>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> convolve(
    const S4D<Scalar>& layer, const Eigen::MatrixBase<Derived>& u) {
  return convolve(discretize(layer), u);
}

/// Recurrent mode over the L rows of u (L x H), from state x (H x N), which
/// ends as the state after the last step: calling it on consecutive chunks
/// of a sequence gives the outputs of the whole. Lanes of a SIMD register
/// hold channels, 4 states of a block of channels stay in registers over 128
/// steps; threads (OpenMP's maximum; 1 inside a parallel region) take
/// blocks of channels. Memory beyond u and y: O(H N). Throws
/// std::invalid_argument for H or N = 0, mismatched shapes, u without H
/// columns, or x not H x N.
template <class Scalar, class Derived, class Arch = xsimd::default_arch>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> recurrent(
    const S4DDiscrete<Scalar>& d, const Eigen::MatrixBase<Derived>& u, S4DState<Scalar>& x) {
  using T = Scalar;
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
  const char* where = "ssm::recurrent (S4D)";
  detail::check_layer(d, where);
  detail::check_sequence(u, d.channels(), where);
  detail::check_s4d_state(x, d.channels(), d.state_size(), where);
  const Eigen::Ref<const Mat> uc(u.template cast<T>());
  const std::size_t H = std::size_t(d.channels()), N = std::size_t(d.state_size()),
                    L = std::size_t(uc.rows());
  constexpr std::size_t W = xsimd::batch<T, Arch>::size, chunk = 128;
  Mat y(uc.rows(), uc.cols());
  detail::PackedModes<T> p(H, N, W);
  for (std::size_t h = 0; h < H; ++h)
    for (std::size_t n = 0; n < N; ++n) {
      const auto hi = Eigen::Index(h), ni = Eigen::Index(n);
      const std::size_t at = p.index(h, n);
      p.put(p.ar, p.ai, at, d.dA(hi, ni));
      p.put(p.br, p.bi, at, d.dB(hi, ni));
      p.put(p.cr, p.ci, at, T(2) * d.C(hi, ni));
    }
  [[maybe_unused]] const int threads = detail::resolve_threads(0);
  detail::ParallelErrors errors;
  SSM_OMP(parallel for num_threads(threads) schedule(dynamic))
  for (std::ptrdiff_t b = 0; b < std::ptrdiff_t(p.blocks); ++b)
    errors.run([&] {
      const std::size_t h0 = std::size_t(b) * W, lanes = std::min(W, H - h0);
      std::vector<T> xr(N * W, T(0)), xi(N * W, T(0)), ub(chunk * W, T(0)), yb(chunk * W);
      for (std::size_t n = 0; n < N; ++n)
        for (std::size_t j = 0; j < lanes; ++j) {
          xr[n * W + j] = x(Eigen::Index(h0 + j), Eigen::Index(n)).real();
          xi[n * W + j] = x(Eigen::Index(h0 + j), Eigen::Index(n)).imag();
        }
      for (std::size_t t0 = 0; t0 < L; t0 += chunk) {
        const std::size_t steps = std::min(chunk, L - t0);
        // (steps, lanes) of column-major u -> time-major lanes; y starts at D u
        for (std::size_t j = 0; j < lanes; ++j) {
          const T Dh = d.D(Eigen::Index(h0 + j));
          for (std::size_t t = 0; t < steps; ++t) {
            const T v = uc(Eigen::Index(t0 + t), Eigen::Index(h0 + j));
            ub[t * W + j] = v;
            yb[t * W + j] = Dh * v;
          }
        }
        detail::scan_block<Arch>(p, std::size_t(b), xr.data(), xi.data(), ub.data(), yb.data(),
                                 steps);
        for (std::size_t j = 0; j < lanes; ++j)
          for (std::size_t t = 0; t < steps; ++t)
            y(Eigen::Index(t0 + t), Eigen::Index(h0 + j)) = yb[t * W + j];
      }
      for (std::size_t n = 0; n < N; ++n)
        for (std::size_t j = 0; j < lanes; ++j)
          x(Eigen::Index(h0 + j), Eigen::Index(n)) = {xr[n * W + j], xi[n * W + j]};
    });
  errors.rethrow();
  return y;
}

/// recurrent() from the zero state.
template <class Scalar, class Derived>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> recurrent(
    const S4DDiscrete<Scalar>& d, const Eigen::MatrixBase<Derived>& u) {
  S4DState<Scalar> x = S4DState<Scalar>::Zero(d.channels(), d.state_size());
  return recurrent(d, u, x);
}

/// recurrent(discretize(layer), u): the zero state.
template <class Scalar, class Derived>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> recurrent(
    const S4D<Scalar>& layer, const Eigen::MatrixBase<Derived>& u) {
  return recurrent(discretize(layer), u);
}

/// One step of every channel: x <- dA .* x + dB u_t, returns y_t (H) =
/// 2 Re(sum_n C x) + D u_t. x: H x N, updated; u_t: H entries. O(H N),
/// single-threaded. Throws std::invalid_argument as recurrent().
template <class Scalar, class Derived>
Eigen::Matrix<Scalar, Eigen::Dynamic, 1> step(const S4DDiscrete<Scalar>& d,
                                              S4DState<Scalar>& x,
                                              const Eigen::MatrixBase<Derived>& u_t) {
  using Complex = std::complex<Scalar>;
  const char* where = "ssm::step (S4D)";
  detail::check_layer(d, where);
  if (u_t.size() != d.channels())
    throw std::invalid_argument(std::string(where) + ": u_t must have H = " +
                                std::to_string(d.channels()) + " entries, got " +
                                std::to_string(u_t.size()));
  detail::check_s4d_state(x, d.channels(), d.state_size(), where);
  const Eigen::Matrix<Scalar, Eigen::Dynamic, 1> u = u_t.reshaped().template cast<Scalar>();
  const Eigen::Matrix<Complex, Eigen::Dynamic, 1> uc = u.template cast<Complex>();
  x.array() = d.dA.array() * x.array() + d.dB.array().colwise() * uc.array();
  return Scalar(2) * (d.C.array() * x.array()).real().rowwise().sum().matrix() +
         d.D.cwiseProduct(u);
}

/// Channel h as a library system: dA, dB, 2 C and D in a DiscreteDiagonal of
/// complex scalars, whose output's real part is the layer's channel h
/// (for inputs that are real), e.g. Re(ssm::recurrent(channel_system(d, h), u)).
/// Throws std::invalid_argument for H or N = 0, mismatched shapes, or h
/// outside [0, H).
template <class Scalar>
DiscreteDiagonal<std::complex<Scalar>> channel_system(const S4DDiscrete<Scalar>& d,
                                                      Eigen::Index h) {
  detail::check_layer(d, "ssm::channel_system");
  if (h < 0 || h >= d.channels())
    throw std::invalid_argument("ssm::channel_system: channel " + std::to_string(h) +
                                " is out of range [0, " + std::to_string(d.channels()) + ")");
  DiscreteDiagonal<std::complex<Scalar>> sys;
  sys.A = d.dA.row(h).transpose();
  sys.B = d.dB.row(h).transpose();
  sys.C = Scalar(2) * d.C.row(h);
  sys.D.resize(1, 1);
  sys.D(0, 0) = d.D(h);
  return sys;
}

/// The S4D initializations of ssm::hippo.
enum class S4DInit {
  legs,  ///< hippo::s4d_legs
  inv,   ///< hippo::s4d_inv
  lin,   ///< hippo::s4d_lin
  real,  ///< hippo::s4d_real
};

namespace detail {

// The step-size range of make_s4d and make_s4: log dt is drawn uniformly
// from [log dt_min, log dt_max], so both ends must be finite and ordered.
inline void check_dt_range(const char* where, double dt_min, double dt_max) {
  if (!(dt_min > 0) || !(dt_max >= dt_min) || !std::isfinite(dt_max)) {
    std::ostringstream s;
    s << where << ": need 0 < dt_min <= dt_max < inf, got " << dt_min << ", " << dt_max;
    throw std::invalid_argument(s.str());
  }
}

}  // namespace detail

/// An S4D layer as S4D initializes it: A and B from `init` (the same in every
/// channel), C complex normal (E|C|^2 = 1), D standard normal, log_dt uniform
/// in [log dt_min, log dt_max]. rng: a standard random engine. Throws
/// std::invalid_argument unless H, N > 0 and 0 < dt_min <= dt_max < inf.
template <class Scalar, class Rng>
S4D<Scalar> make_s4d(Eigen::Index H, Eigen::Index N, S4DInit init, Rng& rng,
                     double dt_min = 1e-3, double dt_max = 1e-1,
                     Method method = Method::zoh) {
  if (H <= 0 || N <= 0)
    throw std::invalid_argument("ssm::make_s4d: H and N must be positive, got H = " +
                                std::to_string(H) + ", N = " + std::to_string(N));
  detail::check_dt_range("ssm::make_s4d", dt_min, dt_max);
  const hippo::DiagonalInit<Scalar> modes =
      init == S4DInit::legs  ? hippo::s4d_legs<Scalar>(N)
      : init == S4DInit::inv ? hippo::s4d_inv<Scalar>(N)
      : init == S4DInit::lin ? hippo::s4d_lin<Scalar>(N)
                             : hippo::s4d_real<Scalar>(N);
  S4D<Scalar> layer(H, N);
  layer.method = method;
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(std::log(dt_min), std::log(dt_max));
  const double half = std::sqrt(0.5);
  for (Eigen::Index h = 0; h < H; ++h) {
    layer.A.row(h) = modes.A.transpose();
    layer.B.row(h) = modes.B.transpose();
    for (Eigen::Index n = 0; n < N; ++n)
      layer.C(h, n) = {Scalar(half * normal(rng)), Scalar(half * normal(rng))};
    layer.D(h) = Scalar(normal(rng));
    layer.log_dt(h) = Scalar(uniform(rng));
  }
  return layer;
}

}  // namespace ssm
