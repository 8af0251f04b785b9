/// \file spatial.hpp
/// \brief Spatial policies shared by a view's RGB and flow clips (ALGORITHM.md §6.5, §7.1):
///        `random_resized_crop` (MMAction2/torchvision box, bilinear resize to 112×112, the box
///        mapped to flow resolution per axis) and `horizontal_flip` (mirrors, and negates u on
///        flow by default, §11 A2). Clip layouts as in concepts.hpp (3×T×H×W / 2×T×H×W floats).
///
/// Bilinear semantics: exactly PyTorch's `F.interpolate(mode="bilinear", align_corners=False,
/// antialias=False)` index arithmetic, as its CPU kernel (1.13) evaluates it for float: per axis
/// s = float(in/out), src = max(float(s·(dst + 0.5) − 0.5), 0) (the bracket in double, as
/// PyTorch's double literals make it), i0 = ⌊src⌋, i1 = min(i0 + 1, in − 1),
/// λ1 = src − i0, λ0 = 1 − λ1, combined as λh0·(λw0·x00 + λw1·x01) + λh1·(λw0·x10 + λw1·x11).
/// On float data this is also OpenCV's INTER_LINEAR (same taps, no antialiasing when shrinking);
/// OpenCV on uint8 additionally rounds weights to 11-bit fixed point and the result to uint8,
/// which the official MMAction2 `MoCoResize` (mmcv.imresize on uint8) inherits. mscl keeps the
/// interpolated value in float (no 1/255 quantisation), a deliberate ≤ 0.5/255 difference.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "../data/frame.hpp"
#include "concepts.hpp"

