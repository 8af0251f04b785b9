/// \file extract.hpp
/// \brief Optical-flow extraction for whole videos: decode a video file (FFmpeg) or an MMAction2
///        rawframes directory, compute TV-L1 flow between chosen frame pairs and write it as a
///        rawframes flow directory — quantised grey JPEGs (`flow_x_00001.jpg`, `flow_y_00001.jpg`,
///        the MMAction2/denseflow layout, ECOSYSTEM.md §1.1, §1.3) or float Middlebury `.flo`
///        files (`flow_00001.flo`, lossless, for MSCL's raw-flow mode, ALGORITHM.md §6.2) — plus,
///        optionally, the RGB frames (`img_00001.jpg`). The program `mscl-extract-flow` is a thin
///        shell around `extract_batch`.
///
/// Frame pairs. Flow k (0-based) goes from frame k·S to frame k·S + A (S = frame_stride,
/// A = pair_offset, default A = S), for every k with k·S + A < L (L decoded frames). S = A = 1 is
/// the MMAction2/denseflow convention (L − 1 flows for L frames); S = 2, A = 8 is MSCL's release
/// setting (`MatchFlow(gap=2, adjacent=8)`, ALGORITHM.md §1.1), ⌈(L − 8)/2⌉ flows. The RGB frames
/// written with `also_rgb` are frames k·S for every k·S < L, so RGB file k and flow file k start
/// at the same original frame. Frames are converted to grey with OpenCV's weights (0.299 R +
/// 0.587 G + 0.114 B, kept as float: no 8-bit rounding) before TV-L1.
///
/// Crash safety. A video is written into a hidden sibling `.<name>.mscl-flow-tmp` of its final
/// directory, a manifest (`.mscl-extract-flow.json`: options, counts, size) is written last, the
/// file system is synced, and the directory is renamed into place. So a final directory exists
/// only complete and with its manifest; a rerun skips videos whose manifest matches the options,
/// deletes leftover temporaries, and refuses (unless `overwrite`) to touch an output written with
/// other options or without a manifest. One run per output root at a time (the program holds a
/// lock file); temporaries have fixed names so that a rerun finds them.
///
/// Device. `make_flow_engine` is the one place that maps `flow_device` to an implementation: the
/// CPU TV-L1 (`tvl1.hpp`) or the CUDA TV-L1 (`tvl1_cuda.hpp`), which a host-compiled program
/// reaches through `make_tvl1_cuda_engine` (engine.hpp) when it links the CUDA engine's nvcc
/// translation unit (MSCL_FLOW_CUDA_ENGINE=1; mscl-extract-flow does when MSCL_WITH_CUDA is ON).
/// Every worker owns one engine (one workspace), so engines need not be thread-safe; extract_batch
/// creates them all on the calling thread, so that a missing GPU is an exception, not a crash.
///
/// Optional parts: reading rawframes and writing JPEGs need `MSCL_WITH_JPEG`, reading video files
/// needs `MSCL_WITH_FFMPEG`; asking for a missing one is a `config_error` at run time, naming the
/// missing library, so that a float extraction from videos works in a build without libjpeg.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../data/frame.hpp"
#include "../data/rawframes.hpp"
#include "../io/atomic_file.hpp"
#include "../io/flo.hpp"
#include "engine.hpp"
#include "quantize.hpp"
#include "tvl1.hpp"
#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG
#include "../io/jpeg.hpp"
#endif
#if defined(MSCL_WITH_FFMPEG) && MSCL_WITH_FFMPEG
#include "../io/video_reader.hpp"
#endif

namespace mscl::flow {

// ------------------------------------------------------------------------------------------ options

/// How flow is stored.
enum class flow_output_layout {
  jpeg,  ///< two grey JPEGs per flow, quantised with `bound` (MMAction2/denseflow)
  flo,   ///< one Middlebury .flo per flow, float32 pixels (lossless)
};

/// Where flow is computed (the CUDA TV-L1 only in builds that link it: MSCL_FLOW_CUDA_ENGINE).
enum class flow_device { cpu, cuda };

/// Whether this build can compute flow on `d`.
inline bool flow_device_built(flow_device d) {
#if defined(MSCL_FLOW_CUDA_ENGINE) && MSCL_FLOW_CUDA_ENGINE
  (void)d;
  return true;
#else
  return d == flow_device::cpu;
#endif
}
/// Why --device cuda is unavailable in a build without the CUDA engine.
inline const char* flow_cuda_missing_message() {
  return "this build has no CUDA TV-L1: reconfigure with -DMSCL_WITH_CUDA=ON (needs nvcc and cuDNN 9, "
         "docs/cuda.md) and rebuild mscl-extract-flow";
}

inline const char* flow_output_layout_name(flow_output_layout l) { return l == flow_output_layout::jpeg ? "jpeg" : "float"; }
inline const char* flow_device_name(flow_device d) { return d == flow_device::cuda ? "cuda" : "cpu"; }

/// "jpeg" or "float" (also "flo").
inline flow_output_layout parse_flow_output_layout(const std::string& s) {
  if (s == "jpeg" || s == "jpg") return flow_output_layout::jpeg;
  if (s == "float" || s == "flo") return flow_output_layout::flo;
  MSCL_CHECK(false, config_error, "flow::parse_flow_output_layout: expected jpeg or float, got '" << s << "'");
  return flow_output_layout::jpeg;
}

/// "cpu" or "cuda"; "cuda" in a build without the CUDA engine is a config_error saying how to get it.
inline flow_device parse_flow_device(const std::string& s) {
  MSCL_CHECK(s == "cpu" || s == "cuda", config_error, "flow::parse_flow_device: expected cpu or cuda, got '" << s << "'");
  const flow_device d = s == "cuda" ? flow_device::cuda : flow_device::cpu;
  MSCL_CHECK(flow_device_built(d), config_error, "flow::parse_flow_device: --device cuda: " << flow_cuda_missing_message());
  return d;
}

/// Everything that decides the bytes of an extracted video (plus the device, which does not).
struct extract_options {
  flow_output_layout layout = flow_output_layout::jpeg;
  float bound = 20.f;                              ///< jpeg: quantisation bound B in pixels
  flow_rounding rounding = flow_rounding::nearest;  ///< jpeg: denseflow/CoCLR rounding by default
  int jpeg_quality = 95;                           ///< flow and RGB JPEGs (cv2.imwrite's default)
  int short_side = 0;                              ///< > 0: resize so the shorter side is this long before flow
  int frame_stride = 1;                            ///< S: flow k starts at frame k·S
  int pair_offset = 0;                             ///< A: flow k ends at frame k·S + A (0: A = S)
  int start_index = 1;                             ///< number of the first output file (MMAction2: 1)
  std::string flow_template = "flow_{}_{:05d}.jpg";  ///< jpeg layout: x/y planes (or "{}_{:05d}.jpg")
  std::string flo_template = "flow_{:05d}.flo";      ///< float layout
  std::string rgb_template = "img_{:05d}.jpg";       ///< also_rgb
  bool also_rgb = false;                           ///< also write the RGB frames k·S
  tvl1_options tvl1;                               ///< solver parameters (threads is set per worker)
  flow_device device = flow_device::cpu;
  bool durable = true;  ///< sync the file system before a finished video is renamed into place

