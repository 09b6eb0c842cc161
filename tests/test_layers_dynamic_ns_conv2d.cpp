#include <doctest/doctest.h>

#include "nsl/check/gradcheck.hpp"
#include "nsl/layers/conv2d.hpp"
#include "nsl/layers/dynamic_ns_conv2d.hpp"
#include "test_util.hpp"

using nsl::PredictorOptions;
using nsl::Shape;
using nsl::Structure;
using nsl::Tensor;

namespace {
struct DynamicVariant {
  const char* name;
  Structure structure;
  PredictorOptions predictor;
};
const DynamicVariant variants[] = {{"dynamic DNS", Structure::diagonal, PredictorOptions::dns()},
                            {"dynamic UNS", Structure::channel_shared, PredictorOptions::uns()},
                            {"dynamic DNS, full sphere", Structure::diagonal, PredictorOptions::dns_sphere()}};
}  // namespace

TEST_CASE("DynamicNSConv2d passes gradcheck on the input, W, bias and every predictor parameter") {
  nsl::Rng rng(430);
  for (const DynamicVariant& v : variants)
    for (nsl::index stride : {1, 2}) {
      CAPTURE(v.name); CAPTURE(stride);
      nsl::DynamicNSConvOptions options{stride, true, v.predictor};
      options.predictor.hidden = 3;
      options.predictor.second_scale = 0.3;  // G well away from zero
      nsl::DynamicNSConv2d<double> layer(2, 3, 3, v.structure, options, rng);  // C_in != C_out
      nsl::fill_normal<double>(layer.bias().view(), rng);
      const auto report = nsl::gradcheck(layer, nsl::test::randn<double>(Shape{2, 2, 5, 5}, rng));
      CAPTURE(report.str());
      CHECK(report.worst_error < 1e-6);
      CHECK(report.tensors.size() == layer.parameters().size() + 1);
    }
}

TEST_CASE("DynamicNSConv2d with a 5x5 kernel passes gradcheck") {
  nsl::Rng rng(431);
  nsl::DynamicNSConvOptions options{1, false, PredictorOptions::dns()};
  options.predictor.hidden = 2;
  options.predictor.second_scale = 0.3;
  nsl::DynamicNSConv2d<double> layer(2, 2, 5, Structure::diagonal, options, rng);
  const auto report = nsl::gradcheck(layer, nsl::test::randn<double>(Shape{2, 2, 5, 4}, rng));
  CAPTURE(report.str());
  CHECK(report.worst_error < 1e-6);
}

TEST_CASE("with the predictor's last layer zeroed a dynamic layer equals Conv2d") {
  nsl::Rng rng(432);
  auto x = nsl::test::randn<float>(Shape{3, 4, 9, 9}, rng);
  for (const DynamicVariant& v : variants)
    for (nsl::index stride : {1, 2}) {
      CAPTURE(v.name); CAPTURE(stride);
      nsl::DynamicNSConv2d<float> layer(4, 6, 3, v.structure, {stride, true, v.predictor}, rng);
      nsl::fill_normal<float>(layer.bias().view(), rng);
      layer.predictor().conv2().weight().set_zero();  // and BN's beta starts at 0
      nsl::Conv2d<float> conv(4, 6, 3, {stride, 1, true});
      conv.weight() = layer.weight();
      conv.bias() = layer.bias();
      CHECK(nsl::test::max_relative_difference(layer.forward(x), conv.forward(x)) < 1e-6);
      CHECK(layer.predicted_similarity().vec().cwiseAbs().maxCoeff() == 0.0f);
    }
}

TEST_CASE("with the predictor's last BN scale started at 0 a new dynamic layer is exactly Conv2d, and learns") {
  nsl::Rng rng(434);
  auto x = nsl::test::randn<double>(Shape{2, 3, 7, 7}, rng);
  for (const DynamicVariant& v : variants) {
    CAPTURE(v.name);
    nsl::DynamicNSConvOptions options{1, true, v.predictor};
    options.predictor.hidden = 3;
    options.predictor.second_scale = 0.3;  // G would be far from zero with scale 1
    options.predictor.last_bn_scale = 0.0;
    nsl::DynamicNSConv2d<double> layer(3, 4, 3, v.structure, options, rng);
    nsl::fill_normal<double>(layer.bias().view(), rng);
    nsl::Conv2d<double> conv(3, 4, 3, {1, 1, true});
    conv.weight() = layer.weight();
    conv.bias() = layer.bias();
    const Tensor<double> y = layer.forward(x);
    if (!v.predictor.batch_norm) {  // UNS has no BN: the option changes nothing
      CHECK(nsl::test::max_relative_difference(y, conv.forward(x)) > 1e-3);
      continue;
    }
    CHECK(layer.predicted_similarity().vec().cwiseAbs().maxCoeff() == 0.0);  // G = 0 * x_hat + 0
    CHECK(nsl::test::max_relative_difference(y, conv.forward(x)) < 1e-12);
    // The start is not a fixed point: BN2's scale gets a gradient, and the
    // whole layer passes gradcheck there.
    const auto report = nsl::gradcheck(layer, x);
    CAPTURE(report.str());
    CHECK(report.worst_error < 1e-6);
    nsl::zero_gradients(layer.parameters());
    Tensor<double> dy = nsl::test::randn<double>(y.shape(), rng);
    layer.forward(x);
    layer.backward(dy.view());
    bool scale_learns = false;
    for (const auto& p : layer.parameters())
      if (p.name == "predictor.bn2.gamma") scale_learns = p.grad.vec().cwiseAbs().maxCoeff() > 1e-6;
    CHECK(scale_learns);
  }
}

