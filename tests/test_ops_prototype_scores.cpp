#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "nsl/check/gradcheck.hpp"
#include "nsl/layers/layer.hpp"
#include "nsl/ops/prototype_scores.hpp"
#include "nsl/similarity/bilinear.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;
using nsl::TensorView;

namespace {

// An op as gradcheck sees a layer: `x` is the op's input, the other
// differentiable arguments are held as parameters. run_backward assigns dx
// and adds the parameters' gradients (what the op assigns goes through a
// NaN-filled buffer first: see nan_filled).
struct ScoresOpUnderCheck {
  std::function<Shape(const Shape&)> output_shape_of;
  std::function<void(TensorView<const double>, TensorView<double>)> run_forward;
  std::function<void(TensorView<const double>, TensorView<double>)> run_backward;
  std::vector<nsl::Parameter<double>> params;

  Shape output_shape(const Shape& s) const { return output_shape_of(s); }
  Tensor<double> forward(TensorView<const double> x) {
    Tensor<double> y(output_shape(x.shape()));
    run_forward(x, y.view());
    return y;
  }
  void backward_into(TensorView<const double> dy, TensorView<double> dx) { run_backward(dy, dx); }
  std::vector<nsl::Parameter<double>> parameters() { return params; }
};

// A buffer for an assigned output: an entry the op never writes stays NaN
// and fails the check.
Tensor<double> nan_filled(const Shape& s) { return Tensor<double>(s, std::numeric_limits<double>::quiet_NaN()); }

Shape same_shape(const Shape& s) { return s; }

template <class T>
double prototype_scores_error(const Tensor<T>& a, const Tensor<T>& b) {
  return nsl::test::max_relative_difference(a, b);
}

}  // namespace

TEST_CASE("class_prototypes are the class means of the support rows, and spread dp_k / K back") {
  nsl::Rng rng(501);
  const Tensor<double> support = nsl::test::randn<double>(Shape{4 * 3, 5}, rng);
  Tensor<double> p(Shape{4, 5}), p_ref(Shape{4, 5});
  nsl::class_prototypes<double>(support.view(), 3, p.view());
  nsl::class_prototypes_reference<double>(support.view(), 3, p_ref.view());
  CHECK(prototype_scores_error(p, p_ref) < 1e-15);
  CHECK(p(2, 1) == doctest::Approx((support(6, 1) + support(7, 1) + support(8, 1)) / 3));
  const Tensor<float> support_f = nsl::test::randn<float>(Shape{5 * 2, 7}, rng);
  Tensor<float> pf(Shape{5, 7}), pf_ref(Shape{5, 7});
  nsl::class_prototypes<float>(support_f.view(), 2, pf.view());
  nsl::class_prototypes_reference<float>(support_f.view(), 2, pf_ref.view());
  CHECK(prototype_scores_error(pf, pf_ref) < 1e-6);

  ScoresOpUnderCheck op;
  op.output_shape_of = [](const Shape& s) { return Shape{s[0] / 3, s[1]}; };
  op.run_forward = [](TensorView<const double> x, TensorView<double> y) { nsl::class_prototypes<double>(x, 3, y); };
  op.run_backward = [](TensorView<const double> dy, TensorView<double> dx) {
    nsl::class_prototypes_backward<double>(dy, 3, dx);
  };
  const auto report = nsl::gradcheck(op, support);
  CAPTURE(report.str());
  CHECK(report.worst_error < 1e-7);
  CHECK_THROWS_WITH_AS(nsl::class_prototypes<double>(support.view(), 5, p.view()),
                       doctest::Contains("class_prototypes: expected a whole number of 5"), nsl::ShapeError);
}

