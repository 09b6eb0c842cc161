// oneDNN's convolutions called directly from C++, beside nsl's cases in nsl_bench: the library
// PyTorch's CPU convolutions run on, without a framework around it. Compiled into nsl_bench when
// CMake finds oneDNN (Debian's libdnnl-dev; NSL_BENCH_HAVE_ONEDNN), absent otherwise.
//
//   onednn/<algo>/conv3x3/<pass>/B64_C<c>_H<h>         the workload of nsl_bench's conv3x3/<...>/<pass>/...
//                                                      cases: fwd y = conv(x, w); bwd dx and dw
//   onednn/<algo>/layer/plain/<fwd|fwd_bwd>/B32_C64_H16 the workload of layer/plain/...: 64 -> 64, 3x3,
//                                                      'same', no bias; fwd_bwd adds dx and dw
//
// algo: direct (oneDNN's convolution_direct) or winograd (convolution_winograd, which oneDNN
// implements for float32 only with AVX-512; elsewhere the case reports that it was not offered).
// Every tensor is in the layout oneDNN chooses for the primitive (format_tag::any, blocked
// channels on AVX2 and AVX-512) and is laid out once, before timing; scratchpads are owned by
// the case, so an iteration is the primitives' own work alone. This is oneDNN at its best: a
// framework calling it on NCHW tensors pays reorders on top. The case's label names the
// implementation oneDNN picked (e.g. jit:avx512_core). Before timing, y (and dx, dw) are checked
// against nsl's convolution on the same data; a case whose results differ by more than 1e-3 of
// max |value| stops with an error.
#ifdef NSL_BENCH_HAVE_ONEDNN

#include <benchmark/benchmark.h>

#include <dnnl.hpp>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nsl/core/random.hpp"
#include "nsl/ops/conv2d.hpp"

namespace {

using nsl::index;
using nsl::Shape;
using nsl::Tensor;
using tag = dnnl::memory::format_tag;

/// One convolution c -> c, 3x3, stride 1, padding 1, no bias, on batch x c x size x size, as
/// oneDNN primitives (forward; with `backward` also backward-data and backward-weights), with
/// the data nsl's cases would use laid out in oneDNN's chosen formats.
struct OnednnConv {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  bool time_forward, backward;  // what run() executes
  std::string impl;  // what oneDNN picked, e.g. "jit:avx512_core"
  dnnl::convolution_forward forward;
  dnnl::convolution_backward_data backward_data;
  dnnl::convolution_backward_weights backward_weights;
  dnnl::memory x, w, y, dy, dx, dw, w_for_data;
  dnnl::memory scratch_forward, scratch_data, scratch_weights;
  Tensor<float> x_nchw, w_oihw, dy_nchw;

  OnednnConv(index batch, index channels, index size, dnnl::algorithm algo, bool with_forward, bool with_backward,
             dnnl::prop_kind prop)
      : time_forward(with_forward), backward(with_backward) {
    const dnnl::memory::dims act{batch, channels, size, size}, wei{channels, channels, 3, 3};
    const dnnl::memory::dims stride{1, 1}, pad{1, 1};
    auto any = [](const dnnl::memory::dims& d) { return dnnl::memory::desc(d, dnnl::memory::data_type::f32, tag::any); };
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);

    // Throws dnnl::error (status unimplemented) where oneDNN has no such algorithm here.
    const dnnl::convolution_forward::primitive_desc fwd_pd(
        dnnl::convolution_forward::desc(prop, algo, any(act), any(wei), any(act), stride, pad, pad), attr, engine);
    forward = dnnl::convolution_forward(fwd_pd);
    impl = fwd_pd.impl_info_str();
    x = dnnl::memory(fwd_pd.src_desc(), engine);
    w = dnnl::memory(fwd_pd.weights_desc(), engine);
    y = dnnl::memory(fwd_pd.dst_desc(), engine);
    scratch_forward = dnnl::memory(fwd_pd.scratchpad_desc(), engine);

