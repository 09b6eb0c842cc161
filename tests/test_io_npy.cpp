// Tests of nsl/io/npy.hpp: round trips, the on-disk layout, interchange with
// NumPy (when /usr/bin/python3 can import numpy), and every malformed file
// failing with a FormatError that says what is wrong.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "nsl/io/npy.hpp"

#ifndef NSL_TEST_NUMPY_PYTHON
#define NSL_TEST_NUMPY_PYTHON "/usr/bin/python3"
#endif

namespace {

namespace fs = std::filesystem;
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
           ("nsl_test_npy_" + std::to_string(tick) + "_" + std::to_string(std::random_device{}()) +
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
Tensor<T> sample_tensor(const Shape& s) {
  Tensor<T> t(s);
  for (nsl::index i = 0; i < t.size(); ++i) t[i] = T(0.37) * T(i) - T(1.5) + T(1) / T(i + 3);
  return t;
}

/// Exact equality, NaN == NaN and -0 != +0 (compares the bits).
template <class T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

template <class T>
void check_equal(const Tensor<T>& got, const Tensor<T>& want) {
  REQUIRE(got.shape() == want.shape());
  for (nsl::index i = 0; i < want.size(); ++i) {
    INFO("element ", i);
    CHECK(same_bits(got[i], want[i]));
  }
}

/// The bytes of a .npy file with the given header dict and data, built by
/// hand: magic, version, little-endian header length (2 bytes in 1.0, 4 in
/// 2.0 and 3.0), dict, data. No padding, which readers must not require.
std::string npy_bytes(const std::string& dict, const std::string& data = "", int major = 1) {
  std::string out("\x93NUMPY", 6);
  out += char(major);
  out += '\0';
  const std::size_t n = dict.size();
  const int length_size = major == 1 ? 2 : 4;
  for (int i = 0; i < length_size; ++i) out += char((n >> (8 * i)) & 0xFF);
  return out + dict + data;
}
/// `n` little-endian float32 values 0, 1, 2, ...
std::string f4_data(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    float v = float(i);
    char b[4];
    std::memcpy(b, &v, 4);  // the tests run on a little-endian host
    out.append(b, 4);
  }
  return out;
}
std::string dict_with(const std::string& descr, const std::string& shape,
                      const std::string& fortran = "False") {
  return "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }";
}

template <class T = float>
Tensor<T> parse(const std::string& bytes) {
  return nsl::parse_npy<T>(bytes.data(), bytes.size(), "mem.npy");
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

bool numpy_available() {
  static const bool available =
      std::system(NSL_TEST_NUMPY_PYTHON " -c 'import numpy' 2>/dev/null") == 0;
  return available;
}
/// Single-quotes `s` for the shell.
std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}
/// Runs a Python script with numpy, with `dir` as sys.argv[1]; true on exit 0.
bool run_python(const TempDir& dir, const std::string& script) {
  const std::string file = dir.file("script.py");
  write_file(file, script);
  const std::string command = std::string(NSL_TEST_NUMPY_PYTHON) + " " + shell_quote(file) +
                              " " + shell_quote(dir.path.string());
  return std::system(command.c_str()) == 0;
}

}  // namespace

TEST_CASE_TEMPLATE("save_npy then load_npy gives back the shape and every value, ranks 1 to 4",
                   T, float, double) {
  TempDir dir;
  for (const Shape& s : {Shape{7}, Shape{3, 5}, Shape{2, 3, 4}, Shape{2, 3, 4, 5}}) {
    CAPTURE(s);
    const Tensor<T> t = sample_tensor<T>(s);
    const std::string path = dir.file("t.npy");
    nsl::save_npy(path, t);
    check_equal(nsl::load_npy<T>(path), t);
  }
}

TEST_CASE_TEMPLATE("special values and empty extents survive a round trip", T, float, double) {
  TempDir dir;
  using lim = std::numeric_limits<T>;
  Tensor<T> t(Shape{8});
  const T values[] = {T(-0.0),         lim::infinity(), -lim::infinity(), lim::quiet_NaN(),
                      lim::denorm_min(), lim::max(),    lim::lowest(),    lim::epsilon()};
  for (nsl::index i = 0; i < 8; ++i) t[i] = values[i];
  nsl::save_npy(dir.file("special.npy"), t);
  check_equal(nsl::load_npy<T>(dir.file("special.npy")), t);

  const Tensor<T> empty(Shape{0, 3});
  nsl::save_npy(dir.file("empty.npy"), empty);
  CHECK(nsl::load_npy<T>(dir.file("empty.npy")).shape() == Shape{0, 3});
}

