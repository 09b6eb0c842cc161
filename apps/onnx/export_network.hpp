// apps/onnx/export_network.hpp — a deployed nsl network (nsl::deploy) as a
// standard ONNX model: opset 17, default-domain operators only, so that any
// ONNX runtime runs it. One function per layer type; docs/onnx.md explains
// each mapping and why the dynamic-NSL decomposition is exact.
//
//   Conv2d              Conv (weights, optional bias)
//   ReLU                Relu
//   MaxPool2d           MaxPool with explicit pads = TensorFlow 'same' (nsl/ops/pool.hpp):
//                       the padded cells never win in ONNX's MaxPool either
//   BatchNorm2d         BatchNormalization with the running statistics (one left unfolded)
//   SphereConv2d        c = Conv(x, W / a) / n,  n = Sqrt(Conv(x ∘ x, 1_{C x k x k}) + 1e-4),
//                       then the angular response f(c) and the bias:
//                         identity, cosine   f = c
//                         linear             f = 1 - 2 Acos(Clip(c, -1, 1)) / π
//                         sigmoid            f = κ (1 - u) / (1 + u),  u = Exp(θ / k - π / (2k)),
//                                            θ = Acos(Clip(c, -1, 1))
//   DynamicNSConv2d     G = predictor(x) (SphereConv, [BN], Relu, SphereConv, [BN]);
//                       Pad, k*k strided Slices = the shifted inputs x_r(p), stacked [N, K, C, Ho, Wo];
//                       diagonal:        V = X ∘ (1 + G)             (G as [N, K, 1, Ho, Wo])
//                       channel_shared:  V = (I + G(p)) X(p)         (MatMul, pixels as batch dimensions)
//                       then one 1x1 Conv of V with the weight permuted to V's channel order, and the bias
//   GlobalSimilarity2d  S = MatMul(Transpose(F), G), B = Softmax(S, axis 1), O = MatMul(H, B), y = γ O + x
//
// The graph reads "input" [N, C, S, S] (N symbolic) and ends in a Flatten:
// CNN-9's [N, classes, 1, 1] logits become "logits" [N, classes], Conv-4's
// N x 64 x 2 x 2 feature map becomes "embedding" [N, 256] (the vector its
// few-shot head compares, in the same order). A layer of any other type fails
// with one error naming it. `check_onnx_model` runs ONNX's own checker and
// its strict shape inference (which also confirms the declared output
// shape); `save_onnx_model` writes the model atomically (nsl/io/atomic_file.hpp).
#pragma once

#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/shape_inference/implementation.h>

#include <cmath>
#include <cstdint>
#include <exception>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "nsl/io/atomic_file.hpp"
#include "nsl/layers/batch_norm2d.hpp"
#include "nsl/layers/conv2d.hpp"
#include "nsl/layers/dynamic_ns_conv2d.hpp"
#include "nsl/layers/global_similarity2d.hpp"
#include "nsl/layers/max_pool2d.hpp"
#include "nsl/layers/relu.hpp"
#include "nsl/layers/sphere_conv2d.hpp"
#include "nsl/models/sequential.hpp"
#include "onnx/graph_builder.hpp"

