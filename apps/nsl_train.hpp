// nsl_train.hpp — the body of nsl-train (nsl_train.cpp), a template on the
// device so that nsl_train_cuda.cu can instantiate it for the GPU. It reads
// top to bottom: the settings, then the steps of train<D>() — load the data,
// build or resume the model, train epoch by epoch (evaluating and saving the
// model file after each), draw the pictures.
#pragma once

#include <nlohmann/json.hpp>

#include <signal.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/cli.hpp"
#include "common/datasets.hpp"
#include "common/plots.hpp"
#include "common/similarity_magnitudes.hpp"
#include "common/training_log.hpp"
#include "nsl/core/threads.hpp"
#include "nsl/data/augment.hpp"
#include "nsl/io/atomic_file.hpp"
#include "nsl/io/model_file.hpp"
#include "nsl/train/evaluate.hpp"
#include "nsl/train/loss.hpp"
#include "nsl/train/numerics.hpp"
#include "nsl/train/schedule.hpp"
#include "nsl/train/sgd.hpp"

namespace nsl_train {

namespace fs = std::filesystem;

struct Settings {
  std::string variant = "dynamic_dns";
  std::string device = "cpu";
  std::string data = nsl::cli::default_fashion_mnist_dir;
  std::string dataset = "fashion-mnist";
  int epochs = 1;
  int stop_after = 0;  // 0: run all epochs
  nsl::index batch = 128;
  double lr = -1;                // base learning rate; -1: the recipe's
  std::string recipe = "auto";  // what the settings marked "the recipe's" default to: "auto" or "reference"
  std::string schedule;         // "step" or "cosine"; empty: the recipe's
  nsl::index warmup = -1;       // iterations of linear learning-rate warm-up; -1: the recipe's
  nsl::index precise_bn = -1;   // training batches to re-estimate BN statistics before each evaluation (0: off;
                                // -1: the recipe's)
  bool test_both_bn = false;    // with precise_bn: also test with the moving averages, which training keeps
  double predictor_gamma = -1;  // start of the dynamic predictors' last BN scale (0: the layers start plain;
                                // -1: the recipe's, resolve_predictor_start)
  double predictor_lr = 1;      // the dynamic predictors' learning rate, a multiple of --lr's
  double predictor_decay = 1;   // their convolutions' weight decay, a multiple of --weight-decay's
  bool check_numerics = true;   // stop at the first non-finite loss or gradient (nsl/train/numerics.hpp)
  double momentum = 0.9;
  double weight_decay = 5e-4;
  double smoothing = 0.01;
  std::uint64_t seed = 1;
  int threads = 0;  // 0: all cores
  nsl::index limit_train = 0;
  nsl::index limit_test = 0;
  nsl::index log_every = 10;  // steps between two rows of steps.jsonl
  std::string augment = "";   // "" = the dataset's default
  std::string out = "runs/latest";
  std::string resume;
  bool sync_bn = true;          // with several MPI ranks: synchronised BatchNorm (the batch's statistics over all ranks)
  double bucket_mb = 25;        // with several MPI ranks: gradients per MPI_Iallreduce, in MB
  std::string command;  // the command line, recorded in OUT/run.json
};

// ---- ranks ------------------------------------------------------------------

// What train() needs of a data-parallel run under mpirun (nsl_train.cpp
// implements it on nsl/distributed/mpi.hpp); the defaults are one process,
// where nothing changes. Every rank runs the same command on the same data:
// each takes its share of every global batch (the batch is gathered and
// augmented whole on every rank, so the random streams stay in step and the
// images are those of a single-process run), the gradients are averaged
// over the ranks, and rank 0 alone writes the run's files.
class Distributed {
 public:
  virtual ~Distributed() = default;
  virtual int rank() const { return 0; }
  virtual int ranks() const { return 1; }
  /// Ranks on this machine (sharing its cores).
  virtual int local_ranks() const { return 1; }
  bool root() const { return rank() == 0; }
  /// values[0..n) := their sum over the ranks.
  virtual void sum(double* values, std::size_t n) { (void)values, (void)n; }
  /// Joins the network to the run: rank 0's parameters and buffers to every
  /// rank, the gradient buckets, synchronised BatchNorm (--sync-bn).
  virtual void attach(nsl::Sequential<float>& network, const Settings& s) { (void)network, (void)s; }
  /// Leaves the network attached (before the network goes).
  virtual void detach() {}
  /// After backward: every gradient := its mean over the ranks.
  virtual void average_gradients() {}
  /// Every rank's BatchNorm statistics := rank 0's (per-rank BatchNorm keeps
  /// its own; before a test and a model file they are made one).
  virtual void broadcast_buffers() {}
  /// Bytes each rank sends into the gradient sums per step; seconds the
  /// last step waited for them.
  virtual std::size_t bytes_per_step() const { return 0; }
  virtual double last_wait_seconds() const { return 0.0; }
};

// Rank r's share [begin, end) of `count` items split over the ranks.
inline std::pair<nsl::index, nsl::index> share(nsl::index count, const Distributed& d) {
  return {count * d.rank() / d.ranks(), count * (d.rank() + 1) / d.ranks()};
}

// The signal that stops the run, the same on every rank: any rank's (a
// launcher forwards a Ctrl-C to each, but not at the same step).
inline int interrupt_everywhere(int local, Distributed& d) {
  if (d.ranks() == 1) return local;
  double v[2] = {local != 0 ? 1.0 : 0.0, double(local)};
  d.sum(v, 2);
  return v[0] > 0 ? (local != 0 ? local : int(v[1] / v[0])) : 0;
}

// ---- the recipe ----------------------------------------------------------------

// Fills in what the command line left to the recipe (learning rate,
// schedule, warm-up, BatchNorm evaluation, augmentation) for a run of
// `iterations` steps of `batches_per_epoch`.
//   reference: the paper's recipe (docs/RESULTS.md): lr 0.1 on the step
//     schedule, 200 warm-up iterations, BN's moving-average statistics, the
//     dataset's augmentation; made for 40+ epochs.
//   auto (the default): good at any length: the cosine schedule, a warm-up of
//     half the run (at most 200 iterations), BN statistics
//     re-estimated on min(100, an epoch's) training batches before each
//     evaluation (on the CPU; the CUDA path keeps the moving averages), and
//     lr 0.1 with the dataset's augmentation, except in a run shorter than
//     kShortRun iterations: there lr 0.05 and no augmentation (random crops
//     only slow a network that sees each image once or twice; with both,
//     157 steps of plain CNN-9 on 20 000 Fashion-MNIST images end at 81-83%
//     test accuracy instead of 85%, docs/training.md). A full Fashion-MNIST
//     epoch (469 iterations) gets what the demo runs: lr 0.1, cosine, 200.
//   Both recipes start the dynamic predictors as resolve_predictor_start says.
constexpr nsl::index kShortRun = 400;

// Whether --recipe names the reference recipe; one clear error for a name
// that is neither recipe.
inline bool is_reference_recipe(const Settings& s) {
  nsl::require(s.recipe == "auto" || s.recipe == "reference", nsl::ErrorKind::argument,
               "--recipe: expected auto or reference, got '", s.recipe, "'");
  return s.recipe == "reference";
}

inline void resolve_recipe(Settings& s, nsl::index iterations, nsl::index batches_per_epoch, bool cpu) {
  const bool reference = is_reference_recipe(s), short_run = !reference && iterations < kShortRun;
  if (s.lr < 0) s.lr = short_run ? 0.05 : 0.1;
  if (s.schedule.empty()) s.schedule = reference ? "step" : "cosine";
  if (s.warmup < 0) s.warmup = reference ? 200 : std::min<nsl::index>(200, iterations / 2);
  if (s.precise_bn < 0) s.precise_bn = reference || !cpu ? 0 : std::min<nsl::index>(100, batches_per_epoch);
  if (s.augment.empty() && short_run) s.augment = "none";
}

// The start of the predictors' last BatchNorm scale (--predictor-gamma) of
// variant `v`, which the model needs before the run's length is known:
// reference: 1, the paper's start; auto: 0 for the variants whose predictors
// end in a BatchNorm (dynamic_dns, dynamic_dns_sphere), so that every dynamic
// layer starts as the plain convolution, g = 0, and training is no more
// sensitive to rounding than plain CNN-9's (docs/training.md, "How chaotic a
// run is": the 157-step dynamic DNS run ends at 85.4-86.9% over three seeds
// and two kernel paths, against 83.1-86.1% with the scale at 1).
inline void resolve_predictor_start(Settings& s, nsl::Variant v) {
  const bool reference = is_reference_recipe(s), has = nsl::has_predictor_batch_norm(v);
  nsl::require(s.predictor_gamma < 0 || has, nsl::ErrorKind::argument, "--predictor-gamma: ", s.variant,
               " has no predictor with a last BatchNorm (dynamic_dns and dynamic_dns_sphere have)");
  if (s.predictor_gamma < 0) s.predictor_gamma = has && !reference ? 0.0 : 1.0;
}

// --predictor-lr and --predictor-decay: the dynamic layers' predictors
// ("...predictor.<name>") learn at a multiple of the learning rate, and their
// convolutions ("...predictor.conv1.weight", "...conv2.weight") decay at a
// multiple of λ: NSL.md §5, the authors' code meant 10 and applied 1. The
// defaults, 1 and 1, are the plain update bit for bit.
template <class D>
void scale_predictors(nsl::Sgd<float, D>& sgd, const Settings& s) {
  if (s.predictor_lr == 1.0 && s.predictor_decay == 1.0) return;
  const std::size_t predictor = sgd.scale_parameters("predictor.", {s.predictor_lr, 1.0});
  sgd.scale_parameters("predictor.conv", {s.predictor_lr, s.predictor_decay});
  nsl::require(predictor > 0, nsl::ErrorKind::argument, "--predictor-lr, --predictor-decay: ", s.variant,
               " has no similarity predictor (the dynamic variants have)");
}

// ---- data ------------------------------------------------------------------

struct Data {
  nsl::Dataset train, test;
  nsl::index pad = 0;  // random crops after padding by this many pixels
  bool flip = false;   // and random horizontal flips
};

// The random crops and flips of --augment ("" = the dataset's default).
inline void set_augmentation(Data& d, const Settings& s) {
  const std::string augment = !s.augment.empty() ? s.augment : s.dataset == "fashion-mnist" ? "crop" : "crop-flip";
  d.pad = augment == "none" ? 0 : (s.dataset == "fashion-mnist" ? 2 : 4);
  d.flip = augment == "crop-flip";
}

// The images only: the augmentation depends on the recipe, which needs the
// training set's size (set_augmentation, after resolve_recipe).
inline Data load_data(const Settings& s) {
  return {nsl::cli::load_split(s.dataset, s.data, true, s.limit_train),
          nsl::cli::load_split(s.dataset, s.data, false, s.limit_test)};
}

// A host batch as the network's input: the tensor itself on the CPU, an
// upload into `device` (reused across batches) on a GPU.
inline nsl::TensorView<const float> stage(const nsl::Tensor<float>& host, nsl::Tensor<float>&) { return host.view(); }
template <class D>
nsl::TensorView<const float, D> stage(const nsl::Tensor<float>& host, nsl::Tensor<float, D>& device) {
  nsl::assign_host_tensor<float, D>(device, host);
  return device.view();
}

// This rank's share of a host batch as the network's input: the view itself
// on the CPU; on a GPU (one process) the whole batch, uploaded.
template <class D>
nsl::TensorView<const float, D> stage_view(nsl::TensorView<const float> mine, const nsl::Tensor<float>& whole,
                                           nsl::Tensor<float, D>& device) {
  if constexpr (nsl::is_cpu_v<D>) {
    (void)whole, (void)device;
    return mine;
  } else {
    return stage(whole, device);
  }
}

// ---- outputs ---------------------------------------------------------------

// OUT/run.json: the command line and every setting of the run (what a results
// table needs to say how a number was made).
inline void write_run_description(const fs::path& path, const Settings& s, int ranks) {
  nlohmann::json run = {{"command", s.command},     {"variant", s.variant},   {"device", s.device},
                              {"dataset", s.dataset},     {"epochs", s.epochs},     {"batch", s.batch},
                              {"lr", s.lr},               {"recipe", s.recipe},
                              {"schedule", s.schedule}, {"warmup", s.warmup},
                              {"precise_bn", s.precise_bn}, {"test_both_bn", s.test_both_bn},
                              {"predictor_gamma", s.predictor_gamma}, {"predictor_lr", s.predictor_lr},
                              {"predictor_decay", s.predictor_decay}, {"check_numerics", s.check_numerics},
                              {"momentum", s.momentum},
                              {"weight_decay", s.weight_decay}, {"label_smoothing", s.smoothing},
                              {"seed", s.seed},           {"threads", nsl::num_threads()},
                              {"augment", s.augment.empty() ? "default" : s.augment},
                              {"limit_train", s.limit_train}, {"limit_test", s.limit_test},
                              {"log_every", s.log_every}, {"resumed_from", s.resume}};
  if (ranks > 1) {
    run["ranks"] = ranks;
    run["sync_bn"] = s.sync_bn;
    run["bucket_mb"] = s.bucket_mb;
  }
  nsl::write_file_atomically("run description", path.string(),
                             [&](std::ofstream& out) { out << run.dump(2) << '\n'; });
}

// The temporary files of an earlier run of OUT that was killed while it wrote
// (nsl::write_file_atomically's "<file>.tmp-..." beside the model file, the
// run description and the pictures): the files themselves were never
// touched, and nothing else writes in OUT while this run does.
inline void remove_stale_temporaries(const fs::path& out) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(out, ec)) {
    const std::string name = entry.path().filename().string();
    for (const char* file : {"model.nslckpt", "run.json", "curves.png", "kernel_shapes.png"}) {
      const std::string prefix = nsl::cat(file, ".tmp-");
      if (name.compare(0, prefix.size(), prefix) == 0) fs::remove(entry.path(), ec);
    }
  }
}

