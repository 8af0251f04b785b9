/// \file rawframes.hpp
/// \brief Frame-source descriptor for one MMAction2 rawframes directory (ECOSYSTEM.md §1.1):
///        which file-name templates it uses, where numbering starts, how many RGB and flow frames
///        it holds, and reading frame i as an image or a dequantised flow field.
///
/// The layouts in circulation differ in ways that break loaders silently (mmaction2 #79, #1812,
/// #2207): RGB `img_{:05d}.jpg` (or CoCLR's `image_%05d.jpg`), flow as two grey planes
/// `flow_x_/flow_y_` (denseflow) or `x_/y_` (mmaction's Python extractor), or CoCLR's one packed
/// 3-channel `flow_%05d.jpg`; numbering from 0 or 1, flow often from a different base than RGB;
/// N-1 flow pairs for N frames. `rawframes_dir::probe` lists the directory once and settles all of
/// these, each overridable, so that a loader indexes frames 0..count-1 and never guesses.
///
/// Indices in this API are logical and 0-based: frame i lives in the file numbered `start + i`.
/// Reading needs `MSCL_WITH_JPEG` (target `mscl::jpeg`); probing and path building do not.
#pragma once
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../flow/quantize.hpp"
#include "annotations.hpp"
#include "frame.hpp"
#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG
#include "../io/jpeg.hpp"
#endif

namespace mscl::data {

/// A frame file-name template: prefix, a zero-padded number of `digits` digits, suffix.
struct frame_template {
  std::string prefix = "img_";
  int digits = 5;
  std::string suffix = ".jpg";

  /// The file name of frame number `n` (the number as stored, start index already applied).
  std::string name(std::int64_t n) const {
    MSCL_CHECK(n >= 0, value_error, "data::frame_template::name: frame number must be >= 0, got " << n);
    std::string num = std::to_string(n);
    if (int(num.size()) < digits) num.insert(0, std::size_t(digits) - num.size(), '0');
    return prefix + num + suffix;
  }

