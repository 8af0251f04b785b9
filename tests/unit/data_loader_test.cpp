// The prefetching loader and the MSCL rawframes clip source on a tiny rawframes tree written by
// the test (RGB 24x32 JPEGs whose pixels encode x, y and the frame number; quantised flow JPEGs at
// half resolution whose codes encode x, y and the frame). References are independent: the frames
// are decoded here and cropped with a naive double-precision bilinear written in this file, the
// flow box is mapped by hand, and the MDS positions are checked against the sample file's chosen
// list and against the frame number read back from the pixels.
#include <catch2/catch.hpp>

#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

#include <mscl/data/loader.hpp>
#include <mscl/data/mscl_clip_source.hpp>
#include <mscl/data/on_backend_source.hpp>
#include <mscl/testing/tiny_mscl.hpp>

namespace fs = std::filesystem;
using namespace mscl;
using namespace mscl::data;

namespace {

constexpr int H = 24, W = 32, FH = 12, FW = 16, FRAMES = 20;

std::uint8_t rgb_value(int c, int y, int x, int f) { return std::uint8_t(c == 0 ? 8 * x : c == 1 ? 10 * y : 10 * f); }
std::uint8_t flow_code(int c, int y, int x, int f) { return std::uint8_t(c == 0 ? 40 + 8 * x + f : 60 + 10 * y + f); }

// root/v<i>/img_00001.jpg.. (FRAMES frames), flow_x_/flow_y_00001.jpg.. (FRAMES-1 maps), list.txt.
fs::path make_dataset(const std::string& name, int videos = 3) {
  const fs::path root = fs::temp_directory_path() / ("mscl_loader_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(root);
  std::ofstream list(root.string() + "_list.txt");
  for (int v = 0; v < videos; ++v) {
    const fs::path d = root / ("v" + std::to_string(v));
    fs::create_directories(d);
    for (int f = 0; f < FRAMES; ++f) {
      image_u8 img(H, W, 3);
      for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x)
          for (int c = 0; c < 3; ++c) img.at(y, x, c) = rgb_value(c, y, x, f);
      char buf[32];
      std::snprintf(buf, sizeof buf, "img_%05d.jpg", f + 1);
      io::write_jpeg((d / buf).string(), img, 100);
      if (f + 1 == FRAMES) continue;
      for (int c = 0; c < 2; ++c) {
        image_u8 q(FH, FW, 1);
        for (int y = 0; y < FH; ++y)
          for (int x = 0; x < FW; ++x) q.at(y, x, 0) = flow_code(c, y, x, f);
        std::snprintf(buf, sizeof buf, "flow_%c_%05d.jpg", c == 0 ? 'x' : 'y', f + 1);
        io::write_jpeg((d / buf).string(), q, 100);
      }
    }
    list << "v" << v << " " << FRAMES << " " << v % 2 << "\n";
  }
  return root;
}

mscl_clip_options base_options(const fs::path& root) {
  mscl_clip_options o;
  o.data_root = root.string();
  o.annotation_file = root.string() + "_list.txt";
  o.batch = 4;
  o.clip_len = 3;
  o.frame_interval = 2;
  o.short_side = 0;
  o.crop_size = 8;
  o.seed = 7;
  return o;
}

bool same(const tensor<float>& a, const tensor<float>& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), sizeof(float) * std::size_t(a.numel())) == 0;
}
bool same(const ssl::mscl_batch<float>& a, const ssl::mscl_batch<float>& b) {
  return same(a.rgb_q, b.rgb_q) && same(a.rgb_k, b.rgb_k) && same(a.flow_q, b.flow_q) && same(a.flow_k, b.flow_k) &&
         same(a.flow_aug_q, b.flow_aug_q) && same(a.flow_aug_k, b.flow_aug_k);
}

