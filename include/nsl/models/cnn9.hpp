// nsl/models/cnn9.hpp — the reference network of NSL.md §5 ("CNN-9").
//
//   root:    3x3 plain conv C_in -> 32, BN, ReLU
//   stage 1: 3 similarity convs 32 channels, each BN + ReLU; 2x2 max-pool stride 2 ('same')
//   stage 2: 3 similarity convs 64 channels, each BN + ReLU; max-pool
//   stage 3: 3 similarity convs 128 channels, each BN + ReLU; max-pool
//   score:   a 'valid' conv 128 -> classes over the whole remaining map
//            (4x4 for 32x32 and 28x28 inputs: 32->16->8->4, 28->14->7->4)
//
// The similarity conv is the variant under test: plain (Conv2d), static_dns,
// static_uns (StaticNSConv2d), dynamic_dns, dynamic_uns, dynamic_dns_sphere
// (DynamicNSConv2d with the matching predictor); make_similarity_conv builds
// one alone. Convolutions before BN have no bias; the score conv has one.
// Output: N x classes x 1 x 1 logits.
//
// sphere_attention is the attention SphereNet of the paper's appendix B
// (NSL.md §6): the similarity convs are cosine SphereConvs, the stages are
// 128/192/256 channels wide (Cnn9Options::attention_widths), and a global
// neural similarity block (GlobalSimilarity2d) follows each pooling stage.
// Its training adds the blocks' orthogonality penalty (`attention_blocks`
// finds them). CPU only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nsl/layers/batch_norm2d.hpp"
#include "nsl/layers/conv2d.hpp"
#include "nsl/layers/dynamic_ns_conv2d.hpp"
#include "nsl/layers/global_similarity2d.hpp"
#include "nsl/layers/max_pool2d.hpp"
#include "nsl/layers/relu.hpp"
#include "nsl/layers/sphere_conv2d.hpp"
#include "nsl/layers/static_ns_conv2d.hpp"
#include "nsl/models/sequential.hpp"

namespace nsl {

enum class Variant { plain, static_dns, static_uns, dynamic_dns, dynamic_uns, dynamic_dns_sphere, sphere_attention };

inline const char* to_string(Variant v) {
  switch (v) {
    case Variant::plain: return "plain";
    case Variant::static_dns: return "static_dns";
    case Variant::static_uns: return "static_uns";
    case Variant::dynamic_dns: return "dynamic_dns";
    case Variant::dynamic_uns: return "dynamic_uns";
    case Variant::dynamic_dns_sphere: return "dynamic_dns_sphere";
    case Variant::sphere_attention: return "sphere_attention";
  }
  return "?";
}

inline Variant parse_variant(const std::string& name) {
  for (Variant v : {Variant::plain, Variant::static_dns, Variant::static_uns, Variant::dynamic_dns,
                    Variant::dynamic_uns, Variant::dynamic_dns_sphere, Variant::sphere_attention})
    if (name == to_string(v)) return v;
  fail(ErrorKind::argument, cat("unknown variant '", name,
                                "' (expected plain, static_dns, static_uns, dynamic_dns, dynamic_uns, "
                                "dynamic_dns_sphere or sphere_attention)"));
}

/// How make_similarity_conv builds a layer, besides its variant and channels.
struct SimilarityConvOptions {
  BatchNormOptions bn{};        ///< the dynamic variants' predictor BatchNorm
  index predictor_hidden = 0;   ///< 0: the reference width (64 DNS, 128 UNS)
  /// The authors' quirk: static DNS starts with m on slots 0, 4, 8 only
  /// (not our default, which starts at the plain convolution, m = 1).
  bool static_dns_identity_pattern = false;
  /// Start of the predictors' last BN scale (PredictorOptions::last_bn_scale).
  double predictor_last_bn_scale = 1.0;
};

struct Cnn9Options {
  index input_size = 28;                 ///< H = W of the input images (sets the score kernel)
  index widths[3] = {32, 64, 128};       ///< channels of the three stages
  index attention_widths[3] = {128, 192, 256};  ///< sphere_attention's stages (the paper's SphereNet)
  BatchNormOptions bn{};                 ///< eps 1e-3, decay 0.999
  index predictor_hidden = 0;            ///< 0: the reference width (64 DNS, 128 UNS)
  /// The authors' quirk: static DNS starts with m on slots 0, 4, 8 only
  /// (not our default, which starts at the plain convolution, m = 1).
  bool static_dns_identity_pattern = false;
  /// Start of the predictors' last BN scale (PredictorOptions::last_bn_scale;
  /// a start only: a model file keeps the trained values, not this option).
  double predictor_last_bn_scale = 1.0;

