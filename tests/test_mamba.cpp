// MambaLM against Hugging Face transformers (tests/data/mamba-tiny and the
// Mamba-1 cases of tests/data/ref, made by scripts/make_reference_models.py):
// logits, hidden states and greedy tokens; and the model against itself:
// step path == parallel path, batched == alone, caches that fork and resume.
#include <ssm/generate.hpp>
#include <ssm/io/npy.hpp>
#include <ssm/mamba.hpp>

#include "util.hpp"

#include <filesystem>
#include <string>
#include <vector>

namespace {

using Rows = ssm::detail::RowMatrixXf;

std::string data(const std::string& rel) { return std::string(SSM_TEST_DATA_DIR) + "/" + rel; }

std::vector<std::int32_t> ids(const std::vector<std::int64_t>& v) {
  return std::vector<std::int32_t>(v.begin(), v.end());
}

// max |a - b| / max |b|, over every entry
double rel(const Rows& a, const Rows& b) { return test::rel_err(a, b); }

// Logits of every position of one sequence through the parallel path.
Rows all_logits(const ssm::MambaLM& m, const std::vector<std::int32_t>& tokens,
                std::vector<Rows>* hidden = nullptr) {
  ssm::MambaCache cache = m.new_cache();
  ssm::MambaWorkspace ws;
  Rows logits(Eigen::Index(tokens.size()), m.config().vocab_size);
  m.forward(tokens.data(), tokens.size(), cache, logits.data(), tokens.size(), ws, hidden);
  return logits;
}

// The same positions through the recurrent step, one token at a time.
Rows stepped_logits(const ssm::MambaLM& m, const std::vector<std::int32_t>& tokens) {
  ssm::MambaCache cache = m.new_cache();
  ssm::MambaCache* caches[] = {&cache};
  ssm::MambaWorkspace ws;
  Rows logits(Eigen::Index(tokens.size()), m.config().vocab_size);
  for (std::size_t t = 0; t < tokens.size(); ++t)
    m.step(&tokens[t], caches, 1, logits.row(Eigen::Index(t)).data(), ws);
  return logits;
}

// transformers' float32 logits against ours: well under 1e-4 of their scale
// (the README of the references); we hold 2e-5.
constexpr double logit_tolerance = 2e-5;

void check_reference(const std::string& folder) {
  INFO(folder);
  const ssm::MambaLM m = ssm::MambaLM::load(folder);
  const auto input = ssm::io::load_npy(folder + "/input_ids.npy");
  const auto logits = ssm::io::load_npy(folder + "/logits.npy");
  const std::int64_t batch = input.shape[0], L = input.shape[1], V = logits.shape[2];
  REQUIRE(V == m.config().vocab_size);
  const auto tokens = input.values<std::int64_t>();
  const auto ref = logits.values<float>();
  std::vector<ssm::io::NpyArray> hidden_ref;
  const bool has_hidden = std::filesystem::exists(folder + "/hidden_states.npy");
  const auto hidden_all = has_hidden ? ssm::io::load_npy(folder + "/hidden_states.npy") : ssm::io::NpyArray{};
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::vector<std::int32_t> seq(tokens.begin() + b * L, tokens.begin() + (b + 1) * L);
    std::vector<Rows> hidden;
    const Rows ours = all_logits(m, seq, &hidden);
    const Rows theirs = Eigen::Map<const Rows>(ref.data() + b * L * V, L, V);
    INFO("sequence " << b);
    CHECK(rel(ours, theirs) <= logit_tolerance);
    // the recurrent path gives the same logits
    CHECK(rel(stepped_logits(m, seq), theirs) <= logit_tolerance);
    if (has_hidden) {  // (layers + 1, batch, L, d_model): after each layer, then after norm_f
      const auto h = hidden_all.values<float>();
      const std::int64_t dm = m.config().d_model;
      REQUIRE(hidden.size() == std::size_t(hidden_all.shape[0]));
      for (std::size_t i = 0; i < hidden.size(); ++i) {
        const Rows want = Eigen::Map<const Rows>(h.data() + ((std::int64_t(i) * batch + b) * L) * dm, L, dm);
        INFO("hidden state " << i);
        CHECK(rel(hidden[i], want) <= logit_tolerance);
      }
    }
  }
}

// Greedy continuation of each greedy_prompt*.npy equals transformers' tokens.
void check_greedy(const std::string& folder) {
  const ssm::MambaLM m = ssm::MambaLM::load(folder);
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("greedy_prompt", 0) != 0) continue;
    const std::string suffix = name.substr(std::string("greedy_prompt").size());
    const auto prompt = ids(ssm::io::load_npy(entry.path().string()).values<std::int64_t>());
    const auto expect = ids(ssm::io::load_npy(folder + "/greedy_tokens" + suffix).values<std::int64_t>());
    const std::vector<std::int32_t> want(expect.begin() + std::ptrdiff_t(prompt.size()), expect.end());
    const auto got = ssm::generate(m, {prompt}, want.size());
    INFO(folder << " " << name);
    CHECK(got[0] == want);
  }
}

}  // namespace

