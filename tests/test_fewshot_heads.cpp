#include <doctest/doctest.h>

#include <utility>

#include "nsl/check/gradcheck.hpp"
#include "nsl/fewshot/heads.hpp"
#include "nsl/models/conv4.hpp"
#include "nsl/train/loss.hpp"
#include "test_util.hpp"

using nsl::HeadKind;
using nsl::Shape;
using nsl::Tensor;

namespace {

// A head of `kind` with every parameter drawn at random (away from the
// identity start, so that no gradient is zero by construction).
std::unique_ptr<nsl::PrototypeHead<double>> random_head(HeadKind kind, nsl::index dimension, nsl::Rng& rng) {
  nsl::HeadOptions o;
  o.rank = 3;
  o.hidden = 5;
  auto head = nsl::make_head<double>(kind, dimension, rng, o);
  for (auto& p : head->parameters()) {
    nsl::fill_normal<double>(p.value, rng, 0.0, 0.5);
    if (p.name == "scale") p.value[0] = 3.0;
  }
  return head;
}

}  // namespace

TEST_CASE("Every few-shot head passes gradcheck for the support and query rows and its parameters") {
  nsl::Rng rng(8);
  for (HeadKind kind : {HeadKind::euclidean, HeadKind::cosine, HeadKind::static_ns, HeadKind::dynamic_ns})
    for (nsl::index shots : {1, 3}) {
      CAPTURE(nsl::to_string(kind));
      CAPTURE(shots);
      auto head = random_head(kind, 6, rng);
      head->set_episode(4, shots);
      // 4 ways x shots support rows, then 5 queries; a 4-D embedding [B, 6, 1, 1] too.
      const Tensor<double> x = nsl::test::randn<double>(Shape{4 * shots + 5, 6, 1, 1}, rng);
      const auto report = nsl::gradcheck(*head, x);
      CAPTURE(report.str());
      CHECK(report.worst_error < 1e-6);
      CHECK(report.tensors.size() == 1 + head->parameters().size());
    }
}

TEST_CASE("Few-shot head scores equal the plain reference formula") {
  nsl::Rng rng(81);
  for (HeadKind kind : {HeadKind::euclidean, HeadKind::cosine, HeadKind::static_ns, HeadKind::dynamic_ns}) {
    CAPTURE(nsl::to_string(kind));
    auto head = random_head(kind, 7, rng);
    head->set_episode(3, 2);
    const Tensor<double> x = nsl::test::randn<double>(Shape{3 * 2 + 4, 7}, rng);
    const Tensor<double> s = head->forward(x);
    REQUIRE(s.shape() == Shape{4, 3});
    // The prototypes are the class means of the support rows.
    for (nsl::index k = 0; k < 3; ++k)
      CHECK(head->prototypes()(k, 0) == doctest::Approx((x(2 * k, 0) + x(2 * k + 1, 0)) / 2));
    const Tensor<double> ref = head->scores_reference(head->queries().view(), head->prototypes().view());
    REQUIRE(ref.shape() == s.shape());
    CHECK(nsl::test::max_relative_difference(s, ref) < 1e-12);
  }
  // float forward against the same formula (evaluated in double).
  for (HeadKind kind : {HeadKind::euclidean, HeadKind::cosine, HeadKind::static_ns, HeadKind::dynamic_ns}) {
    CAPTURE(nsl::to_string(kind));
    auto head = nsl::make_head<float>(kind, 16, rng, {4, 8, 10.0});
    for (auto& p : head->parameters())
      if (p.name != "scale") nsl::fill_normal<float>(p.value, rng, 0.0, 0.3);
    head->set_episode(5, 3);
    const Tensor<float> s = head->forward(nsl::test::randn<float>(Shape{5 * 3 + 7, 16}, rng));
    CHECK(nsl::test::max_relative_difference(s, head->scores_reference(head->queries().view(), head->prototypes().view())) <
          1e-5);
  }
}

TEST_CASE("The neural-similarity heads start as the cosine head") {
  nsl::Rng rng(5);
  nsl::CosineHead<double> cosine(8);
  nsl::StaticNSHead<double> diagonal(8, 0, rng), low_rank(8, 2, rng);
  nsl::DynamicNSHead<double> dynamic(8, 4, rng);
  const Tensor<double> x = nsl::test::randn<double>(Shape{5 * 1 + 3, 8}, rng);
  for (nsl::PrototypeHead<double>* h : std::vector<nsl::PrototypeHead<double>*>{&cosine, &diagonal, &low_rank, &dynamic})
    h->set_episode(5, 1);
  const Tensor<double> reference = cosine.forward(x);
  CHECK(nsl::test::max_relative_difference(diagonal.forward(x), reference) < 1e-14);
  CHECK(nsl::test::max_relative_difference(low_rank.forward(x), reference) < 1e-14);
  CHECK(nsl::test::max_relative_difference(dynamic.forward(x), reference) < 1e-14);
}

