#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "nsl/check/gradcheck.hpp"
#include "nsl/layers/layer.hpp"
#include "nsl/ops/conv2d.hpp"
#include "nsl/ops/winograd.hpp"
#include "test_util.hpp"

using Index = nsl::index;
using nsl::Shape;
using nsl::Tensor;

namespace {
// One 3 x 3 stride-1 problem: x, w, b, dy and the geometry.
template <class T>
struct Problem {
  Tensor<T> x, w, b, dy;
  nsl::ConvGeometry g;
};

template <class T>
Problem<T> problem(nsl::Rng& rng, Index n, Index c, Index o, Index h, Index w, Index pad) {
  Problem<T> p;
  p.g = {3, 1, pad};
  p.x = nsl::test::randn<T>(Shape{n, c, h, w}, rng);
  p.w = nsl::test::randn<T>(Shape{o, c, 3, 3}, rng);
  p.b = nsl::test::randn<T>(Shape{o}, rng);
  p.dy = nsl::test::randn<T>(Shape{n, o, p.g.output_extent(h), p.g.output_extent(w)}, rng);
  return p;
}

template <class T>
Problem<T> random_problem(nsl::Rng& rng) {
  const Index n = 1 + Index(rng.below(4)), c = 1 + Index(rng.below(20)), o = 1 + Index(rng.below(20));
  const Index pad = Index(rng.below(3));
  const Index h = std::max<Index>(3 - 2 * pad, 1 + Index(rng.below(16)));
  const Index w = std::max<Index>(3 - 2 * pad, 1 + Index(rng.below(16)));
  return problem<T>(rng, n, c, o, h, w, pad);
}

template <class T>
Tensor<T> direct_forward(const Problem<T>& p, bool bias) {
  Tensor<T> y(p.dy.shape());
  nsl::conv2d_forward_reference<T>(p.x.view(), p.w.view(), bias ? p.b.view() : nsl::TensorView<const T>(), p.g,
                                   y.view());
  return y;
}

// The 1-D algorithm F(m, 3): y = A^T [(G g) ⊙ (B^T d)] for an α-long d.
template <Index Tile>
std::vector<double> one_dimensional(const std::vector<double>& d, const double (&filter)[3]) {
  using F = nsl::WinogradF<Tile>;
  std::vector<double> product(F::alpha), y(F::m, 0.0);
  for (Index a = 0; a < F::alpha; ++a) {
    double u = 0, v = 0;
    for (Index r = 0; r < 3; ++r) u += F::G[a][r] * filter[r];
    for (Index b = 0; b < F::alpha; ++b) v += F::BT[a][b] * d[std::size_t(b)];
    product[std::size_t(a)] = u * v;
  }
  for (Index i = 0; i < F::m; ++i)
    for (Index a = 0; a < F::alpha; ++a) y[std::size_t(i)] += F::AT[i][a] * product[std::size_t(a)];
  return y;
}

// Winograd's convolution as a layer, for gradcheck.
template <Index Tile>
struct WinogradLayer {
  Tensor<double> weight, bias, weight_grad, bias_grad, input;
  nsl::ConvGeometry g;
  nsl::WinogradWorkspace<double> ws;
  nsl::WinogradLayout layout = nsl::WinogradLayout::automatic;

