/// \file ssl_kernels.cuh
/// \brief Device kernels of the MSCL objective (ssl/): the row pass and gradient scaling of the
///        fused InfoNCE, LMCL's normalisation / scores / gradients, the queue's ring-buffer write,
///        the momentum EMA, FRA's rotation and max-length normalisation of flow, the flows'
///        Middlebury colour coding (augment/flow_color_batch.hpp), row gathers
///        (shuffle-BN), dropout masks (Philox, the same words as core/rng.hpp) and the TPN
///        neck's 3-D resizing. Compiled by nvcc only; the host wrappers are in ssl.hpp.
///
/// Bit-exactness with the CPU where it is cheap: the EMA, the rotation and the normalisations use
/// the `__*_rn` intrinsics so that nvcc cannot contract a·b + c·d into an FMA, which makes
/// ema_update, rotate_flow, enqueue and the dropout mask identical to the CPU code of the same
/// translation unit (nvcc gives the host compiler no -march, so no FMA there either; a
/// -march=native CPU build may contract and differ by an ulp). Losses (exp/log, summation order)
/// are not bit-exact.
#pragma once
#include "elementwise.cuh"

namespace mscl::cuda_backend::kernels {

#define MSCL_SSL_GRID_STRIDE(i, n) \
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += i64(blockDim.x) * gridDim.x)

// Non-contracted arithmetic (the CPU's rounding): a·b and a + b each rounded once.
__device__ inline float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ inline float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ inline double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ inline double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ inline float exp_t(float a) { return expf(a); }
__device__ inline double exp_t(double a) { return ::exp(a); }

// ------------------------------------------------------------------ InfoNCE

/// One block per row i of the B×C logits buffer L (columns 1…K+M already hold the raw dot
/// products). Same steps as the CPU row pass of ssl::info_nce: positive, 1/τ and age weights,
/// own-extra exclusion (column 1 + K + own_extra_offset + i; none when the offset is negative),
/// max, exp, double sum, loss; L's row becomes the softmax probabilities.
template <class T>
__global__ void nce_rows(T* __restrict__ L, const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ w,
                         i64 d, i64 K, i64 M, T inv_tau, i64 own_extra_offset, double* __restrict__ row_loss,
                         int* __restrict__ row_correct) {
  __shared__ double shared[32];
  __shared__ double bcast;
  const i64 i = blockIdx.x, C = 1 + K + M;
  T* row = L + i * C;
  double pos = 0;
  for (i64 c = threadIdx.x; c < d; c += blockDim.x) pos += double(q[i * d + c]) * double(k[i * d + c]);
  pos = block_sum(pos, shared);
  if (threadIdx.x == 0) bcast = pos;
  __syncthreads();
  const T l0 = mul_rn(T(bcast), inv_tau);
  double mx_neg = -INFINITY;
  for (i64 j = 1 + threadIdx.x; j < C; j += blockDim.x) {
    T v = row[j];
    if (j <= K) v = mul_rn(v, w ? mul_rn(w[j - 1], inv_tau) : inv_tau);
    else v = mul_rn(v, inv_tau);
    if (own_extra_offset >= 0 && j == 1 + K + own_extra_offset + i) v = T(-INFINITY);
    row[j] = v;
    mx_neg = fmax(mx_neg, double(v));
  }
  mx_neg = block_max(mx_neg, shared);
  __syncthreads();
  if (threadIdx.x == 0) bcast = mx_neg;
  __syncthreads();
  const T neg_max = T(bcast);
  const T mx = l0 > neg_max ? l0 : neg_max;
  if (threadIdx.x == 0) row[0] = l0;
  __syncthreads();
  double s = 0;
  for (i64 j = threadIdx.x; j < C; j += blockDim.x) {
    const T e = exp_t(T(row[j] - mx));
    row[j] = e;
    s += double(e);
  }
  s = block_sum(s, shared);
  __syncthreads();
  if (threadIdx.x == 0) {
    bcast = s;
    row_loss[i] = double(mx) + ::log(s) - double(l0);
    row_correct[i] = l0 >= neg_max ? 1 : 0;
  }
  __syncthreads();
  const T inv_s = T(1.0 / bcast);
  for (i64 j = threadIdx.x; j < C; j += blockDim.x) row[j] = row[j] * inv_s;
}

