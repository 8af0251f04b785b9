/// \file sgd.hpp
/// \brief SGD with momentum and weight decay (PyTorch semantics, no dampening), parameter
///        groups with their own lr/weight decay, and global-norm gradient clipping.
///
/// Update per parameter p with gradient g (PyTorch torch.optim.SGD):
///   d = g + wd·p;  buf = d on the first step, else momentum·buf + d;  p -= lr·buf
/// (Nesterov: p -= lr·(d + momentum·buf)). One fused pass per parameter.
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "../core/tensor.hpp"

namespace mscl::optim {

struct sgd_options {
  double lr = 0.01;
  double momentum = 0.9;
  double weight_decay = 1e-4;
  bool nesterov = false;
};

template <class T, class B = cpu>
struct param_group {
  std::vector<tensor<T, B>> params;
  sgd_options options;
  double lr_scale = 1.0;  ///< multiplies the scheduled lr (per-group learning rates)
};

template <class T, class B = cpu>
class sgd {
 public:
  using tensor_t = tensor<T, B>;

  sgd(std::vector<tensor_t> params, const sgd_options& options) { add_group({std::move(params), options, 1.0}); }
  explicit sgd(std::vector<param_group<T, B>> groups) {
    for (auto& g : groups) add_group(std::move(g));
  }

  void add_group(param_group<T, B> group) {
    MSCL_CHECK(group.options.lr >= 0 && group.options.momentum >= 0 && group.options.weight_decay >= 0, value_error,
               "sgd: lr, momentum and weight_decay must be >= 0, got lr=" << group.options.lr << " momentum="
                                                                           << group.options.momentum << " weight_decay="
                                                                           << group.options.weight_decay);
    for (auto& p : group.params) {
      MSCL_CHECK(p.defined() && p.requires_grad() && p.is_leaf() && p.is_contiguous(), value_error,
                 "sgd: every parameter must be a contiguous leaf tensor that requires grad");
      buffers_.push_back(tensor_t());
    }
    groups_.push_back(std::move(group));
  }

  /// Sets the base lr of every group (a schedule calls this each step or epoch).
  void set_lr(double lr) {
    for (auto& g : groups_) g.options.lr = lr * g.lr_scale;
  }
  double lr(std::size_t group = 0) const { return groups_.at(group).options.lr; }

  void step() {
    std::size_t k = 0;
    for (auto& g : groups_) {
      const T lr = T(g.options.lr), mom = T(g.options.momentum), wd = T(g.options.weight_decay);
      const bool nesterov = g.options.nesterov;
      for (auto& p : g.params) {
        tensor_t& buf = buffers_[k++];
        tensor_t grad = p.grad();
        if (!grad.defined()) continue;  // parameters that got no gradient are left alone
        if constexpr (std::is_same_v<B, cuda>) {
          backend::cuda_ops<B>::sgd_update(p, grad, buf, lr, mom, wd, nesterov);
        } else {
        T* w = p.data();
        const T* gr = grad.data();
        const index_t n = p.numel();
        if (mom == T(0)) {
#pragma omp parallel for schedule(static) if (n > 32768)
          for (index_t i = 0; i < n; ++i) w[i] -= lr * (gr[i] + wd * w[i]);
          continue;
        }
        const bool first = !buf.defined();
        if (first) buf = tensor_t::empty(p.shape());
        T* b = buf.data();
#pragma omp parallel for schedule(static) if (n > 32768)
        for (index_t i = 0; i < n; ++i) {
          const T d = gr[i] + wd * w[i];
          const T v = first ? d : mom * b[i] + d;
          b[i] = v;
          w[i] -= lr * (nesterov ? d + mom * v : v);
        }
        }
      }
    }
  }

  void zero_grad() {
    for (auto& g : groups_)
      for (auto& p : g.params) p.zero_grad();
  }

  /// Momentum buffers in parameter order (undefined before a parameter's first step).
  std::vector<tensor_t>& momentum_buffers() { return buffers_; }
  const std::vector<param_group<T, B>>& groups() const { return groups_; }

 private:
  std::vector<param_group<T, B>> groups_;
  std::vector<tensor_t> buffers_;
};

/// Scales all gradients so that their global L2 norm is at most max_norm (torch's
/// clip_grad_norm_: coefficient max_norm/(norm + 1e-6), applied only when below 1).
/// Returns the norm before clipping.
template <class T, class B>
double clip_grad_norm(const std::vector<tensor<T, B>>& params, double max_norm) {
  double total = 0;
  for (const auto& p : params) {
    tensor<T, B> g = p.grad();
    if (!g.defined()) continue;
    if constexpr (std::is_same_v<B, cuda>) {
      total += backend::cuda_ops<B>::sum_of_squares(g);
      continue;
    } else {
    const T* d = g.data();
    const index_t n = g.numel();
    double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (n > 65536)
    for (index_t i = 0; i < n; ++i) s += double(d[i]) * double(d[i]);
    total += s;
    }
  }
  const double norm = std::sqrt(total);
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1.0) {
    for (const auto& p : params) {
      tensor<T, B> g = p.grad();
      if (!g.defined()) continue;
      if constexpr (std::is_same_v<B, cuda>) {
        backend::cuda_ops<B>::scale_inplace(g, coef);
        continue;
      } else {
      T* d = g.data();
      const index_t n = g.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
      for (index_t i = 0; i < n; ++i) d[i] = T(d[i] * coef);
      }
    }
  }
  return norm;
}

}  // namespace mscl::optim
