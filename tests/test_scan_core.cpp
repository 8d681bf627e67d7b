// The scan core (include/ssm/linear_recurrence.hpp) against a straightforward
// double-precision loop, for every case it distinguishes: time-varying or
// constant a, real or complex, states or readout, every SIMD arch compiled
// in, serial, channel-parallel and time-chunked threads, odd shapes, padded
// rows and unaligned pointers.
#include <ssm/linear_recurrence.hpp>

#include "arch.hpp"
#include "heap_count.hpp"
#include "util.hpp"

#include <algorithm>
#include <complex>
#include <utility>
#include <vector>

namespace {

using cdouble = std::complex<double>;

// Reference: h_t = a_t h_{t-1} + b_t in complex<double>, every state kept;
// and the scale of the rounding errors, which cancellation makes much
// larger than |h| itself: m_t = |a_t| m_{t-1} + |b_t| (and sum |c| m).
struct Reference {
  std::vector<cdouble> states;  // (L, C)
  std::vector<cdouble> final_state;
  std::vector<cdouble> readout;  // (L, width)
  double state_scale = 0, final_scale = 0, readout_scale = 0;
};

template <class T>
Reference reference(std::size_t L, std::size_t C, const T* a, std::ptrdiff_t as, const T* b,
                    std::ptrdiff_t bs, const T* h0, const T* c, std::ptrdiff_t cs,
                    std::size_t groups) {
  Reference r;
  r.final_state.assign(h0, h0 + C);
  r.states.resize(L * C);
  const std::size_t width = groups ? C / groups : C;
  r.readout.assign(L * width, 0.0);
  std::vector<double> m(C), readout_m(width);
  for (std::size_t j = 0; j < C; ++j) r.final_scale = std::max(r.final_scale, m[j] = std::abs(cdouble(h0[j])));
  for (std::size_t t = 0; t < L; ++t) {
    std::fill(readout_m.begin(), readout_m.end(), 0.0);
    for (std::size_t j = 0; j < C; ++j) {
      const cdouble at(a[std::ptrdiff_t(t) * as + std::ptrdiff_t(j)]);
      const cdouble bt(b[std::ptrdiff_t(t) * bs + std::ptrdiff_t(j)]);
      cdouble& h = r.final_state[j];
      h = at * h + bt;
      m[j] = std::abs(at) * m[j] + std::abs(bt);
      r.states[t * C + j] = h;
      r.state_scale = std::max(r.state_scale, m[j]);
      if (c) {
        const cdouble ct(c[std::ptrdiff_t(t) * cs + std::ptrdiff_t(j)]);
        r.readout[t * width + j % width] += ct * h;
        readout_m[j % width] += std::abs(ct) * m[j];
      }
    }
    for (double v : readout_m) r.readout_scale = std::max(r.readout_scale, v);
  }
  for (double v : m) r.final_scale = std::max(r.final_scale, v);
  return r;
}

// max |got - want| over `scale` (the reference's error scale, see above)
template <class T>
double relative_error(const T* got, std::ptrdiff_t stride, const std::vector<cdouble>& want,
                      std::size_t rows, std::size_t cols, double scale) {
  double diff = 0;
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < cols; ++j)
      diff = std::max(diff, std::abs(cdouble(got[std::ptrdiff_t(i) * stride + std::ptrdiff_t(j)]) -
                                     want[i * cols + j]));
  return scale > 0 ? diff / scale : diff;
}

// |a| <= 0.995 keeps every sequence bounded; then rounding stays within a
// few hundred ulps of the error scale however long the sequence (the error
// of a step decays with the powers of a), in the sequential and chunked
// orders alike.
template <class T>
T coefficient() {
  const T z = test::uniform<T>();
  return z * test::real_t<T>(0.995 / std::max(1.0, double(std::abs(z))));
}

template <class T>
double tolerance() {
  return std::is_same<test::real_t<T>, float>::value ? 2e-5 : 1e-13;
}

