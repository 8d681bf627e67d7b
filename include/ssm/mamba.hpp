// Mamba-1 language models (Gu & Dao 2023) as Hugging Face stores them:
// embedding -> n_layer x [x + Mixer(RMSNorm(x))] -> RMSNorm -> LM head, with
// the Mamba mixer
//   x, z  = in_proj(h)                        (L, 2 d_inner) -> 2 x (L, d_inner)
//   x     = silu(causal depthwise conv1d(x))  kernel d_conv, with bias
//   dt, B, C = x_proj(x)                      (L, dt_rank + 2 N)
//   delta = dt_proj(dt)                       (L, d_inner), bias inside the scan
//   y     = selective_scan(x, delta, A = -exp(A_log), B, C, D, z, softplus)
//   out   = out_proj(y)
// Two evaluations of the same weights: the parallel path over a whole
// prompt (matrix products, the SIMD scan) and the recurrent step of one token
// per sequence with a cache (conv state and SSM state). Both give the same
// logits (tests/test_mamba.cpp: within 2e-5 of transformers).
#pragma once

#include <ssm/detail/linear.hpp>
#include <ssm/detail/pages.hpp>
#include <ssm/detail/selective_scan_kernel.hpp>
#include <ssm/io/checkpoint.hpp>
#include <ssm/io/config.hpp>
#include <ssm/selective_scan.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace ssm {

/// A row-major float matrix: the layout of the models' weights (out x in,
/// as checkpoints store them) and of their hidden states (a row per token).
using RowMatrixXf = detail::RowMatrixXf;

/// The recurrent state of one sequence: what the step path needs to go on.
/// A plain value: copy it to fork a sequence, keep a copy to restore it,
/// fill `ssm` to start from a given state.
struct MambaCache {
  /// (n_layer, d_conv - 1, d_inner): each layer's last d_conv - 1 conv
  /// inputs, oldest first (zeros before the first token)
  std::vector<float> conv;
  /// (n_layer, d_state, d_inner): each layer's SSM state h[n, d]
  std::vector<float> ssm;
  std::int64_t tokens = 0;  ///< tokens consumed so far
};

/// Scratch memory of forward() and step(): owned by the caller, reused
/// across calls so that decoding allocates nothing after the first token.
/// One per thread that runs the model. The rows the selective scan walks
/// (xz holds z, xc is u, x_dbl holds B and C; delta, y) are in 2 MiB pages
/// where Linux offers them (detail/pages.hpp). The fields are the model's
/// intermediate rows, public for inspection only: their shapes and contents
/// are not part of the interface.
struct MambaWorkspace {
  RowMatrixXf hidden, normed, out;
  detail::PagedRows xz, xc, x_dbl, delta, y;
};

/// One Mamba block's weights. Matrices are row-major (out x in), as stored.
struct MambaLayer {
  Eigen::VectorXf norm_weight, norm_bias;   ///< (d_model); bias only with LayerNorm
  RowMatrixXf in_proj;              ///< (2 d_inner, d_model)
  Eigen::VectorXf in_proj_bias;             ///< (2 d_inner) or empty
  RowMatrixXf conv_weight;          ///< (d_conv, d_inner): tap k of each channel
  Eigen::VectorXf conv_bias;                ///< (d_inner) or empty
  RowMatrixXf x_proj;               ///< (dt_rank + 2 N, d_inner)
  RowMatrixXf dt_proj;              ///< (d_inner, dt_rank)
  Eigen::VectorXf dt_bias;                  ///< (d_inner)
  RowMatrixXf A;                    ///< (d_inner, N): -exp(A_log)
  Eigen::VectorXf D;                        ///< (d_inner)
  RowMatrixXf out_proj;             ///< (d_model, d_inner)
  Eigen::VectorXf out_proj_bias;            ///< (d_model) or empty
};

