/// \file frame.hpp
/// \brief The plain frame types that sources, flow, samplers and augmentation exchange before
///        clips become tensors: 8-bit images (HWC, row-major) and float flow fields (planar u, v
///        in pixels; x right, y down).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"

namespace mscl::data {

/// An 8-bit image, HWC row-major; channels 1 (grey) or 3 (RGB order).
struct image_u8 {
  int height = 0, width = 0, channels = 0;
  std::vector<std::uint8_t> pixels;

  image_u8() = default;
  image_u8(int h, int w, int c) : height(h), width(w), channels(c), pixels(std::size_t(h) * std::size_t(w) * std::size_t(c)) {
    MSCL_CHECK(h > 0 && w > 0 && (c == 1 || c == 3), shape_error,
               "image_u8: need positive size and 1 or 3 channels, got " << h << "x" << w << "x" << c);
  }
  bool empty() const { return pixels.empty(); }
  std::uint8_t& at(int y, int x, int c) { return pixels[(std::size_t(y) * std::size_t(width) + std::size_t(x)) * std::size_t(channels) + std::size_t(c)]; }
  std::uint8_t at(int y, int x, int c) const { return pixels[(std::size_t(y) * std::size_t(width) + std::size_t(x)) * std::size_t(channels) + std::size_t(c)]; }
};

/// A dense flow field: u (horizontal) and v (vertical) planes of height×width floats, pixels.
struct flow_field {
  int height = 0, width = 0;
  std::vector<float> u, v;

  flow_field() = default;
  flow_field(int h, int w) : height(h), width(w), u(std::size_t(h) * std::size_t(w)), v(std::size_t(h) * std::size_t(w)) {
    MSCL_CHECK(h > 0 && w > 0, shape_error, "flow_field: need a positive size, got " << h << "x" << w);
  }
  bool empty() const { return u.empty(); }
};

/// A decoded video or clip: frames in time order.
using frame_sequence = std::vector<image_u8>;

}  // namespace mscl::data
