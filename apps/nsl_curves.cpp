// nsl-curves — one picture of several nsl-train runs, grouped by variant:
// per variant a line through the mean over its runs (seeds) of a metric after
// each epoch, in a band from the lowest to the highest run.
//
//   nsl-curves runs/results/*-e5-* --out docs/images/variants_5_epochs.png
//
// Reads each run folder's run.json (variant, seed) and metrics.jsonl (one row
// per epoch). --metric picks the row's key: test_acc (the default; with
// --precise-bn, re-estimated BatchNorm statistics), test_acc_moving_bn (runs of
// --test-both-bn), train_acc, test_loss, train_loss or similarity_magnitude
// (the size of G of the dynamic layers: the mean over the layers of the
// row's object); accuracies are drawn in %. A run without the key is left
// out with a note. --by folder groups the runs by their folder's name without
// its seed ("-s<N>"), so that runs of one variant with other options (say
// dynamic_dns-e5-s1-predictor-decay-10) get a line of their own. Errors are
// one line "nsl-curves: ..." on stderr and exit status 1.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "common/plots.hpp"
#include "nsl/core/error.hpp"

namespace {

namespace fs = std::filesystem;

struct Settings {
  std::vector<std::string> runs;
  std::string out;
  std::string metric = "test_acc";
  std::string title;  // "": from the metric
  std::string by = "variant";  // or "folder": one line per folder name without its seed
};

// The line a run belongs to under --by folder: its folder's name without the
// seed, e.g. runs/results/dynamic_dns-e5-s2-predictor-decay-10 ->
// dynamic_dns-e5-predictor-decay-10.
std::string folder_group(const std::string& dir) {
  fs::path path(dir);
  if (path.filename().empty()) path = path.parent_path();  // a trailing '/'
  return std::regex_replace(path.filename().string(), std::regex("-s[0-9]+(-|$)"), "$1");
}

// The variants in the order of the results table; others after them, by name.
int variant_rank(const std::string& v) {
  static const std::vector<std::string> order = {"plain",       "static_dns",         "static_uns",
                                                 "dynamic_dns", "dynamic_dns_sphere", "dynamic_uns",
                                                 "sphere_attention"};
  const auto it = std::find(order.begin(), order.end(), v);
  return it == order.end() ? int(order.size()) : int(it - order.begin());
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  nsl::require(bool(in), nsl::ErrorKind::io, path.string(), ": cannot open (not a run folder of nsl-train?)");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    nsl::fail(nsl::ErrorKind::format, nsl::cat(path.string(), ": not JSON: ", e.what()));
  }
}

// The metric after each epoch of one run, in epoch order (NaN for a missing epoch).
std::vector<double> epoch_values(const fs::path& metrics, const std::string& key, bool* has_key) {
  std::ifstream in(metrics);
  nsl::require(bool(in), nsl::ErrorKind::io, metrics.string(), ": cannot open");
  std::vector<double> values;
  std::string line;
  for (int number_of_line = 1; std::getline(in, line); ++number_of_line) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json row;
    try {
      row = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      nsl::fail(nsl::ErrorKind::format, nsl::cat(metrics.string(), ":", number_of_line, ": not JSON: ", e.what()));
    }
    nsl::require(row.contains("epoch") && row["epoch"].is_number_integer() && row["epoch"].get<long>() >= 1 &&
                     row["epoch"].get<long>() <= 1000000,
                 nsl::ErrorKind::format, metrics.string(), ":", number_of_line, ": no epoch number from 1 to 1000000");
    const auto epoch = static_cast<std::size_t>(row["epoch"].get<long>());
    if (values.size() < epoch) values.resize(epoch, NAN);
    if (!row.contains(key)) continue;
    const nlohmann::json& value = row[key];
    if (value.is_number()) {
      values[epoch - 1] = value.get<double>();
      *has_key = true;
    } else if (value.is_object() && !value.empty()) {  // one number per layer: their mean
      double sum = 0.0;
      for (const auto& [layer, number] : value.items()) {
        nsl::require(number.is_number(), nsl::ErrorKind::format, metrics.string(), ":", number_of_line, ": ", key,
                     ".", layer, " is not a number");
        sum += number.get<double>();
      }
      values[epoch - 1] = sum / double(value.size());
      *has_key = true;
    }
  }
  return values;
}

