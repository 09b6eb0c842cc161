// nsl/core/tensor.hpp — dense C-order tensors: an owning `Tensor<T>` and a
// non-owning `TensorView<T>` (T may be const), both mapping to Eigen.
//
// Both take the device as a second template argument (nsl/core/device.hpp);
// this file is the CPU one, nsl/cuda/tensor.cuh specialises them for Cuda.
//
// Layout is C order (row-major): for N x C x H x W the element (n, c, h, w)
// sits at ((n*C + c)*H + h)*W + w. So `matrix(rows, cols)` is a row-major
// Eigen map, and one image's C x (H*W) block is contiguous.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <type_traits>

#include "nsl/core/device.hpp"
#include "nsl/core/shape.hpp"

namespace nsl {

template <class T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

/// An Eigen map of row-major matrix memory: MatrixMap<float> writes,
/// MatrixMap<const float> only reads (what TensorView::matrix returns).
template <class T>
using MatrixMap = Eigen::Map<std::conditional_t<std::is_const_v<T>, const Matrix<std::remove_const_t<T>>,
                                                Matrix<std::remove_const_t<T>>>>;
/// The same for a column vector (what TensorView::vec returns).
template <class T>
using VectorMap = Eigen::Map<std::conditional_t<std::is_const_v<T>, const Vector<std::remove_const_t<T>>,
                                                Vector<std::remove_const_t<T>>>>;

/// A non-owning view of `shape.size()` elements at `data` in C order.
/// `TensorView<const T>` is the read-only view; a mutable view converts to it.
template <class T, class D = Cpu>
class TensorView {
  static_assert(is_cpu_v<D>, "nsl::TensorView<T, Cuda> is defined in nsl/cuda/tensor.cuh (nvcc only)");

 public:
  using value_type = std::remove_const_t<T>;

  TensorView() = default;
  TensorView(T* data, const Shape& shape) : data_(data), shape_(shape) {}
  /// Mutable to const view.
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T> && !std::is_same_v<U, T>>>
  TensorView(const TensorView<U>& other) : data_(other.data()), shape_(other.shape()) {}

  T* data() const { return data_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  index size() const { return shape_.size(); }
  index dim(int axis) const { return shape_[axis]; }

  T& operator[](index i) const { return data_[i]; }
  T& operator()(index i, index j) const { return data_[i * shape_[1] + j]; }
  T& operator()(index n, index c, index h, index w) const {
    return data_[((n * shape_[1] + c) * shape_[2] + h) * shape_[3] + w];
  }

  /// All elements as a column vector.
  VectorMap<T> vec() const { return VectorMap<T>(data_, size()); }
  /// All elements as a row-major rows x cols matrix (rows * cols == size()).
  MatrixMap<T> matrix(index rows, index cols) const {
    require(rows * cols == size(), ErrorKind::shape, "TensorView::matrix: ", rows, " x ", cols,
            " does not cover ", shape_);
    return MatrixMap<T>(data_, rows, cols);
  }
  /// Rank-2 view as its natural matrix; rank 4 as dim0 x (dim1*dim2*dim3).
  MatrixMap<T> matrix() const {
    return MatrixMap<T>(data_, shape_[0], shape_[0] ? size() / shape_[0] : 0);
  }
  /// Sample n of a batch (the first axis), with the other extents kept.
  TensorView<T> sample(index n) const {
    index per = shape_[0] ? size() / shape_[0] : 0;
    index rest[Shape::max_rank] = {1, 1, 1, 1};
    for (int i = 1; i < rank(); ++i) rest[i] = shape_[i];
    rest[0] = 1;
    return TensorView<T>(data_ + n * per, Shape::from(rest, rank()));
  }
  /// The same elements under another shape of equal size.
  TensorView<T> reshaped(const Shape& s) const {
    require(s.size() == size(), ErrorKind::shape, "TensorView::reshaped: cannot view ",
            shape_, " as ", s);
    return TensorView<T>(data_, s);
  }

 private:
  T* data_ = nullptr;
  Shape shape_;
};

/// An owning, 16-byte aligned (Eigen-allocated) tensor of float or double.
/// Value semantics: copies copy the data.
template <class T, class D = Cpu>
class Tensor {
  static_assert(std::is_floating_point_v<T>, "nsl::Tensor holds float or double");
  static_assert(is_cpu_v<D>, "nsl::Tensor<T, Cuda> is defined in nsl/cuda/tensor.cuh (nvcc only)");

 public:
  using value_type = T;

