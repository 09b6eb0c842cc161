// nsl/layers/global_similarity2d.hpp — global neural similarity (NSL.md §6):
// a self-attention block whose similarity between two positions is learned.
//
// For an input x (N x C x H x W; P = H W positions, x_i the C channels at
// position i), three cosine SphereConvs with 1x1 kernels project each
// position (NSL.md §4: each output is the cosine between a filter and x_i):
//
//     f_i = F(x)_i   (C' = max(1, C/8) channels)   g_j = G(x)_j   (C')   h_i = H(x)_i   (C)
//
// and, per image,
//
//     s_ij = f_i . g_j                                    S = F^T G         (P x P)
//     b_ij = exp(s_ij) / sum_i' exp(s_i'j)                softmax over i, for each j
//     o_j  = sum_i b_ij h_i                               O = H B           (C x P)
//     y_j  = gamma o_j + x_j                              gamma learned, starting at 0
//
// so the block starts as the identity and learns how much global context to
// add. The attention and its backward (dγ, dH, the softmax's Jacobian, dF,
// dG, the residual's dx) are the ops `attention_forward` and
// `attention_backward` (nsl/ops/attention.hpp); this layer runs the three
// projections around them and adds their input gradients to dx:
//
//     dx = dY + F^T(dF) + G^T(dG) + H^T(dH)               (each projection's own backward)
//
// docs/global_similarity.md derives it all. The orthogonality penalty of the
// reference recipe, 2e-4 ||W W^T - I||^2 / 2 on each projection's weight
// (W: out x in), is `orthogonality_penalty`. Kept for backward: the
// projections' outputs f, g, h and the attention B (N x P x P); infer keeps
// f, g, h and one image's B at a time in the caller's workspace. Parameters:
// "f.weight", "g.weight", "h.weight" (decayed), "gamma" (not decayed).
//
// CPU only: there is no CUDA version of the attention ops yet. The layer
// compiles for every device (so that one CNN-9 builder serves them all), and
// constructing it for another device fails with a device error.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "nsl/layers/sphere_conv2d.hpp"
#include "nsl/ops/attention.hpp"

namespace nsl {

/// R = λ/2 ||W W^T - I||^2 for W viewed as rows x (size / rows) (a conv
/// weight: one row per filter); dW += 2 λ (W W^T - I) W. Returns R.
template <class T>
T orthogonality_penalty(TensorView<const T> w, T lambda, TensorView<T> dw) {
  check_shape("orthogonality_penalty", "gradient", dw.shape(), w.shape());
  require(w.rank() >= 1 && w.size() > 0, ErrorKind::shape, "orthogonality_penalty: empty weight ", w.shape());
  const index rows = w.dim(0);
  const auto m = w.matrix(rows, w.size() / rows);
  Matrix<T> gram = m * m.transpose();
  gram.diagonal().array() -= T(1);
  dw.matrix(rows, w.size() / rows).noalias() += (T(2) * lambda) * (gram * m);
  return T(0.5) * lambda * gram.squaredNorm();
}

/// The penalty as it reads: sum over filter pairs (a, b) of (w_a . w_b - [a == b])^2, times λ/2.
template <class T>
double orthogonality_penalty_reference(TensorView<const T> w, double lambda) {
  const index rows = w.dim(0), cols = w.size() / rows;
  double sum = 0.0;
  for (index a = 0; a < rows; ++a)
    for (index b = 0; b < rows; ++b) {
      double dot = 0.0;
      for (index k = 0; k < cols; ++k) dot += double(w[a * cols + k]) * double(w[b * cols + k]);
      const double e = dot - (a == b ? 1.0 : 0.0);
      sum += e * e;
    }
  return 0.5 * lambda * sum;
}

/// The block's output by the formulas as they read, in double (for tests):
/// `attention_forward_reference` on x (N x C x H x W) and the projections
/// f, g (N x C' x H x W) and h (N x C x H x W).
template <class T>
Tensor<double> global_similarity_reference(const Tensor<T>& x, const Tensor<T>& f, const Tensor<T>& g,
                                           const Tensor<T>& h, double gamma) {
  const Tensor<double> xd = cast<double>(x), fd = cast<double>(f), gd = cast<double>(g), hd = cast<double>(h);
  Tensor<double> attention(attention_shape("global_similarity_reference", x.shape(), f.shape(), g.shape(), h.shape()));
  Tensor<double> y(x.shape());
  attention_forward_reference<double>(xd.view(), fd.view(), gd.view(), hd.view(), gamma, attention.view(), y.view());
  return y;
}

template <class T, class D = Cpu>
class GlobalSimilarity2d : public Layer<T, D> {
 public:
  /// A block on `channels` channels (the key/query width is max(1, channels / 8)).
  GlobalSimilarity2d(index channels, Rng& rng)
      : f_(channels_on_cpu(channels), key_channels(channels), 1, projection(), rng),
        g_(channels, key_channels(channels), 1, projection(), rng),
        h_(channels, channels, 1, projection(), rng),
        gamma_(Shape{1}),
        gamma_grad_(Shape{1}) {}

