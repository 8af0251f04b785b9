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

/// The device the program placed this process on, placing it now if it did not.
inline int placed_device(const cuda_placement& p) {
  if (p.device >= 0) return p.device;
  cuda_placement now = p;
  place_on_cuda_device(now);
  return now.device;
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
