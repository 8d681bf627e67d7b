// One const MambaLM (or Mamba2LM) shared by several std::threads, each
// generating with its own caches, samplers and workspace (generate() owns
// them): every thread gets the tokens of a single-threaded run, bitwise. Under
// ThreadSanitizer (scripts/tsan.sh, built without OpenMP, whose GCC runtime
// TSan cannot see into) any data race in the model's const methods or the
// kernels they call is reported and fails the run. Also: exceptions carried
// out of OpenMP parallel regions (detail::ParallelErrors).
#include <ssm/detail/omp.hpp>
#include <ssm/generate.hpp>
#include <ssm/mamba.hpp>
#include <ssm/mamba2.hpp>

#include "util.hpp"

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifndef SSM_TEST_DATA_DIR
#error "define SSM_TEST_DATA_DIR as tests/data"
#endif

namespace {

using Prompts = std::vector<std::vector<std::int32_t>>;

struct Job {
  Prompts prompts;  // one to three sequences, decoded as a batch
  ssm::SamplingOptions sampling;
};

// Jobs of random prompts (1 to 40 tokens: the matrix-vector and the GEMM
// forms of the dense layers), greedy or sampled with every option.
std::vector<Job> make_jobs(std::size_t n, std::int32_t vocab) {
  std::uniform_int_distribution<std::int32_t> token(0, vocab - 1);
  std::uniform_int_distribution<std::size_t> length(1, 40), sequences(1, 3);
  std::vector<Job> jobs(n);
  for (std::size_t j = 0; j < n; ++j) {
    jobs[j].prompts.resize(sequences(test::rng()));
    for (auto& p : jobs[j].prompts) {
      p.resize(length(test::rng()));
      for (auto& t : p) t = token(test::rng());
    }
    if (j % 2) {
      jobs[j].sampling.temperature = 0.8f;
      jobs[j].sampling.top_k = 20;
      jobs[j].sampling.top_p = 0.9f;
      jobs[j].sampling.repetition_penalty = 1.2f;
      jobs[j].sampling.seed = test::rng()();
    }
  }
  return jobs;
}

// Generates every job alone, then the same jobs in `threads` threads at
// once from the one const model, and compares.
template <class Model>
void check_concurrent(const std::string& name) {
  const Model model = Model::load(std::string(SSM_TEST_DATA_DIR) + "/" + name);
  constexpr std::size_t threads = 4, new_tokens = 12;
  const std::vector<Job> jobs = make_jobs(3 * threads, std::int32_t(model.config().vocab_size));
  std::vector<Prompts> alone(jobs.size()), together(jobs.size());
  for (std::size_t j = 0; j < jobs.size(); ++j)
    alone[j] = ssm::generate(model, jobs[j].prompts, new_tokens, jobs[j].sampling);

  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (std::size_t j = t; j < jobs.size(); j += threads)
        together[j] = ssm::generate(model, jobs[j].prompts, new_tokens, jobs[j].sampling);
    });
  for (auto& th : pool) th.join();
  for (std::size_t j = 0; j < jobs.size(); ++j) {
    INFO(name << ", job " << j << (jobs[j].sampling.temperature > 0 ? ", sampled" : ", greedy"));
    CHECK(together[j] == alone[j]);
  }
}

}  // namespace

TEST_CASE("a const MambaLM generates in several threads at once as it does alone",
          "[concurrency]") {
  check_concurrent<ssm::MambaLM>(GENERATE("mamba-tiny", "ref/m1_odd"));
}

TEST_CASE("a const Mamba2LM generates in several threads at once as it does alone",
          "[concurrency]") {
  // m2_groups: heads in two groups
  check_concurrent<ssm::Mamba2LM>(GENERATE("mamba2-tiny", "ref/m2_groups"));
}

// What the library's parallel regions rely on: an exception thrown inside
// one (which may not leave it) reaches the caller after the region, and
// work after a failure is skipped. Up to 4 threads (1 without OpenMP).
TEST_CASE("ParallelErrors carries the first exception out of a parallel region",
          "[concurrency]") {
  ssm::detail::ParallelErrors errors;
  std::atomic<int> done{0};
  constexpr int iterations = 64;
  SECTION("one iteration throws") {
    // schedule(static, 1): thread t of T runs i = t, t + T, ...
    SSM_OMP(parallel for num_threads(4) schedule(static, 1))
    for (int i = 0; i < iterations; ++i)
      errors.run([&] {
        if (i == 0) throw std::runtime_error("iteration 0 failed");
        done.fetch_add(1, std::memory_order_relaxed);
      });
    REQUIRE_THROWS_MATCHES(errors.rethrow(), std::runtime_error,
                           Catch::Message("iteration 0 failed"));
    // thread 0 failed first and skipped its own later iterations (at least
    // 15 of its 64 / T); other threads may have run theirs before seeing it
    CHECK(done <= iterations - 16);
    bool ran = false;
    errors.run([&] { ran = true; });
    CHECK_FALSE(ran);
  }
  SECTION("a failure before a barrier skips every thread's work after it") {
    SSM_OMP(parallel num_threads(4))
    {
      errors.run([] {
        if (ssm::detail::thread_index() == 0) throw std::runtime_error("before the barrier");
      });
      SSM_OMP(barrier)
      errors.run([&] { done.fetch_add(1, std::memory_order_relaxed); });
    }
    CHECK(done == 0);
    REQUIRE_THROWS_MATCHES(errors.rethrow(), std::runtime_error,
                           Catch::Message("before the barrier"));
  }
  SECTION("every thread throws at once: one exception comes out") {
    SSM_OMP(parallel num_threads(4))
    errors.run([] {
      throw std::runtime_error("thread " + std::to_string(ssm::detail::thread_index()));
    });
    REQUIRE_THROWS_AS(errors.rethrow(), std::runtime_error);
    REQUIRE_THROWS_WITH(errors.rethrow(), Catch::Matches("thread [0-3]"));
  }
  SECTION("without a failure every iteration runs and nothing is thrown") {
    SSM_OMP(parallel for num_threads(4))
    for (int i = 0; i < iterations; ++i)
      errors.run([&] { done.fetch_add(1, std::memory_order_relaxed); });
    CHECK(done == iterations);
    REQUIRE_NOTHROW(errors.rethrow());
  }
}
