/// \file config.hpp
/// \brief JSON configuration of a pretraining run: every key of `ssl::mscl_options`,
///        `train::pretrain_options` and the data source, read from a file and overridable from
///        the command line (`--set key=value`, value parsed as JSON when it parses, else as a
///        string). Unknown keys are an error naming the key; a wrong type names key and type.
#pragma once
#include <fstream>
#include <functional>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "../ssl/mscl_objective.hpp"
#include "pretrain.hpp"

namespace mscl::train {

using json = nlohmann::json;

/// The defaults of every key (the paper's setting for the objective; a small run for the rest).
inline json default_pretrain_config() {
  const ssl::mscl_options m;
  const pretrain_options p;
  return json{
      // objective
      {"flow_moco", m.flow_moco}, {"cross_modal", m.cross_modal}, {"lmcl", m.lmcl}, {"fra", m.fra},
      {"rgb_width", m.rgb_width}, {"rgb_depth", m.rgb_depth}, {"flow_width", m.flow_width}, {"neck_channels", m.neck_channels},
      {"neck_pconvs", m.neck_pconvs},
      {"embedding_dim", m.embedding_dim}, {"queue_size", m.queue_size}, {"temperature", m.temperature},
      {"queue_decay", m.queue_decay}, {"momentum_base", m.momentum_base}, {"momentum_samples", m.momentum_samples},
      {"fixed_momentum", m.fixed_momentum}, {"fixed_momentum_value", m.fixed_momentum_value},
      {"w_rgb", m.w_rgb}, {"w_flow", m.w_flow}, {"w_flow_aug", m.w_flow_aug}, {"w_mx", m.w_mx}, {"w_mx_r", m.w_mx_r},
      {"w_mx_aug", m.w_mx_aug}, {"w_mx_r_aug", m.w_mx_r_aug}, {"w_pos", m.w_pos},
      {"motion_warmup_samples", m.motion_warmup_samples},
      {"w_distill", m.w_distill}, {"distill_fade_samples", m.distill_fade_samples},
      {"official_double_flow_ema", m.official_double_flow_ema}, {"official_bank_order", m.official_bank_order},
      {"key_bn_splits", m.key_bn_splits}, {"batch_keys_as_negatives", m.batch_keys_as_negatives}, {"seed", m.seed},
      // optimisation
      {"iterations", p.iterations}, {"iterations_per_epoch", p.iterations_per_epoch}, {"lr", p.lr},
      {"reference_batch", 0}, {"min_lr", p.min_lr}, {"warmup", p.warmup}, {"sgd_momentum", p.sgd_momentum},
      {"weight_decay", p.weight_decay}, {"clip_norm", p.clip_norm}, {"log_every", p.log_every},
      {"checkpoint_every", p.checkpoint_every}, {"keep_checkpoints", p.keep_checkpoints}, {"out_dir", p.out_dir},
      {"time_budget_s", p.time_budget_s},
      // data parallelism (docs/distributed.md): sync-BN of the query encoders, bucket overlap
      {"sync_bn", p.sync_bn}, {"overlap_backward", p.overlap_backward},
      // data
      {"source", "random_pairs"}, {"official_literal_flow_views", false}, {"batch", 8}, {"frames", 8}, {"size", 112}, {"prototypes", 64}, {"noise", 0.5},
      // data: "rawframes" source (data/mscl_clip_source.hpp; "frames" = clip length, "size" = crop size)
      {"data_root", ""}, {"annotation_file", ""}, {"flow_root", ""}, {"samples_file", ""}, {"workers", 2},
      {"queue_depth", 4}, {"short_side", 128}, {"frame_interval", 8}, {"crop_area_min", 0.2}, {"flip", true},
      {"flip_negates_flow", true}, {"color_aug", true}, {"blur_p", 0.5}, {"normalize_rgb", true}, {"fast_atan2", false}, {"flow_bound", 20.0},
      {"threads", 2}, {"description", ""}};
}

/// Merges `overrides` into `base`, refusing unknown keys and type changes.
inline void merge_config(json& base, const json& overrides, const std::string& source) {
  MSCL_CHECK(overrides.is_object(), config_error, source << ": a configuration must be a JSON object");
  for (auto it = overrides.begin(); it != overrides.end(); ++it) {
    MSCL_CHECK(base.contains(it.key()), config_error, source << ": unknown configuration key '" << it.key() << "'");
    const json& old = base[it.key()];
    const bool numeric_ok = old.is_number() && it.value().is_number() &&
                            !(old.is_number_integer() && it.value().is_number_float());
    MSCL_CHECK(old.type() == it.value().type() || numeric_ok, config_error,
               source << ": key '" << it.key() << "' expects a " << old.type_name() << ", got " << it.value().type_name()
                      << " (" << it.value().dump() << ")");
    base[it.key()] = it.value();
  }
}

inline json read_json_file(const std::string& path) {
  std::ifstream in(path);
  MSCL_CHECK(in.good(), io_error, "cannot read configuration " << path);
  try {
    return json::parse(in);
  } catch (const json::parse_error& e) {
    MSCL_CHECK(false, config_error, path << ": not valid JSON: " << e.what());
  }
  return {};
}

/// "key=value" → {key: value}; value parsed as JSON if it parses, else taken as a string.
inline json parse_override(const std::string& text) {
  const auto eq = text.find('=');
  MSCL_CHECK(eq != std::string::npos && eq > 0, config_error, "--set expects key=value, got '" << text << "'");
  const std::string key = text.substr(0, eq), value = text.substr(eq + 1);
  json v;
  try {
    v = json::parse(value);
  } catch (...) {
    v = value;
  }
  return json{{key, v}};
}

inline ssl::mscl_options objective_options(const json& c) {
  ssl::mscl_options m;
  m.flow_moco = c.at("flow_moco"); m.cross_modal = c.at("cross_modal"); m.lmcl = c.at("lmcl"); m.fra = c.at("fra");
  m.rgb_width = c.at("rgb_width"); m.rgb_depth = c.at("rgb_depth"); m.flow_width = c.at("flow_width"); m.neck_channels = c.at("neck_channels");
  m.neck_pconvs = c.at("neck_pconvs");
  m.embedding_dim = c.at("embedding_dim"); m.queue_size = c.at("queue_size"); m.temperature = c.at("temperature");
  m.queue_decay = c.at("queue_decay"); m.momentum_base = c.at("momentum_base");
  m.momentum_samples = c.at("momentum_samples"); m.fixed_momentum = c.at("fixed_momentum");
  m.fixed_momentum_value = c.at("fixed_momentum_value");
  m.w_rgb = c.at("w_rgb"); m.w_flow = c.at("w_flow"); m.w_flow_aug = c.at("w_flow_aug"); m.w_mx = c.at("w_mx");
  m.w_mx_r = c.at("w_mx_r"); m.w_mx_aug = c.at("w_mx_aug"); m.w_mx_r_aug = c.at("w_mx_r_aug"); m.w_pos = c.at("w_pos");
  m.motion_warmup_samples = c.at("motion_warmup_samples");
  m.w_distill = c.at("w_distill"); m.distill_fade_samples = c.at("distill_fade_samples");
  m.official_double_flow_ema = c.at("official_double_flow_ema");
  m.official_bank_order = c.at("official_bank_order");
  m.key_bn_splits = c.at("key_bn_splits");
  m.batch_keys_as_negatives = c.at("batch_keys_as_negatives");
  m.seed = c.at("seed");
  return m;
}

inline pretrain_options training_options(const json& c) {
  pretrain_options p;
  p.iterations = c.at("iterations");
  p.iterations_per_epoch = c.at("iterations_per_epoch");
  const double ref = c.at("reference_batch");
  p.lr = ref > 0 ? optim::scaled_lr(c.at("lr"), ref, double(c.at("batch"))) : double(c.at("lr"));
  p.min_lr = c.at("min_lr"); p.warmup = c.at("warmup"); p.sgd_momentum = c.at("sgd_momentum");
  p.weight_decay = c.at("weight_decay"); p.clip_norm = c.at("clip_norm"); p.log_every = c.at("log_every");
  p.checkpoint_every = c.at("checkpoint_every"); p.keep_checkpoints = c.at("keep_checkpoints");
  p.out_dir = c.at("out_dir");
  p.time_budget_s = c.at("time_budget_s");
  p.sync_bn = c.at("sync_bn");
  p.overlap_backward = c.at("overlap_backward");
  return p;
}

/// Hash of everything that changes the run's numbers (not where it writes or how often it logs).
inline std::string config_hash(const json& c) {
  json h = c;
  for (const char* k : {"out_dir", "log_every", "checkpoint_every", "keep_checkpoints", "threads", "description", "workers", "queue_depth",
                        "overlap_backward"})  // overlap changes when gradients are summed, not the sums
    h.erase(k);
  // Keys added after runs were made are left out at their defaults, so that a run started before
  // a key existed (and killed) can still be resumed.
  for (const auto& [key, default_value] : std::initializer_list<std::pair<const char*, json>>{
           {"sync_bn", false}, {"w_distill", 0.0}, {"distill_fade_samples", 0}, {"blur_p", 0.5}, {"neck_pconvs", 2}})
    if (h.contains(key) && h[key] == default_value) h.erase(key);
  const std::string text = h.dump();
  std::uint64_t x = 1469598103934665603ull;  // FNV-1a 64
  for (unsigned char ch : text) x = (x ^ ch) * 1099511628211ull;
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(x));
  return buf;
}

}  // namespace mscl::train
