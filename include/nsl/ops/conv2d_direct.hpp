// nsl/ops/conv2d_direct.hpp — one image's stride-1 convolution without the
// patch matrix: the latency path of conv2d_forward (batch 1).
//
// For one image x (C x H x W), weights w (O x C x k x k) and padding p, with
// x̃ the zero-padded image (C x (H + 2p) x (W + 2p)):
//
//     y[o, oh, ow] = sum_{c, di, dj} x̃[c, oh + di, ow + dj] w[o, c, di, dj]
//
// The GEMM path (im2col) first copies x into a (C k k) x (Ho Wo) matrix, k k
// times the image, and packs the weights for each call; at batch 1 those
// copies cost a fifth of a 3 x 3 layer. Here the output is cut into tiles of
// P pixels of one output row by V L output channels (L lanes per SIMD
// register), held in P V registers, and each depth (c, di, dj) adds
//
//     acc[p][v] += x̃[c, oh + di, ow0 + p + dj] * w[v L .. v L + L - 1, c, di, dj]
//
// one broadcast of the image per pixel and V loads of weights: the padded
// image is read in place (each tile's rows are a few cache lines; its zero
// borders are kept between calls of one shape), and only the weights of
// the channel blocks a thread computes are laid out for it, depth by depth,
// V L channels side by side (or, for a layer that keeps them laid out,
// DirectWeights, none: Conv2d::prepare_inference). With AVX-512 a tile's
// sums reach the channel-major output 16 pixels x 16 channels at a time
// through a register transpose. Channels are the vector side,
// so 32, 64 or 128 of them fill the registers whatever the image size (a
// 7 x 7 image leaves a GEMM over its 49 pixels a quarter empty). The sum
// over the depths runs in the same order as the reference loops, c, di, dj.
//
// `conv2d_forward_reference` (nsl/ops/conv2d.hpp) is the formula; tests
// compare the two. CPU with xsimd only (conv2d_forward falls back to the
// GEMM path otherwise).
#pragma once

#include <algorithm>
#include <type_traits>
#include <vector>

#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
#include <xsimd/xsimd.hpp>
#endif

#include "nsl/core/simd.hpp"
#include "nsl/core/tensor.hpp"
#include "nsl/core/threads.hpp"
#include "nsl/ops/im2col.hpp"