/// out[0] = T(Σ row_loss / rows), correct[0] = Σ row_correct, in a fixed order (one block).
template <class T>
__global__ void mean_rows(const double* __restrict__ row_loss, const int* __restrict__ row_correct, i64 rows,
                          T* __restrict__ out, long long* __restrict__ correct) {
  __shared__ double shared[32];
  double s = 0, c = 0;
  for (i64 i = threadIdx.x; i < rows; i += blockDim.x) {
    s += row_loss[i];
    c += double(row_correct[i]);
  }
  s = block_sum(s, shared);
  c = block_sum(c, shared);
  if (threadIdx.x == 0) {
    out[0] = T(s / double(rows));
    correct[0] = (long long)(c + 0.5);
  }
}

/// dL/dlogits in place: column 0 (p − 1)·scale, bank column j p·scale·w_j, extras p·scale, with
/// scale = g/B·(1/τ) read from the device scalar g.
template <class T>
__global__ void nce_grad_scale(T* __restrict__ D, const T* __restrict__ w, const T* __restrict__ g, i64 n, i64 K,
                               i64 C, T inv_tau) {
  const T scale = g[0] / T(n) * inv_tau;
  MSCL_SSL_GRID_STRIDE(t, n * C) {
    const i64 j = t % C;
    if (j == 0) D[t] = (D[t] - T(1)) * scale;
    else if (j <= K && w) D[t] *= scale * w[j - 1];
    else D[t] *= scale;
  }
}

/// dq[i, c] += D[i, 0]·k[i, c] (when dq), dk[i, c] = D[i, 0]·q[i, c] (when dk).
template <class T>
__global__ void nce_positive_grad(const T* __restrict__ D, i64 C, const T* __restrict__ q, const T* __restrict__ k,
                                  T* __restrict__ dq, T* __restrict__ dk, i64 n, i64 d) {
  MSCL_SSL_GRID_STRIDE(t, n * d) {
    const T g0 = D[(t / d) * C];
    if (dq) dq[t] += g0 * k[t];
    if (dk) dk[t] = g0 * q[t];
  }
}

// ------------------------------------------------------------------ LMCL

/// Column t of each sample of a B×C×T tensor, normalised, into rows (b, offset + t) of a
/// B×rows×C buffer; one thread per (b, t).
template <class T>
__global__ void lmcl_normalize(const T* __restrict__ src, i64 nb, i64 C, i64 nt, T* __restrict__ dst,
                               T* __restrict__ norm, i64 rows, i64 offset, double eps) {
  MSCL_SSL_GRID_STRIDE(u, nb * nt) {
    const i64 b = u / nt, t = u % nt;
    double s = 0;
    for (i64 c = 0; c < C; ++c) {
      const double v = src[(b * C + c) * nt + t];
      s += v * v;
    }
    const double n = fmax(::sqrt(s), eps);
    const i64 r = b * rows + offset + t;
    norm[r] = T(n);
    for (i64 c = 0; c < C; ++c) dst[r * C + c] = T(double(src[(b * C + c) * nt + t]) / n);
  }
}

/// Scores, softmax over the J candidates, loss and argmax per (b, t); one thread per row.
template <class T>
__global__ void lmcl_rows(const T* __restrict__ rh, const T* __restrict__ fh, i64 nb, i64 nt, i64 J, i64 C,
                          double inv_tau, T* __restrict__ prob, double* __restrict__ row_loss,
                          int* __restrict__ row_correct) {
  MSCL_SSL_GRID_STRIDE(u, nb * nt) {
    const i64 b = u / nt, t = u % nt;
    const T* r = rh + u * C;
    double mx = -INFINITY, st = 0;
    i64 arg = 0;
    for (i64 j = 0; j < J; ++j) {
      const T* f = fh + (b * J + j) * C;
      double dot = 0;
      for (i64 c = 0; c < C; ++c) dot += double(r[c]) * double(f[c]);
      const double s = dot * inv_tau;
      if (j == t) st = s;
      if (s > mx) {
        mx = s;
        arg = j;
      }
    }
    double z = 0;
    for (i64 j = 0; j < J; ++j) {  // second pass recomputes the scores (J ≤ 16: no local array)
      const T* f = fh + (b * J + j) * C;
      double dot = 0;
      for (i64 c = 0; c < C; ++c) dot += double(r[c]) * double(f[c]);
      z += ::exp(dot * inv_tau - mx);
    }
    const double lse = mx + ::log(z);
    T* p = prob + u * J;
    for (i64 j = 0; j < J; ++j) {
      const T* f = fh + (b * J + j) * C;
      double dot = 0;
      for (i64 c = 0; c < C; ++c) dot += double(r[c]) * double(f[c]);
      p[j] = T(::exp(dot * inv_tau - lse));
    }
    row_loss[u] = lse - st;
    row_correct[u] = arg == t ? 1 : 0;
  }
}

