// nsl/io/checkpoint.hpp — versioned binary checkpoints of training state:
// string metadata (epoch, learning rate, flags...) and named float32 tensors
// (parameters, BatchNorm statistics, optimiser velocities).
//
// File layout, version 1. Every integer is little-endian and every field is
// written byte by byte (never a struct dump), so files move between hosts:
//
//   offset 0   8 bytes   magic "NSLCKPT\0"
//              u32       format version, 1
//              u32       metadata count M (<= 1e6), then M entries of
//                          u32 key length (<= 4096)       key bytes
//                          u32 value length (<= 1 MiB)    value bytes
//              u32       tensor count N (<= 1e6), then N entries of
//                          u32 name length (<= 4096)      name bytes
//                          u8  rank (1 to 4)
//                          rank x u64 extents, outermost first
//                          product(extents) x float32 (IEEE 754 bits), C order
//              u32       CRC-32 (zlib's crc32) of every byte before it
//   and nothing after. Keys, values and names are raw bytes (UTF-8 by
//   convention); keys and tensor names are unique within a file.
//
//   Checkpoint                       the file in memory: metadata and tensors,
//                                    both in file order
//   save_checkpoint(path, ck)        writes a temporary file beside `path`,
//                                    then renames it over `path`
//   parse_checkpoint(bytes, n, src)  validates and decodes a file's bytes
//   load_checkpoint(path)            reads and parses a file
//   store / restore                  copy a model's Parameter<T> / Buffer<T>
//                                    views into / out of a checkpoint under a
//                                    name prefix (T = float or double; values
//                                    are stored as float32)
//   store_tensor / restore_tensor    the same for one named view (optimiser
//                                    velocities, ...)
//
// Loading: every malformed file fails with ErrorKind::format (FormatError)
// and a message "load_checkpoint: <path>: <what is wrong>"; a file that
// cannot be opened or read fails with ErrorKind::io. load_checkpoint looks
// at the magic before it reads the rest, and refuses a file of more than
// `max_bytes` (1 GiB by default) before reading it. Magic and version are
// checked first; then, for a file long enough to hold a checksum, the CRC-32.
// On a checksum mismatch the structure is still walked (bounds checks only)
// so that a cut-short file says where it ends ("truncated in tensor 'w'
// (data): ...; checksum mismatch: ..."); a file whose structure is intact
// says "checksum mismatch: file is corrupted". Every length, count and data
// size is checked against its limit and against the bytes remaining before
// anything is allocated, whether or not the checksum matched.
//
// Saving: a crash or an I/O error never leaves a half-written file at `path`;
// on failure the temporary file is removed and `path` is untouched.
//
// Users of this header link zlib (CMake: ZLIB::ZLIB, by hand: -lz): the
// fields and the CRC-32 are nsl/core/bytes.hpp's.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_set>
#include <utility>
#include <vector>

#include "nsl/core/bytes.hpp"
#include "nsl/core/error.hpp"
#include "nsl/core/shape.hpp"
#include "nsl/core/tensor.hpp"
#include "nsl/io/atomic_file.hpp"
#include "nsl/io/read_file.hpp"
#include "nsl/layers/layer.hpp"

namespace nsl {

/// A checkpoint in memory: string metadata and named float32 tensors, each in
/// insertion (= file) order. Keys and names are unique (set() replaces, add()
/// refuses a duplicate); the fields are public, and save_checkpoint checks
/// them again.
struct Checkpoint {
  static constexpr std::uint32_t format_version = 1;
  static constexpr std::size_t max_name_size = 4096;                   ///< keys and tensor names
  static constexpr std::size_t max_value_size = std::size_t(1) << 20;  ///< metadata values
  static constexpr std::size_t max_count = 1000000;  ///< metadata entries, tensors

  std::vector<std::pair<std::string, std::string>> metadata;
  std::vector<std::pair<std::string, Tensor<float>>> tensors;

