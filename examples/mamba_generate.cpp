// mamba_generate: runs a Hugging Face Mamba or Mamba-2 checkpoint (the type
// read from its config.json) and generates tokens.
//
//   mamba_generate [--model DIR] [--prompt-ids 1,2,3] [--max-new-tokens N]
//                  [--temperature T] [--top-k K] [--top-p P] [--repetition-penalty R]
//                  [--seed S] [--threads T] [--logits-out FILE.npy]
//
// Prints the new token ids on stdout (one line, space-separated) and the
// timing on stderr. Without --model it runs the tiny checkpoint bundled in
// tests/data/mamba-tiny. Any bad input ends with a one-line error on stderr
// and exit code 1. --help describes every option.
#include <ssm/generate.hpp>
#include <ssm/io/npy.hpp>
#include <ssm/mamba.hpp>
#include <ssm/mamba2.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iterator>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#ifndef SSM_DEFAULT_MODEL
#define SSM_DEFAULT_MODEL "tests/data/mamba-tiny"
#endif

namespace {

const char* usage =
    "usage: mamba_generate [--model DIR] [--prompt-ids 1,2,3] [--max-new-tokens N]\n"
    "                      [--temperature T] [--top-k K] [--top-p P] [--repetition-penalty R]\n"
    "                      [--seed S] [--threads T] [--logits-out FILE.npy]\n"
    "Generates tokens with a Hugging Face Mamba or Mamba-2 checkpoint (config.json +\n"
    "*.safetensors; the model type from config.json).\n"
    "  --model DIR            checkpoint folder (default: the bundled tiny model,\n"
    "                         " SSM_DEFAULT_MODEL ")\n"
    "  --prompt-ids LIST      comma-separated token ids (default: 0)\n"
    "  --max-new-tokens N     tokens to generate (default 32; 0 with --logits-out: the\n"
    "                         prompt's logits only)\n"
    "  --temperature T        0 = greedy (default); else sample from softmax(logits / T)\n"
    "  --top-k K              sample from the K most likely tokens only (default 0: all)\n"
    "  --top-p P              sample from the fewest tokens holding probability P\n"
    "                         (default 1: all); top-k, top-p and seed act only when T > 0\n"
    "  --repetition-penalty R penalize tokens already in the sequence (R > 1; default 1:\n"
    "                         off)\n"
    "  --seed S               random seed for sampling (default 0)\n"
    "  --threads T            threads (default 0: OpenMP's maximum, OMP_NUM_THREADS or\n"
    "                         all cores)\n"
    "  --logits-out FILE.npy  write the prompt's logits, float32 (prompt length, vocab)\n"
    "Prints the new token ids on stdout (one line), the prefill and decode speed on\n"
    "stderr. A bad option, checkpoint or token id: a one-line error, exit code 1.\n";

struct Args {
  std::string model = SSM_DEFAULT_MODEL, logits_out;
  std::vector<std::int32_t> prompt = {0};
  long long max_new_tokens = 32, seed = 0, threads = 0, top_k = 0;
  double temperature = 0, top_p = 1, repetition_penalty = 1;
};

[[noreturn]] void bad(const std::string& flag, const std::string& expected, const std::string& got) {
  throw std::invalid_argument(flag + ": expected " + expected + ", got '" + got + "'");
}

// Whether all of s is one value (std::from_chars: no leading whitespace or
// '+', which std::stoll / std::stod take; decimal, or inf / nan for double).
template <class T>
bool parse_whole(const std::string& s, T& v) {
  const char* end = s.data() + s.size();
  const auto [stop, ec] = std::from_chars(s.data(), end, v);
  return ec == std::errc() && stop == end;
}

long long integer(const std::string& flag, const std::string& s, long long lo, long long hi) {
  long long v = 0;
  if (!parse_whole(s, v) || v < lo || v > hi)
    bad(flag, "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]", s);
  return v;
}

double number(const std::string& flag, const std::string& s) {
  double v = 0;
  if (!parse_whole(s, v)) bad(flag, "a number", s);
  return v;
}

std::vector<std::int32_t> id_list(const std::string& s) {
  std::vector<std::int32_t> ids;
  std::size_t start = 0;
  while (start <= s.size()) {
    const std::size_t comma = std::min(s.find(',', start), s.size());
    ids.push_back(std::int32_t(integer("--prompt-ids", s.substr(start, comma - start), 0, 2147483647)));
    start = comma + 1;
  }
  return ids;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(usage, stdout);
      std::exit(0);
    }
    static const char* const known[] = {"--model", "--prompt-ids", "--max-new-tokens", "--temperature",
                                        "--top-k", "--top-p", "--repetition-penalty", "--seed",
                                        "--threads", "--logits-out"};
    if (std::find(std::begin(known), std::end(known), flag) == std::end(known))
      throw std::invalid_argument("unknown option '" + flag + "' (see --help)");
    if (i + 1 >= argc) throw std::invalid_argument(flag + ": missing value");
    const std::string v = argv[++i];
    if (flag == "--model") a.model = v;
    else if (flag == "--prompt-ids") a.prompt = id_list(v);
    else if (flag == "--max-new-tokens") a.max_new_tokens = integer(flag, v, 0, 1 << 24);
    else if (flag == "--temperature") a.temperature = number(flag, v);
    else if (flag == "--top-k") a.top_k = integer(flag, v, 0, 1 << 30);
    else if (flag == "--top-p") a.top_p = number(flag, v);
    else if (flag == "--repetition-penalty") a.repetition_penalty = number(flag, v);
    else if (flag == "--seed") a.seed = integer(flag, v, 0, 9223372036854775807LL);
    else if (flag == "--threads") a.threads = integer(flag, v, 0, 1024);
    else if (flag == "--logits-out") a.logits_out = v;
  }
  return a;
}

