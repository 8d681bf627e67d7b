// ssm/io/config.hpp and ssm/io/json.hpp: Mamba / Mamba-2 configs in the
// transformers and state-spaces layouts. Oracles: the defaults and formulas
// of transformers' configuration_mamba{,2}.py and mamba_ssm's
// config_mamba.py / Mamba / Mamba2 modules (read, not run), worked out by
// hand below; the published configs of state-spaces/mamba-130m and
// state-spaces/mamba2-130m. The reference checkpoints' configs are tested
// with their tensors in test_io.cpp.
#include <ssm/io/config.hpp>
#include <ssm/io/json.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>

namespace {

using json = nlohmann::json;
using Catch::Matchers::Contains;
using Catch::Matchers::Message;

const double inf = std::numeric_limits<double>::infinity();

ssm::MambaConfig mamba(const json& j) { return ssm::MambaConfig::from_json(j, "cfg"); }
ssm::Mamba2Config mamba2(const json& j) { return ssm::Mamba2Config::from_json(j, "cfg"); }

// The smallest transformers configs: the keys without defaults.
json hf_mamba() {
  return {{"model_type", "mamba"}, {"hidden_size", 40}, {"num_hidden_layers", 3},
          {"vocab_size", 100}};
}
json hf_mamba2() {
  return {{"model_type", "mamba2"}, {"hidden_size", 64}, {"num_hidden_layers", 2},
          {"vocab_size", 100}, {"num_heads", 8}, {"head_dim", 16}, {"n_groups", 2}};
}

}  // namespace

TEST_CASE("transformers Mamba configs: keys and defaults", "[io][config]") {
  SECTION("defaults of transformers.MambaConfig") {
    const auto c = mamba(hf_mamba());
    CHECK(c.d_model == 40);
    CHECK(c.n_layer == 3);
    CHECK(c.vocab_size == 100);  // transformers does not pad
    CHECK(c.d_state == 16);
    CHECK(c.d_conv == 4);
    CHECK(c.d_inner == 80);  // expand 2
    CHECK(c.dt_rank == 3);   // "auto": ceil(40 / 16)
    CHECK(c.bias);           // use_bias defaults to True in transformers
    CHECK(c.conv_bias);
    CHECK(c.rms_norm);
    CHECK(c.norm_eps == 1e-5);
    CHECK(c.tie_embeddings);
    CHECK(c.residual_in_fp32);
    CHECK(c.x_proj_size() == 3 + 32);
  }
  SECTION("intermediate_size wins over expand; explicit values") {
    json j = hf_mamba();
    j.update({{"expand", 3}, {"intermediate_size", 100}, {"state_size", 8},
              {"conv_kernel", 2}, {"time_step_rank", 7}, {"use_bias", false},
              {"use_conv_bias", false}, {"layer_norm_epsilon", 1e-6},
              {"tie_word_embeddings", false}, {"residual_in_fp32", false}});
    auto c = mamba(j);
    CHECK(c.d_inner == 100);
    CHECK(c.d_state == 8);
    CHECK(c.d_conv == 2);
    CHECK(c.dt_rank == 7);
    CHECK(!c.bias);
    CHECK(!c.conv_bias);
    CHECK(c.norm_eps == 1e-6);
    CHECK(!c.tie_embeddings);
    CHECK(!c.residual_in_fp32);
    j.erase("intermediate_size");
    CHECK(mamba(j).d_inner == 120);
    j["expand"] = 1.5;  // int(expand * hidden_size)
    CHECK(mamba(j).d_inner == 60);
    j["time_step_rank"] = "auto";
    j["hidden_size"] = 48;
    CHECK(mamba(j).dt_rank == 3);
  }
  SECTION("model type from architectures when model_type is absent") {
    json j = hf_mamba();
    j.erase("model_type");
    j["architectures"] = {"MambaForCausalLM"};
    CHECK(ssm::detect_model_type(j, "cfg") == ssm::ModelType::mamba);
    j["architectures"] = {"Mamba2ForCausalLM"};
    CHECK(ssm::detect_model_type(j, "cfg") == ssm::ModelType::mamba2);
  }
}

