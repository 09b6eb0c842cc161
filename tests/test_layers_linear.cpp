#include <doctest/doctest.h>

#include "nsl/check/gradcheck.hpp"
#include "nsl/layers/linear.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;

TEST_CASE("Linear passes gradcheck with and without bias, on N x F and on N x C x H x W inputs") {
  nsl::Rng rng(31);
  for (bool bias : {true, false}) {
    nsl::Linear<double> fc(12, 5, bias, rng);
    if (bias) nsl::fill_normal<double>(fc.bias().view(), rng);
    auto report = nsl::gradcheck(fc, nsl::test::randn<double>(Shape{4, 12}, rng));
    CAPTURE(report.str());
    CHECK(report.worst_error < 1e-6);
    report = nsl::gradcheck(fc, nsl::test::randn<double>(Shape{3, 3, 2, 2}, rng));
    CAPTURE(report.str());
    CHECK(report.worst_error < 1e-6);
  }
}

TEST_CASE("Linear reads a 4-D input as N x (C*H*W) and returns dx in the input's shape") {
  nsl::Rng rng(3);
  nsl::Linear<float> fc(12, 5, true, rng);
  CHECK(fc.output_shape(Shape{7, 3, 2, 2}) == Shape{7, 5});
  auto x = nsl::test::randn<float>(Shape{7, 3, 2, 2}, rng);
  fc.forward(x);
  CHECK(fc.backward(Tensor<float>(Shape{7, 5}, 1.0f)).shape() == x.shape());
  CHECK_THROWS_AS(fc.forward(Tensor<float>(Shape{7, 11})), nsl::ShapeError);
  CHECK_THROWS_AS(nsl::Linear<float>(0, 5), nsl::ArgumentError);
}
