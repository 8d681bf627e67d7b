// Mamba-2 on this machine, each figure next to its ceiling measured in the
// same run:
//   BM_SsdRecurrent: the recurrent kernel in state updates per second
//       (one update: one element of a head's P x N state, one step) against
//       the FMA ceiling, two FMAs per update (the update and the readout);
//   BM_SsdTile:      the same kernel's inner loop alone, operands in cache;
//   BM_SsdChunked:   the chunked (SSD) form on the same problems, updates/s
//       of the equivalent recurrence, for the crossover over L and N;
//   BM_Prefill, BM_Decode: a mamba2-130m-shaped random model (d_model 768,
//       24 layers, 24 heads of 64, N 128, 1 group, conv 4, vocab 50280,
//       tied) in tokens/s, against Eigen SGEMM FLOP/s / matrix FLOPs per
//       token (prefill) and read bandwidth / bytes per token (decode: the
//       weights, and the cache read and written), as bench_mamba does for
//       Mamba-1.
// Counters: updates_s / tok_s, ceiling_*, share (of the ceiling);
// share_best (BM_SsdRecurrent: its fastest 2 ms window, bench::BestWindow).
//
//   build/release/bench/bench_mamba2 --benchmark_min_time=1
#include <ssm/mamba2.hpp>
#include <ssm/detail/ssd_kernel.hpp>  // BM_SsdTile: the tiles alone
#include <ssm/ssd.hpp>

#include "ceilings.hpp"
#include "model_ceilings.hpp"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <vector>

namespace {

using bench::set_threads;

double fma_lanes(int threads) {
  static double cached[65] = {};
  if (cached[threads] == 0) cached[threads] = bench::fma_lanes_per_second(threads);
  return cached[threads];
}

// One layer's SSM input: rows [x | B | C | dt] per step, heads of 64, one
// group; dt spread as a trained model's; the rows and y in the models'
// workspace storage (2 MiB pages on Linux). The model keeps dt in the
// projection's rows and x, B, C in rows of H P + 2 N floats, every x row on
// a cache line (here every other one is 32 bytes off): on Zen 5 the two
// layouts ran alike (four alternating rounds, medians 0.92x-1.04x).
struct Problem {
  std::size_t L, H, P = 64, N;
  ssm::detail::PagedRows rows, y;
  std::vector<float> A, D, bias;
  ssm::detail::SsdScratch::Buffer state;  // on a cache line, as SsdArgs::state advises
  ssm::SsdArgs args;

