#include <doctest/doctest.h>

#include <array>

#include "nsl/core/gemm.hpp"
#include "nsl/core/random.hpp"
#include "test_util.hpp"

namespace {
template <class T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// gemm against gemm_reference (and the reference against Eigen's product) for
// every transposition and beta on an M x N x K problem.
template <class T>
void check_against_reference(nsl::index M, nsl::index N, nsl::index K, nsl::Rng& rng, nsl::GemmScratch<T>& scratch,
                             double tolerance) {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (T beta : {T(0), T(1)}) {
        CAPTURE(M); CAPTURE(N); CAPTURE(K); CAPTURE(ta); CAPTURE(tb); CAPTURE(beta);
        const auto a_t = nsl::test::randn<T>(nsl::Shape{ta ? K : M, ta ? M : K}, rng);
        const auto b_t = nsl::test::randn<T>(nsl::Shape{tb ? N : K, tb ? K : N}, rng);
        const RowMajor<T> a = a_t.matrix(), b = b_t.matrix();
        const RowMajor<T> c0 = nsl::test::randn<T>(nsl::Shape{M, N}, rng).matrix();
        RowMajor<T> expected = c0;
        nsl::gemm_reference<T>(ta, tb, M, N, K, a.data(), b.data(), beta, expected.data());
        const RowMajor<T> op_a = ta ? RowMajor<T>(a.transpose()) : a, op_b = tb ? RowMajor<T>(b.transpose()) : b;
        const RowMajor<T> eigen = beta * c0 + op_a * op_b;
        const double scale = 1 + expected.cwiseAbs().maxCoeff();
        REQUIRE((expected - eigen).cwiseAbs().maxCoeff() <= tolerance * scale);
        RowMajor<T> c = c0;
        nsl::gemm<T>(ta, tb, M, N, K, a.data(), b.data(), beta, c.data(), scratch);
        CHECK((c - expected).cwiseAbs().maxCoeff() <= tolerance * scale);
      }
}

const std::array<std::array<nsl::index, 3>, 9> shapes{{
    {1, 1, 1}, {3, 5, 2}, {17, 9, 33}, {7, 17, 5},   // single partial tiles of every kind
    {64, 300, 700},                                  // two depth blocks
    {300, 7, 1100},                                  // three depth blocks, more rows than one row block
    {13, 4200, 3},                                   // more columns than one column block
    {64, 256, 576}, {128, 49, 1152}}};               // convolution shapes (per image)
}  // namespace

TEST_CASE("gemm equals the reference for every transposition, beta 0 and 1, partial tiles and blocked sizes") {
  nsl::Rng rng(21);
  const int saved = nsl::num_threads();
  nsl::set_num_threads(1);  // single-threaded: the path inside a batch loop
  nsl::GemmScratch<double> scratch;
  for (auto [m, n, k] : shapes) check_against_reference<double>(m, n, k, rng, scratch, 1e-12);
  nsl::GemmScratch<float> scratch_f;
  check_against_reference<float>(32, 784, 288, rng, scratch_f, 1e-4);
  check_against_reference<float>(37, 21, 13, rng, scratch_f, 1e-4);
  check_against_reference<float>(20, 70, 37, rng, scratch_f, 1e-4);  // whole panels, depths past a multiple of 16
  nsl::set_num_threads(saved);
}

TEST_CASE("gemm outside a parallel region splits the product over threads and gives the same result") {
  nsl::Rng rng(22);
  const int saved = nsl::num_threads();
  for (int threads : {2, 3}) {
    CAPTURE(threads);
    nsl::set_num_threads(threads);
    nsl::GemmScratch<double> scratch;
    // Wide (split by columns), tall (split by rows), both with work for
    // three threads (detail::min_gemm_work each), and too small to split.
    static_assert(40 * 450 * 60 >= 3 * nsl::detail::min_gemm_work && 333 * 20 * 140 >= 3 * nsl::detail::min_gemm_work);
    for (auto [m, n, k] : {std::array<nsl::index, 3>{40, 450, 60}, {333, 20, 140}, {5, 9, 4}})
      check_against_reference<double>(m, n, k, rng, scratch, 1e-12);
    nsl::GemmScratch<float> scratch_f;
    check_against_reference<float>(64, 576, 256, rng, scratch_f, 1e-4);
  }
  nsl::set_num_threads(saved);
}

