// nsl_train_impl.hpp — the body of nsl-train (nsl_train.cpp), shared with
// nsl_train_cuda.cu, which instantiates the training loop for the GPU. See
// nsl_train.cpp for what the program does.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "common/cli.hpp"
#include "common/plots.hpp"
#include "nsl/core/threads.hpp"
#include "nsl/data/augment.hpp"
#include "nsl/data/cifar.hpp"
#include "nsl/data/idx.hpp"
#include "nsl/io/atomic_file.hpp"
#include "nsl/io/checkpoint.hpp"
#include "nsl/models/cnn9.hpp"
#include "nsl/train/loss.hpp"
#include "nsl/train/schedule.hpp"
#include "nsl/train/sgd.hpp"

namespace nsl_train {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Settings {
  std::string variant = "dynamic_dns";
  std::string device = "cpu";
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::string dataset = "fashion-mnist";
  int epochs = 1;
  int stop_after = 0;  // 0: run all epochs
  nsl::index batch = 128;
  double lr = 0.1;
  std::string schedule = "step";
  nsl::index warmup = 200;  // iterations of linear learning-rate warm-up
  nsl::index precise_bn = 0;  // training batches to re-estimate BN statistics before each evaluation (0: off)
  double momentum = 0.9;
  double weight_decay = 5e-4;
  double smoothing = 0.01;
  std::uint64_t seed = 1;
  int threads = 0;  // 0: all cores
  nsl::index limit_train = 0;
  nsl::index limit_test = 0;
  std::string augment = "";  // "" = the dataset's default
  std::string out = "runs/latest";
  std::string resume;
  std::string command;  // the command line, recorded in OUT/run.json
};

// ---- data ------------------------------------------------------------------

struct Data {
  nsl::Dataset train, test;
  nsl::index pad = 0;
  bool flip = false;
};

inline Data load_data(const Settings& s) {
  Data d;
  if (s.dataset == "fashion-mnist") {
    d.train = nsl::load_fashion_mnist(s.data, true);
    d.test = nsl::load_fashion_mnist(s.data, false);
  } else {
    const bool cifar100 = s.dataset == "cifar100";
    d.train = nsl::load_cifar(s.data, true, cifar100);
    d.test = nsl::load_cifar(s.data, false, cifar100);
  }
  nsl::cli::keep_first(d.train, s.limit_train);
  nsl::cli::keep_first(d.test, s.limit_test);
  // Pixels stay raw 0..255 floats: the first BN normalises (NSL.md §5).
  std::string augment = s.augment;
  if (augment.empty()) augment = s.dataset == "fashion-mnist" ? "crop" : "crop-flip";
  d.pad = augment == "none" ? 0 : (s.dataset == "fashion-mnist" ? 2 : 4);
  d.flip = augment == "crop-flip";
  return d;
}

// ---- progress --------------------------------------------------------------

// One line per epoch: loss, accuracy, images/s and ETA (see nsl::cli::ProgressLine).
class Progress {
 public:
  Progress(int epoch, int epochs, nsl::index batches)
      : epoch_(epoch), epochs_(epochs), batches_(batches), start_(Clock::now()) {}
  void update(nsl::index done, double loss, double accuracy, nsl::index images) {
    const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    const double rate = seconds > 0 ? double(images) / seconds : 0.0;
    const double eta = done > 0 ? seconds * double(batches_ - done) / double(done) : 0.0;
    char numbers[128];
    std::snprintf(numbers, sizeof numbers, "loss %.4f  acc %5.2f%%  %.0f img/s", loss, 100.0 * accuracy, rate);
    line_.show(done, batches_,
               nsl::cat("epoch ", epoch_, "/", epochs_, " ", nsl::cli::progress_bar(done, batches_), " ", done, "/",
                        batches_, "  ", numbers, "  ETA ", nsl::cli::format_seconds(eta)));
  }

