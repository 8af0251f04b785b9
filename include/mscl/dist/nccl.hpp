/// \file nccl.hpp
/// \brief NCCL transport for data-parallel training on GPUs (MSCL_WITH_NCCL, link `mscl::nccl`):
///        one rank per GPU, collectives on CUDA *device* pointers, enqueued on the
///        communicator's stream and awaited against a watchdog deadline.
///
/// Bootstrap: NCCL needs the same `ncclUniqueId` on every rank; `nccl_unique_id(comm)` makes it
/// on rank 0 and broadcasts it over any host communicator (MPI under mpirun/srun). Completion is
/// polled with cudaStreamQuery and ncclCommGetAsyncError; past the deadline (or on an
/// asynchronous NCCL error) the communicator is aborted with ncclCommAbort and the rank throws
/// an `mscl::error` naming the operation, so a dead peer never hangs the job.
///
/// Device buffers (the gradient buckets, key gathers and state broadcasts of CUDA training, via
/// dist/flat_buffer.hpp) go to NCCL directly; host buffers (the loop's scalars) are staged
/// through a device buffer.
///
/// Status: compiled in this project's CI (a host compiler, the CUDA 13 toolkit and NCCL 2 under
/// /usr/local/cuda) but never run with more than one rank: the development machines have no
/// GPU and the lent GPU machines have one (NCCL puts one rank per GPU).
#pragma once
#if !defined(MSCL_WITH_NCCL)
#error "mscl/dist/nccl.hpp needs NCCL: configure with -DMSCL_WITH_NCCL=ON and link mscl::nccl"
#endif
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <string>
#include <thread>

#include "communicator.hpp"

namespace mscl::dist {

namespace detail {
inline void nccl_check(ncclResult_t r, const char* what) {
  MSCL_CHECK(r == ncclSuccess || r == ncclInProgress, error, "dist::nccl: " << what << " failed: " << ncclGetErrorString(r));
}
inline void cuda_check(cudaError_t r, const char* what) {
  MSCL_CHECK(r == cudaSuccess, error, "dist::nccl: " << what << " failed: " << cudaGetErrorString(r));
}
}  // namespace detail

/// A NCCL unique id made by rank 0 and broadcast over a host communicator.
inline ncclUniqueId nccl_unique_id(communicator& host) {
  MSCL_CHECK(host.memory() == memory_kind::host, value_error, "dist::nccl_unique_id: needs a host communicator (mpi)");
  ncclUniqueId id{};
  if (host.rank() == 0) detail::nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  static_assert(sizeof(ncclUniqueId) % 8 == 0, "ncclUniqueId is sent as 64-bit words");
  std::int64_t words[sizeof(ncclUniqueId) / 8];
  std::memcpy(words, &id, sizeof id);
  host.broadcast(words, sizeof(ncclUniqueId) / 8, 0, "broadcast of the NCCL unique id");
  std::memcpy(&id, words, sizeof id);
  return id;
}

class nccl_communicator final : public communicator {
 public:
  /// Rank `rank` of `size` on CUDA device `device`; `id` from nccl_unique_id().
  nccl_communicator(int rank, int size, const ncclUniqueId& id, int device, double timeout_s = 300)
      : rank_(rank), size_(size), device_(device), timeout_(timeout_s) {
    MSCL_CHECK(size >= 1 && rank >= 0 && rank < size, value_error,
               "dist::nccl_communicator: rank " << rank << " outside [0, " << size << ")");
    MSCL_CHECK(timeout_s > 0, value_error, "dist::nccl_communicator: timeout must be positive, got " << timeout_s);
    detail::cuda_check(cudaSetDevice(device), "cudaSetDevice");
    detail::cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    detail::cuda_check(cudaMalloc(&scratch_, sizeof(std::int64_t)), "cudaMalloc");
    detail::nccl_check(ncclCommInitRank(&comm_, size, id, rank), "ncclCommInitRank");
  }
  ~nccl_communicator() override {
    if (comm_) ncclCommDestroy(comm_);
    if (scratch_) cudaFree(scratch_);
    if (staging_) cudaFree(staging_);
    if (stream_) cudaStreamDestroy(stream_);
  }
  nccl_communicator(const nccl_communicator&) = delete;
  nccl_communicator& operator=(const nccl_communicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "nccl"; }
  memory_kind memory() const override { return memory_kind::cuda_device; }
  double timeout_seconds() const override { return timeout_; }
  cudaStream_t stream() const { return stream_; }
  ncclComm_t native() const { return comm_; }

  [[noreturn]] void abort(const std::string& message, int code) override {
    std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
    std::_Exit(code);
  }

