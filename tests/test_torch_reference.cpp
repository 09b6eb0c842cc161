// Cross-checks nsl's layers against PyTorch autograd through .npy files.
// Registered only when CMake found an interpreter with torch and numpy
// (NSL_TEST_TORCH_PYTHON); CI installs python3-torch so it runs there.
#include <doctest/doctest.h>

#ifdef NSL_TEST_TORCH_PYTHON

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "nsl/io/npy.hpp"
#include "nsl/layers/conv2d.hpp"
#include "nsl/layers/dynamic_ns_conv2d.hpp"
#include "nsl/layers/linear.hpp"
#include "nsl/layers/static_ns_conv2d.hpp"
#include "test_util.hpp"

namespace fs = std::filesystem;

namespace {
// Runs tests/torch/<script> with the given arguments.
void run_torch_script(const std::string& script, const std::string& arguments) {
  const std::string command = std::string(NSL_TEST_TORCH_PYTHON) + " " + NSL_TEST_SOURCE_DIR + "/tests/torch/" +
                              script + " " + arguments;
  REQUIRE(std::system(command.c_str()) == 0);
}
void run_torch(const std::string& layer, const fs::path& dir, const std::string& options) {
  run_torch_script("reference_layers.py", layer + " " + dir.string() + " " + options);
}

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::path(NSL_TEST_BINARY_DIR) / "torch_reference" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Writes the inputs, runs both, and compares y, dx, dw, db in float32.
template <class LayerT>
void compare(LayerT& layer, const std::string& name, const std::string& kind,
             const nsl::Tensor<float>& x, const std::string& options, nsl::Rng& rng,
             nsl::Tensor<float>* similarity = nullptr, nsl::Tensor<float>* similarity_grad = nullptr) {
  const fs::path dir = fresh_dir(name);
  const nsl::Tensor<float> y = layer.forward(x);
  const auto dy = nsl::test::randn<float>(y.shape(), rng);
  nsl::zero_gradients(layer.parameters());
  const nsl::Tensor<float> dx = layer.backward(dy);
  nsl::save_npy(dir / "x.npy", x);
  nsl::save_npy(dir / "w.npy", layer.weight());
  nsl::save_npy(dir / "b.npy", layer.bias());
  nsl::save_npy(dir / "dy.npy", dy);
  if (similarity) nsl::save_npy(dir / "m.npy", *similarity);
  run_torch(kind, dir, options);
  CHECK(nsl::test::max_relative_difference(y, nsl::load_npy<float>(dir / "y.npy")) < 1e-4);
  CHECK(nsl::test::max_relative_difference(dx, nsl::load_npy<float>(dir / "dx.npy")) < 1e-4);
  CHECK(nsl::test::max_relative_difference(layer.weight_grad(), nsl::load_npy<float>(dir / "dw.npy")) < 1e-4);
  CHECK(nsl::test::max_relative_difference(layer.bias_grad(), nsl::load_npy<float>(dir / "db.npy")) < 1e-4);
  if (similarity_grad)
    CHECK(nsl::test::max_relative_difference(*similarity_grad, nsl::load_npy<float>(dir / "dm.npy")) < 1e-4);
}
}  // namespace

TEST_CASE("Conv2d matches PyTorch autograd: output and all gradients, float32") {
  nsl::Rng rng(77);
  struct Case { nsl::index k, stride, padding; };
  for (const Case c : {Case{3, 1, 1}, Case{5, 2, 2}, Case{1, 1, 0}, Case{3, 2, 0}, Case{4, 1, 0}}) {
    CAPTURE(c.k); CAPTURE(c.stride); CAPTURE(c.padding);
    nsl::Conv2d<float> conv(3, 5, c.k, {c.stride, c.padding, true}, rng);
    nsl::fill_normal<float>(conv.bias().view(), rng);
    const auto x = nsl::test::randn<float>(nsl::Shape{4, 3, 11, 9}, rng);
    compare(conv, "conv2d_k" + std::to_string(c.k) + "_s" + std::to_string(c.stride), "conv2d", x,
            "--stride " + std::to_string(c.stride) + " --padding " + std::to_string(c.padding), rng);
  }
}

TEST_CASE("Linear matches PyTorch autograd: output and all gradients, float32") {
  nsl::Rng rng(78);
  nsl::Linear<float> fc(20, 7, true, rng);
  nsl::fill_normal<float>(fc.bias().view(), rng);
  compare(fc, "linear", "linear", nsl::test::randn<float>(nsl::Shape{6, 20}, rng), "", rng);
}