// OUT/kernel_shapes.png: the slot magnitudes of every similarity layer, |m|
// of static layers and the mean over 100 test images and their pixels of
// M(p)'s rows for dynamic ones. Returns false if the network has none.
inline bool kernel_shape_picture(nsl::Model<float>& model, const Data& data, const fs::path& path) {
  std::vector<std::string> titles;
  std::vector<std::vector<float>> slots;
  nsl::cli::forward_first_test_images(model, data.test);  // the dynamic layers keep their M(p)
  for (std::size_t i = 0; i < model.network.size(); ++i) {
    nsl::Vector<float> shape;
    if (auto* s = dynamic_cast<nsl::StaticNSConv2d<float>*>(&model.network.layer(i)))
      shape = nsl::learned_kernel_shape(*s);
    else if (auto* d = dynamic_cast<nsl::DynamicNSConv2d<float>*>(&model.network.layer(i)))
      shape = nsl::mean_kernel_shape(*d);
    else
      continue;
    titles.push_back(model.network.name(i));
    slots.emplace_back(shape.data(), shape.data() + shape.size());
  }
  if (slots.empty()) return false;
  std::string error;
  if (!nsl::plots::write_kernel_shapes(path.string(), titles, slots, 3, &error))
    nsl::fail(nsl::ErrorKind::io, nsl::cat("could not write ", path.string(), ": ", error));
  return true;
}

