// nsl_bench_cuda — the nsl_bench workloads on the GPU (bench/README.md):
//
//   layer/<variant>/fwd_bwd/B32_C64_H16     one 64 -> 64 similarity conv, training mode, forward + full backward
//   layer/<variant>/fwd/B32_C64_H16         the same layer, forward only
//   cnn9/<variant>/train_step/B128_1x28x28  CNN-9: forward, softmax cross-entropy, backward, one SGD step
//
// A plain executable (no Google Benchmark, which a GPU machine may lack):
// each case runs `--warmup` untimed iterations, then `--repetitions` timed
// runs of enough iterations to last `--min-time` seconds, each ended by a
// device synchronisation; it prints one JSON object per case with the
// median seconds per iteration:
//
//   {"case": "layer/plain/fwd_bwd/B32_C64_H16", "seconds": 0.00041, "iterations": 250}
//
//   nsl_bench_cuda [--filter REGEX] [--warmup N] [--repetitions N] [--min-time S]
// bench/compare_pytorch_cuda.py runs it beside PyTorch on CUDA.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "nsl/cuda/cuda.cuh"
#include "nsl/models/cnn9.hpp"
#include "nsl/train/loss.hpp"
#include "nsl/train/sgd.hpp"

namespace {

using nsl::Cuda;
using nsl::index;
using nsl::Shape;
using nsl::Tensor;
using nsl::Variant;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kSeed = 20191030;  // as nsl_bench
constexpr index kLayerBatch = 32, kLayerChannels = 64, kLayerSize = 16;
constexpr index kCnnBatch = 128, kCnnChannels = 1, kCnnSize = 28, kCnnClasses = 10;
constexpr double kCnnLearningRate = 0.01, kCnnSmoothing = 0.01;

const Variant kVariants[] = {Variant::plain,       Variant::static_dns,  Variant::static_uns,
                             Variant::dynamic_dns, Variant::dynamic_uns, Variant::dynamic_dns_sphere};

struct Settings {
  std::string filter = ".";
  int warmup = 10;
  int repetitions = 5;
  double min_time = 0.5;
};

// Median over repetitions of the mean seconds per iteration of `step`.
template <class Step>
void time_case(const std::string& name, const Settings& s, Step&& step) {
  for (int i = 0; i < s.warmup; ++i) step();
  nsl::cuda::synchronize(name.c_str());
  auto seconds_for = [&](int n) {
    const auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) step();
    nsl::cuda::synchronize(name.c_str());
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  const double once = seconds_for(1);
  const int n = std::max(1, static_cast<int>(s.min_time / std::max(once, 1e-6)));
  std::vector<double> samples;
  for (int r = 0; r < s.repetitions; ++r) samples.push_back(seconds_for(n) / n);
  std::sort(samples.begin(), samples.end());
  std::printf("{\"case\": \"%s\", \"seconds\": %.9g, \"iterations\": %d}\n", name.c_str(),
              samples[samples.size() / 2], n);
  std::fflush(stdout);
}

void layer_cases(const Settings& s, const std::regex& filter) {
  for (Variant v : kVariants) {
    for (bool backward : {true, false}) {
      const std::string name = nsl::cat("layer/", nsl::to_string(v), backward ? "/fwd_bwd/" : "/fwd/", "B",
                                        kLayerBatch, "_C", kLayerChannels, "_H", kLayerSize);
      if (!std::regex_search(name, filter)) continue;
      nsl::Rng rng(kSeed);
      const nsl::Cnn9Options options;
      std::unique_ptr<nsl::Layer<float, Cuda>> layer =
          nsl::make_similarity_conv<float, Cuda>(v, kLayerChannels, kLayerChannels, options.similarity_conv_options(), rng);
      const Shape in{kLayerBatch, kLayerChannels, kLayerSize, kLayerSize};
      Tensor<float, Cuda> x(in), y(layer->output_shape(in)), dy(y.shape()), dx(in);
      nsl::fill_normal<float>(x.view(), rng);
      nsl::fill_normal<float>(dy.view(), rng);
      time_case(name, s, [&] {
        layer->forward_into(x.view(), y.view());
        if (backward) {
          nsl::zero_gradients(layer->parameters());
          layer->backward_into(dy.view(), dx.view());
        }
      });
    }
  }
}

void cnn9_cases(const Settings& s, const std::regex& filter) {
  for (Variant v : kVariants) {
    const std::string name = nsl::cat("cnn9/", nsl::to_string(v), "/train_step/B", kCnnBatch, "_", kCnnChannels,
                                      "x", kCnnSize, "x", kCnnSize);
    if (!std::regex_search(name, filter)) continue;
    nsl::Rng rng(kSeed);
    nsl::Cnn9Options options;
    options.input_size = kCnnSize;
    nsl::Sequential<float, Cuda> net = nsl::cnn9<float, Cuda>(v, kCnnChannels, kCnnClasses, rng, options);
    net.set_borrowing(true);
    nsl::Sgd<float, Cuda> sgd(net.parameters());
    const Shape in{kCnnBatch, kCnnChannels, kCnnSize, kCnnSize};
    Tensor<float, Cuda> x(in), logits(net.output_shape(in)), dlogits(logits.shape());
    nsl::fill_uniform<float>(x.view(), rng, 0.0, 255.0);
    std::vector<int> labels(static_cast<std::size_t>(kCnnBatch));
    for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int>(i % kCnnClasses);
    nsl::CrossEntropyWorkspace<float> loss_workspace;
    time_case(name, s, [&] {
      net.forward_into(x.view(), logits.view());
      (void)nsl::softmax_cross_entropy<float>(logits.view(), labels, kCnnSmoothing, dlogits.view(), loss_workspace);
      sgd.zero_gradients();
      net.backward_into(dlogits.view(), {});
      sgd.step(kCnnLearningRate);
    });
  }
}

int run(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      nsl::require(i + 1 < argc, nsl::ErrorKind::argument, arg, " needs a value");
      return argv[++i];
    };
    if (arg == "--filter") s.filter = value();
    else if (arg == "--warmup") s.warmup = std::stoi(value());
    else if (arg == "--repetitions") s.repetitions = std::stoi(value());
    else if (arg == "--min-time") s.min_time = std::stod(value());
    else nsl::fail(nsl::ErrorKind::argument, nsl::cat("unknown argument '", arg,
                                                       "' (--filter, --warmup, --repetitions, --min-time)"));
  }
  nsl::require(s.warmup >= 0 && s.repetitions >= 1 && s.min_time > 0, nsl::ErrorKind::argument,
               "expected --warmup >= 0, --repetitions >= 1, --min-time > 0");
  nsl::cuda::require_device("the GPU");
  std::fprintf(stderr, "nsl_bench_cuda: %s\n", nsl::cuda::device_description().c_str());
  const std::regex filter(s.filter);
  layer_cases(s, filter);
  cnn9_cases(s, filter);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nsl_bench_cuda: %s\n", e.what());
    return 1;
  }
}
