// The cases of bench_scaling (see its file comment): one evaluation of one
// series at one length (an operator or a layer, over a sequence or one
// decode step), what it builds untimed, its timed call, its analytic memory
// and FLOP.
#pragma once

#include <ssm/baseline/attention.hpp>
#include <ssm/detail/omp.hpp>
#include <ssm/mamba.hpp>
#include <ssm/selective_scan.hpp>

#include "ceilings.hpp"  // set_threads

#include <Eigen/Core>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

namespace bench::scaling {

using ssm::baseline::RowMatrix;
using Index = std::int64_t;

constexpr Index D = 768, heads = 12, N = 16, chunk = 4096;
constexpr double MiB = 1 << 20;

// Uniform values in [lo, hi) from splitmix64: gigabytes of inputs in a
// fraction of the time mt19937 takes.
inline void fill_uniform(float* p, std::size_t n, float lo, float hi, std::uint64_t seed) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t z = (seed += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    p[i] = lo + (hi - lo) * float((z ^ (z >> 31)) >> 40) * (1.0f / 16777216.0f);
  }
}

inline RowMatrix<float> random_rows(Index rows, Index cols, std::uint64_t seed) {
  RowMatrix<float> m(rows, cols);
  fill_uniform(m.data(), std::size_t(m.size()), -1.f, 1.f, seed);
  return m;
}

// One evaluation of one series at one length: the constructor builds what is
// neither timed nor counted (weights, inputs), prepare() the sequence's own
// state (counted, not timed), run() the timed call.
struct Case {
  virtual ~Case() = default;
  virtual void prepare() {}
  virtual void run(int threads) = 0;
  virtual double tokens() const = 0;       // tokens per run()
  virtual double state_bytes() const = 0;  // analytic, see the file comment
  virtual double flop() const { return 0; }
};

// ---- operators

// The selective scan over L tokens, T at a time with the state carried:
// T = L (all in memory), T = 4096 (streamed), or L = T = 1 with a random
// state kept from call to call (a decode step).
class ScanOp : public Case {
 public:
  ScanOp(Index L, Index T, bool decode) : L_(L), T_(T), decode_(decode) {
    const auto rows = std::size_t(T);
    u_.resize(rows * D), delta_.resize(rows * D), z_.resize(rows * D), BC_.resize(rows * 2 * N);
    A_.resize(D * N), bias_.resize(D), skip_.resize(D);
    fill_uniform(u_.data(), u_.size(), -1, 1, 1);
    fill_uniform(delta_.data(), delta_.size(), -5, -1, 2);  // softplus: Delta ~ 0.007 .. 0.3
    fill_uniform(z_.data(), z_.size(), -2, 2, 3);
    fill_uniform(BC_.data(), BC_.size(), -1, 1, 4);
    fill_uniform(bias_.data(), D, -0.5, 0.5, 5);
    fill_uniform(skip_.data(), D, -1, 1, 6);
    for (Index d = 0; d < D; ++d)  // S4D-Real, as MambaLM::random
      for (Index n = 0; n < N; ++n) A_[std::size_t(d * N + n)] = -float(n + 1);
    auto& p = args_;
    p.D = std::size_t(D), p.N = std::size_t(N);
    p.u = u_.data(), p.u_time_stride = D;
    p.delta = delta_.data(), p.delta_time_stride = D;
    p.delta_bias = bias_.data(), p.delta_softplus = true;
    p.A = A_.data(), p.A_d_stride = N;
    p.B = BC_.data(), p.B_time_stride = 2 * N;  // interleaved, as x_proj gives them
    p.C = BC_.data() + N, p.C_time_stride = 2 * N;
    p.D_skip = skip_.data();
    p.z = z_.data(), p.z_time_stride = D;
    p.state_d_stride = 1, p.state_n_stride = D;
    p.y_time_stride = D;
    plan_ = std::make_unique<ssm::SelectiveScanPlan<>>(p);
  }
  void prepare() override {
    state_.assign(std::size_t(D * N), 0.f);
    if (decode_) fill_uniform(state_.data(), state_.size(), -1, 1, 7);
    args_.state = state_.data();
  }
  void run(int threads) override {
    if (!decode_) std::fill(state_.begin(), state_.end(), 0.f);
    // the output is the call's, as attention returns its own
    const std::unique_ptr<float[]> y(new float[std::size_t(T_ * D)]);
    args_.y = y.get();
    for (Index s = 0; s < L_; s += T_) {
      args_.L = std::size_t(std::min(T_, L_ - s));
      plan_->run(args_, threads);
      benchmark::DoNotOptimize(y.get());
    }
  }
  double tokens() const override { return double(L_); }
  double state_bytes() const override { return double(D * N) * 4; }

