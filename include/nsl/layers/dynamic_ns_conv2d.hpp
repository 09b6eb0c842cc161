// nsl/layers/dynamic_ns_conv2d.hpp — dynamic neural similarity convolution.
//
//     M(p) = I + G(x)(p)                 G from a SimilarityPredictor on the same input
//     y_o(p) = b_o + sum_i w_{o,i}^T M(p) x_i(p)                  (NSL.md §3)
//
// Structures: diagonal (dynamic DNS, M(p) = diag(1 + g(p))) and
// channel_shared (dynamic UNS, a K x K M(p) shared by the channels). The
// kernel is odd and padded to 'same' (padding k/2), so the main convolution
// and the predictor's 3x3 convolutions with the same stride give the same
// output grid.
//
// Forward: G = predictor(x); per image X = im2col(x), V = (I + G) X, Y = W V + b
// (nsl/ops/dynamic_conv2d.hpp). Backward: dW, db, dG and the direct dx from
// dynamic_conv2d_backward; then the predictor's backward on dG, whose input
// gradient is added to dx (x feeds both paths).
//
// Kept for backward: the input, G (infer keeps G in the caller's workspace
// instead, and runs the predictor's infer). Parameters: "weight" (He-normal, decayed),
// optional "bias", and the predictor's as "predictor.<name>".
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "nsl/layers/similarity_predictor.hpp"
#include "nsl/ops/dynamic_conv2d.hpp"

namespace nsl {

struct DynamicNSConvOptions {
  index stride = 1;
  bool bias = false;
  PredictorOptions predictor = PredictorOptions::dns();
};

template <class T, class D = Cpu>
class DynamicNSConv2d : public Layer<T, D> {
 public:
  DynamicNSConv2d(index in_channels, index out_channels, index kernel, Structure structure,
                  const DynamicNSConvOptions& options, Rng& rng)
      : structure_(structure),
        geometry_{checked_kernel(kernel), options.stride, kernel / 2},
        predictor_(in_channels, kernel, options.stride, structure, options.predictor, rng) {
    require(in_channels >= 1 && out_channels >= 1, ErrorKind::argument,
            "DynamicNSConv2d: channel counts must be >= 1, got ", in_channels, " -> ", out_channels);
    require(options.stride >= 1, ErrorKind::argument, "DynamicNSConv2d: stride must be >= 1, got ", options.stride);
    weight_ = Tensor<T, D>(Shape{out_channels, in_channels, kernel, kernel});
    weight_grad_ = Tensor<T, D>(weight_.shape());
    fill_normal<T>(weight_.view(), rng, 0.0, std::sqrt(2.0 / double(in_channels * kernel * kernel)));
    if (options.bias) {
      bias_ = Tensor<T, D>(Shape{out_channels});
      bias_grad_ = Tensor<T, D>(bias_.shape());
    }
  }

  /// A layer from its parts: W (O x C x k x k, k odd), b (O, or empty for
  /// none) and the predictor of G, with the given stride ('same' padding).
  /// deploy() builds its folded layers this way.
  DynamicNSConv2d(Structure structure, index stride, Tensor<T, D> weight, Tensor<T, D> bias,
                  SimilarityPredictor<T, D> predictor)
      : structure_(structure),
        geometry_{kernel_of(weight), stride, kernel_of(weight) / 2},
        predictor_(std::move(predictor)),
        weight_(std::move(weight)),
        bias_(std::move(bias)) {
    require(bias_.empty() || bias_.shape() == Shape{weight_.dim(0)}, ErrorKind::shape,
            "DynamicNSConv2d: bias ", bias_.shape(), " does not match ", weight_.dim(0), " output channels");
    require(stride >= 1, ErrorKind::argument, "DynamicNSConv2d: stride must be >= 1, got ", stride);
    require(predictor_.structure() == structure && predictor_.conv1().in_channels() == weight_.dim(1) &&
                predictor_.conv1().geometry().stride == stride,
            ErrorKind::argument, "DynamicNSConv2d: the predictor ", predictor_.describe(), " does not fit a ",
            to_string(structure), " layer on ", weight_.dim(1), " channels with stride ", stride);
    weight_grad_ = Tensor<T, D>(weight_.shape());
    if (!bias_.empty()) bias_grad_ = Tensor<T, D>(bias_.shape());
  }

