/// \file scripted_peer_communicator.hpp
/// \brief A 2-rank communicator inside one process, for tests of the tensor collectives and
///        gradient buckets without MPI or a second GPU: this process is `rank`, and the other
///        rank's part of every collective follows a fixed rule, so results are predictable:
///
///  - floating-point buffers: the peer's every element is `peer_value` (all-reduce adds it,
///    all-gather places a block of it, a broadcast from the peer writes it);
///  - 64-bit integer buffers (shape checks, counters): the peer mirrors this rank's values, as
///    an identical rank would.
///
/// `memory` says where the tensor buffers handed to it live. For `cuda_device`, every buffer
/// moves through `copy_to_host` / `copy_to_device` (the CUDA tests pass cudaMemcpy with
/// cudaMemcpyDefault, which also takes the host scalars that training code sends to any
/// communicator), so the device paths of dist/flat_buffer.hpp are exercised without NCCL.
/// Collectives complete at once (start = run).
#pragma once
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "../dist/communicator.hpp"

namespace mscl::testing {

class scripted_peer_communicator final : public dist::communicator {
 public:
  using byte_copy = std::function<void(void* dst, const void* src, std::size_t bytes)>;

  explicit scripted_peer_communicator(int rank, double peer_value = 1.5,
                                      dist::memory_kind memory = dist::memory_kind::host, byte_copy copy_to_host = {},
                                      byte_copy copy_to_device = {})
      : rank_(rank), peer_value_(peer_value), memory_(memory), to_host_(std::move(copy_to_host)),
        to_device_(std::move(copy_to_device)) {
    MSCL_CHECK(rank == 0 || rank == 1, value_error, "scripted_peer_communicator: rank must be 0 or 1, got " << rank);
    MSCL_CHECK(memory == dist::memory_kind::host || (to_host_ && to_device_), value_error,
               "scripted_peer_communicator: device memory needs both copy functions");
  }

  int rank() const override { return rank_; }
  int size() const override { return 2; }
  std::string name() const override { return "scripted_peer"; }
  dist::memory_kind memory() const override { return memory_; }
  [[noreturn]] void abort(const std::string& message, int) override { throw std::runtime_error(message); }

  int collectives() const { return collectives_; }

 protected:
  void do_all_reduce_sum(void* data, std::size_t n, dist::dtype t, const char*) override {
    ++collectives_;
    auto v = fetch(data, n, t);
    visit(v, t, [&](auto* p) {
      using E = std::remove_pointer_t<decltype(p)>;
      for (std::size_t i = 0; i < n; ++i) p[i] = std::is_integral_v<E> ? E(2 * p[i]) : E(p[i] + E(peer_value_));
    });
    store(data, v);
  }
  void do_all_gather(const void* in, std::size_t n, void* out, dist::dtype t, const char*) override {
    ++collectives_;
    const auto mine = fetch(in, n, t);
    std::vector<unsigned char> all(2 * mine.size());
    std::memcpy(all.data() + std::size_t(rank_) * mine.size(), mine.data(), mine.size());
    std::vector<unsigned char> peer = mine;
    if (t != dist::dtype::i64) fill_peer(peer, t);
    std::memcpy(all.data() + std::size_t(1 - rank_) * mine.size(), peer.data(), peer.size());
    store(out, all);
  }
  void do_broadcast(void* data, std::size_t n, dist::dtype t, int root, const char*) override {
    ++collectives_;
    if (root == rank_ || t == dist::dtype::i64) return;  // the peer's integers equal ours
    auto v = fetch(data, n, t);
    fill_peer(v, t);
    store(data, v);
  }
  void do_start_all_reduce_sum(void* data, std::size_t n, dist::dtype t, const char* what) override {
    do_all_reduce_sum(data, n, t, what);
  }
  void do_wait_all(const char*) override {}
  void do_barrier(const char*) override {}

 private:
  std::vector<unsigned char> fetch(const void* p, std::size_t n, dist::dtype t) const {
    std::vector<unsigned char> v(n * dist::dtype_size(t));
    if (memory_ == dist::memory_kind::host) std::memcpy(v.data(), p, v.size());
    else to_host_(v.data(), p, v.size());
    return v;
  }
  void store(void* p, const std::vector<unsigned char>& v) const {
    if (memory_ == dist::memory_kind::host) std::memcpy(p, v.data(), v.size());
    else to_device_(p, v.data(), v.size());
  }
  template <class F>
  void visit(std::vector<unsigned char>& v, dist::dtype t, F&& f) {
    if (t == dist::dtype::f32) f(reinterpret_cast<float*>(v.data()));
    else if (t == dist::dtype::f64) f(reinterpret_cast<double*>(v.data()));
    else f(reinterpret_cast<std::int64_t*>(v.data()));
  }
  void fill_peer(std::vector<unsigned char>& v, dist::dtype t) {
    visit(v, t, [&](auto* p) {
      using E = std::remove_pointer_t<decltype(p)>;
      for (std::size_t i = 0; i < v.size() / sizeof(E); ++i) p[i] = E(peer_value_);
    });
  }

  int rank_;
  double peer_value_;
  dist::memory_kind memory_;
  byte_copy to_host_, to_device_;
  int collectives_ = 0;
};

}  // namespace mscl::testing
