/// \file lmcl.hpp
/// \brief LMCL, the frame-level RGB→flow InfoNCE of MSCL (ALGORITHM.md §3,
///        `MSCLWithAugPosHeadV2`), as one fused op with its backward pass, plus the spatial mean
///        that turns the TPN / flow-layer4 maps into per-frame features.
///
/// For sample b and RGB time step t, with r = norm_C(rgb[b,:,t]) and f_j = norm_C(flow[b,:,j]),
/// where the candidates j = 0..T−1 are the base flow and j = T..2T−1 the augmented flow:
///   s_{b,t,j} = r·f_j / τ,   ℓ_{b,t} = −log softmax_j(s_{b,t,·})[t],   L = mean over the B·T rows.
/// One direction only (RGB rows over flow columns), no cross-sample negatives, no projection
/// (identity for R18). The rows are tiny (2T = 8 columns, C = 128), so a fused loop with
/// double accumulation beats composing permute/normalize/bmm/cross_entropy and keeps no
/// intermediate graph: saved for backward are the normalised features, their norms and the
/// B·T·2T probabilities.
///
/// Gradients reach all three inputs. Normalisation follows F.normalize: x / max(‖x‖, 1e−12).
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../ops/common.hpp"
#include "../ops/reduce.hpp"
#include "../ops/shape_ops.hpp"

