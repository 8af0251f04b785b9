/// \file presets.hpp
/// \brief Named MSCL view pipelines (ALGORITHM.md §7): crop + resize → flip → jitter / grey /
///        blur → normalise on RGB, crop + resize → flip → colour code on flow, the q and k views
///        drawn independently (`two_views`).
///
/// Inputs per view: an RGB clip 3×T×H×W in [0, 1] and a flow clip 2×T_f×H_f×W_f already
/// normalised per map by its max length (§6.3, done once on the raw maps, before FRA and
/// cropping). Outputs: RGB 3×T×112×112 (ImageNet-normalised) and flow 3×T_f×112×112 colour-coded
/// in [0, 1]. Defaults are the recommended behaviour (§11 A2, A11); `mscl_view_options::released()`
/// gives the released code's choices where a per-view policy can express them.
#pragma once
#include "color.hpp"
#include "compose.hpp"
#include "flow.hpp"
#include "spatial.hpp"

namespace mscl::augment {

/// Horizontal flip with p per clip.
using random_horizontal_flip = random_apply<horizontal_flip>;

/// The single-view MSCL policy; part order = application order.
using mscl_view_policy = compose<random_resized_crop,          // 0: box per view, RGB + flow
                                 random_apply<horizontal_flip>,  // 1: p 0.5, RGB + flow (negates u)
                                 random_apply<color_jitter>,     // 2: p 0.8, RGB
                                 random_apply<grayscale>,        // 3: p 0.2, RGB
                                 random_apply<gaussian_blur>,    // 4: p 0.5, RGB
                                 normalize,                      // 5: ImageNet, RGB
                                 flow_color_code>;               // 6: flow → 3 channels

/// Knobs of the MSCL view policy (defaults = MSCL values with the recommended fixes).
struct mscl_view_options {
  random_resized_crop_options crop{};
  double flip_p = 0.5;
  bool flip_negates_flow = true;  ///< false: released behaviour (§6.5, §11 A2)
  double jitter_p = 0.8;
  color_jitter_options jitter{};  ///< jitter.per_frame = true: released per-frame factors (§11 A11)
  double grey_p = 0.2;
  double blur_p = 0.5;
  gaussian_blur_options blur{};   ///< blur.fixed_sigma > 0: the released per-batch σ, drawn by the caller
  flow_color_code_options flow_coding{};  ///< renormalize (§11 A12), fast_atan2 (CPU speed)

  /// The released code's choices: flip without negating u, per-frame jitter factors. (Its
  /// per-batch blur σ needs a batch-level draw: set blur.fixed_sigma per batch.)
  static mscl_view_options released() {
    mscl_view_options o;
    o.flip_negates_flow = false;
    o.jitter.per_frame = true;
    return o;
  }
};

inline mscl_view_policy make_mscl_view_policy(const mscl_view_options& o = {}) {
  return mscl_view_policy(random_resized_crop(o.crop), random_apply<horizontal_flip>(o.flip_p, horizontal_flip(o.flip_negates_flow)),
                          random_apply<color_jitter>(o.jitter_p, color_jitter(o.jitter)),
                          random_apply<grayscale>(o.grey_p), random_apply<gaussian_blur>(o.blur_p, gaussian_blur(o.blur)),
                          normalize(), flow_color_code(o.flow_coding));
}

/// q and k views of one sample, independent params (q drawn first).
using mscl_view_pipeline = two_views<mscl_view_policy>;

inline mscl_view_pipeline make_mscl_view_pipeline(const mscl_view_options& o = {}) {
  const mscl_view_policy v = make_mscl_view_policy(o);
  return mscl_view_pipeline(v, v);
}

}  // namespace mscl::augment
