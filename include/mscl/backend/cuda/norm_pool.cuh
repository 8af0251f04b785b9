/// \file norm_pool.cuh
/// \brief Device kernels for the parts of batch-norm that cuDNN does not cover (fused ReLU,
///        evaluation-mode backward) and for pooling with the CPU backend's exact semantics
///        (first-maximum argmax, NaN-propagating max, PyTorch's average divisors, adaptive
///        windows). Compiled by nvcc only.
#pragma once
#include <cstdint>

#include "elementwise.cuh"

namespace mscl::cuda_backend::kernels {

/// The tail of the per-channel reductions below: the block's two partial sums (a, b) reduced
/// over the block and added once each, by thread 0, to *out_a and *out_b.
__device__ inline void add_block_sums(double a, double b, double* shared, double* out_a, double* out_b) {
  a = block_sum(a, shared);
  b = block_sum(b, shared);
  if (threadIdx.x == 0) {
    atomicAdd(out_a, a);
    atomicAdd(out_b, b);
  }
}

template <class T>
__global__ void relu_inplace(T* p, i64 n) {
  const f_relu f;
  if constexpr (std::is_same_v<T, float>) {
    if (aligned16(p)) {  // vectorised as in elementwise.cuh
      const i64 n4 = n / 4;
      for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < n4; i += i64(blockDim.x) * gridDim.x) {
        float4 v = reinterpret_cast<const float4*>(p)[i];
        v.x = f(v.x), v.y = f(v.y), v.z = f(v.z), v.w = f(v.w);
        reinterpret_cast<float4*>(p)[i] = v;
      }
      for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < n - 4 * n4; i += i64(blockDim.x) * gridDim.x)
        p[4 * n4 + i] = f(p[4 * n4 + i]);
      return;
    }
  }
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += i64(blockDim.x) * gridDim.x) p[i] = f(p[i]);
}

/// invstd[c] = 1/sqrt(var[c] + eps) (evaluation mode statistics).
template <class T>
__global__ void invstd_from_var(const T* __restrict__ var, T* __restrict__ invstd, i64 c, double eps) {
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < c; i += i64(blockDim.x) * gridDim.x)
    invstd[i] = T(1.0 / ::sqrt(double(var[i]) + eps));
}

/// Per-channel sums over (n, s) of x laid out [n, c, s]: sum_dy[c] += dy, sum_dyx[c] +=
/// dy * (x - mean[c]) * invstd[c]. Grid: (blocks per channel, c).
template <class T>
__global__ void bn_channel_sums(const T* __restrict__ x, const T* __restrict__ dy, const T* __restrict__ mean,
                                const T* __restrict__ invstd, double* __restrict__ sum_dy,
                                double* __restrict__ sum_dyx, i64 n, i64 c, i64 s) {
  __shared__ double shared[32];
  const i64 ch = blockIdx.y;
  const double m = double(mean[ch]), is = double(invstd[ch]);
  double a = 0, b = 0;
  const i64 per = n * s;
  for (i64 k = i64(blockIdx.x) * blockDim.x + threadIdx.x; k < per; k += i64(blockDim.x) * gridDim.x) {
    const i64 idx = ((k / s) * c + ch) * s + k % s;
    const double g = double(dy[idx]);
    a += g;
    b += g * (double(x[idx]) - m) * is;
  }
  add_block_sums(a, b, shared, sum_dy + ch, sum_dyx + ch);
}

/// Evaluation-mode input gradient: dx = dy * weight[c] * invstd[c] (weight null: 1).
template <class T>
__global__ void bn_eval_dx(const T* __restrict__ dy, const T* __restrict__ weight, const T* __restrict__ invstd,
                           T* __restrict__ dx, i64 total, i64 c, i64 s) {
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += i64(blockDim.x) * gridDim.x) {
    const i64 ch = (i / s) % c;
    dx[i] = dy[i] * (weight ? weight[ch] : T(1)) * invstd[ch];
  }
}

template <class T>
__global__ void double_to(const double* __restrict__ a, T* __restrict__ out, i64 n) {
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += i64(blockDim.x) * gridDim.x) out[i] = T(a[i]);
}

