// nsl/cuda/activation.cuh — ReLU on the GPU, the Cuda overloads of
// nsl/ops/activation.hpp with the same contract:
//
//     y = max(x, 0)                  (x > 0 ? x : 0, as the reference)
//     dx = dy where y > 0, else 0    (dx assigned; y is the forward output)
//
// One thread per element, so x may alias y and dy may alias dx.
#pragma once

#include "nsl/cuda/tensor.cuh"
#include "nsl/ops/activation.hpp"

namespace nsl {

namespace cuda::detail {
template <class T>
__global__ void relu_forward_kernel(const T* x, T* y, index n) {
  NSL_CUDA_FOR(i, n) y[i] = x[i] > T(0) ? x[i] : T(0);
}
template <class T>
__global__ void relu_backward_kernel(const T* y, const T* dy, T* dx, index n) {
  NSL_CUDA_FOR(i, n) dx[i] = y[i] > T(0) ? dy[i] : T(0);
}
}  // namespace cuda::detail

template <class T>
void relu_forward(TensorView<const T, Cuda> x, TensorView<T, Cuda> y) {
  check_shape("relu_forward", "output", y.shape(), x.shape());
  const index n = x.size();
  if (n == 0) return;
  cuda::detail::relu_forward_kernel<T><<<cuda::detail::grid_size(n), cuda::detail::block_size>>>(
      x.data(), y.data(), n);
  cuda::check_launch("relu_forward");
}

/// dx assigned from the forward output y and dy.
template <class T>
void relu_backward(TensorView<const T, Cuda> y, TensorView<const T, Cuda> dy, TensorView<T, Cuda> dx) {
  check_shape("relu_backward", "output gradient", dy.shape(), y.shape());
  check_shape("relu_backward", "input gradient", dx.shape(), y.shape());
  const index n = y.size();
  if (n == 0) return;
  cuda::detail::relu_backward_kernel<T><<<cuda::detail::grid_size(n), cuda::detail::block_size>>>(
      y.data(), dy.data(), dx.data(), n);
  cuda::check_launch("relu_backward");
}

}  // namespace nsl
