// nsl/layers/relu.hpp — y = max(x, 0) element-wise (nsl/ops/activation.hpp).
#pragma once

#include <string>

#include "nsl/layers/layer.hpp"
#include "nsl/ops/activation.hpp"

namespace nsl {

template <class T, class D = Cpu>
class ReLU : public Layer<T, D> {
 public:
  std::string describe() const override { return "ReLU"; }
  Shape output_shape(const Shape& input) const override { return input; }
  void forward_into(TensorView<const T, D> x, TensorView<T, D> y) override {
    relu_forward<T>(x, y);
    output_.save(y, this->borrowing());  // backward needs where y > 0
    this->remember_input_shape(x.shape());
  }
  void backward_into(TensorView<const T, D> dy, TensorView<T, D> dx) override {
    this->check_backward("ReLU::backward", dy.shape(), dx);
    if (dx.size()) relu_backward<T>(output_.view(), dy, dx);
  }
  /// Const inference (Layer::infer): y = max(x, 0), no scratch; y may be x
  /// (in place). CPU only (elsewhere the base's error).
  void infer(TensorView<const T, D> x, TensorView<T, D> y, InferenceWorkspace& ws) const override {
    if constexpr (!is_cpu_v<D>) Layer<T, D>::infer(x, y, ws);
    else relu_forward<T>(x, y);
  }
  using Layer<T, D>::infer;

 private:
  SavedTensor<T, D> output_;  ///< the last forward's output
};

}  // namespace nsl
