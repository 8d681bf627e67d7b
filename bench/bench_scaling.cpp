// Scan vs attention: how Mamba's selective scan and causal softmax attention
// scale with the sequence length L, in time and in memory (float32, batch 1,
// one sequence). Four families of series:
//
//   forward_op/...     the operators alone at the same width D = 768:
//     scan             selective scan (D = 768 channels, N = 16, as a Mamba
//                      block calls it: delta bias, softplus, D skip, SiLU(z)
//                      gate) over L tokens held in memory;
//     scan_streamed    the same over L tokens fed in 4096-token chunks with
//                      the state carried (how a long prompt runs; every chunk
//                      reuses the same inputs): L to 4M with bounded memory;
//     attention        softmax(Q K^T / 8 + causal mask) V, 12 heads of 64,
//                      tiled (ssm::baseline::causal_attention);
//     attention_naive  the same with each head's L x L scores materialized.
//                      Neither side counts its projections.
//   forward_layer/...  a whole sequence through one layer of width 768:
//     mamba            a one-layer MambaLM (d_inner 1536, N 16, conv 4,
//                      dt_rank 48; vocabulary 16 and only the last position's
//                      logits, so embedding and head cost ~0): RMSNorm, the
//                      Mamba block, residual;
//     attention        CausalSelfAttention(768, 12 heads): Q, K, V, O
//                      projections and tiled attention.
//   decode_op/...      one new token after n (`n` = context): the scan's step
//                      on its (D, N) state vs appending K, V to a KV cache of
//                      n tokens and attending over it;
//   decode_layer/...   the same for the layers: MambaLM::step vs
//                      CausalSelfAttention::step.
// The contexts of decode are made directly, not by a prefill: random K, V
// rows appended to the cache, random values in the Mamba state (the step's
// cost does not depend on them).
//
// Time: with 1 thread the CPU time of the thread (this 2-core machine is
// shared; time-sharing inflates wall time, not CPU time), with 2 threads the
// wall time; both are in the JSON (cpu_time, real_time).
// Counters: tok_s (tokens per second; decode: steps per second), peak_MiB
// (measured: the rise of the peak resident memory of a fresh process running
// the call once, over its RSS after weights and inputs were built: the
// call's working memory and its output; decode: building the context's
// state, then one step), state_MiB (analytic: what the algorithm keeps for
// the sequence: K and V, the L x L scores, or the SSM and conv state),
// GFLOP_s over a sequence where the work is matrix products
// (the attention op: Q K^T and P V over the causal half, 2 D L^2; the layers:
// their projections too, 8 L D^2 for attention, 2 L (768 x 3072 + 1536 x 80
// + 48 x 1536 + 1536 x 768) for Mamba, its conv and scan not counted), and
// vs_fma, their ratio to the FMA peak measured in this run. By these FLOP
// per token, 8 D^2 + 2 D L for attention and 7.47e6 for Mamba, the layers
// cost the same at L = 1792. After the run the program prints to stderr the
// exponent p of time ~ L^p (least squares of log t on log L over L >= 4096)
// and the lengths where Mamba becomes cheaper. Cases: scaling_cases.hpp.
//
//   bench_scaling --quick                                      # < 1 min, the CI smoke
//   bench_scaling --benchmark_format=json --benchmark_out=scaling.json  # ~8 min
//   /usr/bin/python3 bench/plot_scaling.py scaling.json        # the plot and table
#include "ceilings.hpp"
#include "scaling_cases.hpp"

#include <benchmark/benchmark.h>
#include <malloc.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace bench::scaling;
using bench::set_threads;

// ---- the series

struct Series {
  std::string name;
  std::function<std::unique_ptr<Case>(Index)> make;
  std::vector<Index> quick, full;  // lengths (decode: contexts)
  std::vector<int> threads;       // thread counts, in both modes
};

std::vector<Index> powers(Index from, Index to, Index factor = 2) {
  std::vector<Index> v;
  for (Index x = from; x <= to; x *= factor) v.push_back(x);
  return v;
}

