#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "nsl/check/gradcheck.hpp"
#include "nsl/layers/batch_norm2d.hpp"
#include "nsl/layers/conv2d.hpp"
#include "nsl/layers/linear.hpp"
#include "nsl/layers/relu.hpp"
#include "nsl/models/sequential.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;

TEST_CASE("a Sequential of conv, BN, ReLU and linear passes gradcheck end to end") {
  nsl::Rng rng(500);
  nsl::Sequential<double> net;
  net.add("conv", std::make_unique<nsl::Conv2d<double>>(2, 3, 3, nsl::Conv2dOptions{2, 1, true}, rng));
  net.add("bn", std::make_unique<nsl::BatchNorm2d<double>>(3));
  net.add("relu", std::make_unique<nsl::ReLU<double>>());
  net.add("fc", std::make_unique<nsl::Linear<double>>(3 * 3 * 3, 4, true, rng));
  CHECK(net.output_shape(Shape{2, 2, 6, 5}) == Shape{2, 4});
  const auto report = nsl::gradcheck(net, nsl::test::randn<double>(Shape{2, 2, 6, 5}, rng));
  CAPTURE(report.str());
  CHECK(report.worst_error < 1e-6);
  CHECK(report.tensors.size() == 1 + 2 + 2 + 2);
}

TEST_CASE("a Sequential names parameters and buffers after its layers") {
  nsl::Rng rng(501);
  nsl::Sequential<float> net;
  auto& conv = net.add("root.conv", std::make_unique<nsl::Conv2d<float>>(1, 2, 3, nsl::Conv2dOptions{1, 1, false}, rng));
  net.add("root.bn", std::make_unique<nsl::BatchNorm2d<float>>(2));
  CHECK(conv.out_channels() == 2);
  const auto params = net.parameters();
  REQUIRE(params.size() == 3);
  CHECK(params[0].name == "root.conv.weight");
  CHECK(params[2].name == "root.bn.beta");
  const auto buffers = net.buffers();
  REQUIRE(buffers.size() == 3);  // running mean, running variance, update count
  CHECK(buffers[1].name == "root.bn.running_variance");
  CHECK(net.describe().find("root.bn: BatchNorm2d(2)") != std::string::npos);
  CHECK_THROWS_AS(net.add("root.bn", std::make_unique<nsl::ReLU<float>>()), nsl::ArgumentError);
  nsl::Sequential<float> empty;
  CHECK_THROWS_AS(empty.forward(Tensor<float>(Shape{1, 1, 2, 2})), nsl::StateError);
}

TEST_CASE("a Sequential's backward hook follows each layer's backward, last layer first") {
  nsl::Rng rng(52);
  nsl::Sequential<double> net;
  net.add("conv", std::make_unique<nsl::Conv2d<double>>(1, 2, 3, nsl::Conv2dOptions{1, 1, false}, rng));
  net.add("bn", std::make_unique<nsl::BatchNorm2d<double>>(2));
  net.add("relu", std::make_unique<nsl::ReLU<double>>());
  std::vector<std::size_t> order;
  std::vector<double> conv_grad_seen;  // the conv's gradient is final when its hook runs
  net.set_backward_hook([&](std::size_t i) {
    order.push_back(i);
    if (i == 0) conv_grad_seen.push_back(net.parameters()[0].grad.vec().norm());
  });
  const auto x = nsl::test::randn<double>(Shape{2, 1, 4, 4}, rng);
  net.forward(x);
  nsl::zero_gradients(net.parameters());
  net.backward(nsl::test::randn<double>(Shape{2, 2, 4, 4}, rng));
  CHECK(order == std::vector<std::size_t>{2, 1, 0});
  REQUIRE(conv_grad_seen.size() == 1);
  CHECK(conv_grad_seen[0] > 0.0);
  net.set_backward_hook({});
  net.backward(nsl::test::randn<double>(Shape{2, 2, 4, 4}, rng));
  CHECK(order.size() == 3);
}

TEST_CASE("set_training reaches every layer of a Sequential") {
  nsl::Sequential<float> net;
  auto& bn = net.add("bn", std::make_unique<nsl::BatchNorm2d<float>>(2));
  net.set_training(false);
  CHECK_FALSE(bn.training());
  net.set_training(true);
  CHECK(bn.training());
}
