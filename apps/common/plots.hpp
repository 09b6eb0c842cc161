// plots.hpp — two small pictures for the training programs, drawn without a
// plotting library: an RGB canvas, a built-in 5x7 bitmap font, a viridis-like
// colour map, a PNG writer (libpng), and two figures built from them:
//
//   kernel_shape_grid  one k x k heat map of |m| / max|m| per similarity layer
//   training_curves    loss and accuracy (%) per epoch, train and test
//
// Program code, not library code: failures are reported by return values
// (write_png returns false and says why), nothing throws on purpose.
// Link with -lpng.
#pragma once

#include <png.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace nsl::plots {

// ---------------------------------------------------------------------------
// Canvas
// ---------------------------------------------------------------------------

struct Color {
  unsigned char r, g, b;
};

// A plain RGB canvas, row-major, 3 bytes per pixel. Every drawing call clips
// to the canvas: coordinates outside it are ignored, never written.
struct Image {
  int width = 0;
  int height = 0;
  std::vector<unsigned char> rgb;

  Image() = default;
  Image(int w, int h, unsigned char r = 255, unsigned char g = 255, unsigned char b = 255)
      : width(std::max(0, w)), height(std::max(0, h)),
        rgb(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3) {
    fill(r, g, b);
  }

  bool inside(int x, int y) const { return x >= 0 && y >= 0 && x < width && y < height; }

  void fill(unsigned char r, unsigned char g, unsigned char b) {
    for (std::size_t i = 0; i + 2 < rgb.size(); i += 3) {
      rgb[i] = r;
      rgb[i + 1] = g;
      rgb[i + 2] = b;
    }
  }

