// Tests for include/mscl/data/synthetic.hpp (the synthetic motion dataset).
//
// Oracles: exact pixel equality for determinism and for clip assembly (against direct reads of
// the rendered frames); the plan's own trajectories for the motion contract (each class moves as
// documented); an independent global block-matching estimate on the rendered pixels for the
// direction of translations; frame-difference energy for pauses and stillness; a nearest-centroid
// classifier on appearance statistics (must stay at chance) with a motion-energy positive control
// (must beat chance, so the classifier is able to detect information when there is some); and a
// few SGD steps on a tiny R3D for the learnability smoke check (the full bar is
// benchmarks/synthetic_learnability_prog.cpp).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <vector>

#include "mscl/data/synthetic.hpp"
#include "mscl/mscl.hpp"
#ifdef _OPENMP
#include <omp.h>
#endif

using namespace mscl::data;
using mscl::index_t;

namespace {

synthetic_motion_options small_options(int classes = 10, std::uint64_t seed = 7) {
  synthetic_motion_options o;
  o.num_classes = classes;
  o.frames = 24;
  o.height = 48;
  o.width = 48;
  o.seed = seed;
  return o;
}

bool same_frames(const frame_sequence& a, const frame_sequence& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t t = 0; t < a.size(); ++t)
    if (a[t].pixels != b[t].pixels || a[t].height != b[t].height || a[t].width != b[t].width) return false;
  return true;
}

double mean_abs_diff(const image_u8& a, const image_u8& b) {
  double s = 0;
  for (std::size_t j = 0; j < a.pixels.size(); ++j) s += std::abs(int(a.pixels[j]) - int(b.pixels[j]));
  return s / double(a.pixels.size());
}

bool is_moving(int label) { return motion_class(label) != motion_class::still; }

double angle_diff(double a, double b) {  // smallest |a - b| on the circle
  double d = std::fmod(std::abs(a - b), 2 * M_PI);
  return d > M_PI ? 2 * M_PI - d : d;
}

double wrapped_delta(double d, double period) {  // displacement on a torus, in (-period/2, period/2]
  d = std::fmod(d, period);
  if (d > period / 2) d -= period;
  if (d <= -period / 2) d += period;
  return d;
}

// Nearest-centroid accuracy (features standardised on the training set).
double nearest_centroid_accuracy(const std::vector<std::vector<double>>& xtr, const std::vector<int>& ytr,
                                 const std::vector<std::vector<double>>& xte, const std::vector<int>& yte, int k) {
  const std::size_t d = xtr[0].size();
  std::vector<double> mu(d, 0), sd(d, 0);
  for (const auto& x : xtr)
    for (std::size_t j = 0; j < d; ++j) mu[j] += x[j] / double(xtr.size());
  for (const auto& x : xtr)
    for (std::size_t j = 0; j < d; ++j) sd[j] += (x[j] - mu[j]) * (x[j] - mu[j]) / double(xtr.size());
  for (auto& s : sd) s = std::sqrt(s) + 1e-9;
  std::vector<std::vector<double>> cen(std::size_t(k), std::vector<double>(d, 0));
  std::vector<int> cnt(std::size_t(k), 0);
  for (std::size_t i = 0; i < xtr.size(); ++i) {
    cnt[std::size_t(ytr[i])]++;
    for (std::size_t j = 0; j < d; ++j) cen[std::size_t(ytr[i])][j] += (xtr[i][j] - mu[j]) / sd[j];
  }
  for (int c = 0; c < k; ++c)
    for (auto& v : cen[std::size_t(c)]) v /= std::max(1, cnt[std::size_t(c)]);
  int right = 0;
  for (std::size_t i = 0; i < xte.size(); ++i) {
    int best = 0;
    double bd = 1e300;
    for (int c = 0; c < k; ++c) {
      double dist = 0;
      for (std::size_t j = 0; j < d; ++j) {
        const double z = (xte[i][j] - mu[j]) / sd[j] - cen[std::size_t(c)][j];
        dist += z * z;
      }
      if (dist < bd) bd = dist, best = c;
    }
    right += best == yte[i];
  }
  return double(right) / double(xte.size());
}

}  // namespace

