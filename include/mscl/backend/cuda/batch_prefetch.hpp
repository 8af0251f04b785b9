/// \file batch_prefetch.hpp
/// \brief Overlaps the per-iteration host→device copy of a training batch with the GPU's work:
///        the machinery behind `data::on_backend_source<cuda, …>` with
///        `on_backend_options::overlap_copies` (data/on_backend_source.hpp includes this header
///        under nvcc in builds with MSCL_WITH_CUDA only; no kernels).
///
/// After handing out the batch of iteration i, `batch_prefetcher::batch(i)` asks its worker thread
/// to prepare iteration i+1 while the training step runs:
///   worker   fetch(i+1) (the wrapped host source; only the worker calls it while a job is
///            pending) → wait for event `copied_` (the previous H2D copy has read the pinned
///            buffer) → memcpy every tensor of the batch into one pinned host buffer
///            (cudaHostAlloc, reused, grown when a batch is larger) → on the wrapper's own
///            non-blocking copy stream: wait for event `staging_free_`, one cudaMemcpyAsync
///            pinned → device staging buffer, record `copied_`.
///   consumer batch(i+1): wait for the job (its exception is re-thrown, type kept, message
///            prefixed with the iteration), make the compute stream (`stream()`) wait for
///            `copied_`, allocate the batch's tensors normally (caching allocator) and copy
///            staging → tensors on the compute stream (device to device), record `staging_free_`
///            on the compute stream; then hand the worker iteration i+2.
/// The device staging buffer is a cudaMalloc of its own, never a caching-allocator block: the
/// allocator's reuse rule assumes that every user of a block runs on the compute stream
/// (device_allocator.hpp), and the copy stream writes the staging while the compute stream still
/// runs the previous step. One staging buffer (pinned + device) and the two events suffice: the
/// copy of i+1 waits only for the device-to-device copies of i, which the compute stream runs
/// before step i's kernels.
///
/// A request for another iteration than the prepared one (resume, a jump) waits for the job,
/// drops it, copies that iteration synchronously (ssl::batch_on_backend: pageable, as without
/// overlap) and prepares the next one from there. The destructor waits for the pending job (the
/// wrapped source is asked for one batch beyond the last one used), stops the worker and
/// synchronises both streams before freeing the buffers.
///
/// Not thread-safe: one consumer thread calls batch(). The wrapped source is called from the
/// worker thread (never concurrently with the consumer's own calls).
#pragma once
#if !defined(__CUDACC__)
#error "mscl/backend/cuda/batch_prefetch.hpp is compiled by nvcc only (data/on_backend_source.hpp includes it under nvcc)"
#endif
#include <array>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "../../ssl/mscl_objective.hpp"
#include "cuda.hpp"

namespace mscl::cuda_backend {

namespace detail {

/// Re-throws the exception in `e` with `context` in front of its message: mscl's error types keep
/// their type (an io_error stays an io_error), any other std::exception becomes mscl::error.
[[noreturn]] inline void rethrow_with_context(const std::exception_ptr& e, const std::string& context) {
  try {
    std::rethrow_exception(e);
  } catch (const cuda_error& x) {
    throw cuda_error(context + x.what());
  } catch (const shape_error& x) {
    throw shape_error(context + x.what());
  } catch (const value_error& x) {
    throw value_error(context + x.what());
  } catch (const io_error& x) {
    throw io_error(context + x.what());
  } catch (const config_error& x) {
    throw config_error(context + x.what());
  } catch (const numeric_error& x) {
    throw numeric_error(context + x.what());
  } catch (const std::exception& x) {
    throw error(context + x.what());
  } catch (...) {
    throw error(context + "an exception not derived from std::exception");
  }
}

}  // namespace detail

/// Counts of how batches reached the device (see batch_prefetcher).
struct batch_prefetch_stats {
  long overlapped = 0;   ///< handed out from the background copy
  long synchronous = 0;  ///< copied on request (the first batch, and after a jump)
  long discarded = 0;    ///< prepared batches dropped because another iteration was asked for
};

template <class T>
class batch_prefetcher {
 public:
  using host_batch = ssl::mscl_batch<T, cpu>;
  using device_batch = ssl::mscl_batch<T, cuda>;
  using fetch_fn = std::function<host_batch(long)>;

  /// `fetch(i)`: the host batch of iteration i (a pure function of i). Binds to the device that is
  /// current on the calling thread (the backend's context) and starts the worker thread.
  explicit batch_prefetcher(fetch_fn fetch) : fetch_(std::move(fetch)) {
    device_ = context().device;
    try {
      MSCL_CUDA_CHECK(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking));
      // Blocking sync: a thread waiting for an event sleeps instead of spinning on a core the
      // loader's workers could use.
      MSCL_CUDA_CHECK(cudaEventCreateWithFlags(&copied_, cudaEventDisableTiming | cudaEventBlockingSync));
      MSCL_CUDA_CHECK(cudaEventCreateWithFlags(&staging_free_, cudaEventDisableTiming | cudaEventBlockingSync));
      worker_ = std::thread([this] { worker_loop(); });
    } catch (...) {
      release();
      throw;
    }
  }

