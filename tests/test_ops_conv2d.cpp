#include <doctest/doctest.h>

#include "nsl/ops/conv2d.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Tensor;

namespace {
template <class T>
struct ConvProblem {
  Tensor<T> x, w, b, dy;
  nsl::ConvGeometry g;
  Shape out;
};

template <class T>
ConvProblem<T> random_problem(nsl::Rng& rng) {
  ConvProblem<T> p;
  const nsl::index n = 1 + nsl::index(rng.below(4)), c = 1 + nsl::index(rng.below(5)), o = 1 + nsl::index(rng.below(6));
  const nsl::index k = 1 + 2 * nsl::index(rng.below(3)), s = 1 + nsl::index(rng.below(2));
  const nsl::index pad = nsl::index(rng.below(std::uint64_t(k / 2 + 2)));
  const nsl::index h = std::max<nsl::index>(k, 1 + nsl::index(rng.below(12))), w = std::max<nsl::index>(k, 1 + nsl::index(rng.below(12)));
  p.g = {k, s, pad};
  p.x = nsl::test::randn<T>(Shape{n, c, h, w}, rng);
  p.w = nsl::test::randn<T>(Shape{o, c, k, k}, rng);
  p.b = nsl::test::randn<T>(Shape{o}, rng);
  p.out = nsl::conv2d_output_shape("test", p.x.shape(), p.w.shape(), p.b.shape(), p.g);
  p.dy = nsl::test::randn<T>(p.out, rng);
  return p;
}
}  // namespace

TEST_CASE("the fast convolution equals the reference loops in float on random shapes") {
  nsl::Rng rng(11);
  nsl::Conv2dWorkspace<float> ws;
  for (int trial = 0; trial < 40; ++trial) {
    auto p = random_problem<float>(rng);
    CAPTURE(p.x.shape().str()); CAPTURE(p.w.shape().str()); CAPTURE(p.g.stride); CAPTURE(p.g.padding);
    Tensor<float> fast(p.out, 5.0f), reference(p.out, -5.0f);
    nsl::conv2d_forward<float>(p.x.view(), p.w.view(), p.b.view(), p.g, fast.view(), ws);
    nsl::conv2d_forward_reference<float>(p.x.view(), p.w.view(), p.b.view(), p.g, reference.view());
    CHECK(nsl::test::max_relative_difference(fast, reference) < 1e-5);

    Tensor<float> dx_fast(p.x.shape(), 7.0f), dx_ref(p.x.shape(), -7.0f);
    Tensor<float> dw_fast(p.w.shape(), 1.0f), dw_ref(p.w.shape(), 1.0f);  // accumulated onto 1
    Tensor<float> db_fast(p.b.shape(), 2.0f), db_ref(p.b.shape(), 2.0f);
    nsl::conv2d_backward<float>(p.x.view(), p.w.view(), p.g, p.dy.view(), dx_fast.view(),
                                dw_fast.view(), db_fast.view(), ws);
    nsl::conv2d_backward_reference<float>(p.x.view(), p.w.view(), p.g, p.dy.view(), dx_ref.view(),
                                          dw_ref.view(), db_ref.view());
    CHECK(nsl::test::max_relative_difference(dx_fast, dx_ref) < 1e-5);
    CHECK(nsl::test::max_relative_difference(dw_fast, dw_ref) < 1e-5);
    CHECK(nsl::test::max_relative_difference(db_fast, db_ref) < 1e-5);
  }
}

