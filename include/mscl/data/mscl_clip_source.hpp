/// \file mscl_clip_source.hpp
/// \brief The MSCL pretraining data source over MMAction2 rawframes (ALGORITHM.md §5–§7): an
///        annotation list + an RGB rawframes root + a flow root (+ an optional MDS sample file)
///        → per-slot samples of two clips of one video with their views, collated into
///        `ssl::mscl_batch`. A slot source for `prefetch_loader` (loader.hpp) and, through
///        `batch(i)`, a synchronous batch source for `train::pretrain` on its own.
///
/// Per sample (iteration i, slot s), everything drawn from `generator(seed, i·2^32 + s·2^16)`:
///  1. video: position i·G + s of an endless sequence of epochs, each a Philox permutation of the
///     list (or the list order with shuffle = false): every video once per epoch.
///  2. clip starts: with a sample file, `temporal_shift_chosen_sampler` (§5.2: query start by
///     rejection from the chosen starts, key start snapped to the chosen start nearest a random
///     shift); without one the same sampler with an empty chosen list (uniform query start in
///     [0, N − clip_len·interval], key = query + U{−R..R} clamped). clip_len frames at
///     `frame_interval`, wrapping modulo N. N = the list's total_frames, capped by the flow
///     count when flow is used (N − 1 flows for N frames is common); RGB frame f and flow map f
///     are read at the same index (§5.2).
///  3. views q and k: `augment::make_mscl_view_policy` params, drawn for the RGB size after a
///     virtual resize to `short_side` (MMAction2 Resize(-1, 128)); the random-resized-crop box is
///     mapped to the stored RGB plane and to the flow plane (map_crop_box, §6.5) and both are
///     cropped and resized to crop_size in one bilinear pass from the decoded frames (no
///     intermediate resize). RGB: flip → jitter / grey / blur (color_aug) → ImageNet normalise.
///  4. flow: each stored map dequantised (MMAction2 grey JPEG pair, bound flow_bound; or .flo),
///     normalised by its own max length over the whole uncropped map (§6.3), cropped with the
///     view's box, flipped with the view's flag (mirror and negate u unless flip_negates_flow is
///     false: §11 A2), then paired and FRA-rotated by `ssl::make_flow_packs` with one angle per
///     sample (intended pairing by default, `official_literal_flow_views` for §11 A1) — rotation
///     after the flip is "mirror, then rotate" — and Middlebury colour-coded (§6.4).
///
/// Horizontal flips swap the classes right/left and cw/ccw of the built-in synthetic dataset: set
/// `flip = false` there. Reading needs MSCL_WITH_JPEG (target mscl::jpeg).
#pragma once
#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "../augment/photometric_batch.hpp"
#include "../augment/presets.hpp"
#include "../core/rng.hpp"
#include "../flow/quantize.hpp"
#include "../io/flo.hpp"
#include "../io/jpeg.hpp"
#include "../ops/shape_ops.hpp"
#include "../ssl/flow_views.hpp"
#include "../ssl/mscl_objective.hpp"
#include "annotations.hpp"
#include "loader.hpp"
#include "mds.hpp"
#include "rawframes.hpp"

