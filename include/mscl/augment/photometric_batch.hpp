/// \file photometric_batch.hpp
/// \brief The RGB photometric stage of the MSCL views (colour jitter → grey → blur → ImageNet
///        normalisation, ALGORITHM.md §7.2) applied to a whole batch on the batch's backend, from
///        a parameter table the loader drew: the loader crops and flips, the training device does
///        the rest.
///
/// Why: with CUDA training the loader is the host's bottleneck, and after the flows' colour
/// coding (flow_color_batch.hpp) the photometric ops are the largest per-pixel work left in it
/// (docs/data_formats.md has the profile). With `data::mscl_clip_options::rgb_photometric =
/// false` the loader hands over cropped, flipped RGB in [0, 1] plus, per view, a table with one
/// row per (sample, frame) of the values it drew; `data::on_backend_source` applies this stage
/// after the copy.
///
/// The table (`photometric_columns` floats per row, B×T×photometric_columns, a host tensor):
///   columns 0–3   the jitter ops in application order (0 brightness, 1 contrast, 2 saturation,
///                 3 hue; −1: none — jitter not applied, or that op disabled in its options);
///   columns 4–9   brightness, contrast, 1 − contrast, saturation, 1 − saturation, hue shift, as
///                 the floats color_jitter computes with (jitter_coefficients);
///   column 10     grey (1: replace by the grey value with `grayscale`'s default weights);
///   column 11     blur σ (0: no blur), column 12 the blur's odd kernel size;
///   column 13     normalise (1: ImageNet mean/std, `normalize`'s defaults).
/// Grey, blur and normalise are per clip: every frame row of a sample must agree on them.
///
/// The CPU path runs the same policy code as the loader (color_jitter::apply_coefficients,
/// grayscale, gaussian_blur, normalize) and is bit-identical to the loader's own augmentation
/// (tests/unit/data_loader_test.cpp). The CUDA path (backend/cuda/augment_kernels.cuh) computes
/// the same expressions rounded step by step (no FMA); only the contrast mean's double sum runs
/// in another order (a block reduction), which can move that mean by an ulp. A CPU build with
/// -march=native may contract a·x + k into FMAs on its side. The GPU test bounds the difference
/// at 1e-4 (docs/cuda.md); the expected size is ~1e-6.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <type_traits>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../ops/common.hpp"
#include "color.hpp"

