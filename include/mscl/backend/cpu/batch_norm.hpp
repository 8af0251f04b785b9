/// \file batch_norm.hpp
/// \brief Raw-pointer CPU kernels for batch normalisation (forward in training and evaluation
///        mode, backward, optional fused ReLU), used by ops/norm.hpp.
///
/// Layout: the input of any rank >= 2 is viewed as a contiguous `[n, c, s]` block, where `c` is
/// axis 1 and `s` the product of the axes after it (`ncthw` clips give s = t*h*w). Channel `c` of
/// sample `i` is the contiguous run `x + (i*c_count + c)*s` of length `s`.
///
/// Why this shape of loops: training-mode statistics need every element of a channel before the
/// first output can be written, so each thread owns whole channels (OpenMP over `c`) and makes
/// its passes over one channel back to back; at r3d_18 sizes one channel (n*s floats, 800 KB at
/// 8x64x8x56x56) stays in the shared L3, so only the first pass pays main-memory bandwidth.
/// Forward: one statistics pass (shifted sums) + one normalising pass; backward: one reduction
/// pass + one pass writing dx.
/// Statistics and reductions accumulate in double (exact enough that float results match a
/// double reference to float rounding), the elementwise passes run in T and vectorise
/// (`omp simd`, AVX-512 under -march=native).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "../../core/shape.hpp"

