#include <doctest/doctest.h>

#include "nsl/layers/static_ns_conv2d.hpp"
#include "nsl/ops/dynamic_conv2d.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Structure;
using nsl::Tensor;

TEST_CASE("the fast dynamic convolution equals the per-pixel reference, forward and via the adjoint") {
  nsl::Rng rng(320);
  nsl::DynamicConv2dWorkspace<double> ws;
  for (Structure s : {Structure::diagonal, Structure::channel_shared})
    for (nsl::index k : {3, 5})
      for (nsl::index stride : {1, 2}) {
        CAPTURE(nsl::to_string(s)); CAPTURE(k); CAPTURE(stride);
        const nsl::ConvGeometry g{k, stride, k / 2};
        auto x = nsl::test::randn<double>(Shape{3, 2, 7, 8}, rng);
        auto w = nsl::test::randn<double>(Shape{4, 2, k, k}, rng);
        auto b = nsl::test::randn<double>(Shape{4}, rng);
        const Shape out{3, 4, g.output_extent(7), g.output_extent(8)};
        auto G = nsl::test::randn<double>(Shape{3, nsl::predicted_rows(s, k * k), out[2], out[3]}, rng);
        Tensor<double> fast(out, 3.0), reference(out, -3.0);
        nsl::dynamic_conv2d_forward<double>(s, x.view(), w.view(), b.view(), G.view(), g, fast.view(), ws);
        nsl::dynamic_conv2d_forward_reference<double>(s, x.view(), w.view(), b.view(), G.view(), g, reference.view());
        CHECK(nsl::test::max_relative_difference(fast, reference) < 1e-12);

        // y - b is linear in x, in w and (y - conv) in G: each gradient pairs with its input.
        auto dy = nsl::test::randn<double>(out, rng);
        Tensor<double> dx(x.shape(), 9.0), dw(w.shape()), db(b.shape()), dG(G.shape(), 9.0), y_nob(out), y_g0(out);
        nsl::dynamic_conv2d_backward<double>(s, x.view(), w.view(), G.view(), g, dy.view(), dx.view(), dw.view(),
                                             db.view(), dG.view(), ws);
        nsl::dynamic_conv2d_forward_reference<double>(s, x.view(), w.view(), {}, G.view(), g, y_nob.view());
        Tensor<double> zero_g(G.shape());
        nsl::dynamic_conv2d_forward_reference<double>(s, x.view(), w.view(), {}, zero_g.view(), g, y_g0.view());
        const double pairing = y_nob.vec().dot(dy.vec());
        CHECK(pairing == doctest::Approx(x.vec().dot(dx.vec())).epsilon(1e-10));
        CHECK(pairing == doctest::Approx(w.vec().dot(dw.vec())).epsilon(1e-10));
        CHECK((y_nob.vec() - y_g0.vec()).dot(dy.vec()) == doctest::Approx(G.vec().dot(dG.vec())).epsilon(1e-10));
        CHECK(db.vec().isApprox(dy.matrix(3, 4 * out[2] * out[3]).colwise().sum().reshaped(out[2] * out[3], 4).colwise().sum().transpose()));
      }
}

TEST_CASE("with G held constant over the pixels the dynamic convolution equals StaticNSConv2d with M = I + G") {
  nsl::Rng rng(321);
  nsl::DynamicConv2dWorkspace<double> ws;
  for (Structure s : {Structure::diagonal, Structure::channel_shared}) {
    CAPTURE(nsl::to_string(s));
    const nsl::index K = 9;
    nsl::StaticNSConv2d<double> layer(3, 5, 3, s, {2, 1, true}, rng);
    nsl::fill_normal<double>(layer.similarity().view(), rng);
    nsl::fill_normal<double>(layer.bias().view(), rng);
    auto x = nsl::test::randn<double>(Shape{2, 3, 9, 9}, rng);
    const Tensor<double> expected = layer.forward(x);
    // G(p) = M - I at every pixel.
    const Tensor<double> identity = nsl::identity_similarity<double>(s, 3, K);
    const nsl::index R = nsl::predicted_rows(s, K);
    Tensor<double> G(Shape{2, R, 5, 5});
    for (nsl::index n = 0; n < 2; ++n)
      for (nsl::index r = 0; r < R; ++r)
        for (nsl::index p = 0; p < 25; ++p) G[(n * R + r) * 25 + p] = layer.similarity()[r] - identity[r];
    Tensor<double> y(expected.shape());
    nsl::dynamic_conv2d_forward<double>(s, x.view(), layer.weight().view(), layer.bias().view(), G.view(),
                                        {3, 2, 1}, y.view(), ws);
    CHECK(nsl::test::max_relative_difference(y, expected) < 1e-12);
  }
}

TEST_CASE("a G of the wrong shape is rejected") {
  Tensor<float> x(Shape{2, 3, 8, 8}), w(Shape{4, 3, 3, 3}), G(Shape{2, 9, 8, 7}), y(Shape{2, 4, 8, 8});
  nsl::DynamicConv2dWorkspace<float> ws;
  CHECK_THROWS_WITH_AS(nsl::dynamic_conv2d_forward<float>(Structure::diagonal, x.view(), w.view(), {}, G.view(),
                                                          {3, 1, 1}, y.view(), ws),
                       "dynamic_conv2d_forward: predicted similarity G: expected [2, 9, 8, 8], got [2, 9, 8, 7]",
                       nsl::ShapeError);
}
