// nsl-eval — evaluates a model file written by nsl-train on the test split of
// its dataset (Fashion-MNIST or CIFAR-10/100).
//
//   nsl-eval --model runs/dns/model.nslckpt --data /usr/share/datasets/fashion-mnist --json runs/dns/eval.json
//
// Rebuilds the network from the model file (nsl::load_model) and runs the
// test images through it in evaluation mode (nsl::evaluate). Prints the accuracy, the mean softmax cross-entropy (no label
// smoothing, unlike the test loss nsl-train reports with its
// --label-smoothing), the accuracy of every class and the confusion matrix
// (rows: true class, columns: predicted class; printed for up to 20 classes),
// and for a dynamic variant the size of each dynamic layer's G on the first
// 100 test images (RMS of ||G(p)||_F / ||I||_F, as nsl-train's metrics.jsonl).
// --json FILE writes all of it as one JSON object (accuracies as fractions):
//   {"model", "variant", "dataset", "images", "accuracy", "loss", "precise_bn",
//    "per_class": [{"class", "name", "images", "accuracy"}, ...], "confusion": [[...], ...],
//    "similarity_magnitude": {layer: size} (dynamic variants only)}
// --logits FILE.npy writes every test image's logits (images x classes).
// --precise-bn N first re-estimates BatchNorm's statistics on N training
// batches (nsl/train/precise_bn.hpp). --dataset defaults to the model's; --limit-test N evaluates only the
// first N test images (nsl-train's --limit-test takes the same ones). Errors
// are one line "nsl-eval: ..." on stderr and exit status 1. Run with --help
// for every option.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "common/cli.hpp"
#include "common/datasets.hpp"
#include "common/eval_report.hpp"
#include "common/similarity_magnitudes.hpp"
#include "nsl/core/threads.hpp"
#include "nsl/io/atomic_file.hpp"
#include "nsl/io/model_file.hpp"
#include "nsl/io/npy.hpp"
#include "nsl/train/evaluate.hpp"

