// nsl-fewshot — few-shot learning with neural similarity (NSL.md §7) on the
// glyph set of nsl/data/glyph_render.hpp: meta-trains a Conv-4 embedding
// network and a scoring head on episodes of the background writing systems,
// then meta-tests on episodes of the evaluation systems, whose characters it
// never saw.
//
//   nsl-fewshot --backbone plain --head static_ns --episodes 2000 --out runs/fewshot/plain-static_ns
//
// The glyph set is rendered from the installed fonts on the first run and
// cached (--cache). Meta-testing embeds every evaluation image once, with
// BatchNorm in evaluation mode, and scores --test-episodes episodes of each
// --test setting from --test-seed: every backbone and head meets the same
// episodes. Writes OUT/run.json (the settings), OUT/metrics.jsonl (training
// loss and accuracy at every tenth of the run), OUT/results.json (accuracy
// and 95% confidence interval per setting) and OUT/model.nslckpt. --load
// starts from a checkpoint of this program (with --episodes 0: test only).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "nsl/core/threads.hpp"
#include "nsl/data/glyph_render.hpp"
#include "nsl/fewshot/episodes.hpp"
#include "nsl/fewshot/heads.hpp"
#include "nsl/io/atomic_file.hpp"
#include "nsl/io/checkpoint.hpp"
#include "nsl/models/conv4.hpp"
#include "nsl/train/loss.hpp"
#include "nsl/train/schedule.hpp"
#include "nsl/train/sgd.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct TestSetting {
  std::string name;  // "5w1s"
  nsl::EpisodeSpec spec;
};

struct Settings {
  std::string backbone = "plain";
  std::string head = "euclidean";
  nsl::index rank = 0;
  nsl::index hidden = 64;
  std::string fonts = "/usr/share/fonts";
  std::string cache;  // "" = $XDG_CACHE_HOME/nsl or ~/.cache/nsl
  std::uint64_t glyph_seed = 1;
  nsl::index renders = 20;
  nsl::index max_per_script = 80;
  std::string scripts;  // "" = all; else comma-separated names
  nsl::index episodes = 400;
  nsl::index ways = 20, shots = 5, queries = 5;
  double lr = 0.05;
  std::string schedule = "cosine";
  nsl::index warmup = 100;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  std::string tests = "5w1s,5w5s,20w1s";
  nsl::index test_episodes = 1000;
  nsl::index test_queries = 15;
  std::uint64_t test_seed = 2019;
  std::uint64_t seed = 1;
  int threads = 0;
  std::string out = "runs/fewshot";
  std::string load;
  std::string command;
};

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

// "5w1s" -> 5 ways, 1 shot.
std::vector<TestSetting> parse_tests(const std::string& text, nsl::index queries) {
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

std::string default_cache() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return (fs::path(xdg) / "nsl").string();
  if (const char* home = std::getenv("HOME"); home && *home) return (fs::path(home) / ".cache" / "nsl").string();
  return ".nsl-cache";
}

std::string describe_spec(const nsl::EpisodeSpec& s) {
  return nsl::cat(s.ways, "-way ", s.shots, "-shot");
}

