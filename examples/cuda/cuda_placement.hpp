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
#include <mscl/core/error.hpp>
#include <string>

namespace mscl::programs {

/// How a GPU run is placed: the process's device is `local_rank % device count` (one rank per GPU
/// under mpirun/srun); `nccl` replaces the host (MPI) communicator of a data-parallel run by a
/// NCCL one over the same ranks (builds with MSCL_WITH_NCCL only); `announce` receives one line
/// naming the device; `precision` is applied to the process with the placement (see
/// checked_precision).
struct cuda_placement {
  int local_rank = 0;
  bool nccl = false;
  std::string precision = "tf32";
  std::function<void(const std::string&)> announce;
  int device = -1;  ///< the GPU this process was bound to; -1 until place_on_cuda_device
};

/// Binds this process to GPU `local_rank % GPU count` before anything else uses CUDA, announces
/// it and records it in `p.device`; throws (naming the runtime's reason) when no GPU is usable.
/// The programs call it before they write any output, so a run without a GPU leaves nothing
/// behind; the GPU halves call it themselves when it was not called (examples/cuda/placement.cu).
void place_on_cuda_device(cuda_placement& p);

/// The programs' `--precision P` for float work on the GPU, checked: "tf32" (the default when P is
/// empty: TF32 tensor-core math in convolutions and GEMMs, as PyTorch's allow_tf32 flags), "fp32"
/// (no TF32) or "bf16" (bf16 autocast: convolutions and GEMMs on bf16 operands with float
/// accumulation, docs/cuda.md). The CPU computes in FP32 only: with `--device cpu` only the
/// default is accepted, so a forgotten `--device cuda` is not silently an FP32 run.
inline std::string checked_precision(const std::string& program, const std::string& value, const std::string& device) {
  if (value.empty()) return "tf32";
  MSCL_CHECK(value == "tf32" || value == "fp32" || value == "bf16", config_error,
             program << ": --precision expects tf32, fp32 or bf16, got '" << value << "'");
  MSCL_CHECK(device == "cuda", config_error,
             program << ": --precision " << value << " applies to --device cuda (the CPU computes in FP32)");
  return value;
}

/// What the programs do first with `--device D`: for D = "cuda", place rank `rank` (local rank
/// `local_rank` on its node) of `program` on its GPU, the device line going to stderr as
/// "<program>: rank R: cuda device …"; for "cpu", an unplaced placement.
inline cuda_placement place_for_device(const std::string& device, const std::string& program, int rank, int local_rank,
                                       bool nccl, const std::string& precision = "tf32") {
  cuda_placement p;
  if (device != "cuda") return p;
  p.local_rank = local_rank;
  p.nccl = nccl;
  p.precision = precision;
  p.announce = [program, rank](const std::string& line) { std::cerr << program << ": rank " << rank << ": " << line << "\n"; };
  place_on_cuda_device(p);
  return p;
}

}  // namespace mscl::programs
