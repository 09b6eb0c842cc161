// nsl/layers/linear.hpp — the fully connected layer: y = x w^T + b.
//
// Input N x F (a 4-D N x C x H x W input is read as N x (C*H*W)), output
// N x O. Math and gradients: nsl/ops/linear.hpp. Parameters: "weight"
// (O x F, He-normal, decayed) and optionally "bias" (O, zero, not decayed).
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "nsl/core/gemm.hpp"
#include "nsl/core/random.hpp"
#include "nsl/layers/layer.hpp"
#include "nsl/ops/linear.hpp"

namespace nsl {

template <class T>
class Linear : public Layer<T> {
 public:
  Linear(index in_features, index out_features, bool bias = true) {
    require(in_features >= 1 && out_features >= 1, ErrorKind::argument,
            "Linear: feature counts must be >= 1, got ", in_features, " -> ", out_features);
    weight_ = Tensor<T>(Shape{out_features, in_features});
    weight_grad_ = Tensor<T>(weight_.shape());
    if (bias) {
      bias_ = Tensor<T>(Shape{out_features});
      bias_grad_ = Tensor<T>(bias_.shape());
    }
  }
  Linear(index in_features, index out_features, bool bias, Rng& rng)
      : Linear(in_features, out_features, bias) {
    reset_parameters(rng);
  }

  /// Weights ~ N(0, 2 / F) (He), bias 0.
  void reset_parameters(Rng& rng) {
    fill_normal<T>(weight_.view(), rng, 0.0, std::sqrt(2.0 / static_cast<double>(in_features())));
    bias_.set_zero();
  }

  std::string describe() const override {
    return cat("Linear(", in_features(), "->", out_features(), bias_.empty() ? ", no bias)" : ")");
  }
  Shape output_shape(const Shape& input) const override {
    return linear_output_shape("Linear", flat(input), weight_.shape(), bias_.shape());
  }
  void forward_into(TensorView<const T> x, TensorView<T> y) override {
    const auto x2 = x.reshaped(flat(x.shape()));
    linear_forward<T>(x2, weight_.view(), bias_.view(), y);
    input_.save(x2, this->borrowing());
    this->remember_input_shape(x.shape());
  }
  /// Const inference (Layer::infer): y = x w^T + b through nsl::gemm, whose
  /// packing buffers live in `ws` (Eigen's product, which forward uses, may
  /// allocate its own), so it equals forward to float rounding, not bitwise.
  void infer(TensorView<const T> x, TensorView<T> y, InferenceWorkspace& ws) const override {
    const Shape x2 = flat(x.shape());  // forward's checks, with forward's messages
    check_shape("linear_forward", "output", y.shape(),
                linear_output_shape("linear_forward", x2, weight_.shape(), bias_.shape()));
    const index N = x2[0], O = out_features(), F = in_features();
    gemm<T>(false, true, N, O, F, x.data(), weight_.data(), T(0), y.data(), ws.scratch<GemmScratch<T>>());
    if (!bias_.empty()) y.matrix().rowwise() += bias_.vec().transpose();
  }
  using Layer<T>::infer;

  void backward_into(TensorView<const T> dy, TensorView<T> dx) override {
    this->check_backward("Linear::backward", dy.shape(), dx);
    TensorView<T> dx2 = dx.size() ? dx.reshaped(input_.shape()) : dx;
    linear_backward<T>(input_.view(), weight_.view(), dy, dx2, weight_grad_.view(), bias_grad_.view());
  }

  std::vector<Parameter<T>> parameters() override {
    std::vector<Parameter<T>> params{{"weight", weight_.view(), weight_grad_.view(), true}};
    if (!bias_.empty()) params.push_back({"bias", bias_.view(), bias_grad_.view(), false});
    return params;
  }

  index in_features() const { return weight_.dim(1); }
  index out_features() const { return weight_.dim(0); }
  Tensor<T>& weight() { return weight_; }
  const Tensor<T>& weight() const { return weight_; }
  Tensor<T>& bias() { return bias_; }
  const Tensor<T>& bias() const { return bias_; }
  Tensor<T>& weight_grad() { return weight_grad_; }
  Tensor<T>& bias_grad() { return bias_grad_; }

 private:
  // N x C x H x W is read as N x (C*H*W); rank 2 is kept.
  static Shape flat(const Shape& s) {
    require(s.rank() >= 2, ErrorKind::shape, "Linear: input: expected rank 2 or more, got ", s);
    return Shape{s[0], s[0] ? s.size() / s[0] : 0};
  }

  Tensor<T> weight_, weight_grad_, bias_, bias_grad_;
  SavedTensor<T> input_;  ///< the last forward's input, as N x F
};

}  // namespace nsl