namespace detail {

// RMSNorm (Zhang & Sennrich 2019) as transformers' MambaRMSNorm:
// x / sqrt(mean(x^2) + eps) * w; or LayerNorm with bias when `bias` is set.
inline void norm_rows(const float* x, std::ptrdiff_t ldx, std::size_t rows, std::size_t cols,
                      const Eigen::VectorXf& w, const Eigen::VectorXf& bias, double eps, float* y,
                      std::ptrdiff_t ldy) {
  for (std::size_t r = 0; r < rows; ++r) {
    Eigen::Map<const Eigen::VectorXf> in(x + std::ptrdiff_t(r) * ldx, Eigen::Index(cols));
    Eigen::Map<Eigen::VectorXf> out(y + std::ptrdiff_t(r) * ldy, Eigen::Index(cols));
    if (bias.size() == 0) {
      const float scale = 1.0f / std::sqrt(in.squaredNorm() / float(cols) + float(eps));
      out = (in * scale).cwiseProduct(w);
    } else {
      const float mean = in.mean();
      const float var = (in.array() - mean).square().mean();
      out = ((in.array() - mean) / std::sqrt(var + float(eps))).matrix().cwiseProduct(w) + bias;
    }
  }
}

// Causal depthwise convolution over the rows of x (channels contiguous):
// rows [0, K-1) of x are the history, row K-1+t is step t; then SiLU.
// y[t, c] = silu(b[c] + sum_k w[k, c] x[t + k, c]).
template <class Arch = xsimd::default_arch>
void conv_silu(const float* x, std::ptrdiff_t ldx, std::size_t steps, std::size_t channels,
               const RowMatrixXf& w, const Eigen::VectorXf& b, float* y, std::ptrdiff_t ldy) {
  using batch = xsimd::batch<float, Arch>;
  constexpr std::size_t W = batch::size;
  const std::size_t K = std::size_t(w.rows());
  for (std::size_t t = 0; t < steps; ++t) {
    const float* xt = x + std::ptrdiff_t(t) * ldx;
    float* yt = y + std::ptrdiff_t(t) * ldy;
    std::size_t c = 0;
    for (; c + W <= channels; c += W) {
      batch acc = b.size() ? batch::load_unaligned(b.data() + c) : batch(0.f);
      for (std::size_t k = 0; k < K; ++k)
        acc = xsimd::fma(batch::load_unaligned(w.data() + k * channels + c),
                         batch::load_unaligned(xt + std::ptrdiff_t(k) * ldx + std::ptrdiff_t(c)), acc);
      silu<Arch>(acc).store_unaligned(yt + c);
    }
    for (; c < channels; ++c) {
      float acc = b.size() ? b[Eigen::Index(c)] : 0.f;
      for (std::size_t k = 0; k < K; ++k) acc += w(Eigen::Index(k), Eigen::Index(c)) * xt[std::ptrdiff_t(k) * ldx + std::ptrdiff_t(c)];
      yt[c] = silu(acc);
    }
  }
}

template <class M>
void ensure_size(M& m, Eigen::Index rows, Eigen::Index cols) {
  if (m.rows() < rows || m.cols() != cols) m.resize(std::max(rows, m.rows()), cols);
}

// What the prompt pass of a Mamba language model reads (run_prompt).
template <class Layer>
struct LmParts {
  const std::vector<Layer>& layers;  // each with norm_weight, norm_bias
  const Eigen::VectorXf& norm_f_weight;
  const Eigen::VectorXf& norm_f_bias;
  const RowMatrixXf& head;  // (vocab, d_model)
  double eps;
  int threads;
};

// The prompt pass of Mamba-1 and Mamba-2 alike: x = embed(tokens), then per
// layer x += mixer(i, norm(x)), then the final norm and the LM head for the
// positions among the last logit_rows (logits: logit_rows x vocab). Tokens
// run in slices of 1024: memory stays bounded and the cache, updated by the
// mixer, carries the state across slices (with hidden states: one slice,
// and every layer's output pushed, then the final norm's).
// embed(first token, count, out rows); mixer(layer, steps): ws.normed's
// first steps rows into ws.out.
template <class Arch, class Layer, class Ws, class Embed, class Mixer>
void run_prompt(const LmParts<Layer>& m, std::size_t n, std::size_t logit_rows, float* logits,
                Ws& ws, std::vector<RowMatrixXf>* hidden, Embed&& embed, Mixer&& mixer) {
  const auto dm = std::size_t(m.head.cols()), vocab = std::size_t(m.head.rows());
  const auto ld = std::ptrdiff_t(dm);
  if (hidden) hidden->clear();
  const std::size_t slice = hidden ? std::max<std::size_t>(n, 1) : 1024;
  for (std::size_t s = 0; s < n; s += slice) {
    const std::size_t steps = std::min(slice, n - s);
    const auto S = Eigen::Index(steps);
    ensure_size(ws.hidden, S, Eigen::Index(dm));
    ensure_size(ws.normed, S, Eigen::Index(dm));
    embed(s, steps, ws.hidden.data());
    for (std::size_t i = 0; i < m.layers.size(); ++i) {
      const Layer& l = m.layers[i];
      norm_rows(ws.hidden.data(), ld, steps, dm, l.norm_weight, l.norm_bias, m.eps,
                ws.normed.data(), ld);
      mixer(i, steps);
      ws.hidden.topRows(S) += ws.out.topRows(S);
      if (hidden) hidden->push_back(ws.hidden.topRows(S));
    }
    const std::size_t first = std::max(s, n - logit_rows), end = s + steps;
    if (first < end || hidden) {
      const std::size_t r0 = hidden ? 0 : first - s, rows = hidden ? steps : end - first;
      norm_rows(ws.hidden.data() + std::ptrdiff_t(r0 * dm), ld, rows, dm, m.norm_f_weight,
                m.norm_f_bias, m.eps, ws.normed.data(), ld);
      if (hidden) hidden->push_back(ws.normed.topRows(S));
      if (first < end) {
        const std::size_t skip = hidden ? first - s : 0;
        linear<Arch>(m.head, nullptr, ws.normed.data() + std::ptrdiff_t(skip * dm), ld, end - first,
                     logits + std::ptrdiff_t((first - (n - logit_rows)) * vocab),
                     std::ptrdiff_t(vocab), m.threads);
      }
    }
  }
}

// step()'s caches: none null, none twice (the threads that update one
// sequence's state would race with those of its twin).
template <class Cache>
void check_distinct(Cache* const* caches, std::size_t batch, const char* where) {
  for (std::size_t i = 0; i < batch; ++i) {
    if (!caches[i])
      throw std::invalid_argument(std::string(where) + ": caches[" + std::to_string(i) + "] is null");
    for (std::size_t j = 0; j < i; ++j)
      if (caches[j] == caches[i])
        throw std::invalid_argument(std::string(where) + ": caches[" + std::to_string(j) + "] and caches[" +
                                    std::to_string(i) + "] are the same cache");
  }
}

}  // namespace detail

