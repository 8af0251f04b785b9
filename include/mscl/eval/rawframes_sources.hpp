/// \file rawframes_sources.hpp
/// \brief The training and test clip sources of fine-tuning over MMAction2 rawframes trees
///        (ECOSYSTEM.md §1.1, §2.2): clip sampling (MMAction2 `SampleFrames` or TSN segments),
///        training augmentation (crop, flip, normalisation) and the test views (N clips × M
///        crops). `eval::finetune` (finetune.hpp) and `eval::evaluate` take them.
#pragma once
#if !(defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG)
#error "mscl/eval/rawframes_sources.hpp reads rawframes JPEGs: link the mscl::jpeg target (MSCL_WITH_JPEG)"
#endif
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "../augment/color.hpp"
#include "../augment/spatial.hpp"
#include "../core/rng.hpp"
#include "../data/annotations.hpp"
#include "../data/rawframes.hpp"
#include "../data/samplers.hpp"
#include "clip_reader.hpp"

namespace mscl::eval {

// --------------------------------------------------------------------------- clip sampling

/// Which frames make a clip: MMAction2 `SampleFrames` (clip_len frames every frame_interval)
/// or TSN segments (clip_len segments, one frame each; the SSv2 recipe, §9.2).
struct clip_sampling_options {
  std::string sampler = "clips";  ///< "clips" | "segments"
  index_t clip_len = 16;
  index_t frame_interval = 1;     ///< "clips" only
};

/// Training augmentation. Crop "random_resized_crop": MMAction2 RandomResizedCrop (area
/// U(area_lo, area_hi), aspect log-U(3/4, 4/3)) resized to crop_size²; "random_crop": a
/// crop_size² window at a uniform position, no resizing (frames must be at least that large).
/// Flip with probability 0.5 when `flip` — never on data whose classes are mirror images (the
/// synthetic motion dataset: a flip turns "right" into "left").
struct train_augment_options {
  std::string crop = "random_resized_crop";
  index_t crop_size = 112;
  double area_lo = 0.08, area_hi = 1.0;
  bool flip = true;
  bool normalize = true;  ///< ImageNet mean/std on [0, 1] pixels (as augment::normalize)
};

/// Test views (ECOSYSTEM.md §2.2): `num_clips` clips at MMAction2's test offsets
/// (offset_i = ⌊i·a + a/2⌋, a = (N − clip_len·interval + 1)/num_clips; segment centres for
/// "segments"), each frame resized so its short side is `resize_short` (0 = as stored), then
/// `crop` "center" (one crop_size² view) or "three" (MMAction2 ThreeCrop: left/right/centre, or
/// top/bottom/centre, along the long side; the short side must equal crop_size), scores averaged
/// per video (`average`).
struct test_view_options {
  index_t num_clips = 1;
  std::string crop = "center";  ///< "center" | "three"
  index_t crop_size = 112;
  index_t resize_short = 0;
  bool normalize = true;
};

namespace detail {
inline void check_sampling(const clip_sampling_options& s, const char* who) {
  MSCL_CHECK(s.sampler == "clips" || s.sampler == "segments", config_error,
             who << ": sampler must be \"clips\" or \"segments\", got \"" << s.sampler << "\"");
  MSCL_CHECK(s.clip_len > 0 && s.frame_interval > 0, config_error,
             who << ": clip_len and frame_interval must be positive, got " << s.clip_len << " and " << s.frame_interval);
}

/// Probes every video of a rawframe list under `root` (once, at construction).
struct rawframes_index {
  std::vector<data::rawframes_dir> dirs;
  std::vector<index_t> labels;
  std::vector<std::string> names;
  index_t max_label = -1;

