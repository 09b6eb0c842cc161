// nsl/layers/relu.hpp — y = max(x, 0) element-wise (nsl/ops/activation.hpp).
#pragma once

#include <string>

#include "nsl/layers/layer.hpp"
#include "nsl/ops/activation.hpp"

namespace nsl {

template <class T>
class ReLU : public Layer<T> {
 public:
  std::string describe() const override { return "ReLU"; }
  Shape output_shape(const Shape& input) const override { return input; }
  void forward_into(TensorView<const T> x, TensorView<T> y) override {
    relu_forward<T>(x, y);
    output_.save(y, this->borrowing());  // backward needs where y > 0
    this->remember_input_shape(x.shape());
  }
  void backward_into(TensorView<const T> dy, TensorView<T> dx) override {
    this->check_backward("ReLU::backward", dy.shape(), dx);
    if (dx.size()) relu_backward<T>(output_.view(), dy, dx);
  }

 private:
  SavedTensor<T> output_;  ///< the last forward's output
};

}  // namespace nsl