const std::vector<Series>& all_series() {
  static const std::vector<Series> s = [] {
    const auto contexts = powers(16, 1 << 17);
    const std::vector<Index> quick_contexts = {1024, 16384};
    return std::vector<Series>{
        {"forward_op/scan", [](Index L) { return std::make_unique<ScanOp>(L, L, false); },
         {256, 1024, 4096}, powers(256, 1 << 17), {1}},
        {"forward_op/scan_streamed", [](Index L) { return std::make_unique<ScanOp>(L, std::min(L, chunk), false); },
         {16384}, powers(1 << 14, 1 << 22, 4), {1}},
        {"forward_op/attention", [](Index L) { return std::make_unique<AttentionOp>(L, false); },
         {256, 1024, 4096}, powers(256, 1 << 15), {1}},
        {"forward_op/attention_naive", [](Index L) { return std::make_unique<AttentionOp>(L, true); },
         {256, 1024}, powers(256, 1 << 14), {1}},
        {"forward_layer/mamba", [](Index L) { return std::make_unique<MambaLayer>(L, false); },
         {256, 1024, 4096}, powers(256, 1 << 18), {1, 2}},
        {"forward_layer/attention", [](Index L) { return std::make_unique<AttentionLayer>(L, false); },
         {256, 1024, 4096}, powers(256, 1 << 15), {1, 2}},
        {"decode_op/scan", [](Index) { return std::make_unique<ScanOp>(1, 1, true); },
         quick_contexts, contexts, {1}},
        {"decode_op/attention", [](Index n) { return std::make_unique<AttentionStepOp>(n); },
         quick_contexts, contexts, {1}},
        {"decode_layer/mamba", [](Index) { return std::make_unique<MambaLayer>(1, true); },
         quick_contexts, contexts, {1, 2}},
        {"decode_layer/attention", [](Index n) { return std::make_unique<AttentionLayer>(n, true); },
         quick_contexts, contexts, {1, 2}},
    };
  }();
  return s;
}

// ---- peak memory, measured in a fresh process

long status_kib(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(key);
  while (std::getline(f, line))
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':') return std::stol(line.substr(n + 1));
  return -1;
}

// The child's side (`bench_scaling --probe SERIES L THREADS`): builds the
// case, resets the peak RSS to the current RSS (Linux >= 4.0:
// clear_refs = 5), prepares the sequence and runs the call once, and
// prints the peak's rise in bytes. Blocks of 4 KiB and more are mapped
// afresh and unmapped when freed, so the peak is that of the live memory,
// not of what the allocator kept from building the inputs.
int probe_main(const std::string& name, Index L, int threads) {
  mallopt(M_MMAP_THRESHOLD, 4096);
  for (const Series& s : all_series()) {
    if (s.name != name) continue;
    set_threads(threads);
    const std::unique_ptr<Case> c = s.make(L);
    std::ofstream refs("/proc/self/clear_refs");
    if (!(refs << "5" << std::flush)) {
      std::fprintf(stderr, "bench_scaling --probe: cannot reset the peak RSS: /proc/self/clear_refs\n");
      return 1;
    }
    const long base = status_kib("VmRSS");
    c->prepare();
    c->run(threads);
    const long peak = status_kib("VmHWM");
    if (base < 0 || peak < 0) return 1;
    std::printf("%ld\n", std::max(0L, peak - base) * 1024);
    return 0;
  }
  return 2;
}

// The parent's side: the probe's answer in bytes, or -1.
double probe_peak_bytes(const std::string& name, Index L, int threads) {
  static const std::string self = [] {
    char buf[4096];
    const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    return std::string(buf, std::size_t(std::max<ssize_t>(n, 0)));
  }();
  const std::string cmd = "'" + self + "' --probe " + name + " " + std::to_string(L) + " " + std::to_string(threads);
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return -1;
  long long bytes = -1;
  const bool read = std::fscanf(f, "%lld", &bytes) == 1;
  return pclose(f) == 0 && read ? double(bytes) : -1;
}

// Makes `bytes` of heap resident and frees them: this process keeps freed
// memory (mallopt in main), so the timed calls' own allocations find their
// pages mapped, as in a process that made the call before (a page fault
// costs 10 to 40 us on this VM, the calls allocate up to gigabytes).
void make_resident(double bytes) {
  const auto n = std::size_t(bytes);
  volatile char* p = static_cast<volatile char*>(std::malloc(n));
  if (!p) return;
  for (std::size_t i = 0; i < n; i += 4096) p[i] = 0;
  std::free(const_cast<char*>(p));
}

// ---- the benchmark and its summary

// "model name" of /proc/cpuinfo, for the plot's title.
std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos)
      return line.substr(line.find(':') + 2);
  return "unknown CPU";
}

