/// \file init.hpp
/// \brief Parameter initialisers with PyTorch's distributions (fan computed as PyTorch does:
///        fan_in = in_channels·receptive field, fan_out = out_channels·receptive field).
#pragma once
#include <cmath>

#include "../core/rng.hpp"
#include "../core/tensor.hpp"

namespace mscl::nn::init {

template <class T, class B>
std::pair<index_t, index_t> fans(const tensor<T, B>& w) {
  MSCL_CHECK(w.dim() >= 2, shape_error, "init: fan needs a weight of rank >= 2, got " << to_string(w.shape()));
  index_t receptive = 1;
  for (int d = 2; d < w.dim(); ++d) receptive *= w.shape()[std::size_t(d)];
  return {w.shape()[1] * receptive, w.shape()[0] * receptive};
}

template <class T, class B>
void uniform_(tensor<T, B>& t, double lo, double hi, generator& gen) {
  if constexpr (std::is_same_v<B, cuda>) backend::cuda_ops<B>::fill_uniform(t, lo, hi, gen);  // same draws, uploaded
  else gen.fill_uniform(t.data(), t.numel(), lo, hi);
}
template <class T, class B>
void normal_(tensor<T, B>& t, double mean, double stddev, generator& gen) {
  if constexpr (std::is_same_v<B, cuda>) backend::cuda_ops<B>::fill_normal(t, mean, stddev, gen);
  else gen.fill_normal(t.data(), t.numel(), mean, stddev);
}
template <class T, class B>
void constant_(tensor<T, B>& t, double v) { t.fill_(T(v)); }

/// torch.nn.init.kaiming_normal_(mode="fan_out", nonlinearity="relu"): N(0, 2/fan_out).
template <class T, class B>
void kaiming_normal_fan_out_(tensor<T, B>& w, generator& gen) {
  const auto [fan_in, fan_out] = fans(w);
  (void)fan_in;
  normal_(w, 0.0, std::sqrt(2.0 / double(fan_out)), gen);
}

/// PyTorch's default for Conv/Linear weights: kaiming_uniform_(a=√5) = U(±1/√fan_in).
template <class T, class B>
void default_weight_(tensor<T, B>& w, generator& gen) {
  const double bound = 1.0 / std::sqrt(double(fans(w).first));
  uniform_(w, -bound, bound, gen);
}

/// PyTorch's default bias: U(±1/√fan_in) of the matching weight.
template <class T, class B>
void default_bias_(tensor<T, B>& b, const tensor<T, B>& w, generator& gen) {
  const double bound = 1.0 / std::sqrt(double(fans(w).first));
  uniform_(b, -bound, bound, gen);
}

/// torch.nn.init.xavier_uniform_(gain): U(±gain·√(6/(fan_in+fan_out))).
template <class T, class B>
void xavier_uniform_(tensor<T, B>& w, generator& gen, double gain = 1.0) {
  const auto [fan_in, fan_out] = fans(w);
  const double bound = gain * std::sqrt(6.0 / double(fan_in + fan_out));
  uniform_(w, -bound, bound, gen);
}

}  // namespace mscl::nn::init
