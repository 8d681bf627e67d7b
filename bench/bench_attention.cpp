// Causal softmax attention, the O(L^2) baseline, against the machine's own
// ceiling measured in the same run: Eigen's single-precision GEMM.
//
// Useful work of causal attention: Q K^T and P V over the L^2 / 2 visible
// (query, key) pairs, 2 * 2 * H * Dh * L^2 / 2 FLOP (masked work and the
// exp are not counted). vs_gemm = that rate / the best Eigen GEMM rate at the
// same thread count, measured earlier in this run (GEMMs run first).
//
//   bench_attention --benchmark_filter='gemm|tiled/L:4096/'   # the ratio
//   bench_attention --benchmark_filter=tiled                  # L = 256 .. 16K
#include "ceilings.hpp"

#include <ssm/baseline/attention.hpp>

#include <Eigen/Core>
#include <benchmark/benchmark.h>
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __GLIBC__
#include <malloc.h>
#endif

namespace {

using ssm::baseline::RowMatrix;

constexpr Eigen::Index heads = 12, head_dim = 64, d_model = heads * head_dim;

using bench::set_threads;

// Best GFLOP/s seen per thread count: GEMM (the ceiling) and tiled attention.
std::map<int, double> gemm_best, attention_best;

// Runs body over the benchmark loop; returns and reports GFLOP/s of wall time
// (OpenMP threads work while the main thread's CPU clock would undercount).
template <class Body>
double run_gflops(benchmark::State& st, double flop_per_iteration, Body&& body) {
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : st) body();
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  const double gflops = flop_per_iteration * double(st.iterations()) / elapsed.count() * 1e-9;
  st.counters["GFLOP/s"] = gflops;
  return gflops;
}

RowMatrix<float> random_rows(Eigen::Index rows, Eigen::Index cols) {
  return RowMatrix<float>::Random(rows, cols);
}

void BM_gemm(benchmark::State& st) {
  const Eigen::Index M = st.range(0), K = st.range(1), N = st.range(2);
  const int threads = int(st.range(3));
  set_threads(threads);
  const Eigen::MatrixXf a = Eigen::MatrixXf::Random(M, K), b = Eigen::MatrixXf::Random(K, N);
  Eigen::MatrixXf c(M, N);
  const double g = run_gflops(st, 2.0 * double(M) * double(N) * double(K), [&] {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  });
  gemm_best[threads] = std::max(gemm_best[threads], g);
}
// Q K^T of one head at L = 4096, and a square GEMM.
BENCHMARK(BM_gemm)
    ->ArgNames({"M", "K", "N", "threads"})
    ->Args({4096, 64, 4096, 1})->Args({4096, 64, 4096, 2})
    ->Args({2048, 2048, 2048, 1})->Args({2048, 2048, 2048, 2})
    ->UseRealTime();

double attention_flop(Eigen::Index L) { return 2.0 * 2.0 * heads * head_dim * double(L) * double(L) / 2; }

void report_ratio(benchmark::State& st, int threads, double g) {
  const auto it = gemm_best.find(threads);
  if (it != gemm_best.end()) st.counters["vs_gemm"] = g / it->second;
}

void BM_attention_tiled(benchmark::State& st) {
  const Eigen::Index L = st.range(0);
  const int threads = int(st.range(1));
  set_threads(threads);
  const RowMatrix<float> q = random_rows(L, d_model), k = random_rows(L, d_model),
                         v = random_rows(L, d_model);
  const double g = run_gflops(st, attention_flop(L), [&] {
    const RowMatrix<float> out = ssm::baseline::causal_attention(q, k, v, heads);
    benchmark::DoNotOptimize(out.data());
  });
  report_ratio(st, threads, g);
  if (L == 4096) attention_best[threads] = std::max(attention_best[threads], g);
}
BENCHMARK(BM_attention_tiled)
    ->ArgNames({"L", "threads"})
    ->ArgsProduct({{4096, 256, 512, 1024, 2048, 8192, 16384}, {1, 2}})
    ->UseRealTime();

void BM_attention_naive(benchmark::State& st) {
  const Eigen::Index L = st.range(0);
  const int threads = int(st.range(1));
  set_threads(threads);
  const RowMatrix<float> q = random_rows(L, d_model), k = random_rows(L, d_model),
                         v = random_rows(L, d_model);
  const double g = run_gflops(st, attention_flop(L), [&] {
    const RowMatrix<float> out = ssm::baseline::causal_attention_naive(q, k, v, heads);
    benchmark::DoNotOptimize(out.data());
  });
  report_ratio(st, threads, g);
}
BENCHMARK(BM_attention_naive)
    ->ArgNames({"L", "threads"})
    ->ArgsProduct({{256, 1024, 4096}, {1, 2}})
    ->UseRealTime();

