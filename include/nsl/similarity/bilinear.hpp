// nsl/similarity/bilinear.hpp — the bilinear similarity f_M(w, x) = w^T M x
// for every structure of M, with its gradients, and the fold W' = M^T W
// that turns a static similarity into a plain convolution.
//
// Vectors w and x hold C channels of K kernel slots, channel-major:
// entry (i, r) sits at i*K + r, the row order of the im2col matrix. The
// matrix M over the whole patch is (CK) x (CK); the structures constrain it
// (NSL.md §1), index convention M[a][r] with a the weight slot and r the
// input slot:
//
//   structure        stored as       M over the patch
//   identity         nothing         I
//   diagonal (DNS)   m: [K]          diag(m) on every channel
//   channel_shared   M: [K, K]       the same K x K block on every channel (UNS)
//   block_diagonal   M: [C, K, K]    block M_i on channel i
//   full             M: [CK, CK]     any matrix
//
// Gradients of f = w^T M x = sum_{(i,a),(j,r)} w_{i,a} M[(i,a),(j,r)] x_{j,r}:
//
//   df/dw = M x              (entry (i,a): sum_{(j,r)} M[(i,a),(j,r)] x_{j,r})
//   df/dx = M^T w
//   df/dM[(i,a),(j,r)] = w_{i,a} x_{j,r}    (full: the outer product w x^T)
//
// A structured M ties entries of the full matrix together; the gradient of
// a tied parameter is the sum of the full-matrix gradient over its copies:
//
//   block_diagonal: dM_i[a][r] = w_{i,a} x_{i,r}            (the diagonal blocks of w x^T)
//   channel_shared: dM[a][r]   = sum_i w_{i,a} x_{i,r}      (the blocks, summed)
//   diagonal:       dm_r       = sum_i w_{i,r} x_{i,r}      (their diagonals, summed)
//
// The fold: since w^T M x = (M^T w)^T x, a layer that scores every patch
// with the same M equals a convolution with folded filters w' = M^T w.
// Backward through the fold, given dw' = dL/dw' for every filter o:
//
//   dw_o = M dw'_o                         (w'_o = M^T w_o is linear in w_o)
//   dM   = sum_o w_o dw'_o^T               (restricted to the structure as above)
//
// docs/static_nsl.md derives these in full. `*_reference` functions build
// the dense (CK) x (CK) matrix and apply the formulas literally; the others
// use the structure. Tests compare the two.
#pragma once

#include <algorithm>
#include <string>

#include "nsl/core/gemm.hpp"
#include "nsl/core/tensor.hpp"

