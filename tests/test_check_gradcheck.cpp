#include <doctest/doctest.h>

#include "nsl/check/gradcheck.hpp"
#include "nsl/layers/layer.hpp"
#include "test_util.hpp"

// gradcheck must fail when backward is wrong, or it proves nothing. These
// layers compute y = a * x^2 (a scalar parameter) with deliberate mistakes.
namespace {
enum class Bug { none, wrong_input_gradient, unwritten_input_gradient, assigns_parameter_gradient };

class Square : public nsl::Layer<double> {
 public:
  explicit Square(Bug bug) : bug_(bug), a_(nsl::Shape{1}, 1.5), da_(nsl::Shape{1}) {}
  std::string describe() const override { return "Square"; }
  nsl::Shape output_shape(const nsl::Shape& s) const override { return s; }
  void forward_into(nsl::TensorView<const double> x, nsl::TensorView<double> y) override {
    for (nsl::index i = 0; i < x.size(); ++i) y[i] = a_[0] * x[i] * x[i];
    x_ = nsl::Tensor<double>(x);
    remember_input_shape(x.shape());
  }
  void backward_into(nsl::TensorView<const double> dy, nsl::TensorView<double> dx) override {
    double da = 0;
    for (nsl::index i = 0; i < dy.size(); ++i) {
      da += dy[i] * x_[i] * x_[i];
      if (bug_ == Bug::unwritten_input_gradient && i == 3) continue;
      dx[i] = dy[i] * a_[0] * x_[i] * (bug_ == Bug::wrong_input_gradient ? 2.001 : 2.0);
    }
    if (bug_ == Bug::assigns_parameter_gradient) da_[0] = da;
    else da_[0] += da;
  }
  std::vector<nsl::Parameter<double>> parameters() override { return {{"a", a_.view(), da_.view(), false}}; }

 private:
  Bug bug_;
  nsl::Tensor<double> a_, da_, x_;
};
}  // namespace

TEST_CASE("gradcheck passes a correct backward and catches each kind of mistake") {
  nsl::Rng rng(1);
  const auto x = nsl::test::randn<double>(nsl::Shape{2, 3}, rng);
  Square good(Bug::none);
  CHECK(nsl::gradcheck(good, x).worst_error < 1e-8);
  CHECK(good.parameters()[0].grad[0] != 0.0);  // the true gradient is left in the buffer

  Square wrong(Bug::wrong_input_gradient);
  auto report = nsl::gradcheck(wrong, x);
  CHECK(report.tensors[0].worst_error > 1e-4);
  CHECK(report.tensors[0].name == "input");

  Square unwritten(Bug::unwritten_input_gradient);
  report = nsl::gradcheck(unwritten, x);
  CHECK(report.worst_error > 1e-2);
  CHECK(report.tensors[0].worst_index == 3);

  Square assigns(Bug::assigns_parameter_gradient);
  report = nsl::gradcheck(assigns, x);
  CHECK(report.tensors[1].name == "a");
  CHECK(report.tensors[1].worst_error > 1e-2);
  CHECK(report.str().find("a (1 elements)") != std::string::npos);
}

#include "nsl/layers/relu.hpp"

TEST_CASE("gradcheck shrinks its step when a kink lies within reach, and still passes a correct backward") {
  nsl::Tensor<double> x(nsl::Shape{1, 1, 2, 2});
  x[0] = 5e-5;  // ReLU's kink at 0 is within the default step 1e-4
  x[1] = -3e-5;
  x[2] = 0.7;
  x[3] = -0.4;
  nsl::ReLU<double> relu;
  const auto report = nsl::gradcheck(relu, x);
  CAPTURE(report.str());
  CHECK(report.worst_error < 1e-8);
  CHECK(report.tensors[0].step_reductions > 0);
  nsl::GradcheckOptions fixed_step;
  fixed_step.max_step_reductions = 0;  // without the reduction the kink spoils the difference
  CHECK(nsl::gradcheck(relu, x, fixed_step).worst_error > 0.1);
}
