// Mamba-2 language models (Dao & Gu 2024) as Hugging Face stores them:
// embedding -> n_layer x [x + Mixer(RMSNorm(x))] -> RMSNorm -> LM head, with
// the Mamba-2 mixer
//   z, xBC, dt = in_proj(h)          (L, d_inner | d_inner + 2 G N | heads)
//   x, B, C    = silu(causal depthwise conv1d(xBC))      kernel d_conv, with bias
//   y          = ssd(x, dt, A = -exp(A_log), B, C, D)    ssm/ssd.hpp: dt with dt_bias,
//                                                        softplus, time_step_limit
//   y          = RMSNorm(y * silu(z)) * w                the gated norm (Mamba2Norm)
//   out        = out_proj(y)
// Two evaluations of the same weights: the parallel path over a prompt
// (matrix products, the SSM's recurrent or chunked form) and the recurrent
// step of one token per sequence with a cache (conv state and SSM state).
// Both give the same logits, within 2e-5 of transformers
// (tests/test_mamba2.cpp).
//
// Conventions where the references disagree:
// - time_step_limit clamps dt in both paths. (transformers 5.17 clamps in
//   its prefill but not in its cached decode step, so its generate() drifts
//   from its own forward pass; ours is the clamped-everywhere model.)
// - in_proj must have exactly in_proj_size() rows, [z | xBC | dt], as in
//   transformers 5.17 (which has no d_mlp part any more, and refuses a
//   checkpoint whose in_proj differs): extra rows are a shape error naming
//   the tensor.
// - The gated norm: see Mamba2Norm.
#pragma once

#include <ssm/detail/linear.hpp>
#include <ssm/detail/pages.hpp>
#include <ssm/io/checkpoint.hpp>
#include <ssm/io/config.hpp>
#include <ssm/mamba.hpp>  // detail::run_prompt, LmParts, norm_rows, conv_silu, copy_rows, ...
#include <ssm/ssd.hpp>

#include <Eigen/Core>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace ssm {

/// What the gated RMSNorm before out_proj averages over. The two differ
/// when n_groups > 1.
enum class Mamba2Norm {
  /// all d_inner channels: transformers' Mamba2Mixer (MambaRMSNormGated
  /// ignores n_groups); the default for transformers-layout checkpoints
  whole,
  /// each of the n_groups groups of d_inner / n_groups channels on its own:
  /// state-spaces/mamba (RMSNormGated with group_size) and llama.cpp; the
  /// default for state-spaces-layout checkpoints
  per_group,
};

/// Which form of the SSM forward() uses over a prompt; the results agree
/// to rounding (tests/test_mamba2.cpp), the speed does not.
enum class Mamba2Prefill {
  /// the faster on the CPUs measured: the recurrent form, about 2 to 5 times
  /// faster than the chunked one at its best chunk size, at every L from 16
  /// to 2048, N = 64 and 128, head_dim 64 (bench_mamba2, bench/RESULTS.md). It does 2 N P FMAs per
  /// step and head; the chunked form at least as many plus Q P / 2 for the
  /// intra-chunk term, at matrix-product speed, which on a CPU's vector
  /// units is no faster than the recurrent kernel's.
  automatic,
  recurrent,  ///< ssd_recurrent()
  chunked,    ///< ssd_chunked() with the config's chunk_size
};

/// The recurrent state of one sequence: what the step path needs to go on.
/// A plain value: copy it to fork a sequence, keep a copy to restore it.
struct Mamba2Cache {
  /// (n_layer, d_conv - 1, conv_dim): each layer's last d_conv - 1 inputs
  /// of the convolution ([x | B | C] channels), oldest first
  std::vector<float> conv;
  /// (n_layer, nheads, d_state, headdim): each head's state h[n, p]
  /// (n-major, the transpose of transformers' (headdim, d_state))
  std::vector<float> ssm;
  std::int64_t tokens = 0;  ///< tokens consumed so far
};

/// Scratch memory of forward() and step(), reused across calls (no
/// allocation per token after the first). One per thread running the model.
/// The rows the SSD kernel walks (proj holds dt, xbc holds x, B, C; y) are
/// in 2 MiB pages where Linux offers them (detail/pages.hpp). The fields are
/// the model's intermediate rows, public for inspection only: their shapes
/// and contents are not part of the interface.
struct Mamba2Workspace {
  RowMatrixXf hidden, normed, window, gated, out;
  detail::PagedRows proj, xbc, y;
};

/// One Mamba-2 block's weights; matrices row-major (out x in), as stored.
struct Mamba2Layer {
  Eigen::VectorXf norm_weight, norm_bias;  ///< (d_model); bias only with LayerNorm
  RowMatrixXf in_proj;             ///< (in_proj_size, d_model): [z | x | B | C | dt]
  Eigen::VectorXf in_proj_bias;            ///< (in_proj_size) or empty
  RowMatrixXf conv_weight;         ///< (d_conv, conv_dim): tap k of each channel
  Eigen::VectorXf conv_bias;               ///< (conv_dim) or empty
  Eigen::VectorXf dt_bias;                 ///< (nheads)
  Eigen::VectorXf A;                       ///< (nheads): -exp(A_log)
  Eigen::VectorXf D;                       ///< (nheads)
  Eigen::VectorXf gate_norm_weight;        ///< (d_inner); empty without the gated norm
  RowMatrixXf out_proj;            ///< (d_model, d_inner)
  Eigen::VectorXf out_proj_bias;           ///< (d_model) or empty
};

/// A Mamba-2 language model: the weights and the two evaluation paths. The
/// methods are const and keep no state: one model serves several threads,
/// each with its own caches and workspace. Same interface as MambaLM, so
/// generate() runs either.
class Mamba2LM {
 public:
  using Cache = Mamba2Cache;          ///< per-sequence state (generate() uses it)
  using Workspace = Mamba2Workspace;  ///< reusable buffers of forward() and step()

