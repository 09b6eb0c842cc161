// nsl/deploy/deploy.hpp — a trained network's inference form.
//
// deploy(net) returns a new Sequential that computes net's evaluation-mode
// function with less work per call (docs/deployment.md derives each fold):
//
//   * BatchNorm folded into the convolution before it. In evaluation mode BN
//     is the per-channel affine map  z -> s z + t,  s = gamma / sqrt(var + eps),
//     t = beta - s mean, so a convolution z = W x + b followed by BN is the
//     convolution with  W' = s W  (each output filter scaled) and  b' = s b + t.
//   * Static NSL folded: w' = M^T w (StaticNSConv2d::to_conv2d), then BN as above.
//     The static variants deploy to a plain CNN.
//   * SphereConvs with a linear response (identity, cosine): c = z / (a n(p))
//     with the filter norm a_o a constant of the weights, so BN after it folds
//     into  W' = (s / a) W,  bias t; the folded layer divides by the local
//     input norm n(p) only (filter_norm off, identity response, a bias).
//   * Dynamic NSL kept, with both predictor convolutions folded as above
//     (its M(p) depends on the input); the BN after the layer scales W and
//     becomes the layer's bias, as for a plain convolution.
//   * ReLU, MaxPool2d, GlobalSimilarity2d copied; a BatchNorm2d with no
//     convolution before it (or after a SphereConv with a non-linear
//     response) copied as it is.
//
// A folded layer keeps its convolution's name; the folded BN disappears
// (names: "stage1.conv1", no "stage1.bn1"). The result is an ordinary
// network: its const infer (Layer::infer) is what deployment runs, with
// the convolutions' weights laid out for it once (Layer::prepare_inference),
// and its parameters() can still be fine-tuned (taking them drops that
// layout; prepare_inference() after the training restores it). The folds are computed in double,
// then rounded to T: the logits agree with the trained network's to float
// rounding (tests/test_deploy.cpp). CPU only.
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nsl/io/model_file.hpp"

namespace nsl {

namespace detail::deploying {

/// The per-channel affine map y -> scale y + shift of an evaluation-mode BN
/// (or the identity map, for a convolution with no BN after it).
struct Affine {
  std::vector<double> scale, shift;

