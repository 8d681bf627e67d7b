// Mamba2LM (ssm/mamba2.hpp) against Hugging Face transformers
// (tests/data/mamba2-tiny and the Mamba-2 cases of tests/data/ref: logits,
// per-step decode logits, greedy tokens) and, for the per-group gated norm
// transformers lacks, a double-precision model (tests/reference/
// mamba2_naive.hpp); and against itself: step == forward, recurrent ==
// chunked prefill, batched == alone, caches that fork and resume. (The SSM
// op alone: test_ssd.cpp.)
#include <ssm/mamba2.hpp>

#include "lm_checks.hpp"
#include "reference/mamba2_naive.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace {

using namespace test;

// Logits of input_ids.npy by both prefill forms and the step path.
void check_reference(const std::string& folder) {
  INFO(folder);
  ssm::Mamba2LM m = ssm::Mamba2LM::load(folder);
  const auto input = ssm::io::load_npy(folder + "/input_ids.npy");
  const auto logits = ssm::io::load_npy(folder + "/logits.npy");
  const std::int64_t batch = input.shape[0], L = input.shape[1], V = logits.shape[2];
  REQUIRE(V == m.config().vocab_size);
  const auto tokens = input.values<std::int64_t>();
  const auto ref = logits.values<float>();
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::vector<std::int32_t> seq(tokens.begin() + b * L, tokens.begin() + (b + 1) * L);
    const Rows theirs = Eigen::Map<const Rows>(ref.data() + b * L * V, L, V);
    INFO("sequence " << b);
    for (const auto form : {ssm::Mamba2Prefill::recurrent, ssm::Mamba2Prefill::chunked}) {
      m.prefill = form;
      INFO("chunked " << (form == ssm::Mamba2Prefill::chunked));
      CHECK(rel_err(all_logits(m, seq), theirs) <= logit_tolerance);
    }
    CHECK(rel_err(stepped_logits(m, seq), theirs) <= logit_tolerance);
  }
}

// Greedy continuations of greedy_prompt*.npy equal transformers' tokens,
// and the logits of each decode step its greedy_logits*.npy. `variant`:
// "" or "_uncached" (m2_bias: see the test case).
void check_greedy(const std::string& folder, const std::string& variant = "") {
  const ssm::Mamba2LM m = ssm::Mamba2LM::load(folder);
  const auto V = m.config().vocab_size;
  const int prompts = for_each_greedy_prompt(folder, variant, [&](const auto& prompt, const auto& want,
                                                                  const std::string& suffix) {
    CHECK(ssm::generate(m, {prompt}, want.size())[0] == want);
    const std::string logits_file = folder + "/greedy_logits" + variant + suffix;
    if (!std::filesystem::exists(logits_file)) return;  // (mamba2-tiny has none)
    const auto step_logits = ssm::io::load_npy(logits_file);
    // decode logits: the prompt's last position, then one step per token
    const Rows theirs = Eigen::Map<const Rows>(step_logits.values<float>().data(),
                                               Eigen::Index(want.size()), V);
    Rows ours(theirs.rows(), V);
    ssm::Mamba2Cache cache = m.new_cache();
    ssm::Mamba2Cache* caches[] = {&cache};
    ssm::Mamba2Workspace ws;
    m.forward(prompt.data(), prompt.size(), cache, ours.row(0).data(), 1, ws);
    for (Eigen::Index i = 1; i < ours.rows(); ++i)
      m.step(&want[std::size_t(i - 1)], caches, 1, ours.row(i).data(), ws);
    CHECK(rel_err(ours, theirs) <= logit_tolerance);
  });
  CHECK(prompts > 0);
}

}  // namespace

TEST_CASE("mamba2-tiny matches transformers: logits by both prefill forms and the step", "[mamba2]") {
  check_reference(data("mamba2-tiny"));
}

TEST_CASE("mamba2-tiny greedy generation matches transformers", "[mamba2]") {
  check_greedy(data("mamba2-tiny"));
}

