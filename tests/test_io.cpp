// ssm/io: safetensors, checkpoint folders, model configs, .npy. Oracles:
// - numpy (tests/data/io/make_io_fixtures.py): the float32 value of every
//   F16 / BF16 / F64 fixture element, the sums of every tensor and array of
//   the transformers reference checkpoints, the bytes numpy.save writes;
// - the IEEE 754 definitions of binary16 and bfloat16, in long double, for
//   all 65536 bit patterns of each;
// - closed forms: arange values of the sharded fixture and of the .npy
//   fixtures, the shape formulas and defaults of transformers / mamba_ssm.
// Malformed files are written into a temporary folder by the tests.
#include <ssm/io/checkpoint.hpp>
#include <ssm/io/config.hpp>
#include <ssm/io/npy.hpp>
#include <ssm/io/safetensors.hpp>

#include "util.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#ifndef SSM_TEST_DATA_DIR
#error "define SSM_TEST_DATA_DIR as tests/data"
#endif

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Catch::Matchers::Contains;
using Catch::Matchers::Message;
using ssm::io::DType;

const std::string data_dir = SSM_TEST_DATA_DIR;
const std::string io_dir = data_dir + "/io";

std::uint32_t bits_of(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

// Equal as IEEE values: same bits, or both NaN of the same sign (a NaN's
// payload may be quieted by numpy's hardware conversions).
bool same_float(float a, float b) {
  if (std::isnan(a) || std::isnan(b))
    return std::isnan(a) && std::isnan(b) && std::signbit(a) == std::signbit(b);
  return bits_of(a) == bits_of(b);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  REQUIRE(out.flush());
}

// A fresh folder under the system's temporary directory, removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("ssm_test_io_" + std::to_string(std::random_device{}()) + "_" +
            std::to_string(test::rng()()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// A safetensors file: 8-byte little-endian length, header text, data.
std::string safetensors_bytes(const std::string& header, const std::string& data,
                              std::uint64_t length) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = char((length >> (8 * i)) & 0xff);
  return out + header + data;
}
std::string safetensors_bytes(const std::string& header, const std::string& data = "") {
  return safetensors_bytes(header, data, header.size());
}

// Sum of the values and of their magnitudes, in double.
std::pair<double, double> sums(const std::vector<float>& v) {
  double s = 0, a = 0;
  for (float x : v) s += x, a += std::abs(double(x));
  return {s, a};
}

}  // namespace

// ---------------------------------------------------------------------------
// Element conversions

TEST_CASE("half_to_float is IEEE binary16 for all 65536 bit patterns", "[io][dtype]") {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const int sign = h >> 15, exponent = (h >> 10) & 31, mantissa = h & 1023;
    const float got = ssm::io::half_to_float(std::uint16_t(h));
    INFO("half bits 0x" << std::hex << h);
    if (exponent == 31 && mantissa != 0) {
      REQUIRE(std::isnan(got));
      REQUIRE(std::signbit(got) == bool(sign));
      REQUIRE(((bits_of(got) >> 13) & 1023) == std::uint32_t(mantissa));  // payload kept
      continue;
    }
    // (-1)^s 2^-14 (m / 1024) for subnormals, (-1)^s 2^(e-15) (1 + m/1024) else
    long double v = exponent == 31  ? std::numeric_limits<long double>::infinity()
                    : exponent == 0 ? std::ldexp((long double)mantissa, -24)
                                    : std::ldexp((long double)(1024 + mantissa), exponent - 25);
    if (sign) v = -v;
    REQUIRE(bits_of(got) == bits_of(float(v)));
  }
}

