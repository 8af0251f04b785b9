/// \file tensor.hpp
/// \brief `tensor<T, Backend>`: shape, strides, views over reference-counted storage, and the
///        autograd fields (requires_grad, grad, grad_fn) that autograd/ operates on.
///
/// A tensor is a handle: copying it shares the same data and autograd identity (like a
/// `torch.Tensor`). `clone()` deep-copies, `detach()` shares data without autograd history.
/// Layout is row-major with explicit strides in elements; clips are `ncthw`, flow `n2thw`,
/// 3-D filters `kctrs` (out, in, kT, kH, kW).
#pragma once
#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "../backend/tags.hpp"
#include "allocator.hpp"
#include "error.hpp"
#include "shape.hpp"

namespace mscl {

template <class T, class Backend = cpu>
class tensor;

namespace autograd {
template <class T, class Backend>
struct node;
}  // namespace autograd

namespace backend {
/// The CUDA backend's entry points (device memory, kernels, ops), defined only by
/// backend/cuda/cuda.hpp (compiled by nvcc with MSCL_WITH_CUDA). Host code names it only inside
/// `if constexpr (std::is_same_v<B, cuda>)` branches, so cpu builds never instantiate it.
template <class Backend>
struct cuda_ops;
}  // namespace backend

/// Reference-counted memory of one backend.
template <class T, class Backend>
class storage {
#if defined(MSCL_WITH_CUDA)
  static_assert(std::is_same_v<Backend, cpu> || std::is_same_v<Backend, cuda>, "mscl::storage: unknown backend");
#else
  static_assert(std::is_same_v<Backend, cpu>,
                "mscl::storage: only the cpu backend is compiled in this build; the cuda backend "
                "lives in mscl/backend/cuda/ and needs MSCL_WITH_CUDA (link mscl::cuda, compile with nvcc)");
#endif

 public:
  explicit storage(index_t count) : count_(count) {
    if constexpr (std::is_same_v<Backend, cpu>)
      data_ = static_cast<T*>(caching_allocator::instance().allocate(bytes()));
    else
      data_ = static_cast<T*>(backend::cuda_ops<Backend>::allocate(bytes()));
  }
  storage(const storage&) = delete;
  storage& operator=(const storage&) = delete;
  ~storage() {
    if constexpr (std::is_same_v<Backend, cpu>)
      caching_allocator::instance().deallocate(data_, bytes());
    else
      backend::cuda_ops<Backend>::deallocate(data_, bytes());
  }
  T* data() { return data_; }
  const T* data() const { return data_; }
  index_t count() const { return count_; }
  std::size_t bytes() const { return std::size_t(count_ > 0 ? count_ : 1) * sizeof(T); }

 private:
  T* data_ = nullptr;
  index_t count_ = 0;
};

template <class T, class Backend>
struct tensor_impl {
  std::shared_ptr<storage<T, Backend>> store;
  index_t offset = 0;
  shape_t shape;
  shape_t strides;
  bool requires_grad = false;
  std::shared_ptr<tensor_impl> grad;                          ///< accumulated by backward()
  std::shared_ptr<autograd::node<T, Backend>> grad_fn;        ///< null for leaves
};

template <class T, class Backend>
class tensor {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "mscl::tensor: element type must be float or double");
  static_assert(is_backend_v<Backend>, "mscl::tensor: Backend must be mscl::cpu or mscl::cuda");

 public:
  using value_type = T;
  using backend_type = Backend;
  using impl_type = tensor_impl<T, Backend>;
  /// Device tensors: data() is a device pointer; element access goes through copies.
  static constexpr bool is_device = !std::is_same_v<Backend, cpu>;

  tensor() = default;
  explicit tensor(std::shared_ptr<impl_type> impl) : impl_(std::move(impl)) {}

  // ------------------------------------------------------------------ factories
  /// Uninitialised contiguous tensor.
  static tensor empty(const shape_t& shape) {
    for (index_t d : shape)
      MSCL_CHECK(d >= 0, shape_error, "tensor::empty: negative extent in shape " << to_string(shape));
    auto impl = std::make_shared<impl_type>();
    impl->store = std::make_shared<storage<T, Backend>>(numel_of(shape));
    impl->shape = shape;
    impl->strides = contiguous_strides(shape);
    return tensor(std::move(impl));
  }
  static tensor full(const shape_t& shape, T value) {
    tensor t = empty(shape);
    if constexpr (is_device) backend::cuda_ops<Backend>::fill(t.data(), t.numel(), value);
    else std::fill_n(t.data(), t.numel(), value);
    return t;
  }
  static tensor zeros(const shape_t& shape) {
    tensor t = empty(shape);
    if constexpr (is_device) backend::cuda_ops<Backend>::fill(t.data(), t.numel(), T(0));
    else if (t.numel() > 0) std::memset(static_cast<void*>(t.data()), 0, sizeof(T) * std::size_t(t.numel()));
    return t;
  }
  static tensor ones(const shape_t& shape) { return full(shape, T(1)); }
  static tensor scalar(T value) { return full({}, value); }
  static tensor from_vector(const shape_t& shape, const std::vector<T>& values) {
    MSCL_CHECK(index_t(values.size()) == numel_of(shape), shape_error,
               "tensor::from_vector: shape " << to_string(shape) << " holds " << numel_of(shape)
                                             << " elements but " << values.size() << " values were given");
    tensor t = empty(shape);
    if constexpr (is_device) backend::cuda_ops<Backend>::upload(values.data(), t.data(), t.numel());
    else std::copy(values.begin(), values.end(), t.data());
    return t;
  }
  static tensor zeros_like(const tensor& other) { return zeros(other.shape()); }
  static tensor empty_like(const tensor& other) { return empty(other.shape()); }

