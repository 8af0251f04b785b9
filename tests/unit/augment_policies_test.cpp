// Tests of include/mscl/augment/: every policy against an independent reference (naive loops in
// double, or numbers produced offline with torch 1.13 / torchvision 0.14 where stated).
#include <catch2/catch.hpp>

#include <cmath>
#include <set>
#include <vector>

#include "mscl/augment/flow_color_batch.hpp"
#include "mscl/augment/policies.hpp"
#include "mscl/ssl/fra.hpp"

using namespace mscl;
using namespace mscl::augment;

namespace {

constexpr double kPi = 3.14159265358979323846;

clip_tensor random_clip(index_t c, index_t t, index_t h, index_t w, std::uint64_t seed, double lo = 0, double hi = 1) {
  clip_tensor x = clip_tensor::empty({c, t, h, w});
  generator g(seed);
  g.fill_uniform(x.data(), x.numel(), lo, hi);
  return x;
}

// PyTorch F.interpolate(bilinear, align_corners=False) on box b of an H×W plane. The source
// coordinate is rounded to float as PyTorch's CPU kernel rounds it for float tensors (float scale,
// bracket in double; exact double positions differ by up to ~4e-6 px at 128 px); blend in double.
std::vector<double> ref_bilinear(const float* plane, index_t width, const crop_box& b, index_t oh, index_t ow) {
  std::vector<double> out(std::size_t(oh * ow));
  auto taps = [](index_t d, index_t in, index_t out_n, index_t& i0, index_t& i1, double& l1) {
    const float scale = float(in) / float(out_n);
    double src = double(float(double(scale) * (double(d) + 0.5) - 0.5));
    if (src < 0) src = 0;
    i0 = index_t(std::floor(src));
    i1 = std::min(i0 + 1, in - 1);
    l1 = src - double(i0);
  };
  for (index_t y = 0; y < oh; ++y)
    for (index_t x = 0; x < ow; ++x) {
      index_t y0, y1, x0, x1;
      double ly, lx;
      taps(y, b.h, oh, y0, y1, ly);
      taps(x, b.w, ow, x0, x1, lx);
      auto at = [&](index_t yy, index_t xx) { return double(plane[(b.y + yy) * width + (b.x + xx)]); };
      out[std::size_t(y * ow + x)] = (1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x1)) +
                                     ly * ((1 - lx) * at(y1, x0) + lx * at(y1, x1));
    }
  return out;
}

float at4(const clip_tensor& x, index_t c, index_t t, index_t y, index_t w) { return x.at({c, t, y, w}); }

// torchvision's colour ops for one frame, written directly in double from the formulas.
struct rgbd {
  double r, g, b;
};
double clampd(double v) { return std::min(1.0, std::max(0.0, v)); }
double greyd(const rgbd& p) { return 0.2989 * p.r + 0.587 * p.g + 0.114 * p.b; }
void ref_hue(rgbd& p, double shift) {
  const double mx = std::max({p.r, p.g, p.b}), mn = std::min({p.r, p.g, p.b});
  double h = 0, s = mx > 0 ? (mx - mn) / mx : 0;
  if (mx > mn) {
    const double d = mx - mn;
    if (mx == p.r) h = (p.g - p.b) / d;
    else if (mx == p.g) h = 2 + (p.b - p.r) / d;
    else h = 4 + (p.r - p.g) / d;
    h = std::fmod(h / 6 + 1, 1.0);
  }
  h = h + shift;
  h -= std::floor(h);
  // standard HSV → RGB
  const double c = mx * s, hp = h * 6, x = c * (1 - std::fabs(std::fmod(hp, 2.0) - 1)), m = mx - c;
  double r = 0, g = 0, b = 0;
  const int k = int(std::floor(hp)) % 6;
  if (k == 0) { r = c; g = x; }
  else if (k == 1) { r = x; g = c; }
  else if (k == 2) { g = c; b = x; }
  else if (k == 3) { g = x; b = c; }
  else if (k == 4) { r = x; b = c; }
  else { r = c; b = x; }
  p = {r + m, g + m, b + m};
}
void ref_jitter(std::vector<rgbd>& px, const jitter_factors& f) {
  for (int op : f.order) {
    if (op == 0)
      for (auto& p : px) p = {clampd(f.brightness * p.r), clampd(f.brightness * p.g), clampd(f.brightness * p.b)};
    if (op == 1) {
      double m = 0;
      for (auto& p : px) m += greyd(p);
      m /= double(px.size());
      const double c = f.contrast;
      for (auto& p : px) p = {clampd(c * p.r + (1 - c) * m), clampd(c * p.g + (1 - c) * m), clampd(c * p.b + (1 - c) * m)};
    }
    if (op == 2)
      for (auto& p : px) {
        const double y = greyd(p), s = f.saturation;
        p = {clampd(s * p.r + (1 - s) * y), clampd(s * p.g + (1 - s) * y), clampd(s * p.b + (1 - s) * y)};
      }
    if (op == 3)
      for (auto& p : px) ref_hue(p, f.hue);
  }
}

// The four-pixel image used with torchvision offline (3×2×2, one frame).
clip_tensor tv_image() {
  return clip_tensor::from_vector({3, 1, 2, 2}, {0.9f, 0.2f, 0.4f, 0.65f, 0.1f, 0.5f, 0.35f, 0.8f, 0.3f, 0.7f, 0.05f, 0.6f});
}

}  // namespace

