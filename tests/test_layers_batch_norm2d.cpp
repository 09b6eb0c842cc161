#include <doctest/doctest.h>

#include "nsl/check/gradcheck.hpp"
#include "nsl/layers/batch_norm2d.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;

TEST_CASE("BatchNorm2d passes gradcheck in training mode (batch statistics) and in evaluation mode") {
  nsl::Rng rng(400);
  // borrowing: the layer keeps a view of its input and recomputes x̂ from it
  for (bool borrowing : {false, true})
  for (bool training : {true, false}) {
    CAPTURE(borrowing);
    CAPTURE(training);
    nsl::BatchNorm2d<double> bn(3);
    bn.set_borrowing(borrowing);
    nsl::fill_normal<double>(bn.gamma().view(), rng, 1.0, 0.5);
    nsl::fill_normal<double>(bn.beta().view(), rng);
    nsl::fill_uniform<double>(bn.running_variance().view(), rng, 0.5, 2.0);
    nsl::fill_normal<double>(bn.running_mean().view(), rng);
    bn.set_training(training);
    const auto report = nsl::gradcheck(bn, nsl::test::randn<double>(Shape{4, 3, 3, 2}, rng));
    CAPTURE(report.str());
    CHECK(report.worst_error < 1e-6);
  }
}

TEST_CASE("BatchNorm2d gives the same gradients whether it stores x̂ or recomputes it from a borrowed input") {
  nsl::Rng rng(403);
  const auto x = nsl::random_normal<float>(Shape{5, 4, 6, 3}, rng, 2.0, 3.0);
  const auto dy = nsl::random_normal<float>(x.shape(), rng);
  for (bool training : {true, false}) {
    CAPTURE(training);
    nsl::BatchNorm2d<float> stored(4), recomputed(4);
    recomputed.set_borrowing(true);
    for (auto* bn : {&stored, &recomputed}) {
      bn->gamma().vec().setLinSpaced(0.5f, 2.0f);
      bn->running_variance().vec().setConstant(1.5f);
      bn->set_training(training);
    }
    Tensor<float> y1(x.shape()), y2(x.shape()), dx1(x.shape()), dx2(x.shape());
    stored.forward_into(x.view(), y1.view());
    recomputed.forward_into(x.view(), y2.view());
    stored.backward_into(dy.view(), dx1.view());
    recomputed.backward_into(dy.view(), dx2.view());
    CHECK(y1.vec() == y2.vec());
    CHECK(nsl::test::max_relative_difference(dx1, dx2) < 1e-5);
    CHECK(nsl::test::max_relative_difference<float>(stored.parameters()[0].grad, recomputed.parameters()[0].grad) < 1e-5);
    CHECK(nsl::test::max_relative_difference<float>(stored.parameters()[1].grad, recomputed.parameters()[1].grad) < 1e-5);
  }
}

TEST_CASE("in training mode each channel comes out with mean beta and standard deviation gamma") {
  nsl::Rng rng(401);
  nsl::BatchNorm2d<double> bn(2, {1e-8, 0.9});
  bn.gamma()[0] = 2.0;
  bn.beta()[1] = -1.0;
  auto x = nsl::random_normal<double>(Shape{8, 2, 5, 5}, rng, 3.0, 4.0);
  const Tensor<double> y = bn.forward(x);
  for (nsl::index c = 0; c < 2; ++c) {
    double sum = 0, squares = 0;
    for (nsl::index n = 0; n < 8; ++n)
      for (nsl::index p = 0; p < 25; ++p) sum += y[(n * 2 + c) * 25 + p];
    const double mean = sum / 200;
    for (nsl::index n = 0; n < 8; ++n)
      for (nsl::index p = 0; p < 25; ++p) squares += std::pow(y[(n * 2 + c) * 25 + p] - mean, 2);
    CHECK(mean == doctest::Approx(c == 0 ? 0.0 : -1.0).epsilon(1e-9));
    CHECK(std::sqrt(squares / 200) == doctest::Approx(c == 0 ? 2.0 : 1.0).epsilon(1e-6));
  }
}

