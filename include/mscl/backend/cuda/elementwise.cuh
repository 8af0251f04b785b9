/// \file elementwise.cuh
/// \brief Device kernels for memory and elementwise work: fill, strided copy, unary/binary maps
///        with functor objects, in-place accumulation, row bias, SGD update, and the block
///        reduction helper that the reductions build on. Compiled by nvcc only.
///
/// All kernels are grid-stride loops over 64-bit indices, launched on the backend's stream by
/// the host wrappers (memory.hpp, ops_*.hpp), never directly by users.
#pragma once
#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>

namespace mscl::cuda_backend::kernels {

using i64 = long long;

#define MSCL_GRID_STRIDE(i, n) \
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += i64(blockDim.x) * gridDim.x)

template <class T>
__global__ void fill(T* __restrict__ p, i64 n, T v) {
  MSCL_GRID_STRIDE(i, n) p[i] = v;
}

/// Shapes and strides of a strided copy (rank <= 8), passed by value.
struct strided_meta {
  static constexpr int max_rank = 8;
  int rank = 0;
  i64 shape[max_rank];
  i64 src_stride[max_rank];
  i64 dst_stride[max_rank];
};

/// dst[dst offset of i] = src[src offset of i], i the row-major linear index.
template <class T>
__global__ void strided_copy(const T* __restrict__ src, T* __restrict__ dst, i64 n, strided_meta m) {
  MSCL_GRID_STRIDE(i, n) {
    i64 rest = i, so = 0, d = 0;
    for (int a = m.rank - 1; a >= 0; --a) {
      const i64 idx = rest % m.shape[a];
      rest /= m.shape[a];
      so += idx * m.src_stride[a];
      d += idx * m.dst_stride[a];
    }
    dst[d] = src[so];
  }
}

// Memory-bound float loops move 16-byte vectors (four floats per load and store, like
// PyTorch's vectorised elementwise kernels) when every pointer is 16-byte aligned; a view's
// storage offset can leave one unaligned, and then the scalar loop runs. The elements and the
// arithmetic are the same either way, so results are bitwise identical.
__device__ inline bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }
/// Work items for a launch over n elements: a quarter for float (vectorised kernels), else n.
template <class T>
inline long long vector_work(long long n) {
  return std::is_same_v<T, float> ? (n + 3) / 4 : n;
}

template <class T, class F>
__global__ void map_unary(const T* __restrict__ x, T* __restrict__ y, i64 n, F f) {
  if constexpr (std::is_same_v<T, float>) {
    if (aligned16(x) && aligned16(y)) {
      const i64 n4 = n / 4;
      MSCL_GRID_STRIDE(i, n4) {
        float4 v = reinterpret_cast<const float4*>(x)[i];
        v.x = f(v.x), v.y = f(v.y), v.z = f(v.z), v.w = f(v.w);
        reinterpret_cast<float4*>(y)[i] = v;
      }
      MSCL_GRID_STRIDE(i, n - 4 * n4) y[4 * n4 + i] = f(x[4 * n4 + i]);
      return;
    }
  }
  MSCL_GRID_STRIDE(i, n) y[i] = f(x[i]);
}

template <class T, class F>
__global__ void map_binary(const T* __restrict__ x, const T* __restrict__ z, T* __restrict__ y, i64 n, F f) {
  if constexpr (std::is_same_v<T, float>) {
    if (aligned16(x) && aligned16(z) && aligned16(y)) {
      const i64 n4 = n / 4;
      MSCL_GRID_STRIDE(i, n4) {
        float4 a = reinterpret_cast<const float4*>(x)[i];
        const float4 b = reinterpret_cast<const float4*>(z)[i];
        a.x = f(a.x, b.x), a.y = f(a.y, b.y), a.z = f(a.z, b.z), a.w = f(a.w, b.w);
        reinterpret_cast<float4*>(y)[i] = a;
      }
      MSCL_GRID_STRIDE(i, n - 4 * n4) y[4 * n4 + i] = f(x[4 * n4 + i], z[4 * n4 + i]);
      return;
    }
  }
  MSCL_GRID_STRIDE(i, n) y[i] = f(x[i], z[i]);
}