namespace nsl::onnx_export {

inline constexpr int opset = 17;      ///< the default domain's operator set
inline constexpr int ir_version = 8;  ///< the IR version of ONNX 1.10-1.12, the one that goes with opset 17

/// A value of the graph and its shape [N, channels, height, width] (N symbolic).
struct Activation {
  std::string name;
  index channels = 0, height = 0, width = 0;
  Shape shape() const { return Shape{1, channels, height, width}; }
};

inline Dims dims_of(const Shape& s) {
  Dims d;
  for (int i = 0; i < s.rank(); ++i) d.push_back(s[i]);
  return d;
}
inline std::vector<float> values_of(const Tensor<float>& t) { return {t.data(), t.data() + t.size()}; }

/// Conv's attributes for a square kernel, stride and symmetric zero padding.
inline std::vector<Attribute> conv_attributes(const ConvGeometry& g) {
  return {Attribute::integers("kernel_shape", {g.kernel, g.kernel}),
          Attribute::integers("strides", {g.stride, g.stride}),
          Attribute::integers("pads", {g.padding, g.padding, g.padding, g.padding})};
}

/// A bias b (O) as an initializer of shape [O, 1, 1], which broadcasts over [N, O, H, W].
inline std::string channel_bias(GraphBuilder& b, const std::string& name, const Tensor<float>& bias) {
  return b.floats(name, {bias.size(), 1, 1}, values_of(bias));
}

// ---- the layers ---------------------------------------------------------------

/// y = W * x + b.
inline std::string export_conv2d(GraphBuilder& b, const std::string& name, const Conv2d<float>& conv,
                                 const Activation& x) {
  std::vector<std::string> inputs{x.name,
                                  b.floats(name + ".weight", dims_of(conv.weight().shape()), values_of(conv.weight()))};
  if (conv.has_bias()) inputs.push_back(b.floats(name + ".bias", {conv.out_channels()}, values_of(conv.bias())));
  return b.add("Conv", inputs, name, conv_attributes(conv.geometry()));
}

inline std::string export_relu(GraphBuilder& b, const std::string& name, const Activation& x) {
  return b.add("Relu", {x.name}, name);
}

/// 'same' max pooling: ONNX's explicit pads are TensorFlow's split (the
/// smaller half before), so ceil(H / s) outputs; ONNX's MaxPool never lets a
/// padded cell win, as nsl's does not.
inline std::string export_max_pool(GraphBuilder& b, const std::string& name, const MaxPool2d<float>& pool,
                                   const Activation& x) {
  const index k = pool.window(), s = pool.stride();
  auto pads = [&](index extent) {  // (before, after)
    const index total = std::max<index>((same_pool_output_extent(extent, s) - 1) * s + k - extent, 0);
    const index before = same_pool_padding_before(extent, k, s);
    return std::pair<index, index>{before, total - before};
  };
  const auto [top, bottom] = pads(x.height);
  const auto [left, right] = pads(x.width);
  return b.add("MaxPool", {x.name}, name,
               {Attribute::integers("kernel_shape", {k, k}), Attribute::integers("strides", {s, s}),
                Attribute::integers("pads", {top, left, bottom, right})});
}

/// Evaluation-mode BN: γ (x - running mean) / sqrt(running variance + eps) + β.
inline std::string export_batch_norm(GraphBuilder& b, const std::string& name, const BatchNorm2d<float>& bn,
                                     const Activation& x) {
  const Dims c{bn.channels()};
  return b.add(
      "BatchNormalization",
      {x.name, b.floats(name + ".gamma", c, values_of(bn.gamma())), b.floats(name + ".beta", c, values_of(bn.beta())),
       b.floats(name + ".running_mean", c, values_of(bn.running_mean())),
       b.floats(name + ".running_variance", c, values_of(bn.running_variance()))},
      name, {Attribute::real("epsilon", float(bn.options().eps))});
}

/// n(p) = sqrt(sum of x² over the k x k x C window of output pixel p + eps)
/// (nsl/ops/sphere.hpp, local_input_norm): a convolution of x ∘ x with one
/// all-ones filter and the layer's geometry; the zero padding adds nothing,
/// as nsl's clipped windows do not. Shape [N, 1, Ho, Wo].
inline std::string local_input_norm(GraphBuilder& b, const std::string& name, const Activation& x,
                                    const ConvGeometry& g) {
  const std::string squares = b.add("Mul", {x.name, x.name}, name + "/x_squared");
  const std::string ones = b.floats(name + "/window_ones", {1, x.channels, g.kernel, g.kernel},
                                    std::vector<float>(std::size_t(x.channels * g.slots()), 1.0f));
  const std::string sums = b.add("Conv", {squares, ones}, name + "/window_sum_of_squares", conv_attributes(g));
  const std::string eps = b.scalar(name + "/norm_eps", float(sphere_norm_eps));
  return b.add("Sqrt", {b.add("Add", {sums, eps}, name + "/plus_eps")}, name + "/input_norm");
}

/// f(c) of the angular forms (nsl/ops/sphere.hpp, angular_response), c clamped to [-1, 1] before Acos.
inline std::string angular_response(GraphBuilder& b, const std::string& name, AngularForm form, const std::string& c) {
  if (form == AngularForm::identity || form == AngularForm::cosine) return c;
  const std::string clipped =
      b.add("Clip", {c, b.scalar(name + "/minus_one", -1.0f), b.scalar(name + "/one", 1.0f)}, name + "/clipped_cosine");
  const std::string theta = b.add("Acos", {clipped}, name + "/angle");
  if (form == AngularForm::linear) {  // 1 - 2θ/π
    const std::string scaled =
        b.add("Mul", {theta, b.scalar(name + "/minus_2_over_pi", float(-2.0 / angular_pi))}, name + "/scaled_angle");
    return b.add("Add", {scaled, b.scalar(name + "/linear_one", 1.0f)}, name + "/response");
  }
  // sigmoid: u = exp(θ/k - π/(2k)), f = κ (1 - u) / (1 + u)
  const double k = sigmoid_form_k;
  const std::string exponent =
      b.add("Add",
            {b.add("Mul", {theta, b.scalar(name + "/inverse_k", float(1.0 / k))}, name + "/angle_over_k"),
             b.scalar(name + "/minus_pi_over_2k", float(-angular_pi / (2 * k)))},
            name + "/exponent");
  const std::string u = b.add("Exp", {exponent}, name + "/u");
  const std::string one = b.scalar(name + "/sigmoid_one", 1.0f);
  const std::string numerator = b.add(
      "Mul", {b.add("Sub", {one, u}, name + "/one_minus_u"), b.scalar(name + "/kappa", float(sigmoid_form_kappa()))},
      name + "/kappa_one_minus_u");
  return b.add("Div", {numerator, b.add("Add", {one, u}, name + "/one_plus_u")}, name + "/response");
}

/// y = f(z / (a_o n(p))) + b_o with z = W * x (no bias): a_o is folded into
/// the weights here (w_o / a_o, computed in double), n(p) is computed by the
/// graph (local_input_norm). A SphereConv without norms and with the
/// identity response is a plain Conv with the bias.
inline std::string export_sphere_conv(GraphBuilder& b, const std::string& name, const SphereConv2d<float>& conv,
                                      const Activation& x) {
  const SphereConvOptions& o = conv.options();
  const Tensor<float>& w = conv.weight();
  const index O = conv.out_channels(), per_filter = w.size() / O;
  std::vector<float> weight = values_of(w);
  if (o.filter_norm)
    for (index f = 0; f < O; ++f) {  // a_o = sqrt(||w_o||² + eps), as nsl's filter_norm
      double squares = sphere_norm_eps;
      for (index i = 0; i < per_filter; ++i) squares += double(w[f * per_filter + i]) * double(w[f * per_filter + i]);
      const double a = std::sqrt(squares);
      for (index i = 0; i < per_filter; ++i) {
        float& v = weight[std::size_t(f * per_filter + i)];
        v = float(double(v) / a);
      }
    }
  const std::string w_name =
      b.floats(name + (o.filter_norm ? ".weight_over_filter_norm" : ".weight"), dims_of(w.shape()), weight);
  if (conv.is_plain()) {
    std::vector<std::string> inputs{x.name, w_name};
    if (!conv.bias().empty()) inputs.push_back(b.floats(name + ".bias", {O}, values_of(conv.bias())));
    return b.add("Conv", inputs, name, conv_attributes(conv.geometry()));
  }
  std::string c = b.add("Conv", {x.name, w_name}, name + "/z", conv_attributes(conv.geometry()));
  if (o.input_norm) c = b.add("Div", {c, local_input_norm(b, name, x, conv.geometry())}, name + "/cosine");
  c = angular_response(b, name, o.form, c);
  if (!conv.bias().empty()) c = b.add("Add", {c, channel_bias(b, name + ".bias", conv.bias())}, name);
  return c;
}

/// G = conv2(ReLU(conv1(x) [, bn1])) [, bn2] (nsl/layers/similarity_predictor.hpp):
/// N x R x Ho x Wo, R = K (diagonal) or K*K (channel_shared).
inline std::string export_predictor(GraphBuilder& b, const std::string& name, const SimilarityPredictor<float>& p,
                                    const Activation& x) {
  const Shape hidden_shape = p.conv1().output_shape(x.shape());
  std::string h = export_sphere_conv(b, name + ".conv1", p.conv1(), x);
  const Activation hidden{h, hidden_shape[1], hidden_shape[2], hidden_shape[3]};
  if (p.bn1()) h = export_batch_norm(b, name + ".bn1", *p.bn1(), hidden);
  h = b.add("Relu", {h}, name + ".relu");
  std::string g = export_sphere_conv(b, name + ".conv2", p.conv2(), {h, hidden.channels, hidden.height, hidden.width});
  if (p.bn2()) {
    const Shape g_shape = p.conv2().output_shape(hidden.shape());
    g = export_batch_norm(b, name + ".bn2", *p.bn2(), {g, g_shape[1], g_shape[2], g_shape[3]});
  }
  return g;
}

/// y_o(p) = b_o + Σ_i Σ_{a,r} w_{o,i,a} M_{a,r}(p) x_{i,r}(p),  M(p) = I + G(p)
/// (nsl/ops/dynamic_conv2d.hpp, dynamic_conv2d_forward_reference), from
/// standard operators:
///
///   x_r = Slice(Pad(x, k/2), offset (r / k, r % k), step s)     [N, C, Ho, Wo], r = 0..K-1
///   X   = Reshape(Concat_r x_r, [N, K, C, Ho, Wo])               X[n, r, i, p] = x_{i,r}(p)
///   diagonal:        V = X ∘ Unsqueeze(1 + G, 2)                 V[n, a, i, p] = (1 + g_a(p)) x_{i,a}(p)
///   channel_shared:  V = Transpose(MatMul(I + G(p), X(p)))       V[n, a, i, p] = Σ_r M_{a,r}(p) x_{i,r}(p)
///                    with G(p) = G[n, a K + r, p] as a K x K matrix and the pixels as batch dimensions
///   y   = Conv1x1(Reshape(V, [N, K C, Ho, Wo]), W', b)           W'[o, a C + i] = w[o, i, a / k, a % k]
///
/// so y_o(p) = b_o + Σ_{a,i} w_{o,i,a} V[a, i](p), the formula above.
inline std::string export_dynamic_ns_conv(GraphBuilder& b, const std::string& name, const DynamicNSConv2d<float>& layer,
                                          const Activation& x) {
  const ConvGeometry& g = layer.geometry();
  const Structure structure = layer.structure();
  require(structure == Structure::diagonal || structure == Structure::channel_shared, ErrorKind::argument,
          "onnx export: layer '", name, "': no ONNX form for the ", to_string(structure), " structure");
  const index k = g.kernel, K = g.slots(), s = g.stride, pad = g.padding, C = x.channels;
  const index Ho = g.output_extent(x.height), Wo = g.output_extent(x.width), O = layer.out_channels();
  const std::string similarity = export_predictor(b, name + ".predictor", layer.predictor(), x);

  // The shifted inputs x_r, stacked.
  const std::string padded =
      b.add("Pad", {x.name, b.int64s(name + "/pads", {0, 0, pad, pad, 0, 0, pad, pad})}, name + "/padded");
  const std::string axes = b.int64s(name + "/slice_axes", {2, 3}), steps = b.int64s(name + "/slice_steps", {s, s});
  std::vector<std::string> shifted;
  for (index r = 0; r < K; ++r) {
    const index di = r / k, dj = r % k;
    shifted.push_back(
        b.add("Slice",
              {padded, b.int64s(cat(name, "/starts_", r), {di, dj}),
               b.int64s(cat(name, "/ends_", r), {di + (Ho - 1) * s + 1, dj + (Wo - 1) * s + 1}), axes, steps},
              cat(name, "/x_", r)));
  }
  const std::string stacked = b.add("Reshape",
                                    {b.add("Concat", shifted, name + "/x_concat", {Attribute::integer("axis", 1)}),
                                     b.int64s(name + "/stacked_shape", {0, K, C, Ho, Wo})},
                                    name + "/x_stacked");

  // V = M(p) X(p).
  std::string transformed;
  if (structure == Structure::diagonal) {
    const std::string gain = b.add("Add", {similarity, b.scalar(name + "/one", 1.0f)}, name + "/one_plus_g");
    const std::string gain5 = b.add("Unsqueeze", {gain, b.int64s(name + "/gain_axes", {2})}, name + "/gain");
    transformed = b.add("Mul", {stacked, gain5}, name + "/v");
  } else {
    const Dims to_pixels{0, 3, 4, 1, 2}, from_pixels{0, 3, 4, 1, 2};  // [N,A,B,Ho,Wo] <-> [N,Ho,Wo,A,B]
    const std::string g5 =
        b.add("Reshape", {similarity, b.int64s(name + "/g_shape", {0, K, K, Ho, Wo})}, name + "/g_matrix");
    std::vector<float> identity(std::size_t(K * K), 0.0f);
    for (index a = 0; a < K; ++a) identity[std::size_t(a * K + a)] = 1.0f;
    const std::string m =
        b.add("Add",
              {b.add("Transpose", {g5}, name + "/g_per_pixel", {Attribute::integers("perm", to_pixels)}),
               b.floats(name + "/identity", {K, K}, identity)},
              name + "/m");
    const std::string x_per_pixel =
        b.add("Transpose", {stacked}, name + "/x_per_pixel", {Attribute::integers("perm", to_pixels)});
    const std::string v_per_pixel = b.add("MatMul", {m, x_per_pixel}, name + "/v_per_pixel");
    transformed = b.add("Transpose", {v_per_pixel}, name + "/v", {Attribute::integers("perm", from_pixels)});
  }
  const std::string flat =
      b.add("Reshape", {transformed, b.int64s(name + "/v_shape", {0, K * C, Ho, Wo})}, name + "/v_channels");

  // The 1x1 convolution, its weight in V's channel order a C + i.
  const Tensor<float>& w = layer.weight();
  std::vector<float> permuted(std::size_t(O * K * C));
  for (index o = 0; o < O; ++o)
    for (index i = 0; i < C; ++i)
      for (index a = 0; a < K; ++a) permuted[std::size_t((o * K + a) * C + i)] = w[(o * C + i) * K + a];
  std::vector<std::string> inputs{flat, b.floats(name + ".weight_by_slot", {O, K * C, 1, 1}, permuted)};
  if (!layer.bias().empty()) inputs.push_back(b.floats(name + ".bias", {O}, values_of(layer.bias())));
  return b.add("Conv", inputs, name, {Attribute::integers("kernel_shape", {1, 1})});
}

/// y = γ H softmax_i(Fᵀ G) + x per image (nsl/ops/attention.hpp), with the
/// three projections cosine 1x1 SphereConvs: positions flattened to
/// P = H W, S[n, i, j] = f_i · g_j normalised over i (Softmax axis 1).
inline std::string export_global_similarity(GraphBuilder& b, const std::string& name,
                                            const GlobalSimilarity2d<float>& block, const Activation& x) {
  const index C = x.channels, keys = block.f().out_channels(), P = x.height * x.width;
  auto flattened = [&](const std::string& projection, const SphereConv2d<float>& conv, index channels) {
    const std::string y = export_sphere_conv(b, cat(name, ".", projection), conv, x);
    return b.add("Reshape", {y, b.int64s(cat(name, "/", projection, "_shape"), {0, channels, P})},
                 cat(name, "/", projection, "_flat"));
  };
  const std::string f = flattened("f", block.f(), keys), g = flattened("g", block.g(), keys);
  const std::string h = flattened("h", block.h(), C);
  const std::string f_t = b.add("Transpose", {f}, name + "/f_transposed", {Attribute::integers("perm", {0, 2, 1})});
  const std::string scores = b.add("MatMul", {f_t, g}, name + "/scores");
  const std::string attention = b.add("Softmax", {scores}, name + "/attention", {Attribute::integer("axis", 1)});
  const std::string attended = b.add("MatMul", {h, attention}, name + "/attended");
  const std::string image = b.add("Reshape", {attended, b.int64s(name + "/image_shape", {0, C, x.height, x.width})},
                                  name + "/attended_image");
  const std::string scaled = b.add("Mul", {image, b.scalar(name + ".gamma", block.gamma())}, name + "/scaled");
  return b.add("Add", {scaled, x.name}, name);
}

// ---- the network -----------------------------------------------------------------

inline Activation export_sequential(GraphBuilder& b, const std::string& prefix, const Sequential<float>& net,
                                    Activation x);

/// One layer of the network (a nested Sequential's layers one by one).
inline Activation export_layer(GraphBuilder& b, const std::string& name, const Layer<float>& layer,
                               const Activation& x) {
  std::string y;
  if (const auto* conv = dynamic_cast<const Conv2d<float>*>(&layer)) y = export_conv2d(b, name, *conv, x);
  else if (dynamic_cast<const ReLU<float>*>(&layer)) y = export_relu(b, name, x);
  else if (const auto* pool = dynamic_cast<const MaxPool2d<float>*>(&layer)) y = export_max_pool(b, name, *pool, x);
  else if (const auto* bn = dynamic_cast<const BatchNorm2d<float>*>(&layer)) y = export_batch_norm(b, name, *bn, x);
  else if (const auto* sphere = dynamic_cast<const SphereConv2d<float>*>(&layer))
    y = export_sphere_conv(b, name, *sphere, x);
  else if (const auto* dynamic = dynamic_cast<const DynamicNSConv2d<float>*>(&layer))
    y = export_dynamic_ns_conv(b, name, *dynamic, x);
  else if (const auto* block = dynamic_cast<const GlobalSimilarity2d<float>*>(&layer))
    y = export_global_similarity(b, name, *block, x);
  else if (const auto* inner = dynamic_cast<const Sequential<float>*>(&layer))
    return export_sequential(b, name + ".", *inner, x);
  else
    fail(ErrorKind::argument, cat("onnx export: layer '", name, "' (", layer.describe(),
                                  ") has no ONNX form (deploy the network first: nsl::deploy)"));
  const Shape out = layer.output_shape(x.shape());
  return {y, out[1], out[2], out[3]};
}

inline Activation export_sequential(GraphBuilder& b, const std::string& prefix, const Sequential<float>& net,
                                    Activation x) {
  for (std::size_t i = 0; i < net.size(); ++i) x = export_layer(b, prefix + net.name(i), net.layer(i), x);
  return x;
}

/// What the exported graph reads and writes, and what to record in it.
struct GraphSignature {
  index in_channels = 1;
  index input_size = 28;                                      ///< H = W of the input
  std::string output = "logits";                              ///< the flattened output's name
  std::string description;                                    ///< the model's doc_string
  std::vector<std::pair<std::string, std::string>> metadata;  ///< metadata_props
};

/// The ONNX model of `net` (a deployed network: see the top of this file).
inline onnx::ModelProto network_to_onnx(const Sequential<float>& net, const GraphSignature& signature,
                                        const std::string& producer_version = "") {
  onnx::ModelProto model;
  model.set_ir_version(ir_version);
  onnx::OperatorSetIdProto& set = *model.add_opset_import();
  set.set_domain("");
  set.set_version(opset);
  model.set_producer_name("nsl");
  if (!producer_version.empty()) model.set_producer_version(producer_version);
  model.set_doc_string(signature.description);
  for (const auto& [key, value] : signature.metadata) {
    onnx::StringStringEntryProto& entry = *model.add_metadata_props();
    entry.set_key(key);
    entry.set_value(value);
  }
  onnx::GraphProto& graph = *model.mutable_graph();
  graph.set_name("nsl");
  GraphBuilder b(graph);
  const index size = signature.input_size;
  b.input("input", {1, signature.in_channels, size, size}, {{0, "N"}});
  const Activation last = export_sequential(b, "", net, {"input", signature.in_channels, size, size});
  const std::string output = b.add("Flatten", {last.name}, signature.output, {Attribute::integer("axis", 1)});
  require(output == signature.output, ErrorKind::argument, "onnx export: a layer's value is named '", signature.output,
          "', the graph output's name");
  b.output(output, {1, last.channels * last.height * last.width}, {{0, "N"}});
  return model;
}

/// `text` on one line: newlines (the checker's messages have several) become "; ".
inline std::string one_line(const std::string& text) {
  std::string line;
  for (char c : text) {
    if (c == '\n' || c == '\r') {
      if (!line.empty() && line.back() != ' ') line += "; ";
    } else {
      line += c;
    }
  }
  while (!line.empty() && (line.back() == ' ' || line.back() == ';')) line.pop_back();
  return line;
}

/// ONNX's checker (onnx::checker::check_model: the graph is well formed, every
/// node is a known operator of opset 17 with valid attributes) and its strict
/// shape inference on a copy (every node's input shapes fit, and the
/// inferred output shape matches the declared one). Fails with a format
/// error quoting ONNX's message.
inline void check_onnx_model(const onnx::ModelProto& model) {
  const char* stage = "checker";
  try {
    onnx::checker::check_model(model);
    stage = "shape inference";
    onnx::ModelProto inferred = model;
    onnx::shape_inference::InferShapes(inferred, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions{true, 1, true});
  } catch (const std::exception& e) {
    fail(ErrorKind::format, cat("onnx export: ONNX's ", stage, " rejects the graph: ", one_line(e.what())));
  }
}

/// Serialises `model` to `path` through a temporary file beside it, renamed
/// over `path` only once all bytes are written (no partial file on failure).
inline void save_onnx_model(const std::string& op, const std::string& path, const onnx::ModelProto& model) {
  std::string bytes;
  require(model.SerializeToString(&bytes), ErrorKind::format, op, ": ", path, ": protobuf cannot serialise the model (",
          model.ByteSizeLong(), " bytes; the limit is 2 GiB)");
  write_file_atomically(op.c_str(), path,
                        [&](std::ofstream& out) { out.write(bytes.data(), std::streamsize(bytes.size())); });
}

}  // namespace nsl::onnx_export
