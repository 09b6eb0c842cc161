// plots_test — draws the training program's pictures from synthetic data,
// writes them with write_png into the directory argv[1], reads every file
// back with libpng and compares size and pixels. Exit 0 on success.
//
//   plots_test OUT_DIR
#include <png.h>

#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <string>
#include <system_error>
#include <vector>

#include "plots.hpp"

namespace {

namespace plots = nsl::plots;

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++failures;
  }
}

// Reads an 8-bit RGB PNG (as write_png writes it) into `out`.
bool read_png_rgb(const std::string& path, plots::Image& out) {
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  if (!fp) return false;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) {
    png_destroy_read_struct(&png, &info, nullptr);
    std::fclose(fp);
    return false;
  }
  // Allocated before setjmp so that a longjmp leaves no live C++ object behind.
  std::vector<png_bytep> rows;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    std::fclose(fp);
    return false;
  }
  png_init_io(png, fp);
  png_read_info(png, info);
  const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  const bool rgb8 = png_get_bit_depth(png, info) == 8 && png_get_color_type(png, info) == PNG_COLOR_TYPE_RGB;
  if (rgb8 && w > 0 && h > 0 && w < 100000 && h < 100000) {
    out = plots::Image(static_cast<int>(w), static_cast<int>(h));
    rows.resize(h);
    for (png_uint_32 y = 0; y < h; ++y) rows[y] = out.rgb.data() + static_cast<std::size_t>(y) * w * 3;
    png_read_image(png, rows.data());
    png_read_end(png, nullptr);
  }
  png_destroy_read_struct(&png, &info, nullptr);
  std::fclose(fp);
  return rgb8;
}

void write_and_verify(const plots::Image& img, const std::string& path) {
  std::string error;
  const bool written = plots::write_png(path, img, &error);
  check(written, "write " + path + ": " + error);
  if (!written) return;
  check(!std::filesystem::exists(path + ".tmp"), "temporary file left behind for " + path);
  plots::Image back;
  const bool read = read_png_rgb(path, back);
  check(read, "read back " + path);
  if (!read) return;
  check(back.width == img.width && back.height == img.height, "size of " + path);
  check(back.rgb == img.rgb, "pixels of " + path);
  std::printf("%s: %d x %d\n", path.c_str(), img.width, img.height);
}

