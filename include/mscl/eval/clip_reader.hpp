/// \file clip_reader.hpp
/// \brief Deterministic test-time clips of one video (ECOSYSTEM.md §2.2): MMAction2's test clip
///        offsets → frame decode → short-side resize → centre or three crop → normalisation →
///        a V×3×T×h×w float tensor, the n×c×t×h×w layout of models::video_resnet.
///
/// Retrieval and test-time accuracy are only comparable with published numbers when the clips come
/// from the same frames and pixels, so every step follows MMAction2 0.x's test pipeline
/// `SampleFrames(test_mode=True) → RawFrameDecode → Resize(scale=(-1, S)) → CenterCrop / ThreeCrop
/// → Normalize → FormatShape('NCTHW')`:
///  - frame indices: data::mmaction_test_clip_offsets (offset_i = ⌊i·a + a/2⌋,
///    a = (N − clip_len·interval + 1)/num_clips; all zeros for too-short videos), then the
///    out-of-bound policy (loop by default); indices here are 0-based logical frames;
///  - resize: mmcv.rescale_size with scale (∞, S): factor S / short side, new size
///    ⌊w·f + 0.5⌋ × ⌊h·f + 0.5⌋; bilinear with half-pixel centres (augment::detail::crop_resize_planes,
///    OpenCV INTER_LINEAR taps evaluated in float, i.e. without OpenCV's 8-bit rounding, ≤ 0.5/255);
///  - CenterCrop: left = (w − c) // 2, top = (h − c) // 2;
///    ThreeCrop (the crop must span the short side): crops at offsets 0, 2·step, step along the long
///    side (step = (long − c) // 2), in that order, as MMAction2 emits them;
///  - views: crop-major (all clips of crop 0, then crop 1, ...), MMAction2's FormatShape order;
///  - normalisation: (x/255 − mean_c) / std_c (ImageNet by default; mean 0, std 1 keeps [0, 1]).
/// Every decoded frame is used once per distinct index, however many clips share it.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "../augment/spatial.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../data/annotations.hpp"
#include "../data/frame.hpp"
#include "../data/rawframes.hpp"
#include "../data/samplers.hpp"

namespace mscl::eval {

/// How each clip is cropped spatially.
enum class crop_mode {
  centre,  ///< one centre crop (MMAction2 CenterCrop)
  three,   ///< three crops along the long side (MMAction2 ThreeCrop)
  none,    ///< the whole (resized) frame
};

inline const char* crop_mode_name(crop_mode m) {
  return m == crop_mode::centre ? "centre" : m == crop_mode::three ? "three" : "none";
}

/// The test-time view protocol of one video.
struct test_clip_options {
  index_t clip_len = 8;        ///< frames per clip (T)
  index_t frame_interval = 2;  ///< frames between sampled frames
  index_t num_clips = 10;      ///< clips per video at MMAction2 test offsets
  int short_side = 0;          ///< resize so the short side has this length; 0 keeps the frame size
  int crop_size = 0;           ///< square crop side; 0 = no crop (crop_mode is then ignored)
  crop_mode crop = crop_mode::centre;
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};    ///< on the [0, 1] scale (ImageNet)
  std::array<float, 3> stddev{0.229f, 0.224f, 0.225f};  ///< on the [0, 1] scale (ImageNet)
  data::out_of_bound_policy out_of_bound = data::out_of_bound_policy::loop;

  /// Crops per clip.
  index_t crops() const { return (crop_size > 0 && crop == crop_mode::three) ? 3 : 1; }
  /// Views (clips × crops) per video: the leading dimension of the clip tensor.
  index_t views() const { return num_clips * crops(); }

  /// Keeps the [0, 1] range (no mean/std), for models trained on unnormalised clips.
  test_clip_options& no_normalization() {
    mean = {0.f, 0.f, 0.f};
    stddev = {1.f, 1.f, 1.f};
    return *this;
  }

  void validate(const char* who) const {
    MSCL_CHECK(clip_len >= 1 && frame_interval >= 1 && num_clips >= 1, config_error,
               who << ": need clip_len, frame_interval and num_clips >= 1, got " << clip_len << ", " << frame_interval
                   << ", " << num_clips);
    MSCL_CHECK(short_side >= 0 && crop_size >= 0, config_error,
               who << ": short_side and crop_size must be >= 0, got " << short_side << ", " << crop_size);
    for (float s : stddev) MSCL_CHECK(s > 0.f, config_error, who << ": normalisation std must be > 0, got " << s);
  }

