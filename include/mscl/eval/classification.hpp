/// \file classification.hpp
/// \brief Supervised video classification on top of a (pretrained) backbone (ALGORITHM.md §9.1):
///        the classifier (R3D backbone → global average pool → dropout 0.5 → new fc, MMAction2
///        names), loading a pretrained backbone from the checkpoint formats in circulation by
///        prefix mapping, the multi-clip × multi-crop score averaging of the test protocol
///        (ECOSYSTEM.md §2.2), and the metrics (top-1, top-5, per-class and mean-class accuracy,
///        confusion matrix).
///
/// State-dict names are MMAction2's fine-tuned recogniser names: `backbone.<torchvision r3d
/// names>` and `cls_head.fc_cls.{weight,bias}`, so a fine-tuned model written by
/// `save_classifier` reads like an MMAction2 checkpoint converted to safetensors.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../io/key_map.hpp"
#include "../io/safetensors.hpp"
#include "../io/state_dict.hpp"
#include "../models/video_resnet.hpp"
#include "../nn/layers.hpp"
#include "../ops/dropout.hpp"
#include "../ops/pool.hpp"
#include "../ops/shape_ops.hpp"

namespace mscl::eval {

// ------------------------------------------------------------------------------- classifier

struct classifier_options {
  index_t num_classes = 101;
  int depth = 18;          ///< 10, 18 or 34 (basic-block R3D)
  index_t width = 64;      ///< base width (64 = torchvision r3d_18)
  double dropout = 0.5;    ///< on the pooled feature, training only (§9.1)
  double init_std = 0.01;  ///< fc weight ~ N(0, init_std), bias 0 (§9.1)
  std::uint64_t seed = 0;  ///< backbone and fc initialisation, dropout masks
};

/// MMAction2 `I3DHead`-style head: child `fc_cls` (a Linear).
template <class T, class B = cpu>
class classification_head : public nn::module<T, B> {
 public:
  classification_head(index_t in_features, index_t num_classes, double init_std, generator& gen) {
    fc_cls = this->register_module("fc_cls", std::make_shared<nn::linear<T, B>>(in_features, num_classes, gen));
    nn::init::normal_(fc_cls->weight, 0.0, init_std, gen);
    fc_cls->bias.fill_(T(0));
  }
  std::shared_ptr<nn::linear<T, B>> fc_cls;
};

/// R3D backbone (no fc) + dropout + linear classifier. `forward` returns logits n × classes.
/// Dropout masks come from (dropout_seed, dropout_stream): a training loop sets both (its seed, the
/// iteration number) so that a resumed run draws the same masks; otherwise dropout_seed is the
/// init seed and each training-mode forward advances dropout_stream by one.
template <class T = float, class B = cpu>
class video_classifier : public nn::module<T, B> {
 public:
  using tensor_t = tensor<T, B>;
  using backbone_t = models::r3d_18_t<T, B>;

  explicit video_classifier(const classifier_options& o) : dropout_seed(o.seed), options_(o) {
    MSCL_CHECK(o.num_classes > 0, value_error, "video_classifier: num_classes must be positive, got " << o.num_classes);
    MSCL_CHECK(o.dropout >= 0 && o.dropout < 1, value_error, "video_classifier: dropout must be in [0, 1), got " << o.dropout);
    backbone = this->register_module(
        "backbone", std::make_shared<backbone_t>(typename backbone_t::options{0, o.width, 3, o.seed, backbone_t::depths_for(o.depth)}));
    generator gen(o.seed ^ 0x5f3759dfULL);
    cls_head = this->register_module("cls_head", std::make_shared<classification_head<T, B>>(
                                                     backbone->feature_dim(), o.num_classes, o.init_std, gen));
  }

  /// Logits of clips x (n×3×t×h×w); fills `taps` (layer4 = the Grad-CAM layer) when given.
  tensor_t forward(const tensor_t& x, models::video_resnet_taps<T, B>* taps = nullptr) {
    return head(backbone->forward_backbone(x, taps));
  }
  /// The part after the backbone: global average pool → dropout → fc (Grad-CAM differentiates it).
  tensor_t head(const tensor_t& layer4) {
    tensor_t f = ops::global_avg_pool(layer4);
    if (this->is_training() && options_.dropout > 0) f = ops::dropout(f, options_.dropout, true, dropout_seed, dropout_stream++);
    return cls_head->fc_cls->forward(f);
  }

  const classifier_options& options() const { return options_; }
  index_t num_classes() const { return options_.num_classes; }

