#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "nsl/ops/pool.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;

namespace {
// 1 x 1 x 3 x 3 image holding `sign` * (1..9) in row-major order.
Tensor<double> counting_image(double sign) {
  Tensor<double> x(Shape{1, 1, 3, 3});
  for (nsl::index i = 0; i < 9; ++i) x[i] = sign * double(i + 1);
  return x;
}
}  // namespace

TEST_CASE("'same' pooling keeps ceil(H / s) outputs and pads the smaller half before") {
  // 2x2 stride 2: 28 -> 14 (no padding), 7 -> 4 (one row after), 8 -> 4.
  CHECK(nsl::max_pool2d_output_shape("test", Shape{2, 3, 28, 28}, 2, 2) == Shape{2, 3, 14, 14});
  CHECK(nsl::max_pool2d_output_shape("test", Shape{2, 3, 7, 7}, 2, 2) == Shape{2, 3, 4, 4});
  CHECK(nsl::max_pool2d_output_shape("test", Shape{2, 3, 8, 6}, 2, 2) == Shape{2, 3, 4, 3});
  CHECK(nsl::max_pool2d_output_shape("test", Shape{1, 1, 5, 5}, 3, 1) == Shape{1, 1, 5, 5});
  CHECK(nsl::same_pool_padding_before(28, 2, 2) == 0);
  CHECK(nsl::same_pool_padding_before(7, 2, 2) == 0);  // total 1: 0 before, 1 after
  CHECK(nsl::same_pool_padding_before(5, 3, 1) == 1);  // total 2: 1 and 1
  CHECK(nsl::same_pool_padding_before(5, 4, 1) == 1);  // total 3: 1 before, 2 after
  CHECK(nsl::same_pool_padding_before(8, 3, 2) == 0);  // total 1
  CHECK(nsl::same_pool_padding_before(9, 5, 2) == 2);  // total 4
}

TEST_CASE("max pooling is the window maximum and padded cells never win: a hand-computed 3x3 example") {
  // 2x2 stride 2 on 3x3: windows {1,2,4,5}, {3,6}, {7,8}, {9}. With all values
  // negative a zero padding would win the three clipped windows; it must not.
  for (double sign : {1.0, -1.0}) {
    CAPTURE(sign);
    const Tensor<double> x = counting_image(sign);
    Tensor<double> y(Shape{1, 1, 2, 2}), y_ref(Shape{1, 1, 2, 2});
    std::vector<nsl::index> argmax, argmax_ref;
    nsl::max_pool2d_forward<double>(x.view(), 2, 2, y.view(), argmax);
    nsl::max_pool2d_forward_reference<double>(x.view(), 2, 2, y_ref.view(), argmax_ref);
    const std::vector<nsl::index> expected_argmax =
        sign > 0 ? std::vector<nsl::index>{4, 5, 7, 8} : std::vector<nsl::index>{0, 2, 6, 8};
    CHECK(argmax == expected_argmax);
    CHECK(argmax_ref == expected_argmax);
    for (nsl::index j = 0; j < 4; ++j) {
      CHECK(y[j] == x[expected_argmax[std::size_t(j)]]);
      CHECK(y_ref[j] == y[j]);
    }
  }
}

TEST_CASE("ties go to the first maximum in row-major window order") {
  const Tensor<float> x(Shape{1, 1, 4, 4}, 1.0f);
  Tensor<float> y(Shape{1, 1, 2, 2}), y_ref(Shape{1, 1, 2, 2});
  std::vector<nsl::index> argmax, argmax_ref;
  nsl::max_pool2d_forward<float>(x.view(), 2, 2, y.view(), argmax);
  nsl::max_pool2d_forward_reference<float>(x.view(), 2, 2, y_ref.view(), argmax_ref);
  CHECK(argmax == std::vector<nsl::index>{0, 2, 8, 10});
  CHECK(argmax_ref == argmax);
}

TEST_CASE("a NaN in a window wins, so divergence is not hidden by pooling") {
  Tensor<double> x = counting_image(1.0);
  x[1] = std::numeric_limits<double>::quiet_NaN();
  x[3] = std::numeric_limits<double>::quiet_NaN();
  Tensor<double> y(Shape{1, 1, 2, 2}), y_ref(Shape{1, 1, 2, 2});
  std::vector<nsl::index> argmax, argmax_ref;
  nsl::max_pool2d_forward<double>(x.view(), 2, 2, y.view(), argmax);
  nsl::max_pool2d_forward_reference<double>(x.view(), 2, 2, y_ref.view(), argmax_ref);
  CHECK(std::isnan(y[0]));
  CHECK(argmax[0] == 1);  // the first NaN of the window {1, 2, 4, 5}
  CHECK(argmax == argmax_ref);
  CHECK(y[1] == 6.0);
}