// Embeddings of every image of `classes` (class-major, renders in order),
// with the network in evaluation mode: rows class_index * renders + render
// of the returned matrix, for the classes' positions in `classes`.
nsl::Matrix<float> embed_classes(nsl::Sequential<float>& net, const nsl::GlyphSet& set,
                                 const std::vector<nsl::index>& classes, nsl::index dimension) {
  net.set_training(false);
  const nsl::index n = static_cast<nsl::index>(classes.size()) * set.renders;
  nsl::Matrix<float> all(n, dimension);
  nsl::Tensor<float> images, out;
  const nsl::cli::PhaseProgress progress("embedding the evaluation glyphs");
  const nsl::index per_batch = std::max<nsl::index>(1, 512 / set.renders);
  for (std::size_t c = 0; c < classes.size(); c += std::size_t(per_batch)) {
    progress.show(nsl::index(c) * set.renders, n);
    const nsl::index count = std::min<nsl::index>(per_batch, nsl::index(classes.size() - c));
    // The classes of one batch need not be adjacent in the set: gather them.
    images.resize(nsl::Shape{count * set.renders, 1, set.size, set.size});
    nsl::Tensor<float> one;
    for (nsl::index k = 0; k < count; ++k) {
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

nlohmann::json run_description(const Settings& s) {
  return {{"command", s.command},       {"backbone", s.backbone},     {"head", s.head},
          {"rank", s.rank},             {"hidden", s.hidden},         {"glyph_seed", s.glyph_seed},
          {"renders", s.renders},       {"max_per_script", s.max_per_script},
          {"scripts", s.scripts.empty() ? "all" : s.scripts},         {"episodes", s.episodes},
          {"ways", s.ways},             {"shots", s.shots},           {"queries", s.queries},
          {"lr", s.lr},                 {"schedule", s.schedule},     {"warmup", s.warmup},
          {"momentum", s.momentum},     {"weight_decay", s.weight_decay}, {"tests", s.tests},
          {"test_episodes", s.test_episodes}, {"test_queries", s.test_queries}, {"test_seed", s.test_seed},
          {"seed", s.seed},             {"threads", nsl::num_threads()}, {"loaded_from", s.load}};
}

int run(Settings s) {
  if (s.threads > 0) nsl::set_num_threads(s.threads);
  const nsl::Variant variant = nsl::parse_variant(s.backbone);
  const nsl::HeadKind head_kind = nsl::parse_head(s.head);
  const std::vector<TestSetting> tests = parse_tests(s.tests, s.test_queries);
  if (s.cache.empty()) s.cache = default_cache();

  // ---- the glyph set
  nsl::GlyphBuildOptions glyph_options;
  glyph_options.font_dir = s.fonts;
  glyph_options.seed = s.glyph_seed;
  glyph_options.renders = s.renders;
  glyph_options.max_per_script = s.max_per_script;
  glyph_options.scripts = split_list(s.scripts);
  const auto glyph_start = Clock::now();
  bool built = false;
  nsl::GlyphBuildReport report;
  std::printf("nsl-fewshot: loading the glyph set from %s (rendering it on the first run)\n", s.cache.c_str());
  std::fflush(stdout);
  const nsl::GlyphSet set = nsl::load_or_build_glyphs(s.cache, glyph_options, &built, &report);
  const std::vector<nsl::index> background = set.classes_in(nsl::GlyphSplit::background);
  const std::vector<nsl::index> evaluation = set.classes_in(nsl::GlyphSplit::evaluation);
  std::printf("nsl-fewshot: %s %ld characters of %ld writing systems (%ld background in %ld systems, %ld "
              "evaluation in %ld), %ld renders each, %zu fonts, fingerprint %016llx, %.1f s\n",
              built ? "rendered" : "read", long(set.class_count()), long(set.scripts.size()), long(background.size()),
              long(set.scripts_in(nsl::GlyphSplit::background)), long(evaluation.size()),
              long(set.scripts_in(nsl::GlyphSplit::evaluation)), long(set.renders), set.fonts.size(),
              static_cast<unsigned long long>(nsl::glyph_fingerprint(set)),
              std::chrono::duration<double>(Clock::now() - glyph_start).count());
  if (built && !report.missing_scripts.empty()) {
    std::string missing;
    for (const auto& m : report.missing_scripts) missing += (missing.empty() ? "" : ", ") + m;
    std::printf("nsl-fewshot: note: no installed font draws %s (install fonts-noto-core)\n", missing.c_str());
  }
  const nsl::EpisodeSpec train_spec{s.ways, s.shots, s.queries};
  if (s.episodes > 0) nsl::check_episode_spec(set, background, train_spec);
  for (const auto& t : tests) {
    try {
      nsl::check_episode_spec(set, evaluation, t.spec);
    } catch (const nsl::Error& e) {
      nsl::fail(nsl::ErrorKind::argument, nsl::cat("--test ", t.name, " on the evaluation classes: ", e.what()));
    }
  }

  // ---- the model
  nsl::Rng rng(s.seed);
  nsl::Sequential<float> net = nsl::conv4<float>(variant, 1, rng);
  const nsl::index dimension = nsl::conv4_embedding_size(set.size);
  nsl::HeadOptions head_options;
  head_options.rank = s.rank;
  head_options.hidden = s.hidden;
  std::unique_ptr<nsl::PrototypeHead<float>> head = nsl::make_head<float>(head_kind, dimension, rng, head_options);
  std::vector<nsl::Parameter<float>> params = net.parameters();
  for (auto& p : head->parameters()) params.push_back({"head." + p.name, p.value, p.grad, p.weight_decay});
  nsl::Sgd<float> sgd(params, {s.momentum, s.weight_decay});
  std::printf("nsl-fewshot: Conv-4 (%s) and the %s head, %ld-dimensional embeddings; %d threads\n", s.backbone.c_str(),
              s.head.c_str(), long(dimension), nsl::num_threads());
  if (!s.load.empty()) {
    const nsl::Checkpoint ckpt = nsl::load_checkpoint(s.load);
    nsl::require(ckpt.require_meta("backbone") == s.backbone && ckpt.require_meta("head") == s.head,
                 nsl::ErrorKind::argument, "--load: the checkpoint is a ", ckpt.require_meta("backbone"), " Conv-4 with the ",
                 ckpt.require_meta("head"), " head, not ", s.backbone, " with ", s.head);
    nsl::restore(ckpt, "model.", net.parameters());
    nsl::restore(ckpt, "model.", net.buffers());
    nsl::restore(ckpt, "head.", head->parameters());
    std::printf("nsl-fewshot: loaded %s\n", s.load.c_str());
  }

  fs::create_directories(s.out);
  const nlohmann::json description = run_description(s);
  nsl::write_file_atomically("run description", (fs::path(s.out) / "run.json").string(),
                             [&](std::ofstream& out) { out << description.dump(2) << '\n'; });
  const fs::path metrics_path = fs::path(s.out) / "metrics.jsonl";
  std::ofstream(metrics_path, std::ios::trunc);

  // ---- meta-training
  const auto train_start = Clock::now();
  double train_seconds = 0.0;
  if (s.episodes > 0) {
    const auto schedule =
        nsl::make_schedule(s.schedule, s.lr, s.episodes, std::min<nsl::index>(s.warmup, s.episodes - 1));
    net.set_borrowing(true);  // the episode's images stay put until backward
    nsl::Episode episode;
    nsl::Tensor<float> embeddings, dembeddings, scores, dscores;
    nsl::cli::ProgressLine line;
    double chunk_loss = 0.0, total_loss = 0.0;
    nsl::index chunk_correct = 0, chunk_queries = 0, total_correct = 0, total_queries = 0, chunk_start = 0;
    head->set_episode(s.ways, s.shots);
    for (nsl::index e = 0; e < s.episodes; ++e) {
      nsl::sample_episode(set, background, train_spec, rng, episode);
      embeddings.resize(net.output_shape(episode.images.shape()));
      net.forward_into(episode.images.view(), embeddings.view());
      scores.resize(head->output_shape(embeddings.shape()));
      head->forward_into(embeddings.view(), scores.view());
      dscores.resize(scores.shape());
      const nsl::LossResult r = nsl::softmax_cross_entropy<float>(scores.view(), episode.labels, 0.0, dscores.view());
      nsl::require(std::isfinite(r.loss), nsl::ErrorKind::state, "the loss became ", r.loss, " at episode ", e + 1);
      sgd.zero_gradients();
      dembeddings.resize(embeddings.shape());
      head->backward_into(dscores.view(), dembeddings.view());
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
      const double seconds = std::chrono::duration<double>(Clock::now() - train_start).count();
      char numbers[160];
      std::snprintf(numbers, sizeof numbers, "loss %.4f  acc %5.2f%%  %.1f episodes/s  ETA %s",
                    total_loss / double(total_queries), 100.0 * double(total_correct) / double(total_queries),
                    double(e + 1) / seconds, nsl::cli::format_seconds(seconds * double(s.episodes - e - 1) / double(e + 1)).c_str());
      line.show(e + 1, s.episodes,
                nsl::cat("episode ", nsl::cli::progress_bar(e + 1, s.episodes), " ", e + 1, "/", s.episodes, "  ", numbers));
      // metrics.jsonl: one row per tenth of the run (and the last episode).
      if ((e + 1) * 10 / s.episodes != e * 10 / s.episodes || e + 1 == s.episodes) {
        const nlohmann::json row = {{"episode", e + 1},
                                    {"train_loss", chunk_loss / double(chunk_queries)},
                                    {"train_acc", double(chunk_correct) / double(chunk_queries)},
                                    {"episodes_in_row", e + 1 - chunk_start},
                                    {"seconds", seconds},
                                    {"lr", lr}};
        std::ofstream(metrics_path, std::ios::app) << row.dump() << '\n';
        chunk_loss = 0.0;
        chunk_correct = chunk_queries = 0;
        chunk_start = e + 1;
      }
    }
    net.set_borrowing(false);
    train_seconds = std::chrono::duration<double>(Clock::now() - train_start).count();
    std::printf("nsl-fewshot: meta-trained on %ld episodes (%s) in %s\n", long(s.episodes),
                nsl::cat(describe_spec(train_spec), ", ", s.queries, " queries per class").c_str(),
                nsl::cli::format_seconds(train_seconds).c_str());

    nsl::Checkpoint ckpt;
    ckpt.set("backbone", s.backbone);
    ckpt.set("head", s.head);
    ckpt.set("episodes", std::to_string(s.episodes));
    ckpt.set("glyph_fingerprint", nsl::cat(std::hex, nsl::glyph_fingerprint(set)));
    nsl::store(ckpt, "model.", net.parameters());
    nsl::store(ckpt, "model.", net.buffers());
    nsl::store(ckpt, "head.", head->parameters());
    nsl::save_checkpoint((fs::path(s.out) / "model.nslckpt").string(), ckpt);
  }

  // ---- meta-testing: embed every evaluation image once, then score the episodes
  const auto test_start = Clock::now();
  const nsl::Matrix<float> embedded = embed_classes(net, set, evaluation, dimension);
  std::vector<nsl::index> positions(static_cast<std::size_t>(set.class_count()), -1);  // set class -> row block
  for (std::size_t i = 0; i < evaluation.size(); ++i) positions[std::size_t(evaluation[i])] = nsl::index(i);
  nlohmann::json results = nlohmann::json::array();
  nsl::Episode episode;
  nsl::Tensor<float> rows, scores;
  for (const TestSetting& t : tests) {
    // The same episodes for every model: a generator of the test seed and the setting alone.
    nsl::Rng test_rng(s.test_seed * 1000003u + std::uint64_t(t.spec.ways) * 1009u + std::uint64_t(t.spec.shots));
    head->set_episode(t.spec.ways, t.spec.shots);
    std::vector<double> accuracies;
    const nsl::cli::PhaseProgress progress("testing " + describe_spec(t.spec));
    for (nsl::index e = 0; e < s.test_episodes; ++e) {
      progress.show(e, s.test_episodes);
      nsl::sample_episode(set, evaluation, t.spec, test_rng, episode, false);
      rows.resize(nsl::Shape{static_cast<nsl::index>(episode.rows.size()), dimension});
      for (std::size_t i = 0; i < episode.rows.size(); ++i) {
        const nsl::index c = episode.rows[i] / set.renders, r = episode.rows[i] % set.renders;
        rows.matrix().row(nsl::index(i)) = embedded.row(positions[std::size_t(c)] * set.renders + r);
      }
      scores.resize(head->output_shape(rows.shape()));
      head->forward_into(rows.view(), scores.view());
      const nsl::LossResult r = nsl::softmax_cross_entropy<float>(scores.view(), episode.labels, 0.0, {});
      accuracies.push_back(double(r.correct) / double(episode.labels.size()));
    }
    progress.show(s.test_episodes, s.test_episodes);
    const nsl::AccuracyInterval a = nsl::accuracy_interval(accuracies);
    std::printf("%s (%s): %.2f%% +- %.2f%% (95%% CI, %ld episodes, %ld queries per class)\n", t.name.c_str(),
                describe_spec(t.spec).c_str(), 100.0 * a.mean, 100.0 * a.ci95, long(a.episodes), long(t.spec.queries));
    results.push_back({{"setting", t.name},     {"ways", t.spec.ways},      {"shots", t.spec.shots},
                       {"queries", t.spec.queries}, {"episodes", a.episodes}, {"accuracy", a.mean},
                       {"ci95", a.ci95}});
  }
  const double test_seconds = std::chrono::duration<double>(Clock::now() - test_start).count();
  const nlohmann::json summary = {
      {"backbone", s.backbone},
      {"head", s.head},
      {"glyph_fingerprint", nsl::cat(std::hex, nsl::glyph_fingerprint(set))},
      {"background_classes", background.size()},
      {"evaluation_classes", evaluation.size()},
      {"train_seconds", train_seconds},
      {"test_seconds", test_seconds},
      {"tests", results}};
  nsl::write_file_atomically("results", (fs::path(s.out) / "results.json").string(),
                             [&](std::ofstream& out) { out << summary.dump(2) << '\n'; });
  std::printf("nsl-fewshot: wrote %s/{run.json, metrics.jsonl, results.json%s}\n", s.out.c_str(),
              s.episodes > 0 ? ", model.nslckpt" : "");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{"nsl-fewshot: few-shot learning with neural similarity on a glyph set rendered from system fonts"};
  app.add_option("--backbone", s.backbone,
                 "the similarity of Conv-4's blocks 2-4: plain, static_dns, static_uns, dynamic_dns, dynamic_uns, "
                 "dynamic_dns_sphere")
      ->capture_default_str();
  app.add_option("--head", s.head, "euclidean, cosine, static_ns or dynamic_ns")
      ->check(CLI::IsMember({"euclidean", "cosine", "static_ns", "dynamic_ns"}))
      ->capture_default_str();
  app.add_option("--rank", s.rank, "static_ns: rank of M's low-rank part (0: diagonal M)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--hidden", s.hidden, "dynamic_ns: hidden units of M's predictor")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--fonts", s.fonts, "font directory (searched recursively)")->capture_default_str();
  app.add_option("--cache", s.cache, "glyph cache directory (default $XDG_CACHE_HOME/nsl or ~/.cache/nsl)");
  app.add_option("--glyph-seed", s.glyph_seed, "seed of the glyph renders' jitter")->capture_default_str();
  app.add_option("--renders", s.renders, "renders per character")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--max-per-script", s.max_per_script, "characters per writing system at most")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--scripts", s.scripts, "only these writing systems, comma-separated (default: all)");
  app.add_option("--episodes", s.episodes, "meta-training episodes (0: test only, with --load)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--ways", s.ways, "meta-training: classes per episode")->check(CLI::Range(2, 100000))->capture_default_str();
  app.add_option("--shots", s.shots, "meta-training: support examples per class")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--queries", s.queries, "meta-training: queries per class")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--lr", s.lr, "base learning rate")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--schedule", s.schedule, "step or cosine, over the episodes")
      ->check(CLI::IsMember({"step", "cosine"}))
      ->capture_default_str();
  app.add_option("--warmup", s.warmup, "episodes of linear learning-rate warm-up")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--momentum", s.momentum, "SGD momentum")->check(CLI::Range(0.0, 0.999))->capture_default_str();
  app.add_option("--weight-decay", s.weight_decay, "L2 weight decay")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--test", s.tests, "meta-test settings, comma-separated, e.g. 5w1s,5w5s,20w1s")->capture_default_str();
  app.add_option("--test-episodes", s.test_episodes, "episodes per meta-test setting")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--test-queries", s.test_queries, "meta-test queries per class")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--test-seed", s.test_seed, "seed of the meta-test episodes (the same for every model)")
      ->capture_default_str();
  app.add_option("--seed", s.seed, "seed of the initialisation and the training episodes")->capture_default_str();
  app.add_option("--threads", s.threads, "threads (0: all cores)")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--out", s.out, "output directory")->capture_default_str();
  app.add_option("--load", s.load, "start from this checkpoint of nsl-fewshot (same --backbone and --head)");
  CLI11_PARSE(app, argc, argv);
  for (int i = 0; i < argc; ++i) s.command += (i ? " " : "") + std::string(i ? argv[i] : "nsl-fewshot");
#if NSL_HAS_EXCEPTIONS
  try {
    return run(s);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nsl-fewshot: %s\n", e.what());
    return 1;
  }
#else
  return run(s);
#endif
}
