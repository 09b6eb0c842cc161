// nsl/ops/attention.hpp — the softmax attention of a global neural
// similarity block (NSL.md §6), given the block's three projections.
//
// Per image, with P = H W positions, X (C x P) the block's input, F and G
// (C' x P) the key and query projections and H (C x P) the value projection:
//
//     S = Fᵀ G                           s_ij = f_i · g_j                 (P x P)
//     B = softmax of each column of S     b_ij = exp(s_ij) / Σ_i' exp(s_i'j)
//     O = H B                            o_j  = Σ_i b_ij h_i              (C x P)
//     Y = γ O + X
//
// Backward, given dY (docs/global_similarity.md derives it):
//
//     dγ = Σ_images ⟨dY, O⟩ = Σ_images ⟨Hᵀ dY, B⟩      dO = γ dY
//     dH = dO Bᵀ                dB = Hᵀ dO
//     dS = B ⊙ (dB − 1 (1ᵀ (B ⊙ dB)))                 (the softmax's Jacobian, per column)
//     dF = G dSᵀ                dG = F dS
//     dX = dY                                          (the residual path only: the
//                                                     projections' input gradients are
//                                                     the caller's to add)
//
// Contract: forward assigns B (kept for backward) and Y (the overload for
// inference keeps no B); backward assigns dF, dG, dH and dX (skipped when
// empty) and ACCUMULATES dγ (a parameter's gradient). The softmax subtracts
// each column's maximum first (the same value, no overflow). Images are
// processed one after the other, each with (possibly multi-threaded) GEMMs:
// P x P products are the bulk of the work. The forward's are nsl's `gemm`
// (nsl/core/gemm.hpp), which allocates nothing once the caller's workspace
// has grown, backward's are Eigen's. `*_reference` are the formulas in plain
// loops in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "nsl/core/gemm.hpp"
#include "nsl/core/tensor.hpp"