namespace {

namespace fs = std::filesystem;

struct Settings {
  std::string model;
  std::string data;     // "": the default directory of the dataset (Fashion-MNIST only)
  std::string dataset;  // "": the model's
  nsl::index batch = 500;
  int threads = 0;  // 0: all cores
  nsl::index limit_test = 0;
  nsl::index precise_bn = 0;  // training batches of 128 to re-estimate BN statistics (0: the model's)
  std::string json;
  std::string logits;  // "": none; else a .npy file of the test images' logits
};

// The paths, before any work, so that a typo costs nothing.
void check_paths(const Settings& s) {
  std::error_code ec;
  nsl::require(!fs::is_directory(s.model, ec), nsl::ErrorKind::io, "--model ", s.model,
               ": is a directory; nsl-train writes the model to ", (fs::path(s.model) / "model.nslckpt").string());
  for (const auto& [option, path] : {std::pair{"--json", s.json}, std::pair{"--logits", s.logits}}) {
    const fs::path dir = fs::path(path).parent_path();
    nsl::require(path.empty() || dir.empty() || fs::is_directory(dir, ec), nsl::ErrorKind::io, option, " ", path,
                 ": no directory ", dir.string());
  }
}

int run(const Settings& s) {
  check_paths(s);
  if (s.threads > 0) nsl::set_num_threads(s.threads);

  // The model, and the test split of the dataset it was trained on.
  const nsl::ModelFile file = nsl::read_model_file(s.model);
  const std::string& dataset = file.spec.dataset;
  nsl::require(file.spec.network == nsl::Network::cnn9 && nsl::cli::known_dataset(dataset), nsl::ErrorKind::format,
               s.model, ": a ", nsl::to_string(file.spec.network), " model trained on '", dataset,
               "'; nsl-eval evaluates CNN-9 models of fashion-mnist, cifar10 or cifar100");
  nsl::require(s.dataset.empty() || s.dataset == dataset, nsl::ErrorKind::argument, "--dataset ", s.dataset,
               ": the model ", s.model, " was trained on ", dataset);
  nsl::require(!s.data.empty() || dataset == "fashion-mnist", nsl::ErrorKind::argument, "--data is required for ",
               dataset, " (the directory holding its test split)");
  const std::string dir = s.data.empty() ? nsl::cli::default_fashion_mnist_dir : s.data;
  const nsl::Dataset test = nsl::cli::load_split(dataset, dir, false, s.limit_test);
  const nsl::Shape image = test.images.shape();
  nsl::require(image[1] == file.spec.in_channels && image[2] == file.spec.input_size && test.classes == file.spec.classes,
               nsl::ErrorKind::shape, s.model, ": the network takes ", file.spec.in_channels, "x", file.spec.input_size,
               "x", file.spec.input_size, " images of ", file.spec.classes, " classes, the test images in ", dir,
               " are ", image[1], "x", image[2], "x", image[3], " of ", test.classes);
  const std::string* epoch = file.contents.get("epoch");
  std::printf("nsl-eval: %s: %s on %s%s, %ld test images of %ldx%ldx%ld, %ld classes; %d threads\n", s.model.c_str(),
              nsl::to_string(file.spec.variant), dataset.c_str(), epoch ? nsl::cat(" (epoch ", *epoch, ")").c_str() : "",
              long(image[0]), long(image[1]), long(image[2]), long(image[3]), long(test.classes), nsl::num_threads());
  std::fflush(stdout);
  nsl::Model<float> model = nsl::load_model<float>(file);

  // BatchNorm statistics re-estimated, if asked.
  if (s.precise_bn > 0) {
    const nsl::index batch = 128;
    const nsl::index batches = nsl::cli::recalibrate_on_first_batches(
        model.network, nsl::cli::load_split(dataset, dir, true), s.precise_bn, batch);
    std::printf("nsl-eval: BatchNorm statistics re-estimated on %ld training batches of %ld (--precise-bn)\n",
                long(batches), long(batch));
  }

  // The evaluation, and the report.
  const nsl::index batches = (image[0] + s.batch - 1) / s.batch;
  nsl::cli::RateProgress progress("evaluating", batches, "batches");
  const nsl::Evaluation result =
      nsl::evaluate(model.network, test, {s.batch, 0.0, !s.logits.empty()}, [&](nsl::index done, nsl::index) {
        if (done > 0) progress.update((done + s.batch - 1) / s.batch, done);
      });
  nsl::cli::ReportHeader header{s.model, nsl::to_string(file.spec.variant), dataset, s.precise_bn, {}, nullptr};
  for (nsl::index c = 0; c < test.classes; ++c) header.class_names.push_back(nsl::cli::class_name(dataset, c));
  header.similarity_magnitude = nsl::cli::similarity_magnitudes(model, test);
  nsl::cli::print_report(header, result, !s.json.empty());
  if (!header.similarity_magnitude.is_null()) std::printf("\n");
  nsl::cli::print_similarity_magnitudes(header.similarity_magnitude);
  if (!s.json.empty()) {
    const std::string text = nsl::cli::report_json(header, result);
    nsl::write_file_atomically("--json", s.json, [&](std::ofstream& out) { out << text; });
    std::printf("\nnsl-eval: wrote %s\n", s.json.c_str());
  }
  if (!s.logits.empty()) {
    nsl::save_npy<float>(s.logits, result.logits);
    std::printf("nsl-eval: wrote %s (%ld x %ld logits)\n", s.logits.c_str(), long(result.logits.dim(0)),
                long(result.logits.dim(1)));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{"nsl-eval: evaluate a model file of nsl-train on the test split of its dataset"};
  app.add_option("--model", s.model, "model file written by nsl-train (OUT/model.nslckpt)")->required();
  app.add_option("--data", s.data, std::string("dataset directory (default for fashion-mnist: ") +
                                       nsl::cli::default_fashion_mnist_dir + ")");
  app.add_option("--dataset", s.dataset, "fashion-mnist, cifar10 or cifar100 (default: the model's)")
      ->check(CLI::IsMember({"fashion-mnist", "cifar10", "cifar100"}));
  app.add_option("--batch", s.batch, "images per forward pass")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--threads", s.threads, "threads (0: all cores)")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--limit-test", s.limit_test, "use only the first N test images (0: all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--json", s.json, "also write the results to this JSON file");
  app.add_option("--logits", s.logits, "also write the test images' logits (images x classes, float32) to this .npy file");
  app.add_option("--precise-bn", s.precise_bn,
                 "re-estimate BatchNorm's running statistics on this many training batches of 128 before "
                 "evaluating (0: use the model's; see nsl/train/precise_bn.hpp)")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  return nsl::cli::run_program("nsl-eval", [&] { return run(s); });
}
