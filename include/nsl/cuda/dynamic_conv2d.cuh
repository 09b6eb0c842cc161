// nsl/cuda/dynamic_conv2d.cuh — the dynamic convolution of
// nsl/ops/dynamic_conv2d.hpp on the GPU: per image, with X = im2col(x)
// ((C K) x P), V = (I + G) X (nsl/ops/patch_transform.hpp) and W the
// O x (C K) weight matrix,
//
//     Y = W V + b 1^T
//
// Backward, given dY:
//
//     dW += dY V^T        db += dY 1        dV = W^T dY
//     dX = M^T dV per pixel    dG = sum_i dv_i x_i^T per pixel    dx = col2im(dX)
//
// dx (skipped when empty) and dG assigned; dW and db (skipped when empty)
// accumulated, as on the CPU.
//
// The batch goes in chunks of images (the whole batch unless its scratch
// would pass the workspace's max_scratch_bytes): a batched im2col, the patch
// transform with one thread per entry of V, and one strided-batched GEMM for
// Y (and for dV). dW takes one GEMM per image with beta 1, in image order;
// db is one block per output channel; dX and dG are one thread per entry,
// dG summing its channels in order. No atomics: the result does not depend
// on scheduling.
#pragma once

#include <algorithm>
#include <cstddef>

#include "nsl/cuda/gemm.cuh"
#include "nsl/cuda/im2col.cuh"
#include "nsl/cuda/tensor.cuh"
#include "nsl/ops/dynamic_conv2d.hpp"

namespace nsl {

/// Device scratch of the dynamic convolution, grown on the first call and
/// reused: X, V (then dX) and dV of one chunk of images, and a cuBLAS handle.
template <class T>
struct DynamicConv2dWorkspace<T, Cuda> {
  cuda::BlasHandle blas;
  cuda::DeviceMemory<T> columns;           ///< X, chunk x (C K) x P
  cuda::DeviceMemory<T> transformed;       ///< V; dX in backward once dW is done
  cuda::DeviceMemory<T> transformed_grad;  ///< dV (backward only)
  /// Cap on the three scratch matrices of a chunk; a smaller batch goes whole.
  std::size_t max_scratch_bytes = std::size_t(1) << 30;

