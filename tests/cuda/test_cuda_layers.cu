// Layers, CNN-9 and SGD on the GPU against the same code on the CPU: the
// layers are written once (include/nsl/layers), so these tests check that
// the Cuda operations compose into the same forward, backward and update.
#include <doctest/doctest.h>

#include <functional>
#include <memory>
#include <string>

#include "cuda_test_util.cuh"
#include "nsl/cuda/cuda.cuh"
#include "nsl/models/cnn9.hpp"
#include "nsl/train/sgd.hpp"

namespace {

using nsl::Cpu;
using nsl::Cuda;
using nsl::index;
using nsl::Shape;
using nsl::Tensor;

// Every parameter's value and gradient, and every buffer, of two copies of
// one layer (the CPU's and the GPU's), compared by name.
template <class T>
void check_state(nsl::Layer<T, Cpu>& cpu, nsl::Layer<T, Cuda>& gpu, double tolerance, bool gradients) {
  const auto p_cpu = cpu.parameters();
  const auto p_gpu = gpu.parameters();
  REQUIRE(p_cpu.size() == p_gpu.size());
  for (std::size_t i = 0; i < p_cpu.size(); ++i) {
    REQUIRE(p_cpu[i].name == p_gpu[i].name);
    nsl::test::check_close<T>((p_cpu[i].name + " value").c_str(), p_gpu[i].value, p_cpu[i].value, tolerance);
    if (gradients)
      nsl::test::check_close<T>((p_cpu[i].name + " gradient").c_str(), p_gpu[i].grad, p_cpu[i].grad, tolerance);
  }
  const auto b_cpu = cpu.buffers();
  const auto b_gpu = gpu.buffers();
  REQUIRE(b_cpu.size() == b_gpu.size());
  for (std::size_t i = 0; i < b_cpu.size(); ++i)
    nsl::test::check_close<T>(b_cpu[i].name.c_str(), b_gpu[i].value, b_cpu[i].value, tolerance);
}

// One training forward + backward (and an evaluation forward) of a layer on
// both devices, from the same initial state, input and output gradient.
template <class T>
void compare_layer(const char* what, nsl::Layer<T, Cpu>& cpu, nsl::Layer<T, Cuda>& gpu, const Shape& input,
                   double tolerance, std::uint64_t seed = 7) {
  INFO(std::string(what));
  nsl::Rng rng(seed);
  const Tensor<T> x = nsl::test::randn<T>(input, rng);
  const Shape out = cpu.output_shape(input);
  REQUIRE(gpu.output_shape(input) == out);
  const Tensor<T> dy = nsl::test::randn<T>(out, rng);
  const Tensor<T, Cuda> x_gpu = nsl::to_device<T>(x), dy_gpu = nsl::to_device<T>(dy);
  for (bool training : {true, false}) {
    cpu.set_training(training);
    gpu.set_training(training);
    nsl::zero_gradients(cpu.parameters());
    nsl::zero_gradients(gpu.parameters());
    Tensor<T> y(out), dx(input);
    Tensor<T, Cuda> y_gpu(out), dx_gpu(input);
    cpu.forward_into(x.view(), y.view());
    gpu.forward_into(x_gpu.view(), y_gpu.view());
    nsl::test::check_close<T>(training ? "training output" : "evaluation output", y_gpu.view(), y.view(), tolerance);
    cpu.backward_into(dy.view(), dx.view());
    gpu.backward_into(dy_gpu.view(), dx_gpu.view());
    nsl::test::check_close<T>("input gradient", dx_gpu.view(), dx.view(), tolerance);
    check_state<T>(cpu, gpu, tolerance, true);
  }
}

template <class T>
using Factory = std::function<std::unique_ptr<nsl::Layer<T, Cpu>>(nsl::Rng&)>;

// Builds the layer twice from generators with the same seed: the same weights.
template <class T, template <class, class> class L, class... Args>
void compare_layer_type(const char* what, const Shape& input, double tolerance, const Args&... args) {
  nsl::Rng rng_cpu(3), rng_gpu(3);
  L<T, Cpu> cpu(args..., rng_cpu);
  L<T, Cuda> gpu(args..., rng_gpu);
  compare_layer<T>(what, cpu, gpu, input, tolerance);
}

template <class T>
void compare_all_layers() {
  const double tol = nsl::test::cuda_tolerance<T>();
  using nsl::Structure;
  compare_layer_type<T, nsl::Conv2d>("Conv2d 3x3 same, bias", Shape{3, 5, 9, 8}, tol, index(5), index(7), index(3),
                                     nsl::Conv2dOptions{1, 1, true});
  compare_layer_type<T, nsl::Conv2d>("Conv2d 5x5 stride 2", Shape{2, 4, 11, 11}, tol, index(4), index(6), index(5),
                                     nsl::Conv2dOptions{2, 2, false});
  compare_layer_type<T, nsl::StaticNSConv2d>("StaticNSConv2d DNS", Shape{2, 6, 8, 8}, tol, index(6), index(5),
                                             index(3), Structure::diagonal, nsl::Conv2dOptions{1, 1, false});
  compare_layer_type<T, nsl::StaticNSConv2d>("StaticNSConv2d UNS", Shape{2, 6, 8, 8}, tol, index(6), index(5),
                                             index(3), Structure::channel_shared, nsl::Conv2dOptions{1, 1, true});
  compare_layer_type<T, nsl::DynamicNSConv2d>(
      "DynamicNSConv2d DNS", Shape{2, 6, 7, 7}, tol, index(6), index(8), index(3), Structure::diagonal,
      nsl::DynamicNSConvOptions{1, false, nsl::PredictorOptions::dns()});
  compare_layer_type<T, nsl::DynamicNSConv2d>(
      "DynamicNSConv2d UNS", Shape{2, 6, 7, 7}, tol, index(6), index(8), index(3), Structure::channel_shared,
      nsl::DynamicNSConvOptions{1, true, nsl::PredictorOptions::uns()});
  compare_layer_type<T, nsl::DynamicNSConv2d>(
      "DynamicNSConv2d DNS sphere", Shape{2, 6, 7, 7}, tol, index(6), index(8), index(3), Structure::diagonal,
      nsl::DynamicNSConvOptions{1, false, nsl::PredictorOptions::dns_sphere()});
  for (nsl::AngularForm form :
       {nsl::AngularForm::identity, nsl::AngularForm::cosine, nsl::AngularForm::linear, nsl::AngularForm::sigmoid}) {
    nsl::SphereConvOptions o;
    o.padding = 1;
    o.form = form;
    compare_layer_type<T, nsl::SphereConv2d>(nsl::to_string(form), Shape{2, 4, 6, 6}, tol, index(4), index(5),
                                             index(3), o);
  }
  {
    nsl::BatchNorm2d<T, Cpu> cpu(5);
    nsl::BatchNorm2d<T, Cuda> gpu(5);
    compare_layer<T>("BatchNorm2d", cpu, gpu, Shape{4, 5, 6, 7}, tol);
  }
  {
    nsl::ReLU<T, Cpu> cpu;
    nsl::ReLU<T, Cuda> gpu;
    compare_layer<T>("ReLU", cpu, gpu, Shape{3, 4, 5, 6}, tol);
  }
  {
    nsl::MaxPool2d<T, Cpu> cpu;
    nsl::MaxPool2d<T, Cuda> gpu;
    compare_layer<T>("MaxPool2d 2x2 same, odd size", cpu, gpu, Shape{3, 4, 7, 9}, tol);
  }
}

// Three SGD steps of CNN-9 on both devices: logits, loss, every gradient of
// the first step and every parameter, buffer and velocity after the last.
template <class T>
void compare_cnn9(nsl::Variant variant, double tolerance) {
  INFO(nsl::cat("CNN-9 ", nsl::to_string(variant)));
  nsl::Cnn9Options options;
  options.input_size = 12;
  options.widths[0] = 8;
  options.widths[1] = 8;
  options.widths[2] = 16;
  nsl::Rng rng_cpu(11), rng_gpu(11);
  nsl::Sequential<T, Cpu> cpu = nsl::cnn9<T, Cpu>(variant, 1, 10, rng_cpu, options);
  nsl::Sequential<T, Cuda> gpu = nsl::cnn9<T, Cuda>(variant, 1, 10, rng_gpu, options);
  nsl::Sgd<T, Cpu> sgd_cpu(cpu.parameters());
  nsl::Sgd<T, Cuda> sgd_gpu(gpu.parameters());
  nsl::Rng data(5);
  std::vector<int> labels{0, 3, 9, 1, 4, 4};
  for (int step = 0; step < 3; ++step) {
    const Tensor<T> x = nsl::random_uniform<T>(Shape{6, 1, 12, 12}, data, 0.0, 255.0);
    const Tensor<T, Cuda> x_gpu = nsl::to_device<T>(x);
    const Shape out = cpu.output_shape(x.shape());
    Tensor<T> logits(out), dlogits(out);
    Tensor<T, Cuda> logits_gpu(out), dlogits_gpu(out);
    cpu.forward_into(x.view(), logits.view());
    gpu.forward_into(x_gpu.view(), logits_gpu.view());
    nsl::test::check_close<T>("logits", logits_gpu.view(), logits.view(), tolerance);
    const nsl::LossResult r = nsl::softmax_cross_entropy<T>(logits.view(), labels, 0.01, dlogits.view());
    const nsl::LossResult r_gpu = nsl::softmax_cross_entropy<T>(logits_gpu.view(), labels, 0.01, dlogits_gpu.view());
    CHECK(r_gpu.loss == doctest::Approx(r.loss).epsilon(tolerance));
    CHECK(r_gpu.correct == r.correct);
    sgd_cpu.zero_gradients();
    sgd_gpu.zero_gradients();
    cpu.backward_into(dlogits.view(), {});
    gpu.backward_into(dlogits_gpu.view(), {});
    if (step == 0) check_state<T>(cpu, gpu, tolerance, true);
    sgd_cpu.step(0.01);
    sgd_gpu.step(0.01);
  }
  // After three updates the dynamic DNS networks amplify float rounding about
  // 1e5-fold on either device (the CPU's float run is as far from its double
  // run as the GPU's), so their state after training is compared in double only.
  if (sizeof(T) == 4 && (variant == nsl::Variant::dynamic_dns || variant == nsl::Variant::dynamic_dns_sphere)) return;
  check_state<T>(cpu, gpu, tolerance, false);
  for (std::size_t i = 0; i < sgd_cpu.velocities().size(); ++i)
    nsl::test::check_close<T>("velocity", sgd_gpu.velocities()[i].view(), sgd_cpu.velocities()[i].view(), tolerance);
  cpu.set_training(false);
  gpu.set_training(false);
  const Tensor<T> x = nsl::random_uniform<T>(Shape{3, 1, 12, 12}, data, 0.0, 255.0);
  const Tensor<T, Cuda> x_gpu = nsl::to_device<T>(x);
  nsl::test::check_close<T>("evaluation logits", gpu.forward(x_gpu.view()).view(), cpu.forward(x.view()).view(),
                            tolerance);
}

}  // namespace