TEST_CASE("class list and option validation", "[data][synthetic]") {
  CHECK(std::string(motion_class_name(0)) == "right");
  CHECK(std::string(motion_class_name(4)) == "oscillate");
  CHECK(std::string(motion_class_name(5)) == "still");
  CHECK(std::string(motion_class_name(6)) == "rotate_cw");
  CHECK(std::string(motion_class_name(8)) == "zoom_in");
  CHECK(std::string(motion_class_name(9)) == "zoom_out");
  CHECK_THROWS_AS(motion_class_name(10), mscl::value_error);
  CHECK_THROWS_AS(motion_class_name(-1), mscl::value_error);
  auto bad = [](auto mutate) {
    synthetic_motion_options o;
    mutate(o);
    return o;
  };
  CHECK_THROWS_AS(synthetic_motion_generator(bad([](auto& o) { o.num_classes = 11; })), mscl::config_error);
  CHECK_THROWS_AS(synthetic_motion_generator(bad([](auto& o) { o.num_classes = 0; })), mscl::config_error);
  CHECK_THROWS_AS(synthetic_motion_generator(bad([](auto& o) { o.min_objects = 3, o.max_objects = 2; })), mscl::config_error);
  CHECK_THROWS_AS(synthetic_motion_generator(bad([](auto& o) { o.pause_probability = 1.5; })), mscl::config_error);
  CHECK_THROWS_AS(synthetic_motion_generator(bad([](auto& o) { o.height = 4; })), mscl::config_error);
  CHECK_THROWS_AS(synthetic_motion_generator(bad([](auto& o) { o.texture_kinds = 0; })), mscl::config_error);
  try {
    synthetic_motion_generator g(bad([](auto& o) { o.num_classes = 12; }));
    FAIL("no throw");
  } catch (const mscl::config_error& e) {
    CHECK_THAT(e.what(), Catch::Contains("num_classes") && Catch::Contains("12"));
  }
  // Clips that do not fit.
  synthetic_motion_generator g(small_options());
  clip_window w;
  w.frames = 8;
  w.stride = 4;  // needs 29 frames, the video has 24
  CHECK_THROWS_AS(render_clip_tensor(g, 0, w), mscl::value_error);
  clip_sampling s;
  s.frames = 8;
  s.stride = 4;
  CHECK_THROWS_AS(synthetic_motion_dataset(small_options(), 0, 10, s), mscl::config_error);
  s.stride = 2;
  s.crop_height = s.crop_width = 64;
  CHECK_THROWS_AS(synthetic_motion_dataset(small_options(), 0, 10, s), mscl::config_error);
}

TEST_CASE("rendering is deterministic in (seed, video) and nothing else", "[data][synthetic]") {
  const synthetic_motion_generator g(small_options(10, 7));
  const frame_sequence a = g.render(13);
  // Same video again, from a fresh generator, after rendering other videos first.
  const synthetic_motion_generator g2(small_options(10, 7));
  (void)g2.render(2);
  (void)g2.render(40);
  CHECK(same_frames(a, g2.render(13)));
  // Different seed, different video: different pixels.
  CHECK_FALSE(same_frames(a, synthetic_motion_generator(small_options(10, 8)).render(13)));
  CHECK_FALSE(same_frames(a, g.render(23)));  // same class (23 mod 10 = 3), another video
  // Appearance does not depend on the label: video 5 is `still` with 10 classes and `left`
  // with 4; neither zooms, so frame 0 (appearance and initial positions) is identical.
  const image_u8 f10 = synthetic_motion_generator(small_options(10, 7)).render(5)[0];
  const image_u8 f4 = synthetic_motion_generator(small_options(4, 7)).render(5)[0];
  CHECK(f10.pixels == f4.pixels);
  // Thread count does not matter for dataset batches.
  clip_sampling s;
  s.frames = 4;
  s.stride = 2;
  s.crop_height = s.crop_width = 40;
  const synthetic_motion_dataset ds(small_options(), 0, 12, s);
  std::vector<std::int64_t> ks{0, 3, 5, 7, 11};
#ifdef _OPENMP
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
#endif
  mscl::generator aug1(3);
  auto [x1, y1] = ds.batch(ks, &aug1);
#ifdef _OPENMP
  omp_set_num_threads(2);
#endif
  mscl::generator aug2(3);
  auto [x2, y2] = ds.batch(ks, &aug2);
#ifdef _OPENMP
  omp_set_num_threads(before);
#endif
  CHECK(x1.to_vector() == x2.to_vector());
  CHECK(y1 == y2);
}

