// Mamba2LM's member definitions (included by ssm/mamba2.hpp).
#pragma once

#include <ssm/mamba2.hpp>
#include <ssm/detail/omp.hpp>
#include <ssm/detail/weights.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

namespace ssm {

namespace detail {

// out = y * silu(z) over n values
template <class Arch = xsimd::default_arch>
void times_silu(const float* y, const float* z, float* out, std::size_t n) {
  using batch = xsimd::batch<float, Arch>;
  std::size_t i = 0;
  for (; i + batch::size <= n; i += batch::size)
    (batch::load_unaligned(y + i) * silu<Arch>(batch::load_unaligned(z + i))).store_unaligned(out + i);
  for (; i < n; ++i) out[i] = y[i] * silu(z[i]);
}

}  // namespace detail

inline void Mamba2LM::check_tokens(const std::int32_t* tokens, std::size_t n) const {
  for (std::size_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= cfg_.vocab_size)
      throw std::invalid_argument("ssm::Mamba2LM: token id " + std::to_string(tokens[i]) +
                                  " is outside the vocabulary [0, " +
                                  std::to_string(cfg_.vocab_size) + ")");
}

inline void Mamba2LM::check_cache(const Mamba2Cache& c) const {
  if (c.conv.size() != conv_size() || c.ssm.size() != ssm_size())
    throw std::invalid_argument("ssm::Mamba2LM: the cache was made for another model (" +
                                std::to_string(c.conv.size()) + " + " + std::to_string(c.ssm.size()) +
                                " values, expected " + std::to_string(conv_size()) + " + " +
                                std::to_string(ssm_size()) + ")");
}

inline Mamba2LM Mamba2LM::load(const std::string& folder) {
  io::Checkpoint ck(folder);
  if (detect_model_type(ck.config(), ck.config_path()) != ModelType::mamba2)
    throw std::runtime_error("ssm::Mamba2LM: " + ck.config_path() +
                             ": a Mamba-1 checkpoint; load it with ssm::MambaLM");
  Mamba2LM m;
  m.cfg_ = Mamba2Config::from_json(ck.config(), ck.config_path());
  const Mamba2Config& c = m.cfg_;
  // the layouts' own gated norms: state-spaces' config.json has d_model
  m.norm = ck.config().contains("d_model") ? Mamba2Norm::per_group : Mamba2Norm::whole;
  if (!(c.dt_min_limit >= 0))
    throw std::runtime_error("ssm::Mamba2LM: " + ck.config_path() +
                             ": the time step limit must be >= 0, got " + std::to_string(c.dt_min_limit));
  const auto dm = c.d_model, di = c.d_inner, H = c.nheads, K = c.d_conv, cd = c.conv_dim();

  const detail::CheckedWeights w(ck, "ssm::Mamba2LM");

  m.embedding_ = w.matrix(ck.find_first({"backbone.embeddings.weight", "backbone.embedding.weight"}),
                          c.vocab_size, dm);
  for (std::int64_t i = 0; i < c.n_layer; ++i) {
    const std::string p = "backbone.layers." + std::to_string(i) + ".";
    Mamba2Layer l;
    l.norm_weight = w.vector(p + "norm.weight", dm);
    if (!c.rms_norm) l.norm_bias = w.vector(p + "norm.bias", dm);
    const std::string mx = p + "mixer.";
    l.in_proj = w.matrix(mx + "in_proj.weight", c.in_proj_size(), dm);
    if (c.bias) l.in_proj_bias = w.vector(mx + "in_proj.bias", c.in_proj_size());
    l.conv_weight = w.conv(mx + "conv1d.weight", cd, K);
    if (c.conv_bias) l.conv_bias = w.vector(mx + "conv1d.bias", cd);
    l.dt_bias = w.vector(mx + "dt_bias", H);
    l.A = w.negative_exp(mx + "A_log", w.vector(mx + "A_log", H));
    l.D = w.vector(mx + "D", H);
    if (c.gated_norm) l.gate_norm_weight = w.vector(mx + "norm.weight", di);
    l.out_proj = w.matrix(mx + "out_proj.weight", dm, di);
    if (c.bias) l.out_proj_bias = w.vector(mx + "out_proj.bias", dm);
    m.layers_.push_back(std::move(l));
  }
  m.norm_f_weight_ = w.vector("backbone.norm_f.weight", dm);
  if (!c.rms_norm) m.norm_f_bias_ = w.vector("backbone.norm_f.bias", dm);
  if (!c.tie_embeddings) m.lm_head_ = w.matrix("lm_head.weight", c.vocab_size, dm);
  return m;
}

inline Mamba2LM Mamba2LM::random(const Mamba2Config& config, std::uint64_t seed) {
  config.check("ssm::Mamba2LM::random");
  Mamba2LM m;
  m.cfg_ = config;
  const Mamba2Config& c = m.cfg_;
  const auto dm = c.d_model, di = c.d_inner, H = c.nheads, K = c.d_conv, cd = c.conv_dim();
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  auto init = [&](Eigen::Index rows, Eigen::Index cols) { return detail::lecun_uniform(rng, rows, cols); };
  m.embedding_ = init(c.vocab_size, dm);
  for (std::int64_t i = 0; i < c.n_layer; ++i) {
    Mamba2Layer l;
    l.norm_weight = Eigen::VectorXf::Ones(dm);
    if (!c.rms_norm) l.norm_bias = Eigen::VectorXf::Zero(dm);
    l.in_proj = init(c.in_proj_size(), dm);
    if (c.bias) l.in_proj_bias = Eigen::VectorXf::Zero(c.in_proj_size());
    l.conv_weight = init(K, cd);
    if (c.conv_bias) l.conv_bias = Eigen::VectorXf::Zero(cd);
    // Mamba-2's init: dt log-uniform in [1e-3, 1e-1] (dt_bias its softplus
    // inverse), A uniform in [-16, -1]
    l.dt_bias.resize(H);
    l.A.resize(H);
    for (std::int64_t h = 0; h < H; ++h) {
      const float dt = std::exp(std::log(1e-3f) + (uni(rng) + 1) / 2 * (std::log(1e-1f) - std::log(1e-3f)));
      l.dt_bias[h] = dt + std::log(-std::expm1(-dt));
      l.A[h] = -(1 + 7.5f * (uni(rng) + 1));
    }
    l.D = Eigen::VectorXf::Ones(H);
    if (c.gated_norm) l.gate_norm_weight = Eigen::VectorXf::Ones(di);
    l.out_proj = init(dm, di);
    if (c.bias) l.out_proj_bias = Eigen::VectorXf::Zero(dm);
    m.layers_.push_back(std::move(l));
  }
  m.norm_f_weight_ = Eigen::VectorXf::Ones(dm);
  if (!c.rms_norm) m.norm_f_bias_ = Eigen::VectorXf::Zero(dm);
  if (!c.tie_embeddings) m.lm_head_ = init(c.vocab_size, dm);
  return m;
}

inline SsdArgs Mamba2LM::ssd_args(const Mamba2Layer& l, std::size_t steps, const float* xbc,
                                  const float* dt, std::ptrdiff_t ld_dt, float* state,
                                  float* y) const {
  const auto di = std::size_t(cfg_.d_inner), GN = std::size_t(cfg_.ngroups * cfg_.d_state);
  const auto cd = std::ptrdiff_t(cfg_.conv_dim());
  SsdArgs a;
  a.L = steps;
  a.heads = std::size_t(cfg_.nheads);
  a.head_dim = std::size_t(cfg_.headdim);
  a.N = std::size_t(cfg_.d_state);
  a.groups = std::size_t(cfg_.ngroups);
  a.x = xbc, a.x_time_stride = cd;
  a.B = xbc + di, a.B_time_stride = cd;
  a.C = xbc + di + GN, a.C_time_stride = cd;
  a.dt = dt, a.dt_time_stride = ld_dt;
  a.A = l.A.data();
  a.D = l.D.data();
  a.dt_bias = l.dt_bias.data();
  a.dt_softplus = true;
  a.dt_min = float(cfg_.dt_min_limit), a.dt_max = float(cfg_.dt_max_limit);
  a.state = state;
  a.y = y, a.y_time_stride = std::ptrdiff_t(di);
  return a;
}

template <class Arch>
void Mamba2LM::gated_norm(const Mamba2Layer& l, const float* y, std::ptrdiff_t ldy,
                                 const float* z, std::ptrdiff_t ldz, std::size_t rows,
                                 float* out) const {
  const auto di = std::size_t(cfg_.d_inner);
  const std::size_t groups = norm == Mamba2Norm::per_group ? std::size_t(cfg_.ngroups) : 1;
  const std::size_t width = di / groups;
  for (std::size_t r = 0; r < rows; ++r) {
    const float* yr = y + std::ptrdiff_t(r) * ldy;
    const float* zr = z + std::ptrdiff_t(r) * ldz;
    float* o = out + r * di;
    // gate, then normalize (transformers; state-spaces' default); or the reverse
    if (!cfg_.gated_norm || !cfg_.norm_before_gate)
      detail::times_silu<Arch>(yr, zr, o, di);
    else
      std::copy_n(yr, di, o);
    for (std::size_t g = 0; cfg_.gated_norm && g < groups; ++g) {
      Eigen::Map<Eigen::VectorXf> v(o + g * width, Eigen::Index(width));
      const float scale = 1.0f / std::sqrt(v.squaredNorm() / float(width) + float(cfg_.norm_eps));
      v = (v * scale).cwiseProduct(l.gate_norm_weight.segment(Eigen::Index(g * width), Eigen::Index(width)));
    }
    if (cfg_.gated_norm && cfg_.norm_before_gate) detail::times_silu<Arch>(o, zr, o, di);
  }
}

template <class Arch>
void Mamba2LM::mixer(const Mamba2Layer& l, std::size_t steps, float* conv, float* state,
                            Mamba2Workspace& ws) const {
  const auto dm = std::size_t(cfg_.d_model), di = std::size_t(cfg_.d_inner);
  const auto K = std::size_t(cfg_.d_conv), cd = std::size_t(cfg_.conv_dim());
  const auto ip = std::size_t(cfg_.in_proj_size());
  const auto ld = std::ptrdiff_t(ip), S = Eigen::Index(steps);
  detail::ensure_size(ws.proj, S + Eigen::Index(K - 1), Eigen::Index(ip));
  detail::ensure_size(ws.xbc, S, Eigen::Index(cd));
  detail::ensure_size(ws.y, S, Eigen::Index(di));
  detail::ensure_size(ws.gated, S, Eigen::Index(di));
  detail::ensure_size(ws.out, S, Eigen::Index(dm));

  // proj rows: K - 1 rows of conv history (xBC columns only), then the steps
  float* xbc_in = ws.proj.data() + di;
  detail::copy_rows(conv, std::ptrdiff_t(cd), K - 1, cd, xbc_in, ld);
  float* proj = ws.proj.data() + std::ptrdiff_t(K - 1) * ld;
  detail::linear<Arch>(l.in_proj, l.in_proj_bias.size() ? l.in_proj_bias.data() : nullptr,
                       ws.normed.data(), std::ptrdiff_t(dm), steps, proj, ld, threads);
  detail::conv_silu<Arch>(xbc_in, ld, steps, cd, l.conv_weight, l.conv_bias, ws.xbc.data(),
                          std::ptrdiff_t(cd));
  // the new history: the last K - 1 inputs
  detail::copy_rows(xbc_in + std::ptrdiff_t(steps) * ld, ld, K - 1, cd, conv, std::ptrdiff_t(cd));

  const SsdArgs a = ssd_args(l, steps, ws.xbc.data(), proj + di + cd, ld, state, ws.y.data());
  if (prefill == Mamba2Prefill::chunked)
    ssd_chunked<Arch>(a, std::size_t(cfg_.chunk_size), threads);
  else
    ssd_recurrent<Arch>(a, threads);

  gated_norm<Arch>(l, ws.y.data(), std::ptrdiff_t(di), proj, ld, steps, ws.gated.data());
  detail::linear<Arch>(l.out_proj, l.out_proj_bias.size() ? l.out_proj_bias.data() : nullptr,
                       ws.gated.data(), std::ptrdiff_t(di), steps, ws.out.data(), std::ptrdiff_t(dm),
                       threads);
}

template <class Arch>
void Mamba2LM::forward(const std::int32_t* tokens, std::size_t n, Mamba2Cache& cache,
                              float* logits, std::size_t logit_rows, Mamba2Workspace& ws,
                              std::vector<detail::RowMatrixXf>* hidden) const {
  check_tokens(tokens, n);
  check_cache(cache);
  if (logit_rows > n)
    throw std::invalid_argument("ssm::Mamba2LM::forward: " + std::to_string(logit_rows) +
                                " rows of logits asked of " + std::to_string(n) + " tokens");
  const auto dm = std::size_t(cfg_.d_model);
  const std::size_t conv_per_layer = std::size_t((cfg_.d_conv - 1) * cfg_.conv_dim());
  const std::size_t ssm_per_layer = std::size_t(cfg_.nheads * cfg_.d_state * cfg_.headdim);
  const detail::LmParts<Mamba2Layer> parts{layers_, norm_f_weight_, norm_f_bias_, head(),
                                           cfg_.norm_eps, threads};
  detail::run_prompt<Arch>(
      parts, n, logit_rows, logits, ws, hidden,
      [&](std::size_t s, std::size_t steps, float* out) {
        embed(tokens + s, steps, out, std::ptrdiff_t(dm));
      },
      [&](std::size_t i, std::size_t steps) {
        mixer<Arch>(layers_[i], steps, cache.conv.data() + i * conv_per_layer,
                    cache.ssm.data() + i * ssm_per_layer, ws);
      });
  cache.tokens += std::int64_t(n);
}

template <class Arch>
void Mamba2LM::step(const std::int32_t* tokens, Mamba2Cache* const* caches,
                           std::size_t batch, float* logits, Mamba2Workspace& ws) const {
  check_tokens(tokens, batch);
  detail::check_distinct(caches, batch, "ssm::Mamba2LM::step");
  for (std::size_t b = 0; b < batch; ++b) check_cache(*caches[b]);
  const auto dm = std::size_t(cfg_.d_model), di = std::size_t(cfg_.d_inner);
  const auto V = std::size_t(cfg_.vocab_size), K = std::size_t(cfg_.d_conv);
  const auto cd = std::size_t(cfg_.conv_dim()), ip = std::size_t(cfg_.in_proj_size());
  const auto H = std::size_t(cfg_.nheads);
  const std::size_t conv_per_layer = (K - 1) * cd;
  const std::size_t head_state = std::size_t(cfg_.d_state * cfg_.headdim), ssm_per_layer = H * head_state;
  const auto B = Eigen::Index(batch), ld = std::ptrdiff_t(ip);
  detail::ensure_size(ws.hidden, B, Eigen::Index(dm));
  detail::ensure_size(ws.normed, B, Eigen::Index(dm));
  detail::ensure_size(ws.proj, B, Eigen::Index(ip));
  detail::ensure_size(ws.xbc, B, Eigen::Index(cd));
  detail::ensure_size(ws.window, Eigen::Index(K), Eigen::Index(cd));
  detail::ensure_size(ws.y, B, Eigen::Index(di));
  detail::ensure_size(ws.gated, B, Eigen::Index(di));
  detail::ensure_size(ws.out, B, Eigen::Index(dm));
  embed(tokens, batch, ws.hidden.data(), std::ptrdiff_t(dm));
  const std::size_t jobs = batch * H;
  [[maybe_unused]] const int nt = detail::ssd_threads(batch * ssm_per_layer, threads);
  // The dense layers take all sequences at once (each weight read once per
  // step), in matrix-vector form so that each sequence's numbers are bitwise
  // those of stepping it alone; the conv and the SSM run per sequence on
  // its own cache.
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const Mamba2Layer& l = layers_[i];
    detail::norm_rows(ws.hidden.data(), std::ptrdiff_t(dm), batch, dm, l.norm_weight, l.norm_bias,
                      cfg_.norm_eps, ws.normed.data(), std::ptrdiff_t(dm));
    detail::matvec<Arch>(l.in_proj, l.in_proj_bias.size() ? l.in_proj_bias.data() : nullptr,
                         ws.normed.data(), std::ptrdiff_t(dm), batch, ws.proj.data(), ld, threads);
    for (std::size_t b = 0; b < batch; ++b) {
      // window: K - 1 inputs of history, then this one
      float* conv = caches[b]->conv.data() + i * conv_per_layer;
      float* window = ws.window.data();
      std::copy_n(conv, conv_per_layer, window);
      std::copy_n(ws.proj.data() + std::ptrdiff_t(b) * ld + std::ptrdiff_t(di), cd, window + conv_per_layer);
      detail::conv_silu<Arch>(window, std::ptrdiff_t(cd), 1, cd, l.conv_weight, l.conv_bias,
                              ws.xbc.data() + std::ptrdiff_t(b * cd), std::ptrdiff_t(cd));
      std::copy_n(window + cd, conv_per_layer, conv);
    }
    detail::ParallelErrors errors;
    SSM_OMP(parallel num_threads(nt) if (nt > 1))
    {
      thread_local detail::SsdScratch scratch;
      SSM_OMP(for schedule(static))
      for (std::ptrdiff_t j = 0; j < std::ptrdiff_t(jobs); ++j)
        errors.run([&] {
          const std::size_t b = std::size_t(j) / H, h = std::size_t(j) % H;
          float* layer_state = caches[b]->ssm.data() + i * ssm_per_layer;
          const SsdArgs a = ssd_args(l, 1, ws.xbc.data() + std::ptrdiff_t(b * cd),
                                     ws.proj.data() + std::ptrdiff_t(b) * ld + std::ptrdiff_t(di + cd), ld,
                                     layer_state, ws.y.data() + std::ptrdiff_t(b * di));
          double log2_scale = 0;
          detail::ssd_head_block<Arch>(detail::ssd_head(a, 0, h, layer_state + h * head_state), 0, 1,
                                       log2_scale, scratch);
        });
    }
    errors.rethrow();
    gated_norm<Arch>(l, ws.y.data(), std::ptrdiff_t(di), ws.proj.data(), ld, batch, ws.gated.data());
    detail::matvec<Arch>(l.out_proj, l.out_proj_bias.size() ? l.out_proj_bias.data() : nullptr,
                         ws.gated.data(), std::ptrdiff_t(di), batch, ws.out.data(), std::ptrdiff_t(dm),
                         threads);
    ws.hidden.topRows(B) += ws.out.topRows(B);
  }
  detail::norm_rows(ws.hidden.data(), std::ptrdiff_t(dm), batch, dm, norm_f_weight_, norm_f_bias_,
                    cfg_.norm_eps, ws.normed.data(), std::ptrdiff_t(dm));
  detail::matvec<Arch>(head(), nullptr, ws.normed.data(), std::ptrdiff_t(dm), batch, logits,
                       std::ptrdiff_t(V), threads);
  for (std::size_t b = 0; b < batch; ++b) caches[b]->tokens += 1;
}

}  // namespace ssm
