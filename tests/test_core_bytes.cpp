#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "nsl/core/bytes.hpp"

TEST_CASE("crc32_of is zlib's CRC-32: the standard check values") {
  const std::string check = "123456789";
  CHECK(nsl::crc32_of(reinterpret_cast<const unsigned char*>(check.data()), check.size()) == 0xCBF43926u);
  const std::string fox = "The quick brown fox jumps over the lazy dog";
  CHECK(nsl::crc32_of(reinterpret_cast<const unsigned char*>(fox.data()), fox.size()) == 0x414FA339u);
  CHECK(nsl::crc32_of(nullptr, 0) == 0u);
}

TEST_CASE("crc32_of continues a running checksum: any split gives the whole's") {
  std::vector<unsigned char> bytes(1000);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(i * 37 + 11);
  const std::uint32_t whole = nsl::crc32_of(bytes.data(), bytes.size());
  for (std::size_t k : {std::size_t(0), std::size_t(1), std::size_t(499), bytes.size()})
    CHECK(nsl::crc32_of(bytes.data() + k, bytes.size() - k, nsl::crc32_of(bytes.data(), k)) == whole);
}

TEST_CASE("fields are written least significant byte first, whatever the host") {
  std::string b;
  nsl::put_u8(b, 0xAB);
  nsl::put_le_u16(b, 0x0102);
  nsl::put_le_u32(b, 0x01020304u);
  nsl::put_le_u64(b, 0x0102030405060708ull);
  nsl::put_le_f32(b, 1.5f);  // IEEE 754: 0x3FC00000
  const std::string expected("\xAB"
                             "\x02\x01"
                             "\x04\x03\x02\x01"
                             "\x08\x07\x06\x05\x04\x03\x02\x01"
                             "\x00\x00\xC0\x3F",
                             1 + 2 + 4 + 8 + 4);
  CHECK(b == expected);
}

TEST_CASE("every field reads back what was written, into a string or a byte vector") {
  const std::uint16_t u16s[] = {0, 1, 0x7FFF, 0xFFFF};
  const std::uint32_t u32s[] = {0, 1, 0x80000000u, 0xFFFFFFFFu, 0xDEADBEEFu};
  const std::uint64_t u64s[] = {0, 1, 0x8000000000000000ull, ~0ull, 0x0123456789ABCDEFull};
  const float f32s[] = {0.0f, -0.0f, 1.0f, -3.25e-7f, std::numeric_limits<float>::max(),
                        std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::infinity()};
  std::vector<unsigned char> v;
  for (auto x : u16s) nsl::put_le_u16(v, x);
  for (auto x : u32s) nsl::put_le_u32(v, x);
  for (auto x : u64s) nsl::put_le_u64(v, x);
  for (auto x : f32s) nsl::put_le_f32(v, x);
  nsl::put_le_f32(v, std::numeric_limits<float>::quiet_NaN());
  REQUIRE(v.size() == 4 * 2 + 5 * 4 + 5 * 8 + 8 * 4);

  std::string s;  // the same bytes through a char sink
  for (auto x : u16s) nsl::put_le_u16(s, x);
  for (auto x : u32s) nsl::put_le_u32(s, x);
  for (auto x : u64s) nsl::put_le_u64(s, x);
  for (auto x : f32s) nsl::put_le_f32(s, x);
  nsl::put_le_f32(s, std::numeric_limits<float>::quiet_NaN());
  CHECK(std::memcmp(s.data(), v.data(), v.size()) == 0);

  const unsigned char* p = v.data();
  for (auto x : u16s) {
    CHECK(nsl::load_le_u16(p) == x);
    p += 2;
  }
  for (auto x : u32s) {
    CHECK(nsl::load_le_u32(p) == x);
    p += 4;
  }
  for (auto x : u64s) {
    CHECK(nsl::load_le_u64(p) == x);
    p += 8;
  }
  for (auto x : f32s) {
    const float y = nsl::load_le_f32(p);
    CHECK(std::memcmp(&x, &y, sizeof x) == 0);  // bit for bit: -0 stays -0
    p += 4;
  }
  CHECK(std::isnan(nsl::load_le_f32(p)));
}

TEST_CASE("strings are written after their length, as a u32 or a u16") {
  std::string b;
  nsl::put_string_le_u32(b, "abc");
  nsl::put_string_le_u16(b, "xy");
  nsl::put_string_le_u16(b, "");
  CHECK(b == std::string("\x03\x00\x00\x00"
                         "abc"
                         "\x02\x00"
                         "xy"
                         "\x00\x00",
                         4 + 3 + 2 + 2 + 2));
  std::vector<unsigned char> v;
  nsl::put_bytes(v, "\x01\x02\x03", 3);
  CHECK(v == std::vector<unsigned char>{1, 2, 3});
}

TEST_CASE("a string too long for a u16 length is an argument error, and nothing is written") {
  std::string b;
  CHECK_THROWS_WITH_AS(nsl::put_string_le_u16(b, std::string(65536, 'a')),
                       "put_string_le_u16: a string of 65536 bytes does not fit a 16-bit length", nsl::ArgumentError);
  CHECK(b.empty());
  nsl::put_string_le_u16(b, std::string(65535, 'a'));
  CHECK(b.size() == 2 + 65535);
  CHECK(nsl::load_le_u16(reinterpret_cast<const unsigned char*>(b.data())) == 65535);
}

TEST_CASE("hex32 writes a checksum as 0x and eight hex digits") {
  CHECK(nsl::hex32(0) == "0x00000000");
  CHECK(nsl::hex32(0xBEEFu) == "0x0000beef");
  CHECK(nsl::hex32(0xCBF43926u) == "0xcbf43926");
}
