/// \file random_pair_source.hpp
/// \brief A deterministic synthetic batch source for the MSCL objective, used until (and
///        beside) the real video pipeline: each sample is one of `prototypes` random patterns;
///        its two views are that pattern plus independent noise, so positive pairs are
///        learnable while everything else is random. The flow of a sample is its pattern's first
///        two channels (so cross-modal positives are learnable), max-length normalised, rotated
///        by FRA and paired into views as the video pipeline does, then colour-coded. Patterns are smooth (per-channel offset plus
///        three low-frequency space-time waves): stationary white-noise patterns would be
///        indistinguishable after a network's global average pooling. Flow clips follow the same scheme (per
///        prototype a random flow-like pattern), and the augmented flow is its FRA rotation.
///        The batch of iteration i depends only on (seed, i): resumed runs see the same data.
#pragma once
#include <cmath>

#include "../core/rng.hpp"
#include "../ops/shape_ops.hpp"
#include "../flow/colorwheel.hpp"
#include "../ssl/flow_views.hpp"
#include "../ssl/mscl_objective.hpp"

namespace mscl::data {

template <class T = float, class B = cpu>
class random_pair_source {
  static_assert(std::is_same_v<B, cpu>, "random_pair_source builds its batches on the host: for device training wrap "
                                        "it, data::batches_on_backend<cuda>(source) (data/on_backend_source.hpp)");

 public:
  struct options {
    index_t batch = 4, frames = 8, size = 32, prototypes = 16;
    double noise = 0.5;
    std::uint64_t seed = 0;
    bool with_flow = true, with_aug = true;
    bool official_literal_flow_views = false;  ///< §11 A1 (see ssl/flow_views.hpp)
    /// Distributed sampler (dist/data_parallel.hpp): `batch` is per rank; this rank makes the
    /// global slots [rank·batch, (rank+1)·batch) of iteration i's batch of world_size·batch.
    int rank = 0, world_size = 1;
  };
  explicit random_pair_source(const options& o) : o_(o) {
    MSCL_CHECK(o.batch > 0 && o.frames > 0 && o.size > 0 && o.prototypes > 0, value_error,
               "random_pair_source: batch, frames, size and prototypes must be positive");
    MSCL_CHECK(o.world_size >= 1 && o.rank >= 0 && o.rank < o.world_size, value_error,
               "random_pair_source: rank " << o.rank << " outside [0, world_size = " << o.world_size << ")");
  }

  ssl::mscl_batch<T, B> batch(long iteration) const {
    ssl::mscl_batch<T, B> b;
    const shape_t s{o_.batch, 3, o_.frames, o_.size, o_.size};
    std::vector<index_t> ids(std::size_t(o_.batch));
    for (index_t i = 0; i < o_.batch; ++i)
      ids[std::size_t(i)] = index_t(philox_uniform(o_.seed, 0x5EED0000u + std::uint64_t(iteration), std::uint64_t(first() + i)) *
                                    double(o_.prototypes)) % o_.prototypes;
    std::uint64_t stream = 1000 + std::uint64_t(iteration) * 16;
    b.rgb_q = view(s, ids, 0, stream++);
    b.rgb_k = view(s, ids, 0, stream++);
    if (o_.with_flow) {
      // Raw 2-channel flows of the q and k clips (the prototype's first two channels' pattern,
      // so RGB and flow of a sample are related), max-length normalised, paired into views by
      // FRA exactly as the video pipeline does (ssl::make_flow_packs), then colour-coded.
      const shape_t s2{o_.batch, 2, o_.frames, o_.size, o_.size};
      const tensor<T, B> fa = ssl::normalize_flow_max_length(view(s2, ids, 0, stream++));
      const tensor<T, B> fb = ssl::normalize_flow_max_length(view(s2, ids, 0, stream++));
      if (o_.with_aug) {
        std::vector<double> angles;
        for (index_t i = 0; i < o_.batch; ++i)
          angles.push_back(ssl::fra_angle(int(philox_uniform(o_.seed, 0xF0A00000u + std::uint64_t(iteration), std::uint64_t(first() + i)) * 8) % 8));
        const auto packs = ssl::make_flow_packs(fa, fb, angles, o_.official_literal_flow_views);
        auto [xq, yq] = ssl::split_flow_pack(packs.q);
        auto [xk, yk] = ssl::split_flow_pack(packs.k);
        b.flow_q = color_code(xq);
        b.flow_aug_q = color_code(yq);
        b.flow_k = color_code(xk);
        b.flow_aug_k = color_code(yk);
      } else {
        b.flow_q = color_code(fa);
        b.flow_k = color_code(fb);
      }
    }
    return b;
  }

 private:
  index_t first() const { return index_t(o_.rank) * o_.batch; }  // first global slot of this rank
  // B×2×T×H×W flow → B×3×T×H×W Middlebury colour image in [0,1] (ALGORITHM.md §6.4).
  static tensor<T, B> color_code(const tensor<T, B>& flow) {
    const index_t nb = flow.shape()[0], plane = flow.numel() / (2 * nb);
    tensor<T, B> out = tensor<T, B>::empty({nb, 3, flow.shape()[2], flow.shape()[3], flow.shape()[4]});
    std::vector<float> u(static_cast<std::size_t>(plane)), v(u.size()), r(u.size()), g(u.size()), bl(u.size());
    for (index_t i = 0; i < nb; ++i) {
      const T* src = flow.data() + i * 2 * plane;
      for (index_t j = 0; j < plane; ++j) {
        u[std::size_t(j)] = float(src[j]);
        v[std::size_t(j)] = float(src[plane + j]);
      }
      flow::flow_to_rgb_planes(u.data(), v.data(), u.size(), r.data(), g.data(), bl.data());
      T* dst = out.data() + i * 3 * plane;
      for (index_t j = 0; j < plane; ++j) {
        dst[j] = T(r[std::size_t(j)]);
        dst[plane + j] = T(g[std::size_t(j)]);
        dst[2 * plane + j] = T(bl[std::size_t(j)]);
      }
    }
    return out;
  }
  // prototype pattern `id` of modality `kind` plus noise drawn from `stream`.
  tensor<T, B> view(const shape_t& s, const std::vector<index_t>& ids, int kind, std::uint64_t stream) const {
    tensor<T, B> out = tensor<T, B>::empty(s);
    const index_t per = numel_of(s) / s[0];
    T* p = out.data();
    for (index_t i = 0; i < s[0]; ++i) {
      const std::uint64_t proto_stream = 0xC0FFEE00u + std::uint64_t(ids[std::size_t(i)]) * 8 + std::uint64_t(kind);
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
              p[i * per + j] = T(v + o_.noise * philox_normal(o_.seed, stream, std::uint64_t((first() + i) * per + j)));
            }
      }
    }
    return out;
  }
  options o_;
};

}  // namespace mscl::data
