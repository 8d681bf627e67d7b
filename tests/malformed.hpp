// Malformed checkpoints, made at test time from a valid checkpoint folder:
// the bad files that test_robustness.cpp feeds to the loaders and
// test_mamba_generate.cpp to the mamba_generate program. Each case says
// what its error message must contain: the file (or folder) and the tensor
// or key at fault, and what is wrong with it.
//
// The cases are data, so a model adds its own by describing its checkpoint
// (a Subject) and appending model-specific cases, as mamba1_cases() does
// for MambaLM; checkpoint_cases() are those of every Mamba-family model.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace test::malformed {

namespace fs = std::filesystem;
using json = nlohmann::json;

inline std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("malformed.hpp: cannot read " + p.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out.flush()) throw std::runtime_error("malformed.hpp: cannot write " + p.string());
}

// A safetensors file as its header (JSON) and its data area.
struct Safetensors {
  json header;
  std::string data;

  static Safetensors read(const fs::path& p) {
    const std::string bytes = malformed::read(p);
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(bytes.at(std::size_t(i)));
    return {json::parse(bytes.substr(8, n)), bytes.substr(8 + n)};
  }
  void write(const fs::path& p) const {
    const std::string text = header.dump();
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[std::size_t(i)] = char(text.size() >> (8 * i) & 0xff);
    malformed::write(p, bytes + text + data);
  }
};

// A fresh folder under the system's temporary directory, removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() /
           ("ssm_malformed_" + std::to_string(rd()) + "_" + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

using Edit = std::function<void(const fs::path& folder)>;

struct Case {
  std::string name;                  ///< what is wrong
  Edit corrupt;                      ///< applied to a copy of the subject's folder
  std::string file;                  ///< the file the message names; "" for the folder
  std::vector<std::string> phrases;  ///< what else the message contains
};

// A copy of `source` (its files, not subfolders) in `dest`, corrupted.
inline void make(const Case& c, const fs::path& source, const fs::path& dest) {
  fs::create_directories(dest);
  for (const auto& e : fs::directory_iterator(source))
    if (e.is_regular_file()) fs::copy_file(e.path(), dest / e.path().filename());
  c.corrupt(dest);
}

// Edits of a folder's config.json and model.safetensors.
inline Edit config(std::function<void(json&)> f) {
  return [f](const fs::path& d) {
    json j = json::parse(read(d / "config.json"));
    f(j);
    write(d / "config.json", j.dump(2));
  };
}
inline Edit config_text(std::string text) {
  return [text](const fs::path& d) { write(d / "config.json", text); };
}
inline Edit header(std::function<void(json&)> f) {
  return [f](const fs::path& d) {
    Safetensors s = Safetensors::read(d / "model.safetensors");
    f(s.header);
    s.write(d / "model.safetensors");
  };
}
inline Edit raw_bytes(std::function<void(std::string&)> f) {
  return [f](const fs::path& d) {
    std::string b = read(d / "model.safetensors");
    f(b);
    write(d / "model.safetensors", b);
  };
}
// Element `index` of the F32 tensor `name` set to `value`.
inline Edit set_f32(std::string name, std::size_t index, float value) {
  return [=](const fs::path& d) {
    Safetensors s = Safetensors::read(d / "model.safetensors");
    const auto begin = s.header.at(name).at("data_offsets").at(0).get<std::size_t>();
    std::memcpy(&s.data.at(begin + 4 * index), &value, 4);
    s.write(d / "model.safetensors");
  };
}
inline Edit remove(std::string file) {
  return [file](const fs::path& d) { fs::remove(d / file); };
}

inline std::string shape_text(const json& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i].get<std::int64_t>());
  return s + "]";
}

/// A valid checkpoint of one model, transformers layout, one F32
/// model.safetensors, and the tensors the cases corrupt.
struct Subject {
  std::string folder;
  std::string embedding;  ///< (vocab_size, hidden_size)
  std::string vector;     ///< a 1-D tensor of the last layer
  std::string a_log;      ///< loaded through exp()
};

