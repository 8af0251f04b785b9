/// \file memory.hpp
/// \brief Device memory for `tensor<T, cuda>`: allocation through the caching device
///        allocator, fill, host<->device copies and strided device copies (the primitives that
///        core/tensor.hpp calls for device tensors), plus the user-facing transfers
///        `to_device`, `to_host` and `copy_state`.
#pragma once
#include <vector>

#include "../../core/tensor.hpp"
#include "device_allocator.hpp"
#include "elementwise.cuh"
#include "runtime.hpp"

namespace mscl::cuda_backend {

struct memory_ops {
  static void* allocate(std::size_t bytes) { return device_allocator::instance().allocate(bytes); }
  static void deallocate(void* p, std::size_t bytes) noexcept { device_allocator::instance().deallocate(p, bytes); }

  template <class T>
  static void fill(T* p, index_t n, T value) {
    if (n <= 0) return;
    if (value == T(0)) {
      MSCL_CUDA_CHECK(cudaMemsetAsync(p, 0, sizeof(T) * std::size_t(n), stream()));  // all-zero bits are 0.0
      return;
    }
    kernels::fill<<<grid_for(n), 256, 0, stream()>>>(p, n, value);
    MSCL_CUDA_CHECK_LAUNCH();
  }

  /// Host -> device. Returns once the host buffer may be reused (the copy is synchronous with
  /// respect to the host for pageable memory; the stream sync makes that explicit).
  template <class T>
  static void upload(const T* host, T* device, index_t n) {
    if (n <= 0) return;
    MSCL_CUDA_CHECK(cudaMemcpyAsync(device, host, sizeof(T) * std::size_t(n), cudaMemcpyHostToDevice, stream()));
    MSCL_CUDA_CHECK(cudaStreamSynchronize(stream()));
  }

  /// Device -> host; waits for every kernel queued before it (so results are final).
  template <class T>
  static void download(const T* device, T* host, index_t n) {
    if (n <= 0) return;
    MSCL_CUDA_CHECK(cudaMemcpyAsync(host, device, sizeof(T) * std::size_t(n), cudaMemcpyDeviceToHost, stream()));
    MSCL_CUDA_CHECK(cudaStreamSynchronize(stream()));
  }

  /// Waits until every kernel and copy queued on the compute stream has finished (before work
  /// on another stream, e.g. an NCCL collective, reads what they wrote).
  static void synchronize() { MSCL_CUDA_CHECK(cudaStreamSynchronize(stream())); }

  /// dst (strides dst_strides) <- src (strides src_strides), both of `shape`, on the device.
  template <class T>
  static void copy_strided(const T* src, const shape_t& shape, const shape_t& src_strides, T* dst,
                           const shape_t& dst_strides) {
    const index_t n = numel_of(shape);
    if (n <= 0) return;
    if (src_strides == contiguous_strides(shape) && dst_strides == src_strides) {
      MSCL_CUDA_CHECK(cudaMemcpyAsync(dst, src, sizeof(T) * std::size_t(n), cudaMemcpyDeviceToDevice, stream()));
      return;
    }
    // Drop extent-1 axes (their stride is irrelevant) to stay within the kernel's rank limit.
    kernels::strided_meta m;
    for (std::size_t a = 0; a < shape.size(); ++a) {
      if (shape[a] == 1) continue;
      MSCL_CHECK(m.rank < kernels::strided_meta::max_rank, shape_error,
                 "cuda copy_strided: more than " << kernels::strided_meta::max_rank
                                                 << " non-unit axes are not supported, shape " << to_string(shape));
      m.shape[m.rank] = shape[a];
      m.src_stride[m.rank] = src_strides[a];
      m.dst_stride[m.rank] = dst_strides[a];
      ++m.rank;
    }
    kernels::strided_copy<<<grid_for(n), 256, 0, stream()>>>(src, dst, n, m);
    MSCL_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace mscl::cuda_backend

namespace mscl {

/// A device copy of a host tensor (no autograd history; contiguous).
template <class T>
tensor<T, cuda> to_device(const tensor<T, cpu>& x) {
  return on_backend<cuda>(x);
}

/// A host copy of a device tensor (no autograd history; contiguous).
template <class T>
tensor<T, cpu> to_host(const tensor<T, cuda>& x) {
  return on_backend<cpu>(x);
}

/// Copies every parameter and buffer of `src` into `dst` (same architecture, any backends), in
/// state-dict order; names and shapes must match.
template <class SrcModule, class DstModule>
void copy_state(const SrcModule& src, DstModule& dst) {
  auto from = src.state_dict();
  auto to = dst.state_dict();
  MSCL_CHECK(from.size() == to.size(), shape_error,
             "copy_state: source has " << from.size() << " state entries, destination " << to.size());
  for (std::size_t i = 0; i < from.size(); ++i) {
    MSCL_CHECK(from[i].name == to[i].name && from[i].value.shape() == to[i].value.shape(), shape_error,
               "copy_state: entry " << i << " is '" << from[i].name << "' " << to_string(from[i].value.shape())
                                    << " in the source but '" << to[i].name << "' "
                                    << to_string(to[i].value.shape()) << " in the destination");
    using dst_tensor = std::decay_t<decltype(to[i].value)>;
    to[i].value.copy_from(dst_tensor::from_vector(from[i].value.shape(), from[i].value.to_vector()));
  }
}

}  // namespace mscl