TEST_CASE("bfloat16_to_float is bfloat16 for all 65536 bit patterns", "[io][dtype]") {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const int sign = b >> 15, exponent = (b >> 7) & 255, mantissa = b & 127;
    const float got = ssm::io::bfloat16_to_float(std::uint16_t(b));
    INFO("bfloat16 bits 0x" << std::hex << b);
    if (exponent == 255 && mantissa != 0) {
      REQUIRE(std::isnan(got));
      REQUIRE(std::signbit(got) == bool(sign));
      continue;
    }
    // (-1)^s 2^-126 (m / 128) for subnormals, (-1)^s 2^(e-127) (1 + m/128) else
    long double v = exponent == 255 ? std::numeric_limits<long double>::infinity()
                    : exponent == 0 ? std::ldexp((long double)mantissa, -133)
                                    : std::ldexp((long double)(128 + mantissa), exponent - 134);
    if (sign) v = -v;
    REQUIRE(bits_of(got) == bits_of(float(v)));
  }
}

TEST_CASE("double_to_float rounds to nearest, to infinity past the range", "[io][dtype]") {
  std::uniform_real_distribution<double> mantissa(-1, 1);
  std::uniform_int_distribution<int> exponent(-160, 130);
  for (int i = 0; i < 10000; ++i) {
    const double x = std::ldexp(mantissa(test::rng()), exponent(test::rng()));
    if (std::abs(x) <= std::numeric_limits<float>::max())  // a defined cast: the oracle
      REQUIRE(bits_of(ssm::io::double_to_float(x)) == bits_of(static_cast<float>(x)));
  }
  // numpy's astype(float32) at the boundaries: mixed.f64 below.
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(ssm::io::double_to_float(1e300) == inf);
  CHECK(ssm::io::double_to_float(-1e300) == -inf);
  CHECK(std::isnan(ssm::io::double_to_float(std::nan(""))));
}

// ---------------------------------------------------------------------------
// safetensors

TEST_CASE("SafetensorsFile reads every dtype as numpy does, at odd addresses", "[io][safetensors]") {
  const bool memory_map = GENERATE(true, false);
  const std::string path = io_dir + "/mixed.safetensors";
  const ssm::io::SafetensorsFile f(path, memory_map);
  CHECK(f.mapped() == memory_map);
  CHECK(f.names() == std::vector<std::string>{"bf16", "empty", "f16", "f32", "f64", "i64",
                                               "odd", "scalar"});
  CHECK(f.metadata() == std::map<std::string, std::string>{{"format", "pt"},
                                                           {"note", "ssm io fixture"}});
  CHECK(f.info("f16").dtype == DType::F16);
  CHECK(f.info("bf16").shape == std::vector<std::int64_t>{2, 3, 4});
  CHECK(f.bytes("odd")[0] == 7);
  // Every tensor after the 1-byte "odd" one starts at an odd offset.
  CHECK(f.info("f32").begin % 2 == 1);

  for (const char* name : {"f32", "f16", "bf16", "f64", "scalar"}) {
    INFO(name);
    const ssm::io::NpyArray expected = ssm::io::load_npy(io_dir + "/mixed." + name + ".npy");
    const std::vector<float> want = expected.values<float>();
    const std::vector<float> got = f.load(name);
    REQUIRE(f.info(name).shape == expected.shape);
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
      INFO("element " << i << ": " << got[i] << " vs numpy " << want[i]);
      CHECK(same_float(got[i], want[i]));
    }
  }
  CHECK(f.info("scalar").numel() == 1);
  CHECK(f.info("empty").numel() == 0);
  CHECK(f.load("empty").empty());

  REQUIRE_THROWS_MATCHES(f.load("i64"), std::runtime_error,
                         Message("ssm::io::SafetensorsFile: " + path +
                                 ": 'i64': dtype I64 cannot be read as float32"));
  std::vector<float> dst(15);
  REQUIRE_THROWS_MATCHES(f.load("f32", {5, 3}, dst.data()), std::runtime_error,
                         Message("ssm::io::SafetensorsFile: " + path +
                                 ": 'f32': expected [5, 3], got [3, 5]"));
  REQUIRE_THROWS_MATCHES(f.info("nope"), std::runtime_error,
                         Message("ssm::io::SafetensorsFile: " + path + ": 'nope': no such tensor"));
}

