/// \file canvas.hpp
/// \brief A small RGB8 drawing surface for evaluation figures: rectangles, lines, image and float
///        frame blits, a built-in 5×7 ASCII font, a line chart, a heatmap, and PNG output.
///
/// Figures (retrieval grids, training curves, confusion matrices, Grad-CAM overlays) are written
/// by programs that must not pull in a plotting stack, so this header only needs the library's own
/// PNG writer (flow/colorwheel.hpp, stored deflate) and atomic file replacement. Coordinates are
/// pixels, x to the right and y down, origin at the top-left; everything clips silently at the
/// canvas border, so callers can draw partly outside it.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../data/frame.hpp"
#include "../flow/colorwheel.hpp"
#include "../io/atomic_file.hpp"

namespace mscl::viz {

/// An 8-bit RGB colour.
struct rgb {
  std::uint8_t r = 0, g = 0, b = 0;
  friend bool operator==(rgb a, rgb b) { return a.r == b.r && a.g == b.g && a.b == b.b; }
  friend bool operator!=(rgb a, rgb b) { return !(a == b); }
};

namespace colors {
inline constexpr rgb black{0, 0, 0};
inline constexpr rgb white{255, 255, 255};
inline constexpr rgb grey{128, 128, 128};
inline constexpr rgb light_grey{220, 220, 220};
inline constexpr rgb red{214, 39, 40};
inline constexpr rgb green{44, 160, 44};
inline constexpr rgb blue{31, 119, 180};
/// Matplotlib's "tab10" cycle, for series colours.
inline rgb palette(std::size_t i) {
  static constexpr std::array<rgb, 10> tab10{{{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40},
                                              {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127},
                                              {188, 189, 34}, {23, 190, 207}}};
  return tab10[i % tab10.size()];
}
}  // namespace colors

/// How a blit resamples: nearest neighbour (crisp, for small frames enlarged) or bilinear with
/// half-pixel centres (align_corners=False, as OpenCV/torch).
enum class interpolation { nearest, bilinear };

/// Turns stored float values back into display values: pixel = clamp((v·std_c + mean_c)·scale).
/// The default maps [0, 1] to [0, 255]; `imagenet()` undoes augment::normalize's ImageNet
/// statistics; `range(lo, hi)` maps [lo, hi] linearly (e.g. a Grad-CAM map).
struct float_frame_mapping {
  std::array<float, 3> mean{0.f, 0.f, 0.f};
  std::array<float, 3> stddev{1.f, 1.f, 1.f};
  float scale = 255.f;
  static float_frame_mapping imagenet() {
    return {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, 255.f};
  }
  static float_frame_mapping range(float lo, float hi) {
    MSCL_CHECK(hi > lo, value_error, "viz::float_frame_mapping::range: need hi > lo, got [" << lo << ", " << hi << "]");
    const float s = hi - lo;
    return {{-lo / s, -lo / s, -lo / s}, {1.f / s, 1.f / s, 1.f / s}, 255.f};
  }
};

/// A planar float frame: `channels` (1 or 3) planes of height×width floats; plane c starts at
/// data + c·channel_stride (0 means height·width, i.e. a contiguous C×H×W frame). For frame t of a
/// C×T×H×W clip pass data = clip + t·H·W and channel_stride = T·H·W.
struct float_frame_view {
  const float* data = nullptr;
  int channels = 3, height = 0, width = 0;
  std::int64_t channel_stride = 0;
};

namespace detail {
/// 5×7 glyphs for ASCII 32..126, five column bytes each, bit 0 = top row (the classic HD44780-style
/// LCD font). Characters outside that range draw as '?'.
inline const std::uint8_t* glyph5x7(char ch) {
  static constexpr std::uint8_t font[95][5] = {
      {0x00, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x5F, 0x00, 0x00}, {0x00, 0x07, 0x00, 0x07, 0x00},
      {0x14, 0x7F, 0x14, 0x7F, 0x14}, {0x24, 0x2A, 0x7F, 0x2A, 0x12}, {0x23, 0x13, 0x08, 0x64, 0x62},
      {0x36, 0x49, 0x55, 0x22, 0x50}, {0x00, 0x05, 0x03, 0x00, 0x00}, {0x00, 0x1C, 0x22, 0x41, 0x00},
      {0x00, 0x41, 0x22, 0x1C, 0x00}, {0x08, 0x2A, 0x1C, 0x2A, 0x08}, {0x08, 0x08, 0x3E, 0x08, 0x08},
      {0x00, 0x50, 0x30, 0x00, 0x00}, {0x08, 0x08, 0x08, 0x08, 0x08}, {0x00, 0x60, 0x60, 0x00, 0x00},
      {0x20, 0x10, 0x08, 0x04, 0x02}, {0x3E, 0x51, 0x49, 0x45, 0x3E}, {0x00, 0x42, 0x7F, 0x40, 0x00},
      {0x42, 0x61, 0x51, 0x49, 0x46}, {0x21, 0x41, 0x45, 0x4B, 0x31}, {0x18, 0x14, 0x12, 0x7F, 0x10},
      {0x27, 0x45, 0x45, 0x45, 0x39}, {0x3C, 0x4A, 0x49, 0x49, 0x30}, {0x01, 0x71, 0x09, 0x05, 0x03},
      {0x36, 0x49, 0x49, 0x49, 0x36}, {0x06, 0x49, 0x49, 0x29, 0x1E}, {0x00, 0x36, 0x36, 0x00, 0x00},
      {0x00, 0x56, 0x36, 0x00, 0x00}, {0x08, 0x14, 0x22, 0x41, 0x00}, {0x14, 0x14, 0x14, 0x14, 0x14},
      {0x00, 0x41, 0x22, 0x14, 0x08}, {0x02, 0x01, 0x51, 0x09, 0x06}, {0x32, 0x49, 0x79, 0x41, 0x3E},
      {0x7E, 0x11, 0x11, 0x11, 0x7E}, {0x7F, 0x49, 0x49, 0x49, 0x36}, {0x3E, 0x41, 0x41, 0x41, 0x22},
      {0x7F, 0x41, 0x41, 0x22, 0x1C}, {0x7F, 0x49, 0x49, 0x49, 0x41}, {0x7F, 0x09, 0x09, 0x09, 0x01},
      {0x3E, 0x41, 0x49, 0x49, 0x7A}, {0x7F, 0x08, 0x08, 0x08, 0x7F}, {0x00, 0x41, 0x7F, 0x41, 0x00},
      {0x20, 0x40, 0x41, 0x3F, 0x01}, {0x7F, 0x08, 0x14, 0x22, 0x41}, {0x7F, 0x40, 0x40, 0x40, 0x40},
      {0x7F, 0x02, 0x0C, 0x02, 0x7F}, {0x7F, 0x04, 0x08, 0x10, 0x7F}, {0x3E, 0x41, 0x41, 0x41, 0x3E},
      {0x7F, 0x09, 0x09, 0x09, 0x06}, {0x3E, 0x41, 0x51, 0x21, 0x5E}, {0x7F, 0x09, 0x19, 0x29, 0x46},
      {0x46, 0x49, 0x49, 0x49, 0x31}, {0x01, 0x01, 0x7F, 0x01, 0x01}, {0x3F, 0x40, 0x40, 0x40, 0x3F},
      {0x1F, 0x20, 0x40, 0x20, 0x1F}, {0x3F, 0x40, 0x38, 0x40, 0x3F}, {0x63, 0x14, 0x08, 0x14, 0x63},
      {0x07, 0x08, 0x70, 0x08, 0x07}, {0x61, 0x51, 0x49, 0x45, 0x43}, {0x00, 0x7F, 0x41, 0x41, 0x00},
      {0x02, 0x04, 0x08, 0x10, 0x20}, {0x00, 0x41, 0x41, 0x7F, 0x00}, {0x04, 0x02, 0x01, 0x02, 0x04},
      {0x40, 0x40, 0x40, 0x40, 0x40}, {0x00, 0x01, 0x02, 0x04, 0x00}, {0x20, 0x54, 0x54, 0x54, 0x78},
      {0x7F, 0x48, 0x44, 0x44, 0x38}, {0x38, 0x44, 0x44, 0x44, 0x20}, {0x38, 0x44, 0x44, 0x48, 0x7F},
      {0x38, 0x54, 0x54, 0x54, 0x18}, {0x08, 0x7E, 0x09, 0x01, 0x02}, {0x0C, 0x52, 0x52, 0x52, 0x3E},
      {0x7F, 0x08, 0x04, 0x04, 0x78}, {0x00, 0x44, 0x7D, 0x40, 0x00}, {0x20, 0x40, 0x44, 0x3D, 0x00},
      {0x7F, 0x10, 0x28, 0x44, 0x00}, {0x00, 0x41, 0x7F, 0x40, 0x00}, {0x7C, 0x04, 0x18, 0x04, 0x78},
      {0x7C, 0x08, 0x04, 0x04, 0x78}, {0x38, 0x44, 0x44, 0x44, 0x38}, {0x7C, 0x14, 0x14, 0x14, 0x08},
      {0x08, 0x14, 0x14, 0x18, 0x7C}, {0x7C, 0x08, 0x04, 0x04, 0x08}, {0x48, 0x54, 0x54, 0x54, 0x20},
      {0x04, 0x3F, 0x44, 0x40, 0x20}, {0x3C, 0x40, 0x40, 0x20, 0x7C}, {0x1C, 0x20, 0x40, 0x20, 0x1C},
      {0x3C, 0x40, 0x30, 0x40, 0x3C}, {0x44, 0x28, 0x10, 0x28, 0x44}, {0x0C, 0x50, 0x50, 0x50, 0x3C},
      {0x44, 0x64, 0x54, 0x4C, 0x44}, {0x00, 0x08, 0x36, 0x41, 0x00}, {0x00, 0x00, 0x7F, 0x00, 0x00},
      {0x00, 0x41, 0x36, 0x08, 0x00}, {0x08, 0x04, 0x08, 0x10, 0x08}};
  const int i = static_cast<unsigned char>(ch) - 32;
  return font[(i >= 0 && i < 95) ? i : ('?' - 32)];
}

inline std::uint8_t clamp_u8(float v) {
  if (!(v > 0.f)) return 0;  // also maps NaN to 0
  if (v >= 255.f) return 255;
  return static_cast<std::uint8_t>(std::lround(v));
}

/// Compact tick label: up to 4 significant digits, no trailing zeros ("0.25", "1e+04", "300").
inline std::string format_number(double v, int significant = 4) {
  if (std::abs(v) < 1e-12) return "0";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*g", significant, v);
  return buf;
}

/// Tick positions covering [lo, hi] at a "nice" step (1, 2, 2.5 or 5 × 10^k), about `target` ticks.
inline std::vector<double> nice_ticks(double lo, double hi, int target = 5) {
  std::vector<double> ticks;
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return {lo};
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  const double first = std::ceil(lo / step - 1e-9) * step;
  for (double t = first; t <= hi + 1e-9 * step; t += step) ticks.push_back(std::abs(t) < 1e-12 * step ? 0.0 : t);
  return ticks;
}
}  // namespace detail

/// Glyph cell of the built-in font at scale 1: 5×7 pixels plus one column / row of spacing.
inline constexpr int k_glyph_width = 6;
inline constexpr int k_glyph_height = 8;

/// Width in pixels of `text` drawn at integer `scale` (single line).
inline int text_width(const std::string& text, int scale = 1) {
  return static_cast<int>(text.size()) * k_glyph_width * scale - (text.empty() ? 0 : scale);
}
inline int text_height(int scale = 1) { return 7 * scale; }

/// An RGB8 image you can draw on; pixels are HWC row-major, as data::image_u8 with 3 channels.
class canvas {
 public:
  canvas() = default;
  canvas(int height, int width, rgb background = colors::white) : height_(height), width_(width) {
    MSCL_CHECK(height > 0 && width > 0, shape_error,
               "viz::canvas: need a positive size, got " << height << "x" << width);
    pixels_.resize(std::size_t(height) * std::size_t(width) * 3);
    fill(background);
  }

