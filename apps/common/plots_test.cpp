// plots_test — draws the training program's pictures from synthetic data into
// the directory argv[1], reads every PNG back with Cairo and checks its size
// and that it shows something (non-white pixels, the curves' colours).
// Exit 0 on success; every failed check is printed.
//
//   plots_test OUT_DIR
#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <system_error>
#include <vector>

#include "common/plots.hpp"

namespace {

namespace plots = nsl::plots;

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++failures;
  }
}

// A colour (0xRRGGBB) a picture must show, and on how many pixels at least.
struct Ink {
  unsigned colour;
  long min_pixels;
};

// Checks that `written` succeeded, that path is a PNG of w x h pixels (any
// width when w < 0) with some non-white ones, and the inks on it.
void verify(bool written, const std::string& error, const std::string& path, int w, int h,
            const std::vector<Ink>& inks = {}) {
  check(written, "write " + path + ": " + error);
  if (!written) return;
  check(!std::filesystem::exists(path + ".tmp"), "temporary file left behind for " + path);
  cairo_surface_t* s = cairo_image_surface_create_from_png(path.c_str());
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
    check(false, "read back " + path + ": " + cairo_status_to_string(cairo_surface_status(s)));
    return cairo_surface_destroy(s);
  }
  cairo_surface_flush(s);
  const int width = cairo_image_surface_get_width(s), height = cairo_image_surface_get_height(s);
  check((w < 0 || width == w) && height == h, path + " is " + std::to_string(width) + " x " + std::to_string(height) +
                                       ", expected " + std::to_string(w) + " x " + std::to_string(h));
  long non_white = 0;
  std::vector<long> found(inks.size(), 0);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      std::uint32_t px = 0;  // native-endian xRGB (ARGB when the PNG has alpha)
      std::memcpy(&px, cairo_image_surface_get_data(s) + y * cairo_image_surface_get_stride(s) + 4 * x, 4);
      px &= 0xFFFFFFu;
      non_white += px != 0xFFFFFFu;
      for (std::size_t i = 0; i < inks.size(); ++i) {
        auto near = [&](int shift) { return std::abs(int(px >> shift & 255) - int(inks[i].colour >> shift & 255)) < 24; };
        found[i] += near(16) && near(8) && near(0);
      }
    }
  cairo_surface_destroy(s);
  check(non_white > 2000, path + ": only " + std::to_string(non_white) + " non-white pixels");
  for (std::size_t i = 0; i < inks.size(); ++i) {
    char want[64];
    std::snprintf(want, sizeof want, "%ld pixels of #%06X, expected at least %ld", found[i], inks[i].colour,
                  inks[i].min_pixels);
    check(found[i] >= inks[i].min_pixels, path + ": " + want);
  }
  std::printf("%s: %d x %d, %ld non-white pixels\n", path.c_str(), width, height, non_white);
}

// A run of `epochs` epochs of `steps` steps each, train metrics every `every`
// steps: noisy, falling fast in the first epoch, then slowly.
plots::TrainingCurves synthetic_run(int epochs, int steps, int every) {
  auto noise = [](double t) {  // deterministic, in [-0.5, 0.5)
    const double h = std::sin(t * 12.9898) * 43758.5453;
    return h - std::floor(h) - 0.5;
  };
  auto loss = [&](double t) { return 0.25 + 1.6 * std::exp(-t / (0.3 * steps)) + 0.5 * std::exp(-t / (3.0 * steps)); };
  auto accuracy = [&](double t) { return 0.95 - 0.6 * std::exp(-t / (0.3 * steps)) - 0.25 * std::exp(-t / (3.0 * steps)); };
  plots::TrainingCurves c;
  for (int t = every; t <= epochs * steps; t += every) {
    c.step.push_back(t);
    c.train_loss.push_back(loss(t) + 0.15 * noise(t));
    c.train_accuracy.push_back(accuracy(t) + 0.05 * noise(t + 0.5));
  }
  for (int e = 1; e <= epochs; ++e) {
    c.epoch_step.push_back(e * steps);
    c.test_loss.push_back(loss(e * steps) + 0.08);
    c.test_accuracy.push_back(accuracy(e * steps) - 0.03);
  }
  return c;
}

