// Tests of nsl/io/checkpoint.hpp: round trips, the on-disk layout, moving a
// model's parameters and buffers in and out, and every malformed file
// failing with a FormatError that says what is wrong.
#include <doctest/doctest.h>
#include <zlib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "nsl/io/checkpoint.hpp"

namespace {

namespace fs = std::filesystem;
using nsl::Checkpoint;
using nsl::Shape;
using nsl::Tensor;

/// A fresh directory under the system temp dir, removed with its content.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    const auto tick = std::chrono::steady_clock::now().time_since_epoch().count();
    // ctest runs test cases in parallel processes: the clock and a random
    // number keep their directories apart.
    path = fs::temp_directory_path() /
           ("nsl_test_ckpt_" + std::to_string(tick) + "_" + std::to_string(std::random_device{}()) +
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
  /// Names of the entries in the directory.
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(path))
      names.push_back(entry.path().filename().string());
    return names;
  }
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

/// A tensor whose every element differs and is not a round number.
template <class T>
Tensor<T> sample_tensor(const Shape& s, T offset = T(0)) {
  Tensor<T> t(s);
  for (nsl::index i = 0; i < t.size(); ++i)
    t[i] = T(0.37) * T(i) - T(1.5) + T(1) / T(i + 3) + offset;
  return t;
}

/// Exact equality, NaN == NaN and -0 != +0 (compares the bits).
bool same_bits(float a, float b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

void check_equal(const Tensor<float>& got, const Tensor<float>& want) {
  REQUIRE(got.shape() == want.shape());
  for (nsl::index i = 0; i < want.size(); ++i) {
    INFO("element ", i);
    CHECK(same_bits(got[i], want[i]));
  }
}

/// zlib's CRC-32 of a string.
std::uint32_t crc_of(const std::string& s, std::size_t n) {
  return static_cast<std::uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(n)));
}

/// Builds checkpoint bytes by hand, field by field, little-endian.
struct Bytes {
  std::string s;
  Bytes& u8(unsigned v) {
    s += char(v & 0xFF);
    return *this;
  }
  Bytes& u32(std::uint32_t v) {
    for (int i = 0; i < 4; ++i) s += char((v >> (8 * i)) & 0xFF);
    return *this;
  }
  Bytes& u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) s += char((v >> (8 * i)) & 0xFF);
    return *this;
  }
  Bytes& f32(float v) {
    std::uint32_t bits;
    std::memcpy(&bits, &v, 4);
    return u32(bits);
  }
  Bytes& str(const std::string& x) {
    u32(std::uint32_t(x.size()));
    s += x;
    return *this;
  }
  Bytes& header(std::uint32_t version = 1) {
    s.append("NSLCKPT\0", 8);
    return u32(version);
  }
  /// The bytes with their CRC-32 appended.
  std::string with_crc() const {
    Bytes b = *this;
    b.u32(crc_of(s, s.size()));
    return b.s;
  }
};

/// Replaces the last 4 bytes of `bytes` by the CRC-32 of the rest.
std::string fix_crc(std::string bytes) {
  REQUIRE(bytes.size() >= 4);
  const std::uint32_t crc = crc_of(bytes, bytes.size() - 4);
  for (int i = 0; i < 4; ++i)
    bytes[bytes.size() - 4 + std::size_t(i)] = char((crc >> (8 * i)) & 0xFF);
  return bytes;
}

Checkpoint parse(const std::string& bytes, const std::string& source = "mem.ckpt") {
  return nsl::parse_checkpoint(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                               source);
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

/// A small valid checkpoint: two metadata entries, tensors of rank 1 and 2.
Checkpoint small_checkpoint() {
  Checkpoint ck;
  ck.set("epoch", "3");
  ck.set("lr", "0.01");
  ck.add("w", sample_tensor<float>(Shape{2, 3}));
  ck.add("b", sample_tensor<float>(Shape{3}));
  return ck;
}
std::string small_file_bytes(const TempDir& dir) {
  nsl::save_checkpoint(dir.file("small.ckpt"), small_checkpoint());
  return read_file(dir.file("small.ckpt"));
}

}  // namespace

