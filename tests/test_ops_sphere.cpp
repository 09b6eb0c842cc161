#include <doctest/doctest.h>

#include <cmath>

#include "nsl/ops/sphere.hpp"
#include "test_util.hpp"

using nsl::AngularForm;
using nsl::Shape;
using nsl::Tensor;

TEST_CASE("angular responses map theta = 0, pi/2, pi to 1, 0, -1 and their derivatives match differences") {
  for (AngularForm f : {AngularForm::cosine, AngularForm::linear, AngularForm::sigmoid}) {
    CAPTURE(nsl::to_string(f));
    CHECK(nsl::angular_response(f, 1.0) == doctest::Approx(1.0));
    CHECK(nsl::angular_response(f, 0.0) == doctest::Approx(0.0));
    CHECK(nsl::angular_response(f, -1.0) == doctest::Approx(-1.0));
    for (double c : {-0.9, -0.4, 0.1, 0.6, 0.95}) {
      const double h = 1e-6;
      const double numeric = (nsl::angular_response(f, c + h) - nsl::angular_response(f, c - h)) / (2 * h);
      CHECK(nsl::angular_derivative(f, c) == doctest::Approx(numeric).epsilon(1e-7));
    }
  }
  CHECK(nsl::angular_response(AngularForm::linear, 0.5) == doctest::Approx(1.0 - 2.0 / 3.0));  // θ = π/3
  CHECK(nsl::parse_angular_form("sigmoid") == AngularForm::sigmoid);
  CHECK_THROWS_AS(nsl::parse_angular_form("tanh"), nsl::ArgumentError);
}

TEST_CASE("the local input norm equals the formula, for every geometry") {
  nsl::Rng rng(310);
  auto x = nsl::test::randn<double>(Shape{2, 3, 7, 6}, rng);
  for (nsl::ConvGeometry g : {nsl::ConvGeometry{3, 1, 1}, nsl::ConvGeometry{3, 2, 1}, nsl::ConvGeometry{5, 1, 2},
                              nsl::ConvGeometry{3, 1, 0}}) {
    const Shape out{2, 1, g.output_extent(7), g.output_extent(6)};
    Tensor<double> fast(out), reference(out);
    nsl::local_input_norm<double>(x.view(), g, fast.view());
    nsl::local_input_norm_reference<double>(x.view(), g, reference.view());
    CHECK(nsl::test::max_relative_difference(fast, reference) < 1e-13);
  }
  // A window of zeros has norm sqrt(eps).
  Tensor<double> zeros(Shape{1, 1, 3, 3}), n(Shape{1, 1, 3, 3});
  nsl::local_input_norm<double>(zeros.view(), {3, 1, 1}, n.view());
  CHECK(n[4] == doctest::Approx(std::sqrt(1e-4)));
}

TEST_CASE("the gradients of the local input norm and the filter norm match central differences") {
  nsl::Rng rng(311);
  const nsl::ConvGeometry g{3, 2, 1};
  auto x = nsl::test::randn<double>(Shape{2, 2, 5, 5}, rng);
  const Shape out{2, 1, 3, 3};
  auto dn = nsl::test::randn<double>(out, rng);
  auto loss = [&](const Tensor<double>& input) {
    Tensor<double> n(out);
    nsl::local_input_norm<double>(input.view(), g, n.view());
    return n.vec().dot(dn.vec());
  };
  Tensor<double> n(out), dx(x.shape(), 0.25);
  nsl::local_input_norm<double>(x.view(), g, n.view());
  nsl::local_input_norm_backward<double>(x.view(), g, n.view(), dn.view(), dx.view());
  for (nsl::index i = 0; i < x.size(); ++i) {
    Tensor<double> plus = x, minus = x;
    plus[i] += 1e-6;
    minus[i] -= 1e-6;
    CHECK(dx[i] - 0.25 == doctest::Approx((loss(plus) - loss(minus)) / 2e-6).epsilon(1e-6));  // accumulated
  }
  auto w = nsl::test::randn<double>(Shape{3, 2, 3, 3}, rng);
  auto da = nsl::test::randn<double>(Shape{3}, rng);
  Tensor<double> a(Shape{3}), dw(w.shape());
  nsl::filter_norm<double>(w.view(), a.view());
  CHECK(a[1] == doctest::Approx(std::sqrt(w.matrix().row(1).squaredNorm() + 1e-4)));
  nsl::filter_norm_backward<double>(w.view(), a.view(), da.view(), dw.view());
  for (nsl::index i = 0; i < w.size(); ++i) {
    Tensor<double> plus = w, minus = w, ap(Shape{3}), am(Shape{3});
    plus[i] += 1e-6;
    minus[i] -= 1e-6;
    nsl::filter_norm<double>(plus.view(), ap.view());
    nsl::filter_norm<double>(minus.view(), am.view());
    CHECK(dw[i] == doctest::Approx((ap.vec() - am.vec()).dot(da.vec()) / 2e-6).epsilon(1e-6));
  }
}