  std::string describe() const override {
    return cat("DynamicNSConv2d(", in_channels(), "->", out_channels(), ", k=", geometry_.kernel, ", s=",
               geometry_.stride, ", M(p) ", to_string(structure_), bias_.empty() ? ", no bias" : "", ", ",
               predictor_.describe(), ")");
  }
  Shape output_shape(const Shape& input) const override {
    const Shape out = conv2d_output_shape("DynamicNSConv2d", input, weight_.shape(), bias_.shape(), geometry_);
    const Shape g = predictor_.output_shape(input);
    require(g[2] == out[2] && g[3] == out[3], ErrorKind::shape,
            "DynamicNSConv2d: predictor grid ", g, " does not match the output ", out);
    return out;
  }

  void forward_into(TensorView<const T, D> x, TensorView<T, D> y) override {
    const Shape out = output_shape(x.shape());
    check_shape("DynamicNSConv2d", "output", y.shape(), out);
    similarity_.resize(predictor_.output_shape(x.shape()));
    predictor_.forward_into(x, similarity_.view());
    dynamic_conv2d_forward<T>(structure_, x, weight_.view(), bias_.view(), similarity_.view(), geometry_, y,
                              workspace_);
    input_.save(x, this->borrowing());
    this->remember_input_shape(x.shape());
  }

  /// Const inference (evaluation mode): G from the predictor's infer (child
  /// workspace 0), then the dynamic convolution; G and the convolution's
  /// scratch live in `ws`, nothing in the layer. CPU only (elsewhere the
  /// base's error).
  void infer(TensorView<const T, D> x, TensorView<T, D> y, InferenceWorkspace& ws) const override {
    if constexpr (!is_cpu_v<D>) {
      Layer<T, D>::infer(x, y, ws);
    } else {
      check_shape("DynamicNSConv2d::infer", "output", y.shape(), output_shape(x.shape()));
      auto& scratch = ws.scratch<InferenceScratch>();
      const Shape g_shape = predictor_.output_shape(x.shape());
      if (scratch.similarity.size() < g_shape.size()) scratch.similarity.resize(Shape{g_shape.size()});
      const TensorView<T, D> g(scratch.similarity.data(), g_shape);
      predictor_.infer(x, g, ws.child(0));
      dynamic_conv2d_forward<T>(structure_, x, weight_.view(), bias_.view(), g, geometry_, y, scratch.convolution);
    }
  }
  using Layer<T, D>::infer;

  void backward_into(TensorView<const T, D> dy, TensorView<T, D> dx) override {
    this->check_backward("DynamicNSConv2d::backward", dy.shape(), dx);
    similarity_grad_.resize(similarity_.shape());
    dynamic_conv2d_backward<T>(structure_, input_.view(), weight_.view(), similarity_.view(), geometry_, dy, dx,
                               weight_grad_.view(), bias_grad_.view(), similarity_grad_.view(), workspace_);
    if (dx.size()) {
      predictor_input_grad_.resize(dx.shape());
      predictor_.backward_into(similarity_grad_.view(), predictor_input_grad_.view());
      add_into<T>(predictor_input_grad_.view(), dx);
    } else {
      predictor_.backward_into(similarity_grad_.view(), {});
    }
  }

  std::vector<Parameter<T, D>> parameters() override {
    std::vector<Parameter<T, D>> params{{"weight", weight_.view(), weight_grad_.view(), true}};
    if (!bias_.empty()) params.push_back({"bias", bias_.view(), bias_grad_.view(), false});
    append_parameters<T>(params, "predictor.", predictor_);
    return params;
  }
  std::vector<Buffer<T, D>> buffers() override {
    std::vector<Buffer<T, D>> all;
    append_buffers<T>(all, "predictor.", predictor_);
    return all;
  }
  void set_training(bool training) override {
    Layer<T, D>::set_training(training);
    predictor_.set_training(training);
  }
  /// The predictor reads the same input, so it borrows when this layer does.
  void set_borrowing(bool borrowing) override {
    Layer<T, D>::set_borrowing(borrowing);
    predictor_.set_borrowing(borrowing);
  }
  /// The predictor's BatchNorms are synchronised with the network's.
  void set_replica_sum(ReplicaSum* replicas) override { predictor_.set_replica_sum(replicas); }

  Structure structure() const { return structure_; }
  index in_channels() const { return weight_.dim(1); }
  index out_channels() const { return weight_.dim(0); }
  const ConvGeometry& geometry() const { return geometry_; }
  Tensor<T, D>& weight() { return weight_; }
  const Tensor<T, D>& weight() const { return weight_; }
  Tensor<T, D>& bias() { return bias_; }
  Tensor<T, D>& weight_grad() { return weight_grad_; }
  SimilarityPredictor<T, D>& predictor() { return predictor_; }
  const SimilarityPredictor<T, D>& predictor() const { return predictor_; }
  const Tensor<T, D>& bias() const { return bias_; }
  /// G of the last forward: N x R x Ho x Wo, M(p) = I + G(p).
  const Tensor<T, D>& predicted_similarity() const { return similarity_; }

