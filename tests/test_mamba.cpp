// MambaLM against Hugging Face transformers (tests/data/mamba-tiny and the
// Mamba-1 cases of tests/data/ref, made by scripts/make_reference_models.py):
// logits, hidden states and greedy tokens; and the model against itself:
// step path == parallel path, batched == alone, caches that fork and resume.
#include <ssm/mamba.hpp>

#include "arch.hpp"
#include "lm_checks.hpp"

#include <filesystem>
#include <string>
#include <vector>

namespace {

using namespace test;

void check_reference(const std::string& folder) {
  INFO(folder);
  const ssm::MambaLM m = ssm::MambaLM::load(folder);
  const auto input = ssm::io::load_npy(folder + "/input_ids.npy");
  const auto logits = ssm::io::load_npy(folder + "/logits.npy");
  const std::int64_t batch = input.shape[0], L = input.shape[1], V = logits.shape[2];
  REQUIRE(V == m.config().vocab_size);
  const auto tokens = input.values<std::int64_t>();
  const auto ref = logits.values<float>();
  std::vector<ssm::io::NpyArray> hidden_ref;
  const bool has_hidden = std::filesystem::exists(folder + "/hidden_states.npy");
  const auto hidden_all = has_hidden ? ssm::io::load_npy(folder + "/hidden_states.npy") : ssm::io::NpyArray{};
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::vector<std::int32_t> seq(tokens.begin() + b * L, tokens.begin() + (b + 1) * L);
    std::vector<Rows> hidden;
    const Rows ours = all_logits(m, seq, nullptr, &hidden);
    const Rows theirs = Eigen::Map<const Rows>(ref.data() + b * L * V, L, V);
    INFO("sequence " << b);
    CHECK(rel_err(ours, theirs) <= logit_tolerance);
    // the recurrent path gives the same logits
    CHECK(rel_err(stepped_logits(m, seq), theirs) <= logit_tolerance);
    // the final hidden state (after norm_f) through the LM head, tied or not
    CHECK(rel_err(Rows(hidden.back() * m.head().transpose()), ours) <= 1e-6);
    CHECK(m.head().rows() == m.embedding().rows());
    CHECK(m.norm_f_weight().size() == m.config().d_model);
    if (has_hidden) {  // (layers + 1, batch, L, d_model): after each layer, then after norm_f
      const auto h = hidden_all.values<float>();
      const std::int64_t dm = m.config().d_model;
      REQUIRE(hidden.size() == std::size_t(hidden_all.shape[0]));
      for (std::size_t i = 0; i < hidden.size(); ++i) {
        const Rows want = Eigen::Map<const Rows>(h.data() + ((std::int64_t(i) * batch + b) * L) * dm, L, dm);
        INFO("hidden state " << i);
        CHECK(rel_err(hidden[i], want) <= logit_tolerance);
      }
    }
  }
}

// Greedy continuation of each greedy_prompt*.npy equals transformers' tokens.
void check_greedy(const std::string& folder) {
  const ssm::MambaLM m = ssm::MambaLM::load(folder);
  const int prompts =
      for_each_greedy_prompt(folder, "", [&](const auto& prompt, const auto& want, const auto&) {
        CHECK(ssm::generate(m, {prompt}, want.size())[0] == want);
      });
  CHECK(prompts > 0);
}

}  // namespace

TEST_CASE("mamba-tiny matches transformers: logits, hidden states, both paths", "[mamba]") {
  check_reference(data("mamba-tiny"));
}

TEST_CASE("mamba-tiny greedy generation matches transformers", "[mamba]") {
  check_greedy(data("mamba-tiny"));
}

TEST_CASE("other Mamba-1 checkpoints match transformers", "[mamba][ref]") {
  // odd sizes with biases and an untied head, conv kernels 2 and 3, sharded,
  // F16 and BF16 weights, the state-spaces key layout
  const std::string name = GENERATE("m1_odd", "m1_conv3", "m1_sharded", "m1_f16", "m1_bf16",
                                    "m1_statespaces");
  check_reference(data("ref/" + name));
  check_greedy(data("ref/" + name));
}

TEST_CASE("batched generation gives each sequence its tokens alone", "[mamba][generate]") {
  check_batched_generation(ssm::MambaLM::load(data("ref/m1_odd")));
}