namespace mscl::ssl {

template <class T, class B = cpu>
struct lmcl_output {
  tensor<T, B> loss;     ///< scalar []: mean over B·T rows
  double accuracy = 0;   ///< fraction of rows whose argmax (first index on ties) is the label t
  index_t correct = 0;
};

/// B×C×T×H×W → B×C×T: the mean over H and W (with gradient), as LMCL pools its feature maps.
template <class T, class B>
tensor<T, B> spatial_mean(const tensor<T, B>& x) {
  ops::detail::check_rank(x, 5, "ssl::spatial_mean", "input (B×C×T×H×W)");
  const shape_t& s = x.shape();
  MSCL_CHECK(s[3] * s[4] > 0, shape_error, "ssl::spatial_mean: empty spatial extent in " << to_string(s));
  return ops::mean(ops::reshape(x, {s[0], s[1], s[2], s[3] * s[4]}), 3);
}

namespace detail {
// Normalises column t of each sample of a B×C×T tensor into dst rows (b, offset + t) of a
// B×rows×C buffer; norm[b*rows + offset + t] = max(‖x‖, eps).
template <class T>
void lmcl_normalize(const T* src, index_t nb, index_t C, index_t nt, T* dst, T* norm, index_t rows, index_t offset,
                    double eps) {
  for (index_t b = 0; b < nb; ++b)
    for (index_t t = 0; t < nt; ++t) {
      double s = 0;
      for (index_t c = 0; c < C; ++c) {
        const double v = src[(b * C + c) * nt + t];
        s += v * v;
      }
      const double n = std::max(std::sqrt(s), eps);
      const index_t r = b * rows + offset + t;
      norm[r] = T(n);
      for (index_t c = 0; c < C; ++c) dst[r * C + c] = T(double(src[(b * C + c) * nt + t]) / n);
    }
}
// Gradient through y = x / max(‖x‖, eps) for rows (b, offset + t), written into a B×C×T tensor.
template <class T>
void lmcl_normalize_backward(const T* dy, const T* y, const T* norm, index_t nb, index_t C, index_t nt, index_t rows,
                             index_t offset, double eps, T* dx) {
  for (index_t b = 0; b < nb; ++b)
    for (index_t t = 0; t < nt; ++t) {
      const index_t r = b * rows + offset + t;
      const double n = double(norm[r]);
      const bool clamped = n <= eps;
      double dot = 0;
      if (!clamped)
        for (index_t c = 0; c < C; ++c) dot += double(y[r * C + c]) * double(dy[r * C + c]);
      for (index_t c = 0; c < C; ++c)
        dx[(b * C + c) * nt + t] = T((double(dy[r * C + c]) - dot * double(y[r * C + c])) / n);
    }
}
}  // namespace detail

/// LMCL loss. rgb, flow_base, flow_aug: B×C×T (spatially averaged RGB level-0 features, base
/// flow layer4, augmented flow layer4); flow_aug may be undefined (then only the T base
/// candidates — the "no FRA" ablation). tau: temperature (0.07).
template <class T, class B>
lmcl_output<T, B> lmcl(const tensor<T, B>& rgb, const tensor<T, B>& flow_base, const tensor<T, B>& flow_aug,
                       double tau = 0.07) {
  using tensor_t = tensor<T, B>;
  ops::detail::check_rank(rgb, 3, "ssl::lmcl", "rgb (B×C×T)");
  ops::detail::check_rank(flow_base, 3, "ssl::lmcl", "flow_base (B×C×T)");
  const bool has_aug = flow_aug.defined();
  MSCL_CHECK(rgb.numel() > 0, shape_error, "ssl::lmcl: empty rgb features " << to_string(rgb.shape()));
  MSCL_CHECK(flow_base.shape() == rgb.shape(), shape_error,
             "ssl::lmcl: flow_base must match rgb (B×C×T = " << to_string(rgb.shape()) << "), got " << to_string(flow_base.shape()));
  if (has_aug)
    MSCL_CHECK(flow_aug.shape() == rgb.shape(), shape_error,
               "ssl::lmcl: flow_aug must match rgb (B×C×T = " << to_string(rgb.shape()) << "), got " << to_string(flow_aug.shape()));
  MSCL_CHECK(std::isfinite(tau) && tau > 0, value_error, "ssl::lmcl: temperature must be finite and > 0, got " << tau);
  if constexpr (std::is_same_v<B, cuda>) {  // backend/cuda/ssl.hpp: the same op on the device
    const auto r = backend::cuda_ops<B>::lmcl(rgb, flow_base, flow_aug, tau);
    lmcl_output<T, B> result;
    result.loss = r.loss;
    result.correct = r.correct;
    result.accuracy = double(r.correct) / double(rgb.shape()[0] * rgb.shape()[2]);
    return result;
  } else {
  ops::detail::require_cpu<B>();
  const double eps = 1e-12;
  const index_t nb = rgb.shape()[0], C = rgb.shape()[1], nt = rgb.shape()[2];
  const index_t J = has_aug ? 2 * nt : nt;
  const tensor_t rc = ops::detail::contiguous_data(rgb), bc = ops::detail::contiguous_data(flow_base);
  const tensor_t ac = has_aug ? ops::detail::contiguous_data(flow_aug) : tensor_t();

  tensor_t rh = tensor_t::empty({nb, nt, C}), rn = tensor_t::empty({nb, nt});
  tensor_t fh = tensor_t::empty({nb, J, C}), fn = tensor_t::empty({nb, J});
  detail::lmcl_normalize(rc.data(), nb, C, nt, rh.data(), rn.data(), nt, 0, eps);
  detail::lmcl_normalize(bc.data(), nb, C, nt, fh.data(), fn.data(), J, 0, eps);
  if (has_aug) detail::lmcl_normalize(ac.data(), nb, C, nt, fh.data(), fn.data(), J, nt, eps);

  tensor_t prob = tensor_t::empty({nb, nt, J});
  const double inv_tau = 1.0 / tau;
  double total = 0;
  index_t correct = 0;
  std::vector<double> s(static_cast<std::size_t>(J));
  for (index_t b = 0; b < nb; ++b)
    for (index_t t = 0; t < nt; ++t) {
      const T* r = rh.data() + (b * nt + t) * C;
      double mx = -std::numeric_limits<double>::infinity();
      index_t arg = 0;
      for (index_t j = 0; j < J; ++j) {
        const T* f = fh.data() + (b * J + j) * C;
        double dot = 0;
        for (index_t c = 0; c < C; ++c) dot += double(r[c]) * double(f[c]);
        s[std::size_t(j)] = dot * inv_tau;
        if (s[std::size_t(j)] > mx) {
          mx = s[std::size_t(j)];
          arg = j;
        }
      }
      double z = 0;
      for (index_t j = 0; j < J; ++j) z += std::exp(s[std::size_t(j)] - mx);
      const double lse = mx + std::log(z);
      T* p = prob.data() + (b * nt + t) * J;
      for (index_t j = 0; j < J; ++j) p[j] = T(std::exp(s[std::size_t(j)] - lse));
      total += lse - s[std::size_t(t)];
      correct += arg == t ? 1 : 0;
    }
  lmcl_output<T, B> result;
  result.correct = correct;
  result.accuracy = double(correct) / double(nb * nt);
  tensor_t out = tensor_t::scalar(T(total / double(nb * nt)));
  if (!autograd::any_requires_grad<T, B>({rgb, flow_base, flow_aug})) {
    result.loss = out;
    return result;
  }
  const bool gr = rgb.requires_grad(), gb = flow_base.requires_grad(), ga = has_aug && flow_aug.requires_grad();
  auto backward = [rh, rn, fh, fn, prob, nb, C, nt, J, inv_tau, eps, gr, gb, ga](const tensor_t& g) {
    const double scale = double(g.item()) / double(nb * nt) * inv_tau;
    // d loss / d r̂ and d loss / d f̂ (the 1/τ folded into scale).
    tensor_t drh = tensor_t::zeros({nb, nt, C}), dfh = tensor_t::zeros({nb, J, C});
    for (index_t b = 0; b < nb; ++b)
      for (index_t t = 0; t < nt; ++t) {
        const T* p = prob.data() + (b * nt + t) * J;
        const T* r = rh.data() + (b * nt + t) * C;
        T* dr = drh.data() + (b * nt + t) * C;
        for (index_t j = 0; j < J; ++j) {
          const double ds = (double(p[j]) - (j == t ? 1.0 : 0.0)) * scale;
          const T* f = fh.data() + (b * J + j) * C;
          T* df = dfh.data() + (b * J + j) * C;
          for (index_t c = 0; c < C; ++c) {
            dr[c] += T(ds * double(f[c]));
            df[c] += T(ds * double(r[c]));
          }
        }
      }
    tensor_t dr, db, da;
    if (gr) {
      dr = tensor_t::empty({nb, C, nt});
      detail::lmcl_normalize_backward(drh.data(), rh.data(), rn.data(), nb, C, nt, nt, 0, eps, dr.data());
    }
    if (gb) {
      db = tensor_t::empty({nb, C, nt});
      detail::lmcl_normalize_backward(dfh.data(), fh.data(), fn.data(), nb, C, nt, J, 0, eps, db.data());
    }
    if (ga) {
      da = tensor_t::empty({nb, C, nt});
      detail::lmcl_normalize_backward(dfh.data(), fh.data(), fn.data(), nb, C, nt, J, nt, eps, da.data());
    }
    return std::vector<tensor_t>{dr, db, da};
  };
  result.loss = autograd::record(out, "lmcl", {rgb, flow_base, flow_aug}, backward);
  return result;
  }
}

}  // namespace mscl::ssl