TEST_CASE("running statistics are a debiased EMA of the batch statistics, and evaluation mode uses them") {
  nsl::Rng rng(402);
  nsl::BatchNorm2d<double> bn(1, {1e-3, 0.9});
  auto x1 = nsl::random_normal<double>(Shape{4, 1, 2, 2}, rng, 5.0, 2.0);
  auto x2 = nsl::random_normal<double>(Shape{4, 1, 2, 2}, rng, -1.0, 3.0);
  auto mean = [](const Tensor<double>& x) { return x.vec().mean(); };
  auto unbiased = [&](const Tensor<double>& x) { return (x.vec().array() - mean(x)).square().sum() / 15.0; };
  bn.forward(x1);
  CHECK(bn.running_mean()[0] == doctest::Approx(mean(x1)));  // the first update copies the batch
  CHECK(bn.running_variance()[0] == doctest::Approx(unbiased(x1)));
  bn.forward(x2);
  // The plain EMA from 0, 0.9 * 0.1 m1 + 0.1 m2, divided by 1 - 0.9^2.
  CHECK(bn.running_mean()[0] == doctest::Approx((0.09 * mean(x1) + 0.1 * mean(x2)) / 0.19));
  CHECK(bn.running_variance()[0] == doctest::Approx((0.09 * unbiased(x1) + 0.1 * unbiased(x2)) / 0.19));
  bn.set_training(false);
  const Tensor<double> y = bn.forward(x1);
  CHECK(y[3] == doctest::Approx((x1[3] - bn.running_mean()[0]) / std::sqrt(bn.running_variance()[0] + 1e-3)));
  CHECK(bn.running_mean()[0] == doctest::Approx((0.09 * mean(x1) + 0.1 * mean(x2)) / 0.19));  // unchanged
  CHECK(bn.buffers().size() == 3);

  nsl::BatchNorm2d<double> plain(1, {1e-3, 0.9, false});  // the reference code's plain EMA from (0, 1)
  plain.forward(x1);
  CHECK(plain.running_mean()[0] == doctest::Approx(0.1 * mean(x1)));
  CHECK(plain.running_variance()[0] == doctest::Approx(0.9 + 0.1 * unbiased(x1)));
}

namespace {
// K replicas that all hold the same batch: every sum over them is K times
// this replica's. Counts its calls.
class SameBatchReplicas : public nsl::ReplicaSum {
 public:
  explicit SameBatchReplicas(double k) : k_(k) {}
  void sum(double* values, std::size_t count) override {
    for (std::size_t i = 0; i < count; ++i) values[i] *= k_;
    ++calls;
  }
  int calls = 0;

 private:
  double k_;
};
}  // namespace

TEST_CASE("synchronised BatchNorm2d over K replicas of one batch computes that batch's BatchNorm, with K times its values") {
  nsl::Rng rng(404);
  const auto x = nsl::random_normal<double>(Shape{3, 2, 4, 2}, rng, 1.0, 2.0);
  const auto dy = nsl::random_normal<double>(x.shape(), rng);
  for (bool borrowing : {false, true})
    for (double k : {1.0, 3.0}) {
      CAPTURE(borrowing);
      CAPTURE(k);
      nsl::BatchNorm2d<double> alone(2), synced(2);
      SameBatchReplicas replicas(k);
      synced.set_replica_sum(&replicas);
      CHECK(synced.replica_sum() == &replicas);
      for (auto* bn : {&alone, &synced}) {
        bn->set_borrowing(borrowing);
        bn->gamma().vec() << 0.7, 1.3;
        bn->beta().vec() << 0.2, -0.1;
      }
      const Tensor<double> y_alone = alone.forward(x), y_synced = synced.forward(x);
      CHECK(replicas.calls == 2);  // the sums, then the squared deviations
      const Tensor<double> dx_alone = alone.backward(dy), dx_synced = synced.backward(dy);
      CHECK(replicas.calls == 3);  // the backward's two sums, in one call
      CHECK((y_synced.vec() - y_alone.vec()).cwiseAbs().maxCoeff() < 1e-14);
      CHECK((dx_synced.vec() - dx_alone.vec()).cwiseAbs().maxCoeff() < 1e-14);
      for (std::size_t i = 0; i < 2; ++i)  // this replica's own parameter gradients
        CHECK((synced.parameters()[i].grad.vec() - alone.parameters()[i].grad.vec()).cwiseAbs().maxCoeff() < 1e-13);
      CHECK((synced.running_mean().vec() - alone.running_mean().vec()).cwiseAbs().maxCoeff() < 1e-14);
      // Bessel's correction counts every replica's values: m = 24 k.
      const double m = 24.0 * k;
      const Eigen::VectorXd biased = alone.running_variance().vec() * (23.0 / 24.0);
      CHECK((synced.running_variance().vec() - biased * (m / (m - 1))).cwiseAbs().maxCoeff() < 1e-13);
    }
  // Evaluation mode and the unsynchronised layer never call it.
  nsl::BatchNorm2d<double> bn(2);
  SameBatchReplicas replicas(2.0);
  bn.set_replica_sum(&replicas);
  bn.set_training(false);
  bn.forward(x);
  bn.backward(dy);
  CHECK(replicas.calls == 0);
  bn.set_replica_sum(nullptr);
  bn.set_training(true);
  bn.forward(x);
  CHECK(replicas.calls == 0);
}

TEST_CASE("BatchNorm2d rejects bad options and wrong channel counts") {
  CHECK_THROWS_AS(nsl::BatchNorm2d<float>(0), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::BatchNorm2d<float>(3, {0.0, 0.9}), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::BatchNorm2d<float>(3, {1e-3, 1.0}), nsl::ArgumentError);
  nsl::BatchNorm2d<float> bn(3);
  CHECK_THROWS_WITH_AS(bn.forward(Tensor<float>(Shape{2, 4, 3, 3})),
                       "BatchNorm2d: per-channel statistics: expected [4], got [3]", nsl::ShapeError);
}