  int height() const { return height_; }
  int width() const { return width_; }
  const std::vector<std::uint8_t>& pixels() const { return pixels_; }
  bool contains(int x, int y) const { return x >= 0 && y >= 0 && x < width_ && y < height_; }

  rgb get(int x, int y) const {
    MSCL_CHECK(contains(x, y), value_error,
               "viz::canvas::get: (" << x << ", " << y << ") outside " << width_ << "x" << height_ << " (w x h)");
    const std::uint8_t* p = &pixels_[(std::size_t(y) * std::size_t(width_) + std::size_t(x)) * 3];
    return {p[0], p[1], p[2]};
  }
  /// Sets one pixel; outside the canvas it does nothing.
  void set(int x, int y, rgb c) {
    if (!contains(x, y)) return;
    std::uint8_t* p = &pixels_[(std::size_t(y) * std::size_t(width_) + std::size_t(x)) * 3];
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
  }
  /// Blends `c` over one pixel with opacity alpha in [0, 1].
  void blend(int x, int y, rgb c, float alpha) {
    if (!contains(x, y)) return;
    std::uint8_t* p = &pixels_[(std::size_t(y) * std::size_t(width_) + std::size_t(x)) * 3];
    const std::uint8_t src[3] = {c.r, c.g, c.b};
    for (int k = 0; k < 3; ++k) p[k] = detail::clamp_u8((1.f - alpha) * float(p[k]) + alpha * float(src[k]));
  }

