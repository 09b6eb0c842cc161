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

/// The constants of the sigmoid angular form f(theta) = kappa (1 - u) / (1 + u),
/// u = exp(theta / k - pi / (2 k)): k, and kappa = (1 + e) / (1 - e) with
/// e = exp(-pi / (2 k)), so that f(0) = 1 (the CUDA kernels use them too).
inline constexpr double sigmoid_form_k = 0.3;
inline constexpr double angular_pi = 3.14159265358979323846;
inline double sigmoid_form_kappa() {
  const double e = std::exp(-angular_pi / (2 * sigmoid_form_k));
  return (1 + e) / (1 - e);
}

/// f(c) for one cosine value.
template <class T>
T angular_response(AngularForm form, T c) {
  constexpr double pi = angular_pi;
  switch (form) {
    case AngularForm::identity:
    case AngularForm::cosine: return c;
    case AngularForm::linear: {
      const double theta = std::acos(std::clamp<double>(c, -1.0, 1.0));
      return T(1.0 - 2.0 * theta / pi);
    }
    case AngularForm::sigmoid: {
      const double theta = std::acos(std::clamp<double>(c, -1.0, 1.0));
      const double u = std::exp(theta / sigmoid_form_k - pi / (2 * sigmoid_form_k));
      return T(sigmoid_form_kappa() * (1 - u) / (1 + u));
    }
  }
  return c;
}

/// f'(c) for one cosine value (infinite at |c| = 1 for linear and sigmoid).
template <class T>
T angular_derivative(AngularForm form, T c) {
  constexpr double pi = angular_pi;
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
      const double u = std::exp(theta / sigmoid_form_k - pi / (2 * sigmoid_form_k));
      const double df_dtheta = -2.0 * sigmoid_form_kappa() * u / (sigmoid_form_k * (1 + u) * (1 + u));
      return T(df_dtheta * (-1.0 / std::sqrt(1.0 - cc * cc)));
    }
  }
  return T(1);
}

/// n (N x 1 x Ho x Wo) = sqrt(window sum of x^2 over all channels + eps).
/// Per-thread scratch of local_input_norm and its backward, kept by the
/// caller (SphereConv2d) so that repeated calls allocate nothing.
template <class T, class D = Cpu>  // the CPU one; nsl/cuda specialises it for Cuda
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

// ---------------------------------------------------------------------------
// The SphereConv response and its gradient, given z = W * x (conv2d_forward),
// n(p) (local_input_norm, N x 1 x Ho x Wo) and a_o (filter_norm, O):
//     c[n,o,p] = z[n,o,p] / (a_o n[n,p]),     y = f(c)
//     dc = dy f'(c),   dz = dc / (a_o n),   dn[n,p] = -sum_o dc c / n,
//     da_o = -sum_{n,p} dc c / a_o = -sum_{n,p} dz n c     (dc = dz a_o n)

inline void check_sphere_response(const char* op, const Shape& c, const Shape& norm, const Shape& filters) {
  check_rank(op, "cosine", c, 4);
  check_shape(op, "input norm", norm, Shape{c[0], 1, c[2], c[3]});
  check_shape(op, "filter norms", filters, Shape{c[1]});
}

/// z_to_c holds z and is overwritten with c; y = f(c) (y may not alias it).
/// (y may be z_to_c itself: then y = f(c) in place, as const inference uses it.)
template <class T>
void sphere_response_forward(AngularForm form, TensorView<const T> input_norm, TensorView<const T> filter_norms,
                             TensorView<T> z_to_c, TensorView<T> y) {
  check_sphere_response("sphere_response_forward", z_to_c.shape(), input_norm.shape(), filter_norms.shape());
  check_shape("sphere_response_forward", "output", y.shape(), z_to_c.shape());
  const index N = z_to_c.dim(0), O = z_to_c.dim(1), P = z_to_c.dim(2) * z_to_c.dim(3);
  const bool linear = form == AngularForm::identity || form == AngularForm::cosine;
  parallel_ranges(N * O, 1, [&](index begin, index end) {
    for (index plane = begin; plane < end; ++plane) {
      const index n = plane / O, o = plane % O;
      T* c = z_to_c.data() + plane * P;
      const T* norm = input_norm.data() + n * P;
      T* yo = y.data() + plane * P;
      const T a = filter_norms[o];
      if (linear) {  // the same arithmetic, in a loop that vectorises
        for (index p = 0; p < P; ++p) {
          const T cosine = c[p] / (a * norm[p]);
          c[p] = cosine;
          yo[p] = cosine;
        }
        continue;
      }
      for (index p = 0; p < P; ++p) {
        c[p] /= a * norm[p];
        yo[p] = angular_response(form, c[p]);
      }
    }
  });
}