  void build(const std::string& root, const std::string& list, const char* who) {
    const auto entries = data::read_rawframe_list(list);
    MSCL_CHECK(!entries.empty(), io_error, who << ": " << list << " lists no videos");
    dirs.resize(entries.size());
    std::vector<std::string> errors(entries.size());
#pragma omp parallel for schedule(dynamic, 16)
    for (std::size_t i = 0; i < entries.size(); ++i) {
      try {
        dirs[i] = data::rawframes_dir::probe((std::filesystem::path(root) / entries[i].frame_dir).string());
        if (dirs[i].rgb_count <= 0) errors[i] = "no RGB frames in " + dirs[i].directory;
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    }
    for (std::size_t i = 0; i < entries.size(); ++i) {
      MSCL_CHECK(errors[i].empty(), io_error, who << ": " << list << " entry " << i + 1 << " ('" << entries[i].frame_dir << "'): " << errors[i]);
      MSCL_CHECK(entries[i].label() >= 0, io_error, who << ": " << list << " entry " << i + 1 << " has no label");
      labels.push_back(entries[i].label());
      names.push_back(entries[i].frame_dir);
      max_label = std::max(max_label, index_t(entries[i].label()));
    }
  }
};

inline std::vector<index_t> clip_indices(const clip_sampling_options& s, index_t frames, bool test, index_t num_clips,
                                         generator& gen) {
  if (s.sampler == "segments") {
    data::segment_sampler seg;
    seg.num_segments = s.clip_len;
    seg.test_mode = test;
    return seg(frames, gen);
  }
  data::sample_frames sf;
  sf.clip_len = s.clip_len;
  sf.frame_interval = s.frame_interval;
  sf.num_clips = num_clips;
  sf.test_mode = test;
  return sf(frames, gen);
}

inline void normalize_imagenet(tensor<float>& clip) { augment::normalize().apply({}, clip); }
}  // namespace detail

// ------------------------------------------------------------------------ rawframes sources

/// Training clips from a rawframes tree: one clip per item (sampler in train mode), the
/// configured crop, optional flip and normalisation. Thread-safe (`sample` is const).
class rawframes_train_source {
 public:
  rawframes_train_source(const std::string& root, const std::string& list, clip_sampling_options s,
                         train_augment_options a)
      : s_(std::move(s)), a_(std::move(a)) {
    detail::check_sampling(s_, "rawframes_train_source");
    MSCL_CHECK(a_.crop == "random_resized_crop" || a_.crop == "random_crop", config_error,
               "rawframes_train_source: crop must be \"random_resized_crop\" or \"random_crop\", got \"" << a_.crop << "\"");
    MSCL_CHECK(a_.crop_size > 0, config_error, "rawframes_train_source: crop_size must be positive");
    index_.build(root, list, "rawframes_train_source");
  }
  index_t size() const { return index_t(index_.dirs.size()); }
  index_t label(index_t i) const { return index_.labels.at(std::size_t(i)); }
  index_t max_label() const { return index_.max_label; }
  const std::string& name(index_t i) const { return index_.names.at(std::size_t(i)); }

  tensor<float> sample(index_t i, generator& gen) const {
    const data::rawframes_dir& d = index_.dirs.at(std::size_t(i));
    const auto idx = detail::clip_indices(s_, index_t(d.rgb_count), false, 1, gen);
    // Decode each distinct frame once.
    std::vector<index_t> uniq(idx);
    std::sort(uniq.begin(), uniq.end());
    uniq.erase(std::unique(uniq.begin(), uniq.end()), uniq.end());
    data::frame_sequence frames;
    std::vector<index_t> pos;
    for (index_t f : idx) pos.push_back(index_t(std::lower_bound(uniq.begin(), uniq.end(), f) - uniq.begin()));
    for (index_t f : uniq) frames.push_back(d.read_rgb(f));
    const index_t h = frames.front().height, w = frames.front().width;
    augment::clip_geometry g;
    g.frames = index_t(idx.size());
    g.height = h;
    g.width = w;
    augment::random_resized_crop::params p;
    if (a_.crop == "random_resized_crop") {
      augment::random_resized_crop_options ro;
      ro.area_lo = a_.area_lo;
      ro.area_hi = a_.area_hi;
      ro.out_height = ro.out_width = a_.crop_size;
      p = augment::random_resized_crop(ro).sample(gen, g);
    } else {
      MSCL_CHECK(h >= a_.crop_size && w >= a_.crop_size, shape_error,
                 "rawframes_train_source: random_crop of " << a_.crop_size << " does not fit frames of " << h << "x" << w
                                                           << " in " << d.directory);
      p.height = h;
      p.width = w;
      p.out_height = p.out_width = a_.crop_size;
      p.rgb = {gen.randint(0, w - a_.crop_size), gen.randint(0, h - a_.crop_size), a_.crop_size, a_.crop_size};
    }
    tensor<float> clip = augment::random_resized_crop().apply_frames(p, frames, pos);
    const bool flip = gen.uniform() < 0.5;  // drawn always, so flip on/off does not shift later draws
    if (a_.flip && flip) augment::horizontal_flip().apply({}, clip);
    if (a_.normalize) detail::normalize_imagenet(clip);
    return clip;
  }

