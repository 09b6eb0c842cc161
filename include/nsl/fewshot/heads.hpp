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
// W2 = 0, b2 = 0) and learn away from it. Each head's backward is written
// out below; docs/fewshot.md derives it. The gradients with respect to E
// are assigned (support rows receive dL/dp_k / shots plus, for the dynamic
// head, their share through z), parameter gradients accumulated, as every
// nsl layer does. CPU only.
//
// `scores_reference` of each head is the formula as it reads, with loops in
// double precision (tests compare it with forward).
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "nsl/core/random.hpp"
#include "nsl/layers/layer.hpp"

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

namespace detail {
inline constexpr double head_norm_floor = 1e-8;

/// Rows of x divided by their norms (floored); `norms` receives them.
template <class T>
void normalize_rows(const Matrix<T>& x, Matrix<T>& unit, Vector<T>& norms) {
  norms = x.rowwise().norm().cwiseMax(T(head_norm_floor));
  unit = norms.cwiseInverse().asDiagonal() * x;
}
/// dL/dx from dL/dx^ for x^ = x / max(|x|, floor): (g - x^ (x^ . g)) / |x|
/// (just g / floor for rows under the floor, where x^ = x / floor).
template <class T>
Matrix<T> normalize_rows_backward(const Matrix<T>& unit, const Vector<T>& norms, const Matrix<T>& dunit) {
  Matrix<T> dx(unit.rows(), unit.cols());
  for (index i = 0; i < unit.rows(); ++i) {
    if (norms[i] > T(head_norm_floor)) {
      const T along = unit.row(i).dot(dunit.row(i));
      dx.row(i) = (dunit.row(i) - along * unit.row(i)) / norms[i];
    } else {
      dx.row(i) = dunit.row(i) / norms[i];
    }
  }
  return dx;
}
template <class T>
std::vector<double> unit_reference(const T* x, index n) {
  double norm = 0.0;
  for (index i = 0; i < n; ++i) norm += double(x[i]) * double(x[i]);
  norm = std::max(std::sqrt(norm), head_norm_floor);
  std::vector<double> u(static_cast<std::size_t>(n));
  for (index i = 0; i < n; ++i) u[static_cast<std::size_t>(i)] = double(x[i]) / norm;
  return u;
}
}  // namespace detail

/// What every head shares: the episode's layout, the prototypes, and the
/// routing of gradients back to the support and query rows.
template <class T>
class PrototypeHead : public Layer<T> {
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
    require(input.rank() >= 2, ErrorKind::shape, this->describe(), ": expected embeddings [B, D...], got ", input);
    const index rows = input[0], features = input.size() / std::max<index>(rows, 1);
    require(features == dimension_, ErrorKind::shape, this->describe(), ": expected ", dimension_,
            " features per embedding, got ", input);
    require(rows > ways_ * shots_, ErrorKind::shape, this->describe(), ": expected more than ways*shots = ", ways_ * shots_,
            " rows (the support set, then at least one query), got ", input);
    return Shape{rows - ways_ * shots_, ways_};
  }

  void forward_into(TensorView<const T> x, TensorView<T> y) override {
    check_shape(this->describe().c_str(), "scores", y.shape(), output_shape(x.shape()));
    const auto e = x.matrix(x.dim(0), dimension_);
    const index support = ways_ * shots_, queries = x.dim(0) - support;
    prototypes_.resize(ways_, dimension_);
    for (index k = 0; k < ways_; ++k)
      prototypes_.row(k) = e.middleRows(k * shots_, shots_).colwise().mean();
    queries_ = e.bottomRows(queries);
    auto s = y.matrix(queries, ways_);
    scores_forward(queries_, prototypes_, s);
    this->remember_input_shape(x.shape());
  }

  void backward_into(TensorView<const T> dy, TensorView<T> dx) override {
    this->check_backward((this->describe() + "::backward").c_str(), dy.shape(), dx);
    const index support = ways_ * shots_;
    const Matrix<T> g = dy.matrix(dy.dim(0), ways_);
    Matrix<T> dqueries, dprototypes;
    scores_backward(g, dqueries, dprototypes);
    if (!dx.size()) return;
    auto de = dx.matrix(dx.dim(0), dimension_);
    for (index k = 0; k < ways_; ++k)
      de.middleRows(k * shots_, shots_).rowwise() = dprototypes.row(k) / T(shots_);
    de.bottomRows(dx.dim(0) - support) = dqueries;
  }

  /// The scores of `queries` (Q x D) against `prototypes` (ways x D) by the
  /// formula as it reads, in double (a plain reference for tests).
  virtual std::vector<double> scores_reference(const Matrix<T>& queries, const Matrix<T>& prototypes) const = 0;

  /// The last forward's prototypes (ways x D) and queries (Q x D).
  const Matrix<T>& prototypes() const { return prototypes_; }
  const Matrix<T>& queries() const { return queries_; }

 protected:
  /// S (Q x ways) from the queries and prototypes; keeps what backward needs.
  virtual void scores_forward(const Matrix<T>& queries, const Matrix<T>& prototypes,
                              detail::MatrixMap<T>& scores) = 0;
  /// dL/dqueries and dL/dprototypes (assigned) from G = dL/dS; parameter
  /// gradients accumulated.
  virtual void scores_backward(const Matrix<T>& g, Matrix<T>& dqueries, Matrix<T>& dprototypes) = 0;

  index dimension_;
  index ways_ = 5, shots_ = 1;
  Matrix<T> prototypes_, queries_;
};