/// d loss / d r̂ for row (b, t): Σ_j ds_j f̂_j with ds_j = (p_j − [j = t])·scale.
template <class T>
__global__ void lmcl_grad_rgb(const T* __restrict__ prob, const T* __restrict__ fh, const T* __restrict__ g, i64 nb,
                              i64 nt, i64 J, i64 C, double inv_tau, T* __restrict__ drh) {
  const double scale = double(g[0]) / double(nb * nt) * inv_tau;
  MSCL_SSL_GRID_STRIDE(u, nb * nt) {
    const i64 b = u / nt, t = u % nt;
    T* dr = drh + u * C;
    for (i64 c = 0; c < C; ++c) dr[c] = T(0);
    for (i64 j = 0; j < J; ++j) {
      const double ds = (double(prob[u * J + j]) - (j == t ? 1.0 : 0.0)) * scale;
      const T* f = fh + (b * J + j) * C;
      for (i64 c = 0; c < C; ++c) dr[c] += T(ds * double(f[c]));
    }
  }
}

/// d loss / d f̂ for candidate (b, j): Σ_t ds_{t,j} r̂_t (t ascending, as the CPU).
template <class T>
__global__ void lmcl_grad_flow(const T* __restrict__ prob, const T* __restrict__ rh, const T* __restrict__ g, i64 nb,
                               i64 nt, i64 J, i64 C, double inv_tau, T* __restrict__ dfh) {
  const double scale = double(g[0]) / double(nb * nt) * inv_tau;
  MSCL_SSL_GRID_STRIDE(u, nb * J) {
    const i64 b = u / J, j = u % J;
    T* df = dfh + u * C;
    for (i64 c = 0; c < C; ++c) df[c] = T(0);
    for (i64 t = 0; t < nt; ++t) {
      const double ds = (double(prob[(b * nt + t) * J + j]) - (j == t ? 1.0 : 0.0)) * scale;
      const T* r = rh + (b * nt + t) * C;
      for (i64 c = 0; c < C; ++c) df[c] += T(ds * double(r[c]));
    }
  }
}

/// Gradient through y = x / max(‖x‖, eps) for rows (b, offset + t), into a B×C×T tensor.
template <class T>
__global__ void lmcl_normalize_backward(const T* __restrict__ dy, const T* __restrict__ y, const T* __restrict__ norm,
                                        i64 nb, i64 C, i64 nt, i64 rows, i64 offset, double eps, T* __restrict__ dx) {
  MSCL_SSL_GRID_STRIDE(u, nb * nt) {
    const i64 b = u / nt, t = u % nt;
    const i64 r = b * rows + offset + t;
    const double n = double(norm[r]);
    double dot = 0;
    if (!(n <= eps))
      for (i64 c = 0; c < C; ++c) dot += double(y[r * C + c]) * double(dy[r * C + c]);
    for (i64 c = 0; c < C; ++c) dx[(b * C + c) * nt + t] = T((double(dy[r * C + c]) - dot * double(y[r * C + c])) / n);
  }
}

// ------------------------------------------------------------------ queue, EMA, row gathers

/// queue[c, (ptr + i) mod K] = keys[i, c] (D×K ring buffer, B×D keys).
template <class T>
__global__ void queue_write(T* __restrict__ queue, const T* __restrict__ keys, i64 nb, i64 D, i64 K, i64 ptr) {
  MSCL_SSL_GRID_STRIDE(t, nb * D) {
    const i64 i = t / D, c = t % D;
    queue[c * K + (ptr + i) % K] = keys[t];
  }
}

/// k = k·mk + q·mq, each product and the sum rounded once (no FMA), as the CPU computes it.
template <class T>
__global__ void ema(T* __restrict__ k, const T* __restrict__ q, i64 n, T mk, T mq) {
  MSCL_SSL_GRID_STRIDE(i, n) k[i] = add_rn(mul_rn(k[i], mk), mul_rn(q[i], mq));
}

/// out[i, :] = x[index[i], :] for rows of `per` elements.
template <class T>
__global__ void gather_rows(const T* __restrict__ x, const long long* __restrict__ index, T* __restrict__ out, i64 rows,
                            i64 per) {
  MSCL_SSL_GRID_STRIDE(t, rows * per) out[t] = x[index[t / per] * per + t % per];
}

