/// \file engine.hpp
/// \brief The flow-engine interface that `extract.hpp` drives (one engine per worker) and the
///        entry point of the CUDA TV-L1 engine, kept apart from extract.hpp so that the CUDA
///        translation unit that implements the engine (nvcc) needs neither FFmpeg, libjpeg nor
///        JSON headers.
#pragma once
#include <memory>

#include "tvl1.hpp"

namespace mscl::flow {

/// Computes one flow field from two grey planes (values 0..255, row-major h×w); u right, v down.
class flow_engine {
 public:
  virtual ~flow_engine() = default;
  virtual const char* name() const = 0;
  virtual void compute(const float* i0, const float* i1, int height, int width, float* u, float* v) = 0;
};

#if defined(MSCL_FLOW_CUDA_ENGINE) && MSCL_FLOW_CUDA_ENGINE
/// The CUDA TV-L1 engine (`tvl1_cuda.hpp`). Defined in a CUDA translation unit linked into the
/// program (examples/extract_flow_cuda_engine.cu, which CMake adds to mscl-extract-flow when
/// MSCL_WITH_CUDA is ON and then defines MSCL_FLOW_CUDA_ENGINE=1). Throws mscl::cuda_error
/// (an mscl::error) naming the reason when no usable GPU is present.
std::unique_ptr<flow_engine> make_tvl1_cuda_engine(const tvl1_options& opt);
#endif

}  // namespace mscl::flow