/// s = -|a - p|^2 (no parameters).
template <class T>
class EuclideanHead : public PrototypeHead<T> {
 public:
  using PrototypeHead<T>::PrototypeHead;
  HeadKind kind() const override { return HeadKind::euclidean; }
  std::string describe() const override { return cat("EuclideanHead(", this->dimension_, ")"); }

  std::vector<double> scores_reference(const Matrix<T>& a, const Matrix<T>& p) const override {
    std::vector<double> s;
    for (index q = 0; q < a.rows(); ++q)
      for (index k = 0; k < p.rows(); ++k) {
        double d2 = 0.0;
        for (index i = 0; i < a.cols(); ++i) d2 += (double(a(q, i)) - double(p(k, i))) * (double(a(q, i)) - double(p(k, i)));
        s.push_back(-d2);
      }
    return s;
  }

 protected:
  // S = 2 A P^T - |a|^2 1^T - 1 |p|^2^T
  void scores_forward(const Matrix<T>& a, const Matrix<T>& p, detail::MatrixMap<T>& s) override {
    s.noalias() = T(2) * a * p.transpose();
    s.colwise() -= a.rowwise().squaredNorm();
    s.rowwise() -= p.rowwise().squaredNorm().transpose();
  }
  // dA = 2 G P - 2 diag(G 1) A;  dP = 2 G^T A - 2 diag(G^T 1) P
  void scores_backward(const Matrix<T>& g, Matrix<T>& da, Matrix<T>& dp) override {
    const Matrix<T>& a = this->queries_;
    const Matrix<T>& p = this->prototypes_;
    da.noalias() = T(2) * g * p;
    da -= T(2) * (g.rowwise().sum().asDiagonal() * a);
    dp.noalias() = T(2) * g.transpose() * a;
    dp -= T(2) * (g.colwise().sum().transpose().asDiagonal() * p);
  }
};

/// The heads that score unit vectors, s = tau a^ . (M p^): cosine (M = I)
/// and the neural-similarity heads. `transform` gives B = P^ M^T (row k is
/// M p^_k) and `transform_backward` turns dL/dB into dL/dP^ (assigned) and
/// the gradients of M's parameters (accumulated).
template <class T>
class ScaledUnitHead : public PrototypeHead<T> {
 public:
  ScaledUnitHead(index dimension, double initial_scale) : PrototypeHead<T>(dimension), scale_(Shape{1}), scale_grad_(Shape{1}) {
    require(initial_scale > 0.0, ErrorKind::argument, "few-shot head: the scale must start > 0, got ", initial_scale);
    scale_[0] = static_cast<T>(initial_scale);
  }
  T scale() const { return scale_[0]; }

  std::vector<Parameter<T>> parameters() override { return {{"scale", scale_.view(), scale_grad_.view(), false}}; }

 protected:
  virtual void transform(const Matrix<T>& unit_prototypes, Matrix<T>& b) = 0;
  virtual void transform_backward(const Matrix<T>& db, Matrix<T>& dunit_prototypes) = 0;

