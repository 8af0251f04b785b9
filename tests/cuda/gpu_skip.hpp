// The GPU tests' skip rule, shared by cuda_backend_test, cuda_flow_test and nccl/cuda_nccl_test:
// without a usable CUDA device a case prints "MSCL_CUDA_SKIP: <the runtime's reason>" and
// returns, and ctest reports it as skipped (SKIP_REGULAR_EXPRESSION in cmake/cuda_targets.cmake).
// With a device, TF32 is off (NVIDIA_TF32_OVERRIDE=0 for cuDNN/cuBLAS and the backend's own
// switch): the tests compare FP32 on both sides, and TF32 would only make a comparison a test of
// TF32 rounding.
#pragma once
#include <cstdlib>
#include <iostream>
#include <string>

#include <mscl/backend/cuda/runtime.hpp>

namespace mscl_gpu_test {
inline bool gpu_present() {
  static std::string why;
  static const bool ok = [] {
    setenv("NVIDIA_TF32_OVERRIDE", "0", 1);  // before the first cuDNN/cuBLAS handle exists
    return mscl::cuda_backend::device_available(&why);
  }();
  if (ok) mscl::cuda_backend::set_allow_tf32(false);
  else std::cout << "MSCL_CUDA_SKIP: no CUDA device (" << why << "); this GPU test did not run\n";
  return ok;
}
}  // namespace mscl_gpu_test

#define REQUIRE_GPU_OR_SKIP() \
  if (!mscl_gpu_test::gpu_present()) return
