#include <doctest/doctest.h>

#include "nsl/ops/patch_transform.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Structure;
using nsl::Tensor;

TEST_CASE("the patch transform equals M(p) = I + G(p) applied pixel by pixel") {
  nsl::Rng rng(300);
  for (Structure s : {Structure::diagonal, Structure::channel_shared})
    for (nsl::index K : {9, 25}) {
      CAPTURE(nsl::to_string(s)); CAPTURE(K);
      const nsl::index C = 3, P = 17, R = nsl::predicted_rows(s, K);
      auto x = nsl::test::randn<double>(Shape{C * K, P}, rng);
      auto g = nsl::test::randn<double>(Shape{R, P}, rng);
      Tensor<double> fast(x.shape(), 1.0), reference(x.shape(), -1.0);
      nsl::patch_transform(s, x.data(), g.data(), C, K, P, fast.data());
      nsl::patch_transform_reference(s, x.data(), g.data(), C, K, P, reference.data());
      CHECK(nsl::test::max_relative_difference(fast, reference) < 1e-13);
    }
}

TEST_CASE("patch_transform_backward is the adjoint in x and in G: <V, dV> = <X, dX>, <V - X, dV> = <G, dG>") {
  // V = X + G·X is linear in X for fixed G, and V - X is linear in G for fixed X.
  nsl::Rng rng(301);
  for (Structure s : {Structure::diagonal, Structure::channel_shared}) {
    CAPTURE(nsl::to_string(s));
    const nsl::index C = 2, K = 9, P = 11, R = nsl::predicted_rows(s, K);
    auto x = nsl::test::randn<double>(Shape{C * K, P}, rng);
    auto g = nsl::test::randn<double>(Shape{R, P}, rng);
    auto dv = nsl::test::randn<double>(Shape{C * K, P}, rng);
    Tensor<double> v(x.shape()), dx(x.shape(), 5.0), dg(g.shape(), 5.0);
    nsl::patch_transform(s, x.data(), g.data(), C, K, P, v.data());
    nsl::patch_transform_backward(s, x.data(), g.data(), dv.data(), C, K, P, dx.data(), dg.data());
    CHECK(v.vec().dot(dv.vec()) == doctest::Approx(x.vec().dot(dx.vec())).epsilon(1e-12));
    CHECK((v.vec() - x.vec()).dot(dv.vec()) == doctest::Approx(g.vec().dot(dg.vec())).epsilon(1e-12));
  }
}

TEST_CASE("only diagonal and channel_shared structures can be predicted") {
  CHECK(nsl::predicted_rows(Structure::diagonal, 9) == 9);
  CHECK(nsl::predicted_rows(Structure::channel_shared, 9) == 81);
  CHECK_THROWS_WITH_AS(nsl::predicted_rows(Structure::full, 9), doctest::Contains("got full"), nsl::ArgumentError);
}
