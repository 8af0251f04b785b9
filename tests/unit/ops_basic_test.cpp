// Finite-difference gradient checks (double) and value checks for elementwise, shape,
// reduction, linear-algebra and loss ops.
#include <catch2/catch.hpp>

#include <mscl/mscl.hpp>
#include <mscl/testing/gradient_check.hpp>

using namespace mscl;
using T = tensor<double>;
using testing::check_gradients;

namespace {
T random_tensor(const shape_t& s, std::uint64_t seed, double lo = -1, double hi = 1) {
  T t = T::empty(s);
  generator g(seed);
  g.fill_uniform(t.data(), t.numel(), lo, hi);
  return t;
}
void require_ok(const testing::gradient_check_result& r) {
  INFO(r.report);
  REQUIRE(r.ok);
}
}  // namespace

TEST_CASE("elementwise gradients", "[ops][grad]") {
  auto a = random_tensor({3, 4}, 1), b = random_tensor({3, 4}, 2);
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::add(v[0], v[1]); }, {a, b}));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::sub(v[0], v[1]); }, {a, b}));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::mul(v[0], v[1]); }, {a, b}));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::scale(v[0], 2.5); }, {a}));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::relu(v[0]); }, {a}));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::exp(v[0]); }, {a}));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::square(v[0]); }, {a}));
  auto pos = random_tensor({3, 4}, 3, 0.5, 2.0);
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::log(v[0]); }, {pos}));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::sqrt(v[0]); }, {pos}));
  REQUIRE_THROWS_AS(ops::add(a, random_tensor({4, 3}, 4)), shape_error);
}

TEST_CASE("shape-op gradients", "[ops][grad]") {
  auto a = random_tensor({2, 3, 4}, 5), b = random_tensor({2, 2, 4}, 6);
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::reshape(v[0], {6, -1}); }, {a}));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::permute(v[0], {2, 0, 1}); }, {a}));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::slice(v[0], 2, 1, 4, 2); }, {a}));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::select(v[0], 1, 2); }, {a}));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::cat<double, cpu>({v[0], v[1]}, 1); }, {a, b}));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::stack<double, cpu>({v[0], v[0]}, 1); }, {a}));
  REQUIRE_THROWS_AS(ops::reshape(a, {5, -1}), shape_error);
}

TEST_CASE("reductions: values and gradients", "[ops][grad]") {
  auto a = random_tensor({2, 3, 4}, 7);
  const auto v = a.to_vector();
  double total = 0;
  for (double x : v) total += x;
  REQUIRE(ops::sum(a).item() == Approx(total));
  auto s1 = ops::sum(a, 1);
  REQUIRE(s1.shape() == shape_t{2, 4});
  REQUIRE(s1.at({1, 2}) == Approx(a.at({1, 0, 2}) + a.at({1, 1, 2}) + a.at({1, 2, 2})));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::sum(v[0]); }, {a}));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::mean(v[0], 1, true); }, {a}));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::mean(v[0], -1); }, {a}));
}

TEST_CASE("matmul and linear against a naive product, and their gradients", "[ops][grad]") {
  auto a = random_tensor({3, 5}, 8), b = random_tensor({5, 2}, 9), bias = random_tensor({2}, 10);
  auto c = ops::matmul(a, b);
  for (index_t i = 0; i < 3; ++i)
    for (index_t j = 0; j < 2; ++j) {
      double s = 0;
      for (index_t k = 0; k < 5; ++k) s += a.at({i, k}) * b.at({k, j});
      REQUIRE(c.at({i, j}) == Approx(s).epsilon(1e-12));
    }
  auto w = random_tensor({2, 5}, 11);
  auto y = ops::linear(a, w, bias);
  REQUIRE(y.at({1, 1}) == Approx(ops::matmul(a, ops::transpose(w, 0, 1)).at({1, 1}) + bias.at({1})));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::matmul(v[0], v[1]); }, {a, b}));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::linear(v[0], v[1], v[2]); }, {a, w, bias}));
  try {
    ops::linear(a, random_tensor({2, 4}, 12));
    FAIL("linear accepted a feature mismatch");
  } catch (const shape_error& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("[3, 5]") && Catch::Contains("[2, 4]"));
  }
}

TEST_CASE("softmax family and cross-entropy against direct formulas, and their gradients", "[ops][grad]") {
  auto x = random_tensor({4, 6}, 13, -3, 3);
  auto ls = ops::log_softmax(x);
  for (index_t i = 0; i < 4; ++i) {
    double s = 0;
    for (index_t j = 0; j < 6; ++j) s += std::exp(x.at({i, j}));
    REQUIRE(ls.at({i, 3}) == Approx(x.at({i, 3}) - std::log(s)).epsilon(1e-12));
  }
  std::vector<index_t> labels{0, 5, 2, 2};
  auto ce = ops::cross_entropy(x, labels);
  double ref = 0;
  for (index_t i = 0; i < 4; ++i) ref -= ls.at({i, labels[std::size_t(i)]});
  REQUIRE(ce.item() == Approx(ref / 4).epsilon(1e-12));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::log_softmax(v[0]); }, {x}));
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::softmax(v[0]); }, {x}));
  require_ok(check_gradients<>([labels](const std::vector<T>& v) { return ops::cross_entropy(v[0], labels); }, {x}));
  REQUIRE_THROWS_AS(ops::cross_entropy(x, {0, 1, 2, 6}), value_error);
  REQUIRE_THROWS_AS(ops::cross_entropy(x, {0, 1}), shape_error);
}

TEST_CASE("l2_normalize: unit rows and gradient", "[ops][grad]") {
  auto x = random_tensor({3, 5}, 14);
  auto y = ops::l2_normalize(x, 1);
  for (index_t i = 0; i < 3; ++i) {
    double s = 0;
    for (index_t j = 0; j < 5; ++j) s += y.at({i, j}) * y.at({i, j});
    REQUIRE(s == Approx(1.0).epsilon(1e-12));
  }
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::l2_normalize(v[0], 1); }, {x}));
  auto x3 = random_tensor({2, 4, 3}, 15);
  require_ok(check_gradients<>([](const std::vector<T>& v) { return ops::l2_normalize(v[0], 1); }, {x3}));
}

TEST_CASE("relu propagates NaN like PyTorch (a poisoned input is never silently zeroed)", "[ops]") {
  auto x = tensor<float>::from_vector({3}, {-1.f, std::numeric_limits<float>::quiet_NaN(), 2.f});
  const auto y = ops::relu(x).to_vector();
  REQUIRE(y[0] == 0.f);
  REQUIRE(std::isnan(y[1]));
  REQUIRE(y[2] == 2.f);
}
