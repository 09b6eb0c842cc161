// The CUDA dynamic convolution (nsl/cuda/dynamic_conv2d.cuh) against the CPU
// op (nsl/ops/dynamic_conv2d.hpp): outputs and every gradient, both
// structures, on random shapes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>

#include "cuda_test_util.cuh"
#include "nsl/cuda/dynamic_conv2d.cuh"
#include "nsl/ops/dynamic_conv2d.hpp"

using nsl::Cuda;
using nsl::Shape;
using nsl::Structure;
using nsl::Tensor;

namespace {

struct DynamicCase {
  Structure structure;
  nsl::index kernel, stride;
  bool bias, input_grad;
};

// Runs forward and backward on both devices for a random shape and CHECKs
// that they agree. Gradient buffers start as garbage (assigned outputs) or
// as random values (accumulated ones), the same on both devices. With
// images_per_chunk > 0 the GPU's scratch is capped to that many images.
template <class T>
void compare_with_cpu(nsl::Rng& rng, const DynamicCase& c, nsl::DynamicConv2dWorkspace<T>& cpu_ws,
                      nsl::DynamicConv2dWorkspace<T, Cuda>& gpu_ws, nsl::index batch = 0,
                      nsl::index images_per_chunk = 0) {
  using nsl::test::random_extent;
  const nsl::index k = c.kernel;
  const nsl::index N = batch ? batch : random_extent(rng, 1, 4), C = random_extent(rng, 1, 4);
  const nsl::index H = random_extent(rng, k, k + 6), W = random_extent(rng, k, k + 6);
  const nsl::index O = random_extent(rng, 1, 6);
  const nsl::ConvGeometry g{k, c.stride, random_extent(rng, 0, k / 2)};
  CAPTURE(nsl::to_string(c.structure)); CAPTURE(k); CAPTURE(c.stride); CAPTURE(g.padding);
  CAPTURE(c.bias); CAPTURE(c.input_grad); CAPTURE(N); CAPTURE(C); CAPTURE(H); CAPTURE(W); CAPTURE(O);
  const Shape out{N, O, g.output_extent(H), g.output_extent(W)};
  const Shape g_shape{N, nsl::predicted_rows(c.structure, g.slots()), out[2], out[3]};
  if (images_per_chunk) {
    const nsl::index per_image = C * g.slots() * out[2] * out[3];  // entries of one (C K) x P matrix
    gpu_ws.max_scratch_bytes = std::size_t(images_per_chunk) * 3 * sizeof(T) * std::size_t(per_image);
    CHECK(gpu_ws.chunk_images(N, per_image) == std::min(images_per_chunk, N));
  }

  const Tensor<T> x = nsl::test::randn<T>(Shape{N, C, H, W}, rng);
  const Tensor<T> w = nsl::test::randn<T>(Shape{O, C, k, k}, rng);
  const Tensor<T> bias = c.bias ? nsl::test::randn<T>(Shape{O}, rng) : Tensor<T>();
  const Tensor<T> G = nsl::random_normal<T>(g_shape, rng, 0.0, 0.3);
  const auto x_d = nsl::to_device(x), w_d = nsl::to_device(w), bias_d = nsl::to_device(bias),
             G_d = nsl::to_device(G);

  Tensor<T> y(out, T(3));
  Tensor<T, Cuda> y_d(out, T(-3));
  nsl::dynamic_conv2d_forward<T>(c.structure, x.view(), w.view(), bias.view(), G.view(), g, y.view(), cpu_ws);
  nsl::dynamic_conv2d_forward<T>(c.structure, x_d.view(), w_d.view(), bias_d.view(), G_d.view(), g, y_d.view(),
                                 gpu_ws);
  nsl::test::check_close<T>("y", y_d.view(), y.view());

  const Tensor<T> dy = nsl::test::randn<T>(out, rng);
  const Tensor<T> dw0 = nsl::test::randn<T>(w.shape(), rng);
  const Tensor<T> db0 = c.bias ? nsl::test::randn<T>(Shape{O}, rng) : Tensor<T>();
  Tensor<T> dx = c.input_grad ? Tensor<T>(x.shape(), T(9)) : Tensor<T>(), dw = dw0, db = db0, dG(g_shape, T(9));
  Tensor<T, Cuda> dx_d = c.input_grad ? Tensor<T, Cuda>(x.shape(), T(-9)) : Tensor<T, Cuda>();
  Tensor<T, Cuda> dw_d = nsl::to_device(dw0), db_d = nsl::to_device(db0), dG_d(g_shape, T(-9));
  const auto dy_d = nsl::to_device(dy);
  nsl::dynamic_conv2d_backward<T>(c.structure, x.view(), w.view(), G.view(), g, dy.view(), dx.view(), dw.view(),
                                  db.view(), dG.view(), cpu_ws);
  nsl::dynamic_conv2d_backward<T>(c.structure, x_d.view(), w_d.view(), G_d.view(), g, dy_d.view(), dx_d.view(),
                                  dw_d.view(), db_d.view(), dG_d.view(), gpu_ws);
  if (c.input_grad) nsl::test::check_close<T>("dx", dx_d.view(), dx.view());
  nsl::test::check_close<T>("dw", dw_d.view(), dw.view());
  if (c.bias) nsl::test::check_close<T>("db", db_d.view(), db.view());
  nsl::test::check_close<T>("dG", dG_d.view(), dG.view());
}

}  // namespace