// How a_t is drawn: decaying (|a| <= 0.995), on the unit circle (a sum
// or a rotation, nothing decays), or decaying and growing by turns (0.5,
// then 1.003 for 1000 steps each: a negligible carry grows again).
enum class Coefficients { decaying, unit, decay_then_grow };

template <class T>
T coefficient(Coefficients kind, std::size_t t) {
  using R = test::real_t<T>;
  switch (kind) {
    case Coefficients::unit: {
      const T z = test::uniform<T>();
      return z == T(0) ? T(1) : z / R(std::abs(z));
    }
    case Coefficients::decay_then_grow: return T(R(t / 1000 % 2 == 0 ? 0.5 : 1.003));
    default: return coefficient<T>();
  }
}

struct Case {
  std::size_t L, C;
  bool const_a, store;
  std::size_t groups;  // 0: no readout
  int threads;
  Coefficients coefficients = Coefficients::decaying;
};

template <class T, class Arch = xsimd::default_arch>
void check(const Case& k) {
  const std::size_t L = k.L, C = k.C, pad = 3;  // rows padded: stride C + pad
  const std::ptrdiff_t stride = std::ptrdiff_t(C + pad);
  // +1: every array starts one element past an aligned allocation
  std::vector<T> a(L * (C + pad) + 1), b(a.size()), c(a.size()), out(a.size()), h(C + 1);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = coefficient<T>(k.coefficients, i / (C + pad));
  for (auto& v : b) v = test::uniform<T>();
  for (auto& v : c) v = test::uniform<T>();
  for (auto& v : h) v = test::uniform<T>();
  const std::ptrdiff_t as = k.const_a ? 0 : stride;
  const T* c_data = k.groups ? c.data() + 1 : nullptr;
  const Reference ref =
      reference(L, C, a.data() + 1, as, b.data() + 1, stride, h.data() + 1, c_data, stride, k.groups);
  INFO("L=" << L << " C=" << C << " const_a=" << k.const_a << " store=" << k.store
            << " groups=" << k.groups << " threads=" << k.threads << " coefficients=" << int(k.coefficients) << " arch=" << Arch::name());

  if (k.groups) {
    const std::size_t width = C / k.groups;
    std::vector<T> y(L * width + 1);
    ssm::linear_recurrence_readout<T, Arch>(L, C, {a.data() + 1, as}, {b.data() + 1, stride},
                                            h.data() + 1, {c.data() + 1, stride}, k.groups,
                                            {y.data() + 1, std::ptrdiff_t(width)}, k.threads);
    CHECK(relative_error(y.data() + 1, std::ptrdiff_t(width), ref.readout, L, width, ref.readout_scale) <= tolerance<T>());
  } else {
    ssm::Steps<T> o{};
    if (k.store) o = {out.data() + 1, stride};
    ssm::linear_recurrence<T, Arch>(L, C, {a.data() + 1, as}, {b.data() + 1, stride}, h.data() + 1, o,
                                    k.threads);
    if (k.store) CHECK(relative_error(out.data() + 1, stride, ref.states, L, C, ref.state_scale) <= tolerance<T>());
  }
  CHECK(relative_error(h.data() + 1, 0, ref.final_state, 1, C, ref.final_scale) <= tolerance<T>());
}

}  // namespace

TEMPLATE_TEST_CASE("linear_recurrence matches a double loop on every shape", "[scan_core]", float,
                   double, std::complex<float>, std::complex<double>) {
  constexpr std::size_t W = xsimd::batch<TestType>::size;
  // 4W + 3: a bundle of 4 chains and a tail; 5W + 3, 6W and 7W + 5: one
  // bundle of 5, 6 or 7 (real types; complex ones, 4 and the rest); 8W + 3,
  // 150 and 16W + 5: bundles of 16 or 8 chains (as many as the registers
  // hold) where the row is narrow enough (under kSweepBytes), else sweeps
  const std::size_t C = GENERATE_COPY(std::size_t(1), W - 1, W, W + 1, 4 * W + 3, 5 * W + 3, 6 * W,
                                      7 * W + 5, 8 * W + 3, std::size_t(150), 16 * W + 5);
  const std::size_t L = GENERATE(std::size_t(0), std::size_t(1), std::size_t(2), std::size_t(37), std::size_t(1000));
  const bool const_a = GENERATE(false, true);
  const bool store = GENERATE(false, true);
  test::for_each_width([&](auto arch) { check<TestType, decltype(arch)>({L, C, const_a, store, 0, 1}); });
}

