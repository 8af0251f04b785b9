/// \file compose.hpp
/// \brief Combinators of augmentation policies (STYLE.md §2.2): `compose<P...>` (in order),
///        `random_apply<P>` (with probability p per clip) and `two_views<Q, K>` (the q and k views
///        of one sample, drawn independently), plus the `view` result type.
///
/// Requirements on the parts are those of concepts.hpp; each combinator is itself a policy, so
/// they nest. Applying never draws random numbers: everything random is in the params.
#pragma once
#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

#include "concepts.hpp"

namespace mscl::augment {

namespace detail {
template <class P>
struct check_policy {
  static_assert(has_params<P>::value, "mscl::augment: a policy needs a nested `params` type");
  static_assert(has_sample<P>::value,
                "mscl::augment: a policy needs `params sample(generator&, const clip_geometry&) const`");
  static_assert(has_apply_v<P> || has_apply_flow_v<P>,
                "mscl::augment: a policy needs `void apply(const params&, clip_tensor&) const` (RGB) or "
                "`void apply_flow(const params&, clip_tensor&) const` (flow)");
  static constexpr bool value = true;
};

// Whether the first part that acts on a modality writes a fresh tensor (true when none acts).
template <bool Flow, class... P>
struct first_acting_out_of_place : std::true_type {};
template <bool Flow, class P, class... R>
struct first_acting_out_of_place<Flow, P, R...>
    : std::conditional_t<(Flow ? has_apply_flow_v<P> : has_apply_v<P>), std::bool_constant<is_out_of_place_v<P>>,
                         first_acting_out_of_place<Flow, R...>> {};
}  // namespace detail

// ------------------------------------------------------------------ compose

/// Runs P... in order. `sample` threads the geometry through `output_geometry`, so a policy after
/// a resize draws for the resized clip. `apply` runs the parts that define `apply` (RGB) and
/// `apply_flow` the parts that define `apply_flow`; parts without the member are skipped.
/// \tparam P policies (is_augment_policy_v), each default-constructible or passed in.
template <class... P>
class compose {
  static_assert((detail::check_policy<P>::value && ...));

 public:
  using params = std::tuple<typename P::params...>;
  static constexpr bool out_of_place = detail::first_acting_out_of_place<false, P...>::value &&
                                       detail::first_acting_out_of_place<true, P...>::value;

  compose() = default;
  explicit compose(P... parts) : parts_(std::move(parts)...) {}

  params sample(generator& gen, const clip_geometry& g) const {
    return sample_from(gen, g, std::index_sequence_for<P...>{});
  }
  clip_geometry output_geometry(const params& p, const clip_geometry& g) const {
    clip_geometry cur = g;
    for_each_index([&](auto i) { cur = output_geometry_of(std::get<i>(parts_), std::get<i>(p), cur); });
    return cur;
  }
  void apply(const params& p, clip_tensor& rgb) const {
    for_each_index([&](auto i) {
      using part = std::tuple_element_t<i, std::tuple<P...>>;
      if constexpr (has_apply_v<part>) std::get<i>(parts_).apply(std::get<i>(p), rgb);
    });
  }
  void apply_flow(const params& p, clip_tensor& flow) const {
    for_each_index([&](auto i) {
      using part = std::tuple_element_t<i, std::tuple<P...>>;
      if constexpr (has_apply_flow_v<part>) std::get<i>(parts_).apply_flow(std::get<i>(p), flow);
    });
  }

  /// Part I (to read options, or to call a part's own helpers).
  template <std::size_t I>
  const auto& part() const { return std::get<I>(parts_); }

 private:
  template <std::size_t... I>
  params sample_from(generator& gen, const clip_geometry& g, std::index_sequence<I...>) const {
    params out;
    clip_geometry cur = g;
    // a fold over the comma operator keeps the draws in part order
    ((std::get<I>(out) = std::get<I>(parts_).sample(gen, cur),
      cur = output_geometry_of(std::get<I>(parts_), std::get<I>(out), cur)),
     ...);
    return out;
  }
  template <class F>
  static void for_each_index(F&& f) {
    for_each_index_impl(f, std::index_sequence_for<P...>{});
  }
  template <class F, std::size_t... I>
  static void for_each_index_impl(F& f, std::index_sequence<I...>) {
    (f(std::integral_constant<std::size_t, I>{}), ...);
  }

