// Tests for ops/pool.hpp and backend/cpu/pool.hpp: forward values and max-pool gradients against
// naive per-output loops (written independently of the row-sweep kernels), finite-difference
// gradients in double for every op with stride/padding/overlap, agreement with PyTorch (when
// /usr/bin/python3 has torch), and bad input.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <mscl/core/rng.hpp>
#include <mscl/ops/pool.hpp>
#include <mscl/testing/gradient_check.hpp>

#include "torch_reference.hpp"

using namespace mscl;
using namespace mscl_test;
using ops::pool2d_size;
using ops::pool3d_size;

namespace {

template <class T>
tensor<T> randn(const shape_t& shape, std::uint64_t seed) {
  std::vector<double> v(std::size_t(numel_of(shape)));
  generator gen(seed);
  gen.fill_normal(v.data(), index_t(v.size()), 0.0, 1.0);
  return tensor<T>::from_vector(shape, std::vector<T>(v.begin(), v.end()));
}

/// One pooling configuration; 2-D configs have t extents of 1.
struct cfg {
  pool3d_size k, s, p;
};

enum class kind { max, avg_incl, avg_excl };

/// Naive pooling of a [n, c, t, h, w] tensor, straight from PyTorch's definition: for every
/// output, loop over the window in (t, h, w) order, skip positions outside the input.
/// Returns values and, for max, the flat input index (within the plane) of the first maximum.
struct naive_result {
  std::vector<double> values;
  std::vector<index_t> argmax;
  shape_t shape;
};
naive_result naive_pool(const std::vector<double>& x, const shape_t& in, const cfg& c, kind kd) {
  const index_t n = in[0], ch = in[1], it = in[2], ih = in[3], iw = in[4];
  const index_t ot = (it + 2 * c.p[0] - c.k[0]) / c.s[0] + 1;
  const index_t oh = (ih + 2 * c.p[1] - c.k[1]) / c.s[1] + 1;
  const index_t ow = (iw + 2 * c.p[2] - c.k[2]) / c.s[2] + 1;
  naive_result r;
  r.shape = {n, ch, ot, oh, ow};
  for (index_t q = 0; q < n * ch; ++q)
    for (index_t a = 0; a < ot; ++a)
      for (index_t bb = 0; bb < oh; ++bb)
        for (index_t cc = 0; cc < ow; ++cc) {
          double best = -std::numeric_limits<double>::infinity(), sum = 0;
          index_t arg = -1, inside = 0;
          for (index_t dt = 0; dt < c.k[0]; ++dt)
            for (index_t dh = 0; dh < c.k[1]; ++dh)
              for (index_t dw = 0; dw < c.k[2]; ++dw) {
                const index_t t = a * c.s[0] - c.p[0] + dt, h = bb * c.s[1] - c.p[1] + dh,
                              w = cc * c.s[2] - c.p[2] + dw;
                if (t < 0 || t >= it || h < 0 || h >= ih || w < 0 || w >= iw) continue;
                const index_t j = (t * ih + h) * iw + w;
                const double v = x[std::size_t(q * it * ih * iw + j)];
                if (arg < 0 || v > best) best = v, arg = j;
                sum += v;
                ++inside;
              }
          if (kd == kind::max) {
            r.values.push_back(best);
            r.argmax.push_back(arg);
          } else {
            // Floor mode: a window never reaches past in + pad, so the padded count is the kernel volume.
            const index_t div = kd == kind::avg_incl ? c.k[0] * c.k[1] * c.k[2] : inside;
            r.values.push_back(sum / double(div));
          }
        }
  return r;
}

naive_result naive_adaptive(const std::vector<double>& x, const shape_t& in, const pool3d_size& o) {
  const index_t n = in[0], ch = in[1], it = in[2], ih = in[3], iw = in[4];
  auto start = [](index_t i, index_t a, index_t b) { return index_t(std::floor(double(i) * a / b)); };
  auto end = [](index_t i, index_t a, index_t b) { return index_t(std::ceil(double(i + 1) * a / b)); };
  naive_result r;
  r.shape = {n, ch, o[0], o[1], o[2]};
  for (index_t q = 0; q < n * ch; ++q)
    for (index_t a = 0; a < o[0]; ++a)
      for (index_t b = 0; b < o[1]; ++b)
        for (index_t c = 0; c < o[2]; ++c) {
          double sum = 0;
          index_t cnt = 0;
          for (index_t t = start(a, it, o[0]); t < end(a, it, o[0]); ++t)
            for (index_t h = start(b, ih, o[1]); h < end(b, ih, o[1]); ++h)
              for (index_t w = start(c, iw, o[2]); w < end(c, iw, o[2]); ++w) {
                sum += x[std::size_t(((q * it + t) * ih + h) * iw + w)];
                ++cnt;
              }
          r.values.push_back(sum / double(cnt));
        }
  return r;
}


shape_t as5d(const shape_t& s4) { return {s4[0], s4[1], 1, s4[2], s4[3]}; }

// Overlapping windows, padding, unequal strides, kernels that do not tile the input.
const std::vector<cfg> cfgs3d = {
    {{2, 2, 2}, {2, 2, 2}, {0, 0, 0}}, {{3, 3, 3}, {1, 1, 1}, {1, 1, 1}}, {{1, 3, 3}, {1, 2, 2}, {0, 1, 1}},
    {{3, 2, 3}, {2, 1, 2}, {1, 1, 0}}, {{2, 3, 2}, {1, 3, 1}, {1, 0, 1}}, {{3, 3, 3}, {2, 2, 2}, {1, 1, 1}}};
const std::vector<cfg> cfgs2d = {{{1, 3, 3}, {1, 2, 2}, {0, 1, 1}},
                                 {{1, 2, 2}, {1, 2, 2}, {0, 0, 0}},
                                 {{1, 3, 2}, {1, 1, 2}, {0, 1, 1}},
                                 {{1, 4, 4}, {1, 3, 1}, {0, 2, 0}}};


template <class T>
tensor<T> run_pool(const tensor<T>& x, const cfg& c, kind kd, bool two_d) {
  if (two_d) {
    const pool2d_size k{c.k[1], c.k[2]}, s{c.s[1], c.s[2]}, p{c.p[1], c.p[2]};
    if (kd == kind::max) return ops::max_pool2d(x, k, s, p);
    return ops::avg_pool2d(x, k, s, p, kd == kind::avg_incl);
  }
  if (kd == kind::max) return ops::max_pool3d(x, c.k, c.s, c.p);
  return ops::avg_pool3d(x, c.k, c.s, c.p, kd == kind::avg_incl);
}

}  // namespace

