// nsl/ops/dynamic_conv2d.hpp — the convolution with a per-pixel similarity
// M(p) = I + G(p) (dynamic NSL, NSL.md §3), given G.
//
// Per image, with X = im2col(x) ((C K) x P), W the O x (C K) weight matrix and
// the patch transform V = (I + G) X (nsl/ops/patch_transform.hpp):
//
//     Y = W V + b 1^T
//
// Backward, given dY:
//
//     dW += dY V^T        db += dY 1        dV = W^T dY
//     (dX, dG) = patch_transform_backward(X, G, dV)      dx = col2im(dX)
//
// dx and dG are assigned; dW and db accumulated. Memory: a few (C K) x P
// matrices per thread; the B x K x K x C x H x W tensor of a naive version
// is never formed. For the diagonal structure V is not formed either: the
// GEMMs pack V and V^T straight from the image (PatchPacker with the gain G). G has shape N x R x Ho x Wo with R = K (diagonal) or K*K
// (channel_shared); the reference implementation forms M(p) at every pixel.
#pragma once

#include <vector>

#include "nsl/ops/conv2d.hpp"
#include "nsl/ops/patch_transform.hpp"

namespace nsl {

/// Checks x, w, bias (rank 0 = none) and G for a dynamic convolution; returns the output shape.
inline Shape dynamic_conv2d_output_shape(const char* op, Structure s, const Shape& x, const Shape& w,
                                         const Shape& bias, const Shape& g, const ConvGeometry& geometry) {
  const Shape out = conv2d_output_shape(op, x, w, bias, geometry);
  check_shape(op, "predicted similarity G", g,
              Shape{out[0], predicted_rows(s, geometry.slots()), out[2], out[3]});
  return out;
}

/// Scratch of the dynamic convolution, reused across calls (per thread).
template <class T, class D = Cpu>  // the CPU one; nsl/cuda specialises it for Cuda
struct DynamicConv2dWorkspace {
  struct PerThread {
    Matrix<T> columns, transformed, transformed_grad, columns_grad, g_grad;
    Vector<T> padded;  ///< the image zero-padded, read by PatchPacker (diagonal structure)
    GemmScratch<T> gemm;
  };
  std::vector<PerThread> threads;
  std::vector<Matrix<T>> weight_partials;
  std::vector<Vector<T>> bias_partials;
  PackedLhs<T> packed_weight;  ///< W (forward) or W^T (backward), packed once per call

