// Tests of nsl/data/cifar.hpp: small CIFAR-10 and CIFAR-100 files written in
// the real binary format to a temporary directory (flat and in the archive's
// subfolder), every decoded value and the R, G, B plane layout checked, and
// each malformed or missing file failing with an error that names it; and,
// when it is installed, the real CIFAR-10 test set.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "nsl/data/cifar.hpp"

namespace {

namespace fs = std::filesystem;

const char* const cifar10_dir = "/usr/share/datasets/cifar-10-batches-bin";

/// A fresh directory under the system temp dir, removed with its content.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    const auto tick = std::chrono::steady_clock::now().time_since_epoch().count();
    path = fs::temp_directory_path() /
           ("nsl_test_cifar_" + std::to_string(tick) + "_" +
            std::to_string(std::random_device{}()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string str() const { return path.string(); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

/// The pixel byte of test image `id` at channel c, row h, column w: every
/// image, channel, row and column gives a different pattern.
int pixel(int id, int c, int h, int w) { return (id * 31 + c * 97 + h * 7 + w * 3) % 256; }

/// 3072 pixel bytes of test image `id`: R plane, G plane, B plane, row-major.
std::string pixels(int id) {
  std::string s;
  for (int c = 0; c < 3; ++c)
    for (int h = 0; h < 32; ++h)
      for (int w = 0; w < 32; ++w) s += static_cast<char>(pixel(id, c, h, w));
  return s;
}

std::string record10(int label, int id) { return static_cast<char>(label) + pixels(id); }
std::string record100(int coarse, int fine, int id) {
  return std::string(1, static_cast<char>(coarse)) + static_cast<char>(fine) + pixels(id);
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

nsl::Dataset parse(const std::string& bytes, bool cifar100, double scale = 1.0) {
  return nsl::parse_cifar(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(),
                          "mem.bin", cifar100, scale);
}

/// CIFAR-10 label of test image `id`.
int label10(int id) { return (id * 3 + 1) % 10; }

/// A CIFAR-10 directory: data_batch_b.bin holds images 2(b-1) and 2(b-1)+1,
/// test_batch.bin images 100 and 101.
void write_cifar10(const fs::path& dir) {
  fs::create_directories(dir);
  for (int b = 1; b <= 5; ++b) {
    const int id = 2 * (b - 1);
    write_file((dir / ("data_batch_" + std::to_string(b) + ".bin")).string(),
               record10(label10(id), id) + record10(label10(id + 1), id + 1));
  }
  write_file((dir / "test_batch.bin").string(),
             record10(label10(100), 100) + record10(label10(101), 101));
}

/// A CIFAR-100 directory: train.bin images 0..2, test.bin image 50.
void write_cifar100(const fs::path& dir) {
  fs::create_directories(dir);
  write_file((dir / "train.bin").string(),
             record100(19, 99, 0) + record100(0, 0, 1) + record100(7, 42, 2));
  write_file((dir / "test.bin").string(), record100(3, 17, 50));
}

/// True if image n of `d` is test image `id` times `scale`, value by value.
bool holds_image(const nsl::Dataset& d, nsl::index n, int id, double scale = 1.0) {
  for (int c = 0; c < 3; ++c)
    for (int h = 0; h < 32; ++h)
      for (int w = 0; w < 32; ++w)
        if (d.images(n, c, h, w) != float(double(pixel(id, c, h, w)) * scale)) return false;
  return true;
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

}  // namespace

TEST_CASE("parse_cifar decodes CIFAR-10 records as R then G then B planes") {
  std::string planes =
      std::string(1024, '\x01') + std::string(1024, '\x02') + std::string(1024, '\x03');
  const std::string bytes = static_cast<char>(7) + planes + record10(9, 5);
  REQUIRE(bytes.size() == 2 * 3073);
  REQUIRE(nsl::cifar_record_bytes(false) == 3073);

  const nsl::Dataset d = parse(bytes, false);
  CHECK(d.images.shape() == nsl::Shape{2, 3, 32, 32});
  CHECK(d.labels == std::vector<int>{7, 9});
  CHECK(d.classes == 10);
  for (int c = 0; c < 3; ++c)
    for (int h = 0; h < 32; ++h)
      for (int w = 0; w < 32; ++w) REQUIRE(d.images(0, c, h, w) == float(c + 1));
  CHECK(holds_image(d, 1, 5));

  SUBCASE("the full byte range without sign confusion") {
    std::string ramp;
    for (int i = 0; i < 3072; ++i) ramp += static_cast<char>(i % 256);
    const nsl::Dataset r = parse(static_cast<char>(0) + ramp, false);
    for (nsl::index i = 0; i < 3072; ++i) REQUIRE(r.images[i] == float(i % 256));
  }
  SUBCASE("pixels are scaled") {
    const nsl::Dataset s = parse(bytes, false, 1.0 / 255.0);
    CHECK(s.images(0, 2, 31, 31) == float(3.0 / 255.0));
    CHECK(holds_image(s, 1, 5, 1.0 / 255.0));
    CHECK_THROWS_WITH_AS(parse(bytes, false, std::nan("")),
                         doctest::Contains("scale must be finite"), nsl::ArgumentError);
  }
}

TEST_CASE("parse_cifar takes the fine label of CIFAR-100 records") {
  REQUIRE(nsl::cifar_record_bytes(true) == 3074);
  const nsl::Dataset d = parse(record100(19, 99, 3) + record100(2, 0, 4), true);
  CHECK(d.images.shape() == nsl::Shape{2, 3, 32, 32});
  CHECK(d.labels == std::vector<int>{99, 0});
  CHECK(d.classes == 100);
  CHECK(holds_image(d, 0, 3));
  CHECK(holds_image(d, 1, 4));
}

TEST_CASE("load_cifar joins the five CIFAR-10 training batches in order") {
  TempDir dir;
  write_cifar10(dir.path);
  CHECK(nsl::cifar_file_names(true, false) ==
        std::vector<std::string>{"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                 "data_batch_4.bin", "data_batch_5.bin"});
  CHECK(nsl::cifar_file_names(false, false) == std::vector<std::string>{"test_batch.bin"});

  const nsl::Dataset train = nsl::load_cifar(dir.str(), true, false);
  CHECK(train.images.shape() == nsl::Shape{10, 3, 32, 32});
  CHECK(train.classes == 10);
  REQUIRE(train.labels.size() == 10);
  for (int id = 0; id < 10; ++id) {
    CAPTURE(id);
    CHECK(train.labels[std::size_t(id)] == label10(id));
    CHECK(holds_image(train, id, id));
  }

  const nsl::Dataset test = nsl::load_cifar(dir.str(), false, false, 0.5);
  CHECK(test.images.shape() == nsl::Shape{2, 3, 32, 32});
  CHECK(test.labels == std::vector<int>{label10(100), label10(101)});
  CHECK(holds_image(test, 0, 100, 0.5));
  CHECK(holds_image(test, 1, 101, 0.5));
}

TEST_CASE("load_cifar reads CIFAR-100 train.bin and test.bin with fine labels") {
  TempDir dir;
  write_cifar100(dir.path);
  CHECK(nsl::cifar_file_names(true, true) == std::vector<std::string>{"train.bin"});
  CHECK(nsl::cifar_file_names(false, true) == std::vector<std::string>{"test.bin"});

  const nsl::Dataset train = nsl::load_cifar(dir.str(), true, true);
  CHECK(train.images.shape() == nsl::Shape{3, 3, 32, 32});
  CHECK(train.labels == std::vector<int>{99, 0, 42});
  CHECK(train.classes == 100);
  for (int id = 0; id < 3; ++id) CHECK(holds_image(train, id, id));

  const nsl::Dataset test = nsl::load_cifar(dir.str(), false, true);
  CHECK(test.labels == std::vector<int>{17});
  CHECK(holds_image(test, 0, 50));
}

TEST_CASE("load_cifar finds the files in the subfolder the archives unpack to") {
  TempDir dir;
  write_cifar10(dir.path / "cifar-10-batches-bin");
  write_cifar100(dir.path / "cifar-100-binary");
  const nsl::Dataset ten = nsl::load_cifar(dir.str(), true, false);
  CHECK(ten.images.dim(0) == 10);
  CHECK(holds_image(ten, 9, 9));
  const nsl::Dataset hundred = nsl::load_cifar(dir.str(), false, true);
  CHECK(hundred.labels == std::vector<int>{17});
  // The subfolder itself works too.
  CHECK(nsl::load_cifar(dir.file("cifar-10-batches-bin"), false, false).labels.size() == 2);

  SUBCASE("files directly in the directory come first") {
    write_file(dir.file("test_batch.bin"), record10(4, 77));
    const nsl::Dataset top = nsl::load_cifar(dir.str(), false, false);
    CHECK(top.labels == std::vector<int>{4});
    CHECK(holds_image(top, 0, 77));
  }
}

TEST_CASE("a partial record is a FormatError that says how many bytes are left over") {
  SUBCASE("in memory") {
    CHECK_THROWS_WITH_AS(
        parse(record10(1, 0) + record10(2, 1).substr(0, 100), false),
        doctest::Contains("load_cifar: mem.bin: size 3173 bytes is not a whole number of "
                          "3073-byte CIFAR-10 records"),
        nsl::FormatError);
    CHECK_THROWS_WITH_AS(parse(record10(1, 0) + record10(2, 1).substr(0, 100), false),
                         doctest::Contains("1 records and 100 bytes left over"), nsl::FormatError);
    CHECK_THROWS_WITH_AS(parse(record100(1, 2, 0) + "x", true),
                         doctest::Contains("1 records and 1 byte left over"), nsl::FormatError);
  }
  SUBCASE("a file of the other variant gets a hint") {
    CHECK_THROWS_WITH_AS(parse(record100(1, 2, 0) + record100(1, 2, 0), false),
                         doctest::Contains("pass cifar100 = true"), nsl::FormatError);
  }
  SUBCASE("in a file, named in the message") {
    TempDir dir;
    write_cifar10(dir.path);
    write_file(dir.file("data_batch_4.bin"), record10(1, 0) + record10(2, 1).substr(0, 3072));
    const auto [kind, message] = error_of([&] { nsl::load_cifar(dir.str(), true, false); });
    CHECK(kind == nsl::ErrorKind::format);
    CHECK(contains(message, dir.file("data_batch_4.bin") + ": size 6145 bytes"));
    CHECK(contains(message, "3072 bytes left over"));
    // The other split does not read that file.
    CHECK(nsl::load_cifar(dir.str(), false, false).labels.size() == 2);
  }
}

TEST_CASE("a label out of range is a FormatError naming the record") {
  SUBCASE("CIFAR-10 label 10") {
    CHECK_THROWS_WITH_AS(
        parse(record10(3, 0) + record10(10, 1), false),
        doctest::Contains("load_cifar: mem.bin: record 1 (byte offset 3073) has label 10, not a "
                          "CIFAR-10 class (0 to 9)"),
        nsl::FormatError);
    CHECK_THROWS_AS(parse(record10(255, 0), false), nsl::FormatError);
  }
  SUBCASE("CIFAR-100 fine label 100 and coarse label 20") {
    CHECK_THROWS_WITH_AS(
        parse(record100(1, 1, 0) + record100(1, 1, 1) + record100(1, 100, 2), true),
        doctest::Contains("record 2 (byte offset 6148) has fine label 100, not a "
                          "CIFAR-100 class (0 to 99)"),
        nsl::FormatError);
    CHECK_THROWS_WITH_AS(parse(record100(20, 1, 0), true),
                         doctest::Contains("record 0 (byte offset 0) has coarse label 20"),
                         nsl::FormatError);
  }
  SUBCASE("in a file") {
    TempDir dir;
    write_cifar100(dir.path);
    write_file(dir.file("test.bin"), record100(0, 0, 0) + record100(0, 200, 1));
    CHECK_THROWS_WITH_AS(
        nsl::load_cifar(dir.str(), false, true),
        doctest::Contains((dir.file("test.bin") + ": record 1 (byte offset 3074)").c_str()),
        nsl::FormatError);
  }
}

TEST_CASE("an empty CIFAR file is a FormatError") {
  CHECK_THROWS_WITH_AS(parse("", false), doctest::Contains("load_cifar: mem.bin: empty file"),
                       nsl::FormatError);
  TempDir dir;
  write_cifar10(dir.path);
  write_file(dir.file("test_batch.bin"), "");
  CHECK_THROWS_WITH_AS(nsl::load_cifar(dir.str(), false, false),
                       doctest::Contains((dir.file("test_batch.bin") + ": empty file").c_str()),
                       nsl::FormatError);
}

TEST_CASE("a missing directory or file is an IoError naming the files expected") {
  TempDir dir;
  SUBCASE("no such directory") {
    const auto [kind, message] =
        error_of([&] { nsl::load_cifar(dir.file("nowhere"), true, false); });
    CHECK(kind == nsl::ErrorKind::io);
    CHECK(contains(message, "nowhere: no such directory"));
    CHECK(contains(message, "data_batch_1.bin, data_batch_2.bin"));
    CHECK(contains(message, "cifar-10-binary.tar.gz"));
  }
  SUBCASE("a file instead of a directory") {
    write_file(dir.file("cifar-10-binary.tar.gz"), "not unpacked");
    const auto [kind, message] =
        error_of([&] { nsl::load_cifar(dir.file("cifar-10-binary.tar.gz"), true, false); });
    CHECK(kind == nsl::ErrorKind::io);
    CHECK(contains(message, "not a directory"));
  }
  SUBCASE("an empty directory") {
    const auto [kind, message] = error_of([&] { nsl::load_cifar(dir.str(), false, true); });
    CHECK(kind == nsl::ErrorKind::io);
    CHECK(contains(message, dir.str() + ": found none of the CIFAR-100 test set (test.bin)"));
    CHECK(contains(message, "cifar-100-binary"));
  }
  SUBCASE("one batch missing") {
    write_cifar10(dir.path);
    fs::remove(dir.path / "data_batch_3.bin");
    const auto [kind, message] = error_of([&] { nsl::load_cifar(dir.str(), true, false); });
    CHECK(kind == nsl::ErrorKind::io);
    CHECK(contains(message, "is incomplete: data_batch_3.bin is missing"));
  }
  SUBCASE("one batch missing in the subfolder") {
    write_cifar10(dir.path / "cifar-10-batches-bin");
    fs::remove(dir.path / "cifar-10-batches-bin" / "test_batch.bin");
    const auto [kind, message] = error_of([&] { nsl::load_cifar(dir.str(), false, false); });
    CHECK(kind == nsl::ErrorKind::io);
    CHECK(contains(message, "found none of the CIFAR-10 test set (test_batch.bin)"));
    fs::remove(dir.path / "cifar-10-batches-bin" / "data_batch_5.bin");
    const auto [kind5, message5] = error_of([&] { nsl::load_cifar(dir.str(), true, false); });
    CHECK(kind5 == nsl::ErrorKind::io);
    CHECK(contains(message5,
                   (dir.path / "cifar-10-batches-bin").string() + ": the CIFAR-10 training set"));
    CHECK(contains(message5, "incomplete: data_batch_5.bin is missing"));
  }
  SUBCASE("the other variant is present") {
    write_cifar100(dir.path);
    const auto [kind, message] = error_of([&] { nsl::load_cifar(dir.str(), true, false); });
    CHECK(kind == nsl::ErrorKind::io);
    CHECK(contains(message, "it holds CIFAR-100 files: pass cifar100 = true"));
  }
  SUBCASE("a directory where a file should be") {
    write_cifar10(dir.path);
    fs::remove(dir.path / "test_batch.bin");
    fs::create_directory(dir.path / "test_batch.bin");
    CHECK_THROWS_WITH_AS(nsl::load_cifar(dir.str(), false, false),
                         doctest::Contains("test_batch.bin is missing or not a regular file"),
                         nsl::IoError);
  }
}

TEST_CASE("load_cifar bounds the size of each file") {
  TempDir dir;
  write_cifar10(dir.path);
  CHECK(nsl::load_cifar(dir.str(), false, false, 1.0, 2 * 3073).labels.size() == 2);
  CHECK_THROWS_WITH_AS(nsl::load_cifar(dir.str(), false, false, 1.0, 2 * 3073 - 1),
                       doctest::Contains("file size 6146 exceeds the limit of 6145 bytes"),
                       nsl::FormatError);
}

TEST_CASE("cifar10_class_name names the ten classes") {
  const std::vector<std::string> want = {"airplane", "automobile", "bird",  "cat",  "deer",
                                         "dog",      "frog",       "horse", "ship", "truck"};
  for (int label = 0; label < 10; ++label)
    CHECK(nsl::cifar10_class_name(label) == want[std::size_t(label)]);
  CHECK_THROWS_AS(nsl::cifar10_class_name(10), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::cifar10_class_name(-1), nsl::ArgumentError);
}

TEST_CASE("the real CIFAR-10 test set loads with its known statistics") {
  std::error_code ec;
  if (!fs::is_directory(cifar10_dir, ec)) {
    const std::string note = std::string("skipped: ") + cifar10_dir + " is not present";
    MESSAGE(note);
    return;
  }
  const nsl::Dataset d = nsl::load_cifar(cifar10_dir, false, false);
  CHECK(d.images.shape() == nsl::Shape{10000, 3, 32, 32});
  REQUIRE(d.labels.size() == 10000);
  std::vector<int> per_class(10, 0);  // load_cifar checked 0 <= label < 10
  for (int l : d.labels) ++per_class[std::size_t(l)];
  CHECK(per_class == std::vector<int>(10, 1000));
  CHECK(d.images.vec().minCoeff() == 0.0f);
  CHECK(d.images.vec().maxCoeff() == 255.0f);
}
