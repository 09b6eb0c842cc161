// nsl/layers/layer.hpp — what every layer promises.
//
// A layer owns its parameters and their gradients and has a forward and a
// backward pass. The contract, kept by every layer in nsl:
//
//   forward(x)         computes y and keeps, in named members, exactly what
//                      backward needs (in training and in evaluation mode).
//   backward(dy)       for the most recent forward, returns dL/dx for the
//                      scalar L = <y, dy> (ASSIGNED: a fresh tensor, or the
//                      given buffer overwritten), and ADDS dL/dθ into each
//                      parameter's gradient buffer (accumulated, so a loop
//                      can sum over micro-batches or share parameters).
//   backward_into(dy, dx)  the same into a caller's buffer; an empty dx view
//                      skips the input gradient (a network's first layer).
//   parameters()       name, value, gradient and whether weight decay applies.
//   buffers()          saved state that gradients do not train (BN statistics).
//
// What forward keeps of its input (a convolution's x, to rebuild the patches)
// or output (ReLU's y) is a copy by default, so the caller may reuse its
// buffers right after forward. `set_borrowing(true)` is the caller's promise
// that the tensors it passes to forward_into stay alive and unchanged until
// the matching backward; layers then keep views instead (SavedTensor below).
// Sequential makes that promise for the layers between its first and last,
// whose inputs and outputs it owns, and passes its own flag to the first and
// last; a training loop that keeps its batch until backward may set it on the
// whole network.
//
// Inference has a contract of its own:
//
//   infer(x, y, ws) const  y = the evaluation-mode output for x (BatchNorm with
//                      its running statistics), keeping nothing in the layer:
//                      const, so one model serves several threads at once,
//                      each with its own InferenceWorkspace `ws`, which the
//                      caller owns and the layer keeps its scratch in. Once a
//                      workspace has seen a shape, infer allocates nothing.
//
// `Layer<T, D>` is the run-time interface for containers that assemble a
// network from a flag; the per-element work stays in non-virtual ops. D is
// the device (nsl/core/device.hpp): the layers are written once, against
// operations that exist for each device under the same name.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nsl/core/replicas.hpp"
#include "nsl/core/tensor.hpp"

namespace nsl {

/// The scratch of const inference (Layer::infer), owned by the caller: one per
/// thread. A layer keeps its own scratch in it (`scratch<S>()`: im2col
/// buffers, a predictor's intermediate tensors...), created on first use and
/// reused; a container gives each of its parts a child workspace. A workspace
/// belongs to one network: using it with another fails or reallocates.
class InferenceWorkspace {
 public:
  InferenceWorkspace() = default;
  InferenceWorkspace(InferenceWorkspace&&) noexcept = default;
  InferenceWorkspace& operator=(InferenceWorkspace&&) noexcept = default;
  InferenceWorkspace(const InferenceWorkspace&) = delete;
  InferenceWorkspace& operator=(const InferenceWorkspace&) = delete;

  /// The workspace of part `i` of a container (made on first use).
  InferenceWorkspace& child(std::size_t i) {
    if (children_.size() <= i) children_.resize(i + 1);
    if (!children_[i]) children_[i] = std::make_unique<InferenceWorkspace>();
    return *children_[i];
  }
  /// This layer's scratch of type S, default-constructed on first use. A
  /// workspace holds one scratch type: asking for another fails.
  template <class S>
  S& scratch() {
    if (!scratch_) {
      scratch_ = std::unique_ptr<void, void (*)(void*)>(new S(), [](void* p) { delete static_cast<S*>(p); });
      type_ = type_tag<S>();
    }
    require(type_ == type_tag<S>(), ErrorKind::state,
            "InferenceWorkspace: used by two different layers (give each model, and each thread, its own)");
    return *static_cast<S*>(scratch_.get());
  }

 private:
  template <class S>
  static const void* type_tag() {
    static const char tag = 0;
    return &tag;
  }
  std::vector<std::unique_ptr<InferenceWorkspace>> children_;
  std::unique_ptr<void, void (*)(void*)> scratch_{nullptr, [](void*) {}};
  const void* type_ = nullptr;
};

/// A trainable tensor of a layer, as the optimiser sees it.
template <class T, class D = Cpu>
struct Parameter {
  std::string name;        ///< e.g. "weight", "bias", "m"
  TensorView<T, D> value;  ///< the parameter itself
  TensorView<T, D> grad;   ///< its accumulated gradient, same shape
  bool weight_decay;      ///< whether L2 weight decay applies
};

/// State that is saved with a model but not trained by gradients (e.g.
/// BatchNorm's running statistics).
template <class T, class D = Cpu>
struct Buffer {
  std::string name;
  TensorView<T, D> value;
};

template <class T, class D = Cpu>
class Layer {
 public:
  virtual ~Layer() = default;

