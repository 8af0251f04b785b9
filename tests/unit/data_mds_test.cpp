// Tests for include/mscl/data/mds.hpp and include/mscl/io/flo.hpp.
//
// Oracles: hand-computed Sobel on ramps and bilinear upsampling on a 2x2 grid (PyTorch's
// align_corners=false values), a naive padded 3x3 correlation, synthetic flow videos whose answer
// is known (static / constant-motion / direction-changing segments), numpy's median rules written
// out by hand, and an independent numpy+torch implementation of the official tool
// (tests/unit/data_mds_reference.py, run when /usr/bin/python3 has numpy and torch) fed the same
// flows through .flo files.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "mscl/data/mds.hpp"
#include "mscl/io/flo.hpp"

namespace fs = std::filesystem;
using mscl::generator;
using mscl::index_t;
using namespace mscl::data;
using V = std::vector<index_t>;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::path(MSCL_BINARY_DIR) / "data_mds_tmp" / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream o(p, std::ios::binary);
  o.write(bytes.data(), std::streamsize(bytes.size()));
}

// Square patch [r0, r1) x [c0, c1) moving with (du, dv); zero flow elsewhere.
flow_field patch_flow(int h, int w, float du, float dv, int r0 = 10, int r1 = 30, int c0 = 12, int c1 = 34) {
  flow_field f(h, w);
  for (int y = r0; y < r1; ++y)
    for (int x = c0; x < c1; ++x) {
      f.u[std::size_t(y) * w + x] = du;
      f.v[std::size_t(y) * w + x] = dv;
    }
  return f;
}

// Naive scipy-style Sobel: pad by reflection, full 3x3 correlation with the outer-product kernel.
std::vector<double> naive_sobel(const std::vector<float>& in, int h, int w, int axis, bool reflect101) {
  auto at = [&](int y, int x) {
    auto r = [&](int i, int n) {
      if (i < 0) return reflect101 ? (n == 1 ? 0 : 1) : 0;
      if (i >= n) return reflect101 ? (n == 1 ? 0 : n - 2) : n - 1;
      return i;
    };
    return double(in[std::size_t(r(y, h)) * w + r(x, w)]);
  };
  const double deriv[3] = {-1, 0, 1}, smooth[3] = {1, 2, 1};
  std::vector<double> out(std::size_t(h) * w);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      double acc = 0;
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const double k = axis == 1 ? smooth[dy + 1] * deriv[dx + 1] : deriv[dy + 1] * smooth[dx + 1];
          acc += k * at(y + dy, x + dx);
        }
      out[std::size_t(y) * w + x] = acc;
    }
  return out;
}

}  // namespace

TEST_CASE("Sobel on a ramp and against a naive padded correlation", "[data][mds]") {
  const int h = 6, w = 7;
  std::vector<float> ramp(h * w);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) ramp[y * w + x] = 3.f * x + 5.f * y;
  const auto gx = sobel3x3(ramp.data(), h, w, 1);
  const auto gy = sobel3x3(ramp.data(), h, w, 0);
  // Interior: (1+2+1) * (u(x+1) - u(x-1)) = 4 * 6 = 24 and 4 * 10 = 40. Border with "dcba|abcd":
  // the missing neighbour repeats the edge, so the difference halves: 12 and 20.
  CHECK(gx[2 * w + 3] == 24.f);
  CHECK(gy[2 * w + 3] == 40.f);
  CHECK(gx[2 * w + 0] == 12.f);
  CHECK(gx[2 * w + 6] == 12.f);
  CHECK(gy[0 * w + 3] == 20.f);
  CHECK(gy[5 * w + 3] == 20.f);
  CHECK(gx[0] == 12.f);  // corner: smoothing over reflected rows keeps 4 * 3
  // reflect_101 ("dcb|abcd") makes the edge derivative 0.
  const auto gx101 = sobel3x3(ramp.data(), h, w, 1, sobel_border::reflect_101);
  CHECK(gx101[2 * w + 0] == 0.f);
  CHECK(gx101[2 * w + 3] == 24.f);

  flow_field f(h, w);
  f.u = ramp;
  const auto m = motion_boundary_map(f);
  CHECK(m[2 * w + 3] == Approx(std::sqrt(24.0 * 24 + 40 * 40)));

  std::mt19937 rng(5);
  std::uniform_real_distribution<float> U(-3, 3);
  for (int hh : {1, 2, 5})
    for (int ww : {1, 3, 8}) {
      std::vector<float> img(std::size_t(hh) * ww);
      for (auto& v : img) v = U(rng);
      for (int axis : {0, 1})
        for (bool r101 : {false, true}) {
          const auto got = sobel3x3(img.data(), hh, ww, axis, r101 ? sobel_border::reflect_101 : sobel_border::reflect);
          const auto ref = naive_sobel(img, hh, ww, axis, r101);
          for (std::size_t i = 0; i < ref.size(); ++i) REQUIRE(got[i] == Approx(ref[i]).margin(1e-5));
        }
    }
}

