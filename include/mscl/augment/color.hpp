/// \file color.hpp
/// \brief Photometric RGB-only policies of the GPU stage (ALGORITHM.md §7.2, §11 A11):
///        `color_jitter` (torchvision semantics), `grayscale` (kornia weights), `gaussian_blur`
///        (11×11, σ ~ U(0.1, 2.0), reflect border) and `normalize` (ImageNet mean/std).
///
/// All act on RGB clips 3×T×H×W in [0, 1] (concepts.hpp) and define no `apply_flow`, so
/// `compose` leaves flow untouched. Per-clip parameters are the default (the paper's temporally
/// consistent augmentation, §11 A11); `color_jitter_options::per_frame` and
/// `gaussian_blur_options::fixed_sigma` give the released per-frame jitter and per-batch σ.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "concepts.hpp"

namespace mscl::augment {

namespace detail {
/// Planes of channel c, frame t of a contiguous 3×T×H×W clip.
inline float* plane(clip_tensor& x, index_t c, index_t t) {
  return x.data() + (c * x.shape()[1] + t) * x.shape()[2] * x.shape()[3];
}
inline float clamp01(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }
}  // namespace detail

// ------------------------------------------------------------------ color_jitter

/// Options of `color_jitter`. Factor ranges follow torchvision's ColorJitter: brightness,
/// contrast and saturation factors ~ U(max(0, 1 − x), 1 + x), hue shift ~ U(−hue, hue) of a full
/// turn; an option of 0 disables that op (torchvision then skips it: no HSV round trip).
struct color_jitter_options {
  double brightness = 0.4, contrast = 0.4, saturation = 0.4, hue = 0.1;
  /// false (default, §11 A11): one factor set per clip. true: one per frame, as the released
  /// kornia "batch" sync level draws them (the apply decision stays per clip via random_apply).
  bool per_frame = false;
};

/// One factor set; `order` is torchvision's fn_idx (a random permutation of 0 = brightness,
/// 1 = contrast, 2 = saturation, 3 = hue).
struct jitter_factors {
  double brightness = 1, contrast = 1, saturation = 1, hue = 0;
  std::array<int, 4> order{0, 1, 2, 3};
};

/// The float values one frame's jitter computes with, in the order the ops run: what
/// `color_jitter::apply` and the batch stage of photometric_batch.hpp (on either backend) both
/// apply. As in torchvision's _blend, a factor f and 1 − f are formed in double, then used as
/// floats.
struct jitter_coefficients {
  std::array<int, 4> ops{-1, -1, -1, -1};  ///< 0 brightness, 1 contrast, 2 saturation, 3 hue; −1: none
  float brightness = 1.f, contrast = 1.f, contrast_rest = 0.f, saturation = 1.f, saturation_rest = 0.f, hue = 0.f;
};

/// torchvision `ColorJitter` on float images in [0, 1] (torchvision 0.14 functional_tensor):
///  * brightness b: x ← clamp(b·x, 0, 1);
///  * contrast c:   x ← clamp(c·x + (1 − c)·m, 0, 1), m = mean over the frame of
///                  0.2989 r + 0.587 g + 0.114 b (per frame, as torchvision reduces dims −3..−1);
///  * saturation s: x ← clamp(s·x + (1 − s)·y, 0, 1), y the pixel's grey value as above;
///  * hue h:        RGB → HSV (torchvision's _rgb2hsv), H ← (H + h) mod 1, HSV → RGB.
/// The four ops run in the drawn random order.
class color_jitter {
 public:
  struct params {
    std::vector<jitter_factors> frames;  ///< 1 entry (per clip) or T entries (per frame)
  };
  color_jitter() = default;
  explicit color_jitter(color_jitter_options o) : opt_(o) {}
  const color_jitter_options& options() const { return opt_; }

  params sample(generator& gen, const clip_geometry& g) const {
    MSCL_CHECK(opt_.brightness >= 0 && opt_.contrast >= 0 && opt_.saturation >= 0 && opt_.hue >= 0 && opt_.hue <= 0.5,
               value_error,
               "augment::color_jitter::sample: need brightness, contrast, saturation >= 0 and 0 <= hue <= 0.5, got "
                   << opt_.brightness << ", " << opt_.contrast << ", " << opt_.saturation << ", " << opt_.hue);
    const index_t n = opt_.per_frame ? std::max<index_t>(g.frames, 1) : 1;
    params p;
    p.frames.resize(static_cast<std::size_t>(n));
    for (auto& f : p.frames) {
      for (int i = 3; i > 0; --i) std::swap(f.order[std::size_t(i)], f.order[std::size_t(gen.randint(0, i))]);
      auto factor = [&](double x) { return x > 0 ? gen.uniform(std::max(0.0, 1.0 - x), 1.0 + x) : 1.0; };
      f.brightness = factor(opt_.brightness);
      f.contrast = factor(opt_.contrast);
      f.saturation = factor(opt_.saturation);
      f.hue = opt_.hue > 0 ? gen.uniform(-opt_.hue, opt_.hue) : 0.0;
    }
    return p;
  }

