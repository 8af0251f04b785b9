// Tests for include/mscl/backend/cpu/conv.hpp: both engines and both scalar types against a
// naive 7-loop reference (computed in long double), on small geometries with strides, paddings,
// odd sizes and the r3d_18 kernel shapes.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include <mscl/backend/cpu/conv.hpp>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace ck = mscl::backend::cpu_kernels;
using mscl::index_t;

namespace {

using ck::conv3d_geometry;

conv3d_geometry geo(index_t n, index_t ci, index_t t, index_t h, index_t w, index_t co, std::array<index_t, 3> k,
                    std::array<index_t, 3> s, std::array<index_t, 3> p) {
  conv3d_geometry g;
  g.n = n; g.c_in = ci; g.t = t; g.h = h; g.w = w; g.c_out = co;
  g.kt = k[0]; g.kh = k[1]; g.kw = k[2];
  g.st = s[0]; g.sh = s[1]; g.sw = s[2];
  g.pt = p[0]; g.ph = p[1]; g.pw = p[2];
  return g;
}

std::vector<double> random_vector(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<double> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// Naive reference. The seven loops over (co, ot, oh, ow) × (ci, kt, kh, kw) per batch item, written
// straight from the definition (no im2col), so it shares no code with either engine.
struct reference {
  const conv3d_geometry& g;
  index_t OT, OH, OW;
  explicit reference(const conv3d_geometry& geom) : g(geom), OT(g.out_t()), OH(g.out_h()), OW(g.out_w()) {}
  index_t xi(index_t b, index_t c, index_t t, index_t h, index_t w) const {
    return (((b * g.c_in + c) * g.t + t) * g.h + h) * g.w + w;
  }
  index_t wi(index_t o, index_t c, index_t t, index_t h, index_t w) const {
    return (((o * g.c_in + c) * g.kt + t) * g.kh + h) * g.kw + w;
  }
  index_t yi(index_t b, index_t o, index_t t, index_t h, index_t w) const {
    return (((b * g.c_out + o) * OT + t) * OH + h) * OW + w;
  }
  // Calls f(x index, w index, y index) for every multiply-add of the convolution.
  template <class F>
  void each(F&& f) const {
    for (index_t b = 0; b < g.n; ++b)
      for (index_t o = 0; o < g.c_out; ++o)
        for (index_t ot = 0; ot < OT; ++ot)
          for (index_t oh = 0; oh < OH; ++oh)
            for (index_t ow = 0; ow < OW; ++ow)
              for (index_t c = 0; c < g.c_in; ++c)
                for (index_t dt = 0; dt < g.kt; ++dt) {
                  const index_t it = ot * g.st - g.pt + dt;
                  if (it < 0 || it >= g.t) continue;
                  for (index_t dh = 0; dh < g.kh; ++dh) {
                    const index_t ih = oh * g.sh - g.ph + dh;
                    if (ih < 0 || ih >= g.h) continue;
                    for (index_t dw = 0; dw < g.kw; ++dw) {
                      const index_t iw = ow * g.sw - g.pw + dw;
                      if (iw < 0 || iw >= g.w) continue;
                      f(xi(b, c, it, ih, iw), wi(o, c, dt, dh, dw), yi(b, o, ot, oh, ow));
                    }
                  }
                }
  }
  std::vector<double> forward(const std::vector<double>& x, const std::vector<double>& w,
                              const std::vector<double>* bias) const {
    std::vector<long double> y(g.y_numel(), 0.0L);
    each([&](index_t i, index_t j, index_t k) { y[k] += (long double)x[i] * w[j]; });
    if (bias) {
      const index_t P = OT * OH * OW;
      for (index_t k = 0; k < (index_t)y.size(); ++k) y[k] += (*bias)[(k / P) % g.c_out];
    }
    return std::vector<double>(y.begin(), y.end());
  }
  std::vector<double> backward_data(const std::vector<double>& gy, const std::vector<double>& w) const {
    std::vector<long double> gx(g.x_numel(), 0.0L);
    each([&](index_t i, index_t j, index_t k) { gx[i] += (long double)gy[k] * w[j]; });
    return std::vector<double>(gx.begin(), gx.end());
  }
  std::vector<double> backward_weight(const std::vector<double>& x, const std::vector<double>& gy) const {
    std::vector<long double> gw(g.w_numel(), 0.0L);
    each([&](index_t i, index_t j, index_t k) { gw[j] += (long double)gy[k] * x[i]; });
    return std::vector<double>(gw.begin(), gw.end());
  }
  std::vector<double> backward_bias(const std::vector<double>& gy) const {
    std::vector<long double> gb(g.c_out, 0.0L);
    const index_t P = OT * OH * OW;
    for (index_t k = 0; k < (index_t)gy.size(); ++k) gb[(k / P) % g.c_out] += gy[k];
    return std::vector<double>(gb.begin(), gb.end());
  }
};

// max |a - b| relative to max |ref| (a scale-aware relative error that does not blow up on entries
// that happen to be near zero).
template <class T>
double rel_error(const std::vector<T>& got, const std::vector<double>& ref) {
  REQUIRE(got.size() == ref.size());
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    diff = std::max(diff, std::abs(double(got[i]) - ref[i]));
    scale = std::max(scale, std::abs(ref[i]));
  }
  return diff / std::max(scale, 1e-300);
}

template <class T>
void check_geometry(const conv3d_geometry& g, ck::conv_engine engine, double tol) {
  INFO("geometry " << g.to_string() << ", T = " << (sizeof(T) == 4 ? "float" : "double") << ", engine "
                   << (engine == ck::conv_engine::portable ? "portable" : "onednn"));
  ck::set_conv_engine(engine);
  const reference ref(g);
  const auto x = random_vector(g.x_numel(), 1), w = random_vector(g.w_numel(), 2),
             b = random_vector(g.c_out, 3), gy = random_vector(g.y_numel(), 4);
  const auto xt = cast<T>(x), wt = cast<T>(w), bt = cast<T>(b), gyt = cast<T>(gy);

  // Outputs start as NaN so that any element a kernel forgets to write fails the comparison.
  const T nan = std::numeric_limits<T>::quiet_NaN();
  std::vector<T> y(g.y_numel(), nan);
  ck::conv3d_forward<T>(g, xt.data(), wt.data(), nullptr, y.data());
  CHECK(rel_error(y, ref.forward(x, w, nullptr)) < tol);

  std::fill(y.begin(), y.end(), nan);
  ck::conv3d_forward<T>(g, xt.data(), wt.data(), bt.data(), y.data());
  CHECK(rel_error(y, ref.forward(x, w, &b)) < tol);

  std::vector<T> gx(g.x_numel(), nan);
  ck::conv3d_backward_data<T>(g, gyt.data(), wt.data(), gx.data());
  CHECK(rel_error(gx, ref.backward_data(gy, w)) < tol);

  std::vector<T> gw(g.w_numel(), nan), gb(g.c_out, nan);
  ck::conv3d_backward_weight<T>(g, xt.data(), gyt.data(), gw.data(), gb.data());
  CHECK(rel_error(gw, ref.backward_weight(x, gy)) < tol);
  CHECK(rel_error(gb, ref.backward_bias(gy)) < tol);

  std::fill(gw.begin(), gw.end(), nan);
  ck::conv3d_backward_weight<T>(g, xt.data(), gyt.data(), gw.data(), nullptr);
  CHECK(rel_error(gw, ref.backward_weight(x, gy)) < tol);

  // A second call hits the cached primitive / workspaces and must give the same answer.
  std::vector<T> y2(g.y_numel(), nan);
  ck::conv3d_forward<T>(g, xt.data(), wt.data(), bt.data(), y2.data());
  ck::conv3d_forward<T>(g, xt.data(), wt.data(), bt.data(), y2.data());
  CHECK(rel_error(y2, ref.forward(x, w, &b)) < tol);
}

std::vector<conv3d_geometry> small_geometries() {
  return {
      // r3d_18 stem pattern: k(3,7,7) s(1,2,2) p(1,3,3), 3 input channels, odd sizes
      geo(1, 3, 4, 13, 11, 5, {3, 7, 7}, {1, 2, 2}, {1, 3, 3}),
      geo(2, 3, 3, 9, 10, 4, {3, 7, 7}, {1, 2, 2}, {1, 3, 3}),
      // basic block 3×3×3, stride 1, pad 1
      geo(2, 5, 3, 6, 7, 6, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}),
      // first block of a layer: stride (2,2,2)
      geo(1, 4, 5, 7, 9, 3, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}),
      geo(2, 4, 4, 8, 8, 6, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}),
      // downsample 1×1×1 stride 2 and plain pointwise 1×1×1 stride 1 (the no-im2col path)
      geo(2, 6, 5, 7, 9, 4, {1, 1, 1}, {2, 2, 2}, {0, 0, 0}),
      geo(2, 6, 3, 5, 7, 4, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}),
      // (1,3,3) kernels (conv2d-like inside 3D, and R(2+1)D's spatial part)
      geo(1, 3, 3, 9, 8, 4, {1, 3, 3}, {1, 2, 2}, {0, 1, 1}),
      // conv2d: t = kt = 1 (oneDNN runs 2D primitives here)
      geo(2, 3, 1, 11, 9, 5, {1, 3, 3}, {1, 1, 1}, {0, 1, 1}),
      geo(1, 2, 1, 15, 13, 4, {1, 7, 7}, {1, 2, 2}, {0, 3, 3}),
      // asymmetric strides/kernels/paddings, padding that leaves a partial last window
      geo(1, 2, 6, 9, 10, 3, {2, 3, 4}, {2, 1, 3}, {1, 2, 0}),
      geo(2, 3, 4, 4, 4, 2, {3, 3, 3}, {1, 1, 1}, {2, 2, 2}),
      // kernel as large as the padded input (1×1×1 output)
      geo(1, 2, 3, 3, 3, 2, {3, 3, 3}, {1, 1, 1}, {0, 0, 0}),
  };
}

}  // namespace