TEST_CASE("labels are balanced and splits are disjoint blocks of videos", "[data][synthetic]") {
  const synthetic_motion_generator g(small_options(7));
  std::map<int, int> count;
  for (std::int64_t i = 0; i < 70; ++i) count[g.label_of(i)]++;
  REQUIRE(count.size() == 7);
  for (auto& [label, n] : count) CHECK(n == 10);
  CHECK_THROWS_AS(g.label_of(-1), mscl::value_error);
  const synthetic_motion_dataset train(small_options(7), 0, 35), test(small_options(7), 35, 14);
  std::map<int, int> tc, ec;
  std::set<std::int64_t> vids;
  for (std::int64_t k = 0; k < train.size(); ++k) tc[train.label(k)]++, vids.insert(train.video_index(k));
  for (std::int64_t k = 0; k < test.size(); ++k) {
    ec[test.label(k)]++;
    CHECK(vids.count(test.video_index(k)) == 0);
  }
  for (int c = 0; c < 7; ++c) CHECK(tc[c] == 5);
  for (int c = 0; c < 7; ++c) CHECK(ec[c] == 2);
  CHECK_THROWS_AS(train.label(35), mscl::value_error);
}

TEST_CASE("frames and clip tensors have the documented shapes and values", "[data][synthetic]") {
  synthetic_motion_options o = small_options();
  o.height = 40;
  o.width = 56;  // non-square on purpose
  const synthetic_motion_generator g(o);
  const frame_sequence f = g.render(4);
  REQUIRE(f.size() == 24);
  for (const auto& im : f) {
    CHECK(im.height == 40);
    CHECK(im.width == 56);
    CHECK(im.channels == 3);
  }
  clip_window w;
  w.first_frame = 3;
  w.frames = 5;
  w.stride = 3;
  w.y0 = 2;
  w.x0 = 7;
  w.height = 32;
  w.width = 40;
  const mscl::tensor<float> c = render_clip_tensor(g, 4, w);
  REQUIRE(c.shape() == mscl::shape_t{3, 5, 32, 40});
  bool all_equal = true;
  for (int ch = 0; ch < 3; ++ch)
    for (int t = 0; t < 5; ++t)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 40; ++x) {
          const float want = float(f[std::size_t(3 + 3 * t)].at(2 + y, 7 + x, ch)) / 255.0f;
          const float got = c.data()[((ch * 5 + t) * 32 + y) * 40 + x];
          all_equal = all_equal && want == got;
        }
  CHECK(all_equal);
  CHECK(render_clip_tensor(f, w).to_vector() == c.to_vector());
  // Dataset: evaluation windows are centred; batches stack items in order.
  clip_sampling s;
  s.frames = 8;
  s.stride = 2;
  s.crop_height = 32;
  s.crop_width = 48;
  const synthetic_motion_dataset ds(o, 10, 6, s);
  const clip_window cw = ds.window(0, nullptr);
  CHECK(cw.first_frame == (24 - 15) / 2);
  CHECK(cw.y0 == 4);
  CHECK(cw.x0 == 4);
  auto [x, y] = ds.batch({0, 1, 2, 3, 4, 5}, nullptr);
  REQUIRE(x.shape() == mscl::shape_t{6, 3, 8, 32, 48});
  for (std::int64_t k = 0; k < 6; ++k) {
    auto [ck, lk] = ds.get(k);
    CHECK(lk == y[std::size_t(k)]);
    CHECK(lk == index_t((10 + k) % 10));
    const auto v = ck.to_vector();
    CHECK(std::equal(v.begin(), v.end(), x.data() + k * ck.numel()));
  }
  float lo = 1, hi = 0;
  for (index_t j = 0; j < x.numel(); ++j) lo = std::min(lo, x.data()[j]), hi = std::max(hi, x.data()[j]);
  CHECK(lo >= 0.0f);
  CHECK(hi <= 1.0f);
  CHECK(hi - lo > 0.3f);  // something visible was rendered
  // Random windows stay inside the video and vary.
  mscl::generator aug(5);
  std::set<int> starts;
  for (int r = 0; r < 50; ++r) {
    const clip_window rw = ds.window(r % 6, &aug);
    CHECK(rw.first_frame + 7 * 2 < 24);
    CHECK(rw.y0 + 32 <= 40);
    CHECK(rw.x0 + 48 <= 56);
    starts.insert(rw.first_frame);
  }
  CHECK(starts.size() > 3);
}

