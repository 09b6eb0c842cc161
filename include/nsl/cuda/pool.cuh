// nsl/cuda/pool.cuh — 2-D max pooling ('same' padding) on the GPU, the Cuda
// overloads of nsl/ops/pool.hpp with the same contract (math there):
//
//     y[j] = max of window j (padded cells never win; ties to the first
//            maximum in row-major window order; the first NaN wins)
//     dx[i] = sum over outputs j with argmax[j] == i of dy[j]      (dx assigned)
//
// Forward: one thread per output scans its clipped window. The winners are
// kept in device memory (`cuda::PoolWinners`, the Cuda `pool_indices_t`),
// together with the forward's geometry, which backward needs.
// Backward is a gather: one thread per input cell visits, in increasing j
// (the CPU's order of addition), the outputs whose window covers it and adds
// dy[j] where argmax[j] is that cell. With stride < window two outputs may
// share a winner; the gather adds both without atomics, deterministically.
#pragma once

#include <vector>

#include "nsl/cuda/tensor.cuh"
#include "nsl/ops/pool.hpp"

namespace nsl {

namespace cuda {

/// The winners of a max_pool2d_forward on the device: one flat index into x
/// per output, and the shapes, window and stride of that forward. resize()
/// allocates only when the count outgrows the memory held.
class PoolWinners {
 public:
  void resize(index count) {
    memory_.reserve(count);
    size_ = count;
  }
  index size() const { return size_; }
  index* data() { return memory_.data(); }
  const index* data() const { return memory_.data(); }

  /// A host copy of the indices (tests, debugging).
  std::vector<index> to_host() const {
    std::vector<index> host(static_cast<std::size_t>(size_));
    if (size_)
      check(cudaMemcpy(host.data(), memory_.data(), sizeof(index) * std::size_t(size_), cudaMemcpyDeviceToHost),
            "PoolWinners::to_host");
    return host;
  }

  /// The forward that wrote the indices (set by max_pool2d_forward).
  void set_geometry(const Shape& input, const Shape& output, index window, index stride) {
    input_ = input;
    output_ = output;
    window_ = window;
    stride_ = stride;
  }
  const Shape& input_shape() const { return input_; }
  const Shape& output_shape() const { return output_; }
  index window() const { return window_; }
  index stride() const { return stride_; }

