// nsl/core/simd.hpp — what nsl adds to xsimd.
//
// simd_fma(a, b, c) = a b + c rounded once, for xsimd registers. xsimd 8's
// fma has no AVX-512 kernel: there it is a b + c, which the compiler fuses
// only when it contracts expressions (GCC does at -O2 and above, not at
// -O1), so the rounding and the speed of nsl's kernels would depend on the
// optimisation level. Here the AVX-512 registers take the fused
// instruction directly; everything else goes to xsimd::fma.
#pragma once

#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
#include <type_traits>

#include <xsimd/xsimd.hpp>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

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
