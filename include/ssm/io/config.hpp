// Mamba and Mamba-2 model configurations, read from a checkpoint's config.json
// in either of the two layouts published on the Hugging Face hub:
//
// - transformers (MambaConfig / Mamba2Config, `model_type` "mamba" / "mamba2"):
//   hidden_size, num_hidden_layers, state_size, conv_kernel, expand, ...
// - state-spaces/mamba (mamba_ssm.models.config_mamba.MambaConfig): d_model,
//   n_layer, vocab_size, and the mixer's arguments in "ssm_cfg" ("layer":
//   "Mamba1" (default) or "Mamba2").
//
// Missing keys take the defaults of the library that wrote the file (they
// differ: transformers' Mamba-1 has projection biases by default, mamba_ssm's
// has not), except the width, depth and vocabulary, which are required.
// Sizes are named as in mamba_ssm. Errors are std::runtime_error
// "ssm::MambaConfig: <source>: '<key>': <what>" (source: the file, for the message).
#pragma once

#include <ssm/io/json.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

namespace ssm {

/// Which architecture a config describes.
enum class ModelType {
  mamba,   ///< Mamba-1: MambaConfig, MambaLM
  mamba2,  ///< Mamba-2: Mamba2Config, Mamba2LM
};

/// Mamba (Gu & Dao 2023): selective SSM blocks with diagonal A (d_inner x d_state).
/// Tensor shapes per layer (PyTorch layout): in_proj [2 d_inner, d_model],
/// conv1d [d_inner, 1, d_conv], x_proj [dt_rank + 2 d_state, d_inner],
/// dt_proj [d_inner, dt_rank], A_log [d_inner, d_state], D [d_inner],
/// out_proj [d_model, d_inner]; embedding [vocab_size, d_model].
struct MambaConfig {
  std::int64_t d_model = 0;     ///< hidden_size / d_model: D
  std::int64_t n_layer = 0;     ///< num_hidden_layers / n_layer
  std::int64_t vocab_size = 0;  ///< embedding rows (state-spaces: vocab_size padded up to a
                                ///< multiple of pad_vocab_size_multiple, default 8)
  std::int64_t d_state = 16;    ///< state_size / d_state: N
  std::int64_t d_conv = 4;      ///< conv_kernel / d_conv: causal depthwise kernel width
  std::int64_t d_inner = 0;     ///< intermediate_size, else int(expand * d_model): E D
  std::int64_t dt_rank = 0;     ///< time_step_rank / dt_rank; "auto" = ceil(d_model / 16)
  bool bias = false;            ///< use_bias / bias: in_proj and out_proj have biases
  bool conv_bias = true;        ///< use_conv_bias / conv_bias
  bool rms_norm = true;         ///< block norms are RMSNorm (else LayerNorm with bias)
  double norm_eps = 1e-5;       ///< layer_norm_epsilon (state-spaces: fixed 1e-5)
  bool residual_in_fp32 = true;  ///< read, no effect: every activation here is float32
  bool tie_embeddings = true;   ///< tie_word_embeddings / tie_embeddings: lm_head = embedding

  /// Rows of x_proj.weight: [dt | B | C].
  std::int64_t x_proj_size() const { return dt_rank + 2 * d_state; }

  /// Throws std::invalid_argument (prefixed by `where`) unless every size
  /// is positive and norm_eps > 0: what a model built from this config
  /// (e.g. MambaLM::random) relies on. from_json's configs pass.
  void check(const std::string& where) const;