 private:
  int epoch_, epochs_;
  nsl::index batches_;
  Clock::time_point start_;
  nsl::cli::ProgressLine line_;
};

// ---- devices ---------------------------------------------------------------

// A host batch as the network's input: the tensor itself on the CPU, an
// upload into `device` (reused across batches) on a GPU.
inline nsl::TensorView<const float> stage(const nsl::Tensor<float>& host, nsl::Tensor<float>&) { return host.view(); }
template <class D>
nsl::TensorView<const float, D> stage(const nsl::Tensor<float>& host, nsl::Tensor<float, D>& device) {
  device.resize(host.shape());
  nsl::assign_from_host<float>(host.view(), device.view());
  return device.view();
}

// Copies every parameter, buffer and velocity between two networks of the
// same architecture (a GPU network and its host mirror, for checkpoints and
// the kernel-shape picture). `Copy` is download or upload.
template <class From, class To, class Copy>
void copy_state(const std::vector<From>& from, const std::vector<To>& to, Copy&& copy) {
  nsl::require(from.size() == to.size(), nsl::ErrorKind::state, "nsl-train: the mirror network has ", to.size(),
               " tensors, the network ", from.size());
  for (std::size_t i = 0; i < from.size(); ++i) copy(from[i].value, to[i].value);
}

// ---- evaluation ------------------------------------------------------------

struct Evaluation {
  double loss = 0.0, accuracy = 0.0;
};

template <class D>
Evaluation evaluate(nsl::Sequential<float, D>& net, const nsl::Dataset& data, double smoothing) {
  net.set_training(false);
  const nsl::index n = data.images.dim(0), batch = 500;
  std::vector<nsl::index> order(static_cast<std::size_t>(n));
  for (nsl::index i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  nsl::Tensor<float> images;
  nsl::Tensor<float, D> staged, logits;
  std::vector<int> labels;
  double loss_sum = 0.0;
  nsl::index correct = 0;
  const nsl::cli::PhaseProgress progress("testing");
  for (nsl::index start = 0; start < n; start += batch) {
    progress.show(start, n);
    const nsl::index count = std::min(batch, n - start);
    nsl::gather_batch(data, order, start, count, images, labels);
    const nsl::TensorView<const float, D> input = stage(images, staged);
    logits.resize(net.output_shape(input.shape()));
    net.forward_into(input, logits.view());
    const nsl::LossResult r = nsl::softmax_cross_entropy<float>(logits.view(), labels, smoothing, {});
    loss_sum += r.loss * double(count);
    correct += r.correct;
  }
  progress.show(n, n);
  net.set_training(true);
  return {loss_sum / double(n), double(correct) / double(n)};
}

// ---- checkpoints -----------------------------------------------------------

inline void save(const fs::path& path, const Settings& s, nsl::Sequential<float>& net, nsl::Sgd<float>& sgd, int epoch,
          nsl::index iteration, const nsl::Rng& rng) {
  nsl::Checkpoint ckpt;
  ckpt.set("variant", s.variant);
  ckpt.set("dataset", s.dataset);
  ckpt.set("epoch", std::to_string(epoch));
  ckpt.set("iteration", std::to_string(iteration));
  ckpt.set("rng", rng.state());
  ckpt.set("batch", std::to_string(s.batch));
  ckpt.set("epochs", std::to_string(s.epochs));
  ckpt.set("in_channels", std::to_string(net.parameters().front().value.dim(1)));
  nsl::store(ckpt, "model.", net.parameters());
  nsl::store(ckpt, "model.", net.buffers());
  const auto params = net.parameters();
  for (std::size_t i = 0; i < params.size(); ++i)
    nsl::store_tensor(ckpt, "sgd.velocity." + params[i].name, nsl::TensorView<const float>(sgd.velocities()[i]));
  nsl::save_checkpoint(path.string(), ckpt);
}

// OUT/run.json: the command line and every setting of the run (what a results
// table needs to say how a number was made).
inline void write_run_description(const fs::path& path, const Settings& s) {
  const nlohmann::json run = {{"command", s.command},
                              {"variant", s.variant},
                              {"device", s.device},
                              {"dataset", s.dataset},
                              {"epochs", s.epochs},
                              {"batch", s.batch},
                              {"lr", s.lr},
                              {"schedule", s.schedule},
                              {"warmup", s.warmup},
                              {"precise_bn", s.precise_bn},
                              {"momentum", s.momentum},
                              {"weight_decay", s.weight_decay},
                              {"label_smoothing", s.smoothing},
                              {"seed", s.seed},
                              {"threads", nsl::num_threads()},
                              {"augment", s.augment.empty() ? "default" : s.augment},
                              {"limit_train", s.limit_train},
                              {"limit_test", s.limit_test},
                              {"resumed_from", s.resume}};
  nsl::write_file_atomically("run description", path.string(),
                             [&](std::ofstream& out) { out << run.dump(2) << '\n'; });
}

// ---- the kernel-shape picture ---------------------------------------------

// Slot magnitudes of every similarity layer: |m| (or M's row norms) for
// static layers, the mean over pixels and a batch of the same for M(p) of
// dynamic layers.
inline void kernel_shape_picture(nsl::Sequential<float>& net, const Data& data, const fs::path& path) {
  std::vector<std::string> titles;
  std::vector<std::vector<float>> slots;
  nsl::Tensor<float> images, logits;
  std::vector<int> labels;
  std::vector<nsl::index> order;
  for (nsl::index i = 0; i < std::min<nsl::index>(100, data.test.images.dim(0)); ++i) order.push_back(i);
  nsl::gather_batch(data.test, order, 0, nsl::index(order.size()), images, labels);
  net.set_training(false);
  logits.resize(net.output_shape(images.shape()));
  net.forward_into(images.view(), logits.view());
  net.set_training(true);
  for (std::size_t i = 0; i < net.size(); ++i) {
    nsl::Layer<float>& layer = net.layer(i);
    if (auto* s = dynamic_cast<nsl::StaticNSConv2d<float>*>(&layer)) {
      const nsl::Vector<float> v = nsl::learned_kernel_shape(*s);
      titles.push_back(net.name(i));
      slots.emplace_back(v.data(), v.data() + v.size());
    } else if (auto* d = dynamic_cast<nsl::DynamicNSConv2d<float>*>(&layer)) {
      const nsl::Tensor<float>& g = d->predicted_similarity();
      const nsl::index N = g.dim(0), R = g.dim(1), P = g.dim(2) * g.dim(3), K = d->geometry().slots();
      std::vector<float> mean(static_cast<std::size_t>(K), 0.0f);
      for (nsl::index n = 0; n < N; ++n)
        for (nsl::index p = 0; p < P; ++p)
          for (nsl::index a = 0; a < K; ++a) {
            double row = 0.0;  // norm of row a of M(p) = I + G(p)
            if (R == K) {
              row = std::abs(1.0 + g[(n * R + a) * P + p]);
            } else {
              for (nsl::index r = 0; r < K; ++r) {
                const double m = (a == r ? 1.0 : 0.0) + g[(n * R + a * K + r) * P + p];
                row += m * m;
              }
              row = std::sqrt(row);
            }
            mean[static_cast<std::size_t>(a)] += float(row / double(N * P));
          }
      titles.push_back(net.name(i));
      slots.push_back(mean);
    }
  }
  if (slots.empty()) return;
  std::string error;
  if (!nsl::plots::write_png(path.string(), nsl::plots::kernel_shape_grid(titles, slots, 3), &error))
    std::fprintf(stderr, "nsl-train: could not write %s: %s\n", path.string().c_str(), error.c_str());
}

// ---- training --------------------------------------------------------------

// Trains on device D. Everything but the training step itself (data,
// augmentation, checkpoints, pictures) runs on the host; for a GPU network a
// host mirror of the same architecture receives its state before each
// checkpoint and picture (and gives it on --resume).
template <class D>
int train(const Settings& s) {
  const nsl::Variant variant = nsl::parse_variant(s.variant);
  if (s.threads > 0) nsl::set_num_threads(s.threads);
  Data data = load_data(s);
  const nsl::index channels = data.train.images.dim(1), size = data.train.images.dim(2);
  std::printf("nsl-train: %s on %s: %ld training and %ld test images of %ldx%ldx%ld, %ld classes; %s, %d threads\n",
              s.variant.c_str(), s.dataset.c_str(), long(data.train.images.dim(0)), long(data.test.images.dim(0)),
              long(channels), long(size), long(data.train.images.dim(3)), long(data.train.classes), D::name,
              nsl::num_threads());

  nsl::Rng rng(s.seed);
  nsl::Cnn9Options options;
  options.input_size = size;
  nsl::Rng mirror_rng = rng;  // the same initial weights for the host mirror
  nsl::Sequential<float, D> net = nsl::cnn9<float, D>(variant, channels, data.train.classes, rng, options);
  net.set_borrowing(true);  // every batch and its logits stay put until backward: no copies
  nsl::Sgd<float, D> sgd(net.parameters(), {s.momentum, s.weight_decay});
  // The host network that checkpoints and pictures read: `net` itself on the CPU.
  std::optional<nsl::Sequential<float>> mirror;
  std::optional<nsl::Sgd<float>> mirror_sgd;
  if constexpr (!nsl::is_cpu_v<D>) {
    mirror.emplace(nsl::cnn9<float>(variant, channels, data.train.classes, mirror_rng, options));
    mirror_sgd.emplace(mirror->parameters(), nsl::SgdOptions{s.momentum, s.weight_decay});
  }
  auto host_net = [&]() -> nsl::Sequential<float>& {  // with the device state copied in
    if constexpr (nsl::is_cpu_v<D>) {
      return net;
    } else {
      auto down = [](auto from, auto to) { nsl::download<float>(from, to); };
      copy_state(net.parameters(), mirror->parameters(), down);
      copy_state(net.buffers(), mirror->buffers(), down);
      for (std::size_t i = 0; i < sgd.velocities().size(); ++i)
        nsl::download<float>(sgd.velocities()[i].view(), mirror_sgd->velocities()[i].view());
      return *mirror;
    }
  };
  auto host_sgd = [&]() -> nsl::Sgd<float>& {
    if constexpr (nsl::is_cpu_v<D>) return sgd;
    else return *mirror_sgd;
  };
  const nsl::index n_train = data.train.images.dim(0);
  const nsl::index batches = (n_train + s.batch - 1) / s.batch;
  const auto schedule =
      nsl::make_schedule(s.schedule, s.lr, batches * s.epochs, std::min<nsl::index>(s.warmup, batches * s.epochs - 1));

  fs::create_directories(s.out);
  write_run_description(fs::path(s.out) / "run.json", s);
  const fs::path checkpoint_path = fs::path(s.out) / "model.nslckpt";
  const fs::path metrics_path = fs::path(s.out) / "metrics.jsonl";
  int first_epoch = 1;
  nsl::index iteration = 0;
  std::vector<double> train_loss, test_loss, train_acc, test_acc;
  if (!s.resume.empty()) {
    const nsl::Checkpoint ckpt = nsl::load_checkpoint(s.resume);
    nsl::require(ckpt.require_meta("variant") == s.variant && ckpt.require_meta("dataset") == s.dataset,
                 nsl::ErrorKind::argument, "--resume: the checkpoint is ", ckpt.require_meta("variant"),
                 " on ", ckpt.require_meta("dataset"), ", not ", s.variant, " on ", s.dataset);
    nsl::require(ckpt.require_meta("batch") == std::to_string(s.batch), nsl::ErrorKind::argument,
                 "--resume: the checkpoint was trained with --batch ", ckpt.require_meta("batch"));
    if (const std::string* planned = ckpt.get("epochs"); planned && *planned != std::to_string(s.epochs))
      std::printf("nsl-train: note: the checkpoint's run planned %s epochs, this one %d: the learning-rate "
                  "schedule differs from an uninterrupted run\n", planned->c_str(), s.epochs);
    nsl::Sequential<float>& restored = host_net();
    nsl::restore(ckpt, "model.", restored.parameters());
    nsl::restore(ckpt, "model.", restored.buffers());
    const auto params = restored.parameters();
    for (std::size_t i = 0; i < params.size(); ++i)
      nsl::restore_tensor(ckpt, "sgd.velocity." + params[i].name, host_sgd().velocities()[i].view());
    if constexpr (!nsl::is_cpu_v<D>) {  // and on to the device
      auto up = [](auto from, auto to) { nsl::upload<float>(from, to); };
      copy_state(mirror->parameters(), net.parameters(), up);
      copy_state(mirror->buffers(), net.buffers(), up);
      for (std::size_t i = 0; i < sgd.velocities().size(); ++i)
        nsl::upload<float>(mirror_sgd->velocities()[i].view(), sgd.velocities()[i].view());
    }
    rng.set_state(ckpt.require_meta("rng"));
    first_epoch = std::stoi(ckpt.require_meta("epoch")) + 1;
    iteration = std::stol(ckpt.require_meta("iteration"));
    // Keep the earlier epochs' metrics (for the curves) and drop any later ones.
    std::ifstream old(metrics_path);
    std::vector<std::string> kept;
    for (std::string line; std::getline(old, line);) {
      const auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || j.value("epoch", 0) >= first_epoch) continue;
      kept.push_back(line);
      train_loss.push_back(j["train_loss"]);
      train_acc.push_back(j["train_acc"]);
      test_loss.push_back(j["test_loss"]);
      test_acc.push_back(j["test_acc"]);
    }
    old.close();
    std::ofstream rewrite(metrics_path, std::ios::trunc);
    for (const auto& line : kept) rewrite << line << '\n';
    std::printf("nsl-train: resuming after epoch %d (iteration %ld) from %s\n", first_epoch - 1, long(iteration),
                s.resume.c_str());
  } else {
    std::ofstream(metrics_path, std::ios::trunc);
  }

  nsl::Tensor<float> batch_images, augmented;
  nsl::Tensor<float, D> staged, logits, dlogits;
  std::vector<int> labels;
  // The loss on the device of the logits; a GPU keeps its scratch across steps.
  std::conditional_t<nsl::is_cpu_v<D>, int, nsl::CrossEntropyWorkspace<float>> loss_scratch{};
  auto loss = [&](nsl::TensorView<const float, D> z, nsl::TensorView<float, D> dz) {
    if constexpr (nsl::is_cpu_v<D>) return nsl::softmax_cross_entropy<float>(z, labels, s.smoothing, dz);
    else return nsl::softmax_cross_entropy<float>(z, labels, s.smoothing, dz, loss_scratch);
  };
  // sphere_attention: the orthogonality penalty of NSL.md §6 on the attention
  // blocks' projections, added to their gradients after each backward.
  std::vector<nsl::GlobalSimilarity2d<float>*> attention;
  if constexpr (nsl::is_cpu_v<D>) attention = nsl::attention_blocks(net);
  const int last_epoch = s.stop_after > 0 ? std::min(s.stop_after, s.epochs) : s.epochs;
  for (int epoch = first_epoch; epoch <= last_epoch; ++epoch) {
    const auto start = Clock::now();
    const std::vector<nsl::index> order = nsl::shuffled_indices(n_train, rng);
    Progress progress(epoch, s.epochs, batches);
    double loss_sum = 0.0;
    nsl::index correct = 0, seen = 0;
    double lr = s.lr;
    for (nsl::index b = 0; b < batches; ++b) {
      const nsl::index count = std::min(s.batch, n_train - b * s.batch);
      nsl::gather_batch(data.train, order, b * s.batch, count, batch_images, labels);
      nsl::random_crop_flip(batch_images.view(), data.pad, data.flip, rng, augmented);
      const nsl::TensorView<const float, D> input = stage(augmented, staged);
      logits.resize(net.output_shape(input.shape()));
      dlogits.resize(logits.shape());
      net.forward_into(input, logits.view());
      const nsl::LossResult r = loss(logits.view(), dlogits.view());
      sgd.zero_gradients();
      net.backward_into(dlogits.view(), {});  // no gradient for the images
      for (nsl::GlobalSimilarity2d<float>* block : attention) block->add_orthogonality_penalty(2e-4f);
      lr = schedule->lr(iteration);
      sgd.step(lr);
      ++iteration;
      loss_sum += r.loss * double(count);
      correct += r.correct;
      seen += count;
      nsl::require(std::isfinite(r.loss), nsl::ErrorKind::state, "the loss became ", r.loss,
                   " at iteration ", iteration, " (learning rate ", lr, ")");
      progress.update(b + 1, loss_sum / double(seen), double(correct) / double(seen), seen);
    }
    const double train_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if constexpr (nsl::is_cpu_v<D>)
      if (s.precise_bn > 0) nsl::cli::recalibrate_on_first_batches(net, data.train, s.precise_bn, s.batch);
    const Evaluation test = evaluate(net, data.test, s.smoothing);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    train_loss.push_back(loss_sum / double(seen));
    train_acc.push_back(double(correct) / double(seen));
    test_loss.push_back(test.loss);
    test_acc.push_back(test.accuracy);
    nlohmann::json row = {{"epoch", epoch},           {"train_loss", train_loss.back()},
                          {"train_acc", train_acc.back()}, {"test_loss", test.loss},
                          {"test_acc", test.accuracy},   {"seconds", seconds},
                          {"images_per_second", double(seen) / train_seconds}, {"lr", lr}};
    std::ofstream(metrics_path, std::ios::app) << row.dump() << '\n';
    std::printf("epoch %d/%d: train loss %.4f acc %.2f%% | test loss %.4f acc %.2f%% | %s\n", epoch, s.epochs,
                train_loss.back(), 100.0 * train_acc.back(), test.loss, 100.0 * test.accuracy,
                nsl::cli::format_seconds(seconds).c_str());
    save(checkpoint_path, s, host_net(), host_sgd(), epoch, iteration, rng);
  }

  std::string error;
  auto percent = [](std::vector<double> v) {
    for (double& x : v) x *= 100.0;
    return v;
  };
  if (!nsl::plots::write_png((fs::path(s.out) / "curves.png").string(),
                             nsl::plots::training_curves(train_loss, test_loss, percent(train_acc), percent(test_acc)),
                             &error))
    std::fprintf(stderr, "nsl-train: could not write curves.png: %s\n", error.c_str());
  const bool similarity_layers = variant != nsl::Variant::plain && variant != nsl::Variant::sphere_attention;
  if (similarity_layers) kernel_shape_picture(host_net(), data, fs::path(s.out) / "kernel_shapes.png");
  std::printf("nsl-train: wrote %s/{metrics.jsonl, model.nslckpt, curves.png%s}\n", s.out.c_str(),
              similarity_layers ? ", kernel_shapes.png" : "");
  if (!test_acc.empty()) std::printf("test accuracy: %.2f%%\n", 100.0 * test_acc.back());
  return 0;
}

}  // namespace nsl_train