TEST_CASE("augment traits: archetype, policies and combinators", "[augment]") {
  STATIC_REQUIRE(is_augment_policy_v<example_policy>);
  STATIC_REQUIRE(has_apply_v<example_policy>);
  STATIC_REQUIRE(!has_apply_flow_v<example_policy>);
  STATIC_REQUIRE(is_augment_policy_v<random_resized_crop>);
  STATIC_REQUIRE(has_apply_v<random_resized_crop> && has_apply_flow_v<random_resized_crop>);
  STATIC_REQUIRE(has_apply_v<color_jitter> && !has_apply_flow_v<color_jitter>);
  STATIC_REQUIRE(!has_apply_v<flow_color_code> && has_apply_flow_v<flow_color_code>);
  STATIC_REQUIRE(has_apply_v<random_apply<horizontal_flip>> && has_apply_flow_v<random_apply<horizontal_flip>>);
  STATIC_REQUIRE(has_apply_v<random_apply<grayscale>> && !has_apply_flow_v<random_apply<grayscale>>);
  STATIC_REQUIRE(is_augment_policy_v<mscl_view_policy>);
  STATIC_REQUIRE(mscl_view_policy::out_of_place);
  STATIC_REQUIRE(!compose<horizontal_flip, random_resized_crop>::out_of_place);
  STATIC_REQUIRE(!is_augment_policy_v<int>);

  generator g(3);
  clip_tensor x = clip_tensor::full({3, 1, 2, 2}, 0.5f);
  example_policy e;
  const auto p = e.sample(g, clip_geometry::of(x));
  e.apply(p, x);
  CHECK(x.at({0, 0, 0, 0}) == Approx(0.5f * p.gain));
}

TEST_CASE("map_crop_box scales each axis and rounds half to even", "[augment]") {
  // RGB 128×171 → flow 384×640: ratios 3 and 640/171
  const crop_box b{10, 20, 100, 90};
  const crop_box f = map_crop_box(b, 128, 171, 384, 640);
  const double rx = 640.0 / 171.0;
  CHECK(f.x == index_t(std::nearbyint(10 * rx)));
  CHECK(f.y == 60);
  CHECK(f.x + f.w == index_t(std::nearbyint(110 * rx)));
  CHECK(f.y + f.h == 330);
  // ties go to even: x = 1 on 4 px → 2 px plane gives 0.5 → 0; right 3 → 1.5 → 2
  const crop_box t = map_crop_box({1, 0, 2, 4}, 4, 4, 4, 2);
  CHECK(t.x == 0);
  CHECK(t.w == 2);
  // never empty, always inside
  const crop_box s = map_crop_box({0, 0, 1, 1}, 100, 100, 10, 10);
  CHECK(s.w == 1);
  CHECK(s.h == 1);
}

TEST_CASE("bilinear crop-resize matches the align_corners=false formula", "[augment]") {
  SECTION("against torch 1.13 F.interpolate values (computed offline)") {
    std::vector<float> v(35);
    for (int i = 0; i < 35; ++i) v[std::size_t(i)] = float((i * i) % 11) / 10.f;
    clip_tensor x = clip_tensor::from_vector({1, 1, 5, 7}, v);
    random_resized_crop::params p;
    p.rgb = {2, 1, 5, 4};
    p.height = 5;
    p.width = 7;
    p.out_height = 3;
    p.out_width = 6;
    random_resized_crop crop;
    crop.apply(p, x);
    const std::vector<float> torch_ref = {0.38333332538604736f, 0.19583335518836975f, 0.104166679084301f,
                                          0.1458333283662796f,  0.2750000059604645f,  0.4000000059604645f,
                                          0.20000000298023224f, 0.3125f,              0.5541666150093079f,
                                          0.699999988079071f,   0.612500011920929f,   0.3499999940395355f,
                                          0.7666667103767395f,  0.49166667461395264f, 0.3027777373790741f,
                                          0.1708332747220993f,  0.09583329409360886f, 0.13333331048488617f};
    const auto got = x.to_vector();
    REQUIRE(got.size() == torch_ref.size());
    for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(torch_ref[i]).margin(1e-6));
  }
  SECTION("tap positions of torch 1.13 on ramps 117 -> 112 and 88 -> 112 (computed offline)") {
    for (const auto& c : {std::pair<index_t, std::vector<std::pair<index_t, float>>>{
                              117, {{0, 0.022321403f}, {1, 1.06696415f}, {61, 63.745533f}, {100, 104.486603f}, {111, 115.977676f}}},
                          {88, {{0, 0.f}, {1, 0.678571403f}, {61, 47.8214264f}, {78, 61.1785698f}, {111, 87.f}}}}) {
      const index_t n = c.first;
      std::vector<float> ramp(static_cast<std::size_t>(n));
      for (index_t i = 0; i < n; ++i) ramp[std::size_t(i)] = float(i);
      clip_tensor x = clip_tensor::from_vector({1, 1, 1, n}, ramp);
      random_resized_crop::params p;
      p.rgb = {0, 0, n, 1};
      p.height = 1;
      p.width = n;
      p.out_height = 1;
      p.out_width = 112;
      random_resized_crop().apply(p, x);
      for (const auto& [i, v] : c.second) CHECK(x.data()[i] == v);  // bit-exact positions
    }
  }
  SECTION("against the direct formula, up- and downsampling") {
    const clip_tensor src = random_clip(2, 2, 40, 50, 11);
    for (const crop_box b : {crop_box{0, 0, 50, 40}, crop_box{3, 5, 17, 9}, crop_box{10, 2, 39, 37}, crop_box{49, 39, 1, 1}}) {
      for (const auto& out : {std::pair<index_t, index_t>{12, 16}, {23, 31}, {112, 112}}) {
        random_resized_crop::params p;
        p.rgb = b;
        p.height = 40;
        p.width = 50;
        p.out_height = out.first;
        p.out_width = out.second;
        clip_tensor x = src.clone();
        random_resized_crop().apply(p, x);
        REQUIRE(x.shape() == shape_t{2, 2, out.first, out.second});
        for (index_t pl = 0; pl < 4; ++pl) {
          const auto ref = ref_bilinear(src.data() + pl * 40 * 50, 50, b, out.first, out.second);
          const float* o = x.data() + pl * out.first * out.second;
          double err = 0;
          for (std::size_t i = 0; i < ref.size(); ++i) err = std::max(err, std::fabs(ref[i] - double(o[i])));
          CHECK(err < 2e-6);
        }
      }
    }
  }
}

