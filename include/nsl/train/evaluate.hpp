// nsl/train/evaluate.hpp — a classifier on a labelled dataset: the mean
// softmax cross-entropy, the accuracy and the confusion matrix.
//
//   evaluate(network, dataset, options)   the network in evaluation mode
//                                         (BatchNorm's running statistics),
//                                         batch by batch, on any device
//
// The prediction is the first largest logit, as softmax_cross_entropy counts
// it. The loss uses options.smoothing (0: the plain cross-entropy). The
// network is left in training mode if it was in it. `progress(done, total)`
// is called before each batch and at the end (images done of all).
#pragma once

#include <algorithm>
#include <vector>

#include "nsl/data/augment.hpp"
#include "nsl/data/idx.hpp"
#include "nsl/layers/layer.hpp"
#include "nsl/train/loss.hpp"

namespace nsl {

struct EvaluateOptions {
  index batch = 500;         ///< images per forward pass
  double smoothing = 0.0;    ///< label smoothing of the reported loss
  bool keep_logits = false;  ///< also return every image's logits
};

struct Evaluation {
  index images = 0;
  index correct = 0;
  double loss = 0.0;                              ///< mean over the images
  std::vector<std::vector<index>> confusion;      ///< [true class][predicted class]
  Tensor<float> logits;                           ///< images x classes, with options.keep_logits

  double accuracy() const { return images > 0 ? double(correct) / double(images) : 0.0; }
  /// Test images of class c.
  index class_images(index c) const {
    index n = 0;
    for (index v : confusion[static_cast<std::size_t>(c)]) n += v;
    return n;
  }
};

namespace detail::evaluation {
struct NoProgress {
  void operator()(index, index) const {}
};
}  // namespace detail::evaluation

/// `network` (N x C x H x W images -> N x classes logits, of any trailing
/// 1 x 1) on every image of `data`; see the top of the file.
template <class T, class D, class Progress = detail::evaluation::NoProgress>
Evaluation evaluate(Layer<T, D>& network, const Dataset& data, const EvaluateOptions& options = {},
                    Progress&& progress = {}) {
  require(options.batch >= 1, ErrorKind::argument, "evaluate: batch must be >= 1, got ", options.batch);
  require(data.images.rank() == 4 && data.classes >= 1, ErrorKind::argument,
          "evaluate: expected N x C x H x W images and at least one class, got ", data.images.shape());
  const bool was_training = network.training();
  network.set_training(false);
  const index n = data.images.dim(0), classes = data.classes;
  std::vector<index> order(static_cast<std::size_t>(n));
  for (index i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  Evaluation result;
  result.images = n;
  result.confusion.assign(static_cast<std::size_t>(classes), std::vector<index>(std::size_t(classes), 0));
  Tensor<float> images;
  Tensor<T, D> input, logits;
  std::vector<int> labels;
  double loss_sum = 0.0;
  if (options.keep_logits) result.logits.resize(Shape{n, classes});
  for (index start = 0; start < n; start += options.batch) {
    progress(start, n);
    const index count = std::min(options.batch, n - start);
    gather_batch(data, order, start, count, images, labels);
    if constexpr (std::is_same_v<T, float>) {
      assign_host_tensor<T, D>(input, images);
    } else {
      assign_host_tensor<T, D>(input, cast<T, float>(images.view()));
    }
    logits.resize(network.output_shape(input.shape()));
    network.forward_into(input.view(), logits.view());
    const Tensor<T> z = to_host<T>(TensorView<const T, D>(logits.view()));
    require(z.size() == count * classes, ErrorKind::shape, "evaluate: the network gives ", z.shape(), " for ", count,
            " images of ", classes, " classes");
    const Tensor<T> rows(z.view().reshaped(Shape{count, classes}));
    if (options.keep_logits)
      for (index i = 0; i < count * classes; ++i) result.logits[start * classes + i] = float(rows[i]);
    loss_sum += softmax_cross_entropy<T>(rows.view(), labels, options.smoothing, {}).loss * double(count);
    for (index i = 0; i < count; ++i) {
      const T* row = rows.data() + i * classes;
      const index predicted = index(std::max_element(row, row + classes) - row);
      ++result.confusion[static_cast<std::size_t>(labels[static_cast<std::size_t>(i)])][std::size_t(predicted)];
      if (predicted == labels[static_cast<std::size_t>(i)]) ++result.correct;
    }
  }
  progress(n, n);
  result.loss = n > 0 ? loss_sum / double(n) : 0.0;
  network.set_training(was_training);
  return result;
}

}  // namespace nsl
