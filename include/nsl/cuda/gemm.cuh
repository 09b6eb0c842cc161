// nsl/cuda/gemm.cuh — row-major GEMMs on the GPU through cuBLAS.
//
//     C = alpha op(A) op(B) + beta C,   A: m x k after op, B: k x n, C: m x n
//
// all row-major, as nsl's CPU GEMM (nsl/core/gemm.hpp). cuBLAS is
// column-major; a row-major C is a column-major C^T = op(B)^T op(A)^T, so
// the call swaps the operands and passes the row-major leading dimensions.
// The handle runs plain FP32/FP64 arithmetic (nsl/cuda/runtime.cuh).
#pragma once

#include "nsl/cuda/runtime.cuh"

namespace nsl::cuda {

namespace detail {
inline cublasStatus_t gemm_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                const float* alpha, const float* a, int lda, const float* b, int ldb,
                                const float* beta, float* c, int ldc) {
  return cublasSgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline cublasStatus_t gemm_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                const double* alpha, const double* a, int lda, const double* b, int ldb,
                                const double* beta, double* c, int ldc) {
  return cublasDgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline cublasStatus_t gemm_batched_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                        int k, const float* alpha, const float* a, int lda, long long sa,
                                        const float* b, int ldb, long long sb, const float* beta, float* c, int ldc,
                                        long long sc, int batch) {
  return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
}
inline cublasStatus_t gemm_batched_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                        int k, const double* alpha, const double* a, int lda, long long sa,
                                        const double* b, int ldb, long long sb, const double* beta, double* c,
                                        int ldc, long long sc, int batch) {
  return cublasDgemmStridedBatched(h, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
}
inline int blas_int(index v, const char* what) {
  require(v >= 0 && v <= index(0x7fffffff), ErrorKind::argument, "cuda::gemm: ", what, " ", v,
          " does not fit cuBLAS's int");
  return static_cast<int>(v);
}
}  // namespace detail

/// Row-major C (m x n) = alpha op(A) op(B) + beta C on the device.
template <class T>
void gemm(BlasHandle& handle, bool trans_a, bool trans_b, index m, index n, index k, T alpha, const T* a,
          const T* b, T beta, T* c) {
  if (m == 0 || n == 0) return;
  const int M = detail::blas_int(m, "m"), N = detail::blas_int(n, "n"), K = detail::blas_int(k, "k");
  const int lda = trans_a ? M : K, ldb = trans_b ? K : N;
  check(detail::gemm_call(handle.get(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N,
                          M, K, &alpha, b, ldb > 0 ? ldb : 1, a, lda > 0 ? lda : 1, &beta, c, N),
        "cuda::gemm");
}

/// `batch` GEMMs as above, the i-th on A + i stride_a, B + i stride_b,
/// C + i stride_c (a stride of 0 shares that operand).
template <class T>
void gemm_strided_batched(BlasHandle& handle, bool trans_a, bool trans_b, index m, index n, index k, T alpha,
                          const T* a, index stride_a, const T* b, index stride_b, T beta, T* c, index stride_c,
                          index batch) {
  if (m == 0 || n == 0 || batch == 0) return;
  const int M = detail::blas_int(m, "m"), N = detail::blas_int(n, "n"), K = detail::blas_int(k, "k");
  const int lda = trans_a ? M : K, ldb = trans_b ? K : N;
  check(detail::gemm_batched_call(handle.get(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                  trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, b, ldb > 0 ? ldb : 1,
                                  stride_b, a, lda > 0 ? lda : 1, stride_a, &beta, c, N, stride_c,
                                  detail::blas_int(batch, "batch")),
        "cuda::gemm_strided_batched");
}

}  // namespace nsl::cuda