TEST_CASE("SafetensorsFile rejects malformed files, naming file and tensor", "[io][safetensors]") {
  const bool memory_map = GENERATE(true, false);
  TempDir dir;
  const std::string path = dir / "bad.safetensors";
  const std::string where = "ssm::io::SafetensorsFile: " + path + ": ";
  auto open = [&](const std::string& bytes) {
    write_file(path, bytes);
    ssm::io::SafetensorsFile f(path, memory_map);
  };
  auto entry = [](const std::string& fields) { return R"({"a": {)" + fields + "}}"; };
  const std::string f32x2 = R"("dtype": "F32", "shape": [2], )";

  SECTION("truncated") {
    REQUIRE_THROWS_MATCHES(open(std::string("\x05\0\0", 3)), std::runtime_error,
                           Message(where + "file is 3 bytes, shorter than the 8-byte header length"));
    REQUIRE_THROWS_MATCHES(open(""), std::runtime_error,
                           Message(where + "file is 0 bytes, shorter than the 8-byte header length"));
  }
  SECTION("header length past the end of the file") {
    REQUIRE_THROWS_MATCHES(open(safetensors_bytes("{}", "", std::uint64_t(1) << 40)),
                           std::runtime_error,
                           Message(where + "header length 1099511627776 exceeds the 2 bytes after it"));
    REQUIRE_THROWS_MATCHES(open(safetensors_bytes("{}", "", 3)), std::runtime_error,
                           Message(where + "header length 3 exceeds the 2 bytes after it"));
  }
  SECTION("header length over the cap (a sparse 100 MiB file)") {
    if (!memory_map) return;  // reading it would allocate 100 MiB
    const std::uint64_t n = ssm::io::SafetensorsFile::max_header_size + 1;
    write_file(path, safetensors_bytes("{}", "", n));
    fs::resize_file(path, 8 + n);
    REQUIRE_THROWS_MATCHES(ssm::io::SafetensorsFile(path), std::runtime_error,
                           Message(where + "header length 104857601 exceeds the limit of 104857600 bytes"));
  }
  SECTION("header not JSON, or not an object") {
    REQUIRE_THROWS_WITH(open(safetensors_bytes(R"({"a": )")), Contains(where + "header is not valid JSON ("));
    REQUIRE_THROWS_MATCHES(open(safetensors_bytes("[1, 2]")), std::runtime_error,
                           Message(where + "header is not a JSON object"));
  }
  SECTION("entry fields missing or ill-typed") {
    REQUIRE_THROWS_MATCHES(open(safetensors_bytes(R"({"a": 3})")), std::runtime_error,
                           Message(where + "'a': entry is not an object"));
    REQUIRE_THROWS_MATCHES(open(safetensors_bytes(entry(R"("shape": [], "data_offsets": [0, 0])"))),
                           std::runtime_error, Message(where + "'a': 'dtype' missing or not a string"));
    REQUIRE_THROWS_MATCHES(open(safetensors_bytes(entry(R"("dtype": 4, "shape": [])"))),
                           std::runtime_error, Message(where + "'a': 'dtype' missing or not a string"));
    REQUIRE_THROWS_MATCHES(open(safetensors_bytes(entry(R"("dtype": "F32", "shape": 2)"))),
                           std::runtime_error, Message(where + "'a': 'shape' missing or not a list"));
    REQUIRE_THROWS_MATCHES(open(safetensors_bytes(entry(R"("dtype": "F32", "shape": [2.5])"))),
                           std::runtime_error, Message(where + "'a': 'shape' holds a non-integer 2.5"));
    REQUIRE_THROWS_MATCHES(open(safetensors_bytes(entry(f32x2 + R"("data_offsets": [0])"))),
                           std::runtime_error,
                           Message(where + "'a': 'data_offsets' must be [begin, end] with "
                                           "non-negative integers, got [0]"));
    REQUIRE_THROWS_MATCHES(open(safetensors_bytes(entry(f32x2 + R"("data_offsets": [-1, 7])"))),
                           std::runtime_error,
                           Message(where + "'a': 'data_offsets' must be [begin, end] with "
                                           "non-negative integers, got [-1,7]"));
    REQUIRE_THROWS_MATCHES(open(safetensors_bytes(entry(R"("dtype": "F32", "shape": [2])"))),
                           std::runtime_error,
                           Message(where + "'a': 'data_offsets' must be [begin, end] with "
                                           "non-negative integers, got null"));
  }
  SECTION("unknown dtype") {
    REQUIRE_THROWS_MATCHES(open(safetensors_bytes(entry(R"("dtype": "F8_E4M3", "shape": [])"))),
                           std::runtime_error, Message(where + "'a': unknown dtype 'F8_E4M3'"));
  }
  SECTION("negative or overflowing shape") {
    REQUIRE_THROWS_MATCHES(
        open(safetensors_bytes(entry(R"("dtype": "F32", "shape": [2, -3], "data_offsets": [0, 0])"))),
        std::runtime_error, Message(where + "'a': negative dimension -3 in 'shape'"));
    // 2^32 * 2^32 * 4 bytes: the product wraps to 0 in 64 bits
    REQUIRE_THROWS_MATCHES(
        open(safetensors_bytes(entry(
            R"("dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0])"))),
        std::runtime_error,
        Message(where + "'a': shape [4294967296, 4294967296] overflows the element count"));
    REQUIRE_THROWS_MATCHES(
        open(safetensors_bytes(entry(
            R"("dtype": "F64", "shape": [2305843009213693952], "data_offsets": [0, 0])"))),
        std::runtime_error,
        Message(where + "'a': shape [2305843009213693952] overflows the element count"));
  }
  SECTION("offsets reversed, past the data, or not the tensor's size") {
    const std::string data(8, '\x01');
    REQUIRE_THROWS_MATCHES(open(safetensors_bytes(entry(f32x2 + R"("data_offsets": [8, 0])"), data)),
                           std::runtime_error,
                           Message(where + "'a': data_offsets [8, 0]: begin > end"));
    REQUIRE_THROWS_MATCHES(open(safetensors_bytes(entry(f32x2 + R"("data_offsets": [4, 12])"), data)),
                           std::runtime_error,
                           Message(where + "'a': data_offsets [4, 12] past the end of the data "
                                           "area (8 bytes)"));
    REQUIRE_THROWS_MATCHES(
        open(safetensors_bytes(entry(R"("dtype": "F32", "shape": [3], "data_offsets": [0, 8])"), data)),
        std::runtime_error,
        Message(where + "'a': data_offsets [0, 8] hold 8 bytes, but shape [3] of F32 needs 12"));
    REQUIRE_THROWS_MATCHES(
        open(safetensors_bytes(entry(R"("dtype": "BF16", "shape": [], "data_offsets": [0, 4])"), data)),
        std::runtime_error,
        Message(where + "'a': data_offsets [0, 4] hold 4 bytes, but shape [] of BF16 needs 2"));
  }
  SECTION("overlapping tensors") {
    const std::string header =
        R"({"b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},)"
        R"( "a": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}})";
    REQUIRE_THROWS_MATCHES(open(safetensors_bytes(header, std::string(12, '\0'))),
                           std::runtime_error,
                           Message(where + "'a' and 'b' overlap in the data area"));
  }
  SECTION("metadata not string -> string") {
    REQUIRE_THROWS_MATCHES(open(safetensors_bytes(R"({"__metadata__": [1]})")), std::runtime_error,
                           Message(where + "'__metadata__': not an object"));
    REQUIRE_THROWS_MATCHES(open(safetensors_bytes(R"({"__metadata__": {"n": 1}})")),
                           std::runtime_error,
                           Message(where + "'__metadata__': 'n': value is not a string"));
  }
  SECTION("valid edge cases: no tensors, empty tensors sharing an offset, padding") {
    write_file(path, safetensors_bytes("{}   "));
    CHECK(ssm::io::SafetensorsFile(path, memory_map).names().empty());
    const std::string header =
        R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
        R"( "e": {"dtype": "F16", "shape": [0, 3], "data_offsets": [2, 2]}})";
    write_file(path, safetensors_bytes(header, std::string("\0\0\x80\x3f", 4)));
    const ssm::io::SafetensorsFile f(path, memory_map);
    CHECK(f.load("a") == std::vector<float>{1.0f});
    CHECK(f.info("e").numel() == 0);
  }
  SECTION("missing file, folder") {
    const std::string missing = dir / "missing.safetensors";
    REQUIRE_THROWS_MATCHES(ssm::io::SafetensorsFile(missing, memory_map), std::runtime_error,
                           Message("ssm::io::SafetensorsFile: " + missing + ": no such file"));
    REQUIRE_THROWS_MATCHES(ssm::io::SafetensorsFile(dir.path.string(), memory_map),
                           std::runtime_error,
                           Message("ssm::io::SafetensorsFile: " + dir.path.string() +
                                   ": not a regular file"));
  }
}

