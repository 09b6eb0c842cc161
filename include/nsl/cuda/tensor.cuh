// nsl/cuda/tensor.cuh — tensors in GPU memory: `TensorView<T, Cuda>` and
// `Tensor<T, Cuda>`, the Cuda specialisations of nsl/core/tensor.hpp, with
// the same C-order layout and the same interface less element access and
// Eigen maps (device memory cannot be read from the host).
//
// Host <-> device copies are explicit:
//     to_device(host_view)      -> Tensor<T, Cuda>
//     to_host(device_view)      -> Tensor<T>
//     upload(host, device)  /  download(device, host)   into existing tensors
// and the device-generic helpers of tensor.hpp (copy, set_zero, add_into,
// assign_from_host, fill_normal, fill_uniform) have Cuda overloads here, so
// the layers can be written once for both devices. Random fills draw on the
// host with the caller's generator and upload: the same numbers as on the CPU.
#pragma once

#include <type_traits>
#include <utility>

#include "nsl/core/random.hpp"
#include "nsl/core/tensor.hpp"
#include "nsl/cuda/runtime.cuh"

namespace nsl {

/// A non-owning view of device memory. `TensorView<const T, Cuda>` reads.
template <class T>
class TensorView<T, Cuda> {
 public:
  using value_type = std::remove_const_t<T>;

  TensorView() = default;
  TensorView(T* data, const Shape& shape) : data_(data), shape_(shape) {}
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
  TensorView(const TensorView<U, Cuda>& other) : data_(other.data()), shape_(other.shape()) {}

  T* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  index size() const { return shape_.size(); }
  index dim(int axis) const { return shape_[axis]; }

  /// Sample n of a batch (the first axis), with the other extents kept.
  TensorView sample(index n) const {
    const index per = shape_[0] ? size() / shape_[0] : 0;
    index rest[Shape::max_rank] = {1, 1, 1, 1};
    for (int i = 1; i < rank(); ++i) rest[i] = shape_[i];
    return TensorView(data_ + n * per, Shape::from(rest, rank()));
  }
  /// The same elements under another shape of equal size.
  TensorView reshaped(const Shape& s) const {
    require(s.size() == size(), ErrorKind::shape, "TensorView<Cuda>::reshaped: cannot view ", shape_, " as ", s);
    return TensorView(data_, s);
  }

 private:
  T* data_ = nullptr;
  Shape shape_;
};

namespace cuda::detail {
template <class T>
__global__ void fill_kernel(T* data, index n, T value) {
  NSL_CUDA_FOR(i, n) data[i] = value;
}
template <class T>
__global__ void add_kernel(const T* from, T* to, index n) {
  NSL_CUDA_FOR(i, n) to[i] += from[i];
}
template <class T>
void fill(T* data, index n, T value) {
  if (n == 0) return;
  fill_kernel<T><<<grid_size(n), block_size>>>(data, n, value);
  check_launch("fill");
}
}  // namespace cuda::detail

/// An owning tensor in device memory. Value semantics: copies copy the data
/// on the device.
template <class T>
class Tensor<T, Cuda> {
  static_assert(std::is_floating_point_v<T>, "nsl::Tensor holds float or double");

 public:
  using value_type = T;

  Tensor() = default;
  /// Zero-filled tensor of the given shape.
  explicit Tensor(const Shape& shape) : shape_(shape), memory_(shape.size()) { set_zero(); }
  Tensor(const Shape& shape, T value) : shape_(shape), memory_(shape.size()) { fill(value); }
  /// Copies a device view's elements.
  explicit Tensor(TensorView<const T, Cuda> v) : shape_(v.shape()), memory_(v.size()) { copy_from(v.data()); }
  Tensor(const Tensor& other) : shape_(other.shape_), memory_(other.size()) { copy_from(other.data()); }
  Tensor& operator=(const Tensor& other) {
    if (this != &other) {
      resize(other.shape_);
      copy_from(other.data());
    }
    return *this;
  }
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;

  T* data() { return memory_.data(); }
  const T* data() const { return memory_.data(); }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  index size() const { return shape_.size(); }
  index dim(int axis) const { return shape_[axis]; }
  bool empty() const { return size() == 0; }

  TensorView<T, Cuda> view() { return TensorView<T, Cuda>(data(), shape_); }
  TensorView<const T, Cuda> view() const { return TensorView<const T, Cuda>(data(), shape_); }
  operator TensorView<T, Cuda>() { return view(); }
  operator TensorView<const T, Cuda>() const { return view(); }

