// nsl/data/idx.hpp — IDX files (MNIST, Fashion-MNIST), plain or gzip-compressed.
//
// An IDX file is a 4-byte header, the dimensions and the data:
//   bytes 0-1   zero
//   byte  2     element type: 0x08 unsigned byte (the only type nsl reads;
//               0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32 and 0x0E
//               float64 are recognised and rejected by name)
//   byte  3     rank, 1 to 4 here
//   then        rank big-endian uint32 extents, outermost first
//   then        the product of the extents in bytes, C order, nothing after.
// MNIST-style image files have rank 3 (N x H x W), label files rank 1 (N).
//
//   read_gzip_or_plain(path, max_bytes)  the file's bytes, inflated if the
//                                        file starts with the gzip magic 1f 8b
//   parse_idx(bytes, count, source)      validates the header, copies the data
//   parse_idx_file(bytes, count, source) a file's bytes as stored (plain or
//                                        gzip) from memory: load_idx's twin
//   load_idx(path)                       reads and parses a file
//   load_idx_images<T>(path, scale)      rank 3 -> N x 1 x H x W Tensor<T> of
//                                        pixel value * scale
//   load_idx_labels(path)                rank 1 -> std::vector<int>
//   load_fashion_mnist(dir, train, scale) the train or t10k pair of a
//                                        Fashion-MNIST directory, checked
//   fashion_mnist_class_name(label)      "T-shirt/top", ..., "Ankle boot"
//
// Every malformed file fails with ErrorKind::format (nsl::FormatError) and a
// message "load_idx: <path>: <what is wrong>"; a file that cannot be opened
// or read fails with ErrorKind::io. A truncated or corrupt gzip stream
// (including a bad CRC or length trailer) is a format error, as is output
// beyond `max_bytes` (1 GiB by default), which is checked while inflating so
// a small "zip bomb" cannot exhaust memory. load_idx reads the header as
// soon as its bytes are in: a wrong header fails before the rest of the file
// is read or inflated, the buffer is sized once from the header (checked
// against `max_bytes` first), and inflating stops at the first byte more than
// the header asks for. The element count is checked for overflow (empty
// dimensions counted as 1) and against the bytes present before anything is
// allocated, so a header claiming a huge shape cannot trigger a huge
// allocation; the decoded images and labels are held to `max_bytes` too.
//
// Users of this header link zlib (CMake: ZLIB::ZLIB, by hand: -lz).
#pragma once

#include <zlib.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "nsl/core/error.hpp"
#include "nsl/core/shape.hpp"
#include "nsl/core/tensor.hpp"
#include "nsl/io/read_file.hpp"