// ---------------------------------------------------------------------------
// The transformers reference checkpoints

TEST_CASE("Checkpoint loads the reference checkpoints as numpy reads them", "[io][checkpoint]") {
  const json expected = json::parse(read_file(io_dir + "/tiny_expected.json"))["cases"];
  const std::string name = GENERATE(as<std::string>(), "mamba-tiny", "mamba2-tiny");
  const std::string folder = data_dir + "/" + name;
  const ssm::io::Checkpoint ckpt(folder);
  const json& tensors = expected[name]["tensors"];

  std::vector<std::string> names;
  for (const auto& kv : tensors.items()) names.push_back(kv.key());
  REQUIRE(ckpt.names() == names);
  for (const auto& kv : tensors.items()) {
    INFO(name << ": " << kv.key());
    const auto shape = kv.value()["shape"].get<std::vector<std::int64_t>>();
    REQUIRE(ckpt.shape(kv.key()) == shape);
    REQUIRE(ckpt.dtype(kv.key()) == DType::F32);
    const std::vector<float> v = ckpt.load(kv.key(), shape);
    // numpy sums pairwise, we in order: both in double from the same float32
    // values, so they agree to a few ulps of the sum of magnitudes.
    const auto [sum, abs_sum] = sums(v);
    CHECK(abs_sum == Approx(kv.value()["abs_sum"].get<double>()).epsilon(1e-13));
    CHECK(sum == Approx(kv.value()["sum"].get<double>()).margin(1e-13 * abs_sum));
    CHECK(v.front() == kv.value()["first"].get<float>());
    CHECK(v.back() == kv.value()["last"].get<float>());
  }

  SECTION("the reference outputs (.npy)") {
    for (const auto& kv : expected[name]["npy"].items()) {
      INFO(kv.key());
      const ssm::io::NpyArray a = ssm::io::load_npy(folder + "/" + kv.key());
      CHECK(a.shape == kv.value()["shape"].get<std::vector<std::int64_t>>());
      const bool is_float = kv.value()["dtype"] == "<f4";
      CHECK(a.dtype == (is_float ? DType::F32 : DType::I64));
      const auto [sum, abs_sum] = sums(a.values<float>());
      CHECK(sum == Approx(kv.value()["sum"].get<double>()).margin(1e-13 * abs_sum));
      if (!is_float) {
        const auto ids = a.values<std::int64_t>();
        CHECK(ids.front() == kv.value()["first"].get<std::int64_t>());
        CHECK(ids.back() == kv.value()["last"].get<std::int64_t>());
      }
    }
    const auto shape = expected[name]["npy"]["logits.npy"]["shape"];
    const auto logits = ssm::io::load_npy(folder + "/logits.npy").matrix<float>();
    // (batch, seqlen, vocab) -> (batch * seqlen) x vocab
    CHECK(logits.rows() == shape[0].get<int>() * shape[1].get<int>());
    CHECK(logits.cols() == shape[2].get<int>());
    CHECK(logits(0, 0) == expected[name]["npy"]["logits.npy"]["first"].get<float>());
  }

  SECTION("Eigen helpers, alternative names, shape errors") {
    const std::string emb = ckpt.find_first({"backbone.embedding.weight",     // state-spaces
                                             "backbone.embeddings.weight"});  // transformers
    CHECK(emb == "backbone.embeddings.weight");
    const auto shape = ckpt.shape(emb);
    const auto flat = ckpt.load(emb, shape);
    const auto m = ckpt.matrix(emb, shape[0], shape[1]);
    for (Eigen::Index i : {Eigen::Index(0), shape[0] / 2, shape[0] - 1})
      for (Eigen::Index j : {Eigen::Index(0), Eigen::Index(1), shape[1] - 1})
        CHECK(m(i, j) == flat[std::size_t(i * shape[1] + j)]);  // row-major
    const Eigen::VectorXf norm = ckpt.vector("backbone.norm_f.weight", 64);
    CHECK(norm(63) == tensors["backbone.norm_f.weight"]["last"].get<float>());

    const std::string file = folder + "/model.safetensors";
    REQUIRE_THROWS_MATCHES(ckpt.vector("backbone.norm_f.weight", 128), std::runtime_error,
                           Message("ssm::io::Checkpoint: " + file +
                                   ": 'backbone.norm_f.weight': expected [128], got [64]"));
    REQUIRE_THROWS_WITH(ckpt.matrix(emb, shape[1], shape[0]), Contains("': expected [64, "));
    REQUIRE_THROWS_MATCHES(ckpt.vector("lm_head.weight", 64), std::runtime_error,
                           Message("ssm::io::Checkpoint: " + folder + ": no tensor 'lm_head.weight'"));
    REQUIRE_THROWS_MATCHES(ckpt.find_first({"x", "y"}), std::runtime_error,
                           Message("ssm::io::Checkpoint: " + folder + ": none of 'x', 'y' found"));
  }
}

