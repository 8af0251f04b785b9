/// \file runtime.hpp
/// \brief The CUDA runtime side of the cuda backend: error checks for the CUDA runtime, cuBLAS
///        and cuDNN; device discovery; the per-process context (one stream, one cuBLAS and one
///        cuDNN handle bound to it); and the numeric settings (TF32, convolution algorithm
///        search).
///
/// Why one stream: every kernel, library call and copy of the backend is issued on
/// `context().stream`, so work is ordered without events, and the caching allocator can hand a
/// freed block to the next request at once (the next user's kernels run after the previous
/// user's on the same stream; this is PyTorch's per-stream pool rule with a single stream).
/// Code that launches its own work on another stream must synchronise with `synchronize()`.
#pragma once
#if !defined(__CUDACC__)
#error "mscl/backend/cuda/*.hpp are compiled by nvcc only: put code that uses tensor<T, mscl::cuda> in a .cu file and link mscl::cuda"
#endif
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>

#include "../../core/error.hpp"

namespace mscl {

/// A CUDA runtime, cuBLAS or cuDNN call failed (out of memory, launch failure, no device ...).
class cuda_error : public error {
 public:
  using error::error;
};

}  // namespace mscl

#define MSCL_CUDA_CHECK(call)                                                                                 \
  do {                                                                                                        \
    const cudaError_t mscl_cuda_status_ = (call);                                                             \
    MSCL_CHECK(mscl_cuda_status_ == cudaSuccess, ::mscl::cuda_error,                                          \
               #call << " failed: " << cudaGetErrorName(mscl_cuda_status_) << " ("                           \
                     << cudaGetErrorString(mscl_cuda_status_) << ") at " << __FILE__ << ":" << __LINE__);   \
  } while (0)

#define MSCL_CUBLAS_CHECK(call)                                                                               \
  do {                                                                                                        \
    const cublasStatus_t mscl_cublas_status_ = (call);                                                        \
    MSCL_CHECK(mscl_cublas_status_ == CUBLAS_STATUS_SUCCESS, ::mscl::cuda_error,                              \
               #call << " failed: cuBLAS status " << int(mscl_cublas_status_) << " ("                         \
                     << cublasGetStatusString(mscl_cublas_status_) << ") at " << __FILE__ << ":" << __LINE__); \
  } while (0)

#define MSCL_CUDNN_CHECK(call)                                                                                \
  do {                                                                                                        \
    const cudnnStatus_t mscl_cudnn_status_ = (call);                                                          \
    MSCL_CHECK(mscl_cudnn_status_ == CUDNN_STATUS_SUCCESS, ::mscl::cuda_error,                                \
               #call << " failed: " << cudnnGetErrorString(mscl_cudnn_status_) << " at " << __FILE__ << ":"  \
                     << __LINE__);                                                                            \
  } while (0)

/// After a kernel launch: reports launch-configuration errors at once (asynchronous faults
/// surface at the next synchronising call).
#define MSCL_CUDA_CHECK_LAUNCH() MSCL_CUDA_CHECK(cudaGetLastError())

namespace mscl::cuda_backend {

/// Numeric and search settings (process-wide; read at each library call).
struct settings_t {
  /// TF32 tensor-core math for float convolutions and GEMMs (PyTorch: cudnn.allow_tf32 and
  /// matmul.allow_tf32). On by default; the CPU-comparison tests switch it off.
  bool allow_tf32 = true;
  /// bf16 autocast (off by default): float convolutions and GEMMs read their operands rounded
  /// to bfloat16 and accumulate in float (PyTorch: torch.autocast("cuda", dtype=torch.bfloat16)
  /// for conv and matmul). Tensors stay float: a convolution casts its input and weight to
  /// bf16 scratch, runs cuDNN in bf16 (float accumulation) and casts its bf16 output back; the
  /// GEMMs use cuBLAS's CUBLAS_COMPUTE_32F_FAST_16BF on the float matrices. Batch norm, losses,
  /// the contrastive heads' GEMMs and the optimiser stay float (docs/cuda.md, "bf16 autocast").
  /// A convolution's backward keeps its forward's choice, a GEMM's backward reads the setting
  /// when it runs: switch it around whole steps (autocast_bf16_scope), not between forward and
  /// backward.
  bool autocast_bf16 = false;
  /// Benchmark cuDNN's algorithms once per convolution shape (PyTorch: cudnn.benchmark=True);
  /// false uses cuDNN's heuristic choice (no timing runs).
  bool benchmark_conv_algorithms = true;
  /// Largest workspace a convolution algorithm may use.
  std::size_t max_conv_workspace_bytes = std::size_t(1) << 30;
  /// With benchmark_conv_algorithms, also time the engines of cuDNN's graph API (float only;
  /// conv_engines.hpp) against the legacy search's choice and keep the faster. The environment
  /// variable MSCL_CUDNN_SEARCH=legacy turns it off at start-up; MSCL_CUDNN_LOG=1 prints each
  /// shape's choice to stderr.
  bool search_graph_engines = [] {
    const char* v = std::getenv("MSCL_CUDNN_SEARCH");
    return !(v && std::string(v) == "legacy");
  }();
};

inline settings_t& settings() {
  static settings_t s;
  return s;
}
inline void set_allow_tf32(bool on) { settings().allow_tf32 = on; }
inline void set_autocast_bf16(bool on) { settings().autocast_bf16 = on; }

/// bf16 autocast for a scope: `{ autocast_bf16_scope bf16; step(); }`; restores the previous
/// setting on exit (also when the scope is left by an exception).
class autocast_bf16_scope {
 public:
  explicit autocast_bf16_scope(bool on = true) : previous_(settings().autocast_bf16) { settings().autocast_bf16 = on; }
  autocast_bf16_scope(const autocast_bf16_scope&) = delete;
  autocast_bf16_scope& operator=(const autocast_bf16_scope&) = delete;
  ~autocast_bf16_scope() { settings().autocast_bf16 = previous_; }

