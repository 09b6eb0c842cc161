#include <doctest/doctest.h>

#include <array>
#include <vector>

#include "nsl/ops/im2col.hpp"
#include "nsl/ops/patch_transform.hpp"
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

TEST_CASE("PatchPacker writes every block of the patch matrix and of its transpose in the GEMM panel layout") {
  nsl::Rng rng(5);
  for (const Case& t : cases) {
    const nsl::ConvGeometry g{t.k, t.s, t.p};
    auto x = nsl::test::randn<double>(nsl::Shape{t.c, t.h, t.w}, rng);
    const nsl::index rows = t.c * t.k * t.k, pixels = g.output_extent(t.h) * g.output_extent(t.w);
    nsl::Tensor<double> reference(nsl::Shape{rows, pixels});
    nsl::im2col_reference(x.data(), t.c, t.h, t.w, g, reference.data());
    for (bool transposed : {false, true}) {
      // op(B) is X (rows x pixels) or X^T (pixels x rows).
      const nsl::index depth_total = transposed ? pixels : rows, cols_total = transposed ? rows : pixels;
      const auto op_b = [&](nsl::index k, nsl::index j) {
        return transposed ? reference.data()[j * pixels + k] : reference.data()[k * pixels + j];
      };
      // From the padded copy (pad_image); without it only an unpadded geometry is accepted.
      std::vector<double> padded(static_cast<std::size_t>(nsl::padded_image_size(t.c, t.h, t.w, t.p)));
      const double* padded_image = nsl::pad_image(x.data(), t.c, t.h, t.w, t.p, padded.data());
      const nsl::PatchPacker<double> packer{x.data(), t.c, t.h, t.w, g, transposed, nullptr, padded_image};
      if (t.p > 0) {
        const nsl::PatchPacker<double> unpadded{x.data(), t.c, t.h, t.w, g, transposed};
        std::vector<double> out(static_cast<std::size_t>(rows * pixels));
        CHECK_THROWS_AS(unpadded(0, 0, depth_total, cols_total, cols_total, out.data()), nsl::ArgumentError);
      }
      for (nsl::index nr : {nsl::index(1), nsl::index(3), nsl::index(8), nsl::index(16),
                            std::max<nsl::index>(1, nsl::gemm_panel_width<double>())}) {
        // The whole matrix, and a block that starts inside it.
        for (auto [k0, j0] : {std::array<nsl::index, 2>{0, 0}, {depth_total / 3, cols_total / 2}}) {
          CAPTURE(t.c); CAPTURE(t.h); CAPTURE(t.w); CAPTURE(t.k); CAPTURE(t.s); CAPTURE(t.p);
          CAPTURE(transposed); CAPTURE(nr); CAPTURE(k0); CAPTURE(j0);
          const nsl::index depth = depth_total - k0, cols = cols_total - j0;
          const nsl::index panels = (cols + nr - 1) / nr;
          std::vector<double> packed(static_cast<std::size_t>(panels * nr * depth), 99.0);
          packer(k0, j0, depth, cols, nr, packed.data());
          bool same = true;
          for (nsl::index j = 0; j < panels * nr; ++j)
            for (nsl::index k = 0; k < depth; ++k) {
              const double expected = j < cols ? op_b(k0 + k, j0 + j) : 0.0;
              same = same && packed[static_cast<std::size_t>((j / nr) * nr * depth + k * nr + j % nr)] == expected;
            }
          CHECK(same);
        }
      }
    }
  }
}

TEST_CASE("PatchPacker with a slot gain packs the diagonal patch transform (1 + g) X, bit for bit") {
  nsl::Rng rng(6);
  for (const Case& t : cases) {
    CAPTURE(t.c); CAPTURE(t.h); CAPTURE(t.w); CAPTURE(t.k); CAPTURE(t.s); CAPTURE(t.p);
    const nsl::ConvGeometry g{t.k, t.s, t.p};
    const nsl::index K = t.k * t.k, rows = t.c * K, pixels = g.output_extent(t.h) * g.output_extent(t.w);
    auto x = nsl::test::randn<float>(nsl::Shape{t.c, t.h, t.w}, rng);
    auto gain = nsl::test::randn<float>(nsl::Shape{K, pixels}, rng);
    nsl::Tensor<float> columns(nsl::Shape{rows, pixels}), transformed(nsl::Shape{rows, pixels});
    nsl::im2col_reference(x.data(), t.c, t.h, t.w, g, columns.data());
    nsl::patch_transform(nsl::Structure::diagonal, columns.data(), gain.data(), t.c, K, pixels, transformed.data());
    std::vector<float> padded(static_cast<std::size_t>(nsl::padded_image_size(t.c, t.h, t.w, t.p)));
    const float* padded_image = nsl::pad_image(x.data(), t.c, t.h, t.w, t.p, padded.data());
    for (bool transposed : {false, true}) {
      CAPTURE(transposed);
      const nsl::PatchPacker<float> packer{x.data(), t.c, t.h, t.w, g, transposed, gain.data(), padded_image};
      // One panel as wide as op(B) (op(B) row-major), and the GEMM's panels.
      const nsl::index depth = transposed ? pixels : rows, cols = transposed ? rows : pixels;
      for (nsl::index nr : {cols, std::max<nsl::index>(1, nsl::gemm_panel_width<float>())}) {
        CAPTURE(nr);
        const nsl::index panels = (cols + nr - 1) / nr;
        std::vector<float> packed(static_cast<std::size_t>(panels * nr * depth), 99.0f);
        packer(0, 0, depth, cols, nr, packed.data());
        bool same = true;
        for (nsl::index k = 0; k < depth; ++k)
          for (nsl::index j = 0; j < cols; ++j) {
            const float expected =
                transposed ? transformed.data()[j * pixels + k] : transformed.data()[k * pixels + j];
            same = same && packed[static_cast<std::size_t>((j / nr) * nr * depth + k * nr + j % nr)] == expected;
          }
        CHECK(same);
      }
    }
  }
}
