// Causal softmax attention (ssm/baseline/attention.hpp) against the double
// loops of tests/reference/attention_naive.hpp.
//
// Tolerance: inputs in [-1, 1), so |out| <= 1 and max |out| is near 1 (row 0
// of each head is v_0). In float each score carries ~Dh/4 * 2^-24 absolute
// error, so each softmax weight a relative error of a few 2^-24 (plus 2 ulp
// from the SIMD exp); the weighted sums and l add about sqrt(L) 2^-24 more.
// For L <= 1000 that is ~3e-6 at worst; 1e-5 of max |out| leaves a margin.
// (Measured: at most 3.3e-7.)
#include <ssm/baseline/attention.hpp>

#include "arch.hpp"
#include "reference/attention_naive.hpp"
#include "util.hpp"

#include <xsimd/xsimd.hpp>

#include <cstdint>
#include <iterator>
#include <limits>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

using ssm::baseline::CausalSelfAttention;
using ssm::baseline::KvCache;
using ssm::baseline::RowMatrix;
using Catch::Matchers::Message;

namespace {

constexpr double tol_float = 1e-5;

template <class T>
RowMatrix<T> random_rows(Eigen::Index rows, Eigen::Index cols) {
  return test::random_matrix<T>(rows, cols);
}

naive::Mat<double> widen(const RowMatrix<float>& m) { return naive::from<double>(m); }

// max |a - b| / max |b| for a float result and a double reference.
double rel_err(const RowMatrix<float>& a, const naive::Mat<double>& b) {
  Eigen::MatrixXd bb(Eigen::Index(b.rows), Eigen::Index(b.cols));
  for (std::size_t i = 0; i < b.rows; ++i)
    for (std::size_t j = 0; j < b.cols; ++j) bb(Eigen::Index(i), Eigen::Index(j)) = b(i, j);
  return test::rel_err(a.cast<double>().eval(), bb);
}

}  // namespace

TEST_CASE("tiled and naive attention match the double reference", "[attention]") {
  const Eigen::Index L = GENERATE(1, 2, 17, 100, 1000), Dh = GENERATE(24, 40, 64, 80), H = 3;
  CAPTURE(L, Dh, H);
  const RowMatrix<float> q = random_rows<float>(L, H * Dh), k = random_rows<float>(L, H * Dh),
                         v = random_rows<float>(L, H * Dh);
  const auto ref = naive::causal_attention(widen(q), widen(k), widen(v), std::size_t(H));

  test::for_each_width([&](auto arch) {
    using Arch = decltype(arch);
    INFO("arch " << Arch::name());
    const double err = rel_err(ssm::baseline::causal_attention<Arch>(q, k, v, H), ref);
    CAPTURE(err);
    CHECK(err < tol_float);
  });

  // One reference serves every check (no SECTIONs: they would rerun it).
  {
    INFO("naive");
    CHECK(rel_err(ssm::baseline::causal_attention_naive(q, k, v, H), ref) < tol_float);
  }
  {
    INFO("unaligned maps");
    std::vector<float> buf(3 * std::size_t(L * H * Dh) + 3);
    using Map = Eigen::Map<RowMatrix<float>, Eigen::Unaligned>;
    Map qm(buf.data() + 1, L, H * Dh), km(qm.data() + L * H * Dh + 1, L, H * Dh),
        vm(km.data() + L * H * Dh + 1, L, H * Dh);
    qm = q, km = k, vm = v;
    REQUIRE(reinterpret_cast<std::uintptr_t>(qm.data()) % alignof(std::max_align_t) != 0);
    CHECK(rel_err(ssm::baseline::causal_attention(qm, km, vm, H), ref) < tol_float);
  }
  {
    INFO("column blocks of a fused (L, 3 H Dh) projection");
    RowMatrix<float> qkv(L, 3 * H * Dh);
    qkv << q, k, v;
    const auto out = ssm::baseline::causal_attention(
        qkv.leftCols(H * Dh), qkv.middleCols(H * Dh, H * Dh), qkv.rightCols(H * Dh), H);
    CHECK(rel_err(out, ref) < tol_float);
  }
}

