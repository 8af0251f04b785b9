/// \file gradient_buckets.hpp
/// \brief Averages the gradients of a parameter list over all ranks in buckets: parameters are
///        grouped (in reverse registration order, the order backward produces them) into flat
///        buffers of about `bucket_bytes`, each bucket's all-reduce is started as soon as it is
///        packed, and all are awaited together, then unpacked as sum / world size.
///
/// Why buckets: one all-reduce per parameter tensor (r3d_18 + heads: ~200 tensors, many of a
/// few hundred floats) pays ~200 latencies; one giant buffer cannot start before the last
/// gradient is packed. ~25 MB buckets (PyTorch DDP's default) amortise latency and let the
/// transport work on bucket i while bucket i+1 is packed.
///
/// Overlap with the backward pass: `mark_ready(k)` starts a bucket's all-reduce as soon as all
/// of its parameters' gradients are final. `backward_and_average(comm, loss, true)` installs the
/// autograd engine's gradient-ready hook (autograd/engine.hpp) for the duration of `backward()`,
/// so buckets start during backward, and polls the communicator at every hook call (Open MPI
/// progresses non-blocking collectives only inside MPI calls); parameters the graph did not reach
/// are marked after backward. `average()` (or overlap = false) marks everything after backward:
/// communication then overlaps only the packing of later buckets (see docs/distributed.md).
///
/// Buckets live in the communicator's memory (dist/flat_buffer.hpp): host vectors for mpi
/// (CUDA gradients staged through them), device buffers for nccl.
///
/// Every rank must hold the same parameter list. A parameter without a gradient on this rank
/// contributes zeros and receives the averaged gradient, so all ranks take the same SGD step.
/// With overlap, every rank must also run the same graph (the same parameters reached, in the
/// same order — true for a model whose graph does not depend on the data): the buckets' all-
/// reduces are matched by start order, as DDP requires without find_unused_parameters.
#pragma once
#include <algorithm>
#include <chrono>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../autograd/engine.hpp"
#include "communicator.hpp"
#include "flat_buffer.hpp"

namespace mscl::dist {

template <class T, class B = cpu>
class gradient_buckets {
 public:
  using tensor_t = tensor<T, B>;

  gradient_buckets(std::vector<tensor_t> params, std::size_t bucket_bytes = std::size_t(25) << 20)
      : params_(std::move(params)) {
    MSCL_CHECK(bucket_bytes >= sizeof(T), value_error, "dist::gradient_buckets: bucket size must hold one element");
    const std::size_t cap = bucket_bytes / sizeof(T);
    bucket_of_.assign(params_.size(), 0);
    for (std::size_t k = params_.size(); k-- > 0;) {  // reverse: last layers' gradients come first
      MSCL_CHECK(params_[k].defined() && params_[k].is_contiguous(), value_error,
                 "dist::gradient_buckets: parameter " << k << " is undefined or not contiguous");
      const std::size_t n = std::size_t(params_[k].numel());
      if (buckets_.empty() || (buckets_.back().elements > 0 && buckets_.back().elements + n > cap)) buckets_.push_back({});
      auto& b = buckets_.back();
      b.members.push_back(k);
      b.offsets.push_back(b.elements);
      b.elements += n;
      bucket_of_[k] = buckets_.size() - 1;
    }
    marked_.assign(params_.size(), 0);
    for (std::size_t k = 0; k < params_.size(); ++k) index_of_[params_[k].impl().get()] = k;
  }

  std::size_t bucket_count() const { return buckets_.size(); }
  /// Seconds spent in finish() waiting for the all-reduces since the last call (then reset):
  /// the communication left exposed after backward, plus waiting for slower ranks.
  double take_wait_seconds() { return std::exchange(wait_seconds_, 0.0); }
  std::size_t bucket_elements(std::size_t i) const { return buckets_.at(i).elements; }

