// Tests of nsl/io/model_file.hpp: a model file rebuilds the network it was
// written from (every CNN-9 variant, Conv-4 with every head) with the same
// logits, keeps the training state for resuming, still reads the files of
// format version 1, and refuses bad files with messages naming the problem.
// tests/data/model_v2_cnn9_dynamic_dns.nslckpt is a committed file of the
// current version (regenerate it with NSL_WRITE_TEST_DATA=1, only on purpose).
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "nsl/io/model_file.hpp"
#include "test_util.hpp"

namespace model_file_test {

namespace fs = std::filesystem;


std::string scratch(const std::string& name) {
  const fs::path dir = fs::path(NSL_TEST_BINARY_DIR) / "model_file_test";
  fs::create_directories(dir);
  return (dir / name).string();
}

std::vector<char> bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A small CNN-9 of `variant` on 1 x 8 x 8 images, 3 classes.
nsl::ModelSpec small_cnn9(nsl::Variant variant) {
  nsl::ModelSpec s;
  s.variant = variant;
  s.in_channels = 1;
  s.input_size = 8;
  s.classes = 3;
  s.dataset = "test";
  s.cnn9.widths[0] = 2;
  s.cnn9.widths[1] = 3;
  s.cnn9.widths[2] = 4;
  s.cnn9.attention_widths[0] = 8;
  s.cnn9.attention_widths[1] = 8;
  s.cnn9.attention_widths[2] = 16;
  s.cnn9.predictor_hidden = 4;
  s.cnn9.bn.eps = 2e-3;
  s.cnn9.bn.decay = 0.9;
  return s;
}

// Moves the BatchNorm statistics away from (0, 1) so that saving them matters.
void train_statistics(nsl::Model<float>& m, nsl::Rng& rng) {
  const nsl::Tensor<float> x = nsl::test::randn<float>(nsl::Shape{4, m.spec.in_channels, 8, 8}, rng);
  m.network.set_training(true);
  m.network.forward(x.view());
}

nsl::Tensor<float> logits(nsl::Model<float>& m, const nsl::Tensor<float>& x) {
  m.network.set_training(false);
  return m.network.forward(x.view());
}

bool same_spec(const nsl::ModelSpec& a, const nsl::ModelSpec& b) {
  bool same = a.network == b.network && a.variant == b.variant && a.in_channels == b.in_channels &&
              a.input_size == b.input_size && a.dataset == b.dataset;
  if (a.network == nsl::Network::cnn9) {
    same = same && a.classes == b.classes && a.cnn9.predictor_hidden == b.cnn9.predictor_hidden &&
           a.cnn9.bn.eps == b.cnn9.bn.eps && a.cnn9.bn.decay == b.cnn9.bn.decay &&
           a.cnn9.static_dns_identity_pattern == b.cnn9.static_dns_identity_pattern;
    for (int i = 0; i < 3; ++i)
      same = same && a.cnn9.widths[i] == b.cnn9.widths[i] && a.cnn9.attention_widths[i] == b.cnn9.attention_widths[i];
  } else {
    same = same && a.conv4.width == b.conv4.width && a.head == b.head && a.head_options.rank == b.head_options.rank &&
           a.head_options.hidden == b.head_options.hidden && a.head_options.scale == b.head_options.scale;
  }
  return same;
}

// The committed file's model: fixed seed, statistics and optimiser state.
void reference_model(nsl::Model<float>& model, nsl::Sgd<float>& sgd, nsl::Rng& rng) {
  train_statistics(model, rng);
  for (auto& v : sgd.velocities()) nsl::fill_normal<float>(v.view(), rng, 0.0, 0.01);
}

}  // namespace model_file_test

using namespace model_file_test;