TEST_CASE("save_checkpoint then load_checkpoint gives back metadata and tensors of ranks 1 to 4") {
  TempDir dir;
  Checkpoint ck;
  ck.set("epoch", "17");
  ck.set("optimizer", "sgd momentum=0.9");
  ck.set("empty", "");
  ck.set(std::string("bin\0ary", 7), std::string("\0\xff\n\x01", 4));
  ck.add("r1", sample_tensor<float>(Shape{7}));
  ck.add("layer.r2", sample_tensor<float>(Shape{3, 5}, 2.f));
  ck.add("r3", sample_tensor<float>(Shape{2, 3, 4}, -1.f));
  ck.add("a/r4", sample_tensor<float>(Shape{2, 3, 4, 5}, 0.5f));
  ck.add("empty", Tensor<float>(Shape{0, 3}));
  using lim = std::numeric_limits<float>;
  Tensor<float> special(Shape{8});
  const float values[] = {
      -0.0f,      lim::infinity(), -lim::infinity(), lim::quiet_NaN(), lim::denorm_min(),
      lim::max(), lim::lowest(),   lim::epsilon()};
  for (nsl::index i = 0; i < 8; ++i) special[i] = values[i];
  ck.add("special", special);

  const std::string path = dir.file("model.ckpt");
  nsl::save_checkpoint(path, ck);
  const Checkpoint back = nsl::load_checkpoint(path);

  REQUIRE(back.metadata.size() == ck.metadata.size());
  for (std::size_t i = 0; i < ck.metadata.size(); ++i) {
    CAPTURE(i);
    CHECK(back.metadata[i].first == ck.metadata[i].first);
    CHECK(back.metadata[i].second == ck.metadata[i].second);
  }
  REQUIRE(back.tensors.size() == ck.tensors.size());
  for (std::size_t i = 0; i < ck.tensors.size(); ++i) {
    CAPTURE(ck.tensors[i].first);
    CHECK(back.tensors[i].first == ck.tensors[i].first);
    check_equal(back.tensors[i].second, ck.tensors[i].second);
  }
  CHECK(back.require_meta("epoch") == "17");
  REQUIRE(back.find("a/r4") != nullptr);
  CHECK(back.find("a/r4")->shape() == Shape{2, 3, 4, 5});

  // An empty checkpoint round-trips too.
  nsl::save_checkpoint(path, Checkpoint{});
  const Checkpoint none = nsl::load_checkpoint(path);
  CHECK(none.metadata.empty());
  CHECK(none.tensors.empty());
}

TEST_CASE("the file layout is magic, version, counts, length-prefixed fields and a CRC-32") {
  TempDir dir;
  Checkpoint ck;
  ck.set("k", "vv");
  Tensor<float> t(Shape{1, 2});
  t[0] = 1.5f;
  t[1] = -2.0f;
  ck.add("t", t);
  nsl::save_checkpoint(dir.file("a.ckpt"), ck);
  const std::string expected = Bytes{}
                                   .header(1)
                                   .u32(1)
                                   .str("k")
                                   .str("vv")
                                   .u32(1)
                                   .str("t")
                                   .u8(2)
                                   .u64(1)
                                   .u64(2)
                                   .f32(1.5f)
                                   .f32(-2.0f)
                                   .with_crc();
  const std::string got = read_file(dir.file("a.ckpt"));
  CHECK(got.size() == expected.size());
  CHECK(got == expected);
  CHECK(got.compare(0, 8, std::string("NSLCKPT\0", 8)) == 0);
}