TEST_CASE("random_resized_crop draws valid boxes and falls back to the centred square", "[augment]") {
  random_resized_crop crop;
  generator g(5);
  const clip_geometry geo{8, 128, 171, 16, 96, 128};
  int fallbacks = 0;
  for (int i = 0; i < 300; ++i) {
    const auto p = crop.sample(g, geo);
    REQUIRE(p.rgb.x >= 0);
    REQUIRE(p.rgb.y >= 0);
    REQUIRE(p.rgb.x + p.rgb.w <= 171);
    REQUIRE(p.rgb.y + p.rgb.h <= 128);
    if (p.fallback) {
      ++fallbacks;
      CHECK(p.rgb == crop_box{21, 0, 128, 128});
      continue;
    }
    const double area = double(p.rgb.w * p.rgb.h) / (128.0 * 171.0);
    CHECK(area > 0.2 * 0.9);
    CHECK(area < 1.0 * 1.1);
    const double ar = double(p.rgb.w) / double(p.rgb.h);
    CHECK(ar > 0.75 * 0.95);
    CHECK(ar < 4.0 / 3.0 * 1.05);
    CHECK(p.flow == map_crop_box(p.rgb, 128, 171, 96, 128));
  }
  CHECK(fallbacks < 60);  // a candidate rarely fails 10 times at this aspect
  // impossible candidates: a 1-pixel-high strip
  const auto q = crop.sample(g, clip_geometry{1, 1, 1000});
  CHECK(q.fallback);
  CHECK(q.rgb == crop_box{499, 0, 1, 1});
}

TEST_CASE("the crop box is the same scene region on RGB and flow", "[augment]") {
  // Linear content in RGB-pixel coordinates; flow at exactly twice the resolution sampled from the
  // same function at its own pixel centres. With downsampling crops (box >= 112) there is no
  // border clamping, so bilinear reproduces the linear function exactly on both.
  const index_t h = 150, w = 200, hf = 300, wf = 400;
  const double a = 0.013, bcoef = -0.007;
  clip_tensor rgb = clip_tensor::empty({3, 2, h, w});
  clip_tensor flow = clip_tensor::empty({2, 2, hf, wf});
  for (index_t c = 0; c < 3; ++c)
    for (index_t t = 0; t < 2; ++t)
      for (index_t y = 0; y < h; ++y)
        for (index_t x = 0; x < w; ++x) rgb.at({c, t, y, x}) = float(a * (x + 0.5) + bcoef * (y + 0.5) + 0.1 * c);
  for (index_t t = 0; t < 2; ++t)
    for (index_t y = 0; y < hf; ++y)
      for (index_t x = 0; x < wf; ++x) {
        flow.at({0, t, y, x}) = float(a * (x + 0.5) / 2 + bcoef * (y + 0.5) / 2);
        flow.at({1, t, y, x}) = float(bcoef * (y + 0.5) / 2);
      }
  random_resized_crop_options o;
  o.area_lo = 0.8;
  random_resized_crop crop(o);
  generator g(17);
  const clip_geometry geo = clip_geometry::of(rgb, &flow);
  for (int i = 0; i < 10; ++i) {
    const auto p = crop.sample(g, geo);
    REQUIRE(p.rgb.w >= 112);
    REQUIRE(p.rgb.h >= 112);
    CHECK(p.flow == crop_box{2 * p.rgb.x, 2 * p.rgb.y, 2 * p.rgb.w, 2 * p.rgb.h});
    clip_tensor r = rgb, f = flow;
    crop.apply(p, r);
    crop.apply_flow(p, f);
    REQUIRE(r.shape() == shape_t{3, 2, 112, 112});
    REQUIRE(f.shape() == shape_t{2, 2, 112, 112});
    double err = 0;
    for (index_t y = 0; y < 112; ++y)
      for (index_t x = 0; x < 112; ++x) {
        err = std::max(err, std::fabs(double(at4(r, 0, 1, y, x)) - double(at4(f, 0, 1, y, x))));
        // and both equal the function at the output pixel's centre in the box
        const double cx = p.rgb.x + (x + 0.5) * double(p.rgb.w) / 112, cy = p.rgb.y + (y + 0.5) * double(p.rgb.h) / 112;
        err = std::max(err, std::fabs(double(at4(r, 0, 1, y, x)) - (a * cx + bcoef * cy)));
      }
    CHECK(err < 2e-5);
  }
  // non-integer ratio (128×171 RGB, 96×128 flow): the flow output equals the reference on the mapped box
  const clip_tensor fr = random_clip(2, 3, 96, 128, 23);
  const auto p = crop.sample(g, clip_geometry{3, 128, 171, 3, 96, 128});
  clip_tensor f = fr;
  crop.apply_flow(p, f);
  const auto ref = ref_bilinear(fr.data() + 4 * 96 * 128, 128, map_crop_box(p.rgb, 128, 171, 96, 128), 112, 112);
  double err = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) err = std::max(err, std::fabs(ref[i] - double(f.data()[4 * 112 * 112 + i])));
  CHECK(err < 2e-6);
  // a geometry mismatch is refused
  clip_tensor wrong = random_clip(2, 3, 90, 128, 1);
  CHECK_THROWS_AS(crop.apply_flow(p, wrong), shape_error);
}

