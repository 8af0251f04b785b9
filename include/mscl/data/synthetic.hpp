/// \file synthetic.hpp
/// \brief The built-in synthetic motion dataset (the default dataset of the demo): procedurally
///        rendered videos whose class is defined only by how things move, so that a
///        motion-sensitive objective has something to learn and an appearance-only shortcut has
///        nothing. Renders video i deterministically from (seed, i); serves (clip tensor, label)
///        from memory with a train/test split by video index.
///
/// Why it looks the way it does (shared/spec/PROTOTYPE.md and
/// benchmarks/synthetic_learnability_prog.cpp): a background that drifts independently of the
/// objects made even supervised training fail, and 1–2 px/frame motion at 64 px stayed at chance;
/// constant-velocity motion makes frame-level negatives at other time steps false negatives for
/// LMCL/MDS. Measured here: with 1–3 small objects a supervised narrow R3D stays near chance for
/// hundreds of steps (even 2 classes with one object reached only ~80 %); what made RGB motion
/// learnable in minutes was *dense* motion evidence (4–6 objects of radius 0.15–0.25 of the
/// frame, textured so their interiors move too), lr 0.01 rather than 0.1, and a large procedural
/// training set (2000 videos; rendering is cheap). So by default: static low-contrast
/// background, 40×40 frames (32×32 crops), 2 px/frame nominal speed (4 px per sampled frame at
/// clip stride 2), and a speed profile that changes in time (levels, short pauses, heading
/// changes, reversals).
///
/// Classes (label = index in this list; `num_classes = K` uses the first K):
///
///   | label | name        | how every object moves                                              |
///   |-------|-------------|---------------------------------------------------------------------|
///   | 0     | right       | translates along heading 0° ± `direction_jitter_deg` (x grows)       |
///   | 1     | left        | heading 180° ± jitter                                               |
///   | 2     | down        | heading 90° ± jitter (image y grows)                                 |
///   | 3     | up          | heading 270° ± jitter                                               |
///   | 4     | oscillate   | translates back and forth along a random per-video axis; reverses    |
///   |       |             | after each `osc_half_period` frames' worth of travel                 |
///   | 5     | still       | nothing moves                                                       |
///   | 6     | rotate_cw   | spins about its own centre, clockwise on screen; edge speed = speed  |
///   | 7     | rotate_ccw  | spins counter-clockwise on screen                                   |
///   | 8     | zoom_in     | radius grows linearly (dr/dt = zoom_rate·speed) from zoom_min·r0 to  |
///   |       |             | zoom_max·r0, then respawns small at a new random position            |
///   | 9     | zoom_out    | radius shrinks from zoom_max·r0 to zoom_min·r0, then respawns large  |
///
/// The order puts the classes a narrow R3D learns from RGB within minutes first: with 10
/// classes the learnability benchmark reached 90–100 % on classes 0–5 but only within-pair chance
/// on the rotation and zoom pairs (their sense is a local chirality / time-reversal cue), so the
/// demo uses the first 6 (the default) and 7–10 are a harder setting.
///
/// "speed" is the nominal `motion_px` (pixels per rendered frame at the rendered resolution)
/// times the video's speed profile m(t). The profile is a sequence of segments of
/// `segment_min..segment_max` frames; at each new segment, with probability `pause_probability`
/// the segment is a pause (m = 0, length 1..`pause_max` frames, never longer, so a clip spanning
/// more frames always moves), otherwise with probability `speed_change_probability` a new level
/// m ~ U[speed_min, speed_max] is drawn (else the previous level is kept), and for translations
/// with probability `direction_change_probability` a new heading within ± jitter of the class
/// heading is drawn. All objects of a video share the profile (coherent motion). Translations
/// wrap around the frame (a torus), so objects never leave and positions carry no information.
///
/// Appearance is drawn from its own random streams before and independently of the label: 1..N
/// objects (disk, square, triangle, ellipse, ring, cross) with a procedural texture attached to
/// the object (value noise, stripes, checkers, or flat) in two random colours, over a random
/// static low-contrast textured background. Time-reversal pairs (right/left, down/up, cw/ccw,
/// in/out) have identical single-frame statistics, so no frame-level appearance cue separates
/// them. Horizontal flips swap right/left and cw/ccw: never flip-augment this data without
/// relabelling.
///
/// Determinism: video i uses `generator(seed, i·2^20)` for appearance and
/// `generator(seed, i·2^20 + 2^19)` for motion, so the same (seed, i) renders the same pixels
/// whatever `num_classes` or the order in which videos are asked for (appearance does not even
/// depend on the class count), and rendering is independent of the thread count.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../core/tensor.hpp"
#include "frame.hpp"