TEST_CASE("attention in double", "[attention]") {
  const Eigen::Index L = GENERATE(1, 70, 300), Dh = 40, H = 2;
  const RowMatrix<double> q = random_rows<double>(L, H * Dh), k = random_rows<double>(L, H * Dh),
                          v = random_rows<double>(L, H * Dh);
  const auto ref = naive::causal_attention(naive::from<double>(q), naive::from<double>(k),
                                           naive::from<double>(v), std::size_t(H));
  Eigen::MatrixXd r(L, H * Dh);
  for (Eigen::Index i = 0; i < L; ++i)
    for (Eigen::Index j = 0; j < H * Dh; ++j) r(i, j) = ref(std::size_t(i), std::size_t(j));
  // The same analysis as for float, with 2^-53: ~1e-14.
  CHECK(test::rel_err(ssm::baseline::causal_attention(q, k, v, H), r) < 1e-12);
  CHECK(test::rel_err(ssm::baseline::causal_attention_naive(q, k, v, H), r) < 1e-12);
}

TEST_CASE("scores far apart: the running max is rescaled", "[attention]") {
  // Scores grow along the sequence (k_j ~ 20 j / L), so every key block
  // raises each row's max and the accumulator is rescaled by exp(m - m') << 1;
  // the largest scores (~200) overflow a float exp without the max subtracted.
  const Eigen::Index L = 300, Dh = 24, H = 2;
  const RowMatrix<float> q = (random_rows<float>(L, H * Dh).array() * 0.2f + 1.f).matrix();
  RowMatrix<float> k = random_rows<float>(L, H * Dh);
  for (Eigen::Index j = 0; j < L; ++j) k.row(j).array() += 20.f * float(j) / float(L);
  const RowMatrix<float> v = random_rows<float>(L, H * Dh);
  const auto ref = naive::causal_attention(widen(q), widen(k), widen(v), std::size_t(H));
  // A score of size S is rounded to ~S 2^-24 absolute, which exp turns into
  // that relative error of its weight: the tolerance scales with max S.
  const double s_max = (q.cast<double>() * k.cast<double>().transpose()).maxCoeff() / std::sqrt(Dh);
  REQUIRE(s_max > 89);  // exp(s) overflows float
  const double tol = std::max(tol_float, 4 * s_max * 0x1p-24);
  CAPTURE(s_max, tol);
  test::for_each_width([&](auto arch) {
    using Arch = decltype(arch);
    INFO("arch " << Arch::name());
    const auto out = ssm::baseline::causal_attention<Arch>(q, k, v, H);
    REQUIRE(out.allFinite());
    CHECK(rel_err(out, ref) < tol);
  });
  CHECK(rel_err(ssm::baseline::causal_attention_naive(q, k, v, H), ref) < tol);
}

TEST_CASE("empty sequences", "[attention]") {
  const RowMatrix<float> none(0, 8);
  CHECK(ssm::baseline::causal_attention(none, none, none, 2).rows() == 0);
  CHECK(ssm::baseline::causal_attention_naive(none, none, none, 2).rows() == 0);
  CausalSelfAttention<float> layer(8, 2);
  CHECK(layer.forward(none).rows() == 0);
}

#ifdef _OPENMP
TEST_CASE("the result does not depend on the number of threads", "[attention]") {
  // Each (head, query block) is computed by one thread in a fixed order.
  const Eigen::Index L = 700, H = 4, Dh = 40;
  const RowMatrix<float> q = random_rows<float>(L, H * Dh), k = random_rows<float>(L, H * Dh),
                         v = random_rows<float>(L, H * Dh);
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  const RowMatrix<float> one = ssm::baseline::causal_attention(q, k, v, H);
  omp_set_num_threads(3);
  const RowMatrix<float> three = ssm::baseline::causal_attention(q, k, v, H);
  omp_set_num_threads(before);
  CHECK(one == three);
}
#endif

