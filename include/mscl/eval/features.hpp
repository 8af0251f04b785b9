/// \file features.hpp
/// \brief Frozen-backbone video features for evaluation: building an R3D backbone of a given
///        depth/width, loading it from a pretraining checkpoint (prefix mapping) or from
///        torchvision-named safetensors, and one feature per video = the mean of its test views'
///        pooled features (ECOSYSTEM.md §2.1, ALGORITHM.md §9.3).
///
/// Only the RGB query backbone of a pretraining run is evaluated (§9.1): pretraining checkpoints
/// (train/checkpoint.hpp) store the whole objective under "model.", so the backbone lives under
/// `k_pretrain_rgb_backbone_prefix` = "model.rgb_q.backbone."; everything else in the file (key
/// encoders, projection heads, neck, flow branch, queues, optimiser state) is ignored. Loading is
/// strict inside the prefix: every backbone entry must be present with its shape, and a tensor
/// under the prefix that the backbone lacks is an error naming it (it signals a depth/width
/// mismatch). The architecture (width, blocks per stage) can be read off the file itself
/// (`infer_backbone_spec`), so a checkpoint evaluates without repeating its configuration.
///
/// Features are computed in eval mode (BatchNorm running statistics) under no_grad, with views of
/// several videos batched into one forward; the result does not depend on the batch size beyond
/// float summation order inside the convolution engine.
#pragma once
#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "../autograd/grad_mode.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../io/key_map.hpp"
#include "../io/safetensors.hpp"
#include "../models/video_resnet.hpp"
#include "../ops/pool.hpp"
#include "../train/progress.hpp"
#include "clip_reader.hpp"

namespace mscl::eval {

/// Where train/pretrain.hpp checkpoints keep the RGB query backbone.
inline const std::string k_pretrain_rgb_backbone_prefix = "model.rgb_q.backbone.";

/// The R3D backbone evaluated here: torchvision's VideoResNet with 3×3×3 convolutions; depth and
/// width are run-time options (r3d_18_t with `stage_depths`), so one type covers R3D-10/18/34.
using backbone = models::r3d_18_t<float>;

/// Architecture of an R3D backbone: blocks per stage and base width.
struct backbone_spec {
  std::array<int, 4> stage_depths{2, 2, 2, 2};
  index_t width = 64;

  /// Depth 10, 18 or 34 (the usual names) at `width`.
  static backbone_spec of_depth(int depth, index_t width = 64) { return {backbone::depths_for(depth), width}; }
  /// "r3d_18 (width 64)", or the stage depths when they have no usual name.
  std::string name() const {
    std::string n;
    for (int d : {10, 18, 34})
      if (backbone::depths_for(d) == stage_depths) n = "r3d_" + std::to_string(d);
    if (n.empty())
      n = "r3d[" + std::to_string(stage_depths[0]) + "," + std::to_string(stage_depths[1]) + "," +
          std::to_string(stage_depths[2]) + "," + std::to_string(stage_depths[3]) + "]";
    return n + " (width " + std::to_string(width) + ")";
  }
  bool operator==(const backbone_spec& o) const { return stage_depths == o.stage_depths && width == o.width; }
};

/// A backbone without classifier (features are width·8-dimensional), initialised as torchvision
/// does from `seed`: the "random init" floor of an evaluation.
inline std::shared_ptr<backbone> make_backbone(const backbone_spec& s, std::uint64_t seed = 0) {
  return std::make_shared<backbone>(backbone::options{0, s.width, 3, seed, s.stage_depths});
}

/// If `path` is a directory holding latest.json (a pretraining output directory), the checkpoint
/// file it names; otherwise `path` itself.
inline std::string resolve_checkpoint_path(const std::string& path) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(path)) return path;
  const std::string pointer = (fs::path(path) / "latest.json").string();
  std::ifstream in(pointer);
  MSCL_CHECK(in.good(), io_error, "eval::resolve_checkpoint_path: '" << path << "' is a directory without latest.json");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    MSCL_CHECK(false, io_error, "eval::resolve_checkpoint_path: " << pointer << " is not valid JSON: " << e.what());
  }
  MSCL_CHECK(j.contains("file") && j["file"].is_string(), io_error,
             "eval::resolve_checkpoint_path: " << pointer << " has no \"file\" entry");
  return (fs::path(path) / j["file"].get<std::string>()).string();
}

