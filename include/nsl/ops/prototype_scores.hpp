// nsl/ops/prototype_scores.hpp — the scoring math of the few-shot heads
// (NSL.md §7, nsl/fewshot/heads.hpp): class prototypes, unit rows, and the
// scores between queries and prototypes, each with its gradient.
//
// Rows are embeddings: A (Q x D) the queries, P (N x D) the prototypes of the
// N = ways classes, S (Q x N) the scores, G = dL/dS. docs/fewshot.md derives
// every gradient below.
//
//   class_prototypes      p_k = (1/K) Σ_j e_{kK+j}            dE_{kK+j} = dp_k / K
//   normalize_rows        x̂ = x / max(|x|, 1e-8)               dx = (dx̂ − x̂ (x̂·dx̂)) / |x|
//                                                              (dx̂ / 1e-8 under the floor)
//   euclidean_scores      s_qk = −|a_q − p_k|²                 dA = 2 G P − 2 diag(G 1) A
//                         = 2 A Pᵀ − |a|² 1ᵀ − 1 |p|²ᵀ         dP = 2 Gᵀ A − 2 diag(Gᵀ 1) P
//   scaled_inner_scores   S = τ A Bᵀ,  s_qk = τ a_q · b_k       dτ += ⟨G, A Bᵀ⟩
//                                                              dA = τ G B,  dB = τ Gᵀ A
//   predict_diagonal      z = mean_k p̂_k,  h = relu(W1 z + b1),  m = 1 + W2 h + b2
//                         dW2 += dm hᵀ, db2 += dm, δ = (W2ᵀ dm) ⊙ [h > 0],
//                         dW1 += δ zᵀ, db1 += δ, dP̂ += (1/N) 1 (W1ᵀ δ)ᵀ
//
// The heads compose them: with Â, P̂ the unit rows and B = P̂ Mᵀ (row k is
// M p̂_k), every unit head scores S = τ Â Bᵀ, s_qk = τ â_qᵀ M p̂_k:
//
//   cosine       M = I                 B = P̂
//   static NS    M = diag(d) + U Vᵀ    B = diagonal_low_rank_transform(d, U, V, P̂)
//                                      (nsl/similarity/bilinear.hpp, with its backward)
//   dynamic NS   M = diag(m)           m from predict_diagonal; B by the same
//                                      transform with no low-rank part
//
// and `cosine_scores_reference`, `bilinear_scores_reference` and
// `predicted_diagonal_scores_reference` are those whole scores as they read.
//
// The forward products take a GemmScratch (nsl's `gemm`: no allocation once
// its buffers have grown), as the heads' inference needs.
//
// Contract: outputs and input gradients assigned; gradients of parameters
// (τ, W1, b1, W2, b2) accumulated; predict_diagonal_backward ADDS its share
// to dP̂, which the transform's backward has assigned. `*_reference` are the
// formulas in plain loops in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "nsl/core/gemm.hpp"
#include "nsl/core/tensor.hpp"
#include "nsl/similarity/bilinear.hpp"