  std::shared_ptr<backbone_t> backbone;
  std::shared_ptr<classification_head<T, B>> cls_head;
  std::uint64_t dropout_seed = 0, dropout_stream = 0;

 private:
  classifier_options options_;
};

// ------------------------------------------------------------------------- weight transfer

/// Where the backbone of a state dict lives, and under which naming.
struct backbone_prefix {
  std::string prefix;  ///< prepended to torchvision names, e.g. "model.rgb_q.backbone."
  std::string format;  ///< human-readable origin
};

/// Known layouts, in the order they are preferred when a file holds several backbones (an MSCL
/// pretraining checkpoint holds the query and the key encoder: the query one is transferred,
/// §9.1).
inline const std::vector<backbone_prefix>& known_backbone_prefixes() {
  static const std::vector<backbone_prefix> k{
      {"model.rgb_q.backbone.", "mscl-pretrain checkpoint (RGB query encoder)"},
      {"model.backbone.", "mscl-finetune checkpoint"},
      {"recognizer.encoder_q.backbone.", "MSCL release (recognizer.encoder_q.backbone)"},
      {"recognizer.encoder_q.", "MSCL release (recognizer.encoder_q)"},
      {"backbone.", "MMAction2 recogniser / mscl fine-tuned model"},
      {"", "torchvision r3d"},
  };
  return k;
}

/// Finds the backbone prefix among `names` by the key every R3D has (`stem.0.weight`): a known
/// prefix in preference order, else the only candidate. Throws io_error listing the candidates
/// when there is none or the choice is ambiguous.
inline backbone_prefix detect_backbone_prefix(const std::vector<std::string>& names, const std::string& source) {
  const std::string anchor = "stem.0.weight";
  std::vector<std::string> found;
  for (const auto& n : names)
    if (n.size() >= anchor.size() && n.compare(n.size() - anchor.size(), anchor.size(), anchor) == 0 &&
        (n.size() == anchor.size() || n[n.size() - anchor.size() - 1] == '.'))
      found.push_back(n.substr(0, n.size() - anchor.size()));
  for (const auto& k : known_backbone_prefixes())
    if (std::find(found.begin(), found.end(), k.prefix) != found.end()) return k;
  if (found.size() == 1) return {found.front(), "prefix '" + found.front() + "'"};
  std::string list;
  for (const auto& f : found) list += (list.empty() ? "'" : ", '") + f + "'";
  MSCL_CHECK(false, io_error,
             "detect_backbone_prefix: " << source << ": "
                                        << (found.empty() ? std::string("no tensor named '...stem.0.weight', so no R3D backbone was found")
                                                          : "several backbones (" + list + "); pass a key map")
                                        << " (" << names.size() << " tensors)");
  return {};
}

/// Which entries a transfer loaded.
struct transfer_report {
  std::string path, format, key_map;
  index_t loaded = 0;           ///< model entries that received a value
  index_t file_unused = 0;      ///< file tensors the map dropped or the model does not have
};

namespace detail {
/// Loads `m` strictly (every entry must be found, shapes must match) from `file` through a
/// model-name → file-name lookup; any stored dtype is converted (F32 num_batches_tracked in
/// mscl checkpoints, I64 in torch files).
template <class T, class B>
index_t load_module_from(nn::module<T, B>& m, const io::safetensors_file& file,
                         const std::map<std::string, std::string>& model_to_file, const std::string& source) {
  index_t n = 0;
  m.load_state([&](const std::string& name) {
    auto it = model_to_file.find(name);
    if (it == model_to_file.end()) return tensor<T, B>();
    ++n;
    return on_backend<B>(file.template get<T>(it->second));
  }, true, source);
  return n;
}
}  // namespace detail

/// Loads the classifier's backbone from a safetensors file. `key_map_text` empty: the backbone
/// prefix is detected (detect_backbone_prefix) and everything else is ignored; otherwise the map
/// (io/key_map.hpp syntax) must turn file names into torchvision backbone names, and unmapped
/// leftovers are ignored. Every backbone entry must be present (io_error naming the missing
/// entry and the prefix looked under); shapes must match (shape_error). The fc stays as
/// initialised.
template <class T, class B>
transfer_report load_pretrained_backbone(video_classifier<T, B>& clf, const std::string& path,
                                         const std::string& key_map_text = "") {
  const auto file = io::safetensors_file::open(path);
  const auto names = file.names();
  transfer_report r;
  r.path = path;
  io::key_map km;
  if (key_map_text.empty()) {
    const backbone_prefix p = detect_backbone_prefix(names, path);
    r.format = p.format;
    if (!p.prefix.empty()) km.rename(p.prefix, "").drop_rest();
    else km.drop("fc.");  // torchvision: the Kinetics classifier is not part of the backbone
  } else {
    km = io::key_map::parse(key_map_text);
    r.format = "key map";
  }
  r.key_map = km.to_string();
  const auto mapped = km.apply_all(names);  // model name -> file name
  r.loaded = detail::load_module_from(*clf.backbone, file, mapped,
                                      "'" + path + "' (" + r.format + ", key map '" + r.key_map + "')");
  r.file_unused = index_t(names.size()) - r.loaded;
  return r;
}

/// Loads a whole classifier (backbone and fc) written by `save_classifier`, an mscl-finetune
/// checkpoint (prefix "model."), an MMAction2 recogniser (`backbone.` + `cls_head.fc_cls.`), or a
/// torchvision r3d with its `fc` — detected from where `fc_cls.weight` / `fc.weight` sits.
template <class T, class B>
transfer_report load_classifier(video_classifier<T, B>& clf, const std::string& path) {
  const auto file = io::safetensors_file::open(path);
  const auto names = file.names();
  auto has = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) != names.end(); };
  transfer_report r;
  r.path = path;
  io::key_map km;
  if (has("model.cls_head.fc_cls.weight")) {
    km.rename("model.", "").drop_rest();
    r.format = "mscl-finetune checkpoint";
  } else if (has("cls_head.fc_cls.weight")) {
    r.format = "MMAction2 recogniser / mscl fine-tuned model";
  } else if (has("fc.weight") && has("stem.0.weight")) {
    km.rename("fc.", "cls_head.fc_cls.").prefix_rest("backbone.");
    r.format = "torchvision r3d with fc";
  } else {
    MSCL_CHECK(false, io_error,
               "load_classifier: '" << path << "' holds no classifier ('cls_head.fc_cls.weight', "
                                       "'model.cls_head.fc_cls.weight' or torchvision 'fc.weight'); to start from a "
                                       "pretrained backbone use load_pretrained_backbone");
  }
  r.key_map = km.to_string();
  const auto mapped = km.apply_all(names);
  r.loaded = detail::load_module_from(clf, file, mapped, "'" + path + "' (" + r.format + ")");
  r.file_unused = index_t(names.size()) - r.loaded;
  return r;
}