namespace nsl {

/// Scratch of conv2d_direct_forward: the padded image (per thread, for a
/// batch) and, per thread, its channel blocks' weights. Only grows.
template <class T>
struct DirectConvScratch {
  std::vector<PaddedImageBuffer<T>> padded;  ///< per thread: x̃, C x (H + 2p) x (W + 2p) (unused without padding)
  std::vector<index> offsets;       ///< depth (c, di, dj) -> c (H + 2p)(W + 2p) + di (W + 2p) + dj
  std::vector<Vector<T>> weights;   ///< per thread: its blocks, each K x (V L) (a batch: all, in the first)
};

/// A stride-1 convolution's weights laid out once for conv2d_direct_forward,
/// which then skips its own layout of them on every call (at batch 1 that
/// layout is about a tenth of a deployed CNN-9's time: each call reads the
/// weights and writes them again). w^T, depth-major: row d = (c, di, dj)
/// holds the O channels' weights w[o, c, di, dj] side by side, then zeros up
/// to `stride`, a whole number of the widest tile O channels can take (1, 2
/// or 4 SIMD registers), so that every tile reads whole registers. Empty
/// without xsimd.
template <class T>
struct DirectWeights {
  Vector<T> values;  ///< K x stride
  index O = 0, K = 0, stride = 0;
  bool empty() const { return values.size() == 0; }
  /// Whether these are the weights of an O x K convolution (the caller's to
  /// keep equal to the weights they were made from).
  bool fits(index out_channels, index depth) const { return !empty() && O == out_channels && K == depth; }
};

#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
namespace detail {

template <class T>
struct DirectShape {
  using Register = xsimd::batch<T>;
  static constexpr index lanes = static_cast<index>(Register::size);
#if defined(__AVX512F__)
  static constexpr index accumulators = 28;  // of 32 registers: P V sums, V weights, one broadcast
#else
  static constexpr index accumulators = 12;  // of 16
#endif
};

// One tile: `Pixels` consecutive output pixels of one row (their image rows
// start at `x`: pixel p at depth d reads x[offsets[d] + p]) by `Registers`
// L channels, whose laid-out weights start at `w`: V L values per depth,
// `wstep` apart (V L for one block's own layout, more for DirectWeights).
// Writes the first `channels` channels to y (channel stride ys, pixel p at
// y + p) as the sum plus bias (none when null), through a ReLU when `relu`
// (v > 0 ? v : 0, relu_forward's value). (The offsets come from a table rather than
// from loops over c, di, dj: with those loops in view, GCC carries pixels
// from one dj to the next through the stack.)
template <class T, index Pixels, index Registers>
void direct_tile(const T* x, const index* offsets, index K, const T* w, index wstep, const T* bias, bool relu, T* y,
                 index ys, index channels) {
  using Shape = DirectShape<T>;
  using R = typename Shape::Register;
  constexpr index L = Shape::lanes, V = Registers, P = Pixels;
  R acc[P][V];
#pragma GCC unroll 16
  for (index p = 0; p < P; ++p)
#pragma GCC unroll 4
    for (index v = 0; v < V; ++v) acc[p][v] = R(T(0));
  for (index d = 0; d < K; ++d) {
    const T* row = x + offsets[d];
    R weight[V];
#pragma GCC unroll 4
    for (index v = 0; v < V; ++v) weight[v] = R::load_unaligned(w + v * L);
#pragma GCC unroll 16
    for (index p = 0; p < P; ++p) {
      const R pixel(row[p]);
#pragma GCC unroll 4
      for (index v = 0; v < V; ++v) acc[p][v] = simd_fma(pixel, weight[v], acc[p][v]);
    }
    w += wstep;
  }
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    // The sums are pixels x channels; y wants each channel's pixels side by
    // side: 16 pixels x 16 channels at a time through a register transpose,
    // then a masked store of each channel's run (the same values as the
    // scalar loop below, which stored them one by one).
    alignas(64) float tile[P][V * L];
    for (index p = 0; p < P; ++p)
#pragma GCC unroll 4
      for (index v = 0; v < V; ++v) acc[p][v].store_aligned(tile[p] + v * L);
    const __m512 zero = _mm512_setzero_ps();
    for (index p0 = 0; p0 < P; p0 += 16) {
      const index run = std::min<index>(16, P - p0);
      for (index first = 0; first < channels; first += L) {
        __m512 r[16];
        for (index i = 0; i < 16; ++i) r[i] = i < run ? _mm512_load_ps(tile[p0 + i] + first) : zero;
        simd_transpose16(r);
        for (index j = 0; j < std::min<index>(L, channels - first); ++j) {
          __m512 value = bias ? _mm512_add_ps(r[j], _mm512_set1_ps(bias[first + j])) : r[j];
          if (relu) value = _mm512_max_ps(value, zero);  // 0 where value is NaN, as below
          _mm512_mask_storeu_ps(y + (first + j) * ys + p0, simd_first_lanes16(run), value);
        }
      }
    }
  } else  // (an else, not a return: nvcc calls a loop after a returning branch unreachable)
#endif
  {
    alignas(64) T sums[V * L];
    for (index p = 0; p < P; ++p) {
#pragma GCC unroll 4
      for (index v = 0; v < V; ++v) acc[p][v].store_aligned(sums + v * L);
      for (index o = 0; o < channels; ++o) {
        const T value = bias ? sums[o] + bias[o] : sums[o];
        y[o * ys + p] = relu && !(value > T(0)) ? T(0) : value;
      }
    }
  }
}

// direct_tile for a run-time pixel count 1 <= pixels <= Pixels.
template <class T, index Registers, index Pixels>
void direct_tile_pixels(index pixels, const T* x, const index* offsets, index K, const T* w, index wstep,
                        const T* bias, bool relu, T* y, index ys, index channels) {
  if constexpr (Pixels > 1) {
    if (pixels < Pixels) {
      direct_tile_pixels<T, Registers, Pixels - 1>(pixels, x, offsets, K, w, wstep, bias, relu, y, ys, channels);
      return;
    }
  }
  direct_tile<T, Pixels, Registers>(x, offsets, K, w, wstep, bias, relu, y, ys, channels);
}

// Lays out channel block b (channels b V L ...) of w (O x K): element
// (depth, j) at packed[depth V L + j], zero past O. With AVX-512 floats and
// a full block, 16 depths of 16 channels at a time go through registers
// (simd_transpose16): one strided scalar load per value was a fifth of a
// 128-channel layer's time at batch 1.
template <class T>
void pack_direct_block(const T* w, index O, index K, index block, index width, T* packed) {
  const index first = block * width, count = std::min(width, O - first);
  index depth = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (count == width && width % 16 == 0)
      for (; depth + 16 <= K; depth += 16)
        for (index j = 0; j < width; j += 16) {
          __m512 r[16];
          for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(w + (first + j + i) * K + depth);
          simd_transpose16(r);
          for (int i = 0; i < 16; ++i) _mm512_storeu_ps(packed + (depth + i) * width + j, r[i]);
        }
  }
#endif
  for (; depth < K; ++depth) {  // rows of packed written in turn, `count` rows of w read
    T* to = packed + depth * width;
    for (index j = 0; j < count; ++j) to[j] = w[(first + j) * K + depth];
    std::fill(to + count, to + width, T(0));
  }
}

