#include <doctest/doctest.h>

#include "nsl/core/shape.hpp"

TEST_CASE("a shape knows its rank, extents, size and prints them") {
  nsl::Shape s{2, 3, 28, 28};
  CHECK(s.rank() == 4);
  CHECK(s[1] == 3);
  CHECK(s.size() == 2 * 3 * 28 * 28);
  CHECK(s.str() == "[2, 3, 28, 28]");
  CHECK(nsl::Shape{5}.size() == 5);
  CHECK(nsl::Shape().size() == 0);
  CHECK(nsl::Shape{2, 3} != nsl::Shape{2, 3, 1});
  CHECK(nsl::Shape{2, 3} == nsl::Shape{2, 3});
}

TEST_CASE("bad shapes are shape errors") {
  CHECK_THROWS_AS(nsl::Shape({-1}), nsl::ShapeError);
  CHECK_THROWS_AS(nsl::Shape({1, 2, 3, 4, 5}), nsl::ShapeError);
  CHECK_THROWS_WITH_AS(nsl::Shape({1LL << 40, 1LL << 40}), doctest::Contains("overflow"),
                       nsl::ShapeError);
  CHECK_THROWS_WITH_AS(nsl::check_shape("conv2d_forward", "weight", nsl::Shape{8, 4, 3, 3},
                                        nsl::Shape{8, 3, 3, 3}),
                       "conv2d_forward: weight: expected [8, 3, 3, 3], got [8, 4, 3, 3]",
                       nsl::ShapeError);
  CHECK_THROWS_WITH_AS(nsl::check_rank("op", "input", nsl::Shape{2, 3}, 4),
                       "op: input: expected rank 4, got [2, 3]", nsl::ShapeError);
}