TEST_CASE("transformers Mamba-2 configs: keys, defaults, consistency", "[io][config]") {
  SECTION("defaults of transformers.Mamba2Config") {
    const auto c = mamba2(hf_mamba2());
    CHECK(c.d_inner == 128);
    CHECK(c.nheads == 8);
    CHECK(c.headdim == 16);
    CHECK(c.ngroups == 2);
    CHECK(c.d_state == 128);
    CHECK(c.d_conv == 4);
    CHECK(c.chunk_size == 256);
    CHECK(c.dt_min_limit == 0.0);
    CHECK(c.dt_max_limit == inf);
    CHECK(!c.bias);
    CHECK(c.conv_bias);
    CHECK(c.gated_norm);
    CHECK(!c.norm_before_gate);
    CHECK(!c.tie_embeddings);  // Mamba2Config's default, unlike Mamba's
    CHECK(c.conv_dim() == 128 + 2 * 2 * 128);
    CHECK(c.in_proj_size() == 2 * 128 + 2 * 2 * 128 + 8);
  }
  SECTION("time_step_limit: numbers or transformers' {\"__float__\": ...}") {
    json j = hf_mamba2();
    j["time_step_limit"] = {0.001, 0.1};
    auto c = mamba2(j);
    CHECK(c.dt_min_limit == 0.001);
    CHECK(c.dt_max_limit == 0.1);
    j["time_step_limit"] = json::parse(R"([{"__float__": "-Infinity"}, {"__float__": "Infinity"}])");
    c = mamba2(j);
    CHECK(c.dt_min_limit == -inf);
    CHECK(c.dt_max_limit == inf);
  }
  SECTION("num_heads * head_dim must be the inner width; heads split into groups") {
    json j = hf_mamba2();
    j["num_heads"] = 4;
    REQUIRE_THROWS_MATCHES(mamba2(j), std::runtime_error,
                           Message("ssm::Mamba2Config: cfg: 'num_heads': num_heads * head_dim = "
                                   "4 * 16 must equal expand * hidden_size = 128"));
    j = hf_mamba2();
    j["n_groups"] = 3;
    REQUIRE_THROWS_MATCHES(mamba2(j), std::runtime_error,
                           Message("ssm::Mamba2Config: cfg: 'n_groups': 8 heads do not split into 3 groups"));
  }
}