TEST_CASE("each class moves as documented (trajectories of the plan)", "[data][synthetic]") {
  synthetic_motion_options o = small_options();
  o.frames = 32;
  const synthetic_motion_generator g(o);
  const double jitter = o.direction_jitter_deg * M_PI / 180.0;
  for (std::int64_t i = 0; i < 60; ++i) {
    const synthetic_video_plan p = g.plan(i);
    const motion_class mc = motion_class(p.label);
    INFO("video " << i << " class " << motion_class_name(p.label));
    REQUIRE(p.poses.size() == 32);
    REQUIRE(p.speed.size() == 31);
    for (std::size_t t = 0; t + 1 < p.poses.size(); ++t) {
      const double v = o.motion_px * p.speed[t];
      for (std::size_t k = 0; k < p.objects.size(); ++k) {
        const object_pose &a = p.poses[t][k], &b = p.poses[t + 1][k];
        const double dx = wrapped_delta(b.cx - a.cx, o.width), dy = wrapped_delta(b.cy - a.cy, o.height);
        const double moved = std::hypot(dx, dy);
        switch (mc) {
          case motion_class::right:
          case motion_class::left:
          case motion_class::down:
          case motion_class::up: {
            const double heading = mc == motion_class::right ? 0 : mc == motion_class::left ? M_PI : mc == motion_class::down ? M_PI / 2 : 1.5 * M_PI;
            CHECK(moved == Approx(v).margin(1e-9));
            if (moved > 1e-9) CHECK(angle_diff(std::atan2(dy, dx), heading) <= jitter + 1e-9);
            CHECK(b.angle == a.angle);
            CHECK(b.radius == a.radius);
            break;
          }
          case motion_class::rotate_cw:
          case motion_class::rotate_ccw:
            CHECK(moved == 0.0);
            if (v > 0) CHECK((mc == motion_class::rotate_cw ? b.angle - a.angle : a.angle - b.angle) > 0);
            else CHECK(b.angle == a.angle);
            // Edge speed = v unless capped at max_spin.
            CHECK(std::abs(b.angle - a.angle) == Approx(std::min(o.max_spin, v / a.radius)).margin(1e-9));
            break;
          case motion_class::zoom_in:
          case motion_class::zoom_out: {
            const bool respawn = moved > 1e-9;
            const double dr = b.radius - a.radius;
            if (!respawn) CHECK(dr == Approx(mc == motion_class::zoom_in ? o.zoom_rate * v : -o.zoom_rate * v).margin(1e-9));
            else CHECK((mc == motion_class::zoom_in ? dr < 0 : dr > 0));  // the one jump: respawn
            const double r0 = p.objects[k].r0;
            CHECK(b.radius >= o.zoom_min * r0 - 1e-9);
            CHECK(b.radius <= o.zoom_max * r0 + 1e-9);
            break;
          }
          case motion_class::oscillate:
            // Moves |step| <= v along one axis (a reversal inside a step cancels part of it).
            CHECK(moved <= v + 1e-9);
            if (v == 0) CHECK(moved == 0.0);
            break;
          case motion_class::still:
            CHECK(moved == 0.0);
            CHECK(b.angle == a.angle);
            CHECK(b.radius == a.radius);
            break;
        }
      }
    }
    if (mc == motion_class::oscillate) {
      // Signed steps along the axis of object 0 reverse after at most one stroke: a stroke is
      // osc_half_period_max frames of travel at nominal speed, so at the slowest level it takes
      // at most ceil(osc_half_period_max / speed_min) + 1 moving steps (the +1: a reversal
      // inside a step).
      const auto& p0 = p.poses;
      double ax = 0, ay = 0;
      int run = 0, longest = 0, reversals = 0;
      double previous = 0;
      for (std::size_t t = 0; t + 1 < p0.size(); ++t) {
        const double dx = wrapped_delta(p0[t + 1][0].cx - p0[t][0].cx, o.width), dy = wrapped_delta(p0[t + 1][0].cy - p0[t][0].cy, o.height);
        if (std::hypot(dx, dy) < 1e-9) continue;  // pause
        if (ax == 0 && ay == 0) ax = dx, ay = dy;
        const double along = dx * ax + dy * ay;
        if (previous != 0 && (along > 0) != (previous > 0)) run = 0, ++reversals;
        longest = std::max(longest, ++run);
        previous = along;
      }
      CHECK(longest <= int(std::ceil(o.osc_half_period_max / o.speed_min)) + 1);
      CHECK(reversals >= 2);
    }
  }
}

