// tests/onnx/onnx_export_cases.cpp — the C++ half of test_onnx_export.sh.
//
//   onnx_export_cases images DATA_DIR COUNT OUT.npy
//       the first COUNT Fashion-MNIST test images, as nsl-eval feeds them
//       (raw pixel values, COUNT x 1 x 28 x 28 float32), for ONNX Runtime
//   onnx_export_cases layers OUT_DIR
//       small networks with what the trained CNN-9 variants never export
//       after deploy (the linear and sigmoid angular forms, a filter norm, an
//       unfolded BatchNorm, predictors with BatchNorm and cosine convs, a 5x5
//       dynamic kernel with stride 2, a UNS predictor strong enough that
//       M(p) is far from I, odd pooling sizes, attention with γ != 0); for
//       each case CASE.onnx, CASE.input.npy and CASE.expected.npy (nsl's
//       const inference, flattened to N x rest). Also checks that a layer with
//       no ONNX form fails with one error naming it, and writes no file.
//   onnx_export_cases conv4 IMAGES.npy OUT_DIR
//       a Conv-4 dynamic_dns model file (random weights, BatchNorm statistics
//       made non-trivial) OUT_DIR/conv4.nslckpt for nsl-export, and the
//       trained (not deployed) network's embeddings of the images,
//       OUT_DIR/conv4.expected.npy (N x 256)
// Exit status 0 when all was written, 1 on any error.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>

#include "common/cli.hpp"
#include "common/datasets.hpp"
#include "nsl/io/model_file.hpp"
#include "nsl/io/npy.hpp"
#include "nsl/layers/linear.hpp"
#include "onnx/export_network.hpp"