TEST_CASE("the fast convolution equals the reference on sizes that span several GEMM blocks and partial tiles") {
  // 64 x 9 patch rows: two depth blocks of the forward GEMM; 70 outputs and
  // 81 pixels: partial row and column tiles; stride 1 and 2.
  nsl::Rng rng(12);
  nsl::Conv2dWorkspace<float> ws;
  for (nsl::index stride : {1, 2}) {
    CAPTURE(stride);
    const nsl::ConvGeometry g{3, stride, 1};
    const auto x = nsl::test::randn<float>(Shape{3, 64, 9, 9}, rng);
    const auto w = nsl::test::randn<float>(Shape{70, 64, 3, 3}, rng);
    const auto b = nsl::test::randn<float>(Shape{70}, rng);
    const Shape out = nsl::conv2d_output_shape("test", x.shape(), w.shape(), b.shape(), g);
    const auto dy = nsl::test::randn<float>(out, rng);
    Tensor<float> fast(out, 5.0f), reference(out, -5.0f);
    nsl::conv2d_forward<float>(x.view(), w.view(), b.view(), g, fast.view(), ws);
    nsl::conv2d_forward_reference<float>(x.view(), w.view(), b.view(), g, reference.view());
    CHECK(nsl::test::max_relative_difference(fast, reference) < 1e-5);
    Tensor<float> dx_fast(x.shape(), 7.0f), dx_ref(x.shape(), -7.0f);
    Tensor<float> dw_fast(w.shape(), 1.0f), dw_ref(w.shape(), 1.0f);
    Tensor<float> db_fast(b.shape(), 2.0f), db_ref(b.shape(), 2.0f);
    nsl::conv2d_backward<float>(x.view(), w.view(), g, dy.view(), dx_fast.view(), dw_fast.view(), db_fast.view(), ws);
    nsl::conv2d_backward_reference<float>(x.view(), w.view(), g, dy.view(), dx_ref.view(), dw_ref.view(), db_ref.view());
    CHECK(nsl::test::max_relative_difference(dx_fast, dx_ref) < 1e-5);
    CHECK(nsl::test::max_relative_difference(dw_fast, dw_ref) < 1e-5);
    CHECK(nsl::test::max_relative_difference(db_fast, db_ref) < 1e-5);
  }
}