TEST_CASE("Checkpoint helpers: set replaces, get, require_meta, add refuses duplicates, find") {
  Checkpoint ck;
  ck.set("a", "1");
  ck.set("b", "2");
  ck.set("a", "3");
  REQUIRE(ck.metadata.size() == 2);
  CHECK(ck.metadata[0].first == "a");
  CHECK(ck.metadata[0].second == "3");
  REQUIRE(ck.get("b") != nullptr);
  CHECK(*ck.get("b") == "2");
  CHECK(ck.get("c") == nullptr);
  CHECK(ck.require_meta("a") == "3");
  CHECK_THROWS_WITH_AS(ck.require_meta("epoch"), doctest::Contains("'epoch'"), nsl::FormatError);

  const Tensor<float> t = sample_tensor<float>(Shape{2});
  ck.add("x", t);
  CHECK_THROWS_WITH_AS(ck.add("x", t), doctest::Contains("duplicate tensor name 'x'"),
                       nsl::ArgumentError);
  CHECK_THROWS_AS(ck.add("r0", Tensor<float>()), nsl::ShapeError);
  CHECK_THROWS_AS(ck.add(std::string(5000, 'n'), t), nsl::ArgumentError);
  CHECK_THROWS_AS(ck.set(std::string(5000, 'k'), ""), nsl::ArgumentError);
  CHECK_THROWS_AS(ck.set("big", std::string((1 << 20) + 1, 'v')), nsl::ArgumentError);
  ck.set("fits", std::string(1 << 20, 'v'));
  REQUIRE(ck.find("x") != nullptr);
  check_equal(*ck.find("x"), t);
  CHECK(ck.find("y") == nullptr);
  // add copies: changing the source later does not change the checkpoint.
  Tensor<float> source(Shape{1}, 1.f);
  ck.add("copied", source);
  source[0] = 2.f;
  CHECK(ck.find("copied")->operator[](0) == 1.f);
}

TEST_CASE_TEMPLATE("store and restore move Parameter and Buffer values through a file", T, float,
                   double) {
  TempDir dir;
  // A "model" of two parameters and a buffer, and a second one to restore into.
  Tensor<T> weight = sample_tensor<T>(Shape{4, 3, 2, 2});
  Tensor<T> bias = sample_tensor<T>(Shape{4}, T(7));
  Tensor<T> mean = sample_tensor<T>(Shape{4}, T(-3));
  Tensor<T> weight_grad(weight.shape()), bias_grad(bias.shape());
  const std::vector<nsl::Parameter<T>> params = {
      nsl::Parameter<T>{"weight", weight.view(), weight_grad.view(), true},
      nsl::Parameter<T>{"bias", bias.view(), bias_grad.view(), false}};
  const std::vector<nsl::Buffer<T>> buffers = {nsl::Buffer<T>{"running_mean", mean.view()}};

  Checkpoint ck;
  ck.set("epoch", "2");
  nsl::store(ck, "conv1.", params);
  nsl::store(ck, "conv1.", buffers);
  REQUIRE(ck.tensors.size() == 3);
  CHECK(ck.tensors[0].first == "conv1.weight");
  CHECK(ck.tensors[1].first == "conv1.bias");
  CHECK(ck.tensors[2].first == "conv1.running_mean");
  nsl::save_checkpoint(dir.file("m.ckpt"), ck);
  const Checkpoint back = nsl::load_checkpoint(dir.file("m.ckpt"));

  Tensor<T> weight2(weight.shape(), T(9)), bias2(bias.shape(), T(9)), mean2(mean.shape(), T(9));
  Tensor<T> g1(weight.shape()), g2(bias.shape());
  const std::vector<nsl::Parameter<T>> params2 = {
      nsl::Parameter<T>{"weight", weight2.view(), g1.view(), true},
      nsl::Parameter<T>{"bias", bias2.view(), g2.view(), false}};
  const std::vector<nsl::Buffer<T>> buffers2 = {nsl::Buffer<T>{"running_mean", mean2.view()}};
  nsl::restore(back, "conv1.", params2);
  nsl::restore(back, "conv1.", buffers2);

  // Values are stored as float32: a double model gets its values rounded to float.
  const auto check_restored = [](const Tensor<T>& got, const Tensor<T>& original) {
    REQUIRE(got.shape() == original.shape());
    for (nsl::index i = 0; i < got.size(); ++i) {
      CAPTURE(i);
      CHECK(got[i] == T(static_cast<float>(original[i])));
    }
  };
  check_restored(weight2, weight);
  check_restored(bias2, bias);
  check_restored(mean2, mean);
  CHECK(g1.vec().isZero());  // gradients are neither stored nor restored
}