// PyTorch bilinear (align_corners = false) of the box [x0, x0+w) x [y0, y0+h) of plane p (ph x pw)
// to out x out, in double.
double bilinear(const std::vector<double>& p, int pw, const augment::crop_box& b, int out, int oy, int ox) {
  auto axis = [out](index_t first, index_t n, int d, int& i0, int& i1, double& l1) {
    double s = double(n) / double(out) * (d + 0.5) - 0.5;
    if (s < 0) s = 0;
    i0 = int(s);
    i1 = i0 + (i0 < n - 1 ? 1 : 0);
    l1 = s - i0;
    i0 += int(first);
    i1 += int(first);
  };
  int y0, y1, x0, x1;
  double ly, lx;
  axis(b.y, b.h, oy, y0, y1, ly);
  axis(b.x, b.w, ox, x0, x1, lx);
  auto at = [&](int y, int x) { return p[std::size_t(y) * std::size_t(pw) + std::size_t(x)]; };
  return (1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x1)) + ly * ((1 - lx) * at(y1, x0) + lx * at(y1, x1));
}

double round_half_even(double v) {
  const double r = std::round(v);
  return std::fabs(v - std::trunc(v)) == 0.5 ? 2.0 * std::round(v / 2.0) : r;
}

struct cleanup {
  fs::path root;
  ~cleanup() {
    std::error_code ec;
    fs::remove_all(root, ec);
    fs::remove(root.string() + "_list.txt", ec);
    fs::remove(root.string() + "_samples.jsonl", ec);
  }
};

}  // namespace

TEST_CASE("loader: batches are bit-identical with 0, 1 and 3 workers, and starting at 5 equals skipping 5", "[data][loader]") {
  const fs::path root = make_dataset("det");
  cleanup c{root};
  auto src = std::make_shared<const mscl_clip_source>(base_options(root));  // flip, colour aug, FRA all on
  std::vector<ssl::mscl_batch<float>> ref;
  {
    prefetch_loader<mscl_clip_source> l0(src, {0, 2, 0});
    for (long i = 0; i < 8; ++i) ref.push_back(l0.batch(i));
  }
  REQUIRE(ref[0].rgb_q.shape() == shape_t{4, 3, 3, 8, 8});
  REQUIRE(ref[0].flow_aug_k.shape() == shape_t{4, 3, 3, 8, 8});
  CHECK_FALSE(same(ref[0], ref[1]));
  CHECK_FALSE(same(ref[0].rgb_q, ref[0].rgb_k));
  for (int workers : {1, 3}) {
    prefetch_loader<mscl_clip_source> l(src, {workers, 2, 0});
    for (long i = 0; i < 8; ++i) CHECK(same(l.batch(i), ref[std::size_t(i)]));
    CHECK(l.stats().batches == 8);
  }
  {
    prefetch_loader<mscl_clip_source> l(src, {2, 3, 5});
    for (long i = 5; i < 8; ++i) CHECK(same(l.batch(i), ref[std::size_t(i)]));
    CHECK(same(l.batch(2), ref[2]));  // out of order: restarts there
    CHECK(same(l.batch(3), ref[3]));
    CHECK(l.stats().restarts == 1);
  }
  // a fresh source object with the same options gives the same data (no hidden state)
  mscl_clip_source again(base_options(root));
  CHECK(same(again.batch(6), ref[6]));
  // every video once per epoch (3 videos, batch 4: slots 0..11 of iterations 0..2 are 4 epochs)
  for (long e = 0; e < 4; ++e) {
    std::vector<index_t> seen;
    for (index_t g = 3 * e; g < 3 * e + 3; ++g) seen.push_back(src->video_for(g / 4, g % 4));
    std::sort(seen.begin(), seen.end());
    CHECK(seen == std::vector<index_t>{0, 1, 2});
  }
}