  /// Per-thread matrices; V is only formed for the channel-shared structure
  /// (the diagonal one is packed for the GEMMs straight from the padded
  /// image, of `padded_size` values). Buffers only grow.
  void reserve(int count, Structure s, index rows, index pixels, index g_rows, index padded_size, bool backward) {
    if (static_cast<int>(threads.size()) < count) threads.resize(static_cast<std::size_t>(count));
    for (int t = 0; t < count; ++t) {
      auto& b = threads[static_cast<std::size_t>(t)];
      if (s == Structure::diagonal && b.padded.size() < padded_size) b.padded.resize(padded_size);
      if (s != Structure::diagonal || backward) b.columns.resize(rows, pixels);
      if (s != Structure::diagonal) b.transformed.resize(rows, pixels);
      if (!backward) continue;
      b.transformed_grad.resize(rows, pixels);
      b.columns_grad.resize(rows, pixels);
      b.g_grad.resize(g_rows, pixels);
    }
  }
};

template <class T>
void dynamic_conv2d_forward(Structure s, TensorView<const T> x, TensorView<const T> w, TensorView<const T> bias,
                            TensorView<const T> g, const ConvGeometry& geometry, TensorView<T> y,
                            DynamicConv2dWorkspace<T>& ws) {
  const Shape out = dynamic_conv2d_output_shape("dynamic_conv2d_forward", s, x.shape(), w.shape(), bias.shape(),
                                                g.shape(), geometry);
  check_shape("dynamic_conv2d_forward", "output", y.shape(), out);
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(0), K = geometry.slots();
  const index rows = C * K, P = out[2] * out[3], R = g.dim(1);
  const int threads = detail::batch_threads(N);
  const index padded_size = padded_image_size(C, H, W, geometry.padding);
  ws.reserve(threads, s, rows, P, R, padded_size, false);
  ws.packed_weight.pack(false, O, rows, w.data());
  // One image per thread; with one thread no parallel region (for_each_image).
  detail::for_each_image(N, threads, [&](index n, std::size_t t) {
    auto& b = ws.threads[t];
    if (s == Structure::diagonal) {  // V = (1 + g) X packed straight from the padded image
      const T* image = x.data() + n * C * H * W;
      PatchPacker<T> transformed{image, C, H, W, geometry, false, g.data() + n * R * P,
                                 pad_image(image, C, H, W, geometry.padding, b.padded.data())};
      gemm_with_rhs<T>(ws.packed_weight, P, transformed, T(0), y.data() + n * O * P, b.gemm);
    } else {
      im2col(x.data() + n * C * H * W, C, H, W, geometry, b.columns.data());
      patch_transform(s, b.columns.data(), g.data() + n * R * P, C, K, P, b.transformed.data());
      gemm<T>(ws.packed_weight, false, P, b.transformed.data(), T(0), y.data() + n * O * P, b.gemm);
    }
    if (bias.size()) y.sample(n).matrix(O, P).colwise() += bias.vec();
  });
}

/// The shape checks of dynamic_conv2d_backward on every device; returns the output shape.
inline Shape check_dynamic_conv2d_backward(Structure s, const Shape& x, const Shape& w, const Shape& g,
                                           const ConvGeometry& geometry, const Shape& dy, const Shape& dx,
                                           const Shape& dw, const Shape& db, const Shape& dg) {
  const char* op = "dynamic_conv2d_backward";
  const Shape out = dynamic_conv2d_output_shape(op, s, x, w, db, g, geometry);
  check_shape(op, "output gradient", dy, out);
  check_shape(op, "weight gradient", dw, w);
  check_shape(op, "G gradient", dg, g);
  if (dx.size()) check_shape(op, "input gradient", dx, x);
  return out;
}

/// dx (skipped when empty) and dg assigned; dw and db (skipped when empty) accumulated.
template <class T>
void dynamic_conv2d_backward(Structure s, TensorView<const T> x, TensorView<const T> w, TensorView<const T> g,
                             const ConvGeometry& geometry, TensorView<const T> dy, TensorView<T> dx,
                             TensorView<T> dw, TensorView<T> db, TensorView<T> dg, DynamicConv2dWorkspace<T>& ws) {
  const Shape out = check_dynamic_conv2d_backward(s, x.shape(), w.shape(), g.shape(), geometry, dy.shape(),
                                                  dx.shape(), dw.shape(), db.shape(), dg.shape());
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(0), K = geometry.slots();
  const index rows = C * K, P = out[2] * out[3], R = g.dim(1);
  const int threads = detail::batch_threads(N);
  ws.reserve(threads, s, rows, P, R, padded_image_size(C, H, W, geometry.padding), true);
  // Chunks of images, each summed by one thread in image order (conv2d.hpp, batch_chunks).
  const index chunks = detail::batch_chunks(N, threads);
  detail::size_chunk_partials(ws.weight_partials, ws.bias_partials, chunks, O, rows);
  ws.packed_weight.pack(true, rows, O, w.data());
  NSL_OMP(parallel for num_threads(threads) schedule(static) if (threads > 1))
  for (index chunk = 0; chunk < chunks; ++chunk) {
    const auto t = static_cast<std::size_t>(detail::thread_id());
    const auto c = static_cast<std::size_t>(chunk);
    auto& b = ws.threads[t];
    const index first = N * chunk / chunks, last = N * (chunk + 1) / chunks;
    for (index n = first; n < last; ++n) {
      const T* g_n = g.data() + n * R * P;
      const auto dy_n = dy.sample(n).matrix(O, P);
      const T beta = n == first ? T(0) : T(1);
      im2col(x.data() + n * C * H * W, C, H, W, geometry, b.columns.data());
      if (s == Structure::diagonal) {  // dW += dY V^T with V^T packed from the image
        const T* image = x.data() + n * C * H * W;
        PatchPacker<T> transformed{image, C, H, W, geometry, true, g_n,
                                   pad_image(image, C, H, W, geometry.padding, b.padded.data())};
        gemm_with_rhs<T>(false, O, rows, P, dy_n.data(), transformed, beta, ws.weight_partials[c].data(), b.gemm);
      } else {
        patch_transform(s, b.columns.data(), g_n, C, K, P, b.transformed.data());
        gemm<T>(false, true, O, rows, P, dy_n.data(), b.transformed.data(), beta, ws.weight_partials[c].data(),
                b.gemm);
      }
      if (n == first) ws.bias_partials[c] = dy_n.rowwise().sum();
      else ws.bias_partials[c] += dy_n.rowwise().sum();
      gemm<T>(ws.packed_weight, false, P, dy_n.data(), T(0), b.transformed_grad.data(), b.gemm);
      patch_transform_backward(s, b.columns.data(), g_n, b.transformed_grad.data(), C, K, P,
                               b.columns_grad.data(), dg.data() + n * R * P);
      if (dx.size()) {
        col2im_scratch(b.columns_grad.data(), C, H, W, geometry, dx.data() + n * C * H * W);
      }
    }
  }
  detail::add_chunk_partials(ws.weight_partials, ws.bias_partials, chunks, dw.matrix(O, rows), db);
}

/// Reference: y[n,o,p] = b_o + sum_i w_{o,i}^T M(p) x_i(p), M(p) = I + G(p), as loops.
template <class T>
void dynamic_conv2d_forward_reference(Structure s, TensorView<const T> x, TensorView<const T> w,
                                      TensorView<const T> bias, TensorView<const T> g,
                                      const ConvGeometry& geometry, TensorView<T> y) {
  const Shape out = dynamic_conv2d_output_shape("dynamic_conv2d_forward_reference", s, x.shape(), w.shape(),
                                                bias.shape(), g.shape(), geometry);
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(0);
  const index k = geometry.kernel, K = k * k, Ho = out[2], Wo = out[3];
  Matrix<T> M(K, K);
  Vector<T> patch(K);
  for (index n = 0; n < N; ++n)
    for (index i = 0; i < Ho; ++i)
      for (index j = 0; j < Wo; ++j) {
        M.setIdentity();
        for (index a = 0; a < K; ++a)
          for (index r = 0; r < K; ++r) {
            if (s == Structure::diagonal && a == r) M(a, r) += g(n, r, i, j);
            if (s == Structure::channel_shared) M(a, r) += g(n, a * K + r, i, j);
          }
        for (index o = 0; o < O; ++o) {
          T sum = bias.size() ? bias[o] : T(0);
          for (index c = 0; c < C; ++c) {
            for (index r = 0; r < K; ++r) {
              const index u = i * geometry.stride - geometry.padding + r / k;
              const index v = j * geometry.stride - geometry.padding + r % k;
              patch[r] = (u >= 0 && u < H && v >= 0 && v < W) ? x(n, c, u, v) : T(0);
            }
            for (index a = 0; a < K; ++a)
              for (index r = 0; r < K; ++r) sum += w(o, c, a / k, a % k) * M(a, r) * patch[r];
          }
          y(n, o, i, j) = sum;
        }
      }
}

}  // namespace nsl
