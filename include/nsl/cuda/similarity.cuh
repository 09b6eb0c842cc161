// nsl/cuda/similarity.cuh — the fold W' = M^T W of nsl/similarity/bilinear.hpp
// and its backward on the GPU: the same names, shape checks and contract.
//
// With w_o the o-th filter as a vector of C channels x K slots, entry (i, a)
// at i K + a, and M the (C K) x (C K) matrix its structure stands for:
//
//     fold_weights:           w'_o = M^T w_o                       (assigned)
//     fold_weights_backward:  dw_o += M dw'_o,
//                             dM   += sum_o w_o dw'_o^T restricted to the structure
//
// One thread per output element, each summing its terms in a fixed order:
// deterministic, no atomics. The structured M is read as stored (diagonal m_r,
// shared block M[a][r], blocks M_i[a][r], or the full matrix).
#pragma once

#include "nsl/cuda/tensor.cuh"
#include "nsl/similarity/bilinear.hpp"

namespace nsl {

namespace cuda::detail {

// folded[o, (j, r)] = sum_{(i, a)} M[(i, a), (j, r)] w[o, (i, a)]
template <class T>
__global__ void fold_weights_kernel(Structure s, const T* m, const T* w, index filters, index channels, index slots,
                                    T* folded) {
  const index K = slots, CK = channels * slots;
  NSL_CUDA_FOR(e, filters * CK) {
    const index o = e / CK, q = e % CK, j = q / K, r = q % K;
    const T* w_oj = w + o * CK + j * K;  // filter o, channel j
    T sum = 0;
    switch (s) {
      case Structure::identity: sum = w[e]; break;
      case Structure::diagonal: sum = m[r] * w[e]; break;
      case Structure::channel_shared:
        for (index a = 0; a < K; ++a) sum += m[a * K + r] * w_oj[a];
        break;
      case Structure::block_diagonal:
        for (index a = 0; a < K; ++a) sum += m[(j * K + a) * K + r] * w_oj[a];
        break;
      case Structure::full:
        for (index p = 0; p < CK; ++p) sum += m[p * CK + q] * w[o * CK + p];
        break;
    }
    folded[e] = sum;
  }
}

// dw[o, (i, a)] += sum_{(j, r)} M[(i, a), (j, r)] dfolded[o, (j, r)]
template <class T>
__global__ void unfold_gradient_kernel(Structure s, const T* m, const T* dfolded, index filters, index channels,
                                       index slots, T* dw) {
  const index K = slots, CK = channels * slots;
  NSL_CUDA_FOR(e, filters * CK) {
    const index o = e / CK, p = e % CK, i = p / K, a = p % K;
    const T* d_oi = dfolded + o * CK + i * K;  // filter o, channel i
    T sum = 0;
    switch (s) {
      case Structure::identity: sum = dfolded[e]; break;
      case Structure::diagonal: sum = m[a] * dfolded[e]; break;
      case Structure::channel_shared:
        for (index r = 0; r < K; ++r) sum += m[a * K + r] * d_oi[r];
        break;
      case Structure::block_diagonal:
        for (index r = 0; r < K; ++r) sum += m[(i * K + a) * K + r] * d_oi[r];
        break;
      case Structure::full:
        for (index q = 0; q < CK; ++q) sum += m[p * CK + q] * dfolded[o * CK + q];
        break;
    }
    dw[e] += sum;
  }
}

// dM += sum_o w_o dw'_o^T restricted to the structure, one stored entry per thread:
//   diagonal        dm[r]          += sum_{o, i} w[o, (i, r)] dw'[o, (i, r)]
//   channel_shared  dm[a, r]       += sum_{o, i} w[o, (i, a)] dw'[o, (i, r)]
//   block_diagonal  dm[i, a, r]    += sum_o      w[o, (i, a)] dw'[o, (i, r)]
//   full            dm[p, q]       += sum_o      w[o, p]      dw'[o, q]
// (identity stores nothing).
template <class T>
__global__ void similarity_gradient_kernel(Structure s, const T* w, const T* dfolded, index filters,
                                           index channels, index slots, index total, T* dm) {
  const index K = slots, CK = channels * slots;
  NSL_CUDA_FOR(e, total) {
    T sum = 0;
    switch (s) {
      case Structure::identity: break;
      case Structure::diagonal:
        for (index o = 0; o < filters; ++o)
          for (index i = 0; i < channels; ++i) sum += w[o * CK + i * K + e] * dfolded[o * CK + i * K + e];
        break;
      case Structure::channel_shared: {
        const index a = e / K, r = e % K;
        for (index o = 0; o < filters; ++o)
          for (index i = 0; i < channels; ++i) sum += w[o * CK + i * K + a] * dfolded[o * CK + i * K + r];
        break;
      }
      case Structure::block_diagonal: {
        const index i = e / (K * K), a = (e / K) % K, r = e % K;
        for (index o = 0; o < filters; ++o) sum += w[o * CK + i * K + a] * dfolded[o * CK + i * K + r];
        break;
      }
      case Structure::full: {
        const index p = e / CK, q = e % CK;
        for (index o = 0; o < filters; ++o) sum += w[o * CK + p] * dfolded[o * CK + q];
        break;
      }
    }
    dm[e] += sum;
  }
}

}  // namespace cuda::detail

/// W' = the filters with M folded in: w'_o = M^T w_o (assigned), on the device.
template <class T>
void fold_weights(Structure s, TensorView<const T, Cuda> m, TensorView<const T, Cuda> w,
                  TensorView<T, Cuda> folded) {
  check_fold("fold_weights", s, m.shape(), w.shape());
  check_shape("fold_weights", "folded weight", folded.shape(), w.shape());
  if (folded.size() == 0) return;
  const index O = w.dim(0), C = w.dim(1), K = w.dim(2) * w.dim(3);
  cuda::detail::fold_weights_kernel<T><<<cuda::detail::grid_size(folded.size()), cuda::detail::block_size>>>(
      s, m.data(), w.data(), O, C, K, folded.data());
  cuda::check_launch("fold_weights");
}

/// Backward through the fold, on the device: dW += dW' M^T row-wise
/// (dw_o = M dw'_o) and dM += sum_o w_o dw'_o^T restricted to the structure.
/// Both accumulated; dm is empty for the identity.
template <class T>
void fold_weights_backward(Structure s, TensorView<const T, Cuda> m, TensorView<const T, Cuda> w,
                           TensorView<const T, Cuda> dfolded, TensorView<T, Cuda> dw, TensorView<T, Cuda> dm) {
  check_fold("fold_weights_backward", s, m.shape(), w.shape());
  check_shape("fold_weights_backward", "folded weight gradient", dfolded.shape(), w.shape());
  check_shape("fold_weights_backward", "weight gradient", dw.shape(), w.shape());
  check_shape("fold_weights_backward", "M gradient", dm.shape(), m.shape());
  const index O = w.dim(0), C = w.dim(1), K = w.dim(2) * w.dim(3);
  if (dw.size()) {
    cuda::detail::unfold_gradient_kernel<T><<<cuda::detail::grid_size(dw.size()), cuda::detail::block_size>>>(
        s, m.data(), dfolded.data(), O, C, K, dw.data());
    cuda::check_launch("fold_weights_backward: weight gradient");
  }
  if (dm.size()) {
    cuda::detail::similarity_gradient_kernel<T><<<cuda::detail::grid_size(dm.size()), cuda::detail::block_size>>>(
        s, w.data(), dfolded.data(), O, C, K, dm.size(), dm.data());
    cuda::check_launch("fold_weights_backward: M gradient");
  }
}

}  // namespace nsl
