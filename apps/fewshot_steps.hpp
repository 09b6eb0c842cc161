// fewshot_steps.hpp — the steps of nsl-fewshot (nsl_fewshot.cpp): the
// meta-test settings, meta-training on episodes of the background classes,
// and meta-testing on episodes of the evaluation classes.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "nsl/data/glyphs.hpp"
#include "nsl/fewshot/episodes.hpp"
#include "nsl/io/model_file.hpp"
#include "nsl/train/loss.hpp"
#include "nsl/train/schedule.hpp"
#include "nsl/train/sgd.hpp"

namespace nsl_fewshot {

struct TestSetting {
  std::string name;  // "5w1s"
  nsl::EpisodeSpec spec;
};

inline std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out(1);
  for (char c : text) {
    if (c == ',') out.emplace_back();
    else out.back() += c;
  }
  out.erase(std::remove(out.begin(), out.end(), std::string()), out.end());
  return out;
}

// "5w1s,20w1s" -> (5 ways, 1 shot), (20 ways, 1 shot).
inline std::vector<TestSetting> parse_tests(const std::string& text, nsl::index queries) {
  std::vector<TestSetting> out;
  for (const std::string& item : split_list(text)) {
    long ways = 0, shots = 0;
    char w = 0, s = 0;
    int used = 0;
    const bool ok = std::sscanf(item.c_str(), "%ld%c%ld%c%n", &ways, &w, &shots, &s, &used) == 4 && w == 'w' &&
                    s == 's' && used == int(item.size()) && ways >= 2 && shots >= 1;
    nsl::require(ok, nsl::ErrorKind::argument, "--test: expected settings like 5w1s,20w1s (ways w shots s), got '",
                 item, "'");
    out.push_back({item, {ways, shots, queries}});
  }
  nsl::require(!out.empty(), nsl::ErrorKind::argument, "--test: no setting given");
  return out;
}

inline std::string describe(const nsl::EpisodeSpec& s) { return nsl::cat(s.ways, "-way ", s.shots, "-shot"); }

// ---- meta-training -----------------------------------------------------------

struct TrainOptions {
  nsl::index episodes = 400;
  nsl::EpisodeSpec spec{20, 5, 5};
  double lr = 0.05, momentum = 0.9, weight_decay = 5e-4;
  std::string schedule = "cosine";
  nsl::index warmup = 100;
};

// Meta-trains `model` (Conv-4 and its head) on episodes of `classes`, drawn
// from `rng`; writes one row of metrics.jsonl per tenth of the run (training
// loss and accuracy over that tenth). Returns the seconds it took.
inline double meta_train(nsl::Model<float>& model, const nsl::GlyphSet& set, const std::vector<nsl::index>& classes,
                         const TrainOptions& o, nsl::Rng& rng, const std::filesystem::path& metrics_path) {
  nsl::Sgd<float> sgd(model.parameters(), {o.momentum, o.weight_decay});
  const auto schedule = nsl::make_schedule(o.schedule, o.lr, o.episodes, std::min<nsl::index>(o.warmup, o.episodes - 1));
  nsl::Sequential<float>& net = model.network;
  nsl::PrototypeHead<float>& head = *model.head;
  net.set_borrowing(true);  // the episode's images stay put until backward
  head.set_episode(o.spec.ways, o.spec.shots);
  nsl::Episode episode;
  nsl::Tensor<float> embeddings, dembeddings, scores, dscores;
  nsl::cli::RateProgress progress("episode", o.episodes);
  double chunk_loss = 0.0, total_loss = 0.0;
  nsl::index chunk_correct = 0, chunk_queries = 0, total_correct = 0, total_queries = 0, chunk_start = 0, images = 0;
  for (nsl::index e = 0; e < o.episodes; ++e) {
    nsl::sample_episode(set, classes, o.spec, rng, episode);
    embeddings.resize(net.output_shape(episode.images.shape()));
    net.forward_into(episode.images.view(), embeddings.view());
    scores.resize(head.output_shape(embeddings.shape()));
    head.forward_into(embeddings.view(), scores.view());
    dscores.resize(scores.shape());
    const nsl::LossResult r = nsl::softmax_cross_entropy<float>(scores.view(), episode.labels, 0.0, dscores.view());
    nsl::require(std::isfinite(r.loss), nsl::ErrorKind::state, "the loss became ", r.loss, " at episode ", e + 1);
    sgd.zero_gradients();
    dembeddings.resize(embeddings.shape());
    head.backward_into(dscores.view(), dembeddings.view());
    net.backward_into(dembeddings.view(), {});
    const double lr = schedule->lr(e);
    sgd.step(lr);

    const nsl::index q = static_cast<nsl::index>(episode.labels.size());
    chunk_loss += r.loss * double(q);
    total_loss += r.loss * double(q);
    chunk_correct += r.correct;
    total_correct += r.correct;
    chunk_queries += q;
    total_queries += q;
    images += episode.images.dim(0);
    char numbers[96];
    std::snprintf(numbers, sizeof numbers, "loss %.4f  acc %5.2f%%", total_loss / double(total_queries),
                  100.0 * double(total_correct) / double(total_queries));
    progress.update(e + 1, images, numbers);
    if ((e + 1) * 10 / o.episodes != e * 10 / o.episodes || e + 1 == o.episodes) {
      const nlohmann::json row = {{"episode", e + 1},
                                  {"train_loss", chunk_loss / double(chunk_queries)},
                                  {"train_acc", double(chunk_correct) / double(chunk_queries)},
                                  {"episodes_in_row", e + 1 - chunk_start},
                                  {"seconds", progress.seconds()},
                                  {"lr", lr}};
      std::ofstream(metrics_path, std::ios::app) << row.dump() << '\n';
      chunk_loss = 0.0;
      chunk_correct = chunk_queries = 0;
      chunk_start = e + 1;
    }
  }
  net.set_borrowing(false);
  return progress.seconds();
}