TEST_CASE("a new dynamic layer starts near the plain convolution (in evaluation mode, before BN statistics)") {
  nsl::Rng rng(433);
  auto x = nsl::test::randn<float>(Shape{2, 4, 8, 8}, rng);
  for (const DynamicVariant& v : variants) {
    if (v.predictor.sphere) continue;  // cosine outputs do not scale with the weights
    CAPTURE(v.name);
    nsl::DynamicNSConv2d<float> layer(4, 6, 3, v.structure, {1, false, v.predictor}, rng);
    layer.set_training(false);
    nsl::Conv2d<float> conv(4, 6, 3, {1, 1, false});
    conv.weight() = layer.weight();
    CHECK(nsl::test::max_relative_difference(layer.forward(x), conv.forward(x)) < 1e-2);
  }
}

TEST_CASE("DynamicNSConv2d names its parameters and rejects even kernels and bad structures") {
  nsl::Rng rng(434);
  nsl::DynamicNSConv2d<float> layer(3, 4, 3, Structure::diagonal, {}, rng);
  const auto params = layer.parameters();
  CHECK(params[0].name == "weight");
  CHECK(params[1].name == "predictor.conv1.weight");
  CHECK(params.back().name == "predictor.bn2.beta");
  CHECK_THROWS_AS(nsl::DynamicNSConv2d<float>(3, 4, 4, Structure::diagonal, {}, rng), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::DynamicNSConv2d<float>(3, 4, 3, Structure::full, {}, rng), nsl::ArgumentError);
  CHECK_THROWS_AS(layer.forward(Tensor<float>(Shape{1, 2, 8, 8})), nsl::ShapeError);
}

TEST_CASE("mean_kernel_shape is all ones for a zero predictor and the mean row norm of I + G otherwise") {
  nsl::Rng rng(77);
  const auto x = nsl::test::randn<double>(Shape{2, 3, 5, 5}, rng);
  for (const DynamicVariant& v : variants) {
    CAPTURE(v.name);
    nsl::DynamicNSConv2d<double> layer(3, 4, 3, v.structure, {1, false, v.predictor}, rng);
    CHECK_THROWS_WITH_AS(nsl::mean_kernel_shape(layer), doctest::Contains("forward"), nsl::Error);
    layer.predictor().conv2().weight().set_zero();
    layer.forward(x);
    const nsl::Vector<double> ones = nsl::mean_kernel_shape(layer);
    REQUIRE(ones.size() == 9);
    CHECK((ones.array() - 1.0).abs().maxCoeff() < 1e-12);

    nsl::fill_normal<double>(layer.predictor().conv2().weight().view(), rng, 0.0, 0.5);
    layer.forward(x);
    const nsl::Tensor<double>& g = layer.predicted_similarity();
    const nsl::index R = g.dim(1), P = g.dim(2) * g.dim(3);
    const nsl::Vector<double> shape = nsl::mean_kernel_shape(layer);
    // Slot 4 (the centre), written out: the norm of row 4 of I + G(p), averaged.
    double centre = 0.0;
    for (nsl::index n = 0; n < 2; ++n)
      for (nsl::index p = 0; p < P; ++p) {
        double row = 0.0;
        for (nsl::index r = 0; r < 9; ++r) {
          const double m = (r == 4 ? 1.0 : 0.0) + (R == 9 ? (r == 4 ? g[(n * R + 4) * P + p] : 0.0)
                                                           : g[(n * R + 4 * 9 + r) * P + p]);
          row += m * m;
        }
        centre += std::sqrt(row) / double(2 * P);
      }
    CHECK(shape[4] == doctest::Approx(centre).epsilon(1e-12));
    CHECK((shape.array() - 1.0).abs().maxCoeff() > 1e-3);
  }
}

TEST_CASE("similarity_magnitude is 0 for G = 0 and the RMS of ||G(p)||_F / sqrt(K) otherwise") {
  nsl::Rng rng(78);
  const auto x = nsl::test::randn<double>(Shape{2, 3, 5, 5}, rng);
  for (const DynamicVariant& v : variants) {
    CAPTURE(v.name);
    nsl::DynamicNSConv2d<double> layer(3, 4, 3, v.structure, {2, false, v.predictor}, rng);
    CHECK_THROWS_WITH_AS(nsl::similarity_magnitude(layer), doctest::Contains("forward"), nsl::Error);
    layer.predictor().conv2().weight().set_zero();
    layer.predictor().conv2().bias().set_zero();
    layer.forward(x);
    CHECK(nsl::similarity_magnitude(layer) == 0.0);

    nsl::fill_normal<double>(layer.predictor().conv2().weight().view(), rng, 0.0, 0.5);
    layer.forward(x);
    const nsl::Tensor<double>& g = layer.predicted_similarity();
    const nsl::index R = g.dim(1), P = g.dim(2) * g.dim(3);
    REQUIRE(P == 9);  // stride 2 on 5x5: 3x3 output pixels
    // Written out per pixel: ||G(p)||_F^2 / 9, averaged, square root.
    double mean_square = 0.0;
    for (nsl::index n = 0; n < 2; ++n)
      for (nsl::index p = 0; p < P; ++p) {
        double frobenius = 0.0;
        for (nsl::index r = 0; r < R; ++r) frobenius += g[(n * R + r) * P + p] * g[(n * R + r) * P + p];
        mean_square += frobenius / 9.0 / double(2 * P);
      }
    CHECK(nsl::similarity_magnitude(layer) == doctest::Approx(std::sqrt(mean_square)).epsilon(1e-12));
    CHECK(nsl::similarity_magnitude(layer) > 1e-3);
  }
}
