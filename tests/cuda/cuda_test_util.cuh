// Helpers of the CUDA tests: random host tensors, their device copies, and
// the comparison of a device result with the CPU's.
#pragma once

#include <doctest/doctest.h>

#include <string>

#include "nsl/cuda/tensor.cuh"
#include "test_util.hpp"

namespace nsl::test {

/// The float32 agreement asked of every CUDA operation: relative to the
/// CPU result's largest magnitude (max_relative_difference).
inline constexpr double cuda_tolerance_f32 = 1e-4;
inline constexpr double cuda_tolerance_f64 = 1e-10;

template <class T>
constexpr double cuda_tolerance() {
  return sizeof(T) == 4 ? cuda_tolerance_f32 : cuda_tolerance_f64;
}

/// max_relative_difference between a device tensor and the CPU's.
template <class T>
double device_vs_host(TensorView<const T, Cuda> device, TensorView<const T> host) {
  const Tensor<T> down = to_host<T>(device);
  return max_relative_difference<T>(down.view(), host);
}

/// CHECKs that a device result matches the CPU's within the tolerance, naming it.
template <class T>
void check_close(const char* what, TensorView<const T, Cuda> device, TensorView<const T> host,
                 double tolerance = cuda_tolerance<T>()) {
  const double diff = device_vs_host<T>(device, host);
  INFO(std::string(what), ": max relative difference ", diff, " (tolerance ", tolerance, ")");
  CHECK(diff <= tolerance);
}

/// A random shape's extent in [lo, hi].
inline index random_extent(Rng& rng, index lo, index hi) {
  return lo + static_cast<index>(rng.uniform(0.0, 1.0) * double(hi - lo + 1)) % (hi - lo + 1);
}

}  // namespace nsl::test