/// a[i] += b[i] (gradient accumulation).
template <class T>
__global__ void add_inplace(T* __restrict__ a, const T* __restrict__ b, i64 n) {
  if constexpr (std::is_same_v<T, float>) {
    if (aligned16(a) && aligned16(b)) {
      const i64 n4 = n / 4;
      MSCL_GRID_STRIDE(i, n4) {
        float4 u = reinterpret_cast<const float4*>(a)[i];
        const float4 v = reinterpret_cast<const float4*>(b)[i];
        u.x += v.x, u.y += v.y, u.z += v.z, u.w += v.w;
        reinterpret_cast<float4*>(a)[i] = u;
      }
      MSCL_GRID_STRIDE(i, n - 4 * n4) a[4 * n4 + i] += b[4 * n4 + i];
      return;
    }
  }
  MSCL_GRID_STRIDE(i, n) a[i] += b[i];
}

/// a[i] *= s.
template <class T>
__global__ void scale_inplace(T* __restrict__ a, i64 n, double s) {
  MSCL_GRID_STRIDE(i, n) a[i] = T(double(a[i]) * s);
}

/// p[i] = s[0] * factor: broadcasts a device scalar (the gradient of a full reduction) without
/// a round trip to the host.
template <class T>
__global__ void fill_from_scalar(T* __restrict__ p, i64 n, const T* __restrict__ s, T factor) {
  MSCL_GRID_STRIDE(i, n) p[i] = s[0] * factor;
}

/// out[i, j] += bias[j] for an n x m row-major matrix.
template <class T>
__global__ void add_row_bias(T* __restrict__ out, const T* __restrict__ bias, i64 n, i64 m) {
  MSCL_GRID_STRIDE(i, n * m) out[i] += bias[i % m];
}

/// SGD with momentum and weight decay (optim/sgd.hpp's update, element by element).
template <class T>
__global__ void sgd_update(T* __restrict__ w, const T* __restrict__ g, T* __restrict__ buf, i64 n, T lr, T mom,
                           T wd, bool nesterov, bool first) {
  MSCL_GRID_STRIDE(i, n) {
    const T d = g[i] + wd * w[i];
    if (buf == nullptr) {  // momentum 0
      w[i] -= lr * d;
      continue;
    }
    const T v = first ? d : mom * buf[i] + d;
    buf[i] = v;
    w[i] -= lr * (nesterov ? d + mom * v : v);
  }
}

// ------------------------------------------------------------------ functors

struct f_add { template <class T> __device__ T operator()(T a, T b) const { return a + b; } };
struct f_sub { template <class T> __device__ T operator()(T a, T b) const { return a - b; } };
struct f_mul { template <class T> __device__ T operator()(T a, T b) const { return a * b; } };
struct f_div { template <class T> __device__ T operator()(T a, T b) const { return a / b; } };
template <class S>
struct f_scale { S s; template <class T> __device__ T operator()(T a) const { return a * T(s); } };
template <class S>
struct f_add_scalar { S s; template <class T> __device__ T operator()(T a) const { return a + T(s); } };
/// NaN propagates (a < 0 is false for NaN), as on the CPU.
struct f_relu { template <class T> __device__ T operator()(T a) const { return a < T(0) ? T(0) : a; } };
/// relu backward from the saved output: g where out > 0.
struct f_relu_grad { template <class T> __device__ T operator()(T g, T out) const { return out > T(0) ? g : T(0); } };
struct f_exp { __device__ float operator()(float a) const { return expf(a); } __device__ double operator()(double a) const { return ::exp(a); } };
struct f_log { __device__ float operator()(float a) const { return logf(a); } __device__ double operator()(double a) const { return ::log(a); } };
struct f_sqrt { __device__ float operator()(float a) const { return sqrtf(a); } __device__ double operator()(double a) const { return ::sqrt(a); } };
struct f_square { template <class T> __device__ T operator()(T a) const { return a * a; } };
struct f_square_grad { template <class T> __device__ T operator()(T g, T x) const { return T(2) * g * x; } };
struct f_sqrt_grad { template <class T> __device__ T operator()(T g, T y) const { return g / (T(2) * y); } };

