// nsl_bench — Google Benchmark cases for nsl's similarity layers, CNN-9 and
// a reference Eigen GEMM (see bench/README.md).
//
//   layer/<variant>/fwd_bwd/B32_C64_H16     one 64 -> 64, 3x3, stride 1, 'same' similarity conv on
//                                           32 x 64 x 16 x 16, training mode, forward + full backward
//                                           (input gradient and every parameter gradient, predictor's too)
//   layer/<variant>/fwd/B32_C64_H16         the same layer, forward only (training mode)
//   cnn9/<variant>/train_step/B128_1x28x28  CNN-9 on 128 grey 28x28 images: forward, softmax
//                                           cross-entropy, zero gradients, backward, one SGD step
//   infer/<variant>/B1_1x28x28              the deployed CNN-9 (nsl::deploy: BN folded into the
//   infer/<variant>/B64_1x28x28             convolutions) on 1 or 64 grey 28x28 images: one const
//                                           net.infer(x, y, workspace), the workspace warmed
//   conv3x3/<algo>/<pass>/B64_C<c>_H<h>    one c -> c, 3x3, stride 1, 'same' convolution on 64 x c x h x h
//                                           (CNN-9's three stages: c, h = 32, 28 / 64, 14 / 128, 7):
//                                           pass fwd (algo direct: conv2d_direct_forward_batch, winograd2 / winograd4:
//                                           winograd_conv2d_forward F(2x2) / F(4x4)) or bwd (dx, dw;
//                                           algo gemm: conv2d_backward_gemm, winograd2 / winograd4)
//   peak/fma/f32                            independent float32 FMA chains in registers on every thread: the
//                                           machine's multiply-add ceiling (needs xsimd)
//   gemm/eigen/sgemm/N<n>                   C = A B, n x n float matrices, Eigen's product (the machine's reference speed)
//   gemm/nsl/sgemm/N<n>                     the same product with nsl::gemm (the GEMM of nsl's layers)
//
// Variants: plain, static_dns, static_uns, dynamic_dns, dynamic_uns, dynamic_dns_sphere, built as
// CNN-9 builds its similarity convs (nsl::make_similarity_conv); the infer cases also have
// sphere_attention (CNN-9's attention SphereNet). An infer case's network is CNN-9 with its
// parameters moved off their initial values and BN running statistics gathered from a few
// training-mode forwards on random images (the same seed every time), then deployed.
//
// Counters: GFLOP/s (a rate over real time) from the multiply-adds of the convolutions, the
// predictor's included, at 2 flops per multiply-add; a backward with input gradient counts 2x its
// forward, one without (CNN-9's first conv) 1x; an infer case counts the forward of the undeployed
// network. GFLOP/iter is the per-iteration count, images/s the CNN-9 throughput, latency_ms (B1
// infer cases) the real time of one inference. Element-wise work (BN, ReLU, norms, the patch
// transform of dynamic NSL, the static fold) and the attention blocks are not counted.
//
// Extra flags, removed before Google Benchmark sees the command line:
//   --nsl_threads=N              threads for nsl (nsl::set_num_threads); else $NSL_BENCH_THREADS,
//                                else all cores
//   --nsl_dump=DIR --nsl_case=C  for a layer case C (fwd or fwd_bwd): write x, dy, every parameter,
//                                y, dx and every parameter gradient as .npy files into DIR, then exit
//                                (the correctness check of bench/compare_pytorch.py); for an infer
//                                case: x, every parameter and buffer of the undeployed network, its
//                                logits and the deployed network's as .npy files, and the undeployed
//                                network as the model file model.nslckpt
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "nsl/core/random.hpp"
#include "nsl/core/threads.hpp"
#include "nsl/deploy/deploy.hpp"
#include "nsl/io/model_file.hpp"
#include "nsl/io/npy.hpp"
#include "nsl/models/cnn9.hpp"
#include "nsl/ops/conv2d.hpp"
#include "nsl/ops/winograd.hpp"
#include "nsl/train/loss.hpp"
#include "nsl/train/numerics.hpp"
#include "nsl/train/sgd.hpp"

