// deploy(): the inference form of a network (nsl/deploy/deploy.hpp). For
// every CNN-9 variant and Conv-4, with BN statistics, BN affine parameters,
// static M and the attention's gamma all away from their starting values,
// the deployed network's const infer gives the trained network's
// evaluation-mode output (to double rounding in double, 1e-5 in float), has
// no BatchNorm left (none in the predictors either), and the static variants
// deploy to the plain network's layers.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "nsl/deploy/deploy.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;
using nsl::Variant;

namespace nsl_test_deploy {

const Variant all_variants[] = {Variant::plain,       Variant::static_dns,         Variant::static_uns,
                                Variant::dynamic_dns, Variant::dynamic_uns,        Variant::dynamic_dns_sphere,
                                Variant::sphere_attention};

/// Running statistics from a few training-mode forwards, then every BN's
/// gamma and beta, every static M and the attention's gamma moved away from
/// their starting values (1, 0, identity, 0), so that each fold has
/// something to fold.
template <class T>
void make_trained_looking(nsl::Sequential<T>& net, const Shape& input, nsl::Rng& rng) {
  net.set_training(true);
  for (int step = 0; step < 3; ++step) net.forward(nsl::test::randn<T>(input, rng));
  net.set_training(false);
  for (auto& p : net.parameters()) {
    const std::string& name = p.name;
    auto ends = [&](const std::string& tail) {
      return name.size() >= tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
    };
    for (nsl::index i = 0; i < p.value.size(); ++i) {
      if (ends("gamma")) p.value[i] = T(0.5 + rng.uniform());
      else if (ends("beta")) p.value[i] = T(0.2 * rng.normal());
      else if (ends("similarity")) p.value[i] += T(0.3 * rng.normal());
    }
  }
}

/// Every layer of `net`, the ones inside Sequentials and predictors included,
/// passed to `visit`.
template <class T, class F>
void for_each_layer(const nsl::Sequential<T>& net, F&& visit) {
  for (std::size_t i = 0; i < net.size(); ++i) {
    const nsl::Layer<T>& layer = net.layer(i);
    visit(layer);
    if (const auto* inner = dynamic_cast<const nsl::Sequential<T>*>(&layer)) for_each_layer(*inner, visit);
  }
}

template <class T>
nsl::Tensor<T> deployed_logits(const nsl::Sequential<T>& deployed, const Tensor<T>& x) {
  nsl::InferenceWorkspace ws;
  return deployed.infer(x.view(), ws);
}

/// A layer deploy does not know.
struct Doubling : nsl::Layer<double> {
  std::string describe() const override { return "Doubling"; }
  Shape output_shape(const Shape& input) const override { return input; }
  void forward_into(nsl::TensorView<const double> x, nsl::TensorView<double> y) override {
    for (nsl::index i = 0; i < x.size(); ++i) y[i] = 2 * x[i];
  }
  void backward_into(nsl::TensorView<const double> dy, nsl::TensorView<double> dx) override {
    for (nsl::index i = 0; i < dy.size(); ++i) dx[i] = 2 * dy[i];
  }
};

}  // namespace nsl_test_deploy

using namespace nsl_test_deploy;

TEST_CASE_TEMPLATE("a deployed CNN-9 gives the trained network's evaluation-mode logits, every variant", T, double,
                   float) {
  // Double: the folds are exact up to rounding. Float: the 1e-5.
  const double tolerance = std::is_same_v<T, double> ? 1e-12 : 1e-5;
  for (Variant v : all_variants) {
    CAPTURE(nsl::to_string(v));
    nsl::Rng rng(31);
    nsl::Sequential<T> net = nsl::cnn9<T>(v, 1, 10, rng);
    make_trained_looking(net, Shape{8, 1, 28, 28}, rng);
    const nsl::Sequential<T> deployed = nsl::deploy(net);
    const Tensor<T> x = nsl::test::randn<T>(Shape{5, 1, 28, 28}, rng);
    const Tensor<T> trained = net.forward(x), folded = deployed_logits(deployed, x);
    const double difference = nsl::test::max_relative_difference(folded, trained);
    CAPTURE(difference);
    CHECK(difference < tolerance);
    // The comparison can fail: the same network with a BN's statistics
    // changed gives other logits.
    auto buffers = net.buffers();
    buffers.at(0).value[0] += T(1);
    const Tensor<T> changed = net.forward(x);
    CHECK(nsl::test::max_relative_difference(folded, changed) > 100 * tolerance);
  }
}

