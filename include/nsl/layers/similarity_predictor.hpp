// nsl/layers/similarity_predictor.hpp — the neural similarity predictor g,
// the meta-network that predicts G(x)(p) for dynamic NSL (NSL.md §3).
//
//     h = ReLU(BN(conv1(x) / norms))       conv1: 3x3, C -> hidden, stride of the main layer
//     G = BN(conv2(h) / norms)             conv2: 3x3, hidden -> K (DNS) or K*K (UNS)
//
// Reference configurations (factories below):
//   dns():         conv1 divided by the local input norm, BN, ReLU; conv2, BN
//   uns():         conv1 divided by the local input norm, ReLU (no BN); conv2 (no BN)
//   dns_sphere():  both convs cosine (input and filter norm), each followed by BN
// Initial weights N(0, (s sqrt(2 / (9 C_in)))^2) with s = 0.1 for conv1 and
// 0.001 for conv2, so G starts near 0 and the dynamic layer near the plain
// convolution. Each conv is a SphereConv2d (identity response without filter
// norm is the plain input-normalised convolution), so every gradient here is
// the composition of already-checked pieces.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nsl/layers/batch_norm2d.hpp"
#include "nsl/layers/relu.hpp"
#include "nsl/layers/sphere_conv2d.hpp"
#include "nsl/similarity/bilinear.hpp"
#include "nsl/ops/patch_transform.hpp"

namespace nsl {

struct PredictorOptions {
  index hidden = 64;               ///< width of the hidden layer
  bool input_norm = true;          ///< conv1 divided by the local input norm
  bool sphere = false;             ///< both convs cosine: input and filter norm
  bool batch_norm = true;          ///< BN after each conv
  double first_scale = 0.1;        ///< init scale of conv1 (times He)
  double second_scale = 0.001;     ///< init scale of conv2 (times He)
  /// Start of the scale (gamma) of the BN after conv2. 1: BatchNorm's usual
  /// start; 0: G = 0, so a dynamic layer starts as the plain convolution
  /// and learns to depart from it (its float32 runs part from float64 as
  /// slowly as plain CNN-9's, docs/training.md). Without batch_norm: unused.
  double last_bn_scale = 1.0;
  BatchNormOptions bn{};

  static PredictorOptions dns() { return {}; }
  static PredictorOptions uns() {
    PredictorOptions o;
    o.hidden = 128;
    o.batch_norm = false;
    return o;
  }
  static PredictorOptions dns_sphere() {
    PredictorOptions o;
    o.sphere = true;
    return o;
  }
};

template <class T, class D = Cpu>
class SimilarityPredictor : public Layer<T, D> {
 public:
  /// Predicts G for a dynamic layer of `structure` with k x k kernels and the
  /// given stride, from inputs of `in_channels` channels.
  SimilarityPredictor(index in_channels, index kernel, index stride, Structure structure,
                      const PredictorOptions& options, Rng& rng)
      : options_(options),
        structure_(structure),
        rows_(predicted_rows(structure, kernel * kernel)),
        conv1_(in_channels, options.hidden, 3, first_options(stride, options), rng, options.first_scale),
        conv2_(options.hidden, rows_, 3, second_options(options), rng, options.second_scale) {
    require(options.hidden >= 1, ErrorKind::argument, "SimilarityPredictor: hidden width must be >= 1, got ",
            options.hidden);
    if (options.batch_norm) {
      bn1_.emplace(options.hidden, options.bn);
      bn2_.emplace(rows_, options.bn);
      if (options.last_bn_scale != 1.0) bn2_->gamma().fill(static_cast<T>(options.last_bn_scale));
    }
    // ReLU and conv2 keep views of hidden_, which this layer owns and leaves
    // alone until backward; conv1 reads the caller's input (set_borrowing).
    relu_.set_borrowing(true);
    conv2_.set_borrowing(true);
  }

