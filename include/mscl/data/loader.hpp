/// \file loader.hpp
/// \brief A prefetching data loader over any *slot source*: worker threads build the samples of
///        upcoming iterations into a bounded window while the consumer trains, and the consumer
///        gets collated batches through the same `batch(long iteration)` call that
///        `train::pretrain` already uses (the loader is itself a batch source).
///
/// Determinism. A slot source computes sample `slot` of iteration `i` as a pure function of its
/// seed, i and slot (each slot draws from its own counter-based Philox streams, core/rng.hpp), so
/// which worker builds which sample, and when, cannot change a bit of the result: the same seed
/// gives identical batches with 0 (synchronous), 1 or N workers, and starting at iteration k gives
/// the batches a run from 0 would have given from k on (exact resume).
///
/// Slot source requirements (`mscl_clip_source` is one):
///   using sample_type = ...;   // default-constructible, movable
///   using batch_type = ...;    // movable
///   index_t batch_size() const;                          // the global batch size G
///   sample_type sample(long iteration, index_t slot) const;  // thread-safe, pure in (seed, i, slot)
///   batch_type collate(std::vector<sample_type>&& samples) const;  // samples in slot order
///
/// Data parallelism. A rank produces only the slots [first, first + count) of the global batch
/// (`rank_slots`: rank r of W gets the r-th of W equal contiguous blocks), so ranks with the same
/// seed read disjoint samples whose union is exactly the world_size = 1 batch.
///
/// Failure model. An exception thrown while building a sample (e.g. `io_error` naming a corrupt
/// JPEG) is stored with its iteration and re-thrown, unchanged, by the consumer's `batch()` call
/// for that iteration — never swallowed, never a hang. When several slots of one batch fail, the
/// lowest slot's exception is the one re-thrown (deterministic). The destructor stops and joins
/// the workers (a worker in the middle of a sample finishes that sample first).
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/shape.hpp"

namespace mscl::data {

/// A contiguous block of slots of the global batch.
struct slot_range {
  index_t first = 0, count = 0;
  bool operator==(const slot_range& o) const { return first == o.first && count == o.count; }
};

/// The slots of `rank` among `world_size` ranks: [rank·G/W, (rank+1)·G/W). G must be a multiple of
/// W, so that every rank trains on the same per-rank batch (gradient averaging stays unbiased).
inline slot_range rank_slots(index_t global_batch, int rank, int world_size) {
  MSCL_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, config_error,
             "data::rank_slots: need 0 <= rank < world_size, got rank " << rank << " of " << world_size);
  MSCL_CHECK(global_batch >= 1 && global_batch % world_size == 0, config_error,
             "data::rank_slots: the global batch " << global_batch << " must be a positive multiple of world_size "
                                                   << world_size);
  const index_t per = global_batch / world_size;
  return {per * rank, per};
}

struct loader_options {
  int workers = 2;           ///< 0: every batch is built synchronously in the caller
  int queue_depth = 4;       ///< batches built or being built ahead of the consumer (>= 1)
  long start_iteration = 0;  ///< where prefetching begins (resume); batch(i) for another i restarts there
  int rank = 0, world_size = 1;  ///< this process's share of the global batch (rank_slots)
};

/// What the consumer saw.
struct loader_stats {
  long batches = 0;            ///< batches handed out
  double wait_seconds = 0;     ///< time the consumer spent blocked in batch() (synchronous: build time)
  long samples_built = 0;      ///< by workers (including ones discarded by a restart)
  double sample_seconds = 0;   ///< summed over workers: time inside source.sample()
  long restarts = 0;           ///< batch(i) calls that were not the next iteration
};

template <class Source>
class prefetch_loader {
 public:
  using sample_type = typename Source::sample_type;
  using batch_type = typename Source::batch_type;