TEST_CASE("deploy folds every BatchNorm of CNN-9, the predictors' included, and static NSL into plain convolutions") {
  for (Variant v : all_variants) {
    CAPTURE(nsl::to_string(v));
    nsl::Rng rng(32);
    const nsl::Sequential<double> net = nsl::cnn9<double>(v, 1, 10, rng);
    const nsl::Sequential<double> deployed = nsl::deploy(net);
    int batch_norms = 0, static_layers = 0, dynamic_layers = 0;
    for_each_layer(deployed, [&](const nsl::Layer<double>& layer) {
      batch_norms += dynamic_cast<const nsl::BatchNorm2d<double>*>(&layer) != nullptr;
      if (const auto* conv = dynamic_cast<const nsl::Conv2d<double>*>(&layer))  // weights laid out for infer
        CHECK(conv->inference_prepared() == nsl::conv2d_direct_supported(conv->geometry()));
      static_layers += dynamic_cast<const nsl::StaticNSConv2d<double>*>(&layer) != nullptr;
      if (const auto* d = dynamic_cast<const nsl::DynamicNSConv2d<double>*>(&layer)) {
        ++dynamic_layers;
        CHECK(d->predictor().bn1() == nullptr);
        CHECK(d->predictor().bn2() == nullptr);
        CHECK(!d->bias().empty());  // BN's shift
        CHECK(!d->predictor().conv1().options().filter_norm);
        CHECK(!d->predictor().conv2().options().filter_norm);
      }
    });
    CHECK(batch_norms == 0);
    CHECK(static_layers == 0);
    const bool dynamic = v == Variant::dynamic_dns || v == Variant::dynamic_uns || v == Variant::dynamic_dns_sphere;
    CHECK(dynamic_layers == (dynamic ? 9 : 0));
    // Ten BNs gone, the layer names kept.
    CHECK(deployed.size() == net.size() - 10);
    CHECK(deployed.name(0) == "root.conv");
    CHECK(deployed.name(1) == "root.relu");
    CHECK(deployed.name(deployed.size() - 1) == "score");
    if (v == Variant::static_dns || v == Variant::static_uns) {
      nsl::Rng other(32);
      const nsl::Sequential<double> plain = nsl::deploy(nsl::cnn9<double>(Variant::plain, 1, 10, other));
      REQUIRE(plain.size() == deployed.size());
      for (std::size_t i = 0; i < plain.size(); ++i) CHECK(plain.layer(i).describe() == deployed.layer(i).describe());
    }
  }
}

TEST_CASE("deploy leaves the trained network as it was") {
  nsl::Rng rng(33);
  nsl::Sequential<double> net = nsl::cnn9<double>(Variant::dynamic_dns, 1, 10, rng);
  make_trained_looking(net, Shape{4, 1, 28, 28}, rng);
  std::vector<Tensor<double>> before;
  for (const auto& p : net.parameters()) before.emplace_back(nsl::TensorView<const double>(p.value));
  for (const auto& b : net.buffers()) before.emplace_back(nsl::TensorView<const double>(b.value));
  const nsl::Sequential<double> deployed = nsl::deploy(net);
  std::size_t k = 0;
  for (const auto& p : net.parameters()) CHECK(nsl::test::max_relative_difference<double>(p.value, before.at(k++).view()) == 0.0);
  for (const auto& b : net.buffers()) CHECK(nsl::test::max_relative_difference<double>(b.value, before.at(k++).view()) == 0.0);
}

TEST_CASE("a deployed Conv-4 embeds as the trained one, every backbone") {
  for (Variant v : {Variant::plain, Variant::static_uns, Variant::dynamic_dns, Variant::dynamic_dns_sphere}) {
    CAPTURE(nsl::to_string(v));
    nsl::Rng rng(34);
    nsl::Conv4Options o;
    o.width = 16;
    nsl::Sequential<double> net = nsl::conv4<double>(v, 1, rng, o);
    make_trained_looking(net, Shape{4, 1, 20, 20}, rng);
    const Tensor<double> x = nsl::test::randn<double>(Shape{3, 1, 20, 20}, rng);
    CHECK(nsl::test::max_relative_difference(deployed_logits(nsl::deploy(net), x), net.forward(x)) < 1e-12);
  }
}

TEST_CASE("a model file deploys in one call") {
  nsl::ModelSpec spec;
  spec.variant = Variant::dynamic_uns;
  spec.dataset = "fashion-mnist";
  nsl::Rng rng(35);
  nsl::Model<float> model = nsl::build_model<float>(spec, rng);
  make_trained_looking(model.network, Shape{8, 1, 28, 28}, rng);
  const std::string path = (std::filesystem::path(NSL_TEST_BINARY_DIR) / "deploy_model.nslckpt").string();
  nsl::save_model(path, model);
  const nsl::Sequential<float> deployed = nsl::deploy(nsl::load_model<float>(path));
  const Tensor<float> x = nsl::test::randn<float>(Shape{2, 1, 28, 28}, rng);
  CHECK(nsl::test::max_relative_difference(deployed_logits(deployed, x), model.network.forward(x)) < 1e-5);
  std::filesystem::remove(path);
}

TEST_CASE("SphereConvs fold only where their response is linear, and a layer deploy does not know is named") {
  nsl::Rng rng(36);
  nsl::Sequential<double> net;
  net.add("angle", std::make_unique<nsl::SphereConv2d<double>>(
                       2, 3, 3, nsl::SphereConvOptions{1, 1, true, true, nsl::AngularForm::sigmoid}, rng));
  net.add("bn", std::make_unique<nsl::BatchNorm2d<double>>(3));
  net.add("cosine", std::make_unique<nsl::SphereConv2d<double>>(
                        3, 4, 3, nsl::SphereConvOptions{1, 1, true, true, nsl::AngularForm::cosine}, rng));
  net.add("bn2", std::make_unique<nsl::BatchNorm2d<double>>(4));
  make_trained_looking(net, Shape{4, 2, 6, 6}, rng);
  const nsl::Sequential<double> deployed = nsl::deploy(net);
  REQUIRE(deployed.size() == 3);  // sigmoid kept with its BN; the cosine conv and its BN folded
  CHECK(deployed.name(1) == "bn");
  const auto& folded = dynamic_cast<const nsl::SphereConv2d<double>&>(deployed.layer(2));
  CHECK(folded.options().form == nsl::AngularForm::identity);
  CHECK(!folded.options().filter_norm);
  const Tensor<double> x = nsl::test::randn<double>(Shape{2, 2, 6, 6}, rng);
  CHECK(nsl::test::max_relative_difference(deployed_logits(deployed, x), net.forward(x)) < 1e-12);

  net.add("doubling", std::make_unique<Doubling>());
  CHECK_THROWS_WITH_AS(nsl::deploy(net), doctest::Contains("no inference form for layer 'doubling' (Doubling)"),
                       nsl::ArgumentError);
}
