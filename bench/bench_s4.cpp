// S4D layer (float, H = 32 channels): convolution mode against recurrent
// mode over the length L and the modes per channel N.
//   BM_S4D_Recurrent   ssm::recurrent: the SIMD scan, O(H N L)
//   BM_S4D_Conv        ssm::convolve: Vandermonde kernel + FFTs, O(H N L + H L log L)
//   BM_S4D_ConvGivenK  the FFT convolution alone, kernel computed beforehand
//                      (parameters fixed, kernel reused across inputs)
//   BM_S4D_Kernel      ssm::kernel alone
// Counters: items_per_second = time steps x channels per second (L H per
// run); updates = state updates per second (L H N); for the recurrence and the
// kernel, share = their FMA-unit operations per second (8 per update for the
// recurrence, 5 per term for the kernel) over the machine's vector FMA lanes
// per second, measured in this binary with the same threads. Take the median
// over repetitions (the first run of a size also faults in its output), e.g.
// on one core (bench/RESULTS.md, "S4D"):
//
//   OMP_NUM_THREADS=1 build/release/bench/bench_s4 --benchmark_min_time=0.1
//     --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
//     --benchmark_format=json
#include <ssm/s4d.hpp>

#include "ceilings.hpp"

#include <benchmark/benchmark.h>
#include <malloc.h>

#include <chrono>
#include <random>
#include <string>

namespace {

constexpr Eigen::Index H = 32;

struct Problem {
  ssm::S4DDiscrete<float> d;
  Eigen::MatrixXf u;
  Problem(Eigen::Index L, Eigen::Index N) {
    std::mt19937 rng(5);
    d = ssm::discretize(ssm::make_s4d<float>(H, N, ssm::S4DInit::lin, rng));
    u = Eigen::MatrixXf::Random(L, H);
  }
};

int threads() { return ssm::detail::resolve_threads(0); }

double fma_ceiling() {
  static const double lanes = bench::fma_lanes_per_second(threads());
  return lanes;
}

// Runs `body` under the benchmark loop, timing each run, and reports the
// counters (ops_per_update = 0: no share).
template <class Body>
void run(benchmark::State& st, Eigen::Index L, Eigen::Index N, double ops_per_update, Body&& body) {
  double seconds = 0;
  for (auto _ : st) {
    const auto t0 = std::chrono::steady_clock::now();
    body();
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  const double updates = double(st.iterations()) * double(L * H * N);
  st.SetItemsProcessed(st.iterations() * std::int64_t(L * H));
  st.counters["updates"] = benchmark::Counter(updates, benchmark::Counter::kIsRate);
  if (ops_per_update > 0) st.counters["share"] = updates * ops_per_update / seconds / fma_ceiling();
}

void BM_S4D_Recurrent(benchmark::State& st) {
  const Eigen::Index L = st.range(0), N = st.range(1);
  Problem p(L, N);
  run(st, L, N, 8, [&] {
    ssm::S4DState<float> x = ssm::S4DState<float>::Zero(H, N);
    Eigen::MatrixXf y = ssm::recurrent(p.d, p.u, x);
    benchmark::DoNotOptimize(y.data());
  });
}

void BM_S4D_Conv(benchmark::State& st) {
  const Eigen::Index L = st.range(0), N = st.range(1);
  Problem p(L, N);
  run(st, L, N, 0, [&] {
    Eigen::MatrixXf y = ssm::convolve(p.d, p.u);
    benchmark::DoNotOptimize(y.data());
  });
}

void BM_S4D_ConvGivenK(benchmark::State& st) {
  const Eigen::Index L = st.range(0), N = st.range(1);
  Problem p(L, N);
  const Eigen::MatrixXf K = ssm::kernel(p.d, L);
  run(st, L, N, 0, [&] {
    Eigen::MatrixXf y = ssm::detail::convolve_channels<float>(K, p.u, p.d.D);
    benchmark::DoNotOptimize(y.data());
  });
}

void BM_S4D_Kernel(benchmark::State& st) {
  const Eigen::Index L = st.range(0), N = st.range(1);
  Problem p(1, N);
  run(st, L, N, 5, [&] {
    Eigen::MatrixXf K = ssm::kernel(p.d, L);
    benchmark::DoNotOptimize(K.data());
  });
}

void args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"L", "N"})
      ->ArgsProduct({benchmark::CreateRange(1 << 8, 1 << 20, 4), {16, 64, 256}})
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_S4D_Recurrent)->Apply(args);
BENCHMARK(BM_S4D_Conv)->Apply(args);
BENCHMARK(BM_S4D_ConvGivenK)->Apply(args);
BENCHMARK(BM_S4D_Kernel)->Apply(args);

}  // namespace

int main(int argc, char** argv) {
  // Keep freed memory mapped (glibc): every run allocates its output (and conv
  // mode its kernel and FFT buffers) afresh, and first touches of new pages
  // would otherwise dominate on machines where page faults are slow.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, -1);
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("simd", xsimd::default_arch::name());
  benchmark::AddCustomContext("threads", std::to_string(threads()));
  benchmark::AddCustomContext("H", std::to_string(H));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
