// Device selection and the NCCL switch shared by the GPU halves of the example trainers
// (examples/cuda/*.cu; nvcc only).
#pragma once
#include <mscl/backend/cuda/cuda.hpp>
#include <mscl/dist/communicator.hpp>
#if defined(MSCL_WITH_NCCL)
#include <mscl/dist/nccl.hpp>
#endif

#include "cuda_placement.hpp"

namespace mscl::programs::detail {

/// Binds this process to its GPU before the backend's first use and announces it.
inline int place_on_device(const cuda_placement& p) {
  const int device = cuda_backend::select_device_for_local_rank(p.local_rank);
  const auto& props = cuda_backend::context().properties;
  if (p.announce)
    p.announce("cuda device " + std::to_string(device) + " (" + props.name + ", " +
               std::to_string(props.totalGlobalMem >> 30) + " GiB, compute " + std::to_string(props.major) + "." +
               std::to_string(props.minor) + ")");
  return device;
}

/// The communicator the loop uses: the program's (host, MPI) one, or with `nccl` a NCCL
/// communicator over the same ranks bootstrapped through it.
inline std::shared_ptr<dist::communicator> device_communicator(std::shared_ptr<dist::communicator> host,
                                                               const cuda_placement& p, int device) {
  if (!p.nccl || !host || host->size() < 2) return host;
#if defined(MSCL_WITH_NCCL)
  return std::make_shared<dist::nccl_communicator>(host->rank(), host->size(), dist::nccl_unique_id(*host), device,
                                                   host->timeout_seconds());
#else
  (void)device;
  MSCL_CHECK(false, config_error, "--dist nccl: this build has no NCCL (configure with -DMSCL_WITH_NCCL=ON)");
  return host;
#endif
}

}  // namespace mscl::programs::detail