TEMPLATE_TEST_CASE("readout sums the groups without storing the states", "[scan_core]", float,
                   std::complex<double>) {
  const std::size_t groups = GENERATE(std::size_t(1), std::size_t(3), std::size_t(16));
  // 13 leaves 5 (AVX2) or 13 (AVX-512) after the batches: half a batch and more
  const std::size_t width = GENERATE(std::size_t(1), std::size_t(13), std::size_t(64));
  const std::size_t L = GENERATE(std::size_t(0), std::size_t(1), std::size_t(300));
  check<TestType>({L, groups * width, GENERATE(false, true), false, groups, 1});
}

TEMPLATE_TEST_CASE("wide rows, swept a step at a time, on every mode", "[scan_core]", float,
                   std::complex<double>) {
  // Rows of kSweepBytes and more take recurrence_rows: C = 47 n just past
  // that (float: 517 with AVX-512, 141 with AVX2; complex<double> 141). n
  // groups of 47: tails in every group; 47 groups of n over 9000 steps take
  // the time-chunked path (too narrow for channel blocks), whose first pass
  // and reruns sweep rows too.
  constexpr std::size_t sweep = ssm::detail::RecurrencePlan<xsimd::default_arch, TestType>::kSweepBytes;
  const std::size_t n = (sweep / sizeof(TestType) + 46) / 47, C = 47 * n;
  const bool const_a = GENERATE(false, true);
  for (std::size_t L : {std::size_t(0), std::size_t(1), std::size_t(37)}) {
    check<TestType>({L, C, const_a, true, 0, 1});
    check<TestType>({L, C, const_a, false, 0, 1});
    check<TestType>({L, C, const_a, false, n, 1});
  }
  for (int threads : {1, 2, 3}) {
    check<TestType>({9000, C, const_a, false, 47, threads});
    check<TestType>({300, C, const_a, true, 0, threads});
    check<TestType>({20011, 3, const_a, true, 0, threads});  // narrow: time chunks, states
  }
}

TEMPLATE_TEST_CASE("threads over channels and over time give the sequential answer",
                   "[scan_core][threads]", float, double) {
  // Channel blocks when channels are many; with few, time chunks (chunk 0
  // from the true state, the others reduced then rerun), in one thread too;
  // 3 threads give uneven splits; 8, more than most of these split into,
  // run as many as they do. Without OpenMP these run serially.
  const int threads = GENERATE(1, 2, 3, 8);
  const bool const_a = GENERATE(false, true);
  SECTION("few channels, long: time chunks") {
    // Lengths just past the thresholds of run_recurrence (64K updates,
    // 4096 steps a thread) and not multiples of anything; 45 channels leave
    // 5 (AVX2) or 13 (AVX-512) after the batches, half a batch and more.
    const std::pair<std::size_t, std::size_t> shapes[] = {{1, 65537}, {5, 20011}, {45, 12301}};
    for (const auto& [C, L] : shapes) {
      check<TestType>({L, C, const_a, true, 0, threads});
      check<TestType>({L, C, const_a, false, 0, threads});
      if (C == 5) check<TestType>({L, C, const_a, false, 5, threads});
    }
  }
  SECTION("time chunks when the coefficients do not decay, or grow again") {
    // The rerun of a chunk stops where the carry from the chunks before it
    // is negligible; here it must run on, or its stop must still hold.
    for (auto kind : {Coefficients::unit, Coefficients::decay_then_grow})
      for (std::size_t C : {std::size_t(1), std::size_t(5)}) {
        check<TestType>({20011, C, const_a, true, 0, threads, kind});
        check<TestType>({20011, C, const_a, false, C, threads, kind});
      }
  }
  SECTION("many channels: channel blocks") {
    check<TestType>({300, 700, const_a, true, 0, threads});
    check<TestType>({300, 700, const_a, false, 0, threads});
    check<TestType>({300, 700, const_a, false, 7, threads});
  }
}