// ====================================================================== forward values

TEMPLATE_TEST_CASE("max/avg pooling forward matches naive loops (3-D and 2-D)", "[ops][pool]", float, double) {
  using T = TestType;
  const double tol = std::is_same_v<T, float> ? 1e-6 : 1e-14;
  for (bool two_d : {false, true})
    for (const auto& c : two_d ? cfgs2d : cfgs3d)
      for (kind kd : {kind::max, kind::avg_incl, kind::avg_excl}) {
        const shape_t shape = two_d ? shape_t{2, 3, 9, 10} : shape_t{2, 3, 5, 7, 8};
        CAPTURE(two_d, int(kd), ops::detail::pool_size_string(c.k), ops::detail::pool_size_string(c.s),
                ops::detail::pool_size_string(c.p));
        const auto x = randn<T>(shape, 7);
        const auto y = run_pool(x, c, kd, two_d);
        const auto xv = x.to_vector();
        const auto ref = naive_pool(std::vector<double>(xv.begin(), xv.end()), two_d ? as5d(shape) : shape, c, kd);
        const shape_t expect = two_d ? shape_t{ref.shape[0], ref.shape[1], ref.shape[3], ref.shape[4]} : ref.shape;
        REQUIRE(y.shape() == expect);
        CHECK(max_abs_diff(y.to_vector(), ref.values) <= tol);
      }
}