TEST_CASE("other Mamba-2 checkpoints match transformers", "[mamba2][ref]") {
  // m2_groups: 2 groups, chunk 8, 37 tokens; m2_long: prompts of 1 to 40
  // tokens across chunks of 16; m2_bias: biases, untied head, conv 3,
  // 4 heads of 24, state 8, time_step_limit (0.01, 0.5)
  for (const char* name : {"m2_groups", "m2_long", "m2_bias"}) check_reference(data(std::string("ref/") + name));
  check_greedy(data("ref/m2_groups"));
  check_greedy(data("ref/m2_long"));
  // transformers 5.17 clamps dt to time_step_limit in its prefill but not
  // in its cached decode step, so m2_bias's greedy_tokens / greedy_logits
  // (from generate()) mix the two models. We clamp in both paths: the
  // consistent reference is greedy_*_uncached (a full, clamped forward pass
  // per token).
  check_greedy(data("ref/m2_bias"), "_uncached");
}

namespace {

// The weights of a loaded model in the double-precision oracle's form.
naive::Mamba2 oracle(const ssm::Mamba2LM& m) {
  const auto& c = m.config();
  auto d = [](const auto& x) {
    std::vector<double> v(std::size_t(x.size()));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = double(x.data()[i]);
    return v;
  };
  naive::Mamba2 o;
  o.d_model = std::size_t(c.d_model), o.d_inner = std::size_t(c.d_inner), o.H = std::size_t(c.nheads);
  o.P = std::size_t(c.headdim), o.N = std::size_t(c.d_state), o.G = std::size_t(c.ngroups);
  o.K = std::size_t(c.d_conv), o.vocab = std::size_t(c.vocab_size);
  o.eps = c.norm_eps, o.dt_min = c.dt_min_limit, o.dt_max = c.dt_max_limit;
  o.per_group_norm = m.norm == ssm::Mamba2Norm::per_group;
  o.embedding = d(m.embedding()), o.norm_f = d(m.norm_f_weight()), o.head = d(m.head());
  for (const auto& l : m.layers()) {
    naive::Mamba2::Layer n;
    n.norm = d(l.norm_weight), n.in_proj = d(l.in_proj), n.in_proj_bias = d(l.in_proj_bias);
    const Rows conv = l.conv_weight.transpose();  // (K, conv_dim) -> PyTorch's (conv_dim, K)
    n.conv_weight = d(conv), n.conv_bias = d(l.conv_bias);
    n.dt_bias = d(l.dt_bias), n.A = d(l.A), n.D = d(l.D), n.gate_norm = d(l.gate_norm_weight);
    n.out_proj = d(l.out_proj), n.out_proj_bias = d(l.out_proj_bias);
    o.layers.push_back(n);
  }
  return o;
}

Rows oracle_logits(const ssm::Mamba2LM& m, const std::vector<std::int32_t>& tokens) {
  const std::vector<double> l = oracle(m).logits(std::vector<int>(tokens.begin(), tokens.end()));
  Rows out(Eigen::Index(tokens.size()), m.config().vocab_size);
  for (Eigen::Index i = 0; i < out.size(); ++i) out.data()[i] = float(l[std::size_t(i)]);
  return out;
}

// A scratch checkpoint folder: config.json and one F32 model.safetensors
// written by hand (8-byte header length, JSON header, raw data).
struct TempCheckpoint {
  std::string dir;
  explicit TempCheckpoint(const std::string& name)
      : dir((std::filesystem::temp_directory_path() / ("ssm_test_mamba2_" + name + "_" +
                                                        std::to_string(test::rng()()))).string()) {
    std::filesystem::create_directories(dir);
  }
  ~TempCheckpoint() { std::filesystem::remove_all(dir); }
  void write(const nlohmann::json& config,
             const std::map<std::string, std::pair<std::vector<std::int64_t>, std::vector<float>>>& tensors) const {
    std::ofstream(dir + "/config.json") << config.dump();
    nlohmann::json header = nlohmann::json::object();
    std::size_t offset = 0;
    for (const auto& [name, t] : tensors) {
      header[name] = {{"dtype", "F32"}, {"shape", t.first},
                      {"data_offsets", {offset, offset + 4 * t.second.size()}}};
      offset += 4 * t.second.size();
    }
    std::string h = header.dump();
    h.resize((h.size() + 7) / 8 * 8, ' ');
    std::ofstream f(dir + "/model.safetensors", std::ios::binary);
    const std::uint64_t n = h.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f.write(h.data(), std::streamsize(h.size()));
    for (const auto& kv : tensors)
      f.write(reinterpret_cast<const char*>(kv.second.second.data()), std::streamsize(4 * kv.second.second.size()));
  }
};

// Every tensor of a checkpoint, renamed by `rename` (empty: dropped).
template <class F>
std::map<std::string, std::pair<std::vector<std::int64_t>, std::vector<float>>> tensors_of(
    const std::string& folder, F rename) {
  const ssm::io::Checkpoint ck(folder);
  std::map<std::string, std::pair<std::vector<std::int64_t>, std::vector<float>>> out;
  for (const std::string& name : ck.names()) {
    const std::string to = rename(name);
    if (!to.empty()) out[to] = {ck.shape(name), ck.load(name, ck.shape(name))};
  }
  return out;
}

}  // namespace

