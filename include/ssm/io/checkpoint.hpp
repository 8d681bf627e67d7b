// A Hugging Face checkpoint folder: config.json plus the weights, either one
// model.safetensors or shards listed by model.safetensors.index.json
// ({"weight_map": {"<tensor>": "model-00001-of-00002.safetensors", ...}}).
//
//   ssm::io::Checkpoint ckpt("models/mamba-130m");
//   auto cfg = ssm::MambaConfig::from_json(ckpt.config(), ckpt.config_path());
//   const std::string emb = ckpt.find_first({"backbone.embeddings.weight",   // transformers
//                                            "backbone.embedding.weight"});  // state-spaces
//   Checkpoint::RowMatrix E = ckpt.matrix(emb, cfg.vocab_size, cfg.d_model);
//   Eigen::VectorXf D = ckpt.vector("backbone.layers.0.mixer.D", cfg.d_inner);
//   ckpt.load("backbone.layers.0.mixer.conv1d.weight", {cfg.d_inner, 1, cfg.d_conv}, dst);
//
// Every load checks the stored shape against the expected one and converts
// F32 / F16 / BF16 / F64 to float32 into memory the caller owns: the files
// stay mapped only while the Checkpoint lives. Errors are std::runtime_error
// "ssm::io::Checkpoint: <file or folder>: '<tensor>': expected [768], got [1536]".
#pragma once

#include <ssm/io/json.hpp>
#include <ssm/io/safetensors.hpp>

#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace ssm::io {

/// An open checkpoint folder (see the file comment). Move-only.
class Checkpoint {
 public:
  using Shape = std::vector<std::int64_t>;  ///< a tensor's dimensions, outermost first
  /// Checkpoint matrices are row-major (PyTorch's layout): W is out x in.
  using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  /// Opens `folder`: reads config.json, then model.safetensors if present,
  /// else the shards of model.safetensors.index.json, validating each file
  /// and that every tensor of the index is in the shard it names. Throws
  /// std::runtime_error if `folder` is empty, any of these is missing or
  /// malformed, or a shard name is a path.
  explicit Checkpoint(const std::string& folder) : folder_(folder) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (folder.empty()) throw std::runtime_error(where_ + ": the folder name is empty");
    if (!fs::exists(folder, ec)) fail(folder_, "no such folder");
    if (!fs::is_directory(folder, ec)) fail(folder_, "not a folder");
    const fs::path dir(folder);
    config_path_ = (dir / "config.json").string();
    if (!fs::is_regular_file(config_path_, ec)) fail(folder_, "no config.json");
    config_ = read_json(config_path_, where_);
    if (!config_.is_object()) fail(config_path_, "not a JSON object");

