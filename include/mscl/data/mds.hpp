/// \file mds.hpp
/// \brief Motion Differential Sampling (ALGORITHM.md §5): the offline per-video motion statistic
///        (which clip starts are "informative"), the per-video sample file that stores it, and the
///        load-time samplers that draw query/key clip starts from it.
///
/// MSCL pretrains on clips whose motion pattern changes: for every flow map F_i of a video it builds
/// a colour-coded flow image weighted by a coarse motion-boundary attention, measures how much that
/// image changes from one flow frame to the next, sums the change over the frames a clip would see,
/// and keeps the clip starts scoring strictly above the median. At load time the query start is
/// drawn by rejection from those starts and the key start is snapped to one of them near a random
/// shift of the query. Both halves follow the official tools (tools/ssl/generate_mcl_samples.py and
/// TemporalShiftChosenSampleFrames) step by step; where ALGORITHM.md §11 A7 recommends a change the
/// recommendation is the default and the official behaviour is one switch away:
///   * attention normaliser: + attention_eps (official: bare max, 0/0 = NaN for a map without
///     motion boundaries; `official_nan = true` reproduces that, NaN then propagates to every score
///     and the video ends up with an empty chosen list, as numpy's median of NaNs is NaN);
///   * key start: exact nearest chosen start, ties to the smaller (official approximate scan:
///     `official_nearest = true`);
///   * empty chosen list: every start counts as chosen, i.e. uniform sampling (official: starts 0
///     and 0; `uniform_when_empty = false`).
///
/// Per-frame statistic (options in `mds_options`; names as in the official tool):
///   C_i  colour image: Middlebury coding of F_i / (max_x |F_i(x)| + 1e-5), floor(255 c), float 0..255
///   M_i  motion boundary sqrt(Σ (Sobel_x,y of u, v)²); Sobel = [−1,0,1] ⊗ [1,2,1], border
///        `sobel_border::reflect` (scipy.ndimage default "dcba|abcd"; OpenCV's reflect_101 optional)
///   A_i  attention: M_i average-pooled over non-overlapping block×block cells (floor; rest dropped),
///        bilinear upsample to H×W (align_corners = false), divided by its max ("max") or sum ("sum")
///   weight_type rgb_map:        W_i = A_i ⊙ C_i (att_type none: W_i = C_i); D_i = ‖W_i − W_{i+1}‖₂
///                               over channels with W_N := W_{N−1}; d_i = pool(D_i)
///   weight_type motion_map:     d_i = pool(M_i)          (no temporal differential)
///   weight_type attention_map:  d_i = pool(A_i)          (no temporal differential)
///   pool avg = mean over pixels, max = maximum.
///   S_i = (1/clip_len) Σ_{j<clip_len, i + j·clip_stride < N} d_{i + j·clip_stride}
///   chosen = { i : S_i > median(S) }  (strict; numpy median: mean of the two middle values).
/// Arithmetic is float per pixel and double for pooled values and scores.
///
/// Sample file (JSON lines, UTF-8, '\n' line ends; see docs/data_formats_mds.md):
///   line 1:  {"format":"mscl-mds-samples","version":1,"options":{...mds_options...}}
///   then one object per video:
///            {"video":"<dir relative to the flow root>","num_frames":N,"scores":[S_0..S_{N-1}],
///             "chosen":[ascending starts]}
///   NaN scores are written as null. Readers reject anything else with io_error naming file:line;
///   writers go through atomic replacement or append whole flushed lines, so a killed generator
///   leaves at most one incomplete last line, which resuming drops.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../core/shape.hpp"
#include "../flow/colorwheel.hpp"
#include "../io/atomic_file.hpp"
#include "frame.hpp"
#include "samplers.hpp"

namespace mscl::data {

// ------------------------------------------------------------------------------------------ options

/// What the per-frame value measures.
enum class mds_weight_type { rgb_map, motion_map, attention_map };
/// How the attention map is normalised (`none`: no attention, only valid with rgb_map).
enum class mds_attention_type { none, max, sum };
/// How a per-pixel map becomes one number per frame.
enum class mds_pool_type { avg, max };
/// Border handling of the 3×3 Sobel.
enum class sobel_border {
  reflect,      ///< "dcba|abcd" (edge sample repeated): scipy.ndimage.sobel's default, the official tool
  reflect_101,  ///< "dcb|abcd" (edge not repeated): OpenCV's BORDER_DEFAULT
};

/// Parameters of the offline statistic. Defaults = the released config ("rm_mx_s4") with the
/// ε of §11 A7.
struct mds_options {
  mds_weight_type weight_type = mds_weight_type::rgb_map;
  mds_attention_type att_type = mds_attention_type::max;
  mds_pool_type pool_type = mds_pool_type::avg;
  int clip_len = 8;
  int clip_stride = 4;
  int block = 28;               ///< attention pooling cell (pixels)
  double attention_eps = 1e-6;  ///< added to the attention normaliser (ignored when official_nan)
  bool official_nan = false;    ///< bare max/sum normaliser as the official tool (static maps -> NaN)
  sobel_border border = sobel_border::reflect;