namespace direct_path {
// One image through conv2d_direct_forward against the reference loops, on
// 1, 2 and 3 threads: the threads split whole tiles, so the three results are
// the same bits.
template <class T>
void check_direct(nsl::index c, nsl::index o, nsl::index h, nsl::index w, nsl::index k, nsl::index pad, bool bias,
                  nsl::Rng& rng, double tolerance) {
  CAPTURE(c); CAPTURE(o); CAPTURE(h); CAPTURE(w); CAPTURE(k); CAPTURE(pad); CAPTURE(bias);
  const nsl::ConvGeometry g{k, 1, pad};
  const auto x = nsl::test::randn<T>(Shape{1, c, h, w}, rng);
  const auto weight = nsl::test::randn<T>(Shape{o, c, k, k}, rng);
  const auto b = bias ? nsl::test::randn<T>(Shape{o}, rng) : Tensor<T>();
  const Shape out = nsl::conv2d_output_shape("test", x.shape(), weight.shape(), b.shape(), g);
  Tensor<T> reference(out, T(-5));
  nsl::conv2d_forward_reference<T>(x.view(), weight.view(), b.view(), g, reference.view());
  const int saved = nsl::num_threads();
  Tensor<T> first;
  for (int threads : {1, 2, 3}) {
    CAPTURE(threads);
    nsl::set_num_threads(threads);
    nsl::DirectConvScratch<T> scratch;
    Tensor<T> fast(out, T(5));
    nsl::conv2d_direct_forward<T>(x.data(), c, h, w, weight.data(), o, bias ? b.data() : nullptr, g, fast.data(),
                                  scratch);
    CHECK(nsl::test::max_relative_difference(fast, reference) < tolerance);
    if (threads == 1) first = fast;
    else CHECK(fast.vec() == first.vec());
    // A batch of three: the same image between two others, each image as on
    // its own (the same bits, whatever the thread count).
    const auto others = nsl::test::randn<T>(Shape{2, c, h, w}, rng);
    Tensor<T> batch(Shape{3, c, h, w});
    batch.view().sample(0).vec() = others.view().sample(0).vec();
    batch.view().sample(1).vec() = x.view().sample(0).vec();
    batch.view().sample(2).vec() = others.view().sample(1).vec();
    Tensor<T> batch_out(Shape{3, out[1], out[2], out[3]}, T(5));
    nsl::conv2d_direct_forward_batch<T>(batch.data(), 3, c, h, w, weight.data(), o, bias ? b.data() : nullptr, g,
                                        batch_out.data(), scratch);
    CHECK(batch_out.view().sample(1).vec() == first.vec());
    Tensor<T> other_reference(out), other(out);
    other.vec() = batch_out.view().sample(2).vec();
    const Tensor<T> third(batch.view().sample(2).reshaped(Shape{1, c, h, w}));
    nsl::conv2d_forward_reference<T>(third.view(), weight.view(), b.view(), g, other_reference.view());
    CHECK(nsl::test::max_relative_difference(other, other_reference) < tolerance);

    // The weights laid out beforehand (direct_weights), and the ReLU applied
    // as the values are stored: the same sums in the same order, so the
    // same bits as the layout of each call, and max(that, 0).
    const nsl::DirectWeights<T> prepared = nsl::direct_weights<T>(weight.data(), o, c * k * k);
    REQUIRE(prepared.fits(o, c * k * k));
    Tensor<T> from_prepared(out, T(5)), with_relu(out, T(5));
    nsl::conv2d_direct_forward<T>(x.data(), c, h, w, weight.data(), o, bias ? b.data() : nullptr, g,
                                  from_prepared.data(), scratch, &prepared);
    CHECK(from_prepared.vec() == first.vec());
    nsl::conv2d_direct_forward<T>(x.data(), c, h, w, weight.data(), o, bias ? b.data() : nullptr, g,
                                  with_relu.data(), scratch, &prepared, true);
    CHECK(with_relu.vec() == first.vec().cwiseMax(T(0)));
    Tensor<T> batch_prepared(batch_out.shape(), T(5));
    nsl::conv2d_direct_forward_batch<T>(batch.data(), 3, c, h, w, weight.data(), o, bias ? b.data() : nullptr, g,
                                        batch_prepared.data(), scratch, &prepared, true);
    CHECK(batch_prepared.view().sample(1).vec() == first.vec().cwiseMax(T(0)));
    CHECK(batch_prepared.view().sample(0).vec() == batch_out.view().sample(0).vec().cwiseMax(T(0)));
  }
  nsl::set_num_threads(saved);
}
}  // namespace direct_path

TEST_CASE("one image: the direct convolution equals the reference, whatever the channels, sizes and threads") {
  if (!nsl::conv2d_direct_supported({3, 1, 1})) {
    MESSAGE("built without xsimd: conv2d_forward keeps the GEMM path for one image");
    return;
  }
  nsl::Rng rng(31);
  struct Case {
    nsl::index c, o, h, w, k, pad;
  };
  // CNN-9's layers at batch 1, then channel counts around the register
  // widths (one, two and four registers of lanes, partial blocks), images
  // of one pixel, one row, odd and non-square sizes, kernels 1 and 5, no
  // padding and more padding than the kernel's half.
  const Case cases[] = {{32, 32, 28, 28, 3, 1}, {32, 64, 14, 14, 3, 1}, {64, 128, 7, 7, 3, 1}, {128, 128, 7, 7, 3, 1},
                        {8, 1, 6, 5, 3, 1},     {8, 7, 9, 4, 3, 1},     {8, 16, 3, 17, 3, 1}, {8, 17, 5, 5, 3, 2},
                        {8, 40, 7, 7, 3, 1},    {8, 70, 4, 4, 3, 1},    {8, 130, 2, 3, 3, 1}, {3, 33, 1, 1, 3, 1},
                        {5, 24, 1, 30, 3, 1},   {4, 20, 8, 8, 5, 2},    {6, 12, 6, 6, 1, 0},  {6, 48, 9, 9, 3, 0},
                        {5, 32, 6, 6, 3, 1},    {7, 64, 5, 5, 3, 1}};  // full blocks, depths past a multiple of 16
  for (const Case& t : cases)
    for (bool bias : {true, false}) {
      direct_path::check_direct<double>(t.c, t.o, t.h, t.w, t.k, t.pad, bias, rng, 1e-12);
      direct_path::check_direct<float>(t.c, t.o, t.h, t.w, t.k, t.pad, bias, rng, 1e-5);
    }
}

