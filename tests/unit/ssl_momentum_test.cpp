// ssl momentum policies (cosine "cosm" schedule against ALGORITHM.md §1.5's check values,
// fixed 0.999) and the EMA update / key-encoder initialisation on tiny modules.
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>

#include <mscl/nn/layers.hpp>
#include <mscl/ssl/momentum.hpp>

using namespace mscl;
using TF = tensor<float>;

namespace {
// linear + batch-norm: parameters and buffers, like an encoder in miniature.
class tiny : public nn::module<float> {
 public:
  tiny(generator& gen, index_t out = 3) {
    fc = register_module("fc", std::make_shared<nn::linear<float>>(4, out, gen));
    bn = register_module("bn", std::make_shared<nn::batch_norm<float>>(nn::batch_norm_options{out}));
  }
  std::shared_ptr<nn::linear<float>> fc;
  std::shared_ptr<nn::batch_norm<float>> bn;
};
class renamed : public nn::module<float> {
 public:
  explicit renamed(generator& gen) {
    lin = register_module("lin", std::make_shared<nn::linear<float>>(4, 3, gen));
    bn = register_module("bn", std::make_shared<nn::batch_norm<float>>(nn::batch_norm_options{3}));
  }
  std::shared_ptr<nn::linear<float>> lin;
  std::shared_ptr<nn::batch_norm<float>> bn;
};
}  // namespace

TEST_CASE("cosine momentum matches the spec's check values", "[ssl][momentum]") {
  ssl::cosine_momentum m;  // base 0.994, max_iters 219136·400
  REQUIRE(m.base() == 0.994);
  REQUIRE(m.max_iters() == 87654400);
  // ALGORITHM.md §1.5: m(0) = 0.994, m(0.25) ≈ 0.994879, m(0.5) = 0.997, m(0.75) ≈ 0.999121, m(1) = 1.
  REQUIRE(m.at_progress(0.0) == Approx(0.994).margin(1e-12));
  REQUIRE(m.at_progress(0.25) == Approx(0.994879).margin(5e-7));
  REQUIRE(m.at_progress(0.5) == Approx(0.997).margin(1e-12));
  REQUIRE(m.at_progress(0.75) == Approx(0.999121).margin(5e-7));
  REQUIRE(m.at_progress(1.0) == Approx(1.0).margin(1e-15));
  // Closed form at 0.25: 1 − 0.006·(cos(π/4) + 1)/2.
  REQUIRE(m.at_progress(0.25) == Approx(1 - 0.006 * (std::sqrt(0.5) + 1) / 2).epsilon(1e-14));
  // Through the sample clock, clamped at both ends.
  ssl::cosine_momentum small(0.99, 1000);
  REQUIRE(small(0) == Approx(0.99));
  REQUIRE(small(250) == Approx(small.at_progress(0.25)));
  REQUIRE(small(500) == Approx(0.995));
  REQUIRE(small(1000) == 1.0);
  REQUIRE(small(5000) == 1.0);
  REQUIRE(small(-5) == Approx(0.99));
  // Monotone non-decreasing.
  double prev = 0;
  for (std::int64_t n = 0; n <= 1000; n += 50) {
    REQUIRE(small(n) >= prev);
    prev = small(n);
  }
  REQUIRE_THROWS_AS(ssl::cosine_momentum(1.5, 10), value_error);
  REQUIRE_THROWS_AS(ssl::cosine_momentum(0.9, 0), value_error);
  ssl::fixed_momentum f;
  REQUIRE(f(0) == 0.999);
  REQUIRE(f(123456789) == 0.999);
}

TEST_CASE("ema_update: parameters only, by name and shape", "[ssl][momentum][ema]") {
  generator g(1);
  tiny query(g), key(g);
  // Give the buffers distinct values so that we can see they are left alone.
  query.bn->running_mean.fill_(5.0f);
  key.bn->running_mean.fill_(-2.0f);
  query.bn->weight.fill_(3.0f);
  const auto k_before = key.fc->weight.to_vector(), kb_before = key.fc->bias.to_vector();
  const auto q_w = query.fc->weight.to_vector(), q_b = query.fc->bias.to_vector();
  const double m = 0.9;
  ssl::ema_update(key, query, m);
  const auto k_after = key.fc->weight.to_vector(), kb_after = key.fc->bias.to_vector();
  for (std::size_t i = 0; i < k_after.size(); ++i)
    REQUIRE(k_after[i] == Approx(m * k_before[i] + (1 - m) * q_w[i]).epsilon(1e-6));
  for (std::size_t i = 0; i < kb_after.size(); ++i)
    REQUIRE(kb_after[i] == Approx(m * kb_before[i] + (1 - m) * q_b[i]).epsilon(1e-6));
  for (float v : key.bn->weight.to_vector()) REQUIRE(v == Approx(0.9 * 1 + 0.1 * 3));  // BN γ is a parameter
  for (float v : key.bn->running_mean.to_vector()) REQUIRE(v == -2.0f);                // buffers untouched
  REQUIRE(query.fc->weight.to_vector() == q_w);                                         // query untouched
  // m = 1 leaves the key as is, m = 0 copies the query parameters.
  const auto k_now = key.fc->weight.to_vector();
  ssl::ema_update(key, query, 1.0);
  REQUIRE(key.fc->weight.to_vector() == k_now);
  ssl::ema_update(key, query, 0.0);
  REQUIRE(key.fc->weight.to_vector() == q_w);

  // Mismatches are refused.
  tiny wider(g, 5);
  renamed other(g);
  REQUIRE_THROWS_AS(ssl::ema_update(key, wider, 0.9), shape_error);
  REQUIRE_THROWS_AS(ssl::ema_update(key, other, 0.9), value_error);
  REQUIRE_THROWS_AS(ssl::ema_update(key, query, 1.5), value_error);
}

TEST_CASE("copy_module_state initialises a key encoder (parameters and buffers)", "[ssl][momentum]") {
  generator g(2);
  tiny query(g), key(g);
  query.bn->running_var.fill_(7.0f);
  REQUIRE(key.fc->weight.to_vector() != query.fc->weight.to_vector());
  ssl::copy_module_state(key, query);
  REQUIRE(key.fc->weight.to_vector() == query.fc->weight.to_vector());
  REQUIRE(key.fc->bias.to_vector() == query.fc->bias.to_vector());
  REQUIRE(key.bn->running_var.to_vector() == query.bn->running_var.to_vector());
  REQUIRE_FALSE(key.fc->weight.shares_storage_with(query.fc->weight));  // a copy, not an alias
  renamed other(g);
  REQUIRE_THROWS_AS(ssl::copy_module_state(key, other), value_error);
}
