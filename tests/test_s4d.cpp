// The S4D layer (include/ssm/s4d.hpp) and its FFT convolution
// (detail/fft_fast.hpp). Oracles: the discretization per mode by its closed
// forms; the kernel against direct powers of dA (naive loops in double);
// conv mode against recurrent mode, steps, a naive double recurrence
// (tests/reference/s4_naive.hpp) and the library's DiscreteDiagonal path;
// the FFT convolution against the direct sum. Kernels on each SIMD width.
#include <ssm/conv.hpp>
#include <ssm/s4d.hpp>

#include "arch.hpp"
#include "reference/s4_naive.hpp"
#include "s4_cases.hpp"

#include <catch2/catch.hpp>
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <cmath>
#include <complex>
#include <string>
#include <vector>

using namespace test;

// ---------------------------------------------------------------- S4D

TEMPLATE_TEST_CASE("S4D discretization: ZOH and bilinear per mode", "[s4d]", float, double) {
  using T = TestType;
  const auto method = GENERATE(ssm::Method::zoh, ssm::Method::bilinear);
  const auto layer = random_s4d<T>(3, 5, GENERATE(0, 4), method);
  const auto d = ssm::discretize(layer);
  const double eps = tolerance<T>(2e-7, 1e-15);
  for (Index h = 0; h < 3; ++h)
    for (Index n = 0; n < 5; ++n) {
      const double dt = std::exp(double(layer.log_dt(h)));
      const cd a = cd(layer.A(h, n)), b = cd(layer.B(h, n));
      const cd dA = method == ssm::Method::zoh ? std::exp(dt * a) : (1.0 + dt * a / 2.0) / (1.0 - dt * a / 2.0);
      const cd dB = method == ssm::Method::zoh ? (std::exp(dt * a) - 1.0) / a * b : dt * b / (1.0 - dt * a / 2.0);
      CHECK(std::abs(cd(d.dA(h, n)) - dA) <= eps * std::abs(dA) * 4);
      // expm1 in the library, exp - 1 here: the difference cancels ~|dt a|
      CHECK(std::abs(cd(d.dB(h, n)) - dB) <= (eps + 1e-14 / std::abs(dt * a)) * std::abs(dB) * 4);
    }
}

TEMPLATE_TEST_CASE("S4D kernel: Vandermonde product against powers of dA", "[s4d]", float, double) {
  using T = TestType;
  constexpr Index W = Index(xsimd::batch<T>::size);
  const Index H = GENERATE_COPY(1, W - 1, W, W + 1, 37), N = GENERATE(1, 3, 4, 5, 64);
  const Index L = GENERATE(0, 1, 63, 64, 65, 1000, 5000);
  // S4D-LegS, S4D-Real (real A) and random modes; each test uses ZOH and
  // bilinear among them (Inv and Lin differ from random modes only in values)
  const int kind = GENERATE(0, 3, 4);
  if (H == 0) return;
  const auto method = kind % 2 ? ssm::Method::bilinear : ssm::Method::zoh;
  const auto d = ssm::discretize(random_s4d<T>(H, N, kind, method));
  INFO("H=" << H << " N=" << N << " L=" << L << " init=" << kind);
  const Mat<T> K = ssm::kernel(d, L);
  REQUIRE(K.rows() == L);
  REQUIRE(K.cols() == H);
  Mat<double> K_ref(L, H);
  for (Index h = 0; h < H; ++h) {
    const auto k = naive::diagonal_kernel(to_vector(d.dA.row(h)), to_vector(d.dB.row(h)),
                                          to_vector(d.C.row(h)), std::size_t(L));
    for (Index l = 0; l < L; ++l) K_ref(l, h) = k[std::size_t(l)];
  }
  // float: each power is at most 63 float products from a double start,
  // ~64 eps = 8e-6 of the term: 1e-5 of the largest sum of |terms|, which
  // is at l = 0 (|dA| <= 1): 2 sum_n |C dB|
  double scale = 1e-300;
  for (Index h = 0; h < H; ++h)
    scale = std::max(scale, 2 * (d.C.row(h).template cast<cd>().array() *
                                 d.dB.row(h).template cast<cd>().array()).abs().sum());
  CHECK(err_over(K, K_ref, scale) <= tolerance<T>(1e-5, 1e-12));
}