TEST_CASE("motion varies in time: speed levels, pauses, stillness in pixels", "[data][synthetic]") {
  synthetic_motion_options o = small_options();
  o.frames = 32;
  const synthetic_motion_generator g(o);
  int moving = 0, with_pause = 0, with_levels = 0;
  for (std::int64_t i = 0; i < 50; ++i) {
    const synthetic_video_plan p = g.plan(i);
    const frame_sequence f = g.render(i);
    INFO("video " << i << " class " << motion_class_name(p.label));
    std::set<double> levels;
    bool pause = false;
    int longest_pause = 0, run = 0;
    for (std::size_t t = 0; t + 1 < f.size(); ++t) {
      const double e = mean_abs_diff(f[t], f[t + 1]);  // frame-difference energy
      if (!is_moving(p.label)) {
        CHECK(e == 0.0);
        continue;
      }
      // The rendered pixels follow the profile: identical frames exactly in pauses.
      if (p.speed[t] == 0) CHECK(e == 0.0);
      else CHECK(e > 0.0);
      if (p.speed[t] == 0) pause = true, longest_pause = std::max(longest_pause, ++run);
      else run = 0, levels.insert(p.speed[t]);
    }
    if (!is_moving(p.label)) continue;
    ++moving;
    CHECK(longest_pause <= o.pause_max);
    with_pause += pause;
    with_levels += levels.size() >= 2;
    for (double l : levels) {
      CHECK(l >= o.speed_min);
      CHECK(l <= o.speed_max);
    }
  }
  REQUIRE(moving == 45);
  // pause_probability 0.2 per segment, ~6 segments per video: P(no pause) ~ 0.8^5 = 0.33.
  CHECK(with_pause >= moving / 3);
  CHECK(with_levels >= moving * 3 / 4);
}

TEST_CASE("translations move the pixels the labelled way (block matching)", "[data][synthetic]") {
  // Flat background and one flat-free object: the best global integer shift (on the torus)
  // between consecutive frames estimates the displacement independently of the plan.
  synthetic_motion_options o = small_options(4);
  o.background = background_kind::flat;
  o.min_objects = o.max_objects = 1;
  o.texture_kinds = texture_noise | texture_stripes | texture_checkers;
  o.pause_probability = 0;
  o.motion_px = 3.0;
  const synthetic_motion_generator g(o);
  const double headings[4] = {0, M_PI, M_PI / 2, 1.5 * M_PI};
  for (std::int64_t i = 0; i < 8; ++i) {
    const frame_sequence f = g.render(i);
    const int label = g.label_of(i);
    double sx = 0, sy = 0;
    for (std::size_t t = 0; t + 1 < 12; ++t) {
      int bx = 0, by = 0;
      double best = 1e300;
      for (int dy = -6; dy <= 6; ++dy)
        for (int dx = -6; dx <= 6; ++dx) {
          double sad = 0;
          for (int y = 0; y < o.height; ++y)
            for (int x = 0; x < o.width; ++x) {
              const int xs = ((x - dx) % o.width + o.width) % o.width, ys = ((y - dy) % o.height + o.height) % o.height;
              for (int c = 0; c < 3; ++c) sad += std::abs(int(f[t + 1].at(y, x, c)) - int(f[t].at(ys, xs, c)));
            }
          if (sad < best) best = sad, bx = dx, by = dy;
        }
      sx += bx;
      sy += by;
    }
    INFO("video " << i << " class " << motion_class_name(label) << " mean shift " << sx / 11 << ", " << sy / 11);
    CHECK(angle_diff(std::atan2(sy, sx), headings[label]) <= (o.direction_jitter_deg + 10) * M_PI / 180);
    // "Several pixels per frame": mean speed level 1 => ~3 px/frame.
    CHECK(std::hypot(sx, sy) / 11 >= 1.5);
  }
}

