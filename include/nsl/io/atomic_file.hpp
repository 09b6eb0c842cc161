// nsl/io/atomic_file.hpp — writing a file so that a crash never leaves a
// half-written one: the bytes go to a temporary file beside the target, which
// is renamed over it only once everything was written.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <ios>
#include <string>
#include <system_error>

#include "nsl/core/error.hpp"

namespace nsl {

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
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) fail(ErrorKind::io, cat(op, ": ", path, ": cannot create temporary file ", temp));
    write(out);
    out.close();
    ok = !out.fail();
  }
  std::error_code ec;
  if (!ok) {
    std::filesystem::remove(temp, ec);
    fail(ErrorKind::io, cat(op, ": ", path, ": write error on temporary file ", temp));
  }
  std::filesystem::rename(temp, path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(temp, ignored);
    fail(ErrorKind::io, cat(op, ": ", path, ": cannot rename temporary file over it: ", ec.message()));
  }
}

}  // namespace nsl