// ------------------------------------------------------------------ sync-BN (ops/norm.hpp)
// The device half of sync-BN, with the CPU's arithmetic (ops/norm.hpp detail::sync_bn_*):
// local statistics in double -> the reducer's layout [n·m (c), M2 + n·m² (c), n (1)] -> all-
// reduce (by the caller) -> global mean/invstd, running buffers, per-channel scale and shift;
// backward: local Σg, Σg(x − mean) -> dweight, dbias from the LOCAL sums -> all-reduce -> dx
// from the global sums. Layout of x: [n, c, s].

/// Shifted sums per channel: s1[ch] += Σ(x − k), s2[ch] += Σ(x − k)² with k = x[0, ch, 0], a
/// value of the channel, which keeps the one-pass variance accurate in double (the CPU shifts
/// by the first sample's channel mean). Grid: (blocks per channel, c); s1, s2 zeroed.
template <class T>
__global__ void bn_shifted_sums(const T* __restrict__ x, double* __restrict__ s1, double* __restrict__ s2, i64 n, i64 c,
                                i64 s) {
  __shared__ double shared[32];
  const i64 ch = blockIdx.y;
  const double k0 = double(x[ch * s]);
  double a = 0, b = 0;
  const i64 per = n * s;
  for (i64 k = i64(blockIdx.x) * blockDim.x + threadIdx.x; k < per; k += i64(blockDim.x) * gridDim.x) {
    const double d = double(x[((k / s) * c + ch) * s + k % s]) - k0;
    a += d;
    b += d * d;
  }
  add_block_sums(a, b, shared, s1 + ch, s2 + ch);
}

/// In place: buf[0..c) = Σ(x−k), buf[c..2c) = Σ(x−k)² become n·m and M2 + n·m²; buf[2c] = n.
template <class T>
__global__ void bn_sync_local_statistics(const T* __restrict__ x, double* __restrict__ buf, i64 c, i64 s,
                                         double local_n) {
  for (i64 ch = i64(blockIdx.x) * blockDim.x + threadIdx.x; ch < c; ch += i64(blockDim.x) * gridDim.x) {
    const double k0 = double(x[ch * s]);
    const double s1 = buf[ch], s2 = buf[c + ch];
    const double shift = s1 / local_n, m = k0 + shift;
    const double m2 = fmax(s2 - s1 * shift, 0.0);
    buf[ch] = local_n * m;
    buf[c + ch] = m2 + local_n * m * m;
    if (ch == 0) buf[2 * c] = local_n;
  }
}

/// From the all-reduced buffer: mean, invstd (double, kept for backward), y = x·scale + shift
/// coefficients (weight/bias null: 1/0), and the running-buffer update with the unbiased global
/// variance (running_* null: no update).
template <class T>
__global__ void bn_sync_finalize(const double* __restrict__ buf, i64 c, double eps, const T* __restrict__ weight,
                                 const T* __restrict__ bias, double* __restrict__ mean, double* __restrict__ invstd,
                                 T* __restrict__ scale, T* __restrict__ shift, T* __restrict__ running_mean,
                                 T* __restrict__ running_var, double momentum) {
  for (i64 ch = i64(blockIdx.x) * blockDim.x + threadIdx.x; ch < c; ch += i64(blockDim.x) * gridDim.x) {
    const double n = buf[2 * c], m = buf[ch] / n;
    const double var = fmax(buf[c + ch] / n - m * m, 0.0), is = 1.0 / ::sqrt(var + eps);
    const double w = weight ? double(weight[ch]) : 1.0, b = bias ? double(bias[ch]) : 0.0;
    mean[ch] = m;
    invstd[ch] = is;
    scale[ch] = T(w * is);
    shift[ch] = T(b - m * w * is);
    if (running_mean) {
      running_mean[ch] = T((1 - momentum) * double(running_mean[ch]) + momentum * m);
      running_var[ch] = T((1 - momentum) * double(running_var[ch]) + momentum * var * n / (n - 1));
    }
  }
}

/// y = x·scale[ch] + shift[ch], then max(y, 0) when relu.
template <class T>
__global__ void bn_scale_shift(const T* __restrict__ x, const T* __restrict__ scale, const T* __restrict__ shift,
                               T* __restrict__ y, i64 total, i64 c, i64 s, bool relu) {
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += i64(blockDim.x) * gridDim.x) {
    const i64 ch = (i / s) % c;
    const T v = x[i] * scale[ch] + shift[ch];
    y[i] = relu && !(v > T(0)) ? T(0) : v;
  }
}