TEST_CASE("attention: block pooling, bilinear align_corners=false, normalisation", "[data][mds]") {
  // 4x4 map of 2x2 blocks with means a=1, b=2, c=3, d=4 (top-left, top-right, bottom-left, bottom-right).
  std::vector<float> m(16);
  const float means[2][2] = {{1, 2}, {3, 4}};
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) m[y * 4 + x] = means[y / 2][x / 2] + ((x + y) % 2 ? 0.5f : -0.5f);
  const auto a = attention_map(m, 4, 4, 2, mds_attention_type::none, 0);
  // Along one axis: src = (d + 0.5) / 2 - 0.5 -> weights (1,0), (.75,.25), (.25,.75), (0,1).
  const double wx[4][2] = {{1, 0}, {.75, .25}, {.25, .75}, {0, 1}};
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) {
      double ref = 0;
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) ref += wx[y][i] * wx[x][j] * means[i][j];
      CHECK(a[y * 4 + x] == Approx(ref));
    }
  const auto amax = attention_map(m, 4, 4, 2, mds_attention_type::max, 0);
  CHECK(amax[15] == Approx(1.0));
  CHECK(amax[0] == Approx(0.25));
  const auto asum = attention_map(m, 4, 4, 2, mds_attention_type::sum, 0);
  double s = 0;
  for (float v : asum) s += v;
  CHECK(s == Approx(1.0));
  // Remainder rows/cols are dropped from pooling: 5x5 with block 2 -> 2x2 grid of the top-left 4x4.
  std::vector<float> m5(25, 100.f);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 4; ++x) m5[y * 5 + x] = m[y * 4 + x];
  const auto a5 = attention_map(m5, 5, 5, 2, mds_attention_type::none, 0);
  CHECK(a5[0] == Approx(1.0));
  CHECK(a5[24] == Approx(4.0));  // never sees the 100s
  // No motion: eps gives 0 (default), the official bare max gives NaN.
  std::vector<float> zero(16, 0.f);
  CHECK(attention_map(zero, 4, 4, 2, mds_attention_type::max, 1e-6)[5] == 0.f);
  CHECK(std::isnan(attention_map(zero, 4, 4, 2, mds_attention_type::max, 0)[5]));
  CHECK_THROWS_AS(attention_map(zero, 4, 4, 5, mds_attention_type::max, 0), mscl::value_error);
}

TEST_CASE("median is numpy's and the chosen set is strict", "[data][mds]") {
  CHECK(numpy_median({3, 1, 2}) == 2);
  CHECK(numpy_median({4, 1, 3, 2}) == 2.5);
  CHECK(std::isnan(numpy_median({1, std::nan(""), 2})));
  CHECK(mds_choose({1, 2, 2, 2, 3}) == V{4});        // median 2, ties excluded
  CHECK(mds_choose({1, 2, 3, 4}) == V{2, 3});        // median 2.5
  CHECK(mds_choose({5, 5, 5, 5}).empty());           // all equal: nothing above the median
  CHECK(mds_choose({0, 0, 0, 1}) == V{3});           // median 0
  CHECK(mds_choose({2, 1, 1, 2}) == V{0, 3});        // median 1.5, ascending indices
  CHECK(mds_choose({1, std::nan(""), 3}).empty());   // NaN median: no comparison holds
  CHECK(mds_choose({}).empty());
}