TEST_CASE("save_npy accepts const and mutable views") {
  TempDir dir;
  Tensor<float> t = sample_tensor<float>(Shape{2, 3});
  nsl::TensorView<float> mutable_view = t.view();
  nsl::TensorView<const float> const_view = t.view();
  nsl::save_npy(dir.file("a.npy"), mutable_view);
  check_equal(nsl::load_npy<float>(dir.file("a.npy")), t);
  nsl::save_npy(dir.file("b.npy"), const_view);
  check_equal(nsl::load_npy<float>(dir.file("b.npy")), t);
}

TEST_CASE("a saved file is version 1.0 with NumPy's header: descr, C order, shape, 64-byte aligned") {
  TempDir dir;
  struct Case {
    Shape shape;
    bool is_double;
    const char* dict;
  };
  const Case cases[] = {
      {Shape{7}, false, "{'descr': '<f4', 'fortran_order': False, 'shape': (7,), }"},
      {Shape{2, 3}, true, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }"},
      {Shape{1, 2, 3, 4}, false,
       "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2, 3, 4), }"},
  };
  for (const Case& c : cases) {
    const std::string dict = c.dict;
    CAPTURE(dict);
    const std::string path = dir.file("h.npy");
    if (c.is_double)
      nsl::save_npy(path, Tensor<double>(c.shape, 1.0));
    else
      nsl::save_npy(path, Tensor<float>(c.shape, 1.0f));
    const std::string bytes = read_file(path);
    REQUIRE(bytes.size() >= 10);
    CHECK(bytes.compare(0, 6, "\x93NUMPY") == 0);
    CHECK(bytes[6] == 1);  // version 1.0
    CHECK(bytes[7] == 0);
    const std::size_t header_len =
        std::size_t(static_cast<unsigned char>(bytes[8])) |
        (std::size_t(static_cast<unsigned char>(bytes[9])) << 8);
    CHECK((10 + header_len) % 64 == 0);
    REQUIRE(bytes.size() == 10 + header_len + std::size_t(c.shape.size()) * (c.is_double ? 8 : 4));
    const std::string header = bytes.substr(10, header_len);
    REQUIRE(header.size() > dict.size());
    CHECK(header.compare(0, dict.size(), dict) == 0);
    CHECK(header.back() == '\n');
    CHECK(header.find_first_not_of(' ', dict.size()) == header.size() - 1);  // space padding
  }
}

TEST_CASE("save_npy replaces an existing file and leaves no temporary file behind") {
  TempDir dir;
  const std::string path = dir.file("t.npy");
  nsl::save_npy(path, Tensor<float>(Shape{100}, 1.0f));
  const Tensor<float> small = sample_tensor<float>(Shape{3});
  nsl::save_npy(path, small);
  check_equal(nsl::load_npy<float>(path), small);
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir.path)) {
    CAPTURE(entry.path().string());
    CHECK(entry.path().filename() == "t.npy");
    ++files;
  }
  CHECK(files == 1);
}

TEST_CASE("a failed save raises IoError and leaves nothing half-written") {
  TempDir dir;
  const Tensor<float> t = sample_tensor<float>(Shape{4});

  // The directory does not exist: the temporary file cannot even be created.
  CHECK_THROWS_WITH_AS(nsl::save_npy(dir.file("missing/t.npy"), t),
                       doctest::Contains("save_npy: "), nsl::IoError);

  // `path` is a directory: writing succeeds, the final rename fails; the
  // temporary file is removed and the directory is left as it was.
  fs::create_directory(dir.path / "occupied");
  CHECK_THROWS_AS(nsl::save_npy(dir.file("occupied"), t), nsl::IoError);
  int entries = 0;
  for (const auto& entry : fs::directory_iterator(dir.path)) {
    CAPTURE(entry.path().string());
    CHECK(entry.path().filename() == "occupied");
    ++entries;
  }
  CHECK(entries == 1);
  CHECK(fs::is_directory(dir.path / "occupied"));

  // A rank-0 (default) tensor has no .npy shape nsl could read back.
  CHECK_THROWS_AS(nsl::save_npy(dir.file("r0.npy"), Tensor<float>()), nsl::ShapeError);
  CHECK_FALSE(fs::exists(dir.path / "r0.npy"));
}

