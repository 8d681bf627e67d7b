// Choosing the next token from logits: greedy, or sampled with temperature,
// top-k and top-p, with an optional repetition penalty, in the order
// Hugging Face's generate() applies them.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace ssm {

/// How generate() picks tokens. The defaults are greedy decoding.
struct SamplingOptions {
  float temperature = 0;         ///< 0: greedy (argmax); else softmax(logits / T)
  int top_k = 0;                 ///< keep the k most likely tokens (0: all)
  float top_p = 1;               ///< keep the smallest set with probability >= p
  float repetition_penalty = 1;  ///< > 1 discourages tokens already in the sequence:
                                 ///< logit < 0 ? logit * r : logit / r (Keskar et al. 2019)
  std::uint64_t seed = 0;        ///< each sequence's generator starts from it
};

/// Picks tokens for one sequence; deterministic in the seed (its own
/// uniform draws, not the implementation-defined std distributions).
class Sampler {
 public:
  /// Throws std::invalid_argument for options out of range: temperature
  /// negative or not finite, top_k < 0, top_p outside (0, 1],
  /// repetition_penalty not a finite value > 0.
  explicit Sampler(const SamplingOptions& opt) : opt_(opt), rng_(opt.seed) {
    if (!(opt.temperature >= 0) || !std::isfinite(opt.temperature))
      fail("temperature must be >= 0, got " + std::to_string(opt.temperature));
    if (opt.top_k < 0) fail("top_k must be >= 0, got " + std::to_string(opt.top_k));
    if (!(opt.top_p > 0 && opt.top_p <= 1))
      fail("top_p must lie in (0, 1], got " + std::to_string(opt.top_p));
    if (!(opt.repetition_penalty > 0) || !std::isfinite(opt.repetition_penalty))
      fail("repetition_penalty must be > 0, got " + std::to_string(opt.repetition_penalty));
  }

  /// The next token given the logits (vocab values; modified in place) and
  /// the tokens of the sequence so far (for the repetition penalty). Throws
  /// std::invalid_argument for an empty vocabulary, a NaN logit, a seen
  /// token outside [0, vocab) (read only when repetition_penalty != 1), and,
  /// when sampling, a largest logit that is
  /// infinite (softmax is undefined there; torch.multinomial refuses too).
  std::int32_t next(float* logits, std::size_t vocab, const std::vector<std::int32_t>& seen) {
    if (vocab == 0) fail("the vocabulary is empty");
    for (std::size_t i = 0; i < vocab; ++i)
      if (std::isnan(logits[i])) fail("the logit of token " + std::to_string(i) + " is NaN");
    if (opt_.repetition_penalty != 1) {
      // once per distinct token, however often it occurs, as transformers'
      // RepetitionPenaltyLogitsProcessor (a gather, then a scatter)
      penalized_.assign(vocab, false);
      for (std::int32_t t : seen) {
        if (t < 0 || std::size_t(t) >= vocab)
          fail("token " + std::to_string(t) + " of the sequence is outside the vocabulary [0, " +
               std::to_string(vocab) + ")");
        if (penalized_[std::size_t(t)]) continue;
        penalized_[std::size_t(t)] = true;
        float& l = logits[std::size_t(t)];
        l = l < 0 ? l * opt_.repetition_penalty : l / opt_.repetition_penalty;
      }
    }
    if (opt_.temperature == 0)  // first maximum, as torch.argmax
      return std::int32_t(std::max_element(logits, logits + vocab) - logits);

    std::vector<std::int32_t>& order = order_;
    order.resize(vocab);
    std::iota(order.begin(), order.end(), 0);
    const std::size_t k = opt_.top_k > 0 ? std::min(vocab, std::size_t(opt_.top_k)) : vocab;
    // most likely first (ties by token id, so the result does not depend on the sort)
    auto more_likely = [&](std::int32_t a, std::int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    };
    std::partial_sort(order.begin(), order.begin() + std::ptrdiff_t(k), order.end(), more_likely);
    order.resize(k);
    // softmax over the kept tokens, at temperature T
    probs_.resize(k);
    const double top = double(logits[order[0]]) / opt_.temperature;
    if (!std::isfinite(top))  // else every probability below is NaN
      fail("cannot sample: the largest logit is " + std::to_string(logits[order[0]]));
    double sum = 0;
    for (std::size_t i = 0; i < k; ++i) sum += probs_[i] = std::exp(double(logits[order[i]]) / opt_.temperature - top);
    // nucleus: the fewest most-likely tokens reaching probability top_p
    std::size_t keep = 0;
    double mass = 0;
    while (keep < k && mass < opt_.top_p * sum) mass += probs_[keep++];
    // draw u in [0, mass) from 53 random bits
    const double u = double(rng_() >> 11) * (1.0 / 9007199254740992.0) * mass;
    double acc = 0;
    for (std::size_t i = 0; i < keep; ++i)
      if ((acc += probs_[i]) > u) return order[i];
    return order[keep - 1];
  }

 private:
  [[noreturn]] static void fail(const std::string& what) {
    throw std::invalid_argument("ssm::Sampler: " + what);
  }
  SamplingOptions opt_;
  std::mt19937_64 rng_;
  std::vector<std::int32_t> order_;
  std::vector<double> probs_;
  std::vector<bool> penalized_;
};

}  // namespace ssm
