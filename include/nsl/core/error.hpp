// nsl/core/error.hpp — the one error family of the library.
//
// Every check in nsl ends in `nsl::fail(kind, message)`. With exceptions on,
// that throws the class matching `kind`, all derived from `nsl::Error`
// (itself a std::runtime_error). Built with -fno-exceptions, it calls the
// handler installed with `set_error_handler` (default: print to stderr) and
// then aborts, so a check never lets a wrong answer through.
//
// Messages name the operation first, then what was expected and what was
// found: "conv2d_forward: weight: expected [8, 3, 3, 3], got [8, 4, 3, 3]".
#pragma once

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#define NSL_HAS_EXCEPTIONS 1
#else
#define NSL_HAS_EXCEPTIONS 0
#endif

namespace nsl {

/// What went wrong, for handlers that run without exceptions.
enum class ErrorKind {
  shape,     ///< tensor shapes do not fit the operation
  argument,  ///< a bad scalar argument (kernel size, stride, learning rate...)
  io,        ///< a file could not be opened, read or written
  format,    ///< a file is readable but malformed (bad magic, dtype, truncated)
  state,     ///< a call out of order (backward before forward, ...)
  device,    ///< a device (CUDA) call failed, or no such device is present
};

inline const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::shape: return "shape error";
    case ErrorKind::argument: return "argument error";
    case ErrorKind::io: return "I/O error";
    case ErrorKind::format: return "format error";
    case ErrorKind::state: return "state error";
    case ErrorKind::device: return "device error";
  }
  return "error";
}

/// Base of every exception nsl throws.
class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message)
      : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

/// Tensor shapes that do not fit an operation.
class ShapeError : public Error {
 public:
  explicit ShapeError(const std::string& m) : Error(ErrorKind::shape, m) {}
};
/// A bad argument value.
class ArgumentError : public Error {
 public:
  explicit ArgumentError(const std::string& m) : Error(ErrorKind::argument, m) {}
};
/// A file that cannot be opened, read or written.
class IoError : public Error {
 public:
  explicit IoError(const std::string& m) : Error(ErrorKind::io, m) {}

 protected:
  IoError(ErrorKind kind, const std::string& m) : Error(kind, m) {}
};
/// A file whose content is malformed.
class FormatError : public IoError {
 public:
  explicit FormatError(const std::string& m) : IoError(ErrorKind::format, m) {}
};
/// A call made in the wrong order.
class StateError : public Error {
 public:
  explicit StateError(const std::string& m) : Error(ErrorKind::state, m) {}
};

/// A device that is missing or failed (CUDA runtime, cuBLAS).
class DeviceError : public Error {
 public:
  explicit DeviceError(const std::string& m) : Error(ErrorKind::device, m) {}
};

/// Called (without exceptions) before abort(). It may log, flush, or longjmp
/// out; if it returns, nsl aborts.
using ErrorHandler = void (*)(ErrorKind kind, const char* message);

namespace detail {
inline void default_error_handler(ErrorKind kind, const char* message) {
  std::fprintf(stderr, "nsl %s: %s\n", to_string(kind), message);
}
inline ErrorHandler& error_handler_slot() {
  static ErrorHandler handler = &default_error_handler;
  return handler;
}
}  // namespace detail

/// Installs `handler` (nullptr restores the default); returns the previous one.
/// Only used when the library is compiled without exceptions.
inline ErrorHandler set_error_handler(ErrorHandler handler) {
  ErrorHandler previous = detail::error_handler_slot();
  detail::error_handler_slot() = handler ? handler : &detail::default_error_handler;
  return previous;
}

/// Raises the error of `kind` with `message`. Never returns.
[[noreturn]] inline void fail(ErrorKind kind, const std::string& message) {
#if NSL_HAS_EXCEPTIONS
  switch (kind) {
    case ErrorKind::shape: throw ShapeError(message);
    case ErrorKind::argument: throw ArgumentError(message);
    case ErrorKind::io: throw IoError(message);
    case ErrorKind::format: throw FormatError(message);
    case ErrorKind::state: throw StateError(message);
    case ErrorKind::device: throw DeviceError(message);
  }
  throw Error(kind, message);
#else
  detail::error_handler_slot()(kind, message.c_str());
  std::abort();
#endif
}

/// Builds a message from streamable parts: cat("conv2d: stride ", s, " < 1").
template <class... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

/// `require(ok, kind, parts...)`: fails with the concatenated message unless ok.
/// The message is only built on failure.
template <class... Parts>
inline void require(bool ok, ErrorKind kind, const Parts&... parts) {
  if (!ok) fail(kind, cat(parts...));
}

}  // namespace nsl