TEST_CASE("decoding with the KV cache equals the full forward", "[attention][cache]") {
  const Eigen::Index L = 150, Dh = GENERATE(24, 64), H = 3;  // 150: three key blocks
  CAPTURE(Dh);
  const RowMatrix<float> q = random_rows<float>(L, H * Dh), k = random_rows<float>(L, H * Dh),
                         v = random_rows<float>(L, H * Dh);
  const RowMatrix<float> full = ssm::baseline::causal_attention(q, k, v, H);
  const auto ref = naive::causal_attention(widen(q), widen(k), widen(v), std::size_t(H));
  REQUIRE(rel_err(full, ref) < tol_float);

  // Each row's arithmetic is the same in both (blocks a row cannot see add
  // exact zeros), so they agree to rounding.
  SECTION("one token at a time") {
    KvCache<float> cache(H, Dh);
    RowMatrix<float> out(L, H * Dh);
    for (Eigen::Index t = 0; t < L; ++t) {
      cache.append(k.row(t), v.row(t));
      out.row(t) = ssm::baseline::causal_attention(q.row(t), cache);
    }
    CHECK(cache.size() == L);
    CHECK(test::rel_err(out, full) < 1e-6);
  }

  SECTION("a prompt, then tokens and chunks; the cache reused after clear()") {
    KvCache<float> cache(H, Dh);
    // Stale keys and values must never reach a later sequence's outputs.
    const RowMatrix<float> junk =
        RowMatrix<float>::Constant(L, H * Dh, std::numeric_limits<float>::quiet_NaN());
    cache.append(junk, junk);
    cache.clear();
    RowMatrix<float> out(L, H * Dh);
    const Eigen::Index cuts[] = {0, 70, 71, 84, 85, 129, L};
    for (std::size_t c = 0; c + 1 < std::size(cuts); ++c) {
      const Eigen::Index t0 = cuts[c], n = cuts[c + 1] - cuts[c];
      cache.append(k.middleRows(t0, n), v.middleRows(t0, n));
      out.middleRows(t0, n) = ssm::baseline::causal_attention(q.middleRows(t0, n), cache);
    }
    REQUIRE(out.allFinite());
    CHECK(test::rel_err(out, full) < 1e-6);
  }

  SECTION("truncate() rolls back a rejected continuation") {
    KvCache<float> cache(H, Dh);
    cache.append(k.topRows(70), v.topRows(70));
    const RowMatrix<float> draft = random_rows<float>(30, H * Dh);
    cache.append(draft, draft);
    cache.truncate(70);
    CHECK(cache.size() == 70);
    cache.append(k.bottomRows(L - 70), v.bottomRows(L - 70));
    CHECK(test::rel_err(ssm::baseline::causal_attention(q.bottomRows(L - 70), cache),
                        full.bottomRows(L - 70)) < 1e-6);
  }
}

TEST_CASE("KV cache memory", "[attention][cache]") {
  const Eigen::Index H = 3, Dh = 40, L = 150;
  KvCache<float> cache(H, Dh);
  CHECK(cache.memory_bytes() == 0);
  CHECK(cache.size() == 0);
  cache.reserve(L);
  // 3 blocks of 64 tokens; K^T panels of Dh x 64 and V rows padded to 48.
  const std::size_t packed = 3 * std::size_t(H) * (40 * 64 + 64 * 48) * sizeof(float);
  const std::size_t reserved = cache.memory_bytes();
  CHECK(reserved >= packed);
  CHECK(cache.capacity() >= L);
  const RowMatrix<float> kv = random_rows<float>(L, H * Dh);
  for (Eigen::Index t = 0; t < L; ++t) cache.append(kv.row(t), kv.row(t));
  CHECK(cache.size() == L);
  CHECK(cache.memory_bytes() == reserved);  // no reallocation within capacity
  cache.append(kv, kv);                       // grows past the reservation
  CHECK(cache.size() == 2 * L);
  CHECK(cache.memory_bytes() >= 2 * std::size_t(L * H * Dh) * 2 * sizeof(float));
  const std::size_t grown = cache.memory_bytes();
  cache.clear();
  CHECK(cache.size() == 0);
  CHECK(cache.memory_bytes() == grown);
}

TEST_CASE("attention layer: forward and decode", "[attention][layer]") {
  const Eigen::Index d_model = GENERATE(96, 768), heads = d_model == 96 ? 4 : 12;
  const Eigen::Index L = d_model == 96 ? 130 : 40;
  CAPTURE(d_model, heads, L);
  CausalSelfAttention<float> layer(d_model, heads);
  REQUIRE(layer.head_dim() == d_model / heads);
  // nn.Linear's initial scale, 1/sqrt(d_model), keeps Q, K, V of order 1.
  const float w = 1.f / std::sqrt(float(d_model));
  for (auto* m : {&layer.w_q, &layer.w_k, &layer.w_v, &layer.w_o})
    *m = random_rows<float>(d_model, d_model) * w;
  const RowMatrix<float> x = random_rows<float>(L, d_model);
  const auto ref = naive::attention_layer(widen(x), widen(layer.w_q), widen(layer.w_k),
                                          widen(layer.w_v), widen(layer.w_o), std::size_t(heads));
  // Two float products of length d_model around the attention: each adds
  // ~sqrt(d_model) 2^-24 relative (~2e-6 at 768).
  const RowMatrix<float> y = layer.forward(x);
  CHECK(rel_err(y, ref) < 2e-5);

  KvCache<float> cache = layer.make_cache();
  RowMatrix<float> steps(L, d_model);
  steps.topRows(5) = layer.step(x.topRows(5), cache);  // a prompt
  for (Eigen::Index t = 5; t < L; ++t) steps.row(t) = layer.step(x.row(t), cache);
  CHECK(cache.size() == L);
  CHECK(rel_err(steps, ref) < 2e-5);
}