    const std::string single = (dir / "model.safetensors").string();
    const std::string index = (dir / "model.safetensors.index.json").string();
    if (fs::exists(single, ec)) {
      files_.emplace_back(single);
      for (const std::string& name : files_.back().names()) file_of_[name] = 0;
    } else if (fs::exists(index, ec)) {
      open_shards(dir, index);
    } else {
      fail(folder_, "no model.safetensors or model.safetensors.index.json");
    }
  }

  /// The folder it was opened with.
  const std::string& folder() const { return folder_; }
  /// The parsed config.json (transformers or state-spaces keys; see config.hpp).
  const nlohmann::json& config() const { return config_; }
  /// <folder>/config.json, for error messages of config parsers.
  const std::string& config_path() const { return config_path_; }

  /// All tensor names, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(file_of_.size());
    for (const auto& kv : file_of_) out.push_back(kv.first);
    return out;
  }
  /// Whether the checkpoint holds a tensor `name` (in the index, if sharded).
  bool contains(const std::string& name) const { return file_of_.count(name) != 0; }

  /// dtype, shape and bytes of `name`; throws std::runtime_error if there is
  /// no such tensor (as do file_path, shape and dtype).
  const TensorInfo& info(const std::string& name) const { return file(name).info(name); }
  /// The path of the safetensors file that holds `name`, for messages.
  const std::string& file_path(const std::string& name) const { return file(name).path(); }
  /// Shorthands for info(name).shape and .dtype.
  const Shape& shape(const std::string& name) const { return info(name).shape; }
  DType dtype(const std::string& name) const { return info(name).dtype; }

  /// The first of `candidates` the checkpoint holds, for tensors whose key
  /// differs between layouts; throws std::runtime_error naming them all if
  /// none is present.
  std::string find_first(const std::vector<std::string>& candidates) const {
    std::string tried;
    for (const std::string& name : candidates) {
      if (contains(name)) return name;
      tried += (tried.empty() ? "'" : ", '") + name + "'";
    }
    fail(folder_, "none of " + tried + " found");
  }

  /// Converts `name` to float32 into dst (row-major, numel floats) after
  /// checking that its shape is exactly `expected`. Throws
  /// std::runtime_error for an absent tensor, another shape, or a dtype
  /// other than F32, F16, BF16 and F64; so do the overloads below, before
  /// they allocate.
  void load(const std::string& name, const Shape& expected, float* dst) const {
    file(name).load_checked(name, &expected, dst, where_);
  }
  /// As above, into a new vector.
  std::vector<float> load(const std::string& name, const Shape& expected) const {
    std::vector<float> out(check(name, expected).numel());
    load(name, expected, out.data());
    return out;
  }
  /// A 2-D tensor of shape [rows, cols].
  RowMatrix matrix(const std::string& name, Eigen::Index rows, Eigen::Index cols) const {
    check(name, {rows, cols});
    RowMatrix m(rows, cols);
    load(name, {rows, cols}, m.data());
    return m;
  }
  /// A 1-D tensor of shape [size].
  Eigen::VectorXf vector(const std::string& name, Eigen::Index size) const {
    check(name, {size});
    Eigen::VectorXf v(size);
    load(name, {size}, v.data());
    return v;
  }

 private:
  [[noreturn]] static void fail(const std::string& path, const std::string& what) {
    throw std::runtime_error(where_ + ": " + path + ": " + what);
  }

  // The shape check, before allocating: a corrupt config may ask for sizes
  // far beyond the file's.
  const TensorInfo& check(const std::string& name, const Shape& expected) const {
    return file(name).checked_info(name, &expected, where_);
  }

  const SafetensorsFile& file(const std::string& name) const {
    const auto it = file_of_.find(name);
    if (it == file_of_.end()) fail(folder_, "no tensor '" + name + "'");
    return files_[it->second];
  }

  void open_shards(const std::filesystem::path& dir, const std::string& index) {
    const nlohmann::json j = read_json(index, where_);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail(index, "no \"weight_map\" object");
    std::map<std::string, std::size_t> shard_index;
    for (const auto& kv : j["weight_map"].items()) {
      if (!kv.value().is_string())
        fail(index, "'" + kv.key() + "': the shard name is not a string");
      const std::string shard = kv.value().get<std::string>();
      // Shards are plain file names beside the index: refuse paths.
      if (shard.empty() || shard == "." || shard == ".." ||
          shard.find_first_of("/\\") != std::string::npos)
        fail(index, "'" + kv.key() + "': bad shard name '" + shard + "'");
      auto it = shard_index.find(shard);
      if (it == shard_index.end()) {
        files_.emplace_back((dir / shard).string());
        it = shard_index.emplace(shard, files_.size() - 1).first;
      }
      if (!files_[it->second].contains(kv.key()))
        fail(index, "'" + kv.key() + "' is mapped to " + shard + ", which does not hold it");
      file_of_[kv.key()] = it->second;
    }
  }

  inline static const std::string where_ = "ssm::io::Checkpoint";
  std::string folder_, config_path_;
  nlohmann::json config_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, std::size_t> file_of_;  // tensor -> index in files_
};

}  // namespace ssm::io
