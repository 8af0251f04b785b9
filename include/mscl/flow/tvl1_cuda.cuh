/// \file tvl1_cuda.cuh
/// \brief The kernels of the CUDA TV-L1 (`tvl1_cuda.hpp`): pyramid (blur, bilinear resize), warp,
///        median filter, primal step, dual step and the convergence bookkeeping, each the
///        device-side mirror of one loop of the CPU solver (`tvl1.hpp`), with the same formulas,
///        border rules and evaluation order, for a batch of frame pairs at once.
///
/// Layout: every plane is dense row-major h x w (no padding); a batch of B pairs stores its planes
/// back to back ([B][h][w]) and every kernel takes the pair from blockIdx.z, so one launch serves
/// the whole batch. The CPU's padded borders become explicit index rules here: p is zero at column
/// -1 and row -1, u repeats its last column and row (zero forward difference at the far borders).
///
/// Convergence without host round trips: each pair has three error slots (double) per batch,
/// err[slot * B + b]. Iteration k of a warp accumulates its sum |u_new - u_old|^2 into slot k % 3,
/// reads the previous iteration's sum from slot (k + 2) % 3 and runs only while that is > stop;
/// the dual kernel of iteration k clears slot (k + 1) % 3 for the next one. A pair that stopped
/// leaves its current slot at 0 (<= stop), so it stays stopped for the rest of the warp: the
/// CPU's `err > stop` test on the outer and inner loops, per pair, with no host synchronisation.
#pragma once
#if !defined(__CUDACC__)
#error "mscl/flow/tvl1_cuda.cuh is compiled by nvcc only"
#endif
#include <cuda_runtime.h>

namespace mscl::flow::cuda_kernels {

constexpr int block_x = 32, block_y = 8;  // 256 threads: one warp per row segment
constexpr double err_start = 1e300;       // "no iteration yet" (the CPU's err = 1e300)

/// Gaussian weights of one pyramid blur (radius <= 31), passed by value (no constant-memory
/// symbol, so several solvers with different options may run at once).
struct blur_kernel {
  float k[64];
  int r;
};

__device__ __forceinline__ int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

/// Horizontal pass of the separable blur, replicate border (tvl1.hpp gaussian_blur, first loop).
__global__ void blur_rows(const float* __restrict src, float* __restrict dst, int h, int w, blur_kernel g) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= w || y >= h) return;
  const long long base = (long long)blockIdx.z * h * w + (long long)y * w;
  float acc = 0.f;
  for (int k = -g.r; k <= g.r; ++k) acc += g.k[k + g.r] * src[base + clampi(x + k, 0, w - 1)];
  dst[base + x] = acc;
}

/// Vertical pass, replicate border, accumulated in the CPU's order (k = -r .. r).
__global__ void blur_cols(const float* __restrict src, float* __restrict dst, int h, int w, blur_kernel g) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= w || y >= h) return;
  const long long plane = (long long)blockIdx.z * h * w;
  float acc = 0.f;
  for (int k = -g.r; k <= g.r; ++k) acc += g.k[k + g.r] * src[plane + (long long)clampi(y + k, 0, h - 1) * w + x];
  dst[plane + (long long)y * w + x] = acc;
}

/// Bilinear resize with pixel-centre alignment, values multiplied by `mul` (tvl1.hpp
/// resize_bilinear). src planes sh x sw, dst planes dh x dw, both dense, one per blockIdx.z.
__global__ void resize_bilinear(const float* __restrict src, int sh, int sw, float* __restrict dst, int dh, int dw,
                                float mul) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= dw || y >= dh) return;
  const float fy = float(sh) / float(dh), fx = float(sw) / float(dw);
  const float sy = fminf(fmaxf((y + 0.5f) * fy - 0.5f, 0.f), float(sh - 1));
  const float sx = fminf(fmaxf((x + 0.5f) * fx - 0.5f, 0.f), float(sw - 1));
  const int y0 = min(int(sy), sh - 1), y1 = min(y0 + 1, sh - 1);
  const int x0 = min(int(sx), sw - 1), x1 = min(x0 + 1, sw - 1);
  const float ay = sy - y0, ax = sx - x0;
  const float* s = src + (long long)blockIdx.z * sh * sw;
  const float* r0 = s + (long long)y0 * sw;
  const float* r1 = s + (long long)y1 * sw;
  const float top = r0[x0] + ax * (r0[x1] - r0[x0]);
  const float bot = r1[x0] + ax * (r1[x1] - r1[x0]);
  dst[(long long)blockIdx.z * dh * dw + (long long)y * dw + x] = mul * (top + ay * (bot - top));
}

