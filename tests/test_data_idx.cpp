// Tests of nsl/data/idx.hpp: IDX files built in memory and in a temporary
// directory, plain and gzip-compressed; every malformed file failing with a
// FormatError that says what is wrong; and, when it is installed, the real
// Fashion-MNIST test set.
#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "nsl/data/idx.hpp"

namespace {

namespace fs = std::filesystem;
using nsl::Tensor;

const char* const fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";

/// A fresh directory under the system temp dir, removed with its content.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    const auto tick = std::chrono::steady_clock::now().time_since_epoch().count();
    // ctest runs test cases in parallel processes: the clock and a random
    // number keep their directories apart.
    path = fs::temp_directory_path() /
           ("nsl_test_idx_" + std::to_string(tick) + "_" + std::to_string(std::random_device{}()) +
            "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path / name).string(); }
};

/// An IDX file: zero, zero, type, rank, big-endian dims, then `data`.
std::string idx_bytes(unsigned type, const std::vector<std::uint32_t>& dims,
                      const std::string& data) {
  std::string s;
  s += '\0';
  s += '\0';
  s += static_cast<char>(type);
  s += static_cast<char>(dims.size());
  for (std::uint32_t d : dims)
    for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((d >> shift) & 0xFFu);
  return s + data;
}

/// `n` bytes 0, 1, 2, ... (mod 256).
std::string ramp(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i % 256);
  return s;
}

std::string images_file(std::uint32_t n, std::uint32_t h, std::uint32_t w) {
  return idx_bytes(0x08, {n, h, w}, ramp(std::size_t(n) * h * w));
}
std::string labels_file(const std::vector<int>& labels) {
  std::string data;
  for (int l : labels) data += static_cast<char>(l);
  return idx_bytes(0x08, {std::uint32_t(labels.size())}, data);
}

