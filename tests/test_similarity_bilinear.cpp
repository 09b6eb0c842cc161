#include <doctest/doctest.h>

#include "nsl/check/gradcheck.hpp"
#include "nsl/layers/layer.hpp"
#include "nsl/similarity/bilinear.hpp"
#include "test_util.hpp"

using nsl::Shape;
using nsl::Structure;
using nsl::Tensor;

namespace {
const Structure all_structures[] = {Structure::identity, Structure::diagonal, Structure::channel_shared,
                                    Structure::block_diagonal, Structure::full};

// A random M of the structure (identity: nothing stored).
Tensor<double> random_similarity(Structure s, nsl::index C, nsl::index K, nsl::Rng& rng) {
  return nsl::test::randn<double>(nsl::similarity_shape(s, C, K), rng);
}

// f_M(w, x) as a "layer" with input x and parameters w and M, so that
// gradcheck can check all three gradients of bilinear_similarity_backward.
class BilinearProbe : public nsl::Layer<double> {
 public:
  BilinearProbe(Structure s, nsl::index C, nsl::index K, nsl::Rng& rng)
      : s_(s), C_(C), K_(K), w_(nsl::test::randn<double>(Shape{C * K}, rng)), dw_(w_.shape()),
        m_(random_similarity(s, C, K, rng)), dm_(m_.shape()) {}
  std::string describe() const override { return "BilinearProbe"; }
  Shape output_shape(const Shape&) const override { return Shape{1}; }
  void forward_into(nsl::TensorView<const double> x, nsl::TensorView<double> y) override {
    y[0] = nsl::bilinear_similarity<double>(s_, m_.view(), w_.view(), x, C_, K_);
    x_ = Tensor<double>(x);
    remember_input_shape(x.shape());
  }
  void backward_into(nsl::TensorView<const double> dy, nsl::TensorView<double> dx) override {
    Tensor<double> dw(w_.shape());
    nsl::bilinear_similarity_backward<double>(s_, m_.view(), w_.view(), x_.view(), dy[0], C_, K_,
                                              dw.view(), dx, dm_.view());
    dw_.vec() += dw.vec();
  }
  std::vector<nsl::Parameter<double>> parameters() override {
    std::vector<nsl::Parameter<double>> p{{"w", w_.view(), dw_.view(), false}};
    if (s_ != Structure::identity) p.push_back({"M", m_.view(), dm_.view(), false});
    return p;
  }

 private:
  Structure s_;
  nsl::index C_, K_;
  Tensor<double> w_, dw_, m_, dm_, x_;
};
}  // namespace

TEST_CASE("the structured similarity equals w^T M x with the dense matrix, for every structure") {
  nsl::Rng rng(100);
  for (Structure s : all_structures)
    for (nsl::index K : {9, 25}) {
      CAPTURE(nsl::to_string(s)); CAPTURE(K);
      const nsl::index C = 3;
      auto m = random_similarity(s, C, K, rng);
      auto w = nsl::test::randn<double>(Shape{C * K}, rng), x = nsl::test::randn<double>(Shape{C * K}, rng);
      const double fast = nsl::bilinear_similarity<double>(s, m.view(), w.view(), x.view(), C, K);
      const double reference = nsl::bilinear_similarity_reference<double>(s, m.view(), w.view(), x.view(), C, K);
      CHECK(fast == doctest::Approx(reference).epsilon(1e-12));
    }
}

TEST_CASE("M = I in every structure gives the inner product w^T x") {
  nsl::Rng rng(101);
  for (Structure s : all_structures) {
    auto m = nsl::identity_similarity<double>(s, 2, 9);
    auto w = nsl::test::randn<double>(Shape{18}, rng), x = nsl::test::randn<double>(Shape{18}, rng);
    CHECK(nsl::bilinear_similarity<double>(s, m.view(), w.view(), x.view(), 2, 9) ==
          doctest::Approx(w.vec().dot(x.vec())).epsilon(1e-14));
  }
}

TEST_CASE("the gradients of w^T M x with respect to w, x and M pass gradcheck for every structure") {
  nsl::Rng rng(102);
  for (Structure s : all_structures)
    for (nsl::index K : {9, 25}) {
      CAPTURE(nsl::to_string(s)); CAPTURE(K);
      BilinearProbe probe(s, 3, K, rng);
      const auto report = nsl::gradcheck(probe, nsl::test::randn<double>(Shape{3 * K}, rng));
      CAPTURE(report.str());
      CHECK(report.worst_error < 1e-6);
      CHECK(report.tensors.size() == (s == Structure::identity ? 2u : 3u));
    }
}

TEST_CASE("reduce_similarity_gradient is the adjoint of expand_similarity") {
  nsl::Rng rng(103);
  for (Structure s : all_structures) {
    if (s == Structure::identity) continue;
    auto m = random_similarity(s, 3, 4, rng);
    nsl::Matrix<double> g = nsl::Matrix<double>::Random(12, 12);
    Tensor<double> reduced(m.shape());
    nsl::reduce_similarity_gradient<double>(s, g, 3, 4, reduced.view());
    // Both sides linear in m: <expand(m), g> = <m, reduce(g)>.
    const nsl::Matrix<double> full = nsl::expand_similarity<double>(s, m.view(), 3, 4);
    CHECK(full.cwiseProduct(g).sum() == doctest::Approx(m.vec().dot(reduced.vec())).epsilon(1e-12));
  }
}

TEST_CASE("fold_weights equals the dense fold w'_o = M^T w_o for every structure") {
  nsl::Rng rng(104);
  for (Structure s : all_structures)
    for (nsl::index k : {3, 5}) {
      CAPTURE(nsl::to_string(s)); CAPTURE(k);
      auto m = random_similarity(s, 2, k * k, rng);
      auto w = nsl::test::randn<double>(Shape{3, 2, k, k}, rng);
      Tensor<double> fast(w.shape()), reference(w.shape());
      nsl::fold_weights<double>(s, m.view(), w.view(), fast.view());
      nsl::fold_weights_reference<double>(s, m.view(), w.view(), reference.view());
      CHECK(nsl::test::max_relative_difference(fast, reference) < 1e-13);
    }
}

TEST_CASE("similarity shapes and names are checked") {
  CHECK(nsl::similarity_shape(Structure::diagonal, 4, 9) == Shape{9});
  CHECK(nsl::similarity_shape(Structure::channel_shared, 4, 9) == Shape{9, 9});
  CHECK(nsl::similarity_shape(Structure::block_diagonal, 4, 9) == Shape{4, 9, 9});
  CHECK(nsl::similarity_shape(Structure::full, 4, 9) == Shape{36, 36});
  CHECK(nsl::parse_structure("uns") == Structure::channel_shared);
  CHECK(nsl::parse_structure("dns") == Structure::diagonal);
  CHECK_THROWS_WITH_AS(nsl::parse_structure("square"), doctest::Contains("unknown structure 'square'"),
                       nsl::ArgumentError);
  Tensor<double> m(Shape{8}), w(Shape{18}), x(Shape{18});
  CHECK_THROWS_WITH_AS(nsl::bilinear_similarity<double>(Structure::diagonal, m.view(), w.view(), x.view(), 2, 9),
                       "bilinear_similarity: M (diagonal): expected [9], got [8]", nsl::ShapeError);
}
