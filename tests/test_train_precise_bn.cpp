#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "nsl/layers/batch_norm2d.hpp"
#include "nsl/layers/conv2d.hpp"
#include "nsl/layers/relu.hpp"
#include "nsl/models/sequential.hpp"
#include "nsl/train/precise_bn.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;

TEST_CASE("recalibrate_batch_norm sets the running statistics to the average batch statistics") {
  nsl::Rng rng(900);
  nsl::Sequential<double> net;
  net.add("conv", std::make_unique<nsl::Conv2d<double>>(2, 3, 3, nsl::Conv2dOptions{1, 1, false}, rng));
  auto& bn = net.add("bn", std::make_unique<nsl::BatchNorm2d<double>>(3));
  net.add("relu", std::make_unique<nsl::ReLU<double>>());
  std::vector<Tensor<double>> batches;
  for (int b = 0; b < 3; ++b) {
    Tensor<double> x = nsl::test::randn<double>(Shape{4, 2, 5, 5}, rng);
    x.vec().array() = x.vec().array() * (1.0 + b) + b;  // batches with different statistics
    batches.push_back(x);
  }
  // Expected: per channel, the mean over batches of the conv output's batch mean and
  // Bessel-corrected batch variance.
  std::vector<double> mean(3, 0.0), variance(3, 0.0);
  for (const auto& x : batches) {
    const Tensor<double> z = net.layer(0).forward(x.view());
    const double m = 4 * 5 * 5;
    for (nsl::index c = 0; c < 3; ++c) {
      double sum = 0, squares = 0;
      for (nsl::index n = 0; n < 4; ++n)
        for (nsl::index p = 0; p < 25; ++p) sum += z[(n * 3 + c) * 25 + p];
      for (nsl::index n = 0; n < 4; ++n)
        for (nsl::index p = 0; p < 25; ++p) squares += std::pow(z[(n * 3 + c) * 25 + p] - sum / m, 2);
      mean[std::size_t(c)] += sum / m / 3;
      variance[std::size_t(c)] += squares / (m - 1) / 3;
    }
  }
  bn.running_mean().fill(123.0);  // stale statistics
  bn.running_variance().fill(456.0);
  bn.buffers()[2].value[0] = 7000;  // updates so far
  net.set_training(false);
  nsl::recalibrate_batch_norm<double>(net, 3, [&](nsl::index b, Tensor<double>& images) {
    images = batches[std::size_t(b)];
  });
  for (nsl::index c = 0; c < 3; ++c) {
    CHECK(bn.running_mean()[c] == doctest::Approx(mean[std::size_t(c)]).epsilon(1e-12));
    CHECK(bn.running_variance()[c] == doctest::Approx(variance[std::size_t(c)]).epsilon(1e-12));
  }
  CHECK(bn.buffers()[2].value[0] == 7000);  // the update count is kept
  CHECK(!net.training());                   // and the mode
  CHECK_THROWS_AS(nsl::recalibrate_batch_norm<double>(net, 0, [](nsl::index, Tensor<double>&) {}),
                  nsl::ArgumentError);
}