namespace mscl::data {

// ------------------------------------------------------------------------------------------ classes

enum class motion_class : int { right = 0, left, down, up, oscillate, still, rotate_cw, rotate_ccw, zoom_in, zoom_out };
inline constexpr int max_motion_classes = 10;

/// Name of label `k` in the fixed class list (used for class directories and classInd.txt).
inline const char* motion_class_name(int k) {
  static const char* const names[max_motion_classes] = {"right",     "left",       "down",    "up",      "oscillate",
                                                        "still",     "rotate_cw",  "rotate_ccw", "zoom_in", "zoom_out"};
  MSCL_CHECK(k >= 0 && k < max_motion_classes, value_error,
             "motion_class_name: label must be in [0, " << max_motion_classes << "), got " << k);
  return names[k];
}

/// Object texture kinds, a bit mask in `synthetic_motion_options::texture_kinds`.
enum texture_kind : unsigned { texture_flat = 1u, texture_noise = 2u, texture_stripes = 4u, texture_checkers = 8u };
inline constexpr unsigned texture_all = texture_noise | texture_stripes | texture_checkers;

/// Background behaviour. `drifting` moves the background texture at its own random constant
/// velocity (independent of the class): a harder, nuisance-motion variant; the prototype found
/// that supervised RGB training fails on it, so it is not the default.
enum class background_kind { static_texture, drifting, flat };

struct synthetic_motion_options {
  int num_classes = 6;          ///< first K classes of the fixed list, 1..10 (6: the demo)
  int frames = 32;              ///< frames per video
  int height = 40, width = 40;  ///< rendered resolution (the demo crops 32×32 clips from it)
  int min_objects = 4, max_objects = 6;  ///< dense objects: more moving pixels per clip (see below)
  double object_size_min = 0.15, object_size_max = 0.25;  ///< nominal radius r0 as a fraction of min(h, w)
  double motion_px = 2.0;       ///< nominal speed, pixels per rendered frame (edge speed for rotation)
  double speed_min = 0.5, speed_max = 1.5;  ///< range of the speed level m(t) of a moving segment
  int segment_min = 3, segment_max = 7;     ///< frames per speed segment
  double speed_change_probability = 0.7;    ///< a new segment draws a new speed level
  double pause_probability = 0.2;           ///< a new segment is a pause (m = 0)
  int pause_max = 3;                        ///< longest pause, frames
  double direction_change_probability = 0.5;  ///< translations: a new segment draws a new heading
  double direction_jitter_deg = 20.0;         ///< headings stay within class heading ± this
  int osc_half_period_min = 3, osc_half_period_max = 5;  ///< oscillation: frames of travel per stroke
  double zoom_rate = 1.0;                ///< zoom: dr/dt = zoom_rate · speed (edge speed = speed)
  double zoom_min = 0.4, zoom_max = 1.9;  ///< zoom: radius range as multiples of r0
  double max_spin = 0.4;                 ///< rotation: cap on angular speed, rad/frame
  unsigned texture_kinds = texture_all;  ///< object textures to draw from (mask of texture_kind)
  background_kind background = background_kind::static_texture;
  double background_contrast = 0.12;     ///< amplitude of the background texture (0..1 intensity)
  double background_drift_px = 1.5;      ///< drifting background speed, px/frame
  double min_object_contrast = 0.12;     ///< mean object colour differs from the background by at least this (L1/3)
  std::uint64_t seed = 0;

  void validate(const char* who) const {
    MSCL_CHECK(num_classes >= 1 && num_classes <= max_motion_classes, config_error,
               who << ": num_classes must be in [1, " << max_motion_classes << "], got " << num_classes);
    MSCL_CHECK(frames >= 1 && height >= 8 && width >= 8, config_error,
               who << ": need frames >= 1 and a size of at least 8x8, got frames=" << frames << " size=" << height
                   << "x" << width);
    MSCL_CHECK(min_objects >= 1 && max_objects >= min_objects && max_objects <= 16, config_error,
               who << ": need 1 <= min_objects <= max_objects <= 16, got " << min_objects << ".." << max_objects);
    MSCL_CHECK(object_size_min > 0 && object_size_max >= object_size_min && object_size_max <= 0.3, config_error,
               who << ": object sizes must satisfy 0 < min <= max <= 0.3 (fraction of the frame), got "
                   << object_size_min << ".." << object_size_max);
    MSCL_CHECK(motion_px >= 0 && speed_min >= 0 && speed_max >= speed_min, config_error,
               who << ": need motion_px >= 0 and 0 <= speed_min <= speed_max, got motion_px=" << motion_px
                   << " speed=" << speed_min << ".." << speed_max);
    MSCL_CHECK(segment_min >= 1 && segment_max >= segment_min && pause_max >= 1, config_error,
               who << ": need 1 <= segment_min <= segment_max and pause_max >= 1, got segments " << segment_min << ".."
                   << segment_max << " pause_max " << pause_max);
    auto prob = [](double p) { return p >= 0 && p <= 1; };
    MSCL_CHECK(prob(speed_change_probability) && prob(pause_probability) && prob(direction_change_probability),
               config_error,
               who << ": probabilities must be in [0, 1], got speed_change=" << speed_change_probability
                   << " pause=" << pause_probability << " direction_change=" << direction_change_probability);
    MSCL_CHECK(osc_half_period_min >= 1 && osc_half_period_max >= osc_half_period_min, config_error,
               who << ": need 1 <= osc_half_period_min <= osc_half_period_max, got " << osc_half_period_min << ".."
                   << osc_half_period_max);
    MSCL_CHECK(zoom_rate >= 0 && zoom_min > 0 && zoom_max > zoom_min && max_spin > 0, config_error,
               who << ": need zoom_rate >= 0, 0 < zoom_min < zoom_max and max_spin > 0, got zoom_rate=" << zoom_rate
                   << " zoom=" << zoom_min << ".." << zoom_max << " max_spin=" << max_spin);
    MSCL_CHECK((texture_kinds & (texture_all | texture_flat)) != 0, config_error,
               who << ": texture_kinds selects no texture (mask " << texture_kinds << ")");
    MSCL_CHECK(background_contrast >= 0 && background_contrast <= 1 && min_object_contrast >= 0 &&
                   min_object_contrast < 0.5 && background_drift_px >= 0,
               config_error,
               who << ": need background_contrast in [0,1], min_object_contrast in [0,0.5), drift >= 0, got "
                   << background_contrast << ", " << min_object_contrast << ", " << background_drift_px);
  }
};

// ------------------------------------------------------------------------------------------ video plan

enum class object_shape : int { disk = 0, square, triangle, ellipse, ring, cross };
inline constexpr int num_object_shapes = 6;

/// A procedural texture t(u, v) in [0, 1], evaluated in the coordinates of what it is attached to.
struct procedural_texture {
  unsigned kind = texture_flat;
  double freq = 1.0;             ///< cycles (stripes/checkers) or lattice cells (noise) per coordinate unit
  double cos_a = 1.0, sin_a = 0.0;  ///< orientation
  double phase_u = 0.0, phase_v = 0.0;
  double sharpness = 1.0;        ///< >1 pushes sinusoids towards hard edges
  static constexpr int lattice_n = 8;
  std::array<float, lattice_n * lattice_n> lattice{};  ///< value-noise lattice (periodic)