  Shape output_shape(const Shape& x) const {
    return Shape{x[0], weight.dim(0), g.output_extent(x[2]), g.output_extent(x[3])};
  }
  Tensor<double> forward(nsl::TensorView<const double> x) {
    input = Tensor<double>(x.shape());
    nsl::copy<double>(x, input.view());
    Tensor<double> y(output_shape(x.shape()));
    nsl::winograd_conv2d_forward<double, Tile>(x, weight.view(), bias.view(), g, y.view(), ws, layout);
    return y;
  }
  void backward_into(nsl::TensorView<const double> dy, nsl::TensorView<double> dx) {
    nsl::winograd_conv2d_backward<double, Tile>(input.view(), weight.view(), g, dy, dx, weight_grad.view(),
                                                bias_grad.view(), ws, layout);
  }
  std::vector<nsl::Parameter<double>> parameters() {
    return {{"weight", weight.view(), weight_grad.view(), true}, {"bias", bias.view(), bias_grad.view(), false}};
  }
};

template <Index Tile>
void check_forward_and_backward_in_double(int trials, std::uint64_t seed) {
  nsl::Rng rng(seed);
  nsl::WinogradWorkspace<double> ws;
  for (int trial = 0; trial < trials; ++trial) {
    const auto p = random_problem<double>(rng);
    const bool bias = trial % 3 != 0;
    CAPTURE(Tile); CAPTURE(p.x.shape().str()); CAPTURE(p.w.shape().str()); CAPTURE(p.g.padding); CAPTURE(bias);
    const auto expected = direct_forward(p, bias);
    Tensor<double> y(p.dy.shape(), 7.0), tiled(p.dy.shape(), -7.0);
    nsl::winograd_conv2d_forward<double, Tile>(p.x.view(), p.w.view(), bias ? p.b.view() : nsl::TensorView<const double>(),
                                               p.g, y.view(), ws);
    nsl::winograd_conv2d_forward_reference<double, Tile>(
        p.x.view(), p.w.view(), bias ? p.b.view() : nsl::TensorView<const double>(), p.g, tiled.view());
    CHECK(nsl::test::max_relative_difference(y, expected) < 1e-12);
    CHECK(nsl::test::max_relative_difference(tiled, expected) < 1e-12);

    // Gradients: dw and db accumulate onto what is there, dx is assigned.
    auto dw = nsl::test::randn<double>(p.w.shape(), rng), db = nsl::test::randn<double>(p.b.shape(), rng);
    Tensor<double> dw_ref = dw, db_ref = db, dx(p.x.shape(), 3.0), dx_ref(p.x.shape());
    nsl::winograd_conv2d_backward<double, Tile>(p.x.view(), p.w.view(), p.g, p.dy.view(), dx.view(), dw.view(),
                                                bias ? db.view() : nsl::TensorView<double>(), ws);
    nsl::conv2d_backward_reference<double>(p.x.view(), p.w.view(), p.g, p.dy.view(), dx_ref.view(), dw_ref.view(),
                                           bias ? db_ref.view() : nsl::TensorView<double>());
    CHECK(nsl::test::max_relative_difference(dx, dx_ref) < 1e-12);
    CHECK(nsl::test::max_relative_difference(dw, dw_ref) < 1e-12);
    CHECK(nsl::test::max_relative_difference(db, db_ref) < 1e-12);
  }
}
}  // namespace

TEST_CASE("the matrices of F(2, 3) and F(4, 3) give the 1-D correlation exactly") {
  nsl::Rng rng(3);
  for (int trial = 0; trial < 20; ++trial) {
    const double filter[3] = {rng.normal(), rng.normal(), rng.normal()};
    std::vector<double> d(6);
    for (auto& v : d) v = rng.normal();
    const auto y2 = one_dimensional<2>(std::vector<double>(d.begin(), d.begin() + 4), filter);
    const auto y4 = one_dimensional<4>(d, filter);
    for (std::size_t i = 0; i < 4; ++i) {
      const double direct = filter[0] * d[i] + filter[1] * d[i + 1] + filter[2] * d[i + 2];
      CHECK(y4[i] == doctest::Approx(direct).epsilon(1e-13));
      if (i < 2) CHECK(y2[i] == doctest::Approx(direct).epsilon(1e-14));
    }
  }
}

TEST_CASE("Winograd F(2x2, 3x3): forward (tile loops and GEMM form) and gradients equal the direct formula in double") {
  check_forward_and_backward_in_double<2>(40, 5);
}

TEST_CASE("Winograd F(4x4, 3x3): forward (tile loops and GEMM form) and gradients equal the direct formula in double") {
  check_forward_and_backward_in_double<4>(40, 6);
}