/// dz and dnorm (dL/dn, N x 1 x Ho x Wo) assigned from dy and the forward's c.
template <class T>
void sphere_response_backward(AngularForm form, TensorView<const T> c, TensorView<const T> input_norm,
                              TensorView<const T> filter_norms, TensorView<const T> dy, TensorView<T> dz,
                              TensorView<T> dnorm) {
  check_sphere_response("sphere_response_backward", c.shape(), input_norm.shape(), filter_norms.shape());
  check_shape("sphere_response_backward", "output gradient", dy.shape(), c.shape());
  check_shape("sphere_response_backward", "dz", dz.shape(), c.shape());
  check_shape("sphere_response_backward", "input norm gradient", dnorm.shape(), input_norm.shape());
  const index N = c.dim(0), O = c.dim(1), P = c.dim(2) * c.dim(3);
  const bool linear = form == AngularForm::identity || form == AngularForm::cosine;
  parallel_ranges(N, 1, [&](index n_begin, index n_end) {  // per image
    for (index n = n_begin; n < n_end; ++n) {
      const T* norm = input_norm.data() + n * P;
      T* dn = dnorm.data() + n * P;
      std::fill(dn, dn + P, T(0));
      for (index o = 0; o < O; ++o) {
        const index offset = (n * O + o) * P;
        const T* co = c.data() + offset;
        const T* g = dy.data() + offset;
        T* dzo = dz.data() + offset;
        const T a = filter_norms[o];
        if (linear) {  // angular derivative 1: the same arithmetic, vectorised
          for (index p = 0; p < P; ++p) {
            dzo[p] = g[p] / (a * norm[p]);
            dn[p] -= g[p] * co[p] / norm[p];
          }
          continue;
        }
        for (index p = 0; p < P; ++p) {
          const T dc = g[p] * angular_derivative(form, co[p]);
          dzo[p] = dc / (a * norm[p]);
          dn[p] -= dc * co[p] / norm[p];
        }
      }
    }
  });
}

/// dfilter_norms[o] = -sum_{n,p} dz n c (assigned).
template <class T>
void sphere_filter_norm_gradient(TensorView<const T> dz, TensorView<const T> input_norm, TensorView<const T> c,
                                 TensorView<T> dfilter_norms) {
  check_sphere_response("sphere_filter_norm_gradient", c.shape(), input_norm.shape(), dfilter_norms.shape());
  check_shape("sphere_filter_norm_gradient", "dz", dz.shape(), c.shape());
  const index N = c.dim(0), O = c.dim(1), P = c.dim(2) * c.dim(3);
  parallel_ranges(O, 1, [&](index o_begin, index o_end) {  // per filter
    for (index o = o_begin; o < o_end; ++o) {
      T sum = 0;
      for (index n = 0; n < N; ++n) {
        const index offset = (n * O + o) * P;
        const T* norm = input_norm.data() + n * P;
        for (index p = 0; p < P; ++p) sum += dz[offset + p] * norm[p] * c[offset + p];
      }
      dfilter_norms[o] = -sum;
    }
  });
}

// ---------------------------------------------------------------------------
// A per-channel bias after the response (the folded SphereConvs of deploy()):
//     y[n,o,p] += b_o,      db_o += sum_{n,p} dy[n,o,p]

/// y[n,o,:] += bias[o] (y: N x O x H x W, bias: O).
template <class T>
void add_channel_bias(TensorView<const T> bias, TensorView<T> y) {
  check_rank("add_channel_bias", "output", y.shape(), 4);
  check_shape("add_channel_bias", "bias", bias.shape(), Shape{y.dim(1)});
  const index N = y.dim(0), O = y.dim(1), P = y.dim(2) * y.dim(3);
  parallel_ranges(N * O, 1, [&](index begin, index end) {
    for (index plane = begin; plane < end; ++plane) {
      T* yo = y.data() + plane * P;
      const T b = bias[plane % O];
      for (index p = 0; p < P; ++p) yo[p] += b;
    }
  });
}

/// db[o] += sum_{n,p} dy[n,o,p] (accumulated, as the convolutions' parameter gradients are).
template <class T>
void channel_bias_backward(TensorView<const T> dy, TensorView<T> db) {
  check_rank("channel_bias_backward", "output gradient", dy.shape(), 4);
  check_shape("channel_bias_backward", "bias gradient", db.shape(), Shape{dy.dim(1)});
  const index N = dy.dim(0), O = dy.dim(1), P = dy.dim(2) * dy.dim(3);
  for (index o = 0; o < O; ++o) {
    T sum = 0;
    for (index n = 0; n < N; ++n) {
      const T* g = dy.data() + (n * O + o) * P;
      for (index p = 0; p < P; ++p) sum += g[p];
    }
    db[o] += sum;
  }
}

}  // namespace nsl
