// nsl/layers/batch_norm2d.hpp — BatchNorm2d (math: nsl/ops/batchnorm.hpp).
//
// Training mode normalises with the batch's statistics and updates the
// running statistics, an exponential moving average with decay d of the
// batch statistics (the variance with Bessel's correction, m / (m - 1));
// evaluation mode uses the running statistics. Defaults follow the reference
// recipe: eps 1e-3, decay 0.999.
//
// The average is debiased by default: after t updates
//     running = running + w_t (batch - running),   w_t = (1 - d) / (1 - d^t)
// which equals the plain EMA started from 0 and divided by (1 - d^t). The
// first update copies the batch statistics and the weights settle at 1 - d,
// so a short run (one Fashion-MNIST epoch is 469 steps, when 0.999^469 = 0.63
// of a plain EMA is still its starting value) evaluates with statistics of
// the data. `debias = false` gives the plain EMA from mean 0, variance 1
// (the reference code's behaviour). The update count is a saved buffer.
//
// Parameters "gamma" (init 1) and "beta" (init 0), both decayed (the
// recipe's weight decay covers BN's γ and β).
//
// Synchronised (set_replica_sum, for data-parallel training): the batch
// statistics and the sums in their backward are taken over every replica's
// part of the batch (nsl/ops/batchnorm.hpp's *_across), so N replicas with
// B/N images each compute what one process with B images computes, the
// running statistics included.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "nsl/layers/layer.hpp"
#include "nsl/ops/batchnorm.hpp"

namespace nsl {

struct BatchNormOptions {
  double eps = 1e-3;     ///< added to the variance
  double decay = 0.999;  ///< EMA decay of the running statistics
  bool debias = true;    ///< debiased EMA (see above); false: plain EMA from (0, 1)
};

template <class T, class D = Cpu>
class BatchNorm2d : public Layer<T, D> {
 public:
  explicit BatchNorm2d(index channels, BatchNormOptions options = {}) : options_(options) {
    require(channels >= 1, ErrorKind::argument, "BatchNorm2d: channels must be >= 1, got ", channels);
    require(options.eps > 0 && options.decay >= 0 && options.decay < 1, ErrorKind::argument,
            "BatchNorm2d: expected eps > 0 and 0 <= decay < 1, got eps ", options.eps, " and decay ",
            options.decay);
    const Shape s{channels};
    gamma_ = Tensor<T, D>(s, T(1));
    beta_ = Tensor<T, D>(s);
    gamma_grad_ = Tensor<T, D>(s);
    beta_grad_ = Tensor<T, D>(s);
    running_mean_ = Tensor<T, D>(s);
    running_variance_ = Tensor<T, D>(s, T(1));
    updates_ = Tensor<T, D>(Shape{1});
    batch_mean_ = Tensor<T, D>(s);
    batch_variance_ = Tensor<T, D>(s);
  }

  std::string describe() const override { return cat("BatchNorm2d(", channels(), ")"); }
  Shape output_shape(const Shape& input) const override {
    check_batchnorm_shapes("BatchNorm2d", input, Shape{channels()});
    return input;
  }

  void forward_into(TensorView<const T, D> x, TensorView<T, D> y) override {
    output_shape(x.shape());
    // A borrowed input that the output does not overwrite is kept as a view,
    // and backward recomputes x̂ from it; otherwise x̂ is stored.
    from_input_ = this->borrowing() && x.data() != y.data();
    if (from_input_) {
      input_.save(x, true);
      if (normalized_.size()) normalized_ = Tensor<T, D>();
    } else {
      normalized_.resize(x.shape());
    }
    const TensorView<T, D> normalized = from_input_ ? TensorView<T, D>() : normalized_.view();
    const T eps = T(options_.eps);
    if (this->training()) {
      index m = x.dim(0) * x.dim(2) * x.dim(3);
      synchronised_ = replicas_ != nullptr;
      if constexpr (is_cpu_v<D>) {
        if (synchronised_) {
          replica_values_ = batchnorm_statistics_across<T>(x, *replicas_, replica_scratch_.data(), batch_mean_.view(),
                                                           batch_variance_.view());
          m = replica_values_;
        } else {
          batchnorm_statistics<T>(x, batch_mean_.view(), batch_variance_.view());
        }
      } else {
        batchnorm_statistics<T>(x, batch_mean_.view(), batch_variance_.view());
      }
      batchnorm_forward<T>(x, batch_mean_.view(), batch_variance_.view(), gamma_.view(), beta_.view(), eps, y,
                           normalized);
      batchnorm_update_running<T>(batch_mean_.view(), batch_variance_.view(), m, options_.decay, options_.debias,
                                  running_mean_.view(), running_variance_.view(), updates_.view());
      used_batch_statistics_ = true;
    } else {
      batchnorm_forward<T>(x, running_mean_.view(), running_variance_.view(), gamma_.view(), beta_.view(), eps,
                           y, normalized);
      used_batch_statistics_ = false;
    }
    this->remember_input_shape(x.shape());
  }

