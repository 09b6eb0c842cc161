// nsl/ops/conv2d.hpp — 2-D convolution (cross-correlation, as in every
// framework) with a square kernel, stride and zero padding, and its gradients.
//
// Forward, for x (N x C x H x W), w (O x C x k x k), bias b (O) or none:
//
//     y[n, o, oh, ow] = b[o] + sum_{c, di, dj} w[o, c, di, dj] * x[n, c, oh*s - p + di, ow*s - p + dj]
//
// In matrix form, per image, with X_n = im2col(x_n) and W the O x (C K) matrix:
//     Y_n = W X_n + b 1^T
// Backward, given dy = dL/dy (docs/conv2d_backward.md derives it):
//     dW  = sum_n dY_n X_n^T           dX_n = col2im(W^T dY_n)
//     db  = sum_n dY_n 1
// Contract: dx is assigned; dw and db are accumulated (+=).
//
// `conv2d_forward_reference` / `conv2d_backward_reference` are the formulas as
// loops; `conv2d_forward` / `conv2d_backward` are GEMMs (nsl::gemm, the
// weights packed once per call) whose patch operand X_n is packed straight
// from the image (PatchPacker: im2col without the matrix), with OpenMP over
// the batch; only dX_n = W^T dY_n is formed, for col2im. Tests compare the two.
//
// Output-side form. im2col copies the input K times; when a stride-1,
// size-keeping (2p = k - 1) convolution has fewer output than input
// channels (O < C, e.g. the similarity predictor's last layer, 64 -> 9), it
// is cheaper to multiply first and shift afterwards. With Ŵ the (O K) x C
// matrix Ŵ[(o, K-1-r), c] = w[o, c, r] (slots flipped) and x_n as C x HW:
//     U_n = Ŵ x_n        y_n = col2im(U_n)      (O channels: U's row (o, K-1-r),
//                                               moved by slot K-1-r's offset, is
//                                               W_r x_n moved by slot r's)
//     dU_n = im2col(dy_n)      dŴ = sum_n dU_n x_n^T      dx_n = Ŵ^T dU_n
// The same GEMM sizes; the copies are O K x HW instead of C K x HW.
//
// Winograd. A 3 x 3 stride-1 layer with enough channels and images takes its
// forward and its gradients from nsl/ops/winograd.hpp:
// the same contract, about half the multiplications (conv2d_winograd_shape below).
#pragma once

#include <cstddef>
#include <vector>

#include "nsl/core/gemm.hpp"
#include "nsl/core/tensor.hpp"
#include "nsl/core/threads.hpp"
#include "nsl/ops/activation.hpp"
#include "nsl/ops/conv2d_direct.hpp"
#include "nsl/ops/im2col.hpp"
#include "nsl/ops/winograd.hpp"

