// nsl/train/schedule.hpp — learning rate as a function of the iteration
// (0-based: the number of SGD steps taken before this one).
//
// StepSchedule:    lr(i) = base * factor^(number of boundaries b with i >= b)
//                  NSL.md §5: base 0.1, x0.1 at 20000, 30000 and 37500 of
//                  42500 iterations (`StepSchedule::reference()`); optionally
//                  times (i + 1) / warmup for i < warmup (a linear warm-up).
// CosineSchedule:  linear warm-up lr(i) = base (i + 1) / warmup for i < warmup,
//                  then lr(i) = floor + (base - floor) (1 + cos(π q)) / 2 with
//                  q = (i - warmup) / (total - warmup), clamped to [0, 1], so
//                  lr reaches `floor` at i = total and stays there.
// make_schedule(name, base, total, warmup = 0): "step" (the reference
// boundaries scaled to `total`: fractions 20/42.5, 30/42.5, 37.5/42.5) or
// "cosine" (to 0), each with `warmup` iterations of linear warm-up, for a
// command-line flag.
//
// Why a warm-up: CNN-9's score layer is linear in 2048 features that are all
// non-negative (max-pooled ReLUs) with a large common mean, so one plain SGD
// step at lr 0.1 moves every logit of a class by about the same large amount
// (lr * (mean p_c - frequency_c) * ||feature||^2, ~10 at initialisation) and
// the loss jumps from 2.3 to above 10 before it recovers. A few hundred
// iterations of warm-up avoid the jump.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nsl/core/error.hpp"
#include "nsl/core/shape.hpp"

namespace nsl {

/// What a training loop asks: the learning rate of an iteration.
class LearningRateSchedule {
 public:
  virtual ~LearningRateSchedule() = default;
  /// The learning rate of 0-based `iteration` (>= 0).
  virtual double lr(index iteration) const = 0;
  /// e.g. "StepSchedule(0.1, x0.1 at 20000, 30000, 37500)".
  virtual std::string describe() const = 0;
};

namespace detail {
inline void check_iteration(const char* op, index iteration) {
  require(iteration >= 0, ErrorKind::argument, op, ": iteration: expected >= 0, got ", iteration);
}
}  // namespace detail

class StepSchedule : public LearningRateSchedule {
 public:
  /// `base` until the first boundary, multiplied by `factor` at each boundary
  /// (non-decreasing iterations; a repeated boundary applies the factor twice).
  StepSchedule(double base, std::vector<index> boundaries, double factor = 0.1, index warmup = 0)
      : base_(base), boundaries_(std::move(boundaries)), factor_(factor), warmup_(warmup) {
    require(warmup >= 0, ErrorKind::argument, "StepSchedule: warm-up: expected >= 0, got ", warmup);
    require(base >= 0.0 && std::isfinite(base), ErrorKind::argument,
            "StepSchedule: base learning rate: expected >= 0, got ", base);
    require(factor > 0.0 && std::isfinite(factor), ErrorKind::argument,
            "StepSchedule: factor: expected > 0, got ", factor);
    for (std::size_t i = 0; i < boundaries_.size(); ++i) {
      require(boundaries_[i] >= 0, ErrorKind::argument,
              "StepSchedule: boundaries: expected >= 0, got ", boundaries_[i]);
      require(i == 0 || boundaries_[i] >= boundaries_[i - 1], ErrorKind::argument,
              "StepSchedule: boundaries: expected non-decreasing, got ", boundaries_[i],
              " after ", boundaries_[i - 1]);
    }
  }
  /// NSL.md §5: 0.1, x0.1 at 20000, 30000 and 37500 (of 42500).
  static StepSchedule reference() { return StepSchedule(0.1, {20000, 30000, 37500}, 0.1); }