  int effective_pair_offset() const { return pair_offset > 0 ? pair_offset : frame_stride; }

  /// Throws config_error for values out of range or malformed templates.
  void validate() const {
    MSCL_CHECK(bound > 0.f && std::isfinite(bound), config_error, "flow::extract_options: bound must be > 0, got " << bound);
    MSCL_CHECK(jpeg_quality >= 1 && jpeg_quality <= 100, config_error,
               "flow::extract_options: jpeg quality must be in 1..100, got " << jpeg_quality);
    MSCL_CHECK(short_side == 0 || short_side >= 8, config_error,
               "flow::extract_options: short side must be 0 (keep) or >= 8 (TV-L1's minimum), got " << short_side);
    MSCL_CHECK(frame_stride >= 1 && pair_offset >= 0, config_error,
               "flow::extract_options: frame stride must be >= 1 and pair offset >= 0, got " << frame_stride << " and "
                                                                                              << pair_offset);
    MSCL_CHECK(start_index >= 0, config_error, "flow::extract_options: start index must be >= 0, got " << start_index);
    try {
      (void)data::frame_template::parse_flow(flow_template);
      (void)data::frame_template::parse(flo_template);
      (void)data::frame_template::parse(rgb_template);
    } catch (const value_error& e) {
      MSCL_CHECK(false, config_error, "flow::extract_options: " << e.what());
    }
  }

  /// The options a manifest records and a rerun compares: only what changes the output files
  /// (not the device, thread counts or durability).
  nlohmann::json to_json() const {
    // Floats as their shortest decimal (0.15, not 0.15000000596046448): readable manifests; the
    // comparison stays exact because both sides go through the same conversion.
    auto dec = [](float x) {
      char s[32];
      for (int p = 1; p < 9; ++p) {  // 9 significant digits always round-trip a float
        std::snprintf(s, sizeof s, "%.*g", p, double(x));
        if (std::strtof(s, nullptr) == x) return std::strtod(s, nullptr);
      }
      std::snprintf(s, sizeof s, "%.9g", double(x));
      return std::strtod(s, nullptr);
    };
    nlohmann::json j;
    j["layout"] = flow_output_layout_name(layout);
    if (layout == flow_output_layout::jpeg) {
      j["bound"] = dec(bound);
      j["rounding"] = rounding == flow_rounding::nearest ? "nearest" : "truncate";
      j["flow_template"] = flow_template;
    } else {
      j["flo_template"] = flo_template;
    }
    if (layout == flow_output_layout::jpeg || also_rgb) j["jpeg_quality"] = jpeg_quality;
    j["short_side"] = short_side;
    j["frame_stride"] = frame_stride;
    j["pair_offset"] = effective_pair_offset();
    j["start_index"] = start_index;
    j["also_rgb"] = also_rgb;
    if (also_rgb) j["rgb_template"] = rgb_template;
    j["grey"] = "0.299R+0.587G+0.114B float";
    j["algorithm"] = {{"name", "tvl1"},
                      {"tau", dec(tvl1.tau)},
                      {"lambda", dec(tvl1.lambda)},
                      {"theta", dec(tvl1.theta)},
                      {"nscales", tvl1.nscales},
                      {"warps", tvl1.warps},
                      {"epsilon", dec(tvl1.epsilon)},
                      {"inner_iterations", tvl1.inner_iterations},
                      {"outer_iterations", tvl1.outer_iterations},
                      {"scale_step", dec(tvl1.scale_step)},
                      {"median_filtering", tvl1.median_filtering},
                      {"pyramid_sigma", dec(tvl1.pyramid_sigma)}};
    return j;
  }
};

/// Number of flows for L frames: #{k >= 0 : k·S + A <= L − 1}.
inline std::int64_t flow_pair_count(std::int64_t frames, int stride, int offset) {
  if (frames - 1 < offset) return 0;
  return (frames - 1 - offset) / stride + 1;
}

// ------------------------------------------------------------------------------------ flow engine

// flow_engine (the interface) lives in engine.hpp.

/// TV-L1 on the CPU with `threads` OpenMP threads and one reused workspace.
class tvl1_cpu_engine final : public flow_engine {
 public:
  tvl1_cpu_engine(const tvl1_options& opt, int threads) : opt_(opt) { opt_.threads = std::max(1, threads); }
  const char* name() const override { return "tvl1-cpu"; }
  void compute(const float* i0, const float* i1, int height, int width, float* u, float* v) override {
    tvl1(i0, i1, height, width, u, v, opt_, ws_);
  }

