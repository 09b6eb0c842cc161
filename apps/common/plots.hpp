// plots.hpp — the programs' pictures, drawn with Cairo (anti-aliased lines,
// real text) and written as PNG by Cairo itself:
//
//   write_training_curves  loss and accuracy (%) against the training step:
//                          train lines every N steps, test markers per epoch
//   write_kernel_shapes    one side x side map of |m| / max |m| per similarity layer
//   write_group_curves     one line per group of runs (their mean) in a band
//                          (their lowest to highest value), against the epoch
//
// Program code, not library code: both return false and say why (an
// unwritable path, a canvas Cairo cannot make); nothing throws or aborts.
// The drawing primitives are in drawing.hpp. Link with Cairo (pkg-config cairo).
#pragma once

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "drawing.hpp"

namespace nsl::plots {

// One curve of a panel; pairs (x[i], y[i]) with a non-finite member are skipped.
struct Series {
  std::string label;
  std::vector<double> x, y;
  bool points = false;        // markers, not a line
  std::vector<double> lo = {}, hi = {};  // if given: a translucent band from lo[i] to hi[i] under the line
};

// Training curves against the step: train metrics recorded every N steps
// (lines), test metrics at the step where each epoch ended (markers).
struct TrainingCurves {
  std::vector<double> step, train_loss, train_accuracy;      // accuracy as a fraction 0..1
  std::vector<double> epoch_step, test_loss, test_accuracy;  // one entry per finished epoch
};

namespace draw {

// One panel inside the box (x, y, w, h): title at the top left, legend at the
// top right (on a row of its own below the title where the two would
// touch), the plot with grid, ticks and x label below them. `percent`
// keeps the y axis inside [0, 100].
inline void panel(cairo_t* cr, double x, double y, double w, double h, const std::string& title,
                  const std::string& x_label, const std::vector<Series>& series, const std::vector<Rgb>& colours,
                  bool percent) {
  double x_min = 0.0, x_max = -INFINITY, y_min = INFINITY, y_max = -INFINITY;  // x axis starts at 0
  for (const Series& s : series)
    for (std::size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
        x_min = std::min(x_min, s.x[i]), x_max = std::max(x_max, s.x[i]);
        y_min = std::min(y_min, s.y[i]), y_max = std::max(y_max, s.y[i]);
        if (i < s.lo.size() && std::isfinite(s.lo[i])) y_min = std::min(y_min, s.lo[i]);
        if (i < s.hi.size() && std::isfinite(s.hi[i])) y_max = std::max(y_max, s.hi[i]);
      }
  const bool any = y_min <= y_max;
  Axis xa = nice_axis(x_min, any ? x_max : 10.0, 6);
  if (xa.step < 1) xa = {xa.lo, std::max(xa.lo + 1, std::ceil(xa.hi)), 1.0};  // whole steps only
  Axis ya = any ? nice_axis(y_min, y_max, 5) : percent ? Axis{0, 100, 20} : Axis{0, 1, 0.2};
  if (percent && y_min >= 0 && y_max <= 100) ya.lo = std::max(ya.lo, 0.0), ya.hi = std::min(ya.hi, 100.0);

  double label_w = 0;  // the y tick labels decide the left margin
  for (double v = ya.lo; v <= ya.hi + ya.step * 1e-6; v += ya.step)
    label_w = std::max(label_w, text_width(cr, tick_label(v, ya.step), kTickPx));
  const double px = std::round(x + label_w + 12), pw = std::round(x + w - px - 12);
  // The legend's entries (a 24-pixel swatch, 6 pixels, the label, 18 pixels
  // to the next) in rows no wider than the plot: one row beside the title
  // where it fits, else rows of their own below it.
  std::vector<std::vector<std::size_t>> legend_rows(1);
  double row_w = 0, legend_w = 0;
  for (std::size_t k = 0; k < series.size(); ++k) {
    const double entry = text_width(cr, series[k].label, kLabelPx) + 48;
    if (!legend_rows.back().empty() && row_w + entry > pw) legend_rows.emplace_back(), row_w = 0;
    legend_rows.back().push_back(k);
    row_w += entry;
    legend_w = std::max(legend_w, row_w);
  }
  const bool legend_row =
      legend_rows.size() > 1 || px + pw - legend_w < px + text_width(cr, title, kTitlePx) + 16;
  const double legend_y = legend_row ? y + 34 : y + 12;
  const double py = legend_row ? y + 56 + 22 * double(legend_rows.size() - 1) : y + 34,
               ph = std::round(y + h - py - 46);
  // The axes' ends lie `inset` pixels inside the frame, so markers there stay whole.
  const double inset = 8;
  auto X = [&](double v) { return px + inset + (v - xa.lo) / (xa.hi - xa.lo) * (pw - 2 * inset); };
  auto Y = [&](double v) { return py + ph - inset - (v - ya.lo) / (ya.hi - ya.lo) * (ph - 2 * inset); };

  for (double v = ya.lo; v <= ya.hi + ya.step * 1e-6; v += ya.step) {
    const double yy = std::round(Y(v)) + 0.5;  // on pixel centres, as in frame()
    line(cr, px, yy, px + pw, yy, kGrid);
    line(cr, px - 5, yy, px, yy, kAxis);
    text(cr, px - 8, yy, tick_label(v, ya.step), kTickPx, 1);
  }
  double last_right = -INFINITY;  // an x label that would touch the previous one is left out
  for (double v = xa.lo; v <= xa.hi + xa.step * 1e-6; v += xa.step) {
    const double xx = std::round(X(v)) + 0.5;
    line(cr, xx, py, xx, py + ph, kGrid);
    line(cr, xx, py + ph, xx, py + ph + 5, kAxis);
    const std::string label = tick_label(v, xa.step);
    const double half = text_width(cr, label, kTickPx) / 2;
    if (xx - half < last_right + 8) continue;
    text(cr, xx, py + ph + 16, label, kTickPx, 0.5);
    last_right = xx + half;
  }
  frame(cr, px, py, pw, ph, kAxis);
  text(cr, px + pw / 2, py + ph + 36, x_label, kLabelPx, 0.5);
  text(cr, px, y + 12, title, kTitlePx, 0);

  for (std::size_t r = 0; r < legend_rows.size(); ++r) {  // each row right-aligned above the plot
    const double ly = legend_y + 22 * double(r);
    double lx = px + pw;
    for (std::size_t i = legend_rows[r].size(); i-- > 0;) {
      const std::size_t k = legend_rows[r][i];
      lx -= text_width(cr, series[k].label, kLabelPx);
      text(cr, lx, ly, series[k].label, kLabelPx, 0);
      lx -= 30;
      if (series[k].points) dot(cr, lx + 12, ly, 4.5, colours[k], false);
      else line(cr, lx, ly, lx + 24, ly, colours[k], 2.5);
      lx -= 18;
    }
  }
  if (!any) {
    text(cr, px + pw / 2, py + ph / 2, "no data yet", kLabelPx, 0.5, kAxis);
    return;
  }

  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  for (std::size_t k = 0; k < series.size(); ++k) {  // the bands first, under every line
    const Series& s = series[k];
    std::vector<std::size_t> at;  // points with a finite x and band
    for (std::size_t i = 0; i < std::min({s.x.size(), s.lo.size(), s.hi.size()}); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.lo[i]) && std::isfinite(s.hi[i])) at.push_back(i);
    if (at.size() < 2) continue;
    for (std::size_t i : at) cairo_line_to(cr, X(s.x[i]), Y(s.hi[i]));
    for (auto i = at.rbegin(); i != at.rend(); ++i) cairo_line_to(cr, X(s.x[*i]), Y(s.lo[*i]));
    cairo_close_path(cr);
    cairo_set_source_rgba(cr, colours[k].r, colours[k].g, colours[k].b, 0.18);
    cairo_fill(cr);
  }
  for (std::size_t k = 0; k < series.size(); ++k) {
    const Series& s = series[k];
    std::vector<std::pair<double, double>> at;  // the finite points, in canvas coordinates
    for (std::size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) at.emplace_back(X(s.x[i]), Y(s.y[i]));
    if (!s.points && at.size() > 1) {
      for (const auto& [cx, cy] : at) cairo_line_to(cr, cx, cy);
      set_colour(cr, colours[k]);
      cairo_set_line_width(cr, 2);
      cairo_stroke(cr);
    } else {  // markers; a line of one point is one marker too
      for (const auto& [cx, cy] : at) dot(cr, cx, cy, s.points ? 5 : 4.5, colours[k], true);
    }
  }
}

}  // namespace draw

