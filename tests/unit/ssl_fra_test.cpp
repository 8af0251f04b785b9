// ssl FRA: the angle grid (never 0, never 1.8π, all 8 angles drawn, seeded), rotation of flow
// vectors on tensors and flow_field, its gradient, and the per-map max-length normalisation.
#include <catch2/catch.hpp>

#include <cmath>
#include <set>

#include <mscl/ssl/fra.hpp>
#include <mscl/testing/gradient_check.hpp>

using namespace mscl;
using TF = tensor<float>;
using TD = tensor<double>;

namespace {
constexpr double pi = 3.14159265358979323846;
}

TEST_CASE("FRA angle grid", "[ssl][fra]") {
  for (int c = 0; c < 8; ++c) REQUIRE(ssl::fra_angle(c) == Approx(pi * (0.2 + 0.2 * c)).epsilon(1e-15));
  REQUIRE(ssl::fra_angle(0) == Approx(0.2 * pi));
  REQUIRE(ssl::fra_angle(7) == Approx(1.6 * pi));
  REQUIRE_THROWS_AS(ssl::fra_angle(8), value_error);
  REQUIRE_THROWS_AS(ssl::fra_angle(-1), value_error);

  generator g(5);
  auto d = ssl::draw_fra_angles(4000, g);
  REQUIRE(d.angles.size() == 4000);
  std::set<int> seen;
  std::vector<int> counts(8, 0);
  for (std::size_t i = 0; i < d.angles.size(); ++i) {
    const int c = d.chunks[i];
    REQUIRE(c >= 0);
    REQUIRE(c <= 7);
    ++counts[std::size_t(c)];
    REQUIRE(d.angles[i] == ssl::fra_angle(c));
    // Never the identity (0 ≡ 2π) and never 1.8π.
    REQUIRE(std::abs(d.angles[i]) > 0.19 * pi);
    REQUIRE(std::abs(d.angles[i] - 1.8 * pi) > 0.19 * pi);
    REQUIRE(std::abs(d.angles[i] - 2.0 * pi) > 0.39 * pi);
    seen.insert(c);
  }
  REQUIRE(seen.size() == 8);
  for (int n : counts) REQUIRE(std::abs(n - 500) < 120);  // roughly uniform (±5σ)
  // Seeded: the same seed gives the same draws.
  generator g2(5);
  REQUIRE(ssl::draw_fra_angles(4000, g2).chunks == d.chunks);
  // Custom grid.
  ssl::fra_options o{0.0, 2.0, 4};
  REQUIRE(ssl::fra_angle(3, o) == Approx(1.5 * pi));
  REQUIRE_THROWS_AS(ssl::fra_angle(0, ssl::fra_options{1.0, 1.0, 8}), value_error);
}

TEST_CASE("FRA rotates (1, 0) to (cos β, sin β) on tensors and flow fields", "[ssl][fra]") {
  // B = 8 samples (one per grid angle), 2 channels, T = 2, H = 2, W = 3; every vector (1, 0).
  const index_t nb = 8, T = 2, H = 2, W = 3;
  TF flow = TF::zeros({nb, 2, T, H, W});
  for (index_t b = 0; b < nb; ++b)
    for (index_t t = 0; t < T; ++t)
      for (index_t y = 0; y < H; ++y)
        for (index_t x = 0; x < W; ++x) flow.at({b, 0, t, y, x}) = 1.0f;
  std::vector<double> beta;
  for (int c = 0; c < 8; ++c) beta.push_back(ssl::fra_angle(c));
  TF rot = ssl::rotate_flow(flow, beta);
  for (index_t b = 0; b < nb; ++b)
    for (index_t t = 0; t < T; ++t)
      for (index_t y = 0; y < H; ++y)
        for (index_t x = 0; x < W; ++x) {
          REQUIRE(rot.at({b, 0, t, y, x}) == Approx(std::cos(beta[std::size_t(b)])).margin(1e-7));
          REQUIRE(rot.at({b, 1, t, y, x}) == Approx(std::sin(beta[std::size_t(b)])).margin(1e-7));
        }
  // (0, 1) → (−sin β, cos β); general vectors keep their length; β then −β is the identity.
  TF g = TF::empty({3, 2, 4, 5});
  generator gen(1);
  gen.fill_normal(g.data(), g.numel(), 0, 1);
  const std::vector<double> a{0.3, 2.0, -1.1};
  TF gr = ssl::rotate_flow(g, a);
  TF back = ssl::rotate_flow(gr, std::vector<double>{-0.3, -2.0, 1.1});
  const index_t inner = 20;
  for (index_t b = 0; b < 3; ++b)
    for (index_t i = 0; i < inner; ++i) {
      const float u = g.data()[b * 2 * inner + i], v = g.data()[b * 2 * inner + inner + i];
      const float ur = gr.data()[b * 2 * inner + i], vr = gr.data()[b * 2 * inner + inner + i];
      const double c = std::cos(a[std::size_t(b)]), s = std::sin(a[std::size_t(b)]);
      REQUIRE(ur == Approx(u * c - v * s).margin(1e-6));
      REQUIRE(vr == Approx(u * s + v * c).margin(1e-6));
      REQUIRE(std::hypot(ur, vr) == Approx(std::hypot(u, v)).margin(1e-6));
      REQUIRE(back.data()[b * 2 * inner + i] == Approx(u).margin(1e-6));
    }
  // flow_field version.
  data::flow_field f(2, 2);
  for (std::size_t i = 0; i < 4; ++i) {
    f.u[i] = 1.0f;
    f.v[i] = 0.0f;
  }
  f.v[3] = 1.0f;
  f.u[3] = 0.0f;
  const double b3 = ssl::fra_angle(3);
  auto fr = ssl::rotate_flow(f, b3);
  REQUIRE(fr.u[0] == Approx(std::cos(b3)).margin(1e-7));
  REQUIRE(fr.v[0] == Approx(std::sin(b3)).margin(1e-7));
  REQUIRE(fr.u[3] == Approx(-std::sin(b3)).margin(1e-7));
  REQUIRE(fr.v[3] == Approx(std::cos(b3)).margin(1e-7));
  REQUIRE(f.u[0] == 1.0f);  // by-value overload leaves the input alone
  // Shape checks.
  REQUIRE_THROWS_AS(ssl::rotate_flow(TF::zeros({2, 3, 4, 4}), std::vector<double>{0, 0}), shape_error);
  REQUIRE_THROWS_AS(ssl::rotate_flow(TF::zeros({2, 2, 4, 4}), std::vector<double>{0}), shape_error);
}