// Nine synthetic side x side shapes: a cross, an X, a blob, a signed ramp, a
// ring, all zero, one with a NaN, a pattern, a cone.
std::vector<std::vector<float>> synthetic_slots(int side) {
  std::vector<std::vector<float>> slots;
  const float c = (side - 1) / 2.0f;
  for (int layer = 0; layer < 9; ++layer) {
    std::vector<float> v;
    for (int r = 0; r < side; ++r)
      for (int q = 0; q < side; ++q) {
        const float d2 = (q - c) * (q - c) + (r - c) * (r - c);
        const float m[9] = {(r == side / 2 || q == side / 2) ? 1.0f : 0.05f,
                            (r == q || r + q == side - 1) ? 0.8f : 0.0f,
                            std::exp(-d2 / 1.5f),
                            -0.3f + 0.1f * static_cast<float>(r * side + q),
                            d2 > 0.5f ? 2.0f : 0.2f,
                            0.0f,
                            r * side + q == 4 ? std::numeric_limits<float>::quiet_NaN() : 1e-3f * (q + 1),
                            static_cast<float>((r * 7 + q * 3) % 5) / 4.0f,
                            1.0f - 0.2f * std::sqrt(d2)};
        v.push_back(m[layer]);
      }
    slots.push_back(v);
  }
  return slots;
}

}  // namespace

