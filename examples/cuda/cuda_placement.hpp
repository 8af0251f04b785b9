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
#include <iostream>
#include <string>

namespace mscl::programs {

/// How a GPU run is placed: the process's device is `local_rank % device count` (one rank per GPU
/// under mpirun/srun); `nccl` replaces the host (MPI) communicator of a data-parallel run by a
/// NCCL one over the same ranks (builds with MSCL_WITH_NCCL only); `announce` receives one line
/// naming the device.
struct cuda_placement {
  int local_rank = 0;
  bool nccl = false;
  std::function<void(const std::string&)> announce;
  int device = -1;  ///< the GPU this process was bound to; -1 until place_on_cuda_device
};

/// Binds this process to GPU `local_rank % GPU count` before anything else uses CUDA, announces
/// it and records it in `p.device`; throws (naming the runtime's reason) when no GPU is usable.
/// The programs call it before they write any output, so a run without a GPU leaves nothing
/// behind; the GPU halves call it themselves when it was not called (examples/cuda/placement.cu).
void place_on_cuda_device(cuda_placement& p);

/// What the programs do first with `--device D`: for D = "cuda", place rank `rank` (local rank
/// `local_rank` on its node) of `program` on its GPU, the device line going to stderr as
/// "<program>: rank R: cuda device …"; for "cpu", an unplaced placement.
inline cuda_placement place_for_device(const std::string& device, const std::string& program, int rank, int local_rank,
                                       bool nccl) {
  cuda_placement p;
  if (device != "cuda") return p;
  p.local_rank = local_rank;
  p.nccl = nccl;
  p.announce = [program, rank](const std::string& line) { std::cerr << program << ": rank " << rank << ": " << line << "\n"; };
  place_on_cuda_device(p);
  return p;
}

}  // namespace mscl::programs
