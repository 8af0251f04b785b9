/// \file loss.hpp
/// \brief softmax, log_softmax (along the last axis of a 2-D tensor), cross-entropy with integer
///        labels (mean over rows, optional label smoothing 0), and L2 normalisation of rows /
///        along an axis — with fused, numerically stable backward passes.
#pragma once
#include <algorithm>
#include <limits>

#include "elementwise.hpp"
#include "reduce.hpp"
#include "shape_ops.hpp"

namespace mscl::ops {

/// log_softmax over the last axis of a 2-D tensor (rows × classes).
template <class T, class B>
tensor<T, B> log_softmax(const tensor<T, B>& x) {
  MSCL_CUDA_DISPATCH(B, log_softmax(x)) {
  detail::require_cpu<B>();
  detail::check_rank(x, 2, "log_softmax", "input");
  detail::check_nonempty(x, "log_softmax");
  const tensor<T, B> xc = detail::contiguous_data(x);
  const index_t n = x.shape()[0], c = x.shape()[1];
  tensor<T, B> out = tensor<T, B>::empty(x.shape());
  detail::parallel_for(n, [&](index_t i) {
    const T* row = xc.data() + i * c;
    T* o = out.data() + i * c;
    T mx = *std::max_element(row, row + c);
    double s = 0;
    for (index_t j = 0; j < c; ++j) s += std::exp(double(row[j] - mx));
    const T lse = mx + T(std::log(s));
    for (index_t j = 0; j < c; ++j) o[j] = row[j] - lse;
  }, 16);
  tensor<T, B> saved = out.detach();
  return autograd::record(out, "log_softmax", {x}, [saved, n, c](const tensor<T, B>& g) {
    const tensor<T, B> gc = detail::contiguous_data(g);
    tensor<T, B> gx = tensor<T, B>::empty(saved.shape());
    detail::parallel_for(n, [&](index_t i) {
      const T* gr = gc.data() + i * c;
      const T* lp = saved.data() + i * c;
      T* q = gx.data() + i * c;
      double s = 0;
      for (index_t j = 0; j < c; ++j) s += gr[j];
      for (index_t j = 0; j < c; ++j) q[j] = gr[j] - T(std::exp(double(lp[j])) * s);
    }, 16);
    return std::vector<tensor<T, B>>{gx};
  });
  }
}

template <class T, class B>
tensor<T, B> softmax(const tensor<T, B>& x) {
  return exp(log_softmax(x));
}

/// Mean over rows of −log softmax(x)[label]. labels: one class index per row.
template <class T, class B>
tensor<T, B> cross_entropy(const tensor<T, B>& logits, const std::vector<index_t>& labels) {
  MSCL_CUDA_DISPATCH(B, cross_entropy(logits, labels)) {
  detail::require_cpu<B>();
  detail::check_rank(logits, 2, "cross_entropy", "logits");
  const index_t n = logits.shape()[0], c = logits.shape()[1];
  MSCL_CHECK(index_t(labels.size()) == n, shape_error,
             "cross_entropy: " << labels.size() << " labels for logits of shape " << to_string(logits.shape()));
  for (std::size_t i = 0; i < labels.size(); ++i)
    MSCL_CHECK(labels[i] >= 0 && labels[i] < c, value_error,
               "cross_entropy: label " << labels[i] << " of row " << i << " is outside [0, " << c << ")");
  const tensor<T, B> xc = detail::contiguous_data(logits);
  // Saved softmax probabilities make the backward one pass: (p − onehot)/n.
  tensor<T, B> prob = tensor<T, B>::empty(logits.shape());
  std::vector<double> row_loss(static_cast<std::size_t>(n));
  detail::parallel_for(n, [&](index_t i) {
    const T* row = xc.data() + i * c;
    T* p = prob.data() + i * c;
    const T mx = *std::max_element(row, row + c);
    double s = 0;
    for (index_t j = 0; j < c; ++j) s += std::exp(double(row[j] - mx));
    const double lse = double(mx) + std::log(s);
    for (index_t j = 0; j < c; ++j) p[j] = T(std::exp(double(row[j]) - lse));
    row_loss[std::size_t(i)] = lse - double(row[labels[std::size_t(i)]]);
  }, 16);
  double total = 0;
  for (double v : row_loss) total += v;
  tensor<T, B> out = tensor<T, B>::scalar(T(total / double(n)));
  return autograd::record(out, "cross_entropy", {logits}, [prob, labels, n, c](const tensor<T, B>& g) {
    const T scale_ = g.item() / T(n);
    tensor<T, B> gx = tensor<T, B>::empty(prob.shape());
    detail::parallel_for(n, [&](index_t i) {
      const T* p = prob.data() + i * c;
      T* q = gx.data() + i * c;
      for (index_t j = 0; j < c; ++j) q[j] = p[j] * scale_;
      q[labels[std::size_t(i)]] -= scale_;
    }, 16);
    return std::vector<tensor<T, B>>{gx};
  });
  }
}

/// x / max(‖x‖₂, eps) along `axis` (PyTorch F.normalize semantics).
template <class T, class B>
tensor<T, B> l2_normalize(const tensor<T, B>& x, int axis = 1, double eps = 1e-12) {
  MSCL_CUDA_DISPATCH(B, l2_normalize(x, axis, eps)) {
  detail::require_cpu<B>();
  detail::check_nonempty(x, "l2_normalize");
  const int a = normalize_axis(axis, x.shape().size(), "l2_normalize");
  index_t outer, n, inner;
  detail::split_around(x.shape(), a, outer, n, inner);
  const tensor<T, B> xc = detail::contiguous_data(x);
  tensor<T, B> out = tensor<T, B>::empty(x.shape());
  tensor<T, B> norms = tensor<T, B>::empty({outer, inner});
  detail::parallel_for(outer, [&](index_t i) {
    for (index_t j = 0; j < inner; ++j) {
      double s = 0;
      for (index_t k = 0; k < n; ++k) {
        const double v = xc.data()[(i * n + k) * inner + j];
        s += v * v;
      }
      const T nrm = T(std::max(std::sqrt(s), eps));
      norms.data()[i * inner + j] = nrm;
      for (index_t k = 0; k < n; ++k) out.data()[(i * n + k) * inner + j] = xc.data()[(i * n + k) * inner + j] / nrm;
    }
  }, 1);
  tensor<T, B> y = out.detach();
  return autograd::record(out, "l2_normalize", {x}, [y, norms, outer, n, inner, eps](const tensor<T, B>& g) {
    // d/dx (x/‖x‖) = (g − y·(y·g)) / ‖x‖ where the norm is above eps; g/eps below it.
    const tensor<T, B> gc = detail::contiguous_data(g);
    tensor<T, B> gx = tensor<T, B>::empty(y.shape());
    detail::parallel_for(outer, [&](index_t i) {
      for (index_t j = 0; j < inner; ++j) {
        const T nrm = norms.data()[i * inner + j];
        const bool clamped = double(nrm) <= eps;
        double dot = 0;
        if (!clamped)
          for (index_t k = 0; k < n; ++k) {
            const index_t idx = (i * n + k) * inner + j;
            dot += double(y.data()[idx]) * double(gc.data()[idx]);
          }
        for (index_t k = 0; k < n; ++k) {
          const index_t idx = (i * n + k) * inner + j;
          gx.data()[idx] = (gc.data()[idx] - (clamped ? T(0) : T(dot) * y.data()[idx])) / nrm;
        }
      }
    }, 1);
    return std::vector<tensor<T, B>>{gx};
  });
  }
}

}  // namespace mscl::ops
