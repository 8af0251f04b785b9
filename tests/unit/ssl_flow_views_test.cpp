// FRA flow-view pairing (intended vs released, ALGORITHM.md §1.6 / §11 A1) and the cosine
// learning-rate schedule at its endpoints.
#include <catch2/catch.hpp>

#include <cmath>
#include <mscl/mscl.hpp>
#include <mscl/ssl/flow_views.hpp>

using namespace mscl;

namespace {
// B×2×T×1×1 flow whose every vector is (u, v).
tensor<double> constant_flow(index_t b, index_t t, double u, double v) {
  auto f = tensor<double>::empty({b, 2, t, 1, 1});
  for (index_t i = 0; i < b; ++i)
    for (index_t k = 0; k < t; ++k) {
      f.at({i, 0, k, 0, 0}) = u;
      f.at({i, 1, k, 0, 0}) = v;
    }
  return f;
}
}  // namespace

TEST_CASE("flow packs: intended pairing puts the rotated flow of the same clip in Y", "[ssl][fra]") {
  const double beta = ssl::fra_angle(2);  // 0.6π
  const auto a = constant_flow(1, 4, 1, 0), b = constant_flow(1, 4, 0, 1);
  const auto p = ssl::make_flow_packs(a, b, {beta}, false);
  auto [xq, yq] = ssl::split_flow_pack(p.q);
  auto [xk, yk] = ssl::split_flow_pack(p.k);
  REQUIRE(xq.shape() == shape_t{1, 2, 4, 1, 1});
  REQUIRE(xq.at({0, 0, 3, 0, 0}) == 1.0);                                // X_q = F(a)
  REQUIRE(yq.at({0, 0, 0, 0, 0}) == Approx(std::cos(beta)));             // Y_q = R F(a)
  REQUIRE(yq.at({0, 1, 0, 0, 0}) == Approx(std::sin(beta)));
  REQUIRE(xk.at({0, 1, 2, 0, 0}) == 1.0);                                // X_k = F(b)
  REQUIRE(yk.at({0, 0, 1, 0, 0}) == Approx(-std::sin(beta)));            // Y_k = R F(b): (0,1) → (−sin, cos)
  REQUIRE(yk.at({0, 1, 1, 0, 0}) == Approx(std::cos(beta)));
}

TEST_CASE("flow packs: the released pairing reproduces §1.6's literal table", "[ssl][fra]") {
  const double beta = ssl::fra_angle(4);  // π
  const auto a = constant_flow(2, 2, 1, 0), b = constant_flow(2, 2, 0, 1);
  const auto p = ssl::make_flow_packs(a, b, {beta, beta}, true);
  auto [xq, yq] = ssl::split_flow_pack(p.q);
  auto [xk, yk] = ssl::split_flow_pack(p.k);
  REQUIRE(xq.at({1, 0, 0, 0, 0}) == 1.0);                      // X_q = F(a)
  REQUIRE(yq.at({1, 1, 0, 0, 0}) == 1.0);                      // Y_q = F(b), unrotated
  REQUIRE(xk.at({0, 0, 1, 0, 0}) == Approx(-1.0));             // X_k = R_π F(a)
  REQUIRE(yk.at({0, 1, 1, 0, 0}) == Approx(-1.0));             // Y_k = R_π F(b)
  REQUIRE_THROWS_AS(ssl::make_flow_packs(a, constant_flow(2, 3, 0, 1), {beta, beta}), shape_error);
}

TEST_CASE("cosine lr schedule: endpoints, midpoint, warm-up and linear scaling", "[optim]") {
  optim::cosine_schedule s{0.02, 0.0, 400, 0, 0};
  REQUIRE(s(0) == Approx(0.02));
  REQUIRE(s(200) == Approx(0.01));
  REQUIRE(s(400) == Approx(0.0).margin(1e-15));
  REQUIRE(s(500) == Approx(0.0).margin(1e-15));  // clamped after the end
  optim::cosine_schedule w{0.1, 0.001, 100, 10, 0};
  REQUIRE(w(0) == Approx(0.0).margin(1e-15));
  REQUIRE(w(5) == Approx(0.5 * (0.001 + 0.5 * 0.099 * (1 + std::cos(M_PI * 5 / 100)))));
  REQUIRE(w(10) == Approx(0.001 + 0.5 * 0.099 * (1 + std::cos(M_PI * 10 / 100))));
  REQUIRE(w(100) == Approx(0.001));
  REQUIRE(optim::scaled_lr(0.02, 128, 256) == Approx(0.04));
  optim::step_schedule st{0.12, {14, 18}, 0.1};
  REQUIRE(st(13) == Approx(0.12));
  REQUIRE(st(14) == Approx(0.012));
  REQUIRE(st(21) == Approx(0.0012));
}
