// Token generation with any of the library's language models (MambaLM,
// Mamba2LM): each prompt runs through the parallel path, then all sequences
// continue together through the recurrent step, one token each per step.
#pragma once

#include <ssm/sampling.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace ssm {

/// Token counts and timing of a generate() call, summed over the sequences.
struct GenerationStats {
  std::size_t prompt_tokens = 0, generated_tokens = 0;  ///< tokens read, tokens made
  double prefill_seconds = 0, decode_seconds = 0;       ///< wall time of each phase
};

/// Generates up to max_new_tokens tokens after each prompt (prompts of any
/// lengths, each at least one token). Returns the new tokens of each
/// sequence, which are exactly those it gets when generated alone: no
/// padding, each sequence keeps its own cache and sampler (same seed).
/// stop_token (>= 0) ends a sequence once generated. Model must provide
/// the types Model::Cache and Model::Workspace, new_cache(), forward(),
/// step() and config().vocab_size, as MambaLM and Mamba2LM do; threads as
/// the model's. Throws std::invalid_argument for an empty prompt, options
/// Sampler refuses, or what the model's forward() / step() and
/// Sampler::next() throw (e.g. a token id outside the vocabulary).
template <class Model>
std::vector<std::vector<std::int32_t>> generate(
    const Model& model, const std::vector<std::vector<std::int32_t>>& prompts,
    std::size_t max_new_tokens, const SamplingOptions& sampling = {},
    std::int32_t stop_token = -1, GenerationStats* stats = nullptr) {
  using clock = std::chrono::steady_clock;
  const std::size_t n = prompts.size(), V = std::size_t(model.config().vocab_size);
  for (std::size_t i = 0; i < n; ++i)
    if (prompts[i].empty())
      throw std::invalid_argument("ssm::generate: prompt " + std::to_string(i) + " is empty");
  std::vector<typename Model::Cache> caches(n);
  std::vector<Sampler> samplers(n, Sampler(sampling));
  std::vector<std::vector<std::int32_t>> seen(prompts), out(n);
  std::vector<float> logits(n * V);
  typename Model::Workspace ws;
  GenerationStats st;

  auto t0 = clock::now();
  std::vector<std::int32_t> next(n);
  for (std::size_t i = 0; i < n; ++i) {
    caches[i] = model.new_cache();
    model.forward(prompts[i].data(), prompts[i].size(), caches[i], logits.data() + i * V, 1, ws);
    st.prompt_tokens += prompts[i].size();
  }
  auto t1 = clock::now();
  std::vector<std::size_t> active;
  std::vector<typename Model::Cache*> batch;
  std::vector<std::int32_t> tokens;
  for (std::size_t i = 0; i < n; ++i) active.push_back(i);
  for (std::size_t step = 0; step < max_new_tokens && !active.empty(); ++step) {
    if (step > 0) {  // one token for every active sequence, then their logits
      batch.clear();
      tokens.clear();
      for (std::size_t i : active) {
        batch.push_back(&caches[i]);
        tokens.push_back(out[i].back());
      }
      model.step(tokens.data(), batch.data(), batch.size(), logits.data(), ws);
      for (std::size_t j = active.size(); j-- > 0;)  // compact: row j belongs to active[j]
        std::copy_n(logits.data() + j * V, V, logits.data() + active[j] * V);
    }
    std::vector<std::size_t> still;
    for (std::size_t i : active) {
      const std::int32_t t = samplers[i].next(logits.data() + i * V, V, seen[i]);
      out[i].push_back(t);
      seen[i].push_back(t);
      ++st.generated_tokens;
      if (t != stop_token) still.push_back(i);
    }
    active.swap(still);
  }
  auto t2 = clock::now();
  st.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
  st.decode_seconds = std::chrono::duration<double>(t2 - t1).count();
  if (stats) *stats = st;
  return out;
}

}  // namespace ssm