TEST_CASE("clip source: raw flows colour-coded after the loader (data::on_backend_source) equal the loader's coding",
          "[data][loader]") {
  const fs::path root = make_dataset("rawflow");
  cleanup c{root};
  for (bool fast : {false, true}) {
    INFO("fast_atan2 " << fast);
    mscl_clip_options o = base_options(root);
    o.fast_atan2 = fast;
    const mscl_clip_source coded(o);
    o.color_code_flow = false;
    const mscl_clip_source raw(o);
    // What mscl-pretrain --device cuda does, here with the CPU as the "device".
    const auto recoded = batches_on_backend<cpu>(raw, {true, fast});
    for (long i = 0; i < 3; ++i) {
      const auto r = raw.batch(i);
      CHECK(r.flow_q.shape() == shape_t{4, 2, 3, 8, 8});
      CHECK(same(recoded.batch(i), coded.batch(i)));
    }
  }
  // Colour-coding flows that already are colour images is refused, naming the shape.
  const mscl_clip_source coded(base_options(root));
  const auto twice = batches_on_backend<cpu>(coded, {true, false});
  CHECK_THROWS_WITH(twice.batch(0), Catch::Contains("raw N×2×T×H×W") && Catch::Contains("[4, 3, 3, 8, 8]"));
}

TEST_CASE("clip source: RGB photometric augmentation left to the training device equals the loader's own",
          "[data][loader]") {
  const fs::path root = make_dataset("photometric");
  cleanup c{root};
  for (int variant = 0; variant < 3; ++variant) {
    INFO("variant " << variant);
    mscl_clip_options o = base_options(root);
    o.color_code_flow = variant != 1;
    o.blur_p = variant == 2 ? 1.0 : 0.5;     // every view blurred in one variant
    o.jitter_per_frame = variant == 1;       // §11 A11 per-frame factors
    o.normalize_rgb = variant != 2;
    const mscl_clip_source host(o);
    o.rgb_photometric = false;
    const mscl_clip_source deferred(o);
    // What mscl-pretrain --device cuda does, here with the CPU as the "device".
    const auto on_device = batches_on_backend<cpu>(deferred, {o.color_code_flow == false, false});
    const auto coded_host = batches_on_backend<cpu>(host, {o.color_code_flow == false, false});
    int grey = 0, blurred = 0, jittered = 0;
    for (long i = 0; i < 3; ++i) {
      const auto raw = deferred.batch(i);
      REQUIRE(raw.rgb_photometric_q.shape() == shape_t{4, 3, augment::photometric_columns});
      REQUIRE(raw.rgb_photometric_k.shape() == shape_t{4, 3, augment::photometric_columns});
      for (index_t b = 0; b < 4; ++b) {
        const float* row = raw.rgb_photometric_q.data() + b * 3 * augment::photometric_columns;
        grey += row[augment::photometric_column::grey] != 0.f;
        blurred += row[augment::photometric_column::blur_sigma] > 0.f;
        jittered += row[augment::photometric_column::op0] >= 0.f;
        CHECK(row[augment::photometric_column::normalize] == (o.normalize_rgb ? 1.f : 0.f));
      }
      // Cropped and flipped only: values stay in [0, 1] before the stage.
      const auto v = raw.rgb_q.to_vector();
      CHECK(*std::min_element(v.begin(), v.end()) >= 0.f);
      CHECK(*std::max_element(v.begin(), v.end()) <= 1.f);
      const auto got = on_device.batch(i);
      CHECK_FALSE(got.rgb_photometric_q.defined());
      CHECK(same(got, coded_host.batch(i)));
    }
    CHECK(jittered > 0);
    if (variant == 2) CHECK(blurred == 12);
    INFO("grey " << grey << ", blurred " << blurred << ", jittered " << jittered);
  }
}

TEST_CASE("mscl objective: refuses a batch whose RGB still waits for its photometric augmentation", "[data][loader]") {
  const fs::path root = make_dataset("pending");
  cleanup c{root};
  mscl_clip_options o = base_options(root);
  o.rgb_photometric = false;
  const mscl_clip_source deferred(o);
  ssl::mscl_objective<float> objective(testing::tiny_mscl_options());
  CHECK_THROWS_WITH(objective.forward(deferred.batch(0)), Catch::Contains("photometric") && Catch::Contains("on_backend_source"));
}