namespace mscl::augment {

/// A crop rectangle in pixels: columns [x, x + w), rows [y, y + h).
struct crop_box {
  index_t x = 0, y = 0, w = 0, h = 0;
  bool operator==(const crop_box& o) const { return x == o.x && y == o.y && w == o.w && h == o.h; }
};

/// Maps an RGB box to a plane of another resolution (§6.5): each coordinate of
/// (left, top, right, bottom) is scaled by its axis ratio (H_f/H, W_f/W) and rounded to nearest,
/// ties to even (Python's round); the result keeps at least one pixel and stays inside the plane.
inline crop_box map_crop_box(const crop_box& b, index_t height, index_t width, index_t to_height, index_t to_width) {
  MSCL_CHECK(height > 0 && width > 0 && to_height > 0 && to_width > 0, value_error,
             "augment::map_crop_box: sizes must be positive, got " << height << "x" << width << " -> " << to_height
                                                                   << "x" << to_width);
  const double ry = double(to_height) / double(height), rx = double(to_width) / double(width);
  auto rnd = [](double v) { return index_t(std::nearbyint(v)); };
  index_t l = rnd(double(b.x) * rx), r = rnd(double(b.x + b.w) * rx);
  index_t t = rnd(double(b.y) * ry), d = rnd(double(b.y + b.h) * ry);
  l = std::clamp<index_t>(l, 0, to_width - 1);
  t = std::clamp<index_t>(t, 0, to_height - 1);
  r = std::clamp<index_t>(r, l + 1, to_width);
  d = std::clamp<index_t>(d, t + 1, to_height);
  return {l, t, r - l, d - t};
}

namespace detail {
/// Per-axis taps of PyTorch's bilinear (align_corners = false) for `in` source pixels starting at
/// `first`, resampled to `out` pixels.
struct linear_taps {
  std::vector<index_t> i0, i1;
  std::vector<float> l0, l1;
};
inline linear_taps make_linear_taps(index_t first, index_t in, index_t out) {
  linear_taps t;
  t.i0.resize(static_cast<std::size_t>(out));
  t.i1.resize(static_cast<std::size_t>(out));
  t.l0.resize(static_cast<std::size_t>(out));
  t.l1.resize(static_cast<std::size_t>(out));
  const float scale = float(in) / float(out);
  for (index_t d = 0; d < out; ++d) {
    // PyTorch's area_pixel_compute_source_index: float scale, `scale * (dst + 0.5) - 0.5` with
    // double literals, i.e. evaluated in double and rounded to float once (also immune to FMA
    // contraction, which would move positions by an ulp)
    float src = float(double(scale) * (double(d) + 0.5) - 0.5);
    if (src < 0.f) src = 0.f;
    const index_t i0 = index_t(src);
    const index_t i1 = i0 + (i0 < in - 1 ? 1 : 0);
    const float l1 = std::min(std::max(src - float(i0), 0.f), 1.f);
    t.i0[std::size_t(d)] = first + i0;
    t.i1[std::size_t(d)] = first + i1;
    t.l1[std::size_t(d)] = l1;
    t.l0[std::size_t(d)] = 1.f - l1;
  }
  return t;
}

/// Crops box b of each of `planes` H×W source planes and resizes it to oh×ow contiguous float
/// planes at `out`, multiplying by `out_scale` (1/255 for uint8 sources). Plane p starts at
/// in + p·plane_stride and pixel (y, x) sits at y·width·pixel_stride + x·pixel_stride, which covers
/// planar float clips (pixel_stride 1) and interleaved HWC uint8 frames (pixel_stride 3, planes =
/// channels, plane_stride 1). Horizontal pass per needed source row into a two-row cache, then the
/// vertical blend: each source row is interpolated at most once per plane.
template <class Src>
void crop_resize_planes(const Src* in, index_t planes, index_t width, index_t pixel_stride, index_t plane_stride,
                        const crop_box& b, float* out, index_t oh, index_t ow, float out_scale = 1.f) {
  const linear_taps tx = make_linear_taps(b.x, b.w, ow), ty = make_linear_taps(b.y, b.h, oh);
  std::vector<float> buf0(static_cast<std::size_t>(ow)), buf1(static_cast<std::size_t>(ow));
  const index_t row_stride = width * pixel_stride;
  for (index_t p = 0; p < planes; ++p) {
    const Src* src = in + p * plane_stride;
    float* dst = out + p * oh * ow;
    auto hpass = [&](index_t y, float* row) {
      const Src* r = src + y * row_stride;
      for (index_t x = 0; x < ow; ++x) {
        const std::size_t k = std::size_t(x);
        row[k] = tx.l0[k] * float(r[tx.i0[k] * pixel_stride]) + tx.l1[k] * float(r[tx.i1[k] * pixel_stride]);
      }
    };
    index_t have0 = -1, have1 = -1;  // source rows held by buf0 / buf1
    for (index_t y = 0; y < oh; ++y) {
      const std::size_t k = std::size_t(y);
      const index_t y0 = ty.i0[k], y1 = ty.i1[k];
      if (y0 != have0) {
        if (y0 == have1) {
          std::swap(buf0, buf1);
          std::swap(have0, have1);
        } else {
          hpass(y0, buf0.data());
          have0 = y0;
        }
      }
      const float* r0 = buf0.data();
      const float* r1 = r0;
      if (y1 != y0) {
        if (y1 != have1) {
          hpass(y1, buf1.data());
          have1 = y1;
        }
        r1 = buf1.data();
      }
      const float a = ty.l0[k], c = ty.l1[k];
      float* o = dst + y * ow;
      if (out_scale == 1.f) {
        for (index_t x = 0; x < ow; ++x) o[x] = a * r0[x] + c * r1[x];
      } else {
        for (index_t x = 0; x < ow; ++x) o[x] = (a * r0[x] + c * r1[x]) * out_scale;
      }
    }
  }
}
}  // namespace detail

// ------------------------------------------------------------------ random_resized_crop

/// Options of `random_resized_crop`; defaults are the MSCL values (§7.1). Read at sample/apply
/// time, so changing them between calls takes effect at the next call.
struct random_resized_crop_options {
  double area_lo = 0.2, area_hi = 1.0;              ///< crop area as a fraction of H·W, uniform
  double ratio_lo = 3.0 / 4.0, ratio_hi = 4.0 / 3.0;  ///< aspect w/h, log-uniform
  int max_tries = 10;                                ///< candidates before the centred-square fallback
  index_t out_height = 112, out_width = 112;         ///< resize target (aspect not kept)
};

/// MMAction2 `RandomResizedCrop` + `Resize(keep_ratio=False)` (§7.1): up to `max_tries`
/// candidates with area fraction ~ U(area_lo, area_hi) and aspect ar = exp(U(log lo, log hi)),
/// w = round(sqrt(area·ar)), h = round(sqrt(area/ar)); the first that fits gets integer offsets
/// x ~ U{0..W−w}, y ~ U{0..H−h}; otherwise the centred square of side min(H, W). One box per
/// clip (all frames); the flow box is the RGB box mapped by `map_crop_box`. Both are resized to
/// out_height×out_width with the bilinear rule of this file's comment. Flow vectors are not
/// rescaled (official; harmless after max-length normalisation, §6.5).
class random_resized_crop {
 public:
  struct params {
    crop_box rgb, flow;                       ///< boxes on the RGB and flow planes
    index_t height = 0, width = 0;            ///< RGB plane size the box was drawn for
    index_t flow_height = 0, flow_width = 0;  ///< flow plane size (0 = no flow)
    index_t out_height = 0, out_width = 0;
    bool fallback = false;                    ///< no candidate fitted: centred square
  };
  static constexpr bool out_of_place = true;

  random_resized_crop() = default;
  explicit random_resized_crop(random_resized_crop_options o) : opt_(o) {}
  const random_resized_crop_options& options() const { return opt_; }