TEST_CASE("fused frame and flow-field paths equal select-then-crop", "[augment]") {
  data::frame_sequence frames;
  std::vector<data::flow_field> flows;
  generator g(31);
  for (int i = 0; i < 6; ++i) {
    data::image_u8 im(30, 40, 3);
    for (auto& px : im.pixels) px = std::uint8_t(g.randint(0, 255));
    frames.push_back(im);
    data::flow_field f(15, 20);
    g.fill_uniform(f.u.data(), index_t(f.u.size()), -3, 3);
    g.fill_uniform(f.v.data(), index_t(f.v.size()), -3, 3);
    flows.push_back(f);
  }
  const std::vector<index_t> idx{4, 0, 5, 5};
  const clip_tensor sel = select_frames(frames, idx);
  CHECK(sel.at({1, 2, 7, 9}) == Approx(frames[5].at(7, 9, 1) / 255.f));
  const clip_tensor fsel = select_flows(flows, idx);
  CHECK(fsel.at({1, 0, 3, 4}) == flows[4].v[3 * 20 + 4]);

  random_resized_crop_options o;
  o.out_height = 16;
  o.out_width = 24;
  random_resized_crop crop(o);
  const auto p = crop.sample(g, clip_geometry{4, 30, 40, 4, 15, 20});
  clip_tensor a = sel, b = fsel;
  crop.apply(p, a);
  crop.apply_flow(p, b);
  const clip_tensor fa = crop.apply_frames(p, frames, idx);
  const clip_tensor fb = crop.apply_flow_fields(p, flows, idx);
  REQUIRE(fa.shape() == a.shape());
  REQUIRE(fb.shape() == b.shape());
  for (index_t i = 0; i < a.numel(); ++i) REQUIRE(fa.data()[i] == Approx(a.data()[i]).margin(1e-6));
  for (index_t i = 0; i < b.numel(); ++i) REQUIRE(fb.data()[i] == Approx(b.data()[i]).margin(1e-6));
  CHECK_THROWS_AS(select_frames(frames, {6}), value_error);

  // time slicing glue
  const clip_tensor s = slice_time(fsel, 1, 3);
  CHECK(s.shape() == shape_t{2, 2, 15, 20});
  CHECK(s.at({0, 0, 2, 2}) == fsel.at({0, 1, 2, 2}));
  const clip_tensor c = concat_time(s, fsel);
  CHECK(c.shape() == shape_t{2, 6, 15, 20});
  CHECK(c.at({1, 3, 1, 1}) == fsel.at({1, 1, 1, 1}));
}

TEST_CASE("horizontal flip mirrors and negates u (or not, in compat mode)", "[augment]") {
  const clip_tensor rgb = random_clip(3, 2, 4, 5, 41);
  const clip_tensor flow = random_clip(2, 3, 4, 5, 42, -1, 1);
  horizontal_flip flip;
  clip_tensor r = rgb.clone(), f = flow.clone();
  flip.apply({}, r);
  flip.apply_flow({}, f);
  clip_tensor fc = flow.clone();
  horizontal_flip(false).apply_flow({}, fc);
  for (index_t t = 0; t < 3; ++t)
    for (index_t y = 0; y < 4; ++y)
      for (index_t x = 0; x < 5; ++x) {
        if (t < 2) CHECK(at4(r, 2, t, y, x) == at4(rgb, 2, t, y, 4 - x));
        CHECK(at4(f, 0, t, y, x) == -at4(flow, 0, t, y, 4 - x));
        CHECK(at4(f, 1, t, y, x) == at4(flow, 1, t, y, 4 - x));
        CHECK(at4(fc, 0, t, y, x) == at4(flow, 0, t, y, 4 - x));
        CHECK(at4(fc, 1, t, y, x) == at4(flow, 1, t, y, 4 - x));
      }
  // colour-coded (3-channel) flow is only mirrored
  clip_tensor coded = random_clip(3, 1, 2, 3, 43);
  const clip_tensor coded0 = coded.clone();
  flip.apply_flow({}, coded);
  CHECK(at4(coded, 0, 0, 1, 0) == at4(coded0, 0, 0, 1, 2));

  // p = 0.5 per clip, shared by RGB and flow of the view
  random_horizontal_flip rflip(0.5);
  generator g(44);
  int flipped = 0;
  for (int i = 0; i < 2000; ++i) flipped += rflip.sample(g, {}).applied;
  CHECK(flipped > 900);
  CHECK(flipped < 1100);
}

TEST_CASE("FRA rotates (1, 0) by beta on the official angle grid", "[augment]") {
  flow_rotation rot;
  std::set<int> chunks;
  generator g(51);
  for (int i = 0; i < 400; ++i) {
    const auto p = rot.sample(g, {});
    chunks.insert(p.chunk);
    CHECK(p.angle == Approx(kPi * (0.2 + 0.2 * p.chunk)));
    CHECK(p.angle == Approx(ssl::fra_angle(p.chunk)));
  }
  CHECK(chunks == std::set<int>{0, 1, 2, 3, 4, 5, 6, 7});

  clip_tensor f = clip_tensor::from_vector({2, 1, 1, 2}, {1.f, 0.f, 0.f, 1.f});  // (1,0) and (0,1)
  const clip_tensor f0 = f.clone();
  for (int c = 0; c < 8; ++c) {
    const flow_rotation::params p{c, rot.angle(c)};
    const clip_tensor r = rot.rotated_copy(p, f0);
    CHECK(r.at({0, 0, 0, 0}) == Approx(std::cos(p.angle)).margin(1e-6));
    CHECK(r.at({1, 0, 0, 0}) == Approx(std::sin(p.angle)).margin(1e-6));
    CHECK(r.at({0, 0, 0, 1}) == Approx(-std::sin(p.angle)).margin(1e-6));
    CHECK(r.at({1, 0, 0, 1}) == Approx(std::cos(p.angle)).margin(1e-6));
  }
  CHECK(f0.to_vector() == f.to_vector());  // rotated_copy leaves the input alone
  const flow_rotation::params p3{3, rot.angle(3)};
  rot.apply_flow(p3, f);
  CHECK(f.at({1, 0, 0, 0}) == Approx(std::sin(p3.angle)));

  // the pack builder: [F | R F] along time
  const clip_tensor src = random_clip(2, 2, 3, 3, 52, -1, 1);
  clip_tensor pack = src;
  flow_rotated_pack().apply_flow(p3, pack);
  REQUIRE(pack.shape() == shape_t{2, 4, 3, 3});
  CHECK(pack.at({0, 1, 2, 1}) == src.at({0, 1, 2, 1}));
  const double u = src.at({0, 1, 2, 1}), v = src.at({1, 1, 2, 1});
  CHECK(pack.at({0, 3, 2, 1}) == Approx(u * std::cos(p3.angle) - v * std::sin(p3.angle)).margin(1e-6));
  CHECK(pack.at({1, 3, 2, 1}) == Approx(u * std::sin(p3.angle) + v * std::cos(p3.angle)).margin(1e-6));
}