TEMPLATE_TEST_CASE("S4D: conv mode, recurrent mode, steps and a naive recurrence agree", "[s4d]",
                   float, double) {
  using T = TestType;
  constexpr Index W = Index(xsimd::batch<T>::size);
  const Index H = GENERATE_COPY(1, W + 1, 37), N = GENERATE(1, 5, 64);
  const Index L = GENERATE(0, 1, 127, 128, 129, 3000);
  // S4D-LegS, S4D-Real (real A) and random modes; each test uses ZOH and
  // bilinear among them (Inv and Lin differ from random modes only in values)
  const int kind = GENERATE(0, 3, 4);
  const auto method = kind % 2 ? ssm::Method::zoh : ssm::Method::bilinear;
  const auto layer = random_s4d<T>(H, N, kind, method);
  const auto d = ssm::discretize(layer);
  const Mat<T> u = test::random_matrix<T>(L, H);
  INFO("H=" << H << " N=" << N << " L=" << L << " init=" << kind);
  const Mat<T> yc = ssm::convolve(d, u), yr = ssm::recurrent(d, u);
  REQUIRE(yc.rows() == L);
  REQUIRE(yr.rows() == L);
  // The recurrence rounds ~eps per step, carried for ~1 / (dt |Re A|) <= 2e4
  // steps but averaging out across modes; the FFT adds ~eps log L.
  CHECK(test::rel_err(ssm::convolve(layer, u), yc) == 0);

  // the naive recurrence from a random state, in double, on the rounded dA, dB
  ssm::S4DState<T> x0(H, N);
  for (Index h = 0; h < H; ++h)
    for (Index n = 0; n < N; ++n) x0(h, n) = test::uniform<std::complex<T>>();
  Mat<double> y_ref(L, H);
  ssm::S4DState<double> x_ref(H, N);
  double y_scale = 1e-300, x_scale = 1e-300, y0_scale = 1e-300;
  for (Index h = 0; h < H; ++h) {
    std::vector<double> uh(static_cast<std::size_t>(L));
    for (Index t = 0; t < L; ++t) uh[std::size_t(t)] = double(u(t, h));
    auto x = to_vector(x0.row(h));
    const auto y = naive::diagonal_recurrence(to_vector(d.dA.row(h)), to_vector(d.dB.row(h)),
                                              to_vector(d.C.row(h)), double(d.D(h)), uh, x);
    for (Index t = 0; t < L; ++t) y_ref(t, h) = y[std::size_t(t)];
    for (Index n = 0; n < N; ++n) x_ref(h, n) = x[std::size_t(n)];
    // the same recurrence on magnitudes bounds every |term|: the scale of
    // the rounding errors (the outputs themselves may cancel to ~0)
    // (from x0, and from zero for the runs that start there)
    for (auto& v : uh) v = std::abs(v);
    const auto a = abs_vector(d.dA.row(h)), b = abs_vector(d.dB.row(h)), c = abs_vector(d.C.row(h));
    auto x_abs = abs_vector(x0.row(h)), zero = std::vector<cd>(std::size_t(N));
    for (const double v : naive::diagonal_recurrence(a, b, c, std::abs(double(d.D(h))), uh, x_abs))
      y_scale = std::max(y_scale, v);
    for (const double v : naive::diagonal_recurrence(a, b, c, std::abs(double(d.D(h))), uh, zero))
      y0_scale = std::max(y0_scale, v);
    for (const cd& v : x_abs) x_scale = std::max(x_scale, v.real());
  }
  // from zero: conv mode against recurrent mode
  CHECK(err_over(yc, yr, y0_scale) <= tolerance<T>(1e-4, 1e-10));
  {  // recurrent from a state, returning the final state
    auto x = x0;
    CHECK(err_over(ssm::recurrent(d, u, x), y_ref, y_scale) <= tolerance<T>(1e-4, 1e-10));
    CHECK(err_over(x, x_ref, x_scale) <= tolerance<T>(1e-4, 1e-10));
  }
  {  // in chunks: the state carries the sequence across calls
    auto x = x0;
    Mat<T> y(L, H);
    const Index cut = L / 3;
    y.topRows(cut) = ssm::recurrent(d, u.topRows(cut), x);
    y.bottomRows(L - cut) = ssm::recurrent(d, u.bottomRows(L - cut), x);
    CHECK(err_over(y, y_ref, y_scale) <= tolerance<T>(1e-4, 1e-10));
  }
  {  // step by step
    auto x = x0;
    Mat<T> y(L, H);
    for (Index t = 0; t < std::min<Index>(L, 200); ++t) y.row(t) = ssm::step(d, x, u.row(t).transpose()).transpose();
    const Index n = std::min<Index>(L, 200);
    CHECK(err_over(y.topRows(n), y_ref.topRows(n), y_scale) <= tolerance<T>(1e-5, 1e-12));
  }
  {  // each channel as a library DiscreteDiagonal
    if (L > 0 && L < 1000) {
      // evaluated in complex<double>: Eigen's complex<float> AVX-512 broadcast
      // reads a complex<float> as a double, which UBSan flags as misaligned
      const Index h = H / 2;
      const auto sys = ssm::channel_system(d, h);
      ssm::DiscreteDiagonal<cd> wide;
      wide.A = sys.A.template cast<cd>();
      wide.B = sys.B.template cast<cd>();
      wide.C = sys.C.template cast<cd>();
      wide.D = sys.D.template cast<cd>();
      // a plain vector, not the cast expression: one instantiation of
      // recurrent for both test types (3-4 s of compile time each)
      const Eigen::VectorXd uh = u.col(h).template cast<double>();
      const Eigen::VectorXcd yh = ssm::recurrent(wide, uh);
      CHECK(err_over(Eigen::VectorXd(yh.real()), yr.col(h).template cast<double>().eval(), y0_scale) <=
            tolerance<T>(1e-5, 1e-12));
    }
  }
}