void write_plain(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}
/// Writes `bytes` gzip-compressed with zlib's gz* functions.
void write_gzip(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  if (!bytes.empty())
    REQUIRE(gzwrite(f, bytes.data(), unsigned(bytes.size())) == int(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}
std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
/// `bytes` gzip-compressed, in memory.
std::string gzip_of(const std::string& bytes) {
  TempDir dir;
  write_gzip(dir.file("x.gz"), bytes);
  return read_file(dir.file("x.gz"));
}

nsl::IdxArray parse(const std::string& bytes) {
  return nsl::parse_idx(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                        "mem.idx");
}

/// The message of the FormatError that parsing `bytes` raises ("" if none).
std::string format_error_of(const std::string& bytes) {
  try {
    parse(bytes);
  } catch (const nsl::FormatError& e) {
    return e.what();
  }
  return "";
}

/// The kind and message of the nsl::Error that `f()` raises.
template <class F>
std::pair<nsl::ErrorKind, std::string> error_of(F&& f) {
  try {
    f();
  } catch (const nsl::Error& e) {
    return {e.kind(), e.what()};
  }
  FAIL("no nsl::Error was raised");
  return {nsl::ErrorKind::state, ""};
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string as_string(const std::vector<unsigned char>& v) {
  return std::string(v.begin(), v.end());
}

}  // namespace

TEST_CASE("parse_idx reads the dimensions and the bytes that follow them") {
  SUBCASE("rank 1") {
    const nsl::IdxArray a = parse(idx_bytes(0x08, {5}, "\x01\x02\x03\x04\xFF"));
    CHECK(a.dims == std::vector<nsl::index>{5});
    CHECK(a.data == std::vector<unsigned char>{1, 2, 3, 4, 255});
  }
  SUBCASE("rank 3, dimensions big-endian, outermost first") {
    const nsl::IdxArray a = parse(idx_bytes(0x08, {2, 3, 300}, ramp(1800)));
    CHECK(a.dims == std::vector<nsl::index>{2, 3, 300});
    REQUIRE(a.data.size() == 1800);
    CHECK(as_string(a.data) == ramp(1800));
  }
  SUBCASE("rank 4") {
    const nsl::IdxArray a = parse(idx_bytes(0x08, {1, 2, 3, 4}, ramp(24)));
    CHECK(a.dims == std::vector<nsl::index>{1, 2, 3, 4});
    CHECK(a.data.size() == 24);
  }
  SUBCASE("an empty array (a zero extent) is valid") {
    const nsl::IdxArray a = parse(idx_bytes(0x08, {0, 28, 28}, ""));
    CHECK(a.dims == std::vector<nsl::index>{0, 28, 28});
    CHECK(a.data.empty());
  }
}

TEST_CASE("load_idx reads plain and gzip-compressed files alike") {
  TempDir dir;
  const std::string bytes = images_file(3, 4, 5);
  write_plain(dir.file("plain-idx3-ubyte"), bytes);
  write_gzip(dir.file("packed-idx3-ubyte.gz"), bytes);
  // The gzip magic, not the name, decides: a compressed file without .gz
  // and a plain one with .gz load too.
  write_gzip(dir.file("packed-no-suffix"), bytes);
  write_plain(dir.file("plain-with-suffix.gz"), bytes);
  for (const char* name :
       {"plain-idx3-ubyte", "packed-idx3-ubyte.gz", "packed-no-suffix", "plain-with-suffix.gz"}) {
    CAPTURE(name);
    const nsl::IdxArray a = nsl::load_idx(dir.file(name));
    CHECK(a.dims == std::vector<nsl::index>{3, 4, 5});
    CHECK(as_string(a.data) == ramp(60));
  }
}

TEST_CASE("read_gzip_or_plain returns a plain file's bytes and a gzip file's content") {
  TempDir dir;
  const std::string text = "not IDX at all, any bytes \x00\x1F\x8B pass through" + ramp(70000);

  SUBCASE("plain and gzip") {
    write_plain(dir.file("a"), text);
    write_gzip(dir.file("b"), text);
    CHECK(as_string(nsl::read_gzip_or_plain(dir.file("a"))) == text);
    CHECK(as_string(nsl::read_gzip_or_plain(dir.file("b"))) == text);
  }
  SUBCASE("empty files") {
    write_plain(dir.file("empty"), "");
    write_gzip(dir.file("empty.gz"), "");
    CHECK(nsl::read_gzip_or_plain(dir.file("empty")).empty());
    CHECK(nsl::read_gzip_or_plain(dir.file("empty.gz")).empty());
  }
  SUBCASE("concatenated gzip members are joined, as gzip -d does") {
    write_plain(dir.file("two.gz"), gzip_of("first part, ") + gzip_of("second part"));
    CHECK(as_string(nsl::read_gzip_or_plain(dir.file("two.gz"))) == "first part, second part");
  }
  SUBCASE("output up to max_bytes is accepted, one byte more is a FormatError") {
    write_plain(dir.file("a"), text);
    write_gzip(dir.file("b"), text);
    CHECK(nsl::read_gzip_or_plain(dir.file("a"), text.size()).size() == text.size());
    CHECK(nsl::read_gzip_or_plain(dir.file("b"), text.size()).size() == text.size());
    CHECK_THROWS_WITH_AS(nsl::read_gzip_or_plain(dir.file("a"), text.size() - 1),
                         doctest::Contains("file size exceeds the limit of"), nsl::FormatError);
    CHECK_THROWS_WITH_AS(nsl::read_gzip_or_plain(dir.file("b"), text.size() - 1),
                         doctest::Contains("decompressed size exceeds the limit of"),
                         nsl::FormatError);
  }
  SUBCASE("a highly compressible file cannot inflate past the limit") {
    // 64 MiB of zeros compress to about 64 KiB; a 1 MiB limit stops it early.
    write_gzip(dir.file("bomb.gz"), std::string(std::size_t(64) << 20, '\0'));
    CHECK(fs::file_size(dir.file("bomb.gz")) < (std::size_t(1) << 20));
    CHECK_THROWS_WITH_AS(nsl::read_gzip_or_plain(dir.file("bomb.gz"), std::size_t(1) << 20),
                         doctest::Contains("decompressed size exceeds the limit of 1048576 bytes"),
                         nsl::FormatError);
  }
}

TEST_CASE("load_idx checks the header before it reads or inflates the rest") {
  TempDir dir;
  const std::string good = images_file(10, 28, 28);  // 16 + 7840 bytes
  const std::size_t mib = std::size_t(1) << 20;

  SUBCASE("a gzip stream with a wrong header fails on it, not on its size") {
    // 64 MiB of zeros: type code 0x00 is wrong from the first 4 bytes.
    write_gzip(dir.file("zeros.gz"), std::string(64 * mib, '\0'));
    CHECK_THROWS_WITH_AS(nsl::load_idx(dir.file("zeros.gz"), mib),
                         doctest::Contains("unsupported data type code 0x00"), nsl::FormatError);
  }
  SUBCASE("inflating stops at the first byte past what the header asks for") {
    write_gzip(dir.file("long.gz"), good + std::string(64 * mib, '\0'));
    CHECK_THROWS_WITH_AS(nsl::load_idx(dir.file("long.gz"), mib),
                         doctest::Contains("trailing bytes after the data: dimensions [10, 28, 28] need 7840 "
                                           "bytes of data, the decompressed stream holds more"),
                         nsl::FormatError);
  }
  SUBCASE("a header asking for more than the limit fails before the data is inflated") {
    write_gzip(dir.file("images.gz"), good);
    CHECK(nsl::load_idx(dir.file("images.gz"), good.size()).data.size() == 7840);
    CHECK_THROWS_WITH_AS(nsl::load_idx(dir.file("images.gz"), good.size() - 1),
                         doctest::Contains("dimensions [10, 28, 28] need 7856 bytes, which exceeds the limit "
                                           "of 7855 bytes"),
                         nsl::FormatError);
  }
  SUBCASE("the decoded images and labels are held to the limit too") {
    write_plain(dir.file("images"), good);
    CHECK(nsl::load_idx_images<float>(dir.file("images"), 1.0, 7840 * 4).size() == 7840);
    CHECK_THROWS_WITH_AS(nsl::load_idx_images<float>(dir.file("images"), 1.0, 7840 * 4 - 1),
                         doctest::Contains("7840 pixels as 4-byte values exceed the limit of 31359 bytes"),
                         nsl::FormatError);
    CHECK_THROWS_AS(nsl::load_idx_images<double>(dir.file("images"), 1.0, 7840 * 4), nsl::FormatError);
    write_plain(dir.file("labels"), labels_file({1, 2, 3}));
    CHECK(nsl::load_idx_labels(dir.file("labels"), 12).size() == 3);
    CHECK_THROWS_WITH_AS(nsl::load_idx_labels(dir.file("labels"), 11),
                         doctest::Contains("3 labels as 4-byte ints exceed the limit of 11 bytes"),
                         nsl::FormatError);
  }
  SUBCASE("parse_idx_file reads a file's bytes from memory, plain or gzip, as load_idx does") {
    const std::string packed = gzip_of(good);
    for (const std::string* stored : {&good, &packed}) {
      const auto* p = reinterpret_cast<const unsigned char*>(stored->data());
      const nsl::IdxArray a = nsl::parse_idx_file(p, stored->size(), "mem.idx");
      CHECK(a.dims == std::vector<nsl::index>{10, 28, 28});
      CHECK(as_string(a.data) == good.substr(16));
      CHECK_THROWS_WITH_AS(nsl::parse_idx_file(p, stored->size() - 1, "mem.idx"),
                           doctest::Contains("load_idx: mem.idx: "), nsl::FormatError);
    }
    CHECK_THROWS_WITH_AS(nsl::parse_idx_file(nullptr, 0, "mem.idx"),
                         doctest::Contains("load_idx: mem.idx: file too short"), nsl::FormatError);
  }
}

TEST_CASE("a truncated or corrupt gzip stream is a FormatError") {
  TempDir dir;
  const std::string packed = gzip_of(images_file(10, 28, 28));

  SUBCASE("truncated in the compressed data") {
    write_plain(dir.file("cut.gz"), packed.substr(0, packed.size() / 2));
    CHECK_THROWS_WITH_AS(
        nsl::load_idx(dir.file("cut.gz")),
        doctest::Contains((dir.file("cut.gz") + ": gzip stream truncated").c_str()),
        nsl::FormatError);
  }
  SUBCASE("truncated in the CRC / length trailer") {
    write_plain(dir.file("cut.gz"), packed.substr(0, packed.size() - 3));
    CHECK_THROWS_WITH_AS(nsl::load_idx(dir.file("cut.gz")),
                         doctest::Contains("gzip stream truncated"), nsl::FormatError);
  }
  SUBCASE("only the magic") {
    write_plain(dir.file("magic.gz"), "\x1F\x8B");
    CHECK_THROWS_WITH_AS(nsl::load_idx(dir.file("magic.gz")),
                         doctest::Contains("gzip stream truncated"), nsl::FormatError);
  }
  SUBCASE("a wrong CRC") {
    std::string bad = packed;
    bad[bad.size() - 8] = static_cast<char>(bad[bad.size() - 8] ^ 0x01);
    write_plain(dir.file("crc.gz"), bad);
    CHECK_THROWS_WITH_AS(nsl::load_idx(dir.file("crc.gz")),
                         doctest::Contains("corrupt gzip stream"), nsl::FormatError);
  }
  SUBCASE("a bad compression method in the gzip header") {
    std::string bad = packed;
    bad[2] = 7;  // only 8 (deflate) exists
    write_plain(dir.file("method.gz"), bad);
    CHECK_THROWS_WITH_AS(nsl::load_idx(dir.file("method.gz")),
                         doctest::Contains("corrupt gzip stream"), nsl::FormatError);
  }
  SUBCASE("garbage after the stream") {
    write_plain(dir.file("tail.gz"), packed + "garbage");
    CHECK_THROWS_WITH_AS(
        nsl::load_idx(dir.file("tail.gz")),
        doctest::Contains("data after the end of the gzip stream is not a gzip member"),
        nsl::FormatError);
  }
}

TEST_CASE("load_idx_images gives N x 1 x H x W pixel values times scale") {
  TempDir dir;
  write_gzip(dir.file("images.gz"), images_file(3, 4, 5));

  const Tensor<float> f = nsl::load_idx_images<float>(dir.file("images.gz"));
  CHECK(f.shape() == nsl::Shape{3, 1, 4, 5});
  // Element (n, 0, h, w) is byte n*20 + h*5 + w of the data, which ramp() set to that index.
  for (nsl::index n = 0; n < 3; ++n)
    for (nsl::index h = 0; h < 4; ++h)
      for (nsl::index w = 0; w < 5; ++w) CHECK(f(n, 0, h, w) == float(n * 20 + h * 5 + w));

  const Tensor<double> d = nsl::load_idx_images<double>(dir.file("images.gz"), 1.0 / 255.0);
  CHECK(d.shape() == nsl::Shape{3, 1, 4, 5});
  for (nsl::index i = 0; i < d.size(); ++i) CHECK(d[i] == double(i) * (1.0 / 255.0));

  const Tensor<float> half = nsl::load_idx_images<float>(dir.file("images.gz"), 0.5);
  CHECK(half(2, 0, 3, 4) == 29.5f);

  SUBCASE("full byte range, no sign confusion") {
    write_plain(dir.file("bytes"), idx_bytes(0x08, {1, 16, 16}, ramp(256)));
    const Tensor<float> t = nsl::load_idx_images<float>(dir.file("bytes"));
    CHECK(t[127] == 127.0f);
    CHECK(t[128] == 128.0f);
    CHECK(t[255] == 255.0f);
  }
  SUBCASE("a non-finite scale is an ArgumentError") {
    CHECK_THROWS_WITH_AS(nsl::load_idx_images<float>(dir.file("images.gz"), std::nan("")),
                         doctest::Contains("scale must be finite"), nsl::ArgumentError);
  }
}

TEST_CASE("load_idx_labels returns the labels as ints") {
  TempDir dir;
  write_plain(dir.file("labels"), labels_file({0, 9, 3, 255, 7}));
  write_gzip(dir.file("labels.gz"), labels_file({0, 9, 3, 255, 7}));
  CHECK(nsl::load_idx_labels(dir.file("labels")) == std::vector<int>{0, 9, 3, 255, 7});
  CHECK(nsl::load_idx_labels(dir.file("labels.gz")) == std::vector<int>{0, 9, 3, 255, 7});
}

TEST_CASE("images and labels must come from files of the right rank") {
  TempDir dir;
  write_plain(dir.file("labels"), labels_file({1, 2, 3}));
  write_plain(dir.file("images"), images_file(2, 3, 3));
  write_plain(dir.file("rank4"), idx_bytes(0x08, {2, 1, 3, 3}, ramp(18)));
  CHECK_THROWS_WITH_AS(
      nsl::load_idx_images<float>(dir.file("labels")),
      doctest::Contains(
          (dir.file("labels") + ": expected rank 3 images (N x H x W), got rank 1 [3]").c_str()),
      nsl::FormatError);
  CHECK_THROWS_WITH_AS(nsl::load_idx_images<float>(dir.file("rank4")),
                       doctest::Contains("expected rank 3 images"), nsl::FormatError);
  CHECK_THROWS_WITH_AS(nsl::load_idx_labels(dir.file("images")),
                       doctest::Contains("expected rank 1 labels (N), got rank 3 [2, 3, 3]"),
                       nsl::FormatError);
}

TEST_CASE("malformed IDX data fails with a FormatError that says what is wrong") {
  const std::string good = idx_bytes(0x08, {2, 3}, ramp(6));
  REQUIRE(format_error_of(good).empty());

  SUBCASE("messages name the operation and the source") {
    CHECK(format_error_of("") ==
          "load_idx: mem.idx: file too short for an IDX header (0 bytes, the header needs 4)");
    CHECK_THROWS_WITH_AS(nsl::parse_idx(nullptr, 0, "null"),
                         doctest::Contains("load_idx: null: file too short"), nsl::FormatError);
  }
  SUBCASE("the first two bytes must be zero") {
    std::string bytes = good;
    bytes[0] = 1;
    CHECK(format_error_of(bytes) ==
          "load_idx: mem.idx: not an IDX file (bad magic: the first two bytes must be 0x00 0x00, "
          "got 0x01 0x00)");
    bytes = good;
    bytes[1] = '\x80';
    CHECK(contains(format_error_of(bytes), "bad magic"));
    CHECK(contains(format_error_of(bytes), "got 0x00 0x80"));
  }
  SUBCASE("gzip data handed to parse_idx is named as such") {
    CHECK(contains(format_error_of(gzip_of(good)), "this is gzip-compressed data"));
  }
  SUBCASE("only the unsigned byte type (0x08) is supported") {
    CHECK(format_error_of(idx_bytes(0x0D, {2}, std::string(8, '\0'))) ==
          "load_idx: mem.idx: unsupported data type code 0x0D (float32); nsl reads 0x08 (unsigned "
          "byte)");
    CHECK(contains(format_error_of(idx_bytes(0x09, {2}, "ab")), "0x09 (signed byte)"));
    CHECK(contains(format_error_of(idx_bytes(0x0B, {2}, "abcd")), "0x0B (int16)"));
    CHECK(contains(format_error_of(idx_bytes(0x0C, {1}, "abcd")), "0x0C (int32)"));
    CHECK(contains(format_error_of(idx_bytes(0x0E, {1}, std::string(8, 'x'))), "0x0E (float64)"));
    CHECK(contains(format_error_of(idx_bytes(0x42, {1}, "a")), "0x42 (not an IDX type)"));
  }
  SUBCASE("rank must be 1 to 4") {
    CHECK(format_error_of(idx_bytes(0x08, {}, "a")) ==
          "load_idx: mem.idx: rank 0 (a scalar) is not supported; nsl reads IDX arrays of rank 1 "
          "to 4");
    CHECK(contains(format_error_of(idx_bytes(0x08, {1, 1, 1, 1, 2}, "ab")),
                   "rank 5 is not supported"));
    CHECK(contains(format_error_of(idx_bytes(0x08, {1, 1, 1, 1, 2}, "ab").substr(0, 4)), "rank 5"));
  }
  SUBCASE("the file must hold every dimension") {
    const std::string bytes = idx_bytes(0x08, {2, 3, 4}, "");
    CHECK(format_error_of(bytes.substr(0, 3)) ==
          "load_idx: mem.idx: file too short for an IDX header (3 bytes, the header needs 4)");
    CHECK(format_error_of(bytes.substr(0, 13)) ==
          "load_idx: mem.idx: file ends inside the dimensions (rank 3 needs a 16-byte header, file "
          "has 13 bytes)");
  }
  SUBCASE("truncated data") {
    CHECK(format_error_of(good.substr(0, good.size() - 1)) ==
          "load_idx: mem.idx: data truncated: dimensions [2, 3] need 6 bytes of data, file has 5");
    CHECK(
        contains(format_error_of(idx_bytes(0x08, {2, 3}, "")), "need 6 bytes of data, file has 0"));
  }
  SUBCASE("trailing bytes") {
    CHECK(format_error_of(good + "x") ==
          "load_idx: mem.idx: trailing bytes after the data: dimensions [2, 3] need 6 bytes of "
          "data, file has 7");
  }
  SUBCASE("absurd dimensions fail before any allocation") {
    // 4294967295^4 overflows 64 bits, 4294967295^2 the signed index; a count
    // that fits is still far more than the file holds. None of them allocates
    // (ASan would flag the request).
    CHECK(format_error_of(
              idx_bytes(0x08, {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}, "abc")) ==
          "load_idx: mem.idx: element count of dimensions [4294967295, 4294967295, 4294967295, "
          "4294967295] "
          "overflows the addressable size");
    CHECK(contains(format_error_of(idx_bytes(0x08, {0x10000u, 0x10000u, 0x10000u, 0x10000u}, "")),
                   "overflows"));
    CHECK(
        contains(format_error_of(idx_bytes(0x08, {0xFFFFFFFFu, 0xFFFFFFFFu}, "abc")), "overflows"));
    CHECK(format_error_of(idx_bytes(0x08, {0xFFFFFFFFu, 0x0FFFFFFFu}, "abc")) ==
          "load_idx: mem.idx: data truncated: dimensions [4294967295, 268435455] need "
          "1152921500043444225 bytes "
          "of data, file has 3");
    // A count that fits in 64 bits but not 8 bytes an element of the index;
    // and an empty array with absurd extents (empty dimensions count as 1).
    CHECK(contains(format_error_of(idx_bytes(0x08, {0xFFFFFFFFu, 0x7FFFFFFFu}, "abc")), "overflows"));
    CHECK(contains(format_error_of(idx_bytes(0x08, {0, 0xFFFFFFFFu, 0xFFFFFFFFu}, "")),
                   "element count of dimensions [0, 4294967295, 4294967295] overflows"));
    CHECK(parse(idx_bytes(0x08, {0, 1000}, "")).dims == std::vector<nsl::index>{0, 1000});
    CHECK(contains(format_error_of(idx_bytes(0x08, {60000, 28, 28}, ramp(784))),
                   "need 47040000 bytes of data, file has 784"));
  }
  SUBCASE("load_idx reports the path, for plain and gzip files") {
    TempDir dir;
    write_plain(dir.file("short"), good.substr(0, good.size() - 2));
    write_gzip(dir.file("long.gz"), good + "zz");
    CHECK_THROWS_WITH_AS(
        nsl::load_idx(dir.file("short")),
        doctest::Contains(("load_idx: " + dir.file("short") + ": data truncated").c_str()),
        nsl::FormatError);
    CHECK_THROWS_WITH_AS(
        nsl::load_idx(dir.file("long.gz")),
        doctest::Contains(("load_idx: " + dir.file("long.gz") + ": trailing bytes").c_str()),
        nsl::FormatError);
  }
}

TEST_CASE("a missing or unreadable file is an IoError, not a FormatError") {
  TempDir dir;
  const std::string missing = dir.file("missing-idx1-ubyte.gz");
  for (const auto& [kind, message] : {error_of([&] { nsl::read_gzip_or_plain(missing); }),
                                      error_of([&] { nsl::load_idx(missing); }),
                                      error_of([&] { nsl::load_idx_images<float>(missing); }),
                                      error_of([&] { nsl::load_idx_labels(missing); })}) {
    CHECK(kind == nsl::ErrorKind::io);
    CHECK(message == "load_idx: " + missing + ": cannot open file for reading");
  }
  const auto [kind, message] = error_of([&] { nsl::load_idx(dir.path.string()); });
  CHECK(kind == nsl::ErrorKind::io);
  CHECK(contains(message, "is a directory"));
}

TEST_CASE("load_fashion_mnist loads the train or test pair of a directory") {
  TempDir dir;
  // Test set gzip-compressed, training set plain (names without .gz).
  write_gzip(dir.file("t10k-images-idx3-ubyte.gz"), images_file(4, 28, 28));
  write_gzip(dir.file("t10k-labels-idx1-ubyte.gz"), labels_file({9, 0, 0, 3}));
  write_plain(dir.file("train-images-idx3-ubyte"), images_file(6, 28, 28));
  write_plain(dir.file("train-labels-idx1-ubyte"), labels_file({1, 2, 3, 4, 5, 6}));

  const nsl::Dataset test = nsl::load_fashion_mnist(dir.path.string(), false);
  CHECK(test.images.shape() == nsl::Shape{4, 1, 28, 28});
  CHECK(test.labels == std::vector<int>{9, 0, 0, 3});
  CHECK(test.classes == 10);
  CHECK(test.images(1, 0, 0, 0) == float(784 % 256));

  const nsl::Dataset train = nsl::load_fashion_mnist(dir.path.string(), true, 1.0 / 255.0);
  CHECK(train.images.shape() == nsl::Shape{6, 1, 28, 28});
  CHECK(train.labels == std::vector<int>{1, 2, 3, 4, 5, 6});
  CHECK(train.images[255] == 1.0f);
  CHECK(train.images[51] == doctest::Approx(0.2f));

  SUBCASE("the .gz file is preferred when both exist") {
    write_plain(dir.file("t10k-labels-idx1-ubyte"), "not even IDX");
    CHECK(nsl::load_fashion_mnist(dir.path.string(), false).labels == std::vector<int>{9, 0, 0, 3});
  }
}

TEST_CASE("load_fashion_mnist checks that images and labels go together") {
  TempDir dir;
  const std::string d = dir.path.string();
  write_gzip(dir.file("t10k-images-idx3-ubyte.gz"), images_file(4, 28, 28));

  SUBCASE("image and label counts must match") {
    write_gzip(dir.file("t10k-labels-idx1-ubyte.gz"), labels_file({1, 2, 3}));
    CHECK_THROWS_WITH_AS(nsl::load_fashion_mnist(d, false), doctest::Contains("has 4 images but"),
                         nsl::FormatError);
    CHECK_THROWS_WITH_AS(nsl::load_fashion_mnist(d, false), doctest::Contains("has 3 labels"),
                         nsl::FormatError);
  }
  SUBCASE("labels must be 0 to 9") {
    write_gzip(dir.file("t10k-labels-idx1-ubyte.gz"), labels_file({1, 2, 10, 3}));
    CHECK_THROWS_WITH_AS(
        nsl::load_fashion_mnist(d, false),
        doctest::Contains("label 10 at index 2 is not a Fashion-MNIST class (0 to 9)"),
        nsl::FormatError);
  }
  SUBCASE("a missing file is an IoError naming both accepted names") {
    const auto [kind, message] = error_of([&] { nsl::load_fashion_mnist(d, false); });
    CHECK(kind == nsl::ErrorKind::io);
    CHECK(message == "load_fashion_mnist: " + d +
                         ": found neither t10k-labels-idx1-ubyte.gz nor t10k-labels-idx1-ubyte");
    const auto [train_kind, train_message] = error_of([&] { nsl::load_fashion_mnist(d, true); });
    CHECK(train_kind == nsl::ErrorKind::io);
    CHECK(contains(train_message, "train-labels-idx1-ubyte"));
  }
  SUBCASE("a missing directory is an IoError") {
    const auto [kind, message] =
        error_of([&] { nsl::load_fashion_mnist(dir.file("nowhere"), true); });
    CHECK(kind == nsl::ErrorKind::io);
    CHECK(contains(message, "nowhere: not a directory"));
  }
  SUBCASE("the files' own errors propagate") {
    write_gzip(dir.file("t10k-labels-idx1-ubyte.gz"), images_file(4, 1, 1));
    CHECK_THROWS_WITH_AS(nsl::load_fashion_mnist(d, false),
                         doctest::Contains("expected rank 1 labels"), nsl::FormatError);
  }
}

TEST_CASE("fashion_mnist_class_name names the ten classes") {
  const std::vector<std::string> want = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                         "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                         "Bag",         "Ankle boot"};
  for (int label = 0; label < 10; ++label)
    CHECK(nsl::fashion_mnist_class_name(label) == want[std::size_t(label)]);
  CHECK_THROWS_AS(nsl::fashion_mnist_class_name(10), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::fashion_mnist_class_name(-1), nsl::ArgumentError);
}

TEST_CASE("the real Fashion-MNIST test set loads with its known statistics") {
  std::error_code ec;
  if (!fs::is_directory(fashion_mnist_dir, ec)) {
    const std::string note = std::string("skipped: ") + fashion_mnist_dir + " is not present";
    MESSAGE(note);
    return;
  }
  const nsl::Dataset d = nsl::load_fashion_mnist(fashion_mnist_dir, false);
  CHECK(d.images.shape() == nsl::Shape{10000, 1, 28, 28});
  REQUIRE(d.labels.size() == 10000);
  CHECK(d.classes == 10);
  std::vector<int> per_class(10, 0);  // load_fashion_mnist checked 0 <= label < 10
  for (int l : d.labels) ++per_class[std::size_t(l)];
  CHECK(per_class == std::vector<int>(10, 1000));
  CHECK(d.images.vec().minCoeff() == 0.0f);
  CHECK(d.images.vec().maxCoeff() == 255.0f);
  bool integral = true;
  for (nsl::index i = 0; i < d.images.size(); ++i)
    integral = integral && d.images[i] == float(int(d.images[i]));
  CHECK(integral);

  const nsl::Dataset scaled = nsl::load_fashion_mnist(fashion_mnist_dir, false, 1.0 / 255.0);
  CHECK(scaled.images.vec().maxCoeff() == 1.0f);
  CHECK(scaled.labels == d.labels);
}