  void fill(rgb c) { fill_rect(0, 0, width_, height_, c); }

  /// Filled axis-aligned rectangle with top-left (x, y) and size w×h.
  void fill_rect(int x, int y, int w, int h, rgb c) {
    const int x0 = std::max(0, x), y0 = std::max(0, y);
    const int x1 = std::min(width_, x + std::max(0, w)), y1 = std::min(height_, y + std::max(0, h));
    for (int yy = y0; yy < y1; ++yy)
      for (int xx = x0; xx < x1; ++xx) set(xx, yy, c);
  }

  /// Rectangle outline of the w×h box at (x, y); the border of `thickness` pixels lies inside the box.
  void rect(int x, int y, int w, int h, rgb c, int thickness = 1) {
    MSCL_CHECK(thickness >= 1, value_error, "viz::canvas::rect: thickness must be >= 1, got " << thickness);
    const int t = std::min({thickness, (w + 1) / 2, (h + 1) / 2});
    if (w <= 0 || h <= 0) return;
    fill_rect(x, y, w, t, c);              // top
    fill_rect(x, y + h - t, w, t, c);      // bottom
    fill_rect(x, y + t, t, h - 2 * t, c);  // left
    fill_rect(x + w - t, y + t, t, h - 2 * t, c);
  }

  /// Straight line from (x0, y0) to (x1, y1) (Bresenham), `thickness` pixels wide (square pen).
  void line(int x0, int y0, int x1, int y1, rgb c, int thickness = 1) {
    const int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    const int dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    const int lo = -(thickness - 1) / 2, hi = thickness / 2;
    int err = dx + dy;
    for (;;) {
      for (int oy = lo; oy <= hi; ++oy)
        for (int ox = lo; ox <= hi; ++ox) set(x0 + ox, y0 + oy, c);
      if (x0 == x1 && y0 == y1) break;
      const int e2 = 2 * err;
      if (e2 >= dy) { err += dy; x0 += sx; }
      if (e2 <= dx) { err += dx; y0 += sy; }
    }
  }

