// nsl/cuda/sphere.cuh — the pieces of SphereConv (nsl/ops/sphere.hpp) on the
// GPU, with the CPU's semantics and checks:
//
//     n(p) = sqrt( sum_{c, window} x^2 + eps )          local_input_norm
//     dx  += x ∘ col2im(dn / n)                          local_input_norm_backward
//     ||w_o|| = sqrt( sum w_o^2 + eps )                  filter_norm
//     dw_o += dnorm_o w_o / ||w_o||                      filter_norm_backward
//     c = z / (a_o n),  y = f(c)                         sphere_response_forward
//     dz = dy f'(c) / (a_o n),  dn = -sum_o dy f'(c) c / n    sphere_response_backward
//     da_o = -sum_{n,p} dz n c                           sphere_filter_norm_gradient
//
// Every sum has a fixed order: one thread per output summing a loop, or one
// block per output with fixed per-thread shares and a fixed tree. No atomics.
#pragma once

#include "nsl/cuda/runtime.cuh"
#include "nsl/cuda/tensor.cuh"
#include "nsl/ops/sphere.hpp"

namespace nsl {

/// Device scratch of local_input_norm and its backward, kept by the caller
/// (SphereConv2d) so that repeated calls allocate nothing.
template <class T>
struct LocalNormWorkspace<T, Cuda> {
  cuda::DeviceMemory<T> squares;   ///< sum over channels of x^2, N x H x W
  cuda::DeviceMemory<T> coverage;  ///< sum of dn / n over the windows covering a pixel, N x H x W
};

namespace cuda::detail {

// f(c) and f'(c) of nsl/ops/sphere.hpp (angular_response, angular_derivative),
// the same formulas in double, as __device__ functions for the kernels.
template <class T>
__device__ T angular_response_on_device(AngularForm form, T c) {
  constexpr double pi = nsl::angular_pi, k = nsl::sigmoid_form_k;
  switch (form) {
    case AngularForm::identity:
    case AngularForm::cosine: return c;
    case AngularForm::linear: {
      const double theta = acos(fmin(fmax(double(c), -1.0), 1.0));
      return T(1.0 - 2.0 * theta / pi);
    }
    case AngularForm::sigmoid: {
      const double theta = acos(fmin(fmax(double(c), -1.0), 1.0));
      const double u = exp(theta / k - pi / (2 * k));
      const double e = exp(-pi / (2 * k)), kappa = (1 + e) / (1 - e);
      return T(kappa * (1 - u) / (1 + u));
    }
  }
  return c;
}

template <class T>
__device__ T angular_derivative_on_device(AngularForm form, T c) {
  constexpr double pi = nsl::angular_pi, k = nsl::sigmoid_form_k;
  switch (form) {
    case AngularForm::identity:
    case AngularForm::cosine: return T(1);
    case AngularForm::linear: {
      const double cc = fmin(fmax(double(c), -1.0), 1.0);
      return T(2.0 / (pi * sqrt(1.0 - cc * cc)));
    }
    case AngularForm::sigmoid: {
      const double cc = fmin(fmax(double(c), -1.0), 1.0);
      const double theta = acos(cc);
      const double u = exp(theta / k - pi / (2 * k));
      const double e = exp(-pi / (2 * k)), kappa = (1 + e) / (1 - e);
      const double df_dtheta = -2.0 * kappa * u / (k * (1 + u) * (1 + u));
      return T(df_dtheta * (-1.0 / sqrt(1.0 - cc * cc)));
    }
  }
  return T(1);
}


// squares[n, u, v] = sum_c x[n, c, u, v]^2, channels in order.
template <class T>
__global__ void channel_squares_kernel(const T* x, index channels, index plane, index total, T* squares) {
  NSL_CUDA_FOR(e, total) {
    const index n = e / plane, uv = e % plane;
    const T* xn = x + n * channels * plane + uv;
    T sum = 0;
    for (index c = 0; c < channels; ++c) sum += xn[c * plane] * xn[c * plane];
    squares[e] = sum;
  }
}

// norm[n, i, j] = sqrt(eps + sum of squares over the window of (i, j)), row by row.
template <class T>
__global__ void window_norm_kernel(const T* squares, index height, index width, index kernel, index stride,
                                   index padding, index out_h, index out_w, index total, T* norm) {
  NSL_CUDA_FOR(e, total) {
    const index j = e % out_w, i = (e / out_w) % out_h, n = e / (out_w * out_h);
    const index top = i * stride - padding, left = j * stride - padding;
    const index u0 = top > 0 ? top : 0, u1 = top + kernel < height ? top + kernel : height;
    const index v0 = left > 0 ? left : 0, v1 = left + kernel < width ? left + kernel : width;
    const T* sn = squares + n * height * width;
    T window = 0;
    for (index u = u0; u < u1; ++u)
      for (index v = v0; v < v1; ++v) window += sn[u * width + v];
    norm[e] = sqrt(T(sphere_norm_eps) + window);
  }
}

// coverage[n, u, v] = sum over the windows p covering (u, v) of dn(p) / n(p)
// (the gather form of col2im, slots in order).
template <class T>
__global__ void window_coverage_kernel(const T* norm, const T* dnorm, index height, index width, index kernel,
                                       index stride, index padding, index out_h, index out_w, index total,
                                       T* coverage) {
  NSL_CUDA_FOR(e, total) {
    const index v = e % width, u = (e / width) % height, n = e / (width * height);
    const index offset = n * out_h * out_w;
    T sum = 0;
    for (index di = 0; di < kernel; ++di) {
      const index oh_s = u + padding - di;  // oh stride
      if (oh_s < 0 || oh_s % stride != 0 || oh_s / stride >= out_h) continue;
      for (index dj = 0; dj < kernel; ++dj) {
        const index ow_s = v + padding - dj;
        if (ow_s < 0 || ow_s % stride != 0 || ow_s / stride >= out_w) continue;
        const index p = offset + (oh_s / stride) * out_w + ow_s / stride;
        sum += dnorm[p] / norm[p];
      }
    }
    coverage[e] = sum;
  }
}

// dx[n, c, u, v] += x[n, c, u, v] coverage[n, u, v].
template <class T>
__global__ void scale_by_coverage_kernel(const T* x, const T* coverage, index channels, index plane, index total,
                                         T* dx) {
  NSL_CUDA_FOR(e, total) dx[e] += x[e] * coverage[(e / (channels * plane)) * plane + e % plane];
}

// norms[o] = sqrt(sum_j w[o, j]^2 + eps): block o.
template <class T>
__global__ void filter_norm_kernel(const T* w, index per_filter, T* norms) {
  const T* wo = w + index(blockIdx.x) * per_filter;
  T sum = 0;
  for (index j = threadIdx.x; j < per_filter; j += reduce_block_size) sum += wo[j] * wo[j];
  sum = block_sum<T>(sum);
  if (threadIdx.x == 0) norms[blockIdx.x] = sqrt(sum + T(sphere_norm_eps));
}

// dw[o, j] += (dnorm_o / norm_o) w[o, j].
template <class T>
__global__ void filter_norm_backward_kernel(const T* w, const T* norms, const T* dnorms, index per_filter,
                                            index total, T* dw) {
  NSL_CUDA_FOR(e, total) {
    const index o = e / per_filter;
    dw[e] += dnorms[o] / norms[o] * w[e];
  }
}

// c = z / (a_o n) in place, y = f(c); one thread per entry (n, o, p).
template <class T>
__global__ void sphere_response_forward_kernel(AngularForm form, const T* input_norm, const T* filter_norms,
                                               index channels, index P, index total, T* z_to_c, T* y) {
  NSL_CUDA_FOR(e, total) {
    const index p = e % P, o = (e / P) % channels, n = e / (P * channels);
    const T c = z_to_c[e] / (filter_norms[o] * input_norm[n * P + p]);
    z_to_c[e] = c;
    y[e] = angular_response_on_device<T>(form, c);
  }
}

// One thread per pixel (n, p), over the output channels o in order:
//     dc = dy f'(c),  dz = dc / (a_o n),  dn = -sum_o dc c / n
template <class T>
__global__ void sphere_response_backward_kernel(AngularForm form, const T* c, const T* input_norm,
                                                const T* filter_norms, const T* dy, index channels, index P,
                                                index total, T* dz, T* dnorm) {
  NSL_CUDA_FOR(e, total) {
    const index p = e % P, n = e / P;
    const T norm = input_norm[e];
    T dn = 0;
    for (index o = 0; o < channels; ++o) {
      const index at = (n * channels + o) * P + p;
      const T dc = dy[at] * angular_derivative_on_device<T>(form, c[at]);
      dz[at] = dc / (filter_norms[o] * norm);
      dn -= dc * c[at] / norm;
    }
    dnorm[e] = dn;
  }
}

// dfilter_norms[o] = -sum_{n,p} dz n c: block o.
template <class T>
__global__ void sphere_filter_norm_gradient_kernel(const T* dz, const T* input_norm, const T* c, index batch,
                                                   index channels, index P, T* dfilter_norms) {
  const index o = blockIdx.x, count = batch * P;
  T sum = 0;
  for (index j = threadIdx.x; j < count; j += reduce_block_size) {
    const index n = j / P, p = j % P, at = (n * channels + o) * P + p;
    sum += dz[at] * input_norm[n * P + p] * c[at];
  }
  sum = block_sum<T>(sum);
  if (threadIdx.x == 0) dfilter_norms[o] = -sum;
}

}  // namespace cuda::detail

/// n (N x 1 x Ho x Wo) = sqrt(window sum of x^2 over all channels + eps), assigned.
template <class T>
void local_input_norm(TensorView<const T, Cuda> x, const ConvGeometry& g, TensorView<T, Cuda> norm,
                      LocalNormWorkspace<T, Cuda>* workspace = nullptr) {
  check_rank("local_input_norm", "input", x.shape(), 4);
  check_geometry("local_input_norm", g, x.dim(2), x.dim(3));
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const index Ho = g.output_extent(H), Wo = g.output_extent(W);
  check_shape("local_input_norm", "norm", norm.shape(), Shape{N, 1, Ho, Wo});
  LocalNormWorkspace<T, Cuda> local;
  LocalNormWorkspace<T, Cuda>& ws = workspace ? *workspace : local;
  const index pixels = N * H * W;
  if (norm.size() == 0) return;
  ws.squares.reserve(pixels);
  if (pixels) {
    cuda::detail::channel_squares_kernel<T><<<cuda::detail::grid_size(pixels), cuda::detail::block_size>>>(
        x.data(), C, H * W, pixels, ws.squares.data());
    cuda::check_launch("local_input_norm: squares");
  }
  cuda::detail::window_norm_kernel<T><<<cuda::detail::grid_size(norm.size()), cuda::detail::block_size>>>(
      ws.squares.data(), H, W, g.kernel, g.stride, g.padding, Ho, Wo, norm.size(), norm.data());
  cuda::check_launch("local_input_norm: window sums");
}

/// dx += x ∘ (window-adjoint of dnorm / norm). dx is ACCUMULATED, as on the CPU.
template <class T>
void local_input_norm_backward(TensorView<const T, Cuda> x, const ConvGeometry& g, TensorView<const T, Cuda> norm,
                               TensorView<const T, Cuda> dnorm, TensorView<T, Cuda> dx,
                               LocalNormWorkspace<T, Cuda>* workspace = nullptr) {
  check_rank("local_input_norm_backward", "input", x.shape(), 4);
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const index Ho = g.output_extent(H), Wo = g.output_extent(W);
  check_shape("local_input_norm_backward", "norm", norm.shape(), Shape{N, 1, Ho, Wo});
  check_shape("local_input_norm_backward", "norm gradient", dnorm.shape(), norm.shape());
  check_shape("local_input_norm_backward", "input gradient", dx.shape(), x.shape());
  LocalNormWorkspace<T, Cuda> local;
  LocalNormWorkspace<T, Cuda>& ws = workspace ? *workspace : local;
  const index pixels = N * H * W;
  if (pixels == 0 || dx.size() == 0) return;
  ws.coverage.reserve(pixels);
  cuda::detail::window_coverage_kernel<T><<<cuda::detail::grid_size(pixels), cuda::detail::block_size>>>(
      norm.data(), dnorm.data(), H, W, g.kernel, g.stride, g.padding, Ho, Wo, pixels, ws.coverage.data());
  cuda::check_launch("local_input_norm_backward: coverage");
  cuda::detail::scale_by_coverage_kernel<T><<<cuda::detail::grid_size(dx.size()), cuda::detail::block_size>>>(
      x.data(), ws.coverage.data(), C, H * W, dx.size(), dx.data());
  cuda::check_launch("local_input_norm_backward: dx");
}

/// ||w_o|| for each filter of w (O x ...), into norms (O), assigned.
template <class T>
void filter_norm(TensorView<const T, Cuda> w, TensorView<T, Cuda> norms) {
  check_shape("filter_norm", "norms", norms.shape(), Shape{w.dim(0)});
  const index O = w.dim(0);
  if (O == 0) return;
  cuda::detail::filter_norm_kernel<T><<<static_cast<unsigned>(O), cuda::detail::reduce_block_size>>>(
      w.data(), w.size() / O, norms.data());
  cuda::check_launch("filter_norm");
}

/// dw_o += dnorm_o * w_o / ||w_o|| (accumulated).
template <class T>
void filter_norm_backward(TensorView<const T, Cuda> w, TensorView<const T, Cuda> norms,
                          TensorView<const T, Cuda> dnorms, TensorView<T, Cuda> dw) {
  check_shape("filter_norm_backward", "weight gradient", dw.shape(), w.shape());
  check_shape("filter_norm_backward", "norm gradient", dnorms.shape(), norms.shape());
  check_shape("filter_norm_backward", "norms", norms.shape(), Shape{w.dim(0)});
  const index O = w.dim(0);
  if (O == 0 || w.size() == 0) return;
  cuda::detail::filter_norm_backward_kernel<T><<<cuda::detail::grid_size(w.size()), cuda::detail::block_size>>>(
      w.data(), norms.data(), dnorms.data(), w.size() / O, w.size(), dw.data());
  cuda::check_launch("filter_norm_backward");
}

/// z_to_c holds z and is overwritten with c; y = f(c) (y may not alias it).
template <class T>
void sphere_response_forward(AngularForm form, TensorView<const T, Cuda> input_norm,
                             TensorView<const T, Cuda> filter_norms, TensorView<T, Cuda> z_to_c,
                             TensorView<T, Cuda> y) {
  check_sphere_response("sphere_response_forward", z_to_c.shape(), input_norm.shape(), filter_norms.shape());
  check_shape("sphere_response_forward", "output", y.shape(), z_to_c.shape());
  const index O = z_to_c.dim(1), P = z_to_c.dim(2) * z_to_c.dim(3), total = z_to_c.size();
  if (total == 0) return;
  cuda::detail::sphere_response_forward_kernel<T><<<cuda::detail::grid_size(total), cuda::detail::block_size>>>(
      form, input_norm.data(), filter_norms.data(), O, P, total, z_to_c.data(), y.data());
  cuda::check_launch("sphere_response_forward");
}

/// dz and dnorm (dL/dn, N x 1 x Ho x Wo) assigned from dy and the forward's c.
template <class T>
void sphere_response_backward(AngularForm form, TensorView<const T, Cuda> c, TensorView<const T, Cuda> input_norm,
                              TensorView<const T, Cuda> filter_norms, TensorView<const T, Cuda> dy,
                              TensorView<T, Cuda> dz, TensorView<T, Cuda> dnorm) {
  check_sphere_response("sphere_response_backward", c.shape(), input_norm.shape(), filter_norms.shape());
  check_shape("sphere_response_backward", "output gradient", dy.shape(), c.shape());
  check_shape("sphere_response_backward", "dz", dz.shape(), c.shape());
  check_shape("sphere_response_backward", "input norm gradient", dnorm.shape(), input_norm.shape());
  const index O = c.dim(1), P = c.dim(2) * c.dim(3), total = dnorm.size();
  if (total == 0) return;
  cuda::detail::sphere_response_backward_kernel<T><<<cuda::detail::grid_size(total), cuda::detail::block_size>>>(
      form, c.data(), input_norm.data(), filter_norms.data(), dy.data(), O, P, total, dz.data(), dnorm.data());
  cuda::check_launch("sphere_response_backward");
}

/// dfilter_norms[o] = -sum_{n,p} dz n c (assigned).
template <class T>
void sphere_filter_norm_gradient(TensorView<const T, Cuda> dz, TensorView<const T, Cuda> input_norm,
                                 TensorView<const T, Cuda> c, TensorView<T, Cuda> dfilter_norms) {
  check_sphere_response("sphere_filter_norm_gradient", c.shape(), input_norm.shape(), dfilter_norms.shape());
  check_shape("sphere_filter_norm_gradient", "dz", dz.shape(), c.shape());
  const index N = c.dim(0), O = c.dim(1), P = c.dim(2) * c.dim(3);
  if (O == 0) return;
  cuda::detail::sphere_filter_norm_gradient_kernel<T>
      <<<static_cast<unsigned>(O), cuda::detail::reduce_block_size>>>(dz.data(), input_norm.data(), c.data(),
                                                                          N, O, P, dfilter_norms.data());
  cuda::check_launch("sphere_filter_norm_gradient");
}

}  // namespace nsl
