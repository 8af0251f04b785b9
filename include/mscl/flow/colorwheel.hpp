/// \file colorwheel.hpp
/// \brief Middlebury colour coding of flow (ALGORITHM.md §6.4, as RAFT's flow_viz) and a
///        dependency-free PNG writer for flow visualisations.
///
/// MSCL feeds colour-coded flow (RGB in [0, 1], 8-bit quantised) to its flow encoder, so the coding
/// must match the Python reference exactly: a 55-colour wheel from six ramps, linear interpolation
/// between neighbouring wheel colours by angle, saturation by length (length <= 1: blend towards
/// white; longer: darkened by 0.75), then floor(255 c) / 255. The PNG writer uses stored (level 0)
/// deflate blocks with its own CRC-32 and Adler-32, so no zlib/libpng is needed; files are
/// uncompressed but valid PNGs that any reader opens.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "../core/error.hpp"

namespace mscl::flow {

/// Number of wheel colours.
inline constexpr int k_colorwheel_size = 55;

/// The wheel, index order, 0..255 per channel (RGB): ramps red->yellow (15), yellow->green (6),
/// green->cyan (4), cyan->blue (11), blue->magenta (13), magenta->red (6); step k of a ramp of
/// length n uses r_k = floor(255 k / n).
inline const std::array<std::array<float, 3>, k_colorwheel_size>& colorwheel() {
  static const auto wheel = [] {
    std::array<std::array<float, 3>, k_colorwheel_size> w{};
    int i = 0;
    auto ramp = [](int k, int n) { return static_cast<float>((255 * k) / n); };  // integer floor
    for (int k = 0; k < 15; ++k) w[i++] = {255.f, ramp(k, 15), 0.f};
    for (int k = 0; k < 6; ++k) w[i++] = {255.f - ramp(k, 6), 255.f, 0.f};
    for (int k = 0; k < 4; ++k) w[i++] = {0.f, 255.f, ramp(k, 4)};
    for (int k = 0; k < 11; ++k) w[i++] = {0.f, 255.f - ramp(k, 11), 255.f};
    for (int k = 0; k < 13; ++k) w[i++] = {ramp(k, 13), 0.f, 255.f};
    for (int k = 0; k < 6; ++k) w[i++] = {255.f, 0.f, 255.f - ramp(k, 6)};
    return w;
  }();
  return wheel;
}

/// Colour of one flow vector as RGB in [0, 1], already quantised to multiples of 1/255.
/// Lengths are taken as given: normalise the map first (normalize_flow_max_length) for the MSCL
/// input coding, where every length is <= 1.
inline std::array<float, 3> flow_color(float u, float v) {
  const auto& wheel = colorwheel();
  const float rho = std::sqrt(u * u + v * v);
  const float a = std::atan2(-v, -u) / 3.14159265358979323846f;
  const float fk = (a + 1.f) / 2.f * static_cast<float>(k_colorwheel_size - 1);
  int k0 = static_cast<int>(std::floor(fk));
  k0 = k0 < 0 ? 0 : (k0 > k_colorwheel_size - 1 ? k_colorwheel_size - 1 : k0);
  const int k1 = k0 + 1 == k_colorwheel_size ? 0 : k0 + 1;
  const float f = fk - static_cast<float>(k0);
  std::array<float, 3> out{};
  for (int c = 0; c < 3; ++c) {
    float col = ((1.f - f) * wheel[k0][c] + f * wheel[k1][c]) / 255.f;
    if (rho <= 1.f) col = 1.f - rho * (1.f - col);
    else col *= 0.75f;
    out[c] = std::floor(255.f * col) / 255.f;
  }
  return out;
}

/// Colour codes n vectors into three planes r, g, b (values in [0, 1]): the B x 2 x T x H x W ->
/// B x 3 x T x H x W layout works plane by plane.
inline void flow_to_rgb_planes(const float* u, const float* v, std::size_t n, float* r, float* g, float* b) {
  MSCL_CHECK(n == 0 || (u && v && r && g && b), shape_error,
             "flow::flow_to_rgb_planes: null buffer for " << n << " values");
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = flow_color(u[i], v[i]);
    r[i] = c[0];
    g[i] = c[1];
    b[i] = c[2];
  }
}

/// Colour codes n vectors into interleaved 8-bit RGB (3 n bytes).
inline void flow_to_rgb8(const float* u, const float* v, std::size_t n, std::uint8_t* rgb) {
  MSCL_CHECK(n == 0 || (u && v && rgb), shape_error, "flow::flow_to_rgb8: null buffer for " << n << " values");
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = flow_color(u[i], v[i]);
    for (int k = 0; k < 3; ++k) rgb[3 * i + k] = static_cast<std::uint8_t>(std::lround(c[k] * 255.f));
  }
}

