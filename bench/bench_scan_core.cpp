// The scan core h_t = a_t h_{t-1} + b_t (float, time-varying a, every state
// stored): state updates per second of the SIMD core against a plain scalar
// loop, over L, channels and threads, each next to the machine's ceiling
// for the same bytes measured in the same run:
//   ceiling = min(vector FMA lanes/s, streaming bandwidth / 12 bytes),
// 12 bytes = a_t and b_t read, h_t written; for one channel the lane
// scan's own arithmetic rate (bench::lane_scan_steps_per_second) instead of
// the FMA lanes. Counters: items_per_second
// (state updates/s), ceiling (for this working set and thread count),
// share (items_per_second / ceiling), share_best (the loop's fastest 2 ms
// window / ceiling: measured as the ceiling is, the best of several
// timings; bench::BestWindow).
//
//   build/release/bench/bench_scan_core --benchmark_min_time=0.2
#include <ssm/detail/aligned.hpp>
#include <ssm/linear_recurrence.hpp>

#include "ceilings.hpp"
#include "scalar_recurrence.hpp"

#include <benchmark/benchmark.h>
#include <xsimd/xsimd.hpp>

#include <chrono>
#include <random>
#include <vector>

namespace {

// a, b and out on cache lines, as the ceiling's stream reads and writes
// them. From malloc (16 bytes off a line) rows of a single batch split
// every load and store across two lines: 16 x 2^10 floats, in L2, 0.93x
// the updates/s with the rows on lines, and the stream 0.94x (a Sapphire
// Rapids-class Xeon; bench/LOG.md, scan core "Stop 45").
struct Problem {
  using Buffer = ssm::detail::line_vector<float>;
  std::size_t L, C;
  Buffer a, b, out, h;
  Problem(std::size_t L_, std::size_t C_) : L(L_), C(C_), a(L * C), b(L * C), out(L * C), h(C) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> coef(0.5f, 0.999f), input(-1.f, 1.f);
    for (auto& v : a) v = coef(rng);
    for (auto& v : b) v = input(rng);
  }
};

// Measure(threads), measured once per thread count.
template <double (*Measure)(int)>
double once(int threads) {
  static double cached[65] = {};
  if (cached[threads] == 0) cached[threads] = Measure(threads);
  return cached[threads];
}
constexpr auto fma_ceiling = once<bench::fma_lanes_per_second>;
constexpr auto lane_scan_ceiling = once<bench::lane_scan_steps_per_second>;

// The whole timed loop, not each call: two clock reads around a 0.3 us call
// (one channel of 2^10 steps) would be part of what is measured.
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Items, the ceiling for this working set and thread count, and the share of
// it that `seconds` of timed runs reached, and their best window.
void report(benchmark::State& st, Problem& p, int threads, double seconds,
            const bench::BestWindow& best) {
  const double updates = double(p.L * p.C) * double(st.iterations());
  const double bandwidth =
      bench::stream_bytes_per_second(p.a.data(), p.b.data(), p.out.data(), p.L * p.C, threads);
  // one channel runs the lane scan: bound by its arithmetic, not one FMA
  const double compute = p.C == 1 ? lane_scan_ceiling(threads) : fma_ceiling(threads);
  const double ceiling = std::min(compute, bandwidth / 12.0);
  st.SetItemsProcessed(std::int64_t(updates));
  st.counters["ceiling"] = ceiling;
  st.counters["share"] = updates / seconds / ceiling;
  if (best.seconds_per_call() > 0)
    st.counters["share_best"] = double(p.L * p.C) / best.seconds_per_call() / ceiling;
}

void BM_ScanCore(benchmark::State& st) {
  const auto L = std::size_t(st.range(0)), C = std::size_t(st.range(1));
  const int threads = int(st.range(2));
  Problem p(L, C);
  const ssm::Steps<const float> a{p.a.data(), std::ptrdiff_t(C)}, b{p.b.data(), std::ptrdiff_t(C)};
  const ssm::Steps<float> out{p.out.data(), std::ptrdiff_t(C)};
  bench::BestWindow best;
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : st) {
    ssm::linear_recurrence<float>(L, C, a, b, p.h.data(), out, threads);
    benchmark::DoNotOptimize(p.out.data());
    best.tick();
  }
  report(st, p, threads, seconds_since(t0), best);
}

void BM_ScalarLoop(benchmark::State& st) {
  const auto L = std::size_t(st.range(0)), C = std::size_t(st.range(1));
  Problem p(L, C);
  bench::BestWindow best;
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : st) {
    bench::scalar_recurrence(p.a.data(), p.b.data(), p.h.data(), p.out.data(), L, C);
    benchmark::DoNotOptimize(p.out.data());
    best.tick();
  }
  report(st, p, 1, seconds_since(t0), best);
}

int max_threads() { return ssm::detail::resolve_threads(0); }

// (L, C) shapes: L from 2^10 to 2^24 for one channel; channels from 1 to
// 4096; at most 2^24 updates (192 MiB of float data) each. 40 and 100
// channels are not a power of two: several bundles of chains, and with
// AVX-512 channels left over from the batches.
const std::vector<std::pair<std::int64_t, std::int64_t>> shapes = {
    {1 << 10, 1},    {1 << 14, 1},    {1 << 18, 1},    {1 << 22, 1},   {1 << 24, 1},
    {1 << 10, 16},   {1 << 16, 16},   {1 << 20, 16},   {1 << 12, 40},  {1 << 10, 64},
    {1 << 14, 64},   {1 << 18, 64},   {1 << 12, 100},  {1 << 10, 256}, {1 << 16, 256},
    {1 << 8, 1024},  {1 << 10, 1024}, {1 << 14, 1024}, {1 << 8, 4096}, {1 << 12, 4096}};

void core_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"L", "C", "threads"});
  std::vector<int> threads = {1, 2};
  if (max_threads() > 2) threads.push_back(max_threads());
  for (const auto& [L, C] : shapes)
    for (int t : threads) b->Args({L, C, t});
}

void scalar_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"L", "C"});
  for (const auto& [L, C] : shapes)
    if (L * C <= (1 << 22)) b->Args({L, C});
}

}  // namespace

BENCHMARK(BM_ScanCore)->Apply(core_args)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ScalarLoop)->Apply(scalar_args)->UseRealTime()->Unit(benchmark::kMicrosecond);

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("simd", xsimd::default_arch::name());
  benchmark::AddCustomContext("max_threads", std::to_string(max_threads()));
  benchmark::AddCustomContext("fma_lanes_per_s_1_thread", std::to_string(fma_ceiling(1)));
  benchmark::AddCustomContext("lane_scan_steps_per_s_1_thread", std::to_string(lane_scan_ceiling(1)));
  benchmark::AddCustomContext("line_transfer_ns_2_threads",
                              std::to_string(bench::line_transfer_ns()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