TEST_CASE("colour jitter: identity at factor 1 and torchvision's formulas", "[augment]") {
  const clip_tensor img = random_clip(3, 2, 6, 7, 61);
  SECTION("factors 1 (and hue 0) leave the clip unchanged") {
    color_jitter cj;
    color_jitter::params p;
    p.frames = {jitter_factors{}};
    clip_tensor x = img.clone();
    cj.apply(p, x);
    for (index_t i = 0; i < x.numel(); ++i) CHECK(x.data()[i] == Approx(img.data()[i]).margin(2e-7));
    // brightness, contrast, saturation alone are exact
    color_jitter_options o;
    o.hue = 0;
    clip_tensor y = img.clone();
    color_jitter(o).apply(p, y);
    CHECK(y.to_vector() == img.to_vector());
  }
  SECTION("torchvision 0.14 values for one image (computed offline), order saturation, brightness, hue, contrast") {
    jitter_factors f;
    f.brightness = 1.2;
    f.contrast = 0.7;
    f.saturation = 1.3;
    f.hue = 0.05;
    f.order = {2, 0, 3, 1};
    clip_tensor x = tv_image();
    color_jitter().apply({{f}}, x);
    const std::vector<float> tv = {0.8488093018531799f,  0.2580731511116028f, 0.4508321285247803f, 0.6194735765457153f,
                                   0.16680797934532166f, 0.4218732714653015f, 0.5022703409194946f, 0.8378734588623047f,
                                   0.1806076467037201f,  0.8040731549263f,    0.1488093137741089f, 0.6303936839103699f};
    const auto got = x.to_vector();
    for (std::size_t i = 0; i < tv.size(); ++i) CHECK(got[i] == Approx(tv[i]).margin(2e-6));
    // hue alone, negative shift
    clip_tensor h = tv_image();
    color_jitter::adjust_hue(h.data(), h.data() + 4, h.data() + 8, 4, -0.08);
    const std::vector<float> tvh = {0.8999999761581421f, 0.19999998807907104f, 0.4000000059604645f, 0.7459999322891235f,
                                    0.1000000461935997f, 0.699999988079071f,   0.18199984729290009f, 0.800000011920929f,
                                    0.6840000152587891f, 0.6599997878074646f,  0.05000000074505806f, 0.6000000238418579f};
    for (std::size_t i = 0; i < tvh.size(); ++i) CHECK(h.data()[i] == Approx(tvh[i]).margin(2e-6));
  }
  SECTION("drawn factors against the direct formulas, per clip and per frame") {
    for (bool per_frame : {false, true}) {
      color_jitter_options o;
      o.per_frame = per_frame;
      color_jitter cj(o);
      generator g(62);
      const auto p = cj.sample(g, clip_geometry{2, 6, 7});
      REQUIRE(p.frames.size() == (per_frame ? 2u : 1u));
      for (const auto& f : p.frames) {
        CHECK(f.brightness >= 0.6);
        CHECK(f.brightness <= 1.4);
        CHECK(std::fabs(f.hue) <= 0.1);
        CHECK(std::set<int>(f.order.begin(), f.order.end()) == std::set<int>{0, 1, 2, 3});
      }
      clip_tensor x = img.clone();
      cj.apply(p, x);
      for (index_t t = 0; t < 2; ++t) {
        std::vector<rgbd> px;
        for (index_t i = 0; i < 42; ++i)
          px.push_back({img.data()[(0 * 2 + t) * 42 + i], img.data()[(1 * 2 + t) * 42 + i], img.data()[(2 * 2 + t) * 42 + i]});
        ref_jitter(px, p.frames[per_frame ? std::size_t(t) : 0]);
        for (index_t i = 0; i < 42; ++i) {
          CHECK(x.data()[(0 * 2 + t) * 42 + i] == Approx(px[std::size_t(i)].r).margin(1e-5));
          CHECK(x.data()[(1 * 2 + t) * 42 + i] == Approx(px[std::size_t(i)].g).margin(1e-5));
          CHECK(x.data()[(2 * 2 + t) * 42 + i] == Approx(px[std::size_t(i)].b).margin(1e-5));
        }
      }
    }
  }
}

TEST_CASE("grayscale uses (0.299, 0.587, 0.114) in all channels", "[augment]") {
  clip_tensor x = clip_tensor::from_vector({3, 1, 1, 3}, {1, 0, 0, 0, 1, 0, 0, 0, 1});
  grayscale().apply({}, x);
  for (index_t c = 0; c < 3; ++c) {
    CHECK(x.at({c, 0, 0, 0}) == Approx(0.299f));
    CHECK(x.at({c, 0, 0, 1}) == Approx(0.587f));
    CHECK(x.at({c, 0, 0, 2}) == Approx(0.114f));
  }
}

