// The machine's own ceilings, measured by the benchmark programs themselves:
// vector FMA throughput and streaming bandwidth over a given set of bytes.
#pragma once

#include <ssm/detail/omp.hpp>
#include <ssm/detail/recurrence.hpp>  // the lane scan, for its ceiling

#include <Eigen/Core>
#include <xsimd/xsimd.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace bench {

// OpenMP's and Eigen's thread counts both (Eigen's GEMM has its own).
inline void set_threads(int t) {
#ifdef _OPENMP
  omp_set_num_threads(t);
#endif
  Eigen::setNbThreads(t);
}

// Seconds of the fastest of `reps` runs of f (at least 20 ms of runs). The
// compute ceilings take 10: their runs last ~10 ms, and on a shared VM a
// vCPU taken away for a few of them halved a two-thread ceiling (the
// Mamba-2 kernel's, 25.7 G updates/s against 51.2 on a Zen 3 VM).
template <class F>
double best_time(F&& f, int reps = 5) {
  double best = 1e30, total = 0;
  for (int r = 0; r < reps || total < 0.02; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
    total += s;
  }
  return best;
}

// The fastest stretch of a benchmark loop: windows of consecutive calls of
// at least 2 ms each, the best one's seconds per call. The ceilings are the
// best of several timings, so a figure set against them like for like is
// the loop's best window too; on a shared VM the mean over the whole loop
// also carries the slow phases that the ceiling's best leaves out. The
// clock is read after 1, 2, 4, ... calls of a window: a handful of reads
// per window, whatever a call costs.
class BestWindow {
 public:
  // After each call of the loop.
  void tick() {
    if (++calls_ < next_) return;
    const auto now = std::chrono::steady_clock::now();
    const double s = std::chrono::duration<double>(now - start_).count();
    if (s < 2e-3) {
      next_ = 2 * calls_;
      return;
    }
    best_ = std::min(best_, s / double(calls_));
    start_ = now;
    calls_ = 0;
    next_ = 1;
  }
  // Seconds per call in the fastest window, or 0 if none closed.
  double seconds_per_call() const { return best_ < 1e30 ? best_ : 0.0; }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  long calls_ = 0, next_ = 1;
  double best_ = 1e300;
};

// Vector FMA lanes per second with `threads` threads: independent
// accumulators per thread hide the FMA latency, so this is the throughput
// of the FMA units (float lanes). 16 where there are 32 vector registers
// (AVX-512), 12 where there are 16: on AVX2, 16 accumulators and the two
// operands spilled to the stack and Zen 3 measured 29 of its 51 G lanes/s.
inline double fma_lanes_per_second(int threads) {
  using batch = xsimd::batch<float>;
  constexpr int chains = sizeof(batch) >= 64 ? 16 : 12;
  const long iters = 1 << 22;
  std::vector<float> sink(std::size_t(threads) * batch::size, 0.f);
  const double s = best_time([&] {
#pragma omp parallel num_threads(threads)
    {
      batch acc[chains];
      for (int k = 0; k < chains; ++k) acc[k] = batch(float(k) * 1e-3f);
      const batch m(0.999999f), c(1e-7f);
      for (long i = 0; i < iters; ++i)
        for (int k = 0; k < chains; ++k) acc[k] = xsimd::fma(acc[k], m, c);
      batch sum(0.f);
      for (int k = 0; k < chains; ++k) sum += acc[k];
      sum.store_unaligned(sink.data() + std::size_t(ssm::detail::thread_index()) * batch::size);
    }
  }, 10);
  return double(iters) * chains * batch::size * threads / s;
}

// Steps per second of one channel's lane scan (the scan core's kernel for a
// single contiguous channel) with `threads` threads: its arithmetic alone
// (scan_lanes, the states' FMA, the carry as the kernel moves it), in
// registers, on 6 chains per thread with nothing to wait for. A single
// channel cannot run at one FMA per step: its W steps in a batch need
// log2(W) doubling steps of two shuffles and two multiplies, 18 vector
// operations per 16 steps on AVX-512 (Zen 5 issues shuffles and FMAs at
// about the same rate) and 18 per 8 on AVX2.
inline double lane_scan_steps_per_second(int threads) {
  using batch = xsimd::batch<float>;
  using index = xsimd::batch<std::uint32_t>;
  constexpr int chains = 6;
  const long iters = 1 << 20;
  // a = 1, b = 0 keep every value exact (no subnormals), from memory so
  // nothing folds
  const std::vector<float> one(batch::size, 1.f), zero(batch::size, 0.f);
  std::vector<float> sink(std::size_t(threads) * batch::size, 0.f);
  const double s = best_time([&] {
#pragma omp parallel num_threads(threads)
    {
      const std::size_t me = std::size_t(ssm::detail::thread_index());
      const auto last = xsimd::make_batch_constant<index, ssm::detail::LastLane>();
      const ssm::detail::LaneMasks<batch> masks;
      batch a[chains], b[chains], carry[chains];
      for (int k = 0; k < chains; ++k) {
        a[k] = batch::load_unaligned(one.data());
        b[k] = batch::load_unaligned(zero.data());
        carry[k] = b[k];
      }
      for (long i = 0; i < iters; ++i)
        ssm::detail::static_for<chains>([&](auto k) {
          ssm::detail::scan_lanes(a[k], b[k], masks.from);
          const batch h = xsimd::fma(a[k], carry[k], b[k]);
          carry[k] = ssm::detail::next_carry(a[k], b[k], h, carry[k], last);
          b[k] = h;
        });
      batch sum(0.f);
      for (int k = 0; k < chains; ++k) sum += a[k] + b[k];
      sum.store_unaligned(sink.data() + me * batch::size);
    }
  }, 10);
  return double(iters) * chains * batch::size * threads / s;
}

