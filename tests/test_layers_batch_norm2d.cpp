#include <doctest/doctest.h>

#include "nsl/check/gradcheck.hpp"
#include "nsl/layers/batch_norm2d.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;

TEST_CASE("BatchNorm2d passes gradcheck in training mode (batch statistics) and in evaluation mode") {
  nsl::Rng rng(400);
  for (bool training : {true, false}) {
    CAPTURE(training);
    nsl::BatchNorm2d<double> bn(3);
    nsl::fill_normal<double>(bn.gamma().view(), rng, 1.0, 0.5);
    nsl::fill_normal<double>(bn.beta().view(), rng);
    nsl::fill_uniform<double>(bn.running_variance().view(), rng, 0.5, 2.0);
    nsl::fill_normal<double>(bn.running_mean().view(), rng);
    bn.set_training(training);
    const auto report = nsl::gradcheck(bn, nsl::test::randn<double>(Shape{4, 3, 3, 2}, rng));
    CAPTURE(report.str());
    CHECK(report.worst_error < 1e-6);
  }
}

TEST_CASE("in training mode each channel comes out with mean beta and standard deviation gamma") {
  nsl::Rng rng(401);
  nsl::BatchNorm2d<double> bn(2, {1e-8, 0.9});
  bn.gamma()[0] = 2.0;
  bn.beta()[1] = -1.0;
  auto x = nsl::random_normal<double>(Shape{8, 2, 5, 5}, rng, 3.0, 4.0);
  const Tensor<double> y = bn.forward(x);
  for (nsl::index c = 0; c < 2; ++c) {
    double sum = 0, squares = 0;
    for (nsl::index n = 0; n < 8; ++n)
      for (nsl::index p = 0; p < 25; ++p) sum += y[(n * 2 + c) * 25 + p];
    const double mean = sum / 200;
    for (nsl::index n = 0; n < 8; ++n)
      for (nsl::index p = 0; p < 25; ++p) squares += std::pow(y[(n * 2 + c) * 25 + p] - mean, 2);
    CHECK(mean == doctest::Approx(c == 0 ? 0.0 : -1.0).epsilon(1e-9));
    CHECK(std::sqrt(squares / 200) == doctest::Approx(c == 0 ? 2.0 : 1.0).epsilon(1e-6));
  }
}

TEST_CASE("running statistics are an EMA of the batch statistics, and evaluation mode uses them") {
  nsl::Rng rng(402);
  nsl::BatchNorm2d<double> bn(1, {1e-3, 0.9});
  auto x = nsl::random_normal<double>(Shape{4, 1, 2, 2}, rng, 5.0, 2.0);
  bn.forward(x);
  const double mean = x.vec().mean();
  const double unbiased = (x.vec().array() - mean).square().sum() / 15.0;
  CHECK(bn.running_mean()[0] == doctest::Approx(0.1 * mean));
  CHECK(bn.running_variance()[0] == doctest::Approx(0.9 + 0.1 * unbiased));
  bn.set_training(false);
  const Tensor<double> y = bn.forward(x);
  CHECK(y[3] == doctest::Approx((x[3] - bn.running_mean()[0]) / std::sqrt(bn.running_variance()[0] + 1e-3)));
  CHECK(bn.running_mean()[0] == doctest::Approx(0.1 * mean));  // unchanged by evaluation
}

TEST_CASE("BatchNorm2d rejects bad options and wrong channel counts") {
  CHECK_THROWS_AS(nsl::BatchNorm2d<float>(0), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::BatchNorm2d<float>(3, {0.0, 0.9}), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::BatchNorm2d<float>(3, {1e-3, 1.0}), nsl::ArgumentError);
  nsl::BatchNorm2d<float> bn(3);
  CHECK_THROWS_WITH_AS(bn.forward(Tensor<float>(Shape{2, 4, 3, 3})),
                       "BatchNorm2d: per-channel statistics: expected [4], got [3]", nsl::ShapeError);
}
