// nsl/core/random.hpp — seeded random numbers the caller owns.
//
// `Rng` wraps std::mt19937_64, whose output sequence the C++ standard fixes,
// and derives uniforms and normals from it with our own formulas (the
// standard library's distributions differ between implementations). So a
// seed gives the same numbers with every compiler and platform.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>

#include "nsl/core/tensor.hpp"

namespace nsl {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : engine_(seed) {}

  /// Raw 64 random bits.
  std::uint64_t bits() { return engine_(); }
  /// Uniform in [0, 1), 53 random bits.
  double uniform() { return static_cast<double>(engine_() >> 11) * (1.0 / 9007199254740992.0); }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [0, n), n > 0 (rejection sampling: no modulo bias).
  std::uint64_t below(std::uint64_t n) {
    require(n > 0, ErrorKind::argument, "Rng::below: n must be positive");
    const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    std::uint64_t r;
    do r = engine_(); while (r >= limit);
    return r % n;
  }
  /// Standard normal (Box-Muller; the second value of each pair is kept).
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1;
    do u1 = uniform(); while (u1 <= 0.0);
    const double u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double angle = 6.283185307179586476925 * u2;
    spare_ = radius * std::sin(angle);
    has_spare_ = true;
    return radius * std::cos(angle);
  }
  double normal(double mean, double stddev) { return mean + stddev * normal(); }

  /// The full generator state as text (for checkpoints): restoring it with
  /// set_state continues the exact same sequence.
  std::string state() const {
    std::ostringstream out;
    out.precision(17);
    out << engine_ << ' ' << (has_spare_ ? 1 : 0) << ' ' << std::hexfloat << spare_;
    return out.str();
  }
  /// Restores a state written by state(); fails on malformed text.
  void set_state(const std::string& text) {
    std::istringstream in(text);
    std::mt19937_64 engine;
    int has_spare = -1;
    std::string spare_text;
    in >> engine >> has_spare >> spare_text;
    require(!in.fail() && (has_spare == 0 || has_spare == 1), ErrorKind::format,
            "Rng::set_state: malformed generator state");
    engine_ = engine;
    has_spare_ = has_spare == 1;
    spare_ = std::strtod(spare_text.c_str(), nullptr);
  }

 private:
  std::mt19937_64 engine_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

/// Fills with N(mean, stddev^2) draws, in element order.
template <class T>
void fill_normal(TensorView<T> t, Rng& rng, double mean = 0.0, double stddev = 1.0) {
  for (index i = 0; i < t.size(); ++i) t[i] = static_cast<T>(rng.normal(mean, stddev));
}
/// Fills with U[lo, hi) draws, in element order.
template <class T>
void fill_uniform(TensorView<T> t, Rng& rng, double lo = 0.0, double hi = 1.0) {
  for (index i = 0; i < t.size(); ++i) t[i] = static_cast<T>(rng.uniform(lo, hi));
}

/// A new tensor of N(mean, stddev^2) draws.
template <class T>
Tensor<T> random_normal(const Shape& shape, Rng& rng, double mean = 0.0, double stddev = 1.0) {
  Tensor<T> t(shape);
  fill_normal<T>(t.view(), rng, mean, stddev);
  return t;
}
/// A new tensor of U[lo, hi) draws.
template <class T>
Tensor<T> random_uniform(const Shape& shape, Rng& rng, double lo = 0.0, double hi = 1.0) {
  Tensor<T> t(shape);
  fill_uniform<T>(t.view(), rng, lo, hi);
  return t;
}

}  // namespace nsl
