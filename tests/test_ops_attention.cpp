#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "nsl/check/gradcheck.hpp"
#include "nsl/layers/layer.hpp"
#include "nsl/ops/attention.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;

namespace {

// Random inputs of the attention: x, h (N x C x H x W) and the key and query
// projections f, g (N x C' x H x W), of the magnitude of the cosines the
// block feeds in.
template <class T>
struct AttentionInputs {
  Tensor<T> x, f, g, h;
  AttentionInputs(const Shape& input, nsl::index keys, nsl::Rng& rng)
      : x(nsl::test::randn<T>(input, rng)),
        f(nsl::test::randn<T>(Shape{input[0], keys, input[2], input[3]}, rng)),
        g(nsl::test::randn<T>(f.shape(), rng)),
        h(nsl::test::randn<T>(input, rng)) {}
  Shape attention_shape() const { return nsl::attention_shape("test", x.shape(), f.shape(), g.shape(), h.shape()); }
};

// attention_forward / attention_backward as gradcheck sees a layer: the input
// is x, and f, g, h and gamma are held as parameters. The op assigns dF, dG,
// dH into buffers filled with NaN beforehand (an entry it never writes
// poisons the gradient), which are then added to the parameters' gradients.
struct AttentionOpUnderCheck {
  Tensor<double> f, g, h, gamma, df, dg, dh, dgamma, attention;
  Tensor<double> df_out, dg_out, dh_out;
  nsl::AttentionWorkspace<double> workspace;

  Shape output_shape(const Shape& s) const { return s; }
  Tensor<double> forward(nsl::TensorView<const double> x) {
    Tensor<double> y(x.shape());
    attention.resize(nsl::attention_shape("test", x.shape(), f.shape(), g.shape(), h.shape()));
    nsl::attention_forward<double>(x, f.view(), g.view(), h.view(), gamma[0], attention.view(), y.view());
    return y;
  }
  void backward_into(nsl::TensorView<const double> dy, nsl::TensorView<double> dx) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    df_out = Tensor<double>(f.shape(), nan);
    dg_out = Tensor<double>(g.shape(), nan);
    dh_out = Tensor<double>(h.shape(), nan);
    nsl::attention_backward<double>(f.view(), g.view(), h.view(), attention.view(), gamma[0], dy, df_out.view(),
                                    dg_out.view(), dh_out.view(), dgamma.view(), dx, workspace);
    df.vec() += df_out.vec();
    dg.vec() += dg_out.vec();
    dh.vec() += dh_out.vec();
  }
  std::vector<nsl::Parameter<double>> parameters() {
    return {{"f", f.view(), df.view(), false},
            {"g", g.view(), dg.view(), false},
            {"h", h.view(), dh.view(), false},
            {"gamma", gamma.view(), dgamma.view(), false}};
  }
};

}  // namespace

TEST_CASE("attention_forward equals attention_forward_reference, in double and in float") {
  nsl::Rng rng(401);
  const AttentionInputs<double> in(Shape{2, 5, 3, 4}, 2, rng);
  Tensor<double> b(in.attention_shape()), y(in.x.shape()), b_ref(b.shape()), y_ref(y.shape());
  nsl::attention_forward<double>(in.x.view(), in.f.view(), in.g.view(), in.h.view(), -0.7, b.view(), y.view());
  nsl::attention_forward_reference<double>(in.x.view(), in.f.view(), in.g.view(), in.h.view(), -0.7, b_ref.view(),
                                           y_ref.view());
  CHECK(nsl::test::max_relative_difference(b, b_ref) < 1e-13);
  CHECK(nsl::test::max_relative_difference(y, y_ref) < 1e-13);
  // Every column of B is a distribution over the positions.
  for (nsl::index img = 0; img < 2; ++img)
    for (nsl::index j = 0; j < 12; ++j) {
      double sum = 0.0;
      for (nsl::index i = 0; i < 12; ++i) sum += b[(img * 12 + i) * 12 + j];
      CHECK(sum == doctest::Approx(1.0).epsilon(1e-13));
    }

  const AttentionInputs<float> fin(Shape{2, 16, 5, 3}, 2, rng);
  Tensor<float> bf(fin.attention_shape()), yf(fin.x.shape()), bf_ref(bf.shape()), yf_ref(yf.shape());
  nsl::attention_forward<float>(fin.x.view(), fin.f.view(), fin.g.view(), fin.h.view(), 0.8f, bf.view(), yf.view());
  nsl::attention_forward_reference<float>(fin.x.view(), fin.f.view(), fin.g.view(), fin.h.view(), 0.8f, bf_ref.view(),
                                          yf_ref.view());
  CHECK(nsl::test::max_relative_difference(bf, bf_ref) < 1e-5);
  CHECK(nsl::test::max_relative_difference(yf, yf_ref) < 1e-5);
}