// ---- interrupts ----------------------------------------------------------------

// SIGINT (Ctrl-C) and SIGTERM set this; the training loop looks at it after
// each step and after each epoch's model file.
inline volatile std::sig_atomic_t interrupt_signal = 0;
extern "C" inline void on_interrupt(int signal) { interrupt_signal = signal; }

// Installs on_interrupt for SIGINT and SIGTERM while it lives. SA_RESETHAND:
// a second Ctrl-C stops the program at once (the model file on disk is
// whole either way: nsl::write_file_atomically).
class InterruptHandlers {
 public:
  InterruptHandlers() {
    struct sigaction action {};
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &action, &old_int_);
    sigaction(SIGTERM, &action, &old_term_);
  }
  ~InterruptHandlers() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  InterruptHandlers(const InterruptHandlers&) = delete;
  InterruptHandlers& operator=(const InterruptHandlers&) = delete;

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

// Where a run interrupted inside an epoch stopped, kept in the model file's
// notes (run.<key>) so that --resume goes on from the next step as an
// uninterrupted run would: the generator at the epoch's start gives its
// shuffled order back, the one saved with the model goes on with the
// augmentation; the epoch's sums and the log's pending steps give the same
// metrics and steps rows.
struct EpochPosition {
  nsl::index batches_done = 0;  // 0: at an epoch's end
  std::string rng_at_start;
  double loss_sum = 0.0;
  nsl::index correct = 0, seen = 0;
  nsl::cli::TrainingLog::Pending log;

