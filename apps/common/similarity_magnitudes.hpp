// apps/common/similarity_magnitudes.hpp — the size of G of every dynamic
// layer of a CNN-9, for nsl-train's metrics.jsonl and nsl-eval's report.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstddef>
#include <vector>

#include "nsl/data/augment.hpp"
#include "nsl/data/idx.hpp"
#include "nsl/io/model_file.hpp"
#include "nsl/layers/dynamic_ns_conv2d.hpp"

namespace nsl::cli {

/// Runs the first min(100, all) images of `test` through the network in
/// evaluation mode and puts the training flag back: the dynamic layers keep
/// the G of these images (their mean kernel shape and size come from it).
inline void forward_first_test_images(Model<float>& model, const Dataset& test) {
  Tensor<float> images;
  std::vector<int> labels;
  std::vector<index> order;
  for (index i = 0; i < std::min<index>(100, test.images.dim(0)); ++i) order.push_back(i);
  gather_batch(test, order, 0, index(order.size()), images, labels);
  const bool was_training = model.network.training();
  model.network.set_training(false);
  model.network.forward(images.view());
  model.network.set_training(was_training);
}

/// {layer name: nsl::similarity_magnitude} of every dynamic layer on the
/// first 100 images of `test` in evaluation mode: the RMS of ||G(p)||_F /
/// ||I||_F, how far the layer is from a plain convolution (0: plain). null
/// for a network without dynamic layers. Runs no backward and changes no
/// state that training reads (the layers' saved G and input are overwritten
/// by the next forward), and puts the training flag back.
inline nlohmann::json similarity_magnitudes(Model<float>& model, const Dataset& test) {
  std::vector<std::size_t> dynamic;
  for (std::size_t i = 0; i < model.network.size(); ++i)
    if (dynamic_cast<DynamicNSConv2d<float>*>(&model.network.layer(i))) dynamic.push_back(i);
  if (dynamic.empty()) return nullptr;
  forward_first_test_images(model, test);
  nlohmann::json sizes = nlohmann::json::object();
  for (std::size_t i : dynamic)
    sizes[model.network.name(i)] =
        similarity_magnitude(dynamic_cast<const DynamicNSConv2d<float>&>(model.network.layer(i)));
  return sizes;
}

}  // namespace nsl::cli
