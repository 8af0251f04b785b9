// Tests for ops/norm.hpp (batch_norm, batch_norm_relu) and backend/cpu/batch_norm.hpp:
// forward against a naive long-double reference, PyTorch train/eval semantics of the running
// buffers (unbiased variance), finite-difference gradients in double for every mode, agreement
// with PyTorch (when /usr/bin/python3 has torch), bad input, and a hidden timing case ([.bench]).
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#else
inline int omp_get_max_threads() { return 1; }
#endif

#include <mscl/core/rng.hpp>
#include <mscl/ops/elementwise.hpp>
#include <mscl/ops/norm.hpp>
#include <mscl/ops/reduce.hpp>
#include <mscl/ops/shape_ops.hpp>
#include <mscl/testing/emulated_peer_reducer.hpp>
#include <mscl/testing/gradient_check.hpp>

#include "torch_reference.hpp"

using namespace mscl;
using namespace mscl_test;

namespace {

template <class T>
tensor<T> randn(const shape_t& shape, std::uint64_t seed, double mean = 0.0, double stddev = 1.0) {
  std::vector<double> v(std::size_t(numel_of(shape)));
  generator gen(seed);
  gen.fill_normal(v.data(), index_t(v.size()), mean, stddev);
  return tensor<T>::from_vector(shape, std::vector<T>(v.begin(), v.end()));
}

/// Naive reference: per-channel batch mean / biased variance in long double.
struct ref_stats {
  std::vector<long double> mean, var;
};
template <class T>
ref_stats naive_stats(const tensor<T>& x) {
  const index_t n = x.size(0), c = x.size(1), s = x.numel() / (n * c);
  const auto v = x.to_vector();
  ref_stats r;
  for (index_t ch = 0; ch < c; ++ch) {
    long double sum = 0;
    for (index_t i = 0; i < n; ++i)
      for (index_t k = 0; k < s; ++k) sum += v[std::size_t((i * c + ch) * s + k)];
    const long double m = sum / (n * s);
    long double sq = 0;
    for (index_t i = 0; i < n; ++i)
      for (index_t k = 0; k < s; ++k) {
        const long double d = v[std::size_t((i * c + ch) * s + k)] - m;
        sq += d * d;
      }
    r.mean.push_back(m);
    r.var.push_back(sq / (n * s));
  }
  return r;
}

/// Naive forward given the statistics to use.
template <class T>
std::vector<double> naive_bn(const tensor<T>& x, const std::vector<long double>& mean,
                             const std::vector<long double>& var, const std::vector<T>& w, const std::vector<T>& b,
                             double eps, bool relu) {
  const index_t n = x.size(0), c = x.size(1), s = x.numel() / (n * c);
  const auto v = x.to_vector();
  std::vector<double> out(v.size());
  for (index_t i = 0; i < n; ++i)
    for (index_t ch = 0; ch < c; ++ch)
      for (index_t k = 0; k < s; ++k) {
        const std::size_t j = std::size_t((i * c + ch) * s + k);
        long double y = (v[j] - mean[std::size_t(ch)]) / std::sqrt(var[std::size_t(ch)] + (long double)eps);
        if (!w.empty()) y *= w[std::size_t(ch)];
        if (!b.empty()) y += b[std::size_t(ch)];
        if (relu && y < 0) y = 0;
        out[j] = double(y);
      }
  return out;
}


}  // namespace

// ====================================================================== forward values

TEMPLATE_TEST_CASE("batch_norm training forward matches a naive reference", "[ops][norm]", float, double) {
  using T = TestType;
  const double tol = std::is_same_v<T, float> ? 2e-5 : 1e-12;
  const std::vector<shape_t> shapes = {{6, 3}, {2, 3, 7}, {2, 4, 3, 5, 6}, {3, 2, 2, 9, 9}};
  for (const auto& shape : shapes) {
    for (bool affine : {true, false})
      for (bool relu : {false, true}) {
        CAPTURE(to_string(shape), affine, relu);
        // A large offset makes a one-pass E[x^2]-E[x]^2 variance fail; the two-pass kernel must not.
        const tensor<T> x = randn<T>(shape, 11, 100.0, 2.0);
        const index_t c = shape[1];
        tensor<T> w = affine ? randn<T>({c}, 12) : tensor<T>();
        tensor<T> b = affine ? randn<T>({c}, 13) : tensor<T>();
        auto rm = tensor<T>::zeros({c}), rv = tensor<T>::ones({c});
        const auto y = relu ? ops::batch_norm_relu(x, w, b, rm, rv, true) : ops::batch_norm(x, w, b, rm, rv, true);
        REQUIRE(y.shape() == shape);
        const auto st = naive_stats(x);
        const auto ref = naive_bn(x, st.mean, st.var, affine ? w.to_vector() : std::vector<T>(),
                                  affine ? b.to_vector() : std::vector<T>(), 1e-5, relu);
        CHECK(max_abs_diff(y.to_vector(), ref) < tol * 10);
      }
  }
}

