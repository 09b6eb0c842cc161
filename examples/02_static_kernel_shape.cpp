// 02 — a DNS layer learns a kernel's shape from data.
//
// The data: random images x and targets t = conv(x, w_true), where every
// filter of w_true is zero outside a fixed shape (a '+' cross for 3x3, an
// 'X' of both diagonals for 5x5). The model: a static DNS convolution,
// y = conv(x, m ∘ w), whose diagonal m is shared by all filters, trained on
// the squared error with
//   - weight decay on w (so m cannot shrink by letting w grow), and
//   - an L1 penalty on m, minimised with the proximal step
//     m <- soft_threshold(m, lr * lambda) after each gradient step.
// Slots the data does not need fall to exactly zero, so the learned |m|
// reproduces the true shape. The program prints both as k x k grids and
// fails (exit 1) unless every slot outside the shape ends below 5% of the
// largest slot.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "nsl/layers/static_ns_conv2d.hpp"

namespace {

struct Problem {
  const char* name;
  nsl::index kernel;
  std::vector<int> mask;  // 1 = slot in the true shape, row-major
};

bool learn_shape(const Problem& problem, nsl::Rng& rng) {
  const nsl::index k = problem.kernel, K = k * k, C = 4, O = 4, batch = 16, size = 14;
  using Layer = nsl::StaticNSConv2d<float>;
  const nsl::Conv2dOptions same{1, k / 2, false};

  // The teacher: a plain convolution whose filters live on the mask.
  nsl::Conv2d<float> teacher(C, O, k, same, rng);
  for (nsl::index i = 0; i < teacher.weight().size(); ++i)
    if (!problem.mask[static_cast<std::size_t>(i % K)]) teacher.weight()[i] = 0.0f;

  Layer student(C, O, k, nsl::Structure::diagonal, same, rng);
  const float lr = 0.5f, momentum = 0.9f, weight_decay = 1e-3f, l1 = 2e-3f;
  nsl::Tensor<float> velocity_w(student.weight().shape()), velocity_m(student.similarity().shape());

  float loss = 0.0f;
  for (int step = 1; step <= 400; ++step) {
    const auto x = nsl::random_normal<float>(nsl::Shape{batch, C, size, size}, rng);
    const nsl::Tensor<float> target = teacher.forward(x);
    const nsl::Tensor<float> y = student.forward(x);
    // L = 1/(2n) sum (y - t)^2 over the n output elements, so dL/dy = (y - t) / n.
    const float n = float(y.size());
    nsl::Tensor<float> dy(y.shape());
    dy.vec() = (y.vec() - target.vec()) / n;
    loss = 0.5f * (y.vec() - target.vec()).squaredNorm() / n;

    nsl::zero_gradients(student.parameters());
    student.backward_into(dy.view(), {});  // the input gradient is not needed
    student.weight_grad().vec() += weight_decay * student.weight().vec();
    velocity_w.vec() = momentum * velocity_w.vec() + student.weight_grad().vec();
    velocity_m.vec() = momentum * velocity_m.vec() + student.similarity_grad().vec();
    student.weight().vec() -= lr * velocity_w.vec();
    student.similarity().vec() -= lr * velocity_m.vec();
    nsl::soft_threshold(student.similarity().view(), lr * l1);  // the L1 proximal step
    if (step % 100 == 0) std::printf("  %s step %3d  loss %.5f\n", problem.name, step, loss);
  }

  const nsl::Vector<float> shape = nsl::learned_kernel_shape(student);
  const float largest = shape.maxCoeff();
  float worst_wrong = 0.0f;
  std::printf("\n  learned |m| / max          true shape\n");
  for (nsl::index di = 0; di < k; ++di) {
    std::printf("  ");
    for (nsl::index dj = 0; dj < k; ++dj) std::printf(" %5.2f", shape[di * k + dj] / largest);
    std::printf("      ");
    for (nsl::index dj = 0; dj < k; ++dj)
      std::printf(" %c", problem.mask[static_cast<std::size_t>(di * k + dj)] ? '#' : '.');
    std::printf("\n");
  }
  for (nsl::index r = 0; r < K; ++r)
    if (!problem.mask[static_cast<std::size_t>(r)]) worst_wrong = std::max(worst_wrong, shape[r] / largest);
  const bool recovered = std::isfinite(largest) && largest > 0.0f && worst_wrong < 0.05f;
  std::printf("  largest slot outside the shape: %.1f%% of the largest -> %s\n\n", 100.0f * worst_wrong,
              recovered ? "shape recovered" : "NOT recovered");
  return recovered;
}

}  // namespace

int main() {
  nsl::Rng rng(7);
  const Problem cross{"3x3 cross", 3, {0, 1, 0, 1, 1, 1, 0, 1, 0}};
  const Problem diagonals{"5x5 diagonals", 5, {1, 0, 0, 0, 1,  //
                                                0, 1, 0, 1, 0,  //
                                                0, 0, 1, 0, 0,  //
                                                0, 1, 0, 1, 0,  //
                                                1, 0, 0, 0, 1}};
  bool ok = true;
  for (const Problem& p : {cross, diagonals}) {
    std::printf("%s:\n", p.name);
    ok = learn_shape(p, rng) && ok;
  }
  return ok ? 0 : 1;
}
