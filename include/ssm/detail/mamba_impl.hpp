// MambaLM's member definitions (included by ssm/mamba.hpp).
#pragma once

#include <ssm/mamba.hpp>
#include <ssm/detail/weights.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

namespace ssm {

namespace detail {

// A rows x cols matrix of uniform weights of variance 1 / cols (LeCun's
// fan-in scale, that of trained weights), for random models.
inline RowMatrixXf lecun_uniform(std::mt19937_64& rng, Eigen::Index rows, Eigen::Index cols) {
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  RowMatrixXf w(rows, cols);
  const float s = std::sqrt(3.f / float(cols));
  for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = s * uni(rng);
  return w;
}

// Copies the rows [r0, r0 + n) of the x part (first `cols` columns) of a
// row-major buffer with leading dimension ld into dst (n x cols).
inline void copy_rows(const float* src, std::ptrdiff_t ld, std::size_t n, std::size_t cols,
                      float* dst, std::ptrdiff_t ldd) {
  for (std::size_t r = 0; r < n; ++r)
    std::copy_n(src + std::ptrdiff_t(r) * ld, cols, dst + std::ptrdiff_t(r) * ldd);
}

}  // namespace detail

inline MambaLM MambaLM::load(const std::string& folder) {
  io::Checkpoint ck(folder);
  if (detect_model_type(ck.config(), ck.config_path()) != ModelType::mamba)
    throw std::runtime_error("ssm::MambaLM: " + ck.config_path() +
                             ": a Mamba-2 checkpoint; load it with ssm::Mamba2LM");
  MambaLM m;
  m.cfg_ = MambaConfig::from_json(ck.config(), ck.config_path());
  const MambaConfig& c = m.cfg_;
  const auto dm = c.d_model, di = c.d_inner, N = c.d_state, K = c.d_conv, R = c.dt_rank;

  const detail::CheckedWeights w(ck, "ssm::MambaLM");

  m.embedding_ = w.matrix(ck.find_first({"backbone.embeddings.weight", "backbone.embedding.weight"}),
                          c.vocab_size, dm);
  for (std::int64_t i = 0; i < c.n_layer; ++i) {
    const std::string p = "backbone.layers." + std::to_string(i) + ".";
    MambaLayer l;
    l.norm_weight = w.vector(p + "norm.weight", dm);
    if (!c.rms_norm) l.norm_bias = w.vector(p + "norm.bias", dm);
    const std::string mx = p + "mixer.";
    l.in_proj = w.matrix(mx + "in_proj.weight", 2 * di, dm);
    if (c.bias) l.in_proj_bias = w.vector(mx + "in_proj.bias", 2 * di);
    l.conv_weight = w.conv(mx + "conv1d.weight", di, K);
    if (c.conv_bias) l.conv_bias = w.vector(mx + "conv1d.bias", di);
    l.x_proj = w.matrix(mx + "x_proj.weight", c.x_proj_size(), di);
    l.dt_proj = w.matrix(mx + "dt_proj.weight", di, R);
    l.dt_bias = w.vector(mx + "dt_proj.bias", di);
    l.A = w.negative_exp(mx + "A_log", w.matrix(mx + "A_log", di, N));
    l.D = w.vector(mx + "D", di);
    l.out_proj = w.matrix(mx + "out_proj.weight", dm, di);
    if (c.bias) l.out_proj_bias = w.vector(mx + "out_proj.bias", dm);
    m.layers_.push_back(std::move(l));
  }
  m.norm_f_weight_ = w.vector("backbone.norm_f.weight", dm);
  if (!c.rms_norm) m.norm_f_bias_ = w.vector("backbone.norm_f.bias", dm);
  if (!c.tie_embeddings) m.lm_head_ = w.matrix("lm_head.weight", c.vocab_size, dm);
  m.prepare_scans();
  return m;
}

inline MambaLM MambaLM::random(const MambaConfig& config, std::uint64_t seed) {
  config.check("ssm::MambaLM::random");
  MambaLM m;
  m.cfg_ = config;
  const MambaConfig& c = m.cfg_;
  const auto dm = c.d_model, di = c.d_inner, N = c.d_state, K = c.d_conv, R = c.dt_rank;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  auto init = [&](Eigen::Index rows, Eigen::Index cols) { return detail::lecun_uniform(rng, rows, cols); };
  m.embedding_ = init(c.vocab_size, dm);
  for (std::int64_t i = 0; i < c.n_layer; ++i) {
    MambaLayer l;
    l.norm_weight = Eigen::VectorXf::Ones(dm);
    if (!c.rms_norm) l.norm_bias = Eigen::VectorXf::Zero(dm);
    l.in_proj = init(2 * di, dm);
    if (c.bias) l.in_proj_bias = Eigen::VectorXf::Zero(2 * di);
    l.conv_weight = init(K, di);
    if (c.conv_bias) l.conv_bias = Eigen::VectorXf::Zero(di);
    l.x_proj = init(c.x_proj_size(), di);
    l.dt_proj = init(di, R);
    // dt_bias = softplus^{-1}(dt), dt log-uniform in [1e-3, 1e-1] (Mamba's init)
    l.dt_bias.resize(di);
    for (std::int64_t d = 0; d < di; ++d) {
      const float dt = std::exp(std::log(1e-3f) + (uni(rng) + 1) / 2 * (std::log(1e-1f) - std::log(1e-3f)));
      l.dt_bias[d] = dt + std::log(-std::expm1(-dt));
    }
    l.A.resize(di, N);  // S4D-Real: A[d, n] = -(n + 1)
    for (std::int64_t d = 0; d < di; ++d)
      for (std::int64_t n = 0; n < N; ++n) l.A(d, n) = -float(n + 1);
    l.D = Eigen::VectorXf::Ones(di);
    l.out_proj = init(dm, di);
    if (c.bias) l.out_proj_bias = Eigen::VectorXf::Zero(dm);
    m.layers_.push_back(std::move(l));
  }
  m.norm_f_weight_ = Eigen::VectorXf::Ones(dm);
  if (!c.rms_norm) m.norm_f_bias_ = Eigen::VectorXf::Zero(dm);
  if (!c.tie_embeddings) m.lm_head_ = init(c.vocab_size, dm);
  m.prepare_scans();
  return m;
}

inline void MambaLM::prepare_scans() {
  scans_.clear();
  for (const MambaLayer& l : layers_) {
    SelectiveScanArgs p;
    p.D = std::size_t(cfg_.d_inner);
    p.N = std::size_t(cfg_.d_state);
    p.A = l.A.data();
    p.A_d_stride = cfg_.d_state;
    p.A_n_stride = 1;
    scans_.emplace_back(p);
  }
}

inline void MambaLM::mixer(const MambaLayer& l, std::size_t steps, float* conv, float* state,
                           MambaWorkspace& ws) const {
  const auto dm = std::size_t(cfg_.d_model), di = std::size_t(cfg_.d_inner);
  const auto N = std::size_t(cfg_.d_state), K = std::size_t(cfg_.d_conv);
  const auto R = std::size_t(cfg_.dt_rank), xd = R + 2 * N;
  const auto ld_xz = std::ptrdiff_t(2 * di), S = Eigen::Index(steps);
  detail::ensure_size(ws.xz, S + Eigen::Index(K - 1), Eigen::Index(2 * di));
  detail::ensure_size(ws.xc, S, Eigen::Index(di));
  detail::ensure_size(ws.x_dbl, S, Eigen::Index(xd));
  detail::ensure_size(ws.delta, S, Eigen::Index(di));
  detail::ensure_size(ws.y, S, Eigen::Index(di));
  detail::ensure_size(ws.out, S, Eigen::Index(dm));

  // xz rows: K - 1 rows of conv history (x part only), then the steps
  detail::copy_rows(conv, std::ptrdiff_t(di), K - 1, di, ws.xz.data(), ld_xz);
  float* xz = ws.xz.data() + std::ptrdiff_t(K - 1) * ld_xz;
  detail::linear(l.in_proj, l.in_proj_bias.size() ? l.in_proj_bias.data() : nullptr,
                 ws.normed.data(), std::ptrdiff_t(dm), steps, xz, ld_xz, threads);
  detail::conv_silu(ws.xz.data(), ld_xz, steps, di, l.conv_weight, l.conv_bias, ws.xc.data(),
                    std::ptrdiff_t(di));
  // the new history: the last K - 1 inputs
  detail::copy_rows(ws.xz.data() + std::ptrdiff_t(steps) * ld_xz, ld_xz, K - 1, di, conv,
                    std::ptrdiff_t(di));
  // (steps, d_inner) -> (steps, dt_rank + 2N) -> delta (steps, d_inner)
  detail::linear(l.x_proj, nullptr, ws.xc.data(), std::ptrdiff_t(di), steps, ws.x_dbl.data(),
                 std::ptrdiff_t(xd), threads);
  detail::linear(l.dt_proj, nullptr, ws.x_dbl.data(), std::ptrdiff_t(xd), steps, ws.delta.data(),
                 std::ptrdiff_t(di), threads);

  SelectiveScanArgs p;
  p.L = steps;
  p.D = di;
  p.N = N;
  p.u = ws.xc.data(), p.u_time_stride = std::ptrdiff_t(di);
  p.delta = ws.delta.data(), p.delta_time_stride = std::ptrdiff_t(di);
  p.delta_bias = l.dt_bias.data();
  p.delta_softplus = true;
  p.B = ws.x_dbl.data() + R, p.B_time_stride = std::ptrdiff_t(xd);
  p.C = ws.x_dbl.data() + R + N, p.C_time_stride = std::ptrdiff_t(xd);
  p.D_skip = l.D.data();
  p.z = xz + di, p.z_time_stride = ld_xz;
  p.state = state, p.state_d_stride = 1, p.state_n_stride = std::ptrdiff_t(di);
  p.y = ws.y.data(), p.y_time_stride = std::ptrdiff_t(di);
  scans_[std::size_t(&l - layers_.data())].run(p, threads);

  detail::linear(l.out_proj, l.out_proj_bias.size() ? l.out_proj_bias.data() : nullptr,
                 ws.y.data(), std::ptrdiff_t(di), steps, ws.out.data(), std::ptrdiff_t(dm), threads);
}

inline void MambaLM::forward(const std::int32_t* tokens, std::size_t n, MambaCache& cache,
                             float* logits, std::size_t logit_rows, MambaWorkspace& ws,
                             std::vector<detail::RowMatrixXf>* hidden) const {
  check_tokens(tokens, n);
  check_cache(cache);
  if (logit_rows > n)
    throw std::invalid_argument("ssm::MambaLM::forward: " + std::to_string(logit_rows) +
                                " rows of logits asked of " + std::to_string(n) + " tokens");
  const auto dm = std::size_t(cfg_.d_model), di = std::size_t(cfg_.d_inner);
  const std::size_t conv_per_layer = std::size_t(cfg_.d_conv - 1) * di;
  const std::size_t ssm_per_layer = std::size_t(cfg_.d_state) * di;
  const detail::LmParts<MambaLayer> parts{layers_, norm_f_weight_, norm_f_bias_, head(),
                                          cfg_.norm_eps, threads};
  detail::run_prompt<xsimd::default_arch>(
      parts, n, logit_rows, logits, ws, hidden,
      [&](std::size_t s, std::size_t steps, float* out) {
        embed(tokens + s, steps, out, std::ptrdiff_t(dm));
      },
      [&](std::size_t i, std::size_t steps) {
        mixer(layers_[i], steps, cache.conv.data() + i * conv_per_layer,
              cache.ssm.data() + i * ssm_per_layer, ws);
      });
  cache.tokens += std::int64_t(n);
}

inline void MambaLM::step(const std::int32_t* tokens, MambaCache* const* caches,
                          std::size_t batch, float* logits, MambaWorkspace& ws) const {
  check_tokens(tokens, batch);
  detail::check_distinct(caches, batch, "ssm::MambaLM::step");
  for (std::size_t b = 0; b < batch; ++b) check_cache(*caches[b]);
  const auto dm = std::size_t(cfg_.d_model), di = std::size_t(cfg_.d_inner);
  const auto V = std::size_t(cfg_.vocab_size), K = std::size_t(cfg_.d_conv);
  const auto N = std::size_t(cfg_.d_state), R = std::size_t(cfg_.dt_rank), xd = R + 2 * N;
  const std::size_t conv_per_layer = (K - 1) * di, ssm_per_layer = N * di;
  const auto B = Eigen::Index(batch), ld_xz = std::ptrdiff_t(2 * di);
  detail::ensure_size(ws.hidden, B, Eigen::Index(dm));
  detail::ensure_size(ws.normed, B, Eigen::Index(dm));
  detail::ensure_size(ws.xz, std::max<Eigen::Index>(B, Eigen::Index(K)), Eigen::Index(2 * di));
  detail::ensure_size(ws.xc, std::max<Eigen::Index>(B, Eigen::Index(K)), Eigen::Index(di));
  detail::ensure_size(ws.x_dbl, B, Eigen::Index(xd));
  detail::ensure_size(ws.delta, std::max<Eigen::Index>(B, Eigen::Index(K)), Eigen::Index(di));
  detail::ensure_size(ws.y, B, Eigen::Index(di));
  detail::ensure_size(ws.out, B, Eigen::Index(dm));
  embed(tokens, batch, ws.hidden.data(), std::ptrdiff_t(dm));
  // The dense layers take all sequences at once (each weight read once per
  // step), in matrix-vector form so that each sequence's numbers are bitwise
  // those of stepping it alone; the conv and the scan run per sequence on
  // its own cache.
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const MambaLayer& l = layers_[i];
    detail::norm_rows(ws.hidden.data(), std::ptrdiff_t(dm), batch, dm, l.norm_weight, l.norm_bias,
                      cfg_.norm_eps, ws.normed.data(), std::ptrdiff_t(dm));
    detail::matvec(l.in_proj, l.in_proj_bias.size() ? l.in_proj_bias.data() : nullptr,
                   ws.normed.data(), std::ptrdiff_t(dm), batch, ws.xz.data(), ld_xz, threads);
    for (std::size_t b = 0; b < batch; ++b) {
      // window: K - 1 inputs of history, then this one (ws.delta as scratch)
      float* conv = caches[b]->conv.data() + i * conv_per_layer;
      float* window = ws.delta.data();
      std::copy_n(conv, conv_per_layer, window);
      std::copy_n(ws.xz.data() + std::ptrdiff_t(b) * ld_xz, di, window + conv_per_layer);
      detail::conv_silu(window, std::ptrdiff_t(di), 1, di, l.conv_weight, l.conv_bias,
                        ws.xc.data() + std::ptrdiff_t(b * di), std::ptrdiff_t(di));
      std::copy_n(window + di, conv_per_layer, conv);
    }
    detail::matvec(l.x_proj, nullptr, ws.xc.data(), std::ptrdiff_t(di), batch, ws.x_dbl.data(),
                   std::ptrdiff_t(xd), threads);
    detail::matvec(l.dt_proj, nullptr, ws.x_dbl.data(), std::ptrdiff_t(xd), batch,
                   ws.delta.data(), std::ptrdiff_t(di), threads);
    for (std::size_t b = 0; b < batch; ++b) {
      SelectiveScanArgs p;
      p.L = 1;
      p.D = di;
      p.N = N;
      p.u = ws.xc.data() + std::ptrdiff_t(b * di);
      p.delta = ws.delta.data() + std::ptrdiff_t(b * di);
      p.delta_bias = l.dt_bias.data();
      p.delta_softplus = true;
      p.B = ws.x_dbl.data() + std::ptrdiff_t(b * xd + R);
      p.C = ws.x_dbl.data() + std::ptrdiff_t(b * xd + R + N);
      p.D_skip = l.D.data();
      p.z = ws.xz.data() + std::ptrdiff_t(b) * ld_xz + std::ptrdiff_t(di);
      p.state = caches[b]->ssm.data() + i * ssm_per_layer;
      p.state_d_stride = 1, p.state_n_stride = std::ptrdiff_t(di);
      p.y = ws.y.data() + std::ptrdiff_t(b * di);
      scans_[i].run(p, threads);
    }
    detail::matvec(l.out_proj, l.out_proj_bias.size() ? l.out_proj_bias.data() : nullptr,
                   ws.y.data(), std::ptrdiff_t(di), batch, ws.out.data(), std::ptrdiff_t(dm), threads);
    ws.hidden.topRows(B) += ws.out.topRows(B);
  }
  detail::norm_rows(ws.hidden.data(), std::ptrdiff_t(dm), batch, dm, norm_f_weight_, norm_f_bias_,
                    cfg_.norm_eps, ws.normed.data(), std::ptrdiff_t(dm));
  detail::matvec(head(), nullptr, ws.normed.data(), std::ptrdiff_t(dm), batch, logits,
                 std::ptrdiff_t(V), threads);
  for (std::size_t b = 0; b < batch; ++b) caches[b]->tokens += 1;
}

}  // namespace ssm
