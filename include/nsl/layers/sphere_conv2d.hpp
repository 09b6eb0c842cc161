// nsl/layers/sphere_conv2d.hpp — hyperspherical convolution (SphereConv) and
// the normalised convolution of the similarity predictor.
//
//     z_o(p) = w_o^T x(p)                             (a plain convolution, no bias)
//     c_o(p) = z_o(p) / (a_o n(p))                    a_o = ||w_o|| if filter_norm else 1
//                                                     n(p) = local input norm if input_norm else 1
//     y_o(p) = f(c_o(p)) + b_o                        f: identity, cosine, linear, sigmoid; b optional
//
// With both norms c is cos θ, the angle between filter and patch (NSL.md §4).
// Backward, given dy (docs/dynamic_nsl.md derives it):
//
//     db_o = sum_{n,p} dy_o(p)                        (with a bias)
//     dc = dy f'(c)
//     dz = dc / (a n)                                 -> conv2d_backward: dx, dW
//     da_o = -sum_{n,p} dc c / a_o                    -> filter_norm_backward: dW +=
//     dn(p) = -sum_o dc c / n(p)                      -> local_input_norm_backward: dx +=
//
// Kept for backward: the input, c (N x O x Ho x Wo), n (N x 1 x Ho x Wo), a (O);
// without norms and with the identity response only the input (y = z).
// Parameters: "weight" (decayed) and, with options.bias, "bias" (not decayed;
// off by default: BatchNorm follows these convolutions in training, and
// deploy() gives the folded ones BN's shift as their bias).
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "nsl/core/random.hpp"
#include "nsl/layers/layer.hpp"
#include "nsl/ops/conv2d.hpp"
#include "nsl/ops/sphere.hpp"

namespace nsl {

struct SphereConvOptions {
  index stride = 1;
  index padding = 0;
  bool input_norm = true;                  ///< divide by the local input norm n(p)
  bool filter_norm = true;                 ///< divide by the filter norm ||w_o||
  AngularForm form = AngularForm::cosine;  ///< the response f(c)
  bool bias = false;                       ///< add a learned b_o after the response
};

template <class T, class D = Cpu>
class SphereConv2d : public Layer<T, D> {
 public:
  SphereConv2d(index in_channels, index out_channels, index kernel, SphereConvOptions options = {})
      : options_(options), geometry_{kernel, options.stride, options.padding} {
    require(in_channels >= 1 && out_channels >= 1, ErrorKind::argument,
            "SphereConv2d: channel counts must be >= 1, got ", in_channels, " -> ", out_channels);
    require(kernel >= 1 && options.stride >= 1 && options.padding >= 0, ErrorKind::argument,
            "SphereConv2d: expected kernel >= 1, stride >= 1, padding >= 0, got ", kernel, ", ",
            options.stride, ", ", options.padding);
    require(options.form == AngularForm::identity || options.form == AngularForm::cosine ||
                (options.input_norm && options.filter_norm),
            ErrorKind::argument, "SphereConv2d: the ", to_string(options.form),
            " response needs an angle: enable both input_norm and filter_norm");
    weight_ = Tensor<T, D>(Shape{out_channels, in_channels, kernel, kernel});
    weight_grad_ = Tensor<T, D>(weight_.shape());
    filter_norms_ = Tensor<T, D>(Shape{out_channels}, T(1));
    if (options.bias) {
      require(is_cpu_v<D>, ErrorKind::device, "SphereConv2d: a bias runs on the CPU only (no ", D::name,
              " kernel for it yet)");
      bias_ = Tensor<T, D>(Shape{out_channels});
      bias_grad_ = Tensor<T, D>(bias_.shape());
    }
  }
  /// Weights ~ N(0, (scale * sqrt(2 / (k*k*C_in)))^2) drawn from rng.
  SphereConv2d(index in_channels, index out_channels, index kernel, SphereConvOptions options, Rng& rng,
               double scale = 1.0)
      : SphereConv2d(in_channels, out_channels, kernel, options) {
    reset_parameters(rng, scale);
  }