struct Point {
  Index L;
  double seconds, peak, state;
};
std::map<std::pair<std::string, int>, std::vector<Point>> results;
std::map<int, double> fma_gflops;

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// The FMA peak in GFLOP/s. At 1 thread, as the timings, per second of the
// thread's CPU time: the wall-time figure scaled by wall / CPU time over the
// whole measurement (it runs on this thread), so that other jobs on the
// machine do not lower it (an undisturbed best run makes it, if anything, high).
double fma_peak_gflops(int threads) {
  const double wall0 = wall_seconds(), cpu0 = thread_cpu_seconds();
  const double gflops = 2 * bench::fma_lanes_per_second(threads) * 1e-9;
  if (threads != 1) return gflops;
  return gflops * (wall_seconds() - wall0) / (thread_cpu_seconds() - cpu0);
}

void run_series(benchmark::State& st, const Series& s, Index L, int threads) {
  // one case and one probe per (series, L, threads), reused across Google
  // Benchmark's trial runs (the peak depends on the threads' buffers)
  static std::string key;
  static std::unique_ptr<Case> c;
  static double peak = 0;
  const std::string k = s.name + "/" + std::to_string(L) + "/" + std::to_string(threads);
  if (k != key) {
    c.reset();
    key = k;
    const double t0 = wall_seconds();
    peak = probe_peak_bytes(s.name, L, threads);
    const double probe_seconds = wall_seconds() - t0;
    c = s.make(L);
    c->prepare();
    make_resident(std::max(peak, 0.0) * 1.25 + 16 * MiB);
    // One untimed call where it is cheap (the probe ran it once, with the
    // inputs' set-up): the first call's one-off costs (the OpenMP team, the
    // workspace's growth) are then not in the quick mode's single timed
    // calls; next to a call of a second they are below 1%.
    set_threads(threads);
    if (peak >= 0 && probe_seconds < 1) c->run(threads);
  }
  if (peak < 0) {
    st.SkipWithError("the memory probe failed");
    return;
  }
  set_threads(threads);
  const double wall0 = wall_seconds(), cpu0 = thread_cpu_seconds();
  for (auto _ : st) c->run(threads);
  // 1 thread: the thread's CPU time, which time-sharing with other jobs on
  // this machine does not inflate; 2 threads: wall time
  const double seconds = (threads == 1 ? thread_cpu_seconds() - cpu0 : wall_seconds() - wall0) /
                         double(st.iterations());
  st.counters["tok_s"] = c->tokens() / seconds;
  st.counters["peak_MiB"] = peak / MiB;
  st.counters["state_MiB"] = c->state_bytes() / MiB;
  if (c->flop() > 0) {
    st.counters["GFLOP_s"] = c->flop() / seconds * 1e-9;
    st.counters["vs_fma"] = c->flop() / seconds * 1e-9 / fma_gflops[threads];
  }
  auto& v = results[{s.name, threads}];
  if (!v.empty() && v.back().L == L) v.pop_back();  // a later trial run replaces it
  v.push_back({L, seconds, peak, c->state_bytes()});
}

// Least-squares slope of log t on log L over L >= 4096 (all points when
// fewer than three are that long).
double exponent(const std::vector<Point>& v) {
  std::vector<std::pair<double, double>> xy;
  for (const Point& p : v)
    if (p.L >= 4096) xy.push_back({std::log(double(p.L)), std::log(p.seconds)});
  if (xy.size() < 3) {
    xy.clear();
    for (const Point& p : v) xy.push_back({std::log(double(p.L)), std::log(p.seconds)});
  }
  double mx = 0, my = 0, sxx = 0, sxy = 0;
  for (const auto& [x, y] : xy) mx += x / double(xy.size()), my += y / double(xy.size());
  for (const auto& [x, y] : xy) sxx += (x - mx) * (x - mx), sxy += (x - mx) * (y - my);
  return sxx > 0 ? sxy / sxx : NAN;
}

// The first length from which `mamba` stays cheaper than `attention`,
// interpolated on log-log axes between the measured lengths around it.
std::string crossover(const std::vector<Point>& mamba, const std::vector<Point>& attention) {
  std::vector<std::pair<Index, double>> ratio;  // log(t_mamba / t_attention)
  for (const Point& m : mamba)
    for (const Point& a : attention)
      if (m.L == a.L) ratio.push_back({m.L, std::log(m.seconds / a.seconds)});
  if (ratio.empty()) return "n/a";
  std::size_t i = ratio.size();
  while (i > 0 && ratio[i - 1].second < 0) --i;
  if (i == ratio.size()) return "none up to " + std::to_string(ratio.back().first) + " (Mamba costlier)";
  if (i == 0) return "below " + std::to_string(ratio[0].first) + " (Mamba cheaper everywhere)";
  const double x0 = std::log(double(ratio[i - 1].first)), x1 = std::log(double(ratio[i].first));
  const double r0 = ratio[i - 1].second, r1 = ratio[i].second;
  return std::to_string(std::lround(std::exp(x0 + (x1 - x0) * r0 / (r0 - r1))));
}