  /// Sets metadata `key` to `value`: replaces an existing entry in place or
  /// appends a new one.
  void set(const std::string& key, const std::string& value) {
    require(key.size() <= max_name_size, ErrorKind::argument, "Checkpoint::set: key of ",
            key.size(), " bytes exceeds the ", max_name_size, "-byte limit");
    require(value.size() <= max_value_size, ErrorKind::argument, "Checkpoint::set: value of '", key,
            "' has ", value.size(), " bytes, over the ", max_value_size, "-byte limit");
    for (auto& entry : metadata)
      if (entry.first == key) {
        entry.second = value;
        return;
      }
    require(metadata.size() < max_count, ErrorKind::argument, "Checkpoint::set: more than ",
            max_count, " metadata entries");
    metadata.emplace_back(key, value);
  }
  /// The value of `key`, or nullptr.
  const std::string* get(const std::string& key) const {
    for (const auto& entry : metadata)
      if (entry.first == key) return &entry.second;
    return nullptr;
  }
  /// The value of `key`; fails with ErrorKind::format naming the key if absent.
  const std::string& require_meta(const std::string& key) const {
    const std::string* value = get(key);
    if (!value) fail(ErrorKind::format, cat("checkpoint has no metadata key '", key, "'"));
    return *value;
  }

  /// Appends a copy of `t` named `name`; fails on a duplicate name, a rank-0
  /// (default-constructed) tensor or a name over the limit.
  void add(const std::string& name, TensorView<const float> t) {
    check_new_tensor(name, t.shape());
    tensors.emplace_back(name, Tensor<float>(t));
  }
  /// Appends `t` itself (no copy); same checks.
  void add(const std::string& name, Tensor<float>&& t) {
    check_new_tensor(name, t.shape());
    tensors.emplace_back(name, std::move(t));
  }
  /// The tensor named `name`, or nullptr.
  const Tensor<float>* find(const std::string& name) const {
    for (const auto& entry : tensors)
      if (entry.first == name) return &entry.second;
    return nullptr;
  }

 private:
  void check_new_tensor(const std::string& name, const Shape& shape) const {
    require(name.size() <= max_name_size, ErrorKind::argument, "Checkpoint::add: name of ",
            name.size(), " bytes exceeds the ", max_name_size, "-byte limit");
    require(shape.rank() >= 1, ErrorKind::shape, "Checkpoint::add: tensor '", name,
            "' has rank 0 (an empty, default-constructed tensor)");
    require(find(name) == nullptr, ErrorKind::argument, "Checkpoint::add: duplicate tensor name '",
            name, "'");
    require(tensors.size() < max_count, ErrorKind::argument, "Checkpoint::add: more than ",
            max_count, " tensors");
  }
};

namespace detail::checkpoint {

inline constexpr char magic[8] = {'N', 'S', 'L', 'C', 'K', 'P', 'T', '\0'};
inline constexpr std::size_t magic_size = 8;
/// Magic, version, metadata count, tensor count, checksum.
inline constexpr std::size_t min_file_size = magic_size + 4 + 4 + 4 + 4;
/// Smallest encodings of a metadata entry (two empty strings) and of a
/// tensor (empty name, rank 1, extent 0), for bounding counts by bytes.
inline constexpr std::size_t min_meta_entry_size = 4 + 4;
inline constexpr std::size_t min_tensor_entry_size = 4 + 1 + 8;

/// A name from a file, quoted for a message: printable ASCII kept, other
/// bytes as '?', at most 80 characters.
inline std::string printable_name(std::string_view name) {
  std::string s = "'";
  for (std::size_t i = 0; i < name.size() && i < 80; ++i) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    s += (c >= 0x20 && c < 0x7F) ? char(c) : '?';
  }
  if (name.size() > 80) s += "...";
  return s + "'";
}

/// "[2, 3]" from `rank` raw extents.
inline std::string extents_text(const std::uint64_t* extents, int rank) {
  std::string s = "[";
  for (int i = 0; i < rank; ++i) s += cat(i ? ", " : "", extents[i]);
  return s + "]";
}

/// Fails (ErrorKind::format) unless the `count` bytes at `bytes` start with
/// the checkpoint magic.
inline void check_magic(const unsigned char* bytes, std::size_t count, const std::string& source) {
  if (count < magic_size || std::memcmp(bytes, magic, magic_size) != 0)
    fail(ErrorKind::format, cat("load_checkpoint: ", source, ": not a checkpoint (bad magic",
                                count < magic_size ? ", file too short" : "", ")"));
}

/// Walks a checkpoint's bytes after magic and version, checking every size
/// against its limit and the bytes remaining before using it. With `out`, it
/// also decodes into `out`; without, it only checks the structure. Returns
/// false with `problem` set on the first problem; never reads out of bounds
/// and never fails on its own, so parse_checkpoint chooses the message.
struct Walker {
  const unsigned char* bytes;
  std::size_t count;
  std::size_t pos;
  Checkpoint* out;
  std::string problem;