 private:
  tvl1_options opt_;
  tvl1_workspace ws_;
};

/// The single device dispatch point.
inline std::unique_ptr<flow_engine> make_flow_engine(flow_device device, const tvl1_options& opt, int threads) {
  switch (device) {
    case flow_device::cpu: return std::make_unique<tvl1_cpu_engine>(opt, threads);
    case flow_device::cuda:
#if defined(MSCL_FLOW_CUDA_ENGINE) && MSCL_FLOW_CUDA_ENGINE
      return make_tvl1_cuda_engine(opt);  // throws when no GPU is usable, naming the reason
#else
      MSCL_CHECK(false, config_error, "flow::make_flow_engine: device cuda: " << flow_cuda_missing_message());
#endif
  }
  MSCL_CHECK(false, config_error, "flow::make_flow_engine: unknown device");
  return nullptr;
}

// ---------------------------------------------------------------------------------- frame sources

namespace detail {

/// Output size for `short_side` (0: unchanged), rounding like mmcv.rescale_size (and io::video_reader).
inline std::pair<int, int> extract_short_side_size(int h, int w, int short_side) {
  if (short_side <= 0) return {h, w};
  if (h <= w) return {short_side, std::max(1, int(double(w) * short_side / h + 0.5))};
  return {std::max(1, int(double(h) * short_side / w + 0.5)), short_side};
}

/// Per-axis resampling weights: exact pixel-area coverage when shrinking (cv2.INTER_AREA),
/// pixel-centre bilinear when enlarging. taps[o] lists (source index, weight), weights sum to 1.
inline std::vector<std::vector<std::pair<int, float>>> resample_taps(int src, int dst) {
  std::vector<std::vector<std::pair<int, float>>> taps(static_cast<std::size_t>(dst));
  const double scale = double(src) / dst;
  for (int o = 0; o < dst; ++o) {
    auto& t = taps[std::size_t(o)];
    if (scale >= 1.0) {
      const double a = o * scale, b = (o + 1) * scale;
      for (int s = int(std::floor(a)); s < std::min(src, int(std::ceil(b))); ++s) {
        const double cover = std::min(b, double(s + 1)) - std::max(a, double(s));
        if (cover > 1e-9) t.emplace_back(s, float(cover / scale));
      }
    } else {
      const double c = std::clamp((o + 0.5) * scale - 0.5, 0.0, double(src - 1));
      const int s0 = int(c), s1 = std::min(s0 + 1, src - 1);
      const float f = float(c - s0);
      t.emplace_back(s0, 1.f - f);
      if (s1 != s0) t.emplace_back(s1, f);
    }
  }
  return taps;
}

/// Resizes an 8-bit image (area when shrinking, bilinear when enlarging), rounding to nearest.
inline data::image_u8 resize_image(const data::image_u8& in, int h, int w) {
  if (in.height == h && in.width == w) return in;
  const int c = in.channels;
  const auto ty = resample_taps(in.height, h), tx = resample_taps(in.width, w);
  std::vector<float> rows(std::size_t(h) * std::size_t(in.width) * std::size_t(c), 0.f);
  for (int y = 0; y < h; ++y)
    for (const auto& [sy, wy] : ty[std::size_t(y)])
      for (int x = 0; x < in.width; ++x)
        for (int k = 0; k < c; ++k)
          rows[(std::size_t(y) * std::size_t(in.width) + std::size_t(x)) * std::size_t(c) + std::size_t(k)] += wy * in.at(sy, x, k);
  data::image_u8 out(h, w, c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k) {
        float acc = 0.f;
        for (const auto& [sx, wx] : tx[std::size_t(x)])
          acc += wx * rows[(std::size_t(y) * std::size_t(in.width) + std::size_t(sx)) * std::size_t(c) + std::size_t(k)];
        out.at(y, x, k) = std::uint8_t(std::clamp(std::lround(acc), 0L, 255L));
      }
  return out;
}

/// Grey plane 0..255 in float: OpenCV's RGB→grey weights, no rounding; 1-channel images as is.
inline void to_grey(const data::image_u8& img, std::vector<float>& out) {
  const std::size_t n = std::size_t(img.height) * std::size_t(img.width);
  out.resize(n);
  if (img.channels == 1) {
    for (std::size_t i = 0; i < n; ++i) out[i] = img.pixels[i];
    return;
  }
  for (std::size_t i = 0; i < n; ++i)
    out[i] = 0.299f * img.pixels[3 * i] + 0.587f * img.pixels[3 * i + 1] + 0.114f * img.pixels[3 * i + 2];
}

}  // namespace detail

/// A decoded frame sequence with random access in increasing order.
class frame_source {
 public:
  virtual ~frame_source() = default;
  /// Frames available (L).
  virtual std::int64_t frame_count() const = 0;
  /// RGB (or grey) frames at `indices` (sorted, unique, in [0, L)), resized to the source's short side.
  virtual std::vector<data::image_u8> read(const std::vector<std::int64_t>& indices) = 0;
  /// The file that holds frame i unchanged (so an RGB copy can be a hard link), or "" when the
  /// frame is decoded or resized.
  virtual std::string unchanged_file(std::int64_t) const { return {}; }
  /// What is read, for messages.
  virtual std::string describe() const = 0;
};

#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG
/// The RGB frames of one rawframes directory (template and 0/1-based numbering detected by
/// data::rawframes_dir::probe). A gap in the numbering is an io_error: flow across a missing frame
/// would silently have the wrong time step.
class rawframes_source final : public frame_source {
 public:
  rawframes_source(const std::string& dir, int short_side, const data::rawframes_options& ro = {})
      : dir_(data::rawframes_dir::probe(dir, ro)), short_side_(short_side) {
    MSCL_CHECK(!dir_.rgb_scan.has_gap(), io_error,
               "flow::rawframes_source: '" << dir << "' has " << dir_.rgb_scan.files << " " << dir_.rgb_template.prefix
                                           << "* frames but only " << dir_.rgb_count << " consecutive from number "
                                           << dir_.rgb_start << " (a frame is missing)");
  }
  std::int64_t frame_count() const override { return dir_.rgb_count; }
  std::vector<data::image_u8> read(const std::vector<std::int64_t>& indices) override {
    std::vector<data::image_u8> out;
    out.reserve(indices.size());
    for (std::int64_t i : indices) {
      data::image_u8 img = dir_.read_rgb(i);
      const auto [h, w] = detail::extract_short_side_size(img.height, img.width, short_side_);
      out.push_back(detail::resize_image(img, h, w));
    }
    return out;
  }
  std::string unchanged_file(std::int64_t i) const override { return short_side_ > 0 ? std::string() : dir_.rgb_path(i); }
  std::string describe() const override { return dir_.directory; }