  /// Weights as the constructor draws them, bias 0.
  void reset_parameters(Rng& rng, double scale = 1.0) {
    const double fan_in = static_cast<double>(in_channels() * geometry_.slots());
    fill_normal<T>(weight_.view(), rng, 0.0, scale * std::sqrt(2.0 / fan_in));
    bias_.set_zero();
  }

  std::string describe() const override {
    return cat("SphereConv2d(", in_channels(), "->", out_channels(), ", k=", geometry_.kernel, ", s=",
               geometry_.stride, ", p=", geometry_.padding, ", ", to_string(options_.form),
               options_.input_norm ? ", /input norm" : "", options_.filter_norm ? ", /filter norm" : "",
               bias_.empty() ? ")" : ", bias)");
  }
  Shape output_shape(const Shape& input) const override {
    return conv2d_output_shape("SphereConv2d", input, weight_.shape(), Shape(), geometry_);
  }

  void forward_into(TensorView<const T, D> x, TensorView<T, D> y) override {
    const Shape out = output_shape(x.shape());
    check_shape("SphereConv2d", "output", y.shape(), out);
    input_.save(x, this->borrowing());
    this->remember_input_shape(x.shape());
    if (is_plain()) {  // y = z + b: a plain convolution, nothing else to keep
      conv2d_forward<T>(x, weight_.view(), bias_.view(), geometry_, y, workspace_);
      return;
    }
    cosine_.resize(out);
    conv2d_forward<T>(x, weight_.view(), {}, geometry_, cosine_.view(), workspace_);  // z
    input_norm_.resize(Shape{out[0], 1, out[2], out[3]});
    if (options_.input_norm) local_input_norm<T>(x, geometry_, input_norm_.view(), &norm_workspace_);
    else input_norm_.fill(T(1));
    if (options_.filter_norm) filter_norm<T>(weight_.view(), filter_norms_.view());
    else filter_norms_.fill(T(1));
    sphere_response_forward<T>(options_.form, input_norm_.view(), filter_norms_.view(), cosine_.view(), y);
    if constexpr (is_cpu_v<D>)
      if (!bias_.empty()) add_channel_bias<T>(bias_.view(), y);
  }

  /// Const inference (Layer::infer): forward's ops with z computed straight
  /// into y and turned into f(c) in place (c is not kept); n(p), a_o and the
  /// convolution's and norm's buffers live in `ws`. Equal to forward bitwise.
  /// CPU only (elsewhere the base's error).
  void infer(TensorView<const T, D> x, TensorView<T, D> y, InferenceWorkspace& ws) const override {
    if constexpr (!is_cpu_v<D>) {
      Layer<T, D>::infer(x, y, ws);
    } else {
      const Shape out = output_shape(x.shape());
      check_shape("SphereConv2d", "output", y.shape(), out);
      auto& scratch = ws.scratch<InferenceScratch>();
      if (is_plain()) {
        conv2d_forward<T>(x, weight_.view(), bias_.view(), geometry_, y, scratch.convolution);  // z + b
        return;
      }
      conv2d_forward<T>(x, weight_.view(), {}, geometry_, y, scratch.convolution);  // z
      const Shape norm_shape{out[0], 1, out[2], out[3]};
      if (scratch.input_norm.size() < norm_shape.size()) scratch.input_norm.resize(Shape{norm_shape.size()});
      const TensorView<T, D> input_norm(scratch.input_norm.data(), norm_shape);
      if (options_.input_norm) local_input_norm<T>(x, geometry_, input_norm, &scratch.norm);
      else std::fill(input_norm.data(), input_norm.data() + input_norm.size(), T(1));
      scratch.filter_norms.resize(filter_norms_.shape());
      if (options_.filter_norm) filter_norm<T>(weight_.view(), scratch.filter_norms.view());
      else scratch.filter_norms.fill(T(1));
      sphere_response_forward<T>(options_.form, input_norm, scratch.filter_norms.view(), y, y);  // in place
      if (!bias_.empty()) add_channel_bias<T>(bias_.view(), y);
    }
  }
  using Layer<T, D>::infer;

