// nsl/ops/pool.hpp — 2-D max pooling with a square window, a stride and
// TensorFlow's 'same' padding, and its gradient.
//
// For x (N x C x H x W), window k and stride s, the output is N x C x Ho x Wo
// with Ho = ceil(H / s) (likewise Wo). The window is padded by
//
//     total = max((Ho - 1) * s + k - H, 0),   before = floor(total / 2)
//
// (the larger half after, as TensorFlow), and padded cells never win:
//
//     y[n, c, oh, ow] = max { x[n, c, h, w] : h = oh*s - before + di, w = ow*s - before_w + dj,
//                             0 <= di, dj < k, (h, w) inside the image }
//
// so 2x2 stride 2 maps 28 -> 14, 7 -> 4 (the last window holds one row), 8 -> 4.
// Every window holds at least one real cell (before <= k - 1 and
// (Ho - 1) * s <= H - 1). Ties go to the first maximum in row-major window
// order; a NaN in a window wins (the first one), so a diverging network shows.
//
// Forward records, for every output, the flat index into x of the cell that
// won (`argmax`). Backward routes each output gradient to that cell:
//
//     dx[i] = sum over outputs j with argmax[j] == i of dy[j]      (dx assigned)
//
// `max_pool2d_forward_reference` / `max_pool2d_backward_reference` are the
// formulas as loops (the reference backward finds the winners again from x);
// `max_pool2d_forward` / `max_pool2d_backward` clip each window once and run
// OpenMP over the N*C planes; `max_pool2d_infer` is the forward without the
// winners, for inference. Tests compare them with the reference.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "nsl/core/simd.hpp"
#include "nsl/core/tensor.hpp"
#include "nsl/core/threads.hpp"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace nsl {

/// Output extent of 'same' pooling: ceil(input / stride).
inline index same_pool_output_extent(index input_extent, index stride) {
  return (input_extent + stride - 1) / stride;
}

/// Padding before the first window of 'same' pooling (the smaller half).
inline index same_pool_padding_before(index input_extent, index window, index stride) {
  const index total = std::max<index>(
      (same_pool_output_extent(input_extent, stride) - 1) * stride + window - input_extent, 0);
  return total / 2;
}

/// Checks the window, stride and input, and returns the output shape.
inline Shape max_pool2d_output_shape(const char* op, const Shape& x, index window, index stride) {
  require(window >= 1, ErrorKind::argument, op, ": window must be >= 1, got ", window);
  require(stride >= 1, ErrorKind::argument, op, ": stride must be >= 1, got ", stride);
  check_rank(op, "input", x, 4);
  return Shape{x[0], x[1], same_pool_output_extent(x[2], stride),
               same_pool_output_extent(x[3], stride)};
}

namespace detail {
// Whether `candidate` replaces `best` as the window's maximum: strictly
// greater (so ties keep the earlier cell), or the first NaN.
template <class T>
inline bool pool_candidate_wins(T candidate, T best) {
  return candidate > best || (std::isnan(candidate) && !std::isnan(best));
}

// y[j] = the maximum of the 2 x 2 window top[2j], top[2j + 1], bottom[2j],
// bottom[2j + 1] for j < count, NaN when any of the four is: whole
// registers of windows with AVX-512 or AVX2 (floats), the rest one by one.
// max_pool2d_infer's windows away from the clipped edge.
#if defined(__AVX512F__)
// max(a, b) lane by lane, NaN where either is (max_ps alone returns b there).
inline __m512 pool_max_nan(__m512 a, __m512 b) {
  return _mm512_mask_add_ps(_mm512_max_ps(a, b), _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q), a, b);
}
// Up to 16 windows from up to 32 cells of each row (masked: only `count`).
inline void pool_pairs16(const float* top, const float* bottom, float* y, index count) {
  const __mmask16 low = simd_first_lanes16(std::min<index>(2 * count, 16));
  const __mmask16 high = simd_first_lanes16(std::max<index>(2 * count - 16, 0));
  const __m512 v0 = pool_max_nan(_mm512_maskz_loadu_ps(low, top), _mm512_maskz_loadu_ps(low, bottom));
  const __m512 v1 = pool_max_nan(_mm512_maskz_loadu_ps(high, top + 16), _mm512_maskz_loadu_ps(high, bottom + 16));
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512 m = pool_max_nan(_mm512_permutex2var_ps(v0, even, v1), _mm512_permutex2var_ps(v0, odd, v1));
  _mm512_mask_storeu_ps(y, simd_first_lanes16(count), m);
}
#elif defined(__AVX2__)
inline __m256 pool_max_nan(__m256 a, __m256 b) {
  return _mm256_blendv_ps(_mm256_max_ps(a, b), _mm256_add_ps(a, b), _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
}
// 8 windows from 16 cells of each row.
inline void pool_pairs8(const float* top, const float* bottom, float* y) {
  const __m256 v0 = pool_max_nan(_mm256_loadu_ps(top), _mm256_loadu_ps(bottom));
  const __m256 v1 = pool_max_nan(_mm256_loadu_ps(top + 8), _mm256_loadu_ps(bottom + 8));
  // Even and odd cells of each 128-bit half, then the halves' quarters in order.
  const __m256 m = pool_max_nan(_mm256_shuffle_ps(v0, v1, _MM_SHUFFLE(2, 0, 2, 0)),
                                _mm256_shuffle_ps(v0, v1, _MM_SHUFFLE(3, 1, 3, 1)));
  _mm256_storeu_ps(y, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(m), _MM_SHUFFLE(3, 1, 2, 0))));
}
#endif