  void set(int x, int y, unsigned char r, unsigned char g, unsigned char b) {
    if (!inside(x, y)) return;
    const std::size_t i =
        (static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x)) * 3;
    rgb[i] = r;
    rgb[i + 1] = g;
    rgb[i + 2] = b;
  }
  void set(int x, int y, Color c) { set(x, y, c.r, c.g, c.b); }

  // The pixel at (x, y); black outside the canvas.
  Color get(int x, int y) const {
    if (!inside(x, y)) return {0, 0, 0};
    const std::size_t i =
        (static_cast<std::size_t>(y) * static_cast<std::size_t>(width) + static_cast<std::size_t>(x)) * 3;
    return {rgb[i], rgb[i + 1], rgb[i + 2]};
  }

  // Filled rectangle with top-left corner (x, y), w x h pixels.
  void rect(int x, int y, int w, int h, unsigned char r, unsigned char g, unsigned char b) {
    if (w <= 0 || h <= 0) return;
    const long long x0 = std::max<long long>(x, 0);
    const long long y0 = std::max<long long>(y, 0);
    const long long x1 = std::min<long long>(static_cast<long long>(x) + w, width);
    const long long y1 = std::min<long long>(static_cast<long long>(y) + h, height);
    for (long long yy = y0; yy < y1; ++yy)
      for (long long xx = x0; xx < x1; ++xx)
        set(static_cast<int>(xx), static_cast<int>(yy), r, g, b);
  }
  void rect(int x, int y, int w, int h, Color c) { rect(x, y, w, h, c.r, c.g, c.b); }

  // Rectangle outline, `thickness` pixels wide, drawn inside (x, y, w, h).
  void frame(int x, int y, int w, int h, unsigned char r, unsigned char g, unsigned char b,
             int thickness = 1) {
    if (w <= 0 || h <= 0 || thickness <= 0) return;
    const int t = std::min({thickness, w, h});
    rect(x, y, w, t, r, g, b);
    rect(x, y + h - t, w, t, r, g, b);
    rect(x, y, t, h, r, g, b);
    rect(x + w - t, y, t, h, r, g, b);
  }
  void frame(int x, int y, int w, int h, Color c, int thickness = 1) {
    frame(x, y, w, h, c.r, c.g, c.b, thickness);
  }

  // Straight line from (x0, y0) to (x1, y1), `thickness` pixels wide (round
  // pen). The segment is clipped to the canvas first, so far-away endpoints
  // cost nothing.
  void line(int x0, int y0, int x1, int y1, unsigned char r, unsigned char g, unsigned char b,
            int thickness = 1) {
    if (width == 0 || height == 0) return;
    const int t = std::max(1, thickness);
    // Liang-Barsky clip against the canvas grown by the pen size.
    const double m = t + 1.0;
    const double xmin = -m, ymin = -m, xmax = width - 1 + m, ymax = height - 1 + m;
    const double fx0 = x0, fy0 = y0, dx = static_cast<double>(x1) - x0, dy = static_cast<double>(y1) - y0;
    double u0 = 0.0, u1 = 1.0;
    const double p[4] = {-dx, dx, -dy, dy};
    const double q[4] = {fx0 - xmin, xmax - fx0, fy0 - ymin, ymax - fy0};
    for (int i = 0; i < 4; ++i) {
      if (p[i] == 0.0) {
        if (q[i] < 0.0) return;
      } else {
        const double u = q[i] / p[i];
        if (p[i] < 0.0) u0 = std::max(u0, u);
        else u1 = std::min(u1, u);
      }
    }
    if (u0 > u1) return;
    const int ax = static_cast<int>(std::lround(fx0 + u0 * dx));
    const int ay = static_cast<int>(std::lround(fy0 + u0 * dy));
    const int bx = static_cast<int>(std::lround(fx0 + u1 * dx));
    const int by = static_cast<int>(std::lround(fy0 + u1 * dy));
    // Bresenham over the clipped segment, stamping a disc at every step.
    const int sx = ax < bx ? 1 : -1, sy = ay < by ? 1 : -1;
    const int ddx = std::abs(bx - ax), ddy = -std::abs(by - ay);
    int err = ddx + ddy, x = ax, y = ay;
    for (;;) {
      stamp(x, y, t, r, g, b);
      if (x == bx && y == by) break;
      const int e2 = 2 * err;
      if (e2 >= ddy) { err += ddy; x += sx; }
      if (e2 <= ddx) { err += ddx; y += sy; }
    }
  }
  void line(int x0, int y0, int x1, int y1, Color c, int thickness = 1) {
    line(x0, y0, x1, y1, c.r, c.g, c.b, thickness);
  }

  // Filled disc of diameter `d` centred on (cx, cy).
  void disc(int cx, int cy, int d, unsigned char r, unsigned char g, unsigned char b) {
    stamp(cx, cy, std::max(1, d), r, g, b);
  }
  void disc(int cx, int cy, int d, Color c) { disc(cx, cy, d, c.r, c.g, c.b); }

 private:
  void stamp(int cx, int cy, int d, unsigned char r, unsigned char g, unsigned char b) {
    if (d <= 1) { set(cx, cy, r, g, b); return; }
    if (d == 2) { rect(cx, cy, 2, 2, r, g, b); return; }
    const int lo = -(d / 2), hi = lo + d - 1;          // d pixels: lo..hi
    const double c = (lo + hi) / 2.0, rad = d / 2.0;    // centre, radius
    for (int yy = lo; yy <= hi; ++yy)
      for (int xx = lo; xx <= hi; ++xx) {
        const double ex = xx - c, ey = yy - c;
        if (ex * ex + ey * ey <= rad * rad + 0.25)
          set(cx + xx, cy + yy, r, g, b);
      }
  }
};

// ---------------------------------------------------------------------------
// Font: 5x7 glyphs, one byte per row, bit 4 = leftmost column. Capitals and
// digits fill rows 0-6 of the cell; lower-case letters with a descender are
// drawn `drop` rows lower, so a line of text needs 9 rows (text_line_height).
// ---------------------------------------------------------------------------

struct Glyph {
  char ch;
  unsigned char rows[7];
  unsigned char drop = 0;  // rows to shift down: descenders of g, j, p, q, y
};

