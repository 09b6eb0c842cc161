// libFuzzer harness: the glyph cache reader (parse_glyphs in
// nsl/data/glyphs.hpp). The first byte chooses whether the CRC-32 is made
// valid (crc_mode.hpp).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "crc_mode.hpp"
#include "nsl/data/glyphs.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<unsigned char> bytes = nsl_fuzz::crc_mode_bytes(data, size);
  try {
    nsl::parse_glyphs(bytes.data(), bytes.size(), "fuzz.nslglyph");
  } catch (const nsl::Error&) {
  }
  return 0;
}