TEST_CASE("batch_norm accepts a non-contiguous input", "[ops][norm]") {
  // x[:, :, ::2] of a [2, 3, 8] tensor.
  const auto base = randn<double>({2, 3, 8}, 21);
  const auto x = base.view_as_strided({2, 3, 4}, {24, 8, 2}, 0);
  REQUIRE_FALSE(x.is_contiguous());
  const auto y = ops::batch_norm(x, tensor<double>(), tensor<double>(), tensor<double>(), tensor<double>(), true);
  const auto y_ref = ops::batch_norm(x.clone(), tensor<double>(), tensor<double>(), tensor<double>(),
                                     tensor<double>(), true);
  CHECK(max_abs_diff(y.to_vector(), y_ref.to_vector()) == 0.0);
}

// ====================================================================== train/eval semantics

TEST_CASE("batch_norm running statistics follow PyTorch (unbiased variance) over two steps", "[ops][norm]") {
  const double momentum = 0.3;
  const shape_t shape = {3, 2, 4, 5};
  const index_t m_count = 3 * 4 * 5;
  auto rm = tensor<double>::from_vector({2}, {0.5, -1.0});
  auto rv = tensor<double>::from_vector({2}, {2.0, 0.25});
  std::vector<long double> hm = {0.5L, -1.0L}, hv = {2.0L, 0.25L};
  for (int step = 0; step < 2; ++step) {
    const auto x = randn<double>(shape, 100 + step, step * 3.0, 1.5 + step);
    ops::batch_norm(x, tensor<double>(), tensor<double>(), rm, rv, true, momentum, 1e-5);
    const auto st = naive_stats(x);
    for (std::size_t c = 0; c < 2; ++c) {
      hm[c] = (1 - momentum) * hm[c] + momentum * st.mean[c];
      hv[c] = (1 - momentum) * hv[c] + momentum * st.var[c] * m_count / (m_count - 1);  // unbiased
    }
    CAPTURE(step);
    for (index_t c = 0; c < 2; ++c) {
      CHECK(rm.at({c}) == Approx(double(hm[std::size_t(c)])).epsilon(1e-13));
      CHECK(rv.at({c}) == Approx(double(hv[std::size_t(c)])).epsilon(1e-13));
    }
  }
  // The biased variance would give a visibly different running_var (guards the M/(M-1) factor).
  const auto x = randn<double>({2, 1, 2}, 7);
  auto rm1 = tensor<double>::zeros({1}), rv1 = tensor<double>::zeros({1});
  ops::batch_norm(x, tensor<double>(), tensor<double>(), rm1, rv1, true, 1.0, 1e-5);
  CHECK(rv1.item() == Approx(double(naive_stats(x).var[0] * 4 / 3)).epsilon(1e-13));
  CHECK(rm1.item() == Approx(double(naive_stats(x).mean[0])).epsilon(1e-13));
}