  // A double as text and back, exactly (hexadecimal floating point).
  static std::string exact(double v) {
    char text[64];
    std::snprintf(text, sizeof text, "%a", v);
    return text;
  }
  // The log's pending steps (every model file: an epoch's end can fall
  // between two rows of steps.jsonl too), then, inside an epoch, the rest.
  void write(std::vector<std::pair<std::string, std::string>>& notes) const {
    notes.insert(notes.end(), {{"log_loss_sum", exact(log.loss_sum)},
                               {"log_correct", std::to_string(log.correct)},
                               {"log_images", std::to_string(log.images)}});
    if (batches_done == 0) return;
    notes.insert(notes.end(), {{"epoch_batches_done", std::to_string(batches_done)},
                               {"epoch_rng", rng_at_start},
                               {"epoch_loss_sum", exact(loss_sum)},
                               {"epoch_correct", std::to_string(correct)},
                               {"epoch_seen", std::to_string(seen)}});
  }
  // The position kept in `file`; batches_done 0 for a file written at an epoch's end.
  static EpochPosition read(const nsl::ModelFile& file) {
    EpochPosition p;
    auto text = [&](const char* key) -> const std::string& {
      const std::string* v = file.note(key);
      nsl::require(v != nullptr, nsl::ErrorKind::format, file.path, ": an interrupted run's model file without '", key,
                   "'");
      return *v;
    };
    auto integer = [&](const char* key) {
      const std::string& t = text(key);
      char* end = nullptr;
      const long long v = std::strtoll(t.c_str(), &end, 10);
      nsl::require(!t.empty() && end == t.c_str() + t.size() && v >= 0, nsl::ErrorKind::format, file.path, ": '", key,
                   "' is '", t, "', expected a count");
      return nsl::index(v);
    };
    auto real = [&](const char* key) {
      const std::string& t = text(key);
      char* end = nullptr;
      const double v = std::strtod(t.c_str(), &end);
      nsl::require(!t.empty() && end == t.c_str() + t.size() && std::isfinite(v), nsl::ErrorKind::format, file.path,
                   ": '", key, "' is '", t, "', expected a number");
      return v;
    };
    if (file.note("log_images")) p.log = {real("log_loss_sum"), integer("log_correct"), integer("log_images")};
    if (!file.note("epoch_batches_done")) return p;  // written at an epoch's end
    p.batches_done = integer("epoch_batches_done");
    p.rng_at_start = text("epoch_rng");
    p.loss_sum = real("epoch_loss_sum");
    p.correct = integer("epoch_correct");
    p.seen = integer("epoch_seen");
    return p;
  }
};

// The one line an interrupt ends the run with (the exit status is 128 + the signal's number).
inline int interrupted(int signal, const std::string& where, const fs::path& model_path, bool say = true) {
  std::fflush(stdout);
  if (say)
    std::fprintf(stderr,
               "nsl-train: interrupted by %s %s; wrote %s: to go on, run the same command with --resume %s\n",
               signal == SIGTERM ? "SIGTERM" : "SIGINT", where.c_str(), model_path.string().c_str(),
               model_path.string().c_str());
  return 128 + signal;
}

// ---- training --------------------------------------------------------------

