// Const inference of the basic layers (Layer::infer, nsl/layers/layer.hpp):
// for Conv2d, ReLU, MaxPool2d, BatchNorm2d, Linear, StaticNSConv2d and
// SphereConv2d, infer equals the evaluation-mode forward, changes nothing in
// the layer, reuses one workspace across batch sizes and reports shape errors
// as forward does; Conv2d's weights laid out for inference, and a ReLU fused
// into the convolution before it by Sequential. (That it allocates nothing once warm is checked in
// tests/memory/test_inference_allocations.cpp.)
#include <doctest/doctest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nsl/layers/batch_norm2d.hpp"
#include "nsl/layers/conv2d.hpp"
#include "nsl/layers/linear.hpp"
#include "nsl/layers/max_pool2d.hpp"
#include "nsl/layers/relu.hpp"
#include "nsl/layers/sphere_conv2d.hpp"
#include "nsl/layers/static_ns_conv2d.hpp"
#include "nsl/models/sequential.hpp"
#include "test_util.hpp"

namespace layers_inference_test {

using nsl::index;
using nsl::Shape;
using nsl::Tensor;

/// A layer to test: `make` builds it with the same random parameters (and,
/// for BatchNorm, running statistics) on every call.
template <class T>
struct Case {
  std::string name;
  std::function<std::unique_ptr<nsl::Layer<T>>()> make;
  Shape input;      ///< a valid input shape (batch 3)
  Shape bad_input;  ///< an input forward rejects (rank 0: none, ReLU takes any)
  bool bitwise;     ///< infer runs forward's ops: equal bit for bit
};

/// `s` with batch n.
inline Shape with_batch(const Shape& s, index n) {
  if (s.rank() == 4) return Shape{n, s[1], s[2], s[3]};
  return Shape{n, s[1]};
}

/// Tolerance (relative to the output's largest value) where infer runs a
/// different product than forward (Linear; StaticNSConv2d's full fold).
template <class T>
double rounding_tolerance() {
  return sizeof(T) == 4 ? 1e-6 : 1e-14;
}

template <class T>
std::vector<Case<T>> cases() {
  using nsl::AngularForm;
  using nsl::Structure;
  std::vector<Case<T>> all;
  all.push_back({"Conv2d 4->6 k3 s1 p1 bias",
                 [] {
                   nsl::Rng rng(11);
                   auto l = std::make_unique<nsl::Conv2d<T>>(4, 6, 3, nsl::Conv2dOptions{1, 1, true}, rng);
                   nsl::fill_normal<T>(l->bias().view(), rng);
                   return l;
                 },
                 Shape{3, 4, 7, 6}, Shape{3, 5, 7, 6}, true});
  all.push_back({"Conv2d 6->3 k3 s1 p1, output-side form",
                 [] {
                   nsl::Rng rng(12);
                   auto l = std::make_unique<nsl::Conv2d<T>>(6, 3, 3, nsl::Conv2dOptions{1, 1, true}, rng);
                   nsl::fill_normal<T>(l->bias().view(), rng);
                   return l;
                 },
                 Shape{3, 6, 6, 5}, Shape{3, 4, 6, 5}, true});
  all.push_back({"Conv2d 3->5 k5 s2 p2 no bias",
                 [] {
                   nsl::Rng rng(13);
                   return std::make_unique<nsl::Conv2d<T>>(3, 5, 5, nsl::Conv2dOptions{2, 2, false}, rng);
                 },
                 Shape{3, 3, 9, 8}, Shape{3, 3, 9}, true});
  all.push_back({"ReLU", [] { return std::make_unique<nsl::ReLU<T>>(); }, Shape{3, 4, 5, 6}, Shape(), true});
  all.push_back({"MaxPool2d 2x2 s2, odd size", [] { return std::make_unique<nsl::MaxPool2d<T>>(2, 2); },
                 Shape{3, 4, 7, 9}, Shape{3, 7, 9}, true});
  all.push_back({"MaxPool2d 3x3 s2", [] { return std::make_unique<nsl::MaxPool2d<T>>(3, 2); }, Shape{3, 2, 8, 8},
                 Shape{3, 8, 8}, true});
  all.push_back({"BatchNorm2d with trained running statistics",
                 [] {
                   nsl::Rng rng(14);
                   auto l = std::make_unique<nsl::BatchNorm2d<T>>(4, nsl::BatchNormOptions{1e-3, 0.9, true});
                   nsl::fill_normal<T>(l->gamma().view(), rng, 1.0, 0.5);
                   nsl::fill_normal<T>(l->beta().view(), rng);
                   for (int step = 0; step < 3; ++step) {  // running statistics far from (0, 1)
                     Tensor<T> x = nsl::random_normal<T>(Shape{5, 4, 3, 4}, rng);
                     x.vec() = (x.vec().array() * T(3) + T(2)).matrix();
                     l->forward(x.view());
                   }
                   return l;
                 },
                 Shape{3, 4, 5, 6}, Shape{3, 3, 5, 6}, true});
  all.push_back({"Linear 4-D input 60->7",
                 [] {
                   nsl::Rng rng(15);
                   auto l = std::make_unique<nsl::Linear<T>>(60, 7, true, rng);
                   nsl::fill_normal<T>(l->bias().view(), rng);
                   return l;
                 },
                 Shape{3, 3, 5, 4}, Shape{3, 3, 5, 5}, false});
  all.push_back({"Linear 2-D input, no bias",
                 [] {
                   nsl::Rng rng(16);
                   return std::make_unique<nsl::Linear<T>>(33, 9, false, rng);
                 },
                 Shape{3, 33}, Shape{3, 32}, false});
  for (Structure s : {Structure::identity, Structure::diagonal, Structure::channel_shared, Structure::block_diagonal,
                      Structure::full})
    all.push_back({std::string("StaticNSConv2d ") + nsl::to_string(s),
                   [s] {
                     nsl::Rng rng(17);
                     auto l = std::make_unique<nsl::StaticNSConv2d<T>>(4, 5, 3, s, nsl::Conv2dOptions{1, 1, true}, rng);
                     nsl::fill_normal<T>(l->similarity().view(), rng, 0.0, 0.5);
                     nsl::fill_normal<T>(l->bias().view(), rng);
                     return l;
                   },
                   Shape{3, 4, 6, 7}, Shape{3, 5, 6, 7}, s != Structure::full});
  struct SphereConfig {
    const char* name;
    nsl::SphereConvOptions options;
  };
  for (const SphereConfig& c :
       {SphereConfig{"plain", {1, 1, false, false, AngularForm::identity}},
        SphereConfig{"identity, input norm only", {1, 1, true, false, AngularForm::identity}},
        SphereConfig{"identity, filter norm only, stride 2", {2, 0, false, true, AngularForm::identity}},
        SphereConfig{"cosine", {1, 1, true, true, AngularForm::cosine}},
        SphereConfig{"linear", {1, 1, true, true, AngularForm::linear}},
        SphereConfig{"sigmoid, stride 2", {2, 1, true, true, AngularForm::sigmoid}}})
    all.push_back({std::string("SphereConv2d ") + c.name,
                   [o = c.options] {
                     nsl::Rng rng(18);
                     return std::make_unique<nsl::SphereConv2d<T>>(3, 5, 3, o, rng);
                   },
                   Shape{3, 3, 7, 6}, Shape{3, 2, 7, 6}, true});
  return all;
}

/// The output of the evaluation-mode forward (set_training(false), then
/// forward_into) of a fresh copy of the case's layer.
template <class T>
Tensor<T> evaluation_forward(const Case<T>& c, const Tensor<T>& x) {
  auto layer = c.make();
  layer->set_training(false);
  return layer->forward(x.view());
}

/// Checks a against b: bit for bit, or to rounding.
template <class T>
void check_same(const Tensor<T>& a, const Tensor<T>& b, bool bitwise) {
  REQUIRE(a.shape() == b.shape());
  const double difference = nsl::test::max_relative_difference(a, b);
  CAPTURE(difference);
  if (bitwise) CHECK(difference == 0.0);
  else CHECK(difference <= rounding_tolerance<T>());
}

/// The message of the nsl::Error that `f` throws ("" if none).
template <class F>
std::string error_message(F&& f) {
  try {
    f();
  } catch (const nsl::Error& e) {
    return e.what();
  }
  return "";
}

TEST_CASE_TEMPLATE("infer of a basic layer equals its evaluation-mode forward", T, float, double) {
  nsl::Rng rng(100);
  for (const Case<T>& c : cases<T>()) {
    CAPTURE(c.name);
    const Tensor<T> x = nsl::test::randn<T>(c.input, rng);
    const auto layer = c.make();  // in training mode: infer uses the evaluation behaviour anyway
    const nsl::Layer<T>& frozen = *layer;
    nsl::InferenceWorkspace ws;
    Tensor<T> y(frozen.output_shape(x.shape()));
    frozen.infer(x.view(), y.view(), ws);
    check_same(y, evaluation_forward(c, x), c.bitwise);
    check_same(frozen.infer(x.view(), ws), y, true);  // the convenience form, warm workspace
  }
}

TEST_CASE_TEMPLATE("infer changes nothing in the layer, not even between forward and backward", T, float, double) {
  nsl::Rng rng(101);
  for (const Case<T>& c : cases<T>()) {
    CAPTURE(c.name);
    // Two copies train one step on the same batch; one of them also infers,
    // on a batch of another size, between its forward and its backward.
    auto with_infer = c.make(), without = c.make();
    const Tensor<T> x = nsl::test::randn<T>(c.input, rng);
    const Tensor<T> other = nsl::test::randn<T>(with_batch(c.input, 5), rng);
    const Tensor<T> y1 = with_infer->forward(x.view()), y2 = without->forward(x.view());
    check_same(y1, y2, true);
    const Tensor<T> dy = nsl::test::randn<T>(y1.shape(), rng);
    nsl::InferenceWorkspace ws;
    const nsl::Layer<T>& frozen = *with_infer;
    frozen.infer(other.view(), ws);
    frozen.infer(x.view(), ws);
    check_same(with_infer->backward(dy.view()), without->backward(dy.view()), true);
    const auto p1 = with_infer->parameters(), p2 = without->parameters();
    REQUIRE(p1.size() == p2.size());
    for (std::size_t i = 0; i < p1.size(); ++i) {
      CAPTURE(p1[i].name);
      check_same(Tensor<T>(nsl::TensorView<const T>(p1[i].value)), Tensor<T>(nsl::TensorView<const T>(p2[i].value)),
                 true);
      check_same(Tensor<T>(nsl::TensorView<const T>(p1[i].grad)), Tensor<T>(nsl::TensorView<const T>(p2[i].grad)),
                 true);
    }
    const auto b1 = with_infer->buffers(), b2 = without->buffers();
    REQUIRE(b1.size() == b2.size());
    for (std::size_t i = 0; i < b1.size(); ++i) {
      CAPTURE(b1[i].name);
      check_same(Tensor<T>(nsl::TensorView<const T>(b1[i].value)), Tensor<T>(nsl::TensorView<const T>(b2[i].value)),
                 true);
    }
    CHECK(with_infer->training());
  }
}

TEST_CASE_TEMPLATE("one inference workspace serves batches of several sizes in turn", T, float, double) {
  nsl::Rng rng(102);
  for (const Case<T>& c : cases<T>()) {
    CAPTURE(c.name);
    const auto layer = c.make();
    const nsl::Layer<T>& frozen = *layer;
    nsl::InferenceWorkspace ws;
    for (nsl::index batch : {3, 1, 6, 2, 6}) {
      CAPTURE(batch);
      const Tensor<T> x = nsl::test::randn<T>(with_batch(c.input, batch), rng);
      check_same(frozen.infer(x.view(), ws), evaluation_forward(c, x), c.bitwise);
    }
  }
}

TEST_CASE_TEMPLATE("infer reports a wrong input or output shape with forward's message", T, float, double) {
  nsl::Rng rng(103);
  for (const Case<T>& c : cases<T>()) {
    CAPTURE(c.name);
    const auto layer = c.make();
    const nsl::Layer<T>& frozen = *layer;
    nsl::InferenceWorkspace ws;
    const Shape out = frozen.output_shape(c.input);
    const Tensor<T> x = nsl::test::randn<T>(c.input, rng);
    // An output with one image too many.
    Tensor<T> wrong_y(with_batch(out, out[0] + 1));
    const std::string infer_output = error_message([&] { frozen.infer(x.view(), wrong_y.view(), ws); });
    const std::string forward_output = error_message([&] { layer->forward_into(x.view(), wrong_y.view()); });
    CAPTURE(infer_output);
    CHECK(infer_output.find("output") != std::string::npos);
    CHECK(infer_output.find("expected") != std::string::npos);
    CHECK(infer_output == forward_output);
    // An input of the wrong channel count or rank.
    if (c.bad_input.rank() == 0) continue;
    const Tensor<T> bad = nsl::test::randn<T>(c.bad_input, rng);
    Tensor<T> y(out);
    const std::string infer_input = error_message([&] { frozen.infer(bad.view(), y.view(), ws); });
    const std::string forward_input = error_message([&] { layer->forward_into(bad.view(), y.view()); });
    CAPTURE(infer_input);
    CHECK(infer_input.find("expected") != std::string::npos);
    CHECK(infer_input == forward_input);
    // The workspace still works after the errors.
    check_same(frozen.infer(x.view(), ws), evaluation_forward(c, x), c.bitwise);
  }
}

TEST_CASE("infer runs through a const reference to the concrete layer and keeps the older overloads") {
  nsl::Rng rng(104);
  const Tensor<float> x = nsl::test::randn<float>(Shape{2, 3, 6, 6}, rng);
  const nsl::Conv2d<float> conv(3, 4, 3, {1, 1, true}, rng);
  nsl::InferenceWorkspace ws;
  const Tensor<float> y = conv.infer(x.view(), ws);  // Layer's convenience form, visible on Conv2d
  nsl::Conv2dWorkspace<float> conv_ws;
  Tensor<float> y_old(y.shape());
  conv.infer(x.view(), y_old.view(), conv_ws);  // the explicit-workspace form
  CHECK(nsl::test::max_relative_difference(y, y_old) == 0.0);

  const nsl::MaxPool2d<float> pool;
  nsl::InferenceWorkspace pool_ws;
  const Tensor<float> pooled = pool.infer(y.view(), pool_ws);
  std::vector<nsl::index> argmax;
  Tensor<float> pooled_old(pooled.shape());
  pool.infer(y.view(), pooled_old.view(), argmax);
  CHECK(nsl::test::max_relative_difference(pooled, pooled_old) == 0.0);
}

TEST_CASE("BatchNorm2d and ReLU infer in place, as the containers call them") {
  nsl::Rng rng(105);
  nsl::BatchNorm2d<double> bn(3);
  for (int step = 0; step < 2; ++step) bn.forward(nsl::test::randn<double>(Shape{4, 3, 5, 5}, rng).view());
  const Tensor<double> x = nsl::test::randn<double>(Shape{2, 3, 5, 5}, rng);
  nsl::InferenceWorkspace ws_bn, ws_relu;
  const nsl::Layer<double>& frozen_bn = bn;
  const Tensor<double> expected = nsl::ReLU<double>().infer(frozen_bn.infer(x.view(), ws_bn).view(), ws_relu);
  Tensor<double> in_place = x;
  frozen_bn.infer(in_place.view(), in_place.view(), ws_bn);
  nsl::ReLU<double>().infer(in_place.view(), in_place.view(), ws_relu);
  CHECK(nsl::test::max_relative_difference(in_place, expected) == 0.0);
}

TEST_CASE("Conv2d::prepare_inference: infer reads weights laid out once, until the weights may change") {
  if (!nsl::conv2d_direct_supported({3, 1, 1})) {
    MESSAGE("built without xsimd: no direct convolution, nothing to lay out");
    return;
  }
  nsl::Rng rng(107);
  nsl::Conv2d<float> conv(8, 40, 3, {1, 1, true}, rng);
  const Tensor<float> x = nsl::test::randn<float>(Shape{1, 8, 7, 7}, rng);
  nsl::InferenceWorkspace ws;
  const Tensor<float> before = conv.infer(x.view(), ws);
  CHECK_FALSE(conv.inference_prepared());
  conv.prepare_inference();
  REQUIRE(conv.inference_prepared());
  const nsl::Conv2d<float>& frozen = conv;
  CHECK(frozen.infer(x.view(), ws).vec() == before.vec());  // the same sums in the same order
  // A non-const access to the weights drops the layout, so that a change
  // through it is seen; a stale copy would give `before` again.
  conv.weight()[0] += 1.0f;
  CHECK_FALSE(conv.inference_prepared());
  const Tensor<float> changed = frozen.infer(x.view(), ws);
  CHECK(changed.vec() != before.vec());
  conv.prepare_inference();
  CHECK(frozen.infer(x.view(), ws).vec() == changed.vec());
  conv.parameters();
  CHECK_FALSE(conv.inference_prepared());
  conv.prepare_inference();
  nsl::Rng again(1);
  conv.reset_parameters(again);
  CHECK_FALSE(conv.inference_prepared());
  // Stride 2 has no direct path: nothing laid out, infer as before.
  nsl::Conv2d<float> strided(8, 16, 3, {2, 1, true}, rng);
  strided.prepare_inference();
  CHECK_FALSE(strided.inference_prepared());
}

TEST_CASE("Sequential infer fuses a ReLU into the convolution before it: the unfused values, wherever it sits") {
  // conv-relu in the middle and at the end (the output written by the
  // fused call), a stride-2 conv (GEMM path: the ReLU over y after), a ReLU
  // after a layer that cannot fuse it (max-pooling), and two ReLUs in a row.
  nsl::Rng rng(108);
  nsl::Sequential<float> net;
  net.add("conv1", std::make_unique<nsl::Conv2d<float>>(8, 32, 3, nsl::Conv2dOptions{1, 1, true}, rng));
  net.add("relu1", std::make_unique<nsl::ReLU<float>>());
  net.add("conv2", std::make_unique<nsl::Conv2d<float>>(32, 16, 3, nsl::Conv2dOptions{2, 1, true}, rng));
  net.add("relu2", std::make_unique<nsl::ReLU<float>>());
  net.add("relu3", std::make_unique<nsl::ReLU<float>>());
  net.add("pool", std::make_unique<nsl::MaxPool2d<float>>());
  net.add("relu4", std::make_unique<nsl::ReLU<float>>());
  net.add("conv3", std::make_unique<nsl::Conv2d<float>>(16, 24, 3, nsl::Conv2dOptions{1, 1, true}, rng));
  net.add("relu5", std::make_unique<nsl::ReLU<float>>());
  net.set_training(false);
  for (nsl::index batch : {1, 3}) {
    CAPTURE(batch);
    const Tensor<float> x = nsl::test::randn<float>(Shape{batch, 8, 12, 12}, rng);
    const Tensor<float> expected = net.forward(x.view());
    CHECK(expected.vec().minCoeff() == 0.0f);
    for (bool prepared : {false, true}) {
      CAPTURE(prepared);
      if (prepared) net.prepare_inference();
      nsl::InferenceWorkspace ws;
      const nsl::Sequential<float>& frozen = net;
      CHECK(frozen.infer(x.view(), ws).vec() == expected.vec());
      CHECK(frozen.infer(x.view(), ws).vec() == expected.vec());  // a warm workspace
    }
  }
}

TEST_CASE("a workspace used by one layer is refused by a layer of another kind") {
  nsl::Rng rng(106);
  const nsl::Conv2d<float> conv(2, 2, 3, {1, 1, false}, rng);
  const nsl::SphereConv2d<float> sphere(2, 2, 3, {1, 1, true, true, nsl::AngularForm::cosine}, rng);
  const Tensor<float> x = nsl::test::randn<float>(Shape{1, 2, 5, 5}, rng);
  nsl::InferenceWorkspace ws;
  conv.infer(x.view(), ws);
  CHECK_THROWS_AS(sphere.infer(x.view(), ws), nsl::Error);
}

}  // namespace layers_inference_test
