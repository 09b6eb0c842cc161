// nsl/cuda/activation.cuh against nsl/ops/activation.hpp.
#include "cuda_test_util.cuh"
#include "nsl/cuda/activation.cuh"

using nsl::Cuda;
using nsl::Shape;
using nsl::Tensor;

namespace {
template <class T>
void check_relu(nsl::Rng& rng) {
  for (int trial = 0; trial < 4; ++trial) {
    using nsl::test::random_extent;
    const Shape shape{random_extent(rng, 1, 4), random_extent(rng, 1, 5), random_extent(rng, 1, 9),
                      random_extent(rng, 1, 9)};
    CAPTURE(shape);
    const Tensor<T> x = nsl::test::randn<T>(shape, rng), dy = nsl::test::randn<T>(shape, rng);
    Tensor<T> y(shape), dx(shape);
    nsl::relu_forward<T>(x.view(), y.view());
    nsl::relu_backward<T>(y.view(), dy.view(), dx.view());

    const Tensor<T, Cuda> x_d = nsl::to_device<T>(x), dy_d = nsl::to_device<T>(dy);
    Tensor<T, Cuda> y_d(shape, T(7)), dx_d(shape, T(7));  // garbage: both are assigned
    nsl::relu_forward<T>(x_d.view(), y_d.view());
    nsl::relu_backward<T>(y_d.view(), dy_d.view(), dx_d.view());
    nsl::test::check_close<T>("y", y_d.view(), y.view());
    nsl::test::check_close<T>("dx", dx_d.view(), dx.view());

    // In place, as a borrowing layer calls them: y over x, dx over dy.
    Tensor<T, Cuda> inplace = x_d;
    nsl::relu_forward<T>(inplace.view(), inplace.view());
    nsl::test::check_close<T>("y in place", inplace.view(), y.view());
    Tensor<T, Cuda> grad = dy_d;
    nsl::relu_backward<T>(y_d.view(), grad.view(), grad.view());
    nsl::test::check_close<T>("dx in place", grad.view(), dx.view());
  }
}
}  // namespace

TEST_CASE("cuda relu forward and backward equal the CPU's, in place too, in float and double") {
  nsl::Rng rng(101);
  check_relu<float>(rng);
  check_relu<double>(rng);
}

TEST_CASE("cuda relu rejects a gradient of the wrong shape") {
  const Tensor<float, Cuda> y(Shape{2, 3, 4, 4}), dy(Shape{2, 3, 4, 4});
  Tensor<float, Cuda> wrong(Shape{2, 3, 4, 5});
  CHECK_THROWS_AS(nsl::relu_backward<float>(y.view(), dy.view(), wrong.view()), nsl::ShapeError);
  CHECK_THROWS_AS(nsl::relu_forward<float>(y.view(), wrong.view()), nsl::ShapeError);
}
