#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "nsl/train/loss.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;

namespace {
Tensor<double> from_rows(const std::vector<std::vector<double>>& rows) {
  Tensor<double> t(Shape{nsl::index(rows.size()), nsl::index(rows[0].size())});
  for (std::size_t n = 0; n < rows.size(); ++n)
    for (std::size_t k = 0; k < rows[n].size(); ++k) t(nsl::index(n), nsl::index(k)) = rows[n][k];
  return t;
}
}  // namespace

TEST_CASE("cross-entropy with smoothing matches a hand computation, value and gradient") {
  // Two samples, three classes, ε = 0.3: targets 0.1 off the label, 0.8 on it.
  const Tensor<double> logits = from_rows({{1.0, 2.0, 3.0}, {0.0, 0.0, 0.0}});
  const std::vector<int> labels{2, 1};
  Tensor<double> dlogits(logits.shape(), 99.0);  // garbage: the gradient is assigned
  const auto result = nsl::softmax_cross_entropy<double>(logits.view(), labels, 0.3, dlogits.view());

  const double e1 = std::exp(1.0), e2 = std::exp(2.0), e3 = std::exp(3.0), sum = e1 + e2 + e3;
  const double p0[3] = {e1 / sum, e2 / sum, e3 / sum};
  const double loss0 = -(0.1 * std::log(p0[0]) + 0.1 * std::log(p0[1]) + 0.8 * std::log(p0[2]));
  const double loss1 = -(0.1 + 0.8 + 0.1) * std::log(1.0 / 3.0);  // uniform p: log 3 whatever t is
  CHECK(result.loss == doctest::Approx((loss0 + loss1) / 2).epsilon(1e-14));
  CHECK(result.correct == 1);  // sample 0 right; sample 1 is a three-way tie, taken as class 0

  const double t0[3] = {0.1, 0.1, 0.8}, t1[3] = {0.1, 0.8, 0.1};
  for (nsl::index k = 0; k < 3; ++k) {
    CAPTURE(k);
    CHECK(dlogits(0, k) == doctest::Approx((p0[k] - t0[k]) / 2).epsilon(1e-14));
    CHECK(dlogits(1, k) == doctest::Approx((1.0 / 3.0 - t1[k]) / 2).epsilon(1e-14));
  }
}

TEST_CASE("smoothing 0 is plain cross-entropy: the mean of -log softmax(z)_label") {
  nsl::Rng rng(8);
  const auto logits = nsl::test::randn<double>(Shape{6, 10}, rng);
  const std::vector<int> labels{0, 9, 3, 3, 7, 1};
  double expected = 0.0;
  for (nsl::index n = 0; n < 6; ++n) {
    double sum = 0.0;
    for (nsl::index k = 0; k < 10; ++k) sum += std::exp(logits(n, k));
    expected -= std::log(std::exp(logits(n, labels[std::size_t(n)])) / sum) / 6.0;
  }
  Tensor<double> dlogits(logits.shape());
  const auto result = nsl::softmax_cross_entropy<double>(logits.view(), labels, 0.0, dlogits.view());
  CHECK(result.loss == doctest::Approx(expected).epsilon(1e-13));
}

TEST_CASE("NSL.md's smoothing 0.01 targets 0.99 one-hot + 0.01 / classes") {
  // With equal logits p = 1/K, so dL/dz = (1/K - t) / N exposes t directly.
  const Tensor<double> logits(Shape{1, 10}, 0.0);
  Tensor<double> dlogits(logits.shape());
  nsl::softmax_cross_entropy<double>(logits.view(), {4}, 0.01, dlogits.view());
  for (nsl::index k = 0; k < 10; ++k) {
    const double target = (k == 4 ? 0.99 : 0.0) + 0.01 / 10;
    CHECK(dlogits(0, k) == doctest::Approx(0.1 - target).epsilon(1e-14));
  }
}

TEST_CASE("the logit gradient equals central differences of the loss") {
  nsl::Rng rng(31);
  Tensor<double> logits = nsl::test::randn<double>(Shape{4, 5}, rng);
  logits.vec() *= 3.0;
  const std::vector<int> labels{1, 4, 0, 2};
  Tensor<double> dlogits(logits.shape());
  nsl::softmax_cross_entropy<double>(logits.view(), labels, 0.1, dlogits.view());
  const double h = 1e-5;
  for (nsl::index i = 0; i < logits.size(); ++i) {
    CAPTURE(i);
    const double saved = logits[i];
    logits[i] = saved + h;
    const double plus = nsl::softmax_cross_entropy<double>(logits.view(), labels, 0.1, {}).loss;
    logits[i] = saved - h;
    const double minus = nsl::softmax_cross_entropy<double>(logits.view(), labels, 0.1, {}).loss;
    logits[i] = saved;
    CHECK(dlogits[i] == doctest::Approx((plus - minus) / (2 * h)).epsilon(1e-7));
  }
  // Each row of p - t sums to zero: both are distributions.
  for (nsl::index n = 0; n < 4; ++n)
    CHECK(std::abs(dlogits.matrix().row(n).sum()) < 1e-15);
}

