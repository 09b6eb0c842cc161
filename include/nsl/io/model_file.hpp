// nsl/io/model_file.hpp — a trained model in one file: what network it is,
// its weights, and (for resuming) the state of its training.
//
// The one place that writes and reads nsl's model files. A model file is a
// checkpoint container (nsl/io/checkpoint.hpp: metadata strings and named
// float32 tensors, CRC-checked) with this layout, format version 2:
//
//   metadata
//     nsl.format          "model"
//     nsl.version         "2"
//     network             "cnn9" | "conv4"
//     variant             cnn9's variant, or Conv-4's backbone (plain, static_dns, ...)
//     in_channels, input_size            the images the network takes (C, H = W)
//     dataset             what it was trained on (informative: "fashion-mnist", "glyphs", ...)
//     bn_eps, bn_decay, bn_debias, predictor_hidden        options of every network
//     cnn9:  classes, widths ("32,64,128"), attention_widths, static_dns_identity_pattern
//     conv4: width, head (euclidean | cosine | static_ns | dynamic_ns), head_rank,
//            head_hidden, head_scale
//     training (optional): epoch, iteration, rng (the generator's state text)
//     run.<key>           the training program's own notes (batch size, planned epochs, ...)
//   tensors
//     model.<name>        every parameter and buffer of the network (Sequential's names)
//     head.<name>         every parameter of a Conv-4's scoring head
//     sgd.velocity.<name> (optional) the optimiser's momentum for each parameter of parameters()
//
// Version 1 is what nsl-train and nsl-fewshot wrote before this header: the
// same tensors, but metadata without nsl.format. Such files still load, with
// every option at the default it then had: nsl-train's (keys variant, dataset,
// in_channels) take their classes from the score layer's weight and their
// input size from the dataset (28 for fashion-mnist, 32 for CIFAR);
// nsl-fewshot's (keys backbone, head) take Conv-4's width and the head's rank
// and predictor width from their tensors' shapes. Saving such a model writes
// version 2.
//
//   ModelSpec                 what to rebuild: network, variant, shapes, options
//   Model<T, D>               the spec, the network and (Conv-4) the head, on device D
//   build_model(spec, rng)    a freshly initialised model
//   save_model(path, model, training)    writes the file atomically (io/atomic_file.hpp)
//   load_model<T, D>(path)    reads a file and rebuilds the model it holds
//   read_model_file(path)     the container and its spec, without building
//   restore_training(file, model, sgd, rng)   the optimiser and generator for --resume
//   host_copy(model)          a model on any device as a CPU model (same weights)
//
// Errors: a file that is not a model file, a version this nsl cannot read, a
// missing or malformed key, or a tensor of the wrong shape fails with
// ErrorKind::format or ::shape and a message naming the file and the key.
#pragma once

#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "nsl/core/random.hpp"
#include "nsl/fewshot/heads.hpp"
#include "nsl/io/checkpoint.hpp"
#include "nsl/models/cnn9.hpp"
#include "nsl/models/conv4.hpp"
#include "nsl/train/sgd.hpp"

namespace nsl {

enum class Network { cnn9, conv4 };

inline const char* to_string(Network n) { return n == Network::cnn9 ? "cnn9" : "conv4"; }

/// Everything needed to rebuild a trained network.
struct ModelSpec {
  Network network = Network::cnn9;
  Variant variant = Variant::plain;  ///< CNN-9's similarity, or Conv-4's backbone
  index in_channels = 1;
  index input_size = 28;             ///< H = W of the images
  index classes = 10;                ///< CNN-9 only
  std::string dataset;               ///< informative
  Cnn9Options cnn9{};                ///< CNN-9 only (input_size is the field above)
  Conv4Options conv4{};              ///< Conv-4 only
  HeadKind head = HeadKind::euclidean;  ///< Conv-4 only
  HeadOptions head_options{};        ///< Conv-4 only
};

/// A model of either network on device D: its spec, the network and, for
/// Conv-4, the few-shot scoring head (CPU).
template <class T, class D = Cpu>
struct Model {
  ModelSpec spec;
  Sequential<T, D> network;
  std::unique_ptr<PrototypeHead<T>> head;  ///< Conv-4 only