// ------------------------------------------------------------------ FRA

/// Sample b's (u, v) planes rotated by the angle with cosine cs[b] and (signed) sine sn[b].
template <class T>
__global__ void rotate_planes(const T* __restrict__ in, T* __restrict__ out, i64 nb, i64 inner,
                              const double* __restrict__ cs, const double* __restrict__ sn) {
  MSCL_SSL_GRID_STRIDE(t, nb * inner) {
    const i64 b = t / inner, i = t % inner;
    const double c = cs[b], s = sn[b];
    const double uu = in[b * 2 * inner + i], vv = in[b * 2 * inner + inner + i];
    out[b * 2 * inner + i] = T(sub_rn(mul_rn(uu, c), mul_rn(vv, s)));
    out[b * 2 * inner + inner + i] = T(add_rn(mul_rn(uu, s), mul_rn(vv, c)));
  }
}

/// One block per (sample, map): divide the map by its max ‖(u, v)‖ + eps.
template <class T>
__global__ void flow_max_normalize(const T* __restrict__ in, T* __restrict__ out, i64 maps, i64 hw, i64 inner,
                                   double eps) {
  __shared__ double shared[32];
  __shared__ double bcast;
  const i64 k = blockIdx.x, b = k / maps, m = k % maps;
  const T* u = in + b * 2 * inner + m * hw;
  const T* v = u + inner;
  T* ou = out + b * 2 * inner + m * hw;
  T* ov = ou + inner;
  double mx = 0;
  for (i64 i = threadIdx.x; i < hw; i += blockDim.x)
    mx = fmax(mx, ::sqrt(add_rn(mul_rn(double(u[i]), double(u[i])), mul_rn(double(v[i]), double(v[i])))));
  mx = block_max(mx, shared);
  if (threadIdx.x == 0) bcast = 1.0 / add_rn(mx, eps);
  __syncthreads();
  const double inv = bcast;
  for (i64 i = threadIdx.x; i < hw; i += blockDim.x) {
    ou[i] = T(mul_rn(double(u[i]), inv));
    ov[i] = T(mul_rn(double(v[i]), inv));
  }
}

// ------------------------------------------------------------------ flow colour coding

/// Middlebury wheel colour k (0…54), channel c, 0…255: the six ramps of flow::colorwheel() with
/// the same integer floors (r_k = floor(255 k / n)).
__device__ inline float wheel_channel(int k, int c) {
  auto ramp = [](int i, int n) { return float((255 * i) / n); };
  float rgb[3];
  if (k < 15) { rgb[0] = 255.f; rgb[1] = ramp(k, 15); rgb[2] = 0.f; }
  else if ((k -= 15) < 6) { rgb[0] = 255.f - ramp(k, 6); rgb[1] = 255.f; rgb[2] = 0.f; }
  else if ((k -= 6) < 4) { rgb[0] = 0.f; rgb[1] = 255.f; rgb[2] = ramp(k, 4); }
  else if ((k -= 4) < 11) { rgb[0] = 0.f; rgb[1] = 255.f - ramp(k, 11); rgb[2] = 255.f; }
  else if ((k -= 11) < 13) { rgb[0] = ramp(k, 13); rgb[1] = 0.f; rgb[2] = 255.f; }
  else { k -= 13; rgb[0] = 255.f; rgb[1] = 0.f; rgb[2] = 255.f - ramp(k, 6); }
  return rgb[c];
}

/// augment::detail::fast_atan2 with every product and sum rounded once (no FMA), as the CPU
/// evaluates it without -march flags.
__device__ inline float fast_atan2_rn(float y, float x) {
  const float ax = fabsf(x), ay = fabsf(y);
  const float mx = fmaxf(ax, ay), mn = fminf(ax, ay);
  const float z = mx > 0.f ? __fdiv_rn(mn, mx) : 0.f, z2 = mul_rn(z, z);
  float p = -0.004073271527886391f;
  p = add_rn(mul_rn(p, z2), 0.021946480497717857f);
  p = add_rn(mul_rn(p, z2), -0.05606299638748169f);
  p = add_rn(mul_rn(p, z2), 0.09656243771314621f);
  p = add_rn(mul_rn(p, z2), -0.1391579806804657f);
  p = add_rn(mul_rn(p, z2), 0.19948507845401764f);
  p = add_rn(mul_rn(p, z2), -0.3333010673522949f);
  p = add_rn(mul_rn(p, z2), 0.999999463558197f);
  p = mul_rn(p, z);
  if (ay > ax) p = __fsub_rn(1.57079632679489662f, p);
  if (signbit(x)) p = __fsub_rn(3.14159265358979324f, p);
  return signbit(y) ? -p : p;
}

