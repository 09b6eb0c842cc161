// nsl/cuda/sgd.cuh — one SGD-with-momentum update of a parameter on the GPU,
// the Cuda overload of sgd_momentum_step (nsl/train/sgd.hpp):
//
//     v = μ v + g (+ λ w when λ != 0),   w = w - lr v
//
// One thread per element; with it, Sgd<T, Cuda> runs unchanged.
#pragma once

#include "nsl/cuda/tensor.cuh"
#include "nsl/train/sgd.hpp"

namespace nsl {

namespace cuda::detail {
template <class T>
__global__ void sgd_momentum_kernel(T* value, const T* grad, T* velocity, T momentum, T decay, T rate, index n) {
  NSL_CUDA_FOR(i, n) {
    T v = momentum * velocity[i] + grad[i];
    if (decay != T(0)) v += decay * value[i];  // skipped at 0, as the CPU: 0 * inf would be NaN
    velocity[i] = v;
    value[i] -= rate * v;
  }
}
}  // namespace cuda::detail

/// velocity = μ velocity + grad (+ λ value when decay != 0), then value -= rate velocity.
template <class T>
void sgd_momentum_step(TensorView<T, Cuda> value, TensorView<const T, Cuda> grad, TensorView<T, Cuda> velocity,
                       T momentum, T decay, T rate) {
  check_shape("sgd_momentum_step", "gradient", grad.shape(), value.shape());
  check_shape("sgd_momentum_step", "velocity", velocity.shape(), value.shape());
  const index n = value.size();
  if (n == 0) return;
  cuda::detail::sgd_momentum_kernel<T><<<cuda::detail::grid_size(n), cuda::detail::block_size>>>(
      value.data(), grad.data(), velocity.data(), momentum, decay, rate, n);
  cuda::check_launch("sgd_momentum_step");
}

}  // namespace nsl
