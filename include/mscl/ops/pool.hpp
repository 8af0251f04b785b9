/// \file pool.hpp
/// \brief Pooling as autograd ops with PyTorch semantics: max_pool3d/2d (argmax backward),
///        avg_pool3d/2d, adaptive_avg_pool3d/2d and global_avg_pool (the pooling r3d_18 uses
///        before its fc layer).
///
/// 3-D ops take `ncthw` (rank 5), 2-D ops `nchw` (rank 4); both run the kernels of
/// backend/cpu/pool.hpp (2-D as t = 1). Windows are floor mode; max pooling pads with -inf,
/// average pooling with zeros. Kernel/stride/padding are given per axis as {t, h, w} or {h, w};
/// the overloads without stride use stride = kernel (PyTorch's stride=None).
#pragma once
#include <array>
#include <cstdint>
#include <limits>
#include <memory>
#include <vector>

#include "../backend/cpu/pool.hpp"
#include "common.hpp"

namespace mscl::ops {

using pool3d_size = std::array<index_t, 3>;  ///< {t, h, w}
using pool2d_size = std::array<index_t, 2>;  ///< {h, w}

namespace detail {

inline std::string pool_size_string(const pool3d_size& a) {
  return "[" + std::to_string(a[0]) + ", " + std::to_string(a[1]) + ", " + std::to_string(a[2]) + "]";
}

template <class T, class B>
void check_pool_input(const tensor<T, B>& x, int rank, const char* who) {
  MSCL_CHECK(x.defined(), shape_error, who << ": x is an undefined tensor");
  MSCL_CHECK(x.dim() == rank, shape_error,
             who << ": x must have rank " << rank << (rank == 5 ? " (ncthw)" : " (nchw)") << ", got shape "
                 << to_string(x.shape()));
  check_nonempty(x, who);
}

/// Geometry for a windowed pool; 2-D callers pass t extents of 1 (kernel 1, stride 1, pad 0).
template <class T, class B>
backend::cpu_kernels::pool3d_params windowed_params(const tensor<T, B>& x, const pool3d_size& kernel,
                                                    const pool3d_size& stride, const pool3d_size& padding,
                                                    bool two_d, const char* who) {
  const index_t it = two_d ? 1 : x.size(2), ih = x.size(two_d ? 2 : 3), iw = x.size(two_d ? 3 : 4);
  for (int a = 0; a < 3; ++a) {
    MSCL_CHECK(kernel[a] > 0 && stride[a] > 0 && padding[a] >= 0, value_error,
               who << ": kernel and stride must be positive and padding non-negative; got kernel "
                   << pool_size_string(kernel) << ", stride " << pool_size_string(stride) << ", padding "
                   << pool_size_string(padding));
    MSCL_CHECK(2 * padding[a] <= kernel[a], value_error,
               who << ": padding must be at most half the kernel; got kernel " << pool_size_string(kernel)
                   << ", padding " << pool_size_string(padding));
  }
  backend::cpu_kernels::pool3d_params p;
  p.planes = x.size(0) * x.size(1);
  p.it = it, p.ih = ih, p.iw = iw;
  p.kt = kernel[0], p.kh = kernel[1], p.kw = kernel[2];
  p.st = stride[0], p.sh = stride[1], p.sw = stride[2];
  p.pt = padding[0], p.ph = padding[1], p.pw = padding[2];
  p.ot = backend::cpu_kernels::pool_output_size(it, p.kt, p.st, p.pt);
  p.oh = backend::cpu_kernels::pool_output_size(ih, p.kh, p.sh, p.ph);
  p.ow = backend::cpu_kernels::pool_output_size(iw, p.kw, p.sw, p.pw);
  MSCL_CHECK(p.ot > 0 && p.oh > 0 && p.ow > 0, shape_error,
             who << ": input shape " << to_string(x.shape()) << " is too small for kernel " << pool_size_string(kernel)
                 << " with padding " << pool_size_string(padding) << " (output would be empty)");
  MSCL_CHECK(p.in_plane() < index_t(std::numeric_limits<std::int32_t>::max()), shape_error,
             who << ": a plane of " << p.in_plane() << " elements is too large (argmax is 32-bit), shape "
                 << to_string(x.shape()));
  return p;
}

inline shape_t pool_out_shape(const shape_t& in, const backend::cpu_kernels::pool3d_params& p, bool two_d) {
  return two_d ? shape_t{in[0], in[1], p.oh, p.ow} : shape_t{in[0], in[1], p.ot, p.oh, p.ow};
}

template <class T, class B>
tensor<T, B> max_pool_impl(const tensor<T, B>& x, const pool3d_size& kernel, const pool3d_size& stride,
                           const pool3d_size& padding, bool two_d, const char* who) {
  MSCL_CUDA_DISPATCH(B, max_pool(x, kernel, stride, padding, two_d, who)) {
  require_cpu<B>();
  check_pool_input(x, two_d ? 4 : 5, who);
  const auto p = windowed_params(x, kernel, stride, padding, two_d, who);
  const tensor<T, B> xc = contiguous_data(x);
  tensor<T, B> out = tensor<T, B>::empty(pool_out_shape(x.shape(), p, two_d));
  auto argmax = std::make_shared<std::vector<std::int32_t>>(std::size_t(out.numel()));
  backend::cpu_kernels::max_pool3d_forward(xc.data(), out.data(), argmax->data(), p);
  const shape_t xshape = x.shape();
  return autograd::record(out, who, {x}, [p, argmax, xshape](const tensor<T, B>& g) {
    const tensor<T, B> gc = contiguous_data(g);
    tensor<T, B> dx = tensor<T, B>::empty(xshape);
    backend::cpu_kernels::max_pool3d_backward(gc.data(), argmax->data(), dx.data(), p);
    return std::vector<tensor<T, B>>{dx};
  });
  }
}

template <class T, class B>
tensor<T, B> avg_pool_impl(const tensor<T, B>& x, const pool3d_size& kernel, const pool3d_size& stride,
                           const pool3d_size& padding, bool count_include_pad, bool two_d, const char* who) {
  MSCL_CUDA_DISPATCH(B, avg_pool(x, kernel, stride, padding, count_include_pad, two_d, who)) {
  require_cpu<B>();
  check_pool_input(x, two_d ? 4 : 5, who);
  const auto p = windowed_params(x, kernel, stride, padding, two_d, who);
  const tensor<T, B> xc = contiguous_data(x);
  tensor<T, B> out = tensor<T, B>::empty(pool_out_shape(x.shape(), p, two_d));
  backend::cpu_kernels::avg_pool3d_forward(xc.data(), out.data(), p, count_include_pad);
  const shape_t xshape = x.shape();
  return autograd::record(out, who, {x}, [p, xshape, count_include_pad](const tensor<T, B>& g) {
    const tensor<T, B> gc = contiguous_data(g);
    tensor<T, B> dx = tensor<T, B>::empty(xshape);
    backend::cpu_kernels::avg_pool3d_backward(gc.data(), dx.data(), p, count_include_pad);
    return std::vector<tensor<T, B>>{dx};
  });
  }
}

template <class T, class B>
tensor<T, B> adaptive_avg_pool_impl(const tensor<T, B>& x, const pool3d_size& output_size, bool two_d,
                                    const char* who) {
  MSCL_CUDA_DISPATCH(B, adaptive_avg_pool(x, output_size, two_d, who)) {
  require_cpu<B>();
  check_pool_input(x, two_d ? 4 : 5, who);
  for (int a = 0; a < 3; ++a)
    MSCL_CHECK(output_size[a] > 0, value_error,
               who << ": output size must be positive, got " << pool_size_string(output_size));
  backend::cpu_kernels::pool3d_params p;
  p.planes = x.size(0) * x.size(1);
  p.it = two_d ? 1 : x.size(2), p.ih = x.size(two_d ? 2 : 3), p.iw = x.size(two_d ? 3 : 4);
  p.ot = output_size[0], p.oh = output_size[1], p.ow = output_size[2];
  const tensor<T, B> xc = contiguous_data(x);
  tensor<T, B> out = tensor<T, B>::empty(pool_out_shape(x.shape(), p, two_d));
  backend::cpu_kernels::adaptive_avg_pool3d_forward(xc.data(), out.data(), p);
  const shape_t xshape = x.shape();
  return autograd::record(out, who, {x}, [p, xshape](const tensor<T, B>& g) {
    const tensor<T, B> gc = contiguous_data(g);
    tensor<T, B> dx = tensor<T, B>::empty(xshape);
    backend::cpu_kernels::adaptive_avg_pool3d_backward(gc.data(), dx.data(), p);
    return std::vector<tensor<T, B>>{dx};
  });
  }
}

}  // namespace detail

// ------------------------------------------------------------------------------------ 3-D

/// Max pooling over `ncthw` (PyTorch max_pool3d, floor mode, dilation 1).
/// Requires: x rank 5, non-empty; kernel, stride > 0; 0 <= padding <= kernel/2; an output extent
/// >= 1 per axis. Ensures: y[n, c, ot, oh, ow] = max over the window (padding = -inf); the
/// gradient goes to the first maximum of each window (PyTorch's argmax).
template <class T, class B>
tensor<T, B> max_pool3d(const tensor<T, B>& x, const pool3d_size& kernel, const pool3d_size& stride,
                        const pool3d_size& padding = {0, 0, 0}) {
  return detail::max_pool_impl(x, kernel, stride, padding, false, "max_pool3d");
}
/// max_pool3d with stride = kernel, no padding.
template <class T, class B>
tensor<T, B> max_pool3d(const tensor<T, B>& x, const pool3d_size& kernel) {
  return detail::max_pool_impl(x, kernel, kernel, {0, 0, 0}, false, "max_pool3d");
}

/// Average pooling over `ncthw` (PyTorch avg_pool3d, floor mode). count_include_pad: padded
/// zeros count in the divisor (PyTorch's default).
template <class T, class B>
tensor<T, B> avg_pool3d(const tensor<T, B>& x, const pool3d_size& kernel, const pool3d_size& stride,
                        const pool3d_size& padding = {0, 0, 0}, bool count_include_pad = true) {
  return detail::avg_pool_impl(x, kernel, stride, padding, count_include_pad, false, "avg_pool3d");
}
/// avg_pool3d with stride = kernel, no padding.
template <class T, class B>
tensor<T, B> avg_pool3d(const tensor<T, B>& x, const pool3d_size& kernel) {
  return detail::avg_pool_impl(x, kernel, kernel, {0, 0, 0}, true, false, "avg_pool3d");
}

/// Adaptive average pooling over `ncthw` to {ot, oh, ow}: output i along an axis averages
/// [floor(i*in/out), ceil((i+1)*in/out)) (PyTorch; windows may overlap, out may exceed in).
template <class T, class B>
tensor<T, B> adaptive_avg_pool3d(const tensor<T, B>& x, const pool3d_size& output_size) {
  return detail::adaptive_avg_pool_impl(x, output_size, false, "adaptive_avg_pool3d");
}

// ------------------------------------------------------------------------------------ 2-D

/// Max pooling over `nchw` (PyTorch max_pool2d); same rules as max_pool3d.
template <class T, class B>
tensor<T, B> max_pool2d(const tensor<T, B>& x, const pool2d_size& kernel, const pool2d_size& stride,
                        const pool2d_size& padding = {0, 0}) {
  return detail::max_pool_impl(x, {1, kernel[0], kernel[1]}, {1, stride[0], stride[1]}, {0, padding[0], padding[1]},
                               true, "max_pool2d");
}
template <class T, class B>
tensor<T, B> max_pool2d(const tensor<T, B>& x, const pool2d_size& kernel) {
  return max_pool2d(x, kernel, kernel, {0, 0});
}

/// Average pooling over `nchw` (PyTorch avg_pool2d); same rules as avg_pool3d.
template <class T, class B>
tensor<T, B> avg_pool2d(const tensor<T, B>& x, const pool2d_size& kernel, const pool2d_size& stride,
                        const pool2d_size& padding = {0, 0}, bool count_include_pad = true) {
  return detail::avg_pool_impl(x, {1, kernel[0], kernel[1]}, {1, stride[0], stride[1]}, {0, padding[0], padding[1]},
                               count_include_pad, true, "avg_pool2d");
}
template <class T, class B>
tensor<T, B> avg_pool2d(const tensor<T, B>& x, const pool2d_size& kernel) {
  return avg_pool2d(x, kernel, kernel, {0, 0}, true);
}

/// Adaptive average pooling over `nchw` to {oh, ow} (PyTorch adaptive_avg_pool2d).
template <class T, class B>
tensor<T, B> adaptive_avg_pool2d(const tensor<T, B>& x, const pool2d_size& output_size) {
  return detail::adaptive_avg_pool_impl(x, {1, output_size[0], output_size[1]}, true, "adaptive_avg_pool2d");
}

// ------------------------------------------------------------------------------------ global

/// Mean over every axis >= 2: [n, c, ...] -> [n, c] (r3d_18's pooling before fc; equals
/// adaptive_avg_pool3d(x, {1,1,1}) flattened, in one reduction pass per plane).
/// Requires: rank >= 3, non-empty.
template <class T, class B>
tensor<T, B> global_avg_pool(const tensor<T, B>& x) {
  MSCL_CUDA_DISPATCH(B, global_avg_pool(x)) {
  detail::require_cpu<B>();
  MSCL_CHECK(x.defined(), shape_error, "global_avg_pool: x is an undefined tensor");
  MSCL_CHECK(x.dim() >= 3, shape_error,
             "global_avg_pool: x must have rank >= 3 ([n, c, ...], e.g. ncthw), got shape " << to_string(x.shape()));
  detail::check_nonempty(x, "global_avg_pool");
  const index_t planes = x.size(0) * x.size(1), s = x.numel() / planes;
  const tensor<T, B> xc = detail::contiguous_data(x);
  tensor<T, B> out = tensor<T, B>::empty({x.size(0), x.size(1)});
  backend::cpu_kernels::global_avg_pool_forward(xc.data(), out.data(), planes, s);
  const shape_t xshape = x.shape();
  return autograd::record(out, "global_avg_pool", {x}, [xshape, planes, s](const tensor<T, B>& g) {
    const tensor<T, B> gc = detail::contiguous_data(g);
    tensor<T, B> dx = tensor<T, B>::empty(xshape);
    backend::cpu_kernels::global_avg_pool_backward(gc.data(), dx.data(), planes, s);
    return std::vector<tensor<T, B>>{dx};
  });
  }
}

}  // namespace mscl::ops