TEST_CASE("a model file rebuilds every CNN-9 variant with the same logits, bit for bit") {
  for (nsl::Variant v : {nsl::Variant::plain, nsl::Variant::static_dns, nsl::Variant::static_uns, nsl::Variant::dynamic_dns,
                         nsl::Variant::dynamic_uns, nsl::Variant::dynamic_dns_sphere, nsl::Variant::sphere_attention}) {
    const std::string variant = nsl::to_string(v);
    CAPTURE(variant);
    nsl::Rng rng(7);
    nsl::Model<float> model = nsl::build_model<float>(small_cnn9(v), rng);
    train_statistics(model, rng);
    const nsl::Tensor<float> x = nsl::test::randn<float>(nsl::Shape{2, 1, 8, 8}, rng);
    const std::string path = scratch(std::string("cnn9_") + nsl::to_string(v) + ".nslckpt");
    nsl::save_model(path, model);
    nsl::Model<float> loaded = nsl::load_model<float>(path);
    CHECK(same_spec(loaded.spec, model.spec));
    CHECK(loaded.network.parameters().size() == model.network.parameters().size());
    const nsl::Tensor<float> a = logits(model, x), b = logits(loaded, x);
    CHECK(nsl::test::max_relative_difference(b, a) == 0.0);
    // A second model from another seed differs: the comparison above can fail.
    nsl::Rng other(8);
    nsl::Model<float> fresh = nsl::build_model<float>(small_cnn9(v), other);
    CHECK(nsl::test::max_relative_difference(logits(fresh, x), a) > 1e-3);
  }
}

TEST_CASE("a model file rebuilds Conv-4 with each few-shot head") {
  for (nsl::HeadKind h : {nsl::HeadKind::euclidean, nsl::HeadKind::cosine, nsl::HeadKind::static_ns, nsl::HeadKind::dynamic_ns}) {
    CAPTURE(nsl::to_string(h));
    nsl::ModelSpec spec;
    spec.network = nsl::Network::conv4;
    spec.variant = nsl::Variant::static_dns;
    spec.input_size = 8;
    spec.dataset = "glyphs";
    spec.conv4.width = 4;
    spec.head = h;
    spec.head_options.rank = 2;
    spec.head_options.hidden = 5;
    nsl::Rng rng(3);
    nsl::Model<float> model = nsl::build_model<float>(spec, rng);
    for (auto& p : model.head->parameters()) nsl::fill_normal<float>(p.value, rng, 0.5, 0.1);  // away from the init
    const nsl::Tensor<float> x = nsl::test::randn<float>(nsl::Shape{2 * 2 + 3, 1, 8, 8}, rng);
    const std::string path = scratch(std::string("conv4_") + nsl::to_string(h) + ".nslckpt");
    nsl::save_model(path, model);
    nsl::Model<float> loaded = nsl::load_model<float>(path);
    CHECK(same_spec(loaded.spec, model.spec));
    auto scores = [&](nsl::Model<float>& m) {
      m.network.set_training(false);
      m.head->set_episode(2, 2);
      return m.head->forward(m.network.forward(x.view()).view());
    };
    CHECK(nsl::test::max_relative_difference(scores(loaded), scores(model)) == 0.0);
  }
}

TEST_CASE("a model file keeps the optimiser and the generator for resuming") {
  nsl::Rng rng(11);
  nsl::Model<float> model = nsl::build_model<float>(small_cnn9(nsl::Variant::static_dns), rng);
  nsl::Sgd<float> sgd(model.parameters(), {0.9, 5e-4});
  for (auto& v : sgd.velocities()) nsl::fill_normal<float>(v.view(), rng, 0.0, 1.0);
  const std::string path = scratch("resumable.nslckpt");
  nsl::save_model(path, model, nsl::TrainingState<float>{3, 123, &rng, &sgd, {{"batch", "64"}}});
  const double next = rng.normal();

  const nsl::ModelFile file = nsl::read_model_file(path);
  CHECK(file.resumable());
  REQUIRE(file.note("batch") != nullptr);
  CHECK(*file.note("batch") == "64");
  CHECK(file.note("epochs") == nullptr);
  nsl::Model<float> loaded = nsl::load_model<float>(file);
  nsl::Sgd<float> restored_sgd(loaded.parameters(), {0.9, 5e-4});
  nsl::Rng restored_rng(999);
  nsl::index iteration = 0;
  CHECK(nsl::restore_training(file, loaded, restored_sgd, restored_rng, iteration) == 3);
  CHECK(iteration == 123);
  CHECK(restored_rng.normal() == next);
  for (std::size_t i = 0; i < sgd.velocities().size(); ++i)
    CHECK(nsl::test::max_relative_difference(restored_sgd.velocities()[i], sgd.velocities()[i]) == 0.0);

  // A file without training state says it cannot resume.
  nsl::save_model(path, model);
  const nsl::ModelFile plain = nsl::read_model_file(path);
  CHECK_FALSE(plain.resumable());
  CHECK_THROWS_WITH_AS(nsl::restore_training(plain, loaded, restored_sgd, restored_rng, iteration),
                       doctest::Contains("cannot resume training"), nsl::FormatError);
}

