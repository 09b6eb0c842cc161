// nsl/fewshot/heads.hpp — the classifier of a few-shot episode: a score
// between each query embedding and each class prototype (NSL.md §7).
//
// An episode has `ways` classes with `shots` labelled support examples each
// and Q unlabelled queries. The embedding network maps all of them, in one
// batch, to rows of E (B x D, B = ways*shots + Q; support first, class-major:
// row k*shots + j is example j of class k; then the queries). A head is a
// layer from E to the scores S (Q x ways), which a softmax cross-entropy turns
// into a loss. Every head averages each class's support rows into its
// prototype
//
//     p_k = (1/shots) sum_j e_{k*shots + j}
//
// and scores query a against p_k (x^ = x / max(|x|, 1e-8)):
//
//   EuclideanHead     s = -|a - p|^2                      (prototypical networks)
//   CosineHead        s = tau a^ . p^                     (tau learned, from 10)
//   StaticNSHead      s = tau a^T M p^,  M = diag(d) + U V^T   (rank r; r = 0: diagonal)
//   DynamicNSHead     s = tau a^T diag(1 + g(z)) p^,  z = (1/ways) sum_k p^_k
//                     g(z) = W2 relu(W1 z + b1) + b2    (M predicted from the support set)
//
// The two neural-similarity heads start as the cosine head (d = 1, V = 0;
// W2 = 0, b2 = 0) and learn away from it. The arithmetic and its gradients
// are ops: prototypes, unit rows and the scores in nsl/ops/prototype_scores.hpp,
// the static head's M = diag(d) + U V^T in nsl/similarity/bilinear.hpp
// (`diagonal_low_rank_transform`); docs/fewshot.md derives them. The heads
// keep what backward needs and route the gradients: those with respect to E
// are assigned (support rows receive dL/dp_k / shots plus, for the dynamic
// head, their share through z), parameter gradients accumulated, as every
// nsl layer does.
//
// `infer` (const, Layer's inference contract) scores an episode laid out as
// the current set_episode with every intermediate (prototypes, unit rows, a
// predicted M) in the caller's workspace, bit for bit as forward does.
//
// `scores_reference` of each head is the formula as it reads, with loops in
// double precision (tests compare it with forward).
//
// CPU only: instantiating a head for another device stops the compilation
// with a message (no CUDA version of the ops exists).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nsl/core/random.hpp"
#include "nsl/layers/layer.hpp"
#include "nsl/ops/prototype_scores.hpp"
#include "nsl/similarity/bilinear.hpp"

namespace nsl {

enum class HeadKind { euclidean, cosine, static_ns, dynamic_ns };

inline const char* to_string(HeadKind h) {
  switch (h) {
    case HeadKind::euclidean: return "euclidean";
    case HeadKind::cosine: return "cosine";
    case HeadKind::static_ns: return "static_ns";
    case HeadKind::dynamic_ns: return "dynamic_ns";
  }
  return "?";
}

inline HeadKind parse_head(const std::string& name) {
  for (HeadKind h : {HeadKind::euclidean, HeadKind::cosine, HeadKind::static_ns, HeadKind::dynamic_ns})
    if (name == to_string(h)) return h;
  fail(ErrorKind::argument,
       cat("unknown head '", name, "' (expected euclidean, cosine, static_ns or dynamic_ns)"));
}

/// What every head shares: the episode's layout, the prototypes, and the
/// routing of gradients back to the support and query rows.
template <class T, class D = Cpu>
class PrototypeHead : public Layer<T, D> {
  static_assert(is_cpu_v<D>,
                "the few-shot heads (nsl/fewshot/heads.hpp) run on the CPU only: nsl/ops/prototype_scores.hpp "
                "has no CUDA version");

 public:
  explicit PrototypeHead(index dimension) : dimension_(dimension) {
    require(dimension >= 1, ErrorKind::argument, "few-shot head: dimension must be >= 1, got ", dimension);
  }

