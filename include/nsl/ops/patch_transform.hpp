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
//
// The fast versions work on blocks of pixels one SIMD register wide (xsimd,
// when nsl is built with it; a scalar tail, and a scalar build without it,
// run the same code on one pixel) and keep the sums over slots and channels
// in registers: for UNS each output row is written once instead of K times,
// and dG is summed over the channels before it is stored. Every product-sum
// is a fused multiply-add. The reference versions loop as the formulas read.
#pragma once

#include <cmath>

#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
#include <xsimd/xsimd.hpp>
#endif

#include "nsl/core/simd.hpp"
#include "nsl/core/tensor.hpp"
#include "nsl/similarity/bilinear.hpp"

namespace nsl {

/// Rows of G for a dynamic structure with K slots: K (diagonal) or K*K (channel_shared).
inline index predicted_rows(Structure s, index slots) {
  require(s == Structure::diagonal || s == Structure::channel_shared, ErrorKind::argument,
          "dynamic similarity: structure must be diagonal or channel_shared, got ", to_string(s));
  return s == Structure::diagonal ? slots : slots * slots;
}

namespace detail {
// Loads, stores and fused multiply-adds on one pixel (Scalar) or on one
// SIMD register of pixels (Wide); kernels written against these run on both.
template <class T>
struct ScalarLanes {
  using type = T;
  static constexpr index size = 1;
  static T load(const T* p) { return *p; }
  static void store(T* p, T v) { *p = v; }
  static T zero() { return T(0); }
  static T fma(T a, T b, T c) { return std::fma(a, b, c); }
};
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
template <class T>
struct WideLanes {
  using type = xsimd::batch<T>;
  static constexpr index size = static_cast<index>(type::size);
  static type load(const T* p) { return type::load_unaligned(p); }
  static void store(T* p, const type& v) { v.store_unaligned(p); }
  static type zero() { return type(T(0)); }
  static type fma(const type& a, const type& b, const type& c) { return simd_fma(a, b, c); }
};
#else
template <class T>
using WideLanes = ScalarLanes<T>;
#endif

// Calls kernel(lanes, p) for p = 0, L, 2L, ... with L = WideLanes<T>::size
// while a full register fits, then kernel(ScalarLanes, p) for the rest.
template <class T, class Kernel>
void sweep_pixels(index pixels, Kernel&& kernel) {
  index p = 0;
  for (; p + WideLanes<T>::size <= pixels; p += WideLanes<T>::size) kernel(WideLanes<T>{}, p);
  for (; p < pixels; ++p) kernel(ScalarLanes<T>{}, p);
}
}  // namespace detail

/// V = (I + G) applied to each channel's patches. x, v: (C K) x P; g: rows x P.
template <class T>
void patch_transform(Structure s, const T* x, const T* g, index channels, index slots, index pixels, T* v) {
  const index K = slots, P = pixels;
  if (s == Structure::diagonal) {  // v_{i,r} = g_r x_{i,r} + x_{i,r}
    for (index i = 0; i < channels; ++i)
      for (index r = 0; r < K; ++r) {
        const T* xr = x + (i * K + r) * P;
        const T* gr = g + r * P;
        T* vr = v + (i * K + r) * P;
        detail::sweep_pixels<T>(P, [&](auto lanes, index p) {
          using L = decltype(lanes);
          const auto xv = L::load(xr + p);
          L::store(vr + p, L::fma(L::load(gr + p), xv, xv));
        });
      }
    return;
  }
  for (index i = 0; i < channels; ++i) {  // v_{i,a} = x_{i,a} + sum_r G[a][r] x_{i,r}
    const T* xi = x + i * K * P;
    T* vi = v + i * K * P;
    detail::sweep_pixels<T>(P, [&](auto lanes, index p) {
      using L = decltype(lanes);
      for (index a = 0; a < K; ++a) {
        auto sum = L::load(xi + a * P + p);
        for (index r = 0; r < K; ++r) sum = L::fma(L::load(g + (a * K + r) * P + p), L::load(xi + r * P + p), sum);
        L::store(vi + a * P + p, sum);
      }
    });
  }
}

/// dX = M^T dV per pixel and dG = sum_i dv_i x_i^T per pixel (both assigned).
template <class T>
void patch_transform_backward(Structure s, const T* x, const T* g, const T* dv, index channels,
                              index slots, index pixels, T* dx, T* dg) {
  const index K = slots, P = pixels, C = channels;
  if (s == Structure::diagonal) {
    for (index i = 0; i < C; ++i)  // dx_{i,r} = g_r dv_{i,r} + dv_{i,r}
      for (index r = 0; r < K; ++r) {
        const T* gr = g + r * P;
        const T* dvr = dv + (i * K + r) * P;
        T* dxr = dx + (i * K + r) * P;
        detail::sweep_pixels<T>(P, [&](auto lanes, index p) {
          using L = decltype(lanes);
          const auto d = L::load(dvr + p);
          L::store(dxr + p, L::fma(L::load(gr + p), d, d));
        });
      }
    detail::sweep_pixels<T>(P, [&](auto lanes, index p) {  // dg_r = sum_i dv_{i,r} x_{i,r}
      using L = decltype(lanes);
      for (index r = 0; r < K; ++r) {
        auto sum = L::zero();
        for (index i = 0; i < C; ++i) sum = L::fma(L::load(dv + (i * K + r) * P + p), L::load(x + (i * K + r) * P + p), sum);
        L::store(dg + r * P + p, sum);
      }
    });
    return;
  }
  detail::sweep_pixels<T>(P, [&](auto lanes, index p) {
    using L = decltype(lanes);
    for (index i = 0; i < C; ++i) {  // dx_{i,r} = dv_{i,r} + sum_a G[a][r] dv_{i,a}
      const T* dvi = dv + i * K * P;
      for (index r = 0; r < K; ++r) {
        auto sum = L::load(dvi + r * P + p);
        for (index a = 0; a < K; ++a) sum = L::fma(L::load(g + (a * K + r) * P + p), L::load(dvi + a * P + p), sum);
        L::store(dx + (i * K + r) * P + p, sum);
      }
    }
    for (index a = 0; a < K; ++a)  // dG[a][r] = sum_i dv_{i,a} x_{i,r}
      for (index r = 0; r < K; ++r) {
        auto sum = L::zero();
        for (index i = 0; i < C; ++i)
          sum = L::fma(L::load(dv + (i * K + a) * P + p), L::load(x + (i * K + r) * P + p), sum);
        L::store(dg + (a * K + r) * P + p, sum);
      }
  });
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