TEST_CASE("normalize_rows divides by the floored norm, and its backward removes the radial part") {
  nsl::Rng rng(502);
  Tensor<double> x = nsl::test::randn<double>(Shape{5, 6}, rng);
  for (nsl::index i = 0; i < 6; ++i) {
    x(3, i) = 0.0;             // a zero row stays finite
    x(4, i) = 1e-10 * (i + 1);  // a row under the floor: x / 1e-8
  }
  Tensor<double> unit(x.shape()), norms(Shape{5}), unit_ref(x.shape()), norms_ref(Shape{5});
  nsl::normalize_rows<double>(x.view(), unit.view(), norms.view());
  nsl::normalize_rows_reference<double>(x.view(), unit_ref.view(), norms_ref.view());
  CHECK(prototype_scores_error(unit, unit_ref) < 1e-14);
  CHECK(prototype_scores_error(norms, norms_ref) < 1e-14);
  CHECK(unit.matrix().row(0).norm() == doctest::Approx(1.0).epsilon(1e-14));
  CHECK(unit.matrix().row(3).norm() == 0.0);
  CHECK(norms[4] == nsl::row_norm_floor);
  CHECK(unit(4, 2) == doctest::Approx(3e-10 / 1e-8).epsilon(1e-14));

  const Tensor<float> xf = nsl::test::randn<float>(Shape{7, 9}, rng);
  Tensor<float> uf(xf.shape()), nf(Shape{7}), uf_ref(xf.shape()), nf_ref(Shape{7});
  nsl::normalize_rows<float>(xf.view(), uf.view(), nf.view());
  nsl::normalize_rows_reference<float>(xf.view(), uf_ref.view(), nf_ref.view());
  CHECK(prototype_scores_error(uf, uf_ref) < 1e-6);
  CHECK(prototype_scores_error(nf, nf_ref) < 1e-6);

  // Rows away from the floor, against central differences.
  const Tensor<double> rows = nsl::test::randn<double>(Shape{4, 5}, rng);
  Tensor<double> kept_unit, kept_norms;
  ScoresOpUnderCheck op;
  op.output_shape_of = same_shape;
  op.run_forward = [&](TensorView<const double> in, TensorView<double> y) {
    kept_norms.resize(Shape{in.dim(0)});
    nsl::normalize_rows<double>(in, y, kept_norms.view());
    kept_unit = Tensor<double>(TensorView<const double>(y));
  };
  op.run_backward = [&](TensorView<const double> dy, TensorView<double> dx) {
    nsl::normalize_rows_backward<double>(kept_unit.view(), kept_norms.view(), dy, dx);
  };
  const auto report = nsl::gradcheck(op, rows);
  CAPTURE(report.str());
  CHECK(report.worst_error < 1e-7);
  // Under the floor x̂ = x / 1e-8 is linear: the gradient is dx̂ / 1e-8.
  const Tensor<double> dunit = nsl::test::randn<double>(x.shape(), rng);
  Tensor<double> dx = nan_filled(x.shape());
  nsl::normalize_rows_backward<double>(unit.view(), norms.view(), dunit.view(), dx.view());
  CHECK(dx(4, 1) == doctest::Approx(dunit(4, 1) / 1e-8).epsilon(1e-14));
  CHECK(dx.vec().allFinite());
}

TEST_CASE("euclidean_scores equal -|a - p|^2 and pass gradcheck for the queries and the prototypes") {
  nsl::Rng rng(503);
  const Tensor<double> a = nsl::test::randn<double>(Shape{5, 6}, rng), p = nsl::test::randn<double>(Shape{3, 6}, rng);
  Tensor<double> s(Shape{5, 3}), s_ref(Shape{5, 3});
  nsl::euclidean_scores<double>(a.view(), p.view(), s.view());
  nsl::euclidean_scores_reference<double>(a.view(), p.view(), s_ref.view());
  CHECK(prototype_scores_error(s, s_ref) < 1e-13);
  const Tensor<float> af = nsl::test::randn<float>(Shape{7, 16}, rng), pf = nsl::test::randn<float>(Shape{5, 16}, rng);
  Tensor<float> sf(Shape{7, 5}), sf_ref(Shape{7, 5});
  nsl::euclidean_scores<float>(af.view(), pf.view(), sf.view());
  nsl::euclidean_scores_reference<float>(af.view(), pf.view(), sf_ref.view());
  CHECK(prototype_scores_error(sf, sf_ref) < 1e-5);

  Tensor<double> prototypes = p, dprototypes(p.shape()), dp_out;
  Tensor<double> kept_a;
  ScoresOpUnderCheck op;
  op.output_shape_of = [&](const Shape& s_in) { return Shape{s_in[0], prototypes.dim(0)}; };
  op.run_forward = [&](TensorView<const double> x, TensorView<double> y) {
    kept_a = Tensor<double>(x);
    nsl::euclidean_scores<double>(x, prototypes.view(), y);
  };
  op.run_backward = [&](TensorView<const double> dy, TensorView<double> dx) {
    dp_out = nan_filled(prototypes.shape());
    nsl::euclidean_scores_backward<double>(kept_a.view(), prototypes.view(), dy, dx, dp_out.view());
    dprototypes.vec() += dp_out.vec();
  };
  op.params = {{"prototypes", prototypes.view(), dprototypes.view(), false}};
  const auto report = nsl::gradcheck(op, a);
  CAPTURE(report.str());
  CHECK(report.worst_error < 1e-7);
  CHECK_THROWS_WITH_AS(nsl::euclidean_scores<double>(a.view(), Tensor<double>(Shape{3, 5}).view(), s.view()),
                       doctest::Contains("euclidean_scores: prototypes"), nsl::ShapeError);
}