TEST_CASE("the double-precision model agrees with transformers", "[mamba2][oracle]") {
  // validates the oracle used for the per-group norm below
  const ssm::Mamba2LM m = ssm::Mamba2LM::load(data("ref/m2_groups"));
  const auto input = ssm::io::load_npy(data("ref/m2_groups/input_ids.npy"));
  const auto logits = ssm::io::load_npy(data("ref/m2_groups/logits.npy"));
  const auto tokens = ids(input.values<std::int64_t>());
  const std::int64_t L = input.shape[1], V = m.config().vocab_size;
  const std::vector<std::int32_t> seq(tokens.begin(), tokens.begin() + L);
  const Rows theirs = Eigen::Map<const Rows>(logits.values<float>().data(), L, V);
  CHECK(rel_err(oracle_logits(m, seq), theirs) <= logit_tolerance);
}

TEST_CASE("the per-group gated norm matches its double-precision oracle", "[mamba2][norm]") {
  // m2_groups has 2 groups: normalizing per group changes the model (by
  // ~1.6 in the norm's output, reference.json), so both paths are checked
  // against the oracle computing the per-group form, and against
  // transformers' logits, which they must no longer match.
  ssm::Mamba2LM m = ssm::Mamba2LM::load(data("ref/m2_groups"));
  CHECK(m.norm == ssm::Mamba2Norm::whole);  // transformers' layout: its form
  m.norm = ssm::Mamba2Norm::per_group;
  const auto seq = random_tokens(GENERATE(1, 13, 40), m.config().vocab_size);
  const Rows want = oracle_logits(m, seq);
  CHECK(rel_err(all_logits(m, seq), want) <= logit_tolerance);
  CHECK(rel_err(stepped_logits(m, seq), want) <= logit_tolerance);
  m.norm = ssm::Mamba2Norm::whole;
  CHECK(rel_err(all_logits(m, seq), want) > 1e-2);
}

TEST_CASE("state-spaces checkpoints load with their own conventions", "[mamba2][io]") {
  // m2_groups under state-spaces/mamba's config and key names
  // (backbone.embedding, ssm_cfg): per-group norm by default, and with
  // transformers' norm the logits of transformers.
  const TempCheckpoint ck("statespaces");
  const nlohmann::json config = {
      {"d_model", 64}, {"n_layer", 2}, {"vocab_size", 128}, {"pad_vocab_size_multiple", 8},
      {"ssm_cfg", {{"layer", "Mamba2"}, {"d_state", 16}, {"d_conv", 4}, {"expand", 2},
                   {"headdim", 16}, {"ngroups", 2}, {"chunk_size", 8}}},
      {"rms_norm", true}, {"residual_in_fp32", true}, {"tie_embeddings", true}};
  ck.write(config, tensors_of(data("ref/m2_groups"), [](const std::string& n) {
             return n == "backbone.embeddings.weight" ? std::string("backbone.embedding.weight") : n;
           }));
  ssm::Mamba2LM m = ssm::Mamba2LM::load(ck.dir);
  CHECK(m.norm == ssm::Mamba2Norm::per_group);
  const auto seq = random_tokens(20, 128);
  CHECK(rel_err(all_logits(m, seq), oracle_logits(m, seq)) <= logit_tolerance);
  m.norm = ssm::Mamba2Norm::whole;
  const ssm::Mamba2LM hf = ssm::Mamba2LM::load(data("ref/m2_groups"));
  CHECK(rel_err(all_logits(m, seq), all_logits(hf, seq)) == 0);
}

