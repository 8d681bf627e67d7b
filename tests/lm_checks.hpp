// What test_mamba.cpp and test_mamba2.cpp check alike of a language model
// (ssm::MambaLM, ssm::Mamba2LM: the interface ssm::generate takes): logits
// by the parallel and the step path, batched generation against each
// sequence alone, caches that fork and resume, no allocation per token.
#pragma once

#include <ssm/generate.hpp>
#include <ssm/io/npy.hpp>

#include "heap_count.hpp"
#include "util.hpp"

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#ifndef SSM_TEST_DATA_DIR
#error "define SSM_TEST_DATA_DIR as tests/data"
#endif

namespace test {

using Rows = ssm::detail::RowMatrixXf;

inline std::string data(const std::string& rel) { return std::string(SSM_TEST_DATA_DIR) + "/" + rel; }

inline std::vector<std::int32_t> ids(const std::vector<std::int64_t>& v) {
  return std::vector<std::int32_t>(v.begin(), v.end());
}

inline std::vector<std::int32_t> random_tokens(std::size_t n, std::int64_t vocab) {
  std::vector<std::int32_t> t(n);
  for (auto& x : t) x = std::int32_t(std::uniform_int_distribution<std::int64_t>(0, vocab - 1)(rng()));
  return t;
}

// transformers' float32 logits against ours: well under 1e-4 of their scale
// (the README of the references); we hold 2e-5.
constexpr double logit_tolerance = 2e-5;

// Logits of every position of one sequence through the parallel path (and
// the cache it leaves, the hidden states it reports).
template <class Model>
Rows all_logits(const Model& m, const std::vector<std::int32_t>& tokens,
                typename Model::Cache* final_cache = nullptr, std::vector<Rows>* hidden = nullptr) {
  typename Model::Cache cache = m.new_cache();
  typename Model::Workspace ws;
  Rows logits(Eigen::Index(tokens.size()), m.config().vocab_size);
  m.forward(tokens.data(), tokens.size(), cache, logits.data(), tokens.size(), ws, hidden);
  if (final_cache) *final_cache = cache;
  return logits;
}

// The same positions through the recurrent step, one token at a time.
template <class Model>
Rows stepped_logits(const Model& m, const std::vector<std::int32_t>& tokens,
                    typename Model::Cache* final_cache = nullptr) {
  typename Model::Cache cache = m.new_cache();
  typename Model::Cache* caches[] = {&cache};
  typename Model::Workspace ws;
  Rows logits(Eigen::Index(tokens.size()), m.config().vocab_size);
  for (std::size_t t = 0; t < tokens.size(); ++t)
    m.step(&tokens[t], caches, 1, logits.row(Eigen::Index(t)).data(), ws);
  if (final_cache) *final_cache = cache;
  return logits;
}

// Once a workspace has served a prompt and a step, further steps (of one
// sequence and of two), and prompts if `prompts`, no longer allocate: the
// workspace's promise, which a cache built only to compare sizes with once
// broke on every step (2.8 MB for the 130m Mamba-1).
template <class Model>
void check_no_allocation_per_token(const Model& m, const std::vector<std::int32_t>& prompt,
                                   bool prompts = true) {
  typename Model::Cache one = m.new_cache(), two = m.new_cache();
  typename Model::Cache* caches[] = {&one, &two};
  typename Model::Workspace ws;
  std::vector<float> logits(2 * std::size_t(m.config().vocab_size));
  m.forward(prompt.data(), prompt.size(), one, logits.data(), 1, ws);
  m.step(prompt.data(), caches, 2, logits.data(), ws);
  const long before = test::heap_allocations;
  for (std::size_t t = 0; t < prompt.size(); ++t) {
    const std::int32_t pair[] = {prompt[t], prompt[0]};
    m.step(pair, caches, 1, logits.data(), ws);
    m.step(pair, caches, 2, logits.data(), ws);
  }
  if (prompts) m.forward(prompt.data(), prompt.size(), two, logits.data(), 1, ws);
  const long made = test::heap_allocations - before;
  CHECK(made == 0);
}

// A workspace used for a short prompt, then grown for a long one (its rows
// past 2 MiB, into huge pages: detail/pages.hpp), gives a fresh one's
// logits bitwise; returned for the caller to check its sizes.
template <class Model>
typename Model::Workspace check_grown_workspace(const Model& m, std::size_t long_prompt) {
  const auto V = m.config().vocab_size;
  const auto small = random_tokens(5, V), big = random_tokens(long_prompt, V);
  typename Model::Workspace ws;
  typename Model::Cache cache = m.new_cache();
  Rows logits(Eigen::Index(big.size()), V);
  m.forward(small.data(), small.size(), cache, logits.data(), 1, ws);
  cache = m.new_cache();
  m.forward(big.data(), big.size(), cache, logits.data(), big.size(), ws);
  CHECK(rel_err(logits, all_logits(m, big)) == 0);
  return ws;
}

// Each greedy_prompt*.npy of a reference folder with the tokens transformers
// generated after it (greedy_tokens<variant>*.npy, prompt included), as
// f(prompt, continuation, file suffix); returns how many there were.
template <class F>
int for_each_greedy_prompt(const std::string& folder, const std::string& variant, F f) {
  int prompts = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("greedy_prompt", 0) != 0) continue;
    ++prompts;
    const std::string suffix = name.substr(std::string("greedy_prompt").size());
    const auto prompt = ids(ssm::io::load_npy(entry.path().string()).values<std::int64_t>());
    const auto expect =
        ids(ssm::io::load_npy(folder + "/greedy_tokens" + variant + suffix).values<std::int64_t>());
    INFO(folder << " " << name << variant);
    const std::vector<std::int32_t> continuation(expect.begin() + std::ptrdiff_t(prompt.size()),
                                                 expect.end());
    f(prompt, continuation, suffix);
  }
  return prompts;
}