TEST_CASE("inference pooling equals the reference on the 2x2 stride-2 shapes of CNN-9, NaN included") {
  // 28 -> 14, 7 -> 4 (the last window row and column clipped to one cell),
  // 8 -> 4; a NaN at an even and at an odd cell of a window, and one in the
  // clipped edge.
  nsl::Rng rng(29);
  for (nsl::index size : {28, 14, 7, 8, 1}) {
    CAPTURE(size);
    auto x = nsl::test::randn<float>(Shape{2, 3, size, size}, rng);
    for (nsl::index i = 0; i < x.size(); ++i) x[i] = std::max(x[i], 0.0f);  // ReLU outputs: ties at zero
    const float nan = std::numeric_limits<float>::quiet_NaN();
    x[0] = nan;
    x[x.size() / 2 + 1] = nan;
    x[x.size() - 1] = nan;
    const Shape out = nsl::max_pool2d_output_shape("test", x.shape(), 2, 2);
    Tensor<float> y(out, 5.0f), y_ref(out, -5.0f);
    std::vector<nsl::index> argmax_ref;
    nsl::max_pool2d_infer<float>(x.view(), 2, 2, y.view());
    nsl::max_pool2d_forward_reference<float>(x.view(), 2, 2, y_ref.view(), argmax_ref);
    for (nsl::index j = 0; j < y.size(); ++j) {
      CAPTURE(j);
      if (std::isnan(y_ref[j])) CHECK(std::isnan(y[j]));
      else CHECK(y[j] == y_ref[j]);
    }
  }
  Tensor<float> x(Shape{1, 1, 4, 4}), y(Shape{1, 1, 3, 2});
  CHECK_THROWS_WITH_AS(nsl::max_pool2d_infer<float>(x.view(), 2, 2, y.view()),
                       "max_pool2d_infer: output: expected [1, 1, 2, 2], got [1, 1, 3, 2]", nsl::ShapeError);
}

TEST_CASE_TEMPLATE("inference 2x2 pooling a register of windows at a time: every width and height, a NaN in every lane", T,
                   float, double) {
  // Widths 1-70 put 0-35 whole windows in a row: none, part of one register
  // of windows (16 with AVX-512, 8 with AVX2), several, and a tail; odd
  // sizes add the clipped last column and row. One NaN per plane, at a
  // cell that moves from plane to plane, so that it falls in every lane.
  nsl::Rng rng(30);
  const T nan = std::numeric_limits<T>::quiet_NaN();
  for (nsl::index w = 1; w <= 70; ++w)
    for (nsl::index h : {1, 2, 3, 6}) {
      CAPTURE(w); CAPTURE(h);
      auto x = nsl::test::randn<T>(Shape{1, 5, h, w}, rng);
      for (nsl::index i = 0; i < x.size(); ++i) x[i] = std::round(x[i]);  // ties
      for (nsl::index c = 1; c < 5; ++c) x[c * h * w + (c * 7 + w) % (h * w)] = nan;
      const Shape out = nsl::max_pool2d_output_shape("test", x.shape(), 2, 2);
      Tensor<T> y(out, T(5)), y_ref(out, T(-5));
      std::vector<nsl::index> argmax_ref;
      nsl::max_pool2d_infer<T>(x.view(), 2, 2, y.view());
      nsl::max_pool2d_forward_reference<T>(x.view(), 2, 2, y_ref.view(), argmax_ref);
      int wrong = 0;
      for (nsl::index j = 0; j < y.size(); ++j)
        wrong += std::isnan(y_ref[j]) ? !std::isnan(y[j]) : !(y[j] == y_ref[j]);
      CHECK(wrong == 0);
    }
}

TEST_CASE("backward sends each output gradient to its winner - overlapping windows add up - dx is assigned") {
  // 3x3 stride 1 on 3x3 (padding 1 each side): the four windows that hold the
  // corner (2, 2) all pick 9; the others pick 5, 6, 6, 8, 8.
  const Tensor<double> x = counting_image(1.0);
  const Tensor<double> dy(Shape{1, 1, 3, 3}, 1.0);
  Tensor<double> y(Shape{1, 1, 3, 3});
  std::vector<nsl::index> argmax;
  nsl::max_pool2d_forward<double>(x.view(), 3, 1, y.view(), argmax);
  Tensor<double> dx(x.shape(), 123.0), dx_ref(x.shape(), -123.0);  // garbage: must be overwritten
  nsl::max_pool2d_backward<double>(argmax, dy.view(), dx.view());
  nsl::max_pool2d_backward_reference<double>(x.view(), 3, 1, dy.view(), dx_ref.view());
  const double expected[9] = {0, 0, 0, 0, 1, 2, 0, 2, 4};
  for (nsl::index i = 0; i < 9; ++i) {
    CAPTURE(i);
    CHECK(dx[i] == expected[i]);
    CHECK(dx_ref[i] == expected[i]);
  }
}

