// nsl/core/gemm.hpp — matrix products of row-major buffers that allocate
// nothing once their scratch has grown to size.
//
//     C = beta C + op(A) op(B)        op(X) = X or X^T,  beta = 0 or 1
//
// A, B and C are dense row-major arrays: C is M x N, op(A) M x K, op(B) K x N.
//
// `gemm_reference` is that formula as three loops. `gemm` is the fast one,
// built the way BLIS and OpenBLAS build theirs (Goto's algorithm):
//
//   for each block of KC depths:     pack op(B)'s KC x N rows into panels NR
//                                    columns wide (each depth's NR values together)
//     for each block of MC rows:     pack op(A)'s MC x KC block into panels MR
//                                    rows tall (each depth's MR values together)
//       for each NR x MR tile:       micro-kernel: C_tile (+)= A_panel B_panel
//
// The micro-kernel holds the MR x NR tile of C in SIMD registers (xsimd) and
// adds one rank-1 update per depth: NR/L register loads of B, MR broadcasts of
// A, MR NR/L fused multiply-adds (L lanes per register). MR x NR is as large
// as the register file allows: 6 x 2L on 16-register AVX2 (12 accumulators),
// 12 x 2L on 32-register AVX-512 (24). Packing makes every load of the inner
// loop contiguous whatever the transposition, and pads partial panels with
// zeros; a tile with fewer rows runs a micro-kernel compiled for that many,
// one with fewer columns goes through a small buffer. The A block stays in
// L2 and a B panel in L1 across the tiles that use them.
//
// A left operand used for many products (a convolution's weights, once per
// image) can be packed once into a PackedLhs and passed instead of A; a
// right operand that is cheaper to compute than to store (a convolution's
// patch matrix) can be packed by the caller, block by block, straight into
// the panel layout (gemm_with_rhs, e.g. nsl/ops/im2col.hpp's PatchPacker).
//
// Outside a parallel region with several threads (num_threads()), `gemm`
// splits C into column (or row) slabs, one per thread, each with its own
// packing buffers from the GemmScratch; inside one (the usual case: OpenMP
// over a batch, one product per image) it runs on the calling thread.
// Without xsimd (NSL_HAVE_XSIMD unset) `gemm` runs Eigen's GEMM kernel
// (internal::general_matrix_matrix_product, Eigen 3.4) with its packing
// buffers taken from the GemmScratch, so it allocates nothing either.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <utility>
#include <type_traits>
#include <vector>

#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
#include <xsimd/xsimd.hpp>
#endif

#include "nsl/core/simd.hpp"

#include "nsl/core/shape.hpp"
#include "nsl/core/threads.hpp"

namespace nsl {

/// The packing buffers of one caller's products (one set per thread of a
/// threaded product); they only grow. Not shared between concurrent calls.
template <class T>
class GemmScratch {
 public:
  T* lhs(index size, int worker = 0) { return grow(buffers(worker).lhs, size); }
  T* rhs(index size, int worker = 0) { return grow(buffers(worker).rhs, size); }
  /// Makes room for `workers` sets of buffers (call before a parallel region).
  void reserve_workers(int workers) {
    if (static_cast<int>(workers_.size()) < workers) workers_.resize(static_cast<std::size_t>(workers));
  }

