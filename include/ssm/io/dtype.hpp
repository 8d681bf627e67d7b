// Element types of checkpoint files and their conversion to float32.
//
// The safetensors dtype names (F64, F32, F16, BF16, I64, ...) and the IEEE
// 754 binary16 / bfloat16 decodings, written with integer operations only so
// they need no F16C instructions and are exact on every platform. Bytes are
// read with memcpy: tensor data inside a file has no alignment guarantee.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

// Files are little-endian; so is every platform ssm targets.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ssm/io assumes a little-endian host"
#endif

namespace ssm::io {

/// The element types of the safetensors format (its spelling in the header).
enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

/// The header spelling of `t`, e.g. "BF16".
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F64: return "F64";
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::I16: return "I16";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::BOOL: return "BOOL";
  }
  return "?";
}

/// Bytes per element of `t`.
inline std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    case DType::I8: case DType::U8: case DType::BOOL: return 1;
  }
  return 0;
}

/// The DType spelled `name` in a safetensors header, or nothing if unknown.
inline std::optional<DType> parse_dtype(const std::string& name) {
  for (DType t : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64,
                  DType::I32, DType::I16, DType::I8, DType::U8, DType::BOOL})
    if (name == dtype_name(t)) return t;
  return std::nullopt;
}

/// True for the types `convert_to_float` reads: F64, F32, F16, BF16.
inline bool is_floating(DType t) {
  return t == DType::F64 || t == DType::F32 || t == DType::F16 ||
         t == DType::BF16;
}

/// IEEE 754 binary16 bits -> float, exactly (every half is a float):
/// normals (-1)^s 2^(e-15) (1 + m/1024), subnormals (-1)^s 2^-14 (m/1024),
/// signed zeros, infinities, and NaNs with their payload kept.
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  std::uint32_t exponent = (h >> 10) & 0x1fu;
  std::uint32_t mantissa = h & 0x3ffu;
  std::uint32_t bits;
  if (exponent == 0x1f) {  // inf / NaN: all-ones float exponent
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {  // normal: rebias 15 -> 127
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {  // +-0
    bits = sign;
  } else {  // subnormal m 2^-24: shift the leading 1 into the implicit bit
    exponent = 113;  // the float exponent field of 2^-14
    while (!(mantissa & 0x400u)) {
      mantissa <<= 1;
      --exponent;
    }
    bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

/// bfloat16 bits -> float: bfloat16 is the upper half of a float32.
inline float bfloat16_to_float(std::uint16_t b) {
  const std::uint32_t bits = std::uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

/// double -> float rounded to nearest even, as IEEE 754 (and NumPy's
/// astype) does, including to +-inf past the float range, which a plain
/// cast leaves undefined in C++.
inline float double_to_float(double x) {
  constexpr double max = std::numeric_limits<float>::max();
  // Halfway between FLT_MAX and 2^128: from here on, round to infinity.
  constexpr double overflow = max + 0x1p103;
  if (std::isnan(x) || std::abs(x) <= max) return static_cast<float>(x);
  const float inf = std::numeric_limits<float>::infinity();
  if (std::abs(x) >= overflow) return x > 0 ? inf : -inf;
  return x > 0 ? float(max) : -float(max);
}

namespace detail {

template <class T>
T load_le(const unsigned char* p) {  // unaligned, little-endian host
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace detail

/// Converts n little-endian elements of floating type `t` starting at `src`
/// (any alignment) to float32 in dst. F32 is copied bit for bit; F16 and BF16
/// convert exactly; F64 rounds to nearest. Returns false for other types.
inline bool convert_to_float(DType t, const unsigned char* src, std::size_t n,
                             float* dst) {
  switch (t) {
    case DType::F32:
      if (n) std::memcpy(dst, src, n * sizeof(float));
      return true;
    case DType::F16:
      for (std::size_t i = 0; i < n; ++i)
        dst[i] = half_to_float(detail::load_le<std::uint16_t>(src + 2 * i));
      return true;
    case DType::BF16:
      for (std::size_t i = 0; i < n; ++i)
        dst[i] = bfloat16_to_float(detail::load_le<std::uint16_t>(src + 2 * i));
      return true;
    case DType::F64:
      for (std::size_t i = 0; i < n; ++i)
        dst[i] = double_to_float(detail::load_le<double>(src + 8 * i));
      return true;
    default:
      return false;
  }
}

namespace detail {

/// "[256, 64]"
template <class Int>
std::string shape_string(const std::vector<Int>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

/// Product of the dimensions, or nothing if it overflows `limit`. A zero
/// dimension makes the product 0 whatever the others are.
inline std::optional<std::uint64_t> checked_numel(
    const std::vector<std::int64_t>& shape,
    std::uint64_t limit = std::numeric_limits<std::uint64_t>::max()) {
  for (std::int64_t d : shape)
    if (d == 0) return 0;
  std::uint64_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0 || std::uint64_t(d) > limit / n) return std::nullopt;
    n *= std::uint64_t(d);
  }
  return n;
}

}  // namespace detail

}  // namespace ssm::io