TEST_CASE("clip source: the FRA views are the base views rotated by the sample's angle, in both pairings",
          "[data][loader]") {
  const fs::path root = make_dataset("fra");
  cleanup c{root};
  for (bool one_box : {false, true}) {
  INFO("one box for q and k: " << one_box);
  mscl_clip_options o = base_options(root);
  o.color_code_flow = false;  // raw flows: the rotation is checked on the vectors themselves
  if (one_box) {  // area 1: torchvision's fallback, the centred whole frame, for both views
    o.crop_area_min = o.crop_area_max = 1.0;
    o.flip = false;
  }
  const mscl_clip_source intended(o);
  o.official_literal_flow_views = true;
  const mscl_clip_source literal(o);
  auto rotated_by = [](const tensor<float>& x, double angle) {  // R(angle) (u, v), in double
    tensor<float> y = x.clone();
    const index_t inner = x.numel() / 2;
    for (index_t i = 0; i < inner; ++i) {
      const double u = x.data()[i], v = x.data()[inner + i];
      y.data()[i] = float(u * std::cos(angle) - v * std::sin(angle));
      y.data()[inner + i] = float(u * std::sin(angle) + v * std::cos(angle));
    }
    return y;
  };
  auto close = [](const tensor<float>& a, const tensor<float>& b) {
    if (a.shape() != b.shape()) return false;
    for (index_t i = 0; i < a.numel(); ++i)
      if (std::fabs(a.data()[i] - b.data()[i]) > 1e-6f) return false;
    return true;
  };
  int rotated_nontrivially = 0, shared_boxes = 0;
  for (long it = 0; it < 2; ++it)
    for (index_t s = 0; s < 4; ++s) {
      const mscl_clip_sample a = intended.sample(it, s), l = literal.sample(it, s);
      INFO("iteration " << it << ", slot " << s << ", chunk " << a.fra_chunk);
      REQUIRE(a.fra_chunk >= 0);
      REQUIRE(a.fra_chunk == l.fra_chunk);
      const double angle = ssl::fra_angle(a.fra_chunk);
      // intended (§11 A1): q = [F(a) | R F(a)], k = [F(b) | R F(b)]
      CHECK(close(a.flow_aug_q, rotated_by(a.flow_q, angle)));
      CHECK(close(a.flow_aug_k, rotated_by(a.flow_k, angle)));
      // released: q = [F(a) | F(b)] in q's box, k = [R F(a) | R F(b)] in k's box
      CHECK(same(l.flow_q, a.flow_q));
      CHECK(same(l.flow_aug_k, a.flow_aug_k));
      CHECK(same(l.rgb_q, a.rgb_q));
      // Where both views have one box (area 1 leaves two: the whole frame, or the centred square
      // when no candidate fits), F(b) in q's box is k's base view and F(a) in k's box is q's.
      if (one_box && a.flow_box_q == a.flow_box_k) {
        ++shared_boxes;
        CHECK(same(l.flow_aug_q, a.flow_k));
        CHECK(close(l.flow_k, rotated_by(a.flow_q, angle)));
      }
      if (!close(a.flow_aug_q, a.flow_q)) ++rotated_nontrivially;
    }
  CHECK(rotated_nontrivially > 0);
  if (one_box) CHECK(shared_boxes > 0);
  }
}

TEST_CASE("loader: rank slots are disjoint and their union is the world_size 1 batch", "[data][loader]") {
  CHECK(rank_slots(8, 1, 4) == slot_range{2, 2});
  CHECK_THROWS_AS(rank_slots(6, 0, 4), config_error);
  const fs::path root = make_dataset("rank");
  cleanup c{root};
  auto src = std::make_shared<const mscl_clip_source>(base_options(root));
  prefetch_loader<mscl_clip_source> whole(src, {1, 2, 0, 0, 1});
  prefetch_loader<mscl_clip_source> r0(src, {1, 2, 0, 0, 2}), r1(src, {2, 2, 0, 1, 2});
  CHECK(r0.slots() == slot_range{0, 2});
  CHECK(r1.slots() == slot_range{2, 2});
  for (long i = 0; i < 3; ++i) {
    const auto w = whole.batch(i), a = r0.batch(i), b = r1.batch(i);
    REQUIRE(a.rgb_q.shape()[0] == 2);
    CHECK(same(ops::cat<float, cpu>({a.rgb_q, b.rgb_q}, 0), w.rgb_q));
    CHECK(same(ops::cat<float, cpu>({a.flow_aug_k, b.flow_aug_k}, 0), w.flow_aug_k));
    CHECK_FALSE(same(a.rgb_q, b.rgb_q));
  }
}