  static index key_channels(index channels) {
    require(channels >= 1, ErrorKind::argument, "GlobalSimilarity2d: channels must be >= 1, got ", channels);
    return std::max<index>(1, channels / 8);
  }

  std::string describe() const override {
    return cat("GlobalSimilarity2d(", channels(), ", keys ", f_.out_channels(), ")");
  }
  Shape output_shape(const Shape& input) const override {
    // describe() only on failure: a string per call would allocate in infer.
    if (!(input.rank() == 4 && input[1] == channels()))
      fail(ErrorKind::shape, cat(describe(), ": expected [N, ", channels(), ", H, W], got ", input));
    return input;
  }

  void forward_into(TensorView<const T, D> x, TensorView<T, D> y) override {
    check_shape("GlobalSimilarity2d", "output", y.shape(), output_shape(x.shape()));
    if constexpr (is_cpu_v<D>) {  // elsewhere the constructor has failed already (see channels_on_cpu)
      f_out_.resize(f_.output_shape(x.shape()));
      g_out_.resize(g_.output_shape(x.shape()));
      h_out_.resize(h_.output_shape(x.shape()));
      f_.forward_into(x, f_out_.view());
      g_.forward_into(x, g_out_.view());
      h_.forward_into(x, h_out_.view());
      attention_.resize(attention_shape("GlobalSimilarity2d", x.shape(), f_out_.shape(), g_out_.shape(), h_out_.shape()));
      attention_forward<T>(x, f_out_.view(), g_out_.view(), h_out_.view(), gamma_[0], attention_.view(), y,
                           workspace_);
    }
    this->remember_input_shape(x.shape());
  }

  /// Const inference: the projections' own infer (child workspaces 0 f, 1 g,
  /// 2 h), then the attention one image at a time; f, g, h and one image's
  /// P x P attention live in `ws`. CPU only (elsewhere the base's error).
  void infer(TensorView<const T, D> x, TensorView<T, D> y, InferenceWorkspace& ws) const override {
    if constexpr (!is_cpu_v<D>) {
      Layer<T, D>::infer(x, y, ws);
    } else {
      check_shape("GlobalSimilarity2d::infer", "output", y.shape(), output_shape(x.shape()));
      auto& scratch = ws.scratch<InferenceScratch>();
      const Shape keys = f_.output_shape(x.shape());
      const TensorView<T> f = scratch_view(scratch.f, keys), g = scratch_view(scratch.g, keys);
      const TensorView<T> h = scratch_view(scratch.h, h_.output_shape(x.shape()));
      f_.infer(x, f, ws.child(0));
      g_.infer(x, g, ws.child(1));
      h_.infer(x, h, ws.child(2));
      attention_forward<T>(x, f, g, h, gamma_[0], y, scratch.attention);
    }
  }
  using Layer<T, D>::infer;

  void backward_into(TensorView<const T, D> dy, TensorView<T, D> dx) override {
    this->check_backward("GlobalSimilarity2d::backward", dy.shape(), dx);
    if constexpr (is_cpu_v<D>) {
      df_.resize(f_out_.shape());
      dg_.resize(g_out_.shape());
      dh_.resize(h_out_.shape());
      // dx = dY (the residual), then each projection's input gradient added.
      attention_backward<T>(f_out_.view(), g_out_.view(), h_out_.view(), attention_.view(), gamma_[0], dy, df_.view(),
                            dg_.view(), dh_.view(), gamma_grad_.view(), dx, workspace_);
      if (!dx.size()) {
        for (SphereConv2d<T, D>* proj : {&f_, &g_, &h_}) proj->backward_into(projection_gradient(proj).view(), {});
        return;
      }
      scratch_.resize(dx.shape());
      for (SphereConv2d<T, D>* proj : {&f_, &g_, &h_}) {
        proj->backward_into(projection_gradient(proj).view(), scratch_.view());
        dx.vec() += scratch_.vec();
      }
    }
  }