TEST_CASE("recurrent and chunked prefill agree on a model with heads of 64, N = 128", "[mamba2]") {
  ssm::Mamba2Config c;
  c.d_model = 96, c.n_layer = 2, c.vocab_size = 300, c.d_state = 128, c.d_conv = 4;
  c.d_inner = 192, c.headdim = 64, c.nheads = 3, c.ngroups = GENERATE(1, 3), c.chunk_size = 32;
  c.dt_min_limit = 0.001, c.dt_max_limit = 0.2;
  ssm::Mamba2LM m = ssm::Mamba2LM::random(c, 5);
  const auto seq = random_tokens(GENERATE(1, 31, 32, 33, 200), c.vocab_size);
  INFO("groups " << c.ngroups << " L " << seq.size());
  ssm::Mamba2Cache rec, chunked, stepped;
  m.prefill = ssm::Mamba2Prefill::recurrent;
  const Rows r = all_logits(m, seq, &rec);
  m.prefill = ssm::Mamba2Prefill::chunked;
  const Rows k = all_logits(m, seq, &chunked);
  const Rows s = stepped_logits(m, seq, &stepped);
  CHECK(rel_err(k, r) <= logit_tolerance);
  CHECK(rel_err(s, r) <= logit_tolerance);
  // the same final states, to rounding (the layers' inputs differ by it)
  auto vec = [](const std::vector<float>& x) {
    return Eigen::Map<const Eigen::VectorXf>(x.data(), Eigen::Index(x.size()));
  };
  CHECK(rel_err(vec(chunked.conv), vec(rec.conv)) <= logit_tolerance);
  CHECK(rel_err(vec(stepped.conv), vec(rec.conv)) <= logit_tolerance);
  CHECK(rel_err(vec(chunked.ssm), vec(rec.ssm)) <= logit_tolerance);
  CHECK(rel_err(vec(stepped.ssm), vec(rec.ssm)) <= logit_tolerance);
  CHECK(rec.tokens == std::int64_t(seq.size()));
}

TEST_CASE("the SSD rows' storage: 2 MiB pages from 2 MiB on, deep copies", "[mamba2][pages]") {
  using ssm::detail::PagedRows;
  auto address = [](const float* p) { return reinterpret_cast<std::uintptr_t>(p); };
  PagedRows m;
  CHECK((m.data() == nullptr && m.size() == 0));
  m.resize(7, 13);  // small: a cache line's alignment
  REQUIRE((m.rows() == 7 && m.cols() == 13 && m.data() != nullptr));
  CHECK(address(m.data()) % 64 == 0);
  std::fill_n(m.data(), m.size(), 1.f);  // every element writable (ASan)
  m.resize(1023, 1025);  // 4.0 MiB, not a whole number of pages
  REQUIRE(m.size() == 1023 * 1025);
  CHECK(address(m.data()) % (std::uintptr_t(2) << 20) == 0);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = float(i % 1000);
  const float* before = m.data();
  m.resize(1025, 1023);  // the same size: the same storage, values kept
  CHECK((m.data() == before && m.data()[m.size() - 1] == float((m.size() - 1) % 1000)));
  const PagedRows copy = m;
  REQUIRE((copy.rows() == 1025 && copy.cols() == 1023 && copy.data() != m.data()));
  CHECK(std::equal(m.data(), m.data() + m.size(), copy.data()));
  ssm::detail::ensure_size(m, 10, 1023);  // a workspace never shrinks
  CHECK(m.rows() == 1025);
  m.resize(0, 5);
  CHECK((m.data() == nullptr && m.size() == 0 && m.cols() == 5));
  CHECK_THROWS_AS(m.resize(Eigen::Index(1) << 62, 1 << 3), std::bad_alloc);
  // the same storage for a std::vector
  std::vector<float, ssm::detail::PageAllocator<float>> v(std::size_t(1) << 20, 2.f);
  CHECK(address(v.data()) % (std::uintptr_t(2) << 20) == 0);
  v.push_back(3.f);  // regrown: values kept
  CHECK((v.front() == 2.f && v[std::size_t(1) << 19] == 2.f && v.back() == 3.f));
}

