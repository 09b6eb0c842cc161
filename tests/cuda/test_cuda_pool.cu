// nsl/cuda/pool.cuh against nsl/ops/pool.hpp.
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "cuda_test_util.cuh"
#include "nsl/cuda/pool.cuh"

using nsl::Cuda;
using nsl::Shape;
using nsl::Tensor;

namespace {
// Forward (y, the winners) and backward (dx from garbage) on the GPU and the CPU for one x.
template <class T>
void check_pool(const Tensor<T>& x, nsl::index window, nsl::index stride, nsl::Rng& rng) {
  const Shape out = nsl::max_pool2d_output_shape("test", x.shape(), window, stride);
  Tensor<T> y(out);
  std::vector<nsl::index> argmax;
  nsl::max_pool2d_forward<T>(x.view(), window, stride, y.view(), argmax);
  const Tensor<T> dy = nsl::test::randn<T>(out, rng);
  Tensor<T> dx(x.shape(), T(7));
  nsl::max_pool2d_backward<T>(argmax, dy.view(), dx.view());

  const Tensor<T, Cuda> x_d = nsl::to_device<T>(x), dy_d = nsl::to_device<T>(dy);
  Tensor<T, Cuda> y_d(out, T(7)), dx_d(x.shape(), T(7));
  nsl::pool_indices_t<Cuda> argmax_d;
  nsl::max_pool2d_forward<T>(x_d.view(), window, stride, y_d.view(), argmax_d);
  CHECK(argmax_d.to_host() == argmax);
  nsl::test::check_close<T>("y", y_d.view(), y.view());
  nsl::max_pool2d_backward<T>(argmax_d, dy_d.view(), dx_d.view());
  nsl::test::check_close<T>("dx", dx_d.view(), dx.view());
}

// Values in {-2, ..., 2}: many ties, so the first-maximum rule is exercised.
template <class T>
Tensor<T> with_ties(const Shape& shape, nsl::Rng& rng) {
  Tensor<T> x = nsl::test::randn<T>(shape, rng);
  for (nsl::index i = 0; i < x.size(); ++i) x[i] = std::round(x[i]);
  return x;
}

template <class T>
void check_pools(nsl::Rng& rng) {
  using nsl::test::random_extent;
  const std::vector<std::pair<nsl::index, nsl::index>> extents{{5, 5}, {6, 6}, {7, 4}, {1, 3}, {2, 1}, {8, 9}};
  for (const nsl::index window : {2, 3})
    for (const nsl::index stride : {1, 2})
      for (const auto& [H, W] : extents) {
        const Shape shape{random_extent(rng, 1, 3), random_extent(rng, 1, 4), H, W};
        CAPTURE(window);
        CAPTURE(stride);
        CAPTURE(shape);
        check_pool<T>(nsl::test::randn<T>(shape, rng), window, stride, rng);
        check_pool<T>(with_ties<T>(shape, rng), window, stride, rng);
      }
  // CNN-9's pool: 2x2 stride 2 on 32 x 32, 16 x 16, 8 x 8 maps.
  for (const nsl::index extent : {32, 16, 8})
    check_pool<T>(nsl::test::randn<T>(Shape{4, 8, extent, extent}, rng), 2, 2, rng);
}
}  // namespace

TEST_CASE("cuda max pooling equals the CPU's: outputs, winners and dx, window 2 and 3, stride 1 and 2") {
  nsl::Rng rng(303);
  check_pools<float>(rng);
  check_pools<double>(rng);
}

TEST_CASE("cuda max pooling lets the first NaN of a window win, as the CPU") {
  Tensor<double> x(Shape{1, 1, 3, 3});
  for (nsl::index i = 0; i < 9; ++i) x[i] = double(i + 1);
  x[1] = std::numeric_limits<double>::quiet_NaN();
  x[3] = std::numeric_limits<double>::quiet_NaN();
  for (const nsl::index stride : {1, 2}) {
    CAPTURE(stride);
    const Shape out = nsl::max_pool2d_output_shape("test", x.shape(), 2, stride);
    Tensor<double> y(out);
    std::vector<nsl::index> argmax;
    nsl::max_pool2d_forward<double>(x.view(), 2, stride, y.view(), argmax);
    const Tensor<double, Cuda> x_d = nsl::to_device<double>(x);
    Tensor<double, Cuda> y_d(out);
    nsl::pool_indices_t<Cuda> argmax_d;
    nsl::max_pool2d_forward<double>(x_d.view(), 2, stride, y_d.view(), argmax_d);
    CHECK(argmax_d.to_host() == argmax);
    const Tensor<double> y_down = nsl::to_host<double>(y_d);
    for (nsl::index j = 0; j < y.size(); ++j) CHECK((std::isnan(y[j]) ? std::isnan(y_down[j]) : y_down[j] == y[j]));
  }
}

TEST_CASE("cuda max pooling keeps the winners' memory when the output shrinks") {
  const Tensor<float, Cuda> big(Shape{2, 3, 8, 8}), small(Shape{1, 3, 4, 4});
  Tensor<float, Cuda> y_big(Shape{2, 3, 4, 4}), y_small(Shape{1, 3, 2, 2});
  nsl::pool_indices_t<Cuda> argmax;
  nsl::max_pool2d_forward<float>(big.view(), 2, 2, y_big.view(), argmax);
  const nsl::index* memory = argmax.data();
  nsl::max_pool2d_forward<float>(small.view(), 2, 2, y_small.view(), argmax);
  CHECK(argmax.size() == y_small.size());
  CHECK(argmax.data() == memory);
}

TEST_CASE("cuda max pooling rejects a wrong output shape and winners of another forward") {
  const Tensor<float, Cuda> x(Shape{2, 3, 8, 8});
  Tensor<float, Cuda> y(Shape{2, 3, 4, 4}), wrong(Shape{2, 3, 4, 5});
  nsl::pool_indices_t<Cuda> argmax;
  CHECK_THROWS_AS(nsl::max_pool2d_forward<float>(x.view(), 2, 2, wrong.view(), argmax), nsl::ShapeError);
  nsl::max_pool2d_forward<float>(x.view(), 2, 2, y.view(), argmax);
  Tensor<float, Cuda> dx(Shape{2, 3, 8, 8}), dx_other(Shape{2, 3, 7, 8});
  CHECK_THROWS_AS(nsl::max_pool2d_backward<float>(argmax, wrong.view(), dx.view()), nsl::ShapeError);
  CHECK_THROWS_AS(nsl::max_pool2d_backward<float>(argmax, y.view(), dx_other.view()), nsl::ArgumentError);
  CHECK_NOTHROW(nsl::max_pool2d_backward<float>(argmax, y.view(), dx.view()));
}