TEST_CASE("conv3d kernels match the naive reference (double, portable and onednn switch)", "[backend][conv]") {
  // oneDNN has no f64 convolution: with engine onednn, double must still be served (by portable).
  for (auto engine : {ck::conv_engine::portable, ck::conv_engine::onednn})
    for (const auto& g : small_geometries()) check_geometry<double>(g, engine, 1e-10);
  ck::set_conv_engine(ck::conv_engine::automatic);
}

TEST_CASE("conv3d kernels match the naive reference (float, both engines)", "[backend][conv]") {
  for (auto engine : {ck::conv_engine::portable, ck::conv_engine::onednn, ck::conv_engine::automatic})
    for (const auto& g : small_geometries()) check_geometry<float>(g, engine, 1e-4);
  ck::set_conv_engine(ck::conv_engine::automatic);
}

TEST_CASE("conv3d portable threading strategies agree", "[backend][conv]") {
  // The forward pass has two parallel schedules (shared im2col + split output channels, or a task loop
  // over (batch, chunk)); force each so both are covered whatever the thread count.
  const auto g = geo(4, 3, 4, 13, 11, 5, {3, 7, 7}, {1, 2, 2}, {1, 3, 3});
  const reference ref(g);
  const auto x = random_vector(g.x_numel(), 5), w = random_vector(g.w_numel(), 6);
  const auto expect = ref.forward(x, w, nullptr);
  ck::set_conv_engine(ck::conv_engine::portable);
  for (int s : {1, 2}) {
    ck::portable::forward_strategy() = s;
    std::vector<double> y(g.y_numel(), std::nan(""));
    ck::conv3d_forward<double>(g, x.data(), w.data(), nullptr, y.data());
    INFO("strategy " << s);
    CHECK(rel_error(y, expect) < 1e-10);
  }
  ck::portable::forward_strategy() = 0;
  ck::set_conv_engine(ck::conv_engine::automatic);
}

