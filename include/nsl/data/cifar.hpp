// nsl/data/cifar.hpp — CIFAR-10 and CIFAR-100 in their binary distribution.
//
// Both sets are 32 x 32 colour images stored as fixed-size records, nothing
// else in the file (no header, no count, no trailer):
//   CIFAR-10   3073 bytes per record: 1 label byte (0..9), then 3072 pixels
//   CIFAR-100  3074 bytes per record: 1 coarse label byte (0..19, the
//              superclass), 1 fine label byte (0..99), then 3072 pixels
// The 3072 pixel bytes are the red plane, then green, then blue, each 1024
// bytes of a 32 x 32 image in row-major order, i.e. exactly C x H x W order.
// Files:
//   CIFAR-10   training: data_batch_1.bin ... data_batch_5.bin (10000 each),
//              test: test_batch.bin (10000)
//   CIFAR-100  training: train.bin (50000), test: test.bin (10000)
//
//   cifar_record_bytes(cifar100)          3073 or 3074
//   cifar_file_names(train, cifar100)     the files of one split, in order
//   parse_cifar(bytes, count, source, cifar100, scale)
//                                         validates and decodes one file
//   load_cifar(dir, train, cifar100, scale)
//                                         all files of a split, concatenated
//                                         in the order above
//   cifar10_class_name(label)             "airplane", ..., "truck"
// Both return an nsl::Dataset (see nsl/data/idx.hpp): images N x 3 x 32 x 32
// float, each the pixel byte times `scale` (1.0, the default, keeps raw 0..255
// values as the reference recipe uses them; 1/255.0 maps to [0, 1]), labels
// (the fine label for CIFAR-100) and classes = 10 or 100.
//
// Errors. A file whose size is zero, or not a whole number of records (the
// message says how many bytes are left over, and whether the size would fit
// the other CIFAR variant), or a label out of range (the message names the
// record and its byte offset) fails with ErrorKind::format; a CIFAR-100
// coarse label outside 0..19 is rejected too, as a sign of a corrupt file.
// A missing directory or file fails with ErrorKind::io, naming the files
// expected. Messages start "load_cifar: <file>: ". Sizes are checked from the
// file system before anything is read or allocated, and each file is bounded
// by `max_bytes` (1 GiB by default; the largest real file, CIFAR-100's
// train.bin, is 153.7 MB).
//
// Using a real copy. nsl downloads nothing. Elsewhere, fetch the binary
// version from https://www.cs.toronto.edu/~kriz/cifar.html
// (cifar-10-binary.tar.gz, 162 MB; cifar-100-binary.tar.gz, 161 MB), unpack
// it (`tar xzf cifar-10-binary.tar.gz`, which creates cifar-10-batches-bin/;
// the CIFAR-100 archive creates cifar-100-binary/), and pass either the
// directory the archive was unpacked into or that subfolder itself:
//   nsl::Dataset train = nsl::load_cifar("/data/cifar", true, false);
//   nsl::Dataset test  = nsl::load_cifar("/data/cifar/cifar-10-batches-bin", false, false);
// The python and matlab versions of the archives are a different format and
// are not read.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include "nsl/core/error.hpp"
#include "nsl/core/shape.hpp"
#include "nsl/core/tensor.hpp"
#include "nsl/data/idx.hpp"