  params sample(generator& gen, const clip_geometry& g) const {
    MSCL_CHECK(g.height > 0 && g.width > 0, value_error,
               "augment::random_resized_crop::sample: RGB geometry must be positive, got " << g.height << "x" << g.width);
    MSCL_CHECK(opt_.area_lo > 0 && opt_.area_lo <= opt_.area_hi && opt_.ratio_lo > 0 && opt_.ratio_lo <= opt_.ratio_hi &&
                   opt_.out_height > 0 && opt_.out_width > 0,
               value_error,
               "augment::random_resized_crop::sample: need 0 < area_lo <= area_hi, 0 < ratio_lo <= ratio_hi and a "
               "positive output size, got area ["
                   << opt_.area_lo << ", " << opt_.area_hi << "], ratio [" << opt_.ratio_lo << ", " << opt_.ratio_hi
                   << "], out " << opt_.out_height << "x" << opt_.out_width);
    params p;
    p.height = g.height;
    p.width = g.width;
    p.out_height = opt_.out_height;
    p.out_width = opt_.out_width;
    const double area = double(g.height) * double(g.width);
    const double log_lo = std::log(opt_.ratio_lo), log_hi = std::log(opt_.ratio_hi);
    bool found = false;
    for (int i = 0; i < opt_.max_tries && !found; ++i) {
      const double target = gen.uniform(opt_.area_lo, opt_.area_hi) * area;
      const double ar = std::exp(gen.uniform(log_lo, log_hi));
      const index_t w = index_t(std::nearbyint(std::sqrt(target * ar)));
      const index_t h = index_t(std::nearbyint(std::sqrt(target / ar)));
      if (w > 0 && h > 0 && w <= g.width && h <= g.height) {
        p.rgb = {gen.randint(0, g.width - w), gen.randint(0, g.height - h), w, h};
        found = true;
      }
    }
    if (!found) {
      const index_t s = std::min(g.height, g.width);
      p.rgb = {(g.width - s) / 2, (g.height - s) / 2, s, s};
      p.fallback = true;
    }
    if (g.has_flow()) {
      p.flow_height = g.flow_height;
      p.flow_width = g.flow_width;
      p.flow = map_crop_box(p.rgb, g.height, g.width, g.flow_height, g.flow_width);
    }
    return p;
  }

  clip_geometry output_geometry(const params& p, const clip_geometry& g) const {
    clip_geometry o = g;
    o.height = p.out_height;
    o.width = p.out_width;
    if (g.has_flow()) {
      o.flow_height = p.out_height;
      o.flow_width = p.out_width;
    }
    return o;
  }

  /// RGB (or any C×T×H×W) clip of the sampled RGB size → C×T×out_h×out_w.
  void apply(const params& p, clip_tensor& clip) const { clip = crop_resize(p.rgb, p.height, p.width, p, clip, "apply"); }
  /// Flow (or colour-coded flow) clip of the sampled flow size → C×T×out_h×out_w, via the mapped box.
  void apply_flow(const params& p, clip_tensor& flow) const {
    MSCL_CHECK(p.flow_height > 0, value_error,
               "augment::random_resized_crop::apply_flow: the params were sampled for a geometry without flow");
    flow = crop_resize(p.flow, p.flow_height, p.flow_width, p, flow, "apply_flow");
  }

  /// Fused temporal selection + crop + resize + uint8→[0, 1] for decoded RGB frames (HWC): frame
  /// `indices[t]` becomes time step t of a 3×T×out_h×out_w clip. Cheaper than converting whole
  /// frames first: only the taps inside the box are read.
  clip_tensor apply_frames(const params& p, const data::frame_sequence& frames, const std::vector<index_t>& indices) const {
    clip_tensor out = clip_tensor::empty({3, index_t(indices.size()), p.out_height, p.out_width});
    const index_t tn = index_t(indices.size()), plane = p.out_height * p.out_width;
    std::vector<float> tmp(static_cast<std::size_t>(3 * plane));
    for (index_t t = 0; t < tn; ++t) {
      const data::image_u8& f = pick(frames, indices, t, "apply_frames");
      MSCL_CHECK(f.height == p.height && f.width == p.width && f.channels == 3, shape_error,
                 "augment::random_resized_crop::apply_frames: frame " << indices[std::size_t(t)] << " is " << f.height
                     << "x" << f.width << "x" << f.channels << ", the box was drawn for " << p.height << "x" << p.width
                     << "x3");
      detail::crop_resize_planes(f.pixels.data(), 3, f.width, 3, 1, p.rgb, tmp.data(), p.out_height, p.out_width,
                                 1.f / 255.f);
      for (index_t c = 0; c < 3; ++c)
        std::copy_n(tmp.data() + c * plane, plane, out.data() + (c * tn + t) * plane);
    }
    return out;
  }