TEST_CASE("one scratch through changing shapes: the direct convolution's padded image follows each shape") {
  if (!nsl::conv2d_direct_supported({3, 1, 1})) {
    MESSAGE("built without xsimd: conv2d_forward keeps the GEMM path for one image");
    return;
  }
  // The padded image's zero borders are written when the shape changes and
  // kept otherwise: a stale border (a wider padding before, more channels,
  // another image's values) would show here as a wrong output near an edge.
  nsl::Rng rng(33);
  nsl::DirectConvScratch<float> scratch;
  struct Case {
    nsl::index c, h, w, pad, batch;
  };
  for (const Case& t : {Case{4, 6, 6, 1, 1}, Case{4, 5, 7, 2, 1}, Case{4, 6, 6, 1, 1}, Case{3, 9, 4, 1, 2},
                        Case{4, 6, 6, 1, 1}, Case{4, 6, 6, 1, 3}, Case{4, 6, 6, 0, 1}, Case{4, 6, 6, 1, 1}}) {
    CAPTURE(t.c); CAPTURE(t.h); CAPTURE(t.w); CAPTURE(t.pad); CAPTURE(t.batch);
    const nsl::ConvGeometry g{3, 1, t.pad};
    const auto x = nsl::test::randn<float>(Shape{t.batch, t.c, t.h, t.w}, rng);
    const auto weight = nsl::test::randn<float>(Shape{20, t.c, 3, 3}, rng);
    const Shape out = nsl::conv2d_output_shape("test", x.shape(), weight.shape(), Shape{}, g);
    Tensor<float> reference(out), fast(out, 5.0f);
    nsl::conv2d_forward_reference<float>(x.view(), weight.view(), Tensor<float>().view(), g, reference.view());
    if (t.batch == 1)
      nsl::conv2d_direct_forward<float>(x.data(), t.c, t.h, t.w, weight.data(), 20, nullptr, g, fast.data(), scratch);
    else
      nsl::conv2d_direct_forward_batch<float>(x.data(), t.batch, t.c, t.h, t.w, weight.data(), 20, nullptr, g,
                                              fast.data(), scratch);
    CHECK(nsl::test::max_relative_difference(fast, reference) < 1e-5);
  }
}

TEST_CASE("one image through conv2d_forward (direct, GEMM and matrix-vector paths) equals the reference") {
  // 32 x 3 x 3 patch rows: the direct path; 1 x 3 x 3 (a first layer): the
  // GEMM; stride 2: the GEMM; a 4 x 4 kernel over a 4 x 4 image: one
  // matrix-vector product per image (batch 1 and 3).
  nsl::Rng rng(32);
  nsl::Conv2dWorkspace<double> ws;
  struct Case {
    nsl::index n, c, o, h, k, stride, pad;
  };
  for (const Case& t : {Case{1, 32, 40, 12, 3, 1, 1}, Case{1, 1, 32, 28, 3, 1, 1}, Case{1, 16, 24, 9, 3, 2, 1},
                        Case{1, 128, 10, 4, 4, 1, 0}, Case{3, 128, 10, 4, 4, 1, 0}, Case{1, 128, 10, 4, 4, 2, 0}}) {
    CAPTURE(t.n); CAPTURE(t.c); CAPTURE(t.o); CAPTURE(t.h); CAPTURE(t.k); CAPTURE(t.stride);
    const nsl::ConvGeometry g{t.k, t.stride, t.pad};
    const auto x = nsl::test::randn<double>(Shape{t.n, t.c, t.h, t.h}, rng);
    const auto w = nsl::test::randn<double>(Shape{t.o, t.c, t.k, t.k}, rng);
    const auto b = nsl::test::randn<double>(Shape{t.o}, rng);
    const Shape out = nsl::conv2d_output_shape("test", x.shape(), w.shape(), b.shape(), g);
    Tensor<double> fast(out, 5.0), reference(out, -5.0);
    nsl::conv2d_forward<double>(x.view(), w.view(), b.view(), g, fast.view(), ws);
    nsl::conv2d_forward_reference<double>(x.view(), w.view(), b.view(), g, reference.view());
    CHECK(nsl::test::max_relative_difference(fast, reference) < 1e-12);
  }
}

