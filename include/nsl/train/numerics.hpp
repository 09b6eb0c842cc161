// nsl/train/numerics.hpp — catching the first NaN or infinity of a training
// run, and saying where it came from.
//
// A learning rate too large, or one bad input, turns the loss or some
// gradient into NaN or infinity; one SGD step later every weight is NaN and
// the run is lost, though it may go on for hours printing "loss nan". The
// check after each backward costs one pass over the gradients (their summed
// squares: NaN or infinite exactly when one of them is, or when they are so
// large that training has diverged anyway). Only when it fails does it look
// further, to name the first layer whose output and the first parameter
// whose gradient is not finite.
//
//   all_finite(t)                         no NaN, no infinity in t
//   gradient_squared_norm(params)         the sum of every gradient's squares
//   check_numerics(net, loss, params, step)   fails (ErrorKind::state) with
//                                         "step N: ..." naming the first
//                                         non-finite output and gradient
//   check_weights_finite(params, buffers, when)   the same for the weights
//                                         themselves, before they are saved
//
// On a GPU the tensors are copied to the host for the check (a device
// reduction is still to come).
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "nsl/core/tensor.hpp"
#include "nsl/layers/layer.hpp"
#include "nsl/models/sequential.hpp"

namespace nsl {

/// Whether every element of `t` is finite (neither NaN nor infinite).
template <class T, class D>
bool all_finite(TensorView<const T, D> t) {
  if constexpr (is_cpu_v<D>) {
    return t.vec().allFinite();
  } else {
    const Tensor<T> host = to_host<T>(t);
    return host.vec().allFinite();
  }
}

/// The sum of the squares of every parameter's gradient, accumulated in
/// double: not finite if and only if some gradient element is not, or the
/// gradients are beyond ~1e154 in norm.
template <class T, class D>
double gradient_squared_norm(const std::vector<Parameter<T, D>>& params) {
  double sum = 0.0;
  for (const auto& p : params) {
    if constexpr (is_cpu_v<D>) {
      sum += TensorView<const T>(p.grad).vec().template cast<double>().squaredNorm();
    } else {
      const Tensor<T> host = to_host<T>(TensorView<const T, D>(p.grad));
      sum += host.vec().template cast<double>().squaredNorm();
    }
  }
  return sum;
}

/// After a training step's forward and backward (before the optimiser's
/// step): if the loss or the gradients are not finite, fails with
/// ErrorKind::state and "step <step>: the loss is <loss> ...; the first
/// non-finite output is layer '<name>''s (<description>) ...; the first
/// non-finite gradient is '<parameter>'", looking through `net`'s outputs
/// of that forward (then `logits`, the last layer's) and the gradients in
/// order. Returns the gradients' squared norm otherwise.
template <class T, class D>
double check_numerics(const Sequential<T, D>& net, TensorView<const T, D> logits, double loss,
                      const std::vector<Parameter<T, D>>& params, index step) {
  const double norm = gradient_squared_norm(params);
  if (std::isfinite(loss) && std::isfinite(norm)) return norm;

  std::string output = "every layer's output is finite";
  for (std::size_t i = 0; i < net.size(); ++i) {
    const bool last = i + 1 == net.size();
    if (!all_finite<T, D>(last ? logits : net.output(i))) {
      output = cat("the first non-finite output is layer '", net.name(i), "''s (", net.layer(i).describe(), ")");
      break;
    }
  }
  std::string gradient = "every gradient is finite (their squares overflow)";
  for (const auto& p : params)
    if (!all_finite<T, D>(TensorView<const T, D>(p.grad))) {
      gradient = cat("the first non-finite gradient is '", p.name, "'");
      break;
    }
  fail(ErrorKind::state, cat("step ", step, ": the loss is ", loss, ", the gradients' squared norm ", norm, "; ",
                             output, "; ", gradient));
}

/// Fails with ErrorKind::state and "<when>: parameter '<name>' is not
/// finite" (or "buffer '<name>'") at the first parameter or buffer holding a
/// NaN or an infinity: an update can make a weight infinite after the last
/// check of a run, so a program checks the weights before it saves them.
template <class T, class D>
void check_weights_finite(const std::vector<Parameter<T, D>>& params, const std::vector<Buffer<T, D>>& buffers,
                          const std::string& when) {
  for (const auto& p : params)
    if (!all_finite<T, D>(TensorView<const T, D>(p.value)))
      fail(ErrorKind::state, cat(when, ": parameter '", p.name, "' is not finite"));
  for (const auto& b : buffers)
    if (!all_finite<T, D>(TensorView<const T, D>(b.value)))
      fail(ErrorKind::state, cat(when, ": buffer '", b.name, "' is not finite"));
}

}  // namespace nsl
