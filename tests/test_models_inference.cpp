// Const inference (Layer::infer): for the dynamic layers, the global
// similarity block, the few-shot heads and whole networks, infer gives the
// evaluation-mode forward's output, changes nothing in the layer, and one
// model serves several threads at once, each with its own workspace.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "nsl/deploy/deploy.hpp"
#include "nsl/fewshot/heads.hpp"
#include "nsl/models/cnn9.hpp"
#include "nsl/models/conv4.hpp"
#include "test_util.hpp"

using nsl::HeadKind;
using nsl::InferenceWorkspace;
using nsl::Shape;
using nsl::Tensor;
using nsl::Variant;

namespace nsl_test_models_inference {

/// max_i |a_i - b_i| (0 exactly when a and b are equal bit for bit, NaNs aside).
template <class T>
double max_abs_difference(const Tensor<T>& a, const Tensor<T>& b) {
  nsl::check_shape("max_abs_difference", "a", a.shape(), b.shape());
  double worst = 0.0;
  for (nsl::index i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
  return worst;
}

/// Copies of every parameter value, parameter gradient and buffer of a layer.
template <class T>
std::vector<Tensor<T>> state_of(nsl::Layer<T>& layer) {
  std::vector<Tensor<T>> all;
  for (const auto& p : layer.parameters()) {
    all.emplace_back(nsl::TensorView<const T>(p.value));
    all.emplace_back(nsl::TensorView<const T>(p.grad));
  }
  for (const auto& b : layer.buffers()) all.emplace_back(nsl::TensorView<const T>(b.value));
  return all;
}

template <class T>
bool bitwise_equal(const std::vector<Tensor<T>>& a, const std::vector<Tensor<T>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(a[i].shape() == b[i].shape()) || max_abs_difference(a[i], b[i]) != 0.0) return false;
  return true;
}

/// The contract of infer, for the layers that `make(rng)` builds (three
/// twins from the same seed): after `warmups` training-mode forwards (BN
/// statistics away from their start), infer through a const reference of the
/// concrete type equals the evaluation-mode forward (within `tolerance`
/// relative; 0: bit for bit), for a second batch size too and again on the
/// first shape; it changes no parameter, gradient or buffer; and a training
/// forward and backward afterwards give what the twin that never inferred
/// gives, bit for bit. `shape` of the input; `small` a second input shape.
template <class T, class Make>
void check_infer_contract(Make make, const Shape& shape, const Shape& small, int warmups, double tolerance,
                          std::uint64_t seed) {
  nsl::Rng r1(seed), r2(seed), r3(seed), data(seed + 1);
  auto layer = make(r1), twin = make(r2), reference = make(r3);
  for (int i = 0; i < warmups; ++i) {
    const Tensor<T> x = nsl::test::randn<T>(shape, data);
    layer->forward(x);
    twin->forward(x);
    reference->forward(x);
  }
  const std::vector<Tensor<T>> before = state_of<T>(*layer);
  const Tensor<T> x = nsl::test::randn<T>(shape, data), x_small = nsl::test::randn<T>(small, data);
  reference->set_training(false);
  const Tensor<T> expected = reference->forward(x), expected_small = reference->forward(x_small);

  const auto& frozen = *layer;  // the concrete type, const: infer(x, ws) must be visible and const
  InferenceWorkspace ws;
  const Tensor<T> y = frozen.infer(x, ws);
  const Tensor<T> y_small = frozen.infer(x_small, ws);
  Tensor<T> again(y.shape());
  frozen.infer(x, again.view(), ws);
  const double scale = std::max(expected.vec().cwiseAbs().maxCoeff(), T(1e-30));
  const double scale_small = std::max(expected_small.vec().cwiseAbs().maxCoeff(), T(1e-30));
  CAPTURE(max_abs_difference(y, expected) / scale);
  CAPTURE(max_abs_difference(y_small, expected_small) / scale_small);
  CHECK(max_abs_difference(y, expected) <= tolerance * scale);
  CHECK(max_abs_difference(y_small, expected_small) <= tolerance * scale_small);
  CHECK(max_abs_difference(again, y) == 0.0);
  CHECK(bitwise_equal(state_of<T>(*layer), before));
  CHECK(layer->training());

  // Training afterwards: the same outputs, input gradients, parameter
  // gradients and updated buffers as the twin's.
  const Tensor<T> x_train = nsl::test::randn<T>(shape, data);
  const Tensor<T> y_layer = layer->forward(x_train), y_twin = twin->forward(x_train);
  const Tensor<T> dy = nsl::test::randn<T>(y_layer.shape(), data);
  const Tensor<T> dx_layer = layer->backward(dy), dx_twin = twin->backward(dy);
  CHECK(max_abs_difference(y_layer, y_twin) == 0.0);
  CHECK(max_abs_difference(dx_layer, dx_twin) == 0.0);
  CHECK(bitwise_equal(state_of<T>(*layer), state_of<T>(*twin)));
}

template <class T>
void check_dynamic_layers() {
  const nsl::PredictorOptions predictors[] = {nsl::PredictorOptions::dns(), nsl::PredictorOptions::uns(),
                                              nsl::PredictorOptions::dns_sphere()};
  const nsl::Structure structures[] = {nsl::Structure::diagonal, nsl::Structure::channel_shared,
                                       nsl::Structure::diagonal};
  for (int v = 0; v < 3; ++v)
    for (nsl::index stride : {1, 2}) {
      CAPTURE(v);
      CAPTURE(stride);
      nsl::PredictorOptions p = predictors[v];
      p.hidden = 5;
      p.second_scale = 0.3;  // G well away from zero
      const nsl::Structure s = structures[v];
      check_infer_contract<T>(
          [&](nsl::Rng& rng) { return std::make_unique<nsl::SimilarityPredictor<T>>(3, 3, stride, s, p, rng); },
          Shape{4, 3, 7, 6}, Shape{1, 3, 7, 6}, 3, 0.0, 900 + 10 * v + stride);
      for (nsl::index kernel : {3, 5}) {
        CAPTURE(kernel);
        check_infer_contract<T>(
            [&](nsl::Rng& rng) {
              auto layer = std::make_unique<nsl::DynamicNSConv2d<T>>(3, 4, kernel, s,
                                                                     nsl::DynamicNSConvOptions{stride, true, p}, rng);
              nsl::fill_normal<T>(layer->bias().view(), rng);
              return layer;
            },
            Shape{4, 3, 7, 6}, Shape{1, 3, 7, 6}, 3, 0.0, 950 + 10 * v + stride + kernel);
      }
    }
}

template <class T>
void check_global_similarity() {
  for (nsl::index channels : {8, 16}) {
    CAPTURE(channels);
    check_infer_contract<T>(
        [&](nsl::Rng& rng) {
          auto block = std::make_unique<nsl::GlobalSimilarity2d<T>>(channels, rng);
          block->gamma_tensor()[0] = T(0.7);  // away from the identity start
          return block;
        },
        Shape{3, channels, 4, 5}, Shape{1, channels, 4, 5}, 1, 0.0, 970 + channels);
  }
}

/// A head of `kind` on D-dimensional embeddings, its parameters drawn away
/// from the identity start, laid out for `ways` x `shots` episodes.
template <class T>
std::unique_ptr<nsl::PrototypeHead<T>> random_head(HeadKind kind, nsl::index dimension, nsl::index ways,
                                                   nsl::index shots, nsl::Rng& rng) {
  auto head = nsl::make_head<T>(kind, dimension, rng, nsl::HeadOptions{3, 5, 10.0});
  for (auto& p : head->parameters())
    if (p.name != "scale") nsl::fill_normal<T>(p.value, rng, 0.0, 0.4);
  head->set_episode(ways, shots);
  return head;
}

template <class T>
void check_heads() {
  for (HeadKind kind : {HeadKind::euclidean, HeadKind::cosine, HeadKind::static_ns, HeadKind::dynamic_ns})
    for (nsl::index shots : {1, 3}) {
      CAPTURE(std::string(nsl::to_string(kind)));
      CAPTURE(shots);
      // 4 ways x shots support rows, then 5 queries (then 1), as [B, 6, 1, 1] embeddings.
      check_infer_contract<T>([&](nsl::Rng& rng) { return random_head<T>(kind, 6, 4, shots, rng); },
                              Shape{4 * shots + 5, 6, 1, 1}, Shape{4 * shots + 1, 6, 1, 1}, 0, 0.0, 990 + shots);
    }
}

const Variant all_variants[] = {Variant::plain,       Variant::static_dns,  Variant::static_uns,
                                Variant::dynamic_dns, Variant::dynamic_uns, Variant::dynamic_dns_sphere,
                                Variant::sphere_attention};

/// A small CNN-9 of `variant` on 1 x 28 x 28 images, after three
/// training-mode forwards (non-trivial BN statistics).
inline nsl::Sequential<float> small_cnn9(Variant variant, nsl::Rng& rng) {
  nsl::Cnn9Options o;
  o.widths[0] = 4;
  o.widths[1] = 6;
  o.widths[2] = 8;
  o.attention_widths[0] = 8;
  o.attention_widths[1] = 8;
  o.attention_widths[2] = 16;
  o.predictor_hidden = 4;
  nsl::Sequential<float> net = nsl::cnn9<float>(variant, 1, 10, rng, o);
  for (auto& p : net.parameters())  // the attention blocks away from the identity start
    if (p.name.find("gamma") != std::string::npos && p.value.size() == 1) p.value[0] = 0.5f;
  for (int i = 0; i < 3; ++i) net.forward(nsl::test::randn<float>(Shape{4, 1, 28, 28}, rng));
  return net;
}

/// A Conv-4 of `variant` (width 8) with a `kind` head for 3-way 2-shot
/// episodes, after three training-mode forwards of 10-row episodes.
inline nsl::Sequential<float> small_conv4_with_head(Variant variant, HeadKind kind, nsl::Rng& rng) {
  nsl::Conv4Options o;
  o.width = 8;
  o.predictor_hidden = 4;
  nsl::Sequential<float> net = nsl::conv4<float>(variant, 1, rng, o);
  net.add("head", random_head<float>(kind, nsl::conv4_embedding_size(28, o), 3, 2, rng));
  for (int i = 0; i < 3; ++i) net.forward(nsl::test::randn<float>(Shape{10, 1, 28, 28}, rng));
  return net;
}

/// The network's infer against its evaluation-mode forward (relative to the
/// largest output); infer twice on one workspace gives the same bits.
inline double infer_versus_eval_forward(nsl::Sequential<float>& net, const Tensor<float>& x) {
  const nsl::Sequential<float>& frozen = net;
  InferenceWorkspace ws;
  const Tensor<float> y = frozen.infer(x, ws);
  const Tensor<float> again = frozen.infer(x, ws);
  CHECK(max_abs_difference(y, again) == 0.0);
  net.set_training(false);
  const Tensor<float> expected = net.forward(x);
  net.set_training(true);
  return nsl::test::max_relative_difference(y, expected);
}

/// Four threads share `net` (const), each with its own workspace and batch,
/// each inferring `repeats` times; returns how many results differ from the
/// single-thread logits in any bit.
inline int thread_mismatches(const nsl::Sequential<float>& net, const std::vector<Tensor<float>>& batches,
                             int repeats) {
  std::vector<Tensor<float>> expected;
  for (const auto& x : batches) {
    InferenceWorkspace ws;
    expected.push_back(net.infer(x, ws));
  }
  std::vector<int> mismatches(batches.size(), 0);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < batches.size(); ++t)
    threads.emplace_back([&, t] {
      InferenceWorkspace ws;
      Tensor<float> y(expected[t].shape());
      for (int r = 0; r < repeats; ++r) {
        y.fill(-1.0f);
        net.infer(batches[t], y.view(), ws);
        if (max_abs_difference(y, expected[t]) != 0.0) ++mismatches[t];
      }
    });
  for (auto& thread : threads) thread.join();
  int sum = 0;
  for (int m : mismatches) sum += m;
  return sum;
}

}  // namespace nsl_test_models_inference