TEST_CASE("attention_forward is the identity while gamma is 0, and stable for large similarities") {
  nsl::Rng rng(402);
  AttentionInputs<double> in(Shape{1, 3, 2, 2}, 1, rng);
  Tensor<double> b(in.attention_shape()), y(in.x.shape());
  nsl::attention_forward<double>(in.x.view(), in.f.view(), in.g.view(), in.h.view(), 0.0, b.view(), y.view());
  CHECK(nsl::test::max_relative_difference(y, in.x) == 0.0);
  // s_ij of order 1e3 would overflow exp without the column's maximum subtracted.
  in.f.vec() *= 40.0;
  in.g.vec() *= 40.0;
  nsl::attention_forward<double>(in.x.view(), in.f.view(), in.g.view(), in.h.view(), 1.0, b.view(), y.view());
  CHECK(b.vec().allFinite());
  CHECK(y.vec().allFinite());
}

TEST_CASE("attention_backward equals attention_backward_reference: dF, dG, dH, dX assigned, dgamma accumulated") {
  nsl::Rng rng(403);
  const AttentionInputs<double> in(Shape{2, 6, 3, 2}, 2, rng);
  const double gamma = 1.3;
  Tensor<double> b(in.attention_shape()), y(in.x.shape());
  nsl::attention_forward<double>(in.x.view(), in.f.view(), in.g.view(), in.h.view(), gamma, b.view(), y.view());
  const Tensor<double> dy = nsl::test::randn<double>(y.shape(), rng);
  // Garbage in the assigned outputs, a known value in the accumulated one.
  Tensor<double> df(in.f.shape(), 7.0), dg(in.g.shape(), 7.0), dh(in.h.shape(), 7.0), dx(in.x.shape(), 7.0);
  Tensor<double> dgamma(Shape{1}, 0.25);
  Tensor<double> df_ref(in.f.shape(), -3.0), dg_ref(in.g.shape(), -3.0), dh_ref(in.h.shape(), -3.0),
      dx_ref(in.x.shape(), -3.0), dgamma_ref(Shape{1}, 0.25);
  nsl::AttentionWorkspace<double> workspace;
  nsl::attention_backward<double>(in.f.view(), in.g.view(), in.h.view(), b.view(), gamma, dy.view(), df.view(),
                                  dg.view(), dh.view(), dgamma.view(), dx.view(), workspace);
  nsl::attention_backward_reference<double>(in.f.view(), in.g.view(), in.h.view(), b.view(), gamma, dy.view(),
                                            df_ref.view(), dg_ref.view(), dh_ref.view(), dgamma_ref.view(),
                                            dx_ref.view());
  CHECK(nsl::test::max_relative_difference(df, df_ref) < 1e-12);
  CHECK(nsl::test::max_relative_difference(dg, dg_ref) < 1e-12);
  CHECK(nsl::test::max_relative_difference(dh, dh_ref) < 1e-12);
  CHECK(nsl::test::max_relative_difference(dx, dy) == 0.0);  // the residual path only
  CHECK(dx_ref.vec() == dy.vec());
  CHECK(dgamma[0] == doctest::Approx(dgamma_ref[0]).epsilon(1e-12));
  // dgamma = <dY, O> with O = (Y - X) / gamma, added to what was there.
  CHECK(dgamma[0] - 0.25 == doctest::Approx(dy.vec().dot((y.vec() - in.x.vec()) / gamma)).epsilon(1e-12));

  // The workspace is sized once: a second call on the same shapes reuses it.
  const double* scratch = workspace.dscores.data();
  nsl::attention_backward<double>(in.f.view(), in.g.view(), in.h.view(), b.view(), gamma, dy.view(), df.view(),
                                  dg.view(), dh.view(), dgamma.view(), {}, workspace);
  CHECK(workspace.dscores.data() == scratch);
  CHECK(nsl::test::max_relative_difference(df, df_ref) < 1e-12);

  // float against the double-precision reference.
  const AttentionInputs<float> fin(Shape{2, 16, 4, 3}, 2, rng);
  Tensor<float> bf(fin.attention_shape()), yf(fin.x.shape());
  nsl::attention_forward<float>(fin.x.view(), fin.f.view(), fin.g.view(), fin.h.view(), 0.8f, bf.view(), yf.view());
  const Tensor<float> dyf = nsl::test::randn<float>(yf.shape(), rng);
  Tensor<float> dff(fin.f.shape()), dgf(fin.g.shape()), dhf(fin.h.shape()), dgammaf(Shape{1});
  Tensor<float> dff_ref(fin.f.shape()), dgf_ref(fin.g.shape()), dhf_ref(fin.h.shape()), dgammaf_ref(Shape{1});
  nsl::AttentionWorkspace<float> workspace_f;
  nsl::attention_backward<float>(fin.f.view(), fin.g.view(), fin.h.view(), bf.view(), 0.8f, dyf.view(), dff.view(),
                                 dgf.view(), dhf.view(), dgammaf.view(), {}, workspace_f);
  nsl::attention_backward_reference<float>(fin.f.view(), fin.g.view(), fin.h.view(), bf.view(), 0.8f, dyf.view(),
                                           dff_ref.view(), dgf_ref.view(), dhf_ref.view(), dgammaf_ref.view(), {});
  CHECK(nsl::test::max_relative_difference(dff, dff_ref) < 1e-5);
  CHECK(nsl::test::max_relative_difference(dgf, dgf_ref) < 1e-5);
  CHECK(nsl::test::max_relative_difference(dhf, dhf_ref) < 1e-5);
  CHECK(nsl::test::max_relative_difference(dgammaf, dgammaf_ref) < 1e-5);
}