namespace {

using nsl::index;
using nsl::Shape;
using nsl::Tensor;
using nsl::Variant;

constexpr std::uint64_t kSeed = 20191030;
constexpr index kLayerBatch = 32, kLayerChannels = 64, kLayerSize = 16;
constexpr index kCnnBatch = 128, kCnnChannels = 1, kCnnSize = 28, kCnnClasses = 10;
constexpr double kCnnLearningRate = 0.01;  // small and fixed: many steps on one batch stay finite
constexpr double kCnnSmoothing = 0.01;

const Variant kVariants[] = {Variant::plain,       Variant::static_dns,  Variant::static_uns,
                             Variant::dynamic_dns, Variant::dynamic_uns, Variant::dynamic_dns_sphere};
// Inference covers every CNN-9 variant, the attention SphereNet included.
const Variant kInferVariants[] = {Variant::plain,       Variant::static_dns,         Variant::static_uns,
                                  Variant::dynamic_dns, Variant::dynamic_uns,        Variant::dynamic_dns_sphere,
                                  Variant::sphere_attention};
constexpr index kInferBatches[] = {1, 64};
// BN running statistics of an infer case's network: the debiased average over this many
// training-mode forwards of this many random images (few: the training state they leave in the
// undeployed network counts in the case's peak memory).
constexpr int kStatisticsForwards = 4;
constexpr index kStatisticsBatch = 4;

// ---- work counting ------------------------------------------------------------------------

/// Multiply-adds of a convolution with weight shape O x C x k x k producing `out`.
double conv_macs(const Shape& weight, const Shape& out) {
  return double(out[0]) * double(out[1]) * double(out[2]) * double(out[3]) * double(weight[1]) *
         double(weight[2]) * double(weight[3]);
}

struct Work {
  double forward_macs = 0;
  double backward_macs = 0;
  void add(double macs, bool input_grad) {
    forward_macs += macs;
    backward_macs += input_grad ? 2 * macs : macs;
  }
};

/// Adds the convolution work of `layer` on input shape `in` (with or without an input gradient in
/// backward) to `work`; returns the output shape.
Shape count_work(nsl::Layer<float>& layer, const Shape& in, bool input_grad, Work& work) {
  if (auto* seq = dynamic_cast<nsl::Sequential<float>*>(&layer)) {
    Shape s = in;
    for (std::size_t i = 0; i < seq->size(); ++i) s = count_work(seq->layer(i), s, i > 0 || input_grad, work);
    return s;
  }
  const Shape out = layer.output_shape(in);
  if (auto* conv = dynamic_cast<nsl::Conv2d<float>*>(&layer)) {
    work.add(conv_macs(conv->weight().shape(), out), input_grad);
  } else if (auto* stat = dynamic_cast<nsl::StaticNSConv2d<float>*>(&layer)) {
    work.add(conv_macs(stat->weight().shape(), out), input_grad);
  } else if (auto* sphere = dynamic_cast<nsl::SphereConv2d<float>*>(&layer)) {
    work.add(conv_macs(sphere->weight().shape(), out), input_grad);
  } else if (auto* dyn = dynamic_cast<nsl::DynamicNSConv2d<float>*>(&layer)) {
    work.add(conv_macs(dyn->weight().shape(), out), input_grad);
    count_work(dyn->predictor(), in, input_grad, work);
  } else if (auto* pred = dynamic_cast<nsl::SimilarityPredictor<float>*>(&layer)) {
    const Shape hidden = count_work(pred->conv1(), in, input_grad, work);
    count_work(pred->conv2(), hidden, true, work);
  }
  return out;
}

// ---- parameters as after training ---------------------------------------------------------

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// Moves parameters away from their initial values so that every path carries signal: M of the
/// static variants off the identity (+ 0.3 N(0,1)), BN's gamma and beta off (1, 0) (1 + 0.2 N(0,1),
/// 0.2 N(0,1)), an attention block's gamma off 0, where the block is the identity (0.5 + 0.1 N(0,1)).
void perturb_parameters(const std::vector<nsl::Parameter<float>>& parameters, nsl::Rng& rng) {
  for (const auto& p : parameters) {
    if (p.name == "similarity" || ends_with(p.name, ".similarity")) {
      for (index i = 0; i < p.value.size(); ++i) p.value[i] += float(0.3 * rng.normal());
    } else if (ends_with(p.name, "attention.gamma")) {
      for (index i = 0; i < p.value.size(); ++i) p.value[i] = float(0.5 + 0.1 * rng.normal());
    } else if (ends_with(p.name, ".gamma")) {
      for (index i = 0; i < p.value.size(); ++i) p.value[i] = float(1.0 + 0.2 * rng.normal());
    } else if (ends_with(p.name, ".beta")) {
      for (index i = 0; i < p.value.size(); ++i) p.value[i] = float(0.2 * rng.normal());
    }
  }
}

/// For a dynamic layer whose predictor has no BN to normalise G (dynamic UNS, whose initial conv2
/// makes G tiny): scales the predictor's conv2 so that G has an RMS of 0.25 on input x. Runs
/// `layer`'s forward (training mode updates the predictor's statistics, if any); other layers
/// are left alone.
void scale_unnormalised_predictor(nsl::Layer<float>& layer, const Tensor<float>& x) {
  auto* dyn = dynamic_cast<nsl::DynamicNSConv2d<float>*>(&layer);
  if (!dyn || dyn->predictor().bn2()) return;
  Tensor<float> y(layer.output_shape(x.shape()));
  layer.forward_into(x.view(), y.view());
  const Tensor<float>& g = dyn->predicted_similarity();
  const double rms = std::sqrt(double(g.vec().squaredNorm()) / double(g.size()));
  if (rms > 0) dyn->predictor().conv2().weight().vec() *= float(0.25 / rms);
}

/// Random grey images as nsl-train feeds them: raw pixel values in [0, 255].
Tensor<float> random_images(index batch, nsl::Rng& rng) {
  return nsl::random_uniform<float>(Shape{batch, kCnnChannels, kCnnSize, kCnnSize}, rng, 0.0, 255.0);
}

/// CNN-9 for `v` in the state a trained network would reach deploy() in, always the same for the
/// same generator state: parameters perturbed (perturb_parameters), each dynamic UNS predictor
/// scaled on the activations that reach it, and BN running statistics (the predictors' too) the
/// debiased average of kStatisticsForwards training-mode forwards of random images. Evaluation mode.
nsl::Sequential<float> inference_network(Variant v, nsl::Rng& rng) {
  nsl::Cnn9Options options;
  options.input_size = kCnnSize;
  nsl::Sequential<float> net = nsl::cnn9<float>(v, kCnnChannels, kCnnClasses, rng, options);
  perturb_parameters(net.parameters(), rng);
  net.set_training(true);
  // The first statistics forward goes layer by layer, scaling each predictor on its real input.
  Tensor<float> current = random_images(kStatisticsBatch, rng);
  for (std::size_t i = 0; i < net.size(); ++i) {
    scale_unnormalised_predictor(net.layer(i), current);
    current = net.layer(i).forward(current.view());
  }
  for (int pass = 1; pass < kStatisticsForwards; ++pass) net.forward(random_images(kStatisticsBatch, rng).view());
  net.set_training(false);
  return net;
}

// ---- fixtures -----------------------------------------------------------------------------

/// The state of the case being run, kept across the runs and repetitions of that case (so the
/// warm-up happens once) and released when another case starts (so memory does not pile up).
template <class F>
F& fixture_for(const std::string& name, const std::function<std::unique_ptr<F>()>& make) {
  static std::string current_name;
  static std::shared_ptr<void> current;
  if (current_name != name || !current) {
    current.reset();  // free the previous case first
    current_name.clear();
    std::shared_ptr<F> made = make();
    current = made;
    current_name = name;
  }
  return *static_cast<F*>(current.get());
}

std::unique_ptr<nsl::Layer<float>> make_layer(Variant v, nsl::Rng& rng) {
  const nsl::Cnn9Options options;
  return nsl::make_similarity_conv<float>(v, kLayerChannels, kLayerChannels, options.similarity_conv_options(), rng);
}

struct LayerFixture {
  std::unique_ptr<nsl::Layer<float>> layer;
  Tensor<float> x, y, dy, dx;
  Work work;

