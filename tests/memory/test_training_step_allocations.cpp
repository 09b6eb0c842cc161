// After the first steps have sized every workspace, a CNN-9 training step
// (forward, loss, backward, SGD) makes no heap allocation.
#include <doctest/doctest.h>

#include <cstdio>
#include <vector>

#include "counting_malloc.hpp"
#include "nsl/models/cnn9.hpp"
#include "nsl/train/loss.hpp"
#include "nsl/train/sgd.hpp"

TEST_CASE("a CNN-9 training step allocates nothing once its workspaces are sized") {
  nsl::set_num_threads(2);
  nsl::Rng rng(7);
  const nsl::index batch = 4;
  const nsl::Tensor<float> images = nsl::random_normal<float>(nsl::Shape{batch, 1, 28, 28}, rng);
  const std::vector<int> labels = {0, 3, 7, 9};
  for (nsl::Variant variant : {nsl::Variant::plain, nsl::Variant::static_dns, nsl::Variant::static_uns,
                               nsl::Variant::dynamic_dns, nsl::Variant::dynamic_uns, nsl::Variant::dynamic_dns_sphere}) {
    CAPTURE(nsl::to_string(variant));
    nsl::Sequential<float> net = nsl::cnn9<float>(variant, 1, 10, rng);
    net.set_borrowing(true);  // as nsl-train runs it
    nsl::Sgd<float> sgd(net.parameters());
    nsl::Tensor<float> logits(net.output_shape(images.shape())), dlogits(logits.shape());
    auto step = [&] {
      net.forward_into(images.view(), logits.view());
      nsl::softmax_cross_entropy<float>(logits.view(), labels, 0.01, dlogits.view());
      sgd.zero_gradients();
      net.backward_into(dlogits.view(), {});
      sgd.step(0.01);
    };
    step();
    step();
    const long long before = nsl::test::allocations();
    step();
    const long long during = nsl::test::allocations() - before;
    std::printf("%s: %lld allocations in the third training step\n", nsl::to_string(variant), during);
    CHECK(during == 0);
  }
}