// ---- meta-testing ------------------------------------------------------------

// Embeddings of every image of `classes` with the network in evaluation
// mode: row (position of the class in `classes`) * renders + render.
inline nsl::Matrix<float> embed_classes(nsl::Sequential<float>& net, const nsl::GlyphSet& set,
                                        const std::vector<nsl::index>& classes, nsl::index dimension) {
  net.set_training(false);
  const nsl::index n = static_cast<nsl::index>(classes.size()) * set.renders;
  nsl::Matrix<float> all(n, dimension);
  nsl::Tensor<float> images, one, out;
  const nsl::cli::PhaseProgress progress("embedding the evaluation glyphs");
  const nsl::index per_batch = std::max<nsl::index>(1, 512 / set.renders);
  for (std::size_t c = 0; c < classes.size(); c += std::size_t(per_batch)) {
    progress.show(nsl::index(c) * set.renders, n);
    const nsl::index count = std::min<nsl::index>(per_batch, nsl::index(classes.size() - c));
    images.resize(nsl::Shape{count * set.renders, 1, set.size, set.size});
    for (nsl::index k = 0; k < count; ++k) {  // the classes of one batch need not be adjacent in the set
      nsl::gather_glyph_images(set, classes[c + std::size_t(k)] * set.renders, set.renders, one);
      std::copy(one.data(), one.data() + one.size(), images.data() + k * one.size());
    }
    out.resize(net.output_shape(images.shape()));
    net.forward_into(images.view(), out.view());
    all.middleRows(nsl::index(c) * set.renders, count * set.renders) = out.matrix(count * set.renders, dimension);
  }
  progress.show(n, n);
  net.set_training(true);
  return all;
}

// Accuracy over `episodes` episodes of setting `t` on `classes`, each drawn
// from a generator of `seed` and the setting alone: every model meets the same
// episodes. Embeds every image once first.
inline nsl::AccuracyInterval meta_test(nsl::Model<float>& model, const nsl::GlyphSet& set,
                                       const std::vector<nsl::index>& classes, const nsl::Matrix<float>& embedded,
                                       const TestSetting& t, nsl::index episodes, std::uint64_t seed) {
  std::vector<nsl::index> positions(static_cast<std::size_t>(set.class_count()), -1);  // set class -> row block
  for (std::size_t i = 0; i < classes.size(); ++i) positions[std::size_t(classes[i])] = nsl::index(i);
  nsl::Rng rng(seed * 1000003u + std::uint64_t(t.spec.ways) * 1009u + std::uint64_t(t.spec.shots));
  model.head->set_episode(t.spec.ways, t.spec.shots);
  nsl::Episode episode;
  nsl::Tensor<float> rows, scores;
  std::vector<double> accuracies;
  const nsl::cli::PhaseProgress progress("testing " + describe(t.spec));
  for (nsl::index e = 0; e < episodes; ++e) {
    progress.show(e, episodes);
    nsl::sample_episode(set, classes, t.spec, rng, episode, false);
    rows.resize(nsl::Shape{static_cast<nsl::index>(episode.rows.size()), embedded.cols()});
    for (std::size_t i = 0; i < episode.rows.size(); ++i) {
      const nsl::index c = episode.rows[i] / set.renders, r = episode.rows[i] % set.renders;
      rows.matrix().row(nsl::index(i)) = embedded.row(positions[std::size_t(c)] * set.renders + r);
    }
    scores.resize(model.head->output_shape(rows.shape()));
    model.head->forward_into(rows.view(), scores.view());
    const nsl::LossResult r = nsl::softmax_cross_entropy<float>(scores.view(), episode.labels, 0.0, {});
    accuracies.push_back(double(r.correct) / double(episode.labels.size()));
  }
  progress.show(episodes, episodes);
  return nsl::accuracy_interval(accuracies);
}

}  // namespace nsl_fewshot