TEST_CASE("the committed model file of the current version loads and saves back byte for byte") {
  const std::string committed = std::string(NSL_TEST_SOURCE_DIR) + "/tests/data/model_v2_cnn9_dynamic_dns.nslckpt";
  nsl::Rng rng(2019);
  nsl::Model<float> model = nsl::build_model<float>(small_cnn9(nsl::Variant::dynamic_dns), rng);
  nsl::Sgd<float> sgd(model.parameters());
  reference_model(model, sgd, rng);
  const nsl::TrainingState<float> state{2, 40, &rng, &sgd, {{"batch", "16"}, {"epochs", "5"}}};
  if (const char* write = std::getenv("NSL_WRITE_TEST_DATA"); write && std::string(write) == "1")
    nsl::save_model(committed, model, state);

  const nsl::ModelFile file = nsl::read_model_file(committed);
  CHECK(file.version == 2);
  CHECK(same_spec(file.spec, model.spec));
  CHECK(file.resumable());
  nsl::Model<float> loaded = nsl::load_model<float>(file);
  nsl::Sgd<float> loaded_sgd(loaded.parameters());
  nsl::Rng loaded_rng(1);
  nsl::index iteration = 0;
  CHECK(nsl::restore_training(file, loaded, loaded_sgd, loaded_rng, iteration) == 2);
  // Saving what was loaded gives the committed bytes: the layout has not changed.
  const std::string again = scratch("committed_again.nslckpt");
  nsl::save_model(again, loaded, nsl::TrainingState<float>{2, iteration, &loaded_rng, &loaded_sgd,
                                                           {{"batch", "16"}, {"epochs", "5"}}});
  CHECK(bytes_of(again) == bytes_of(committed));
  // And it is the model the seed makes (to float rounding of the initialisation on this machine).
  const nsl::Tensor<float> x = nsl::test::randn<float>(nsl::Shape{2, 1, 8, 8}, rng);
  CHECK(nsl::test::max_relative_difference(logits(loaded, x), logits(model, x)) < 1e-5);
}