namespace mscl::backend::cpu_kernels {

/// Geometry of a batch-norm input viewed as `[n, c, s]` (contiguous).
struct bn_dims {
  index_t n = 0;  ///< batch
  index_t c = 0;  ///< channels (axis 1)
  index_t s = 0;  ///< elements per (sample, channel) plane: product of the axes >= 2 (1 for rank 2)
  index_t per_channel() const { return n * s; }
  index_t numel() const { return n * c * s; }
};

namespace detail {

/// Below this many elements the kernels stay on one thread (the fork costs more than it saves).
inline constexpr index_t bn_parallel_grain = 1 << 15;

/// y = (x - m) * a + b over one contiguous run, ReLU'd when Relu.
template <bool Relu, class T>
inline void bn_affine_run(const T* __restrict x, T* __restrict y, index_t len, T m, T a, T b) {
#pragma omp simd
  for (index_t i = 0; i < len; ++i) {
    const T v = (x[i] - m) * a + b;
    if constexpr (Relu)
      y[i] = v < T(0) ? T(0) : v;  // NaN propagates, as in PyTorch
    else
      y[i] = v;
  }
}

/// Sum of g and of g*(x - m), where g = dy, or dy masked by y > 0 when Relu. With Relu and a
/// non-null `masked_out`, the masked g is also stored there (len elements) for the dx pass.
template <bool Relu, class T>
inline void bn_grad_sums_run(const T* __restrict x, const T* __restrict y, const T* __restrict dy,
                             T* __restrict masked_out, index_t len, double m, double& sum_g, double& sum_gx) {
  double sg = 0, sgx = 0;
  if constexpr (!Relu) {
#pragma omp simd reduction(+ : sg, sgx)
    for (index_t i = 0; i < len; ++i) {
      const double g = double(dy[i]);
      sg += g;
      sgx += g * (double(x[i]) - m);
    }
  } else {
    // The mask goes through a small buffer: fused into the widening reduction, GCC 12 emits a
    // scalar loop with a data-dependent branch once this is inlined (10-20x slower on random
    // signs); split, both loops vectorise.
    constexpr index_t chunk = 512;
    alignas(64) T local[chunk];
    for (index_t i0 = 0; i0 < len; i0 += chunk) {
      const index_t n = std::min(chunk, len - i0);
      T* __restrict masked = masked_out ? masked_out + i0 : local;
#pragma omp simd
      for (index_t j = 0; j < n; ++j) masked[j] = y[i0 + j] > T(0) ? dy[i0 + j] : T(0);
#pragma omp simd reduction(+ : sg, sgx)
      for (index_t j = 0; j < n; ++j) {
        const double g = double(masked[j]);
        sg += g;
        sgx += g * (double(x[i0 + j]) - m);
      }
    }
  }
  sum_g += sg;
  sum_gx += sgx;
}

/// dx = k1*g + k2*(x - m) + k3, with g as in bn_grad_sums_run.
template <bool Relu, class T>
inline void bn_grad_input_run(const T* __restrict x, const T* __restrict y, const T* __restrict dy, T* __restrict dx,
                              index_t len, T m, T k1, T k2, T k3) {
#pragma omp simd
  for (index_t i = 0; i < len; ++i) {
    T g = dy[i];
    if constexpr (Relu) g = y[i] > T(0) ? g : T(0);
    dx[i] = k1 * g + k2 * (x[i] - m) + k3;
  }
}

/// dx = k1*g + k2*(x - m) + k3 in place, g read from dx (the masked gradient stored by
/// bn_grad_sums_run): the fused-ReLU backward then reads two arrays in its second pass, not three.
template <class T>
inline void bn_grad_input_inplace_run(const T* __restrict x, T* __restrict g_dx, index_t len, T m, T k1, T k2, T k3) {
#pragma omp simd
  for (index_t i = 0; i < len; ++i) g_dx[i] = k1 * g_dx[i] + k2 * (x[i] - m) + k3;
}

template <bool Relu, class T>
void bn_forward_train_impl(const T* x, const T* weight, const T* bias, T* y, double* mean, double* var, bn_dims d,
                           double eps) {
  const index_t cs = d.c * d.s;
  const double inv_count = 1.0 / double(d.per_channel());
#pragma omp parallel for schedule(static) if (d.numel() > bn_parallel_grain)
  for (index_t c = 0; c < d.c; ++c) {
    // One pass over the channel for sum and sum of squares, shifted by the mean of the first
    // (sample 0) plane: with K close to the channel mean, S2/M - (S1/M)^2 loses only
    // ~(mean - K)^2/var of double precision to cancellation, while a second full pass over the
    // channel (the textbook two-pass variance) would cost a re-read from L3.
    double k0 = 0;
    {
      const T* p = x + c * d.s;
#pragma omp simd reduction(+ : k0)
      for (index_t k = 0; k < d.s; ++k) k0 += double(p[k]);
      k0 /= double(d.s);
    }
    double s1 = 0, s2 = 0;
    for (index_t i = 0; i < d.n; ++i) {
      const T* p = x + i * cs + c * d.s;
      double a1 = 0, a2 = 0;
#pragma omp simd reduction(+ : a1, a2)
      for (index_t k = 0; k < d.s; ++k) {
        const double dv = double(p[k]) - k0;
        a1 += dv;
        a2 += dv * dv;
      }
      s1 += a1;
      s2 += a2;
    }
    const double shift = s1 * inv_count;
    const double m = k0 + shift;
    const double v = std::max(s2 * inv_count - shift * shift, 0.0);
    mean[c] = m;
    var[c] = v;
    const double invstd = 1.0 / std::sqrt(v + eps);
    const T a = T(invstd * (weight ? double(weight[c]) : 1.0));
    const T b = bias ? bias[c] : T(0);
    // Pass 3: normalise.
    for (index_t i = 0; i < d.n; ++i) {
      const index_t off = i * cs + c * d.s;
      bn_affine_run<Relu>(x + off, y + off, d.s, T(m), a, b);
    }
  }
}

template <bool Relu, class T>
void bn_forward_apply_impl(const T* x, const double* mean, const double* invstd, const T* weight, const T* bias, T* y,
                           bn_dims d) {
  const index_t planes = d.n * d.c;
#pragma omp parallel for schedule(static) if (d.numel() > bn_parallel_grain)
  for (index_t p = 0; p < planes; ++p) {
    const index_t c = p % d.c;
    const T a = T(invstd[c] * (weight ? double(weight[c]) : 1.0));
    const T b = bias ? bias[c] : T(0);
    bn_affine_run<Relu>(x + p * d.s, y + p * d.s, d.s, T(mean[c]), a, b);
  }
}

template <bool Relu, class T>
void bn_backward_impl(const T* x, const T* y, const T* dy, const double* mean, const double* invstd, const T* weight,
                      T* dx, T* dweight, T* dbias, bn_dims d, bool training) {
  const index_t cs = d.c * d.s;
  const double inv_count = 1.0 / double(d.per_channel());
#pragma omp parallel for schedule(static) if (d.numel() > bn_parallel_grain)
  for (index_t c = 0; c < d.c; ++c) {
    const double m = mean[c], is = invstd[c];
    const double w = weight ? double(weight[c]) : 1.0;
    const bool need_sums = dweight || dbias || (dx && training);
    double sum_g = 0, sum_gx = 0;
    if (need_sums)
      for (index_t i = 0; i < d.n; ++i) {
        const index_t off = i * cs + c * d.s;
        bn_grad_sums_run<Relu>(x + off, Relu ? y + off : y, dy + off, Relu && dx ? dx + off : nullptr, d.s, m,
                               sum_g, sum_gx);
      }
    if (dbias) dbias[c] = T(sum_g);
    if (dweight) dweight[c] = T(sum_gx * is);
    if (!dx) continue;
    // Training: dx = w*is*(g - mean(g) - xhat*mean(g*xhat)); the batch statistics depend on x.
    // Evaluation: the statistics are constants, dx = w*is*g.
    const double k1 = w * is;
    const double k2 = training ? -w * is * is * is * sum_gx * inv_count : 0.0;
    const double k3 = training ? -w * is * sum_g * inv_count : 0.0;
    for (index_t i = 0; i < d.n; ++i) {
      const index_t off = i * cs + c * d.s;
      if (Relu && need_sums)  // dx already holds the masked gradient
        bn_grad_input_inplace_run(x + off, dx + off, d.s, T(m), T(k1), T(k2), T(k3));
      else
        bn_grad_input_run<Relu>(x + off, Relu ? y + off : y, dy + off, dx + off, d.s, T(m), T(k1), T(k2), T(k3));
    }
  }
}

}  // namespace detail

/// Training-mode forward. Requires: x holds d.numel() elements; weight, bias null or d.c long;
/// y holds d.numel(); mean and var d.c long; d.per_channel() > 0.
/// Ensures: mean[c], var[c] = batch mean and biased variance of channel c (double);
/// y = (x - mean)/sqrt(var + eps) * weight + bias (weight 1, bias 0 when null), then max(., 0)
/// when relu. y may not alias x.
template <class T>
void batch_norm_forward_train(const T* x, const T* weight, const T* bias, T* y, double* mean, double* var, bn_dims d,
                              double eps, bool relu) {
  if (relu)
    detail::bn_forward_train_impl<true>(x, weight, bias, y, mean, var, d, eps);
  else
    detail::bn_forward_train_impl<false>(x, weight, bias, y, mean, var, d, eps);
}

/// Normalisation with given per-channel statistics (evaluation mode):
/// y = (x - mean[c]) * invstd[c] * weight[c] + bias[c], ReLU'd when relu.
template <class T>
void batch_norm_forward_apply(const T* x, const double* mean, const double* invstd, const T* weight, const T* bias,
                              T* y, bn_dims d, bool relu) {
  if (relu)
    detail::bn_forward_apply_impl<true>(x, mean, invstd, weight, bias, y, d);
  else
    detail::bn_forward_apply_impl<false>(x, mean, invstd, weight, bias, y, d);
}

/// Backward of either forward. `y` is the forward output when the ReLU was fused (its sign is
/// the mask) and null otherwise. `mean`, `invstd` are the statistics the forward used (batch
/// statistics when `training`, running ones otherwise). Any of dx, dweight, dbias may be null
/// (not computed). dweight = sum(g * xhat), dbias = sum(g) per channel; dx as in PyTorch.
template <class T>
void batch_norm_backward(const T* x, const T* y, const T* dy, const double* mean, const double* invstd,
                         const T* weight, T* dx, T* dweight, T* dbias, bn_dims d, bool training) {
  if (y)
    detail::bn_backward_impl<true>(x, y, dy, mean, invstd, weight, dx, dweight, dbias, d, training);
  else
    detail::bn_backward_impl<false>(x, y, dy, mean, invstd, weight, dx, dweight, dbias, d, training);
}

}  // namespace mscl::backend::cpu_kernels