TEST_CASE_TEMPLATE("store_tensor and restore_tensor move single views (optimiser velocities)", T,
                   float, double) {
  Checkpoint ck;
  Tensor<T> velocity = sample_tensor<T>(Shape{3, 2});
  nsl::store_tensor(ck, "opt.velocity.0", velocity);
  nsl::store_tensor(ck, "opt.velocity.1", velocity.view());
  nsl::store_tensor(ck, "opt.velocity.2", nsl::TensorView<const T>(velocity.view()));
  CHECK_THROWS_AS(nsl::store_tensor(ck, "opt.velocity.0", velocity), nsl::ArgumentError);

  Tensor<T> back(Shape{3, 2});
  nsl::restore_tensor(ck, "opt.velocity.1", back);
  for (nsl::index i = 0; i < back.size(); ++i) CHECK(back[i] == T(static_cast<float>(velocity[i])));
  Tensor<T> view_target(Shape{3, 2});
  nsl::restore_tensor(ck, "opt.velocity.2", view_target.view());
  CHECK(view_target.vec() == back.vec());

  CHECK_THROWS_WITH_AS(nsl::restore_tensor(ck, "opt.velocity.9", back),
                       doctest::Contains("checkpoint has no tensor 'opt.velocity.9'"),
                       nsl::FormatError);
  Tensor<T> wrong(Shape{2, 3});
  CHECK_THROWS_WITH_AS(nsl::restore_tensor(ck, "opt.velocity.0", wrong),
                       doctest::Contains("tensor 'opt.velocity.0': checkpoint has [3, 2], model "
                                         "expects [2, 3]"),
                       nsl::ShapeError);
}

TEST_CASE(
    "restore fails naming the tensor that is missing or has another shape, and changes nothing") {
  Tensor<double> a = sample_tensor<double>(Shape{2, 3});
  Tensor<double> b = sample_tensor<double>(Shape{5});
  Tensor<double> ga(a.shape()), gb(b.shape());
  Checkpoint ck;
  nsl::store(ck, "net.", std::vector<nsl::Parameter<double>>{{"a", a.view(), ga.view(), true}});

  Tensor<double> a2(Shape{2, 3}, 4.0), b2(Shape{5}, 4.0), a_wrong(Shape{3, 2}, 4.0);
  // "net.a" fits but "net.b" is missing: nothing is copied.
  const std::vector<nsl::Parameter<double>> missing = {{"a", a2.view(), ga.view(), true},
                                                       {"b", b2.view(), gb.view(), false}};
  CHECK_THROWS_WITH_AS(nsl::restore(ck, "net.", missing),
                       doctest::Contains("checkpoint has no tensor 'net.b'"), nsl::FormatError);
  CHECK((a2.vec().array() == 4.0).all());

  const std::vector<nsl::Parameter<double>> wrong = {{"a", a_wrong.view(), ga.view(), true}};
  CHECK_THROWS_WITH_AS(
      nsl::restore(ck, "net.", wrong),
      doctest::Contains("tensor 'net.a': checkpoint has [2, 3], model expects [3, 2]"),
      nsl::ShapeError);
  CHECK((a_wrong.vec().array() == 4.0).all());

  // Another prefix finds nothing.
  const std::vector<nsl::Buffer<double>> buffers = {{"a", a2.view()}};
  CHECK_THROWS_WITH_AS(nsl::restore(ck, "other.", buffers),
                       doctest::Contains("checkpoint has no tensor 'other.a'"), nsl::FormatError);
  nsl::restore(ck, "net.", buffers);
  CHECK(a2(1, 2) == double(static_cast<float>(a(1, 2))));
}

