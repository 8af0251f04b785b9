// ssl::projection_head: names, init ranges, forward against a naive evaluation, optional
// L2-normalised output, finite-difference gradients in double.
#include <catch2/catch.hpp>

#include <cmath>

#include <mscl/ssl/projection.hpp>
#include <mscl/testing/gradient_check.hpp>

using namespace mscl;
using TD = tensor<double>;

TEST_CASE("projection_head: names, shapes and PyTorch default init ranges", "[ssl][projection]") {
  generator g(1);
  auto head = ssl::make_rgb_projection<float>(g);
  auto names = head->named_parameters();
  REQUIRE(names.size() == 4);
  REQUIRE(names[0].first == "0.weight");
  REQUIRE(names[1].first == "0.bias");
  REQUIRE(names[2].first == "2.weight");
  REQUIRE(names[3].first == "2.bias");
  REQUIRE(names[0].second.shape() == shape_t{512, 512});
  REQUIRE(names[2].second.shape() == shape_t{128, 512});
  REQUIRE(names[3].second.shape() == shape_t{128});
  const double bound = 1.0 / std::sqrt(512.0);
  double mx = 0;
  for (float v : head->fc1->weight.to_vector()) mx = std::max(mx, double(std::abs(v)));
  REQUIRE(mx <= bound);
  REQUIRE(mx > 0.95 * bound);  // really uniform over the full range
  auto flow = ssl::make_flow_projection<float>(g);
  REQUIRE(flow->in_features() == 128);
  REQUIRE(flow->out_features() == 128);
  REQUIRE(flow->parameter_count() == 128 * 128 * 2 + 128 * 2);
}

TEST_CASE("projection_head forward equals the naive MLP, and normalises on request", "[ssl][projection]") {
  generator g(2);
  ssl::projection_head<double> head(5, 7, 3, g), head_n(5, 7, 3, g, true);
  TD x = TD::empty({4, 5});
  g.fill_normal(x.data(), x.numel(), 0, 1);
  TD y = head.forward(x);
  REQUIRE(y.shape() == shape_t{4, 3});
  for (index_t i = 0; i < 4; ++i) {
    std::vector<double> h(7);
    for (index_t j = 0; j < 7; ++j) {
      double s = head.fc1->bias.at({j});
      for (index_t c = 0; c < 5; ++c) s += head.fc1->weight.at({j, c}) * x.at({i, c});
      h[std::size_t(j)] = std::max(s, 0.0);
    }
    for (index_t o = 0; o < 3; ++o) {
      double s = head.fc2->bias.at({o});
      for (index_t j = 0; j < 7; ++j) s += head.fc2->weight.at({o, j}) * h[std::size_t(j)];
      REQUIRE(y.at({i, o}) == Approx(s).epsilon(1e-12));
    }
  }
  TD z = head_n.forward(x);
  for (index_t i = 0; i < 4; ++i) {
    double s = 0;
    for (index_t o = 0; o < 3; ++o) s += z.at({i, o}) * z.at({i, o});
    REQUIRE(s == Approx(1.0).epsilon(1e-12));
  }
}

TEST_CASE("projection_head gradients: finite differences in double", "[ssl][projection][grad]") {
  generator g(3);
  auto head = std::make_shared<ssl::projection_head<double>>(4, 6, 3, g, true);
  TD x = TD::empty({5, 4});
  g.fill_normal(x.data(), x.numel(), 0, 1);
  // Inputs: x and the four parameters (swapped into the module for each evaluation).
  std::vector<TD> inputs{x, head->fc1->weight, head->fc1->bias, head->fc2->weight, head->fc2->bias};
  auto r = testing::check_gradients<>(
      [&](const std::vector<TD>& v) {
        head->fc1->weight = v[1];
        head->fc1->bias = v[2];
        head->fc2->weight = v[3];
        head->fc2->bias = v[4];
        return head->forward(v[0]);
      },
      inputs);
  INFO(r.report);
  REQUIRE(r.ok);
}
