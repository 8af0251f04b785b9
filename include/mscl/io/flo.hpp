/// \file flo.hpp
/// \brief Middlebury `.flo` optical-flow files (the container RAFT, PWC-Net and FlowNet tools
///        write): reading with checks against hostile or damaged files, and atomic writing.
///
/// Layout (little-endian): float32 tag 202021.25 (the bytes "PIEH"), int32 width, int32 height,
/// then height·width pairs of float32 (u, v), row-major, interleaved. The reader checks the tag,
/// bounds the size (1..2^16 per side), and requires the file to be exactly 12 + 8·w·h bytes before
/// it allocates anything, so a corrupt header cannot trigger a huge allocation and a truncated or
/// padded file is reported rather than silently accepted. Values are returned as stored (Middlebury
/// marks unknown flow with |value| > 1e9; callers decide what to do with it). Byte order is handled
/// explicitly, so big-endian hosts read the same files.
#pragma once
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>

#include "../core/error.hpp"
#include "../data/frame.hpp"
#include "atomic_file.hpp"

namespace mscl::io {

/// The tag float 202021.25 ("PIEH" as little-endian bytes).
inline constexpr float k_flo_tag = 202021.25f;
/// Largest accepted width or height.
inline constexpr std::int64_t k_flo_max_side = 1 << 16;

namespace detail {
inline std::uint32_t load_le_u32(const unsigned char* p) {
  return std::uint32_t(p[0]) | (std::uint32_t(p[1]) << 8) | (std::uint32_t(p[2]) << 16) | (std::uint32_t(p[3]) << 24);
}
inline float load_le_f32(const unsigned char* p) {
  const std::uint32_t w = load_le_u32(p);
  float f;
  std::memcpy(&f, &w, 4);
  return f;
}
inline void store_le_u32(unsigned char* p, std::uint32_t w) {
  for (int k = 0; k < 4; ++k) p[k] = static_cast<unsigned char>(w >> (8 * k));
}
inline void store_le_f32(unsigned char* p, float f) {
  std::uint32_t w;
  std::memcpy(&w, &f, 4);
  store_le_u32(p, w);
}

/// Validates a 12-byte header against the total size; returns (height, width).
inline std::pair<int, int> flo_check_header(const unsigned char* h, std::uint64_t total, const std::string& name) {
  MSCL_CHECK(total >= 12, io_error,
             "read_flo: '" << name << "' has " << total << " bytes, fewer than the 12-byte .flo header");
  const float tag = load_le_f32(h);
  MSCL_CHECK(tag == k_flo_tag, io_error,
             "read_flo: '" << name << "' is not a Middlebury .flo file (tag " << tag << ", expected 202021.25 'PIEH')");
  const auto w = static_cast<std::int32_t>(load_le_u32(h + 4));
  const auto hh = static_cast<std::int32_t>(load_le_u32(h + 8));
  MSCL_CHECK(w >= 1 && hh >= 1 && w <= k_flo_max_side && hh <= k_flo_max_side, io_error,
             "read_flo: '" << name << "' declares width " << w << " and height " << hh << ", expected 1.."
                           << k_flo_max_side << " each");
  const std::uint64_t expected = 12u + 8u * std::uint64_t(w) * std::uint64_t(hh);
  MSCL_CHECK(total == expected, io_error,
             "read_flo: '" << name << "' is " << total << " bytes but a " << w << "x" << hh << " flow needs " << expected
                           << (total < expected ? " (truncated)" : " (trailing bytes)"));
  return {int(hh), int(w)};
}
}  // namespace detail

/// Decodes an in-memory .flo file; `name` is used in error messages.
inline data::flow_field decode_flo(const void* bytes, std::size_t n, const std::string& name = "<memory>") {
  MSCL_CHECK(bytes != nullptr || n == 0, io_error, "decode_flo: null buffer for '" << name << "'");
  const auto* p = static_cast<const unsigned char*>(bytes);
  unsigned char header[12] = {};
  if (n >= 12) std::memcpy(header, p, 12);
  const auto [h, w] = detail::flo_check_header(header, n, name);
  data::flow_field f(h, w);
  const std::size_t count = std::size_t(h) * std::size_t(w);
  for (std::size_t i = 0; i < count; ++i) {
    f.u[i] = detail::load_le_f32(p + 12 + 8 * i);
    f.v[i] = detail::load_le_f32(p + 16 + 8 * i);
  }
  return f;
}

/// Reads a .flo file; throws io_error naming the file for a missing, short, padded or foreign file.
inline data::flow_field read_flo(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MSCL_CHECK(in.good(), io_error, "read_flo: cannot open '" << path << "'");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  MSCL_CHECK(size >= 0, io_error, "read_flo: cannot determine the size of '" << path << "'");
  in.seekg(0, std::ios::beg);
  unsigned char header[12] = {};
  if (size >= 12) in.read(reinterpret_cast<char*>(header), 12);
  detail::flo_check_header(header, std::uint64_t(size), path);  // before allocating the payload
  std::string bytes(static_cast<std::size_t>(size), '\0');
  std::memcpy(bytes.data(), header, 12);
  in.read(bytes.data() + 12, static_cast<std::streamsize>(size - 12));
  MSCL_CHECK(in.gcount() == static_cast<std::streamsize>(size - 12), io_error,
             "read_flo: reading '" << path << "' stopped after " << (12 + in.gcount()) << " of " << size << " bytes");
  return decode_flo(bytes.data(), bytes.size(), path);
}

/// The bytes of a .flo file for `f`.
inline std::string encode_flo(const data::flow_field& f) {
  const std::size_t count = std::size_t(f.height) * std::size_t(f.width);
  MSCL_CHECK(f.height >= 1 && f.width >= 1 && f.height <= k_flo_max_side && f.width <= k_flo_max_side &&
                 f.u.size() == count && f.v.size() == count,
             shape_error,
             "encode_flo: expected a non-empty flow with u and v of height*width values, got " << f.height << "x"
                                                                                               << f.width << " with "
                                                                                               << f.u.size() << "/"
                                                                                               << f.v.size() << " values");
  std::string out(12 + 8 * count, '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  detail::store_le_f32(p, k_flo_tag);
  detail::store_le_u32(p + 4, std::uint32_t(f.width));
  detail::store_le_u32(p + 8, std::uint32_t(f.height));
  for (std::size_t i = 0; i < count; ++i) {
    detail::store_le_f32(p + 12 + 8 * i, f.u[i]);
    detail::store_le_f32(p + 16 + 8 * i, f.v[i]);
  }
  return out;
}

/// Writes `f` as a .flo file atomically (a reader never sees a half-written file).
inline void write_flo(const std::string& path, const data::flow_field& f) { write_file_atomic(path, encode_flo(f)); }

}  // namespace mscl::io