  double operator()(double u, double v) const {
    const double ru = cos_a * u - sin_a * v + phase_u, rv = sin_a * u + cos_a * v + phase_v;
    constexpr double two_pi = 6.283185307179586;
    switch (kind) {
      case texture_stripes: return clamp01(0.5 + 0.5 * sharpness * std::sin(two_pi * freq * ru));
      case texture_checkers:
        return clamp01(0.5 + 0.5 * sharpness * std::sin(two_pi * freq * ru) * std::sin(two_pi * freq * rv) * 2.0);
      case texture_noise: {
        const double x = ru * freq, y = rv * freq;
        const double fx = std::floor(x), fy = std::floor(y);
        const double tx = smooth(x - fx), ty = smooth(y - fy);
        const int n = lattice_n;
        const int x0 = ((int(fx) % n) + n) % n, y0 = ((int(fy) % n) + n) % n;
        const int x1 = (x0 + 1) % n, y1 = (y0 + 1) % n;
        const double a = lattice[std::size_t(y0 * n + x0)], b = lattice[std::size_t(y0 * n + x1)];
        const double c = lattice[std::size_t(y1 * n + x0)], d = lattice[std::size_t(y1 * n + x1)];
        return clamp01((a + (b - a) * tx) * (1 - ty) + (c + (d - c) * tx) * ty);
      }
      default: return 0.5;
    }
  }
  static double clamp01(double x) { return x < 0 ? 0 : (x > 1 ? 1 : x); }
  static double smooth(double t) { return t * t * (3 - 2 * t); }
};

/// Where one object is in one frame.
struct object_pose {
  double cx = 0, cy = 0;  ///< centre, pixels (wrapped onto the torus when rendered)
  double angle = 0;       ///< radians; positive = clockwise on screen (y points down)
  double radius = 1;      ///< pixels
};

/// One object's appearance.
struct synthetic_object {
  object_shape shape = object_shape::disk;
  double aspect = 1.0;           ///< ellipse: minor/major axis
  double r0 = 8;                 ///< nominal radius, pixels
  std::array<float, 3> color_a{}, color_b{};  ///< texture value 0 → a, 1 → b
  procedural_texture texture;
};

/// Everything needed to render any frame of one video: appearance, the motion profile and
/// every object's pose in every frame. Cheap to build (no pixels).
struct synthetic_video_plan {
  std::int64_t index = 0;
  int label = 0;
  int frames = 0, height = 0, width = 0;
  std::array<float, 3> background_color{};
  std::array<float, 3> background_tint{};  ///< direction in colour space of the background texture
  double background_contrast = 0;
  double background_cell = 8;              ///< pixels per background texture unit
  procedural_texture background_texture;
  std::vector<std::array<double, 2>> background_offset;  ///< per frame (drifting background)
  std::vector<synthetic_object> objects;
  std::vector<std::vector<object_pose>> poses;  ///< [frame][object]
  std::vector<double> speed;                    ///< m(t) applied between frame t and t+1 (t < frames-1)
};

namespace detail {

inline constexpr std::uint64_t synthetic_streams_per_video = std::uint64_t(1) << 20;

inline procedural_texture draw_texture(generator& g, unsigned kinds, bool for_background) {
  std::vector<unsigned> allowed;
  for (unsigned k : {unsigned(texture_noise), unsigned(texture_stripes), unsigned(texture_checkers), unsigned(texture_flat)})
    if (kinds & k) allowed.push_back(k);
  procedural_texture t;
  t.kind = allowed[std::size_t(g.randint(0, index_t(allowed.size()) - 1))];
  const double a = g.uniform(0.0, 3.141592653589793);
  t.cos_a = std::cos(a);
  t.sin_a = std::sin(a);
  t.phase_u = g.uniform(0.0, 8.0);
  t.phase_v = g.uniform(0.0, 8.0);
  t.sharpness = g.uniform(1.0, 3.0);
  // Object coordinates span [-1, 1]: 1–2.5 cycles across an object keeps the texture visible at
  // small radii; background units are `background_cell` pixels.
  t.freq = for_background ? g.uniform(0.5, 1.0) : (t.kind == texture_noise ? g.uniform(1.5, 3.0) : g.uniform(0.6, 1.3));
  g.fill_uniform(t.lattice.data(), index_t(t.lattice.size()), 0.0, 1.0);
  return t;
}

inline std::array<float, 3> draw_color(generator& g) {
  return {float(g.uniform()), float(g.uniform()), float(g.uniform())};
}

/// Signed distance (object units, negative inside) of a point q in object coordinates.
inline double shape_sdf(object_shape s, double aspect, double x, double y) {
  const double ax = std::abs(x), ay = std::abs(y);
  switch (s) {
    case object_shape::disk: return std::sqrt(x * x + y * y) - 1.0;
    case object_shape::square: return std::max(ax, ay) - 0.8;
    case object_shape::triangle: {
      // Equilateral triangle with inradius 0.55: max over the three edge normals.
      const double n1 = y, n2 = -0.5 * y + 0.8660254037844386 * x, n3 = -0.5 * y - 0.8660254037844386 * x;
      return std::max(n1, std::max(n2, n3)) - 0.55;
    }
    case object_shape::ellipse: {
      const double k = std::sqrt(x * x + (y * y) / (aspect * aspect));
      return (k - 1.0) * aspect;  // approximate distance, exact on the minor axis
    }
    case object_shape::ring: return std::abs(std::sqrt(x * x + y * y) - 0.72) - 0.28;
    case object_shape::cross: {
      const double h = std::max(ax - 0.95, ay - 0.36), v = std::max(ax - 0.36, ay - 0.95);
      return std::min(h, v);
    }
  }
  return 1.0;
}

inline double wrap(double v, double period) {
  v = std::fmod(v, period);
  return v < 0 ? v + period : v;
}

}  // namespace detail

// ------------------------------------------------------------------------------------------ generator

/// Renders videos of the synthetic motion dataset. Stateless apart from its options: any video,
/// any frame, any thread.
class synthetic_motion_generator {
 public:
  explicit synthetic_motion_generator(synthetic_motion_options o) : opt_(std::move(o)) {
    opt_.validate("synthetic_motion_generator");
  }
  const synthetic_motion_options& options() const { return opt_; }

