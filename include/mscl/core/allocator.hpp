/// \file allocator.hpp
/// \brief A caching host allocator for activations and workspaces.
///
/// Why: on the project's VMs, returning large buffers to the OS and faulting them back in costs
/// about 20 % of a training step (../shared/spec/BASELINES.md, "Allocator"). A training step
/// allocates the same sizes in the same order every iteration, so freed blocks are kept in
/// per-size free lists and handed out again. Sizes are rounded up to size classes so that blocks
/// of nearly equal size are shared. Blocks are 64-byte aligned (one cache line, one zmm register).
/// `empty_cache()` returns everything cached to the OS. Thread-safe.
#pragma once
#include <cstddef>
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace mscl {

struct allocator_stats {
  std::size_t bytes_in_use = 0;      ///< handed out and not yet returned
  std::size_t bytes_cached = 0;      ///< returned and kept for reuse
  std::size_t peak_bytes_in_use = 0;
  std::size_t os_allocations = 0;    ///< calls that reached the OS allocator
  std::size_t cache_hits = 0;
};

class caching_allocator {
 public:
  static constexpr std::size_t alignment = 64;

  static caching_allocator& instance() {
    static caching_allocator* a = new caching_allocator();  // never destroyed: safe at exit
    return *a;
  }

  /// Size class: multiples of 512 B below 1 MiB, multiples of 1/16 of the next power of two
  /// above (at most 6 % waste).
  static std::size_t round_size(std::size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (bytes < (1u << 20)) return (bytes + 511) & ~std::size_t(511);
    std::size_t p = std::size_t(1) << 20;
    while (p < bytes) p <<= 1;
    const std::size_t step = p / 16;
    return (bytes + step - 1) / step * step;
  }

  void* allocate(std::size_t bytes) {
    const std::size_t size = round_size(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (enabled_) {
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
    }
    void* p = std::aligned_alloc(alignment, size);
    if (!p) {
      empty_cache();
      p = std::aligned_alloc(alignment, size);
      if (!p) throw std::bad_alloc();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.os_allocations;
    note_in_use(size);
    return p;
  }

  void deallocate(void* p, std::size_t bytes) noexcept {
    if (!p) return;
    const std::size_t size = round_size(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.bytes_in_use -= size;
    if (!enabled_) {
      std::free(p);
      return;
    }
    try {
      free_[size].push_back(p);
      stats_.bytes_cached += size;
    } catch (...) {
      std::free(p);
    }
  }

  /// Returns every cached block to the OS.
  void empty_cache() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& kv : free_)
      for (void* p : kv.second) std::free(p);
    free_.clear();
    stats_.bytes_cached = 0;
  }

  /// Caching on/off (off: every free goes to the OS; for measuring what the cache is worth).
  void set_enabled(bool on) {
    if (!on) empty_cache();
    std::lock_guard<std::mutex> lock(mutex_);
    enabled_ = on;
  }

  allocator_stats stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }

 private:
  caching_allocator() = default;
  void note_in_use(std::size_t size) {
    stats_.bytes_in_use += size;
    if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
  }
  mutable std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  allocator_stats stats_;
  bool enabled_ = true;
};

}  // namespace mscl