TEST_CASE("bad shapes are reported", "[attention][errors]") {
  const RowMatrix<float> a = RowMatrix<float>::Zero(10, 12), b = RowMatrix<float>::Zero(10, 13),
                         c = RowMatrix<float>::Zero(9, 12);
  using ssm::baseline::causal_attention;
  using ssm::baseline::causal_attention_naive;
  REQUIRE_THROWS_MATCHES(causal_attention(a, b, a, 2), std::invalid_argument,
                         Message("ssm::baseline::causal_attention: k must be 10x12 (like q), got 10x13"));
  REQUIRE_THROWS_MATCHES(causal_attention(a, a, c, 2), std::invalid_argument,
                         Message("ssm::baseline::causal_attention: v must be 10x12 (like q), got 9x12"));
  REQUIRE_THROWS_MATCHES(causal_attention(a, a, a, 5), std::invalid_argument,
                         Message("ssm::baseline::causal_attention: q must be L x (num_heads * "
                                 "head_dim) with 5 heads, got 10x12"));
  REQUIRE_THROWS_MATCHES(causal_attention_naive(a, a, a, 0), std::invalid_argument,
                         Message("ssm::baseline::causal_attention_naive: num_heads must be "
                                 "positive, got 0"));

  REQUIRE_THROWS_MATCHES(KvCache<float>(0, 64), std::invalid_argument,
                         Message("ssm::baseline::KvCache: num_heads and head_dim must be "
                                 "positive, got 0 and 64"));
  KvCache<float> cache(2, 6);
  REQUIRE_THROWS_MATCHES(cache.append(a, b), std::invalid_argument,
                         Message("ssm::baseline::KvCache::append: k and v must be T x 12 (2 heads "
                                 "of 6), got 10x12 and 10x13"));
  REQUIRE_THROWS_MATCHES(cache.truncate(1), std::invalid_argument,
                         Message("ssm::baseline::KvCache::truncate: tokens must be in [0, 0], got 1"));
  REQUIRE_THROWS_MATCHES(cache.reserve(-1), std::invalid_argument,
                         Message("ssm::baseline::KvCache::reserve: tokens must be >= 0, got -1"));
  cache.append(c, c);
  REQUIRE_THROWS_MATCHES(causal_attention(a, cache), std::invalid_argument,
                         Message("ssm::baseline::causal_attention: q must be T x 12 with T <= 9 "
                                 "(the tokens in the cache), got 10x12"));
  REQUIRE_THROWS_MATCHES(causal_attention(b.topRows(1), cache), std::invalid_argument,
                         Message("ssm::baseline::causal_attention: q must be T x 12 with T <= 9 "
                                 "(the tokens in the cache), got 1x13"));

  REQUIRE_THROWS_MATCHES(CausalSelfAttention<float>(10, 3), std::invalid_argument,
                         Message("ssm::baseline::CausalSelfAttention: d_model must be a positive "
                                 "multiple of num_heads, got d_model 10 and num_heads 3"));
  CausalSelfAttention<float> layer(12, 2);
  REQUIRE_THROWS_MATCHES(layer.forward(b), std::invalid_argument,
                         Message("ssm::baseline::CausalSelfAttention: x must be L x 12, got 10x13"));
  KvCache<float> other(3, 4);
  REQUIRE_THROWS_MATCHES(layer.step(a, other), std::invalid_argument,
                         Message("ssm::baseline::CausalSelfAttention: the cache holds 3 heads of 4, "
                                 "the layer has 2 of 6"));
  layer.w_o.resize(12, 11);
  REQUIRE_THROWS_MATCHES(layer.forward(a), std::invalid_argument,
                         Message("ssm::baseline::CausalSelfAttention: w_o must be 12x12, got 12x11"));
}