TEST_CASE("malformed checkpoints raise FormatError saying what is wrong") {
  TempDir dir;
  const std::string good = small_file_bytes(dir);
  REQUIRE(parse(good).tensors.size() == 2);

  SUBCASE("messages name the operation and the source") {
    CHECK(format_error_of("hello") ==
          "load_checkpoint: mem.ckpt: not a checkpoint (bad magic, file too short)");
  }
  SUBCASE("bad magic") {
    std::string bytes = good;
    bytes[0] = 'X';
    CHECK_THROWS_WITH_AS(parse(bytes), doctest::Contains("not a checkpoint (bad magic)"),
                         nsl::FormatError);
    CHECK_THROWS_WITH_AS(parse(""), doctest::Contains("not a checkpoint"), nsl::FormatError);
    CHECK_THROWS_WITH_AS(nsl::parse_checkpoint(nullptr, 0, "null"),
                         doctest::Contains("not a checkpoint"), nsl::FormatError);
    const std::string npy("\x93NUMPY\x01\x00", 8);
    CHECK_THROWS_WITH_AS(parse(npy + good.substr(8)), doctest::Contains("bad magic"),
                         nsl::FormatError);
  }
  SUBCASE("unsupported version, even with a matching checksum") {
    std::string bytes = good;
    bytes[8] = 2;
    CHECK(format_error_of(fix_crc(bytes)).find("unsupported checkpoint format version 2") !=
          std::string::npos);
    CHECK(format_error_of(bytes).find("unsupported checkpoint format version 2") !=
          std::string::npos);
    bytes[8] = 0;
    bytes[11] = 1;
    CHECK(format_error_of(fix_crc(bytes)).find("version 16777216") != std::string::npos);
  }
  SUBCASE("truncation says where the file ends") {
    CHECK(format_error_of(good.substr(0, 10)).find("truncated in the format version") !=
          std::string::npos);
    CHECK(format_error_of(good.substr(0, 14)).find("truncated in the metadata count") !=
          std::string::npos);
    const std::string cut_meta = format_error_of(good.substr(0, 30));
    CHECK(cut_meta.find("truncated in the metadata") != std::string::npos);
    CHECK(cut_meta.find("checksum mismatch") != std::string::npos);
    const std::string cut_data = format_error_of(good.substr(0, good.size() - 10));
    CHECK(cut_data.find("truncated in tensor 'b' (data)") != std::string::npos);
    CHECK(cut_data.find("checksum mismatch") != std::string::npos);
    CHECK(format_error_of(good.substr(0, good.size() - 1)).find("truncated in the checksum") !=
          std::string::npos);
    CHECK(format_error_of(good.substr(0, good.size() - 4)).find("truncated in the checksum") !=
          std::string::npos);
  }
  SUBCASE("a flipped byte in the data is a checksum mismatch") {
    std::string bytes = good;
    const std::size_t data_of_w =
        8 + 4 + 4 + (4 + 5 + 4 + 1) + (4 + 2 + 4 + 4) + 4 + 4 + 1 + 1 + 16;
    REQUIRE(bytes.substr(data_of_w - 18, 1) == "w");
    bytes[data_of_w + 5] = char(bytes[data_of_w + 5] ^ 0x10);
    const std::string message = format_error_of(bytes);
    CHECK(message.find("checksum mismatch: file is corrupted (stored crc32 0x") !=
          std::string::npos);
    // The middle of the file, wherever it falls, is caught as well.
    bytes = good;
    bytes[bytes.size() / 2] = char(bytes[bytes.size() / 2] ^ 0x01);
    CHECK(format_error_of(bytes).find("checksum mismatch") != std::string::npos);
    // A corrupted checksum itself.
    bytes = good;
    bytes.back() = char(bytes.back() ^ 0x80);
    CHECK(format_error_of(bytes).find("file is corrupted") != std::string::npos);
  }
  SUBCASE("trailing bytes") {
    CHECK(format_error_of(good + "junk").find("trailing bytes") != std::string::npos);
    // Even with a checksum over them.
    CHECK(format_error_of(fix_crc(good + "junkCRC!"))
              .find("trailing bytes: 8 bytes after the checksum") != std::string::npos);
  }
  SUBCASE("bad rank") {
    for (unsigned rank : {0u, 5u, 255u}) {
      CAPTURE(rank);
      const std::string bytes = Bytes{}
                                    .header()
                                    .u32(0)
                                    .u32(1)
                                    .str("w")
                                    .u8(rank)
                                    .u64(1)
                                    .u64(1)
                                    .u64(1)
                                    .u64(1)
                                    .u64(1)
                                    .f32(0.f)
                                    .with_crc();
      CHECK(format_error_of(bytes).find("tensor 'w': bad rank " + std::to_string(rank)) !=
            std::string::npos);
    }
  }
  SUBCASE("absurd extents are an error, never an allocation") {
    const std::string overflow =
        Bytes{}.header().u32(0).u32(1).str("w").u8(2).u64(1ull << 40).u64(1ull << 40).with_crc();
    CHECK(format_error_of(overflow).find(
              "tensor 'w': absurd extents [1099511627776, 1099511627776]") != std::string::npos);
    const std::string huge_extent =
        Bytes{}.header().u32(0).u32(1).str("w").u8(2).u64(0).u64(~0ull).with_crc();
    CHECK(format_error_of(huge_extent).find("absurd extents") != std::string::npos);
    const std::string too_big =
        Bytes{}.header().u32(0).u32(1).str("w").u8(1).u64(1000000000000ull).f32(1.f).with_crc();
    CHECK(format_error_of(too_big).find("truncated in tensor 'w' (data): shape [1000000000000]") !=
          std::string::npos);
    // Empty extents count as 1: an empty tensor cannot carry an absurd extent.
    const std::string empty_absurd =
        Bytes{}.header().u32(0).u32(1).str("w").u8(2).u64(0).u64(1ull << 62).with_crc();
    CHECK(format_error_of(empty_absurd).find("tensor 'w': absurd extents [0, 4611686018427387904]") !=
          std::string::npos);
    // A zero extent makes an empty tensor: no data follows.
    const Checkpoint empty =
        parse(Bytes{}.header().u32(0).u32(1).str("w").u8(3).u64(0).u64(5).u64(7).with_crc());
    REQUIRE(empty.tensors.size() == 1);
    CHECK(empty.tensors[0].second.shape() == Shape{0, 5, 7});
  }
  SUBCASE("absurd counts and lengths are errors, never allocations") {
    CHECK(format_error_of(Bytes{}.header().u32(1000001).u32(0).with_crc())
              .find("metadata count 1000001 exceeds the limit of 1000000") != std::string::npos);
    CHECK(format_error_of(Bytes{}.header().u32(1000000).u32(0).with_crc())
              .find("truncated in the metadata: 1000000 entries") != std::string::npos);
    CHECK(format_error_of(Bytes{}.header().u32(0).u32(0xFFFFFFFFu).with_crc())
              .find("tensor count 4294967295 exceeds") != std::string::npos);
    CHECK(format_error_of(Bytes{}.header().u32(0).u32(500).with_crc())
              .find("truncated in the tensor list") != std::string::npos);
    CHECK(format_error_of(Bytes{}.header().u32(1).u32(4097).u32(0).u32(0).with_crc())
              .find("key length 4097 exceeds the 4096-byte limit") != std::string::npos);
    CHECK(format_error_of(Bytes{}.header().u32(1).str("k").u32((1u << 20) + 1).u32(0).with_crc())
              .find("value length 1048577 exceeds the 1048576-byte limit") != std::string::npos);
    CHECK(format_error_of(Bytes{}.header().u32(1).u32(4000).u32(0).u32(0).with_crc())
              .find("truncated in the metadata (entry 1 of 1), key") != std::string::npos);
    CHECK(format_error_of(Bytes{}.header().u32(0).u32(1).u32(0xFFFFFFF0u).u8(1).u64(0).with_crc())
              .find("name length 4294967280 exceeds") != std::string::npos);
  }
  SUBCASE("duplicate keys and names") {
    CHECK(format_error_of(
              Bytes{}.header().u32(2).str("k").str("1").str("k").str("2").u32(0).with_crc())
              .find("duplicate metadata key 'k'") != std::string::npos);
    CHECK(format_error_of(
              Bytes{}.header().u32(0).u32(2).str("w").u8(1).u64(0).str("w").u8(1).u64(0).with_crc())
              .find("duplicate tensor 'w'") != std::string::npos);
  }
  SUBCASE("names from a file are printed safely") {
    const std::string message = format_error_of(
        Bytes{}.header().u32(0).u32(1).str(std::string("a\0\n", 3)).u8(9).u64(1).with_crc());
    CHECK(message.find("tensor 'a?"
                       "?': bad rank 9") != std::string::npos);
  }
}