 private:
  Index L_, T_;
  bool decode_;
  std::vector<float> u_, delta_, z_, BC_, A_, bias_, skip_, state_;
  ssm::SelectiveScanArgs args_;
  std::unique_ptr<ssm::SelectiveScanPlan<>> plan_;
};

class AttentionOp : public Case {
 public:
  AttentionOp(Index L, bool naive)
      : L_(L), naive_(naive), q_(random_rows(L, D, 1)), k_(random_rows(L, D, 2)), v_(random_rows(L, D, 3)) {}
  void run(int) override {
    const RowMatrix<float> out = naive_ ? ssm::baseline::causal_attention_naive(q_, k_, v_, heads)
                                        : ssm::baseline::causal_attention(q_, k_, v_, heads);
    benchmark::DoNotOptimize(out.data());
  }
  double tokens() const override { return double(L_); }
  double state_bytes() const override {
    return naive_ ? double(L_) * double(L_) * 4 : 2.0 * double(L_ * D) * 4;
  }
  double flop() const override { return 2.0 * double(D) * double(L_) * double(L_); }

 private:
  Index L_;
  bool naive_;
  RowMatrix<float> q_, k_, v_;
};

// A KV cache of n tokens of random K, V (appended 256 rows at a time, so the
// temporaries stay small next to the cache), with room for one more.
inline ssm::baseline::KvCache<float> random_cache(Index n) {
  ssm::baseline::KvCache<float> cache(heads, D / heads, n + 1);
  for (Index s = 0; s < n; s += 256) {
    const Index rows = std::min<Index>(256, n - s);
    cache.append(random_rows(rows, D, std::uint64_t(2 * s + 100)),
                 random_rows(rows, D, std::uint64_t(2 * s + 101)));
  }
  return cache;
}

// Decode step of the op: append the new token's K, V, attend over the n + 1
// tokens, cut the cache back to n (untimed in effect: a size change).
class AttentionStepOp : public Case {
 public:
  explicit AttentionStepOp(Index n)
      : n_(n), q_(random_rows(1, D, 1)), k_(random_rows(1, D, 2)), v_(random_rows(1, D, 3)) {}
  void prepare() override { cache_ = std::make_unique<ssm::baseline::KvCache<float>>(random_cache(n_)); }
  void run(int) override {
    cache_->append(k_, v_);
    const RowMatrix<float> out = ssm::baseline::causal_attention(q_, *cache_);
    benchmark::DoNotOptimize(out.data());
    cache_->truncate(n_);
  }
  double tokens() const override { return 1; }
  double state_bytes() const override { return 2.0 * double(n_ * D) * 4; }

 private:
  Index n_;
  RowMatrix<float> q_, k_, v_;
  std::unique_ptr<ssm::baseline::KvCache<float>> cache_;
};

// ---- layers

inline ssm::MambaLM& mamba_layer() {
  static ssm::MambaLM m = [] {
    ssm::MambaConfig c;
    c.d_model = D, c.n_layer = 1, c.vocab_size = 16, c.d_state = N, c.d_conv = 4;
    c.d_inner = 2 * D, c.dt_rank = 48, c.tie_embeddings = true;
    return ssm::MambaLM::random(c, 42);
  }();
  return m;
}

