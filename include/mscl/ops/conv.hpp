/// \file conv.hpp
/// \brief conv3d (ncthw input, kctrs weight) and conv2d (nchw, kcrs) with gradients; the
///        kernels are in backend/cpu/conv.hpp (oneDNN for float when compiled in, Eigen
///        im2col-GEMM otherwise and for double).
#pragma once
#include <array>

#include "../backend/cpu/conv.hpp"
#include "shape_ops.hpp"

namespace mscl::ops {

using triple = std::array<index_t, 3>;
using pair2 = std::array<index_t, 2>;

namespace detail {
template <class T, class B>
backend::cpu_kernels::conv3d_geometry conv3d_geometry_of(const tensor<T, B>& x, const tensor<T, B>& w,
                                                         const tensor<T, B>& bias, triple stride, triple padding,
                                                         const char* who) {
  check_rank(x, 5, who, "input (n, c, t, h, w)");
  check_rank(w, 5, who, "weight (out, in, kt, kh, kw)");
  MSCL_CHECK(x.shape()[1] == w.shape()[1], shape_error,
             who << ": input " << to_string(x.shape()) << " has " << x.shape()[1] << " channels but weight "
                 << to_string(w.shape()) << " expects " << w.shape()[1]);
  if (bias.defined())
    MSCL_CHECK(bias.shape() == shape_t{w.shape()[0]}, shape_error,
               who << ": bias " << to_string(bias.shape()) << " does not match weight " << to_string(w.shape()));
  backend::cpu_kernels::conv3d_geometry g;
  g.n = x.shape()[0]; g.c_in = x.shape()[1]; g.t = x.shape()[2]; g.h = x.shape()[3]; g.w = x.shape()[4];
  g.c_out = w.shape()[0]; g.kt = w.shape()[2]; g.kh = w.shape()[3]; g.kw = w.shape()[4];
  g.st = stride[0]; g.sh = stride[1]; g.sw = stride[2];
  g.pt = padding[0]; g.ph = padding[1]; g.pw = padding[2];
  g.validate(who);
  return g;
}
}  // namespace detail

/// y = conv3d(x, w) + bias. x: n×c×t×h×w, w: k×c×kt×kh×kw, bias: k or undefined.
template <class T, class B>
tensor<T, B> conv3d(const tensor<T, B>& x, const tensor<T, B>& w, const tensor<T, B>& bias = {},
                    triple stride = {1, 1, 1}, triple padding = {0, 0, 0}) {
  MSCL_CUDA_DISPATCH(B, conv3d(x, w, bias, stride, padding)) {
  detail::require_cpu<B>();
  const auto g = detail::conv3d_geometry_of(x, w, bias, stride, padding, "conv3d");
  const tensor<T, B> xc = detail::contiguous_data(x), wc = detail::contiguous_data(w);
  tensor<T, B> y = tensor<T, B>::empty({g.n, g.c_out, g.out_t(), g.out_h(), g.out_w()});
  backend::cpu_kernels::conv3d_forward<T>(g, xc.data(), wc.data(), bias.defined() ? bias.data() : nullptr, y.data());
  const bool gx = x.requires_grad(), gw = w.requires_grad(), gb = bias.requires_grad();
  if (!(gx || gw || gb) || !autograd::is_grad_enabled()) return y;
  tensor<T, B> xs = gw ? xc.detach() : tensor<T, B>(), ws = gx ? wc.detach() : tensor<T, B>();
  return autograd::record(y, "conv3d", {x, w, bias}, [g, xs, ws, gx, gw, gb](const tensor<T, B>& gout) {
    const tensor<T, B> gy = detail::contiguous_data(gout);
    tensor<T, B> grad_x, grad_w, grad_b;
    if (gx) {
      grad_x = tensor<T, B>::empty({g.n, g.c_in, g.t, g.h, g.w});
      backend::cpu_kernels::conv3d_backward_data<T>(g, gy.data(), ws.data(), grad_x.data());
    }
    if (gw || gb) {
      grad_w = tensor<T, B>::empty({g.c_out, g.c_in, g.kt, g.kh, g.kw});
      if (gb) grad_b = tensor<T, B>::empty({g.c_out});
      // Weight gradient needs x; when only the bias needs a gradient we still have xs unless
      // gw is false, so compute the bias gradient directly in that case.
      if (gw) {
        backend::cpu_kernels::conv3d_backward_weight<T>(g, xs.data(), gy.data(), grad_w.data(),
                                                        gb ? grad_b.data() : nullptr);
      } else {
        const index_t plane = g.out_t() * g.out_h() * g.out_w();
        for (index_t k = 0; k < g.c_out; ++k) {
          double s = 0;
          for (index_t n = 0; n < g.n; ++n) {
            const T* p = gy.data() + (n * g.c_out + k) * plane;
            for (index_t i = 0; i < plane; ++i) s += p[i];
          }
          grad_b.data()[k] = T(s);
        }
      }
      if (!gw) grad_w = tensor<T, B>();
    }
    return std::vector<tensor<T, B>>{grad_x, grad_w, grad_b};
  });
  }
}

/// 2-D convolution: x n×c×h×w, w k×c×kh×kw (the conv3d kernels with a temporal extent of 1).
template <class T, class B>
tensor<T, B> conv2d(const tensor<T, B>& x, const tensor<T, B>& w, const tensor<T, B>& bias = {},
                    pair2 stride = {1, 1}, pair2 padding = {0, 0}) {
  detail::check_rank(x, 4, "conv2d", "input (n, c, h, w)");
  detail::check_rank(w, 4, "conv2d", "weight (out, in, kh, kw)");
  const auto& xs = x.shape();
  const auto& ws = w.shape();
  tensor<T, B> y = conv3d(reshape(x, {xs[0], xs[1], 1, xs[2], xs[3]}), reshape(w, {ws[0], ws[1], 1, ws[2], ws[3]}),
                          bias, {1, stride[0], stride[1]}, {0, padding[0], padding[1]});
  const auto& ys = y.shape();
  return reshape(y, {ys[0], ys[1], ys[3], ys[4]});
}

}  // namespace mscl::ops