  /// True when `file` is prefix + number + suffix; the number goes to `*n`. A number longer than
  /// `digits` is accepted only without a leading zero (what "{:05d}" prints for 100000).
  bool match(std::string_view file, std::int64_t* n = nullptr) const {
    if (file.size() < prefix.size() + suffix.size() + std::size_t(digits)) return false;
    if (file.compare(0, prefix.size(), prefix) != 0) return false;
    if (file.compare(file.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
    const std::string_view num = file.substr(prefix.size(), file.size() - prefix.size() - suffix.size());
    if (num.size() < std::size_t(digits) || num.size() > 18) return false;
    if (num.size() > std::size_t(digits) && num.front() == '0') return false;
    std::int64_t v = 0;
    for (char c : num) {
      if (c < '0' || c > '9') return false;
      v = v * 10 + (c - '0');
    }
    if (n) *n = v;
    return true;
  }

  /// Parses a Python/printf template with one numeric slot: `img_{:05d}.jpg`, `img_{:05}.jpg`,
  /// `image_%05d.jpg`. Throws value_error for anything else.
  static frame_template parse(std::string_view t) {
    frame_template out;
    std::size_t b = t.find("{:0");
    std::size_t e = std::string_view::npos;
    if (b != std::string_view::npos) {
      e = t.find('}', b);
    } else if ((b = t.find("%0")) != std::string_view::npos) {
      e = t.find('d', b);
    }
    MSCL_CHECK(b != std::string_view::npos && e != std::string_view::npos, value_error,
               "data::frame_template::parse: expected one slot like {:05d} or %05d in '" << t << "'");
    std::string_view width = t.substr(b + 2, e - b - 2);  // "05d", "05" or "05"
    if (!width.empty() && width.back() == 'd') width.remove_suffix(1);
    int d = 0;
    for (char c : width) {
      MSCL_CHECK(c >= '0' && c <= '9', value_error, "data::frame_template::parse: bad width in '" << t << "'");
      d = d * 10 + (c - '0');
    }
    MSCL_CHECK(d >= 1 && d <= 12, value_error, "data::frame_template::parse: width must be 1..12 in '" << t << "'");
    out.prefix = std::string(t.substr(0, b));
    out.digits = d;
    out.suffix = std::string(t.substr(e + 1));
    MSCL_CHECK(out.suffix.find('{') == std::string::npos && out.suffix.find('%') == std::string::npos, value_error,
               "data::frame_template::parse: more than one slot in '" << t << "'");
    return out;
  }

  /// Parses mmaction's two-slot flow template (`flow_{}_{:05d}.jpg`, `{}_{:05d}.jpg`) into the x and y templates.
  static std::pair<frame_template, frame_template> parse_flow(std::string_view t) {
    const std::size_t slot = t.find("{}");
    MSCL_CHECK(slot != std::string_view::npos, value_error,
               "data::frame_template::parse_flow: expected a direction slot {} before the number slot in '" << t << "'");
    std::string x(t), y(t);
    x.replace(slot, 2, "x");
    y.replace(slot, 2, "y");
    return {parse(x), parse(y)};
  }

  bool operator==(const frame_template& o) const { return prefix == o.prefix && digits == o.digits && suffix == o.suffix; }
};

/// How flow is stored next to the frames.
enum class flow_layout {
  none,        ///< no flow files found
  two_grey,    ///< one grey JPEG per component (x then y), mmaction/denseflow
  packed_rgb,  ///< CoCLR/MemDPC: one 3-channel JPEG, u and v in the B and G planes (OpenCV order), R = 128
};

inline const char* flow_layout_name(flow_layout l) {
  switch (l) {
    case flow_layout::none: return "none";
    case flow_layout::two_grey: return "two_grey";
    case flow_layout::packed_rgb: return "packed_rgb";
  }
  return "?";
}

/// What a directory listing says about one template.
struct frame_scan {
  std::int64_t start = 0;       ///< first number (detected 0/1, or the override)
  std::int64_t contiguous = 0;  ///< files start, start+1, ... before the first missing number
  std::int64_t files = 0;       ///< files matching the template at all
  std::int64_t first = -1, last = -1;  ///< smallest / largest number found (-1: none)
  bool has_gap() const { return files > contiguous; }
};

/// Overrides for probing; unset fields are detected.
struct rawframes_options {
  std::optional<frame_template> rgb;                                   ///< default: img_{:05d}.jpg, else image_{:05d}.jpg
  std::optional<std::pair<frame_template, frame_template>> flow_xy;    ///< default: flow_x_/flow_y_, else x_/y_
  std::optional<frame_template> flow_packed;                           ///< default: flow_{:05d}.jpg (CoCLR)
  bool allow_packed_flow = true;  ///< consider the CoCLR packed layout when no x/y planes exist
  std::optional<int> rgb_start, flow_start;  ///< default: 0 if a file numbered 0 exists, else 1
};

namespace detail {

inline frame_scan scan_template(const std::vector<std::string>& files, const frame_template& t, std::optional<int> start) {
  frame_scan s;
  std::vector<std::int64_t> nums;
  for (const std::string& f : files) {
    std::int64_t n = 0;
    if (t.match(f, &n)) nums.push_back(n);
  }
  std::sort(nums.begin(), nums.end());
  nums.erase(std::unique(nums.begin(), nums.end()), nums.end());
  s.files = std::int64_t(nums.size());
  if (!nums.empty()) {
    s.first = nums.front();
    s.last = nums.back();
  }
  s.start = start ? *start : (s.first == 0 ? 0 : 1);
  auto it = std::lower_bound(nums.begin(), nums.end(), s.start);
  std::int64_t expect = s.start;
  while (it != nums.end() && *it == expect) {
    ++it;
    ++expect;
  }
  s.contiguous = expect - s.start;
  return s;
}

inline std::vector<std::string> list_files(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  MSCL_CHECK(fs::is_directory(dir, ec), io_error, "data::rawframes_dir::probe: '" << dir << "' is not a directory");
  std::vector<std::string> out;
  fs::directory_iterator it(dir, ec);
  MSCL_CHECK(!ec, io_error, "data::rawframes_dir::probe: cannot list '" << dir << "': " << ec.message());
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    MSCL_CHECK(!ec, io_error, "data::rawframes_dir::probe: error while listing '" << dir << "': " << ec.message());
    out.push_back(it->path().filename().string());
  }
  return out;
}

}  // namespace detail

/// One rawframes directory: templates, start indices, counts; path building and reading.
struct rawframes_dir {
  std::string directory;

