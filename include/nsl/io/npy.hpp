// nsl/io/npy.hpp — NumPy .npy files: load and save tensors so they move
// between nsl, NumPy (np.load / np.save) and PyTorch (torch.from_numpy).
//
// Saving writes format version 1.0 with descr '<f4' (float) or '<f8'
// (double), fortran_order False and the shape tuple; the header is padded
// with spaces and ends in '\n' so that the data starts at a multiple of 64
// bytes, as NumPy does. The file is written under a temporary name in the
// same directory and then renamed over `path`, so a failed save never leaves
// a half-written file at `path`.
//
// Loading accepts versions 1.0, 2.0 and 3.0, little-endian float32/float64
// ('<f4', '<f8', and '=f4' / '=f8' on a little-endian host), C order, rank 1
// to 4. When the file's type differs from T the values are converted with
// static_cast (double -> float rounds to nearest; values beyond float's range
// become +-inf). Every malformed file fails with ErrorKind::format
// (nsl::FormatError) and a message "load_npy: <path>: <what is wrong>"; a
// file that cannot be opened or read fails with ErrorKind::io. The data size
// is checked against the file size before anything is allocated, so a header
// claiming a huge shape cannot trigger a huge allocation; load_npy looks at
// the magic before reading the rest and refuses a file of more than
// `max_bytes` (1 GiB by default) before reading it.
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
#include <system_error>
#include <type_traits>
#include <vector>

#include "nsl/core/error.hpp"
#include "nsl/core/shape.hpp"
#include "nsl/core/tensor.hpp"
#include "nsl/io/atomic_file.hpp"
#include "nsl/io/read_file.hpp"

namespace nsl {

namespace detail::npy {

inline constexpr char magic[] = "\x93NUMPY";  // 6 bytes, then major and minor version
inline constexpr std::size_t magic_size = 6;
inline constexpr std::size_t alignment = 64;
/// Bound on the header length read from a file (NumPy's own headers are < 1 KiB).
inline constexpr std::size_t max_header_size = std::size_t(1) << 20;
/// Shapes with more extents than this are not even stored while parsing.
inline constexpr int max_parsed_rank = Shape::max_rank;

inline bool host_is_little_endian() {
  const std::uint32_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

/// The unsigned integer with the size of float / double, for byte handling.
template <class F>
using Bits = std::conditional_t<sizeof(F) == 4, std::uint32_t, std::uint64_t>;

/// Reads a little-endian F from `p` whatever the host byte order.
template <class F>
F load_le(const char* p) {
  Bits<F> bits = 0;
  for (std::size_t i = 0; i < sizeof(F); ++i)
    bits |= Bits<F>(static_cast<unsigned char>(p[i])) << (8 * i);
  F value;
  std::memcpy(&value, &bits, sizeof(F));
  return value;
}

/// Writes `value` to `p` as little-endian bytes whatever the host byte order.
template <class F>
void store_le(F value, char* p) {
  Bits<F> bits;
  std::memcpy(&bits, &value, sizeof(F));
  for (std::size_t i = 0; i < sizeof(F); ++i)
    p[i] = static_cast<char>(static_cast<unsigned char>((bits >> (8 * i)) & 0xFFu));
}

template <class T>
constexpr const char* descr_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "npy: nsl reads and writes float and double tensors");
  return std::is_same_v<T, float> ? "<f4" : "<f8";
}

/// Unsigned little-endian integer of `n` bytes at `p` (header lengths).
inline std::uint32_t load_le_u32(const unsigned char* p, std::size_t n) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v |= std::uint32_t(p[i]) << (8 * i);
  return v;
}

/// "(2, 3)", or "(7,)" for rank 1, from `rank` (at most max_parsed_rank) extents.
inline std::string shape_text(const index* extents, int rank) {
  std::string s = "(";
  for (int i = 0; i < rank; ++i) {
    if (i) s += ", ";
    s += std::to_string(extents[i]);
  }
  return s + (rank == 1 ? ",)" : ")");
}

/// What the header dictionary says.
struct Header {
  std::string descr;
  bool fortran_order = false;
  index extents[max_parsed_rank] = {};
  int rank = 0;
};

/// A cursor over the header text, a Python dict literal such as
/// "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }".
/// Every method fails with a format error naming the source on bad input;
/// none reads past `end`.
struct HeaderCursor {
  const char* pos;
  const char* end;
  const char* begin;
  const std::string& source;