TEST_CASE("caches fork, resume and take several tokens at once", "[mamba][cache]") {
  check_fork_resume(ssm::MambaLM::load(data("mamba-tiny")), random_tokens(40, 256), GENERATE(1, 3, 17, 39));
}

TEST_CASE("after the first token, decoding and prompts allocate nothing", "[mamba][cache]") {
  ssm::MambaLM m = ssm::MambaLM::load(data("mamba-tiny"));
  m.threads = GENERATE(1, 2);
  check_no_allocation_per_token(m, random_tokens(9, 256));
}

TEST_CASE("a Mamba workspace grown past 2 MiB gives the logits of a fresh one", "[mamba][pages]") {
  ssm::MambaConfig c;
  c.d_model = 64, c.n_layer = 2, c.vocab_size = 100, c.d_state = 16, c.d_inner = 256, c.dt_rank = 4;
  const ssm::MambaLM m = ssm::MambaLM::random(c, 3);
  const ssm::MambaWorkspace ws = check_grown_workspace(m, 1100);
  CHECK(ws.xz.size() * sizeof(float) >= (std::size_t(2) << 20));  // 1024 + 3 rows of 512
}

TEST_CASE("MambaLM::random rejects inconsistent configs", "[mamba][errors]") {
  ssm::MambaConfig c;
  c.d_model = 16, c.n_layer = 1, c.vocab_size = 20, c.d_state = 4, c.d_inner = 32, c.dt_rank = 2;
  ssm::MambaLM::random(c, 1);  // consistent
  ssm::MambaConfig bad = c;
  bad.d_conv = 0;  // the cache's conv window would be -1 steps long
  REQUIRE_THROWS_MATCHES(ssm::MambaLM::random(bad, 1), std::invalid_argument,
                         Catch::Matchers::Message("ssm::MambaLM::random: d_conv must be > 0, got 0"));
  bad = c;
  bad.norm_eps = 0;
  REQUIRE_THROWS_WITH(ssm::MambaLM::random(bad, 1),
                      Catch::Matchers::StartsWith("ssm::MambaLM::random: norm_eps must be > 0"));
}

TEST_CASE("MambaLM rejects bad tokens and foreign caches", "[mamba][errors]") {
  using Catch::Matchers::Message;
  const ssm::MambaLM m = ssm::MambaLM::load(data("mamba-tiny"));
  ssm::MambaCache cache = m.new_cache();
  ssm::MambaWorkspace ws;
  std::vector<float> logits(256);
  const std::int32_t bad[] = {5, 256};
  REQUIRE_THROWS_MATCHES(m.forward(bad, 2, cache, logits.data(), 1, ws), std::invalid_argument,
                         Message("ssm::MambaLM: token id 256 is outside the vocabulary [0, 256)"));
  ssm::MambaCache other = cache;
  other.ssm.pop_back();
  REQUIRE_THROWS_WITH(m.forward(bad, 1, other, logits.data(), 1, ws),
                      Catch::Matchers::Contains("the cache was made for another model"));
  const std::int32_t two[] = {5, 6};
  ssm::MambaCache* twice[] = {&cache, &cache};
  REQUIRE_THROWS_MATCHES(m.step(two, twice, 2, logits.data(), ws), std::invalid_argument,
                         Message("ssm::MambaLM::step: caches[0] and caches[1] are the same cache"));
  ssm::MambaCache* none[] = {&cache, nullptr};
  REQUIRE_THROWS_MATCHES(m.step(two, none, 2, logits.data(), ws), std::invalid_argument,
                         Message("ssm::MambaLM::step: caches[1] is null"));
  REQUIRE_THROWS_WITH(ssm::MambaLM::load(data("mamba2-tiny")),
                      Catch::Matchers::Contains("a Mamba-2 checkpoint"));
  REQUIRE_THROWS_WITH(ssm::MambaLM::load(data("no-such-model")),
                      Catch::Matchers::Contains("no such folder"));
}

