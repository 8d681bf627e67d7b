// The selective scan (float, batch 1), in state updates per second:
//   BM_SelectiveScan/D/N/L           the op as selective_scan_ref's defaults
//                                    (no softplus, bias, D skip or gate), 1 thread
//   BM_SelectiveScanThreads/D/N/L/T  the same with T threads
//   BM_SelectiveScanMamba/D/N/L/T    as a Mamba block calls it: delta_bias,
//                                    softplus, D skip and SiLU(z) gate
//   BM_ScalarSelectiveScan/D/N/L     a plain scalar loop (no auto-vectorization)
//   BM_ExpCeiling/T                  xsimd::exp throughput: the ceiling, since
//                                    the scan costs one exponential per update
// Counters: share_of_exp = updates/s over the exp ceiling of the same thread
// count, measured in the same run.
//
//   build/release/bench/bench_selective_scan --benchmark_min_time=0.3
#include <ssm/detail/pages.hpp>
#include <ssm/selective_scan.hpp>

#include "ceilings.hpp"
#include "scalar_selective_scan.hpp"

#include <benchmark/benchmark.h>

#include <random>
#include <vector>

namespace {

// xsimd::exp results per second with T threads, over 4096 arguments in L1
// (Delta A-like values in [-10, 0]), 8 independent chains per thread.
double exp_per_second(int threads) {
  using batch = xsimd::batch<float>;
  static double cached[65] = {};
  if (cached[threads] > 0) return cached[threads];
  constexpr std::size_t n = 4096;
  std::vector<float> x(n), sink(64 * 16);
  for (std::size_t i = 0; i < n; ++i) x[i] = -10.f * float(i) / n;
  const int reps = 2000;
  const double s = bench::best_time([&] {
#pragma omp parallel num_threads(threads)
    {
      batch acc(0.f);
      for (int r = 0; r < reps; ++r)
        for (std::size_t i = 0; i < n; i += batch::size) acc += xsimd::exp(batch::load_unaligned(&x[i]));
      acc.store_unaligned(&sink[std::size_t(ssm::detail::thread_index()) * 16]);
    }
  }, 3);
  return cached[threads] = double(n) * reps * threads / s;
}

// The rows the scan walks (u, delta, B and C, y, z) in 2 MiB pages where
// Linux offers them, as the models' workspaces hold them (detail/pages.hpp).
using Rows = std::vector<float, ssm::detail::PageAllocator<float>>;

struct Problem {
  std::size_t L, D, N;
  Rows u, delta, BC, y, z;
  std::vector<float> A, state, bias, Dk;
  ssm::SelectiveScanArgs args;
  Problem(std::size_t L_, std::size_t D_, std::size_t N_, bool mamba)
      : L(L_), D(D_), N(N_), u(L * D), delta(L * D), BC(L * 2 * N), y(L * D), z(L * D), A(D * N),
        state(D * N), bias(D), Dk(D) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> uni(-1, 1);
    for (auto& v : u) v = uni(rng);
    for (auto& v : delta) v = mamba ? 2 * uni(rng) - 3 : 0.05f * (uni(rng) + 1);
    for (std::size_t d = 0; d < D; ++d)
      for (std::size_t n = 0; n < N; ++n) A[d * N + n] = -float(n + 1) * (1 + 0.3f * uni(rng));
    for (auto& v : BC) v = uni(rng);
    for (auto& v : bias) v = 0.5f * uni(rng);
    for (auto& v : Dk) v = uni(rng);
    for (auto& v : z) v = 2 * uni(rng);
    auto& p = args;
    p.L = L, p.D = D, p.N = N;
    p.u = u.data(), p.u_time_stride = std::ptrdiff_t(D);
    p.delta = delta.data(), p.delta_time_stride = std::ptrdiff_t(D);
    p.A = A.data(), p.A_d_stride = std::ptrdiff_t(N);
    p.B = BC.data(), p.B_time_stride = std::ptrdiff_t(2 * N);  // B and C interleaved, as x_proj gives them
    p.C = BC.data() + N, p.C_time_stride = std::ptrdiff_t(2 * N);
    p.y = y.data(), p.y_time_stride = std::ptrdiff_t(D);
    if (mamba) {
      p.delta_bias = bias.data();
      p.delta_softplus = true;
      p.D_skip = Dk.data();
      p.z = z.data(), p.z_time_stride = std::ptrdiff_t(D);
    }
  }
};

void run(benchmark::State& st, bool mamba, int threads) {
  Problem pr(std::size_t(st.range(2)), std::size_t(st.range(0)), std::size_t(st.range(1)), mamba);
  const ssm::SelectiveScanPlan<> plan(pr.args);
  for (auto _ : st) {
    plan.run(pr.args, threads);
    benchmark::DoNotOptimize(pr.y.data());
  }
  const double updates = double(pr.L * pr.D * pr.N);
  st.SetItemsProcessed(std::int64_t(updates) * std::int64_t(st.iterations()));
  st.counters["share_of_exp"] = benchmark::Counter(updates / exp_per_second(threads),
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

void BM_SelectiveScan(benchmark::State& st) { run(st, false, 1); }
void BM_SelectiveScanThreads(benchmark::State& st) { run(st, false, int(st.range(3))); }
void BM_SelectiveScanMamba(benchmark::State& st) { run(st, true, int(st.range(3))); }

void BM_ScalarSelectiveScan(benchmark::State& st) {
  Problem pr(std::size_t(st.range(2)), std::size_t(st.range(0)), std::size_t(st.range(1)), false);
  for (auto _ : st) {
    std::fill(pr.state.begin(), pr.state.end(), 0.f);
    bench::scalar_selective_scan(pr.u.data(), pr.delta.data(), pr.A.data(), pr.BC.data(),
                                 pr.BC.data() + pr.N, pr.state.data(), pr.y.data(), pr.L, pr.D,
                                 pr.N);
    benchmark::DoNotOptimize(pr.y.data());
  }
  const double updates = double(pr.L * pr.D * pr.N);
  st.SetItemsProcessed(std::int64_t(updates) * std::int64_t(st.iterations()));
  st.counters["share_of_exp"] = benchmark::Counter(updates / exp_per_second(1),
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

void BM_ExpCeiling(benchmark::State& st) {
  const int threads = int(st.range(0));
  double rate = 0;
  for (auto _ : st) rate = exp_per_second(threads);
  st.counters["exp_per_second"] = rate;
}

}  // namespace

// scalar loop with B, C rows of N: give it its own contiguous layout
BENCHMARK(BM_ExpCeiling)->Arg(1)->Arg(2)->Iterations(1);
BENCHMARK(BM_SelectiveScan)->Args({1536, 16, 2048})->Args({1536, 16, 512})->Args({768, 16, 2048})
    ->Args({1536, 16, 1})->Args({2048, 16, 2048})->Args({1536, 64, 512})->Args({1000, 7, 1024})
    ->UseRealTime();
BENCHMARK(BM_SelectiveScanThreads)->Args({1536, 16, 2048, 1})->Args({1536, 16, 2048, 2})
    ->UseRealTime();
BENCHMARK(BM_SelectiveScanMamba)->Args({1536, 16, 2048, 1})->Args({1536, 16, 2048, 2})
    ->Args({1536, 16, 1, 1})->UseRealTime();
BENCHMARK(BM_ScalarSelectiveScan)->Args({1536, 16, 2048})->Args({1536, 16, 512})->UseRealTime();

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("simd", xsimd::default_arch::name());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
