// Tests of nsl/data/augment.hpp: numpy-style reflect padding checked by hand,
// random crops that are always a window (or its mirror) of the padded image,
// flips that can be switched off, determinism for a seed, and the shuffling
// and batch gathering used by the training loops.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "nsl/data/augment.hpp"

namespace {

using nsl::Shape;
using nsl::Tensor;

/// A batch whose every element is different: value = its C-order position.
Tensor<float> ramp_batch(const Shape& shape) {
  Tensor<float> t(shape);
  for (nsl::index i = 0; i < t.size(); ++i) t[i] = float(i);
  return t;
}

/// True if image `n` of `crop` equals the H x W window of image `n` of
/// `padded` at (oy, ox), mirrored left-right if `mirror`.
bool is_window(const Tensor<float>& crop, const Tensor<float>& padded, nsl::index n, nsl::index oy,
               nsl::index ox, bool mirror) {
  const nsl::index c = crop.dim(1), h = crop.dim(2), w = crop.dim(3);
  for (nsl::index ch = 0; ch < c; ++ch)
    for (nsl::index y = 0; y < h; ++y)
      for (nsl::index x = 0; x < w; ++x)
        if (crop(n, ch, y, x) != padded(n, ch, oy + y, ox + (mirror ? w - 1 - x : x))) return false;
  return true;
}

/// The windows of image n that `crop` matches, as (oy, ox, mirror) triples
/// packed into ints oy*1000 + ox*10 + mirror.
std::vector<int> matching_windows(const Tensor<float>& crop, const Tensor<float>& padded,
                                  nsl::index n, nsl::index pad) {
  std::vector<int> found;
  for (nsl::index oy = 0; oy <= 2 * pad; ++oy)
    for (nsl::index ox = 0; ox <= 2 * pad; ++ox)
      for (int mirror = 0; mirror < 2; ++mirror)
        if (is_window(crop, padded, n, oy, ox, mirror == 1))
          found.push_back(int(oy) * 1000 + int(ox) * 10 + mirror);
  return found;
}

bool same(const Tensor<float>& a, const Tensor<float>& b) {
  return a.shape() == b.shape() && std::equal(a.data(), a.data() + a.size(), b.data());
}

}  // namespace

TEST_CASE("reflect_pad mirrors without repeating the edge like numpy reflect") {
  SUBCASE("one row [a b c d] with pad 2") {
    // A 3 x 4 image whose rows are [1 2 3 4], [5 6 7 8], [9 10 11 12].
    Tensor<float> image = ramp_batch(Shape{1, 1, 3, 4});
    for (nsl::index i = 0; i < image.size(); ++i) image[i] += 1.0f;
    const Tensor<float> p = nsl::reflect_pad(image, 2);
    REQUIRE(p.shape() == Shape{1, 1, 7, 8});
    // np.pad(np.arange(1, 13).reshape(3, 4), 2, mode='reflect')
    const float want[7][8] = {{11, 10, 9, 10, 11, 12, 11, 10}, {7, 6, 5, 6, 7, 8, 7, 6},
                              {3, 2, 1, 2, 3, 4, 3, 2},        {7, 6, 5, 6, 7, 8, 7, 6},
                              {11, 10, 9, 10, 11, 12, 11, 10}, {7, 6, 5, 6, 7, 8, 7, 6},
                              {3, 2, 1, 2, 3, 4, 3, 2}};
    for (int y = 0; y < 7; ++y)
      for (int x = 0; x < 8; ++x) {
        CAPTURE(y);
        CAPTURE(x);
        CHECK(p(0, 0, y, x) == want[y][x]);
      }
  }
  SUBCASE("pad 0 copies and every image and channel is padded on its own") {
    const Tensor<float> b = ramp_batch(Shape{2, 3, 4, 5});
    CHECK(same(nsl::reflect_pad(b, 0), b));
    const Tensor<float> p = nsl::reflect_pad(b, 1);
    REQUIRE(p.shape() == Shape{2, 3, 6, 7});
    for (nsl::index n = 0; n < 2; ++n)
      for (nsl::index c = 0; c < 3; ++c) {
        CHECK(p(n, c, 0, 0) == b(n, c, 1, 1));  // corner: reflected in both directions
        CHECK(p(n, c, 5, 6) == b(n, c, 2, 3));
        CHECK(p(n, c, 3, 3) == b(n, c, 2, 2));  // interior: shifted by the pad
      }
  }
  SUBCASE("into a reused output") {
    const Tensor<float> b = ramp_batch(Shape{1, 1, 4, 4});
    Tensor<float> out(Shape{1, 1, 8, 8});
    const float* storage = out.data();
    nsl::reflect_pad(b, 2, out);
    CHECK(out.data() == storage);
    CHECK(same(out, nsl::reflect_pad(b, 2)));
  }
  SUBCASE("a pad that does not fit or a wrong rank is an error") {
    const Tensor<float> b = ramp_batch(Shape{1, 1, 4, 5});
    CHECK_NOTHROW(nsl::reflect_pad(b, 3));
    CHECK_THROWS_WITH_AS(nsl::reflect_pad(b, 4), doctest::Contains("pad 4 needs images larger"),
                         nsl::ArgumentError);
    CHECK_THROWS_AS(nsl::reflect_pad(b, -1), nsl::ArgumentError);
    CHECK_THROWS_AS(nsl::reflect_pad(ramp_batch(Shape{4, 5}), 1), nsl::ShapeError);
  }
}