TEST_CASE("configs of the reference checkpoints predict their tensor shapes", "[io][config]") {
  SECTION("mamba-tiny") {
    const ssm::io::Checkpoint ckpt(data_dir + "/mamba-tiny");
    CHECK(ssm::detect_model_type(ckpt.config(), ckpt.config_path()) == ssm::ModelType::mamba);
    const auto c = ssm::MambaConfig::from_json(ckpt.config(), ckpt.config_path());
    CHECK(c.d_model == 64);
    CHECK(c.d_inner == 128);
    CHECK(c.d_state == 16);
    CHECK(c.d_conv == 4);
    CHECK(c.dt_rank == 4);
    CHECK(c.n_layer == 2);
    CHECK(c.vocab_size == 256);
    CHECK(!c.bias);
    CHECK(c.conv_bias);
    CHECK(c.tie_embeddings);
    CHECK(c.norm_eps == 1e-5);
    using S = std::vector<std::int64_t>;
    const std::string l = "backbone.layers.1.mixer.";
    CHECK(ckpt.shape("backbone.embeddings.weight") == S{c.vocab_size, c.d_model});
    CHECK(ckpt.shape(l + "in_proj.weight") == S{2 * c.d_inner, c.d_model});
    CHECK(ckpt.shape(l + "conv1d.weight") == S{c.d_inner, 1, c.d_conv});
    CHECK(ckpt.shape(l + "x_proj.weight") == S{c.x_proj_size(), c.d_inner});
    CHECK(ckpt.shape(l + "dt_proj.weight") == S{c.d_inner, c.dt_rank});
    CHECK(ckpt.shape(l + "A_log") == S{c.d_inner, c.d_state});
    CHECK(ckpt.shape(l + "out_proj.weight") == S{c.d_model, c.d_inner});
    REQUIRE_THROWS_MATCHES(ssm::Mamba2Config::from_json(ckpt.config(), ckpt.config_path()),
                           std::runtime_error,
                           Message("ssm::Mamba2Config: " + ckpt.config_path() +
                                   ": describes a Mamba-1 model, not Mamba-2"));
  }
  SECTION("mamba2-tiny") {
    const ssm::io::Checkpoint ckpt(data_dir + "/mamba2-tiny");
    CHECK(ssm::detect_model_type(ckpt.config(), ckpt.config_path()) == ssm::ModelType::mamba2);
    const auto c = ssm::Mamba2Config::from_json(ckpt.config(), ckpt.config_path());
    CHECK(c.d_model == 64);
    CHECK(c.d_inner == 128);
    CHECK(c.nheads == 8);
    CHECK(c.headdim == 16);
    CHECK(c.ngroups == 1);
    CHECK(c.d_state == 16);
    CHECK(c.chunk_size == 16);
    CHECK(c.dt_min_limit == 0.0);
    CHECK(c.dt_max_limit == std::numeric_limits<double>::infinity());  // {"__float__": "Infinity"}
    CHECK(c.vocab_size == 128);
    CHECK(c.tie_embeddings);
    CHECK(c.gated_norm);
    CHECK(!c.norm_before_gate);
    using S = std::vector<std::int64_t>;
    const std::string l = "backbone.layers.0.mixer.";
    CHECK(ckpt.shape(l + "in_proj.weight") == S{c.in_proj_size(), c.d_model});
    CHECK(ckpt.shape(l + "conv1d.weight") == S{c.conv_dim(), 1, c.d_conv});
    CHECK(ckpt.shape(l + "A_log") == S{c.nheads});
    CHECK(ckpt.shape(l + "norm.weight") == S{c.d_inner});
    REQUIRE_THROWS_MATCHES(ssm::MambaConfig::from_json(ckpt.config(), ckpt.config_path()),
                           std::runtime_error,
                           Message("ssm::MambaConfig: " + ckpt.config_path() +
                                   ": describes a Mamba-2 model, not Mamba"));
  }
}