  /// Label of video i: i mod num_classes, so any block of K consecutive videos is balanced.
  int label_of(std::int64_t i) const {
    MSCL_CHECK(i >= 0, value_error, "synthetic_motion_generator::label_of: video index must be >= 0, got " << i);
    return int(i % opt_.num_classes);
  }

  /// Appearance, speed profile and per-frame poses of video i.
  synthetic_video_plan plan(std::int64_t i) const {
    const int label = label_of(i);
    const auto& o = opt_;
    synthetic_video_plan p;
    p.index = i;
    p.label = label;
    p.frames = o.frames;
    p.height = o.height;
    p.width = o.width;
    const double H = o.height, W = o.width, side = std::min(H, W);
    const std::uint64_t base = std::uint64_t(i) * detail::synthetic_streams_per_video;

    // ---- appearance (independent of the label)
    generator ga(o.seed, base);
    p.background_color = detail::draw_color(ga);
    // Keep the background mid-range so that low contrast is still visible texture, not clipping.
    for (auto& c : p.background_color) c = 0.15f + 0.7f * c;
    {
      std::array<float, 3> tint = detail::draw_color(ga);
      double n = 0;
      for (auto& c : tint) { c = 0.3f + c; n += double(c) * double(c); }
      n = std::sqrt(n / 3.0);
      for (auto& c : tint) c = float(double(c) / n);
      p.background_tint = tint;
    }
    p.background_contrast = o.background == background_kind::flat ? 0.0 : o.background_contrast * ga.uniform(0.6, 1.0);
    p.background_cell = side * ga.uniform(0.08, 0.16);
    p.background_texture = detail::draw_texture(ga, texture_noise | texture_stripes | texture_checkers, true);
    const int n_obj = int(ga.randint(o.min_objects, o.max_objects));
    for (int k = 0; k < n_obj; ++k) {
      synthetic_object ob;
      ob.shape = object_shape(int(ga.randint(0, num_object_shapes - 1)));
      ob.aspect = ga.uniform(0.5, 0.8);
      ob.r0 = side * ga.uniform(o.object_size_min, o.object_size_max);
      // Colours differ from the background by at least min_object_contrast (mean L1 over channels),
      // so objects are visible; a bounded retry keeps the draw count deterministic.
      for (int attempt = 0; attempt < 8; ++attempt) {
        ob.color_a = detail::draw_color(ga);
        double d = 0;
        for (int c = 0; c < 3; ++c) d += std::abs(double(ob.color_a[std::size_t(c)]) - p.background_color[std::size_t(c)]);
        if (d / 3.0 >= o.min_object_contrast) break;
      }
      const std::array<float, 3> other = detail::draw_color(ga);
      const double mix = ga.uniform(0.5, 1.0);
      for (std::size_t c = 0; c < 3; ++c) ob.color_b[c] = float((1 - mix) * ob.color_a[c] + mix * other[c]);
      ob.texture = detail::draw_texture(ga, o.texture_kinds, false);
      p.objects.push_back(ob);
    }
    std::vector<object_pose> start(static_cast<std::size_t>(n_obj));
    for (int k = 0; k < n_obj; ++k) {
      auto& s = start[std::size_t(k)];
      s.cx = ga.uniform(0.0, W);
      s.cy = ga.uniform(0.0, H);
      s.angle = ga.uniform(0.0, 6.283185307179586);
      s.radius = p.objects[std::size_t(k)].r0;
    }
    const double bg_dir = ga.uniform(0.0, 6.283185307179586);

    // ---- motion (own streams: the speed profile never shifts the appearance draws)
    generator gm(o.seed, base + detail::synthetic_streams_per_video / 2);
    const motion_class mc = motion_class(label);
    const double deg = 3.141592653589793 / 180.0;
    double class_heading = 0;
    switch (mc) {
      case motion_class::right: class_heading = 0; break;
      case motion_class::left: class_heading = 180 * deg; break;
      case motion_class::down: class_heading = 90 * deg; break;
      case motion_class::up: class_heading = 270 * deg; break;
      default: break;
    }
    const double jitter = o.direction_jitter_deg * deg;
    double heading = class_heading + gm.uniform(-jitter, jitter);
    const double osc_axis = gm.uniform(0.0, 3.141592653589793);
    double osc_sign = gm.uniform() < 0.5 ? 1.0 : -1.0;
    const int osc_half = int(gm.randint(o.osc_half_period_min, o.osc_half_period_max));
    const double osc_stroke = o.motion_px * osc_half;
    double osc_travel = gm.uniform(0.0, osc_stroke);  // random phase within the first stroke
    // Zoom: stagger the objects' phases so respawns do not happen together.
    std::vector<double> zoom_phase(static_cast<std::size_t>(n_obj));
    for (auto& z : zoom_phase) z = gm.uniform();

    // Speed profile m(t), t = 0..frames-2, and the heading used in each step.
    p.speed.assign(std::size_t(std::max(0, o.frames - 1)), 0.0);
    std::vector<double> headings(p.speed.size(), heading);
    {
      double level = gm.uniform(o.speed_min, o.speed_max);
      std::size_t t = 0;
      bool first = true, previous_pause = false;  // never two pauses in a row: pauses stay <= pause_max
      while (t < p.speed.size()) {
        int len;
        double m;
        if (!first && !previous_pause && gm.uniform() < o.pause_probability) {
          len = int(gm.randint(1, o.pause_max));
          m = 0.0;
        } else {
          len = int(gm.randint(o.segment_min, o.segment_max));
          if (!first && gm.uniform() < o.speed_change_probability) level = gm.uniform(o.speed_min, o.speed_max);
          if (!first && gm.uniform() < o.direction_change_probability)
            heading = class_heading + gm.uniform(-jitter, jitter);
          m = level;
        }
        first = false;
        previous_pause = m == 0.0;
        for (int k = 0; k < len && t < p.speed.size(); ++k, ++t) {
          p.speed[t] = m;
          headings[t] = heading;
        }
      }
    }

    // Initial zoom radii from the staggered phases.
    const double zlo = o.zoom_min, zhi = o.zoom_max;
    if (mc == motion_class::zoom_in || mc == motion_class::zoom_out)
      for (int k = 0; k < n_obj; ++k)
        start[std::size_t(k)].radius = p.objects[std::size_t(k)].r0 * (zlo + (zhi - zlo) * zoom_phase[std::size_t(k)]);

    p.poses.assign(std::size_t(o.frames), start);
    p.background_offset.assign(std::size_t(o.frames), {0.0, 0.0});
    for (int t = 1; t < o.frames; ++t) {
      const double v = o.motion_px * p.speed[std::size_t(t - 1)];
      const double hd = headings[std::size_t(t - 1)];
      auto& cur = p.poses[std::size_t(t)];
      cur = p.poses[std::size_t(t - 1)];
      double ox = 0, oy = 0;  // oscillation step, shared by all objects
      if (mc == motion_class::oscillate && v > 0) {
        // Advance along the axis; reverse exactly where a stroke's travel is used up.
        double left = v;
        double step = 0;
        while (left > 1e-12) {
          const double room = osc_stroke - osc_travel;
          const double d = std::min(left, room);
          step += osc_sign * d;
          osc_travel += d;
          left -= d;
          if (osc_travel >= osc_stroke - 1e-12) {
            osc_sign = -osc_sign;
            osc_travel = 0;
          }
        }
        ox = step * std::cos(osc_axis);
        oy = step * std::sin(osc_axis);
      }
      for (int k = 0; k < n_obj; ++k) {
        auto& q = cur[std::size_t(k)];
        const double r0 = p.objects[std::size_t(k)].r0;
        switch (mc) {
          case motion_class::right:
          case motion_class::left:
          case motion_class::down:
          case motion_class::up:
            q.cx += v * std::cos(hd);
            q.cy += v * std::sin(hd);
            break;
          case motion_class::rotate_cw:
          case motion_class::rotate_ccw: {
            const double w = std::min(o.max_spin, v / std::max(q.radius, 1.0));
            q.angle += mc == motion_class::rotate_cw ? w : -w;
            break;
          }
          case motion_class::zoom_in:
            q.radius += o.zoom_rate * v;
            if (q.radius > zhi * r0) {  // respawn small somewhere else
              q.radius = zlo * r0 + (q.radius - zhi * r0);
              q.cx = gm.uniform(0.0, W);
              q.cy = gm.uniform(0.0, H);
            }
            break;
          case motion_class::zoom_out:
            q.radius -= o.zoom_rate * v;
            if (q.radius < zlo * r0) {  // respawn large somewhere else
              q.radius = zhi * r0 - (zlo * r0 - q.radius);
              q.cx = gm.uniform(0.0, W);
              q.cy = gm.uniform(0.0, H);
            }
            break;
          case motion_class::oscillate:
            q.cx += ox;
            q.cy += oy;
            break;
          case motion_class::still: break;
        }
        q.cx = detail::wrap(q.cx, W);
        q.cy = detail::wrap(q.cy, H);
      }
      if (o.background == background_kind::drifting) {
        auto& b = p.background_offset[std::size_t(t)];
        b = p.background_offset[std::size_t(t - 1)];
        b[0] += o.background_drift_px * std::cos(bg_dir);
        b[1] += o.background_drift_px * std::sin(bg_dir);
      }
    }
    MSCL_CHECK(gm.state() - (base + detail::synthetic_streams_per_video / 2) < detail::synthetic_streams_per_video / 2 &&
                   ga.state() - base < detail::synthetic_streams_per_video / 2,
               value_error, "synthetic_motion_generator::plan: video " << i << " used more random streams than reserved");
    return p;
  }

