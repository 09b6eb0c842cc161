#include <doctest/doctest.h>

#include "nsl/similarity/regularizers.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Structure;
using nsl::Tensor;

namespace {
// Central-difference check of a penalty's gradient (it is added into dm).
template <class Penalty>
double penalty_gradient_error(Tensor<double> m, Penalty penalty) {
  Tensor<double> dm(m.shape()), scratch(m.shape());
  penalty(m, dm);
  double worst = 0.0;
  for (nsl::index i = 0; i < m.size(); ++i) {
    const double saved = m[i], h = 1e-4;  // quadratic: central differences are exact up to rounding
    m[i] = saved + h;
    const double plus = penalty(m, scratch);
    m[i] = saved - h;
    const double minus = penalty(m, scratch);
    m[i] = saved;
    worst = std::max(worst, std::abs((plus - minus) / (2 * h) - dm[i]));
  }
  return worst;
}
}  // namespace

TEST_CASE("L2 penalties return lambda/2 ||M - target||^2 and add its gradient") {
  nsl::Rng rng(5);
  auto m = nsl::test::randn<double>(Shape{9, 9}, rng);
  Tensor<double> dm(m.shape(), 1.0);
  const double r = nsl::l2_penalty<double>(m.view(), 5e-3, dm.view());
  CHECK(r == doctest::Approx(0.5 * 5e-3 * m.vec().squaredNorm()));
  CHECK(dm[3] == doctest::Approx(1.0 + 5e-3 * m[3]));  // added, not assigned
  CHECK(penalty_gradient_error(m, [](const Tensor<double>& v, Tensor<double>& g) {
          g.set_zero();
          return nsl::l2_penalty<double>(v.view(), 0.3, g.view());
        }) < 1e-7);
  for (Structure s : {Structure::diagonal, Structure::channel_shared, Structure::block_diagonal, Structure::full}) {
    auto ms = nsl::identity_similarity<double>(s, 2, 9);
    Tensor<double> g(ms.shape());
    CHECK(nsl::l2_identity_penalty<double>(s, ms.view(), 2, 9, 1.0, g.view()) == 0.0);
    CHECK(g.vec().norm() == 0.0);
    ms.vec() += nsl::test::randn<double>(ms.shape(), rng).vec();
    CHECK(penalty_gradient_error(ms, [s](const Tensor<double>& v, Tensor<double>& gg) {
            gg.set_zero();
            return nsl::l2_identity_penalty<double>(s, v.view(), 2, 9, 0.7, gg.view());
          }) < 1e-7);
  }
}

TEST_CASE("soft thresholding shrinks towards zero and lands small entries exactly on zero") {
  Tensor<double> m(Shape{5});
  const double values[] = {1.0, -1.0, 0.05, -0.05, 0.0};
  for (int i = 0; i < 5; ++i) m[i] = values[i];
  CHECK(nsl::l1_penalty<double>(m.view(), 2.0) == doctest::Approx(2.0 * 2.1));
  nsl::soft_threshold<double>(m.view(), 0.1);
  CHECK(m[0] == doctest::Approx(0.9));
  CHECK(m[1] == doctest::Approx(-0.9));
  CHECK(m[2] == 0.0);
  CHECK(m[3] == 0.0);
  CHECK(m[4] == 0.0);
  CHECK_THROWS_AS(nsl::soft_threshold<double>(m.view(), -1.0), nsl::ArgumentError);
}

TEST_CASE("kernel_shape reports |m| for DNS, row norms for UNS, ones for the identity") {
  Tensor<double> m(Shape{9});
  for (int r = 0; r < 9; ++r) m[r] = r % 2 ? -0.5 * r : 0.0;
  auto shape = nsl::kernel_shape<double>(Structure::diagonal, m.view(), 3, 9);
  CHECK(shape[3] == 1.5);
  CHECK(shape[4] == 0.0);
  Tensor<double> u(Shape{9, 9});
  u(2, 0) = 3.0;
  u(2, 5) = 4.0;
  shape = nsl::kernel_shape<double>(Structure::channel_shared, u.view(), 3, 9);
  CHECK(shape[2] == doctest::Approx(5.0));
  CHECK(shape[0] == 0.0);
  // Block-diagonal and full: RMS over channels of the slot's rows; agree with UNS on tied blocks.
  nsl::Rng rng(6);
  auto block = nsl::test::randn<double>(Shape{9, 9}, rng);
  Tensor<double> blocks(Shape{2, 9, 9});
  blocks.vec().head(81) = block.vec();
  blocks.vec().tail(81) = block.vec();
  const auto a = nsl::kernel_shape<double>(Structure::channel_shared, block.view(), 2, 9);
  const auto b = nsl::kernel_shape<double>(Structure::block_diagonal, blocks.view(), 2, 9);
  CHECK((a - b).norm() < 1e-12);
  CHECK(nsl::kernel_shape<double>(Structure::identity, Tensor<double>(Shape{0}).view(), 2, 9).sum() == 9.0);
}
