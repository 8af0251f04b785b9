/// \file communicator.hpp
/// \brief The communicator interface of data-parallel training (all-reduce, all-gather,
///        broadcast over the ranks of one job) and its zero-cost policy `single_process`.
///
/// Transports are existing engines, never a home-made one: `dist::mpi_communicator`
/// (dist/mpi.hpp, MSCL_WITH_MPI, host memory) and `dist::nccl_communicator` (dist/nccl.hpp,
/// MSCL_WITH_NCCL, CUDA device memory). The interface is type-erased (a small virtual class
/// over raw buffers) so that `train::pretrain_options` can hold any of them without becoming a
/// template; the element type is a template argument of the public calls and a tag of the
/// virtual ones. Training code never calls it when there is one rank, so the single-process path
/// costs nothing: `pretrain` checks `comm && comm->size() > 1` once and otherwise runs the
/// unchanged loop.
///
/// Semantics (every rank must make the same calls in the same order, as in MPI):
///  - all_reduce_sum(buf, n): buf ← Σ_ranks buf, on every rank;
///  - all_gather(in, n, out): out (size()·n elements) ← the n elements of rank 0, then rank 1, …;
///  - broadcast(buf, n, root): buf ← root's buf;
///  - start_all_reduce_sum / wait_all: the same sum, started now and finished by wait_all (the
///    gradient buckets of dist/gradient_buckets.hpp keep several in flight); poll() lets them
///    progress in between;
///  - every wait is bounded by a watchdog deadline: a peer that died or hangs turns into a clear
///    error naming the operation instead of a job that hangs forever (see dist/mpi.hpp).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"

namespace mscl::dist {

/// Element types that cross the wire.
enum class dtype { f32, f64, i64 };

template <class T>
constexpr dtype dtype_of() {
  if constexpr (std::is_same_v<T, float>) return dtype::f32;
  else if constexpr (std::is_same_v<T, double>) return dtype::f64;
  else {
    static_assert(std::is_same_v<T, std::int64_t>, "mscl::dist: only float, double and std::int64_t buffers are communicated");
    return dtype::i64;
  }
}
inline std::size_t dtype_size(dtype t) { return t == dtype::f32 ? 4 : 8; }

/// Where the buffers passed to a communicator live.
enum class memory_kind { host, cuda_device };

class communicator {
 public:
  virtual ~communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string name() const = 0;  ///< "single_process", "mpi", "nccl"
  virtual memory_kind memory() const { return memory_kind::host; }
  /// Watchdog deadline of one collective, in seconds.
  virtual double timeout_seconds() const { return 0; }
  /// Ends the whole job with `message` on stderr (MPI_Abort; a single process just exits):
  /// one failing rank must not leave the others waiting.
  [[noreturn]] virtual void abort(const std::string& message, int code) = 0;

  template <class T>
  void all_reduce_sum(T* data, std::size_t n, const char* what = "all_reduce") {
    if (n) do_all_reduce_sum(data, n, dtype_of<T>(), what);
  }
  template <class T>
  void all_gather(const T* in, std::size_t n, T* out, const char* what = "all_gather") {
    if (n) do_all_gather(in, n, out, dtype_of<T>(), what);
  }
  template <class T>
  void broadcast(T* data, std::size_t n, int root = 0, const char* what = "broadcast") {
    MSCL_CHECK(root >= 0 && root < size(), value_error,
               "dist::communicator::broadcast: root " << root << " outside [0, " << size() << ")");
    if (n) do_broadcast(data, n, dtype_of<T>(), root, what);
  }
  template <class T>
  void start_all_reduce_sum(T* data, std::size_t n, const char* what = "all_reduce") {
    if (n) do_start_all_reduce_sum(data, n, dtype_of<T>(), what);
  }
  void wait_all(const char* what = "wait_all") { do_wait_all(what); }
  /// Lets started collectives progress without waiting (MPI progresses non-blocking
  /// collectives only inside MPI calls); called between chunks of other work.
  void poll() { do_poll(); }
  void barrier(const char* what = "barrier") { do_barrier(what); }

 protected:
  virtual void do_all_reduce_sum(void* data, std::size_t n, dtype t, const char* what) = 0;
  virtual void do_all_gather(const void* in, std::size_t n, void* out, dtype t, const char* what) = 0;
  virtual void do_broadcast(void* data, std::size_t n, dtype t, int root, const char* what) = 0;
  virtual void do_start_all_reduce_sum(void* data, std::size_t n, dtype t, const char* what) = 0;
  virtual void do_wait_all(const char* what) = 0;
  virtual void do_barrier(const char* what) = 0;
  virtual void do_poll() {}
};

/// One process: rank 0 of 1. Sums and broadcasts leave the data as is, a gather copies.
class single_process final : public communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string name() const override { return "single_process"; }
  [[noreturn]] void abort(const std::string& message, int code) override {
    std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
    std::exit(code);
  }

 protected:
  void do_all_reduce_sum(void*, std::size_t, dtype, const char*) override {}
  void do_all_gather(const void* in, std::size_t n, void* out, dtype t, const char*) override {
    if (in != out) std::memmove(out, in, n * dtype_size(t));
  }
  void do_broadcast(void*, std::size_t, dtype, int, const char*) override {}
  void do_start_all_reduce_sum(void*, std::size_t, dtype, const char*) override {}
  void do_wait_all(const char*) override {}
  void do_barrier(const char*) override {}
};

}  // namespace mscl::dist
