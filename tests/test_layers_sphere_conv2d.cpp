#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "nsl/check/gradcheck.hpp"
#include "nsl/layers/sphere_conv2d.hpp"
#include "test_util.hpp"

using nsl::AngularForm;
using nsl::Shape;
using nsl::Tensor;

namespace sphere_conv_cases {
/// A row of the gradcheck tables: the response and which norms it uses.
struct Form {
  AngularForm form;
  bool input_norm, filter_norm;
  nsl::SphereConvOptions options(nsl::index stride, bool bias = false) const {
    return {stride, 1, input_norm, filter_norm, form, bias};
  }
  std::string describe() const {
    return std::string(nsl::to_string(form)) + (input_norm ? ", input norm" : "") + (filter_norm ? ", filter norm" : "");
  }
};
}  // namespace sphere_conv_cases
using sphere_conv_cases::Form;

TEST_CASE("SphereConv2d passes gradcheck for the cosine, linear and sigmoid forms, and the normalised conv") {
  nsl::Rng rng(410);
  for (const Form c : {Form{AngularForm::cosine, true, true}, Form{AngularForm::linear, true, true},
                       Form{AngularForm::sigmoid, true, true}, Form{AngularForm::identity, true, false},
                       Form{AngularForm::cosine, false, true}})
    for (nsl::index stride : {1, 2}) {
      const std::string form = c.describe();
      CAPTURE(form);
      CAPTURE(stride);
      nsl::SphereConv2d<double> layer(3, 4, 3, c.options(stride), rng);
      const auto x = nsl::test::randn<double>(Shape{2, 3, 6, 5}, rng);
      // Stay away from θ = 0 and π, where linear and sigmoid have no derivative.
      const Tensor<double> y = layer.forward(x);
      if (c.input_norm && c.filter_norm) REQUIRE(y.vec().cwiseAbs().maxCoeff() < 0.99);
      const auto report = nsl::gradcheck(layer, x);
      CAPTURE(report.str());
      CHECK(report.worst_error < 1e-6);
    }
}

TEST_CASE("a SphereConv2d with a bias adds it after the response and passes gradcheck") {
  nsl::Rng rng(412);
  for (const Form c : {Form{AngularForm::cosine, true, true}, Form{AngularForm::sigmoid, true, true},
                       Form{AngularForm::identity, true, false}, Form{AngularForm::identity, false, false}}) {
    const std::string form = c.describe();
    CAPTURE(form);
    nsl::SphereConv2d<double> with(3, 4, 3, c.options(1, true), rng);
    nsl::SphereConv2d<double> without(3, 4, 3, c.options(1));
    without.weight() = with.weight();
    REQUIRE(with.parameters().size() == 2);
    CHECK(with.parameters()[1].name == "bias");
    CHECK(without.parameters().size() == 1);
    with.bias() = nsl::test::randn<double>(Shape{4}, rng);
    const auto x = nsl::test::randn<double>(Shape{2, 3, 5, 4}, rng);
    const Tensor<double> y = with.forward(x), base = without.forward(x);
    double worst = 0.0;
    for (nsl::index i = 0; i < y.size(); ++i)
      worst = std::max(worst, std::abs(y[i] - base[i] - with.bias()[(i / 20) % 4]));
    CHECK(worst < 1e-14);
    nsl::InferenceWorkspace ws;
    CHECK(nsl::test::max_relative_difference(with.infer(x, ws), y) == 0.0);
    const auto report = nsl::gradcheck(with, x);
    CAPTURE(report.str());
    CHECK(report.worst_error < 1e-6);
  }
}

TEST_CASE("a cosine SphereConv2d outputs cos(angle between filter and patch) and ignores their scale") {
  nsl::Rng rng(411);
  nsl::SphereConv2d<double> layer(2, 3, 3, {1, 0, true, true, AngularForm::cosine}, rng);
  auto x = nsl::test::randn<double>(Shape{1, 2, 3, 3}, rng);  // one patch
  const Tensor<double> y = layer.forward(x);
  for (nsl::index o = 0; o < 3; ++o) {
    const auto w = layer.weight().matrix().row(o);
    const double expected = w.dot(x.vec().transpose()) / (std::sqrt(w.squaredNorm() + 1e-4) *
                                                         std::sqrt(x.vec().squaredNorm() + 1e-4));
    CHECK(y[o] == doctest::Approx(expected).epsilon(1e-12));
  }
  Tensor<double> scaled = x;
  scaled.vec() *= 100.0;
  layer.weight().vec() *= 7.0;
  // Invariant up to the eps = 1e-4 inside both square roots.
  CHECK(nsl::test::max_relative_difference(layer.forward(scaled), y) < 1e-4);
}

TEST_CASE("angular forms other than cosine need both norms") {
  CHECK_THROWS_WITH_AS(nsl::SphereConv2d<float>(3, 4, 3, {1, 1, true, false, AngularForm::linear}),
                       doctest::Contains("needs an angle"), nsl::ArgumentError);
}