  /// Const inference (Layer::infer): y = γ (x - running mean) / sqrt(running
  /// variance + eps) + β, the evaluation-mode forward whatever set_training
  /// says; no scratch (x̂ is not kept), and y may be x (in place). CPU only
  /// (elsewhere the base's error).
  void infer(TensorView<const T, D> x, TensorView<T, D> y, InferenceWorkspace& ws) const override {
    if constexpr (!is_cpu_v<D>) {
      Layer<T, D>::infer(x, y, ws);
    } else {
      output_shape(x.shape());
      batchnorm_forward<T>(x, running_mean_.view(), running_variance_.view(), gamma_.view(), beta_.view(),
                           T(options_.eps), y, TensorView<T, D>());
    }
  }
  using Layer<T, D>::infer;

  void backward_into(TensorView<const T, D> dy, TensorView<T, D> dx) override {
    this->check_backward("BatchNorm2d::backward", dy.shape(), dx);
    const T eps = T(options_.eps);
    if constexpr (is_cpu_v<D>)
      if (used_batch_statistics_ && synchronised_) {
        batchnorm_backward_across<T>(from_input_ ? input_.view() : TensorView<const T>(),
                                     from_input_ ? TensorView<const T>() : TensorView<const T>(normalized_.view()),
                                     batch_mean_.view(), batch_variance_.view(), gamma_.view(), eps, replica_values_,
                                     *replicas_, replica_scratch_.data(), dy, dx, gamma_grad_.view(),
                                     beta_grad_.view());
        return;
      }
    if (from_input_) {
      const Tensor<T, D>& mean = used_batch_statistics_ ? batch_mean_ : running_mean_;
      const Tensor<T, D>& variance = used_batch_statistics_ ? batch_variance_ : running_variance_;
      batchnorm_backward_from_input<T>(input_.view(), mean.view(), variance.view(), gamma_.view(), eps,
                                       used_batch_statistics_, dy, dx, gamma_grad_.view(), beta_grad_.view());
    } else if (used_batch_statistics_)
      batchnorm_backward<T>(normalized_.view(), batch_variance_.view(), gamma_.view(), eps, dy, dx,
                            gamma_grad_.view(), beta_grad_.view());
    else
      batchnorm_backward_fixed<T>(normalized_.view(), running_variance_.view(), gamma_.view(), eps, dy, dx,
                                  gamma_grad_.view(), beta_grad_.view());
  }

  std::vector<Parameter<T, D>> parameters() override {
    return {{"gamma", gamma_.view(), gamma_grad_.view(), true}, {"beta", beta_.view(), beta_grad_.view(), true}};
  }

  /// Synchronised BatchNorm (Layer::set_replica_sum): training-mode
  /// statistics and their backward's sums over every replica's batch. CPU only.
  void set_replica_sum(ReplicaSum* replicas) override {
    require(replicas == nullptr || is_cpu_v<D>, ErrorKind::device, "BatchNorm2d: synchronised BatchNorm runs on the ",
            "CPU only, not on ", D::name);
    replicas_ = replicas;
    if (replicas) replica_scratch_.resize(std::size_t(2 * channels() + 1));  // statistics: C + 1; backward: 2 C
  }
  ReplicaSum* replica_sum() const { return replicas_; }

  std::vector<Buffer<T, D>> buffers() override {
    return {{"running_mean", running_mean_.view()},
            {"running_variance", running_variance_.view()},
            {"updates", updates_.view()}};
  }

  index channels() const { return gamma_.dim(0); }
  const BatchNormOptions& options() const { return options_; }
  Tensor<T, D>& gamma() { return gamma_; }
  Tensor<T, D>& beta() { return beta_; }
  const Tensor<T, D>& gamma() const { return gamma_; }
  const Tensor<T, D>& beta() const { return beta_; }
  Tensor<T, D>& running_mean() { return running_mean_; }
  Tensor<T, D>& running_variance() { return running_variance_; }
  const Tensor<T, D>& running_mean() const { return running_mean_; }
  const Tensor<T, D>& running_variance() const { return running_variance_; }

 private:
  BatchNormOptions options_;
  Tensor<T, D> gamma_, beta_, gamma_grad_, beta_grad_;
  Tensor<T, D> running_mean_, running_variance_;
  Tensor<T, D> updates_;                      ///< how many training forwards updated them
  Tensor<T, D> batch_mean_, batch_variance_;  ///< statistics of the last training forward
  Tensor<T, D> normalized_;                   ///< x̂ of the last forward (unless from_input_)
  SavedTensor<T, D> input_;                   ///< the last forward's input, when from_input_
  bool from_input_ = false;                ///< backward recomputes x̂ from input_
  bool used_batch_statistics_ = true;
  ReplicaSum* replicas_ = nullptr;       ///< synchronised BatchNorm's sum over replicas (not owned)
  bool synchronised_ = false;            ///< the last training forward summed over replicas
  index replica_values_ = 0;             ///< and had this many values per channel in all
  std::vector<double> replica_scratch_;  ///< the sums sent to the other replicas
};

}  // namespace nsl
