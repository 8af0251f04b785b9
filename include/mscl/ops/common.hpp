/// \file common.hpp
/// \brief What every op header needs: tensor, autograd recording, checks, parallel loops.
///
/// Op convention (for authors of new ops): compute the output under the current backend, then
/// `return autograd::record(out, "op_name", {inputs...}, [captures](const tensor_t& gout) {
///   return std::vector<tensor_t>{grad_input0, grad_input1}; });`
/// Backward functions run under no_grad and must not modify `gout` in place (it may be shared).
#pragma once
#include <cmath>
#include <vector>

#include "../autograd/engine.hpp"
#include "../autograd/grad_mode.hpp"
#include "../autograd/node.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"

namespace mscl::ops::detail {

/// Ops in ops/ run on host memory; the CUDA backend provides its own kernels per family
/// (backend/cuda/) and routes here through the same op signatures.
template <class Backend>
constexpr void require_cpu() {
  static_assert(std::is_same_v<Backend, cpu>,
                "mscl::ops: this op has no kernel for this backend in this build "
                "(the cuda kernels need MSCL_WITH_CUDA and backend/cuda/)");
}

/// Routes an op to the cuda backend for `tensor<T, cuda>` (backend::cuda_ops, defined by
/// backend/cuda/cuda.hpp); the cpu body follows in braces and is all that cpu builds see:
///   `MSCL_CUDA_DISPATCH(B, add(x, y)) { ...cpu code... }`
#define MSCL_CUDA_DISPATCH(B, call)                      \
  if constexpr (std::is_same_v<B, ::mscl::cuda>) {       \
    return ::mscl::backend::cuda_ops<B>::call;           \
  } else

/// A contiguous version of `t` (t itself when already contiguous).
template <class T, class B>
tensor<T, B> contiguous_data(const tensor<T, B>& t) {
  return t.is_contiguous() ? t : t.clone();
}

template <class T, class B>
void check_same_shape(const tensor<T, B>& a, const tensor<T, B>& b, const char* who) {
  MSCL_CHECK(a.shape() == b.shape(), shape_error,
             who << ": shapes must match; got " << to_string(a.shape()) << " and " << to_string(b.shape()));
}

template <class T, class B>
void check_rank(const tensor<T, B>& a, int rank, const char* who, const char* what) {
  MSCL_CHECK(a.defined(), shape_error, who << ": " << what << " is an undefined tensor");
  MSCL_CHECK(a.dim() == rank, shape_error,
             who << ": " << what << " must have rank " << rank << ", got shape " << to_string(a.shape()));
}

template <class T, class B>
void check_nonempty(const tensor<T, B>& a, const char* who) {
  MSCL_CHECK(a.defined() && a.numel() > 0, shape_error,
             who << ": empty input (shape " << (a.defined() ? to_string(a.shape()) : "undefined") << ")");
}

/// out[i] = f(i) in parallel for large n.
template <class F>
inline void parallel_for(index_t n, F&& f, index_t grain = 32768) {
#pragma omp parallel for schedule(static) if (n > grain)
  for (index_t i = 0; i < n; ++i) f(i);
}

}  // namespace mscl::ops::detail