  /// One line naming the whole protocol (printed with results).
  std::string describe() const {
    std::string s = std::to_string(num_clips) + " clip(s) x " + std::to_string(clip_len) + " frames @ interval " +
                    std::to_string(frame_interval) + ", short side " +
                    (short_side > 0 ? std::to_string(short_side) : std::string("unchanged")) + ", ";
    s += crop_size > 0 ? std::string(crop_mode_name(crop)) + " crop " + std::to_string(crop_size) : std::string("no crop");
    const bool plain = mean == std::array<float, 3>{0.f, 0.f, 0.f} && stddev == std::array<float, 3>{1.f, 1.f, 1.f};
    s += plain ? ", pixels in [0, 1]" : ", mean/std normalised";
    return s;
  }
};

/// Frame indices (0-based, relative to the video's first frame) of the test clips of a video of
/// `num_frames` frames: clip c occupies positions [c·clip_len, (c+1)·clip_len).
inline std::vector<index_t> test_frame_indices(index_t num_frames, const test_clip_options& o) {
  o.validate("eval::test_frame_indices");
  MSCL_CHECK(num_frames >= 1, value_error, "eval::test_frame_indices: a video needs at least one frame, got " << num_frames);
  const auto offsets = data::mmaction_test_clip_offsets(num_frames, o.clip_len, o.frame_interval, o.num_clips);
  return data::clip_offsets_to_frame_indices(offsets, num_frames, o.clip_len, o.frame_interval, o.out_of_bound, 0);
}

/// Size after the short-side resize (mmcv.rescale_size with scale (∞, short_side)); height, width.
inline std::pair<int, int> short_side_size(int height, int width, int short_side) {
  MSCL_CHECK(height > 0 && width > 0, shape_error, "eval::short_side_size: bad frame size " << height << "x" << width);
  if (short_side <= 0) return {height, width};
  const double f = double(short_side) / double(std::min(height, width));
  return {int(double(height) * f + 0.5), int(double(width) * f + 0.5)};
}

/// Crop boxes (in resized-frame coordinates) of one clip, in MMAction2's emission order.
inline std::vector<augment::crop_box> test_crop_boxes(int height, int width, const test_clip_options& o) {
  using augment::crop_box;
  if (o.crop_size <= 0 || o.crop == crop_mode::none) return {crop_box{0, 0, width, height}};
  const int c = o.crop_size;
  MSCL_CHECK(c <= height && c <= width, value_error,
             "eval::test_crop_boxes: crop " << c << "x" << c << " does not fit the resized frame " << height << "x"
                                            << width << " (raise short_side or lower crop_size)");
  if (o.crop == crop_mode::centre) return {crop_box{(width - c) / 2, (height - c) / 2, c, c}};
  // ThreeCrop needs the crop to span one side entirely (MMAction2 asserts the same).
  MSCL_CHECK(c == height || c == width, value_error,
             "eval::test_crop_boxes: three-crop " << c << " must equal the resized short side (frame " << height << "x"
                                                  << width << "); set short_side = crop_size");
  if (c == height) {
    const int step = (width - c) / 2;
    return {crop_box{0, 0, c, c}, crop_box{2 * step, 0, c, c}, crop_box{step, 0, c, c}};
  }
  const int step = (height - c) / 2;
  return {crop_box{0, 0, c, c}, crop_box{0, 2 * step, c, c}, crop_box{0, step, c, c}};
}

/// Output size (h, w) of every view for frames of height×width.
inline std::pair<int, int> view_size(int height, int width, const test_clip_options& o) {
  const auto [rh, rw] = short_side_size(height, width, o.short_side);
  if (o.crop_size <= 0 || o.crop == crop_mode::none) return {rh, rw};
  return {o.crop_size, o.crop_size};
}