TEST_CASE("scaled_inner_scores equal tau a . b and pass gradcheck for A, B and tau") {
  nsl::Rng rng(504);
  const Tensor<double> a = nsl::test::randn<double>(Shape{4, 6}, rng), b = nsl::test::randn<double>(Shape{3, 6}, rng);
  Tensor<double> inner(Shape{4, 3}), s(Shape{4, 3}), s_ref(Shape{4, 3});
  nsl::scaled_inner_scores<double>(a.view(), b.view(), 2.5, inner.view(), s.view());
  nsl::scaled_inner_scores_reference<double>(a.view(), b.view(), 2.5, s_ref.view());
  CHECK(prototype_scores_error(s, s_ref) < 1e-13);
  const Tensor<float> af = nsl::test::randn<float>(Shape{7, 16}, rng), bf = nsl::test::randn<float>(Shape{5, 16}, rng);
  Tensor<float> innerf(Shape{7, 5}), sf(Shape{7, 5}), sf_ref(Shape{7, 5});
  nsl::scaled_inner_scores<float>(af.view(), bf.view(), 10.0f, innerf.view(), sf.view());
  nsl::scaled_inner_scores_reference<float>(af.view(), bf.view(), 10.0f, sf_ref.view());
  CHECK(prototype_scores_error(sf, sf_ref) < 1e-5);

  Tensor<double> rows_b = b, drows_b(b.shape()), scale(Shape{1}, 2.5), dscale(Shape{1}), db_out, kept_a, kept_inner;
  ScoresOpUnderCheck op;
  op.output_shape_of = [&](const Shape& s_in) { return Shape{s_in[0], rows_b.dim(0)}; };
  op.run_forward = [&](TensorView<const double> x, TensorView<double> y) {
    kept_a = Tensor<double>(x);
    kept_inner.resize(y.shape());
    nsl::scaled_inner_scores<double>(x, rows_b.view(), scale[0], kept_inner.view(), y);
  };
  op.run_backward = [&](TensorView<const double> dy, TensorView<double> dx) {
    db_out = nan_filled(rows_b.shape());
    nsl::scaled_inner_scores_backward<double>(kept_a.view(), rows_b.view(), kept_inner.view(), scale[0], dy, dx,
                                              db_out.view(), dscale.view());
    drows_b.vec() += db_out.vec();
  };
  op.params = {{"b", rows_b.view(), drows_b.view(), false}, {"scale", scale.view(), dscale.view(), false}};
  const auto report = nsl::gradcheck(op, a);
  CAPTURE(report.str());
  CHECK(report.worst_error < 1e-7);
}