template <class T>
void pool_pairs(const T* top, const T* bottom, T* y, index count) {
  index j = 0;
  if constexpr (std::is_same_v<T, float>) {
#if defined(__AVX512F__)
    for (; j < count; j += 16) pool_pairs16(top + 2 * j, bottom + 2 * j, y + j, std::min<index>(count - j, 16));
#elif defined(__AVX2__)
    for (; j + 8 <= count; j += 8) pool_pairs8(top + 2 * j, bottom + 2 * j, y + j);
#endif
  }
  const T nan = std::numeric_limits<T>::quiet_NaN();
  for (; j < count; ++j) {
    const T a = top[2 * j], b = top[2 * j + 1], c = bottom[2 * j], d = bottom[2 * j + 1];
    const T ab = a > b ? a : b, cd = c > d ? c : d;
    const bool unordered = (a != a) | (b != b) | (c != c) | (d != d);
    y[j] = unordered ? nan : ab > cd ? ab : cd;
  }
}
}  // namespace detail

// ---------------------------------------------------------------------------
// Reference: the formulas as loops.

/// y assigned; argmax resized to y.size() and assigned (flat indices into x).
template <class T>
void max_pool2d_forward_reference(TensorView<const T> x, index window, index stride,
                                  TensorView<T> y, std::vector<index>& argmax) {
  const Shape out = max_pool2d_output_shape("max_pool2d_forward_reference", x.shape(), window, stride);
  check_shape("max_pool2d_forward_reference", "output", y.shape(), out);
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const index pad_top = same_pool_padding_before(H, window, stride);
  const index pad_left = same_pool_padding_before(W, window, stride);
  argmax.resize(static_cast<std::size_t>(y.size()));
  for (index n = 0; n < N; ++n)
    for (index c = 0; c < C; ++c)
      for (index oh = 0; oh < out[2]; ++oh)
        for (index ow = 0; ow < out[3]; ++ow) {
          index winner = -1;
          for (index di = 0; di < window; ++di)
            for (index dj = 0; dj < window; ++dj) {
              const index h = oh * stride - pad_top + di;
              const index w = ow * stride - pad_left + dj;
              if (h < 0 || h >= H || w < 0 || w >= W) continue;  // padding never wins
              const index cell = ((n * C + c) * H + h) * W + w;
              if (winner < 0 || detail::pool_candidate_wins(x[cell], x[winner])) winner = cell;
            }
          const index j = ((n * C + c) * out[2] + oh) * out[3] + ow;
          y[j] = x[winner];
          argmax[static_cast<std::size_t>(j)] = winner;
        }
}

/// dx assigned: each dy goes to its window's first maximum in x.
template <class T>
void max_pool2d_backward_reference(TensorView<const T> x, index window, index stride,
                                   TensorView<const T> dy, TensorView<T> dx) {
  const Shape out = max_pool2d_output_shape("max_pool2d_backward_reference", x.shape(), window, stride);
  check_shape("max_pool2d_backward_reference", "output gradient", dy.shape(), out);
  check_shape("max_pool2d_backward_reference", "input gradient", dx.shape(), x.shape());
  Tensor<T> y(out);
  std::vector<index> winners;
  max_pool2d_forward_reference<T>(x, window, stride, y.view(), winners);
  for (index i = 0; i < dx.size(); ++i) dx[i] = T(0);
  for (index j = 0; j < dy.size(); ++j) dx[winners[static_cast<std::size_t>(j)]] += dy[j];
}