  /// Every trainable tensor: the network's under their Sequential names, the
  /// head's as "head.<name>" (the order an optimiser's velocities follow).
  std::vector<Parameter<T, D>> parameters() {
    std::vector<Parameter<T, D>> all = network.parameters();
    if constexpr (is_cpu_v<D>)
      if (head) append_parameters(all, "head.", *head);
    return all;
  }
};

/// A freshly initialised model for `spec`, drawing its weights from `rng`
/// (the same weights for the same seed on every device).
template <class T, class D = Cpu>
Model<T, D> build_model(const ModelSpec& spec, Rng& rng) {
  Model<T, D> m{spec, Sequential<T, D>(), nullptr};
  if (spec.network == Network::cnn9) {
    Cnn9Options o = spec.cnn9;
    o.input_size = spec.input_size;
    m.network = cnn9<T, D>(spec.variant, spec.in_channels, spec.classes, rng, o);
  } else {
    require(is_cpu_v<D>, ErrorKind::device, "build_model: Conv-4 and its few-shot head run on the CPU only");
    m.network = conv4<T, D>(spec.variant, spec.in_channels, rng, spec.conv4);
    if constexpr (is_cpu_v<D>)
      m.head = make_head<T>(spec.head, conv4_embedding_size(spec.input_size, spec.conv4), rng, spec.head_options);
  }
  return m;
}

namespace detail::model_file {

inline constexpr int version = 2;

inline std::string join(const index* values, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += cat(i ? "," : "", values[i]);
  return s;
}

/// Reads metadata of a model file, naming the file and the key in every failure.
class Reader {
 public:
  Reader(const Checkpoint& ck, std::string source) : ck_(ck), source_(std::move(source)) {}
  const std::string& text(const std::string& key) const {
    const std::string* v = ck_.get(key);
    if (!v) fail(ErrorKind::format, cat(source_, ": model file has no metadata key '", key, "'"));
    return *v;
  }
  bool has(const std::string& key) const { return ck_.get(key) != nullptr; }
  /// A decimal integer in [lo, hi].
  index integer(const std::string& key, index lo, index hi) const {
    const std::string& t = text(key);
    index v = 0;
    bool ok = !t.empty() && t.size() <= 18;
    for (std::size_t i = (t.size() > 1 && t[0] == '-') ? 1 : 0; ok && i < t.size(); ++i) {
      ok = t[i] >= '0' && t[i] <= '9';
      v = v * 10 + (t[i] - '0');
    }
    if (ok && t[0] == '-') v = -v;
    if (!ok || v < lo || v > hi)
      fail(ErrorKind::format, cat(source_, ": model file key '", key, "' is '", t, "', expected an integer in [", lo,
                                  ", ", hi, "]"));
    return v;
  }
  double real(const std::string& key) const {
    const std::string& t = text(key);
    char* end = nullptr;
    const double v = std::strtod(t.c_str(), &end);
    if (t.empty() || end != t.c_str() + t.size() || !std::isfinite(v))
      fail(ErrorKind::format, cat(source_, ": model file key '", key, "' is '", t, "', expected a number"));
    return v;
  }
  bool flag(const std::string& key) const { return integer(key, 0, 1) == 1; }
  /// "a,b,c" into exactly n positive integers.
  void integers(const std::string& key, index* out, int n) const {
    const std::string& t = text(key);
    std::vector<std::string> items(1);
    for (char c : t) {
      if (c == ',') items.emplace_back();
      else items.back() += c;
    }
    bool ok = int(items.size()) == n;
    for (int i = 0; ok && i < n; ++i) {
      const std::string& item = items[std::size_t(i)];
      index v = 0;
      ok = !item.empty() && item.size() <= 9;
      for (char c : item) {
        ok = ok && c >= '0' && c <= '9';
        v = v * 10 + (c - '0');
      }
      ok = ok && v >= 1;
      out[i] = v;
    }
    if (!ok)
      fail(ErrorKind::format, cat(source_, ": model file key '", key, "' is '", t, "', expected ", n,
                                  " positive integers separated by commas"));
  }
  template <class Parse>
  auto named(const std::string& key, Parse parse) const {
    return parse(text(key));  // parse_variant / parse_head fail naming the value
  }
  const std::string& source() const { return source_; }

