/// \file device_allocator.hpp
/// \brief The caching device allocator behind `storage<T, cuda>`.
///
/// Why: cudaMalloc/cudaFree synchronise the device and cost tens of microseconds to
/// milliseconds; a training step allocates the same sizes in the same order every iteration.
/// Freed blocks are kept in per-size-class free lists (the host allocator's size classes) and
/// handed out again. Reuse needs no events because all of the backend's work runs on one
/// stream (runtime.hpp): the next owner's kernels are queued after the last owner's.
/// On an out-of-memory error the cache is returned to the driver and the allocation retried
/// once. `empty_cache()` returns every cached block. Thread-safe.
#pragma once
#include <cstddef>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "../../core/allocator.hpp"
#include "runtime.hpp"

namespace mscl::cuda_backend {

class device_allocator {
 public:
  static device_allocator& instance() {
    static device_allocator* a = new device_allocator();  // never destroyed: safe at exit
    return *a;
  }

  void* allocate(std::size_t bytes) {
    const std::size_t size = caching_allocator::round_size(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        stats_.bytes_cached -= size;
        note_in_use(size);
        ++stats_.cache_hits;
        return p;
      }
    }
    (void)context();  // creates the stream before the first allocation
    void* p = nullptr;
    cudaError_t st = cudaMalloc(&p, size);
    if (st == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      empty_cache();
      st = cudaMalloc(&p, size);
    }
    MSCL_CHECK(st == cudaSuccess, cuda_error,
               "device_allocator: cudaMalloc of " << size << " bytes failed: " << cudaGetErrorName(st) << " ("
                                                  << cudaGetErrorString(st) << "); in use " << stats().bytes_in_use
                                                  << " bytes");
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.os_allocations;
    note_in_use(size);
    return p;
  }

  void deallocate(void* p, std::size_t bytes) noexcept {
    if (!p) return;
    const std::size_t size = caching_allocator::round_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.bytes_in_use -= size;
    try {
      free_[size].push_back(p);
      stats_.bytes_cached += size;
    } catch (...) {
      cudaFree(p);  // synchronises; only when the free list itself cannot grow
    }
  }

  /// Returns every cached block to the driver (waits for the stream first, since queued kernels
  /// may still read blocks that were freed on the host).
  void empty_cache() noexcept {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (free_.empty()) return;  // nothing cached (and maybe no context yet)
    }
    cudaStreamSynchronize(stream());  // blocks exist, so the context does
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& kv : free_)
      for (void* p : kv.second) cudaFree(p);
    free_.clear();
    stats_.bytes_cached = 0;
  }

  allocator_stats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

 private:
  device_allocator() = default;
  void note_in_use(std::size_t size) {
    stats_.bytes_in_use += size;
    if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
  }
  mutable std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  allocator_stats stats_;
};

}  // namespace mscl::cuda_backend
