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
// add. Backward, given dY (docs/global_similarity.md derives it):
//
//     dgamma = <dY, O>          dO = gamma dY
//     dH = dO B^T               dB = H^T dO
//     dS_ij = b_ij (dB_ij - sum_i' b_i'j dB_i'j)          (the softmax's Jacobian, per column)
//     dF = G dS^T               dG = F dS
//     dx = dY + F^T(dF) + G^T(dG) + H^T(dH)               (each projection's own backward)
//
// The orthogonality penalty of the reference recipe, 2e-4 ||W W^T - I||^2 / 2
// on each projection's weight (W: out x in), is `orthogonality_penalty`.
// Kept for backward: the projections' outputs f, g, h and the attention B
// (N x P x P). Parameters: "f.weight", "g.weight", "h.weight" (decayed),
// "gamma" (not decayed). CPU only.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "nsl/layers/sphere_conv2d.hpp"

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

/// The block's output by the formulas as they read, in plain loops (for
/// tests): x (N x C x P), the projections f, g (N x C' x P), h (N x C x P).
template <class T>
Tensor<double> global_similarity_reference(const Tensor<T>& x, const Tensor<T>& f, const Tensor<T>& g,
                                           const Tensor<T>& h, double gamma) {
  const index n = x.dim(0), c = x.dim(1), p = x.size() / (n * c), k = f.dim(1);
  Tensor<double> y(x.shape());
  std::vector<double> s(static_cast<std::size_t>(p));
  for (index img = 0; img < n; ++img)
    for (index j = 0; j < p; ++j) {
      double top = -1e300, sum = 0.0;
      for (index i = 0; i < p; ++i) {
        double sij = 0.0;
        for (index a = 0; a < k; ++a) sij += double(f[(img * k + a) * p + i]) * double(g[(img * k + a) * p + j]);
        s[static_cast<std::size_t>(i)] = sij;
        top = std::max(top, sij);
      }
      for (index i = 0; i < p; ++i) sum += std::exp(s[static_cast<std::size_t>(i)] - top);
      for (index ch = 0; ch < c; ++ch) {
        double o = 0.0;
        for (index i = 0; i < p; ++i)
          o += std::exp(s[static_cast<std::size_t>(i)] - top) / sum * double(h[(img * c + ch) * p + i]);
        y[(img * c + ch) * p + j] = gamma * o + double(x[(img * c + ch) * p + j]);
      }
    }
  return y;
}