 private:
  const Checkpoint& ck_;
  std::string source_;
};

/// The 4-d tensor `name` of a version-1 file, or a format error.
inline const Tensor<float>& v1_tensor(const Checkpoint& ck, const Reader& r, const std::string& name, int rank) {
  const Tensor<float>* t = ck.find(name);
  if (!t || t->rank() != rank)
    fail(ErrorKind::format, cat(r.source(), ": model file of format version 1 without a ", rank, "-d tensor '", name,
                                "'"));
  return *t;
}

/// A version-1 file: its spec from the keys it has and the shapes of its tensors.
inline ModelSpec read_spec_v1(const Checkpoint& ck, const Reader& r) {
  ModelSpec s;
  if (r.has("backbone")) {  // nsl-fewshot: Conv-4 on 28 x 28 glyphs and a head
    s.network = Network::conv4;
    s.variant = r.named("backbone", parse_variant);
    s.head = r.named("head", parse_head);
    s.dataset = "glyphs";
    const Tensor<float>& first = v1_tensor(ck, r, "model.block1.conv.weight", 4);
    s.conv4.width = first.dim(0);
    s.in_channels = first.dim(1);
    if (const Tensor<float>* left = ck.find("head.left")) s.head_options.rank = left->dim(1);
    if (s.head == HeadKind::dynamic_ns) s.head_options.hidden = v1_tensor(ck, r, "head.predictor.weight1", 2).dim(0);
    return s;
  }
  if (!r.has("variant") || !r.has("in_channels"))
    fail(ErrorKind::format, cat(r.source(), ": not an nsl model file (no 'nsl.format' key, and not a checkpoint of "
                                            "nsl-train or nsl-fewshot of format version 1)"));
  s.network = Network::cnn9;  // nsl-train
  s.variant = r.named("variant", parse_variant);
  s.in_channels = r.integer("in_channels", 1, 1 << 20);
  s.dataset = r.has("dataset") ? r.text("dataset") : "";
  s.input_size = s.dataset == "fashion-mnist" ? 28 : 32;
  s.classes = v1_tensor(ck, r, "model.score.weight", 4).dim(0);
  return s;
}

inline ModelSpec read_spec(const Checkpoint& ck, const std::string& source) {
  const Reader r(ck, source);
  if (!r.has("nsl.format")) return read_spec_v1(ck, r);
  if (r.text("nsl.format") != "model")
    fail(ErrorKind::format, cat(source, ": an nsl file of kind '", r.text("nsl.format"), "', not a model file"));
  const index v = r.integer("nsl.version", 1, 1 << 30);
  if (v > version)
    fail(ErrorKind::format, cat(source, ": model file format version ", v, " is newer than this nsl reads (", version,
                                "); use a newer nsl"));
  ModelSpec s;
  const std::string& network = r.text("network");
  if (network != "cnn9" && network != "conv4")
    fail(ErrorKind::format, cat(source, ": model file key 'network' is '", network, "', expected cnn9 or conv4"));
  s.network = network == "cnn9" ? Network::cnn9 : Network::conv4;
  s.variant = r.named("variant", parse_variant);
  s.in_channels = r.integer("in_channels", 1, 1 << 20);
  s.input_size = r.integer("input_size", 1, 1 << 20);
  s.dataset = r.text("dataset");
  const BatchNormOptions bn{r.real("bn_eps"), r.real("bn_decay"), r.flag("bn_debias")};
  const index hidden = r.integer("predictor_hidden", 0, 1 << 20);
  if (s.network == Network::cnn9) {
    s.classes = r.integer("classes", 2, 1 << 24);
    r.integers("widths", s.cnn9.widths, 3);
    r.integers("attention_widths", s.cnn9.attention_widths, 3);
    s.cnn9.bn = bn;
    s.cnn9.predictor_hidden = hidden;
    s.cnn9.static_dns_identity_pattern = r.flag("static_dns_identity_pattern");
  } else {
    s.conv4.width = r.integer("width", 1, 1 << 20);
    s.conv4.bn = bn;
    s.conv4.predictor_hidden = hidden;
    s.head = r.named("head", parse_head);
    s.head_options.rank = r.integer("head_rank", 0, 1 << 20);
    s.head_options.hidden = r.integer("head_hidden", 1, 1 << 20);
    s.head_options.scale = r.real("head_scale");
  }
  return s;
}

inline void write_spec(Checkpoint& ck, const ModelSpec& s) {
  ck.set("nsl.format", "model");
  ck.set("nsl.version", std::to_string(version));
  ck.set("network", to_string(s.network));
  ck.set("variant", to_string(s.variant));
  ck.set("in_channels", cat(s.in_channels));
  ck.set("input_size", cat(s.input_size));
  ck.set("dataset", s.dataset);
  const BatchNormOptions& bn = s.network == Network::cnn9 ? s.cnn9.bn : s.conv4.bn;
  ck.set("bn_eps", cat(std::hexfloat, bn.eps));  // exact in text
  ck.set("bn_decay", cat(std::hexfloat, bn.decay));
  ck.set("bn_debias", bn.debias ? "1" : "0");
  if (s.network == Network::cnn9) {
    ck.set("predictor_hidden", cat(s.cnn9.predictor_hidden));
    ck.set("classes", cat(s.classes));
    ck.set("widths", join(s.cnn9.widths, 3));
    ck.set("attention_widths", join(s.cnn9.attention_widths, 3));
    ck.set("static_dns_identity_pattern", s.cnn9.static_dns_identity_pattern ? "1" : "0");
  } else {
    ck.set("predictor_hidden", cat(s.conv4.predictor_hidden));
    ck.set("width", cat(s.conv4.width));
    ck.set("head", to_string(s.head));
    ck.set("head_rank", cat(s.head_options.rank));
    ck.set("head_hidden", cat(s.head_options.hidden));
    ck.set("head_scale", cat(std::hexfloat, s.head_options.scale));
  }
}

/// Copies the float32 tensor `name` of `ck` into `to` on any device.
template <class T, class D>
void restore_into(const Checkpoint& ck, const std::string& source, const std::string& name, TensorView<T, D> to) {
  const Tensor<float>* t = ck.find(name);
  if (!t) fail(ErrorKind::format, cat(source, ": model file has no tensor '", name, "'"));
  require(t->shape() == to.shape(), ErrorKind::shape, source, ": tensor '", name, "' is ", t->shape(),
          " in the model file, the network expects ", to.shape());
  if constexpr (std::is_same_v<T, float>) {
    assign_from_host<T>(t->view(), to);
  } else {
    const Tensor<T> converted = cast<T, float>(t->view());
    assign_from_host<T>(converted.view(), to);
  }
}

/// Adds a tensor of any device under `name`, as float32.
template <class T, class D>
void store_from(Checkpoint& ck, const std::string& name, TensorView<const T, D> from) {
  const Tensor<T> host = to_host<T>(from);
  store_tensor<T>(ck, name, host.view());
}

}  // namespace detail::model_file

/// Where training stands, for files that can resume: the epoch last
/// finished, the optimiser steps taken, the generator, the optimiser.
template <class T, class D = Cpu>
struct TrainingState {
  int epoch = 0;
  index iteration = 0;
  const Rng* rng = nullptr;          ///< saved when given
  const Sgd<T, D>* sgd = nullptr;    ///< its velocities saved when given (over model.parameters())
  std::vector<std::pair<std::string, std::string>> notes;  ///< saved as run.<key>
};

/// The model (spec, parameters, buffers) and, when given, its training state
/// as a checkpoint container in memory (what save_model writes).
template <class T, class D>
Checkpoint model_to_checkpoint(Model<T, D>& model, const TrainingState<T, D>& training = {}) {
  namespace mf = detail::model_file;
  Checkpoint ck;
  mf::write_spec(ck, model.spec);
  for (const auto& p : model.network.parameters()) mf::store_from<T, D>(ck, "model." + p.name, p.value);
  for (const auto& b : model.network.buffers()) mf::store_from<T, D>(ck, "model." + b.name, b.value);
  if constexpr (is_cpu_v<D>)
    if (model.head)
      for (const auto& p : model.head->parameters()) mf::store_from<T, D>(ck, "head." + p.name, p.value);
  if (training.rng || training.sgd) {
    ck.set("epoch", cat(training.epoch));
    ck.set("iteration", cat(training.iteration));
  }
  if (training.rng) ck.set("rng", training.rng->state());
  if (training.sgd) {
    const auto params = model.parameters();
    const auto& velocities = training.sgd->velocities();
    require(velocities.size() == params.size(), ErrorKind::argument, "save_model: the optimiser has ",
            velocities.size(), " tensors, the model ", params.size(), " parameters");
    for (std::size_t i = 0; i < params.size(); ++i)
      mf::store_from<T, D>(ck, "sgd.velocity." + params[i].name, velocities[i].view());
  }
  for (const auto& [key, value] : training.notes) ck.set("run." + key, value);
  return ck;
}

/// Writes `model` (and its training state, when given) to `path`; the file
/// appears whole or not at all.
template <class T, class D>
void save_model(const std::string& path, Model<T, D>& model, const TrainingState<T, D>& training = {}) {
  save_checkpoint(path, model_to_checkpoint(model, training));
}

/// A model file read but not yet built into a network.
struct ModelFile {
  std::string path;
  Checkpoint contents;
  ModelSpec spec;
  int version = detail::model_file::version;  ///< 1 for files written before model files had versions

