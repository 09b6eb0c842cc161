// nsl/train/loss.hpp — softmax cross-entropy with label smoothing, averaged
// over the batch, and its gradient with respect to the logits.
//
// For logits z (N x K, or N x K x 1 x 1 as CNN-9's score convolution gives),
// labels y_n in [0, K) and smoothing ε in [0, 1] (NSL.md §5: ε = 0.01, i.e.
// targets 0.99 one-hot + 0.01/K):
//
//     t[n, k] = (1 - ε) [k == y_n] + ε / K
//     p[n, k] = exp(z[n, k]) / sum_j exp(z[n, j])
//     L       = -(1/N) sum_n sum_k t[n, k] log p[n, k]
//     dL/dz   = (p - t) / N                                  (dlogits assigned)
//
// Computed stably: with m_n = max_k z[n, k] and lse_n = m_n + log sum_k
// exp(z[n, k] - m_n), -log p[n, k] = lse_n - z[n, k] >= 0, summed term by
// term, so logits of 1e4 give a finite loss and gradient. Arithmetic is in
// double whatever T is. `correct` counts samples whose first largest logit
// is the label. An empty dlogits view skips the gradient (evaluation).
//
// `softmax_cross_entropy_reference` is the formula as it reads (plain
// exp / sum, so it overflows for logits beyond ~700; tests only).
#pragma once

#include <cmath>
#include <vector>

#include "nsl/core/tensor.hpp"

namespace nsl {

/// The batch-averaged loss and how many samples the logits classify correctly.
struct LossResult {
  double loss = 0.0;
  index correct = 0;
};

/// Device scratch of the GPU loss (nsl/cuda/loss.cuh): labels and per-sample
/// results, kept across steps. The CPU version needs none.
template <class T>
struct CrossEntropyWorkspace;

/// Validates logits, labels, smoothing and (if non-empty) dlogits; returns the
/// class count (the CPU and the CUDA loss share it).
inline index check_cross_entropy_shapes(const char* op, const Shape& logits, const std::vector<int>& labels,
                                 double smoothing, const Shape& dlogits) {
  const bool plain = logits.rank() == 2;
  const bool score_map = logits.rank() == 4 && logits[2] == 1 && logits[3] == 1;
  require(plain || score_map, ErrorKind::shape, op,
          ": logits: expected [N, classes] or [N, classes, 1, 1], got ", logits);
  const index samples = logits[0], classes = logits[1];
  require(samples >= 1, ErrorKind::shape, op, ": logits: expected at least one sample, got ", logits);
  require(classes >= 1, ErrorKind::shape, op, ": logits: expected at least one class, got ", logits);
  require(static_cast<index>(labels.size()) == samples, ErrorKind::shape, op, ": labels: expected ",
          samples, " (one per sample), got ", labels.size());
  for (std::size_t n = 0; n < labels.size(); ++n)
    require(labels[n] >= 0 && labels[n] < classes, ErrorKind::argument, op, ": labels: expected ",
            "each in [0, ", classes, "), got ", labels[n], " for sample ", n);
  require(smoothing >= 0.0 && smoothing <= 1.0, ErrorKind::argument, op,
          ": smoothing: expected in [0, 1], got ", smoothing);
  if (dlogits.rank() != 0 && dlogits.size() != 0) check_shape(op, "logit gradient", dlogits, logits);
  return classes;
}

/// L and, unless dlogits is empty, dL/dz assigned into dlogits (see above).
template <class T>
LossResult softmax_cross_entropy(TensorView<const T> logits, const std::vector<int>& labels,
                                 double smoothing, TensorView<T> dlogits) {
  const index classes = check_cross_entropy_shapes("softmax_cross_entropy", logits.shape(), labels,
                                                    smoothing, dlogits.shape());
  const index samples = logits.dim(0);
  const bool want_gradient = dlogits.size() != 0;
  const double off_target = smoothing / static_cast<double>(classes);  // t for k != y
  const double on_target = 1.0 - smoothing + off_target;              // t for k == y
  const double inverse_samples = 1.0 / static_cast<double>(samples);
  LossResult result;
  double loss_sum = 0.0;
  for (index n = 0; n < samples; ++n) {
    const T* z = logits.data() + n * classes;
    const index label = labels[static_cast<std::size_t>(n)];
    index top = 0;
    for (index k = 1; k < classes; ++k)
      if (z[k] > z[top]) top = k;
    if (top == label) ++result.correct;
    const double largest = static_cast<double>(z[top]);
    double exp_sum = 0.0;
    for (index k = 0; k < classes; ++k) exp_sum += std::exp(static_cast<double>(z[k]) - largest);
    const double log_sum_exp = largest + std::log(exp_sum);
    // sum_k t_k (lse - z_k): every term is >= 0, none cancels.
    double sample_loss = 0.0;
    for (index k = 0; k < classes; ++k) {
      const double neg_log_p = log_sum_exp - static_cast<double>(z[k]);
      sample_loss += (k == label ? on_target : off_target) * neg_log_p;
    }
    loss_sum += sample_loss;
    if (want_gradient) {
      T* dz = dlogits.data() + n * classes;
      for (index k = 0; k < classes; ++k) {
        const double p = std::exp(static_cast<double>(z[k]) - log_sum_exp);
        dz[k] = static_cast<T>((p - (k == label ? on_target : off_target)) * inverse_samples);
      }
    }
  }
  result.loss = loss_sum * inverse_samples;
  return result;
}

/// The formula as it reads: explicit targets, p = exp(z) / sum exp(z), no
/// shift (finite only for moderate logits). Same contract as above.
template <class T>
LossResult softmax_cross_entropy_reference(TensorView<const T> logits, const std::vector<int>& labels,
                                           double smoothing, TensorView<T> dlogits) {
  const index K = check_cross_entropy_shapes("softmax_cross_entropy_reference", logits.shape(),
                                              labels, smoothing, dlogits.shape());
  const index N = logits.dim(0);
  LossResult result;
  for (index n = 0; n < N; ++n) {
    const int y = labels[static_cast<std::size_t>(n)];
    std::vector<double> t(static_cast<std::size_t>(K)), p(static_cast<std::size_t>(K));
    double denominator = 0.0;
    for (index k = 0; k < K; ++k) denominator += std::exp(static_cast<double>(logits(n, k)));
    index top = 0;
    for (index k = 0; k < K; ++k) {
      const auto kk = static_cast<std::size_t>(k);
      t[kk] = (1.0 - smoothing) * (k == y ? 1.0 : 0.0) + smoothing / static_cast<double>(K);
      p[kk] = std::exp(static_cast<double>(logits(n, k))) / denominator;
      result.loss -= t[kk] * std::log(p[kk]) / static_cast<double>(N);
      if (logits(n, k) > logits(n, top)) top = k;
    }
    if (top == y) ++result.correct;
    if (dlogits.size())
      for (index k = 0; k < K; ++k)
        dlogits(n, k) = static_cast<T>((p[static_cast<std::size_t>(k)] - t[static_cast<std::size_t>(k)]) /
                                       static_cast<double>(N));
  }
  return result;
}

}  // namespace nsl