TEST_CASE("random_crop_flip with pad 0 and flips off is the identity") {
  const Tensor<float> b = ramp_batch(Shape{5, 3, 6, 7});
  nsl::Rng rng(1);
  Tensor<float> out;
  nsl::random_crop_flip(b, 0, false, rng, out);
  CHECK(same(out, b));
}

TEST_CASE("every crop is a window of the padded image and mirrors only with flip on") {
  const nsl::index pad = 4;
  const Tensor<float> b = ramp_batch(Shape{64, 3, 32, 32});
  const Tensor<float> padded = nsl::reflect_pad(b, pad);
  Tensor<float> out;

  SUBCASE("flip off: a plain window every time, with every offset in range seen") {
    nsl::Rng rng(11);
    std::vector<int> rows(2 * pad + 1, 0), cols(2 * pad + 1, 0);
    for (int round = 0; round < 4; ++round) {
      nsl::random_crop_flip(b, pad, false, rng, out);
      REQUIRE(out.shape() == b.shape());
      for (nsl::index n = 0; n < b.dim(0); ++n) {
        const std::vector<int> w = matching_windows(out, padded, n, pad);
        // All elements differ, so exactly one window matches.
        REQUIRE(w.size() == 1);
        CHECK(w[0] % 10 == 0);  // never mirrored
        ++rows[std::size_t(w[0] / 1000)];
        ++cols[std::size_t(w[0] / 10 % 100)];
      }
    }
    for (int k = 0; k <= 2 * pad; ++k) {
      CHECK(rows[std::size_t(k)] > 0);
      CHECK(cols[std::size_t(k)] > 0);
    }
  }
  SUBCASE("flip on: a window or its mirror, both seen") {
    nsl::Rng rng(12);
    int mirrored = 0;
    nsl::random_crop_flip(b, pad, true, rng, out);
    for (nsl::index n = 0; n < b.dim(0); ++n) {
      const std::vector<int> w = matching_windows(out, padded, n, pad);
      REQUIRE(w.size() == 1);
      mirrored += w[0] % 10;
    }
    CHECK(mirrored > 10);  // about 32 of 64
    CHECK(mirrored < 54);
  }
  SUBCASE("the draws follow the documented order") {
    nsl::Rng rng(13), replay(13);
    nsl::random_crop_flip(b, pad, true, rng, out);
    for (nsl::index n = 0; n < b.dim(0); ++n) {
      const nsl::index oy = nsl::index(replay.below(2 * pad + 1));
      const nsl::index ox = nsl::index(replay.below(2 * pad + 1));
      const bool mirror = replay.below(2) == 1;
      CHECK(is_window(out, padded, n, oy, ox, mirror));
    }
    CHECK(rng.bits() == replay.bits());  // both consumed the same draws
  }
}

TEST_CASE("random_crop_flip repeats for a seed and differs between seeds") {
  const Tensor<float> b = ramp_batch(Shape{16, 3, 8, 8});
  Tensor<float> first, second, other;
  nsl::Rng a(42), again(42), different(43);
  nsl::random_crop_flip(b, 2, true, a, first);
  nsl::random_crop_flip(b, 2, true, again, second);
  nsl::random_crop_flip(b, 2, true, different, other);
  CHECK(same(first, second));
  CHECK_FALSE(same(first, other));
  // The next batch from the same stream differs from the first.
  nsl::random_crop_flip(b, 2, true, a, second);
  CHECK_FALSE(same(first, second));
}

