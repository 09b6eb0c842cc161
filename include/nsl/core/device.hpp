// nsl/core/device.hpp — the device a tensor lives on and an operation runs on.
//
// Tensors, layers and models take a device tag as their last template
// argument, `Cpu` by default:
//
//     nsl::Tensor<float>              host memory, the CPU operations
//     nsl::Tensor<float, nsl::Cuda>   GPU memory, the CUDA operations
//
// The CPU side is complete without CUDA. The CUDA specialisations (tensors,
// and every operation under the same name as its CPU version) live in
// nsl/cuda/*.cuh, which only an nvcc translation unit includes (NSL_WITH_CUDA
// in the build); the layers and models are written once for both.
// `DeviceKind` names a device at run time, for a command-line flag.
#pragma once

#include <string>
#include <type_traits>

#include "nsl/core/error.hpp"

namespace nsl {

/// The host: Eigen, nsl's GEMM, OpenMP.
struct Cpu {
  static constexpr const char* name = "cpu";
};
/// An NVIDIA GPU through the CUDA runtime and cuBLAS (nsl/cuda/).
struct Cuda {
  static constexpr const char* name = "cuda";
};

template <class D>
inline constexpr bool is_cpu_v = std::is_same_v<D, Cpu>;

enum class DeviceKind { cpu, cuda };

inline const char* to_string(DeviceKind d) { return d == DeviceKind::cpu ? "cpu" : "cuda"; }

inline DeviceKind parse_device(const std::string& name) {
  if (name == "cpu") return DeviceKind::cpu;
  if (name == "cuda") return DeviceKind::cuda;
  fail(ErrorKind::argument, cat("unknown device '", name, "' (expected cpu or cuda)"));
}

}  // namespace nsl
