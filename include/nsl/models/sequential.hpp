// nsl/models/sequential.hpp — a chain of layers, itself a layer.
//
// forward runs the layers in order, keeping each output in a buffer that is
// reused across steps; backward runs their backward passes in reverse, each
// layer's input gradient becoming the previous layer's output gradient.
// Parameters and buffers are named "<layer name>.<name>", so a checkpoint can
// address every tensor of a network.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nsl/layers/layer.hpp"

namespace nsl {

template <class T>
class Sequential : public Layer<T> {
 public:
  Sequential() = default;
  Sequential(Sequential&&) noexcept = default;
  Sequential& operator=(Sequential&&) noexcept = default;

  /// Appends `layer` under `name` (unique within the container); returns it.
  template <class L>
  L& add(std::string name, std::unique_ptr<L> layer) {
    require(layer != nullptr, ErrorKind::argument, "Sequential::add: null layer '", name, "'");
    for (const auto& entry : entries_)
      require(entry.name != name, ErrorKind::argument, "Sequential::add: duplicate layer name '", name, "'");
    L& ref = *layer;
    entries_.push_back({std::move(name), std::move(layer), Tensor<T>(), Tensor<T>()});
    return ref;
  }

  std::string describe() const override {
    std::string s = "Sequential(\n";
    for (const auto& e : entries_) s += cat("  ", e.name, ": ", e.layer->describe(), "\n");
    return s + ")";
  }
  Shape output_shape(const Shape& input) const override {
    Shape s = input;
    for (const auto& e : entries_) s = e.layer->output_shape(s);
    return s;
  }

  void forward_into(TensorView<const T> x, TensorView<T> y) override {
    require(!entries_.empty(), ErrorKind::state, "Sequential: forward on an empty container");
    check_shape("Sequential", "output", y.shape(), output_shape(x.shape()));
    TensorView<const T> current = x;
    for (std::size_t i = 0; i + 1 < entries_.size(); ++i) {
      Entry& e = entries_[i];
      e.output.resize(e.layer->output_shape(current.shape()));
      e.layer->forward_into(current, e.output.view());
      current = e.output.view();
    }
    entries_.back().layer->forward_into(current, y);
    this->remember_input_shape(x.shape());
  }

  void backward_into(TensorView<const T> dy, TensorView<T> dx) override {
    this->check_backward("Sequential::backward", dy.shape(), dx);
    TensorView<const T> grad = dy;
    for (std::size_t i = entries_.size(); i-- > 1;) {
      Entry& below = entries_[i - 1];  // this layer's input is the output of the layer below
      Entry& e = entries_[i];
      e.input_grad.resize(below.output.shape());
      e.layer->backward_into(grad, e.input_grad.view());
      grad = e.input_grad.view();
    }
    entries_.front().layer->backward_into(grad, dx);
  }

  std::vector<Parameter<T>> parameters() override {
    std::vector<Parameter<T>> all;
    for (auto& e : entries_) append_parameters<T>(all, e.name + ".", *e.layer);
    return all;
  }
  std::vector<Buffer<T>> buffers() override {
    std::vector<Buffer<T>> all;
    for (auto& e : entries_) append_buffers<T>(all, e.name + ".", *e.layer);
    return all;
  }
  void set_training(bool training) override {
    Layer<T>::set_training(training);
    for (auto& e : entries_) e.layer->set_training(training);
  }

  std::size_t size() const { return entries_.size(); }
  Layer<T>& layer(std::size_t i) { return *entries_.at(i).layer; }
  const std::string& name(std::size_t i) const { return entries_.at(i).name; }

 private:
  struct Entry {
    std::string name;
    std::unique_ptr<Layer<T>> layer;
    Tensor<T> output;      ///< this layer's output of the last forward (input of the next)
    Tensor<T> input_grad;  ///< scratch: dL/d(input) of this layer in backward
  };
  std::vector<Entry> entries_;
};

}  // namespace nsl