TEST_CASE("rotate_flow gradient: finite differences in double", "[ssl][fra][grad]") {
  TD x = TD::empty({2, 2, 3, 2, 2});
  generator g(3);
  g.fill_normal(x.data(), x.numel(), 0, 1);
  auto r = testing::check_gradients<>(
      [](const std::vector<TD>& v) { return ssl::rotate_flow(v[0], std::vector<double>{0.7, 4.0}); }, {x});
  INFO(r.report);
  REQUIRE(r.ok);
}

TEST_CASE("per-map max-length normalisation", "[ssl][fra]") {
  // B = 2, T = 3 maps of 2×2; each map scaled differently, one map all zero.
  const index_t nb = 2, T = 3, H = 2, W = 2;
  TF flow = TF::empty({nb, 2, T, H, W});
  generator g(4);
  g.fill_normal(flow.data(), flow.numel(), 0, 1);
  for (index_t b = 0; b < nb; ++b)
    for (index_t t = 0; t < T; ++t)
      for (index_t c = 0; c < 2; ++c)
        for (index_t y = 0; y < H; ++y)
          for (index_t x = 0; x < W; ++x) flow.at({b, c, t, y, x}) *= float(1 + 10 * b + 3 * t);
  for (index_t c = 0; c < 2; ++c)
    for (index_t y = 0; y < H; ++y)
      for (index_t x = 0; x < W; ++x) flow.at({1, c, 2, y, x}) = 0.0f;
  TF out = ssl::normalize_flow_max_length(flow);
  for (index_t b = 0; b < nb; ++b)
    for (index_t t = 0; t < T; ++t) {
      double mx = 0;
      for (index_t y = 0; y < H; ++y)
        for (index_t x = 0; x < W; ++x) mx = std::max(mx, std::hypot(double(flow.at({b, 0, t, y, x})), double(flow.at({b, 1, t, y, x}))));
      double out_mx = 0;
      for (index_t y = 0; y < H; ++y)
        for (index_t x = 0; x < W; ++x) {
          for (index_t c = 0; c < 2; ++c)
            REQUIRE(out.at({b, c, t, y, x}) == Approx(flow.at({b, c, t, y, x}) / (mx + 1e-5)).epsilon(1e-6).margin(1e-12));
          out_mx = std::max(out_mx, std::hypot(double(out.at({b, 0, t, y, x})), double(out.at({b, 1, t, y, x}))));
        }
      if (mx > 0) REQUIRE(out_mx == Approx(mx / (mx + 1e-5)).epsilon(1e-6));
      else REQUIRE(out_mx == 0.0);
    }
  // Rotation preserves lengths, so normalise∘rotate = rotate∘normalise (up to rounding).
  const std::vector<double> a{1.0, 2.5};
  auto n1 = ssl::normalize_flow_max_length(ssl::rotate_flow(flow, a)).to_vector();
  auto n2 = ssl::rotate_flow(out, a).to_vector();
  for (std::size_t i = 0; i < n1.size(); ++i) REQUIRE(n1[i] == Approx(n2[i]).margin(1e-6));
  // flow_field version agrees with the tensor version on map (b=0, t=1).
  data::flow_field f(H, W);
  for (index_t y = 0; y < H; ++y)
    for (index_t x = 0; x < W; ++x) {
      f.u[std::size_t(y * W + x)] = flow.at({0, 0, 1, y, x});
      f.v[std::size_t(y * W + x)] = flow.at({0, 1, 1, y, x});
    }
  ssl::normalize_flow_max_length_(f);
  for (index_t y = 0; y < H; ++y)
    for (index_t x = 0; x < W; ++x) {
      REQUIRE(f.u[std::size_t(y * W + x)] == out.at({0, 0, 1, y, x}));
      REQUIRE(f.v[std::size_t(y * W + x)] == out.at({0, 1, 1, y, x}));
    }
  // 4-D input (B×2×H×W): one map per sample.
  TF one = TF::zeros({1, 2, 1, 2});
  one.at({0, 0, 0, 1}) = 3.0f;
  one.at({0, 1, 0, 1}) = 4.0f;
  REQUIRE(ssl::normalize_flow_max_length(one).at({0, 1, 0, 1}) == Approx(4.0 / (5.0 + 1e-5)));
  TF req = flow.clone();
  req.set_requires_grad(true);
  REQUIRE_THROWS_AS(ssl::normalize_flow_max_length(req), value_error);
}
