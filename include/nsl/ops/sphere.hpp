// nsl/ops/sphere.hpp — the pieces of hyperspherical (SphereConv) operators
// (NSL.md §3-4): the local input norm, the filter norm, and the angular
// responses, each with its gradient.
//
// Local input norm, over the k x k x C window of output pixel p:
//     n(p) = sqrt( sum_{c, window} x^2 + eps ),     eps = 1e-4
//     dn(p)/dx[c, u, v] = x[c, u, v] / n(p)   for every window p covering (u, v)
// so dx = x ∘ col2im(q), q(p) = dL/dn(p) / n(p) spread over the window.
//
// Filter norm:  ||w_o|| = sqrt( sum w_o^2 + eps ),   d||w_o||/dw_o = w_o / ||w_o||
//
// Angular responses of c = cos θ (θ the angle between filter and patch):
//     cosine:   f = c                                    f'(c) = 1
//     linear:   f = 1 - 2θ/π                             f'(c) = 2 / (π sqrt(1 - c²))
//     sigmoid:  f = κ (1 - u) / (1 + u),  u = exp(θ/k - π/(2k)),  k = 0.3,
//               κ = (1 + e^{-π/(2k)}) / (1 - e^{-π/(2k)})
//               f'(c) = df/dθ dθ/dc = (-2κu / (k (1 + u)²)) (-1 / sqrt(1 - c²))
//     identity: f = c with no requirement that c be a cosine (the plain
//               normalised convolution of the similarity predictor).
// linear and sigmoid are not differentiable at θ = 0 and π (|c| = 1); c is
// clamped to [-1, 1] before acos.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "nsl/core/tensor.hpp"
#include "nsl/core/threads.hpp"
#include "nsl/ops/im2col.hpp"