  std::size_t remaining() const { return count - pos; }
  bool bad(std::string what) {
    problem = std::move(what);
    return false;
  }
  /// True if `n` more bytes are present; else a truncation naming `where()`.
  template <class Where>
  bool need(std::size_t n, const Where& where) {
    if (remaining() >= n) return true;
    return bad(cat("truncated in ", where(), ": needs ", n, " bytes, ", remaining(), " remain"));
  }
  template <class Where>
  bool read_u32(std::uint32_t& v, const Where& where) {
    if (!need(4, where)) return false;
    v = load_le_u32(bytes + pos);
    pos += 4;
    return true;
  }
  /// A (u32 length, bytes) string of at most `limit` bytes, as a view into
  /// the buffer; `what` names it in messages.
  template <class Where>
  bool read_string(std::string_view& s, std::size_t limit, const char* what, const Where& where) {
    std::uint32_t length = 0;
    if (!read_u32(length, [&] { return cat(where(), ", ", what, " length"); })) return false;
    if (length > limit)
      return bad(
          cat(where(), ": ", what, " length ", length, " exceeds the ", limit, "-byte limit"));
    if (!need(length, [&] { return cat(where(), ", ", what); })) return false;
    s = std::string_view(reinterpret_cast<const char*>(bytes + pos), length);
    pos += length;
    return true;
  }
  /// A u32 entry count of at most max_count entries of at least
  /// `min_entry` bytes each.
  bool read_count(std::uint32_t& n, const char* what, const char* section, std::size_t min_entry) {
    if (!read_u32(n, [&] { return cat("the ", what, " count"); })) return false;
    if (n > Checkpoint::max_count)
      return bad(cat(what, " count ", n, " exceeds the limit of ", Checkpoint::max_count));
    if (std::size_t(n) * min_entry > remaining())
      return bad(cat("truncated in ", section, ": ", n, " entries need at least ",
                     std::size_t(n) * min_entry, " bytes, ", remaining(), " remain"));
    return true;
  }

  bool walk() {
    // Metadata.
    std::uint32_t n_meta = 0;
    if (!read_count(n_meta, "metadata", "the metadata", min_meta_entry_size)) return false;
    if (out) out->metadata.reserve(n_meta);
    std::unordered_set<std::string_view> keys;
    for (std::uint32_t i = 0; i < n_meta; ++i) {
      std::string_view key, value;
      if (!read_string(key, Checkpoint::max_name_size, "key",
                       [&] { return cat("the metadata (entry ", i + 1, " of ", n_meta, ")"); }))
        return false;
      if (!read_string(value, Checkpoint::max_value_size, "value", [&] {
            return cat("the metadata (entry ", checkpoint::printable_name(key), ")");
          }))
        return false;
      if (!keys.insert(key).second)
        return bad(cat("duplicate metadata key ", checkpoint::printable_name(key)));
      if (out) out->metadata.emplace_back(std::string(key), std::string(value));
    }

    // Tensors.
    std::uint32_t n_tensors = 0;
    if (!read_count(n_tensors, "tensor", "the tensor list", min_tensor_entry_size)) return false;
    if (out) out->tensors.reserve(n_tensors);
    std::unordered_set<std::string_view> names;
    for (std::uint32_t i = 0; i < n_tensors; ++i) {
      std::string_view name;
      if (!read_string(name, Checkpoint::max_name_size, "name",
                       [&] { return cat("tensor ", i + 1, " of ", n_tensors); }))
        return false;
      const auto in_tensor = [&](const char* part) {
        return
            [&, part] { return cat("tensor ", checkpoint::printable_name(name), " (", part, ")"); };
      };
      if (!names.insert(name).second)
        return bad(cat("duplicate tensor ", checkpoint::printable_name(name)));
      if (!need(1, in_tensor("rank"))) return false;
      const int rank = bytes[pos++];
      if (rank < 1 || rank > Shape::max_rank)
        return bad(cat("tensor ", checkpoint::printable_name(name), ": bad rank ", rank,
                       " (nsl tensors have rank 1 to ", Shape::max_rank, ")"));
      if (!need(std::size_t(rank) * 8, in_tensor("extents"))) return false;
      std::uint64_t raw[Shape::max_rank] = {};
      index extents[Shape::max_rank] = {};
      // Same guard as Shape: the element count, empty extents counted as 1,
      // times 8 must fit in `index`.
      const std::uint64_t max_index = std::uint64_t(std::numeric_limits<index>::max());
      std::uint64_t elements = 1;
      for (int d = 0; d < rank; ++d) raw[d] = load_le_u64(bytes + pos + std::size_t(d) * 8);
      pos += std::size_t(rank) * 8;
      const bool absurd = !extents_addressable(raw, rank);
      for (int d = 0; d < rank && !absurd; ++d) {
        elements *= raw[d];
        extents[d] = index(std::min(raw[d], max_index));
      }
      if (absurd)
        return bad(cat("tensor ", checkpoint::printable_name(name), ": absurd extents ",
                       extents_text(raw, rank), " (the element count overflows)"));
      if (elements > remaining() / 4)  // data size compared without overflow
        return bad(cat("truncated in tensor ", checkpoint::printable_name(name), " (data): shape ",
                       extents_text(raw, rank), " needs ", elements, " x 4 bytes, ", remaining(),
                       " remain"));
      const std::size_t data_size = std::size_t(elements) * 4;
      if (out) {
        Tensor<float> t;
        t.resize(Shape::from(extents, rank));  // uninitialized; every element is set below
        const unsigned char* data = bytes + pos;
        float* dst = t.data();
        for (std::size_t k = 0; k < std::size_t(elements); ++k) dst[k] = load_le_f32(data + 4 * k);
        out->tensors.emplace_back(std::string(name), std::move(t));
      }
      pos += data_size;
    }

    // Checksum, then nothing.
    if (remaining() < 4) return need(4, [] { return std::string("the checksum"); });
    if (remaining() > 4)
      return bad(cat("trailing bytes: ", remaining() - 4, remaining() == 5 ? " byte" : " bytes",
                     " after the checksum"));
    return true;
  }
};

/// A buffered byte sink (for the put_* writers of nsl/core/bytes.hpp) that
/// keeps the CRC-32 of what it wrote.
class Writer {
 public:
  using value_type = unsigned char;
  explicit Writer(std::ofstream& out) : out_(out) {}