  void validate() const {
    MSCL_CHECK(clip_len >= 1 && clip_stride >= 1 && block >= 1, value_error,
               "mds_options: clip_len, clip_stride and block must be >= 1, got " << clip_len << ", " << clip_stride
                                                                                 << ", " << block);
    MSCL_CHECK(attention_eps >= 0 && std::isfinite(attention_eps), value_error,
               "mds_options: attention_eps must be finite and >= 0, got " << attention_eps);
    MSCL_CHECK(weight_type == mds_weight_type::rgb_map || att_type != mds_attention_type::none, value_error,
               "mds_options: att_type 'none' is only valid with weight_type 'rgb_map' (the official tool raises too)");
  }

  /// The official annotation-name tag, e.g. "rm_mx_s4".
  std::string tag() const {
    const char* w = weight_type == mds_weight_type::rgb_map ? "rm" : weight_type == mds_weight_type::motion_map ? "mm" : "am";
    const char* a = att_type == mds_attention_type::none ? "ne" : att_type == mds_attention_type::max ? "mx" : "sm";
    return std::string(w) + "_" + a + "_s" + std::to_string(clip_stride);
  }

  nlohmann::json to_json() const {
    nlohmann::json j;
    j["weight_type"] = weight_type == mds_weight_type::rgb_map      ? "rgb_map"
                       : weight_type == mds_weight_type::motion_map ? "motion_map"
                                                                    : "attention_map";
    j["att_type"] = att_type == mds_attention_type::none ? "none" : att_type == mds_attention_type::max ? "max" : "sum";
    j["pool_type"] = pool_type == mds_pool_type::avg ? "avg" : "max";
    j["clip_len"] = clip_len;
    j["clip_stride"] = clip_stride;
    j["block"] = block;
    j["attention_eps"] = attention_eps;
    j["official_nan"] = official_nan;
    j["sobel_border"] = border == sobel_border::reflect ? "reflect" : "reflect_101";
    return j;
  }