TEST_CASE("a Mamba-2 workspace grown past 2 MiB gives the logits of a fresh one", "[mamba2][pages]") {
  ssm::Mamba2Config c;
  c.d_model = 64, c.n_layer = 2, c.vocab_size = 100, c.d_state = 128, c.d_conv = 4;
  c.d_inner = 128, c.headdim = 32, c.nheads = 4, c.ngroups = 2, c.chunk_size = 64;
  const ssm::Mamba2LM m = ssm::Mamba2LM::random(c, 9);
  const ssm::Mamba2Workspace ws = check_grown_workspace(m, 1200);
  CHECK(ws.proj.size() * sizeof(float) > (std::size_t(2) << 20));  // 1024 + 3 rows of 772
}

TEST_CASE("Mamba-2 batched generation gives each sequence its tokens alone", "[mamba2][generate]") {
  check_batched_generation(ssm::Mamba2LM::load(data("ref/m2_bias")));
}

TEST_CASE("Mamba-2 caches fork, resume and take several tokens at once", "[mamba2][cache]") {
  ssm::Mamba2LM m = ssm::Mamba2LM::load(data("ref/m2_long"));
  m.prefill = GENERATE(ssm::Mamba2Prefill::recurrent, ssm::Mamba2Prefill::chunked);
  check_fork_resume(m, random_tokens(45, 128), GENERATE(1, 3, 16, 17, 44));
}

TEST_CASE("after the first token, Mamba-2 decoding and prompts allocate nothing", "[mamba2][cache]") {
  ssm::Mamba2LM m = ssm::Mamba2LM::load(data("ref/m2_groups"));
  m.threads = GENERATE(1, 2);
  // the chunked form allocates its C B^T products once per prompt and layer
  m.prefill = GENERATE(ssm::Mamba2Prefill::recurrent, ssm::Mamba2Prefill::chunked);
  check_no_allocation_per_token(m, random_tokens(19, 128), m.prefill != ssm::Mamba2Prefill::chunked);
}

TEST_CASE("Mamba2LM rejects bad tokens, foreign caches and bad checkpoints", "[mamba2][errors]") {
  using Catch::Matchers::Contains;
  using Catch::Matchers::Message;
  const ssm::Mamba2LM m = ssm::Mamba2LM::load(data("mamba2-tiny"));
  ssm::Mamba2Cache cache = m.new_cache();
  ssm::Mamba2Workspace ws;
  std::vector<float> logits(256);
  const std::int32_t bad[] = {5, 128};
  REQUIRE_THROWS_MATCHES(m.forward(bad, 2, cache, logits.data(), 1, ws), std::invalid_argument,
                         Message("ssm::Mamba2LM: token id 128 is outside the vocabulary [0, 128)"));
  REQUIRE_THROWS_MATCHES(m.forward(bad, 1, cache, logits.data(), 2, ws), std::invalid_argument,
                         Message("ssm::Mamba2LM::forward: 2 rows of logits asked of 1 tokens"));
  ssm::Mamba2Cache other = cache;
  other.ssm.pop_back();
  ssm::Mamba2Cache* caches[] = {&other};
  REQUIRE_THROWS_WITH(m.step(bad, caches, 1, logits.data(), ws), Contains("the cache was made for another model"));
  const std::int32_t two[] = {5, 6};
  ssm::Mamba2Cache* twice[] = {&cache, &cache};
  REQUIRE_THROWS_MATCHES(m.step(two, twice, 2, logits.data(), ws), std::invalid_argument,
                         Message("ssm::Mamba2LM::step: caches[0] and caches[1] are the same cache"));
  REQUIRE_THROWS_WITH(ssm::Mamba2LM::load(data("mamba-tiny")), Contains("a Mamba-1 checkpoint; load it with ssm::MambaLM"));

  const std::string layer0 = "backbone.layers.0.mixer.";
  const TempCheckpoint ck("bad");
  nlohmann::json config;
  std::ifstream(data("mamba2-tiny/config.json")) >> config;
  auto tensors = tensors_of(data("mamba2-tiny"), [](const std::string& n) { return n; });
  SECTION("in_proj with an extra part (a d_mlp): refused, as transformers 5.17 refuses it") {
    auto& w = tensors[layer0 + "in_proj.weight"];
    w.first[0] += 2 * 8;
    w.second.resize(w.second.size() + 2 * 8 * 64, 0.f);
    ck.write(config, tensors);
    REQUIRE_THROWS_WITH(ssm::Mamba2LM::load(ck.dir),
                        Contains("'" + layer0 + "in_proj.weight': expected [296, 64], got [312, 64]"));
  }
  SECTION("a missing tensor") {
    tensors.erase(layer0 + "D");
    ck.write(config, tensors);
    REQUIRE_THROWS_WITH(ssm::Mamba2LM::load(ck.dir), Contains("no tensor '" + layer0 + "D'"));
  }
  SECTION("A_log whose exp overflows") {
    tensors[layer0 + "A_log"].second[3] = 100.f;
    ck.write(config, tensors);
    REQUIRE_THROWS_MATCHES(ssm::Mamba2LM::load(ck.dir), std::runtime_error,
                           Message("ssm::Mamba2LM: " + ck.dir + "/model.safetensors: '" + layer0 +
                                   "A_log': exp(A_log) overflows float (100.000000 at element 3)"));
  }
  SECTION("a NaN weight") {
    tensors["backbone.norm_f.weight"].second[7] = std::nanf("");
    ck.write(config, tensors);
    REQUIRE_THROWS_WITH(ssm::Mamba2LM::load(ck.dir),
                        Contains("/model.safetensors: 'backbone.norm_f.weight' has a non-finite value (nan at element 7)"));
  }
  SECTION("a negative time step limit") {
    config["time_step_limit"] = {-0.5, 1.0};
    ck.write(config, tensors);
    REQUIRE_THROWS_WITH(ssm::Mamba2LM::load(ck.dir), Contains("the time step limit must be >= 0, got -0.500000"));
  }
}