  void push_back(unsigned char c) {
    if (used_ == sizeof buffer_) flush();
    buffer_[used_++] = c;
  }
  /// Writes out the buffer; returns the CRC-32 of everything written so far.
  std::uint32_t flush() {
    crc_ = crc32_of(buffer_, used_, crc_);
    out_.write(reinterpret_cast<const char*>(buffer_), std::streamsize(used_));
    used_ = 0;
    return crc_;
  }
  bool ok() const { return bool(out_); }

 private:
  std::ofstream& out_;
  unsigned char buffer_[1 << 16];
  std::size_t used_ = 0;
  std::uint32_t crc_ = 0;
};

/// Fails with `kind` unless `ck` can be written and read back: limits,
/// unique keys and names, ranks 1 to 4.
inline void check_savable(const std::string& path, const Checkpoint& ck) {
  auto bad = [&](ErrorKind kind, const std::string& what) {
    fail(kind, cat("save_checkpoint: ", path, ": ", what));
  };
  if (ck.metadata.size() > Checkpoint::max_count)
    bad(ErrorKind::argument,
        cat(ck.metadata.size(), " metadata entries exceed the limit of ", Checkpoint::max_count));
  if (ck.tensors.size() > Checkpoint::max_count)
    bad(ErrorKind::argument,
        cat(ck.tensors.size(), " tensors exceed the limit of ", Checkpoint::max_count));
  std::unordered_set<std::string_view> seen;
  for (const auto& [key, value] : ck.metadata) {
    if (key.size() > Checkpoint::max_name_size)
      bad(ErrorKind::argument, cat("metadata key of ", key.size(), " bytes exceeds the ",
                                   Checkpoint::max_name_size, "-byte limit"));
    if (value.size() > Checkpoint::max_value_size)
      bad(ErrorKind::argument,
          cat("metadata value of ", checkpoint::printable_name(key), " has ", value.size(),
              " bytes, over the ", Checkpoint::max_value_size, "-byte limit"));
    if (!seen.insert(key).second)
      bad(ErrorKind::argument, cat("duplicate metadata key ", checkpoint::printable_name(key)));
  }
  seen.clear();
  for (const auto& [name, t] : ck.tensors) {
    if (name.size() > Checkpoint::max_name_size)
      bad(ErrorKind::argument, cat("tensor name of ", name.size(), " bytes exceeds the ",
                                   Checkpoint::max_name_size, "-byte limit"));
    if (t.rank() < 1)
      bad(ErrorKind::shape, cat("tensor ", checkpoint::printable_name(name),
                                " has rank 0 (an empty, default-constructed tensor)"));
    if (!seen.insert(name).second)
      bad(ErrorKind::argument, cat("duplicate tensor ", checkpoint::printable_name(name)));
  }
}

}  // namespace detail::checkpoint

