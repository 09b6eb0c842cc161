#include <doctest/doctest.h>

#include "nsl/check/gradcheck.hpp"
#include "nsl/layers/global_similarity2d.hpp"
#include "nsl/models/cnn9.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;

TEST_CASE("GlobalSimilarity2d passes gradcheck for the input, the three projections and gamma") {
  nsl::Rng rng(61);
  for (nsl::index channels : {8, 16}) {
    CAPTURE(channels);
    nsl::GlobalSimilarity2d<double> block(channels, rng);
    block.gamma_tensor()[0] = 0.7;  // away from the identity start, where f and g get no gradient
    const auto report = nsl::gradcheck(block, nsl::test::randn<double>(Shape{2, channels, 3, 4}, rng));
    CAPTURE(report.str());
    CHECK(report.worst_error < 1e-6);
    CHECK(report.tensors.size() == 5);  // input, f, g, h, gamma
  }
}

TEST_CASE("GlobalSimilarity2d equals the plain formula, and the identity while gamma is 0") {
  nsl::Rng rng(62);
  nsl::GlobalSimilarity2d<double> block(16, rng);
  const Tensor<double> x = nsl::test::randn<double>(Shape{2, 16, 3, 3}, rng);
  CHECK(nsl::test::max_relative_difference(block.forward(x), x) == 0.0);
  block.gamma_tensor()[0] = -1.3;
  const Tensor<double> y = block.forward(x);
  const Tensor<double> ref =
      nsl::global_similarity_reference(x, block.f_output(), block.g_output(), block.h_output(), -1.3);
  CHECK(nsl::test::max_relative_difference(y, ref) < 1e-13);
  // The projections are cosines (in [-1, 1]); the attention's columns sum to 1.
  CHECK(block.f_output().vec().cwiseAbs().maxCoeff() <= 1.0);
  const Tensor<double>& b = block.attention();
  REQUIRE(b.shape() == Shape{2, 9, 9});
  for (nsl::index img = 0; img < 2; ++img)
    for (nsl::index j = 0; j < 9; ++j) {
      double sum = 0.0;
      for (nsl::index i = 0; i < 9; ++i) sum += b[(img * 9 + i) * 9 + j];
      CHECK(sum == doctest::Approx(1.0).epsilon(1e-12));
    }
  CHECK(nsl::GlobalSimilarity2d<double>::key_channels(16) == 2);
  CHECK(nsl::GlobalSimilarity2d<double>::key_channels(4) == 1);
  CHECK_THROWS_AS(block.forward(Tensor<double>(Shape{2, 8, 3, 3})), nsl::ShapeError);
}

TEST_CASE("orthogonality_penalty matches its plain formula and its gradient the finite differences") {
  nsl::Rng rng(63);
  const Tensor<double> w = nsl::test::randn<double>(Shape{3, 5, 1, 1}, rng);
  Tensor<double> dw(w.shape());
  const double r = nsl::orthogonality_penalty<double>(w.view(), 2e-4, dw.view());
  CHECK(r == doctest::Approx(nsl::orthogonality_penalty_reference<double>(w.view(), 2e-4)).epsilon(1e-12));
  for (nsl::index i = 0; i < w.size(); ++i) {
    Tensor<double> plus = w, minus = w;
    plus[i] += 1e-5;
    minus[i] -= 1e-5;
    const double numeric = (nsl::orthogonality_penalty_reference<double>(plus.view(), 2e-4) -
                            nsl::orthogonality_penalty_reference<double>(minus.view(), 2e-4)) / 2e-5;
    CHECK(dw[i] == doctest::Approx(numeric).epsilon(1e-6));
  }
  // Orthonormal rows cost nothing; the gradient is added, not assigned.
  Tensor<double> eye(Shape{2, 2, 1, 1});
  eye[0] = eye[3] = 1.0;
  Tensor<double> g(eye.shape(), 5.0);
  CHECK(nsl::orthogonality_penalty<double>(eye.view(), 1.0, g.view()) == 0.0);
  CHECK(g[0] == 5.0);
}

TEST_CASE("CNN-9 sphere_attention: cosine SphereConvs, an attention block after each pool, gradcheck end to end") {
  nsl::Rng rng(65);
  nsl::Cnn9Options o;
  o.input_size = 6;  // 6 -> 3 -> 2 -> 1
  o.attention_widths[0] = 2;  // small: the check perturbs every parameter
  o.attention_widths[1] = 2;
  o.attention_widths[2] = 4;
  nsl::Sequential<double> net = nsl::cnn9<double>(nsl::Variant::sphere_attention, 1, 3, rng, o);
  const auto blocks = nsl::attention_blocks(net);
  REQUIRE(blocks.size() == 3);
  CHECK(net.name(13) == "stage1.attention");
  CHECK(dynamic_cast<nsl::SphereConv2d<double>*>(&net.layer(3)) != nullptr);  // stage1.conv1
  for (auto* b : blocks) b->gamma_tensor()[0] = 0.5;
  CHECK(net.output_shape(Shape{4, 1, 6, 6}) == Shape{4, 3, 1, 1});
  const auto report = nsl::gradcheck(net, nsl::test::randn<double>(Shape{4, 1, 6, 6}, rng));
  CAPTURE(report.str());
  CHECK(report.worst_error < 1e-4);  // ReLU and max-pool kinks, as for the other CNN-9 gradchecks
  // The default widths are the paper's SphereNet.
  nsl::Sequential<float> full = nsl::cnn9<float>(nsl::Variant::sphere_attention, 1, 10, rng);
  CHECK(full.output_shape(Shape{1, 1, 28, 28}) == Shape{1, 10, 1, 1});
  CHECK(nsl::attention_blocks(full).back()->channels() == 256);
  CHECK(nsl::parse_variant("sphere_attention") == nsl::Variant::sphere_attention);
}