  /// Parses to_json()'s object; every key is required, unknown keys are errors. `where` names the source.
  static mds_options from_json(const nlohmann::json& j, const std::string& where) {
    MSCL_CHECK(j.is_object(), config_error, where << ": MDS options must be a JSON object, got " << j.dump());
    static const char* keys[] = {"weight_type", "att_type",      "pool_type",    "clip_len",    "clip_stride",
                                 "block",       "attention_eps", "official_nan", "sobel_border"};
    for (auto it = j.begin(); it != j.end(); ++it) {
      bool known = false;
      for (const char* k : keys) known = known || it.key() == k;
      MSCL_CHECK(known, config_error, where << ": unknown MDS option '" << it.key() << "'");
    }
    for (const char* k : keys) MSCL_CHECK(j.contains(k), config_error, where << ": MDS option '" << k << "' is missing");
    auto str = [&](const char* k) {
      MSCL_CHECK(j.at(k).is_string(), config_error, where << ": MDS option '" << k << "' must be a string");
      return j.at(k).get<std::string>();
    };
    auto integer = [&](const char* k) {
      MSCL_CHECK(j.at(k).is_number_integer(), config_error, where << ": MDS option '" << k << "' must be an integer");
      const auto v = j.at(k).get<std::int64_t>();
      MSCL_CHECK(v >= 1 && v <= 1000000, config_error, where << ": MDS option '" << k << "' = " << v << " is out of range");
      return int(v);
    };
    mds_options o;
    const std::string w = str("weight_type"), a = str("att_type"), p = str("pool_type"), b = str("sobel_border");
    if (w == "rgb_map") o.weight_type = mds_weight_type::rgb_map;
    else if (w == "motion_map") o.weight_type = mds_weight_type::motion_map;
    else if (w == "attention_map") o.weight_type = mds_weight_type::attention_map;
    else MSCL_CHECK(false, config_error, where << ": weight_type '" << w << "', expected rgb_map|motion_map|attention_map");
    if (a == "none") o.att_type = mds_attention_type::none;
    else if (a == "max") o.att_type = mds_attention_type::max;
    else if (a == "sum") o.att_type = mds_attention_type::sum;
    else MSCL_CHECK(false, config_error, where << ": att_type '" << a << "', expected none|max|sum");
    if (p == "avg") o.pool_type = mds_pool_type::avg;
    else if (p == "max") o.pool_type = mds_pool_type::max;
    else MSCL_CHECK(false, config_error, where << ": pool_type '" << p << "', expected avg|max");
    if (b == "reflect") o.border = sobel_border::reflect;
    else if (b == "reflect_101") o.border = sobel_border::reflect_101;
    else MSCL_CHECK(false, config_error, where << ": sobel_border '" << b << "', expected reflect|reflect_101");
    o.clip_len = integer("clip_len");
    o.clip_stride = integer("clip_stride");
    o.block = integer("block");
    MSCL_CHECK(j.at("attention_eps").is_number(), config_error, where << ": MDS option 'attention_eps' must be a number");
    o.attention_eps = j.at("attention_eps").get<double>();
    MSCL_CHECK(j.at("official_nan").is_boolean(), config_error, where << ": MDS option 'official_nan' must be a boolean");
    o.official_nan = j.at("official_nan").get<bool>();
    try {
      o.validate();
    } catch (const value_error& e) {
      throw config_error(where + ": " + e.what());
    }
    return o;
  }
};

// ------------------------------------------------------------------------------- per-frame maps

namespace detail {
inline void check_flow(const flow_field& f, const char* who) {
  const std::size_t n = std::size_t(f.height) * std::size_t(f.width);
  MSCL_CHECK(f.height >= 1 && f.width >= 1 && f.u.size() == n && f.v.size() == n, shape_error,
             who << ": expected a non-empty flow field with height*width values per plane, got " << f.height << "x"
                 << f.width << " with " << f.u.size() << "/" << f.v.size() << " values");
}
/// Index of sample i (i in [-1, n]) after reflection.
inline int reflect_index(int i, int n, sobel_border b) {
  if (i >= 0 && i < n) return i;
  if (b == sobel_border::reflect) return i < 0 ? -i - 1 : 2 * n - i - 1;
  if (n == 1) return 0;
  return i < 0 ? -i : 2 * n - i - 2;
}
}  // namespace detail

/// 3×3 Sobel of an h×w plane (row-major) along `axis` (1 = x, derivative across columns; 0 = y):
/// out(y, x) = Σ_k s_k (in(y+k, x+1) − in(y+k, x−1)) for axis 1, s = (1, 2, 1), k = −1..1; the same
/// with the roles swapped for axis 0 (scipy.ndimage.sobel's orientation and scale).
inline std::vector<float> sobel3x3(const float* in, int h, int w, int axis, sobel_border border = sobel_border::reflect) {
  MSCL_CHECK(in != nullptr && h >= 1 && w >= 1 && (axis == 0 || axis == 1), value_error,
             "sobel3x3: expected a non-empty plane and axis 0 or 1, got " << h << "x" << w << ", axis " << axis);
  std::vector<float> out(std::size_t(h) * std::size_t(w));
  static const double s[3] = {1.0, 2.0, 1.0};
  for (int y = 0; y < h; ++y) {
    int ry[3], rx[3];
    for (int k = 0; k < 3; ++k) ry[k] = detail::reflect_index(y + k - 1, h, border);
    for (int x = 0; x < w; ++x) {
      for (int k = 0; k < 3; ++k) rx[k] = detail::reflect_index(x + k - 1, w, border);
      double acc = 0;
      for (int k = 0; k < 3; ++k) {
        if (axis == 1)
          acc += s[k] * (double(in[std::size_t(ry[k]) * w + rx[2]]) - double(in[std::size_t(ry[k]) * w + rx[0]]));
        else
          acc += s[k] * (double(in[std::size_t(ry[2]) * w + rx[k]]) - double(in[std::size_t(ry[0]) * w + rx[k]]));
      }
      out[std::size_t(y) * w + x] = float(acc);
    }
  }
  return out;
}

/// M = sqrt((∂x u)² + (∂y u)² + (∂x v)² + (∂y v)²) with 3×3 Sobel derivatives (H·W values).
inline std::vector<float> motion_boundary_map(const flow_field& f, sobel_border border = sobel_border::reflect) {
  detail::check_flow(f, "motion_boundary_map");
  const auto ux = sobel3x3(f.u.data(), f.height, f.width, 1, border);
  const auto uy = sobel3x3(f.u.data(), f.height, f.width, 0, border);
  const auto vx = sobel3x3(f.v.data(), f.height, f.width, 1, border);
  const auto vy = sobel3x3(f.v.data(), f.height, f.width, 0, border);
  std::vector<float> m(ux.size());
  for (std::size_t i = 0; i < m.size(); ++i) m[i] = std::sqrt(ux[i] * ux[i] + uy[i] * uy[i] + vx[i] * vx[i] + vy[i] * vy[i]);
  return m;
}

/// Colour image C (H·W·3, RGB interleaved, integer values 0..255 as float): RAFT's flow_to_image of
/// the flow normalised by (max length + 1e-5).
inline std::vector<float> flow_color_image(const flow_field& f) {
  detail::check_flow(f, "flow_color_image");
  const std::size_t n = f.u.size();
  float rad_max = 0.f;
  for (std::size_t i = 0; i < n; ++i) rad_max = std::max(rad_max, std::sqrt(f.u[i] * f.u[i] + f.v[i] * f.v[i]));
  const float div = rad_max + 1e-5f;
  std::vector<float> c(3 * n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto col = flow::flow_color(f.u[i] / div, f.v[i] / div);
    for (int k = 0; k < 3; ++k) c[3 * i + k] = std::round(col[k] * 255.f);  // exact floor(255 c)
  }
  return c;
}

/// Attention from a motion map m (h×w): average-pool block×block cells (floor), bilinear upsample to
/// h×w (align_corners = false, PyTorch's source-index rule), divide by max or sum (+ eps). With
/// att_type none the upsampled map is returned unnormalised. Throws value_error if h or w < block.
inline std::vector<float> attention_map(const std::vector<float>& m, int h, int w, int block, mds_attention_type att_type,
                                        double eps) {
  MSCL_CHECK(h >= 1 && w >= 1 && m.size() == std::size_t(h) * std::size_t(w), shape_error,
             "attention_map: expected " << h << "x" << w << " = " << std::size_t(h) * std::size_t(w) << " values, got "
                                        << m.size());
  MSCL_CHECK(block >= 1 && h >= block && w >= block, value_error,
             "attention_map: a " << h << "x" << w << " map has no complete " << block << "x" << block
                                 << " pooling cell (use a smaller block)");
  const int gh = h / block, gw = w / block;
  std::vector<float> pooled(std::size_t(gh) * gw);
  for (int by = 0; by < gh; ++by)
    for (int bx = 0; bx < gw; ++bx) {
      double acc = 0;
      for (int y = by * block; y < (by + 1) * block; ++y)
        for (int x = bx * block; x < (bx + 1) * block; ++x) acc += m[std::size_t(y) * w + x];
      pooled[std::size_t(by) * gw + bx] = float(acc / (double(block) * double(block)));
    }
  // Bilinear, align_corners = false: src = max(0, (dst + 0.5)·in/out − 0.5).
  auto axis_weights = [](int out_n, int in_n, std::vector<int>& i0, std::vector<int>& i1, std::vector<float>& l1) {
    i0.resize(out_n), i1.resize(out_n), l1.resize(out_n);
    const float scale = float(in_n) / float(out_n);
    for (int d = 0; d < out_n; ++d) {
      float src = scale * (float(d) + 0.5f) - 0.5f;
      if (src < 0) src = 0;
      const int a = std::min(int(src), in_n - 1);
      i0[d] = a;
      i1[d] = a < in_n - 1 ? a + 1 : a;
      l1[d] = src - float(a);
    }
  };
  std::vector<int> y0, y1, x0, x1;
  std::vector<float> ly, lx;
  axis_weights(h, gh, y0, y1, ly);
  axis_weights(w, gw, x0, x1, lx);
  std::vector<float> a(std::size_t(h) * w);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const float* r0 = &pooled[std::size_t(y0[y]) * gw];
      const float* r1 = &pooled[std::size_t(y1[y]) * gw];
      const float top = (1 - lx[x]) * r0[x0[x]] + lx[x] * r0[x1[x]];
      const float bot = (1 - lx[x]) * r1[x0[x]] + lx[x] * r1[x1[x]];
      a[std::size_t(y) * w + x] = (1 - ly[y]) * top + ly[y] * bot;
    }
  if (att_type == mds_attention_type::none) return a;
  double norm = 0;
  if (att_type == mds_attention_type::max) {
    float mx = a[0];
    for (float v : a) mx = std::max(mx, v);
    norm = mx;
  } else {
    for (float v : a) norm += v;
  }
  const float div = float(norm + eps);  // eps = 0 reproduces the official 0/0 = NaN
  for (float& v : a) v = v / div;
  return a;
}

