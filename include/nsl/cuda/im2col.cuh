// nsl/cuda/im2col.cuh — im2col and col2im for a whole batch on the GPU, with
// the layout of nsl/ops/im2col.hpp: image n's patch matrix is (C K) x (Ho Wo)
// row-major, row c K + (di k + dj), column oh Wo + ow, and the batch's
// matrices follow each other.
//
//     columns[n, (c, di, dj), (oh, ow)] = x[n, c, oh s - p + di, ow s - p + dj]   (0 outside)
//
// col2im is the adjoint, written as a gather: each input pixel sums the
// column entries that read it, in slot order, so there are no atomics and
// the result does not depend on scheduling.
#pragma once

#include "nsl/cuda/runtime.cuh"
#include "nsl/ops/im2col.hpp"

namespace nsl::cuda {

namespace detail {
template <class T>
__global__ void im2col_kernel(const T* images, index channels, index height, index width, index k, index s,
                              index p, index out_h, index out_w, index total, T* columns) {
  // One thread per column entry: total = N C K Ho Wo.
  NSL_CUDA_FOR(i, total) {
    const index pixels = out_h * out_w;
    const index ow = i % out_w, oh = (i / out_w) % out_h;
    const index row = (i / pixels) % (channels * k * k);
    const index n = i / (pixels * channels * k * k);
    const index c = row / (k * k), r = row % (k * k), di = r / k, dj = r % k;
    const index ih = oh * s - p + di, iw = ow * s - p + dj;
    columns[i] = (ih >= 0 && ih < height && iw >= 0 && iw < width)
                     ? images[((n * channels + c) * height + ih) * width + iw]
                     : T(0);
  }
}

template <class T>
__global__ void col2im_kernel(const T* columns, index channels, index height, index width, index k, index s,
                              index p, index out_h, index out_w, index total, T* images) {
  // One thread per input pixel: total = N C H W.
  NSL_CUDA_FOR(i, total) {
    const index iw = i % width, ih = (i / width) % height;
    const index c = (i / (height * width)) % channels, n = i / (channels * height * width);
    const index pixels = out_h * out_w;
    const T* base = columns + (n * channels + c) * k * k * pixels;
    T sum = 0;
    for (index di = 0; di < k; ++di) {
      const index oh_s = ih + p - di;  // oh s
      if (oh_s < 0 || oh_s % s != 0 || oh_s / s >= out_h) continue;
      for (index dj = 0; dj < k; ++dj) {
        const index ow_s = iw + p - dj;
        if (ow_s < 0 || ow_s % s != 0 || ow_s / s >= out_w) continue;
        sum += base[(di * k + dj) * pixels + (oh_s / s) * out_w + ow_s / s];
      }
    }
    images[i] = sum;
  }
}
}  // namespace detail

/// The patch matrices of `batch` C x H x W images into `columns`
/// (batch x (C K) x (Ho Wo), device memory).
template <class T>
void im2col(const T* images, index batch, index channels, index height, index width, const ConvGeometry& g,
            T* columns) {
  const index out_h = g.output_extent(height), out_w = g.output_extent(width);
  const index total = batch * channels * g.slots() * out_h * out_w;
  if (total == 0) return;
  detail::im2col_kernel<T><<<detail::grid_size(total), detail::block_size>>>(
      images, channels, height, width, g.kernel, g.stride, g.padding, out_h, out_w, total, columns);
  check_launch("cuda::im2col");
}

/// images = col2im(columns), assigned: the adjoint of im2col.
template <class T>
void col2im(const T* columns, index batch, index channels, index height, index width, const ConvGeometry& g,
            T* images) {
  const index out_h = g.output_extent(height), out_w = g.output_extent(width);
  const index total = batch * channels * height * width;
  if (total == 0) return;
  detail::col2im_kernel<T><<<detail::grid_size(total), detail::block_size>>>(
      columns, channels, height, width, g.kernel, g.stride, g.padding, out_h, out_w, total, images);
  check_launch("cuda::col2im");
}

}  // namespace nsl::cuda
