/// \file tensor_collectives.hpp
/// \brief Collectives over tensors of any backend: `all_gather_rows` (the key all-gather of the
///        queues and of cross-rank shuffle-BN) and `broadcast_tensors` (training state at start
///        and BN buffers after each step). Elements travel through a `flat_buffer` in the
///        communicator's memory (host for mpi, device for nccl; CUDA tensors with mpi are staged
///        through the host), so CPU and CUDA training share this code.
#pragma once
#include <cstdint>
#include <vector>

#include "communicator.hpp"
#include "flat_buffer.hpp"

namespace mscl::dist {

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
  comm.all_gather(&mine, 1, sizes.data(), what);  // host scalars: every communicator takes them
  for (int r = 0; r < world; ++r)
    MSCL_CHECK(sizes[std::size_t(r)] == mine, shape_error,
               "dist::all_gather_rows(" << what << "): rank " << comm.rank() << " holds " << to_string(x.shape()) << " ("
                                        << mine << " elements) but rank " << r << " holds " << sizes[std::size_t(r)]
                                        << " elements; every rank must use the same per-rank batch");
  const std::size_t n = std::size_t(x.numel());
  flat_buffer<T, B> in(comm, n, what), out(comm, n * std::size_t(world), what);
  in.put(0, x);
  in.ready_for_collective();
  comm.all_gather(in.data(), n, out.data(), what);
  shape_t s = x.shape();
  s[0] *= world;
  tensor<T, B> result = tensor<T, B>::empty(s);
  out.take(0, result);
  return result;
}

/// Broadcasts a list of same-typed tensors from `root` with ONE collective: they are packed
/// into a flat buffer (hundreds of BN buffers would otherwise cost hundreds of latencies).
template <class T, class B>
void broadcast_tensors(communicator& comm, const std::vector<tensor<T, B>>& ts, int root, const char* what) {
  if (comm.size() == 1) return;
  std::size_t total = 0;
  for (const auto& t : ts) total += std::size_t(t.numel());
  flat_buffer<T, B> flat(comm, total, what);
  std::size_t at = 0;
  for (const auto& t : ts) {
    flat.put(at, t);
    at += std::size_t(t.numel());
  }
  flat.ready_for_collective();
  comm.broadcast(flat.data(), total, root, what);
  at = 0;
  for (auto t : ts) {
    MSCL_CHECK(t.is_contiguous(), value_error, "dist::broadcast_tensors(" << what << "): a target tensor is not contiguous");
    flat.take(at, t);
    at += std::size_t(t.numel());
  }
}

}  // namespace mscl::dist