 private:
  data::rawframes_dir dir_;
  int short_side_;
};
#endif

#if defined(MSCL_WITH_FFMPEG) && MSCL_WITH_FFMPEG
/// The frames of a video file through io::video_reader (exact frame count from a packet scan;
/// swscale resizes to the short side).
class video_file_source final : public frame_source {
 public:
  video_file_source(const std::string& path, int short_side, const io::video_options& vo = {})
      : reader_(io::video_reader::open(path, vo)), short_side_(short_side) {}
  std::int64_t frame_count() const override { return reader_.frame_count(); }
  std::vector<data::image_u8> read(const std::vector<std::int64_t>& indices) override {
    return reader_.read_frames(indices, short_side_);
  }
  std::string describe() const override { return reader_.path(); }

 private:
  io::video_reader reader_;
  int short_side_;
};
#endif

// ------------------------------------------------------------------------------- one video's flow

/// Counts and timing of one extracted video.
struct video_extract_stats {
  std::int64_t input_frames = 0;  ///< L
  std::int64_t flows = 0;         ///< flow files written (pairs)
  std::int64_t rgb_frames = 0;    ///< RGB files written (also_rgb)
  int height = 0, width = 0;      ///< frame (and flow) size after resizing
  double seconds = 0;             ///< wall time of the whole video
  double flow_seconds = 0;        ///< of which in the flow engine
};

namespace detail {

inline void write_bytes_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  MSCL_CHECK(f.good(), io_error, "flow::extract: cannot create '" << path << "'");
  f.write(bytes.data(), std::streamsize(bytes.size()));
  f.close();
  MSCL_CHECK(f.good(), io_error, "flow::extract: writing '" << path << "' failed");
}

}  // namespace detail

