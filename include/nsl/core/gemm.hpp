// nsl/core/gemm.hpp — matrix products of row-major buffers that allocate
// nothing once their scratch has grown to size.
//
//     C = beta C + op(A) op(B)        op(X) = X or X^T,  beta = 0 or 1
//
// A, B and C are dense row-major arrays: C is M x N, op(A) M x K, op(B) K x N.
// Eigen's GEMM packs blocks of both operands into buffers that it allocates
// on every product larger than EIGEN_STACK_ALLOCATION_LIMIT (128 KiB): a
// convolution's per-image products are larger, so a training step would call
// malloc hundreds of times. `gemm` runs the same Eigen kernel
// (internal::general_matrix_matrix_product, Eigen 3.4) with those buffers
// taken from a GemmScratch that the caller keeps across calls, so the
// numbers are those of the Eigen product and the step allocates nothing.
// A product outside a parallel region with Eigen allowed several threads
// goes through Eigen's own (threaded, allocating) product instead.
#pragma once

#include <Eigen/Core>

#include "nsl/core/shape.hpp"
#include "nsl/core/threads.hpp"

namespace nsl {

/// The packing buffers of one thread's products; they only grow.
template <class T>
class GemmScratch {
 public:
  T* lhs(index size) { return grow(lhs_, size); }
  T* rhs(index size) { return grow(rhs_, size); }

 private:
  static T* grow(Eigen::Matrix<T, Eigen::Dynamic, 1>& buffer, index size) {
    if (buffer.size() < size) buffer.resize(size);
    return buffer.data();
  }
  Eigen::Matrix<T, Eigen::Dynamic, 1> lhs_, rhs_;  // Eigen-aligned
};

namespace detail {
// Eigen's level-3 blocking (block sizes for the caches of this machine, as
// Eigen's own product computes them) with the buffers of a GemmScratch.
template <class T>
class ScratchBlocking : public Eigen::internal::level3_blocking<T, T> {
 public:
  ScratchBlocking(index rows, index cols, index depth, GemmScratch<T>& scratch) {
    this->m_mc = rows;
    this->m_nc = cols;
    this->m_kc = depth;
    Eigen::internal::computeProductBlockingSizes<T, T, 1>(this->m_kc, this->m_mc, this->m_nc, index(1));
    this->m_blockA = scratch.lhs(this->m_kc * this->m_mc);
    this->m_blockB = scratch.rhs(this->m_kc * this->m_nc);
  }
};

// The column-major problem C^T += Lhs Rhs with Lhs = op(B)^T (N x K) and
// Rhs = op(A)^T (K x M), the storage orders as template arguments.
template <class T, int LhsOrder, int RhsOrder>
void column_major_gemm(index M, index N, index K, const T* lhs, index lhs_stride, const T* rhs, index rhs_stride,
                       T* c, GemmScratch<T>& scratch) {
  ScratchBlocking<T> blocking(N, M, K, scratch);
  Eigen::internal::general_matrix_matrix_product<index, T, LhsOrder, false, T, RhsOrder, false, Eigen::ColMajor,
                                                 1>::run(N, M, K, lhs, lhs_stride, rhs, rhs_stride, c, 1, N, T(1),
                                                         blocking, nullptr);
}
}  // namespace detail

/// C = beta C + op(A) op(B) (see the header comment); beta must be 0 or 1.
template <class T>
void gemm(bool transpose_a, bool transpose_b, index M, index N, index K, const T* a, const T* b, T beta, T* c,
          GemmScratch<T>& scratch) {
  require(beta == T(0) || beta == T(1), ErrorKind::argument, "gemm: beta must be 0 or 1, got ", beta);
  require(M >= 0 && N >= 0 && K >= 0, ErrorKind::argument, "gemm: negative size ", M, " x ", N, " x ", K);
  using RowMajorMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
  using ConstRowMajorMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
  RowMajorMap result(c, M, N);
  if (beta == T(0)) result.setZero();
  if (M == 0 || N == 0 || K == 0) return;
  if (!in_parallel_region() && Eigen::nbThreads() > 1) {  // let Eigen thread the product
    const ConstRowMajorMap a_stored(a, transpose_a ? K : M, transpose_a ? M : K);
    const ConstRowMajorMap b_stored(b, transpose_b ? N : K, transpose_b ? K : N);
    if (transpose_a && transpose_b) result.noalias() += a_stored.transpose() * b_stored.transpose();
    else if (transpose_a) result.noalias() += a_stored.transpose() * b_stored;
    else if (transpose_b) result.noalias() += a_stored * b_stored.transpose();
    else result.noalias() += a_stored * b_stored;
    return;
  }
  // Row-major op(B) K x N, stored untransposed, is the column-major N x K
  // matrix op(B)^T with leading dimension N; stored transposed (N x K
  // row-major), op(B)^T is that row-major matrix itself. Likewise for A.
  constexpr int col = Eigen::ColMajor, row = Eigen::RowMajor;
  const index lhs_stride = transpose_b ? K : N, rhs_stride = transpose_a ? M : K;
  if (!transpose_b && !transpose_a) detail::column_major_gemm<T, col, col>(M, N, K, b, lhs_stride, a, rhs_stride, c, scratch);
  else if (!transpose_b) detail::column_major_gemm<T, col, row>(M, N, K, b, lhs_stride, a, rhs_stride, c, scratch);
  else if (!transpose_a) detail::column_major_gemm<T, row, col>(M, N, K, b, lhs_stride, a, rhs_stride, c, scratch);
  else detail::column_major_gemm<T, row, row>(M, N, K, b, lhs_stride, a, rhs_stride, c, scratch);
}

}  // namespace nsl
