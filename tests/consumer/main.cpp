// Built by nsl's consumer tests against an installed or add_subdirectory'd nsl.
#include <cstdio>

#include "nsl/core/error.hpp"
#include "nsl/core/random.hpp"
#include "nsl/core/tensor.hpp"

#if !NSL_HAS_EXCEPTIONS
namespace {
void report(nsl::ErrorKind kind, const char* message) {
  std::fprintf(stderr, "consumer: %s: %s\n", nsl::to_string(kind), message);
}
}  // namespace
#endif

int main() {
#if NSL_HAS_EXCEPTIONS
  try {
    nsl::Shape bad{-1};
    std::fprintf(stderr, "consumer: Shape{-1} did not fail (rank %d)\n", bad.rank());
    return 1;
  } catch (const nsl::ShapeError& e) {
    std::printf("caught nsl::ShapeError: %s\n", e.what());
  }
#else
  nsl::set_error_handler(&report);
  std::printf("built without exceptions; error handler installed\n");
#endif

  nsl::Tensor<float> t(nsl::Shape{2, 3});
  nsl::Rng rng(42);
  nsl::fill_normal<float>(t.view(), rng);
  std::printf("sum of 6 normal draws: %f\n", static_cast<double>(t.vec().sum()));
  return 0;
}