/// Writes the classifier (MMAction2 names, num_batches_tracked as I64) atomically.
template <class T, class B>
void save_classifier(const video_classifier<T, B>& clf, const std::string& path,
                     std::map<std::string, std::string> metadata = {}) {
  const auto& o = clf.options();
  metadata.emplace("arch", "r3d_" + std::to_string(o.depth));
  metadata.emplace("width", std::to_string(o.width));
  metadata.emplace("num_classes", std::to_string(o.num_classes));
  metadata.emplace("layout", "NCTHW");
  io::save_state_dict(clf, path, metadata);
}

// ------------------------------------------------------------------------ score averaging

/// How the views of one video are combined (MMAction2 `average_clips`).
enum class score_average { prob, score };

inline score_average parse_score_average(const std::string& s) {
  MSCL_CHECK(s == "prob" || s == "score", config_error, "score average must be \"prob\" or \"score\", got \"" << s << "\"");
  return s == "prob" ? score_average::prob : score_average::score;
}
inline const char* score_average_name(score_average a) { return a == score_average::prob ? "prob" : "score"; }

/// A rows × classes matrix of scores (row-major), one row per video.
struct score_table {
  index_t rows = 0, classes = 0;
  std::vector<double> values;
  double at(index_t r, index_t c) const { return values[std::size_t(r * classes + c)]; }
  const double* row(index_t r) const { return values.data() + r * classes; }
};

