// nsl/cuda/runtime.cuh — what every CUDA operation of nsl stands on: error
// checks that raise nsl::DeviceError, device memory owned RAII-style, the
// launch geometry of element-wise kernels, and a cuBLAS handle owned by the
// workspace that uses it (no hidden global state).
//
// Every operation runs on the current device's default stream, so kernels,
// cuBLAS calls and the explicit host <-> device copies (nsl/cuda/tensor.cuh)
// happen in program order. Only nvcc translation units include this file.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "nsl/core/error.hpp"
#include "nsl/core/shape.hpp"

namespace nsl {
namespace cuda {

/// Fails with a DeviceError naming `what` unless `status` is cudaSuccess.
inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    fail(ErrorKind::device, cat(what, ": CUDA error ", static_cast<int>(status), " (", cudaGetErrorName(status),
                                ": ", cudaGetErrorString(status), ")"));
}

inline const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
  }
}

/// Fails with a DeviceError naming `what` unless `status` is CUBLAS_STATUS_SUCCESS.
inline void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    fail(ErrorKind::device, cat(what, ": ", cublas_status_name(status), " (", static_cast<int>(status), ")"));
}

/// Checks that the kernel launched just before could start (bad geometry,
/// no device, an earlier asynchronous fault).
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

/// The number of CUDA devices usable here: 0 without a driver or a GPU
/// (never fails; tests use it to skip).
inline int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return count;
}

/// Fails with a DeviceError (saying why) when no CUDA device is present.
inline void require_device(const char* who) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    fail(ErrorKind::device, cat(who, ": no usable CUDA device (", cudaGetErrorName(status), ": ",
                                cudaGetErrorString(status), ")"));
  }
  require(count > 0, ErrorKind::device, who, ": no CUDA device present");
}

/// "NVIDIA H200, compute capability 9.0, 139.8 GiB" for the current device.
inline std::string device_description() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
  return cat(p.name, ", compute capability ", p.major, ".", p.minor, ", ",
             double(p.totalGlobalMem) / double(1ull << 30), " GiB");
}

/// Waits for all queued work; fails if any of it failed.
inline void synchronize(const char* what = "cudaDeviceSynchronize") { check(cudaDeviceSynchronize(), what); }

/// `count` elements of T in device memory, freed on destruction. Moves, does
/// not copy (Tensor<T, Cuda> copies explicitly).
template <class T>
class DeviceMemory {
 public:
  DeviceMemory() = default;
  explicit DeviceMemory(index count) { allocate(count); }
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  DeviceMemory(DeviceMemory&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), count_(std::exchange(other.count_, 0)) {}
  DeviceMemory& operator=(DeviceMemory&& other) noexcept {
    if (this != &other) {
      release();
      data_ = std::exchange(other.data_, nullptr);
      count_ = std::exchange(other.count_, 0);
    }
    return *this;
  }
  ~DeviceMemory() { release(); }

  /// Exactly `count` elements afterwards (contents unspecified when it changed).
  void resize(index count) {
    if (count != count_) {
      release();
      allocate(count);
    }
  }
  /// At least `count` elements afterwards; keeps the memory when it is enough.
  void reserve(index count) {
    if (count > count_) resize(count);
  }
  T* data() const { return data_; }
  index size() const { return count_; }

 private:
  void allocate(index count) {
    require(count >= 0, ErrorKind::argument, "DeviceMemory: negative size ", count);
    if (count == 0) return;
    void* p = nullptr;
    check(cudaMalloc(&p, static_cast<std::size_t>(count) * sizeof(T)),
          cat("cudaMalloc of ", count, " x ", sizeof(T), " bytes").c_str());
    data_ = static_cast<T*>(p);
    count_ = count;
  }
  void release() noexcept {
    if (data_) (void)cudaFree(data_);  // nothing to report from a destructor
    data_ = nullptr;
    count_ = 0;
  }

  T* data_ = nullptr;
  index count_ = 0;
};

/// A cuBLAS handle, created on first use and destroyed with its owner (a
/// workspace). Movable, not copyable.
class BlasHandle {
 public:
  BlasHandle() = default;
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;
  BlasHandle(BlasHandle&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  BlasHandle& operator=(BlasHandle&& other) noexcept {
    if (this != &other) {
      release();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  ~BlasHandle() { release(); }

  cublasHandle_t get() {
    if (!handle_) {
      check(cublasCreate(&handle_), "cublasCreate");
      // Plain FP32 arithmetic (no TF32 tensor cores), so that results stay
      // within float rounding of the CPU's.
      check(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    }
    return handle_;
  }

 private:
  void release() noexcept {
    if (handle_) (void)cublasDestroy(handle_);
    handle_ = nullptr;
  }
  cublasHandle_t handle_ = nullptr;
};

namespace detail {
/// Threads per block of the element-wise kernels.
inline constexpr int block_size = 256;
/// Blocks for a grid-stride loop over n elements (at least 1, capped).
inline unsigned grid_size(index n) {
  const index blocks = (n + block_size - 1) / block_size;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks));
}

/// Threads of a reduction block (a power of two: the tree halves it).
inline constexpr int reduce_block_size = 256;

/// The sum of every thread's `value` over a block of reduce_block_size
/// threads, in a fixed tree (the same order on every run); every thread gets
/// it. Callable several times in a kernel.
template <class T>
__device__ T block_sum(T value) {
  __shared__ T partial[reduce_block_size];
  partial[threadIdx.x] = value;
  __syncthreads();
  for (int half = reduce_block_size / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.x) < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  const T sum = partial[0];
  __syncthreads();  // everyone has read it before the next call overwrites it
  return sum;
}
}  // namespace detail

}  // namespace cuda
}  // namespace nsl

/// A grid-stride loop over [0, n) inside a kernel: `NSL_CUDA_FOR(i, n) body`.
#define NSL_CUDA_FOR(i, n)                                                                       \
  for (::nsl::index i = static_cast<::nsl::index>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<::nsl::index>(blockDim.x) * gridDim.x)
