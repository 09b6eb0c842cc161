#include <doctest/doctest.h>

#include "nsl/ops/activation.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;

TEST_CASE("relu keeps positives, zeroes the rest, and passes gradients only where x > 0") {
  nsl::Rng rng(8);
  auto x = nsl::test::randn<float>(Shape{2, 3, 4, 4}, rng);
  Tensor<float> y(x.shape()), y_ref(x.shape(), 9.0f);
  nsl::relu_forward<float>(x.view(), y.view());
  nsl::relu_forward_reference<float>(x.view(), y_ref.view());
  CHECK(y.vec() == y_ref.vec());
  auto dy = nsl::test::randn<float>(x.shape(), rng);
  Tensor<float> dx(x.shape(), 5.0f);
  nsl::relu_backward<float>(y.view(), dy.view(), dx.view());
  for (nsl::index i = 0; i < x.size(); ++i) CHECK(dx[i] == (x[i] > 0 ? dy[i] : 0.0f));
  Tensor<float> wrong(Shape{2, 3, 4, 5});
  CHECK_THROWS_AS(nsl::relu_backward<float>(y.view(), dy.view(), wrong.view()), nsl::ShapeError);
}