TEST_CASE("the stable loss equals the plain formula on moderate logits, in float and double, N x K and N x K x 1 x 1") {
  nsl::Rng rng(12);
  const std::vector<int> labels{3, 0, 2, 2, 1, 4, 4, 0};
  for (double smoothing : {0.0, 0.01, 0.5, 1.0}) {
    CAPTURE(smoothing);
    const auto logits = nsl::test::randn<double>(Shape{8, 5, 1, 1}, rng);
    Tensor<double> d_fast(logits.shape()), d_ref(logits.shape());
    const auto fast = nsl::softmax_cross_entropy<double>(logits.view(), labels, smoothing, d_fast.view());
    const auto ref = nsl::softmax_cross_entropy_reference<double>(logits.view(), labels, smoothing, d_ref.view());
    CHECK(fast.loss == doctest::Approx(ref.loss).epsilon(1e-13));
    CHECK(fast.correct == ref.correct);
    CHECK(nsl::test::max_relative_difference(d_fast, d_ref) < 1e-13);

    const Tensor<float> logits_f = nsl::cast<float>(logits);
    Tensor<float> d_float(Shape{8, 5});
    const auto as_matrix = nsl::softmax_cross_entropy<float>(logits_f.view().reshaped(Shape{8, 5}), labels,
                                                            smoothing, d_float.view());
    CHECK(as_matrix.loss == doctest::Approx(ref.loss).epsilon(1e-6));
    CHECK(as_matrix.correct == ref.correct);
    const Tensor<float> d_ref_f = nsl::cast<float>(d_ref);
    CHECK(nsl::test::max_relative_difference<float>(d_float.view(), d_ref_f.view().reshaped(Shape{8, 5})) < 1e-5);
  }
}

TEST_CASE("huge logits (1e4) give a finite loss and gradient") {
  Tensor<float> logits(Shape{2, 3});
  const float values[6] = {1e4f, -1e4f, 0.0f, 1e4f, 1e4f + 8.0f, -3e4f};
  for (nsl::index i = 0; i < 6; ++i) logits[i] = values[i];
  Tensor<float> dlogits(logits.shape());
  const auto result = nsl::softmax_cross_entropy<float>(logits.view(), {1, 1}, 0.01, dlogits.view());
  CHECK(std::isfinite(result.loss));
  for (nsl::index i = 0; i < 6; ++i) CHECK(std::isfinite(dlogits[i]));
  // Sample 0: -log p = [0, 2e4, 1e4]; the label's term dominates.
  // Sample 1: -log p ≈ [8, 0, 4e4 + 8].
  const double off = 0.01 / 3, on = 0.99 + off;
  const double expected = (off * 0 + on * 2e4 + off * 1e4 + (off * 8 + on * 0 + off * (4e4 + 8))) / 2;
  CHECK(result.loss == doctest::Approx(expected).epsilon(1e-6));
  CHECK(result.correct == 1);
  CHECK(dlogits(0, 0) == doctest::Approx((1.0 - off) / 2).epsilon(1e-6));
  CHECK(dlogits(0, 1) == doctest::Approx(-on / 2).epsilon(1e-6));
}

TEST_CASE("an empty gradient view skips the gradient and the result does not change") {
  nsl::Rng rng(4);
  const auto logits = nsl::test::randn<double>(Shape{3, 4}, rng);
  Tensor<double> dlogits(logits.shape());
  const auto with = nsl::softmax_cross_entropy<double>(logits.view(), {0, 1, 2}, 0.1, dlogits.view());
  const auto without = nsl::softmax_cross_entropy<double>(logits.view(), {0, 1, 2}, 0.1, {});
  CHECK(with.loss == without.loss);
  CHECK(with.correct == without.correct);
}

TEST_CASE("cross-entropy rejects labels outside 0 to classes - 1, wrong counts, shapes and smoothing") {
  const Tensor<float> logits(Shape{2, 10});
  Tensor<float> dlogits(logits.shape());
  CHECK_THROWS_WITH_AS(nsl::softmax_cross_entropy<float>(logits.view(), {3, 10}, 0.0, dlogits.view()),
                       "softmax_cross_entropy: labels: expected each in [0, 10), got 10 for sample 1",
                       nsl::ArgumentError);
  CHECK_THROWS_WITH_AS(nsl::softmax_cross_entropy<float>(logits.view(), {-1, 0}, 0.0, dlogits.view()),
                       "softmax_cross_entropy: labels: expected each in [0, 10), got -1 for sample 0",
                       nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::softmax_cross_entropy_reference<float>(logits.view(), {0, 11}, 0.0, dlogits.view()),
                  nsl::ArgumentError);
  CHECK_THROWS_WITH_AS(nsl::softmax_cross_entropy<float>(logits.view(), {1, 2, 3}, 0.0, dlogits.view()),
                       "softmax_cross_entropy: labels: expected 2 (one per sample), got 3",
                       nsl::ShapeError);
  CHECK_THROWS_WITH_AS(nsl::softmax_cross_entropy<float>(logits.view(), {1, 2}, 1.5, dlogits.view()),
                       "softmax_cross_entropy: smoothing: expected in [0, 1], got 1.5",
                       nsl::ArgumentError);
  const Tensor<float> spatial(Shape{2, 10, 2, 2});
  CHECK_THROWS_WITH_AS(nsl::softmax_cross_entropy<float>(spatial.view(), {1, 2}, 0.0, {}),
                       "softmax_cross_entropy: logits: expected [N, classes] or [N, classes, 1, 1], got [2, 10, 2, 2]",
                       nsl::ShapeError);
  Tensor<float> wrong_gradient(Shape{2, 9});
  CHECK_THROWS_WITH_AS(nsl::softmax_cross_entropy<float>(logits.view(), {1, 2}, 0.0, wrong_gradient.view()),
                       "softmax_cross_entropy: logit gradient: expected [2, 10], got [2, 9]",
                       nsl::ShapeError);
}
