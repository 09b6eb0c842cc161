// nsl-train's training loop instantiated for the GPU (--device cuda): the
// same code as on the CPU (nsl_train.hpp), with the network, the
// optimiser and the loss on the device. Built into nsl-train when the
// project is configured with -DNSL_WITH_CUDA=ON.
#include "nsl/cuda/cuda.cuh"
#include "nsl_train.hpp"

int train_on_cuda(const nsl_train::Settings& s) {
  nsl::cuda::require_device("--device cuda");
  std::printf("nsl-train: GPU %s\n", nsl::cuda::device_description().c_str());
  nsl_train::Distributed one_process;  // several MPI ranks train on the CPU only
  return nsl_train::train<nsl::Cuda>(s, one_process);
}