TEST_CASE("loader: a worker's exception reaches the consumer naming the corrupt file", "[data][loader]") {
  const fs::path root = make_dataset("corrupt");
  cleanup c{root};
  for (int f = 1; f <= FRAMES; ++f) {  // every RGB frame of v1 is garbage
    char buf[32];
    std::snprintf(buf, sizeof buf, "img_%05d.jpg", f);
    std::ofstream((root / "v1" / buf).string(), std::ios::binary) << "not a jpeg at all";
  }
  mscl_clip_options o = base_options(root);
  o.shuffle = false;  // slot 1 of iteration 0 is v1
  auto src = std::make_shared<const mscl_clip_source>(o);
  prefetch_loader<mscl_clip_source> l(src, {2, 4, 0});
  try {
    l.batch(0);
    FAIL("no exception");
  } catch (const io_error& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find((root / "v1" / "img_").string()) != std::string::npos);
    CHECK(what.find("slot 1") != std::string::npos);
  }
  // synchronous mode reports the same way; the loader above shuts down cleanly in its destructor
  prefetch_loader<mscl_clip_source> s(src, {0, 1, 0});
  CHECK_THROWS_AS(s.batch(0), io_error);
  // a wrong root or list names the path
  o.data_root = (root / "missing").string();
  CHECK_THROWS_WITH(mscl_clip_source(o), Catch::Contains((root / "missing").string()));
  o = base_options(root);
  o.annotation_file = root.string() + "_nolist.txt";
  CHECK_THROWS_WITH(mscl_clip_source(o), Catch::Contains("_nolist.txt"));
  o = base_options(root);
  o.blur_p = 1.5;
  CHECK_THROWS_WITH(mscl_clip_source(o), Catch::Contains("blur_p must be in [0, 1], got 1.5"));
}

TEST_CASE("clip source: blur_p reaches the RGB augmentation", "[data][loader]") {
  const fs::path root = make_dataset("blur");
  cleanup c{root};
  auto rgb_of = [&](double blur_p) {
    mscl_clip_options o = base_options(root);
    o.crop_size = 20;  // the blur kernel is ⌊0.1·crop⌋ made odd: 3 here (1, no blur, at the default 8)
    o.color_aug = true;
    o.blur_p = blur_p;
    return mscl_clip_source(o).batch(0).rgb_q;
  };
  const auto none = rgb_of(0.0), again = rgb_of(0.0), all = rgb_of(1.0);
  double repeat = 0, blurred = 0;
  for (index_t i = 0; i < none.numel(); ++i) {
    repeat = std::max(repeat, double(std::abs(none.data()[i] - again.data()[i])));
    blurred = std::max(blurred, double(std::abs(none.data()[i] - all.data()[i])));
  }
  CHECK(repeat == 0.0);     // same seed, same views
  CHECK(blurred > 1e-3);    // blur_p 1 blurs every clip (the frames are ramps: the borders change)
}

