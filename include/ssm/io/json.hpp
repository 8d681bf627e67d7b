// JSON files as Hugging Face writes them (config.json, the sharded-weights
// index), parsed with nlohmann/json.
//
// Python floats that JSON cannot spell reach these files in two encodings:
// transformers >= 5 writes {"__float__": "Infinity"} (also "-Infinity",
// "NaN"); older versions and json.dumps write the bare tokens Infinity,
// -Infinity and NaN, which strict JSON parsers reject. `read_json` accepts
// both and `json_float` decodes either into a double.
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace ssm::io {

namespace detail {

/// Rewrites Python's bare NaN / Infinity / -Infinity tokens (outside string
/// literals) as {"__float__": "..."} objects, making the text strict JSON.
inline std::string encode_python_floats(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size())
        out += text[++i];  // the escaped character cannot end the string
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    bool replaced = false;
    for (const char* token : {"-Infinity", "Infinity", "NaN"})
      if (text.compare(i, std::strlen(token), token) == 0) {
        out += std::string("{\"__float__\": \"") + token + "\"}";
        i += std::strlen(token) - 1;
        replaced = true;
        break;
      }
    if (!replaced) out += c;
  }
  return out;
}

/// Deepest nesting of arrays and objects that the readers accept. Hugging
/// Face files nest three levels; the bound keeps nlohmann's recursive
/// functions (dump(), used in error messages) from exhausting the stack on
/// a hostile file: 100000 nested '[' (200 KB) were enough.
constexpr int max_json_depth = 64;

/// Parses the JSON text [begin, end); nothing if it nests deeper than
/// max_json_depth (the deeper values are discarded unbuilt). Throws
/// nlohmann::json::exception if it is not valid JSON (parse_error), or holds a
/// number beyond double's range (out_of_range, e.g. 1e400).
inline std::optional<nlohmann::json> parse_json_bounded(const char* begin, const char* end) {
  bool too_deep = false;
  nlohmann::json j = nlohmann::json::parse(
      begin, end, [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
        too_deep = too_deep || depth > max_json_depth;
        return !too_deep;
      });
  if (too_deep) return std::nullopt;
  return j;
}

}  // namespace detail

/// Parses the JSON file at `path` (bare NaN / Infinity tokens allowed, see
/// above). Throws std::runtime_error "<where>: <path>: ..." if the file
/// cannot be read, is not valid JSON or nests deeper than
/// detail::max_json_depth.
inline nlohmann::json read_json(const std::string& path,
                                const std::string& where = "ssm::io::read_json") {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(where + ": " + path + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw std::runtime_error(where + ": " + path + ": read error");
  const std::string strict = detail::encode_python_floats(text.str());
  std::optional<nlohmann::json> j;
  try {
    j = detail::parse_json_bounded(strict.data(), strict.data() + strict.size());
  } catch (const nlohmann::json::exception& e) {  // parse_error, out_of_range
    throw std::runtime_error(where + ": " + path + ": not valid JSON (" +
                             e.what() + ")");
  }
  if (!j)
    throw std::runtime_error(where + ": " + path + ": nests deeper than " +
                             std::to_string(detail::max_json_depth) + " levels");
  return std::move(*j);
}

/// The value of a JSON float: a number, or transformers' encoding
/// {"__float__": "Infinity" | "-Infinity" | "NaN"}. Nothing for anything else.
inline std::optional<double> json_float(const nlohmann::json& v) {
  if (v.is_number()) return v.get<double>();
  if (!v.is_object() || v.size() != 1 || !v.contains("__float__") ||
      !v["__float__"].is_string())
    return std::nullopt;
  const auto& s = v["__float__"].get_ref<const std::string&>();
  const double inf = std::numeric_limits<double>::infinity();
  if (s == "Infinity") return inf;
  if (s == "-Infinity") return -inf;
  if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
  return std::nullopt;
}

}  // namespace ssm::io
