// libFuzzer target: arbitrary bytes as a safetensors file.
//
// The contract (ssm/io/safetensors.hpp): the parser accepts the bytes or
// throws std::runtime_error; what it accepts is safe to read. So a crash, a
// sanitizer report, another exception or a broken invariant below is a bug.
// The bytes are copied into an allocation of exactly their size, so ASan
// sees any read past the end. Built by scripts/fuzz.sh; replayed on the seed
// corpus by ctest (fuzz/replay_main.cpp).
#include <ssm/io/safetensors.hpp>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

void require(bool invariant) {
  if (!invariant) __builtin_trap();
}

void check(const ssm::io::SafetensorsFile& f, std::size_t file_size) {
  std::vector<float> values;
  for (const std::string& name : f.names()) {
    const ssm::io::TensorInfo& t = f.info(name);
    const std::size_t width = ssm::io::dtype_size(t.dtype);
    const auto numel = ssm::io::detail::checked_numel(t.shape);
    require(t.begin <= t.end && t.end <= file_size && numel && *numel * width == t.end - t.begin);
    // every byte of the tensor is readable (ASan checks the addresses)
    const unsigned char* p = f.bytes(name);
    unsigned char sum = 0;
    for (std::size_t i = 0; i < t.end - t.begin; ++i) sum = static_cast<unsigned char>(sum + p[i]);
    volatile unsigned char sink = sum;
    (void)sink;
    values.assign(t.numel(), 0.f);
    if (ssm::io::is_floating(t.dtype)) {
      f.load(name, t.shape, values.data());
    } else {
      try {
        f.load(name, values.data());
        require(false);  // integer tensors cannot be read as float32
      } catch (const std::runtime_error&) {
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto f = ssm::io::SafetensorsFile::from_memory("fuzz.safetensors", data, size);
    check(f, size);
  } catch (const std::runtime_error&) {
    // a rejected file: the documented outcome
  }
  return 0;
}