TEST_CASE("mamba-tiny matches transformers: logits, hidden states, both paths", "[mamba]") {
  check_reference(data("mamba-tiny"));
}

TEST_CASE("mamba-tiny greedy generation matches transformers", "[mamba]") {
  check_greedy(data("mamba-tiny"));
}

TEST_CASE("other Mamba-1 checkpoints match transformers", "[mamba][ref]") {
  // odd sizes with biases and an untied head, conv kernels 2 and 3, sharded,
  // F16 and BF16 weights, the state-spaces key layout
  const std::string name = GENERATE("m1_odd", "m1_conv3", "m1_sharded", "m1_f16", "m1_bf16",
                                    "m1_statespaces");
  check_reference(data("ref/" + name));
  check_greedy(data("ref/" + name));
}

TEST_CASE("batched generation gives each sequence its tokens alone", "[mamba][generate]") {
  const ssm::MambaLM m = ssm::MambaLM::load(data("ref/m1_odd"));
  const std::int32_t V = std::int32_t(m.config().vocab_size);
  std::vector<std::vector<std::int32_t>> prompts;
  for (const std::size_t len : {1, 7, 3, 12, 5, 2}) {  // different lengths, no padding
    std::vector<std::int32_t> p(len);
    for (auto& t : p) t = std::int32_t(std::uniform_int_distribution<>(0, V - 1)(test::rng()));
    prompts.push_back(p);
  }
  ssm::SamplingOptions greedy, sampled;
  sampled.temperature = 0.8f;
  sampled.top_k = 20;
  sampled.top_p = 0.9f;
  sampled.repetition_penalty = 1.3f;
  sampled.seed = 1234;
  for (const auto& opt : {greedy, sampled}) {
    const auto together = ssm::generate(m, prompts, 10, opt);
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      INFO("prompt " << i << " temperature " << opt.temperature);
      CHECK(together[i] == ssm::generate(m, {prompts[i]}, 10, opt)[0]);
    }
  }
}

TEST_CASE("caches fork, resume and take several tokens at once", "[mamba][cache]") {
  const ssm::MambaLM m = ssm::MambaLM::load(data("mamba-tiny"));
  std::vector<std::int32_t> seq(40);
  for (auto& t : seq) t = std::int32_t(std::uniform_int_distribution<>(0, 255)(test::rng()));
  const Rows whole = all_logits(m, seq);
  ssm::MambaWorkspace ws;
  const std::size_t split = GENERATE(1, 3, 17, 39);
  ssm::MambaCache cache = m.new_cache();
  Rows first(Eigen::Index(split), 256), rest(Eigen::Index(seq.size() - split), 256);
  m.forward(seq.data(), split, cache, first.data(), split, ws);
  const ssm::MambaCache saved = cache;  // a value: fork it
  // the rest at once through the parallel path, from the cached state
  m.forward(seq.data() + split, seq.size() - split, cache, rest.data(), seq.size() - split, ws);
  CHECK(rel(rest, whole.bottomRows(rest.rows())) <= 1e-5);
  CHECK(cache.tokens == std::int64_t(seq.size()));
  // the saved copy resumes identically through the step path
  ssm::MambaCache resumed = saved;
  ssm::MambaCache* caches[] = {&resumed};
  Eigen::VectorXf row(256);
  m.step(&seq[split], caches, 1, row.data(), ws);
  CHECK(test::rel_err(row.transpose(), whole.row(Eigen::Index(split))) <= 1e-5);
}

TEST_CASE("MambaLM rejects bad tokens and foreign caches", "[mamba][errors]") {
  using Catch::Matchers::Message;
  const ssm::MambaLM m = ssm::MambaLM::load(data("mamba-tiny"));
  ssm::MambaCache cache = m.new_cache();
  ssm::MambaWorkspace ws;
  std::vector<float> logits(256);
  const std::int32_t bad[] = {5, 256};
  REQUIRE_THROWS_MATCHES(m.forward(bad, 2, cache, logits.data(), 1, ws), std::invalid_argument,
                         Message("ssm::MambaLM: token id 256 is outside the vocabulary [0, 256)"));
  ssm::MambaCache other = cache;
  other.ssm.pop_back();
  REQUIRE_THROWS_WITH(m.forward(bad, 1, other, logits.data(), 1, ws),
                      Catch::Matchers::Contains("the cache was made for another model"));
  REQUIRE_THROWS_WITH(ssm::MambaLM::load(data("mamba2-tiny")),
                      Catch::Matchers::Contains("a Mamba-2 checkpoint"));
  REQUIRE_THROWS_WITH(ssm::MambaLM::load(data("no-such-model")),
                      Catch::Matchers::Contains("no such folder"));
}