// ------------------------------------------------------------------ reductions

/// Sum of `v` over the block (any blockDim that is a multiple of 32, at most 1024); the result
/// is valid in thread 0. `shared` holds 32 doubles.
__device__ inline double block_sum(double v, double* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // `shared` may still be read by a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  v = threadIdx.x < warps ? shared[threadIdx.x] : 0.0;
  if (warp == 0)
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

/// Maximum over the block (same contract as block_sum).
__device__ inline double block_max(double v, double* shared) {
  for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_down_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) >> 5;
  v = threadIdx.x < warps ? shared[threadIdx.x] : -INFINITY;
  if (warp == 0)
    for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_down_sync(0xffffffffu, v, o));
  return v;
}

/// *acc += sum of f(x[i]) in double (one atomic per block). acc must be zeroed first.
template <class T, class F>
__global__ void sum_all(const T* __restrict__ x, i64 n, double* __restrict__ acc, F f) {
  __shared__ double shared[32];
  double s = 0;
  MSCL_GRID_STRIDE(i, n) s += f(double(x[i]));
  s = block_sum(s, shared);
  if (threadIdx.x == 0) atomicAdd(acc, s);
}

struct f_identity_d { __device__ double operator()(double v) const { return v; } };
struct f_square_d { __device__ double operator()(double v) const { return v * v; } };

/// out[0] = T(acc[0] * factor).
template <class T>
__global__ void finish_scalar(const double* __restrict__ acc, T* __restrict__ out, double factor) {
  if (blockIdx.x == 0 && threadIdx.x == 0) out[0] = T(acc[0] * factor);
}

// ------------------------------------------------------------------ bf16 autocast casts

/// y[i] = bf16(x[i]), round to nearest even (__float2bfloat16_rn: NaN stays NaN, overflow gives
/// infinity). Four floats per load when both pointers allow it; same values either way.
/// (Templates, as every kernel here: a header's non-template kernel would be defined once per
/// nvcc translation unit of a program.)
template <class Bf16 = __nv_bfloat16>
__global__ void float_to_bf16(const float* __restrict__ x, Bf16* __restrict__ y, i64 n) {
  if (aligned16(x) && (reinterpret_cast<std::uintptr_t>(y) & 7u) == 0) {
    const i64 n4 = n / 4;
    MSCL_GRID_STRIDE(i, n4) {
      const float4 v = reinterpret_cast<const float4*>(x)[i];
      __nv_bfloat162* out = reinterpret_cast<__nv_bfloat162*>(y) + 2 * i;
      out[0] = __floats2bfloat162_rn(v.x, v.y);
      out[1] = __floats2bfloat162_rn(v.z, v.w);
    }
    MSCL_GRID_STRIDE(i, n - 4 * n4) y[4 * n4 + i] = __float2bfloat16_rn(x[4 * n4 + i]);
    return;
  }
  MSCL_GRID_STRIDE(i, n) y[i] = __float2bfloat16_rn(x[i]);
}

/// y[i] = float(x[i]) (exact).
template <class Bf16 = __nv_bfloat16>
__global__ void bf16_to_float(const Bf16* __restrict__ x, float* __restrict__ y, i64 n) {
  if ((reinterpret_cast<std::uintptr_t>(x) & 7u) == 0 && aligned16(y)) {
    const i64 n4 = n / 4;
    MSCL_GRID_STRIDE(i, n4) {
      const __nv_bfloat162* in = reinterpret_cast<const __nv_bfloat162*>(x) + 2 * i;
      const float2 a = __bfloat1622float2(in[0]), b = __bfloat1622float2(in[1]);
      reinterpret_cast<float4*>(y)[i] = make_float4(a.x, a.y, b.x, b.y);
    }
    MSCL_GRID_STRIDE(i, n - 4 * n4) y[4 * n4 + i] = __bfloat162float(x[4 * n4 + i]);
    return;
  }
  MSCL_GRID_STRIDE(i, n) y[i] = __bfloat162float(x[i]);
}

#undef MSCL_GRID_STRIDE

}  // namespace mscl::cuda_backend::kernels