TEST_CASE("clip source: the crop box is the same region of RGB and flow, and the pixels are that box", "[data][loader]") {
  const fs::path root = make_dataset("crop");
  cleanup c{root};
  for (index_t short_side : {index_t(0), index_t(48)}) {
    mscl_clip_options o = base_options(root);
    o.short_side = short_side;
    o.flip = false;
    o.color_aug = false;
    o.normalize_rgb = false;
    o.fra = false;
    o.color_code_flow = false;
    mscl_clip_source src(o);
    for (long it = 0; it < 3; ++it)
      for (index_t slot = 0; slot < 4; ++slot) {
        const mscl_clip_sample s = src.sample(it, slot);
        const augment::crop_box rb = s.rgb_box_q, fb = s.flow_box_q;
        INFO("short side " << short_side << " box " << rb.x << "," << rb.y << " " << rb.w << "x" << rb.h << " flow " << fb.x
                           << "," << fb.y << " " << fb.w << "x" << fb.h);
        if (short_side == 0) {  // RGB → flow plane: each edge scaled by 1/2, rounded half to even
          CHECK(fb.x == index_t(round_half_even(rb.x * 0.5)));
          CHECK(fb.y == index_t(round_half_even(rb.y * 0.5)));
          CHECK(fb.x + fb.w == index_t(round_half_even((rb.x + rb.w) * 0.5)));
          CHECK(fb.y + fb.h == index_t(round_half_even((rb.y + rb.h) * 0.5)));
        } else {  // both mapped from the 48x64 virtual plane: the same region up to one pixel
          CHECK(std::abs(double(fb.x) - rb.x * 0.5) <= 1.0);
          CHECK(std::abs(double(fb.y + fb.h) - (rb.y + rb.h) * 0.5) <= 1.0);
        }
        const std::string dir = (root / ("v" + std::to_string(s.video))).string();
        double max_err_rgb = 0, max_err_flow = 0;
        for (std::size_t t = 0; t < s.query_frames.size(); ++t) {
          const int f = int(s.query_frames[t]);
          char buf[32];
          std::snprintf(buf, sizeof buf, "/img_%05d.jpg", f + 1);
          const image_u8 img = io::read_jpeg(dir + buf, 3);
          for (int ch = 0; ch < 3; ++ch) {
            std::vector<double> plane(std::size_t(H) * W);
            for (int y = 0; y < H; ++y)
              for (int x = 0; x < W; ++x) plane[std::size_t(y) * W + std::size_t(x)] = img.at(y, x, ch) / 255.0;
            for (int oy = 0; oy < 8; ++oy)
              for (int ox = 0; ox < 8; ++ox) {
                const double got = s.rgb_q.data()[((ch * 3 + index_t(t)) * 8 + oy) * 8 + ox];
                max_err_rgb = std::max(max_err_rgb, std::fabs(got - bilinear(plane, W, rb, 8, oy, ox)));
              }
          }
          // flow: dequantise, normalise by the max length of the whole map, crop the flow box
          std::vector<double> u(std::size_t(FH) * FW), v(u.size());
          std::snprintf(buf, sizeof buf, "/flow_x_%05d.jpg", f + 1);
          const image_u8 qx = io::read_jpeg(dir + buf, 1);
          std::snprintf(buf, sizeof buf, "/flow_y_%05d.jpg", f + 1);
          const image_u8 qy = io::read_jpeg(dir + buf, 1);
          double mx = 0;
          for (std::size_t i = 0; i < u.size(); ++i) {
            u[i] = qx.pixels[i] * 40.0 / 255.0 - 20.0;
            v[i] = qy.pixels[i] * 40.0 / 255.0 - 20.0;
            mx = std::max(mx, std::hypot(u[i], v[i]));
          }
          for (std::size_t i = 0; i < u.size(); ++i) {
            u[i] /= mx + 1e-5;
            v[i] /= mx + 1e-5;
          }
          for (int oy = 0; oy < 8; ++oy)
            for (int ox = 0; ox < 8; ++ox) {
              const float* fq = s.flow_q.data();
              const double gu = fq[(index_t(t) * 8 + oy) * 8 + ox], gv = fq[((3 + index_t(t)) * 8 + oy) * 8 + ox];
              max_err_flow = std::max(max_err_flow, std::fabs(gu - bilinear(u, FW, fb, 8, oy, ox)));
              max_err_flow = std::max(max_err_flow, std::fabs(gv - bilinear(v, FW, fb, 8, oy, ox)));
            }
        }
        CHECK(max_err_rgb < 1e-5);
        CHECK(max_err_flow < 1e-5);
      }
  }
}