  /// A note of the training program (run.<key>; version 1: the bare key), or nullptr.
  const std::string* note(const std::string& key) const {
    if (const std::string* v = contents.get("run." + key)) return v;
    return version == 1 ? contents.get(key) : nullptr;
  }
  /// Whether the file can resume training (it holds the optimiser and the generator).
  bool resumable() const { return contents.get("rng") && contents.get("iteration") && contents.get("epoch"); }
};

/// Parses a model file's bytes already in a container (`source` names it in messages).
inline ModelFile read_model_file(Checkpoint contents, const std::string& source) {
  ModelFile f;
  f.path = source;
  f.spec = detail::model_file::read_spec(contents, source);
  f.version = contents.get("nsl.format") ? detail::model_file::version : 1;
  f.contents = std::move(contents);
  return f;
}
/// Reads the model file at `path` (its spec checked; the network not built).
inline ModelFile read_model_file(const std::string& path) { return read_model_file(load_checkpoint(path), path); }

namespace detail::model_file {

/// Fails unless the checkpoint holds tensor `name` of exactly the `rank`
/// extents `dims`: "has no tensor" (format) or "is ... in the model file, the
/// network expects ..." (shape). load_model checks every parameter so, and
/// expect_spec_sizes the tensors that pin the spec's sizes before building.
inline void expect_tensor(const Checkpoint& ck, const std::string& source, const std::string& name, const index* dims,
                          int rank) {
  const Tensor<float>* t = ck.find(name);
  if (!t) fail(ErrorKind::format, cat(source, ": model file has no tensor '", name, "'"));
  bool same = t->rank() == rank;
  for (int axis = 0; same && axis < rank; ++axis) same = t->dim(axis) == dims[axis];
  if (!same) {
    std::string want = "[";
    for (int axis = 0; axis < rank; ++axis) want += cat(axis ? ", " : "", dims[axis]);
    fail(ErrorKind::shape,
         cat(source, ": tensor '", name, "' is ", t->shape(), " in the model file, the network expects ", want, "]"));
  }
}
// The extents as a list: spec sizes that may not form an addressable Shape.
inline void expect_tensor(const Checkpoint& ck, const std::string& source, const std::string& name,
                          std::initializer_list<index> dims) {
  expect_tensor(ck, source, name, dims.begin(), int(dims.size()));
}
inline void expect_tensor(const Checkpoint& ck, const std::string& source, const std::string& name,
                          const Shape& shape) {
  index dims[Shape::max_rank] = {};
  for (int axis = 0; axis < shape.rank(); ++axis) dims[axis] = shape[axis];
  expect_tensor(ck, source, name, dims, shape.rank());
}

/// Before a network is built for a file's spec: the sizes the spec gives
/// (channels, widths, classes, input size, the predictors' and the head's
/// widths) are checked against the file's own tensors, one tensor for each
/// product of sizes that a layer allocates, so that a spec asking for a
/// network far larger than the file's tensors fails here rather than
/// allocating it (a file of a few bytes once could ask for terabytes). What
/// this pins bounds every parameter of the network by a tensor of the file.
inline void expect_spec_sizes(const ModelFile& f) {
  const ModelSpec& s = f.spec;
  const Checkpoint& ck = f.contents;
  auto expect = [&](const std::string& name, std::initializer_list<index> dims) {
    expect_tensor(ck, f.path, "model." + name, dims);
  };
  const bool dynamic =
      s.variant == Variant::dynamic_dns || s.variant == Variant::dynamic_uns || s.variant == Variant::dynamic_dns_sphere;
  const index hidden = [&] {
    const index h = s.network == Network::cnn9 ? s.cnn9.predictor_hidden : s.conv4.predictor_hidden;
    if (h > 0) return h;
    return s.variant == Variant::dynamic_uns ? PredictorOptions::uns().hidden : PredictorOptions::dns().hidden;
  }();
  if (s.network == Network::cnn9) {
    const index* w = s.variant == Variant::sphere_attention ? s.cnn9.attention_widths : s.cnn9.widths;
    expect("root.conv.weight", {w[0], s.in_channels, 3, 3});
    index channels = w[0], size = s.input_size;
    for (int stage = 1; stage <= 3; ++stage) {
      const index out = w[stage - 1];
      expect(cat("stage", stage, ".conv1.weight"), {out, channels, 3, 3});
      expect(cat("stage", stage, ".conv2.weight"), {out, out, 3, 3});
      if (dynamic) {
        expect(cat("stage", stage, ".conv1.predictor.conv1.weight"), {hidden, channels, 3, 3});
        expect(cat("stage", stage, ".conv2.predictor.conv1.weight"), {hidden, out, 3, 3});
      }
      channels = out;
      size = (size + 1) / 2;
    }
    expect("score.weight", {s.classes, channels, size, size});
    return;
  }
  expect("block1.conv.weight", {s.conv4.width, s.in_channels, 3, 3});
  expect("block2.conv.weight", {s.conv4.width, s.conv4.width, 3, 3});
  if (dynamic) expect("block2.conv.predictor.conv1.weight", {hidden, s.conv4.width, 3, 3});
  const index dimension = conv4_embedding_size(s.input_size, s.conv4);
  if (s.head == HeadKind::static_ns) {
    expect_tensor(ck, f.path, "head.diagonal", {dimension});
    if (s.head_options.rank > 0) expect_tensor(ck, f.path, "head.left", {dimension, s.head_options.rank});
  } else if (s.head == HeadKind::dynamic_ns) {
    expect_tensor(ck, f.path, "head.predictor.weight1", {s.head_options.hidden, dimension});
  }
}

}  // namespace detail::model_file

/// The model held by `file`, on device D, with its parameters and buffers.
template <class T, class D = Cpu>
Model<T, D> load_model(const ModelFile& file) {
  namespace mf = detail::model_file;
  mf::expect_spec_sizes(file);  // before anything is allocated for the spec
  Rng rng(1);  // initial weights, every one overwritten below
  Model<T, D> model = build_model<T, D>(file.spec, rng);
  // Check every tensor before copying any, so a bad file leaves no half-loaded model behind.
  for (const auto& p : model.parameters())
    mf::expect_tensor(file.contents, file.path, p.name.compare(0, 5, "head.") == 0 ? p.name : "model." + p.name,
                      p.value.shape());
  for (const auto& p : model.network.parameters())
    mf::restore_into<T, D>(file.contents, file.path, "model." + p.name, p.value);
  for (const auto& b : model.network.buffers())
    mf::restore_into<T, D>(file.contents, file.path, "model." + b.name, b.value);
  if constexpr (is_cpu_v<D>)
    if (model.head)
      for (const auto& p : model.head->parameters())
        mf::restore_into<T, D>(file.contents, file.path, "head." + p.name, p.value);
  return model;
}
/// Reads `path` and rebuilds the model it holds: one call from a file to a network.
template <class T, class D = Cpu>
Model<T, D> load_model(const std::string& path) {
  return load_model<T, D>(read_model_file(path));
}

/// Restores the optimiser's velocities and the generator from a resumable
/// file; returns the epoch last finished and sets `iteration`.
template <class T, class D>
int restore_training(const ModelFile& file, Model<T, D>& model, Sgd<T, D>& sgd, Rng& rng, index& iteration) {
  namespace mf = detail::model_file;
  require(file.resumable(), ErrorKind::format, file.path,
          ": the model file holds no training state (epoch, iteration, generator): it cannot resume training");
  const auto params = model.parameters();
  require(params.size() == sgd.velocities().size(), ErrorKind::argument, "restore_training: the optimiser has ",
          sgd.velocities().size(), " tensors, the model ", params.size(), " parameters");
  for (std::size_t i = 0; i < params.size(); ++i)
    mf::restore_into<T, D>(file.contents, file.path, "sgd.velocity." + params[i].name, sgd.velocities()[i].view());
  const mf::Reader r(file.contents, file.path);
  rng.set_state(r.text("rng"));
  iteration = r.integer("iteration", 0, index(1) << 50);
  return int(r.integer("epoch", 0, 1 << 30));
}

/// A CPU copy of a model on any device (for pictures and summaries of a GPU model).
template <class T, class D>
Model<T> host_copy(Model<T, D>& model) {
  Checkpoint ck = model_to_checkpoint(model);
  return load_model<T>(read_model_file(std::move(ck), "host_copy"));
}

}  // namespace nsl
