// libFuzzer harness: the CIFAR batch decoder (parse_cifar in
// nsl/data/cifar.hpp). The first byte chooses CIFAR-10 (even) or CIFAR-100
// (odd); the rest is the file.
#include <cstddef>
#include <cstdint>

#include "nsl/data/cifar.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  try {
    nsl::parse_cifar(data + 1, size - 1, "fuzz.bin", (data[0] & 1) != 0);
  } catch (const nsl::Error&) {
  }
  return 0;
}
