/// \file resize.hpp
/// \brief 3-D resizing of `ncthw` tensors with gradients, with the semantics of PyTorch's
///        `F.interpolate(x, size=(t, h, w), mode=...)`: `interpolate_nearest3d` (mode "nearest")
///        and `interpolate_trilinear3d` (mode "trilinear", align_corners false by default).
///
/// MSCL's RGB neck needs both: FPN's top-down path adds a nearest-resized coarser level, SEPC's
/// "from coarser" path a trilinearly resized one (ALGORITHM.md §1.2). Only a target size is
/// taken (no scale factor), which is how the neck calls F.interpolate; PyTorch then derives the
/// scale as in/out per axis. The exact index rules are documented in backend/cpu/resize.hpp.
#pragma once
#include <array>
#include <string>

#include "../backend/cpu/resize.hpp"
#include "common.hpp"

namespace mscl::ops {

using resize3d_size = std::array<index_t, 3>;  ///< {t, h, w}

namespace detail {

inline std::string resize_size_string(const resize3d_size& s) {
  return "[" + std::to_string(s[0]) + ", " + std::to_string(s[1]) + ", " + std::to_string(s[2]) + "]";
}

template <class T, class B>
backend::cpu_kernels::resize3d_params resize_params(const tensor<T, B>& x, const resize3d_size& size,
                                                    const char* who) {
  MSCL_CHECK(x.defined(), shape_error, who << ": x is an undefined tensor");
  MSCL_CHECK(x.dim() == 5, shape_error, who << ": x must have rank 5 (ncthw), got shape " << to_string(x.shape()));
  check_nonempty(x, who);
  MSCL_CHECK(size[0] > 0 && size[1] > 0 && size[2] > 0, value_error,
             who << ": output size must be positive along t, h and w, got " << resize_size_string(size)
                 << " for input " << to_string(x.shape()));
  backend::cpu_kernels::resize3d_params p;
  p.planes = x.size(0) * x.size(1);
  p.it = x.size(2), p.ih = x.size(3), p.iw = x.size(4);
  p.ot = size[0], p.oh = size[1], p.ow = size[2];
  return p;
}

/// Shared body of both ops: Forward(xc, y, p) and Backward(gy, gx, p) are the raw kernels.
template <class T, class B, class Forward, class Backward>
tensor<T, B> resize_impl(const tensor<T, B>& x, const resize3d_size& size, const char* who, Forward fwd,
                         Backward bwd) {
  require_cpu<B>();
  const auto p = resize_params(x, size, who);
  const tensor<T, B> xc = contiguous_data(x);
  tensor<T, B> out = tensor<T, B>::empty({x.size(0), x.size(1), p.ot, p.oh, p.ow});
  fwd(xc.data(), out.data(), p);
  const shape_t xshape = x.shape();
  return autograd::record(out, who, {x}, [p, xshape, bwd](const tensor<T, B>& g) {
    const tensor<T, B> gc = contiguous_data(g);
    tensor<T, B> dx = tensor<T, B>::empty(xshape);
    bwd(gc.data(), dx.data(), p);
    return std::vector<tensor<T, B>>{dx};
  });
}

}  // namespace detail

/// Nearest-neighbour resize of x (n×c×t×h×w) to n×c×size[0]×size[1]×size[2].
/// Requires: x rank 5, non-empty; every size > 0 (up- or down-sampling, per axis independently).
/// Ensures: y[.., i, j, k] = x[.., src_t(i), src_h(j), src_w(k)] with PyTorch's "nearest" rule
/// src(d) = min(floor(d · in/out), in − 1) (in/out in float, as PyTorch); the gradient sums the
/// output gradients of every output that copied an input element.
template <class T, class B>
tensor<T, B> interpolate_nearest3d(const tensor<T, B>& x, const resize3d_size& size) {
  MSCL_CUDA_DISPATCH(B, interpolate_nearest3d(x, size))  // backend/cuda/ssl.hpp (the TPN neck)
  return detail::resize_impl(
      x, size, "interpolate_nearest3d",
      [](const T* in, T* out, const backend::cpu_kernels::resize3d_params& p) {
        backend::cpu_kernels::nearest3d_forward(in, out, p);
      },
      [](const T* gy, T* gx, const backend::cpu_kernels::resize3d_params& p) {
        backend::cpu_kernels::nearest3d_backward(gy, gx, p);
      });
}

/// Trilinear resize of x (n×c×t×h×w) to n×c×size[0]×size[1]×size[2] (PyTorch "trilinear").
/// align_corners = false (the neck's setting): src = max((d + 0.5)·in/out − 0.5, 0), neighbours
/// floor(src) and floor(src)+1 clamped at in − 1; align_corners = true: src = d·(in−1)/(out−1).
/// Requires: as interpolate_nearest3d. Ensures: the gradient is the exact adjoint (each output
/// gradient scattered to its 8 corners with the forward weights).
template <class T, class B>
tensor<T, B> interpolate_trilinear3d(const tensor<T, B>& x, const resize3d_size& size, bool align_corners = false) {
  MSCL_CUDA_DISPATCH(B, interpolate_trilinear3d(x, size, align_corners))
  return detail::resize_impl(
      x, size, "interpolate_trilinear3d",
      [align_corners](const T* in, T* out, const backend::cpu_kernels::resize3d_params& p) {
        backend::cpu_kernels::trilinear3d_forward(in, out, p, align_corners);
      },
      [align_corners](const T* gy, T* gx, const backend::cpu_kernels::resize3d_params& p) {
        backend::cpu_kernels::trilinear3d_backward(gy, gx, p, align_corners);
      });
}

}  // namespace mscl::ops
