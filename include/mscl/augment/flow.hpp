/// \file flow.hpp
/// \brief Flow-only policies (ALGORITHM.md §4, §6.3, §6.4): per-map max-length normalisation,
///        Middlebury colour coding (2×T×H×W flow → 3×T×H×W image in [0, 1], the flow network's
///        input) and FRA, the rotation of every flow vector by one angle per sample.
///
/// They define `apply_flow` only, so `compose` skips them on RGB clips. Flow clips are
/// 2×T×H×W floats (channel 0 = u, 1 = v; x right, y down), see concepts.hpp.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "../flow/colorwheel.hpp"
#include "../flow/quantize.hpp"
#include "concepts.hpp"

namespace mscl::augment {

/// Divides every map (u, v at one time step) by its own max‖(u, v)‖ + eps (§6.3). The released
/// pipeline runs it on the whole, uncropped raw map before FRA and cropping; put it first.
class flow_max_length_normalize {
 public:
  struct params {};
  flow_max_length_normalize() = default;
  explicit flow_max_length_normalize(float eps) : eps_(eps) {}
  params sample(generator&, const clip_geometry&) const { return {}; }
  void apply_flow(const params&, clip_tensor& flow) const {
    detail::check_clip(flow, 2, "augment::flow_max_length_normalize::apply_flow");
    const index_t tn = flow.shape()[1], hw = flow.shape()[2] * flow.shape()[3];
    for (index_t t = 0; t < tn; ++t)
      flow::normalize_flow_max_length(flow.data() + t * hw, flow.data() + (tn + t) * hw, std::size_t(hw), eps_);
  }

 private:
  float eps_ = 1e-5f;
};

namespace detail {
/// atan2(y, x) in float by an odd degree-15 polynomial on [0, 1] after octant reduction; max
/// error about 3e-7 rad (glibc's atan2f is within 1 ulp), at a fraction of the cost.
inline float fast_atan2(float y, float x) {
  const float ax = std::fabs(x), ay = std::fabs(y);
  const float mx = std::max(ax, ay), mn = std::min(ax, ay);
  const float z = mx > 0.f ? mn / mx : 0.f, z2 = z * z;
  float p = -0.004073271527886391f;
  p = p * z2 + 0.021946480497717857f;
  p = p * z2 - 0.05606299638748169f;
  p = p * z2 + 0.09656243771314621f;
  p = p * z2 - 0.1391579806804657f;
  p = p * z2 + 0.19948507845401764f;
  p = p * z2 - 0.3333010673522949f;
  p = p * z2 + 0.999999463558197f;
  p *= z;
  if (ay > ax) p = 1.57079632679489662f - p;
  if (std::signbit(x)) p = 3.14159265358979324f - p;
  return std::signbit(y) ? -p : p;
}
}  // namespace detail

/// Options of `flow_color_code`.
struct flow_color_code_options {
  /// Divide each (cropped, resized) map by its own max length + 1e−5 first (§11 A12 option).
  /// Default false codes the values as they are (official: normalised before the crop, so the
  /// cropped maximum may be < 1).
  bool renormalize = false;
  /// Use a polynomial atan2 instead of the C library's. Default false: identical to
  /// flow::flow_color. true: about 4× faster on CPU; differs by one 8-bit step (1/255) in a small
  /// fraction of channel values (the coding floors 255·c, so an angle error of ~3e-7 rad moves a
  /// value across a step when it lies within ~1e-3 of it). The released code colour-codes on the
  /// GPU in float32, which is no more bit-exact with glibc than this.
  bool fast_atan2 = false;
};

/// Middlebury colour coding of every map (flow::flow_color: 55-colour wheel, length ≤ 1 blends
/// towards white, 8-bit quantised), 2×T×H×W → 3×T×H×W in [0, 1].
class flow_color_code {
 public:
  struct params {};
  flow_color_code() = default;
  explicit flow_color_code(flow_color_code_options o) : opt_(o) {}
  const flow_color_code_options& options() const { return opt_; }
  params sample(generator&, const clip_geometry&) const { return {}; }
  void apply_flow(const params&, clip_tensor& flow) const {
    detail::check_clip(flow, 2, "augment::flow_color_code::apply_flow");
    const index_t tn = flow.shape()[1], hw = flow.shape()[2] * flow.shape()[3];
    clip_tensor out = clip_tensor::empty({3, tn, flow.shape()[2], flow.shape()[3]});
    std::vector<float> u, v;
    for (index_t t = 0; t < tn; ++t) {
      const float* pu = flow.data() + t * hw;
      const float* pv = flow.data() + (tn + t) * hw;
      if (opt_.renormalize) {
        u.assign(pu, pu + hw);
        v.assign(pv, pv + hw);
        flow::normalize_flow_max_length(u.data(), v.data(), std::size_t(hw));
        pu = u.data();
        pv = v.data();
      }
      float* r = out.data() + t * hw;
      float* g = out.data() + (tn + t) * hw;
      float* b = out.data() + (2 * tn + t) * hw;
      if (opt_.fast_atan2) code_fast(pu, pv, hw, r, g, b);
      else flow::flow_to_rgb_planes(pu, pv, std::size_t(hw), r, g, b);
    }
    flow = out;
  }