namespace nsl {

/// Channels, height and width of a CIFAR image.
inline constexpr index cifar_channels = 3;
inline constexpr index cifar_height = 32;
inline constexpr index cifar_width = 32;
/// Pixel bytes per record (3 x 32 x 32).
inline constexpr std::size_t cifar_pixel_bytes = 3072;

/// Bytes per record: 3073 for CIFAR-10 (one label byte), 3074 for CIFAR-100
/// (coarse and fine label bytes).
inline std::size_t cifar_record_bytes(bool cifar100) {
  return (cifar100 ? 2 : 1) + cifar_pixel_bytes;
}

/// The file names of the training (train = true) or test split, in the order
/// load_cifar concatenates them.
inline std::vector<std::string> cifar_file_names(bool train, bool cifar100) {
  if (cifar100) return {train ? "train.bin" : "test.bin"};
  if (!train) return {"test_batch.bin"};
  return {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin",
          "data_batch_5.bin"};
}

namespace detail::cifar {

inline const char* set_name(bool cifar100) { return cifar100 ? "CIFAR-100" : "CIFAR-10"; }
inline const char* subfolder(bool cifar100) {
  return cifar100 ? "cifar-100-binary" : "cifar-10-batches-bin";
}
inline const char* archive(bool cifar100) {
  return cifar100 ? "cifar-100-binary.tar.gz" : "cifar-10-binary.tar.gz";
}

/// "data_batch_1.bin, data_batch_2.bin, ..." as one string.
inline std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (std::size_t i = 0; i < names.size(); ++i) s += (i ? ", " : "") + names[i];
  return s;
}

/// Records in a file of `count` bytes; fails with a format error naming
/// `source` unless `count` is a positive multiple of the record size.
inline std::size_t check_size(std::size_t count, const std::string& source, bool cifar100) {
  const std::size_t record = cifar_record_bytes(cifar100);
  if (count == 0)
    fail(ErrorKind::format, cat("load_cifar: ", source, ": empty file (a ", set_name(cifar100),
                                " file holds ", record, "-byte records)"));
  const std::size_t left = count % record;
  if (left != 0) {
    const std::size_t other = cifar_record_bytes(!cifar100);
    fail(ErrorKind::format,
         cat("load_cifar: ", source, ": size ", count, " bytes is not a whole number of ", record,
             "-byte ", set_name(cifar100), " records (",
             cifar100 ? "2 label bytes" : "1 label byte", " + ", cifar_pixel_bytes,
             " pixel bytes): ", count / record, " records and ", left, " byte",
             left == 1 ? "" : "s", " left over (truncated, or not a ", set_name(cifar100), " file)",
             count % other == 0
                 ? cat("; the size is a whole number of ", other, "-byte ", set_name(!cifar100),
                       " records: pass cifar100 = ", cifar100 ? "false" : "true")
                 : std::string()));
  }
  return count / record;
}

/// Decodes `records` validated records at `bytes` into `images` (records x
/// 3072 floats) and `labels`; fails with a format error on a bad label.
inline void decode(const unsigned char* bytes, std::size_t records, const std::string& source,
                   bool cifar100, const std::array<float, 256>& value, float* images, int* labels) {
  const std::size_t record = cifar_record_bytes(cifar100);
  const int classes = cifar100 ? 100 : 10;
  for (std::size_t r = 0; r < records; ++r) {
    const unsigned char* p = bytes + r * record;
    if (cifar100 && p[0] >= 20)
      fail(ErrorKind::format,
           cat("load_cifar: ", source, ": record ", r, " (byte offset ", r * record,
               ") has coarse label ", int(p[0]), ", not a CIFAR-100 superclass (0 to 19)"));
    const int label = cifar100 ? p[1] : p[0];
    if (label >= classes)
      fail(ErrorKind::format,
           cat("load_cifar: ", source, ": record ", r, " (byte offset ", r * record, ") has ",
               cifar100 ? "fine label " : "label ", label, ", not a ", set_name(cifar100),
               " class (0 to ", classes - 1, ")"));
    labels[r] = label;
    const unsigned char* pixels = p + (cifar100 ? 2 : 1);
    float* dst = images + r * cifar_pixel_bytes;
    for (std::size_t i = 0; i < cifar_pixel_bytes; ++i) dst[i] = value[pixels[i]];
  }
}

/// pixel byte -> float(byte * scale)
inline std::array<float, 256> value_table(double scale) {
  require(std::isfinite(scale), ErrorKind::argument, "load_cifar: scale must be finite, got ",
          scale);
  std::array<float, 256> value{};
  for (std::size_t v = 0; v < value.size(); ++v) value[v] = static_cast<float>(double(v) * scale);
  return value;
}

/// A Dataset with room for `records` images, contents unset.
inline Dataset allocate(std::size_t records, bool cifar100) {
  Dataset d;
  d.classes = cifar100 ? 100 : 10;
  d.images.resize(Shape{index(records), cifar_channels, cifar_height, cifar_width});
  d.labels.resize(records);
  return d;
}

/// True if every name in `names` is a regular file (or a link to one) in `dir`.
inline bool has_all(const std::filesystem::path& dir, const std::vector<std::string>& names) {
  std::error_code ec;
  for (const std::string& n : names)
    if (!std::filesystem::is_regular_file(dir / n, ec)) return false;
  return true;
}
/// How many of `names` exist in `dir`.
inline std::size_t count_present(const std::filesystem::path& dir,
                                 const std::vector<std::string>& names) {
  std::error_code ec;
  std::size_t n = 0;
  for (const std::string& name : names) n += std::filesystem::exists(dir / name, ec) ? 1 : 0;
  return n;
}

/// The directory holding the split's files: `dir` itself or its standard
/// subfolder. Fails with an I/O error naming the files expected.
inline std::filesystem::path find_dir(const std::string& dir, bool train, bool cifar100) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::vector<std::string> names = cifar_file_names(train, cifar100);
  const std::string split =
      cat(set_name(cifar100), " ", train ? "training" : "test", " set (", joined(names), ")");
  const std::string how = cat("; download ", archive(cifar100),
                              " (binary version) from https://www.cs.toronto.edu/~kriz/cifar.html"
                              " and unpack it, then pass the directory it was unpacked into");
  if (!fs::is_directory(dir, ec)) {
    if (fs::exists(dir, ec))
      fail(ErrorKind::io, cat("load_cifar: ", dir, ": not a directory (expected one holding the ",
                              split, " or its subfolder ", subfolder(cifar100), ")", how));
    fail(ErrorKind::io, cat("load_cifar: ", dir, ": no such directory (expected one holding the ",
                            split, " or its subfolder ", subfolder(cifar100), ")", how));
  }
  const fs::path top(dir);
  const fs::path sub = top / subfolder(cifar100);
  if (has_all(top, names)) return top;
  if (fs::is_directory(sub, ec) && has_all(sub, names)) return sub;

