// Const inference (Layer::infer) allocates nothing once its workspace has seen
// the shape: after one warm-up call, a second infer of the same shape makes no
// heap allocation (counting_malloc.cpp counts every call of the malloc family,
// Eigen's and operator new's included).
#include <doctest/doctest.h>

#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "counting_malloc.hpp"
#include "nsl/layers/batch_norm2d.hpp"
#include "nsl/layers/conv2d.hpp"
#include "nsl/layers/layer.hpp"
#include "nsl/layers/linear.hpp"
#include "nsl/layers/max_pool2d.hpp"
#include "nsl/layers/relu.hpp"
#include "nsl/layers/sphere_conv2d.hpp"
#include "nsl/layers/static_ns_conv2d.hpp"

namespace inference_allocations {

/// The OpenMP thread number and team size (0 and 1 without OpenMP).
inline int omp_thread() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}
inline int omp_team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

/// How many times `f()` calls the malloc family.
template <class F>
long long count_allocations(F&& f) {
  const long long before = nsl::test::allocations();
  std::forward<F>(f)();
  return nsl::test::allocations() - before;
}

/// The allocations of a first infer of x into a fresh workspace (it sizes the
/// workspace) and of a second one, of the same shape, into the same workspace.
struct InferCounts {
  long long first = 0, second = 0;
};
template <class T, class D>
InferCounts count_infer_allocations(const nsl::Layer<T, D>& layer, nsl::TensorView<const T, D> x) {
  nsl::Tensor<T, D> y(layer.output_shape(x.shape()));
  nsl::InferenceWorkspace ws;
  InferCounts counts;
  counts.first = count_allocations([&] { layer.infer(x, y.view(), ws); });
  counts.second = count_allocations([&] { layer.infer(x, y.view(), ws); });
  return counts;
}

/// How many times the malloc family is called while `threads` OpenMP threads
/// of the caller's own parallel region each run body(t) once, t = 0, 1, ...
/// (counted between two barriers, so entering the region is not counted;
/// without OpenMP, the calls run in turn).
template <class F>
long long count_allocations_in_parallel(int threads, F&& body) {
  long long before = 0, after = 0;
NSL_OMP(parallel num_threads(threads))
  {
NSL_OMP(barrier)
NSL_OMP(master)
    before = nsl::test::allocations();
NSL_OMP(barrier)
    for (int t = omp_thread(); t < threads; t += omp_team_size()) body(t);
NSL_OMP(barrier)
NSL_OMP(master)
    after = nsl::test::allocations();
  }
  return after - before;
}

/// Checks that a warm infer of `layer` on x allocates nothing; `has_scratch`:
/// the layer keeps scratch in its workspace, so the first call must allocate
/// (which shows that the counting sees the layer's allocations). Also that 2
/// threads of the caller's parallel region sharing the (const) layer, each
/// with its own workspace, get the same output and, once warm, allocate
/// nothing either.
template <class T>
void check_warm_infer_allocates_nothing(const std::string& name, const nsl::Layer<T>& layer, const nsl::Shape& input,
                                        bool has_scratch) {
  CAPTURE(name);
  nsl::Rng rng(42);
  const nsl::Tensor<T> x = nsl::random_normal<T>(input, rng);
  const InferCounts counts = count_infer_allocations<T>(layer, x.view());
  std::printf("%-48s %-6s first infer: %4lld allocations, second: %lld", name.c_str(),
              sizeof(T) == 4 ? "float" : "double", counts.first, counts.second);
  if (has_scratch) CHECK(counts.first > 0);
  CHECK(counts.second == 0);
  {
    const int threads = 2;
    nsl::InferenceWorkspace serial_ws;
    const nsl::Tensor<T> expected = layer.infer(x.view(), serial_ws);
    std::vector<nsl::InferenceWorkspace> workspaces(threads);
    std::vector<nsl::Tensor<T>> outputs(threads, nsl::Tensor<T>(expected.shape()));
    const auto infer = [&](int t) {
      const auto i = static_cast<std::size_t>(t);
      layer.infer(x.view(), outputs[i].view(), workspaces[i]);
    };
    count_allocations_in_parallel(threads, infer);  // warm-up: sizes each thread's workspace
    const long long in_threads = count_allocations_in_parallel(threads, infer);
    std::printf(", second in %d caller threads: %lld", threads, in_threads);
    CHECK(in_threads == 0);
    for (const auto& y : outputs) CHECK((y.vec() - expected.vec()).cwiseAbs().maxCoeff() == T(0));
  }
  std::printf("\n");
}

}  // namespace inference_allocations

