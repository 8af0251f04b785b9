/// \file concepts.hpp
/// \brief What an augmentation policy is (ALGORITHM.md §7, STYLE.md §2.2): the clip types, the
///        clip geometry that parameters are drawn for, the detection traits, and a documented
///        archetype (`example_policy`).
///
/// Layouts. An RGB clip is a contiguous float `tensor` 3×T×H×W (`cthw`, one sample of `ncthw`),
/// values in [0, 1] until `normalize` maps them to ImageNet statistics. A flow clip is a
/// contiguous float `tensor` 2×T×H×W (`2thw`, channel 0 = u, 1 = v, image axes: x right, y down);
/// `flow_color_code` turns it into a 3×T×H×W image in [0, 1]. Frame lists from the decoder
/// (`data::image_u8`, `data::flow_field`) become clips through temporal.hpp or through the fused
/// crop-and-resize entry points of `random_resized_crop`.
///
/// Why sampling is separate from applying: one view's crop box and flip flag must act
/// identically on its RGB clip and on its flow clip (§6.5), which differ in channels, frame count
/// and resolution. So a policy draws its `params` once, for a `clip_geometry` that describes
/// both, and then applies the same params to each.
///
/// A policy P (a small copyable value type) provides
///  * `typename P::params` — everything drawn at random (copyable; applying is deterministic);
///  * `params sample(generator&, const clip_geometry&) const`;
///  * at least one of `void apply(const params&, tensor<float>& rgb) const` (RGB clips) and
///    `void apply_flow(const params&, tensor<float>& flow) const` (flow clips). `compose` skips a
///    policy on the modality it does not define, which is how photometric ops stay RGB-only and
///    colour coding stays flow-only;
///  * optionally `clip_geometry output_geometry(const params&, const clip_geometry&) const` when
///    it changes sizes (crop + resize), so that later policies sample for the new geometry;
///  * optionally `static constexpr bool out_of_place = true` when `apply`/`apply_flow` write a
///    fresh tensor and never touch the input's memory (then `two_views` need not copy inputs).
/// `apply` may replace the handle (a new shape) or modify the data in place.
#pragma once
#include <type_traits>
#include <utility>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../core/tensor.hpp"

namespace mscl::augment {

/// Float clip handle: RGB 3×T×H×W or flow 2×T×H×W (see the file comment).
using clip_tensor = tensor<float>;

/// Sizes a policy draws its parameters for: the RGB clip and the flow clip of the same view
/// (flow may have another frame count and resolution, e.g. 16 maps at 384×640 for 8 frames at
/// 128×171). flow_* = 0 means the view has no flow.
struct clip_geometry {
  index_t frames = 0, height = 0, width = 0;
  index_t flow_frames = 0, flow_height = 0, flow_width = 0;

