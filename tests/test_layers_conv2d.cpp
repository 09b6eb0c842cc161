#include <doctest/doctest.h>

#include "nsl/check/gradcheck.hpp"
#include "nsl/layers/conv2d.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;

TEST_CASE("Conv2d passes gradcheck for k = 1, 3, 5, stride 1 and 2, padding 0 and k/2, C_in != C_out") {
  nsl::Rng rng(21);
  for (nsl::index k : {1, 3, 5})
    for (nsl::index stride : {1, 2})
      for (nsl::index padding : {nsl::index(0), k / 2})
        for (bool bias : {true, false}) {
          CAPTURE(k); CAPTURE(stride); CAPTURE(padding); CAPTURE(bias);
          nsl::Conv2d<double> conv(2, 3, k, {stride, padding, bias}, rng);
          if (bias) nsl::fill_normal<double>(conv.bias().view(), rng);
          auto x = nsl::test::randn<double>(Shape{3, 2, 7, 6}, rng);
          const auto report = nsl::gradcheck(conv, x);
          CAPTURE(report.str());
          CHECK(report.worst_error < 1e-6);
          CHECK(report.tensors.size() == (bias ? 3u : 2u));
        }
}

TEST_CASE("Conv2d's output shape follows (H + 2p - k) / s + 1 and backward keeps the contract") {
  nsl::Rng rng(1);
  nsl::Conv2d<float> conv(3, 8, 3, {2, 1, true}, rng);
  CHECK(conv.output_shape(Shape{4, 3, 28, 28}) == Shape{4, 8, 14, 14});
  CHECK(conv.describe() == "Conv2d(3->8, k=3, s=2, p=1)");
  CHECK(conv.parameters().size() == 2);
  CHECK(conv.parameters()[0].weight_decay);
  CHECK_FALSE(conv.parameters()[1].weight_decay);
  auto x = nsl::test::randn<float>(Shape{4, 3, 28, 28}, rng);
  auto dy = nsl::test::randn<float>(Shape{4, 8, 14, 14}, rng);
  conv.forward(x);
  conv.backward(dy);
  const Tensor<float> once = conv.weight_grad();
  conv.backward(dy);  // parameter gradients accumulate
  Tensor<float> twice = once;
  twice.vec() *= 2.0f;
  CHECK(nsl::test::max_relative_difference(conv.weight_grad(), twice) < 1e-6);
}

TEST_CASE("Conv2d rejects bad arguments and calls out of order") {
  CHECK_THROWS_AS(nsl::Conv2d<float>(0, 3, 3), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::Conv2d<float>(3, 3, 0), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::Conv2d<float>(3, 3, 3, {0, 1, true}), nsl::ArgumentError);
  nsl::Conv2d<float> conv(3, 4, 3, {1, 1, true});
  CHECK_THROWS_WITH_AS(conv.backward(Tensor<float>(Shape{1, 4, 5, 5})),
                       doctest::Contains("backward called before forward"), nsl::StateError);
  CHECK_THROWS_WITH_AS(conv.forward(Tensor<float>(Shape{1, 2, 5, 5})),
                       "Conv2d: weight: expected [4, 2, 3, 3] for an input of 2 channels, got [4, 3, 3, 3]",
                       nsl::ShapeError);
  conv.forward(Tensor<float>(Shape{1, 3, 5, 5}));
  CHECK_THROWS_WITH_AS(conv.backward(Tensor<float>(Shape{1, 4, 4, 5})),
                       "Conv2d::backward: output gradient: expected [1, 4, 5, 5], got [1, 4, 4, 5]",
                       nsl::ShapeError);
}

TEST_CASE("Conv2d's const inference equals its training forward") {
  nsl::Rng rng(9);
  nsl::Conv2d<float> conv(3, 5, 3, {1, 1, true}, rng);
  auto x = nsl::test::randn<float>(Shape{2, 3, 9, 9}, rng);
  const Tensor<float> y = conv.forward(x);
  Tensor<float> y_infer(y.shape());
  nsl::Conv2dWorkspace<float> ws;
  conv.infer(x.view(), y_infer.view(), ws);
  CHECK(y_infer.vec() == y.vec());
}

TEST_CASE("the same seed gives the same initial weights") {
  nsl::Rng a(5), b(5);
  nsl::Conv2d<float> c1(3, 4, 3, {}, a), c2(3, 4, 3, {}, b);
  CHECK(c1.weight().vec() == c2.weight().vec());
}
