// nsl/ops/winograd.hpp — 3 x 3 stride-1 convolution by Winograd's minimal
// filtering algorithm F(m x m, 3 x 3), m = 2 or 4, with both gradients
// (docs/winograd.md derives them).
//
// An output tile of m x m pixels needs an α x α tile d of the zero-padded
// input, α = m + 2. With the constant matrices B^T (α x α), G (α x 3) and
// A^T (m x α) of the chosen F (WinogradF below), for every (o, c):
//
//     y_tile[o] = A^T [ sum_c U[o, c] ⊙ V[c] ] A      U[o, c] = G w[o, c] G^T    (α x α)
//                                                    V[c]    = B^T d[c] B       (α x α)
//
// an exact identity: the 9 m² multiplications of the direct convolution per
// (o, c) and tile become α² (16 against 36 for m = 2, 36 against 144 for
// m = 4). For each of the α² positions (ξ, ν) the sum over c is a matrix
// product over all tiles T at once:
//
//     M_ξν (O x T) = U_ξν (O x C) V_ξν (C x T)
//
// The forward is linear in w and in d, and its transposes are the gradients.
// With Ŷ[o] = A dy_tile[o] A^T (α x α; dy is zero where a tile passes the
// output's edge):
//
//     dU_ξν (O x C) = sum over tiles Ŷ_ξν V_ξν^T        dw[o, c] = G^T dU[o, c] G
//     dV_ξν (C x T) = U_ξν^T Ŷ_ξν                       dd[c]    = B dV[c] B^T
//
// and dx is the sum of the tiles' dd, which overlap by 2 pixels. All three
// passes are α² GEMMs (nsl::gemm) between cheap transforms.
//
// `winograd_conv2d_forward_reference` is the tile formula as loops, one tile
// at a time; `winograd_conv2d_forward` / `winograd_conv2d_backward` are the
// batched GEMM form. Tests compare both with conv2d_*_reference (the
// direct formula) in double, and measure the float error of F(2) and F(4).
// conv2d_forward / conv2d_backward (nsl/ops/conv2d.hpp) call these where
// detail::conv2d_winograd_shape says they are faster (F(2x2) only).
#pragma once

#include <algorithm>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
#include <xsimd/xsimd.hpp>
#endif

#include "nsl/core/gemm.hpp"
#include "nsl/core/simd.hpp"
#include "nsl/core/tensor.hpp"
#include "nsl/core/threads.hpp"
#include "nsl/ops/im2col.hpp"