TEST_CASE("conv2d_forward with a ReLU: max(conv + bias, 0) on every path (direct, GEMM, Winograd, matrix-vector)") {
  // The direct path applies the ReLU as it stores y, the others over y
  // after: either way the values of relu_forward(conv2d_forward(...)).
  nsl::Rng rng(34);
  struct Case {
    nsl::index n, c, o, h, k, stride, pad;
  };
  for (const Case& t : {Case{1, 32, 40, 12, 3, 1, 1}, Case{3, 32, 40, 12, 3, 1, 1}, Case{1, 1, 32, 28, 3, 1, 1},
                        Case{1, 16, 24, 9, 3, 2, 1}, Case{16, 32, 32, 8, 3, 1, 1}, Case{3, 128, 10, 4, 4, 1, 0},
                        Case{2, 8, 4, 6, 3, 1, 1}}) {
    CAPTURE(t.n); CAPTURE(t.c); CAPTURE(t.o); CAPTURE(t.h); CAPTURE(t.k); CAPTURE(t.stride);
    const nsl::ConvGeometry g{t.k, t.stride, t.pad};
    const auto x = nsl::test::randn<float>(Shape{t.n, t.c, t.h, t.h}, rng);
    const auto w = nsl::test::randn<float>(Shape{t.o, t.c, t.k, t.k}, rng);
    const auto b = nsl::test::randn<float>(Shape{t.o}, rng);
    const Shape out = nsl::conv2d_output_shape("test", x.shape(), w.shape(), b.shape(), g);
    nsl::Conv2dWorkspace<float> ws;
    Tensor<float> plain(out, 5.0f), fused(out, 5.0f);
    nsl::conv2d_forward<float>(x.view(), w.view(), b.view(), g, plain.view(), ws);
    const nsl::DirectWeights<float> prepared = nsl::direct_weights<float>(w.data(), t.o, t.c * t.k * t.k);
    nsl::conv2d_forward<float>(x.view(), w.view(), b.view(), g, fused.view(), ws, &prepared, true);
    nsl::relu_forward<float>(plain.view(), plain.view());
    CHECK(fused.vec() == plain.vec());
    CHECK(fused.vec().minCoeff() == 0.0f);
    CHECK(fused.vec().maxCoeff() > 0.0f);
  }
}