  void apply(const params& p, clip_tensor& clip) const {
    detail::check_clip(clip, 3, "augment::color_jitter::apply");
    const index_t tn = clip.shape()[1], hw = clip.shape()[2] * clip.shape()[3];
    MSCL_CHECK(p.frames.size() == 1 || index_t(p.frames.size()) == tn, shape_error,
               "augment::color_jitter::apply: " << p.frames.size() << " factor sets for a clip of " << tn << " frames");
    for (index_t t = 0; t < tn; ++t)
      apply_coefficients(coefficients(p.frames[p.frames.size() == 1 ? 0 : std::size_t(t)]), detail::plane(clip, 0, t),
                         detail::plane(clip, 1, t), detail::plane(clip, 2, t), hw);
  }

  /// The float coefficients of one factor set; ops disabled in the options (a range of 0) are
  /// dropped, as torchvision skips them.
  jitter_coefficients coefficients(const jitter_factors& f) const {
    jitter_coefficients c;
    std::size_t n = 0;
    for (int op : f.order)
      if ((op == 0 && opt_.brightness > 0) || (op == 1 && opt_.contrast > 0) || (op == 2 && opt_.saturation > 0) ||
          (op == 3 && opt_.hue > 0))
        c.ops[n++] = op;
    c.brightness = float(f.brightness);
    c.contrast = float(f.contrast);
    c.contrast_rest = float(1.0 - f.contrast);
    c.saturation = float(f.saturation);
    c.saturation_rest = float(1.0 - f.saturation);
    c.hue = float(f.hue);
    return c;
  }

  /// One frame's planes (n pixels each) through the ops of `c`, in their order.
  static void apply_coefficients(const jitter_coefficients& c, float* r, float* g, float* b, index_t n) {
    for (int op : c.ops) {
      if (op == 0) brightness_planes(r, g, b, n, c.brightness);
      if (op == 1) contrast_planes(r, g, b, n, c.contrast, c.contrast_rest);
      if (op == 2) saturation_planes(r, g, b, n, c.saturation, c.saturation_rest);
      if (op == 3)
        for (index_t i = 0; i < n; ++i) hue_pixel(r[i], g[i], b[i], c.hue);
    }
  }

  // The single ops on one frame's planes (public: tests and other pipelines reuse them).
  static float grey(float r, float g, float b) { return 0.2989f * r + 0.587f * g + 0.114f * b; }
  static void adjust_brightness(float* r, float* g, float* b, index_t n, double f) { brightness_planes(r, g, b, n, float(f)); }
  static void adjust_contrast(float* r, float* g, float* b, index_t n, double f) {
    contrast_planes(r, g, b, n, float(f), float(1.0 - f));
  }
  static void adjust_saturation(float* r, float* g, float* b, index_t n, double f) {
    saturation_planes(r, g, b, n, float(f), float(1.0 - f));
  }
  /// x ← clamp(a·x, 0, 1).
  static void brightness_planes(float* r, float* g, float* b, index_t n, float a) {
    for (float* c : {r, g, b})
      for (index_t i = 0; i < n; ++i) c[i] = detail::clamp01(a * c[i]);
  }
  /// x ← clamp(a·x + rest·m, 0, 1), m the frame's mean grey (summed in double).
  static void contrast_planes(float* r, float* g, float* b, index_t n, float a, float rest) {
    double sum = 0;
    for (index_t i = 0; i < n; ++i) sum += double(grey(r[i], g[i], b[i]));
    const float k = rest * float(sum / double(n));
    for (float* c : {r, g, b})
      for (index_t i = 0; i < n; ++i) c[i] = detail::clamp01(a * c[i] + k);
  }
  /// x ← clamp(a·x + rest·y, 0, 1), y the pixel's grey value.
  static void saturation_planes(float* r, float* g, float* b, index_t n, float a, float rest) {
    for (index_t i = 0; i < n; ++i) {
      const float y = rest * grey(r[i], g[i], b[i]);
      r[i] = detail::clamp01(a * r[i] + y);
      g[i] = detail::clamp01(a * g[i] + y);
      b[i] = detail::clamp01(a * b[i] + y);
    }
  }
  static void adjust_hue(float* r, float* g, float* b, index_t n, double shift) {
    for (index_t i = 0; i < n; ++i) hue_pixel(r[i], g[i], b[i], float(shift));
  }
  /// torchvision's _rgb2hsv → (H + shift) mod 1 → _hsv2rgb for one pixel.
  static void hue_pixel(float& r, float& g, float& b, float shift) {
    const float maxc = std::max(r, std::max(g, b)), minc = std::min(r, std::min(g, b));
    const bool eqc = maxc == minc;
    const float cr = maxc - minc;
    const float s = cr / (eqc ? 1.f : maxc);
    const float div = eqc ? 1.f : cr;
    const float rc = (maxc - r) / div, gc = (maxc - g) / div, bc = (maxc - b) / div;
    float h;
    if (maxc == r) h = bc - gc;
    else if (maxc == g) h = 2.f + rc - bc;
    else h = 4.f + gc - rc;
    h = std::fmod(h / 6.f + 1.f, 1.f);
    h = h + shift;
    h = h - std::floor(h);  // Python/torch remainder by 1 (non-negative)
    const float v = maxc;
    const float h6 = h * 6.f, fi = std::floor(h6), fr = h6 - fi;
    const float pp = detail::clamp01(v * (1.f - s)), q = detail::clamp01(v * (1.f - s * fr)),
                t = detail::clamp01(v * (1.f - s * (1.f - fr)));
    switch (((int(fi) % 6) + 6) % 6) {
      case 0: r = v; g = t; b = pp; break;
      case 1: r = q; g = v; b = pp; break;
      case 2: r = pp; g = v; b = t; break;
      case 3: r = pp; g = q; b = v; break;
      case 4: r = t; g = pp; b = v; break;
      default: r = v; g = pp; b = q; break;
    }
  }

