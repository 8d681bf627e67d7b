// Reader for the safetensors format (Hugging Face's weight files).
//
// Layout: an 8-byte little-endian header length n, n bytes of a JSON object
//   {"<tensor>": {"dtype": "F32", "shape": [256, 64], "data_offsets": [b, e]},
//    ..., "__metadata__": {"<key>": "<string>"}}
// then the data area; tensor bytes are [b, e) of the data area, row-major
// (C order), little-endian.
//
// The file is memory-mapped read-only (POSIX mmap; read into memory where
// that is unavailable or fails) and the whole header is validated when it is
// opened, so that no later access can read outside the file: every defect is
// a std::runtime_error "ssm::io::SafetensorsFile: <path>: '<tensor>': ...".
// A mapped file must not be truncated by another process while open.
#pragma once

#include <ssm/io/dtype.hpp>
#include <ssm/io/json.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#if __has_include(<sys/mman.h>) && __has_include(<unistd.h>)
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#define SSM_IO_HAS_MMAP 1
#endif

namespace ssm::io {

class Checkpoint;

namespace detail {

/// The bytes of a whole regular file: memory-mapped when possible, else read.
class FileBytes {
 public:
  /// Bytes already in memory, taken over.
  explicit FileBytes(std::vector<unsigned char> bytes)
      : buffer_(std::move(bytes)), data_(buffer_.data()), size_(buffer_.size()) {}
  FileBytes(const std::string& path, bool memory_map, const std::string& where) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (!std::filesystem::exists(status))
      throw std::runtime_error(where + ": " + path + ": no such file");
    if (!std::filesystem::is_regular_file(status))
      throw std::runtime_error(where + ": " + path + ": not a regular file");
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) throw std::runtime_error(where + ": " + path + ": cannot open");
#ifdef SSM_IO_HAS_MMAP
    if (memory_map && size > 0 && try_map(path, std::size_t(size), where)) return;
#endif
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(where + ": " + path + ": cannot open");
    buffer_.resize(std::size_t(size));
    if (!in.read(reinterpret_cast<char*>(buffer_.data()), std::streamsize(size)))
      throw std::runtime_error(where + ": " + path + ": read error");
    data_ = buffer_.data();
    size_ = buffer_.size();
  }
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;
  FileBytes(FileBytes&& o) noexcept { *this = std::move(o); }
  FileBytes& operator=(FileBytes&& o) noexcept {
    if (this != &o) {
      unmap();
      buffer_ = std::move(o.buffer_);
      data_ = o.mapped_ ? o.data_ : buffer_.data();
      size_ = o.size_;
      mapped_ = o.mapped_;
      o.data_ = nullptr;
      o.size_ = 0;
      o.mapped_ = false;
    }
    return *this;
  }
  ~FileBytes() { unmap(); }

  const unsigned char* data() const { return data_; }
  std::size_t size() const { return size_; }
  bool mapped() const { return mapped_; }

 private:
#ifdef SSM_IO_HAS_MMAP
  // False (the caller then reads the file) if it cannot be mapped, as on
  // file systems without mmap.
  bool try_map(const std::string& path, std::size_t size, const std::string& where) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(where + ": " + path + ": cannot open");
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);  // the mapping stays valid without the descriptor
    if (p == MAP_FAILED) return false;
    data_ = static_cast<const unsigned char*>(p);
    size_ = size;
    mapped_ = true;
    return true;
  }
#endif
  void unmap() {
#ifdef SSM_IO_HAS_MMAP
    if (mapped_) ::munmap(const_cast<unsigned char*>(data_), size_);
#endif
    mapped_ = false;
  }

  std::vector<unsigned char> buffer_;
  const unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
  bool mapped_ = false;
};

}  // namespace detail

/// One tensor's entry in a safetensors header.
struct TensorInfo {
  DType dtype;                      ///< its element type in the file
  std::vector<std::int64_t> shape;  ///< row-major (C order); [] for a scalar
  std::size_t begin, end;           ///< its bytes [begin, end) in the data area

  /// Number of elements: the product of `shape` (1 for a scalar).
  std::size_t numel() const { return (end - begin) / dtype_size(dtype); }
};

/// An open, validated safetensors file. Move-only; holds the mapping until
/// destroyed. Tensor names are kept in sorted order.
class SafetensorsFile {
 public:
  /// Largest header accepted: real headers are kilobytes; this bounds the
  /// memory a corrupt length can make the parser allocate.
  static constexpr std::uint64_t max_header_size = 100u << 20;