  /// Reads a config.json of either layout; `source` names it in errors.
  /// Throws std::runtime_error for a missing required key (width, depth,
  /// vocabulary), a value of the wrong type or range (sizes: integers in
  /// [1, 2^30]), a config of another model (Mamba-2 included), or
  /// state-spaces MLP or attention layers.
  static MambaConfig from_json(const nlohmann::json& config, const std::string& source);
};

/// Mamba-2 (Dao & Gu 2024): SSD blocks with a scalar A per head. Tensor
/// shapes per layer: in_proj [2 d_inner + 2 ngroups d_state + nheads, d_model]
/// ([z | x | B | C | dt]), conv1d [conv_dim(), 1, d_conv], dt_bias, A_log,
/// D [nheads], norm [d_inner], out_proj [d_model, d_inner].
struct Mamba2Config {
  std::int64_t d_model = 0;     ///< hidden_size / d_model
  std::int64_t n_layer = 0;     ///< num_hidden_layers / n_layer
  std::int64_t vocab_size = 0;  ///< embedding rows (state-spaces: padded up)
  std::int64_t d_state = 128;   ///< state_size / d_state: N
  std::int64_t d_conv = 4;      ///< conv_kernel / d_conv
  std::int64_t d_inner = 0;     ///< int(expand * d_model) = nheads * headdim
  std::int64_t headdim = 64;    ///< head_dim / headdim: P
  std::int64_t nheads = 0;      ///< num_heads; state-spaces: d_inner / headdim
  std::int64_t ngroups = 1;     ///< n_groups / ngroups: heads in a group share B, C
  std::int64_t chunk_size = 256;  ///< SSD chunk length (no effect on the result)
  double dt_min_limit = 0;      ///< time_step_limit / dt_limit: dt is clamped
  double dt_max_limit = std::numeric_limits<double>::infinity();  ///< to [min, max]
  bool bias = false;            ///< use_bias / bias: in_proj and out_proj biases
  bool conv_bias = true;        ///< use_conv_bias / conv_bias
  bool gated_norm = true;       ///< y = RMSNorm_groups(y * silu(z)) before out_proj
                                ///< (state-spaces rmsnorm; transformers: always)
  bool norm_before_gate = false;  ///< RMSNorm(y) * silu(z) instead (state-spaces only)
  bool rms_norm = true;         ///< block norms are RMSNorm (else LayerNorm)
  double norm_eps = 1e-5;       ///< layer_norm_epsilon (state-spaces: 1e-5)
  bool residual_in_fp32 = true;  ///< read, no effect: every activation here is float32
  bool tie_embeddings = false;  ///< transformers' default; state-spaces' is true

  /// Channels of the causal convolution: [x | B | C].
  std::int64_t conv_dim() const { return d_inner + 2 * ngroups * d_state; }
  /// Rows of in_proj.weight: [z | x | B | C | dt].
  std::int64_t in_proj_size() const { return 2 * d_inner + 2 * ngroups * d_state + nheads; }

  /// Reads a config.json of either layout; `source` names it in errors.
  /// Throws std::runtime_error as MambaConfig::from_json, and also if
  /// nheads * headdim != d_inner, the heads do not split into ngroups, the
  /// dt limit is not [min, max] with min <= max, or D_has_hdim / a d_ssm
  /// narrower than d_inner asks for what is not implemented. (It does not
  /// check dt_min_limit >= 0: see check().)
  static Mamba2Config from_json(const nlohmann::json& config, const std::string& source);

  /// Throws std::invalid_argument (prefixed by `where`) unless the sizes are
  /// positive, nheads * headdim == d_inner, the heads split into ngroups,
  /// 0 <= dt_min_limit <= dt_max_limit and norm_eps > 0: what a model built
  /// from this config (e.g. Mamba2LM::random) relies on.
  void check(const std::string& where) const;
};

namespace io::detail {

/// Typed, validated access to one JSON object of a config; `prefix` is the
/// path of the object ("ssm_cfg.") in messages.
class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& j, std::string where, std::string source,
               std::string prefix = "")
      : j_(j), where_(std::move(where)), source_(std::move(source)),
        prefix_(std::move(prefix)) {
    if (!j_.is_object()) fail_whole("not a JSON object");
  }

