/// \file temporal.hpp
/// \brief Temporal glue between the samplers (data/samplers.hpp: lists of frame indices) and the
///        policies: decoded frames or flow fields picked by an index list become a clip tensor,
///        and clips are sliced or concatenated along time (e.g. a 16-map flow pack into halves).
///
/// Clip layouts as in concepts.hpp: RGB 3×T×H×W in [0, 1] (uint8 / 255), flow 2×T×H×W. When the
/// view's first step is `random_resized_crop`, prefer its fused `apply_frames` /
/// `apply_flow_fields`, which read only the pixels inside the box.
#pragma once
#include <algorithm>
#include <vector>

#include "../data/frame.hpp"
#include "concepts.hpp"

namespace mscl::augment {

namespace detail {
inline void check_index(index_t i, std::size_t n, std::size_t pos, const char* who) {
  MSCL_CHECK(i >= 0 && i < index_t(n), value_error,
             who << ": index " << i << " at position " << pos << " outside [0, " << n << ")");
}
}  // namespace detail

/// frames[indices[t]] for t < T → 3×T×H×W floats in [0, 1]. All picked frames must be 3-channel
/// and of one size.
inline clip_tensor select_frames(const data::frame_sequence& frames, const std::vector<index_t>& indices) {
  MSCL_CHECK(!indices.empty(), value_error, "augment::select_frames: empty index list");
  detail::check_index(indices[0], frames.size(), 0, "augment::select_frames");
  const index_t h = frames[std::size_t(indices[0])].height, w = frames[std::size_t(indices[0])].width;
  const index_t tn = index_t(indices.size()), hw = h * w;
  clip_tensor out = clip_tensor::empty({3, tn, h, w});
  for (std::size_t t = 0; t < indices.size(); ++t) {
    detail::check_index(indices[t], frames.size(), t, "augment::select_frames");
    const data::image_u8& f = frames[std::size_t(indices[t])];
    MSCL_CHECK(f.height == h && f.width == w && f.channels == 3, shape_error,
               "augment::select_frames: frame " << indices[t] << " is " << f.height << "x" << f.width << "x"
                                                << f.channels << ", expected " << h << "x" << w << "x3");
    for (index_t c = 0; c < 3; ++c) {
      float* dst = out.data() + (c * tn + index_t(t)) * hw;
      for (index_t i = 0; i < hw; ++i) dst[i] = float(f.pixels[std::size_t(3 * i + c)]) * (1.f / 255.f);
    }
  }
  return out;
}

/// flows[indices[t]] for t < T → 2×T×H×W (u then v planes).
inline clip_tensor select_flows(const std::vector<data::flow_field>& flows, const std::vector<index_t>& indices) {
  MSCL_CHECK(!indices.empty(), value_error, "augment::select_flows: empty index list");
  detail::check_index(indices[0], flows.size(), 0, "augment::select_flows");
  const index_t h = flows[std::size_t(indices[0])].height, w = flows[std::size_t(indices[0])].width;
  const index_t tn = index_t(indices.size()), hw = h * w;
  clip_tensor out = clip_tensor::empty({2, tn, h, w});
  for (std::size_t t = 0; t < indices.size(); ++t) {
    detail::check_index(indices[t], flows.size(), t, "augment::select_flows");
    const data::flow_field& f = flows[std::size_t(indices[t])];
    MSCL_CHECK(f.height == h && f.width == w && f.u.size() == std::size_t(hw) && f.v.size() == std::size_t(hw),
               shape_error,
               "augment::select_flows: flow " << indices[t] << " is " << f.height << "x" << f.width << ", expected "
                                              << h << "x" << w);
    std::copy_n(f.u.data(), hw, out.data() + index_t(t) * hw);
    std::copy_n(f.v.data(), hw, out.data() + (tn + index_t(t)) * hw);
  }
  return out;
}

/// Time steps `indices` of a C×T×H×W clip → C×T'×H×W (a copy).
inline clip_tensor select_time(const clip_tensor& clip, const std::vector<index_t>& indices) {
  detail::check_clip(clip, 0, "augment::select_time");
  const index_t c = clip.shape()[0], tn = clip.shape()[1], hw = clip.shape()[2] * clip.shape()[3];
  const index_t to = index_t(indices.size());
  clip_tensor out = clip_tensor::empty({c, to, clip.shape()[2], clip.shape()[3]});
  for (std::size_t t = 0; t < indices.size(); ++t) {
    detail::check_index(indices[t], std::size_t(tn), t, "augment::select_time");
    for (index_t k = 0; k < c; ++k)
      std::copy_n(clip.data() + (k * tn + indices[t]) * hw, hw, out.data() + (k * to + index_t(t)) * hw);
  }
  return out;
}

/// Time steps [begin, end) of a clip (e.g. the halves X, Y of a 16-map flow pack, §1.5 step 3).
inline clip_tensor slice_time(const clip_tensor& clip, index_t begin, index_t end) {
  detail::check_clip(clip, 0, "augment::slice_time");
  MSCL_CHECK(0 <= begin && begin <= end && end <= clip.shape()[1], value_error,
             "augment::slice_time: range [" << begin << ", " << end << ") outside a clip " << to_string(clip.shape()));
  std::vector<index_t> idx;
  for (index_t t = begin; t < end; ++t) idx.push_back(t);
  return select_time(clip, idx);
}

/// [a | b] along time: C×(Ta+Tb)×H×W; both clips share C, H, W.
inline clip_tensor concat_time(const clip_tensor& a, const clip_tensor& b) {
  detail::check_clip(a, 0, "augment::concat_time");
  detail::check_clip(b, 0, "augment::concat_time");
  MSCL_CHECK(a.shape()[0] == b.shape()[0] && a.shape()[2] == b.shape()[2] && a.shape()[3] == b.shape()[3], shape_error,
             "augment::concat_time: clips differ in C, H or W: " << to_string(a.shape()) << " vs " << to_string(b.shape()));
  const index_t c = a.shape()[0], ta = a.shape()[1], tb = b.shape()[1], hw = a.shape()[2] * a.shape()[3];
  clip_tensor out = clip_tensor::empty({c, ta + tb, a.shape()[2], a.shape()[3]});
  for (index_t k = 0; k < c; ++k) {
    std::copy_n(a.data() + k * ta * hw, ta * hw, out.data() + k * (ta + tb) * hw);
    std::copy_n(b.data() + k * tb * hw, tb * hw, out.data() + (k * (ta + tb) + ta) * hw);
  }
  return out;
}

}  // namespace mscl::augment
