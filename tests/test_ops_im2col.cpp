#include <doctest/doctest.h>

#include "nsl/ops/im2col.hpp"
#include "test_util.hpp"

namespace {
struct Case {
  nsl::index c, h, w, k, s, p;
};
const Case cases[] = {{1, 5, 5, 3, 1, 1}, {2, 7, 6, 3, 2, 1}, {3, 4, 9, 5, 1, 2}, {2, 8, 8, 1, 2, 0},
                      {1, 1, 1, 3, 1, 1}, {2, 3, 2, 5, 2, 2}, {1, 6, 5, 4, 1, 0}, {2, 9, 9, 3, 3, 4},
                      // stride 1, width kept (im2col's one-copy path), including images
                      // narrower than the kernel and a 1-wide one
                      {2, 6, 7, 3, 1, 1}, {1, 2, 2, 3, 1, 1}, {3, 5, 4, 5, 1, 2}, {2, 3, 1, 3, 1, 1},
                      {1, 7, 3, 7, 1, 3}, {2, 4, 5, 1, 1, 0}};
}  // namespace

TEST_CASE("im2col equals the reference patch matrix for every geometry") {
  nsl::Rng rng(3);
  for (const Case& t : cases) {
    CAPTURE(t.c); CAPTURE(t.h); CAPTURE(t.w); CAPTURE(t.k); CAPTURE(t.s); CAPTURE(t.p);
    const nsl::ConvGeometry g{t.k, t.s, t.p};
    auto x = nsl::test::randn<double>(nsl::Shape{t.c, t.h, t.w}, rng);
    const nsl::Shape cols{t.c * t.k * t.k, g.output_extent(t.h) * g.output_extent(t.w)};
    nsl::Tensor<double> fast(cols, 99.0), reference(cols, -99.0);
    nsl::im2col(x.data(), t.c, t.h, t.w, g, fast.data());
    nsl::im2col_reference(x.data(), t.c, t.h, t.w, g, reference.data());
    CHECK(fast.vec() == reference.vec());
  }
}

TEST_CASE("col2im_add is the adjoint of im2col: <im2col(x), Y> = <x, col2im(Y)>") {
  nsl::Rng rng(4);
  for (const Case& t : cases) {
    const nsl::ConvGeometry g{t.k, t.s, t.p};
    auto x = nsl::test::randn<double>(nsl::Shape{t.c, t.h, t.w}, rng);
    auto y = nsl::test::randn<double>(
        nsl::Shape{t.c * t.k * t.k, g.output_extent(t.h) * g.output_extent(t.w)}, rng);
    nsl::Tensor<double> cols(y.shape()), back(x.shape());
    nsl::im2col(x.data(), t.c, t.h, t.w, g, cols.data());
    nsl::col2im_add(y.data(), t.c, t.h, t.w, g, back.data());
    CHECK(cols.vec().dot(y.vec()) == doctest::Approx(x.vec().dot(back.vec())).epsilon(1e-12));
  }
}

TEST_CASE("col2im_scratch assigns what col2im_add adds, for every geometry") {
  nsl::Rng rng(5);
  for (const Case& t : cases) {
    CAPTURE(t.c); CAPTURE(t.h); CAPTURE(t.w); CAPTURE(t.k); CAPTURE(t.s); CAPTURE(t.p);
    const nsl::ConvGeometry g{t.k, t.s, t.p};
    auto y = nsl::test::randn<double>(
        nsl::Shape{t.c * t.k * t.k, g.output_extent(t.h) * g.output_extent(t.w)}, rng);
    nsl::Tensor<double> added(nsl::Shape{t.c, t.h, t.w}), assigned(added.shape(), 123.0), scratch(y);
    nsl::col2im_add(y.data(), t.c, t.h, t.w, g, added.data());
    nsl::col2im_scratch(scratch.data(), t.c, t.h, t.w, g, assigned.data());
    for (nsl::index i = 0; i < added.size(); ++i) CHECK(assigned[i] == doctest::Approx(added[i]).epsilon(1e-12));
  }
}

TEST_CASE("a geometry that does not fit is rejected with the sizes in the message") {
  CHECK_THROWS_WITH_AS(nsl::check_geometry("op", nsl::ConvGeometry{5, 1, 0}, 3, 8),
                       "op: a 5x5 kernel with padding 0 does not fit a 3x8 input", nsl::ShapeError);
  CHECK_THROWS_AS(nsl::check_geometry("op", nsl::ConvGeometry{3, 0, 1}, 8, 8), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::check_geometry("op", nsl::ConvGeometry{0, 1, 1}, 8, 8), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::check_geometry("op", nsl::ConvGeometry{3, 1, -1}, 8, 8), nsl::ArgumentError);
}