TEST_CASE(
    "every truncation of a valid checkpoint is a FormatError, and corrupted bytes never crash") {
  TempDir dir;
  const std::string good = small_file_bytes(dir);
  for (std::size_t n = 0; n < good.size(); ++n) {
    CAPTURE(n);
    // A copy of exactly n bytes, so the sanitizers see any read past the end.
    const std::vector<unsigned char> prefix(good.begin(), good.begin() + std::ptrdiff_t(n));
    CHECK_THROWS_AS(nsl::parse_checkpoint(prefix.data(), prefix.size(), "cut.ckpt"),
                    nsl::FormatError);
  }
  // Corrupt each byte and recompute the checksum, so that the structure
  // itself is parsed: any outcome but a crash or a non-FormatError is fine.
  int failures = 0, successes = 0;
  for (std::size_t i = 0; i + 4 < good.size(); ++i) {
    for (unsigned char c : {0x00, 0x01, 0x05, 0x7f, 0x80, 0xff}) {
      std::string bytes = good;
      bytes[i] = char(c);
      bytes = fix_crc(bytes);
      const std::vector<unsigned char> copy(bytes.begin(), bytes.end());
      try {
        nsl::parse_checkpoint(copy.data(), copy.size(), "fuzz.ckpt");
        ++successes;
      } catch (const nsl::FormatError&) {
        ++failures;
      }
    }
  }
  CHECK(failures > 0);
  CHECK(successes > 0);
}