/// flow::flow_color for every vector of nb samples (u plane, v plane: `inner` values each) into
/// three planes per sample; the same float expressions, rounded step by step.
template <class T>
__global__ void flow_color_code(const T* __restrict__ in, T* __restrict__ out, i64 nb, i64 inner, bool fast) {
  MSCL_SSL_GRID_STRIDE(t, nb * inner) {
    const i64 b = t / inner, i = t % inner;
    const float u = float(in[b * 2 * inner + i]), v = float(in[b * 2 * inner + inner + i]);
    const float rho = __fsqrt_rn(add_rn(mul_rn(u, u), mul_rn(v, v)));
    const float a = __fdiv_rn(fast ? fast_atan2_rn(-v, -u) : atan2f(-v, -u), 3.14159265358979323846f);
    const float fk = mul_rn(__fdiv_rn(add_rn(a, 1.f), 2.f), 54.f);
    int k0 = int(floorf(fk));
    k0 = k0 < 0 ? 0 : (k0 > 54 ? 54 : k0);
    const int k1 = k0 + 1 == 55 ? 0 : k0 + 1;
    const float f = __fsub_rn(fk, float(k0));
    for (int c = 0; c < 3; ++c) {
      float col = __fdiv_rn(add_rn(mul_rn(__fsub_rn(1.f, f), wheel_channel(k0, c)), mul_rn(f, wheel_channel(k1, c))), 255.f);
      if (rho <= 1.f) col = __fsub_rn(1.f, mul_rn(rho, __fsub_rn(1.f, col)));
      else col = mul_rn(col, 0.75f);
      out[b * 3 * inner + c * inner + i] = T(__fdiv_rn(floorf(mul_rn(255.f, col)), 255.f));
    }
  }
}

// ------------------------------------------------------------------ dropout