/// Catmull-Rom weights and derivatives (tvl1.hpp cubic_weights).
__device__ __forceinline__ void cubic_weights(float t, float* wt, float* dw) {
  const float t2 = t * t, t3 = t2 * t;
  wt[0] = 0.5f * (-t3 + 2.f * t2 - t);
  wt[1] = 0.5f * (3.f * t3 - 5.f * t2 + 2.f);
  wt[2] = 0.5f * (-3.f * t3 + 4.f * t2 + t);
  wt[3] = 0.5f * (t3 - t2);
  dw[0] = 0.5f * (-3.f * t2 + 4.f * t - 1.f);
  dw[1] = 0.5f * (9.f * t2 - 10.f * t);
  dw[2] = 0.5f * (-9.f * t2 + 8.f * t + 1.f);
  dw[3] = 0.5f * (3.f * t2 - 2.f * t);
}

/// Warp data of one level (all [B][h][w]).
struct warp_planes {
  float *ix, *iy, *rc, *gr, *ig;
};

/// Warps I1 by the current flow (tvl1.hpp warp_pixel): bicubic value and gradient of the same
/// interpolant, no data term where the target leaves I1. Also starts the warp's convergence
/// bookkeeping: previous error = 1e300 (slot 2), current error = 0 (slot 0).
__global__ void warp(const float* __restrict i0, const float* __restrict i1, const float* __restrict u1,
                     const float* __restrict u2, warp_planes W, int h, int w, double* err, int batch) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  const int b = blockIdx.z;
  if (x == 0 && y == 0) {
    err[2 * batch + b] = err_start;
    err[b] = 0.0;
  }
  if (x >= w || y >= h) return;
  const long long plane = (long long)b * h * w, o = plane + (long long)y * w + x;
  const float a1 = u1[o], a2 = u2[o];
  const float fx = x + a1, fy = y + a2;
  if (!(fx >= 0.f && fx <= w - 1 && fy >= 0.f && fy <= h - 1)) {
    W.ix[o] = W.iy[o] = W.rc[o] = W.gr[o] = W.ig[o] = 0.f;
    return;
  }
  const int x0 = min(int(fx), w - 1), y0 = min(int(fy), h - 1);
  float wx[4], wy[4], dx[4], dy[4];
  cubic_weights(fx - x0, wx, dx);
  cubic_weights(fy - y0, wy, dy);
  int xs[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) xs[k] = clampi(x0 + k - 1, 0, w - 1);
  const float* img = i1 + plane;
  float sv = 0.f, sx = 0.f, sy = 0.f;
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const float* q = img + (long long)clampi(y0 + j - 1, 0, h - 1) * w;
    float r = 0.f, rd = 0.f;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float v = __ldg(q + xs[k]);
      r += wx[k] * v;
      rd += dx[k] * v;
    }
    sv += wy[j] * r;
    sy += dy[j] * r;
    sx += wy[j] * rd;
  }
  const float g = sx * sx + sy * sy;
  W.ix[o] = sx;
  W.iy[o] = sy;
  W.rc[o] = sv - sx * a1 - sy * a2 - i0[o];
  W.gr[o] = g;
  W.ig[o] = g > 1e-10f ? 1.f / g : 0.f;
}

/// Whether pair b still iterates: the previous iteration's error is above the stop value.
__device__ __forceinline__ bool running(const double* prev, int b, double stop) { return prev[b] > stop; }

/// K x K median of u1 and u2 into m1 and m2 (replicate border), for running pairs only; counts the
/// filter pass. Selection: the K*K values in registers, a partial exchange sort that places the
/// (K*K/2 + 1) smallest in order; exact, so it equals the CPU's selection network on every input
/// without NaN.
template <int K>
__global__ void median(const float* __restrict u1, const float* __restrict u2, float* __restrict m1,
                       float* __restrict m2, int h, int w, const double* prev, double stop,
                       unsigned long long* medians) {
  const int b = blockIdx.z;
  if (!running(prev, b, stop)) return;
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x == 0 && y == 0) ++medians[b];
  if (x >= w || y >= h) return;
  constexpr int r = K / 2, n = K * K, mid = n / 2;
  const long long plane = (long long)b * h * w;
  for (int c = 0; c < 2; ++c) {
    const float* src = (c == 0 ? u1 : u2) + plane;
    float v[n];
#pragma unroll
    for (int j = 0; j < K; ++j) {
      const float* row = src + (long long)clampi(y + j - r, 0, h - 1) * w;
#pragma unroll
      for (int i = 0; i < K; ++i) v[j * K + i] = row[clampi(x + i - r, 0, w - 1)];
    }
#pragma unroll
    for (int i = 0; i <= mid; ++i)
#pragma unroll
      for (int j = i + 1; j < n; ++j) {
        const float a = v[i], e = v[j];
        v[i] = fminf(a, e);
        v[j] = fmaxf(a, e);
      }
    (c == 0 ? m1 : m2)[plane + (long long)y * w + x] = v[mid];
  }
}