  Tensor() = default;
  /// Zero-filled tensor of the given shape.
  explicit Tensor(const Shape& shape) : shape_(shape), data_(Vector<T>::Zero(shape.size())) {}
  Tensor(const Shape& shape, T fill) : shape_(shape), data_(Vector<T>::Constant(shape.size(), fill)) {}
  /// Copies a view's elements.
  explicit Tensor(TensorView<const T> v) : shape_(v.shape()), data_(v.vec()) {}

  T* data() { return data_.data(); }
  const T* data() const { return data_.data(); }
  const Shape& shape() const { return shape_; }
  int rank() const { return shape_.rank(); }
  index size() const { return shape_.size(); }
  index dim(int axis) const { return shape_[axis]; }
  bool empty() const { return size() == 0; }

  T& operator[](index i) { return data_[i]; }
  const T& operator[](index i) const { return data_[i]; }
  T& operator()(index i, index j) { return view()(i, j); }
  const T& operator()(index i, index j) const { return view()(i, j); }
  T& operator()(index n, index c, index h, index w) { return view()(n, c, h, w); }
  const T& operator()(index n, index c, index h, index w) const { return view()(n, c, h, w); }

  TensorView<T> view() { return TensorView<T>(data(), shape_); }
  TensorView<const T> view() const { return TensorView<const T>(data(), shape_); }
  operator TensorView<T>() { return view(); }
  operator TensorView<const T>() const { return view(); }

  VectorMap<T> vec() { return view().vec(); }
  VectorMap<const T> vec() const { return view().vec(); }
  MatrixMap<T> matrix(index r, index c) { return view().matrix(r, c); }
  MatrixMap<const T> matrix(index r, index c) const { return view().matrix(r, c); }
  MatrixMap<T> matrix() { return view().matrix(); }
  MatrixMap<const T> matrix() const { return view().matrix(); }

  /// Changes the shape; reallocates only when the element count grows or
  /// shrinks. Contents are unspecified after a change of size.
  void resize(const Shape& shape) {
    if (shape.size() != data_.size()) data_.resize(shape.size());
    shape_ = shape;
  }
  /// Same elements, new shape of equal size.
  void reshape(const Shape& shape) {
    require(shape.size() == size(), ErrorKind::shape, "Tensor::reshape: cannot reshape ",
            shape_, " to ", shape);
    shape_ = shape;
  }
  void fill(T value) { data_.setConstant(value); }
  void set_zero() { data_.setZero(); }

 private:
  Shape shape_;
  Vector<T> data_;
};

/// Element-wise copy between views of equal shape.
template <class T>
void copy(TensorView<const T> from, TensorView<T> to) {
  check_shape("copy", "destination", to.shape(), from.shape());
  std::copy(from.data(), from.data() + from.size(), to.data());
}

/// Sets every element to zero.
template <class T>
void set_zero(TensorView<T> v) {
  std::fill(v.data(), v.data() + v.size(), T(0));
}

/// to += from, element-wise, for views of equal shape.
template <class T>
void add_into(TensorView<const T> from, TensorView<T> to) {
  check_shape("add_into", "destination", to.shape(), from.shape());
  to.vec() += from.vec();
}

/// A host copy of a tensor's elements (here a plain copy; for a Cuda tensor,
/// nsl/cuda/tensor.cuh's overload downloads it).
template <class T>
Tensor<T> to_host(TensorView<const T> v) {
  return Tensor<T>(v);
}
/// Overwrites `to` with a host tensor's elements (the upload counterpart).
template <class T>
void assign_from_host(TensorView<const T> from, TensorView<T> to) {
  copy<T>(from, to);
}
/// `to` = the host tensor `from`, on to's device: resized, then copied (an
/// upload for a GPU tensor).
template <class T, class D>
void assign_host_tensor(Tensor<T, D>& to, const Tensor<T>& from) {
  to.resize(from.shape());
  assign_from_host<T>(from.view(), to.view());
}
/// Host to device and back (nsl/cuda/tensor.cuh); between host tensors a
/// plain copy, so that code written for any device can name them.
template <class T>
void upload(TensorView<const T> from, TensorView<T> to) {
  copy<T>(from, to);
}
template <class T>
void download(TensorView<const T> from, TensorView<T> to) {
  copy<T>(from, to);
}

/// Converts a tensor to another scalar type (double <-> float).
template <class To, class From>
Tensor<To> cast(TensorView<const From> from) {
  Tensor<To> out(from.shape());
  out.vec() = from.vec().template cast<To>();
  return out;
}
template <class To, class From>
Tensor<To> cast(const Tensor<From>& from) {
  return cast<To, From>(from.view());
}

}  // namespace nsl