TEST_CASE("clip scores drop out-of-range terms but keep the divisor", "[data][mds]") {
  const std::vector<double> d{1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const auto s = mds_clip_scores(d, 3, 2);
  REQUIRE(s.size() == 10);
  CHECK(s[0] == Approx((1 + 3 + 5) / 3.0));
  CHECK(s[5] == Approx((6 + 8 + 10) / 3.0));
  CHECK(s[8] == Approx(9 / 3.0));
  CHECK(s[9] == Approx(10 / 3.0));
  const auto s8 = mds_clip_scores(std::vector<double>(40, 1.0));  // clip 8, stride 4
  CHECK(s8[0] == 1.0);
  CHECK(s8[11] == 1.0);      // 11 + 28 = 39 < 40: all 8 terms
  CHECK(s8[12] == 7.0 / 8);  // 12 + 28 = 40 is out: 7 terms, divisor still 8
  CHECK(s8[39] == 1.0 / 8);
}

TEST_CASE("MDS on synthetic flow: static, constant motion, changing direction", "[data][mds]") {
  const int H = 56, W = 56;  // block 28 -> 2x2 attention cells
  SECTION("constant motion scores 0 differential; direction changes score > 0") {
    std::vector<flow_field> flows;
    for (int i = 0; i < 40; ++i) flows.push_back(patch_flow(H, W, 2.f, 1.f));  // constant
    for (int i = 40; i < 80; ++i) {
      const double th = 1.5707963 * i;  // direction turns 90 degrees every frame
      flows.push_back(patch_flow(H, W, float(3 * std::cos(th)), float(3 * std::sin(th))));
    }
    const auto r = motion_differential_statistic(flows);
    REQUIRE(r.frame_values.size() == 80);
    for (int i = 0; i < 39; ++i) REQUIRE(r.frame_values[i] == 0.0);  // W_i == W_{i+1} exactly
    CHECK(r.frame_values[39] > 0);                                     // constant -> first changing
    for (int i = 40; i < 79; ++i) REQUIRE(r.frame_values[i] > 1.0);
    CHECK(r.frame_values[79] == 0.0);  // W_N := W_{N-1}
    // Starts whose 8 x stride-4 window stays in the constant part (i + 28 < 39) score exactly 0;
    // every chosen start's window reaches the changing part.
    for (int i = 0; i + 28 < 39; ++i) REQUIRE(r.scores[i] == 0.0);
    REQUIRE(!r.chosen.empty());
    for (index_t c : r.chosen) CHECK(c + 28 >= 39);
    CHECK(std::find(r.chosen.begin(), r.chosen.end(), 44) != r.chosen.end());  // a full changing window
  }
  SECTION("static then changing: chosen starts lie where the motion changes") {
    std::vector<flow_field> flows;
    for (int i = 0; i < 60; ++i) flows.push_back(flow_field(H, W));  // zero flow: white image, no attention
    for (int i = 60; i < 80; ++i) {
      const double th = 2.0 * i;
      flows.push_back(patch_flow(H, W, float(3 * std::cos(th)), float(3 * std::sin(th))));
    }
    const auto r = motion_differential_statistic(flows);
    for (int i = 0; i < 59; ++i) REQUIRE(r.frame_values[i] == 0.0);
    for (int i = 0; i + 28 < 59; ++i) REQUIRE(r.scores[i] == 0.0);
    REQUIRE(!r.chosen.empty());
    for (index_t c : r.chosen) CHECK(c + 28 >= 59);
    // Official NaN mode: the static maps have a zero max -> NaN -> NaN scores -> empty chosen.
    mds_options off;
    off.official_nan = true;
    const auto rn = motion_differential_statistic(flows, off);
    CHECK(std::isnan(rn.frame_values[0]));
    CHECK(rn.chosen.empty());
  }
  SECTION("motion_map / attention_map / max pooling variants") {
    std::vector<flow_field> flows{flow_field(H, W), patch_flow(H, W, 1, 0), patch_flow(H, W, 4, 0)};
    mds_options o;
    o.weight_type = mds_weight_type::motion_map;
    auto r = motion_differential_statistic(flows, o);
    CHECK(r.frame_values[0] == 0.0);
    CHECK(r.frame_values[2] == Approx(4 * r.frame_values[1]));  // Sobel is linear in the flow
    o.pool_type = mds_pool_type::max;
    r = motion_differential_statistic(flows, o);
    // Along an edge |d/dx| = (1+2+1)·1 = 4; at a patch corner (10, 12) both derivatives are
    // 0 + 2 + 1 = 3, so the maximum is sqrt(18).
    CHECK(r.frame_values[1] == Approx(std::sqrt(18.0)));
    o.weight_type = mds_weight_type::attention_map;
    o.pool_type = mds_pool_type::max;
    r = motion_differential_statistic(flows, o);
    CHECK(r.frame_values[1] == Approx(1.0).epsilon(1e-5));  // normalised by its own max
    CHECK(r.frame_values[2] == Approx(1.0).epsilon(1e-5));
    o.att_type = mds_attention_type::none;
    CHECK_THROWS_AS(mds_accumulator(o), mscl::value_error);
  }
}

TEST_CASE("MDS statistic matches the numpy/torch reference of the official tool", "[data][mds][python]") {
  const std::string py = "/usr/bin/python3";
  if (!fs::exists(py) || std::system((py + " -c 'import numpy, torch' >/dev/null 2>&1").c_str()) != 0) {
    WARN("python3 with numpy and torch not available; skipping the reference comparison");
    return;
  }
  const fs::path dir = fresh_dir("reference");
  const int H = 61, W = 90, N = 9;  // block 28 -> 2x3 cells, remainder rows/cols dropped
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> U(-1, 1);
  for (int i = 0; i < N; ++i) {
    flow_field f(H, W);
    const float cx = 20 + 5 * i, cy = 30, ang = 0.7f * i;
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const float r2 = ((x - cx) * (x - cx) + (y - cy) * (y - cy)) / 150.f;
        const float g = 4.f * std::exp(-r2);
        f.u[y * W + x] = g * std::cos(ang) + 0.3f * U(rng) + 0.5f;
        f.v[y * W + x] = g * std::sin(ang) + 0.3f * U(rng);
      }
    char name[32];
    std::snprintf(name, sizeof name, "%04d.flo", i);
    mscl::io::write_flo((dir / name).string(), f);
  }
  struct mode {
    const char *weight, *att, *pool;
    mds_weight_type wt;
    mds_attention_type at;
    mds_pool_type pt;
  };
  const mode modes[] = {
      {"rgb_map", "max", "avg", mds_weight_type::rgb_map, mds_attention_type::max, mds_pool_type::avg},
      {"rgb_map", "sum", "max", mds_weight_type::rgb_map, mds_attention_type::sum, mds_pool_type::max},
      {"rgb_map", "none", "avg", mds_weight_type::rgb_map, mds_attention_type::none, mds_pool_type::avg},
      {"motion_map", "max", "avg", mds_weight_type::motion_map, mds_attention_type::max, mds_pool_type::avg},
      {"attention_map", "max", "avg", mds_weight_type::attention_map, mds_attention_type::max, mds_pool_type::avg},
  };
  for (const auto& md : modes) {
    INFO(md.weight << " " << md.att << " " << md.pool);
    const fs::path out = dir / "ref.json";
    const std::string cmd = py + " " + std::string(MSCL_SOURCE_DIR) + "/tests/unit/data_mds_reference.py " +
                            dir.string() + " 28 3 2 " + md.weight + " " + md.att + " " + md.pool + " > " + out.string();
    REQUIRE(std::system(cmd.c_str()) == 0);
    std::ifstream in(out);
    const auto ref = nlohmann::json::parse(in);
    mds_options o;
    o.weight_type = md.wt;
    o.att_type = md.at;
    o.pool_type = md.pt;
    o.clip_len = 3;
    o.clip_stride = 2;
    o.attention_eps = 0;  // the reference divides by the bare max/sum
    std::vector<flow_field> flows;
    for (int i = 0; i < N; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "%04d.flo", i);
      flows.push_back(mscl::io::read_flo((dir / name).string()));
    }
    const auto r = motion_differential_statistic(flows, o);
    REQUIRE(ref["frame_values"].size() == std::size_t(N));
    for (int i = 0; i < N; ++i) CHECK(r.frame_values[i] == Approx(ref["frame_values"][i].get<double>()).epsilon(2e-4));
    for (int i = 0; i < N; ++i) CHECK(r.scores[i] == Approx(ref["scores"][i].get<double>()).epsilon(2e-4));
    CHECK(r.chosen == ref["chosen"].get<V>());
  }
}