  /// The layout of the next forward passes: `ways` classes of `shots` support rows.
  void set_episode(index ways, index shots) {
    require(ways >= 2 && shots >= 1, ErrorKind::argument, "few-shot head: expected ways >= 2 and shots >= 1, got ",
            ways, " and ", shots);
    ways_ = ways;
    shots_ = shots;
  }
  index ways() const { return ways_; }
  index shots() const { return shots_; }
  index dimension() const { return dimension_; }
  virtual HeadKind kind() const = 0;

  Shape output_shape(const Shape& input) const override {
    // describe() only on failure: a string per call would allocate in infer.
    if (input.rank() < 2) fail(ErrorKind::shape, cat(this->describe(), ": expected embeddings [B, D...], got ", input));
    const index rows = input[0], features = input.size() / std::max<index>(rows, 1);
    if (features != dimension_)
      fail(ErrorKind::shape,
           cat(this->describe(), ": expected ", dimension_, " features per embedding, got ", input));
    if (rows <= ways_ * shots_)
      fail(ErrorKind::shape, cat(this->describe(), ": expected more than ways*shots = ", ways_ * shots_,
                                 " rows (the support set, then at least one query), got ", input));
    return Shape{rows - ways_ * shots_, ways_};
  }

  void forward_into(TensorView<const T, D> x, TensorView<T, D> y) override {
    check_shape(this->describe().c_str(), "scores", y.shape(), output_shape(x.shape()));
    const index support = ways_ * shots_, queries = x.dim(0) - support;
    const TensorView<const T> e = x.reshaped(Shape{x.dim(0), dimension_});
    prototypes_.resize(Shape{ways_, dimension_});
    class_prototypes<T>(row_block(e, 0, support), shots_, prototypes_.view());
    queries_.resize(Shape{queries, dimension_});
    copy<T>(row_block(e, support, queries), queries_.view());
    scores_forward(queries_.view(), prototypes_.view(), y);
    this->remember_input_shape(x.shape());
  }

  /// Const inference: the scores of the rows of x, laid out as the current
  /// episode (set_episode: ways*shots support rows, then the queries), with
  /// the prototypes, the queries and everything the scores need in `ws`;
  /// nothing of the head changes. Several threads may score at once (each
  /// with its own workspace) while nobody calls set_episode.
  void infer(TensorView<const T, D> x, TensorView<T, D> y, InferenceWorkspace& ws) const override {
    const Shape out = output_shape(x.shape());
    if (!(y.shape() == out))
      fail(ErrorKind::shape, cat(this->describe(), "::infer: scores: expected ", out, ", got ", y.shape()));
    const index support = ways_ * shots_, queries = x.dim(0) - support;
    const TensorView<const T> e = x.reshaped(Shape{x.dim(0), dimension_});
    auto& scratch = ws.scratch<EpisodeScratch>();
    const TensorView<T> prototypes = scratch_view(scratch.prototypes, Shape{ways_, dimension_});
    class_prototypes<T>(row_block(e, 0, support), shots_, prototypes);
    const TensorView<T> query_rows = scratch_view(scratch.queries, Shape{queries, dimension_});
    copy<T>(row_block(e, support, queries), query_rows);
    scores_infer(query_rows, prototypes, y, ws.child(0));
  }
  using Layer<T, D>::infer;

  void backward_into(TensorView<const T, D> dy, TensorView<T, D> dx) override {
    this->check_backward((this->describe() + "::backward").c_str(), dy.shape(), dx);
    dqueries_.resize(queries_.shape());
    dprototypes_.resize(prototypes_.shape());
    scores_backward(dy, dqueries_.view(), dprototypes_.view());
    if (!dx.size()) return;
    const index support = ways_ * shots_;
    const TensorView<T> de = dx.reshaped(Shape{dx.dim(0), dimension_});
    class_prototypes_backward<T>(dprototypes_.view(), shots_, row_block(de, 0, support));
    copy<T>(dqueries_.view(), row_block(de, support, dx.dim(0) - support));
  }

