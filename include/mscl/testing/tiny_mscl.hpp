/// \file tiny_mscl.hpp
/// \brief The smallest MSCL configuration with every term on (flow MoCo, cross-modal, FRA, LMCL,
///        batch keys): width-2 encoders, a 16-channel neck, 8-d embeddings, K = 16. Small enough
///        for finite-difference gradient checks, CPU-vs-GPU comparisons and multi-process tests,
///        while still running every code path of ssl::mscl_objective. Shared by those tests so
///        that they exercise one configuration.
#pragma once
#include <cstdint>

#include "../ssl/mscl_objective.hpp"

namespace mscl::testing {

/// `momentum_samples`: the cosine key-momentum horizon (samples); small values make the key
/// encoders move visibly within a few test steps.
inline ssl::mscl_options tiny_mscl_options(std::int64_t momentum_samples = 1000) {
  ssl::mscl_options o;
  o.rgb_width = 2;
  o.flow_width = 2;
  o.neck_channels = 16;
  o.embedding_dim = 8;
  o.queue_size = 16;
  o.temperature = 0.2;
  o.momentum_samples = momentum_samples;
  o.seed = 11;
  return o;
}

}  // namespace mscl::testing
