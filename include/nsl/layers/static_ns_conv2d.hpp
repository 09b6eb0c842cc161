// nsl/layers/static_ns_conv2d.hpp — static neural similarity convolution.
//
//     y_o(p) = b_o + sum_i w_{o,i}^T M x_i(p)          (NSL.md §2)
//
// with M a learned parameter of the chosen structure (diagonal = DNS,
// channel_shared = UNS, block_diagonal, full). Because M is shared by every
// pixel, the layer is a plain convolution with folded filters w' = M^T w:
// forward folds then convolves; backward convolves back to dW' and goes
// through the fold (dW = dW' M^T, dM = sum w dw'^T; nsl/similarity/bilinear.hpp,
// docs/static_nsl.md). `to_conv2d()` does the fold once for deployment.
//
// Parameters: "weight" (O x C x k x k, He-normal, decayed), "similarity" (M,
// initialised to the identity so a new layer is the plain convolution; not
// decayed: regularise it with nsl/similarity/regularizers.hpp) and an
// optional "bias".
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "nsl/core/random.hpp"
#include "nsl/layers/conv2d.hpp"
#include "nsl/similarity/bilinear.hpp"
#include "nsl/similarity/regularizers.hpp"

namespace nsl {

template <class T, class D = Cpu>
class StaticNSConv2d : public Layer<T, D> {
 public:
  /// A C_in -> C_out similarity convolution, weights zero until reset_parameters.
  StaticNSConv2d(index in_channels, index out_channels, index kernel, Structure structure,
                 Conv2dOptions options = {1, 0, false})
      : structure_(structure), geometry_{kernel, options.stride, options.padding} {
    require(in_channels >= 1 && out_channels >= 1, ErrorKind::argument,
            "StaticNSConv2d: channel counts must be >= 1, got ", in_channels, " -> ", out_channels);
    require(kernel >= 1, ErrorKind::argument, "StaticNSConv2d: kernel size must be >= 1, got ", kernel);
    require(options.stride >= 1 && options.padding >= 0, ErrorKind::argument,
            "StaticNSConv2d: expected stride >= 1 and padding >= 0, got stride ", options.stride,
            " and padding ", options.padding);
    weight_ = Tensor<T, D>(Shape{out_channels, in_channels, kernel, kernel});
    weight_grad_ = Tensor<T, D>(weight_.shape());
    folded_ = Tensor<T, D>(weight_.shape());
    folded_grad_ = Tensor<T, D>(weight_.shape());
    assign_host_tensor(similarity_, identity_similarity<T>(structure, in_channels, kernel * kernel));
    similarity_grad_ = Tensor<T, D>(similarity_.shape());
    if (options.bias) {
      bias_ = Tensor<T, D>(Shape{out_channels});
      bias_grad_ = Tensor<T, D>(bias_.shape());
    }
  }
  StaticNSConv2d(index in_channels, index out_channels, index kernel, Structure structure,
                 Conv2dOptions options, Rng& rng)
      : StaticNSConv2d(in_channels, out_channels, kernel, structure, options) {
    reset_parameters(rng);
  }

  /// Weights He-normal, M = identity, bias 0.
  void reset_parameters(Rng& rng) {
    const double fan_in = static_cast<double>(in_channels() * geometry_.slots());
    fill_normal<T>(weight_.view(), rng, 0.0, std::sqrt(2.0 / fan_in));
    assign_host_tensor(similarity_, identity_similarity<T>(structure_, in_channels(), geometry_.slots()));
    bias_.set_zero();
  }

  std::string describe() const override {
    return cat("StaticNSConv2d(", in_channels(), "->", out_channels(), ", k=", geometry_.kernel,
               ", s=", geometry_.stride, ", p=", geometry_.padding, ", M ", to_string(structure_),
               bias_.empty() ? ", no bias)" : ")");
  }
  Shape output_shape(const Shape& input) const override {
    return conv2d_output_shape("StaticNSConv2d", input, weight_.shape(), bias_.shape(), geometry_);
  }

