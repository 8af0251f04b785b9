/// \file data_parallel.hpp
/// \brief The data-parallel pieces any training loop uses beside a communicator: the
///        distributed sampler (disjoint shards of each global batch), and broadcasting a
///        module's parameters and buffers from rank 0 (at the start, and DDP-style buffers
///        every step). `train::pretrain` wires them (with dist/gradient_buckets.hpp); a
///        fine-tuning loop uses the same three calls (docs/distributed.md).
///
/// Sharding rule (every batch source follows it): with per-rank batch B and W ranks, iteration
/// i has a global batch of N_g = W·B slots; rank r takes slots [r·B, (r+1)·B). A source whose
/// batch of iteration i depends only on (seed, i, slot) then gives W ranks × B exactly the
/// samples that one rank × W·B sees — what makes runs comparable across world sizes and
/// resumable with another world size.
#pragma once
#include <cstdint>
#include <vector>

#include "../core/rng.hpp"
#include "../nn/module.hpp"
#include "tensor_collectives.hpp"

namespace mscl::dist {

/// This rank's share of a global batch.
struct shard {
  int rank = 0;
  int world_size = 1;
  /// First global slot of this rank for a per-rank batch of `batch`.
  index_t first_slot(index_t batch) const { return index_t(rank) * batch; }
  void check(const char* who) const {
    MSCL_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, value_error,
               who << ": rank " << rank << " outside [0, world_size = " << world_size << ")");
  }
};

/// Epoch-based sampler over a dataset of `size` items: epoch e is a permutation of [0, size)
/// drawn from (seed, e) (counter-based, the same on every rank), cut into global batches of
/// world·batch (drop_last); rank r gets the slots [r·batch, (r+1)·batch) of each. Shards are
/// disjoint and their union is the global batch, whatever the world size.
class distributed_sampler {
 public:
  distributed_sampler(index_t dataset_size, index_t batch, shard s, std::uint64_t seed, bool shuffle = true)
      : size_(dataset_size), batch_(batch), shard_(s), seed_(seed), shuffle_(shuffle) {
    s.check("dist::distributed_sampler");
    MSCL_CHECK(batch > 0 && dataset_size >= batch * s.world_size, value_error,
               "dist::distributed_sampler: " << dataset_size << " items cannot fill one global batch of " << s.world_size
                                            << " ranks x " << batch);
  }
  index_t global_batch() const { return batch_ * shard_.world_size; }
  long iterations_per_epoch() const { return long(size_ / global_batch()); }

  /// Dataset indices of this rank's batch at `iteration`.
  std::vector<index_t> indices(long iteration) const {
    MSCL_CHECK(iteration >= 0, value_error, "dist::distributed_sampler: negative iteration " << iteration);
    const long per_epoch = iterations_per_epoch();
    const long epoch = iteration / per_epoch, step = iteration % per_epoch;
    if (epoch != cached_epoch_) {
      perm_.resize(std::size_t(size_));
      for (index_t i = 0; i < size_; ++i) perm_[std::size_t(i)] = i;
      if (shuffle_)
        for (index_t i = size_ - 1; i > 0; --i) {  // Fisher-Yates with counter-based draws
          const index_t j = index_t(philox_uniform(seed_, 0xD157000000ull + std::uint64_t(epoch), std::uint64_t(i)) *
                                    double(i + 1)) % (i + 1);
          std::swap(perm_[std::size_t(i)], perm_[std::size_t(j)]);
        }
      cached_epoch_ = epoch;
    }
    const index_t first = index_t(step) * global_batch() + shard_.first_slot(batch_);
    return std::vector<index_t>(perm_.begin() + first, perm_.begin() + first + batch_);
  }

 private:
  index_t size_, batch_;
  shard shard_;
  std::uint64_t seed_;
  bool shuffle_;
  mutable long cached_epoch_ = -1;
  mutable std::vector<index_t> perm_;
};

/// Parameters and buffers of a module (state-dict order).
template <class T, class B>
std::vector<tensor<T, B>> module_state_tensors(const nn::module<T, B>& m, bool parameters, bool buffers) {
  std::vector<tensor<T, B>> out;
  for (auto& e : m.state_dict())
    if ((e.is_parameter && parameters) || (!e.is_parameter && buffers)) out.push_back(e.value);
  return out;
}

/// Every parameter and buffer ← rank `root`'s (one packed collective).
template <class T, class B>
void broadcast_module_state(communicator& comm, const nn::module<T, B>& m, int root = 0) {
  broadcast_tensors(comm, module_state_tensors(m, true, true), root, "broadcast of the model state");
}

/// Buffers only (BatchNorm running statistics, counters) ← rank `root`'s: PyTorch DDP's
/// broadcast_buffers, run before each forward so that every rank (and so every checkpoint,
/// written by rank 0) holds the same running statistics.
template <class T, class B>
void broadcast_module_buffers(communicator& comm, const nn::module<T, B>& m, int root = 0) {
  broadcast_tensors(comm, module_state_tensors(m, false, true), root, "broadcast of the model buffers");
}

/// Prepares an optimiser's momentum buffers for a broadcast from rank 0 at the start of a run
/// (resume on rank 0 only): every rank takes rank 0's layout (which buffers exist yet — SGD
/// creates them lazily at the first step), allocates or drops its own accordingly, and appends
/// the defined ones to `out`, so that one `broadcast_tensors` call can carry them with the rest
/// of the state. `Optimizer` exposes `groups()` (each with `params`) and `momentum_buffers()`
/// in the same order, as optim::sgd does.
template <class Optimizer, class T, class B>
void append_optimizer_state(communicator& comm, Optimizer& opt, std::vector<tensor<T, B>>& out) {
  auto& bufs = opt.momentum_buffers();
  std::vector<std::int64_t> defined(bufs.size());
  for (std::size_t i = 0; i < bufs.size(); ++i) defined[i] = bufs[i].defined() ? 1 : 0;
  comm.broadcast(defined.data(), defined.size(), 0, "broadcast of the optimiser layout");
  std::size_t k = 0;
  for (const auto& g : opt.groups())
    for (const auto& p : g.params) {
      if (defined[k] && !bufs[k].defined()) bufs[k] = tensor<T, B>::empty(p.shape());
      if (!defined[k]) bufs[k] = tensor<T, B>();
      if (defined[k]) out.push_back(bufs[k]);
      ++k;
    }
}

}  // namespace mscl::dist