TEST_CASE("batch_norm evaluation uses the running statistics and leaves them unchanged", "[ops][norm]") {
  const auto x = randn<double>({2, 3, 4, 4}, 5, 1.0, 3.0);
  auto rm = tensor<double>::from_vector({3}, {0.1, -0.2, 2.0});
  auto rv = tensor<double>::from_vector({3}, {0.5, 1.5, 4.0});
  const auto w = tensor<double>::from_vector({3}, {1.0, -2.0, 0.5});
  const auto b = tensor<double>::from_vector({3}, {0.0, 0.3, -1.0});
  for (bool relu : {false, true}) {
    const auto y = relu ? ops::batch_norm_relu(x, w, b, rm, rv, false) : ops::batch_norm(x, w, b, rm, rv, false);
    const auto ref = naive_bn(x, {0.1L, -0.2L, 2.0L}, {0.5L, 1.5L, 4.0L}, w.to_vector(), b.to_vector(), 1e-5, relu);
    CHECK(max_abs_diff(y.to_vector(), ref) < 1e-12);
  }
  CHECK(rm.to_vector() == std::vector<double>{0.1, -0.2, 2.0});
  CHECK(rv.to_vector() == std::vector<double>{0.5, 1.5, 4.0});
  // Training under no_grad still updates the buffers (MoCo's key encoder relies on this).
  {
    autograd::no_grad guard;
    ops::batch_norm(x, w, b, rm, rv, true);
  }
  CHECK(rm.to_vector() != std::vector<double>{0.1, -0.2, 2.0});
}

TEST_CASE("batch_norm without running buffers uses batch statistics in eval mode too", "[ops][norm]") {
  const auto x = randn<double>({4, 2, 3}, 9);
  const auto y_eval = ops::batch_norm(x, tensor<double>(), tensor<double>(), tensor<double>(), tensor<double>(), false);
  const auto st = naive_stats(x);
  CHECK(max_abs_diff(y_eval.to_vector(), naive_bn(x, st.mean, st.var, std::vector<double>(), std::vector<double>(),
                                                  1e-5, false)) < 1e-12);
}

// ====================================================================== gradients

TEST_CASE("batch_norm gradients pass finite-difference checks in every mode", "[ops][norm][grad]") {
  const std::vector<shape_t> shapes = {{5, 3}, {2, 3, 4}, {2, 2, 2, 3, 3}};
  for (const auto& shape : shapes)
    for (bool training : {true, false})
      for (bool affine : {true, false})
        for (bool relu : {false, true}) {
          CAPTURE(to_string(shape), training, affine, relu);
          const index_t c = shape[1];
          auto rm = randn<double>({c}, 31, 0.0, 0.3);
          auto rv = tensor<double>::full({c}, 0.8);
          std::vector<tensor<double>> inputs = {randn<double>(shape, 30)};
          if (affine) {
            inputs.push_back(randn<double>({c}, 32));
            inputs.push_back(randn<double>({c}, 33));
          }
          auto f = [&](const std::vector<tensor<double>>& in) {
            const tensor<double> w = affine ? in[1] : tensor<double>(), b = affine ? in[2] : tensor<double>();
            return relu ? ops::batch_norm_relu(in[0], w, b, rm, rv, training, 0.1, 1e-3)
                        : ops::batch_norm(in[0], w, b, rm, rv, training, 0.1, 1e-3);
          };
          const auto r = testing::check_gradients<cpu>(f, inputs);
          INFO(r.report);
          CHECK(r.ok);
        }
}