namespace mscl::data {

struct mscl_clip_options {
  std::string data_root;        ///< RGB rawframes root (directories named by the list's first field)
  std::string annotation_file;  ///< MMAction2 rawframe list: `frame_dir total_frames label`
  std::string flow_root;        ///< empty: same as data_root
  std::string samples_file;     ///< MDS sample file (mscl-gen-samples); empty: uniform starts
  bool with_offset = false;     ///< the list has an offset column (`frame_dir offset total label`)
  index_t batch = 8;            ///< global batch size G
  index_t clip_len = 8, frame_interval = 8;
  index_t shift_range = 1;      ///< key shift range in clips (R = shift_range·clip_len·frame_interval)
  index_t short_side = 128;     ///< virtual resize of the RGB frames before the crop; 0: as stored
  index_t crop_size = 112;
  double crop_area_min = 0.2, crop_area_max = 1.0;
  bool shuffle = true;          ///< per-epoch permutation of the list (false: list order)
  bool with_flow = true;        ///< produce flow views (false: RGB only, MoCo-RGB)
  bool fra = true;              ///< produce the FRA-rotated flow views (flow_aug_q/k)
  bool official_literal_flow_views = false;  ///< §11 A1 (ssl/flow_views.hpp)
  bool flip = true;             ///< horizontal flip p = 0.5 per view (false for the synthetic dataset)
  bool flip_negates_flow = true;  ///< §11 A2 (false: the released behaviour)
  bool color_aug = true;        ///< jitter p 0.8, grey p 0.2, blur p `blur_p` on RGB (§7.2)
  double blur_p = 0.5;          ///< Gaussian blur probability within color_aug (§7.2: 0.5)
  bool jitter_per_frame = false;  ///< §11 A11 released per-frame jitter factors
  bool normalize_rgb = true;    ///< ImageNet mean/std
  /// false: the loader crops and flips the RGB views and leaves jitter, grey, blur and the
  /// normalisation to the training device (augment/photometric_batch.hpp): the batch carries, per
  /// view, a table of what was drawn (ssl::mscl_batch::rgb_photometric_q/k), and
  /// data::on_backend_source applies it after the copy. Same values either way on the CPU.
  bool rgb_photometric = true;
  bool color_code_flow = true;  ///< false: raw 2-channel flow in the batch, coded later on the training device (data::on_backend_source) or inspected
  bool fast_atan2 = false;      ///< polynomial atan2 in the colour coding (augment/flow.hpp)
  float flow_bound = 20.f;      ///< dequantisation bound of flow JPEGs
  std::uint64_t seed = 0;
};

/// One sample: the tensors (C×T×H×W) and where they came from.
struct mscl_clip_sample {
  tensor<float> rgb_q, rgb_k, flow_q, flow_k, flow_aug_q, flow_aug_k;
  tensor<float> rgb_photometric_q, rgb_photometric_k;  ///< T×photometric_columns (rgb_photometric = false only)
  index_t video = -1;                             ///< index in the annotation list
  std::vector<index_t> query_frames, key_frames;  ///< 0-based frame indices (before the list offset)
  augment::crop_box rgb_box_q, rgb_box_k;         ///< on the stored RGB frames
  augment::crop_box flow_box_q, flow_box_k;       ///< on the stored flow maps
  bool flip_q = false, flip_k = false;
  int fra_chunk = -1;                             ///< -1: no FRA
};

class mscl_clip_source {
 public:
  using sample_type = mscl_clip_sample;
  using batch_type = ssl::mscl_batch<float, cpu>;