  /// A predictor from its two convolutions, with no BatchNorm: the folded
  /// form that deploy() builds (each conv carries its BN's scale in the
  /// weights and its shift as a bias). conv1: 3x3 from the input to the
  /// hidden width; conv2: 3x3, stride 1, from it to the rows of G.
  SimilarityPredictor(Structure structure, index kernel, SphereConv2d<T, D> conv1, SphereConv2d<T, D> conv2)
      : options_(folded_options(conv1)),
        structure_(structure),
        rows_(predicted_rows(structure, kernel * kernel)),
        conv1_(std::move(conv1)),
        conv2_(std::move(conv2)) {
    require(conv1_.geometry().kernel == 3 && conv2_.geometry().kernel == 3 && conv2_.geometry().stride == 1,
            ErrorKind::argument, "SimilarityPredictor: expected 3x3 convolutions (the second with stride 1), got ",
            conv1_.describe(), " and ", conv2_.describe());
    require(conv2_.in_channels() == conv1_.out_channels() && conv2_.out_channels() == rows_, ErrorKind::argument,
            "SimilarityPredictor: expected conv2 ", conv1_.out_channels(), " -> ", rows_, " channels (", rows_,
            " rows of G for ", to_string(structure), " with ", kernel * kernel, " slots), got ", conv2_.describe());
    relu_.set_borrowing(true);
    conv2_.set_borrowing(true);
  }

  std::string describe() const override {
    return cat("SimilarityPredictor(", conv1_.describe(), options_.batch_norm ? ", BN" : "", ", ReLU, ",
               conv2_.describe(), options_.batch_norm ? ", BN)" : ")");
  }
  Shape output_shape(const Shape& input) const override {
    return conv2_.output_shape(conv1_.output_shape(input));
  }

  void forward_into(TensorView<const T, D> x, TensorView<T, D> y) override {
    hidden_.resize(conv1_.output_shape(x.shape()));
    conv1_.forward_into(x, hidden_.view());
    if (bn1_) bn1_->forward_into(hidden_.view(), hidden_.view());  // BN reads x before writing y per element
    relu_.forward_into(hidden_.view(), hidden_.view());
    if (bn2_) {
      raw_.resize(y.shape());
      conv2_.forward_into(hidden_.view(), raw_.view());
      bn2_->forward_into(raw_.view(), y);
    } else {
      conv2_.forward_into(hidden_.view(), y);
    }
    this->remember_input_shape(x.shape());
  }

  /// Const inference (evaluation mode): the parts' own infer, each with its
  /// child workspace (0 conv1, 1 bn1, 2 ReLU, 3 conv2, 4 bn2); h and conv2's
  /// output before bn2 live in `ws`, BN and ReLU run in place as in forward.
  /// CPU only (elsewhere the base's error).
  void infer(TensorView<const T, D> x, TensorView<T, D> y, InferenceWorkspace& ws) const override {
    if constexpr (!is_cpu_v<D>) {
      Layer<T, D>::infer(x, y, ws);
    } else {
      const Shape hidden_shape = conv1_.output_shape(x.shape());
      check_shape("SimilarityPredictor::infer", "output", y.shape(), conv2_.output_shape(hidden_shape));
      auto& scratch = ws.scratch<InferenceScratch>();
      const TensorView<T, D> hidden = scratch_view(scratch.hidden, hidden_shape);
      conv1_.infer(x, hidden, ws.child(0));
      if (bn1_) bn1_->infer(hidden, hidden, ws.child(1));
      relu_.infer(hidden, hidden, ws.child(2));
      if (bn2_) {
        const TensorView<T, D> raw = scratch_view(scratch.raw, y.shape());
        conv2_.infer(hidden, raw, ws.child(3));
        bn2_->infer(raw, y, ws.child(4));
      } else {
        conv2_.infer(hidden, y, ws.child(3));
      }
    }
  }
  using Layer<T, D>::infer;

  void backward_into(TensorView<const T, D> dy, TensorView<T, D> dx) override {
    this->check_backward("SimilarityPredictor::backward", dy.shape(), dx);
    grad_hidden_.resize(hidden_.shape());
    if (bn2_) {
      grad_raw_.resize(dy.shape());
      bn2_->backward_into(dy, grad_raw_.view());
      conv2_.backward_into(grad_raw_.view(), grad_hidden_.view());
    } else {
      conv2_.backward_into(dy, grad_hidden_.view());
    }
    relu_.backward_into(grad_hidden_.view(), grad_hidden_.view());
    if (bn1_) bn1_->backward_into(grad_hidden_.view(), grad_hidden_.view());
    conv1_.backward_into(grad_hidden_.view(), dx);
  }