/// Decodes the `count` bytes of a checkpoint file at `bytes`; `source` (a
/// path) names the file in messages. Every problem fails with
/// ErrorKind::format and "load_checkpoint: <source>: <what>".
inline Checkpoint parse_checkpoint(const unsigned char* bytes, std::size_t count,
                                   const std::string& source) {
  namespace ck = detail::checkpoint;
  auto bad = [&](const std::string& what) {
    fail(ErrorKind::format, cat("load_checkpoint: ", source, ": ", what));
  };
  ck::check_magic(bytes, count, source);
  if (count < ck::magic_size + 4)
    bad(cat("truncated in the format version: needs 4 bytes, ", count - ck::magic_size, " remain"));
  const std::uint32_t version = load_le_u32(bytes + ck::magic_size);
  if (version != Checkpoint::format_version)
    bad(cat("unsupported checkpoint format version ", version, " (nsl reads version ",
            Checkpoint::format_version, ")"));

  // The checksum, before anything is decoded: if it does not match, walk the
  // structure (bounds checks only) to tell a cut-short file from a corrupted one.
  if (count >= ck::min_file_size) {
    const std::uint32_t stored = load_le_u32(bytes + count - 4);
    const std::uint32_t computed = crc32_of(bytes, count - 4);
    if (stored != computed) {
      ck::Walker scan{bytes, count, ck::magic_size + 4, nullptr, {}};
      if (!scan.walk())
        bad(cat(
            scan.problem, "; checksum mismatch: the file is ",
            scan.problem.compare(0, 9, "truncated") == 0 ? "cut short or corrupted" : "corrupted"));
      bad(cat("checksum mismatch: file is corrupted (stored crc32 ", hex32(stored),
              ", computed ", hex32(computed), ")"));
    }
  }

  Checkpoint out;
  ck::Walker walker{bytes, count, ck::magic_size + 4, &out, {}};
  if (!walker.walk()) bad(walker.problem);
  return out;
}

/// Reads and parses the checkpoint at `path` (see parse_checkpoint). The
/// magic is checked before the rest of the file is read, and a file of more
/// than `max_bytes` bytes is refused (ErrorKind::format) before it is read.
/// An unopenable or unreadable file fails with ErrorKind::io.
inline Checkpoint load_checkpoint(const std::string& path, std::size_t max_bytes = default_max_read_bytes) {
  const std::vector<unsigned char> bytes = read_file_bytes(
      "load_checkpoint", path, max_bytes, detail::checkpoint::magic_size,
      [&](const unsigned char* p, std::size_t n) { detail::checkpoint::check_magic(p, n, path); });
  return parse_checkpoint(bytes.data(), bytes.size(), path);
}

/// Writes `ck` to `path` (layout at the top of this file). Fails with
/// ErrorKind::argument or ::shape, before touching the disk, if `ck` breaks
/// a limit, repeats a key or name or holds a rank-0 tensor. The bytes go to a
/// temporary file beside `path`, renamed over it at the end; on an I/O
/// failure (ErrorKind::io) the temporary file is removed and `path` is left
/// as it was.
inline void save_checkpoint(const std::string& path, const Checkpoint& ck) {
  namespace cp = detail::checkpoint;
  cp::check_savable(path, ck);
  write_file_atomically("save_checkpoint", path, [&](std::ofstream& out) {
    cp::Writer w(out);
    put_bytes(w, cp::magic, cp::magic_size);
    put_le_u32(w, Checkpoint::format_version);
    put_le_u32(w, static_cast<std::uint32_t>(ck.metadata.size()));
    for (const auto& [key, value] : ck.metadata) {
      put_string_le_u32(w, key);
      put_string_le_u32(w, value);
    }
    put_le_u32(w, static_cast<std::uint32_t>(ck.tensors.size()));
    for (const auto& [name, t] : ck.tensors) {
      if (!w.ok()) break;
      put_string_le_u32(w, name);
      put_u8(w, static_cast<std::uint8_t>(t.rank()));
      for (int d = 0; d < t.rank(); ++d) put_le_u64(w, static_cast<std::uint64_t>(t.dim(d)));
      const float* data = t.data();
      for (index i = 0; i < t.size(); ++i) put_le_f32(w, data[i]);
    }
    const std::uint32_t crc = w.flush();
    put_le_u32(w, crc);
    w.flush();
  });
}