TEST_CASE("conv3d portable path with chunked im2col", "[backend][conv]") {
  // Large enough that K·rows exceeds one im2col chunk, so several chunks per batch item are used
  // (including a partial last chunk) in forward, grad-input and grad-weight.
  const auto g = geo(1, 64, 3, 23, 21, 4, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
  const auto p = ck::portable::make_plan(g);
  REQUIRE(p.chunks > 1);
  REQUIRE(p.rows % p.rows_per_chunk != 0);
  // Threads own disjoint rows of a shared workspace while working on chunks of different widths
  // (the partial last chunk); odd thread counts exposed a race here once, so try several.
#if defined(_OPENMP)
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    INFO("threads " << threads);
    check_geometry<double>(g, ck::conv_engine::portable, 1e-10);
    check_geometry<float>(g, ck::conv_engine::portable, 1e-4);
  }
  omp_set_num_threads(saved);
#else
  check_geometry<double>(g, ck::conv_engine::portable, 1e-10);
#endif
  ck::set_conv_engine(ck::conv_engine::automatic);
}

TEST_CASE("conv3d engine switch", "[backend][conv]") {
  const auto before = ck::get_conv_engine();
  ck::set_conv_engine(ck::conv_engine::portable);
  CHECK(ck::get_conv_engine() == ck::conv_engine::portable);
  ck::set_conv_engine(ck::conv_engine::onednn);
  CHECK(ck::get_conv_engine() == ck::conv_engine::onednn);
  ck::set_conv_engine(before);
#if MSCL_WITH_ONEDNN
  // The float path really reaches oneDNN (its primitive cache knows an implementation name).
  const auto g = geo(1, 16, 4, 8, 8, 16, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
  const std::string impl = ck::onednn::implementation(g, ck::onednn::op_kind::forward, false);
  INFO("oneDNN implementation: " << impl);
  CHECK(!impl.empty());
  CHECK(ck::onednn_available());
#endif
}

TEST_CASE("conv3d geometry validation", "[backend][conv]") {
  const auto good = geo(1, 3, 4, 8, 8, 4, {3, 3, 3}, {1, 1, 1}, {1, 1, 1});
  CHECK_NOTHROW(good.validate("test"));
  CHECK(good.out_t() == 4);
  CHECK(good.out_h() == 8);
  CHECK(geo(1, 3, 8, 112, 112, 64, {3, 7, 7}, {1, 2, 2}, {1, 3, 3}).out_h() == 56);
  CHECK(geo(1, 64, 8, 56, 56, 128, {1, 1, 1}, {2, 2, 2}, {0, 0, 0}).out_t() == 4);

  std::vector<float> x(1024), w(1024), y(1024);
  auto bad = good;
  bad.c_in = 0;
  CHECK_THROWS_AS(ck::conv3d_forward<float>(bad, x.data(), w.data(), nullptr, y.data()), mscl::shape_error);
  bad = good;
  bad.sh = 0;
  CHECK_THROWS_AS(ck::conv3d_backward_data<float>(bad, y.data(), w.data(), x.data()), mscl::shape_error);
  bad = good;
  bad.pw = -1;
  CHECK_THROWS_AS(ck::conv3d_backward_weight<double>(bad, nullptr, nullptr, nullptr, nullptr), mscl::shape_error);
  bad = good;
  bad.kh = 11;  // larger than the padded input: empty output
  CHECK(bad.out_h() <= 0);
  CHECK_THROWS_AS(ck::conv3d_forward<float>(bad, x.data(), w.data(), nullptr, y.data()), mscl::shape_error);
  // The message names the function and the geometry.
  try {
    ck::conv3d_forward<float>(bad, x.data(), w.data(), nullptr, y.data());
  } catch (const mscl::shape_error& e) {
    const std::string m = e.what();
    CHECK(m.find("conv3d_forward") != std::string::npos);
    CHECK(m.find("w=[4, 3, 3, 11, 3]") != std::string::npos);
  }
  // Null buffers are a value_error, not a crash.
  CHECK_THROWS_AS(ck::conv3d_forward<float>(good, nullptr, w.data(), nullptr, y.data()), mscl::value_error);
}