TEST_CASE("diagonal_low_rank_transform applies M = diag(d) + U V^T to every row, and passes gradcheck") {
  nsl::Rng rng(505);
  for (nsl::index rank : {0, 2}) {
    CAPTURE(rank);
    const Tensor<double> d = nsl::test::randn<double>(Shape{6}, rng);
    const Tensor<double> u = nsl::test::randn<double>(Shape{6, rank}, rng), v = nsl::test::randn<double>(Shape{6, rank}, rng);
    const Tensor<double> x = nsl::test::randn<double>(Shape{4, 6}, rng);
    // The dense matrix, entry by entry.
    const nsl::Matrix<double> m = nsl::diagonal_low_rank_matrix<double>(d.view(), u.view(), v.view());
    double m_worst = 0.0;
    for (nsl::index i = 0; i < 6; ++i)
      for (nsl::index j = 0; j < 6; ++j) {
        double expected = i == j ? d[i] : 0.0;
        for (nsl::index c = 0; c < rank; ++c) expected += u(i, c) * v(j, c);
        m_worst = std::max(m_worst, std::abs(m(i, j) - expected));
      }
    CHECK(m_worst < 1e-14);
    Tensor<double> xv(Shape{4, rank}), y(x.shape()), y_ref(x.shape());
    nsl::diagonal_low_rank_transform<double>(d.view(), u.view(), v.view(), x.view(), xv.view(), y.view());
    nsl::diagonal_low_rank_transform_reference<double>(d.view(), u.view(), v.view(), x.view(), y_ref.view());
    CHECK(prototype_scores_error(y, y_ref) < 1e-13);

    Tensor<double> dd(d.shape()), du(u.shape()), dv(v.shape()), diag = d, left = u, right = v, kept_x, kept_xv;
    nsl::DiagonalLowRankWorkspace<double> workspace;
    ScoresOpUnderCheck op;
    op.output_shape_of = same_shape;
    op.run_forward = [&](TensorView<const double> in, TensorView<double> out) {
      kept_x = Tensor<double>(in);
      kept_xv.resize(Shape{in.dim(0), rank});
      nsl::diagonal_low_rank_transform<double>(diag.view(), left.view(), right.view(), in, kept_xv.view(), out);
    };
    op.run_backward = [&](TensorView<const double> dy, TensorView<double> dx) {
      nsl::diagonal_low_rank_transform_backward<double>(diag.view(), left.view(), right.view(), kept_x.view(),
                                                        kept_xv.view(), dy, dx, dd.view(), du.view(), dv.view(),
                                                        workspace);
    };
    op.params = {{"d", diag.view(), dd.view(), false}};
    if (rank > 0) {
      op.params.push_back({"U", left.view(), du.view(), false});
      op.params.push_back({"V", right.view(), dv.view(), false});
    }
    const auto report = nsl::gradcheck(op, x);
    CAPTURE(report.str());
    CHECK(report.worst_error < 1e-7);
  }
  // float, and no low-rank part given at all (empty views).
  const Tensor<float> d = nsl::test::randn<float>(Shape{16}, rng), x = nsl::test::randn<float>(Shape{5, 16}, rng);
  const Tensor<float> u = nsl::test::randn<float>(Shape{16, 4}, rng), v = nsl::test::randn<float>(Shape{16, 4}, rng);
  Tensor<float> xv(Shape{5, 4}), y(x.shape()), y_ref(x.shape());
  nsl::diagonal_low_rank_transform<float>(d.view(), u.view(), v.view(), x.view(), xv.view(), y.view());
  nsl::diagonal_low_rank_transform_reference<float>(d.view(), u.view(), v.view(), x.view(), y_ref.view());
  CHECK(prototype_scores_error(y, y_ref) < 1e-5);
  nsl::diagonal_low_rank_transform<float>(d.view(), {}, {}, x.view(), {}, y.view());
  CHECK(y(2, 3) == x(2, 3) * d[3]);
  CHECK_THROWS_WITH_AS(
      nsl::diagonal_low_rank_transform<float>(d.view(), u.view(), Tensor<float>(Shape{16, 3}).view(), x.view(),
                                              xv.view(), y.view()),
      doctest::Contains("diagonal_low_rank_transform: right factor V"), nsl::ShapeError);
}