/// Cases for every Mamba-family checkpoint: the file format, the folder,
/// the keys both transformers configs share, and the weights' values.
inline std::vector<Case> checkpoint_cases(const Subject& s) {
  const std::string st = "model.safetensors", cfg = "config.json";
  const Safetensors model = Safetensors::read(fs::path(s.folder) / st);
  const json settings = json::parse(read(fs::path(s.folder) / cfg));
  const json& emb = model.header.at(s.embedding);
  const auto vocab = emb["shape"][0].get<std::int64_t>(), width = emb["shape"][1].get<std::int64_t>();
  const auto layers = settings.at("num_hidden_layers").get<std::int64_t>();
  const json& vec = model.header.at(s.vector);
  const auto vec_begin = vec["data_offsets"][0].get<std::uint64_t>();
  const auto vec_end = vec["data_offsets"][1].get<std::uint64_t>();
  const std::uint64_t data_bytes = model.data.size();
  const std::string data_size = std::to_string(data_bytes);
  const std::string emb_name = s.embedding, vec_name = s.vector;  // copies for the lambdas
  const std::string emb_q = "'" + s.embedding + "'", vec_q = "'" + s.vector + "'";
  const std::string dims = "must be a positive integer up to 2^30, got ";
  auto length_field = [](std::uint64_t n) {
    return [n](std::string& b) {
      for (int i = 0; i < 8; ++i) b[std::size_t(i)] = char(n >> (8 * i) & 0xff);
    };
  };
  const std::string nested = std::string(100, '[') + std::string(100, ']');
  return {
      // the safetensors file
      {"truncated to 5 bytes", raw_bytes([](std::string& b) { b.resize(5); }), st,
       {"file is 5 bytes, shorter than the 8-byte header length"}},
      {"truncated inside the header", raw_bytes([](std::string& b) { b.resize(100); }), st,
       {"exceeds the 92 bytes after it"}},
      {"truncated inside the data", raw_bytes([](std::string& b) { b.resize(b.size() / 2); }), st,
       {"past the end of the data area"}},
      {"huge header length", raw_bytes(length_field(~std::uint64_t(0))), st,
       {"header length 18446744073709551615 exceeds the"}},
      {"header length over the cap (a sparse 100 MiB file)",
       [length_field](const fs::path& d) {
         const std::uint64_t n = (std::uint64_t(100) << 20) + 1;
         std::string b = read(d / "model.safetensors");
         length_field(n)(b);
         write(d / "model.safetensors", b);
         fs::resize_file(d / "model.safetensors", 8 + n);
       },
       st, {"header length 104857601 exceeds the limit of 104857600 bytes"}},
      {"header not JSON", raw_bytes([](std::string& b) { b[9] = '}'; }), st,
       {"header is not valid JSON ("}},
      {"header nested too deep",
       [nested](const fs::path& d) {
         std::string b(8, '\0');
         for (int i = 0; i < 8; ++i) b[std::size_t(i)] = char(nested.size() >> (8 * i) & 0xff);
         write(d / "model.safetensors", b + nested);
       },
       st, {"header nests deeper than 64 levels"}},
      {"offsets past the end",
       header([=](json& h) {
         h[emb_name]["data_offsets"] = {data_bytes, data_bytes + 4 * vocab * width};
       }),
       st, {emb_q + ": data_offsets [" + data_size, "past the end of the data area (" + data_size + " bytes)"}},
      {"unknown dtype", header([=](json& h) { h[emb_name]["dtype"] = "F8_E4M3"; }), st,
       {emb_q + ": unknown dtype 'F8_E4M3'"}},
      {"size not shape x dtype",
       header([=](json& h) { h[vec_name]["shape"][0] = h[vec_name]["shape"][0].get<int>() + 1; }), st,
       {vec_q + ": data_offsets [", "hold " + std::to_string(vec_end - vec_begin) + " bytes, but shape"}},
      {"overlapping tensors",
       header([=](json& h) { h[vec_name]["data_offsets"] = {vec_begin - 4, vec_end - 4}; }), st,
       {vec_q, "overlap in the data area"}},
      {"integer weights", header([=](json& h) { h[vec_name]["dtype"] = "I32"; }), st,
       {vec_q + ": dtype I32 cannot be read as float32"}},
      {"NaN in a weight", set_f32(s.vector, 3, std::numeric_limits<float>::quiet_NaN()), st,
       {vec_q + " has a non-finite value (nan at element 3)"}},
      {"infinity in a weight", set_f32(s.embedding, 5, -std::numeric_limits<float>::infinity()), st,
       {emb_q + " has a non-finite value (-inf at element 5)"}},
      {"A_log whose exp overflows", set_f32(s.a_log, 2, 100.f), st,
       {"'" + s.a_log + "': exp(A_log) overflows float (100.000000 at element 2)"}},
      // tensors the config needs
      {"missing tensor", header([=](json& h) { h.erase(vec_name); }), "",
       {"no tensor " + vec_q}},
      {"missing embedding", header([=](json& h) { h.erase(emb_name); }), "",
       {"none of " + emb_q}},
      {"a layer more in the config", config([](json& j) { j["num_hidden_layers"] = j["num_hidden_layers"].get<int>() + 1; }),
       "", {"no tensor 'backbone.layers." + std::to_string(layers) + "."}},
      {"vocab_size not the embedding's rows", config([](json& j) { j["vocab_size"] = j["vocab_size"].get<int>() + 1; }),
       st, {emb_q + ": expected [" + std::to_string(vocab + 1) + ", " + std::to_string(width) + "], got"}},
      {"hidden_size not the embedding's columns", config([](json& j) { j["hidden_size"] = 1 << 30; }), st,
       {emb_q + ": expected [" + std::to_string(vocab) + ", 1073741824], got [" + std::to_string(vocab) +
        ", " + std::to_string(width) + "]"}},
      // the folder
      {"no config.json", remove(cfg), "", {"no config.json"}},
      {"no weights", remove(st), "", {"no model.safetensors or model.safetensors.index.json"}},
      {"index naming a missing shard",
       [](const fs::path& d) {
         fs::rename(d / "model.safetensors", d / "weights.bin");
         write(d / "model.safetensors.index.json",
               R"({"weight_map": {"backbone.norm_f.weight": "model-00001-of-00002.safetensors"}})");
       },
       "model-00001-of-00002.safetensors", {"no such file"}},
      {"index naming a path",
       [](const fs::path& d) {
         fs::remove(d / "model.safetensors");
         write(d / "model.safetensors.index.json",
               R"({"weight_map": {"backbone.norm_f.weight": "../model.safetensors"}})");
       },
       "model.safetensors.index.json", {"'backbone.norm_f.weight': bad shard name '../model.safetensors'"}},
      // config.json
      {"config not JSON", config_text(R"({"model_type": "mamba", )"), cfg, {"not valid JSON ("}},
      {"config number out of range", config_text(R"({"model_type": "mamba", "hidden_size": 1e400})"), cfg,
       {"not valid JSON (", "number overflow"}},
      {"config nested too deep", config_text(R"({"hidden_size": )" + nested + "}"), cfg,
       {"nests deeper than 64 levels"}},
      {"config not an object", config_text("[1, 2]"), cfg, {"not a JSON object"}},
      {"not a Mamba model", config([](json& j) { j["model_type"] = "gpt2"; }), cfg,
       {"'model_type': not a Mamba model: \"gpt2\""}},
      {"negative hidden_size", config([](json& j) { j["hidden_size"] = -64; }), cfg,
       {"'hidden_size': " + dims + "-64"}},
      {"zero layers", config([](json& j) { j["num_hidden_layers"] = 0; }), cfg,
       {"'num_hidden_layers': " + dims + "0"}},
      {"vocab_size a string", config([](json& j) { j["vocab_size"] = "256"; }), cfg,
       {"'vocab_size': " + dims + "\"256\""}},
      {"hidden_size past 2^30", config([](json& j) { j["hidden_size"] = std::int64_t(1) << 31; }), cfg,
       {"'hidden_size': " + dims + "2147483648"}},
      {"vocab_size missing", config([](json& j) { j.erase("vocab_size"); }), cfg, {"'vocab_size': missing"}},
      {"negative layer_norm_epsilon", config([](json& j) { j["layer_norm_epsilon"] = -1e-5; }), cfg,
       {"'layer_norm_epsilon': must be a finite number > 0, got -1e-05"}},
  };
}