  /// The scores of `queries` (Q x D) against `prototypes` (ways x D) by the
  /// formula as it reads, in double (a plain reference for tests).
  virtual Tensor<T> scores_reference(TensorView<const T> queries, TensorView<const T> prototypes) const = 0;

  /// The last forward's prototypes (ways x D) and queries (Q x D).
  const Tensor<T>& prototypes() const { return prototypes_; }
  const Tensor<T>& queries() const { return queries_; }

 protected:
  /// S (Q x ways) from the queries and prototypes; keeps what backward needs.
  virtual void scores_forward(TensorView<const T> queries, TensorView<const T> prototypes, TensorView<T> scores) = 0;
  /// dL/dqueries and dL/dprototypes (assigned) from G = dL/dS; parameter
  /// gradients accumulated.
  virtual void scores_backward(TensorView<const T> dscores, TensorView<T> dqueries, TensorView<T> dprototypes) = 0;
  /// scores_forward's S for infer: const, its scratch in `ws`.
  virtual void scores_infer(TensorView<const T> queries, TensorView<const T> prototypes, TensorView<T> scores,
                            InferenceWorkspace& ws) const = 0;

  /// infer's prototypes and queries (in the caller's workspace).
  struct EpisodeScratch {
    Tensor<T> prototypes, queries;
  };
  /// A view of `shape` on `buffer`, which grows (only) to hold it.
  static TensorView<T> scratch_view(Tensor<T>& buffer, const Shape& shape) {
    if (buffer.size() < shape.size()) buffer.resize(Shape{shape.size()});
    return TensorView<T>(buffer.data(), shape);
  }

  /// Rows [first, first + count) of a matrix view.
  template <class U>
  static TensorView<U> row_block(TensorView<U> m, index first, index count) {
    return TensorView<U>(m.data() + first * m.dim(1), Shape{count, m.dim(1)});
  }

  index dimension_;
  index ways_ = 5, shots_ = 1;
  Tensor<T> prototypes_, queries_, dprototypes_, dqueries_;
};

/// s = -|a - p|^2 (no parameters): `euclidean_scores`.
template <class T, class D = Cpu>
class EuclideanHead : public PrototypeHead<T, D> {
 public:
  using PrototypeHead<T, D>::PrototypeHead;
  HeadKind kind() const override { return HeadKind::euclidean; }
  std::string describe() const override { return cat("EuclideanHead(", this->dimension_, ")"); }

  Tensor<T> scores_reference(TensorView<const T> a, TensorView<const T> p) const override {
    Tensor<T> s(Shape{a.dim(0), p.dim(0)});
    euclidean_scores_reference<T>(a, p, s.view());
    return s;
  }

 protected:
  void scores_forward(TensorView<const T> a, TensorView<const T> p, TensorView<T> s) override {
    euclidean_scores<T>(a, p, s, gemm_);
  }
  void scores_backward(TensorView<const T> g, TensorView<T> da, TensorView<T> dp) override {
    euclidean_scores_backward<T>(this->queries_.view(), this->prototypes_.view(), g, da, dp);
  }
  void scores_infer(TensorView<const T> a, TensorView<const T> p, TensorView<T> s,
                    InferenceWorkspace& ws) const override {
    euclidean_scores<T>(a, p, s, ws.scratch<GemmScratch<T>>());
  }

 private:
  GemmScratch<T> gemm_;  ///< forward's packing buffers
};

/// The heads that score unit vectors, s = tau a^ . (M p^): cosine (M = I)
/// and the neural-similarity heads. `transform` gives B = P^ M^T (row k is
/// M p^_k) and `transform_backward` turns dL/dB into dL/dP^ (assigned) and
/// the gradients of M's parameters (accumulated); the rest is
/// `normalize_rows` and `scaled_inner_scores`.
template <class T, class D = Cpu>
class ScaledUnitHead : public PrototypeHead<T, D> {
 public:
  ScaledUnitHead(index dimension, double initial_scale) : PrototypeHead<T, D>(dimension), scale_(Shape{1}), scale_grad_(Shape{1}) {
    require(initial_scale > 0.0, ErrorKind::argument, "few-shot head: the scale must start > 0, got ", initial_scale);
    scale_[0] = static_cast<T>(initial_scale);
  }
  T scale() const { return scale_[0]; }

