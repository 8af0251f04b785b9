/// \file quantize.hpp
/// \brief 8-bit flow quantisation in the MMAction2/denseflow JPEG layout (ECOSYSTEM.md §1.3) and
///        MSCL's per-map max-length normalisation (ALGORITHM.md §6.3).
///
/// Public flow data sets store each component as a grey JPEG, q = clamp(255 (v + B) / (2B), 0, 255)
/// with bound B = 20 px. Producers differ only in rounding: denseflow (cvRound) and CoCLR/MCL
/// (np.round) round to nearest, ties to even; mmaction's Python extractor truncates (astype(uint8)
/// after clipping). Reading such data back needs the same B; the rounding mode only matters when
/// re-creating a data set bit for bit. The arithmetic follows mmaction's expression order in float
/// ((v + B) / (2B) * 255), so both modes reproduce the Python extractors on the same float input.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "../core/error.hpp"

namespace mscl::flow {

/// How the scaled value becomes an integer.
enum class flow_rounding {
  nearest,   ///< round half to even (cvRound, np.round): denseflow, CoCLR/MemDPC, MCL
  truncate,  ///< toward zero after clipping (astype(uint8)): mmaction's Python extractor
};

/// Quantisation step in pixels for bound B: 2B / 255 (0.157 px for B = 20).
inline float flow_quant_step(float bound = 20.f) { return 2.f * bound / 255.f; }

/// One value: q = clamp(255 (v + B) / (2B), 0, 255), rounded as asked. NaN maps to the code of 0 px.
inline std::uint8_t quantize_flow_value(float v, float bound = 20.f, flow_rounding mode = flow_rounding::nearest) {
  if (std::isnan(v)) v = 0.f;
  float s = (v + bound) / (2.f * bound) * 255.f;
  s = std::clamp(s, 0.f, 255.f);
  const float r = mode == flow_rounding::nearest ? std::nearbyint(s) : std::trunc(s);
  return static_cast<std::uint8_t>(r);
}

/// Inverse map v = q 2B / 255 - B (the value at the centre of the code's cell for round-to-nearest).
inline float dequantize_flow_value(std::uint8_t q, float bound = 20.f) {
  return static_cast<float>(q) * (2.f * bound) / 255.f - bound;
}

/// Quantises n values; throws value_error unless bound > 0.
inline void quantize_flow(const float* in, std::uint8_t* out, std::size_t n, float bound = 20.f,
                          flow_rounding mode = flow_rounding::nearest) {
  MSCL_CHECK(bound > 0.f && std::isfinite(bound), value_error,
             "flow::quantize_flow: bound must be finite and > 0, got " << bound);
  MSCL_CHECK(n == 0 || (in != nullptr && out != nullptr), shape_error,
             "flow::quantize_flow: null buffer for " << n << " values");
  for (std::size_t i = 0; i < n; ++i) out[i] = quantize_flow_value(in[i], bound, mode);
}

/// Dequantises n codes; throws value_error unless bound > 0.
inline void dequantize_flow(const std::uint8_t* in, float* out, std::size_t n, float bound = 20.f) {
  MSCL_CHECK(bound > 0.f && std::isfinite(bound), value_error,
             "flow::dequantize_flow: bound must be finite and > 0, got " << bound);
  MSCL_CHECK(n == 0 || (in != nullptr && out != nullptr), shape_error,
             "flow::dequantize_flow: null buffer for " << n << " values");
  for (std::size_t i = 0; i < n; ++i) out[i] = dequantize_flow_value(in[i], bound);
}

/// MSCL normalisation of one flow map (ALGORITHM.md §6.3): divides u and v in place by
/// (max over the map of |(u, v)| + eps), so every length is below 1. Call it on the whole,
/// uncropped map. Returns the divisor used.
inline float normalize_flow_max_length(float* u, float* v, std::size_t n, float eps = 1e-5f) {
  MSCL_CHECK(n == 0 || (u != nullptr && v != nullptr), shape_error,
             "flow::normalize_flow_max_length: null buffer for " << n << " values");
  float m2 = 0.f;
  for (std::size_t i = 0; i < n; ++i) m2 = std::max(m2, u[i] * u[i] + v[i] * v[i]);
  const float div = std::sqrt(m2) + eps;
  for (std::size_t i = 0; i < n; ++i) { u[i] /= div; v[i] /= div; }
  return div;
}

}  // namespace mscl::flow