  /// Opens and validates `path` (see the file comment). memory_map = false
  /// reads the file into memory instead of mapping it. Throws
  /// std::runtime_error if the file cannot be read or any header entry is
  /// malformed, out of the file or overlaps another.
  explicit SafetensorsFile(std::string path, bool memory_map = true)
      : path_(std::move(path)), file_(path_, memory_map, where_) {
    parse_header();
  }

  /// Parses the `size` bytes of a safetensors file at `data` (copied, so
  /// they need not outlive it), validated as a file is; `name` stands for
  /// the path in messages. For bytes that come from elsewhere than a file,
  /// and for fuzzing (fuzz/fuzz_safetensors.cpp).
  static SafetensorsFile from_memory(std::string name, const void* data, std::size_t size) {
    const auto* p = static_cast<const unsigned char*>(data);
    return SafetensorsFile(std::move(name),
                           detail::FileBytes(std::vector<unsigned char>(p, p + size)));
  }

  /// The path it was opened with.
  const std::string& path() const { return path_; }
  /// Whether the bytes are memory-mapped (false: read into memory).
  bool mapped() const { return file_.mapped(); }

  /// The tensor names, sorted.
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(tensors_.size());
    for (const auto& kv : tensors_) out.push_back(kv.first);
    return out;
  }
  /// Whether the file holds a tensor `name`.
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }

  /// dtype, shape and byte range of `name`; throws std::runtime_error if absent.
  const TensorInfo& info(const std::string& name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) fail("'" + name + "': no such tensor");
    return it->second;
  }

  /// The "__metadata__" entries (e.g. {"format": "pt"}); empty if none.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  /// The raw little-endian bytes of `name`: info(name).end - begin of them,
  /// with no alignment guarantee (read with memcpy); valid while the file
  /// is open. Throws as info().
  const unsigned char* bytes(const std::string& name) const {
    return file_.data() + data_start_ + info(name).begin;
  }

  /// Converts `name` (F32, F16, BF16 or F64) to float32 into dst, which must
  /// hold info(name).numel() floats (row-major). Throws std::runtime_error
  /// for other dtypes or an absent name.
  void load(const std::string& name, float* dst) const {
    load_checked(name, nullptr, dst, where_);
  }
  /// As above, after checking that the shape is `expected` exactly: throws
  /// "...: '<name>': expected [768], got [1536]" otherwise.
  void load(const std::string& name, const std::vector<std::int64_t>& expected,
            float* dst) const {
    load_checked(name, &expected, dst, where_);
  }
  /// `name` converted to float32, row-major; throws as above.
  std::vector<float> load(const std::string& name) const {
    std::vector<float> out(info(name).numel());
    load(name, out.data());
    return out;
  }

 private:
  friend class Checkpoint;  // reports errors under its own name

  SafetensorsFile(std::string name, detail::FileBytes bytes)
      : path_(std::move(name)), file_(std::move(bytes)) {
    parse_header();
  }

  // The entry of `name`, after checking its shape if `expected` is given.
  const TensorInfo& checked_info(const std::string& name,
                                 const std::vector<std::int64_t>* expected,
                                 const std::string& where) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end())
      throw std::runtime_error(where + ": " + path_ + ": '" + name + "': no such tensor");
    const TensorInfo& t = it->second;
    if (expected && *expected != t.shape)
      throw std::runtime_error(where + ": " + path_ + ": '" + name + "': expected " +
                               detail::shape_string(*expected) + ", got " +
                               detail::shape_string(t.shape));
    return t;
  }

  void load_checked(const std::string& name,
                    const std::vector<std::int64_t>* expected, float* dst,
                    const std::string& where) const {
    const TensorInfo& t = checked_info(name, expected, where);
    if (!convert_to_float(t.dtype, file_.data() + data_start_ + t.begin,
                          t.numel(), dst))
      throw std::runtime_error(where + ": " + path_ + ": '" + name + "': dtype " +
                               dtype_name(t.dtype) + " cannot be read as float32");
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(where_ + ": " + path_ + ": " + what);
  }

  void parse_header() {
    const std::size_t size = file_.size();
    if (size < 8)
      fail("file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | file_.data()[i];  // little-endian
    if (n > size - 8)
      fail("header length " + std::to_string(n) + " exceeds the " +
           std::to_string(size - 8) + " bytes after it");
    if (n > max_header_size)
      fail("header length " + std::to_string(n) + " exceeds the limit of " +
           std::to_string(max_header_size) + " bytes");
    data_start_ = 8 + std::size_t(n);
    std::optional<nlohmann::json> header;
    try {
      const char* text = reinterpret_cast<const char*>(file_.data() + 8);
      header = detail::parse_json_bounded(text, text + n);
    } catch (const nlohmann::json::exception& e) {  // parse_error, out_of_range
      fail(std::string("header is not valid JSON (") + e.what() + ")");
    }
    if (!header)
      fail("header nests deeper than " + std::to_string(detail::max_json_depth) + " levels");
    if (!header->is_object()) fail("header is not a JSON object");
    for (const auto& kv : header->items()) {
      if (kv.key() == "__metadata__")
        parse_metadata(kv.value());
      else
        tensors_.emplace(kv.key(), parse_entry(kv.key(), kv.value(), size - data_start_));
    }
    check_overlaps();
  }

  void parse_metadata(const nlohmann::json& m) {
    if (!m.is_object()) fail("'__metadata__': not an object");
    for (const auto& kv : m.items()) {
      if (!kv.value().is_string())
        fail("'__metadata__': '" + kv.key() + "': value is not a string");
      metadata_.emplace(kv.key(), kv.value().get<std::string>());
    }
  }

  TensorInfo parse_entry(const std::string& name, const nlohmann::json& e,
                         std::size_t data_size) const {
    const std::string at = "'" + name + "': ";
    if (!e.is_object()) fail(at + "entry is not an object");
    if (!e.contains("dtype") || !e["dtype"].is_string())
      fail(at + "'dtype' missing or not a string");
    const auto dtype = parse_dtype(e["dtype"].get<std::string>());
    if (!dtype) fail(at + "unknown dtype '" + e["dtype"].get<std::string>() + "'");

    if (!e.contains("shape") || !e["shape"].is_array())
      fail(at + "'shape' missing or not a list");
    std::vector<std::int64_t> shape;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_integer()) fail(at + "'shape' holds a non-integer " + d.dump());
      if (!d.is_number_unsigned()) fail(at + "negative dimension " + d.dump() + " in 'shape'");
      const auto u = d.get<std::uint64_t>();
      if (u > std::uint64_t(INT64_MAX)) fail(at + "dimension " + d.dump() + " too large");
      shape.push_back(std::int64_t(u));
    }
    const std::size_t width = dtype_size(*dtype);
    const auto numel = detail::checked_numel(shape, SIZE_MAX / width);
    if (!numel)
      fail(at + "shape " + detail::shape_string(shape) + " overflows the element count");

    const auto& off = e.contains("data_offsets") ? e["data_offsets"] : nlohmann::json();
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      fail(at + "'data_offsets' must be [begin, end] with non-negative integers, got " +
           off.dump());
    const auto begin = off[0].get<std::uint64_t>(), end = off[1].get<std::uint64_t>();
    const std::string range = "data_offsets [" + std::to_string(begin) + ", " +
                              std::to_string(end) + "]";
    if (begin > end) fail(at + range + ": begin > end");
    if (end > data_size)
      fail(at + range + " past the end of the data area (" +
           std::to_string(data_size) + " bytes)");
    if (end - begin != *numel * width)
      fail(at + range + " hold " + std::to_string(end - begin) + " bytes, but shape " +
           detail::shape_string(shape) + " of " + dtype_name(*dtype) + " needs " +
           std::to_string(*numel * width));
    return {*dtype, std::move(shape), std::size_t(begin), std::size_t(end)};
  }

  // Tensors must not share bytes (empty tensors occupy none).
  void check_overlaps() const {
    std::vector<std::pair<const std::string*, const TensorInfo*>> byte_order;
    for (const auto& kv : tensors_)
      if (kv.second.end > kv.second.begin) byte_order.emplace_back(&kv.first, &kv.second);
    std::sort(byte_order.begin(), byte_order.end(),
              [](const auto& a, const auto& b) { return a.second->begin < b.second->begin; });
    for (std::size_t i = 1; i < byte_order.size(); ++i)
      if (byte_order[i].second->begin < byte_order[i - 1].second->end)
        fail("'" + *byte_order[i - 1].first + "' and '" + *byte_order[i].first +
             "' overlap in the data area");
  }

  inline static const std::string where_ = "ssm::io::SafetensorsFile";
  std::string path_;
  detail::FileBytes file_;
  std::size_t data_start_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace ssm::io