inline constexpr int kGlyphW = 5;
inline constexpr int kGlyphH = 7;
inline constexpr int kGlyphAdvance = 6;  // glyph + one column of spacing

inline constexpr Glyph kFont[] = {
    {' ', {0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000}},
    // digits
    {'0', {0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110}},
    {'1', {0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110}},
    {'2', {0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111}},
    {'3', {0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110}},
    {'4', {0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010}},
    {'5', {0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110}},
    {'6', {0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110}},
    {'7', {0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000}},
    {'8', {0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110}},
    {'9', {0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100}},
    // upper case
    {'A', {0b01110, 0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001}},
    {'B', {0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110}},
    {'C', {0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110}},
    {'D', {0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100}},
    {'E', {0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111}},
    {'F', {0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000}},
    {'G', {0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111}},
    {'H', {0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001}},
    {'I', {0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110}},
    {'J', {0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100}},
    {'K', {0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001}},
    {'L', {0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111}},
    {'M', {0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001}},
    {'N', {0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001}},
    {'O', {0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110}},
    {'P', {0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000}},
    {'Q', {0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101}},
    {'R', {0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001}},
    {'S', {0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110}},
    {'T', {0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100}},
    {'U', {0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110}},
    {'V', {0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100}},
    {'W', {0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010}},
    {'X', {0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001}},
    {'Y', {0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100}},
    {'Z', {0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111}},
    // lower case (x-height 5 rows)
    {'a', {0b00000, 0b00000, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111}},
    {'b', {0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110}},
    {'c', {0b00000, 0b00000, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110}},
    {'d', {0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111}},
    {'e', {0b00000, 0b00000, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110}},
    {'f', {0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000}},
    {'g', {0b01111, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110}, 2},
    {'h', {0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001}},
    {'i', {0b00100, 0b00000, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110}},
    {'j', {0b00010, 0b00000, 0b00110, 0b00010, 0b00010, 0b10010, 0b01100}, 1},
    {'k', {0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010}},
    {'l', {0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110}},
    {'m', {0b00000, 0b00000, 0b11010, 0b10101, 0b10101, 0b10001, 0b10001}},
    {'n', {0b00000, 0b00000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001}},
    {'o', {0b00000, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110}},
    {'p', {0b11110, 0b10001, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000}, 2},
    {'q', {0b01111, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b00001}, 2},
    {'r', {0b00000, 0b00000, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000}},
    {'s', {0b00000, 0b00000, 0b01110, 0b10000, 0b01110, 0b00001, 0b11110}},
    {'t', {0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110}},
    {'u', {0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101}},
    {'v', {0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100}},
    {'w', {0b00000, 0b00000, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010}},
    {'x', {0b00000, 0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001}},
    {'y', {0b10001, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110}, 2},
    {'z', {0b00000, 0b00000, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111}},
    // punctuation
    {'.', {0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100}},
    {',', {0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000}},
    {':', {0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000}},
    {'%', {0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011}},
    {'-', {0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000}},
    {'_', {0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111}},
    {'(', {0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010}},
    {')', {0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000}},
    {'/', {0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000}},
    {'=', {0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000}},
    {'+', {0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000}},
    {'<', {0b00010, 0b00100, 0b01000, 0b10000, 0b01000, 0b00100, 0b00010}},
    {'>', {0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000}},
    {'#', {0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010}},
    {'|', {0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100}},
};

// Drawn for characters the font does not have: a small box.
inline constexpr Glyph kUnknownGlyph = {
    '?', {0b00000, 0b11111, 0b10001, 0b10001, 0b10001, 0b11111, 0b00000}};

// The glyph for `c`, or kUnknownGlyph.
inline const Glyph& glyph(char c) {
  for (const Glyph& g : kFont)
    if (g.ch == c) return g;
  return kUnknownGlyph;
}