TEST_CASE("the decode kernel's row orders give the same bits, and automatic picks one",
          "[mamba][linear]") {
  // Rows in several streams or one after another: each row summed in the same
  // order. A 4 MiB matrix takes part in the timing of automatic calls (half
  // its rows in each order) until the choice is made; every call's result
  // is the same.
  using ssm::detail::RowOrder;
  const std::size_t out = 1031, in = 1024, n = GENERATE(1, 3);
  const int threads = GENERATE(1, 2);
  const Rows W = test::random_matrix<float>(Eigen::Index(out), Eigen::Index(in));
  std::vector<float> X(n * in);
  for (auto& v : X) v = test::uniform<float>();
  auto product = [&](RowOrder order) {
    std::vector<float> Y(n * out);
    ssm::detail::matvec(W, nullptr, X.data(), std::ptrdiff_t(in), n, Y.data(), std::ptrdiff_t(out), threads,
                        order);
    return Y;
  };
  const std::vector<float> streams = product(RowOrder::streams);
  INFO("n " << n << " threads " << threads);
  CHECK(product(RowOrder::one_by_one) == streams);
  for (int call = 0; call <= ssm::detail::RowOrderChoice::kTrials; ++call) CHECK(product(RowOrder::automatic) == streams);
  CHECK(ssm::detail::row_order_choice().chosen.load() != int(RowOrder::automatic));
}

TEST_CASE("the decode matrix-vector kernel against a double-precision product", "[mamba][linear]") {
  // ssm::detail::linear for a few rows of X (the decode path): every shape
  // around the kernel's groups of 8 (or 4) rows of W and its SIMD width,
  // rows of X and Y padded (not aligned), 1 to 3 threads (which take part
  // from 2^16 weights: 1001 x 100); each row of Y the same bits whether its
  // row of X came alone or with others.
  const std::size_t out = GENERATE(1, 7, 8, 9, 31, 200, 1001), in = GENERATE(1, 15, 16, 17, 100);
  const std::size_t n = GENERATE(1, 2, 3, 4, 5, 8);
  const int threads = GENERATE(1, 2, 3);
  const Rows W = test::random_matrix<float>(Eigen::Index(out), Eigen::Index(in));
  const Eigen::VectorXf bias = test::random_matrix<float>(Eigen::Index(out), 1);
  const std::ptrdiff_t ldx = std::ptrdiff_t(in) + 3, ldy = std::ptrdiff_t(out) + 5;
  std::vector<float> X(n * std::size_t(ldx) + 1);
  for (auto& v : X) v = test::uniform<float>();
  // the product, and the sum of its terms' magnitudes (the scale of float's
  // rounding errors, which a sum that cancels would hide)
  Eigen::MatrixXd want(n, out);
  double scale = 0;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t o = 0; o < out; ++o) {
      double s = bias(Eigen::Index(o)), m = std::abs(s);
      for (std::size_t k = 0; k < in; ++k) {
        const double t = double(W(Eigen::Index(o), Eigen::Index(k))) * X[1 + i * std::size_t(ldx) + k];
        s += t, m += std::abs(t);
      }
      want(Eigen::Index(i), Eigen::Index(o)) = s;
      scale = std::max(scale, m);
    }
  test::for_each_width([&](auto arch) {
    using Arch = decltype(arch);
    INFO("out " << out << " in " << in << " n " << n << " threads " << threads << " arch " << Arch::name());
    std::vector<float> Y(n * std::size_t(ldy) + 1), alone(Y.size());
    ssm::detail::linear<Arch>(W, bias.data(), X.data() + 1, ldx, n, Y.data() + 1, ldy, threads);
    for (std::size_t i = 0; i < n; ++i)
      ssm::detail::linear<Arch>(W, bias.data(), X.data() + 1 + i * std::size_t(ldx), ldx, 1,
                                alone.data() + 1 + i * std::size_t(ldy), ldy, threads);
    using Strided = Eigen::Map<const Eigen::MatrixXf, 0, Eigen::OuterStride<>>;
    const Strided got(Y.data() + 1, Eigen::Index(out), Eigen::Index(n), Eigen::OuterStride<>(ldy));
    CHECK((got.transpose().cast<double>() - want).cwiseAbs().maxCoeff() <= 2e-7 * double(in + 1) * scale);
    // Bitwise where xsimd's fma is one instruction. SSE2 has none: in a build
    // with FMA, GCC contracts its a * b + c into one in some instantiations
    // and not in others (the kernel for 1 row of X and for 2 differ).
#ifdef __FMA__
    if (!std::is_same<Arch, xsimd::sse2>::value)
#endif
      CHECK(Y == alone);
  });
}
