// nsl/data/glyphs.hpp — an Omniglot-style few-shot dataset of printed
// characters: the writing systems it draws from, the in-memory set, and its
// binary cache file. Rendering the glyphs (with FreeType) is
// nsl/data/glyph_render.hpp; this header needs nothing but the standard
// library and zlib, so a program that only reads a cache needs no FreeType.
//
// A class is one character (a Unicode code point) of one writing system; each
// class has `renders` grey images of size x size pixels (0 = paper, 255 =
// ink), drawn from different fonts and weights with a small random affine
// jitter. Writing systems are either `background` (meta-training) or
// `evaluation` (meta-testing): no character of an evaluation script is seen
// in training, as in Omniglot's split by alphabet.
//
// The cache file ("NSLGLYPH", version 1; all integers little-endian):
//
//     magic     8 bytes   "NSLGLYPH"
//     version   u32       1
//     seed      u64       the jitter seed the set was rendered with
//     size      u32       image height = width (28)
//     renders   u32       images per class
//     scripts   u32       writing systems
//     classes   u32
//     fonts     u32       font files used
//     scripts x { u8 split (0 background, 1 evaluation), u16 n, n bytes name }
//     fonts   x { u16 n, n bytes file name (no directory) }
//     classes x { u32 script, u32 code point }
//     classes x renders x u16   the font of each render
//     classes x renders x size x size u8   the pixels, class-major, row-major
//     crc32     u32       zlib CRC-32 of every byte before it
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "nsl/core/bytes.hpp"
#include "nsl/core/tensor.hpp"
#include "nsl/io/atomic_file.hpp"
#include "nsl/io/read_file.hpp"