  std::vector<Parameter<T, D>> parameters() override { return {{"scale", scale_.view(), scale_grad_.view(), false}}; }

 protected:
  virtual void transform(TensorView<const T> unit_prototypes, TensorView<T> transformed) = 0;
  virtual void transform_backward(TensorView<const T> dtransformed, TensorView<T> dunit_prototypes) = 0;
  /// transform for infer: const, its scratch in `ws`.
  virtual void transform_infer(TensorView<const T> unit_prototypes, TensorView<T> transformed,
                               InferenceWorkspace& ws) const = 0;

  // S = tau A^ B^T
  void scores_forward(TensorView<const T> a, TensorView<const T> p, TensorView<T> s) override {
    a_unit_.resize(a.shape());
    a_norms_.resize(Shape{a.dim(0)});
    p_unit_.resize(p.shape());
    p_norms_.resize(Shape{p.dim(0)});
    normalize_rows<T>(a, a_unit_.view(), a_norms_.view());
    normalize_rows<T>(p, p_unit_.view(), p_norms_.view());
    transformed_.resize(p.shape());
    transform(p_unit_.view(), transformed_.view());
    inner_.resize(s.shape());
    scaled_inner_scores<T>(a_unit_.view(), transformed_.view(), scale_[0], inner_.view(), s, gemm_);
  }
  // scores_forward with every intermediate in `ws` (the transform's own scratch in its child 0)
  void scores_infer(TensorView<const T> a, TensorView<const T> p, TensorView<T> s,
                    InferenceWorkspace& ws) const override {
    auto& scratch = ws.scratch<UnitScratch>();
    const TensorView<T> a_unit = this->scratch_view(scratch.a_unit, a.shape());
    const TensorView<T> a_norms = this->scratch_view(scratch.a_norms, Shape{a.dim(0)});
    const TensorView<T> p_unit = this->scratch_view(scratch.p_unit, p.shape());
    const TensorView<T> p_norms = this->scratch_view(scratch.p_norms, Shape{p.dim(0)});
    normalize_rows<T>(a, a_unit, a_norms);
    normalize_rows<T>(p, p_unit, p_norms);
    const TensorView<T> transformed = this->scratch_view(scratch.transformed, p.shape());
    transform_infer(p_unit, transformed, ws.child(0));
    const TensorView<T> inner = this->scratch_view(scratch.inner, s.shape());
    scaled_inner_scores<T>(a_unit, transformed, scale_[0], inner, s, scratch.gemm);
  }
  // dtau = <G, A^ B^T>;  dA^ = tau G B;  dB = tau G^T A^;  then through M and the normalisations
  void scores_backward(TensorView<const T> g, TensorView<T> da, TensorView<T> dp) override {
    da_unit_.resize(a_unit_.shape());
    dtransformed_.resize(transformed_.shape());
    dp_unit_.resize(p_unit_.shape());
    scaled_inner_scores_backward<T>(a_unit_.view(), transformed_.view(), inner_.view(), scale_[0], g, da_unit_.view(),
                                    dtransformed_.view(), scale_grad_.view());
    transform_backward(dtransformed_.view(), dp_unit_.view());
    normalize_rows_backward<T>(a_unit_.view(), a_norms_.view(), da_unit_.view(), da);
    normalize_rows_backward<T>(p_unit_.view(), p_norms_.view(), dp_unit_.view(), dp);
  }

  /// scores_infer's scratch: scores_forward's intermediates.
  struct UnitScratch {
    Tensor<T> a_unit, a_norms, p_unit, p_norms, transformed, inner;
    GemmScratch<T> gemm;
  };