    nsl::Rng rng(5);
    x_nchw = nsl::random_normal<float>(Shape{batch, channels, size, size}, rng);
    w_oihw = nsl::random_normal<float>(Shape{channels, channels, 3, 3}, rng);
    dy_nchw = nsl::random_normal<float>(Shape{batch, channels, size, size}, rng);
    import(x_nchw, act, tag::nchw, x);
    import(w_oihw, wei, tag::oihw, w);

    if (backward) {
      const dnnl::convolution_backward_data::primitive_desc data_pd(
          dnnl::convolution_backward_data::desc(algo, any(act), any(wei), any(act), stride, pad, pad), attr, engine,
          fwd_pd);
      const dnnl::convolution_backward_weights::primitive_desc weights_pd(
          dnnl::convolution_backward_weights::desc(algo, any(act), any(wei), any(act), stride, pad, pad), attr, engine,
          fwd_pd);
      backward_data = dnnl::convolution_backward_data(data_pd);
      backward_weights = dnnl::convolution_backward_weights(weights_pd);
      impl += std::string(", ") + data_pd.impl_info_str() + ", " + weights_pd.impl_info_str();
      dx = dnnl::memory(data_pd.diff_src_desc(), engine);
      dy = dnnl::memory(data_pd.diff_dst_desc(), engine);
      dw = dnnl::memory(weights_pd.diff_weights_desc(), engine);
      w_for_data = dnnl::memory(data_pd.weights_desc(), engine);
      scratch_data = dnnl::memory(data_pd.scratchpad_desc(), engine);
      scratch_weights = dnnl::memory(weights_pd.scratchpad_desc(), engine);
      import(dy_nchw, act, tag::nchw, dy);
      import(w_oihw, wei, tag::oihw, w_for_data);
      if (weights_pd.diff_dst_desc() != data_pd.diff_dst_desc() || weights_pd.src_desc() != fwd_pd.src_desc())
        throw std::runtime_error("oneDNN chose different layouts for the backward passes' shared tensors");
    }
  }

  /// Copies a plain tensor into `to` (any layout) through a oneDNN reorder.
  void import(const Tensor<float>& from, const dnnl::memory::dims& dims, tag format, dnnl::memory& to) {
    dnnl::memory plain({dims, dnnl::memory::data_type::f32, format}, engine, const_cast<float*>(from.data()));
    dnnl::reorder(plain, to).execute(stream, plain, to);
    stream.wait();
  }
  /// The plain (nchw / oihw) copy of `from`.
  Tensor<float> export_plain(dnnl::memory& from, const Shape& shape, const dnnl::memory::dims& dims, tag format) {
    Tensor<float> out(shape);
    dnnl::memory plain({dims, dnnl::memory::data_type::f32, format}, engine, out.data());
    dnnl::reorder(from, plain).execute(stream, from, plain);
    stream.wait();
    return out;
  }

  void run() { run(time_forward); }
  void run(bool with_forward) {
    if (with_forward)
      forward.execute(stream, {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, y},
                               {DNNL_ARG_SCRATCHPAD, scratch_forward}});
    if (backward) {
      backward_data.execute(stream, {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_WEIGHTS, w_for_data},
                                     {DNNL_ARG_DIFF_SRC, dx}, {DNNL_ARG_SCRATCHPAD, scratch_data}});
      backward_weights.execute(stream, {{DNNL_ARG_SRC, x}, {DNNL_ARG_DIFF_DST, dy},
                                        {DNNL_ARG_DIFF_WEIGHTS, dw}, {DNNL_ARG_SCRATCHPAD, scratch_weights}});
    }
    stream.wait();
  }

  /// oneDNN's results against nsl's convolution on the same tensors: the largest difference
  /// over max |value| of y (and dx, dw).
  double check() {
    run(true);
    const Shape act = x_nchw.shape(), wei = w_oihw.shape();
    const dnnl::memory::dims act_dims{act[0], act[1], act[2], act[3]}, wei_dims{wei[0], wei[1], wei[2], wei[3]};
    const nsl::ConvGeometry g{3, 1, 1};
    nsl::Conv2dWorkspace<float> ws;
    Tensor<float> want_y(act);
    nsl::conv2d_forward<float>(x_nchw.view(), w_oihw.view(), {}, g, want_y.view(), ws);
    double worst = relative_difference(export_plain(y, act, act_dims, tag::nchw), want_y);
    if (backward) {
      Tensor<float> want_dx(act), want_dw(wei);
      nsl::conv2d_backward<float>(x_nchw.view(), w_oihw.view(), g, dy_nchw.view(), want_dx.view(), want_dw.view(), {},
                                  ws);
      worst = std::max(worst, relative_difference(export_plain(dx, act, act_dims, tag::nchw), want_dx));
      worst = std::max(worst, relative_difference(export_plain(dw, wei, wei_dims, tag::oihw), want_dw));
    }
    return worst;
  }

  static double relative_difference(const Tensor<float>& have, const Tensor<float>& want) {
    double diff = 0, scale = 0;
    for (index i = 0; i < want.size(); ++i) {
      diff = std::max(diff, std::abs(double(have[i]) - double(want[i])));
      scale = std::max(scale, std::abs(double(want[i])));
    }
    return diff / std::max(scale, 1e-30);
  }
};