namespace nsl {

/// The scratch of the attention ops, kept by the caller so that repeated
/// calls on the same shapes allocate nothing: the forward's packing buffers
/// (its products are nsl's `gemm`) and, for the forward that keeps no B
/// (inference), one image's B; backward's dB and dS (P x P) and 1ᵀ (B ⊙ dB) (1 x P).
template <class T>
struct AttentionWorkspace {
  Matrix<T> dattention, dscores;
  Eigen::Matrix<T, 1, Eigen::Dynamic> column_sums;
  Matrix<T> attention;   ///< one image's B (P x P) for the forward that keeps none
  GemmScratch<T> gemm;   ///< the forward's packing buffers
};

/// Fails unless x is [N, C, H, W], keys and queries are [N, C', H, W] with
/// C' >= 1, and values are [N, C, H, W]; returns the attention's shape [N, P, P].
inline Shape attention_shape(const char* op, const Shape& x, const Shape& keys, const Shape& queries,
                             const Shape& values) {
  check_rank(op, "input x", x, 4);
  check_rank(op, "keys f", keys, 4);
  require(keys[0] == x[0] && keys[1] >= 1 && keys[2] == x[2] && keys[3] == x[3], ErrorKind::shape, op,
          ": keys f: expected [", x[0], ", C' >= 1, ", x[2], ", ", x[3], "] for an input ", x, ", got ", keys);
  check_shape(op, "queries g", queries, keys);
  check_shape(op, "values h", values, x);
  const index positions = x[2] * x[3];
  return Shape{x[0], positions, positions};
}

namespace detail {
/// One image of attention_forward: B (P x P, at `b_data`) and Y = γ H B + X
/// (C x P), the products by nsl's `gemm` with the packing buffers of `gemm_scratch`.
template <class T>
void attention_forward_image(const T* x, const T* f, const T* g, const T* h, T gamma, index c, index k, index p,
                             T* b_data, T* y, GemmScratch<T>& gemm_scratch) {
  gemm<T>(true, false, p, p, k, f, g, T(0), b_data, gemm_scratch);  // s_ij = f_i . g_j, turned into b_ij in place
  MatrixMap<T> b(b_data, p, p);
  for (index j = 0; j < p; ++j) {
    auto column = b.col(j);
    const T top = column.maxCoeff();
    column = (column.array() - top).exp();
    column /= column.sum();
  }
  gemm<T>(false, false, c, p, p, h, b_data, T(0), y, gemm_scratch);  // O = H B
  MatrixMap<T> out(y, c, p);
  out = gamma * out + MatrixMap<const T>(x, c, p);
}
}  // namespace detail

/// B = the column softmax of Fᵀ G (kept, for backward) and Y = γ H B + X, per
/// image; the products' packing buffers in `workspace`.
template <class T>
void attention_forward(TensorView<const T> x, TensorView<const T> f, TensorView<const T> g, TensorView<const T> h,
                       T gamma, TensorView<T> attention, TensorView<T> y, AttentionWorkspace<T>& workspace) {
  check_shape("attention_forward", "attention", attention.shape(),
              attention_shape("attention_forward", x.shape(), f.shape(), g.shape(), h.shape()));
  check_shape("attention_forward", "output", y.shape(), x.shape());
  const index n = x.dim(0), c = x.dim(1), k = f.dim(1), p = x.dim(2) * x.dim(3);
  for (index img = 0; img < n; ++img)
    detail::attention_forward_image(x.data() + img * c * p, f.data() + img * k * p, g.data() + img * k * p,
                                    h.data() + img * c * p, gamma, c, k, p, attention.data() + img * p * p,
                                    y.data() + img * c * p, workspace.gemm);
}

/// The same with scratch of its own (allocated per call).
template <class T>
void attention_forward(TensorView<const T> x, TensorView<const T> f, TensorView<const T> g, TensorView<const T> h,
                       T gamma, TensorView<T> attention, TensorView<T> y) {
  AttentionWorkspace<T> workspace;
  attention_forward<T>(x, f, g, h, gamma, attention, y, workspace);
}

/// Y = γ H B + X as above without keeping B (inference): each image's B is
/// formed in `workspace.attention` (P x P), so memory does not grow with the
/// batch, and once the workspace has seen the shape nothing is allocated.
template <class T>
void attention_forward(TensorView<const T> x, TensorView<const T> f, TensorView<const T> g, TensorView<const T> h,
                       T gamma, TensorView<T> y, AttentionWorkspace<T>& workspace) {
  attention_shape("attention_forward", x.shape(), f.shape(), g.shape(), h.shape());
  check_shape("attention_forward", "output", y.shape(), x.shape());
  const index n = x.dim(0), c = x.dim(1), k = f.dim(1), p = x.dim(2) * x.dim(3);
  workspace.attention.resize(p, p);
  for (index img = 0; img < n; ++img)
    detail::attention_forward_image(x.data() + img * c * p, f.data() + img * k * p, g.data() + img * k * p,
                                    h.data() + img * c * p, gamma, c, k, p, workspace.attention.data(),
                                    y.data() + img * c * p, workspace.gemm);
}

/// dF, dG, dH (and dX = dY unless dx is empty) assigned, dγ (shape [1])
/// accumulated, from the forward's projections, its attention B and dY.
template <class T>
void attention_backward(TensorView<const T> f, TensorView<const T> g, TensorView<const T> h,
                        TensorView<const T> attention, T gamma, TensorView<const T> dy, TensorView<T> df,
                        TensorView<T> dg, TensorView<T> dh, TensorView<T> dgamma, TensorView<T> dx,
                        AttentionWorkspace<T>& workspace) {
  check_shape("attention_backward", "attention", attention.shape(),
              attention_shape("attention_backward", dy.shape(), f.shape(), g.shape(), h.shape()));
  check_shape("attention_backward", "keys gradient", df.shape(), f.shape());
  check_shape("attention_backward", "queries gradient", dg.shape(), g.shape());
  check_shape("attention_backward", "values gradient", dh.shape(), h.shape());
  check_shape("attention_backward", "gamma gradient", dgamma.shape(), Shape{1});
  if (dx.size()) check_shape("attention_backward", "input gradient", dx.shape(), dy.shape());
  const index n = dy.dim(0), c = dy.dim(1), k = f.dim(1), p = dy.dim(2) * dy.dim(3);
  Matrix<T>& db = workspace.dattention;
  Matrix<T>& ds = workspace.dscores;
  auto& along = workspace.column_sums;
  db.resize(p, p);
  ds.resize(p, p);
  along.resize(p);
  T sum_dgamma = T(0);
  for (index img = 0; img < n; ++img) {
    const MatrixMap<const T> keys(f.data() + img * k * p, k, p);
    const MatrixMap<const T> queries(g.data() + img * k * p, k, p);
    const MatrixMap<const T> values(h.data() + img * c * p, c, p);
    const MatrixMap<const T> b(attention.data() + img * p * p, p, p);
    const MatrixMap<const T> dout(dy.data() + img * c * p, c, p);
    // dγ = ⟨dY, H B⟩ computed as ⟨Hᵀ dY, B⟩: Hᵀ dY (= dB / γ) is needed next
    // anyway, and no C x P temporary is formed.
    db.noalias() = values.transpose() * dout;
    sum_dgamma += db.cwiseProduct(b).sum();
    db *= gamma;
    MatrixMap<T>(dh.data() + img * c * p, c, p).noalias() = gamma * (dout * b.transpose());
    along = b.cwiseProduct(db).colwise().sum();
    ds = b.cwiseProduct(db.rowwise() - along);
    MatrixMap<T>(df.data() + img * k * p, k, p).noalias() = queries * ds.transpose();
    MatrixMap<T>(dg.data() + img * k * p, k, p).noalias() = keys * ds;
  }
  dgamma[0] += sum_dgamma;
  if (dx.size()) copy<T>(dy, dx);
}

/// attention_forward by the formulas as they read, in double.
template <class T>
void attention_forward_reference(TensorView<const T> x, TensorView<const T> f, TensorView<const T> g,
                                 TensorView<const T> h, T gamma, TensorView<T> attention, TensorView<T> y) {
  check_shape("attention_forward_reference", "attention", attention.shape(),
              attention_shape("attention_forward_reference", x.shape(), f.shape(), g.shape(), h.shape()));
  check_shape("attention_forward_reference", "output", y.shape(), x.shape());
  const index n = x.dim(0), c = x.dim(1), k = f.dim(1), p = x.dim(2) * x.dim(3);
  std::vector<double> s(static_cast<std::size_t>(p)), b(static_cast<std::size_t>(p));
  for (index img = 0; img < n; ++img)
    for (index j = 0; j < p; ++j) {
      double top = -INFINITY, sum = 0.0;
      for (index i = 0; i < p; ++i) {
        double sij = 0.0;
        for (index a = 0; a < k; ++a) sij += double(f[(img * k + a) * p + i]) * double(g[(img * k + a) * p + j]);
        s[static_cast<std::size_t>(i)] = sij;
        top = std::max(top, sij);
      }
      for (index i = 0; i < p; ++i) sum += std::exp(s[static_cast<std::size_t>(i)] - top);
      for (index i = 0; i < p; ++i) {
        b[static_cast<std::size_t>(i)] = std::exp(s[static_cast<std::size_t>(i)] - top) / sum;
        attention[(img * p + i) * p + j] = T(b[static_cast<std::size_t>(i)]);
      }
      for (index ch = 0; ch < c; ++ch) {
        double o = 0.0;
        for (index i = 0; i < p; ++i) o += b[static_cast<std::size_t>(i)] * double(h[(img * c + ch) * p + i]);
        y[(img * c + ch) * p + j] = T(double(gamma) * o + double(x[(img * c + ch) * p + j]));
      }
    }
}

/// attention_backward by the formulas as they read, in double (the same
/// contract: dF, dG, dH, dX assigned, dγ accumulated).
template <class T>
void attention_backward_reference(TensorView<const T> f, TensorView<const T> g, TensorView<const T> h,
                                  TensorView<const T> attention, T gamma, TensorView<const T> dy, TensorView<T> df,
                                  TensorView<T> dg, TensorView<T> dh, TensorView<T> dgamma, TensorView<T> dx) {
  check_shape("attention_backward_reference", "attention", attention.shape(),
              attention_shape("attention_backward_reference", dy.shape(), f.shape(), g.shape(), h.shape()));
  check_shape("attention_backward_reference", "keys gradient", df.shape(), f.shape());
  check_shape("attention_backward_reference", "queries gradient", dg.shape(), g.shape());
  check_shape("attention_backward_reference", "values gradient", dh.shape(), h.shape());
  check_shape("attention_backward_reference", "gamma gradient", dgamma.shape(), Shape{1});
  if (dx.size()) check_shape("attention_backward_reference", "input gradient", dx.shape(), dy.shape());
  const index n = dy.dim(0), c = dy.dim(1), k = f.dim(1), p = dy.dim(2) * dy.dim(3);
  const double gam = double(gamma);
  auto b = [&](index img, index i, index j) { return double(attention[(img * p + i) * p + j]); };
  std::vector<double> db(static_cast<std::size_t>(p * p)), ds(static_cast<std::size_t>(p * p));
  double sum_dgamma = 0.0;
  for (index img = 0; img < n; ++img) {
    // dγ += Σ_cj dY_cj o_cj;  dB_ij = γ Σ_c h_ci dY_cj;  dH_ci = γ Σ_j dY_cj b_ij
    for (index ch = 0; ch < c; ++ch)
      for (index j = 0; j < p; ++j) {
        double o = 0.0;
        for (index i = 0; i < p; ++i) o += b(img, i, j) * double(h[(img * c + ch) * p + i]);
        sum_dgamma += double(dy[(img * c + ch) * p + j]) * o;
      }
    for (index i = 0; i < p; ++i)
      for (index j = 0; j < p; ++j) {
        double sum = 0.0;
        for (index ch = 0; ch < c; ++ch) sum += double(h[(img * c + ch) * p + i]) * double(dy[(img * c + ch) * p + j]);
        db[static_cast<std::size_t>(i * p + j)] = gam * sum;
      }
    for (index ch = 0; ch < c; ++ch)
      for (index i = 0; i < p; ++i) {
        double sum = 0.0;
        for (index j = 0; j < p; ++j) sum += double(dy[(img * c + ch) * p + j]) * b(img, i, j);
        dh[(img * c + ch) * p + i] = T(gam * sum);
      }
    // dS_ij = b_ij (dB_ij − Σ_i' b_i'j dB_i'j)
    for (index j = 0; j < p; ++j) {
      double along = 0.0;
      for (index i = 0; i < p; ++i) along += b(img, i, j) * db[static_cast<std::size_t>(i * p + j)];
      for (index i = 0; i < p; ++i)
        ds[static_cast<std::size_t>(i * p + j)] = b(img, i, j) * (db[static_cast<std::size_t>(i * p + j)] - along);
    }
    // dF_ai = Σ_j g_aj dS_ij;  dG_aj = Σ_i f_ai dS_ij
    for (index a = 0; a < k; ++a)
      for (index i = 0; i < p; ++i) {
        double sum_f = 0.0, sum_g = 0.0;
        for (index j = 0; j < p; ++j) {
          sum_f += double(g[(img * k + a) * p + j]) * ds[static_cast<std::size_t>(i * p + j)];
          sum_g += double(f[(img * k + a) * p + j]) * ds[static_cast<std::size_t>(j * p + i)];
        }
        df[(img * k + a) * p + i] = T(sum_f);
        dg[(img * k + a) * p + i] = T(sum_g);
      }
  }
  dgamma[0] += T(sum_dgamma);
  for (index i = 0; i < dx.size(); ++i) dx[i] = dy[i];
}

}  // namespace nsl