TEST_CASE("the allocation count sees a layer's allocations") {
  using namespace inference_allocations;
  nsl::ReLU<float> relu;
  const nsl::Tensor<float> x(nsl::Shape{2, 3, 4, 4});
  nsl::InferenceWorkspace ws;
  CHECK(count_allocations([&] { relu.infer(x.view(), ws); }) > 0);  // the convenience form allocates its output
  nsl::Tensor<float> y(x.shape());
  CHECK(count_allocations([&] { relu.infer(x.view(), y.view(), ws); }) == 0);
}

TEST_CASE_TEMPLATE("a warm infer of each basic layer allocates nothing", T, float, double) {
  using namespace inference_allocations;
  using nsl::Shape;
  nsl::set_num_threads(2);
  nsl::Rng rng(7);
  check_warm_infer_allocates_nothing<T>("Conv2d 16->32 k3 p1", nsl::Conv2d<T>(16, 32, 3, {1, 1, true}, rng),
                                        Shape{4, 16, 14, 14}, true);
  check_warm_infer_allocates_nothing<T>("Conv2d 32->8 k3 p1 (output-side form)",
                                        nsl::Conv2d<T>(32, 8, 3, {1, 1, false}, rng), Shape{4, 32, 9, 9}, true);
  check_warm_infer_allocates_nothing<T>("Conv2d 16->16 k5 s2 p2, batch 1", nsl::Conv2d<T>(16, 16, 5, {2, 2, true}, rng),
                                        Shape{1, 16, 15, 15}, true);
  check_warm_infer_allocates_nothing<T>("Conv2d 32->40 k3 p1, batch 1 (direct)",
                                        nsl::Conv2d<T>(32, 40, 3, {1, 1, true}, rng), Shape{1, 32, 9, 9}, true);
  check_warm_infer_allocates_nothing<T>("Conv2d 64->10 k4 on 4x4 (matrix-vector)",
                                        nsl::Conv2d<T>(64, 10, 4, {1, 0, true}, rng), Shape{3, 64, 4, 4}, false);
  check_warm_infer_allocates_nothing<T>("ReLU", nsl::ReLU<T>(), Shape{4, 16, 14, 14}, false);
  check_warm_infer_allocates_nothing<T>("MaxPool2d 2x2 s2", nsl::MaxPool2d<T>(), Shape{4, 16, 15, 15}, false);
  {
    nsl::BatchNorm2d<T> bn(16);
    bn.forward(nsl::random_normal<T>(Shape{4, 16, 6, 6}, rng).view());  // running statistics of data
    check_warm_infer_allocates_nothing<T>("BatchNorm2d", bn, Shape{4, 16, 14, 14}, false);
  }
  check_warm_infer_allocates_nothing<T>("Linear 4096->256 (4-D input)", nsl::Linear<T>(4096, 256, true, rng),
                                        Shape{64, 64, 8, 8}, true);
  for (nsl::Structure s : {nsl::Structure::identity, nsl::Structure::diagonal, nsl::Structure::channel_shared,
                           nsl::Structure::block_diagonal, nsl::Structure::full}) {
    nsl::StaticNSConv2d<T> layer(32, 32, 3, s, {1, 1, true}, rng);
    nsl::fill_normal<T>(layer.similarity().view(), rng, 0.0, 0.1);
    check_warm_infer_allocates_nothing<T>(std::string("StaticNSConv2d 32->32 ") + nsl::to_string(s), layer,
                                          Shape{4, 32, 10, 10}, true);
  }
  struct SphereConfig {
    const char* name;
    nsl::SphereConvOptions options;
  };
  for (const SphereConfig& c :
       {SphereConfig{"plain", {1, 1, false, false, nsl::AngularForm::identity}},
        SphereConfig{"identity, input norm only", {1, 1, true, false, nsl::AngularForm::identity}},
        SphereConfig{"cosine", {1, 1, true, true, nsl::AngularForm::cosine}},
        SphereConfig{"sigmoid, stride 2", {2, 1, true, true, nsl::AngularForm::sigmoid}}})
    check_warm_infer_allocates_nothing<T>(std::string("SphereConv2d 16->24 ") + c.name,
                                          nsl::SphereConv2d<T>(16, 24, 3, c.options, rng), Shape{4, 16, 12, 12}, true);
}

// ---- the dynamic layers, the global similarity block, the few-shot heads,
// and whole networks: every CNN-9 variant, Conv-4 with every head ----------
// (appended; the headers these cases need besides the ones above)
#include <vector>

