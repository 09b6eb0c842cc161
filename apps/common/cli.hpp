// examples/common/cli.hpp — small pieces the command-line programs share:
// durations as text, a progress line, keeping the first N images, and
// re-estimating BatchNorm statistics on the first training batches.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>

#include <vector>

#include "nsl/data/augment.hpp"
#include "nsl/data/idx.hpp"
#include "nsl/layers/layer.hpp"
#include "nsl/train/precise_bn.hpp"

namespace nsl::cli {

/// "m:ss", or "h:mm:ss" from an hour on.
inline std::string format_seconds(double seconds) {
  const long total = std::lround(std::max(0.0, seconds));
  char text[32];
  if (total >= 3600)
    std::snprintf(text, sizeof text, "%ld:%02ld:%02ld", total / 3600, (total / 60) % 60, total % 60);
  else
    std::snprintf(text, sizeof text, "%ld:%02ld", total / 60, total % 60);
  return text;
}

/// "[#####.......]" for `done` of `total`.
inline std::string progress_bar(index done, index total, int width = 24) {
  const int filled = int(width * std::clamp<index>(done, 0, total) / std::max<index>(total, 1));
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(static_cast<std::size_t>(width), '.');
  return "[" + bar + "]";
}

/// A status line for `done` of `total` steps: redrawn in place when stdout is
/// a terminal, printed as a new line at every tenth of the work otherwise
/// (logs stay short). A transient line (for short phases such as a test
/// evaluation) is erased when the work is done and never goes to a log.
class ProgressLine {
 public:
  explicit ProgressLine(bool transient = false) : tty_(isatty(fileno(stdout)) != 0), transient_(transient) {}
  void show(index done, index total, const std::string& line) const {
    if (tty_) {
      std::printf("\r%s\033[K", line.c_str());
      if (done == total) std::printf(transient_ ? "\r\033[K" : "\n");
      std::fflush(stdout);
    } else if (!transient_ && (done == total || done * 10 / total != (done - 1) * 10 / total)) {
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
    }
  }

 private:
  bool tty_, transient_;
};

/// A transient progress line "label [####....] done/total" (see ProgressLine).
class PhaseProgress {
 public:
  explicit PhaseProgress(std::string label) : label_(std::move(label)), line_(true) {}
  void show(index done, index total) const {
    line_.show(done, total, label_ + " " + progress_bar(done, total) + " " + std::to_string(done) + "/" +
                                std::to_string(total));
  }

 private:
  std::string label_;
  ProgressLine line_;
};

/// Keeps only the first `limit` images of `d` (all when limit <= 0).
inline void keep_first(Dataset& d, index limit) {
  if (limit <= 0 || limit >= d.images.dim(0)) return;
  const Shape s = d.images.shape();
  Tensor<float> kept(TensorView<const float>(d.images.data(), Shape{limit, s[1], s[2], s[3]}));
  d.images = std::move(kept);
  d.labels.resize(static_cast<std::size_t>(limit));
}

/// Precise BN (nsl/train/precise_bn.hpp) on the first `batches` batches of
/// `batch` un-augmented images of `train` (fewer if the data runs out);
/// returns how many batches it used.
inline index recalibrate_on_first_batches(Layer<float>& net, const Dataset& train, index batches, index batch) {
  const index n = train.images.dim(0);
  batches = std::min(batches, (n + batch - 1) / batch);
  std::vector<index> order(static_cast<std::size_t>(n));
  for (index i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  std::vector<int> labels;
  const PhaseProgress progress("re-estimating BatchNorm statistics");
  recalibrate_batch_norm<float>(net, batches, [&](index b, Tensor<float>& images) {
    progress.show(b, batches);
    gather_batch(train, order, b * batch, std::min(batch, n - b * batch), images, labels);
  });
  progress.show(batches, batches);
  return batches;
}

}  // namespace nsl::cli
