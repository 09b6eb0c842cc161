// nsl/ops/batchnorm.hpp — batch normalisation over N, H, W per channel.
//
// Training (statistics of the batch, m = N H W values per channel c):
//     μ_c = mean x,   σ²_c = mean (x - μ_c)²  (biased),   x̂ = (x - μ_c) / sqrt(σ²_c + eps)
//     y = γ_c x̂ + β_c
// Backward (docs/dynamic_nsl.md derives it), with s_c = 1 / sqrt(σ²_c + eps):
//     dβ_c = sum dy          dγ_c = sum dy x̂
//     dx = γ_c s_c (dy - dβ_c / m - x̂ dγ_c / m)
// Evaluation (fixed statistics μ_c, σ²_c): y is affine in x, so
//     dx = γ_c s_c dy,  dγ_c = sum dy x̂,  dβ_c = sum dy.
// dx assigned; dγ, dβ accumulated.
#pragma once

#include <cmath>

#include "nsl/core/replicas.hpp"
#include "nsl/core/tensor.hpp"
#include "nsl/core/threads.hpp"

namespace nsl {

/// Fails (ShapeError, naming `op`) unless x is N x C x H x W and a
/// per-channel tensor (mean, variance, gamma, ...) has shape [C].
inline void check_batchnorm_shapes(const char* op, const Shape& x, const Shape& per_channel) {
  check_rank(op, "input", x, 4);
  check_shape(op, "per-channel statistics", per_channel, Shape{x[1]});
}

namespace detail {
// Sum of one plane v[0..n) and of (v[i] - mu)^2: Eigen's vectorised
// reduction in T within the plane (n = H W values); the callers add the
// planes' sums in double.
template <class T>
double plane_sum(const T* v, index n) {
  return double(Eigen::Map<const Vector<T>>(v, n).sum());
}
template <class T>
double plane_squared_deviation_sum(const T* v, index n, double mu) {
  return double((Eigen::Map<const Vector<T>>(v, n).array() - T(mu)).square().sum());
}
}  // namespace detail

/// Per-channel mean and biased variance of x over N, H, W (two passes; each
/// plane summed in T, the planes in double; channels spread over threads).
template <class T>
void batchnorm_statistics(TensorView<const T> x, TensorView<T> mean, TensorView<T> variance) {
  check_batchnorm_shapes("batchnorm_statistics", x.shape(), mean.shape());
  check_shape("batchnorm_statistics", "variance", variance.shape(), mean.shape());
  const index N = x.dim(0), C = x.dim(1), P = x.dim(2) * x.dim(3);
  const double m = double(N * P);
  const T* data = x.data();
  parallel_ranges(C, 1, [&](index c_begin, index c_end) {
    for (index c = c_begin; c < c_end; ++c) {
      double sum = 0.0;
      for (index n = 0; n < N; ++n) sum += detail::plane_sum(data + (n * C + c) * P, P);
      const double mu = sum / m;
      double squares = 0.0;
      for (index n = 0; n < N; ++n) squares += detail::plane_squared_deviation_sum(data + (n * C + c) * P, P, mu);
      mean[c] = T(mu);
      variance[c] = T(squares / m);
    }
  });
}

/// Synchronised BatchNorm (several replicas, each with its part of the
/// batch): the per-channel mean and biased variance over N, H, W of every
/// replica's x, the same on each. The same two passes as
/// batchnorm_statistics, each followed by a sum over the replicas: the sums
/// (and the replicas' value counts), then the squared deviations from the
/// common mean. `scratch` holds C + 1 doubles. Returns m, the number of
/// values per channel over all replicas.
template <class T>
index batchnorm_statistics_across(TensorView<const T> x, ReplicaSum& replicas, double* scratch, TensorView<T> mean,
                                  TensorView<T> variance) {
  check_batchnorm_shapes("batchnorm_statistics_across", x.shape(), mean.shape());
  check_shape("batchnorm_statistics_across", "variance", variance.shape(), mean.shape());
  const index N = x.dim(0), C = x.dim(1), P = x.dim(2) * x.dim(3);
  const T* data = x.data();
  parallel_ranges(C, 1, [&](index c_begin, index c_end) {
    for (index c = c_begin; c < c_end; ++c) {
      double sum = 0.0;
      for (index n = 0; n < N; ++n) sum += detail::plane_sum(data + (n * C + c) * P, P);
      scratch[c] = sum;
    }
  });
  scratch[C] = double(N * P);
  replicas.sum(scratch, std::size_t(C + 1));
  const double m = scratch[C];
  require(m >= 1, ErrorKind::shape, "batchnorm_statistics_across: no values in any replica's batch");
  parallel_ranges(C, 1, [&](index c_begin, index c_end) {
    for (index c = c_begin; c < c_end; ++c) {
      const double mu = scratch[c] / m;
      double squares = 0.0;
      for (index n = 0; n < N; ++n) squares += detail::plane_squared_deviation_sum(data + (n * C + c) * P, P, mu);
      mean[c] = T(mu);
      scratch[c] = squares;
    }
  });
  replicas.sum(scratch, std::size_t(C));
  for (index c = 0; c < C; ++c) variance[c] = T(scratch[c] / m);
  return index(m);
}

/// y = γ (x - mean) / sqrt(variance + eps) + β, and x̂ into normalized (if non-empty).
template <class T>
void batchnorm_forward(TensorView<const T> x, TensorView<const T> mean, TensorView<const T> variance,
                       TensorView<const T> gamma, TensorView<const T> beta, T eps, TensorView<T> y,
                       TensorView<T> normalized) {
  check_batchnorm_shapes("batchnorm_forward", x.shape(), gamma.shape());
  check_shape("batchnorm_forward", "output", y.shape(), x.shape());
  if (normalized.size()) check_shape("batchnorm_forward", "normalized", normalized.shape(), x.shape());
  const index N = x.dim(0), C = x.dim(1), P = x.dim(2) * x.dim(3);
  parallel_ranges(N * C, 1, [&](index begin, index end) {
    for (index plane = begin; plane < end; ++plane) {
      const index c = plane % C, offset = plane * P;
      const T s = T(1) / std::sqrt(variance[c] + eps), mu = mean[c], g = gamma[c], b = beta[c];
      const T* xp = x.data() + offset;
      T* yp = y.data() + offset;
      if (normalized.size()) {  // two loops without a branch inside: both vectorise
        T* np = normalized.data() + offset;
        for (index p = 0; p < P; ++p) {
          const T xhat = (xp[p] - mu) * s;
          np[p] = xhat;
          yp[p] = g * xhat + b;
        }
      } else {
        for (index p = 0; p < P; ++p) yp[p] = g * ((xp[p] - mu) * s) + b;
      }
    }
  });
}

/// Backward through batch statistics (training mode). dx assigned; dγ, dβ accumulated.
template <class T>
void batchnorm_backward(TensorView<const T> normalized, TensorView<const T> variance,
                        TensorView<const T> gamma, T eps, TensorView<const T> dy, TensorView<T> dx,
                        TensorView<T> dgamma, TensorView<T> dbeta) {
  check_batchnorm_shapes("batchnorm_backward", normalized.shape(), gamma.shape());
  check_shape("batchnorm_backward", "output gradient", dy.shape(), normalized.shape());
  if (dx.size()) check_shape("batchnorm_backward", "input gradient", dx.shape(), normalized.shape());
  const index N = dy.dim(0), C = dy.dim(1), P = dy.dim(2) * dy.dim(3);
  const T m = T(N * P);
  parallel_ranges(C, 1, [&](index c_begin, index c_end) {
    for (index c = c_begin; c < c_end; ++c) {
      // Eigen's reductions are vectorised (a plain float sum loop is not:
      // the compiler may not reorder the additions).
      T sum_dy = 0, sum_dy_xhat = 0;
      for (index n = 0; n < N; ++n) {
        const index offset = (n * C + c) * P;
        const Eigen::Map<const Vector<T>> dy_plane(dy.data() + offset, P), xhat_plane(normalized.data() + offset, P);
        sum_dy += dy_plane.sum();
        sum_dy_xhat += dy_plane.dot(xhat_plane);
      }
      dbeta[c] += sum_dy;
      dgamma[c] += sum_dy_xhat;
      if (!dx.size()) continue;
      const T scale = gamma[c] / std::sqrt(variance[c] + eps);
      const T mean_dy = sum_dy / m, mean_dy_xhat = sum_dy_xhat / m;
      for (index n = 0; n < N; ++n) {
        const index offset = (n * C + c) * P;
        const T *dyp = dy.data() + offset, *xhatp = normalized.data() + offset;
        T* dxp = dx.data() + offset;
        for (index p = 0; p < P; ++p) dxp[p] = scale * (dyp[p] - mean_dy - xhatp[p] * mean_dy_xhat);
      }
    }
  });
}

/// The two backwards above computed from the input x and the statistics
/// (mean, variance) that normalised it instead of a stored x̂: x̂ is
/// recomputed as the forward computed it, (x - mean) / sqrt(variance + eps),
/// so the results are the same. batch_statistics: through the batch
/// statistics (training) or with them fixed (evaluation). For a layer that
/// keeps its input anyway (a borrowed view), this saves storing x̂.
template <class T>
void batchnorm_backward_from_input(TensorView<const T> x, TensorView<const T> mean, TensorView<const T> variance,
                                   TensorView<const T> gamma, T eps, bool batch_statistics, TensorView<const T> dy,
                                   TensorView<T> dx, TensorView<T> dgamma, TensorView<T> dbeta) {
  check_batchnorm_shapes("batchnorm_backward_from_input", x.shape(), gamma.shape());
  check_shape("batchnorm_backward_from_input", "output gradient", dy.shape(), x.shape());
  if (dx.size()) check_shape("batchnorm_backward_from_input", "input gradient", dx.shape(), x.shape());
  const index N = dy.dim(0), C = dy.dim(1), P = dy.dim(2) * dy.dim(3);
  const T m = T(N * P);
  using Plane = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
  parallel_ranges(C, 1, [&](index c_begin, index c_end) {
    for (index c = c_begin; c < c_end; ++c) {
      const T s = T(1) / std::sqrt(variance[c] + eps), mu = mean[c];
      T sum_dy = 0, sum_dy_xhat = 0;
      for (index n = 0; n < N; ++n) {
        const index offset = (n * C + c) * P;
        const Plane dy_plane(dy.data() + offset, P), x_plane(x.data() + offset, P);
        sum_dy += dy_plane.sum();
        sum_dy_xhat += (dy_plane * ((x_plane - mu) * s)).sum();
      }
      dbeta[c] += sum_dy;
      dgamma[c] += sum_dy_xhat;
      if (!dx.size()) continue;
      const T scale = gamma[c] / std::sqrt(variance[c] + eps);
      const T mean_dy = batch_statistics ? sum_dy / m : T(0), mean_dy_xhat = batch_statistics ? sum_dy_xhat / m : T(0);
      for (index n = 0; n < N; ++n) {
        const index offset = (n * C + c) * P;
        const T *dyp = dy.data() + offset, *xp = x.data() + offset;
        T* dxp = dx.data() + offset;
        if (batch_statistics)
          for (index p = 0; p < P; ++p) dxp[p] = scale * (dyp[p] - mean_dy - ((xp[p] - mu) * s) * mean_dy_xhat);
        else
          for (index p = 0; p < P; ++p) dxp[p] = scale * dyp[p];
      }
    }
  });
}

/// Backward through statistics summed over replicas (batchnorm_statistics_across,
/// m values per channel in all): dx = γ s (dy - Σdy / m - x̂ Σdy x̂ / m) with
/// both sums taken over every replica's batch, so each replica's dx is its
/// part of what one process with the whole batch computes; dγ and dβ get
/// this replica's own sums (the data-parallel gradient sum adds the
/// others'). x̂ is `normalized`, or recomputed from x, mean and variance as
/// the forward computed it when `normalized` is empty. dx assigned (skipped
/// when empty; the sums are still taken, as every replica must); dγ, dβ
/// accumulated. `scratch` holds 2 C doubles.
template <class T>
void batchnorm_backward_across(TensorView<const T> x, TensorView<const T> normalized, TensorView<const T> mean,
                               TensorView<const T> variance, TensorView<const T> gamma, T eps, index m,
                               ReplicaSum& replicas, double* scratch, TensorView<const T> dy, TensorView<T> dx,
                               TensorView<T> dgamma, TensorView<T> dbeta) {
  const TensorView<const T> source = normalized.size() ? normalized : x;
  check_batchnorm_shapes("batchnorm_backward_across", source.shape(), gamma.shape());
  check_shape("batchnorm_backward_across", "output gradient", dy.shape(), source.shape());
  if (dx.size()) check_shape("batchnorm_backward_across", "input gradient", dx.shape(), source.shape());
  const index N = dy.dim(0), C = dy.dim(1), P = dy.dim(2) * dy.dim(3);
  const bool from_input = normalized.size() == 0;
  using Plane = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
  parallel_ranges(C, 1, [&](index c_begin, index c_end) {
    for (index c = c_begin; c < c_end; ++c) {
      const T s = T(1) / std::sqrt(variance[c] + eps), mu = mean[c];
      double sum_dy = 0, sum_dy_xhat = 0;
      for (index n = 0; n < N; ++n) {
        const index offset = (n * C + c) * P;
        const Plane dy_plane(dy.data() + offset, P), plane(source.data() + offset, P);
        sum_dy += double(dy_plane.sum());
        sum_dy_xhat += from_input ? double((dy_plane * ((plane - mu) * s)).sum()) : double((dy_plane * plane).sum());
      }
      dbeta[c] += T(sum_dy);
      dgamma[c] += T(sum_dy_xhat);
      scratch[c] = sum_dy;
      scratch[C + c] = sum_dy_xhat;
    }
  });
  replicas.sum(scratch, std::size_t(2 * C));
  if (!dx.size()) return;
  parallel_ranges(C, 1, [&](index c_begin, index c_end) {
    for (index c = c_begin; c < c_end; ++c) {
      const T s = T(1) / std::sqrt(variance[c] + eps), mu = mean[c], scale = gamma[c] * s;
      const T mean_dy = T(scratch[c] / double(m)), mean_dy_xhat = T(scratch[C + c] / double(m));
      for (index n = 0; n < N; ++n) {
        const index offset = (n * C + c) * P;
        const T *dyp = dy.data() + offset, *sp = source.data() + offset;
        T* dxp = dx.data() + offset;
        if (from_input)
          for (index p = 0; p < P; ++p) dxp[p] = scale * (dyp[p] - mean_dy - ((sp[p] - mu) * s) * mean_dy_xhat);
        else
          for (index p = 0; p < P; ++p) dxp[p] = scale * (dyp[p] - mean_dy - sp[p] * mean_dy_xhat);
      }
    }
  });
}

/// Backward with fixed statistics (evaluation mode). dx assigned; dγ, dβ accumulated.
template <class T>
void batchnorm_backward_fixed(TensorView<const T> normalized, TensorView<const T> variance,
                              TensorView<const T> gamma, T eps, TensorView<const T> dy, TensorView<T> dx,
                              TensorView<T> dgamma, TensorView<T> dbeta) {
  check_batchnorm_shapes("batchnorm_backward_fixed", normalized.shape(), gamma.shape());
  check_shape("batchnorm_backward_fixed", "output gradient", dy.shape(), normalized.shape());
  const index N = dy.dim(0), C = dy.dim(1), P = dy.dim(2) * dy.dim(3);
  for (index n = 0; n < N; ++n)
    for (index c = 0; c < C; ++c) {
      const T scale = gamma[c] / std::sqrt(variance[c] + eps);
      for (index p = 0; p < P; ++p) {
        const index i = (n * C + c) * P + p;
        dbeta[c] += dy[i];
        dgamma[c] += dy[i] * normalized[i];
        if (dx.size()) dx[i] = scale * dy[i];
      }
    }
}

/// The running statistics' update after a training forward over m values per
/// channel: updates += 1, then with w = 1 - d (or, debiased, (1 - d) / (1 - d^updates))
///     running_mean     += w (mean - running_mean)
///     running_variance += w (m / (m - 1) variance - running_variance)
/// (the unbiased variance; m / (m - 1) is 1 when m == 1). `updates` holds one
/// count, kept as a tensor so that checkpoints save it with the statistics.
template <class T>
void batchnorm_update_running(TensorView<const T> mean, TensorView<const T> variance, index m, double decay,
                              bool debias, TensorView<T> running_mean, TensorView<T> running_variance,
                              TensorView<T> updates) {
  check_shape("batchnorm_update_running", "running mean", running_mean.shape(), mean.shape());
  check_shape("batchnorm_update_running", "running variance", running_variance.shape(), mean.shape());
  check_shape("batchnorm_update_running", "variance", variance.shape(), mean.shape());
  check_shape("batchnorm_update_running", "updates", updates.shape(), Shape{1});
  const T bessel = m > 1 ? T(double(m) / double(m - 1)) : T(1);
  updates[0] += T(1);
  const T w = T(debias ? (1.0 - decay) / (1.0 - std::pow(decay, double(updates[0]))) : 1.0 - decay);
  running_mean.vec() += w * (mean.vec() - running_mean.vec());
  running_variance.vec() += w * (bessel * variance.vec() - running_variance.vec());
}

}  // namespace nsl
