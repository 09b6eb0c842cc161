// nsl/layers/max_pool2d.hpp — max pooling with 'same' padding (default 2x2,
// stride 2: the pooling of CNN-9, 32 -> 16 -> 8 -> 4 and 28 -> 14 -> 7 -> 4).
//
// y = the maximum of each window, padded cells never winning; backward sends
// each output gradient to the input cell that won (math: nsl/ops/pool.hpp).
// No parameters. Forward keeps the winners' flat input indices for backward.
#pragma once

#include <string>
#include <vector>

#include "nsl/layers/layer.hpp"
#include "nsl/ops/pool.hpp"

namespace nsl {

template <class T, class D = Cpu>
class MaxPool2d : public Layer<T, D> {
 public:
  /// A window x window max pool moving by `stride`, 'same' padded.
  explicit MaxPool2d(index window = 2, index stride = 2) : window_(window), stride_(stride) {
    require(window >= 1, ErrorKind::argument, "MaxPool2d: window must be >= 1, got ", window);
    require(stride >= 1, ErrorKind::argument, "MaxPool2d: stride must be >= 1, got ", stride);
  }

  std::string describe() const override {
    return cat("MaxPool2d(", window_, "x", window_, ", s=", stride_, ", same)");
  }
  Shape output_shape(const Shape& input) const override {
    return max_pool2d_output_shape("MaxPool2d", input, window_, stride_);
  }

  void forward_into(TensorView<const T, D> x, TensorView<T, D> y) override {
    check_shape("MaxPool2d", "output", y.shape(), output_shape(x.shape()));
    max_pool2d_forward<T>(x, window_, stride_, y, argmax_);
    this->remember_input_shape(x.shape());
  }
  void backward_into(TensorView<const T, D> dy, TensorView<T, D> dx) override {
    this->check_backward("MaxPool2d::backward", dy.shape(), dx);
    if (dx.size()) max_pool2d_backward<T>(argmax_, dy, dx);
  }
  /// Inference without keeping state: const, safe from several threads when
  /// each passes its own `argmax` scratch (which allocates only when it grows).
  void infer(TensorView<const T, D> x, TensorView<T, D> y, pool_indices_t<D>& argmax) const {
    max_pool2d_forward<T>(x, window_, stride_, y, argmax);
  }
  /// Const inference (Layer::infer): the maxima alone (max_pool2d_infer), no
  /// scratch. CPU only (elsewhere the base's error).
  void infer(TensorView<const T, D> x, TensorView<T, D> y, InferenceWorkspace& ws) const override {
    if constexpr (!is_cpu_v<D>) {
      Layer<T, D>::infer(x, y, ws);
    } else {
      check_shape("MaxPool2d", "output", y.shape(), output_shape(x.shape()));
      max_pool2d_infer<T>(x, window_, stride_, y);
    }
  }
  using Layer<T, D>::infer;

  index window() const { return window_; }
  index stride() const { return stride_; }
  /// The last forward's winners: flat indices into its input, one per output.
  const pool_indices_t<D>& argmax() const { return argmax_; }

 private:
  index window_, stride_;
  pool_indices_t<D> argmax_;  ///< the last forward's winners, for backward
};

}  // namespace nsl