  /// flow::flow_color with detail::fast_atan2 for n vectors into planes r, g, b.
  static void code_fast(const float* u, const float* v, index_t n, float* r, float* g, float* b) {
    const auto& wheel = flow::colorwheel();
    constexpr int ncols = flow::k_colorwheel_size;
    float* out[3] = {r, g, b};
    for (index_t i = 0; i < n; ++i) {
      const float rho = std::sqrt(u[i] * u[i] + v[i] * v[i]);
      const float a = detail::fast_atan2(-v[i], -u[i]) / 3.14159265358979323846f;
      const float fk = (a + 1.f) / 2.f * float(ncols - 1);
      int k0 = int(std::floor(fk));
      k0 = k0 < 0 ? 0 : (k0 > ncols - 1 ? ncols - 1 : k0);
      const int k1 = k0 + 1 == ncols ? 0 : k0 + 1;
      const float f = fk - float(k0);
      for (int c = 0; c < 3; ++c) {
        float col = ((1.f - f) * wheel[std::size_t(k0)][std::size_t(c)] + f * wheel[std::size_t(k1)][std::size_t(c)]) / 255.f;
        if (rho <= 1.f) col = 1.f - rho * (1.f - col);
        else col *= 0.75f;
        out[c][i] = std::floor(255.f * col) / 255.f;
      }
    }
  }

 private:
  flow_color_code_options opt_{};
};

/// Angle grid of FRA; the same grid as ssl::fra_options (kept separate so that the data
/// pipeline needs no ssl/ headers; a test checks that both agree).
struct flow_rotation_options {
  double ratio_lo = 0.2, ratio_hi = 1.8;
  int num_chunks = 8;
};

/// FRA (§4, `NormFlowWithStidedAug`): chunk c ~ U{0 … num_chunks−1} per sample,
/// β = π·(ratio_lo + c·(ratio_hi − ratio_lo)/num_chunks) ∈ {0.2π, 0.4π, …, 1.6π}, and every
/// vector (u, v) → (u cosβ − v sinβ, u sinβ + v cosβ). Rotation commutes with cropping, bilinear
/// resizing and max-length normalisation, so it may run at 112×112 after them; it does not
/// commute with a flip that negates u (mirror·R_β = R_−β·mirror): rotating after the flip is
/// "mirror, then rotate" as §11 A2 recommends. Draw once per sample and use the same params for
/// both views. Which maps get paired with the rotated copy is the objective's business (§1.6, A1).
class flow_rotation {
 public:
  struct params {
    int chunk = 0;       ///< the official ap_labels
    double angle = 0.0;  ///< β in radians
  };
  flow_rotation() = default;
  explicit flow_rotation(flow_rotation_options o) : opt_(o) {}
  const flow_rotation_options& options() const { return opt_; }

