#include <doctest/doctest.h>

#include <cstdint>

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
  // Empty extents count as 1: an empty tensor cannot carry an absurd extent.
  CHECK_THROWS_WITH_AS(nsl::Shape({0, 1LL << 62}), doctest::Contains("[0, 4611686018427387904] overflow"),
                       nsl::ShapeError);
  CHECK_THROWS_AS(nsl::Shape({1LL << 31, 0, 1LL << 31}), nsl::ShapeError);
  CHECK(nsl::Shape({0, 1LL << 20, 1LL << 20}).size() == 0);
  CHECK(nsl::Shape({(1LL << 60) - 1}).size() == (1LL << 60) - 1);
  CHECK_THROWS_AS(nsl::Shape({1LL << 60}), nsl::ShapeError);
  const std::uint64_t raw[3] = {0, std::uint64_t(1) << 59, 1};
  CHECK(nsl::extents_addressable(raw, 3));
  const std::uint64_t absurd[2] = {0, std::uint64_t(1) << 63};
  CHECK_FALSE(nsl::extents_addressable(absurd, 2));
  CHECK_THROWS_WITH_AS(nsl::check_shape("conv2d_forward", "weight", nsl::Shape{8, 4, 3, 3},
                                        nsl::Shape{8, 3, 3, 3}),
                       "conv2d_forward: weight: expected [8, 3, 3, 3], got [8, 4, 3, 3]",
                       nsl::ShapeError);
  CHECK_THROWS_WITH_AS(nsl::check_rank("op", "input", nsl::Shape{2, 3}, 4),
                       "op: input: expected rank 4, got [2, 3]", nsl::ShapeError);
}