/// Reads the architecture stored under `prefix` (width from stem.0.weight, blocks per stage from
/// the layerS.B.conv1 entries). Throws io_error naming the file when the prefix holds no R3D.
inline backbone_spec infer_backbone_spec(const io::safetensors_file& f, const std::string& prefix,
                                         const std::string& source) {
  const std::string stem = prefix + "stem.0.weight";
  MSCL_CHECK(f.contains(stem), io_error,
             "eval::infer_backbone_spec: '" << source << "' has no '" << stem
                                            << "' (is the prefix right? pretraining checkpoints use '"
                                            << k_pretrain_rgb_backbone_prefix << "', torchvision files '')");
  const auto& shape = f.info(stem).shape;
  MSCL_CHECK(shape.size() == 5 && shape[1] == 3, io_error,
             "eval::infer_backbone_spec: '" << stem << "' in '" << source << "' has shape " << to_string(shape)
                                            << ", not an RGB 3-D stem (out, 3, kt, kh, kw)");
  backbone_spec s;
  s.width = shape[0];
  for (int st = 0; st < 4; ++st) {
    int b = 0;
    while (f.contains(prefix + "layer" + std::to_string(st + 1) + "." + std::to_string(b) + ".conv1.0.weight")) ++b;
    MSCL_CHECK(b > 0, io_error,
               "eval::infer_backbone_spec: '" << source << "' has no block under '" << prefix << "layer" << st + 1 << ".'");
    s.stage_depths[std::size_t(st)] = b;
  }
  return s;
}

/// What a backbone load did.
struct backbone_load_report {
  std::string file;                 ///< the safetensors file read
  std::size_t loaded = 0;           ///< model entries that received a value
  std::size_t ignored = 0;          ///< file tensors outside the mapped set (other modules, optimiser, ...)
};

/// Loads every parameter and buffer of `net` from `path` through `keys` (file name → model name;
/// unmapped = dropped). Strict: a model entry without a file tensor, a mapped file tensor the
/// model lacks, or a shape mismatch is an error naming the entry and the file.
template <class Net>
backbone_load_report load_backbone_weights(Net& net, const std::string& path, const io::key_map& keys) {
  const std::string file_path = resolve_checkpoint_path(path);
  const auto f = io::safetensors_file::open(file_path);
  const auto names = f.names();
  const std::map<std::string, std::string> by_model = keys.apply_all(names);  // model name -> file name
  backbone_load_report rep;
  rep.file = file_path;
  std::set<std::string> used;
  for (auto& e : net.state_dict()) {
    auto it = by_model.find(e.name);
    MSCL_CHECK(it != by_model.end(), io_error,
               "eval::load_backbone_weights: '" << file_path << "' has no tensor for backbone entry '" << e.name
                                                << "' (shape " << to_string(e.value.shape()) << ", key map '"
                                                << keys.to_string() << "'); wrong prefix or architecture?");
    const auto& info = f.info(it->second);
    MSCL_CHECK(info.shape == e.value.shape(), shape_error,
               "eval::load_backbone_weights: '" << file_path << "': tensor '" << it->second << "' has shape "
                                                << to_string(info.shape) << " but backbone entry '" << e.name
                                                << "' expects " << to_string(e.value.shape())
                                                << " (depth/width mismatch?)");
    if (info.dtype == io::safetensors_dtype::I64) {
      const auto v = f.get_int64(it->second);
      for (std::size_t i = 0; i < v.size(); ++i) e.value.data()[i] = float(v[i]);
    } else {
      e.value.copy_from(f.template get<float>(it->second));
    }
    used.insert(e.name);
  }
  for (const auto& [model_name, file_name] : by_model)
    MSCL_CHECK(used.count(model_name), io_error,
               "eval::load_backbone_weights: '" << file_path << "' holds '" << file_name << "' (as '" << model_name
                                                << "') which the backbone does not have (depth/width mismatch?)");
  rep.loaded = used.size();
  rep.ignored = names.size() - by_model.size();
  return rep;
}

/// Loads the backbone stored under `prefix` of a checkpoint (file or pretraining output directory),
/// ignoring everything outside it. The default prefix is the pretraining RGB query backbone.
template <class Net>
backbone_load_report load_backbone_from_checkpoint(Net& net, const std::string& path,
                                                   const std::string& prefix = k_pretrain_rgb_backbone_prefix) {
  MSCL_CHECK(!prefix.empty(), config_error,
             "eval::load_backbone_from_checkpoint: empty prefix; use load_backbone_from_torchvision for top-level names");
  return load_backbone_weights(net, path, io::key_map().rename(prefix, "").drop_rest());
}

