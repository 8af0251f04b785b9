// The GPU halves of the example trainers (`--device cuda`). The programs are .cpp files built by
// the host compiler with the project's flags (FFmpeg, JPEG, MPI, JSON); code that instantiates the
// cuda backend's templates must be compiled by nvcc. So each program's GPU path lives in one
// small nvcc translation unit under examples/cuda/ (pretrain_on_cuda.cu, finetune_on_cuda.cu,
// features_on_cuda.cu), linked in when MSCL_WITH_CUDA is ON (the program then sees
// MSCL_PROGRAMS_WITH_CUDA=1), and reached through plain host types: host batches and
// type-erased data sources go in, results come back. Without it the programs refuse
// `--device cuda` with a message saying how to build it. This header: where a GPU run goes.
#pragma once
#include <functional>
#include <string>

namespace mscl::programs {

/// How a GPU run is placed: the process's device is `local_rank % device count` (one rank per GPU
/// under mpirun/srun); `nccl` replaces the host (MPI) communicator of a data-parallel run by a
/// NCCL one over the same ranks (builds with MSCL_WITH_NCCL only); `announce` receives one line
/// naming the device (printed by rank 0).
struct cuda_placement {
  int local_rank = 0;
  bool nccl = false;
  std::function<void(const std::string&)> announce;
};

}  // namespace mscl::programs
