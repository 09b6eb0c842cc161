// Tests of nsl/train/evaluate.hpp: evaluate() against the loss, accuracy and
// confusion matrix computed by hand from one forward pass over all images.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "nsl/layers/conv2d.hpp"
#include "nsl/layers/relu.hpp"
#include "nsl/models/sequential.hpp"
#include "nsl/train/evaluate.hpp"
#include "test_util.hpp"

namespace evaluate_test {

// 4 classes from 2 x 5 x 5 images: a convolution over the whole image.
nsl::Sequential<double> classifier(nsl::Rng& rng) {
  nsl::Sequential<double> net;
  net.add("conv", std::make_unique<nsl::Conv2d<double>>(2, 4, 5, nsl::Conv2dOptions{1, 0, true}, rng));
  return net;
}

nsl::Dataset random_dataset(nsl::index n, nsl::Rng& rng) {
  nsl::Dataset d;
  d.images = nsl::test::randn<float>(nsl::Shape{n, 2, 5, 5}, rng);
  d.classes = 4;
  for (nsl::index i = 0; i < n; ++i) d.labels.push_back(int(rng.below(4)));
  return d;
}

}  // namespace evaluate_test

TEST_CASE("evaluate gives the loss, accuracy and confusion matrix of one forward pass, for any batch size") {
  nsl::Rng rng(21);
  nsl::Sequential<double> net = evaluate_test::classifier(rng);
  const nsl::Dataset data = evaluate_test::random_dataset(37, rng);

  // By hand: all images at once.
  const nsl::Tensor<double> x = nsl::cast<double, float>(data.images.view());
  net.set_training(false);
  const nsl::Tensor<double> z = net.forward(x.view());
  const nsl::Tensor<double> rows(z.view().reshaped(nsl::Shape{37, 4}));
  const nsl::LossResult expected = nsl::softmax_cross_entropy<double>(rows.view(), data.labels, 0.1, {});
  std::vector<std::vector<nsl::index>> confusion(4, std::vector<nsl::index>(4, 0));
  for (nsl::index i = 0; i < 37; ++i) {
    nsl::index best = 0;
    for (nsl::index k = 1; k < 4; ++k)
      if (rows[i * 4 + k] > rows[i * 4 + best]) best = k;
    ++confusion[std::size_t(data.labels[std::size_t(i)])][std::size_t(best)];
  }
  net.set_training(true);

  for (nsl::index batch : {1, 5, 37, 500}) {
    CAPTURE(batch);
    nsl::index calls = 0, last_done = -1;
    const nsl::Evaluation e = nsl::evaluate(net, data, {batch, 0.1}, [&](nsl::index done, nsl::index total) {
      CHECK(total == 37);
      CHECK(done > last_done);
      last_done = done;
      ++calls;
    });
    CHECK(e.images == 37);
    CHECK(e.correct == expected.correct);
    CHECK(e.accuracy() == doctest::Approx(double(expected.correct) / 37.0));
    CHECK(e.loss == doctest::Approx(expected.loss).epsilon(1e-12));
    CHECK(e.confusion == confusion);
    CHECK(e.class_images(2) == nsl::index(std::count(data.labels.begin(), data.labels.end(), 2)));
    CHECK(last_done == 37);
    CHECK(calls == (37 + batch - 1) / batch + 1);
    CHECK(net.training());  // left as it was
  }
  CHECK_THROWS_AS(nsl::evaluate(net, data, {0, 0.0}), nsl::Error);
}