  /// Loads a Hugging Face checkpoint folder (transformers or state-spaces
  /// layout; F32, F16, BF16 or F64; single file or sharded), checking every
  /// tensor's presence and shape against config.json and its values for
  /// NaN/Inf. Throws std::runtime_error naming the file and tensor (or the
  /// config key), also for a Mamba-1 checkpoint or a time step limit < 0.
  static Mamba2LM load(const std::string& folder);

  /// A model of the given shape with random weights (deterministic in
  /// `seed`), for benchmarks and tests. An inconsistent config throws
  /// std::invalid_argument (Mamba2Config::check).
  static Mamba2LM random(const Mamba2Config& config, std::uint64_t seed);

  const Mamba2Config& config() const { return cfg_; }                 ///< the shape
  const std::vector<Mamba2Layer>& layers() const { return layers_; }  ///< the blocks' weights
  const RowMatrixXf& embedding() const { return embedding_; }  ///< (vocab, d_model)
  /// (vocab, d_model): lm_head, or the embedding when tied
  const RowMatrixXf& head() const { return lm_head_.size() ? lm_head_ : embedding_; }
  /// (d_model): the final norm's weight
  const Eigen::VectorXf& norm_f_weight() const { return norm_f_weight_; }
  const Eigen::VectorXf& norm_f_bias() const { return norm_f_bias_; }  ///< empty with RMSNorm

  /// An empty cache: the state before the first token.
  Mamba2Cache new_cache() const {
    Mamba2Cache c;
    c.conv.assign(conv_size(), 0.f);
    c.ssm.assign(ssm_size(), 0.f);
    return c;
  }

  /// The parallel path: runs `n` tokens of one sequence from the cache's
  /// state (which it advances), and writes the logits of the last
  /// `logit_rows` positions to `logits` ((logit_rows, vocab), row-major).
  /// hidden (optional): the residual stream after each layer and the final
  /// normed output (transformers' output_hidden_states without the
  /// embedding entry), n_layer + 1 entries (none when n == 0). Throws
  /// std::invalid_argument, before changing the cache, for a token id
  /// outside [0, vocab_size), a cache of another model's sizes, or
  /// logit_rows > n.
  /// Arch (here and in step()): the kernels' SIMD instruction set. (Both
  /// are templates so that a translation unit that includes this header
  /// without running a model compiles none of their matrix products.)
  template <class Arch = xsimd::default_arch>
  void forward(const std::int32_t* tokens, std::size_t n, Mamba2Cache& cache, float* logits,
               std::size_t logit_rows, Mamba2Workspace& ws,
               std::vector<RowMatrixXf>* hidden = nullptr) const;

  /// The recurrent path: one token for each of `batch` sequences, advancing
  /// their caches; logits (batch, vocab). Each sequence's logits are bitwise
  /// those of stepping it alone. Throws std::invalid_argument, before
  /// changing any cache, for a token id outside [0, vocab_size), a null or
  /// repeated cache pointer, or a cache of another model's sizes.
  template <class Arch = xsimd::default_arch>
  void step(const std::int32_t* tokens, Mamba2Cache* const* caches, std::size_t batch,
            float* logits, Mamba2Workspace& ws) const;

  /// Threads for the kernels and matrix products (<= 0: OpenMP's maximum).
  int threads = 0;
  /// The gated norm's grouping; load() sets the layout's own (see Mamba2Norm).
  Mamba2Norm norm = Mamba2Norm::whole;
  /// The SSM form of forward().
  Mamba2Prefill prefill = Mamba2Prefill::automatic;

 private:
  std::size_t conv_size() const { return std::size_t(cfg_.n_layer * (cfg_.d_conv - 1) * cfg_.conv_dim()); }
  std::size_t ssm_size() const { return std::size_t(cfg_.n_layer * cfg_.nheads * cfg_.d_state * cfg_.headdim); }
  void check_tokens(const std::int32_t* tokens, std::size_t n) const;
  void check_cache(const Mamba2Cache& c) const;

  // One mixer over `steps` steps of one sequence, on ws buffers: input in
  // ws.normed, output in ws.out. conv / state: this layer's part of a cache.
  template <class Arch>
  void mixer(const Mamba2Layer& l, std::size_t steps, float* conv, float* state,
             Mamba2Workspace& ws) const;
  // y (rows, d_inner) -> out: the gated norm with gate z, as configured
  template <class Arch>
  void gated_norm(const Mamba2Layer& l, const float* y, std::ptrdiff_t ldy, const float* z,
                  std::ptrdiff_t ldz, std::size_t rows, float* out) const;
  // the SSM arguments of one sequence's rows: xbc (rows, conv_dim), raw dt at
  // dt[t * ld_dt], y (rows, d_inner)
  SsdArgs ssd_args(const Mamba2Layer& l, std::size_t steps, const float* xbc, const float* dt,
                   std::ptrdiff_t ld_dt, float* state, float* y) const;

  void embed(const std::int32_t* tokens, std::size_t n, float* out, std::ptrdiff_t ld) const {
    for (std::size_t i = 0; i < n; ++i)
      std::copy_n(embedding_.row(tokens[i]).data(), cfg_.d_model, out + std::ptrdiff_t(i) * ld);
  }

  Mamba2Config cfg_;
  std::vector<Mamba2Layer> layers_;
  RowMatrixXf embedding_;  // (vocab, d_model)
  RowMatrixXf lm_head_;    // (vocab, d_model); empty when tied
  Eigen::VectorXf norm_f_weight_, norm_f_bias_;
};

}  // namespace ssm

#include <ssm/detail/mamba2_impl.hpp>
