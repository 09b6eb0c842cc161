// A dynamic layer's forward + backward allocates O(B (C K + K*K) H W) floats,
// never the B x K x K x C x H x W tensor of a naive implementation.
#include <doctest/doctest.h>

#include <cstdio>

#include "counting_malloc.hpp"
#include "nsl/layers/dynamic_ns_conv2d.hpp"

namespace {
// Extra heap bytes at the peak of one forward + backward (the first call,
// which also sizes every workspace), outputs and gradients included.
long long peak_bytes_of_one_step(nsl::DynamicNSConv2d<float>& layer, const nsl::Tensor<float>& x) {
  nsl::test::reset_heap_peak();
  const long long before = nsl::test::heap_in_use();
  {
    const nsl::Tensor<float> y = layer.forward(x);
    const nsl::Tensor<float> dx = layer.backward(y);
  }
  return nsl::test::heap_peak() - before;
}
}  // namespace

TEST_CASE("peak extra memory of a dynamic layer's forward+backward is O(B (CK + K^2) H W), far below B K^2 C H W") {
  nsl::set_num_threads(2);
  const nsl::index B = 16, C = 64, O = 64, H = 16, W = 16, k = 3, K = k * k;
  nsl::Rng rng(1);
  const auto x = nsl::random_normal<float>(nsl::Shape{B, C, H, W}, rng);
  struct Case {
    const char* name;
    nsl::Structure structure;
    nsl::PredictorOptions predictor;
  };
  for (const Case& c : {Case{"dynamic DNS", nsl::Structure::diagonal, nsl::PredictorOptions::dns()},
                        Case{"dynamic UNS", nsl::Structure::channel_shared, nsl::PredictorOptions::uns()}}) {
    CAPTURE(c.name);
    nsl::DynamicNSConv2d<float> layer(C, O, k, c.structure, {1, false, c.predictor}, rng);
    const long long bytes = peak_bytes_of_one_step(layer, x);
    const double unit = double(B) * double(C * K + K * K) * double(H * W) * sizeof(float);
    const double naive = double(B) * double(K * K) * double(C) * double(H * W) * sizeof(float);
    std::printf("%s: peak extra %.2f MB = %.2f x B(CK+K^2)HW floats; a B x K x K x C x H x W tensor is %.2f MB\n",
                c.name, bytes / 1e6, bytes / unit, naive / 1e6);
    CHECK(bytes > 0);
    CHECK(bytes < 4.0 * unit);
    CHECK(bytes < 0.5 * naive);
    // A second step reuses the workspaces: it needs no more than the first.
    CHECK(peak_bytes_of_one_step(layer, x) <= bytes);
  }
}