  bool has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }
  const nlohmann::json& at(const char* key) const { return j_[key]; }

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw std::runtime_error(where_ + ": " + source_ + ": '" + prefix_ + key + "': " + what);
  }
  [[noreturn]] void fail_whole(const std::string& what) const {
    throw std::runtime_error(where_ + ": " + source_ + ": " + what);
  }

  /// Bound on every size, so that derived sizes (in_proj_size, products of
  /// sizes) cannot overflow int64.
  static constexpr std::int64_t max_size = std::int64_t(1) << 30;

  /// A positive integer (sizes); `required` keys throw when missing.
  std::int64_t size(const char* key, std::int64_t fallback, bool required = false) const {
    if (!has(key)) {
      if (required) fail(key, "missing");
      return fallback;
    }
    const auto& v = j_[key];
    // (an unsigned value past INT64_MAX reads as negative here)
    if (!v.is_number_integer() || v.get<std::int64_t>() <= 0 || v.get<std::int64_t>() > max_size)
      fail(key, "must be a positive integer up to 2^30, got " + v.dump());
    return v.get<std::int64_t>();
  }
  std::int64_t required_size(const char* key) const { return size(key, 0, true); }

  bool flag(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_boolean()) fail(key, "must be true or false, got " + j_[key].dump());
    return j_[key].get<bool>();
  }

  /// A finite number > 0 (epsilons, expand factors).
  double positive(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    const auto v = io::json_float(j_[key]);
    if (!v || !(*v > 0) || !std::isfinite(*v))
      fail(key, "must be a finite number > 0, got " + j_[key].dump());
    return *v;
  }

  /// int(expand * d_model), as both libraries compute the inner width.
  std::int64_t inner(const char* expand_key, std::int64_t d_model) const {
    const double expand = positive(expand_key, 2);
    const double d = std::floor(expand * double(d_model));
    if (!(d >= 1) || d > double(max_size))
      fail(expand_key, "expand * d_model = " + std::to_string(d) + " is not a valid width");
    return std::int64_t(d);
  }

  /// An integer rank or "auto" (= ceil(d_model / 16)).
  std::int64_t rank(const char* key, std::int64_t d_model) const {
    if (has(key) && j_[key].is_string()) {
      if (j_[key].get<std::string>() != "auto")
        fail(key, "must be a positive integer or \"auto\", got " + j_[key].dump());
      return (d_model + 15) / 16;
    }
    return size(key, (d_model + 15) / 16);
  }

  /// A [min, max] pair of floats (JSON numbers or {"__float__": ...}).
  std::pair<double, double> range(const char* key, std::pair<double, double> fallback) const {
    if (!has(key)) return fallback;
    const auto& v = j_[key];
    const auto lo = v.is_array() && v.size() == 2 ? io::json_float(v[0]) : std::nullopt;
    const auto hi = v.is_array() && v.size() == 2 ? io::json_float(v[1]) : std::nullopt;
    if (!lo || !hi || std::isnan(*lo) || std::isnan(*hi) || *lo > *hi)
      fail(key, "must be [min, max] with min <= max, got " + v.dump());
    return {*lo, *hi};
  }

  /// vocab_size rounded up to a multiple of pad_vocab_size_multiple, as
  /// MambaLMHeadModel sizes its embedding.
  std::int64_t padded_vocab() const {
    const std::int64_t v = required_size("vocab_size");
    const std::int64_t m = size("pad_vocab_size_multiple", 8);
    return (v + m - 1) / m * m;
  }

  /// Rejects mamba_ssm features the Mamba models here do not implement.
  void reject_hybrid() const {
    if (has("d_intermediate") && !(j_["d_intermediate"].is_number_integer() &&
                                   j_["d_intermediate"].get<std::int64_t>() == 0))
      fail("d_intermediate", "MLP blocks are not supported, got " + j_["d_intermediate"].dump());
    if (has("attn_layer_idx") && !(j_["attn_layer_idx"].is_array() && j_["attn_layer_idx"].empty()))
      fail("attn_layer_idx", "attention layers are not supported, got " + j_["attn_layer_idx"].dump());
  }

  /// The "ssm_cfg" sub-object ({} if absent), and its "layer" ("Mamba1" if absent).
  ConfigReader ssm_cfg() const {
    if (has("ssm_cfg") && !j_["ssm_cfg"].is_object())
      fail("ssm_cfg", "must be an object, got " + j_["ssm_cfg"].dump());
    return ConfigReader(has("ssm_cfg") ? j_["ssm_cfg"] : empty(), where_, source_, "ssm_cfg.");
  }
  std::string layer() const {
    if (!has("layer")) return "Mamba1";
    if (!j_["layer"].is_string()) fail("layer", "must be a string, got " + j_["layer"].dump());
    return j_["layer"].get<std::string>();
  }

 private:
  static const nlohmann::json& empty() {
    static const nlohmann::json e = nlohmann::json::object();
    return e;
  }
  const nlohmann::json& j_;
  std::string where_, source_, prefix_;
};

inline ModelType detect_model_type(const nlohmann::json& config, const std::string& source,
                                   const std::string& where) {
  const ConfigReader r(config, where, source);
  if (r.has("model_type")) {
    const auto& t = r.at("model_type");
    if (t == "mamba") return ModelType::mamba;
    if (t == "mamba2") return ModelType::mamba2;
    r.fail("model_type", "not a Mamba model: " + t.dump());
  }
  if (r.has("architectures") && r.at("architectures").is_array())
    for (const auto& a : r.at("architectures")) {
      const std::string s = a.is_string() ? a.get<std::string>() : "";
      if (s.rfind("Mamba2", 0) == 0) return ModelType::mamba2;
      if (s.rfind("Mamba", 0) == 0) return ModelType::mamba;
    }
  if (r.has("d_model")) {
    const std::string layer = r.ssm_cfg().layer();
    if (layer == "Mamba1") return ModelType::mamba;
    if (layer == "Mamba2") return ModelType::mamba2;
    r.fail("ssm_cfg.layer", "unsupported layer \"" + layer + "\"");
  }
  r.fail_whole("no model_type, architectures or ssm_cfg says which model this is");
}