  void forward_into(TensorView<const T, D> x, TensorView<T, D> y) override {
    fold_weights<T>(structure_, similarity_.view(), weight_.view(), folded_.view());
    conv2d_forward<T>(x, folded_.view(), bias_.view(), geometry_, y, workspace_);
    input_.save(x, this->borrowing());  // backward needs the input's patches
    this->remember_input_shape(x.shape());
  }
  /// Const inference (Layer::infer): forward's fold and convolution with W'
  /// folded into `ws` instead of the layer, so a change of W or M is seen at
  /// the next call. Equal to forward bitwise, except for the full structure,
  /// whose fold runs through nsl::gemm (Eigen's product may allocate): to
  /// float rounding. CPU only (elsewhere the base's error).
  void infer(TensorView<const T, D> x, TensorView<T, D> y, InferenceWorkspace& ws) const override {
    if constexpr (!is_cpu_v<D>) {
      Layer<T, D>::infer(x, y, ws);
    } else {
      auto& scratch = ws.scratch<InferenceScratch>();
      scratch.folded.resize(weight_.shape());  // allocates on the first call only
      fold_weights<T>(structure_, similarity_.view(), weight_.view(), scratch.folded.view(), scratch.fold_gemm);
      conv2d_forward<T>(x, scratch.folded.view(), bias_.view(), geometry_, y, scratch.convolution);
    }
  }
  using Layer<T, D>::infer;

  void backward_into(TensorView<const T, D> dy, TensorView<T, D> dx) override {
    this->check_backward("StaticNSConv2d::backward", dy.shape(), dx);
    folded_grad_.set_zero();
    conv2d_backward<T>(input_.view(), folded_.view(), geometry_, dy, dx, folded_grad_.view(),
                       bias_grad_.view(), workspace_);
    fold_weights_backward<T>(structure_, similarity_.view(), weight_.view(), folded_grad_.view(),
                             weight_grad_.view(), similarity_grad_.view());
  }

  std::vector<Parameter<T, D>> parameters() override {
    std::vector<Parameter<T, D>> params{{"weight", weight_.view(), weight_grad_.view(), true}};
    if (structure_ != Structure::identity)
      params.push_back({"similarity", similarity_.view(), similarity_grad_.view(), false});
    if (!bias_.empty()) params.push_back({"bias", bias_.view(), bias_grad_.view(), false});
    return params;
  }

  /// The equivalent plain convolution (filters M^T w, same bias and geometry):
  /// identical outputs at no extra inference cost.
  Conv2d<T, D> to_conv2d() const {
    Conv2d<T, D> conv(in_channels(), out_channels(), geometry_.kernel,
                   {geometry_.stride, geometry_.padding, !bias_.empty()});
    fold_weights<T>(structure_, similarity_.view(), weight_.view(), conv.weight().view());
    if (!bias_.empty()) conv.bias() = bias_;
    return conv;
  }

  Structure structure() const { return structure_; }
  index in_channels() const { return weight_.dim(1); }
  index out_channels() const { return weight_.dim(0); }
  const ConvGeometry& geometry() const { return geometry_; }
  Tensor<T, D>& weight() { return weight_; }
  const Tensor<T, D>& weight() const { return weight_; }
  Tensor<T, D>& similarity() { return similarity_; }
  const Tensor<T, D>& similarity() const { return similarity_; }
  Tensor<T, D>& bias() { return bias_; }
  const Tensor<T, D>& bias() const { return bias_; }
  Tensor<T, D>& weight_grad() { return weight_grad_; }
  Tensor<T, D>& similarity_grad() { return similarity_grad_; }
  Tensor<T, D>& bias_grad() { return bias_grad_; }

 private:
  /// infer's scratch (in the caller's InferenceWorkspace; CPU only).
  struct InferenceScratch {
    Tensor<T, D> folded;                 ///< W' = M^T W for this call
    GemmScratch<T> fold_gemm;            ///< the full structure's fold product
    Conv2dWorkspace<T, D> convolution;   ///< im2col/GEMM buffers
  };

  Structure structure_;
  ConvGeometry geometry_;
  Tensor<T, D> weight_, weight_grad_, similarity_, similarity_grad_, bias_, bias_grad_;
  Tensor<T, D> folded_;       ///< W' = M^T W of the last forward
  Tensor<T, D> folded_grad_;  ///< dL/dW', scratch for backward
  SavedTensor<T, D> input_;   ///< the last forward's input
  Conv2dWorkspace<T, D> workspace_;
};

}  // namespace nsl

namespace nsl {

/// The layer's learned kernel shape (see kernel_shape in
/// nsl/similarity/regularizers.hpp): K slot magnitudes, k x k row-major.
template <class T>
Vector<T> learned_kernel_shape(const StaticNSConv2d<T>& layer) {
  return kernel_shape<T>(layer.structure(), layer.similarity().view(), layer.in_channels(),
                         layer.geometry().slots());
}

}  // namespace nsl
