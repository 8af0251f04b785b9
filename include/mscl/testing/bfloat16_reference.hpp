/// \file bfloat16_reference.hpp
/// \brief Host reference of bf16 rounding (round to nearest, ties to even; NaN stays NaN,
///        overflow gives infinity), as CUDA's __float2bfloat16_rn and PyTorch's
///        `.to(torch.bfloat16)` round: the CPU side of the bf16 autocast tests, which build a
///        reference from operands rounded here and float arithmetic on the CPU backend.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../core/tensor.hpp"

namespace mscl::testing {

/// x rounded to the nearest bfloat16 value (the upper 16 bits of a float), returned as float.
inline float round_to_bfloat16(float x) {
  if (std::isnan(x)) return x;  // the rounding add below could carry a NaN's payload into infinity
  std::uint32_t u = 0;
  std::memcpy(&u, &x, sizeof u);
  // Adding 0x7fff plus the bit that survives rounds to nearest with ties to even; a carry out
  // of the mantissa raises the exponent (and from the largest finite values gives infinity).
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

/// Whether x is a bfloat16 value (NaN counts as one).
inline bool is_bfloat16_value(float x) {
  if (std::isnan(x)) return true;
  std::uint32_t u = 0;
  std::memcpy(&u, &x, sizeof u);
  return (u & 0xffffu) == 0;
}

/// A contiguous copy of t with every element rounded to bfloat16 (no autograd history).
inline tensor<float, cpu> round_to_bfloat16(const tensor<float, cpu>& t) {
  tensor<float, cpu> out = t.clone();  // contiguous, no history
  float* p = out.data();
  for (index_t i = 0; i < out.numel(); ++i) p[i] = round_to_bfloat16(p[i]);
  return out;
}

}  // namespace mscl::testing