namespace nsl {

enum class GlyphSplit : std::uint8_t { background = 0, evaluation = 1 };

inline const char* to_string(GlyphSplit s) { return s == GlyphSplit::background ? "background" : "evaluation"; }

/// A writing system: where its characters lie in Unicode, which font
/// families draw it (file-name prefixes), and which split it belongs to.
struct WritingSystem {
  const char* name;
  GlyphSplit split;
  std::vector<std::array<std::uint32_t, 2>> ranges;  ///< inclusive code-point ranges of its letters
  std::vector<const char*> font_prefixes;            ///< font files whose names start so may draw it
};

/// The writing systems of the default set: 26 background, 20 evaluation
/// (Omniglot has 30 and 20). Letters only: no digits, punctuation or
/// combining marks. Any font whose name starts with a prefix is tried, and
/// besides those the pan-script families DejaVu and GNU FreeFont.
inline const std::vector<WritingSystem>& writing_systems() {
  using G = GlyphSplit;
  static const std::vector<WritingSystem> table = {
      // background (meta-training)
      {"Latin", G::background, {{0x41, 0x5A}, {0x61, 0x7A}}, {"NotoSans-", "NotoSerif-", "NotoSansMono-", "NotoSansDisplay-", "NotoSerifDisplay-"}},
      {"Greek", G::background, {{0x391, 0x3A1}, {0x3A3, 0x3A9}, {0x3B1, 0x3C9}}, {"NotoSans-", "NotoSerif-", "NotoSansMono-"}},
      {"Cyrillic", G::background, {{0x410, 0x44F}}, {"NotoSans-", "NotoSerif-", "NotoSansMono-"}},
      {"Armenian", G::background, {{0x531, 0x556}, {0x561, 0x586}}, {"NotoSansArmenian-", "NotoSerifArmenian-"}},
      {"Hebrew", G::background, {{0x5D0, 0x5EA}}, {"NotoSansHebrew-", "NotoSerifHebrew-", "NotoRashiHebrew-"}},
      {"Arabic", G::background, {{0x621, 0x64A}}, {"NotoSansArabic-", "NotoNaskhArabic-", "NotoKufiArabic-"}},
      {"Devanagari", G::background, {{0x905, 0x939}}, {"NotoSansDevanagari-", "NotoSerifDevanagari-"}},
      {"Bengali", G::background, {{0x985, 0x9B9}}, {"NotoSansBengali-", "NotoSerifBengali-"}},
      {"Gujarati", G::background, {{0xA85, 0xAB9}}, {"NotoSansGujarati-", "NotoSerifGujarati-"}},
      {"Gurmukhi", G::background, {{0xA05, 0xA39}}, {"NotoSansGurmukhi-", "NotoSerifGurmukhi-"}},
      {"Tamil", G::background, {{0xB85, 0xBB9}}, {"NotoSansTamil-", "NotoSerifTamil-"}},
      {"Thai", G::background, {{0xE01, 0xE2E}}, {"NotoSansThai-", "NotoSerifThai-", "NotoLoopedThai-"}},
      {"Georgian", G::background, {{0x10D0, 0x10FA}}, {"NotoSansGeorgian-", "NotoSerifGeorgian-"}},
      {"Ethiopic", G::background, {{0x1200, 0x1248}}, {"NotoSansEthiopic-", "NotoSerifEthiopic-"}},
      {"Canadian Syllabics", G::background, {{0x1401, 0x1450}}, {"NotoSansCanadianAboriginal-"}},
      {"Runic", G::background, {{0x16A0, 0x16EA}}, {"NotoSansRunic-"}},
      {"Khmer", G::background, {{0x1780, 0x17B3}}, {"NotoSansKhmer-", "NotoSerifKhmer-"}},
      {"Myanmar", G::background, {{0x1000, 0x102A}}, {"NotoSansMyanmar-", "NotoSerifMyanmar-"}},
      {"Tibetan", G::background, {{0xF40, 0xF6C}}, {"NotoSerifTibetan-"}},
      {"Glagolitic", G::background, {{0x2C00, 0x2C2E}}, {"NotoSansGlagolitic-"}},
      {"Syriac", G::background, {{0x710, 0x72C}}, {"NotoSansSyriac-"}},
      {"Thaana", G::background, {{0x780, 0x7A5}}, {"NotoSansThaana-"}},
      {"Javanese", G::background, {{0xA984, 0xA9B2}}, {"NotoSansJavanese-"}},
      {"Yi", G::background, {{0xA000, 0xA04F}}, {"NotoSansYi-"}},
      {"Deseret", G::background, {{0x10400, 0x1044F}}, {"NotoSansDeseret-"}},
      {"Old Italic", G::background, {{0x10300, 0x1031F}}, {"NotoSansOldItalic-"}},
      // evaluation (meta-testing)
      {"Cherokee", G::evaluation, {{0x13A0, 0x13F4}}, {"NotoSansCherokee-"}},
      {"Tifinagh", G::evaluation, {{0x2D30, 0x2D67}}, {"NotoSansTifinagh-"}},
      {"Ogham", G::evaluation, {{0x1681, 0x169A}}, {"NotoSansOgham-"}},
      {"Vai", G::evaluation, {{0xA500, 0xA54F}}, {"NotoSansVai-"}},
      {"Lao", G::evaluation, {{0xE81, 0xEAE}}, {"NotoSansLao-", "NotoSerifLao-", "NotoLoopedLao-"}},
      {"Sinhala", G::evaluation, {{0xD85, 0xDC6}}, {"NotoSansSinhala-", "NotoSerifSinhala-"}},
      {"Kannada", G::evaluation, {{0xC85, 0xCB9}}, {"NotoSansKannada-", "NotoSerifKannada-"}},
      {"Telugu", G::evaluation, {{0xC05, 0xC39}}, {"NotoSansTelugu-", "NotoSerifTelugu-"}},
      {"Malayalam", G::evaluation, {{0xD05, 0xD39}}, {"NotoSansMalayalam-", "NotoSerifMalayalam-"}},
      {"Oriya", G::evaluation, {{0xB05, 0xB39}}, {"NotoSansOriya-"}},
      {"Mongolian", G::evaluation, {{0x1820, 0x1878}}, {"NotoSansMongolian-"}},
      {"Coptic", G::evaluation, {{0x2C80, 0x2CB1}}, {"NotoSansCoptic-"}},
      {"N'Ko", G::evaluation, {{0x7CA, 0x7EA}}, {"NotoSansNKo-"}},
      {"Samaritan", G::evaluation, {{0x800, 0x815}}, {"NotoSansSamaritan-"}},
      {"Balinese", G::evaluation, {{0x1B05, 0x1B33}}, {"NotoSansBalinese-", "NotoSerifBalinese-"}},
      {"Bamum", G::evaluation, {{0xA6A0, 0xA6EF}}, {"NotoSansBamum-"}},
      {"Gothic", G::evaluation, {{0x10330, 0x1034A}}, {"NotoSansGothic-"}},
      {"Shavian", G::evaluation, {{0x10450, 0x1047F}}, {"NotoSansShavian-"}},
      {"Osmanya", G::evaluation, {{0x10480, 0x1049D}}, {"NotoSansOsmanya-"}},
      {"Cypriot", G::evaluation, {{0x10800, 0x1083F}}, {"NotoSansCypriot-"}},
  };
  return table;
}

struct GlyphScript {
  std::string name;
  GlyphSplit split = GlyphSplit::background;
};

struct GlyphClass {
  std::uint32_t script = 0;      ///< index into GlyphSet::scripts
  std::uint32_t code_point = 0;  ///< the character
};

/// A rendered glyph set (see the top of the file).
struct GlyphSet {
  std::uint64_t seed = 0;
  index size = 28;
  index renders = 0;
  std::vector<GlyphScript> scripts;
  std::vector<std::string> fonts;
  std::vector<GlyphClass> classes;
  std::vector<std::uint16_t> render_fonts;  ///< classes x renders
  std::vector<std::uint8_t> pixels;         ///< classes x renders x size x size