  prefetch_loader(std::shared_ptr<const Source> source, const loader_options& o) : src_(std::move(source)), opt_(o) {
    MSCL_CHECK(src_ != nullptr, value_error, "data::prefetch_loader: no source");
    MSCL_CHECK(o.workers >= 0 && o.queue_depth >= 1, config_error,
               "data::prefetch_loader: need workers >= 0 and queue_depth >= 1, got " << o.workers << " and "
                                                                                      << o.queue_depth);
    MSCL_CHECK(o.start_iteration >= 0, config_error,
               "data::prefetch_loader: start_iteration must be >= 0, got " << o.start_iteration);
    slots_ = rank_slots(src_->batch_size(), o.rank, o.world_size);
    base_ = next_deliver_ = o.start_iteration;
    for (int w = 0; w < o.workers; ++w) threads_.emplace_back([this] { worker(); });
  }
  prefetch_loader(const prefetch_loader&) = delete;
  prefetch_loader& operator=(const prefetch_loader&) = delete;
  ~prefetch_loader() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    work_cv_.notify_all();
    ready_cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  /// The batch of `iteration` (this rank's slots). Blocks until it is built; re-throws the
  /// exception of a sample that failed. Consecutive iterations are served from the prefetch
  /// window; any other iteration restarts prefetching there.
  batch_type batch(long iteration) {
    MSCL_CHECK(iteration >= 0, value_error, "data::prefetch_loader::batch: negative iteration " << iteration);
    const auto t0 = std::chrono::steady_clock::now();
    if (threads_.empty()) {
      std::vector<sample_type> samples(static_cast<std::size_t>(slots_.count));
      for (index_t s = 0; s < slots_.count; ++s) samples[std::size_t(s)] = src_->sample(iteration, slots_.first + s);
      batch_type b = src_->collate(std::move(samples));
      std::lock_guard<std::mutex> lk(m_);
      stats_.wait_seconds += seconds_since(t0);
      ++stats_.batches;
      return b;
    }
    std::unique_lock<std::mutex> lk(m_);
    if (iteration != next_deliver_) {
      ++generation_;
      entries_.clear();
      base_ = next_deliver_ = iteration;
      next_task_ = 0;
      ++stats_.restarts;
      work_cv_.notify_all();
    }
    ready_cv_.wait(lk, [&] {
      const auto it = entries_.find(iteration);
      return it != entries_.end() && it->second.ready;
    });
    entry e = std::move(entries_.at(iteration));
    entries_.erase(iteration);
    next_deliver_ = iteration + 1;
    stats_.wait_seconds += seconds_since(t0);
    ++stats_.batches;
    lk.unlock();
    work_cv_.notify_all();
    for (const auto& err : e.errors)
      if (err) std::rethrow_exception(err);
    return std::move(e.batch);
  }

  loader_stats stats() const {
    std::lock_guard<std::mutex> lk(m_);
    return stats_;
  }
  const loader_options& options() const { return opt_; }
  slot_range slots() const { return slots_; }
  const Source& source() const { return *src_; }

 private:
  struct entry {
    std::vector<sample_type> samples;
    std::vector<std::exception_ptr> errors;  ///< per slot; errors.back() also holds a collate failure
    index_t remaining = 0;
    bool ready = false;
    batch_type batch{};
  };

  static double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  long task_iteration(long k) const { return base_ + k / long(slots_.count); }

  void worker() {
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      work_cv_.wait(lk, [&] { return stop_ || task_iteration(next_task_) < next_deliver_ + opt_.queue_depth; });
      if (stop_) return;
      const std::uint64_t gen = generation_;
      const long k = next_task_++;
      const long it = task_iteration(k);
      const index_t pos = index_t(k % long(slots_.count));
      entry& fresh = entries_[it];
      if (fresh.samples.empty()) {
        fresh.samples.resize(static_cast<std::size_t>(slots_.count));
        fresh.errors.resize(static_cast<std::size_t>(slots_.count) + 1);
        fresh.remaining = slots_.count;
      }
      lk.unlock();
      sample_type s{};
      std::exception_ptr err;
      const auto t0 = std::chrono::steady_clock::now();
      try {
        s = src_->sample(it, slots_.first + pos);
      } catch (...) {
        err = std::current_exception();
      }
      const double secs = seconds_since(t0);
      lk.lock();
      ++stats_.samples_built;
      stats_.sample_seconds += secs;
      if (gen != generation_) continue;  // a restart dropped this iteration
      entry& e = entries_.at(it);
      if (err) e.errors[std::size_t(pos)] = err;
      else e.samples[std::size_t(pos)] = std::move(s);
      if (--e.remaining > 0) continue;
      // Last sample of the batch: collate outside the lock.
      bool failed = false;
      for (const auto& x : e.errors) failed = failed || bool(x);
      batch_type b{};
      std::exception_ptr cerr;
      if (!failed) {
        std::vector<sample_type> samples = std::move(e.samples);
        lk.unlock();
        try {
          b = src_->collate(std::move(samples));
        } catch (...) {
          cerr = std::current_exception();
        }
        lk.lock();
        if (gen != generation_) continue;
      }
      entry& done = entries_.at(it);
      done.batch = std::move(b);
      if (cerr) done.errors.back() = cerr;
      done.samples.clear();
      done.ready = true;
      ready_cv_.notify_all();
    }
  }

  std::shared_ptr<const Source> src_;
  loader_options opt_;
  slot_range slots_;
  mutable std::mutex m_;
  std::condition_variable work_cv_, ready_cv_;
  std::vector<std::thread> threads_;
  bool stop_ = false;
  std::uint64_t generation_ = 0;
  long base_ = 0;          ///< first iteration of the current generation
  long next_task_ = 0;     ///< next task, counted from base_ (task k: iteration base_ + k / count, slot k % count)
  long next_deliver_ = 0;  ///< the iteration the consumer is expected to ask for next
  std::map<long, entry> entries_;
  loader_stats stats_;
};

}  // namespace mscl::data