TEMPLATE_TEST_CASE("rows shorter than a page on two threads: time chunks if the carry fades",
                   "[scan_core][threads]", float, double) {
  // 136 channels are enough for two channel blocks, but rows of 544 or
  // 1088 bytes go in time chunks where nothing is written before the end
  // or the carry fades fast (decaying); in channel blocks where it never
  // fades (unit).
  const bool const_a = GENERATE(false, true);
  for (auto kind : {Coefficients::decaying, Coefficients::unit}) {
    check<TestType>({8209, 136, const_a, true, 0, 2, kind});
    check<TestType>({8209, 136, const_a, false, 0, 2, kind});
  }
}

TEMPLATE_TEST_CASE("rows of a page or more on two threads: time chunks if the carry fades",
                   "[scan_core][threads]", float, double) {
  // Rows just past 4 KiB go in time chunks on two threads (from 1024 steps
  // a thread, where other rows need 4096) where the carry fades (decaying:
  // the last chunk's end state comes from its rerun or its first pass, no
  // products), in channel blocks where it does not (unit); the readout's
  // rows are narrower than the state's.
  const std::size_t C = 4096 / sizeof(TestType) + 3;
  for (std::size_t L : {std::size_t(2053), std::size_t(8209)}) {
    INFO("L = " << L);
    for (auto kind : {Coefficients::decaying, Coefficients::unit}) check<TestType>({L, C, false, true, 0, 2, kind});
    check<TestType>({L, C - 1, false, false, 2, 2, Coefficients::decaying});
  }
}

TEMPLATE_TEST_CASE("one thread allocates nothing outside the row sweeps", "[scan_core]", float, double,
                   std::complex<float>) {
  // One channel (the lane scan), bundles of chains with scalar tails (up to
  // rows just under kSweepBytes: every bundle size), a readout; lengths 0, 1,
  // 2 (the first with rows to check), a batch and more. Only the sweeps of
  // rows of kSweepBytes and more allocate: their states. (An error message
  // built on every call, thrown or not, once cost ~60 ns a call.)
  constexpr std::size_t W = xsimd::batch<TestType>::size;
  constexpr std::size_t sweep = ssm::detail::RecurrencePlan<xsimd::default_arch, TestType>::kSweepBytes;
  // The OpenMP runtime sets itself up on its first call, not counted here:
  // LLVM's libomp, under the sanitizers, then loads its OMPT tool (libarcher),
  // which allocates through this program's operator new.
  (void)ssm::detail::resolve_threads(0);
  for (std::size_t C : {std::size_t(1), W - 1, 4 * W + 3, sweep / sizeof(TestType) - 4})
    for (std::size_t L : {std::size_t(0), std::size_t(1), std::size_t(2), W + 1, std::size_t(1000)}) {
      const auto at = std::ptrdiff_t(C);
      std::vector<TestType> a(L * C, TestType(0.9f)), b(L * C, TestType(0.1f)), out(L * C), h(C), y(L * 4);
      const long before = test::heap_allocations;
      ssm::linear_recurrence<TestType>(L, C, {a.data(), at}, {b.data(), at}, h.data(), {out.data(), at}, 1);
      ssm::linear_recurrence<TestType>(L, C, {a.data(), 0}, {b.data(), at}, h.data(), {}, 1);
      if (C % 4 == 0)
        ssm::linear_recurrence_readout<TestType>(L, C, {a.data(), at}, {b.data(), at}, h.data(),
                                                 {a.data(), at}, C / 4, {y.data(), 4}, 1);
      const long made = test::heap_allocations - before;
      INFO("L = " << L << ", " << C << " channels");
      CHECK(made == 0);
    }
}