  index class_count() const { return static_cast<index>(classes.size()); }
  /// Render r of class c (size x size bytes).
  const std::uint8_t* image(index c, index r) const {
    return pixels.data() + static_cast<std::size_t>((c * renders + r) * size * size);
  }
  /// The classes whose writing system is in `split`, in order.
  std::vector<index> classes_in(GlyphSplit split) const {
    std::vector<index> out;
    for (index c = 0; c < class_count(); ++c)
      if (scripts[classes[static_cast<std::size_t>(c)].script].split == split) out.push_back(c);
    return out;
  }
  /// How many writing systems `split` has.
  index scripts_in(GlyphSplit split) const {
    index n = 0;
    for (const auto& s : scripts) n += s.split == split;
    return n;
  }
};

namespace detail {
inline constexpr char glyph_magic[8] = {'N', 'S', 'L', 'G', 'L', 'Y', 'P', 'H'};
inline constexpr std::uint32_t glyph_version = 1;

inline void put_text(std::string& b, const std::string& s, const char* what) {
  require(s.size() <= 0xFFFF, ErrorKind::argument, "save_glyphs: ", what, " name too long (", s.size(), " bytes)");
  put_string_le_u16(b, s);
}

// Reads the cache file's fields in order, failing (ErrorKind::format) with
// the file's name and what was expected when the bytes run out.
class GlyphReader {
 public:
  GlyphReader(const std::string& source, const unsigned char* bytes, std::size_t end)
      : source_(source), bytes_(bytes), end_(end) {}
  [[noreturn]] void bad(const std::string& what) const {
    fail(ErrorKind::format, cat("load_glyphs: ", source_, ": ", what));
  }
  const unsigned char* take(std::size_t n, const char* what) {
    if (n > remaining()) bad(cat("truncated (reading ", what, ": needs ", n, " bytes, ", remaining(), " remain)"));
    const unsigned char* p = bytes_ + pos_;
    pos_ += n;
    return p;
  }
  /// Fails unless `n` entries of at least `entry_bytes` each can follow.
  void expect_entries(std::uint64_t n, std::size_t entry_bytes, const char* what) const {
    if (n > remaining() / entry_bytes)
      bad(cat("truncated (", n, " ", what, " need at least ", entry_bytes, " bytes each, ", remaining(),
              " bytes remain)"));
  }
  std::uint8_t u8(const char* what) { return *take(1, what); }
  std::uint16_t u16(const char* what) { return load_le_u16(take(2, what)); }
  std::uint32_t u32(const char* what) { return load_le_u32(take(4, what)); }
  std::uint64_t u64(const char* what) { return load_le_u64(take(8, what)); }
  std::string text(const char* what) {
    const std::uint16_t n = u16(what);
    const unsigned char* p = take(n, what);
    return std::string(reinterpret_cast<const char*>(p), n);
  }
  std::size_t remaining() const { return end_ - pos_; }

