// nsl/cuda/batchnorm.cuh — batch normalisation on the GPU, the Cuda
// overloads of nsl/ops/batchnorm.hpp with the same contracts (math there):
//
//     μ_c = mean x,  σ²_c = mean (x - μ_c)²,  x̂ = (x - μ_c) s_c,  s_c = 1 / sqrt(σ²_c + eps)
//     y = γ_c x̂ + β_c
//     dβ_c += sum dy,  dγ_c += sum dy x̂
//     dx = γ_c s_c (dy - dβ_c / m - x̂ dγ_c / m)    (batch statistics; dx = γ_c s_c dy when fixed)
//
// The per-channel sums run one block per channel: each thread adds its
// strided share of the channel's m = N H W values in double, then a
// fixed-order tree in shared memory adds the threads' partial sums, so the
// result does not depend on scheduling (no atomics). The backward's block
// then writes its channel's dx, after every read of dy (dx may alias dy).
// The running statistics' update is one small kernel that also increments
// the update count on the device, so no step waits for the host.
#pragma once

#include <cmath>

#include "nsl/cuda/tensor.cuh"
#include "nsl/ops/batchnorm.hpp"

namespace nsl {

namespace cuda::detail {


// Block c: mean[c] = sum x / m, variance[c] = sum (x - mean)² / m, both in double.
template <class T>
__global__ void batchnorm_statistics_kernel(const T* x, index N, index C, index P, T* mean, T* variance) {
  const index c = blockIdx.x, m = N * P;
  double sum = 0.0;
  for (index t = threadIdx.x; t < m; t += reduce_block_size) sum += double(x[((t / P) * C + c) * P + t % P]);
  const double mu = block_sum<double>(sum) / double(m);
  double squares = 0.0;
  for (index t = threadIdx.x; t < m; t += reduce_block_size) {
    const double deviation = double(x[((t / P) * C + c) * P + t % P]) - mu;
    squares += deviation * deviation;
  }
  const double sigma2 = block_sum<double>(squares) / double(m);
  if (threadIdx.x == 0) {
    mean[c] = T(mu);
    variance[c] = T(sigma2);
  }
}

// y = γ (x - μ) s + β element-wise; x̂ into normalized unless it is null.
template <class T>
__global__ void batchnorm_forward_kernel(const T* x, const T* mean, const T* variance, const T* gamma,
                                         const T* beta, T eps, index C, index P, index total, T* y, T* normalized) {
  NSL_CUDA_FOR(i, total) {
    const index c = (i / P) % C;
    const T s = T(1) / sqrt(variance[c] + eps);
    const T xhat = (x[i] - mean[c]) * s;
    if (normalized) normalized[i] = xhat;
    y[i] = gamma[c] * xhat + beta[c];
  }
}

// Block c, every backward at once. `source` is x̂, or x when `mean` is
// non-null (x̂ = (x - μ) s recomputed as the forward did). dβ, dγ
// accumulated; dx (unless null) assigned, through the batch statistics or
// with them fixed.
template <class T>
__global__ void batchnorm_backward_kernel(const T* source, const T* mean, const T* variance, const T* gamma,
                                          T eps, bool batch_statistics, const T* dy, index N, index C, index P,
                                          T* dx, T* dgamma, T* dbeta) {
  const index c = blockIdx.x, m = N * P;
  const T s = T(1) / sqrt(variance[c] + eps), mu = mean ? mean[c] : T(0);
  double partial_dy = 0.0, partial_dy_xhat = 0.0;
  for (index t = threadIdx.x; t < m; t += reduce_block_size) {
    const index i = ((t / P) * C + c) * P + t % P;
    const T xhat = mean ? (source[i] - mu) * s : source[i];
    partial_dy += double(dy[i]);
    partial_dy_xhat += double(dy[i]) * double(xhat);
  }
  const double sum_dy = block_sum<double>(partial_dy);
  const double sum_dy_xhat = block_sum<double>(partial_dy_xhat);
  if (threadIdx.x == 0) {
    dbeta[c] += T(sum_dy);
    dgamma[c] += T(sum_dy_xhat);
  }
  if (!dx) return;
  const T scale = gamma[c] / sqrt(variance[c] + eps);
  const T mean_dy = batch_statistics ? T(sum_dy / double(m)) : T(0);
  const T mean_dy_xhat = batch_statistics ? T(sum_dy_xhat / double(m)) : T(0);
  for (index t = threadIdx.x; t < m; t += reduce_block_size) {
    const index i = ((t / P) * C + c) * P + t % P;
    const T xhat = mean ? (source[i] - mu) * s : source[i];
    dx[i] = batch_statistics ? scale * (dy[i] - mean_dy - xhat * mean_dy_xhat) : scale * dy[i];
  }
}

// updates += 1, w = 1 - d (debiased: (1 - d) / (1 - d^updates)), then per channel
//     running_mean += w (mean - running_mean),  running_variance += w (bessel variance - running_variance).
// One block: every thread reads the count before thread 0 writes it.
template <class T>
__global__ void batchnorm_update_running_kernel(const T* mean, const T* variance, index C, T bessel, double decay,
                                                bool debias, T* running_mean, T* running_variance, T* updates) {
  const T count = updates[0] + T(1);
  __syncthreads();
  if (threadIdx.x == 0) updates[0] = count;
  const T w = T(debias ? (1.0 - decay) / (1.0 - pow(decay, double(count))) : 1.0 - decay);
  for (index c = threadIdx.x; c < C; c += blockDim.x) {
    running_mean[c] += w * (mean[c] - running_mean[c]);
    running_variance[c] += w * (bessel * variance[c] - running_variance[c]);
  }
}

// Checks the per-channel tensors the kernel reads (the CPU indexes them
// unchecked) and runs the backward kernel, one block per channel.
template <class T>
void batchnorm_backward_launch(const char* op, const T* source, const T* mean, TensorView<const T, Cuda> variance,
                               TensorView<const T, Cuda> gamma, T eps, bool batch_statistics,
                               TensorView<const T, Cuda> dy, TensorView<T, Cuda> dx, TensorView<T, Cuda> dgamma,
                               TensorView<T, Cuda> dbeta) {
  check_shape(op, "variance", variance.shape(), gamma.shape());
  check_shape(op, "gamma gradient", dgamma.shape(), gamma.shape());
  check_shape(op, "beta gradient", dbeta.shape(), gamma.shape());
  const index N = dy.dim(0), C = dy.dim(1), P = dy.dim(2) * dy.dim(3);
  if (C == 0) return;
  batchnorm_backward_kernel<T><<<static_cast<unsigned>(C), reduce_block_size>>>(
      source, mean, variance.data(), gamma.data(), eps, batch_statistics, dy.data(), N, C, P,
      dx.size() ? dx.data() : nullptr, dgamma.data(), dbeta.data());
  check_launch(op);
}

}  // namespace cuda::detail

/// Per-channel mean and biased variance of x over N, H, W (two passes, in double).
template <class T>
void batchnorm_statistics(TensorView<const T, Cuda> x, TensorView<T, Cuda> mean, TensorView<T, Cuda> variance) {
  check_batchnorm_shapes("batchnorm_statistics", x.shape(), mean.shape());
  check_shape("batchnorm_statistics", "variance", variance.shape(), mean.shape());
  const index N = x.dim(0), C = x.dim(1), P = x.dim(2) * x.dim(3);
  if (C == 0) return;
  cuda::detail::batchnorm_statistics_kernel<T><<<static_cast<unsigned>(C), cuda::detail::reduce_block_size>>>(
      x.data(), N, C, P, mean.data(), variance.data());
  cuda::check_launch("batchnorm_statistics");
}

/// y = γ (x - mean) / sqrt(variance + eps) + β, and x̂ into normalized (if non-empty).
template <class T>
void batchnorm_forward(TensorView<const T, Cuda> x, TensorView<const T, Cuda> mean,
                       TensorView<const T, Cuda> variance, TensorView<const T, Cuda> gamma,
                       TensorView<const T, Cuda> beta, T eps, TensorView<T, Cuda> y, TensorView<T, Cuda> normalized) {
  check_batchnorm_shapes("batchnorm_forward", x.shape(), gamma.shape());
  check_shape("batchnorm_forward", "output", y.shape(), x.shape());
  if (normalized.size()) check_shape("batchnorm_forward", "normalized", normalized.shape(), x.shape());
  // The CPU reads these by index; on the device a short one would be read past its end.
  check_shape("batchnorm_forward", "mean", mean.shape(), gamma.shape());
  check_shape("batchnorm_forward", "variance", variance.shape(), gamma.shape());
  check_shape("batchnorm_forward", "beta", beta.shape(), gamma.shape());
  const index total = x.size();
  if (total == 0) return;
  cuda::detail::batchnorm_forward_kernel<T><<<cuda::detail::grid_size(total), cuda::detail::block_size>>>(
      x.data(), mean.data(), variance.data(), gamma.data(), beta.data(), eps, x.dim(1), x.dim(2) * x.dim(3), total,
      y.data(), normalized.size() ? normalized.data() : nullptr);
  cuda::check_launch("batchnorm_forward");
}

/// Backward through batch statistics (training mode). dx assigned (unless
/// empty); dγ, dβ accumulated.
template <class T>
void batchnorm_backward(TensorView<const T, Cuda> normalized, TensorView<const T, Cuda> variance,
                        TensorView<const T, Cuda> gamma, T eps, TensorView<const T, Cuda> dy, TensorView<T, Cuda> dx,
                        TensorView<T, Cuda> dgamma, TensorView<T, Cuda> dbeta) {
  check_batchnorm_shapes("batchnorm_backward", normalized.shape(), gamma.shape());
  check_shape("batchnorm_backward", "output gradient", dy.shape(), normalized.shape());
  if (dx.size()) check_shape("batchnorm_backward", "input gradient", dx.shape(), normalized.shape());
  cuda::detail::batchnorm_backward_launch<T>("batchnorm_backward", normalized.data(), nullptr, variance, gamma, eps,
                                             true, dy, dx, dgamma, dbeta);
}

/// The backwards above from the input x and the statistics that normalised
/// it (x̂ recomputed); batch_statistics: training, else fixed statistics.
template <class T>
void batchnorm_backward_from_input(TensorView<const T, Cuda> x, TensorView<const T, Cuda> mean,
                                   TensorView<const T, Cuda> variance, TensorView<const T, Cuda> gamma, T eps,
                                   bool batch_statistics, TensorView<const T, Cuda> dy, TensorView<T, Cuda> dx,
                                   TensorView<T, Cuda> dgamma, TensorView<T, Cuda> dbeta) {
  check_batchnorm_shapes("batchnorm_backward_from_input", x.shape(), gamma.shape());
  check_shape("batchnorm_backward_from_input", "output gradient", dy.shape(), x.shape());
  if (dx.size()) check_shape("batchnorm_backward_from_input", "input gradient", dx.shape(), x.shape());
  check_shape("batchnorm_backward_from_input", "mean", mean.shape(), gamma.shape());
  cuda::detail::batchnorm_backward_launch<T>("batchnorm_backward_from_input", x.data(), mean.data(), variance, gamma,
                                             eps, batch_statistics, dy, dx, dgamma, dbeta);
}

/// Backward with fixed statistics (evaluation mode). dx assigned (unless
/// empty); dγ, dβ accumulated.
template <class T>
void batchnorm_backward_fixed(TensorView<const T, Cuda> normalized, TensorView<const T, Cuda> variance,
                              TensorView<const T, Cuda> gamma, T eps, TensorView<const T, Cuda> dy,
                              TensorView<T, Cuda> dx, TensorView<T, Cuda> dgamma, TensorView<T, Cuda> dbeta) {
  check_batchnorm_shapes("batchnorm_backward_fixed", normalized.shape(), gamma.shape());
  check_shape("batchnorm_backward_fixed", "output gradient", dy.shape(), normalized.shape());
  if (dx.size()) check_shape("batchnorm_backward_fixed", "input gradient", dx.shape(), normalized.shape());
  cuda::detail::batchnorm_backward_launch<T>("batchnorm_backward_fixed", normalized.data(), nullptr, variance, gamma,
                                             eps, false, dy, dx, dgamma, dbeta);
}

/// The running statistics' update after a training forward over m values per
/// channel (nsl/ops/batchnorm.hpp), all on the device: updates += 1, then
/// running_mean += w (mean - running_mean), running_variance += w (m / (m - 1)
/// variance - running_variance), w = 1 - d or, debiased, (1 - d) / (1 - d^updates).
template <class T>
void batchnorm_update_running(TensorView<const T, Cuda> mean, TensorView<const T, Cuda> variance, index m,
                              double decay, bool debias, TensorView<T, Cuda> running_mean,
                              TensorView<T, Cuda> running_variance, TensorView<T, Cuda> updates) {
  check_shape("batchnorm_update_running", "running mean", running_mean.shape(), mean.shape());
  check_shape("batchnorm_update_running", "running variance", running_variance.shape(), mean.shape());
  check_shape("batchnorm_update_running", "variance", variance.shape(), mean.shape());
  check_shape("batchnorm_update_running", "updates", updates.shape(), Shape{1});
  const T bessel = m > 1 ? T(double(m) / double(m - 1)) : T(1);
  cuda::detail::batchnorm_update_running_kernel<T><<<1, cuda::detail::block_size>>>(
      mean.data(), variance.data(), mean.size(), bessel, decay, debias, running_mean.data(),
      running_variance.data(), updates.data());
  cuda::check_launch("batchnorm_update_running");
}

}  // namespace nsl
