#include <doctest/doctest.h>

#include "nsl/ops/linear.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;

TEST_CASE("the fast linear map equals the reference loops, forward and backward") {
  nsl::Rng rng(2);
  auto x = nsl::test::randn<float>(Shape{5, 7}, rng);
  auto w = nsl::test::randn<float>(Shape{3, 7}, rng);
  auto b = nsl::test::randn<float>(Shape{3}, rng);
  auto dy = nsl::test::randn<float>(Shape{5, 3}, rng);
  Tensor<float> y(Shape{5, 3}), y_ref(Shape{5, 3});
  nsl::linear_forward<float>(x.view(), w.view(), b.view(), y.view());
  nsl::linear_forward_reference<float>(x.view(), w.view(), b.view(), y_ref.view());
  CHECK(nsl::test::max_relative_difference(y, y_ref) < 1e-6);
  Tensor<float> dx(x.shape(), 3.0f), dx_ref(x.shape(), -3.0f), dw(w.shape(), 1.0f), dw_ref(w.shape(), 1.0f);
  Tensor<float> db(b.shape(), 1.0f), db_ref(b.shape(), 1.0f);
  nsl::linear_backward<float>(x.view(), w.view(), dy.view(), dx.view(), dw.view(), db.view());
  nsl::linear_backward_reference<float>(x.view(), w.view(), dy.view(), dx_ref.view(), dw_ref.view(), db_ref.view());
  CHECK(nsl::test::max_relative_difference(dx, dx_ref) < 1e-6);
  CHECK(nsl::test::max_relative_difference(dw, dw_ref) < 1e-6);
  CHECK(nsl::test::max_relative_difference(db, db_ref) < 1e-6);
}

TEST_CASE("linear shape errors name what is wrong") {
  Tensor<float> x(Shape{5, 7}), w(Shape{3, 6}), y(Shape{5, 3});
  CHECK_THROWS_WITH_AS(nsl::linear_forward<float>(x.view(), w.view(), {}, y.view()),
                       "linear_forward: weight: expected [3, 7] for inputs of 7 features, got [3, 6]",
                       nsl::ShapeError);
}