  explicit mscl_clip_source(mscl_clip_options o) : o_(std::move(o)) {
    namespace fs = std::filesystem;
    if (o_.flow_root.empty()) o_.flow_root = o_.data_root;
    MSCL_CHECK(o_.batch >= 1 && o_.clip_len >= 1 && o_.frame_interval >= 1 && o_.crop_size >= 1 && o_.short_side >= 0 &&
                   o_.shift_range >= 0,
               config_error,
               "mscl_clip_source: need batch, clip_len, frame_interval, crop_size >= 1 and short_side, shift_range >= 0");
    MSCL_CHECK(o_.blur_p >= 0 && o_.blur_p <= 1, config_error,
               "mscl_clip_source: blur_p must be in [0, 1], got " << o_.blur_p);
    MSCL_CHECK(o_.crop_area_min > 0 && o_.crop_area_min <= o_.crop_area_max && o_.crop_area_max <= 1.0, config_error,
               "mscl_clip_source: need 0 < crop_area_min <= crop_area_max <= 1, got " << o_.crop_area_min << ", "
                                                                                     << o_.crop_area_max);
    MSCL_CHECK(!o_.annotation_file.empty(), config_error, "mscl_clip_source: no annotation file given");
    std::error_code ec;
    MSCL_CHECK(fs::is_directory(o_.data_root, ec), io_error,
               "mscl_clip_source: data root '" << o_.data_root << "' is not a directory");
    if (o_.with_flow)
      MSCL_CHECK(fs::is_directory(o_.flow_root, ec), io_error,
                 "mscl_clip_source: flow root '" << o_.flow_root << "' is not a directory");
    list_options lo;
    lo.with_offset = o_.with_offset;
    lo.multi_label = true;
    videos_ = read_rawframe_list(o_.annotation_file, lo);
    MSCL_CHECK(!videos_.empty(), io_error, "mscl_clip_source: " << o_.annotation_file << " lists no video");
    sopt_.clip_len = o_.clip_len;
    sopt_.frame_interval = o_.frame_interval;
    sopt_.shift_range = o_.shift_range;
    if (!o_.samples_file.empty()) {
      mds_ = std::make_shared<motion_differential_sampler>(o_.samples_file, sopt_);
      for (const auto& v : videos_)
        MSCL_CHECK(mds_->file().find(v.frame_dir) != nullptr, io_error,
                   "mscl_clip_source: video '" << v.frame_dir << "' (" << o_.annotation_file << ":" << v.line
                                               << ") is not in the sample file " << o_.samples_file);
    }
    augment::mscl_view_options vo;
    vo.crop.out_height = vo.crop.out_width = o_.crop_size;
    vo.crop.area_lo = o_.crop_area_min;
    vo.crop.area_hi = o_.crop_area_max;
    vo.flip_p = o_.flip ? 0.5 : 0.0;
    vo.flip_negates_flow = o_.flip_negates_flow;
    vo.jitter_p = o_.color_aug ? 0.8 : 0.0;
    vo.jitter.per_frame = o_.jitter_per_frame;
    vo.grey_p = o_.color_aug ? 0.2 : 0.0;
    vo.blur_p = o_.color_aug ? o_.blur_p : 0.0;
    vo.blur.kernel_size = int(std::max<index_t>(1, (o_.crop_size / 10) / 2 * 2 + 1));  // ⌊0.1·crop⌋ made odd
    vo.flow_coding.fast_atan2 = o_.fast_atan2;
    policy_ = augment::make_mscl_view_policy(vo);
    info(0);  // fail fast on a wrong root or layout, naming the directory
  }

  const mscl_clip_options& options() const { return o_; }
  index_t batch_size() const { return o_.batch; }
  index_t num_videos() const { return index_t(videos_.size()); }
  const std::vector<rawframe_entry>& videos() const { return videos_; }

  /// Sample `slot` of iteration `iteration`; a pure function of (seed, iteration, slot).
  mscl_clip_sample sample(long iteration, index_t slot) const {
    MSCL_CHECK(iteration >= 0 && iteration < (long(1) << 31) && slot >= 0 && slot < o_.batch, value_error,
               "mscl_clip_source::sample: iteration " << iteration << " or slot " << slot << " out of range (batch "
                                                      << o_.batch << ")");
    const index_t v = video_for(iteration, slot);
    const rawframe_entry& e = videos_[std::size_t(v)];
    const std::string ctx = "mscl_clip_source: iteration " + std::to_string(iteration) + ", slot " +
                            std::to_string(slot) + ", video '" + e.frame_dir + "' (" + o_.annotation_file + ":" +
                            std::to_string(e.line) + "): ";
    try {
      return build(iteration, slot, v);
    } catch (const io_error& x) {
      throw io_error(ctx + x.what());
    } catch (const value_error& x) {
      throw value_error(ctx + x.what());
    } catch (const shape_error& x) {
      throw shape_error(ctx + x.what());
    }
  }

  /// Stacks samples (slot order) into B×C×T×H×W tensors.
  batch_type collate(std::vector<mscl_clip_sample>&& s) const {
    MSCL_CHECK(!s.empty(), value_error, "mscl_clip_source::collate: no samples");
    auto stack = [&](tensor<float> mscl_clip_sample::*m) {
      if (!(s[0].*m).defined()) return tensor<float>();
      std::vector<tensor<float>> xs;
      for (auto& x : s) xs.push_back(x.*m);
      return ops::stack(xs, 0);
    };
    batch_type b;
    b.rgb_q = stack(&mscl_clip_sample::rgb_q);
    b.rgb_k = stack(&mscl_clip_sample::rgb_k);
    b.flow_q = stack(&mscl_clip_sample::flow_q);
    b.flow_k = stack(&mscl_clip_sample::flow_k);
    b.flow_aug_q = stack(&mscl_clip_sample::flow_aug_q);
    b.flow_aug_k = stack(&mscl_clip_sample::flow_aug_k);
    b.rgb_photometric_q = stack(&mscl_clip_sample::rgb_photometric_q);
    b.rgb_photometric_k = stack(&mscl_clip_sample::rgb_photometric_k);
    return b;
  }