#include "nsl/fewshot/heads.hpp"
#include "nsl/layers/dynamic_ns_conv2d.hpp"
#include "nsl/layers/global_similarity2d.hpp"
#include "nsl/layers/similarity_predictor.hpp"
#include "nsl/models/cnn9.hpp"
#include "nsl/models/conv4.hpp"

namespace inference_allocations_networks {

/// A CNN-9 of `variant` on 1 x 28 x 28 images after two training-mode
/// forwards (running statistics of data): the reference widths, or small
/// ones (stages 8/16/32, attention stages 16/16/32, predictors 8 wide).
inline nsl::Sequential<float> trained_cnn9(nsl::Variant variant, bool small, nsl::Rng& rng) {
  nsl::Cnn9Options o;
  if (small) {
    const nsl::index widths[3] = {8, 16, 32}, attention[3] = {16, 16, 32};
    for (int i = 0; i < 3; ++i) o.widths[i] = widths[i], o.attention_widths[i] = attention[i];
    o.predictor_hidden = 8;
  }
  nsl::Sequential<float> net = nsl::cnn9<float>(variant, 1, 10, rng, o);
  for (int i = 0; i < 2; ++i) net.forward(nsl::random_normal<float>(nsl::Shape{2, 1, 28, 28}, rng));
  return net;
}

/// Prints and checks the counts of a network's first and second infer of x.
inline void check_network(const std::string& name, const nsl::Sequential<float>& net, const nsl::Tensor<float>& x) {
  CAPTURE(name);
  const inference_allocations::InferCounts counts =
      inference_allocations::count_infer_allocations<float, nsl::Cpu>(net, x.view());
  std::printf("%-56s first infer: %4lld allocations, second: %lld\n", name.c_str(), counts.first, counts.second);
  CHECK(counts.first > 0);  // the workspace's buffers: the count sees them
  CHECK(counts.second == 0);
}

const nsl::Variant all_variants[] = {nsl::Variant::plain,       nsl::Variant::static_dns,
                                     nsl::Variant::static_uns,  nsl::Variant::dynamic_dns,
                                     nsl::Variant::dynamic_uns, nsl::Variant::dynamic_dns_sphere,
                                     nsl::Variant::sphere_attention};
const nsl::HeadKind all_heads[] = {nsl::HeadKind::euclidean, nsl::HeadKind::cosine, nsl::HeadKind::static_ns,
                                   nsl::HeadKind::dynamic_ns};

}  // namespace inference_allocations_networks

TEST_CASE_TEMPLATE("a warm infer of each dynamic layer, the global similarity block and each few-shot head allocates nothing",
                   T, float, double) {
  using inference_allocations::check_warm_infer_allocates_nothing;
  using nsl::Shape;
  nsl::set_num_threads(2);
  nsl::Rng rng(8);
  struct Dynamic {
    const char* name;
    nsl::Structure structure;
    nsl::PredictorOptions predictor;
  };
  for (const Dynamic& d : {Dynamic{"DNS", nsl::Structure::diagonal, nsl::PredictorOptions::dns()},
                           Dynamic{"UNS", nsl::Structure::channel_shared, nsl::PredictorOptions::uns()},
                           Dynamic{"DNS sphere", nsl::Structure::diagonal, nsl::PredictorOptions::dns_sphere()}})
    for (nsl::index batch : {1, 4}) {
      const std::string suffix = nsl::cat(d.name, ", batch ", batch);
      check_warm_infer_allocates_nothing<T>("SimilarityPredictor 16 " + suffix,
                                            nsl::SimilarityPredictor<T>(16, 3, 1, d.structure, d.predictor, rng),
                                            Shape{batch, 16, 9, 9}, true);
      check_warm_infer_allocates_nothing<T>(
          "DynamicNSConv2d 16->16 " + suffix,
          nsl::DynamicNSConv2d<T>(16, 16, 3, d.structure, nsl::DynamicNSConvOptions{1, true, d.predictor}, rng),
          Shape{batch, 16, 9, 9}, true);
    }
  {
    nsl::GlobalSimilarity2d<T> block(16, rng);
    block.gamma_tensor()[0] = T(0.5);
    check_warm_infer_allocates_nothing<T>("GlobalSimilarity2d 16 (P = 81)", block, Shape{4, 16, 9, 9}, true);
  }
  // 5-way 2-shot episodes with 6 queries of 64 features, and 5-way 1-shot
  // with 75 queries of 1600 (products large enough for threaded GEMMs).
  for (nsl::HeadKind kind : inference_allocations_networks::all_heads)
    for (nsl::index dimension : {64, 1600}) {
      auto head = nsl::make_head<T>(kind, dimension, rng, nsl::HeadOptions{4, 16, 10.0});
      head->set_episode(5, dimension == 64 ? 2 : 1);
      check_warm_infer_allocates_nothing<T>(nsl::cat(head->describe(), ", ", dimension == 64 ? 16 : 80, " rows"), *head,
                                            Shape{dimension == 64 ? 16 : 80, dimension}, true);
    }
}