  std::tuple<P...> parts_;
};

// ------------------------------------------------------------------ random_apply

/// Applies P with probability p, decided once per clip (the same decision for RGB and flow of a
/// view, and for all frames). P's params are drawn whether or not it applies, so the number of
/// draws does not depend on the decision. Defines `apply` / `apply_flow` only where P does.
/// \tparam P a policy (is_augment_policy_v).
template <class P>
class random_apply {
  static_assert(detail::check_policy<P>::value);

 public:
  struct params {
    bool applied = false;
    typename P::params inner{};
  };

  explicit random_apply(double p = 0.5, P policy = P{}) : p_(p), policy_(std::move(policy)) {
    MSCL_CHECK(p >= 0.0 && p <= 1.0, value_error, "augment::random_apply: probability must be in [0, 1], got " << p);
  }
  double probability() const { return p_; }
  const P& policy() const { return policy_; }

  params sample(generator& gen, const clip_geometry& g) const {
    params out;
    out.applied = gen.uniform() < p_;
    out.inner = policy_.sample(gen, g);
    return out;
  }
  clip_geometry output_geometry(const params& p, const clip_geometry& g) const {
    return p.applied ? output_geometry_of(policy_, p.inner, g) : g;
  }
  template <class Q = P, std::enable_if_t<has_apply_v<Q>, int> = 0>
  void apply(const params& p, clip_tensor& rgb) const {
    if (p.applied) policy_.apply(p.inner, rgb);
  }
  template <class Q = P, std::enable_if_t<has_apply_flow_v<Q>, int> = 0>
  void apply_flow(const params& p, clip_tensor& flow) const {
    if (p.applied) policy_.apply_flow(p.inner, flow);
  }

 private:
  double p_;
  P policy_;
};

// ------------------------------------------------------------------ two_views

/// One augmented view: RGB and flow clip (flow undefined when the view has none).
struct view {
  clip_tensor rgb, flow;
};
/// The q and k views of one sample.
struct view_pair {
  view q, k;
};

/// Runs policy P with params p on a view's inputs. The inputs are never modified: they are copied
/// first unless P declares itself out-of-place. An undefined `flow` is skipped.
template <class P>
view make_view(const P& policy, const typename P::params& p, const clip_tensor& rgb, const clip_tensor& flow) {
  view v;
  if (rgb.defined()) {
    v.rgb = is_out_of_place_v<P> ? rgb : rgb.clone();
    if constexpr (has_apply_v<P>) policy.apply(p, v.rgb);
  }
  if (flow.defined()) {
    v.flow = is_out_of_place_v<P> ? flow : flow.clone();
    if constexpr (has_apply_flow_v<P>) policy.apply_flow(p, v.flow);
  }
  return v;
}

/// The q and k views of a sample with independently drawn params (§7.1: q and k fully
/// independent). q's params are drawn first. Both views may come from the same input clips or
/// from separate ones (MSCL: RGB clip a for q, clip b for k).
/// \tparam Q, K view policies (is_augment_policy_v); K defaults to Q.
template <class Q, class K = Q>
class two_views {
  static_assert(detail::check_policy<Q>::value && detail::check_policy<K>::value);

 public:
  struct params {
    typename Q::params q;
    typename K::params k;
  };
  explicit two_views(Q q = Q{}, K k = K{}) : q_(std::move(q)), k_(std::move(k)) {}
  const Q& q_policy() const { return q_; }
  const K& k_policy() const { return k_; }

  params sample(generator& gen, const clip_geometry& g) const { return sample(gen, g, g); }
  params sample(generator& gen, const clip_geometry& gq, const clip_geometry& gk) const {
    params out{q_.sample(gen, gq), {}};
    out.k = k_.sample(gen, gk);
    return out;
  }
  /// Both views from the same clips.
  view_pair operator()(const params& p, const clip_tensor& rgb, const clip_tensor& flow) const {
    return {make_view(q_, p.q, rgb, flow), make_view(k_, p.k, rgb, flow)};
  }
  /// Each view from its own clips.
  view_pair operator()(const params& p, const clip_tensor& rgb_q, const clip_tensor& flow_q,
                       const clip_tensor& rgb_k, const clip_tensor& flow_k) const {
    return {make_view(q_, p.q, rgb_q, flow_q), make_view(k_, p.k, rgb_k, flow_k)};
  }
  /// Draw and apply in one call (same input clips for both views).
  view_pair operator()(generator& gen, const clip_tensor& rgb, const clip_tensor& flow) const {
    const clip_geometry g = clip_geometry::of(rgb, flow.defined() ? &flow : nullptr);
    return (*this)(sample(gen, g), rgb, flow);
  }

 private:
  Q q_;
  K k_;
};

}  // namespace mscl::augment