// ---------------------------------------------------------------------------
// Sharded checkpoints and folder errors

TEST_CASE("Checkpoint reads sharded weights through the index", "[io][checkpoint]") {
  const std::string folder = io_dir + "/sharded";
  const ssm::io::Checkpoint ckpt(folder);
  const std::vector<std::string> order = {  // index order: tensor k holds arange + 100 k
      "backbone.embeddings.weight", "backbone.layers.0.mixer.A_log",
      "backbone.layers.0.mixer.conv1d.weight", "backbone.norm_f.weight"};
  CHECK(ckpt.names() == std::vector<std::string>{order[0], order[1], order[2], order[3]});
  CHECK(!ckpt.contains("unlisted"));  // in a shard, not in the index
  CHECK(ckpt.dtype(order[1]) == DType::F16);
  for (std::size_t k = 0; k < order.size(); ++k) {
    const auto v = ckpt.load(order[k], ckpt.shape(order[k]));
    for (std::size_t i = 0; i < v.size(); ++i) REQUIRE(v[i] == float(i + 100 * k));
  }
  const auto a_log = ckpt.matrix(order[1], 16, 4);
  CHECK(a_log(3, 2) == 100 + 3 * 4 + 2);
  REQUIRE_THROWS_MATCHES(ckpt.matrix(order[2], 16, 3), std::runtime_error,
                         Message("ssm::io::Checkpoint: " + folder + "/model-00002-of-00002.safetensors"
                                 ": 'backbone.layers.0.mixer.conv1d.weight': expected [16, 3], got [16, 1, 3]"));

  const auto c = ssm::MambaConfig::from_json(ckpt.config(), ckpt.config_path());
  CHECK(c.d_inner == 16);  // intermediate_size
  CHECK(c.dt_rank == 1);   // "auto": ceil(8 / 16)
  CHECK(c.d_conv == 3);
  CHECK(c.norm_eps == 1e-6);
}