TEST_CASE("state-spaces configs (mamba_ssm MambaConfig + ssm_cfg)", "[io][config]") {
  SECTION("state-spaces/mamba-130m") {
    const json j = json::parse(R"({"d_model": 768, "n_layer": 24, "vocab_size": 50277,
        "ssm_cfg": {}, "rms_norm": true, "residual_in_fp32": true, "fused_add_norm": true,
        "pad_vocab_size_multiple": 8})");
    CHECK(ssm::detect_model_type(j, "cfg") == ssm::ModelType::mamba);
    const auto c = mamba(j);
    CHECK(c.d_model == 768);
    CHECK(c.n_layer == 24);
    CHECK(c.vocab_size == 50280);  // rounded up to a multiple of 8
    CHECK(c.d_inner == 1536);
    CHECK(c.d_state == 16);
    CHECK(c.d_conv == 4);
    CHECK(c.dt_rank == 48);  // ceil(768 / 16)
    CHECK(!c.bias);          // Mamba(bias=False)
    CHECK(c.conv_bias);
    CHECK(c.tie_embeddings);
    CHECK(c.norm_eps == 1e-5);
  }
  SECTION("ssm_cfg values") {
    const json j = json::parse(R"({"d_model": 100, "n_layer": 1, "vocab_size": 16,
        "ssm_cfg": {"d_state": 8, "d_conv": 3, "expand": 3, "dt_rank": 5, "bias": true,
                    "conv_bias": false}, "rms_norm": false, "tie_embeddings": false})");
    const auto c = mamba(j);
    CHECK(c.vocab_size == 16);  // already a multiple of 8
    CHECK(c.d_state == 8);
    CHECK(c.d_conv == 3);
    CHECK(c.d_inner == 300);
    CHECK(c.dt_rank == 5);
    CHECK(c.bias);
    CHECK(!c.conv_bias);
    CHECK(!c.rms_norm);
    CHECK(!c.tie_embeddings);
  }
  SECTION("state-spaces/mamba2-130m") {
    const json j = json::parse(R"({"d_model": 768, "d_intermediate": 0, "n_layer": 24,
        "vocab_size": 50277, "ssm_cfg": {"layer": "Mamba2"}, "attn_layer_idx": [],
        "attn_cfg": {}, "rms_norm": true, "residual_in_fp32": true, "fused_add_norm": true,
        "pad_vocab_size_multiple": 16, "tie_embeddings": true})");
    CHECK(ssm::detect_model_type(j, "cfg") == ssm::ModelType::mamba2);
    const auto c = mamba2(j);
    CHECK(c.vocab_size == 50288);
    CHECK(c.d_inner == 1536);
    CHECK(c.headdim == 64);
    CHECK(c.nheads == 24);  // d_inner / headdim
    CHECK(c.ngroups == 1);
    CHECK(c.d_state == 128);
    CHECK(c.chunk_size == 256);
    CHECK(c.dt_max_limit == inf);
    CHECK(c.gated_norm);
    CHECK(!c.norm_before_gate);
    CHECK(c.tie_embeddings);
  }
  SECTION("Mamba2 ssm_cfg values and unsupported variants") {
    json j = json::parse(R"({"d_model": 64, "n_layer": 1, "vocab_size": 10,
        "ssm_cfg": {"layer": "Mamba2", "headdim": 32, "ngroups": 2, "d_state": 16,
                    "dt_limit": [0.0, 0.5], "rmsnorm": false, "norm_before_gate": true,
                    "d_ssm": 128}})");
    const auto c = mamba2(j);
    CHECK(c.nheads == 4);
    CHECK(c.dt_max_limit == 0.5);
    CHECK(!c.gated_norm);
    CHECK(c.norm_before_gate);
    CHECK(c.vocab_size == 16);
    j["ssm_cfg"]["d_ssm"] = 64;
    REQUIRE_THROWS_MATCHES(mamba2(j), std::runtime_error,
                           Message("ssm::Mamba2Config: cfg: 'ssm_cfg.d_ssm': an SSM narrower "
                                   "than d_inner is not supported, got 64"));
    j["ssm_cfg"].erase("d_ssm");
    j["ssm_cfg"]["D_has_hdim"] = true;
    REQUIRE_THROWS_MATCHES(mamba2(j), std::runtime_error,
                           Message("ssm::Mamba2Config: cfg: 'ssm_cfg.D_has_hdim': a D per channel "
                                   "is not supported"));
    j["ssm_cfg"].erase("D_has_hdim");
    j["ssm_cfg"]["headdim"] = 48;
    REQUIRE_THROWS_MATCHES(mamba2(j), std::runtime_error,
                           Message("ssm::Mamba2Config: cfg: 'ssm_cfg.headdim': 48 does not divide "
                                   "d_inner = 128"));
    j["ssm_cfg"]["headdim"] = 32;
    j["ssm_cfg"]["ngroups"] = 3;
    REQUIRE_THROWS_MATCHES(mamba2(j), std::runtime_error,
                           Message("ssm::Mamba2Config: cfg: 'ssm_cfg.ngroups': 4 heads do not "
                                   "split into 3 groups"));
    j["ssm_cfg"]["ngroups"] = 1;
    j["d_intermediate"] = 256;
    REQUIRE_THROWS_MATCHES(mamba2(j), std::runtime_error,
                           Message("ssm::Mamba2Config: cfg: 'd_intermediate': MLP blocks are not "
                                   "supported, got 256"));
    j["d_intermediate"] = 0;
    j["attn_layer_idx"] = {1};
    REQUIRE_THROWS_MATCHES(mamba2(j), std::runtime_error,
                           Message("ssm::Mamba2Config: cfg: 'attn_layer_idx': attention layers "
                                   "are not supported, got [1]"));
  }
}