TEST_CASE("max pooling backward routes each gradient to the first maximum, ties included", "[ops][pool]") {
  // Small integers make ties frequent; the naive argmax takes the first in (t, h, w) order.
  const shape_t shape = {2, 2, 4, 6, 5};
  auto xv = randn<double>(shape, 3).to_vector();
  for (auto& v : xv) v = std::round(v);
  for (const auto& c : cfgs3d) {
    CAPTURE(ops::detail::pool_size_string(c.k), ops::detail::pool_size_string(c.s));
    auto x = tensor<double>::from_vector(shape, xv).set_requires_grad();
    const auto y = ops::max_pool3d(x, c.k, c.s, c.p);
    const auto g = randn<double>(y.shape(), 4);
    y.backward(g);
    const auto ref = naive_pool(xv, shape, c, kind::max);
    std::vector<double> dx(xv.size(), 0.0);
    const index_t plane = shape[2] * shape[3] * shape[4], oplane = y.numel() / (shape[0] * shape[1]);
    const auto gv = g.to_vector();
    for (std::size_t j = 0; j < gv.size(); ++j)
      dx[std::size_t(index_t(j) / oplane * plane + ref.argmax[j])] += gv[j];
    CHECK(max_abs_diff(x.grad().to_vector(), dx) < 1e-14);
  }
}

TEST_CASE("max pooling propagates NaN like PyTorch", "[ops][pool]") {
  auto x = tensor<double>::from_vector({1, 1, 1, 2, 2}, {1.0, std::nan(""), 3.0, 2.0});
  const auto y = ops::max_pool3d(x, {1, 2, 2});
  CHECK(std::isnan(y.item()));
}

TEMPLATE_TEST_CASE("adaptive and global average pooling match naive loops", "[ops][pool]", float, double) {
  using T = TestType;
  const double tol = std::is_same_v<T, float> ? 1e-6 : 1e-14;
  const shape_t shape = {2, 3, 5, 7, 6};
  const auto x = randn<T>(shape, 8);
  const auto xv0 = x.to_vector();
  const std::vector<double> xv(xv0.begin(), xv0.end());
  // Divisible, non-divisible (overlapping windows), output larger than input, 1x1x1.
  for (const pool3d_size& o : {pool3d_size{5, 7, 6}, pool3d_size{2, 3, 4}, pool3d_size{3, 4, 4},
                               pool3d_size{7, 9, 8}, pool3d_size{1, 1, 1}}) {
    CAPTURE(ops::detail::pool_size_string(o));
    const auto y = ops::adaptive_avg_pool3d(x, o);
    const auto ref = naive_adaptive(xv, shape, o);
    REQUIRE(y.shape() == ref.shape);
    CHECK(max_abs_diff(y.to_vector(), ref.values) <= tol);
  }
  const auto x2 = randn<T>({2, 3, 7, 6}, 9);
  const auto x2v0 = x2.to_vector();
  const auto y2 = ops::adaptive_avg_pool2d(x2, {3, 4});
  const auto ref2 = naive_adaptive(std::vector<double>(x2v0.begin(), x2v0.end()), {2, 3, 1, 7, 6}, {1, 3, 4});
  REQUIRE(y2.shape() == shape_t{2, 3, 3, 4});
  CHECK(max_abs_diff(y2.to_vector(), ref2.values) <= tol);

  const auto g = ops::global_avg_pool(x);
  REQUIRE(g.shape() == shape_t{2, 3});
  CHECK(max_abs_diff(g.to_vector(), naive_adaptive(xv, shape, {1, 1, 1}).values) <= tol);
  const auto g4 = ops::global_avg_pool(x2);
  CHECK(max_abs_diff(g4.to_vector(), naive_adaptive(std::vector<double>(x2v0.begin(), x2v0.end()), {2, 3, 1, 7, 6},
                                                    {1, 1, 1})
                                         .values) <= tol);
}

TEST_CASE("pooling accepts non-contiguous input", "[ops][pool]") {
  const auto base = randn<double>({2, 3, 4, 6, 10}, 10);
  // x[..., ::2]
  const auto x = base.view_as_strided({2, 3, 4, 6, 5}, {720, 240, 60, 10, 2}, 0);
  REQUIRE_FALSE(x.is_contiguous());
  CHECK(ops::max_pool3d(x, {2, 3, 3}, {1, 2, 2}, {1, 1, 1}).to_vector() ==
        ops::max_pool3d(x.clone(), {2, 3, 3}, {1, 2, 2}, {1, 1, 1}).to_vector());
  CHECK(ops::global_avg_pool(x).to_vector() == ops::global_avg_pool(x.clone()).to_vector());
}