// Prompts of different lengths generated together give each the tokens it
// gets alone, greedy and sampled.
template <class Model>
void check_batched_generation(const Model& m) {
  std::vector<std::vector<std::int32_t>> prompts;
  for (const std::size_t len : {1, 7, 3, 12, 5, 2})
    prompts.push_back(random_tokens(len, m.config().vocab_size));
  ssm::SamplingOptions greedy, sampled;
  sampled.temperature = 0.8f;
  sampled.top_k = 20;
  sampled.top_p = 0.9f;
  sampled.repetition_penalty = 1.3f;
  sampled.seed = std::uniform_int_distribution<std::uint64_t>()(rng());
  for (const auto& opt : {greedy, sampled}) {
    const auto together = ssm::generate(m, prompts, 10, opt);
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      INFO("prompt " << i << " temperature " << opt.temperature << " seed " << opt.seed);
      CHECK(together[i] == ssm::generate(m, {prompts[i]}, 10, opt)[0]);
    }
  }
}

// seq's first `split` tokens into a cache; the rest at once from it gives
// the logits of the whole, and a copy saved at the split resumes the same
// through the step path.
template <class Model>
void check_fork_resume(const Model& m, const std::vector<std::int32_t>& seq, std::size_t split) {
  const Rows whole = all_logits(m, seq);
  const Eigen::Index V = whole.cols();
  typename Model::Workspace ws;
  typename Model::Cache cache = m.new_cache();
  Rows first(Eigen::Index(split), V), rest(Eigen::Index(seq.size() - split), V);
  m.forward(seq.data(), split, cache, first.data(), split, ws);
  const typename Model::Cache saved = cache;  // a value: fork it
  m.forward(seq.data() + split, seq.size() - split, cache, rest.data(), seq.size() - split, ws);
  CHECK(rel_err(rest, whole.bottomRows(rest.rows())) <= 1e-5);
  CHECK(cache.tokens == std::int64_t(seq.size()));
  typename Model::Cache resumed = saved;
  typename Model::Cache* caches[] = {&resumed};
  Eigen::VectorXf row(V);
  m.step(&seq[split], caches, 1, row.data(), ws);
  CHECK(rel_err(row.transpose(), whole.row(Eigen::Index(split))) <= 1e-5);
}

}  // namespace test
