// A fuzzing aid for formats closed by a CRC-32 of every byte before it (the
// checkpoint and the glyph cache): random bytes almost never carry a valid
// checksum, so the parser would stop at it. The first input byte chooses:
// odd, the rest of the input with its last 4 bytes replaced by the CRC-32 of
// the bytes before them (the structure is parsed); even, the rest as it is
// (the checksum itself is tested).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "nsl/core/bytes.hpp"

namespace nsl_fuzz {

inline std::vector<unsigned char> crc_mode_bytes(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return {};
  std::vector<unsigned char> bytes(data + 1, data + size);
  if ((data[0] & 1) != 0 && bytes.size() >= 4) {
    const std::size_t body = bytes.size() - 4;
    const std::uint32_t crc = nsl::crc32_of(bytes.data(), body);
    for (int i = 0; i < 4; ++i) bytes[body + std::size_t(i)] = static_cast<unsigned char>(crc >> (8 * i));
  }
  return bytes;
}

}  // namespace nsl_fuzz