/// Local gradient sums: sums[ch] += Σg, sums[c + ch] += Σg·(x − mean[ch]), g = dy masked by
/// y > 0 when y is given (fused ReLU). Grid: (blocks per channel, c); sums zeroed.
template <class T>
__global__ void bn_sync_gradient_sums(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ dy,
                                      const double* __restrict__ mean, double* __restrict__ sums, i64 n, i64 c, i64 s) {
  __shared__ double shared[32];
  const i64 ch = blockIdx.y;
  const double m = mean[ch];
  double a = 0, b = 0;
  const i64 per = n * s;
  for (i64 k = i64(blockIdx.x) * blockDim.x + threadIdx.x; k < per; k += i64(blockDim.x) * gridDim.x) {
    const i64 idx = ((k / s) * c + ch) * s + k % s;
    const double g = (y && !(y[idx] > T(0))) ? 0.0 : double(dy[idx]);
    a += g;
    b += g * (double(x[idx]) - m);
  }
  add_block_sums(a, b, shared, sums + ch, sums + c + ch);
}

/// dbias = Σg and dweight = Σg(x − mean)·invstd from this process's sums (before the
/// all-reduce: gradient averaging adds the processes' parts).
template <class T>
__global__ void bn_sync_parameter_grads(const double* __restrict__ sums, const double* __restrict__ invstd,
                                        T* __restrict__ dweight, T* __restrict__ dbias, i64 c) {
  for (i64 ch = i64(blockIdx.x) * blockDim.x + threadIdx.x; ch < c; ch += i64(blockDim.x) * gridDim.x) {
    dbias[ch] = T(sums[ch]);
    dweight[ch] = T(sums[c + ch] * invstd[ch]);
  }
}

/// dx = k1·g + k2·(x − mean) + k3 per channel, with k1 = w·is, k2 = −w·is³·Σg(x−m)/n,
/// k3 = −w·is·Σg/n from the global sums and count (global_n points at the count on the device).
template <class T>
__global__ void bn_sync_dx_coefficients(const double* __restrict__ mean, const double* __restrict__ invstd,
                                        const T* __restrict__ weight, const double* __restrict__ sums,
                                        const double* __restrict__ global_n, T* __restrict__ coef, i64 c) {
  for (i64 ch = i64(blockIdx.x) * blockDim.x + threadIdx.x; ch < c; ch += i64(blockDim.x) * gridDim.x) {
    const double n = *global_n, is = invstd[ch], w = weight ? double(weight[ch]) : 1.0;
    coef[ch] = T(w * is);
    coef[c + ch] = T(-w * is * is * is * sums[c + ch] / n);
    coef[2 * c + ch] = T(-w * is * sums[ch] / n);
    coef[3 * c + ch] = T(mean[ch]);
  }
}

template <class T>
__global__ void bn_sync_dx(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ dy,
                           const T* __restrict__ coef, T* __restrict__ dx, i64 total, i64 c, i64 s) {
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += i64(blockDim.x) * gridDim.x) {
    const i64 ch = (i / s) % c;
    const T g = (y && !(y[i] > T(0))) ? T(0) : dy[i];
    dx[i] = coef[ch] * g + coef[c + ch] * (x[i] - coef[3 * c + ch]) + coef[2 * c + ch];
  }
}

// ------------------------------------------------------------------ pooling

/// Pooling geometry (backend/cpu/pool.hpp's pool3d_params, as plain values for the device).
struct pool_geom {
  i64 planes, it, ih, iw, ot, oh, ow, kt, kh, kw, st, sh, sw, pt, ph, pw;
  __device__ i64 in_plane() const { return it * ih * iw; }
  __device__ i64 out_plane() const { return ot * oh * ow; }
};