  // ------------------------------------------------------------------ geometry
  bool defined() const { return impl_ != nullptr; }
  const shape_t& shape() const { return checked().shape; }
  const shape_t& strides() const { return checked().strides; }
  int dim() const { return int(shape().size()); }
  index_t size(int axis) const { return shape()[std::size_t(normalize_axis(axis, shape().size(), "tensor::size"))]; }
  index_t numel() const { return numel_of(shape()); }
  index_t offset() const { return checked().offset; }
  bool is_contiguous() const {
    const auto& s = shape();
    const auto& st = strides();
    index_t expect = 1;
    for (std::size_t i = s.size(); i-- > 0;) {
      if (s[i] != 1 && st[i] != expect) return false;
      expect *= s[i];
    }
    return true;
  }

  T* data() { return checked().store->data() + checked().offset; }
  const T* data() const { return checked().store->data() + checked().offset; }

  /// Element access by multi-index (checked; for tests and small tensors, not hot loops).
  /// Device tensors: only the reading overload (one copy to the host per call).
  T& at(const shape_t& index) {
    static_assert(!is_device, "tensor::at: element references exist only for host tensors; read with at() const "
                              "or to_vector(), write with copy_from()");
    return data()[linear_offset(index)];
  }
  T at(const shape_t& index) const {
    if constexpr (is_device) {
      T v;
      backend::cuda_ops<Backend>::download(data() + linear_offset(index), &v, 1);
      return v;
    } else {
      return data()[linear_offset(index)];
    }
  }
  T item() const {
    MSCL_CHECK(numel() == 1, shape_error, "tensor::item: needs exactly one element, shape is " << to_string(shape()));
    if constexpr (is_device) {
      T v;
      backend::cuda_ops<Backend>::download(data(), &v, 1);
      return v;
    } else {
      return *data();
    }
  }

  /// All elements in row-major order (copies; works for any strides).
  std::vector<T> to_vector() const {
    std::vector<T> out(static_cast<std::size_t>(numel()));
    if constexpr (is_device) {
      const tensor c = is_contiguous() ? *this : clone();
      backend::cuda_ops<Backend>::download(c.data(), out.data(), c.numel());
    } else {
      copy_strided_to(out.data());
    }
    return out;
  }

  /// Deep copy into fresh contiguous memory; no autograd history.
  tensor clone() const {
    tensor out = empty(shape());
    if constexpr (is_device) backend::cuda_ops<Backend>::copy_strided(data(), shape(), strides(), out.data(), out.strides());
    else copy_strided_to(out.data());
    return out;
  }
  /// Same data, no autograd history.
  tensor detach() const {
    auto impl = std::make_shared<impl_type>();
    impl->store = checked().store;
    impl->offset = checked().offset;
    impl->shape = checked().shape;
    impl->strides = checked().strides;
    return tensor(std::move(impl));
  }
  /// Copies values from `src` (same shape, any strides) into this tensor's memory.
  void copy_from(const tensor& src) {
    MSCL_CHECK(src.shape() == shape(), shape_error,
               "tensor::copy_from: shape mismatch, destination " << to_string(shape()) << " vs source "
                                                                 << to_string(src.shape()));
    if constexpr (is_device) {
      // Overlapping source and destination go through a temporary, as on the host.
      const tensor s = shares_storage_with(src) ? src.clone() : src;
      backend::cuda_ops<Backend>::copy_strided(s.data(), shape(), s.strides(), data(), strides());
    } else if (is_contiguous()) {
      src.copy_strided_to(data());
    } else {
      tensor tmp = src.clone();
      assign_strided_from(tmp.data());
    }
  }
  void fill_(T value) {
    if constexpr (is_device) {
      if (is_contiguous()) backend::cuda_ops<Backend>::fill(data(), numel(), value);
      else copy_from(full(shape(), value));
    } else if (is_contiguous()) {
      std::fill_n(data(), numel(), value);
    } else {
      std::vector<T> v(std::size_t(numel()), value);
      assign_strided_from(v.data());
    }
  }

  /// View of the same storage with another geometry (no autograd; ops/ wraps it with one).
  tensor view_as_strided(const shape_t& shape, const shape_t& strides, index_t offset) const {
    auto impl = std::make_shared<impl_type>();
    impl->store = checked().store;
    impl->offset = offset;
    impl->shape = shape;
    impl->strides = strides;
    return tensor(std::move(impl));
  }

