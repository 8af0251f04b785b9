// The CUDA TV-L1 engine of mscl-extract-flow (--device cuda). The program itself is a .cpp built
// by the host compiler with the project's flags; when MSCL_WITH_CUDA is ON, CMake compiles this
// one small nvcc translation unit (no FFmpeg, JPEG or JSON headers) and links it in, and defines
// MSCL_FLOW_CUDA_ENGINE=1 for the program so that make_flow_engine (extract.hpp) can reach it.
#include <mscl/flow/engine.hpp>
#include <mscl/flow/tvl1_cuda.hpp>

namespace mscl::flow {

std::unique_ptr<flow_engine> make_tvl1_cuda_engine(const tvl1_options& opt) {
  return std::make_unique<tvl1_cuda_engine>(opt);
}

}  // namespace mscl::flow
