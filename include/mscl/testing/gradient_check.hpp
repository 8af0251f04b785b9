/// \file gradient_check.hpp
/// \brief Finite-difference check of autograd gradients (double precision), shipped with the
///        library so that users can check their own ops and objectives the same way.
///
/// The scalar probed is L = sum(f(inputs) ⊙ R) for a fixed random R, so every output element
/// contributes. Analytic gradients come from one backward pass with grad_output = R; numerical
/// ones from central differences (x ± eps) of L. Large inputs are probed at `max_probes_per_input`
/// random positions (deterministic given `seed`).
#pragma once
#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "../autograd/engine.hpp"
#include "../core/rng.hpp"
#include "../core/tensor.hpp"

namespace mscl::testing {

struct gradient_check_options {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-4;
  index_t max_probes_per_input = 64;
  std::uint64_t seed = 1234;
};

struct gradient_check_result {
  bool ok = true;
  double max_abs_error = 0;
  double max_rel_error = 0;
  std::string report;  ///< the first few failures, naming input and flat index
};

template <class B = cpu>
using function_of_inputs = std::function<tensor<double, B>(const std::vector<tensor<double, B>>&)>;

/// `f` maps the input list to any tensor; it is called once with recording on, then many
/// times under no_grad.
template <class B = cpu, class F>
gradient_check_result check_gradients(F&& f, std::vector<tensor<double, B>> inputs,
                                      const gradient_check_options& opt = {}) {
  gradient_check_result res;
  std::ostringstream report;
  for (auto& x : inputs) {
    x = x.clone();
    x.set_requires_grad(true);
  }
  generator gen(opt.seed);
  tensor<double, B> out = f(inputs);
  tensor<double, B> weight = tensor<double, B>::empty(out.shape());
  gen.fill_normal(weight.data(), weight.numel(), 0.0, 1.0);
  out.backward(weight);

  auto probe_loss = [&](const std::vector<tensor<double, B>>& xs) {
    no_grad guard;
    tensor<double, B> o = f(xs);
    const auto ov = o.to_vector();
    const double* w = weight.data();
    double s = 0;
    for (std::size_t i = 0; i < ov.size(); ++i) s += ov[i] * w[i];
    return s;
  };

  int failures = 0;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    tensor<double, B>& x = inputs[k];
    tensor<double, B> analytic = x.grad();
    const index_t n = x.numel();
    std::vector<index_t> positions;
    if (n <= opt.max_probes_per_input) {
      for (index_t i = 0; i < n; ++i) positions.push_back(i);
    } else {
      for (index_t j = 0; j < opt.max_probes_per_input; ++j) positions.push_back(gen.randint(0, n - 1));
    }
    for (index_t i : positions) {
      double* p = x.data() + i;
      const double saved = *p;
      *p = saved + opt.eps;
      const double lp = probe_loss(inputs);
      *p = saved - opt.eps;
      const double lm = probe_loss(inputs);
      *p = saved;
      const double numeric = (lp - lm) / (2 * opt.eps);
      const double a = analytic.defined() ? analytic.data()[i] : 0.0;
      const double abs_err = std::abs(a - numeric);
      const double rel_err = abs_err / std::max(std::abs(numeric), 1e-12);
      res.max_abs_error = std::max(res.max_abs_error, abs_err);
      if (abs_err > opt.atol) res.max_rel_error = std::max(res.max_rel_error, rel_err);
      if (abs_err > opt.atol + opt.rtol * std::abs(numeric)) {
        res.ok = false;
        if (failures++ < 8)
          report << "input " << k << " (shape " << to_string(x.shape()) << ") element " << i << ": analytic " << a
                 << " vs numeric " << numeric << "\n";
      }
    }
  }
  res.report = report.str();
  return res;
}

}  // namespace mscl::testing