TEST_CASE(
    "load_checkpoint: a missing file is an IoError, a malformed one a FormatError naming the "
    "path") {
  TempDir dir;
  const std::string missing = dir.file("no_such.ckpt");
  try {
    nsl::load_checkpoint(missing);
    FAIL("load_checkpoint returned");
  } catch (const nsl::Error& e) {
    CHECK(e.kind() == nsl::ErrorKind::io);
    CHECK(std::string(e.what()) ==
          "load_checkpoint: " + missing + ": cannot open file for reading");
  }

  const std::string text = dir.file("text.ckpt");
  write_file(text, "epoch,lr\n3,0.01\n");
  CHECK_THROWS_WITH_AS(
      nsl::load_checkpoint(text),
      doctest::Contains(("load_checkpoint: " + text + ": not a checkpoint").c_str()),
      nsl::FormatError);

  const std::string cut = dir.file("cut.ckpt");
  const std::string good = small_file_bytes(dir);
  write_file(cut, good.substr(0, good.size() - 2));
  CHECK_THROWS_WITH_AS(nsl::load_checkpoint(cut),
                       doctest::Contains(("load_checkpoint: " + cut + ": truncated").c_str()),
                       nsl::FormatError);

  // The size limit, checked before the file is read; the magic before that.
  const std::string whole = dir.file("whole.ckpt");
  write_file(whole, good);
  CHECK(nsl::load_checkpoint(whole, good.size()).tensors.size() == 2);
  CHECK_THROWS_WITH_AS(nsl::load_checkpoint(whole, good.size() - 1),
                       doctest::Contains(nsl::cat("load_checkpoint: ", whole, ": file size ", good.size(),
                                                  " exceeds the limit of ", good.size() - 1, " bytes")
                                             .c_str()),
                       nsl::FormatError);
  const std::string large = dir.file("large.ckpt");
  write_file(large, std::string(1 << 20, '\0'));
  CHECK_THROWS_WITH_AS(nsl::load_checkpoint(large, 100), doctest::Contains("not a checkpoint (bad magic)"),
                       nsl::FormatError);

  // A directory opens on some systems but cannot be read: an I/O error either way.
  try {
    nsl::load_checkpoint(dir.path.string());
    FAIL("load_checkpoint returned");
  } catch (const nsl::Error& e) {
    CHECK(e.kind() == nsl::ErrorKind::io);
  }
}