/// A Mamba-1 language model: the weights and the two evaluation paths. The
/// methods are const and keep no state: one model can serve several
/// threads, each with its own caches and workspace.
class MambaLM {
 public:
  using Cache = MambaCache;          ///< per-sequence state (generate() uses it)
  using Workspace = MambaWorkspace;  ///< reusable buffers of forward() and step()

  /// Loads a Hugging Face checkpoint folder (transformers or state-spaces
  /// layout; F32, F16, BF16 or F64; single file or sharded), checking every
  /// tensor's presence and shape against config.json and its values for
  /// NaN/Inf. Throws std::runtime_error naming the file and tensor (or the
  /// config key), also for a Mamba-2 checkpoint.
  static MambaLM load(const std::string& folder);

  /// A model of the given shape with random weights (deterministic in
  /// `seed`), for benchmarks and tests. An inconsistent config throws
  /// std::invalid_argument (MambaConfig::check).
  static MambaLM random(const MambaConfig& config, std::uint64_t seed);

  const MambaConfig& config() const { return cfg_; }                 ///< the shape
  const std::vector<MambaLayer>& layers() const { return layers_; }  ///< the blocks' weights
  const RowMatrixXf& embedding() const { return embedding_; }  ///< (vocab, d_model)
  /// (vocab, d_model): lm_head, or the embedding when tied
  const RowMatrixXf& head() const { return lm_head_.size() ? lm_head_ : embedding_; }
  /// (d_model): the final norm's weight
  const Eigen::VectorXf& norm_f_weight() const { return norm_f_weight_; }
  const Eigen::VectorXf& norm_f_bias() const { return norm_f_bias_; }  ///< empty with RMSNorm

