/// \file random_pair_source.hpp
/// \brief A deterministic synthetic batch source for the MSCL objective, used until (and
///        beside) the real video pipeline: each sample is one of `prototypes` random patterns;
///        its two views are that pattern plus independent noise, so positive pairs are
///        learnable while everything else is random. The flow views share the RGB views' pattern
///        (cross-modal positives are learnable); the augmented flow uses another pattern. Patterns are smooth (per-channel offset plus
///        three low-frequency space-time waves): stationary white-noise patterns would be
///        indistinguishable after a network's global average pooling. Flow clips follow the same scheme (per
///        prototype a random flow-like pattern), and the augmented flow is a channel-rotated copy.
///        The batch of iteration i depends only on (seed, i): resumed runs see the same data.
#pragma once
#include <cmath>

#include "../core/rng.hpp"
#include "../ops/shape_ops.hpp"
#include "../ssl/mscl_objective.hpp"

namespace mscl::data {

template <class T = float, class B = cpu>
class random_pair_source {
 public:
  struct options {
    index_t batch = 4, frames = 8, size = 32, prototypes = 16;
    double noise = 0.5;
    std::uint64_t seed = 0;
    bool with_flow = true, with_aug = true;
  };
  explicit random_pair_source(const options& o) : o_(o) {
    MSCL_CHECK(o.batch > 0 && o.frames > 0 && o.size > 0 && o.prototypes > 0, value_error,
               "random_pair_source: batch, frames, size and prototypes must be positive");
  }

  ssl::mscl_batch<T, B> batch(long iteration) const {
    ssl::mscl_batch<T, B> b;
    const shape_t s{o_.batch, 3, o_.frames, o_.size, o_.size};
    std::vector<index_t> ids(std::size_t(o_.batch));
    for (index_t i = 0; i < o_.batch; ++i)
      ids[std::size_t(i)] = index_t(philox_uniform(o_.seed, 0x5EED0000u + std::uint64_t(iteration), std::uint64_t(i)) *
                                    double(o_.prototypes)) % o_.prototypes;
    std::uint64_t stream = 1000 + std::uint64_t(iteration) * 16;
    b.rgb_q = view(s, ids, 0, stream++);
    b.rgb_k = view(s, ids, 0, stream++);
    if (o_.with_flow) {
      b.flow_q = view(s, ids, 1, stream++);
      b.flow_k = view(s, ids, 1, stream++);
      if (o_.with_aug) {
        b.flow_aug_q = view(s, ids, 2, stream++);
        b.flow_aug_k = view(s, ids, 2, stream++);
      }
    }
    return b;
  }

 private:
  // prototype pattern `id` of modality `kind` plus noise drawn from `stream`.
  tensor<T, B> view(const shape_t& s, const std::vector<index_t>& ids, int kind, std::uint64_t stream) const {
    tensor<T, B> out = tensor<T, B>::empty(s);
    const index_t per = numel_of(s) / s[0];
    T* p = out.data();
    for (index_t i = 0; i < s[0]; ++i) {
      // RGB (kind 0) and flow (kind 1) views of a sample share its pattern, so the cross-modal
      // terms have something to align; the augmented flow (kind 2) is an unrelated pattern of the
      // same prototype, standing in for motion-shuffled flow.
      const std::uint64_t proto_stream =
          0xC0FFEE00u + std::uint64_t(ids[std::size_t(i)]) * 8 + std::uint64_t(kind == 2 ? 2 : 0);
      const index_t C = s[1], Tt = s[2], H = s[3], W = s[4];
      for (index_t c = 0; c < C; ++c) {
        // per channel: offset a and three waves (amplitude, integer frequencies in t/y/x, phase)
        double a = philox_normal(o_.seed, proto_stream, std::uint64_t(c * 32));
        double amp[3], ft[3], fy[3], fx[3], ph[3];
        for (int k = 0; k < 3; ++k) {
          const std::uint64_t base = std::uint64_t(c * 32 + 1 + k * 5);
          amp[k] = philox_normal(o_.seed, proto_stream, base);
          ft[k] = std::floor(philox_uniform(o_.seed, proto_stream, base + 1) * 2.0);
          fy[k] = std::floor(philox_uniform(o_.seed, proto_stream, base + 2) * 3.0);
          fx[k] = std::floor(philox_uniform(o_.seed, proto_stream, base + 3) * 3.0);
          ph[k] = 6.283185307179586 * philox_uniform(o_.seed, proto_stream, base + 4);
        }
        for (index_t t = 0; t < Tt; ++t)
          for (index_t y = 0; y < H; ++y)
            for (index_t x = 0; x < W; ++x) {
              double v = a;
              for (int k = 0; k < 3; ++k)
                v += amp[k] * std::cos(6.283185307179586 * (ft[k] * double(t) / double(Tt) + fy[k] * double(y) / double(H) +
                                                            fx[k] * double(x) / double(W)) + ph[k]);
              const index_t j = ((c * Tt + t) * H + y) * W + x;
              p[i * per + j] = T(v + o_.noise * philox_normal(o_.seed, stream, std::uint64_t(i * per + j)));
            }
      }
    }
    return out;
  }
  options o_;
};

}  // namespace mscl::data