// Width in pixels of `s` drawn at `scale` (no trailing spacing column).
inline int text_width(const std::string& s, int scale = 1) {
  if (s.empty()) return 0;
  scale = std::max(1, scale);
  return static_cast<int>(s.size()) * kGlyphAdvance * scale - scale;
}
// Height of capitals and digits; descenders reach 2 rows further down.
inline int text_height(int scale = 1) { return kGlyphH * std::max(1, scale); }
inline int text_line_height(int scale = 1) { return (kGlyphH + 2) * std::max(1, scale); }

// Draws `s` with its top-left corner at (x, y) (top of the capitals); each
// font pixel becomes a scale x scale block.
inline void text(Image& img, int x, int y, const std::string& s, int scale, unsigned char r,
                 unsigned char g, unsigned char b) {
  scale = std::max(1, scale);
  int cx = x;
  for (char c : s) {
    const Glyph& gl = glyph(c);
    for (int row = 0; row < kGlyphH; ++row)
      for (int col = 0; col < kGlyphW; ++col)
        if (gl.rows[row] & (1u << (kGlyphW - 1 - col)))
          img.rect(cx + col * scale, y + (row + gl.drop) * scale, scale, scale, r, g, b);
    cx += kGlyphAdvance * scale;
  }
}
inline void text(Image& img, int x, int y, const std::string& s, int scale, Color c) {
  text(img, x, y, s, scale, c.r, c.g, c.b);
}

// ---------------------------------------------------------------------------
// Colour map: viridis, linearly interpolated between 9 anchors.
// ---------------------------------------------------------------------------