  /// Human-readable type and configuration, e.g. "Conv2d(3->32, k=3, s=1, p=1)".
  virtual std::string describe() const = 0;
  /// The output shape for an input shape; fails with a ShapeError if it does not fit.
  virtual Shape output_shape(const Shape& input) const = 0;
  /// Forward pass into y (of shape output_shape(x.shape())), keeping what backward needs.
  virtual void forward_into(TensorView<const T, D> x, TensorView<T, D> y) = 0;
  /// Backward pass for the most recent forward (see the contract above).
  virtual void backward_into(TensorView<const T, D> dy, TensorView<T, D> dx) = 0;
  /// The layer's parameters (empty for parameter-free layers).
  virtual std::vector<Parameter<T, D>> parameters() { return {}; }
  /// Saved, untrained state (empty for most layers).
  virtual std::vector<Buffer<T, D>> buffers() { return {}; }
  /// Switches between training and evaluation behaviour (BatchNorm, dropout).
  virtual void set_training(bool training) { training_ = training; }
  bool training() const { return training_; }
  /// The caller's promise that forward's input and output tensors outlive the
  /// matching backward unchanged (see the top of the file); containers pass it on.
  virtual void set_borrowing(bool borrowing) { borrowing_ = borrowing; }
  bool borrowing() const { return borrowing_; }
  /// Synchronised BatchNorm: every BatchNorm2d in this layer (a container's
  /// parts, a predictor's) sums its training-mode batch statistics, and
  /// their gradients' sums, over the replicas with `replicas` (not owned;
  /// it must outlive the layer's use of it); nullptr: each replica's own
  /// batch. Layers without BatchNorm ignore it.
  virtual void set_replica_sum(ReplicaSum* replicas) { (void)replicas; }

  /// Evaluation-mode output for x into y (of shape output_shape(x.shape())):
  /// const, thread-safe with one workspace per thread, allocation-free once
  /// `ws` has seen the shape (see the top of the file).
  virtual void infer(TensorView<const T, D> x, TensorView<T, D> y, InferenceWorkspace& ws) const {
    (void)x, (void)y, (void)ws;
    fail(ErrorKind::state, cat(describe(), ": this layer has no const inference"));
  }
  /// infer followed by a ReLU, y = max(infer(x), 0), in one pass where the
  /// layer can (Conv2d applies it as it stores y): true when done, false
  /// (nothing written) where it cannot. Sequential::infer calls it for a
  /// layer that a ReLU follows, and skips the ReLU.
  virtual bool infer_relu(TensorView<const T, D> x, TensorView<T, D> y, InferenceWorkspace& ws) const {
    (void)x, (void)y, (void)ws;
    return false;
  }
  /// Lays out, once, what infer reads on every call, so that each call does
  /// less (Conv2d: its weights for the one-image direct convolution); a
  /// container prepares its parts, and deploy() its result. The layout is a
  /// copy of the parameters: a non-const access to them (parameters(),
  /// weight()) drops it, and infer works as before it. Weights changed
  /// through views taken before this call are not seen by infer: prepare
  /// again after training.
  virtual void prepare_inference() {}

  /// The same into a new output tensor.
  Tensor<T, D> infer(TensorView<const T, D> x, InferenceWorkspace& ws) const {
    Tensor<T, D> y(output_shape(x.shape()));
    infer(x, y.view(), ws);
    return y;
  }

  /// Forward pass returning a new output tensor.
  Tensor<T, D> forward(TensorView<const T, D> x) {
    Tensor<T, D> y(output_shape(x.shape()));
    forward_into(x, y.view());
    return y;
  }
  /// Backward pass returning a new input-gradient tensor.
  Tensor<T, D> backward(TensorView<const T, D> dy) {
    require(input_shape_.rank() != 0, ErrorKind::state, describe(),
            ": backward called before forward");
    Tensor<T, D> dx(input_shape_);
    backward_into(dy, dx.view());
    return dx;
  }

 protected:
  /// Records the input shape of a forward pass; layers call it in forward_into.
  void remember_input_shape(const Shape& s) { input_shape_ = s; }
  /// Fails unless a forward pass happened and dy has its output's shape.
  void check_backward(const char* op, const Shape& dy, const TensorView<T, D>& dx) const {
    require(input_shape_.rank() != 0, ErrorKind::state, op, ": backward called before forward");
    check_shape(op, "output gradient", dy, output_shape(input_shape_));
    if (dx.size()) check_shape(op, "input gradient", dx.shape(), input_shape_);
  }
  const Shape& input_shape() const { return input_shape_; }

 private:
  Shape input_shape_;
  bool training_ = true;
  bool borrowing_ = false;
};

/// A tensor forward keeps for backward: a copy, or only a view when the
/// caller promised to keep the original alive and unchanged (borrowing).
template <class T, class D = Cpu>
class SavedTensor {
 public:
  void save(TensorView<const T, D> x, bool borrow) {
    if (borrow) {
      if (!owned_.empty()) owned_ = Tensor<T, D>();  // a copy from an earlier, non-borrowing forward
      view_ = x;
    } else {
      owned_.resize(x.shape());
      copy<T>(x, owned_.view());
      view_ = owned_.view();
    }
  }
  TensorView<const T, D> view() const { return view_; }
  const Shape& shape() const { return view_.shape(); }

 private:
  Tensor<T, D> owned_;
  TensorView<const T, D> view_;
};

/// `inner`'s parameters with `prefix` put before each name (for containers).
template <class T, class D>
void append_parameters(std::vector<Parameter<T, D>>& all, const std::string& prefix, Layer<T, D>& inner) {
  for (auto& p : inner.parameters()) all.push_back({prefix + p.name, p.value, p.grad, p.weight_decay});
}
/// `inner`'s buffers with `prefix` put before each name.
template <class T, class D>
void append_buffers(std::vector<Buffer<T, D>>& all, const std::string& prefix, Layer<T, D>& inner) {
  for (auto& b : inner.buffers()) all.push_back({prefix + b.name, b.value});
}

/// Sets every parameter gradient to zero.
template <class T, class D>
void zero_gradients(const std::vector<Parameter<T, D>>& params) {
  for (const auto& p : params) set_zero<T>(p.grad);
}

}  // namespace nsl
