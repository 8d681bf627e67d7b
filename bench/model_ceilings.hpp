// What the whole-model benchmarks (bench_mamba, bench_mamba2) share: peak
// memory, random prompts, and the two ceilings of a language model measured
// on this machine: Eigen SGEMM throughput (prefill is bound by matrix
// products) and read bandwidth (decode reads every weight once).
#pragma once

#include "ceilings.hpp"

#include <Eigen/Core>
#include <benchmark/benchmark.h>
#include <xsimd/xsimd.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace bench {

// The process's peak resident memory so far, MiB.
inline double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;
}

// Eigen SGEMM FLOP/s on the in_proj product of a 2048-token prompt of the
// 130m shapes (2048x768 @ 768x3072), measured once per thread count.
inline double gemm_flops(int threads) {
  static double cached[65] = {};
  if (cached[threads] > 0) return cached[threads];
  set_threads(threads);
  const Eigen::MatrixXf a = Eigen::MatrixXf::Random(2048, 768), b = Eigen::MatrixXf::Random(768, 3072);
  Eigen::MatrixXf c(2048, 3072);
  const double s = best_time([&] { c.noalias() = a * b; }, 5);
  return cached[threads] = 2.0 * 2048 * 768 * 3072 / s;
}

namespace detail {

// The sum of p[0, S * part) read as S streams side by side, each with a
// software prefetch `ahead` floats ahead (0: none) that stays below p[end].
template <int S>
float read_streams(const float* p, std::size_t part, std::size_t end, std::size_t ahead) {
  using batch = xsimd::batch<float>;
  batch acc[S];
  for (auto& a : acc) a = batch(0.f);
  for (std::size_t i = 0; i < part; i += batch::size)
    for (int k = 0; k < S; ++k) {
      const std::size_t at = std::size_t(k) * part + i;
      if (ahead) __builtin_prefetch(p + std::min(at + ahead, end - 1));
      acc[k] += batch::load_unaligned(p + at);
    }
  batch sum(0.f);
  for (const auto& a : acc) sum += a;
  return xsimd::hadd(sum);
}

// Seconds for `threads` threads to read buf, each its share as S streams.
template <int S>
double timed_read(const std::vector<float>& buf, int threads, std::size_t ahead) {
  const std::size_t n = buf.size();
  std::vector<float> sink(std::size_t(threads), 0.f);
  return best_time([&] {
#pragma omp parallel num_threads(threads)
    {
      const std::size_t j = std::size_t(ssm::detail::thread_index()), m = std::size_t(ssm::detail::team_size());
      const std::size_t i0 = n * j / m, part = n / m / S / 16 * 16;
      sink[j] = read_streams<S>(buf.data() + i0, part, n - i0, ahead);
    }
  }, 3);
}

}  // namespace detail

// The read bandwidth of `threads` threads, in bytes per second: the best of
// several ways of streaming 1 GiB (each thread's share as 1, 2, 4 or 8
// streams side by side; hardware prefetch alone, or software prefetch 1 KiB
// or 16 KiB ahead), measured once per thread count. One stream alone read
// 25 GB/s on one Zen 5 core where the best of these read 34
// (bench/RESULTS.md, "The decode roof"): the hardware prefetchers stop at
// each 4 KiB page, and more streams or a software prefetch keep more lines
// in flight.
inline double read_bandwidth(int threads) {
  static double cached[65] = {};
  if (cached[threads] > 0) return cached[threads];
  const std::vector<float> buf(std::size_t(1) << 28, 1.f);
  double best = 1e300;
  for (const std::size_t ahead : {std::size_t(0), std::size_t(256), std::size_t(4096)}) {
    best = std::min(best, detail::timed_read<1>(buf, threads, ahead));
    best = std::min(best, detail::timed_read<2>(buf, threads, ahead));
    best = std::min(best, detail::timed_read<4>(buf, threads, ahead));
    best = std::min(best, detail::timed_read<8>(buf, threads, ahead));
  }
  return cached[threads] = 4.0 * double(buf.size()) / best;
}