  Tensor<T> scale_, scale_grad_;
  Tensor<T> a_unit_, a_norms_, p_unit_, p_norms_, transformed_, inner_;  ///< kept for backward
  Tensor<T> da_unit_, dtransformed_, dp_unit_;                           ///< backward's scratch
  GemmScratch<T> gemm_;                                                  ///< forward's packing buffers
};

/// s = tau a^ . p^ (learned tau).
template <class T, class D = Cpu>
class CosineHead : public ScaledUnitHead<T, D> {
 public:
  explicit CosineHead(index dimension, double initial_scale = 10.0) : ScaledUnitHead<T, D>(dimension, initial_scale) {}
  HeadKind kind() const override { return HeadKind::cosine; }
  std::string describe() const override { return cat("CosineHead(", this->dimension_, ")"); }

  Tensor<T> scores_reference(TensorView<const T> a, TensorView<const T> p) const override {
    Tensor<T> s(Shape{a.dim(0), p.dim(0)});
    cosine_scores_reference<T>(a, p, this->scale(), s.view());
    return s;
  }

 protected:
  void transform(TensorView<const T> p_unit, TensorView<T> b) override { copy<T>(p_unit, b); }
  void transform_backward(TensorView<const T> db, TensorView<T> dp_unit) override { copy<T>(db, dp_unit); }
  void transform_infer(TensorView<const T> p_unit, TensorView<T> b, InferenceWorkspace&) const override {
    copy<T>(p_unit, b);
  }
};

/// s = tau a^T M p^ with a learned M = diag(d) + U V^T (U, V: D x rank).
template <class T, class D = Cpu>
class StaticNSHead : public ScaledUnitHead<T, D> {
 public:
  StaticNSHead(index dimension, index rank, Rng& rng, double initial_scale = 10.0)
      : ScaledUnitHead<T, D>(dimension, initial_scale),
        diagonal_(Shape{dimension}),
        diagonal_grad_(Shape{dimension}),
        left_(Shape{dimension, rank}),
        left_grad_(Shape{dimension, rank}),
        right_(Shape{dimension, rank}),
        right_grad_(Shape{dimension, rank}) {
    require(rank >= 0 && rank <= dimension, ErrorKind::argument, "StaticNSHead: rank must be in [0, ", dimension,
            "], got ", rank);
    diagonal_.vec().setOnes();
    // M starts at I: U random, V zero (so V's gradient is not zero).
    if (rank > 0) fill_normal<T>(left_.view(), rng, 0.0, 1.0 / std::sqrt(double(dimension)));
  }
  HeadKind kind() const override { return HeadKind::static_ns; }
  index rank() const { return left_.dim(1); }
  std::string describe() const override { return cat("StaticNSHead(", this->dimension_, ", rank ", rank(), ")"); }

  std::vector<Parameter<T, D>> parameters() override {
    auto all = ScaledUnitHead<T, D>::parameters();
    all.push_back({"diagonal", diagonal_.view(), diagonal_grad_.view(), false});
    if (rank() > 0) {
      all.push_back({"left", left_.view(), left_grad_.view(), true});
      all.push_back({"right", right_.view(), right_grad_.view(), true});
    }
    return all;
  }
  /// M = diag(d) + U V^T, D x D.
  Matrix<T> similarity() const { return diagonal_low_rank_matrix<T>(diagonal_.view(), left_.view(), right_.view()); }

  Tensor<T> scores_reference(TensorView<const T> a, TensorView<const T> p) const override {
    Tensor<T> s(Shape{a.dim(0), p.dim(0)});
    bilinear_scores_reference<T>(a, p, diagonal_.view(), left_.view(), right_.view(), this->scale(), s.view());
    return s;
  }

