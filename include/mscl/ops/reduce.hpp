/// \file reduce.hpp
/// \brief Sum and mean over all elements or over one axis (keepdim optional), with gradients.
#pragma once
#include "elementwise.hpp"
#include "shape_ops.hpp"

namespace mscl::ops {

namespace detail {
// Views x as (outer, n, inner) around `axis`.
inline void split_around(const shape_t& s, int axis, index_t& outer, index_t& n, index_t& inner) {
  outer = 1;
  inner = 1;
  for (int d = 0; d < axis; ++d) outer *= s[std::size_t(d)];
  n = s[std::size_t(axis)];
  for (std::size_t d = std::size_t(axis) + 1; d < s.size(); ++d) inner *= s[d];
}
}  // namespace detail

/// Sum of all elements (a scalar of shape []).
template <class T, class B>
tensor<T, B> sum(const tensor<T, B>& x) {
  MSCL_CUDA_DISPATCH(B, sum(x)) {
  detail::require_cpu<B>();
  const tensor<T, B> xc = detail::contiguous_data(x);
  const T* p = xc.data();
  const index_t n = xc.numel();
  double acc = 0;
#pragma omp parallel for reduction(+ : acc) schedule(static) if (n > 65536)
  for (index_t i = 0; i < n; ++i) acc += double(p[i]);
  tensor<T, B> out = tensor<T, B>::scalar(T(acc));
  const shape_t in_shape = x.shape();
  return autograd::record(out, "sum", {x}, [in_shape](const tensor<T, B>& g) {
    return std::vector<tensor<T, B>>{tensor<T, B>::full(in_shape, g.item())};
  });
  }
}

template <class T, class B>
tensor<T, B> mean(const tensor<T, B>& x) {
  detail::check_nonempty(x, "mean");
  return scale(sum(x), T(1) / T(x.numel()));
}

/// Sum along `axis`.
template <class T, class B>
tensor<T, B> sum(const tensor<T, B>& x, int axis, bool keepdim = false) {
  MSCL_CUDA_DISPATCH(B, sum(x, axis, keepdim)) {
  detail::require_cpu<B>();
  const int a = normalize_axis(axis, x.shape().size(), "sum");
  index_t outer, n, inner;
  detail::split_around(x.shape(), a, outer, n, inner);
  const tensor<T, B> xc = detail::contiguous_data(x);
  shape_t s = x.shape();
  s[std::size_t(a)] = 1;
  tensor<T, B> out = tensor<T, B>::zeros(s);
  const T* p = xc.data();
  T* o = out.data();
  detail::parallel_for(outer, [&](index_t i) {
    for (index_t k = 0; k < n; ++k) {
      const T* row = p + (i * n + k) * inner;
      T* orow = o + i * inner;
      for (index_t j = 0; j < inner; ++j) orow[j] += row[j];
    }
  }, 1);
  if (!keepdim) s.erase(s.begin() + a);
  out = out.view_as_strided(s, contiguous_strides(s), 0);
  const shape_t in_shape = x.shape();
  return autograd::record(out, "sum_axis", {x}, [in_shape, a](const tensor<T, B>& g) {
    index_t outer2, n2, inner2;
    detail::split_around(in_shape, a, outer2, n2, inner2);
    const tensor<T, B> gc = detail::contiguous_data(g);
    tensor<T, B> gx = tensor<T, B>::empty(in_shape);
    const T* gp = gc.data();
    T* q = gx.data();
    detail::parallel_for(outer2, [&](index_t i) {
      for (index_t k = 0; k < n2; ++k)
        for (index_t j = 0; j < inner2; ++j) q[(i * n2 + k) * inner2 + j] = gp[i * inner2 + j];
    }, 1);
    return std::vector<tensor<T, B>>{gx};
  });
  }
}

template <class T, class B>
tensor<T, B> mean(const tensor<T, B>& x, int axis, bool keepdim = false) {
  const int a = normalize_axis(axis, x.shape().size(), "mean");
  MSCL_CHECK(x.shape()[std::size_t(a)] > 0, shape_error, "mean: empty axis " << a << " in " << to_string(x.shape()));
  return scale(sum(x, a, keepdim), T(1) / T(x.shape()[std::size_t(a)]));
}

}  // namespace mscl::ops
