/// \file dropout.hpp
/// \brief Inverted dropout (PyTorch `F.dropout`): in training, each element is kept with
///        probability 1 − p and scaled by 1/(1 − p), else zeroed; in evaluation it is the identity
///        (the very same tensor, no copy, no graph node).
///
/// The mask is counter-based (core/rng.hpp): element i is kept when
/// `philox_uniform(seed, stream, i) >= p`, so the mask is a pure function of (seed, stream, i):
/// the same for any thread count, and a training loop that passes the iteration number as the
/// stream gets identical masks after a resume. The generator overload takes one fresh stream.
/// The cuda path (backend/cuda/ssl.hpp) evaluates the same Philox words on the device, so its
/// masks equal the CPU's for the same (seed, stream) (exact comparison of a double uniform with p).
#pragma once
#include <cstdint>

#include "../core/rng.hpp"
#include "common.hpp"

namespace mscl::ops {

namespace detail {
template <class T, class B>
tensor<T, B> dropout_mask_mul(const tensor<T, B>& g, const tensor<T, B>& mask) {
  const tensor<T, B> gc = contiguous_data(g);
  tensor<T, B> out = tensor<T, B>::empty(g.shape());
  const T* a = gc.data();
  const T* m = mask.data();
  T* o = out.data();
  parallel_for(out.numel(), [&](index_t i) { o[i] = a[i] * m[i]; });
  return out;
}
}  // namespace detail

/// Dropout with probability `p` in [0, 1] (p = 1 zeroes everything, p = 0 is the identity).
template <class T, class B>
tensor<T, B> dropout(const tensor<T, B>& x, double p, bool training, std::uint64_t seed, std::uint64_t stream) {
  MSCL_CHECK(x.defined(), shape_error, "dropout: x is an undefined tensor");
  MSCL_CHECK(p >= 0.0 && p <= 1.0, value_error, "dropout: p must be in [0, 1], got " << p);
  if (!training || p == 0.0) return x;
  // cuda: backend/cuda/ssl.hpp, a device Philox that yields the same mask as below.
  MSCL_CUDA_DISPATCH(B, dropout(x, p, seed, stream)) {
  detail::require_cpu<B>();
  const index_t n = x.numel();
  // The scaled mask doubles as the backward multiplier: g_in = g_out ⊙ mask.
  tensor<T, B> mask = tensor<T, B>::empty(x.shape());
  T* m = mask.data();
  const T keep_scale = p < 1.0 ? T(1.0 / (1.0 - p)) : T(0);
  detail::parallel_for(n, [&](index_t i) {
    m[i] = philox_uniform(seed, stream, std::uint64_t(i)) >= p ? keep_scale : T(0);
  });
  const tensor<T, B> xc = detail::contiguous_data(x);
  tensor<T, B> out = tensor<T, B>::empty(x.shape());
  const T* a = xc.data();
  T* o = out.data();
  detail::parallel_for(n, [&](index_t i) { o[i] = a[i] * m[i]; });
  if (!autograd::any_requires_grad({x})) return out;
  return autograd::record(out, "dropout", {x}, [mask](const tensor<T, B>& g) {
    return std::vector<tensor<T, B>>{detail::dropout_mask_mul(g, mask)};
  });
  }
}

/// As above with a fresh stream of `gen` (one stream per call).
template <class T, class B>
tensor<T, B> dropout(const tensor<T, B>& x, double p, bool training, generator& gen) {
  if (!training || p == 0.0) return dropout(x, p, training, gen.seed(), 0);
  return dropout(x, p, training, gen.seed(), gen.take_stream());
}

}  // namespace mscl::ops