TEST_CASE("batch_norm passes gradients only to inputs that require them", "[ops][norm][grad]") {
  auto x = randn<double>({3, 2, 4}, 40);
  auto w = randn<double>({2}, 41).set_requires_grad();
  auto b = randn<double>({2}, 42);
  auto y = ops::batch_norm(x, w, b, tensor<double>(), tensor<double>(), true);
  REQUIRE(y.requires_grad());
  y.backward(randn<double>({3, 2, 4}, 43));
  CHECK(w.grad().defined());
  CHECK_FALSE(b.grad().defined());
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("batch_norm_relu equals relu(batch_norm) in value and gradient (float)", "[ops][norm]") {
  const shape_t shape = {4, 8, 3, 7, 7};
  const auto x0 = randn<float>(shape, 50);
  const auto w0 = randn<float>({8}, 51), b0 = randn<float>({8}, 52);
  const auto g = randn<float>(shape, 53);
  auto run = [&](bool fused, bool training) {
    auto x = x0.clone().set_requires_grad(), w = w0.clone().set_requires_grad(), b = b0.clone().set_requires_grad();
    auto rm = tensor<float>::zeros({8}), rv = tensor<float>::ones({8});
    auto y = fused ? ops::batch_norm_relu(x, w, b, rm, rv, training)
                   : ops::relu(ops::batch_norm(x, w, b, rm, rv, training));
    y.backward(g);
    return std::vector<std::vector<float>>{y.to_vector(),        x.grad().to_vector(), w.grad().to_vector(),
                                           b.grad().to_vector(), rm.to_vector(),       rv.to_vector()};
  };
  for (bool training : {true, false}) {
    const auto a = run(true, training), u = run(false, training);
    for (std::size_t k = 0; k < a.size(); ++k) {
      CAPTURE(training, k);
      double worst = 0, scale = 1e-30;
      for (std::size_t i = 0; i < a[k].size(); ++i) {
        worst = std::max(worst, double(std::abs(a[k][i] - u[k][i])));
        scale = std::max(scale, double(std::abs(u[k][i])));
      }
      CHECK(worst <= 1e-6 * scale);
    }
  }
}

// ====================================================================== PyTorch

TEST_CASE("batch_norm matches PyTorch F.batch_norm (values, gradients, running buffers)", "[ops][norm][torch]") {
  if (!torch_available()) {
    WARN("skipped: /usr/bin/python3 cannot import torch");
    return;
  }
  std::vector<torch_case> cases;
  for (bool training : {true, false})
    for (bool affine : {true, false})
      for (bool relu : {false, true}) {
        const shape_t shape = {3, 4, 2, 5, 3};
        const auto x = randn<double>(shape, 60, 0.5, 2.0);
        auto w = affine ? randn<double>({4}, 61).set_requires_grad() : tensor<double>();
        auto b = affine ? randn<double>({4}, 62).set_requires_grad() : tensor<double>();
        auto rm = randn<double>({4}, 63), rv = tensor<double>::full({4}, 1.7);
        const auto dy = randn<double>(shape, 64);
        auto& tc = cases.emplace_back("batch_norm_" + std::to_string(cases.size()), "batch_norm",
                                      nlohmann::json{{"training", training}, {"momentum", 0.2}, {"eps", 1e-4},
                                                     {"relu", relu}});
        tc.input("x", x);
        if (affine) {
          tc.input("weight", w);
          tc.input("bias", b);
        }
        tc.input("running_mean", rm);
        tc.input("running_var", rv);
        tc.input("dy", dy);
        auto xg = x.clone().set_requires_grad();
        auto y = relu ? ops::batch_norm_relu(xg, w, b, rm, rv, training, 0.2, 1e-4)
                      : ops::batch_norm(xg, w, b, rm, rv, training, 0.2, 1e-4);
        y.backward(dy);
        tc.expect("out", y);
        tc.expect("grad_x", xg.grad());
        if (affine) {
          tc.expect("grad_weight", w.grad());
          tc.expect("grad_bias", b.grad());
        }
        tc.expect("running_mean", rm);
        tc.expect("running_var", rv);
      }
  check_against_torch(cases, 1e-11);
}

// ====================================================================== bad input

TEST_CASE("batch_norm rejects bad input with messages naming the shapes", "[ops][norm][error]") {
  const auto x = tensor<float>::ones({2, 3, 4});
  const tensor<float> none;
  CHECK_THROWS_AS(ops::batch_norm(tensor<float>::ones({5}), none, none, none, none, true), shape_error);
  CHECK_THROWS_WITH(ops::batch_norm(tensor<float>::ones({5}), none, none, none, none, true),
                    Catch::Contains("rank >= 2") && Catch::Contains("[5]"));
  CHECK_THROWS_AS(ops::batch_norm(tensor<float>::ones({2, 3, 0}), none, none, none, none, true), shape_error);
  CHECK_THROWS_WITH(ops::batch_norm(tensor<float>::ones({2, 3, 0}), none, none, none, none, true),
                    Catch::Contains("empty") && Catch::Contains("[2, 3, 0]"));
  CHECK_THROWS_AS(ops::batch_norm(none, none, none, none, none, true), shape_error);
  const auto w4 = tensor<float>::ones({4});
  CHECK_THROWS_AS(ops::batch_norm(x, w4, none, none, none, true), shape_error);
  CHECK_THROWS_WITH(ops::batch_norm(x, w4, none, none, none, true),
                    Catch::Contains("weight") && Catch::Contains("[4]") && Catch::Contains("[2, 3, 4]"));
  CHECK_THROWS_WITH(ops::batch_norm_relu(x, none, tensor<float>::ones({3, 1}), none, none, true),
                    Catch::Contains("bias") && Catch::Contains("[3, 1]") && Catch::Contains("[2, 3, 4]"));
  CHECK_THROWS_WITH(ops::batch_norm(x, none, none, tensor<float>::zeros({2}), tensor<float>::ones({2}), false),
                    Catch::Contains("running_mean") && Catch::Contains("[2]") && Catch::Contains("[2, 3, 4]"));
  CHECK_THROWS_AS(ops::batch_norm(x, none, none, tensor<float>::zeros({3}), none, false), value_error);
  // One value per channel: batch statistics are undefined (PyTorch raises too).
  CHECK_THROWS_AS(ops::batch_norm(tensor<float>::ones({1, 3}), none, none, none, none, true), value_error);
  CHECK_THROWS_AS(ops::batch_norm(x, none, none, none, none, true, 0.1, 0.0), value_error);
  CHECK_THROWS_AS(ops::batch_norm(x, none, none, none, none, true, 1.5), value_error);
}

// ====================================================================== timing (hidden)

// Run with: ops_norm_test "[.bench]"  (r3d_18 layer1 activation, 8x64x8x56x56 float).
// ====================================================================== sync-BN

TEST_CASE("sync-BN with an emulated second process equals BN over the whole batch (values, gradients, buffers)",
          "[ops][norm][sync]") {
  // One process computes rows [first, first + rows) of a 5-sample batch; the reducer plays the
  // process holding the other rows (testing/emulated_peer_reducer.hpp, naive double sums).
  const index_t n = 5, C = 3, S = 4;
  std::vector<double> xv = randn<double>({n, C, S}, 81, 0.0, 2.0).to_vector();
  for (std::size_t i = 0; i < xv.size(); ++i) xv[i] += std::vector<double>{3.0, -1.0, 10.0}[(i / S) % C];  // channel offsets
  const auto X = tensor<double>::from_vector({n, C, S}, xv);
  const auto G = randn<double>({n, C, S}, 82);
  const std::vector<double> wv{1.5, -0.5, 2}, bv{0.1, 0.2, -0.3};
  const double eps = 1e-5, momentum = 0.1;
  for (bool relu : {false, true}) {
    INFO("fused relu: " << relu);
    auto run = [&](const tensor<double>& x_in, const tensor<double>& g,
                   const std::shared_ptr<ops::batch_norm_reducer>& reducer) {
      auto x = x_in.clone();
      x.set_requires_grad(true);
      auto w = tensor<double>::from_vector({C}, wv), b = tensor<double>::from_vector({C}, bv);
      w.set_requires_grad(true);
      b.set_requires_grad(true);
      auto rm = tensor<double>::from_vector({C}, {0.5, 0, -1}), rv = tensor<double>::from_vector({C}, {1, 2, 0.5});
      tensor<double> y;
      {
        ops::scoped_batch_norm_reducer scope(reducer);
        y = relu ? ops::batch_norm_relu(x, w, b, rm, rv, true, momentum, eps)
                 : ops::batch_norm(x, w, b, rm, rv, true, momentum, eps);
      }
      ops::sum(ops::mul(y, g)).backward();  // outside the scope: the reducer was captured in forward
      return std::vector<tensor<double>>{y.detach(), x.grad(), w.grad(), b.grad(), rm, rv};
    };
    const auto ref = run(X, G, nullptr);
    auto rows = [](const tensor<double>& t, index_t a, index_t e) { return ops::slice(t, 0, a, e).clone(); };
    auto max_diff = [](const std::vector<double>& a, const std::vector<double>& b) {
      REQUIRE(a.size() == b.size());
      double m = 0;
      for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]) / (1 + std::abs(b[i])));
      return m;
    };
    std::vector<double> dw_total(std::size_t(C), 0), db_total(std::size_t(C), 0);
    for (index_t first : {index_t(0), index_t(3)}) {
      const index_t last = first == 0 ? 3 : n, peer_first = first == 0 ? 3 : 0, peer_last = first == 0 ? n : 3;
      INFO("this process holds rows " << first << ".." << last - 1);
      auto peer = std::make_shared<testing::emulated_peer_reducer>(
          rows(X, peer_first, peer_last).to_vector(), rows(G, peer_first, peer_last).to_vector(), peer_last - peer_first,
          C, S, wv, bv, eps, relu);
      const auto par = run(rows(X, first, last), rows(G, first, last), peer);
      REQUIRE(peer->forward_calls() == 1);
      REQUIRE(peer->backward_calls() == 1);
      const double tol = 1e-12;
      CHECK(max_diff(par[0].to_vector(), rows(ref[0], first, last).to_vector()) <= tol);  // y
      CHECK(max_diff(par[1].to_vector(), rows(ref[1], first, last).to_vector()) <= tol);  // dx
      CHECK(max_diff(par[4].to_vector(), ref[4].to_vector()) <= tol);  // running mean
      CHECK(max_diff(par[5].to_vector(), ref[5].to_vector()) <= tol);  // running var: unbiased over n·S
      for (index_t ch = 0; ch < C; ++ch) {
        dw_total[std::size_t(ch)] += par[2].to_vector()[std::size_t(ch)];
        db_total[std::size_t(ch)] += par[3].to_vector()[std::size_t(ch)];
      }
      // not vacuous: this process's statistics alone give another output
      const auto alone = run(rows(X, first, last), rows(G, first, last), nullptr);
      CHECK(max_diff(alone[0].to_vector(), rows(ref[0], first, last).to_vector()) > 1e-2);
    }
    // dweight, dbias are each process's part (gradient averaging adds them): the parts add up.
    CHECK(max_diff(dw_total, ref[2].to_vector()) <= 1e-12);
    CHECK(max_diff(db_total, ref[3].to_vector()) <= 1e-12);
  }
}

