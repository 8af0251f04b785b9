// place_on_cuda_device (cuda_placement.hpp): one object linked into every program with a GPU half.
#include <mscl/backend/cuda/runtime.hpp>  // device selection and the context: no tensor headers needed

#include "cuda_placement.hpp"

namespace mscl::programs {

void place_on_cuda_device(cuda_placement& p) {
  p.precision = checked_precision("mscl cuda placement", p.precision, "cuda");  // a placement is a GPU run
  p.device = cuda_backend::select_device_for_local_rank(p.local_rank);
  const auto& props = cuda_backend::context().properties;  // creates the stream and library handles there
  // Process-wide settings, read by every convolution and GEMM the GPU half runs.
  cuda_backend::set_allow_tf32(p.precision != "fp32");
  cuda_backend::set_autocast_bf16(p.precision == "bf16");
  if (p.announce)
    p.announce("cuda device " + std::to_string(p.device) + " (" + props.name + ", " +
               std::to_string(props.totalGlobalMem >> 30) + " GiB, compute " + std::to_string(props.major) + "." +
               std::to_string(props.minor) + "), precision " + p.precision);
}

}  // namespace mscl::programs