/// Averages the logits of `views` consecutive rows per video (rows v·views … v·views+views−1
/// belong to video v): `prob` = mean of the softmax of each row (MSCL's setting), `score` = mean
/// of the raw logits. logits: (videos·views) × classes.
template <class T, class B>
score_table average_view_scores(const tensor<T, B>& logits, index_t views, score_average how) {
  MSCL_CHECK(logits.defined() && logits.dim() == 2, shape_error,
             "average_view_scores: logits must be (videos·views) × classes, got "
                 << (logits.defined() ? mscl::to_string(logits.shape()) : std::string("undefined")));
  MSCL_CHECK(views > 0 && logits.size(0) % views == 0, shape_error,
             "average_view_scores: " << logits.size(0) << " rows are not a multiple of " << views << " views per video");
  const tensor<T, cpu> l = on_backend<cpu>(logits.is_contiguous() ? logits : logits.clone());  // read on the host
  score_table out;
  out.rows = logits.size(0) / views;
  out.classes = logits.size(1);
  out.values.assign(std::size_t(out.rows * out.classes), 0.0);
  std::vector<double> p(std::size_t(out.classes));
  for (index_t v = 0; v < out.rows; ++v) {
    double* o = out.values.data() + v * out.classes;
    for (index_t k = 0; k < views; ++k) {
      const T* r = l.data() + (v * views + k) * out.classes;
      if (how == score_average::prob) {
        double mx = -INFINITY;
        for (index_t c = 0; c < out.classes; ++c) mx = std::max(mx, double(r[c]));
        double s = 0;
        for (index_t c = 0; c < out.classes; ++c) s += (p[std::size_t(c)] = std::exp(double(r[c]) - mx));
        for (index_t c = 0; c < out.classes; ++c) o[c] += p[std::size_t(c)] / s;
      } else {
        for (index_t c = 0; c < out.classes; ++c) o[c] += double(r[c]);
      }
    }
    for (index_t c = 0; c < out.classes; ++c) o[c] /= double(views);
  }
  return out;
}

// --------------------------------------------------------------------------------- metrics

/// Top-k, per-class and mean-class accuracy and the confusion matrix of a score table.
struct classification_metrics {
  index_t count = 0, num_classes = 0;
  double top1 = 0, top5 = 0;
  index_t top5_k = 5;                       ///< min(5, classes)
  std::vector<double> per_class_accuracy;   ///< NaN for a class without test videos
  std::vector<index_t> per_class_count;
  double mean_class_accuracy = 0;           ///< mean over classes that have test videos
  std::vector<index_t> confusion;           ///< classes × classes, [true][predicted], row-major
  std::vector<index_t> predictions;         ///< argmax per row (first maximum on ties)

  index_t confusion_at(index_t truth, index_t predicted) const {
    return confusion[std::size_t(truth * num_classes + predicted)];
  }

  nlohmann::json to_json(const std::vector<std::string>& class_names = {}) const {
    nlohmann::json pc = nlohmann::json::array();
    for (index_t c = 0; c < num_classes; ++c) {
      nlohmann::json e = {{"label", c}, {"count", per_class_count[std::size_t(c)]}};
      if (std::size_t(c) < class_names.size()) e["name"] = class_names[std::size_t(c)];
      const double a = per_class_accuracy[std::size_t(c)];
      e["accuracy"] = std::isnan(a) ? nlohmann::json(nullptr) : nlohmann::json(a);
      pc.push_back(e);
    }
    nlohmann::json conf = nlohmann::json::array();
    for (index_t t = 0; t < num_classes; ++t) {
      nlohmann::json row = nlohmann::json::array();
      for (index_t p = 0; p < num_classes; ++p) row.push_back(confusion_at(t, p));
      conf.push_back(row);
    }
    return {{"videos", count}, {"top1", top1}, {"top" + std::to_string(top5_k), top5}, {"mean_class_accuracy", mean_class_accuracy},
            {"per_class", pc}, {"confusion", conf}};
  }
};