  frame_template rgb_template;
  frame_scan rgb_scan;
  std::int64_t rgb_start = 1;
  std::int64_t rgb_count = 0;  ///< frames 0..rgb_count-1 all exist (contiguous run)

  flow_layout flow = flow_layout::none;
  frame_template flow_x_template{"flow_x_", 5, ".jpg"};  ///< packed_rgb: the single flow template
  frame_template flow_y_template{"flow_y_", 5, ".jpg"};
  frame_scan flow_x_scan, flow_y_scan;  ///< packed_rgb: both describe the packed files
  std::int64_t flow_start = 1;
  std::int64_t flow_count = 0;  ///< flow steps 0..flow_count-1 have every component file

  /// Lists `dir` once and detects templates, start indices and counts (see rawframes_options).
  /// Throws io_error when `dir` is not a readable directory. A directory without any frame files
  /// is not an error: counts are 0 (a loader or verify reports it).
  static rawframes_dir probe(const std::string& dir, const rawframes_options& opt = {}) {
    rawframes_dir d;
    d.directory = dir;
    const std::vector<std::string> files = detail::list_files(dir);
    auto any_match = [&](const frame_template& t) {
      for (const std::string& f : files)
        if (t.match(f)) return true;
      return false;
    };
    // RGB template.
    if (opt.rgb) {
      d.rgb_template = *opt.rgb;
    } else {
      const frame_template img{"img_", 5, ".jpg"}, image{"image_", 5, ".jpg"};
      d.rgb_template = (!any_match(img) && any_match(image)) ? image : img;
    }
    d.rgb_scan = detail::scan_template(files, d.rgb_template, opt.rgb_start);
    d.rgb_start = d.rgb_scan.start;
    d.rgb_count = d.rgb_scan.contiguous;
    // Flow layout and templates.
    if (opt.flow_xy) {
      d.flow = flow_layout::two_grey;
      d.flow_x_template = opt.flow_xy->first;
      d.flow_y_template = opt.flow_xy->second;
    } else {
      const frame_template fx{"flow_x_", 5, ".jpg"}, fy{"flow_y_", 5, ".jpg"};
      const frame_template x{"x_", 5, ".jpg"}, y{"y_", 5, ".jpg"};
      const frame_template packed = opt.flow_packed ? *opt.flow_packed : frame_template{"flow_", 5, ".jpg"};
      if (any_match(fx) || any_match(fy)) {
        d.flow = flow_layout::two_grey;
        d.flow_x_template = fx;
        d.flow_y_template = fy;
      } else if (any_match(x) || any_match(y)) {
        d.flow = flow_layout::two_grey;
        d.flow_x_template = x;
        d.flow_y_template = y;
      } else if ((opt.allow_packed_flow || opt.flow_packed) && any_match(packed)) {
        d.flow = flow_layout::packed_rgb;
        d.flow_x_template = packed;
        d.flow_y_template = packed;
      }
    }
    if (d.flow != flow_layout::none) {
      // x decides the start (y must follow it); the count is where either component stops.
      d.flow_x_scan = detail::scan_template(files, d.flow_x_template, opt.flow_start);
      d.flow_start = d.flow_x_scan.start;
      d.flow_y_scan = detail::scan_template(files, d.flow_y_template, int(d.flow_start));
      d.flow_count = std::min(d.flow_x_scan.contiguous, d.flow_y_scan.contiguous);
    } else if (opt.flow_start) {
      d.flow_start = *opt.flow_start;
    }
    return d;
  }

  std::string join(const std::string& file) const { return (std::filesystem::path(directory) / file).string(); }