TEST_CASE("the fast max pooling equals the reference loops on random shapes, with and without ties") {
  nsl::Rng rng(17);
  for (int trial = 0; trial < 60; ++trial) {
    const nsl::index n = 1 + nsl::index(rng.below(3)), c = 1 + nsl::index(rng.below(4));
    const nsl::index h = 1 + nsl::index(rng.below(11)), w = 1 + nsl::index(rng.below(11));
    const nsl::index window = 1 + nsl::index(rng.below(4)), stride = 1 + nsl::index(rng.below(3));
    const bool ties = trial % 2 == 1;
    CAPTURE(n); CAPTURE(c); CAPTURE(h); CAPTURE(w); CAPTURE(window); CAPTURE(stride); CAPTURE(ties);
    auto x = nsl::test::randn<float>(Shape{n, c, h, w}, rng);
    if (ties)
      for (nsl::index i = 0; i < x.size(); ++i) x[i] = std::round(x[i]);  // few distinct values
    const Shape out = nsl::max_pool2d_output_shape("test", x.shape(), window, stride);
    Tensor<float> y(out, 5.0f), y_ref(out, -5.0f);
    std::vector<nsl::index> argmax, argmax_ref;
    nsl::max_pool2d_forward<float>(x.view(), window, stride, y.view(), argmax);
    nsl::max_pool2d_forward_reference<float>(x.view(), window, stride, y_ref.view(), argmax_ref);
    CHECK(y.vec() == y_ref.vec());
    CHECK(argmax == argmax_ref);
    Tensor<float> y_infer(out, 9.0f);
    nsl::max_pool2d_infer<float>(x.view(), window, stride, y_infer.view());
    CHECK(y_infer.vec() == y_ref.vec());

    const auto dy = nsl::test::randn<float>(out, rng);
    Tensor<float> dx(x.shape(), 7.0f), dx_ref(x.shape(), -7.0f);
    nsl::max_pool2d_backward<float>(argmax, dy.view(), dx.view());
    nsl::max_pool2d_backward_reference<float>(x.view(), window, stride, dy.view(), dx_ref.view());
    CHECK(nsl::test::max_relative_difference(dx, dx_ref) < 1e-6);
  }
}

TEST_CASE("the argmax buffer is reused: a second forward of the same shape does not reallocate it") {
  nsl::Rng rng(3);
  const auto x = nsl::test::randn<double>(Shape{2, 3, 8, 8}, rng);
  Tensor<double> y(Shape{2, 3, 4, 4});
  std::vector<nsl::index> argmax;
  nsl::max_pool2d_forward<double>(x.view(), 2, 2, y.view(), argmax);
  const nsl::index* before = argmax.data();
  nsl::max_pool2d_forward<double>(x.view(), 2, 2, y.view(), argmax);
  CHECK(argmax.data() == before);
  CHECK(argmax.size() == 2u * 3u * 4u * 4u);
}

TEST_CASE("max pooling rejects bad windows, shapes and argmax buffers with messages naming the op") {
  Tensor<float> x(Shape{1, 1, 4, 4}), y(Shape{1, 1, 2, 2});
  std::vector<nsl::index> argmax;
  CHECK_THROWS_WITH_AS(nsl::max_pool2d_forward<float>(x.view(), 0, 2, y.view(), argmax),
                       "max_pool2d_forward: window must be >= 1, got 0", nsl::ArgumentError);
  CHECK_THROWS_WITH_AS(nsl::max_pool2d_forward<float>(x.view(), 2, 0, y.view(), argmax),
                       "max_pool2d_forward: stride must be >= 1, got 0", nsl::ArgumentError);
  Tensor<float> wrong_y(Shape{1, 1, 3, 3});
  CHECK_THROWS_WITH_AS(nsl::max_pool2d_forward<float>(x.view(), 2, 2, wrong_y.view(), argmax),
                       "max_pool2d_forward: output: expected [1, 1, 2, 2], got [1, 1, 3, 3]",
                       nsl::ShapeError);
  Tensor<float> flat(Shape{4, 4});
  CHECK_THROWS_WITH_AS(nsl::max_pool2d_forward<float>(flat.view(), 2, 2, y.view(), argmax),
                       "max_pool2d_forward: input: expected rank 4, got [4, 4]", nsl::ShapeError);

  nsl::max_pool2d_forward<float>(x.view(), 2, 2, y.view(), argmax);
  Tensor<float> dx(x.shape());
  std::vector<nsl::index> short_argmax(3, 0);
  CHECK_THROWS_WITH_AS(nsl::max_pool2d_backward<float>(short_argmax, y.view(), dx.view()),
                       "max_pool2d_backward: argmax: expected 4 indices (one per output), got 3",
                       nsl::ShapeError);
  std::vector<nsl::index> stray_argmax = argmax;
  stray_argmax[1] = 16;  // past the end of the input
  CHECK_THROWS_WITH_AS(nsl::max_pool2d_backward<float>(stray_argmax, y.view(), dx.view()),
                       doctest::Contains("1 outside"), nsl::ArgumentError);
  Tensor<float> other_batch(Shape{2, 1, 4, 4});
  CHECK_THROWS_AS(nsl::max_pool2d_backward<float>(argmax, y.view(), other_batch.view()),
                  nsl::ShapeError);
}