  /// Draws `text` with its top-left at (x, y); '\n' starts a new line. Returns the x after the
  /// last character of the last line.
  int text(int x, int y, const std::string& s, rgb c = colors::black, int scale = 1) {
    MSCL_CHECK(scale >= 1, value_error, "viz::canvas::text: scale must be >= 1, got " << scale);
    int cx = x;
    for (char ch : s) {
      if (ch == '\n') {
        cx = x;
        y += k_glyph_height * scale;
        continue;
      }
      const std::uint8_t* g = detail::glyph5x7(ch);
      for (int col = 0; col < 5; ++col)
        for (int row = 0; row < 7; ++row)
          if (g[col] >> row & 1u) fill_rect(cx + col * scale, y + row * scale, scale, scale, c);
      cx += k_glyph_width * scale;
    }
    return cx;
  }

  /// Text rotated 90° counter-clockwise (reads bottom to top), starting at (x, y) = its bottom-left.
  void text_vertical(int x, int y, const std::string& s, rgb c = colors::black, int scale = 1) {
    int cy = y;
    for (char ch : s) {
      const std::uint8_t* g = detail::glyph5x7(ch);
      for (int col = 0; col < 5; ++col)
        for (int row = 0; row < 7; ++row)
          if (g[col] >> row & 1u) fill_rect(x + row * scale, cy - (col + 1) * scale, scale, scale, c);
      cy -= k_glyph_width * scale;
    }
  }

  /// Copies an 8-bit image (1 or 3 channels) into the w×h box at (x, y), resampled; w or h <= 0
  /// means the image's own size.
  void blit(const data::image_u8& img, int x, int y, int w = 0, int h = 0,
            interpolation mode = interpolation::nearest) {
    MSCL_CHECK(!img.empty() && (img.channels == 1 || img.channels == 3), shape_error,
               "viz::canvas::blit: expected a non-empty 1- or 3-channel image, got " << img.height << "x" << img.width
                                                                                      << "x" << img.channels);
    if (w <= 0) w = img.width;
    if (h <= 0) h = img.height;
    const int ch = img.channels;
    resample(img.height, img.width, w, h, x, y, mode, [&](int sy, int sx, int c) {
      return float(img.at(sy, sx, ch == 1 ? 0 : c));
    });
  }