  // Name what is missing where some of the files are present.
  for (const fs::path& p : {top, sub}) {
    if (count_present(p, names) == 0) continue;
    std::vector<std::string> missing;
    for (const std::string& n : names)
      if (!fs::is_regular_file(p / n, ec)) missing.push_back(n);
    fail(ErrorKind::io,
         cat("load_cifar: ", p.string(), ": the ", split, " is incomplete: ", joined(missing),
             missing.size() == 1 ? " is" : " are", " missing or not a regular file"));
  }
  // A hint when the other variant is there.
  const std::vector<std::string> others = cifar_file_names(train, !cifar100);
  const bool other_here =
      count_present(top, others) > 0 || fs::is_directory(top / subfolder(!cifar100), ec);
  fail(ErrorKind::io,
       cat("load_cifar: ", dir, ": found none of the ", split, " in it or in its subfolder ",
           subfolder(cifar100),
           other_here ? cat(" (it holds ", set_name(!cifar100),
                            " files: pass cifar100 = ", cifar100 ? "false" : "true", ")")
                      : std::string(),
           how));
}

}  // namespace detail::cifar

/// Decodes the `count` bytes of one CIFAR file at `bytes`; `source` (a path)
/// names it in error messages. Images are N x 3 x 32 x 32, each pixel byte
/// times `scale`; labels are the (fine) labels; classes is 10 or 100. Fails
/// with ErrorKind::format on an empty file, a partial record or a bad label.
inline Dataset parse_cifar(const unsigned char* bytes, std::size_t count, const std::string& source,
                           bool cifar100, double scale = 1.0) {
  const std::array<float, 256> value = detail::cifar::value_table(scale);
  const std::size_t records = detail::cifar::check_size(count, source, cifar100);
  Dataset d = detail::cifar::allocate(records, cifar100);
  detail::cifar::decode(bytes, records, source, cifar100, value, d.images.data(), d.labels.data());
  return d;
}

/// Loads the training (train = true) or test split of CIFAR-10 (cifar100 =
/// false) or CIFAR-100 from `dir` or from its subfolder cifar-10-batches-bin
/// / cifar-100-binary, the files concatenated in cifar_file_names order.
/// All sizes are checked before anything is read; each file may hold at most
/// `max_bytes`. See the top of this file for the errors.
inline Dataset load_cifar(const std::string& dir, bool train, bool cifar100, double scale = 1.0,
                          std::size_t max_bytes = idx_default_max_bytes) {
  namespace fs = std::filesystem;
  const std::array<float, 256> value = detail::cifar::value_table(scale);
  const fs::path where = detail::cifar::find_dir(dir, train, cifar100);
  const std::vector<std::string> names = cifar_file_names(train, cifar100);

  // Sizes first: every file is checked before the dataset is allocated.
  std::vector<std::size_t> sizes;
  std::size_t total = 0;
  for (const std::string& name : names) {
    const std::string path = (where / name).string();
    std::error_code ec;
    const std::uintmax_t size = fs::file_size(path, ec);
    if (ec)
      fail(ErrorKind::io,
           cat("load_cifar: ", path, ": cannot read the file size (", ec.message(), ")"));
    if (size > max_bytes)
      fail(ErrorKind::format, cat("load_cifar: ", path, ": file size ", size,
                                  " exceeds the limit of ", max_bytes, " bytes"));
    total += detail::cifar::check_size(static_cast<std::size_t>(size), path, cifar100);
    sizes.push_back(static_cast<std::size_t>(size));
  }

  Dataset d = detail::cifar::allocate(total, cifar100);
  std::vector<unsigned char> buffer;
  std::size_t done = 0;  // records decoded so far
  for (std::size_t f = 0; f < names.size(); ++f) {
    const std::string path = (where / names[f]).string();
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(ErrorKind::io, cat("load_cifar: ", path, ": cannot open file for reading"));
    buffer.resize(sizes[f]);
    in.read(reinterpret_cast<char*>(buffer.data()), std::streamsize(buffer.size()));
    if (in.bad()) fail(ErrorKind::io, cat("load_cifar: ", path, ": read error"));
    const std::size_t got = static_cast<std::size_t>(in.gcount());
    // A file that changed between the size check and the read.
    if (got != sizes[f] || in.peek() != std::ifstream::traits_type::eof())
      fail(ErrorKind::io, cat("load_cifar: ", path, ": the file changed while being read (",
                              sizes[f], " bytes expected)"));
    const std::size_t records = sizes[f] / cifar_record_bytes(cifar100);
    detail::cifar::decode(buffer.data(), records, path, cifar100, value,
                          d.images.data() + done * cifar_pixel_bytes, d.labels.data() + done);
    done += records;
  }
  return d;
}

/// The name of CIFAR-10 class `label` (0 to 9), e.g. 0 -> "airplane".
inline const char* cifar10_class_name(int label) {
  static const char* const names[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                        "dog",      "frog",       "horse", "ship", "truck"};
  require(label >= 0 && label < 10, ErrorKind::argument, "cifar10_class_name: label ", label,
          " is not a CIFAR-10 class (0 to 9)");
  return names[label];
}

}  // namespace nsl
