// nsl/io/atomic_file.hpp — writing a file so that a crash never leaves a
// half-written one: the bytes go to a temporary file beside the target, which
// is renamed over it only once everything was written.
#pragma once

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <ios>
#include <string>
#include <system_error>

#include "nsl/core/error.hpp"

namespace nsl {

/// " (No space left on device)": what errno says of the last failed call,
/// to end an I/O error's message; empty when errno is 0 (set it to 0 before
/// the call).
inline std::string errno_suffix() {
  const int e = errno;
  return e != 0 ? cat(" (", std::strerror(e), ")") : std::string();
}

namespace detail {
/// A name beside `path` that no other save uses at the same time.
inline std::string temporary_name(const std::string& path) {
  static std::atomic<unsigned long long> counter{0};
  const auto tick = static_cast<unsigned long long>(std::chrono::steady_clock::now().time_since_epoch().count());
  // The counter separates threads; the clock and the counter's address
  // (randomized per process by ASLR) separate processes.
  return cat(path, ".tmp-", std::hex, tick, "-", counter.fetch_add(1), "-",
             reinterpret_cast<std::uintptr_t>(&counter));
}
}  // namespace detail

/// Calls write(std::ofstream&) on a temporary file beside `path`, then renames
/// it over `path`. On any failure (ErrorKind::io, message "op: path: ...") the
/// temporary file is removed and `path` is left as it was.
template <class Write>
void write_file_atomically(const char* op, const std::string& path, Write&& write) {
  const std::string temp = detail::temporary_name(path);
  bool ok = false;
  errno = 0;
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) fail(ErrorKind::io, cat(op, ": ", path, ": cannot create temporary file ", temp, errno_suffix()));
    write(out);
    out.close();
    ok = !out.fail();
  }
  std::error_code ec;
  if (!ok) {
    const std::string why = errno_suffix();
    std::filesystem::remove(temp, ec);
    fail(ErrorKind::io, cat(op, ": ", path, ": write error on temporary file ", temp, why));
  }
  std::filesystem::rename(temp, path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(temp, ignored);
    fail(ErrorKind::io, cat(op, ": ", path, ": cannot rename temporary file over it: ", ec.message()));
  }
}

}  // namespace nsl
