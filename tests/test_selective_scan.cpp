// ssm::selective_scan against selective_scan_ref's semantics written as a
// double-precision loop (tests/reference/selective_scan_naive.hpp), and the
// fast exponential it relies on against std::exp2.
#include <ssm/selective_scan.hpp>

#include "reference/selective_scan_naive.hpp"
#include "util.hpp"

#include <cstring>
#include <vector>

namespace {

struct Shape {
  std::size_t batch, L, D, N, groups;
  bool D_skip, z, bias, softplus, state;
};

// Draws one problem, runs it through SelectiveScanArgs with padded, strided
// layouts (B and C inside wider rows, as slices of x_proj's output are),
// and returns the largest error over y and the state, relative to the scale
// of their rounding errors (naive::SelectiveScan::y_magnitude and
// state_magnitude): cancelling sums do not hide behind a small |y| or |h|.
double run_case(const Shape& s, int threads, bool negative_delta = false) {
  naive::SelectiveScan ref;
  ref.batch = s.batch, ref.L = s.L, ref.D = s.D, ref.N = s.N, ref.groups = s.groups;
  auto fill = [](std::vector<double>& v, std::size_t n, double lo, double hi) {
    v.resize(n);
    std::uniform_real_distribution<double> dist(lo, hi);
    for (auto& x : v) x = dist(test::rng());
  };
  const std::size_t BD = s.batch * s.L * s.D, BG = s.batch * s.L * s.groups * s.N;
  fill(ref.u, BD, -1, 1);
  // delta as dt_proj gives it: softplus maps it to (0, ~3]; without softplus
  // a step size in [0, 0.5] (or, to exercise the general exp, some < 0)
  if (s.softplus) fill(ref.delta, BD, -4, 3);
  else fill(ref.delta, BD, negative_delta ? -0.2 : 0.0, 0.5);
  fill(ref.A, s.D * s.N, -8, -0.05);  // A = -exp(A_log)
  fill(ref.B, BG, -1, 1);
  fill(ref.C, BG, -1, 1);
  if (s.D_skip) fill(ref.D_skip, s.D, -1, 1);
  if (s.z) fill(ref.z, BD, -3, 3);
  // a bias moves Delta; without softplus it must keep Delta >= 0 (but in
  // the negative-delta case), or the state would grow like e^{|Delta A| L}
  if (s.bias) fill(ref.delta_bias, s.D, s.softplus ? -1 : 0, 0.5);
  if (s.state) fill(ref.state, s.batch * s.D * s.N, -1, 1);
  ref.softplus = s.softplus;

  // float operands; B and C rows padded to groups * N + 3, A in (D, N)
  auto to_float = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  const std::vector<float> u = to_float(ref.u), delta = to_float(ref.delta), A = to_float(ref.A),
                           Dk = to_float(ref.D_skip), z = to_float(ref.z),
                           bias = to_float(ref.delta_bias);
  const std::size_t row = s.groups * s.N + 3;
  std::vector<float> B(s.batch * s.L * row + 1), C(B.size());
  for (std::size_t i = 0; i < s.batch * s.L; ++i)
    for (std::size_t j = 0; j < s.groups * s.N; ++j) {
      B[1 + i * row + j] = float(ref.B[i * s.groups * s.N + j]);
      C[1 + i * row + j] = float(ref.C[i * s.groups * s.N + j]);
    }
  std::vector<float> state = to_float(ref.state), y(BD, std::nanf(""));

  ssm::SelectiveScanArgs p;
  p.batch = s.batch;
  p.L = s.L;
  p.D = s.D;
  p.N = s.N;
  p.groups = s.groups;
  const auto LD = std::ptrdiff_t(s.L * s.D), D = std::ptrdiff_t(s.D);
  p.u = u.data(), p.u_batch_stride = LD, p.u_time_stride = D;
  p.delta = delta.data(), p.delta_batch_stride = LD, p.delta_time_stride = D;
  p.A = A.data(), p.A_d_stride = std::ptrdiff_t(s.N), p.A_n_stride = 1;
  p.B = B.data() + 1, p.B_batch_stride = std::ptrdiff_t(s.L * row), p.B_time_stride = std::ptrdiff_t(row);
  p.B_group_stride = std::ptrdiff_t(s.N);
  p.C = C.data() + 1, p.C_batch_stride = p.B_batch_stride, p.C_time_stride = p.B_time_stride;
  p.C_group_stride = p.B_group_stride;
  if (s.D_skip) p.D_skip = Dk.data();
  if (s.z) p.z = z.data(), p.z_batch_stride = LD, p.z_time_stride = D;
  if (s.bias) p.delta_bias = bias.data();
  p.delta_softplus = s.softplus;
  if (s.state) {
    p.state = state.data();
    p.state_batch_stride = std::ptrdiff_t(s.D * s.N), p.state_d_stride = std::ptrdiff_t(s.N);
  }
  p.y = y.data(), p.y_batch_stride = LD, p.y_time_stride = D;
  ssm::selective_scan(p, threads);

  const std::vector<double> y_ref = ref.run();
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < BD; ++i) {
    diff = std::max(diff, std::isnan(y[i]) ? 1e30 : std::abs(y[i] - y_ref[i]));
    scale = std::max(scale, ref.y_magnitude[i]);
  }
  double err = BD ? diff / std::max(scale, 1e-30) : 0;
  if (s.state) {
    double sd = 0, ss = 0;
    for (std::size_t i = 0; i < state.size(); ++i) {
      sd = std::max(sd, std::abs(state[i] - ref.state[i]));
      ss = std::max(ss, ref.state_magnitude[i]);
    }
    err = std::max(err, sd / std::max(ss, 1e-30));
  }
  return err;
}