namespace nsl {

/// The floor of |x| in x̂ = x / max(|x|, floor) (a zero row stays finite).
inline constexpr double row_norm_floor = 1e-8;

namespace detail {
/// Fails unless x is a matrix (rank 2) with `columns` columns (any when < 0).
inline void check_rows(const char* op, const char* what, const Shape& x, index columns = -1) {
  check_rank(op, what, x, 2);
  require(columns < 0 || x[1] == columns, ErrorKind::shape, op, ": ", what, ": expected [rows, ", columns, "], got ",
          x);
}
/// Fails unless queries (Q x D) and prototypes (N x D) fit scores (Q x N).
inline void check_scores(const char* op, const Shape& queries, const Shape& prototypes, const Shape& scores) {
  check_rows(op, "queries", queries);
  check_rows(op, "prototypes", prototypes, queries[1]);
  check_shape(op, "scores", scores, Shape{queries[0], prototypes[0]});
}
/// x / max(|x|, floor) for one row of n entries, in double.
template <class T>
std::vector<double> unit_row_reference(const T* x, index n) {
  double norm = 0.0;
  for (index i = 0; i < n; ++i) norm += double(x[i]) * double(x[i]);
  norm = std::max(std::sqrt(norm), row_norm_floor);
  std::vector<double> u(static_cast<std::size_t>(n));
  for (index i = 0; i < n; ++i) u[static_cast<std::size_t>(i)] = double(x[i]) / norm;
  return u;
}
}  // namespace detail

// ---------------------------------------------------------------------------
// Prototypes: the mean of each class's K support rows (class-major: row
// k K + j is example j of class k).

/// prototypes (N x D) = the means of the N classes' `shots` rows of support (N K x D).
template <class T>
void class_prototypes(TensorView<const T> support, index shots, TensorView<T> prototypes) {
  detail::check_rows("class_prototypes", "support", support.shape());
  require(shots >= 1 && support.dim(0) % shots == 0, ErrorKind::shape, "class_prototypes: expected a whole number of ",
          shots, " support rows per class, got ", support.shape());
  check_shape("class_prototypes", "prototypes", prototypes.shape(), Shape{support.dim(0) / shots, support.dim(1)});
  const auto e = support.matrix();
  auto p = prototypes.matrix();
  for (index k = 0; k < p.rows(); ++k) p.row(k) = e.middleRows(k * shots, shots).colwise().mean();
}

/// dsupport (assigned): row k K + j is dprototypes row k / K.
template <class T>
void class_prototypes_backward(TensorView<const T> dprototypes, index shots, TensorView<T> dsupport) {
  detail::check_rows("class_prototypes_backward", "prototype gradient", dprototypes.shape());
  require(shots >= 1, ErrorKind::argument, "class_prototypes_backward: shots must be >= 1, got ", shots);
  check_shape("class_prototypes_backward", "support gradient", dsupport.shape(),
              Shape{dprototypes.dim(0) * shots, dprototypes.dim(1)});
  const auto dp = dprototypes.matrix();
  auto de = dsupport.matrix();
  for (index k = 0; k < dp.rows(); ++k) de.middleRows(k * shots, shots).rowwise() = dp.row(k) / T(shots);
}

template <class T>
void class_prototypes_reference(TensorView<const T> support, index shots, TensorView<T> prototypes) {
  require(shots >= 1, ErrorKind::argument, "class_prototypes_reference: shots must be >= 1, got ", shots);
  check_shape("class_prototypes_reference", "prototypes", prototypes.shape(),
              Shape{support.dim(0) / shots, support.dim(1)});
  for (index k = 0; k < prototypes.dim(0); ++k)
    for (index i = 0; i < prototypes.dim(1); ++i) {
      double sum = 0.0;
      for (index j = 0; j < shots; ++j) sum += double(support(k * shots + j, i));
      prototypes(k, i) = T(sum / double(shots));
    }
}

// ---------------------------------------------------------------------------
// Unit rows: x̂ = x / max(|x|, floor). The Jacobian (I − x̂ x̂ᵀ) / |x| is
// symmetric, so a gradient dx̂ loses its component along x̂ (scaling x does
// not change x̂); under the floor x̂ = x / floor is linear in x.

/// unit (R x D) = the rows of x divided by their norms; norms (R) = max(|x|, floor).
template <class T>
void normalize_rows(TensorView<const T> x, TensorView<T> unit, TensorView<T> norms) {
  detail::check_rows("normalize_rows", "rows", x.shape());
  check_shape("normalize_rows", "unit rows", unit.shape(), x.shape());
  check_shape("normalize_rows", "norms", norms.shape(), Shape{x.dim(0)});
  norms.vec() = x.matrix().rowwise().norm().cwiseMax(T(row_norm_floor));
  unit.matrix().noalias() = norms.vec().cwiseInverse().asDiagonal() * x.matrix();
}

/// dx (assigned) from dunit = dL/dx̂: (dx̂ − x̂ (x̂·dx̂)) / |x|, or dx̂ / floor
/// for rows under the floor.
template <class T>
void normalize_rows_backward(TensorView<const T> unit, TensorView<const T> norms, TensorView<const T> dunit,
                             TensorView<T> dx) {
  detail::check_rows("normalize_rows_backward", "unit rows", unit.shape());
  check_shape("normalize_rows_backward", "norms", norms.shape(), Shape{unit.dim(0)});
  check_shape("normalize_rows_backward", "unit-row gradient", dunit.shape(), unit.shape());
  check_shape("normalize_rows_backward", "row gradient", dx.shape(), unit.shape());
  const auto u = unit.matrix();
  const auto du = dunit.matrix();
  auto d = dx.matrix();
  for (index i = 0; i < u.rows(); ++i) {
    if (norms[i] > T(row_norm_floor)) {
      const T along = u.row(i).dot(du.row(i));
      d.row(i) = (du.row(i) - along * u.row(i)) / norms[i];
    } else {
      d.row(i) = du.row(i) / norms[i];
    }
  }
}

template <class T>
void normalize_rows_reference(TensorView<const T> x, TensorView<T> unit, TensorView<T> norms) {
  check_shape("normalize_rows_reference", "unit rows", unit.shape(), x.shape());
  check_shape("normalize_rows_reference", "norms", norms.shape(), Shape{x.dim(0)});
  for (index r = 0; r < x.dim(0); ++r) {
    double sum = 0.0;
    for (index i = 0; i < x.dim(1); ++i) sum += double(x(r, i)) * double(x(r, i));
    const double norm = std::max(std::sqrt(sum), row_norm_floor);
    norms[r] = T(norm);
    for (index i = 0; i < x.dim(1); ++i) unit(r, i) = T(double(x(r, i)) / norm);
  }
}

// ---------------------------------------------------------------------------
// Euclidean scores (prototypical networks): s_qk = −|a_q − p_k|².
// ∂s_qk/∂a_q = −2 (a_q − p_k) and ∂s_qk/∂p_k = 2 (a_q − p_k).

/// S = 2 A Pᵀ − |a|² 1ᵀ − 1 |p|²ᵀ, the product by nsl's `gemm` with the
/// packing buffers of `scratch`: nothing is allocated once they have grown.
template <class T>
void euclidean_scores(TensorView<const T> a, TensorView<const T> p, TensorView<T> s, GemmScratch<T>& scratch) {
  detail::check_scores("euclidean_scores", a.shape(), p.shape(), s.shape());
  const index queries = a.dim(0), prototypes = p.dim(0);
  gemm<T>(false, true, queries, prototypes, a.dim(1), a.data(), p.data(), T(0), s.data(), scratch);
  auto scores = s.matrix();
  scores *= T(2);
  // Row by row and column by column: `colwise() -= <the rows' norms>` would
  // evaluate the norms into a temporary vector.
  for (index q = 0; q < queries; ++q) scores.row(q).array() -= a.matrix().row(q).squaredNorm();
  for (index k = 0; k < prototypes; ++k) scores.col(k).array() -= p.matrix().row(k).squaredNorm();
}
/// The same with packing buffers of its own (allocated per call).
template <class T>
void euclidean_scores(TensorView<const T> a, TensorView<const T> p, TensorView<T> s) {
  GemmScratch<T> scratch;
  euclidean_scores<T>(a, p, s, scratch);
}

/// dA = 2 G P − 2 diag(G 1) A and dP = 2 Gᵀ A − 2 diag(Gᵀ 1) P (assigned).
template <class T>
void euclidean_scores_backward(TensorView<const T> a, TensorView<const T> p, TensorView<const T> dscores,
                               TensorView<T> da, TensorView<T> dp) {
  detail::check_scores("euclidean_scores_backward", a.shape(), p.shape(), dscores.shape());
  check_shape("euclidean_scores_backward", "query gradient", da.shape(), a.shape());
  check_shape("euclidean_scores_backward", "prototype gradient", dp.shape(), p.shape());
  const auto g = dscores.matrix();
  auto grad_a = da.matrix();
  auto grad_p = dp.matrix();
  grad_a.noalias() = T(2) * g * p.matrix();
  grad_a -= T(2) * (g.rowwise().sum().asDiagonal() * a.matrix());
  grad_p.noalias() = T(2) * g.transpose() * a.matrix();
  grad_p -= T(2) * (g.colwise().sum().transpose().asDiagonal() * p.matrix());
}

template <class T>
void euclidean_scores_reference(TensorView<const T> a, TensorView<const T> p, TensorView<T> s) {
  detail::check_scores("euclidean_scores_reference", a.shape(), p.shape(), s.shape());
  for (index q = 0; q < a.dim(0); ++q)
    for (index k = 0; k < p.dim(0); ++k) {
      double d2 = 0.0;
      for (index i = 0; i < a.dim(1); ++i) d2 += (double(a(q, i)) - double(p(k, i))) * (double(a(q, i)) - double(p(k, i)));
      s(q, k) = T(-d2);
    }
}

// ---------------------------------------------------------------------------
// Scaled inner products: S = τ A Bᵀ. With unit rows A = Â and B = P̂ Mᵀ this
// is every unit head's score τ â_qᵀ M p̂_k (the cosine score when B = P̂).

/// inner = A Bᵀ (kept for dτ) and S = τ inner, the product by nsl's `gemm`
/// with the packing buffers of `scratch` (nothing allocated once grown).
template <class T>
void scaled_inner_scores(TensorView<const T> a, TensorView<const T> b, T scale, TensorView<T> inner, TensorView<T> s,
                         GemmScratch<T>& scratch) {
  detail::check_scores("scaled_inner_scores", a.shape(), b.shape(), s.shape());
  check_shape("scaled_inner_scores", "inner products", inner.shape(), s.shape());
  gemm<T>(false, true, a.dim(0), b.dim(0), a.dim(1), a.data(), b.data(), T(0), inner.data(), scratch);
  s.matrix() = scale * inner.matrix();
}
/// The same with packing buffers of its own (allocated per call).
template <class T>
void scaled_inner_scores(TensorView<const T> a, TensorView<const T> b, T scale, TensorView<T> inner, TensorView<T> s) {
  GemmScratch<T> scratch;
  scaled_inner_scores<T>(a, b, scale, inner, s, scratch);
}

/// dτ += ⟨G, A Bᵀ⟩ (dscale: shape [1], accumulated); dA = τ G B and
/// dB = τ Gᵀ A (assigned).
template <class T>
void scaled_inner_scores_backward(TensorView<const T> a, TensorView<const T> b, TensorView<const T> inner, T scale,
                                  TensorView<const T> dscores, TensorView<T> da, TensorView<T> db,
                                  TensorView<T> dscale) {
  detail::check_scores("scaled_inner_scores_backward", a.shape(), b.shape(), dscores.shape());
  check_shape("scaled_inner_scores_backward", "inner products", inner.shape(), dscores.shape());
  check_shape("scaled_inner_scores_backward", "gradient of A", da.shape(), a.shape());
  check_shape("scaled_inner_scores_backward", "gradient of B", db.shape(), b.shape());
  check_shape("scaled_inner_scores_backward", "scale gradient", dscale.shape(), Shape{1});
  const auto g = dscores.matrix();
  dscale[0] += g.cwiseProduct(inner.matrix()).sum();
  da.matrix().noalias() = scale * (g * b.matrix());
  db.matrix().noalias() = scale * (g.transpose() * a.matrix());
}

template <class T>
void scaled_inner_scores_reference(TensorView<const T> a, TensorView<const T> b, T scale, TensorView<T> s) {
  detail::check_scores("scaled_inner_scores_reference", a.shape(), b.shape(), s.shape());
  for (index q = 0; q < a.dim(0); ++q)
    for (index k = 0; k < b.dim(0); ++k) {
      double dot = 0.0;
      for (index i = 0; i < a.dim(1); ++i) dot += double(a(q, i)) * double(b(k, i));
      s(q, k) = T(double(scale) * dot);
    }
}

// ---------------------------------------------------------------------------
// The dynamic head's M = diag(m), predicted from the episode: its context
// z = mean_k p̂_k (the mean unit prototype) through a two-layer perceptron,
// m = 1 + W2 relu(W1 z + b1) + b2 (W1: H x D, b1: H, W2: D x H, b2: D).

namespace detail {
inline void check_diagonal_predictor(const char* op, const Shape& unit_prototypes, const Shape& w1, const Shape& b1,
                                     const Shape& w2, const Shape& b2) {
  check_rows(op, "unit prototypes", unit_prototypes);
  const index dimension = unit_prototypes[1];
  check_rows(op, "W1", w1, dimension);
  check_shape(op, "b1", b1, Shape{w1[0]});
  check_shape(op, "W2", w2, Shape{dimension, w1[0]});
  check_shape(op, "b2", b2, Shape{dimension});
}
}  // namespace detail

/// Backward's scratch of predict_diagonal_backward (W2ᵀ dm masked, H; W1ᵀ δ, D).
template <class T>
struct DiagonalPredictorWorkspace {
  Vector<T> dhidden, dcontext;
};

/// context z (D), hidden h = relu(W1 z + b1) (H) and diagonal m = 1 + W2 h + b2 (D)
/// from the unit prototypes P̂ (N x D); z and h are kept for the backward.
template <class T>
void predict_diagonal(TensorView<const T> unit_prototypes, TensorView<const T> w1, TensorView<const T> b1,
                      TensorView<const T> w2, TensorView<const T> b2, TensorView<T> context, TensorView<T> hidden,
                      TensorView<T> diagonal) {
  detail::check_diagonal_predictor("predict_diagonal", unit_prototypes.shape(), w1.shape(), b1.shape(), w2.shape(),
                                   b2.shape());
  check_shape("predict_diagonal", "context", context.shape(), b2.shape());
  check_shape("predict_diagonal", "hidden", hidden.shape(), b1.shape());
  check_shape("predict_diagonal", "diagonal", diagonal.shape(), b2.shape());
  context.vec() = unit_prototypes.matrix().colwise().mean().transpose();
  // Each product straight into its output, then the sums in the same order
  // as (W1 z + b1) and ((W2 h + b2) + 1): no temporary vector is allocated.
  hidden.vec().noalias() = w1.matrix() * context.vec();
  hidden.vec() = (hidden.vec() + b1.vec()).cwiseMax(T(0));
  diagonal.vec().noalias() = w2.matrix() * hidden.vec();
  diagonal.vec() = (diagonal.vec() + b2.vec()).array() + T(1);
}

/// From dm = dL/dm: dW2 += dm hᵀ, db2 += dm, δ = (W2ᵀ dm) ⊙ [h > 0],
/// dW1 += δ zᵀ, db1 += δ (accumulated), and dunit_prototypes (N x D) +=
/// (1/N) 1 (W1ᵀ δ)ᵀ: every prototype's share through the context z, ADDED to
/// the gradient its direct path has assigned.
template <class T>
void predict_diagonal_backward(TensorView<const T> w1, TensorView<const T> w2, TensorView<const T> context,
                               TensorView<const T> hidden, TensorView<const T> ddiagonal, TensorView<T> dw1,
                               TensorView<T> db1, TensorView<T> dw2, TensorView<T> db2, TensorView<T> dunit_prototypes,
                               DiagonalPredictorWorkspace<T>& workspace) {
  const char* op = "predict_diagonal_backward";
  detail::check_diagonal_predictor(op, dunit_prototypes.shape(), w1.shape(), db1.shape(), w2.shape(), db2.shape());
  check_shape(op, "W1 gradient", dw1.shape(), w1.shape());
  check_shape(op, "W2 gradient", dw2.shape(), w2.shape());
  check_shape(op, "context", context.shape(), db2.shape());
  check_shape(op, "hidden", hidden.shape(), db1.shape());
  check_shape(op, "diagonal gradient", ddiagonal.shape(), db2.shape());
  const auto dm = ddiagonal.vec();
  dw2.matrix().noalias() += dm * hidden.vec().transpose();
  db2.vec() += dm;
  Vector<T>& delta = workspace.dhidden;
  delta.noalias() = w2.matrix().transpose() * dm;
  for (index j = 0; j < delta.size(); ++j)
    if (!(hidden[j] > T(0))) delta[j] = T(0);  // relu: h > 0 exactly where W1 z + b1 > 0
  dw1.matrix().noalias() += delta * context.vec().transpose();
  db1.vec() += delta;
  Vector<T>& dz = workspace.dcontext;
  dz.noalias() = w1.matrix().transpose() * delta;
  dunit_prototypes.matrix().rowwise() += dz.transpose() / T(dunit_prototypes.dim(0));
}

template <class T>
void predict_diagonal_reference(TensorView<const T> unit_prototypes, TensorView<const T> w1, TensorView<const T> b1,
                                TensorView<const T> w2, TensorView<const T> b2, TensorView<T> context,
                                TensorView<T> hidden, TensorView<T> diagonal) {
  detail::check_diagonal_predictor("predict_diagonal_reference", unit_prototypes.shape(), w1.shape(), b1.shape(),
                                   w2.shape(), b2.shape());
  const index ways = unit_prototypes.dim(0), n = unit_prototypes.dim(1), h = b1.size();
  std::vector<double> z(static_cast<std::size_t>(n), 0.0), hid(static_cast<std::size_t>(h));
  for (index k = 0; k < ways; ++k)
    for (index i = 0; i < n; ++i) z[static_cast<std::size_t>(i)] += double(unit_prototypes(k, i)) / double(ways);
  for (index j = 0; j < h; ++j) {
    double pre = double(b1[j]);
    for (index i = 0; i < n; ++i) pre += double(w1(j, i)) * z[static_cast<std::size_t>(i)];
    hid[static_cast<std::size_t>(j)] = std::max(pre, 0.0);
    hidden[j] = T(hid[static_cast<std::size_t>(j)]);
  }
  for (index i = 0; i < n; ++i) {
    double g = double(b2[i]);
    for (index j = 0; j < h; ++j) g += double(w2(i, j)) * hid[static_cast<std::size_t>(j)];
    context[i] = T(z[static_cast<std::size_t>(i)]);
    diagonal[i] = T(1.0 + g);
  }
}

// ---------------------------------------------------------------------------
// The unit heads' whole scores as they read, from the raw queries A and
// prototypes P (the heads' `scores_reference`).

/// s_qk = τ â_q · p̂_k.
template <class T>
void cosine_scores_reference(TensorView<const T> a, TensorView<const T> p, T scale, TensorView<T> s) {
  detail::check_scores("cosine_scores_reference", a.shape(), p.shape(), s.shape());
  const index n = a.dim(1);
  for (index q = 0; q < a.dim(0); ++q)
    for (index k = 0; k < p.dim(0); ++k) {
      const auto u = detail::unit_row_reference(&a(q, 0), n);
      const auto v = detail::unit_row_reference(&p(k, 0), n);
      double dot = 0.0;
      for (std::size_t i = 0; i < u.size(); ++i) dot += u[i] * v[i];
      s(q, k) = T(double(scale) * dot);
    }
}

/// s_qk = τ â_qᵀ M p̂_k = τ Σ_ij â_qi M_ij p̂_kj with M_ij = [i = j] d_i + Σ_c U_ic V_jc
/// (U, V: D x r, or empty for M = diag(d)).
template <class T>
void bilinear_scores_reference(TensorView<const T> a, TensorView<const T> p, TensorView<const T> d,
                               TensorView<const T> u, TensorView<const T> v, T scale, TensorView<T> s) {
  detail::check_scores("bilinear_scores_reference", a.shape(), p.shape(), s.shape());
  const index n = a.dim(1), r = check_diagonal_low_rank("bilinear_scores_reference", d.shape(), u.shape(), v.shape());
  check_shape("bilinear_scores_reference", "diagonal d", d.shape(), Shape{n});
  for (index q = 0; q < a.dim(0); ++q)
    for (index k = 0; k < p.dim(0); ++k) {
      const auto x = detail::unit_row_reference(&a(q, 0), n);
      const auto y = detail::unit_row_reference(&p(k, 0), n);
      double sum = 0.0;
      for (index i = 0; i < n; ++i)
        for (index j = 0; j < n; ++j) {
          double m = i == j ? double(d[i]) : 0.0;
          for (index c = 0; c < r; ++c) m += double(u(i, c)) * double(v(j, c));
          sum += x[static_cast<std::size_t>(i)] * m * y[static_cast<std::size_t>(j)];
        }
      s(q, k) = T(double(scale) * sum);
    }
}

/// s_qk = τ â_qᵀ diag(m) p̂_k with m = 1 + W2 relu(W1 z + b1) + b2, z = mean_k p̂_k.
template <class T>
void predicted_diagonal_scores_reference(TensorView<const T> a, TensorView<const T> p, TensorView<const T> w1,
                                         TensorView<const T> b1, TensorView<const T> w2, TensorView<const T> b2,
                                         T scale, TensorView<T> s) {
  detail::check_scores("predicted_diagonal_scores_reference", a.shape(), p.shape(), s.shape());
  const index ways = p.dim(0), n = p.dim(1);
  // The prototypes' unit rows and the diagonal in double: the reference of
  // predict_diagonal on double copies, so that nothing is rounded to T.
  Tensor<double> unit(p.shape()), context(Shape{n}), hidden(Shape{b1.size()}), m(Shape{n});
  for (index k = 0; k < ways; ++k) {
    const auto y = detail::unit_row_reference(&p(k, 0), n);
    for (index i = 0; i < n; ++i) unit(k, i) = y[static_cast<std::size_t>(i)];
  }
  predict_diagonal_reference<double>(unit.view(), cast<double, T>(w1).view(), cast<double, T>(b1).view(),
                                     cast<double, T>(w2).view(), cast<double, T>(b2).view(), context.view(),
                                     hidden.view(), m.view());
  for (index q = 0; q < a.dim(0); ++q)
    for (index k = 0; k < ways; ++k) {
      const auto x = detail::unit_row_reference(&a(q, 0), n);
      double sum = 0.0;
      for (index i = 0; i < n; ++i) sum += x[static_cast<std::size_t>(i)] * m[i] * unit(k, i);
      s(q, k) = T(double(scale) * sum);
    }
}

}  // namespace nsl