/// u <- m for running pairs (the CPU swaps the median output into place).
__global__ void copy_back(const float* __restrict m1, const float* __restrict m2, float* __restrict u1,
                          float* __restrict u2, int n, const double* prev, double stop) {
  const int b = blockIdx.z;
  if (!running(prev, b, stop)) return;
  const long long base = (long long)b * n;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    u1[base + i] = m1[base + i];
    u2[base + i] = m2[base + i];
  }
}

/// Dual planes of one level (all [B][h][w]).
struct dual_planes {
  float *p11, *p12, *p21, *p22;
};

/// Block-wide float sum of `v`, then one double atomic add per block (the CPU sums a row in float
/// and rows in double; the orders differ, the precision class does not).
__device__ __forceinline__ void block_add(float v, double* target) {
  __shared__ float part[block_x * block_y / 32];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int t = threadIdx.y * blockDim.x + threadIdx.x;
  if ((t & 31) == 0) part[t >> 5] = v;
  __syncthreads();
  if (t == 0) {
    float s = 0.f;
    for (int i = 0; i < int(blockDim.x * blockDim.y + 31) / 32; ++i) s += part[i];
    atomicAdd(target, double(s));
  }
}

/// Primal step (tvl1.hpp primal_row): thresholding of the linearised data term, divergence of p
/// (zero at column -1 and row -1), new u; adds sum (du1^2 + du2^2) to cur[b]; counts the iteration.
/// Every thread of a running pair's block reaches block_add (no early return after the pair test).
__global__ void primal(float* __restrict u1, float* __restrict u2, dual_planes P, warp_planes W, int h, int w,
                       float lt, float theta, const double* prev, double* cur, double stop,
                       unsigned long long* iterations) {
  const int b = blockIdx.z;
  if (!running(prev, b, stop)) return;
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x == 0 && y == 0) ++iterations[b];
  float e = 0.f;
  if (x < w && y < h) {
    const long long o = (long long)b * h * w + (long long)y * w + x;
    const float a1 = u1[o], a2 = u2[o];
    const float gx = W.ix[o], gy = W.iy[o];
    const float rho = W.rc[o] + gx * a1 + gy * a2;
    const float thr = lt * W.gr[o];
    const float inside = -rho * W.ig[o];
    const float fi = rho < -thr ? lt : (rho > thr ? -lt : inside);
    const float p11l = x > 0 ? P.p11[o - 1] : 0.f, p21l = x > 0 ? P.p21[o - 1] : 0.f;
    const float p12u = y > 0 ? P.p12[o - w] : 0.f, p22u = y > 0 ? P.p22[o - w] : 0.f;
    const float d1 = P.p11[o] - p11l + P.p12[o] - p12u;
    const float d2 = P.p21[o] - p21l + P.p22[o] - p22u;
    const float c1 = fi * gx + theta * d1;
    const float c2 = fi * gy + theta * d2;
    u1[o] = a1 + c1;
    u2[o] = a2 + c2;
    e = c1 * c1 + c2 * c2;
  }
  block_add(e, cur + b);
}

/// Dual step (tvl1.hpp dual_row) from the new u; forward differences are zero past the last
/// column and row. Clears next[b] (the next iteration's error slot) for every pair, running or not.
__global__ void dual(const float* __restrict u1, const float* __restrict u2, dual_planes P, int h, int w,
                     float taut, const double* prev, double* next, double stop) {
  const int b = blockIdx.z;
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x == 0 && y == 0) next[b] = 0.0;
  if (!running(prev, b, stop) || x >= w || y >= h) return;
  const long long o = (long long)b * h * w + (long long)y * w + x;
  const long long ox = x + 1 < w ? o + 1 : o, oy = y + 1 < h ? o + w : o;
  const float a1 = u1[o], a2 = u2[o];
  const float u1x = u1[ox] - a1, u1y = u1[oy] - a1;
  const float u2x = u2[ox] - a2, u2y = u2[oy] - a2;
  const float ng1 = 1.f / (1.f + taut * sqrtf(u1x * u1x + u1y * u1y));
  const float ng2 = 1.f / (1.f + taut * sqrtf(u2x * u2x + u2y * u2y));
  P.p11[o] = (P.p11[o] + taut * u1x) * ng1;
  P.p12[o] = (P.p12[o] + taut * u1y) * ng1;
  P.p21[o] = (P.p21[o] + taut * u2x) * ng2;
  P.p22[o] = (P.p22[o] + taut * u2y) * ng2;
}

/// Number of pairs still running (for the host's non-blocking early exit); one block.
__global__ void count_running(const double* prev, int batch, double stop, int* out) {
  __shared__ int n;
  if (threadIdx.x == 0) n = 0;
  __syncthreads();
  for (int b = threadIdx.x; b < batch; b += blockDim.x)
    if (prev[b] > stop) atomicAdd(&n, 1);
  __syncthreads();
  if (threadIdx.x == 0) *out = n;
}

}  // namespace mscl::flow::cuda_kernels