 protected:
  // B = P^ M^T = P^ diag(d) + (P^ V) U^T
  void transform(TensorView<const T> p_unit, TensorView<T> b) override {
    projected_.resize(Shape{p_unit.dim(0), rank()});
    diagonal_low_rank_transform<T>(diagonal_.view(), left_.view(), right_.view(), p_unit, projected_.view(), b);
  }
  // the same with P^ V in `ws`
  void transform_infer(TensorView<const T> p_unit, TensorView<T> b, InferenceWorkspace& ws) const override {
    Tensor<T>& projected = ws.scratch<StaticScratch>().projected;
    const TensorView<T> xv = this->scratch_view(projected, Shape{p_unit.dim(0), rank()});
    diagonal_low_rank_transform<T>(diagonal_.view(), left_.view(), right_.view(), p_unit, xv, b);
  }
  // dP^ = dB diag(d) + (dB U) V^T;  dd = colsum(dB .* P^);  dU = dB^T (P^ V);  dV = P^^T (dB U)
  void transform_backward(TensorView<const T> db, TensorView<T> dp_unit) override {
    diagonal_low_rank_transform_backward<T>(diagonal_.view(), left_.view(), right_.view(), this->p_unit_.view(),
                                            projected_.view(), db, dp_unit, diagonal_grad_.view(), left_grad_.view(),
                                            right_grad_.view(), workspace_);
  }

 private:
  struct StaticScratch {
    Tensor<T> projected;  ///< P^ V
  };
  Tensor<T> diagonal_, diagonal_grad_, left_, left_grad_, right_, right_grad_;
  Tensor<T> projected_;  ///< P^ V, kept for backward
  DiagonalLowRankWorkspace<T> workspace_;
};

/// s = tau a^T diag(1 + g) p^ with g = W2 relu(W1 z + b1) + b2 predicted from
/// the episode's context z = mean_k p^_k (hidden units H): `predict_diagonal`,
/// then B = P^ diag(m) by `diagonal_low_rank_transform` with no low-rank part.
template <class T, class D = Cpu>
class DynamicNSHead : public ScaledUnitHead<T, D> {
 public:
  DynamicNSHead(index dimension, index hidden, Rng& rng, double initial_scale = 10.0)
      : ScaledUnitHead<T, D>(dimension, initial_scale),
        w1_(Shape{hidden, dimension}),
        w1_grad_(Shape{hidden, dimension}),
        b1_(Shape{hidden}),
        b1_grad_(Shape{hidden}),
        w2_(Shape{dimension, hidden}),
        w2_grad_(Shape{dimension, hidden}),
        b2_(Shape{dimension}),
        b2_grad_(Shape{dimension}),
        context_(Shape{dimension}),
        hidden_(Shape{hidden}),
        diagonal_(Shape{dimension}),
        ddiagonal_(Shape{dimension}) {
    require(hidden >= 1, ErrorKind::argument, "DynamicNSHead: hidden must be >= 1, got ", hidden);
    // W1 ~ N(0, 2): z is a mean of unit vectors (|z| <= 1), so W1 z is of
    // order one; W2 = 0, b2 = 0: M starts at I.
    fill_normal<T>(w1_.view(), rng, 0.0, std::sqrt(2.0));
  }
  HeadKind kind() const override { return HeadKind::dynamic_ns; }
  index hidden() const { return b1_.dim(0); }
  std::string describe() const override { return cat("DynamicNSHead(", this->dimension_, ", hidden ", hidden(), ")"); }

  std::vector<Parameter<T, D>> parameters() override {
    auto all = ScaledUnitHead<T, D>::parameters();
    all.push_back({"predictor.weight1", w1_.view(), w1_grad_.view(), true});
    all.push_back({"predictor.bias1", b1_.view(), b1_grad_.view(), false});
    all.push_back({"predictor.weight2", w2_.view(), w2_grad_.view(), true});
    all.push_back({"predictor.bias2", b2_.view(), b2_grad_.view(), false});
    return all;
  }
  /// The last forward's diagonal of M, 1 + g (D).
  const Tensor<T>& predicted_diagonal() const { return diagonal_; }

  Tensor<T> scores_reference(TensorView<const T> a, TensorView<const T> p) const override {
    Tensor<T> s(Shape{a.dim(0), p.dim(0)});
    predicted_diagonal_scores_reference<T>(a, p, w1_.view(), b1_.view(), w2_.view(), b2_.view(), this->scale(), s.view());
    return s;
  }