// Nine synthetic k x k shapes: a cross, an X, a blob, a ring, ... and one all
// zero and one with a NaN, to exercise the edge cases.
std::vector<std::vector<float>> synthetic_slots(int k) {
  std::vector<std::vector<float>> slots;
  const float c = (k - 1) / 2.0f;
  for (int layer = 0; layer < 9; ++layer) {
    std::vector<float> v(static_cast<std::size_t>(k * k));
    for (int r = 0; r < k; ++r)
      for (int q = 0; q < k; ++q) {
        const float dy = r - c, dx = q - c, d2 = dx * dx + dy * dy;
        float m = 0.0f;
        switch (layer) {
          case 0: m = (r == k / 2 || q == k / 2) ? 1.0f : 0.05f; break;              // '+'
          case 1: m = (r == q || r + q == k - 1) ? 0.8f : 0.0f; break;               // 'X'
          case 2: m = std::exp(-d2 / 1.5f); break;                                   // blob
          case 3: m = -0.3f + 0.1f * static_cast<float>(r * k + q); break;           // signed ramp
          case 4: m = d2 > 0.5f ? 2.0f : 0.2f; break;                                // ring
          case 5: m = 0.0f; break;                                                   // all zero
          case 6: m = (r * k + q == 4) ? std::numeric_limits<float>::quiet_NaN() : 1e-3f * (q + 1); break;
          case 7: m = static_cast<float>((r * 7 + q * 3) % 5) / 4.0f; break;         // pattern
          default: m = 1.0f - 0.2f * std::sqrt(d2); break;                           // cone
        }
        v[static_cast<std::size_t>(r * k + q)] = m;
      }
    slots.push_back(v);
  }
  return slots;
}

}  // namespace

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

  // Canvas clipping: nothing may land outside (ASan would notice).
  {
    plots::Image img(10, 8);
    img.set(-1, 0, 1, 2, 3);
    img.set(10, 8, 1, 2, 3);
    img.rect(-5, -5, 100, 100, 9, 9, 9);
    img.line(-1000000000, 3, 1000000000, 4, 200, 0, 0, 5);
    img.line(-50, -50, -10, -10, 0, 200, 0, 3);  // entirely outside: no-op
    img.frame(-2, -2, 14, 12, 0, 0, 200, 4);
    check(img.get(0, 0).b == 200 && img.get(5, 4).r == 200, "clipped drawing");
    plots::text(img, -20, -3, "Clip me <#>", 3, 0, 0, 0);
    check(plots::text_width("ab", 2) == 22, "text_width");
    check(&plots::glyph('~') == &plots::kUnknownGlyph, "unknown glyph");
    const std::string charset =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz .,:%-_()/=+<>#|";
    for (char ch : charset) check(&plots::glyph(ch) != &plots::kUnknownGlyph, std::string("glyph ") + ch);
  }

  // Font specimen: every glyph at scales 1, 2 and 3, and the unknown box.
  {
    const std::string lines[] = {"0123456789 .,:%-_()/=+<>#| ~", "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                                 "abcdefghijklmnopqrstuvwxyz"};
    plots::Image img(560, 230);
    int y = 8;
    for (int scale = 1; scale <= 3; ++scale)
      for (const std::string& l : lines) {
        if (scale == 3 && l[0] == 'A') continue;
        plots::text(img, 8, y, l, scale, 20, 20, 20);
        y += plots::text_height(scale) + 2 * scale + 2;
      }
    write_and_verify(img, dir + "/font.png");
  }

  // write_png reports failure instead of throwing.
  {
    std::string error;
    check(!plots::write_png(dir + "/no/such/dir/x.png", plots::Image(4, 4), &error) && !error.empty(),
          "write_png to a missing directory fails with a reason");
    check(!plots::write_png(dir + "/empty.png", plots::Image(), &error), "write_png of an empty image fails");
  }

  // Figure 1: the nine similarity layers of a 3-stage network, 3x3 kernels.
  std::vector<std::string> titles;
  for (int s = 1; s <= 3; ++s)
    for (int c = 1; c <= 3; ++c) titles.push_back("stage" + std::to_string(s) + ".conv" + std::to_string(c));
  write_and_verify(plots::kernel_shape_grid(titles, synthetic_slots(3), 3), dir + "/kernel_shapes.png");
  // 5x5 kernels, and a partial last row.
  {
    auto slots = synthetic_slots(5);
    slots.resize(4);
    std::vector<std::string> t(titles.begin(), titles.begin() + 4);
    write_and_verify(plots::kernel_shape_grid(t, slots, 5), dir + "/kernel_shapes_5x5.png");
  }
  write_and_verify(plots::kernel_shape_grid({}, {}, 3), dir + "/kernel_shapes_empty.png");

  // Figure 2: 30 epochs; the test pass runs every other epoch only.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> train_loss, test_loss, train_acc, test_acc;
  for (int e = 1; e <= 30; ++e) {
    const double t = e;
    train_loss.push_back(2.3 * std::exp(-t / 6.0) + 0.15 + 0.02 * std::sin(t));
    train_acc.push_back(100.0 - 88.0 * std::exp(-t / 5.0) - 2.0);
    test_loss.push_back(e % 2 == 0 ? 2.3 * std::exp(-t / 7.0) + 0.3 : nan);
    test_acc.push_back(e % 2 == 0 ? 100.0 - 88.0 * std::exp(-t / 6.0) - 8.0 : nan);
  }
  write_and_verify(plots::training_curves(train_loss, test_loss, train_acc, test_acc),
                   dir + "/training_curves.png");
  // One epoch, and no test metrics at all.
  write_and_verify(plots::training_curves({1.7}, {1.9}, {38.5}, {35.0}), dir + "/training_curves_1epoch.png");
  write_and_verify(plots::training_curves(train_loss, {}, train_acc, std::vector<double>(30, nan)),
                   dir + "/training_curves_no_test.png");
  // Long run (many epochs, no markers) and nothing at all.
  {
    std::vector<double> a, b, c, d;
    for (int e = 1; e <= 200; ++e) {
      a.push_back(1.0 / std::sqrt(e));
      b.push_back(1.1 / std::sqrt(e) + 0.05);
      c.push_back(50.0 + 49.0 * (1.0 - 1.0 / std::sqrt(e)));
      d.push_back(48.0 + 45.0 * (1.0 - 1.0 / std::sqrt(e)));
    }
    write_and_verify(plots::training_curves(a, b, c, d), dir + "/training_curves_200.png");
  }
  write_and_verify(plots::training_curves({}, {}, {}, {}), dir + "/training_curves_empty.png");

  if (failures) {
    std::fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  std::printf("plots_test: all checks passed\n");
  return 0;
}