namespace detail {
/// Mean or max of n values; NaN propagates (numpy semantics).
inline double pool_values(const float* p, std::size_t n, mds_pool_type t) {
  if (t == mds_pool_type::avg) {
    double s = 0;
    for (std::size_t i = 0; i < n; ++i) s += p[i];
    return s / double(n);
  }
  double m = -std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isnan(p[i])) return std::numeric_limits<double>::quiet_NaN();
    m = std::max(m, double(p[i]));
  }
  return m;
}
}  // namespace detail

/// numpy.median: middle value, or the mean of the two middle values for an even count; NaN if any
/// value is NaN; throws value_error when empty.
inline double numpy_median(std::vector<double> v) {
  MSCL_CHECK(!v.empty(), value_error, "numpy_median: median of an empty list");
  for (double x : v)
    if (std::isnan(x)) return std::numeric_limits<double>::quiet_NaN();
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/// S_i = (1/clip_len) Σ_{j < clip_len, i + j·stride < N} d_{i + j·stride} for every i < N.
inline std::vector<double> mds_clip_scores(const std::vector<double>& d, int clip_len = 8, int clip_stride = 4) {
  MSCL_CHECK(clip_len >= 1 && clip_stride >= 1, value_error,
             "mds_clip_scores: clip_len and clip_stride must be >= 1, got " << clip_len << ", " << clip_stride);
  const std::size_t n = d.size();
  std::vector<double> s(n);
  for (std::size_t i = 0; i < n; ++i) {
    double acc = 0;
    for (int j = 0; j < clip_len; ++j) {
      const std::size_t k = i + std::size_t(j) * std::size_t(clip_stride);
      if (k < n) acc += d[k];
    }
    s[i] = acc / double(clip_len);
  }
  return s;
}

/// { i : S_i > median(S) }, ascending (strict: starts equal to the median are not chosen).
inline std::vector<index_t> mds_choose(const std::vector<double>& scores) {
  std::vector<index_t> chosen;
  if (scores.empty()) return chosen;
  const double med = numpy_median(scores);
  for (std::size_t i = 0; i < scores.size(); ++i)
    if (scores[i] > med) chosen.push_back(index_t(i));
  return chosen;
}

/// The statistic of one video.
struct mds_result {
  std::vector<double> frame_values;  ///< d_i
  std::vector<double> scores;        ///< S_i
  std::vector<index_t> chosen;       ///< ascending starts with S_i > median
};

/// Streams the flow maps of one video, one at a time (only the previous weighted image is kept, so
/// memory does not grow with the video length). All maps must have the same size.
class mds_accumulator {
 public:
  explicit mds_accumulator(mds_options opt = {}) : opt_(opt) { opt_.validate(); }

  void push(const flow_field& f) {
    detail::check_flow(f, "mds_accumulator::push");
    if (count_ == 0) {
      h_ = f.height;
      w_ = f.width;
    }
    MSCL_CHECK(f.height == h_ && f.width == w_, shape_error,
               "mds_accumulator::push: flow " << count_ << " is " << f.height << "x" << f.width << " but flow 0 was "
                                              << h_ << "x" << w_);
    const std::size_t n = f.u.size();
    const double eps = opt_.official_nan ? 0.0 : opt_.attention_eps;
    if (opt_.weight_type == mds_weight_type::motion_map) {
      const auto m = motion_boundary_map(f, opt_.border);
      values_.push_back(detail::pool_values(m.data(), n, opt_.pool_type));
    } else if (opt_.weight_type == mds_weight_type::attention_map) {
      const auto a = attention_map(motion_boundary_map(f, opt_.border), h_, w_, opt_.block, opt_.att_type, eps);
      values_.push_back(detail::pool_values(a.data(), n, opt_.pool_type));
    } else {
      std::vector<float> wimg = flow_color_image(f);
      if (opt_.att_type != mds_attention_type::none) {
        const auto a = attention_map(motion_boundary_map(f, opt_.border), h_, w_, opt_.block, opt_.att_type, eps);
        for (std::size_t i = 0; i < n; ++i)
          for (int k = 0; k < 3; ++k) wimg[3 * i + k] *= a[i];
      }
      if (count_ > 0) values_.push_back(differential(prev_, wimg));
      prev_ = std::move(wimg);
    }
    ++count_;
  }

  index_t size() const { return count_; }

  /// The result; the accumulator is left empty. Throws value_error if no flow was pushed.
  mds_result finish() {
    MSCL_CHECK(count_ > 0, value_error, "mds_accumulator::finish: no flow maps were pushed (a video needs >= 1)");
    if (opt_.weight_type == mds_weight_type::rgb_map) values_.push_back(differential(prev_, prev_));  // W_N := W_{N-1}
    mds_result r;
    r.frame_values = std::move(values_);
    r.scores = mds_clip_scores(r.frame_values, opt_.clip_len, opt_.clip_stride);
    r.chosen = mds_choose(r.scores);
    *this = mds_accumulator(opt_);
    return r;
  }

 private:
  // pool(‖a − b‖₂ over channels): literal even for a == b, so NaN images give NaN like numpy.
  double differential(const std::vector<float>& a, const std::vector<float>& b) const {
    const std::size_t n = a.size() / 3;
    std::vector<float> d(n);
    for (std::size_t i = 0; i < n; ++i) {
      const float d0 = a[3 * i] - b[3 * i], d1 = a[3 * i + 1] - b[3 * i + 1], d2 = a[3 * i + 2] - b[3 * i + 2];
      d[i] = std::sqrt(d0 * d0 + d1 * d1 + d2 * d2);
    }
    return detail::pool_values(d.data(), n, opt_.pool_type);
  }

  mds_options opt_;
  int h_ = 0, w_ = 0;
  index_t count_ = 0;
  std::vector<float> prev_;
  std::vector<double> values_;
};

/// The statistic of a video given all its flow maps.
inline mds_result motion_differential_statistic(const std::vector<flow_field>& flows, const mds_options& opt = {}) {
  mds_accumulator acc(opt);
  for (const auto& f : flows) acc.push(f);
  return acc.finish();
}

// ------------------------------------------------------------------------------- load-time sampling

/// Parameters of the load-time samplers (TemporalShiftChosenSampleFrames / ChosenSampleFrames).
struct mds_sampler_options {
  index_t clip_len = 8;
  index_t frame_interval = 8;
  index_t shift_range = 1;        ///< key shift s ~ U{−R..R}, R = shift_range·clip_len·frame_interval
  int max_query_draws = 11;       ///< rejection draws for the query start
  bool uniform_when_empty = true; ///< §11 A7: an empty chosen list means "every start is chosen"
  bool official_nearest = false;  ///< the official approximate nearest search for the key start

  void validate() const {
    MSCL_CHECK(clip_len >= 1 && frame_interval >= 1 && shift_range >= 0 && max_query_draws >= 1, value_error,
               "mds_sampler_options: need clip_len, frame_interval, max_query_draws >= 1 and shift_range >= 0, got "
                   << clip_len << ", " << frame_interval << ", " << max_query_draws << ", " << shift_range);
  }
};

namespace detail {
inline void check_chosen(index_t num_frames, const std::vector<index_t>& chosen, const char* who) {
  MSCL_CHECK(num_frames >= 1, value_error, who << ": need num_frames >= 1, got " << num_frames);
  for (std::size_t i = 0; i < chosen.size(); ++i) {
    MSCL_CHECK(chosen[i] >= 0 && chosen[i] < num_frames, value_error,
               who << ": chosen start " << chosen[i] << " (position " << i << ") is outside [0, " << num_frames << ")");
    MSCL_CHECK(i == 0 || chosen[i - 1] < chosen[i], value_error,
               who << ": chosen starts must be strictly ascending, got " << chosen[i - 1] << " then " << chosen[i]);
  }
}
}  // namespace detail

/// Exact nearest element of the ascending list `chosen` to `target`; ties go to the smaller value.
inline index_t nearest_chosen(const std::vector<index_t>& chosen, index_t target) {
  MSCL_CHECK(!chosen.empty(), value_error, "nearest_chosen: the chosen list is empty");
  const auto it = std::lower_bound(chosen.begin(), chosen.end(), target);
  if (it == chosen.begin()) return *it;
  if (it == chosen.end()) return chosen.back();
  const index_t hi = *it, lo = *(it - 1);
  return (target - lo) <= (hi - target) ? lo : hi;
}

/// The official approximate search as ALGORITHM.md §5.2 describes it: start at 0 and, scanning the
/// list in order, move to a candidate c whenever |c − target| < |c − current|. It can stop a few
/// positions away from the true nearest and can even return 0 when 0 is not in the list.
inline index_t official_nearest_chosen(const std::vector<index_t>& chosen, index_t target) {
  index_t cur = 0;
  for (index_t c : chosen) {
    const index_t dt = c > target ? c - target : target - c;
    const index_t dc = c > cur ? c - cur : cur - c;
    if (dt < dc) cur = c;
  }
  return cur;
}

/// Query start: up to max_query_draws draws of the MMAction2 one-clip train rule (uniform in
/// [0, N − clip_len·frame_interval], 0 for shorter videos), accepting the first that is chosen;
/// otherwise chosen[0]. Empty chosen list: the first draw (uniform_when_empty) or 0 (official).
/// Draws come from elements 0.. of `stream` under `seed`.
inline index_t mds_query_start(index_t num_frames, const std::vector<index_t>& chosen, const mds_sampler_options& opt,
                               std::uint64_t seed, std::uint64_t stream) {
  const index_t span = opt.clip_len * opt.frame_interval;
  const index_t avg = num_frames - span + 1;  // one clip: avg_interval = N − ori + 1
  auto draw = [&](int k) { return avg > 0 ? detail::uniform_below(seed, stream, std::uint64_t(k), avg) : index_t(0); };
  if (chosen.empty()) return opt.uniform_when_empty ? draw(0) : 0;
  for (int k = 0; k < opt.max_query_draws; ++k) {
    const index_t a = draw(k);
    if (std::binary_search(chosen.begin(), chosen.end(), a)) return a;
  }
  return chosen.front();
}

/// One query/key pair of clips.
struct mds_clip_pair {
  index_t query_start = 0, key_start = 0;
  std::vector<index_t> query_frames, key_frames;  ///< start + j·frame_interval mod N, j < clip_len
};

namespace detail {
inline std::vector<index_t> looped_clip(index_t start, index_t num_frames, const mds_sampler_options& opt) {
  std::vector<index_t> f(static_cast<std::size_t>(opt.clip_len));
  for (index_t j = 0; j < opt.clip_len; ++j) f[std::size_t(j)] = (start + j * opt.frame_interval) % num_frames;
  return f;
}
}  // namespace detail

/// `TemporalShiftChosenSampleFrames` (ALGORITHM.md §5.2): query start by mds_query_start; key start
/// = chosen start nearest to a + s, s ~ U{−R..R}; frames wrap modulo N. One generator stream per
/// call (elements 0..max_query_draws−1: query draws; element max_query_draws: the shift).
inline mds_clip_pair temporal_shift_chosen_sampler(index_t num_frames, const std::vector<index_t>& chosen,
                                                   const mds_sampler_options& opt, generator& gen) {
  opt.validate();
  detail::check_chosen(num_frames, chosen, "temporal_shift_chosen_sampler");
  const std::uint64_t stream = gen.take_stream();
  mds_clip_pair p;
  p.query_start = mds_query_start(num_frames, chosen, opt, gen.seed(), stream);
  const index_t range = opt.shift_range * opt.clip_len * opt.frame_interval;
  const index_t s = detail::uniform_below(gen.seed(), stream, std::uint64_t(opt.max_query_draws), 2 * range + 1) - range;
  const index_t target = p.query_start + s;
  if (chosen.empty()) p.key_start = opt.uniform_when_empty ? std::clamp<index_t>(target, 0, num_frames - 1) : 0;
  else p.key_start = opt.official_nearest ? official_nearest_chosen(chosen, target) : nearest_chosen(chosen, target);
  p.query_frames = detail::looped_clip(p.query_start, num_frames, opt);
  p.key_frames = detail::looped_clip(p.key_start, num_frames, opt);
  return p;
}

/// `ChosenSampleFrames` (pretraining validation): the query-start rule only, one clip of frame indices.
inline std::vector<index_t> chosen_sampler(index_t num_frames, const std::vector<index_t>& chosen,
                                           const mds_sampler_options& opt, generator& gen) {
  opt.validate();
  detail::check_chosen(num_frames, chosen, "chosen_sampler");
  const std::uint64_t stream = gen.take_stream();
  return detail::looped_clip(mds_query_start(num_frames, chosen, opt, gen.seed(), stream), num_frames, opt);
}

// ------------------------------------------------------------------------------------ sample file

/// One video's entry in the sample file.
struct mds_video_samples {
  std::string video;
  index_t num_frames = 0;
  std::vector<double> scores;
  std::vector<index_t> chosen;
};

inline constexpr const char* k_mds_format = "mscl-mds-samples";
inline constexpr int k_mds_format_version = 1;

/// The header line (without '\n').
inline std::string mds_header_line(const mds_options& opt) {
  nlohmann::ordered_json j;
  j["format"] = k_mds_format;
  j["version"] = k_mds_format_version;
  j["options"] = nlohmann::ordered_json::parse(opt.to_json().dump());
  return j.dump();
}

/// One record line (without '\n'); NaN scores become null.
inline std::string mds_record_line(const mds_video_samples& v) {
  MSCL_CHECK(!v.video.empty() && v.num_frames >= 1 && v.scores.size() == std::size_t(v.num_frames), value_error,
             "mds_record_line: video '" << v.video << "' needs a name, num_frames >= 1 and one score per frame, got "
                                        << v.num_frames << " frames and " << v.scores.size() << " scores");
  detail::check_chosen(v.num_frames, v.chosen, "mds_record_line");
  nlohmann::ordered_json j;
  j["video"] = v.video;
  j["num_frames"] = v.num_frames;
  nlohmann::ordered_json s = nlohmann::ordered_json::array();
  for (double x : v.scores) s.push_back(std::isfinite(x) ? nlohmann::ordered_json(x) : nlohmann::ordered_json(nullptr));
  j["scores"] = std::move(s);
  j["chosen"] = v.chosen;
  return j.dump();
}

/// A parsed sample file: options, entries in file order, and a name index.
class mds_sample_file {
 public:
  mds_options options;
  std::uint64_t valid_bytes = 0;  ///< bytes up to the end of the last accepted line
  bool dropped_incomplete_tail = false;

  const std::vector<mds_video_samples>& videos() const { return videos_; }
  /// The entry of `video`, or nullptr.
  const mds_video_samples* find(const std::string& video) const {
    const auto it = index_.find(video);
    return it == index_.end() ? nullptr : &videos_[it->second];
  }
  /// Appends an entry; returns false (and changes nothing) if the video is already present.
  bool add(mds_video_samples v) {
    if (index_.count(v.video)) return false;
    index_.emplace(v.video, videos_.size());
    videos_.push_back(std::move(v));
    return true;
  }

 private:
  std::vector<mds_video_samples> videos_;
  std::unordered_map<std::string, std::size_t> index_;
};

namespace detail {
inline mds_video_samples parse_mds_record(const nlohmann::json& j, const std::string& where) {
  MSCL_CHECK(j.is_object(), io_error, where << ": expected a JSON object per video");
  for (auto it = j.begin(); it != j.end(); ++it)
    MSCL_CHECK(it.key() == "video" || it.key() == "num_frames" || it.key() == "scores" || it.key() == "chosen", io_error,
               where << ": unknown key '" << it.key() << "'");
  MSCL_CHECK(j.contains("video") && j["video"].is_string() && !j["video"].get<std::string>().empty(), io_error,
             where << ": 'video' must be a non-empty string");
  mds_video_samples v;
  v.video = j["video"].get<std::string>();
  MSCL_CHECK(j.contains("num_frames") && j["num_frames"].is_number_integer(), io_error,
             where << ": 'num_frames' must be an integer");
  v.num_frames = j["num_frames"].get<index_t>();
  MSCL_CHECK(v.num_frames >= 1 && v.num_frames <= (index_t(1) << 31), io_error,
             where << ": num_frames " << v.num_frames << " is out of range (1..2^31)");
  MSCL_CHECK(j.contains("scores") && j["scores"].is_array() && j["scores"].size() == std::size_t(v.num_frames), io_error,
             where << ": 'scores' must be an array of num_frames = " << v.num_frames << " numbers");
  for (const auto& s : j["scores"]) {
    MSCL_CHECK(s.is_number() || s.is_null(), io_error, where << ": score " << s.dump() << " is not a number or null");
    v.scores.push_back(s.is_null() ? std::numeric_limits<double>::quiet_NaN() : s.get<double>());
  }
  MSCL_CHECK(j.contains("chosen") && j["chosen"].is_array(), io_error, where << ": 'chosen' must be an array");
  for (const auto& c : j["chosen"]) {
    MSCL_CHECK(c.is_number_integer(), io_error, where << ": chosen entry " << c.dump() << " is not an integer");
    v.chosen.push_back(c.get<index_t>());
  }
  try {
    check_chosen(v.num_frames, v.chosen, "chosen");
  } catch (const value_error& e) {
    throw io_error(where + ": " + e.what());
  }
  return v;
}
}  // namespace detail

/// Parses sample-file text; `name` prefixes error messages (name:line). With allow_incomplete_tail,
/// a last line without '\n' that does not parse is dropped (a generator killed mid-write) instead
/// of being an error.
inline mds_sample_file parse_mds_samples(const std::string& text, const std::string& name,
                                         bool allow_incomplete_tail = false) {
  mds_sample_file out;
  std::size_t pos = 0;
  int line_no = 0;
  bool have_header = false;
  while (pos < text.size()) {
    const std::size_t nl = text.find('\n', pos);
    const bool complete = nl != std::string::npos;
    const std::size_t end = complete ? nl : text.size();
    const std::string line = text.substr(pos, end - pos);
    ++line_no;
    const std::string where = name + ":" + std::to_string(line_no);
    const std::size_t next = complete ? nl + 1 : text.size();
    if (line.find_first_not_of(" \t\r") == std::string::npos) {  // blank line
      pos = next;
      out.valid_bytes = next;
      continue;
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      if (!complete && allow_incomplete_tail) {
        out.dropped_incomplete_tail = true;
        break;
      }
      throw io_error(where + ": not valid JSON (" + e.what() + ")");
    }
    if (!have_header) {
      MSCL_CHECK(j.is_object() && j.contains("format") && j["format"].is_string() &&
                     j["format"].get<std::string>() == k_mds_format,
                 io_error,
                 where << ": expected the header {\"format\":\"" << k_mds_format << "\",...} as the first line");
      MSCL_CHECK(j.contains("version") && j["version"].is_number_integer() && j["version"].get<int>() == k_mds_format_version,
                 io_error, where << ": unsupported sample-file version " << (j.contains("version") ? j["version"].dump() : "(none)")
                                 << ", this reader knows version " << k_mds_format_version);
      MSCL_CHECK(j.contains("options"), io_error, where << ": the header has no 'options'");
      try {
        out.options = mds_options::from_json(j["options"], where);
      } catch (const config_error& e) {
        throw io_error(e.what());
      }
      have_header = true;
    } else {
      mds_video_samples v = detail::parse_mds_record(j, where);
      const std::string video = v.video;
      MSCL_CHECK(out.add(std::move(v)), io_error, where << ": video '" << video << "' appears twice");
    }
    pos = next;
    out.valid_bytes = next;
  }
  MSCL_CHECK(have_header, io_error, name << ": empty sample file (no header line)");
  return out;
}

/// Reads a sample file (see parse_mds_samples).
inline mds_sample_file read_mds_samples(const std::string& path, bool allow_incomplete_tail = false) {
  std::ifstream in(path, std::ios::binary);
  MSCL_CHECK(in.good(), io_error, "read_mds_samples: cannot open '" << path << "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  MSCL_CHECK(!in.bad(), io_error, "read_mds_samples: reading '" << path << "' failed");
  return parse_mds_samples(ss.str(), path, allow_incomplete_tail);
}

/// Writes a complete sample file atomically (header + one line per video, in the given order).
inline void write_mds_samples(const std::string& path, const mds_options& opt, const std::vector<mds_video_samples>& videos) {
  std::string text = mds_header_line(opt) + "\n";
  for (const auto& v : videos) text += mds_record_line(v) + "\n";
  io::write_file_atomic(path, text);
}

/// The load-time MDS sampler over a sample file: looks a video up and draws its clip pair.
class motion_differential_sampler {
 public:
  motion_differential_sampler() = default;
  explicit motion_differential_sampler(const std::string& path, mds_sampler_options opt = {})
      : file_(read_mds_samples(path)), path_(path), opt_(opt) {
    opt_.validate();
  }
  const mds_sample_file& file() const { return file_; }
  const mds_sampler_options& options() const { return opt_; }

  /// `num_frames` is the caller's flow-aligned length and must match the file (a stale sample file
  /// for re-extracted flow would otherwise silently pick wrong starts).
  mds_clip_pair operator()(const std::string& video, index_t num_frames, generator& gen) const {
    return temporal_shift_chosen_sampler(num_frames, entry(video, num_frames).chosen, opt_, gen);
  }
  /// Single clip (validation).
  std::vector<index_t> single(const std::string& video, index_t num_frames, generator& gen) const {
    return chosen_sampler(num_frames, entry(video, num_frames).chosen, opt_, gen);
  }

 private:
  const mds_video_samples& entry(const std::string& video, index_t num_frames) const {
    const auto* v = file_.find(video);
    MSCL_CHECK(v != nullptr, value_error, "motion_differential_sampler: video '" << video << "' is not in " << path_);
    MSCL_CHECK(v->num_frames == num_frames, value_error,
               "motion_differential_sampler: " << path_ << " has " << v->num_frames << " frames for '" << video
                                               << "' but the data set has " << num_frames);
    return *v;
  }
  mds_sample_file file_;
  std::string path_;
  mds_sampler_options opt_;
};

}  // namespace mscl::data
