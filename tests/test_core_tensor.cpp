#include <doctest/doctest.h>
#include <string>

#include "nsl/core/tensor.hpp"

TEST_CASE("a tensor is zero-initialised and indexed in C order") {
  nsl::Tensor<float> t(nsl::Shape{2, 3, 4, 5});
  CHECK(t.size() == 120);
  CHECK(t.vec().cwiseAbs().maxCoeff() == 0.0f);
  t(1, 2, 3, 4) = 7.0f;
  CHECK(t[((1 * 3 + 2) * 4 + 3) * 5 + 4] == 7.0f);
  t(0, 1, 0, 0) = 1.0f;
  CHECK(t.matrix()(0, 20) == 1.0f);  // rank 4 as N x (C*H*W)
}

TEST_CASE("views share storage - a sample view selects one image of the batch") {
  nsl::Tensor<double> t(nsl::Shape{3, 2, 2, 2});
  for (nsl::index i = 0; i < t.size(); ++i) t[i] = double(i);
  nsl::TensorView<double> v = t.view();
  v(2, 1, 1, 1) = -1.0;
  CHECK(t[23] == -1.0);
  auto s = v.sample(1);
  CHECK(s.shape() == nsl::Shape{1, 2, 2, 2});
  CHECK(s[0] == 8.0);
  nsl::TensorView<const double> c = v;  // mutable view converts to a const view
  CHECK(c.matrix(6, 4)(2, 0) == 8.0);
  CHECK_THROWS_AS(c.matrix(5, 5), nsl::ShapeError);
  CHECK_THROWS_AS(c.reshaped(nsl::Shape{7}), nsl::ShapeError);
}

TEST_CASE("copies are deep - reshape keeps the elements - cast converts the scalar type") {
  nsl::Tensor<double> a(nsl::Shape{2, 3}, 1.5);
  nsl::Tensor<double> b = a;
  b[0] = 0.0;
  CHECK(a[0] == 1.5);
  b.reshape(nsl::Shape{3, 2});
  CHECK(b.shape() == nsl::Shape{3, 2});
  CHECK_THROWS_AS(b.reshape(nsl::Shape{4}), nsl::ShapeError);
  nsl::Tensor<float> f = nsl::cast<float>(a);
  CHECK(f[5] == 1.5f);
  nsl::Tensor<double> d(nsl::Shape{3, 2});
  CHECK_THROWS_AS(nsl::copy<double>(a.view(), d.view()), nsl::ShapeError);
}

TEST_CASE("device-generic helpers on host tensors: set_zero, add_into, assign_host_tensor, parse_device") {
  nsl::Tensor<float> a(nsl::Shape{2, 3}, 2.0f), b(nsl::Shape{2, 3}, 0.5f);
  nsl::add_into<float>(b.view(), a.view());
  CHECK(a[0] == 2.5f);
  CHECK(a[5] == 2.5f);
  nsl::set_zero<float>(a.view());
  CHECK(a.vec().cwiseAbs().maxCoeff() == 0.0f);
  nsl::Tensor<float> wrong(nsl::Shape{3, 2});
  CHECK_THROWS_AS(nsl::add_into<float>(wrong.view(), a.view()), nsl::ShapeError);
  nsl::Tensor<float> target;
  nsl::assign_host_tensor(target, b);
  CHECK(target.shape() == b.shape());
  CHECK(target[4] == 0.5f);
  CHECK(nsl::parse_device("cpu") == nsl::DeviceKind::cpu);
  CHECK(nsl::parse_device("cuda") == nsl::DeviceKind::cuda);
  CHECK_THROWS_WITH_AS(nsl::parse_device("gpu"), "unknown device 'gpu' (expected cpu or cuda)", nsl::ArgumentError);
  CHECK(std::string(nsl::Cpu::name) == "cpu");
}
