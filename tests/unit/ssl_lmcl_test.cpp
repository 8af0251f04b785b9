// ssl::lmcl against a naive formulation, on hand-built cases with analytic losses, and with
// finite-difference gradients (double) to all three inputs; ssl::spatial_mean.
#include <catch2/catch.hpp>

#include <cmath>

#include <mscl/ssl/lmcl.hpp>
#include <mscl/testing/gradient_check.hpp>

using namespace mscl;
using TD = tensor<double>;

namespace {
TD random_tensor(const shape_t& s, std::uint64_t seed, double lo = -1, double hi = 1) {
  TD t = TD::empty(s);
  generator g(seed);
  g.fill_uniform(t.data(), t.numel(), lo, hi);
  return t;
}
// The definition: r_{b,t} = x/‖x‖ over C, f_{b,j} the same over the base (j < T) then aug
// columns; s = r·f/τ; loss = mean over (b, t) of logsumexp_j s − s_{t}.
double naive_lmcl(const TD& rgb, const TD& base, const TD& aug, double tau) {
  const index_t nb = rgb.shape()[0], C = rgb.shape()[1], T = rgb.shape()[2];
  auto col = [&](const TD& x, index_t b, index_t t) {
    std::vector<long double> v(static_cast<std::size_t>(C));
    long double s = 0;
    for (index_t c = 0; c < C; ++c) {
      v[std::size_t(c)] = x.at({b, c, t});
      s += v[std::size_t(c)] * v[std::size_t(c)];
    }
    for (auto& e : v) e /= std::sqrt(s);
    return v;
  };
  long double total = 0;
  for (index_t b = 0; b < nb; ++b)
    for (index_t t = 0; t < T; ++t) {
      const auto r = col(rgb, b, t);
      std::vector<long double> s;
      for (index_t j = 0; j < (aug.defined() ? 2 * T : T); ++j) {
        const auto f = j < T ? col(base, b, j) : col(aug, b, j - T);
        long double dot = 0;
        for (index_t c = 0; c < C; ++c) dot += r[std::size_t(c)] * f[std::size_t(c)];
        s.push_back(dot / tau);
      }
      long double z = 0;
      for (auto v : s) z += std::exp(v);
      total += std::log(z) - s[std::size_t(t)];
    }
  return double(total / (nb * T));
}
void require_ok(const testing::gradient_check_result& r) {
  INFO(r.report);
  REQUIRE(r.ok);
}
}  // namespace

TEST_CASE("lmcl matches the naive definition", "[ssl][lmcl]") {
  // Non-negative features, as after ReLU, and signed ones (the op does not assume the sign).
  for (double lo : {0.0, -1.0}) {
    TD rgb = random_tensor({3, 6, 4}, 1, lo), base = random_tensor({3, 6, 4}, 2, lo), aug = random_tensor({3, 6, 4}, 3, lo);
    for (double tau : {0.07, 0.5}) {
      REQUIRE(ssl::lmcl(rgb, base, aug, tau).loss.item() == Approx(naive_lmcl(rgb, base, aug, tau)).epsilon(1e-12));
      REQUIRE(ssl::lmcl(rgb, base, TD(), tau).loss.item() == Approx(naive_lmcl(rgb, base, TD(), tau)).epsilon(1e-12));
    }
  }
  // float agrees with the double definition.
  TD rgb = random_tensor({2, 16, 4}, 4, 0), base = random_tensor({2, 16, 4}, 5, 0), aug = random_tensor({2, 16, 4}, 6, 0);
  auto to_f = [](const TD& x) {
    auto v = x.to_vector();
    return tensor<float>::from_vector(x.shape(), std::vector<float>(v.begin(), v.end()));
  };
  REQUIRE(ssl::lmcl(to_f(rgb), to_f(base), to_f(aug), 0.07).loss.item() ==
          Approx(naive_lmcl(rgb, base, aug, 0.07)).epsilon(1e-5));
}