inline const ssm::baseline::CausalSelfAttention<float>& attention_layer() {
  static const auto layer = [] {
    ssm::baseline::CausalSelfAttention<float> l(D, heads);
    std::uint64_t seed = 10;
    for (auto* w : {&l.w_q, &l.w_k, &l.w_v, &l.w_o})  // variance 1 / fan_in, as MambaLM::random
      *w = random_rows(D, D, seed++) * std::sqrt(3.f / float(D));
    return l;
  }();
  return layer;
}

// Whole sequence (decode = false) or one step after n tokens (decode = true).
class MambaLayer : public Case {
 public:
  MambaLayer(Index L, bool decode) : decode_(decode), tokens_(std::size_t(decode ? 1 : L)) {
    for (std::size_t i = 0; i < tokens_.size(); ++i) tokens_[i] = std::int32_t((i * 7 + 3) % 16);
    mamba_layer();
  }
  void prepare() override {
    cache_ = mamba_layer().new_cache();
    if (decode_) {  // any state: the step costs the same
      fill_uniform(cache_.conv.data(), cache_.conv.size(), -1, 1, 8);
      fill_uniform(cache_.ssm.data(), cache_.ssm.size(), -1, 1, 9);
    }
  }
  void run(int threads) override {
    ssm::MambaLM& m = mamba_layer();
    m.threads = threads;
    if (decode_) {
      ssm::MambaCache* caches[] = {&cache_};
      m.step(tokens_.data(), caches, 1, logits_, ws_);
    } else {
      std::fill(cache_.conv.begin(), cache_.conv.end(), 0.f);
      std::fill(cache_.ssm.begin(), cache_.ssm.end(), 0.f);
      m.forward(tokens_.data(), tokens_.size(), cache_, logits_, 1, ws_);
    }
    benchmark::DoNotOptimize(logits_);
  }
  double tokens() const override { return double(tokens_.size()); }
  double state_bytes() const override {
    const ssm::MambaCache c = mamba_layer().new_cache();
    return double(c.conv.size() + c.ssm.size()) * 4;
  }
  // in_proj, x_proj, dt_proj, out_proj (see the file comment)
  double flop() const override {
    const double di = 2 * D, xd = 48 + 2 * N;
    return decode_ ? 0 : 2.0 * tokens() * (double(D) * 2 * di + di * xd + 48 * di + di * double(D));
  }

 private:
  bool decode_;
  std::vector<std::int32_t> tokens_;
  float logits_[16] = {};
  ssm::MambaCache cache_;
  ssm::MambaWorkspace ws_;
};

class AttentionLayer : public Case {
 public:
  AttentionLayer(Index L, bool decode) : L_(L), decode_(decode), x_(random_rows(decode ? 1 : L, D, 5)) {
    attention_layer();
  }
  void prepare() override {
    if (decode_) cache_ = std::make_unique<ssm::baseline::KvCache<float>>(random_cache(L_));
  }
  void run(int) override {
    const RowMatrix<float> y = decode_ ? attention_layer().step(x_, *cache_) : attention_layer().forward(x_);
    benchmark::DoNotOptimize(y.data());
    if (decode_) cache_->truncate(L_);
  }
  double tokens() const override { return double(x_.rows()); }
  double state_bytes() const override { return 2.0 * double(L_ * D) * 4; }
  double flop() const override {  // Q, K, V, O projections and the causal products
    return decode_ ? 0 : 2.0 * double(D) * double(L_) * (4.0 * double(D) + double(L_));
  }

 private:
  Index L_;
  bool decode_;
  RowMatrix<float> x_;
  std::unique_ptr<ssm::baseline::KvCache<float>> cache_;
};

}  // namespace bench::scaling
