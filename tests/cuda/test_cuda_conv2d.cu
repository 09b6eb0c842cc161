// conv2d_forward / conv2d_backward on the GPU against the CPU ops: outputs and
// every gradient, on random shapes and geometries, in float and double.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "cuda_test_util.cuh"
#include "nsl/cuda/conv2d.cuh"

using nsl::Cuda;
using nsl::Shape;
using nsl::Tensor;
using nsl::TensorView;

namespace {

struct ConvCase {
  nsl::index n, c, o, h, w;
  nsl::ConvGeometry g;
  bool bias, input_gradient;
};

// A random case: kernel 1, 3 or 5, stride 1-2, padding 0-2, with or without
// bias and dx (every third case without dx, every other without bias).
ConvCase random_case(nsl::Rng& rng, int trial) {
  ConvCase p{};
  const nsl::index k = 1 + 2 * nsl::test::random_extent(rng, 0, 2);
  p.g = {k, nsl::test::random_extent(rng, 1, 2), nsl::test::random_extent(rng, 0, 2)};
  const nsl::index smallest = std::max<nsl::index>(1, k - 2 * p.g.padding);
  p.n = nsl::test::random_extent(rng, 1, 4);
  p.c = nsl::test::random_extent(rng, 1, 6);
  p.o = nsl::test::random_extent(rng, 1, 7);
  p.h = nsl::test::random_extent(rng, smallest, 12);
  p.w = nsl::test::random_extent(rng, smallest, 12);
  p.bias = trial % 2 == 0;
  p.input_gradient = trial % 3 != 2;
  return p;
}

// Runs one case on both devices and compares y, dx, dw and db; dw and db
// start from random values (accumulated), dx from garbage (assigned).
template <class T>
void compare(const ConvCase& p, nsl::Rng& rng, nsl::Conv2dWorkspace<T>& cpu_ws,
             nsl::Conv2dWorkspace<T, Cuda>& gpu_ws) {
  CAPTURE(p.n); CAPTURE(p.c); CAPTURE(p.o); CAPTURE(p.h); CAPTURE(p.w);
  CAPTURE(p.g.kernel); CAPTURE(p.g.stride); CAPTURE(p.g.padding); CAPTURE(p.bias); CAPTURE(p.input_gradient);
  const Tensor<T> x = nsl::test::randn<T>(Shape{p.n, p.c, p.h, p.w}, rng);
  const Tensor<T> w = nsl::test::randn<T>(Shape{p.o, p.c, p.g.kernel, p.g.kernel}, rng);
  const Tensor<T> b = p.bias ? nsl::test::randn<T>(Shape{p.o}, rng) : Tensor<T>();
  const Shape out = nsl::conv2d_output_shape("test", x.shape(), w.shape(), b.shape(), p.g);
  const Tensor<T> dy = nsl::test::randn<T>(out, rng);
  const auto x_d = nsl::to_device<T>(x), w_d = nsl::to_device<T>(w), b_d = nsl::to_device<T>(b);
  const auto dy_d = nsl::to_device<T>(dy);

  Tensor<T> y(out, T(5));
  Tensor<T, Cuda> y_d(out, T(-5));
  nsl::conv2d_forward<T>(x.view(), w.view(), b.view(), p.g, y.view(), cpu_ws);
  nsl::conv2d_forward<T>(x_d.view(), w_d.view(), b_d.view(), p.g, y_d.view(), gpu_ws);
  nsl::test::check_close<T>("y", y_d.view(), y.view());

  Tensor<T> dx = p.input_gradient ? Tensor<T>(x.shape(), T(7)) : Tensor<T>();
  Tensor<T, Cuda> dx_d = p.input_gradient ? Tensor<T, Cuda>(x.shape(), T(-7)) : Tensor<T, Cuda>();
  Tensor<T> dw = nsl::test::randn<T>(w.shape(), rng);
  Tensor<T> db = p.bias ? nsl::test::randn<T>(b.shape(), rng) : Tensor<T>();
  auto dw_d = nsl::to_device<T>(dw), db_d = nsl::to_device<T>(db);
  nsl::conv2d_backward<T>(x.view(), w.view(), p.g, dy.view(), dx.view(), dw.view(), db.view(), cpu_ws);
  nsl::conv2d_backward<T>(x_d.view(), w_d.view(), p.g, dy_d.view(), dx_d.view(), dw_d.view(), db_d.view(), gpu_ws);
  if (p.input_gradient) nsl::test::check_close<T>("dx", dx_d.view(), dx.view());
  nsl::test::check_close<T>("dw", dw_d.view(), dw.view());
  if (p.bias) nsl::test::check_close<T>("db", db_d.view(), db.view());
}

// The ShapeError message of a call, or "" when it does not throw one.
template <class F>
std::string shape_error(F&& call) {
  try {
    call();
  } catch (const nsl::ShapeError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE_TEMPLATE("the CUDA convolution equals the CPU one on random shapes and geometries", T, float, double) {
  nsl::Rng rng(sizeof(T) == 4 ? 21 : 22);
  nsl::Conv2dWorkspace<T> cpu_ws;
  nsl::Conv2dWorkspace<T, Cuda> gpu_ws;  // reused across cases: it grows and is reused
  for (int trial = 0; trial < 48; ++trial) {
    CAPTURE(trial);
    compare<T>(random_case(rng, trial), rng, cpu_ws, gpu_ws);
  }
}

TEST_CASE_TEMPLATE("the CUDA convolution equals the CPU one on layer-sized problems", T, float, double) {
  // Several GEMM tiles; the last two have fewer outputs than inputs (the
  // CPU's output-side form) and a stride-2 downsampling.
  nsl::Rng rng(23);
  nsl::Conv2dWorkspace<T> cpu_ws;
  nsl::Conv2dWorkspace<T, Cuda> gpu_ws;
  compare<T>(ConvCase{6, 16, 40, 17, 15, {3, 1, 1}, true, true}, rng, cpu_ws, gpu_ws);
  compare<T>(ConvCase{3, 64, 9, 10, 10, {3, 1, 1}, true, true}, rng, cpu_ws, gpu_ws);
  compare<T>(ConvCase{4, 24, 32, 16, 16, {5, 2, 2}, false, true}, rng, cpu_ws, gpu_ws);
}

TEST_CASE_TEMPLATE("the CUDA convolution gives the same result when the batch runs in chunks", T, float, double) {
  nsl::Rng rng(24);
  nsl::Conv2dWorkspace<T> cpu_ws;
  nsl::Conv2dWorkspace<T, Cuda> gpu_ws;
  const ConvCase p{7, 3, 5, 9, 8, {3, 2, 1}, true, true};
  // Room for about two images' scratch: chunks of 2, 2, 2 and 1 images; then one image at a time.
  const nsl::index rows = p.c * 9, pixels = p.g.output_extent(p.h) * p.g.output_extent(p.w);
  gpu_ws.max_scratch_bytes = std::size_t(2 * (rows + p.o) * pixels) * sizeof(T);
  compare<T>(p, rng, cpu_ws, gpu_ws);
  gpu_ws.max_scratch_bytes = 1;
  compare<T>(p, rng, cpu_ws, gpu_ws);
}

TEST_CASE("the CUDA convolution rejects wrong shapes with the CPU's messages") {
  nsl::Rng rng(25);
  const nsl::ConvGeometry g{3, 1, 1};
  // Host tensors and their device copies; the *_bad ones have a wrong shape.
  const Shape x_shape{2, 3, 8, 8}, w_shape{4, 3, 3, 3}, y_shape{2, 4, 8, 8};
  Tensor<float> x = nsl::test::randn<float>(x_shape, rng), w = nsl::test::randn<float>(w_shape, rng);
  Tensor<float> w_bad(Shape{4, 2, 3, 3}), b(Shape{4}), b_bad(Shape{5}), y(y_shape), y_bad(Shape{2, 4, 7, 8});
  Tensor<float> dx(x_shape), dx_bad(Shape{2, 3, 8, 9}), dw(w_shape);
  auto x_d = nsl::to_device<float>(x), w_d = nsl::to_device<float>(w), w_bad_d = nsl::to_device<float>(w_bad);
  auto b_d = nsl::to_device<float>(b), b_bad_d = nsl::to_device<float>(b_bad);
  auto y_d = nsl::to_device<float>(y), y_bad_d = nsl::to_device<float>(y_bad);
  auto dx_d = nsl::to_device<float>(dx), dx_bad_d = nsl::to_device<float>(dx_bad), dw_d = nsl::to_device<float>(dw);
  nsl::Conv2dWorkspace<float> cpu_ws;
  nsl::Conv2dWorkspace<float, Cuda> gpu_ws;

  // forward(weight, bias, output) and backward(output gradient, input gradient, bias gradient) on
  // both devices, the same message expected.
  auto forward_cpu = [&](Tensor<float>& w_, Tensor<float>& b_, Tensor<float>& y_) {
    return shape_error([&] { nsl::conv2d_forward<float>(x.view(), w_.view(), b_.view(), g, y_.view(), cpu_ws); });
  };
  auto forward_gpu = [&](Tensor<float, Cuda>& w_, Tensor<float, Cuda>& b_, Tensor<float, Cuda>& y_) {
    return shape_error([&] { nsl::conv2d_forward<float>(x_d.view(), w_.view(), b_.view(), g, y_.view(), gpu_ws); });
  };
  auto backward_cpu = [&](Tensor<float>& dy_, Tensor<float>& dx_, Tensor<float>& db_) {
    return shape_error([&] {
      nsl::conv2d_backward<float>(x.view(), w.view(), g, dy_.view(), dx_.view(), dw.view(), db_.view(), cpu_ws);
    });
  };
  auto backward_gpu = [&](Tensor<float, Cuda>& dy_, Tensor<float, Cuda>& dx_, Tensor<float, Cuda>& db_) {
    return shape_error([&] {
      nsl::conv2d_backward<float>(x_d.view(), w_d.view(), g, dy_.view(), dx_.view(), dw_d.view(), db_.view(), gpu_ws);
    });
  };
  auto same_error = [](const std::string& cpu, const std::string& gpu) {
    INFO("cpu: ", cpu, "\ngpu: ", gpu);
    CHECK(!cpu.empty());
    CHECK(gpu == cpu);
  };
  same_error(forward_cpu(w_bad, b, y), forward_gpu(w_bad_d, b_d, y_d));
  same_error(forward_cpu(w, b_bad, y), forward_gpu(w_d, b_bad_d, y_d));
  same_error(forward_cpu(w, b, y_bad), forward_gpu(w_d, b_d, y_bad_d));
  same_error(backward_cpu(y_bad, dx, b), backward_gpu(y_bad_d, dx_d, b_d));
  same_error(backward_cpu(y, dx_bad, b), backward_gpu(y_d, dx_bad_d, b_d));
  same_error(backward_cpu(y, dx, b_bad), backward_gpu(y_d, dx_d, b_bad_d));
  CHECK_THROWS_AS(nsl::conv2d_forward<float>(x_d.view(), w_bad_d.view(), b_d.view(), g, y_d.view(), gpu_ws),
                  nsl::ShapeError);
  CHECK_THROWS_AS(nsl::conv2d_backward<float>(x_d.view(), w_d.view(), g, y_bad_d.view(), dx_d.view(), dw_d.view(),
                                              b_d.view(), gpu_ws),
                  nsl::ShapeError);
}
