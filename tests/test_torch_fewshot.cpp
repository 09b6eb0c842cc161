// Cross-checks the few-shot heads against PyTorch autograd through .npy
// files (tests/torch/reference_heads.py); registered only when CMake found
// an interpreter with torch and numpy (NSL_TEST_TORCH_PYTHON).
#include <doctest/doctest.h>

#ifdef NSL_TEST_TORCH_PYTHON

#include <cstdlib>
#include <filesystem>
#include <string>

#include "nsl/fewshot/heads.hpp"
#include "nsl/io/npy.hpp"
#include "test_util.hpp"

TEST_CASE("Every few-shot head matches PyTorch autograd: scores, embedding and parameter gradients") {
  namespace fs = std::filesystem;
  nsl::Rng rng(2024);
  for (nsl::HeadKind kind : {nsl::HeadKind::euclidean, nsl::HeadKind::cosine, nsl::HeadKind::static_ns,
                             nsl::HeadKind::dynamic_ns}) {
    CAPTURE(nsl::to_string(kind));
    const fs::path dir = fs::path(NSL_TEST_BINARY_DIR) / "torch_reference" / (std::string("head_") + nsl::to_string(kind));
    fs::remove_all(dir);
    fs::create_directories(dir);
    auto head = nsl::make_head<float>(kind, 16, rng, {4, 8, 10.0});
    for (auto& p : head->parameters())
      if (p.name != "scale") nsl::fill_normal<float>(p.value, rng, 0.0, 0.3);
    const nsl::index ways = 5, shots = 3;
    head->set_episode(ways, shots);
    const nsl::Tensor<float> x = nsl::test::randn<float>(nsl::Shape{ways * shots + 7, 16}, rng);
    const nsl::Tensor<float> y = head->forward(x);
    const nsl::Tensor<float> dy = nsl::test::randn<float>(y.shape(), rng);
    nsl::zero_gradients(head->parameters());
    const nsl::Tensor<float> dx = head->backward(dy);
    nsl::save_npy(dir / "x.npy", x);
    nsl::save_npy(dir / "dy.npy", dy);
    for (const auto& p : head->parameters()) nsl::save_npy(dir / ("p_" + p.name + ".npy"), nsl::Tensor<float>(p.value));
    const std::string command = std::string(NSL_TEST_TORCH_PYTHON) + " " + NSL_TEST_SOURCE_DIR +
                                "/tests/torch/reference_heads.py " + nsl::to_string(kind) + " " + dir.string() + " " +
                                std::to_string(ways) + " " + std::to_string(shots);
    REQUIRE(std::system(command.c_str()) == 0);
    CHECK(nsl::test::max_relative_difference(y, nsl::load_npy<float>(dir / "y.npy")) < 1e-4);
    CHECK(nsl::test::max_relative_difference(dx, nsl::load_npy<float>(dir / "dx.npy")) < 1e-4);
    for (const auto& p : head->parameters()) {
      CAPTURE(p.name);
      CHECK(nsl::test::max_relative_difference(nsl::Tensor<float>(p.grad), nsl::load_npy<float>(dir / ("g_" + p.name + ".npy"))) <
            1e-4);
    }
  }
}

#endif
