/// \file shape_ops.hpp
/// \brief Reshape, flatten, permute/transpose, slice, select, cat — with gradients.
///
/// `reshape` of a contiguous tensor and `slice`/`permute` are views (no copy); their gradients
/// scatter back into the input's shape.
#pragma once
#include <numeric>

#include "common.hpp"

namespace mscl::ops {

/// Same elements, new shape; one extent may be -1 (inferred). Copies only when x is not
/// contiguous.
template <class T, class B>
tensor<T, B> reshape(const tensor<T, B>& x, shape_t shape) {
  index_t known = 1;
  int infer = -1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      MSCL_CHECK(infer < 0, shape_error, "reshape: more than one -1 in " << to_string(shape));
      infer = int(i);
    } else {
      MSCL_CHECK(shape[i] >= 0, shape_error, "reshape: negative extent in " << to_string(shape));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    MSCL_CHECK(known > 0 && x.numel() % known == 0, shape_error,
               "reshape: cannot reshape " << to_string(x.shape()) << " into " << to_string(shape));
    shape[std::size_t(infer)] = x.numel() / known;
  }
  MSCL_CHECK(numel_of(shape) == x.numel(), shape_error,
             "reshape: " << to_string(x.shape()) << " has " << x.numel() << " elements, target "
                         << to_string(shape) << " has " << numel_of(shape));
  const tensor<T, B> xc = detail::contiguous_data(x);
  tensor<T, B> out = xc.view_as_strided(shape, contiguous_strides(shape), xc.offset());
  const shape_t in_shape = x.shape();
  return autograd::record(out, "reshape", {x}, [in_shape](const tensor<T, B>& g) {
    const tensor<T, B> gc = detail::contiguous_data(g);
    return std::vector<tensor<T, B>>{gc.view_as_strided(in_shape, contiguous_strides(in_shape), gc.offset())};
  });
}

/// n × (everything else).
template <class T, class B>
tensor<T, B> flatten(const tensor<T, B>& x, int start_axis = 1) {
  const int a = normalize_axis(start_axis, x.shape().size(), "flatten");
  shape_t s(x.shape().begin(), x.shape().begin() + a);
  s.push_back(-1);
  return reshape(x, s);
}

/// Axes reordered: out.shape[i] = x.shape[order[i]]. A view; contiguous() copies.
template <class T, class B>
tensor<T, B> permute(const tensor<T, B>& x, const std::vector<int>& order) {
  const std::size_t r = x.shape().size();
  MSCL_CHECK(order.size() == r, shape_error,
             "permute: order has " << order.size() << " axes for a tensor of shape " << to_string(x.shape()));
  std::vector<bool> seen(r, false);
  shape_t s(r), st(r);
  for (std::size_t i = 0; i < r; ++i) {
    const int a = normalize_axis(order[i], r, "permute");
    MSCL_CHECK(!seen[std::size_t(a)], shape_error, "permute: axis " << a << " repeated");
    seen[std::size_t(a)] = true;
    s[i] = x.shape()[std::size_t(a)];
    st[i] = x.strides()[std::size_t(a)];
  }
  tensor<T, B> out = x.view_as_strided(s, st, x.offset());
  std::vector<int> inverse(r);
  for (std::size_t i = 0; i < r; ++i) inverse[std::size_t(normalize_axis(order[i], r, "permute"))] = int(i);
  return autograd::record(out, "permute", {x}, [inverse](const tensor<T, B>& g) {
    return std::vector<tensor<T, B>>{permute(g, inverse)};
  });
}

template <class T, class B>
tensor<T, B> transpose(const tensor<T, B>& x, int a, int b) {
  std::vector<int> order(x.shape().size());
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[std::size_t(normalize_axis(a, order.size(), "transpose"))],
            order[std::size_t(normalize_axis(b, order.size(), "transpose"))]);
  return permute(x, order);
}

/// A contiguous copy (recorded: gradient passes through).
template <class T, class B>
tensor<T, B> contiguous(const tensor<T, B>& x) {
  if (x.is_contiguous()) return x;
  tensor<T, B> out = x.clone();
  return autograd::record(out, "contiguous", {x}, [](const tensor<T, B>& g) { return std::vector<tensor<T, B>>{g}; });
}