  /// Copies a planar float frame into the w×h box at (x, y) through `mapping`.
  void blit(const float_frame_view& f, int x, int y, int w = 0, int h = 0, interpolation mode = interpolation::nearest,
            const float_frame_mapping& mapping = {}) {
    MSCL_CHECK(f.data != nullptr && f.height > 0 && f.width > 0 && (f.channels == 1 || f.channels == 3), shape_error,
               "viz::canvas::blit: expected a non-empty 1- or 3-channel float frame, got "
                   << f.channels << "x" << f.height << "x" << f.width);
    if (w <= 0) w = f.width;
    if (h <= 0) h = f.height;
    const std::int64_t plane = f.channel_stride > 0 ? f.channel_stride : std::int64_t(f.height) * f.width;
    resample(f.height, f.width, w, h, x, y, mode, [&](int sy, int sx, int c) {
      const int cc = f.channels == 1 ? 0 : c;
      const float v = f.data[cc * plane + std::int64_t(sy) * f.width + sx];
      return (v * mapping.stddev[std::size_t(cc)] + mapping.mean[std::size_t(cc)]) * mapping.scale;
    });
  }

  /// Pastes another canvas at (x, y) unscaled.
  void paste(const canvas& other, int x, int y) {
    for (int yy = 0; yy < other.height(); ++yy)
      for (int xx = 0; xx < other.width(); ++xx) set(x + xx, y + yy, other.get(xx, yy));
  }

  /// The canvas as a 3-channel data::image_u8 (copy).
  data::image_u8 to_image() const {
    data::image_u8 img(height_, width_, 3);
    img.pixels = pixels_;
    return img;
  }

  std::vector<std::uint8_t> encode_png() const {
    MSCL_CHECK(!pixels_.empty(), shape_error, "viz::canvas::encode_png: the canvas is empty");
    return flow::encode_png(pixels_.data(), height_, width_, 3);
  }
  /// Writes a PNG atomically (temporary + rename); throws io_error naming the path.
  void save_png(const std::string& path) const {
    const auto bytes = encode_png();
    io::atomic_file f(path);
    f.write(bytes.data(), bytes.size());
    f.commit();
  }

 private:
  // Resamples a src_h×src_w source (value(sy, sx, c) in 0..255 units) into the w×h box at (x, y).
  template <class Value>
  void resample(int src_h, int src_w, int w, int h, int x, int y, interpolation mode, Value value) {
    const float fy = float(src_h) / float(h), fx = float(src_w) / float(w);
    for (int oy = 0; oy < h; ++oy) {
      if (y + oy < 0 || y + oy >= height_) continue;
      for (int ox = 0; ox < w; ++ox) {
        if (x + ox < 0 || x + ox >= width_) continue;
        std::uint8_t out[3];
        if (mode == interpolation::nearest) {
          const int sy = std::min(src_h - 1, int(std::floor((float(oy) + 0.5f) * fy)));
          const int sx = std::min(src_w - 1, int(std::floor((float(ox) + 0.5f) * fx)));
          for (int c = 0; c < 3; ++c) out[c] = detail::clamp_u8(value(sy, sx, c));
        } else {
          const float syf = std::clamp((float(oy) + 0.5f) * fy - 0.5f, 0.f, float(src_h - 1));
          const float sxf = std::clamp((float(ox) + 0.5f) * fx - 0.5f, 0.f, float(src_w - 1));
          const int y0 = int(syf), x0 = int(sxf);
          const int y1 = std::min(y0 + 1, src_h - 1), x1 = std::min(x0 + 1, src_w - 1);
          const float ay = syf - float(y0), ax = sxf - float(x0);
          for (int c = 0; c < 3; ++c) {
            const float top = (1 - ax) * value(y0, x0, c) + ax * value(y0, x1, c);
            const float bot = (1 - ax) * value(y1, x0, c) + ax * value(y1, x1, c);
            out[c] = detail::clamp_u8((1 - ay) * top + ay * bot);
          }
        }
        set(x + ox, y + oy, {out[0], out[1], out[2]});
      }
    }
  }