/// Fills `out` (views()×3×T×h×w floats, preallocated; h×w from view_size of the first frame) with
/// the test views of a video of `num_frames` frames; `fetch(i)` returns decoded frame i (0-based).
/// `what` names the video in errors. All frames must share one size.
inline void load_test_clips_into(float* out, index_t num_frames, const std::function<data::image_u8(index_t)>& fetch,
                                 const test_clip_options& o, const std::string& what) {
  const std::vector<index_t> idx = test_frame_indices(num_frames, o);
  std::map<index_t, std::size_t> slot;  // frame index -> position in `planes`
  for (index_t i : idx) slot.emplace(i, 0);
  int height = 0, width = 0, rh = 0, rw = 0;
  std::vector<std::vector<float>> planes;  // resized frames, 3 planes each, scaled to [0, 1]
  planes.reserve(slot.size());
  for (auto& [i, pos] : slot) {
    data::image_u8 img = fetch(i);
    MSCL_CHECK(!img.empty() && (img.channels == 3 || img.channels == 1), shape_error,
               "eval::load_test_clips: frame " << i << " of " << what << " is empty or has " << img.channels
                                               << " channels (need 1 or 3)");
    if (planes.empty()) {
      height = img.height;
      width = img.width;
      std::tie(rh, rw) = short_side_size(height, width, o.short_side);
    }
    MSCL_CHECK(img.height == height && img.width == width, shape_error,
               "eval::load_test_clips: frame " << i << " of " << what << " is " << img.height << "x" << img.width
                                               << " but earlier frames are " << height << "x" << width);
    std::vector<float> p(std::size_t(3) * std::size_t(rh) * std::size_t(rw));
    const augment::crop_box full{0, 0, width, height};
    if (img.channels == 3) {
      augment::detail::crop_resize_planes(img.pixels.data(), 3, width, 3, 1, full, p.data(), rh, rw, 1.f / 255.f);
    } else {
      augment::detail::crop_resize_planes(img.pixels.data(), 1, width, 1, 0, full, p.data(), rh, rw, 1.f / 255.f);
      std::copy(p.begin(), p.begin() + std::ptrdiff_t(rh) * rw, p.begin() + std::ptrdiff_t(rh) * rw);
      std::copy(p.begin(), p.begin() + std::ptrdiff_t(rh) * rw, p.begin() + 2 * std::ptrdiff_t(rh) * rw);
    }
    pos = planes.size();
    planes.push_back(std::move(p));
  }
  const auto boxes = test_crop_boxes(rh, rw, o);
  const index_t T = o.clip_len;
  const int vh = int(boxes[0].h), vw = int(boxes[0].w);
  const std::size_t plane = std::size_t(vh) * std::size_t(vw);
  std::size_t v = 0;
  for (const auto& b : boxes) {  // crop-major, as MMAction2's ThreeCrop + FormatShape
    for (index_t c = 0; c < o.num_clips; ++c, ++v) {
      float* view = out + v * 3 * std::size_t(T) * plane;
      for (index_t t = 0; t < T; ++t) {
        const std::vector<float>& src = planes[slot.at(idx[std::size_t(c * T + t)])];
        for (int ch = 0; ch < 3; ++ch) {
          const float m = o.mean[std::size_t(ch)], inv = 1.f / o.stddev[std::size_t(ch)];
          const float* s = src.data() + std::size_t(ch) * std::size_t(rh) * std::size_t(rw);
          float* d = view + (std::size_t(ch) * std::size_t(T) + std::size_t(t)) * plane;
          for (int y = 0; y < vh; ++y)
            for (int x = 0; x < vw; ++x)
              d[std::size_t(y) * vw + x] = (s[std::size_t(b.y + y) * rw + std::size_t(b.x + x)] - m) * inv;
        }
      }
    }
  }
}

/// The test views of in-memory frames (frame i = frames[i]) as a views()×3×T×h×w tensor.
inline tensor<float> test_clips_from_frames(const data::frame_sequence& frames, const test_clip_options& o,
                                            const std::string& what = "in-memory video") {
  MSCL_CHECK(!frames.empty(), value_error, "eval::test_clips_from_frames: " << what << " has no frames");
  const auto [h, w] = view_size(frames.front().height, frames.front().width, o);
  tensor<float> out = tensor<float>::empty({o.views(), 3, o.clip_len, h, w});
  load_test_clips_into(out.data(), index_t(frames.size()), [&](index_t i) { return frames[std::size_t(i)]; }, o, what);
  return out;
}

#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG
/// The test views of one annotation entry under a rawframes root: frames `offset .. offset +
/// total_frames − 1` of ROOT/frame_dir (the list's total_frames decides the sampling, as in
/// MMAction2; the directory must hold that many frames).
inline tensor<float> read_test_clips(const std::string& root, const data::rawframe_entry& e, const test_clip_options& o) {
  const std::string dir = (std::filesystem::path(root) / e.frame_dir).string();
  const data::rawframes_dir rd = data::rawframes_dir::probe(dir);
  MSCL_CHECK(e.total_frames >= 1 && e.offset + e.total_frames <= rd.rgb_count, io_error,
             "eval::read_test_clips: the list says '" << e.frame_dir << "' has frames " << e.offset << ".."
                                                      << e.offset + e.total_frames - 1 << " (line " << e.line << ") but '"
                                                      << dir << "' holds " << rd.rgb_count << " contiguous RGB frames");
  const data::image_u8 first = rd.read_rgb(e.offset);
  const auto [h, w] = view_size(first.height, first.width, o);
  tensor<float> out = tensor<float>::empty({o.views(), 3, o.clip_len, h, w});
  load_test_clips_into(out.data(), e.total_frames, [&](index_t i) { return i == 0 ? first : rd.read_rgb(e.offset + i); },
                       o, "'" + dir + "'");
  return out;
}
#endif

}  // namespace mscl::eval
