// The mamba_generate program on the malformed checkpoints of
// tests/malformed.hpp and on bad arguments: each run must end within a
// second with exit code 1, nothing on stdout and exactly one line on stderr,
// "mamba_generate: " and a message naming the file and the tensor or key.
// SSM_MAMBA_GENERATE is the program's path (tests/CMakeLists.txt).
#include "malformed.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#ifndef SSM_MAMBA_GENERATE
#error "define SSM_MAMBA_GENERATE as the path of the mamba_generate program"
#endif
#ifndef SSM_TEST_DATA_DIR
#error "define SSM_TEST_DATA_DIR as tests/data"
#endif

extern char** environ;

namespace {

namespace fs = std::filesystem;
namespace bad = test::malformed;
using Catch::Matchers::Contains;
using Catch::Matchers::EndsWith;
using Catch::Matchers::StartsWith;

struct Run {
  int status;  // the exit code, or 128 + the signal that ended it
  std::string out, err;
  double seconds;
};

// Runs mamba_generate with `args`; its stdout and stderr go to files in
// `dir` (no pipe to fill up).
Run run(const std::vector<std::string>& args, const fs::path& dir) {
  const std::string out = (dir / "stdout").string(), err = (dir / "stderr").string();
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addopen(&files, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&files, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<std::string> all = {SSM_MAMBA_GENERATE};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const auto start = std::chrono::steady_clock::now();
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, argv[0], &files, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&files);
  REQUIRE(spawned == 0);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return {code, bad::read(out), bad::read(err), seconds};
}

// The one-line error of a failed run: exit code 1, nothing on stdout, one
// line on stderr; returns that line.
std::string one_line_error(const Run& r) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.status == 1);
  CHECK(r.out.empty());
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK_THAT(r.err, StartsWith("mamba_generate: ") && EndsWith("\n"));
  CHECK(r.seconds < 1.0);
  return r.err;
}

// The unmodified copy of `subject` runs, and each of `cases` ends with a
// one-line error naming the file and what is wrong.
void check_malformed(const bad::Subject& subject, const std::vector<bad::Case>& cases) {
  bad::TempDir tmp;
  // the unmodified copy runs: the errors below come from the corruption
  bad::make({"valid", [](const fs::path&) {}, "", {}}, subject.folder, tmp.path / "valid");
  const Run ok = run({"--model", (tmp.path / "valid").string(), "--max-new-tokens", "3"}, tmp.path);
  INFO(ok.err);
  REQUIRE(ok.status == 0);
  CHECK(std::count(ok.out.begin(), ok.out.end(), ' ') == 2);
  int i = 0;
  for (const bad::Case& c : cases) {
    const fs::path folder = tmp.path / std::to_string(i++);
    bad::make(c, subject.folder, folder);
    INFO(c.name);
    const std::string err = one_line_error(run({"--model", folder.string(), "--max-new-tokens", "3"}, tmp.path));
    CHECK_THAT(err, Contains(c.file.empty() ? folder.string() : (folder / c.file).string()));
    for (const std::string& phrase : c.phrases) CHECK_THAT(err, Contains(phrase));
  }
}

}  // namespace

TEST_CASE("mamba_generate ends malformed checkpoints with a one-line error, exit code 1",
          "[robustness][mamba_generate]") {
  SECTION("Mamba-1") {
    check_malformed(bad::mamba1_subject(SSM_TEST_DATA_DIR), bad::mamba1_cases(SSM_TEST_DATA_DIR));
  }
  SECTION("Mamba-2 (the cases every Mamba-family checkpoint shares)") {
    check_malformed(bad::mamba2_subject(SSM_TEST_DATA_DIR), bad::mamba2_cases(SSM_TEST_DATA_DIR));
  }
}

TEST_CASE("mamba_generate ends bad arguments with a one-line error, exit code 1",
          "[robustness][mamba_generate]") {
  bad::TempDir tmp;
  const std::string model = bad::mamba1_subject(SSM_TEST_DATA_DIR).folder,
                    missing = (tmp.path / "missing").string();
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--model", model, "--prompt-ids", "5,256"},
       "ssm::MambaLM: token id 256 is outside the vocabulary [0, 256)"},
      {{"--model", missing}, "ssm::io::Checkpoint: " + missing + ": no such folder"},
      {{"--model", ""}, "ssm::io::Checkpoint: the folder name is empty"},
      {{"--model", model, "--prompt-ids", "-1"},
       "--prompt-ids: expected an integer in [0, 2147483647], got '-1'"},
      {{"--model", model, "--prompt-ids", "1,,2"},
       "--prompt-ids: expected an integer in [0, 2147483647], got ''"},
      {{"--model", model, "--prompt-ids", " 5"},  // no whitespace or '+' before the digits
       "--prompt-ids: expected an integer in [0, 2147483647], got ' 5'"},
      {{"--max-new-tokens", "+3"}, "--max-new-tokens: expected an integer in [0, 16777216], got '+3'"},
      {{"--temperature", " 1"}, "--temperature: expected a number, got ' 1'"},  // as integers
      {{"--top-p", "0x1p-1"}, "--top-p: expected a number, got '0x1p-1'"},     // decimal only
      {{"--model", model, "--temperature", "nan"}, "ssm::Sampler: temperature must be >= 0, got nan"},
      {{"--model", model, "--top-p", "0"}, "ssm::Sampler: top_p must lie in (0, 1], got 0.000000"},
      {{"--max-new-tokens", "1e3"}, "--max-new-tokens: expected an integer in [0, 16777216], got '1e3'"},
      {{"--model"}, "--model: missing value"},
      {{"--frobnicate", "1"}, "unknown option '--frobnicate' (see --help)"},
      {{"prompt.txt"}, "unknown option 'prompt.txt' (see --help)"},  // no positional arguments
  };
  for (const auto& [args, message] : cases) {
    INFO(message);
    CHECK(one_line_error(run(args, tmp.path)) == "mamba_generate: " + message + "\n");
  }
}