TEST_CASE("Winograd on CNN-9's shapes, several groups of images and threads, equals the direct formula in double") {
  nsl::Rng rng(8);
  nsl::WinogradWorkspace<double> ws;
  struct Case { Index n, c, o, h; };
  for (const Case s : {Case{3, 64, 64, 28}, Case{9, 64, 128, 14}, Case{20, 128, 128, 7}, Case{1, 128, 64, 7}})
    for (int threads : {1, 2}) {
      CAPTURE(s.n); CAPTURE(s.c); CAPTURE(s.o); CAPTURE(s.h); CAPTURE(threads);
      nsl::set_num_threads(threads);
      const auto p = problem<double>(rng, s.n, s.c, s.o, s.h, s.h, 1);
      Tensor<double> y(p.dy.shape());
      nsl::winograd_conv2d_forward<double, 2>(p.x.view(), p.w.view(), p.b.view(), p.g, y.view(), ws);
      CHECK(nsl::test::max_relative_difference(y, direct_forward(p, true)) < 1e-12);
      Tensor<double> dx(p.x.shape()), dw(p.w.shape()), db(p.b.shape()), dx_ref(p.x.shape()), dw_ref(p.w.shape()),
          db_ref(p.b.shape());
      nsl::winograd_conv2d_backward<double, 2>(p.x.view(), p.w.view(), p.g, p.dy.view(), dx.view(), dw.view(),
                                               db.view(), ws);
      nsl::conv2d_backward_reference<double>(p.x.view(), p.w.view(), p.g, p.dy.view(), dx_ref.view(), dw_ref.view(),
                                             db_ref.view());
      CHECK(nsl::test::max_relative_difference(dx, dx_ref) < 1e-12);
      CHECK(nsl::test::max_relative_difference(dw, dw_ref) < 1e-12);
      CHECK(nsl::test::max_relative_difference(db, db_ref) < 1e-12);
    }
  nsl::set_num_threads(2);
}

#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD  // Eigen's kernel (without xsimd) blocks by the product's size
TEST_CASE("Winograd's forward gives each image the same bits whatever the batch and the thread count") {
  nsl::Rng rng(9);
  nsl::WinogradWorkspace<float> ws;
  const auto p = problem<float>(rng, 7, 32, 48, 14, 14, 1);
  nsl::set_num_threads(2);
  Tensor<float> batch(p.dy.shape());
  nsl::winograd_conv2d_forward<float, 2>(p.x.view(), p.w.view(), p.b.view(), p.g, batch.view(), ws);
  nsl::set_num_threads(1);
  for (Index n = 0; n < 7; ++n) {
    Tensor<float> one(Shape{1, 48, 14, 14});
    nsl::winograd_conv2d_forward<float, 2>(p.x.view().sample(n), p.w.view(), p.b.view(), p.g, one.view(), ws);
    bool same = true;
    for (Index i = 0; i < one.size(); ++i) same = same && one[i] == batch.view().sample(n)[i];
    CHECK(same);
  }
  nsl::set_num_threads(2);
}
#endif

TEST_CASE("Winograd's forward and gradients with the images across the lanes agree with the direct formula") {
  // The lanes layout (winograd.hpp; with AVX-512 the layout of batches of 16
  // and more): whole groups, part-filled groups, every padding, odd map
  // sizes, both tiles.
  nsl::Rng rng(14);
  nsl::WinogradWorkspace<double> ws;
  struct Case { Index n, c, o, h, w, pad; };
  for (const Case s : {Case{16, 3, 5, 6, 6, 1}, Case{21, 4, 3, 7, 5, 0}, Case{35, 2, 6, 5, 9, 2}, Case{17, 5, 4, 1, 1, 1},
                       Case{3, 4, 4, 8, 8, 1}, Case{17, 40, 48, 11, 9, 0}}) {  // the last: several bands and chunks
    CAPTURE(s.n); CAPTURE(s.h); CAPTURE(s.w); CAPTURE(s.pad);
    const auto lanes = nsl::WinogradLayout::lanes;
    const auto p = problem<double>(rng, s.n, s.c, s.o, s.h, s.w, s.pad);
    const auto expected = direct_forward(p, true);
    Tensor<double> two(p.dy.shape(), 7.0), four(p.dy.shape(), -7.0);
    nsl::winograd_conv2d_forward<double, 2>(p.x.view(), p.w.view(), p.b.view(), p.g, two.view(), ws, lanes);
    nsl::winograd_conv2d_forward<double, 4>(p.x.view(), p.w.view(), p.b.view(), p.g, four.view(), ws, lanes);
    CHECK(nsl::test::max_relative_difference(two, expected) < 1e-12);
    CHECK(nsl::test::max_relative_difference(four, expected) < 1e-12);

    // The gradients by lanes: dw and db accumulate onto what is there, dx is assigned.
    const auto dw0 = nsl::test::randn<double>(p.w.shape(), rng), db0 = nsl::test::randn<double>(p.b.shape(), rng);
    Tensor<double> dw_ref = dw0, db_ref = db0, dx_ref(p.x.shape());
    nsl::conv2d_backward_reference<double>(p.x.view(), p.w.view(), p.g, p.dy.view(), dx_ref.view(), dw_ref.view(),
                                           db_ref.view());
    for (int tile : {2, 4}) {
      CAPTURE(tile);
      Tensor<double> dw = dw0, db = db0, dx(p.x.shape(), 3.0);
      if (tile == 2)
        nsl::winograd_conv2d_backward<double, 2>(p.x.view(), p.w.view(), p.g, p.dy.view(), dx.view(), dw.view(),
                                                 db.view(), ws, lanes);
      else
        nsl::winograd_conv2d_backward<double, 4>(p.x.view(), p.w.view(), p.g, p.dy.view(), dx.view(), dw.view(),
                                                 db.view(), ws, lanes);
      CHECK(nsl::test::max_relative_difference(dx, dx_ref) < 1e-12);
      CHECK(nsl::test::max_relative_difference(dw, dw_ref) < 1e-12);
      CHECK(nsl::test::max_relative_difference(db, db_ref) < 1e-12);
      Tensor<double> dw_only = dw0;  // without dx
      nsl::winograd_conv2d_backward<double, 2>(p.x.view(), p.w.view(), p.g, p.dy.view(), nsl::TensorView<double>(),
                                               dw_only.view(), nsl::TensorView<double>(), ws, lanes);
      CHECK(nsl::test::max_relative_difference(dw_only, dw_ref) < 1e-12);
    }
  }
}