/// Loads torchvision-named weights (r3d_18 state dict as safetensors); a classifier (fc.*) is
/// ignored. `extra` rules are applied first (e.g. "backbone.=" for MMAction2 exports).
template <class Net>
backbone_load_report load_backbone_from_torchvision(Net& net, const std::string& path, const io::key_map& extra = {}) {
  io::key_map keys = extra;
  keys.drop("fc.");
  return load_backbone_weights(net, path, keys);
}

// ------------------------------------------------------------------ features

namespace detail {
/// Restores a module's train/eval mode on scope exit.
template <class Net>
struct eval_mode_guard {
  Net& net;
  bool was_training;
  explicit eval_mode_guard(Net& n) : net(n), was_training(n.is_training()) { net.eval(); }
  ~eval_mode_guard() { net.train(was_training); }
};
}  // namespace detail

/// Pooled features (n × D) of clips n×3×T×h×w in eval mode under no_grad, `batch` clips per forward.
template <class Net>
tensor<float> clip_features(Net& net, const tensor<float>& clips, index_t batch = 32) {
  MSCL_CHECK(clips.dim() == 5 && clips.shape()[1] == 3 && clips.shape()[0] > 0, shape_error,
             "eval::clip_features: expected clips (n, 3, t, h, w), got " << to_string(clips.shape()));
  MSCL_CHECK(batch > 0, value_error, "eval::clip_features: batch must be positive, got " << batch);
  detail::eval_mode_guard<Net> mode(net);
  no_grad guard;
  const index_t n = clips.shape()[0];
  std::vector<tensor<float>> parts;
  for (index_t s = 0; s < n; s += batch)
    parts.push_back(net.features(ops::slice(clips, 0, s, std::min(s + batch, n)).clone()));
  return parts.size() == 1 ? parts[0] : ops::cat(parts, 0);
}

/// One video's feature: the mean over its views (views × 3 × T × h × w) of the pooled features; 1 × D.
template <class Net>
tensor<float> video_feature(Net& net, const tensor<float>& views, index_t batch = 32) {
  const tensor<float> f = clip_features(net, views, batch);
  const index_t v = f.shape()[0], d = f.shape()[1];
  tensor<float> out = tensor<float>::zeros({1, d});
  for (index_t i = 0; i < v; ++i)
    for (index_t j = 0; j < d; ++j) out.data()[j] += f.data()[i * d + j];
  for (index_t j = 0; j < d; ++j) out.data()[j] /= float(v);
  return out;
}

/// Options of a feature-extraction pass over many videos.
struct extract_options {
  index_t batch_clips = 32;     ///< views per backbone forward (views of several videos are batched)
  bool progress = true;         ///< progress bar on stderr
  std::string label = "features";
};

/// Features of `num_videos` videos (N × D, row i = video i). `load(i, out)` writes video i's
/// views (views_per_video × view_shape floats) to `out`; it is called in parallel (OpenMP) for the
/// videos of one batch, so it must be thread-safe. Every video is processed (no drop_last).
template <class Net>
tensor<float> extract_video_features(Net& net, index_t num_videos, index_t views_per_video, const shape_t& view_shape,
                                     const std::function<void(index_t, float*)>& load, const extract_options& o = {}) {
  MSCL_CHECK(num_videos > 0 && views_per_video > 0, value_error,
             "eval::extract_video_features: need videos and views, got " << num_videos << " and " << views_per_video);
  MSCL_CHECK(view_shape.size() == 4 && view_shape[0] == 3, shape_error,
             "eval::extract_video_features: view shape must be (3, T, h, w), got " << to_string(view_shape));
  MSCL_CHECK(o.batch_clips > 0, value_error, "eval::extract_video_features: batch_clips must be positive");
  detail::eval_mode_guard<Net> mode(net);
  no_grad guard;
  const index_t per_batch = std::max<index_t>(1, o.batch_clips / views_per_video);  // videos per forward
  const index_t view_numel = view_shape[0] * view_shape[1] * view_shape[2] * view_shape[3];
  tensor<float> out;
  index_t dim = 0;
  std::unique_ptr<train::progress_bar> bar;
  if (o.progress) bar = std::make_unique<train::progress_bar>(long(num_videos), o.label, 100);
  for (index_t first = 0; first < num_videos; first += per_batch) {
    const index_t nv = std::min(per_batch, num_videos - first);
    tensor<float> clips = tensor<float>::empty({nv * views_per_video, view_shape[0], view_shape[1], view_shape[2], view_shape[3]});
    float* base = clips.data();
    std::vector<std::string> errors(static_cast<std::size_t>(nv));
#pragma omp parallel for schedule(dynamic, 1)
    for (index_t k = 0; k < nv; ++k) {
      try {
        load(first + k, base + k * views_per_video * view_numel);
      } catch (const std::exception& e) {
        errors[std::size_t(k)] = e.what();
      }
    }
    for (index_t k = 0; k < nv; ++k)  // rethrow the first failure outside the parallel region
      MSCL_CHECK(errors[std::size_t(k)].empty(), io_error,
                 "eval::extract_video_features: video " << first + k << ": " << errors[std::size_t(k)]);
    const tensor<float> f = net.features(clips);
    if (dim == 0) {
      dim = f.shape()[1];
      out = tensor<float>::zeros({num_videos, dim});
    }
    for (index_t k = 0; k < nv; ++k) {
      float* row = out.data() + (first + k) * dim;
      for (index_t v = 0; v < views_per_video; ++v) {
        const float* fr = f.data() + (k * views_per_video + v) * dim;
        for (index_t j = 0; j < dim; ++j) row[j] += fr[j];
      }
      for (index_t j = 0; j < dim; ++j) row[j] /= float(views_per_video);
    }
    if (bar) bar->update(long(first + nv));
  }
  return out;
}