TEST_CASE_TEMPLATE("the CUDA dynamic convolution equals the CPU one, output and gradients", T, float, double) {
  nsl::Rng rng(4100);
  nsl::DynamicConv2dWorkspace<T> cpu_ws;
  nsl::DynamicConv2dWorkspace<T, Cuda> gpu_ws;  // reused across shapes, as a layer does
  for (Structure s : {Structure::diagonal, Structure::channel_shared})
    for (nsl::index k : {3, 5})
      for (nsl::index stride : {1, 2})
        for (bool bias : {true, false})
          for (bool input_grad : {true, false})
            compare_with_cpu<T>(rng, {s, k, stride, bias, input_grad}, cpu_ws, gpu_ws);
}

TEST_CASE_TEMPLATE("the CUDA dynamic convolution in chunks of images equals the CPU one", T, float, double) {
  nsl::Rng rng(4101);
  nsl::DynamicConv2dWorkspace<T> cpu_ws;
  nsl::DynamicConv2dWorkspace<T, Cuda> gpu_ws;
  for (Structure s : {Structure::diagonal, Structure::channel_shared})
    for (nsl::index images : {1, 2, 3}) {  // 5 images: chunks of 1, of 2 and a last of 1, of 3 and a last of 2
      CAPTURE(images);
      compare_with_cpu<T>(rng, {s, 3, 1, true, true}, cpu_ws, gpu_ws, 5, images);
      compare_with_cpu<T>(rng, {s, 5, 2, false, true}, cpu_ws, gpu_ws, 5, images);
    }
  gpu_ws.max_scratch_bytes = 1;  // less than one image: still one image per chunk
  compare_with_cpu<T>(rng, {Structure::channel_shared, 3, 2, true, false}, cpu_ws, gpu_ws, 3);
}

TEST_CASE("the CUDA dynamic convolution rejects a G of the wrong shape") {
  using View = nsl::TensorView<const float, Cuda>;
  using MutableView = nsl::TensorView<float, Cuda>;
  // Shapes are checked before any device memory is touched: null views suffice.
  const View x(nullptr, Shape{2, 3, 8, 8}), w(nullptr, Shape{4, 3, 3, 3}), G(nullptr, Shape{2, 9, 8, 7});
  const View dy(nullptr, Shape{2, 4, 8, 8});
  const MutableView y(nullptr, Shape{2, 4, 8, 8}), dw(nullptr, Shape{4, 3, 3, 3}), dG(nullptr, Shape{2, 9, 8, 7});
  nsl::DynamicConv2dWorkspace<float, Cuda> ws;
  CHECK_THROWS_WITH_AS(nsl::dynamic_conv2d_forward<float>(Structure::diagonal, x, w, {}, G, {3, 1, 1}, y, ws),
                       "dynamic_conv2d_forward: predicted similarity G: expected [2, 9, 8, 8], got [2, 9, 8, 7]",
                       nsl::ShapeError);
  CHECK_THROWS_AS(nsl::dynamic_conv2d_backward<float>(Structure::channel_shared, x, w, G, {3, 1, 1}, dy, {}, dw, {},
                                                      dG, ws),
                  nsl::ShapeError);
  // A diagonal G read as channel-shared (K rows instead of K*K) is rejected too.
  const View G_diagonal(nullptr, Shape{2, 9, 8, 8});
  CHECK_THROWS_AS(nsl::dynamic_conv2d_forward<float>(Structure::channel_shared, x, w, {}, G_diagonal, {3, 1, 1}, y,
                                                     ws),
                  nsl::ShapeError);
}