template <class T>
class GlobalSimilarity2d : public Layer<T> {
 public:
  /// A block on `channels` channels (the key/query width is max(1, channels / 8)).
  GlobalSimilarity2d(index channels, Rng& rng)
      : f_(channels, key_channels(channels), 1, projection(), rng),
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
    require(input.rank() == 4 && input[1] == channels(), ErrorKind::shape, describe(), ": expected [N, ", channels(),
            ", H, W], got ", input);
    return input;
  }

  void forward_into(TensorView<const T> x, TensorView<T> y) override {
    check_shape("GlobalSimilarity2d", "output", y.shape(), output_shape(x.shape()));
    const index n = x.dim(0), c = channels(), k = f_.out_channels(), p = x.dim(2) * x.dim(3);
    f_out_.resize(f_.output_shape(x.shape()));
    g_out_.resize(g_.output_shape(x.shape()));
    h_out_.resize(h_.output_shape(x.shape()));
    f_.forward_into(x, f_out_.view());
    g_.forward_into(x, g_out_.view());
    h_.forward_into(x, h_out_.view());
    attention_.resize(Shape{n, p, p});
    const T gamma = gamma_[0];
    for (index img = 0; img < n; ++img) {
      const detail::MatrixMap<const T> f(f_out_.data() + img * k * p, k, p);
      const detail::MatrixMap<const T> g(g_out_.data() + img * k * p, k, p);
      const detail::MatrixMap<const T> h(h_out_.data() + img * c * p, c, p);
      detail::MatrixMap<T> b(attention_.data() + img * p * p, p, p);
      b.noalias() = f.transpose() * g;  // s_ij
      for (index j = 0; j < p; ++j) {   // softmax over i (down each column), shifted by the column's maximum
        auto col = b.col(j);
        const T top = col.maxCoeff();
        col = (col.array() - top).exp();
        col /= col.sum();
      }
      const detail::MatrixMap<const T> xin(x.data() + img * c * p, c, p);
      detail::MatrixMap<T> out(y.data() + img * c * p, c, p);
      out.noalias() = gamma * (h * b);
      out += xin;
    }
    this->remember_input_shape(x.shape());
  }

  void backward_into(TensorView<const T> dy, TensorView<T> dx) override {
    this->check_backward("GlobalSimilarity2d::backward", dy.shape(), dx);
    const Shape& in = this->input_shape();
    const index n = in[0], c = channels(), k = f_.out_channels(), p = in[2] * in[3];
    const T gamma = gamma_[0];
    df_.resize(f_out_.shape());
    dg_.resize(g_out_.shape());
    dh_.resize(h_out_.shape());
    db_.resize(p, p);  // per-image scratch, kept across steps
    ds_.resize(p, p);
    Matrix<T>& db = db_;
    Matrix<T>& ds = ds_;
    T dgamma = T(0);
    for (index img = 0; img < n; ++img) {
      const detail::MatrixMap<const T> f(f_out_.data() + img * k * p, k, p);
      const detail::MatrixMap<const T> g(g_out_.data() + img * k * p, k, p);
      const detail::MatrixMap<const T> h(h_out_.data() + img * c * p, c, p);
      const detail::MatrixMap<const T> b(attention_.data() + img * p * p, p, p);
      const detail::MatrixMap<const T> dout(dy.data() + img * c * p, c, p);
      // dgamma = <dY, H B>, computed as <H^T dY, B> (P x P, no C x P temporary).
      db.noalias() = h.transpose() * dout;  // = dB / gamma
      dgamma += db.cwiseProduct(b).sum();
      db *= gamma;                          // dB = H^T dO, dO = gamma dY
      detail::MatrixMap<T>(dh_.data() + img * c * p, c, p).noalias() = gamma * (dout * b.transpose());
      // dS = B .* (dB - 1 (colsum(B .* dB)))
      const Eigen::Matrix<T, 1, Eigen::Dynamic> along = b.cwiseProduct(db).colwise().sum();
      ds = b.cwiseProduct(db.rowwise() - along);
      detail::MatrixMap<T>(df_.data() + img * k * p, k, p).noalias() = g * ds.transpose();
      detail::MatrixMap<T>(dg_.data() + img * k * p, k, p).noalias() = f * ds;
    }
    gamma_grad_[0] += dgamma;
    if (dx.size()) {
      copy<T>(dy, dx);
      scratch_.resize(in);
      for (SphereConv2d<T>* proj : {&f_, &g_, &h_}) {
        const Tensor<T>& grad = proj == &f_ ? df_ : proj == &g_ ? dg_ : dh_;
        proj->backward_into(grad.view(), scratch_.view());
        dx.vec() += scratch_.vec();
      }
    } else {
      f_.backward_into(df_.view(), {});
      g_.backward_into(dg_.view(), {});
      h_.backward_into(dh_.view(), {});
    }
  }

  std::vector<Parameter<T>> parameters() override {
    std::vector<Parameter<T>> all;
    append_parameters<T>(all, "f.", f_);
    append_parameters<T>(all, "g.", g_);
    append_parameters<T>(all, "h.", h_);
    all.push_back({"gamma", gamma_.view(), gamma_grad_.view(), false});
    return all;
  }
  void set_borrowing(bool borrowing) override {
    Layer<T>::set_borrowing(borrowing);
    for (SphereConv2d<T>* proj : {&f_, &g_, &h_}) proj->set_borrowing(borrowing);
  }

  /// Adds the orthogonality penalty λ/2 ||W W^T - I||^2 of the three
  /// projections' gradients; returns the penalty.
  T add_orthogonality_penalty(T lambda) {
    T sum = T(0);
    for (SphereConv2d<T>* proj : {&f_, &g_, &h_})
      sum += orthogonality_penalty<T>(proj->weight().view(), lambda, proj->weight_grad().view());
    return sum;
  }

  index channels() const { return h_.out_channels(); }
  T gamma() const { return gamma_[0]; }
  Tensor<T>& gamma_tensor() { return gamma_; }
  SphereConv2d<T>& f() { return f_; }
  SphereConv2d<T>& g() { return g_; }
  SphereConv2d<T>& h() { return h_; }
  /// The last forward's attention B (N x P x P; column j sums to 1).
  const Tensor<T>& attention() const { return attention_; }
  /// The last forward's projections f, g (N x C' x H x W) and h (N x C x H x W).
  const Tensor<T>& f_output() const { return f_out_; }
  const Tensor<T>& g_output() const { return g_out_; }
  const Tensor<T>& h_output() const { return h_out_; }

 private:
  static SphereConvOptions projection() { return SphereConvOptions{1, 0, true, true, AngularForm::cosine}; }

  SphereConv2d<T> f_, g_, h_;
  Tensor<T> gamma_, gamma_grad_;
  Tensor<T> f_out_, g_out_, h_out_, attention_;
  Tensor<T> df_, dg_, dh_, scratch_;
  Matrix<T> db_, ds_;  ///< backward's P x P scratch: dB and dS of one image
};

}  // namespace nsl