void print_summary() {
  std::fprintf(stderr, "\n(time: CPU time of the thread at 1 thread, wall time at 2)\n"
                       "== time ~ L^p (least squares of log t on log L, L >= 4096)\n");
  for (const auto& [key, v] : results)
    if (v.size() > 1)
      std::fprintf(stderr, "%-28s threads %d: p = %.2f over L = %lld .. %lld\n", key.first.c_str(), key.second,
                   exponent(v), (long long)v.front().L, (long long)v.back().L);
  std::fprintf(stderr, "== where Mamba becomes cheaper (time per sequence; decode: per token)\n");
  const char* pairs[][2] = {{"forward_op/scan", "forward_op/attention"},
                            {"forward_layer/mamba", "forward_layer/attention"},
                            {"decode_op/scan", "decode_op/attention"},
                            {"decode_layer/mamba", "decode_layer/attention"}};
  for (const auto& pr : pairs)
    for (int t : {1, 2}) {
      const auto m = results.find({pr[0], t}), a = results.find({pr[1], t});
      if (m != results.end() && a != results.end())
        std::fprintf(stderr, "%-24s vs %-24s threads %d: L = %s\n", pr[0], pr[1], t,
                     crossover(m->second, a->second).c_str());
    }
  std::fprintf(stderr, "== decode: time per token, measured peak / analytic state per sequence\n");
  for (const auto& [key, v] : results)
    if (key.first.rfind("decode", 0) == 0)
      for (const Point& p : v)
        if (p.L == 1024 || p.L == 16384 || p.L == 131072)
          std::fprintf(stderr, "%-24s threads %d n %6lld: %9.1f us, %8.2f MiB / %8.2f MiB\n", key.first.c_str(),
                       key.second, (long long)p.L, p.seconds * 1e6, p.peak / MiB, p.state / MiB);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 5 && std::string(argv[1]) == "--probe")
    return probe_main(argv[2], std::stoll(argv[3]), std::stoi(argv[4]));
  // --quick selects the short lists; a default --benchmark_min_time goes
  // first, so that one given on the command line wins.
  bool quick = false;
  std::vector<char*> args = {argv[0]};
  for (int i = 1; i < argc; ++i) quick = quick || std::string(argv[i]) == "--quick";
  static char min_time_quick[] = "--benchmark_min_time=0.01", min_time_full[] = "--benchmark_min_time=0.3";
  args.push_back(quick ? min_time_quick : min_time_full);
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) != "--quick") args.push_back(argv[i]);
  int count = int(args.size());
  // Steady state, as bench_attention: glibc keeps freed memory (see make_resident).
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, -1);
  benchmark::Initialize(&count, args.data());
  if (benchmark::ReportUnrecognizedArguments(count, args.data())) return 1;

  for (const Series& s : all_series()) {
    for (Index L : quick ? s.quick : s.full)
      for (int t : s.threads) {
        if (!fma_gflops.count(t)) fma_gflops[t] = fma_peak_gflops(t);
        const bool decode = s.name.rfind("decode", 0) == 0;
        benchmark::RegisterBenchmark(s.name.c_str(), [&s, L, t](benchmark::State& st) { run_series(st, s, L, t); })
            ->ArgNames({decode ? "n" : "L", "threads"})
            ->Args({L, t})
            ->UseRealTime()
            ->Unit(decode ? benchmark::kMicrosecond : benchmark::kMillisecond);
      }
  }
  benchmark::AddCustomContext("simd", xsimd::default_arch::name());
  benchmark::AddCustomContext("cpu", cpu_model());
  benchmark::AddCustomContext("compiler", __VERSION__);
  benchmark::AddCustomContext("mode", quick ? "quick" : "full");
  for (const auto& [t, g] : fma_gflops)
    benchmark::AddCustomContext("fma_peak_gflops_" + std::to_string(t) + "t", std::to_string(g));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  print_summary();
  return 0;
}