#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
TEST_CASE("Winograd's lanes layout gives each image the bits of the plane-at-a-time layout") {
  nsl::Rng rng(15);
  nsl::WinogradWorkspace<float> ws;
  for (Index pad : {0, 1}) {
    CAPTURE(pad);
    const auto p = problem<float>(rng, 19, 32, 40, 14, 13, pad);
    Tensor<float> lanes(p.dy.shape()), planes(p.dy.shape());
    nsl::winograd_conv2d_forward<float, 2>(p.x.view(), p.w.view(), p.b.view(), p.g, lanes.view(), ws,
                                           nsl::WinogradLayout::lanes);
    nsl::winograd_conv2d_forward<float, 2>(p.x.view(), p.w.view(), p.b.view(), p.g, planes.view(), ws,
                                           nsl::WinogradLayout::planes);
    bool same = true;
    for (Index i = 0; i < lanes.size(); ++i) same = same && lanes[i] == planes[i];
    CHECK(same);
  }
}
#endif

TEST_CASE("Winograd convolution passes gradcheck (F(2x2, 3x3) and F(4x4, 3x3), padding 0, 1 and 2, both layouts)") {
  nsl::Rng rng(10);
  for (Index pad : {0, 1, 2}) {
    CAPTURE(pad);
    WinogradLayer<2> two;
    WinogradLayer<4> four;
    two.g = four.g = {3, 1, pad};
    two.weight = four.weight = nsl::test::randn<double>(Shape{4, 3, 3, 3}, rng);
    two.bias = four.bias = nsl::test::randn<double>(Shape{4}, rng);
    two.weight_grad = four.weight_grad = Tensor<double>(Shape{4, 3, 3, 3});
    two.bias_grad = four.bias_grad = Tensor<double>(Shape{4});
    const auto x = nsl::test::randn<double>(Shape{2, 3, 7, 6}, rng);
    const auto report2 = nsl::gradcheck(two, x), report4 = nsl::gradcheck(four, x);
    CAPTURE(report2.str()); CAPTURE(report4.str());
    CHECK(report2.worst_error < 1e-7);
    CHECK(report4.worst_error < 1e-7);
    CHECK(report2.tensors.size() == 3u);
    two.layout = four.layout = nsl::WinogradLayout::lanes;  // the same through the lanes layout
    const auto lanes2 = nsl::gradcheck(two, x), lanes4 = nsl::gradcheck(four, x);
    CAPTURE(lanes2.str()); CAPTURE(lanes4.str());
    CHECK(lanes2.worst_error < 1e-7);
    CHECK(lanes4.worst_error < 1e-7);
  }
}

