// 05: an S4D layer over long sequences, both ways.
//
// The same parameters run as
//   - a convolution (S4D's training mode): the kernel K (L x H) by a
//     Vandermonde product, then FFTs; memory grows with L (kernel, spectra);
//   - a recurrence (inference / streaming): chunks of input go through the
//     SIMD scan, the H x N state carries over; memory stays O(H N + chunk H)
//     whatever the length, so a million steps cost no more memory than a
//     thousand.
// Peak memory is the growth of the process's resident set (VmHWM, reset per
// phase through /proc/self/clear_refs; Linux).
#include "no_options.hpp"  // --help

#include <ssm/s4d.hpp>  // S4D, make_s4d, convolve, recurrent, step

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>

namespace {

// Peak and current resident set in MiB, from /proc/self/status; -1 if absent.
double status_mib(const char* key) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(key, 0) == 0) return std::stod(line.substr(std::string(key).size())) / 1024;
  return -1;
}
void reset_peak() { std::ofstream("/proc/self/clear_refs") << "5"; }

template <class F>
double seconds(F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  no_options(argc, argv,
             "An S4D layer (64 channels x 64 modes) over 16K steps in conv mode, 10^6\n"
             "steps streamed in recurrent mode, then token by token with step(): the time\n"
             "and peak memory of each.\n");
  using Mat = Eigen::MatrixXf;
  const int H = 64, N = 64;
  std::mt19937 rng(4);
  const auto layer = ssm::make_s4d<float>(H, N, ssm::S4DInit::legs, rng);
  const auto d = ssm::discretize(layer);
  std::uniform_real_distribution<float> uniform(-1, 1);
  auto random_input = [&](int rows) {
    Mat u(rows, H);
    for (auto& v : u.reshaped()) v = uniform(rng);
    return u;
  };
  std::printf("S4D layer: H = %d channels, N = %d complex modes (S4D-LegS), float, %s\n\n", H, N,
              xsimd::default_arch::name());

  // Convolution mode over 16K steps.
  const int L_conv = 1 << 14;
  const Mat u = random_input(L_conv);
  Mat y_conv;
  ssm::convolve(d, u.topRows(256));  // warm-up: FFT plans, threads
  reset_peak();
  const double before = status_mib("VmRSS:");
  const double t_conv = seconds([&] { y_conv = ssm::convolve(d, u); });
  const double peak_conv = status_mib("VmHWM:") - before;
  std::printf("conv mode,      L = %7d: %8.3f s  %6.2f M steps/s  peak memory +%.1f MiB\n", L_conv,
              t_conv, L_conv / t_conv / 1e6, peak_conv);

  // Recurrent mode streaming 10^6 steps in chunks; the first chunks repeat
  // the input above, so the outputs can be checked against conv mode.
  const long L_stream = 1000000;
  const int chunk = 4096;
  ssm::S4DState<float> x = ssm::S4DState<float>::Zero(H, N);
  double max_diff = 0, max_y = 0;
  reset_peak();
  const double before_stream = status_mib("VmRSS:");
  double t_stream = 0;
  for (long t0 = 0; t0 < L_stream; t0 += chunk) {
    const int rows = int(std::min<long>(chunk, L_stream - t0));
    const Mat u_chunk = t0 + rows <= L_conv ? Mat(u.middleRows(t0, rows)) : random_input(rows);
    Mat y_chunk;
    t_stream += seconds([&] { y_chunk = ssm::recurrent(d, u_chunk, x); });
    if (t0 + rows <= L_conv) {
      max_diff = std::max(max_diff, double((y_chunk - y_conv.middleRows(t0, rows)).cwiseAbs().maxCoeff()));
      max_y = std::max(max_y, double(y_conv.middleRows(t0, rows).cwiseAbs().maxCoeff()));
    }
  }
  const double peak_stream = status_mib("VmHWM:") - before_stream;
  std::printf("recurrent mode, L = %7ld: %8.3f s  %6.2f M steps/s  peak memory +%.1f MiB"
              " (chunks of %d steps)\n",
              L_stream, t_stream, L_stream / t_stream / 1e6, peak_stream, chunk);
  std::printf("  %.2f G state updates/s; over the first %d steps, max |recurrent - conv| / max |y| = %.1e\n",
              double(L_stream) * H * N / t_stream / 1e9, L_conv, max_diff / max_y);

  // Token by token, as in generation.
  const int tokens = 20000;
  const Eigen::VectorXf u_t = random_input(1).row(0).transpose();
  Eigen::VectorXf y_t;
  const double t_step = seconds([&] {
    for (int t = 0; t < tokens; ++t) y_t = ssm::step(d, x, u_t);
  });
  std::printf("step(),         %d tokens: %.2f us per token\n", tokens, t_step / tokens * 1e6);

  std::printf(
      "\nConv mode holds the whole kernel, input and output and FFT buffers of\n"
      "twice the length: its memory grows with L. The recurrence holds the H x N state\n"
      "and one chunk, so streaming 10^6 steps needs no more than the first chunk.\n"
      "On a CPU the recurrence is also the faster one at this N: see\n"
      "bench/RESULTS.md for where conv mode wins.\n");
  return 0;
}
