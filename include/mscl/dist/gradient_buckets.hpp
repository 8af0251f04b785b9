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
/// Overlap with the backward pass: `mark_ready(i)` starts bucket communication as soon as all of
/// its parameters' gradients are final, so a "gradient ready" hook of the autograd engine could
/// drive it during backward. The engine (autograd/engine.hpp) has no such hook today, so
/// `average()` marks every parameter after backward: communication overlaps packing of later
/// buckets, not the backward computation (see docs/distributed.md).
///
/// Every rank must hold the same parameter list. A parameter without a gradient on this rank
/// contributes zeros and receives the averaged gradient, so all ranks take the same SGD step.
#pragma once
#include <algorithm>
#include <vector>

#include "communicator.hpp"

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
    for (auto& b : buckets_) b.flat.resize(b.elements);
  }

  std::size_t bucket_count() const { return buckets_.size(); }
  std::size_t bucket_elements(std::size_t i) const { return buckets_.at(i).elements; }

  /// Parameter k's gradient is final: when its bucket is complete, pack it and start its sum.
  void mark_ready(communicator& comm, std::size_t k) {
    auto& b = buckets_.at(bucket_of_.at(k));
    if (++b.ready < b.members.size()) return;
    for (std::size_t j = 0; j < b.members.size(); ++j) {
      const tensor_t g = params_[b.members[j]].grad();
      T* dst = b.flat.data() + b.offsets[j];
      const std::size_t n = std::size_t(params_[b.members[j]].numel());
      if (g.defined()) {
        const tensor_t gc = g.is_contiguous() ? g : g.clone();
        std::copy_n(gc.data(), n, dst);
      } else {
        std::fill_n(dst, n, T(0));
      }
    }
    comm.start_all_reduce_sum(b.flat.data(), b.elements, "gradient all-reduce");
  }

  /// Waits for every started bucket and writes grad ← sum / size() into each parameter.
  void finish(communicator& comm) {
    comm.wait_all("gradient all-reduce");
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
        const T* src = b.flat.data() + b.offsets[j];
        T* dst = g.data();
        const index_t n = p.numel();
        for (index_t i = 0; i < n; ++i) dst[i] = src[i] * scale;
      }
      b.ready = 0;
    }
  }

  /// All of it after backward: mark every parameter (reverse order), then finish.
  void average(communicator& comm) {
    if (comm.size() == 1) return;
    for (std::size_t k = params_.size(); k-- > 0;) mark_ready(comm, k);
    finish(comm);
  }

 private:
  struct bucket {
    std::vector<std::size_t> members;  ///< parameter indices
    std::vector<std::size_t> offsets;  ///< element offset of each member in `flat`
    std::size_t elements = 0;
    std::size_t ready = 0;
    std::vector<T> flat;
  };
  std::vector<tensor_t> params_;
  std::vector<bucket> buckets_;
  std::vector<std::size_t> bucket_of_;
};

}  // namespace mscl::dist
