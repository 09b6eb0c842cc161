// Built by nsl's consumer tests against an installed or add_subdirectory'd nsl,
// with and without -fno-exceptions: the umbrella header alone must give a
// downstream program the library, and its errors, CNN-9, a training step and
// the zlib-backed checksums must compile and link through nsl::nsl.
#include <nsl/nsl.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#if !NSL_HAS_EXCEPTIONS
namespace {
void report(nsl::ErrorKind kind, const char* message) {
  std::fprintf(stderr, "consumer: %s: %s\n", nsl::to_string(kind), message);
}
}  // namespace
#endif

namespace {
bool all_finite(const nsl::Tensor<float>& t) {
  for (nsl::index i = 0; i < t.size(); ++i)
    if (!std::isfinite(t[i])) return false;
  return true;
}
}  // namespace

int main() {
#if NSL_HAS_EXCEPTIONS
  try {
    nsl::Shape bad{-1};
    std::fprintf(stderr, "consumer: Shape{-1} did not fail (rank %d)\n", bad.rank());
    return 1;
  } catch (const nsl::ShapeError& e) {
    std::printf("caught nsl::ShapeError: %s\n", e.what());
  }
#else
  nsl::set_error_handler(&report);
  std::printf("built without exceptions; error handler installed\n");
#endif

  nsl::set_num_threads(2);
  nsl::Rng rng(42);
  nsl::Tensor<float> t(nsl::Shape{2, 3});
  nsl::fill_normal<float>(t.view(), rng);
  std::printf("sum of 6 normal draws: %f\n", static_cast<double>(t.vec().sum()));

  // A small dynamic-DNS CNN-9 on 2 images of 1 x 16 x 16: forward, loss,
  // backward and one SGD step.
  nsl::Cnn9Options options;
  options.input_size = 16;
  options.widths[0] = 8, options.widths[1] = 8, options.widths[2] = 8;
  nsl::Sequential<float> net = nsl::cnn9<float>(nsl::Variant::dynamic_dns, 1, 3, rng, options);
  const nsl::Shape images{2, 1, 16, 16};
  nsl::Tensor<float> x(images);
  nsl::fill_normal<float>(x.view(), rng);
  const nsl::Tensor<float> logits = net.forward(x);
  if (logits.shape() != nsl::Shape{2, 3, 1, 1} || !all_finite(logits)) {
    std::fprintf(stderr, "consumer: CNN-9 gave %s logits%s\n", logits.shape().str().c_str(),
                 all_finite(logits) ? "" : " with non-finite values");
    return 1;
  }
  nsl::Tensor<float> dlogits(logits.shape());
  const nsl::LossResult loss = nsl::softmax_cross_entropy<float>(logits.view(), {0, 2}, 0.0, dlogits.view());
  nsl::Sgd<float> sgd(net.parameters());
  sgd.zero_gradients();
  const nsl::Tensor<float> dx = net.backward(dlogits);
  sgd.step(0.01);
  if (dx.shape() != images || !all_finite(dx) || !std::isfinite(loss.loss)) {
    std::fprintf(stderr, "consumer: CNN-9 training step went wrong (loss %f)\n", loss.loss);
    return 1;
  }
  std::printf("CNN-9 (%zu layers, dynamic_dns): loss %.4f on 2 images\n", net.size(), loss.loss);

  // The similarity convolution alone, in evaluation mode.
  auto conv = nsl::make_similarity_conv<float>(nsl::Variant::static_uns, 4, 6, nsl::SimilarityConvOptions{}, rng);
  conv->set_training(false);
  nsl::Tensor<float> features(nsl::Shape{1, 4, 5, 5});
  nsl::fill_normal<float>(features.view(), rng);
  const nsl::Tensor<float> y = conv->forward(features);
  if (y.shape() != nsl::Shape{1, 6, 5, 5} || !all_finite(y)) {
    std::fprintf(stderr, "consumer: %s gave %s\n", conv->describe().c_str(), y.shape().str().c_str());
    return 1;
  }
  std::printf("%s: %s -> %s\n", conv->describe().c_str(), features.shape().str().c_str(), y.shape().str().c_str());

  // zlib, through nsl::nsl: the CRC-32 check value.
  const std::string digits = "123456789";
  const std::uint32_t crc = nsl::crc32_of(reinterpret_cast<const unsigned char*>(digits.data()), digits.size());
  std::printf("crc32(\"123456789\") = %s\n", nsl::hex32(crc).c_str());
  return crc == 0xCBF43926u ? 0 : 1;
}