  /// Changes the shape; reallocates only when the element count changes.
  /// Contents are unspecified after a change of size.
  void resize(const Shape& shape) {
    memory_.resize(shape.size());
    shape_ = shape;
  }
  /// Same elements, new shape of equal size.
  void reshape(const Shape& shape) {
    require(shape.size() == size(), ErrorKind::shape, "Tensor<Cuda>::reshape: cannot reshape ", shape_, " to ",
            shape);
    shape_ = shape;
  }
  void fill(T value) { cuda::detail::fill<T>(data(), size(), value); }
  void set_zero() {
    if (size()) cuda::check(cudaMemset(data(), 0, sizeof(T) * std::size_t(size())), "Tensor<Cuda>::set_zero");
  }

 private:
  void copy_from(const T* source) {
    if (size())
      cuda::check(cudaMemcpy(data(), source, sizeof(T) * std::size_t(size()), cudaMemcpyDeviceToDevice),
                  "Tensor<Cuda>: device copy");
  }

  Shape shape_;
  cuda::DeviceMemory<T> memory_;
};

// ---- copies ----------------------------------------------------------------

/// Device to device, views of equal shape.
template <class T>
void copy(TensorView<const T, Cuda> from, TensorView<T, Cuda> to) {
  check_shape("copy", "destination", to.shape(), from.shape());
  if (from.size() && from.data() != to.data())
    cuda::check(cudaMemcpy(to.data(), from.data(), sizeof(T) * std::size_t(from.size()), cudaMemcpyDeviceToDevice),
                "copy (device to device)");
}

/// Host to device, views of equal shape.
template <class T>
void upload(TensorView<const T> from, TensorView<T, Cuda> to) {
  check_shape("upload", "device tensor", to.shape(), from.shape());
  if (from.size())
    cuda::check(cudaMemcpy(to.data(), from.data(), sizeof(T) * std::size_t(from.size()), cudaMemcpyHostToDevice),
                "upload (host to device)");
}

/// Device to host, views of equal shape.
template <class T>
void download(TensorView<const T, Cuda> from, TensorView<T> to) {
  check_shape("download", "host tensor", to.shape(), from.shape());
  if (from.size())
    cuda::check(cudaMemcpy(to.data(), from.data(), sizeof(T) * std::size_t(from.size()), cudaMemcpyDeviceToHost),
                "download (device to host)");
}

/// A device copy of a host view.
template <class T>
Tensor<T, Cuda> to_device(TensorView<const T> host) {
  Tensor<T, Cuda> t;
  t.resize(host.shape());
  upload<T>(host, t.view());
  return t;
}
template <class T>
Tensor<T, Cuda> to_device(const Tensor<T>& host) {
  return to_device<T>(host.view());
}

/// A host copy of a device view.
template <class T>
Tensor<T> to_host(TensorView<const T, Cuda> device) {
  Tensor<T> t(device.shape());
  download<T>(device, t.view());
  return t;
}
template <class T>
Tensor<T> to_host(const Tensor<T, Cuda>& device) {
  return to_host<T>(device.view());
}

/// The device-generic name of upload (tensor.hpp).
template <class T>
void assign_from_host(TensorView<const T> from, TensorView<T, Cuda> to) {
  upload<T>(from, to);
}

// ---- element-wise helpers of tensor.hpp ------------------------------------

template <class T>
void set_zero(TensorView<T, Cuda> v) {
  if (v.size()) cuda::check(cudaMemset(v.data(), 0, sizeof(T) * std::size_t(v.size())), "set_zero");
}

template <class T>
void add_into(TensorView<const T, Cuda> from, TensorView<T, Cuda> to) {
  check_shape("add_into", "destination", to.shape(), from.shape());
  if (to.size() == 0) return;
  cuda::detail::add_kernel<T><<<cuda::detail::grid_size(to.size()), cuda::detail::block_size>>>(
      from.data(), to.data(), to.size());
  cuda::check_launch("add_into");
}

/// N(mean, stddev^2) draws from the caller's generator, in element order
/// (drawn on the host, then uploaded: the CPU's numbers for the same seed).
template <class T>
void fill_normal(TensorView<T, Cuda> t, Rng& rng, double mean = 0.0, double stddev = 1.0) {
  Tensor<T> host(t.shape());
  fill_normal<T>(host.view(), rng, mean, stddev);
  upload<T>(host.view(), t);
}
/// U[lo, hi) draws, as fill_normal.
template <class T>
void fill_uniform(TensorView<T, Cuda> t, Rng& rng, double lo = 0.0, double hi = 1.0) {
  Tensor<T> host(t.shape());
  fill_uniform<T>(host.view(), rng, lo, hi);
  upload<T>(host.view(), t);
}

}  // namespace nsl
