// libFuzzer target: arbitrary bytes as a checkpoint's config.json.
//
// The text goes the way ssm::io::read_json takes it (Python's NaN /
// Infinity tokens rewritten, nesting bounded), then to detect_model_type
// and to both configs' from_json. The contract (ssm/io/config.hpp): a
// config is read or std::runtime_error is thrown; a config that is read has
// sizes that the models can use. A crash, a sanitizer report, another
// exception or a broken invariant below is a bug. Built by scripts/fuzz.sh;
// replayed on the seed corpus by ctest (fuzz/replay_main.cpp).
#include <ssm/io/config.hpp>
#include <ssm/io/json.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

namespace {

void require(bool invariant) {
  if (!invariant) __builtin_trap();
}

bool size_ok(std::int64_t v) { return v > 0 && v <= std::int64_t(1) << 30; }

void check(const ssm::MambaConfig& c) {
  require(size_ok(c.d_model) && size_ok(c.n_layer) && size_ok(c.d_state) && size_ok(c.d_conv) &&
          size_ok(c.d_inner) && size_ok(c.dt_rank) && c.vocab_size > 0);
  require(c.x_proj_size() > 0 && std::isfinite(c.norm_eps) && c.norm_eps > 0);
}

void check(const ssm::Mamba2Config& c) {
  require(size_ok(c.d_model) && size_ok(c.n_layer) && size_ok(c.d_state) && size_ok(c.d_conv) &&
          size_ok(c.d_inner) && size_ok(c.headdim) && size_ok(c.nheads) && size_ok(c.ngroups) &&
          size_ok(c.chunk_size) && c.vocab_size > 0);
  require(c.nheads % c.ngroups == 0 && c.conv_dim() > 0 && c.in_proj_size() > 0);
  require(c.dt_min_limit <= c.dt_max_limit && std::isfinite(c.norm_eps) && c.norm_eps > 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text =
      ssm::io::detail::encode_python_floats(std::string(reinterpret_cast<const char*>(data), size));
  std::optional<nlohmann::json> j;
  try {
    j = ssm::io::detail::parse_json_bounded(text.data(), text.data() + text.size());
  } catch (const nlohmann::json::exception&) {
    return 0;  // read_json's "not valid JSON"
  }
  if (!j) return 0;  // read_json's "nests deeper than"
  std::optional<ssm::ModelType> type;
  try {
    type = ssm::detect_model_type(*j, "config.json");
  } catch (const std::runtime_error&) {
  }
  try {
    const auto c = ssm::MambaConfig::from_json(*j, "config.json");
    require(type == ssm::ModelType::mamba);
    check(c);
  } catch (const std::runtime_error&) {
  }
  try {
    const auto c = ssm::Mamba2Config::from_json(*j, "config.json");
    require(type == ssm::ModelType::mamba2);
    check(c);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