 private:
  color_jitter_options opt_{};
};

// ------------------------------------------------------------------ grayscale

/// Replaces every RGB pixel by its grey value in all three channels with kornia's weights
/// (0.299, 0.587, 0.114), as the released kornia RandomGrayscale does. Always applies: wrap in
/// `random_apply` (p = 0.2 in MSCL).
class grayscale {
 public:
  struct params {};
  grayscale() = default;
  explicit grayscale(std::array<float, 3> weights) : w_(weights) {}
  const std::array<float, 3>& weights() const { return w_; }

  params sample(generator&, const clip_geometry&) const { return {}; }
  void apply(const params&, clip_tensor& clip) const {
    detail::check_clip(clip, 3, "augment::grayscale::apply");
    const index_t n = clip.numel() / 3;
    float* r = clip.data();
    float* g = r + n;
    float* b = g + n;
    for (index_t i = 0; i < n; ++i) {
      const float y = w_[0] * r[i] + w_[1] * g[i] + w_[2] * b[i];
      r[i] = g[i] = b[i] = y;
    }
  }

 private:
  std::array<float, 3> w_{0.299f, 0.587f, 0.114f};
};

// ------------------------------------------------------------------ gaussian_blur

/// Options of `gaussian_blur` (defaults: MSCL at 112×112).
struct gaussian_blur_options {
  int kernel_size = 11;  ///< odd; the released value is ⌊0.1·112⌋ made odd
  double sigma_lo = 0.1, sigma_hi = 2.0;
  /// 0 (default, §11 A11): σ ~ U(sigma_lo, sigma_hi) per clip. > 0: this σ for every clip, for the
  /// released per-batch σ — draw it once per batch with `gaussian_blur::draw_sigma`.
  double fixed_sigma = 0;
};

/// 2-D Gaussian blur of every frame, separable, kernel k_i ∝ exp(−x_i²/(2σ²)) with
/// x_i = i − (K−1)/2 normalised to sum 1 (torchvision _get_gaussian_kernel1d, kornia), border
/// "reflect" (mirror without repeating the edge pixel: torchvision's and kornia's default).
class gaussian_blur {
 public:
  struct params {
    double sigma = 1.0;
  };
  gaussian_blur() = default;
  explicit gaussian_blur(gaussian_blur_options o) : opt_(o) {}
  const gaussian_blur_options& options() const { return opt_; }

  /// One σ ~ U(sigma_lo, sigma_hi) (for the per-batch compatibility mode).
  double draw_sigma(generator& gen) const { return gen.uniform(opt_.sigma_lo, opt_.sigma_hi); }
  params sample(generator& gen, const clip_geometry&) const {
    MSCL_CHECK(opt_.kernel_size >= 1 && opt_.kernel_size % 2 == 1 && opt_.sigma_lo > 0 && opt_.sigma_lo <= opt_.sigma_hi,
               value_error,
               "augment::gaussian_blur::sample: need an odd kernel size and 0 < sigma_lo <= sigma_hi, got kernel "
                   << opt_.kernel_size << ", sigma [" << opt_.sigma_lo << ", " << opt_.sigma_hi << "]");
    return {opt_.fixed_sigma > 0 ? opt_.fixed_sigma : draw_sigma(gen)};
  }

