// nsl/ops/activation.hpp — element-wise activations and their gradients.
//
// ReLU: y = max(x, 0); dx = dy where x > 0, else 0 (the subgradient at 0 is
// taken as 0, as every framework does). Backward reads the forward output y,
// since y > 0 exactly where x > 0.
#pragma once

#include "nsl/core/tensor.hpp"
#include "nsl/core/threads.hpp"

namespace nsl {

template <class T>
void relu_forward(TensorView<const T> x, TensorView<T> y) {
  check_shape("relu_forward", "output", y.shape(), x.shape());
  parallel_ranges(x.size(), 1 << 15, [&](index begin, index end) {
    y.vec().segment(begin, end - begin) = x.vec().segment(begin, end - begin).cwiseMax(T(0));
  });
}

/// dx assigned from the forward output y and dy.
template <class T>
void relu_backward(TensorView<const T> y, TensorView<const T> dy, TensorView<T> dx) {
  check_shape("relu_backward", "output gradient", dy.shape(), y.shape());
  check_shape("relu_backward", "input gradient", dx.shape(), y.shape());
  parallel_ranges(y.size(), 1 << 15, [&](index begin, index end) {
    const index n = end - begin;
    dx.vec().segment(begin, n) = (y.vec().segment(begin, n).array() > T(0)).select(dy.vec().segment(begin, n), T(0));
  });
}

template <class T>
void relu_forward_reference(TensorView<const T> x, TensorView<T> y) {
  check_shape("relu_forward_reference", "output", y.shape(), x.shape());
  for (index i = 0; i < x.size(); ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
}

}  // namespace nsl