  // S = tau A^ B^T
  void scores_forward(const Matrix<T>& a, const Matrix<T>& p, detail::MatrixMap<T>& s) override {
    detail::normalize_rows(a, a_unit_, a_norms_);
    detail::normalize_rows(p, p_unit_, p_norms_);
    transform(p_unit_, b_);
    raw_.noalias() = a_unit_ * b_.transpose();
    s = scale_[0] * raw_;
  }
  // dtau = <G, A^ B^T>;  dA^ = tau G B;  dB = tau G^T A^
  void scores_backward(const Matrix<T>& g, Matrix<T>& da, Matrix<T>& dp) override {
    scale_grad_[0] += g.cwiseProduct(raw_).sum();
    const Matrix<T> da_unit = scale_[0] * (g * b_);
    const Matrix<T> db = scale_[0] * (g.transpose() * a_unit_);
    Matrix<T> dp_unit;
    transform_backward(db, dp_unit);
    da = detail::normalize_rows_backward(a_unit_, a_norms_, da_unit);
    dp = detail::normalize_rows_backward(p_unit_, p_norms_, dp_unit);
  }

  Tensor<T> scale_, scale_grad_;
  Matrix<T> a_unit_, p_unit_, b_, raw_;
  Vector<T> a_norms_, p_norms_;
};

/// s = tau a^ . p^ (learned tau).
template <class T>
class CosineHead : public ScaledUnitHead<T> {
 public:
  explicit CosineHead(index dimension, double initial_scale = 10.0) : ScaledUnitHead<T>(dimension, initial_scale) {}
  HeadKind kind() const override { return HeadKind::cosine; }
  std::string describe() const override { return cat("CosineHead(", this->dimension_, ")"); }

  std::vector<double> scores_reference(const Matrix<T>& a, const Matrix<T>& p) const override {
    std::vector<double> s;
    for (index q = 0; q < a.rows(); ++q)
      for (index k = 0; k < p.rows(); ++k) {
        const auto u = detail::unit_reference(a.row(q).data(), a.cols());
        const auto v = detail::unit_reference(p.row(k).data(), p.cols());
        double dot = 0.0;
        for (std::size_t i = 0; i < u.size(); ++i) dot += u[i] * v[i];
        s.push_back(double(this->scale()) * dot);
      }
    return s;
  }

 protected:
  void transform(const Matrix<T>& p_unit, Matrix<T>& b) override { b = p_unit; }
  void transform_backward(const Matrix<T>& db, Matrix<T>& dp_unit) override { dp_unit = db; }
};

/// s = tau a^T M p^ with a learned M = diag(d) + U V^T (U, V: D x rank).
template <class T>
class StaticNSHead : public ScaledUnitHead<T> {
 public:
  StaticNSHead(index dimension, index rank, Rng& rng, double initial_scale = 10.0)
      : ScaledUnitHead<T>(dimension, initial_scale),
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

  std::vector<Parameter<T>> parameters() override {
    auto all = ScaledUnitHead<T>::parameters();
    all.push_back({"diagonal", diagonal_.view(), diagonal_grad_.view(), false});
    if (rank() > 0) {
      all.push_back({"left", left_.view(), left_grad_.view(), true});
      all.push_back({"right", right_.view(), right_grad_.view(), true});
    }
    return all;
  }
  /// M = diag(d) + U V^T, D x D.
  Matrix<T> similarity() const {
    Matrix<T> m = left_.matrix() * right_.matrix().transpose();
    m.diagonal() += diagonal_.vec();
    return m;
  }

  std::vector<double> scores_reference(const Matrix<T>& a, const Matrix<T>& p) const override {
    const index n = a.cols(), r = rank();
    std::vector<double> s;
    for (index q = 0; q < a.rows(); ++q)
      for (index k = 0; k < p.rows(); ++k) {
        const auto u = detail::unit_reference(a.row(q).data(), n);
        const auto v = detail::unit_reference(p.row(k).data(), n);
        double sum = 0.0;  // sum_ij u_i M_ij v_j
        for (index i = 0; i < n; ++i)
          for (index j = 0; j < n; ++j) {
            double m = i == j ? double(diagonal_[i]) : 0.0;
            for (index c = 0; c < r; ++c) m += double(left_[i * r + c]) * double(right_[j * r + c]);
            sum += u[static_cast<std::size_t>(i)] * m * v[static_cast<std::size_t>(j)];
          }
        s.push_back(double(this->scale()) * sum);
      }
    return s;
  }