// ---------------------------------------------------------------------------
// Fast path: windows clipped to the image once, no per-cell bounds test,
// OpenMP over the N*C planes.

/// Where max_pool2d_forward keeps its winners on device D (host indices
/// here; nsl/cuda specialises it to device memory).
template <class D>
struct PoolIndices {
  using type = std::vector<index>;
};
template <class D>
using pool_indices_t = typename PoolIndices<D>::type;

/// y assigned; argmax resized to y.size() (no allocation once it has that
/// capacity) and assigned with the flat index into x of each output's maximum.
template <class T>
void max_pool2d_forward(TensorView<const T> x, index window, index stride, TensorView<T> y,
                        std::vector<index>& argmax) {
  const Shape out = max_pool2d_output_shape("max_pool2d_forward", x.shape(), window, stride);
  check_shape("max_pool2d_forward", "output", y.shape(), out);
  const index H = x.dim(2), W = x.dim(3), out_h = out[2], out_w = out[3];
  const index planes = x.dim(0) * x.dim(1), in_plane = H * W, out_plane = out_h * out_w;
  const index pad_top = same_pool_padding_before(H, window, stride);
  const index pad_left = same_pool_padding_before(W, window, stride);
  argmax.resize(static_cast<std::size_t>(y.size()));
  index* const winners = argmax.data();
  auto pool_plane = [&](index plane) {
    const T* x_plane = x.data() + plane * in_plane;
    T* y_plane = y.data() + plane * out_plane;
    index* winners_plane = winners + plane * out_plane;
    for (index oh = 0; oh < out_h; ++oh) {
      const index h_first = std::max<index>(oh * stride - pad_top, 0);
      const index h_end = std::min<index>(oh * stride - pad_top + window, H);
      for (index ow = 0; ow < out_w; ++ow) {
        const index w_first = std::max<index>(ow * stride - pad_left, 0);
        const index w_end = std::min<index>(ow * stride - pad_left + window, W);
        index winner = h_first * W + w_first;
        T best = x_plane[winner];
        for (index h = h_first; h < h_end; ++h)
          for (index w = w_first; w < w_end; ++w) {
            const T candidate = x_plane[h * W + w];
            if (detail::pool_candidate_wins(candidate, best)) {
              best = candidate;
              winner = h * W + w;
            }
          }
        y_plane[oh * out_w + ow] = best;
        winners_plane[oh * out_w + ow] = plane * in_plane + winner;
      }
    }
  };
  // A parallel region only where it can split work: libgomp allocates a team
  // on each entry to one, `if (false)` included, and inference promises no
  // allocation with one thread, at batch 1 or from the caller's own parallel
  // region.
  if (planes > 1 && num_threads() > 1 && !in_parallel_region()) {
NSL_OMP(parallel for schedule(static))
    for (index plane = 0; plane < planes; ++plane) pool_plane(plane);
  } else {
    for (index plane = 0; plane < planes; ++plane) pool_plane(plane);
  }
}

