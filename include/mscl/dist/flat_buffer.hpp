/// \file flat_buffer.hpp
/// \brief `flat_buffer<T, B>`: a flat array of T in the memory a communicator works on, filled
///        from and emptied into tensors of backend B. It is what lets the tensor collectives
///        (communicator.hpp) and the gradient buckets serve CPU and CUDA training alike:
///
/// | tensors | communicator          | buffer      | a put / take is                       |
/// |---------|-----------------------|-------------|---------------------------------------|
/// | cpu     | host (single, mpi)    | host vector | a copy                                |
/// | cuda    | host (mpi)            | host vector | a device→host / host→device transfer  |
/// | cuda    | device (nccl)         | device      | a device copy                         |
/// | cpu     | device (nccl)         | —           | refused (config_error)                |
///
/// Before a device-memory collective, `ready_for_collective()` drains the compute stream: NCCL
/// runs on its own stream, which must not read the buffer before the copies into it finish.
/// (The host-memory transfers are synchronous already.)
#pragma once
#include <algorithm>
#include <vector>

#include "../core/tensor.hpp"
#include "../ops/elementwise.hpp"
#include "communicator.hpp"

namespace mscl::dist {

template <class T, class B>
class flat_buffer {
 public:
  static constexpr bool device_tensors = tensor<T, B>::is_device;

  flat_buffer() = default;
  flat_buffer(const communicator& comm, std::size_t n, const char* who)
      : device_memory_(comm.memory() == memory_kind::cuda_device), n_(n) {
    if constexpr (!device_tensors)
      MSCL_CHECK(!device_memory_, config_error,
                 who << ": the '" << comm.name()
                     << "' communicator works on CUDA device memory; CPU tensors need a host communicator (mpi)");
    if (device_memory_) {
      if constexpr (device_tensors) device_ = tensor<T, B>::empty({index_t(std::max<std::size_t>(n, 1))});
    } else {
      host_.assign(n, T(0));
    }
  }

  std::size_t size() const { return n_; }
  bool in_device_memory() const { return device_memory_; }
  /// The elements, in the communicator's memory (a device pointer for device communicators).
  T* data() { return device_memory_ ? device_data() : host_.data(); }

  /// buffer[at, at + src.numel()) <- src's elements in row-major order (any strides).
  void put(std::size_t at, const tensor<T, B>& src) {
    const std::size_t n = std::size_t(src.numel());
    check_range(at, n, "put");
    if (n == 0) return;
    const tensor<T, B> c = src.is_contiguous() ? src : src.clone();
    if constexpr (device_tensors) {
      if (device_memory_)
        backend::cuda_ops<B>::copy_strided(c.data(), {index_t(n)}, {1}, device_data() + at, {1});
      else
        backend::cuda_ops<B>::download(c.data(), host_.data() + at, index_t(n));
    } else {
      std::copy_n(c.data(), n, host_.data() + at);
    }
  }

  /// buffer[at, at + n) <- 0.
  void fill_zero(std::size_t at, std::size_t n) {
    check_range(at, n, "fill_zero");
    if (n == 0) return;
    if constexpr (device_tensors) {
      if (device_memory_) {
        backend::cuda_ops<B>::fill(device_data() + at, index_t(n), T(0));
        return;
      }
    }
    std::fill_n(host_.data() + at, n, T(0));
  }

  /// dst <- scale · buffer[at, at + dst.numel()) (dst contiguous; its shape says how many).
  void take(std::size_t at, tensor<T, B>& dst, T scale = T(1)) {
    const std::size_t n = std::size_t(dst.numel());
    check_range(at, n, "take");
    MSCL_CHECK(dst.is_contiguous(), value_error, "dist::flat_buffer::take: the destination is not contiguous");
    if (n == 0) return;
    if constexpr (device_tensors) {
      if (device_memory_) {
        const tensor<T, B> part = device_.view_as_strided(dst.shape(), contiguous_strides(dst.shape()), index_t(at));
        no_grad guard;
        dst.copy_from(scale == T(1) ? part : ops::scale(part, scale));
        return;
      }
      if (scale == T(1)) {
        backend::cuda_ops<B>::upload(host_.data() + at, dst.data(), index_t(n));
      } else {
        std::vector<T> scaled(host_.begin() + std::ptrdiff_t(at), host_.begin() + std::ptrdiff_t(at + n));
        for (T& v : scaled) v *= scale;
        backend::cuda_ops<B>::upload(scaled.data(), dst.data(), index_t(n));
      }
    } else {
      const T* src = host_.data() + at;
      T* out = dst.data();
      if (scale == T(1))
        std::copy_n(src, n, out);
      else
        for (std::size_t i = 0; i < n; ++i) out[i] = src[i] * scale;
    }
  }

  /// Call between the last put/fill_zero and the collective (see the file comment).
  void ready_for_collective() {
    if constexpr (device_tensors)
      if (device_memory_) backend::cuda_ops<B>::synchronize();
  }

 private:
  T* device_data() {
    if constexpr (device_tensors) return device_.data();
    return nullptr;
  }
  void check_range(std::size_t at, std::size_t n, const char* what) const {
    MSCL_CHECK(at + n <= n_, value_error,
               "dist::flat_buffer::" << what << ": elements [" << at << ", " << at + n << ") outside a buffer of "
                                     << n_);
  }

  bool device_memory_ = false;
  std::size_t n_ = 0;
  std::vector<T> host_;
  tensor<T, B> device_;  ///< only with device tensors and a device communicator
};

}  // namespace mscl::dist
