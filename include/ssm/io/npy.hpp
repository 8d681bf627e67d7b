// NumPy .npy files: the reference inputs and outputs of the tests.
//
// Format (numpy.lib.format, versions 1.0 - 3.0): the magic "\x93NUMPY", two
// version bytes, the header length (2 bytes little-endian in 1.0, 4 after),
// then a Python dict literal such as
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 33), }
// padded with spaces and '\n' so the data starts at a multiple of 64 bytes,
// then the raw data. Read: little-endian float32, float64, int64, int32 in C
// order; anything else is a std::runtime_error naming the file. Written:
// version 1.0, byte for byte as numpy.save writes it.
#pragma once

#include <ssm/io/dtype.hpp>

#include <Eigen/Core>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace ssm::io {

/// An array read from a .npy file: raw little-endian bytes in C order.
struct NpyArray {
  DType dtype = DType::F32;         ///< F32, F64, I64 or I32 ('<f4' '<f8' '<i8' '<i4'); values() reads no other
  std::vector<std::int64_t> shape;  ///< () for a scalar
  std::vector<unsigned char> bytes;  ///< the data, prod(shape) elements

  /// Number of elements (1 for a scalar).
  std::size_t size() const { return bytes.size() / dtype_size(dtype); }

  /// The elements as T (float, double, int32_t or int64_t), C order.
  /// Floating data converts to float / double only (float64 to float rounds
  /// to nearest; an integer T throws std::runtime_error); integer data
  /// converts to any T, and throws std::runtime_error for an integer T it
  /// does not fit.
  template <class T>
  std::vector<T> values() const {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> ||
                      std::is_same_v<T, std::int32_t> || std::is_same_v<T, std::int64_t>,
                  "NpyArray::values<T>: T must be float, double, int32_t or int64_t");
    std::vector<T> out(size());
    const unsigned char* p = bytes.data();
    switch (dtype) {
      case DType::F32: case DType::F64:
        if constexpr (std::is_floating_point_v<T>) {
          for (std::size_t i = 0; i < out.size(); ++i) {
            const double v = dtype == DType::F32 ? detail::load_le<float>(p + 4 * i)
                                                 : detail::load_le<double>(p + 8 * i);
            out[i] = std::is_same_v<T, float> ? T(double_to_float(v)) : T(v);
          }
          return out;
        } else {
          throw std::runtime_error(std::string("ssm::io::NpyArray::values: ") +
                                   dtype_name(dtype) + " data cannot be read as integers");
        }
      case DType::I64:
      case DType::I32:
        for (std::size_t i = 0; i < out.size(); ++i) {
          const std::int64_t v = dtype == DType::I64 ? detail::load_le<std::int64_t>(p + 8 * i)
                                                     : detail::load_le<std::int32_t>(p + 4 * i);
          if constexpr (std::is_integral_v<T>)
            if (v < std::numeric_limits<T>::min() || v > std::numeric_limits<T>::max())
              throw std::runtime_error("ssm::io::NpyArray::values: " + std::to_string(v) +
                                       " does not fit the requested integer type");
          out[i] = T(v);
        }
        return out;
      default:  // not what load_npy makes, but a dtype set by hand
        throw std::runtime_error(std::string("ssm::io::NpyArray::values: ") + dtype_name(dtype) +
                                 " data is not read (F32, F64, I32 or I64 only)");
    }
  }

  /// The elements as a row-major matrix whose columns are the last axis and
  /// whose rows are all leading axes flattened: (2, 33, 256) -> 66 x 256,
  /// (5) -> 1 x 5, () -> 1 x 1. Throws as values().
  template <class T>
  Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> matrix() const {
    const Eigen::Index cols = shape.empty() ? 1 : Eigen::Index(shape.back());
    const Eigen::Index rows = cols == 0 ? 0 : Eigen::Index(size()) / cols;
    Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> m(rows, cols);
    const std::vector<T> v = values<T>();
    if (!v.empty()) std::memcpy(m.data(), v.data(), v.size() * sizeof(T));
    return m;
  }
};