namespace nsl {

/// Checks x, w, bias (rank 0, an empty view, = no bias) and returns the output shape.
inline Shape conv2d_output_shape(const char* op, const Shape& x, const Shape& w, const Shape& bias,
                          const ConvGeometry& g) {
  check_rank(op, "input", x, 4);
  check_rank(op, "weight", w, 4);
  require(w[2] == g.kernel && w[3] == g.kernel, ErrorKind::shape, op, ": weight: expected [",
          w[0], ", ", x[1], ", ", g.kernel, ", ", g.kernel, "], got ", w);
  require(w[1] == x[1], ErrorKind::shape, op, ": weight: expected [", w[0], ", ", x[1], ", ",
          g.kernel, ", ", g.kernel, "] for an input of ", x[1], " channels, got ", w);
  if (bias.rank() != 0) check_shape(op, "bias", bias, Shape{w[0]});
  check_geometry(op, g, x[2], x[3]);
  return Shape{x[0], w[0], g.output_extent(x[2]), g.output_extent(x[3])};
}

// ---------------------------------------------------------------------------
// Reference: the formulas as loops.

template <class T>
void conv2d_forward_reference(TensorView<const T> x, TensorView<const T> w,
                              TensorView<const T> bias, const ConvGeometry& g, TensorView<T> y) {
  const Shape out = conv2d_output_shape("conv2d_forward_reference", x.shape(), w.shape(),
                                           bias.shape(), g);
  check_shape("conv2d_forward_reference", "output", y.shape(), out);
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(0), k = g.kernel;
  for (index n = 0; n < N; ++n)
    for (index o = 0; o < O; ++o)
      for (index oh = 0; oh < out[2]; ++oh)
        for (index ow = 0; ow < out[3]; ++ow) {
          T sum = bias.size() ? bias[o] : T(0);
          for (index c = 0; c < C; ++c)
            for (index di = 0; di < k; ++di)
              for (index dj = 0; dj < k; ++dj) {
                const index ih = oh * g.stride - g.padding + di;
                const index iw = ow * g.stride - g.padding + dj;
                if (ih >= 0 && ih < H && iw >= 0 && iw < W) sum += w(o, c, di, dj) * x(n, c, ih, iw);
              }
          y(n, o, oh, ow) = sum;
        }
}

/// dx assigned (skipped when dx.size() == 0); dw, db accumulated (db skipped when empty).
template <class T>
void conv2d_backward_reference(TensorView<const T> x, TensorView<const T> w,
                               const ConvGeometry& g, TensorView<const T> dy, TensorView<T> dx,
                               TensorView<T> dw, TensorView<T> db) {
  const Shape out = conv2d_output_shape("conv2d_backward_reference", x.shape(), w.shape(),
                                           db.shape(), g);
  check_shape("conv2d_backward_reference", "output gradient", dy.shape(), out);
  check_shape("conv2d_backward_reference", "weight gradient", dw.shape(), w.shape());
  if (dx.size()) check_shape("conv2d_backward_reference", "input gradient", dx.shape(), x.shape());
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(0), k = g.kernel;
  for (index i = 0; i < dx.size(); ++i) dx[i] = T(0);
  for (index n = 0; n < N; ++n)
    for (index o = 0; o < O; ++o)
      for (index oh = 0; oh < out[2]; ++oh)
        for (index ow = 0; ow < out[3]; ++ow) {
          const T g_out = dy(n, o, oh, ow);
          if (db.size()) db[o] += g_out;
          for (index c = 0; c < C; ++c)
            for (index di = 0; di < k; ++di)
              for (index dj = 0; dj < k; ++dj) {
                const index ih = oh * g.stride - g.padding + di;
                const index iw = ow * g.stride - g.padding + dj;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                dw(o, c, di, dj) += g_out * x(n, c, ih, iw);
                if (dx.size()) dx(n, c, ih, iw) += g_out * w(o, c, di, dj);
              }
        }
}

// ---------------------------------------------------------------------------
// Fast path: im2col + GEMM.

/// Scratch memory of the fast convolution, kept by the caller across calls so
/// that a training step allocates nothing after the first.
template <class T, class D = Cpu>  // the CPU one; nsl/cuda specialises it for Cuda
struct Conv2dWorkspace {
  std::vector<Matrix<T>> columns;          ///< one (C K) x (Ho Wo) dX_n per thread before col2im ((O K) x HW output-side)
  std::vector<Matrix<T>> weight_partials;  ///< one O x (C K) dW partial sum per chunk of the batch ((O K) x C
                                           ///< per thread, output-side)
  std::vector<Vector<T>> bias_partials;    ///< one db partial sum per chunk (per thread, output-side)
  Matrix<T> flipped_weight;                ///< Ŵ of the output-side form
  PackedLhs<T> packed_weight;              ///< W, W^T, Ŵ or Ŵ^T packed once for the batch's GEMMs
  std::vector<GemmScratch<T>> gemm;        ///< one GEMM packing scratch per thread
  std::vector<Vector<T>> padded;           ///< one zero-padded image per thread, read by PatchPacker
  DirectConvScratch<T> direct;             ///< the one-image stride-1 path's (conv2d_direct.hpp)
  WinogradWorkspace<T> winograd;           ///< the Winograd gradients' (winograd.hpp)