// ====================================================================== gradients

TEST_CASE("pooling gradients pass finite-difference checks", "[ops][pool][grad]") {
  testing::gradient_check_options opt;
  opt.max_probes_per_input = 200;
  for (bool two_d : {false, true})
    for (const auto& c : two_d ? cfgs2d : cfgs3d)
      for (kind kd : {kind::max, kind::avg_incl, kind::avg_excl}) {
        CAPTURE(two_d, int(kd), ops::detail::pool_size_string(c.k), ops::detail::pool_size_string(c.s),
                ops::detail::pool_size_string(c.p));
        const shape_t shape = two_d ? shape_t{2, 2, 7, 6} : shape_t{1, 2, 4, 5, 6};
        auto f = [&](const std::vector<tensor<double>>& in) { return run_pool(in[0], c, kd, two_d); };
        const auto r = testing::check_gradients<cpu>(f, {randn<double>(shape, 20)}, opt);
        INFO(r.report);
        CHECK(r.ok);
      }
  for (const pool3d_size& o : {pool3d_size{2, 3, 4}, pool3d_size{3, 4, 4}, pool3d_size{6, 6, 7}, pool3d_size{1, 1, 1}}) {
    CAPTURE(ops::detail::pool_size_string(o));
    auto f = [&](const std::vector<tensor<double>>& in) { return ops::adaptive_avg_pool3d(in[0], o); };
    const auto r = testing::check_gradients<cpu>(f, {randn<double>({1, 2, 4, 5, 6}, 21)}, opt);
    INFO(r.report);
    CHECK(r.ok);
  }
  {
    auto f = [](const std::vector<tensor<double>>& in) { return ops::adaptive_avg_pool2d(in[0], {4, 3}); };
    const auto r = testing::check_gradients<cpu>(f, {randn<double>({2, 2, 7, 5}, 22)}, opt);
    INFO(r.report);
    CHECK(r.ok);
  }
  for (const shape_t& shape : {shape_t{2, 3, 4}, shape_t{2, 3, 4, 5}, shape_t{2, 3, 2, 3, 4}}) {
    CAPTURE(to_string(shape));
    auto f = [](const std::vector<tensor<double>>& in) { return ops::global_avg_pool(in[0]); };
    const auto r = testing::check_gradients<cpu>(f, {randn<double>(shape, 23)}, opt);
    INFO(r.report);
    CHECK(r.ok);
  }
}

// ====================================================================== PyTorch

TEST_CASE("pooling matches PyTorch (values and gradients)", "[ops][pool][torch]") {
  if (!torch_available()) {
    WARN("skipped: /usr/bin/python3 cannot import torch");
    return;
  }
  std::vector<torch_case> cases;
  // Runs `fn` on x with gradient dy and records a case comparing out and grad_x.
  auto add_case = [&](const std::string& op, nlohmann::json params, tensor<double> x, auto&& fn) {
    auto& tc = cases.emplace_back(op + "_" + std::to_string(cases.size()), op, std::move(params));
    tc.input("x", x);
    x = x.clone().set_requires_grad();
    const auto y = fn(x);
    const auto dy = randn<double>(y.shape(), 40 + cases.size());
    y.backward(dy);
    tc.input("dy", dy);
    tc.expect("out", y);
    tc.expect("grad_x", x.grad());
  };
  for (bool two_d : {false, true})
    for (const auto& c : two_d ? cfgs2d : cfgs3d)
      for (kind kd : {kind::max, kind::avg_incl, kind::avg_excl}) {
        const shape_t shape = two_d ? shape_t{2, 3, 9, 10} : shape_t{2, 3, 5, 7, 8};
        auto x = randn<double>(shape, 30 + cases.size());
        // Rounded values create ties, so PyTorch's argmax choice is tested too.
        if (kd == kind::max) {
          auto v = x.to_vector();
          for (auto& e : v) e = std::round(2 * e);
          x = tensor<double>::from_vector(shape, v);
        }
        const char* op = kd == kind::max ? (two_d ? "max_pool2d" : "max_pool3d") : (two_d ? "avg_pool2d" : "avg_pool3d");
        nlohmann::json params;
        if (two_d)
          params = {{"kernel", {c.k[1], c.k[2]}}, {"stride", {c.s[1], c.s[2]}}, {"padding", {c.p[1], c.p[2]}}};
        else
          params = {{"kernel", c.k}, {"stride", c.s}, {"padding", c.p}};
        params["count_include_pad"] = kd == kind::avg_incl;
        add_case(op, params, x, [&](const tensor<double>& in) { return run_pool(in, c, kd, two_d); });
      }
  for (const pool3d_size& o : {pool3d_size{2, 3, 4}, pool3d_size{3, 5, 4}, pool3d_size{7, 9, 8}})
    add_case("adaptive_avg_pool3d", {{"output_size", o}}, randn<double>({2, 3, 5, 7, 6}, 50),
             [&](const tensor<double>& in) { return ops::adaptive_avg_pool3d(in, o); });
  add_case("adaptive_avg_pool2d", {{"output_size", {3, 2}}}, randn<double>({2, 3, 7, 5}, 52),
           [&](const tensor<double>& in) { return ops::adaptive_avg_pool2d(in, {3, 2}); });
  add_case("global_avg_pool", nlohmann::json::object(), randn<double>({2, 4, 3, 5, 6}, 54),
           [&](const tensor<double>& in) { return ops::global_avg_pool(in); });
  check_against_torch(cases, 1e-14);
}