TEST_CASE("every layer on the GPU matches the CPU, training and evaluation, float") {
  compare_all_layers<float>();
}

TEST_CASE("every layer on the GPU matches the CPU, training and evaluation, double") {
  compare_all_layers<double>();
}

TEST_CASE("CNN-9 training steps on the GPU match the CPU for every variant") {
  for (nsl::Variant v : {nsl::Variant::plain, nsl::Variant::static_dns, nsl::Variant::static_uns,
                         nsl::Variant::dynamic_dns, nsl::Variant::dynamic_uns, nsl::Variant::dynamic_dns_sphere}) {
    compare_cnn9<double>(v, 1e-9);
    // float through ten layers and three updates: rounding compounds, so the
    // bound is looser than the per-operation 1e-4.
    compare_cnn9<float>(v, 2e-3);
  }
}

TEST_CASE("a GPU tensor round-trips through the host and copies on the device") {
  nsl::Rng rng(1);
  const nsl::Tensor<float> host = nsl::test::randn<float>(nsl::Shape{3, 4, 5}, rng);
  nsl::Tensor<float, nsl::Cuda> device = nsl::to_device<float>(host);
  const nsl::Tensor<float, nsl::Cuda> copy = device;  // a device copy, not a shared buffer
  device.set_zero();
  nsl::test::check_close<float>("copy", copy.view(), host.view(), 0.0);
  CHECK(nsl::to_host<float>(device).vec().cwiseAbs().maxCoeff() == 0.0f);
  nsl::Tensor<float> wrong(nsl::Shape{3, 4});
  CHECK_THROWS_AS(nsl::download<float>(copy.view(), wrong.view()), nsl::ShapeError);
}