TEST_CASE("random_crop_flip checks its arguments") {
  Tensor<float> b = ramp_batch(Shape{2, 1, 4, 4});
  nsl::Rng rng(3);
  Tensor<float> out;
  CHECK_THROWS_AS(nsl::random_crop_flip(b, 4, true, rng, out), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::random_crop_flip(b, -1, true, rng, out), nsl::ArgumentError);
  CHECK_THROWS_WITH_AS(nsl::random_crop_flip(b, 1, true, rng, b),
                       doctest::Contains("must not share storage"), nsl::ArgumentError);
  Tensor<float> reused(Shape{2, 1, 4, 4});
  const float* storage = reused.data();
  nsl::random_crop_flip(b, 1, true, rng, reused);
  CHECK(reused.data() == storage);
}

TEST_CASE("shuffled_indices is a permutation fixed by the seed") {
  nsl::Rng a(5), again(5), other(6);
  const std::vector<nsl::index> p = nsl::shuffled_indices(1000, a);
  REQUIRE(p.size() == 1000);
  std::vector<nsl::index> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (nsl::index i = 0; i < 1000; ++i) REQUIRE(sorted[std::size_t(i)] == i);
  CHECK(p == nsl::shuffled_indices(1000, again));
  CHECK(p != nsl::shuffled_indices(1000, other));
  CHECK(p != nsl::shuffled_indices(1000, a));  // the next epoch differs
  nsl::index fixed = 0;
  for (nsl::index i = 0; i < 1000; ++i) fixed += p[std::size_t(i)] == i ? 1 : 0;
  CHECK(fixed < 10);  // about 1 expected

  CHECK(nsl::shuffled_indices(0, a).empty());
  CHECK(nsl::shuffled_indices(1, a) == std::vector<nsl::index>{0});
  CHECK_THROWS_AS(nsl::shuffled_indices(-1, a), nsl::ArgumentError);
}

TEST_CASE("gather_batch copies the images and labels of the given order") {
  nsl::Dataset d;
  d.images = ramp_batch(Shape{6, 2, 3, 3});
  d.labels = {10, 11, 12, 13, 14, 15};
  d.classes = 16;
  const std::vector<nsl::index> order = {4, 0, 5, 2, 1, 3};
  const nsl::index per = 2 * 3 * 3;

  Tensor<float> images;
  std::vector<int> labels;
  nsl::gather_batch(d, order, 1, 3, images, labels);
  REQUIRE(images.shape() == Shape{3, 2, 3, 3});
  CHECK(labels == std::vector<int>{10, 15, 12});
  const nsl::index want[3] = {0, 5, 2};
  for (nsl::index k = 0; k < 3; ++k)
    for (nsl::index i = 0; i < per; ++i)
      REQUIRE(images[k * per + i] == d.images[want[k] * per + i]);

  SUBCASE("a reused output of the same shape keeps its storage") {
    const float* storage = images.data();
    nsl::gather_batch(d, order, 3, 3, images, labels);
    CHECK(images.data() == storage);
    CHECK(labels == std::vector<int>{12, 11, 13});
    CHECK(images[0] == d.images[2 * per]);
  }
  SUBCASE("a short last batch and an empty one") {
    nsl::gather_batch(d, order, 5, 1, images, labels);
    CHECK(images.shape() == Shape{1, 2, 3, 3});
    CHECK(labels == std::vector<int>{13});
    nsl::gather_batch(d, order, 6, 0, images, labels);
    CHECK(images.shape() == Shape{0, 2, 3, 3});
    CHECK(labels.empty());
  }
  SUBCASE("out-of-range batches and indices are errors") {
    CHECK_THROWS_WITH_AS(nsl::gather_batch(d, order, 4, 3, images, labels),
                         doctest::Contains("is not inside the order of 6 indices"),
                         nsl::ArgumentError);
    CHECK_THROWS_AS(nsl::gather_batch(d, order, -1, 2, images, labels), nsl::ArgumentError);
    CHECK_THROWS_AS(nsl::gather_batch(d, order, 0, -1, images, labels), nsl::ArgumentError);
    const std::vector<nsl::index> bad = {0, 6};
    CHECK_THROWS_WITH_AS(nsl::gather_batch(d, bad, 0, 2, images, labels),
                         doctest::Contains("order[1] = 6 is not an image index"),
                         nsl::ArgumentError);
    CHECK(images.shape() == Shape{3, 2, 3, 3});  // untouched by the failed call
    CHECK(labels == std::vector<int>{10, 15, 12});
    d.labels.pop_back();
    CHECK_THROWS_WITH_AS(nsl::gather_batch(d, order, 0, 1, images, labels),
                         doctest::Contains("6 images but 5 labels"), nsl::ArgumentError);
  }
}
