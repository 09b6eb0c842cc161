#include <doctest/doctest.h>

#include <utility>
#include <vector>

#include "nsl/check/gradcheck.hpp"
#include "nsl/layers/max_pool2d.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;

namespace {
// A tensor holding 0.1 * a random permutation of 0 .. size-1: distinct values
// 0.1 apart, so no window has a tie and no finite-difference step (1e-4)
// changes a winner.
Tensor<double> distinct_values(const Shape& shape, nsl::Rng& rng) {
  Tensor<double> x(shape);
  std::vector<double> values(static_cast<std::size_t>(x.size()));
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = 0.1 * double(i);
  for (std::size_t i = values.size(); i > 1; --i) std::swap(values[i - 1], values[rng.below(i)]);
  for (nsl::index i = 0; i < x.size(); ++i) x[i] = values[std::size_t(i)] - 0.05 * double(x.size());
  return x;
}
}  // namespace

TEST_CASE("MaxPool2d passes gradcheck on tie-free inputs: 2x2/2 on 7x7 and 8x8, 3x3/1 and 3x3/2 overlapping") {
  nsl::Rng rng(13);
  struct Case { Shape input; nsl::index window, stride; };
  for (const Case& c : {Case{Shape{2, 3, 7, 7}, 2, 2}, Case{Shape{1, 2, 8, 8}, 2, 2},
                        Case{Shape{2, 2, 5, 6}, 3, 1}, Case{Shape{1, 3, 7, 5}, 3, 2}}) {
    CAPTURE(c.input.str()); CAPTURE(c.window); CAPTURE(c.stride);
    nsl::MaxPool2d<double> pool(c.window, c.stride);
    const auto x = distinct_values(c.input, rng);
    const auto report = nsl::gradcheck(pool, x);
    CAPTURE(report.str());
    CHECK(report.worst_error < 1e-6);
    CHECK(report.tensors.size() == 1u);  // the input only: no parameters
  }
}

TEST_CASE("MaxPool2d defaults to 2x2 stride 2 'same': 7 -> 4, 28 -> 14, 8 -> 4, and CNN-9's 32 -> 16 -> 8 -> 4") {
  nsl::MaxPool2d<float> pool;
  CHECK(pool.window() == 2);
  CHECK(pool.stride() == 2);
  CHECK(pool.describe() == "MaxPool2d(2x2, s=2, same)");
  CHECK(pool.parameters().empty());
  CHECK(pool.output_shape(Shape{4, 32, 7, 7}) == Shape{4, 32, 4, 4});
  CHECK(pool.output_shape(Shape{4, 32, 28, 28}) == Shape{4, 32, 14, 14});
  CHECK(pool.output_shape(Shape{4, 32, 8, 8}) == Shape{4, 32, 4, 4});
  Shape s{1, 3, 32, 32};
  for (nsl::index expected : {16, 8, 4}) {
    s = pool.output_shape(s);
    CHECK(s[2] == expected);
  }
  s = Shape{1, 1, 28, 28};
  for (nsl::index expected : {14, 7, 4}) {
    s = pool.output_shape(s);
    CHECK(s[2] == expected);
  }
}

TEST_CASE("MaxPool2d's forward and backward equal the reference loops, ties included") {
  nsl::Rng rng(29);
  auto x = nsl::test::randn<float>(Shape{3, 4, 9, 7}, rng);
  for (nsl::index i = 0; i < x.size(); i += 3) x[i] = 0.5f;  // plenty of ties
  nsl::MaxPool2d<float> pool(3, 2);
  const Tensor<float> y = pool.forward(x);
  Tensor<float> y_ref(y.shape());
  std::vector<nsl::index> argmax_ref;
  nsl::max_pool2d_forward_reference<float>(x.view(), 3, 2, y_ref.view(), argmax_ref);
  CHECK(y.vec() == y_ref.vec());
  CHECK(pool.argmax() == argmax_ref);

  const auto dy = nsl::test::randn<float>(y.shape(), rng);
  const Tensor<float> dx = pool.backward(dy);
  Tensor<float> dx_ref(x.shape());
  nsl::max_pool2d_backward_reference<float>(x.view(), 3, 2, dy.view(), dx_ref.view());
  CHECK(nsl::test::max_relative_difference(dx, dx_ref) < 1e-6);
}

TEST_CASE("MaxPool2d's const inference equals its training forward") {
  nsl::Rng rng(2);
  const auto x = nsl::test::randn<float>(Shape{2, 5, 11, 11}, rng);
  nsl::MaxPool2d<float> pool;
  const Tensor<float> y = pool.forward(x);
  Tensor<float> y_infer(y.shape());
  std::vector<nsl::index> scratch;
  pool.infer(x.view(), y_infer.view(), scratch);
  CHECK(y_infer.vec() == y.vec());
}

TEST_CASE("MaxPool2d keeps the backward contract: an empty dx is skipped, wrong shapes and order are errors") {
  CHECK_THROWS_WITH_AS(nsl::MaxPool2d<float>(0, 2), "MaxPool2d: window must be >= 1, got 0",
                       nsl::ArgumentError);
  CHECK_THROWS_WITH_AS(nsl::MaxPool2d<float>(2, 0), "MaxPool2d: stride must be >= 1, got 0",
                       nsl::ArgumentError);
  nsl::MaxPool2d<float> pool;
  CHECK_THROWS_WITH_AS(pool.backward(Tensor<float>(Shape{1, 1, 2, 2})),
                       doctest::Contains("backward called before forward"), nsl::StateError);
  CHECK_THROWS_WITH_AS(pool.forward(Tensor<float>(Shape{3, 4})),
                       "MaxPool2d: input: expected rank 4, got [3, 4]", nsl::ShapeError);
  pool.forward(Tensor<float>(Shape{1, 2, 5, 5}));
  CHECK_THROWS_WITH_AS(pool.backward(Tensor<float>(Shape{1, 2, 2, 2})),
                       "MaxPool2d::backward: output gradient: expected [1, 2, 3, 3], got [1, 2, 2, 2]",
                       nsl::ShapeError);
  CHECK_NOTHROW(pool.backward_into(Tensor<float>(Shape{1, 2, 3, 3}).view(), {}));
}