  batch_prefetcher(const batch_prefetcher&) = delete;
  batch_prefetcher& operator=(const batch_prefetcher&) = delete;

  ~batch_prefetcher() {
    long ignored_iteration = 0;
    std::exception_ptr ignored_error;
    collect(ignored_iteration, ignored_error);
    {
      std::lock_guard<std::mutex> lk(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
    release();
  }

  /// The batch of `iteration` on the device; afterwards the worker prepares iteration + 1.
  device_batch batch(long iteration) {
    long ready = 0;
    std::exception_ptr err;
    if (collect(ready, err)) {
      if (ready == iteration) {
        if (err)
          detail::rethrow_with_context(err, "data::on_backend_source: the batch of iteration " + std::to_string(iteration) +
                                                ", prepared in the background (on_backend_options::overlap_copies), "
                                                "failed: ");
        device_batch out = take_staged();
        ++stats_.overlapped;
        start(iteration + 1);
        return out;
      }
      ++stats_.discarded;  // a failure of the dropped job is dropped with it
    }
    host_batch h = fetch_(iteration);
    device_batch out = ssl::batch_on_backend<cuda>(h);
    // Size the staging from this batch here, on the consumer thread, where a failing cudaMalloc
    // may empty the allocator's cache and retry; the worker grows it only for a larger batch.
    reserve(plan(h).bytes, true);
    ++stats_.synchronous;
    start(iteration + 1);
    return out;
  }

  const batch_prefetch_stats& stats() const { return stats_; }

 private:
  static constexpr std::size_t parts = 6;
  static constexpr std::size_t alignment = 256;  // each part's offset in the staging

  template <class Batch>
  static auto parts_of(Batch& b) {
    return std::array<decltype(&b.rgb_q), parts>{&b.rgb_q,  &b.rgb_k,      &b.flow_q,
                                                 &b.flow_k, &b.flow_aug_q, &b.flow_aug_k};
  }

  struct layout_t {
    std::array<bool, parts> defined{};
    std::array<shape_t, parts> shapes;
    std::array<std::size_t, parts> offsets{}, sizes{};  // bytes
    std::size_t bytes = 0;
  };

  static layout_t plan(host_batch& h) {
    layout_t l;
    const auto src = parts_of(h);
    for (std::size_t k = 0; k < parts; ++k) {
      if (!src[k]->defined()) continue;
      l.defined[k] = true;
      l.shapes[k] = src[k]->shape();
      l.offsets[k] = l.bytes;
      l.sizes[k] = sizeof(T) * std::size_t(src[k]->numel());
      l.bytes += (l.sizes[k] + alignment - 1) / alignment * alignment;
    }
    return l;
  }

  // ---- the worker thread
  void worker_loop() {
    bool bound = false;
    std::unique_lock<std::mutex> lk(mutex_);
    for (;;) {
      cv_.wait(lk, [&] { return stop_ || (job_pending_ && !job_done_); });
      if (stop_) return;
      const long it = job_iteration_;
      lk.unlock();
      std::exception_ptr err;
      try {
        if (!bound) {  // the runtime's current device is per thread
          MSCL_CUDA_CHECK(cudaSetDevice(device_));
          bound = true;
        }
        prepare(it);
      } catch (...) {
        err = std::current_exception();
      }
      lk.lock();
      job_error_ = err;
      job_done_ = true;
      cv_.notify_all();
    }
  }

  /// Worker: host batch of `iteration` → pinned buffer → (copy stream) device staging.
  void prepare(long iteration) {
    host_batch h = fetch_(iteration);
    layout_ = plan(h);
    staged_photometric_q_ = h.rgb_photometric_q;  // host tables travel with the batch, uncopied
    staged_photometric_k_ = h.rgb_photometric_k;
    // The pinned buffer may still feed the previous host→device copy.
    MSCL_CUDA_CHECK(cudaEventSynchronize(copied_));
    reserve(layout_.bytes, false);
    const auto src = parts_of(h);
    for (std::size_t k = 0; k < parts; ++k) {
      if (!layout_.defined[k] || layout_.sizes[k] == 0) continue;
      const tensor<T, cpu> c = src[k]->is_contiguous() ? *src[k] : src[k]->clone();
      std::memcpy(pinned_ + layout_.offsets[k], c.data(), layout_.sizes[k]);
    }
    // The device staging may still be read by the consumer's copies of the previous batch.
    MSCL_CUDA_CHECK(cudaStreamWaitEvent(copy_stream_, staging_free_, 0));
    if (layout_.bytes > 0)
      MSCL_CUDA_CHECK(cudaMemcpyAsync(device_staging_, pinned_, layout_.bytes, cudaMemcpyHostToDevice, copy_stream_));
    MSCL_CUDA_CHECK(cudaEventRecord(copied_, copy_stream_));
  }

  // ---- the consumer side
  void start(long iteration) {
    {
      std::lock_guard<std::mutex> lk(mutex_);
      job_iteration_ = iteration;
      job_pending_ = true;
      job_done_ = false;
      job_error_ = nullptr;
    }
    cv_.notify_all();
  }

  /// Waits for the pending job, if any: true with its iteration and failure.
  bool collect(long& iteration, std::exception_ptr& err) {
    std::unique_lock<std::mutex> lk(mutex_);
    if (!job_pending_) return false;
    cv_.wait(lk, [&] { return job_done_; });
    job_pending_ = false;
    iteration = job_iteration_;
    err = std::exchange(job_error_, nullptr);
    return true;
  }

  /// Consumer: device staging → freshly allocated tensors, on the compute stream after the copy.
  device_batch take_staged() {
    MSCL_CUDA_CHECK(cudaStreamWaitEvent(stream(), copied_, 0));
    struct record_free {  // also when an allocation below throws: the copies issued so far read the staging
      cudaEvent_t event;
      ~record_free() { cudaEventRecord(event, stream()); }
    } guard{staging_free_};
    device_batch out;
    const auto dst = parts_of(out);
    for (std::size_t k = 0; k < parts; ++k) {
      if (!layout_.defined[k]) continue;
      *dst[k] = tensor<T, cuda>::empty(layout_.shapes[k]);
      if (layout_.sizes[k] > 0)
        MSCL_CUDA_CHECK(cudaMemcpyAsync(dst[k]->data(), device_staging_ + layout_.offsets[k], layout_.sizes[k],
                                        cudaMemcpyDeviceToDevice, stream()));
    }
    out.rgb_photometric_q = std::move(staged_photometric_q_);
    out.rgb_photometric_k = std::move(staged_photometric_k_);
    return out;
  }

  // ---- buffers (touched by one thread at a time: the worker during a job, the consumer otherwise)
  void reserve(std::size_t bytes, bool on_consumer_thread) {
    if (bytes <= capacity_) return;
    // Both buffers may still be in use: the pinned one by the last host→device copy, the device
    // one by it and by the consumer's device-to-device copies.
    MSCL_CUDA_CHECK(cudaEventSynchronize(copied_));
    MSCL_CUDA_CHECK(cudaEventSynchronize(staging_free_));
    free_buffers();
    const std::size_t mib = std::size_t(1) << 20;
    const std::size_t want = (bytes + mib - 1) / mib * mib;
    void* host = nullptr;
    MSCL_CUDA_CHECK(cudaHostAlloc(&host, want, cudaHostAllocDefault));
    pinned_ = static_cast<unsigned char*>(host);
    void* dev = nullptr;
    cudaError_t st = cudaMalloc(&dev, want);
    if (st == cudaErrorMemoryAllocation && on_consumer_thread) {
      cudaGetLastError();
      device_allocator::instance().empty_cache();  // synchronises the compute stream: consumer thread only
      st = cudaMalloc(&dev, want);
    }
    MSCL_CHECK(st == cudaSuccess, cuda_error,
               "data::on_backend_source (overlap_copies): cudaMalloc of the " << want << "-byte device staging buffer failed: "
                                                                             << cudaGetErrorName(st) << " ("
                                                                             << cudaGetErrorString(st)
                                                                             << "); on_backend_options::overlap_copies = "
                                                                                "false copies without staging");
    device_staging_ = static_cast<unsigned char*>(dev);
    capacity_ = want;
  }

  void free_buffers() noexcept {
    if (pinned_) cudaFreeHost(pinned_);
    if (device_staging_) cudaFree(device_staging_);
    pinned_ = device_staging_ = nullptr;
    capacity_ = 0;
  }

  /// Frees everything after the queued copies that read the buffers (either stream) are done.
  void release() noexcept {
    if (copy_stream_) cudaStreamSynchronize(copy_stream_);
    if (staging_free_) cudaEventSynchronize(staging_free_);
    free_buffers();
    if (copied_) cudaEventDestroy(copied_);
    if (staging_free_) cudaEventDestroy(staging_free_);
    if (copy_stream_) cudaStreamDestroy(copy_stream_);
    copied_ = staging_free_ = nullptr;
    copy_stream_ = nullptr;
  }

  fetch_fn fetch_;
  tensor<float, cpu> staged_photometric_q_, staged_photometric_k_;  ///< the staged batch's host tables
  int device_ = 0;
  cudaStream_t copy_stream_ = nullptr;
  cudaEvent_t copied_ = nullptr;        ///< recorded on the copy stream after the staging copy
  cudaEvent_t staging_free_ = nullptr;  ///< recorded on the compute stream after its copies out of the staging
  unsigned char* pinned_ = nullptr;
  unsigned char* device_staging_ = nullptr;
  std::size_t capacity_ = 0;  ///< bytes of each of the two buffers
  layout_t layout_;           ///< of the batch in the staging (written by the worker's job)
  batch_prefetch_stats stats_;

  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool job_pending_ = false;  ///< handed to the worker and not yet collected
  bool job_done_ = false;
  long job_iteration_ = 0;
  std::exception_ptr job_error_;
  std::thread worker_;  // last: started after everything it uses exists
};

}  // namespace mscl::cuda_backend