// ---- transfer between a model and a checkpoint ------------------------------

/// Adds `t` under `name`, converted to float32 (double rounds to nearest;
/// values beyond float's range become +-inf). Fails on a duplicate name.
template <class T>
void store_tensor(Checkpoint& ck, const std::string& name, TensorView<const T> t) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "store_tensor: nsl tensors hold float or double");
  if constexpr (std::is_same_v<T, float>)
    ck.add(name, t);
  else
    ck.add(name, cast<float, T>(t));
}
template <class T, class = std::enable_if_t<!std::is_const_v<T>>>
void store_tensor(Checkpoint& ck, const std::string& name, TensorView<T> t) {
  store_tensor<T>(ck, name, TensorView<const T>(t));
}
template <class T>
void store_tensor(Checkpoint& ck, const std::string& name, const Tensor<T>& t) {
  store_tensor<T>(ck, name, t.view());
}

namespace detail::checkpoint {
/// The tensor `name` of `ck`, checked against `expected`: FormatError if it
/// is missing, ShapeError if its shape differs.
inline const Tensor<float>& checked_tensor(const Checkpoint& ck, const char* op,
                                           const std::string& name, const Shape& expected) {
  const Tensor<float>* t = ck.find(name);
  if (!t) fail(ErrorKind::format, cat(op, ": checkpoint has no tensor '", name, "'"));
  require(t->shape() == expected, ErrorKind::shape, op, ": tensor '", name, "': checkpoint has ",
          t->shape(), ", model expects ", expected);
  return *t;
}
template <class T>
void copy_from_float(const Tensor<float>& from, TensorView<T> to) {
  if constexpr (std::is_same_v<T, float>)
    std::copy(from.data(), from.data() + from.size(), to.data());
  else
    to.vec() = from.vec().template cast<T>();
}
}  // namespace detail::checkpoint

/// Copies the tensor `name` into `t` (converted to T). Fails with
/// ErrorKind::format if it is missing, ErrorKind::shape if its shape differs
/// from t's; `t` is then unchanged.
template <class T>
void restore_tensor(const Checkpoint& ck, const std::string& name, TensorView<T> t) {
  static_assert(!std::is_const_v<T>, "restore_tensor: needs a mutable view");
  detail::checkpoint::copy_from_float<T>(
      detail::checkpoint::checked_tensor(ck, "restore_tensor", name, t.shape()), t);
}
template <class T>
void restore_tensor(const Checkpoint& ck, const std::string& name, Tensor<T>& t) {
  restore_tensor<T>(ck, name, t.view());
}

/// Adds each parameter's value (not its gradient) as `prefix + name`.
template <class T>
void store(Checkpoint& ck, const std::string& prefix, const std::vector<Parameter<T>>& params) {
  for (const auto& p : params) store_tensor<T>(ck, prefix + p.name, TensorView<const T>(p.value));
}
/// Adds each buffer as `prefix + name`.
template <class T>
void store(Checkpoint& ck, const std::string& prefix, const std::vector<Buffer<T>>& buffers) {
  for (const auto& b : buffers) store_tensor<T>(ck, prefix + b.name, TensorView<const T>(b.value));
}

/// Copies `prefix + name` of `ck` into each parameter's value. Every tensor is
/// checked (present, same shape) before any is copied, so on failure the
/// model is unchanged. Tensors of `ck` that no parameter names are ignored.
template <class T>
void restore(const Checkpoint& ck, const std::string& prefix,
             const std::vector<Parameter<T>>& params) {
  for (const auto& p : params)
    detail::checkpoint::checked_tensor(ck, "restore", prefix + p.name, p.value.shape());
  for (const auto& p : params)
    detail::checkpoint::copy_from_float<T>(*ck.find(prefix + p.name), p.value);
}
/// Copies `prefix + name` of `ck` into each buffer; checked first as above.
template <class T>
void restore(const Checkpoint& ck, const std::string& prefix,
             const std::vector<Buffer<T>>& buffers) {
  for (const auto& b : buffers)
    detail::checkpoint::checked_tensor(ck, "restore", prefix + b.name, b.value.shape());
  for (const auto& b : buffers)
    detail::checkpoint::copy_from_float<T>(*ck.find(prefix + b.name), b.value);
}

}  // namespace nsl