// n token ids drawn uniformly from [0, vocab), the same on every call.
inline std::vector<std::int32_t> random_tokens(std::size_t n, std::int64_t vocab) {
  std::mt19937 rng(1);
  std::vector<std::int32_t> t(n);
  for (auto& x : t) x = std::int32_t(std::uniform_int_distribution<std::int64_t>(0, vocab - 1)(rng));
  return t;
}

// The prefill benchmark of either model (Workspace: MambaWorkspace or
// Mamba2Workspace): L random tokens from an empty cache, last logits only.
// Counters: tok_s; ceiling_tok_s = sgemm FLOP/s over the matrix FLOP per
// token (2 matrix_params per token, the head once per prompt); share;
// gemm_gflops; peak_rss_mb.
template <class Workspace, class Model>
void run_prefill(benchmark::State& st, const Model& m, std::size_t L, int threads,
                 double matrix_params) {
  const auto& c = m.config();
  const auto tokens = random_tokens(L, c.vocab_size);
  std::vector<float> logits(std::size_t(c.vocab_size));
  Workspace ws;
  const double gemm = gemm_flops(threads);
  set_threads(threads);
  double seconds = 0;
  for (auto _ : st) {
    auto cache = m.new_cache();
    const auto t0 = std::chrono::steady_clock::now();
    m.forward(tokens.data(), L, cache, logits.data(), 1, ws);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    benchmark::DoNotOptimize(logits.data());
  }
  const double flops_per_token = 2.0 * (matrix_params + double(c.vocab_size * c.d_model) / double(L));
  st.counters["tok_s"] = benchmark::Counter(double(L), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["ceiling_tok_s"] = gemm / flops_per_token;
  st.counters["share"] = double(L) * double(st.iterations()) / seconds / (gemm / flops_per_token);
  st.counters["gemm_gflops"] = gemm / 1e9;
  st.counters["peak_rss_mb"] = peak_rss_mb();
}

// The decode benchmark of either model: one token at a time after a
// 16-token prompt. A step reads every weight once and reads and writes the
// cache (conv and SSM states), so its roof is the read bandwidth over
// weight_bytes + 2 x the cache's bytes (writes counted as reads: a store
// costs at least that). The cache is 0.5% of the bytes for Mamba-1 130m and
// 7% for Mamba-2 130m (state 128). Counters: tok_s; ceiling_tok_s and share
// against that roof; share_weights_only against the weights alone;
// read_gb_s (read_bandwidth(threads)); cache_mb; peak_rss_mb.
template <class Workspace, class Model>
void run_decode(benchmark::State& st, const Model& m, int threads, double weight_bytes) {
  const double bandwidth = read_bandwidth(threads);
  const auto& c = m.config();
  set_threads(threads);
  Workspace ws;
  auto cache = m.new_cache();
  std::vector<float> logits(std::size_t(c.vocab_size));
  const auto prompt = random_tokens(16, c.vocab_size);
  m.forward(prompt.data(), prompt.size(), cache, logits.data(), 1, ws);
  decltype(cache)* caches[] = {&cache};
  std::int32_t token = prompt.back();
  double seconds = 0;
  for (auto _ : st) {
    const auto t0 = std::chrono::steady_clock::now();
    m.step(&token, caches, 1, logits.data(), ws);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    token = std::int32_t((token * 31 + 7) % c.vocab_size);
    benchmark::DoNotOptimize(logits.data());
  }
  const double tok_s = double(st.iterations()) / seconds;
  const double cache_bytes = double(cache.conv.size() + cache.ssm.size()) * sizeof(float);
  const double roof = bandwidth / (weight_bytes + 2 * cache_bytes);
  st.counters["tok_s"] = benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["ceiling_tok_s"] = roof;
  st.counters["share"] = tok_s / roof;
  st.counters["share_weights_only"] = tok_s / (bandwidth / weight_bytes);
  st.counters["read_gb_s"] = bandwidth / 1e9;
  st.counters["cache_mb"] = cache_bytes / 1e6;
  st.counters["peak_rss_mb"] = peak_rss_mb();
}

}  // namespace bench