TEST_CASE("broken config values name the file and the key", "[io][config]") {
  const std::string where = "ssm::MambaConfig: cfg: ";
  auto with = [](const char* key, const json& value) {
    json j = hf_mamba();
    j[key] = value;
    return j;
  };
  for (const json& bad : {json(0), json(-3), json("64"), json(2.5), json(2147483648LL)})
    REQUIRE_THROWS_MATCHES(mamba(with("hidden_size", bad)), std::runtime_error,
                           Message(where + "'hidden_size': must be a positive integer up to 2^30, got " +
                                   bad.dump()));
  json j = hf_mamba();
  j.erase("num_hidden_layers");
  REQUIRE_THROWS_MATCHES(mamba(j), std::runtime_error, Message(where + "'num_hidden_layers': missing"));
  REQUIRE_THROWS_MATCHES(mamba(with("time_step_rank", "big")), std::runtime_error,
                         Message(where + "'time_step_rank': must be a positive integer or \"auto\", "
                                         "got \"big\""));
  REQUIRE_THROWS_MATCHES(mamba(with("use_bias", "yes")), std::runtime_error,
                         Message(where + "'use_bias': must be true or false, got \"yes\""));
  REQUIRE_THROWS_MATCHES(mamba(with("layer_norm_epsilon", -1e-5)), std::runtime_error,
                         Message(where + "'layer_norm_epsilon': must be a finite number > 0, got -1e-05"));
  REQUIRE_THROWS_WITH(mamba(with("expand", 0.01)), Contains(where + "'expand': expand * d_model = 0"));
  REQUIRE_THROWS_MATCHES(
      mamba2([] { json k = hf_mamba2(); k["time_step_limit"] = {1.0, 0.5}; return k; }()),
      std::runtime_error,
      Message("ssm::Mamba2Config: cfg: 'time_step_limit': must be [min, max] with min <= max, "
              "got [1.0,0.5]"));
  REQUIRE_THROWS_WITH(
      mamba2([] { json k = hf_mamba2(); k["time_step_limit"] = json::parse(R"([0, {"__float__": "Big"}])"); return k; }()),
      Contains("'time_step_limit': must be [min, max]"));
  REQUIRE_THROWS_MATCHES(mamba(json::parse(R"({"d_model": 8, "n_layer": 1, "vocab_size": 4, "ssm_cfg": 3})")),
                         std::runtime_error, Message(where + "'ssm_cfg': must be an object, got 3"));

  const std::string detect = "ssm::detect_model_type: cfg: ";
  REQUIRE_THROWS_MATCHES(mamba(with("model_type", "llama")), std::runtime_error,
                         Message(where + "'model_type': not a Mamba model: \"llama\""));
  REQUIRE_THROWS_MATCHES(ssm::detect_model_type(json::parse(R"({"hidden_size": 8})"), "cfg"),
                         std::runtime_error,
                         Message(detect + "no model_type, architectures or ssm_cfg says which model this is"));
  REQUIRE_THROWS_MATCHES(
      ssm::detect_model_type(json::parse(R"({"d_model": 8, "ssm_cfg": {"layer": "Mamba3"}})"), "cfg"),
      std::runtime_error, Message(detect + "'ssm_cfg.layer': unsupported layer \"Mamba3\""));
  REQUIRE_THROWS_MATCHES(ssm::detect_model_type(json::array(), "cfg"), std::runtime_error,
                         Message(detect + "not a JSON object"));
}

TEST_CASE("read_json accepts Python's NaN / Infinity, json_float both spellings",
          "[io][json]") {
  const auto path = (std::filesystem::temp_directory_path() /
                     ("ssm_test_io_config_" + std::to_string(std::random_device{}()) + ".json"))
                        .string();
  {
    std::ofstream out(path);
    out << R"({"a": [NaN, Infinity, -Infinity, 1.5], "s": "NaN \"Infinity\" \\", "t": [0.0, Infinity]})";
  }
  const json j = ssm::io::read_json(path);
  std::filesystem::remove(path);
  CHECK(std::isnan(*ssm::io::json_float(j["a"][0])));
  CHECK(*ssm::io::json_float(j["a"][1]) == inf);
  CHECK(*ssm::io::json_float(j["a"][2]) == -inf);
  CHECK(*ssm::io::json_float(j["a"][3]) == 1.5);
  CHECK(j["s"] == "NaN \"Infinity\" \\");  // strings untouched
  CHECK(std::isnan(*ssm::io::json_float(json::parse(R"({"__float__": "NaN"})"))));
  CHECK(!ssm::io::json_float(json::parse(R"({"__float__": "inf"})")));
  CHECK(!ssm::io::json_float(json("1.0")));
  const json t = {{"model_type", "mamba2"}, {"hidden_size", 64}, {"num_hidden_layers", 1},
                  {"vocab_size", 8}, {"num_heads", 8}, {"head_dim", 16}, {"n_groups", 1},
                  {"time_step_limit", j["t"]}};
  CHECK(mamba2(t).dt_max_limit == inf);

  REQUIRE_THROWS_MATCHES(ssm::io::read_json(path), std::runtime_error,
                         Message("ssm::io::read_json: " + path + ": cannot open"));
}
