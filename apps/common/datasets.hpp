// apps/common/datasets.hpp — the image-classification datasets of nsl-train
// and nsl-eval by name: fashion-mnist (IDX files, Debian's
// dataset-fashion-mnist by default), cifar10 and cifar100 (the binary
// batches), with their class names.
#pragma once

#include <string>

#include "common/cli.hpp"
#include "nsl/data/cifar.hpp"
#include "nsl/data/idx.hpp"

namespace nsl::cli {

inline const char* const default_fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";

inline bool known_dataset(const std::string& name) {
  return name == "fashion-mnist" || name == "cifar10" || name == "cifar100";
}

/// The training (train = true) or test split of `dataset` in `dir`, only its
/// first `limit` images when limit > 0. Pixels stay raw 0..255 floats: the
/// first BatchNorm normalises them (NSL.md §5).
inline Dataset load_split(const std::string& dataset, const std::string& dir, bool train, index limit = 0) {
  require(known_dataset(dataset), ErrorKind::argument, "unknown dataset '", dataset,
          "' (expected fashion-mnist, cifar10 or cifar100)");
  Dataset d = dataset == "fashion-mnist" ? load_fashion_mnist(dir, train) : load_cifar(dir, train, dataset == "cifar100");
  require(d.images.rank() == 4 && d.images.dim(0) >= 1, ErrorKind::format, dir, ": the ", train ? "training" : "test",
          " split holds no images");
  keep_first(d, limit);
  return d;
}

/// The name of class `label` ("class 17" where nsl has no names: CIFAR-100).
inline std::string class_name(const std::string& dataset, index label) {
  if (dataset == "fashion-mnist" && label >= 0 && label < 10) return fashion_mnist_class_name(int(label));
  if (dataset == "cifar10" && label >= 0 && label < 10) return cifar10_class_name(int(label));
  return cat("class ", label);
}

}  // namespace nsl::cli