  /// The whole global batch of `iteration`, built in the caller (no prefetching).
  batch_type batch(long iteration) const {
    std::vector<mscl_clip_sample> s;
    for (index_t i = 0; i < o_.batch; ++i) s.push_back(sample(iteration, i));
    return collate(std::move(s));
  }

  /// The list index of (iteration, slot).
  index_t video_for(long iteration, index_t slot) const {
    const std::uint64_t n = videos_.size();
    const std::uint64_t g = std::uint64_t(iteration) * std::uint64_t(o_.batch) + std::uint64_t(slot);
    const std::uint64_t epoch = g / n, pos = g % n;
    if (!o_.shuffle) return index_t(pos);
    return (*permutation(epoch))[pos];
  }

  /// What probing a video found (cached).
  struct video_info {
    rawframes_dir rgb, flow;      ///< flow == rgb when the roots coincide
    std::vector<std::string> flo_files;  ///< the .flo layout (file-name order), else empty
    index_t num_frames = 0;       ///< N used for sampling
    int height = 0, width = 0;    ///< stored RGB size
    int vheight = 0, vwidth = 0;  ///< after the virtual short-side resize
    int flow_height = 0, flow_width = 0;
  };
  std::shared_ptr<const video_info> info(index_t v) const {
    {
      std::lock_guard<std::mutex> lk(m_);
      const auto it = infos_.find(v);
      if (it != infos_.end()) return it->second;
    }
    auto p = std::make_shared<const video_info>(probe(videos_[std::size_t(v)]));
    std::lock_guard<std::mutex> lk(m_);
    return infos_.emplace(v, std::move(p)).first->second;
  }

 private:
  static std::uint64_t stream_base(long iteration, index_t slot) {
    return (std::uint64_t(iteration) << 32) | (std::uint64_t(slot) << 16);
  }

  std::shared_ptr<const std::vector<index_t>> permutation(std::uint64_t epoch) const {
    {
      std::lock_guard<std::mutex> lk(m_);
      const auto it = perms_.find(epoch);
      if (it != perms_.end()) return it->second;
    }
    auto p = std::make_shared<std::vector<index_t>>(videos_.size());
    for (std::size_t i = 0; i < p->size(); ++i) (*p)[i] = index_t(i);
    const std::uint64_t stream = (std::uint64_t(1) << 63) | epoch;  // disjoint from the per-sample streams
    for (std::size_t i = p->size(); i > 1; --i) {  // Fisher-Yates
      const std::size_t j = std::min(i - 1, std::size_t(philox_uniform(o_.seed, stream, i) * double(i)));
      std::swap((*p)[i - 1], (*p)[j]);
    }
    std::lock_guard<std::mutex> lk(m_);
    if (perms_.size() >= 4) perms_.erase(perms_.begin());
    return perms_.emplace(epoch, std::move(p)).first->second;
  }

