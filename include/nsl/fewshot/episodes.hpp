// nsl/fewshot/episodes.hpp — N-way K-shot episodes drawn from a glyph set
// (nsl/data/glyphs.hpp).
//
// An episode picks `ways` distinct classes of a pool (one split's classes)
// and, for each, shots + queries distinct renders: the first `shots` are its
// support examples, the rest its queries. `images` holds them as the head
// layout of nsl/fewshot/heads.hpp wants: the support set class-major (row
// k*shots + j), then the queries class-major; query row i has label
// i / queries. Pixels are the set's bytes as floats in [0, 1] (ink = 1).
// The same generator state gives the same episode.
#pragma once

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "nsl/core/random.hpp"
#include "nsl/data/glyphs.hpp"

namespace nsl {

struct EpisodeSpec {
  index ways = 5;
  index shots = 1;
  index queries = 15;  ///< per class
};

struct Episode {
  Tensor<float> images;           ///< (ways*shots + ways*queries) x 1 x size x size
  std::vector<int> labels;        ///< of the queries, in [0, ways)
  std::vector<index> classes;     ///< the set's class of each way
  std::vector<index> rows;        ///< the set's image (class * renders + render) of each row of `images`
};

/// Fails unless `spec` can be drawn from `pool` of `set`.
inline void check_episode_spec(const GlyphSet& set, const std::vector<index>& pool, const EpisodeSpec& spec) {
  require(spec.ways >= 2 && spec.shots >= 1 && spec.queries >= 1, ErrorKind::argument,
          "episode: expected ways >= 2, shots >= 1 and queries >= 1, got ", spec.ways, ", ", spec.shots, ", ",
          spec.queries);
  require(spec.ways <= static_cast<index>(pool.size()), ErrorKind::argument, "episode: ", spec.ways,
          " ways, but the pool has ", pool.size(), " classes");
  require(spec.shots + spec.queries <= set.renders, ErrorKind::argument, "episode: ", spec.shots, " shots + ",
          spec.queries, " queries per class, but the set has ", set.renders, " renders per class");
}

/// The first `count` entries of a seeded partial Fisher-Yates shuffle of 0..n-1.
inline std::vector<index> sample_without_replacement(index n, index count, Rng& rng) {
  std::vector<index> all(static_cast<std::size_t>(n));
  for (index i = 0; i < n; ++i) all[static_cast<std::size_t>(i)] = i;
  for (index i = 0; i < count; ++i) {
    const index j = i + static_cast<index>(rng.below(static_cast<std::uint64_t>(n - i)));
    std::swap(all[static_cast<std::size_t>(i)], all[static_cast<std::size_t>(j)]);
  }
  all.resize(static_cast<std::size_t>(count));
  return all;
}

/// Draws an episode of `spec` from the classes in `pool` into `out` (reusing
/// its storage); with_images = false fills only classes, rows and labels.
inline void sample_episode(const GlyphSet& set, const std::vector<index>& pool, const EpisodeSpec& spec, Rng& rng,
                           Episode& out, bool with_images = true) {
  check_episode_spec(set, pool, spec);
  const index per_class = spec.shots + spec.queries;
  out.classes.clear();
  for (index i : sample_without_replacement(static_cast<index>(pool.size()), spec.ways, rng))
    out.classes.push_back(pool[static_cast<std::size_t>(i)]);
  std::vector<std::vector<index>> renders;
  for (index k = 0; k < spec.ways; ++k) renders.push_back(sample_without_replacement(set.renders, per_class, rng));
  out.rows.clear();
  out.labels.clear();
  for (index k = 0; k < spec.ways; ++k)
    for (index j = 0; j < spec.shots; ++j)
      out.rows.push_back(out.classes[static_cast<std::size_t>(k)] * set.renders + renders[static_cast<std::size_t>(k)][static_cast<std::size_t>(j)]);
  for (index k = 0; k < spec.ways; ++k)
    for (index j = spec.shots; j < per_class; ++j) {
      out.rows.push_back(out.classes[static_cast<std::size_t>(k)] * set.renders + renders[static_cast<std::size_t>(k)][static_cast<std::size_t>(j)]);
      out.labels.push_back(static_cast<int>(k));
    }
  if (!with_images) return;
  const index pixels = set.size * set.size;
  out.images.resize(Shape{static_cast<index>(out.rows.size()), 1, set.size, set.size});
  for (std::size_t i = 0; i < out.rows.size(); ++i) {
    const std::uint8_t* src = set.pixels.data() + static_cast<std::size_t>(out.rows[i] * pixels);
    float* dst = out.images.data() + static_cast<index>(i) * pixels;
    for (index p = 0; p < pixels; ++p) dst[p] = float(src[p]) * (1.0f / 255.0f);
  }
}

/// Images `first` .. first + count - 1 of `set` (class * renders + render) as
/// count x 1 x size x size floats in [0, 1].
inline void gather_glyph_images(const GlyphSet& set, index first, index count, Tensor<float>& out) {
  const index pixels = set.size * set.size;
  out.resize(Shape{count, 1, set.size, set.size});
  const std::uint8_t* src = set.pixels.data() + static_cast<std::size_t>(first * pixels);
  for (index i = 0; i < count * pixels; ++i) out[i] = float(src[i]) * (1.0f / 255.0f);
}

/// Mean accuracy and the half-width of its 95% confidence interval
/// (1.96 standard errors of the per-episode accuracies).
struct AccuracyInterval {
  double mean = 0.0, ci95 = 0.0;
  index episodes = 0;
};

inline AccuracyInterval accuracy_interval(const std::vector<double>& per_episode) {
  AccuracyInterval r;
  r.episodes = static_cast<index>(per_episode.size());
  if (per_episode.empty()) return r;
  double sum = 0.0;
  for (double a : per_episode) sum += a;
  r.mean = sum / double(per_episode.size());
  if (per_episode.size() < 2) return r;
  double ss = 0.0;
  for (double a : per_episode) ss += (a - r.mean) * (a - r.mean);
  const double sd = std::sqrt(ss / double(per_episode.size() - 1));
  r.ci95 = 1.96 * sd / std::sqrt(double(per_episode.size()));
  return r;
}

}  // namespace nsl