TEST_CASE("attention_backward passes gradcheck for x, f, g, h and gamma") {
  nsl::Rng rng(404);
  for (nsl::index keys : {1, 3}) {
    CAPTURE(keys);
    AttentionInputs<double> in(Shape{2, 4, 3, 2}, keys, rng);
    AttentionOpUnderCheck op;
    op.f = in.f;
    op.g = in.g;
    op.h = in.h;
    op.gamma = Tensor<double>(Shape{1}, -0.9);
    op.df = Tensor<double>(op.f.shape());
    op.dg = Tensor<double>(op.g.shape());
    op.dh = Tensor<double>(op.h.shape());
    op.dgamma = Tensor<double>(Shape{1});
    const auto report = nsl::gradcheck(op, in.x);
    CAPTURE(report.str());
    CHECK(report.worst_error < 1e-7);
    CHECK(report.tensors.size() == 5);  // input, f, g, h, gamma
  }
}

TEST_CASE("attention ops reject mismatched shapes with messages naming the op and the tensor") {
  nsl::Rng rng(405);
  const AttentionInputs<double> in(Shape{2, 4, 3, 2}, 1, rng);
  Tensor<double> b(in.attention_shape()), y(in.x.shape());
  const Tensor<double> wrong_keys(Shape{2, 1, 2, 3}), wrong_values(Shape{2, 3, 3, 2});
  CHECK_THROWS_WITH_AS(nsl::attention_forward<double>(in.x.view(), wrong_keys.view(), in.g.view(), in.h.view(), 1.0,
                                                      b.view(), y.view()),
                       doctest::Contains("attention_forward: keys f"), nsl::ShapeError);
  CHECK_THROWS_WITH_AS(nsl::attention_forward<double>(in.x.view(), in.f.view(), in.g.view(), wrong_values.view(), 1.0,
                                                      b.view(), y.view()),
                       doctest::Contains("values h"), nsl::ShapeError);
  Tensor<double> wrong_b(Shape{2, 5, 5});
  CHECK_THROWS_WITH_AS(nsl::attention_forward<double>(in.x.view(), in.f.view(), in.g.view(), in.h.view(), 1.0,
                                                      wrong_b.view(), y.view()),
                       doctest::Contains("attention"), nsl::ShapeError);
  Tensor<double> df(Shape{2, 2, 3, 2}), dg(in.g.shape()), dh(in.h.shape()), dgamma(Shape{1});
  nsl::AttentionWorkspace<double> workspace;
  CHECK_THROWS_WITH_AS(nsl::attention_backward<double>(in.f.view(), in.g.view(), in.h.view(), b.view(), 1.0, y.view(),
                                                       df.view(), dg.view(), dh.view(), dgamma.view(), {}, workspace),
                       doctest::Contains("attention_backward: keys gradient"), nsl::ShapeError);
}