/// Computes every flow of `src` (see the file comment for the pairs) and writes the flow files
/// (and RGB frames with also_rgb) into the existing directory `dir`. `on_pair(done, total)` is
/// called after each flow. Throws io_error for unreadable frames, frames of different sizes, or
/// too few frames for one pair; config_error when the layout needs a library this build lacks.
inline video_extract_stats extract_flow_frames(frame_source& src, const std::string& dir, const extract_options& opt,
                                               flow_engine& engine,
                                               const std::function<void(std::int64_t, std::int64_t)>& on_pair = {}) {
  namespace fs = std::filesystem;
  opt.validate();
#if !(defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG)
  MSCL_CHECK(opt.layout != flow_output_layout::jpeg && !opt.also_rgb, config_error,
             "flow::extract_flow_frames: the jpeg layout and also_rgb need JPEG support (MSCL_WITH_JPEG, libjpeg-turbo)");
#endif
  const auto t_start = std::chrono::steady_clock::now();
  video_extract_stats st;
  const std::int64_t L = src.frame_count();
  const int S = opt.frame_stride, A = opt.effective_pair_offset();
  const std::int64_t n = flow_pair_count(L, S, A);
  MSCL_CHECK(n >= 1, io_error,
             "flow::extract_flow_frames: '" << src.describe() << "' has " << L << " frames, too few for one pair (frame "
                                            << "0 -> " << A << ")");
  const std::int64_t m = opt.also_rgb ? (L - 1) / S + 1 : 0;  // RGB frames k·S < L
  st.input_frames = L;

  // The original frames ever needed, in increasing order (so video decoding never seeks back).
  std::vector<std::int64_t> needed;
  for (std::int64_t k = 0; k < std::max(n, m); ++k) {
    needed.push_back(k * S);
    if (k < n) needed.push_back(k * S + A);
  }
  std::sort(needed.begin(), needed.end());
  needed.erase(std::unique(needed.begin(), needed.end()), needed.end());

  const auto flow_xy = data::frame_template::parse_flow(opt.flow_template);
  const auto flo_t = data::frame_template::parse(opt.flo_template);
  const auto rgb_t = data::frame_template::parse(opt.rgb_template);
  const fs::path out(dir);

  struct cached {
    data::image_u8 rgb;  // kept only while an RGB copy is still to be written
    std::vector<float> grey;
  };
  std::map<std::int64_t, cached> cache;
  std::size_t next_needed = 0;
  const std::size_t chunk = 16;  // frames decoded per read: bounded memory, sequential decoding
  auto ensure = [&](std::int64_t idx) {
    while (cache.find(idx) == cache.end()) {
      MSCL_CHECK(next_needed < needed.size(), io_error, "flow::extract_flow_frames: internal frame schedule error");
      std::vector<std::int64_t> batch;
      for (; next_needed < needed.size() && batch.size() < chunk; ++next_needed) batch.push_back(needed[next_needed]);
      std::vector<data::image_u8> frames = src.read(batch);
      MSCL_CHECK(frames.size() == batch.size(), io_error,
                 "flow::extract_flow_frames: '" << src.describe() << "' returned " << frames.size() << " of "
                                                << batch.size() << " frames");
      for (std::size_t j = 0; j < batch.size(); ++j) {
        data::image_u8& f = frames[j];
        if (st.height == 0) {
          st.height = f.height;
          st.width = f.width;
          MSCL_CHECK(f.height >= 8 && f.width >= 8, io_error,
                     "flow::extract_flow_frames: '" << src.describe() << "' frames are " << f.height << "x" << f.width
                                                    << ", TV-L1 needs at least 8x8");
        }
        MSCL_CHECK(f.height == st.height && f.width == st.width, io_error,
                   "flow::extract_flow_frames: '" << src.describe() << "' frame " << batch[j] << " is " << f.height << "x"
                                                  << f.width << " but frame " << needed.front() << " is " << st.height
                                                  << "x" << st.width);
        cached c;
        detail::to_grey(f, c.grey);
        if (opt.also_rgb && batch[j] % S == 0) c.rgb = std::move(f);
        cache.emplace(batch[j], std::move(c));
      }
    }
    return &cache.at(idx);
  };

  flow_field fl;
  data::image_u8 qx, qy;
  for (std::int64_t k = 0; k < std::max(n, m); ++k) {
    const std::int64_t a = k * S;
    cached* fa = ensure(a);
    if (k < m) {
      const std::string dst = (out / rgb_t.name(opt.start_index + k)).string();
      const std::string orig = src.unchanged_file(a);
      std::error_code ec;
      if (!orig.empty()) {
        fs::create_hard_link(orig, dst, ec);
        if (ec) fs::copy_file(orig, dst, fs::copy_options::overwrite_existing, ec);
        MSCL_CHECK(!ec, io_error, "flow::extract_flow_frames: cannot link or copy '" << orig << "' to '" << dst << "': " << ec.message());
      } else {
#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG
        io::write_jpeg(dst, fa->rgb, opt.jpeg_quality);
#endif
      }
      fa->rgb = data::image_u8();
      ++st.rgb_frames;
    }
    if (k < n) {
      cached* fb = ensure(a + A);
      fa = &cache.at(a);  // map nodes are stable, but be explicit after insertions
      const std::size_t px = std::size_t(st.height) * std::size_t(st.width);
      fl.height = st.height;
      fl.width = st.width;
      fl.u.assign(px, 0.f);
      fl.v.assign(px, 0.f);
      const auto t0 = std::chrono::steady_clock::now();
      engine.compute(fa->grey.data(), fb->grey.data(), st.height, st.width, fl.u.data(), fl.v.data());
      st.flow_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const std::int64_t num = opt.start_index + k;
      if (opt.layout == flow_output_layout::flo) {
        data::flow_field f(st.height, st.width);
        f.u = fl.u;
        f.v = fl.v;
        detail::write_bytes_file((out / flo_t.name(num)).string(), io::encode_flo(f));
      } else {
#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG
        qx = data::image_u8(st.height, st.width, 1);
        qy = data::image_u8(st.height, st.width, 1);
        quantize_flow(fl.u.data(), qx.pixels.data(), px, opt.bound, opt.rounding);
        quantize_flow(fl.v.data(), qy.pixels.data(), px, opt.bound, opt.rounding);
        io::write_jpeg((out / flow_xy.first.name(num)).string(), qx, opt.jpeg_quality);
        io::write_jpeg((out / flow_xy.second.name(num)).string(), qy, opt.jpeg_quality);
#endif
      }
      ++st.flows;
      if (on_pair) on_pair(st.flows, n);
    }
    // Frames before the next pair's first frame are never needed again.
    cache.erase(cache.begin(), cache.lower_bound((k + 1) * S));
  }
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return st;
}

// ------------------------------------------------------------------------------------------- jobs

/// What a job reads.
enum class input_kind { video, rawframes };

/// One video to extract: `name` is the output path relative to the output root (the input's
/// relative path without a video extension), `source` the file or rawframes directory.
struct extract_job {
  std::string name;
  std::string source;
  input_kind kind = input_kind::video;
};

/// Video file extensions picked up by discovery (case-insensitive).
inline bool is_video_file_name(const std::string& file) {
  std::string ext = std::filesystem::path(file).extension().string();
  for (char& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".avi" || ext == ".mp4" || ext == ".webm" || ext == ".mkv" || ext == ".mov" || ext == ".m4v";
}

namespace detail {

inline std::string job_name_for(const std::filesystem::path& root, const std::filesystem::path& p, input_kind kind) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path rel = p;
  if (!root.empty()) {
    const fs::path r = fs::relative(p, root, ec);
    if (!ec && !r.empty() && r.native().rfind("..", 0) != 0) rel = r;
  }
  if (rel.is_absolute()) rel = rel.filename();  // outside the root: keep only the name
  if (kind == input_kind::video && is_video_file_name(rel.filename().string())) rel.replace_extension();
  std::string s = rel.lexically_normal().generic_string();
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

inline bool has_rgb_frames(const std::filesystem::path& dir) {
  const data::frame_template img{"img_", 5, ".jpg"}, image{"image_", 5, ".jpg"};
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string f = it->path().filename().string();
    if (img.match(f) || image.match(f)) return true;
  }
  return false;
}

inline void check_unique_names(const std::vector<extract_job>& jobs, const std::string& who) {
  std::map<std::string, std::string> seen;
  for (const auto& j : jobs) {
    MSCL_CHECK(!j.name.empty() && j.name != "." && j.name.find("..") == std::string::npos, config_error,
               who << ": input '" << j.source << "' gives the output name '" << j.name << "', which is not usable");
    auto [it, fresh] = seen.emplace(j.name, j.source);
    MSCL_CHECK(fresh, config_error,
               who << ": '" << it->second << "' and '" << j.source << "' both map to the output '" << j.name << "'");
  }
}

}  // namespace detail