TEST_CASE("nearest chosen start: exact and the official approximate scan", "[data][mds]") {
  const V c{10, 20, 30};
  CHECK(nearest_chosen(c, 15) == 10);  // tie -> smaller
  CHECK(nearest_chosen(c, 16) == 20);
  CHECK(nearest_chosen(c, -5) == 10);
  CHECK(nearest_chosen(c, 100) == 30);
  CHECK(nearest_chosen(c, 20) == 20);
  CHECK(official_nearest_chosen(c, 26) == 30);
  CHECK(official_nearest_chosen({10, 20, 100}, 12) == 20);  // true nearest is 10
  CHECK(official_nearest_chosen({1}, 0) == 0);              // 0 is not even in the list
  CHECK_THROWS_AS(nearest_chosen({}, 3), mscl::value_error);
}

TEST_CASE("temporal_shift_chosen_sampler and chosen_sampler", "[data][mds]") {
  mds_sampler_options opt;  // clip 8 x 8, shift +-64, 11 draws
  const index_t N = 200;
  SECTION("query in chosen, key nearest chosen to a shifted target, frames wrap") {
    V chosen;
    for (index_t i = 0; i < N; i += 2) chosen.push_back(i);  // even starts
    generator g(5);
    std::set<index_t> qs;
    for (int t = 0; t < 2000; ++t) {
      const auto p = temporal_shift_chosen_sampler(N, chosen, opt, g);
      REQUIRE(p.query_start % 2 == 0);
      REQUIRE(p.query_start <= N - 64);  // accepted draws come from [0, N - 64]
      REQUIRE(p.key_start % 2 == 0);
      REQUIRE(std::abs(p.key_start - p.query_start) <= 65);
      REQUIRE(p.query_frames.size() == 8);
      for (int j = 0; j < 8; ++j) {
        REQUIRE(p.query_frames[j] == (p.query_start + 8 * j) % N);
        REQUIRE(p.key_frames[j] == (p.key_start + 8 * j) % N);
      }
      qs.insert(p.query_start);
    }
    CHECK(qs.size() > 60);  // 69 even values in [0, 136]
  }
  SECTION("query fallback to chosen[0] and wrap-around") {
    generator g(9);
    for (int t = 0; t < 50; ++t) {
      const auto p = temporal_shift_chosen_sampler(N, {N - 3}, opt, g);  // unreachable by draws
      REQUIRE(p.query_start == N - 3);
      REQUIRE(p.key_start == N - 3);
      REQUIRE(p.query_frames[1] == 5);  // 197 + 8 = 205 -> 5
    }
  }
  SECTION("empty chosen list: uniform fallback by default, zeros when official") {
    generator g(13);
    std::set<index_t> qs;
    for (int t = 0; t < 1000; ++t) {
      const auto p = temporal_shift_chosen_sampler(N, {}, opt, g);
      REQUIRE(p.query_start >= 0);
      REQUIRE(p.query_start <= N - 64);
      REQUIRE(p.key_start >= 0);
      REQUIRE(p.key_start < N);
      REQUIRE(std::abs(p.key_start - p.query_start) <= 64);
      qs.insert(p.query_start);
    }
    CHECK(qs.size() > 100);
    mds_sampler_options off = opt;
    off.uniform_when_empty = false;
    for (int t = 0; t < 20; ++t) {
      const auto p = temporal_shift_chosen_sampler(N, {}, off, g);
      REQUIRE(p.query_start == 0);
      REQUIRE(p.key_start == 0);
    }
    // Shorter than one clip span: the draw rule gives 0.
    CHECK(temporal_shift_chosen_sampler(40, {}, opt, g).query_start == 0);
    CHECK(chosen_sampler(40, {}, opt, g) == V{0, 8, 16, 24, 32, 0, 8, 16});
  }
  SECTION("a seed fixes the samples") {
    V chosen{3, 50, 51, 90, 120};
    generator a(77), b(77);
    for (int t = 0; t < 100; ++t) {
      const auto p = temporal_shift_chosen_sampler(N, chosen, opt, a);
      const auto q = temporal_shift_chosen_sampler(N, chosen, opt, b);
      REQUIRE(p.query_start == q.query_start);
      REQUIRE(p.key_start == q.key_start);
      REQUIRE(chosen_sampler(N, chosen, opt, a) == chosen_sampler(N, chosen, opt, b));
    }
    CHECK(a.state() == 200);
  }
  SECTION("bad chosen lists are rejected") {
    generator g(1);
    CHECK_THROWS_AS(temporal_shift_chosen_sampler(N, {5, 5}, opt, g), mscl::value_error);
    CHECK_THROWS_AS(temporal_shift_chosen_sampler(N, {N}, opt, g), mscl::value_error);
    CHECK_THROWS_AS(chosen_sampler(0, {}, opt, g), mscl::value_error);
  }
}

