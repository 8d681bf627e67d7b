// MambaLM against Hugging Face transformers (tests/data/mamba-tiny and the
// Mamba-1 cases of tests/data/ref, made by scripts/make_reference_models.py):
// logits, hidden states and greedy tokens; and the model against itself:
// step path == parallel path, batched == alone, caches that fork and resume.
#include <ssm/mamba.hpp>

#include "lm_checks.hpp"

#include <filesystem>
#include <string>
#include <vector>

namespace {

using namespace test;

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
    const Rows ours = all_logits(m, seq, nullptr, &hidden);
    const Rows theirs = Eigen::Map<const Rows>(ref.data() + b * L * V, L, V);
    INFO("sequence " << b);
    CHECK(rel_err(ours, theirs) <= logit_tolerance);
    // the recurrent path gives the same logits
    CHECK(rel_err(stepped_logits(m, seq), theirs) <= logit_tolerance);
    if (has_hidden) {  // (layers + 1, batch, L, d_model): after each layer, then after norm_f
      const auto h = hidden_all.values<float>();
      const std::int64_t dm = m.config().d_model;
      REQUIRE(hidden.size() == std::size_t(hidden_all.shape[0]));
      for (std::size_t i = 0; i < hidden.size(); ++i) {
        const Rows want = Eigen::Map<const Rows>(h.data() + ((std::int64_t(i) * batch + b) * L) * dm, L, dm);
        INFO("hidden state " << i);
        CHECK(rel_err(hidden[i], want) <= logit_tolerance);
      }
    }
  }
}

// Greedy continuation of each greedy_prompt*.npy equals transformers' tokens.
void check_greedy(const std::string& folder) {
  const ssm::MambaLM m = ssm::MambaLM::load(folder);
  const int prompts = for_each_greedy_prompt(folder, "", [&](const auto& prompt, const auto& want, const auto&) {
    CHECK(ssm::generate(m, {prompt}, want.size())[0] == want);
  });
  CHECK(prompts > 0);
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
  check_batched_generation(ssm::MambaLM::load(data("ref/m1_odd")));
}

TEST_CASE("caches fork, resume and take several tokens at once", "[mamba][cache]") {
  check_fork_resume(ssm::MambaLM::load(data("mamba-tiny")), random_tokens(40, 256), GENERATE(1, 3, 17, 39));
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
