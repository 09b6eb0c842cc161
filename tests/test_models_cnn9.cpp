#include <doctest/doctest.h>

#include <set>
#include <utility>

#include "nsl/check/gradcheck.hpp"
#include "nsl/models/cnn9.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;
using nsl::Variant;

namespace {
const Variant all_variants[] = {Variant::plain,       Variant::static_dns,  Variant::static_uns,
                                Variant::dynamic_dns, Variant::dynamic_uns, Variant::dynamic_dns_sphere};
}

TEST_CASE("CNN-9 maps 28x28 grey and 32x32 colour images to N x classes x 1 x 1 logits, for every variant") {
  nsl::Rng rng(600);
  for (Variant v : all_variants) {
    CAPTURE(nsl::to_string(v));
    nsl::Cnn9Options small;
    small.widths[0] = 4;
    small.widths[1] = 4;
    small.widths[2] = 6;
    small.predictor_hidden = 4;
    auto grey = nsl::cnn9<float>(v, 1, 10, rng, small);
    CHECK(grey.output_shape(Shape{2, 1, 28, 28}) == Shape{2, 10, 1, 1});
    const Tensor<float> logits = grey.forward(nsl::test::randn<float>(Shape{2, 1, 28, 28}, rng));
    CHECK(logits.vec().allFinite());
    const Tensor<float> dx = grey.backward(logits);
    CHECK(dx.shape() == Shape{2, 1, 28, 28});
    small.input_size = 32;
    auto colour = nsl::cnn9<float>(v, 3, 100, rng, small);
    CHECK(colour.output_shape(Shape{2, 3, 32, 32}) == Shape{2, 100, 1, 1});
    std::set<std::string> names;
    for (const auto& p : colour.parameters()) names.insert(p.name);
    CHECK(names.size() == colour.parameters().size());
  }
}

TEST_CASE("the reference CNN-9 has the layers and widths of NSL.md") {
  nsl::Rng rng(601);
  auto net = nsl::cnn9<float>(Variant::plain, 1, 10, rng);
  CHECK(net.size() == 3 + 3 * (9 + 1) + 1);
  CHECK(net.name(3) == "stage1.conv1");
  CHECK(net.layer(3).describe() == "Conv2d(32->32, k=3, s=1, p=1, no bias)");
  CHECK(net.layer(net.size() - 1).describe() == "Conv2d(128->10, k=4, s=1, p=0)");
  auto dns = nsl::cnn9<float>(Variant::dynamic_dns, 1, 10, rng);
  CHECK(dns.layer(3).describe().find("DynamicNSConv2d(32->32") == 0);
  CHECK_THROWS_WITH_AS(nsl::parse_variant("nope"), doctest::Contains("unknown variant 'nope'"), nsl::ArgumentError);
  CHECK(nsl::parse_variant("dynamic_uns") == Variant::dynamic_uns);
}

TEST_CASE("predictor_last_bn_scale starts the predictors' last BatchNorm of exactly the variants that have one") {
  nsl::Rng rng(602);
  const Variant with_attention[] = {Variant::plain,       Variant::static_dns,         Variant::static_uns,
                                    Variant::dynamic_dns, Variant::dynamic_uns,        Variant::dynamic_dns_sphere,
                                    Variant::sphere_attention};
  for (Variant v : with_attention) {
    CAPTURE(nsl::to_string(v));
    nsl::Cnn9Options small;
    small.widths[0] = small.widths[1] = small.widths[2] = 4;
    small.attention_widths[0] = small.attention_widths[1] = small.attention_widths[2] = 4;
    small.predictor_hidden = 4;
    small.predictor_last_bn_scale = 0.25;
    auto net = nsl::cnn9<float>(v, 1, 10, rng, small);
    int started = 0;  // parameters filled with the start value
    for (const auto& p : net.parameters())
      if ((p.value.vec().array() == 0.25f).all()) ++started;
    CHECK((started > 0) == nsl::has_predictor_batch_norm(v));
  }
  CHECK(nsl::has_predictor_batch_norm(Variant::dynamic_dns));
  CHECK(nsl::has_predictor_batch_norm(Variant::dynamic_dns_sphere));
  CHECK_FALSE(nsl::has_predictor_batch_norm(Variant::dynamic_uns));
}

TEST_CASE("set_replica_sum reaches every BatchNorm of CNN-9, the predictors' included") {
  // Counts the sums: two per BatchNorm forward in training mode, one per backward.
  struct Counting : nsl::ReplicaSum {
    void sum(double*, std::size_t) override { ++calls; }
    int calls = 0;
  };
  nsl::Rng rng(603);
  nsl::Cnn9Options tiny;
  tiny.input_size = 8;
  tiny.widths[0] = tiny.widths[1] = tiny.widths[2] = 2;
  tiny.predictor_hidden = 2;
  // CNN-9's own 10 BatchNorms; dynamic DNS adds two in each of the 9 predictors.
  for (auto [v, batch_norms] : {std::pair{Variant::plain, 10}, std::pair{Variant::dynamic_dns, 28}}) {
    CAPTURE(nsl::to_string(v));
    auto net = nsl::cnn9<double>(v, 1, 3, rng, tiny);
    Counting counting;
    net.set_replica_sum(&counting);
    const auto y = net.forward(nsl::test::randn<double>(Shape{2, 1, 8, 8}, rng));
    CHECK(counting.calls == 2 * batch_norms);
    net.backward(Tensor<double>(y.shape(), 1.0));
    CHECK(counting.calls == 3 * batch_norms);
    net.set_replica_sum(nullptr);
    net.forward(nsl::test::randn<double>(Shape{2, 1, 8, 8}, rng));
    CHECK(counting.calls == 3 * batch_norms);
  }
}

TEST_CASE("a small CNN-9 passes gradcheck end to end (plain and dynamic DNS)") {
  nsl::Rng rng(602);
  for (Variant v : {Variant::plain, Variant::dynamic_dns}) {
    CAPTURE(nsl::to_string(v));
    nsl::Cnn9Options tiny;
    tiny.input_size = 8;  // 8 -> 4 -> 2 -> 1: a 1x1 score conv
    tiny.widths[0] = tiny.widths[1] = tiny.widths[2] = 2;
    tiny.predictor_hidden = 2;
    auto net = nsl::cnn9<double>(v, 1, 3, rng, tiny);
    // The predictors' last convs start at 0.001 x He, where BN divides by their
    // tiny scale and finite differences see strong curvature: check at scale 0.3.
    for (auto& p : net.parameters())
      if (p.name.find("predictor.conv2.weight") != std::string::npos) nsl::fill_normal<double>(p.value, rng, 0.0, 0.3);
    // Distinct, well-separated inputs keep the max-pools away from ties.
    const auto report = nsl::gradcheck(net, nsl::test::randn<double>(Shape{3, 1, 8, 8}, rng));
    CAPTURE(report.str());
    CHECK(report.worst_error < 1e-6);
  }
}
