/// \file linear_probe.hpp
/// \brief Linear probe on frozen features: standardise with the training statistics, fit a
///        multinomial logistic regression with an L2 penalty by full-batch L-BFGS in double,
///        report top-1 accuracy on the test features.
///
/// Objective: f(W, b) = (1/N) Σ_i −log softmax(W x_i + b)_{y_i} + (λ/2)·‖W‖²_F (the bias is not
/// penalised), with x standardised per dimension by the training mean and standard deviation
/// (dimensions with std < 1e-12 are centred only). The problem is strictly convex for λ > 0, so
/// the optimum does not depend on the starting point (zeros) or the optimiser; L-BFGS (memory m,
/// Armijo backtracking from step 1, first step scaled by 1/‖g‖) stops when ‖∇f‖_∞ < tolerance or
/// after max_iterations. Everything runs in double through Eigen; the result is deterministic for a
/// given thread count (Eigen's products may split work across OpenMP threads).
#pragma once
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <deque>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"

namespace mscl::eval {

struct linear_probe_options {
  double l2 = 1e-3;            ///< λ of (λ/2)‖W‖²
  int max_iterations = 500;
  double tolerance = 1e-6;     ///< on the largest absolute gradient entry
  int history = 10;            ///< L-BFGS memory
  bool standardize = true;
};

struct linear_probe_result {
  double train_accuracy = 0, test_accuracy = 0;  ///< top-1, in [0, 1]
  double final_loss = 0, gradient_norm = 0;       ///< objective and ‖∇f‖_∞ at the end
  int iterations = 0;
  bool converged = false;
  int num_classes = 0;
  std::vector<int> test_predictions;
  Eigen::MatrixXd weights;  ///< K × D, on standardised features
  Eigen::VectorXd bias;     ///< K
  Eigen::VectorXd mean, scale;  ///< standardisation: x' = (x − mean) / scale
};

namespace detail {
using matrix_rm = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

inline matrix_rm to_matrix(const tensor<float>& x, const char* what) {
  MSCL_CHECK(x.dim() == 2 && x.shape()[0] > 0 && x.shape()[1] > 0, shape_error,
             "eval::linear_probe: " << what << " features must be a non-empty N x D matrix, got " << to_string(x.shape()));
  const tensor<float> c = x.is_contiguous() ? x : x.clone();
  matrix_rm m(x.shape()[0], x.shape()[1]);
  for (index_t i = 0; i < m.size(); ++i) m.data()[i] = double(c.data()[i]);
  return m;
}

/// Loss and gradient of the probe objective at θ = [W (K×D, row-major) ; b (K)].
struct probe_objective {
  const matrix_rm& x;  // N × D standardised
  const std::vector<int>& y;
  int k;
  double l2;
  double operator()(const Eigen::VectorXd& theta, Eigen::VectorXd& grad) const {
    const index_t n = x.rows(), d = x.cols();
    Eigen::Map<const matrix_rm> w(theta.data(), k, d);
    Eigen::Map<const Eigen::VectorXd> b(theta.data() + k * d, k);
    matrix_rm logits = x * w.transpose();  // N × K
    logits.rowwise() += b.transpose();
    double loss = 0;
    for (index_t i = 0; i < n; ++i) {  // softmax in place, stable
      auto row = logits.row(i);
      const double m = row.maxCoeff();
      row.array() = (row.array() - m).exp();
      const double s = row.sum();
      loss += std::log(s) - std::log(std::max(row(y[std::size_t(i)]), 1e-300));
      row /= s;
      row(y[std::size_t(i)]) -= 1.0;  // now P − Y
    }
    loss = loss / double(n) + 0.5 * l2 * w.squaredNorm();
    grad.resize(theta.size());
    Eigen::Map<matrix_rm> gw(grad.data(), k, d);
    gw.noalias() = logits.transpose() * x / double(n);
    gw += l2 * w;
    Eigen::Map<Eigen::VectorXd>(grad.data() + k * d, k) = logits.colwise().sum().transpose() / double(n);
    return loss;
  }
};

inline std::vector<int> predict(const matrix_rm& x, const Eigen::MatrixXd& w, const Eigen::VectorXd& b) {
  matrix_rm logits = x * w.transpose();
  logits.rowwise() += b.transpose();
  std::vector<int> p(std::size_t(x.rows()));
  for (index_t i = 0; i < x.rows(); ++i) {
    Eigen::Index arg = 0;
    logits.row(i).maxCoeff(&arg);  // first maximum on ties
    p[std::size_t(i)] = int(arg);
  }
  return p;
}
}  // namespace detail

/// Fits the probe on (train, train_labels) and evaluates top-1 on (test, test_labels). Labels are
/// 0-based; num_classes = 0 takes 1 + the largest label seen.
inline linear_probe_result linear_probe(const tensor<float>& train, const std::vector<int>& train_labels,
                                        const tensor<float>& test, const std::vector<int>& test_labels,
                                        int num_classes = 0, const linear_probe_options& o = {}) {
  using detail::matrix_rm;
  matrix_rm xtr = detail::to_matrix(train, "train"), xte = detail::to_matrix(test, "test");
  const index_t n = xtr.rows(), d = xtr.cols();
  MSCL_CHECK(xte.cols() == d, shape_error,
             "eval::linear_probe: train features have " << d << " dimensions, test features " << xte.cols());
  MSCL_CHECK(index_t(train_labels.size()) == n && index_t(test_labels.size()) == xte.rows(), shape_error,
             "eval::linear_probe: " << train_labels.size() << " train labels for " << n << " rows, "
                                    << test_labels.size() << " test labels for " << xte.rows() << " rows");
  MSCL_CHECK(o.l2 >= 0 && o.max_iterations >= 0 && o.history >= 1 && o.tolerance >= 0, value_error,
             "eval::linear_probe: need l2 >= 0, max_iterations >= 0, history >= 1, tolerance >= 0");
  int k = num_classes;
  for (int l : train_labels) k = std::max(k, num_classes > 0 ? num_classes : l + 1);
  for (const auto* labels : {&train_labels, &test_labels})
    for (int l : *labels)
      MSCL_CHECK(l >= 0 && l < k, value_error, "eval::linear_probe: label " << l << " outside [0, " << k << ")");
  MSCL_CHECK(k >= 2, value_error, "eval::linear_probe: need at least 2 classes, got " << k);

  linear_probe_result r;
  r.num_classes = k;
  r.mean = Eigen::VectorXd::Zero(d);
  r.scale = Eigen::VectorXd::Ones(d);
  if (o.standardize) {
    r.mean = xtr.colwise().mean().transpose();
    for (index_t j = 0; j < d; ++j) {
      const double var = (xtr.col(j).array() - r.mean(j)).square().sum() / double(n);
      r.scale(j) = var > 1e-24 ? std::sqrt(var) : 1.0;
    }
    xtr = (xtr.rowwise() - r.mean.transpose()).array().rowwise() / r.scale.transpose().array();
    xte = (xte.rowwise() - r.mean.transpose()).array().rowwise() / r.scale.transpose().array();
  }

  // L-BFGS (two-loop recursion) with Armijo backtracking.
  const detail::probe_objective f{xtr, train_labels, k, o.l2};
  Eigen::VectorXd theta = Eigen::VectorXd::Zero(k * d + k), g, g_new, theta_new;
  double fx = f(theta, g);
  std::deque<Eigen::VectorXd> s_hist, y_hist;
  std::deque<double> rho_hist;
  int it = 0;
  for (; it < o.max_iterations && g.lpNorm<Eigen::Infinity>() >= o.tolerance; ++it) {
    Eigen::VectorXd q = g;
    std::vector<double> alpha(s_hist.size());
    for (int i = int(s_hist.size()) - 1; i >= 0; --i) {
      alpha[std::size_t(i)] = rho_hist[std::size_t(i)] * s_hist[std::size_t(i)].dot(q);
      q -= alpha[std::size_t(i)] * y_hist[std::size_t(i)];
    }
    if (!s_hist.empty()) q *= s_hist.back().dot(y_hist.back()) / y_hist.back().squaredNorm();
    else q /= std::max(1.0, g.norm());
    for (std::size_t i = 0; i < s_hist.size(); ++i) {
      const double beta = rho_hist[i] * y_hist[i].dot(q);
      q += s_hist[i] * (alpha[i] - beta);
    }
    Eigen::VectorXd dir = -q;
    double slope = g.dot(dir);
    if (!(slope < 0)) {  // not a descent direction (numerical trouble): restart from steepest descent
      s_hist.clear(); y_hist.clear(); rho_hist.clear();
      dir = -g / std::max(1.0, g.norm());
      slope = g.dot(dir);
    }
    double step = 1.0, f_new = 0;
    bool accepted = false;
    for (int ls = 0; ls < 40; ++ls, step *= 0.5) {
      theta_new = theta + step * dir;
      f_new = f(theta_new, g_new);
      if (std::isfinite(f_new) && f_new <= fx + 1e-4 * step * slope) { accepted = true; break; }
    }
    if (!accepted) break;  // no decrease possible at double precision: converged as far as it goes
    Eigen::VectorXd s = theta_new - theta, yv = g_new - g;
    const double sy = s.dot(yv);
    if (sy > 1e-12 * s.norm() * yv.norm()) {
      s_hist.push_back(s);
      y_hist.push_back(yv);
      rho_hist.push_back(1.0 / sy);
      if (int(s_hist.size()) > o.history) { s_hist.pop_front(); y_hist.pop_front(); rho_hist.pop_front(); }
    }
    theta = theta_new;
    g = g_new;
    fx = f_new;
  }
  r.iterations = it;
  r.final_loss = fx;
  r.gradient_norm = g.lpNorm<Eigen::Infinity>();
  r.converged = r.gradient_norm < o.tolerance;
  r.weights = Eigen::Map<const matrix_rm>(theta.data(), k, d);
  r.bias = theta.tail(k);
  const auto ptr = detail::predict(xtr, r.weights, r.bias);
  r.test_predictions = detail::predict(xte, r.weights, r.bias);
  index_t ctr = 0, cte = 0;
  for (index_t i = 0; i < n; ++i) ctr += ptr[std::size_t(i)] == train_labels[std::size_t(i)];
  for (index_t i = 0; i < xte.rows(); ++i) cte += r.test_predictions[std::size_t(i)] == test_labels[std::size_t(i)];
  r.train_accuracy = double(ctr) / double(n);
  r.test_accuracy = double(cte) / double(xte.rows());
  return r;
}

}  // namespace mscl::eval