TEST_CASE("sync-BN of CPU tensors refuses a reducer on device memory (NCCL) with a clear error", "[ops][norm][sync][error]") {
  struct device_reducer : ops::batch_norm_reducer {
    void all_reduce_sum(double*, std::size_t) override {}
    bool reduces_device_memory() const override { return true; }
  };
  ops::scoped_batch_norm_reducer scope(std::make_shared<device_reducer>());
  auto x = randn<float>({4, 2, 3}, 5);
  x.set_requires_grad(true);
  try {
    (void)ops::batch_norm(x, tensor<float>(), tensor<float>(), tensor<float>(), tensor<float>(), true);
    FAIL("no error");
  } catch (const config_error& e) {
    CHECK(std::string(e.what()).find("host memory") != std::string::npos);
  }
  no_grad guard;  // under no_grad (key encoders) the reducer is not used: no error
  CHECK_NOTHROW(ops::batch_norm(x, tensor<float>(), tensor<float>(), tensor<float>(), tensor<float>(), true));
}

TEST_CASE("batch_norm timing at r3d_18 layer1 shape", "[.bench]") {
  const shape_t shape = {8, 64, 8, 56, 56};
  const double mb = double(numel_of(shape)) * sizeof(float) / 1e6;
  auto x = randn<float>(shape, 1);
  auto g = randn<float>(shape, 2);
  auto w = tensor<float>::ones({64}).set_requires_grad(), b = tensor<float>::zeros({64}).set_requires_grad();
  auto rm = tensor<float>::zeros({64}), rv = tensor<float>::ones({64});
  x.set_requires_grad();
  auto time_ms = [](auto&& fn, int reps) {
    fn();  // warm-up (allocator cache, page faults)
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  // Achievable bandwidth: copy one activation (read + write).
  std::vector<float> dst(std::size_t(x.numel()));
  const double copy_ms = time_ms([&] { std::copy_n(x.data(), x.numel(), dst.data()); }, 5);
  const double scale_ms = time_ms([&] {
    const float* s = x.data();
    float* d = dst.data();
    const index_t n = x.numel();
#pragma omp parallel for schedule(static)
    for (index_t i = 0; i < n; ++i) d[i] = 2.f * s[i];
  }, 5);
  auto fwd = [&](bool fused) {
    autograd::no_grad guard;
    return fused ? ops::batch_norm_relu(x, w, b, rm, rv, true) : ops::relu(ops::batch_norm(x, w, b, rm, rv, true));
  };
  auto fwd_bwd = [&](bool fused) {
    x.zero_grad(), w.zero_grad(), b.zero_grad();
    auto y = fused ? ops::batch_norm_relu(x, w, b, rm, rv, true) : ops::relu(ops::batch_norm(x, w, b, rm, rv, true));
    y.backward(g);
  };
  auto bn_only = [&] {
    x.zero_grad(), w.zero_grad(), b.zero_grad();
    auto y = ops::batch_norm(x, w, b, rm, rv, true);
    y.backward(g);
  };
  // Kernels alone (no allocation, no autograd engine: run_backward clones the root gradient).
  namespace ck = backend::cpu_kernels;
  const ck::bn_dims d{shape[0], shape[1], numel_of(shape) / (shape[0] * shape[1])};
  auto y_buf = tensor<float>::empty(shape), dx_buf = tensor<float>::empty(shape);
  std::vector<double> mean(64), var(64), invstd(64);
  std::vector<float> dw(64), db(64), wv(64, 1.f), bv(64, 0.f);
  auto k_fwd = [&](bool relu) {
    ck::batch_norm_forward_train(x.data(), wv.data(), bv.data(), y_buf.data(), mean.data(), var.data(), d, 1e-5, relu);
    for (int c = 0; c < 64; ++c) invstd[std::size_t(c)] = 1 / std::sqrt(var[std::size_t(c)] + 1e-5);
  };
  auto k_bwd = [&](bool relu) {
    ck::batch_norm_backward(x.data(), relu ? y_buf.data() : nullptr, g.data(), mean.data(), invstd.data(), wv.data(),
                            dx_buf.data(), dw.data(), db.data(), d, true);
  };
  double kf = 1e30, kb = 1e30, kfr = 1e30, kbr = 1e30;
  for (int round = 0; round < 4; ++round) {
    kf = std::min(kf, time_ms([&] { k_fwd(false); }, 3));
    kb = std::min(kb, time_ms([&] { k_bwd(false); }, 3));
    kfr = std::min(kfr, time_ms([&] { k_fwd(true); }, 3));
    kbr = std::min(kbr, time_ms([&] { k_bwd(true); }, 3));
  }
  // Interleaved rounds, best of each: the CI machine is shared, so single runs are noisy.
  double bn_fb = 1e30, fwd_u = 1e30, fwd_f = 1e30, fb_u = 1e30, fb_f = 1e30;
  for (int round = 0; round < 4; ++round) {
    bn_fb = std::min(bn_fb, time_ms(bn_only, 3));
    fwd_u = std::min(fwd_u, time_ms([&] { fwd(false); }, 3));
    fwd_f = std::min(fwd_f, time_ms([&] { fwd(true); }, 3));
    fb_u = std::min(fb_u, time_ms([&] { fwd_bwd(false); }, 3));
    fb_f = std::min(fb_f, time_ms([&] { fwd_bwd(true); }, 3));
  }
  // Minimum traffic for BN fwd+bwd: fwd reads x, writes y; bwd reads dy, x, writes dx = 5 passes.
  const double bound_ms = 5 * mb / 10e3 * 1e3;
  std::printf("activation %s float = %.1f MB, %d OpenMP threads\n", to_string(shape).c_str(), mb,
              omp_get_max_threads());
  std::printf("std::copy (1 read + 1 write)      %8.2f ms  (%.1f GB/s)\n", copy_ms, 2 * mb / copy_ms);
  std::printf("omp scale (1 read + 1 write)      %8.2f ms  (%.1f GB/s)\n", scale_ms, 2 * mb / scale_ms);
  std::printf("op batch_norm fwd+bwd (autograd)   %8.2f ms  (5 passes = %.0f MB; bound at 10 GB/s %.1f ms)\n", bn_fb,
              5 * mb, bound_ms);
  std::printf("kernel fwd (train) / bwd          %8.2f / %.2f ms = %.2f ms (bound: fwd 2 passes %.1f, bwd 3 passes %.1f)\n",
              kf, kb, kf + kb, 2 * mb / 10e3 * 1e3, 3 * mb / 10e3 * 1e3);
  std::printf("kernel fwd / bwd, fused ReLU       %8.2f / %.2f ms = %.2f ms\n", kfr, kbr, kfr + kbr);
  std::printf("fwd  relu(batch_norm)             %8.2f ms\n", fwd_u);
  std::printf("fwd  batch_norm_relu (fused)      %8.2f ms\n", fwd_f);
  std::printf("fwd+bwd relu(batch_norm)          %8.2f ms\n", fb_u);
  std::printf("fwd+bwd batch_norm_relu (fused)   %8.2f ms\n", fb_f);
  CHECK(bn_fb > 0);
}
