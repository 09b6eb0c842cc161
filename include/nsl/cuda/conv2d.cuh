// nsl/cuda/conv2d.cuh — conv2d_forward / conv2d_backward of nsl/ops/conv2d.hpp
// on the GPU: the same math, shape checks and contract (dx assigned, skipped
// when empty; dw and db accumulated, db skipped when empty; bias optional).
//
// Forward, for a chunk of images with X_n = im2col(x_n), (C K) x P:
//     Y_n = W X_n            one strided-batched GEMM, W shared (stride 0)
//     y[n, o, :] += b[o]     a bias kernel
// Backward, with the chunk's patch matrices side by side, X = [X_1 ... X_N]
// ((C K) x (N P)), and dY = [dY_1 ... dY_N] (O x (N P), dy permuted):
//     dW += dY X^T           ONE GEMM over all the chunk's pixels
//     dX_n = W^T dY_n        one strided-batched GEMM, then col2im (assigned)
//     db[o] += sum_{n, p} dy[n, o, p]   one block per channel, a fixed tree
// Everything is deterministic (no atomics). A batch whose scratch would pass
// the workspace's `max_scratch_bytes` runs in chunks of images; dW then sums
// the chunks' GEMMs in chunk order (beta = 1).
#pragma once

#include <algorithm>
#include <cstddef>

#include "nsl/cuda/gemm.cuh"
#include "nsl/cuda/im2col.cuh"
#include "nsl/cuda/tensor.cuh"
#include "nsl/ops/conv2d.hpp"