  /// Renders frame t of a planned video into `out` (resized to the plan's size, RGB).
  static void render_frame(const synthetic_video_plan& p, int t, image_u8& out) {
    MSCL_CHECK(t >= 0 && t < p.frames, value_error,
               "synthetic_motion_generator::render_frame: frame " << t << " outside [0, " << p.frames << ") of video "
                                                                  << p.index);
    const int H = p.height, W = p.width;
    if (out.height != H || out.width != W || out.channels != 3) out = image_u8(H, W, 3);
    std::vector<float> img(std::size_t(H) * std::size_t(W) * 3);
    const auto& off = p.background_offset[std::size_t(t)];
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const double v = p.background_contrast > 0
                             ? p.background_texture((x - off[0]) / p.background_cell, (y - off[1]) / p.background_cell) - 0.5
                             : 0.0;
        float* px = &img[(std::size_t(y) * std::size_t(W) + std::size_t(x)) * 3];
        for (std::size_t c = 0; c < 3; ++c)
          px[c] = float(p.background_color[c] + p.background_contrast * v * p.background_tint[c]);  // ±contrast/2
      }
    const auto& poses = p.poses[std::size_t(t)];
    for (std::size_t k = 0; k < p.objects.size(); ++k) {
      const auto& ob = p.objects[k];
      const auto& q = poses[k];
      const double r = q.radius;
      const double ext = 1.2 * r + 1.5;  // every shape lies within 1.15 r
      const double ca = std::cos(q.angle), sa = std::sin(q.angle);
      // Pixel ranges around the centre, at most one period wide so nothing is painted twice.
      const int x0 = int(std::floor(q.cx - std::min(ext, W / 2.0))), x1 = std::min(x0 + W - 1, int(std::ceil(q.cx + std::min(ext, W / 2.0))));
      const int y0 = int(std::floor(q.cy - std::min(ext, H / 2.0))), y1 = std::min(y0 + H - 1, int(std::ceil(q.cy + std::min(ext, H / 2.0))));
      for (int yy = y0; yy <= y1; ++yy) {
        const int yw = ((yy % H) + H) % H;
        const double dy = yy - q.cy;
        for (int xx = x0; xx <= x1; ++xx) {
          const double dx = xx - q.cx;
          // Object coordinates: undo the rotation (positive angle = clockwise on screen), scale by r.
          const double u = (ca * dx + sa * dy) / r, v = (-sa * dx + ca * dy) / r;
          const double sd = detail::shape_sdf(ob.shape, ob.aspect, u, v) * r;  // pixels
          const double alpha = std::clamp(0.5 - sd, 0.0, 1.0);               // 1-pixel anti-aliased edge
          if (alpha <= 0) continue;
          const int xw = ((xx % W) + W) % W;
          const double tv = ob.texture(u, v);
          float* px = &img[(std::size_t(yw) * std::size_t(W) + std::size_t(xw)) * 3];
          for (std::size_t c = 0; c < 3; ++c) {
            const double col = ob.color_a[c] + (ob.color_b[c] - ob.color_a[c]) * tv;
            px[c] = float((1 - alpha) * px[c] + alpha * col);
          }
        }
      }
    }
    for (std::size_t j = 0; j < img.size(); ++j) {
      const double v = std::clamp(double(img[j]), 0.0, 1.0);
      out.pixels[j] = std::uint8_t(std::lround(v * 255.0));
    }
  }
  static image_u8 render_frame(const synthetic_video_plan& p, int t) {
    image_u8 out;
    render_frame(p, t, out);
    return out;
  }