namespace nsl {

/// Default bound on the bytes read_gzip_or_plain returns (after inflating).
inline constexpr std::size_t idx_default_max_bytes = default_max_read_bytes;

/// An IDX array of unsigned bytes: its extents (outermost first) and its
/// elements in C order.
struct IdxArray {
  std::vector<index> dims;
  std::vector<unsigned char> data;
};

namespace detail::idx {

inline constexpr std::size_t chunk_size = std::size_t(1) << 16;

/// "unsigned byte", "float32", ... for the IDX type codes; nullptr if unknown.
inline const char* type_name(unsigned code) {
  switch (code) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return nullptr;
  }
}

/// "0x0D"
inline std::string hex_byte(unsigned value) {
  const char* digits = "0123456789ABCDEF";
  std::string s = "0x";
  s += digits[(value >> 4) & 0xFu];
  s += digits[value & 0xFu];
  return s;
}

/// "[60000, 28, 28]"
template <class Int>
std::string dims_text(const Int* dims, int rank) {
  std::string s = "[";
  for (int i = 0; i < rank; ++i) {
    if (i) s += ", ";
    s += std::to_string(dims[i]);
  }
  return s + "]";
}

/// What the header says, and where the data starts.
struct Header {
  std::vector<index> dims;
  std::size_t data_offset = 0;
  std::size_t data_size = 0;
};

/// The header of an IDX file from its first `count` bytes: nothing while
/// they are too few to hold it (4 bytes, then 4 per dimension); fails with a
/// format error naming `source` as soon as what is there is wrong (magic,
/// type, rank, or dimensions that overflow, empty ones counted as 1). The
/// bytes present after the header are not looked at.
inline std::optional<Header> read_header(const unsigned char* bytes, std::size_t count,
                                         const std::string& source) {
  auto bad = [&](const std::string& what) {
    fail(ErrorKind::format, cat("load_idx: ", source, ": ", what));
  };
  if (count < 4) return std::nullopt;
  if (bytes[0] != 0 || bytes[1] != 0)
    bad(cat("not an IDX file (bad magic: the first two bytes must be 0x00 0x00, got ",
            hex_byte(bytes[0]), " ", hex_byte(bytes[1]), ")",
            bytes[0] == 0x1F && bytes[1] == 0x8B
                ? "; this is gzip-compressed data, which load_idx decompresses"
                : ""));
  const unsigned type = bytes[2];
  if (type != 0x08) {
    const char* name = type_name(type);
    bad(cat("unsupported data type code ", hex_byte(type),
            name ? cat(" (", name, ")") : std::string(" (not an IDX type)"),
            "; nsl reads 0x08 (unsigned byte)"));
  }
  const int rank = bytes[3];
  if (rank < 1 || rank > Shape::max_rank)
    bad(cat("rank ", rank, rank == 0 ? " (a scalar)" : "",
            " is not supported; nsl reads IDX arrays of rank 1 to ", Shape::max_rank));
  const std::size_t header_size = 4 + 4 * std::size_t(rank);
  if (count < header_size) return std::nullopt;

  std::array<std::uint64_t, Shape::max_rank> raw{};
  for (int i = 0; i < rank; ++i) {
    const unsigned char* p = bytes + 4 + 4 * i;
    raw[std::size_t(i)] = (std::uint64_t(p[0]) << 24) | (std::uint64_t(p[1]) << 16) |
                          (std::uint64_t(p[2]) << 8) | std::uint64_t(p[3]);
  }
  // The element count (1 byte each) must be addressable as a tensor.
  if (!extents_addressable(raw.data(), rank))
    bad(cat("element count of dimensions ", dims_text(raw.data(), rank),
            " overflows the addressable size"));
  Header h;
  h.dims.reserve(std::size_t(rank));
  std::uint64_t n = 1;
  for (int i = 0; i < rank; ++i) {
    h.dims.push_back(static_cast<index>(raw[std::size_t(i)]));
    n *= raw[std::size_t(i)];
  }
  h.data_offset = header_size;
  h.data_size = static_cast<std::size_t>(n);
  return h;
}

/// Validates the header of the `count` bytes at `bytes` and the data size it
/// implies; fails with a format error naming `source` on anything wrong.
inline Header parse_header(const unsigned char* bytes, std::size_t count,
                           const std::string& source) {
  auto bad = [&](const std::string& what) {
    fail(ErrorKind::format, cat("load_idx: ", source, ": ", what));
  };
  if (count < 4)
    bad(cat("file too short for an IDX header (", count, " bytes, the header needs 4)"));
  std::optional<Header> h = read_header(bytes, count, source);
  if (!h) {
    const int rank = bytes[3];
    bad(cat("file ends inside the dimensions (rank ", rank, " needs a ", 4 + 4 * rank,
            "-byte header, file has ", count, " bytes)"));
  }
  const std::size_t available = count - h->data_offset;
  const int rank = int(h->dims.size());
  if (h->data_size > available)
    bad(cat("data truncated: dimensions ", dims_text(h->dims.data(), rank), " need ", h->data_size,
            " bytes of data, file has ", available));
  if (h->data_size < available)
    bad(cat("trailing bytes after the data: dimensions ", dims_text(h->dims.data(), rank), " need ",
            h->data_size, " bytes of data, file has ", available));
  return std::move(*h);
}

/// Calls inflateEnd on scope exit (also when fail() throws).
struct InflateGuard {
  z_stream* stream;
  ~InflateGuard() { inflateEnd(stream); }
};

/// `dir/name.gz` if it exists, else `dir/name` if it exists; fails otherwise.
inline std::string pick_file(const std::string& dir, const std::string& name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path gz = fs::path(dir) / (name + ".gz");
  if (fs::exists(gz, ec)) return gz.string();
  const fs::path plain = fs::path(dir) / name;
  if (fs::exists(plain, ec)) return plain.string();
  fail(ErrorKind::io, cat("load_fashion_mnist: ", dir, ": found neither ", name, ".gz nor ", name));
}

}  // namespace detail::idx