TEST_CASE("predict_diagonal equals its reference and passes gradcheck for the prototypes and the predictor") {
  nsl::Rng rng(506);
  const nsl::index ways = 4, dimension = 6, hidden = 5;
  Tensor<double> w1 = nsl::test::randn<double>(Shape{hidden, dimension}, rng), b1 = nsl::test::randn<double>(Shape{hidden}, rng);
  Tensor<double> w2 = nsl::test::randn<double>(Shape{dimension, hidden}, rng), b2 = nsl::test::randn<double>(Shape{dimension}, rng);
  const Tensor<double> p = nsl::test::randn<double>(Shape{ways, dimension}, rng);
  Tensor<double> z(Shape{dimension}), h(Shape{hidden}), m(Shape{dimension});
  Tensor<double> z_ref(Shape{dimension}), h_ref(Shape{hidden}), m_ref(Shape{dimension});
  nsl::predict_diagonal<double>(p.view(), w1.view(), b1.view(), w2.view(), b2.view(), z.view(), h.view(), m.view());
  nsl::predict_diagonal_reference<double>(p.view(), w1.view(), b1.view(), w2.view(), b2.view(), z_ref.view(),
                                          h_ref.view(), m_ref.view());
  CHECK(prototype_scores_error(z, z_ref) < 1e-14);
  CHECK(prototype_scores_error(h, h_ref) < 1e-13);
  CHECK(prototype_scores_error(m, m_ref) < 1e-13);
  REQUIRE(h.vec().minCoeff() == 0.0);  // some unit inactive: the relu's mask is exercised
  REQUIRE(h.vec().maxCoeff() > 0.0);

  Tensor<float> pf = nsl::test::randn<float>(Shape{5, 16}, rng), w1f = nsl::test::randn<float>(Shape{8, 16}, rng);
  Tensor<float> b1f = nsl::test::randn<float>(Shape{8}, rng), w2f = nsl::test::randn<float>(Shape{16, 8}, rng);
  Tensor<float> b2f = nsl::test::randn<float>(Shape{16}, rng);
  Tensor<float> zf(Shape{16}), hf(Shape{8}), mf(Shape{16}), zf_ref(Shape{16}), hf_ref(Shape{8}), mf_ref(Shape{16});
  nsl::predict_diagonal<float>(pf.view(), w1f.view(), b1f.view(), w2f.view(), b2f.view(), zf.view(), hf.view(), mf.view());
  nsl::predict_diagonal_reference<float>(pf.view(), w1f.view(), b1f.view(), w2f.view(), b2f.view(), zf_ref.view(),
                                         hf_ref.view(), mf_ref.view());
  CHECK(prototype_scores_error(mf, mf_ref) < 1e-5);

  // Output m as a function of the prototypes (input) and W1, b1, W2, b2. The
  // op ADDS its share to dP^, so the check's buffer is zeroed first.
  Tensor<double> dw1(w1.shape()), db1(b1.shape()), dw2(w2.shape()), db2(b2.shape()), kept_z(z.shape()), kept_h(h.shape());
  nsl::DiagonalPredictorWorkspace<double> workspace;
  ScoresOpUnderCheck op;
  op.output_shape_of = [&](const Shape&) { return Shape{dimension}; };
  op.run_forward = [&](TensorView<const double> in, TensorView<double> out) {
    nsl::predict_diagonal<double>(in, w1.view(), b1.view(), w2.view(), b2.view(), kept_z.view(), kept_h.view(), out);
  };
  op.run_backward = [&](TensorView<const double> dm, TensorView<double> dp) {
    nsl::set_zero<double>(dp);
    nsl::predict_diagonal_backward<double>(w1.view(), w2.view(), kept_z.view(), kept_h.view(), dm, dw1.view(),
                                           db1.view(), dw2.view(), db2.view(), dp, workspace);
  };
  op.params = {{"W1", w1.view(), dw1.view(), false},
               {"b1", b1.view(), db1.view(), false},
               {"W2", w2.view(), dw2.view(), false},
               {"b2", b2.view(), db2.view(), false}};
  const auto report = nsl::gradcheck(op, p);
  CAPTURE(report.str());
  CHECK(report.worst_error < 1e-7);

  // The share through z is added to what the direct path wrote.
  const Tensor<double> dm = nsl::test::randn<double>(Shape{dimension}, rng);
  Tensor<double> dp_zero(p.shape()), dp_three(p.shape(), 3.0);
  nsl::predict_diagonal<double>(p.view(), w1.view(), b1.view(), w2.view(), b2.view(), z.view(), h.view(), m.view());
  nsl::predict_diagonal_backward<double>(w1.view(), w2.view(), z.view(), h.view(), dm.view(), dw1.view(), db1.view(),
                                         dw2.view(), db2.view(), dp_zero.view(), workspace);
  nsl::predict_diagonal_backward<double>(w1.view(), w2.view(), z.view(), h.view(), dm.view(), dw1.view(), db1.view(),
                                         dw2.view(), db2.view(), dp_three.view(), workspace);
  CHECK((dp_three.vec().array() - 3.0 - dp_zero.vec().array()).abs().maxCoeff() < 1e-15);
}