TEST_CASE("StaticNSConv2d matches a PyTorch fold-then-convolve: output, dx, dW, dM, db, float32") {
  nsl::Rng rng(79);
  for (const char* name : {"diagonal", "channel_shared", "block_diagonal", "full"})
    for (nsl::index k : {3, 5}) {
      CAPTURE(name); CAPTURE(k);
      const nsl::Structure s = nsl::parse_structure(name);
      const nsl::index stride = k == 3 ? 1 : 2;
      nsl::StaticNSConv2d<float> layer(3, 4, k, s, {stride, k / 2, true}, rng);
      nsl::fill_normal<float>(layer.similarity().view(), rng);
      nsl::fill_normal<float>(layer.bias().view(), rng);
      const auto x = nsl::test::randn<float>(nsl::Shape{2, 3, 9, 8}, rng);
      compare(layer, std::string("static_") + name + std::to_string(k), "static_ns", x,
              "--structure " + std::string(name) + " --stride " + std::to_string(stride) +
                  " --padding " + std::to_string(k / 2),
              rng, &layer.similarity(), &layer.similarity_grad());
    }
}

TEST_CASE("DynamicNSConv2d matches PyTorch autograd: output, dx and every parameter gradient, float32") {
  nsl::Rng rng(80);
  struct Case {
    const char* name;
    nsl::Structure structure;
    nsl::PredictorOptions predictor;
    nsl::index kernel, stride;
  };
  for (Case c : {Case{"diagonal", nsl::Structure::diagonal, nsl::PredictorOptions::dns(), 3, 1},
                 Case{"diagonal", nsl::Structure::diagonal, nsl::PredictorOptions::dns(), 5, 2},
                 Case{"channel_shared", nsl::Structure::channel_shared, nsl::PredictorOptions::uns(), 3, 2},
                 Case{"diagonal", nsl::Structure::diagonal, nsl::PredictorOptions::dns_sphere(), 3, 1}}) {
    CAPTURE(c.name); CAPTURE(c.kernel); CAPTURE(c.stride); CAPTURE(c.predictor.sphere);
    c.predictor.hidden = 6;
    c.predictor.second_scale = 0.5;  // a G far from zero
    nsl::DynamicNSConv2d<float> layer(3, 4, c.kernel, c.structure, {c.stride, true, c.predictor}, rng);
    nsl::fill_normal<float>(layer.bias().view(), rng);
    const auto x = nsl::test::randn<float>(nsl::Shape{3, 3, 8, 7}, rng);
    const fs::path dir = fresh_dir(std::string("dynamic_") + c.name + std::to_string(c.kernel) +
                                   std::to_string(c.stride) + (c.predictor.sphere ? "_sphere" : ""));
    const nsl::Tensor<float> y = layer.forward(x);
    const auto dy = nsl::test::randn<float>(y.shape(), rng);
    auto params = layer.parameters();
    nsl::zero_gradients(params);
    const nsl::Tensor<float> dx = layer.backward(dy);
    auto file = [&](const std::string& prefix, std::string name) {
      std::replace(name.begin(), name.end(), '.', '_');
      return dir / (prefix + name + ".npy");
    };
    nsl::save_npy(dir / "x.npy", x);
    nsl::save_npy(dir / "dy.npy", dy);
    for (const auto& p : params) nsl::save_npy(file("", p.name), nsl::TensorView<const float>(p.value));
    run_torch_script("reference_dynamic.py", dir.string() +
                     std::string(" --structure ") + c.name + " --stride " + std::to_string(c.stride) +
                         " --kernel " + std::to_string(c.kernel) + (c.predictor.sphere ? " --sphere" : "") +
                         (c.predictor.batch_norm ? " --batch-norm" : ""));
    CHECK(nsl::test::max_relative_difference(y, nsl::load_npy<float>(dir / "y.npy")) < 1e-4);
    CHECK(nsl::test::max_relative_difference(dx, nsl::load_npy<float>(dir / "dx.npy")) < 1e-4);
    for (const auto& p : params) {
      CAPTURE(p.name);
      CHECK(nsl::test::max_relative_difference(nsl::Tensor<float>(nsl::TensorView<const float>(p.grad)),
                                               nsl::load_npy<float>(file("d_", p.name))) < 1e-4);
    }
  }
}

#endif  // NSL_TEST_TORCH_PYTHON
