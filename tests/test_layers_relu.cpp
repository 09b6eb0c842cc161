#include <doctest/doctest.h>

#include <cmath>

#include "nsl/check/gradcheck.hpp"
#include "nsl/layers/relu.hpp"
#include "test_util.hpp"

TEST_CASE("ReLU passes gradcheck away from its kink") {
  nsl::Rng rng(41);
  auto x = nsl::test::randn<double>(nsl::Shape{2, 3, 4, 4}, rng);
  for (nsl::index i = 0; i < x.size(); ++i)
    if (std::abs(x[i]) < 1e-2) x[i] = 0.5;  // central differences need |x| > h
  nsl::ReLU<double> relu;
  const auto report = nsl::gradcheck(relu, x);
  CAPTURE(report.str());
  CHECK(report.worst_error < 1e-6);
  CHECK(relu.parameters().empty());
}
