// nsl/ops/patch_transform.hpp — the per-pixel patch transform of dynamic NSL.
//
// With X the (C K) x P patch matrix of one image (rows (i, r), columns the
// output pixels p; see im2col) and a similarity M(p) = I + G(p) for every
// pixel, the transform is
//
//     v_i(p) = M(p) x_i(p)                                         (NSL.md §3)
//
// for every input channel i. G is stored per image as a matrix with P
// columns: K rows for DNS (M(p) = diag(1 + g(p))), K*K rows for UNS
// (row a*K + r holds G(p)[a][r], a the weight slot, r the input slot).
//
//   DNS:  v_{i,r}(p) = (1 + g_r(p)) x_{i,r}(p)
//   UNS:  v_{i,a}(p) = x_{i,a}(p) + sum_r G(p)[a][r] x_{i,r}(p)
//
// Backward, given dV = dL/dV:
//
//   DNS:  dx_{i,r}(p) = (1 + g_r(p)) dv_{i,r}(p)      dg_r(p) = sum_i dv_{i,r}(p) x_{i,r}(p)
//   UNS:  dx_i(p) = M(p)^T dv_i(p)                    dG(p)[a][r] = sum_i dv_{i,a}(p) x_{i,r}(p)
//
// dX is assigned; dG is assigned (it is a fresh per-image gradient).
// The fast versions sweep the pixel index innermost (contiguous in every
// operand); the reference versions loop as the formulas read.
#pragma once

#include "nsl/core/tensor.hpp"
#include "nsl/similarity/bilinear.hpp"

namespace nsl {

/// Rows of G for a dynamic structure with K slots: K (diagonal) or K*K (channel_shared).
inline index predicted_rows(Structure s, index slots) {
  require(s == Structure::diagonal || s == Structure::channel_shared, ErrorKind::argument,
          "dynamic similarity: structure must be diagonal or channel_shared, got ", to_string(s));
  return s == Structure::diagonal ? slots : slots * slots;
}

/// V = (I + G) applied to each channel's patches. x, v: (C K) x P; g: rows x P.
template <class T>
void patch_transform(Structure s, const T* x, const T* g, index channels, index slots, index pixels, T* v) {
  const index K = slots, P = pixels;
  if (s == Structure::diagonal) {
    for (index i = 0; i < channels; ++i)
      for (index r = 0; r < K; ++r) {
        const T* xr = x + (i * K + r) * P;
        const T* gr = g + r * P;
        T* vr = v + (i * K + r) * P;
        for (index p = 0; p < P; ++p) vr[p] = xr[p] + gr[p] * xr[p];
      }
    return;
  }
  for (index i = 0; i < channels; ++i)
    for (index a = 0; a < K; ++a) {
      T* va = v + (i * K + a) * P;
      const T* xa = x + (i * K + a) * P;
      for (index p = 0; p < P; ++p) va[p] = xa[p];
      for (index r = 0; r < K; ++r) {
        const T* gar = g + (a * K + r) * P;
        const T* xr = x + (i * K + r) * P;
        for (index p = 0; p < P; ++p) va[p] += gar[p] * xr[p];
      }
    }
}

/// dX = M^T dV per pixel and dG = sum_i dv_i x_i^T per pixel (both assigned).
template <class T>
void patch_transform_backward(Structure s, const T* x, const T* g, const T* dv, index channels,
                              index slots, index pixels, T* dx, T* dg) {
  const index K = slots, P = pixels;
  const index rows = predicted_rows(s, K);
  std::fill(dg, dg + rows * P, T(0));
  if (s == Structure::diagonal) {
    for (index i = 0; i < channels; ++i)
      for (index r = 0; r < K; ++r) {
        const T* xr = x + (i * K + r) * P;
        const T* gr = g + r * P;
        const T* dvr = dv + (i * K + r) * P;
        T* dxr = dx + (i * K + r) * P;
        T* dgr = dg + r * P;
        for (index p = 0; p < P; ++p) {
          dxr[p] = dvr[p] + gr[p] * dvr[p];
          dgr[p] += dvr[p] * xr[p];
        }
      }
    return;
  }
  for (index i = 0; i < channels; ++i) {
    for (index r = 0; r < K; ++r) {  // dx_{i,r} = dv_{i,r} + sum_a G[a][r] dv_{i,a}
      T* dxr = dx + (i * K + r) * P;
      const T* dvr = dv + (i * K + r) * P;
      for (index p = 0; p < P; ++p) dxr[p] = dvr[p];
    }
    for (index a = 0; a < K; ++a) {
      const T* dva = dv + (i * K + a) * P;
      for (index r = 0; r < K; ++r) {
        const T* gar = g + (a * K + r) * P;
        const T* xr = x + (i * K + r) * P;
        T* dxr = dx + (i * K + r) * P;
        T* dgar = dg + (a * K + r) * P;
        for (index p = 0; p < P; ++p) {
          dxr[p] += gar[p] * dva[p];
          dgar[p] += dva[p] * xr[p];
        }
      }
    }
  }
}

/// Reference: builds M(p) = I + G(p) as a K x K matrix at every pixel and applies it.
template <class T>
void patch_transform_reference(Structure s, const T* x, const T* g, index channels, index slots,
                               index pixels, T* v) {
  const index K = slots, P = pixels;
  Matrix<T> M(K, K);
  for (index p = 0; p < P; ++p) {
    M.setIdentity();
    for (index a = 0; a < K; ++a)
      for (index r = 0; r < K; ++r) {
        if (s == Structure::diagonal && a == r) M(a, r) += g[r * P + p];
        if (s == Structure::channel_shared) M(a, r) += g[(a * K + r) * P + p];
      }
    for (index i = 0; i < channels; ++i)
      for (index a = 0; a < K; ++a) {
        T sum = 0;
        for (index r = 0; r < K; ++r) sum += M(a, r) * x[(i * K + r) * P + p];
        v[(i * K + a) * P + p] = sum;
      }
  }
}

}  // namespace nsl
