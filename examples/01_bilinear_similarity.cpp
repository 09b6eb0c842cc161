// 01 — the bilinear similarity w^T M x, by the library and by hand.
//
// A convolution scores an input patch x against a filter w with the inner
// product w^T x. Neural similarity learning replaces it by w^T M x. For one
// 3x3 patch (K = 9 slots, slot r = 3*row + col) this program computes the
// score for three matrices M:
//   - M = I: the plain inner product, i.e. an ordinary convolution;
//   - M = diag(m) with m a 0/1 cross: a kernel-shape mask that switches
//     the corner slots off;
//   - a dense random K x K matrix: every weight slot reads a mixture of
//     input slots.
// "By the library" folds M into the filter, w' = M^T w, and runs nsl's
// Conv2d on the patch; "by hand" is the double sum over a, r of
// w_a M[a][r] x_r. The two agree, which is why a static M costs nothing at
// inference time.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>

#include "nsl/core/random.hpp"
#include "nsl/layers/conv2d.hpp"

namespace {

constexpr int K = 9;  // slots of a 3x3 kernel
using SlotMatrix = std::array<std::array<double, K>, K>;  // M[a][r]

// w^T M x as the formula reads.
double by_hand(const double* w, const SlotMatrix& M, const double* x) {
  double sum = 0.0;
  for (int a = 0; a < K; ++a)
    for (int r = 0; r < K; ++r) sum += w[a] * M[a][r] * x[r];
  return sum;
}

// Fold M into the filter (w' = M^T w) and convolve the 3x3 patch with it.
double by_library(const double* w, const SlotMatrix& M, const nsl::Tensor<double>& patch) {
  nsl::Conv2d<double> conv(1, 1, 3, {1, 0, false});  // one 3x3 filter, no padding, no bias
  for (int r = 0; r < K; ++r) {
    double folded = 0.0;
    for (int a = 0; a < K; ++a) folded += M[a][r] * w[a];
    conv.weight()[r] = folded;
  }
  return conv.forward(patch)[0];  // the output is 1 x 1 x 1 x 1
}

void print_matrix(const char* title, const SlotMatrix& M) {
  std::printf("%s\n", title);
  for (int a = 0; a < K; ++a) {
    std::printf("   ");
    for (int r = 0; r < K; ++r) std::printf(" %6.2f", M[a][r]);
    std::printf("\n");
  }
}

}  // namespace

int main() {
  nsl::Rng rng(2019);
  double w[K], x[K];
  nsl::Tensor<double> patch(nsl::Shape{1, 1, 3, 3});
  for (int r = 0; r < K; ++r) {
    w[r] = rng.normal();
    x[r] = rng.normal();
    patch[r] = x[r];
  }

  SlotMatrix identity{}, cross{}, dense{};
  const int cross_slots[K] = {0, 1, 0, 1, 1, 1, 0, 1, 0};  // + shape: corners off
  for (int a = 0; a < K; ++a) {
    identity[a][a] = 1.0;
    cross[a][a] = cross_slots[a];
    for (int r = 0; r < K; ++r) dense[a][r] = 0.3 * rng.normal() + (a == r ? 1.0 : 0.0);
  }

  std::printf("w (3x3 filter) and x (3x3 patch), slot r = 3*row + col:\n");
  for (int i = 0; i < 3; ++i)
    std::printf("   w: %6.2f %6.2f %6.2f    x: %6.2f %6.2f %6.2f\n", w[3 * i], w[3 * i + 1],
                w[3 * i + 2], x[3 * i], x[3 * i + 1], x[3 * i + 2]);
  print_matrix("\ndense M (identity plus noise):", dense);

  std::printf("\n%-34s %14s %14s\n", "similarity", "by library", "by hand");
  struct Row {
    const char* name;
    const SlotMatrix& M;
  };
  const Row rows[] = {{"M = I (inner product)", identity},
                      {"M = diag(cross mask)", cross},
                      {"M = dense 9x9", dense}};
  double worst = 0.0;
  for (const Row& row : rows) {
    const double lib = by_library(w, row.M, patch), hand = by_hand(w, row.M, x);
    std::printf("%-34s %14.10f %14.10f\n", row.name, lib, hand);
    worst = std::max(worst, std::abs(lib - hand));
  }
  std::printf("\nlargest difference: %.3g\n", worst);
  return worst < 1e-12 ? 0 : 1;
}