TEST_CASE("model files of format version 1 (nsl-train and nsl-fewshot before versions) still load") {
  // nsl-train's layout then: bare metadata keys, CNN-9 with the default options on 28 x 28 images.
  nsl::Rng rng(5);
  nsl::ModelSpec spec;
  spec.variant = nsl::Variant::static_dns;
  spec.dataset = "fashion-mnist";
  nsl::Model<float> model = nsl::build_model<float>(spec, rng);
  nsl::Sgd<float> sgd(model.parameters());
  nsl::Checkpoint v1;
  for (const auto& [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"variant", "static_dns"}, {"dataset", "fashion-mnist"}, {"epoch", "1"}, {"iteration", "469"},
           {"rng", rng.state()}, {"batch", "128"}, {"epochs", "1"}, {"in_channels", "1"}})
    v1.set(k, v);
  nsl::store(v1, "model.", model.network.parameters());
  nsl::store(v1, "model.", model.network.buffers());
  const auto params = model.network.parameters();
  for (std::size_t i = 0; i < params.size(); ++i)
    nsl::store_tensor(v1, "sgd.velocity." + params[i].name, sgd.velocities()[i]);
  const std::string path = scratch("v1_train.nslckpt");
  nsl::save_checkpoint(path, v1);

  const nsl::ModelFile file = nsl::read_model_file(path);
  CHECK(file.version == 1);
  CHECK(file.spec.network == nsl::Network::cnn9);
  CHECK(file.spec.variant == nsl::Variant::static_dns);
  CHECK(file.spec.input_size == 28);
  CHECK(file.spec.classes == 10);
  CHECK(file.resumable());
  REQUIRE(file.note("batch") != nullptr);
  CHECK(*file.note("batch") == "128");
  nsl::Model<float> loaded = nsl::load_model<float>(file);
  const nsl::Tensor<float> x = nsl::test::randn<float>(nsl::Shape{1, 1, 28, 28}, rng);
  CHECK(nsl::test::max_relative_difference(logits(loaded, x), logits(model, x)) == 0.0);

  // nsl-fewshot's: backbone and head; the rank and the predictor's width from the tensors.
  nsl::ModelSpec fs_spec;
  fs_spec.network = nsl::Network::conv4;
  fs_spec.variant = nsl::Variant::plain;
  fs_spec.head = nsl::HeadKind::static_ns;
  fs_spec.head_options.rank = 3;
  nsl::Model<float> fs_model = nsl::build_model<float>(fs_spec, rng);
  nsl::Checkpoint fs_v1;
  fs_v1.set("backbone", "plain");
  fs_v1.set("head", "static_ns");
  fs_v1.set("episodes", "400");
  nsl::store(fs_v1, "model.", fs_model.network.parameters());
  nsl::store(fs_v1, "model.", fs_model.network.buffers());
  nsl::store(fs_v1, "head.", fs_model.head->parameters());
  nsl::save_checkpoint(path, fs_v1);
  const nsl::ModelFile fs_file = nsl::read_model_file(path);
  CHECK(fs_file.spec.network == nsl::Network::conv4);
  CHECK(fs_file.spec.head_options.rank == 3);
  CHECK(fs_file.spec.conv4.width == 64);
  CHECK(nsl::load_model<float>(fs_file).parameters().size() == fs_model.parameters().size());
}

TEST_CASE("bad model files fail with a message naming the file and the problem") {
  nsl::Rng rng(1);
  nsl::Model<float> model = nsl::build_model<float>(small_cnn9(nsl::Variant::plain), rng);
  const nsl::Checkpoint good = nsl::model_to_checkpoint(model);
  const std::string path = scratch("bad.nslckpt");
  auto with = [&](const std::string& key, const std::string& value) {
    nsl::Checkpoint ck = good;
    ck.set(key, value);
    nsl::save_checkpoint(path, ck);
  };
  auto fails = [&](const char* what) {
    CHECK_THROWS_WITH_AS(nsl::load_model<float>(path), doctest::Contains(what), nsl::Error);
  };
  nsl::save_checkpoint(path, nsl::Checkpoint{});
  fails("not an nsl model file");
  with("nsl.version", "3");
  fails("newer than this nsl reads");
  with("nsl.format", "glyphs");
  fails("not a model file");
  with("network", "resnet");
  fails("expected cnn9 or conv4");
  with("variant", "fancy");
  fails("unknown variant 'fancy'");
  with("widths", "2,x,4");
  fails("model file key 'widths' is '2,x,4'");
  with("widths", "2,3");
  fails("expected 3 positive integers");
  with("classes", "-4");
  fails("key 'classes' is '-4'");
  with("bn_eps", "small");
  fails("expected a number");
  with("classes", "4");  // the score layer in the file has 3
  fails("network expects [4, 4, 1, 1]");
  nsl::Checkpoint missing = good;
  missing.tensors.pop_back();
  nsl::save_checkpoint(path, missing);
  fails("model file has no tensor");
  nsl::Checkpoint no_key = good;
  no_key.metadata.erase(no_key.metadata.begin() + 3);
  nsl::save_checkpoint(path, no_key);
  fails("has no metadata key");
  fails(path.c_str());
}