TEST_CASE("Mamba2LM::random rejects inconsistent configs", "[mamba2][errors]") {
  using Catch::Matchers::Message;
  ssm::Mamba2Config c;
  c.d_model = 32, c.n_layer = 1, c.vocab_size = 50, c.d_state = 8, c.d_inner = 64, c.headdim = 16, c.nheads = 4;
  c.ngroups = 2;
  ssm::Mamba2LM::random(c, 1);  // consistent
  const std::string where = "ssm::Mamba2LM::random: ";
  ssm::Mamba2Config bad = c;
  bad.nheads = 3;  // d_inner 64 but 3 heads of 16: y's rows would be too short
  REQUIRE_THROWS_MATCHES(ssm::Mamba2LM::random(bad, 1), std::invalid_argument,
                         Message(where + "nheads * headdim = 3 * 16 must equal d_inner = 64"));
  bad = c, bad.ngroups = 3;
  REQUIRE_THROWS_MATCHES(ssm::Mamba2LM::random(bad, 1), std::invalid_argument,
                         Message(where + "4 heads do not split into 3 groups"));
  bad = c, bad.dt_min_limit = 1, bad.dt_max_limit = 0.5;
  REQUIRE_THROWS_MATCHES(ssm::Mamba2LM::random(bad, 1), std::invalid_argument,
                         Message(where + "the dt limits must satisfy 0 <= dt_min_limit <= dt_max_limit, "
                                         "got [1.000000, 0.500000]"));
  bad = c, bad.chunk_size = 0;
  REQUIRE_THROWS_MATCHES(ssm::Mamba2LM::random(bad, 1), std::invalid_argument,
                         Message(where + "chunk_size must be > 0, got 0"));
}

TEST_CASE("Mamba-2 hidden states: after each layer, then the final norm", "[mamba2]") {
  // transformers' output_hidden_states (as for Mamba-1): the last entry,
  // through the LM head, gives the logits
  const ssm::Mamba2LM m = ssm::Mamba2LM::load(data("ref/m2_bias"));
  const auto seq = random_tokens(23, m.config().vocab_size);
  ssm::Mamba2Cache cache = m.new_cache();
  ssm::Mamba2Workspace ws;
  std::vector<Rows> hidden;
  Rows logits(23, m.config().vocab_size);
  m.forward(seq.data(), seq.size(), cache, logits.data(), seq.size(), ws, &hidden);
  REQUIRE(hidden.size() == std::size_t(m.config().n_layer + 1));
  for (const Rows& h : hidden) CHECK((h.rows() == 23 && h.cols() == m.config().d_model));
  const Rows via_head = hidden.back() * m.head().transpose();
  CHECK(rel_err(via_head, logits) <= 1e-6);
  CHECK(rel_err(logits, all_logits(m, seq)) <= 1e-6);
}
