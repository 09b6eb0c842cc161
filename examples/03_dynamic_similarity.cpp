// 03 — dynamic neural similarity: M(p) = I + G(x)(p), predicted per pixel.
//
// Part 1 shows that a dynamic DNS layer whose predictor has not learned
// anything is the plain convolution: exactly so when the predictor's last
// layer is zero, and to within the tiny initial scale of that layer when it
// is freshly initialised (evaluation mode).
//
// Part 2 trains a small network on real Fashion-MNIST images for a few
// hundred steps,
//     DynamicNSConv2d(1->8, 3x3, stride 2, DNS) -> BN -> ReLU
//     -> Conv2d(8->16, 3x3, stride 2) -> BN -> ReLU -> Linear(16*7*7 -> 10)
// with softmax cross-entropy and SGD with momentum, all written out below
// against the layer API, and then prints the predicted kernel shape
// m(p) = 1 + g(p) at a few pixels of a test image: the dynamic layer
// reshapes its 3x3 kernel differently on the background, on edges and inside
// the garment.
//
// usage: nsl_example_03_dynamic_similarity [FASHION_MNIST_DIR] [STEPS]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "nsl/data/idx.hpp"
#include "nsl/layers/batch_norm2d.hpp"
#include "nsl/layers/conv2d.hpp"
#include "nsl/layers/dynamic_ns_conv2d.hpp"
#include "nsl/layers/linear.hpp"
#include "nsl/layers/relu.hpp"

