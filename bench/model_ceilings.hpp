// What the whole-model benchmarks (bench_mamba, bench_mamba2) share: peak
// memory, random prompts, and the two ceilings of a language model measured
// on this machine: Eigen SGEMM throughput (prefill is bound by matrix
// products) and read bandwidth (decode reads every weight once).
#pragma once

#include "ceilings.hpp"

#include <Eigen/Core>
#include <xsimd/xsimd.hpp>

#include <sys/resource.h>

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

// Bytes per second read by `threads` threads streaming 1 GiB, measured once
// per thread count.
inline double read_bandwidth(int threads) {
  static double cached[65] = {};
  if (cached[threads] > 0) return cached[threads];
  using batch = xsimd::batch<float>;
  const std::size_t n = std::size_t(1) << 28;
  std::vector<float> buf(n, 1.f), sink(64 * batch::size);
  const double s = best_time([&] {
#pragma omp parallel num_threads(threads)
    {
      const std::size_t j = std::size_t(ssm::detail::thread_index()), m = std::size_t(ssm::detail::team_size());
      const std::size_t i0 = n * j / m / 64 * 64, i1 = n * (j + 1) / m / 64 * 64;
      batch a0(0.f), a1(0.f), a2(0.f), a3(0.f);
      for (std::size_t i = i0; i < i1; i += 4 * batch::size) {
        a0 += batch::load_unaligned(&buf[i]);
        a1 += batch::load_unaligned(&buf[i + batch::size]);
        a2 += batch::load_unaligned(&buf[i + 2 * batch::size]);
        a3 += batch::load_unaligned(&buf[i + 3 * batch::size]);
      }
      ((a0 + a1) + (a2 + a3)).store_unaligned(&sink[j * batch::size]);
    }
  }, 3);
  return cached[threads] = 4.0 * double(n) / s;
}

// n token ids drawn uniformly from [0, vocab), the same on every call.
inline std::vector<std::int32_t> random_tokens(std::size_t n, std::int64_t vocab) {
  std::mt19937 rng(1);
  std::vector<std::int32_t> t(n);
  for (auto& x : t) x = std::int32_t(std::uniform_int_distribution<std::int64_t>(0, vocab - 1)(rng));
  return t;
}

}  // namespace bench