  int height_ = 0, width_ = 0;
  std::vector<std::uint8_t> pixels_;
};

// ------------------------------------------------------------------ colour maps

/// Viridis-like map of t in [0, 1] (piecewise linear through 9 samples of matplotlib's viridis);
/// NaN maps to grey.
inline rgb viridis(double t) {
  static constexpr std::array<std::array<float, 3>, 9> k{{{68, 1, 84}, {71, 44, 122}, {59, 81, 139},
                                                         {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
                                                         {92, 200, 99}, {170, 220, 50}, {253, 231, 37}}};
  if (std::isnan(t)) return colors::grey;
  t = std::clamp(t, 0.0, 1.0) * 8.0;
  const int i = std::min(7, int(t));
  const float a = float(t - i);
  return {detail::clamp_u8((1 - a) * k[i][0] + a * k[i + 1][0]), detail::clamp_u8((1 - a) * k[i][1] + a * k[i + 1][1]),
          detail::clamp_u8((1 - a) * k[i][2] + a * k[i + 1][2])};
}

/// "Jet"-like map (blue → cyan → yellow → red), the usual Grad-CAM overlay colouring.
inline rgb jet(double t) {
  if (std::isnan(t)) return colors::grey;
  t = std::clamp(t, 0.0, 1.0);
  auto ch = [](double v) { return detail::clamp_u8(float(255.0 * std::clamp(1.5 - std::abs(v), 0.0, 1.0))); };
  return {ch(4 * t - 3), ch(4 * t - 2), ch(4 * t - 1)};
}

// ------------------------------------------------------------------ line chart

/// One curve: points (x[i], y[i]); non-finite y values break the line (gaps).
struct series {
  std::string name;
  std::vector<double> x, y;
  rgb color{0, 0, 0};
  bool use_palette = true;  ///< take colors::palette(index) instead of `color`
  int thickness = 2;
  bool markers = false;     ///< a small square at every point
};

struct line_chart_options {
  int width = 640, height = 400;
  std::string title, x_label, y_label;
  /// Axis ranges; NaN means "from the data" (with a 5 % margin on y).
  double x_min = std::numeric_limits<double>::quiet_NaN(), x_max = std::numeric_limits<double>::quiet_NaN();
  double y_min = std::numeric_limits<double>::quiet_NaN(), y_max = std::numeric_limits<double>::quiet_NaN();
  bool legend = true;
  bool grid = true;
  int font_scale = 1;
};

/// Renders series as a line chart: title, axes with tick labels, light grid, legend (top-right
/// inside the plot). Throws value_error if no series has a finite point or x/y sizes differ.
inline canvas line_chart(const std::vector<series>& all, const line_chart_options& o = {}) {
  MSCL_CHECK(o.width >= 160 && o.height >= 120, value_error,
             "viz::line_chart: size " << o.width << "x" << o.height << " is too small (min 160x120)");
  double xmin = o.x_min, xmax = o.x_max, ymin = o.y_min, ymax = o.y_max;
  double dxmin = INFINITY, dxmax = -INFINITY, dymin = INFINITY, dymax = -INFINITY;
  for (const auto& s : all) {
    MSCL_CHECK(s.x.size() == s.y.size(), value_error,
               "viz::line_chart: series '" << s.name << "' has " << s.x.size() << " x and " << s.y.size() << " y values");
    for (std::size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
        dxmin = std::min(dxmin, s.x[i]); dxmax = std::max(dxmax, s.x[i]);
        dymin = std::min(dymin, s.y[i]); dymax = std::max(dymax, s.y[i]);
      }
  }
  MSCL_CHECK(dxmin <= dxmax, value_error, "viz::line_chart: no series has a finite point");
  if (std::isnan(xmin)) xmin = dxmin;
  if (std::isnan(xmax)) xmax = dxmax;
  const double ypad = 0.05 * (dymax - dymin);
  if (std::isnan(ymin)) ymin = dymin - ypad;
  if (std::isnan(ymax)) ymax = dymax + ypad;
  if (!(xmax > xmin)) { xmin -= 0.5; xmax += 0.5; }
  if (!(ymax > ymin)) { ymin -= 0.5; ymax += 0.5; }

  const int fs = o.font_scale, th = text_height(fs);
  const auto yticks = detail::nice_ticks(ymin, ymax, 5), xticks = detail::nice_ticks(xmin, xmax, 6);
  int ylabel_w = 0;
  for (double t : yticks) ylabel_w = std::max(ylabel_w, text_width(detail::format_number(t), fs));
  const int left = 8 + (o.y_label.empty() ? 0 : th + 6) + ylabel_w + 6;
  const int top = o.title.empty() ? 10 : 10 + 2 * th + 6;
  const int bottom = o.height - (8 + th + 6 + (o.x_label.empty() ? 0 : th + 6));
  const int right = o.width - 12;
  MSCL_CHECK(right - left > 20 && bottom - top > 20, value_error,
             "viz::line_chart: size " << o.width << "x" << o.height << " leaves no room for the plot area");

  canvas cv(o.height, o.width, colors::white);
  auto px = [&](double x) { return left + int(std::lround((x - xmin) / (xmax - xmin) * (right - left))); };
  auto py = [&](double y) { return bottom - int(std::lround((y - ymin) / (ymax - ymin) * (bottom - top))); };

  if (!o.title.empty()) cv.text((o.width - text_width(o.title, 2 * fs)) / 2, 8, o.title, colors::black, 2 * fs);
  for (double t : yticks) {
    const int y = py(t);
    if (o.grid) cv.line(left, y, right, y, colors::light_grey);
    cv.line(left - 4, y, left, y, colors::black);
    const auto s = detail::format_number(t);
    cv.text(left - 6 - text_width(s, fs), y - th / 2, s, colors::black, fs);
  }
  for (double t : xticks) {
    const int x = px(t);
    if (o.grid) cv.line(x, top, x, bottom, colors::light_grey);
    cv.line(x, bottom, x, bottom + 4, colors::black);
    const auto s = detail::format_number(t);
    cv.text(x - text_width(s, fs) / 2, bottom + 6, s, colors::black, fs);
  }
  cv.rect(left, top, right - left + 1, bottom - top + 1, colors::black, 1);
  if (!o.x_label.empty())
    cv.text((left + right - text_width(o.x_label, fs)) / 2, o.height - 6 - th, o.x_label, colors::black, fs);
  if (!o.y_label.empty())
    cv.text_vertical(6, (top + bottom + text_width(o.y_label, fs)) / 2, o.y_label, colors::black, fs);

  // Curves are drawn into a plot-sized canvas first so that they clip at the axes box.
  canvas plot(bottom - top - 1, right - left - 1, colors::white);
  {
    // Copy what is under the plot area (the grid) so that the paste keeps it.
    for (int y = 0; y < plot.height(); ++y)
      for (int x = 0; x < plot.width(); ++x) plot.set(x, y, cv.get(left + 1 + x, top + 1 + y));
  }
  for (std::size_t k = 0; k < all.size(); ++k) {
    const auto& s = all[k];
    const rgb c = s.use_palette ? colors::palette(k) : s.color;
    bool have_prev = false;
    int prev_x = 0, prev_y = 0;
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) { have_prev = false; continue; }
      const int x = px(s.x[i]) - left - 1, y = py(s.y[i]) - top - 1;
      if (have_prev) plot.line(prev_x, prev_y, x, y, c, s.thickness);
      if (s.markers || s.x.size() == 1) plot.fill_rect(x - 2, y - 2, 5, 5, c);
      prev_x = x; prev_y = y; have_prev = true;
    }
  }
  cv.paste(plot, left + 1, top + 1);

