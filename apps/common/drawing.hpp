// drawing.hpp — what the pictures of plots.hpp are drawn with, on Cairo:
// colours, text placed by its alignment, lines, the viridis colour map,
// rounded axes with tick labels, and write_png, which makes a white canvas,
// lets a function paint it and writes it as PNG without throwing.
#pragma once

#include <cairo.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <string>

#include "nsl/io/atomic_file.hpp"

namespace nsl::plots::draw {

struct Rgb {
  double r, g, b;
};
inline constexpr Rgb kText{0.13, 0.13, 0.13}, kAxis{0.40, 0.40, 0.40}, kGrid{0.90, 0.90, 0.90},
    kMissing{0.78, 0.78, 0.78}, kTrain{0.12, 0.47, 0.71}, kTest{0.89, 0.36, 0.00};
// Colours for groups of lines that most colour-blind readers tell apart (after
// Okabe and Ito's palette; its yellow darkened for a white background).
inline constexpr std::array<Rgb, 8> kCategories{{{0.00, 0.45, 0.70},
                                                 {0.84, 0.37, 0.00},
                                                 {0.00, 0.62, 0.45},
                                                 {0.80, 0.47, 0.65},
                                                 {0.34, 0.71, 0.91},
                                                 {0.90, 0.62, 0.00},
                                                 {0.40, 0.40, 0.40},
                                                 {0.60, 0.50, 0.10}}};
inline constexpr double kTickPx = 13, kLabelPx = 14, kTitlePx = 16;  // text sizes in pixels

inline void set_colour(cairo_t* cr, Rgb c) { cairo_set_source_rgb(cr, c.r, c.g, c.b); }
inline void line(cairo_t* cr, double x0, double y0, double x1, double y1, Rgb c, double width = 1) {
  set_colour(cr, c);
  cairo_set_line_width(cr, width);
  cairo_move_to(cr, x0, y0);
  cairo_line_to(cr, x1, y1);
  cairo_stroke(cr);
}
inline void fill_rect(cairo_t* cr, double x, double y, double w, double h, Rgb c) {
  set_colour(cr, c);
  cairo_rectangle(cr, x, y, w, h);
  cairo_fill(cr);
}
// A 1-pixel outline around the w x h pixels whose top-left one is (x, y).
inline void frame(cairo_t* cr, double x, double y, double w, double h, Rgb c) {
  set_colour(cr, c);
  cairo_set_line_width(cr, 1);
  cairo_rectangle(cr, x + 0.5, y + 0.5, w, h);  // on pixel centres: sharp, not smeared over two
  cairo_stroke(cr);
}
// A filled disc; with a white rim when `rim`, so that it stands out on a line.
inline void dot(cairo_t* cr, double x, double y, double radius, Rgb c, bool rim) {
  cairo_arc(cr, x, y, radius, 0, 6.283185307179586);
  set_colour(cr, c);
  if (rim) {
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_set_line_width(cr, 1.5);
    cairo_stroke(cr);
  } else {
    cairo_fill(cr);
  }
}

inline double text_width(cairo_t* cr, const std::string& s, double px) {
  cairo_set_font_size(cr, px);
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  return e.x_advance;
}

// Draws `s` with x at its left (align 0), centre (0.5) or right (1) end and y
// at the middle of its capitals and digits.
inline void text(cairo_t* cr, double x, double y, const std::string& s, double px, double align,
                 Rgb c = kText) {
  const double w = text_width(cr, s, px);
  set_colour(cr, c);
  cairo_move_to(cr, std::round(x - align * w), std::round(y + 0.36 * px));  // cap height ~0.72 em
  cairo_show_text(cr, s.c_str());
}

// Viridis, linear between 9 anchors: t in [0, 1] (clamped) -> dark purple .. yellow.
inline constexpr double kViridis[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},
                                          {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
                                          {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
inline Rgb viridis(double t) {
  t = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0) * 8.0;
  const int i = std::min(7, static_cast<int>(t));
  auto mix = [&](int ch) { return (kViridis[i][ch] + (t - i) * (kViridis[i + 1][ch] - kViridis[i][ch])) / 255.0; };
  return {mix(0), mix(1), mix(2)};
}

// A rounded axis [lo, hi] covering the data, ticks every `step` (1, 2 or 5 x 10^k).
struct Axis {
  double lo, hi, step;
};
inline Axis nice_axis(double lo, double hi, int ticks) {
  if (hi - lo < 1e-9 * std::max(1.0, std::fabs(hi))) {  // one value: a range around it
    const double pad = lo != 0.0 ? std::fabs(lo) * 0.1 : 1.0;
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / ticks, mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = mag * (raw / mag < 1.5 ? 1 : raw / mag < 3 ? 2 : raw / mag < 7 ? 5 : 10);
  return {std::floor(lo / step + 1e-9) * step, std::ceil(hi / step - 1e-9) * step, step};
}
inline std::string tick_label(double v, double step) {
  const int decimals = std::clamp(static_cast<int>(-std::floor(std::log10(step) + 1e-9)), 0, 6);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, std::fabs(v) < step * 1e-6 ? 0.0 : v);
  return buf;
}

// A white w x h canvas, painted by draw(cr), encoded as PNG in memory and
// written with nsl::write_file_atomically (a temporary file beside `path`,
// renamed over it when complete: a full disk or a crash never leaves half a
// picture). Errors go to *error, prefixed with `what`.
template <class Draw>
bool write_png(const std::string& path, int w, int h, const char* what, std::string* error, Draw draw) {
  std::string why;
  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  cairo_t* cr = cairo_create(surface);
  if (cairo_status(cr) == CAIRO_STATUS_SUCCESS) {
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    try {
      draw(cr);
    } catch (const std::exception& e) {
      why = std::string("drawing failed: ") + e.what();
    }
  }
  if (why.empty() && cairo_status(cr) != CAIRO_STATUS_SUCCESS) why = cairo_status_to_string(cairo_status(cr));
  std::string png;
  if (why.empty()) {
    cairo_surface_flush(surface);
    const cairo_status_t s = cairo_surface_write_to_png_stream(
        surface,
        [](void* closure, const unsigned char* data, unsigned int length) {
          static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), length);
          return CAIRO_STATUS_SUCCESS;
        },
        &png);
    if (s != CAIRO_STATUS_SUCCESS) why = std::string("cannot encode the PNG: ") + cairo_status_to_string(s);
  }
  cairo_destroy(cr);
  cairo_surface_destroy(surface);
  if (why.empty()) {
    try {
      nsl::write_file_atomically("write_png", path, [&](std::ofstream& out) {
        out.write(png.data(), static_cast<std::streamsize>(png.size()));
      });
      return true;
    } catch (const std::exception& e) {
      why = e.what();
    }
  }
  if (error) *error = std::string(what) + ": " + why;
  return false;
}

}  // namespace nsl::plots::draw
