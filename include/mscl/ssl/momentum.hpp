/// \file momentum.hpp
/// \brief Momentum-encoder policies (ALGORITHM.md §1.3): the cosine schedule "cosm"
///        m(p) = 1 − (1 − m_base)(cos πp + 1)/2 with p = min(n_seen/max_iters, 1), the fixed
///        MoCo momentum 0.999, and the EMA update θ_k ← m·θ_k + (1 − m)·θ_q of a key module.
///
/// Schedules are small policy types with one call, `double operator()(std::int64_t n_seen)`,
/// counted in *samples* seen (the official clock advances by the global batch N_g after each
/// forward that follows an enqueue). The caller owns the clock, so it goes into checkpoints
/// with the rest of the trainer state and the §11 A3 choice (one or two clock ticks per step
/// for the flow encoder) stays with the objective.
///
/// What the EMA touches: parameters only. Buffers (BatchNorm running mean/var and
/// num_batches_tracked) of the key encoder are left to their own running statistics, which
/// the key encoder accumulates from the key batches it normalises in train mode. This is what
/// MoCo (and the MSCL fork) do — `_momentum_update_key_encoder` iterates `parameters()` only —
/// and it matters: the key encoder runs under shuffle-BN on *its* batches, so its running
/// statistics describe key inputs, not query inputs. `copy_module_state` (parameters and
/// buffers) is for the start of training, where the key encoder is initialised equal to the
/// query encoder (also after loading a query checkpoint).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "../core/error.hpp"
#include "../nn/module.hpp"
#include "../ops/common.hpp"

namespace mscl::ssl {

/// Constant momentum (the MoCo v1/v2 baseline: 0.999).
struct fixed_momentum {
  double value = 0.999;
  double operator()(std::int64_t /*n_seen*/) const { return value; }
};

/// Half-cosine ramp from `base` (p = 0) to 1.0 (p = 1); constant 1.0 after max_iters samples.
class cosine_momentum {
 public:
  /// Defaults: m_base = 0.994, max_iters = 219 136 videos × 400 epochs (ALGORITHM.md §1.3).
  explicit cosine_momentum(double base = 0.994, std::int64_t max_iters = std::int64_t(219136) * 400)
      : base_(base), max_iters_(max_iters) {
    MSCL_CHECK(base >= 0 && base <= 1, value_error, "ssl::cosine_momentum: base momentum must be in [0, 1], got " << base);
    MSCL_CHECK(max_iters > 0, value_error, "ssl::cosine_momentum: max_iters (samples) must be positive, got " << max_iters);
  }
  double base() const { return base_; }
  std::int64_t max_iters() const { return max_iters_; }

  /// m for a training fraction p (clamped to [0, 1]).
  double at_progress(double p) const {
    p = std::min(std::max(p, 0.0), 1.0);
    return 1.0 - (1.0 - base_) * (std::cos(3.14159265358979323846 * p) + 1.0) / 2.0;
  }
  /// m after `n_seen` samples.
  double operator()(std::int64_t n_seen) const { return at_progress(double(n_seen) / double(max_iters_)); }

 private:
  double base_;
  std::int64_t max_iters_;
};

namespace detail {
template <class T, class B>
void check_matching_entry(const std::string& who, std::size_t i, const std::string& kname, const tensor<T, B>& kv,
                          const std::string& qname, const tensor<T, B>& qv) {
  MSCL_CHECK(kname == qname, value_error,
             who << ": entry " << i << " is '" << kname << "' in the key module but '" << qname << "' in the query module");
  MSCL_CHECK(kv.shape() == qv.shape(), shape_error,
             who << ": '" << kname << "' has shape " << to_string(kv.shape()) << " in the key module but "
                 << to_string(qv.shape()) << " in the query module");
  MSCL_CHECK(kv.is_contiguous() && qv.is_contiguous(), value_error, who << ": '" << kname << "' is not contiguous");
}
}  // namespace detail

/// θ_k ← m·θ_k + (1 − m)·θ_q for every parameter, matched by position and name (both must
/// agree, shapes too). Computed as PyTorch MoCo does: `k * m + q * (1 − m)` in the parameter
/// type. No graph is recorded; the key module's buffers are not touched (see file comment).
template <class T, class B>
void ema_update(nn::module<T, B>& key, const nn::module<T, B>& query, double m) {
  MSCL_CHECK(m >= 0 && m <= 1, value_error, "ssl::ema_update: momentum must be in [0, 1], got " << m);
  auto kp = key.named_parameters();
  const auto qp = query.named_parameters();
  MSCL_CHECK(kp.size() == qp.size(), value_error,
             "ssl::ema_update: key module has " << kp.size() << " parameters, query module " << qp.size());
  const T mk = T(m), mq = T(1.0 - m);
  for (std::size_t i = 0; i < kp.size(); ++i) {
    detail::check_matching_entry("ssl::ema_update", i, kp[i].first, kp[i].second, qp[i].first, qp[i].second);
    if constexpr (std::is_same_v<B, cuda>) {  // same rounding as below (no FMA), see ssl_kernels.cuh
      backend::cuda_ops<B>::ema_update_param(kp[i].second, qp[i].second, mk, mq);
    } else {
      ops::detail::require_cpu<B>();
      T* k = kp[i].second.data();
      const T* q = qp[i].second.data();
      ops::detail::parallel_for(kp[i].second.numel(), [&](index_t j) { k[j] = k[j] * mk + q[j] * mq; });
    }
  }
}

/// Copies every parameter and buffer of `query` into `key` (matched by position and name): the
/// key encoder's initialisation. Does not change requires_grad flags.
template <class T, class B>
void copy_module_state(nn::module<T, B>& key, const nn::module<T, B>& query) {
  auto ks = key.state_dict();
  const auto qs = query.state_dict();
  MSCL_CHECK(ks.size() == qs.size(), value_error,
             "ssl::copy_module_state: key module has " << ks.size() << " state entries, query module " << qs.size());
  for (std::size_t i = 0; i < ks.size(); ++i) {
    detail::check_matching_entry("ssl::copy_module_state", i, ks[i].name, ks[i].value, qs[i].name, qs[i].value);
    ks[i].value.copy_from(qs[i].value);
  }
}

}  // namespace mscl::ssl
