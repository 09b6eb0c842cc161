// nsl/check/gradcheck.hpp — checks a layer's backward pass against central
// finite differences, in double precision.
//
// The layer's output y is reduced to a scalar with a random projection R
// (L = <y, R>, R drawn from a seeded N(0, 1)), so a gradient that is wrong or
// zero cannot pass by accident. Then, for every element v of the input and of
// every parameter,
//
//     D(h)     = (L(v + h) - L(v - h)) / (2 h)
//     numeric  = (4 D(h/2) - D(h)) / 3          (Richardson: error O(h^4), not O(h^2))
//
// with h shrunk tenfold (up to 3 times) while D(h) and D(h/2) disagree, which
// happens only when a kink (ReLU at 0) lies within h of the point.
//     analytic = what backward(R) returned (input) or added (parameters)
//     error    = |analytic - numeric| / max(|analytic|, |numeric|, floor)
//
// where floor = `relative_floor` times the largest |numeric| over all checked
// tensors: an entry far below the gradient's overall scale (a bias before a
// BatchNorm, whose true gradient is 0) is judged against that scale, not
// against its own rounding noise.
// Before backward, the input-gradient buffer is filled with NaN-free garbage
// and each parameter gradient with known random values, which are subtracted
// afterwards: an input-gradient entry backward never writes, or a parameter
// gradient that is assigned instead of accumulated, shows up as an error.
//
// Works on any object with `Shape output_shape(Shape)`, `forward(x)`
// returning the output, `backward_into(dy, dx)` and `parameters()` (every
// nsl layer, and containers of layers).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "nsl/core/random.hpp"
#include "nsl/core/tensor.hpp"

namespace nsl {

struct GradcheckOptions {
  double step = 1e-4;             ///< finite-difference step h (D(h) and D(h/2))
  double relative_floor = 1e-3;   ///< see the error definition above
  std::uint64_t seed = 20191029;  ///< seeds R and the garbage fills
  bool check_input = true;        ///< also check dL/dx
  bool richardson = true;         ///< extrapolate D(h), D(h/2); plain D(h) when false
  int max_step_reductions = 3;    ///< times h may shrink tenfold near a kink
};

/// The worst element of one checked tensor.
struct GradcheckTensorReport {
  std::string name;           ///< "input" or the parameter's name
  index elements = 0;         ///< how many were checked
  index step_reductions = 0;  ///< elements whose step had to shrink (near a kink)
  index worst_index = -1;     ///< flat index of the worst element
  double worst_error = 0.0;
  double analytic = 0.0, numeric = 0.0;  ///< at the worst element
};

struct GradcheckReport {
  std::vector<GradcheckTensorReport> tensors;
  double worst_error = 0.0;

  /// Multi-line summary naming each tensor's worst element.
  std::string str() const {
    std::string s = cat("gradcheck: worst relative error ", worst_error, "\n");
    for (const auto& t : tensors)
      s += cat("  ", t.name, " (", t.elements, " elements): worst ", t.worst_error, " at [",
               t.worst_index, "] analytic ", t.analytic, " numeric ", t.numeric,
               t.step_reductions ? cat(", step reduced ", t.step_reductions, "x") : std::string(), "\n");
    return s;
  }
};

namespace detail {
inline void gradcheck_note(GradcheckTensorReport& r, index i, double analytic, double numeric,
                           double scale) {
  const double denom = std::max({std::abs(analytic), std::abs(numeric), scale, 1e-300});
  const double error = std::abs(analytic - numeric) / denom;
  if (r.worst_index < 0 || error > r.worst_error || std::isnan(error)) {
    r.worst_error = std::isnan(error) ? INFINITY : error;
    r.worst_index = i;
    r.analytic = analytic;
    r.numeric = numeric;
  }
}
}  // namespace detail

/// Checks every input and parameter gradient of `layer` at input `x`.
template <class LayerT>
GradcheckReport gradcheck(LayerT& layer, const Tensor<double>& x_in, const GradcheckOptions& opt = {}) {
  Rng rng(opt.seed);
  Tensor<double> x = x_in;
  const Tensor<double> projection = random_normal<double>(layer.output_shape(x.shape()), rng);
  auto loss = [&]() {
    const Tensor<double> y = layer.forward(x.view());
    return y.vec().dot(projection.vec());
  };

  // Analytic gradients, with garbage in the buffers beforehand.
  auto params = layer.parameters();
  std::vector<Tensor<double>> garbage;
  for (auto& p : params) {
    garbage.push_back(random_normal<double>(p.grad.shape(), rng, 0.0, 10.0));
    p.grad.vec() = garbage.back().vec();
  }
  layer.forward(x.view());
  Tensor<double> dx(x.shape());
  fill_normal<double>(dx.view(), rng, 0.0, 10.0);
  layer.backward_into(projection.view(), opt.check_input ? dx.view() : TensorView<double>());
  std::vector<Tensor<double>> analytic;
  for (std::size_t i = 0; i < params.size(); ++i) {
    params[i].grad.vec() -= garbage[i].vec();  // leaves the true gradient in place
    analytic.emplace_back(TensorView<const double>(params[i].grad));
  }

  GradcheckReport report;
  std::vector<Tensor<double>> numerics;  // per checked tensor, in report order
  auto check = [&](const std::string& name, TensorView<double> value) {
    Tensor<double> numeric(value.shape());
    GradcheckTensorReport r;
    r.name = name;
    r.elements = value.size();
    auto central = [&](index i, double h) {
      const double saved = value[i];
      value[i] = saved + h;
      const double plus = loss();
      value[i] = saved - h;
      const double minus = loss();
      value[i] = saved;
      return (plus - minus) / (2.0 * h);
    };
    for (index i = 0; i < value.size(); ++i) {
      // Near a kink (ReLU, max-pool) D(h) and D(h/2) straddle it and disagree;
      // then shrink h until they agree, i.e. until the kink is out of reach.
      double h = opt.step;
      for (int attempt = 0;; ++attempt, h *= 0.1) {
        const double coarse = central(i, h);
        if (!opt.richardson) {
          numeric[i] = coarse;
          break;
        }
        const double fine = central(i, 0.5 * h);
        numeric[i] = (4.0 * fine - coarse) / 3.0;
        if (std::abs(coarse - fine) <= 1e-6 + 1e-4 * std::abs(fine) || attempt == opt.max_step_reductions) break;
        ++r.step_reductions;
      }
    }
    report.tensors.push_back(r);
    numerics.push_back(std::move(numeric));
  };
  std::vector<const Tensor<double>*> analytics;
  if (opt.check_input) {
    check("input", x.view());
    analytics.push_back(&dx);
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    check(params[i].name, params[i].value);
    analytics.push_back(&analytic[i]);
  }
  double largest = 0.0;
  for (const auto& n : numerics)
    if (n.size()) largest = std::max(largest, n.vec().cwiseAbs().maxCoeff());
  for (std::size_t t = 0; t < numerics.size(); ++t) {
    GradcheckTensorReport& r = report.tensors[t];
    for (index i = 0; i < numerics[t].size(); ++i)
      detail::gradcheck_note(r, i, (*analytics[t])[i], numerics[t][i], opt.relative_floor * largest);
    report.worst_error = std::max(report.worst_error, r.worst_error);
  }
  return report;
}

}  // namespace nsl
