// apps/common/cli.hpp — small pieces the command-line programs share:
// durations as text, a progress line, keeping the first N images, and
// re-estimating BatchNorm statistics on the first training batches.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
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

/// A progress line for work measured in steps of several images:
/// "LABEL [####....] done/total UNIT  TEXT  N img/s  ETA m:ss" (see ProgressLine).
class RateProgress {
 public:
  RateProgress(std::string label, index total, std::string unit = "")
      : label_(std::move(label)), unit_(unit.empty() ? "" : " " + unit), total_(total), start_(Clock::now()) {}
  /// `done` steps of `total`, `images` images so far; `text` goes before the rate.
  void update(index done, index images, const std::string& text = "") {
    const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    const double rate = seconds > 0 ? double(images) / seconds : 0.0;
    const double eta = done > 0 ? seconds * double(total_ - done) / double(done) : 0.0;
    line_.show(done, total_,
               cat(label_, " ", progress_bar(done, total_), " ", done, "/", total_, unit_, "  ", text, text.empty() ? "" : "  ",
                   long(std::lround(rate)), " img/s  ETA ", format_seconds(eta)));
  }
  double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  using Clock = std::chrono::steady_clock;
  std::string label_, unit_;
  index total_;
  Clock::time_point start_;
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
/// returns how many batches it used. Rank `rank` of `ranks` of a
/// data-parallel run forwards its share of each batch (with synchronised
/// BatchNorm the statistics are then those of the whole batch).
inline index recalibrate_on_first_batches(Layer<float>& net, const Dataset& train, index batches, index batch,
                                          int rank = 0, int ranks = 1) {
  const index n = train.images.dim(0);
  batches = std::min(batches, (n + batch - 1) / batch);
  std::vector<index> order(static_cast<std::size_t>(n));
  for (index i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  std::vector<int> labels;
  const PhaseProgress progress("re-estimating BatchNorm statistics");
  recalibrate_batch_norm<float>(net, batches, [&](index b, Tensor<float>& images) {
    progress.show(b, batches);
    const index count = std::min(batch, n - b * batch);  // rank's share of it (all of it in one process)
    const index begin = count * rank / ranks, end = count * (rank + 1) / ranks;
    gather_batch(train, order, b * batch + begin, end - begin, images, labels);
  });
  progress.show(batches, batches);
  return batches;
}

#if !NSL_HAS_EXCEPTIONS
inline const char*& program_name() {
  static const char* name = "nsl";
  return name;
}
#endif

/// main()'s body: runs `program`, and turns any error into one line
/// "NAME: message" on stderr and exit status 1.
template <class Program>
int run_program(const char* name, Program&& program) {
#if NSL_HAS_EXCEPTIONS
  try {
    return program();
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
#else
  program_name() = name;  // without exceptions nsl's checks call the handler, which never returns
  set_error_handler([](ErrorKind, const char* message) {
    std::fflush(stdout);
    std::fprintf(stderr, "%s: %s\n", program_name(), message);
    std::exit(1);
  });
  return program();
#endif
}

/// The command line as one string (argv[0] replaced by `name`), for run.json.
inline std::string command_line(const char* name, int argc, char** argv) {
  std::string s = name;
  for (int i = 1; i < argc; ++i) s += std::string(" ") + argv[i];
  return s;
}

}  // namespace nsl::cli
