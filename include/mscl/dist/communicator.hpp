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

// ------------------------------------------------------------------ tensor-level helpers (host)

/// Concatenates every rank's `x` along axis 0, in rank order: B×… on each rank → (size·B)×….
/// All ranks must pass the same shape (checked through a gather of the shapes' sizes).
template <class T, class B>
tensor<T, B> all_gather_rows(communicator& comm, const tensor<T, B>& x, const char* what = "all_gather_rows") {
  MSCL_CHECK(x.defined() && x.dim() >= 1, shape_error,
             "dist::all_gather_rows(" << what << "): need a tensor of rank >= 1, got "
                                      << (x.defined() ? to_string(x.shape()) : std::string("undefined")));
  const int world = comm.size();
  if (world == 1) return x;
  std::int64_t mine = std::int64_t(x.numel());
  std::vector<std::int64_t> sizes(std::size_t(world), 0);
  comm.all_gather(&mine, 1, sizes.data(), what);
  for (int r = 0; r < world; ++r)
    MSCL_CHECK(sizes[std::size_t(r)] == mine, shape_error,
               "dist::all_gather_rows(" << what << "): rank " << comm.rank() << " holds " << to_string(x.shape()) << " ("
                                        << mine << " elements) but rank " << r << " holds " << sizes[std::size_t(r)]
                                        << " elements; every rank must use the same per-rank batch");
  const tensor<T, B> xc = x.is_contiguous() ? x : x.clone();
  shape_t s = x.shape();
  s[0] *= world;
  tensor<T, B> out = tensor<T, B>::empty(s);
  comm.all_gather(xc.data(), std::size_t(xc.numel()), out.data(), what);
  return out;
}

/// Broadcasts a list of same-typed tensors from `root` with ONE collective: they are packed
/// into a flat buffer (hundreds of BN buffers would otherwise cost hundreds of latencies).
template <class T, class B>
void broadcast_tensors(communicator& comm, const std::vector<tensor<T, B>>& ts, int root, const char* what) {
  if (comm.size() == 1) return;
  std::size_t total = 0;
  for (const auto& t : ts) total += std::size_t(t.numel());
  std::vector<T> flat(total);
  std::size_t at = 0;
  for (const auto& t : ts) {
    const tensor<T, B> c = t.is_contiguous() ? t : t.clone();
    std::copy_n(c.data(), c.numel(), flat.data() + at);
    at += std::size_t(t.numel());
  }
  comm.broadcast(flat.data(), total, root, what);
  at = 0;
  for (auto t : ts) {
    MSCL_CHECK(t.is_contiguous(), value_error, "dist::broadcast_tensors(" << what << "): a target tensor is not contiguous");
    std::copy_n(flat.data() + at, t.numel(), t.data());
    at += std::size_t(t.numel());
  }
}

}  // namespace mscl::dist
