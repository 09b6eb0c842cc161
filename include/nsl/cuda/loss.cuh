// nsl/cuda/loss.cuh — softmax cross-entropy with label smoothing on the GPU,
// the Cuda overload of nsl/train/loss.hpp with the same contract (math there):
//
//     t[n, k] = (1 - ε) [k == y_n] + ε / K,   lse_n = m_n + log sum_k exp(z[n, k] - m_n)
//     L = (1/N) sum_n sum_k t[n, k] (lse_n - z[n, k]),   dL/dz = (p - t) / N   (dlogits assigned)
//
// One thread per sample runs the CPU's loop in double. The per-sample losses
// and hits come back to the host, which adds them in sample order (so the
// result does not depend on scheduling). The labels go up and the sums come
// down through a caller-kept workspace, so a step allocates nothing after
// the first.
#pragma once

#include <vector>

#include "nsl/cuda/tensor.cuh"
#include "nsl/train/loss.hpp"

namespace nsl {

/// Device and host scratch of softmax_cross_entropy on the GPU, kept across steps.
template <class T>
struct CrossEntropyWorkspace {
  cuda::DeviceMemory<int> labels;         ///< y_n on the device
  cuda::DeviceMemory<double> per_sample;  ///< N losses, then N hits (1 where the top logit is the label)
  std::vector<double> host;               ///< per_sample downloaded

  void reserve(index samples) {
    labels.reserve(samples);
    per_sample.reserve(2 * samples);
    host.resize(static_cast<std::size_t>(2 * samples));  // no allocation once large enough
  }
};

namespace cuda::detail {
// Thread n: sample n's loss sum_k t_k (lse - z_k) and hit into per_sample;
// (p - t) / N into dlogits unless it is null.
template <class T>
__global__ void softmax_cross_entropy_kernel(const T* logits, const int* labels, index samples, index classes,
                                             double on_target, double off_target, double* per_sample, T* dlogits) {
  NSL_CUDA_FOR(n, samples) {
    const T* z = logits + n * classes;
    const index label = labels[n];
    index top = 0;
    for (index k = 1; k < classes; ++k)
      if (z[k] > z[top]) top = k;
    const double largest = double(z[top]);
    double exp_sum = 0.0;
    for (index k = 0; k < classes; ++k) exp_sum += exp(double(z[k]) - largest);
    const double log_sum_exp = largest + log(exp_sum);
    double sample_loss = 0.0;
    for (index k = 0; k < classes; ++k)
      sample_loss += (k == label ? on_target : off_target) * (log_sum_exp - double(z[k]));
    per_sample[n] = sample_loss;
    per_sample[samples + n] = top == label ? 1.0 : 0.0;
    if (!dlogits) continue;
    const double inverse_samples = 1.0 / double(samples);
    T* dz = dlogits + n * classes;
    for (index k = 0; k < classes; ++k) {
      const double p = exp(double(z[k]) - log_sum_exp);
      dz[k] = T((p - (k == label ? on_target : off_target)) * inverse_samples);
    }
  }
}
}  // namespace cuda::detail

/// L and, unless dlogits is empty, dL/dz assigned into dlogits; scratch in `workspace`.
template <class T>
LossResult softmax_cross_entropy(TensorView<const T, Cuda> logits, const std::vector<int>& labels, double smoothing,
                                 TensorView<T, Cuda> dlogits, CrossEntropyWorkspace<T>& workspace) {
  const index classes = check_cross_entropy_shapes("softmax_cross_entropy", logits.shape(), labels, smoothing,
                                                    dlogits.shape());
  const index samples = logits.dim(0);
  const double off_target = smoothing / static_cast<double>(classes);  // t for k != y
  const double on_target = 1.0 - smoothing + off_target;              // t for k == y
  workspace.reserve(samples);
  cuda::check(cudaMemcpy(workspace.labels.data(), labels.data(), sizeof(int) * std::size_t(samples),
                         cudaMemcpyHostToDevice),
              "softmax_cross_entropy: labels upload");
  cuda::detail::softmax_cross_entropy_kernel<T><<<cuda::detail::grid_size(samples), cuda::detail::block_size>>>(
      logits.data(), workspace.labels.data(), samples, classes, on_target, off_target, workspace.per_sample.data(),
      dlogits.size() ? dlogits.data() : nullptr);
  cuda::check_launch("softmax_cross_entropy");
  cuda::check(cudaMemcpy(workspace.host.data(), workspace.per_sample.data(), sizeof(double) * std::size_t(2 * samples),
                         cudaMemcpyDeviceToHost),
              "softmax_cross_entropy: per-sample download");
  LossResult result;
  double loss_sum = 0.0;
  for (index n = 0; n < samples; ++n) {
    loss_sum += workspace.host[static_cast<std::size_t>(n)];
    if (workspace.host[static_cast<std::size_t>(samples + n)] != 0.0) ++result.correct;
  }
  result.loss = loss_sum * (1.0 / static_cast<double>(samples));
  return result;
}

/// The same with a workspace of its own (allocates on every call).
template <class T>
LossResult softmax_cross_entropy(TensorView<const T, Cuda> logits, const std::vector<int>& labels, double smoothing,
                                 TensorView<T, Cuda> dlogits) {
  CrossEntropyWorkspace<T> workspace;
  return softmax_cross_entropy<T>(logits, labels, smoothing, dlogits, workspace);
}

}  // namespace nsl