TEST_CASE("NumPy loads files written by save_npy") {
  if (!numpy_available()) {
    MESSAGE("numpy not importable by " NSL_TEST_NUMPY_PYTHON "; skipped");
    return;
  }
  TempDir dir;
  Tensor<float> f(Shape{2, 3});
  for (nsl::index i = 0; i < f.size(); ++i) f[i] = 0.25f * float(i) - 0.5f;
  Tensor<double> d(Shape{5});
  for (nsl::index i = 0; i < d.size(); ++i) d[i] = 1.0 / double(i + 1);
  Tensor<float> r4(Shape{1, 2, 3, 4});
  for (nsl::index i = 0; i < r4.size(); ++i) r4[i] = float(i);
  nsl::save_npy(dir.file("f.npy"), f);
  nsl::save_npy(dir.file("d.npy"), d);
  nsl::save_npy(dir.file("r4.npy"), r4);
  CHECK(run_python(dir, R"(
import sys, os, numpy as np
d = sys.argv[1]
f = np.load(os.path.join(d, 'f.npy'))
assert f.dtype == np.float32 and f.shape == (2, 3), (f.dtype, f.shape)
assert np.array_equal(f, (np.arange(6, dtype=np.float32) * 0.25 - 0.5).reshape(2, 3)), f
x = np.load(os.path.join(d, 'd.npy'))
assert x.dtype == np.float64 and x.shape == (5,), (x.dtype, x.shape)
assert np.array_equal(x, 1.0 / np.arange(1, 6, dtype=np.float64)), x
r = np.load(os.path.join(d, 'r4.npy'))
assert r.dtype == np.float32 and r.shape == (1, 2, 3, 4) and r.flags['C_CONTIGUOUS']
assert np.array_equal(r, np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4))
with open(os.path.join(d, 'f.npy'), 'rb') as fh:
    major, minor = np.lib.format.read_magic(fh)
    assert (major, minor) == (1, 0)
    np.lib.format.read_array_header_1_0(fh)
    assert fh.tell() % 64 == 0, fh.tell()
)"));
}

TEST_CASE("load_npy reads files written by NumPy: versions 1.0 and 2.0, float32 and float64") {
  if (!numpy_available()) {
    MESSAGE("numpy not importable by " NSL_TEST_NUMPY_PYTHON "; skipped");
    return;
  }
  TempDir dir;
  REQUIRE(run_python(dir, R"(
import sys, os, numpy as np
d = sys.argv[1]
a = (np.arange(12, dtype=np.float32) * 0.5 - 1.0).reshape(3, 4)
np.save(os.path.join(d, 'v1_f4.npy'), a)
np.save(os.path.join(d, 'v1_f8_rank1.npy'), np.arange(5, dtype=np.float64) / 4.0)
np.save(os.path.join(d, 'v1_f8_third.npy'), np.full((2, 2), 1.0 / 3.0))
np.save(os.path.join(d, 'v1_rank4.npy'), np.arange(120, dtype=np.float32).reshape(2, 3, 4, 5))
with open(os.path.join(d, 'v2_f8.npy'), 'wb') as fh:
    np.lib.format.write_array(fh, np.arange(6, dtype=np.float64).reshape(2, 3) - 2.5, version=(2, 0))
)"));

  const Tensor<float> a = nsl::load_npy<float>(dir.file("v1_f4.npy"));
  REQUIRE(a.shape() == Shape{3, 4});
  for (nsl::index i = 0; i < 12; ++i) CHECK(a[i] == 0.5f * float(i) - 1.0f);

  const Tensor<double> r1 = nsl::load_npy<double>(dir.file("v1_f8_rank1.npy"));
  REQUIRE(r1.shape() == Shape{5});
  for (nsl::index i = 0; i < 5; ++i) CHECK(r1[i] == double(i) / 4.0);

  // float64 in the file, float asked for: converted, rounded to nearest.
  const Tensor<float> third = nsl::load_npy<float>(dir.file("v1_f8_third.npy"));
  REQUIRE(third.shape() == Shape{2, 2});
  for (nsl::index i = 0; i < 4; ++i) CHECK(third[i] == static_cast<float>(1.0 / 3.0));

  // float32 in the file, double asked for.
  const Tensor<double> r4 = nsl::load_npy<double>(dir.file("v1_rank4.npy"));
  REQUIRE(r4.shape() == Shape{2, 3, 4, 5});
  CHECK(r4(1, 2, 3, 4) == 119.0);
  CHECK(r4(0, 1, 2, 3) == double(((0 * 3 + 1) * 4 + 2) * 5 + 3));

  const std::string v2 = read_file(dir.file("v2_f8.npy"));
  REQUIRE(v2.size() > 8);
  CHECK(v2[6] == 2);  // NumPy really wrote version 2.0
  const Tensor<double> b = nsl::load_npy<double>(dir.file("v2_f8.npy"));
  REQUIRE(b.shape() == Shape{2, 3});
  for (nsl::index i = 0; i < 6; ++i) CHECK(b[i] == double(i) - 2.5);
}

TEST_CASE("the header dict is read like Python: any key order, quotes, spaces, trailing commas") {
  const std::string data = f4_data(6);
  const char* dicts[] = {
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
      "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}",
      "{\"fortran_order\": False, \"shape\": (2,3,), \"descr\": \"<f4\"}",
      "  {  'descr' :'<f4' ,'fortran_order':False,'shape':( 2 , 3 ) , }  \n",
      "{'descr': '=f4', 'fortran_order': False, 'shape': (2, 3)}\n",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }",  // Python 2 longs
  };
  for (const char* dict : dicts) {
    const std::string text = dict;
    CAPTURE(text);
    const Tensor<float> t = parse(npy_bytes(dict, data));
    REQUIRE(t.shape() == Shape{2, 3});
    CHECK(t(1, 2) == 5.0f);
  }
  // Rank 1 with or without the trailing comma.
  CHECK(parse(npy_bytes(dict_with("<f4", "(6,)"), data)).shape() == Shape{6});
  CHECK(parse(npy_bytes(dict_with("<f4", "(6)"), data)).shape() == Shape{6});
  // Versions 2.0 and 3.0 have a 4-byte header length.
  CHECK(parse(npy_bytes(dict_with("<f4", "(6,)"), data, 2)).shape() == Shape{6});
  CHECK(parse(npy_bytes(dict_with("<f4", "(3, 2)"), data, 3)).shape() == Shape{3, 2});
}