 private:
  bool previous_;
};

/// Whether a usable CUDA device is present; `why` receives the reason when not (for the
/// tests' skip message). Never throws.
inline bool device_available(std::string* why = nullptr) {
  int n = 0;
  const cudaError_t st = cudaGetDeviceCount(&n);
  if (st != cudaSuccess) {
    if (why) *why = std::string("cudaGetDeviceCount: ") + cudaGetErrorName(st) + " (" + cudaGetErrorString(st) + ")";
    cudaGetLastError();  // clear the sticky-free error state
    return false;
  }
  if (n == 0) {
    if (why) *why = "no CUDA device present";
    return false;
  }
  return true;
}

/// Makes device `local_rank % device count` this process's device (one process per GPU under
/// mpirun/srun; several processes share the GPUs round-robin when there are fewer). Must run
/// before the first use of the backend (`context()` binds to the device current then); returns
/// the device index. Throws cuda_error, naming the reason, when no device is usable.
inline int select_device_for_local_rank(int local_rank) {
  std::string why;
  MSCL_CHECK(device_available(&why), cuda_error, "mscl cuda backend: no usable CUDA device (" << why << ")");
  MSCL_CHECK(local_rank >= 0, value_error, "select_device_for_local_rank: local rank must be >= 0, got " << local_rank);
  int n = 0;
  MSCL_CUDA_CHECK(cudaGetDeviceCount(&n));
  const int device = local_rank % n;
  MSCL_CUDA_CHECK(cudaSetDevice(device));
  return device;
}

/// The stream and library handles of the current process (device 0 unless the caller selected
/// another with cudaSetDevice before the first use; one device per process).
struct context_t {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cudnnHandle_t cudnn = nullptr;
  cudaDeviceProp properties{};
};

inline context_t& context() {
  // Created on first use and never destroyed: library handles must not be torn down after the
  // driver during static destruction.
  static context_t* ctx = [] {
    std::string why;
    MSCL_CHECK(device_available(&why), cuda_error, "mscl cuda backend: no usable CUDA device (" << why << ")");
    auto* c = new context_t();
    MSCL_CUDA_CHECK(cudaGetDevice(&c->device));
    MSCL_CUDA_CHECK(cudaGetDeviceProperties(&c->properties, c->device));
    MSCL_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    MSCL_CUBLAS_CHECK(cublasCreate(&c->cublas));
    MSCL_CUBLAS_CHECK(cublasSetStream(c->cublas, c->stream));
    MSCL_CUDNN_CHECK(cudnnCreate(&c->cudnn));
    MSCL_CUDNN_CHECK(cudnnSetStream(c->cudnn, c->stream));
    return c;
  }();
  return *ctx;
}

inline cudaStream_t stream() { return context().stream; }

/// Waits for all work the backend issued (timing, handing results to other streams).
inline void synchronize() { MSCL_CUDA_CHECK(cudaStreamSynchronize(stream())); }

/// Grid size for a 1-D grid-stride loop over n elements.
inline unsigned grid_for(long long n, unsigned block = 256) {
  long long g = (n + block - 1) / block;
  if (g < 1) g = 1;
  if (g > 65535LL * 32) g = 65535LL * 32;  // grid-stride loops cover the rest
  return unsigned(g);
}

}  // namespace mscl::cuda_backend