TEST_CASE("gaussian blur: normalised kernel, constant preserved, reflect border", "[augment]") {
  const auto k = gaussian_blur::kernel(11, 1.3);
  double sum = 0;
  for (int i = 0; i < 11; ++i) {
    sum += k[std::size_t(i)];
    CHECK(k[std::size_t(i)] == Approx(k[std::size_t(10 - i)]));
    CHECK(double(k[std::size_t(i)]) / double(k[5]) == Approx(std::exp(-(i - 5) * (i - 5) / (2 * 1.3 * 1.3))).epsilon(1e-5));
  }
  CHECK(sum == Approx(1.0).epsilon(1e-6));

  gaussian_blur blur;
  clip_tensor c = clip_tensor::full({3, 2, 20, 24}, 0.37f);
  blur.apply({1.7}, c);
  for (float v : c.to_vector()) CHECK(v == Approx(0.37f).epsilon(1e-5));

  // against a naive 2-D convolution with numpy-style reflect padding
  const clip_tensor img = random_clip(3, 1, 13, 17, 71);
  clip_tensor b = img.clone();
  blur.apply({0.9}, b);
  const auto kk = gaussian_blur::kernel(11, 0.9);
  auto refl = [](index_t i, index_t n) { return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i); };
  double err = 0;
  for (index_t ch = 0; ch < 3; ++ch)
    for (index_t y = 0; y < 13; ++y)
      for (index_t x = 0; x < 17; ++x) {
        double s = 0;
        for (index_t dy = -5; dy <= 5; ++dy)
          for (index_t dx = -5; dx <= 5; ++dx)
            s += double(kk[std::size_t(dy + 5)]) * double(kk[std::size_t(dx + 5)]) *
                 double(img.at({ch, 0, refl(y + dy, 13), refl(x + dx, 17)}));
        err = std::max(err, std::fabs(s - double(b.at({ch, 0, y, x}))));
      }
  CHECK(err < 1e-5);

  // σ per clip in range; fixed σ for the per-batch compat mode
  generator g(72);
  for (int i = 0; i < 100; ++i) {
    const double s = blur.sample(g, {}).sigma;
    CHECK(s >= 0.1);
    CHECK(s <= 2.0);
  }
  gaussian_blur_options o;
  o.fixed_sigma = 0.77;
  CHECK(gaussian_blur(o).sample(g, {}).sigma == 0.77);
}

TEST_CASE("normalize and flow colour coding", "[augment]") {
  clip_tensor x = clip_tensor::from_vector({3, 1, 1, 1}, {0.5f, 0.25f, 1.0f});
  normalize().apply({}, x);
  CHECK(x.at({0, 0, 0, 0}) == Approx((0.5 - 0.485) / 0.229));
  CHECK(x.at({1, 0, 0, 0}) == Approx((0.25 - 0.456) / 0.224));
  CHECK(x.at({2, 0, 0, 0}) == Approx((1.0 - 0.406) / 0.225));

  clip_tensor f = random_clip(2, 2, 3, 4, 81, -0.7, 0.7);
  f.at({0, 1, 2, 3}) = 0.f;
  f.at({1, 1, 2, 3}) = 0.f;
  const clip_tensor f0 = f.clone();
  flow_color_code().apply_flow({}, f);
  REQUIRE(f.shape() == shape_t{3, 2, 3, 4});
  for (index_t t = 0; t < 2; ++t)
    for (index_t y = 0; y < 3; ++y)
      for (index_t xx = 0; xx < 4; ++xx) {
        const auto col = flow::flow_color(at4(f0, 0, t, y, xx), at4(f0, 1, t, y, xx));
        for (index_t c = 0; c < 3; ++c) CHECK(at4(f, c, t, y, xx) == col[std::size_t(c)]);
      }
  for (index_t c = 0; c < 3; ++c) CHECK(at4(f, c, 1, 2, 3) == 1.f);  // zero motion is white

  // the fast-atan2 option: one 8-bit step at most, in a small fraction of values
  {
    const index_t n = 1 << 16;
    clip_tensor fl = clip_tensor::empty({2, 1, 1, n});
    generator g(83);
    for (index_t i = 0; i < n; ++i) {
      const double rho = g.uniform(), ang = g.uniform(-kPi, kPi);
      fl.data()[i] = float(rho * std::cos(ang));
      fl.data()[n + i] = float(rho * std::sin(ang));
    }
    fl.data()[0] = 0.f;  // axes and signed zeros
    fl.data()[n] = -0.f;
    fl.data()[1] = 0.5f;
    fl.data()[n + 1] = 0.f;
    fl.data()[2] = 0.5f;
    fl.data()[n + 2] = -0.f;
    fl.data()[3] = -0.5f;
    fl.data()[n + 3] = 0.f;
    fl.data()[4] = 0.f;
    fl.data()[n + 4] = -0.5f;
    clip_tensor exact = fl.clone(), fast = fl.clone();
    flow_color_code().apply_flow({}, exact);
    flow_color_code_options fo;
    fo.fast_atan2 = true;
    flow_color_code(fo).apply_flow({}, fast);
    index_t differ = 0;
    double worst = 0, worst_angle = 0;
    for (index_t i = 0; i < 3 * n; ++i) {
      const double d = std::fabs(double(exact.data()[i]) - double(fast.data()[i]));
      worst = std::max(worst, d);
      differ += d > 0;
    }
    for (index_t i = 0; i < n; ++i) {
      const float y = -fl.data()[n + i], x = -fl.data()[i];
      worst_angle = std::max(worst_angle, std::fabs(double(augment::detail::fast_atan2(y, x)) - std::atan2(double(y), double(x))));
    }
    CHECK(worst <= 1.0 / 255.0 + 1e-6);
    CHECK(double(differ) / double(3 * n) < 0.01);
    CHECK(worst_angle < 5e-7);
    for (index_t i = 0; i < 5; ++i)
      for (index_t c = 0; c < 3; ++c) CHECK(exact.data()[c * n + i] == fast.data()[c * n + i]);
  }

  // max-length normalisation, per map
  clip_tensor n = random_clip(2, 2, 3, 3, 82, -5, 5);
  flow_max_length_normalize().apply_flow({}, n);
  for (index_t t = 0; t < 2; ++t) {
    double mx = 0;
    for (index_t i = 0; i < 9; ++i) mx = std::max(mx, std::hypot(double(n.data()[t * 9 + i]), double(n.data()[18 + t * 9 + i])));
    CHECK(mx == Approx(1.0).epsilon(1e-4));
  }
}