// Pixels of `colour` (0xRRGGBB, within 24 per channel) in rows [y0, y1) of a PNG.
long pixels_in_rows(const std::string& path, unsigned colour, int y0, int y1) {
  cairo_surface_t* s = cairo_image_surface_create_from_png(path.c_str());
  long n = 0;
  if (cairo_surface_status(s) == CAIRO_STATUS_SUCCESS) {
    cairo_surface_flush(s);
    const int width = cairo_image_surface_get_width(s), height = cairo_image_surface_get_height(s);
    for (int y = std::max(0, y0); y < std::min(height, y1); ++y)
      for (int x = 0; x < width; ++x) {
        std::uint32_t px = 0;
        std::memcpy(&px, cairo_image_surface_get_data(s) + y * cairo_image_surface_get_stride(s) + 4 * x, 4);
        auto near = [&](int shift) { return std::abs(int(px >> shift & 255) - int(colour >> shift & 255)) < 24; };
        n += near(16) && near(8) && near(0);
      }
  }
  cairo_surface_destroy(s);
  return n;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    std::fprintf(stderr, "cannot create %s: %s\n", dir.c_str(), ec.message().c_str());
    return 2;
  }
  const unsigned train_blue = 0x1F78B5, test_orange = 0xE35C00;  // draw::kTrain, kTest
  std::string error;
  auto curves = [&](const std::string& name, const plots::TrainingCurves& c, long min_blue, long min_orange) {
    const std::string path = dir + "/" + name;
    error.clear();
    const bool written = plots::write_training_curves(path, c, &error);
    verify(written, error, path, 1120, 460, {{train_blue, min_blue}, {test_orange, min_orange}});
  };

  // A one-epoch run of 50 steps, recorded every step: a real curve, not one point.
  curves("curves_1epoch.png", synthetic_run(1, 50, 1), 1500, 40);
  // 12 epochs of 469 steps (Fashion-MNIST at batch 128), recorded every 20 steps.
  curves("curves_12epochs.png", synthetic_run(12, 469, 20), 1500, 300);
  // No epoch finished yet; nothing at all; a single train point; NaNs in the data.
  plots::TrainingCurves no_epoch = synthetic_run(1, 30, 1);
  no_epoch.epoch_step.clear(), no_epoch.test_loss.clear(), no_epoch.test_accuracy.clear();
  curves("curves_no_epoch.png", no_epoch, 1000, 0);
  curves("curves_empty.png", {}, 0, 0);
  curves("curves_single.png", {{10}, {1.9}, {0.3}, {}, {}, {}}, 40, 0);
  plots::TrainingCurves gaps = synthetic_run(3, 100, 5);
  gaps.train_loss[4] = gaps.test_accuracy[1] = std::numeric_limits<double>::quiet_NaN();
  gaps.train_accuracy.resize(10);  // shorter than step: the rest is left out
  curves("curves_gaps.png", gaps, 500, 100);

  // Kernel shapes: nine 3x3 layers (the CNN-9 stages), four 5x5, none.
  std::vector<std::string> titles;
  for (int s = 1; s <= 3; ++s)
    for (int c = 1; c <= 3; ++c) titles.push_back("stage" + std::to_string(s) + ".conv" + std::to_string(c));
  auto shapes = [&](const std::string& name, const std::vector<std::string>& t,
                    const std::vector<std::vector<float>>& slots, int side, int w, int h) {
    const std::string path = dir + "/" + name;
    error.clear();
    const unsigned viridis_top = 0xFDE725, missing_grey = 0xC7C7C7;  // the shade of 1, draw::kMissing
    verify(plots::write_kernel_shapes(path, t, slots, side, &error), error, path, w, h,
           {{viridis_top, slots.empty() ? 0 : 200}, {missing_grey, name == "kernel_shapes.png" ? 300 : 0}});
  };
  // Sizes as plots.hpp lays them out: maps of side x 36 px (3x3, 5x5), ceil(sqrt(n)) per row.
  shapes("kernel_shapes.png", titles, synthetic_slots(3), 3, 568, 614);
  auto five = synthetic_slots(5);
  five.resize(4);
  shapes("kernel_shapes_5x5.png", {titles.begin(), titles.begin() + 4}, five, 5, 568, 596);
  shapes("kernel_shapes_empty.png", {}, {}, 3, 568, 120);
  // Titles wider than the maps widen the picture (by how much depends on the font).
  shapes("kernel_shapes_long_titles.png", {"features.block3.dynamic_similarity_conv", "head.global_similarity"},
         {synthetic_slots(9)[2], synthetic_slots(9)[8]}, 9, -1, 56 + 306 + 72);

  // Runs grouped by variant: the mean, lowest and highest at each epoch, a
  // shorter run, a NaN (left out), a group of one run, an empty group.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<plots::GroupCurve> groups = {
      {"plain (3 runs)", {{80, 88, 90}, {82, 86, 91}, {84, nan}}},
      {"dynamic_dns (1 run)", {{79, 89, 92}}},
      {"none", {}}};
  const std::vector<plots::Series> lines = plots::group_series(groups);
  check(lines.size() == 3, "group_series: one series per group");
  if (lines.size() == 3) {
    const plots::Series& p = lines[0];
    check(p.x == std::vector<double>{1, 2, 3}, "group_series: epochs 1..3 of the longest run");
    check(p.y == std::vector<double>{82, 87, 90.5}, "group_series: the mean of the finite values at each epoch");
    check(p.lo == std::vector<double>{80, 86, 90} && p.hi == std::vector<double>{84, 88, 91},
          "group_series: the band from the lowest to the highest run");
    check(lines[1].y == lines[1].lo && lines[1].y == lines[1].hi, "group_series: one run is its own band");
    check(lines[2].x.empty(), "group_series: a group without runs has no points");
  }
  {
    const std::string path = dir + "/group_curves.png";
    error.clear();
    const unsigned first = 0x0073B3, second = 0xD65E00, first_band = 0xD1E6F1;  // kCategories[0..1]; 18% over white
    verify(plots::write_group_curves(path, "test accuracy (%)", "epoch", groups, true, &error), error, path, 960, 560,
           {{first, 500}, {second, 500}, {first_band, 3000}});
  }

  {
    // Labels too long for one row: the legend takes rows of its own, each
    // swatch inside the picture (one row would put the first off its left).
    const std::string path = dir + "/group_curves_long_labels.png";
    const std::string tail(70, 'x');
    error.clear();
    check(plots::write_group_curves(path, "test accuracy (%)", "epoch",
                                    {{"first-" + tail, {{80, 88, 90}}}, {"second-" + tail, {{79, 89, 92}}}}, true,
                                    &error),
          "write " + path + ": " + error);
    const unsigned first = 0x0073B3, second = 0xD65E00;
    check(pixels_in_rows(path, first, 0, 80) >= 24 && pixels_in_rows(path, second, 0, 80) >= 24,
          path + ": both legend swatches above the plot");
  }

  // Failures are reported, not thrown.
  error.clear();
  check(!plots::write_training_curves(dir + "/no/such/dir/curves.png", synthetic_run(1, 50, 1), &error) &&
            !error.empty(),
        "write_training_curves to a missing directory fails with a reason");
  check(error.find("no/such/dir/curves.png") != std::string::npos, "the reason names the path: " + error);
  std::printf("unwritable path: %s\n", error.c_str());
  error.clear();
  check(!plots::write_kernel_shapes(dir + "/no/such/dir/k.png", titles, synthetic_slots(3), 3, &error) &&
            !error.empty(),
        "write_kernel_shapes to a missing directory fails with a reason");
  error.clear();
  check(!plots::write_kernel_shapes(dir + "/bad.png", titles, synthetic_slots(3), 0, &error) && !error.empty(),
        "write_kernel_shapes with side 0 fails with a reason");
  check(plots::write_training_curves(dir + "/no_error_pointer.png", {}, nullptr), "a null error pointer is allowed");

  if (failures) {
    std::fprintf(stderr, "plots_test: %d check(s) failed\n", failures);
    return 1;
  }
  std::printf("plots_test: all checks passed\n");
  return 0;
}