/// Inference: y assigned as by max_pool2d_forward (a NaN in a window gives
/// NaN), without the winners. The running maximum is a select rather than a
/// branch (ReLU outputs tie at zero often, and a mispredicted branch per
/// cell cost more than the comparisons), and 2 x 2 stride-2 windows go a
/// register of windows at a time (detail::pool_pairs; GCC left the plain
/// loop scalar), those clipped by an odd height or width beside them. One thread
/// below 64 Ki window cells: a parallel region costs more than that work.
template <class T>
void max_pool2d_infer(TensorView<const T> x, index window, index stride, TensorView<T> y) {
  const Shape out = max_pool2d_output_shape("max_pool2d_infer", x.shape(), window, stride);
  check_shape("max_pool2d_infer", "output", y.shape(), out);
  const index H = x.dim(2), W = x.dim(3), out_h = out[2], out_w = out[3];
  const index planes = x.dim(0) * x.dim(1), in_plane = H * W, out_plane = out_h * out_w;
  const index pad_top = same_pool_padding_before(H, window, stride);
  const index pad_left = same_pool_padding_before(W, window, stride);
  // The maximum by plain comparisons (which drop NaN) and, beside it, whether
  // any cell was NaN: both branch-free, so the loops vectorise.
  const bool pairs = window == 2 && stride == 2 && pad_top == 0 && pad_left == 0;
  const index full_w = pairs ? W / 2 : 0;  // windows with both columns inside
  const T nan = std::numeric_limits<T>::quiet_NaN();
  auto pool_plane = [&](index plane) {
    const T* x_plane = x.data() + plane * in_plane;
    T* y_plane = y.data() + plane * out_plane;
    for (index oh = 0; oh < out_h; ++oh) {
      const index h_first = std::max<index>(oh * stride - pad_top, 0);
      const index h_end = std::min<index>(oh * stride - pad_top + window, H);
      T* y_row = y_plane + oh * out_w;
      index ow = 0;
      if (pairs) {  // (a window clipped to one row, at the bottom of an odd height: that row twice)
        const T* top = x_plane + h_first * W;
        const T* bottom = h_end - h_first == 2 ? top + W : top;
        detail::pool_pairs(top, bottom, y_row, full_w);
        if (W % 2) {  // the window clipped to the last column
          const T a = top[W - 1], b = bottom[W - 1];
          y_row[full_w] = ((a != a) | (b != b)) ? nan : a > b ? a : b;
        }
        continue;
      }
      for (; ow < out_w; ++ow) {
        const index w_first = std::max<index>(ow * stride - pad_left, 0);
        const index w_end = std::min<index>(ow * stride - pad_left + window, W);
        T best = x_plane[h_first * W + w_first];
        bool unordered = false;
        for (index h = h_first; h < h_end; ++h)
          for (index w = w_first; w < w_end; ++w) {
            const T candidate = x_plane[h * W + w];
            best = candidate > best ? candidate : best;
            unordered |= candidate != candidate;
          }
        y_row[ow] = unordered ? nan : best;
      }
    }
  };
  const bool parallel = planes > 1 && num_threads() > 1 && !in_parallel_region() &&
                        planes * out_plane * window * window >= (index(1) << 16);
  if (parallel) {
NSL_OMP(parallel for schedule(static))
    for (index plane = 0; plane < planes; ++plane) pool_plane(plane);
  } else {
    for (index plane = 0; plane < planes; ++plane) pool_plane(plane);
  }
}

/// dx assigned: zeroed, then dx[argmax[j]] += dy[j]. `argmax` comes from the
/// forward pass whose input had dx's shape and whose output had dy's.
template <class T>
void max_pool2d_backward(const std::vector<index>& argmax, TensorView<const T> dy, TensorView<T> dx) {
  check_rank("max_pool2d_backward", "output gradient", dy.shape(), 4);
  check_rank("max_pool2d_backward", "input gradient", dx.shape(), 4);
  require(dy.dim(0) == dx.dim(0) && dy.dim(1) == dx.dim(1), ErrorKind::shape,
          "max_pool2d_backward: output gradient: expected [", dx.dim(0), ", ", dx.dim(1),
          ", *, *] to match the input gradient ", dx.shape(), ", got ", dy.shape());
  require(static_cast<index>(argmax.size()) == dy.size(), ErrorKind::shape,
          "max_pool2d_backward: argmax: expected ", dy.size(),
          " indices (one per output), got ", argmax.size());
  const index planes = dx.dim(0) * dx.dim(1);
  const index in_plane = dx.dim(2) * dx.dim(3), out_plane = dy.dim(2) * dy.dim(3);
  const index* const winners = argmax.data();
  // Each plane's winners lie in the same plane of x, so planes scatter
  // independently; an index outside its plane is skipped and reported after.
  index stray_indices = 0;
  const bool parallel = planes > 1 && !in_parallel_region();
  (void)parallel;
NSL_OMP(parallel for schedule(static) reduction(+ : stray_indices) if (parallel))
  for (index plane = 0; plane < planes; ++plane) {
    T* dx_plane = dx.data() + plane * in_plane;
    std::fill(dx_plane, dx_plane + in_plane, T(0));
    const index first = plane * in_plane;
    for (index j = plane * out_plane; j < (plane + 1) * out_plane; ++j) {
      const index cell = winners[j] - first;
      if (cell >= 0 && cell < in_plane)
        dx_plane[cell] += dy[j];
      else
        ++stray_indices;
    }
  }
  require(stray_indices == 0, ErrorKind::argument, "max_pool2d_backward: argmax: expected each "
          "index inside its own plane of the input gradient ", dx.shape(), ", got ", stray_indices,
          " outside (argmax from another forward pass?)");
}

}  // namespace nsl
