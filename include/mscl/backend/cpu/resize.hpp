/// \file resize.hpp
/// \brief Raw-pointer CPU kernels for 3-D nearest and trilinear resizing (forward and backward)
///        with PyTorch's `F.interpolate` index arithmetic, used by ops/resize.hpp.
///
/// Why a kernel of its own: MSCL's RGB neck (ALGORITHM.md §1.2) resizes on every FPN top-down
/// step (nearest) and on every SEPC "from coarser" path (trilinear, align_corners = false), so
/// both directions run on B×128×(4×28×28) volumes every training step.
///
/// Layout: the input is a stack of `planes` = n·c contiguous `[t, h, w]` volumes (`ncthw`), the
/// output likewise with the output extent. Resizing is separable, so each axis gets a small
/// table of source indices (and weights) computed once per call; the volume loops only gather.
///
/// Index arithmetic, copied from PyTorch (aten/src/ATen/native/UpSample.h, 1.13) so that results
/// agree to the last bit on the index choice:
///  * nearest: src = min(floor(dst · s), in − 1) with s = float(in) / out evaluated in *float*
///    (PyTorch's deprecated "nearest", not "nearest-exact"); out = in and out = 2·in are exact
///    shortcuts there and here. The float product differs from the exact floor(dst·in/out) for
///    some sizes (26 → 22 at dst 11: 12, not 13). This is the rule of PyTorch's float kernels in
///    both directions; for *double* inputs PyTorch 1.13's contiguous forward evaluates the product
///    in double while its backward keeps float, so there its forward and gradient disagree at
///    such sizes. mscl uses the float rule for every T, keeping the gradient the exact adjoint.
///    (The neck only resizes by exact factors of 2, where all rules agree.)
///  * linear (per axis of trilinear): s = in / out (align_corners = false) or (in − 1)/(out − 1)
///    (true; 0 when out = 1), in the element type T (PyTorch's opmath type on CPU);
///    src = max(s · (dst + 0.5) − 0.5, 0) (false) or s · dst (true); i0 = trunc(src),
///    i1 = i0 + 1 clamped at in − 1, λ1 = clamp(src − i0, 0, 1), λ0 = 1 − λ1; out = in copies.
///    The 8-corner sum is nested as PyTorch's separable kernel nests it:
///    λt0·(λh0·(λw0·x000 + λw1·x001) + λh1·(…)) + λt1·(…).
///
/// Parallelism (OpenMP): forwards over output rows (planes·ot·oh, race-free gathers); backwards
/// over planes, because one input element receives contributions from several outputs and a
/// plane-private scatter needs no atomics. Results do not depend on the thread count.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../../core/shape.hpp"