TEST_CASE("the MSCL view pipeline: shapes, determinism, independent views, inputs untouched", "[augment]") {
  const clip_tensor rgb = random_clip(3, 8, 64, 86, 91);
  clip_tensor flow = random_clip(2, 16, 48, 64, 92, -1, 1);
  flow_max_length_normalize().apply_flow({}, flow);
  const auto rgb0 = rgb.to_vector();
  const auto flow0 = flow.to_vector();

  const auto pipe = make_mscl_view_pipeline();
  const clip_geometry geo = clip_geometry::of(rgb, &flow);
  generator g1(2024), g2(2024), g3(7);
  const auto p1 = pipe.sample(g1, geo);
  const auto p2 = pipe.sample(g2, geo);
  CHECK(std::get<0>(p1.q).rgb == std::get<0>(p2.q).rgb);
  CHECK(std::get<0>(p1.k).rgb == std::get<0>(p2.k).rgb);
  CHECK(std::get<2>(p1.q).inner.frames[0].hue == std::get<2>(p2.q).inner.frames[0].hue);
  CHECK(std::get<4>(p1.k).inner.sigma == std::get<4>(p2.k).inner.sigma);
  CHECK(g1.state() == g2.state());

  const view_pair a = pipe(p1, rgb, flow);
  const view_pair b = pipe(p2, rgb, flow);
  CHECK(a.q.rgb.shape() == shape_t{3, 8, 112, 112});
  CHECK(a.k.rgb.shape() == shape_t{3, 8, 112, 112});
  CHECK(a.q.flow.shape() == shape_t{3, 16, 112, 112});
  CHECK(a.k.flow.shape() == shape_t{3, 16, 112, 112});
  CHECK(a.q.rgb.to_vector() == b.q.rgb.to_vector());
  CHECK(a.k.flow.to_vector() == b.k.flow.to_vector());
  for (float v : a.q.flow.to_vector()) REQUIRE((v >= 0.f && v <= 1.f));
  CHECK(rgb.to_vector() == rgb0);
  CHECK(flow.to_vector() == flow0);

  // q and k are drawn independently: over a few seeds their boxes differ
  int differ = 0;
  for (int s = 0; s < 5; ++s) {
    generator gs(std::uint64_t(100 + s));
    const auto p = pipe.sample(gs, geo);
    differ += !(std::get<0>(p.q).rgb == std::get<0>(p.k).rgb);
  }
  CHECK(differ >= 4);
  // another seed, other params
  const auto p3 = pipe.sample(g3, geo);
  CHECK(!(std::get<0>(p3.q).rgb == std::get<0>(p1.q).rgb && std::get<0>(p3.k).rgb == std::get<0>(p1.k).rgb));

  // later parts draw for the resized geometry: per-frame jitter gets T factor sets
  mscl_view_options ro = mscl_view_options::released();
  CHECK(!ro.flip_negates_flow);
  const auto rp = make_mscl_view_policy(ro).sample(g3, geo);
  CHECK(std::get<2>(rp).inner.frames.size() == 8u);
  CHECK(make_mscl_view_policy().output_geometry(rp, geo).height == 112);

  // the view's flip flag acts on both modalities: flipped RGB view ⇔ mirrored, u-negated flow
  compose<random_resized_crop, random_apply<horizontal_flip>> spatial(random_resized_crop(),
                                                                      random_apply<horizontal_flip>(1.0));
  generator g4(5);
  const auto sp = spatial.sample(g4, geo);
  const view v = make_view(spatial, sp, rgb, flow);
  clip_tensor r2 = rgb, f2 = flow;
  random_resized_crop().apply(std::get<0>(sp), r2);
  random_resized_crop().apply_flow(std::get<0>(sp), f2);
  CHECK(at4(v.rgb, 1, 3, 10, 0) == at4(r2, 1, 3, 10, 111));
  CHECK(at4(v.flow, 0, 5, 20, 7) == -at4(f2, 0, 5, 20, 104));
  CHECK(at4(v.flow, 1, 5, 20, 7) == at4(f2, 1, 5, 20, 104));
}

TEST_CASE("bad inputs throw typed errors", "[augment]") {
  clip_tensor two = clip_tensor::zeros({2, 1, 4, 4});
  CHECK_THROWS_AS(color_jitter().apply({{jitter_factors{}}}, two), shape_error);
  CHECK_THROWS_AS(grayscale().apply({}, two), shape_error);
  clip_tensor three = clip_tensor::zeros({3, 1, 4, 4});
  CHECK_THROWS_AS(flow_color_code().apply_flow({}, three), shape_error);
  CHECK_THROWS_AS(random_apply<grayscale>(1.5), value_error);
  generator g(1);
  CHECK_THROWS_AS(random_resized_crop().sample(g, clip_geometry{}), value_error);
  color_jitter_options o;
  o.hue = 0.7;
  CHECK_THROWS_AS(color_jitter(o).sample(g, {}), value_error);
  random_resized_crop::params p = random_resized_crop().sample(g, clip_geometry{1, 4, 4});
  CHECK_THROWS_AS(random_resized_crop().apply_flow(p, two), value_error);
}

