// The CUDA SphereConv pieces (nsl/cuda/sphere.cuh) against the CPU ops
// (nsl/ops/sphere.hpp): the local input norm, the filter norm, the angular
// responses and their gradients, on random shapes.
#include <doctest/doctest.h>

#include "cuda_test_util.cuh"
#include "nsl/cuda/sphere.cuh"
#include "nsl/ops/sphere.hpp"

using nsl::AngularForm;
using nsl::Cuda;
using nsl::Shape;
using nsl::Tensor;
using nsl::test::random_extent;

TEST_CASE_TEMPLATE("the CUDA local input norm and its gradient equal the CPU ones", T, float, double) {
  nsl::Rng rng(4200);
  nsl::LocalNormWorkspace<T> cpu_ws;
  nsl::LocalNormWorkspace<T, Cuda> gpu_ws;
  int round = 0;
  for (nsl::index k : {3, 5})
    for (nsl::index stride : {1, 2})
      for (nsl::index padding : {nsl::index(0), k / 2}) {
        const nsl::ConvGeometry g{k, stride, padding};
        const nsl::index N = random_extent(rng, 1, 3), C = random_extent(rng, 1, 5);
        const nsl::index H = random_extent(rng, k, k + 7), W = random_extent(rng, k, k + 7);
        CAPTURE(k); CAPTURE(stride); CAPTURE(padding); CAPTURE(N); CAPTURE(C); CAPTURE(H); CAPTURE(W);
        const bool with_workspace = round++ % 2 == 0;  // and without: a local one
        const Tensor<T> x = nsl::test::randn<T>(Shape{N, C, H, W}, rng);
        const auto x_d = nsl::to_device(x);
        const Shape out{N, 1, g.output_extent(H), g.output_extent(W)};
        Tensor<T> norm(out, T(5));
        Tensor<T, Cuda> norm_d(out, T(-5));
        nsl::local_input_norm<T>(x.view(), g, norm.view(), with_workspace ? &cpu_ws : nullptr);
        nsl::local_input_norm<T>(x_d.view(), g, norm_d.view(), with_workspace ? &gpu_ws : nullptr);
        nsl::test::check_close<T>("norm", norm_d.view(), norm.view());

        // dx is accumulated: both start from the same random values.
        const Tensor<T> dnorm = nsl::test::randn<T>(out, rng), dx0 = nsl::test::randn<T>(x.shape(), rng);
        Tensor<T> dx = dx0;
        Tensor<T, Cuda> dx_d = nsl::to_device(dx0);
        const auto dnorm_d = nsl::to_device(dnorm);
        nsl::local_input_norm_backward<T>(x.view(), g, norm.view(), dnorm.view(), dx.view(),
                                          with_workspace ? &cpu_ws : nullptr);
        nsl::local_input_norm_backward<T>(x_d.view(), g, norm_d.view(), dnorm_d.view(), dx_d.view(),
                                          with_workspace ? &gpu_ws : nullptr);
        nsl::test::check_close<T>("dx", dx_d.view(), dx.view());
      }
}

TEST_CASE_TEMPLATE("the CUDA filter norm and its gradient equal the CPU ones", T, float, double) {
  nsl::Rng rng(4201);
  for (int round = 0; round < 6; ++round) {
    const nsl::index O = random_extent(rng, 1, 40), C = random_extent(rng, 1, 70), k = round % 2 ? 5 : 3;
    CAPTURE(O); CAPTURE(C); CAPTURE(k);
    const Tensor<T> w = nsl::test::randn<T>(Shape{O, C, k, k}, rng);
    const auto w_d = nsl::to_device(w);
    Tensor<T> norms(Shape{O}, T(5));
    Tensor<T, Cuda> norms_d(Shape{O}, T(-5));
    nsl::filter_norm<T>(w.view(), norms.view());
    nsl::filter_norm<T>(w_d.view(), norms_d.view());
    nsl::test::check_close<T>("filter norms", norms_d.view(), norms.view());

    // dw is accumulated.
    const Tensor<T> dnorms = nsl::test::randn<T>(Shape{O}, rng), dw0 = nsl::test::randn<T>(w.shape(), rng);
    Tensor<T> dw = dw0;
    Tensor<T, Cuda> dw_d = nsl::to_device(dw0);
    const auto dnorms_d = nsl::to_device(dnorms);
    nsl::filter_norm_backward<T>(w.view(), norms.view(), dnorms.view(), dw.view());
    nsl::filter_norm_backward<T>(w_d.view(), norms_d.view(), dnorms_d.view(), dw_d.view());
    nsl::test::check_close<T>("dw", dw_d.view(), dw.view());
  }
}