  static Affine identity(index channels) {
    return {std::vector<double>(std::size_t(channels), 1.0), std::vector<double>(std::size_t(channels), 0.0)};
  }
  template <class T>
  static Affine of(const BatchNorm2d<T>& bn) {
    Affine a;
    for (index c = 0; c < bn.channels(); ++c) {
      const double s = double(bn.gamma()[c]) / std::sqrt(double(bn.running_variance()[c]) + bn.options().eps);
      a.scale.push_back(s);
      a.shift.push_back(double(bn.beta()[c]) - s * double(bn.running_mean()[c]));
    }
    return a;
  }
  double s(index o) const { return scale[std::size_t(o)]; }
  bool is_identity() const {
    for (std::size_t c = 0; c < scale.size(); ++c)
      if (scale[c] != 1.0 || shift[c] != 0.0) return false;
    return true;
  }
  double t(index o) const { return shift[std::size_t(o)]; }
};

/// w'_o = factor_o w_o for each output filter o of w (O x ...), into `out`.
template <class T>
void scale_filters(const Tensor<T>& w, const std::vector<double>& factor, Tensor<T>& out) {
  const index O = w.dim(0), per = w.size() / O;
  for (index o = 0; o < O; ++o)
    for (index i = 0; i < per; ++i) out[o * per + i] = T(factor[std::size_t(o)] * double(w[o * per + i]));
}

/// b'_o = s_o b_o + t_o (b = 0 when `bias` is empty).
template <class T>
Tensor<T> folded_bias(const Tensor<T>& bias, const Affine& a) {
  Tensor<T> out(Shape{index(a.scale.size())});
  for (index o = 0; o < out.size(); ++o) out[o] = T(a.s(o) * (bias.empty() ? 0.0 : double(bias[o])) + a.t(o));
  return out;
}

/// A convolution followed by `bn`, as one convolution with a bias.
template <class T>
std::unique_ptr<Conv2d<T>> fold(const Conv2d<T>& conv, const BatchNorm2d<T>& bn) {
  const Affine a = Affine::of(bn);
  const ConvGeometry& g = conv.geometry();
  auto out = std::make_unique<Conv2d<T>>(conv.in_channels(), conv.out_channels(), g.kernel,
                                         Conv2dOptions{g.stride, g.padding, true});
  scale_filters(conv.weight(), a.scale, out->weight());
  out->bias() = folded_bias(conv.bias(), a);
  return out;
}

/// A copy of a convolution (the same weights, bias and geometry).
template <class T>
std::unique_ptr<Conv2d<T>> copy(const Conv2d<T>& conv) {
  const ConvGeometry& g = conv.geometry();
  auto out = std::make_unique<Conv2d<T>>(conv.in_channels(), conv.out_channels(), g.kernel,
                                         Conv2dOptions{g.stride, g.padding, conv.has_bias()});
  out->weight() = conv.weight();
  if (conv.has_bias()) out->bias() = conv.bias();
  return out;
}

/// Whether a SphereConv followed by an affine map folds into one SphereConv
/// (its response is linear in z).
template <class T>
bool foldable(const SphereConv2d<T>& conv) {
  return conv.linear_response();
}

/// A linear-response SphereConv followed by the affine map `a`: weights
/// (s_o / a_o) w_o (a_o the filter norm, 1 without it), identity response,
/// input norm as before, bias s_o b_o + t_o. With the identity map and no
/// filter norm or bias to fold, an exact copy.
template <class T>
SphereConv2d<T> fold(const SphereConv2d<T>& conv, const Affine& a) {
  const SphereConvOptions& o = conv.options();
  const bool plain_copy = !o.filter_norm && conv.bias().empty() && a.is_identity();
  SphereConvOptions folded{o.stride, o.padding, o.input_norm, false, AngularForm::identity, !plain_copy};
  SphereConv2d<T> out(conv.in_channels(), conv.out_channels(), conv.geometry().kernel, folded);
  std::vector<double> factor = a.scale;
  if (o.filter_norm) {
    Tensor<T> norms(Shape{conv.out_channels()});
    filter_norm<T>(conv.weight().view(), norms.view());  // the same a_o (eps included) as the layer divides by
    for (index c = 0; c < conv.out_channels(); ++c) factor[std::size_t(c)] /= double(norms[c]);
  }
  scale_filters(conv.weight(), factor, out.weight());
  if (!plain_copy) out.bias() = folded_bias(conv.bias(), a);
  return out;
}

/// A copy of any SphereConv (the same options, weights and bias).
template <class T>
std::unique_ptr<SphereConv2d<T>> copy(const SphereConv2d<T>& conv) {
  auto out = std::make_unique<SphereConv2d<T>>(conv.in_channels(), conv.out_channels(), conv.geometry().kernel,
                                               conv.options());
  out->weight() = conv.weight();
  if (!conv.bias().empty()) out->bias() = conv.bias();
  return out;
}

template <class T>
std::unique_ptr<BatchNorm2d<T>> copy(const BatchNorm2d<T>& bn) {
  auto out = std::make_unique<BatchNorm2d<T>>(bn.channels(), bn.options());
  out->gamma() = bn.gamma();
  out->beta() = bn.beta();
  out->running_mean() = bn.running_mean();
  out->running_variance() = bn.running_variance();
  return out;
}

/// The predictor with each convolution's BN folded into it.
template <class T>
SimilarityPredictor<T> fold(const SimilarityPredictor<T>& p, index kernel) {
  auto affine = [](const SphereConv2d<T>& conv, const BatchNorm2d<T>* bn) {
    return bn ? Affine::of(*bn) : Affine::identity(conv.out_channels());
  };
  require(foldable(p.conv1()) && foldable(p.conv2()), ErrorKind::argument,
          "deploy: the predictor's convolutions have a non-linear response (", p.describe(), ")");
  return SimilarityPredictor<T>(p.structure(), kernel, fold(p.conv1(), affine(p.conv1(), p.bn1())),
                                fold(p.conv2(), affine(p.conv2(), p.bn2())));
}

/// A dynamic layer followed by the affine map `a`: W' = s W, bias s b + t,
/// the predictor folded.
template <class T>
std::unique_ptr<DynamicNSConv2d<T>> fold(const DynamicNSConv2d<T>& layer, const Affine& a, bool keep_bias) {
  Tensor<T> weight(layer.weight().shape());
  scale_filters(layer.weight(), a.scale, weight);
  Tensor<T> bias = keep_bias ? folded_bias(layer.bias(), a) : Tensor<T>();
  return std::make_unique<DynamicNSConv2d<T>>(layer.structure(), layer.geometry().stride, std::move(weight),
                                              std::move(bias), fold(layer.predictor(), layer.geometry().kernel));
}

template <class T>
std::unique_ptr<GlobalSimilarity2d<T>> copy(const GlobalSimilarity2d<T>& block) {
  Rng unused(0);  // the constructor draws weights; all of them are overwritten
  auto out = std::make_unique<GlobalSimilarity2d<T>>(block.channels(), unused);
  out->f().weight() = block.f().weight();
  out->g().weight() = block.g().weight();
  out->h().weight() = block.h().weight();
  out->gamma_tensor()[0] = block.gamma();
  return out;
}

}  // namespace detail::deploying

/// The inference form of `net` (see the top of this file): BN folded into
/// the convolutions before it, static M folded into the weights, dynamic
/// layers kept with folded predictors. Fails (argument error) on a layer
/// type it does not know, naming it. `net` is not changed.
template <class T>
Sequential<T> deploy(const Sequential<T>& net) {
  namespace d = detail::deploying;
  Sequential<T> out;
  for (std::size_t i = 0; i < net.size(); ++i) {
    const Layer<T>& layer = net.layer(i);
    const std::string& name = net.name(i);
    const auto* bn = i + 1 < net.size() ? dynamic_cast<const BatchNorm2d<T>*>(&net.layer(i + 1)) : nullptr;
    bool folded_bn = false;
    if (const auto* conv = dynamic_cast<const Conv2d<T>*>(&layer)) {
      folded_bn = bn != nullptr;
      out.add(name, bn ? d::fold(*conv, *bn) : d::copy(*conv));
    } else if (const auto* ns = dynamic_cast<const StaticNSConv2d<T>*>(&layer)) {
      const Conv2d<T> plain = ns->to_conv2d();
      folded_bn = bn != nullptr;
      out.add(name, bn ? d::fold(plain, *bn) : d::copy(plain));
    } else if (const auto* sphere = dynamic_cast<const SphereConv2d<T>*>(&layer)) {
      if (d::foldable(*sphere)) {
        folded_bn = bn != nullptr;
        const d::Affine a = bn ? d::Affine::of(*bn) : d::Affine::identity(sphere->out_channels());
        out.add(name, std::make_unique<SphereConv2d<T>>(d::fold(*sphere, a)));
      } else {  // f(c) is not linear: nothing folds into it
        out.add(name, d::copy(*sphere));
      }
    } else if (const auto* dynamic = dynamic_cast<const DynamicNSConv2d<T>*>(&layer)) {
      folded_bn = bn != nullptr;
      const d::Affine a = bn ? d::Affine::of(*bn) : d::Affine::identity(dynamic->out_channels());
      out.add(name, d::fold(*dynamic, a, bn != nullptr || !dynamic->bias().empty()));
    } else if (const auto* norm = dynamic_cast<const BatchNorm2d<T>*>(&layer)) {
      out.add(name, d::copy(*norm));
    } else if (dynamic_cast<const ReLU<T>*>(&layer)) {
      out.add(name, std::make_unique<ReLU<T>>());
    } else if (const auto* pool = dynamic_cast<const MaxPool2d<T>*>(&layer)) {
      out.add(name, std::make_unique<MaxPool2d<T>>(pool->window(), pool->stride()));
    } else if (const auto* block = dynamic_cast<const GlobalSimilarity2d<T>*>(&layer)) {
      out.add(name, d::copy(*block));
    } else if (const auto* inner = dynamic_cast<const Sequential<T>*>(&layer)) {
      out.add(name, std::make_unique<Sequential<T>>(deploy(*inner)));
    } else {
      fail(ErrorKind::argument, cat("deploy: no inference form for layer '", name, "' (", layer.describe(), ")"));
    }
    if (folded_bn) ++i;  // the BN lives on in the layer just added
  }
  out.set_training(false);
  out.prepare_inference();
  return out;
}

/// The inference form of a model's network (CNN-9: the whole classifier;
/// Conv-4: the embedding, whose few-shot head stays with the model):
/// `deploy(load_model<float>(path))` deploys a model file.
template <class T>
Sequential<T> deploy(const Model<T>& model) {
  return deploy(model.network);
}

}  // namespace nsl
