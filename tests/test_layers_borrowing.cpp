// Borrowing (Layer::set_borrowing): layers keep views of what the caller
// promised to keep, copies otherwise. The results must not depend on it.
#include <doctest/doctest.h>

#include <vector>

#include "nsl/models/cnn9.hpp"
#include "nsl/train/loss.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;

namespace {

// One forward and backward of a small CNN-9 of `variant`; returns the logits
// followed by every parameter gradient, flattened.
std::vector<float> step_results(nsl::Variant variant, bool borrowing) {
  nsl::Rng rng(77);
  nsl::Cnn9Options options;
  options.input_size = 8;
  options.widths[0] = 4;
  options.widths[1] = 4;
  options.widths[2] = 6;
  auto net = nsl::cnn9<float>(variant, 1, 3, rng, options);
  net.set_borrowing(borrowing);
  Tensor<float> x = nsl::test::randn<float>(Shape{4, 1, 8, 8}, rng);
  Tensor<float> logits(net.output_shape(x.shape())), dlogits(logits.shape());
  net.forward_into(x.view(), logits.view());
  nsl::softmax_cross_entropy<float>(logits.view(), {0, 1, 2, 1}, 0.01, dlogits.view());
  Tensor<float> dx(x.shape());
  net.backward_into(dlogits.view(), dx.view());
  std::vector<float> all(logits.data(), logits.data() + logits.size());
  all.insert(all.end(), dx.data(), dx.data() + dx.size());
  for (const auto& p : net.parameters()) all.insert(all.end(), p.grad.data(), p.grad.data() + p.grad.size());
  return all;
}

}  // namespace

TEST_CASE("CNN-9 gives bit-identical outputs and gradients with and without borrowing") {
  for (nsl::Variant v : {nsl::Variant::plain, nsl::Variant::static_uns, nsl::Variant::dynamic_dns,
                         nsl::Variant::dynamic_dns_sphere}) {
    CAPTURE(nsl::to_string(v));
    const std::vector<float> copied = step_results(v, false), borrowed = step_results(v, true);
    REQUIRE(copied.size() == borrowed.size());
    CHECK(copied == borrowed);
  }
}

TEST_CASE("Sequential lends borrowing to its inner layers, and its own flag to the first and last") {
  nsl::Rng rng(78);
  nsl::Sequential<float> net;
  auto& first = net.add("a", std::make_unique<nsl::ReLU<float>>());
  auto& middle = net.add("b", std::make_unique<nsl::ReLU<float>>());
  auto& last = net.add("c", std::make_unique<nsl::ReLU<float>>());
  CHECK(!first.borrowing());
  CHECK(middle.borrowing());
  CHECK(!last.borrowing());
  net.set_borrowing(true);
  CHECK(first.borrowing());
  CHECK(last.borrowing());
  auto& appended = net.add("d", std::make_unique<nsl::ReLU<float>>());
  CHECK(last.borrowing());  // no longer the last: an inner layer
  CHECK(appended.borrowing());
  net.set_borrowing(false);
  CHECK(!appended.borrowing());
  CHECK(last.borrowing());
}

TEST_CASE("a layer copies its input unless it borrows, when it keeps a view") {
  nsl::Rng rng(79);
  nsl::Conv2d<float> conv(2, 3, 3, {1, 1, false}, rng);
  Tensor<float> x = nsl::test::randn<float>(Shape{2, 2, 5, 5}, rng);
  const Tensor<float> dy = nsl::test::randn<float>(Shape{2, 3, 5, 5}, rng);
  auto weight_gradient_after_overwriting_x = [&](bool borrowing) {
    conv.set_borrowing(borrowing);
    Tensor<float> input = x;
    conv.forward(input.view());
    input.fill(7.0f);  // the caller breaks the borrowing promise
    conv.weight_grad().set_zero();
    conv.backward(dy.view());
    return conv.weight_grad();
  };
  conv.forward(x.view());
  conv.weight_grad().set_zero();
  conv.backward(dy.view());
  const Tensor<float> expected = conv.weight_grad();
  // A copy: what the caller does to its tensor after forward does not matter.
  CHECK(nsl::test::max_relative_difference(weight_gradient_after_overwriting_x(false), expected) == 0.0);
  // A view: the overwritten input shows (which is why borrowing is a promise).
  CHECK(nsl::test::max_relative_difference(weight_gradient_after_overwriting_x(true), expected) > 0.1);
}