TEST_CASE("the output-side form (stride 1, size kept, fewer outputs than inputs) equals the reference") {
  nsl::Rng rng(12);
  nsl::Conv2dWorkspace<double> ws;
  struct Case {
    nsl::index n, c, o, h, w, k;
  };
  for (const Case& t : {Case{2, 5, 3, 6, 7, 3}, Case{3, 9, 1, 4, 4, 3}, Case{1, 4, 2, 5, 3, 5}, Case{2, 3, 2, 2, 1, 3},
                        Case{2, 6, 4, 3, 5, 1}, Case{1, 8, 7, 1, 1, 3}}) {
    CAPTURE(t.c); CAPTURE(t.o); CAPTURE(t.h); CAPTURE(t.w); CAPTURE(t.k);
    const nsl::ConvGeometry g{t.k, 1, (t.k - 1) / 2};
    REQUIRE(nsl::detail::conv2d_output_side(t.c, t.o, g));
    auto x = nsl::test::randn<double>(Shape{t.n, t.c, t.h, t.w}, rng);
    auto w = nsl::test::randn<double>(Shape{t.o, t.c, t.k, t.k}, rng);
    auto b = nsl::test::randn<double>(Shape{t.o}, rng);
    auto dy = nsl::test::randn<double>(Shape{t.n, t.o, t.h, t.w}, rng);
    Tensor<double> fast(dy.shape(), 5.0), reference(dy.shape(), -5.0);
    nsl::conv2d_forward<double>(x.view(), w.view(), b.view(), g, fast.view(), ws);
    nsl::conv2d_forward_reference<double>(x.view(), w.view(), b.view(), g, reference.view());
    CHECK(nsl::test::max_relative_difference(fast, reference) < 1e-12);
    Tensor<double> dx_fast(x.shape(), 7.0), dx_ref(x.shape(), -7.0), dw_fast(w.shape(), 1.0), dw_ref(w.shape(), 1.0);
    Tensor<double> db_fast(b.shape(), 2.0), db_ref(b.shape(), 2.0);
    nsl::conv2d_backward<double>(x.view(), w.view(), g, dy.view(), dx_fast.view(), dw_fast.view(), db_fast.view(), ws);
    nsl::conv2d_backward_reference<double>(x.view(), w.view(), g, dy.view(), dx_ref.view(), dw_ref.view(),
                                           db_ref.view());
    CHECK(nsl::test::max_relative_difference(dx_fast, dx_ref) < 1e-12);
    CHECK(nsl::test::max_relative_difference(dw_fast, dw_ref) < 1e-12);
    CHECK(nsl::test::max_relative_difference(db_fast, db_ref) < 1e-12);
  }
  CHECK_FALSE(nsl::detail::conv2d_output_side(3, 3, {3, 1, 1}));  // as many outputs as inputs: im2col
  CHECK_FALSE(nsl::detail::conv2d_output_side(8, 2, {3, 2, 1}));  // stride 2
  CHECK_FALSE(nsl::detail::conv2d_output_side(8, 2, {3, 1, 0}));  // the size shrinks
}

TEST_CASE("the reference convolution is the formula: a hand-computed 3x3 example") {
  // One 1x3x3 image, one 3x3 filter of ones, padding 1: each output is the
  // sum of the input's 3x3 neighbourhood.
  Tensor<double> x(Shape{1, 1, 3, 3}), w(Shape{1, 1, 3, 3}, 1.0), y(Shape{1, 1, 3, 3});
  for (nsl::index i = 0; i < 9; ++i) x[i] = double(i + 1);
  nsl::conv2d_forward_reference<double>(x.view(), w.view(), {}, {3, 1, 1}, y.view());
  CHECK(y(0, 0, 0, 0) == 1 + 2 + 4 + 5);
  CHECK(y(0, 0, 1, 1) == 45);
  CHECK(y(0, 0, 2, 1) == 4 + 5 + 6 + 7 + 8 + 9);
}

TEST_CASE("without a bias the bias gradient is skipped - an empty dx skips the input gradient") {
  nsl::Rng rng(5);
  auto x = nsl::test::randn<double>(Shape{2, 3, 6, 6}, rng);
  auto w = nsl::test::randn<double>(Shape{4, 3, 3, 3}, rng);
  Tensor<double> y(Shape{2, 4, 6, 6}), y_ref(y.shape());
  nsl::Conv2dWorkspace<double> ws;
  nsl::conv2d_forward<double>(x.view(), w.view(), {}, {3, 1, 1}, y.view(), ws);
  nsl::conv2d_forward_reference<double>(x.view(), w.view(), {}, {3, 1, 1}, y_ref.view());
  CHECK(nsl::test::max_relative_difference(y, y_ref) < 1e-12);
  Tensor<double> dw(w.shape()), dw_ref(w.shape());
  nsl::conv2d_backward<double>(x.view(), w.view(), {3, 1, 1}, y.view(), {}, dw.view(), {}, ws);
  nsl::conv2d_backward_reference<double>(x.view(), w.view(), {3, 1, 1}, y.view(), {}, dw_ref.view(), {});
  CHECK(nsl::test::max_relative_difference(dw, dw_ref) < 1e-12);
}