  /// Path of RGB frame i (0-based logical index; the file is numbered rgb_start + i).
  std::string rgb_path(std::int64_t i) const { return join(rgb_template.name(rgb_start + i)); }
  /// Path of flow step i, x component (packed_rgb: the packed file).
  std::string flow_x_path(std::int64_t i) const { return join(flow_x_template.name(flow_start + i)); }
  /// Path of flow step i, y component (packed_rgb: the packed file).
  std::string flow_y_path(std::int64_t i) const { return join(flow_y_template.name(flow_start + i)); }

#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG
  /// RGB frame i as a 3-channel image. Throws value_error for i outside [0, rgb_count), io_error
  /// naming the file for an unreadable or corrupt JPEG.
  image_u8 read_rgb(std::int64_t i) const {
    MSCL_CHECK(i >= 0 && i < rgb_count, value_error,
               "data::rawframes_dir::read_rgb: frame " << i << " is outside [0, " << rgb_count << ") of '" << directory << "'");
    return io::read_jpeg(rgb_path(i), 3);
  }

  /// The quantised planes of flow step i: a 1-channel x image and y image (two_grey) or the packed
  /// 3-channel image twice (packed_rgb).
  std::pair<image_u8, image_u8> read_flow_planes(std::int64_t i) const {
    MSCL_CHECK(flow != flow_layout::none, value_error, "data::rawframes_dir::read_flow: '" << directory << "' has no flow files");
    MSCL_CHECK(i >= 0 && i < flow_count, value_error,
               "data::rawframes_dir::read_flow: flow step " << i << " is outside [0, " << flow_count << ") of '" << directory << "'");
    if (flow == flow_layout::packed_rgb) {
      image_u8 p = io::read_jpeg(flow_x_path(i), 3);
      return {p, image_u8()};
    }
    return {io::read_jpeg(flow_x_path(i), 1), io::read_jpeg(flow_y_path(i), 1)};
  }

  /// Flow step i dequantised with bound B (v = q·2B/255 − B, flow::dequantize_flow). For
  /// packed_rgb, u is the decoded blue plane and v the green one (CoCLR wrote (u, v, 128) with
  /// OpenCV, whose first plane is blue).
  flow_field read_flow(std::int64_t i, float bound = 20.f) const {
    auto planes = read_flow_planes(i);
    const image_u8& a = planes.first;
    flow_field f(a.height, a.width);
    const std::size_t n = std::size_t(a.height) * std::size_t(a.width);
    if (flow == flow_layout::packed_rgb) {
      std::vector<std::uint8_t> qu(n), qv(n);
      for (std::size_t k = 0; k < n; ++k) {
        qu[k] = a.pixels[3 * k + 2];
        qv[k] = a.pixels[3 * k + 1];
      }
      flow::dequantize_flow(qu.data(), f.u.data(), n, bound);
      flow::dequantize_flow(qv.data(), f.v.data(), n, bound);
    } else {
      const image_u8& b = planes.second;
      MSCL_CHECK(a.height == b.height && a.width == b.width, io_error,
                 "data::rawframes_dir::read_flow: " << flow_x_path(i) << " is " << a.height << "x" << a.width << " but "
                                                    << flow_y_path(i) << " is " << b.height << "x" << b.width);
      flow::dequantize_flow(a.pixels.data(), f.u.data(), n, bound);
      flow::dequantize_flow(b.pixels.data(), f.v.data(), n, bound);
    }
    return f;
  }
#endif
};

/// Which count a frame counter reports.
enum class frame_kind { rgb, flow };

/// A frame-count callback for write_split_lists / to_rawframe_entries: probes `root/frame_dir` and
/// returns its RGB (or flow) count, or -1 when the directory does not exist (video not extracted).
inline frame_count_fn rawframes_counter(const std::string& root, frame_kind kind = frame_kind::rgb,
                                        const rawframes_options& opt = {}) {
  return [root, kind, opt](const std::string& frame_dir) -> std::int64_t {
    const std::string dir = (std::filesystem::path(root) / frame_dir).string();
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) return -1;
    const rawframes_dir d = rawframes_dir::probe(dir, opt);
    return kind == frame_kind::rgb ? d.rgb_count : d.flow_count;
  };
}

}  // namespace mscl::data
