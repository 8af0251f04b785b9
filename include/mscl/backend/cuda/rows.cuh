/// \file rows.cuh
/// \brief Device kernels for axis reductions and row-wise losses: sum along an axis and its
///        broadcast, column sums (linear's bias gradient), log-softmax and cross-entropy (one
///        block per row), L2 normalisation along an axis. Accumulation is in double, as on the
///        CPU. Compiled by nvcc only.
#pragma once
#include "elementwise.cuh"

namespace mscl::cuda_backend::kernels {

/// out[i, j] = sum_k x[(i*n + k)*inner + j]; one thread per (i, j).
template <class T>
__global__ void sum_axis(const T* __restrict__ x, T* __restrict__ out, i64 outer, i64 n, i64 inner) {
  for (i64 t = i64(blockIdx.x) * blockDim.x + threadIdx.x; t < outer * inner; t += i64(blockDim.x) * gridDim.x) {
    const i64 i = t / inner, j = t % inner;
    double s = 0;
    for (i64 k = 0; k < n; ++k) s += double(x[(i * n + k) * inner + j]);
    out[t] = T(s);
  }
}

/// gx[(i*n + k)*inner + j] = g[i*inner + j].
template <class T>
__global__ void broadcast_axis(const T* __restrict__ g, T* __restrict__ gx, i64 outer, i64 n, i64 inner) {
  for (i64 t = i64(blockIdx.x) * blockDim.x + threadIdx.x; t < outer * n * inner; t += i64(blockDim.x) * gridDim.x) {
    const i64 j = t % inner, i = t / (n * inner);
    gx[t] = g[i * inner + j];
  }
}

/// log_softmax of each row of an n x c matrix; one block per row.
template <class T>
__global__ void log_softmax_rows(const T* __restrict__ x, T* __restrict__ out, i64 c) {
  __shared__ double shared[32];
  const T* row = x + i64(blockIdx.x) * c;
  T* o = out + i64(blockIdx.x) * c;
  double mx = -INFINITY;
  for (i64 j = threadIdx.x; j < c; j += blockDim.x) mx = fmax(mx, double(row[j]));
  mx = block_max(mx, shared);
  __shared__ double bcast;
  if (threadIdx.x == 0) bcast = mx;
  __syncthreads();
  mx = bcast;
  double s = 0;
  for (i64 j = threadIdx.x; j < c; j += blockDim.x) s += ::exp(double(row[j]) - mx);
  s = block_sum(s, shared);
  if (threadIdx.x == 0) bcast = mx + ::log(s);
  __syncthreads();
  const double lse = bcast;
  for (i64 j = threadIdx.x; j < c; j += blockDim.x) o[j] = T(double(row[j]) - lse);
}

/// Backward of log_softmax: gx = g - exp(lp) * sum(g) per row.
template <class T>
__global__ void log_softmax_rows_backward(const T* __restrict__ g, const T* __restrict__ lp, T* __restrict__ gx,
                                          i64 c) {
  __shared__ double shared[32];
  __shared__ double bcast;
  const i64 base = i64(blockIdx.x) * c;
  double s = 0;
  for (i64 j = threadIdx.x; j < c; j += blockDim.x) s += double(g[base + j]);
  s = block_sum(s, shared);
  if (threadIdx.x == 0) bcast = s;
  __syncthreads();
  s = bcast;
  for (i64 j = threadIdx.x; j < c; j += blockDim.x)
    gx[base + j] = T(double(g[base + j]) - ::exp(double(lp[base + j])) * s);
}

/// Cross-entropy rows: prob = softmax(row), *loss_acc += lse - row[label] (double, atomic).
template <class T>
__global__ void cross_entropy_rows(const T* __restrict__ x, const long long* __restrict__ labels, T* __restrict__ prob,
                                   double* __restrict__ loss_acc, i64 c) {
  __shared__ double shared[32];
  __shared__ double bcast;
  const T* row = x + i64(blockIdx.x) * c;
  T* p = prob + i64(blockIdx.x) * c;
  double mx = -INFINITY;
  for (i64 j = threadIdx.x; j < c; j += blockDim.x) mx = fmax(mx, double(row[j]));
  mx = block_max(mx, shared);
  if (threadIdx.x == 0) bcast = mx;
  __syncthreads();
  mx = bcast;
  double s = 0;
  for (i64 j = threadIdx.x; j < c; j += blockDim.x) s += ::exp(double(row[j]) - mx);
  s = block_sum(s, shared);
  if (threadIdx.x == 0) bcast = mx + ::log(s);
  __syncthreads();
  const double lse = bcast;
  for (i64 j = threadIdx.x; j < c; j += blockDim.x) p[j] = T(::exp(double(row[j]) - lse));
  if (threadIdx.x == 0) atomicAdd(loss_acc, lse - double(row[labels[blockIdx.x]]));
}

/// Cross-entropy backward: gx = (prob - onehot) * g[0] / n.
template <class T>
__global__ void cross_entropy_backward(const T* __restrict__ prob, const long long* __restrict__ labels,
                                       const T* __restrict__ g, T* __restrict__ gx, i64 n, i64 c) {
  for (i64 t = i64(blockIdx.x) * blockDim.x + threadIdx.x; t < n * c; t += i64(blockDim.x) * gridDim.x) {
    const i64 i = t / c, j = t % c;
    const T scale = g[0] / T(n);
    gx[t] = prob[t] * scale - (labels[i] == j ? scale : T(0));
  }
}

/// L2 normalisation along the middle axis of (outer, n, inner); one thread per (i, j).
template <class T>
__global__ void l2_normalize_axis(const T* __restrict__ x, T* __restrict__ out, T* __restrict__ norms, i64 outer,
                                  i64 n, i64 inner, double eps) {
  for (i64 t = i64(blockIdx.x) * blockDim.x + threadIdx.x; t < outer * inner; t += i64(blockDim.x) * gridDim.x) {
    const i64 i = t / inner, j = t % inner;
    double s = 0;
    for (i64 k = 0; k < n; ++k) {
      const double v = double(x[(i * n + k) * inner + j]);
      s += v * v;
    }
    const T nrm = T(fmax(::sqrt(s), eps));
    norms[t] = nrm;
    for (i64 k = 0; k < n; ++k) out[(i * n + k) * inner + j] = x[(i * n + k) * inner + j] / nrm;
  }
}

/// Backward: gx = (g - y (y.g)) / norm, or g / norm where the norm was clamped to eps.
template <class T>
__global__ void l2_normalize_axis_backward(const T* __restrict__ g, const T* __restrict__ y,
                                           const T* __restrict__ norms, T* __restrict__ gx, i64 outer, i64 n,
                                           i64 inner, double eps) {
  for (i64 t = i64(blockIdx.x) * blockDim.x + threadIdx.x; t < outer * inner; t += i64(blockDim.x) * gridDim.x) {
    const i64 i = t / inner, j = t % inner;
    const T nrm = norms[t];
    const bool clamped = double(nrm) <= eps;
    double dot = 0;
    if (!clamped)
      for (i64 k = 0; k < n; ++k) {
        const i64 idx = (i * n + k) * inner + j;
        dot += double(y[idx]) * double(g[idx]);
      }
    for (i64 k = 0; k < n; ++k) {
      const i64 idx = (i * n + k) * inner + j;
      gx[idx] = (g[idx] - (clamped ? T(0) : T(dot) * y[idx])) / nrm;
    }
  }
}

}  // namespace mscl::cuda_backend::kernels