  void reserve_gemm(int threads) {
    if (static_cast<int>(gemm.size()) < threads) gemm.resize(static_cast<std::size_t>(threads));
  }
  void reserve_columns(int threads, index rows, index cols) {
    reserve_gemm(threads);
    if (static_cast<int>(columns.size()) < threads) columns.resize(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t) columns[static_cast<std::size_t>(t)].resize(rows, cols);
  }
  /// Room for one padded image of `size` values per thread (grows only); returns the buffers.
  std::vector<Vector<T>>& reserve_padded(int threads, index size) {
    if (static_cast<int>(padded.size()) < threads) padded.resize(static_cast<std::size_t>(threads));
    for (int t = 0; t < threads; ++t)
      if (padded[static_cast<std::size_t>(t)].size() < size) padded[static_cast<std::size_t>(t)].resize(size);
    return padded;
  }
};

namespace detail {
// Backward loops give each thread one chunk of consecutive images (a static
// split: with dynamic scheduling a thread's scratch would grow whenever it
// first met a layer, and measured runs were slower); a chunk's weight
// gradient is summed in image order and the chunks' sums are added in chunk
// order, so the result depends on the batch size and thread count alone.
inline index batch_chunks(index batch, int threads) { return std::min<index>(batch, threads); }

// Sizes one rows x cols weight partial and one bias partial per chunk. They
// are not zeroed: each chunk's first image assigns them.
template <class T>
void size_chunk_partials(std::vector<Matrix<T>>& weight, std::vector<Vector<T>>& bias, index chunks, index rows,
                         index cols) {
  weight.resize(static_cast<std::size_t>(chunks));
  bias.resize(static_cast<std::size_t>(chunks));
  for (std::size_t c = 0; c < static_cast<std::size_t>(chunks); ++c) {
    weight[c].resize(rows, cols);
    bias[c].resize(rows);
  }
}

// Adds the chunks' partials to dw (rows x cols) and db (skipped when empty) in
// chunk order: deterministic for a fixed batch size and thread count.
template <class T, class WeightGradient>
void add_chunk_partials(const std::vector<Matrix<T>>& weight, const std::vector<Vector<T>>& bias, index chunks,
                        WeightGradient&& dw, TensorView<T> db) {
  for (std::size_t c = 0; c < static_cast<std::size_t>(chunks); ++c) {
    dw += weight[c];
    if (db.size()) db.vec() += bias[c];
  }
}

// Threads for a loop over `batch` items: spread the batch over OpenMP threads
// when there are at least as many items as threads (each GEMM then runs on
// its thread alone); otherwise one thread here, and nsl::gemm splits its
// output over the threads.
inline int batch_threads(index batch) {
  const int threads = in_parallel_region() ? 1 : num_threads();
  return batch >= threads ? threads : 1;
}
inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Runs body(n, t) for the images n of [0, N), t the number of the thread
// running it: on `threads` OpenMP threads, or, with one, on the calling thread
// outside any parallel region. (libgomp allocates the team of a one-thread
// region, `if (false)` included, on each entry: a batch of 1, or a call from
// inside the caller's own parallel region, would allocate on every call.)
template <class Body>
void for_each_image(index N, int threads, Body&& body) {
  if (threads <= 1) {
    for (index n = 0; n < N; ++n) body(n, std::size_t(0));
    return;
  }
NSL_OMP(parallel for num_threads(threads) schedule(static))
  for (index n = 0; n < N; ++n) body(n, static_cast<std::size_t>(thread_id()));
}

// Where conv2d_forward and conv2d_backward use Winograd's F(2x2, 3x3)
// (nsl/ops/winograd.hpp, docs/winograd.md): 3 x 3 stride-1 layers with at
// least 32 input and 32 output channels, on a batch of at least 16 images
// (a single image or a few leave its GEMMs too narrow; from 16 on, the
// forward puts 16 images across the SIMD lanes), in a build with xsimd (the
// configuration measured). Measured on CNN-9's three stages at batch 64, 2
// threads (nsl_bench conv3x3/*, docs/winograd.md): the gradients take
// 0.57-0.84x the patch-matrix GEMMs' time with AVX-512 and 0.70-0.72x with
// AVX2; the forward 0.67-0.92x the direct convolution's with AVX-512. The
// choice depends on the shapes and the build alone, so a run is the same on every call.
inline bool conv2d_winograd_shape(index in_channels, index out_channels, index batch, const ConvGeometry& g) {
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
  return winograd_supported(g) && in_channels >= 32 && out_channels >= 32 && batch >= 16;
#else
  (void)in_channels, (void)out_channels, (void)batch, (void)g;
  return false;
#endif
}
inline bool conv2d_backward_winograd(index in_channels, index out_channels, index batch, const ConvGeometry& g) {
  return conv2d_winograd_shape(in_channels, out_channels, batch, g);
}
inline bool conv2d_forward_winograd(index in_channels, index out_channels, index batch, const ConvGeometry& g) {
  return conv2d_winograd_shape(in_channels, out_channels, batch, g);
}

// True when conv2d_forward / conv2d_backward use the output-side form
// (header comment): stride 1, 2p = k - 1, fewer output than input channels.
inline bool conv2d_output_side(index in_channels, index out_channels, const ConvGeometry& g) {
  return g.stride == 1 && 2 * g.padding == g.kernel - 1 && out_channels < in_channels;
}

// Ŵ[(o, K-1-r), c] = w[o, c, r] for the output-side form.
template <class T>
void flip_weight_slots(TensorView<const T> w, Matrix<T>& flipped) {
  const index O = w.dim(0), C = w.dim(1), K = w.dim(2) * w.dim(3);
  flipped.resize(O * K, C);
  for (index o = 0; o < O; ++o)
    for (index c = 0; c < C; ++c)
      for (index r = 0; r < K; ++r) flipped(o * K + (K - 1 - r), c) = w.data()[(o * C + c) * K + r];
}

template <class T>
void conv2d_forward_output_side(TensorView<const T> x, TensorView<const T> w, TensorView<const T> bias,
                                const ConvGeometry& g, TensorView<T> y, Conv2dWorkspace<T>& ws) {
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(0), K = g.slots(), P = H * W;
  flip_weight_slots(w, ws.flipped_weight);
  const int threads = batch_threads(N);
  ws.reserve_columns(threads, O * K, P);
  ws.packed_weight.pack(false, O * K, C, ws.flipped_weight.data());
  for_each_image(N, threads, [&](index n, std::size_t t) {
    Matrix<T>& shifted = ws.columns[t];
    gemm<T>(ws.packed_weight, false, P, x.data() + n * C * P, T(0), shifted.data(), ws.gemm[t]);
    col2im_scratch(shifted.data(), O, H, W, g, y.data() + n * O * P);
    if (bias.size()) y.sample(n).matrix(O, P).colwise() += bias.vec();
  });
}

template <class T>
void conv2d_backward_output_side(TensorView<const T> x, TensorView<const T> w, const ConvGeometry& g,
                                 TensorView<const T> dy, TensorView<T> dx, TensorView<T> dw, TensorView<T> db,
                                 Conv2dWorkspace<T>& ws) {
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(0), K = g.slots(), P = H * W;
  flip_weight_slots(w, ws.flipped_weight);
  const int threads = batch_threads(N);
  ws.reserve_columns(threads, O * K, P);
  ws.weight_partials.resize(static_cast<std::size_t>(threads));
  ws.bias_partials.resize(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads; ++t) {
    ws.weight_partials[static_cast<std::size_t>(t)].setZero(O * K, C);
    ws.bias_partials[static_cast<std::size_t>(t)].setZero(O);
  }
  if (dx.size()) ws.packed_weight.pack(true, C, O * K, ws.flipped_weight.data());
NSL_OMP(parallel for num_threads(threads) schedule(static) if (threads > 1))
  for (index n = 0; n < N; ++n) {
    const auto t = static_cast<std::size_t>(thread_id());
    Matrix<T>& shifted_grad = ws.columns[t];
    const T* x_n = x.data() + n * C * P;
    im2col(dy.data() + n * O * P, O, H, W, g, shifted_grad.data());
    gemm<T>(false, true, O * K, C, P, shifted_grad.data(), x_n, T(1), ws.weight_partials[t].data(), ws.gemm[t]);
    ws.bias_partials[t] += dy.sample(n).matrix(O, P).rowwise().sum();
    if (dx.size())
      gemm<T>(ws.packed_weight, false, P, shifted_grad.data(), T(0), dx.data() + n * C * P, ws.gemm[t]);
  }
  // Sum the per-thread partials in thread order (deterministic), then undo the slot flip.
  for (int t = 1; t < threads; ++t) ws.weight_partials[0] += ws.weight_partials[static_cast<std::size_t>(t)];
  const Matrix<T>& sum = ws.weight_partials[0];
  for (index o = 0; o < O; ++o)
    for (index c = 0; c < C; ++c)
      for (index r = 0; r < K; ++r) dw.data()[(o * C + c) * K + r] += sum(o * K + (K - 1 - r), c);
  if (db.size())
    for (int t = 0; t < threads; ++t) db.vec() += ws.bias_partials[static_cast<std::size_t>(t)];
}
}  // namespace detail

/// Whether conv2d_forward / conv2d_backward run Winograd F(2x2, 3x3) for a
/// layer of these channels on this batch (the shape rule of
/// docs/winograd.md, fixed by the shapes and the build). For tools that
/// report the path a build takes.
inline bool conv2d_forward_uses_winograd(index in_channels, index out_channels, index batch, const ConvGeometry& g) {
  return detail::conv2d_forward_winograd(in_channels, out_channels, batch, g);
}
inline bool conv2d_backward_uses_winograd(index in_channels, index out_channels, index batch, const ConvGeometry& g) {
  return detail::conv2d_backward_winograd(in_channels, out_channels, batch, g);
}

namespace detail {
// conv2d_forward by the path the shapes choose; true when that path applied
// the ReLU (`relu`) as it stored y (the direct convolution does).
template <class T>
bool conv2d_forward_paths(TensorView<const T> x, TensorView<const T> w, TensorView<const T> bias,
                          const ConvGeometry& g, TensorView<T> y, Conv2dWorkspace<T>& ws,
                          const DirectWeights<T>* prepared, bool relu) {
  const Shape out = y.shape();
  if (conv2d_output_side(x.dim(1), w.dim(0), g)) {
    conv2d_forward_output_side(x, w, bias, g, y, ws);
    return false;
  }
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(0);
  const index rows = C * g.slots(), pixels = out[2] * out[3];
  const int threads = batch_threads(N);
  ws.reserve_gemm(threads);
  if (pixels == 1 && g.padding == 0 && g.kernel == H && g.kernel == W) {
    // The window covers the image (a classifier's last layer): X_n is x_n
    // itself, and each image's product a matrix-vector one (Eigen's, which
    // allocates nothing), y_n = W x_n + b.
    const auto weights = w.matrix(O, rows);
    for_each_image(N, threads, [&](index n, std::size_t) {
      auto y_n = y.sample(n).vec();
      y_n.noalias() = weights * x.sample(n).vec();
      if (bias.size()) y_n += bias.vec();
    });
    return false;
  }
  if (conv2d_forward_winograd(C, O, N, g)) {
    winograd_conv2d_forward<T, 2>(x, w, bias, g, y, ws.winograd);
    return false;
  }
  if (conv2d_direct_supported(g) && rows >= 64) {
    // Stride 1: without the patch matrix (nsl/ops/conv2d_direct.hpp; a
    // shallow one, like a first layer's 1 x 3 x 3, stays with the GEMM). One
    // image at a time, each split over the threads, while the batch is
    // smaller than the thread count; else an image per thread.
    const T* b = bias.size() ? bias.data() : nullptr;
    if (in_parallel_region() || N >= num_threads())
      conv2d_direct_forward_batch<T>(x.data(), N, C, H, W, w.data(), O, b, g, y.data(), ws.direct, prepared,
                                     relu);
    else
      for (index n = 0; n < N; ++n)
        conv2d_direct_forward<T>(x.data() + n * C * H * W, C, H, W, w.data(), O, b, g, y.data() + n * O * pixels,
                                 ws.direct, prepared, relu);
    return true;
  }
  if (N == 1) {
    // One image: the GEMM packs W as it goes, each thread only the rows it
    // multiplies when it splits the output by rows (packing first would be
    // serial: for 128 x 1152 weights, a fifth of the product's time).
    const T* padded =
        pad_image(x.data(), C, H, W, g.padding, ws.reserve_padded(1, padded_image_size(C, H, W, g.padding))[0].data());
    const PatchPacker<T> patches{x.data(), C, H, W, g, false, nullptr, padded};
    gemm_with_rhs<T>(false, O, pixels, rows, w.data(), patches, T(0), y.data(), ws.gemm[0]);
    if (bias.size()) y.sample(0).matrix(O, pixels).colwise() += bias.vec();
    return false;
  }
  ws.packed_weight.pack(false, O, rows, w.data());
  auto& padded = ws.reserve_padded(threads, padded_image_size(C, H, W, g.padding));
  for_each_image(N, threads, [&](index n, std::size_t t) {
    const T* image = x.data() + n * C * H * W;  // X_n, packed as the GEMM goes
    const PatchPacker<T> patches{image, C, H, W, g, false, nullptr,
                                 pad_image(image, C, H, W, g.padding, padded[t].data())};
    gemm_with_rhs<T>(ws.packed_weight, pixels, patches, T(0), y.data() + n * O * pixels, ws.gemm[t]);
    if (bias.size()) y.sample(n).matrix(O, pixels).colwise() += bias.vec();
  });
  return false;
}
}  // namespace detail

/// y = conv(x, w) + bias (bias: an empty view for none), by the path the
/// shapes choose; with `relu`, y = max(conv(x, w) + bias, 0) (the ReLU as y
/// is stored where the path allows, else over y afterwards). `prepared`: w
/// laid out beforehand for the direct path (direct_weights of these very
/// weights), or null: laid out on each call.
template <class T>
void conv2d_forward(TensorView<const T> x, TensorView<const T> w, TensorView<const T> bias,
                    const ConvGeometry& g, TensorView<T> y, Conv2dWorkspace<T>& ws,
                    const DirectWeights<T>* prepared = nullptr, bool relu = false) {
  const Shape out = conv2d_output_shape("conv2d_forward", x.shape(), w.shape(), bias.shape(), g);
  check_shape("conv2d_forward", "output", y.shape(), out);
  if (!detail::conv2d_forward_paths(x, w, bias, g, y, ws, prepared, relu) && relu) relu_forward<T>(y, y);
}

namespace detail {
// conv2d_backward's shape checks; returns the output shape.
inline Shape check_conv2d_backward(const Shape& x, const Shape& w, const ConvGeometry& g, const Shape& dy,
                                   const Shape& dx, const Shape& dw, const Shape& db) {
  const Shape out = conv2d_output_shape("conv2d_backward", x, w, db, g);
  check_shape("conv2d_backward", "output gradient", dy, out);
  check_shape("conv2d_backward", "weight gradient", dw, w);
  if (dx.size()) check_shape("conv2d_backward", "input gradient", dx, x);
  return out;
}
}  // namespace detail

/// conv2d_backward without the Winograd path: patch-matrix GEMMs (or the
/// output-side form), whatever the layer. The same contract and checks.
template <class T>
void conv2d_backward_gemm(TensorView<const T> x, TensorView<const T> w, const ConvGeometry& g,
                          TensorView<const T> dy, TensorView<T> dx, TensorView<T> dw, TensorView<T> db,
                          Conv2dWorkspace<T>& ws) {
  const Shape out =
      detail::check_conv2d_backward(x.shape(), w.shape(), g, dy.shape(), dx.shape(), dw.shape(), db.shape());
  if (detail::conv2d_output_side(x.dim(1), w.dim(0), g)) {
    detail::conv2d_backward_output_side(x, w, g, dy, dx, dw, db, ws);
    return;
  }
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(0);
  const index rows = C * g.slots(), pixels = out[2] * out[3];
  const int threads = detail::batch_threads(N);
  if (dx.size()) ws.reserve_columns(threads, rows, pixels);
  else ws.reserve_gemm(threads);
  const index chunks = detail::batch_chunks(N, threads);
  detail::size_chunk_partials(ws.weight_partials, ws.bias_partials, chunks, O, rows);
  if (dx.size()) ws.packed_weight.pack(true, rows, O, w.data());
  auto& padded = ws.reserve_padded(threads, padded_image_size(C, H, W, g.padding));
NSL_OMP(parallel for num_threads(threads) schedule(static) if (threads > 1))
  for (index chunk = 0; chunk < chunks; ++chunk) {
    const auto t = static_cast<std::size_t>(detail::thread_id());
    const auto c = static_cast<std::size_t>(chunk);
    const index first = N * chunk / chunks, last = N * (chunk + 1) / chunks;
    for (index n = first; n < last; ++n) {
      const auto dy_n = dy.sample(n).matrix(O, pixels);
      const T* image = x.data() + n * C * H * W;
      const PatchPacker<T> patches_transposed{image, C, H, W, g, true, nullptr,
                                              pad_image(image, C, H, W, g.padding, padded[t].data())};  // X_n^T
      gemm_with_rhs<T>(false, O, rows, pixels, dy_n.data(), patches_transposed, n == first ? T(0) : T(1),
                       ws.weight_partials[c].data(), ws.gemm[t]);
      if (n == first) ws.bias_partials[c] = dy_n.rowwise().sum();
      else ws.bias_partials[c] += dy_n.rowwise().sum();
      if (dx.size()) {
        Matrix<T>& columns = ws.columns[t];  // dX_n = W^T dY_n, then col2im
        gemm<T>(ws.packed_weight, false, pixels, dy_n.data(), T(0), columns.data(), ws.gemm[t]);
        col2im_scratch(columns.data(), C, H, W, g, dx.data() + n * C * H * W);
      }
    }
  }
  detail::add_chunk_partials(ws.weight_partials, ws.bias_partials, chunks, dw.matrix(O, rows), db);
}

/// dx assigned (skipped when dx.size() == 0); dw, db accumulated (db skipped when empty).
/// Winograd's F(2x2, 3x3) where conv2d_backward_winograd says so, else conv2d_backward_gemm.
template <class T>
void conv2d_backward(TensorView<const T> x, TensorView<const T> w, const ConvGeometry& g,
                     TensorView<const T> dy, TensorView<T> dx, TensorView<T> dw, TensorView<T> db,
                     Conv2dWorkspace<T>& ws) {
  detail::check_conv2d_backward(x.shape(), w.shape(), g, dy.shape(), dx.shape(), dw.shape(), db.shape());
  if (detail::conv2d_backward_winograd(x.dim(1), w.dim(0), x.dim(0), g)) {
    winograd_conv2d_backward<T, 2>(x, w, g, dy, dx, dw, db, ws.winograd);
    return;
  }
  conv2d_backward_gemm(x, w, g, dy, dx, dw, db, ws);
}

}  // namespace nsl