namespace mscl::backend::cpu_kernels {

/// Geometry of one resize call.
struct resize3d_params {
  index_t planes = 0;              ///< n·c
  index_t it = 0, ih = 0, iw = 0;  ///< input extent
  index_t ot = 0, oh = 0, ow = 0;  ///< output extent
  index_t in_plane() const { return it * ih * iw; }
  index_t out_plane() const { return ot * oh * ow; }
};

namespace detail {
inline constexpr index_t resize_parallel_grain = 1 << 14;
}  // namespace detail

/// Source index of every output position along one axis for PyTorch's "nearest".
inline std::vector<index_t> nearest_source_indices(index_t in, index_t out) {
  std::vector<index_t> src(static_cast<std::size_t>(out));
  for (index_t d = 0; d < out; ++d) {
    if (out == in) {
      src[std::size_t(d)] = d;
    } else if (out == 2 * in) {
      src[std::size_t(d)] = d >> 1;
    } else {
      // float on purpose: PyTorch computes this product in float, and for some (in, out) pairs
      // the exact rational floor(d·in/out) picks a different neighbour.
      const float scale = static_cast<float>(in) / static_cast<float>(out);
      const float s = static_cast<float>(d) * scale;
      src[std::size_t(d)] = std::min(static_cast<index_t>(std::floor(s)), in - 1);
    }
  }
  return src;
}

/// Per-axis table of linear interpolation: out position d reads i0[d] (weight l0[d]) and
/// i1[d] (weight l1[d]).
template <class T>
struct linear_axis {
  std::vector<index_t> i0, i1;
  std::vector<T> l0, l1;
};

template <class T>
linear_axis<T> linear_axis_table(index_t in, index_t out, bool align_corners) {
  linear_axis<T> a;
  a.i0.resize(std::size_t(out));
  a.i1.resize(std::size_t(out));
  a.l0.resize(std::size_t(out));
  a.l1.resize(std::size_t(out));
  const T scale = align_corners ? (out > 1 ? static_cast<T>(in - 1) / static_cast<T>(out - 1) : T(0))
                                : static_cast<T>(in) / static_cast<T>(out);
  for (index_t d = 0; d < out; ++d) {
    const std::size_t k = std::size_t(d);
    if (out == in) {
      a.i0[k] = a.i1[k] = d;
      a.l0[k] = T(1);
      a.l1[k] = T(0);
      continue;
    }
    T src;
    if (align_corners) {
      src = scale * static_cast<T>(d);
    } else {
      src = scale * (static_cast<T>(d) + T(0.5)) - T(0.5);
      if (src < T(0)) src = T(0);
    }
    const index_t i0 = static_cast<index_t>(src);  // src >= 0: truncation is floor
    a.i0[k] = i0;
    a.i1[k] = i0 + (i0 < in - 1 ? 1 : 0);
    a.l1[k] = std::min(std::max(src - static_cast<T>(i0), T(0)), T(1));
    a.l0[k] = T(1) - a.l1[k];
  }
  return a;
}

// ============================================================================ nearest

/// y[q, ot, oh, ow] = x[q, st[ot], sh[oh], sw[ow]].
template <class T>
void nearest3d_forward(const T* x, T* y, const resize3d_params& p) {
  const auto st = nearest_source_indices(p.it, p.ot);
  const auto sh = nearest_source_indices(p.ih, p.oh);
  const auto sw = nearest_source_indices(p.iw, p.ow);
  const index_t rows = p.planes * p.ot * p.oh, ip = p.in_plane();
  const index_t* swp = sw.data();
#pragma omp parallel for schedule(static) if (rows * p.ow > detail::resize_parallel_grain)
  for (index_t r = 0; r < rows; ++r) {
    const index_t oh = r % p.oh, ot = (r / p.oh) % p.ot, q = r / (p.oh * p.ot);
    const T* xr = x + q * ip + (st[std::size_t(ot)] * p.ih + sh[std::size_t(oh)]) * p.iw;
    T* yr = y + r * p.ow;
    for (index_t ow = 0; ow < p.ow; ++ow) yr[ow] = xr[swp[ow]];
  }
}

/// gx = 0, then gx[q, st[ot], sh[oh], sw[ow]] += gy[q, ot, oh, ow].
template <class T>
void nearest3d_backward(const T* gy, T* gx, const resize3d_params& p) {
  const auto st = nearest_source_indices(p.it, p.ot);
  const auto sh = nearest_source_indices(p.ih, p.oh);
  const auto sw = nearest_source_indices(p.iw, p.ow);
  const index_t ip = p.in_plane(), op = p.out_plane();
  const index_t* swp = sw.data();
#pragma omp parallel for schedule(static) if (p.planes * (ip + op) > detail::resize_parallel_grain)
  for (index_t q = 0; q < p.planes; ++q) {
    T* gxq = gx + q * ip;
    std::fill_n(gxq, ip, T(0));
    const T* gyq = gy + q * op;
    for (index_t ot = 0; ot < p.ot; ++ot)
      for (index_t oh = 0; oh < p.oh; ++oh) {
        T* gxr = gxq + (st[std::size_t(ot)] * p.ih + sh[std::size_t(oh)]) * p.iw;
        const T* gyr = gyq + (ot * p.oh + oh) * p.ow;
        for (index_t ow = 0; ow < p.ow; ++ow) gxr[swp[ow]] += gyr[ow];
      }
  }
}

// ============================================================================ trilinear

/// Trilinear interpolation with PyTorch's source-index rule (see the file comment).
template <class T>
void trilinear3d_forward(const T* x, T* y, const resize3d_params& p, bool align_corners) {
  const auto at = linear_axis_table<T>(p.it, p.ot, align_corners);
  const auto ah = linear_axis_table<T>(p.ih, p.oh, align_corners);
  const auto aw = linear_axis_table<T>(p.iw, p.ow, align_corners);
  const index_t rows = p.planes * p.ot * p.oh, ip = p.in_plane(), hw = p.ih * p.iw;
  const index_t *w0 = aw.i0.data(), *w1 = aw.i1.data();
  const T *lw0 = aw.l0.data(), *lw1 = aw.l1.data();
#pragma omp parallel for schedule(static) if (rows * p.ow > detail::resize_parallel_grain)
  for (index_t r = 0; r < rows; ++r) {
    const std::size_t oh = std::size_t(r % p.oh), ot = std::size_t((r / p.oh) % p.ot);
    const index_t q = r / (p.oh * p.ot);
    const T* xq = x + q * ip;
    const T* x00 = xq + at.i0[ot] * hw + ah.i0[oh] * p.iw;  // (t0, h0)
    const T* x01 = xq + at.i0[ot] * hw + ah.i1[oh] * p.iw;  // (t0, h1)
    const T* x10 = xq + at.i1[ot] * hw + ah.i0[oh] * p.iw;  // (t1, h0)
    const T* x11 = xq + at.i1[ot] * hw + ah.i1[oh] * p.iw;  // (t1, h1)
    const T lt0 = at.l0[ot], lt1 = at.l1[ot], lh0 = ah.l0[oh], lh1 = ah.l1[oh];
    T* yr = y + r * p.ow;
    for (index_t ow = 0; ow < p.ow; ++ow) {
      const index_t a = w0[ow], b = w1[ow];
      const T u = lw0[ow], v = lw1[ow];
      yr[ow] = lt0 * (lh0 * (u * x00[a] + v * x00[b]) + lh1 * (u * x01[a] + v * x01[b])) +
               lt1 * (lh0 * (u * x10[a] + v * x10[b]) + lh1 * (u * x11[a] + v * x11[b]));
    }
  }
}

/// Adjoint of trilinear3d_forward: gx = 0, then every output's gradient is scattered to its 8
/// corners with the forward weights.
template <class T>
void trilinear3d_backward(const T* gy, T* gx, const resize3d_params& p, bool align_corners) {
  const auto at = linear_axis_table<T>(p.it, p.ot, align_corners);
  const auto ah = linear_axis_table<T>(p.ih, p.oh, align_corners);
  const auto aw = linear_axis_table<T>(p.iw, p.ow, align_corners);
  const index_t ip = p.in_plane(), op = p.out_plane(), hw = p.ih * p.iw;
  const index_t *w0 = aw.i0.data(), *w1 = aw.i1.data();
  const T *lw0 = aw.l0.data(), *lw1 = aw.l1.data();
#pragma omp parallel for schedule(static) if (p.planes * (ip + op) > detail::resize_parallel_grain)
  for (index_t q = 0; q < p.planes; ++q) {
    T* gxq = gx + q * ip;
    std::fill_n(gxq, ip, T(0));
    const T* gyq = gy + q * op;
    for (index_t ot = 0; ot < p.ot; ++ot)
      for (index_t oh = 0; oh < p.oh; ++oh) {
        const std::size_t t = std::size_t(ot), h = std::size_t(oh);
        T* g00 = gxq + at.i0[t] * hw + ah.i0[h] * p.iw;
        T* g01 = gxq + at.i0[t] * hw + ah.i1[h] * p.iw;
        T* g10 = gxq + at.i1[t] * hw + ah.i0[h] * p.iw;
        T* g11 = gxq + at.i1[t] * hw + ah.i1[h] * p.iw;
        const T c00 = at.l0[t] * ah.l0[h], c01 = at.l0[t] * ah.l1[h];
        const T c10 = at.l1[t] * ah.l0[h], c11 = at.l1[t] * ah.l1[h];
        const T* gyr = gyq + (ot * p.oh + oh) * p.ow;
        for (index_t ow = 0; ow < p.ow; ++ow) {
          const index_t a = w0[ow], b = w1[ow];
          const T ga = gyr[ow] * lw0[ow], gb = gyr[ow] * lw1[ow];
          g00[a] += c00 * ga;
          g00[b] += c00 * gb;
          g01[a] += c01 * ga;
          g01[b] += c01 * gb;
          g10[a] += c10 * ga;
          g10[b] += c10 * gb;
          g11[a] += c11 * ga;
          g11[b] += c11 * gb;
        }
      }
  }
}

}  // namespace mscl::backend::cpu_kernels