  explicit LayerFixture(Variant v) {
    nsl::Rng rng(kSeed);
    layer = make_layer(v, rng);
    layer->set_training(true);
    layer->set_borrowing(true);  // x and y live as long as the fixture
    x = nsl::random_normal<float>(Shape{kLayerBatch, kLayerChannels, kLayerSize, kLayerSize}, rng);
    y = Tensor<float>(layer->output_shape(x.shape()));
    dy = nsl::random_normal<float>(y.shape(), rng);
    dx = Tensor<float>(x.shape());
    count_work(*layer, x.shape(), true, work);
  }
  void forward() { layer->forward_into(x.view(), y.view()); }
  void backward() { layer->backward_into(dy.view(), dx.view()); }
};

struct Cnn9Fixture {
  nsl::Sequential<float> net;
  std::unique_ptr<nsl::Sgd<float>> sgd;
  Tensor<float> x, logits, dlogits;
  std::vector<int> labels;
  Work work;
  double last_loss = 0;

  explicit Cnn9Fixture(Variant v) {
    nsl::Rng rng(kSeed);
    nsl::Cnn9Options options;
    options.input_size = kCnnSize;
    net = nsl::cnn9<float>(v, kCnnChannels, kCnnClasses, rng, options);
    net.set_training(true);
    net.set_borrowing(true);  // x and the logits live as long as the fixture
    sgd = std::make_unique<nsl::Sgd<float>>(net.parameters());
    x = nsl::random_uniform<float>(Shape{kCnnBatch, kCnnChannels, kCnnSize, kCnnSize}, rng, 0.0, 255.0);
    logits = Tensor<float>(net.output_shape(x.shape()));
    dlogits = Tensor<float>(logits.shape());
    for (index n = 0; n < kCnnBatch; ++n) labels.push_back(int(rng.below(kCnnClasses)));
    count_work(net, x.shape(), false, work);  // no gradient for the images
  }
  void step() {
    net.forward_into(x.view(), logits.view());
    last_loss = nsl::softmax_cross_entropy<float>(logits.view(), labels, kCnnSmoothing, dlogits.view()).loss;
    sgd->zero_gradients();
    net.backward_into(dlogits.view(), {});
    sgd->step(kCnnLearningRate);
  }
};

// ---- benchmarks ---------------------------------------------------------------------------

void set_rate_counters(benchmark::State& state, double flops_per_iteration) {
  const double iterations = double(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(flops_per_iteration * iterations * 1e-9, benchmark::Counter::kIsRate);
  state.counters["GFLOP/iter"] = benchmark::Counter(flops_per_iteration * 1e-9);
}

void bm_layer(benchmark::State& state, Variant v, bool backward, const std::string& name) {
  auto& f = fixture_for<LayerFixture>(name, [&] {
    auto made = std::make_unique<LayerFixture>(v);
    made->forward();  // untimed warm-up
    if (backward) made->backward();
    return made;
  });
  for (auto _ : state) {
    f.forward();
    if (backward) f.backward();
    benchmark::DoNotOptimize(f.y.data());
    benchmark::DoNotOptimize(f.dx.data());
    benchmark::ClobberMemory();
  }
  const double macs = f.work.forward_macs + (backward ? f.work.backward_macs : 0.0);
  set_rate_counters(state, 2 * macs);
}

void bm_cnn9(benchmark::State& state, Variant v, const std::string& name) {
  auto& f = fixture_for<Cnn9Fixture>(name, [&] {
    auto made = std::make_unique<Cnn9Fixture>(v);
    made->step();  // untimed warm-up
    return made;
  });
  for (auto _ : state) {
    f.step();
    benchmark::DoNotOptimize(f.logits.data());
    benchmark::ClobberMemory();
  }
  if (!std::isfinite(f.last_loss)) state.SkipWithError("cnn9: the loss is not finite");
  set_rate_counters(state, 2 * (f.work.forward_macs + f.work.backward_macs));
  state.counters["images/s"] = benchmark::Counter(double(kCnnBatch) * double(state.iterations()),
                                                  benchmark::Counter::kIsRate);
}

/// check_numerics after a CNN-9 training step (nsl-train's --check-numerics): the summed squares
/// of every gradient, and the loss looked at. Its time over the train_step case's is its cost.
void bm_check_numerics(benchmark::State& state, Variant v, const std::string& name) {
  auto& f = fixture_for<Cnn9Fixture>(name, [&] {
    auto made = std::make_unique<Cnn9Fixture>(v);
    made->step();  // outputs and gradients to check
    return made;
  });
  const std::vector<nsl::Parameter<float>> params = f.net.parameters();
  double norm = 0.0;
  for (auto _ : state) {
    norm = nsl::check_numerics<float, nsl::Cpu>(f.net, f.logits.view(), f.last_loss, params, 1);
    benchmark::DoNotOptimize(norm);
  }
  double count = 0.0;
  for (const auto& p : params) count += double(p.grad.size());
  state.counters["gradients"] = benchmark::Counter(count);
}

/// An infer case: the deployed network of `inference_network`, its caller-owned workspace and a
/// batch of random images.
struct InferFixture {
  nsl::Sequential<float> deployed;
  nsl::InferenceWorkspace workspace;
  Tensor<float> x, y;
  Work work;

  InferFixture(Variant v, index batch) {
    nsl::Rng rng(kSeed);
    nsl::Sequential<float> net = inference_network(v, rng);
    x = random_images(batch, rng);
    count_work(net, x.shape(), false, work);  // the undeployed network's convolutions
    deployed = nsl::deploy(net);              // the network itself is not needed any more
    y = Tensor<float>(deployed.output_shape(x.shape()));
  }
  void run() { deployed.infer(x.view(), y.view(), workspace); }
};

void bm_infer(benchmark::State& state, Variant v, index batch, const std::string& name) {
  auto& f = fixture_for<InferFixture>(name, [&] {
    auto made = std::make_unique<InferFixture>(v, batch);
    made->run();  // untimed warm-up: the workspace grows to this shape, later runs allocate nothing
    return made;
  });
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    f.run();
    benchmark::DoNotOptimize(f.y.data());
    benchmark::ClobberMemory();
  }
  const std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - start;
  if (!f.y.vec().allFinite()) state.SkipWithError("infer: the logits are not finite");
  set_rate_counters(state, 2 * f.work.forward_macs);
  const double iterations = double(state.iterations());
  state.counters["images/s"] = benchmark::Counter(double(batch) * iterations, benchmark::Counter::kIsRate);
  // One image's latency: the loop's real time per iteration, in ms (a plain number, so that the
  // console does not print it as a rate).
  if (batch == 1) state.counters["latency_ms"] = benchmark::Counter(elapsed.count() / iterations);
}

struct GemmFixture {
  Eigen::MatrixXf a, b, c;
  bool with_nsl;
  nsl::GemmScratch<float> scratch;
  GemmFixture(index n, bool nsl_gemm)
      : a(Eigen::MatrixXf::Random(n, n)), b(Eigen::MatrixXf::Random(n, n)), c(n, n), with_nsl(nsl_gemm) {}
  void run() {
    // Column-major C = A B is row-major C^T = B^T A^T: nsl::gemm on the row-major views.
    if (with_nsl) nsl::gemm<float>(false, false, c.cols(), c.rows(), a.cols(), b.data(), a.data(), 0.0f, c.data(), scratch);
    else c.noalias() = a * b;
  }
};

void bm_gemm(benchmark::State& state, index n, bool nsl_gemm, const std::string& name) {
  auto& f = fixture_for<GemmFixture>(name, [&] {
    auto made = std::make_unique<GemmFixture>(n, nsl_gemm);
    made->run();  // untimed warm-up
    return made;
  });
  for (auto _ : state) {
    f.run();
    benchmark::DoNotOptimize(f.c.data());
    benchmark::ClobberMemory();
  }
  set_rate_counters(state, 2.0 * double(n) * double(n) * double(n));
}

// The machine's float32 multiply-add rate: each thread runs independent FMA chains on as many
// SIMD registers as the ISA has to spare (enough in flight to cover the FMA latency on every
// pipe), no memory traffic. The ceiling the convolution rates are read against.
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
#if defined(__AVX512F__)
constexpr int kPeakChains = 24;  // of 32 registers
#else
constexpr int kPeakChains = 12;  // of 16 registers
#endif
constexpr long kPeakSteps = 1L << 20;

float fma_chains() {
  using Batch = xsimd::batch<float>;
  Batch acc[kPeakChains];
  for (int j = 0; j < kPeakChains; ++j) acc[j] = Batch(float(j) * 1e-3f);
  const Batch a(0.999f), b(1e-3f);  // acc -> b / (1 - a): no overflow, no subnormals
  for (long step = 0; step < kPeakSteps; ++step) {
#pragma GCC unroll 32  // unrolled whole, the chains live in registers
    for (int j = 0; j < kPeakChains; ++j) acc[j] = xsimd::fma(acc[j], a, b);
  }
  Batch sum = acc[0];
  for (int j = 1; j < kPeakChains; ++j) sum += acc[j];
  return xsimd::hadd(sum);
}

void bm_peak(benchmark::State& state) {
  const int threads = nsl::num_threads();
  std::vector<float> sink(std::size_t(threads), 0.0f);
  for (auto _ : state) {
    NSL_OMP(parallel for num_threads(threads) schedule(static))
    for (int t = 0; t < threads; ++t) sink[std::size_t(t)] += fma_chains();
    benchmark::DoNotOptimize(sink.data());
  }
  const double lanes = double(xsimd::batch<float>::size);
  set_rate_counters(state, 2.0 * double(threads) * double(kPeakSteps) * kPeakChains * lanes);
}
#else
void bm_peak(benchmark::State& state) {
  state.SkipWithError("the FMA peak case needs xsimd (NSL_HAVE_XSIMD)");
  for (auto _ : state) {
  }
}
#endif

struct Conv3x3Fixture {
  Tensor<float> x, w, y, dy, dx, dw;
  nsl::ConvGeometry g{3, 1, 1};
  nsl::Conv2dWorkspace<float> conv;
  nsl::WinogradWorkspace<float> winograd;
  std::string algo;
  bool backward;
  Conv3x3Fixture(index channels, index size, std::string algorithm, bool with_backward)
      : algo(std::move(algorithm)), backward(with_backward) {
    nsl::Rng rng(5);
    x = nsl::random_normal<float>(Shape{64, channels, size, size}, rng);
    w = nsl::random_normal<float>(Shape{channels, channels, 3, 3}, rng);
    dy = nsl::random_normal<float>(Shape{64, channels, size, size}, rng);
    y = Tensor<float>(dy.shape());
    dx = Tensor<float>(x.shape());
    dw = Tensor<float>(w.shape());
  }
  void run() {
    if (!backward) {
      if (algo == "direct")
        nsl::conv2d_direct_forward_batch<float>(x.data(), x.dim(0), x.dim(1), x.dim(2), x.dim(3), w.data(), w.dim(0),
                                                nullptr, g, y.data(), conv.direct);
      else if (algo == "winograd2") nsl::winograd_conv2d_forward<float, 2>(x.view(), w.view(), {}, g, y.view(), winograd);
      else nsl::winograd_conv2d_forward<float, 4>(x.view(), w.view(), {}, g, y.view(), winograd);
    } else if (algo == "gemm") {
      nsl::conv2d_backward_gemm<float>(x.view(), w.view(), g, dy.view(), dx.view(), dw.view(), {}, conv);
    } else if (algo == "winograd2") {
      nsl::winograd_conv2d_backward<float, 2>(x.view(), w.view(), g, dy.view(), dx.view(), dw.view(), {}, winograd);
    } else {
      nsl::winograd_conv2d_backward<float, 4>(x.view(), w.view(), g, dy.view(), dx.view(), dw.view(), {}, winograd);
    }
  }
};

void bm_conv3x3(benchmark::State& state, index channels, index size, const std::string& algo, bool backward,
                const std::string& name) {
  auto& f = fixture_for<Conv3x3Fixture>(name, [&] {
    auto made = std::make_unique<Conv3x3Fixture>(channels, size, algo, backward);
    made->run();  // untimed warm-up: the workspaces grow
    return made;
  });
  for (auto _ : state) {
    f.run();
    benchmark::ClobberMemory();
  }
  const double forward = 2.0 * 64 * double(channels * channels) * 9 * double(size * size);
  set_rate_counters(state, backward ? 2 * forward : forward);
}

std::string layer_name(Variant v, bool backward) {
  return nsl::cat("layer/", nsl::to_string(v), backward ? "/fwd_bwd/" : "/fwd/", "B", kLayerBatch, "_C",
                  kLayerChannels, "_H", kLayerSize);
}
std::string cnn9_name(Variant v) {
  return nsl::cat("cnn9/", nsl::to_string(v), "/train_step/B", kCnnBatch, "_", kCnnChannels, "x", kCnnSize, "x",
                  kCnnSize);
}
std::string infer_name(Variant v, index batch) {
  return nsl::cat("infer/", nsl::to_string(v), "/B", batch, "_", kCnnChannels, "x", kCnnSize, "x", kCnnSize);
}

void register_all() {
  for (Variant v : kVariants)
    for (bool backward : {true, false}) {
      const std::string name = layer_name(v, backward);
      benchmark::RegisterBenchmark(name.c_str(), [v, backward, name](benchmark::State& s) {
        bm_layer(s, v, backward, name);
      })->Unit(benchmark::kMillisecond)->UseRealTime();
    }
  for (Variant v : kVariants) {
    const std::string name = cnn9_name(v);
    benchmark::RegisterBenchmark(name.c_str(), [v, name](benchmark::State& s) { bm_cnn9(s, v, name); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  for (Variant v : {Variant::plain, Variant::dynamic_dns}) {
    const std::string name = nsl::cat("cnn9/", nsl::to_string(v), "/check_numerics/B", kCnnBatch, "_", kCnnChannels,
                                      "x", kCnnSize, "x", kCnnSize);
    benchmark::RegisterBenchmark(name.c_str(), [v, name](benchmark::State& s) { bm_check_numerics(s, v, name); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  for (Variant v : kInferVariants)
    for (index batch : kInferBatches) {
      const std::string name = infer_name(v, batch);
      benchmark::RegisterBenchmark(name.c_str(), [v, batch, name](benchmark::State& s) {
        bm_infer(s, v, batch, name);
      })->Unit(benchmark::kMillisecond)->UseRealTime();
    }
  for (bool backward : {false, true})
    for (const auto& [channels, size] : {std::pair<index, index>{32, 28}, {64, 14}, {128, 7}})
      for (const char* algo : {backward ? "gemm" : "direct", "winograd2", "winograd4"}) {
        const std::string name = nsl::cat("conv3x3/", algo, backward ? "/bwd/" : "/fwd/", "B64_C", channels, "_H", size);
        const std::string a = algo;
        benchmark::RegisterBenchmark(name.c_str(), [channels = channels, size = size, a, backward, name](
                                                       benchmark::State& s) {
          bm_conv3x3(s, channels, size, a, backward, name);
        })->Unit(benchmark::kMillisecond)->UseRealTime();
      }
  benchmark::RegisterBenchmark("peak/fma/f32", bm_peak)->Unit(benchmark::kMillisecond)->UseRealTime();
  for (bool nsl_gemm : {false, true})
    for (index n : {index(1024), index(2048)}) {
      const std::string name = nsl::cat("gemm/", nsl_gemm ? "nsl" : "eigen", "/sgemm/N", n);
      benchmark::RegisterBenchmark(name.c_str(), [n, nsl_gemm, name](benchmark::State& s) {
        bm_gemm(s, n, nsl_gemm, name);
      })->Unit(benchmark::kMillisecond)->UseRealTime();
    }
}

// ---- the dump for the correctness check ----------------------------------------------------

std::string file_stem(std::string name) {
  for (char& c : name)
    if (c == '.') c = '_';
  return name;
}

/// Moves the parameters of a layer case's layer away from their initial values (see
/// `perturb_parameters`), the dynamic UNS predictor scaled on x.
void perturb_for_check(nsl::Layer<float>& layer, const Tensor<float>& x, nsl::Rng& rng) {
  perturb_parameters(layer.parameters(), rng);
  scale_unnormalised_predictor(layer, x);
}

/// A layer case: x, dy, every parameter, y, dx and every parameter gradient (training mode).
void dump_layer_case(const std::string& dir, const std::string& case_name, Variant variant) {
  nsl::Rng rng(kSeed);
  auto layer = make_layer(variant, rng);
  layer->set_training(true);
  const auto x = nsl::random_normal<float>(Shape{kLayerBatch, kLayerChannels, kLayerSize, kLayerSize}, rng);
  perturb_for_check(*layer, x, rng);
  const auto dy = nsl::random_normal<float>(layer->output_shape(x.shape()), rng);
  nsl::zero_gradients(layer->parameters());

  nsl::save_npy(dir + "/x.npy", x);
  nsl::save_npy(dir + "/dy.npy", dy);
  for (auto& p : layer->parameters()) nsl::save_npy(dir + "/" + file_stem(p.name) + ".npy", p.value);
  const Tensor<float> y = layer->forward(x.view());
  const Tensor<float> dx = layer->backward(dy.view());
  nsl::save_npy(dir + "/y.npy", y);
  nsl::save_npy(dir + "/dx.npy", dx);
  std::ofstream manifest(dir + "/parameters.txt");
  for (auto& p : layer->parameters()) {
    nsl::save_npy(dir + "/d_" + file_stem(p.name) + ".npy", p.grad);
    manifest << p.name << ' ' << file_stem(p.name) << ' ' << p.value.shape() << '\n';
  }
  std::ofstream(dir + "/case.txt") << case_name << '\n' << nsl::to_string(variant) << '\n' << layer->describe() << '\n';
}

/// An infer case: the network of the benchmark (undeployed) as the model file model.nslckpt and
/// as .npy files (every parameter and buffer, listed in parameters.txt and buffers.txt), x, the
/// undeployed network's logits (y_undeployed) and the deployed network's (y), both by infer.
void dump_infer_case(const std::string& dir, const std::string& case_name, Variant variant, index batch) {
  nsl::Rng rng(kSeed);
  nsl::ModelSpec spec;
  spec.network = nsl::Network::cnn9;
  spec.variant = variant;
  spec.in_channels = kCnnChannels;
  spec.input_size = kCnnSize;
  spec.classes = kCnnClasses;
  spec.dataset = "fashion-mnist";
  nsl::Model<float> model{spec, inference_network(variant, rng), nullptr};
  const Tensor<float> x = random_images(batch, rng);  // as InferFixture draws it
  nsl::save_model(dir + "/model.nslckpt", model);

  nsl::save_npy(dir + "/x.npy", x);
  std::ofstream parameters(dir + "/parameters.txt");
  for (auto& p : model.network.parameters()) {
    nsl::save_npy(dir + "/" + file_stem(p.name) + ".npy", p.value);
    parameters << p.name << ' ' << file_stem(p.name) << ' ' << p.value.shape() << '\n';
  }
  std::ofstream buffers(dir + "/buffers.txt");
  for (auto& b : model.network.buffers()) {
    nsl::save_npy(dir + "/" + file_stem(b.name) + ".npy", b.value);
    buffers << b.name << ' ' << file_stem(b.name) << ' ' << b.value.shape() << '\n';
  }
  nsl::InferenceWorkspace workspace;
  nsl::save_npy(dir + "/y_undeployed.npy", model.network.infer(x.view(), workspace));
  const nsl::Sequential<float> deployed = nsl::deploy(model.network);
  nsl::InferenceWorkspace deployed_workspace;
  nsl::save_npy(dir + "/y.npy", deployed.infer(x.view(), deployed_workspace));
  std::ofstream(dir + "/case.txt") << case_name << '\n' << nsl::to_string(variant) << '\n'
                                   << deployed.describe() << '\n';
}

int dump_case(const std::string& dir, const std::string& case_name) {
  for (Variant v : kVariants)
    for (bool backward : {true, false})
      if (case_name == layer_name(v, backward)) {
        std::filesystem::create_directories(dir);
        dump_layer_case(dir, case_name, v);
        std::printf("nsl_bench: wrote %s to %s\n", case_name.c_str(), dir.c_str());
        return 0;
      }
  for (Variant v : kInferVariants)
    for (index batch : kInferBatches)
      if (case_name == infer_name(v, batch)) {
        std::filesystem::create_directories(dir);
        dump_infer_case(dir, case_name, v, batch);
        std::printf("nsl_bench: wrote %s to %s\n", case_name.c_str(), dir.c_str());
        return 0;
      }
  std::fprintf(stderr, "nsl_bench: --nsl_case: '%s' is neither a layer nor an infer case (expected e.g. %s or %s)\n",
               case_name.c_str(), layer_name(Variant::plain, true).c_str(), infer_name(Variant::plain, 1).c_str());
  return 2;
}

// ---- command line ----------------------------------------------------------------------------

/// Removes `--<flag>=value` from argv (returns true and the value when present).
bool take_flag(int& argc, char** argv, const std::string& flag, std::string& value) {
  const std::string prefix = "--" + flag + "=";
  bool found = false;
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.compare(0, prefix.size(), prefix) == 0) {
      value = arg.substr(prefix.size());
      found = true;
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  argv[argc] = nullptr;
  return found;
}

int parse_threads(const std::string& text, const char* where) {
  char* end = nullptr;
  const long n = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || n < 1 || n > 4096) {
    std::fprintf(stderr, "nsl_bench: %s: expected a thread count >= 1, got '%s'\n", where, text.c_str());
    std::exit(2);
  }
  return int(n);
}

/// The processor's model name (/proc/cpuinfo), or "unknown".
std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  return "unknown";
}

/// The instruction-set path this build of nsl takes: its SIMD target, the GEMM's register tile
/// and the 3x3 convolution's algorithms on CNN-9's shapes.
std::string nsl_isa_path() {
  const nsl::ConvGeometry g3{3, 1, 1};
  const auto conv = [&](bool winograd, const char* other) { return winograd ? "Winograd F(2x2,3x3)" : other; };
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
  const auto tile = nsl::gemm_register_tile<float>();
  std::string path = nsl::cat("xsimd ", xsimd::default_arch::name(), ", nsl::gemm tile ", tile.first, "x", tile.second,
                              " floats");
#else
  std::string path = "no xsimd: nsl::gemm runs Eigen's kernel (" + std::string(Eigen::SimdInstructionSetsInUse()) + ")";
#endif
  return nsl::cat(path, "; 3x3 stride-1 conv, 64 images, 64 -> 64: forward ",
                  conv(nsl::conv2d_forward_uses_winograd(64, 64, 64, g3), "direct"), ", gradients ",
                  conv(nsl::conv2d_backward_uses_winograd(64, 64, 64, g3), "patch-matrix GEMM"));
}

}  // namespace

#ifdef NSL_BENCH_HAVE_ONEDNN
void register_onednn_cases();  // bench/onednn_peer.cpp
#endif

int main(int argc, char** argv) {
  try {
    std::string threads_text, dump_dir, dump_case_name;
    int threads = int(std::max(1u, std::thread::hardware_concurrency()));
    if (take_flag(argc, argv, "nsl_threads", threads_text)) {
      threads = parse_threads(threads_text, "--nsl_threads");
    } else if (const char* env = std::getenv("NSL_BENCH_THREADS"); env && *env) {
      threads = parse_threads(env, "NSL_BENCH_THREADS");
    }
    const bool dump = take_flag(argc, argv, "nsl_dump", dump_dir);
    const bool have_case = take_flag(argc, argv, "nsl_case", dump_case_name);
    nsl::set_num_threads(threads);
    if (dump || have_case) {
      if (!dump || !have_case) {
        std::fprintf(stderr, "nsl_bench: --nsl_dump=DIR and --nsl_case=NAME go together\n");
        return 2;
      }
      return dump_case(dump_dir, dump_case_name);
    }

    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::AddCustomContext("nsl_threads", std::to_string(nsl::num_threads()));
    benchmark::AddCustomContext("eigen_simd", Eigen::SimdInstructionSetsInUse());
    benchmark::AddCustomContext("cpu_model", cpu_model());
    benchmark::AddCustomContext("nsl_isa_path", nsl_isa_path());
    {  // the conv3x3 case that matches what CNN-9's 3x3 layers run (bench/compare_onednn.py)
      const nsl::ConvGeometry g3{3, 1, 1};
      benchmark::AddCustomContext("nsl_conv3x3_fwd",
                                  nsl::conv2d_forward_uses_winograd(32, 32, 64, g3) ? "winograd2" : "direct");
      benchmark::AddCustomContext("nsl_conv3x3_bwd",
                                  nsl::conv2d_backward_uses_winograd(32, 32, 64, g3) ? "winograd2" : "gemm");
    }
#ifdef NSL_BENCH_HAVE_ONEDNN
    benchmark::AddCustomContext("onednn", "on");
#else
    benchmark::AddCustomContext("onednn", "off (libdnnl-dev not found)");
#endif
#ifdef _OPENMP
    benchmark::AddCustomContext("nsl_openmp", "on");
#else
    benchmark::AddCustomContext("nsl_openmp", "off");
#endif
    register_all();
#ifdef NSL_BENCH_HAVE_ONEDNN
    register_onednn_cases();
#endif
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nsl_bench: %s\n", e.what());
    return 1;
  }
}