// The tile width V for O channels and Wo output columns: four registers when
// a whole row fits the accumulators with them (small images) and the
// channels fill more than two, else two when they fill more than one, else one.
template <class T>
index direct_registers(index O, index Wo) {
  using Shape = DirectShape<T>;
  if (Shape::accumulators / 4 >= Wo && O > 2 * Shape::lanes) return 4;
  return O > Shape::lanes ? 2 : 1;
}

template <class T, index Registers>
void direct_row(const T* x, const index* offsets, index K, index Wo, const T* w, index wstep, const T* bias,
                bool relu, T* y, index ys, index channels) {
  constexpr index max_pixels = DirectShape<T>::accumulators / Registers;
  const index segments = (Wo + max_pixels - 1) / max_pixels;
  for (index s = 0, ow = 0; s < segments; ++s) {  // segments as equal as can be: 28 = 14 + 14
    const index end = Wo * (s + 1) / segments, pixels = end - ow;
    direct_tile_pixels<T, Registers, max_pixels>(pixels, x + ow, offsets, K, w, wstep, bias, relu, y + ow, ys,
                                                 channels);
    ow = end;
  }
}
}  // namespace detail
#endif  // NSL_HAVE_XSIMD

/// w (O x K, K = C k k) laid out as DirectWeights (empty without xsimd).
template <class T>
DirectWeights<T> direct_weights(const T* w, index O, index K) {
  DirectWeights<T> out;
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
  const index lanes = detail::DirectShape<T>::lanes;  // the widest tile for O channels (direct_registers)
  const index widest = O > 2 * lanes ? 4 * lanes : O > lanes ? 2 * lanes : lanes;
  out.O = O, out.K = K, out.stride = (O + widest - 1) / widest * widest;
  out.values = Vector<T>::Zero(K * out.stride);
  for (index o = 0; o < O; ++o)
    for (index d = 0; d < K; ++d) out.values[d * out.stride + o] = w[o * K + d];
#else
  (void)w, (void)O, (void)K;
#endif
  return out;
}

/// Whether conv2d_direct_forward handles this layer (stride 1, built with xsimd).
inline bool conv2d_direct_supported(const ConvGeometry& g) {
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
  return g.stride == 1;
#else
  (void)g;
  return false;
#endif
}

