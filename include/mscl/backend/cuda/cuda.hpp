/// \file cuda.hpp
/// \brief The cuda backend: include this (or mscl/mscl.hpp, which includes it when
///        MSCL_WITH_CUDA is set and nvcc compiles) to use `tensor<T, mscl::cuda>`.
///
/// Defines `backend::cuda_ops<cuda>`, the single entry point through which core/tensor.hpp,
/// ops/, autograd/, nn/ and optim/ reach device memory and kernels (each of them dispatches with
/// `if constexpr (std::is_same_v<B, cuda>)`, so cpu code never instantiates any of this). The
/// pieces:
///   runtime.hpp           errors, device discovery, the stream and library handles, settings
///   device_allocator.hpp  caching device allocator
///   memory.hpp            fill / copies / strided copies; to_device, to_host, copy_state
///   ops_basic.hpp         elementwise, reductions, cuBLAS GEMM, linear, losses, SGD, init
///   conv.hpp              cuDNN convolution with the per-shape algorithm cache
///   conv_engines.hpp      cuDNN graph-API engine search that conv.hpp times against the legacy choice
///   norm_pool.hpp         cuDNN batch-norm, pooling
///   ssl.hpp               the MSCL objective's ops (InfoNCE, LMCL, queue, EMA, FRA), dropout, resize
///   augment.hpp           the RGB photometric stage of a batch (augment/photometric_batch.hpp)
///   augment_kernels.cuh   its kernels: jitter + grey per frame, separable blur, normalisation
///   *.cuh                 the kernels (nvcc only)
/// Requirements: nvcc (CUDA 12+ / 13), cuDNN 9, cuBLAS; link mscl::cuda. See docs/cuda.md.
#pragma once
#include "../../core/tensor.hpp"
#include "augment.hpp"
#include "conv.hpp"
#include "memory.hpp"
#include "norm_pool.hpp"
#include "ops_basic.hpp"
#include "runtime.hpp"
#include "ssl.hpp"

namespace mscl::backend {

template <>
struct cuda_ops<mscl::cuda> : cuda_backend::memory_ops,
                              cuda_backend::basic_ops,
                              cuda_backend::conv_ops,
                              cuda_backend::norm_pool_ops,
                              cuda_backend::ssl_ops,
                              cuda_backend::augment_ops {};

}  // namespace mscl::backend

namespace mscl {
// User-facing names of the backend's controls (mscl::cuda_error is in runtime.hpp).
namespace cuda_control {
using cuda_backend::device_available;
using cuda_backend::autocast_bf16_scope;
using cuda_backend::set_allow_tf32;
using cuda_backend::set_autocast_bf16;
using cuda_backend::settings;
using cuda_backend::synchronize;
}  // namespace cuda_control
}  // namespace mscl