// t in [0, 1] (clamped; NaN maps to 0) -> colour, dark purple to yellow.
inline Color viridis(double t) {
  static constexpr unsigned char anchors[9][3] = {
      {68, 1, 84},    {71, 44, 122},  {59, 81, 139},  {44, 113, 142}, {33, 144, 141},
      {39, 173, 129}, {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
  if (!(t > 0.0)) t = 0.0;
  if (t > 1.0) t = 1.0;
  const double pos = t * 8.0;
  const int i = std::min(7, static_cast<int>(pos));
  const double f = pos - i;
  auto mix = [&](int ch) {
    return static_cast<unsigned char>(
        std::lround(anchors[i][ch] + f * (anchors[i + 1][ch] - anchors[i][ch])));
  };
  return {mix(0), mix(1), mix(2)};
}

// ---------------------------------------------------------------------------
// PNG output
// ---------------------------------------------------------------------------

namespace detail {

struct PngError {
  char message[256];
};

inline void png_error_fn(png_structp png, png_const_charp msg) {
  auto* e = static_cast<PngError*>(png_get_error_ptr(png));
  if (e) {
    std::snprintf(e->message, sizeof e->message, "libpng: %s", msg ? msg : "unknown error");
  }
  png_longjmp(png, 1);
}

inline void png_warning_fn(png_structp, png_const_charp) {}

// Everything between setjmp and the end of this function holds only trivially
// destructible state, so a longjmp out of libpng leaks nothing.
inline bool png_encode(std::FILE* fp, const Image& img, png_bytep const* rows, PngError* err) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, err, png_error_fn, png_warning_fn);
  if (!png) {
    std::snprintf(err->message, sizeof err->message, "libpng: cannot create write struct");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    std::snprintf(err->message, sizeof err->message, "libpng: cannot create info struct");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_init_io(png, fp);
  png_set_IHDR(png, info, static_cast<png_uint_32>(img.width), static_cast<png_uint_32>(img.height), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, const_cast<png_bytepp>(rows));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

}  // namespace detail

// Writes `img` as an 8-bit RGB PNG. The data go to "<path>.tmp" first, which
// is renamed onto `path` only when complete. Returns false (and, if `error`
// is given, a one-line reason) on any failure; nothing is thrown.
inline bool write_png(const std::string& path, const Image& img, std::string* error = nullptr) {
  auto fail = [&](const std::string& why) {
    if (error) *error = why;
    return false;
  };
  if (img.width <= 0 || img.height <= 0 ||
      img.rgb.size() != static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height) * 3)
    return fail("write_png: empty or inconsistent image");

  std::vector<png_bytep> rows(static_cast<std::size_t>(img.height));
  for (int y = 0; y < img.height; ++y)
    rows[static_cast<std::size_t>(y)] = const_cast<png_bytep>(
        img.rgb.data() + static_cast<std::size_t>(y) * static_cast<std::size_t>(img.width) * 3);

  const std::string tmp = path + ".tmp";
  std::FILE* fp = std::fopen(tmp.c_str(), "wb");
  if (!fp) return fail("write_png: cannot open " + tmp + ": " + std::strerror(errno));

  detail::PngError err{};
  const bool encoded = detail::png_encode(fp, img, rows.data(), &err);
  const bool flushed = std::fflush(fp) == 0 && !std::ferror(fp);
  const bool closed = std::fclose(fp) == 0;
  if (!encoded || !flushed || !closed) {
    std::remove(tmp.c_str());
    if (!encoded) return fail("write_png: " + tmp + ": " + err.message);
    return fail("write_png: cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    return fail("write_png: cannot rename " + tmp + " to " + path + ": " + why);
  }
  return true;
}

// ---------------------------------------------------------------------------
// Helpers for the figures
// ---------------------------------------------------------------------------

namespace detail {

inline constexpr Color kBlack = {0, 0, 0};
inline constexpr Color kText = {30, 30, 30};
inline constexpr Color kAxis = {60, 60, 60};
inline constexpr Color kGrid = {225, 225, 225};
inline constexpr Color kMissing = {200, 200, 200};
inline constexpr Color kTrain = {31, 119, 180};   // blue
inline constexpr Color kTest = {230, 97, 1};      // orange

// Text centred horizontally on cx.
inline void text_centered(Image& img, int cx, int y, const std::string& s, int scale, Color c) {
  text(img, cx - text_width(s, scale) / 2, y, s, scale, c);
}
// Text ending at x1.
inline void text_right(Image& img, int x1, int y, const std::string& s, int scale, Color c) {
  text(img, x1 - text_width(s, scale), y, s, scale, c);
}

// Round tick spacing (1, 2 or 5 times a power of ten) for about `target`
// intervals over [lo, hi].
inline double nice_step(double lo, double hi, int target) {
  const double range = hi - lo;
  if (!(range > 0.0) || !std::isfinite(range)) return 1.0;
  const double raw = range / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  const double f = norm < 1.5 ? 1.0 : norm < 3.0 ? 2.0 : norm < 7.0 ? 5.0 : 10.0;
  return f * mag;
}

// A tick value printed with as many decimals as the step needs.
inline std::string format_tick(double v, double step) {
  int decimals = 0;
  if (step > 0.0 && std::isfinite(step))
    decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
  decimals = std::min(decimals, 6);
  if (std::fabs(v) < step * 1e-6) v = 0.0;  // no "-0.00"
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

struct Axis {
  double lo = 0.0, hi = 1.0, step = 0.2;
};

// A nicely rounded axis covering [lo, hi].
inline Axis nice_axis(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) { lo = 0.0; hi = 1.0; }
  if (hi < lo) std::swap(lo, hi);
  if (hi - lo < 1e-12 * std::max(1.0, std::fabs(hi))) {
    const double pad = std::fabs(lo) > 0.0 ? std::fabs(lo) * 0.1 : 1.0;
    lo -= pad;
    hi += pad;
  }
  Axis a;
  a.step = nice_step(lo, hi, target);
  a.lo = std::floor(lo / a.step + 1e-9) * a.step;
  a.hi = std::ceil(hi / a.step - 1e-9) * a.step;
  if (a.hi <= a.lo) a.hi = a.lo + a.step;
  return a;
}

}  // namespace detail

// ---------------------------------------------------------------------------
// Figure 1: kernel shapes
// ---------------------------------------------------------------------------

// One k x k heat map per entry of `slots` (slot r at row r / k, column r % k),
// each scaled by its own largest |value| and coloured with viridis, titled
// with titles[i], three maps per row, and a colour bar from "0" to "max"
// underneath. Missing or non-finite slots are drawn light grey.
inline Image kernel_shape_grid(const std::vector<std::string>& titles,
                               const std::vector<std::vector<float>>& slots, int k) {
  using namespace detail;
  const std::string kCaption = "kernel shapes: |value| / max per layer";
  const int n = static_cast<int>(slots.size());
  if (k <= 0 || n == 0) {
    Image img(320, 60);
    text(img, 16, 23, "no kernel shapes", 2, kText);
    return img;
  }
  const int cols_per_row = std::min(3, n);
  const int rows_of_maps = (n + 2) / 3;
  const int cell = k <= 7 ? 28 : std::max(6, 196 / k);  // large kernels shrink
  const int map = cell * k;
  const int title_scale = 2, title_h = text_line_height(title_scale);
  int title_w = 0;
  for (int i = 0; i < n; ++i)
    if (i < static_cast<int>(titles.size())) title_w = std::max(title_w, text_width(titles[i], title_scale));

  const int margin = 24, gap_x = 32, gap_y = 28, title_gap = 6;
  const int panel_w = std::max(map, title_w);
  const int panel_h = title_h + title_gap + map;
  const int header_h = text_line_height(2) + 14;  // figure caption
  const int grid_w = cols_per_row * panel_w + (cols_per_row - 1) * gap_x;
  const int bar_h = 16, bar_label_gap = 6;
  const int bar_block = bar_h + bar_label_gap + text_height(2);
  const int width = std::max(grid_w, text_width(kCaption, 2)) + 2 * margin;
  const int height =
      margin + header_h + rows_of_maps * panel_h + (rows_of_maps - 1) * gap_y + 36 + bar_block + margin;
  Image img(width, height);

  text_centered(img, width / 2, margin, kCaption, 2, kText);

  const int grid_y = margin + header_h;
  for (int i = 0; i < n; ++i) {
    const int pr = i / 3, pc = i % 3;
    // Centre the last, possibly partial, row.
    const int in_row = std::min(3, n - pr * 3);
    const int row_w = in_row * panel_w + (in_row - 1) * gap_x;
    const int px = (width - row_w) / 2 + pc * (panel_w + gap_x);
    const int py = grid_y + pr * (panel_h + gap_y);
    const int cx = px + panel_w / 2;
    if (i < static_cast<int>(titles.size())) text_centered(img, cx, py, titles[i], title_scale, kText);

    const std::vector<float>& v = slots[static_cast<std::size_t>(i)];
    double vmax = 0.0;
    for (float f : v)
      if (std::isfinite(f)) vmax = std::max(vmax, std::fabs(static_cast<double>(f)));
    const int mx = cx - map / 2, my = py + title_h + title_gap;
    for (int s = 0; s < k * k; ++s) {
      const int x = mx + (s % k) * cell, y = my + (s / k) * cell;
      Color c = kMissing;
      if (s < static_cast<int>(v.size()) && std::isfinite(v[static_cast<std::size_t>(s)]))
        c = viridis(vmax > 0.0 ? std::fabs(static_cast<double>(v[static_cast<std::size_t>(s)])) / vmax : 0.0);
      img.rect(x, y, cell, cell, c);
    }
    // Thin white separators between cells, and a dark frame around the map.
    for (int j = 1; j < k; ++j) {
      img.rect(mx + j * cell, my, 1, map, 255, 255, 255);
      img.rect(mx, my + j * cell, map, 1, 255, 255, 255);
    }
    img.frame(mx - 1, my - 1, map + 2, map + 2, kAxis);
  }

  // Colour bar, centred under the grid.
  const int bar_w = std::min(grid_w, 360);
  const int bx = (width - bar_w) / 2;
  const int by = grid_y + rows_of_maps * panel_h + (rows_of_maps - 1) * gap_y + 36;
  for (int x = 0; x < bar_w; ++x)
    img.rect(bx + x, by, 1, bar_h, viridis(bar_w > 1 ? static_cast<double>(x) / (bar_w - 1) : 0.0));
  img.frame(bx - 1, by - 1, bar_w + 2, bar_h + 2, kAxis);
  const int ly = by + bar_h + bar_label_gap;
  text(img, bx, ly, "0", 2, kText);
  text_right(img, bx + bar_w, ly, "max", 2, kText);
  return img;
}

// ---------------------------------------------------------------------------
// Figure 2: training curves
// ---------------------------------------------------------------------------

namespace detail {

struct Series {
  const std::vector<double>* values;
  Color color;
};

// One panel: axes, grid, ticks, title, legend and the series, inside the
// rectangle (x, y, w, h) of `img`.
inline void curve_panel(Image& img, int x, int y, int w, int h, const std::string& title,
                        const std::vector<Series>& series, bool percent) {
  constexpr int s = 2;  // text scale
  const int th = text_height(s), lh = text_line_height(s);

  // Ranges over finite values only.
  std::size_t n = 0;
  double lo = INFINITY, hi = -INFINITY;
  for (const Series& se : series) {
    n = std::max(n, se.values->size());
    for (double v : *se.values)
      if (std::isfinite(v)) { lo = std::min(lo, v); hi = std::max(hi, v); }
  }
  const bool any = lo <= hi;
  Axis ya = any ? nice_axis(lo, hi, 5) : percent ? Axis{0.0, 100.0, 20.0} : Axis{};
  if (percent && any) {  // keep accuracy axes inside [0, 100]
    ya.lo = std::max(ya.lo, 0.0);
    ya.hi = std::min(ya.hi, 100.0);
    if (ya.hi <= ya.lo) ya = nice_axis(lo, hi, 5);
  }
  const int epochs = static_cast<int>(std::max<std::size_t>(n, 1));
  // x axis: epoch 1..epochs, half an epoch of padding when there is only one.
  // Otherwise a little padding, so the first and last markers clear the axes.
  const double xpad = epochs == 1 ? 0.5 : std::max(0.02 * (epochs - 1), 0.15);
  const double xlo = 1.0 - xpad, xhi = epochs + xpad;
  const double xstep = std::max(1.0, nice_step(1.0, std::max(2.0, static_cast<double>(epochs)), 6));

  // Tick labels decide the left margin.
  std::vector<std::pair<double, std::string>> yticks;
  for (double v = ya.lo; v <= ya.hi + ya.step * 1e-6; v += ya.step)
    yticks.emplace_back(v, format_tick(v, ya.step));
  int ylab_w = 0;
  for (const auto& t : yticks) ylab_w = std::max(ylab_w, text_width(t.second, s));

  const int header = lh + 12;  // title and legend line
  const int px = x + ylab_w + 14, py = y + header;
  const int pw = x + w - px - 14;
  const int ph = y + h - py - (th + 8) - (lh + 10);  // tick labels, "epoch"
  if (pw < 20 || ph < 20) return;

  auto sx = [&](double e) { return px + static_cast<int>(std::lround((e - xlo) / (xhi - xlo) * (pw - 1))); };
  // The y range runs a little past the outer ticks, so markers on them clear
  // the frame.
  const double ypad = 0.04 * (ya.hi - ya.lo);
  const double ylo = ya.lo - ypad, yhi = ya.hi + ypad;
  auto sy = [&](double v) {
    return py + ph - 1 - static_cast<int>(std::lround((v - ylo) / (yhi - ylo) * (ph - 1)));
  };

  // Title (left) and legend (right) above the plot area.
  text(img, px, y, title, s, kText);
  {
    // Legend entries: a short line with a dot, then the name; right-aligned.
    const char* names[2] = {"train", "test"};
    const std::size_t m = std::min<std::size_t>(series.size(), 2);
    const int swatch = 20, after_swatch = 6, between = 18;
    int total = 0;
    for (std::size_t i = 0; i < m; ++i)
      total += swatch + after_swatch + text_width(names[i], s) + (i + 1 < m ? between : 0);
    int lx = x + w - 14 - total;
    for (std::size_t i = 0; i < m; ++i) {
      const int ly = y + th / 2;
      img.line(lx, ly, lx + swatch - 1, ly, series[i].color, 3);
      img.disc(lx + swatch / 2, ly, 7, series[i].color);
      lx += swatch + after_swatch;
      text(img, lx, y, names[i], s, kText);
      lx += text_width(names[i], s) + between;
    }
  }

  // Grid and y ticks.
  for (const auto& t : yticks) {
    const int yy = sy(t.first);
    img.rect(px, yy, pw, 1, kGrid);
    img.rect(px - 5, yy, 5, 1, kAxis);
    text_right(img, px - 8, yy - th / 2, t.second, s, kText);
  }
  // x ticks at whole epochs: multiples of the step, and epoch 1 when the
  // step is coarse; a label that would touch its left neighbour is left out.
  const long long step = static_cast<long long>(xstep);
  std::vector<long long> xticks;
  if (step >= 5 || epochs == 1) xticks.push_back(1);
  for (long long e = step; e <= epochs; e += step)
    if (e > 1) xticks.push_back(e);
  int last_label_end = -1000000;
  for (long long e : xticks) {
    const int xx = sx(static_cast<double>(e));
    img.rect(xx, py + ph, 1, 5, kAxis);
    const std::string lab = std::to_string(e);
    const int lw = text_width(lab, s);
    if (xx - lw / 2 > last_label_end + 8) {
      text_centered(img, xx, py + ph + 8, lab, s, kText);
      last_label_end = xx - lw / 2 + lw;
    }
  }
  text_centered(img, px + pw / 2, py + ph + 8 + th + 10, "epoch", s, kText);

  // Axes: left and bottom.
  img.rect(px, py, 1, ph, kAxis);
  img.rect(px, py + ph - 1, pw, 1, kAxis);

  if (!any) {
    text_centered(img, px + pw / 2, py + ph / 2 - th / 2, "no data", s, kMissing);
    return;
  }

  // Series: non-finite entries are skipped and the finite points on either
  // side joined; markers on every point unless there are many.
  const bool markers = n <= 40;
  for (const Series& se : series) {
    const std::vector<double>& v = *se.values;
    int finite = 0, prev_x = 0, prev_y = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (!std::isfinite(v[i])) continue;
      const int cx = sx(static_cast<double>(i + 1)), cy = sy(v[i]);
      if (finite > 0) img.line(prev_x, prev_y, cx, cy, se.color, 2);
      prev_x = cx;
      prev_y = cy;
      ++finite;
    }
    if (markers || finite == 1)
      for (std::size_t i = 0; i < v.size(); ++i)
        if (std::isfinite(v[i])) img.disc(sx(static_cast<double>(i + 1)), sy(v[i]), finite == 1 ? 9 : 7, se.color);
  }
}

}  // namespace detail

// Two panels side by side: loss per epoch (left) and accuracy in % per epoch
// (right); train in blue, test in orange. Entry i belongs to epoch i + 1;
// NaN (or infinite) entries are skipped, e.g. epochs without a test pass.
inline Image training_curves(const std::vector<double>& train_loss, const std::vector<double>& test_loss,
                             const std::vector<double>& train_acc, const std::vector<double>& test_acc) {
  using namespace detail;
  const int panel_w = 520, panel_h = 380, margin = 20, gap = 30;
  Image img(2 * panel_w + gap + 2 * margin, panel_h + 2 * margin);
  curve_panel(img, margin, margin, panel_w, panel_h, "loss",
              {{&train_loss, kTrain}, {&test_loss, kTest}}, false);
  curve_panel(img, margin + panel_w + gap, margin, panel_w, panel_h, "accuracy (%)",
              {{&train_acc, kTrain}, {&test_acc, kTest}}, true);
  return img;
}

}  // namespace nsl::plots