  if (o.legend) {
    int lw = 0, n = 0;
    for (const auto& s : all)
      if (!s.name.empty()) { lw = std::max(lw, text_width(s.name, fs)); ++n; }
    if (n > 0) {
      const int row = th + 6, box_w = lw + 34, box_h = n * row + 6;
      const int bx = right - box_w - 6, by = top + 6;
      cv.fill_rect(bx, by, box_w, box_h, colors::white);
      cv.rect(bx, by, box_w, box_h, colors::grey, 1);
      int r = 0;
      for (std::size_t k = 0; k < all.size(); ++k) {
        if (all[k].name.empty()) continue;
        const rgb c = all[k].use_palette ? colors::palette(k) : all[k].color;
        const int y = by + 4 + r * row;
        cv.fill_rect(bx + 6, y + th / 2 - 1, 18, 3, c);
        cv.text(bx + 28, y, all[k].name, colors::black, fs);
        ++r;
      }
    }
  }
  return cv;
}

// ------------------------------------------------------------------ heatmap

struct heatmap_options {
  int cell = 24;                        ///< cell size in pixels (square)
  std::string title;
  std::vector<std::string> row_labels;  ///< empty, or one per row
  std::vector<std::string> col_labels;  ///< empty, or one per column (drawn vertically)
  bool cell_text = false;               ///< print each value in its cell
  int cell_text_digits = 2;             ///< significant digits of the cell text
  /// Colour range; NaN means the data's min / max.
  double v_min = std::numeric_limits<double>::quiet_NaN(), v_max = std::numeric_limits<double>::quiet_NaN();
  rgb (*colormap)(double) = viridis;
  bool colorbar = true;                 ///< a bar with the range's end values on the right
  int font_scale = 1;
};