TEST_CASE("color_code_flow_batch: N×2×T×H×W → N×3×T×H×W, flow::flow_color per vector, any layout", "[augment]") {
  // Lengths up to 1.5 (the > 1 branch too), a zero vector, a non-contiguous input.
  tensor<float> f = tensor<float>::empty({3, 2, 2, 3, 5});
  generator g(91);
  for (index_t i = 0; i < f.numel(); ++i) f.data()[i] = float(g.uniform(-1.06, 1.06));
  f.at({1, 0, 1, 2, 4}) = 0.f;
  f.at({1, 1, 1, 2, 4}) = 0.f;
  const tensor<float> strided = ops::transpose(ops::transpose(f, 3, 4).clone(), 3, 4);  // same values, other strides
  REQUIRE_FALSE(strided.is_contiguous());
  for (bool fast : {false, true}) {
    INFO("fast_atan2 " << fast);
    const tensor<float> out = augment::color_code_flow_batch(strided, fast);
    REQUIRE(out.shape() == shape_t{3, 3, 2, 3, 5});
    index_t off_by_a_step = 0;
    for (index_t b = 0; b < 3; ++b)
      for (index_t t = 0; t < 2; ++t)
        for (index_t y = 0; y < 3; ++y)
          for (index_t x = 0; x < 5; ++x) {
            const auto col = flow::flow_color(f.at({b, 0, t, y, x}), f.at({b, 1, t, y, x}));
            for (index_t c = 0; c < 3; ++c) {
              const double d = std::fabs(double(out.at({b, c, t, y, x})) - double(col[std::size_t(c)]));
              if (!fast) CHECK(d == 0.0);
              else {
                CHECK(d <= 1.0 / 255 + 1e-7);
                off_by_a_step += d > 0;
              }
            }
          }
    if (fast) CHECK(off_by_a_step <= 3);
    for (index_t c = 0; c < 3; ++c) CHECK(out.at({1, c, 1, 2, 4}) == 1.f);  // zero motion is white
  }
  // The fast flag reaches the coding: on 2 × 65536 random vectors the batch op equals the
  // fast-atan2 policy exactly and differs from the exact coding somewhere.
  {
    tensor<float> many = tensor<float>::empty({2, 2, 1, 256, 256});
    const index_t plane = 256 * 256;
    for (index_t b = 0; b < 2; ++b)
      for (index_t i = 0; i < plane; ++i) {  // as the fast-atan2 test above: uniform length and angle
        const double rho = g.uniform(), ang = g.uniform(-kPi, kPi);
        many.data()[b * 2 * plane + i] = float(rho * std::cos(ang));
        many.data()[b * 2 * plane + plane + i] = float(rho * std::sin(ang));
      }
    const tensor<float> fast = augment::color_code_flow_batch(many, true);
    const tensor<float> exact = augment::color_code_flow_batch(many, false);
    flow_color_code_options fo;
    fo.fast_atan2 = true;
    bool equal_to_policy = true;
    for (index_t b = 0; b < 2; ++b) {
      clip_tensor one = ops::select(many, 0, b).clone();
      flow_color_code(fo).apply_flow({}, one);
      equal_to_policy = equal_to_policy && one.to_vector() == ops::select(fast, 0, b).clone().to_vector();
    }
    CHECK(equal_to_policy);
    CHECK(fast.to_vector() != exact.to_vector());
  }
  CHECK_THROWS_AS(augment::color_code_flow_batch(tensor<float>::zeros({2, 3, 1, 4, 4})), shape_error);
  CHECK_THROWS_AS(augment::color_code_flow_batch(tensor<float>::zeros({2, 2, 4})), shape_error);
}

TEST_CASE("photometric_batch: a malformed table is refused naming the sample, frame and column", "[augment]") {
  namespace pc = augment::photometric_column;
  const index_t nb = 2, nt = 3;
  augment::photometric_view v;
  color_jitter jitter;
  generator gen(5);
  v.jitter.push_back(jitter.coefficients(jitter.sample(gen, clip_geometry{}).frames[0]));
  v.grey = true;
  v.blur_sigma = 1.5;
  v.blur_kernel = 5;
  std::vector<float> rows = augment::photometric_rows(v, nt);
  augment::photometric_view nothing;
  nothing.normalize = false;
  const std::vector<float> second = augment::photometric_rows(nothing, nt);
  rows.insert(rows.end(), second.begin(), second.end());
  const shape_t rgb_shape{nb, 3, nt, 8, 9};
  auto rgb = tensor<float>::full(rgb_shape, 0.5f);
  auto table_with = [&](index_t b, index_t t, index_t column, float value) {
    std::vector<float> r = rows;
    r[std::size_t((b * nt + t) * augment::photometric_columns + column)] = value;
    return tensor<float>::from_vector({nb, nt, augment::photometric_columns}, r);
  };
  // The well-formed table runs, and the sample without ops passes through unchanged.
  const auto ok = augment::photometric_batch(rgb, tensor<float>::from_vector({nb, nt, augment::photometric_columns}, rows));
  const auto ov = ok.to_vector();
  for (std::size_t i = ov.size() / 2; i < ov.size(); ++i) REQUIRE(ov[i] == 0.5f);
  REQUIRE(ov[0] != 0.5f);
  CHECK_THROWS_WITH(augment::photometric_batch(rgb, table_with(1, 2, pc::op1, 7.f)),
                    Catch::Contains("sample 1, frame 2") && Catch::Contains("jitter op 1 is 7"));
  CHECK_THROWS_WITH(augment::photometric_batch(rgb, table_with(0, 1, pc::op3, rows[std::size_t(1 * augment::photometric_columns + pc::op0)])),
                    Catch::Contains("sample 0, frame 1") && Catch::Contains("twice"));
  CHECK_THROWS_WITH(augment::photometric_batch(rgb, table_with(0, 2, pc::grey, 0.f)),
                    Catch::Contains("sample 0, frame 2") && Catch::Contains("per clip"));
  CHECK_THROWS_WITH(augment::photometric_batch(rgb, table_with(0, 0, pc::blur_kernel, 4.f)),
                    Catch::Contains("sample 0, frame 0") && Catch::Contains("odd kernel"));
  CHECK_THROWS_WITH(augment::photometric_batch(rgb, table_with(1, 0, pc::hue, std::nanf(""))),
                    Catch::Contains("sample 1, frame 0") && Catch::Contains("not finite"));
  CHECK_THROWS_AS(augment::photometric_batch(rgb, table_with(0, 0, pc::normalize, 2.f)), value_error);
  // A blur wider than the frame, and a table of the wrong shape.
  CHECK_THROWS_WITH(augment::photometric_batch(tensor<float>::full({nb, 3, nt, 2, 9}, 0.5f),
                                               tensor<float>::from_vector({nb, nt, augment::photometric_columns}, rows)),
                    Catch::Contains("sample 0") && Catch::Contains("reflect padding"));
  CHECK_THROWS_WITH(augment::photometric_batch(rgb, tensor<float>::zeros({nb, nt + 1, augment::photometric_columns})),
                    Catch::Contains("[2, 4, 14]") && Catch::Contains("[2, 3, 14]"));
}