namespace nti = nsl_test_models_inference;

TEST_CASE("SimilarityPredictor and DynamicNSConv2d: const infer equals the evaluation-mode forward and changes nothing") {
  SUBCASE("float") { nti::check_dynamic_layers<float>(); }
  SUBCASE("double") { nti::check_dynamic_layers<double>(); }
}

TEST_CASE("GlobalSimilarity2d: const infer equals the evaluation-mode forward and changes nothing") {
  SUBCASE("float") { nti::check_global_similarity<float>(); }
  SUBCASE("double") { nti::check_global_similarity<double>(); }
}

TEST_CASE("few-shot heads: const infer scores the current episode layout as forward does and changes nothing") {
  SUBCASE("float") { nti::check_heads<float>(); }
  SUBCASE("double") { nti::check_heads<double>(); }
}

TEST_CASE("infer validates its shapes with errors that name the layer") {
  nsl::Rng rng(1001);
  InferenceWorkspace ws;
  nsl::DynamicNSConv2d<float> dynamic(3, 4, 3, nsl::Structure::diagonal, {}, rng);
  const Tensor<float> x = nsl::test::randn<float>(Shape{2, 3, 5, 5}, rng);
  CHECK(dynamic.infer(x, ws).shape() == Shape{2, 4, 5, 5});
  Tensor<float> wrong(Shape{2, 5, 5, 5});
  CHECK_THROWS_WITH_AS(dynamic.infer(x.view(), wrong.view(), ws), doctest::Contains("DynamicNSConv2d::infer"),
                       nsl::ShapeError);
  CHECK_THROWS_AS(dynamic.infer(Tensor<float>(Shape{2, 2, 5, 5}), ws), nsl::ShapeError);
  nsl::GlobalSimilarity2d<float> block(8, rng);
  InferenceWorkspace block_ws;
  CHECK_THROWS_WITH_AS(block.infer(Tensor<float>(Shape{2, 4, 3, 3}), block_ws),
                       doctest::Contains("GlobalSimilarity2d(8"), nsl::ShapeError);
  auto head = nti::random_head<float>(HeadKind::cosine, 6, 4, 2, rng);
  InferenceWorkspace head_ws;
  CHECK_THROWS_WITH_AS(head->infer(Tensor<float>(Shape{8, 6}), head_ws),
                       doctest::Contains("more than ways*shots = 8"), nsl::ShapeError);
  Tensor<float> scores(Shape{3, 3});
  CHECK_THROWS_WITH_AS(head->infer(Tensor<float>(Shape{11, 6}).view(), scores.view(), head_ws),
                       doctest::Contains("CosineHead(6)::infer: scores: expected [3, 4]"), nsl::ShapeError);
  // A workspace belongs to one layer: the dynamic layer's does not fit the head.
  CHECK_THROWS_AS(head->infer(Tensor<float>(Shape{11, 6}), ws), nsl::StateError);
}

