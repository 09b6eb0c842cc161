// nsl/core/simd.hpp — what nsl adds to xsimd.
//
// simd_fma(a, b, c) = a b + c rounded once, for xsimd registers. xsimd 8's
// fma has no AVX-512 kernel: there it is a b + c, which the compiler fuses
// only when it contracts expressions (GCC does at -O2 and above, not at
// -O1), so the rounding and the speed of nsl's kernels would depend on the
// optimisation level. Here the AVX-512 registers take the fused
// instruction directly; everything else goes to xsimd::fma.
//
// simd_first_lanes16 / simd_first_lanes8 (AVX-512): the mask of a
// register's first n lanes.
//
// simd_transpose16 (AVX-512, with or without xsimd): a 16 x 16 block of
// floats held as 16 registers, transposed in registers (the GEMM's packing
// of a transposed operand, the Winograd layout of images across the lanes).
#pragma once

#if defined(__AVX512F__)
#include <immintrin.h>

#include <cstddef>

namespace nsl {
/// The mask of a register's first `count` lanes (count <= 16 floats, <= 8
/// doubles): masked loads and stores of a row shorter than a register.
inline __mmask16 simd_first_lanes16(std::ptrdiff_t count) { return static_cast<__mmask16>((1u << count) - 1u); }
inline __mmask8 simd_first_lanes8(std::ptrdiff_t count) { return static_cast<__mmask8>((1u << count) - 1u); }

/// r[j][i] = r[i][j] for 16 registers of 16 floats: pairs of rows
/// interleaved by values, then by pairs of values, then by 128-bit quarters twice.
inline void simd_transpose16(__m512 (&r)[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
    const __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int i = 0; i < 16; i += 8)
    for (int s = 0; s < 4; ++s) {
      t[i + s] = _mm512_shuffle_f32x4(r[i + s], r[i + 4 + s], 0x88);
      t[i + 4 + s] = _mm512_shuffle_f32x4(r[i + s], r[i + 4 + s], 0xDD);
    }
  for (int s = 0; s < 8; ++s) {
    r[s] = _mm512_shuffle_f32x4(t[s], t[8 + s], 0x88);
    r[8 + s] = _mm512_shuffle_f32x4(t[s], t[8 + s], 0xDD);
  }
}
}  // namespace nsl
#endif

#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
#include <type_traits>

#include <xsimd/xsimd.hpp>

namespace nsl {

template <class B>
inline B simd_fma(const B& a, const B& b, const B& c) {
#if defined(__AVX512F__)
  // 512-bit registers of floats or doubles (16 or 8 lanes): AVX-512's.
  using V = typename B::value_type;
  if constexpr (std::is_same_v<V, float> && B::size == 16) {
    return B(_mm512_fmadd_ps(a, b, c));
  } else if constexpr (std::is_same_v<V, double> && B::size == 8) {
    return B(_mm512_fmadd_pd(a, b, c));
  } else
#endif
  {
    return xsimd::fma(a, b, c);
  }
}

}  // namespace nsl
#endif