  video_info probe(const rawframe_entry& e) const {
    namespace fs = std::filesystem;
    video_info vi;
    const std::string where = o_.annotation_file + ":" + std::to_string(e.line);
    const std::string rgb_dir = (fs::path(o_.data_root) / e.frame_dir).string();
    vi.rgb = rawframes_dir::probe(rgb_dir);
    MSCL_CHECK(e.total_frames >= 1, io_error, where << ": video '" << e.frame_dir << "' has total_frames " << e.total_frames);
    MSCL_CHECK(e.offset + e.total_frames <= vi.rgb.rgb_count, io_error,
               where << ": the list gives " << e.total_frames << " frames from offset " << e.offset << " but '" << rgb_dir
                     << "' holds " << vi.rgb.rgb_count << " contiguous RGB frames (" << vi.rgb.rgb_template.name(vi.rgb.rgb_start)
                     << ", ...)");
    vi.num_frames = e.total_frames;
    const io::jpeg_info ji = io::read_jpeg_info(vi.rgb.rgb_path(e.offset));
    vi.height = ji.height;
    vi.width = ji.width;
    vi.vheight = vi.height;
    vi.vwidth = vi.width;
    if (o_.short_side > 0) {  // mmcv rescale_size with (inf, short_side): int(x·scale + 0.5)
      const double scale = double(o_.short_side) / double(std::min(vi.height, vi.width));
      vi.vheight = int(double(vi.height) * scale + 0.5);
      vi.vwidth = int(double(vi.width) * scale + 0.5);
    }
    if (o_.with_flow) {
      const std::string flow_dir = (fs::path(o_.flow_root) / e.frame_dir).string();
      vi.flow = flow_dir == rgb_dir ? vi.rgb : rawframes_dir::probe(flow_dir);
      index_t count = 0;
      if (vi.flow.flow != flow_layout::none) {
        count = vi.flow.flow_count;
        const io::jpeg_info fi = io::read_jpeg_info(vi.flow.flow_x_path(e.offset));
        vi.flow_height = fi.height;
        vi.flow_width = fi.width;
      } else {
        std::error_code ec;
        for (fs::directory_iterator it(flow_dir, ec), end; !ec && it != end; it.increment(ec))
          if (it->path().extension() == ".flo") vi.flo_files.push_back(it->path().string());
        std::sort(vi.flo_files.begin(), vi.flo_files.end());
        count = index_t(vi.flo_files.size());
        MSCL_CHECK(count > 0, io_error,
                   where << ": no flow in '" << flow_dir
                         << "' (expected flow_x_/flow_y_, x_/y_ or flow_ JPEGs, or .flo files)");
        const flow_field f = io::read_flo(vi.flo_files.front());
        vi.flow_height = f.height;
        vi.flow_width = f.width;
      }
      MSCL_CHECK(count > e.offset, io_error, where << ": '" << flow_dir << "' holds " << count << " flow maps, the list offset is " << e.offset);
      vi.num_frames = std::min<index_t>(vi.num_frames, count - e.offset);
    }
    if (mds_) {
      const mds_video_samples* s = mds_->file().find(e.frame_dir);
      // The statistic runs over the flow maps (N - 1 for N frames with consecutive pairs). With
      // flow the counts must agree; an RGB-only run (the MoCo-RGB baseline with MDS) samples
      // within the first s->num_frames frames, the ones the statistic scored.
      if (!o_.with_flow && s->num_frames < vi.num_frames) vi.num_frames = s->num_frames;
      MSCL_CHECK(s->num_frames == vi.num_frames, io_error,
                 where << ": the sample file " << o_.samples_file << " has " << s->num_frames << " frames for '"
                       << e.frame_dir << "' but the data set gives " << vi.num_frames
                       << (o_.with_flow ? " (list total_frames capped by the flow count)" : " (list total_frames)"));
    }
    return vi;
  }

  // Decoded RGB frames of a clip → 3×T×crop×crop in [0, 1] with the view's box.
  tensor<float> rgb_clip(const video_info& vi, const rawframe_entry& e, const std::vector<index_t>& frames,
                         const augment::random_resized_crop::params& crop, augment::crop_box* stored_box) const {
    const auto& cropper = policy_.part<0>();
    augment::random_resized_crop::params p = crop;
    p.rgb = augment::map_crop_box(crop.rgb, vi.vheight, vi.vwidth, vi.height, vi.width);
    p.height = vi.height;
    p.width = vi.width;
    *stored_box = p.rgb;
    frame_sequence seq;
    std::vector<index_t> idx;
    for (index_t f : frames) {
      const std::string path = vi.rgb.rgb_path(e.offset + f);
      image_u8 img = io::read_jpeg(path, 3);
      MSCL_CHECK(img.height == vi.height && img.width == vi.width, io_error,
                 path << " is " << img.height << "x" << img.width << " but the video's first frame is " << vi.height
                      << "x" << vi.width);
      idx.push_back(index_t(seq.size()));
      seq.push_back(std::move(img));
    }
    return cropper.apply_frames(p, seq, idx);
  }

