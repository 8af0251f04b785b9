/// \file fra.hpp
/// \brief FRA, Flow Rotation Augmentation (ALGORITHM.md §4, `NormFlowWithStidedAug`): one angle
///        β = π(0.2 + 0.2c), c ~ U{0..7} per sample, every flow vector rotated by β,
///        (u, v) → (u cosβ − v sinβ, u sinβ + v cosβ); and the per-map max-length normalisation
///        (u, v) / (max‖(u, v)‖ + 1e−5) that precedes colour coding.
///
/// Both on `data::flow_field` (the data pipeline's per-map type) and on flow tensors
/// B×2×…×H×W (channel 0 = u, 1 = v; usually B×2×T×H×W). The tensor rotation records a gradient
/// (a rotation is linear; the backward pass rotates by −β) so that it may also sit after
/// learnable parts; the normalisation is data preparation and records none.
///
/// The angle grid never contains 0 (no rotation would give positives, not negatives) nor
/// 1.8π: chunks c = 0..7 of [0.2π, 1.8π) with step 0.2π, i.e. 36° … 288°. The chunk index c is
/// returned too (the official `ap_labels`).
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "../core/rng.hpp"
#include "../data/frame.hpp"
#include "../ops/common.hpp"

namespace mscl::ssl {

/// The angle grid: β(c) = π·(ratio_lo + c·(ratio_hi − ratio_lo)/num_chunks), c ∈ {0 … num_chunks−1}.
struct fra_options {
  double ratio_lo = 0.2;
  double ratio_hi = 1.8;
  int num_chunks = 8;
};

/// Per-sample draws: chunk index c (the official ap_labels) and the angle β in radians.
struct fra_draw {
  std::vector<int> chunks;
  std::vector<double> angles;
};

inline void check_fra_options(const fra_options& o) {
  MSCL_CHECK(o.num_chunks >= 1 && std::isfinite(o.ratio_lo) && std::isfinite(o.ratio_hi) && o.ratio_hi > o.ratio_lo,
             value_error,
             "ssl::fra: need num_chunks >= 1 and ratio_lo < ratio_hi, got num_chunks = "
                 << o.num_chunks << ", ratios (" << o.ratio_lo << ", " << o.ratio_hi << ")");
}

/// β for chunk c.
inline double fra_angle(int chunk, const fra_options& o = {}) {
  check_fra_options(o);
  MSCL_CHECK(chunk >= 0 && chunk < o.num_chunks, value_error,
             "ssl::fra_angle: chunk " << chunk << " outside [0, " << o.num_chunks << ")");
  const double step = (o.ratio_hi - o.ratio_lo) / double(o.num_chunks);
  return 3.14159265358979323846 * (o.ratio_lo + step * double(chunk));
}

/// One uniform chunk (and angle) per sample, drawn from `gen`.
inline fra_draw draw_fra_angles(index_t samples, generator& gen, const fra_options& o = {}) {
  check_fra_options(o);
  MSCL_CHECK(samples >= 0, value_error, "ssl::draw_fra_angles: negative sample count " << samples);
  fra_draw d;
  for (index_t i = 0; i < samples; ++i) {
    const int c = int(gen.randint(0, o.num_chunks - 1));
    d.chunks.push_back(c);
    d.angles.push_back(fra_angle(c, o));
  }
  return d;
}

// ------------------------------------------------------------------ flow_field (one map)

/// Rotates every flow vector of `f` by `angle` radians, in place.
inline void rotate_flow_(data::flow_field& f, double angle) {
  MSCL_CHECK(f.u.size() == f.v.size() && f.u.size() == std::size_t(f.height) * std::size_t(f.width), shape_error,
             "ssl::rotate_flow_: flow_field " << f.height << "x" << f.width << " holds " << f.u.size() << " u and "
                                              << f.v.size() << " v values");
  const double c = std::cos(angle), s = std::sin(angle);
  for (std::size_t i = 0; i < f.u.size(); ++i) {
    const double u = f.u[i], v = f.v[i];
    f.u[i] = float(u * c - v * s);
    f.v[i] = float(u * s + v * c);
  }
}
inline data::flow_field rotate_flow(data::flow_field f, double angle) {
  rotate_flow_(f, angle);
  return f;
}

/// Largest vector length max‖(u, v)‖ of a map.
inline double flow_max_length(const data::flow_field& f) {
  double mx = 0;
  for (std::size_t i = 0; i < f.u.size(); ++i) mx = std::max(mx, std::sqrt(double(f.u[i]) * double(f.u[i]) + double(f.v[i]) * double(f.v[i])));
  return mx;
}

/// (u, v) / (max‖(u, v)‖ + eps), in place; returns the max length used.
inline double normalize_flow_max_length_(data::flow_field& f, double eps = 1e-5) {
  MSCL_CHECK(f.u.size() == f.v.size(), shape_error,
             "ssl::normalize_flow_max_length_: " << f.u.size() << " u and " << f.v.size() << " v values");
  const double mx = flow_max_length(f);
  const double inv = 1.0 / (mx + eps);
  for (std::size_t i = 0; i < f.u.size(); ++i) {
    f.u[i] = float(double(f.u[i]) * inv);
    f.v[i] = float(double(f.v[i]) * inv);
  }
  return mx;
}

// ------------------------------------------------------------------ tensors B×2×…×H×W

namespace detail {
template <class T, class Bk>
void check_flow_tensor(const tensor<T, Bk>& x, const char* who) {
  MSCL_CHECK(x.defined() && x.dim() >= 3 && x.shape()[1] == 2, shape_error,
             who << ": flow must be B×2×…×H×W (channel 1 holds u, v), got "
                 << (x.defined() ? to_string(x.shape()) : "undefined"));
}
// out[b, 0/1, …] = R(±angle_b) applied to in[b, 0/1, …]; `inner` elements per channel.
template <class Bk, class T>
void rotate_planes(const T* in, T* out, index_t nb, index_t inner, const std::vector<double>& angles, double sign) {
  if constexpr (std::is_same_v<Bk, cuda>) {  // device pointers: backend/cuda/ssl.hpp, same arithmetic
    backend::cuda_ops<Bk>::rotate_planes(in, out, nb, inner, angles, sign);
    return;
  }
  else
  ops::detail::parallel_for(nb, [&](index_t b) {
    const double c = std::cos(angles[std::size_t(b)]), s = sign * std::sin(angles[std::size_t(b)]);
    const T* u = in + b * 2 * inner;
    const T* v = u + inner;
    T* ou = out + b * 2 * inner;
    T* ov = ou + inner;
    for (index_t i = 0; i < inner; ++i) {
      const double uu = u[i], vv = v[i];
      ou[i] = T(uu * c - vv * s);
      ov[i] = T(uu * s + vv * c);
    }
  }, 1);
}
}  // namespace detail

/// Rotates sample b of a B×2×…×H×W flow tensor by angles[b] (radians). Records a gradient.
template <class T, class Bk>
tensor<T, Bk> rotate_flow(const tensor<T, Bk>& flow, const std::vector<double>& angles) {
  detail::check_flow_tensor(flow, "ssl::rotate_flow");
  const index_t nb = flow.shape()[0];
  MSCL_CHECK(index_t(angles.size()) == nb, shape_error,
             "ssl::rotate_flow: " << angles.size() << " angles for a batch of " << nb << " (flow " << to_string(flow.shape()) << ")");
  const index_t inner = nb > 0 ? flow.numel() / (2 * nb) : 0;
  const tensor<T, Bk> xc = ops::detail::contiguous_data(flow);
  tensor<T, Bk> out = tensor<T, Bk>::empty(flow.shape());
  detail::rotate_planes<Bk>(xc.data(), out.data(), nb, inner, angles, 1.0);
  return autograd::record(out, "rotate_flow", {flow}, [angles, nb, inner](const tensor<T, Bk>& g) {
    const tensor<T, Bk> gc = ops::detail::contiguous_data(g);
    tensor<T, Bk> gx = tensor<T, Bk>::empty(g.shape());
    detail::rotate_planes<Bk>(gc.data(), gx.data(), nb, inner, angles, -1.0);  // Rᵀ = R(−β)
    return std::vector<tensor<T, Bk>>{gx};
  });
}

/// Per-map max-length normalisation of a B×2×…×H×W flow tensor: every (b, …) map (the last two
/// axes) is divided by its own max‖(u, v)‖ + eps. Data preparation: records no gradient, and
/// refuses an input that requires one while recording.
template <class T, class Bk>
tensor<T, Bk> normalize_flow_max_length(const tensor<T, Bk>& flow, double eps = 1e-5) {
  detail::check_flow_tensor(flow, "ssl::normalize_flow_max_length");
  MSCL_CHECK(flow.dim() >= 4, shape_error,
             "ssl::normalize_flow_max_length: flow must be B×2×…×H×W with H, W as the last two axes, got "
                 << to_string(flow.shape()));
  MSCL_CHECK(!(autograd::is_grad_enabled() && flow.requires_grad()), value_error,
             "ssl::normalize_flow_max_length: a data-preparation op without gradient; call it on data (or under no_grad)");
  const shape_t& s = flow.shape();
  const index_t nb = s[0], hw = s[s.size() - 2] * s[s.size() - 1];
  index_t maps = 1;  // maps per channel and sample: the axes between the channel and H, W
  for (std::size_t a = 2; a + 2 < s.size(); ++a) maps *= s[a];
  const tensor<T, Bk> xc = ops::detail::contiguous_data(flow);
  tensor<T, Bk> out = tensor<T, Bk>::empty(s);
  const index_t inner = maps * hw;
  if constexpr (std::is_same_v<Bk, cuda>) {
    backend::cuda_ops<Bk>::flow_max_normalize(xc.data(), out.data(), nb, maps, hw, inner, eps);
    return out;
  } else {
  ops::detail::require_cpu<Bk>();
  ops::detail::parallel_for(nb * maps, [&](index_t k) {
    const index_t b = k / maps, m = k % maps;
    const T* u = xc.data() + b * 2 * inner + m * hw;
    const T* v = u + inner;
    T* ou = out.data() + b * 2 * inner + m * hw;
    T* ov = ou + inner;
    double mx = 0;
    for (index_t i = 0; i < hw; ++i) mx = std::max(mx, std::sqrt(double(u[i]) * double(u[i]) + double(v[i]) * double(v[i])));
    const double inv = 1.0 / (mx + eps);
    for (index_t i = 0; i < hw; ++i) {
      ou[i] = T(double(u[i]) * inv);
      ov[i] = T(double(v[i]) * inv);
    }
  }, 1);
  return out;
  }
}

}  // namespace mscl::ssl