// Two panels side by side, loss (left) and accuracy in % (right), against the
// training step: train in blue (lines), test in orange (markers).
inline bool write_training_curves(const std::string& path, const TrainingCurves& curves, std::string* error) {
  using namespace draw;
  auto percent = [](std::vector<double> v) {
    for (double& a : v) a *= 100.0;
    return v;
  };
  const std::vector<Series> loss = {{"train", curves.step, curves.train_loss},
                                    {"test (end of epoch)", curves.epoch_step, curves.test_loss, true}};
  const std::vector<Series> accuracy = {
      {"train", curves.step, percent(curves.train_accuracy)},
      {"test (end of epoch)", curves.epoch_step, percent(curves.test_accuracy), true}};
  return write_png(path, 1120, 460, "write_training_curves", error, [&](cairo_t* cr) {
    panel(cr, 16, 14, 536, 432, "Loss", "training step", loss, {kTrain, kTest}, false);
    panel(cr, 568, 14, 536, 432, "Accuracy (%)", "training step", accuracy, {kTrain, kTest}, true);
  });
}

// Runs in groups (the variants of a results table, each over seeds): one line
// per group through the mean of its runs' values at each x (an epoch), in a
// band from the lowest to the highest of them; x where no run of the group
// has a value is left out.
struct GroupCurve {
  std::string label;
  std::vector<std::vector<double>> runs;  // runs[r][e]: the r-th run's value at x = e + 1
};
// The lines and bands of write_group_curves: per group, at each x = e + 1
// where some run has a finite value, the mean, lowest and highest of them.
inline std::vector<Series> group_series(const std::vector<GroupCurve>& groups) {
  std::vector<Series> series;
  for (const GroupCurve& g : groups) {
    Series s{g.label, {}, {}, false, {}, {}};
    std::size_t length = 0;
    for (const auto& run : g.runs) length = std::max(length, run.size());
    for (std::size_t e = 0; e < length; ++e) {
      double sum = 0, lo = INFINITY, hi = -INFINITY;
      int n = 0;
      for (const auto& run : g.runs)
        if (e < run.size() && std::isfinite(run[e])) sum += run[e], lo = std::min(lo, run[e]), hi = std::max(hi, run[e]), ++n;
      if (n == 0) continue;
      s.x.push_back(double(e + 1)), s.y.push_back(sum / n), s.lo.push_back(lo), s.hi.push_back(hi);
    }
    series.push_back(std::move(s));
  }
  return series;
}

