// 04 — a complete training loop, written against the layer API alone.
//
// No Sequential, no optimiser class, no training helper: every step a
// training loop takes is on this page, so a researcher can change any of
// them. The network, on Fashion-MNIST (28x28 grey, 10 classes):
//
//     Conv2d(1->16, 3x3, pad 1) -> BN -> ReLU -> MaxPool 2x2         28 -> 14
//     StaticNSConv2d(16->32, 3x3, pad 1, DNS: a learned kernel shape)
//                               -> BN -> ReLU -> MaxPool 2x2         14 -> 7
//     Linear(32*7*7 -> 10)
//
// One epoch of it:
//   1. shuffle the training images (a seeded generator: the same run twice
//      gives the same numbers);
//   2. for each mini-batch: forward through the layers in order; the softmax
//      cross-entropy and its gradient dL/dlogits; backward through the layers
//      in reverse, each turning dL/d(output) into dL/d(input) and adding
//      dL/d(parameters) into the parameters' gradient buffers;
//   3. the update, for every parameter w with gradient g and velocity v:
//      g += λ w (L2 weight decay, weights only), v = μ v + g, w -= lr v;
//   4. then the test set with BatchNorm in evaluation mode.
// At the end the static NSL layer is folded into a plain convolution
// (w' = M^T w, exactly the same outputs) and the learned kernel shape printed.
//
// usage: nsl_example_04_custom_training_loop [FASHION_MNIST_DIR] [TRAIN_IMAGES] [EPOCHS]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "nsl/data/augment.hpp"
#include "nsl/data/idx.hpp"
#include "nsl/layers/batch_norm2d.hpp"
#include "nsl/layers/conv2d.hpp"
#include "nsl/layers/linear.hpp"
#include "nsl/layers/max_pool2d.hpp"
#include "nsl/layers/relu.hpp"
#include "nsl/layers/static_ns_conv2d.hpp"
#include "nsl/train/loss.hpp"

namespace {

using Tensor = nsl::Tensor<float>;

// The network's layers, each owned here, run in this order.
struct Network {
  nsl::Conv2d<float> conv1;
  nsl::BatchNorm2d<float> bn1{16};
  nsl::ReLU<float> relu1;
  nsl::MaxPool2d<float> pool1;
  nsl::StaticNSConv2d<float> conv2;
  nsl::BatchNorm2d<float> bn2{32};
  nsl::ReLU<float> relu2;
  nsl::MaxPool2d<float> pool2;
  nsl::Linear<float> fc;

  explicit Network(nsl::Rng& rng)
      : conv1(1, 16, 3, {1, 1, false}, rng),
        conv2(16, 32, 3, nsl::Structure::diagonal, {1, 1, false}, rng),
        fc(32 * 7 * 7, 10, true, rng) {}