TEST_CASE("background: static by default, drifting on request", "[data][synthetic]") {
  synthetic_motion_options o = small_options(10);
  const frame_sequence still = synthetic_motion_generator(o).render(5);  // class 5: still
  CHECK(mean_abs_diff(still[0], still[20]) == 0.0);
  o.background = background_kind::drifting;
  const frame_sequence drift = synthetic_motion_generator(o).render(5);
  CHECK(mean_abs_diff(drift[0], drift[20]) > 0.5);
}

TEST_CASE("appearance carries no label information (nearest-centroid at chance)", "[data][synthetic]") {
  // Static appearance statistics per video (mean colour over the video and of frame 0, and the
  // spatial standard deviation of frame 0) must not predict the class better than chance; the
  // same classifier on a motion statistic (mean frame-difference energy) must, which shows the
  // test can detect information when there is some.
  synthetic_motion_options o = small_options(10, 11);
  o.frames = 12;
  o.height = o.width = 32;
  const synthetic_motion_generator g(o);
  std::vector<std::vector<double>> app, mot;
  std::vector<int> y;
  const int n = 600;
  for (int i = 0; i < n; ++i) {
    const frame_sequence f = g.render(i);
    std::vector<double> a(9, 0.0);
    for (const auto& im : f)
      for (std::size_t j = 0; j < im.pixels.size(); ++j) a[j % 3] += im.pixels[j] / double(im.pixels.size() / 3 * f.size());
    for (std::size_t j = 0; j < f[0].pixels.size(); ++j) a[3 + j % 3] += f[0].pixels[j] / double(f[0].pixels.size() / 3);
    for (std::size_t j = 0; j < f[0].pixels.size(); ++j) {
      const double d = f[0].pixels[j] - a[3 + j % 3];
      a[6 + j % 3] += d * d / double(f[0].pixels.size() / 3);
    }
    double e = 0;
    for (std::size_t t = 0; t + 1 < f.size(); ++t) e += mean_abs_diff(f[t], f[t + 1]);
    app.push_back(a);
    mot.push_back({e});
    y.push_back(g.label_of(i));
  }
  const std::size_t ntr = 400;
  auto split = [&](const std::vector<std::vector<double>>& x, double& acc) {
    const std::vector<std::vector<double>> xtr(x.begin(), x.begin() + ntr), xte(x.begin() + ntr, x.end());
    const std::vector<int> ytr(y.begin(), y.begin() + ntr), yte(y.begin() + ntr, y.end());
    acc = nearest_centroid_accuracy(xtr, ytr, xte, yte, 10);
  };
  double acc_app = 0, acc_mot = 0;
  split(app, acc_app);
  split(mot, acc_mot);
  INFO("appearance accuracy " << acc_app << ", motion-energy accuracy " << acc_mot << " (chance 0.10, 200 test videos)");
  // Chance 0.10; binomial sd over 200 test videos ~0.021: 0.18 is ~4 sd.
  CHECK(acc_app < 0.18);
  CHECK(acc_mot > 0.18);
}

TEST_CASE("learnability smoke: a few SGD steps on a tiny R3D reduce the training loss", "[data][synthetic]") {
  synthetic_motion_options o = small_options(4, 3);
  o.height = o.width = 32;
  o.frames = 16;
  clip_sampling s;
  s.frames = 4;
  s.stride = 2;
  const synthetic_motion_dataset ds(o, 0, 8, s);
  auto [x, y] = ds.batch({0, 1, 2, 3, 4, 5, 6, 7}, nullptr);
  auto net = mscl::models::r3d_tiny<float>(4, 0, 4);
  mscl::optim::sgd<float> opt(net.parameters(), {0.05, 0.9, 0.0, false});
  double first = 0, last = 0;
  for (int step = 0; step < 15; ++step) {
    auto loss = mscl::ops::cross_entropy(net.forward(x), y);
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (step == 0) first = loss.item();
    last = loss.item();
  }
  INFO("loss " << first << " -> " << last);
  CHECK(std::isfinite(last));
  CHECK(last < 0.8 * first);
}