TEST_CASE("sample file: round trip, resume tail, malformed lines name file:line", "[data][mds][io]") {
  const fs::path dir = fresh_dir("samples");
  mds_options o;
  o.clip_stride = 2;
  std::vector<mds_video_samples> vids{{"a/v1", 3, {0.5, 1.5, std::nan("")}, {1}}, {"v2", 1, {0.0}, {}}};
  const std::string path = (dir / "s.jsonl").string();
  write_mds_samples(path, o, vids);
  auto f = read_mds_samples(path);
  CHECK(f.options.to_json() == o.to_json());
  REQUIRE(f.videos().size() == 2);
  const auto* v1 = f.find("a/v1");
  REQUIRE(v1 != nullptr);
  CHECK(v1->num_frames == 3);
  CHECK(v1->scores[1] == 1.5);
  CHECK(std::isnan(v1->scores[2]));
  CHECK(v1->chosen == V{1});
  CHECK(f.find("nope") == nullptr);

  const std::string header = mds_header_line(o) + "\n";
  const std::string good = mds_record_line(vids[0]) + "\n";
  auto expect_error = [&](const std::string& text, const std::string& needle) {
    try {
      parse_mds_samples(text, "x.jsonl");
      FAIL("no error for: " << text);
    } catch (const mscl::io_error& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
    }
  };
  expect_error("", "x.jsonl: empty");
  expect_error("{\"video\":\"v\"}\n", "x.jsonl:1");
  expect_error(header + good + "{not json\n", "x.jsonl:3");
  expect_error(header + good + good, "x.jsonl:3: video 'a/v1' appears twice");
  expect_error(header + R"({"video":"v","num_frames":2,"scores":[1],"chosen":[]})" "\n", "x.jsonl:2");
  expect_error(header + R"({"video":"v","num_frames":2,"scores":[1,2],"chosen":[1,0]})" "\n", "ascending");
  expect_error(header + R"({"video":"v","num_frames":2,"scores":[1,2],"chosen":[2]})" "\n", "outside");
  expect_error(header + R"({"video":"v","num_frames":2,"scores":[1,"a"],"chosen":[]})" "\n", "x.jsonl:2");
  expect_error(header + R"({"video":"v","num_frames":1,"scores":[1],"chosen":[],"x":1})" "\n", "unknown key");
  expect_error(R"({"format":"mscl-mds-samples","version":2,"options":{}})" "\n", "version");
  expect_error(R"({"format":"mscl-mds-samples","version":1,"options":{"clip_len":8}})" "\n", "x.jsonl:1");

  // A killed writer leaves a partial last line: an error by default, dropped when resuming.
  const std::string cut = header + good + good.substr(0, good.size() / 2);
  expect_error(cut, "x.jsonl:3");
  const auto resumed = parse_mds_samples(cut, "x.jsonl", true);
  CHECK(resumed.dropped_incomplete_tail);
  CHECK(resumed.videos().size() == 1);
  CHECK(resumed.valid_bytes == header.size() + good.size());

  // The load-time sampler checks the frame count against the file.
  motion_differential_sampler s(path);
  generator g(0);
  CHECK(s("a/v1", 3, g).query_start == 1);
  CHECK_THROWS_AS(s("a/v1", 4, g), mscl::value_error);
  CHECK_THROWS_AS(s("zzz", 3, g), mscl::value_error);
}