TEST_CASE("clip source: MDS chosen starts are respected, in the indices and in the pixels", "[data][loader]") {
  const fs::path root = make_dataset("mds");
  cleanup c{root};
  const std::vector<index_t> chosen{2, 9, 15};
  std::vector<mds_video_samples> vids;
  for (int v = 0; v < 3; ++v) {
    mds_video_samples s;
    s.video = "v" + std::to_string(v);
    s.num_frames = FRAMES - 1;  // 19 flow maps: N is capped by the flow count
    s.scores.assign(std::size_t(s.num_frames), 1.0);
    s.chosen = chosen;
    vids.push_back(s);
  }
  const std::string samples = root.string() + "_samples.jsonl";
  write_mds_samples(samples, mds_options{}, vids);
  mscl_clip_options o = base_options(root);
  o.samples_file = samples;
  o.color_aug = false;
  o.normalize_rgb = false;
  auto src = std::make_shared<const mscl_clip_source>(o);
  int query_hits = 0;
  for (long it = 0; it < 6; ++it)
    for (index_t slot = 0; slot < 4; ++slot) {
      const mscl_clip_sample s = src->sample(it, slot);
      for (const auto* frames : {&s.query_frames, &s.key_frames}) {
        REQUIRE(frames->size() == 3);
        CHECK(std::binary_search(chosen.begin(), chosen.end(), (*frames)[0]));
        for (std::size_t j = 0; j < 3; ++j) CHECK((*frames)[j] == ((*frames)[0] + 2 * index_t(j)) % (FRAMES - 1));
      }
      query_hits += s.query_frames[0] != chosen[0];
      // the blue channel encodes the frame number: the decoded clip is the sampled frames
      for (std::size_t t = 0; t < 3; ++t) {
        double mean = 0;
        for (index_t i = 0; i < 64; ++i) mean += s.rgb_q.data()[(2 * 3 + index_t(t)) * 64 + i];
        CHECK(std::fabs(mean / 64 * 255 - 10.0 * double(s.query_frames[t])) < 3.0);
      }
    }
  CHECK(query_hits > 0);  // not only the fallback start
  // the loader serves the same samples
  prefetch_loader<mscl_clip_source> l(src, {2, 2, 0});
  const auto b = l.batch(1);
  CHECK(same(b.rgb_q, src->batch(1).rgb_q));
  // a sample file that disagrees with the data set is refused, naming the file
  vids[0].num_frames = 12;
  vids[0].scores.resize(12);
  vids[0].chosen = {2, 9};
  write_mds_samples(samples, mds_options{}, vids);
  CHECK_THROWS_WITH(mscl_clip_source(o), Catch::Contains("_samples.jsonl"));  // v0 is probed at construction
}

TEST_CASE("clip source: float .flo flow gives the same views as the quantised JPEG flow it holds", "[data][loader]") {
  const fs::path root = make_dataset("flo");
  cleanup c{root};
  mscl_clip_options o = base_options(root);
  o.color_code_flow = false;
  const mscl_clip_source jpeg_src(o);
  const auto want = jpeg_src.batch(2);
  const fs::path flo_root = root.string() + "_flo";
  cleanup c2{flo_root};
  for (int v = 0; v < 3; ++v) {
    const fs::path d = flo_root / ("v" + std::to_string(v));
    fs::create_directories(d);
    for (int f = 0; f + 1 < FRAMES; ++f) {
      flow_field m(FH, FW);
      char buf[32];
      std::snprintf(buf, sizeof buf, "/flow_x_%05d.jpg", f + 1);
      const image_u8 qx = io::read_jpeg((root / ("v" + std::to_string(v))).string() + buf, 1);
      std::snprintf(buf, sizeof buf, "/flow_y_%05d.jpg", f + 1);
      const image_u8 qy = io::read_jpeg((root / ("v" + std::to_string(v))).string() + buf, 1);
      for (std::size_t i = 0; i < m.u.size(); ++i) {
        m.u[i] = flow::dequantize_flow_value(qx.pixels[i]);
        m.v[i] = flow::dequantize_flow_value(qy.pixels[i]);
      }
      std::snprintf(buf, sizeof buf, "/flow_%05d.flo", f + 1);
      io::write_flo(d.string() + buf, m);
    }
  }
  o.flow_root = flo_root.string();
  const mscl_clip_source flo_src(o);
  const auto got = flo_src.batch(2);
  CHECK(same(got, want));
  CHECK(same(got.flow_aug_k, want.flow_aug_k));
}

#else
TEST_CASE("loader: needs MSCL_WITH_JPEG", "[data][loader]") { SUCCEED("built without JPEG support"); }
#endif
