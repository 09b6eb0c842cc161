// fold_weights / fold_weights_backward on the GPU against the CPU ones, for
// every structure of M, in float and double.
#include <doctest/doctest.h>

#include <string>

#include "cuda_test_util.cuh"
#include "nsl/cuda/similarity.cuh"

using nsl::Cuda;
using nsl::Shape;
using nsl::Structure;
using nsl::Tensor;

namespace {

constexpr Structure all_structures[] = {Structure::identity, Structure::diagonal, Structure::channel_shared,
                                        Structure::block_diagonal, Structure::full};

// Folds random filters O x C x k x k with a random M on both devices, then
// runs the backward onto random initial dw and dM (accumulated) and compares.
template <class T>
void compare(Structure s, nsl::index o, nsl::index c, nsl::index k, nsl::Rng& rng) {
  CAPTURE(nsl::to_string(s)); CAPTURE(o); CAPTURE(c); CAPTURE(k);
  const Shape w_shape{o, c, k, k};
  const Tensor<T> m = nsl::test::randn<T>(nsl::similarity_shape(s, c, k * k), rng);
  const Tensor<T> w = nsl::test::randn<T>(w_shape, rng);
  const Tensor<T> dfolded = nsl::test::randn<T>(w_shape, rng);
  const auto m_d = nsl::to_device<T>(m), w_d = nsl::to_device<T>(w), dfolded_d = nsl::to_device<T>(dfolded);

  Tensor<T> folded(w_shape, T(3));
  Tensor<T, Cuda> folded_d(w_shape, T(-3));  // assigned
  nsl::fold_weights<T>(s, m.view(), w.view(), folded.view());
  nsl::fold_weights<T>(s, m_d.view(), w_d.view(), folded_d.view());
  nsl::test::check_close<T>("folded", folded_d.view(), folded.view());

  Tensor<T> dw = nsl::test::randn<T>(w_shape, rng), dm = nsl::test::randn<T>(m.shape(), rng);
  auto dw_d = nsl::to_device<T>(dw), dm_d = nsl::to_device<T>(dm);
  nsl::fold_weights_backward<T>(s, m.view(), w.view(), dfolded.view(), dw.view(), dm.view());
  nsl::fold_weights_backward<T>(s, m_d.view(), w_d.view(), dfolded_d.view(), dw_d.view(), dm_d.view());
  nsl::test::check_close<T>("dw", dw_d.view(), dw.view());
  if (dm.size()) nsl::test::check_close<T>("dM", dm_d.view(), dm.view());
}

template <class F>
std::string shape_error(F&& call) {
  try {
    call();
  } catch (const nsl::ShapeError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE_TEMPLATE("the CUDA weight fold and its backward equal the CPU ones for every structure", T, float,
                   double) {
  nsl::Rng rng(sizeof(T) == 4 ? 31 : 32);
  for (Structure s : all_structures)
    for (int trial = 0; trial < 6; ++trial) {
      const nsl::index o = nsl::test::random_extent(rng, 1, 8), c = nsl::test::random_extent(rng, 1, 6);
      const nsl::index k = 1 + 2 * nsl::test::random_extent(rng, 0, 2);
      compare<T>(s, o, c, k, rng);
    }
}

TEST_CASE_TEMPLATE("the CUDA weight fold equals the CPU one on layer-sized filters", T, float, double) {
  nsl::Rng rng(33);
  for (Structure s : all_structures) {
    compare<T>(s, 64, 32, 3, rng);
    compare<T>(s, 10, 16, 5, rng);
  }
}

TEST_CASE("the CUDA weight fold rejects wrong shapes with the CPU's messages") {
  nsl::Rng rng(34);
  const Shape w_shape{4, 3, 3, 3};
  Tensor<float> m = nsl::test::randn<float>(Shape{3, 9, 9}, rng), m_bad(Shape{9, 9});
  Tensor<float> w = nsl::test::randn<float>(w_shape, rng), w_bad(Shape{4, 3, 3, 2});
  Tensor<float> folded(w_shape), folded_bad(Shape{4, 3, 3, 1}), dm(m.shape()), dm_bad(Shape{2, 9, 9});
  auto m_d = nsl::to_device<float>(m), m_bad_d = nsl::to_device<float>(m_bad);
  auto w_d = nsl::to_device<float>(w), w_bad_d = nsl::to_device<float>(w_bad);
  auto folded_d = nsl::to_device<float>(folded), folded_bad_d = nsl::to_device<float>(folded_bad);
  auto dm_d = nsl::to_device<float>(dm), dm_bad_d = nsl::to_device<float>(dm_bad);
  const Structure s = Structure::block_diagonal;

  // fold(M, w, folded) and backward(dfolded, dM) on both devices, the same message expected.
  auto fold_cpu = [&](Tensor<float>& m_, Tensor<float>& w_, Tensor<float>& f_) {
    return shape_error([&] { nsl::fold_weights<float>(s, m_.view(), w_.view(), f_.view()); });
  };
  auto fold_gpu = [&](Tensor<float, Cuda>& m_, Tensor<float, Cuda>& w_, Tensor<float, Cuda>& f_) {
    return shape_error([&] { nsl::fold_weights<float>(s, m_.view(), w_.view(), f_.view()); });
  };
  auto backward_cpu = [&](Tensor<float>& df_, Tensor<float>& dm_) {
    return shape_error(
        [&] { nsl::fold_weights_backward<float>(s, m.view(), w.view(), df_.view(), folded.view(), dm_.view()); });
  };
  auto backward_gpu = [&](Tensor<float, Cuda>& df_, Tensor<float, Cuda>& dm_) {
    return shape_error(
        [&] { nsl::fold_weights_backward<float>(s, m_d.view(), w_d.view(), df_.view(), folded_d.view(), dm_.view()); });
  };
  auto same_error = [](const std::string& cpu, const std::string& gpu) {
    INFO("cpu: ", cpu, "\ngpu: ", gpu);
    CHECK(!cpu.empty());
    CHECK(gpu == cpu);
  };
  same_error(fold_cpu(m_bad, w, folded), fold_gpu(m_bad_d, w_d, folded_d));
  same_error(fold_cpu(m, w_bad, folded), fold_gpu(m_d, w_bad_d, folded_d));
  same_error(fold_cpu(m, w, folded_bad), fold_gpu(m_d, w_d, folded_bad_d));
  same_error(backward_cpu(folded_bad, dm), backward_gpu(folded_bad_d, dm_d));
  same_error(backward_cpu(folded, dm_bad), backward_gpu(folded_d, dm_bad_d));
  CHECK_THROWS_AS(nsl::fold_weights<float>(s, m_bad_d.view(), w_d.view(), folded_d.view()), nsl::ShapeError);
  CHECK_THROWS_AS(nsl::fold_weights_backward<float>(s, m_d.view(), w_d.view(), folded_d.view(), folded_d.view(),
                                                    dm_bad_d.view()),
                  nsl::ShapeError);
}
