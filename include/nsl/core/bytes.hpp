// nsl/core/bytes.hpp — the bytes of nsl's binary files: little-endian
// fields and the CRC-32 that closes each file. The file formats themselves
// live with their readers (nsl/io/checkpoint.hpp, nsl/data/glyphs.hpp); this
// header only says how one field becomes bytes and back, so that every format
// writes a u32 the same way on every host (byte by byte, least significant
// first, never a struct dump).
//
//   load_le_u16 / _u32 / _u64 / _f32(p)     the field stored at p
//   put_u8, put_le_u16 / _u32 / _u64 / _f32  appends a field to a byte sink
//   put_bytes(out, p, n)                    appends n raw bytes
//   put_string_le_u32 / _u16(out, s)        appends s's length (u32 / u16), then s
//   crc32_of(p, n, crc)                     zlib's CRC-32, continued from crc
//   hex32(v)                                "0x1234abcd", for checksum messages
//
// A byte sink is anything with `push_back` of one byte: std::string,
// std::vector<unsigned char>, or a buffered file writer (save_checkpoint's).
// f32 is the IEEE 754 single-precision bit pattern of the float.
//
// Users of this header link zlib (CMake: ZLIB::ZLIB, by hand: -lz).
#pragma once

#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "nsl/core/error.hpp"

namespace nsl {

// ---- reading: the field stored at p (p points at >= its size bytes) -------

inline std::uint16_t load_le_u16(const unsigned char* p) {
  return static_cast<std::uint16_t>(std::uint16_t(p[0]) | (std::uint16_t(p[1]) << 8));
}
inline std::uint32_t load_le_u32(const unsigned char* p) {
  return std::uint32_t(p[0]) | (std::uint32_t(p[1]) << 8) | (std::uint32_t(p[2]) << 16) |
         (std::uint32_t(p[3]) << 24);
}
inline std::uint64_t load_le_u64(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t(p[i]) << (8 * i);
  return v;
}
inline float load_le_f32(const unsigned char* p) {
  const std::uint32_t bits = load_le_u32(p);
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// ---- writing: appends the field's bytes to `out`, least significant first --

template <class Sink>
void put_u8(Sink& out, std::uint8_t v) {
  out.push_back(static_cast<typename Sink::value_type>(v));
}
template <class Sink>
void put_le_u16(Sink& out, std::uint16_t v) {
  for (int i = 0; i < 2; ++i) put_u8(out, static_cast<std::uint8_t>((v >> (8 * i)) & 0xFFu));
}
template <class Sink>
void put_le_u32(Sink& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) put_u8(out, static_cast<std::uint8_t>((v >> (8 * i)) & 0xFFu));
}
template <class Sink>
void put_le_u64(Sink& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) put_u8(out, static_cast<std::uint8_t>((v >> (8 * i)) & 0xFFu));
}
template <class Sink>
void put_le_f32(Sink& out, float v) {
  std::uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  put_le_u32(out, bits);
}
/// Appends the `n` bytes at `p` as they are.
template <class Sink>
void put_bytes(Sink& out, const void* p, std::size_t n) {
  const auto* bytes = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) put_u8(out, bytes[i]);
}
/// Appends s.size() as a u32, then s's bytes; fails (ErrorKind::argument) if
/// the length does not fit in 32 bits.
template <class Sink>
void put_string_le_u32(Sink& out, std::string_view s) {
  require(s.size() <= 0xFFFFFFFFu, ErrorKind::argument, "put_string_le_u32: a string of ", s.size(),
          " bytes does not fit a 32-bit length");
  put_le_u32(out, static_cast<std::uint32_t>(s.size()));
  put_bytes(out, s.data(), s.size());
}
/// Appends s.size() as a u16, then s's bytes; fails (ErrorKind::argument) if
/// the length does not fit in 16 bits.
template <class Sink>
void put_string_le_u16(Sink& out, std::string_view s) {
  require(s.size() <= 0xFFFFu, ErrorKind::argument, "put_string_le_u16: a string of ", s.size(),
          " bytes does not fit a 16-bit length");
  put_le_u16(out, static_cast<std::uint16_t>(s.size()));
  put_bytes(out, s.data(), s.size());
}

// ---- checksums ---------------------------------------------------------------

/// zlib's CRC-32 of the `n` bytes at `p`, continuing `crc` (0 to start):
/// crc32_of(b, n) == crc32_of(b + k, n - k, crc32_of(b, k)). Fed to zlib in
/// chunks of 1 GiB, since zlib takes a 32-bit length.
inline std::uint32_t crc32_of(const unsigned char* p, std::size_t n, std::uint32_t crc = 0) {
  uLong c = crc;
  constexpr std::size_t chunk = std::size_t(1) << 30;
  while (n > 0) {
    const std::size_t len = std::min(n, chunk);
    c = ::crc32(c, p, static_cast<uInt>(len));
    p += len;
    n -= len;
  }
  return static_cast<std::uint32_t>(c);
}

/// "0x" and the 8 lower-case hex digits of `v` ("0x0000beef").
inline std::string hex32(std::uint32_t v) {
  static const char digits[] = "0123456789abcdef";
  std::string s = "0x";
  for (int shift = 28; shift >= 0; shift -= 4) s += digits[(v >> shift) & 0xFu];
  return s;
}

}  // namespace nsl