/// core/rng.hpp's philox4x32_10 and philox_uniform, word for word.
__device__ inline double philox_uniform_dev(unsigned long long seed, unsigned long long stream,
                                            unsigned long long i) {
  const unsigned long long block = i / 4;
  unsigned c0 = unsigned(block), c1 = unsigned(block >> 32), c2 = unsigned(stream), c3 = unsigned(stream >> 32);
  unsigned k0 = unsigned(seed), k1 = unsigned(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const unsigned long long p0 = (unsigned long long)0xD2511F53u * c0;
    const unsigned long long p1 = (unsigned long long)0xCD9E8D57u * c2;
    const unsigned n0 = unsigned(p1 >> 32) ^ c1 ^ k0, n1 = unsigned(p1), n2 = unsigned(p0 >> 32) ^ c3 ^ k1,
                   n3 = unsigned(p0);
    c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  const unsigned words[4] = {c0, c1, c2, c3};
  return (double(words[i % 4]) + 0.5) * (1.0 / 4294967296.0);
}

/// mask[i] = keep_scale when philox_uniform(seed, stream, i) >= p, else 0.
template <class T>
__global__ void dropout_mask(T* __restrict__ mask, i64 n, unsigned long long seed, unsigned long long stream, double p,
                             T keep_scale) {
  MSCL_SSL_GRID_STRIDE(i, n) mask[i] = philox_uniform_dev(seed, stream, (unsigned long long)i) >= p ? keep_scale : T(0);
}

// ------------------------------------------------------------------ resize (TPN neck)

/// Geometry of one 3-D resize; the per-axis tables (source indices, weights) live on the device.
struct resize_geom {
  i64 planes, it, ih, iw, ot, oh, ow;
};

/// Nearest: y[q, a, b, c] = x[q, st[a], sh[b], sw[c]]; backward scatters with atomics.
template <class T>
__global__ void nearest3d(const T* __restrict__ x, T* __restrict__ y, resize_geom g, const long long* __restrict__ st,
                          const long long* __restrict__ sh, const long long* __restrict__ sw) {
  MSCL_SSL_GRID_STRIDE(o, g.planes * g.ot * g.oh * g.ow) {
    const i64 ow = o % g.ow, oh = (o / g.ow) % g.oh, ot = (o / (g.ow * g.oh)) % g.ot, q = o / (g.ow * g.oh * g.ot);
    y[o] = x[((q * g.it + st[ot]) * g.ih + sh[oh]) * g.iw + sw[ow]];
  }
}
template <class T>
__global__ void nearest3d_backward(const T* __restrict__ gy, T* __restrict__ gx, resize_geom g,
                                   const long long* __restrict__ st, const long long* __restrict__ sh,
                                   const long long* __restrict__ sw) {
  MSCL_SSL_GRID_STRIDE(o, g.planes * g.ot * g.oh * g.ow) {
    const i64 ow = o % g.ow, oh = (o / g.ow) % g.oh, ot = (o / (g.ow * g.oh)) % g.ot, q = o / (g.ow * g.oh * g.ot);
    atomicAdd(gx + ((q * g.it + st[ot]) * g.ih + sh[oh]) * g.iw + sw[ow], gy[o]);
  }
}

/// Per-axis linear tables: idx[0..out) = i0, idx[out..2out) = i1; lam likewise (l0, l1).
template <class T>
__global__ void trilinear3d(const T* __restrict__ x, T* __restrict__ y, resize_geom g, const long long* __restrict__ it,
                            const T* __restrict__ lt, const long long* __restrict__ ih, const T* __restrict__ lh,
                            const long long* __restrict__ iw, const T* __restrict__ lw) {
  MSCL_SSL_GRID_STRIDE(o, g.planes * g.ot * g.oh * g.ow) {
    const i64 ow = o % g.ow, oh = (o / g.ow) % g.oh, ot = (o / (g.ow * g.oh)) % g.ot, q = o / (g.ow * g.oh * g.ot);
    const T* xq = x + q * g.it * g.ih * g.iw;
    const i64 hw = g.ih * g.iw;
    const T* x00 = xq + it[ot] * hw + ih[oh] * g.iw;
    const T* x01 = xq + it[ot] * hw + ih[g.oh + oh] * g.iw;
    const T* x10 = xq + it[g.ot + ot] * hw + ih[oh] * g.iw;
    const T* x11 = xq + it[g.ot + ot] * hw + ih[g.oh + oh] * g.iw;
    const T lt0 = lt[ot], lt1 = lt[g.ot + ot], lh0 = lh[oh], lh1 = lh[g.oh + oh];
    const i64 a = iw[ow], b = iw[g.ow + ow];
    const T u = lw[ow], v = lw[g.ow + ow];
    y[o] = lt0 * (lh0 * (u * x00[a] + v * x00[b]) + lh1 * (u * x01[a] + v * x01[b])) +
           lt1 * (lh0 * (u * x10[a] + v * x10[b]) + lh1 * (u * x11[a] + v * x11[b]));
  }
}
template <class T>
__global__ void trilinear3d_backward(const T* __restrict__ gy, T* __restrict__ gx, resize_geom g,
                                     const long long* __restrict__ it, const T* __restrict__ lt,
                                     const long long* __restrict__ ih, const T* __restrict__ lh,
                                     const long long* __restrict__ iw, const T* __restrict__ lw) {
  MSCL_SSL_GRID_STRIDE(o, g.planes * g.ot * g.oh * g.ow) {
    const i64 ow = o % g.ow, oh = (o / g.ow) % g.oh, ot = (o / (g.ow * g.oh)) % g.ot, q = o / (g.ow * g.oh * g.ot);
    T* gq = gx + q * g.it * g.ih * g.iw;
    const i64 hw = g.ih * g.iw;
    const T go = gy[o];
    const i64 t0 = it[ot] * hw, t1 = it[g.ot + ot] * hw, h0 = ih[oh] * g.iw, h1 = ih[g.oh + oh] * g.iw;
    const i64 a = iw[ow], b = iw[g.ow + ow];
    const T wt[2] = {lt[ot], lt[g.ot + ot]}, wh[2] = {lh[oh], lh[g.oh + oh]}, ww[2] = {lw[ow], lw[g.ow + ow]};
    const i64 ot_[2] = {t0, t1}, oh_[2] = {h0, h1}, ow_[2] = {a, b};
    for (int x = 0; x < 2; ++x)
      for (int y2 = 0; y2 < 2; ++y2)
        for (int z = 0; z < 2; ++z) atomicAdd(gq + ot_[x] + oh_[y2] + ow_[z], go * wt[x] * wh[y2] * ww[z]);
  }
}

#undef MSCL_SSL_GRID_STRIDE

}  // namespace mscl::cuda_backend::kernels