namespace model_file_test {
// `good` with metadata `key` set to `value`, saved at `path`: load_model fails saying `what`.
void load_fails_with(const nsl::Checkpoint& good, const std::string& path, const char* key, const char* value,
                     const char* what) {
  nsl::Checkpoint ck = good;
  ck.set(key, value);
  nsl::save_checkpoint(path, ck);
  CHECK_THROWS_WITH_AS(nsl::load_model<float>(path), doctest::Contains(what), nsl::Error);
}
}  // namespace model_file_test

TEST_CASE("a spec asking for a network larger than the file's tensors fails before it is built") {
  // Each spec size is pinned by a tensor of the file: a few bytes cannot ask
  // for gigabytes (widths of 100000 once were built, then found missing).
  nsl::Rng rng(1);
  for (nsl::Variant v : {nsl::Variant::plain, nsl::Variant::dynamic_uns, nsl::Variant::sphere_attention}) {
    const std::string variant = nsl::to_string(v);
    CAPTURE(variant);
    nsl::Model<float> model = nsl::build_model<float>(small_cnn9(v), rng);
    const nsl::Checkpoint good = nsl::model_to_checkpoint(model);
    const std::string path = scratch("huge.nslckpt");
    auto fails_with = [&](const char* key, const char* value, const char* what) {
      load_fails_with(good, path, key, value, what);
    };
    const bool attention = v == nsl::Variant::sphere_attention;
    const char* key = attention ? "attention_widths" : "widths";
    fails_with(key, attention ? "8,100000,16" : "2,100000,4", "network expects [100000, ");
    fails_with(key, attention ? "100000,8,16" : "100000,3,4", "network expects [100000, 1, 3, 3]");
    fails_with("in_channels", "100000", "network expects [");
    fails_with("input_size", "1000000", "'model.score.weight'");
    fails_with("classes", "16777216", "network expects [16777216, ");
    if (v == nsl::Variant::dynamic_uns) fails_with("predictor_hidden", "100000", "network expects [100000, ");
    // The file as it was still loads.
    nsl::save_checkpoint(path, good);
    CHECK(nsl::load_model<float>(path).parameters().size() == model.parameters().size());
  }
  nsl::ModelSpec c;
  c.network = nsl::Network::conv4;
  c.variant = nsl::Variant::dynamic_dns;
  c.conv4.width = 2;
  c.conv4.predictor_hidden = 2;
  c.input_size = 8;
  c.dataset = "test";
  for (nsl::HeadKind k : {nsl::HeadKind::static_ns, nsl::HeadKind::dynamic_ns}) {
    c.head = k;
    c.head_options.rank = 1;
    c.head_options.hidden = 3;
    nsl::Model<float> model = nsl::build_model<float>(c, rng);
    const nsl::Checkpoint good = nsl::model_to_checkpoint(model);
    const std::string path = scratch("huge_conv4.nslckpt");
    auto fails_with = [&](const char* key, const char* value, const char* what) {
      load_fails_with(good, path, key, value, what);
    };
    fails_with("width", "100000", "network expects [100000, 1, 3, 3]");
    fails_with("input_size", "1000000", "'head.");
    if (k == nsl::HeadKind::dynamic_ns) fails_with("head_hidden", "1000000", "network expects [1000000, ");
    nsl::save_checkpoint(path, good);
    CHECK(nsl::load_model<float>(path).head != nullptr);
  }
}

TEST_CASE("host_copy gives a CPU model with the same weights") {
  nsl::Rng rng(4);
  nsl::Model<float> model = nsl::build_model<float>(small_cnn9(nsl::Variant::dynamic_uns), rng);
  train_statistics(model, rng);
  nsl::Model<float> copy = nsl::host_copy(model);
  const nsl::Tensor<float> x = nsl::test::randn<float>(nsl::Shape{2, 1, 8, 8}, rng);
  CHECK(nsl::test::max_relative_difference(logits(copy, x), logits(model, x)) == 0.0);
}