TEST_CASE("Winograd's float error against the direct convolution in double, CNN-9's layers: F(2) at float's level, F(4) larger") {
  // The error of y (relative to max |y|) for a layer of CNN-9 with He-scaled
  // weights; measured figures are in docs/winograd.md.
  nsl::Rng rng(12);
  struct Case { Index c, o, h; };
  for (const Case s : {Case{64, 64, 28}, Case{128, 128, 14}, Case{128, 128, 7}}) {
    const auto p = problem<double>(rng, 4, s.c, s.o, s.h, s.h, 1);
    Problem<float> pf;
    pf.g = p.g;
    pf.x = Tensor<float>(p.x.shape());
    pf.w = Tensor<float>(p.w.shape());
    pf.b = Tensor<float>(p.b.shape());
    const double scale = std::sqrt(2.0 / double(9 * s.c));
    for (Index i = 0; i < p.x.size(); ++i) pf.x[i] = float(p.x[i]);
    for (Index i = 0; i < p.w.size(); ++i) pf.w[i] = float(p.w[i] * scale);
    for (Index i = 0; i < p.b.size(); ++i) pf.b[i] = float(p.b[i]);
    Problem<double> exact = p;  // the float inputs, in double
    for (Index i = 0; i < p.w.size(); ++i) exact.w[i] = double(pf.w[i]);
    for (Index i = 0; i < p.x.size(); ++i) exact.x[i] = double(pf.x[i]);
    for (Index i = 0; i < p.b.size(); ++i) exact.b[i] = double(pf.b[i]);
    const auto reference = direct_forward(exact, true);
    const auto error_of = [&](auto&& run) {
      Tensor<float> y(p.dy.shape());
      run(y);
      Tensor<double> yd(p.dy.shape());
      for (Index i = 0; i < y.size(); ++i) yd[i] = double(y[i]);
      return nsl::test::max_relative_difference(yd, reference);
    };
    nsl::WinogradWorkspace<float> ws;
    nsl::Conv2dWorkspace<float> cws;
    const double direct = error_of([&](Tensor<float>& y) {
      nsl::conv2d_forward_reference<float>(pf.x.view(), pf.w.view(), pf.b.view(), pf.g, y.view());
    });
    const double f2 = error_of([&](Tensor<float>& y) {
      nsl::winograd_conv2d_forward<float, 2>(pf.x.view(), pf.w.view(), pf.b.view(), pf.g, y.view(), ws);
    });
    const double f4 = error_of([&](Tensor<float>& y) {
      nsl::winograd_conv2d_forward<float, 4>(pf.x.view(), pf.w.view(), pf.b.view(), pf.g, y.view(), ws);
    });
    MESSAGE("C ", s.c, " -> ", s.o, ", ", s.h, "x", s.h, ": float error, direct loops ", direct, ", F(2x2,3x3) ", f2,
            ", F(4x4,3x3) ", f4);
    CHECK(f2 < 4 * std::max(direct, 1e-7));
    CHECK(f4 < 1e-4);
    CHECK(f4 > f2);  // the larger tile loses more: the measure can tell them apart
  }
}

TEST_CASE("Winograd rejects what it cannot compute, naming the operation") {
  nsl::Rng rng(13);
  nsl::WinogradWorkspace<float> ws;
  const auto x = nsl::test::randn<float>(Shape{1, 2, 5, 5}, rng);
  const auto w5 = nsl::test::randn<float>(Shape{3, 2, 5, 5}, rng);
  const auto w3 = nsl::test::randn<float>(Shape{3, 4, 3, 3}, rng);
  Tensor<float> y(Shape{1, 3, 5, 5});
  CHECK_THROWS_WITH(nsl::winograd_conv2d_forward<float>(x.view(), w5.view(), {}, {5, 1, 2}, y.view(), ws),
                    doctest::Contains("winograd_conv2d_forward: weight"));
  CHECK_THROWS_WITH(nsl::winograd_conv2d_forward<float>(x.view(), w3.view(), {}, {3, 1, 1}, y.view(), ws),
                    doctest::Contains("winograd_conv2d_forward: weight"));
  const auto w = nsl::test::randn<float>(Shape{3, 2, 3, 3}, rng);
  Tensor<float> y2(Shape{1, 3, 3, 3});
  CHECK_THROWS_WITH(nsl::winograd_conv2d_forward<float>(x.view(), w.view(), {}, {3, 2, 1}, y2.view(), ws),
                    doctest::Contains("stride"));
}
