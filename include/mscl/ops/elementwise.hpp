/// \file elementwise.hpp
/// \brief Elementwise ops with gradients: add, sub, mul, scale, add_scalar, relu, neg, exp, log,
///        square, sqrt. Binary ops take equal shapes (no implicit broadcasting: shape
///        mismatches throw naming both shapes); per-channel broadcasting lives in the ops that
///        need it (bias, batch-norm).
#pragma once
#include "common.hpp"

namespace mscl::ops {

namespace detail {
template <class T, class B, class F>
tensor<T, B> map_unary(const tensor<T, B>& x, F f) {
  require_cpu<B>();
  const tensor<T, B> xc = contiguous_data(x);
  tensor<T, B> out = tensor<T, B>::empty(x.shape());
  const T* a = xc.data();
  T* o = out.data();
  parallel_for(out.numel(), [&](index_t i) { o[i] = f(a[i]); });
  return out;
}
template <class T, class B, class F>
tensor<T, B> map_binary(const tensor<T, B>& x, const tensor<T, B>& y, F f, const char* who) {
  require_cpu<B>();
  check_same_shape(x, y, who);
  const tensor<T, B> xc = contiguous_data(x), yc = contiguous_data(y);
  tensor<T, B> out = tensor<T, B>::empty(x.shape());
  const T* a = xc.data();
  const T* b = yc.data();
  T* o = out.data();
  parallel_for(out.numel(), [&](index_t i) { o[i] = f(a[i], b[i]); });
  return out;
}
}  // namespace detail

template <class T, class B>
tensor<T, B> add(const tensor<T, B>& x, const tensor<T, B>& y) {
  MSCL_CUDA_DISPATCH(B, add(x, y)) {
  auto out = detail::map_binary(x, y, [](T a, T b) { return a + b; }, "add");
  return autograd::record(out, "add", {x, y}, [](const tensor<T, B>& g) { return std::vector<tensor<T, B>>{g, g}; });
  }
}

template <class T, class B>
tensor<T, B> sub(const tensor<T, B>& x, const tensor<T, B>& y) {
  MSCL_CUDA_DISPATCH(B, sub(x, y)) {
  auto out = detail::map_binary(x, y, [](T a, T b) { return a - b; }, "sub");
  return autograd::record(out, "sub", {x, y}, [](const tensor<T, B>& g) {
    return std::vector<tensor<T, B>>{g, detail::map_unary(g, [](T v) { return -v; })};
  });
  }
}

template <class T, class B>
tensor<T, B> mul(const tensor<T, B>& x, const tensor<T, B>& y) {
  MSCL_CUDA_DISPATCH(B, mul(x, y)) {
  auto out = detail::map_binary(x, y, [](T a, T b) { return a * b; }, "mul");
  const bool gx = x.requires_grad(), gy = y.requires_grad();
  tensor<T, B> xs = gy ? x.detach() : tensor<T, B>(), ys = gx ? y.detach() : tensor<T, B>();
  return autograd::record(out, "mul", {x, y}, [xs, ys, gx, gy](const tensor<T, B>& g) {
    return std::vector<tensor<T, B>>{
        gx ? detail::map_binary(g, ys, [](T a, T b) { return a * b; }, "mul backward") : tensor<T, B>(),
        gy ? detail::map_binary(g, xs, [](T a, T b) { return a * b; }, "mul backward") : tensor<T, B>()};
  });
  }
}

/// x * s for a constant s.
template <class T, class B>
tensor<T, B> scale(const tensor<T, B>& x, T s) {
  MSCL_CUDA_DISPATCH(B, scale(x, s)) {
  auto out = detail::map_unary(x, [s](T a) { return a * s; });
  return autograd::record(out, "scale", {x}, [s](const tensor<T, B>& g) {
    return std::vector<tensor<T, B>>{detail::map_unary(g, [s](T v) { return v * s; })};
  });
  }
}

/// x + s for a constant s.
template <class T, class B>
tensor<T, B> add_scalar(const tensor<T, B>& x, T s) {
  MSCL_CUDA_DISPATCH(B, add_scalar(x, s)) {
  auto out = detail::map_unary(x, [s](T a) { return a + s; });
  return autograd::record(out, "add_scalar", {x}, [](const tensor<T, B>& g) { return std::vector<tensor<T, B>>{g}; });
  }
}

template <class T, class B>
tensor<T, B> neg(const tensor<T, B>& x) { return scale(x, T(-1)); }

template <class T, class B>
tensor<T, B> relu(const tensor<T, B>& x) {
  MSCL_CUDA_DISPATCH(B, relu(x)) {
  // NaN propagates (a < 0 is false for NaN), as in PyTorch: a poisoned input is never zeroed.
  auto out = detail::map_unary(x, [](T a) { return a < T(0) ? T(0) : a; });
  if (!autograd::any_requires_grad({x})) return out;
  tensor<T, B> saved = out.detach();  // relu'(x) = [out > 0]
  return autograd::record(out, "relu", {x}, [saved](const tensor<T, B>& g) {
    return std::vector<tensor<T, B>>{detail::map_binary(g, saved, [](T gv, T o) { return o > T(0) ? gv : T(0); }, "relu backward")};
  });
  }
}

template <class T, class B>
tensor<T, B> exp(const tensor<T, B>& x) {
  MSCL_CUDA_DISPATCH(B, exp(x)) {
  auto out = detail::map_unary(x, [](T a) { return std::exp(a); });
  tensor<T, B> saved = out.detach();
  return autograd::record(out, "exp", {x}, [saved](const tensor<T, B>& g) {
    return std::vector<tensor<T, B>>{detail::map_binary(g, saved, [](T a, T b) { return a * b; }, "exp backward")};
  });
  }
}

template <class T, class B>
tensor<T, B> log(const tensor<T, B>& x) {
  MSCL_CUDA_DISPATCH(B, log(x)) {
  auto out = detail::map_unary(x, [](T a) { return std::log(a); });
  tensor<T, B> saved = x.detach();
  return autograd::record(out, "log", {x}, [saved](const tensor<T, B>& g) {
    return std::vector<tensor<T, B>>{detail::map_binary(g, saved, [](T a, T b) { return a / b; }, "log backward")};
  });
  }
}

template <class T, class B>
tensor<T, B> square(const tensor<T, B>& x) {
  MSCL_CUDA_DISPATCH(B, square(x)) {
  auto out = detail::map_unary(x, [](T a) { return a * a; });
  tensor<T, B> saved = x.detach();
  return autograd::record(out, "square", {x}, [saved](const tensor<T, B>& g) {
    return std::vector<tensor<T, B>>{detail::map_binary(g, saved, [](T a, T b) { return T(2) * a * b; }, "square backward")};
  });
  }
}

template <class T, class B>
tensor<T, B> sqrt(const tensor<T, B>& x) {
  MSCL_CUDA_DISPATCH(B, sqrt(x)) {
  auto out = detail::map_unary(x, [](T a) { return std::sqrt(a); });
  tensor<T, B> saved = out.detach();
  return autograd::record(out, "sqrt", {x}, [saved](const tensor<T, B>& g) {
    return std::vector<tensor<T, B>>{detail::map_binary(g, saved, [](T a, T b) { return a / (T(2) * b); }, "sqrt backward")};
  });
  }
}

}  // namespace mscl::ops
