#include <doctest/doctest.h>

#include "nsl/check/gradcheck.hpp"
#include "nsl/layers/similarity_predictor.hpp"
#include "test_util.hpp"

using nsl::PredictorOptions;
using nsl::Shape;
using nsl::Structure;

TEST_CASE("the similarity predictor passes gradcheck in its DNS, UNS and full-sphere configurations") {
  nsl::Rng rng(420);
  struct Case {
    const char* name;
    Structure structure;
    PredictorOptions options;
  };
  for (Case c : {Case{"dns", Structure::diagonal, PredictorOptions::dns()},
                 Case{"uns", Structure::channel_shared, PredictorOptions::uns()},
                 Case{"dns_sphere", Structure::diagonal, PredictorOptions::dns_sphere()}})
    for (nsl::index stride : {1, 2}) {
      CAPTURE(c.name); CAPTURE(stride);
      c.options.hidden = 4;
      c.options.second_scale = 1.0;  // a G far from zero exercises every path
      nsl::SimilarityPredictor<double> predictor(2, 3, stride, c.structure, c.options, rng);
      const auto report = nsl::gradcheck(predictor, nsl::test::randn<double>(Shape{2, 2, 5, 5}, rng));
      CAPTURE(report.str());
      CHECK(report.worst_error < 1e-6);
    }
}

TEST_CASE("the predictor outputs K rows for DNS and K*K for UNS on the strided output grid") {
  nsl::Rng rng(421);
  nsl::SimilarityPredictor<float> dns(3, 3, 2, Structure::diagonal, PredictorOptions::dns(), rng);
  CHECK(dns.output_shape(Shape{4, 3, 28, 28}) == Shape{4, 9, 14, 14});
  nsl::SimilarityPredictor<float> uns(3, 5, 1, Structure::channel_shared, PredictorOptions::uns(), rng);
  CHECK(uns.output_shape(Shape{4, 3, 28, 28}) == Shape{4, 625, 28, 28});
  CHECK(uns.parameters().size() == 2);  // conv1, conv2 (no BN)
  CHECK(dns.parameters().size() == 6);  // conv1, bn1 gamma/beta, conv2, bn2 gamma/beta
  CHECK(dns.parameters()[1].name == "bn1.gamma");
}