 protected:
  // B = P^ M^T = P^ diag(d) + (P^ V) U^T
  void transform(const Matrix<T>& p_unit, Matrix<T>& b) override {
    b = p_unit * diagonal_.vec().asDiagonal();
    if (rank() > 0) {
      pv_.noalias() = p_unit * right_.matrix();
      b.noalias() += pv_ * left_.matrix().transpose();
    }
  }
  // dP^ = dB diag(d) + (dB U) V^T;  dd = colsum(dB .* P^);  dU = dB^T (P^ V);  dV = P^^T (dB U)
  void transform_backward(const Matrix<T>& db, Matrix<T>& dp_unit) override {
    const Matrix<T>& p_unit = this->p_unit_;
    dp_unit = db * diagonal_.vec().asDiagonal();
    diagonal_grad_.vec() += db.cwiseProduct(p_unit).colwise().sum().transpose();
    if (rank() > 0) {
      const Matrix<T> dbu = db * left_.matrix();
      dp_unit.noalias() += dbu * right_.matrix().transpose();
      left_grad_.matrix().noalias() += db.transpose() * pv_;
      right_grad_.matrix().noalias() += p_unit.transpose() * dbu;
    }
  }

 private:
  Tensor<T> diagonal_, diagonal_grad_, left_, left_grad_, right_, right_grad_;
  Matrix<T> pv_;
};

/// s = tau a^T diag(1 + g) p^ with g = W2 relu(W1 z + b1) + b2 predicted from
/// the episode's context z = mean_k p^_k (hidden units H).
template <class T>
class DynamicNSHead : public ScaledUnitHead<T> {
 public:
  DynamicNSHead(index dimension, index hidden, Rng& rng, double initial_scale = 10.0)
      : ScaledUnitHead<T>(dimension, initial_scale),
        w1_(Shape{hidden, dimension}),
        w1_grad_(Shape{hidden, dimension}),
        b1_(Shape{hidden}),
        b1_grad_(Shape{hidden}),
        w2_(Shape{dimension, hidden}),
        w2_grad_(Shape{dimension, hidden}),
        b2_(Shape{dimension}),
        b2_grad_(Shape{dimension}) {
    require(hidden >= 1, ErrorKind::argument, "DynamicNSHead: hidden must be >= 1, got ", hidden);
    // W1 ~ N(0, 2): z is a mean of unit vectors (|z| <= 1), so W1 z is of
    // order one; W2 = 0, b2 = 0: M starts at I.
    fill_normal<T>(w1_.view(), rng, 0.0, std::sqrt(2.0));
  }
  HeadKind kind() const override { return HeadKind::dynamic_ns; }
  index hidden() const { return b1_.dim(0); }
  std::string describe() const override { return cat("DynamicNSHead(", this->dimension_, ", hidden ", hidden(), ")"); }

  std::vector<Parameter<T>> parameters() override {
    auto all = ScaledUnitHead<T>::parameters();
    all.push_back({"predictor.weight1", w1_.view(), w1_grad_.view(), true});
    all.push_back({"predictor.bias1", b1_.view(), b1_grad_.view(), false});
    all.push_back({"predictor.weight2", w2_.view(), w2_grad_.view(), true});
    all.push_back({"predictor.bias2", b2_.view(), b2_grad_.view(), false});
    return all;
  }
  /// The last forward's diagonal of M, 1 + g (D).
  const Vector<T>& predicted_diagonal() const { return m_; }