namespace detail {
inline std::uint32_t png_crc32(const std::uint8_t* p, std::size_t n, std::uint32_t crc = 0xffffffffu) {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  for (std::size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
  return crc;
}
inline void put_be32(std::vector<std::uint8_t>& o, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) o.push_back(static_cast<std::uint8_t>(v >> s));
}
inline void png_chunk(std::vector<std::uint8_t>& file, const char* type, const std::vector<std::uint8_t>& data) {
  put_be32(file, static_cast<std::uint32_t>(data.size()));
  const std::size_t start = file.size();
  file.insert(file.end(), type, type + 4);
  file.insert(file.end(), data.begin(), data.end());
  put_be32(file, png_crc32(file.data() + start, file.size() - start) ^ 0xffffffffu);
}
}  // namespace detail

/// PNG file bytes for an 8-bit image (channels 1 = grey, 3 = RGB), height x width, interleaved rows.
/// Deflate stored blocks (no compression).
inline std::vector<std::uint8_t> encode_png(const std::uint8_t* pixels, std::int64_t height, std::int64_t width,
                                            int channels) {
  MSCL_CHECK(height > 0 && width > 0 && (channels == 1 || channels == 3) && pixels != nullptr, shape_error,
             "flow::encode_png: expected a non-empty H x W image with 1 or 3 channels, got " << height << "x"
                                                                                             << width << "x" << channels);
  std::vector<std::uint8_t> raw;  // filter byte 0 + row
  const std::size_t row = static_cast<std::size_t>(width) * channels;
  raw.reserve(static_cast<std::size_t>(height) * (row + 1));
  for (std::int64_t y = 0; y < height; ++y) {
    raw.push_back(0);
    raw.insert(raw.end(), pixels + y * row, pixels + (y + 1) * row);
  }
  std::vector<std::uint8_t> z{0x78, 0x01};  // zlib header: deflate, 32K window, no dictionary
  std::size_t pos = 0;
  do {
    const std::size_t len = std::min<std::size_t>(65535, raw.size() - pos);
    z.push_back(pos + len == raw.size() ? 1 : 0);  // BFINAL, BTYPE = 00 (stored)
    z.push_back(static_cast<std::uint8_t>(len & 0xff));
    z.push_back(static_cast<std::uint8_t>(len >> 8));
    z.push_back(static_cast<std::uint8_t>(~len & 0xff));
    z.push_back(static_cast<std::uint8_t>((~len >> 8) & 0xff));
    z.insert(z.end(), raw.begin() + static_cast<std::ptrdiff_t>(pos), raw.begin() + static_cast<std::ptrdiff_t>(pos + len));
    pos += len;
  } while (pos < raw.size());
  std::uint32_t a = 1, b = 0;  // Adler-32 of the uncompressed stream
  for (std::uint8_t c : raw) { a = (a + c) % 65521u; b = (b + a) % 65521u; }
  detail::put_be32(z, (b << 16) | a);

  std::vector<std::uint8_t> file{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<std::uint8_t> ihdr;
  detail::put_be32(ihdr, static_cast<std::uint32_t>(width));
  detail::put_be32(ihdr, static_cast<std::uint32_t>(height));
  ihdr.insert(ihdr.end(), {8, static_cast<std::uint8_t>(channels == 3 ? 2 : 0), 0, 0, 0});
  detail::png_chunk(file, "IHDR", ihdr);
  detail::png_chunk(file, "IDAT", z);
  detail::png_chunk(file, "IEND", {});
  return file;
}

/// Writes a PNG file; throws io_error if it cannot be written.
inline void write_png(const std::string& path, const std::uint8_t* pixels, std::int64_t height, std::int64_t width,
                      int channels) {
  const auto bytes = encode_png(pixels, height, width, channels);
  std::ofstream f(path, std::ios::binary);
  MSCL_CHECK(f.good(), io_error, "flow::write_png: cannot open " << path << " for writing");
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  MSCL_CHECK(f.good(), io_error, "flow::write_png: writing " << bytes.size() << " bytes to " << path << " failed");
}

/// Flow visualisation PNG (height x width planes u, v). With `normalize`, lengths are divided by
/// (max length + 1e-5) first, as RAFT's flow_to_image and MSCL's input coding do.
inline void write_flow_png(const std::string& path, const float* u, const float* v, std::int64_t height,
                           std::int64_t width, bool normalize = true) {
  MSCL_CHECK(height > 0 && width > 0 && u && v, shape_error,
             "flow::write_flow_png: expected non-empty H x W flow planes, got " << height << "x" << width);
  const std::size_t n = static_cast<std::size_t>(height * width);
  float div = 1.f;
  if (normalize) {
    float m2 = 0.f;
    for (std::size_t i = 0; i < n; ++i) m2 = std::max(m2, u[i] * u[i] + v[i] * v[i]);
    div = std::sqrt(m2) + 1e-5f;
  }
  std::vector<std::uint8_t> rgb(3 * n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = flow_color(u[i] / div, v[i] / div);
    for (int k = 0; k < 3; ++k) rgb[3 * i + k] = static_cast<std::uint8_t>(std::lround(c[k] * 255.f));
  }
  write_png(path, rgb.data(), height, width, 3);
}

}  // namespace mscl::flow