/// Every video file under `root` (recursive, sorted by name); names keep the sub-directories.
inline std::vector<extract_job> discover_video_files(const std::string& root) {
  namespace fs = std::filesystem;
  MSCL_CHECK(fs::is_directory(root), io_error, "flow::discover_video_files: '" << root << "' is not a directory");
  std::vector<extract_job> jobs;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec)) {
    const std::string f = it->path().filename().string();
    if (!f.empty() && f[0] == '.') {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file() && is_video_file_name(f))
      jobs.push_back({detail::job_name_for(root, it->path(), input_kind::video), it->path().string(), input_kind::video});
  }
  MSCL_CHECK(!ec, io_error, "flow::discover_video_files: listing '" << root << "' failed: " << ec.message());
  std::sort(jobs.begin(), jobs.end(), [](const extract_job& a, const extract_job& b) { return a.name < b.name; });
  detail::check_unique_names(jobs, "flow::discover_video_files");
  return jobs;
}

/// Every directory under `root` holding img_/image_ frames (recursive; the class level of a
/// level-2 tree is kept in the name), sorted. Hidden directories (our temporaries) are skipped.
inline std::vector<extract_job> discover_rawframes_dirs(const std::string& root) {
  namespace fs = std::filesystem;
  MSCL_CHECK(fs::is_directory(root), io_error, "flow::discover_rawframes_dirs: '" << root << "' is not a directory");
  std::vector<extract_job> jobs;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec)) {
    if (!it->is_directory()) continue;
    const std::string f = it->path().filename().string();
    if (!f.empty() && f[0] == '.') {
      it.disable_recursion_pending();
      continue;
    }
    if (detail::has_rgb_frames(it->path())) {
      jobs.push_back({detail::job_name_for(root, it->path(), input_kind::rawframes), it->path().string(), input_kind::rawframes});
      it.disable_recursion_pending();
    }
  }
  MSCL_CHECK(!ec, io_error, "flow::discover_rawframes_dirs: listing '" << root << "' failed: " << ec.message());
  std::sort(jobs.begin(), jobs.end(), [](const extract_job& a, const extract_job& b) { return a.name < b.name; });
  detail::check_unique_names(jobs, "flow::discover_rawframes_dirs");
  return jobs;
}

/// A list file: one input per line, its first whitespace field (MMAction2 video and rawframe lists
/// work as they are; labels and counts are ignored); blank lines and lines starting with '#' are
/// skipped. Relative entries are resolved against `root` (default: the current directory), and
/// the output name is the entry relative to `root` without its video extension.
inline std::vector<extract_job> read_job_list(const std::string& list, input_kind kind, const std::string& root = "") {
  namespace fs = std::filesystem;
  std::ifstream in(list);
  MSCL_CHECK(in.good(), io_error, "flow::read_job_list: cannot open '" << list << "'");
  std::vector<extract_job> jobs;
  std::string line;
  const fs::path base = root.empty() ? fs::current_path() : fs::path(root);
  while (std::getline(in, line)) {
    const auto b = line.find_first_not_of(" \t\r\xEF\xBB\xBF");
    if (b == std::string::npos || line[b] == '#') continue;
    const auto e = line.find_first_of(" \t\r", b);
    const std::string entry = line.substr(b, e == std::string::npos ? std::string::npos : e - b);
    const fs::path p = fs::path(entry).is_absolute() ? fs::path(entry) : base / entry;
    jobs.push_back({detail::job_name_for(base, p, kind), p.string(), kind});
  }
  MSCL_CHECK(!jobs.empty(), io_error, "flow::read_job_list: '" << list << "' lists no inputs");
  detail::check_unique_names(jobs, "flow::read_job_list");
  return jobs;
}

/// Opens the frame source of a job; config_error when this build cannot read that kind.
inline std::unique_ptr<frame_source> open_frame_source(const extract_job& job, const extract_options& opt) {
  if (job.kind == input_kind::rawframes) {
#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG
    return std::make_unique<rawframes_source>(job.source, opt.short_side);
#else
    MSCL_CHECK(false, config_error, "flow::open_frame_source: reading rawframes needs JPEG support (MSCL_WITH_JPEG)");
#endif
  } else {
#if defined(MSCL_WITH_FFMPEG) && MSCL_WITH_FFMPEG
    return std::make_unique<video_file_source>(job.source, opt.short_side);
#else
    MSCL_CHECK(false, config_error,
               "flow::open_frame_source: reading video files needs FFmpeg support (MSCL_WITH_FFMPEG); "
               "convert to rawframes and use the rawframes input");
#endif
  }
  return nullptr;
}

// ------------------------------------------------------------------------------ output directories

/// Name of the manifest inside every finished video directory.
inline constexpr const char* k_extract_manifest = ".mscl-extract-flow.json";

/// The final directory of a job and its hidden siblings.
struct output_paths {
  std::filesystem::path final_dir, temp_dir, old_dir;
};

inline output_paths output_paths_for(const std::string& out_root, const std::string& name) {
  const std::filesystem::path f = std::filesystem::path(out_root) / name;
  const std::string base = f.filename().string();
  return {f, f.parent_path() / ("." + base + ".mscl-flow-tmp"), f.parent_path() / ("." + base + ".mscl-flow-old")};
}

/// What is at a job's final directory.
enum class output_state {
  absent,          ///< nothing: to do
  complete,        ///< finished with the same options: skip
  other_options,   ///< finished with other options: refuse unless overwrite
  foreign,         ///< exists without a (readable) manifest: refuse unless overwrite
};