  std::vector<Parameter<T, D>> parameters() override {
    std::vector<Parameter<T, D>> all;
    append_parameters<T>(all, "conv1.", conv1_);
    if (bn1_) append_parameters<T>(all, "bn1.", *bn1_);
    append_parameters<T>(all, "conv2.", conv2_);
    if (bn2_) append_parameters<T>(all, "bn2.", *bn2_);
    return all;
  }
  std::vector<Buffer<T, D>> buffers() override {
    std::vector<Buffer<T, D>> all;
    if (bn1_) append_buffers<T>(all, "bn1.", *bn1_);
    if (bn2_) append_buffers<T>(all, "bn2.", *bn2_);
    return all;
  }
  void set_training(bool training) override {
    Layer<T, D>::set_training(training);
    if (bn1_) bn1_->set_training(training);
    if (bn2_) bn2_->set_training(training);
  }
  void set_borrowing(bool borrowing) override {
    Layer<T, D>::set_borrowing(borrowing);
    conv1_.set_borrowing(borrowing);
  }
  void set_replica_sum(ReplicaSum* replicas) override {
    if (bn1_) bn1_->set_replica_sum(replicas);
    if (bn2_) bn2_->set_replica_sum(replicas);
  }

  /// Rows of G: K for diagonal, K*K for channel_shared.
  index rows() const { return rows_; }
  Structure structure() const { return structure_; }
  const PredictorOptions& options() const { return options_; }
  SphereConv2d<T, D>& conv1() { return conv1_; }
  SphereConv2d<T, D>& conv2() { return conv2_; }
  BatchNorm2d<T, D>* bn1() { return bn1_ ? &*bn1_ : nullptr; }
  BatchNorm2d<T, D>* bn2() { return bn2_ ? &*bn2_ : nullptr; }
  const SphereConv2d<T, D>& conv1() const { return conv1_; }
  const SphereConv2d<T, D>& conv2() const { return conv2_; }
  const BatchNorm2d<T, D>* bn1() const { return bn1_ ? &*bn1_ : nullptr; }
  const BatchNorm2d<T, D>* bn2() const { return bn2_ ? &*bn2_ : nullptr; }

 private:
  static SphereConvOptions first_options(index stride, const PredictorOptions& o) {
    return {stride, 1, o.input_norm || o.sphere, o.sphere, o.sphere ? AngularForm::cosine : AngularForm::identity};
  }
  /// The options that describe a predictor built from parts (no BN).
  static PredictorOptions folded_options(const SphereConv2d<T, D>& conv1) {
    PredictorOptions o;
    o.hidden = conv1.out_channels();
    o.input_norm = conv1.options().input_norm;
    o.sphere = false;
    o.batch_norm = false;
    return o;
  }
  static SphereConvOptions second_options(const PredictorOptions& o) {
    return {1, 1, o.sphere, o.sphere, o.sphere ? AngularForm::cosine : AngularForm::identity};
  }

  /// infer's scratch (in the caller's InferenceWorkspace; buffers only grow).
  struct InferenceScratch {
    Tensor<T, D> hidden;  ///< h = ReLU(BN(conv1(x)))
    Tensor<T, D> raw;     ///< conv2(h) before bn2
  };
  /// A view of `shape` on `buffer`, which grows (only) to hold it.
  static TensorView<T, D> scratch_view(Tensor<T, D>& buffer, const Shape& shape) {
    if (buffer.size() < shape.size()) buffer.resize(Shape{shape.size()});
    return TensorView<T, D>(buffer.data(), shape);
  }

  PredictorOptions options_;
  Structure structure_;
  index rows_;
  SphereConv2d<T, D> conv1_;
  std::optional<BatchNorm2d<T, D>> bn1_;
  ReLU<T, D> relu_;
  SphereConv2d<T, D> conv2_;
  std::optional<BatchNorm2d<T, D>> bn2_;
  Tensor<T, D> hidden_;                  ///< ReLU output (BN and ReLU run in place)
  Tensor<T, D> raw_;                     ///< conv2's output before bn2
  Tensor<T, D> grad_raw_, grad_hidden_;  ///< scratch for backward
};

}  // namespace nsl
