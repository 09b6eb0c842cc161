// nsl/layers/conv2d.hpp — the plain convolution layer.
//
// y = conv(x, w) + b with a square k x k kernel, stride and zero padding
// (math and gradients: nsl/ops/conv2d.hpp, docs/conv2d_backward.md).
// Parameters: "weight" (O x C x k x k, He-normal initialised, decayed) and,
// unless disabled, "bias" (O, zero initialised, not decayed).
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "nsl/core/random.hpp"
#include "nsl/layers/layer.hpp"
#include "nsl/ops/conv2d.hpp"

namespace nsl {

struct Conv2dOptions {
  index stride = 1;
  index padding = 0;
  bool bias = true;
};

template <class T, class D = Cpu>
class Conv2d : public Layer<T, D> {
 public:
  /// A C_in -> C_out convolution with k x k kernels, weights zero until
  /// `reset_parameters` (or the Rng constructor) draws them.
  Conv2d(index in_channels, index out_channels, index kernel, Conv2dOptions options = {})
      : geometry_{kernel, options.stride, options.padding} {
    require(in_channels >= 1 && out_channels >= 1, ErrorKind::argument,
            "Conv2d: channel counts must be >= 1, got ", in_channels, " -> ", out_channels);
    require(kernel >= 1, ErrorKind::argument, "Conv2d: kernel size must be >= 1, got ", kernel);
    require(options.stride >= 1, ErrorKind::argument, "Conv2d: stride must be >= 1, got ",
            options.stride);
    require(options.padding >= 0, ErrorKind::argument, "Conv2d: padding must be >= 0, got ",
            options.padding);
    weight_ = Tensor<T, D>(Shape{out_channels, in_channels, kernel, kernel});
    weight_grad_ = Tensor<T, D>(weight_.shape());
    if (options.bias) {
      bias_ = Tensor<T, D>(Shape{out_channels});
      bias_grad_ = Tensor<T, D>(bias_.shape());
    }
  }
  /// As above, with He-normal weights drawn from `rng`.
  Conv2d(index in_channels, index out_channels, index kernel, Conv2dOptions options, Rng& rng)
      : Conv2d(in_channels, out_channels, kernel, options) {
    reset_parameters(rng);
  }

  /// Weights ~ N(0, 2 / (k*k*C_in)) (He), bias 0.
  void reset_parameters(Rng& rng) {
    prepared_ = {};
    const double fan_in = static_cast<double>(in_channels() * geometry_.slots());
    fill_normal<T>(weight_.view(), rng, 0.0, std::sqrt(2.0 / fan_in));
    bias_.set_zero();
  }

  std::string describe() const override {
    return cat("Conv2d(", in_channels(), "->", out_channels(), ", k=", geometry_.kernel,
               ", s=", geometry_.stride, ", p=", geometry_.padding, bias_.empty() ? ", no bias)" : ")");
  }
  Shape output_shape(const Shape& input) const override {
    return conv2d_output_shape("Conv2d", input, weight_.shape(), bias_.shape(), geometry_);
  }

  void forward_into(TensorView<const T, D> x, TensorView<T, D> y) override {
    conv2d_forward<T>(x, weight_.view(), bias_.view(), geometry_, y, workspace_);
    input_.save(x, this->borrowing());  // backward needs the input (to rebuild its patches)
    this->remember_input_shape(x.shape());
  }
  void backward_into(TensorView<const T, D> dy, TensorView<T, D> dx) override {
    this->check_backward("Conv2d::backward", dy.shape(), dx);
    conv2d_backward<T>(input_.view(), weight_.view(), geometry_, dy, dx, weight_grad_.view(),
                       bias_grad_.view(), workspace_);
  }
  /// Inference without keeping state: const, safe to call from several threads.
  void infer(TensorView<const T, D> x, TensorView<T, D> y, Conv2dWorkspace<T, D>& workspace) const {
    if constexpr (is_cpu_v<D>)
      conv2d_forward<T>(x, weight_.view(), bias_.view(), geometry_, y, workspace, prepared());
    else
      conv2d_forward<T>(x, weight_.view(), bias_.view(), geometry_, y, workspace);
  }
  /// Const inference (Layer::infer): the same, with the im2col/GEMM buffers
  /// kept in `ws`. CPU only (elsewhere the base's error).
  void infer(TensorView<const T, D> x, TensorView<T, D> y, InferenceWorkspace& ws) const override {
    if constexpr (!is_cpu_v<D>) Layer<T, D>::infer(x, y, ws);
    else infer(x, y, ws.scratch<Conv2dWorkspace<T, D>>());
  }
  using Layer<T, D>::infer;
  /// infer and a ReLU in one pass (Layer::infer_relu): the direct
  /// convolution applies it as it stores y, other paths over y after. CPU only.
  bool infer_relu(TensorView<const T, D> x, TensorView<T, D> y, InferenceWorkspace& ws) const override {
    if constexpr (!is_cpu_v<D>) {
      return Layer<T, D>::infer_relu(x, y, ws);
    } else {
      conv2d_forward<T>(x, weight_.view(), bias_.view(), geometry_, y, ws.scratch<Conv2dWorkspace<T, D>>(),
                        prepared(), true);
      return true;
    }
  }

  /// The weights laid out for the one-image direct convolution
  /// (conv2d_direct.hpp), which infer then reads instead of laying them out
  /// on every call (Layer::prepare_inference: dropped by a non-const access
  /// to the weights). Stride-1 CPU layers built with xsimd; others keep none.
  void prepare_inference() override {
    prepared_ = {};
    if constexpr (is_cpu_v<D>)
      if (conv2d_direct_supported(geometry_))
        prepared_ = direct_weights<T>(weight_.data(), out_channels(), in_channels() * geometry_.slots());
  }
  /// Whether infer reads weights laid out by prepare_inference.
  bool inference_prepared() const { return !prepared_.empty(); }

  std::vector<Parameter<T, D>> parameters() override {
    prepared_ = {};
    std::vector<Parameter<T, D>> params{{"weight", weight_.view(), weight_grad_.view(), true}};
    if (!bias_.empty()) params.push_back({"bias", bias_.view(), bias_grad_.view(), false});
    return params;
  }

  index in_channels() const { return weight_.dim(1); }
  index out_channels() const { return weight_.dim(0); }
  const ConvGeometry& geometry() const { return geometry_; }
  bool has_bias() const { return !bias_.empty(); }
  Tensor<T, D>& weight() {
    prepared_ = {};
    return weight_;
  }
  const Tensor<T, D>& weight() const { return weight_; }
  Tensor<T, D>& bias() { return bias_; }
  const Tensor<T, D>& bias() const { return bias_; }
  Tensor<T, D>& weight_grad() { return weight_grad_; }
  Tensor<T, D>& bias_grad() { return bias_grad_; }

 private:
  /// prepare_inference's layout for conv2d_forward, or null (laid out per call).
  const DirectWeights<T>* prepared() const { return prepared_.empty() ? nullptr : &prepared_; }

  ConvGeometry geometry_;
  Tensor<T, D> weight_, weight_grad_, bias_, bias_grad_;
  SavedTensor<T, D> input_;             ///< the last forward's input
  Conv2dWorkspace<T, D> workspace_;     ///< im2col buffers, reused across steps
  DirectWeights<T> prepared_;           ///< prepare_inference's layout of weight_ (empty: none)
};

}  // namespace nsl