  std::vector<nsl::Layer<float>*> layers() {
    return {&conv1, &bn1, &relu1, &pool1, &conv2, &bn2, &relu2, &pool2, &fc};
  }
};

// Forward through every layer; returns the logits (N x 10).
Tensor forward(Network& net, const Tensor& images) {
  Tensor x = images;
  for (nsl::Layer<float>* layer : net.layers()) x = layer->forward(x);
  return x;
}

// Backward through every layer in reverse, from dL/dlogits.
void backward(Network& net, const Tensor& dlogits) {
  const std::vector<nsl::Layer<float>*> layers = net.layers();
  Tensor grad = dlogits;
  for (std::size_t i = layers.size(); i-- > 0;) grad = layers[i]->backward(grad);
}

double test_accuracy(Network& net, const nsl::Dataset& test) {
  for (nsl::Layer<float>* layer : net.layers()) layer->set_training(false);  // BN: running statistics
  std::vector<nsl::index> order(static_cast<std::size_t>(test.images.dim(0)));
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = nsl::index(i);
  Tensor images;
  std::vector<int> labels;
  nsl::index correct = 0;
  for (nsl::index start = 0; start < test.images.dim(0); start += 500) {
    const nsl::index count = std::min<nsl::index>(500, test.images.dim(0) - start);
    nsl::gather_batch(test, order, start, count, images, labels);
    correct += nsl::softmax_cross_entropy<float>(forward(net, images).view(), labels, 0.0, {}).correct;
  }
  for (nsl::Layer<float>* layer : net.layers()) layer->set_training(true);
  return double(correct) / double(test.images.dim(0));
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
  const long train_images = argc > 2 ? std::atol(argv[2]) : 60000;
  const int epochs = argc > 3 ? std::atoi(argv[3]) : 1;
  if (train_images < 64 || epochs < 1) {
    std::fprintf(stderr, "usage: %s [FASHION_MNIST_DIR] [TRAIN_IMAGES >= 64] [EPOCHS >= 1]\n", argv[0]);
    return 2;
  }
  nsl::Dataset train, test;
  try {
    // Pixels scaled to [0, 1]; the first BatchNorm would cope with 0..255 too.
    train = nsl::load_fashion_mnist(dir, true, 1.0 / 255.0);
    test = nsl::load_fashion_mnist(dir, false, 1.0 / 255.0);
  } catch (const nsl::Error& e) {
    std::fprintf(stderr, "04_custom_training_loop: %s\n", e.what());
    return 1;
  }
  const nsl::index n = std::min<nsl::index>(train_images, train.images.dim(0));
  std::printf("training on %ld of %ld images, %d epoch(s); testing on %ld\n", long(n), long(train.images.dim(0)),
              epochs, long(test.images.dim(0)));

  nsl::Rng rng(2019);
  Network net(rng);
  // The optimiser's state, by hand: one velocity per parameter.
  std::vector<nsl::Parameter<float>> params;
  for (nsl::Layer<float>* layer : net.layers())
    for (const nsl::Parameter<float>& p : layer->parameters()) params.push_back(p);
  std::vector<Tensor> velocity;
  for (const auto& p : params) velocity.emplace_back(p.value.shape());
  const float lr = 0.01f, momentum = 0.9f, decay = 5e-4f;
  const nsl::index batch = 64;

  Tensor images;
  std::vector<int> labels;
  Tensor dlogits;
  double first_loss = 0.0, last_loss = 0.0;
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    const std::vector<nsl::index> order = nsl::shuffled_indices(n, rng);  // 1. shuffle
    double loss_sum = 0.0;
    nsl::index seen = 0, correct = 0, steps = 0;
    for (nsl::index start = 0; start + batch <= n; start += batch) {
      nsl::gather_batch(train, order, start, batch, images, labels);
      const Tensor logits = forward(net, images);  // 2. forward
      dlogits = Tensor(logits.shape());
      const nsl::LossResult r = nsl::softmax_cross_entropy<float>(logits.view(), labels, 0.0, dlogits.view());
      for (const auto& p : params) p.grad.vec().setZero();  // backward adds into the gradients
      backward(net, dlogits);
      for (std::size_t i = 0; i < params.size(); ++i) {  // 3. the update
        auto w = params[i].value.vec();
        auto g = params[i].grad.vec();
        auto v = velocity[i].vec();
        if (params[i].weight_decay) g += decay * w;
        v = momentum * v + g;
        w -= lr * v;
      }
      if (steps == 0 && epoch == 1) first_loss = r.loss;
      loss_sum += r.loss * double(batch);
      correct += r.correct;
      seen += batch;
      ++steps;
    }
    last_loss = loss_sum / double(seen);
    std::printf("epoch %d: train loss %.4f, train accuracy %.2f%%, test accuracy %.2f%%\n", epoch, last_loss,
                100.0 * double(correct) / double(seen), 100.0 * test_accuracy(net, test));  // 4. test
  }

  // Fold the static layer: a plain Conv2d with w' = M^T w gives the same outputs.
  const nsl::Conv2d<float> folded = net.conv2.to_conv2d();
  const nsl::Vector<float> shape = nsl::learned_kernel_shape(net.conv2);
  std::printf("learned 3x3 kernel shape |m| of conv2 (1 = the plain convolution):\n");
  for (int r = 0; r < 3; ++r) std::printf("  %.3f %.3f %.3f\n", shape[3 * r], shape[3 * r + 1], shape[3 * r + 2]);
  std::printf("folded into %s\n", folded.describe().c_str());
  std::printf("first-batch loss %.4f, last epoch's mean loss %.4f\n", first_loss, last_loss);
  if (!(last_loss < 0.8 * first_loss)) {
    std::fprintf(stderr, "04_custom_training_loop: the loss did not fall (%.4f -> %.4f)\n", first_loss, last_loss);
    return 1;
  }
  return 0;
}