int run(const Settings& s) {
  const bool accuracy = s.metric.find("acc") != std::string::npos;
  std::map<std::pair<int, std::string>, nsl::plots::GroupCurve> groups;  // by table order, then name
  std::map<std::string, std::vector<std::string>> seeds;
  for (const std::string& dir : s.runs) {
    const nlohmann::json settings = read_json(fs::path(dir) / "run.json");
    nsl::require(settings.contains("variant") && settings["variant"].is_string(), nsl::ErrorKind::format, dir,
                 "/run.json: no variant");
    const std::string variant = settings["variant"];
    bool has_key = false;
    std::vector<double> values = epoch_values(fs::path(dir) / "metrics.jsonl", s.metric, &has_key);
    if (!has_key) {
      std::fprintf(stderr, "nsl-curves: %s: no %s in metrics.jsonl, left out\n", dir.c_str(), s.metric.c_str());
      continue;
    }
    if (accuracy)
      for (double& v : values) v *= 100.0;
    const std::string name = s.by == "folder" ? folder_group(dir) : variant;
    auto& group = groups[{variant_rank(variant), name}];
    group.runs.push_back(std::move(values));
    seeds[name].push_back(settings.contains("seed") ? settings["seed"].dump() : "?");
  }
  nsl::require(!groups.empty(), nsl::ErrorKind::argument, "no run has ", s.metric, " in its metrics.jsonl");
  std::vector<nsl::plots::GroupCurve> curves;
  for (auto& [key, group] : groups) {
    const std::size_t n = group.runs.size();
    group.label = nsl::cat(key.second, " (", n, n == 1 ? " run)" : " runs)");
    std::printf("nsl-curves: %s: seeds", key.second.c_str());
    for (const std::string& seed : seeds[key.second]) std::printf(" %s", seed.c_str());
    // The last epoch all its runs reached: their mean and range.
    std::size_t last = SIZE_MAX;
    for (const auto& values : group.runs) last = std::min(last, values.size());
    double sum = 0.0, low = INFINITY, high = -INFINITY;
    for (const auto& values : group.runs) {
      const double v = values[last - 1];
      sum += v;
      low = std::min(low, v);
      high = std::max(high, v);
    }
    if (std::isfinite(sum)) std::printf("; epoch %zu: mean %.4g, from %.4g to %.4g", last, sum / double(n), low, high);
    std::printf("\n");
    curves.push_back(std::move(group));
  }
  const std::string title =
      !s.title.empty() ? s.title
                       : nsl::cat(s.metric, accuracy ? " (%)" : "", ": mean over runs, band from lowest to highest");
  std::string error;
  nsl::require(nsl::plots::write_group_curves(s.out, title, "epoch", curves, accuracy, &error), nsl::ErrorKind::io,
               error);
  std::printf("nsl-curves: wrote %s\n", s.out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  CLI::App app{"nsl-curves: the runs of nsl-train in one picture, a line and band per variant"};
  app.add_option("runs", s.runs, "run folders of nsl-train (OUT of --out)")->required()->check(CLI::ExistingDirectory);
  app.add_option("--out", s.out, "the picture to write (PNG)")->required();
  app.add_option("--metric", s.metric,
                 "key of metrics.jsonl: test_acc, test_acc_moving_bn, train_acc, test_loss, train_loss or "
                 "similarity_magnitude (the mean over the dynamic layers)")
      ->capture_default_str();
  app.add_option("--by", s.by,
                 "one line per variant, or per run folder name without its seed (-s<N>): runs with other options "
                 "apart")
      ->check(CLI::IsMember({"variant", "folder"}))
      ->capture_default_str();
  app.add_option("--title", s.title, "the picture's title (default: from the metric)");
  CLI11_PARSE(app, argc, argv);
  return nsl::cli::run_program("nsl-curves", [&] { return run(s); });
}