TEST_CASE("lmcl on hand-built aligned and permuted features", "[ssl][lmcl]") {
  // C = 8 one-hot channels: RGB step t and base-flow step t share channel t; aug-flow step t
  // uses channel 4 + t. Aligned: s_{t,t} = 1/τ and the 7 others 0.
  const index_t nb = 2, C = 8, T = 4;
  const double tau = 0.07;
  TD rgb = TD::zeros({nb, C, T}), base = TD::zeros({nb, C, T}), aug = TD::zeros({nb, C, T});
  for (index_t b = 0; b < nb; ++b)
    for (index_t t = 0; t < T; ++t) {
      rgb.at({b, t, t}) = 2.0 + double(b);  // norms ≠ 1: normalisation is part of the op
      base.at({b, t, t}) = 0.5;
      aug.at({b, 4 + t, t}) = 3.0;
    }
  const double e = std::exp(1.0 / tau);
  const double aligned = -std::log(e / (e + 7.0));  // ≈ 4.37e-6
  REQUIRE(aligned == Approx(std::log1p(7.0 / e)).epsilon(1e-8));
  auto r = ssl::lmcl(rgb, base, aug, tau);
  // lse − s_t cancels ~14.3 down to ~4e-6: compare absolutely (double rounding of 14.3 ≈ 2e-15).
  REQUIRE(r.loss.item() == Approx(std::log1p(7.0 / e)).epsilon(1e-6).margin(1e-13));
  REQUIRE(r.accuracy == 1.0);
  // The analytic value is the minimum over such features: perturbing the aligned case raises it.
  TD noisy = rgb.clone();
  noisy.at({0, 5, 1}) = 0.3;
  REQUIRE(ssl::lmcl(noisy, base, aug, tau).loss.item() > aligned);

  // Permuted in time: RGB step t matches base step t+1 → the positive logit is 0, one other is 1/τ.
  TD perm = TD::zeros({nb, C, T});
  for (index_t b = 0; b < nb; ++b)
    for (index_t t = 0; t < T; ++t) perm.at({b, (t + 1) % T, t}) = 1.0;
  auto rp = ssl::lmcl(perm, base, aug, tau);
  const double permuted = -std::log(1.0 / (e + 7.0));
  REQUIRE(rp.loss.item() == Approx(permuted).epsilon(1e-12));
  REQUIRE(rp.loss.item() > r.loss.item());
  REQUIRE(rp.accuracy == 0.0);

  // RGB aligned with the *augmented* flow instead (the motion-shuffled negative wins): also worse.
  TD to_aug = TD::zeros({nb, C, T});
  for (index_t b = 0; b < nb; ++b)
    for (index_t t = 0; t < T; ++t) to_aug.at({b, 4 + t, t}) = 1.0;
  REQUIRE(ssl::lmcl(to_aug, base, aug, tau).loss.item() == Approx(permuted).epsilon(1e-12));

  // Without aug candidates, aligned: −log(e/(e + 3)).
  REQUIRE(ssl::lmcl(rgb, base, TD(), tau).loss.item() == Approx(std::log1p(3.0 / e)).epsilon(1e-6).margin(1e-13));
}

TEST_CASE("lmcl gradients to all three inputs: finite differences in double", "[ssl][lmcl][grad]") {
  TD rgb = random_tensor({2, 5, 4}, 11, 0.05), base = random_tensor({2, 5, 4}, 12, 0.05), aug = random_tensor({2, 5, 4}, 13, 0.05);
  require_ok(testing::check_gradients<>(
      [](const std::vector<TD>& v) { return ssl::lmcl(v[0], v[1], v[2], 0.3).loss; }, {rgb, base, aug}));
  require_ok(testing::check_gradients<>(
      [](const std::vector<TD>& v) { return ssl::lmcl(v[0], v[1], TD(), 0.07).loss; }, {rgb, base}));
  // Only one input with grad (the others constant).
  require_ok(testing::check_gradients<>(
      [&](const std::vector<TD>& v) { return ssl::lmcl(rgb, base, v[0], 0.2).loss; }, {aug}));
  // From feature maps through spatial_mean, as the objective uses it.
  TD p0 = random_tensor({2, 3, 4, 2, 3}, 14, 0), f4 = random_tensor({2, 3, 4, 2, 2}, 15, 0), a4 = random_tensor({2, 3, 4, 2, 2}, 16, 0);
  require_ok(testing::check_gradients<>(
      [](const std::vector<TD>& v) {
        return ssl::lmcl(ssl::spatial_mean(v[0]), ssl::spatial_mean(v[1]), ssl::spatial_mean(v[2]), 0.07).loss;
      },
      {p0, f4, a4}));
}

TEST_CASE("spatial_mean and lmcl input checks", "[ssl][lmcl]") {
  TD x = random_tensor({2, 3, 4, 2, 5}, 21);
  TD m = ssl::spatial_mean(x);
  REQUIRE(m.shape() == shape_t{2, 3, 4});
  double s = 0;
  for (index_t h = 0; h < 2; ++h)
    for (index_t w = 0; w < 5; ++w) s += x.at({1, 2, 3, h, w});
  REQUIRE(m.at({1, 2, 3}) == Approx(s / 10).epsilon(1e-12));
  TD a = random_tensor({2, 3, 4}, 22);
  REQUIRE_THROWS_AS(ssl::lmcl(a, random_tensor({2, 3, 3}, 1), a, 0.07), shape_error);
  REQUIRE_THROWS_AS(ssl::lmcl(a, a, random_tensor({2, 4, 4}, 1), 0.07), shape_error);
  REQUIRE_THROWS_AS(ssl::lmcl(random_tensor({2, 3}, 1), a, a, 0.07), shape_error);
  REQUIRE_THROWS_AS(ssl::lmcl(a, a, a, 0.0), value_error);
  REQUIRE_THROWS_AS(ssl::spatial_mean(a), shape_error);
}