 protected:
  // z = mean_k p^_k;  m = 1 + W2 relu(W1 z + b1) + b2;  B = P^ diag(m)
  void transform(TensorView<const T> p_unit, TensorView<T> b) override {
    predict_diagonal<T>(p_unit, w1_.view(), b1_.view(), w2_.view(), b2_.view(), context_.view(), hidden_.view(),
                        diagonal_.view());
    diagonal_low_rank_transform<T>(diagonal_.view(), {}, {}, p_unit, {}, b);
  }
  // the same with z, h and m in `ws`
  void transform_infer(TensorView<const T> p_unit, TensorView<T> b, InferenceWorkspace& ws) const override {
    auto& scratch = ws.scratch<DynamicScratch>();
    const TensorView<T> context = this->scratch_view(scratch.context, Shape{this->dimension_});
    const TensorView<T> hidden_units = this->scratch_view(scratch.hidden, Shape{hidden()});
    const TensorView<T> diagonal = this->scratch_view(scratch.diagonal, Shape{this->dimension_});
    predict_diagonal<T>(p_unit, w1_.view(), b1_.view(), w2_.view(), b2_.view(), context, hidden_units, diagonal);
    diagonal_low_rank_transform<T>(diagonal, {}, {}, p_unit, {}, b);
  }
  // dm = colsum(dB .* P^);  dP^ = dB diag(m), then the predictor's backward
  // adds (1/ways) 1 dz^T (every prototype reaches z) and accumulates W1, b1, W2, b2's gradients.
  void transform_backward(TensorView<const T> db, TensorView<T> dp_unit) override {
    ddiagonal_.set_zero();
    diagonal_low_rank_transform_backward<T>(diagonal_.view(), {}, {}, this->p_unit_.view(), {}, db, dp_unit,
                                            ddiagonal_.view(), {}, {}, transform_workspace_);
    predict_diagonal_backward<T>(w1_.view(), w2_.view(), context_.view(), hidden_.view(), ddiagonal_.view(),
                                 w1_grad_.view(), b1_grad_.view(), w2_grad_.view(), b2_grad_.view(), dp_unit,
                                 predictor_workspace_);
  }

 private:
  struct DynamicScratch {
    Tensor<T> context, hidden, diagonal;  ///< z, relu(W1 z + b1) and m
  };
  Tensor<T> w1_, w1_grad_, b1_, b1_grad_, w2_, w2_grad_, b2_, b2_grad_;
  Tensor<T> context_, hidden_, diagonal_;  ///< z, relu(W1 z + b1) and m of the last forward
  Tensor<T> ddiagonal_;                    ///< backward's dL/dm
  DiagonalLowRankWorkspace<T> transform_workspace_;
  DiagonalPredictorWorkspace<T> predictor_workspace_;
};

struct HeadOptions {
  index rank = 0;        ///< StaticNSHead: low-rank part (0: diagonal M)
  index hidden = 64;     ///< DynamicNSHead: predictor width
  double scale = 10.0;   ///< initial tau of the cosine and NS heads
};

/// The head `kind` for D-dimensional embeddings.
template <class T, class D = Cpu>
std::unique_ptr<PrototypeHead<T, D>> make_head(HeadKind kind, index dimension, Rng& rng, const HeadOptions& o = {}) {
  switch (kind) {
    case HeadKind::euclidean: return std::make_unique<EuclideanHead<T, D>>(dimension);
    case HeadKind::cosine: return std::make_unique<CosineHead<T, D>>(dimension, o.scale);
    case HeadKind::static_ns: return std::make_unique<StaticNSHead<T, D>>(dimension, o.rank, rng, o.scale);
    case HeadKind::dynamic_ns: return std::make_unique<DynamicNSHead<T, D>>(dimension, o.hidden, rng, o.scale);
  }
  fail(ErrorKind::argument, "make_head: unknown head");
}

}  // namespace nsl