/// Features of in-memory videos under the test protocol `clips` (frame sizes must agree).
template <class Net>
tensor<float> extract_video_features(Net& net, const std::vector<data::frame_sequence>& videos,
                                     const test_clip_options& clips, const extract_options& o = {}) {
  MSCL_CHECK(!videos.empty() && !videos.front().empty(), value_error, "eval::extract_video_features: no videos");
  const auto [h, w] = view_size(videos.front().front().height, videos.front().front().width, clips);
  return extract_video_features(
      net, index_t(videos.size()), clips.views(), shape_t{3, clips.clip_len, h, w},
      [&](index_t i, float* out) {
        const auto& v = videos[std::size_t(i)];
        MSCL_CHECK(!v.empty() && view_size(v.front().height, v.front().width, clips) == std::make_pair(h, w), shape_error,
                   "video " << i << " is empty or its views differ in size from video 0's " << h << "x" << w);
        load_test_clips_into(out, index_t(v.size()), [&](index_t f) { return v[std::size_t(f)]; }, clips,
                             "video " + std::to_string(i));
      },
      o);
}

#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG
/// Features of the videos of an annotation list under a rawframes root (row i = entries[i]).
template <class Net>
tensor<float> extract_rawframes_features(Net& net, const std::string& root, const std::vector<data::rawframe_entry>& entries,
                                         const test_clip_options& clips, const extract_options& o = {}) {
  MSCL_CHECK(!entries.empty(), value_error, "eval::extract_rawframes_features: empty annotation list for " << root);
  clips.validate("eval::extract_rawframes_features");
  const auto first_dir = data::rawframes_dir::probe((std::filesystem::path(root) / entries[0].frame_dir).string());
  MSCL_CHECK(first_dir.rgb_count > entries[0].offset, io_error,
             "eval::extract_rawframes_features: '" << first_dir.directory << "' holds no RGB frames");
  const auto first = first_dir.read_rgb(entries[0].offset);
  const auto [h, w] = view_size(first.height, first.width, clips);
  const shape_t vs{3, clips.clip_len, h, w};
  return extract_video_features(
      net, index_t(entries.size()), clips.views(), vs,
      [&](index_t i, float* out) {
        const auto& e = entries[std::size_t(i)];
        const std::string dir = (std::filesystem::path(root) / e.frame_dir).string();
        const auto rd = data::rawframes_dir::probe(dir);
        MSCL_CHECK(e.total_frames >= 1 && e.offset + e.total_frames <= rd.rgb_count, io_error,
                   "the list says '" << e.frame_dir << "' has " << e.total_frames << " frames from " << e.offset
                                     << " (line " << e.line << ") but '" << dir << "' holds " << rd.rgb_count);
        const auto f0 = rd.read_rgb(e.offset);
        MSCL_CHECK(view_size(f0.height, f0.width, clips) == std::make_pair(h, w), shape_error,
                   "'" << dir << "' frames are " << f0.height << "x" << f0.width << ", giving views of another size than "
                       << h << "x" << w << " (set a crop size)");
        load_test_clips_into(out, e.total_frames, [&](index_t k) { return k == 0 ? f0 : rd.read_rgb(e.offset + k); },
                             clips, "'" + dir + "'");
      },
      o);
}
#endif

}  // namespace mscl::eval
