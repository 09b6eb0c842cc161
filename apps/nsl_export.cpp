// nsl-export — writes a model file of nsl-train (CNN-9) or nsl-fewshot
// (Conv-4 embedding) as a standard ONNX model for other runtimes.
//
//   nsl-export runs/dns/model.nslckpt runs/dns/model.onnx
//
// Loads the model (nsl::load_model), deploys it (nsl::deploy: BatchNorm and
// static NSL folded into the convolutions, dynamic NSL kept with folded
// predictors) and writes the deployed network as ONNX opset 17 with default-
// domain operators only (apps/onnx/export_network.hpp; docs/onnx.md gives
// each layer's operators). The graph reads "input" [N, C, H, W] float32
// (raw pixel values 0..255, as nsl-train and nsl-eval feed them; N is free)
// and writes CNN-9's "logits" [N, classes] or Conv-4's "embedding"
// [N, 64 * 2 * 2 for 28x28 inputs]. Before writing, ONNX's checker and its
// strict shape inference validate the model; the file is written atomically
// (no partial file is ever left). Errors are one line "nsl-export: ..." on
// stderr and exit status 1.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

#include "common/cli.hpp"
#include "nsl/deploy/deploy.hpp"
#include "nsl/io/model_file.hpp"
#include "onnx/export_network.hpp"

#ifndef NSL_VERSION_STRING
#define NSL_VERSION_STRING ""
#endif

namespace {

namespace fs = std::filesystem;

struct Settings {
  std::string model;
  std::string output;
};

// The paths, before any work, so that a typo costs nothing.
void check_paths(const Settings& s) {
  std::error_code ec;
  nsl::require(!fs::is_directory(s.model, ec), nsl::ErrorKind::io, s.model,
               ": is a directory; nsl-train writes the model to ", (fs::path(s.model) / "model.nslckpt").string());
  const fs::path dir = fs::path(s.output).parent_path();
  nsl::require(dir.empty() || fs::is_directory(dir, ec), nsl::ErrorKind::io, s.output, ": no directory ", dir.string());
  nsl::require(!fs::is_directory(s.output, ec), nsl::ErrorKind::io, s.output, ": is a directory");
}

int run(const Settings& s) {
  check_paths(s);

  // The model and its inference form.
  const nsl::Model<float> model = nsl::load_model<float>(s.model);
  const nsl::ModelSpec& spec = model.spec;
  const nsl::Sequential<float> deployed = nsl::deploy(model);

  // The ONNX graph, checked, then written.
  const bool cnn9 = spec.network == nsl::Network::cnn9;
  nsl::onnx_export::GraphSignature signature;
  signature.in_channels = spec.in_channels;
  signature.input_size = spec.input_size;
  signature.output = cnn9 ? "logits" : "embedding";
  signature.description =
      nsl::cat("nsl ", nsl::to_string(spec.network), " ", nsl::to_string(spec.variant), " (deployed), trained on ",
               spec.dataset.empty() ? "?" : spec.dataset, "; from ", fs::path(s.model).filename().string());
  signature.metadata = {{"network", nsl::to_string(spec.network)},
                        {"variant", nsl::to_string(spec.variant)},
                        {"dataset", spec.dataset},
                        {"input", "raw pixel values 0..255, N x C x H x W"}};
  if (cnn9) signature.metadata.push_back({"classes", std::to_string(spec.classes)});
  const onnx::ModelProto onnx_model = nsl::onnx_export::network_to_onnx(deployed, signature, NSL_VERSION_STRING);
  nsl::onnx_export::check_onnx_model(onnx_model);
  nsl::onnx_export::save_onnx_model("nsl-export", s.output, onnx_model);

  const onnx::GraphProto& graph = onnx_model.graph();
  const onnx::TensorShapeProto& out = graph.output(0).type().tensor_type().shape();
  std::printf(
      "nsl-export: %s: %s %s (%zu layers deployed) -> %s: ONNX opset %d, %d nodes, %d initializers, "
      "input [N, %ld, %ld, %ld], output %s [N, %ld]; checked by onnx::checker and shape inference\n",
      s.model.c_str(), nsl::to_string(spec.network), nsl::to_string(spec.variant), deployed.size(), s.output.c_str(),
      nsl::onnx_export::opset, graph.node_size(), graph.initializer_size(), long(spec.in_channels),
      long(spec.input_size), long(spec.input_size), signature.output.c_str(), long(out.dim(1).dim_value()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  GOOGLE_PROTOBUF_VERIFY_VERSION;
  Settings s;
  CLI::App app{
      "nsl-export: write a model file of nsl-train (CNN-9) or nsl-fewshot (Conv-4 embedding) as ONNX.\n"
      "The network is deployed first (BatchNorm and static NSL folded into the convolutions, dynamic NSL kept\n"
      "with folded predictors) and written as ONNX opset 17 using standard operators only (docs/onnx.md).\n"
      "Input \"input\": float32 [N, C, H, W], raw pixel values 0..255 as nsl-train reads them, N free.\n"
      "Output: CNN-9 \"logits\" float32 [N, classes] (the [N, classes, 1, 1] score map flattened);\n"
      "Conv-4 \"embedding\" float32 [N, C*H*W] (the last feature map flattened, the vector the few-shot head "
      "compares).\n"
      "The model is validated by ONNX's checker and strict shape inference, then written atomically."};
  app.add_option("MODEL", s.model, "model file written by nsl-train or nsl-fewshot (OUT/model.nslckpt)")->required();
  app.add_option("OUT", s.output, "ONNX file to write (e.g. model.onnx); replaced only once complete")->required();
  CLI11_PARSE(app, argc, argv);
  return nsl::cli::run_program("nsl-export", [&] { return run(s); });
}