  // The clip's flow maps, each normalised by its own max length over the whole stored map (§6.3).
  std::vector<flow_field> flow_maps(const video_info& vi, const rawframe_entry& e, const std::vector<index_t>& frames) const {
    std::vector<flow_field> out;
    for (index_t f : frames) {
      flow_field m;
      std::string name;
      if (vi.flo_files.empty()) {
        m = vi.flow.read_flow(e.offset + f, o_.flow_bound);
        name = vi.flow.flow_x_path(e.offset + f);
      } else {
        name = vi.flo_files[std::size_t(e.offset + f)];
        m = io::read_flo(name);
      }
      MSCL_CHECK(m.height == vi.flow_height && m.width == vi.flow_width, io_error,
                 name << " is " << m.height << "x" << m.width << " but the video's first flow map is " << vi.flow_height
                      << "x" << vi.flow_width);
      flow::normalize_flow_max_length(m.u.data(), m.v.data(), m.u.size());
      out.push_back(std::move(m));
    }
    return out;
  }

  // 2×T×H×W raw flow of one clip cropped with a view's box and flipped with its flag.
  tensor<float> flow_view(const std::vector<flow_field>& maps, const augment::mscl_view_policy::params& prm) const {
    std::vector<index_t> idx(maps.size());
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = index_t(i);
    tensor<float> x = policy_.part<0>().apply_flow_fields(std::get<0>(prm), maps, idx);
    policy_.part<1>().apply_flow(std::get<1>(prm), x);
    return x;
  }

  // The photometric part of a view's params (parts 2–5) as its T×photometric_columns table.
  tensor<float> photometric_table(const augment::mscl_view_policy::params& prm) const {
    augment::photometric_view v;
    const auto& jitter = std::get<2>(prm);
    if (jitter.applied)
      for (const augment::jitter_factors& f : jitter.inner.frames)
        v.jitter.push_back(policy_.part<2>().policy().coefficients(f));
    v.grey = std::get<3>(prm).applied;
    if (std::get<4>(prm).applied) {
      v.blur_sigma = std::get<4>(prm).inner.sigma;
      v.blur_kernel = policy_.part<4>().policy().options().kernel_size;
    }
    v.normalize = o_.normalize_rgb;
    return tensor<float>::from_vector({o_.clip_len, augment::photometric_columns}, augment::photometric_rows(v, o_.clip_len));
  }

  // 2×T×H×W → 1×2×T×H×W (a view, no copy): the batch axis ssl::rotate_flow expects.
  static tensor<float> batched(const tensor<float>& x) {
    shape_t s = x.shape();
    s.insert(s.begin(), 1);
    return ops::reshape(x, s);
  }
  // FRA: the view rotated by the sample's angle, back to 2×T×H×W (a fresh tensor).
  static tensor<float> rotated(const tensor<float>& x, double angle) {
    return ops::reshape(ssl::rotate_flow(batched(x), std::vector<double>{angle}), x.shape());
  }
  // 2×T×H×W raw flow → 3×T×H×W colour (a new tensor; the raw one is left as it is), or kept raw
  // (color_code_flow = false: no copy, the views are this sample's own fresh tensors).
  tensor<float> finish_flow(tensor<float> x) const {
    if (o_.color_code_flow) policy_.part<6>().apply_flow({}, x);
    return x;
  }