namespace detail::idx {

/// A run of bytes.
struct Span {
  const unsigned char* data = nullptr;
  std::size_t size = 0;
};

/// A file read in chunks: next() is the next chunk, empty at the end.
class FileInput {
 public:
  FileInput(const std::string& path, const std::string& where) : where_(where), buffer_(chunk_size) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) fail(ErrorKind::io, where + "is a directory, not a file");
    in_.open(path, std::ios::binary);
    if (!in_) fail(ErrorKind::io, where + "cannot open file for reading");
    const auto size = std::filesystem::file_size(path, ec);
    if (!ec) size_ = static_cast<std::size_t>(std::min<std::uintmax_t>(size, std::numeric_limits<std::size_t>::max()));
  }
  Span next() {
    if (!in_) return {};  // the end was reached earlier
    in_.read(reinterpret_cast<char*>(buffer_.data()), std::streamsize(buffer_.size()));
    if (in_.bad()) fail(ErrorKind::io, where_ + "read error");
    return {buffer_.data(), static_cast<std::size_t>(in_.gcount())};
  }
  /// The file's size, if the file system says; else 0.
  std::size_t size() const { return size_; }

 private:
  std::string where_;
  std::ifstream in_;
  std::vector<unsigned char> buffer_;
  std::size_t size_ = 0;
};

/// Bytes already in memory, given out as one chunk.
class MemoryInput {
 public:
  MemoryInput(const unsigned char* bytes, std::size_t count) : bytes_(bytes), count_(count) {}
  Span next() {
    const Span s{bytes_, count_};
    count_ = 0;
    return s;
  }
  std::size_t size() const { return count_; }

 private:
  const unsigned char* bytes_;
  std::size_t count_;
};

/// "Not known yet", from a Measure (see read_all).
inline constexpr std::size_t unknown_size = std::numeric_limits<std::size_t>::max();

