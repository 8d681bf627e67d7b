// ssm/io/npy.hpp. Oracles: files numpy.save wrote (tests/data/io/npy_*.npy,
// by make_io_fixtures.py) with closed-form values (arange), and their bytes,
// which save_npy must reproduce exactly; malformed files are written here.
#include <ssm/io/npy.hpp>

#include "util.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef SSM_TEST_DATA_DIR
#error "define SSM_TEST_DATA_DIR as tests/data"
#endif

namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using Catch::Matchers::Message;
using ssm::io::DType;
using Shape = std::vector<std::int64_t>;

const std::string io_dir = std::string(SSM_TEST_DATA_DIR) + "/io";

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

struct TempDir {
  fs::path path = fs::temp_directory_path() /
                  ("ssm_test_io_npy_" + std::to_string(std::random_device{}()) + "_" +
                   std::to_string(test::rng()()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

ssm::io::NpyArray load(const std::string& name) {
  return ssm::io::load_npy(io_dir + "/" + name + ".npy");
}

// A version 1.0 file around `header` (no padding) and `data`.
std::string npy_bytes(const std::string& header, const std::string& data) {
  std::string out = "\x93NUMPY\x01";
  out += '\0';
  out += char(header.size() & 0xff);
  out += char(header.size() >> 8);
  return out + header + data;
}

}  // namespace

TEST_CASE("load_npy reads what numpy.save wrote", "[io][npy]") {
  auto a = load("npy_f4");
  CHECK(a.dtype == DType::F32);
  CHECK(a.shape == Shape{2, 3});
  CHECK(a.values<float>() == std::vector<float>{0, 0.25f, 0.5f, 0.75f, 1, 1.25f});
  CHECK(a.values<double>() == std::vector<double>{0, 0.25, 0.5, 0.75, 1, 1.25});
  const auto m = a.matrix<float>();
  CHECK(m.rows() == 2);
  CHECK(m(1, 0) == 0.75f);  // C order: row 1 starts at element 3

  CHECK(load("npy_f4_1d").shape == Shape{7});
  CHECK(load("npy_f4_1d").values<float>() == std::vector<float>{-3, -2, -1, 0, 1, 2, 3});
  CHECK(load("npy_f4_1d").matrix<float>().rows() == 1);
  a = load("npy_f4_0d");
  CHECK(a.shape.empty());
  CHECK(a.size() == 1);
  CHECK(a.values<float>() == std::vector<float>{2.5f});

  a = load("npy_f8");
  CHECK(a.dtype == DType::F64);
  const auto f8 = a.values<double>();
  for (int i = 0; i < 5; ++i) CHECK(f8[std::size_t(i)] == double(i) / 3);  // bit-exact
  CHECK(a.values<float>()[1] == float(1.0 / 3));

  a = load("npy_i8");
  CHECK(a.dtype == DType::I64);
  CHECK(a.shape == Shape{2, 2, 3});
  const auto i8 = a.values<std::int64_t>();
  for (int i = 0; i < 12; ++i) CHECK(i8[std::size_t(i)] == i - 5);
  CHECK(a.values<std::int32_t>()[0] == -5);
  CHECK(a.matrix<std::int64_t>().rows() == 4);

  a = load("npy_i4");
  CHECK(a.dtype == DType::I32);
  CHECK(a.values<std::int64_t>() == std::vector<std::int64_t>{0, 1000, 2000, 3000});
  CHECK(a.values<float>() == std::vector<float>{0, 1000, 2000, 3000});

  a = load("npy_i8_empty");
  CHECK(a.shape == Shape{0, 3});
  CHECK(a.size() == 0);
  CHECK(a.matrix<std::int64_t>().rows() == 0);

  a = load("npy_v2");  // format version 2.0: a 4-byte header length
  CHECK(a.shape == Shape{3, 2});
  CHECK(a.values<float>()[5] == 1.25f);

  REQUIRE_THROWS_MATCHES(load("npy_f4").values<std::int64_t>(), std::runtime_error,
                         Message("ssm::io::NpyArray::values: F32 data cannot be read as integers"));
  ssm::io::NpyArray big;
  big.dtype = DType::I64;
  big.shape = {1};
  big.bytes = {0, 0, 0, 0, 1, 0, 0, 0};  // 2^32
  REQUIRE_THROWS_MATCHES(big.values<std::int32_t>(), std::runtime_error,
                         Message("ssm::io::NpyArray::values: 4294967296 does not fit the "
                                 "requested integer type"));
}

TEST_CASE("save_npy writes numpy's bytes and round-trips", "[io][npy]") {
  TempDir dir;
  SECTION("byte-identical to numpy.save") {
    for (const char* name : {"npy_f4", "npy_f4_1d", "npy_f4_0d"}) {
      INFO(name);
      const auto a = load(name);
      const auto v = a.values<float>();
      ssm::io::save_npy(dir / "out.npy", a.shape, v.data());
      CHECK(read_file(dir / "out.npy") == read_file(io_dir + "/" + name + ".npy"));
    }
    for (const char* name : {"npy_i8", "npy_i8_empty"}) {
      INFO(name);
      const auto a = load(name);
      const auto v = a.values<std::int64_t>();
      ssm::io::save_npy(dir / "out.npy", a.shape, v.data());
      CHECK(read_file(dir / "out.npy") == read_file(io_dir + "/" + name + ".npy"));
    }
  }
  SECTION("random arrays, random shapes") {
    std::uniform_int_distribution<int> ndim(0, 4), dim(0, 5);
    std::normal_distribution<float> value;
    for (int trial = 0; trial < 50; ++trial) {
      Shape shape(std::size_t(ndim(test::rng())));
      std::size_t n = 1;
      for (auto& d : shape) n *= std::size_t(d = dim(test::rng()));
      std::vector<float> f(n);
      std::vector<std::int64_t> i(n);
      for (std::size_t k = 0; k < n; ++k) {
        f[k] = value(test::rng());
        i[k] = std::int64_t(test::rng()()) << 20;
      }
      ssm::io::save_npy(dir / "f.npy", shape, f.data());
      ssm::io::save_npy(dir / "i.npy", shape, i.data());
      const auto fa = ssm::io::load_npy(dir / "f.npy");
      const auto ia = ssm::io::load_npy(dir / "i.npy");
      REQUIRE(fa.shape == shape);
      REQUIRE(fa.values<float>() == f);
      REQUIRE(ia.shape == shape);
      REQUIRE(ia.values<std::int64_t>() == i);
      REQUIRE(read_file(dir / "f.npy").size() % 64 == n * 4 % 64);  // data 64-aligned
    }
  }
  SECTION("bad arguments") {
    const float x = 0;
    REQUIRE_THROWS_MATCHES(ssm::io::save_npy(dir / "x.npy", {2, -1}, &x), std::invalid_argument,
                           Message("ssm::io::save_npy: " + (dir / "x.npy") + ": bad shape [2, -1]"));
    REQUIRE_THROWS_MATCHES(ssm::io::save_npy(dir / "no/x.npy", {1}, &x), std::runtime_error,
                           Message("ssm::io::save_npy: " + (dir / "no/x.npy") + ": cannot create"));
  }
}

TEST_CASE("load_npy rejects unsupported and malformed files", "[io][npy]") {
  auto where = [](const std::string& path) { return "ssm::io::load_npy: " + path + ": "; };
  const std::string fortran = io_dir + "/npy_fortran.npy", big = io_dir + "/npy_big.npy",
                    f2 = io_dir + "/npy_f2.npy";
  REQUIRE_THROWS_MATCHES(ssm::io::load_npy(fortran), std::runtime_error,
                         Message(where(fortran) + "Fortran-order arrays are not supported"));
  REQUIRE_THROWS_MATCHES(ssm::io::load_npy(big), std::runtime_error,
                         Message(where(big) + "big-endian data ('>f4') is not supported"));
  REQUIRE_THROWS_MATCHES(ssm::io::load_npy(f2), std::runtime_error,
                         Message(where(f2) + "dtype '<f2' is not supported (<f4, <f8, <i8 or <i4)"));
  // an array whose dtype was set by hand to one load_npy never makes
  ssm::io::NpyArray half{ssm::io::DType::F16, {2}, std::vector<unsigned char>(4)};
  REQUIRE_THROWS_MATCHES(half.values<float>(), std::runtime_error,
                         Message("ssm::io::NpyArray::values: F16 data is not read (F32, F64, I32 or I64 only)"));

  TempDir dir;
  const std::string path = dir / "bad.npy";
  auto open = [&](const std::string& bytes) {
    write_file(path, bytes);
    ssm::io::load_npy(path);
  };
  const std::string good = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::string two(8, '\0');
  open(npy_bytes(good, two));  // the baseline is valid

  REQUIRE_THROWS_MATCHES(ssm::io::load_npy(dir / "none.npy"), std::runtime_error,
                         Message(where(dir / "none.npy") + "cannot open"));
  REQUIRE_THROWS_MATCHES(open("\x93NUM"), std::runtime_error,
                         Message(where(path) + "not a .npy file (no \\x93NUMPY magic)"));
  REQUIRE_THROWS_MATCHES(open("PK\x03\x04 not numpy at all"), std::runtime_error,
                         Message(where(path) + "not a .npy file (no \\x93NUMPY magic)"));
  std::string v4 = npy_bytes(good, two);
  v4[6] = 4;
  REQUIRE_THROWS_MATCHES(open(v4), std::runtime_error,
                         Message(where(path) + "unsupported format version 4"));
  std::string v2 = npy_bytes(good, two);
  v2[6] = 2;  // a 4-byte length whose upper bytes are header text
  REQUIRE_THROWS_WITH(open(v2), Contains("exceeds the file size"));
  std::string huge = npy_bytes(good, two);
  huge[8] = huge[9] = '\xff';
  REQUIRE_THROWS_MATCHES(open(huge), std::runtime_error,
                         Message(where(path) + "header length 65535 exceeds the file size"));

  const auto bad_dict = [&](const std::string& header, const std::string& what) {
    REQUIRE_THROWS_MATCHES(open(npy_bytes(header, two)), std::runtime_error,
                           Message(where(path) + "header dict " + what + ": " + header));
  };
  bad_dict("{'descr': '<f4', 'fortran_order': False}", "'descr', 'fortran_order' and 'shape' are required");
  bad_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}",
           "unexpected or repeated key 'x'");
  bad_dict("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
           "unexpected or repeated key 'descr'");
  bad_dict("{'descr': '<f4', 'fortran_order': maybe, 'shape': (2,)}",
           "fortran_order must be True or False");
  bad_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1)}",
           "shape must be a tuple of non-negative integers");
  bad_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
           "dimension too large");
  bad_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", "text after the dict");
  bad_dict("{'descr: '<f4'}", "expected ':'");
  bad_dict("['descr']", "expected '{'");
  bad_dict("{'descr': '<f4", "unterminated string");

  REQUIRE_THROWS_MATCHES(open(npy_bytes(good, std::string(7, '\0'))), std::runtime_error,
                         Message(where(path) + "7 data bytes, but shape [2] of '<f4' needs 8"));
  REQUIRE_THROWS_MATCHES(open(npy_bytes(good, std::string(9, '\0'))), std::runtime_error,
                         Message(where(path) + "9 data bytes, but shape [2] of '<f4' needs 8"));
  REQUIRE_THROWS_MATCHES(
      open(npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", two)),
      std::runtime_error,
      Message(where(path) + "8 data bytes, but shape [4294967296, 4294967296] of '<f8' needs more"));
}
