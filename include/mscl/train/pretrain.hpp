/// \file pretrain.hpp
/// \brief The pretraining loop for `ssl::mscl_objective` over any batch source: SGD with
///        momentum/weight decay, global-norm clipping, cosine lr (per epoch like MMCV, or per
///        iteration) with optional warm-up, progress bar, JSON-lines log, atomic checkpoints and
///        exact resume, and a clear stop on a non-finite loss term.
///
/// A batch source is any type with `ssl::mscl_batch<T,B> batch(long iteration)`: the batch of
/// iteration i must depend only on i and the source's seed, which is what makes resume exact.
#pragma once
#include <chrono>
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "../optim/schedule.hpp"
#include "../optim/sgd.hpp"
#include "../ssl/mscl_objective.hpp"
#include "checkpoint.hpp"
#include "progress.hpp"

namespace mscl::train {

struct pretrain_options {
  long iterations = 100;
  long iterations_per_epoch = 0;  ///< > 0: lr updated per epoch (MMCV by_epoch); 0: per iteration
  double lr = 0.02;               ///< already scaled for the global batch (optim::scaled_lr)
  double min_lr = 0.0;
  double warmup = 0;              ///< in the schedule's unit; 0 = none (the released setting, §11 A8)
  double sgd_momentum = 0.9;
  double weight_decay = 1e-4;
  double clip_norm = 40.0;        ///< <= 0: no clipping
  long log_every = 10;
  long checkpoint_every = 50;     ///< <= 0: only at the end
  int keep_checkpoints = 2;
  std::string out_dir = "runs/pretrain";
  bool resume = false;            ///< continue from out_dir/latest.json if present
  std::string config_hash;        ///< refuse to resume a run made with another configuration
  bool progress = true;
  /// Called after every step with (iteration, stats); return false to stop (tests, early stop).
  std::function<bool(long, const ssl::mscl_step_stats&)> on_step;
};

struct pretrain_result {
  long first_iteration = 0;  ///< 0, or where a resumed run started
  long last_iteration = 0;
  double seconds = 0;
  double data_seconds = 0;
  ssl::mscl_step_stats last;
};

namespace detail {
template <class T, class B>
checkpoint<T> make_checkpoint(ssl::mscl_objective<T, B>& obj, optim::sgd<T, B>& opt, const std::string& config_hash) {
  checkpoint<T> ck;
  ck.add_module("model.", obj);
  auto add_queue = [&](const std::string& name, const ssl::memory_queue<T, B>* q) {
    if (!q) return;
    const auto s = q->state();
    ck.tensors["queue." + name] = s.buffer;
    ck.integers["queue." + name + ".ages"] = s.ages;
    ck.integers["queue." + name + ".pointer"] = {s.pointer};
  };
  add_queue("rgb", obj.rgb_queue.get());
  add_queue("flow", obj.flow_queue.get());
  auto& bufs = opt.momentum_buffers();
  for (std::size_t i = 0; i < bufs.size(); ++i)
    if (bufs[i].defined()) ck.tensors["optim.momentum." + std::to_string(i)] = bufs[i];
  ck.state["samples_seen_rgb"] = obj.samples_seen_rgb();
  ck.state["samples_seen_flow"] = obj.samples_seen_flow();
  ck.state["config_hash"] = config_hash;
  return ck;
}

template <class T, class B>
long restore_checkpoint(const checkpoint<T>& ck, ssl::mscl_objective<T, B>& obj, optim::sgd<T, B>& opt,
                        const std::string& config_hash, const std::string& dir) {
  const std::string src = "checkpoint in " + dir;
  const std::string stored = ck.state.value("config_hash", std::string());
  MSCL_CHECK(stored == config_hash, config_error,
             "pretrain: cannot resume from " << dir << ": it was written with configuration " << stored
                                             << " but this run's configuration is " << config_hash);
  ck.restore_module("model.", obj, src);
  auto restore_queue = [&](const std::string& name, ssl::memory_queue<T, B>* q) {
    if (!q) return;
    ssl::memory_queue_state<T, B> s;
    s.buffer = ck.at("queue." + name, src);
    auto it = ck.integers.find("queue." + name + ".ages");
    auto ip = ck.integers.find("queue." + name + ".pointer");
    MSCL_CHECK(it != ck.integers.end() && ip != ck.integers.end() && ip->second.size() == 1, io_error,
               "pretrain: " << src << " lacks the ages/pointer of queue '" << name << "'");
    s.ages = it->second;
    s.pointer = ip->second[0];
    q->load_state(s);
  };
  restore_queue("rgb", obj.rgb_queue.get());
  restore_queue("flow", obj.flow_queue.get());
  auto& bufs = opt.momentum_buffers();
  for (std::size_t i = 0; i < bufs.size(); ++i) {
    auto it = ck.tensors.find("optim.momentum." + std::to_string(i));
    if (it != ck.tensors.end()) bufs[i] = it->second.clone();
  }
  obj.set_samples_seen(ck.state.value("samples_seen_rgb", std::int64_t(0)), ck.state.value("samples_seen_flow", std::int64_t(0)));
  return ck.state.at("iteration").template get<long>();
}

inline std::string format_terms(const ssl::mscl_step_stats& s) {
  std::string out;
  char buf[64];
  for (const auto& [k, v] : s.losses) {
    std::snprintf(buf, sizeof buf, "%s%s %.3f", out.empty() ? "" : " ", k == "loss_cls" ? "rgb" : k.c_str() + (k.rfind("loss_cls_", 0) == 0 ? 9 : 5), v);
    out += buf;
  }
  return out;
}
}  // namespace detail

template <class T, class B, class Source>
pretrain_result pretrain(ssl::mscl_objective<T, B>& objective, Source& source, const pretrain_options& o) {
  MSCL_CHECK(o.iterations > 0, config_error, "pretrain: iterations must be positive, got " << o.iterations);
  optim::sgd<T, B> opt(objective.trainable_parameters(), {o.lr, o.sgd_momentum, o.weight_decay, false});
  const bool per_epoch = o.iterations_per_epoch > 0;
  const double total = per_epoch ? double(o.iterations) / double(o.iterations_per_epoch) : double(o.iterations);
  const optim::cosine_schedule schedule{o.lr, o.min_lr, total, o.warmup, 0.0};

  pretrain_result res;
  long start = 0;
  if (o.resume && has_checkpoint(o.out_dir)) {
    start = detail::restore_checkpoint(load_latest_checkpoint<T>(o.out_dir), objective, opt, o.config_hash, o.out_dir);
    std::fprintf(stderr, "pretrain: resumed from %s at iteration %ld\n", o.out_dir.c_str(), start);
  }
  res.first_iteration = start;
  std::filesystem::create_directories(o.out_dir);
  jsonl_writer log(o.out_dir + "/log.jsonl", /*append=*/start > 0);
  progress_bar bar(o.iterations, "pretrain", o.log_every > 0 ? o.log_every : 10);
  const auto t0 = std::chrono::steady_clock::now();
  double data_seconds = 0;
  long window_steps = 0;
  double window_data = 0;
  auto window_start = std::chrono::steady_clock::now();

  for (long it = start; it < o.iterations; ++it) {
    const double position = per_epoch ? std::floor(double(it) / double(o.iterations_per_epoch)) : double(it);
    const double lr = schedule(position);
    opt.set_lr(lr);

    const auto d0 = std::chrono::steady_clock::now();
    ssl::mscl_batch<T, B> batch = source.batch(it);
    const double wait = std::chrono::duration<double>(std::chrono::steady_clock::now() - d0).count();
    data_seconds += wait;
    window_data += wait;

    ssl::mscl_step_stats stats;
    tensor<T, B> loss = objective.forward(batch, &stats);
    for (const auto& [name, value] : stats.losses)
      MSCL_CHECK(std::isfinite(value), numeric_error,
                 "pretrain: loss term '" << name << "' is " << value << " at iteration " << it + 1
                                         << "; the last good checkpoint in " << o.out_dir << " is left intact");
    opt.zero_grad();
    loss.backward();
    const double grad_norm = o.clip_norm > 0 ? optim::clip_grad_norm(objective.trainable_parameters(), o.clip_norm) : 0.0;
    MSCL_CHECK(std::isfinite(grad_norm), numeric_error,
               "pretrain: gradient norm is " << grad_norm << " at iteration " << it + 1
                                             << "; the last good checkpoint in " << o.out_dir << " is left intact");
    opt.step();
    res.last = stats;
    ++window_steps;

    const long done = it + 1;
    if (o.progress) bar.update(done, "loss " + std::to_string(loss.item()).substr(0, 6) + " | " + detail::format_terms(stats));
    if (o.log_every > 0 && (done % o.log_every == 0 || done == o.iterations)) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
      const index_t nb = batch.rgb_q.shape()[0];
      nlohmann::json rec = {{"iteration", done}, {"loss", double(loss.item())}, {"lr", lr},
                            {"momentum_rgb", stats.momentum_rgb}, {"momentum_flow", stats.momentum_flow},
                            {"grad_norm", grad_norm}, {"clips_per_s", secs > 0 ? double(window_steps * nb) / secs : 0.0},
                            {"data_wait_s", window_data}, {"elapsed_s", bar.seconds_since_start()}};
      for (const auto& [k, v] : stats.losses) rec[k] = v;
      for (const auto& [k, v] : stats.accuracies) rec["acc_" + k] = v;
      log.write(rec);
      window_steps = 0;
      window_data = 0;
      window_start = std::chrono::steady_clock::now();
    }
    if ((o.checkpoint_every > 0 && done % o.checkpoint_every == 0) || done == o.iterations)
      save_checkpoint(o.out_dir, done, detail::make_checkpoint(objective, opt, o.config_hash), o.keep_checkpoints);
    res.last_iteration = done;
    if (o.on_step && !o.on_step(done, stats)) break;
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.data_seconds = data_seconds;
  return res;
}

}  // namespace mscl::train