inline bool write_group_curves(const std::string& path, const std::string& title, const std::string& x_label,
                               const std::vector<GroupCurve>& groups, bool percent, std::string* error) {
  using namespace draw;
  const std::vector<Series> series = group_series(groups);
  std::vector<Rgb> colours;
  for (std::size_t k = 0; k < series.size(); ++k) colours.push_back(kCategories[k % kCategories.size()]);
  return write_png(path, 960, 560, "write_group_curves", error, [&](cairo_t* cr) {
    panel(cr, 16, 14, 928, 532, title, x_label, series, colours, percent);
  });
}

// One side x side map per entry of `slots` (slot r at row r / side, column
// r % side) under titles[i], its cells shaded by |slot| / the layer's largest
// |slot| (viridis), non-finite or missing slots grey; a colour bar below.
inline bool write_kernel_shapes(const std::string& path, const std::vector<std::string>& titles,
                                const std::vector<std::vector<float>>& slots, int side, std::string* error) {
  using namespace draw;
  const int n = static_cast<int>(slots.size());
  if (n > 0 && (side <= 0 || side > 64)) {
    if (error) *error = "write_kernel_shapes: side " + std::to_string(side) + " is not in 1..64";
    return false;
  }
  double title_w = 0;  // measured on a scratch canvas, to size the real one
  cairo_surface_t* scratch = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
  cairo_t* measure = cairo_create(scratch);
  cairo_select_font_face(measure, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  for (const std::string& t : titles) title_w = std::max(title_w, text_width(measure, t, kLabelPx));
  cairo_destroy(measure);
  cairo_surface_destroy(scratch);
  const int per_row = std::max(1, static_cast<int>(std::ceil(std::sqrt(n)))), rows = (n + per_row - 1) / per_row;
  const int cell = side <= 7 ? 36 : std::max(6, 252 / std::max(side, 1)), map = cell * side;
  const int panel_w = std::max(map, static_cast<int>(title_w)) + 28, panel_h = map + 54;
  const int width = std::max(per_row * panel_w, 520) + 48, height = 56 + rows * panel_h + 72;
  return write_png(path, width, n > 0 ? height : 120, "write_kernel_shapes", error, [&](cairo_t* cr) {
    text(cr, width / 2.0, 28, "Learned kernel shapes, one map per similarity layer", kTitlePx, 0.5);
    if (n == 0) {
      text(cr, width / 2.0, 72, "no similarity layers", kLabelPx, 0.5, kAxis);
      return;
    }
    bool missing = false;
    for (int i = 0; i < n; ++i) {
      const int in_row = std::min(per_row, n - i / per_row * per_row);  // a partial last row is centred
      const double cx = (width - in_row * panel_w) / 2.0 + (i % per_row + 0.5) * panel_w;
      const double top = 56 + (i / per_row) * panel_h, mx = std::round(cx - map / 2.0), my = top + 24;
      if (i < static_cast<int>(titles.size())) text(cr, cx, top + 8, titles[i], kLabelPx, 0.5);
      const std::vector<float>& v = slots[static_cast<std::size_t>(i)];
      double largest = 0;
      for (float a : v)
        if (std::isfinite(a)) largest = std::max(largest, std::fabs(static_cast<double>(a)));
      for (int s = 0; s < side * side; ++s) {
        const bool known = s < static_cast<int>(v.size()) && std::isfinite(v[static_cast<std::size_t>(s)]);
        missing = missing || !known;
        const Rgb shade =
            known ? viridis(largest > 0 ? std::fabs(v[static_cast<std::size_t>(s)]) / largest : 0.0) : kMissing;
        fill_rect(cr, mx + (s % side) * cell + 1, my + (s / side) * cell + 1, cell - 1, cell - 1, shade);
      }
      frame(cr, mx, my, map, map, kAxis);
    }
    // Colour bar: a viridis gradient from 0 to 1 with ticks, and a grey swatch if any slot was missing.
    const double bw = 320, bx = std::round((width - bw) / 2), by = 56 + rows * panel_h + 8;
    cairo_pattern_t* gradient = cairo_pattern_create_linear(bx, 0, bx + bw, 0);
    for (int a = 0; a < 9; ++a)
      cairo_pattern_add_color_stop_rgb(gradient, a / 8.0, kViridis[a][0] / 255, kViridis[a][1] / 255, kViridis[a][2] / 255);
    cairo_set_source(cr, gradient);
    cairo_rectangle(cr, bx, by, bw, 14);
    cairo_fill(cr);
    cairo_pattern_destroy(gradient);
    frame(cr, bx, by, bw, 14, kAxis);
    for (int t = 0; t <= 4; ++t) {
      const double tx = std::round(bx + t * bw / 4) + 0.5;
      line(cr, tx, by + 14, tx, by + 19, kAxis);
      text(cr, tx, by + 29, tick_label(t / 4.0, 0.01), kTickPx, 0.5);
    }
    text(cr, bx + bw / 2, by + 50, "|m| / largest |m| in the layer", kLabelPx, 0.5);
    if (missing) {
      fill_rect(cr, bx + bw + 20, by, 14, 14, kMissing);
      text(cr, bx + bw + 40, by + 7, "missing", kTickPx, 0);
    }
  });
}

}  // namespace nsl::plots