TEST_CASE("gemm inside a parallel region: concurrent products with their own scratch agree with the reference") {
  nsl::Rng rng(23);
  const nsl::index M = 70, N = 90, K = 110;
  const RowMajor<double> a = nsl::test::randn<double>(nsl::Shape{M, K}, rng).matrix();
  const RowMajor<double> b = nsl::test::randn<double>(nsl::Shape{K, N}, rng).matrix();
  RowMajor<double> expected(M, N);
  nsl::gemm_reference<double>(false, false, M, N, K, a.data(), b.data(), 0.0, expected.data());
  std::array<RowMajor<double>, 4> results;
  std::array<nsl::GemmScratch<double>, 4> scratch;
  for (auto& r : results) r.setConstant(M, N, 7.0);
NSL_OMP(parallel for num_threads(4) schedule(static))
  for (int t = 0; t < 4; ++t)
    nsl::gemm<double>(false, false, M, N, K, a.data(), b.data(), 0.0, results[static_cast<std::size_t>(t)].data(),
                      scratch[static_cast<std::size_t>(t)]);
  for (const auto& r : results) CHECK((r - expected).cwiseAbs().maxCoeff() <= 1e-12 * (1 + expected.cwiseAbs().maxCoeff()));
}

TEST_CASE("gemm with a packed left operand equals the reference, on one thread and split over threads") {
  nsl::Rng rng(24);
  const int saved = nsl::num_threads();
  for (int threads : {1, 2, 3}) {
    nsl::set_num_threads(threads);
    nsl::GemmScratch<double> scratch;
    nsl::PackedLhs<double> packed;
    for (auto [m, n, k] : shapes)
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          for (double beta : {0.0, 1.0}) {
            CAPTURE(threads); CAPTURE(m); CAPTURE(n); CAPTURE(k); CAPTURE(ta); CAPTURE(tb); CAPTURE(beta);
            const RowMajor<double> a = nsl::test::randn<double>(nsl::Shape{ta ? k : m, ta ? m : k}, rng).matrix();
            const RowMajor<double> b = nsl::test::randn<double>(nsl::Shape{tb ? n : k, tb ? k : n}, rng).matrix();
            RowMajor<double> expected = nsl::test::randn<double>(nsl::Shape{m, n}, rng).matrix();
            RowMajor<double> c = expected;
            nsl::gemm_reference<double>(ta, tb, m, n, k, a.data(), b.data(), beta, expected.data());
            // Pack from a copy that is then overwritten: the packed operand must not refer to it.
            RowMajor<double> a_copy = a;
            packed.pack(ta, m, k, a_copy.data());
            a_copy.setConstant(1e300);
            REQUIRE(packed.rows() == m);
            REQUIRE(packed.depth() == k);
            nsl::gemm<double>(packed, tb, n, b.data(), beta, c.data(), scratch);
            CHECK((c - expected).cwiseAbs().maxCoeff() <= 1e-12 * (1 + expected.cwiseAbs().maxCoeff()));
          }
  }
  nsl::set_num_threads(saved);
}

TEST_CASE("gemm with zero sizes leaves C as beta C, and rejects a beta other than 0 or 1") {
  nsl::GemmScratch<double> scratch;
  RowMajor<double> c = RowMajor<double>::Constant(2, 3, 4.0);
  nsl::gemm<double>(false, false, 2, 3, 0, nullptr, nullptr, 1.0, c.data(), scratch);
  CHECK(c.isApproxToConstant(4.0));
  nsl::gemm<double>(false, false, 2, 3, 0, nullptr, nullptr, 0.0, c.data(), scratch);
  CHECK(c.isZero());
  CHECK_THROWS_WITH_AS(nsl::gemm<double>(false, false, 2, 3, 1, c.data(), c.data(), 0.5, c.data(), scratch),
                       "gemm: beta must be 0 or 1, got 0.5", nsl::ArgumentError);
  CHECK_THROWS_WITH_AS(nsl::gemm<double>(false, false, -1, 3, 1, c.data(), c.data(), 0.0, c.data(), scratch),
                       "gemm: negative size -1 x 3 x 1", nsl::ArgumentError);
}

#if defined(NSL_HAVE_XSIMD) && NSL_HAVE_XSIMD
TEST_CASE("simd_fma rounds once, in every lane, whatever the optimisation level") {
  // (1 + 2^-12)^2 - (1 + 2^-11) = 2^-24 exactly; rounding the product first
  // (to 1 + 2^-11, a tie to even) gives 0. Likewise in double with 2^-27.
  const auto check = [](auto one) {
    using T = decltype(one);
    using B = xsimd::batch<T>;
    const T e = std::is_same_v<T, float> ? T(1) / T(4096) : T(1) / T(134217728);
    const B a(T(1) + e), c(-(T(1) + 2 * e));
    alignas(64) T out[B::size];
    nsl::simd_fma(a, a, c).store_aligned(out);
    for (std::size_t i = 0; i < B::size; ++i) CHECK(out[i] == e * e);
  };
  check(1.0f);
  check(1.0);
}
#endif
