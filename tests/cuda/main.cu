// The main() of nsl_cuda_tests: every CUDA operation against its CPU
// version (tests/cuda/test_cuda_*.cu). Without a usable GPU the whole
// executable reports why and exits with 77, which ctest shows as skipped.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "nsl/cuda/runtime.cuh"

int main(int argc, char** argv) {
  if (nsl::cuda::device_count() == 0) {
    std::printf("nsl_cuda_tests: skipped: no CUDA device present (the tests compare every CUDA operation "
                "with the CPU and need a GPU)\n");
    return 77;
  }
  std::printf("nsl_cuda_tests: on %s\n", nsl::cuda::device_description().c_str());
  doctest::Context context(argc, argv);
  return context.run();
}