namespace nsl {

/// The structure of the similarity matrix M.
enum class Structure { identity, diagonal, channel_shared, block_diagonal, full };

inline const char* to_string(Structure s) {
  switch (s) {
    case Structure::identity: return "identity";
    case Structure::diagonal: return "diagonal";
    case Structure::channel_shared: return "channel_shared";
    case Structure::block_diagonal: return "block_diagonal";
    case Structure::full: return "full";
  }
  return "?";
}

/// Parses "identity", "diagonal" (or "dns"), "channel_shared" (or "uns"),
/// "block_diagonal", "full".
inline Structure parse_structure(const std::string& name) {
  if (name == "identity") return Structure::identity;
  if (name == "diagonal" || name == "dns") return Structure::diagonal;
  if (name == "channel_shared" || name == "uns") return Structure::channel_shared;
  if (name == "block_diagonal") return Structure::block_diagonal;
  if (name == "full") return Structure::full;
  fail(ErrorKind::argument, cat("parse_structure: unknown structure '", name,
                                "' (expected identity, diagonal, channel_shared, block_diagonal or full)"));
}

/// Shape of the stored M for C channels of K slots (identity: [0], nothing stored).
inline Shape similarity_shape(Structure s, index channels, index slots) {
  switch (s) {
    case Structure::identity: return Shape{0};
    case Structure::diagonal: return Shape{slots};
    case Structure::channel_shared: return Shape{slots, slots};
    case Structure::block_diagonal: return Shape{channels, slots, slots};
    case Structure::full: return Shape{channels * slots, channels * slots};
  }
  return Shape{0};
}

/// The stored M that represents the identity matrix (m = 1, blocks = I).
template <class T>
Tensor<T> identity_similarity(Structure s, index channels, index slots) {
  Tensor<T> m(similarity_shape(s, channels, slots));
  switch (s) {
    case Structure::identity: break;
    case Structure::diagonal: m.fill(T(1)); break;
    case Structure::channel_shared:
    case Structure::full: m.matrix(m.dim(0), m.dim(1)).setIdentity(); break;
    case Structure::block_diagonal:
      for (index i = 0; i < channels; ++i)
        for (index r = 0; r < slots; ++r) m[(i * slots + r) * slots + r] = T(1);
      break;
  }
  return m;
}

/// Fails unless M has the shape its structure needs for C channels of K slots.
inline void check_similarity(const char* op, Structure s, const Shape& m, index channels, index slots) {
  require(channels >= 1 && slots >= 1, ErrorKind::argument, op,
          ": channels and slots must be >= 1, got ", channels, " and ", slots);
  const Shape expected = similarity_shape(s, channels, slots);
  require(m == expected, ErrorKind::shape, op, ": M (", to_string(s), "): expected ", expected, ", got ", m);
}

// ---------------------------------------------------------------------------
// Reference: the dense matrix and the formulas as they read.

/// The (CK) x (CK) matrix that a stored M stands for.
template <class T>
Matrix<T> expand_similarity(Structure s, TensorView<const T> m, index channels, index slots) {
  check_similarity("expand_similarity", s, m.shape(), channels, slots);
  const index CK = channels * slots;
  Matrix<T> full = Matrix<T>::Zero(CK, CK);
  for (index i = 0; i < channels; ++i)
    for (index a = 0; a < slots; ++a)
      for (index r = 0; r < slots; ++r) {
        T value = a == r ? T(1) : T(0);
        if (s == Structure::diagonal) value = a == r ? m[r] : T(0);
        if (s == Structure::channel_shared) value = m(a, r);
        if (s == Structure::block_diagonal) value = m[(i * slots + a) * slots + r];
        full(i * slots + a, i * slots + r) = value;
      }
  if (s == Structure::full) full = m.matrix(CK, CK);
  return full;
}

/// Sums a full-matrix gradient over the entries each stored parameter is tied
/// to, and ADDS the result into dm (the adjoint of expand_similarity).
template <class T>
void reduce_similarity_gradient(Structure s, const Matrix<T>& full_gradient, index channels,
                                index slots, TensorView<T> dm) {
  check_similarity("reduce_similarity_gradient", s, dm.shape(), channels, slots);
  if (s == Structure::full) {
    dm.matrix(channels * slots, channels * slots) += full_gradient;
    return;
  }
  for (index i = 0; i < channels; ++i)
    for (index a = 0; a < slots; ++a)
      for (index r = 0; r < slots; ++r) {
        const T g = full_gradient(i * slots + a, i * slots + r);
        if (s == Structure::diagonal && a == r) dm[r] += g;
        if (s == Structure::channel_shared) dm(a, r) += g;
        if (s == Structure::block_diagonal) dm[(i * slots + a) * slots + r] += g;
      }
}

/// w^T M x through the dense matrix.
template <class T>
T bilinear_similarity_reference(Structure s, TensorView<const T> m, TensorView<const T> w,
                                TensorView<const T> x, index channels, index slots) {
  const Matrix<T> full = expand_similarity(s, m, channels, slots);
  T sum = 0;
  for (index p = 0; p < channels * slots; ++p)
    for (index q = 0; q < channels * slots; ++q) sum += w[p] * full(p, q) * x[q];
  return sum;
}

// ---------------------------------------------------------------------------
// Structured implementations.

namespace detail {
inline void check_vectors(const char* op, const Shape& w, const Shape& x, index channels, index slots) {
  check_shape(op, "w", w, Shape{channels * slots});
  check_shape(op, "x", x, Shape{channels * slots});
}

// out = M v (transpose = false) or M^T v (transpose = true) for one patch
// vector v of C x K entries, using the structure.
template <class T>
void apply_similarity(Structure s, TensorView<const T> m, const T* v, index channels, index slots,
                      bool transpose, T* out) {
  const index K = slots, CK = channels * slots;
  using ConstVecMap = Eigen::Map<const Vector<T>>;
  using VecMap = Eigen::Map<Vector<T>>;
  switch (s) {
    case Structure::identity: std::copy(v, v + CK, out); return;
    case Structure::diagonal:
      for (index i = 0; i < channels; ++i)
        for (index r = 0; r < K; ++r) out[i * K + r] = m[r] * v[i * K + r];
      return;
    case Structure::channel_shared: {
      // Rows of the C x K view are the channels: out_i = M v_i, i.e. OUT = V M^T.
      const auto block = m.matrix(K, K);
      Eigen::Map<const Matrix<T>> V(v, channels, K);
      Eigen::Map<Matrix<T>> OUT(out, channels, K);
      if (transpose) OUT.noalias() = V * block;
      else OUT.noalias() = V * block.transpose();
      return;
    }
    case Structure::block_diagonal:
      for (index i = 0; i < channels; ++i) {
        Eigen::Map<const Matrix<T>> block(m.data() + i * K * K, K, K);
        if (transpose) VecMap(out + i * K, K).noalias() = block.transpose() * ConstVecMap(v + i * K, K);
        else VecMap(out + i * K, K).noalias() = block * ConstVecMap(v + i * K, K);
      }
      return;
    case Structure::full: {
      const auto M = m.matrix(CK, CK);
      if (transpose) VecMap(out, CK).noalias() = M.transpose() * ConstVecMap(v, CK);
      else VecMap(out, CK).noalias() = M * ConstVecMap(v, CK);
      return;
    }
  }
}
}  // namespace detail

/// f_M(w, x) = w^T M x for vectors of C channels x K slots.
template <class T>
T bilinear_similarity(Structure s, TensorView<const T> m, TensorView<const T> w, TensorView<const T> x,
                      index channels, index slots) {
  check_similarity("bilinear_similarity", s, m.shape(), channels, slots);
  detail::check_vectors("bilinear_similarity", w.shape(), x.shape(), channels, slots);
  Vector<T> mx(channels * slots);
  detail::apply_similarity(s, m, x.data(), channels, slots, false, mx.data());
  return w.vec().dot(mx);
}

/// Gradients of g * f_M(w, x): dw = g M x and dx = g M^T w (assigned),
/// dM += g * (w x^T restricted to the structure) (accumulated).
template <class T>
void bilinear_similarity_backward(Structure s, TensorView<const T> m, TensorView<const T> w,
                                  TensorView<const T> x, T g, index channels, index slots,
                                  TensorView<T> dw, TensorView<T> dx, TensorView<T> dm) {
  check_similarity("bilinear_similarity_backward", s, m.shape(), channels, slots);
  check_similarity("bilinear_similarity_backward", s, dm.shape(), channels, slots);
  detail::check_vectors("bilinear_similarity_backward", w.shape(), x.shape(), channels, slots);
  detail::check_vectors("bilinear_similarity_backward", dw.shape(), dx.shape(), channels, slots);
  const index K = slots;
  detail::apply_similarity(s, m, x.data(), channels, slots, false, dw.data());
  detail::apply_similarity(s, m, w.data(), channels, slots, true, dx.data());
  dw.vec() *= g;
  dx.vec() *= g;
  switch (s) {
    case Structure::identity: break;
    case Structure::diagonal:
      for (index i = 0; i < channels; ++i)
        for (index r = 0; r < K; ++r) dm[r] += g * w[i * K + r] * x[i * K + r];
      break;
    case Structure::channel_shared:
      dm.matrix(K, K).noalias() += g * w.matrix(channels, K).transpose() * x.matrix(channels, K);
      break;
    case Structure::block_diagonal:
      for (index i = 0; i < channels; ++i)
        for (index a = 0; a < K; ++a)
          for (index r = 0; r < K; ++r) dm[(i * K + a) * K + r] += g * w[i * K + a] * x[i * K + r];
      break;
    case Structure::full:
      dm.matrix(channels * K, channels * K).noalias() += g * w.vec() * x.vec().transpose();
      break;
  }
}

// ---------------------------------------------------------------------------
// The fold: filters W (O x C x k x k) -> W' with w'_o = M^T w_o.

/// Fails unless W is O x C x k x k with k*k = K slots matching M.
inline void check_fold(const char* op, Structure s, const Shape& m, const Shape& w) {
  check_rank(op, "weight", w, 4);
  require(w[2] == w[3], ErrorKind::shape, op, ": weight: expected a square kernel, got ", w);
  check_similarity(op, s, m, w[1], w[2] * w[3]);
}

/// W' = the filters with M folded in: w'_o = M^T w_o for every filter o.
template <class T>
void fold_weights(Structure s, TensorView<const T> m, TensorView<const T> w, TensorView<T> folded) {
  check_fold("fold_weights", s, m.shape(), w.shape());
  check_shape("fold_weights", "folded weight", folded.shape(), w.shape());
  const index O = w.dim(0), C = w.dim(1), K = w.dim(2) * w.dim(3);
  switch (s) {
    case Structure::identity: folded.vec() = w.vec(); return;
    case Structure::diagonal:
      // w'_{o,i,r} = m_r w_{o,i,r}
      folded.matrix(O * C, K) = w.matrix(O * C, K) * m.vec().asDiagonal();
      return;
    case Structure::channel_shared:
      // rows (o, i) of the (OC) x K view: w'^T = w^T M. A K x K right factor is
      // too small for a GEMM: a coefficient-wise product, never multi-threaded
      // (Eigen's threaded GEMM stalls on such thin products).
      folded.matrix(O * C, K).noalias() = w.matrix(O * C, K).lazyProduct(m.matrix(K, K));
      return;
    case Structure::block_diagonal:
      for (index o = 0; o < O; ++o)
        for (index i = 0; i < C; ++i) {
          Eigen::Map<const Matrix<T>> block(m.data() + i * K * K, K, K);
          Eigen::Map<const Vector<T>> w_oi(w.data() + (o * C + i) * K, K);
          Eigen::Map<Vector<T>>(folded.data() + (o * C + i) * K, K).noalias() = block.transpose() * w_oi;
        }
      return;
    case Structure::full:
      folded.matrix(O, C * K).noalias() = w.matrix(O, C * K) * m.matrix(C * K, C * K);
      return;
  }
}

/// The same fold with the full structure's product (W' = W M, O x CK times
/// CK x CK) through nsl::gemm and the caller's packing buffers, so that it
/// allocates nothing once `scratch` has grown (Eigen's product above may
/// allocate its blocking buffers). The other structures are fold_weights
/// itself, which allocates nothing. For const inference (StaticNSConv2d::infer).
template <class T>
void fold_weights(Structure s, TensorView<const T> m, TensorView<const T> w, TensorView<T> folded,
                  GemmScratch<T>& scratch) {
  if (s != Structure::full) {
    fold_weights<T>(s, m, w, folded);
    return;
  }
  check_fold("fold_weights", s, m.shape(), w.shape());
  check_shape("fold_weights", "folded weight", folded.shape(), w.shape());
  const index O = w.dim(0), CK = w.dim(1) * w.dim(2) * w.dim(3);
  gemm<T>(false, false, O, CK, CK, w.data(), m.data(), T(0), folded.data(), scratch);
}

/// Backward through the fold, given dW' = dL/dW': dW += dW' M^T row-wise
/// (dw_o = M dw'_o) and dM += sum_o w_o dw'_o^T restricted to the structure.
/// Both accumulated; dm may be empty for the identity.
template <class T>
void fold_weights_backward(Structure s, TensorView<const T> m, TensorView<const T> w,
                           TensorView<const T> dfolded, TensorView<T> dw, TensorView<T> dm) {
  check_fold("fold_weights_backward", s, m.shape(), w.shape());
  check_shape("fold_weights_backward", "folded weight gradient", dfolded.shape(), w.shape());
  check_shape("fold_weights_backward", "weight gradient", dw.shape(), w.shape());
  check_shape("fold_weights_backward", "M gradient", dm.shape(), m.shape());
  const index O = w.dim(0), C = w.dim(1), K = w.dim(2) * w.dim(3);
  switch (s) {
    case Structure::identity: dw.vec() += dfolded.vec(); return;
    case Structure::diagonal: {
      const auto W = w.matrix(O * C, K);
      const auto dWf = dfolded.matrix(O * C, K);
      dw.matrix(O * C, K) += dWf * m.vec().asDiagonal();
      dm.vec() += W.cwiseProduct(dWf).colwise().sum().transpose();
      return;
    }
    case Structure::channel_shared: {
      const auto W = w.matrix(O * C, K);
      const auto dWf = dfolded.matrix(O * C, K);
      dw.matrix(O * C, K).noalias() += dWf.lazyProduct(m.matrix(K, K).transpose());  // thin: see fold_weights
      dm.matrix(K, K).noalias() += W.transpose().lazyProduct(dWf);
      return;
    }
    case Structure::block_diagonal:
      for (index o = 0; o < O; ++o)
        for (index i = 0; i < C; ++i) {
          Eigen::Map<const Matrix<T>> block(m.data() + i * K * K, K, K);
          Eigen::Map<const Vector<T>> w_oi(w.data() + (o * C + i) * K, K);
          Eigen::Map<const Vector<T>> d_oi(dfolded.data() + (o * C + i) * K, K);
          Eigen::Map<Vector<T>>(dw.data() + (o * C + i) * K, K).noalias() += block * d_oi;
          Eigen::Map<Matrix<T>>(dm.data() + i * K * K, K, K).noalias() += w_oi * d_oi.transpose();
        }
      return;
    case Structure::full: {
      const auto W = w.matrix(O, C * K);
      const auto dWf = dfolded.matrix(O, C * K);
      dw.matrix(O, C * K).noalias() += dWf * m.matrix(C * K, C * K).transpose();
      dm.matrix(C * K, C * K).noalias() += W.transpose() * dWf;
      return;
    }
  }
}

/// The fold through the dense matrix, for tests: w'_o = M_full^T w_o.
template <class T>
void fold_weights_reference(Structure s, TensorView<const T> m, TensorView<const T> w, TensorView<T> folded) {
  check_fold("fold_weights_reference", s, m.shape(), w.shape());
  const index O = w.dim(0), CK = w.dim(1) * w.dim(2) * w.dim(3);
  const Matrix<T> full = expand_similarity(s, m, w.dim(1), w.dim(2) * w.dim(3));
  for (index o = 0; o < O; ++o)
    for (index q = 0; q < CK; ++q) {
      T sum = 0;
      for (index p = 0; p < CK; ++p) sum += full(p, q) * w[o * CK + p];
      folded[o * CK + q] = sum;
    }
}

// ---------------------------------------------------------------------------
// Diagonal plus low rank: M = diag(d) + U Vᵀ over plain D-vectors (no
// channel/slot layout; the few-shot heads' embeddings, nsl/fewshot/heads.hpp).
// Stored as d: [D], U, V: [D, r] (r = 0, or U and V empty: M = diag(d)).
// Applied to the rows x_k of X (R x D), the transform Y = X Mᵀ (row k is
// M x_k) makes w^T M x_k = w · y_k a dot product:
//
//     Y = X diag(d) + (X V) Uᵀ              XV = X V (R x r) kept for backward
//
// Backward, given dY = dL/dY (row k: dy_k):
//
//     dX = dY M = dY diag(d) + (dY U) Vᵀ     (row k: Mᵀ dy_k)
//     dd_j = Σ_k dY_kj X_kj                  (the diagonal of dM = Σ_k dy_k x_kᵀ)
//     dU = dYᵀ (X V)      dV = Xᵀ (dY U)     (dM through U Vᵀ: dM V and dMᵀ U)
//
// dX assigned; dd, dU, dV accumulated. `*_reference` go through the dense
// D x D matrix.

/// Fails unless d is [D] and U, V are both [D, r] or both empty; returns r.
inline index check_diagonal_low_rank(const char* op, const Shape& d, const Shape& u, const Shape& v) {
  check_rank(op, "diagonal d", d, 1);
  if (u.size() == 0 && v.size() == 0) return 0;
  check_rank(op, "left factor U", u, 2);
  require(u[0] == d[0], ErrorKind::shape, op, ": left factor U: expected [", d[0], ", r], got ", u);
  check_shape(op, "right factor V", v, u);
  return u[1];
}

/// Per-call scratch of `diagonal_low_rank_transform_backward` (dY U, R x r),
/// kept by the caller so that repeated calls allocate nothing.
template <class T>
struct DiagonalLowRankWorkspace {
  Matrix<T> dy_left;
};

/// The dense D x D matrix diag(d) + U Vᵀ.
template <class T>
Matrix<T> diagonal_low_rank_matrix(TensorView<const T> d, TensorView<const T> u, TensorView<const T> v) {
  const index r = check_diagonal_low_rank("diagonal_low_rank_matrix", d.shape(), u.shape(), v.shape());
  const index D = d.size();
  Matrix<T> m = Matrix<T>::Zero(D, D);
  if (r > 0) m.noalias() = u.matrix(D, r) * v.matrix(D, r).transpose();
  m.diagonal() += d.vec();
  return m;
}

/// Y = X Mᵀ for M = diag(d) + U Vᵀ (row k of Y is M x_k); XV = X V is kept
/// for the backward (R x r; empty when r = 0).
template <class T>
void diagonal_low_rank_transform(TensorView<const T> d, TensorView<const T> u, TensorView<const T> v,
                                 TensorView<const T> x, TensorView<T> xv, TensorView<T> y) {
  const char* op = "diagonal_low_rank_transform";
  const index r = check_diagonal_low_rank(op, d.shape(), u.shape(), v.shape());
  check_rank(op, "rows X", x.shape(), 2);
  require(x.dim(1) == d.size(), ErrorKind::shape, op, ": rows X: expected [R, ", d.size(), "], got ", x.shape());
  check_shape(op, "output Y", y.shape(), x.shape());
  auto out = y.matrix();
  out.noalias() = x.matrix() * d.vec().asDiagonal();
  if (r == 0) return;
  check_shape(op, "X V", xv.shape(), Shape{x.dim(0), r});
  xv.matrix().noalias() = x.matrix() * v.matrix();
  out.noalias() += xv.matrix() * u.matrix().transpose();
}

/// dX = dY M (assigned), dd += colsum(dY ⊙ X), dU += dYᵀ XV, dV += Xᵀ (dY U)
/// (accumulated; du, dv empty when r = 0).
template <class T>
void diagonal_low_rank_transform_backward(TensorView<const T> d, TensorView<const T> u, TensorView<const T> v,
                                          TensorView<const T> x, TensorView<const T> xv, TensorView<const T> dy,
                                          TensorView<T> dx, TensorView<T> dd, TensorView<T> du, TensorView<T> dv,
                                          DiagonalLowRankWorkspace<T>& workspace) {
  const char* op = "diagonal_low_rank_transform_backward";
  const index r = check_diagonal_low_rank(op, d.shape(), u.shape(), v.shape());
  check_rank(op, "rows X", x.shape(), 2);
  require(x.dim(1) == d.size(), ErrorKind::shape, op, ": rows X: expected [R, ", d.size(), "], got ", x.shape());
  check_shape(op, "output gradient dY", dy.shape(), x.shape());
  check_shape(op, "input gradient dX", dx.shape(), x.shape());
  check_shape(op, "diagonal gradient", dd.shape(), d.shape());
  auto grad_x = dx.matrix();
  grad_x.noalias() = dy.matrix() * d.vec().asDiagonal();
  dd.vec() += dy.matrix().cwiseProduct(x.matrix()).colwise().sum().transpose();
  if (r == 0) return;
  check_shape(op, "X V", xv.shape(), Shape{x.dim(0), r});
  check_shape(op, "left factor gradient", du.shape(), u.shape());
  check_shape(op, "right factor gradient", dv.shape(), v.shape());
  Matrix<T>& dy_left = workspace.dy_left;
  dy_left.noalias() = dy.matrix() * u.matrix();
  grad_x.noalias() += dy_left * v.matrix().transpose();
  du.matrix().noalias() += dy.matrix().transpose() * xv.matrix();
  dv.matrix().noalias() += x.matrix().transpose() * dy_left;
}

/// Y = X Mᵀ through the dense matrix, entry by entry: y_kj = Σ_i M_ji x_ki.
template <class T>
void diagonal_low_rank_transform_reference(TensorView<const T> d, TensorView<const T> u, TensorView<const T> v,
                                           TensorView<const T> x, TensorView<T> y) {
  const Matrix<T> m = diagonal_low_rank_matrix(d, u, v);
  check_shape("diagonal_low_rank_transform_reference", "output Y", y.shape(), x.shape());
  for (index k = 0; k < x.dim(0); ++k)
    for (index j = 0; j < x.dim(1); ++j) {
      double sum = 0.0;
      for (index i = 0; i < x.dim(1); ++i) sum += double(m(j, i)) * double(x(k, i));
      y(k, j) = T(sum);
    }
}

}  // namespace nsl