namespace {

using Tensor = nsl::Tensor<float>;

// Softmax cross-entropy averaged over the batch; writes dL/dlogits into grad
// and returns the loss. log-sum-exp with the maximum subtracted, for stability.
float cross_entropy(const Tensor& logits, const std::vector<int>& labels, Tensor& grad, int& correct) {
  const nsl::index N = logits.dim(0), classes = logits.dim(1);
  grad = Tensor(logits.shape());
  float loss = 0.0f;
  for (nsl::index n = 0; n < N; ++n) {
    const float* z = logits.data() + n * classes;
    const float top = *std::max_element(z, z + classes);
    float sum = 0.0f;
    for (nsl::index c = 0; c < classes; ++c) sum += std::exp(z[c] - top);
    const int label = labels[static_cast<std::size_t>(n)];
    loss += std::log(sum) + top - z[label];
    correct += static_cast<int>(std::max_element(z, z + classes) - z) == label;
    for (nsl::index c = 0; c < classes; ++c)
      grad(n, c) = (std::exp(z[c] - top) / sum - (c == label ? 1.0f : 0.0f)) / float(N);
  }
  return loss / float(N);
}

void print_kernel_shape(const nsl::Tensor<float>& g, nsl::index row, nsl::index col, const char* where) {
  // g is 1 x 9 x 14 x 14: m_r(p) = 1 + g_r(p).
  std::printf("  m(p) at (%2ld,%2ld), %s:\n", long(row), long(col), where);
  for (int di = 0; di < 3; ++di) {
    std::printf("     ");
    for (int dj = 0; dj < 3; ++dj) std::printf(" %6.2f", 1.0f + g(0, di * 3 + dj, row, col));
    std::printf("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
  const int steps = argc > 2 ? std::atoi(argv[2]) : 300;
  nsl::Rng rng(3);

  // ---- Part 1: an untrained dynamic layer is the plain convolution --------
  {
    auto x = nsl::random_normal<float>(nsl::Shape{2, 3, 12, 12}, rng);
    nsl::DynamicNSConv2d<float> dynamic(3, 8, 3, nsl::Structure::diagonal, {1, false, {}}, rng);
    nsl::Conv2d<float> plain(3, 8, 3, {1, 1, false});
    plain.weight() = dynamic.weight();
    const Tensor y_plain = plain.forward(x);
    dynamic.set_training(false);
    const double fresh = (dynamic.forward(x).vec() - y_plain.vec()).cwiseAbs().maxCoeff();
    dynamic.predictor().conv2().weight().set_zero();
    const double zeroed = (dynamic.forward(x).vec() - y_plain.vec()).cwiseAbs().maxCoeff();
    std::printf("Part 1: dynamic DNS layer vs Conv2d with the same W (max |difference|, outputs ~%.1f):\n",
                y_plain.vec().cwiseAbs().mean());
    std::printf("  predictor freshly initialised (conv2 scale 0.001): %.2e\n", fresh);
    std::printf("  predictor's last layer zeroed:                     %.2e\n\n", zeroed);
    if (zeroed != 0.0) return 1;
  }

  // ---- Part 2: a short training run on Fashion-MNIST ----------------------
  const nsl::Dataset train = nsl::load_fashion_mnist(dir, true, 1.0 / 255.0);
  const nsl::Dataset test = nsl::load_fashion_mnist(dir, false, 1.0 / 255.0);
  std::printf("Part 2: training on %ld Fashion-MNIST images for %d steps of 32\n", long(train.images.dim(0)), steps);

  // BN's running statistics are a debiased EMA (decay 0.999), so even a run
  // this short evaluates with statistics of the data.
  nsl::DynamicNSConv2d<float> dynamic(1, 8, 3, nsl::Structure::diagonal, {2, false, nsl::PredictorOptions::dns()}, rng);
  nsl::BatchNorm2d<float> bn1(8), bn2(16);
  nsl::ReLU<float> relu1, relu2;
  nsl::Conv2d<float> conv(8, 16, 3, {2, 1, false}, rng);
  nsl::Linear<float> classifier(16 * 7 * 7, 10, true, rng);
  std::vector<nsl::Layer<float>*> layers{&dynamic, &bn1, &relu1, &conv, &bn2, &relu2, &classifier};
  std::vector<nsl::Parameter<float>> params;
  for (auto* layer : layers)
    for (auto& p : layer->parameters()) params.push_back(p);
  std::vector<Tensor> velocity;
  for (auto& p : params) velocity.emplace_back(p.value.shape());

  const nsl::index batch = 32, pixels = 28 * 28;
  Tensor x(nsl::Shape{batch, 1, 28, 28}), grad;
  std::vector<int> labels(batch);
  float running_loss = 0.0f;
  int correct = 0, seen = 0;
  for (int step = 1; step <= steps; ++step) {
    for (nsl::index n = 0; n < batch; ++n) {
      const auto i = static_cast<nsl::index>(rng.below(static_cast<std::uint64_t>(train.images.dim(0))));
      std::copy(train.images.data() + i * pixels, train.images.data() + (i + 1) * pixels, x.data() + n * pixels);
      labels[static_cast<std::size_t>(n)] = train.labels[static_cast<std::size_t>(i)];
    }
    Tensor h = x;
    for (auto* layer : layers) h = layer->forward(h);
    running_loss += cross_entropy(h, labels, grad, correct);
    seen += batch;
    nsl::zero_gradients(params);
    for (auto it = layers.rbegin(); it != layers.rend(); ++it) grad = (*it)->backward(grad);
    const float lr = step < steps * 2 / 3 ? 0.05f : 0.005f;
    for (std::size_t k = 0; k < params.size(); ++k) {
      if (params[k].weight_decay) params[k].grad.vec() += 5e-4f * params[k].value.vec();
      velocity[k].vec() = 0.9f * velocity[k].vec() + params[k].grad.vec();
      params[k].value.vec() -= lr * velocity[k].vec();
    }
    if (step % 50 == 0 || step == steps) {
      std::printf("  step %4d  loss %.3f  train accuracy %.1f%%\n", step, running_loss / float(seen / batch),
                  100.0 * correct / seen);
      running_loss = 0.0f;
      correct = seen = 0;
    }
  }

  // Test accuracy on the first 1000 test images, in evaluation mode.
  for (auto* layer : layers) layer->set_training(false);
  const nsl::index test_count = std::min<nsl::index>(1000, test.images.dim(0));
  int test_correct = 0;
  for (nsl::index start = 0; start < test_count; start += 100) {
    const nsl::index count = std::min<nsl::index>(100, test_count - start);
    Tensor h(nsl::TensorView<const float>(test.images.data() + start * pixels, nsl::Shape{count, 1, 28, 28}));
    for (auto* layer : layers) h = layer->forward(h);
    std::vector<int> batch_labels(test.labels.begin() + start, test.labels.begin() + start + count);
    Tensor unused;
    cross_entropy(h, batch_labels, unused, test_correct);
  }
  std::printf("  test accuracy (first %ld test images): %.1f%%\n\n", long(test_count), 100.0 * test_correct / test_count);

  // The predicted kernel shapes on one test image.
  const Tensor image(nsl::TensorView<const float>(test.images.data(), nsl::Shape{1, 1, 28, 28}));
  dynamic.forward(image);
  const nsl::Tensor<float>& g = dynamic.predicted_similarity();
  std::printf("Test image 0 (%s), every other pixel; output pixel (i, j) sees input (2i, 2j):\n",
              nsl::fashion_mnist_class_name(test.labels[0]));
  for (int r = 0; r < 28; r += 2) {
    std::printf("  ");
    for (int c = 0; c < 28; c += 2) {
      const float v = image(0, 0, r, c);
      std::printf("%c", v > 0.6f ? '#' : v > 0.2f ? '+' : v > 0.05f ? '.' : ' ');
    }
    std::printf("\n");
  }
  std::printf("\nPredicted kernel shapes m(p) = 1 + g(p) (DNS, 3x3):\n");
  print_kernel_shape(g, 1, 1, "background");
  print_kernel_shape(g, 7, 7, "centre of the image");
  print_kernel_shape(g, 7, 3, "left part");
  print_kernel_shape(g, 12, 7, "bottom");
  double spread = 0.0;
  for (nsl::index r = 0; r < 9; ++r) {
    const auto slot = g.view().sample(0).matrix(9, 14 * 14).row(r);
    spread += (slot.array() - slot.mean()).square().mean();
  }
  std::printf("\nmean variance of m_r(p) over the pixels: %.4f (0 would be a static kernel)\n", spread / 9);
  return 0;
}
