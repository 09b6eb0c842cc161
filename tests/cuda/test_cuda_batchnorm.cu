// nsl/cuda/batchnorm.cuh against nsl/ops/batchnorm.hpp.
#include <vector>

#include "cuda_test_util.cuh"
#include "nsl/cuda/batchnorm.cuh"

using nsl::Cuda;
using nsl::Shape;
using nsl::Tensor;

namespace {
// Batches from one value per channel to several reduction passes of a block
// (m = N H W up to 3 * 13 * 13 = 507 > 256 threads).
std::vector<Shape> batchnorm_shapes(nsl::Rng& rng) {
  using nsl::test::random_extent;
  std::vector<Shape> shapes{Shape{1, 3, 1, 1}, Shape{3, 2, 13, 13}, Shape{2, 4, 1, 5}};
  for (int i = 0; i < 3; ++i)
    shapes.push_back(Shape{random_extent(rng, 1, 4), random_extent(rng, 1, 6), random_extent(rng, 1, 7),
                           random_extent(rng, 1, 7)});
  return shapes;
}

// Per-channel uniform draws in [lo, hi).
template <class T>
Tensor<T> per_channel(nsl::index channels, nsl::Rng& rng, double lo, double hi) {
  return nsl::random_uniform<T>(Shape{channels}, rng, lo, hi);
}

// An input with an offset and a scale per channel, so the statistics matter.
template <class T>
Tensor<T> batch(const Shape& shape, nsl::Rng& rng) {
  Tensor<T> x = nsl::test::randn<T>(shape, rng);
  const nsl::index C = shape[1], P = shape[2] * shape[3];
  for (nsl::index i = 0; i < x.size(); ++i) {
    const nsl::index c = (i / P) % C;
    x[i] = x[i] * T(1 + c) + T(0.5 * double(c) - 1.0);
  }
  return x;
}

template <class T>
void check_statistics_and_forward(nsl::Rng& rng) {
  const T eps = T(1e-3);
  for (const Shape& shape : batchnorm_shapes(rng)) {
    CAPTURE(shape);
    const nsl::index C = shape[1];
    const Tensor<T> x = batch<T>(shape, rng);
    const Tensor<T> gamma = per_channel<T>(C, rng, 0.5, 1.5), beta = per_channel<T>(C, rng, -0.5, 0.5);
    Tensor<T> mean(Shape{C}), variance(Shape{C}), y(shape), normalized(shape);
    nsl::batchnorm_statistics<T>(x.view(), mean.view(), variance.view());
    nsl::batchnorm_forward<T>(x.view(), mean.view(), variance.view(), gamma.view(), beta.view(), eps, y.view(),
                              normalized.view());

    const Tensor<T, Cuda> x_d = nsl::to_device<T>(x), gamma_d = nsl::to_device<T>(gamma),
                          beta_d = nsl::to_device<T>(beta);
    Tensor<T, Cuda> mean_d(Shape{C}, T(7)), variance_d(Shape{C}, T(7));  // garbage: both are assigned
    nsl::batchnorm_statistics<T>(x_d.view(), mean_d.view(), variance_d.view());
    nsl::test::check_close<T>("mean", mean_d.view(), mean.view());
    nsl::test::check_close<T>("variance", variance_d.view(), variance.view());

    // The forward from the CPU's statistics, with and without x̂.
    const Tensor<T, Cuda> cpu_mean_d = nsl::to_device<T>(mean), cpu_variance_d = nsl::to_device<T>(variance);
    Tensor<T, Cuda> y_d(shape, T(7)), normalized_d(shape, T(7));
    nsl::batchnorm_forward<T>(x_d.view(), cpu_mean_d.view(), cpu_variance_d.view(), gamma_d.view(), beta_d.view(),
                              eps, y_d.view(), normalized_d.view());
    nsl::test::check_close<T>("y", y_d.view(), y.view());
    nsl::test::check_close<T>("normalized", normalized_d.view(), normalized.view());
    Tensor<T, Cuda> y_only_d(shape, T(7));
    nsl::batchnorm_forward<T>(x_d.view(), cpu_mean_d.view(), cpu_variance_d.view(), gamma_d.view(), beta_d.view(),
                              eps, y_only_d.view(), nsl::TensorView<T, Cuda>());
    nsl::test::check_close<T>("y without normalized", y_only_d.view(), y.view());
    // In place, y over x.
    Tensor<T, Cuda> inplace_d = x_d;
    nsl::batchnorm_forward<T>(inplace_d.view(), cpu_mean_d.view(), cpu_variance_d.view(), gamma_d.view(),
                              beta_d.view(), eps, inplace_d.view(), nsl::TensorView<T, Cuda>());
    nsl::test::check_close<T>("y in place", inplace_d.view(), y.view());
  }
}

// Every backward with dγ, dβ starting from non-zero values (accumulated)
// and dx from garbage (assigned), also without dx and with dx over dy.
template <class T>
void check_backwards(nsl::Rng& rng) {
  const T eps = T(1e-3);
  for (const Shape& shape : batchnorm_shapes(rng)) {
    CAPTURE(shape);
    const nsl::index C = shape[1];
    const Tensor<T> x = batch<T>(shape, rng), dy = nsl::test::randn<T>(shape, rng);
    const Tensor<T> gamma = per_channel<T>(C, rng, 0.5, 1.5), beta = per_channel<T>(C, rng, -0.5, 0.5);
    const Tensor<T> dgamma0 = nsl::test::randn<T>(Shape{C}, rng), dbeta0 = nsl::test::randn<T>(Shape{C}, rng);
    Tensor<T> mean(Shape{C}), variance(Shape{C}), y(shape), normalized(shape);
    nsl::batchnorm_statistics<T>(x.view(), mean.view(), variance.view());
    nsl::batchnorm_forward<T>(x.view(), mean.view(), variance.view(), gamma.view(), beta.view(), eps, y.view(),
                              normalized.view());
    // Fixed statistics of another batch, as in evaluation.
    const Tensor<T> running_mean = per_channel<T>(C, rng, -1.0, 1.0);
    const Tensor<T> running_variance = per_channel<T>(C, rng, 0.5, 2.0);

    const Tensor<T, Cuda> x_d = nsl::to_device<T>(x), dy_d = nsl::to_device<T>(dy), gamma_d = nsl::to_device<T>(gamma),
                          mean_d = nsl::to_device<T>(mean), variance_d = nsl::to_device<T>(variance),
                          normalized_d = nsl::to_device<T>(normalized),
                          running_mean_d = nsl::to_device<T>(running_mean),
                          running_variance_d = nsl::to_device<T>(running_variance);

    for (int mode = 0; mode < 4; ++mode) {
      // 0: batchnorm_backward, 1: _fixed, 2: _from_input with batch statistics, 3: _from_input fixed.
      for (int dx_kind = 0; dx_kind < 3; ++dx_kind) {
        // 0: dx separate, 1: no dx, 2: dx over dy.
        CAPTURE(mode);
        CAPTURE(dx_kind);
        Tensor<T> dx(shape, T(7)), dgamma = dgamma0, dbeta = dbeta0;
        const nsl::TensorView<T> dx_view = dx_kind == 1 ? nsl::TensorView<T>() : dx.view();
        Tensor<T, Cuda> dx_d(shape, T(7)), dgamma_d = nsl::to_device<T>(dgamma0), dbeta_d = nsl::to_device<T>(dbeta0);
        Tensor<T, Cuda> dy_copy_d = dy_d;  // becomes dx when dx_kind == 2
        const nsl::TensorView<T, Cuda> dx_view_d =
            dx_kind == 1 ? nsl::TensorView<T, Cuda>() : dx_kind == 2 ? dy_copy_d.view() : dx_d.view();
        switch (mode) {
          case 0:
            nsl::batchnorm_backward<T>(normalized.view(), variance.view(), gamma.view(), eps, dy.view(), dx_view,
                                       dgamma.view(), dbeta.view());
            nsl::batchnorm_backward<T>(normalized_d.view(), variance_d.view(), gamma_d.view(), eps,
                                       dy_copy_d.view(), dx_view_d, dgamma_d.view(), dbeta_d.view());
            break;
          case 1:
            // The evaluation forward's x̂ is that of the fixed statistics; any x̂ tests the arithmetic.
            nsl::batchnorm_backward_fixed<T>(normalized.view(), running_variance.view(), gamma.view(), eps,
                                             dy.view(), dx_view, dgamma.view(), dbeta.view());
            nsl::batchnorm_backward_fixed<T>(normalized_d.view(), running_variance_d.view(), gamma_d.view(), eps,
                                             dy_copy_d.view(), dx_view_d, dgamma_d.view(), dbeta_d.view());
            break;
          case 2:
            nsl::batchnorm_backward_from_input<T>(x.view(), mean.view(), variance.view(), gamma.view(), eps, true,
                                                  dy.view(), dx_view, dgamma.view(), dbeta.view());
            nsl::batchnorm_backward_from_input<T>(x_d.view(), mean_d.view(), variance_d.view(), gamma_d.view(), eps,
                                                  true, dy_copy_d.view(), dx_view_d, dgamma_d.view(),
                                                  dbeta_d.view());
            break;
          default:
            nsl::batchnorm_backward_from_input<T>(x.view(), running_mean.view(), running_variance.view(),
                                                  gamma.view(), eps, false, dy.view(), dx_view, dgamma.view(),
                                                  dbeta.view());
            nsl::batchnorm_backward_from_input<T>(x_d.view(), running_mean_d.view(), running_variance_d.view(),
                                                  gamma_d.view(), eps, false, dy_copy_d.view(), dx_view_d,
                                                  dgamma_d.view(), dbeta_d.view());
            break;
        }
        nsl::test::check_close<T>("dgamma", dgamma_d.view(), dgamma.view());
        nsl::test::check_close<T>("dbeta", dbeta_d.view(), dbeta.view());
        if (dx_kind != 1) nsl::test::check_close<T>("dx", dx_view_d, dx.view());
        else nsl::test::check_close<T>("dx untouched", dx_d.view(), dx.view());  // both still 7
      }
    }
  }
}

// Successive updates (the count goes 0, 1, 2, 3), debiased or not, m = 1 too.
template <class T>
void check_update_running(nsl::Rng& rng) {
  for (const bool debias : {false, true})
    for (const nsl::index m : {nsl::index(1), nsl::index(2), nsl::index(300)}) {
      CAPTURE(debias);
      CAPTURE(m);
      const nsl::index C = nsl::test::random_extent(rng, 1, 300);
      Tensor<T> running_mean = nsl::test::randn<T>(Shape{C}, rng);
      Tensor<T> running_variance = per_channel<T>(C, rng, 0.5, 2.0), updates(Shape{1});
      Tensor<T, Cuda> running_mean_d = nsl::to_device<T>(running_mean),
                      running_variance_d = nsl::to_device<T>(running_variance), updates_d(Shape{1});
      for (int step = 0; step < 3; ++step) {
        const Tensor<T> mean = nsl::test::randn<T>(Shape{C}, rng), variance = per_channel<T>(C, rng, 0.1, 3.0);
        const Tensor<T, Cuda> mean_d = nsl::to_device<T>(mean), variance_d = nsl::to_device<T>(variance);
        nsl::batchnorm_update_running<T>(mean.view(), variance.view(), m, 0.9, debias, running_mean.view(),
                                         running_variance.view(), updates.view());
        nsl::batchnorm_update_running<T>(mean_d.view(), variance_d.view(), m, 0.9, debias, running_mean_d.view(),
                                         running_variance_d.view(), updates_d.view());
        nsl::test::check_close<T>("running mean", running_mean_d.view(), running_mean.view());
        nsl::test::check_close<T>("running variance", running_variance_d.view(), running_variance.view());
        CHECK(nsl::to_host<T>(updates_d)[0] == T(step + 1));
      }
    }
}
}  // namespace