  /// Images per chunk (at least 1) for (C K) x P matrices of `per_image` entries.
  index chunk_images(index batch, index per_image) const {
    const std::size_t bytes = 3 * sizeof(T) * static_cast<std::size_t>(std::max<index>(per_image, 1));
    const index fit = static_cast<index>(max_scratch_bytes / bytes);
    return std::max<index>(1, std::min(batch, fit));
  }
};

namespace cuda::detail {

// V = (I + G) X for `images` images; one thread per entry e = (n, i, a, p) of V.
//   DNS:  v_{i,a}(p) = (1 + g_a(p)) x_{i,a}(p)
//   UNS:  v_{i,a}(p) = x_{i,a}(p) + sum_r G(p)[a][r] x_{i,r}(p),  G[a][r] in row a K + r
template <class T>
__global__ void patch_transform_kernel(bool channel_shared, const T* x, const T* g, index channels, index K,
                                       index P, index total, T* v) {
  const index R = channel_shared ? K * K : K;
  NSL_CUDA_FOR(e, total) {
    const index p = e % P, row = (e / P) % (channels * K), n = e / (P * channels * K);
    const index a = row % K;
    const T* gn = g + n * R * P;
    if (!channel_shared) {
      v[e] = fma(gn[a * P + p], x[e], x[e]);
      continue;
    }
    const T* xi = x + e - p - a * P;  // row (i, 0) of image n
    T sum = x[e];
    for (index r = 0; r < K; ++r) sum = fma(gn[(a * K + r) * P + p], xi[r * P + p], sum);
    v[e] = sum;
  }
}

// dX = M^T dV; one thread per entry e = (n, i, r, p) of dX.
//   DNS:  dx_{i,r} = (1 + g_r) dv_{i,r}
//   UNS:  dx_{i,r} = dv_{i,r} + sum_a G[a][r] dv_{i,a}
template <class T>
__global__ void patch_transform_input_grad_kernel(bool channel_shared, const T* g, const T* dv, index channels,
                                                  index K, index P, index total, T* dx) {
  const index R = channel_shared ? K * K : K;
  NSL_CUDA_FOR(e, total) {
    const index p = e % P, row = (e / P) % (channels * K), n = e / (P * channels * K);
    const index r = row % K;
    const T* gn = g + n * R * P;
    if (!channel_shared) {
      dx[e] = fma(gn[r * P + p], dv[e], dv[e]);
      continue;
    }
    const T* dvi = dv + e - p - r * P;  // row (i, 0) of image n
    T sum = dv[e];
    for (index a = 0; a < K; ++a) sum = fma(gn[(a * K + r) * P + p], dvi[a * P + p], sum);
    dx[e] = sum;
  }
}

// dG per pixel, summed over the channels i in order; one thread per entry
// e = (n, q, p) of dG (assigned).
//   DNS:  q = r,        dg_r = sum_i dv_{i,r} x_{i,r}
//   UNS:  q = a K + r,  dG[a][r] = sum_i dv_{i,a} x_{i,r}
template <class T>
__global__ void patch_transform_similarity_grad_kernel(bool channel_shared, const T* x, const T* dv,
                                                       index channels, index K, index P, index total, T* dg) {
  const index R = channel_shared ? K * K : K;
  NSL_CUDA_FOR(e, total) {
    const index p = e % P, q = (e / P) % R, n = e / (P * R);
    const index a = channel_shared ? q / K : q, r = channel_shared ? q % K : q;
    const T* xn = x + n * channels * K * P;
    const T* dvn = dv + n * channels * K * P;
    T sum = 0;
    for (index i = 0; i < channels; ++i) sum = fma(dvn[(i * K + a) * P + p], xn[(i * K + r) * P + p], sum);
    dg[e] = sum;
  }
}

// y[n, o, p] += b_o.
template <class T>
__global__ void add_channel_bias_kernel(const T* bias, index channels, index P, index total, T* y) {
  NSL_CUDA_FOR(e, total) y[e] += bias[(e / P) % channels];
}

// db_o += sum_{n,p} dy[n, o, p]: block o, each thread a fixed strided share,
// then a fixed tree over the block.
template <class T>
__global__ void channel_sum_kernel(const T* dy, index batch, index channels, index P, T* db) {
  const index o = blockIdx.x, count = batch * P;
  T sum = 0;
  for (index j = threadIdx.x; j < count; j += reduce_block_size) sum += dy[((j / P) * channels + o) * P + j % P];
  sum = block_sum<T>(sum);
  if (threadIdx.x == 0) db[o] += sum;
}

template <class T>
void patch_transform(bool channel_shared, const T* x, const T* g, index images, index channels, index K, index P,
                     T* v) {
  const index total = images * channels * K * P;
  if (total == 0) return;
  patch_transform_kernel<T><<<grid_size(total), block_size>>>(channel_shared, x, g, channels, K, P, total, v);
  check_launch("cuda::patch_transform");
}

}  // namespace cuda::detail

/// y = W (I + G) im2col(x) + b per image (assigned); the CPU op's checks.
template <class T>
void dynamic_conv2d_forward(Structure s, TensorView<const T, Cuda> x, TensorView<const T, Cuda> w,
                            TensorView<const T, Cuda> bias, TensorView<const T, Cuda> g,
                            const ConvGeometry& geometry, TensorView<T, Cuda> y, DynamicConv2dWorkspace<T, Cuda>& ws) {
  const Shape out = dynamic_conv2d_output_shape("dynamic_conv2d_forward", s, x.shape(), w.shape(), bias.shape(),
                                                g.shape(), geometry);
  check_shape("dynamic_conv2d_forward", "output", y.shape(), out);
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(0), K = geometry.slots();
  const index rows = C * K, P = out[2] * out[3], R = g.dim(1);
  const bool channel_shared = s == Structure::channel_shared;
  const index chunk = ws.chunk_images(N, rows * P);
  ws.columns.reserve(chunk * rows * P);
  ws.transformed.reserve(chunk * rows * P);
  for (index first = 0; first < N; first += chunk) {
    const index images = std::min(chunk, N - first);
    cuda::im2col<T>(x.data() + first * C * H * W, images, C, H, W, geometry, ws.columns.data());
    cuda::detail::patch_transform<T>(channel_shared, ws.columns.data(), g.data() + first * R * P, images, C, K, P,
                                     ws.transformed.data());
    cuda::gemm_strided_batched<T>(ws.blas, false, false, O, P, rows, T(1), w.data(), 0, ws.transformed.data(),
                                  rows * P, T(0), y.data() + first * O * P, O * P, images);
  }
  if (bias.size() && y.size()) {
    cuda::detail::add_channel_bias_kernel<T><<<cuda::detail::grid_size(y.size()), cuda::detail::block_size>>>(
        bias.data(), O, P, y.size(), y.data());
    cuda::check_launch("dynamic_conv2d_forward: bias");
  }
}

/// dx (skipped when empty) and dg assigned; dw and db (skipped when empty) accumulated.
template <class T>
void dynamic_conv2d_backward(Structure s, TensorView<const T, Cuda> x, TensorView<const T, Cuda> w,
                             TensorView<const T, Cuda> g, const ConvGeometry& geometry, TensorView<const T, Cuda> dy,
                             TensorView<T, Cuda> dx, TensorView<T, Cuda> dw, TensorView<T, Cuda> db,
                             TensorView<T, Cuda> dg, DynamicConv2dWorkspace<T, Cuda>& ws) {
  const Shape out = check_dynamic_conv2d_backward(s, x.shape(), w.shape(), g.shape(), geometry, dy.shape(),
                                                  dx.shape(), dw.shape(), db.shape(), dg.shape());
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(0), K = geometry.slots();
  const index rows = C * K, P = out[2] * out[3], R = g.dim(1);
  const bool channel_shared = s == Structure::channel_shared;
  const index chunk = ws.chunk_images(N, rows * P);
  ws.columns.reserve(chunk * rows * P);
  ws.transformed.reserve(chunk * rows * P);
  ws.transformed_grad.reserve(chunk * rows * P);
  T* X = ws.columns.data();
  T* V = ws.transformed.data();  // then dX
  T* dV = ws.transformed_grad.data();
  for (index first = 0; first < N; first += chunk) {
    const index images = std::min(chunk, N - first);
    const T* dy_chunk = dy.data() + first * O * P;
    cuda::im2col<T>(x.data() + first * C * H * W, images, C, H, W, geometry, X);
    const T* g_chunk = g.data() + first * R * P;
    cuda::detail::patch_transform<T>(channel_shared, X, g_chunk, images, C, K, P, V);
    for (index n = 0; n < images; ++n)  // dW += dY_n V_n^T, image by image
      cuda::gemm<T>(ws.blas, false, true, O, rows, P, T(1), dy_chunk + n * O * P, V + n * rows * P, T(1),
                    dw.data());
    cuda::gemm_strided_batched<T>(ws.blas, true, false, rows, P, O, T(1), w.data(), 0, dy_chunk, O * P, T(0), dV,
                                  rows * P, images);
    const index g_total = images * R * P, x_total = images * rows * P;
    if (g_total) {
      cuda::detail::patch_transform_similarity_grad_kernel<T>
          <<<cuda::detail::grid_size(g_total), cuda::detail::block_size>>>(channel_shared, X, dV, C, K, P, g_total,
                                                                           dg.data() + first * R * P);
      cuda::check_launch("dynamic_conv2d_backward: dG");
    }
    if (dx.size() && x_total) {
      cuda::detail::patch_transform_input_grad_kernel<T>
          <<<cuda::detail::grid_size(x_total), cuda::detail::block_size>>>(channel_shared, g_chunk, dV, C, K, P,
                                                                           x_total, V);
      cuda::check_launch("dynamic_conv2d_backward: dX");
      cuda::col2im<T>(V, images, C, H, W, geometry, dx.data() + first * C * H * W);
    }
  }
  if (db.size() && O > 0) {
    cuda::detail::channel_sum_kernel<T><<<static_cast<unsigned>(O), cuda::detail::reduce_block_size>>>(
        dy.data(), N, O, P, db.data());
    cuda::check_launch("dynamic_conv2d_backward: db");
  }
}

}  // namespace nsl
