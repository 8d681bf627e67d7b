// What the models, the checkpoint loaders and the sampler do with bad or
// extreme input (the numerical operations: test_robustness_numbers.cpp);
// docs/robustness.md lists each behaviour with the test that checks it.
// - Malformed checkpoints (tests/malformed.hpp) through MambaLM::load and
//   Mamba2LM::load: a std::runtime_error naming the file and the tensor or key.
// - Empty input and long prompts for the models and generate().
// - NaN and infinite logits in the sampler, and weights whose activations
//   overflow.
#include <ssm/generate.hpp>
#include <ssm/mamba.hpp>
#include <ssm/mamba2.hpp>
#include <ssm/sampling.hpp>

#include "lm_checks.hpp"
#include "malformed.hpp"
#include "util.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef SSM_TEST_DATA_DIR
#error "define SSM_TEST_DATA_DIR as tests/data"
#endif

namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using Catch::Matchers::Message;
using Catch::Matchers::StartsWith;

const float nan_f = std::numeric_limits<float>::quiet_NaN();
const float inf_f = std::numeric_limits<float>::infinity();

// The message of the std::runtime_error that f throws ("(no error)" if none;
// any other exception fails the test).
std::string runtime_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

// ---------------------------------------------------------------------------
// Checkpoints

// The unmodified copy of `subject` loads with Model::load, and each of
// `cases` throws a std::runtime_error naming the file and what is wrong.
template <class Model>
void check_malformed(const test::malformed::Subject& subject,
                     const std::vector<test::malformed::Case>& cases) {
  namespace bad = test::malformed;
  bad::TempDir tmp;
  // the unmodified copy loads: the errors below come from the corruption
  bad::make({"valid", [](const fs::path&) {}, "", {}}, subject.folder, tmp.path / "valid");
  REQUIRE_NOTHROW(Model::load((tmp.path / "valid").string()));
  int i = 0;
  for (const bad::Case& c : cases) {
    const fs::path folder = tmp.path / std::to_string(i++);
    bad::make(c, subject.folder, folder);
    INFO(c.name);
    const std::string message = runtime_error_of([&] { Model::load(folder.string()); });
    CHECK_THAT(message, StartsWith("ssm::") &&
                            Contains(c.file.empty() ? folder.string() : (folder / c.file).string()));
    for (const std::string& phrase : c.phrases) CHECK_THAT(message, Contains(phrase));
  }
}

TEST_CASE("malformed checkpoints: load names the file and the tensor or key",
          "[robustness][checkpoint]") {
  namespace bad = test::malformed;
  SECTION("MambaLM") {
    check_malformed<ssm::MambaLM>(bad::mamba1_subject(SSM_TEST_DATA_DIR),
                                  bad::mamba1_cases(SSM_TEST_DATA_DIR));
  }
  SECTION("Mamba2LM (the cases every Mamba-family checkpoint shares)") {
    check_malformed<ssm::Mamba2LM>(bad::mamba2_subject(SSM_TEST_DATA_DIR),
                                   bad::mamba2_cases(SSM_TEST_DATA_DIR));
  }
}


// ---------------------------------------------------------------------------
// Empty and enormous sizes

TEST_CASE("MambaLM and generate() on empty input", "[robustness][empty]") {
  const ssm::MambaLM m = ssm::MambaLM::load(std::string(SSM_TEST_DATA_DIR) + "/mamba-tiny");
  ssm::MambaCache cache = m.new_cache();
  const ssm::MambaCache fresh = cache;
  ssm::MambaWorkspace ws;
  m.forward(nullptr, 0, cache, nullptr, 0, ws);
  CHECK((cache.tokens == 0 && cache.ssm == fresh.ssm && cache.conv == fresh.conv));
  REQUIRE_THROWS_MATCHES(m.forward(nullptr, 0, cache, nullptr, 1, ws), std::invalid_argument,
                         Message("ssm::MambaLM::forward: 1 rows of logits asked of 0 tokens"));
  m.step(nullptr, nullptr, 0, nullptr, ws);
  CHECK(ssm::generate(m, {}, 5).empty());
  CHECK(ssm::generate(m, {{1, 2}, {3}}, 0) == std::vector<std::vector<std::int32_t>>(2));
  REQUIRE_THROWS_MATCHES(ssm::generate(m, {{1, 2}, {}}, 5), std::invalid_argument,
                         Message("ssm::generate: prompt 1 is empty"));
  const std::int32_t negative = -1;
  REQUIRE_THROWS_MATCHES(m.forward(&negative, 1, cache, nullptr, 0, ws), std::invalid_argument,
                         Message("ssm::MambaLM: token id -1 is outside the vocabulary [0, 256)"));
  ssm::MambaCache* caches[] = {&cache};
  std::vector<float> logits(256);
  REQUIRE_THROWS_MATCHES(m.step(&negative, caches, 1, logits.data(), ws), std::invalid_argument,
                         Message("ssm::MambaLM: token id -1 is outside the vocabulary [0, 256)"));
}

