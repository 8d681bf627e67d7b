// ssm/ssd.hpp: the Mamba-2 SSM's recurrent and chunked (SSD) forms against
// a double-precision loop (tests/reference/mamba2_naive.hpp), at each SIMD
// width, with strided and offset operands, groups, threads, the dt options,
// long sequences and the errors. (The model: test_mamba2.cpp.)
#include <ssm/detail/aligned.hpp>
#include <ssm/ssd.hpp>

#include "arch.hpp"
#include "reference/mamba2_naive.hpp"
#include "util.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

namespace {

struct Shape {
  std::size_t batch, L, H, P, N, G;
  bool D, bias, softplus, state;
  double dt_min = 0, dt_max = INFINITY;
  double dt_hi = 3;  // raw dt drawn in [-4, dt_hi]
  bool aligned_y = false;  // y's rows on 64-byte boundaries, else offset by a float
};

enum class Form { recurrent, chunked };

struct Case {
  Form form;
  std::size_t chunk = 0;
  int threads = 1;
};

// Draws one problem, runs it with strided, offset layouts (x, B, C and dt
// as slices of one wide row, as a model's buffers hold them) and returns the
// largest error over y and the final state, relative to the scale of their
// rounding errors (naive::Ssd's magnitudes).
template <class Arch = xsimd::default_arch>
double run_case(const Shape& s, const Case& k) {
  naive::Ssd ref;
  ref.batch = s.batch, ref.L = s.L, ref.H = s.H, ref.P = s.P, ref.N = s.N, ref.G = s.G;
  auto fill = [](std::vector<double>& v, std::size_t n, double lo, double hi) {
    v.resize(n);
    std::uniform_real_distribution<double> dist(lo, hi);
    for (auto& x : v) x = dist(test::rng());
  };
  const std::size_t BL = s.batch * s.L, HP = s.H * s.P, GN = s.G * s.N;
  fill(ref.x, BL * HP, -1, 1);
  fill(ref.dt, BL * s.H, s.softplus ? -4 : 0, s.softplus ? s.dt_hi : 0.5);
  fill(ref.A, s.H, -8, -0.05);
  fill(ref.B, BL * GN, -1, 1);
  fill(ref.C, BL * GN, -1, 1);
  if (s.D) fill(ref.D, s.H, -1, 1);
  if (s.bias) fill(ref.dt_bias, s.H, -1, 0.5);
  if (s.state) fill(ref.state, s.batch * s.H * s.N * s.P, -1, 1);
  ref.softplus = s.softplus;
  ref.dt_min = s.dt_min, ref.dt_max = s.dt_max;

  // one row per step: [1 pad | x | B | C | dt | 2 pad]
  const std::size_t row = 1 + HP + 2 * GN + s.H + 2;
  std::vector<float> rows(BL * row + 1);
  for (std::size_t i = 0; i < BL; ++i) {
    float* r = rows.data() + 1 + i * row;
    for (std::size_t j = 0; j < HP; ++j) r[j] = float(ref.x[i * HP + j]);
    for (std::size_t j = 0; j < GN; ++j) r[HP + j] = float(ref.B[i * GN + j]);
    for (std::size_t j = 0; j < GN; ++j) r[HP + GN + j] = float(ref.C[i * GN + j]);
    for (std::size_t j = 0; j < s.H; ++j) r[HP + 2 * GN + j] = float(ref.dt[i * s.H + j]);
  }
  auto to_float = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
  const std::vector<float> A = to_float(ref.A), D = to_float(ref.D), bias = to_float(ref.dt_bias);
  std::vector<float> state = to_float(ref.state);
  state.insert(state.begin(), 0.f);  // unaligned
  // y rows wider than H P, NaN-filled: every output must be written
  const std::size_t y_row = s.aligned_y ? (HP + 16) / 16 * 16 : HP + 3, y_off = s.aligned_y ? 0 : 1;
  ssm::detail::line_vector<float> y(BL * y_row + 1, std::nanf(""));

  ssm::SsdArgs p;
  p.batch = s.batch, p.L = s.L, p.heads = s.H, p.head_dim = s.P, p.N = s.N, p.groups = s.G;
  const auto seq = std::ptrdiff_t(s.L * row), step = std::ptrdiff_t(row);
  const float* r0 = rows.data() + 1;
  p.x = r0, p.x_batch_stride = seq, p.x_time_stride = step;
  p.B = r0 + HP, p.B_batch_stride = seq, p.B_time_stride = step;
  p.C = r0 + HP + GN, p.C_batch_stride = seq, p.C_time_stride = step;
  p.dt = r0 + HP + 2 * GN, p.dt_batch_stride = seq, p.dt_time_stride = step;
  p.A = A.data();
  if (s.D) p.D = D.data();
  if (s.bias) p.dt_bias = bias.data();
  p.dt_softplus = s.softplus;
  p.dt_min = float(s.dt_min), p.dt_max = float(s.dt_max);
  if (s.state) p.state = state.data() + 1, p.state_batch_stride = std::ptrdiff_t(s.H * s.N * s.P);
  p.y = y.data() + y_off, p.y_batch_stride = std::ptrdiff_t(s.L * y_row), p.y_time_stride = std::ptrdiff_t(y_row);
  // the chunked form at the default width only (compile time): its SIMD
  // parts, the scan core and exp2, are tested at each width in
  // test_scan_core and through the recurrent form
  if (k.form == Form::recurrent)
    ssm::ssd_recurrent<Arch>(p, k.threads);
  else
    ssm::ssd_chunked(p, k.chunk, k.threads);

  const std::vector<double> y_ref = ref.run();
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < BL; ++i)
    for (std::size_t j = 0; j < HP; ++j) {
      const float v = y[y_off + i * y_row + j];
      diff = std::max(diff, std::isnan(v) ? 1e30 : std::abs(v - y_ref[i * HP + j]));
      scale = std::max(scale, ref.y_magnitude[i * HP + j]);
    }
  double err = y_ref.empty() ? 0 : diff / std::max(scale, 1e-30);
  if (s.state) {
    double sd = 0, ss = 0;
    for (std::size_t i = 0; i < ref.state.size(); ++i) {
      sd = std::max(sd, std::isnan(state[i + 1]) ? 1e30 : std::abs(state[i + 1] - ref.state[i]));
      ss = std::max(ss, ref.state_magnitude[i]);
    }
    err = std::max(err, sd / std::max(ss, 1e-30));
  }
  return err;
}