TEST_CASE("convolution shape errors name the operation, the expected and the actual shape") {
  Tensor<float> x(Shape{2, 3, 8, 8}), w(Shape{4, 2, 3, 3}), b(Shape{4}), y(Shape{2, 4, 8, 8});
  nsl::Conv2dWorkspace<float> ws;
  CHECK_THROWS_WITH_AS(nsl::conv2d_forward<float>(x.view(), w.view(), b.view(), {3, 1, 1}, y.view(), ws),
                       "conv2d_forward: weight: expected [4, 3, 3, 3] for an input of 3 channels, got [4, 2, 3, 3]",
                       nsl::ShapeError);
  Tensor<float> w3(Shape{4, 3, 3, 3}), b5(Shape{5}), y_bad(Shape{2, 4, 6, 6});
  CHECK_THROWS_WITH_AS(nsl::conv2d_forward<float>(x.view(), w3.view(), b5.view(), {3, 1, 1}, y.view(), ws),
                       "conv2d_forward: bias: expected [4], got [5]", nsl::ShapeError);
  CHECK_THROWS_WITH_AS(nsl::conv2d_forward<float>(x.view(), w3.view(), b.view(), {3, 1, 1}, y_bad.view(), ws),
                       "conv2d_forward: output: expected [2, 4, 8, 8], got [2, 4, 6, 6]", nsl::ShapeError);
  Tensor<float> x3(Shape{3, 8, 8});
  CHECK_THROWS_WITH_AS(nsl::conv2d_forward<float>(x3.view(), w3.view(), b.view(), {3, 1, 1}, y.view(), ws),
                       "conv2d_forward: input: expected rank 4, got [3, 8, 8]", nsl::ShapeError);
  CHECK_THROWS_AS(nsl::conv2d_forward<float>(x.view(), w3.view(), b.view(), {5, 1, 1}, y.view(), ws),
                  nsl::ShapeError);  // weight is 3x3, geometry says 5x5
}

TEST_CASE("the convolution's gradients are the same bit for bit on every run with the same thread count") {
  // Each thread sums its chunk of the batch; the chunks and the order of
  // their sums are fixed, so thread timing must not show in the result.
  nsl::Rng rng(13);
  const int saved = nsl::num_threads();
  nsl::set_num_threads(2);
  const nsl::ConvGeometry g{3, 1, 1};
  const auto x = nsl::test::randn<float>(Shape{24, 16, 8, 8}, rng);
  const auto w = nsl::test::randn<float>(Shape{16, 16, 3, 3}, rng);
  const auto dy = nsl::test::randn<float>(Shape{24, 16, 8, 8}, rng);
  nsl::Conv2dWorkspace<float> ws;
  Tensor<float> dx_first(x.shape()), dw_first(w.shape(), 0.0f), db_first(Shape{16}, 0.0f);
  nsl::conv2d_backward<float>(x.view(), w.view(), g, dy.view(), dx_first.view(), dw_first.view(), db_first.view(), ws);
  for (int run = 0; run < 5; ++run) {
    Tensor<float> dx(x.shape()), dw(w.shape(), 0.0f), db(Shape{16}, 0.0f);
    nsl::conv2d_backward<float>(x.view(), w.view(), g, dy.view(), dx.view(), dw.view(), db.view(), ws);
    CHECK(dx.vec() == dx_first.vec());
    CHECK(dw.vec() == dw_first.vec());
    CHECK(db.vec() == db_first.vec());
  }
  nsl::set_num_threads(saved);
}

