// apps/common/training_log.hpp — what nsl-train records as it goes, in the
// output directory:
//
//   steps.jsonl    one JSON object every --log-every steps: {"step", "epoch",
//                  "train_loss", "train_acc", "lr"}, the loss and accuracy
//                  averaged over the steps since the previous row
//   metrics.jsonl  one JSON object per epoch: {"epoch", "step", "train_loss",
//                  "train_acc", "test_loss", "test_acc", "seconds",
//                  "images_per_second", "lr"}
//
// On --resume the rows after the resumed epoch (and step) are dropped, so
// the files describe the run as if it had not been interrupted; the curves
// are drawn from the files.
#pragma once

#include <nlohmann/json.hpp>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "common/plots.hpp"
#include "nsl/core/error.hpp"
#include "nsl/io/atomic_file.hpp"

namespace nsl::cli {

class TrainingLog {
 public:
  /// Starts the two files in `out`: empty for a new run; for a run resumed
  /// after `epoch` (at `step`), with only the rows up to there kept.
  TrainingLog(const std::filesystem::path& out, bool resumed, int epoch, index step)
      : steps_path_(out / "steps.jsonl"), metrics_path_(out / "metrics.jsonl") {
    keep_rows(steps_path_, resumed, [&](const nlohmann::json& row) { return row.value("step", index(0)) <= step; });
    keep_rows(metrics_path_, resumed, [&](const nlohmann::json& row) { return row.value("epoch", 0) <= epoch; });
  }

  /// Adds one training step's results; writes a steps.jsonl row every `every` steps.
  void add_step(index step, int epoch, double loss, index correct, index images, double lr, index every) {
    loss_sum_ += loss * double(images);
    correct_ += correct;
    images_ += images;
    if (step % every != 0) return;
    append(steps_path_, {{"step", step},
                         {"epoch", epoch},
                         {"train_loss", loss_sum_ / double(images_)},
                         {"train_acc", double(correct_) / double(images_)},
                         {"lr", lr}});
    loss_sum_ = 0.0;
    correct_ = images_ = 0;
  }
  void add_epoch(const nlohmann::json& row) { append(metrics_path_, row); }

  /// The steps added since the last steps.jsonl row (what a run interrupted
  /// between two rows saves, and its resumption restores, so that the rows
  /// come out as in an uninterrupted run).
  struct Pending {
    double loss_sum = 0.0;
    index correct = 0, images = 0;
  };
  Pending pending() const { return {loss_sum_, correct_, images_}; }
  void restore_pending(const Pending& p) {
    loss_sum_ = p.loss_sum;
    correct_ = p.correct;
    images_ = p.images;
  }

  /// Both files as curves: the steps as lines, the epochs' test results as points.
  plots::TrainingCurves curves() const {
    plots::TrainingCurves c;
    for_rows(steps_path_, [&](const nlohmann::json& row) {
      c.step.push_back(number(row, "step"));
      c.train_loss.push_back(number(row, "train_loss"));
      c.train_accuracy.push_back(number(row, "train_acc"));
    });
    for_rows(metrics_path_, [&](const nlohmann::json& row) {
      c.epoch_step.push_back(number(row, "step"));
      c.test_loss.push_back(number(row, "test_loss"));
      c.test_accuracy.push_back(number(row, "test_acc"));
    });
    return c;
  }

 private:
  /// row[key] as a number: NaN where JSON holds null (how a NaN or an
  /// infinity is written) or anything but a number; 0 where the key is missing.
  static double number(const nlohmann::json& row, const char* key) {
    const auto it = row.find(key);
    if (it == row.end()) return 0.0;
    return it->is_number() ? it->get<double>() : std::numeric_limits<double>::quiet_NaN();
  }
  template <class Each>
  static void for_rows(const std::filesystem::path& path, Each&& each) {
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      const auto row = nlohmann::json::parse(line, nullptr, false);
      if (!row.is_discarded() && row.is_object()) each(row);
    }
  }
  template <class Keep>
  static void keep_rows(const std::filesystem::path& path, bool resumed, Keep&& keep) {
    std::vector<std::string> kept;
    if (resumed)
      for_rows(path, [&](const nlohmann::json& row) {
        if (keep(row)) kept.push_back(row.dump());
      });
    errno = 0;
    std::ofstream out(path, std::ios::trunc);
    require(bool(out), ErrorKind::io, path.string(), ": cannot open for writing", errno_suffix());
    for (const auto& line : kept) out << line << '\n';
    out.close();
    require(!out.fail(), ErrorKind::io, path.string(), ": write failed", errno_suffix());
  }
  static void append(const std::filesystem::path& path, const nlohmann::json& row) {
    errno = 0;
    std::ofstream out(path, std::ios::app);
    require(bool(out), ErrorKind::io, path.string(), ": cannot open for appending", errno_suffix());
    out << row.dump() << '\n';
    out.close();  // the write itself may fail only here, when the buffer goes to the disk
    require(!out.fail(), ErrorKind::io, path.string(), ": write failed", errno_suffix());
  }

  std::filesystem::path steps_path_, metrics_path_;
  double loss_sum_ = 0.0;
  index correct_ = 0, images_ = 0;
};

}  // namespace nsl::cli
