#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "nsl/data/glyph_render.hpp"
#include "nsl/fewshot/episodes.hpp"

namespace fs = std::filesystem;

namespace {

// A small set: two background and one evaluation writing system, few classes.
nsl::GlyphBuildOptions small_options(std::uint64_t seed = 7) {
  nsl::GlyphBuildOptions o;
  o.seed = seed;
  o.renders = 6;
  o.max_per_script = 8;
  o.scripts = {"Latin", "Armenian", "Cherokee"};
  return o;
}

fs::path scratch(const char* name) {
  const fs::path dir = fs::path(NSL_TEST_BINARY_DIR) / "glyph_tests" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

}  // namespace

TEST_CASE("The glyph builder gives the same bytes for the same seed and other bytes for another") {
  const nsl::GlyphSet a = nsl::build_glyphs(small_options());
  const nsl::GlyphSet b = nsl::build_glyphs(small_options());
  const nsl::GlyphSet c = nsl::build_glyphs(small_options(8));
  REQUIRE(a.class_count() == 3 * 8);
  CHECK(a.scripts.size() == 3);
  CHECK(nsl::glyph_fingerprint(a) == nsl::glyph_fingerprint(b));
  CHECK(a.pixels == b.pixels);
  CHECK(nsl::glyph_fingerprint(a) != nsl::glyph_fingerprint(c));
  CHECK(a.pixels != c.pixels);
  // The classes (characters) do not depend on the seed, only their renders do.
  for (std::size_t i = 0; i < a.classes.size(); ++i) CHECK(a.classes[i].code_point == c.classes[i].code_point);
  // Every render has ink, and the renders of a class differ from each other.
  for (nsl::index k = 0; k < a.class_count(); ++k) {
    long ink = 0;
    for (nsl::index p = 0; p < 28 * 28; ++p) ink += a.image(k, 0)[p];
    CHECK(ink > 255 * 4);
    CHECK(std::memcmp(a.image(k, 0), a.image(k, 1), 28 * 28) != 0);
  }
}

TEST_CASE("A writing system's renders do not depend on which other systems are built") {
  nsl::GlyphBuildOptions only = small_options();
  only.scripts = {"Cherokee"};
  const nsl::GlyphSet all = nsl::build_glyphs(small_options());
  const nsl::GlyphSet cherokee = nsl::build_glyphs(only);
  REQUIRE(cherokee.class_count() == 8);
  const nsl::index first = all.class_count() - 8;  // Cherokee comes last in the table order
  CHECK(std::memcmp(all.image(first, 0), cherokee.image(0, 0), std::size_t(8 * 6 * 28 * 28)) == 0);
}

TEST_CASE("The glyph cache file round-trips and a damaged one fails with its name") {
  const fs::path dir = scratch("roundtrip");
  const nsl::GlyphSet set = nsl::build_glyphs(small_options());
  const std::string path = (dir / "set.nslglyph").string();
  nsl::save_glyphs(path, set);
  const nsl::GlyphSet back = nsl::load_glyphs(path);
  CHECK(nsl::glyph_fingerprint(back) == nsl::glyph_fingerprint(set));
  CHECK(back.scripts[2].name == "Cherokee");
  CHECK(back.scripts[2].split == nsl::GlyphSplit::evaluation);
  CHECK(back.classes_in(nsl::GlyphSplit::background).size() == 16);

  // One flipped pixel byte: the checksum catches it.
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::string damaged = bytes;
  damaged[damaged.size() / 2] ^= 0x5A;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << damaged;
  CHECK_THROWS_WITH_AS(nsl::load_glyphs(path), doctest::Contains("checksum mismatch"), nsl::IoError);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes.substr(0, 100);
  CHECK_THROWS_WITH_AS(nsl::load_glyphs(path), doctest::Contains(path.c_str()), nsl::IoError);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << "not a glyph set at all";
  CHECK_THROWS_WITH_AS(nsl::load_glyphs(path), doctest::Contains("NSLGLYPH"), nsl::IoError);
  CHECK_THROWS_AS(nsl::load_glyphs((dir / "missing.nslglyph").string()), nsl::IoError);
}

namespace {
// The bytes of a glyph cache file built field by field, closed by its CRC.
struct GlyphBytes {
  std::string b = std::string("NSLGLYPH", 8);
  GlyphBytes& u8(std::uint8_t v) { return nsl::put_u8(b, v), *this; }
  GlyphBytes& u16(std::uint16_t v) { return nsl::put_le_u16(b, v), *this; }
  GlyphBytes& u32(std::uint32_t v) { return nsl::put_le_u32(b, v), *this; }
  GlyphBytes& u64(std::uint64_t v) { return nsl::put_le_u64(b, v), *this; }
  GlyphBytes& text(const std::string& s) { return nsl::put_string_le_u16(b, s), *this; }
  // version 1, seed 0, size, renders, then the three counts
  GlyphBytes& header(std::uint32_t size, std::uint32_t renders, std::uint32_t scripts, std::uint32_t classes,
                     std::uint32_t fonts) {
    return u32(1).u64(0).u32(size).u32(renders).u32(scripts).u32(classes).u32(fonts);
  }
  std::vector<unsigned char> with_crc() const {
    std::string out = b;
    nsl::put_le_u32(out, nsl::crc32_of(reinterpret_cast<const unsigned char*>(out.data()), out.size()));
    return std::vector<unsigned char>(out.begin(), out.end());
  }
};

// A valid set of one script, one font, one class of two 2x2 renders.
std::vector<unsigned char> valid_glyph_bytes() {
  return GlyphBytes{}
      .header(2, 2, 1, 1, 1)
      .u8(1).text("Latin")
      .text("font.ttf")
      .u32(0).u32('A')
      .u16(0).u16(0)
      .u32(0x01020304).u32(0x05060708)
      .with_crc();
}

// The message of the FormatError parse_glyphs raises for `bytes` (exactly
// that many bytes, so the sanitizers see any read past the end).
std::string glyph_format_error(const std::vector<unsigned char>& bytes) {
  try {
    nsl::parse_glyphs(bytes.data(), bytes.size(), "mem.nslglyph");
  } catch (const nsl::Error& e) {
    CHECK(e.kind() == nsl::ErrorKind::format);
    return e.what();
  }
  FAIL("parse_glyphs accepted the bytes");
  return "";
}
}  // namespace

TEST_CASE("parse_glyphs checks every count against the bytes left before allocating, as a format error") {
  const auto valid = valid_glyph_bytes();
  const nsl::GlyphSet set = nsl::parse_glyphs(valid.data(), valid.size(), "mem.nslglyph");
  CHECK(set.size == 2);
  CHECK(set.renders == 2);
  CHECK(set.scripts[0].split == nsl::GlyphSplit::evaluation);
  CHECK(set.classes[0].code_point == 'A');
  CHECK(set.pixels == std::vector<std::uint8_t>{4, 3, 2, 1, 8, 7, 6, 5});

  // Counts from the file that the bytes left cannot hold: each fails before
  // anything is sized by it (the classes x renders case once asked for
  // gigabytes from a 55-byte file).
  CHECK(glyph_format_error(GlyphBytes{}.header(28, 1, 0, 0xFFFFFFFFu, 0).with_crc()) ==
        "load_glyphs: mem.nslglyph: truncated (4294967295 classes need at least 8 bytes each, 0 bytes remain)");
  CHECK(glyph_format_error(GlyphBytes{}.header(28, 0x7FFFFFFFu, 1, 1, 1).u8(0).text("L").text("f").u32(0).u32(65)
                               .u64(0).with_crc())
            .find("truncated (2147483647 renders of every class need at least 2 bytes each") != std::string::npos);
  CHECK(glyph_format_error(GlyphBytes{}.header(28, 0xFFFFFFFFu, 0, 0xFFFFFFFFu, 0).with_crc())
            .find("4294967295 classes") != std::string::npos);
  CHECK(glyph_format_error(GlyphBytes{}.header(4096, 1, 1, 1, 1).u8(0).text("L").text("f").u32(0).u32(65).u16(0)
                               .with_crc())
            .find("truncated (1 images need at least 16777216 bytes each") != std::string::npos);
  CHECK(glyph_format_error(GlyphBytes{}.header(28, 1, 0xFFFFFFFFu, 0, 0).with_crc()).find("scripts need") !=
        std::string::npos);
  CHECK(glyph_format_error(GlyphBytes{}.header(28, 1, 0, 0, 0xFFFFFFFFu).with_crc()).find("fonts need") !=
        std::string::npos);
  // Malformed content is a format error too, named.
  CHECK(glyph_format_error(GlyphBytes{}.header(0, 1, 0, 0, 0).with_crc()).find("bad size 0") != std::string::npos);
  CHECK(glyph_format_error(GlyphBytes{}.header(2, 1, 1, 0, 0).u8(2).text("L").with_crc())
            .find("script 0 has split 2") != std::string::npos);
  CHECK(glyph_format_error(GlyphBytes{}.header(2, 1, 1, 1, 0).u8(0).text("L").u32(1).u32(65).with_crc())
            .find("class 0 names script 1 of 1") != std::string::npos);
  CHECK(glyph_format_error(GlyphBytes{}.header(2, 1, 1, 1, 1).u8(0).text("L").text("f").u32(0).u32(65).u16(1)
                               .u32(0).with_crc())
            .find("render 0 names font 1 of 1") != std::string::npos);
  CHECK(glyph_format_error(GlyphBytes{}.u32(2).with_crc()).find("version 2") != std::string::npos);
  auto extra = GlyphBytes{}.header(2, 2, 1, 1, 1).u8(1).text("Latin").text("font.ttf").u32(0).u32('A')
                   .u16(0).u16(0).u32(0).u32(0).u8(9).with_crc();
  CHECK(glyph_format_error(extra).find("1 unexpected bytes after the pixels") != std::string::npos);
  auto flipped = valid;
  flipped[20] ^= 1;
  CHECK(glyph_format_error(flipped).find("checksum mismatch") != std::string::npos);
  CHECK(glyph_format_error({}).find("not a glyph set") != std::string::npos);
  // Every cut of the valid file is a format error, never a read past the end.
  for (std::size_t n = 0; n < valid.size(); ++n) {
    CAPTURE(n);
    glyph_format_error(std::vector<unsigned char>(valid.begin(), valid.begin() + std::ptrdiff_t(n)));
  }
}

TEST_CASE("load_glyphs: the magic before the rest of the file, the size limit before reading it") {
  const fs::path dir = scratch("limits");
  const std::string large = (dir / "large.nslglyph").string();
  std::ofstream(large, std::ios::binary) << std::string(1 << 20, 'x');
  CHECK_THROWS_WITH_AS(nsl::load_glyphs(large, 100), doctest::Contains("not a glyph set"), nsl::FormatError);
  const auto valid = valid_glyph_bytes();
  const std::string small = (dir / "small.nslglyph").string();
  std::ofstream(small, std::ios::binary).write(reinterpret_cast<const char*>(valid.data()),
                                               std::streamsize(valid.size()));
  CHECK(nsl::load_glyphs(small, valid.size()).renders == 2);
  CHECK_THROWS_WITH_AS(nsl::load_glyphs(small, valid.size() - 1),
                       doctest::Contains(nsl::cat("load_glyphs: ", small, ": file size ", valid.size(),
                                                  " exceeds the limit of ", valid.size() - 1, " bytes")
                                             .c_str()),
                       nsl::FormatError);
  // Saved and loaded back, byte for byte.
  nsl::save_glyphs(small, nsl::load_glyphs(small));
  CHECK(nsl::glyph_fingerprint(nsl::load_glyphs(small)) ==
        nsl::glyph_fingerprint(nsl::parse_glyphs(valid.data(), valid.size(), "mem")));
  CHECK_THROWS_AS(nsl::load_glyphs(dir.string()), nsl::IoError);
}

TEST_CASE("load_or_build_glyphs builds once, then reads the cache, and rebuilds a corrupt cache") {
  const fs::path dir = scratch("cache");
  bool built = false;
  const nsl::GlyphSet first = nsl::load_or_build_glyphs(dir.string(), small_options(), &built);
  CHECK(built);
  const nsl::GlyphSet second = nsl::load_or_build_glyphs(dir.string(), small_options(), &built);
  CHECK_FALSE(built);
  CHECK(nsl::glyph_fingerprint(first) == nsl::glyph_fingerprint(second));
  const fs::path file = dir / nsl::glyph_cache_name(small_options());
  REQUIRE(fs::exists(file));
  std::ofstream(file, std::ios::binary | std::ios::trunc) << "garbage";
  const nsl::GlyphSet third = nsl::load_or_build_glyphs(dir.string(), small_options(), &built);
  CHECK(built);
  CHECK(nsl::glyph_fingerprint(third) == nsl::glyph_fingerprint(first));
}

TEST_CASE("The glyph builder fails clearly without fonts and for unknown writing systems") {
  const fs::path empty = scratch("no_fonts");
  nsl::GlyphBuildOptions o = small_options();
  o.font_dir = empty.string();
  CHECK_THROWS_WITH_AS(nsl::build_glyphs(o), doctest::Contains("no font files"), nsl::IoError);
  CHECK_THROWS_WITH_AS(nsl::build_glyphs(o), doctest::Contains("fonts-noto-core"), nsl::IoError);
  o.font_dir = (empty / "absent").string();
  CHECK_THROWS_WITH_AS(nsl::build_glyphs(o), doctest::Contains("does not exist"), nsl::IoError);
  // Font files that draw none of the requested systems (DejaVu only, no Cherokee).
  o = small_options();
  o.scripts = {"Cherokee"};
  const fs::path dejavu = scratch("dejavu_only");
  for (const auto& e : fs::recursive_directory_iterator(o.font_dir))
    if (e.path().filename() == "DejaVuSans.ttf") fs::copy_file(e.path(), dejavu / "DejaVuSans.ttf");
  o.font_dir = dejavu.string();
  CHECK_THROWS_WITH_AS(nsl::build_glyphs(o), doctest::Contains("draws any of the requested"), nsl::IoError);
  o.scripts = {"Klingon"};
  CHECK_THROWS_AS(nsl::build_glyphs(o), nsl::ArgumentError);
}

TEST_CASE("Episodes draw distinct classes and renders, laid out support first, reproducibly") {
  const nsl::GlyphSet set = nsl::build_glyphs(small_options());
  const std::vector<nsl::index> pool = set.classes_in(nsl::GlyphSplit::background);
  const nsl::EpisodeSpec spec{5, 2, 3};
  nsl::Rng rng(1), again(1);
  nsl::Episode e, f;
  nsl::sample_episode(set, pool, spec, rng, e);
  nsl::sample_episode(set, pool, spec, again, f);
  CHECK(e.rows == f.rows);
  REQUIRE(e.images.shape() == nsl::Shape{5 * 2 + 5 * 3, 1, 28, 28});
  REQUIRE(e.labels.size() == 15);
  std::vector<nsl::index> classes = e.classes;
  std::sort(classes.begin(), classes.end());
  CHECK(std::unique(classes.begin(), classes.end()) == classes.end());
  for (nsl::index k = 0; k < 5; ++k) {
    CHECK(std::find(pool.begin(), pool.end(), e.classes[std::size_t(k)]) != pool.end());
    // Support rows k*2, k*2+1 and query rows 10 + 3k.. are all of class k, all different renders.
    std::vector<nsl::index> rows = {e.rows[std::size_t(2 * k)], e.rows[std::size_t(2 * k + 1)]};
    for (nsl::index j = 0; j < 3; ++j) {
      rows.push_back(e.rows[std::size_t(10 + 3 * k + j)]);
      CHECK(e.labels[std::size_t(3 * k + j)] == k);
    }
    for (nsl::index r : rows) CHECK(r / set.renders == e.classes[std::size_t(k)]);
    std::sort(rows.begin(), rows.end());
    CHECK(std::unique(rows.begin(), rows.end()) == rows.end());
  }
  // The pixels are the set's bytes / 255.
  CHECK(e.images[100] == doctest::Approx(set.pixels[std::size_t(e.rows[0] * 784 + 100)] / 255.0));
  nsl::sample_episode(set, pool, spec, rng, f);
  CHECK(e.rows != f.rows);
  CHECK_THROWS_AS(nsl::sample_episode(set, pool, nsl::EpisodeSpec{17, 1, 1}, rng, e), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::sample_episode(set, pool, nsl::EpisodeSpec{5, 4, 3}, rng, e), nsl::ArgumentError);
}

TEST_CASE("accuracy_interval gives the mean and 1.96 standard errors") {
  const nsl::AccuracyInterval r = nsl::accuracy_interval({0.5, 0.7, 0.6, 0.8});
  CHECK(r.mean == doctest::Approx(0.65));
  CHECK(r.ci95 == doctest::Approx(1.96 * std::sqrt(0.05 / 3.0) / 2.0));
  CHECK(r.episodes == 4);
}