  [[noreturn]] void error(const std::string& what) const {
    fail(ErrorKind::format, cat("load_npy: ", source, ": ", what));
  }
  /// error() with the header offset and the text there, for syntax errors.
  [[noreturn]] void syntax_error(const std::string& what) const {
    std::string snippet;
    for (const char* p = pos; p < end && snippet.size() < 24; ++p)
      snippet += (*p >= 0x20 && *p < 0x7F) ? *p : '?';
    error(cat("malformed header: ", what, " at offset ", pos - begin,
              at_end() ? std::string(" (end of header)") : cat(" (near \"", snippet, "\")")));
  }

  bool at_end() const { return pos >= end; }
  void skip_space() {
    while (pos < end && (*pos == ' ' || *pos == '\t' || *pos == '\n' || *pos == '\r')) ++pos;
  }
  /// Skips spaces, then consumes `c` if it is next.
  bool accept(char c) {
    skip_space();
    if (pos < end && *pos == c) {
      ++pos;
      return true;
    }
    return false;
  }
  void expect(char c, const char* what) {
    if (!accept(c)) syntax_error(cat("expected '", c, "' ", what));
  }
  /// Consumes `word` if it is next (after spaces).
  bool accept_word(const char* word) {
    skip_space();
    std::size_t n = std::strlen(word);
    if (std::size_t(end - pos) >= n && std::memcmp(pos, word, n) == 0) {
      pos += n;
      return true;
    }
    return false;
  }

  /// A Python string literal in single or double quotes (no escapes).
  std::string read_string(const char* what) {
    skip_space();
    if (at_end() || (*pos != '\'' && *pos != '"')) syntax_error(cat("expected a string for ", what));
    const char quote = *pos++;
    const char* start = pos;
    while (pos < end && *pos != quote) ++pos;
    if (at_end()) syntax_error(cat("unterminated string for ", what));
    return std::string(start, pos++);
  }

  bool read_bool(const char* what) {
    if (accept_word("True")) return true;
    if (accept_word("False")) return false;
    syntax_error(cat("expected True or False for ", what));
  }

  /// A non-negative integer extent; a leading '-' is reported as a negative
  /// extent rather than as a syntax error.
  index read_extent() {
    skip_space();
    const bool negative = pos < end && *pos == '-';
    if (negative) ++pos;
    if (at_end() || *pos < '0' || *pos > '9') syntax_error("bad shape: expected an integer extent");
    const char* start = pos;
    index value = 0;
    bool too_large = false;
    for (; pos < end && *pos >= '0' && *pos <= '9'; ++pos) {
      const index digit = *pos - '0';
      if (value > (std::numeric_limits<index>::max() - digit) / 10) too_large = true;
      if (!too_large) value = value * 10 + digit;
    }
    if (pos < end && (*pos == 'L' || *pos == 'l')) ++pos;  // Python 2 long suffix
    const std::string digits(start, pos);
    if (negative) error(cat("negative extent -", digits, " in shape"));
    if (too_large) error(cat("extent ", digits, " in shape is too large"));
    return value;
  }

  /// "(a, b, ...)", "(a,)", "(a)" or "()"; stores up to max_parsed_rank
  /// extents and counts them all.
  void read_shape(Header& h) {
    skip_space();
    if (!accept('(')) syntax_error("bad shape: expected a tuple such as (2, 3)");
    h.rank = 0;
    if (accept(')')) return;
    for (;;) {
      const index e = read_extent();
      if (h.rank < max_parsed_rank) h.extents[h.rank] = e;
      ++h.rank;
      if (accept(')')) return;
      expect(',', "or ')' in the shape tuple");
      if (accept(')')) return;  // trailing comma
    }
  }

  /// The whole dict: keys in any order, each exactly once, trailing comma
  /// allowed, only spaces and newlines after the closing brace.
  Header read_header() {
    Header h;
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    expect('{', "at the start of the header dict");
    while (!accept('}')) {
      const std::string key = read_string("a header key");
      expect(':', cat("after key '", key, "'").c_str());
      bool* seen = nullptr;
      if (key == "descr") {
        skip_space();
        if (pos < end && *pos == '[')
          error("unsupported dtype: structured (record) arrays are not supported");
        h.descr = read_string("'descr'");
        seen = &seen_descr;
      } else if (key == "fortran_order") {
        h.fortran_order = read_bool("'fortran_order'");
        seen = &seen_fortran;
      } else if (key == "shape") {
        read_shape(h);
        seen = &seen_shape;
      } else {
        error(cat("unexpected key '", key, "' in header (expected descr, fortran_order, shape)"));
      }
      if (*seen) error(cat("duplicate key '", key, "' in header"));
      *seen = true;
      if (accept('}')) break;
      expect(',', "or '}' after a header value");
    }
    skip_space();
    if (!at_end()) syntax_error("unexpected text after the header dict");
    if (!seen_descr) error("header has no 'descr' key");
    if (!seen_fortran) error("header has no 'fortran_order' key");
    if (!seen_shape) error("header has no 'shape' key");
    return h;
  }
};