namespace detail {

inline const char* npy_descr(DType t) {
  switch (t) {
    case DType::F32: return "<f4";
    case DType::F64: return "<f8";
    case DType::I64: return "<i8";
    case DType::I32: return "<i4";
    default: return nullptr;
  }
}

/// Parser of the header dict, a Python literal with the three keys numpy
/// writes: 'descr' (a string), 'fortran_order' (True / False), 'shape' (a
/// tuple of non-negative ints).
class NpyHeaderParser {
 public:
  NpyHeaderParser(std::string text, std::string where)
      : s_(std::move(text)), where_(std::move(where)) {}

  void parse(std::string& descr, bool& fortran, std::vector<std::int64_t>& shape) {
    bool seen[3] = {false, false, false};
    expect('{');
    while (!eat('}')) {
      const std::string key = quoted();
      expect(':');
      if (key == "descr" && !seen[0]) {
        descr = quoted();
        seen[0] = true;
      } else if (key == "fortran_order" && !seen[1]) {
        fortran = word("True");
        if (!fortran && !word("False")) bad("fortran_order must be True or False");
        seen[1] = true;
      } else if (key == "shape" && !seen[2]) {
        shape = tuple();
        seen[2] = true;
      } else {
        bad("unexpected or repeated key '" + key + "'");
      }
      if (!eat(',')) {
        expect('}');
        break;
      }
    }
    skip_space();
    if (pos_ != s_.size()) bad("text after the dict");
    if (!(seen[0] && seen[1] && seen[2])) bad("'descr', 'fortran_order' and 'shape' are required");
  }

 private:
  [[noreturn]] void bad(const std::string& what) const {
    throw std::runtime_error(where_ + ": header dict " + what + ": " + s_);
  }
  void skip_space() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t'))
      ++pos_;
  }
  bool eat(char c) {
    skip_space();
    if (pos_ < s_.size() && s_[pos_] == c) return ++pos_, true;
    return false;
  }
  void expect(char c) {
    if (!eat(c)) bad(std::string("expected '") + c + "'");
  }
  bool word(const char* w) {
    skip_space();
    if (s_.compare(pos_, std::strlen(w), w) != 0) return false;
    pos_ += std::strlen(w);
    return true;
  }
  std::string quoted() {
    skip_space();
    if (pos_ >= s_.size() || (s_[pos_] != '\'' && s_[pos_] != '"')) bad("expected a string");
    const char q = s_[pos_++];
    const std::size_t end = s_.find(q, pos_);
    if (end == std::string::npos) bad("unterminated string");
    std::string out = s_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return out;
  }
  std::vector<std::int64_t> tuple() {
    std::vector<std::int64_t> out;
    expect('(');
    while (!eat(')')) {
      skip_space();
      std::int64_t v = 0;
      std::size_t digits = 0;
      for (; pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9'; ++pos_, ++digits) {
        if (v > (std::numeric_limits<std::int64_t>::max() - 9) / 10) bad("dimension too large");
        v = 10 * v + (s_[pos_] - '0');
      }
      if (!digits) bad("shape must be a tuple of non-negative integers");
      out.push_back(v);
      if (!eat(',')) {
        expect(')');
        break;
      }
    }
    return out;
  }

  std::string s_, where_;
  std::size_t pos_ = 0;
};

inline void save_npy_bytes(const std::string& path, DType dtype,
                           const std::vector<std::int64_t>& shape, const void* data) {
  const std::string where = "ssm::io::save_npy: " + path;
  const auto numel = checked_numel(shape, std::numeric_limits<std::size_t>::max() / 8);
  if (!numel) throw std::invalid_argument(where + ": bad shape " + shape_string(shape));
  // numpy's own text (numpy >= 1.23): sorted keys, the repr of the shape
  // tuple, a trailing ", ", room for the first dimension to grow to 21
  // digits, then 1 to 64 spaces and '\n' so that the data starts at a
  // multiple of 64 bytes.
  std::string dims;
  for (std::size_t i = 0; i < shape.size(); ++i)
    dims += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) dims += ",";
  std::string header = std::string("{'descr': '") + npy_descr(dtype) +
                       "', 'fortran_order': False, 'shape': (" + dims + "), }";
  if (!shape.empty()) header += std::string(21 - std::to_string(shape[0]).size(), ' ');
  header += std::string(64 - (10 + header.size() + 1) % 64, ' ') + '\n';
  if (header.size() > 65535) throw std::invalid_argument(where + ": too many dimensions");
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error(where + ": cannot create");
  const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xff),
                                static_cast<unsigned char>(header.size() >> 8)};
  out.write("\x93NUMPY\x01\x00", 8);
  out.write(reinterpret_cast<const char*>(len), 2);
  out.write(header.data(), std::streamsize(header.size()));
  out.write(static_cast<const char*>(data), std::streamsize(*numel * dtype_size(dtype)));
  if (!out.flush()) throw std::runtime_error(where + ": write error");
}

}  // namespace detail

