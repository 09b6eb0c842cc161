#include <doctest/doctest.h>

#include "nsl/core/gemm.hpp"
#include "nsl/core/random.hpp"
#include "test_util.hpp"

namespace {
template <class T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// gemm against Eigen's product for every transposition and beta on an M x N x K problem.
template <class T>
void check_against_eigen(nsl::index M, nsl::index N, nsl::index K, nsl::Rng& rng, nsl::GemmScratch<T>& scratch,
                         double tolerance) {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (T beta : {T(0), T(1)}) {
        CAPTURE(M); CAPTURE(N); CAPTURE(K); CAPTURE(ta); CAPTURE(tb); CAPTURE(beta);
        const auto a_t = nsl::test::randn<T>(nsl::Shape{ta ? K : M, ta ? M : K}, rng);
        const auto b_t = nsl::test::randn<T>(nsl::Shape{tb ? N : K, tb ? K : N}, rng);
        const RowMajor<T> a = a_t.matrix(), b = b_t.matrix();
        const RowMajor<T> c0 = nsl::test::randn<T>(nsl::Shape{M, N}, rng).matrix();
        const RowMajor<T> op_a = ta ? RowMajor<T>(a.transpose()) : a, op_b = tb ? RowMajor<T>(b.transpose()) : b;
        const RowMajor<T> expected = beta * c0 + op_a * op_b;
        RowMajor<T> c = c0;
        nsl::gemm<T>(ta, tb, M, N, K, a.data(), b.data(), beta, c.data(), scratch);
        CHECK((c - expected).cwiseAbs().maxCoeff() <= tolerance * (1 + expected.cwiseAbs().maxCoeff()));
      }
}
}  // namespace

TEST_CASE("gemm equals Eigen's product for every transposition, beta 0 and 1, small and blocked sizes") {
  nsl::Rng rng(21);
  nsl::GemmScratch<double> scratch;
  const int saved = Eigen::nbThreads();
  Eigen::setNbThreads(1);  // the scratch path
  for (auto [m, n, k] : {std::array<nsl::index, 3>{1, 1, 1}, {3, 5, 2}, {17, 9, 33}, {64, 300, 700}, {300, 7, 1100}})
    check_against_eigen<double>(m, n, k, rng, scratch, 1e-12);
  nsl::GemmScratch<float> scratch_f;
  check_against_eigen<float>(32, 784, 288, rng, scratch_f, 1e-4);
  Eigen::setNbThreads(2);  // outside a parallel region: Eigen's own threaded product
  check_against_eigen<double>(40, 50, 60, rng, scratch, 1e-12);
  Eigen::setNbThreads(saved);
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
}
