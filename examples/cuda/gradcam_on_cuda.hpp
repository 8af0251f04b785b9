// mscl-gradcam's GPU half (gradcam_on_cuda.cu; see cuda_placement.hpp for the arrangement).
#pragma once
#include <functional>

#include <mscl/core/tensor.hpp>
#include <mscl/eval/classification.hpp>
#include <mscl/eval/gradcam.hpp>

#include "cuda_placement.hpp"

namespace mscl::programs {

/// Grad-CAM on the GPU: returns a function from a host clip (1×3×T×H×W) and a class (< 0: the
/// predicted one) to eval::gradcam's host result, computed with a device copy of `classifier`
/// (weights and buffers; the program loads them on the host, with the CPU path's checks).
using host_gradcam_function = std::function<eval::gradcam_result(const tensor<float>&, index_t)>;
host_gradcam_function cuda_gradcam_function(const eval::video_classifier<float, cpu>& classifier,
                                            const cuda_placement& placement);

}  // namespace mscl::programs