  Problem(std::size_t L_, std::size_t H_, std::size_t N_) : L(L_), H(H_), N(N_) {
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    const std::size_t row = H * P + 2 * N + H;
    rows.resize(Eigen::Index(L), Eigen::Index(row));
    std::generate_n(rows.data(), rows.size(), [&] { return u(rng); });
    A.resize(H), D.resize(H), bias.resize(H);
    for (std::size_t h = 0; h < H; ++h) {
      A[h] = -float(h + 1);
      D[h] = 1;
      bias[h] = -4.f + 3.f * float(h) / float(H);  // softplus: dt ~ 0.01 .. 0.3
    }
    state.assign(H * N * P, 0.f);
    y.resize(Eigen::Index(L), Eigen::Index(H * P));
    std::fill_n(y.data(), y.size(), 0.f);
    ssm::SsdArgs& p = args;
    p.L = L, p.heads = H, p.head_dim = P, p.N = N;
    p.x = rows.data(), p.x_time_stride = std::ptrdiff_t(row);
    p.B = rows.data() + H * P, p.B_time_stride = std::ptrdiff_t(row);
    p.C = p.B + N, p.C_time_stride = std::ptrdiff_t(row);
    p.dt = p.C + N, p.dt_time_stride = std::ptrdiff_t(row);
    p.A = A.data(), p.D = D.data(), p.dt_bias = bias.data(), p.dt_softplus = true;
    p.state = state.data();
    p.y = y.data(), p.y_time_stride = std::ptrdiff_t(H * P);
  }
  double updates() const { return double(L * H * N * P); }
};

// updates: state updates per iteration; best: the loop's fastest window,
// where it was tracked (share_best, measured as the ceiling is)
void report(benchmark::State& st, double updates, int threads,
            const bench::BestWindow* best = nullptr) {
  const double ceiling = fma_lanes(threads) / 2;
  st.counters["updates_s"] = benchmark::Counter(updates, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["ceiling_updates_s"] = ceiling;
  st.counters["share"] = benchmark::Counter(updates / ceiling, benchmark::Counter::kIsIterationInvariantRate);
  if (best && best->seconds_per_call() > 0)
    st.counters["share_best"] = updates / best->seconds_per_call() / ceiling;
}

void BM_SsdRecurrent(benchmark::State& st) {
  const auto L = std::size_t(st.range(0)), N = std::size_t(st.range(1));
  const int threads = int(st.range(2));
  Problem pb(L, 24, N);
  set_threads(threads);
  bench::BestWindow best;
  for (auto _ : st) {
    ssm::ssd_recurrent(pb.args, threads);
    benchmark::DoNotOptimize(pb.y.data());
    best.tick();
  }
  report(st, pb.updates(), threads, &best);
}

// The recurrent kernel's inner loop alone (detail::ssd_block: the state
// tiles over one time block of one head, head_dim 64) on operands that
// stay in L1/L2, against the same ceiling: what BM_SsdRecurrent would reach
// without the work around the tiles (step sizes, scales, scaled B, packing
// C, the rows from memory) and with no renormalization. renorm:1
// renormalizes one step in 12 at random, as BM_SsdRecurrent's problem does
// on average over its heads (8% of the steps; 2^-32 floor).
void BM_SsdTile(benchmark::State& st) {
  using Buffer = ssm::detail::SsdScratch::Buffer;
  const auto N = std::size_t(st.range(0)), T = ssm::detail::ssd_time_block, P = std::size_t(64);
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-0.1f, 0.1f);
  Buffer x(T * P), bs(T * N), C(T * N), scale(T, 1.f), mult(T, 1.f), partial(T * P), y(T * P), state(N * P, 0.f);
  for (auto* b : {&x, &bs, &C})
    for (auto& v : *b) v = u(rng);
  std::vector<unsigned char> renorm(T, 0);
  for (std::size_t t = 0; t < T && st.range(1); ++t) renorm[t] = rng() % 12 == 0, mult[t] = 0.5f;
  ssm::detail::SsdBlock k;
  k.T = T, k.P = P, k.N = N, k.x = x.data(), k.x_ts = std::ptrdiff_t(P);
  k.bs = bs.data(), k.C = C.data(), k.C_ts = std::ptrdiff_t(N);
  k.scale = scale.data(), k.renorm = renorm.data(), k.mult = mult.data(), k.D = 1, k.partial = partial.data();
  k.y = y.data(), k.y_ts = std::ptrdiff_t(P), k.state = state.data();
  for (auto _ : st) {
    ssm::detail::ssd_block<xsimd::default_arch>(k);
    benchmark::DoNotOptimize(y.data());
  }
  report(st, double(T * N * P), 1);
}

void BM_SsdChunked(benchmark::State& st) {
  const auto L = std::size_t(st.range(0)), N = std::size_t(st.range(1));
  const auto Q = std::size_t(st.range(2));
  const int threads = int(st.range(3));
  Problem pb(L, 24, N);
  set_threads(threads);
  for (auto _ : st) {
    ssm::ssd_chunked(pb.args, Q, threads);
    benchmark::DoNotOptimize(pb.y.data());
  }
  report(st, pb.updates(), threads);
}

ssm::Mamba2Config config_130m() {
  ssm::Mamba2Config c;
  c.d_model = 768, c.n_layer = 24, c.vocab_size = 50280, c.d_state = 128, c.d_conv = 4;
  c.d_inner = 1536, c.headdim = 64, c.nheads = 24, c.ngroups = 1, c.chunk_size = 256;
  c.tie_embeddings = true;
  return c;
}

// one model for all the benchmarks (its prefill form set by each)
ssm::Mamba2LM& model() {
  static ssm::Mamba2LM m = ssm::Mamba2LM::random(config_130m(), 42);
  return m;
}

double matrix_params_per_token(const ssm::Mamba2Config& c) {
  return double(c.n_layer) * double(c.in_proj_size() * c.d_model + c.d_model * c.d_inner);
}

double weight_bytes(const ssm::Mamba2Config& c) {
  const double per_layer = double(c.in_proj_size() * c.d_model + c.d_model * c.d_inner +
                                  c.conv_dim() * (c.d_conv + 1) + 3 * c.nheads + c.d_inner + c.d_model);
  return 4.0 * (double(c.n_layer) * per_layer + double(c.vocab_size * c.d_model + c.d_model));
}

// form 0: recurrent SSM, 1: chunked
void BM_Prefill(benchmark::State& st) {
  ssm::Mamba2LM& m = model();
  m.prefill = st.range(2) ? ssm::Mamba2Prefill::chunked : ssm::Mamba2Prefill::recurrent;
  bench::run_prefill<ssm::Mamba2Workspace>(st, m, std::size_t(st.range(0)), int(st.range(1)),
                                           matrix_params_per_token(m.config()));
}

void BM_Decode(benchmark::State& st) {
  const int threads = int(st.range(0));
  ssm::Mamba2LM& m = model();
  m.prefill = ssm::Mamba2Prefill::automatic;
  bench::run_decode<ssm::Mamba2Workspace>(st, m, threads, weight_bytes(m.config()));
}

}  // namespace

BENCHMARK(BM_Prefill)->ArgNames({"L", "threads", "chunked"})->ArgsProduct({{512, 2048}, {1, 2}, {0, 1}})
    ->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Decode)->ArgNames({"threads"})->Arg(1)->Arg(2)->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SsdRecurrent)->ArgNames({"L", "N", "threads"})
    ->ArgsProduct({{1, 16, 64, 256, 1024, 2048}, {64, 128}, {1, 2}})->UseRealTime();
BENCHMARK(BM_SsdTile)->ArgNames({"N", "renorm"})->ArgsProduct({{64, 128}, {0, 1}});
BENCHMARK(BM_SsdChunked)->ArgNames({"L", "N", "Q", "threads"})
    ->ArgsProduct({{16, 64, 256, 1024, 2048}, {64, 128}, {64, 128, 256}, {1, 2}})->UseRealTime();

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("simd", xsimd::default_arch::name());
  benchmark::AddCustomContext("weights_mb", std::to_string(weight_bytes(config_130m()) / 1e6));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