TEST_CASE("cuda batchnorm statistics and forward equal the CPU's, with or without x-hat, in float and double") {
  nsl::Rng rng(202);
  check_statistics_and_forward<float>(rng);
  check_statistics_and_forward<double>(rng);
}

TEST_CASE("cuda batchnorm backwards equal the CPU's: dx assigned, dgamma and dbeta accumulated") {
  nsl::Rng rng(203);
  check_backwards<float>(rng);
  check_backwards<double>(rng);
}

TEST_CASE("cuda batchnorm running statistics update equals the CPU's and counts on the device") {
  nsl::Rng rng(204);
  check_update_running<float>(rng);
  check_update_running<double>(rng);
}

TEST_CASE("cuda batchnorm rejects per-channel tensors of the wrong size") {
  const Tensor<float, Cuda> x(Shape{2, 3, 4, 4}), three(Shape{3}), four(Shape{4});
  Tensor<float, Cuda> y(Shape{2, 3, 4, 4}), mean(Shape{4}), variance(Shape{4}), dgamma(Shape{3}), dbeta(Shape{3});
  CHECK_THROWS_AS(nsl::batchnorm_statistics<float>(x.view(), mean.view(), variance.view()), nsl::ShapeError);
  CHECK_THROWS_AS(nsl::batchnorm_forward<float>(x.view(), three.view(), three.view(), four.view(), three.view(),
                                                1e-3f, y.view(), nsl::TensorView<float, Cuda>()),
                  nsl::ShapeError);
  CHECK_THROWS_AS(nsl::batchnorm_backward<float>(x.view(), three.view(), three.view(), 1e-3f, four.view(), y.view(),
                                                 dgamma.view(), dbeta.view()),
                  nsl::ShapeError);
}