namespace nsl {

/// eps inside the square roots of both norms.
inline constexpr double sphere_norm_eps = 1e-4;

enum class AngularForm { identity, cosine, linear, sigmoid };

inline const char* to_string(AngularForm f) {
  switch (f) {
    case AngularForm::identity: return "identity";
    case AngularForm::cosine: return "cosine";
    case AngularForm::linear: return "linear";
    case AngularForm::sigmoid: return "sigmoid";
  }
  return "?";
}

inline AngularForm parse_angular_form(const std::string& name) {
  if (name == "identity") return AngularForm::identity;
  if (name == "cosine") return AngularForm::cosine;
  if (name == "linear") return AngularForm::linear;
  if (name == "sigmoid") return AngularForm::sigmoid;
  fail(ErrorKind::argument, cat("parse_angular_form: unknown form '", name,
                                "' (expected identity, cosine, linear or sigmoid)"));
}

namespace detail {
inline constexpr double sigmoid_k = 0.3;
inline constexpr double pi = 3.14159265358979323846;
inline double sigmoid_kappa() {
  const double e = std::exp(-pi / (2 * sigmoid_k));
  return (1 + e) / (1 - e);
}
}  // namespace detail

/// f(c) for one cosine value.
template <class T>
T angular_response(AngularForm form, T c) {
  using detail::pi;
  switch (form) {
    case AngularForm::identity:
    case AngularForm::cosine: return c;
    case AngularForm::linear: {
      const double theta = std::acos(std::clamp<double>(c, -1.0, 1.0));
      return T(1.0 - 2.0 * theta / pi);
    }
    case AngularForm::sigmoid: {
      const double theta = std::acos(std::clamp<double>(c, -1.0, 1.0));
      const double u = std::exp(theta / detail::sigmoid_k - pi / (2 * detail::sigmoid_k));
      return T(detail::sigmoid_kappa() * (1 - u) / (1 + u));
    }
  }
  return c;
}

/// f'(c) for one cosine value (infinite at |c| = 1 for linear and sigmoid).
template <class T>
T angular_derivative(AngularForm form, T c) {
  using detail::pi;
  switch (form) {
    case AngularForm::identity:
    case AngularForm::cosine: return T(1);
    case AngularForm::linear: {
      const double cc = std::clamp<double>(c, -1.0, 1.0);
      return T(2.0 / (pi * std::sqrt(1.0 - cc * cc)));
    }
    case AngularForm::sigmoid: {
      const double cc = std::clamp<double>(c, -1.0, 1.0);
      const double theta = std::acos(cc);
      const double u = std::exp(theta / detail::sigmoid_k - pi / (2 * detail::sigmoid_k));
      const double df_dtheta = -2.0 * detail::sigmoid_kappa() * u / (detail::sigmoid_k * (1 + u) * (1 + u));
      return T(df_dtheta * (-1.0 / std::sqrt(1.0 - cc * cc)));
    }
  }
  return T(1);
}

/// n (N x 1 x Ho x Wo) = sqrt(window sum of x^2 over all channels + eps).
/// Per-thread scratch of local_input_norm and its backward, kept by the
/// caller (SphereConv2d) so that repeated calls allocate nothing.
template <class T>
struct LocalNormWorkspace {
  struct Piece {
    Matrix<T> squares, spread, coverage;
  };
  std::vector<Piece> pieces;
  /// One Piece for each of the `count` pieces of a parallel_pieces loop.
  void reserve(index count) {
    if (static_cast<index>(pieces.size()) < count) pieces.resize(static_cast<std::size_t>(count));
  }
};

template <class T>
void local_input_norm(TensorView<const T> x, const ConvGeometry& g, TensorView<T> norm,
                      LocalNormWorkspace<T>* workspace = nullptr) {
  check_rank("local_input_norm", "input", x.shape(), 4);
  check_geometry("local_input_norm", g, x.dim(2), x.dim(3));
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const index Ho = g.output_extent(H), Wo = g.output_extent(W);
  check_shape("local_input_norm", "norm", norm.shape(), Shape{N, 1, Ho, Wo});
  LocalNormWorkspace<T> local;
  LocalNormWorkspace<T>& ws = workspace ? *workspace : local;
  ws.reserve(count_pieces(N, 1));  // before the threads start
  parallel_pieces(N, 1, [&](index piece, index n_begin, index n_end) {
    Matrix<T>& squares = ws.pieces[static_cast<std::size_t>(piece)].squares;  // sum over channels of x^2, per image
    squares.resize(H, W);
    for (index n = n_begin; n < n_end; ++n) {
      squares.setZero();
      for (index c = 0; c < C; ++c)
        squares += Eigen::Map<const Matrix<T>>(x.data() + (n * C + c) * H * W, H, W).cwiseAbs2();
      for (index i = 0; i < Ho; ++i)
        for (index j = 0; j < Wo; ++j) {
          const index top = i * g.stride - g.padding, left = j * g.stride - g.padding;
          const index u0 = std::max<index>(top, 0), u1 = std::min(top + g.kernel, H);
          const index v0 = std::max<index>(left, 0), v1 = std::min(left + g.kernel, W);
          T sum = T(sphere_norm_eps);
          if (u1 > u0 && v1 > v0) sum += squares.block(u0, v0, u1 - u0, v1 - v0).sum();
          norm(n, 0, i, j) = std::sqrt(sum);
        }
    }
  });
}

/// dx += x ∘ (window-adjoint of dnorm / norm). dx is ACCUMULATED (the
/// callers add this path to the gradient through the convolution).
template <class T>
void local_input_norm_backward(TensorView<const T> x, const ConvGeometry& g, TensorView<const T> norm,
                               TensorView<const T> dnorm, TensorView<T> dx,
                               LocalNormWorkspace<T>* workspace = nullptr) {
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const index Ho = g.output_extent(H), Wo = g.output_extent(W), K = g.slots();
  check_shape("local_input_norm_backward", "norm", norm.shape(), Shape{N, 1, Ho, Wo});
  check_shape("local_input_norm_backward", "norm gradient", dnorm.shape(), norm.shape());
  check_shape("local_input_norm_backward", "input gradient", dx.shape(), x.shape());
  LocalNormWorkspace<T> local;
  LocalNormWorkspace<T>& ws = workspace ? *workspace : local;
  ws.reserve(count_pieces(N, 1));  // before the threads start
  parallel_pieces(N, 1, [&](index piece, index n_begin, index n_end) {
    Matrix<T>& spread = ws.pieces[static_cast<std::size_t>(piece)].spread;
    Matrix<T>& coverage = ws.pieces[static_cast<std::size_t>(piece)].coverage;
    spread.resize(K, Ho * Wo);
    coverage.resize(H, W);
    for (index n = n_begin; n < n_end; ++n) {
      // coverage[u, v] = sum over windows p covering (u, v) of dnorm(p) / norm(p)
      // every row of spread is dnorm / norm (no temporary: the first row, then copies)
      spread.row(0) = (dnorm.sample(n).vec().array() / norm.sample(n).vec().array()).matrix().transpose();
      for (index r = 1; r < K; ++r) spread.row(r) = spread.row(0);
      coverage.setZero();
      col2im_add(spread.data(), 1, H, W, g, coverage.data());
      for (index c = 0; c < C; ++c) {
        const index offset = (n * C + c) * H * W;
        Eigen::Map<Matrix<T>>(dx.data() + offset, H, W) +=
            Eigen::Map<const Matrix<T>>(x.data() + offset, H, W).cwiseProduct(coverage);
      }
    }
  });
}

/// The local input norm as the formula reads (for tests).
template <class T>
void local_input_norm_reference(TensorView<const T> x, const ConvGeometry& g, TensorView<T> norm) {
  const index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  for (index n = 0; n < N; ++n)
    for (index i = 0; i < g.output_extent(H); ++i)
      for (index j = 0; j < g.output_extent(W); ++j) {
        double sum = sphere_norm_eps;
        for (index c = 0; c < C; ++c)
          for (index di = 0; di < g.kernel; ++di)
            for (index dj = 0; dj < g.kernel; ++dj) {
              const index u = i * g.stride - g.padding + di, v = j * g.stride - g.padding + dj;
              if (u >= 0 && u < H && v >= 0 && v < W) sum += double(x(n, c, u, v)) * double(x(n, c, u, v));
            }
        norm(n, 0, i, j) = T(std::sqrt(sum));
      }
}

/// ||w_o|| for each filter of w (O x ...), into norms (O).
template <class T>
void filter_norm(TensorView<const T> w, TensorView<T> norms) {
  check_shape("filter_norm", "norms", norms.shape(), Shape{w.dim(0)});
  norms.vec() = (w.matrix().rowwise().squaredNorm().array() + T(sphere_norm_eps)).sqrt().matrix();
}

/// dw_o += dnorm_o * w_o / ||w_o|| (accumulated).
template <class T>
void filter_norm_backward(TensorView<const T> w, TensorView<const T> norms, TensorView<const T> dnorms,
                          TensorView<T> dw) {
  check_shape("filter_norm_backward", "weight gradient", dw.shape(), w.shape());
  check_shape("filter_norm_backward", "norm gradient", dnorms.shape(), norms.shape());
  dw.matrix() += (dnorms.vec().array() / norms.vec().array()).matrix().asDiagonal() * w.matrix();
}

}  // namespace nsl
