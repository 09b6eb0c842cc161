// nsl/data/glyph_render.hpp — renders the glyph set of nsl/data/glyphs.hpp
// from the fonts installed on the machine, with FreeType (libfreetype-dev;
// link Freetype::Freetype). Debian's fonts-noto-core, fonts-dejavu-core and
// fonts-freefont-ttf draw all 46 writing systems of the default table.
//
// For each writing system, in table order:
//   1. its fonts: the font files (.ttf, .otf, anywhere under font_dir, sorted
//      by file name) whose names start with one of its prefixes, and the
//      pan-script families DejaVu and FreeFont;
//   2. its classes: each code point of its ranges that at least one of those
//      fonts draws with ink (a font that lacks the glyph, or draws it empty,
//      is not used for it); a character whose plain render in its first font
//      is within 2% of an earlier one's (mean absolute difference) is
//      dropped as a duplicate; above max_per_script, an evenly spaced subset;
//   3. each class's renders: render r uses the class's fonts in turn
//      (r mod their number) under a random affine jitter (rotation, scale,
//      aspect, shear, shift) and, one time in three, a synthetic heavier
//      weight (the outline emboldened).
//
// A render: the glyph's outline at `oversample` times the output scale (an
// em of em_pixels output pixels, shrunk if the glyph would not fit in
// fit_pixels), its ink box centred on the image centre, the jitter applied
// about that centre, and each output pixel the mean of oversample^2
// bilinear samples. The random numbers of a render come from a generator
// seeded by (seed, writing system, code point, r) alone, so a set built from
// a subset of the scripts has the same images for them, and the same seed
// and fonts give the same bytes.
#pragma once

#include <ft2build.h>
#include FT_FREETYPE_H
#include FT_OUTLINE_H

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "nsl/core/random.hpp"
#include "nsl/data/glyphs.hpp"

namespace nsl {

struct GlyphBuildOptions {
  std::string font_dir = "/usr/share/fonts";  ///< searched recursively for .ttf and .otf files
  std::uint64_t seed = 1;                     ///< the jitter's seed
  index size = 28;                            ///< output height = width
  index renders = 20;                         ///< images per class
  index max_per_script = 80;                  ///< classes per writing system at most
  std::vector<std::string> scripts;           ///< only these writing systems (empty: all of the table)
  double em_pixels = 20.0;                    ///< the em size in output pixels
  double fit_pixels = 24.0;                   ///< a glyph's ink box is shrunk to fit this
  int oversample = 3;                         ///< render scale and samples per pixel (squared)
  double rotation_degrees = 10.0;             ///< jitter: rotation in [-r, r]
  double scale_jitter = 0.10;                 ///< jitter: scale in [1 - s, 1 + s]
  double aspect_jitter = 0.05;                ///< jitter: x/y aspect in [1 - a, 1 + a]
  double shear_jitter = 0.15;                 ///< jitter: shear in [-h, h]
  double shift_pixels = 1.5;                  ///< jitter: shift in [-t, t] pixels each way
};

/// What build_glyphs did beyond the set itself.
struct GlyphBuildReport {
  std::vector<std::string> missing_scripts;  ///< table entries no installed font draws
  index duplicates = 0;                      ///< characters dropped as look-alikes
};

namespace detail {

class FreeTypeLibrary {
 public:
  FreeTypeLibrary() {
    if (FT_Init_FreeType(&library_) != 0) fail(ErrorKind::io, "build_glyphs: FreeType failed to initialise");
  }
  ~FreeTypeLibrary() { FT_Done_FreeType(library_); }
  FreeTypeLibrary(const FreeTypeLibrary&) = delete;
  FreeTypeLibrary& operator=(const FreeTypeLibrary&) = delete;
  FT_Library get() const { return library_; }