// forward() over a prompt of three slices (it takes 1024 tokens at a time,
// the cache carrying the state across), logits asked from inside the
// first: each row equals step() fed the tokens one at a time, and so does
// the final state. ws: what forward() ran in, for the caller to check that
// it holds one slice.
template <class Model>
void check_long_prompt(const Model& m, typename Model::Workspace& ws) {
  const std::size_t n = 2600, rows = 1700;
  const auto tokens = test::random_tokens(n, m.config().vocab_size);
  auto cache = m.new_cache();
  test::Rows logits(Eigen::Index(rows), m.config().vocab_size);
  m.forward(tokens.data(), n, cache, logits.data(), rows, ws);
  CHECK(cache.tokens == std::int64_t(n));
  auto stepped = m.new_cache();
  const test::Rows want = test::stepped_logits(m, tokens, &stepped);
  CHECK(test::rel_err(logits, want.bottomRows(Eigen::Index(rows))) <= 2e-5);
  using Vec = Eigen::Map<const Eigen::VectorXf>;
  CHECK(test::rel_err(Vec(cache.ssm.data(), Eigen::Index(cache.ssm.size())),
                      Vec(stepped.ssm.data(), Eigen::Index(stepped.ssm.size()))) <= 2e-5);
}

TEST_CASE("a long prompt runs in slices: the same logits as step by step", "[robustness][huge]") {
  const std::string data = SSM_TEST_DATA_DIR;
  // the workspaces hold one slice (and the conv history), not the prompt
  SECTION("Mamba-1") {
    const auto m = ssm::MambaLM::load(data + "/mamba-tiny");
    ssm::MambaWorkspace ws;
    check_long_prompt(m, ws);
    CHECK(ws.xz.rows() <= 1024 + m.config().d_conv - 1);
  }
  SECTION("Mamba-2") {
    const auto m = ssm::Mamba2LM::load(data + "/mamba2-tiny");
    ssm::Mamba2Workspace ws;
    check_long_prompt(m, ws);
    CHECK(ws.proj.rows() <= 1024 + m.config().d_conv - 1);
  }
}

// ---------------------------------------------------------------------------
// Sampling

TEST_CASE("Sampler: NaN logits are an error, infinite ones only when sampling",
          "[robustness][sampling]") {
  ssm::SamplingOptions greedy, sampled;
  sampled.temperature = 1;
  sampled.seed = Catch::rngSeed();
  auto next = [](const ssm::SamplingOptions& o, std::vector<float> logits,
                 const std::vector<std::int32_t>& seen = {}) {
    return ssm::Sampler(o).next(logits.data(), logits.size(), seen);
  };
  for (const auto& o : {greedy, sampled}) {
    INFO("temperature " << o.temperature);
    REQUIRE_THROWS_MATCHES(next(o, {0.5f, 2, nan_f, 0}), std::invalid_argument,
                           Message("ssm::Sampler: the logit of token 2 is NaN"));
    REQUIRE_THROWS_MATCHES(next(o, {}), std::invalid_argument,
                           Message("ssm::Sampler: the vocabulary is empty"));
    ssm::SamplingOptions penalized = o;
    penalized.repetition_penalty = 1.5f;
    REQUIRE_THROWS_MATCHES(next(penalized, {0, 1, 2, 3}, {1, 4}), std::invalid_argument,
                           Message("ssm::Sampler: token 4 of the sequence is outside the "
                                   "vocabulary [0, 4)"));
  }
  // the repetition penalty: once per distinct token (transformers gathers
  // the seen tokens' logits, penalizes them and scatters them back)
  {
    ssm::SamplingOptions penalized = greedy;
    penalized.repetition_penalty = 2;
    std::vector<float> logits = {2, -1, 0.5f, 3};
    CHECK(ssm::Sampler(penalized).next(logits.data(), logits.size(), {0, 1, 0, 0}) == 3);
    CHECK(logits == std::vector<float>{1, -2, 0.5f, 3});
  }
  // greedy: the first maximum, infinite or not
  CHECK(next(greedy, {0.5f, 2, inf_f, inf_f}) == 2);
  CHECK(next(greedy, {-inf_f, -inf_f}) == 0);
  // sampling: -inf never drawn; a softmax needs a finite largest logit
  ssm::Sampler s(sampled);
  for (int i = 0; i < 200; ++i) {
    std::vector<float> logits = {-inf_f, 0, -inf_f, 1};
    const std::int32_t tok = s.next(logits.data(), logits.size(), {});
    REQUIRE((tok == 1 || tok == 3));
  }
  REQUIRE_THROWS_MATCHES(next(sampled, {0.5f, inf_f, 0}), std::invalid_argument,
                         Message("ssm::Sampler: cannot sample: the largest logit is inf"));
  REQUIRE_THROWS_MATCHES(next(sampled, {-inf_f, -inf_f}), std::invalid_argument,
                         Message("ssm::Sampler: cannot sample: the largest logit is -inf"));
}

TEST_CASE("weights whose activations overflow: generation ends with an error",
          "[robustness][sampling]") {
  // finite weights pass the load checks; norm_f.weight = 1e38 makes the
  // logits overflow to +-inf (NaN where infinities meet)
  namespace bad = test::malformed;
  bad::TempDir tmp;
  const fs::path folder = tmp.path / "overflow";
  bad::make({"overflow",
             [](const fs::path& dir) {
               bad::Safetensors s = bad::Safetensors::read(dir / "model.safetensors");
               const auto begin = s.header["backbone.norm_f.weight"]["data_offsets"][0].get<std::size_t>();
               const float big = 1e38f;
               for (std::size_t i = 0; i < 64; ++i) std::memcpy(&s.data[begin + 4 * i], &big, 4);
               s.write(dir / "model.safetensors");
             },
             "", {}},
            std::string(SSM_TEST_DATA_DIR) + "/mamba-tiny", folder);
  const ssm::MambaLM m = ssm::MambaLM::load(folder.string());
  ssm::SamplingOptions sampled;
  sampled.temperature = 1;
  REQUIRE_THROWS_WITH(ssm::generate(m, {{1, 2, 3}}, 4, sampled), StartsWith("ssm::Sampler: "));
}
