/// \file sync_batch_norm.hpp
/// \brief Sync-BN over a communicator: `sync_batch_norm_scope` installs, on the calling thread,
///        an `ops::batch_norm_reducer` that all-reduces the per-channel statistics of every
///        training-mode BatchNorm run with grad mode on (ops/norm.hpp), so that W ranks × B
///        normalise with the statistics of the global batch W·B — PyTorch SyncBatchNorm.
///
/// Cost: one all-reduce of 2C+1 doubles per BN layer in forward and one of 2C in backward
/// (C channels). Latency-bound; the forward ones cannot overlap anything (the next layer needs
/// them). Every rank must run the same layers in the same order, as with any collective.
#pragma once
#include <memory>

#include "../ops/norm.hpp"
#include "communicator.hpp"

namespace mscl::dist {

/// ops::batch_norm_reducer over a communicator, in the communicator's memory: host (mpi; CPU
/// tensors, and CUDA tensors staged through the host) or CUDA device memory (nccl; CUDA tensors
/// only — a CPU batch-norm refuses it with a config_error).
class communicator_bn_reducer final : public ops::batch_norm_reducer {
 public:
  explicit communicator_bn_reducer(std::shared_ptr<communicator> comm) : comm_(std::move(comm)) {
    MSCL_CHECK(comm_ != nullptr, value_error, "dist::communicator_bn_reducer: null communicator");
  }
  void all_reduce_sum(double* values, std::size_t n) override { comm_->all_reduce_sum(values, n, "sync-BN all-reduce"); }
  bool reduces_device_memory() const override { return comm_->memory() == memory_kind::cuda_device; }

 private:
  std::shared_ptr<communicator> comm_;
};

/// While alive, training-mode BatchNorm with grad mode on (on this thread) is synchronised over
/// `comm`. A null communicator or one rank installs nothing (the single-process path).
class sync_batch_norm_scope {
 public:
  explicit sync_batch_norm_scope(const std::shared_ptr<communicator>& comm, bool enabled = true)
      : scope_(enabled && comm && comm->size() > 1 ? std::make_shared<communicator_bn_reducer>(comm)
                                                   : ops::current_batch_norm_reducer()) {}

 private:
  ops::scoped_batch_norm_reducer scope_;
};

}  // namespace mscl::dist
