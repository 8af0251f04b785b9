/// \file
/// \brief How a program chooses its communicator from a `--dist auto|mpi|none` flag (the
///        example trainers share it): auto = MPI when started by an MPI launcher, else one process.
#pragma once
#include <cstdlib>
#include <memory>
#include <string>

#include "../core/error.hpp"
#include "communicator.hpp"
#if defined(MSCL_WITH_MPI)
#include "mpi.hpp"
#endif

namespace mscl::dist {

/// Started by an MPI launcher? (Open MPI's mpirun, MPICH/Slurm PMI, PMIx.)
inline bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (std::getenv(v)) return true;
  return false;
}

/// This process's rank among the processes of its node, as the launcher tells it (Open MPI,
/// Slurm, MPICH/Hydra, torchrun-style LOCAL_RANK); 0 when started alone. GPU programs pick their
/// device from it (one rank per GPU).
inline int local_rank_from_launcher() {
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "PMI_LOCAL_RANK", "LOCAL_RANK"})
    if (const char* s = std::getenv(v)) {
      char* end = nullptr;
      const long r = std::strtol(s, &end, 10);
      MSCL_CHECK(end != s && *end == '\0' && r >= 0, config_error,
                 "the launcher's " << v << "='" << s << "' is not a non-negative integer");
      return int(r);
    }
  return 0;
}

/// The communicator `--dist mode` asks for: null (one process, the zero-cost default) for "none"
/// and for "auto" outside an MPI launcher; an MPI communicator (initialising MPI with argc/argv,
/// collectives bounded by `timeout_s`) for "mpi" and for "auto" under a launcher. Errors name
/// `program`: an unknown mode, or MPI asked for in a build without it.
inline std::shared_ptr<communicator> communicator_for(const std::string& mode, int* argc, char*** argv, double timeout_s,
                                                      const std::string& program) {
  MSCL_CHECK(mode == "auto" || mode == "mpi" || mode == "none", config_error,
             program << ": --dist expects auto, mpi or none, got '" << mode << "'");
  if (mode == "none" || (mode == "auto" && !launched_by_mpi())) return nullptr;
#if defined(MSCL_WITH_MPI)
  return std::make_shared<mpi_communicator>(argc, argv, timeout_s);
#else
  (void)argc;
  (void)argv;
  (void)timeout_s;
  MSCL_CHECK(false, config_error,
             program << ": started by an MPI launcher (or --dist mpi) but built without MPI; rebuild with "
                        "libopenmpi-dev installed (MSCL_WITH_MPI)");
  return nullptr;
#endif
}

}  // namespace mscl::dist
