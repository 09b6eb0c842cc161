// nsl/cuda/loss.cuh against softmax_cross_entropy of nsl/train/loss.hpp.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda_test_util.cuh"
#include "nsl/cuda/loss.cuh"

using nsl::Cuda;
using nsl::Shape;
using nsl::Tensor;

namespace {
std::vector<int> random_labels(nsl::index samples, nsl::index classes, nsl::Rng& rng) {
  std::vector<int> labels(static_cast<std::size_t>(samples));
  for (int& y : labels) y = static_cast<int>(rng.below(static_cast<std::uint64_t>(classes)));
  return labels;
}

// The loss, the count and (unless skipped) dlogits from garbage, for one batch;
// `workspace` is reused across calls.
template <class T>
void check_loss(const Tensor<T>& logits, const std::vector<int>& labels, double smoothing, bool gradient,
                nsl::CrossEntropyWorkspace<T>& workspace) {
  CAPTURE(logits.shape());
  CAPTURE(smoothing);
  CAPTURE(gradient);
  Tensor<T> dlogits(logits.shape(), T(7));
  const nsl::LossResult r = nsl::softmax_cross_entropy<T>(logits.view(), labels, smoothing,
                                                          gradient ? dlogits.view() : nsl::TensorView<T>());
  const Tensor<T, Cuda> logits_d = nsl::to_device<T>(logits);
  Tensor<T, Cuda> dlogits_d(logits.shape(), T(7));
  const nsl::LossResult r_d = nsl::softmax_cross_entropy<T>(
      logits_d.view(), labels, smoothing, gradient ? dlogits_d.view() : nsl::TensorView<T, Cuda>(), workspace);
  CHECK(r_d.correct == r.correct);
  CHECK(std::abs(r_d.loss - r.loss) <= 1e-12 * std::max(std::abs(r.loss), 1.0));
  nsl::test::check_close<T>("dlogits", dlogits_d.view(), dlogits.view());  // both still 7 without a gradient
}

template <class T>
void check_losses(nsl::Rng& rng) {
  using nsl::test::random_extent;
  nsl::CrossEntropyWorkspace<T> workspace;  // grows and shrinks with the batch
  for (int trial = 0; trial < 6; ++trial) {
    const nsl::index N = trial == 0 ? 1 : random_extent(rng, 1, 40), K = trial == 1 ? 1 : random_extent(rng, 2, 12);
    const Shape shape = trial % 2 ? Shape{N, K} : Shape{N, K, 1, 1};  // plain and CNN-9's score map
    Tensor<T> logits = nsl::test::randn<T>(shape, rng);
    for (nsl::index i = 0; i < logits.size(); ++i) logits[i] *= T(3);
    const std::vector<int> labels = random_labels(N, K, rng);
    for (const double smoothing : {0.0, 0.01, 0.3})
      for (const bool gradient : {true, false}) check_loss<T>(logits, labels, smoothing, gradient, workspace);
  }
  // Logits of 1e4 stay finite; ties of the top logit go to the first.
  Tensor<T> large(Shape{3, 4}, T(1e4));
  large(0, 2) = T(-1e4);
  large(1, 0) = T(2e4);
  check_loss<T>(large, {0, 0, 3}, 0.01, true, workspace);
}
}  // namespace

TEST_CASE("cuda softmax cross-entropy equals the CPU's, with and without smoothing and gradient") {
  nsl::Rng rng(404);
  check_losses<float>(rng);
  check_losses<double>(rng);
}

TEST_CASE("cuda softmax cross-entropy without a workspace gives the same result") {
  nsl::Rng rng(405);
  const Tensor<float> logits = nsl::test::randn<float>(Shape{5, 3}, rng);
  const std::vector<int> labels{0, 1, 2, 1, 0};
  const nsl::LossResult r = nsl::softmax_cross_entropy<float>(logits.view(), labels, 0.1, nsl::TensorView<float>());
  const Tensor<float, Cuda> logits_d = nsl::to_device<float>(logits);
  const nsl::LossResult r_d = nsl::softmax_cross_entropy<float>(logits_d.view(), labels, 0.1, {});
  CHECK(r_d.correct == r.correct);
  CHECK(std::abs(r_d.loss - r.loss) <= 1e-12 * std::max(std::abs(r.loss), 1.0));
}

TEST_CASE("cuda softmax cross-entropy rejects a wrong label count or gradient shape") {
  const Tensor<float, Cuda> logits(Shape{4, 3});
  Tensor<float, Cuda> dlogits(Shape{4, 3}), wrong(Shape{3, 4});
  nsl::CrossEntropyWorkspace<float> workspace;
  CHECK_THROWS_AS(nsl::softmax_cross_entropy<float>(logits.view(), {0, 1, 2}, 0.0, dlogits.view(), workspace),
                  nsl::ShapeError);
  CHECK_THROWS_AS(nsl::softmax_cross_entropy<float>(logits.view(), {0, 1, 2, 0}, 0.0, wrong.view(), workspace),
                  nsl::ShapeError);
  CHECK_THROWS_AS(nsl::softmax_cross_entropy<float>(logits.view(), {0, 1, 2, 3}, 0.0, dlogits.view(), workspace),
                  nsl::ArgumentError);
}