 private:
  clip_sampling_options s_;
  train_augment_options a_;
  detail::rawframes_index index_;
};

/// Test views from a rawframes tree (test_view_options) through eval/clip_reader.hpp;
/// deterministic, thread-safe.
class rawframes_test_source {
 public:
  rawframes_test_source(const std::string& root, const std::string& list, clip_sampling_options s, test_view_options v)
      : s_(std::move(s)), v_(std::move(v)) {
    detail::check_sampling(s_, "rawframes_test_source");
    MSCL_CHECK(v_.crop == "center" || v_.crop == "three", config_error,
               "rawframes_test_source: crop must be \"center\" or \"three\", got \"" << v_.crop << "\"");
    MSCL_CHECK(v_.num_clips > 0 && v_.crop_size > 0 && v_.resize_short >= 0, config_error,
               "rawframes_test_source: num_clips and crop_size must be positive, resize_short >= 0");
    MSCL_CHECK(s_.sampler == "clips" || v_.num_clips == 1, config_error,
               "rawframes_test_source: the segment sampler gives one clip per video; set num_clips = 1");
    index_.build(root, list, "rawframes_test_source");
  }
  index_t size() const { return index_t(index_.dirs.size()); }
  index_t label(index_t i) const { return index_.labels.at(std::size_t(i)); }
  index_t max_label() const { return index_.max_label; }
  index_t crops_per_clip() const { return v_.crop == "three" ? 3 : 1; }
  index_t views_per_video() const { return v_.num_clips * crops_per_clip(); }
  const std::string& name(index_t i) const { return index_.names.at(std::size_t(i)); }

  /// views_per_video × 3 × clip_len × crop × crop, via eval/clip_reader.hpp (MMAction2's test
  /// pipeline; views crop-major). TSN segments are read as clip_len one-frame clips at the segment
  /// centres (SampleFrames(1, 1, K, test_mode) is exactly the segment-centre rule) and regrouped.
  tensor<float> views(index_t i) const {
    const data::rawframes_dir& d = index_.dirs.at(std::size_t(i));
    const bool segments = s_.sampler == "segments";
    test_clip_options o;
    o.clip_len = segments ? 1 : s_.clip_len;
    o.frame_interval = segments ? 1 : s_.frame_interval;
    o.num_clips = segments ? s_.clip_len : v_.num_clips;
    o.short_side = int(v_.resize_short);
    o.crop_size = int(v_.crop_size);
    o.crop = v_.crop == "three" ? crop_mode::three : crop_mode::centre;
    if (!v_.normalize) o.no_normalization();
    const data::image_u8 first = d.read_rgb(0);
    const auto [h, w] = view_size(first.height, first.width, o);
    tensor<float> out = tensor<float>::empty({o.views(), 3, o.clip_len, h, w});
    load_test_clips_into(out.data(), index_t(d.rgb_count), [&](index_t f) { return f == 0 ? first : d.read_rgb(f); }, o,
                         "'" + d.directory + "'");
    if (!segments) return out;
    // (crops·K)×3×1×h×w, crop-major → crops×3×K×h×w.
    no_grad guard;
    const index_t crops = o.crops(), K = s_.clip_len;
    return ops::contiguous(ops::permute(ops::reshape(out, {crops, K, 3, h, w}), {0, 2, 1, 3, 4}));
  }

 private:
  clip_sampling_options s_;
  test_view_options v_;
  detail::rawframes_index index_;
};

}  // namespace mscl::eval