// float sums of N products over a state that forgets at rate e^{dt A}: a
// few ulps of the magnitudes involved, for both forms.
constexpr double tolerance = 1e-6;

}  // namespace

TEST_CASE("ssd_recurrent matches the double-precision loop", "[ssd]") {
  // head_dim below, at and around the batch widths and the column blocks
  // of 1-4 batches (40 and 48: 2 and 3 on AVX-512), state sizes around the
  // tile heights (AVX2: 5, AVX-512: 6, then 4, then 1; 0: no state, y =
  // D x), lengths around the time blocks of 32 steps (63, 64, 65: two
  // blocks, a step either side)
  const std::size_t P = GENERATE(1, 7, 16, 24, 40, 48, 64, 67);
  const std::size_t N = GENERATE(0, 1, 5, 7, 16, 64, 128);
  const std::size_t L = GENERATE(1, 2, 63, 64, 65, 150);
  const bool options = GENERATE(false, true);
  const Shape s{1, L, 2, P, N, 1, options, options, options, options};
  test::for_each_width([&](auto arch) {
    INFO("P=" << P << " N=" << N << " L=" << L << " options=" << options << " arch=" << decltype(arch)::name());
    CHECK(run_case<decltype(arch)>(s, {Form::recurrent}) <= tolerance);
  });
}

TEST_CASE("ssd_chunked matches the double-precision loop", "[ssd]") {
  // chunks far longer than L are one chunk of L steps (no Q x Q buffer)
  const std::size_t chunk = GENERATE(1, 7, 16, 64, 256, std::size_t(1) << 20, std::size_t(-1));
  const std::size_t L = GENERATE(1, 15, 16, 17, 100, 300);
  const std::size_t P = GENERATE(5, 16, 64), N = GENERATE(0, 3, 16, 128);
  const Shape s{1, L, 2, P, N, 1, true, true, true, true};
  INFO("chunk=" << chunk << " L=" << L << " P=" << P << " N=" << N);
  CHECK(run_case(s, {Form::chunked, chunk}) <= tolerance);
}

TEST_CASE("ssd: batches, groups, threads, each option alone", "[ssd]") {
  const std::size_t G = GENERATE(1, 2, 4);
  const int threads = GENERATE(1, 2, 3);
  const int option = GENERATE(range(0, 5));
  Shape s{3, 70, 8, 24, 16, G, option == 1, option == 2, option == 3, option == 4};
  INFO("groups=" << G << " threads=" << threads << " option=" << option);
  CHECK(run_case(s, {Form::recurrent, 0, threads}) <= tolerance);
  CHECK(run_case(s, {Form::chunked, 16, threads}) <= tolerance);
}

TEST_CASE("ssd: time_step_limit clamps dt on both sides", "[ssd]") {
  Shape s{2, 90, 4, 24, 8, 1, true, true, true, true};
  s.dt_min = 0.01, s.dt_max = 0.5;
  CHECK(run_case(s, {Form::recurrent}) <= tolerance);
  CHECK(run_case(s, {Form::chunked, 16}) <= tolerance);
}

TEST_CASE("ssd: long sequences, fast decays, empty ones", "[ssd][long]") {
  // dt up to 20 with A down to -8: decays to e^-160 per step, the state
  // renormalized at almost every step
  Shape fast{1, 3000, 4, 64, 16, 1, true, true, true, true};
  fast.dt_hi = 20;
  CHECK(run_case(fast, {Form::recurrent, 0, 2}) <= tolerance);
  CHECK(run_case(fast, {Form::chunked, 256, 2}) <= tolerance);
  const Shape slow{1, 5000, 4, 64, 32, 1, true, true, true, true};
  CHECK(run_case(slow, {Form::recurrent, 0, 2}) <= tolerance);
  CHECK(run_case(slow, {Form::chunked, 100, 2}) <= tolerance);
  const Shape empty{2, 0, 4, 16, 16, 1, true, true, true, true};  // the state as given
  CHECK(run_case(empty, {Form::recurrent}) <= 1e-7);  // float rounding of the state
  CHECK(run_case(empty, {Form::chunked, 8}) <= 1e-7);
}

