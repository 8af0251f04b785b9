/// \file augment.hpp
/// \brief The cuda path of the RGB photometric stage (augment::photometric_batch): colour
///        jitter → grey → Gaussian blur → ImageNet normalisation of a B×3×T×H×W batch.
///
/// augment/photometric_batch.hpp decodes and checks the parameter table on the host
/// (augment::plan_photometric) and calls `cuda_ops<cuda>::photometric` with the plan; this
/// wrapper is templated on the plan type so that the backend includes no augment header. The
/// per-frame coefficients, per-sample flags, the host-computed blur weights and the list of
/// blurred samples go up in one upload (a few hundred bytes; it waits for the stream, as
/// ssl.hpp's uploads do), then at most three launches (augment_kernels.cuh):
///   photometric_frames      grid B·T blocks (one per frame), 32…512 threads: jitter, grey and,
///                           for samples without blur, normalisation; in → out;
///   photometric_blur_rows   grid-stride, 256 threads, blurred samples only: out → scratch;
///   photometric_blur_cols   grid-stride, 256 threads, blurred samples only: scratch → out,
///                           with their normalisation.
/// Every op is the CPU's float expression, rounded step by step (no FMA); only the contrast
/// mean's double sum runs in another order (see augment_kernels.cuh).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../../core/error.hpp"
#include "../../core/tensor.hpp"
#include "augment_kernels.cuh"
#include "memory.hpp"
#include "runtime.hpp"
#include "ssl.hpp"

namespace mscl::cuda_backend {

namespace augment_detail {
/// Appends the bytes of n objects (4-byte aligned, trivially copyable) to a word buffer; returns
/// the word offset where they start.
template <class U>
std::size_t append_words(std::vector<std::uint32_t>& words, const U* p, std::size_t n) {
  static_assert(std::is_trivially_copyable_v<U> && sizeof(U) % 4 == 0 && alignof(U) <= 4,
                "augment_detail::append_words: 4-byte aligned plain data only");
  const std::size_t at = words.size();
  words.resize(at + n * sizeof(U) / 4);
  if (n > 0) std::memcpy(words.data() + at, p, n * sizeof(U));
  return at;
}
}  // namespace augment_detail

struct augment_ops {
  /// `plan`: an augment::photometric_plan for this batch (checked on the host). in and out:
  /// distinct contiguous device buffers of nb·3·nt·h·w floats.
  template <class T, class Plan>
  static void photometric(const T* in, T* out, index_t nb, index_t nt, index_t h, index_t w, const Plan& plan) {
    static_assert(std::is_same_v<T, float>, "cuda photometric: float clips only (the ops are defined in float)");
    const index_t hw = h * w, per = 3 * nt * hw;
    if (nb * per == 0) return;
    MSCL_CHECK(plan.samples == nb && plan.frames == nt && index_t(plan.jitter.size()) == nb * nt &&
                   index_t(plan.blur_weights.size()) == nb * index_t(plan.max_blur_kernel),
               shape_error, "cuda photometric: the plan (" << plan.samples << " samples, " << plan.frames
                                                           << " frames) does not fit a batch of " << nb << " × " << nt
                                                           << " frames");
    MSCL_CHECK(nb * nt <= 0x7fffffff, shape_error, "cuda photometric: " << nb * nt << " frames exceed one grid");
    std::vector<kernels::photometric_frame> frames(std::size_t(nb * nt));
    for (std::size_t i = 0; i < frames.size(); ++i) {
      const auto& c = plan.jitter[i];
      kernels::photometric_frame& f = frames[i];
      for (int k = 0; k < 4; ++k) f.ops[k] = c.ops[std::size_t(k)];
      f.brightness = c.brightness;
      f.contrast = c.contrast;
      f.contrast_rest = c.contrast_rest;
      f.saturation = c.saturation;
      f.saturation_rest = c.saturation_rest;
      f.hue = c.hue;
    }
    std::vector<kernels::photometric_sample> flags(static_cast<std::size_t>(nb));
    std::vector<int> blurred;
    for (index_t b = 0; b < nb; ++b) {
      const std::size_t s = std::size_t(b);
      const bool blur = plan.blur_sigma[s] > 0;
      kernels::photometric_sample& d = flags[s];
      d.grey = plan.grey[s] != 0 ? 1 : 0;
      d.normalize = plan.normalize[s] != 0 ? 1 : 0;
      d.kernel = blur ? int(plan.blur_kernel[s]) : 0;
      if (blur) blurred.push_back(int(b));
    }
    std::vector<std::uint32_t> words;
    const std::size_t at_frames = augment_detail::append_words(words, frames.data(), frames.size());
    const std::size_t at_samples = augment_detail::append_words(words, flags.data(), flags.size());
    const std::size_t at_weights = augment_detail::append_words(words, plan.blur_weights.data(), plan.blur_weights.size());
    const std::size_t at_blurred = augment_detail::append_words(words, blurred.data(), blurred.size());
    const auto dev = ssl_detail::device_copy(words);  // one upload for all tables
    const auto* d_frames = reinterpret_cast<const kernels::photometric_frame*>(dev.get() + at_frames);
    const auto* d_samples = reinterpret_cast<const kernels::photometric_sample*>(dev.get() + at_samples);
    const auto* d_weights = reinterpret_cast<const float*>(dev.get() + at_weights);
    const auto* d_blurred = reinterpret_cast<const int*>(dev.get() + at_blurred);

    // Jitter, grey and (unblurred samples) normalisation: one block per frame.
    const unsigned block = unsigned(std::clamp<index_t>((hw + 31) / 32 * 32, 32, 512));
    kernels::photometric_frames<<<unsigned(nb * nt), block, 0, stream()>>>(in, out, nt, hw, d_frames, d_samples);
    MSCL_CUDA_CHECK_LAUNCH();
    if (blurred.empty()) return;

    // Separable blur of the blurred samples: rows out → tmp, columns tmp → out (+ normalisation).
    const index_t nblur = index_t(blurred.size());
    tensor<T, cuda> tmp = tensor<T, cuda>::empty({nblur * per});
    const unsigned grid = grid_for(nblur * per);
    kernels::photometric_blur_rows<<<grid, 256, 0, stream()>>>(out, tmp.data(), nblur, d_blurred, nt, h, w, d_samples,
                                                               d_weights, plan.max_blur_kernel);
    MSCL_CUDA_CHECK_LAUNCH();
    kernels::photometric_blur_cols<<<grid, 256, 0, stream()>>>(tmp.data(), out, nblur, d_blurred, nt, h, w, d_samples,
                                                               d_weights, plan.max_blur_kernel);
    MSCL_CUDA_CHECK_LAUNCH();
  }
};

}  // namespace mscl::cuda_backend