 private:
  DeviceMemory<index> memory_;
  index size_ = 0;
  Shape input_, output_;  ///< rank 0 until a forward has run
  index window_ = 0, stride_ = 0;
};

namespace detail {

// Whether `candidate` replaces `best`: strictly greater, or the first NaN
// (NaN is the one value unequal to itself). detail::pool_candidate_wins on the device.
template <class T>
__device__ inline bool pool_candidate_wins(T candidate, T best) {
  return candidate > best || (candidate != candidate && best == best);
}

// One thread per output j = (plane, oh, ow): the maximum of its clipped window.
template <class T>
__global__ void max_pool2d_forward_kernel(const T* x, index H, index W, index out_h, index out_w, index window,
                                          index stride, index pad_top, index pad_left, index total, T* y,
                                          index* argmax) {
  NSL_CUDA_FOR(j, total) {
    const index ow = j % out_w, oh = (j / out_w) % out_h, plane = j / (out_w * out_h);
    const index h_first = max(oh * stride - pad_top, index(0)), h_end = min(oh * stride - pad_top + window, H);
    const index w_first = max(ow * stride - pad_left, index(0)), w_end = min(ow * stride - pad_left + window, W);
    const T* x_plane = x + plane * H * W;
    index winner = h_first * W + w_first;
    T best = x_plane[winner];
    for (index h = h_first; h < h_end; ++h)
      for (index w = w_first; w < w_end; ++w) {
        const T candidate = x_plane[h * W + w];
        if (pool_candidate_wins(candidate, best)) {
          best = candidate;
          winner = h * W + w;
        }
      }
    y[j] = best;
    argmax[j] = plane * H * W + winner;
  }
}

// The outputs o in [0, out) whose window [o s - pad, o s - pad + k) covers
// cell h: o s in (h + pad - k, h + pad], so first = ceil((h + pad - k + 1) / s), last = floor((h + pad) / s).
__device__ inline void covering_outputs(index h, index pad, index window, index stride, index out, index& first,
                                        index& end) {
  const index low = h + pad - window + 1;  // may be negative
  first = low <= 0 ? 0 : (low + stride - 1) / stride;
  end = min((h + pad) / stride + 1, out);
}

// One thread per input cell i = (plane, h, w): dx[i] = sum of dy[j] over
// the covering outputs j (increasing) that chose i.
template <class T>
__global__ void max_pool2d_backward_kernel(const index* argmax, const T* dy, index H, index W, index out_h,
                                           index out_w, index window, index stride, index pad_top, index pad_left,
                                           index total, T* dx) {
  NSL_CUDA_FOR(i, total) {
    const index w = i % W, h = (i / W) % H, plane = i / (W * H);
    index oh_first, oh_end, ow_first, ow_end;
    covering_outputs(h, pad_top, window, stride, out_h, oh_first, oh_end);
    covering_outputs(w, pad_left, window, stride, out_w, ow_first, ow_end);
    T sum = 0;
    for (index oh = oh_first; oh < oh_end; ++oh)
      for (index ow = ow_first; ow < ow_end; ++ow) {
        const index j = (plane * out_h + oh) * out_w + ow;
        if (argmax[j] == i) sum += dy[j];
      }
    dx[i] = sum;
  }
}

}  // namespace detail
}  // namespace cuda

/// On the device, max_pool2d_forward keeps its winners in device memory.
template <>
struct PoolIndices<Cuda> {
  using type = cuda::PoolWinners;
};

/// y assigned; argmax resized to y.size() (no allocation once it has that
/// capacity) and assigned with the flat index into x of each output's maximum.
template <class T>
void max_pool2d_forward(TensorView<const T, Cuda> x, index window, index stride, TensorView<T, Cuda> y,
                        cuda::PoolWinners& argmax) {
  const Shape out = max_pool2d_output_shape("max_pool2d_forward", x.shape(), window, stride);
  check_shape("max_pool2d_forward", "output", y.shape(), out);
  const index H = x.dim(2), W = x.dim(3);
  argmax.resize(y.size());
  argmax.set_geometry(x.shape(), out, window, stride);
  const index total = y.size();
  if (total == 0) return;
  cuda::detail::max_pool2d_forward_kernel<T><<<cuda::detail::grid_size(total), cuda::detail::block_size>>>(
      x.data(), H, W, out[2], out[3], window, stride, same_pool_padding_before(H, window, stride),
      same_pool_padding_before(W, window, stride), total, y.data(), argmax.data());
  cuda::check_launch("max_pool2d_forward");
}

/// dx assigned: dx[i] = sum of dy[j] over the outputs j whose argmax is i.
/// `argmax` comes from the forward pass whose input had dx's shape and whose
/// output had dy's (checked against the geometry it recorded).
template <class T>
void max_pool2d_backward(const cuda::PoolWinners& argmax, TensorView<const T, Cuda> dy, TensorView<T, Cuda> dx) {
  check_rank("max_pool2d_backward", "output gradient", dy.shape(), 4);
  check_rank("max_pool2d_backward", "input gradient", dx.shape(), 4);
  require(dy.dim(0) == dx.dim(0) && dy.dim(1) == dx.dim(1), ErrorKind::shape,
          "max_pool2d_backward: output gradient: expected [", dx.dim(0), ", ", dx.dim(1),
          ", *, *] to match the input gradient ", dx.shape(), ", got ", dy.shape());
  require(argmax.size() == dy.size(), ErrorKind::shape, "max_pool2d_backward: argmax: expected ", dy.size(),
          " indices (one per output), got ", argmax.size());
  // Indices from our forward lie in their own plane; a forward of other
  // shapes is what could send them astray, and its recorded geometry shows it.
  require(argmax.input_shape() == dx.shape() && argmax.output_shape() == dy.shape(), ErrorKind::argument,
          "max_pool2d_backward: argmax: expected a forward from ", dx.shape(), " to ", dy.shape(), ", got one from ",
          argmax.input_shape(), " to ", argmax.output_shape(), " (argmax from another forward pass?)");
  const index H = dx.dim(2), W = dx.dim(3), window = argmax.window(), stride = argmax.stride();
  const index total = dx.size();
  if (total == 0) return;
  cuda::detail::max_pool2d_backward_kernel<T><<<cuda::detail::grid_size(total), cuda::detail::block_size>>>(
      argmax.data(), dy.data(), H, W, dy.dim(2), dy.dim(3), window, stride,
      same_pool_padding_before(H, window, stride), same_pool_padding_before(W, window, stride), total, dx.data());
  cuda::check_launch("max_pool2d_backward");
}

}  // namespace nsl
