// 05 — inference only, the way an embedded product builds nsl: no
// exceptions (-fno-exceptions), no OpenMP, no framework.
//
// Loads a CNN-9 model file written by nsl-train (any variant), deploys it
// (nsl/deploy/deploy.hpp: BatchNorm folded into the convolutions, static M
// folded, dynamic layers kept with folded predictors; docs/deployment.md),
// checks that the deployed network gives the trained one's logits, and
// classifies one image with the deployed network's const infer:
//
//     nsl_example_05_inference_only MODEL.nslckpt IMAGES [INDEX]
//
// IMAGES is an IDX image file (e.g. Fashion-MNIST's t10k-images-idx3-ubyte,
// .gz or not; INDEX picks the image, default 0) or a .npy array of one
// H x W, 1 x H x W or 1 x 1 x H x W image (float or double, raw 0..255 pixels
// as nsl-train uses them). Without exceptions every error in nsl goes to the
// handler installed below, which prints it; then the program stops (abort).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "nsl/data/idx.hpp"
#include "nsl/deploy/deploy.hpp"
#include "nsl/io/npy.hpp"

namespace {

void report_error(nsl::ErrorKind kind, const char* message) {
  std::fprintf(stderr, "05_inference_only: %s: %s\n", nsl::to_string(kind), message);
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// One image as 1 x 1 x H x W floats.
nsl::Tensor<float> load_image(const std::string& path, nsl::index which) {
  if (ends_with(path, ".npy")) {
    nsl::Tensor<float> t = nsl::load_npy<float>(path);
    nsl::require(t.rank() >= 2 && t.size() == t.dim(t.rank() - 2) * t.dim(t.rank() - 1), nsl::ErrorKind::shape,
                 path, ": expected one H x W image (or 1 x H x W, 1 x 1 x H x W), got ", t.shape());
    return nsl::Tensor<float>(t.view().reshaped(nsl::Shape{1, 1, t.dim(t.rank() - 2), t.dim(t.rank() - 1)}));
  }
  const nsl::Tensor<float> all = nsl::load_idx_images<float>(path);  // N x 1 x H x W, raw pixels
  nsl::require(which >= 0 && which < all.dim(0), nsl::ErrorKind::argument, path, " has ", all.dim(0),
               " images; index ", which, " is out of range");
  const nsl::index pixels = all.dim(2) * all.dim(3);
  return nsl::Tensor<float>(nsl::TensorView<const float>(all.data() + which * pixels, nsl::Shape{1, 1, all.dim(2), all.dim(3)}));
}

const char* class_name(const std::string& dataset, int k) {
  static const char* fashion[] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                  "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return dataset == "fashion-mnist" && k >= 0 && k < 10 ? fashion[k] : "";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.nslckpt IMAGES.{idx,npy} [INDEX]\n", argv[0]);
    return 2;
  }
  nsl::set_error_handler(&report_error);
  const std::string model = argv[1], images = argv[2];
  const nsl::index which = argc > 3 ? std::atol(argv[3]) : 0;

  // One call rebuilds the trained network from its model file (nsl/io/model_file.hpp).
  nsl::Model<float> trained = nsl::load_model<float>(model);
  nsl::require(trained.spec.network == nsl::Network::cnn9, nsl::ErrorKind::argument, model,
               ": a few-shot model; this example classifies with CNN-9 models of nsl-train");
  const nsl::Tensor<float> image = load_image(images, which);
  nsl::require(image.dim(2) == trained.spec.input_size, nsl::ErrorKind::shape, model, ": the network takes ",
               trained.spec.input_size, "x", trained.spec.input_size, " images, ", images, " has ", image.dim(2), "x",
               image.dim(3));
  trained.network.set_training(false);
  const std::string variant_name = nsl::to_string(trained.spec.variant);
  const std::string& dataset = trained.spec.dataset;

  // Deployment: a new network that computes the same function with less work.
  // Its infer is const (one deployed network may serve several threads, each
  // with its own workspace) and, once the workspace has seen the shape,
  // allocates nothing.
  const nsl::Sequential<float> deployed = nsl::deploy(trained.network);
  nsl::InferenceWorkspace workspace;
  const nsl::Tensor<float> logits = deployed.infer(image.view(), workspace);

  const nsl::Tensor<float> reference = trained.network.forward(image);  // the trained network, evaluation mode
  double worst = 0.0, scale = 0.0;
  for (nsl::index k = 0; k < logits.size(); ++k) {
    worst = std::max(worst, double(std::abs(logits[k] - reference[k])));
    scale = std::max(scale, double(std::abs(reference[k])));
  }
  std::printf("%s: %s CNN-9 deployed (%zu layers, %zu before folding); image %ld of %s (%ldx%ld)\n", model.c_str(),
              variant_name.c_str(), deployed.size(), trained.network.size(), long(which), images.c_str(),
              long(image.dim(2)), long(image.dim(3)));
  std::printf("deployed vs trained logits: max difference %.2e (relative %.2e)\n", worst,
              worst / std::max(scale, 1e-30));

  std::printf("logits:");  // of the deployed network, for comparisons with nsl-eval --logits
  for (nsl::index k = 0; k < logits.size(); ++k) std::printf(" %.9g", double(logits[k]));
  std::printf("\n");

  // Softmax probabilities, most likely first.
  const nsl::index classes = logits.size();
  double top = logits[0], sum = 0.0;
  for (nsl::index k = 0; k < classes; ++k) top = std::max(top, double(logits[k]));
  std::vector<double> p(static_cast<std::size_t>(classes));
  for (nsl::index k = 0; k < classes; ++k) sum += p[std::size_t(k)] = std::exp(double(logits[k]) - top);
  std::vector<int> order(static_cast<std::size_t>(classes));
  for (int k = 0; k < int(classes); ++k) order[std::size_t(k)] = k;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return p[std::size_t(a)] > p[std::size_t(b)]; });
  const std::string& ds = dataset;
  std::printf("prediction: class %d %s (p = %.3f)\n", order[0], class_name(ds, order[0]), p[std::size_t(order[0])] / sum);
  for (std::size_t r = 1; r < std::min<std::size_t>(3, order.size()); ++r)
    std::printf("  then     class %d %s (p = %.3f)\n", order[r], class_name(ds, order[r]), p[std::size_t(order[r])] / sum);
  // The folds are exact up to float rounding: a larger difference is a bug.
  return worst <= 1e-5 * std::max(scale, 1.0) ? 0 : 1;
}