  /// β for chunk c.
  double angle(int chunk) const {
    MSCL_CHECK(opt_.num_chunks >= 1 && opt_.ratio_hi > opt_.ratio_lo && chunk >= 0 && chunk < opt_.num_chunks,
               value_error,
               "augment::flow_rotation::angle: chunk " << chunk << " outside [0, " << opt_.num_chunks
                                                       << ") or bad ratios (" << opt_.ratio_lo << ", " << opt_.ratio_hi
                                                       << ")");
    return 3.14159265358979323846 *
           (opt_.ratio_lo + (opt_.ratio_hi - opt_.ratio_lo) / double(opt_.num_chunks) * double(chunk));
  }
  params sample(generator& gen, const clip_geometry&) const {
    MSCL_CHECK(opt_.num_chunks >= 1, value_error,
               "augment::flow_rotation::sample: num_chunks must be >= 1, got " << opt_.num_chunks);
    const int c = int(gen.randint(0, opt_.num_chunks - 1));
    return {c, angle(c)};
  }
  /// Rotates the clip's vectors in place.
  void apply_flow(const params& p, clip_tensor& flow) const {
    detail::check_clip(flow, 2, "augment::flow_rotation::apply_flow");
    rotate(p.angle, flow.data(), flow.data(), flow.numel() / 2);
  }
  /// A rotated copy; `flow` is unchanged.
  clip_tensor rotated_copy(const params& p, const clip_tensor& flow) const {
    detail::check_clip(flow, 2, "augment::flow_rotation::rotated_copy");
    clip_tensor out = clip_tensor::empty(flow.shape());
    rotate(p.angle, flow.data(), out.data(), flow.numel() / 2);
    return out;
  }

 private:
  static void rotate(double angle, const float* in, float* out, index_t n) {
    const float c = float(std::cos(angle)), s = float(std::sin(angle));
    const float* u = in;
    const float* v = in + n;
    float* ou = out;
    float* ov = out + n;
    for (index_t i = 0; i < n; ++i) {
      const float uu = u[i], vv = v[i];
      ou[i] = uu * c - vv * s;
      ov[i] = uu * s + vv * c;
    }
  }
  flow_rotation_options opt_{};
};

/// FRA as a pack builder: 2×T×H×W → 2×2T×H×W = [F | R_β F] (time-concatenated), so that a view
/// pipeline can rotate after its crop and flip ("mirror, then rotate", §11 A2) and colour-code
/// both halves in one go. Share the params between the q and k views of a sample (§4).
class flow_rotated_pack {
 public:
  using params = flow_rotation::params;
  static constexpr bool out_of_place = true;
  flow_rotated_pack() = default;
  explicit flow_rotated_pack(flow_rotation r) : rot_(r) {}
  params sample(generator& gen, const clip_geometry& g) const { return rot_.sample(gen, g); }
  clip_geometry output_geometry(const params&, const clip_geometry& g) const {
    clip_geometry o = g;
    o.flow_frames = 2 * g.flow_frames;
    return o;
  }
  void apply_flow(const params& p, clip_tensor& flow) const {
    detail::check_clip(flow, 2, "augment::flow_rotated_pack::apply_flow");
    const index_t tn = flow.shape()[1], hw = flow.shape()[2] * flow.shape()[3];
    const clip_tensor rot = rot_.rotated_copy(p, flow);
    clip_tensor out = clip_tensor::empty({2, 2 * tn, flow.shape()[2], flow.shape()[3]});
    for (index_t c = 0; c < 2; ++c) {
      std::copy_n(flow.data() + c * tn * hw, tn * hw, out.data() + c * 2 * tn * hw);
      std::copy_n(rot.data() + c * tn * hw, tn * hw, out.data() + (c * 2 * tn + tn) * hw);
    }
    flow = out;
  }

 private:
  flow_rotation rot_{};
};

}  // namespace mscl::augment