  /// The normalised 1-D kernel.
  static std::vector<float> kernel(int size, double sigma) {
    MSCL_CHECK(size >= 1 && size % 2 == 1 && sigma > 0, value_error,
               "augment::gaussian_blur::kernel: need an odd size and sigma > 0, got " << size << ", " << sigma);
    std::vector<float> k(static_cast<std::size_t>(size));
    const float half = float(size - 1) * 0.5f;
    float sum = 0.f;
    for (int i = 0; i < size; ++i) {
      const float x = (float(i) - half) / float(sigma);
      k[std::size_t(i)] = std::exp(-0.5f * x * x);
      sum += k[std::size_t(i)];
    }
    for (float& v : k) v /= sum;
    return k;
  }

  void apply(const params& p, clip_tensor& clip) const {
    detail::check_clip(clip, 3, "augment::gaussian_blur::apply");
    const index_t h = clip.shape()[2], w = clip.shape()[3], r = opt_.kernel_size / 2;
    MSCL_CHECK(r < h && r < w, shape_error,
               "augment::gaussian_blur::apply: reflect padding of " << r << " needs frames larger than that, got "
                                                                    << to_string(clip.shape()));
    const std::vector<float> k = kernel(opt_.kernel_size, p.sigma);
    const index_t planes = clip.numel() / (h * w);
    std::vector<float> row(static_cast<std::size_t>(w + 2 * r)), tmp(static_cast<std::size_t>(h * w));
    std::vector<const float*> rows(static_cast<std::size_t>(h + 2 * r));
    for (index_t pl = 0; pl < planes; ++pl) {
      float* x = clip.data() + pl * h * w;
      // horizontal: reflect-pad the row, then a straight convolution
      for (index_t y = 0; y < h; ++y) {
        const float* src = x + y * w;
        std::copy_n(src, w, row.data() + r);
        for (index_t i = 1; i <= r; ++i) {
          row[std::size_t(r - i)] = src[i];
          row[std::size_t(r + w - 1 + i)] = src[w - 1 - i];
        }
        float* dst = tmp.data() + y * w;
        for (index_t j = 0; j < w; ++j) dst[j] = 0.f;
        for (index_t t = 0; t <= 2 * r; ++t) {
          const float kt = k[std::size_t(t)];
          const float* s = row.data() + t;
          for (index_t j = 0; j < w; ++j) dst[j] += kt * s[j];
        }
      }
      // vertical: reflected row pointers, then accumulate rows
      for (index_t y = -r; y < h + r; ++y) {
        const index_t sy = y < 0 ? -y : (y >= h ? 2 * (h - 1) - y : y);
        rows[std::size_t(y + r)] = tmp.data() + sy * w;
      }
      for (index_t y = 0; y < h; ++y) {
        float* dst = x + y * w;
        for (index_t j = 0; j < w; ++j) dst[j] = 0.f;
        for (index_t t = 0; t <= 2 * r; ++t) {
          const float kt = k[std::size_t(t)];
          const float* s = rows[std::size_t(y + t)];
          for (index_t j = 0; j < w; ++j) dst[j] += kt * s[j];
        }
      }
    }
  }

 private:
  gaussian_blur_options opt_{};
};

// ------------------------------------------------------------------ normalize

/// x ← (x − mean_c) / std_c per channel (torchvision Normalize: subtract, then divide).
/// Defaults: ImageNet mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225). RGB only.
class normalize {
 public:
  struct params {};
  normalize() = default;
  normalize(std::array<float, 3> mean, std::array<float, 3> stddev) : mean_(mean), std_(stddev) {
    for (float s : std_) MSCL_CHECK(s > 0, value_error, "augment::normalize: std must be > 0, got " << s);
  }
  params sample(generator&, const clip_geometry&) const { return {}; }
  void apply(const params&, clip_tensor& clip) const {
    detail::check_clip(clip, 3, "augment::normalize::apply");
    const index_t n = clip.numel() / 3;
    for (index_t c = 0; c < 3; ++c) {
      float* x = clip.data() + c * n;
      const float m = mean_[std::size_t(c)], s = std_[std::size_t(c)];
      for (index_t i = 0; i < n; ++i) x[i] = (x[i] - m) / s;
    }
  }

 private:
  std::array<float, 3> mean_{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std_{0.229f, 0.224f, 0.225f};
};

}  // namespace mscl::augment