/// Element size in the file for a supported descr; fails naming any other.
inline std::size_t item_size(const std::string& descr, const std::string& source) {
  const bool little =
      descr.size() == 3 && (descr[0] == '<' || (descr[0] == '=' && host_is_little_endian()));
  if (little && descr[1] == 'f' && (descr[2] == '4' || descr[2] == '8'))
    return descr[2] == '4' ? 4 : 8;
  const bool big_float = descr == ">f4" || descr == ">f8" ||
                         (!host_is_little_endian() && (descr == "=f4" || descr == "=f8"));
  fail(ErrorKind::format,
       cat("load_npy: ", source, ": unsupported dtype '", descr, "'",
           big_float ? " (big-endian)" : "", "; nsl loads little-endian '<f4' and '<f8'"));
}

/// Converts `n` little-endian F values at `p` to T.
template <class F, class T>
void convert_from_le(const char* p, index n, T* out) {
  for (index i = 0; i < n; ++i) out[i] = static_cast<T>(load_le<F>(p + i * index(sizeof(F))));
}

/// The 64-byte aligned header (magic, version 1.0, length, padded dict).
inline std::string make_header(const char* descr, const Shape& shape) {
  std::string dict = cat("{'descr': '", descr, "', 'fortran_order': False, 'shape': (");
  for (int i = 0; i < shape.rank(); ++i) dict += cat(i ? ", " : "", shape[i]);
  dict += shape.rank() == 1 ? ",), }" : "), }";
  const std::size_t prefix = magic_size + 2 + 2;  // magic, version, uint16 length
  const std::size_t unpadded = prefix + dict.size() + 1;  // + '\n'
  dict.append((alignment - unpadded % alignment) % alignment, ' ');
  dict += '\n';
  std::string out(magic, magic_size);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(dict.size() & 0xFFu);
  out += static_cast<char>((dict.size() >> 8) & 0xFFu);
  return out + dict;
}

/// Fails (ErrorKind::format) unless the `count` bytes at `bytes` start with
/// the .npy magic.
inline void check_magic(const unsigned char* bytes, std::size_t count, const std::string& source_name) {
  if (count < magic_size || std::memcmp(bytes, magic, magic_size) != 0)
    fail(ErrorKind::format, cat("load_npy: ", source_name, ": not a .npy file (bad magic",
                                count < magic_size ? ", file too short" : "", ")"));
}

}  // namespace detail::npy

