// nsl/ops/linear.hpp — fully connected map and its gradients.
//
// For x (N x F), w (O x F), bias b (O) or none:
//     y = x w^T + 1 b^T                   y[n, o] = b[o] + sum_f w[o, f] x[n, f]
// Backward, given dy (N x O):
//     dx = dy w      dw += dy^T x      db += dy^T 1
// Contract: dx is assigned (skipped when empty); dw and db are accumulated.
#pragma once

#include "nsl/core/tensor.hpp"

namespace nsl {

/// Checks x (N x F), w (O x F), bias (O, or rank 0 for none); returns [N, O].
inline Shape linear_output_shape(const char* op, const Shape& x, const Shape& w, const Shape& bias) {
  check_rank(op, "input", x, 2);
  check_rank(op, "weight", w, 2);
  require(w[1] == x[1], ErrorKind::shape, op, ": weight: expected [", w[0], ", ", x[1],
          "] for inputs of ", x[1], " features, got ", w);
  if (bias.rank() != 0) check_shape(op, "bias", bias, Shape{w[0]});
  return Shape{x[0], w[0]};
}

template <class T>
void linear_forward_reference(TensorView<const T> x, TensorView<const T> w,
                              TensorView<const T> bias, TensorView<T> y) {
  check_shape("linear_forward_reference", "output", y.shape(),
              linear_output_shape("linear_forward_reference", x.shape(), w.shape(), bias.shape()));
  for (index n = 0; n < x.dim(0); ++n)
    for (index o = 0; o < w.dim(0); ++o) {
      T sum = bias.size() ? bias[o] : T(0);
      for (index f = 0; f < x.dim(1); ++f) sum += w(o, f) * x(n, f);
      y(n, o) = sum;
    }
}

template <class T>
void linear_backward_reference(TensorView<const T> x, TensorView<const T> w, TensorView<const T> dy,
                               TensorView<T> dx, TensorView<T> dw, TensorView<T> db) {
  check_shape("linear_backward_reference", "output gradient", dy.shape(),
              linear_output_shape("linear_backward_reference", x.shape(), w.shape(), db.shape()));
  check_shape("linear_backward_reference", "weight gradient", dw.shape(), w.shape());
  if (dx.size()) check_shape("linear_backward_reference", "input gradient", dx.shape(), x.shape());
  for (index i = 0; i < dx.size(); ++i) dx[i] = T(0);
  for (index n = 0; n < x.dim(0); ++n)
    for (index o = 0; o < w.dim(0); ++o) {
      if (db.size()) db[o] += dy(n, o);
      for (index f = 0; f < x.dim(1); ++f) {
        dw(o, f) += dy(n, o) * x(n, f);
        if (dx.size()) dx(n, f) += dy(n, o) * w(o, f);
      }
    }
}

template <class T>
void linear_forward(TensorView<const T> x, TensorView<const T> w, TensorView<const T> bias,
                    TensorView<T> y) {
  check_shape("linear_forward", "output", y.shape(),
              linear_output_shape("linear_forward", x.shape(), w.shape(), bias.shape()));
  auto out = y.matrix();
  out.noalias() = x.matrix() * w.matrix().transpose();
  if (bias.size()) out.rowwise() += bias.vec().transpose();
}

template <class T>
void linear_backward(TensorView<const T> x, TensorView<const T> w, TensorView<const T> dy,
                     TensorView<T> dx, TensorView<T> dw, TensorView<T> db) {
  check_shape("linear_backward", "output gradient", dy.shape(),
              linear_output_shape("linear_backward", x.shape(), w.shape(), db.shape()));
  check_shape("linear_backward", "weight gradient", dw.shape(), w.shape());
  if (dx.size()) {
    check_shape("linear_backward", "input gradient", dx.shape(), x.shape());
    dx.matrix().noalias() = dy.matrix() * w.matrix();
  }
  dw.matrix().noalias() += dy.matrix().transpose() * x.matrix();
  if (db.size()) db.vec() += dy.matrix().colwise().sum().transpose();
}

}  // namespace nsl