 private:
  struct Buffers {
    Eigen::Matrix<T, Eigen::Dynamic, 1> lhs, rhs;  // Eigen-aligned
  };
  Buffers& buffers(int worker) {
    reserve_workers(worker + 1);
    return workers_[static_cast<std::size_t>(worker)];
  }
  static T* grow(Eigen::Matrix<T, Eigen::Dynamic, 1>& buffer, index size) {
    if (buffer.size() < size) buffer.resize(size);
    return buffer.data();
  }
  std::vector<Buffers> workers_;
};

/// C = beta C + op(A) op(B) as the formula reads (double accumulation for
/// float); beta must be 0 or 1. Tests compare `gemm` with it.
template <class T>
void gemm_reference(bool transpose_a, bool transpose_b, index M, index N, index K, const T* a, const T* b, T beta,
                    T* c) {
  using Acc = std::conditional_t<std::is_same_v<T, float>, double, T>;
  for (index i = 0; i < M; ++i)
    for (index j = 0; j < N; ++j) {
      Acc sum = 0;
      for (index k = 0; k < K; ++k) {
        const T a_ik = transpose_a ? a[k * M + i] : a[i * K + k];
        const T b_kj = transpose_b ? b[j * K + k] : b[k * N + j];
        sum += Acc(a_ik) * Acc(b_kj);
      }
      c[i * N + j] = T(beta == T(0) ? Acc(0) : Acc(c[i * N + j])) + T(sum);
    }
}

namespace detail {

// ---------------------------------------------------------------------------
// Eigen's kernel with caller-owned packing buffers (the path without xsimd).

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

// C += op(A) op(B) with Eigen (C already scaled by beta).
template <class T>
void eigen_gemm_accumulate(bool transpose_a, bool transpose_b, index M, index N, index K, const T* a, const T* b,
                           T* c, GemmScratch<T>& scratch) {
  if (!in_parallel_region() && Eigen::nbThreads() > 1) {  // let Eigen thread the product
    using RowMajorMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
    using ConstRowMajorMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
    RowMajorMap result(c, M, N);
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
  if (!transpose_b && !transpose_a) column_major_gemm<T, col, col>(M, N, K, b, lhs_stride, a, rhs_stride, c, scratch);
  else if (!transpose_b) column_major_gemm<T, col, row>(M, N, K, b, lhs_stride, a, rhs_stride, c, scratch);
  else if (!transpose_a) column_major_gemm<T, row, col>(M, N, K, b, lhs_stride, a, rhs_stride, c, scratch);
  else column_major_gemm<T, row, row>(M, N, K, b, lhs_stride, a, rhs_stride, c, scratch);
}

#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
// ---------------------------------------------------------------------------
// The packed, register-blocked GEMM (header comment).

// A strided view of op(X): element (row, col) of the logical matrix.
template <class T>
struct OperandView {
  const T* data;
  index row_stride, col_stride;  // (1, ld) when stored transposed, (ld, 1) otherwise
  const T& operator()(index row, index col) const { return data[row * row_stride + col * col_stride]; }
};

template <class T>
struct GemmShape {
  using Register = xsimd::batch<T>;
  static constexpr index lanes = static_cast<index>(Register::size);
#if defined(__AVX512F__)
  static constexpr index mr = 12;  // 32 vector registers: 24 accumulators
#else
  static constexpr index mr = 6;   // 16 vector registers: 12 accumulators
#endif
  static constexpr index nr_registers = 2;
  static constexpr index nr = nr_registers * lanes;
  static constexpr index kc = 512;      // a B panel (KC x NR) streams through L1
  static constexpr index mc = mr * 16;  // an A block (MC x KC) stays in L2
  static constexpr index nc = nr * 256; // a B block (KC x NC) stays in L3
};

// Packs rows [0, rows) x depths [0, depth) of op(A) into MR-row panels:
// panel p holds, for each depth k, the MR values op(A)(p MR + i, k); rows
// past the end are zero.
template <class T>
void pack_lhs(const OperandView<T>& a, index rows, index depth, T* packed) {
  constexpr index mr = GemmShape<T>::mr;
  for (index p0 = 0; p0 < rows; p0 += mr) {
    const index height = std::min(mr, rows - p0);
    if (a.row_stride == 1) {  // each depth's MR values are contiguous in memory
      for (index k = 0; k < depth; ++k) {
        const T* from = &a(p0, k);
        for (index i = 0; i < height; ++i) packed[k * mr + i] = from[i];
        for (index i = height; i < mr; ++i) packed[k * mr + i] = T(0);
      }
    } else {  // each row's depths are contiguous: read MR rows side by side
      const T* from[mr];
      for (index i = 0; i < mr; ++i) from[i] = &a(p0 + std::min(i, height - 1), 0);
      if (height == mr) {
        for (index k = 0; k < depth; ++k)
#pragma GCC unroll 16
          for (index i = 0; i < mr; ++i) packed[k * mr + i] = from[i][k];
      } else {
        for (index k = 0; k < depth; ++k)
          for (index i = 0; i < mr; ++i) packed[k * mr + i] = i < height ? from[i][k] : T(0);
      }
    }
    packed += mr * depth;
  }
}

// Packs depths [0, depth) x columns [0, cols) of op(B) into NR-column
// panels: panel p holds, for each depth k, op(B)(k, p NR + j); columns past
// the end are zero.
template <class T>
void pack_rhs(const OperandView<T>& b, index depth, index cols, T* packed) {
  constexpr index nr = GemmShape<T>::nr;  // also the width of every right-hand packer's panels
  for (index p0 = 0; p0 < cols; p0 += nr) {
    const index width = std::min(nr, cols - p0);
    if (b.col_stride == 1) {
      for (index k = 0; k < depth; ++k) {
        const T* from = &b(k, p0);
        T* to = packed + k * nr;
        std::copy(from, from + width, to);
        std::fill(to + width, to + nr, T(0));
      }
    } else {  // each column's depths are contiguous: read NR columns side by side
      const T* from[nr];
      for (index j = 0; j < nr; ++j) from[j] = &b(0, p0 + std::min(j, width - 1));
      if (width == nr) {
        index k = 0;
#if defined(__AVX512F__)
        if constexpr (std::is_same_v<T, float> && nr % 16 == 0) {
          for (; k + 16 <= depth; k += 16)  // 16 columns' runs of 16 depths at a time, transposed in registers
            for (index j0 = 0; j0 < nr; j0 += 16) {
              __m512 r[16];
              for (index j = 0; j < 16; ++j) r[j] = _mm512_loadu_ps(from[j0 + j] + k);
              simd_transpose16(r);
              for (index q = 0; q < 16; ++q) _mm512_storeu_ps(packed + (k + q) * nr + j0, r[q]);
            }
        }
#endif
        for (; k < depth; ++k)
#pragma GCC unroll 32
          for (index j = 0; j < nr; ++j) packed[k * nr + j] = from[j][k];
      } else {
        for (index k = 0; k < depth; ++k)
          for (index j = 0; j < nr; ++j) packed[k * nr + j] = j < width ? from[j][k] : T(0);
      }
    }
    packed += nr * depth;
  }
}

// The first Rows rows and Registers L columns of a tile (leading dimension
// ldc) = or += A_panel B_panel over `depth` (the panels' other rows and
// columns are not read).
template <class T, index Rows, index Registers>
void micro_kernel(index depth, const T* a_panel, const T* b_panel, T* tile, index ldc, bool accumulate) {
  using Shape = GemmShape<T>;
  using R = typename Shape::Register;
  constexpr index mr = Shape::mr, nv = Registers, lanes = Shape::lanes;
  R sum[Rows][nv];
#pragma GCC unroll 16
  for (index i = 0; i < Rows; ++i)
#pragma GCC unroll 4
    for (index v = 0; v < nv; ++v) sum[i][v] = R(T(0));
#pragma GCC unroll 2
  for (index k = 0; k < depth; ++k) {
    R b_row[nv];
#pragma GCC unroll 4
    for (index v = 0; v < nv; ++v) b_row[v] = R::load_unaligned(b_panel + v * lanes);
#pragma GCC unroll 16
    for (index i = 0; i < Rows; ++i) {
      const R a_value(a_panel[i]);
#pragma GCC unroll 4
      for (index v = 0; v < nv; ++v) sum[i][v] = simd_fma(a_value, b_row[v], sum[i][v]);
    }
    a_panel += mr;
    b_panel += Shape::nr;
  }
#pragma GCC unroll 16
  for (index i = 0; i < Rows; ++i)
#pragma GCC unroll 4
    for (index v = 0; v < nv; ++v) {
      T* to = tile + i * ldc + v * lanes;
      const R value = accumulate ? sum[i][v] + R::load_unaligned(to) : sum[i][v];
      value.store_unaligned(to);
    }
}

// micro_kernel for a run-time row count 1 <= rows <= MR.
template <class T, index Registers, index Rows = GemmShape<T>::mr>
void micro_kernel_rows(index rows, index depth, const T* a_panel, const T* b_panel, T* tile, index ldc,
                       bool accumulate) {
  if constexpr (Rows > 1) {
    if (rows < Rows) {
      micro_kernel_rows<T, Registers, Rows - 1>(rows, depth, a_panel, b_panel, tile, ldc, accumulate);
      return;
    }
  }
  micro_kernel<T, Rows, Registers>(depth, a_panel, b_panel, tile, ldc, accumulate);
}

// Depth of the depth blocks of a K-deep product: equal blocks (no short
// last one), at most KC deep.
template <class T>
index depth_block(index K) {
  const index blocks = (K + GemmShape<T>::kc - 1) / GemmShape<T>::kc;
  return (K + blocks - 1) / blocks;
}

// C (M x N, leading dimension ldc) = or += op(A) op(B) on the calling thread.
// lhs_block(i0, k0, rows, depth) returns the packed block of op(A) rows
// [i0, i0 + rows) and depths [k0, k0 + depth) (pack_lhs's layout);
// rhs_pack(k0, j0, depth, cols, nr, packed) writes op(B)'s depths
// [k0, k0 + depth) x columns [j0, j0 + cols) in pack_rhs's layout.
template <class T, class LhsBlock, class RhsPack>
void packed_gemm(LhsBlock&& lhs_block, RhsPack&& rhs_pack, index M, index N, index K, T* c, index ldc,
                 bool accumulate, T* rhs_buffer) {
  using Shape = GemmShape<T>;
  constexpr index mr = Shape::mr, nr = Shape::nr;
  const index kc = depth_block<T>(K);
  alignas(64) T edge[mr * nr];
  for (index j0 = 0; j0 < N; j0 += Shape::nc) {
    const index cols = std::min(Shape::nc, N - j0);
    for (index k0 = 0; k0 < K; k0 += kc) {
      const index depth = std::min(kc, K - k0);
      const bool add = accumulate || k0 > 0;
      rhs_pack(k0, j0, depth, cols, nr, rhs_buffer);
      for (index i0 = 0; i0 < M; i0 += Shape::mc) {
        const index rows = std::min(Shape::mc, M - i0);
        const T* lhs_buffer = lhs_block(i0, k0, rows, depth);
        for (index jt = 0; jt < cols; jt += nr) {
          const T* b_panel = rhs_buffer + jt * depth;
          const index width = std::min(nr, cols - jt);
          for (index it = 0; it < rows; it += mr) {
            const T* a_panel = lhs_buffer + it * depth;
            const index height = std::min(mr, rows - it);
            T* tile = c + (i0 + it) * ldc + j0 + jt;
            constexpr index all = Shape::nr_registers, lanes = Shape::lanes;
            if (width == nr) {
              micro_kernel_rows<T, all>(height, depth, a_panel, b_panel, tile, ldc, add);
            } else if (width == lanes) {
              micro_kernel_rows<T, 1>(height, depth, a_panel, b_panel, tile, ldc, add);
            } else {  // a partial tile: compute it in `edge` (one register wide if that
                      // covers it), then write the valid columns
              if (width < lanes) micro_kernel_rows<T, 1>(height, depth, a_panel, b_panel, edge, nr, false);
              else micro_kernel_rows<T, all>(height, depth, a_panel, b_panel, edge, nr, false);
              for (index i = 0; i < height; ++i)
                for (index j = 0; j < width; ++j)
                  tile[i * ldc + j] = add ? tile[i * ldc + j] + edge[i * nr + j] : edge[i * nr + j];
            }
          }
        }
      }
    }
  }
}

// Buffer sizes packed_gemm needs for an M x N x K product.
template <class T>
index packed_lhs_size(index M, index K) {
  using Shape = GemmShape<T>;
  const index rows = std::min(Shape::mc, (M + Shape::mr - 1) / Shape::mr * Shape::mr);
  return rows * std::min(Shape::kc, K);
}
template <class T>
index packed_rhs_size(index N, index K) {
  using Shape = GemmShape<T>;
  const index cols = std::min(Shape::nc, (N + Shape::nr - 1) / Shape::nr * Shape::nr);
  return cols * std::min(Shape::kc, K);
}
#endif  // NSL_HAVE_XSIMD
}  // namespace detail

/// The register tile of nsl::gemm's micro-kernel in this build, rows x
/// columns of C (6 x 16 floats with AVX2, 12 x 32 with AVX-512); {0, 0}
/// without xsimd, where Eigen's kernel runs. For tools that report the
/// path a build takes.
template <class T>
constexpr std::pair<index, index> gemm_register_tile() {
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
  return {detail::GemmShape<T>::mr, detail::GemmShape<T>::nr};
#else
  return {0, 0};
#endif
}

/// op(A) packed once for several products op(A) op(B_n) with the same left
/// operand (a convolution's weights, over the images of a batch). It holds a
/// copy: A may change or go after `pack`. Grows only, like GemmScratch.
template <class T>
class PackedLhs {
 public:
  void pack(bool transpose_a, index M, index K, const T* a) {
    require(M >= 0 && K >= 0, ErrorKind::argument, "PackedLhs::pack: negative size ", M, " x ", K);
    rows_ = M;
    depth_ = K;
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
    // Block (i0, k0) of pack_lhs's layout starts at k0 Mp + i0 depth, Mp = M rounded up to MR.
    using Shape = detail::GemmShape<T>;
    const index padded = (M + Shape::mr - 1) / Shape::mr * Shape::mr;
    padded_rows_ = padded;
    if (buffer_.size() < padded * K) buffer_.resize(padded * K);
    if (M == 0 || K == 0) return;
    const detail::OperandView<T> op_a{a, transpose_a ? 1 : K, transpose_a ? M : 1};
    const index kc = detail::depth_block<T>(K);
    for (index k0 = 0; k0 < K; k0 += kc) {
      const index depth = std::min(kc, K - k0);
      for (index i0 = 0; i0 < M; i0 += Shape::mc)
        detail::pack_lhs(detail::OperandView<T>{&op_a(i0, k0), op_a.row_stride, op_a.col_stride},
                         std::min(Shape::mc, M - i0), depth, buffer_.data() + k0 * padded + i0 * depth);
    }
#else
    // Without xsimd: op(A) as a row-major M x K copy for Eigen's kernel.
    if (buffer_.size() < M * K) buffer_.resize(M * K);
    for (index i = 0; i < M; ++i)
      for (index k = 0; k < K; ++k) buffer_[i * K + k] = transpose_a ? a[k * M + i] : a[i * K + k];
#endif
  }
  index rows() const { return rows_; }
  index depth() const { return depth_; }
  const T* data() const { return buffer_.data(); }
  /// The packed block of rows [i0, ...) and depths [k0, k0 + block depth).
  const T* block(index i0, index k0, index block_depth) const {
    return buffer_.data() + k0 * padded_rows_ + i0 * block_depth;
  }