// float: exponentials to 1e-7, products and sums of N terms over up to a
// few hundred steps (the state forgets at rate e^{Delta A}): a few ulps of
// the magnitudes involved.
constexpr double tolerance = 2e-6;

}  // namespace

TEST_CASE("selective_scan matches the double-precision reference", "[selective_scan]") {
  const std::size_t D = GENERATE(1, 5, 16, 17, 40, 100);
  const std::size_t N = GENERATE(1, 3, 16, 17, 40);
  const std::size_t L = GENERATE(1, 2, 33, 200);
  const bool options = GENERATE(false, true);
  const Shape s{1, L, D, N, 1, options, options, options, options, options};
  INFO("D=" << D << " N=" << N << " L=" << L << " options=" << options);
  CHECK(run_case(s, 1) <= tolerance);
}

TEST_CASE("selective_scan: batches, groups, threads, every option alone", "[selective_scan]") {
  const std::size_t groups = GENERATE(1, 2, 4);
  const std::size_t D = groups * GENERATE(3, 16, 24, 40);  // group widths below, at and above W
  const int threads = GENERATE(1, 2, 3);
  const int option = GENERATE(range(0, 6));
  Shape s{3, 57, D, 16, groups, option == 1, option == 2, option == 3, option == 4, option == 5};
  INFO("groups=" << groups << " D=" << D << " threads=" << threads << " option=" << option);
  CHECK(run_case(s, threads) <= tolerance);
}

TEST_CASE("selective_scan: negative steps take the general exponential", "[selective_scan]") {
  const Shape s{2, 64, 37, 16, 1, true, true, false, false, true};
  CHECK(run_case(s, 1, true) <= tolerance);
}

TEST_CASE("selective_scan: long sequences and empty ones", "[selective_scan][long]") {
  CHECK(run_case({1, 20000, 48, 16, 1, true, true, true, true, true}, 2) <= tolerance);
  CHECK(run_case({2, 0, 48, 16, 1, true, true, true, true, true}, 1) <= 1e-7);  // state as given
  CHECK(run_case({1, 10, 48, 0, 1, true, true, true, true, false}, 1) <= tolerance);
}

TEST_CASE("selective_scan: splitting a sequence through the state", "[selective_scan]") {
  // y over [0, L) at once equals y over [0, k) then [k, L) from the state:
  // what decoding with a cache relies on; bitwise, since every channel's
  // operations are the same either way.
  const Eigen::Index L = 50, D = 35, N = 16;
  const Eigen::MatrixXf u = test::random_matrix<float>(L, D);
  const Eigen::MatrixXf delta = test::random_matrix<float>(L, D);
  const Eigen::MatrixXf A = -(test::random_matrix<float>(D, N).array() + 1.5f).matrix();
  const Eigen::MatrixXf B = test::random_matrix<float>(L, N), C = test::random_matrix<float>(L, N);
  const Eigen::VectorXf Dv = Eigen::VectorXf::Ones(D);
  Eigen::MatrixXf s_all = Eigen::MatrixXf::Zero(D, N), s_split = s_all;
  ssm::SelectiveScanOptions o;
  o.D = &Dv;
  o.delta_softplus = true;
  o.state = &s_all;
  const Eigen::MatrixXf y_all = ssm::selective_scan(u, delta, A, B, C, o);
  o.state = &s_split;
  Eigen::MatrixXf y_split(L, D);
  for (Eigen::Index t = 0; t < L; t += 7) {
    const Eigen::Index n = std::min<Eigen::Index>(7, L - t);
    y_split.middleRows(t, n) = ssm::selective_scan(u.middleRows(t, n), delta.middleRows(t, n), A,
                                                   B.middleRows(t, n), C.middleRows(t, n), o);
  }
  CHECK((y_split - y_all).cwiseAbs().maxCoeff() == 0);
  CHECK((s_split - s_all).cwiseAbs().maxCoeff() == 0);
}

