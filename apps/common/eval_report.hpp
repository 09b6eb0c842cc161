// apps/common/eval_report.hpp — nsl-eval's report of an nsl::Evaluation: as
// text (accuracy, loss, per-class table, confusion matrix) and as JSON.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "nsl/train/evaluate.hpp"

namespace nsl::cli {

/// What the report says about the run besides the evaluation itself.
struct ReportHeader {
  std::string model, variant, dataset;
  index precise_bn = 0;
  std::vector<std::string> class_names;
  /// {layer: size of G} of the dynamic layers (similarity_magnitudes.hpp);
  /// null for a network without them.
  nlohmann::json similarity_magnitude;
};

/// The size of G of each dynamic layer, on one line after a heading; nothing
/// for a network without them.
inline void print_similarity_magnitudes(const nlohmann::json& sizes) {
  if (!sizes.is_object() || sizes.empty()) return;
  std::printf("size of G (RMS of ||G(p)||_F / ||I||_F on the first 100 test images; 0: a plain convolution):\n ");
  for (const auto& [layer, size] : sizes.items()) std::printf(" %s %.4f", layer.c_str(), size.get<double>());
  std::printf("\n");
}

inline int decimal_digits(index v) {
  int d = 1;
  for (; v >= 10; v /= 10) ++d;
  return d;
}

inline void print_report(const ReportHeader& h, const Evaluation& r, bool json) {
  const std::size_t classes = h.class_names.size();
  std::printf("test accuracy: %.2f%% (%ld of %ld)\n", 100.0 * r.accuracy(), long(r.correct), long(r.images));
  std::printf("test loss: %.4f (mean softmax cross-entropy, no label smoothing)\n", r.loss);

  int name_width = 4;
  for (const auto& name : h.class_names) name_width = std::max(name_width, int(name.size()));
  std::printf("\nper-class accuracy on %s:\n", h.dataset.c_str());
  std::printf("  class  %-*s  images  correct  accuracy\n", name_width, "name");
  for (std::size_t c = 0; c < classes; ++c) {
    const index images = r.class_images(index(c)), correct = r.confusion[c][c];
    char accuracy[16] = "       -";
    if (images > 0) std::snprintf(accuracy, sizeof accuracy, "%7.2f%%", 100.0 * double(correct) / double(images));
    std::printf("  %5zu  %-*s  %6ld  %7ld  %s\n", c, name_width, h.class_names[c].c_str(), long(images),
                long(correct), accuracy);
  }
  if (classes > 20) {
    std::printf("\nconfusion matrix: %zu classes, too many to print; %s\n", classes,
                json ? "it is in the --json file" : "pass --json FILE to get it");
    return;
  }
  index largest = index(classes) - 1;
  for (const auto& row : r.confusion)
    for (index v : row) largest = std::max(largest, v);
  const int width = decimal_digits(largest) + 1;
  std::printf("\nconfusion matrix (rows: true class, columns: predicted class):\n");
  std::printf("  %*s", 5 + 2 + name_width, "");
  for (std::size_t c = 0; c < classes; ++c) std::printf(" %*zu", width, c);
  std::printf("\n");
  for (std::size_t t = 0; t < classes; ++t) {
    std::printf("  %5zu  %-*s", t, name_width, h.class_names[t].c_str());
    for (std::size_t p = 0; p < classes; ++p) std::printf(" %*ld", width, long(r.confusion[t][p]));
    std::printf("\n");
  }
}

/// The report as JSON text: the keys in a fixed order, one per line, and one
/// line per class and per confusion-matrix row.
inline std::string report_json(const ReportHeader& h, const Evaluation& r) {
  using json = nlohmann::ordered_json;  // keys in insertion order
  auto lines = [](const std::vector<json>& items) {
    std::string text = "[";
    for (std::size_t i = 0; i < items.size(); ++i) text += (i ? ",\n    " : "\n    ") + items[i].dump();
    return text + "\n  ]";
  };
  std::vector<json> classes, rows;
  for (std::size_t c = 0; c < h.class_names.size(); ++c) {
    const index images = r.class_images(index(c));
    json accuracy = nullptr;  // no test image of the class
    if (images > 0) accuracy = double(r.confusion[c][c]) / double(images);
    classes.push_back({{"class", c}, {"name", h.class_names[c]}, {"images", images}, {"accuracy", accuracy}});
    rows.emplace_back(r.confusion[c]);
  }
  const std::pair<const char*, std::string> fields[] = {
      {"model", json(h.model).dump()},        {"variant", json(h.variant).dump()},
      {"dataset", json(h.dataset).dump()},    {"images", json(r.images).dump()},
      {"accuracy", json(r.accuracy()).dump()}, {"loss", json(r.loss).dump()},
      {"precise_bn", json(h.precise_bn).dump()}, {"per_class", lines(classes)},
      {"confusion", lines(rows)}};
  std::string text = "{";
  for (const auto& [key, value] : fields)
    text += (text.size() > 1 ? ",\n  \"" : "\n  \"") + std::string(key) + "\": " + value;
  if (!h.similarity_magnitude.is_null())
    text += ",\n  \"similarity_magnitude\": " + h.similarity_magnitude.dump();
  return text + "\n}\n";
}

}  // namespace nsl::cli
