/// \file rng.hpp
/// \brief Counter-based random numbers (Philox-4x32-10, Salmon et al. SC'11).
///
/// Number i of stream s under seed k is a pure function of (k, s, i), so any thread may compute
/// any element: results do not depend on the thread count or on the order of work. A
/// `generator` hands out consecutive counter ranges; `fill_*` functions consume one counter
/// block per four values.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>

#include "shape.hpp"

namespace mscl {

namespace detail {
inline std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> ctr,
                                                  std::array<std::uint32_t, 2> key) {
  constexpr std::uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = std::uint64_t(M0) * ctr[0];
    const std::uint64_t p1 = std::uint64_t(M1) * ctr[2];
    ctr = {std::uint32_t(p1 >> 32) ^ ctr[1] ^ key[0], std::uint32_t(p1),
           std::uint32_t(p0 >> 32) ^ ctr[3] ^ key[1], std::uint32_t(p0)};
    key[0] += W0;
    key[1] += W1;
  }
  return ctr;
}
inline double u32_to_unit(std::uint32_t x) { return (double(x) + 0.5) * (1.0 / 4294967296.0); }
}  // namespace detail

/// Four 32-bit random words for block `block` of stream `stream` under `seed`.
inline std::array<std::uint32_t, 4> philox_block(std::uint64_t seed, std::uint64_t stream,
                                                 std::uint64_t block) {
  return detail::philox4x32_10(
      {std::uint32_t(block), std::uint32_t(block >> 32), std::uint32_t(stream), std::uint32_t(stream >> 32)},
      {std::uint32_t(seed), std::uint32_t(seed >> 32)});
}

/// Element i of a uniform(0,1) sequence (open interval).
inline double philox_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t i) {
  return detail::u32_to_unit(philox_block(seed, stream, i / 4)[i % 4]);
}

/// Element i of a standard normal sequence (Box-Muller on words 2j, 2j+1 of the block).
inline double philox_normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t i) {
  const auto w = philox_block(seed, stream, i / 2);
  const double u1 = detail::u32_to_unit(w[0]), u2 = detail::u32_to_unit(w[1]);
  const double r = std::sqrt(-2.0 * std::log(u1));
  return (i % 2 == 0) ? r * std::cos(6.283185307179586 * u2) : r * std::sin(6.283185307179586 * u2);
}

/// A seeded source of independent streams. Each call that draws numbers takes a fresh stream
/// id, so the numbers a call gets depend only on the seed and on how many calls came before.
class generator {
 public:
  explicit generator(std::uint64_t seed = 0, std::uint64_t next_stream = 0)
      : seed_(seed), next_stream_(next_stream) {}
  std::uint64_t seed() const { return seed_; }
  std::uint64_t state() const { return next_stream_; }       ///< for checkpoints
  void set_state(std::uint64_t next_stream) { next_stream_ = next_stream; }
  std::uint64_t take_stream() { return next_stream_++; }

  /// Scalar draws (each takes its own stream; cheap enough for per-sample parameters).
  double uniform() { return philox_uniform(seed_, take_stream(), 0); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  double normal() { return philox_normal(seed_, take_stream(), 0); }
  /// Uniform integer in [lo, hi] inclusive.
  index_t randint(index_t lo, index_t hi) {
    const double u = uniform();
    index_t v = lo + static_cast<index_t>(u * double(hi - lo + 1));
    return v > hi ? hi : v;
  }

  template <class T>
  void fill_uniform(T* out, index_t n, double lo, double hi) {
    const std::uint64_t s = take_stream();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (index_t i = 0; i < n; ++i) out[i] = T(lo + (hi - lo) * philox_uniform(seed_, s, std::uint64_t(i)));
  }
  template <class T>
  void fill_normal(T* out, index_t n, double mean, double stddev) {
    const std::uint64_t s = take_stream();
#pragma omp parallel for schedule(static) if (n > 65536)
    for (index_t i = 0; i < n; ++i) out[i] = T(mean + stddev * philox_normal(seed_, s, std::uint64_t(i)));
  }

 private:
  std::uint64_t seed_;
  std::uint64_t next_stream_;
};

}  // namespace mscl
