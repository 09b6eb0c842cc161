// nsl/cuda/sgd.cuh against sgd_momentum_step of nsl/train/sgd.hpp.
#include "cuda_test_util.cuh"
#include "nsl/cuda/sgd.cuh"

using nsl::Cuda;
using nsl::Shape;
using nsl::Tensor;

namespace {
// Three steps from a non-zero velocity, with and without weight decay.
template <class T>
void check_sgd(nsl::Rng& rng) {
  for (const double decay : {0.0, 5e-4, 0.1}) {
    for (int trial = 0; trial < 3; ++trial) {
      using nsl::test::random_extent;
      const Shape shape = trial == 0 ? Shape{random_extent(rng, 1, 300)}
                                     : Shape{random_extent(rng, 1, 6), random_extent(rng, 1, 4),
                                             random_extent(rng, 1, 3), random_extent(rng, 1, 3)};
      CAPTURE(decay);
      CAPTURE(shape);
      Tensor<T> value = nsl::test::randn<T>(shape, rng), velocity = nsl::test::randn<T>(shape, rng);
      Tensor<T, Cuda> value_d = nsl::to_device<T>(value), velocity_d = nsl::to_device<T>(velocity);
      for (int step = 0; step < 3; ++step) {
        const Tensor<T> grad = nsl::test::randn<T>(shape, rng);
        const Tensor<T, Cuda> grad_d = nsl::to_device<T>(grad);
        nsl::sgd_momentum_step<T>(value.view(), grad.view(), velocity.view(), T(0.9), T(decay), T(0.05));
        nsl::sgd_momentum_step<T>(value_d.view(), grad_d.view(), velocity_d.view(), T(0.9), T(decay), T(0.05));
      }
      nsl::test::check_close<T>("value", value_d.view(), value.view());
      nsl::test::check_close<T>("velocity", velocity_d.view(), velocity.view());
    }
  }
}
}  // namespace

TEST_CASE("cuda sgd momentum steps equal the CPU's, with and without weight decay, in float and double") {
  nsl::Rng rng(505);
  check_sgd<float>(rng);
  check_sgd<double>(rng);
}

TEST_CASE("cuda sgd rejects a velocity of the wrong shape") {
  Tensor<float, Cuda> value(Shape{3, 4}), velocity(Shape{4, 3});
  const Tensor<float, Cuda> grad(Shape{3, 4});
  CHECK_THROWS_AS(nsl::sgd_momentum_step<float>(value.view(), grad.view(), velocity.view(), 0.9f, 0.0f, 0.1f),
                  nsl::ShapeError);
}
