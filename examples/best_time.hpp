// Timing for the examples that report a speed.
#pragma once

#include <algorithm>
#include <chrono>

// Wall-clock seconds of f(), the fastest of three runs: the first call or
// two can be far slower (a cold start; at a new size in 03, 0.6 ms against
// 0.01 ms after).
template <class F>
double best_seconds(F&& f) {
  double best = 1e30;
  for (int run = 0; run < 3; ++run) {
    const auto start = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}