  /// All frames of video i.
  frame_sequence render(std::int64_t i) const {
    const synthetic_video_plan p = plan(i);
    frame_sequence f(std::size_t(p.frames));
    for (int t = 0; t < p.frames; ++t) render_frame(p, t, f[std::size_t(t)]);
    return f;
  }

 private:
  synthetic_motion_options opt_;
};

// ------------------------------------------------------------------------------------------ clips

/// Which frames and which window of them make a clip.
struct clip_window {
  int first_frame = 0;  ///< frame index of the clip's first frame
  int frames = 8;       ///< clip length T
  int stride = 2;       ///< frames between sampled frames
  int y0 = 0, x0 = 0;   ///< top-left of the spatial crop
  int height = 0, width = 0;  ///< crop size; 0 = the full frame
};

namespace detail {
inline void check_clip_window(const clip_window& w, int frames, int height, int width, const char* who) {
  const int h = w.height > 0 ? w.height : height, wd = w.width > 0 ? w.width : width;
  MSCL_CHECK(w.frames >= 1 && w.stride >= 1 && w.first_frame >= 0 &&
                 std::int64_t(w.first_frame) + std::int64_t(w.frames - 1) * w.stride < frames,
             value_error,
             who << ": clip of " << w.frames << " frames at stride " << w.stride << " from frame " << w.first_frame
                 << " does not fit a video of " << frames << " frames");
  MSCL_CHECK(w.y0 >= 0 && w.x0 >= 0 && w.y0 + h <= height && w.x0 + wd <= width, value_error,
             who << ": crop " << h << "x" << wd << " at (" << w.y0 << ", " << w.x0 << ") does not fit a frame of "
                 << height << "x" << width);
}
// Writes frame f (HWC u8) into channel-major out[c][tt][y][x] of a 3×T×h×w clip, scaled to [0,1].
inline void write_clip_frame(const image_u8& f, const clip_window& w, int h, int wd, int T, int tt, float* out) {
  const std::size_t plane = std::size_t(h) * std::size_t(wd);
  for (int c = 0; c < 3; ++c) {
    float* o = out + (std::size_t(c) * std::size_t(T) + std::size_t(tt)) * plane;
    const int src_c = f.channels == 3 ? c : 0;
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < wd; ++x) o[std::size_t(y) * std::size_t(wd) + std::size_t(x)] = float(f.at(w.y0 + y, w.x0 + x, src_c)) / 255.0f;
  }
}
}  // namespace detail

