// Shared helpers for the tests: random tensors and error measures.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include "nsl/core/random.hpp"
#include "nsl/core/tensor.hpp"

namespace nsl::test {

/// max_i |a_i - b_i| / max(max_i |b_i|, tiny): error relative to the reference's scale.
template <class T>
double max_relative_difference(TensorView<const T> a, TensorView<const T> b) {
  check_shape("max_relative_difference", "a", a.shape(), b.shape());
  double worst = 0.0, scale = 0.0;
  for (index i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return worst / std::max(scale, 1e-30);
}
template <class T>
double max_relative_difference(const Tensor<T>& a, const Tensor<T>& b) {
  return max_relative_difference<T>(a.view(), b.view());
}

/// Standard-normal tensor.
template <class T>
Tensor<T> randn(const Shape& s, Rng& rng) {
  return random_normal<T>(s, rng);
}

}  // namespace nsl::test
