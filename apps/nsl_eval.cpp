// nsl-eval — evaluates a checkpoint written by nsl-train on the test split of
// its dataset (Fashion-MNIST or CIFAR-10/100).
//
//   nsl-eval --model runs/dns/model.nslckpt --data /usr/share/datasets/fashion-mnist --json runs/dns/eval.json
//
// Rebuilds CNN-9 from the checkpoint's metadata (variant, input channels;
// classes and image size from the test data), restores its weights and
// BatchNorm statistics and runs the test images through it in evaluation
// mode. Prints the accuracy, the mean softmax cross-entropy (no label
// smoothing, unlike the test loss nsl-train reports with its
// --label-smoothing), the accuracy of every class and the confusion matrix
// (rows: true class, columns: predicted class; printed for up to 20 classes).
// --json FILE writes all of it as one JSON object (accuracies as fractions):
//   {"model", "variant", "dataset", "images", "accuracy", "loss", "precise_bn",
//    "per_class": [{"class", "name", "images", "accuracy"}, ...], "confusion": [[...], ...]}
// --precise-bn N first re-estimates BatchNorm's statistics on N training
// batches (nsl/train/precise_bn.hpp). --dataset defaults to the checkpoint's; --limit-test N evaluates only the
// first N test images (nsl-train's --limit-test takes the same ones). Errors
// are one line "nsl-eval: ..." on stderr and exit status 1. Run with --help
// for every option.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "common/cli.hpp"
#include "nsl/core/threads.hpp"
#include "nsl/data/augment.hpp"
#include "nsl/data/cifar.hpp"
#include "nsl/data/idx.hpp"
#include "nsl/io/atomic_file.hpp"
#include "nsl/io/checkpoint.hpp"
#include "nsl/models/cnn9.hpp"
#include "nsl/train/loss.hpp"

namespace {

using Clock = std::chrono::steady_clock;

const char* const default_fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";

struct Settings {
  std::string model;
  std::string data;     // "": the default directory of the dataset (Fashion-MNIST only)
  std::string dataset;  // "": the checkpoint's
  nsl::index batch = 500;
  int threads = 0;  // 0: all cores
  nsl::index limit_test = 0;
  nsl::index precise_bn = 0;  // training batches of 128 to re-estimate BN statistics (0: the checkpoint's)
  std::string json;
};

// ---- checkpoint metadata ---------------------------------------------------

const std::string& meta(const nsl::Checkpoint& ckpt, const std::string& path, const std::string& key) {
  const std::string* value = ckpt.get(key);
  if (!value)
    nsl::fail(nsl::ErrorKind::format,
              nsl::cat(path, ": checkpoint has no metadata key '", key, "' (not written by nsl-train?)"));
  return *value;
}

nsl::index positive_integer(const std::string& text, const std::string& path, const char* key) {
  nsl::index value = 0;
  bool ok = !text.empty() && text.size() <= 9;
  for (char c : text) {
    ok = ok && c >= '0' && c <= '9';
    if (ok) value = value * 10 + (c - '0');
  }
  nsl::require(ok && value >= 1, nsl::ErrorKind::format, path, ": checkpoint metadata '", key, "' is '", text,
               "', not a positive integer");
  return value;
}

bool known_dataset(const std::string& name) {
  return name == "fashion-mnist" || name == "cifar10" || name == "cifar100";
}

// ---- data ------------------------------------------------------------------

nsl::Dataset load_test_split(const std::string& dataset, const std::string& dir, nsl::index limit) {
  nsl::Dataset d = dataset == "fashion-mnist" ? nsl::load_fashion_mnist(dir, false)
                                              : nsl::load_cifar(dir, false, dataset == "cifar100");
  nsl::require(d.images.rank() == 4 && d.images.dim(0) >= 1, nsl::ErrorKind::format, dir,
               ": the test split holds no images");
  nsl::cli::keep_first(d, limit);  // the first `limit` images, as nsl-train's --limit-test
  return d;
}

std::string class_name(const std::string& dataset, nsl::index label) {
  if (dataset == "fashion-mnist" && label < 10) return nsl::fashion_mnist_class_name(int(label));
  if (dataset == "cifar10" && label < 10) return nsl::cifar10_class_name(int(label));
  return nsl::cat("class ", label);  // CIFAR-100: nsl has no names for its classes
}

// ---- progress --------------------------------------------------------------

class Progress {
 public:
  explicit Progress(nsl::index batches) : batches_(batches), start_(Clock::now()) {}
  void update(nsl::index done, nsl::index images) {
    const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    const double rate = seconds > 0 ? double(images) / seconds : 0.0;
    const double eta = done > 0 ? seconds * double(batches_ - done) / double(done) : 0.0;
    line_.show(done, batches_,
               nsl::cat("evaluating ", nsl::cli::progress_bar(done, batches_), " ", done, "/", batches_, " batches  ",
                        long(std::lround(rate)), " img/s  ETA ", nsl::cli::format_seconds(eta)));
  }