  /// Fused temporal selection + crop + resize for flow fields: → 2×T×out_h×out_w.
  clip_tensor apply_flow_fields(const params& p, const std::vector<data::flow_field>& flows,
                                const std::vector<index_t>& indices) const {
    MSCL_CHECK(p.flow_height > 0, value_error,
               "augment::random_resized_crop::apply_flow_fields: the params were sampled for a geometry without flow");
    const index_t tn = index_t(indices.size()), plane = p.out_height * p.out_width;
    clip_tensor out = clip_tensor::empty({2, tn, p.out_height, p.out_width});
    for (index_t t = 0; t < tn; ++t) {
      const data::flow_field& f = pick(flows, indices, t, "apply_flow_fields");
      MSCL_CHECK(f.height == p.flow_height && f.width == p.flow_width &&
                     f.u.size() == std::size_t(f.height) * std::size_t(f.width) && f.v.size() == f.u.size(),
                 shape_error,
                 "augment::random_resized_crop::apply_flow_fields: flow " << indices[std::size_t(t)] << " is "
                     << f.height << "x" << f.width << ", the box was drawn for " << p.flow_height << "x" << p.flow_width);
      detail::crop_resize_planes(f.u.data(), 1, f.width, 1, 0, p.flow, out.data() + t * plane, p.out_height,
                                 p.out_width);
      detail::crop_resize_planes(f.v.data(), 1, f.width, 1, 0, p.flow, out.data() + (tn + t) * plane, p.out_height,
                                 p.out_width);
    }
    return out;
  }

 private:
  template <class Frame>
  static const Frame& pick(const std::vector<Frame>& frames, const std::vector<index_t>& indices, index_t t,
                           const char* who) {
    const index_t i = indices[std::size_t(t)];
    MSCL_CHECK(i >= 0 && i < index_t(frames.size()), value_error,
               "augment::random_resized_crop::" << who << ": index " << i << " at position " << t << " outside [0, "
                                                 << frames.size() << ")");
    return frames[std::size_t(i)];
  }
  static clip_tensor crop_resize(const crop_box& b, index_t h, index_t w, const params& p, const clip_tensor& in,
                                 const char* who) {
    detail::check_clip(in, 0, who);
    MSCL_CHECK(in.shape()[2] == h && in.shape()[3] == w, shape_error,
               "augment::random_resized_crop::" << who << ": the box was drawn for " << h << "x" << w
                                                 << " planes, the clip is " << to_string(in.shape()));
    const index_t c = in.shape()[0], t = in.shape()[1];
    clip_tensor out = clip_tensor::empty({c, t, p.out_height, p.out_width});
    detail::crop_resize_planes(in.data(), c * t, w, 1, h * w, b, out.data(), p.out_height, p.out_width);
    return out;
  }

  random_resized_crop_options opt_{};
};

// ------------------------------------------------------------------ horizontal_flip

/// Mirrors every frame left-right. On a 2-channel flow clip it also negates u (the mirror of a
/// motion to the right is a motion to the left; §11 A2) unless `flip_negates_flow` is false,
/// which reproduces the released code (it flips the colour-coded image, so directions stay
/// unflipped). A 3-channel (already colour-coded) flow clip is only mirrored. Always flips: wrap
/// it in `random_apply` for the p = 0.5 per-clip decision (`random_horizontal_flip`).
class horizontal_flip {
 public:
  struct params {};
  horizontal_flip() = default;
  explicit horizontal_flip(bool flip_negates_flow) : negate_(flip_negates_flow) {}
  bool flip_negates_flow() const { return negate_; }

  params sample(generator&, const clip_geometry&) const { return {}; }
  void apply(const params&, clip_tensor& clip) const {
    detail::check_clip(clip, 0, "augment::horizontal_flip::apply");
    mirror(clip);
  }
  void apply_flow(const params&, clip_tensor& flow) const {
    detail::check_clip(flow, 0, "augment::horizontal_flip::apply_flow");
    MSCL_CHECK(flow.shape()[0] == 2 || flow.shape()[0] == 3, shape_error,
               "augment::horizontal_flip::apply_flow: expected 2 (u, v) or 3 (colour-coded) channels, got "
                   << to_string(flow.shape()));
    mirror(flow);
    if (negate_ && flow.shape()[0] == 2) {
      float* u = flow.data();
      for (index_t i = 0, n = flow.numel() / 2; i < n; ++i) u[i] = -u[i];
    }
  }

 private:
  static void mirror(clip_tensor& x) {
    const index_t w = x.shape()[3], rows = x.numel() / w;
    float* d = x.data();
    for (index_t r = 0; r < rows; ++r) std::reverse(d + r * w, d + (r + 1) * w);
  }
  bool negate_ = true;
};

}  // namespace mscl::augment