// One decode step of the op: the newest token's query over n cached tokens.
// Memory-bound: it reads the whole cache once.
void BM_decode_attention(benchmark::State& st) {
  const Eigen::Index n = st.range(0);
  set_threads(int(st.range(1)));
  ssm::baseline::KvCache<float> cache(heads, head_dim, n);
  cache.append(random_rows(n, d_model), random_rows(n, d_model));
  const RowMatrix<float> q = random_rows(1, d_model);
  for (auto _ : st) {
    const RowMatrix<float> out = ssm::baseline::causal_attention(q, cache);
    benchmark::DoNotOptimize(out.data());
  }
  st.SetItemsProcessed(st.iterations());  // tokens
  st.SetBytesProcessed(st.iterations() * int64_t(cache.memory_bytes()));
  st.counters["cache_MiB"] = double(cache.memory_bytes()) / (1 << 20);
}
BENCHMARK(BM_decode_attention)
    ->ArgNames({"n", "threads"})
    ->ArgsProduct({{1024, 4096, 16384}, {1, 2}})
    ->UseRealTime();

ssm::baseline::CausalSelfAttention<float> random_layer() {
  ssm::baseline::CausalSelfAttention<float> layer(d_model, heads);
  for (auto* w : {&layer.w_q, &layer.w_k, &layer.w_v, &layer.w_o})
    *w = random_rows(d_model, d_model) / std::sqrt(float(d_model));
  return layer;
}

// The layer over a whole sequence (projections + attention), per token.
void BM_layer_forward(benchmark::State& st) {
  const Eigen::Index L = st.range(0);
  set_threads(int(st.range(1)));
  const auto layer = random_layer();
  const RowMatrix<float> x = random_rows(L, d_model);
  for (auto _ : st) {
    const RowMatrix<float> y = layer.forward(x);
    benchmark::DoNotOptimize(y.data());
  }
  st.SetItemsProcessed(st.iterations() * L);  // tokens
}
BENCHMARK(BM_layer_forward)
    ->ArgNames({"L", "threads"})
    ->ArgsProduct({{1024, 4096}, {1, 2}})
    ->UseRealTime();

// One decode step of the layer after n tokens (the cache is cut back to n
// after each step, untimed).
void BM_layer_step(benchmark::State& st) {
  const Eigen::Index n = st.range(0);
  set_threads(int(st.range(1)));
  const auto layer = random_layer();
  auto cache = layer.make_cache(n + 1);
  cache.append(random_rows(n, d_model), random_rows(n, d_model));  // any n earlier tokens
  const RowMatrix<float> x = random_rows(1, d_model);
  for (auto _ : st) {
    const RowMatrix<float> y = layer.step(x, cache);
    benchmark::DoNotOptimize(y.data());
    cache.truncate(n);
  }
  st.SetItemsProcessed(st.iterations());  // tokens
  st.counters["cache_MiB"] = double(cache.memory_bytes()) / (1 << 20);
}
BENCHMARK(BM_layer_step)
    ->ArgNames({"n", "threads"})
    ->ArgsProduct({{1024, 4096, 16384}, {1, 2}})
    ->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
#ifdef __GLIBC__
  // Steady state, as in a serving process that reuses its buffers: glibc
  // keeps freed memory instead of returning it to the OS, so each call does
  // not fault its pages in again (on this VM a 4 KiB fault costs ~10 us, a
  // quarter of an L = 4096 call). SSM_BENCH_MALLOC_DEFAULT=1 turns it off.
  const char* keep_default = std::getenv("SSM_BENCH_MALLOC_DEFAULT");
  if (!keep_default || std::string(keep_default) != "1") {
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, -1);
  }
#endif
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("simd", xsimd::default_arch::name());
  benchmark::AddCustomContext("eigen_simd", Eigen::SimdInstructionSetsInUse());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  // The target: tiled attention at L = 4096 >= 50% of Eigen's GEMM. The FMA
  // units' peak (2 FLOP per lane) puts both in scale.
  for (const auto& [threads, g] : attention_best) {
    const auto it = gemm_best.find(threads);
    if (it == gemm_best.end()) continue;
    const double peak = 2 * bench::fma_lanes_per_second(threads) * 1e-9;
    std::fprintf(stderr,
                 "attention L=4096 H=12 Dh=64, %d thread(s): %.1f GFLOP/s = %.0f%% of Eigen "
                 "sgemm %.1f GFLOP/s (FMA peak %.0f GFLOP/s: attention %.0f%%, sgemm %.0f%%)\n",
                 threads, g, 100 * g / it->second, it->second, peak, 100 * g / peak,
                 100 * it->second / peak);
  }
  return 0;
}