#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
namespace detail {
// The sizes of one direct convolution: the padded image, the output, the
// tile width V L and the work items (one channel block's output row each).
struct DirectPlan {
  index C, H, W, O, k, p, K, Hp, Wp, Ho, Wo, V, width, blocks, items;
};

template <class T>
DirectPlan direct_plan(index C, index H, index W, index O, const ConvGeometry& g) {
  DirectPlan d{};
  d.C = C, d.H = H, d.W = W, d.O = O, d.k = g.kernel, d.p = g.padding, d.K = C * d.k * d.k;
  d.Hp = H + 2 * d.p, d.Wp = W + 2 * d.p, d.Ho = d.Hp - d.k + 1, d.Wo = d.Wp - d.k + 1;
  d.V = direct_registers<T>(O, d.Wo), d.width = d.V * DirectShape<T>::lanes;
  d.blocks = (O + d.width - 1) / d.width, d.items = d.blocks * d.Ho;
  return d;
}

// Depth (c, di, dj) -> its pixel's offset from the tile's first in x̃.
inline void direct_offsets(const DirectPlan& d, std::vector<index>& offsets) {
  offsets.resize(static_cast<std::size_t>(d.K));
  for (index c = 0, depth = 0; c < d.C; ++c)
    for (index di = 0; di < d.k; ++di)
      for (index dj = 0; dj < d.k; ++dj) offsets[static_cast<std::size_t>(depth++)] = (c * d.Hp + di) * d.Wp + dj;
}

// x̃ of image x in `buffer` (prepared for this shape by the caller, before
// any thread starts), or x itself without padding.
template <class T>
const T* direct_padded_image(const DirectPlan& d, const T* x, PaddedImageBuffer<T>& buffer) {
  if (d.p == 0) return x;
  buffer.copy_planes(x, 0, d.C);
  return buffer.values.data();
}

// Where the items' weights are: block b's values for depth 0 at
// base + (b - first_block) block_step, depth d's V L values `depth_step`
// further on per depth. A thread's own layout: its blocks, K x V L each
// (first_block its first, block_step K V L, depth_step V L);
// DirectWeights: every block in one matrix (first_block 0, block_step V L,
// depth_step its row length).
template <class T>
struct DirectWeightsAt {
  const T* base;
  index first_block, block_step, depth_step;
};

// Items [first, last) of one image.
template <class T>
void direct_items(const DirectPlan& d, const T* image, const index* offsets, const DirectWeightsAt<T>& w,
                  const T* bias, bool relu, index first, index last, T* y) {
  for (index item = first; item < last; ++item) {
    const index b = item / d.Ho, oh = item % d.Ho, channels = std::min(d.width, d.O - b * d.width);
    const T* block_weights = w.base + (b - w.first_block) * w.block_step;
    const T* block_bias = bias ? bias + b * d.width : nullptr;
    const T* x_row = image + oh * d.Wp;
    T* y_row = y + (b * d.width) * d.Ho * d.Wo + oh * d.Wo;
    const index ys = d.Ho * d.Wo, step = w.depth_step;
    if (d.V == 4)
      direct_row<T, 4>(x_row, offsets, d.K, d.Wo, block_weights, step, block_bias, relu, y_row, ys, channels);
    else if (d.V == 2)
      direct_row<T, 2>(x_row, offsets, d.K, d.Wo, block_weights, step, block_bias, relu, y_row, ys, channels);
    else direct_row<T, 1>(x_row, offsets, d.K, d.Wo, block_weights, step, block_bias, relu, y_row, ys, channels);
  }
}
}  // namespace detail
#endif  // NSL_HAVE_XSIMD

/// y (O x Ho x Wo) = conv(x, w) + bias for one image x (C x H x W), stride 1
/// (conv2d_direct_supported); bias null = none. Outside a parallel region,
/// the channel blocks and output rows are split over num_threads() threads.
/// `prepared`: w laid out beforehand (direct_weights), or null (each thread
/// lays out the blocks it computes). `relu`: y = max(conv + bias, 0), the
/// ReLU applied as each value is stored. Shapes are the caller's to check
/// (conv2d_forward does).
template <class T>
void conv2d_direct_forward(const T* x, index C, index H, index W, const T* w, index O, const T* bias,
                           const ConvGeometry& g, T* y, DirectConvScratch<T>& scratch,
                           const DirectWeights<T>* prepared = nullptr, bool relu = false) {
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
  const detail::DirectPlan d = detail::direct_plan<T>(C, H, W, O, g);
  if (prepared && !prepared->fits(O, d.K)) prepared = nullptr;
  if (scratch.padded.empty()) scratch.padded.resize(1);
  PaddedImageBuffer<T>& padded = scratch.padded[0];
  if (d.p > 0) padded.prepare(C, H, W, d.p);
  const T* image = d.p > 0 ? padded.values.data() : x;
  detail::direct_offsets(d, scratch.offsets);
  const int threads = in_parallel_region()
                          ? 1
                          : static_cast<int>(std::min<index>(num_threads(), std::max<index>(1, d.items / 2)));
  if (static_cast<int>(scratch.weights.size()) < threads) scratch.weights.resize(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads && !prepared; ++t) {  // room for the blocks thread t meets, before any thread starts
    const index first = d.items * t / threads, last = d.items * (t + 1) / threads;
    const index needed = last > first ? ((last - 1) / d.Ho - first / d.Ho + 1) * d.K * d.width : 0;
    Vector<T>& buffer = scratch.weights[static_cast<std::size_t>(t)];
    if (buffer.size() < needed) buffer.resize(needed);
  }
  // Thread t copies its share of the planes into the padded image and lays
  // out the weights of the blocks it computes, in its own buffer (read from
  // its own cache: weights laid out once and shared ran slower, from the
  // other core's). After the barrier it computes a contiguous share of the
  // items (output rows of a block), reading the whole padded image.
  const auto prepare = [&](int t) {
    if (d.p > 0) padded.copy_planes(x, C * t / threads, C * (t + 1) / threads);
    const index first = d.items * t / threads, last = d.items * (t + 1) / threads;
    if (first >= last || prepared) return;
    T* packed = scratch.weights[static_cast<std::size_t>(t)].data();
    for (index b = first / d.Ho; b <= (last - 1) / d.Ho; ++b)
      detail::pack_direct_block(w, O, d.K, b, d.width, packed + (b - first / d.Ho) * d.K * d.width);
  };
  const auto compute = [&](int t) {
    const index first = d.items * t / threads, last = d.items * (t + 1) / threads;
    if (first >= last) return;
    const detail::DirectWeightsAt<T> at =
        prepared ? detail::DirectWeightsAt<T>{prepared->values.data(), 0, d.width, prepared->stride}
                 : detail::DirectWeightsAt<T>{scratch.weights[static_cast<std::size_t>(t)].data(), first / d.Ho,
                                              d.K * d.width, d.width};
    detail::direct_items(d, image, scratch.offsets.data(), at, bias, relu, first, last, y);
  };
  on_threads_in_two_phases(threads, prepare, compute);
#else
  (void)x, (void)C, (void)H, (void)W, (void)w, (void)O, (void)bias, (void)g, (void)y, (void)scratch, (void)prepared;
  (void)relu;
  fail(ErrorKind::state, "conv2d_direct_forward: needs xsimd (conv2d_direct_supported)");
#endif
}