  /// Parameter k's gradient is final: when its bucket is complete, pack it and start its sum.
  void mark_ready(communicator& comm, std::size_t k) {
    MSCL_CHECK(k < params_.size() && !marked_[k], value_error,
               "dist::gradient_buckets: parameter " << k << " marked ready twice or out of range");
    marked_[k] = 1;
    auto& b = buckets_.at(bucket_of_.at(k));
    if (++b.ready < b.members.size()) return;
    // In the communicator's memory (created on first use: the constructor has no communicator).
    if (b.flat.size() != b.elements || b.flat.in_device_memory() != (comm.memory() == memory_kind::cuda_device))
      b.flat = flat_buffer<T, B>(comm, b.elements, "dist::gradient_buckets");
    for (std::size_t j = 0; j < b.members.size(); ++j) {
      const tensor_t g = params_[b.members[j]].grad();
      if (g.defined())
        b.flat.put(b.offsets[j], g);
      else
        b.flat.fill_zero(b.offsets[j], std::size_t(params_[b.members[j]].numel()));
    }
    b.flat.ready_for_collective();
    comm.start_all_reduce_sum(b.flat.data(), b.elements, "gradient all-reduce");
  }

  /// Waits for every started bucket and writes grad ← sum / size() into each parameter.
  void finish(communicator& comm) {
    const auto w0 = std::chrono::steady_clock::now();
    comm.wait_all("gradient all-reduce");
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
    const T scale = T(1) / T(comm.size());
    for (auto& b : buckets_) {
      MSCL_CHECK(b.ready == b.members.size(), value_error,
                 "dist::gradient_buckets: finish() with a bucket whose parameters were not all marked ready");
      for (std::size_t j = 0; j < b.members.size(); ++j) {
        tensor_t p = params_[b.members[j]];
        tensor_t g = p.grad();
        if (!g.defined() || !g.is_contiguous()) {  // allocate where this rank had no gradient
          p.set_grad(tensor_t::empty(p.shape()));
          g = p.grad();
        }
        b.flat.take(b.offsets[j], g, scale);
      }
      b.ready = 0;
    }
    std::fill(marked_.begin(), marked_.end(), 0);
  }

  /// All of it after backward: mark every parameter (reverse order), then finish.
  void average(communicator& comm) {
    if (comm.size() == 1) return;
    for (std::size_t k = params_.size(); k-- > 0;)
      if (!marked_[k]) mark_ready(comm, k);
    finish(comm);
  }

  /// loss.backward(), then every gradient ← its mean over ranks. overlap: buckets start during
  /// backward through the engine's gradient-ready hook (same results, see the file comment).
  void backward_and_average(communicator& comm, const tensor_t& loss, bool overlap = true) {
    if (comm.size() == 1) {
      loss.backward();
      return;
    }
    if (overlap) {
      autograd::grad_ready_fn<T, B> hook = [this, &comm](const tensor_t& leaf) {
        auto it = index_of_.find(leaf.impl().get());
        if (it != index_of_.end() && !marked_[it->second]) mark_ready(comm, it->second);
        comm.poll();
      };
      autograd::scoped_grad_ready_hook<T, B> scope(hook);
      loss.backward();
    } else {
      loss.backward();
    }
    average(comm);  // marks what the graph did not reach (reverse order), then waits and unpacks
  }

 private:
  struct bucket {
    std::vector<std::size_t> members;  ///< parameter indices
    std::vector<std::size_t> offsets;  ///< element offset of each member in `flat`
    std::size_t elements = 0;
    std::size_t ready = 0;
    flat_buffer<T, B> flat;  ///< in the communicator's memory
  };
  std::vector<tensor_t> params_;
  std::vector<bucket> buckets_;
  std::vector<std::size_t> bucket_of_;
  double wait_seconds_ = 0;
  std::vector<char> marked_;                                ///< per parameter, this step
  std::unordered_map<const void*, std::size_t> index_of_;  ///< tensor impl → parameter index
};

}  // namespace mscl::dist
