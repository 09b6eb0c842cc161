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
// and 95% confidence interval per setting) and OUT/model.nslckpt (the model
// file of nsl/io/model_file.hpp). --load starts from a model file of this
// program, whose backbone and head it takes (with --episodes 0: test only).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "fewshot_steps.hpp"
#include "nsl/core/threads.hpp"
#include "nsl/data/glyph_render.hpp"
#include "nsl/io/atomic_file.hpp"
#include "nsl/io/model_file.hpp"

namespace {

namespace fs = std::filesystem;
using namespace nsl_fewshot;

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

std::string default_cache() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return (fs::path(xdg) / "nsl").string();
  if (const char* home = std::getenv("HOME"); home && *home) return (fs::path(home) / ".cache" / "nsl").string();
  return ".nsl-cache";
}

// The glyph set of the settings: read from the cache, or rendered (and cached) on the first run.
nsl::GlyphSet load_glyphs(const Settings& s) {
  nsl::GlyphBuildOptions o;
  o.font_dir = s.fonts;
  o.seed = s.glyph_seed;
  o.renders = s.renders;
  o.max_per_script = s.max_per_script;
  o.scripts = split_list(s.scripts);
  const std::string cache = s.cache.empty() ? default_cache() : s.cache;
  const auto start = std::chrono::steady_clock::now();
  bool built = false;
  nsl::GlyphBuildReport report;
  std::printf("nsl-fewshot: loading the glyph set from %s (rendering it on the first run)\n", cache.c_str());
  std::fflush(stdout);
  nsl::GlyphSet set = nsl::load_or_build_glyphs(cache, o, &built, &report);
  std::printf("nsl-fewshot: %s %ld characters of %ld writing systems (%zu background in %ld systems, %zu "
              "evaluation in %ld), %ld renders each, %zu fonts, fingerprint %016llx, %.1f s\n",
              built ? "rendered" : "read", long(set.class_count()), long(set.scripts.size()),
              set.classes_in(nsl::GlyphSplit::background).size(), long(set.scripts_in(nsl::GlyphSplit::background)),
              set.classes_in(nsl::GlyphSplit::evaluation).size(), long(set.scripts_in(nsl::GlyphSplit::evaluation)),
              long(set.renders), set.fonts.size(), static_cast<unsigned long long>(nsl::glyph_fingerprint(set)),
              std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  if (built && !report.missing_scripts.empty()) {
    std::string missing;
    for (const auto& m : report.missing_scripts) missing += (missing.empty() ? "" : ", ") + m;
    std::printf("nsl-fewshot: note: no installed font draws %s (install fonts-noto-core)\n", missing.c_str());
  }
  return set;
}

// Conv-4 and its head: new from the settings, or the model file of --load.
nsl::Model<float> build_or_load(const Settings& s, const nsl::GlyphSet& set, nsl::Rng& rng) {
  if (!s.load.empty()) {
    const nsl::ModelFile file = nsl::read_model_file(s.load);
    nsl::require(file.spec.network == nsl::Network::conv4 && nsl::to_string(file.spec.variant) == s.backbone &&
                     nsl::to_string(file.spec.head) == s.head,
                 nsl::ErrorKind::argument, "--load: the model file holds a ", nsl::to_string(file.spec.network), " (",
                 nsl::to_string(file.spec.variant), ") with the ", nsl::to_string(file.spec.head), " head, not a conv4 (",
                 s.backbone, ") with the ", s.head, " head");
    std::printf("nsl-fewshot: loaded %s\n", s.load.c_str());
    return nsl::load_model<float>(file);
  }
  nsl::ModelSpec spec;
  spec.network = nsl::Network::conv4;
  spec.variant = nsl::parse_variant(s.backbone);
  spec.in_channels = 1;
  spec.input_size = set.size;
  spec.dataset = "glyphs";
  spec.head = nsl::parse_head(s.head);
  spec.head_options.rank = s.rank;
  spec.head_options.hidden = s.hidden;
  return nsl::build_model<float>(spec, rng);
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

int run(const Settings& s) {
  if (s.threads > 0) nsl::set_num_threads(s.threads);
  nsl::parse_variant(s.backbone);  // bad names fail before the glyphs are rendered
  nsl::parse_head(s.head);
  const std::vector<TestSetting> tests = parse_tests(s.tests, s.test_queries);

  // The glyph set and its two splits, checked against every episode setting.
  const nsl::GlyphSet set = load_glyphs(s);
  const std::vector<nsl::index> background = set.classes_in(nsl::GlyphSplit::background);
  const std::vector<nsl::index> evaluation = set.classes_in(nsl::GlyphSplit::evaluation);
  TrainOptions train{s.episodes, {s.ways, s.shots, s.queries}, s.lr, s.momentum, s.weight_decay, s.schedule, s.warmup};
  if (s.episodes > 0) nsl::check_episode_spec(set, background, train.spec);
  for (const auto& t : tests) {
    try {
      nsl::check_episode_spec(set, evaluation, t.spec);
    } catch (const nsl::Error& e) {
      nsl::fail(nsl::ErrorKind::argument, nsl::cat("--test ", t.name, " on the evaluation classes: ", e.what()));
    }
  }

  // The model.
  nsl::Rng rng(s.seed);
  nsl::Model<float> model = build_or_load(s, set, rng);
  const nsl::index dimension = nsl::conv4_embedding_size(set.size, model.spec.conv4);
  std::printf("nsl-fewshot: Conv-4 (%s) and the %s head, %ld-dimensional embeddings; %d threads\n",
              s.backbone.c_str(), s.head.c_str(), long(dimension), nsl::num_threads());
  fs::create_directories(s.out);
  nsl::write_file_atomically("run description", (fs::path(s.out) / "run.json").string(),
                             [&](std::ofstream& out) { out << run_description(s).dump(2) << '\n'; });
  const std::string fingerprint = nsl::cat(std::hex, nsl::glyph_fingerprint(set));

  // Meta-training, then the model file.
  const fs::path metrics_path = fs::path(s.out) / "metrics.jsonl";
  std::ofstream(metrics_path, std::ios::trunc);
  double train_seconds = 0.0;
  if (s.episodes > 0) {
    train_seconds = meta_train(model, set, background, train, rng, metrics_path);
    std::printf("nsl-fewshot: meta-trained on %ld episodes (%s, %ld queries per class) in %s\n", long(s.episodes),
                describe(train.spec).c_str(), long(s.queries), nsl::cli::format_seconds(train_seconds).c_str());
    nsl::TrainingState<float> notes;
    notes.notes = {{"episodes", std::to_string(s.episodes)}, {"glyph_fingerprint", fingerprint}};
    nsl::save_model((fs::path(s.out) / "model.nslckpt").string(), model, notes);
  }

  // Meta-testing: embed every evaluation image once, then score the episodes of each setting.
  const auto test_start = std::chrono::steady_clock::now();
  const nsl::Matrix<float> embedded = embed_classes(model.network, set, evaluation, dimension);
  nlohmann::json results = nlohmann::json::array();
  for (const TestSetting& t : tests) {
    const nsl::AccuracyInterval a = meta_test(model, set, evaluation, embedded, t, s.test_episodes, s.test_seed);
    std::printf("%s (%s): %.2f%% +- %.2f%% (95%% CI, %ld episodes, %ld queries per class)\n", t.name.c_str(),
                describe(t.spec).c_str(), 100.0 * a.mean, 100.0 * a.ci95, long(a.episodes), long(t.spec.queries));
    results.push_back({{"setting", t.name},     {"ways", t.spec.ways},      {"shots", t.spec.shots},
                       {"queries", t.spec.queries}, {"episodes", a.episodes}, {"accuracy", a.mean},
                       {"ci95", a.ci95}});
  }
  const nlohmann::json summary = {
      {"backbone", s.backbone},
      {"head", s.head},
      {"glyph_fingerprint", fingerprint},
      {"background_classes", background.size()},
      {"evaluation_classes", evaluation.size()},
      {"train_seconds", train_seconds},
      {"test_seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - test_start).count()},
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
  app.add_option("--load", s.load, "start from this model file of nsl-fewshot (same --backbone and --head)");
  CLI11_PARSE(app, argc, argv);
  s.command = nsl::cli::command_line("nsl-fewshot", argc, argv);
  return nsl::cli::run_program("nsl-fewshot", [&] { return run(s); });
}