// Throws std::invalid_argument "where: name must be > 0, got v" for the
// first size that is not positive (the configs' check()).
inline void check_positive_sizes(const std::string& where,
                                 std::initializer_list<std::pair<const char*, std::int64_t>> sizes) {
  for (const auto& [name, value] : sizes)
    if (value <= 0)
      throw std::invalid_argument(where + ": " + name + " must be > 0, got " + std::to_string(value));
}

}  // namespace io::detail

/// The architecture of a config: from `model_type` ("mamba" / "mamba2"), else
/// `architectures` (MambaForCausalLM, Mamba2ForCausalLM, ...), else the
/// state-spaces "ssm_cfg"."layer". Throws std::runtime_error if config is not
/// an object, names another model_type or layer, or none of these says.
inline ModelType detect_model_type(const nlohmann::json& config, const std::string& source) {
  return io::detail::detect_model_type(config, source, "ssm::detect_model_type");
}

inline MambaConfig MambaConfig::from_json(const nlohmann::json& config,
                                          const std::string& source) {
  const io::detail::ConfigReader r(config, "ssm::MambaConfig", source);
  if (io::detail::detect_model_type(config, source, "ssm::MambaConfig") != ModelType::mamba)
    r.fail_whole("describes a Mamba-2 model, not Mamba");
  MambaConfig c;
  if (r.has("d_model")) {  // state-spaces: MambaConfig + Mamba(**ssm_cfg)
    r.reject_hybrid();
    const auto s = r.ssm_cfg();
    c.d_model = r.required_size("d_model");
    c.n_layer = r.required_size("n_layer");
    c.vocab_size = r.padded_vocab();
    c.d_state = s.size("d_state", 16);
    c.d_conv = s.size("d_conv", 4);
    c.d_inner = s.inner("expand", c.d_model);
    c.dt_rank = s.rank("dt_rank", c.d_model);
    c.bias = s.flag("bias", false);
    c.conv_bias = s.flag("conv_bias", true);
    c.rms_norm = r.flag("rms_norm", true);
    c.norm_eps = 1e-5;  // create_block's norm_epsilon; not in the config
    c.residual_in_fp32 = r.flag("residual_in_fp32", true);
    c.tie_embeddings = r.flag("tie_embeddings", true);
  } else {  // transformers MambaConfig; its blocks always use RMSNorm
    c.d_model = r.required_size("hidden_size");
    c.n_layer = r.required_size("num_hidden_layers");
    c.vocab_size = r.required_size("vocab_size");
    c.d_state = r.size("state_size", 16);
    c.d_conv = r.size("conv_kernel", 4);
    c.d_inner = r.has("intermediate_size") ? r.required_size("intermediate_size")
                                           : r.inner("expand", c.d_model);
    c.dt_rank = r.rank("time_step_rank", c.d_model);
    c.bias = r.flag("use_bias", true);
    c.conv_bias = r.flag("use_conv_bias", true);
    c.rms_norm = true;
    c.norm_eps = r.positive("layer_norm_epsilon", 1e-5);
    c.residual_in_fp32 = r.flag("residual_in_fp32", true);
    c.tie_embeddings = r.flag("tie_word_embeddings", true);
  }
  return c;
}