  mscl_clip_sample build(long iteration, index_t slot, index_t v) const {
    const rawframe_entry& e = videos_[std::size_t(v)];
    const std::shared_ptr<const video_info> vi = info(v);
    generator gen(o_.seed, stream_base(iteration, slot));
    mscl_clip_sample out;
    out.video = v;
    const mds_clip_pair pair = mds_ ? (*mds_)(e.frame_dir, vi->num_frames, gen)
                                    : temporal_shift_chosen_sampler(vi->num_frames, {}, sopt_, gen);
    out.query_frames = pair.query_frames;
    out.key_frames = pair.key_frames;

    augment::clip_geometry g;
    g.frames = o_.clip_len;
    g.height = vi->vheight;
    g.width = vi->vwidth;
    if (o_.with_flow) {
      g.flow_frames = o_.clip_len;
      g.flow_height = vi->flow_height;
      g.flow_width = vi->flow_width;
    }
    const auto pq = policy_.sample(gen, g);
    const auto pk = policy_.sample(gen, g);
    const int chunk = int(gen.randint(0, 7));
    out.flip_q = std::get<1>(pq).applied;
    out.flip_k = std::get<1>(pk).applied;
    out.flow_box_q = std::get<0>(pq).flow;
    out.flow_box_k = std::get<0>(pk).flow;

    // RGB: crop (fused with decoding) → flip → jitter → grey → blur → normalise; with
    // rgb_photometric = false the part after the flip becomes a table for the training device.
    auto rgb_view = [&](const std::vector<index_t>& frames, const augment::mscl_view_policy::params& prm,
                        augment::crop_box* box, tensor<float>* photometric) {
      tensor<float> x = rgb_clip(*vi, e, frames, std::get<0>(prm), box);
      policy_.part<1>().apply(std::get<1>(prm), x);
      if (!o_.rgb_photometric) {
        *photometric = photometric_table(prm);
        return x;
      }
      policy_.part<2>().apply(std::get<2>(prm), x);
      policy_.part<3>().apply(std::get<3>(prm), x);
      policy_.part<4>().apply(std::get<4>(prm), x);
      if (o_.normalize_rgb) policy_.part<5>().apply(std::get<5>(prm), x);
      return x;
    };
    out.rgb_q = rgb_view(pair.query_frames, pq, &out.rgb_box_q, &out.rgb_photometric_q);
    out.rgb_k = rgb_view(pair.key_frames, pk, &out.rgb_box_k, &out.rgb_photometric_k);
    if (!o_.with_flow) return out;

    const std::vector<flow_field> fa = flow_maps(*vi, e, pair.query_frames);
    const std::vector<flow_field> fb = flow_maps(*vi, e, pair.key_frames);
    const tensor<float> aq = flow_view(fa, pq);  // F(a) in the q view
    const tensor<float> bk = flow_view(fb, pk);  // F(b) in the k view
    if (!o_.fra) {
      out.flow_q = finish_flow(aq);
      out.flow_k = finish_flow(bk);
      return out;
    }
    out.fra_chunk = chunk;
    const double angle = ssl::fra_angle(chunk);
    // The packs of ssl::make_flow_packs, split into their halves, built directly (no concatenation
    // and split: the same values, without two copies of every flow view).
    if (o_.official_literal_flow_views) {
      // q pack: [F(a) | F(b)] with q's box; k pack: [R F(a) | R F(b)] with k's box.
      out.flow_q = finish_flow(aq);
      out.flow_aug_q = finish_flow(flow_view(fb, pq));
      out.flow_k = finish_flow(rotated(flow_view(fa, pk), angle));
      out.flow_aug_k = finish_flow(rotated(bk, angle));
    } else {
      // intended: q pack = [F(a) | R F(a)], k pack = [F(b) | R F(b)].
      out.flow_aug_q = finish_flow(rotated(aq, angle));
      out.flow_aug_k = finish_flow(rotated(bk, angle));
      out.flow_q = finish_flow(aq);
      out.flow_k = finish_flow(bk);
    }
    return out;
  }

  mscl_clip_options o_;
  std::vector<rawframe_entry> videos_;
  mds_sampler_options sopt_;
  std::shared_ptr<const motion_differential_sampler> mds_;
  augment::mscl_view_policy policy_ = augment::make_mscl_view_policy();
  mutable std::mutex m_;
  mutable std::unordered_map<index_t, std::shared_ptr<const video_info>> infos_;
  mutable std::map<std::uint64_t, std::shared_ptr<const std::vector<index_t>>> perms_;
};

/// The prefetching MSCL loader over rawframes (a batch source for train::pretrain).
using mscl_rawframes_loader = prefetch_loader<mscl_clip_source>;

}  // namespace mscl::data
#endif