  // ------------------------------------------------------------------ autograd fields
  bool requires_grad() const { return defined() && impl_->requires_grad; }
  /// Marks a leaf as trainable (its gradient accumulates into grad()).
  tensor& set_requires_grad(bool on = true) {
    MSCL_CHECK(!checked().grad_fn || on, value_error,
               "tensor::set_requires_grad(false): only leaves can stop requiring grad; use detach()");
    checked().requires_grad = on;
    return *this;
  }
  bool is_leaf() const { return !checked().grad_fn; }
  /// The accumulated gradient (undefined until a backward pass reached this leaf).
  tensor grad() const { return checked().grad ? tensor(checked().grad) : tensor(); }
  void set_grad(const tensor& g) { checked().grad = g.defined() ? g.impl_ : nullptr; }
  void zero_grad() { checked().grad.reset(); }
  const std::shared_ptr<autograd::node<T, Backend>>& grad_fn() const { return checked().grad_fn; }

  /// Reverse-mode pass from this tensor (defined in autograd/engine.hpp).
  void backward() const;
  void backward(const tensor& grad_output) const;

  const std::shared_ptr<impl_type>& impl() const { return impl_; }
  bool same_as(const tensor& other) const { return impl_ == other.impl_; }
  bool shares_storage_with(const tensor& other) const {
    return defined() && other.defined() && impl_->store == other.impl_->store;
  }

 private:
  impl_type& checked() const {
    MSCL_CHECK(impl_ != nullptr, value_error, "tensor: operation on an undefined (default-constructed) tensor");
    return *impl_;
  }
  index_t linear_offset(const shape_t& index) const {
    const auto& s = shape();
    MSCL_CHECK(index.size() == s.size(), shape_error,
               "tensor::at: index of rank " << index.size() << " for a tensor of shape " << to_string(s));
    index_t off = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      MSCL_CHECK(index[i] >= 0 && index[i] < s[i], shape_error,
                 "tensor::at: index " << to_string(index) << " out of range for shape " << to_string(s));
      off += index[i] * strides()[i];
    }
    return off;
  }
  // Walks the strided elements in row-major order; f(pointer-offset, linear-index).
  /// Calls f(offset, index, length) for each run of `length` elements that are adjacent in both
  /// this view's storage and row-major order: the trailing dimensions whose strides nest
  /// (stride[d] = stride[d+1]·shape[d+1], innermost stride 1) form one run. A slice along an
  /// outer axis (ops::cat's destination views, split halves) copies in a few long runs instead
  /// of element by element.
  template <class F>
  void for_each_run(F&& f) const {
    const auto& s = shape();
    const auto& st = strides();
    const index_t n = numel();
    if (n == 0) return;
    std::size_t r = s.size();
    index_t run = 1;
    if (r > 0 && st[r - 1] == 1) {
      // Absorb trailing dimensions while they are contiguous with what is already in the run.
      while (r > 0 && (s[r - 1] == 1 || st[r - 1] == run)) run *= s[--r];
    }
    if (run == 1) r = s.size();  // innermost stride != 1: element runs over every dimension
    std::vector<index_t> idx(r, 0);
    index_t off = 0;
    for (index_t i = 0; i < n; i += run) {
      f(off, i, run);
      for (std::size_t d = r; d-- > 0;) {
        if (++idx[d] < s[d]) {
          off += st[d];
          break;
        }
        off -= st[d] * (s[d] - 1);
        idx[d] = 0;
      }
    }
  }
  void copy_strided_to(T* out) const {
    if (is_contiguous()) {
      std::copy_n(data(), numel(), out);
      return;
    }
    const T* base = data();
    for_each_run([&](index_t off, index_t i, index_t len) { std::copy_n(base + off, len, out + i); });
  }
  void assign_strided_from(const T* in) {
    T* base = data();
    for_each_run([&](index_t off, index_t i, index_t len) { std::copy_n(in + i, len, base + off); });
  }

  std::shared_ptr<impl_type> impl_;
};

/// The values of `x` on backend `To` (contiguous, no autograd history): a transfer between host
/// and device, or `x` itself (shared storage) when it already lives there; undefined stays
/// undefined. What checkpoints use: they hold host tensors whatever the training backend.
template <class To, class T, class From>
tensor<T, To> on_backend(const tensor<T, From>& x) {
  if constexpr (std::is_same_v<To, From>) {
    return x;
  } else {
    if (!x.defined()) return tensor<T, To>();
    // Straight between the two storages (a training batch per step goes through here: no
    // staging copy through a std::vector).
    const tensor<T, From> c = x.is_contiguous() ? x : x.clone();
    tensor<T, To> out = tensor<T, To>::empty(x.shape());
    if constexpr (!tensor<T, From>::is_device) backend::cuda_ops<To>::upload(c.data(), out.data(), out.numel());
    else backend::cuda_ops<From>::download(c.data(), out.data(), out.numel());
    return out;
  }
}

}  // namespace mscl