 private:
  const std::string& source_;
  const unsigned char* bytes_;
  std::size_t end_, pos_ = 0;
};

/// Fails (ErrorKind::format) unless the `count` bytes at `bytes` start with
/// the glyph cache magic.
inline void check_glyph_magic(const unsigned char* bytes, std::size_t count, const std::string& source) {
  if (count < 8 || std::memcmp(bytes, glyph_magic, 8) != 0)
    fail(ErrorKind::format, cat("load_glyphs: ", source, ": not a glyph set (no NSLGLYPH header)"));
}
}  // namespace detail

/// The cache file's bytes for `set` (see the format above).
inline std::string glyph_file_bytes(const GlyphSet& set) {
  const std::size_t images = set.classes.size() * static_cast<std::size_t>(set.renders);
  require(set.size >= 1 && set.renders >= 1, ErrorKind::argument, "save_glyphs: expected size and renders >= 1, got ",
          set.size, " and ", set.renders);
  require(set.render_fonts.size() == images && set.pixels.size() == images * std::size_t(set.size * set.size),
          ErrorKind::shape, "save_glyphs: ", set.classes.size(), " classes of ", set.renders,
          " renders need as many render fonts and images, got ", set.render_fonts.size(), " and ",
          set.pixels.size(), " bytes of pixels");
  std::string b(detail::glyph_magic, 8);
  put_le_u32(b, detail::glyph_version);
  put_le_u64(b, set.seed);
  put_le_u32(b, static_cast<std::uint32_t>(set.size));
  put_le_u32(b, static_cast<std::uint32_t>(set.renders));
  put_le_u32(b, static_cast<std::uint32_t>(set.scripts.size()));
  put_le_u32(b, static_cast<std::uint32_t>(set.classes.size()));
  put_le_u32(b, static_cast<std::uint32_t>(set.fonts.size()));
  for (const auto& s : set.scripts) {
    put_u8(b, static_cast<std::uint8_t>(s.split));
    detail::put_text(b, s.name, "script");
  }
  for (const auto& f : set.fonts) detail::put_text(b, f, "font");
  for (const auto& c : set.classes) {
    put_le_u32(b, c.script);
    put_le_u32(b, c.code_point);
  }
  for (std::uint16_t f : set.render_fonts) put_le_u16(b, f);
  b.append(reinterpret_cast<const char*>(set.pixels.data()), set.pixels.size());
  put_le_u32(b, crc32_of(reinterpret_cast<const unsigned char*>(b.data()), b.size()));
  return b;
}

/// Writes `set` to `path` (atomically: a failed write leaves no half file).
inline void save_glyphs(const std::string& path, const GlyphSet& set) {
  const std::string bytes = glyph_file_bytes(set);
  write_file_atomically("save_glyphs", path, [&](std::ofstream& out) {
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  });
}

/// Decodes the `count` bytes of a cache file at `bytes` (see the format
/// above); `source` (a path) names it in messages. Every malformed input
/// fails with ErrorKind::format, "load_glyphs: <source>: <what is wrong>":
/// bad magic, checksum or version, counts or indices out of range, too few
/// or too many bytes. Each count is checked against the bytes that remain
/// before anything is allocated for it.
inline GlyphSet parse_glyphs(const unsigned char* bytes, std::size_t count, const std::string& source) {
  detail::check_glyph_magic(bytes, count, source);
  if (count < 8 + 4 + 4)
    fail(ErrorKind::format, cat("load_glyphs: ", source, ": truncated (", count, " bytes, too short for a glyph set)"));
  const std::size_t body = count - 4;
  const std::uint32_t stored = load_le_u32(bytes + body);
  const std::uint32_t computed = crc32_of(bytes, body);
  detail::GlyphReader r(source, bytes, body);
  if (stored != computed)
    r.bad(cat("checksum mismatch (stored ", hex32(stored), ", computed ", hex32(computed),
              "): the file is corrupt or truncated"));
  r.take(8, "magic");
  const std::uint32_t version = r.u32("version");
  if (version != detail::glyph_version)
    r.bad(cat("version ", version, ", this library reads version ", detail::glyph_version));
  GlyphSet set;
  set.seed = r.u64("seed");
  set.size = r.u32("size");
  set.renders = r.u32("renders");
  const std::uint32_t scripts = r.u32("script count"), classes = r.u32("class count"), fonts = r.u32("font count");
  if (set.size < 1 || set.size > 4096 || set.renders < 1)
    r.bad(cat("bad size ", set.size, " or renders ", set.renders, " (expected 1 to 4096 and at least 1)"));
  r.expect_entries(scripts, 3, "scripts");
  set.scripts.reserve(scripts);
  for (std::uint32_t i = 0; i < scripts; ++i) {
    const std::uint8_t split = r.u8("script split");
    if (split > 1) r.bad(cat("script ", i, " has split ", int(split), " (expected 0 or 1)"));
    set.scripts.push_back({r.text("script name"), static_cast<GlyphSplit>(split)});
  }
  r.expect_entries(fonts, 2, "fonts");
  set.fonts.reserve(fonts);
  for (std::uint32_t i = 0; i < fonts; ++i) set.fonts.push_back(r.text("font name"));
  r.expect_entries(classes, 8, "classes");
  set.classes.reserve(classes);
  for (std::uint32_t i = 0; i < classes; ++i) {
    GlyphClass c;
    c.script = r.u32("class script");
    c.code_point = r.u32("class code point");
    if (c.script >= scripts) r.bad(cat("class ", i, " names script ", c.script, " of ", scripts));
    set.classes.push_back(c);
  }
  // classes x renders fonts of 2 bytes each, then as many images: both
  // counts checked against the bytes left, without overflow, before use.
  if (classes != 0) r.expect_entries(std::uint64_t(set.renders), std::size_t(2) * classes, "renders of every class");
  const std::size_t images = std::size_t(classes) * std::size_t(set.renders);
  set.render_fonts.resize(images);
  for (std::size_t i = 0; i < images; ++i) {
    set.render_fonts[i] = r.u16("render font");
    if (set.render_fonts[i] >= fonts) r.bad(cat("render ", i, " names font ", set.render_fonts[i], " of ", fonts));
  }
  const std::size_t image_bytes = std::size_t(set.size * set.size);
  r.expect_entries(images, image_bytes, "images");
  const std::size_t pixel_bytes = images * image_bytes;
  const unsigned char* p = r.take(pixel_bytes, "pixels");
  set.pixels.assign(p, p + pixel_bytes);
  if (r.remaining() != 0) r.bad(cat(r.remaining(), " unexpected bytes after the pixels"));
  return set;
}

/// Reads a cache file written by save_glyphs (see parse_glyphs). The magic
/// is checked before the rest is read, and a file of more than `max_bytes`
/// bytes is refused before it is read (ErrorKind::format); a missing or
/// unreadable file fails with ErrorKind::io.
inline GlyphSet load_glyphs(const std::string& path, std::size_t max_bytes = default_max_read_bytes) {
  const std::vector<unsigned char> bytes =
      read_file_bytes("load_glyphs", path, max_bytes, 8, [&](const unsigned char* p, std::size_t n) {
        detail::check_glyph_magic(p, n, path);
      });
  return parse_glyphs(bytes.data(), bytes.size(), path);
}

/// 64-bit FNV-1a of the cache bytes of `set` (a fingerprint for tests and logs).
inline std::uint64_t glyph_fingerprint(const GlyphSet& set) {
  const std::string bytes = glyph_file_bytes(set);
  std::uint64_t h = 1469598103934665603ull;
  for (char ch : bytes) {
    h ^= static_cast<unsigned char>(ch);
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace nsl