/// A clip of `frames` as a 3×T×h×w float tensor in [0, 1] (channel-major, ready to stack into the
/// n×3×t×h×w input of video_resnet).
inline tensor<float> render_clip_tensor(const frame_sequence& frames, const clip_window& w) {
  MSCL_CHECK(!frames.empty(), value_error, "render_clip_tensor: empty frame sequence");
  const int H = frames.front().height, W = frames.front().width;
  detail::check_clip_window(w, int(frames.size()), H, W, "render_clip_tensor");
  const int h = w.height > 0 ? w.height : H, wd = w.width > 0 ? w.width : W;
  tensor<float> out = tensor<float>::empty({3, w.frames, h, wd});
  for (int tt = 0; tt < w.frames; ++tt) {
    const image_u8& f = frames[std::size_t(w.first_frame + tt * w.stride)];
    MSCL_CHECK(f.height == H && f.width == W, shape_error,
               "render_clip_tensor: frame " << (w.first_frame + tt * w.stride) << " is " << f.height << "x" << f.width
                                            << ", frame 0 is " << H << "x" << W);
    detail::write_clip_frame(f, w, h, wd, w.frames, tt, out.data());
  }
  return out;
}

/// Renders only the frames of the window of video `video` into `out` (3×T×h×w floats in [0,1],
/// preallocated). Allocates nothing shared, so clips may render in parallel.
inline void render_clip_into(const synthetic_motion_generator& gen, std::int64_t video, const clip_window& w, float* out) {
  const auto& o = gen.options();
  detail::check_clip_window(w, o.frames, o.height, o.width, "render_clip_into");
  const synthetic_video_plan p = gen.plan(video);
  const int h = w.height > 0 ? w.height : o.height, wd = w.width > 0 ? w.width : o.width;
  image_u8 f;
  for (int tt = 0; tt < w.frames; ++tt) {
    synthetic_motion_generator::render_frame(p, w.first_frame + tt * w.stride, f);
    detail::write_clip_frame(f, w, h, wd, w.frames, tt, out);
  }
}

/// Video `video`'s clip `w` as a 3×T×h×w float tensor in [0, 1]; renders only those frames.
inline tensor<float> render_clip_tensor(const synthetic_motion_generator& gen, std::int64_t video, const clip_window& w) {
  const auto& o = gen.options();
  detail::check_clip_window(w, o.frames, o.height, o.width, "render_clip_tensor");
  const int h = w.height > 0 ? w.height : o.height, wd = w.width > 0 ? w.width : o.width;
  tensor<float> out = tensor<float>::empty({3, w.frames, h, wd});
  render_clip_into(gen, video, w, out.data());
  return out;
}

