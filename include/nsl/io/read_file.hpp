// nsl/io/read_file.hpp — reading a whole file into memory for a parser, with
// the checks every nsl reader makes before it trusts a file: its first bytes
// (the magic) are looked at before the rest is read, and its size is held to
// a limit before anything is allocated for it.
//
//   default_max_read_bytes        1 GiB: the default bound on what one nsl
//                                 reader reads or allocates for one file
//   read_file_bytes(op, path, max_bytes, prefix, check_prefix)
//                                 the file's bytes, after check_prefix saw
//                                 its first `prefix` bytes
//
// Each reader keeps an in-memory parse beside its path-based load
// (parse_npy, parse_checkpoint, parse_idx_file, parse_cifar, parse_glyphs),
// so that tests and fuzzers can feed it bytes without a file.
#pragma once

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include "nsl/core/error.hpp"

namespace nsl {

/// The default bound on the bytes one reader reads or allocates for a file:
/// the file itself, its inflated bytes and the tensor decoded from it.
inline constexpr std::size_t default_max_read_bytes = std::size_t(1) << 30;

/// The bytes of the file at `path`.
///
/// `check_prefix(p, n)` is called with the first n = min(prefix, file size)
/// bytes before any more are read, so that a file of another kind fails on
/// its magic (check_prefix throws) without being read whole. Fails with
/// ErrorKind::io, message "op: path: ...", if the path is a directory or the
/// file cannot be opened or read, and with ErrorKind::format if the file
/// holds more than `max_bytes` bytes: checked from its size before reading,
/// and while reading for a file whose size the file system does not say.
template <class CheckPrefix>
std::vector<unsigned char> read_file_bytes(const char* op, const std::string& path, std::size_t max_bytes,
                                           std::size_t prefix, CheckPrefix&& check_prefix) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail(ErrorKind::io, cat(op, ": ", path, ": is a directory, not a file"));
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::io, cat(op, ": ", path, ": cannot open file for reading"));
  auto read_into = [&](std::vector<unsigned char>& bytes, std::size_t n) {
    const std::size_t at = bytes.size();
    bytes.resize(at + n);
    in.read(reinterpret_cast<char*>(bytes.data() + at), static_cast<std::streamsize>(n));
    if (in.bad()) fail(ErrorKind::io, cat(op, ": ", path, ": read error"));
    bytes.resize(at + static_cast<std::size_t>(in.gcount()));
    return static_cast<std::size_t>(in.gcount());
  };
  auto too_large = [&](const std::string& size) {
    fail(ErrorKind::format, cat(op, ": ", path, ": file size ", size, " exceeds the limit of ", max_bytes, " bytes"));
  };

  std::vector<unsigned char> bytes;
  read_into(bytes, prefix);
  check_prefix(static_cast<const unsigned char*>(bytes.data()), bytes.size());
  if (bytes.size() < prefix) return bytes;  // the whole file was the prefix

  const auto size = std::filesystem::file_size(path, ec);
  if (!ec) {
    if (size > max_bytes) too_large(std::to_string(size));
    bytes.reserve(static_cast<std::size_t>(size));
  }
  constexpr std::size_t chunk = std::size_t(1) << 16;
  for (;;) {
    const std::size_t room = bytes.size() < max_bytes ? max_bytes - bytes.size() : 0;
    // One byte past the limit is enough to know the file is too large.
    if (read_into(bytes, std::min(chunk, room + 1)) == 0) break;
    if (bytes.size() > max_bytes) too_large(cat("over ", max_bytes));
  }
  return bytes;
}

}  // namespace nsl