// The loss of a batch on device D (a GPU keeps its scratch across steps).
template <class D>
class Loss {
 public:
  explicit Loss(double smoothing) : smoothing_(smoothing) {}
  nsl::LossResult operator()(nsl::TensorView<const float, D> z, const std::vector<int>& labels,
                             nsl::TensorView<float, D> dz) {
    if constexpr (nsl::is_cpu_v<D>) return nsl::softmax_cross_entropy<float>(z, labels, smoothing_, dz);
    else return nsl::softmax_cross_entropy<float>(z, labels, smoothing_, dz, scratch_);
  }

 private:
  double smoothing_;
  std::conditional_t<nsl::is_cpu_v<D>, int, nsl::CrossEntropyWorkspace<float>> scratch_{};
};

// Trains on device D; everything but the training step (data, augmentation,
// files, pictures) runs on the host.
template <class D>
int train(Settings s, Distributed& dist) {
  // --threads 0: all cores, shared among the ranks on this machine.
  if (s.threads > 0) nsl::set_num_threads(s.threads);
  else if (dist.local_ranks() > 1) nsl::set_num_threads(std::max(1, nsl::num_threads() / dist.local_ranks()));
  const int ranks = dist.ranks();
  nsl::require(ranks == 1 || nsl::is_cpu_v<D>, nsl::ErrorKind::argument,
               "several MPI ranks train on the CPU only (not with --device ", s.device, ")");
  Data data = load_data(s);
  const nsl::Shape image = data.train.images.shape();
  std::printf("nsl-train: %s on %s: %ld training and %ld test images of %ldx%ldx%ld, %ld classes; %s, %d threads%s\n",
              s.variant.c_str(), s.dataset.c_str(), long(image[0]), long(data.test.images.dim(0)), long(image[1]),
              long(image[2]), long(image[3]), long(data.train.classes), D::name, nsl::num_threads(),
              ranks > 1 ? nsl::cat(" on each of ", ranks, " MPI ranks (", s.sync_bn ? "synchronised" : "per-rank",
                                   " BatchNorm)").c_str()
                        : "");

  // The model: new, or the one of --resume with its optimiser and generator.
  nsl::Rng rng(s.seed);
  nsl::ModelSpec spec;
  spec.variant = nsl::parse_variant(s.variant);
  spec.in_channels = image[1];
  spec.input_size = image[2];
  spec.classes = data.train.classes;
  spec.dataset = s.dataset;
  resolve_predictor_start(s, spec.variant);
  spec.cnn9.predictor_last_bn_scale = s.predictor_gamma;  // a start: --resume takes the file's scales
  int first_epoch = 1;
  nsl::index iteration = 0;
  nsl::ModelFile resumed;
  if (!s.resume.empty()) {
    resumed = nsl::read_model_file(s.resume);
    nsl::require(resumed.spec.variant == spec.variant && resumed.spec.dataset == s.dataset, nsl::ErrorKind::argument,
                 "--resume: the model file holds ", nsl::to_string(resumed.spec.variant), " on ", resumed.spec.dataset,
                 ", not ", s.variant, " on ", s.dataset);
    const std::string* batch = resumed.note("batch");
    nsl::require(batch && *batch == std::to_string(s.batch), nsl::ErrorKind::argument,
                 "--resume: the model was trained with --batch ", batch ? *batch : "(unknown)");
    if (const std::string* planned = resumed.note("epochs"); planned && *planned != std::to_string(s.epochs))
      std::printf("nsl-train: note: the resumed run planned %s epochs, this one %d: the learning-rate "
                  "schedule differs from an uninterrupted run\n", planned->c_str(), s.epochs);
  }
  nsl::Model<float, D> model =
      s.resume.empty() ? nsl::build_model<float, D>(spec, rng) : nsl::load_model<float, D>(resumed);
  nsl::Sgd<float, D> sgd(model.parameters(), {s.momentum, s.weight_decay});
  scale_predictors(sgd, s);
  EpochPosition position;  // where in first_epoch a resumed run goes on
  if (!s.resume.empty()) {
    first_epoch = nsl::restore_training(resumed, model, sgd, rng, iteration) + 1;
    position = EpochPosition::read(resumed);
    if (position.batches_done > 0)
      std::printf("nsl-train: resuming epoch %d after its batch %ld (iteration %ld) from %s\n", first_epoch,
                  long(position.batches_done), long(iteration), s.resume.c_str());
    else
      std::printf("nsl-train: resuming after epoch %d (iteration %ld) from %s\n", first_epoch - 1, long(iteration),
                  s.resume.c_str());
  }
  model.network.set_borrowing(true);  // every batch and its logits stay put until backward: no copies
  if constexpr (nsl::is_cpu_v<D>) dist.attach(model.network, s);
  struct Detach {  // leaves the network before it goes (on every way out of train)
    Distributed& d;
    ~Detach() { d.detach(); }
  } detach_at_end{dist};
  // sphere_attention: the orthogonality penalty of NSL.md §6 on the attention blocks' projections.
  const auto attention = nsl::attention_blocks(model.network);

  const nsl::index n_train = data.train.images.dim(0);
  const nsl::index batches = (n_train + s.batch - 1) / s.batch;
  nsl::require(ranks == 1 || (s.batch >= ranks && (n_train % s.batch == 0 || n_train % s.batch >= ranks)),
               nsl::ErrorKind::argument, "every batch needs at least one image per rank: --batch ", s.batch, " of ",
               n_train, " images leaves a last batch of ", n_train % s.batch, " for ", ranks, " ranks");
  // Each rank tests its share of the test set; the counts are summed.
  nsl::Dataset test_share;
  if (ranks > 1) {
    const auto [begin, end] = share(data.test.images.dim(0), dist);
    const nsl::index per = data.test.images.size() / std::max<nsl::index>(1, data.test.images.dim(0));
    test_share.images = nsl::Tensor<float>(nsl::Shape{end - begin, image[1], image[2], image[3]});
    std::copy(data.test.images.data() + begin * per, data.test.images.data() + end * per, test_share.images.data());
    test_share.labels.assign(data.test.labels.begin() + begin, data.test.labels.begin() + end);
    test_share.classes = data.test.classes;
  }
  const nsl::Dataset& my_test = ranks > 1 ? test_share : data.test;
  resolve_recipe(s, batches * s.epochs, batches, nsl::is_cpu_v<D>);
  nsl::require(!s.test_both_bn || s.precise_bn > 0, nsl::ErrorKind::argument,
               "--test-both-bn compares with re-estimated statistics: it needs --precise-bn N > 0 (on the CPU)");
  set_augmentation(data, s);
  const nsl::index warmup = std::min<nsl::index>(s.warmup, batches * s.epochs - 1);  // a run shorter than its warm-up
  std::printf("nsl-train: recipe %s: lr %g, %s schedule, %ld warm-up iterations, BN statistics %s, augmentation %s%s\n",
              s.recipe.c_str(), s.lr, s.schedule.c_str(), long(warmup),
              s.precise_bn > 0 ? nsl::cat("re-estimated on ", s.precise_bn, " batches").c_str() : "moving averages",
              s.augment.empty() ? "the dataset's" : s.augment.c_str(),
              !nsl::has_predictor_batch_norm(spec.variant) ? ""
              : s.resume.empty() ? nsl::cat(", predictors' last BN scale started at ", s.predictor_gamma).c_str()
                                 : ", predictors' last BN scale from the model file");
  if (s.predictor_lr != 1.0 || s.predictor_decay != 1.0)
    std::printf("nsl-train: the predictors learn at %g x the learning rate, their convolutions decay at %g x %g\n",
                s.predictor_lr, s.predictor_decay, s.weight_decay);
  const auto schedule = nsl::make_schedule(s.schedule, s.lr, batches * s.epochs, warmup);
  // Rank 0 alone writes the run's files.
  std::optional<nsl::cli::TrainingLog> log;
  if (dist.root()) {
    std::error_code ec;
    fs::create_directories(s.out, ec);
    nsl::require(!ec, nsl::ErrorKind::io, s.out, ": cannot create the output directory (", ec.message(), ")");
    remove_stale_temporaries(s.out);
    write_run_description(fs::path(s.out) / "run.json", s, ranks);
    log.emplace(s.out, !s.resume.empty(), first_epoch - 1, iteration);
    log->restore_pending(position.log);
  }
  nsl::require(position.batches_done < batches, nsl::ErrorKind::argument, "--resume: the model file stopped after batch ",
               position.batches_done, " of its epoch, which has ", batches, " batches here: use the same data options");

  nsl::Tensor<float> batch_images, augmented;
  nsl::Tensor<float, D> staged, logits, dlogits;
  std::vector<int> labels, my_labels;
  Loss<D> loss(s.smoothing);
  const std::vector<nsl::Parameter<float, D>> parameters = model.parameters();  // views: valid for the whole run
  const fs::path model_path = fs::path(s.out) / "model.nslckpt";
  // --check-numerics: a step whose loss or gradients are not finite stops the
  // run before the update, with the step, the first layer and parameter to
  // blame, and what the model file on disk still holds.
  auto stop = [&](const std::string& what, int epoch) {
    const std::string kept =
        epoch > first_epoch ? nsl::cat(model_path.string(), " still holds the model after epoch ", epoch - 1,
                                       " (continue from it with --resume and a lower --lr)")
        : !s.resume.empty() ? nsl::cat("the model file resumed from, ", s.resume, ", is untouched")
                            : std::string("this run wrote no model file yet");
    nsl::fail(nsl::ErrorKind::state, nsl::cat("epoch ", epoch, ", ", what, ". Stopped; ", kept));
  };
  auto check_step = [&](double step_loss, nsl::index step, int epoch) {
    try {
      nsl::check_numerics<float, D>(model.network, logits.view(), step_loss, parameters, step);
    } catch (const nsl::Error& e) {
      stop(nsl::cat(e.what(), " (before that step's update)"), epoch);
    }
  };
  const int last_epoch = s.stop_after > 0 ? std::min(s.stop_after, s.epochs) : s.epochs;
  InterruptHandlers handlers;
  for (int epoch = first_epoch; epoch <= last_epoch; ++epoch) {
    // One pass over the shuffled training set; a run resumed inside this
    // epoch shuffles from the generator the epoch began with, then goes on
    // with the one it stopped with.
    const bool resumed_inside = epoch == first_epoch && position.batches_done > 0;
    const std::string rng_at_start = resumed_inside ? position.rng_at_start : rng.state();
    std::vector<nsl::index> order;
    if (resumed_inside) {
      const std::string rng_now = rng.state();
      rng.set_state(rng_at_start);
      order = nsl::shuffled_indices(n_train, rng);
      rng.set_state(rng_now);
    } else {
      order = nsl::shuffled_indices(n_train, rng);
    }
    const nsl::index first_batch = resumed_inside ? position.batches_done : 0;
    nsl::cli::RateProgress progress(nsl::cat("epoch ", epoch, "/", s.epochs), batches - first_batch);
    double loss_sum = resumed_inside ? position.loss_sum : 0.0, lr = s.lr;
    nsl::index correct = resumed_inside ? position.correct : 0, seen = resumed_inside ? position.seen : 0;
    const nsl::index seen_before = seen;
    for (nsl::index b = first_batch; b < batches; ++b) {
      const nsl::index count = std::min(s.batch, n_train - b * s.batch);
      nsl::gather_batch(data.train, order, b * s.batch, count, batch_images, labels);
      nsl::random_crop_flip(batch_images.view(), data.pad, data.flip, rng, augmented);
      // This rank's share of the batch (the whole batch in one process).
      const auto [begin, end] = share(count, dist);
      const nsl::index per_image = augmented.size() / count;
      const nsl::TensorView<const float> mine(augmented.data() + begin * per_image,
                                              nsl::Shape{end - begin, image[1], image[2], image[3]});
      my_labels.assign(labels.begin() + begin, labels.begin() + end);
      const nsl::TensorView<const float, D> input = stage_view<D>(mine, augmented, staged);
      logits.resize(model.network.output_shape(input.shape()));
      dlogits.resize(logits.shape());
      model.network.forward_into(input, logits.view());
      nsl::LossResult r = loss(logits.view(), my_labels, dlogits.view());
      if (ranks > 1) {
        // The mean over the whole batch: this rank's gradient weighs by its
        // share (ranks x share / batch, 1 for equal shares), and the loss
        // and counts are summed, with whether any rank was interrupted.
        if constexpr (nsl::is_cpu_v<D>) dlogits.vec() *= float(double(ranks) * double(end - begin) / double(count));
        double sums[4] = {r.loss * double(end - begin), double(r.correct), interrupt_signal != 0 ? 1.0 : 0.0,
                          double(interrupt_signal)};
        dist.sum(sums, 4);
        r.loss = sums[0] / double(count);
        r.correct = nsl::index(sums[1]);
        if (sums[2] > 0 && interrupt_signal == 0) interrupt_signal = int(sums[3] / sums[2]);
      }
      sgd.zero_gradients();
      model.network.backward_into(dlogits.view(), {});  // no gradient for the images
      dist.average_gradients();
      for (auto* block : attention) block->add_orthogonality_penalty(2e-4f);  // the same on every rank
      if (s.check_numerics) check_step(r.loss, iteration + 1, epoch);
      lr = schedule->lr(iteration);
      sgd.step(lr);
      ++iteration;
      nsl::require(std::isfinite(r.loss), nsl::ErrorKind::state, "the loss became ", r.loss, " at iteration ",
                   iteration, " (learning rate ", lr, ")");
      loss_sum += r.loss * double(count);
      correct += r.correct;
      seen += count;
      if (log) log->add_step(iteration, epoch, r.loss, r.correct, count, lr, s.log_every);
      char numbers[64];
      std::snprintf(numbers, sizeof numbers, "loss %.4f  acc %5.2f%%", loss_sum / double(seen),
                    100.0 * double(correct) / double(seen));
      progress.update(b + 1 - first_batch, seen - seen_before, numbers);
      if (interrupt_signal != 0 && b + 1 < batches) {  // at an epoch's end the epoch's own model file follows
        dist.broadcast_buffers();
        if (dist.root()) {
          EpochPosition here{b + 1, rng_at_start, loss_sum, correct, seen, log->pending()};
          nsl::TrainingState<float, D> state{epoch - 1, iteration, &rng, &sgd,
                                             {{"batch", std::to_string(s.batch)}, {"epochs", std::to_string(s.epochs)}}};
          here.write(state.notes);
          nsl::save_model(model_path.string(), model, state);
        }
        return interrupted(interrupt_signal, nsl::cat("after step ", iteration, " (epoch ", epoch, ", batch ", b + 1,
                                                      " of ", batches, ")"),
                           model_path, dist.root());
      }
    }
    const double train_seconds = progress.seconds();
    if (s.check_numerics) {  // the last update of the epoch came after the last step's check
      try {
        nsl::check_weights_finite<float, D>(parameters, model.network.buffers(), nsl::cat("after step ", iteration));
      } catch (const nsl::Error& e) {
        stop(e.what(), epoch);
      }
    }

    // Evaluate, record, save.
    // Each rank tests its share of the test set (per-rank BatchNorm with
    // rank 0's statistics); the loss and the counts are summed.
    auto run_test = [&](const char* phase) {
      const nsl::cli::PhaseProgress testing(phase);
      dist.broadcast_buffers();
      nsl::Evaluation e = nsl::evaluate(model.network, my_test, {500, s.smoothing},
                                        [&](nsl::index done, nsl::index total) { testing.show(done, total); });
      if (ranks > 1) {
        double sums[3] = {e.loss * double(e.images), double(e.correct), double(e.images)};
        dist.sum(sums, 3);
        e.images = nsl::index(sums[2]);
        e.correct = nsl::index(sums[1]);
        e.loss = sums[0] / sums[2];
      }
      return e;
    };
    nlohmann::json epoch_row;
    std::vector<nsl::Tensor<float>> moving;  // --test-both-bn: the moving averages, put back after the test
    std::string moving_test;                 // and what the epoch line says of their test
    if constexpr (nsl::is_cpu_v<D>) {
      if (s.precise_bn > 0 && s.test_both_bn) {
        const nsl::Evaluation m = run_test("testing with the moving averages");
        epoch_row["test_loss_moving_bn"] = m.loss;
        epoch_row["test_acc_moving_bn"] = m.accuracy();
        moving_test = nsl::cat(" (moving averages: ", 100.0 * m.accuracy(), "%)");
        for (const auto& b : model.network.buffers()) moving.emplace_back(nsl::TensorView<const float>(b.value));
      }
      if (s.precise_bn > 0)
        nsl::cli::recalibrate_on_first_batches(model.network, data.train, s.precise_bn, s.batch, dist.rank(), ranks);
    }
    const nsl::Evaluation test = run_test("testing");
    if (s.check_numerics && !std::isfinite(test.loss))
      stop(nsl::cat("the test loss is ", test.loss, " with finite weights (after step ", iteration, ")"), epoch);
    // The size of G, with the statistics of that test.
    nlohmann::json magnitudes;
    if (!dist.root()) {
      // rank 0 measures them (evaluation mode: no exchange)
    } else if constexpr (nsl::is_cpu_v<D>) {
      magnitudes = nsl::cli::similarity_magnitudes(model, data.test);
    } else {
      nsl::Model<float> host = nsl::host_copy(model);
      magnitudes = nsl::cli::similarity_magnitudes(host, data.test);
    }
    if (!magnitudes.is_null()) epoch_row["similarity_magnitude"] = magnitudes;
    if constexpr (nsl::is_cpu_v<D>)
      if (!moving.empty()) {  // training goes on from its own averages: the same weights as without the test
        auto buffers = model.network.buffers();
        for (std::size_t i = 0; i < buffers.size(); ++i) buffers[i].value.vec() = moving[i].vec();
      }
    epoch_row.update({{"epoch", epoch}, {"step", iteration}, {"train_loss", loss_sum / double(seen)},
                      {"train_acc", double(correct) / double(seen)}, {"test_loss", test.loss},
                      {"test_acc", test.accuracy()}, {"seconds", progress.seconds()},
                      {"images_per_second", double(seen - seen_before) / train_seconds}, {"lr", lr}});
    if (log) log->add_epoch(epoch_row);
    std::printf("epoch %d/%d: train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%%%s | %s\n", epoch, s.epochs,
                loss_sum / double(seen), 100.0 * double(correct) / double(seen), test.loss, 100.0 * test.accuracy(),
                moving_test.c_str(), nsl::cli::format_seconds(progress.seconds()).c_str());
    if (dist.root()) {
      nsl::TrainingState<float, D> state{epoch, iteration, &rng, &sgd,
                                         {{"batch", std::to_string(s.batch)}, {"epochs", std::to_string(s.epochs)}}};
      EpochPosition{0, "", 0.0, 0, 0, log->pending()}.write(state.notes);
      nsl::save_model(model_path.string(), model, state);
    }
    interrupt_signal = interrupt_everywhere(interrupt_signal, dist);
    if (interrupt_signal != 0 && epoch < last_epoch)
      return interrupted(interrupt_signal, nsl::cat("during epoch ", epoch, ", which was finished first"), model_path,
                         dist.root());
  }

  // The pictures.
  if (!dist.root()) return 0;
  const nsl::plots::TrainingCurves curves = log->curves();
  if (!curves.test_accuracy.empty()) std::printf("test accuracy: %.2f%%\n", 100.0 * curves.test_accuracy.back());
  std::string error;
  if (!nsl::plots::write_training_curves((fs::path(s.out) / "curves.png").string(), curves, &error))
    nsl::fail(nsl::ErrorKind::io, nsl::cat("could not write ", (fs::path(s.out) / "curves.png").string(), ": ", error));
  nsl::Model<float> host = nsl::host_copy(model);
  const bool shapes = kernel_shape_picture(host, data, fs::path(s.out) / "kernel_shapes.png");
  std::printf("nsl-train: wrote %s/{run.json, steps.jsonl, metrics.jsonl, model.nslckpt, curves.png%s}\n",
              s.out.c_str(), shapes ? ", kernel_shapes.png" : "");
  return 0;
}

}  // namespace nsl_train