TEST_CASE("Few-shot heads reject bad layouts and options with messages") {
  nsl::Rng rng(2);
  nsl::EuclideanHead<float> head(4);
  head.set_episode(5, 2);
  CHECK_THROWS_AS(head.forward(Tensor<float>(Shape{10, 4})), nsl::ShapeError);  // no query
  CHECK_THROWS_AS(head.forward(Tensor<float>(Shape{12, 5})), nsl::ShapeError);  // wrong dimension
  CHECK_THROWS_AS(head.set_episode(1, 1), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::StaticNSHead<float>(4, 5, rng), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::parse_head("dot"), nsl::ArgumentError);
  CHECK(nsl::parse_head("dynamic_ns") == HeadKind::dynamic_ns);
  CHECK_THROWS_AS(head.backward(Tensor<float>(Shape{2, 5})), nsl::StateError);
}

TEST_CASE("Conv-4 gives 64 x 2 x 2 embeddings for 28x28 glyphs") {
  nsl::Rng rng(4);
  auto net = nsl::conv4<float>(nsl::Variant::plain, 1, rng);
  CHECK(net.output_shape(Shape{3, 1, 28, 28}) == Shape{3, 64, 2, 2});
  CHECK(nsl::conv4_embedding_size(28) == 256);
  auto dynamic = nsl::conv4<float>(nsl::Variant::dynamic_dns, 1, rng);
  CHECK(dynamic.output_shape(Shape{3, 1, 28, 28}) == Shape{3, 64, 2, 2});
}

TEST_CASE("A small Conv-4 and each head pass gradcheck end to end, for a plain and a dynamic backbone") {
  nsl::Rng rng(12);
  nsl::Conv4Options o;
  o.width = 3;
  o.predictor_hidden = 4;
  // Each head alone is checked above; here the chain, on three pairings.
  const std::pair<nsl::Variant, HeadKind> pairings[] = {{nsl::Variant::plain, HeadKind::euclidean},
                                                        {nsl::Variant::plain, HeadKind::static_ns},
                                                        {nsl::Variant::dynamic_dns, HeadKind::dynamic_ns}};
  for (const auto& [variant, kind] : pairings) {
    CAPTURE(nsl::to_string(variant));
    CAPTURE(nsl::to_string(kind));
    nsl::Sequential<double> model = nsl::conv4<double>(variant, 1, rng, o);
    auto head = random_head(kind, nsl::conv4_embedding_size(8, o), rng);
    head->set_episode(2, 2);
    model.add("head", std::move(head));
    // 2 ways x 2 shots + 3 queries of 8x8 images -> 3 x 1 x 1 embeddings.
    const auto report = nsl::gradcheck(model, nsl::test::randn<double>(Shape{7, 1, 8, 8}, rng));
    CAPTURE(report.str());
    // Looser than a single layer's 1e-6: with ReLU and max-pool kinks in
    // every block, a few elements' finite differences straddle one (a
    // wrong gradient is off by O(1)).
    CHECK(report.worst_error < 1e-4);
  }
}

TEST_CASE("Meta-training a head on separable embeddings drives the episode loss down") {
  // Two well-separated clusters per class in 6-D; the static NS head must
  // learn to classify queries from one support example.
  nsl::Rng rng(3);
  for (HeadKind kind : {HeadKind::cosine, HeadKind::static_ns, HeadKind::dynamic_ns}) {
    CAPTURE(nsl::to_string(kind));
    auto head = nsl::make_head<double>(kind, 6, rng, {2, 8, 1.0});
    head->set_episode(3, 1);
    Tensor<double> x(Shape{3 + 6, 6}), dscores(Shape{6, 3});
    std::vector<int> labels = {0, 0, 1, 1, 2, 2};
    double first = 0.0, last = 0.0;
    for (int step = 0; step < 200; ++step) {
      for (nsl::index r = 0; r < 9; ++r) {
        const nsl::index k = r < 3 ? r : (r - 3) / 2;
        for (nsl::index i = 0; i < 6; ++i) x(r, i) = (i == 2 * k ? 3.0 : 0.0) + 0.3 * rng.normal();
      }
      const Tensor<double> s = head->forward(x);
      const double loss = nsl::softmax_cross_entropy<double>(s.view(), labels, 0.0, dscores.view()).loss;
      for (auto& p : head->parameters()) p.grad.vec().setZero();
      head->backward(dscores);
      for (auto& p : head->parameters()) p.value.vec() -= 0.5 * p.grad.vec();
      if (step == 0) first = loss;
      last = loss;
    }
    CHECK(last < 0.5 * first);
  }
}