TEST_CASE("states written over b, across threads", "[scan_core][threads]") {
  // out = b (ssm::scan does this): a time chunk's first pass must not write
  // its outputs before its second pass has read b again.
  const int threads = GENERATE(1, 2, 3);
  for (std::size_t C : {std::size_t(1), std::size_t(5), std::size_t(700)}) {
    // time chunks need L >= 4096 x threads; 700 channels split into blocks
    const std::size_t L = C < 700 ? 30011 : 211;
    std::vector<double> a(L * C), b(L * C), h(C, 0.25);
    for (auto& v : a) v = coefficient<double>();
    for (auto& v : b) v = test::uniform<double>();
    const Reference ref =
        reference<double>(L, C, a.data(), std::ptrdiff_t(C), b.data(), std::ptrdiff_t(C), h.data(), nullptr, 0, 0);
    const auto stride = std::ptrdiff_t(C);
    ssm::linear_recurrence<double>(L, C, {a.data(), stride}, {b.data(), stride}, h.data(),
                                   {b.data(), stride}, threads);
    INFO("threads=" << threads << " C=" << C);
    CHECK(relative_error(b.data(), stride, ref.states, L, C, ref.state_scale) <= tolerance<double>());
    CHECK(relative_error(h.data(), 0, ref.final_state, 1, C, ref.final_scale) <= tolerance<double>());
  }
}

TEST_CASE("reversed rows written over b, across threads", "[scan_core][threads]") {
  // negative strides: time runs from the last row to the first, out = b;
  // the overlap check must see the span below the pointer
  const int threads = GENERATE(1, 2, 3);
  const std::size_t C = 5, L = 30011;
  std::vector<double> a(L * C), b(L * C), h(C, 0.25);
  for (auto& v : a) v = coefficient<double>();
  for (auto& v : b) v = test::uniform<double>();
  const auto back = -std::ptrdiff_t(C);
  const double* a_last = a.data() + (L - 1) * C;
  double* b_last = b.data() + (L - 1) * C;
  const Reference ref = reference<double>(L, C, a_last, back, b_last, back, h.data(), nullptr, 0, 0);
  ssm::linear_recurrence<double>(L, C, {a_last, back}, {b_last, back}, h.data(), {b_last, back}, threads);
  INFO("threads=" << threads);
  CHECK(relative_error(b_last, back, ref.states, L, C, ref.state_scale) <= tolerance<double>());
  CHECK(relative_error(h.data(), 0, ref.final_state, 1, C, ref.final_scale) <= tolerance<double>());
}

TEST_CASE("growing coefficients from a zero state, across threads", "[scan_core][threads]") {
  // |a| > 1 over a whole time chunk overflows the chunk's product of a to
  // inf; a state of exactly 0 entering the chunk must not make inf * 0 = NaN
  const int threads = GENERATE(1, 2, 3);
  const std::size_t C = 5, L = 20011;
  std::vector<float> a(L * C, 1.01f), b(L * C, 0.f), out(L * C), h(C, 0.f);
  for (std::size_t c = 0; c < C; ++c) b[(L - 1) * C + c] = float(c + 1);  // only the last step
  ssm::linear_recurrence<float>(L, C, {a.data(), std::ptrdiff_t(C)}, {b.data(), std::ptrdiff_t(C)}, h.data(),
                                {out.data(), std::ptrdiff_t(C)}, threads);
  INFO("threads=" << threads);
  for (std::size_t c = 0; c < C; ++c) CHECK(h[c] == float(c + 1));
  CHECK(std::all_of(out.begin(), out.begin() + std::ptrdiff_t((L - 1) * C), [](float v) { return v == 0.f; }));
}