namespace {

using nsl::index;

/// Random evaluation statistics and affine parameters, so that BN is not the identity.
void randomize(nsl::BatchNorm2d<float>& bn, nsl::Rng& rng) {
  nsl::fill_normal<float>(bn.gamma().view(), rng, 1.0, 0.3);
  nsl::fill_normal<float>(bn.beta().view(), rng, 0.0, 0.5);
  nsl::fill_normal<float>(bn.running_mean().view(), rng, 0.0, 0.5);
  for (index c = 0; c < bn.channels(); ++c) bn.running_variance()[c] = 0.2f + float(c % 5) * 0.3f;
}

/// Writes NAME.onnx (checked), NAME.input.npy and NAME.expected.npy for `net` on x.
void write_case(const std::string& dir, const std::string& name, nsl::Sequential<float>& net,
                const nsl::Tensor<float>& x) {
  net.set_training(false);
  nsl::InferenceWorkspace ws;
  const nsl::Tensor<float> y = net.infer(x.view(), ws);
  nsl::onnx_export::GraphSignature signature;
  signature.in_channels = x.dim(1);
  signature.input_size = x.dim(2);
  signature.output = "output";
  signature.description = "nsl test case " + name;
  const onnx::ModelProto model = nsl::onnx_export::network_to_onnx(net, signature);
  nsl::onnx_export::check_onnx_model(model);
  nsl::onnx_export::save_onnx_model("onnx_export_cases", dir + "/" + name + ".onnx", model);
  nsl::save_npy<float>(dir + "/" + name + ".input.npy", x);
  const index n = y.dim(0);
  nsl::save_npy<float>(dir + "/" + name + ".expected.npy",
                       nsl::TensorView<const float>(y.data(), nsl::Shape{n, y.size() / n}));
  std::printf("case %s: %s -> %s, %d nodes\n", name.c_str(), nsl::cat(x.shape()).c_str(), nsl::cat(y.shape()).c_str(),
              model.graph().node_size());
}

nsl::Tensor<float> random_input(nsl::Shape shape, nsl::Rng& rng) {
  nsl::Tensor<float> x(shape);
  nsl::fill_normal<float>(x.view(), rng, 0.2, 1.0);
  return x;
}

int layers(const std::string& dir) {
  nsl::Rng rng(7);
  using nsl::SphereConvOptions;
  using nsl::AngularForm;

  {  // SphereConv's forms and norms, an unfolded BN, odd pooling
    nsl::Sequential<float> net;
    auto& linear = net.add("linear", std::make_unique<nsl::SphereConv2d<float>>(
                                         3, 5, 3, SphereConvOptions{2, 1, true, true, AngularForm::linear, true}, rng));
    nsl::fill_normal<float>(linear.bias().view(), rng, 0.0, 0.3);
    randomize(net.add("bn", std::make_unique<nsl::BatchNorm2d<float>>(5)), rng);
    net.add("sigmoid", std::make_unique<nsl::SphereConv2d<float>>(
                           5, 4, 3, SphereConvOptions{1, 1, true, true, AngularForm::sigmoid, false}, rng));
    net.add("filter_only", std::make_unique<nsl::SphereConv2d<float>>(
                               4, 6, 1, SphereConvOptions{1, 0, false, true, AngularForm::cosine, false}, rng));
    net.add("pool3", std::make_unique<nsl::MaxPool2d<float>>(3, 2));
    net.add("input_only", std::make_unique<nsl::SphereConv2d<float>>(
                              6, 4, 3, SphereConvOptions{1, 1, true, false, AngularForm::identity, true}, rng));
    net.add("relu", std::make_unique<nsl::ReLU<float>>());
    net.add("plain", std::make_unique<nsl::SphereConv2d<float>>(
                         4, 3, 2, SphereConvOptions{1, 0, false, false, AngularForm::identity, true}, rng));
    write_case(dir, "sphere_forms", net, random_input(nsl::Shape{4, 3, 9, 9}, rng));
  }
  {  // dynamic DNS, 5x5 kernel, stride 2, bias, a cosine predictor with BN after each conv
    nsl::Sequential<float> net;
    nsl::DynamicNSConvOptions o{2, true, nsl::PredictorOptions::dns_sphere()};
    o.predictor.hidden = 8;
    auto& layer =
        net.add("dns", std::make_unique<nsl::DynamicNSConv2d<float>>(4, 6, 5, nsl::Structure::diagonal, o, rng));
    randomize(*layer.predictor().bn1(), rng);
    randomize(*layer.predictor().bn2(), rng);
    nsl::fill_normal<float>(layer.bias().view(), rng, 0.0, 0.5);
    net.add("pool", std::make_unique<nsl::MaxPool2d<float>>(2, 2));
    write_case(dir, "dynamic_dns", net, random_input(nsl::Shape{3, 4, 9, 9}, rng));
  }
  {  // dynamic UNS, no bias, predictor without BN, G of order 1
    nsl::Sequential<float> net;
    nsl::DynamicNSConvOptions o{1, false, nsl::PredictorOptions::uns()};
    o.predictor.hidden = 16;
    auto& layer =
        net.add("uns", std::make_unique<nsl::DynamicNSConv2d<float>>(4, 5, 3, nsl::Structure::channel_shared, o, rng));
    nsl::fill_normal<float>(layer.predictor().conv2().weight().view(), rng, 0.0, 0.3);
    write_case(dir, "dynamic_uns", net, random_input(nsl::Shape{3, 4, 7, 7}, rng));
  }
  {  // global similarity with γ != 0, then pooling of an odd map
    nsl::Sequential<float> net;
    auto& block = net.add("attention", std::make_unique<nsl::GlobalSimilarity2d<float>>(16, rng));
    block.gamma_tensor()[0] = 0.7f;
    net.add("pool", std::make_unique<nsl::MaxPool2d<float>>(2, 2));
    write_case(dir, "attention", net, random_input(nsl::Shape{2, 16, 5, 5}, rng));
  }
  {  // a layer with no ONNX form: one error naming it, no file
    nsl::Sequential<float> net;
    net.add("relu", std::make_unique<nsl::ReLU<float>>());
    net.add("classifier", std::make_unique<nsl::Linear<float>>(4, 2));
    nsl::onnx_export::GraphSignature signature;
    signature.in_channels = 4;
    signature.input_size = 1;
    bool failed = false;
    try {
      nsl::onnx_export::network_to_onnx(net, signature);
    } catch (const nsl::Error& e) {
      failed = std::string(e.what()).find("'classifier' (Linear") != std::string::npos;
      std::printf("case unknown_layer: %s\n", e.what());
    }
    nsl::require(failed, nsl::ErrorKind::state,
                 "a network with a Linear layer was exported, or failed without naming it");
  }
  return 0;
}

int conv4(const std::string& images, const std::string& dir) {
  nsl::Rng rng(11);
  nsl::ModelSpec spec;
  spec.network = nsl::Network::conv4;
  spec.variant = nsl::Variant::dynamic_dns;
  spec.dataset = "test";
  nsl::Model<float> model = nsl::build_model<float>(spec, rng);
  for (std::size_t i = 0; i < model.network.size(); ++i) {
    if (auto* bn = dynamic_cast<nsl::BatchNorm2d<float>*>(&model.network.layer(i))) randomize(*bn, rng);
    if (auto* dynamic = dynamic_cast<nsl::DynamicNSConv2d<float>*>(&model.network.layer(i))) {
      randomize(*dynamic->predictor().bn1(), rng);
      randomize(*dynamic->predictor().bn2(), rng);
    }
  }
  // The pixels as nsl-train feeds them (0..255): the first block's BN, normally
  // fitted to them, gets statistics of that scale.
  auto& first_bn = dynamic_cast<nsl::BatchNorm2d<float>&>(model.network.layer(1));
  for (index c = 0; c < first_bn.channels(); ++c) {
    first_bn.running_mean()[c] *= 100.0f;
    first_bn.running_variance()[c] *= 1e4f;
  }
  nsl::save_model(dir + "/conv4.nslckpt", model);
  const nsl::Tensor<float> x = nsl::load_npy<float>(images);
  model.network.set_training(false);
  nsl::InferenceWorkspace ws;
  const nsl::Tensor<float> y = model.network.infer(x.view(), ws);
  const index n = y.dim(0);
  nsl::save_npy<float>(dir + "/conv4.expected.npy",
                       nsl::TensorView<const float>(y.data(), nsl::Shape{n, y.size() / n}));
  std::printf("wrote %s/conv4.nslckpt and its embeddings %s\n", dir.c_str(), nsl::cat(y.shape()).c_str());
  return 0;
}

int images(const std::string& data, index count, const std::string& out) {
  const nsl::Dataset test = nsl::cli::load_split("fashion-mnist", data, false, count);
  nsl::save_npy<float>(out, test.images);
  std::printf("wrote %s: %s\n", out.c_str(), nsl::cat(test.images.shape()).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (!((mode == "images" && argc == 5) || (mode == "layers" && argc == 3) || (mode == "conv4" && argc == 4))) {
    std::fprintf(
        stderr, "usage: onnx_export_cases images DATA_DIR COUNT OUT.npy | layers OUT_DIR | conv4 IMAGES.npy OUT_DIR\n");
    return 2;
  }
  return nsl::cli::run_program("onnx_export_cases", [&] {
    if (mode == "images") return images(argv[2], std::stol(argv[3]), argv[4]);
    return mode == "layers" ? layers(argv[2]) : conv4(argv[2], argv[3]);
  });
}