 private:
  FT_Library library_ = nullptr;
};

struct FaceCloser {
  void operator()(FT_FaceRec_* face) const { FT_Done_Face(face); }
};
using Face = std::unique_ptr<FT_FaceRec_, FaceCloser>;

struct FontFile {
  std::string name;  ///< file name, no directory
  std::string path;
};

/// The .ttf and .otf files under `dir`, sorted by file name (first path wins a tie).
inline std::vector<FontFile> find_font_files(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail(ErrorKind::io, cat("build_glyphs: font directory ", dir, " does not exist (install fonts-noto-core, "
                            "fonts-dejavu-core and fonts-freefont-ttf, or pass another directory)"));
  std::vector<FontFile> files;
  for (fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const std::string ext = it->path().extension().string();
    if (ext == ".ttf" || ext == ".otf" || ext == ".TTF" || ext == ".OTF")
      files.push_back({it->path().filename().string(), it->path().string()});
  }
  std::sort(files.begin(), files.end(), [](const FontFile& a, const FontFile& b) {
    return a.name != b.name ? a.name < b.name : a.path < b.path;
  });
  files.erase(std::unique(files.begin(), files.end(), [](const FontFile& a, const FontFile& b) { return a.name == b.name; }),
              files.end());
  if (files.empty())
    fail(ErrorKind::io, cat("build_glyphs: no font files (.ttf, .otf) under ", dir,
                            " (install fonts-noto-core, fonts-dejavu-core and fonts-freefont-ttf)"));
  return files;
}

inline bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

inline std::uint64_t mix64(std::uint64_t x) {  // splitmix64's finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

inline std::uint64_t name_hash(const char* s) {
  std::uint64_t h = 1469598103934665603ull;
  for (; *s; ++s) h = (h ^ static_cast<unsigned char>(*s)) * 1099511628211ull;
  return h;
}

/// One render's geometry (identity = the plain render).
struct Jitter {
  double rotation = 0.0, scale = 1.0, aspect = 1.0, shear = 0.0, dx = 0.0, dy = 0.0;
  double embolden = 0.0;  ///< outline widening, output pixels
};

inline Jitter draw_jitter(const GlyphBuildOptions& o, Rng& rng) {
  Jitter j;
  j.rotation = rng.uniform(-o.rotation_degrees, o.rotation_degrees) * 3.14159265358979323846 / 180.0;
  j.scale = 1.0 + rng.uniform(-o.scale_jitter, o.scale_jitter);
  j.aspect = 1.0 + rng.uniform(-o.aspect_jitter, o.aspect_jitter);
  j.shear = rng.uniform(-o.shear_jitter, o.shear_jitter);
  j.dx = rng.uniform(-o.shift_pixels, o.shift_pixels);
  j.dy = rng.uniform(-o.shift_pixels, o.shift_pixels);
  const double heavier = rng.uniform();
  const double strength = rng.uniform(0.3, 1.0);
  j.embolden = heavier < 1.0 / 3.0 ? strength : 0.0;
  return j;
}

/// Renders code point `cp` of `face` into out (size x size bytes); false if
/// the font has no such glyph or draws it without ink.
inline bool render_glyph(FT_Face face, std::uint32_t cp, const GlyphBuildOptions& o, const Jitter& j,
                         std::uint8_t* out) {
  const FT_UInt glyph = FT_Get_Char_Index(face, cp);
  if (glyph == 0) return false;
  const double hires = o.em_pixels * o.oversample;  // pixels per em of the bitmap
  if (FT_Set_Pixel_Sizes(face, 0, static_cast<FT_UInt>(std::lround(hires))) != 0) return false;
  if (FT_Load_Glyph(face, glyph, FT_LOAD_NO_HINTING | FT_LOAD_NO_BITMAP) != 0) return false;
  FT_GlyphSlot slot = face->glyph;
  if (slot->format != FT_GLYPH_FORMAT_OUTLINE) return false;
  if (j.embolden > 0.0)
    FT_Outline_Embolden(&slot->outline, static_cast<FT_Pos>(std::lround(j.embolden * o.oversample * 64.0)));
  if (FT_Render_Glyph(slot, FT_RENDER_MODE_NORMAL) != 0) return false;
  const FT_Bitmap& bm = slot->bitmap;
  if (bm.pixel_mode != FT_PIXEL_MODE_GRAY || bm.rows == 0 || bm.width == 0) return false;
  const int rows = static_cast<int>(bm.rows), cols = static_cast<int>(bm.width), pitch = bm.pitch;
  const unsigned char* base = pitch >= 0 ? bm.buffer : bm.buffer - pitch * (rows - 1);
  long ink = 0;
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < cols; ++x) ink += base[y * pitch + x];
  if (ink < 255L * o.oversample * o.oversample * 2) return false;  // under two output pixels of ink

  // Output (u, v) -> bitmap (x, y): x = cx + B^{-1} (u - centre - shift), with
  // B = g * jitter (g the bitmap-to-output scale, shrunk to fit).
  double g = 1.0 / o.oversample;
  const double extent = std::max(rows, cols) * g;
  if (extent > o.fit_pixels) g *= o.fit_pixels / extent;
  const double c = std::cos(j.rotation), s = std::sin(j.rotation);
  // jitter = scale * R(rotation) * [[aspect, shear], [0, 1 / aspect]]
  const double a11 = j.scale * c * j.aspect, a12 = j.scale * (c * j.shear - s / j.aspect);
  const double a21 = j.scale * s * j.aspect, a22 = j.scale * (s * j.shear + c / j.aspect);
  const double det = (a11 * a22 - a12 * a21) * g * g;
  const double i11 = a22 * g / det, i12 = -a12 * g / det, i21 = -a21 * g / det, i22 = a11 * g / det;
  const double cx = cols / 2.0, cy = rows / 2.0;
  const double centre = o.size / 2.0;
  auto at = [&](int x, int y) -> double {
    return (x < 0 || y < 0 || x >= cols || y >= rows) ? 0.0 : double(base[y * pitch + x]);
  };
  auto sample = [&](double x, double y) {  // bilinear, pixel centres at integer + 0.5
    x -= 0.5;
    y -= 0.5;
    const double fx = std::floor(x), fy = std::floor(y);
    const int x0 = int(fx), y0 = int(fy);
    const double tx = x - fx, ty = y - fy;
    return (1 - ty) * ((1 - tx) * at(x0, y0) + tx * at(x0 + 1, y0)) +
           ty * ((1 - tx) * at(x0, y0 + 1) + tx * at(x0 + 1, y0 + 1));
  };
  const int n = o.oversample;
  for (index v = 0; v < o.size; ++v)
    for (index u = 0; u < o.size; ++u) {
      double sum = 0.0;
      for (int sv = 0; sv < n; ++sv)
        for (int su = 0; su < n; ++su) {
          const double du = double(u) + (su + 0.5) / n - centre - j.dx;
          const double dv = double(v) + (sv + 0.5) / n - centre - j.dy;
          sum += sample(cx + i11 * du + i12 * dv, cy + i21 * du + i22 * dv);
        }
      out[v * o.size + u] = static_cast<std::uint8_t>(std::lround(std::min(255.0, sum / (n * n))));
    }
  return true;
}

inline double mean_abs_difference(const std::uint8_t* a, const std::uint8_t* b, index n) {
  long sum = 0;
  for (index i = 0; i < n; ++i) sum += std::abs(int(a[i]) - int(b[i]));
  return double(sum) / double(n);
}

}  // namespace detail

/// Renders the glyph set (see the top of the file). Fails (ErrorKind::io)
/// when no font file is found, and when the fonts draw no background or no
/// evaluation writing system.
inline GlyphSet build_glyphs(const GlyphBuildOptions& o, GlyphBuildReport* report = nullptr) {
  require(o.size >= 8 && o.renders >= 1 && o.max_per_script >= 1 && o.oversample >= 1, ErrorKind::argument,
          "build_glyphs: expected size >= 8, renders, max_per_script and oversample >= 1, got ", o.size, ", ",
          o.renders, ", ", o.max_per_script, ", ", o.oversample);
  require(o.em_pixels > 0 && o.fit_pixels > 0 && o.fit_pixels <= double(o.size), ErrorKind::argument,
          "build_glyphs: expected 0 < fit_pixels <= size and em_pixels > 0, got ", o.fit_pixels, " and ", o.em_pixels);
  for (const auto& wanted : o.scripts) {
    bool known = false;
    for (const auto& w : writing_systems()) known = known || wanted == w.name;
    require(known, ErrorKind::argument, "build_glyphs: unknown writing system '", wanted, "'");
  }
  const std::vector<detail::FontFile> files = detail::find_font_files(o.font_dir);
  detail::FreeTypeLibrary library;
  std::vector<detail::Face> faces(files.size());
  auto face = [&](std::size_t f) -> FT_Face {
    if (!faces[f]) {
      FT_Face opened = nullptr;
      if (FT_New_Face(library.get(), files[f].path.c_str(), 0, &opened) != 0) return nullptr;
      faces[f].reset(opened);
    }
    return faces[f].get();
  };

  GlyphSet set;
  set.seed = o.seed;
  set.size = o.size;
  set.renders = o.renders;
  GlyphBuildReport local;
  GlyphBuildReport& rep = report ? *report : local;
  std::vector<int> font_slot(files.size(), -1);  // index into set.fonts once used
  const index pixels = o.size * o.size;
  std::vector<std::uint8_t> image(static_cast<std::size_t>(pixels));
  for (const WritingSystem& w : writing_systems()) {
    if (!o.scripts.empty() && std::find(o.scripts.begin(), o.scripts.end(), w.name) == o.scripts.end()) continue;
    std::vector<std::size_t> fonts;
    for (std::size_t f = 0; f < files.size(); ++f) {
      bool wanted = detail::starts_with(files[f].name, "DejaVu") || detail::starts_with(files[f].name, "Free");
      for (const char* p : w.font_prefixes) wanted = wanted || detail::starts_with(files[f].name, p);
      if (wanted && face(f)) fonts.push_back(f);
    }
    // The candidate characters: drawn with ink by at least one font, not a look-alike.
    struct Candidate {
      std::uint32_t cp;
      std::vector<std::size_t> fonts;
      std::vector<std::uint8_t> plain;
    };
    std::vector<Candidate> candidates;
    for (const auto& range : w.ranges)
      for (std::uint32_t cp = range[0]; cp <= range[1]; ++cp) {
        Candidate cand{cp, {}, {}};
        for (std::size_t f : fonts) {
          if (!detail::render_glyph(face(f), cp, o, detail::Jitter{}, image.data())) continue;
          if (cand.fonts.empty()) cand.plain = image;
          cand.fonts.push_back(f);
        }
        if (cand.fonts.empty()) continue;
        bool duplicate = false;
        for (const auto& earlier : candidates)
          duplicate = duplicate || detail::mean_abs_difference(earlier.plain.data(), cand.plain.data(), pixels) <
                                       0.02 * 255.0;
        if (duplicate) ++rep.duplicates;
        else candidates.push_back(std::move(cand));
      }
    if (candidates.empty()) {
      rep.missing_scripts.push_back(w.name);
      continue;
    }
    std::vector<std::size_t> keep;
    const std::size_t n = candidates.size(), cap = static_cast<std::size_t>(o.max_per_script);
    for (std::size_t i = 0; i < std::min(n, cap); ++i) keep.push_back(n <= cap ? i : i * n / cap);

    const auto script = static_cast<std::uint32_t>(set.scripts.size());
    set.scripts.push_back({w.name, w.split});
    const std::uint64_t script_key = detail::name_hash(w.name);
    for (std::size_t k : keep) {
      const Candidate& cand = candidates[k];
      set.classes.push_back({script, cand.cp});
      for (index r = 0; r < o.renders; ++r) {
        // Rendering can still fail under a jitter (an emboldened outline that
        // FreeType rejects): then the next font, and at worst the plain render.
        Rng rng(detail::mix64(o.seed ^ detail::mix64(script_key ^ detail::mix64((std::uint64_t(cand.cp) << 20) ^
                                                                                 std::uint64_t(r)))));
        const detail::Jitter jitter = detail::draw_jitter(o, rng);
        std::size_t chosen = cand.fonts[static_cast<std::size_t>(r) % cand.fonts.size()];
        bool ok = detail::render_glyph(face(chosen), cand.cp, o, jitter, image.data());
        for (std::size_t t = 1; !ok && t < cand.fonts.size(); ++t) {
          chosen = cand.fonts[(static_cast<std::size_t>(r) + t) % cand.fonts.size()];
          ok = detail::render_glyph(face(chosen), cand.cp, o, jitter, image.data());
        }
        if (!ok) {
          chosen = cand.fonts.front();
          image = cand.plain;
        }
        if (font_slot[chosen] < 0) {
          font_slot[chosen] = static_cast<int>(set.fonts.size());
          set.fonts.push_back(files[chosen].name);
        }
        set.render_fonts.push_back(static_cast<std::uint16_t>(font_slot[chosen]));
        set.pixels.insert(set.pixels.end(), image.begin(), image.end());
      }
    }
  }
  const bool any_background = set.scripts_in(GlyphSplit::background) > 0;
  const bool any_evaluation = set.scripts_in(GlyphSplit::evaluation) > 0;
  require(o.scripts.empty() || !set.classes.empty(), ErrorKind::io, "build_glyphs: no font under ", o.font_dir,
          " draws any of the requested writing systems (install fonts-noto-core)");
  require(!o.scripts.empty() || (any_background && any_evaluation), ErrorKind::io, "build_glyphs: the fonts under ",
          o.font_dir, " draw no ", any_background ? "evaluation" : "background",
          " writing system (install fonts-noto-core, fonts-dejavu-core and fonts-freefont-ttf)");
  return set;
}

/// A cache file name that changes with everything the set depends on: the
/// options and the installed font files (names and sizes).
inline std::string glyph_cache_name(const GlyphBuildOptions& o) {
  std::string key = cat(o.seed, "|", o.size, "|", o.renders, "|", o.max_per_script, "|", o.em_pixels, "|",
                        o.fit_pixels, "|", o.oversample, "|", o.rotation_degrees, "|", o.scale_jitter, "|",
                        o.aspect_jitter, "|", o.shear_jitter, "|", o.shift_pixels, "|");
  for (const auto& s : o.scripts) key += s + ",";
  std::error_code ec;
  for (const auto& f : detail::find_font_files(o.font_dir))
    key += cat("|", f.name, ":", std::filesystem::file_size(f.path, ec));
  return cat("glyphs-", o.size, "px-", o.renders, "r-seed", o.seed, "-", std::hex, detail::name_hash(key.c_str()),
             ".nslglyph");
}

/// The cached set for `o` under cache_dir, built and written there first if
/// it is not there yet (or unreadable). `built` says which happened.
inline GlyphSet load_or_build_glyphs(const std::string& cache_dir, const GlyphBuildOptions& o, bool* built = nullptr,
                                     GlyphBuildReport* report = nullptr) {
  const std::string path = (std::filesystem::path(cache_dir) / glyph_cache_name(o)).string();
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    try {
      GlyphSet set = load_glyphs(path);
      if (built) *built = false;
      return set;
    } catch (const Error&) {
      // A corrupt or old cache file: rebuilt and replaced below.
    }
  }
  GlyphSet set = build_glyphs(o, report);
  std::filesystem::create_directories(cache_dir, ec);
  if (ec) fail(ErrorKind::io, cat("load_or_build_glyphs: cannot create cache directory ", cache_dir, ": ", ec.message()));
  save_glyphs(path, set);
  if (built) *built = true;
  return set;
}

}  // namespace nsl