TEMPLATE_TEST_CASE("S4D: every SIMD architecture, long and unaligned inputs", "[s4d][simd]", float,
                   double) {
  using T = TestType;
  const Index H = 21, N = 6, L = 777;
  const auto d = ssm::discretize(random_s4d<T>(H, N, 4, ssm::Method::zoh));
  std::vector<T> buffer(std::size_t(L * H + 1));
  for (auto& v : buffer) v = test::uniform<T>();
  const Eigen::Map<const Mat<T>> u(buffer.data() + 1, L, H);  // offset by one element
  const Mat<T> copy = u;
  const Mat<T> y = ssm::recurrent(d, copy), K = ssm::kernel(d, L);
  CHECK(test::rel_err(ssm::recurrent(d, u), y) == 0);
  CHECK(test::rel_err(ssm::convolve(d, u), y) <= tolerance<T>(1e-4, 1e-10));
  test::for_each_width([&](auto arch) {
    using Arch = decltype(arch);
    INFO(Arch::name());
    ssm::S4DState<T> x = ssm::S4DState<T>::Zero(H, N);
    CHECK(test::rel_err(ssm::recurrent<T, Mat<T>, Arch>(d, copy, x), y) <= tolerance<T>(1e-5, 1e-13));
    CHECK(test::rel_err(ssm::kernel<T, Arch>(d, L), K) <= tolerance<T>(1e-6, 1e-14));
  });
  SECTION("2^16 steps") {
    const Index Ll = 1 << 16;
    const auto dl = ssm::discretize(random_s4d<T>(3, 16, 0, ssm::Method::zoh));
    const Mat<T> ul = test::random_matrix<T>(Ll, 3);
    CHECK(test::rel_err(ssm::convolve(dl, ul), ssm::recurrent(dl, ul)) <= tolerance<T>(1e-4, 1e-10));
  }
}

TEMPLATE_TEST_CASE("FFT convolution of many channels against the direct sum", "[s4d][fft]", float,
                   double) {
  // the real FFT of detail/fft_fast.hpp, for every SIMD architecture
  using T = TestType;
  const Index L = GENERATE(1, 2, 3, 5, 64, 100, 1000, 2049), H = GENERATE(1, 7, 17);
  const Mat<T> K = test::random_matrix<T>(L, H), u = test::random_matrix<T>(L, H);
  const Eigen::Matrix<T, Eigen::Dynamic, 1> D = test::random_matrix<T>(H, 1);
  Mat<double> y_ref(L, H);
  double scale = 1e-300;  // the largest sum of |terms| (see err_over)
  for (Index h = 0; h < H; ++h)
    for (Index t = 0; t < L; ++t) {
      double s = double(D(h)) * double(u(t, h)), s_abs = std::abs(s);
      for (Index k = 0; k <= t; ++k) {
        s += double(K(k, h)) * double(u(t - k, h));
        s_abs += std::abs(double(K(k, h)) * double(u(t - k, h)));
      }
      y_ref(t, h) = s;
      scale = std::max(scale, s_abs);
    }
  INFO("L=" << L << " H=" << H);
  test::for_each_width([&](auto arch) {
    using Arch = decltype(arch);
    INFO(Arch::name());
    // rounding ~eps log2(n) of the largest term, against sums of up to L terms
    const Mat<T> y = ssm::detail::convolve_channels<T, Arch>(K, u, D);
    CHECK(err_over(y, y_ref, scale) <= tolerance<T>(1e-5, 1e-13));
  });
}