/// One thread per output: the first maximum of the window in (t, h, w) order (NaN wins).
template <class T>
__global__ void max_pool_forward(const T* __restrict__ x, T* __restrict__ y, std::int32_t* __restrict__ argmax,
                                 pool_geom p) {
  const i64 total = p.planes * p.out_plane();
  for (i64 o = i64(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += i64(blockDim.x) * gridDim.x) {
    const i64 q = o / p.out_plane(), r = o % p.out_plane();
    const i64 ot = r / (p.oh * p.ow), oh = (r / p.ow) % p.oh, ow = r % p.ow;
    const T* xq = x + q * p.in_plane();
    // Same rule and order as the CPU kernel: start at -inf, take v when v > best or v is NaN.
    T best = T(-INFINITY);
    i64 best_idx = -1;
    for (i64 a = 0; a < p.kt; ++a) {
      const i64 t = ot * p.st - p.pt + a;
      if (t < 0 || t >= p.it) continue;
      for (i64 b = 0; b < p.kh; ++b) {
        const i64 h = oh * p.sh - p.ph + b;
        if (h < 0 || h >= p.ih) continue;
        for (i64 c = 0; c < p.kw; ++c) {
          const i64 w = ow * p.sw - p.pw + c;
          if (w < 0 || w >= p.iw) continue;
          const i64 idx = (t * p.ih + h) * p.iw + w;
          const T v = xq[idx];
          if (best_idx < 0) best_idx = idx;  // the CPU's initial argmax: the window's first element
          if (v > best || v != v) {
            best = v;
            best_idx = idx;
          }
        }
      }
    }
    y[o] = best;
    argmax[o] = std::int32_t(best_idx < 0 ? 0 : best_idx);
  }
}

/// dx must be zeroed; dx[argmax] += dy.
template <class T>
__global__ void max_pool_backward(const T* __restrict__ dy, const std::int32_t* __restrict__ argmax, T* __restrict__ dx,
                                  pool_geom p) {
  const i64 total = p.planes * p.out_plane();
  for (i64 o = i64(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += i64(blockDim.x) * gridDim.x) {
    const i64 q = o / p.out_plane();
    atomicAdd(dx + q * p.in_plane() + argmax[o], dy[o]);
  }
}

/// PyTorch's divisor share along one axis for output o.
__device__ inline i64 avg_count(i64 o, i64 k, i64 s, i64 pad, i64 in, bool include_pad) {
  const i64 a = o * s - pad;
  const i64 b = min(a + k, in + pad);
  return include_pad ? b - a : min(b, in) - max(a, i64(0));
}

template <class T>
__global__ void avg_pool_forward(const T* __restrict__ x, T* __restrict__ y, pool_geom p, bool include_pad) {
  const i64 total = p.planes * p.out_plane();
  for (i64 o = i64(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += i64(blockDim.x) * gridDim.x) {
    const i64 q = o / p.out_plane(), r = o % p.out_plane();
    const i64 ot = r / (p.oh * p.ow), oh = (r / p.ow) % p.oh, ow = r % p.ow;
    const T* xq = x + q * p.in_plane();
    double s = 0;
    for (i64 a = 0; a < p.kt; ++a) {
      const i64 t = ot * p.st - p.pt + a;
      if (t < 0 || t >= p.it) continue;
      for (i64 b = 0; b < p.kh; ++b) {
        const i64 h = oh * p.sh - p.ph + b;
        if (h < 0 || h >= p.ih) continue;
        for (i64 c = 0; c < p.kw; ++c) {
          const i64 w = ow * p.sw - p.pw + c;
          if (w < 0 || w >= p.iw) continue;
          s += double(xq[(t * p.ih + h) * p.iw + w]);
        }
      }
    }
    const i64 div = avg_count(ot, p.kt, p.st, p.pt, p.it, include_pad) * avg_count(oh, p.kh, p.sh, p.ph, p.ih, include_pad) *
                    avg_count(ow, p.kw, p.sw, p.pw, p.iw, include_pad);
    y[o] = T(s / double(div));
  }
}

/// dx must be zeroed; each output spreads dy/divisor over its window.
template <class T>
__global__ void avg_pool_backward(const T* __restrict__ dy, T* __restrict__ dx, pool_geom p, bool include_pad) {
  const i64 total = p.planes * p.out_plane();
  for (i64 o = i64(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += i64(blockDim.x) * gridDim.x) {
    const i64 q = o / p.out_plane(), r = o % p.out_plane();
    const i64 ot = r / (p.oh * p.ow), oh = (r / p.ow) % p.oh, ow = r % p.ow;
    T* dq = dx + q * p.in_plane();
    const i64 div = avg_count(ot, p.kt, p.st, p.pt, p.it, include_pad) * avg_count(oh, p.kh, p.sh, p.ph, p.ih, include_pad) *
                    avg_count(ow, p.kw, p.sw, p.pw, p.iw, include_pad);
    const T g = T(double(dy[o]) / double(div));
    for (i64 a = 0; a < p.kt; ++a) {
      const i64 t = ot * p.st - p.pt + a;
      if (t < 0 || t >= p.it) continue;
      for (i64 b = 0; b < p.kh; ++b) {
        const i64 h = oh * p.sh - p.ph + b;
        if (h < 0 || h >= p.ih) continue;
        for (i64 c = 0; c < p.kw; ++c) {
          const i64 w = ow * p.sw - p.pw + c;
          if (w < 0 || w >= p.iw) continue;
          atomicAdd(dq + (t * p.ih + h) * p.iw + w, g);
        }
      }
    }
  }
}

/// Adaptive windows: [floor(i*in/out), ceil((i+1)*in/out)).
__device__ inline i64 adaptive_start(i64 i, i64 in, i64 out) { return (i * in) / out; }
__device__ inline i64 adaptive_end(i64 i, i64 in, i64 out) { return ((i + 1) * in + out - 1) / out; }

template <class T>
__global__ void adaptive_avg_pool_forward(const T* __restrict__ x, T* __restrict__ y, pool_geom p) {
  const i64 total = p.planes * p.out_plane();
  for (i64 o = i64(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += i64(blockDim.x) * gridDim.x) {
    const i64 q = o / p.out_plane(), r = o % p.out_plane();
    const i64 ot = r / (p.oh * p.ow), oh = (r / p.ow) % p.oh, ow = r % p.ow;
    const i64 t0 = adaptive_start(ot, p.it, p.ot), t1 = adaptive_end(ot, p.it, p.ot);
    const i64 h0 = adaptive_start(oh, p.ih, p.oh), h1 = adaptive_end(oh, p.ih, p.oh);
    const i64 w0 = adaptive_start(ow, p.iw, p.ow), w1 = adaptive_end(ow, p.iw, p.ow);
    const T* xq = x + q * p.in_plane();
    double s = 0;
    for (i64 t = t0; t < t1; ++t)
      for (i64 h = h0; h < h1; ++h)
        for (i64 w = w0; w < w1; ++w) s += double(xq[(t * p.ih + h) * p.iw + w]);
    y[o] = T(s / double((t1 - t0) * (h1 - h0) * (w1 - w0)));
  }
}

template <class T>
__global__ void adaptive_avg_pool_backward(const T* __restrict__ dy, T* __restrict__ dx, pool_geom p) {
  const i64 total = p.planes * p.out_plane();
  for (i64 o = i64(blockIdx.x) * blockDim.x + threadIdx.x; o < total; o += i64(blockDim.x) * gridDim.x) {
    const i64 q = o / p.out_plane(), r = o % p.out_plane();
    const i64 ot = r / (p.oh * p.ow), oh = (r / p.ow) % p.oh, ow = r % p.ow;
    const i64 t0 = adaptive_start(ot, p.it, p.ot), t1 = adaptive_end(ot, p.it, p.ot);
    const i64 h0 = adaptive_start(oh, p.ih, p.oh), h1 = adaptive_end(oh, p.ih, p.oh);
    const i64 w0 = adaptive_start(ow, p.iw, p.ow), w1 = adaptive_end(ow, p.iw, p.ow);
    T* dq = dx + q * p.in_plane();
    const T g = T(double(dy[o]) / double((t1 - t0) * (h1 - h0) * (w1 - w0)));
    for (i64 t = t0; t < t1; ++t)
      for (i64 h = h0; h < h1; ++h)
        for (i64 w = w0; w < w1; ++w) atomicAdd(dq + (t * p.ih + h) * p.iw + w, g);
  }
}

/// Mean of each plane of s elements; one block per plane.
template <class T>
__global__ void plane_mean(const T* __restrict__ x, T* __restrict__ y, i64 s) {
  __shared__ double shared[32];
  const T* xq = x + i64(blockIdx.x) * s;
  double acc = 0;
  for (i64 i = threadIdx.x; i < s; i += blockDim.x) acc += double(xq[i]);
  acc = block_sum(acc, shared);
  if (threadIdx.x == 0) y[blockIdx.x] = T(acc / double(s));
}

/// dx[q, i] = dy[q] / s.
template <class T>
__global__ void plane_mean_backward(const T* __restrict__ dy, T* __restrict__ dx, i64 planes, i64 s) {
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < planes * s; i += i64(blockDim.x) * gridDim.x)
    dx[i] = T(double(dy[i / s]) / double(s));
}

}  // namespace mscl::cuda_backend::kernels