  std::vector<double> scores_reference(const Matrix<T>& a, const Matrix<T>& p) const override {
    const index n = a.cols(), h = hidden(), ways = p.rows();
    std::vector<double> z(static_cast<std::size_t>(n), 0.0), m(static_cast<std::size_t>(n));
    for (index k = 0; k < ways; ++k) {
      const auto v = detail::unit_reference(p.row(k).data(), n);
      for (index i = 0; i < n; ++i) z[static_cast<std::size_t>(i)] += v[static_cast<std::size_t>(i)] / double(ways);
    }
    std::vector<double> hid(static_cast<std::size_t>(h));
    for (index j = 0; j < h; ++j) {
      double pre = double(b1_[j]);
      for (index i = 0; i < n; ++i) pre += double(w1_[j * n + i]) * z[static_cast<std::size_t>(i)];
      hid[static_cast<std::size_t>(j)] = std::max(pre, 0.0);
    }
    for (index i = 0; i < n; ++i) {
      double g = double(b2_[i]);
      for (index j = 0; j < h; ++j) g += double(w2_[i * h + j]) * hid[static_cast<std::size_t>(j)];
      m[static_cast<std::size_t>(i)] = 1.0 + g;
    }
    std::vector<double> s;
    for (index q = 0; q < a.rows(); ++q)
      for (index k = 0; k < ways; ++k) {
        const auto u = detail::unit_reference(a.row(q).data(), n);
        const auto v = detail::unit_reference(p.row(k).data(), n);
        double sum = 0.0;
        for (std::size_t i = 0; i < u.size(); ++i) sum += u[i] * m[i] * v[i];
        s.push_back(double(this->scale()) * sum);
      }
    return s;
  }

 protected:
  // z = mean_k p^_k;  pre = W1 z + b1;  m = 1 + W2 relu(pre) + b2;  B = P^ diag(m)
  void transform(const Matrix<T>& p_unit, Matrix<T>& b) override {
    z_ = p_unit.colwise().mean().transpose();
    pre_ = w1_.matrix() * z_ + b1_.vec();
    hid_ = pre_.cwiseMax(T(0));
    m_ = (w2_.matrix() * hid_ + b2_.vec()).array() + T(1);
    b = p_unit * m_.asDiagonal();
  }
  // dm = colsum(dB .* P^);  dW2 = dm h^T;  db2 = dm;  dpre = (W2^T dm) .* [pre > 0];
  // dW1 = dpre z^T;  db1 = dpre;  dz = W1^T dpre;  dP^ = dB diag(m) + (1/ways) 1 dz^T
  void transform_backward(const Matrix<T>& db, Matrix<T>& dp_unit) override {
    const Matrix<T>& p_unit = this->p_unit_;
    const Vector<T> dm = db.cwiseProduct(p_unit).colwise().sum().transpose();
    w2_grad_.matrix().noalias() += dm * hid_.transpose();
    b2_grad_.vec() += dm;
    Vector<T> dpre = w2_.matrix().transpose() * dm;
    for (index j = 0; j < dpre.size(); ++j)
      if (!(pre_[j] > T(0))) dpre[j] = T(0);
    w1_grad_.matrix().noalias() += dpre * z_.transpose();
    b1_grad_.vec() += dpre;
    const Vector<T> dz = w1_.matrix().transpose() * dpre;
    dp_unit = db * m_.asDiagonal();
    dp_unit.rowwise() += dz.transpose() / T(p_unit.rows());
  }

 private:
  Tensor<T> w1_, w1_grad_, b1_, b1_grad_, w2_, w2_grad_, b2_, b2_grad_;
  Vector<T> z_, pre_, hid_, m_;
};

struct HeadOptions {
  index rank = 0;        ///< StaticNSHead: low-rank part (0: diagonal M)
  index hidden = 64;     ///< DynamicNSHead: predictor width
  double scale = 10.0;   ///< initial tau of the cosine and NS heads
};

/// The head `kind` for D-dimensional embeddings.
template <class T>
std::unique_ptr<PrototypeHead<T>> make_head(HeadKind kind, index dimension, Rng& rng, const HeadOptions& o = {}) {
  switch (kind) {
    case HeadKind::euclidean: return std::make_unique<EuclideanHead<T>>(dimension);
    case HeadKind::cosine: return std::make_unique<CosineHead<T>>(dimension, o.scale);
    case HeadKind::static_ns: return std::make_unique<StaticNSHead<T>>(dimension, o.rank, rng, o.scale);
    case HeadKind::dynamic_ns: return std::make_unique<DynamicNSHead<T>>(dimension, o.hidden, rng, o.scale);
  }
  fail(ErrorKind::argument, "make_head: unknown head");
}

}  // namespace nsl