namespace detail {

// out[i] = x[i] + y[i] over [i0, i1) as S streams side by side, each with a
// software prefetch `ahead` floats ahead (0: none) that stays below i1. A
// function of its own: written inside the parallel region's lambda, the
// same loop compiled to one that moved half the bytes per second.
template <int S>
void stream_pass(const float* x, const float* y, float* out, std::size_t i0, std::size_t i1,
                 std::size_t ahead) {
  using batch = xsimd::batch<float>;
  const std::size_t part = (i1 - i0) / S / batch::size * batch::size;
  for (std::size_t i = 0; i < part; i += batch::size)
    for (int k = 0; k < S; ++k) {
      const std::size_t at = i0 + std::size_t(k) * part + i;
      if (ahead) {
        const std::size_t p = std::min(at + ahead, i1 - 1);
        __builtin_prefetch(x + p);
        __builtin_prefetch(y + p);
        __builtin_prefetch(out + p, 1);
      }
      (batch::load_unaligned(x + at) + batch::load_unaligned(y + at)).store_unaligned(out + at);
    }
  for (std::size_t i = i0 + S * part; i < i1; ++i) out[i] = x[i] + y[i];
}

// Seconds of `passes` passes of stream_pass<S> by `threads` threads, each
// over its share of [0, n).
template <int S>
double timed_stream(const float* x, const float* y, float* out, std::size_t n, int threads,
                    int passes, std::size_t ahead) {
  return best_time([&] {
#pragma omp parallel num_threads(threads)
    {
      const std::size_t j = std::size_t(ssm::detail::thread_index());
      const std::size_t m = std::size_t(ssm::detail::team_size());
      const std::size_t i0 = n * j / m / 16 * 16, i1 = j + 1 == m ? n : n * (j + 1) / m / 16 * 16;
      // no barrier between passes: each thread streams its own share, and
      // a libgomp barrier is a futex syscall, 1.2 us on a paravirtualized
      // VM (stop 37), which made an L1-resident pass look 10x slower
      for (int r = 0; r < passes; ++r) stream_pass<S>(x, y, out, i0, i1, ahead);
    }
  });
}

}  // namespace detail

// Bytes per second of out = x + y over n floats each (two streams read, one
// written), threads splitting the range: the bandwidth a loop that moves the
// same bytes can reach at this working-set size, the best of one or two
// streams per thread, with no software prefetch or one 1 KiB ahead (one
// stream without prefetch fell 20-30% short of the best beyond the caches).
// Small sizes repeat the pass inside one timing, so thread start-up does
// not count.
inline double stream_bytes_per_second(const float* x, const float* y, float* out, std::size_t n,
                                      int threads) {
  const int passes = int(std::max<std::size_t>(1, (std::size_t(1) << 20) / std::max<std::size_t>(n, 1)));
  double s = 1e300;
  for (const std::size_t ahead : {std::size_t(0), std::size_t(256)}) {
    s = std::min(s, detail::timed_stream<1>(x, y, out, n, threads, passes, ahead));
    s = std::min(s, detail::timed_stream<2>(x, y, out, n, threads, passes, ahead));
  }
  return 3.0 * sizeof(float) * double(n) * passes / s;
}

// Nanoseconds for a cache line to go from one thread's core to another's:
// two threads hand a counter back and forth (a ping-pong); 0 without a
// second thread. What every line that two threads both touch costs, each
// time it moves (tens of ns within a core complex, hundreds across).
inline double line_transfer_ns() {
  if (ssm::detail::resolve_threads(0) < 2) return 0;
  constexpr int rounds = 20000;
  alignas(64) std::atomic<int> turn{0};
  const double s = best_time([&] {
    turn.store(0);
#pragma omp parallel num_threads(2)
    {
      const int me = ssm::detail::thread_index();
      if (ssm::detail::team_size() == 2)
        for (int i = 0; i < rounds; ++i) {
          while (turn.load(std::memory_order_acquire) != 2 * i + me) {
          }
          turn.store(2 * i + me + 1, std::memory_order_release);
        }
    }
  }, 3);
  return s / (2.0 * rounds) * 1e9;
}

}  // namespace bench