  double lr(index iteration) const override {
    detail::check_iteration("StepSchedule::lr", iteration);
    double rate = base_;
    for (index boundary : boundaries_)
      if (iteration >= boundary) rate *= factor_;
    if (iteration < warmup_) rate *= static_cast<double>(iteration + 1) / static_cast<double>(warmup_);
    return rate;
  }
  std::string describe() const override {
    std::string s = cat("StepSchedule(", base_);
    for (std::size_t i = 0; i < boundaries_.size(); ++i)
      s += cat(i == 0 ? cat(", x", factor_, " at ") : std::string(", "), boundaries_[i]);
    return s + (warmup_ ? cat(", warm-up ", warmup_, ")") : std::string(")"));
  }

  double base() const { return base_; }
  const std::vector<index>& boundaries() const { return boundaries_; }
  double factor() const { return factor_; }
  index warmup() const { return warmup_; }

 private:
  double base_;
  std::vector<index> boundaries_;
  double factor_;
  index warmup_;
};

class CosineSchedule : public LearningRateSchedule {
 public:
  /// From `base` to `floor` (0 <= floor <= base) over `total` iterations, the
  /// first `warmup` (< total) of them a linear ramp up to `base`.
  CosineSchedule(double base, index total, double floor = 0.0, index warmup = 0)
      : base_(base), floor_(floor), total_(total), warmup_(warmup) {
    require(base >= 0.0 && std::isfinite(base), ErrorKind::argument,
            "CosineSchedule: base learning rate: expected >= 0, got ", base);
    require(floor >= 0.0 && floor <= base, ErrorKind::argument,
            "CosineSchedule: floor: expected in [0, ", base, "], got ", floor);
    require(total >= 1, ErrorKind::argument, "CosineSchedule: total iterations: expected >= 1, got ",
            total);
    require(warmup >= 0 && warmup < total, ErrorKind::argument,
            "CosineSchedule: warm-up: expected in [0, ", total, "), got ", warmup);
  }

  double lr(index iteration) const override {
    detail::check_iteration("CosineSchedule::lr", iteration);
    if (iteration < warmup_)
      return base_ * static_cast<double>(iteration + 1) / static_cast<double>(warmup_);
    const double progress = std::min(1.0, static_cast<double>(iteration - warmup_) /
                                              static_cast<double>(total_ - warmup_));
    const double pi = 3.14159265358979323846;
    return floor_ + (base_ - floor_) * 0.5 * (1.0 + std::cos(pi * progress));
  }
  std::string describe() const override {
    return cat("CosineSchedule(", base_, " -> ", floor_, " over ", total_,
               warmup_ ? cat(", warm-up ", warmup_) : std::string(), ")");
  }

  double base() const { return base_; }
  double floor() const { return floor_; }
  index total() const { return total_; }
  index warmup() const { return warmup_; }

 private:
  double base_, floor_;
  index total_, warmup_;
};

/// "step" or "cosine" from `base` over `total_iterations`, the first `warmup`
/// of them a linear ramp (see the top of the file).
inline std::unique_ptr<LearningRateSchedule> make_schedule(const std::string& name, double base,
                                                           index total_iterations, index warmup = 0) {
  require(total_iterations >= 1, ErrorKind::argument,
          "make_schedule: total iterations: expected >= 1, got ", total_iterations);
  require(warmup >= 0 && warmup < total_iterations, ErrorKind::argument, "make_schedule: warm-up: expected in [0, ",
          total_iterations, "), got ", warmup);
  if (name == "step") {
    // The reference boundaries 20000, 30000, 37500 of 42500 are 8/17, 12/17
    // and 15/17 of the run; rounded to the nearest iteration (halves up).
    auto scaled = [&](index seventeenths) { return (2 * total_iterations * seventeenths + 17) / 34; };
    return std::make_unique<StepSchedule>(base, std::vector<index>{scaled(8), scaled(12), scaled(15)},
                                          0.1, warmup);
  }
  if (name == "cosine") return std::make_unique<CosineSchedule>(base, total_iterations, 0.0, warmup);
  fail(ErrorKind::argument, cat("make_schedule: unknown schedule '", name,
                                "': expected one of step, cosine"));
}

}  // namespace nsl