/// Renders a rows×cols matrix (row-major `values`) as coloured cells (row 0 at the top), with
/// optional labels, per-cell text (black or white by cell luminance) and a colour bar.
inline canvas heatmap(const std::vector<double>& values, int rows, int cols, const heatmap_options& o = {}) {
  MSCL_CHECK(rows > 0 && cols > 0 && values.size() == std::size_t(rows) * std::size_t(cols), shape_error,
             "viz::heatmap: expected " << rows << "x" << cols << " values, got " << values.size());
  MSCL_CHECK(o.row_labels.empty() || o.row_labels.size() == std::size_t(rows), value_error,
             "viz::heatmap: " << o.row_labels.size() << " row labels for " << rows << " rows");
  MSCL_CHECK(o.col_labels.empty() || o.col_labels.size() == std::size_t(cols), value_error,
             "viz::heatmap: " << o.col_labels.size() << " column labels for " << cols << " columns");
  MSCL_CHECK(o.cell >= 2 && o.colormap != nullptr, value_error, "viz::heatmap: cell size must be >= 2, got " << o.cell);
  double lo = o.v_min, hi = o.v_max;
  double dlo = INFINITY, dhi = -INFINITY;
  for (double v : values)
    if (std::isfinite(v)) { dlo = std::min(dlo, v); dhi = std::max(dhi, v); }
  if (std::isnan(lo)) lo = std::isfinite(dlo) ? dlo : 0.0;
  if (std::isnan(hi)) hi = std::isfinite(dhi) ? dhi : 1.0;
  const double span = hi > lo ? hi - lo : 1.0;

  const int fs = o.font_scale, th = text_height(fs);
  int row_w = 0, col_h = 0;
  for (const auto& s : o.row_labels) row_w = std::max(row_w, text_width(s, fs));
  for (const auto& s : o.col_labels) col_h = std::max(col_h, text_width(s, fs));
  const int left = 6 + (row_w > 0 ? row_w + 6 : 0);
  const int top = 6 + (o.title.empty() ? 0 : 2 * th + 8) + (col_h > 0 ? col_h + 6 : 0);
  const std::string lo_s = detail::format_number(lo, 3), hi_s = detail::format_number(hi, 3);
  const int bar_w = o.colorbar ? 16 + 6 + std::max(text_width(lo_s, fs), text_width(hi_s, fs)) + 10 : 0;
  const int width = std::max(left + cols * o.cell + 6 + bar_w, o.title.empty() ? 0 : text_width(o.title, 2 * fs) + 12);
  const int height = top + rows * o.cell + 6;
  canvas cv(height, width, colors::white);

  if (!o.title.empty()) cv.text(6, 6, o.title, colors::black, 2 * fs);
  for (int r = 0; r < rows; ++r) {
    if (!o.row_labels.empty())
      cv.text(left - 6 - text_width(o.row_labels[r], fs), top + r * o.cell + (o.cell - th) / 2, o.row_labels[r],
              colors::black, fs);
    for (int c = 0; c < cols; ++c) {
      const double v = values[std::size_t(r) * cols + c];
      const rgb col = o.colormap(std::isfinite(v) ? (v - lo) / span : std::nan(""));
      cv.fill_rect(left + c * o.cell, top + r * o.cell, o.cell, o.cell, col);
      if (o.cell_text) {
        const std::string s = std::isfinite(v) ? detail::format_number(v, o.cell_text_digits) : "nan";
        const float lum = 0.299f * col.r + 0.587f * col.g + 0.114f * col.b;
        cv.text(left + c * o.cell + (o.cell - text_width(s, fs)) / 2, top + r * o.cell + (o.cell - th) / 2, s,
                lum > 128.f ? colors::black : colors::white, fs);
      }
    }
  }
  for (int c = 0; c < int(o.col_labels.size()); ++c)
    cv.text_vertical(left + c * o.cell + (o.cell - th) / 2, top - 6, o.col_labels[c], colors::black, fs);
  if (o.colorbar) {
    const int bx = left + cols * o.cell + 10, bh = rows * o.cell;
    for (int y = 0; y < bh; ++y) cv.fill_rect(bx, top + y, 16, 1, o.colormap(1.0 - (y + 0.5) / bh));
    cv.rect(bx, top, 16, bh, colors::black, 1);
    cv.text(bx + 22, top, hi_s, colors::black, fs);
    cv.text(bx + 22, top + bh - th, lo_s, colors::black, fs);
  }
  return cv;
}

}  // namespace mscl::viz