TEST_CASE("one channel of a million steps, contiguous", "[scan_core][long]") {
  // The lane-scan kernel (consecutive steps in the lanes of a batch), alone
  // and time-chunked across threads.
  const std::size_t L = 1000003;
  const int threads = GENERATE(1, 2);
  const auto kind = GENERATE(Coefficients::decaying, Coefficients::unit, Coefficients::decay_then_grow);
  INFO("threads=" << threads << " coefficients=" << int(kind));
  std::vector<float> a(L), b(L), out(L);
  for (std::size_t t = 0; t < L; ++t) a[t] = coefficient<float>(kind, t);
  for (auto& v : b) v = test::uniform<float>();
  float h = 0.5f;
  std::vector<cdouble> ref(L);
  cdouble x = h;
  for (std::size_t t = 0; t < L; ++t) ref[t] = x = double(a[t]) * x + double(b[t]);
  ssm::linear_recurrence<float>(L, 1, {a.data(), 1}, {b.data(), 1}, &h, {out.data(), 1}, threads);
  double scale = 0, mag = 0.5;  // the error scale, as Reference computes it
  for (std::size_t t = 0; t < L; ++t) scale = std::max(scale, mag = std::abs(a[t]) * mag + std::abs(b[t]));
  CHECK(relative_error(out.data(), 1, ref, L, 1, scale) <= 2e-5);
  CHECK(std::abs(h - x.real()) <= 2e-5 * scale);
}

TEST_CASE("the Eigen overload and bad arguments", "[scan_core][errors]") {
  using Rows = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Rows a = Rows::Constant(1, 3, 0.5), b = Rows::Ones(4, 3);
  Eigen::VectorXd h = Eigen::VectorXd::Zero(3);
  const Rows states = ssm::linear_recurrence(a, b, h);
  // 1, 1.5, 1.75, 1.875: h_t = 2 - 2^-t
  CHECK(states(3, 2) == Approx(1.875).epsilon(1e-15));
  CHECK(h(0) == Approx(1.875).epsilon(1e-15));

  Eigen::VectorXd h2 = Eigen::VectorXd::Zero(2);
  REQUIRE_THROWS_MATCHES(ssm::linear_recurrence(a, b, h2), std::invalid_argument,
                         Catch::Matchers::Message("ssm::linear_recurrence: a must be 4x3 or 1x3 and h 3 "
                                                  "long, got a 1x3, b 4x3, h 2"));
  std::vector<float> x(64);
  REQUIRE_THROWS_MATCHES(
      ssm::linear_recurrence<float>(5, 1, {nullptr, 1}, {x.data(), 1}, x.data()), std::invalid_argument,
      Catch::Matchers::Message("ssm::linear_recurrence: a is null for L = 5, 1 channels"));
  REQUIRE_THROWS_MATCHES(
      ssm::linear_recurrence<float>(5, 3, {x.data(), 3}, {x.data(), 3}, nullptr), std::invalid_argument,
      Catch::Matchers::Message("ssm::linear_recurrence: h is null for 3 channels"));
  std::vector<float> y(64);
  REQUIRE_THROWS_MATCHES(  // the default stride: every step over one row
      ssm::linear_recurrence<float>(4, 3, {x.data(), 3}, {x.data(), 3}, x.data() + 60, {y.data()}),
      std::invalid_argument,
      Catch::Matchers::Message("ssm::linear_recurrence: out.stride must be at least 3 in magnitude (its "
                               "rows hold 3 values), got 0"));
  ssm::linear_recurrence<float>(1, 3, {x.data(), 3}, {x.data(), 3}, x.data() + 60, {y.data()});  // one row
  const float* p = x.data();
  REQUIRE_THROWS_MATCHES(
      ssm::linear_recurrence_readout<float>(5, 4, {p, 0}, {p, 0}, x.data(), {p, 0}, 3, {x.data(), 0}),
      std::invalid_argument,
      Catch::Matchers::Message("ssm::linear_recurrence_readout: 4 channels do not split into 3 groups"));
  REQUIRE_THROWS_MATCHES(
      ssm::linear_recurrence_readout<float>(5, 4, {p, 0}, {p, 0}, x.data(), {p, 0}, 2, {y.data(), 1}),
      std::invalid_argument,
      Catch::Matchers::Message("ssm::linear_recurrence_readout: y.stride must be at least 2 in magnitude (its "
                               "rows hold 2 values), got 1"));
  REQUIRE_THROWS_MATCHES(
      ssm::linear_recurrence_readout<float>(5, 4, {p, 0}, {p, 0}, x.data(), {p, 0}, 2, {nullptr, 2}),
      std::invalid_argument,
      Catch::Matchers::Message("ssm::linear_recurrence_readout: y is null for L = 5, 2 channels"));
}