/// Elements [start, end) with `step` along `axis` (a view).
template <class T, class B>
tensor<T, B> slice(const tensor<T, B>& x, int axis, index_t start, index_t end, index_t step = 1) {
  const int a = normalize_axis(axis, x.shape().size(), "slice");
  const index_t n = x.shape()[std::size_t(a)];
  MSCL_CHECK(step >= 1, value_error, "slice: step must be >= 1, got " << step);
  if (start < 0) start += n;
  if (end < 0) end += n;
  end = std::min(end, n);
  MSCL_CHECK(start >= 0 && start <= end, shape_error,
             "slice: range [" << start << ", " << end << ") invalid for axis " << a << " of shape "
                              << to_string(x.shape()));
  shape_t s = x.shape(), st = x.strides();
  s[std::size_t(a)] = (end - start + step - 1) / step;
  st[std::size_t(a)] *= step;
  tensor<T, B> out = x.view_as_strided(s, st, x.offset() + start * x.strides()[std::size_t(a)]);
  const shape_t in_shape = x.shape();
  return autograd::record(out, "slice", {x}, [in_shape, a, start, step](const tensor<T, B>& g) {
    tensor<T, B> gx = tensor<T, B>::zeros(in_shape);
    shape_t st2 = gx.strides();
    st2[std::size_t(a)] *= step;
    tensor<T, B> view = gx.view_as_strided(g.shape(), st2, start * gx.strides()[std::size_t(a)]);
    view.copy_from(g);
    return std::vector<tensor<T, B>>{gx};
  });
}

/// Index `i` of `axis`, removing that axis.
template <class T, class B>
tensor<T, B> select(const tensor<T, B>& x, int axis, index_t i) {
  const int a = normalize_axis(axis, x.shape().size(), "select");
  shape_t s = x.shape();
  s.erase(s.begin() + a);
  return reshape(contiguous(slice(x, a, i, i + 1)), s);
}

/// Concatenation along `axis`; all other extents must match.
template <class T, class B>
tensor<T, B> cat(const std::vector<tensor<T, B>>& xs, int axis) {
  // Backend-neutral: only tensor copies (copy_from on views), which every backend provides.
  MSCL_CHECK(!xs.empty(), shape_error, "cat: no tensors given");
  const int a = normalize_axis(axis, xs[0].shape().size(), "cat");
  shape_t s = xs[0].shape();
  index_t total = 0;
  for (const auto& x : xs) {
    MSCL_CHECK(x.shape().size() == s.size(), shape_error,
               "cat: rank mismatch, " << to_string(xs[0].shape()) << " vs " << to_string(x.shape()));
    for (std::size_t d = 0; d < s.size(); ++d)
      MSCL_CHECK(int(d) == a || x.shape()[d] == s[d], shape_error,
                 "cat: shapes " << to_string(xs[0].shape()) << " and " << to_string(x.shape())
                                << " differ outside axis " << a);
    total += x.shape()[std::size_t(a)];
  }
  s[std::size_t(a)] = total;
  tensor<T, B> out = tensor<T, B>::empty(s);
  std::vector<index_t> starts;
  index_t pos = 0;
  for (const auto& x : xs) {
    starts.push_back(pos);
    shape_t st = out.strides();
    tensor<T, B> view = out.view_as_strided(x.shape(), st, pos * out.strides()[std::size_t(a)]);
    view.copy_from(x);
    pos += x.shape()[std::size_t(a)];
  }
  std::vector<index_t> lengths;
  for (const auto& x : xs) lengths.push_back(x.shape()[std::size_t(a)]);
  return autograd::record(out, "cat", xs, [a, starts, lengths](const tensor<T, B>& g) {
    std::vector<tensor<T, B>> grads;
    for (std::size_t i = 0; i < starts.size(); ++i)
      grads.push_back(slice(g, a, starts[i], starts[i] + lengths[i]).clone());
    return grads;
  });
}

/// Stacks equal-shaped tensors along a new axis.
template <class T, class B>
tensor<T, B> stack(const std::vector<tensor<T, B>>& xs, int axis = 0) {
  MSCL_CHECK(!xs.empty(), shape_error, "stack: no tensors given");
  std::vector<tensor<T, B>> expanded;
  const int a = normalize_axis(axis, xs[0].shape().size() + 1, "stack");
  for (const auto& x : xs) {
    shape_t s = x.shape();
    s.insert(s.begin() + a, 1);
    expanded.push_back(reshape(x, s));
  }
  return cat(expanded, a);
}

}  // namespace mscl::ops
