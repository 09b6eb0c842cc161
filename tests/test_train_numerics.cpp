// Tests of nsl/train/numerics.hpp: the check after each backward finds a
// NaN or an infinity in the loss or the gradients and names where it began.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "nsl/io/model_file.hpp"
#include "nsl/models/cnn9.hpp"
#include "nsl/train/loss.hpp"
#include "nsl/train/numerics.hpp"
#include "nsl/train/sgd.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;

namespace {

// A small CNN-9 of `variant` on 1 x 8 x 8 images and one training step's
// forward and backward on `x`, with its loss.
struct Step {
  nsl::Sequential<float> net;
  Tensor<float> logits, dlogits;
  double loss = 0.0;

  explicit Step(nsl::Variant variant) {
    nsl::Rng rng(5);
    nsl::Cnn9Options o;
    o.input_size = 8;
    o.widths[0] = 2;
    o.widths[1] = 3;
    o.widths[2] = 4;
    o.predictor_hidden = 4;
    net = nsl::cnn9<float>(variant, 1, 3, rng, o);
  }
  void run(const Tensor<float>& x) {
    logits.resize(net.output_shape(x.shape()));
    dlogits.resize(logits.shape());
    net.forward_into(x.view(), logits.view());
    loss = nsl::softmax_cross_entropy<float>(logits.view(), {0, 1, 2, 1}, 0.01, dlogits.view()).loss;
    for (auto& p : net.parameters()) nsl::set_zero<float>(p.grad);
    net.backward_into(dlogits.view(), {});
  }
  std::string failure(nsl::index step) {
    try {
      nsl::check_numerics<float, nsl::Cpu>(net, logits.view(), loss, net.parameters(), step);
    } catch (const nsl::StateError& e) {
      return e.what();
    }
    return "";
  }
};

Tensor<float> images(nsl::Rng& rng) { return nsl::test::randn<float>(Shape{4, 1, 8, 8}, rng); }

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("check_numerics passes a finite step and returns the gradients' squared norm") {
  nsl::Rng rng(1);
  Step s(nsl::Variant::dynamic_dns);
  s.run(images(rng));
  double expected = 0.0;
  for (const auto& p : s.net.parameters())
    for (nsl::index i = 0; i < p.grad.size(); ++i) expected += double(p.grad[i]) * double(p.grad[i]);
  REQUIRE(expected > 0.0);
  const double norm = nsl::check_numerics<float, nsl::Cpu>(s.net, s.logits.view(), s.loss, s.net.parameters(), 1);
  CHECK(norm == doctest::Approx(expected).epsilon(1e-12));
  CHECK(s.failure(1).empty());
}

TEST_CASE("a NaN pixel: the step, the loss and the first layer whose output is not finite are named") {
  nsl::Rng rng(2);
  for (nsl::Variant v : {nsl::Variant::plain, nsl::Variant::dynamic_dns}) {
    const std::string variant = nsl::to_string(v);
    CAPTURE(variant);
    Step s(v);
    Tensor<float> x = images(rng);
    x[3 * 64 + 17] = std::numeric_limits<float>::quiet_NaN();
    s.run(x);
    const std::string message = s.failure(12);
    CHECK(contains(message, "step 12: the loss is nan"));
    CHECK(contains(message, "the first non-finite output is layer 'root.conv''s (Conv2d("));
    CHECK(contains(message, "the first non-finite gradient is '"));
  }
}

TEST_CASE("a weight gone infinite is found where it first shows, and a gradient alone is named too") {
  nsl::Rng rng(3);
  Step s(nsl::Variant::plain);
  for (auto& p : s.net.parameters())
    if (p.name == "stage2.conv1.weight") p.value[5] = std::numeric_limits<float>::infinity();
  s.run(images(rng));
  CHECK(contains(s.failure(3), "the first non-finite output is layer 'stage2.conv1''s"));

  // Outputs and loss finite, one gradient not: the gradient is named.
  Step t(nsl::Variant::static_dns);
  t.run(images(rng));
  REQUIRE(t.failure(4).empty());
  for (auto& p : t.net.parameters())
    if (p.name == "score.bias") p.grad[1] = std::numeric_limits<float>::quiet_NaN();
  const std::string message = t.failure(4);
  CHECK(contains(message, "step 4: the loss is "));
  CHECK(contains(message, "every layer's output is finite; the first non-finite gradient is 'score.bias'"));
  CHECK(nsl::all_finite<float, nsl::Cpu>(t.logits.view()));
  Tensor<float> bad(Shape{3}, 1.0f);
  CHECK(nsl::all_finite<float, nsl::Cpu>(bad.view()));
  bad[2] = -std::numeric_limits<float>::infinity();
  CHECK_FALSE(nsl::all_finite<float, nsl::Cpu>(bad.view()));
}

TEST_CASE("a training loop stopped by a NaN pixel keeps its last model file, which loads with the same weights") {
  // The loop of nsl-train in small: steps, a model file after the good ones,
  // the check before each update.
  nsl::ModelSpec spec;
  spec.variant = nsl::Variant::dynamic_dns;
  spec.input_size = 8;
  spec.classes = 3;
  spec.cnn9.widths[0] = 2;
  spec.cnn9.widths[1] = 3;
  spec.cnn9.widths[2] = 4;
  spec.cnn9.predictor_hidden = 4;
  nsl::Rng rng(8);
  nsl::Model<float> model = nsl::build_model<float>(spec, rng);
  nsl::Sgd<float> sgd(model.parameters(), {0.9, 5e-4});
  const auto params = model.parameters();
  const std::vector<int> labels{0, 1, 2, 1};
  Tensor<float> logits, dlogits;
  auto step = [&](const Tensor<float>& x, nsl::index n) {
    logits.resize(model.network.output_shape(x.shape()));
    dlogits.resize(logits.shape());
    model.network.forward_into(x.view(), logits.view());
    const double loss = nsl::softmax_cross_entropy<float>(logits.view(), labels, 0.01, dlogits.view()).loss;
    sgd.zero_gradients();
    model.network.backward_into(dlogits.view(), {});
    nsl::check_numerics<float, nsl::Cpu>(model.network, logits.view(), loss, params, n);
    sgd.step(0.05);
  };
  for (nsl::index n = 1; n <= 3; ++n) step(images(rng), n);
  const std::string path = std::string(NSL_TEST_BINARY_DIR) + "/numerics_last_good.nslckpt";
  nsl::save_model(path, model);

  Tensor<float> bad = images(rng);
  bad[100] = std::numeric_limits<float>::quiet_NaN();
  std::string message;
  try {
    step(bad, 4);
  } catch (const nsl::StateError& e) {
    message = e.what();
  }
  CHECK(contains(message, "step 4: the loss is nan"));
  CHECK(contains(message, "the first non-finite output is layer 'root.conv''s"));
  // No update came after the check: the weights are those of the file, which loads.
  nsl::Model<float> back = nsl::load_model<float>(path);
  const auto saved = back.parameters();
  REQUIRE(saved.size() == params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    CAPTURE(params[i].name);
    CHECK(nsl::all_finite<float, nsl::Cpu>(params[i].value));
    CHECK(saved[i].value.vec() == params[i].value.vec());
  }
}