inline Mamba2Config Mamba2Config::from_json(const nlohmann::json& config,
                                            const std::string& source) {
  const io::detail::ConfigReader r(config, "ssm::Mamba2Config", source);
  if (io::detail::detect_model_type(config, source, "ssm::Mamba2Config") != ModelType::mamba2)
    r.fail_whole("describes a Mamba-1 model, not Mamba-2");
  Mamba2Config c;
  const char* groups_key;
  if (r.has("d_model")) {  // state-spaces: MambaConfig + Mamba2(**ssm_cfg)
    r.reject_hybrid();
    const auto s = r.ssm_cfg();
    c.d_model = r.required_size("d_model");
    c.n_layer = r.required_size("n_layer");
    c.vocab_size = r.padded_vocab();
    c.d_state = s.size("d_state", 128);
    c.d_conv = s.size("d_conv", 4);
    c.d_inner = s.inner("expand", c.d_model);
    c.headdim = s.size("headdim", 64);
    if (c.d_inner % c.headdim != 0)
      s.fail("headdim", std::to_string(c.headdim) + " does not divide d_inner = " +
                            std::to_string(c.d_inner));
    c.nheads = c.d_inner / c.headdim;
    c.ngroups = s.size("ngroups", 1);
    c.chunk_size = s.size("chunk_size", 256);
    std::tie(c.dt_min_limit, c.dt_max_limit) =
        s.range("dt_limit", {0.0, std::numeric_limits<double>::infinity()});
    c.bias = s.flag("bias", false);
    c.conv_bias = s.flag("conv_bias", true);
    c.gated_norm = s.flag("rmsnorm", true);
    c.norm_before_gate = s.flag("norm_before_gate", false);
    if (s.flag("D_has_hdim", false)) s.fail("D_has_hdim", "a D per channel is not supported");
    if (s.has("d_ssm") && !(s.at("d_ssm").is_number_integer() &&
                            s.at("d_ssm").get<std::int64_t>() == c.d_inner))
      s.fail("d_ssm", "an SSM narrower than d_inner is not supported, got " + s.at("d_ssm").dump());
    c.rms_norm = r.flag("rms_norm", true);
    c.norm_eps = 1e-5;
    c.residual_in_fp32 = r.flag("residual_in_fp32", true);
    c.tie_embeddings = r.flag("tie_embeddings", true);
    groups_key = "ssm_cfg.ngroups";
  } else {  // transformers Mamba2Config
    c.d_model = r.required_size("hidden_size");
    c.n_layer = r.required_size("num_hidden_layers");
    c.vocab_size = r.required_size("vocab_size");
    c.d_state = r.size("state_size", 128);
    c.d_conv = r.size("conv_kernel", 4);
    c.d_inner = r.inner("expand", c.d_model);
    c.nheads = r.size("num_heads", 128);
    c.headdim = r.size("head_dim", 64);
    c.ngroups = r.size("n_groups", 8);
    c.chunk_size = r.size("chunk_size", 256);
    std::tie(c.dt_min_limit, c.dt_max_limit) =
        r.range("time_step_limit", {0.0, std::numeric_limits<double>::infinity()});
    c.bias = r.flag("use_bias", false);
    c.conv_bias = r.flag("use_conv_bias", true);
    // transformers' Mamba2Mixer always applies the gated RMSNorm, gate first,
    // whatever rms_norm / norm_before_gate say; follow the model, not the keys.
    c.gated_norm = true;
    c.norm_before_gate = false;
    c.rms_norm = true;
    c.norm_eps = r.positive("layer_norm_epsilon", 1e-5);
    c.residual_in_fp32 = r.flag("residual_in_fp32", true);
    c.tie_embeddings = r.flag("tie_word_embeddings", false);
    groups_key = "n_groups";
    if (c.nheads * c.headdim != c.d_inner)
      r.fail("num_heads", "num_heads * head_dim = " + std::to_string(c.nheads) + " * " +
                              std::to_string(c.headdim) + " must equal expand * hidden_size = " +
                              std::to_string(c.d_inner));
  }
  if (c.nheads % c.ngroups != 0)
    r.fail(groups_key, std::to_string(c.nheads) + " heads do not split into " +
                          std::to_string(c.ngroups) + " groups");
  return c;
}

inline void MambaConfig::check(const std::string& where) const {
  io::detail::check_positive_sizes(where, {{"d_model", d_model}, {"n_layer", n_layer}, {"vocab_size", vocab_size},
                                           {"d_state", d_state}, {"d_conv", d_conv}, {"d_inner", d_inner},
                                           {"dt_rank", dt_rank}});
  if (!(norm_eps > 0))
    throw std::invalid_argument(where + ": norm_eps must be > 0, got " + std::to_string(norm_eps));
}

inline void Mamba2Config::check(const std::string& where) const {
  auto fail = [&](const std::string& what) { throw std::invalid_argument(where + ": " + what); };
  io::detail::check_positive_sizes(where, {{"d_model", d_model}, {"n_layer", n_layer}, {"vocab_size", vocab_size},
                                           {"d_state", d_state}, {"d_conv", d_conv}, {"headdim", headdim},
                                           {"nheads", nheads}, {"ngroups", ngroups}, {"chunk_size", chunk_size}});
  if (nheads * headdim != d_inner)
    fail("nheads * headdim = " + std::to_string(nheads) + " * " + std::to_string(headdim) +
         " must equal d_inner = " + std::to_string(d_inner));
  if (nheads % ngroups != 0)
    fail(std::to_string(nheads) + " heads do not split into " + std::to_string(ngroups) + " groups");
  if (!(dt_min_limit >= 0 && dt_min_limit <= dt_max_limit))
    fail("the dt limits must satisfy 0 <= dt_min_limit <= dt_max_limit, got [" +
         std::to_string(dt_min_limit) + ", " + std::to_string(dt_max_limit) + "]");
  if (!(norm_eps > 0)) fail("norm_eps must be > 0, got " + std::to_string(norm_eps));
}

}  // namespace ssm
