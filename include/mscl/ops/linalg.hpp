/// \file linalg.hpp
/// \brief matmul (2-D) and linear (y = x·Wᵀ + b, PyTorch's weight layout out×in), through
///        Eigen GEMM on maps over the tensors' memory.
#pragma once
#include <Eigen/Core>

#include "shape_ops.hpp"

namespace mscl::ops {

namespace detail {
template <class T>
using row_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using cmap = Eigen::Map<const row_matrix<T>>;
template <class T>
using mmap = Eigen::Map<row_matrix<T>>;

// out = op(a) * op(b), each operand row-major (m×k and k×n after transposition flags).
template <class T, class B>
tensor<T, B> gemm(const tensor<T, B>& a, bool ta, const tensor<T, B>& b, bool tb) {
  MSCL_CUDA_DISPATCH(B, gemm(a, ta, b, tb)) {
  require_cpu<B>();
  const tensor<T, B> ac = contiguous_data(a), bc = contiguous_data(b);
  cmap<T> A(ac.data(), a.shape()[0], a.shape()[1]);
  cmap<T> Bm(bc.data(), b.shape()[0], b.shape()[1]);
  const index_t m = ta ? a.shape()[1] : a.shape()[0];
  const index_t n = tb ? b.shape()[0] : b.shape()[1];
  tensor<T, B> out = tensor<T, B>::empty({m, n});
  mmap<T> C(out.data(), m, n);
  if (!ta && !tb) C.noalias() = A * Bm;
  else if (ta && !tb) C.noalias() = A.transpose() * Bm;
  else if (!ta && tb) C.noalias() = A * Bm.transpose();
  else C.noalias() = A.transpose() * Bm.transpose();
  return out;
  }
}
}  // namespace detail

/// (m×k) · (k×n) → m×n.
template <class T, class B>
tensor<T, B> matmul(const tensor<T, B>& a, const tensor<T, B>& b) {
  detail::check_rank(a, 2, "matmul", "left operand");
  detail::check_rank(b, 2, "matmul", "right operand");
  MSCL_CHECK(a.shape()[1] == b.shape()[0], shape_error,
             "matmul: inner dimensions differ, " << to_string(a.shape()) << " · " << to_string(b.shape()));
  tensor<T, B> out = detail::gemm(a, false, b, false);
  const bool ga = a.requires_grad(), gb = b.requires_grad();
  tensor<T, B> as = gb ? a.detach() : tensor<T, B>(), bs = ga ? b.detach() : tensor<T, B>();
  return autograd::record(out, "matmul", {a, b}, [as, bs, ga, gb](const tensor<T, B>& g) {
    return std::vector<tensor<T, B>>{ga ? detail::gemm(g, false, bs, true) : tensor<T, B>(),
                                     gb ? detail::gemm(as, true, g, false) : tensor<T, B>()};
  });
}

/// x: n×in, weight: out×in, bias: out (may be undefined) → n×out.
template <class T, class B>
tensor<T, B> linear(const tensor<T, B>& x, const tensor<T, B>& weight, const tensor<T, B>& bias = {}) {
  MSCL_CUDA_DISPATCH(B, linear(x, weight, bias)) {
  detail::check_rank(x, 2, "linear", "input");
  detail::check_rank(weight, 2, "linear", "weight");
  MSCL_CHECK(x.shape()[1] == weight.shape()[1], shape_error,
             "linear: input " << to_string(x.shape()) << " has " << x.shape()[1] << " features, weight "
                              << to_string(weight.shape()) << " expects " << weight.shape()[1]);
  if (bias.defined())
    MSCL_CHECK(bias.shape() == shape_t{weight.shape()[0]}, shape_error,
               "linear: bias " << to_string(bias.shape()) << " does not match weight " << to_string(weight.shape()));
  tensor<T, B> out = detail::gemm(x, false, weight, true);
  if (bias.defined()) {
    T* o = out.data();
    const T* b = bias.data();
    const index_t n = out.shape()[0], m = out.shape()[1];
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < m; ++j) o[i * m + j] += b[j];
  }
  const bool gx = x.requires_grad(), gw = weight.requires_grad(), gb = bias.requires_grad();
  tensor<T, B> xs = gw ? x.detach() : tensor<T, B>(), ws = gx ? weight.detach() : tensor<T, B>();
  auto backward = [xs, ws, gx, gw, gb](const tensor<T, B>& g) {
    tensor<T, B> gbias;
    if (gb) {
      const tensor<T, B> gc = detail::contiguous_data(g);
      const index_t n = g.shape()[0], m = g.shape()[1];
      gbias = tensor<T, B>::zeros({m});
      for (index_t i = 0; i < n; ++i)
        for (index_t j = 0; j < m; ++j) gbias.data()[j] += gc.data()[i * m + j];
    }
    return std::vector<tensor<T, B>>{gx ? detail::gemm(g, false, ws, false) : tensor<T, B>(),
                                     gw ? detail::gemm(g, true, xs, false) : tensor<T, B>(), gbias};
  };
  return autograd::record(out, "linear", {x, weight, bias}, backward);
  }
}

}  // namespace mscl::ops