TEST_CASE("a warm infer of every CNN-9 variant allocates nothing: reference widths at batch 1, small widths at batch 64") {
  namespace nets = inference_allocations_networks;
  nsl::set_num_threads(2);
  nsl::Rng rng(9);
  for (nsl::Variant variant : nets::all_variants)
    for (bool small : {false, true}) {
      const nsl::index batch = small ? 64 : 1;
      const nsl::Sequential<float> net = nets::trained_cnn9(variant, small, rng);
      nets::check_network(nsl::cat("CNN-9 ", nsl::to_string(variant), small ? " (small widths)" : "", ", batch ", batch),
                          net, nsl::random_normal<float>(nsl::Shape{batch, 1, 28, 28}, rng));
    }
}

TEST_CASE("a warm infer of Conv-4 with every few-shot head allocates nothing (5-way 1-shot, 15 queries)") {
  namespace nets = inference_allocations_networks;
  nsl::set_num_threads(2);
  nsl::Rng rng(10);
  for (nsl::Variant variant : {nsl::Variant::plain, nsl::Variant::dynamic_dns})
    for (nsl::HeadKind kind : nets::all_heads) {
      nsl::Sequential<float> net = nsl::conv4<float>(variant, 1, rng);
      net.add("head", nsl::make_head<float>(kind, nsl::conv4_embedding_size(28), rng)).set_episode(5, 1);
      const nsl::Tensor<float> episode = nsl::random_normal<float>(nsl::Shape{20, 1, 28, 28}, rng);
      net.forward(episode);  // running statistics of data
      nets::check_network(nsl::cat("Conv-4 ", nsl::to_string(variant), " + ", nsl::to_string(kind), " head"), net,
                          episode);
    }
}

// ---- deployed networks (nsl/deploy/deploy.hpp) ------------------------------
#include "nsl/deploy/deploy.hpp"

TEST_CASE("a warm infer of every deployed CNN-9 allocates nothing at batch 1 and 64; the workspace's bytes at batch 1") {
  namespace nets = inference_allocations_networks;
  nsl::Rng rng(11);
  std::printf("deployed CNN-9 (reference widths), 1 thread: workspace held after the first infer at batch 1\n");
  for (nsl::Variant variant : nets::all_variants) {
    nsl::Sequential<float> deployed = nsl::deploy(nets::trained_cnn9(variant, false, rng));
    // One thread, as an embedded build without OpenMP runs it: the bytes the
    // workspace keeps (heap in use after the first infer, minus before).
    nsl::set_num_threads(1);
    {
      const nsl::Tensor<float> x = nsl::random_normal<float>(nsl::Shape{1, 1, 28, 28}, rng);
      nsl::Tensor<float> y(deployed.output_shape(x.shape()));
      long long parameters = 0;
      for (const auto& p : deployed.parameters()) parameters += p.value.size() * static_cast<long long>(sizeof(float));
      // parameters() dropped the convolutions' laid-out weights (they could
      // change through its views); laying them out again holds these bytes.
      const long long unprepared = nsl::test::heap_in_use();
      deployed.prepare_inference();
      const long long laid_out = nsl::test::heap_in_use() - unprepared;
      nsl::InferenceWorkspace ws;
      const long long before = nsl::test::heap_in_use();
      deployed.infer(x.view(), y.view(), ws);
      const long long held = nsl::test::heap_in_use() - before;
      std::printf("  %-20s workspace %9lld bytes, parameters %9lld bytes, laid out for infer %9lld bytes\n",
                  nsl::to_string(variant), held, parameters, laid_out);
      CHECK(held > 0);
      CHECK(laid_out >= 0);
    }
    nsl::set_num_threads(2);
    for (nsl::index batch : {1, 64})
      nets::check_network(nsl::cat("deployed CNN-9 ", nsl::to_string(variant), ", batch ", batch), deployed,
                          nsl::random_normal<float>(nsl::Shape{batch, 1, 28, 28}, rng));
  }
}