 private:
  /// k of an O x C x k x k weight (square, odd).
  static index kernel_of(const Tensor<T, D>& weight) {
    require(weight.rank() == 4 && weight.dim(2) == weight.dim(3), ErrorKind::shape,
            "DynamicNSConv2d: expected an O x C x k x k weight, got ", weight.shape());
    return checked_kernel(weight.dim(2));
  }
  static index checked_kernel(index kernel) {
    require(kernel >= 1 && kernel % 2 == 1, ErrorKind::argument,
            "DynamicNSConv2d: kernel size must be odd (padded to 'same'), got ", kernel);
    return kernel;
  }

  /// infer's scratch (in the caller's InferenceWorkspace; G only grows).
  struct InferenceScratch {
    Tensor<T, D> similarity;                      ///< G for the current input
    DynamicConv2dWorkspace<T, D> convolution;     ///< the dynamic convolution's per-thread buffers
  };

  Structure structure_;
  ConvGeometry geometry_;
  SimilarityPredictor<T, D> predictor_;
  Tensor<T, D> weight_, weight_grad_, bias_, bias_grad_;
  SavedTensor<T, D> input_;             ///< the last forward's input
  Tensor<T, D> similarity_;             ///< G of the last forward
  Tensor<T, D> similarity_grad_;        ///< dL/dG, scratch for backward
  Tensor<T, D> predictor_input_grad_;   ///< the predictor's dL/dx, scratch
  DynamicConv2dWorkspace<T, D> workspace_;
};

}  // namespace nsl

namespace nsl {

/// The kernel shape the layer used in its last forward pass: for each of the
/// K slots, the norm of row a of M(p) = I + G(p) (|1 + g_a(p)| for a diagonal
/// M), averaged over the batch and the output pixels. The counterpart of
/// learned_kernel_shape for static layers: a plain convolution gives all ones.
/// Fails before any forward pass.
template <class T>
Vector<T> mean_kernel_shape(const DynamicNSConv2d<T>& layer) {
  const Tensor<T>& g = layer.predicted_similarity();
  require(g.rank() == 4, ErrorKind::state, "mean_kernel_shape: the layer has not run a forward pass yet");
  const index N = g.dim(0), R = g.dim(1), P = g.dim(2) * g.dim(3), K = layer.geometry().slots();
  require(R == K || R == K * K, ErrorKind::shape, "mean_kernel_shape: predicted similarity with ", R,
          " rows for ", K, " slots");
  std::vector<double> mean(static_cast<std::size_t>(K), 0.0);
  for (index n = 0; n < N; ++n)
    for (index p = 0; p < P; ++p)
      for (index a = 0; a < K; ++a) {
        double row = 0.0;
        if (R == K) {
          row = std::abs(1.0 + double(g[(n * R + a) * P + p]));
        } else {
          for (index r = 0; r < K; ++r) {
            const double m = (a == r ? 1.0 : 0.0) + double(g[(n * R + a * K + r) * P + p]);
            row += m * m;
          }
          row = std::sqrt(row);
        }
        mean[static_cast<std::size_t>(a)] += row;
      }
  Vector<T> shape(K);
  for (index a = 0; a < K; ++a) shape[a] = T(mean[static_cast<std::size_t>(a)] / double(std::max<index>(N * P, 1)));
  return shape;
}

/// How far the layer was from a plain convolution in its last forward pass:
/// the root mean square over the batch and the output pixels of
/// ||G(p)||_F / ||I||_F = ||G(p)||_F / sqrt(K) (for a diagonal M, the RMS of
/// the gains g_a(p) over slots and pixels). 0 while G = 0 (a layer whose
/// predictor starts with a zero last BatchNorm scale); nsl-train records it
/// per epoch. Fails before any forward pass.
template <class T>
double similarity_magnitude(const DynamicNSConv2d<T>& layer) {
  const Tensor<T>& g = layer.predicted_similarity();
  require(g.rank() == 4 && g.size() > 0, ErrorKind::state,
          "similarity_magnitude: the layer has not run a forward pass yet");
  const index K = layer.geometry().slots();
  double squares = 0.0;
  for (index i = 0; i < g.size(); ++i) squares += double(g[i]) * double(g[i]);
  // g holds R = K (diagonal) or K^2 numbers per pixel: the sum over them is
  // ||G(p)||_F^2; divided by the pixels N H W and by ||I||_F^2 = K.
  const double pixels = double(g.dim(0) * g.dim(2) * g.dim(3));
  return std::sqrt(squares / (pixels * double(K)));
}

}  // namespace nsl