 private:
  Eigen::Matrix<T, Eigen::Dynamic, 1> buffer_;
  index rows_ = 0, depth_ = 0, padded_rows_ = 0;
};

namespace detail {
// The multiply-adds a GEMM gives each thread at least (drive_gemm).
constexpr index min_gemm_work = index(1) << 18;
}  // namespace detail

#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
namespace detail {
// Runs packed_gemm for C = beta C + op(A) op(B) with op(A)'s blocks from
// lhs_for(rows_begin, scratch_lhs) (a LhsBlock for the rows from
// rows_begin) and op(B)'s from rhs_pack (absolute coordinates): on the
// calling thread, or in slabs of C over threads outside a parallel region:
// columns when N >= M, or when A is packed already and the columns are
// enough to give each thread two panels; rows otherwise (each slab then
// packs its own copy of op(B)'s panels, which a short N makes cheap: a 7 x 7
// image's 49 pixels are two panels, one thread's work if split by columns).
template <class T, class LhsFor, class RhsPack>
void drive_gemm(index M, index N, index K, LhsFor&& lhs_for, bool lhs_prepacked, RhsPack&& rhs_pack, T beta, T* c,
                GemmScratch<T>& scratch) {
  using Shape = GemmShape<T>;
  const bool accumulate = beta != T(0);
  const index column_panels = (N + Shape::nr - 1) / Shape::nr;
  const bool split_columns =
      N >= M || (lhs_prepacked && (in_parallel_region() || column_panels >= 2 * index(num_threads())));
  // Each thread gets at least two panels (fewer threads for a small C), and
  // the slabs are cut as evenly as the layout allows: columns in steps of one
  // register (a slab may end in a half panel, which the one-register kernel
  // takes), rows in steps of 4 (of MR when A is packed already: a packed
  // block starts at a panel).
  const index extent = split_columns ? N : M, panel = split_columns ? Shape::nr : Shape::mr;
  const index unit = split_columns ? Shape::lanes : lhs_prepacked ? Shape::mr : index(4);
  const index units = (extent + unit - 1) / unit;
  // ... and at least min_gemm_work multiply-adds: below that, starting a
  // thread costs more than it saves (a first layer's 32 x 784 x 9 product at
  // batch 1 took 6-9 us on one thread, 18-22 us on two).
  const index work_threads = std::max<index>(1, M * N * K / min_gemm_work);
  const int threads = in_parallel_region()
                          ? 1
                          : static_cast<int>(std::min<index>({index(num_threads()), work_threads,
                                                              std::max<index>(1, extent / (2 * panel))}));
  const index slab = (units + threads - 1) / threads * unit;
  const index lhs_size = lhs_prepacked ? 0 : packed_lhs_size<T>(split_columns ? M : slab, K);
  const index rhs_size = packed_rhs_size<T>(split_columns ? slab : N, K);
  scratch.reserve_workers(threads);
  for (int t = 0; t < threads; ++t) {  // grow the buffers before any thread starts
    scratch.lhs(lhs_size, t);
    scratch.rhs(rhs_size, t);
  }
  const auto run_slab = [&](int t) {
    const index begin = std::min(extent, t * slab), end = std::min(extent, (t + 1) * slab);
    if (begin >= end) return;
    T* lhs = scratch.lhs(lhs_size, t);
    T* rhs = scratch.rhs(rhs_size, t);
    if (split_columns) {
      const auto shifted = [&](index k0, index j0, index depth, index cols, index nr, T* packed) {
        rhs_pack(k0, begin + j0, depth, cols, nr, packed);
      };
      packed_gemm<T>(lhs_for(index(0), lhs), shifted, M, end - begin, K, c + begin, N, accumulate, rhs);
    } else {
      packed_gemm<T>(lhs_for(begin, lhs), rhs_pack, end - begin, N, K, c + begin * N, N, accumulate, rhs);
    }
  };
  if (threads <= 1) {
    run_slab(0);
    return;
  }
NSL_OMP(parallel for num_threads(threads) schedule(static))
  for (int t = 0; t < threads; ++t) run_slab(t);
}

// A LhsBlock factory packing op(A) (rows from rows_begin) as it goes.
template <class T>
auto pack_lhs_as_needed(const OperandView<T>& a) {
  return [a](index rows_begin, T* buffer) {
    return [a, rows_begin, buffer](index i0, index k0, index rows, index depth) -> const T* {
      pack_lhs(OperandView<T>{&a(rows_begin + i0, k0), a.row_stride, a.col_stride}, rows, depth, buffer);
      return buffer;
    };
  };
}

// A RhsPack reading a strided op(B).
template <class T>
auto pack_rhs_from(const OperandView<T>& b) {
  return [b](index k0, index j0, index depth, index cols, index, T* packed) {
    pack_rhs(OperandView<T>{&b(k0, j0), b.row_stride, b.col_stride}, depth, cols, packed);
  };
}
}  // namespace detail
#endif  // NSL_HAVE_XSIMD

/// The panel width a right-hand packer (gemm_with_rhs) writes.
template <class T>
constexpr index gemm_panel_width() {
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
  return detail::GemmShape<T>::nr;
#else
  return 0;  // the packer is asked for one panel as wide as the matrix
#endif
}

/// C = beta C + op(A) op(B) where op(B) (K x N) is never stored: the caller's
/// pack(k0, j0, depth, cols, nr, packed) writes op(B)'s depths [k0, k0 +
/// depth) x columns [j0, j0 + cols) into `packed` in panels nr columns wide:
/// element (k0 + k, j0 + j) at packed[(j / nr) nr depth + k nr + j % nr],
/// zero for the columns of the last panel past `cols`. (Without xsimd, nr =
/// cols: op(B) row-major.) `a` is a PackedLhs or (transpose_a, A) as in gemm.
template <class T, class RhsPacker>
void gemm_with_rhs(const PackedLhs<T>& a, index N, RhsPacker&& pack, T beta, T* c, GemmScratch<T>& scratch);
template <class T, class RhsPacker>
void gemm_with_rhs(bool transpose_a, index M, index N, index K, const T* a, RhsPacker&& pack, T beta, T* c,
                   GemmScratch<T>& scratch);

namespace detail {
inline void check_gemm_arguments(index M, index N, index K, double beta) {
  require(beta == 0 || beta == 1, ErrorKind::argument, "gemm: beta must be 0 or 1, got ", beta);
  require(M >= 0 && N >= 0 && K >= 0, ErrorKind::argument, "gemm: negative size ", M, " x ", N, " x ", K);
}
// Handles the empty products; true when nothing is left to do.
template <class T>
bool trivial_gemm(index M, index N, index K, T beta, T* c) {
  if (M == 0 || N == 0) return true;
  if (K == 0) {
    if (beta == T(0)) std::fill(c, c + M * N, T(0));
    return true;
  }
  return false;
}
#if !(defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD)
// Without xsimd: the packer writes op(B) whole (row-major) into scratch.
template <class T, class RhsPacker>
const T* materialise_rhs(index N, index K, RhsPacker& pack, GemmScratch<T>& scratch) {
  T* b = scratch.rhs(K * N, 1);
  pack(index(0), index(0), K, N, N, b);
  return b;
}
#endif
}  // namespace detail

template <class T, class RhsPacker>
void gemm_with_rhs(const PackedLhs<T>& a, index N, RhsPacker&& pack, T beta, T* c, GemmScratch<T>& scratch) {
  const index M = a.rows(), K = a.depth();
  detail::check_gemm_arguments(M, N, K, double(beta));
  if (detail::trivial_gemm(M, N, K, beta, c)) return;
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
  const auto prepacked = [&a](index rows_begin, T*) {
    return [&a, rows_begin](index i0, index k0, index, index depth) { return a.block(rows_begin + i0, k0, depth); };
  };
  detail::drive_gemm<T>(M, N, K, prepacked, true, pack, beta, c, scratch);
#else
  const T* b = detail::materialise_rhs<T>(N, K, pack, scratch);
  if (beta == T(0)) std::fill(c, c + M * N, T(0));
  detail::eigen_gemm_accumulate(false, false, M, N, K, a.data(), b, c, scratch);
#endif
}

template <class T, class RhsPacker>
void gemm_with_rhs(bool transpose_a, index M, index N, index K, const T* a, RhsPacker&& pack, T beta, T* c,
                   GemmScratch<T>& scratch) {
  detail::check_gemm_arguments(M, N, K, double(beta));
  if (detail::trivial_gemm(M, N, K, beta, c)) return;
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
  const detail::OperandView<T> op_a{a, transpose_a ? 1 : K, transpose_a ? M : 1};
  detail::drive_gemm<T>(M, N, K, detail::pack_lhs_as_needed(op_a), false, pack, beta, c, scratch);
#else
  const T* b = detail::materialise_rhs<T>(N, K, pack, scratch);
  if (beta == T(0)) std::fill(c, c + M * N, T(0));
  detail::eigen_gemm_accumulate(transpose_a, false, M, N, K, a, b, c, scratch);
#endif
}

/// C = beta C + op(A) op(B) with op(A) packed in `a` (M = a.rows(), K = a.depth()).
template <class T>
void gemm(const PackedLhs<T>& a, bool transpose_b, index N, const T* b, T beta, T* c, GemmScratch<T>& scratch) {
  const index M = a.rows(), K = a.depth();
  detail::check_gemm_arguments(M, N, K, double(beta));
  if (detail::trivial_gemm(M, N, K, beta, c)) return;
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
  const detail::OperandView<T> op_b{b, transpose_b ? 1 : N, transpose_b ? K : 1};
  gemm_with_rhs(a, N, detail::pack_rhs_from(op_b), beta, c, scratch);
#else
  if (beta == T(0)) std::fill(c, c + M * N, T(0));
  detail::eigen_gemm_accumulate(false, transpose_b, M, N, K, a.data(), b, c, scratch);
#endif
}

/// C = beta C + op(A) op(B) (see the header comment); beta must be 0 or 1.
template <class T>
void gemm(bool transpose_a, bool transpose_b, index M, index N, index K, const T* a, const T* b, T beta, T* c,
          GemmScratch<T>& scratch) {
  detail::check_gemm_arguments(M, N, K, double(beta));
  if (detail::trivial_gemm(M, N, K, beta, c)) return;
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
  const detail::OperandView<T> op_b{b, transpose_b ? 1 : N, transpose_b ? K : 1};
  gemm_with_rhs(transpose_a, M, N, K, a, detail::pack_rhs_from(op_b), beta, c, scratch);
#else
  if (beta == T(0)) std::fill(c, c + M * N, T(0));
  detail::eigen_gemm_accumulate(transpose_a, transpose_b, M, N, K, a, b, c, scratch);
#endif
}

}  // namespace nsl