TEST_CASE_TEMPLATE("the CUDA sphere response and its gradients equal the CPU ones for every angular form", T, float,
                   double) {
  nsl::Rng rng(4202);
  for (AngularForm form : {AngularForm::identity, AngularForm::cosine, AngularForm::linear, AngularForm::sigmoid})
    for (int round = 0; round < 3; ++round) {
      const nsl::index N = random_extent(rng, 1, 4), O = random_extent(rng, 1, 12);
      const nsl::index Ho = random_extent(rng, 1, 9), Wo = random_extent(rng, 1, 9);
      CAPTURE(nsl::to_string(form)); CAPTURE(N); CAPTURE(O); CAPTURE(Ho); CAPTURE(Wo);
      const Shape out{N, O, Ho, Wo}, norm_shape{N, 1, Ho, Wo};
      // z = c a n with |c| < 1, away from the poles where f' of linear and sigmoid is infinite.
      const Tensor<T> input_norm = nsl::random_uniform<T>(norm_shape, rng, 0.5, 2.0);
      const Tensor<T> filter_norms = nsl::random_uniform<T>(Shape{O}, rng, 0.5, 2.0);
      const Tensor<T> cosine = nsl::random_uniform<T>(out, rng, -0.95, 0.95);
      Tensor<T> z(out);
      const nsl::index P = Ho * Wo;
      for (nsl::index i = 0; i < z.size(); ++i)
        z[i] = cosine[i] * filter_norms[(i / P) % O] * input_norm[(i / (O * P)) * P + i % P];
      const auto input_norm_d = nsl::to_device(input_norm), filter_norms_d = nsl::to_device(filter_norms);

      Tensor<T> c = z, y(out, T(5));
      Tensor<T, Cuda> c_d = nsl::to_device(z), y_d(out, T(-5));
      nsl::sphere_response_forward<T>(form, input_norm.view(), filter_norms.view(), c.view(), y.view());
      nsl::sphere_response_forward<T>(form, input_norm_d.view(), filter_norms_d.view(), c_d.view(), y_d.view());
      nsl::test::check_close<T>("c", c_d.view(), c.view());
      nsl::test::check_close<T>("y", y_d.view(), y.view());

      // Both backward passes read the CPU's c, so that they see the same input.
      const Tensor<T> dy = nsl::test::randn<T>(out, rng);
      const auto dy_d = nsl::to_device(dy), c_cpu_d = nsl::to_device(c);
      Tensor<T> dz(out, T(5)), dnorm(norm_shape, T(5));
      Tensor<T, Cuda> dz_d(out, T(-5)), dnorm_d(norm_shape, T(-5));
      nsl::sphere_response_backward<T>(form, c.view(), input_norm.view(), filter_norms.view(), dy.view(), dz.view(),
                                       dnorm.view());
      nsl::sphere_response_backward<T>(form, c_cpu_d.view(), input_norm_d.view(), filter_norms_d.view(),
                                       dy_d.view(), dz_d.view(), dnorm_d.view());
      nsl::test::check_close<T>("dz", dz_d.view(), dz.view());
      nsl::test::check_close<T>("dnorm", dnorm_d.view(), dnorm.view());

      const auto dz_cpu_d = nsl::to_device(dz);
      Tensor<T> dfilter(Shape{O}, T(5));
      Tensor<T, Cuda> dfilter_d(Shape{O}, T(-5));
      nsl::sphere_filter_norm_gradient<T>(dz.view(), input_norm.view(), c.view(), dfilter.view());
      nsl::sphere_filter_norm_gradient<T>(dz_cpu_d.view(), input_norm_d.view(), c_cpu_d.view(), dfilter_d.view());
      nsl::test::check_close<T>("dfilter_norms", dfilter_d.view(), dfilter.view());
    }
}

TEST_CASE("the CUDA sphere pieces reject tensors of the wrong shape") {
  using View = nsl::TensorView<const float, Cuda>;
  using MutableView = nsl::TensorView<float, Cuda>;
  // Shapes are checked before any device memory is touched: null views suffice.
  const View x(nullptr, Shape{2, 3, 8, 8}), input_norm(nullptr, Shape{2, 1, 8, 8});
  const View filter_norms(nullptr, Shape{5}), wrong_filter_norms(nullptr, Shape{4});
  const MutableView norm(nullptr, Shape{2, 1, 8, 7}), z(nullptr, Shape{2, 5, 8, 8}), y(nullptr, Shape{2, 5, 8, 8});
  CHECK_THROWS_AS(nsl::local_input_norm<float>(x, {3, 1, 1}, norm), nsl::ShapeError);
  CHECK_THROWS_AS(nsl::sphere_response_forward<float>(AngularForm::cosine, input_norm, wrong_filter_norms, z, y),
                  nsl::ShapeError);
  const MutableView y_small(nullptr, Shape{2, 5, 8, 7});
  CHECK_THROWS_AS(nsl::sphere_response_forward<float>(AngularForm::sigmoid, input_norm, filter_norms, z, y_small),
                  nsl::ShapeError);
  const View w(nullptr, Shape{5, 3, 3, 3});
  const MutableView norms(nullptr, Shape{4});
  CHECK_THROWS_AS(nsl::filter_norm<float>(w, norms), nsl::ShapeError);
}
