/// \file flow_color_batch.hpp
/// \brief The Middlebury colour coding of a whole batch of flows, N×2×T×H×W → N×3×T×H×W in
///        [0, 1], on the batch's backend: the last host-side step of the flow pipeline moved to
///        where the training step runs.
///
/// Why: colour coding is about half of a loader worker's time per MSCL sample (4 × 8 maps at
/// 112², an atan2 per pixel; docs/data_formats.md has the profile). With CUDA training the loader
/// can hand over raw 2-channel flows (`mscl_clip_options::color_code_flow = false`) and
/// `data::on_backend_source` codes them on the GPU after the copy, which also halves the flow
/// bytes copied (2 channels instead of 3).
///
/// The CPU path is augment::flow_color_code applied per sample: bit-identical to the loader's own
/// coding. The CUDA path (backend/cuda/ssl_kernels.cuh, `flow_color_code`) computes the same
/// float expressions without FMA contraction, but its atan2f is the device's (within 2 ulp), so a
/// channel value can land one 8-bit step (1/255) away from the CPU's where it sits within ~1e-6 of
/// a step boundary (the GPU test bounds how often).
#pragma once
#include <type_traits>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../ops/common.hpp"
#include "../ops/shape_ops.hpp"
#include "flow.hpp"

namespace mscl::augment {

/// N×2×…×H×W flow (channel 0 = u, 1 = v; lengths as given, normalise first for MSCL's coding)
/// → N×3×…×H×W colour, each channel a multiple of 1/255. No gradient (data preparation).
template <class T, class B>
tensor<T, B> color_code_flow_batch(const tensor<T, B>& flow, bool fast_atan2 = false) {
  static_assert(std::is_same_v<T, float>, "color_code_flow_batch: float flows only (the coding is defined in float)");
  MSCL_CHECK(flow.defined() && flow.dim() >= 4 && flow.shape()[1] == 2, shape_error,
             "augment::color_code_flow_batch: flow must be N×2×…×H×W (channel 1 holds u, v), got "
                 << (flow.defined() ? to_string(flow.shape()) : std::string("undefined")));
  shape_t out_shape = flow.shape();
  out_shape[1] = 3;
  const index_t n = flow.shape()[0], inner = n > 0 ? flow.numel() / (2 * n) : 0;
  const tensor<T, B> in = ops::detail::contiguous_data(flow);
  tensor<T, B> out = tensor<T, B>::empty(out_shape);
  if constexpr (std::is_same_v<B, cuda>) {
    backend::cuda_ops<B>::flow_color_code(in.data(), out.data(), n, inner, fast_atan2);
  } else {
    ops::detail::require_cpu<B>();
    // Per sample through the loader's own policy (2×T'×H×W with T' = inner / (H·W) maps).
    const index_t h = flow.shape()[flow.dim() - 2], w = flow.shape()[flow.dim() - 1], maps = inner / (h * w);
    const flow_color_code coder(flow_color_code_options{false, fast_atan2});
    ops::detail::parallel_for(n, [&](index_t b) {
      clip_tensor sample = clip_tensor::empty({2, maps, h, w});
      std::copy_n(in.data() + b * 2 * inner, 2 * inner, sample.data());
      coder.apply_flow({}, sample);
      std::copy_n(sample.data(), 3 * inner, out.data() + b * 3 * inner);
    }, 1);
  }
  return out;
}

}  // namespace mscl::augment