/// All bytes of `in`, inflated if they start with the gzip magic 1f 8b
/// (concatenated members are joined, as gzip -d does). At most `max_bytes`
/// are kept (else a format error, "<where>file size / decompressed size
/// exceeds the limit"). `measure(p, n)` sees the output after each addition
/// until it returns the size the output must have (it reads that from a
/// header, and may fail on a bad one); from then on the buffer is reserved
/// once at that size, and inflating stops as soon as the output is longer,
/// with `longer` set, so that no more than the header asks for is inflated.
/// Errors: see read_gzip_or_plain.
template <class Input, class Measure>
std::vector<unsigned char> read_all(Input& in, std::size_t max_bytes, const std::string& where,
                                    Measure&& measure, bool& longer) {
  longer = false;
  auto too_large = [&](const char* what) {
    fail(ErrorKind::format, cat(where, what, " exceeds the limit of ", max_bytes, " bytes"));
  };
  Span chunk = in.next();
  const bool gzip = chunk.size >= 2 && chunk.data[0] == 0x1F && chunk.data[1] == 0x8B;
  std::vector<unsigned char> out;
  std::size_t expected = unknown_size;
  auto measure_bytes = [&](const unsigned char* p, std::size_t n) {
    expected = measure(p, n);
    if (expected != unknown_size && expected < max_bytes) out.reserve(expected + 1);
  };
  // Appends n bytes; returns true once the output is longer than expected.
  auto append = [&](const unsigned char* p, std::size_t n) {
    constexpr std::size_t probe = 64;  // enough for any header measured here
    if (expected == unknown_size && out.size() < probe) {
      // The header first, so that a bad one is named before the size is.
      std::array<unsigned char, probe> head{};
      const std::size_t k = std::min(probe - out.size(), n);
      std::copy(out.begin(), out.end(), head.begin());
      std::copy(p, p + k, head.begin() + std::ptrdiff_t(out.size()));
      measure_bytes(head.data(), out.size() + k);
    }
    if (n > max_bytes - out.size()) too_large(gzip ? "decompressed size" : "file size");
    if (out.size() + n > out.capacity())  // geometric growth, never past the limit
      out.reserve(std::min(max_bytes, std::max(out.capacity() * 2, out.size() + n)));
    out.insert(out.end(), p, p + n);
    if (expected == unknown_size) measure_bytes(out.data(), out.size());
    return expected != unknown_size && out.size() > expected;
  };

  if (!gzip) {
    if (in.size() > max_bytes) too_large("file size");
    out.reserve(in.size());
    for (; chunk.size > 0; chunk = in.next()) append(chunk.data, chunk.size);
    return out;
  }

  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)  // 16: gzip wrapper only
    fail(ErrorKind::io, where + "cannot initialize zlib");
  InflateGuard guard{&zs};
  std::vector<unsigned char> stage(chunk_size);  // inflated, not yet appended
  std::size_t members = 0;  // complete gzip members so far
  bool ended = false;       // the last member ended and no new one began
  bool eof = false;
  zs.next_in = const_cast<unsigned char*>(chunk.data);
  zs.avail_in = static_cast<uInt>(chunk.size);
  for (;;) {
    if (zs.avail_in == 0 && !eof) {
      chunk = in.next();
      eof = chunk.size == 0;
      zs.next_in = const_cast<unsigned char*>(chunk.data);
      zs.avail_in = static_cast<uInt>(chunk.size);
    }
    if (ended) {
      if (zs.avail_in == 0) break;  // the input ends right after a member: done
      if (inflateReset(&zs) != Z_OK) fail(ErrorKind::io, where + "cannot reset zlib");
      ended = false;
    }
    if (zs.avail_in == 0)
      fail(ErrorKind::format,
           cat(where, "gzip stream truncated (the file ends before the end of the ",
               members ? "next member" : "compressed data", ", after ", out.size(),
               " decompressed bytes)"));
    zs.next_out = stage.data();
    zs.avail_out = static_cast<uInt>(stage.size());
    const int rc = inflate(&zs, Z_NO_FLUSH);
    const std::size_t produced = stage.size() - zs.avail_out;
    if (produced > 0 && append(stage.data(), produced)) {
      longer = true;
      return out;
    }
    if (rc == Z_STREAM_END) {
      ended = true;
      ++members;
      continue;
    }
    if (rc == Z_OK || rc == Z_BUF_ERROR) continue;  // needs more input or output space
    if (rc == Z_MEM_ERROR) fail(ErrorKind::io, where + "zlib ran out of memory");
    const std::string detail = zs.msg ? cat(" (", zs.msg, ")") : std::string();
    if (members > 0)
      fail(ErrorKind::format,
           cat(where, "data after the end of the gzip stream is not a gzip member", detail));
    fail(ErrorKind::format, cat(where, "corrupt gzip stream", detail));
  }
  return out;
}

/// An IDX array from `in` (plain or gzip): the header is read as soon as its
/// bytes are in, so a wrong header fails before the rest is read or
/// inflated, and a gzip stream is inflated no further than the header asks.
template <class Input>
IdxArray read_idx(Input& in, std::size_t max_bytes, const std::string& source) {
  const std::string where = cat("load_idx: ", source, ": ");
  auto measure = [&](const unsigned char* p, std::size_t n) {
    const std::optional<Header> h = read_header(p, n, source);
    if (!h) return unknown_size;
    const std::size_t total = h->data_offset + h->data_size;  // data_size < 2^60
    if (total > max_bytes)
      fail(ErrorKind::format, cat(where, "dimensions ", dims_text(h->dims.data(), int(h->dims.size())),
                                  " need ", total, " bytes, which exceeds the limit of ", max_bytes, " bytes"));
    return total;
  };
  bool longer = false;
  std::vector<unsigned char> bytes = read_all(in, max_bytes, where, measure, longer);
  Header h = longer ? *read_header(bytes.data(), bytes.size(), source) : parse_header(bytes.data(), bytes.size(), source);
  if (longer)
    fail(ErrorKind::format, cat(where, "trailing bytes after the data: dimensions ",
                                dims_text(h.dims.data(), int(h.dims.size())), " need ", h.data_size,
                                " bytes of data, the decompressed stream holds more"));
  IdxArray out;
  out.dims = std::move(h.dims);
  // Reuse the buffer: drop the header in place rather than copy the data.
  bytes.erase(bytes.begin(), bytes.begin() + std::ptrdiff_t(h.data_offset));
  out.data = std::move(bytes);
  return out;
}

}  // namespace detail::idx