/// Parses the `count` bytes of a .npy file at `bytes`; `source_name` (a path)
/// names the file in error messages. See the top of this file for what is
/// accepted; every malformed input fails with ErrorKind::format.
template <class T>
Tensor<T> parse_npy(const char* bytes, std::size_t count, const std::string& source_name) {
  namespace npy = detail::npy;
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "load_npy: nsl loads float and double tensors");
  auto bad = [&](const std::string& what) {
    fail(ErrorKind::format, cat("load_npy: ", source_name, ": ", what));
  };

  // Prefix: magic, version, header length (2 bytes in 1.0, 4 in 2.0 / 3.0).
  const auto* u = reinterpret_cast<const unsigned char*>(bytes);
  npy::check_magic(u, count, source_name);
  if (count < npy::magic_size + 2) bad("file ends inside the format version");
  const unsigned major = u[6], minor = u[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0)
    bad(cat("unsupported .npy format version ", major, ".", minor, " (nsl reads 1.0, 2.0, 3.0)"));
  const std::size_t length_size = major == 1 ? 2 : 4;
  const std::size_t prefix = npy::magic_size + 2 + length_size;
  if (count < prefix) bad("file ends inside the header length");
  const std::size_t header_size = npy::load_le_u32(u + 8, length_size);
  if (header_size > npy::max_header_size)
    bad(cat("header length ", header_size, " exceeds the ", npy::max_header_size, "-byte limit"));
  if (header_size > count - prefix)
    bad(cat("header length ", header_size, " runs past the end of the file (", count - prefix,
            " bytes follow the ", prefix, "-byte prefix)"));

  // Header dict.
  const char* text = bytes + prefix;
  npy::HeaderCursor cursor{text, text + header_size, text, source_name};
  const npy::Header h = cursor.read_header();
  const std::size_t item = npy::item_size(h.descr, source_name);
  if (h.fortran_order)
    bad("fortran_order True is not supported; save a C-ordered array (np.ascontiguousarray)");
  if (h.rank < 1 || h.rank > Shape::max_rank)
    bad(cat("shape has rank ", h.rank, (h.rank == 0 ? " (a scalar, shape ())" : ""),
            "; nsl tensors have rank 1 to ", Shape::max_rank));

  // Size checks before any allocation: element count, then bytes in the file.
  // Empty extents count as 1 (see extents_addressable): an empty array
  // cannot carry an absurd extent into the program either.
  if (!extents_addressable(h.extents, h.rank))
    bad(cat("element count of shape ", npy::shape_text(h.extents, h.rank), " overflows"));
  index n = 1;
  for (int i = 0; i < h.rank; ++i) n *= h.extents[i];
  const std::size_t data_size = std::size_t(n) * item;
  const std::size_t available = count - prefix - header_size;
  if (available < data_size)
    bad(cat("data truncated: expected ", data_size, " bytes of data, file has ", available,
            " (shape ", npy::shape_text(h.extents, h.rank), ")"));
  if (available > data_size)
    bad(cat("trailing bytes after the data: expected ", data_size, " bytes of data, file has ",
            available, " (shape ", npy::shape_text(h.extents, h.rank), ")"));

  Tensor<T> out;
  out.resize(Shape::from(h.extents, h.rank));  // uninitialized; every element is set below
  const char* data = text + header_size;
  if (item == 4)
    npy::convert_from_le<float>(data, n, out.data());
  else
    npy::convert_from_le<double>(data, n, out.data());
  return out;
}

/// Reads the .npy file at `path` (see parse_npy). The magic is checked
/// before the rest of the file is read, and a file of more than `max_bytes`
/// bytes is refused before it is read. An unopenable or unreadable file fails
/// with ErrorKind::io, a malformed or too large one with ErrorKind::format.
template <class T>
Tensor<T> load_npy(const std::string& path, std::size_t max_bytes = default_max_read_bytes) {
  const std::vector<unsigned char> bytes =
      read_file_bytes("load_npy", path, max_bytes, detail::npy::magic_size, [&](const unsigned char* p, std::size_t n) {
        detail::npy::check_magic(p, n, path);
      });
  return parse_npy<T>(reinterpret_cast<const char*>(bytes.data()), bytes.size(), path);
}

/// Writes `t` to `path` as a version 1.0 .npy file ('<f4' or '<f8', C order).
/// The data goes to a temporary file beside `path`, renamed over it at the
/// end; on failure the temporary file is removed and `path` is untouched.
template <class T>
void save_npy(const std::string& path, TensorView<const T> t) {
  namespace npy = detail::npy;
  require(t.rank() >= 1, ErrorKind::shape, "save_npy: ", path,
          ": cannot save a tensor of rank 0 (an empty, default-constructed tensor)");
  const std::string header = npy::make_header(npy::descr_of<T>(), t.shape());
  write_file_atomically("save_npy", path, [&](std::ofstream& out) {
    out.write(header.data(), std::streamsize(header.size()));
    char buffer[1 << 16];
    constexpr index per_chunk = index(sizeof buffer / sizeof(T));
    for (index start = 0; start < t.size() && out; start += per_chunk) {
      const index n = std::min(per_chunk, t.size() - start);
      for (index i = 0; i < n; ++i) npy::store_le<T>(t[start + i], buffer + i * index(sizeof(T)));
      out.write(buffer, std::streamsize(n * index(sizeof(T))));
    }
  });
}

/// Writes a tensor; see save_npy(path, TensorView<const T>).
template <class T>
void save_npy(const std::string& path, const Tensor<T>& t) {
  save_npy<T>(path, t.view());
}

/// Writes through a mutable view (deduction does not convert it to a const one).
template <class T, class = std::enable_if_t<!std::is_const_v<T>>>
void save_npy(const std::string& path, TensorView<T> t) {
  save_npy<T>(path, TensorView<const T>(t));
}

}  // namespace nsl