TEST_CASE("ssd: outputs beyond 1 MiB, by streaming stores where aligned", "[ssd][long]") {
  // head_dim 64: every head's rows of y aligned; 40: at 16 lanes, every
  // other head's (heads 160 bytes apart)
  const std::size_t P = GENERATE(64, 40);
  const int threads = GENERATE(1, 2);
  Shape s{1, 1100, 8, P, 16, 2, true, true, true, true};
  s.aligned_y = true;
  test::for_each_width([&](auto arch) {
    INFO("P=" << P << " threads=" << threads << " arch=" << decltype(arch)::name());
    CHECK(run_case<decltype(arch)>(s, {Form::recurrent, 0, threads}) <= tolerance);
  });
}

TEST_CASE("ssd: bad arguments", "[ssd][errors]") {
  using Catch::Matchers::Message;
  std::vector<float> buf(64, 0.f), A(4, -1.f);
  ssm::SsdArgs p;
  p.L = 2, p.heads = 4, p.head_dim = 2, p.N = 2, p.groups = 3;
  p.x = p.dt = p.B = p.C = buf.data();
  p.y = buf.data(), p.y_time_stride = 8;
  p.A = A.data();
  REQUIRE_THROWS_MATCHES(ssm::ssd_recurrent(p), std::invalid_argument,
                         Message("ssm::ssd_recurrent: 4 heads do not split into 3 groups"));
  p.groups = 2;
  A[3] = 0.5f;
  REQUIRE_THROWS_MATCHES(ssm::ssd_chunked(p, 4), std::invalid_argument,
                         Message("ssm::ssd_chunked: A[3] must be finite and <= 0, got 0.500000"));
  A[3] = -1;
  p.dt_min = -0.1f;
  REQUIRE_THROWS_WITH(ssm::ssd_recurrent(p), Catch::Matchers::Contains("0 <= dt_min <= dt_max"));
  p.dt_min = 0;
  REQUIRE_THROWS_MATCHES(ssm::ssd_chunked(p, 0), std::invalid_argument,
                         Message("ssm::ssd_chunked: chunk_size must be > 0"));
  p.y_time_stride = 0;  // the default: every step's y on the same row
  REQUIRE_THROWS_MATCHES(ssm::ssd_chunked(p, 4), std::invalid_argument,
                         Message("ssm::ssd_chunked: y_time_stride must be at least 8 in magnitude "
                                 "(heads * head_dim), got 0"));
  std::vector<float> y(16, std::nanf(""));
  p.y = y.data() + 8, p.y_time_stride = -8;  // rows backwards are fine
  ssm::ssd_recurrent(p);
  CHECK(std::none_of(y.begin(), y.end(), [](float v) { return std::isnan(v); }));
  p.batch = 2, p.y_batch_stride = 16, p.state = buf.data() + 32;
  REQUIRE_THROWS_MATCHES(ssm::ssd_recurrent(p), std::invalid_argument,
                         Message("ssm::ssd_recurrent: state_batch_stride must be at least 16 in "
                                 "magnitude (heads * N * head_dim), got 0"));
  p.batch = 1, p.state = nullptr;
  p.C = nullptr;
  p.y = nullptr;
  REQUIRE_THROWS_MATCHES(ssm::ssd_recurrent(p), std::invalid_argument,
                         Message("ssm::ssd_recurrent: x, dt, B, C and y must be given; null: C, y"));
  p.A = nullptr;
  REQUIRE_THROWS_MATCHES(ssm::ssd_chunked(p, 4), std::invalid_argument,
                         Message("ssm::ssd_chunked: A must be given"));
}

TEST_CASE("ssd: no heads or no channels: nothing to read or write", "[ssd][errors]") {
  // heads = 0 or head_dim = 0: no operand is read (they may be null), the
  // state (N x 0 per head) is empty; both forms return at once
  for (std::size_t heads : {0, 2}) {
    ssm::SsdArgs p;
    p.L = 5, p.heads = heads, p.head_dim = heads ? 0 : 4, p.N = 4;
    std::vector<float> A(heads, -1.f), rows(64, 1.f);
    p.A = A.data();
    p.x = p.dt = p.B = p.C = heads ? rows.data() : nullptr;
    p.B_time_stride = p.C_time_stride = 4;
    p.y = heads ? rows.data() : nullptr;
    INFO("heads=" << heads);
    ssm::ssd_recurrent(p);
    ssm::ssd_chunked(p, 2);
    CHECK(std::all_of(rows.begin(), rows.end(), [](float v) { return v == 1.f; }));
  }
}