  /// The options of CNN-9's similarity convolutions.
  SimilarityConvOptions similarity_conv_options() const {
    return {bn, predictor_hidden, static_dns_identity_pattern, predictor_last_bn_scale};
  }
};

/// Whether the similarity layers of `v` have a predictor that ends in a
/// BatchNorm: the layers whose start predictor_last_bn_scale sets.
inline bool has_predictor_batch_norm(Variant v) {
  switch (v) {
    case Variant::dynamic_dns: return PredictorOptions::dns().batch_norm;
    case Variant::dynamic_uns: return PredictorOptions::uns().batch_norm;
    case Variant::dynamic_dns_sphere: return PredictorOptions::dns_sphere().batch_norm;
    default: return false;
  }
}

/// One 3x3, stride 1, 'same', bias-free similarity convolution from `in` to
/// `out` channels on device D: the layer of `v` that CNN-9 and Conv-4 put
/// where the variant under test goes. plain: Conv2d; static_dns / static_uns:
/// StaticNSConv2d with a diagonal / channel-shared M; dynamic_dns /
/// dynamic_uns / dynamic_dns_sphere: DynamicNSConv2d with the matching
/// SimilarityPredictor; sphere_attention: a cosine SphereConv2d.
template <class T, class D = Cpu>
std::unique_ptr<Layer<T, D>> make_similarity_conv(Variant v, index in, index out, const SimilarityConvOptions& o,
                                                  Rng& rng) {
  const Conv2dOptions same{1, 1, false};
  auto dynamic = [&](Structure s, PredictorOptions p) {
    if (o.predictor_hidden > 0) p.hidden = o.predictor_hidden;
    p.bn = o.bn;
    p.last_bn_scale = o.predictor_last_bn_scale;
    return std::make_unique<DynamicNSConv2d<T, D>>(in, out, 3, s, DynamicNSConvOptions{1, false, p}, rng);
  };
  switch (v) {
    case Variant::plain: return std::make_unique<Conv2d<T, D>>(in, out, 3, same, rng);
    case Variant::static_dns: {
      auto layer = std::make_unique<StaticNSConv2d<T, D>>(in, out, 3, Structure::diagonal, same, rng);
      if (o.static_dns_identity_pattern) {
        Tensor<T> pattern(layer->similarity().shape());
        for (index r = 0; r < 9; ++r) pattern[r] = (r % 4 == 0) ? T(1) : T(0);
        assign_from_host<T>(pattern.view(), layer->similarity().view());
      }
      return layer;
    }
    case Variant::static_uns:
      return std::make_unique<StaticNSConv2d<T, D>>(in, out, 3, Structure::channel_shared, same, rng);
    case Variant::dynamic_dns: return dynamic(Structure::diagonal, PredictorOptions::dns());
    case Variant::dynamic_uns: return dynamic(Structure::channel_shared, PredictorOptions::uns());
    case Variant::dynamic_dns_sphere: return dynamic(Structure::diagonal, PredictorOptions::dns_sphere());
    case Variant::sphere_attention:
      return std::make_unique<SphereConv2d<T, D>>(in, out, 3, SphereConvOptions{1, 1, true, true, AngularForm::cosine},
                                                  rng);
  }
  fail(ErrorKind::argument, "make_similarity_conv: unknown variant");
}

/// Builds CNN-9 for `variant` on in_channels x input_size x input_size images,
/// on device D (the same parameters for the same seed on every device).
template <class T, class D = Cpu>
Sequential<T, D> cnn9(Variant variant, index in_channels, index classes, Rng& rng, const Cnn9Options& o = {}) {
  require(in_channels >= 1 && classes >= 2, ErrorKind::argument, "cnn9: expected in_channels >= 1 and classes >= 2, got ",
          in_channels, " and ", classes);
  require(o.input_size >= 1, ErrorKind::argument, "cnn9: input_size must be >= 1, got ", o.input_size);
  const bool attention = variant == Variant::sphere_attention;
  if constexpr (!is_cpu_v<D>)
    require(!attention, ErrorKind::device, "cnn9: sphere_attention runs on the CPU only (GlobalSimilarity2d has no ",
            D::name, " version yet)");
  const index* widths = attention ? o.attention_widths : o.widths;
  const SimilarityConvOptions similarity = o.similarity_conv_options();
  Sequential<T, D> net;
  net.add("root.conv", std::make_unique<Conv2d<T, D>>(in_channels, widths[0], 3, Conv2dOptions{1, 1, false}, rng));
  net.add("root.bn", std::make_unique<BatchNorm2d<T, D>>(widths[0], o.bn));
  net.add("root.relu", std::make_unique<ReLU<T, D>>());
  index channels = widths[0], size = o.input_size;
  for (int stage = 0; stage < 3; ++stage) {
    const std::string prefix = cat("stage", stage + 1, ".");
    for (int i = 1; i <= 3; ++i) {
      net.add(cat(prefix, "conv", i), make_similarity_conv<T, D>(variant, channels, widths[stage], similarity, rng));
      net.add(cat(prefix, "bn", i), std::make_unique<BatchNorm2d<T, D>>(widths[stage], o.bn));
      net.add(cat(prefix, "relu", i), std::make_unique<ReLU<T, D>>());
      channels = widths[stage];
    }
    net.add(prefix + "pool", std::make_unique<MaxPool2d<T, D>>());
    if (attention) net.add(prefix + "attention", std::make_unique<GlobalSimilarity2d<T, D>>(channels, rng));
    size = (size + 1) / 2;
  }
  net.add("score", std::make_unique<Conv2d<T, D>>(channels, classes, size, Conv2dOptions{1, 0, true}, rng));
  return net;
}

/// The global similarity blocks of `net` (sphere_attention's, for the
/// orthogonality penalty); empty for the other variants.
template <class T, class D>
std::vector<GlobalSimilarity2d<T, D>*> attention_blocks(Sequential<T, D>& net) {
  std::vector<GlobalSimilarity2d<T, D>*> blocks;
  for (std::size_t i = 0; i < net.size(); ++i)
    if (auto* b = dynamic_cast<GlobalSimilarity2d<T, D>*>(&net.layer(i))) blocks.push_back(b);
  return blocks;
}

}  // namespace nsl
