// A Mamba-1 model of the mamba-130m shape (d_model 768, 24 layers, N 16,
// expand 2, conv 4, dt_rank 48, vocab 50280, tied; random weights made
// here), in tokens per second, each next to its ceiling measured in the
// same run:
//   prefill: bound by matrix products: ceiling = Eigen SGEMM FLOP/s / matrix
//            FLOPs per token (the LM head once per prompt, as only the last
//            position's logits are computed, like llama-bench);
//   decode:  bound by reading every weight once per token: ceiling = read
//            bandwidth / weight bytes.
// Counters: tok_s (tokens/s), ceiling_tok_s, share (of the ceiling),
// peak_rss_mb (of the process so far).
//
//   build/release/bench/bench_mamba --benchmark_min_time=1
#include <ssm/mamba.hpp>

#include "ceilings.hpp"
#include "model_ceilings.hpp"

#include <benchmark/benchmark.h>

#include <chrono>
#include <random>
#include <vector>

namespace {

using bench::gemm_flops;
using bench::peak_rss_mb;
using bench::random_tokens;
using bench::read_bandwidth;
using bench::set_threads;

ssm::MambaConfig config_130m() {
  ssm::MambaConfig c;
  c.d_model = 768, c.n_layer = 24, c.vocab_size = 50280, c.d_state = 16, c.d_conv = 4;
  c.d_inner = 1536, c.dt_rank = 48, c.tie_embeddings = true;
  return c;
}

const ssm::MambaLM& model() {
  static const ssm::MambaLM m = ssm::MambaLM::random(config_130m(), 42);
  return m;
}

double matrix_params_per_token(const ssm::MambaConfig& c) {
  return double(c.n_layer) * double(2 * c.d_inner * c.d_model + c.x_proj_size() * c.d_inner +
                                    c.d_inner * c.dt_rank + c.d_model * c.d_inner);
}

double weight_bytes(const ssm::MambaConfig& c) {
  const double per_layer = double(2 * c.d_inner * c.d_model + c.x_proj_size() * c.d_inner +
                                  c.d_inner * c.dt_rank + c.d_model * c.d_inner +
                                  c.d_inner * (c.d_conv + 3 + c.d_state) + c.d_model);
  return 4.0 * (double(c.n_layer) * per_layer + double(c.vocab_size * c.d_model));
}

void BM_Prefill(benchmark::State& st) {
  const auto L = std::size_t(st.range(0));
  const int threads = int(st.range(1));
  const ssm::MambaLM& m = model();
  const auto& c = m.config();
  const auto tokens = random_tokens(L, c.vocab_size);
  std::vector<float> logits(std::size_t(c.vocab_size));
  ssm::MambaWorkspace ws;
  const double gemm = gemm_flops(threads);
  set_threads(threads);
  double seconds = 0;
  for (auto _ : st) {
    ssm::MambaCache cache = m.new_cache();
    const auto t0 = std::chrono::steady_clock::now();
    m.forward(tokens.data(), L, cache, logits.data(), 1, ws);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    benchmark::DoNotOptimize(logits.data());
  }
  const double flops_per_token = 2.0 * (matrix_params_per_token(c) + double(c.vocab_size * c.d_model) / double(L));
  st.counters["tok_s"] = benchmark::Counter(double(L), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["ceiling_tok_s"] = gemm / flops_per_token;
  st.counters["share"] = double(L) * double(st.iterations()) / seconds / (gemm / flops_per_token);
  st.counters["gemm_gflops"] = gemm / 1e9;
  st.counters["peak_rss_mb"] = peak_rss_mb();
}

void BM_Decode(benchmark::State& st) {
  const int threads = int(st.range(0));
  const ssm::MambaLM& m = model();
  const auto& c = m.config();
  const double bandwidth = read_bandwidth(threads);
  set_threads(threads);
  ssm::MambaWorkspace ws;
  ssm::MambaCache cache = m.new_cache();
  std::vector<float> logits(std::size_t(c.vocab_size));
  const auto prompt = random_tokens(16, c.vocab_size);
  m.forward(prompt.data(), prompt.size(), cache, logits.data(), 1, ws);
  ssm::MambaCache* caches[] = {&cache};
  std::int32_t token = prompt.back();
  double seconds = 0;
  for (auto _ : st) {
    const auto t0 = std::chrono::steady_clock::now();
    m.step(&token, caches, 1, logits.data(), ws);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    token = std::int32_t((token * 31 + 7) % c.vocab_size);
    benchmark::DoNotOptimize(logits.data());
  }
  st.counters["tok_s"] = benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["ceiling_tok_s"] = bandwidth / weight_bytes(c);
  st.counters["share"] = double(st.iterations()) / seconds / (bandwidth / weight_bytes(c));
  st.counters["read_gb_s"] = bandwidth / 1e9;
  st.counters["state_kb"] = double(cache.conv.size() + cache.ssm.size()) * 4 / 1024;
  st.counters["peak_rss_mb"] = peak_rss_mb();
}

}  // namespace

BENCHMARK(BM_Prefill)->ArgNames({"L", "threads"})->ArgsProduct({{512, 2048}, {1, 2}})
    ->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Decode)->ArgNames({"threads"})->Arg(1)->Arg(2)->UseRealTime()
    ->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("simd", xsimd::default_arch::name());
  benchmark::AddCustomContext("weights_mb", std::to_string(weight_bytes(config_130m()) / 1e6));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