TEST_CASE(".flo round trip and hostile files", "[io][flo]") {
  const fs::path dir = fresh_dir("flo");
  flow_field f(3, 5);
  for (int i = 0; i < 15; ++i) {
    f.u[i] = 0.25f * i - 1.f;
    f.v[i] = -3.5f * i + 1e-7f;
  }
  f.u[4] = 1e10f;  // Middlebury "unknown" values pass through
  const std::string p = (dir / "a.flo").string();
  mscl::io::write_flo(p, f);
  CHECK(fs::file_size(p) == 12 + 8 * 15);
  const auto g = mscl::io::read_flo(p);
  CHECK(g.height == 3);
  CHECK(g.width == 5);
  CHECK(g.u == f.u);
  CHECK(g.v == f.v);
  // Header bytes are the documented ones: "PIEH", width, height, then u0 v0.
  const std::string bytes = mscl::io::encode_flo(f);
  CHECK(bytes.substr(0, 4) == "PIEH");
  CHECK(bytes[4] == 5);
  CHECK(bytes[8] == 3);

  auto expect = [&](const std::string& content, const std::string& needle) {
    const fs::path q = dir / "bad.flo";
    write_bytes(q, content);
    try {
      mscl::io::read_flo(q.string());
      FAIL("no error for " << needle);
    } catch (const mscl::io_error& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
      CHECK(std::string(e.what()).find("bad.flo") != std::string::npos);
    }
  };
  expect("", "fewer than");
  expect("PIEH1234", "fewer than");
  expect("XXXX" + bytes.substr(4), "not a Middlebury");
  expect(bytes.substr(0, bytes.size() - 1), "truncated");
  expect(bytes + "z", "trailing bytes");
  std::string huge = bytes;
  huge[4] = 0, huge[5] = 0, huge[6] = 0, huge[7] = 0x40;  // width 2^30: rejected before allocation
  expect(huge, "declares width");
  std::string neg = bytes;
  neg[8] = char(0xff), neg[9] = char(0xff), neg[10] = char(0xff), neg[11] = char(0xff);  // height -1
  expect(neg, "declares width");
  CHECK_THROWS_AS(mscl::io::read_flo((dir / "missing.flo").string()), mscl::io_error);
  CHECK_THROWS_AS(mscl::io::decode_flo(bytes.data(), 11, "mem"), mscl::io_error);
}