TEST_CASE("every CNN-9 variant and Conv-4 with every head: const Sequential infer equals the evaluation-mode forward") {
  nsl::Rng rng(1010);
  for (Variant v : nti::all_variants) {
    CAPTURE(std::string(nsl::to_string(v)));
    nsl::Sequential<float> net = nti::small_cnn9(v, rng);
    const double difference = nti::infer_versus_eval_forward(net, nsl::test::randn<float>(Shape{5, 1, 28, 28}, rng));
    MESSAGE("CNN-9 ", std::string(nsl::to_string(v)), ": infer vs evaluation forward, max relative difference ", difference);
    CHECK(difference < 1e-6);
  }
  for (Variant v : nti::all_variants)
    for (HeadKind kind : {HeadKind::euclidean, HeadKind::cosine, HeadKind::static_ns, HeadKind::dynamic_ns}) {
      CAPTURE(std::string(nsl::to_string(v)));
      CAPTURE(std::string(nsl::to_string(kind)));
      nsl::Sequential<float> net = nti::small_conv4_with_head(v, kind, rng);
      const double difference =
          nti::infer_versus_eval_forward(net, nsl::test::randn<float>(Shape{10, 1, 28, 28}, rng));
      CHECK(difference < 1e-6);
    }
}

TEST_CASE("one CNN-9 shared by 4 threads, each with its own workspace, gives the single-thread logits bit for bit") {
  nsl::Rng rng(1020);
  for (Variant v : nti::all_variants) {
    CAPTURE(std::string(nsl::to_string(v)));
    const nsl::Sequential<float> net = nti::small_cnn9(v, rng);
    std::vector<Tensor<float>> batches;
    for (nsl::index t = 0; t < 4; ++t) batches.push_back(nsl::test::randn<float>(Shape{2 + t, 1, 28, 28}, rng));
    CHECK(nti::thread_mismatches(net, batches, 3) == 0);
    // The deployed network, as a product runs it (nsl/deploy/deploy.hpp).
    const nsl::Sequential<float> deployed = nsl::deploy(net);
    CHECK(nti::thread_mismatches(deployed, batches, 3) == 0);
  }
  // And a few-shot model: Conv-4 (dynamic DNS) with the dynamic head, one episode per thread.
  const nsl::Sequential<float> fewshot = nti::small_conv4_with_head(Variant::dynamic_dns, HeadKind::dynamic_ns, rng);
  std::vector<Tensor<float>> episodes;
  for (nsl::index t = 0; t < 4; ++t) episodes.push_back(nsl::test::randn<float>(Shape{7 + t, 1, 28, 28}, rng));
  CHECK(nti::thread_mismatches(fewshot, episodes, 3) == 0);
}