  void backward_into(TensorView<const T, D> dy, TensorView<T, D> dx) override {
    this->check_backward("SphereConv2d::backward", dy.shape(), dx);
    if (is_plain()) {
      conv2d_backward<T>(input_.view(), weight_.view(), geometry_, dy, dx, weight_grad_.view(), bias_grad_.view(),
                         workspace_);
      return;
    }
    if constexpr (is_cpu_v<D>)
      if (!bias_.empty()) channel_bias_backward<T>(dy, bias_grad_.view());
    dz_.resize(cosine_.shape());
    dnorm_in_.resize(input_norm_.shape());
    sphere_response_backward<T>(options_.form, cosine_.view(), input_norm_.view(), filter_norms_.view(), dy,
                                dz_.view(), dnorm_in_.view());
    conv2d_backward<T>(input_.view(), weight_.view(), geometry_, dz_.view(), dx, weight_grad_.view(), {},
                       workspace_);
    if (options_.filter_norm) {
      dnorm_filter_.resize(filter_norms_.shape());
      sphere_filter_norm_gradient<T>(dz_.view(), input_norm_.view(), cosine_.view(), dnorm_filter_.view());
      filter_norm_backward<T>(weight_.view(), filter_norms_.view(), dnorm_filter_.view(), weight_grad_.view());
    }
    if (options_.input_norm && dx.size())
      local_input_norm_backward<T>(input_.view(), geometry_, input_norm_.view(), dnorm_in_.view(), dx,
                                   &norm_workspace_);
  }

  std::vector<Parameter<T, D>> parameters() override {
    std::vector<Parameter<T, D>> params{{"weight", weight_.view(), weight_grad_.view(), true}};
    if (!bias_.empty()) params.push_back({"bias", bias_.view(), bias_grad_.view(), false});
    return params;
  }

  /// True for the identity and cosine forms, whose response is the cosine itself.
  bool linear_response() const {
    return options_.form == AngularForm::identity || options_.form == AngularForm::cosine;
  }

  index in_channels() const { return weight_.dim(1); }
  index out_channels() const { return weight_.dim(0); }
  const ConvGeometry& geometry() const { return geometry_; }
  const SphereConvOptions& options() const { return options_; }
  /// No norm and the identity response: the layer is a plain convolution.
  bool is_plain() const {
    return !options_.input_norm && !options_.filter_norm && options_.form == AngularForm::identity;
  }
  Tensor<T, D>& weight() { return weight_; }
  const Tensor<T, D>& weight() const { return weight_; }
  Tensor<T, D>& weight_grad() { return weight_grad_; }
  /// b (O), empty without options.bias.
  Tensor<T, D>& bias() { return bias_; }
  const Tensor<T, D>& bias() const { return bias_; }
  Tensor<T, D>& bias_grad() { return bias_grad_; }

 private:
  /// infer's scratch (in the caller's InferenceWorkspace; buffers only grow; CPU only).
  struct InferenceScratch {
    Tensor<T, D> input_norm;           ///< n(p) for the current input (ones without input_norm)
    Tensor<T, D> filter_norms;         ///< a_o (ones without filter_norm)
    Conv2dWorkspace<T, D> convolution;
    LocalNormWorkspace<T, D> norm;
  };

  SphereConvOptions options_;
  ConvGeometry geometry_;
  Tensor<T, D> weight_, weight_grad_, bias_, bias_grad_;
  SavedTensor<T, D> input_;    ///< the last forward's input
  Tensor<T, D> cosine_;        ///< c = z / (a n) of the last forward
  Tensor<T, D> input_norm_;    ///< n(p) (ones without input_norm)
  Tensor<T, D> filter_norms_;  ///< a_o (ones without filter_norm)
  Tensor<T, D> dz_, dnorm_in_, dnorm_filter_;  ///< scratch for backward: dz, dn(p), da_o
  Conv2dWorkspace<T, D> workspace_;
  LocalNormWorkspace<T, D> norm_workspace_;
};

}  // namespace nsl
