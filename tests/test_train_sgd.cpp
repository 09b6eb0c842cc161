#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "nsl/layers/conv2d.hpp"
#include "nsl/train/sgd.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;

namespace {
// One parameter of two elements with a fixed gradient.
struct TwoNumbers {
  Tensor<double> value{Shape{2}}, grad{Shape{2}};
  TwoNumbers(double w0, double w1, double g0, double g1) {
    value[0] = w0; value[1] = w1;
    grad[0] = g0; grad[1] = g1;
  }
  nsl::Parameter<double> parameter(bool decay) { return {"w", value.view(), grad.view(), decay}; }
};
}  // namespace

TEST_CASE("two SGD steps by hand: g = dL/dw + λ w, v = μ v + g, w -= lr v") {
  TwoNumbers p(1.0, -2.0, 0.5, 0.25);
  nsl::Sgd<double> sgd({p.parameter(true)}, {0.9, 0.1});
  sgd.step(0.5);
  // g = [0.5 + 0.1, 0.25 - 0.2] = [0.6, 0.05] = v;  w = [1 - 0.3, -2 - 0.025]
  CHECK(sgd.velocities()[0][0] == doctest::Approx(0.6).epsilon(1e-15));
  CHECK(sgd.velocities()[0][1] == doctest::Approx(0.05).epsilon(1e-15));
  CHECK(p.value[0] == doctest::Approx(0.7).epsilon(1e-15));
  CHECK(p.value[1] == doctest::Approx(-2.025).epsilon(1e-15));
  // The gradient buffer is left as it was.
  CHECK(p.grad[0] == 0.5);
  CHECK(p.grad[1] == 0.25);
  sgd.step(0.5);
  // g = [0.5 + 0.07, 0.25 - 0.2025] = [0.57, 0.0475];  v = 0.9 [0.6, 0.05] + g = [1.11, 0.0925]
  CHECK(sgd.velocities()[0][0] == doctest::Approx(1.11).epsilon(1e-14));
  CHECK(sgd.velocities()[0][1] == doctest::Approx(0.0925).epsilon(1e-14));
  CHECK(p.value[0] == doctest::Approx(0.7 - 0.555).epsilon(1e-14));
  CHECK(p.value[1] == doctest::Approx(-2.025 - 0.04625).epsilon(1e-14));
}

TEST_CASE("weight decay is skipped for parameters whose flag is off") {
  TwoNumbers decayed(1.0, 2.0, 0.0, 0.0), kept(1.0, 2.0, 0.0, 0.0);
  nsl::Sgd<double> sgd({decayed.parameter(true), kept.parameter(false)}, {0.0, 0.5});
  sgd.step(0.1);
  CHECK(decayed.value[0] == doctest::Approx(1.0 - 0.1 * 0.5 * 1.0));
  CHECK(decayed.value[1] == doctest::Approx(2.0 - 0.1 * 0.5 * 2.0));
  CHECK(kept.value[0] == 1.0);  // zero gradient, no decay: untouched
  CHECK(kept.value[1] == 2.0);
}

TEST_CASE("scale_parameters gives a group of parameters, chosen by name, its own multiples of lr and λ") {
  TwoNumbers plain(1.0, 2.0, 0.5, -0.5), head(1.0, 2.0, 0.5, -0.5), tail(1.0, 2.0, 0.5, -0.5);
  nsl::Sgd<double> sgd({{"conv.weight", plain.value.view(), plain.grad.view(), true},
                        {"predictor.conv1.weight", head.value.view(), head.grad.view(), true},
                        {"predictor.bn1.gamma", tail.value.view(), tail.grad.view(), false}},
                       {0.0, 0.1});
  CHECK(sgd.scale_parameters("predictor.", {2.0, 1.0}) == 2);
  CHECK(sgd.scale_parameters("predictor.conv", {2.0, 10.0}) == 1);  // replaces the multiples it had
  CHECK(sgd.scale_parameters("no such name", {3.0, 3.0}) == 0);
  CHECK(sgd.scale(0).lr == 1.0);
  CHECK(sgd.scale(1).weight_decay == 10.0);
  CHECK(sgd.scale(2).lr == 2.0);
  CHECK(sgd.scale(2).weight_decay == 1.0);
  sgd.step(0.5);
  // w -= lr_scale lr (g + decay_scale λ w) with μ = 0.
  CHECK(plain.value[0] == doctest::Approx(1.0 - 0.5 * (0.5 + 0.1 * 1.0)).epsilon(1e-15));
  CHECK(plain.value[1] == doctest::Approx(2.0 - 0.5 * (-0.5 + 0.1 * 2.0)).epsilon(1e-15));
  CHECK(head.value[0] == doctest::Approx(1.0 - 1.0 * (0.5 + 1.0 * 1.0)).epsilon(1e-15));
  CHECK(head.value[1] == doctest::Approx(2.0 - 1.0 * (-0.5 + 1.0 * 2.0)).epsilon(1e-15));
  CHECK(tail.value[0] == doctest::Approx(1.0 - 1.0 * 0.5).epsilon(1e-15));  // its decay flag is off: no λ
  CHECK(tail.value[1] == doctest::Approx(2.0 + 1.0 * 0.5).epsilon(1e-15));

  // Multiples of 1 are the plain update, bit for bit.
  TwoNumbers a(0.3, -0.7, 0.11, 0.13), b(0.3, -0.7, 0.11, 0.13);
  nsl::Sgd<double> one({a.parameter(true)}, {0.9, 5e-4}), scaled({b.parameter(true)}, {0.9, 5e-4});
  CHECK(scaled.scale_parameters("w", {1.0, 1.0}) == 1);
  for (int i = 0; i < 3; ++i) {
    one.step(0.1);
    scaled.step(0.1);
  }
  CHECK(a.value[0] == b.value[0]);
  CHECK(a.value[1] == b.value[1]);

  CHECK_THROWS_WITH_AS(sgd.scale_parameters("predictor.", {-1.0, 1.0}),
                       "Sgd::scale_parameters: expected finite multiples >= 0, got lr x-1 and weight decay x1 for "
                       "'predictor.'",
                       nsl::ArgumentError);
  CHECK_THROWS_AS(sgd.scale_parameters("predictor.", {1.0, std::numeric_limits<double>::infinity()}),
                  nsl::ArgumentError);
  CHECK(sgd.scale(1).weight_decay == 10.0);  // a rejected call changes nothing
}

