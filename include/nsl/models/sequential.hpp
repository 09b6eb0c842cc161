// nsl/models/sequential.hpp — a chain of layers, itself a layer.
//
// forward runs the layers in order, keeping each output in a buffer that is
// reused across steps; backward runs their backward passes in reverse, each
// layer's input gradient becoming the previous layer's output gradient.
// Parameters and buffers are named "<layer name>.<name>", so a checkpoint can
// address every tensor of a network.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nsl/layers/layer.hpp"
#include "nsl/layers/relu.hpp"

namespace nsl {

template <class T, class D = Cpu>
class Sequential : public Layer<T, D> {
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
    entries_.push_back({std::move(name), std::move(layer), Tensor<T, D>()});
    update_borrowing();
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

  void forward_into(TensorView<const T, D> x, TensorView<T, D> y) override {
    require(!entries_.empty(), ErrorKind::state, "Sequential: forward on an empty container");
    check_shape("Sequential", "output", y.shape(), output_shape(x.shape()));
    TensorView<const T, D> current = x;
    for (std::size_t i = 0; i + 1 < entries_.size(); ++i) {
      Entry& e = entries_[i];
      e.output.resize(e.layer->output_shape(current.shape()));
      e.layer->forward_into(current, e.output.view());
      current = e.output.view();
    }
    entries_.back().layer->forward_into(current, y);
    this->remember_input_shape(x.shape());
  }

  /// Const inference: each layer's infer with its own child workspace; the
  /// outputs between layers live in `ws` (two buffers in turn, grown to the
  /// largest), so the container keeps nothing and allocates nothing once `ws`
  /// has seen the shape. A layer followed by a ReLU runs both in one pass
  /// where it can (Layer::infer_relu; the same values).
  void infer(TensorView<const T, D> x, TensorView<T, D> y, InferenceWorkspace& ws) const override {
    require(!entries_.empty(), ErrorKind::state, "Sequential: infer on an empty container");
    check_shape("Sequential::infer", "output", y.shape(), output_shape(x.shape()));
    auto& between = ws.scratch<InferenceBuffers>().tensors;
    TensorView<const T, D> current = x;
    for (std::size_t i = 0, turn = 0; i < entries_.size(); ++turn) {
      const Layer<T, D>& layer = *entries_[i].layer;
      const bool relu_next = i + 1 < entries_.size() && dynamic_cast<const ReLU<T, D>*>(entries_[i + 1].layer.get());
      const std::size_t after = relu_next ? i + 2 : i + 1;  // the next layer if the ReLU is fused
      const Shape out = layer.output_shape(current.shape());
      TensorView<T, D> next = y;
      if (after < entries_.size()) {
        Tensor<T, D>& buffer = between[turn % 2];
        if (buffer.size() < out.size()) buffer.resize(Shape{out.size()});
        next = TensorView<T, D>(buffer.data(), out);
      }
      if (relu_next && layer.infer_relu(current, next, ws.child(i))) {
        i = after;
      } else {  // the ReLU, if any, runs next, in place when it is the last layer
        layer.infer(current, next, ws.child(i));
        ++i;
      }
      current = next;
    }
  }
  using Layer<T, D>::infer;

  void backward_into(TensorView<const T, D> dy, TensorView<T, D> dx) override {
    this->check_backward("Sequential::backward", dy.shape(), dx);
    // Layer i's input gradient is layer i-1's output gradient; two buffers in
    // turn hold them (a layer reads one and writes the other).
    TensorView<const T, D> grad = dy;
    for (std::size_t i = entries_.size(); i-- > 1;) {
      const Shape& input = entries_[i - 1].output.shape();  // this layer's input: the output below
      Tensor<T, D>& buffer = gradients_[i % 2];
      if (buffer.size() < input.size()) buffer.resize(Shape{input.size()});
      const TensorView<T, D> input_grad(buffer.data(), input);
      entries_[i].layer->backward_into(grad, input_grad);
      if (backward_hook_) backward_hook_(i);
      grad = input_grad;
    }
    entries_.front().layer->backward_into(grad, dx);
    if (backward_hook_) backward_hook_(0);
  }

  std::vector<Parameter<T, D>> parameters() override {
    std::vector<Parameter<T, D>> all;
    for (auto& e : entries_) append_parameters<T>(all, e.name + ".", *e.layer);
    return all;
  }
  std::vector<Buffer<T, D>> buffers() override {
    std::vector<Buffer<T, D>> all;
    for (auto& e : entries_) append_buffers<T>(all, e.name + ".", *e.layer);
    return all;
  }
  void set_training(bool training) override {
    Layer<T, D>::set_training(training);
    for (auto& e : entries_) e.layer->set_training(training);
  }
  void set_replica_sum(ReplicaSum* replicas) override {
    for (auto& e : entries_) e.layer->set_replica_sum(replicas);
  }
  void prepare_inference() override {
    for (auto& e : entries_) e.layer->prepare_inference();
  }
  /// Calls hook(i) right after layer i's backward, from the last layer to
  /// the first: from then on the gradients of layer i's parameters are
  /// final for this backward (data-parallel training starts sending them
  /// while the layers below still compute). An empty function: no hook.
  void set_backward_hook(std::function<void(std::size_t)> hook) { backward_hook_ = std::move(hook); }
  /// The inner layers always borrow (their inputs and outputs are this
  /// container's buffers); the first and last borrow when this one does.
  void set_borrowing(bool borrowing) override {
    Layer<T, D>::set_borrowing(borrowing);
    update_borrowing();
  }

  std::size_t size() const { return entries_.size(); }
  Layer<T, D>& layer(std::size_t i) { return *entries_.at(i).layer; }
  const Layer<T, D>& layer(std::size_t i) const { return *entries_.at(i).layer; }
  const std::string& name(std::size_t i) const { return entries_.at(i).name; }
  /// Layer i's output of the last forward_into, for i < size() - 1 (the last
  /// layer writes the caller's tensor); empty before the first forward.
  TensorView<const T, D> output(std::size_t i) const {
    require(i + 1 < entries_.size(), ErrorKind::argument, "Sequential::output: layer ", i, " of ", entries_.size(),
            " (the last layer's output is the caller's)");
    return entries_[i].output.view();
  }

 private:
  struct InferenceBuffers {
    Tensor<T, D> tensors[2];  ///< the outputs between layers, in turn
  };
  struct Entry {
    std::string name;
    std::unique_ptr<Layer<T, D>> layer;
    Tensor<T, D> output;  ///< this layer's output of the last forward (input of the next)
  };
  std::vector<Entry> entries_;
  Tensor<T, D> gradients_[2];  ///< backward's scratch: the gradients between layers, in turn
  std::function<void(std::size_t)> backward_hook_;  ///< set_backward_hook's, after each layer's backward

  void update_borrowing() {
    for (std::size_t i = 0; i < entries_.size(); ++i)
      entries_[i].layer->set_borrowing(i == 0 || i + 1 == entries_.size() ? this->borrowing() : true);
  }
};

}  // namespace nsl
