// libFuzzer harness: load_npy's parser (nsl/io/npy.hpp), as float and as
// double. Every input must end in a tensor or an nsl::Error; anything else
// (a crash, a sanitizer report, another exception) is a finding.
#include <cstddef>
#include <cstdint>

#include "nsl/io/npy.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const char* bytes = reinterpret_cast<const char*>(data);
  try {
    nsl::parse_npy<float>(bytes, size, "fuzz.npy");
  } catch (const nsl::Error&) {
  }
  try {
    nsl::parse_npy<double>(bytes, size, "fuzz.npy");
  } catch (const nsl::Error&) {
  }
  return 0;
}