  std::vector<Parameter<T, D>> parameters() override {
    std::vector<Parameter<T, D>> all;
    append_parameters<T, D>(all, "f.", f_);
    append_parameters<T, D>(all, "g.", g_);
    append_parameters<T, D>(all, "h.", h_);
    all.push_back({"gamma", gamma_.view(), gamma_grad_.view(), false});
    return all;
  }
  void set_borrowing(bool borrowing) override {
    Layer<T, D>::set_borrowing(borrowing);
    for (SphereConv2d<T, D>* proj : {&f_, &g_, &h_}) proj->set_borrowing(borrowing);
  }

  /// Adds the orthogonality penalty λ/2 ||W W^T - I||^2 of the three
  /// projections' gradients; returns the penalty.
  T add_orthogonality_penalty(T lambda) {
    T sum = T(0);
    if constexpr (is_cpu_v<D>)  // on another device no block can exist: its constructor fails
      for (SphereConv2d<T, D>* proj : {&f_, &g_, &h_})
        sum += orthogonality_penalty<T>(proj->weight().view(), lambda, proj->weight_grad().view());
    return sum;
  }

  index channels() const { return h_.out_channels(); }
  T gamma() const { return gamma_[0]; }
  Tensor<T, D>& gamma_tensor() { return gamma_; }
  SphereConv2d<T, D>& f() { return f_; }
  SphereConv2d<T, D>& g() { return g_; }
  SphereConv2d<T, D>& h() { return h_; }
  const SphereConv2d<T, D>& f() const { return f_; }
  const SphereConv2d<T, D>& g() const { return g_; }
  const SphereConv2d<T, D>& h() const { return h_; }
  /// The last forward's attention B (N x P x P; column j sums to 1).
  const Tensor<T, D>& attention() const { return attention_; }
  /// The last forward's projections f, g (N x C' x H x W) and h (N x C x H x W).
  const Tensor<T, D>& f_output() const { return f_out_; }
  const Tensor<T, D>& g_output() const { return g_out_; }
  const Tensor<T, D>& h_output() const { return h_out_; }

 private:
  static SphereConvOptions projection() { return SphereConvOptions{1, 0, true, true, AngularForm::cosine}; }
  /// `channels`, once the device is known to be the CPU (called first in the
  /// constructor, so that nothing is allocated on another device).
  static index channels_on_cpu(index channels) {
    require(is_cpu_v<D>, ErrorKind::device, "GlobalSimilarity2d runs on the CPU only (nsl/ops/attention.hpp has no ",
            D::name, " version yet)");
    return channels;
  }
  /// backward's dL/d(output) of projection `proj`.
  const Tensor<T, D>& projection_gradient(const SphereConv2d<T, D>* proj) const {
    return proj == &f_ ? df_ : proj == &g_ ? dg_ : dh_;
  }

  /// infer's scratch (in the caller's InferenceWorkspace; buffers only grow).
  struct InferenceScratch {
    Tensor<T> f, g, h;                 ///< the projections of the current input
    AttentionWorkspace<T> attention;   ///< one image's attention B
  };
  static TensorView<T> scratch_view(Tensor<T>& buffer, const Shape& shape) {
    if (buffer.size() < shape.size()) buffer.resize(Shape{shape.size()});
    return TensorView<T>(buffer.data(), shape);
  }

  SphereConv2d<T, D> f_, g_, h_;
  Tensor<T, D> gamma_, gamma_grad_;
  Tensor<T, D> f_out_, g_out_, h_out_, attention_;
  Tensor<T, D> df_, dg_, dh_, scratch_;
  AttentionWorkspace<T> workspace_;  ///< the attention's scratch (forward's packing buffers, backward's P x P), kept across steps
};

}  // namespace nsl