// ====================================================================== bad input

TEST_CASE("pooling rejects bad input with messages naming the shapes", "[ops][pool][error]") {
  const auto x5 = tensor<float>::ones({1, 2, 3, 4, 4});
  const auto x4 = tensor<float>::ones({1, 2, 4, 4});
  CHECK_THROWS_AS(ops::max_pool3d(x4, {1, 2, 2}), shape_error);
  CHECK_THROWS_WITH(ops::max_pool3d(x4, {1, 2, 2}), Catch::Contains("rank 5") && Catch::Contains("[1, 2, 4, 4]"));
  CHECK_THROWS_WITH(ops::avg_pool2d(x5, {2, 2}), Catch::Contains("rank 4") && Catch::Contains("[1, 2, 3, 4, 4]"));
  CHECK_THROWS_AS(ops::adaptive_avg_pool3d(x4, {1, 1, 1}), shape_error);
  CHECK_THROWS_AS(ops::adaptive_avg_pool2d(x5, {1, 1}), shape_error);
  CHECK_THROWS_AS(ops::global_avg_pool(tensor<float>::ones({2, 3})), shape_error);
  CHECK_THROWS_WITH(ops::global_avg_pool(tensor<float>::ones({2, 3})), Catch::Contains("[2, 3]"));
  // Empty tensors.
  CHECK_THROWS_WITH(ops::max_pool3d(tensor<float>::ones({0, 2, 3, 4, 4}), {1, 2, 2}),
                    Catch::Contains("empty") && Catch::Contains("[0, 2, 3, 4, 4]"));
  CHECK_THROWS_AS(ops::global_avg_pool(tensor<float>::ones({2, 3, 0})), shape_error);
  CHECK_THROWS_AS(ops::adaptive_avg_pool2d(tensor<float>::ones({1, 1, 0, 3}), {1, 1}), shape_error);
  // Bad windows.
  CHECK_THROWS_AS(ops::max_pool3d(x5, {1, 3, 3}, {1, 1, 1}, {0, 2, 1}), value_error);  // pad > k/2
  CHECK_THROWS_AS(ops::avg_pool3d(x5, {0, 2, 2}), value_error);
  CHECK_THROWS_AS(ops::max_pool2d(x4, {2, 2}, {0, 1}), value_error);
  CHECK_THROWS_AS(ops::max_pool3d(x5, {4, 2, 2}), shape_error);  // window larger than input
  CHECK_THROWS_WITH(ops::max_pool3d(x5, {4, 2, 2}), Catch::Contains("[1, 2, 3, 4, 4]"));
  CHECK_THROWS_AS(ops::adaptive_avg_pool3d(x5, {0, 1, 1}), value_error);
}
