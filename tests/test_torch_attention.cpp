// Cross-checks GlobalSimilarity2d against PyTorch autograd through .npy files
// (tests/torch/reference_attention.py); registered only when CMake found an
// interpreter with torch and numpy (NSL_TEST_TORCH_PYTHON).
#include <doctest/doctest.h>

#ifdef NSL_TEST_TORCH_PYTHON

#include <cstdlib>
#include <filesystem>
#include <string>

#include "nsl/io/npy.hpp"
#include "nsl/layers/global_similarity2d.hpp"
#include "test_util.hpp"

TEST_CASE("GlobalSimilarity2d matches PyTorch autograd: output, input and all parameter gradients, float32") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(NSL_TEST_BINARY_DIR) / "torch_reference" / "global_similarity";
  fs::remove_all(dir);
  fs::create_directories(dir);
  nsl::Rng rng(64);
  nsl::GlobalSimilarity2d<float> block(16, rng);
  block.gamma_tensor()[0] = 0.8f;
  const nsl::Tensor<float> x = nsl::test::randn<float>(nsl::Shape{2, 16, 4, 3}, rng);
  const nsl::Tensor<float> y = block.forward(x);
  const nsl::Tensor<float> dy = nsl::test::randn<float>(y.shape(), rng);
  nsl::zero_gradients(block.parameters());
  const nsl::Tensor<float> dx = block.backward(dy);
  nsl::save_npy(dir / "x.npy", x);
  nsl::save_npy(dir / "dy.npy", dy);
  nsl::save_npy(dir / "f.npy", block.f().weight());
  nsl::save_npy(dir / "g.npy", block.g().weight());
  nsl::save_npy(dir / "h.npy", block.h().weight());
  nsl::save_npy(dir / "gamma.npy", block.gamma_tensor());
  const std::string command = std::string(NSL_TEST_TORCH_PYTHON) + " " + NSL_TEST_SOURCE_DIR +
                              "/tests/torch/reference_attention.py " + dir.string();
  REQUIRE(std::system(command.c_str()) == 0);
  CHECK(nsl::test::max_relative_difference(y, nsl::load_npy<float>(dir / "y.npy")) < 1e-4);
  CHECK(nsl::test::max_relative_difference(dx, nsl::load_npy<float>(dir / "dx.npy")) < 1e-4);
  CHECK(nsl::test::max_relative_difference(block.f().weight_grad(), nsl::load_npy<float>(dir / "df.npy")) < 1e-4);
  CHECK(nsl::test::max_relative_difference(block.g().weight_grad(), nsl::load_npy<float>(dir / "dg.npy")) < 1e-4);
  CHECK(nsl::test::max_relative_difference(block.h().weight_grad(), nsl::load_npy<float>(dir / "dh.npy")) < 1e-4);
  const auto params = block.parameters();
  CHECK(nsl::test::max_relative_difference(nsl::Tensor<float>(params.back().grad),
                                           nsl::load_npy<float>(dir / "dgamma.npy")) < 1e-4);
}

#endif
