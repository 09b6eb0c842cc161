#include <doctest/doctest.h>

#include "nsl/check/gradcheck.hpp"
#include "nsl/layers/static_ns_conv2d.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Structure;
using nsl::Tensor;

namespace {
const Structure structures[] = {Structure::diagonal, Structure::channel_shared, Structure::block_diagonal,
                                Structure::full};

template <class T>
void randomise_similarity(nsl::StaticNSConv2d<T>& layer, nsl::Rng& rng) {
  nsl::fill_normal<T>(layer.similarity().view(), rng);
}
}  // namespace

TEST_CASE("StaticNSConv2d passes gradcheck on w, x and M for every structure, k = 3 and 5, stride 1 and 2") {
  nsl::Rng rng(200);
  for (Structure s : structures)
    for (nsl::index k : {3, 5})
      for (nsl::index stride : {1, 2}) {
        CAPTURE(nsl::to_string(s)); CAPTURE(k); CAPTURE(stride);
        nsl::StaticNSConv2d<double> layer(2, 3, k, s, {stride, k / 2, true}, rng);  // C_in != C_out
        randomise_similarity(layer, rng);
        nsl::fill_normal<double>(layer.bias().view(), rng);
        const auto report = nsl::gradcheck(layer, nsl::test::randn<double>(Shape{2, 2, 7, 6}, rng));
        CAPTURE(report.str());
        CHECK(report.worst_error < 1e-6);
        CHECK(report.tensors.size() == 4u);  // input, weight, similarity, bias
      }
}

TEST_CASE("with M = I every structure equals Conv2d with the same weights") {
  nsl::Rng rng(201);
  const auto x = nsl::test::randn<float>(Shape{3, 4, 10, 9}, rng);
  for (Structure s : structures) {
    CAPTURE(nsl::to_string(s));
    nsl::StaticNSConv2d<float> layer(4, 6, 3, s, {2, 1, false}, rng);
    nsl::Conv2d<float> conv(4, 6, 3, {2, 1, false});
    conv.weight() = layer.weight();
    CHECK(nsl::test::max_relative_difference(layer.forward(x), conv.forward(x)) < 1e-6);
  }
}

TEST_CASE("for random M the output is the per-pixel sum of w^T M x, brute force") {
  nsl::Rng rng(202);
  const nsl::index C = 3, O = 2, k = 3, K = 9;
  const auto x = nsl::test::randn<double>(Shape{2, C, 6, 5}, rng);
  for (Structure s : structures) {
    CAPTURE(nsl::to_string(s));
    nsl::StaticNSConv2d<double> layer(C, O, k, s, {1, 1, false}, rng);
    randomise_similarity(layer, rng);
    const Tensor<double> y = layer.forward(x);
    double worst = 0.0;
    Tensor<double> patch(Shape{C * K}), filter(Shape{C * K});
    for (nsl::index n = 0; n < 2; ++n)
      for (nsl::index o = 0; o < O; ++o)
        for (nsl::index i = 0; i < 6; ++i)
          for (nsl::index j = 0; j < 5; ++j) {
            for (nsl::index c = 0; c < C; ++c)
              for (nsl::index r = 0; r < K; ++r) {
                const nsl::index u = i - 1 + r / k, v = j - 1 + r % k;
                patch[c * K + r] = (u >= 0 && u < 6 && v >= 0 && v < 5) ? x(n, c, u, v) : 0.0;
                filter[c * K + r] = layer.weight()[(o * C + c) * K + r];
              }
            const double expected = nsl::bilinear_similarity_reference<double>(
                s, layer.similarity().view(), filter.view(), patch.view(), C, K);
            worst = std::max(worst, std::abs(y(n, o, i, j) - expected));
          }
    CHECK(worst < 1e-12);
  }
}

TEST_CASE("a trained static layer folds into a plain Conv2d with the same outputs") {
  nsl::Rng rng(203);
  const auto x = nsl::test::randn<float>(Shape{4, 5, 12, 12}, rng);
  for (Structure s : structures)
    for (nsl::index stride : {1, 2}) {
      CAPTURE(nsl::to_string(s));
      nsl::StaticNSConv2d<float> layer(5, 7, 3, s, {stride, 1, true}, rng);
      randomise_similarity(layer, rng);
      nsl::fill_normal<float>(layer.bias().view(), rng);
      nsl::Conv2d<float> folded = layer.to_conv2d();
      CHECK(folded.describe() == nsl::cat("Conv2d(5->7, k=3, s=", stride, ", p=1)"));
      CHECK(nsl::test::max_relative_difference(folded.forward(x), layer.forward(x)) < 1e-5);
    }
}

TEST_CASE("a new layer starts at M = I and reports a flat kernel shape - parameters are named") {
  nsl::Rng rng(204);
  nsl::StaticNSConv2d<float> dns(3, 4, 3, Structure::diagonal, {}, rng);
  CHECK(nsl::learned_kernel_shape(dns).isOnes());
  nsl::StaticNSConv2d<float> uns(3, 4, 5, Structure::channel_shared, {1, 2, false}, rng);
  CHECK(nsl::learned_kernel_shape(uns).size() == 25);
  const auto params = uns.parameters();
  REQUIRE(params.size() == 2);
  CHECK(params[1].name == "similarity");
  CHECK(params[1].value.shape() == Shape{25, 25});
  CHECK_FALSE(params[1].weight_decay);
  CHECK(uns.describe() == "StaticNSConv2d(3->4, k=5, s=1, p=2, M channel_shared, no bias)");
}

TEST_CASE("StaticNSConv2d rejects wrong input shapes and bad arguments") {
  nsl::StaticNSConv2d<float> layer(3, 4, 3, Structure::diagonal);
  CHECK_THROWS_WITH_AS(layer.forward(Tensor<float>(Shape{1, 2, 5, 5})),
                       doctest::Contains("StaticNSConv2d: weight: expected [4, 2, 3, 3]"), nsl::ShapeError);
  CHECK_THROWS_AS(nsl::StaticNSConv2d<float>(3, 4, 3, Structure::full, {0, 1, false}), nsl::ArgumentError);
  CHECK_THROWS_AS(layer.backward(Tensor<float>(Shape{1, 4, 3, 3})), nsl::StateError);
}

TEST_CASE("StaticNSConv2d with the identity structure passes gradcheck (fold_weights_backward's dw += dw')") {
  nsl::Rng rng(210);
  nsl::StaticNSConv2d<double> layer(2, 3, 3, Structure::identity, {1, 1, true}, rng);
  nsl::fill_normal<double>(layer.bias().view(), rng);
  const auto report = nsl::gradcheck(layer, nsl::test::randn<double>(Shape{2, 2, 5, 4}, rng));
  CAPTURE(report.str());
  CHECK(report.worst_error < 1e-6);
  CHECK(report.tensors.size() == 3u);  // input, weight, bias: no M to learn
}