 protected:
  // Device buffers go to NCCL as they are (the caller has drained the stream that wrote them:
  // dist/flat_buffer.hpp). Host buffers — the training loop's scalars: iteration counters,
  // loss checks, shape checks — are staged through a device buffer, since NCCL reads and writes
  // device memory only; those collectives are blocking.
  void do_all_reduce_sum(void* data, std::size_t n, dtype t, const char* what) override {
    if (!is_device_pointer(data)) {
      in_place_on_staging(data, n * dtype_size(t), what,
                          [&](void* d) { return ncclAllReduce(d, d, n, type(t), ncclSum, comm_, stream_); });
      return;
    }
    do_start_all_reduce_sum(data, n, t, what);
    wait(what);
  }
  void do_all_gather(const void* in, std::size_t n, void* out, dtype t, const char* what) override {
    if (!is_device_pointer(in) || !is_device_pointer(out)) {
      const std::size_t bytes = n * dtype_size(t);
      auto* d = static_cast<char*>(staging(bytes * std::size_t(size_ + 1)));
      copy(d, in, bytes, is_device_pointer(in) ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice, what);
      detail::nccl_check(ncclAllGather(d, d + bytes, n, type(t), comm_, stream_), what);
      wait(what);  // under the watchdog (see in_place_on_staging)
      copy(out, d + bytes, bytes * std::size_t(size_),
           is_device_pointer(out) ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost, what);
      wait(what);
      return;
    }
    detail::nccl_check(ncclAllGather(in, out, n, type(t), comm_, stream_), what);
    wait(what);
  }
  void do_broadcast(void* data, std::size_t n, dtype t, int root, const char* what) override {
    if (!is_device_pointer(data)) {
      in_place_on_staging(data, n * dtype_size(t), what,
                          [&](void* d) { return ncclBroadcast(d, d, n, type(t), root, comm_, stream_); });
      return;
    }
    detail::nccl_check(ncclBroadcast(data, data, n, type(t), root, comm_, stream_), what);
    wait(what);
  }
  void do_start_all_reduce_sum(void* data, std::size_t n, dtype t, const char* what) override {
    if (!is_device_pointer(data)) {  // a host buffer: staged, so finished before returning
      do_all_reduce_sum(data, n, t, what);
      return;
    }
    detail::nccl_check(ncclAllReduce(data, data, n, type(t), ncclSum, comm_, stream_), what);
  }
  void do_wait_all(const char* what) override { wait(what); }
  void do_barrier(const char* what) override {
    detail::nccl_check(ncclAllReduce(scratch_, scratch_, 1, ncclInt64, ncclSum, comm_, stream_), what);
    wait(what);
  }

 private:
  /// Device (or managed) memory? Host memory, registered or not, is staged.
  static bool is_device_pointer(const void* p) {
    cudaPointerAttributes a{};
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
      (void)cudaGetLastError();  // older runtimes report plain host pointers as an error
      return false;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
  }
  /// A device buffer of at least `bytes`, reused across calls.
  void* staging(std::size_t bytes) {
    if (bytes > staging_bytes_) {
      if (staging_) detail::cuda_check(cudaFree(staging_), "cudaFree");
      staging_ = nullptr;
      detail::cuda_check(cudaMalloc(&staging_, bytes), "cudaMalloc (NCCL staging buffer)");
      staging_bytes_ = bytes;
    }
    return staging_;
  }
  void copy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind, const char* what) {
    detail::cuda_check(cudaMemcpyAsync(dst, src, bytes, kind, stream_), what);
  }
  /// An in-place collective on a host buffer: copied to the staging buffer, `op(device copy)`
  /// enqueued and awaited, copied back. The collective is awaited before the copy back: a
  /// device->host copy into pageable memory blocks the host until the stream reaches it, so a
  /// dead peer would hang there instead of meeting wait()'s deadline.
  template <class Op>
  void in_place_on_staging(void* host, std::size_t bytes, const char* what, Op&& op) {
    void* d = staging(bytes);
    copy(d, host, bytes, cudaMemcpyHostToDevice, what);
    detail::nccl_check(op(d), what);
    wait(what);
    copy(host, d, bytes, cudaMemcpyDeviceToHost, what);
    wait(what);
  }
  static ncclDataType_t type(dtype t) {
    switch (t) {
      case dtype::f32: return ncclFloat32;
      case dtype::f64: return ncclFloat64;
      default: return ncclInt64;
    }
  }
  /// Everything enqueued on the stream has finished, or the watchdog fires.
  void wait(const char* what) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_);
    for (;;) {
      const cudaError_t q = cudaStreamQuery(stream_);
      if (q == cudaSuccess) return;
      MSCL_CHECK(q == cudaErrorNotReady, error, "dist::nccl: " << what << ": " << cudaGetErrorString(q));
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      const bool late = std::chrono::steady_clock::now() > deadline;
      if (late || (async != ncclSuccess && async != ncclInProgress)) {
        ncclCommAbort(comm_);
        comm_ = nullptr;
        MSCL_CHECK(false, error,
                   "mscl::dist watchdog: nccl rank " << rank_ << " of " << size_ << " (device " << device_ << "): '" << what
                       << "' " << (late ? "did not complete within " + std::to_string(timeout_) + " s" : std::string("failed: ") + ncclGetErrorString(async))
                       << "; a peer process has died or stopped responding. The NCCL communicator was aborted.");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }

  int rank_ = 0, size_ = 1, device_ = 0;
  double timeout_ = 300;
  cudaStream_t stream_ = nullptr;
  ncclComm_t comm_ = nullptr;
  void* scratch_ = nullptr;
  void* staging_ = nullptr;  ///< device copy of host buffers (see the protected section)
  std::size_t staging_bytes_ = 0;
};

}  // namespace mscl::dist