namespace mscl::augment {

/// Columns of a photometric table row (see the file comment).
namespace photometric_column {
enum : index_t {
  op0 = 0, op1, op2, op3,
  brightness, contrast, contrast_rest, saturation, saturation_rest, hue,
  grey, blur_sigma, blur_kernel, normalize,
  count
};
}  // namespace photometric_column
inline constexpr index_t photometric_columns = photometric_column::count;

/// One view's decisions for the photometric stage, as the loader draws them.
struct photometric_view {
  std::vector<jitter_coefficients> jitter;  ///< 1 (per clip) or T (per frame); empty: not applied
  bool grey = false;
  double blur_sigma = 0;  ///< 0: no blur
  int blur_kernel = 1;
  bool normalize = true;
};

/// The T rows of one view's table (T×photometric_columns floats, row-major).
inline std::vector<float> photometric_rows(const photometric_view& v, index_t frames) {
  namespace pc = photometric_column;
  MSCL_CHECK(frames >= 1, shape_error, "augment::photometric_rows: need >= 1 frame, got " << frames);
  MSCL_CHECK(v.jitter.size() <= 1 || index_t(v.jitter.size()) == frames, shape_error,
             "augment::photometric_rows: " << v.jitter.size() << " jitter factor sets for " << frames << " frames");
  std::vector<float> rows(std::size_t(frames * photometric_columns), 0.f);
  for (index_t t = 0; t < frames; ++t) {
    float* r = rows.data() + t * photometric_columns;
    const jitter_coefficients c =
        v.jitter.empty() ? jitter_coefficients{} : v.jitter[v.jitter.size() == 1 ? 0 : std::size_t(t)];
    for (int i = 0; i < 4; ++i) r[pc::op0 + i] = float(c.ops[std::size_t(i)]);
    r[pc::brightness] = c.brightness;
    r[pc::contrast] = c.contrast;
    r[pc::contrast_rest] = c.contrast_rest;
    r[pc::saturation] = c.saturation;
    r[pc::saturation_rest] = c.saturation_rest;
    r[pc::hue] = c.hue;
    r[pc::grey] = v.grey ? 1.f : 0.f;
    r[pc::blur_sigma] = float(v.blur_sigma);
    r[pc::blur_kernel] = float(v.blur_kernel);
    r[pc::normalize] = v.normalize ? 1.f : 0.f;
  }
  return rows;
}

/// A table decoded and checked on the host: what both backends' paths run from.
struct photometric_plan {
  index_t samples = 0, frames = 0;
  std::vector<jitter_coefficients> jitter;  ///< samples·frames, row order
  std::vector<unsigned char> grey, normalize;
  std::vector<float> blur_sigma;            ///< per sample (0: none)
  std::vector<int> blur_kernel;             ///< per sample (odd)
  int max_blur_kernel = 1;
  /// Per sample max_blur_kernel weights: gaussian_blur::kernel(kernel, σ) centred, zero-padded
  /// (all zero for a sample without blur). The device path uses these host-computed weights.
  std::vector<float> blur_weights;
};

/// Decodes and checks a B×T×photometric_columns table for a B×3×T×H×W batch; every failure names
/// the sample, frame and column.
inline photometric_plan plan_photometric(const tensor<float, cpu>& table, const shape_t& rgb_shape) {
  namespace pc = photometric_column;
  MSCL_CHECK(rgb_shape.size() == 5 && rgb_shape[1] == 3, shape_error,
             "augment::photometric_batch: RGB must be B×3×T×H×W, got " << to_string(rgb_shape));
  const index_t nb = rgb_shape[0], nt = rgb_shape[2], h = rgb_shape[3], w = rgb_shape[4];
  MSCL_CHECK(table.defined() && table.shape() == (shape_t{nb, nt, photometric_columns}), shape_error,
             "augment::photometric_batch: the parameter table must be " << to_string(shape_t{nb, nt, photometric_columns})
                                                                        << " for RGB " << to_string(rgb_shape) << ", got "
                                                                        << (table.defined() ? to_string(table.shape())
                                                                                            : std::string("undefined")));
  const tensor<float, cpu> tc = table.is_contiguous() ? table : table.clone();
  photometric_plan p;
  p.samples = nb;
  p.frames = nt;
  p.jitter.resize(std::size_t(nb * nt));
  p.grey.resize(std::size_t(nb));
  p.normalize.resize(std::size_t(nb));
  p.blur_sigma.resize(std::size_t(nb));
  p.blur_kernel.resize(std::size_t(nb));
  auto flag = [](float v) { return v == 0.f || v == 1.f; };
  for (index_t b = 0; b < nb; ++b)
    for (index_t t = 0; t < nt; ++t) {
      const float* r = tc.data() + (b * nt + t) * photometric_columns;
      const auto where = [&] { return "augment::photometric_batch: sample " + std::to_string(b) + ", frame " + std::to_string(t) + ": "; };
      jitter_coefficients& c = p.jitter[std::size_t(b * nt + t)];
      std::array<bool, 4> seen{};
      for (int i = 0; i < 4; ++i) {
        const float op = r[pc::op0 + i];
        MSCL_CHECK(op == -1.f || op == 0.f || op == 1.f || op == 2.f || op == 3.f, value_error,
                   where() << "jitter op " << i << " is " << op << " (expected -1, 0, 1, 2 or 3)");
        c.ops[std::size_t(i)] = int(op);
        if (op >= 0) {
          MSCL_CHECK(!seen[std::size_t(op)], value_error, where() << "jitter op " << op << " appears twice");
          seen[std::size_t(op)] = true;
        }
      }
      c.brightness = r[pc::brightness];
      c.contrast = r[pc::contrast];
      c.contrast_rest = r[pc::contrast_rest];
      c.saturation = r[pc::saturation];
      c.saturation_rest = r[pc::saturation_rest];
      c.hue = r[pc::hue];
      for (index_t k = pc::brightness; k <= pc::hue; ++k)
        MSCL_CHECK(std::isfinite(r[k]), value_error, where() << "column " << k << " is not finite (" << r[k] << ")");
      MSCL_CHECK(flag(r[pc::grey]) && flag(r[pc::normalize]), value_error,
                 where() << "the grey and normalise flags must be 0 or 1, got " << r[pc::grey] << " and " << r[pc::normalize]);
      const float sigma = r[pc::blur_sigma], kernel = r[pc::blur_kernel];
      MSCL_CHECK(std::isfinite(sigma) && sigma >= 0 && kernel >= 1 && kernel <= 4095 && kernel == std::floor(kernel) &&
                     int(kernel) % 2 == 1,
                 value_error,
                 where() << "blur sigma " << sigma << " and kernel " << kernel << " (need sigma >= 0 and an odd kernel in [1, 4095])");
      if (t == 0) {
        p.grey[std::size_t(b)] = r[pc::grey] != 0.f;
        p.normalize[std::size_t(b)] = r[pc::normalize] != 0.f;
        p.blur_sigma[std::size_t(b)] = sigma;
        p.blur_kernel[std::size_t(b)] = int(kernel);
      } else {
        MSCL_CHECK(p.grey[std::size_t(b)] == (r[pc::grey] != 0.f) && p.normalize[std::size_t(b)] == (r[pc::normalize] != 0.f) &&
                       p.blur_sigma[std::size_t(b)] == sigma && p.blur_kernel[std::size_t(b)] == int(kernel),
                   value_error, where() << "grey, blur and normalise are per clip, but this row differs from frame 0's");
      }
    }
  for (index_t b = 0; b < nb; ++b)
    if (p.blur_sigma[std::size_t(b)] > 0) {
      const int r = p.blur_kernel[std::size_t(b)] / 2;
      MSCL_CHECK(r < h && r < w, shape_error,
                 "augment::photometric_batch: sample " << b << ": reflect padding of " << r << " (blur kernel "
                                                       << p.blur_kernel[std::size_t(b)] << ") needs frames larger than that, got "
                                                       << to_string(rgb_shape));
      p.max_blur_kernel = std::max(p.max_blur_kernel, p.blur_kernel[std::size_t(b)]);
    }
  p.blur_weights.assign(std::size_t(nb * p.max_blur_kernel), 0.f);
  for (index_t b = 0; b < nb; ++b) {
    if (!(p.blur_sigma[std::size_t(b)] > 0)) continue;
    const std::vector<float> k = gaussian_blur::kernel(p.blur_kernel[std::size_t(b)], double(p.blur_sigma[std::size_t(b)]));
    const int pad = (p.max_blur_kernel - int(k.size())) / 2;
    std::copy(k.begin(), k.end(), p.blur_weights.begin() + b * p.max_blur_kernel + pad);
  }
  return p;
}

/// The photometric stage on a B×3×T×H×W batch in [0, 1] (cropped and flipped), as drawn in
/// `table` (host, B×T×photometric_columns). Returns a new tensor; no gradient (data preparation).
template <class T, class B>
tensor<T, B> photometric_batch(const tensor<T, B>& rgb, const tensor<float, cpu>& table) {
  static_assert(std::is_same_v<T, float>, "photometric_batch: float clips only (the ops are defined in float)");
  MSCL_CHECK(rgb.defined(), shape_error, "augment::photometric_batch: the RGB batch is undefined");
  const photometric_plan p = plan_photometric(table, rgb.shape());
  const index_t nb = rgb.shape()[0], nt = rgb.shape()[2], h = rgb.shape()[3], w = rgb.shape()[4];
  if constexpr (std::is_same_v<B, cuda>) {
    const tensor<T, B> in = ops::detail::contiguous_data(rgb);
    tensor<T, B> out = tensor<T, B>::empty(rgb.shape());
    backend::cuda_ops<B>::photometric(in.data(), out.data(), nb, nt, h, w, p);
    return out;
  } else {
    ops::detail::require_cpu<B>();
    tensor<T, B> out = rgb.clone();
    const grayscale grey;
    const normalize norm;
    ops::detail::parallel_for(nb, [&](index_t b) {
      clip_tensor clip = out.view_as_strided({3, nt, h, w}, contiguous_strides({3, nt, h, w}), out.offset() + b * 3 * nt * h * w);
      for (index_t t = 0; t < nt; ++t)
        color_jitter::apply_coefficients(p.jitter[std::size_t(b * nt + t)], detail::plane(clip, 0, t), detail::plane(clip, 1, t),
                                         detail::plane(clip, 2, t), h * w);
      if (p.grey[std::size_t(b)]) grey.apply({}, clip);
      if (p.blur_sigma[std::size_t(b)] > 0) {
        gaussian_blur_options o;
        o.kernel_size = p.blur_kernel[std::size_t(b)];
        gaussian_blur(o).apply({double(p.blur_sigma[std::size_t(b)])}, clip);
      }
      if (p.normalize[std::size_t(b)]) norm.apply({}, clip);
    }, 1);
    return out;
  }
}

}  // namespace mscl::augment