/// The same for a batch of N images (x: N x C x H x W, y: N x O x Ho x Wo):
/// the weights laid out once (unless `prepared`), then one image per thread
/// at a time (OpenMP over the batch outside a parallel region), each image
/// computed as conv2d_direct_forward computes it on one thread, so the
/// result does not depend on the thread count or the batch.
template <class T>
void conv2d_direct_forward_batch(const T* x, index N, index C, index H, index W, const T* w, index O, const T* bias,
                                 const ConvGeometry& g, T* y, DirectConvScratch<T>& scratch,
                                 const DirectWeights<T>* prepared = nullptr, bool relu = false) {
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
  const detail::DirectPlan d = detail::direct_plan<T>(C, H, W, O, g);
  detail::direct_offsets(d, scratch.offsets);
  detail::DirectWeightsAt<T> at{nullptr, 0, d.width, 0};
  if (prepared && prepared->fits(O, d.K)) {
    at = {prepared->values.data(), 0, d.width, prepared->stride};
  } else {
    if (scratch.weights.empty()) scratch.weights.resize(1);
    Vector<T>& packed = scratch.weights[0];
    if (packed.size() < d.blocks * d.K * d.width) packed.resize(d.blocks * d.K * d.width);
    for (index b = 0; b < d.blocks; ++b)
      detail::pack_direct_block(w, O, d.K, b, d.width, packed.data() + b * d.K * d.width);
    at = {packed.data(), 0, d.K * d.width, d.width};
  }
  const int threads = in_parallel_region() ? 1 : static_cast<int>(std::min<index>(num_threads(), N));
  if (static_cast<int>(scratch.padded.size()) < threads) scratch.padded.resize(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads && d.p > 0; ++t)  // the padded images' borders, before any thread starts
    scratch.padded[static_cast<std::size_t>(t)].prepare(d.C, d.H, d.W, d.p);
  const auto image = [&](index n, int t) {
    const T* padded = detail::direct_padded_image(d, x + n * C * H * W, scratch.padded[static_cast<std::size_t>(t)]);
    detail::direct_items(d, padded, scratch.offsets.data(), at, bias, relu, 0, d.items, y + n * O * d.Ho * d.Wo);
  };
  for_each_on_threads(N, threads, image);
#else
  (void)x, (void)N, (void)C, (void)H, (void)W, (void)w, (void)O, (void)bias, (void)g, (void)y, (void)scratch;
  (void)prepared, (void)relu;
  fail(ErrorKind::state, "conv2d_direct_forward_batch: needs xsimd (conv2d_direct_supported)");
#endif
}

}  // namespace nsl