/// The bytes of the file at `path`, inflated if the file starts with the gzip
/// magic 1f 8b (concatenated gzip members are joined, as gzip -d does).
/// Fails with ErrorKind::io if the file cannot be opened or read, and with
/// ErrorKind::format if the gzip stream is truncated or corrupt, if anything
/// but another gzip member follows it, or if the result would exceed
/// `max_bytes` (checked while inflating; the buffer never grows past it).
/// Messages start with "<op>: <path>: ".
inline std::vector<unsigned char> read_gzip_or_plain(const std::string& path,
                                                     std::size_t max_bytes = idx_default_max_bytes,
                                                     const char* op = "load_idx") {
  const std::string where = cat(op, ": ", path, ": ");
  detail::idx::FileInput in(path, where);
  bool longer = false;
  return detail::idx::read_all(in, max_bytes, where,
                               [](const unsigned char*, std::size_t) { return detail::idx::unknown_size; }, longer);
}

/// Parses the `count` bytes of an IDX file at `bytes` (already decompressed);
/// `source_name` (a path) names the file in error messages. See the top of
/// this file for what is accepted; anything else fails with ErrorKind::format.
inline IdxArray parse_idx(const unsigned char* bytes, std::size_t count,
                          const std::string& source_name) {
  detail::idx::Header h = detail::idx::parse_header(bytes, count, source_name);
  IdxArray out;
  out.dims = std::move(h.dims);
  out.data.assign(bytes + h.data_offset, bytes + h.data_offset + h.data_size);
  return out;
}

/// Parses the `count` bytes of an IDX file as stored, plain or
/// gzip-compressed (what load_idx reads from a file, from memory): the
/// in-memory twin of load_idx, with the same checks and messages.
inline IdxArray parse_idx_file(const unsigned char* bytes, std::size_t count, const std::string& source_name,
                               std::size_t max_bytes = idx_default_max_bytes) {
  detail::idx::MemoryInput in(bytes, count);
  return detail::idx::read_idx(in, max_bytes, source_name);
}

/// Reads the IDX file at `path`, plain or gzip-compressed, keeping at most
/// `max_bytes` (see read_gzip_or_plain and parse_idx). The header is checked
/// as soon as it is read: a wrong one fails before the rest of the file is
/// read or inflated.
inline IdxArray load_idx(const std::string& path, std::size_t max_bytes = idx_default_max_bytes) {
  detail::idx::FileInput in(path, cat("load_idx: ", path, ": "));
  return detail::idx::read_idx(in, max_bytes, path);
}

