/// \file flow_views.hpp
/// \brief Which flow maps belong to which view (ALGORITHM.md §1.6, §11 A1). FRA rotates the flows
///        of a sample's two clips a and b by one angle β; the q view's flow pack is [X_q | Y_q]
///        and the k view's is [X_k | Y_k] (each 2×2T×H×W), cropped and flipped with that view's
///        parameters, then split back into the four tensors the objective consumes.
///
///   intended (default): X_q = F(a), Y_q = R_β F(a);  X_k = F(b), Y_k = R_β F(b)
///                       → base branch on unrotated flow, aug branch and LMCL's extra candidates
///                         on the rotated flow of the same clip: FRA's motion-shuffled negatives.
///   official_literal:   X_q = F(a), Y_q = F(b);      X_k = R_β F(a), Y_k = R_β F(b)
///                       → what the released two-clip config computes (the crop step gives the
///                         first half of [F(a), F(b), R F(a), R F(b)] to q, the second to k).
#pragma once
#include "../ops/shape_ops.hpp"
#include "fra.hpp"

namespace mscl::ssl {

template <class T, class B = cpu>
struct flow_packs {
  tensor<T, B> q, k;  ///< B×2×2T×H×W: [X | Y] along time
};

/// flow_a, flow_b: B×2×T×H×W raw (max-length normalised) flow of the q and k clips; angles: one
/// FRA angle per sample (ssl::draw_fra_angles).
template <class T, class B>
flow_packs<T, B> make_flow_packs(const tensor<T, B>& flow_a, const tensor<T, B>& flow_b, const std::vector<double>& angles,
                                 bool official_literal = false) {
  ops::detail::check_rank(flow_a, 5, "ssl::make_flow_packs", "flow_a (B×2×T×H×W)");
  MSCL_CHECK(flow_a.shape() == flow_b.shape() && flow_a.shape()[1] == 2, shape_error,
             "ssl::make_flow_packs: flow_a and flow_b must both be B×2×T×H×W; got " << to_string(flow_a.shape()) << " and "
                                                                                 << to_string(flow_b.shape()));
  const tensor<T, B> ra = rotate_flow(flow_a, angles), rb = rotate_flow(flow_b, angles);
  flow_packs<T, B> p;
  if (official_literal) {
    p.q = ops::cat<T, B>({flow_a, flow_b}, 2);
    p.k = ops::cat<T, B>({ra, rb}, 2);
  } else {
    p.q = ops::cat<T, B>({flow_a, ra}, 2);
    p.k = ops::cat<T, B>({flow_b, rb}, 2);
  }
  return p;
}

/// Splits a (colour-coded or raw) pack B×C×2T×H×W into its base half X and augmented half Y.
template <class T, class B>
std::pair<tensor<T, B>, tensor<T, B>> split_flow_pack(const tensor<T, B>& pack) {
  ops::detail::check_rank(pack, 5, "ssl::split_flow_pack", "pack (B×C×2T×H×W)");
  const index_t t2 = pack.shape()[2];
  MSCL_CHECK(t2 % 2 == 0, shape_error, "ssl::split_flow_pack: the time axis must be even (2T), got " << to_string(pack.shape()));
  return {ops::contiguous(ops::slice(pack, 2, 0, t2 / 2)), ops::contiguous(ops::slice(pack, 2, t2 / 2, t2))};
}

}  // namespace mscl::ssl