 private:
  nsl::index batches_;
  Clock::time_point start_;
  nsl::cli::ProgressLine line_;
};

// ---- evaluation ------------------------------------------------------------

struct Result {
  double loss = 0.0;                             // mean cross-entropy, no smoothing
  nsl::index correct = 0;                        // images classified correctly
  std::vector<std::vector<nsl::index>> confusion;  // [true class][predicted class]
};

Result evaluate(nsl::Sequential<float>& net, const nsl::Dataset& data, nsl::index batch) {
  net.set_training(false);  // BatchNorm uses its running statistics
  const nsl::index n = data.images.dim(0), classes = data.classes;
  std::vector<nsl::index> order(static_cast<std::size_t>(n));
  for (nsl::index i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  Result result;
  result.confusion.assign(static_cast<std::size_t>(classes), std::vector<nsl::index>(std::size_t(classes), 0));
  nsl::Tensor<float> images, logits;
  std::vector<int> labels;
  double loss_sum = 0.0;
  const nsl::index batches = (n + batch - 1) / batch;
  Progress progress(batches);
  for (nsl::index b = 0; b < batches; ++b) {
    const nsl::index start = b * batch, count = std::min(batch, n - start);
    nsl::gather_batch(data, order, start, count, images, labels);
    logits.resize(net.output_shape(images.shape()));
    net.forward_into(images.view(), logits.view());
    const nsl::LossResult r = nsl::softmax_cross_entropy<float>(logits.view(), labels, 0.0, {});
    loss_sum += r.loss * double(count);
    // The prediction as softmax_cross_entropy counts it: the first largest logit.
    for (nsl::index i = 0; i < count; ++i) {
      const float* z = logits.data() + i * classes;
      nsl::index top = 0;
      for (nsl::index k = 1; k < classes; ++k)
        if (z[k] > z[top]) top = k;
      const int label = labels[static_cast<std::size_t>(i)];
      ++result.confusion[static_cast<std::size_t>(label)][static_cast<std::size_t>(top)];
      if (top == label) ++result.correct;
    }
    progress.update(b + 1, start + count);
  }
  result.loss = loss_sum / double(n);
  return result;
}

// ---- report ----------------------------------------------------------------

int digits(nsl::index v) {
  int d = 1;
  while (v >= 10) {
    v /= 10;
    ++d;
  }
  return d;
}

void print_report(const std::string& dataset, nsl::index n, const Result& r, const std::vector<std::string>& names,
                  const std::vector<nsl::index>& per_class, bool json) {
  const std::size_t classes = names.size();
  std::printf("test accuracy: %.2f%% (%ld of %ld)\n", 100.0 * double(r.correct) / double(n), long(r.correct), long(n));
  std::printf("test loss: %.4f (mean softmax cross-entropy, no label smoothing)\n", r.loss);

  int name_width = 4;
  for (const auto& name : names) name_width = std::max(name_width, int(name.size()));
  std::printf("\nper-class accuracy on %s:\n", dataset.c_str());
  std::printf("  class  %-*s  images  correct  accuracy\n", name_width, "name");
  for (std::size_t c = 0; c < classes; ++c) {
    const nsl::index correct = r.confusion[c][c];
    char accuracy[16] = "       -";
    if (per_class[c] > 0)
      std::snprintf(accuracy, sizeof accuracy, "%7.2f%%", 100.0 * double(correct) / double(per_class[c]));
    std::printf("  %5zu  %-*s  %6ld  %7ld  %s\n", c, name_width, names[c].c_str(), long(per_class[c]), long(correct),
                accuracy);
  }

  if (classes > 20) {
    std::printf("\nconfusion matrix: %zu classes, too many to print; %s\n", classes,
                json ? "it is in the --json file" : "pass --json FILE to get it");
    return;
  }
  nsl::index largest = nsl::index(classes) - 1;
  for (const auto& row : r.confusion)
    for (nsl::index v : row) largest = std::max(largest, v);
  const int width = digits(largest) + 1;
  std::printf("\nconfusion matrix (rows: true class, columns: predicted class):\n");
  std::printf("  %*s", 5 + 2 + name_width, "");
  for (std::size_t c = 0; c < classes; ++c) std::printf(" %*zu", width, c);
  std::printf("\n");
  for (std::size_t t = 0; t < classes; ++t) {
    std::printf("  %5zu  %-*s", t, name_width, names[t].c_str());
    for (std::size_t p = 0; p < classes; ++p) std::printf(" %*ld", width, long(r.confusion[t][p]));
    std::printf("\n");
  }
}

// The report as JSON text: the keys in the documented order, one per line, and
// one line per class and per confusion-matrix row.
std::string to_json(const Settings& s, const std::string& variant, const std::string& dataset, nsl::index n,
                    const Result& r, const std::vector<std::string>& names, const std::vector<nsl::index>& per_class) {
  using json = nlohmann::ordered_json;  // keys in insertion order
  auto lines = [](const std::vector<json>& items) {
    std::string text = "[";
    for (std::size_t i = 0; i < items.size(); ++i) text += (i ? ",\n    " : "\n    ") + items[i].dump();
    return text + "\n  ]";
  };
  std::vector<json> classes, rows;
  for (std::size_t c = 0; c < names.size(); ++c) {
    json accuracy = nullptr;  // no test image of the class
    if (per_class[c] > 0) accuracy = double(r.confusion[c][c]) / double(per_class[c]);
    classes.push_back({{"class", c}, {"name", names[c]}, {"images", per_class[c]}, {"accuracy", accuracy}});
    rows.emplace_back(r.confusion[c]);
  }
  const std::pair<const char*, std::string> fields[] = {
      {"model", json(s.model).dump()},
      {"variant", json(variant).dump()},
      {"dataset", json(dataset).dump()},
      {"images", json(n).dump()},
      {"accuracy", json(double(r.correct) / double(n)).dump()},
      {"loss", json(r.loss).dump()},
      {"precise_bn", json(s.precise_bn).dump()},
      {"per_class", lines(classes)},
      {"confusion", lines(rows)}};
  std::string text = "{";
  for (const auto& [key, value] : fields)
    text += (text.size() > 1 ? ",\n  \"" : "\n  \"") + std::string(key) + "\": " + value;
  return text + "\n}\n";
}

// ---- the program -------------------------------------------------------------

int run(const Settings& s) {
  namespace fs = std::filesystem;
  std::error_code ec;
  nsl::require(!fs::is_directory(s.model, ec), nsl::ErrorKind::io, "--model ", s.model,
               ": is a directory; nsl-train writes the checkpoint to ", (fs::path(s.model) / "model.nslckpt").string());
  // Before the evaluation, so a typo in --json does not waste it.
  const fs::path json_dir = fs::path(s.json).parent_path();
  nsl::require(s.json.empty() || json_dir.empty() || fs::is_directory(json_dir, ec), nsl::ErrorKind::io, "--json ",
               s.json, ": no directory ", json_dir.string());
  const nsl::Checkpoint ckpt = nsl::load_checkpoint(s.model);
  const std::string& variant_name = meta(ckpt, s.model, "variant");
  const std::string& trained_on = meta(ckpt, s.model, "dataset");
  nsl::require(known_dataset(trained_on), nsl::ErrorKind::format, s.model, ": the checkpoint's dataset '", trained_on,
               "' is not fashion-mnist, cifar10 or cifar100");
  nsl::require(s.dataset.empty() || s.dataset == trained_on, nsl::ErrorKind::argument, "--dataset ", s.dataset,
               ": the checkpoint ", s.model, " was trained on ", trained_on);
  const std::string dataset = trained_on;
  const nsl::Variant variant = nsl::parse_variant(variant_name);
  const nsl::index in_channels = positive_integer(meta(ckpt, s.model, "in_channels"), s.model, "in_channels");
  std::string dir = s.data;
  if (dir.empty()) {
    nsl::require(dataset == "fashion-mnist", nsl::ErrorKind::argument, "--data is required for ", dataset,
                 " (the directory holding its test split)");
    dir = default_fashion_mnist_dir;
  }
  if (s.threads > 0) nsl::set_num_threads(s.threads);

  const nsl::Dataset test = load_test_split(dataset, dir, s.limit_test);
  const nsl::index n = test.images.dim(0), channels = test.images.dim(1), size = test.images.dim(2);
  nsl::require(channels == in_channels, nsl::ErrorKind::shape, s.model, ": the network takes ", in_channels,
               "-channel images, the ", dataset, " test images in ", dir, " have ", channels);
  const std::string* epoch = ckpt.get("epoch");
  std::printf("nsl-eval: %s: %s on %s%s, %ld test images of %ldx%ldx%ld, %ld classes; %d threads\n", s.model.c_str(),
              variant_name.c_str(), dataset.c_str(), epoch ? nsl::cat(" (epoch ", *epoch, ")").c_str() : "", long(n),
              long(channels), long(size), long(test.images.dim(3)), long(test.classes), nsl::num_threads());
  std::fflush(stdout);

  nsl::Rng rng(1);  // initial weights, all overwritten below
  nsl::Cnn9Options options;
  options.input_size = size;
  nsl::Sequential<float> net = nsl::cnn9<float>(variant, in_channels, test.classes, rng, options);
  nsl::restore(ckpt, "model.", net.parameters());
  nsl::restore(ckpt, "model.", net.buffers());
  if (s.precise_bn > 0) {
    const nsl::Dataset train =
        dataset == "fashion-mnist" ? nsl::load_fashion_mnist(dir, true) : nsl::load_cifar(dir, true, dataset == "cifar100");
    const nsl::index batch = 128;
    const nsl::index batches = nsl::cli::recalibrate_on_first_batches(net, train, s.precise_bn, batch);
    std::printf("nsl-eval: BatchNorm statistics re-estimated on %ld training batches of %ld (--precise-bn)\n",
                long(batches), long(batch));
  }

  const Result result = evaluate(net, test, s.batch);
  std::vector<std::string> names;
  std::vector<nsl::index> per_class(static_cast<std::size_t>(test.classes), 0);
  for (nsl::index c = 0; c < test.classes; ++c) names.push_back(class_name(dataset, c));
  for (int label : test.labels) ++per_class[static_cast<std::size_t>(label)];

  print_report(dataset, n, result, names, per_class, !s.json.empty());
  if (!s.json.empty()) {
    const std::string text = to_json(s, variant_name, dataset, n, result, names, per_class);
    nsl::write_file_atomically("--json", s.json, [&](std::ofstream& out) { out << text; });
    std::printf("\nnsl-eval: wrote %s\n", s.json.c_str());
  }
  return 0;
}

#if !NSL_HAS_EXCEPTIONS
// Without exceptions nsl's checks call this and never return: one line, status 1.
void exit_on_error(nsl::ErrorKind, const char* message) {
  std::fflush(stdout);
  std::fprintf(stderr, "nsl-eval: %s\n", message);
  std::exit(1);
}
#endif

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{"nsl-eval: evaluate a checkpoint of nsl-train on the test split of its dataset"};
  app.add_option("--model", s.model, "checkpoint written by nsl-train (OUT/model.nslckpt)")->required();
  app.add_option("--data", s.data, std::string("dataset directory (default for fashion-mnist: ") +
                                       default_fashion_mnist_dir + ")");
  app.add_option("--dataset", s.dataset, "fashion-mnist, cifar10 or cifar100 (default: the checkpoint's)")
      ->check(CLI::IsMember({"fashion-mnist", "cifar10", "cifar100"}));
  app.add_option("--batch", s.batch, "images per forward pass")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--threads", s.threads, "threads (0: all cores)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--limit-test", s.limit_test, "use only the first N test images (0: all)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--json", s.json, "also write the results to this JSON file");
  app.add_option("--precise-bn", s.precise_bn,
                 "re-estimate BatchNorm's running statistics on this many training batches of 128 before "
                 "evaluating (0: use the checkpoint's; see nsl/train/precise_bn.hpp)")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
#if NSL_HAS_EXCEPTIONS
  try {
    return run(s);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "nsl-eval: %s\n", e.what());
    return 1;
  }
#else
  nsl::set_error_handler(&exit_on_error);
  return run(s);
#endif
}