  /// An empty cache: the state before the first token.
  MambaCache new_cache() const {
    MambaCache c;
    c.conv.assign(conv_size(), 0.f);
    c.ssm.assign(ssm_size(), 0.f);
    return c;
  }

  /// The parallel path: runs `n` tokens of one sequence from the cache's
  /// state (which it advances), and writes the logits of the last
  /// `logit_rows` positions to `logits` ((logit_rows, vocab), row-major).
  /// Continuing a cache with several tokens gives the logits of feeding
  /// the whole sequence at once. hidden (optional): receives the residual
  /// stream after each layer and the final normed output (transformers'
  /// output_hidden_states without the embedding entry), n_layer + 1 entries
  /// (none when n == 0). Throws std::invalid_argument, before changing the
  /// cache, for a token id outside [0, vocab_size), a cache of another
  /// model's sizes, or logit_rows > n.
  void forward(const std::int32_t* tokens, std::size_t n, MambaCache& cache, float* logits,
               std::size_t logit_rows, MambaWorkspace& ws,
               std::vector<RowMatrixXf>* hidden = nullptr) const;

  /// The recurrent path: one token for each of `batch` sequences, advancing
  /// their caches; logits (batch, vocab). Each sequence's logits are bitwise
  /// those of stepping it alone. Throws std::invalid_argument, before
  /// changing any cache, for a token id outside [0, vocab_size), a null or
  /// repeated cache pointer, or a cache of another model's sizes.
  void step(const std::int32_t* tokens, MambaCache* const* caches, std::size_t batch,
            float* logits, MambaWorkspace& ws) const;

  /// Threads for the kernels and matrix products (<= 0: OpenMP's maximum).
  int threads = 0;

 private:
  void check_tokens(const std::int32_t* tokens, std::size_t n) const {
    for (std::size_t i = 0; i < n; ++i)
      if (tokens[i] < 0 || tokens[i] >= cfg_.vocab_size)
        throw std::invalid_argument("ssm::MambaLM: token id " + std::to_string(tokens[i]) +
                                    " is outside the vocabulary [0, " +
                                    std::to_string(cfg_.vocab_size) + ")");
  }
  std::size_t conv_size() const { return std::size_t(cfg_.n_layer * (cfg_.d_conv - 1) * cfg_.d_inner); }
  std::size_t ssm_size() const { return std::size_t(cfg_.n_layer * cfg_.d_state * cfg_.d_inner); }
  // Sizes only: a whole cache made to compare with (2.8 MB, zeroed, for
  // the 130m model) was allocated on every step.
  void check_cache(const MambaCache& c) const {
    if (c.conv.size() != conv_size() || c.ssm.size() != ssm_size())
      throw std::invalid_argument("ssm::MambaLM: the cache was made for another model (" +
                                  std::to_string(c.conv.size()) + " + " +
                                  std::to_string(c.ssm.size()) + " values, expected " +
                                  std::to_string(conv_size()) + " + " +
                                  std::to_string(ssm_size()) + ")");
  }

  // One mixer over `steps` steps of one sequence, on ws buffers: input in
  // ws.normed, output in ws.out. conv / state: this layer's part of a cache.
  void mixer(const MambaLayer& l, std::size_t steps, float* conv, float* state,
             MambaWorkspace& ws) const;

  void embed(const std::int32_t* tokens, std::size_t n, float* out, std::ptrdiff_t ld) const {
    for (std::size_t i = 0; i < n; ++i)
      std::copy_n(embedding_.row(tokens[i]).data(), cfg_.d_model, out + std::ptrdiff_t(i) * ld);
  }

  MambaConfig cfg_;
  std::vector<MambaLayer> layers_;
  std::vector<SelectiveScanPlan<>> scans_;
  RowMatrixXf embedding_;  // (vocab, d_model)
  RowMatrixXf lm_head_;    // (vocab, d_model); empty when tied
  Eigen::VectorXf norm_f_weight_, norm_f_bias_;

  void prepare_scans();
};

}  // namespace ssm

#include <ssm/detail/mamba_impl.hpp>