template <class Model>
void run(const Model& model, const Args& a) {
  ssm::SamplingOptions s;
  s.temperature = float(a.temperature);
  s.top_k = int(a.top_k);
  s.top_p = float(a.top_p);
  s.repetition_penalty = float(a.repetition_penalty);
  s.seed = std::uint64_t(a.seed);
  ssm::Sampler check(s);  // validates the options before any work
  (void)check;

  if (!a.logits_out.empty()) {
    const auto V = std::size_t(model.config().vocab_size), L = a.prompt.size();
    std::vector<float> logits(L * V);
    typename Model::Cache cache = model.new_cache();
    typename Model::Workspace ws;
    model.forward(a.prompt.data(), L, cache, logits.data(), L, ws);
    ssm::io::save_npy(a.logits_out, {std::int64_t(L), std::int64_t(V)}, logits.data());
  }
  ssm::GenerationStats st;
  const auto out = ssm::generate(model, {a.prompt}, std::size_t(a.max_new_tokens), s, -1, &st);
  std::string line;
  for (std::size_t i = 0; i < out[0].size(); ++i) line += (i ? " " : "") + std::to_string(out[0][i]);
  std::printf("%s\n", line.c_str());
  // The first new token comes from the prefill's logits, so N tokens take
  // N - 1 decode steps; the rate is per step.
  const std::size_t steps = st.generated_tokens > 0 ? st.generated_tokens - 1 : 0;
  std::fprintf(stderr, "prefill: %zu prompt tokens in %.2f ms (%.1f tok/s); decode: %zu steps in %.2f ms "
               "(%.1f tok/s) for %zu new tokens\n",
               st.prompt_tokens, st.prefill_seconds * 1e3, double(st.prompt_tokens) / st.prefill_seconds,
               steps, st.decode_seconds * 1e3, steps > 0 ? double(steps) / st.decode_seconds : 0.0,
               st.generated_tokens);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
#ifdef _OPENMP
    if (a.threads > 0) omp_set_num_threads(int(a.threads));
#endif
    const ssm::ModelType type = [&] {
      const ssm::io::Checkpoint ck(a.model);
      return ssm::detect_model_type(ck.config(), ck.config_path());
    }();
    if (type == ssm::ModelType::mamba2)
      run(ssm::Mamba2LM::load(a.model), a);
    else
      run(ssm::MambaLM::load(a.model), a);
    return 0;
  } catch (const std::exception& e) {
    std::string msg = e.what();
    for (char& c : msg)
      if (c == '\n') c = ' ';
    std::fprintf(stderr, "mamba_generate: %s\n", msg.c_str());
    return 1;
  }
}