TEST_CASE("save_checkpoint replaces an existing file and leaves no temporary file behind") {
  TempDir dir;
  const std::string path = dir.file("model.ckpt");
  Checkpoint big;
  big.add("w", Tensor<float>(Shape{1000}, 1.f));
  nsl::save_checkpoint(path, big);
  nsl::save_checkpoint(path, small_checkpoint());
  const Checkpoint back = nsl::load_checkpoint(path);
  REQUIRE(back.tensors.size() == 2);
  check_equal(back.tensors[0].second, small_checkpoint().tensors[0].second);
  CHECK(dir.entries() == std::vector<std::string>{"model.ckpt"});
}

TEST_CASE("a failed save raises IoError and leaves nothing half-written") {
  TempDir dir;
  const Checkpoint ck = small_checkpoint();

  // The directory does not exist: the temporary file cannot even be created.
  CHECK_THROWS_WITH_AS(nsl::save_checkpoint(dir.file("missing/m.ckpt"), ck),
                       doctest::Contains("save_checkpoint: "), nsl::IoError);
  CHECK(dir.entries().empty());

  // `path` is a directory: writing succeeds, the final rename fails; the
  // temporary file is removed and the directory is left as it was.
  fs::create_directory(dir.path / "occupied");
  CHECK_THROWS_AS(nsl::save_checkpoint(dir.file("occupied"), ck), nsl::IoError);
  CHECK(dir.entries() == std::vector<std::string>{"occupied"});
  CHECK(fs::is_directory(dir.path / "occupied"));
}

TEST_CASE("save_checkpoint refuses a checkpoint it could not read back, before writing anything") {
  TempDir dir;
  const std::string path = dir.file("bad.ckpt");
  Checkpoint rank0 = small_checkpoint();
  rank0.tensors.emplace_back("r0", Tensor<float>());
  CHECK_THROWS_WITH_AS(nsl::save_checkpoint(path, rank0), doctest::Contains("'r0' has rank 0"),
                       nsl::ShapeError);
  Checkpoint duplicate = small_checkpoint();
  duplicate.tensors.emplace_back("w", Tensor<float>(Shape{1}));
  CHECK_THROWS_WITH_AS(nsl::save_checkpoint(path, duplicate),
                       doctest::Contains("duplicate tensor 'w'"), nsl::ArgumentError);
  Checkpoint duplicate_key = small_checkpoint();
  duplicate_key.metadata.emplace_back("epoch", "4");
  CHECK_THROWS_WITH_AS(nsl::save_checkpoint(path, duplicate_key),
                       doctest::Contains("duplicate metadata key 'epoch'"), nsl::ArgumentError);
  Checkpoint long_value = small_checkpoint();
  long_value.metadata.emplace_back("notes", std::string((1 << 20) + 1, 'x'));
  CHECK_THROWS_AS(nsl::save_checkpoint(path, long_value), nsl::ArgumentError);
  CHECK(dir.entries().empty());
}