/// Loads a rank-3 IDX image file (N x H x W bytes) as an N x 1 x H x W tensor
/// whose elements are the pixel values times `scale` (1/255.0 maps to [0, 1]).
/// `max_bytes` bounds the file's bytes and the tensor's (N H W sizeof(T)).
template <class T>
Tensor<T> load_idx_images(const std::string& path, double scale = 1.0,
                          std::size_t max_bytes = idx_default_max_bytes) {
  static_assert(std::is_floating_point_v<T>, "load_idx_images: T must be float or double");
  require(std::isfinite(scale), ErrorKind::argument, "load_idx_images: ", path,
          ": scale must be finite, got ", scale);
  const IdxArray a = load_idx(path, max_bytes);
  if (a.dims.size() != 3)
    fail(ErrorKind::format,
         cat("load_idx: ", path, ": expected rank 3 images (N x H x W), got rank ", a.dims.size(),
             " ", detail::idx::dims_text(a.dims.data(), int(a.dims.size()))));
  if (a.data.size() > max_bytes / sizeof(T))
    fail(ErrorKind::format, cat("load_idx: ", path, ": ", a.data.size(), " pixels as ", sizeof(T),
                                "-byte values exceed the limit of ", max_bytes, " bytes"));
  std::array<T, 256> value{};
  for (std::size_t v = 0; v < value.size(); ++v) value[v] = static_cast<T>(double(v) * scale);
  Tensor<T> out;
  out.resize(Shape{a.dims[0], 1, a.dims[1], a.dims[2]});  // every element is set below
  T* dst = out.data();
  for (std::size_t i = 0; i < a.data.size(); ++i) dst[i] = value[a.data[i]];
  return out;
}

/// Loads a rank-1 IDX label file (N bytes) as N ints. `max_bytes` bounds
/// the file's bytes and the labels' (N sizeof(int)).
inline std::vector<int> load_idx_labels(const std::string& path, std::size_t max_bytes = idx_default_max_bytes) {
  const IdxArray a = load_idx(path, max_bytes);
  if (a.dims.size() != 1)
    fail(ErrorKind::format,
         cat("load_idx: ", path, ": expected rank 1 labels (N), got rank ", a.dims.size(), " ",
             detail::idx::dims_text(a.dims.data(), int(a.dims.size()))));
  if (a.data.size() > max_bytes / sizeof(int))
    fail(ErrorKind::format, cat("load_idx: ", path, ": ", a.data.size(), " labels as ", sizeof(int),
                                "-byte ints exceed the limit of ", max_bytes, " bytes"));
  return std::vector<int>(a.data.begin(), a.data.end());
}

/// Images (N x 1 x H x W, pixel value times scale), their labels and the
/// number of classes.
struct Dataset {
  Tensor<float> images;
  std::vector<int> labels;
  index classes = 0;
};

/// Loads Fashion-MNIST's training set (train = true: train-images-idx3-ubyte,
/// train-labels-idx1-ubyte) or test set (t10k-...) from `dir`, each file
/// gzip-compressed (name.gz, preferred) or plain (name). Fails with
/// ErrorKind::io if a file is missing, and with ErrorKind::format if the
/// image and label counts differ or a label is not in 0..9. classes = 10.
inline Dataset load_fashion_mnist(const std::string& dir, bool train, double scale = 1.0) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    fail(ErrorKind::io, cat("load_fashion_mnist: ", dir, ": not a directory"));
  const std::string prefix = train ? "train" : "t10k";
  const std::string labels_path = detail::idx::pick_file(dir, prefix + "-labels-idx1-ubyte");
  const std::string images_path = detail::idx::pick_file(dir, prefix + "-images-idx3-ubyte");

  Dataset d;
  d.classes = 10;
  d.labels = load_idx_labels(labels_path);
  for (std::size_t i = 0; i < d.labels.size(); ++i)
    if (d.labels[i] >= d.classes)
      fail(ErrorKind::format, cat("load_fashion_mnist: ", labels_path, ": label ", d.labels[i],
                                  " at index ", i, " is not a Fashion-MNIST class (0 to 9)"));
  d.images = load_idx_images<float>(images_path, scale);
  if (d.images.dim(0) != index(d.labels.size()))
    fail(ErrorKind::format,
         cat("load_fashion_mnist: ", dir, ": ", images_path, " has ", d.images.dim(0),
             " images but ", labels_path, " has ", d.labels.size(), " labels"));
  return d;
}

/// The name of Fashion-MNIST class `label` (0 to 9), e.g. 9 -> "Ankle boot".
inline const char* fashion_mnist_class_name(int label) {
  static const char* const names[10] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                        "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                        "Bag",         "Ankle boot"};
  require(label >= 0 && label < 10, ErrorKind::argument, "fashion_mnist_class_name: label ", label,
          " is not a Fashion-MNIST class (0 to 9)");
  return names[label];
}

}  // namespace nsl
