/// \file pool.hpp
/// \brief Raw-pointer CPU kernels for max, average, adaptive-average and global-average pooling
///        (forward and backward), used by ops/pool.hpp for both the 3-D and the 2-D ops.
///
/// Layout: the input is a stack of `planes` = n*c contiguous `[t, h, w]` volumes (`ncthw`); the
/// 2-D ops pass `nchw` as t = 1 with a temporal kernel, stride 1 and padding 0. Windows follow
/// PyTorch: floor mode, output = (in + 2*pad - k)/stride + 1, padding acts as -inf for max and as
/// zeros for average (counted in the divisor when count_include_pad).
///
/// Parallel over planes (OpenMP): each plane's backward scatter is then race-free even when
/// windows overlap. Inside a plane the max/average kernels walk one output row at a time with the
/// window offsets (kt, kh, kw) outermost and the output column innermost, so the inner loop is a
/// unit- or constant-stride sweep that vectorises; for every output the window elements are still
/// visited in PyTorch's (t, h, w) order, so ties and NaNs pick the same argmax as PyTorch.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../../core/shape.hpp"

namespace mscl::backend::cpu_kernels {

/// Geometry of a pooling call (3-D; 2-D uses it = ot = kt = st = 1, pt = 0).
struct pool3d_params {
  index_t planes = 0;                ///< n*c
  index_t it = 0, ih = 0, iw = 0;    ///< input extent
  index_t ot = 0, oh = 0, ow = 0;    ///< output extent
  index_t kt = 1, kh = 1, kw = 1;    ///< kernel
  index_t st = 1, sh = 1, sw = 1;    ///< stride
  index_t pt = 0, ph = 0, pw = 0;    ///< padding
  index_t in_plane() const { return it * ih * iw; }
  index_t out_plane() const { return ot * oh * ow; }
};

/// PyTorch's floor-mode output extent: (in + 2*pad - k)/stride + 1 (may be <= 0 for bad input).
inline index_t pool_output_size(index_t in, index_t k, index_t stride, index_t pad) {
  const index_t span = in + 2 * pad - k;
  return span < 0 ? 0 : span / stride + 1;
}

namespace detail {

inline constexpr index_t pool_parallel_grain = 1 << 14;

/// Output columns o in [lo, hi) whose input column o*s - p + k lies inside [0, in).
inline void pool_column_range(index_t k, index_t s, index_t p, index_t in, index_t out, index_t& lo, index_t& hi) {
  lo = k >= p ? 0 : (p - k + s - 1) / s;
  const index_t last = in - 1 + p - k;  // o*s <= last
  hi = last < 0 ? 0 : std::min(out, last / s + 1);
  if (hi < lo) hi = lo;
}

}  // namespace detail

/// Max pooling forward. Requires: x holds planes*in_plane, y and argmax planes*out_plane,
/// padding <= kernel/2 per axis (so every window meets the input). Ensures: y = window max,
/// argmax = flat index inside the input plane (t*ih*iw + h*iw + w) of the first maximum in
/// (t, h, w) order; a NaN wins over numbers (PyTorch).
template <class T>
void max_pool3d_forward(const T* x, T* y, std::int32_t* argmax, const pool3d_params& p) {
  const index_t ip = p.in_plane(), op = p.out_plane();
#pragma omp parallel for schedule(static) if (p.planes * (ip + op) > detail::pool_parallel_grain)
  for (index_t q = 0; q < p.planes; ++q) {
    const T* xq = x + q * ip;
    for (index_t ot = 0; ot < p.ot; ++ot) {
      const index_t t0 = ot * p.st - p.pt;
      const index_t tlo = std::max<index_t>(t0, 0), thi = std::min(t0 + p.kt, p.it);
      for (index_t oh = 0; oh < p.oh; ++oh) {
        const index_t h0 = oh * p.sh - p.ph;
        const index_t hlo = std::max<index_t>(h0, 0), hhi = std::min(h0 + p.kh, p.ih);
        T* __restrict yr = y + q * op + (ot * p.oh + oh) * p.ow;
        std::int32_t* __restrict ar = argmax + q * op + (ot * p.oh + oh) * p.ow;
        for (index_t o = 0; o < p.ow; ++o) {
          yr[o] = -std::numeric_limits<T>::infinity();
          ar[o] = std::int32_t((tlo * p.ih + hlo) * p.iw + std::max<index_t>(o * p.sw - p.pw, 0));
        }
        for (index_t t = tlo; t < thi; ++t)
          for (index_t h = hlo; h < hhi; ++h) {
            const index_t row = (t * p.ih + h) * p.iw;
            const T* __restrict xr = xq + row;
            for (index_t k = 0; k < p.kw; ++k) {
              index_t lo, hi;
              detail::pool_column_range(k, p.sw, p.pw, p.iw, p.ow, lo, hi);
              const index_t shift = k - p.pw;
              for (index_t o = lo; o < hi; ++o) {
                const index_t iwx = o * p.sw + shift;
                const T v = xr[iwx];
                const bool take = v > yr[o] || v != v;
                yr[o] = take ? v : yr[o];
                ar[o] = take ? std::int32_t(row + iwx) : ar[o];
              }
            }
          }
      }
    }
  }
}

/// Max pooling backward: dx = 0, then dx[argmax] += dy per output (overwrites dx).
template <class T>
void max_pool3d_backward(const T* dy, const std::int32_t* argmax, T* dx, const pool3d_params& p) {
  const index_t ip = p.in_plane(), op = p.out_plane();
#pragma omp parallel for schedule(static) if (p.planes * (ip + op) > detail::pool_parallel_grain)
  for (index_t q = 0; q < p.planes; ++q) {
    T* dq = dx + q * ip;
    std::fill_n(dq, ip, T(0));
    const T* gq = dy + q * op;
    const std::int32_t* aq = argmax + q * op;
    for (index_t j = 0; j < op; ++j) dq[aq[j]] += gq[j];
  }
}

namespace detail {
/// Per output index along one axis: the window's divisor share (count_include_pad: window
/// clipped to in + pad; otherwise clipped to the input).
inline std::vector<index_t> avg_axis_counts(index_t out, index_t k, index_t s, index_t p, index_t in,
                                            bool include_pad) {
  std::vector<index_t> counts(static_cast<std::size_t>(out));
  for (index_t o = 0; o < out; ++o) {
    const index_t a = o * s - p;
    const index_t b = std::min(a + k, in + p);
    counts[std::size_t(o)] = include_pad ? b - a : std::min(b, in) - std::max<index_t>(a, 0);
  }
  return counts;
}
}  // namespace detail

/// Average pooling forward (PyTorch avg_pool3d, divisor_override unset).
template <class T>
void avg_pool3d_forward(const T* x, T* y, const pool3d_params& p, bool count_include_pad) {
  const index_t ip = p.in_plane(), op = p.out_plane();
  const auto nt = detail::avg_axis_counts(p.ot, p.kt, p.st, p.pt, p.it, count_include_pad);
  const auto nh = detail::avg_axis_counts(p.oh, p.kh, p.sh, p.ph, p.ih, count_include_pad);
  const auto nw = detail::avg_axis_counts(p.ow, p.kw, p.sw, p.pw, p.iw, count_include_pad);
#pragma omp parallel for schedule(static) if (p.planes * (ip + op) > detail::pool_parallel_grain)
  for (index_t q = 0; q < p.planes; ++q) {
    const T* xq = x + q * ip;
    for (index_t ot = 0; ot < p.ot; ++ot) {
      const index_t t0 = ot * p.st - p.pt;
      const index_t tlo = std::max<index_t>(t0, 0), thi = std::min(t0 + p.kt, p.it);
      for (index_t oh = 0; oh < p.oh; ++oh) {
        const index_t h0 = oh * p.sh - p.ph;
        const index_t hlo = std::max<index_t>(h0, 0), hhi = std::min(h0 + p.kh, p.ih);
        T* __restrict yr = y + q * op + (ot * p.oh + oh) * p.ow;
        std::fill_n(yr, p.ow, T(0));
        for (index_t t = tlo; t < thi; ++t)
          for (index_t h = hlo; h < hhi; ++h) {
            const T* __restrict xr = xq + (t * p.ih + h) * p.iw;
            for (index_t k = 0; k < p.kw; ++k) {
              index_t lo, hi;
              detail::pool_column_range(k, p.sw, p.pw, p.iw, p.ow, lo, hi);
              const index_t shift = k - p.pw;
#pragma omp simd
              for (index_t o = lo; o < hi; ++o) yr[o] += xr[o * p.sw + shift];
            }
          }
        const index_t nth = nt[std::size_t(ot)] * nh[std::size_t(oh)];
        for (index_t o = 0; o < p.ow; ++o) yr[o] /= T(nth * nw[std::size_t(o)]);
      }
    }
  }
}

/// Average pooling backward (overwrites dx): each input gets dy/divisor from every window it is in.
template <class T>
void avg_pool3d_backward(const T* dy, T* dx, const pool3d_params& p, bool count_include_pad) {
  const index_t ip = p.in_plane(), op = p.out_plane();
  const auto nt = detail::avg_axis_counts(p.ot, p.kt, p.st, p.pt, p.it, count_include_pad);
  const auto nh = detail::avg_axis_counts(p.oh, p.kh, p.sh, p.ph, p.ih, count_include_pad);
  const auto nw = detail::avg_axis_counts(p.ow, p.kw, p.sw, p.pw, p.iw, count_include_pad);
#pragma omp parallel for schedule(static) if (p.planes * (ip + op) > detail::pool_parallel_grain)
  for (index_t q = 0; q < p.planes; ++q) {
    T* dq = dx + q * ip;
    std::fill_n(dq, ip, T(0));
    std::vector<T> g(std::size_t(p.ow));
    for (index_t ot = 0; ot < p.ot; ++ot) {
      const index_t t0 = ot * p.st - p.pt;
      const index_t tlo = std::max<index_t>(t0, 0), thi = std::min(t0 + p.kt, p.it);
      for (index_t oh = 0; oh < p.oh; ++oh) {
        const index_t h0 = oh * p.sh - p.ph;
        const index_t hlo = std::max<index_t>(h0, 0), hhi = std::min(h0 + p.kh, p.ih);
        const T* gr = dy + q * op + (ot * p.oh + oh) * p.ow;
        const index_t nth = nt[std::size_t(ot)] * nh[std::size_t(oh)];
        for (index_t o = 0; o < p.ow; ++o) g[std::size_t(o)] = gr[o] / T(nth * nw[std::size_t(o)]);
        const T* __restrict gg = g.data();
        for (index_t t = tlo; t < thi; ++t)
          for (index_t h = hlo; h < hhi; ++h) {
            T* __restrict dr = dq + (t * p.ih + h) * p.iw;
            for (index_t k = 0; k < p.kw; ++k) {
              index_t lo, hi;
              detail::pool_column_range(k, p.sw, p.pw, p.iw, p.ow, lo, hi);
              const index_t shift = k - p.pw;
              // For a fixed k the targets o*sw + shift are distinct, so the sweep has no
              // loop-carried dependence even though windows overlap across k.
#pragma omp simd
              for (index_t o = lo; o < hi; ++o) dr[o * p.sw + shift] += gg[o];
            }
          }
      }
    }
  }
}

/// PyTorch's adaptive-pool window along one axis: [floor(i*in/out), ceil((i+1)*in/out)).
inline index_t adaptive_start(index_t i, index_t in, index_t out) { return (i * in) / out; }
inline index_t adaptive_end(index_t i, index_t in, index_t out) { return ((i + 1) * in + out - 1) / out; }

/// Adaptive average pooling forward; p.kt.. p.pw are ignored (windows from adaptive_start/end).
/// Accumulates in double: windows can be whole planes.
template <class T>
void adaptive_avg_pool3d_forward(const T* x, T* y, const pool3d_params& p) {
  const index_t ip = p.in_plane(), op = p.out_plane();
#pragma omp parallel for schedule(static) if (p.planes * (ip + op) > detail::pool_parallel_grain)
  for (index_t q = 0; q < p.planes; ++q) {
    const T* xq = x + q * ip;
    T* yq = y + q * op;
    for (index_t ot = 0; ot < p.ot; ++ot) {
      const index_t t0 = adaptive_start(ot, p.it, p.ot), t1 = adaptive_end(ot, p.it, p.ot);
      for (index_t oh = 0; oh < p.oh; ++oh) {
        const index_t h0 = adaptive_start(oh, p.ih, p.oh), h1 = adaptive_end(oh, p.ih, p.oh);
        for (index_t ow = 0; ow < p.ow; ++ow) {
          const index_t w0 = adaptive_start(ow, p.iw, p.ow), w1 = adaptive_end(ow, p.iw, p.ow);
          double acc = 0;
          for (index_t t = t0; t < t1; ++t)
            for (index_t h = h0; h < h1; ++h) {
              const T* xr = xq + (t * p.ih + h) * p.iw;
              double s = 0;
#pragma omp simd reduction(+ : s)
              for (index_t w = w0; w < w1; ++w) s += double(xr[w]);
              acc += s;
            }
          yq[(ot * p.oh + oh) * p.ow + ow] = T(acc / double((t1 - t0) * (h1 - h0) * (w1 - w0)));
        }
      }
    }
  }
}

/// Adaptive average pooling backward (overwrites dx).
template <class T>
void adaptive_avg_pool3d_backward(const T* dy, T* dx, const pool3d_params& p) {
  const index_t ip = p.in_plane(), op = p.out_plane();
#pragma omp parallel for schedule(static) if (p.planes * (ip + op) > detail::pool_parallel_grain)
  for (index_t q = 0; q < p.planes; ++q) {
    T* dq = dx + q * ip;
    std::fill_n(dq, ip, T(0));
    const T* gq = dy + q * op;
    for (index_t ot = 0; ot < p.ot; ++ot) {
      const index_t t0 = adaptive_start(ot, p.it, p.ot), t1 = adaptive_end(ot, p.it, p.ot);
      for (index_t oh = 0; oh < p.oh; ++oh) {
        const index_t h0 = adaptive_start(oh, p.ih, p.oh), h1 = adaptive_end(oh, p.ih, p.oh);
        for (index_t ow = 0; ow < p.ow; ++ow) {
          const index_t w0 = adaptive_start(ow, p.iw, p.ow), w1 = adaptive_end(ow, p.iw, p.ow);
          const T g = gq[(ot * p.oh + oh) * p.ow + ow] / T((t1 - t0) * (h1 - h0) * (w1 - w0));
          for (index_t t = t0; t < t1; ++t)
            for (index_t h = h0; h < h1; ++h) {
              T* dr = dq + (t * p.ih + h) * p.iw;
#pragma omp simd
              for (index_t w = w0; w < w1; ++w) dr[w] += g;
            }
        }
      }
    }
  }
}

/// Global average pooling: y[q] = mean of the s elements of plane q (double accumulation).
template <class T>
void global_avg_pool_forward(const T* x, T* y, index_t planes, index_t s) {
  const double inv = 1.0 / double(s);
#pragma omp parallel for schedule(static) if (planes * s > detail::pool_parallel_grain)
  for (index_t q = 0; q < planes; ++q) {
    const T* __restrict xq = x + q * s;
    double acc = 0;
#pragma omp simd reduction(+ : acc)
    for (index_t k = 0; k < s; ++k) acc += double(xq[k]);
    y[q] = T(acc * inv);
  }
}

/// Global average pooling backward: dx[q, :] = dy[q] / s.
template <class T>
void global_avg_pool_backward(const T* dy, T* dx, index_t planes, index_t s) {
#pragma omp parallel for schedule(static) if (planes * s > detail::pool_parallel_grain)
  for (index_t q = 0; q < planes; ++q) {
    const T g = T(double(dy[q]) / double(s));
    T* __restrict dq = dx + q * s;
#pragma omp simd
    for (index_t k = 0; k < s; ++k) dq[k] = g;
  }
}

}  // namespace mscl::backend::cpu_kernels