/// MambaLM's checkpoints: tests/data/mamba-tiny and its Mamba-1 keys.
inline Subject mamba1_subject(const std::string& data_dir) {
  return {data_dir + "/mamba-tiny", "backbone.embeddings.weight", "backbone.layers.1.mixer.D",
          "backbone.layers.0.mixer.A_log"};
}

/// Mamba2LM's checkpoints: tests/data/mamba2-tiny, the same key names.
inline Subject mamba2_subject(const std::string& data_dir) {
  return {data_dir + "/mamba2-tiny", "backbone.embeddings.weight", "backbone.layers.1.mixer.D",
          "backbone.layers.0.mixer.A_log"};
}

/// The cases of checkpoint_cases() plus those of Mamba-1's config.
inline std::vector<Case> mamba1_cases(const std::string& data_dir) {
  std::vector<Case> cases = checkpoint_cases(mamba1_subject(data_dir));
  const std::string st = "model.safetensors", cfg = "config.json";
  const std::string mx = "'backbone.layers.0.mixer.";
  std::vector<Case> more = {
      {"intermediate_size inconsistent", config([](json& j) { j["intermediate_size"] = 130; }), st,
       {mx + "in_proj.weight': expected [260, 64], got [256, 64]"}},
      {"time_step_rank inconsistent", config([](json& j) { j["time_step_rank"] = 5; }), st,
       {mx + "x_proj.weight': expected [37, 128], got [36, 128]"}},
      {"state_size inconsistent", config([](json& j) { j["state_size"] = 17; }), st,
       {mx + "x_proj.weight': expected [38, 128], got [36, 128]"}},
      {"conv_kernel huge", config([](json& j) { j["conv_kernel"] = 1 << 30; }), st,
       {mx + "conv1d.weight': expected [128, 1, 1073741824], got [128, 1, 4]"}},
      {"time_step_rank a word", config([](json& j) { j["time_step_rank"] = "big"; }), cfg,
       {"'time_step_rank': must be a positive integer or \"auto\", got \"big\""}},
      {"expand NaN",
       config_text(R"({"model_type": "mamba", "hidden_size": 64, "num_hidden_layers": 2,)"
                   R"( "vocab_size": 256, "expand": NaN})"),
       cfg, {"'expand': must be a finite number > 0"}},
      {"untied head missing", config([](json& j) { j["tie_word_embeddings"] = false; }), "",
       {"no tensor 'lm_head.weight'"}},
      {"biases missing", config([](json& j) { j["use_bias"] = true; }), "",
       {"no tensor 'backbone.layers.0.mixer.in_proj.bias'"}},
  };
  cases.insert(cases.end(), more.begin(), more.end());
  return cases;
}

/// The cases of checkpoint_cases() for Mamba2LM: Mamba2Config rejects a
/// hidden_size of 2^30 by its inner width before any tensor is read.
inline std::vector<Case> mamba2_cases(const std::string& data_dir) {
  std::vector<Case> cases = checkpoint_cases(mamba2_subject(data_dir));
  for (Case& c : cases)
    if (c.name == "hidden_size not the embedding's columns") {
      c.file = "config.json";
      c.phrases = {"'expand': expand * d_model = 2147483648.000000 is not a valid width"};
    }
  return cases;
}

}  // namespace test::malformed