TEST_CASE("Checkpoint reports missing and inconsistent folders", "[io][checkpoint]") {
  TempDir dir;
  const std::string folder = dir.path.string(), where = "ssm::io::Checkpoint: ";
  REQUIRE_THROWS_MATCHES(ssm::io::Checkpoint(""), std::runtime_error,
                         Message(where + "the folder name is empty"));
  REQUIRE_THROWS_MATCHES(ssm::io::Checkpoint(dir / "nope"), std::runtime_error,
                         Message(where + (dir / "nope") + ": no such folder"));
  write_file(dir / "file", "x");
  REQUIRE_THROWS_MATCHES(ssm::io::Checkpoint(dir / "file"), std::runtime_error,
                         Message(where + (dir / "file") + ": not a folder"));
  REQUIRE_THROWS_MATCHES(ssm::io::Checkpoint(folder), std::runtime_error,
                         Message(where + folder + ": no config.json"));
  write_file(dir / "config.json", "{\"model_type\": ");
  REQUIRE_THROWS_WITH(ssm::io::Checkpoint(folder), Contains(where + (dir / "config.json") + ": not valid JSON ("));
  write_file(dir / "config.json", "[1]");
  REQUIRE_THROWS_MATCHES(ssm::io::Checkpoint(folder), std::runtime_error,
                         Message(where + (dir / "config.json") + ": not a JSON object"));
  write_file(dir / "config.json", read_file(io_dir + "/sharded/config.json"));
  REQUIRE_THROWS_MATCHES(ssm::io::Checkpoint(folder), std::runtime_error,
                         Message(where + folder +
                                 ": no model.safetensors or model.safetensors.index.json"));

  const std::string shard1 = "model-00001-of-00002.safetensors";
  fs::copy_file(io_dir + "/sharded/" + shard1, dir / shard1);
  const std::string index = dir / "model.safetensors.index.json";
  auto with_index = [&](const std::string& text) {
    write_file(index, text);
    ssm::io::Checkpoint ckpt(folder);
  };
  REQUIRE_THROWS_MATCHES(with_index(R"({"metadata": {}})"), std::runtime_error,
                         Message(where + index + ": no \"weight_map\" object"));
  REQUIRE_THROWS_MATCHES(with_index(R"({"weight_map": {"backbone.norm_f.weight": 1}})"),
                         std::runtime_error,
                         Message(where + index + ": 'backbone.norm_f.weight': the shard name is not a string"));
  REQUIRE_THROWS_MATCHES(with_index(R"({"weight_map": {"w": "../model.safetensors"}})"),
                         std::runtime_error,
                         Message(where + index + ": 'w': bad shard name '../model.safetensors'"));
  REQUIRE_THROWS_MATCHES(with_index(R"({"weight_map": {"w": "model-00002-of-00002.safetensors"}})"),
                         std::runtime_error,
                         Message("ssm::io::SafetensorsFile: " + (dir / "model-00002-of-00002.safetensors") +
                                 ": no such file"));
  REQUIRE_THROWS_MATCHES(
      with_index(R"({"weight_map": {"backbone.norm_f.weight": ")" + shard1 + "\"}}"),
      std::runtime_error,
      Message(where + index + ": 'backbone.norm_f.weight' is mapped to " + shard1 +
              ", which does not hold it"));
  with_index(R"({"weight_map": {"backbone.layers.0.mixer.A_log": ")" + shard1 + "\"}}");
  CHECK(ssm::io::Checkpoint(folder).names() == std::vector<std::string>{"backbone.layers.0.mixer.A_log"});
}
