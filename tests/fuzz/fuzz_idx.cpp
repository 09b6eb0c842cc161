// libFuzzer harness: load_idx's reader from memory (parse_idx_file in
// nsl/data/idx.hpp): plain or gzip-compressed IDX bytes, with the limit on
// what it keeps set to 1 MiB so that no input may legitimately use more.
#include <cstddef>
#include <cstdint>

#include "nsl/data/idx.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    nsl::parse_idx_file(data, size, "fuzz.idx", std::size_t(1) << 20);
  } catch (const nsl::Error&) {
  }
  return 0;
}
