// nsl/train/sgd.hpp — stochastic gradient descent with momentum and L2
// weight decay, in the form TensorFlow's MomentumOptimizer and PyTorch's SGD
// use (NSL.md §5: μ = 0.9, λ = 5e-4):
//
//     g = dL/dw + λ w      (λ w only for parameters whose weight_decay flag is set)
//     v = μ v + g
//     w = w - lr v
//
// The decay is the gradient of the L2 term (λ/2) ||w||^2, added here rather
// than to the loss. One velocity per parameter, zero at the start, allocated
// at construction; `step` allocates nothing and leaves the gradients as they
// are (call `zero_gradients` before the next backward, which accumulates).
//
// A group of parameters (chosen by name, like PyTorch's parameter groups) may
// take its own multiples of the learning rate and of λ: `scale_parameters`,
// e.g. the dynamic layers' predictors with 10 λ (NSL.md §5's recipe as the
// authors meant it).
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "nsl/layers/layer.hpp"

namespace nsl {

struct SgdOptions {
  double momentum = 0.9;        ///< μ in [0, 1); 0 is plain SGD
  double weight_decay = 5e-4;   ///< λ >= 0, for parameters flagged for decay
};

/// Multiples of the learning rate and of the weight decay λ for a group of
/// parameters (Sgd::scale_parameters); 1 and 1 are the plain update.
struct SgdScale {
  double lr = 1.0;            ///< the group's learning rate is lr times the schedule's
  double weight_decay = 1.0;  ///< and its λ weight_decay times SgdOptions::weight_decay
};

/// One parameter's update: velocity = μ velocity + grad (+ λ value when
/// decay != 0), then value -= lr velocity.
template <class T>
void sgd_momentum_step(TensorView<T> value, TensorView<const T> grad, TensorView<T> velocity, T momentum,
                       T decay, T rate) {
  check_shape("sgd_momentum_step", "gradient", grad.shape(), value.shape());
  check_shape("sgd_momentum_step", "velocity", velocity.shape(), value.shape());
  if (decay != T(0)) velocity.vec() = momentum * velocity.vec() + grad.vec() + decay * value.vec();
  else velocity.vec() = momentum * velocity.vec() + grad.vec();
  value.vec() -= rate * velocity.vec();
}

template <class T, class D = Cpu>
class Sgd {
 public:
  /// Optimises `parameters` (views into layers, e.g. from `layer.parameters()`,
  /// which must outlive the optimiser).
  explicit Sgd(std::vector<Parameter<T, D>> parameters, SgdOptions options = {})
      : parameters_(std::move(parameters)), options_(options) {
    require(options.momentum >= 0.0 && options.momentum < 1.0, ErrorKind::argument,
            "Sgd: momentum: expected in [0, 1), got ", options.momentum);
    require(options.weight_decay >= 0.0 && std::isfinite(options.weight_decay), ErrorKind::argument,
            "Sgd: weight decay: expected >= 0, got ", options.weight_decay);
    velocities_.reserve(parameters_.size());
    scales_.assign(parameters_.size(), SgdScale{});
    for (const auto& p : parameters_) {
      check_shape("Sgd", (p.name + " gradient").c_str(), p.grad.shape(), p.value.shape());
      velocities_.emplace_back(p.value.shape());
    }
  }

  /// Gives every parameter whose name contains `part` (e.g. "predictor.")
  /// the multiples `scale` of the learning rate and of λ, in place of those it
  /// had; returns how many parameters matched. Scales are not saved in
  /// checkpoints: set them again after a resume.
  std::size_t scale_parameters(const std::string& part, SgdScale scale) {
    require(scale.lr >= 0.0 && std::isfinite(scale.lr) && scale.weight_decay >= 0.0 &&
                std::isfinite(scale.weight_decay),
            ErrorKind::argument, "Sgd::scale_parameters: expected finite multiples >= 0, got lr x", scale.lr,
            " and weight decay x", scale.weight_decay, " for '", part, "'");
    std::size_t matched = 0;
    for (std::size_t i = 0; i < parameters_.size(); ++i)
      if (parameters_[i].name.find(part) != std::string::npos) {
        scales_[i] = scale;
        ++matched;
      }
    return matched;
  }
  /// The multiples of parameter i (in the order of `parameters()`).
  const SgdScale& scale(std::size_t i) const { return scales_.at(i); }

  /// One update of every parameter with learning rate lr >= 0 (times its
  /// group's multiple).
  void step(double lr) {
    require(lr >= 0.0 && std::isfinite(lr), ErrorKind::argument,
            "Sgd::step: learning rate: expected >= 0, got ", lr);
    const T momentum = static_cast<T>(options_.momentum);
    for (std::size_t i = 0; i < parameters_.size(); ++i) {
      const Parameter<T, D>& p = parameters_[i];
      Tensor<T, D>& velocity = velocities_[i];
      // A checkpoint may have replaced the velocity: it must still fit.
      check_shape("Sgd::step", "velocity", velocity.shape(), p.value.shape());
      const T decay = p.weight_decay ? static_cast<T>(options_.weight_decay * scales_[i].weight_decay) : T(0);
      const T rate = static_cast<T>(lr * scales_[i].lr);
      sgd_momentum_step<T>(p.value, p.grad, velocity.view(), momentum, decay, rate);
    }
  }

  /// Sets every parameter's gradient to zero.
  void zero_gradients() { nsl::zero_gradients(parameters_); }
  /// Sets every velocity to zero (a fresh start with the same parameters).
  void reset_velocities() {
    for (auto& v : velocities_) v.set_zero();
  }

  /// One velocity per parameter, in the order of `parameters()` (for
  /// checkpoints: overwrite the values, keep the shapes).
  std::vector<Tensor<T, D>>& velocities() { return velocities_; }
  const std::vector<Tensor<T, D>>& velocities() const { return velocities_; }
  const std::vector<Parameter<T, D>>& parameters() const { return parameters_; }
  const SgdOptions& options() const { return options_; }

 private:
  std::vector<Parameter<T, D>> parameters_;
  SgdOptions options_;
  std::vector<Tensor<T, D>> velocities_;  ///< v, one per parameter
  std::vector<SgdScale> scales_;          ///< the multiples of lr and λ, one per parameter
};

}  // namespace nsl