namespace nsl {

/// The constant matrices of F(m x m, 3 x 3) (Lavin and Gray, "Fast
/// Algorithms for Convolutional Neural Networks", 2016): interpolation at the
/// points 0, 1, -1 and infinity (m = 2), and 0, ±1, ±2, infinity (m = 4).
template <index M>
struct WinogradF;

template <>
struct WinogradF<2> {
  static constexpr index m = 2, alpha = 4;
  static constexpr double BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  static constexpr double AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};

template <>
struct WinogradF<4> {
  static constexpr index m = 4, alpha = 6;
  static constexpr double BT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                      {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr double G[6][3] = {{1.0 / 4, 0, 0},
                                     {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                     {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                     {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                     {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                     {0, 0, 1}};
  static constexpr double AT[4][6] = {
      {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
};

/// Whether the Winograd functions handle this convolution: a 3 x 3 kernel,
/// stride 1, any padding.
inline bool winograd_supported(const ConvGeometry& g) { return g.kernel == 3 && g.stride == 1; }

// ---------------------------------------------------------------------------
// Reference: the tile formula, one tile and one (o, c) pair at a time.

namespace detail {
// out (R x R) = K in K^T for K (R x S) and in (S x S), all row-major.
template <class T, index R, index S>
void winograd_sandwich(const double (&K)[R][S], const T (&in)[S][S], T (&out)[R][R]) {
  T left[R][S];
  for (index r = 0; r < R; ++r)
    for (index s = 0; s < S; ++s) {
      T sum = T(0);
      for (index k = 0; k < S; ++k) sum += T(K[r][k]) * in[k][s];
      left[r][s] = sum;
    }
  for (index r = 0; r < R; ++r)
    for (index q = 0; q < R; ++q) {
      T sum = T(0);
      for (index k = 0; k < S; ++k) sum += left[r][k] * T(K[q][k]);
      out[r][q] = sum;
    }
}
}  // namespace detail

/// y = conv(x, w) + bias for a 3 x 3 stride-1 convolution (winograd_supported),
/// computed tile by tile with F(m x m, 3 x 3). Shapes as conv2d_forward.
template <class T, index Tile = 2>
void winograd_conv2d_forward_reference(TensorView<const T> x, TensorView<const T> w, TensorView<const T> bias,
                                       const ConvGeometry& g, TensorView<T> y) {
  using F = WinogradF<Tile>;
  constexpr index m = F::m, alpha = F::alpha;
  require(winograd_supported(g), ErrorKind::argument,
          "winograd_conv2d_forward_reference: needs a 3x3 kernel and stride 1, got kernel ", g.kernel, ", stride ",
          g.stride);
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(0);
  const index Ho = y.dim(2), Wo = y.dim(3), p = g.padding;
  for (index n = 0; n < N; ++n)
    for (index o = 0; o < O; ++o)
      for (index th = 0; th < Ho; th += m)
        for (index tw = 0; tw < Wo; tw += m) {
          T sum[alpha][alpha] = {};  // Σ_c U[o, c] ⊙ V[c]
          for (index c = 0; c < C; ++c) {
            T filter[3][3], d[alpha][alpha], U[alpha][alpha], V[alpha][alpha];
            for (index r = 0; r < 3; ++r)
              for (index s = 0; s < 3; ++s) filter[r][s] = w(o, c, r, s);
            for (index a = 0; a < alpha; ++a)
              for (index b = 0; b < alpha; ++b) {
                const index ih = th + a - p, iw = tw + b - p;
                d[a][b] = ih >= 0 && ih < H && iw >= 0 && iw < W ? x(n, c, ih, iw) : T(0);
              }
            detail::winograd_sandwich(F::G, filter, U);
            detail::winograd_sandwich(F::BT, d, V);
            for (index a = 0; a < alpha; ++a)
              for (index b = 0; b < alpha; ++b) sum[a][b] += U[a][b] * V[a][b];
          }
          T tile[m][m];
          detail::winograd_sandwich(F::AT, sum, tile);
          for (index a = 0; a < m && th + a < Ho; ++a)
            for (index b = 0; b < m && tw + b < Wo; ++b) y(n, o, th + a, tw + b) = tile[a][b] + (bias.size() ? bias[o] : T(0));
        }
}

// ---------------------------------------------------------------------------
// Fast path: transforms vectorised along a row of tiles, α² GEMMs per group of
// images.

/// Scratch of the fast Winograd convolution; grows only.
template <class T>
struct WinogradWorkspace {
  Vector<T> filters;                     ///< U: α² blocks of O x C
  std::vector<PackedLhs<T>> packed;      ///< U_ξν (forward) or U_ξν^T (input gradient), packed once per call
  std::vector<Vector<T>> inputs;         ///< per thread: V (then dV), α² blocks of C x T
  std::vector<Vector<T>> outputs;        ///< per thread: M or Ŷ, α² blocks of O x T
  std::vector<Vector<T>> planes;         ///< per thread: a padded plane and a transform's rows
  std::vector<Vector<T>> filter_grads;   ///< per chunk of the batch: dU partial, α² blocks of O x C
  std::vector<Vector<T>> bias_grads;     ///< per chunk: db partial
  std::vector<GemmScratch<T>> gemm;      ///< per thread
};

namespace detail {

template <class T>
void winograd_grow(Vector<T>& v, index size) {
  if (v.size() < size) v.resize(size);
}
template <class V>
void winograd_grow_list(std::vector<V>& list, index count) {
  if (static_cast<index>(list.size()) < count) list.resize(static_cast<std::size_t>(count));
}

// The sizes of one Winograd convolution.
struct WinogradPlan {
  index N, C, H, W, O, p, Ho, Wo;
  index m, alpha, tiles_h, tiles_w, tiles;  // tiles per image
  index Hp, Wp;                              // the padded plane: every tile's α x α window inside, in whole tiles
  index group;                               // images per group (its T = group * tiles columns)
};

// Images per GEMM group: about 96 tile columns (a 14 x 14 map's 49 tiles
// twice), so that a group's V and M stay in the core's L2 and the layer's
// workspace small, while the GEMMs have columns enough (192 measured no
// faster).
inline WinogradPlan winograd_plan(index N, index C, index H, index W, index O, const ConvGeometry& g, index m) {
  WinogradPlan d{};
  d.N = N, d.C = C, d.H = H, d.W = W, d.O = O, d.p = g.padding;
  d.Ho = g.output_extent(H), d.Wo = g.output_extent(W);
  d.m = m, d.alpha = m + 2;
  d.tiles_h = (d.Ho + m - 1) / m, d.tiles_w = (d.Wo + m - 1) / m, d.tiles = d.tiles_h * d.tiles_w;
  d.Hp = (d.tiles_h + (d.alpha - 1) / m) * m, d.Wp = (d.tiles_w + (d.alpha - 1) / m) * m;
  d.group = std::clamp<index>((96 + d.tiles - 1) / d.tiles, 1, std::max<index>(N, 1));
  return d;
}

// The coefficient (r, c) of the matrix K applied on both sides of a tile
// transform, K in K^T, as a constant function so that loops over r and c,
// unrolled, leave only the nonzero terms (a multiplication by a literal 0
// is not dropped in IEEE arithmetic; one by 1 or -1 is).
template <class F> struct InputK  { static constexpr index rows = F::alpha, cols = F::alpha;
  static constexpr double at(index r, index c) { return F::BT[r][c]; } };           // V = B^T d B
template <class F> struct GradK   { static constexpr index rows = F::alpha, cols = F::m;
  static constexpr double at(index r, index c) { return F::AT[c][r]; } };           // Ŷ = A dy A^T
template <class F> struct OutputK { static constexpr index rows = F::m, cols = F::alpha;
  static constexpr double at(index r, index c) { return F::AT[r][c]; } };           // y = A^T M A
template <class F> struct InputGradK { static constexpr index rows = F::alpha, cols = F::alpha;
  static constexpr double at(index r, index c) { return F::BT[c][r]; } };           // dd = B dV B^T


// Σ_{s >= S} K(R, s) from[s][t], K's zero coefficients left out at compile
// time (a multiplication by a literal 0 is not dropped in IEEE arithmetic;
// one by 1 or -1 is), `sum` the terms before s = S.
template <class T, class K, index R, index S, bool Started>
inline T winograd_dot(const T* const* from, index t, T sum) {
  if constexpr (S == K::cols) {
    return sum;
  } else {
    constexpr double k = K::at(R, S);
    if constexpr (k == 0) {
      return winograd_dot<T, K, R, S + 1, Started>(from, t, sum);
    } else {
      const T value = from[S][t];
      const T term = k == 1 ? value : k == -1 ? -value : T(k) * value;
      if constexpr (Started) return winograd_dot<T, K, R, S + 1, true>(from, t, sum + term);
      else return winograd_dot<T, K, R, S + 1, true>(from, t, term);
    }
  }
}

template <class F, index... I>
inline void winograd_static_for(F&& f, std::integer_sequence<index, I...>) {
  (f(std::integral_constant<index, I>{}), ...);
}

// out[r][t] = Σ_s K(r, s) in[s][t] for r < K::rows and t < count: each row a
// loop of contiguous loads and stores.
template <class T, class K>
void winograd_apply(const T* const (&in)[K::cols], T* const (&out)[K::rows], index count) {
  winograd_static_for(
      [&](auto r) {
        const T* from[K::cols];
        for (index s = 0; s < K::cols; ++s) from[s] = in[s];
        T* to = out[decltype(r)::value];
        for (index t = 0; t < count; ++t) to[t] = winograd_dot<T, K, decltype(r)::value, 0, false>(from, t, T(0));
      },
      std::make_integer_sequence<index, K::rows>{});
}

// Σ_{s >= S} K(R, s) value(s) for s a compile-time index (std::integral_constant)
// over values V (a SIMD register of Scalar or a Scalar), K's zero
// coefficients left out as in winograd_dot.
template <class V, class Scalar, class K, index R, index S, bool Started, class Value>
inline V winograd_sum(const Value& value, V sum) {
  if constexpr (S == K::cols) {
    return sum;
  } else {
    constexpr double k = K::at(R, S);
    if constexpr (k == 0) {
      return winograd_sum<V, Scalar, K, R, S + 1, Started>(value, sum);
    } else {
      const V v = value(std::integral_constant<index, S>{});
      V term;
      if constexpr (k == 1) term = v;
      else if constexpr (k == -1) term = -v;
      else term = V(Scalar(k)) * v;
      if constexpr (Started) return winograd_sum<V, Scalar, K, R, S + 1, true>(value, sum + term);
      else return winograd_sum<V, Scalar, K, R, S + 1, true>(value, term);
    }
  }
}

// The register type of the tile transforms: an xsimd batch, or one value.
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
template <class T>
using WinogradVector = xsimd::batch<T>;
template <class T>
inline WinogradVector<T> winograd_load(const T* p) { return WinogradVector<T>::load_unaligned(p); }
template <class T>
inline void winograd_store(T* p, const WinogradVector<T>& v) { v.store_unaligned(p); }
template <class T>
constexpr index winograd_lanes = static_cast<index>(WinogradVector<T>::size);
#else
template <class T>
using WinogradVector = T;
template <class T>
inline T winograd_load(const T* p) { return *p; }
template <class T>
inline void winograd_store(T* p, T v) { *p = v; }
template <class T>
constexpr index winograd_lanes = 1;
#endif

// Both sides at once: out[out_at(r, q) + t] = (K In_t K^T)[r][q] with
// In_t[a][b] = in[in_at(a, b) + t], for t < count, a multiple of the
// register width (in_at, out_at: offsets, called with std::integral_constant
// indices). A register of tiles' K::cols² inputs is loaded once and K In_t
// stays in registers.
template <class T, class K, class InAt, class OutAt>
void winograd_apply_both(const T* in, InAt in_at, T* out, OutAt out_at, index count) {
  constexpr index R = K::rows, S = K::cols;
  using V = WinogradVector<T>;
  using Rows = std::make_integer_sequence<index, R>;
  using Cols = std::make_integer_sequence<index, S>;
  for (index t = 0; t < count; t += winograd_lanes<T>) {
    V left[R][S];  // K In_t
    winograd_static_for(
        [&](auto b) {
          winograd_static_for(
              [&](auto r) {
                left[decltype(r)::value][decltype(b)::value] = winograd_sum<V, T, K, decltype(r)::value, 0, false>(
                    [&](auto a) { return winograd_load(in + in_at(a, b) + t); }, V(T(0)));
              },
              Rows{});
        },
        Cols{});
    winograd_static_for(
        [&](auto r) {
          winograd_static_for(
              [&](auto q) {
                winograd_store(out + out_at(r, q) + t, winograd_sum<V, T, K, decltype(q)::value, 0, false>(
                                                           [&](auto b) { return left[decltype(r)::value][decltype(b)::value]; },
                                                           V(T(0))));
              },
              Rows{});
        },
        Rows{});
  }
}

// out[out_at(r, q) + t] = (K In_t K^T)[r][q] as winograd_apply_both computes
// it where the register file holds a tile's inputs and K In_t at once
// (AVX-512's 32 registers); with fewer (AVX2's 16, which would spill), in
// two passes of winograd_apply through `scratch` (K::rows K::cols count values).
template <class T, class K, class InAt, class OutAt>
void winograd_two_sided(const T* in, InAt in_at, T* out, OutAt out_at, index count, T* scratch) {
#if defined(__AVX512F__)
  (void)scratch;
  winograd_apply_both<T, K>(in, in_at, out, out_at, count);
#else
  constexpr index R = K::rows, S = K::cols;
  winograd_static_for(
      [&](auto b) {  // scratch[r][b] = Σ_a K(r, a) In[a][b]
        const T* from[S];
        T* to[R];
        winograd_static_for([&](auto a) { from[decltype(a)::value] = in + in_at(a, b); },
                            std::make_integer_sequence<index, S>{});
        for (index r = 0; r < R; ++r) to[r] = scratch + (r * S + decltype(b)::value) * count;
        winograd_apply<T, K>(from, to, count);
      },
      std::make_integer_sequence<index, S>{});
  winograd_static_for(
      [&](auto r) {  // out[r][q] = Σ_b K(q, b) scratch[r][b]
        const T* from[S];
        T* to[R];
        for (index b = 0; b < S; ++b) from[b] = scratch + (decltype(r)::value * S + b) * count;
        winograd_static_for([&](auto q) { to[decltype(q)::value] = out + out_at(r, q); },
                            std::make_integer_sequence<index, R>{});
        winograd_apply<T, K>(from, to, count);
      },
      std::make_integer_sequence<index, R>{});
#endif
}

// Transforms run over whole vectors: a plane's `tiles` values are computed
// in rows rounded up to this many (the longest SIMD register's floats), and
// a block of V, M or Ŷ (rows x columns) is followed by as many spare values
// so that the last row's rounded-up run stays inside the buffer. (The extra
// values a row writes past its tiles land where the next row, written
// later, goes: see winograd_input_tiles.)
constexpr index winograd_run = 16;
inline index winograd_rounded(index tiles) { return (tiles + winograd_run - 1) / winograd_run * winograd_run; }
inline index winograd_block(index rows, index columns) { return rows * columns + winograd_run; }

// The scratch of winograd_plane_to_frequency / _from_frequency.
inline index winograd_plane_scratch(index alpha, index m, index tiles_h, index tiles_w) {
  const index shifts = (alpha - 1) / m + 1, phase = winograd_rounded((tiles_h + shifts - 1) * tiles_w) + winograd_run;
  const index run = winograd_rounded(tiles_h * tiles_w);
  const index padded = (tiles_h + shifts - 1) * m * ((tiles_w + shifts) * m + winograd_run);
  return padded + std::max(m * m * shifts * phase, alpha * alpha * run) + 2 * alpha * alpha * run;
}

#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
// Register lane masks of the phase split and its inverse, for `Step` phases
// and L lanes (L / Step tiles per register): lane i of phase Q's register
// takes lane (i mod (L / Step)) Step + Q of the row (split); lane i of the
// row's register takes lane i / Step of phase i mod Step's (merge).
template <class U, index Step, index Q>
struct WinogradSplitMask {
  static constexpr U get(std::size_t i, std::size_t size) {
    return U((i % (size / std::size_t(Step))) * std::size_t(Step) + std::size_t(Q));
  }
};
template <class U, index Step>
struct WinogradMergeMask {
  static constexpr U get(std::size_t i, std::size_t) { return U(i / std::size_t(Step)); }
};
template <index Step, index Q>
struct WinogradMergeLanes {
  static constexpr bool get(std::size_t i, std::size_t) { return i % std::size_t(Step) == std::size_t(Q); }
};
template <class T, index Step>
constexpr bool winograd_simd_phases() {
  constexpr index lanes = static_cast<index>(xsimd::batch<T>::size);
  return lanes >= Step && lanes % Step == 0;
}
#endif

// to[q][j] = from[j Step + q] for q < Step, j < count. With xsimd, one
// register of the row at a time, its lanes permuted to each phase in turn:
// reads up to L values past from[count Step] and writes up to L values
// past to[q][count] (L lanes of a register; the callers leave room).
template <class T, index Step>
inline void winograd_deinterleave(const T* from, T* const (&to)[Step], index count) {
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
  if constexpr (winograd_simd_phases<T, Step>()) {
    using R = xsimd::batch<T>;
    using M = xsimd::batch<xsimd::as_unsigned_integer_t<T>>;
    constexpr index chunk = static_cast<index>(R::size) / Step;
    for (index j = 0; j < count; j += chunk) {
      const R v = R::load_unaligned(from + j * Step);
      winograd_static_for(
          [&](auto q) {
            constexpr index Q = decltype(q)::value;
            const auto mask = xsimd::make_batch_constant<M, WinogradSplitMask<typename M::value_type, Step, Q>>();
            xsimd::swizzle(v, mask).store_unaligned(to[Q] + j);
          },
          std::make_integer_sequence<index, Step>{});
    }
  } else  // the one-value loop below, also without xsimd
#endif
  {
    T* out[Step];
    for (index q = 0; q < Step; ++q) out[q] = to[q];
    for (index j = 0; j < count; ++j)
#pragma GCC unroll 8
      for (index q = 0; q < Step; ++q) out[q][j] = from[j * Step + q];
  }
}

// to[j Step + q] = (Add: +=) from[q][j] for q < Step, j < count: the
// inverse of winograd_deinterleave. With xsimd, whole registers of `to`
// while a register's tiles are all there, then one value at a time.
template <class T, index Step, bool Add>
inline void winograd_interleave(const T* const (&from)[Step], index count, T* to) {
  index j = 0;
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
  if constexpr (winograd_simd_phases<T, Step>()) {
    using R = xsimd::batch<T>;
    using M = xsimd::batch<xsimd::as_unsigned_integer_t<T>>;
    constexpr index chunk = static_cast<index>(R::size) / Step;
    const auto mask = xsimd::make_batch_constant<M, WinogradMergeMask<typename M::value_type, Step>>();
    for (; j + chunk <= count; j += chunk) {
      R v = xsimd::swizzle(R::load_unaligned(from[0] + j), mask);
      winograd_static_for(
          [&](auto q) {
            constexpr index Q = decltype(q)::value;
            if constexpr (Q > 0) {
              const auto lanes = xsimd::make_batch_bool_constant<R, WinogradMergeLanes<Step, Q>>();
              v = xsimd::select(lanes, xsimd::swizzle(R::load_unaligned(from[Q] + j), mask), v);
            }
          },
          std::make_integer_sequence<index, Step>{});
      if constexpr (Add) v += R::load_unaligned(to + j * Step);
      v.store_unaligned(to + j * Step);
    }
  }
#endif
  for (; j < count; ++j)
    for (index q = 0; q < Step; ++q) {
      if constexpr (Add) to[j * Step + q] += from[q][j];
      else to[j * Step + q] = from[q][j];
    }
}

// The tiles of an H x W plane x, zero-padded by p above and to the left
// (and by zeros below and to the right as far as the tiles reach), into the
// frequency domain: tile t = i tiles_w + j has its K::cols x K::cols window
// at padded row i Step, column j Step, and (K win K^T)[ξ][ν] goes to
// out[(ξ K::rows + ν) stride + t] for t < winograd_rounded(tiles) (the
// values past `tiles` are not meaningful). The padded plane is first split
// into its Step x Step phases, each kept also shifted by whole tiles to the
// left: window entry (a, b) of all the tiles, in tile order, is then one of
// these arrays from row a / Step on, so both sides of the product run over
// all the plane's tiles at once with contiguous loads and stores.
// `scratch`: winograd_plane_scratch values.
template <class T, class K, index Step>
void winograd_plane_to_frequency(const T* x, index H, index W, index p, index tiles_h, index tiles_w, T* out,
                                 index stride, T* scratch) {
  constexpr index R = K::rows, S = K::cols, shifts = (S - 1) / Step + 1;
  const index tiles = tiles_h * tiles_w, run = winograd_rounded(tiles);
  const index phase_rows = tiles_h + shifts - 1, phase = winograd_rounded(phase_rows * tiles_w) + winograd_run;
  // The padded plane first, whole (rows read right after they were written
  // would stall on store forwarding): phase_rows Step rows of (tiles_w +
  // shifts) Step values, and room for winograd_deinterleave's reads past a row.
  const index rows = phase_rows * Step, width = (tiles_w + shifts) * Step + winograd_run;
  T* padded = scratch;
  T* phases = scratch + rows * width;  // [qa][qb][shift][i][j] = padded[i Step + qa][(j + shift) Step + qb]
  const index top = std::min(p, rows), bottom = std::min(p + H, rows);
  std::fill(padded, padded + top * width, T(0));
  for (index r = top; r < bottom; ++r) {
    T* to = padded + r * width;
    const T* from = x + (r - p) * W;
    for (index c = 0; c < p; ++c) to[c] = T(0);
    for (index c = 0; c < W; ++c) to[p + c] = from[c];
    for (index c = p + W; c < width; ++c) to[c] = T(0);
  }
  std::fill(padded + bottom * width, padded + rows * width, T(0));
  for (index qa = 0; qa < Step; ++qa)
    for (index i = 0; i < phase_rows; ++i)
      for (index shift = 0; shift < shifts; ++shift) {
        T* to[Step];
        for (index qb = 0; qb < Step; ++qb) to[qb] = phases + ((qa * Step + qb) * shifts + shift) * phase + i * tiles_w;
        winograd_deinterleave<T, Step>(padded + (i * Step + qa) * width + shift * Step, to, tiles_w);
      }
  const auto window = [=](auto a, auto b) {  // window entry (a, b) of every tile
    constexpr index A = decltype(a)::value, B = decltype(b)::value;
    return (((A % Step) * Step + B % Step) * shifts + B / Step) * phase + (A / Step) * tiles_w;
  };
  const auto position = [=](auto xi, auto nu) { return (decltype(xi)::value * R + decltype(nu)::value) * stride; };
  winograd_two_sided<T, K>(phases, window, out, position, run, phases + Step * Step * shifts * phase);
}

// The tiles of one plane back from the frequency domain: Z_t = K In_t K^T
// (K::rows square) for In_t[ξ][ν] = in[(ξ K::cols + ν) stride + t]; Z_t[a][b]
// is written (Add: added) to plane[(i Step + a) ps + j Step + b] for tile
// t = i tiles_w + j (Add: tiles overlap where K::rows > Step). `scratch`:
// winograd_plane_scratch values.
template <class T, class K, index Step, bool Add>
void winograd_plane_from_frequency(const T* in, index stride, index tiles_h, index tiles_w, T* plane, index ps,
                                   T* scratch) {
  constexpr index R = K::rows, S = K::cols, shifts = (R - 1) / Step + 1;
  static_assert(Add || R == Step, "winograd_plane_from_frequency: overlapping tiles must be added");
  const index run = winograd_rounded(tiles_h * tiles_w);
  T* tile = scratch;  // [a][b][t] = Z[a][b]
  winograd_two_sided<T, K>(
      in, [=](auto xi, auto nu) { return (decltype(xi)::value * S + decltype(nu)::value) * stride; }, tile,
      [=](auto a, auto b) { return (decltype(a)::value * R + decltype(b)::value) * run; }, run, tile + R * R * run);
  // Columns j Step + k Step + q, q < Step, for each whole-tile shift k: one
  // interleaving pass per shift (a partial last one when R is not a multiple of Step).
  for (index a = 0; a < R; ++a)
    for (index i = 0; i < tiles_h; ++i)
      for (index k = 0; k < shifts; ++k) {
        const T* from[Step];
        for (index q = 0; q < Step; ++q) from[q] = tile + (a * R + std::min(k * Step + q, R - 1)) * run + i * tiles_w;
        T* to = plane + (i * Step + a) * ps + k * Step;
        const index width = std::min(Step, R - k * Step);
        if (width == Step) {
          winograd_interleave<T, Step, Add>(from, tiles_w, to);
        } else {
          for (index j = 0; j < tiles_w; ++j)
            for (index q = 0; q < width; ++q) to[j * Step + q] += from[q][j];
        }
      }
}

// The filter transforms as one matrix: (G w G^T)[ξ][ν] = Σ_rs G[ξ][r] G[ν][s]
// w[r][s], so U_e = Σ_d coef[e][d] w_d for e = ξ α + ν and depth d = 3 r + s,
// and dw_d = Σ_e coef[e][d] dU_e (its transpose). Many coefficients are 0
// (G has zeros): those terms are skipped.
template <class T, class F>
struct WinogradFilterCoefficients {
  static constexpr index alpha2 = F::alpha * F::alpha;
  T coef[alpha2][9];
  WinogradFilterCoefficients() {
    for (index e = 0; e < alpha2; ++e)
      for (index d = 0; d < 9; ++d) coef[e][d] = T(F::G[e / F::alpha][d / 3] * F::G[e % F::alpha][d % 3]);
  }
};

// Runs body(o) for o < O, split over the threads (parallel_ranges). Each o
// is computed alone, so the result does not depend on the split.
template <class Body>
void winograd_for_each_output_channel(index O, const Body& body) {
  parallel_ranges(O, 1, [&](index begin, index end) {
    for (index o = begin; o < end; ++o) body(o);
  });
}

// Channels per step of the filter transforms: a filter block's nine depths
// for this many channels sit in a small array, where the loops over the
// channels run contiguously (and vectorise).
constexpr index winograd_filter_chunk = 64;

// U_ξν[o, c] = (G w[o, c] G^T)[ξ][ν] into u (α² blocks of O x C).
template <class T, class F>
void winograd_filters(const T* w, index O, index C, T* u) {
  constexpr index alpha2 = F::alpha * F::alpha, chunk = winograd_filter_chunk;
  const WinogradFilterCoefficients<T, F> k;
  winograd_for_each_output_channel(O, [&](index o) {
    for (index c0 = 0; c0 < C; c0 += chunk) {
      const index n = std::min(chunk, C - c0);
      T depth[9][chunk];  // depth[d][c] = w[o, c0 + c, d]
      const T* from = w + (o * C + c0) * 9;
      for (index c = 0; c < n; ++c)
        for (index d = 0; d < 9; ++d) depth[d][c] = from[c * 9 + d];
      for (index e = 0; e < alpha2; ++e) {
        T* to = u + (e * O + o) * C + c0;
        for (index c = 0; c < n; ++c) to[c] = T(0);
        for (index d = 0; d < 9; ++d) {
          const T coef = k.coef[e][d];
          if (coef == T(0)) continue;
          for (index c = 0; c < n; ++c) to[c] += coef * depth[d][c];
        }
      }
    }
  });
}

// dw[o, c] += G^T dU[o, c] G for dU the sum of parts[0 .. count) (each α²
// blocks of O x C), added in part order.
template <class T, class F>
void winograd_filter_gradients(const Vector<T>* parts, index count, index O, index C, T* dw) {
  constexpr index alpha2 = F::alpha * F::alpha, chunk = winograd_filter_chunk;
  const WinogradFilterCoefficients<T, F> k;
  winograd_for_each_output_channel(O, [&](index o) {
    for (index c0 = 0; c0 < C; c0 += chunk) {
      const index n = std::min(chunk, C - c0);
      T du[alpha2][chunk];  // the parts' sum for this block
      for (index e = 0; e < alpha2; ++e) {
        const index at = (e * O + o) * C + c0;
        for (index c = 0; c < n; ++c) du[e][c] = parts[0][at + c];
        for (index p = 1; p < count; ++p)
          for (index c = 0; c < n; ++c) du[e][c] += parts[p][at + c];
      }
      T depth[9][chunk];  // depth[d][c] = Σ_e coef[e][d] dU_e[o, c0 + c]
      for (index d = 0; d < 9; ++d) {
        for (index c = 0; c < n; ++c) depth[d][c] = T(0);
        for (index e = 0; e < alpha2; ++e) {
          const T coef = k.coef[e][d];
          if (coef == T(0)) continue;
          for (index c = 0; c < n; ++c) depth[d][c] += coef * du[e][c];
        }
      }
      T* to = dw + (o * C + c0) * 9;
      for (index c = 0; c < n; ++c)
        for (index d = 0; d < 9; ++d) to[c * 9 + d] += depth[d][c];
    }
  });
}

// V of images [n0, n0 + count) into v: α² blocks of C x columns
// (winograd_block apart), columns = count tiles; tile t of image g is column
// g tiles + t. Channels outer, images inner: each plane's rounded-up run
// spills only into the next image's or channel's columns, written after it,
// or into the block's spare values.
template <class T, class F>
void winograd_input_tiles(const WinogradPlan& d, const T* x, index n0, index count, T* v, T* scratch) {
  const index columns = count * d.tiles, block = winograd_block(d.C, columns);
  for (index c = 0; c < d.C; ++c)
    for (index g = 0; g < count; ++g)
      winograd_plane_to_frequency<T, InputK<F>, F::m>(x + ((n0 + g) * d.C + c) * d.H * d.W, d.H, d.W, d.p, d.tiles_h,
                                                      d.tiles_w, v + c * columns + g * d.tiles, block, scratch);
}

// Ŷ of the output gradients of images [n0, n0 + count) into yh (α² blocks of
// O x columns, as V), and their sums over the pixels added to db (null: skipped).
template <class T, class F>
void winograd_gradient_tiles(const WinogradPlan& d, const T* dy, index n0, index count, T* yh, T* db, T* scratch) {
  constexpr index m = F::m;
  const index columns = count * d.tiles, block = winograd_block(d.O, columns);
  for (index o = 0; o < d.O; ++o)
    for (index g = 0; g < count; ++g) {
      const T* plane = dy + ((n0 + g) * d.O + o) * d.Ho * d.Wo;
      if (db) {
        T sum = T(0);
        for (index e = 0; e < d.Ho * d.Wo; ++e) sum += plane[e];
        db[o] += sum;
      }
      winograd_plane_to_frequency<T, GradK<F>, m>(plane, d.Ho, d.Wo, index(0), d.tiles_h, d.tiles_w,
                                                  yh + o * columns + g * d.tiles, block, scratch);
    }
}

// y of images [n0, n0 + count) from M (α² blocks of O x columns), plus bias
// (null: none).
template <class T, class F>
void winograd_output_tiles(const WinogradPlan& d, const T* mm, index n0, index count, const T* bias, T* y,
                           T* scratch) {
  constexpr index m = F::m;
  const index columns = count * d.tiles, block = winograd_block(d.O, columns), Wq = d.tiles_w * m;
  T* plane = scratch;
  T* rows = scratch + d.Hp * d.Wp;
  for (index g = 0; g < count; ++g)
    for (index o = 0; o < d.O; ++o) {
      winograd_plane_from_frequency<T, OutputK<F>, m, false>(mm + o * columns + g * d.tiles, block, d.tiles_h,
                                                             d.tiles_w, plane, Wq, rows);
      T* to = y + ((n0 + g) * d.O + o) * d.Ho * d.Wo;
      const T b = bias ? bias[o] : T(0);
      for (index h = 0; h < d.Ho; ++h)
        for (index w = 0; w < d.Wo; ++w) to[h * d.Wo + w] = plane[h * Wq + w] + b;
    }
}

// dx of images [n0, n0 + count) from dV (α² blocks of C x columns): each
// tile's B dV B^T added into a padded plane, whose interior is dx.
template <class T, class F>
void winograd_input_gradient_tiles(const WinogradPlan& d, const T* dv, index n0, index count, T* dx, T* scratch) {
  constexpr index m = F::m;
  const index columns = count * d.tiles, block = winograd_block(d.C, columns);
  T* plane = scratch;
  T* rows = scratch + d.Hp * d.Wp;
  for (index g = 0; g < count; ++g)
    for (index c = 0; c < d.C; ++c) {
      std::fill(plane, plane + d.Hp * d.Wp, T(0));
      winograd_plane_from_frequency<T, InputGradK<F>, m, true>(dv + c * columns + g * d.tiles, block, d.tiles_h,
                                                               d.tiles_w, plane, d.Wp, rows);
      T* to = dx + ((n0 + g) * d.C + c) * d.H * d.W;
      for (index h = 0; h < d.H; ++h)
        std::copy(plane + (h + d.p) * d.Wp + d.p, plane + (h + d.p) * d.Wp + d.p + d.W, to + h * d.W);
    }
}

// Grows `threads` threads' buffers: V (inputs), M or Ŷ (outputs), planes and GEMM scratch.
template <class T>
void winograd_grow_buffers(int threads, index inputs, index outputs, index planes, WinogradWorkspace<T>& ws) {
  winograd_grow_list(ws.inputs, threads);
  winograd_grow_list(ws.outputs, threads);
  winograd_grow_list(ws.planes, threads);
  winograd_grow_list(ws.gemm, threads);
  for (std::size_t t = 0; t < static_cast<std::size_t>(threads); ++t) {
    winograd_grow(ws.inputs[t], inputs);
    winograd_grow(ws.outputs[t], outputs);
    winograd_grow(ws.planes[t], planes);
  }
}

// Per-thread scratch: V, M (or Ŷ) for a group, a padded plane and the
// transforms' rows.
template <class T>
void winograd_reserve(const WinogradPlan& d, int threads, WinogradWorkspace<T>& ws) {
  const index columns = d.group * d.tiles, alpha2 = d.alpha * d.alpha;
  winograd_grow_buffers(threads, alpha2 * winograd_block(d.C, columns), alpha2 * winograd_block(d.O, columns),
                        d.Hp * d.Wp + winograd_plane_scratch(d.alpha, d.m, d.tiles_h, d.tiles_w), ws);
}

// ---------------------------------------------------------------------------
// Images across the lanes: the forward's layout for batches of 16 images and
// more. The plane-at-a-time transforms above put one plane's tiles across
// the SIMD lanes; a tile's window then starts m values after the previous
// one's, which is what the phase split is for, and a small map leaves lanes
// idle (a 7 x 7 map has 16 F(2x2) tiles, 4 F(4x4) ones). Here the lanes hold
// the same tile of winograd_images images instead. The group's input is
// first interleaved, image innermost and zero-padded:
//
//     x̃[c][h][w][l] = x[n0 + l][c][h - p][w - p]     (0 outside the image, and for l >= count)
//
// so that window entry (a, b) of tile (i, j) for all the images is one
// contiguous run at x̃[c][i m + a][j m + b], each tile's transform is α²
// register loads, α² stores and the additions between, and V's column
// (t, l) is tile t of image n0 + l. M comes back the same way, into
// ỹ[o][h][w][l], which is then written out per image. The group goes by
// bands of tile rows, so x̃ and ỹ hold a band's rows only (the α - m rows
// two bands share are moved down, not interleaved again). Each column of
// the GEMMs is one image's, and the transforms do the same arithmetic as
// the plane-at-a-time ones, so a batch gives each image the bits of that image alone.
constexpr index winograd_images = winograd_run;

// Whether WinogradLayout::automatic takes the images across the lanes: with
// AVX-512, for at least a full group. (With AVX2 the plane-at-a-time path
// measured as fast or faster on CNN-9's stages, docs/winograd.md.)
inline bool winograd_by_lanes(index N) {
#if defined(__AVX512F__)
  return N >= winograd_images;
#else
  (void)N;
  return false;
#endif
}

// Tiles per chunk of the lanes path: a chunk's V and M (α² (C + O) tiles
// winograd_images values) stay within about 768 KiB, in the core's L2.
inline index winograd_lanes_chunk(const WinogradPlan& d, index value_bytes) {
  const index per_tile = d.alpha * d.alpha * (d.C + d.O) * winograd_images * value_bytes;
  return std::clamp<index>(768 * 1024 / std::max<index>(per_tile, 1), 1, d.tiles);
}

// The distance between two of the α² blocks (rows x columns) of V or M on
// the lanes path: one run of lanes more than the block, so that the α²
// stores of a tile's transform (or its loads on the way back) do not all
// fall in the same sets of the L1 cache, as whole multiples of 4 KiB apart would.
inline index winograd_lanes_block(index rows, index columns) { return rows * columns + winograd_images; }

// Tile rows per band of the lanes path: about a chunk's tiles, at least one row.
inline index winograd_lanes_band(const WinogradPlan& d, index chunk) {
  return std::clamp<index>(chunk / d.tiles_w, 1, d.tiles_h);
}

// The rows of x̃ and ỹ a band holds, and the sizes of the lanes path's
// per-thread buffers: x̃ (C in_rows Wp L), ỹ (O out_rows (tiles_w m) L)
// and a tile transform's scratch (α² L).
inline index winograd_lanes_in_rows(const WinogradPlan& d, index band) { return band * d.m + d.alpha - d.m; }
inline index winograd_lanes_out_rows(const WinogradPlan& d, index band) { return band * d.m; }
inline index winograd_lanes_size(const WinogradPlan& d, index band) {
  return (d.C * winograd_lanes_in_rows(d, band) * d.Wp + d.O * winograd_lanes_out_rows(d, band) * d.tiles_w * d.m +
          d.alpha * d.alpha) * winograd_images;
}

// to[w L + l] = from[l stride + w] for w < W, l < L (zero for l >=
// count): one row of the images, interleaved. With AVX-512, floats go 16 x
// 16 at a time through registers: 16 images' runs of 16 pixels in, 16
// pixels' runs of 16 images out.
template <class T>
void winograd_interleave_row(const T* from, index stride, index W, index count, T* to) {
  constexpr index L = winograd_images;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    for (index w0 = 0; w0 < W; w0 += 16) {
      const index run = std::min<index>(16, W - w0);
      __m512 v[16];
      for (index l = 0; l < 16; ++l)
        v[l] = l < count ? _mm512_maskz_loadu_ps(simd_first_lanes16(run), from + l * stride + w0) : _mm512_setzero_ps();
      simd_transpose16(v);
      for (index k = 0; k < run; ++k) _mm512_storeu_ps(to + (w0 + k) * L, v[k]);
    }
  } else
#endif
  {
    for (index w = 0; w < W; ++w)
      for (index l = 0; l < L; ++l) to[w * L + l] = l < count ? from[l * stride + w] : T(0);
  }
}

// The inverse: to[l stride + w] = from[w L + l] + shift for w < W, l < count.
template <class T>
void winograd_deinterleave_row(const T* from, index W, index count, T shift, index stride, T* to) {
  constexpr index L = winograd_images;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    const __m512 add = _mm512_set1_ps(shift);
    for (index w0 = 0; w0 < W; w0 += 16) {
      const index run = std::min<index>(16, W - w0);
      __m512 r[16];
      for (index k = 0; k < 16; ++k) r[k] = k < run ? _mm512_loadu_ps(from + (w0 + k) * L) : _mm512_setzero_ps();
      simd_transpose16(r);
      for (index l = 0; l < count; ++l)
        _mm512_mask_storeu_ps(to + l * stride + w0, simd_first_lanes16(run), _mm512_add_ps(r[l], add));
    }
  } else
#endif
  {
    for (index l = 0; l < count; ++l)
      for (index w = 0; w < W; ++w) to[l * stride + w] = from[w * L + l] + shift;
  }
}

// Rows [r0, r1) of the zero-padded planes of `channels` channels of images
// [n0, n0 + count), count <= winograd_images, interleaved, image innermost,
// into rows from `local` of `out` (channel blocks of `rows` rows of
// `width` x L values): padded row r, column q, is x[n0 + l][c][r - p][q -
// p], zero outside the H x W plane and for l >= count. With AVX-512, floats
// go 16 x 16 at a time through registers: 16 images' runs of 16 pixels in,
// 16 pixels' runs of 16 images out.
template <class T>
void winograd_interleave(const T* x, index channels, index H, index W, index p, index width, index n0, index count,
                         index r0, index r1, T* out, index local, index rows) {
  constexpr index L = winograd_images;
  const index row = width * L;
  for (index c = 0; c < channels; ++c)
    for (index r = r0; r < r1; ++r) {
      T* to = out + (c * rows + local + r - r0) * row;
      const index h = r - p;
      if (h < 0 || h >= H) {
        std::fill(to, to + row, T(0));
        continue;
      }
      std::fill(to, to + p * L, T(0));
      std::fill(to + (p + W) * L, to + row, T(0));
      to += p * L;
      const T* from = x + (n0 * channels + c) * H * W + h * W;  // image n0 + l at from + l channels H W
      winograd_interleave_row(from, channels * H * W, W, count, to);
    }
}

// The inverse for rows [h0, h1) of the planes (Hout x Wout) of `channels`
// channels of images [n0, n0 + count): to[n0 + l][c][h][w] = from[c plane +
// (h - h0) row + (w + col0) L + l], plus bias[c] (null: none).
template <class T>
void winograd_deinterleave(const T* from, index channels, index plane, index row, index col0, index Hout,
                           index Wout, index h0, index h1, index n0, index count, const T* bias, T* to) {
  constexpr index L = winograd_images;
  for (index c = 0; c < channels; ++c) {
    const T b = bias ? bias[c] : T(0);
    for (index h = h0; h < h1; ++h) {
      const T* in = from + c * plane + (h - h0) * row + col0 * L;
      T* out = to + (n0 * channels + c) * Hout * Wout + h * Wout;  // image n0 + l at out + l channels Hout Wout
      winograd_deinterleave_row(in, Wout, count, b, channels * Hout * Wout, out);
    }
  }
}

// K In K^T of tiles [t0, t1) of a band from tile row i0, for each of
// `channels` interleaved planes of `from` (blocks of `plane` values, rows of
// `row` values; tile (i, j)'s window at row (i - i0) m, column j m) into
// α² blocks (winograd_lanes_block apart) of channels x columns, columns =
// (t1 - t0) L, column (t - t0) L + l for tile t of image l: V from x̃
// (K = InputK) or Ŷ from the output gradient's interleaved rows (GradK).
template <class T, class F, class K>
void winograd_tiles_lanes(const WinogradPlan& d, const T* from, index channels, index plane, index row, index i0,
                          index t0, index t1, T* out, T* scratch) {
  constexpr index L = winograd_images, m = F::m;
  const index columns = (t1 - t0) * L, block = winograd_lanes_block(channels, columns);
  const auto window = [row](auto a, auto b) { return decltype(a)::value * row + decltype(b)::value * L; };
  const auto position = [block](auto xi, auto nu) { return (decltype(xi)::value * F::alpha + decltype(nu)::value) * block; };
  for (index c = 0; c < channels; ++c)
    for (index t = t0; t < t1; ++t) {
      const index i = t / d.tiles_w - i0, j = t % d.tiles_w;
      winograd_two_sided<T, K>(from + c * plane + i * m * row + j * m * L, window, out + c * columns + (t - t0) * L,
                               position, L, scratch);
    }
}

// V of tiles [t0, t1) of the band from tile row i0, from x̃ (C blocks of
// in_rows x Wp x L).
template <class T, class F>
void winograd_input_lanes(const WinogradPlan& d, const T* xt, index in_rows, index i0, index t0, index t1, T* v,
                          T* scratch) {
  const index row = d.Wp * winograd_images;
  winograd_tiles_lanes<T, F, InputK<F>>(d, xt, d.C, in_rows * row, row, i0, t0, t1, v, scratch);
}

// ỹ's tiles [t0, t1) (band from tile row i0; O blocks of out_rows x
// (tiles_w m) x L) from M (α² blocks of O x columns, as V).
template <class T, class F>
void winograd_output_lanes(const WinogradPlan& d, const T* mm, index out_rows, index i0, index t0, index t1, T* yt,
                           T* scratch) {
  constexpr index L = winograd_images, m = F::m;
  const index columns = (t1 - t0) * L, block = winograd_lanes_block(d.O, columns), row = d.tiles_w * m * L;
  const index plane = out_rows * row;
  const auto position = [block](auto xi, auto nu) { return (decltype(xi)::value * F::alpha + decltype(nu)::value) * block; };
  const auto pixel = [row](auto a, auto b) { return decltype(a)::value * row + decltype(b)::value * L; };
  for (index o = 0; o < d.O; ++o)
    for (index t = t0; t < t1; ++t) {
      const index i = t / d.tiles_w - i0, j = t % d.tiles_w;
      winograd_two_sided<T, OutputK<F>>(mm + o * columns + (t - t0) * L, position,
                                        yt + o * plane + i * m * row + j * m * L, pixel, L, scratch);
    }
}

// The forward of images [n0, n0 + count) by the lanes path, band by band,
// with the thread's buffers (planes: x̃, ỹ and scratch, winograd_lanes_size;
// inputs: V; outputs: M).
template <class T, class F>
void winograd_forward_lanes(const WinogradPlan& d, const T* x, index n0, index count,
                            const std::vector<PackedLhs<T>>& packed, const T* bias, T* y, T* planes, T* v, T* mm,
                            GemmScratch<T>& gemm_scratch) {
  constexpr index L = winograd_images, m = F::m, alpha2 = F::alpha * F::alpha, shared = F::alpha - F::m;
  const index chunk = winograd_lanes_chunk(d, index(sizeof(T))), band = winograd_lanes_band(d, chunk);
  const index in_rows = winograd_lanes_in_rows(d, band), out_rows = winograd_lanes_out_rows(d, band);
  const index row = d.Wp * L;
  T* xt = planes;
  T* yt = xt + d.C * in_rows * row;
  T* scratch = yt + d.O * out_rows * d.tiles_w * m * L;
  for (index i0 = 0; i0 < d.tiles_h; i0 += band) {
    const index i1 = std::min(d.tiles_h, i0 + band);
    if (i0 == 0) {
      winograd_interleave(x, d.C, d.H, d.W, d.p, d.Wp, n0, count, index(0), i1 * m + shared, xt, index(0), in_rows);
    } else {  // the previous band's last rows are this band's first
      for (index c = 0; c < d.C; ++c)
        std::copy(xt + (c * in_rows + band * m) * row, xt + (c * in_rows + band * m + shared) * row,
                  xt + c * in_rows * row);
      winograd_interleave(x, d.C, d.H, d.W, d.p, d.Wp, n0, count, i0 * m + shared, i1 * m + shared, xt, shared,
                          in_rows);
    }
    for (index t0 = i0 * d.tiles_w; t0 < i1 * d.tiles_w; t0 += chunk) {
      const index t1 = std::min(i1 * d.tiles_w, t0 + chunk), columns = (t1 - t0) * L;
      winograd_input_lanes<T, F>(d, xt, in_rows, i0, t0, t1, v, scratch);
      for (index e = 0; e < alpha2; ++e)  // M_ξν = U_ξν V_ξν
        gemm<T>(packed[static_cast<std::size_t>(e)], false, columns, v + e * winograd_lanes_block(d.C, columns),
                T(0), mm + e * winograd_lanes_block(d.O, columns), gemm_scratch);
      winograd_output_lanes<T, F>(d, mm, out_rows, i0, t0, t1, yt, scratch);
    }
    winograd_deinterleave(yt, d.O, out_rows * d.tiles_w * m * L, d.tiles_w * m * L, index(0), d.Ho, d.Wo, i0 * m,
                          std::min(d.Ho, i1 * m), n0, count, bias, y);
  }
}

// Ŷ of tiles [t0, t1) of the band from tile row i0 (α² blocks of O x
// columns), from the output gradient's interleaved rows (O blocks of
// out_rows x (tiles_w m) x L).
template <class T, class F>
void winograd_gradient_lanes(const WinogradPlan& d, const T* dyt, index out_rows, index i0, index t0, index t1, T* yh,
                             T* scratch) {
  const index row = d.tiles_w * F::m * winograd_images;
  winograd_tiles_lanes<T, F, GradK<F>>(d, dyt, d.O, out_rows * row, row, i0, t0, t1, yh, scratch);
}

// B dV B^T of tiles [t0, t1) (dV: α² blocks of C x columns, as V) added
// into the interleaved input gradient (C blocks of in_rows x Wp x L, band
// from tile row i0), where neighbouring tiles overlap by α - m. `scratch`:
// 2 α² L values.
template <class T, class F>
void winograd_input_gradient_lanes(const WinogradPlan& d, const T* dv, index in_rows, index i0, index t0, index t1,
                                   T* dxt, T* scratch) {
  constexpr index L = winograd_images, m = F::m, alpha = F::alpha;
  const index columns = (t1 - t0) * L, block = winograd_lanes_block(d.C, columns), row = d.Wp * L;
  const index plane = in_rows * row;
  const auto position = [block](auto xi, auto nu) { return (decltype(xi)::value * F::alpha + decltype(nu)::value) * block; };
  const auto at = [](auto a, auto b) { return (decltype(a)::value * F::alpha + decltype(b)::value) * L; };
  T* tile = scratch;  // [a][b][l]
  for (index c = 0; c < d.C; ++c)
    for (index t = t0; t < t1; ++t) {
      const index i = t / d.tiles_w - i0, j = t % d.tiles_w;
      winograd_two_sided<T, InputGradK<F>>(dv + c * columns + (t - t0) * L, position, tile, at, L,
                                           scratch + alpha * alpha * L);
      T* to = dxt + c * plane + i * m * row + j * m * L;
      for (index a = 0; a < alpha; ++a)
        for (index k = 0; k < alpha * L; ++k) to[a * row + k] += tile[a * alpha * L + k];
    }
}

// The per-thread buffer of the lanes backward: x̃, ỹ's gradient, the input
// gradient's rows and the transforms' scratch.
inline index winograd_lanes_backward_size(const WinogradPlan& d, index band) {
  return (2 * d.C * winograd_lanes_in_rows(d, band) * d.Wp +
          d.O * winograd_lanes_out_rows(d, band) * d.tiles_w * d.m + 2 * d.alpha * d.alpha) * winograd_images;
}

// The gradients of images [n0, n0 + count) by the lanes path, band by
// band: dU (α² blocks of O x C) assigned when `assign`, else added to; dx
// (null: skipped, and `packed` unused: U_ξν^T packed) assigned; the
// output gradient's sums over the pixels added to db (null: skipped).
template <class T, class F>
void winograd_backward_lanes(const WinogradPlan& d, const T* x, const T* dy, index n0, index count,
                             const std::vector<PackedLhs<T>>& packed, T* dx, T* du, bool assign, T* db, T* planes,
                             T* v, T* yh, GemmScratch<T>& gemm_scratch) {
  constexpr index L = winograd_images, m = F::m, alpha2 = F::alpha * F::alpha, shared = F::alpha - F::m;
  const index chunk = winograd_lanes_chunk(d, index(sizeof(T))), band = winograd_lanes_band(d, chunk);
  const index in_rows = winograd_lanes_in_rows(d, band), out_rows = winograd_lanes_out_rows(d, band);
  const index row = d.Wp * L, plane = in_rows * row;
  T* xt = planes;
  T* dyt = xt + d.C * plane;
  T* dxt = dyt + d.O * out_rows * d.tiles_w * m * L;
  T* scratch = dxt + d.C * plane;
  if (db)
    for (index o = 0; o < d.O; ++o)
      for (index l = 0; l < count; ++l) {
        const T* from = dy + ((n0 + l) * d.O + o) * d.Ho * d.Wo;
        T sum = T(0);
        for (index e = 0; e < d.Ho * d.Wo; ++e) sum += from[e];
        db[o] += sum;
      }
  bool first = assign;
  for (index i0 = 0; i0 < d.tiles_h; i0 += band) {
    const index i1 = std::min(d.tiles_h, i0 + band);
    if (i0 == 0) {
      winograd_interleave(x, d.C, d.H, d.W, d.p, d.Wp, n0, count, index(0), i1 * m + shared, xt, index(0), in_rows);
      if (dx) std::fill(dxt, dxt + d.C * plane, T(0));
    } else {  // the previous band's last rows are this band's first
      for (index c = 0; c < d.C; ++c) {
        std::copy(xt + c * plane + band * m * row, xt + c * plane + (band * m + shared) * row, xt + c * plane);
        if (dx) {
          std::copy(dxt + c * plane + band * m * row, dxt + c * plane + (band * m + shared) * row, dxt + c * plane);
          std::fill(dxt + c * plane + shared * row, dxt + (c + 1) * plane, T(0));
        }
      }
      winograd_interleave(x, d.C, d.H, d.W, d.p, d.Wp, n0, count, i0 * m + shared, i1 * m + shared, xt, shared,
                          in_rows);
    }
    winograd_interleave(dy, d.O, d.Ho, d.Wo, index(0), d.tiles_w * m, n0, count, i0 * m, i1 * m, dyt, index(0),
                        out_rows);
    for (index t0 = i0 * d.tiles_w; t0 < i1 * d.tiles_w; t0 += chunk) {
      const index t1 = std::min(i1 * d.tiles_w, t0 + chunk), columns = (t1 - t0) * L;
      const index v_block = winograd_lanes_block(d.C, columns), y_block = winograd_lanes_block(d.O, columns);
      winograd_input_lanes<T, F>(d, xt, in_rows, i0, t0, t1, v, scratch);
      winograd_gradient_lanes<T, F>(d, dyt, out_rows, i0, t0, t1, yh, scratch);
      for (index e = 0; e < alpha2; ++e)  // dU_ξν (+)= Ŷ_ξν V_ξν^T
        gemm<T>(false, true, d.O, d.C, columns, yh + e * y_block, v + e * v_block, first ? T(0) : T(1), du + e * d.O * d.C,
                gemm_scratch);
      first = false;
      if (dx) {
        for (index e = 0; e < alpha2; ++e)  // dV_ξν = U_ξν^T Ŷ_ξν, over V
          gemm<T>(packed[static_cast<std::size_t>(e)], false, columns, yh + e * y_block, T(0), v + e * v_block,
                  gemm_scratch);
        winograd_input_gradient_lanes<T, F>(d, v, in_rows, i0, t0, t1, dxt, scratch);
      }
    }
    if (dx) {  // padded rows [i0 m, end) are complete: dx's rows among them
      const index end = i1 == d.tiles_h ? i1 * m + shared : i1 * m;
      const index h0 = std::max<index>(0, i0 * m - d.p), h1 = std::min(d.H, end - d.p);
      if (h0 < h1)
        winograd_deinterleave(dxt + (h0 + d.p - i0 * m) * row, d.C, plane, row, d.p, d.H, d.W, h0, h1, n0, count,
                              static_cast<const T*>(nullptr), dx);
    }
  }
}

// Grows the lanes path's per-thread buffers: V and M (or Ŷ) for a chunk
// of tiles, and `planes` values of interleaved rows and scratch.
template <class T>
void winograd_lanes_reserve(const WinogradPlan& d, int threads, index chunk, index planes, WinogradWorkspace<T>& ws) {
  const index alpha2 = d.alpha * d.alpha, columns = chunk * winograd_images;
  winograd_grow_buffers(threads, alpha2 * winograd_lanes_block(d.C, columns), alpha2 * winograd_lanes_block(d.O, columns),
                        planes, ws);
}

inline void winograd_check(const char* op, const Shape& x, const Shape& w, const ConvGeometry& g) {
  check_rank(op, "input", x, 4);
  check_rank(op, "weight", w, 4);
  check_shape(op, "weight", w, Shape{w[0], x[1], 3, 3});
  require(winograd_supported(g), ErrorKind::argument, op, ": needs a 3x3 kernel and stride 1, got kernel ", g.kernel,
          ", stride ", g.stride);
  check_geometry(op, g, x[2], x[3]);
}
}  // namespace detail

/// How winograd_conv2d_forward lays out its tiles: one image plane at a
/// time with the plane's tiles across the SIMD lanes, or 16 images at a
/// time with the same tile of each image across the lanes (detail::
/// winograd_images); `automatic` picks by the batch and the build
/// (detail::winograd_by_lanes). Both give the same values, bit for bit with xsimd.
enum class WinogradLayout { automatic, planes, lanes };

/// y = conv(x, w) + bias (an empty bias: none) for a 3 x 3 stride-1
/// convolution, by F(Tile x Tile, 3 x 3) in α² GEMMs per group of images
/// (OpenMP over the groups outside a parallel region; one group's GEMMs
/// split over the threads when the batch is one group). With xsimd (nsl's
/// own GEMM) each output depends on its own image only: the same bits
/// whatever the batch, the thread count and the layout.
template <class T, index Tile = 2>
void winograd_conv2d_forward(TensorView<const T> x, TensorView<const T> w, TensorView<const T> bias,
                             const ConvGeometry& g, TensorView<T> y, WinogradWorkspace<T>& ws,
                             WinogradLayout layout = WinogradLayout::automatic) {
  using F = WinogradF<Tile>;
  constexpr index alpha2 = F::alpha * F::alpha;
  detail::winograd_check("winograd_conv2d_forward", x.shape(), w.shape(), g);
  const index N = x.dim(0), C = x.dim(1), O = w.dim(0);
  if (bias.size()) check_shape("winograd_conv2d_forward", "bias", bias.shape(), Shape{O});
  check_shape("winograd_conv2d_forward", "output", y.shape(),
              Shape{N, O, g.output_extent(x.dim(2)), g.output_extent(x.dim(3))});
  if (N == 0 || O == 0) return;
  const detail::WinogradPlan d = detail::winograd_plan(N, C, x.dim(2), x.dim(3), O, g, Tile);
  detail::winograd_grow(ws.filters, alpha2 * O * C);
  detail::winograd_filters<T, F>(w.data(), O, C, ws.filters.data());
  detail::winograd_grow_list(ws.packed, alpha2);
  for (index e = 0; e < alpha2; ++e)
    ws.packed[static_cast<std::size_t>(e)].pack(false, O, C, ws.filters.data() + e * O * C);
  const T* b = bias.size() ? bias.data() : nullptr;
  if (layout == WinogradLayout::lanes || (layout == WinogradLayout::automatic && detail::winograd_by_lanes(N))) {
    constexpr index L = detail::winograd_images;
    const index groups = (N + L - 1) / L, chunk = detail::winograd_lanes_chunk(d, index(sizeof(T)));
    const int threads = in_parallel_region() ? 1 : static_cast<int>(std::min<index>(num_threads(), groups));
    detail::winograd_lanes_reserve(d, threads, chunk, detail::winograd_lanes_size(d, detail::winograd_lanes_band(d, chunk)),
                                   ws);
    const auto run = [&](index group, int t) {
      const auto s = static_cast<std::size_t>(t);
      detail::winograd_forward_lanes<T, F>(d, x.data(), group * L, std::min(L, N - group * L), ws.packed, b, y.data(),
                                           ws.planes[s].data(), ws.inputs[s].data(), ws.outputs[s].data(), ws.gemm[s]);
    };
    for_each_on_threads(groups, threads, run);
    return;
  }
  const index groups = (N + d.group - 1) / d.group;
  const int threads = in_parallel_region() ? 1 : static_cast<int>(std::min<index>(num_threads(), groups));
  detail::winograd_reserve(d, threads, ws);
  const auto run = [&](index group, int t) {
    const auto s = static_cast<std::size_t>(t);
    const index n0 = group * d.group, count = std::min(d.group, N - n0), columns = count * d.tiles;
    const index v_block = detail::winograd_block(C, columns), m_block = detail::winograd_block(O, columns);
    T* v = ws.inputs[s].data();
    T* mm = ws.outputs[s].data();
    detail::winograd_input_tiles<T, F>(d, x.data(), n0, count, v, ws.planes[s].data());
    for (index e = 0; e < alpha2; ++e)  // M_ξν = U_ξν V_ξν
      gemm<T>(ws.packed[static_cast<std::size_t>(e)], false, columns, v + e * v_block, T(0), mm + e * m_block,
              ws.gemm[s]);
    detail::winograd_output_tiles<T, F>(d, mm, n0, count, b, y.data(), ws.planes[s].data());
  };
  for_each_on_threads(groups, threads, run);
}

/// The gradients of winograd_conv2d_forward: dx assigned (skipped when
/// dx.size() == 0); dw, db accumulated (db skipped when empty), as
/// conv2d_backward. The batch is cut into one chunk of consecutive images per
/// thread; a chunk's dU is summed in image order and the chunks' in chunk
/// order, so the result depends on the batch size and thread count alone.
template <class T, index Tile = 2>
void winograd_conv2d_backward(TensorView<const T> x, TensorView<const T> w, const ConvGeometry& g,
                              TensorView<const T> dy, TensorView<T> dx, TensorView<T> dw, TensorView<T> db,
                              WinogradWorkspace<T>& ws, WinogradLayout layout = WinogradLayout::automatic) {
  using F = WinogradF<Tile>;
  constexpr index alpha2 = F::alpha * F::alpha;
  const char* op = "winograd_conv2d_backward";
  detail::winograd_check(op, x.shape(), w.shape(), g);
  const index N = x.dim(0), C = x.dim(1), O = w.dim(0);
  check_shape(op, "output gradient", dy.shape(), Shape{N, O, g.output_extent(x.dim(2)), g.output_extent(x.dim(3))});
  check_shape(op, "weight gradient", dw.shape(), w.shape());
  if (db.size()) check_shape(op, "bias gradient", db.shape(), Shape{O});
  if (dx.size()) check_shape(op, "input gradient", dx.shape(), x.shape());
  if (N == 0 || O == 0) {
    for (index i = 0; i < dx.size(); ++i) dx[i] = T(0);
    return;
  }
  const detail::WinogradPlan d = detail::winograd_plan(N, C, x.dim(2), x.dim(3), O, g, Tile);
  if (dx.size()) {
    detail::winograd_grow(ws.filters, alpha2 * O * C);
    detail::winograd_filters<T, F>(w.data(), O, C, ws.filters.data());
    detail::winograd_grow_list(ws.packed, alpha2);
    for (index e = 0; e < alpha2; ++e)
      ws.packed[static_cast<std::size_t>(e)].pack(true, C, O, ws.filters.data() + e * O * C);  // U_ξν^T
  }
  const int threads = in_parallel_region() ? 1 : static_cast<int>(std::min<index>(num_threads(), N));
  const index chunks = std::min<index>(N, threads);
  const bool lanes =
      layout == WinogradLayout::lanes || (layout == WinogradLayout::automatic && detail::winograd_by_lanes(N));
  if (lanes) {
    const index chunk = detail::winograd_lanes_chunk(d, index(sizeof(T)));
    detail::winograd_lanes_reserve(d, threads, chunk,
                                   detail::winograd_lanes_backward_size(d, detail::winograd_lanes_band(d, chunk)), ws);
  } else {
    detail::winograd_reserve(d, threads, ws);
  }
  detail::winograd_grow_list(ws.filter_grads, chunks);
  detail::winograd_grow_list(ws.bias_grads, chunks);
  for (std::size_t c = 0; c < static_cast<std::size_t>(chunks); ++c) {
    detail::winograd_grow(ws.filter_grads[c], alpha2 * O * C);
    detail::winograd_grow(ws.bias_grads[c], O);
    std::fill(ws.bias_grads[c].data(), ws.bias_grads[c].data() + O, T(0));
  }
  const auto run = [&](index chunk, int t) {
    const auto s = static_cast<std::size_t>(t);
    const index first = N * chunk / chunks, last = N * (chunk + 1) / chunks;
    T* v = ws.inputs[s].data();
    T* yh = ws.outputs[s].data();
    T* du = ws.filter_grads[static_cast<std::size_t>(chunk)].data();
    T* bias_sum = db.size() ? ws.bias_grads[static_cast<std::size_t>(chunk)].data() : nullptr;
    if (lanes) {
      constexpr index L = detail::winograd_images;
      for (index n0 = first; n0 < last; n0 += L)
        detail::winograd_backward_lanes<T, F>(d, x.data(), dy.data(), n0, std::min(L, last - n0), ws.packed,
                                              dx.size() ? dx.data() : nullptr, du, n0 == first, bias_sum,
                                              ws.planes[s].data(), v, yh, ws.gemm[s]);
      return;
    }
    for (index n0 = first; n0 < last; n0 += d.group) {
      const index count = std::min(d.group, last - n0), columns = count * d.tiles;
      const index v_block = detail::winograd_block(C, columns), y_block = detail::winograd_block(O, columns);
      detail::winograd_input_tiles<T, F>(d, x.data(), n0, count, v, ws.planes[s].data());
      detail::winograd_gradient_tiles<T, F>(d, dy.data(), n0, count, yh, bias_sum, ws.planes[s].data());
      for (index e = 0; e < alpha2; ++e)  // dU_ξν (+)= Ŷ_ξν V_ξν^T
        gemm<T>(false, true, O, C, columns, yh + e * y_block, v + e * v_block, n0 == first ? T(0) : T(1),
                du + e * O * C, ws.gemm[s]);
      if (dx.size()) {
        for (index e = 0; e < alpha2; ++e)  // dV_ξν = U_ξν^T Ŷ_ξν, over V
          gemm<T>(ws.packed[static_cast<std::size_t>(e)], false, columns, yh + e * y_block, T(0), v + e * v_block,
                  ws.gemm[s]);
        detail::winograd_input_gradient_tiles<T, F>(d, v, n0, count, dx.data(), ws.planes[s].data());
      }
    }
  };
  for_each_on_threads(chunks, threads, run);
  detail::winograd_filter_gradients<T, F>(ws.filter_grads.data(), chunks, O, C, dw.data());
  if (db.size())
    for (index c = 0; c < chunks; ++c)
      for (index o = 0; o < O; ++o) db[o] += ws.bias_grads[static_cast<std::size_t>(c)][o];
}

}  // namespace nsl