TEST_CASE("malformed files raise FormatError saying what is wrong") {
  const std::string data = f4_data(6);
  const std::string good = npy_bytes(dict_with("<f4", "(2, 3)"), data);
  REQUIRE(parse(good).shape() == Shape{2, 3});

  SUBCASE("messages name the operation and the source") {
    CHECK(format_error_of("hello") == "load_npy: mem.npy: not a .npy file (bad magic, file too short)");
  }
  SUBCASE("bad magic") {
    std::string bytes = good;
    bytes[1] = 'n';
    CHECK_THROWS_WITH_AS(parse(bytes), doctest::Contains("not a .npy file (bad magic)"),
                         nsl::FormatError);
    CHECK_THROWS_WITH_AS(parse(""), doctest::Contains("not a .npy file"), nsl::FormatError);
    CHECK_THROWS_WITH_AS(nsl::parse_npy<float>(nullptr, 0, "null"),
                         doctest::Contains("not a .npy file"), nsl::FormatError);
  }
  SUBCASE("unsupported version") {
    std::string bytes = good;
    bytes[6] = 4;
    CHECK(format_error_of(bytes).find("unsupported .npy format version 4.0") != std::string::npos);
    bytes = good;
    bytes[7] = 1;
    CHECK(format_error_of(bytes).find("version 1.1") != std::string::npos);
  }
  SUBCASE("truncated header") {
    std::string bytes = good.substr(0, 30);  // the header length says 58 bytes follow
    CHECK_THROWS_WITH_AS(parse(bytes), doctest::Contains("runs past the end of the file"),
                         nsl::FormatError);
    CHECK_THROWS_WITH_AS(parse(good.substr(0, 9)), doctest::Contains("header length"),
                         nsl::FormatError);
  }
  SUBCASE("absurd header length") {
    std::string bytes = npy_bytes(dict_with("<f4", "(2, 3)"), data, 2);
    bytes[8] = bytes[9] = bytes[10] = bytes[11] = '\xff';
    CHECK_THROWS_WITH_AS(parse(bytes), doctest::Contains("header length 4294967295 exceeds"),
                         nsl::FormatError);
  }
  SUBCASE("truncated data") {
    CHECK_THROWS_WITH_AS(parse(good.substr(0, good.size() - 4)),
                         doctest::Contains("expected 24 bytes of data, file has 20 (shape (2, 3))"),
                         nsl::FormatError);
  }
  SUBCASE("trailing garbage") {
    CHECK_THROWS_WITH_AS(parse(good + "junk"), doctest::Contains("trailing bytes"),
                         nsl::FormatError);
  }
  SUBCASE("unsupported dtypes are named") {
    CHECK_THROWS_WITH_AS(parse(npy_bytes(dict_with("<i4", "(2, 3)"), data)),
                         doctest::Contains("unsupported dtype '<i4'"), nsl::FormatError);
    CHECK_THROWS_WITH_AS(parse(npy_bytes(dict_with(">f8", "(3,)"), data)),
                         doctest::Contains("unsupported dtype '>f8' (big-endian)"),
                         nsl::FormatError);
    CHECK_THROWS_WITH_AS(parse(npy_bytes(dict_with("<f2", "(12,)"), data)),
                         doctest::Contains("unsupported dtype '<f2'"), nsl::FormatError);
    CHECK_THROWS_WITH_AS(
        parse(npy_bytes("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,)}", data)),
        doctest::Contains("structured"), nsl::FormatError);
  }
  SUBCASE("Fortran order") {
    CHECK_THROWS_WITH_AS(parse(npy_bytes(dict_with("<f4", "(2, 3)", "True"), data)),
                         doctest::Contains("fortran_order True is not supported"),
                         nsl::FormatError);
  }
  SUBCASE("rank 0 and rank 5") {
    CHECK_THROWS_WITH_AS(parse(npy_bytes(dict_with("<f4", "()"), f4_data(1))),
                         doctest::Contains("rank 0"), nsl::FormatError);
    CHECK_THROWS_WITH_AS(parse(npy_bytes(dict_with("<f4", "(1, 1, 2, 3, 1)"), data)),
                         doctest::Contains("rank 5"), nsl::FormatError);
  }
  SUBCASE("an absurd shape is an error, never an allocation") {
    CHECK_THROWS_WITH_AS(parse(npy_bytes(dict_with("<f4", "(1000000000000, 1000000000000)"), data)),
                         doctest::Contains("overflows"), nsl::FormatError);
    CHECK_THROWS_WITH_AS(parse(npy_bytes(dict_with("<f8", "(1000000, 1000000)"), data)),
                         doctest::Contains("expected 8000000000000 bytes of data"),
                         nsl::FormatError);
    CHECK_THROWS_WITH_AS(parse(npy_bytes(dict_with("<f4", "(99999999999999999999999,)"), data)),
                         doctest::Contains("too large"), nsl::FormatError);
    // An empty array with an absurd extent: empty extents count as 1.
    CHECK_THROWS_WITH_AS(parse(npy_bytes(dict_with("<f4", "(0, 4611686018427387904)"), "")),
                         doctest::Contains("shape (0, 4611686018427387904) overflows"), nsl::FormatError);
    CHECK(parse(npy_bytes(dict_with("<f4", "(0, 1000)"), "")).shape() == Shape{0, 1000});
  }
  SUBCASE("negative extent") {
    CHECK_THROWS_WITH_AS(parse(npy_bytes(dict_with("<f4", "(2, -3)"), data)),
                         doctest::Contains("negative extent -3"), nsl::FormatError);
  }
  SUBCASE("bad shape text") {
    for (const char* shape : {"(2, x)", "6", "(2 3)", "(,)", "(2,,)", "(2, 3", "[2, 3]"}) {
      const std::string text = shape;
      CAPTURE(text);
      CHECK_THROWS_WITH_AS(parse(npy_bytes(dict_with("<f4", shape), data)),
                           doctest::Contains("shape"), nsl::FormatError);
    }
  }
  SUBCASE("missing, duplicate and unknown keys") {
    CHECK_THROWS_WITH_AS(parse(npy_bytes("{'fortran_order': False, 'shape': (6,)}", data)),
                         doctest::Contains("no 'descr' key"), nsl::FormatError);
    CHECK_THROWS_WITH_AS(parse(npy_bytes("{'descr': '<f4', 'shape': (6,)}", data)),
                         doctest::Contains("no 'fortran_order' key"), nsl::FormatError);
    CHECK_THROWS_WITH_AS(parse(npy_bytes("{'descr': '<f4', 'fortran_order': False}", data)),
                         doctest::Contains("no 'shape' key"), nsl::FormatError);
    CHECK_THROWS_WITH_AS(
        parse(npy_bytes("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (6,)}",
                        data)),
        doctest::Contains("duplicate key 'descr'"), nsl::FormatError);
    CHECK_THROWS_WITH_AS(
        parse(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': 1}", data)),
        doctest::Contains("unexpected key 'x'"), nsl::FormatError);
  }
  SUBCASE("header syntax") {
    for (const char* dict : {"", "descr", "{'descr' '<f4'}", "{'descr': <f4}",
                             "{'descr': '<f4', 'fortran_order': false, 'shape': (6,)}",
                             "{'descr': '<f4', 'fortran_order': False, 'shape': (6,)} x",
                             "{'descr': '<f4', 'fortran_order': False, 'shape': (6,)",
                             "{'descr': '<f4"}) {
      const std::string text = dict;
      CAPTURE(text);
      CHECK_THROWS_WITH_AS(parse(npy_bytes(dict, data)), doctest::Contains("malformed header"),
                           nsl::FormatError);
    }
  }
}

TEST_CASE("every truncation of a valid file is a FormatError, and corrupted bytes never crash") {
  const std::string good = npy_bytes(dict_with("<f8", "(2, 2)"), std::string(32, '\0'));
  for (std::size_t n = 0; n < good.size(); ++n) {
    CAPTURE(n);
    // A copy of exactly n bytes, so the sanitizers see any read past the end.
    const std::vector<char> prefix(good.begin(), good.begin() + std::ptrdiff_t(n));
    CHECK_THROWS_AS(nsl::parse_npy<double>(prefix.data(), prefix.size(), "cut.npy"),
                    nsl::FormatError);
  }
  // Any outcome is fine for a corrupted byte except a crash or a non-nsl error.
  int failures = 0;
  for (std::size_t i = 0; i < good.size(); ++i) {
    for (char c : {'\0', '\xff', '(', ')', ',', '\'', '9', '-', '}'}) {
      std::vector<char> bytes(good.begin(), good.end());
      bytes[i] = c;
      try {
        nsl::parse_npy<double>(bytes.data(), bytes.size(), "fuzz.npy");
      } catch (const nsl::FormatError&) {
        ++failures;
      }
    }
  }
  CHECK(failures > 0);
}

TEST_CASE("load_npy: a missing file is an IoError, a malformed one a FormatError naming the path") {
  TempDir dir;
  const std::string missing = dir.file("no_such.npy");
  try {
    nsl::load_npy<float>(missing);
    FAIL("load_npy returned");
  } catch (const nsl::Error& e) {
    CHECK(e.kind() == nsl::ErrorKind::io);
    CHECK(std::string(e.what()) == "load_npy: " + missing + ": cannot open file for reading");
  }

  const std::string bad = dir.file("bad.npy");
  write_file(bad, npy_bytes(dict_with("<i4", "(2,)"), std::string(8, '\0')));
  CHECK_THROWS_WITH_AS(nsl::load_npy<float>(bad),
                       doctest::Contains(("load_npy: " + bad + ": unsupported dtype '<i4'").c_str()),
                       nsl::FormatError);

  // The size limit: refused before the file is read, with the size named.
  const std::string good = dir.file("good.npy");
  const std::string good_bytes = npy_bytes(dict_with("<f4", "(100,)"), f4_data(100));
  const std::size_t size = good_bytes.size();
  write_file(good, good_bytes);
  CHECK(nsl::load_npy<float>(good, size).size() == 100);
  CHECK_THROWS_WITH_AS(nsl::load_npy<float>(good, size - 1),
                       doctest::Contains(nsl::cat("load_npy: ", good, ": file size ", size,
                                                  " exceeds the limit of ", size - 1, " bytes")
                                             .c_str()),
                       nsl::FormatError);
  // The magic is checked first: a large file of another kind fails on it,
  // however small the limit.
  const std::string other = dir.file("other.npy");
  write_file(other, std::string(1 << 20, 'x'));
  CHECK_THROWS_WITH_AS(nsl::load_npy<float>(other, 100), doctest::Contains("not a .npy file (bad magic)"),
                       nsl::FormatError);
  CHECK_THROWS_WITH_AS(nsl::load_npy<float>(dir.path.string()), doctest::Contains("is a directory"), nsl::IoError);

  const std::string text = dir.file("text.npy");
  write_file(text, "a,b,c\n1,2,3\n");
  CHECK_THROWS_WITH_AS(nsl::load_npy<double>(text), doctest::Contains("not a .npy file"),
                       nsl::FormatError);

  // A directory opens on some systems but cannot be read: an I/O error either way.
  try {
    nsl::load_npy<float>(dir.path.string());
    FAIL("load_npy returned");
  } catch (const nsl::Error& e) {
    CHECK(e.kind() == nsl::ErrorKind::io);
  }
}