TEST_CASE("S4D: bad sizes are rejected with the shapes in the message", "[s4d][errors]") {
  auto layer = ssm::make_s4d<float>(4, 16, ssm::S4DInit::inv, test::rng());
  const Mat<float> u3 = test::random_matrix<float>(10, 3), u4 = test::random_matrix<float>(10, 4);
  REQUIRE_THROWS_MATCHES(
      ssm::convolve(layer, u3), std::invalid_argument,
      Catch::Matchers::Message("ssm::convolve (S4D): u must be L x 4 (one row per step, one column per channel), got 10x3"));
  REQUIRE_THROWS_MATCHES(
      ssm::recurrent(layer, u3), std::invalid_argument,
      Catch::Matchers::Message("ssm::recurrent (S4D): u must be L x 4 (one row per step, one column per channel), got 10x3"));
  const auto d = ssm::discretize(layer);
  ssm::S4DState<float> x = ssm::S4DState<float>::Zero(4, 15);
  REQUIRE_THROWS_MATCHES(ssm::recurrent(d, u4, x), std::invalid_argument,
                         Catch::Matchers::Message("ssm::recurrent (S4D): the state must be 4x16 (H x N), got 4x15"));
  x.setZero(4, 16);
  REQUIRE_THROWS_MATCHES(ssm::step(d, x, Eigen::VectorXf::Ones(5)), std::invalid_argument,
                         Catch::Matchers::Message("ssm::step (S4D): u_t must have H = 4 entries, got 5"));
  REQUIRE_THROWS_MATCHES(ssm::kernel(d, -1), std::invalid_argument,
                         Catch::Matchers::Message("ssm::kernel (S4D): L must be >= 0, got -1"));
  auto bad = d;
  bad.D.resize(3);
  REQUIRE_THROWS_MATCHES(ssm::kernel(bad, 8), std::invalid_argument,
                         Catch::Matchers::Message("ssm::kernel (S4D): D must have H = 4 entries, got 3"));
  layer.C.resize(3, 16);
  REQUIRE_THROWS_MATCHES(ssm::kernel(layer, 8), std::invalid_argument,
                         Catch::Matchers::Message("ssm::discretize (S4D): C must be 4x16 (H x N), got 3x16"));
  REQUIRE_THROWS_MATCHES(ssm::kernel(ssm::S4D<float>(4, 0), 8), std::invalid_argument,
                         Catch::Matchers::Message("ssm::discretize (S4D): S4D needs H > 0 channels and N > 0 states, got H = 4, N = 0"));
  auto euler = ssm::make_s4d<double>(2, 3, ssm::S4DInit::lin, test::rng());
  euler.method = ssm::Method::euler;
  REQUIRE_THROWS_MATCHES(ssm::discretize(euler), std::invalid_argument,
                         Catch::Matchers::Message("ssm::discretize (S4D): the method must be Method::zoh or Method::bilinear"));
  REQUIRE_THROWS_MATCHES(ssm::make_s4d<double>(2, 0, ssm::S4DInit::lin, test::rng()), std::invalid_argument,
                         Catch::Matchers::Message("ssm::make_s4d: H and N must be positive, got H = 2, N = 0"));
  // log dt is drawn from [log dt_min, log dt_max]: both ends finite
  for (auto [lo, hi] : {std::pair{0.0, 0.1}, {0.1, 0.01}, {1e-3, INFINITY}, {1e-3, NAN}})
    REQUIRE_THROWS_WITH(ssm::make_s4d<double>(2, 3, ssm::S4DInit::lin, test::rng(), lo, hi),
                        Catch::Matchers::StartsWith("ssm::make_s4d: need 0 < dt_min <= dt_max < inf, got"));
  REQUIRE_THROWS_MATCHES(ssm::channel_system(d, 4), std::invalid_argument,
                         Catch::Matchers::Message("ssm::channel_system: channel 4 is out of range [0, 4)"));
}

