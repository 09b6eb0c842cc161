// nsl/models/conv4.hpp — the Conv-4 embedding network of few-shot learning
// (NSL.md §7): four blocks of a 3x3 convolution to 64 channels (no bias),
// BatchNorm, ReLU and a 2x2 max-pool ('same', stride 2). A 28x28 input
// leaves 64 x 2 x 2 (28 -> 14 -> 7 -> 4 -> 2): a 256-dimensional embedding.
//
// The convolutions of blocks 2-4 are the similarity variant under test (any
// of CNN-9's, built by make_similarity_conv: plain, static or dynamic NSL;
// the predictors' BatchNorm is Conv4Options::bn); block 1's stays plain, as
// CNN-9's root does (one input channel gives a 9-dimensional patch, too
// little for a predictor to read).
#pragma once

#include "nsl/models/cnn9.hpp"

namespace nsl {

struct Conv4Options {
  index width = 64;                          ///< channels of every block
  BatchNormOptions bn{1e-3, 0.99, true};     ///< faster running statistics than CNN-9's 0.999
  index predictor_hidden = 0;                ///< 0: the reference width (64 DNS, 128 UNS)
};

/// The embedding's size for size x size inputs (width x s x s, s = size halved four times, rounding up).
inline index conv4_embedding_size(index size, const Conv4Options& o = {}) {
  for (int i = 0; i < 4; ++i) size = (size + 1) / 2;
  return o.width * size * size;
}

template <class T, class D = Cpu>
Sequential<T, D> conv4(Variant variant, index in_channels, Rng& rng, const Conv4Options& o = {}) {
  require(in_channels >= 1 && o.width >= 1, ErrorKind::argument,
          "conv4: expected in_channels and width >= 1, got ", in_channels, " and ", o.width);
  SimilarityConvOptions similarity;
  similarity.bn = o.bn;
  similarity.predictor_hidden = o.predictor_hidden;
  Sequential<T, D> net;
  index channels = in_channels;
  for (int block = 1; block <= 4; ++block) {
    const std::string prefix = cat("block", block, ".");
    if (block == 1)
      net.add(prefix + "conv", std::make_unique<Conv2d<T, D>>(channels, o.width, 3, Conv2dOptions{1, 1, false}, rng));
    else
      net.add(prefix + "conv", make_similarity_conv<T, D>(variant, channels, o.width, similarity, rng));
    net.add(prefix + "bn", std::make_unique<BatchNorm2d<T, D>>(o.width, o.bn));
    net.add(prefix + "relu", std::make_unique<ReLU<T, D>>());
    net.add(prefix + "pool", std::make_unique<MaxPool2d<T, D>>());
    channels = o.width;
  }
  return net;
}

}  // namespace nsl