TEST_CASE("velocities persist across steps, are allocated once, and reset to zero on request") {
  TwoNumbers p(0.0, 0.0, 1.0, -1.0);
  nsl::Sgd<double> sgd({p.parameter(false)}, {0.5, 0.0});
  const double* storage = sgd.velocities()[0].data();
  // v_t = 1 + 0.5 + ... + 0.5^(t-1) for a constant gradient of 1.
  double expected_v = 0.0, expected_w = 0.0;
  for (int t = 0; t < 5; ++t) {
    sgd.step(1.0);
    expected_v = 0.5 * expected_v + 1.0;
    expected_w -= expected_v;
    CHECK(sgd.velocities()[0][0] == doctest::Approx(expected_v).epsilon(1e-15));
    CHECK(sgd.velocities()[0][1] == doctest::Approx(-expected_v).epsilon(1e-15));
    CHECK(p.value[0] == doctest::Approx(expected_w).epsilon(1e-15));
  }
  CHECK(sgd.velocities()[0].data() == storage);
  sgd.reset_velocities();
  CHECK(sgd.velocities()[0].vec().isZero(0.0));
}

TEST_CASE("momentum 0 is plain SGD and learning rate 0 changes nothing") {
  TwoNumbers p(3.0, 4.0, 1.0, 2.0);
  nsl::Sgd<double> sgd({p.parameter(true)}, {0.0, 0.0});
  sgd.step(0.0);
  CHECK(p.value[0] == 3.0);
  CHECK(p.value[1] == 4.0);
  sgd.step(0.25);
  sgd.step(0.25);
  CHECK(p.value[0] == doctest::Approx(2.5));
  CHECK(p.value[1] == doctest::Approx(3.0));
}

TEST_CASE("Sgd over a Conv2d's parameters decays the weight but not the bias - zero_gradients clears both") {
  nsl::Rng rng(6);
  nsl::Conv2d<float> conv(2, 3, 3, {1, 1, true}, rng);
  nsl::fill_normal<float>(conv.bias().view(), rng);
  nsl::fill_normal<float>(conv.weight_grad().view(), rng);
  nsl::fill_normal<float>(conv.bias_grad().view(), rng);
  const Tensor<float> w0 = conv.weight(), b0 = conv.bias();
  const Tensor<float> gw = conv.weight_grad(), gb = conv.bias_grad();
  nsl::Sgd<float> sgd(conv.parameters());  // NSL.md defaults: μ 0.9, λ 5e-4
  CHECK(sgd.options().momentum == 0.9);
  CHECK(sgd.options().weight_decay == 5e-4);
  CHECK(sgd.velocities().size() == 2u);
  sgd.step(0.1);
  Tensor<float> w_expected = w0, b_expected = b0;
  w_expected.vec() -= 0.1f * (gw.vec() + 5e-4f * w0.vec());
  b_expected.vec() -= 0.1f * gb.vec();
  CHECK(nsl::test::max_relative_difference(conv.weight(), w_expected) < 1e-6);
  CHECK(nsl::test::max_relative_difference(conv.bias(), b_expected) < 1e-6);
  sgd.zero_gradients();
  CHECK(conv.weight_grad().vec().isZero(0.0f));
  CHECK(conv.bias_grad().vec().isZero(0.0f));
}

TEST_CASE("Sgd rejects bad hyper-parameters, mismatched gradients and a velocity of the wrong shape") {
  TwoNumbers p(1.0, 1.0, 1.0, 1.0);
  CHECK_THROWS_WITH_AS(nsl::Sgd<double>({p.parameter(true)}, {1.0, 0.0}),
                       "Sgd: momentum: expected in [0, 1), got 1", nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::Sgd<double>({p.parameter(true)}, {-0.1, 0.0}), nsl::ArgumentError);
  CHECK_THROWS_WITH_AS(nsl::Sgd<double>({p.parameter(true)}, {0.9, -1e-4}),
                       "Sgd: weight decay: expected >= 0, got -0.0001", nsl::ArgumentError);
  nsl::Sgd<double> sgd({p.parameter(true)});
  CHECK_THROWS_WITH_AS(sgd.step(-0.1), "Sgd::step: learning rate: expected >= 0, got -0.1",
                       nsl::ArgumentError);
  CHECK_THROWS_AS(sgd.step(std::numeric_limits<double>::quiet_NaN()), nsl::ArgumentError);
  CHECK(p.value[0] == 1.0);  // a rejected step changes nothing

  Tensor<double> short_grad(Shape{1});
  CHECK_THROWS_WITH_AS(nsl::Sgd<double>({{"m", p.value.view(), short_grad.view(), false}}),
                       "Sgd: m gradient: expected [2], got [1]", nsl::ShapeError);
  sgd.velocities()[0] = Tensor<double>(Shape{3});  // a bad checkpoint
  CHECK_THROWS_WITH_AS(sgd.step(0.1), "Sgd::step: velocity: expected [2], got [3]", nsl::ShapeError);
}