// ------------------------------------------------------------------------------------------ dataset view

/// How a dataset view cuts clips out of its videos.
struct clip_sampling {
  int frames = 8;         ///< T
  int stride = 2;         ///< frames between sampled frames
  int crop_height = 0, crop_width = 0;  ///< 0 = full frame (the demo uses 32×32 of 40×40)
  /// With an augmentation generator: uniform random temporal offset and crop position.
  /// Without one (evaluation): centred window and centre crop.
};

/// A contiguous block of videos [first, first + count) of the synthetic dataset, serving
/// (clip, label). Train and test splits are disjoint blocks of video indices, e.g.
/// `synthetic_motion_dataset(o, 0, n_train, s)` and `synthetic_motion_dataset(o, n_train, n_test, s)`.
/// With counts that are multiples of num_classes (and first a multiple too), each split is exactly
/// class-balanced.
class synthetic_motion_dataset {
 public:
  synthetic_motion_dataset(synthetic_motion_options o, std::int64_t first, std::int64_t count, clip_sampling s = {})
      : gen_(std::move(o)), first_(first), count_(count), s_(s) {
    const auto& op = gen_.options();
    MSCL_CHECK(first >= 0 && count >= 0, value_error,
               "synthetic_motion_dataset: need first >= 0 and count >= 0, got first=" << first << " count=" << count);
    MSCL_CHECK(s.frames >= 1 && s.stride >= 1 && std::int64_t(s.frames - 1) * s.stride < op.frames, config_error,
               "synthetic_motion_dataset: a clip of " << s.frames << " frames at stride " << s.stride
                                                      << " needs more than the " << op.frames << " frames per video");
    MSCL_CHECK(s.crop_height >= 0 && s.crop_width >= 0 && s.crop_height <= op.height && s.crop_width <= op.width,
               config_error,
               "synthetic_motion_dataset: crop " << s.crop_height << "x" << s.crop_width << " does not fit frames of "
                                                 << op.height << "x" << op.width);
  }

  std::int64_t size() const { return count_; }
  std::int64_t video_index(std::int64_t k) const {
    MSCL_CHECK(k >= 0 && k < count_, value_error,
               "synthetic_motion_dataset: item " << k << " outside [0, " << count_ << ")");
    return first_ + k;
  }
  int label(std::int64_t k) const { return gen_.label_of(video_index(k)); }
  const synthetic_motion_generator& video_generator() const { return gen_; }
  const clip_sampling& sampling() const { return s_; }
  int num_classes() const { return gen_.options().num_classes; }

  /// The window item k uses: random (from `aug`) or centred (aug == nullptr).
  clip_window window(std::int64_t k, generator* aug) const {
    (void)video_index(k);
    const auto& o = gen_.options();
    clip_window w;
    w.frames = s_.frames;
    w.stride = s_.stride;
    w.height = s_.crop_height > 0 ? s_.crop_height : o.height;
    w.width = s_.crop_width > 0 ? s_.crop_width : o.width;
    const int span = (s_.frames - 1) * s_.stride + 1;
    const int slack_t = o.frames - span, slack_y = o.height - w.height, slack_x = o.width - w.width;
    if (aug) {
      w.first_frame = int(aug->randint(0, slack_t));
      w.y0 = int(aug->randint(0, slack_y));
      w.x0 = int(aug->randint(0, slack_x));
    } else {
      w.first_frame = slack_t / 2;
      w.y0 = slack_y / 2;
      w.x0 = slack_x / 2;
    }
    return w;
  }

  /// (3×T×h×w clip in [0,1], label) of item k.
  std::pair<tensor<float>, index_t> get(std::int64_t k, generator* aug = nullptr) const {
    const clip_window w = window(k, aug);
    return {render_clip_tensor(gen_, video_index(k), w), index_t(label(k))};
  }

  /// A batch n×3×T×h×w of items `ks` and their labels. Windows are drawn in order from `aug`
  /// first, then clips render in parallel, so the result does not depend on the thread count.
  std::pair<tensor<float>, std::vector<index_t>> batch(const std::vector<std::int64_t>& ks, generator* aug = nullptr) const {
    MSCL_CHECK(!ks.empty(), value_error, "synthetic_motion_dataset::batch: no items");
    std::vector<clip_window> ws;
    std::vector<index_t> labels;
    for (auto k : ks) {
      ws.push_back(window(k, aug));
      labels.push_back(index_t(label(k)));
    }
    const index_t n = index_t(ks.size());
    tensor<float> out = tensor<float>::empty({n, 3, ws[0].frames, ws[0].height, ws[0].width});
    const index_t per = out.numel() / n;
#pragma omp parallel for schedule(dynamic, 1)
    for (index_t j = 0; j < n; ++j) render_clip_into(gen_, first_ + ks[std::size_t(j)], ws[std::size_t(j)], out.data() + j * per);
    return {out, labels};
  }

 private:
  synthetic_motion_generator gen_;
  std::int64_t first_, count_;
  clip_sampling s_;
};

}  // namespace mscl::data