/// The manifest of a finished directory, or nullopt when missing or unreadable.
inline std::optional<nlohmann::json> read_extract_manifest(const std::filesystem::path& dir) {
  std::ifstream in(dir / k_extract_manifest);
  if (!in.good()) return std::nullopt;
  try {
    nlohmann::json j;
    in >> j;
    if (!j.is_object() || !j.contains("options") || !j.contains("flows")) return std::nullopt;
    return j;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

/// Classifies the final directory of `name`; `why` gets a human-readable reason for the refusals.
inline output_state check_output(const std::string& out_root, const std::string& name, const extract_options& opt,
                                 std::string* why = nullptr) {
  const output_paths p = output_paths_for(out_root, name);
  std::error_code ec;
  if (!std::filesystem::exists(p.final_dir, ec)) return output_state::absent;
  const auto m = read_extract_manifest(p.final_dir);
  if (!m) {
    if (why) *why = p.final_dir.string() + " exists but has no readable " + k_extract_manifest;
    return output_state::foreign;
  }
  const nlohmann::json now = opt.to_json();
  if ((*m)["options"] != now) {
    if (why) {
      std::string diff;
      for (auto it = now.begin(); it != now.end(); ++it) {
        const auto& was = (*m)["options"];
        if (!was.contains(it.key()) || was[it.key()] != it.value())
          diff += (diff.empty() ? "" : ", ") + it.key() + " " + (was.contains(it.key()) ? was[it.key()].dump() : "(none)") +
                  " -> " + it.value().dump();
      }
      for (auto it = (*m)["options"].begin(); it != (*m)["options"].end(); ++it)
        if (!now.contains(it.key())) diff += (diff.empty() ? "" : ", ") + it.key() + " " + it.value().dump() + " -> (none)";
      *why = p.final_dir.string() + " was extracted with other options (" + diff + ")";
    }
    return output_state::other_options;
  }
  return output_state::complete;
}

/// Names of jobs whose existing output would be refused (other options or no manifest), each with
/// its reason; the program checks this before any work so that a changed option never leaves a
/// half-converted tree.
inline std::vector<std::string> conflicting_outputs(const std::vector<extract_job>& jobs, const std::string& out_root,
                                                    const extract_options& opt) {
  std::vector<std::string> out;
  for (const auto& j : jobs) {
    std::string why;
    const output_state s = check_output(out_root, j.name, opt, &why);
    if (s == output_state::other_options || s == output_state::foreign) out.push_back(why);
  }
  return out;
}

namespace detail {

/// fsync a directory (its entries); EINVAL-tolerant like io::atomic_file.
inline void fsync_directory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

/// Flushes every file written into `dir` to stable storage with one syncfs of its file system
/// (instead of one fsync per frame file).
inline void sync_filesystem_of(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
#if defined(__linux__)
  ::syncfs(fd);
#else
  ::sync();
#endif
  ::close(fd);
}

}  // namespace detail

/// How one job ended.
enum class job_status { done, skipped, failed };

inline const char* job_status_name(job_status s) {
  switch (s) {
    case job_status::done: return "ok";
    case job_status::skipped: return "skipped";
    case job_status::failed: return "failed";
  }
  return "?";
}

struct job_result {
  extract_job job;
  job_status status = job_status::failed;
  video_extract_stats stats;
  std::string error;               ///< failed: what went wrong (names the file)
  bool removed_stale_temp = false;  ///< a temporary of an earlier, interrupted run was deleted
};

/// Extracts one job into `out_root/job.name` with the crash-safe protocol of the file comment.
/// Never throws for a bad input: failures come back as job_status::failed with the message, and
/// leave neither a temporary nor a partial final directory.
inline job_result run_extract_job(const extract_job& job, const std::string& out_root, const extract_options& opt,
                                  flow_engine& engine, bool overwrite,
                                  const std::function<void(std::int64_t, std::int64_t)>& on_pair = {}) {
  namespace fs = std::filesystem;
  job_result r;
  r.job = job;
  const output_paths p = output_paths_for(out_root, job.name);
  std::error_code ec;
  try {
    for (const fs::path& stale : {p.temp_dir, p.old_dir}) {
      if (fs::exists(stale, ec)) {
        fs::remove_all(stale, ec);
        MSCL_CHECK(!ec, io_error, "cannot remove the stale temporary '" << stale.string() << "': " << ec.message());
        r.removed_stale_temp = true;
      }
    }
    std::string why;
    const output_state s = check_output(out_root, job.name, opt, &why);
    if (s == output_state::complete && !overwrite) {
      r.status = job_status::skipped;
      if (auto m = read_extract_manifest(p.final_dir)) {
        r.stats.input_frames = m->value("input_frames", std::int64_t(0));
        r.stats.flows = m->value("flows", std::int64_t(0));
        r.stats.rgb_frames = m->value("rgb_frames", std::int64_t(0));
        r.stats.height = m->value("height", 0);
        r.stats.width = m->value("width", 0);
      }
      return r;
    }
    MSCL_CHECK(overwrite || s == output_state::absent, config_error, why << "; use overwrite to replace it");
    fs::create_directories(p.temp_dir.parent_path());
    fs::create_directory(p.temp_dir);
    std::unique_ptr<frame_source> src = open_frame_source(job, opt);
    r.stats = extract_flow_frames(*src, p.temp_dir.string(), opt, engine, on_pair);
    nlohmann::json m;
    m["format"] = "mscl-extract-flow";
    m["version"] = 1;
    m["source"] = job.source;
    m["input_kind"] = job.kind == input_kind::video ? "video" : "rawframes";
    m["options"] = opt.to_json();
    m["device"] = flow_device_name(opt.device);
    m["engine"] = engine.name();
    m["input_frames"] = r.stats.input_frames;
    m["flows"] = r.stats.flows;
    m["rgb_frames"] = r.stats.rgb_frames;
    m["height"] = r.stats.height;
    m["width"] = r.stats.width;
    io::write_file_atomic((p.temp_dir / k_extract_manifest).string(), m.dump(2) + "\n");
    if (opt.durable) detail::sync_filesystem_of(p.temp_dir);
    if (fs::exists(p.final_dir, ec)) {  // overwrite: move the old output aside, then swap
      fs::rename(p.final_dir, p.old_dir);
    }
    fs::rename(p.temp_dir, p.final_dir);
    if (opt.durable) detail::fsync_directory(p.final_dir.parent_path());
    fs::remove_all(p.old_dir, ec);
    r.status = job_status::done;
  } catch (const std::exception& e) {
    r.status = job_status::failed;
    r.error = e.what();
    fs::remove_all(p.temp_dir, ec);
  }
  return r;
}

// ------------------------------------------------------------------------------------------ batch

/// Parallelism and policy of a batch.
struct batch_options {
  int workers = 1;             ///< videos in flight (one engine each)
  int threads_per_worker = 1;  ///< OpenMP threads of each worker's TV-L1
  bool overwrite = false;
};

struct batch_summary {
  std::vector<job_result> results;  ///< in job order
  std::int64_t done = 0, skipped = 0, failed = 0;
  std::int64_t flows = 0;  ///< flows computed in this run (not counting skipped videos)
  std::int64_t stale_removed = 0;
  double seconds = 0;
  std::vector<std::string> failed_names;
  double pairs_per_second() const { return seconds > 0 ? double(flows) / seconds : 0.0; }
};

/// "N ok, M skipped (already done), K failed: a, b" (the names only when something failed).
inline std::string format_summary(const batch_summary& s) {
  std::ostringstream o;
  o << s.done << " ok, " << s.skipped << " skipped (already done), " << s.failed << " failed";
  if (!s.failed_names.empty()) {
    o << ":";
    for (std::size_t i = 0; i < s.failed_names.size(); ++i) o << (i ? ", " : " ") << s.failed_names[i];
  }
  return o.str();
}

/// Runs every job on `bo.workers` threads. `on_result(result, finished, total)` is called once per
/// job in completion order, serialised (never concurrently); `on_pair()` after every computed flow,
/// from the worker threads (keep it cheap and thread-safe). Failures do not stop the others.
inline batch_summary extract_batch(const std::vector<extract_job>& jobs, const std::string& out_root,
                                   const extract_options& opt, const batch_options& bo,
                                   const std::function<void(const job_result&, std::size_t, std::size_t)>& on_result = {},
                                   const std::function<void()>& on_pair = {}) {
  opt.validate();
  MSCL_CHECK(bo.workers >= 1 && bo.threads_per_worker >= 1, config_error,
             "flow::extract_batch: workers and threads per worker must be >= 1, got " << bo.workers << " and "
                                                                                     << bo.threads_per_worker);
  std::filesystem::create_directories(out_root);
  const auto t0 = std::chrono::steady_clock::now();
  batch_summary s;
  s.results.resize(jobs.size());
  std::atomic<std::size_t> next{0};
  std::mutex mu;
  std::size_t finished = 0;
  auto pair_cb = [&](std::int64_t, std::int64_t) {
    if (on_pair) on_pair();
  };
  const int nw = std::max(1, std::min<int>(bo.workers, int(jobs.size())));
  // Engines are made here, not in the threads: a failure (no GPU) must reach the caller.
  std::vector<std::unique_ptr<flow_engine>> engines;
  for (int t = 0; t < nw; ++t) engines.push_back(make_flow_engine(opt.device, opt.tvl1, bo.threads_per_worker));
  auto worker = [&](flow_engine& engine) {
    for (std::size_t i; (i = next.fetch_add(1)) < jobs.size();) {
      job_result r = run_extract_job(jobs[i], out_root, opt, engine, bo.overwrite, pair_cb);
      std::lock_guard<std::mutex> lock(mu);
      s.results[i] = r;
      ++finished;
      if (on_result) on_result(s.results[i], finished, jobs.size());
    }
  };
  if (nw == 1) {
    worker(*engines[0]);
  } else {
    std::vector<std::thread> pool;
    for (int t = 0; t < nw; ++t) pool.emplace_back(worker, std::ref(*engines[std::size_t(t)]));
    for (auto& t : pool) t.join();
  }
  for (const auto& r : s.results) {
    if (r.status == job_status::done) ++s.done, s.flows += r.stats.flows;
    else if (r.status == job_status::skipped) ++s.skipped;
    else ++s.failed, s.failed_names.push_back(r.job.name);
    s.stale_removed += r.removed_stale_temp ? 1 : 0;
  }
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

/// One JSON line per job for the program's log.
inline nlohmann::json job_result_json(const job_result& r) {
  nlohmann::json j;
  j["video"] = r.job.name;
  j["source"] = r.job.source;
  j["status"] = job_status_name(r.status);
  if (r.status == job_status::failed) j["error"] = r.error;
  if (r.status != job_status::failed) {
    j["input_frames"] = r.stats.input_frames;
    j["flows"] = r.stats.flows;
    j["rgb_frames"] = r.stats.rgb_frames;
    j["height"] = r.stats.height;
    j["width"] = r.stats.width;
  }
  if (r.status == job_status::done) {
    j["seconds"] = r.stats.seconds;
    j["flow_seconds"] = r.stats.flow_seconds;
    j["pairs_per_s"] = r.stats.seconds > 0 ? double(r.stats.flows) / r.stats.seconds : 0.0;
  }
  if (r.removed_stale_temp) j["removed_stale_temp"] = true;
  return j;
}

}  // namespace mscl::flow
