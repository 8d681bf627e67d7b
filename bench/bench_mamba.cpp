// A Mamba-1 model of the mamba-130m shape (d_model 768, 24 layers, N 16,
// expand 2, conv 4, dt_rank 48, vocab 50280, tied; random weights made
// here), in tokens per second, each next to its ceiling measured in the
// same run:
//   prefill: bound by matrix products: ceiling = Eigen SGEMM FLOP/s / matrix
//            FLOPs per token (the LM head once per prompt, as only the last
//            position's logits are computed, like llama-bench);
//   decode:  bound by reading every weight once per token and reading and
//            writing the cache: ceiling = read bandwidth / (weight bytes +
//            2 x cache bytes) (bench::run_decode).
// Counters: tok_s (tokens/s), ceiling_tok_s, share (of the ceiling),
// peak_rss_mb (of the process so far).
//
//   build/release/bench/bench_mamba --benchmark_min_time=1
#include <ssm/mamba.hpp>

#include "ceilings.hpp"
#include "model_ceilings.hpp"

#include <benchmark/benchmark.h>

namespace {

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
  const ssm::MambaLM& m = model();
  bench::run_prefill<ssm::MambaWorkspace>(st, m, std::size_t(st.range(0)), int(st.range(1)),
                                          matrix_params_per_token(m.config()));
}

void BM_Decode(benchmark::State& st) {
  const int threads = int(st.range(0));
  const ssm::MambaLM& m = model();
  bench::run_decode<ssm::MambaWorkspace>(st, m, threads, weight_bytes(m.config()));
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