/// Metrics of `scores` (one row per video) against 0-based `labels`. A row's rank order is by
/// score, ties broken by the lower class index (so top-1 = the first maximum, as np.argmax).
inline classification_metrics compute_metrics(const score_table& scores, const std::vector<index_t>& labels) {
  MSCL_CHECK(index_t(labels.size()) == scores.rows, shape_error,
             "compute_metrics: " << labels.size() << " labels for " << scores.rows << " score rows");
  MSCL_CHECK(scores.classes > 0 && index_t(scores.values.size()) == scores.rows * scores.classes, shape_error,
             "compute_metrics: score table of " << scores.rows << "×" << scores.classes << " holds " << scores.values.size()
                                                << " values");
  classification_metrics m;
  const index_t C = scores.classes;
  m.count = scores.rows;
  m.num_classes = C;
  m.top5_k = std::min<index_t>(5, C);
  m.confusion.assign(std::size_t(C * C), 0);
  m.per_class_count.assign(std::size_t(C), 0);
  std::vector<index_t> hits(std::size_t(C), 0);
  index_t top1 = 0, top5 = 0;
  for (index_t i = 0; i < scores.rows; ++i) {
    const index_t y = labels[std::size_t(i)];
    MSCL_CHECK(y >= 0 && y < C, value_error, "compute_metrics: label " << y << " of row " << i << " is outside [0, " << C << ")");
    const double* r = scores.row(i);
    const index_t pred = index_t(std::max_element(r, r + C) - r);
    index_t rank = 0;  // classes ordered before the true one
    for (index_t c = 0; c < C; ++c) rank += (r[c] > r[y]) || (r[c] == r[y] && c < y);
    m.predictions.push_back(pred);
    m.confusion[std::size_t(y * C + pred)]++;
    m.per_class_count[std::size_t(y)]++;
    hits[std::size_t(y)] += pred == y;
    top1 += pred == y;
    top5 += rank < m.top5_k;
  }
  m.top1 = m.count ? double(top1) / double(m.count) : 0.0;
  m.top5 = m.count ? double(top5) / double(m.count) : 0.0;
  double sum = 0;
  index_t present = 0;
  for (index_t c = 0; c < C; ++c) {
    const index_t n = m.per_class_count[std::size_t(c)];
    m.per_class_accuracy.push_back(n ? double(hits[std::size_t(c)]) / double(n) : std::nan(""));
    if (n) {
      sum += m.per_class_accuracy.back();
      ++present;
    }
  }
  m.mean_class_accuracy = present ? sum / double(present) : 0.0;
  return m;
}

// ----------------------------------------------------------------------------- evaluation

/// The result of running the test protocol over a dataset.
struct evaluation_result {
  score_table scores;  ///< per video, averaged over its views
  std::vector<index_t> labels;
  classification_metrics metrics;
  double seconds = 0;
};

/// Evaluates `clf` (put in eval mode for the duration) over a view source: any type with
/// `index_t size() const`, `index_t label(index_t) const`, `index_t views_per_video() const` and
/// `tensor<T> views(index_t video) const` returning views_per_video × 3 × T × H × W (all videos the
/// same view shape). `videos_per_batch` videos are read (in parallel when `parallel_read`) and
/// classified per forward pass; `on_batch(done, total)` reports progress.
template <class T, class B, class Source, class Progress>
evaluation_result evaluate(video_classifier<T, B>& clf, const Source& source, index_t videos_per_batch, score_average how,
                           Progress&& on_batch, bool parallel_read = true) {
  MSCL_CHECK(videos_per_batch > 0, value_error, "evaluate: videos_per_batch must be positive, got " << videos_per_batch);
  const index_t n = source.size(), V = source.views_per_video();
  MSCL_CHECK(n > 0 && V > 0, value_error, "evaluate: the source has " << n << " videos with " << V << " views each");
  const auto t0 = std::chrono::steady_clock::now();
  const bool was_training = clf.is_training();
  clf.eval();
  no_grad guard;
  evaluation_result res;
  res.scores.rows = n;
  res.scores.classes = clf.num_classes();
  res.scores.values.reserve(std::size_t(n * clf.num_classes()));
  for (index_t b = 0; b < n; b += videos_per_batch) {
    const index_t e = std::min(n, b + videos_per_batch);
    std::vector<tensor<T, cpu>> clips(std::size_t(e - b));  // read and decoded on the host
    std::vector<std::string> errors(clips.size());
#pragma omp parallel for schedule(dynamic) if (parallel_read)
    for (index_t i = b; i < e; ++i) {
      try {
        clips[std::size_t(i - b)] = source.views(i);
      } catch (const std::exception& ex) {
        errors[std::size_t(i - b)] = ex.what();
      }
    }
    for (const auto& err : errors) MSCL_CHECK(err.empty(), io_error, "evaluate: " << err);
    for (std::size_t k = 0; k < clips.size(); ++k)
      MSCL_CHECK(clips[k].dim() == 5 && clips[k].size(0) == V, shape_error,
                 "evaluate: video " << b + index_t(k) << " gave views of shape " << mscl::to_string(clips[k].shape()) << ", expected "
                                    << V << "×3×T×H×W");
    const tensor<T, B> x = on_backend<B>(clips.size() == 1 ? clips.front() : ops::cat(clips, 0));
    const score_table part = average_view_scores(clf.forward(x), V, how);
    res.scores.values.insert(res.scores.values.end(), part.values.begin(), part.values.end());
    for (index_t i = b; i < e; ++i) res.labels.push_back(source.label(i));
    on_batch(e, n);
  }
  clf.train(was_training);
  res.metrics = compute_metrics(res.scores, res.labels);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace mscl::eval