TEST_CASE("exp2_nonpositive over its whole range", "[selective_scan][exp]") {
  // Every 61st float of [-125, -1] (all binades, 18 million arguments) and
  // every 29th of [-1, 0] (37 million, every reduced argument r the
  // polynomial sees): relative error <= 1.1e-7 (8.0e-8 measured with
  // hardware FMA at -O2; 1.0e-7 at -O1, 1.04e-7 without FMA, where each
  // xsimd::fma rounds twice). Below -125 (down to -inf)
  // the result is 2^-125 instead of underflowing: absolute error below
  // 2.4e-38.
  using batch = xsimd::batch<float>;
  std::uint32_t last;
  const float floor = -125.0f;
  std::memcpy(&last, &floor, 4);
  double worst = 0;
  alignas(64) float x[batch::size], e[batch::size];
  std::size_t m = 0;
  auto flush = [&] {
    ssm::detail::exp2_nonpositive(batch::load_aligned(x)).store_aligned(e);
    for (std::size_t i = 0; i < m; ++i)
      worst = std::max(worst, std::abs(e[i] / std::exp2(double(x[i])) - 1));
    m = 0;
  };
  std::uint32_t minus_one;
  const float m1 = -1.0f;
  std::memcpy(&minus_one, &m1, 4);
  for (std::uint32_t bits = 0x80000000u; bits <= last; bits += bits < minus_one ? 29 : 61) {
    std::memcpy(&x[m++], &bits, 4);
    if (m == batch::size) flush();
  }
  flush();
  CHECK(worst <= 1.1e-7);
  for (const float v : {-125.5f, -149.f, -1000.f, -1e30f, -INFINITY}) {
    const float r = ssm::detail::exp2_nonpositive(batch(v)).get(0);
    CHECK(r >= 0);
    CHECK(r <= 2.4e-38f);
  }
  CHECK(ssm::detail::exp2_nonpositive(batch(0.f)).get(0) == 1.0f);
  CHECK(ssm::detail::exp2_nonpositive(batch(-1.f)).get(0) == 0.5f);
}

TEST_CASE("selective_scan rejects bad arguments", "[selective_scan][errors]") {
  using Catch::Matchers::Message;
  const Eigen::MatrixXf u = Eigen::MatrixXf::Ones(4, 3), B = Eigen::MatrixXf::Ones(4, 2);
  Eigen::MatrixXf A = -Eigen::MatrixXf::Ones(3, 2);
  REQUIRE_THROWS_MATCHES(ssm::selective_scan(u, u, A, B, Eigen::MatrixXf::Ones(4, 3)),
                         std::invalid_argument, Message("ssm::selective_scan: C must be 4x2, got 4x3"));
  A(1, 1) = std::nanf("");
  REQUIRE_THROWS_MATCHES(ssm::selective_scan(u, u, A, B, B), std::invalid_argument,
                         Message("ssm::selective_scan: A[1, 1] is not finite"));
  ssm::SelectiveScanArgs p;
  p.D = 6;
  p.groups = 4;
  REQUIRE_THROWS_MATCHES(ssm::selective_scan(p), std::invalid_argument,
                         Message("ssm::selective_scan: 6 channels do not split into 4 groups"));
  p.groups = 2;
  p.L = 3;
  p.N = 2;
  REQUIRE_THROWS_MATCHES(ssm::selective_scan(p), std::invalid_argument,
                         Message("ssm::selective_scan: A must be given"));
  const float a = -1;
  p.A = &a;
  p.N = 1;
  p.D = 1;
  p.groups = 1;
  REQUIRE_THROWS_MATCHES(ssm::selective_scan(p), std::invalid_argument,
                         Message("ssm::selective_scan: u, delta, B, C and y must be given"));
}