TEST_CASE("the unit heads' whole scores: the references equal normalize_rows, the transform and scaled_inner_scores") {
  nsl::Rng rng(507);
  const nsl::index queries = 5, ways = 3, dimension = 7, rank = 2, hidden = 4;
  const Tensor<double> a = nsl::test::randn<double>(Shape{queries, dimension}, rng);
  const Tensor<double> p = nsl::test::randn<double>(Shape{ways, dimension}, rng);
  const Tensor<double> d = nsl::test::randn<double>(Shape{dimension}, rng);
  const Tensor<double> u = nsl::test::randn<double>(Shape{dimension, rank}, rng);
  const Tensor<double> v = nsl::test::randn<double>(Shape{dimension, rank}, rng);
  const Tensor<double> w1 = nsl::test::randn<double>(Shape{hidden, dimension}, rng);
  const Tensor<double> b1 = nsl::test::randn<double>(Shape{hidden}, rng);
  const Tensor<double> w2 = nsl::test::randn<double>(Shape{dimension, hidden}, rng);
  const Tensor<double> b2 = nsl::test::randn<double>(Shape{dimension}, rng);
  const double tau = 3.5;
  Tensor<double> a_unit(a.shape()), a_norms(Shape{queries}), p_unit(p.shape()), p_norms(Shape{ways});
  nsl::normalize_rows<double>(a.view(), a_unit.view(), a_norms.view());
  nsl::normalize_rows<double>(p.view(), p_unit.view(), p_norms.view());
  Tensor<double> b(p.shape()), inner(Shape{queries, ways}), s(Shape{queries, ways}), s_ref(Shape{queries, ways});

  nsl::scaled_inner_scores<double>(a_unit.view(), p_unit.view(), tau, inner.view(), s.view());
  nsl::cosine_scores_reference<double>(a.view(), p.view(), tau, s_ref.view());
  CHECK(prototype_scores_error(s, s_ref) < 1e-13);

  Tensor<double> projected(Shape{ways, rank});
  nsl::diagonal_low_rank_transform<double>(d.view(), u.view(), v.view(), p_unit.view(), projected.view(), b.view());
  nsl::scaled_inner_scores<double>(a_unit.view(), b.view(), tau, inner.view(), s.view());
  nsl::bilinear_scores_reference<double>(a.view(), p.view(), d.view(), u.view(), v.view(), tau, s_ref.view());
  CHECK(prototype_scores_error(s, s_ref) < 1e-13);

  Tensor<double> z(Shape{dimension}), h(Shape{hidden}), m(Shape{dimension});
  nsl::predict_diagonal<double>(p_unit.view(), w1.view(), b1.view(), w2.view(), b2.view(), z.view(), h.view(), m.view());
  nsl::diagonal_low_rank_transform<double>(m.view(), {}, {}, p_unit.view(), {}, b.view());
  nsl::scaled_inner_scores<double>(a_unit.view(), b.view(), tau, inner.view(), s.view());
  nsl::predicted_diagonal_scores_reference<double>(a.view(), p.view(), w1.view(), b1.view(), w2.view(), b2.view(), tau,
                                                   s_ref.view());
  CHECK(prototype_scores_error(s, s_ref) < 1e-13);
}