  bool has_flow() const { return flow_frames > 0 && flow_height > 0 && flow_width > 0; }
  /// Geometry of an RGB clip (3×T×H×W) and optionally a flow clip (2×T×H×W).
  static clip_geometry of(const clip_tensor& rgb, const clip_tensor* flow = nullptr);
};

namespace detail {
template <class P, class = void>
struct has_params : std::false_type {};
template <class P>
struct has_params<P, std::void_t<typename P::params>> : std::true_type {};

template <class P, class = void>
struct has_sample : std::false_type {};
template <class P>
struct has_sample<P, std::void_t<decltype(std::declval<const P&>().sample(std::declval<generator&>(),
                                                                          std::declval<const clip_geometry&>()))>>
    : std::is_same<decltype(std::declval<const P&>().sample(std::declval<generator&>(),
                                                            std::declval<const clip_geometry&>())),
                   typename P::params> {};

template <class P, class = void>
struct has_apply : std::false_type {};
template <class P>
struct has_apply<P, std::void_t<decltype(std::declval<const P&>().apply(std::declval<const typename P::params&>(),
                                                                        std::declval<clip_tensor&>()))>>
    : std::true_type {};

template <class P, class = void>
struct has_apply_flow : std::false_type {};
template <class P>
struct has_apply_flow<P, std::void_t<decltype(std::declval<const P&>().apply_flow(
                             std::declval<const typename P::params&>(), std::declval<clip_tensor&>()))>>
    : std::true_type {};

template <class P, class = void>
struct has_output_geometry : std::false_type {};
template <class P>
struct has_output_geometry<P, std::void_t<decltype(std::declval<const P&>().output_geometry(
                                  std::declval<const typename P::params&>(), std::declval<const clip_geometry&>()))>>
    : std::true_type {};

template <class P, class = void>
struct is_out_of_place : std::false_type {};
template <class P>
struct is_out_of_place<P, std::enable_if_t<P::out_of_place>> : std::true_type {};
}  // namespace detail

/// P has `params` and `params sample(generator&, const clip_geometry&) const`.
template <class P>
inline constexpr bool is_sampleable_v = detail::has_params<P>::value && detail::has_sample<P>::value;
/// P acts on RGB clips.
template <class P>
inline constexpr bool has_apply_v = detail::has_params<P>::value && detail::has_apply<P>::value;
/// P acts on flow clips.
template <class P>
inline constexpr bool has_apply_flow_v = detail::has_params<P>::value && detail::has_apply_flow<P>::value;
/// P changes the clip geometry (declares output_geometry).
template <class P>
inline constexpr bool has_output_geometry_v = detail::has_params<P>::value && detail::has_output_geometry<P>::value;
/// P never writes into its input's memory.
template <class P>
inline constexpr bool is_out_of_place_v = detail::is_out_of_place<P>::value;
/// The full requirement: sampleable and acting on at least one modality.
template <class P>
inline constexpr bool is_augment_policy_v = is_sampleable_v<P> && (has_apply_v<P> || has_apply_flow_v<P>);

/// The geometry after P with these params (unchanged unless P declares output_geometry).
template <class P>
clip_geometry output_geometry_of(const P& p, const typename P::params& prm, const clip_geometry& g) {
  if constexpr (has_output_geometry_v<P>) return p.output_geometry(prm, g);
  else return g;
}

/// Archetype: the smallest valid policy (multiplies RGB by a random gain; flow untouched). It is
/// documentation that compiles; a test checks it against the traits.
struct example_policy {
  struct params {
    float gain = 1.f;  ///< drawn per clip
  };
  params sample(generator& gen, const clip_geometry&) const { return {float(gen.uniform(0.9, 1.1))}; }
  void apply(const params& p, clip_tensor& rgb) const {
    float* d = rgb.data();
    for (index_t i = 0, n = rgb.numel(); i < n; ++i) d[i] *= p.gain;
  }
};

// ------------------------------------------------------------------ implementation

namespace detail {
/// Checks a clip handle: defined, contiguous, rank 4, `channels` channels (0 = any).
inline void check_clip(const clip_tensor& x, index_t channels, const char* who) {
  MSCL_CHECK(x.defined() && x.dim() == 4 && (channels == 0 || x.shape()[0] == channels), shape_error,
             who << ": expected a " << (channels == 3 ? "3×T×H×W RGB" : channels == 2 ? "2×T×H×W flow" : "C×T×H×W")
                 << " clip, got " << (x.defined() ? to_string(x.shape()) : std::string("an undefined tensor")));
  MSCL_CHECK(x.is_contiguous(), shape_error,
             who << ": expected a contiguous clip, got shape " << to_string(x.shape()) << " with strides "
                 << to_string(x.strides()) << " (call clone() first)");
}
}  // namespace detail

inline clip_geometry clip_geometry::of(const clip_tensor& rgb, const clip_tensor* flow) {
  detail::check_clip(rgb, 3, "augment::clip_geometry::of");
  clip_geometry g;
  g.frames = rgb.shape()[1];
  g.height = rgb.shape()[2];
  g.width = rgb.shape()[3];
  if (flow) {
    detail::check_clip(*flow, 2, "augment::clip_geometry::of");
    g.flow_frames = flow->shape()[1];
    g.flow_height = flow->shape()[2];
    g.flow_width = flow->shape()[3];
  }
  return g;
}

}  // namespace mscl::augment
