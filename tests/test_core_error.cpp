#include <doctest/doctest.h>

#include <string>

#include "nsl/core/error.hpp"

TEST_CASE("every nsl error derives from nsl::Error and keeps its kind") {
  using nsl::ErrorKind;
  const std::pair<ErrorKind, const char*> kinds[] = {{ErrorKind::shape, "s"},
                                                     {ErrorKind::argument, "a"},
                                                     {ErrorKind::io, "i"},
                                                     {ErrorKind::format, "f"},
                                                     {ErrorKind::state, "t"},
                                                     {ErrorKind::device, "d"}};
  for (auto [kind, text] : kinds) {
    try {
      nsl::fail(kind, text);
      FAIL("fail() returned");
    } catch (const nsl::Error& e) {
      CHECK(e.kind() == kind);
      CHECK(std::string(e.what()) == text);
    }
  }
  CHECK_THROWS_AS(nsl::fail(ErrorKind::shape, "x"), nsl::ShapeError);
  CHECK_THROWS_AS(nsl::fail(ErrorKind::argument, "x"), nsl::ArgumentError);
  CHECK_THROWS_AS(nsl::fail(ErrorKind::format, "x"), nsl::IoError);  // FormatError is an IoError
  CHECK_THROWS_AS(nsl::fail(ErrorKind::format, "x"), nsl::FormatError);
  CHECK_THROWS_AS(nsl::fail(ErrorKind::state, "x"), nsl::StateError);
  CHECK_THROWS_AS(nsl::fail(ErrorKind::device, "x"), nsl::DeviceError);
}

TEST_CASE("require builds its message only from the given parts") {
  CHECK_NOTHROW(nsl::require(true, nsl::ErrorKind::argument, "never"));
  CHECK_THROWS_WITH_AS(nsl::require(false, nsl::ErrorKind::argument, "op: stride ", 0, " < 1"),
                       "op: stride 0 < 1", nsl::ArgumentError);
}

namespace {
void quiet_handler(nsl::ErrorKind, const char*) {}
}  // namespace

TEST_CASE("set_error_handler returns the previous handler and nullptr restores the default") {
  nsl::ErrorHandler original = nsl::set_error_handler(&quiet_handler);
  const bool got_quiet = nsl::set_error_handler(nullptr) == &quiet_handler;
  CHECK(got_quiet);
  const bool got_default = nsl::set_error_handler(original) == original;
  CHECK(got_default);
}
