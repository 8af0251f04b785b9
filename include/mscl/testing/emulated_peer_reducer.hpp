/// \file emulated_peer_reducer.hpp
/// \brief A sync-BN reducer that plays the other process of a 2-process job inside one process,
///        so that sync-BN can be tested without MPI or a second GPU: it holds the peer's half of
///        the batch and adds, at each all-reduce, what that peer would contribute — computed
///        naively in double from its data, independently of the backends' kernels.
///
/// Forward call (2C + 1 values): adds the peer's [n·m, M2 + n·m², n] per channel and remembers
/// the global mean and invstd that result. Backward call (2C values): adds the peer's Σg and
/// Σg·(x − mean) with the global mean, g masked by the peer's output sign when the ReLU is fused
/// (the peer's output computed with the global statistics, weight and bias). One BN call
/// (forward, then backward) per reducer.
#pragma once
#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "../ops/norm.hpp"

namespace mscl::testing {

class emulated_peer_reducer : public ops::batch_norm_reducer {
 public:
  /// peer_x, peer_dy: the peer's input and incoming gradient, laid out [n, c, s]; weight and
  /// bias of length c (empty: 1 and 0).
  emulated_peer_reducer(std::vector<double> peer_x, std::vector<double> peer_dy, index_t n, index_t c, index_t s,
                        std::vector<double> weight, std::vector<double> bias, double eps, bool relu)
      : x_(std::move(peer_x)), dy_(std::move(peer_dy)), n_(n), c_(c), s_(s), w_(std::move(weight)),
        b_(std::move(bias)), eps_(eps), relu_(relu) {
    MSCL_CHECK(index_t(x_.size()) == n * c * s && dy_.size() == x_.size(), shape_error,
               "emulated_peer_reducer: peer data of " << x_.size() << " / " << dy_.size() << " values for [" << n
                                                      << ", " << c << ", " << s << "]");
  }

  void all_reduce_sum(double* v, std::size_t len) override {
    const std::size_t c = std::size_t(c_);
    if (len == 2 * c + 1) {
      ++forward_calls_;
      const double local_n = double(n_ * s_);
      for (index_t ch = 0; ch < c_; ++ch) {
        double sum = 0;
        for_channel(ch, [&](std::size_t i) { sum += x_[i]; });
        const double m = sum / local_n;
        double m2 = 0;
        for_channel(ch, [&](std::size_t i) { m2 += (x_[i] - m) * (x_[i] - m); });
        v[ch] += local_n * m;
        v[c + std::size_t(ch)] += m2 + local_n * m * m;
      }
      v[2 * c] += local_n;
      mean_.assign(c, 0);
      invstd_.assign(c, 0);
      for (std::size_t ch = 0; ch < c; ++ch) {
        const double n = v[2 * c], m = v[ch] / n;
        mean_[ch] = m;
        invstd_[ch] = 1.0 / std::sqrt(std::max(v[c + ch] / n - m * m, 0.0) + eps_);
      }
    } else if (len == 2 * c) {
      MSCL_CHECK(!mean_.empty(), value_error, "emulated_peer_reducer: backward all-reduce before the forward one");
      ++backward_calls_;
      for (index_t ch = 0; ch < c_; ++ch) {
        const std::size_t k = std::size_t(ch);
        const double w = w_.empty() ? 1.0 : w_[k], b = b_.empty() ? 0.0 : b_[k];
        double sg = 0, sgx = 0;
        for_channel(ch, [&](std::size_t i) {
          const double y = (x_[i] - mean_[k]) * invstd_[k] * w + b;
          const double g = relu_ && !(y > 0) ? 0.0 : dy_[i];
          sg += g;
          sgx += g * (x_[i] - mean_[k]);
        });
        v[k] += sg;
        v[c + k] += sgx;
      }
    } else {
      MSCL_CHECK(false, value_error,
                 "emulated_peer_reducer: unexpected all-reduce of " << len << " values for " << c_ << " channels");
    }
  }

  int forward_calls() const { return forward_calls_; }
  int backward_calls() const { return backward_calls_; }

 private:
  template <class F>
  void for_channel(index_t ch, F&& f) const {
    for (index_t i = 0; i < n_; ++i)
      for (index_t k = 0; k < s_; ++k) f(std::size_t((i * c_ + ch) * s_ + k));
  }

  std::vector<double> x_, dy_;
  index_t n_, c_, s_;
  std::vector<double> w_, b_;
  double eps_;
  bool relu_;
  std::vector<double> mean_, invstd_;
  int forward_calls_ = 0, backward_calls_ = 0;
};

}  // namespace mscl::testing