/// Times one case: the forward (`with_forward`) and / or the two backward passes (`backward`).
void bm_onednn(benchmark::State& state, index batch, index channels, index size, dnnl::algorithm algo,
               bool with_forward, bool backward, dnnl::prop_kind prop) {
  std::unique_ptr<OnednnConv> conv;
  try {
    conv = std::make_unique<OnednnConv>(batch, channels, size, algo, with_forward, backward, prop);
  } catch (const dnnl::error& e) {
    state.SkipWithError((std::string("oneDNN offers no such convolution on this machine: ") + e.what()).c_str());
    for (auto _ : state) {
    }
    return;
  }
  if (const double diff = conv->check(); !(diff <= 1e-3)) {
    state.SkipWithError(("oneDNN and nsl disagree: relative difference " + std::to_string(diff)).c_str());
    for (auto _ : state) {
    }
    return;
  }
  conv->run();  // untimed warm-up
  for (auto _ : state) {
    conv->run();
    benchmark::ClobberMemory();
  }
  const double forward_flops = 2.0 * double(batch) * double(channels * channels) * 9 * double(size * size);
  const double flops = (with_forward ? forward_flops : 0.0) + (backward ? 2 * forward_flops : 0.0);
  const double iterations = double(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(flops * iterations * 1e-9, benchmark::Counter::kIsRate);
  state.counters["GFLOP/iter"] = benchmark::Counter(flops * 1e-9);
  state.SetLabel(conv->impl);
}

}  // namespace

/// Registers the oneDNN cases (called by nsl_bench's main).
void register_onednn_cases() {
  const std::pair<const char*, dnnl::algorithm> algos[] = {{"direct", dnnl::algorithm::convolution_direct},
                                                           {"winograd", dnnl::algorithm::convolution_winograd}};
  for (const auto& [algo_name, algo] : algos) {
    for (bool backward : {false, true})
      for (const auto& [channels, size] : {std::pair<nsl::index, nsl::index>{32, 28}, {64, 14}, {128, 7}}) {
        const std::string name = nsl::cat("onednn/", algo_name, "/conv3x3/", backward ? "bwd" : "fwd", "/B64_C",
                                          channels, "_H", size);
        // As nsl's conv3x3 cases: fwd is the forward alone, bwd computes dx and dw without it.
        const dnnl::algorithm a = algo;
        const bool b = backward;
        benchmark::RegisterBenchmark(name.c_str(), [a, b, channels = channels, size = size](benchmark::State& s) {
          bm_onednn(s, 64, channels, size, a, !b, b,
                    b ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference);
        })->Unit(benchmark::kMillisecond)->UseRealTime();
      }
    for (bool backward : {true, false}) {
      const std::string name = nsl::cat("onednn/", algo_name, "/layer/plain/", backward ? "fwd_bwd" : "fwd",
                                        "/B32_C64_H16");
      const dnnl::algorithm a = algo;
      benchmark::RegisterBenchmark(name.c_str(), [a, backward](benchmark::State& s) {
        bm_onednn(s, 32, 64, 16, a, true, backward, dnnl::prop_kind::forward_training);
      })->Unit(benchmark::kMillisecond)->UseRealTime();
    }
  }
}

#endif  // NSL_BENCH_HAVE_ONEDNN