/// Reads a .npy file (see the file comment). Throws std::runtime_error
/// "ssm::io::load_npy: <path>: ..." for unreadable, malformed or
/// unsupported files (big-endian, Fortran order, other dtypes).
inline NpyArray load_npy(const std::string& path) {
  const std::string where = "ssm::io::load_npy: " + path;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(where + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string file = ss.str();
  if (file.size() < 10 || file.compare(0, 6, "\x93NUMPY") != 0)
    throw std::runtime_error(where + ": not a .npy file (no \\x93NUMPY magic)");
  const auto major = static_cast<unsigned char>(file[6]);
  if (major < 1 || major > 3)
    throw std::runtime_error(where + ": unsupported format version " + std::to_string(major));
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  if (file.size() < 8 + len_bytes) throw std::runtime_error(where + ": truncated header");
  std::size_t header_len = 0;
  for (std::size_t i = len_bytes; i-- > 0;)
    header_len = header_len << 8 | static_cast<unsigned char>(file[8 + i]);
  const std::size_t data_start = 8 + len_bytes + header_len;
  if (header_len > file.size() - 8 - len_bytes)
    throw std::runtime_error(where + ": header length " + std::to_string(header_len) +
                             " exceeds the file size");

  std::string descr;
  bool fortran = false;
  NpyArray a;
  detail::NpyHeaderParser(file.substr(8 + len_bytes, header_len), where).parse(descr, fortran, a.shape);
  if (descr.size() == 3 && descr[0] == '>')
    throw std::runtime_error(where + ": big-endian data ('" + descr + "') is not supported");
  const DType types[] = {DType::F32, DType::F64, DType::I64, DType::I32};
  bool known = false;
  for (DType t : types)
    if (descr == detail::npy_descr(t)) a.dtype = t, known = true;
  if (!known)
    throw std::runtime_error(where + ": dtype '" + descr +
                             "' is not supported (<f4, <f8, <i8 or <i4)");
  if (fortran) throw std::runtime_error(where + ": Fortran-order arrays are not supported");
  const std::size_t width = dtype_size(a.dtype);
  const auto numel = detail::checked_numel(a.shape, std::numeric_limits<std::size_t>::max() / width);
  if (!numel || *numel * width != file.size() - data_start)
    throw std::runtime_error(where + ": " + std::to_string(file.size() - data_start) +
                             " data bytes, but shape " + detail::shape_string(a.shape) +
                             " of '" + descr + "' needs " +
                             (numel ? std::to_string(*numel * width) : "more"));
  a.bytes.assign(file.begin() + std::ptrdiff_t(data_start), file.end());
  return a;
}

/// Writes data (C order, prod(shape) elements) as a float32 .npy file.
/// Throws std::invalid_argument for a negative or overflowing shape or a
/// header beyond 65535 bytes (too many dimensions), std::runtime_error if
/// the file cannot be created or written.
inline void save_npy(const std::string& path, const std::vector<std::int64_t>& shape,
                     const float* data) {
  detail::save_npy_bytes(path, DType::F32, shape, data);
}
/// Writes data (C order, prod(shape) elements) as an int64 .npy file.
/// Throws as the float32 overload.
inline void save_npy(const std::string& path, const std::vector<std::int64_t>& shape,
                     const std::int64_t* data) {
  detail::save_npy_bytes(path, DType::I64, shape, data);
}

}  // namespace ssm::io