namespace nsl {

/// Scratch of the CUDA convolution, kept across calls: after the first step
/// of a given size a training step allocates nothing.
template <class T>
struct Conv2dWorkspace<T, Cuda> {
  cuda::BlasHandle blas;
  cuda::DeviceMemory<T> columns;          ///< the chunk's patch matrices X_n (or dX_n, or X side by side)
  cuda::DeviceMemory<T> output_gradient;  ///< dY of the chunk as O x (N P)
  /// Scratch allowed for one pass; larger batches run in chunks of images.
  std::size_t max_scratch_bytes = std::size_t(1) << 30;
};

namespace cuda::detail {

// y[n, o, p] += b[o] over the N x O x P output.
template <class T>
__global__ void add_bias_kernel(const T* bias, index channels, index pixels, index total, T* y) {
  NSL_CUDA_FOR(i, total) y[i] += bias[(i / pixels) % channels];
}

// The batch's patch matrices side by side, (C K) x (N P):
//     columns[(c, di, dj), n P + (oh, ow)] = x[n, c, oh s - p + di, ow s - p + dj]   (0 outside)
template <class T>
__global__ void im2col_side_by_side_kernel(const T* images, index batch, index channels, index height,
                                           index width, index k, index s, index p, index out_h, index out_w,
                                           index total, T* columns) {
  NSL_CUDA_FOR(i, total) {
    const index pixels = out_h * out_w;
    const index ow = i % out_w, oh = (i / out_w) % out_h;
    const index n = (i / pixels) % batch;
    const index row = i / (pixels * batch);
    const index c = row / (k * k), r = row % (k * k), di = r / k, dj = r % k;
    const index ih = oh * s - p + di, iw = ow * s - p + dj;
    columns[i] = (ih >= 0 && ih < height && iw >= 0 && iw < width)
                     ? images[((n * channels + c) * height + ih) * width + iw]
                     : T(0);
  }
}

// side_by_side[r, n P + p] = batched[n, r, p]: batch x rows x P to rows x (batch P).
template <class T>
__global__ void side_by_side_kernel(const T* batched, index batch, index rows, index pixels, index total,
                                    T* side_by_side) {
  NSL_CUDA_FOR(i, total) {
    const index p = i % pixels, n = (i / pixels) % batch, r = i / (pixels * batch);
    side_by_side[i] = batched[(n * rows + r) * pixels + p];
  }
}

// db[o] += sum_{n, p} dy[n, o, p]: block o sums its channel with a fixed
// thread-to-element assignment and a fixed tree (launched with reduce_block_size threads).
template <class T>
__global__ void bias_gradient_kernel(const T* dy, index batch, index channels, index pixels, T* db) {
  const index o = blockIdx.x;
  T sum = 0;
  for (index j = threadIdx.x; j < batch * pixels; j += reduce_block_size) {
    const index n = j / pixels, p = j % pixels;
    sum += dy[(n * channels + o) * pixels + p];
  }
  sum = block_sum<T>(sum);
  if (threadIdx.x == 0) db[o] += sum;
}

// Images per pass so that `per_image` scratch elements each stay within the budget (at least 1).
template <class T>
index images_per_chunk(index batch, index per_image, std::size_t max_bytes) {
  if (per_image == 0) return std::max<index>(batch, 1);
  const index fit = static_cast<index>(max_bytes / (sizeof(T) * static_cast<std::size_t>(per_image)));
  return std::clamp<index>(fit, 1, std::max<index>(batch, 1));
}

}  // namespace cuda::detail

/// y = conv(x, w) + b on the device; as the CPU conv2d_forward (bias may be empty).
template <class T>
void conv2d_forward(TensorView<const T, Cuda> x, TensorView<const T, Cuda> w, TensorView<const T, Cuda> bias,
                    const ConvGeometry& g, TensorView<T, Cuda> y, Conv2dWorkspace<T, Cuda>& ws) {
  const Shape out = conv2d_output_shape("conv2d_forward", x.shape(), w.shape(), bias.shape(), g);
  check_shape("conv2d_forward", "output", y.shape(), out);
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(0);
  const index rows = C * g.slots(), pixels = out[2] * out[3];
  if (y.size() == 0) return;
  const index chunk = cuda::detail::images_per_chunk<T>(N, rows * pixels, ws.max_scratch_bytes);
  ws.columns.reserve(std::min(chunk, N) * rows * pixels);
  for (index first = 0; first < N; first += chunk) {
    const index count = std::min(chunk, N - first);
    cuda::im2col<T>(x.data() + first * C * H * W, count, C, H, W, g, ws.columns.data());
    // Y_n = W X_n
    cuda::gemm_strided_batched<T>(ws.blas, false, false, O, pixels, rows, T(1), w.data(), 0, ws.columns.data(),
                                  rows * pixels, T(0), y.data() + first * O * pixels, O * pixels, count);
  }
  if (bias.size()) {
    cuda::detail::add_bias_kernel<T><<<cuda::detail::grid_size(y.size()), cuda::detail::block_size>>>(
        bias.data(), O, pixels, y.size(), y.data());
    cuda::check_launch("conv2d_forward: bias");
  }
}

/// Gradients of <conv(x, w) + b, dy> on the device; as the CPU conv2d_backward:
/// dx assigned (skipped when dx.size() == 0); dw, db accumulated (db skipped when empty).
template <class T>
void conv2d_backward(TensorView<const T, Cuda> x, TensorView<const T, Cuda> w, const ConvGeometry& g,
                     TensorView<const T, Cuda> dy, TensorView<T, Cuda> dx, TensorView<T, Cuda> dw,
                     TensorView<T, Cuda> db, Conv2dWorkspace<T, Cuda>& ws) {
  const Shape out = conv2d_output_shape("conv2d_backward", x.shape(), w.shape(), db.shape(), g);
  check_shape("conv2d_backward", "output gradient", dy.shape(), out);
  check_shape("conv2d_backward", "weight gradient", dw.shape(), w.shape());
  if (dx.size()) check_shape("conv2d_backward", "input gradient", dx.shape(), x.shape());
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(0);
  const index rows = C * g.slots(), pixels = out[2] * out[3];
  if (dy.size() == 0) {  // no image or no output channel: nothing to add, and dx = 0
    if (dx.size()) set_zero<T>(dx);
    return;
  }
  const index chunk = cuda::detail::images_per_chunk<T>(N, (rows + O) * pixels, ws.max_scratch_bytes);
  ws.columns.reserve(std::min(chunk, N) * rows * pixels);
  if (std::min(chunk, N) > 1) ws.output_gradient.reserve(std::min(chunk, N) * O * pixels);
  for (index first = 0; first < N; first += chunk) {
    const index count = std::min(chunk, N - first);
    const T* dy_chunk = dy.data() + first * O * pixels;
    // X = [X_first ... X_last] and dY = [dY_first ... dY_last], side by side.
    const index x_total = rows * count * pixels, dy_total = O * count * pixels;
    if (x_total) {
      cuda::detail::im2col_side_by_side_kernel<T><<<cuda::detail::grid_size(x_total), cuda::detail::block_size>>>(
          x.data() + first * C * H * W, count, C, H, W, g.kernel, g.stride, g.padding, out[2], out[3], x_total,
          ws.columns.data());
      cuda::check_launch("conv2d_backward: im2col");
    }
    const T* dy_side_by_side = dy_chunk;  // one image: dY_n itself
    if (count > 1) {
      cuda::detail::side_by_side_kernel<T><<<cuda::detail::grid_size(dy_total), cuda::detail::block_size>>>(
          dy_chunk, count, O, pixels, dy_total, ws.output_gradient.data());
      cuda::check_launch("conv2d_backward: output gradient");
      dy_side_by_side = ws.output_gradient.data();
    }
    // dW += dY X^T
    cuda::gemm<T>(ws.blas, false, true, O, rows, count * pixels, T(1), dy_side_by_side, ws.columns.data(), T(1),
                  dw.data());
    if (dx.size()) {
      // dX_n = W^T dY_n, then dx_n = col2im(dX_n)
      cuda::gemm_strided_batched<T>(ws.blas, true, false, rows, pixels, O, T(1), w.data(), 0, dy_chunk,
                                    O * pixels, T(0), ws.columns.data(), rows * pixels, count);
      cuda::col2im<T>(ws.columns.data(), count, C, H, W, g, dx.data() + first * C * H * W);
    }
  }
  if (db.size()) {
    cuda::detail::bias_gradient_kernel<T><<<static_cast<unsigned>(O), cuda::detail::reduce_block_size>>>(
        dy.data(), N, O, pixels, db.data());
    cuda::check_launch("conv2d_backward: bias gradient");
  }
}

}  // namespace nsl