TEST_CASE("conv2d_forward and conv2d_backward take Winograd's F(2x2, 3x3) where the rule says so, equal to the reference") {
  nsl::Rng rng(23);
  const nsl::ConvGeometry g{3, 1, 1};
#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
  CHECK(nsl::detail::conv2d_backward_winograd(32, 32, 16, g));
#endif
  CHECK_FALSE(nsl::detail::conv2d_backward_winograd(32, 32, 15, g));
  CHECK_FALSE(nsl::detail::conv2d_backward_winograd(16, 32, 64, g));
  CHECK_FALSE(nsl::detail::conv2d_backward_winograd(32, 32, 64, nsl::ConvGeometry{3, 2, 1}));
  CHECK_FALSE(nsl::detail::conv2d_forward_winograd(32, 32, 15, g));
  const auto x = nsl::test::randn<float>(Shape{16, 32, 7, 7}, rng), w = nsl::test::randn<float>(Shape{40, 32, 3, 3}, rng);
  const auto b = nsl::test::randn<float>(Shape{40}, rng), dy = nsl::test::randn<float>(Shape{16, 40, 7, 7}, rng);
  nsl::Conv2dWorkspace<float> ws;
  nsl::WinogradWorkspace<float> wws;
  const auto same_bits = [](const Tensor<float>& p, const Tensor<float>& q) {
    bool same = true;
    for (nsl::index i = 0; i < p.size(); ++i) same = same && p[i] == q[i];
    return same;
  };
  // Forward: Winograd without AVX-512, the direct convolution with it.
  Tensor<float> y(dy.shape()), y_ref(dy.shape()), y_w(dy.shape());
  nsl::conv2d_forward<float>(x.view(), w.view(), b.view(), g, y.view(), ws);
  nsl::conv2d_forward_reference<float>(x.view(), w.view(), b.view(), g, y_ref.view());
  nsl::winograd_conv2d_forward<float, 2>(x.view(), w.view(), b.view(), g, y_w.view(), wws);
  CHECK(nsl::test::max_relative_difference(y, y_ref) < 1e-5);
  CHECK(same_bits(y, y_w) == nsl::detail::conv2d_forward_winograd(32, 40, 16, g));
  // Gradients.
  Tensor<float> dx(x.shape()), dw(w.shape()), db(Shape{40}), dx_ref(x.shape()), dw_ref(w.shape()), db_ref(Shape{40});
  Tensor<float> dx_w(x.shape()), dw_w(w.shape()), db_w(Shape{40});
  nsl::conv2d_backward<float>(x.view(), w.view(), g, dy.view(), dx.view(), dw.view(), db.view(), ws);
  nsl::conv2d_backward_reference<float>(x.view(), w.view(), g, dy.view(), dx_ref.view(), dw_ref.view(), db_ref.view());
  nsl::winograd_conv2d_backward<float, 2>(x.view(), w.view(), g, dy.view(), dx_w.view(), dw_w.view(), db_w.view(), wws);
  CHECK(nsl::test::max_relative_difference(dx, dx_ref) < 1e-5);
  CHECK(nsl::test::max_relative_difference(dw, dw_ref) < 1e-5);
  CHECK(nsl::test::max_relative_difference(db, db_ref) < 1e-5);
  const bool winograd = nsl::detail::conv2d_backward_winograd(32, 40, 16, g);
  CHECK(same_bits(dx, dx_w) == winograd);
  CHECK(same_bits(dw, dw_w) == winograd);
  // The patch-matrix path itself, on the same layer.
  Tensor<float> dx_g(x.shape()), dw_g(w.shape()), db_g(Shape{40});
  nsl::conv2d_backward_gemm<float>(x.view(), w.view(), g, dy.view(), dx_g.view(), dw_g.view(), db_g.view(), ws);
  CHECK(nsl::test::max_relative_difference(dx_g, dx_ref) < 1e-5);
  CHECK(nsl::test::max_relative_difference(dw_g, dw_ref) < 1e-5);
}
