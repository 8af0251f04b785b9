/// \file pretrain.hpp
/// \brief The pretraining loop for `ssl::mscl_objective` over any batch source: SGD with
///        momentum/weight decay, global-norm clipping, cosine lr (per epoch like MMCV, or per
///        iteration) with optional warm-up, progress bar, JSON-lines log, atomic checkpoints and
///        exact resume, and a clear stop on a non-finite loss term.
///
/// A batch source is any type with `ssl::mscl_batch<T,B> batch(long iteration)`: the batch of
/// iteration i must depend only on i and the source's seed, which is what makes resume exact.
///
/// Data parallelism (`pretrain_options::comm`, dist/): with W ranks each rank's source yields
/// its shard of iteration i's global batch (dist/data_parallel.hpp); rank 0 restores a
/// checkpoint and broadcasts the whole training state (model, queues, optimiser buffers,
/// clocks, iteration), so a run resumes with any world size that keeps the global batch;
/// gradients are averaged in buckets before clipping; buffers are broadcast from rank 0 after
/// every step (DDP's broadcast_buffers); keys are gathered from all ranks before each enqueue
/// and encoded under cross-rank shuffle-BN (ssl::mscl_objective::data_parallel); a non-finite
/// loss on any rank stops every rank; only rank 0 logs, shows progress and checkpoints. Logged
/// losses are averages over ranks. `sync_bn` synchronises the query encoders' training-mode
/// BatchNorm over ranks (dist/sync_batch_norm.hpp; the key encoders keep shuffle-BN);
/// `overlap_backward` starts the gradient buckets' all-reduces during backward; with a time
/// budget rank 0 decides the schedule position and when to stop and broadcasts both.
/// Without a communicator (or with one rank) none of this runs.
#pragma once
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "../dist/communicator.hpp"
#include "../dist/tensor_collectives.hpp"
#include "../dist/data_parallel.hpp"
#include "../dist/gradient_buckets.hpp"
#include "../dist/sync_batch_norm.hpp"
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
  /// > 0: a wall-clock budget in seconds of training (summed over resumed segments). The run stops
  /// after the step that exhausts it, and the cosine schedule runs on the fraction of the budget
  /// used (or of `iterations`, whichever is further), so that two objectives of different step
  /// cost compared "at the same budget" both anneal fully. Timing makes such a run
  /// non-reproducible step for step; `iterations` stays an upper bound.
  double time_budget_s = 0;
  /// Called after every step with (iteration, stats); return false to stop (tests, early stop).
  std::function<bool(long, const ssl::mscl_step_stats&)> on_step;
  /// Data parallelism: null or one rank = this process alone (the loop runs exactly as without it).
  std::shared_ptr<dist::communicator> comm;
  double bucket_mb = 25;  ///< gradient all-reduce bucket size (dist/gradient_buckets.hpp)
  /// Data parallel only: training-mode BatchNorm of the query encoders (everything run with grad
  /// on) uses the statistics of the global batch (PyTorch SyncBatchNorm). false = per-rank
  /// statistics, the release's behaviour (ALGORITHM.md §1.2).
  bool sync_bn = false;
  /// Data parallel only: start bucket all-reduces during backward (autograd gradient-ready
  /// hook); false = all after backward. Same results either way.
  bool overlap_backward = true;
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
    ck.tensors["queue." + name] = on_backend<cpu>(s.buffer);
    ck.integers["queue." + name + ".ages"] = s.ages;
    ck.integers["queue." + name + ".pointer"] = {s.pointer};
  };
  add_queue("rgb", obj.rgb_queue.get());
  add_queue("flow", obj.flow_queue.get());
  auto& bufs = opt.momentum_buffers();
  for (std::size_t i = 0; i < bufs.size(); ++i)
    if (bufs[i].defined()) ck.tensors["optim.momentum." + std::to_string(i)] = on_backend<cpu>(bufs[i]);
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
    s.buffer = on_backend<B>(ck.at("queue." + name, src));
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
    if (it != ck.tensors.end()) bufs[i] = on_backend<B>(it->second).clone();
  }
  obj.set_samples_seen(ck.state.value("samples_seen_rgb", std::int64_t(0)), ck.state.value("samples_seen_flow", std::int64_t(0)));
  return ck.state.at("iteration").template get<long>();
}

/// Rank 0's training state → every rank: iteration, clocks, model parameters and buffers (key
/// encoders included), both queues and the optimiser's momentum buffers. After it no state is
/// per-rank, which is what lets rank 0 alone read and write checkpoints.
template <class T, class B>
void share_training_state(dist::communicator& comm, ssl::mscl_objective<T, B>& obj, optim::sgd<T, B>& opt, long& start) {
  std::int64_t ints[3] = {start, obj.samples_seen_rgb(), obj.samples_seen_flow()};
  comm.broadcast(ints, 3, 0, "broadcast of the iteration and clocks");
  start = long(ints[0]);
  obj.set_samples_seen(ints[1], ints[2]);
  std::vector<tensor<T, B>> ts = dist::module_state_tensors(obj, true, true);
  std::vector<ssl::memory_queue<T, B>*> queues;
  for (auto* q : {obj.rgb_queue.get(), obj.flow_queue.get()})
    if (q) queues.push_back(q);
  std::vector<ssl::memory_queue_state<T, B>> qs;
  for (auto* q : queues) {
    qs.push_back(q->state());
    ts.push_back(qs.back().buffer);
  }
  dist::append_optimizer_state(comm, opt, ts);
  dist::broadcast_tensors(comm, ts, 0, "broadcast of the training state");
  for (std::size_t i = 0; i < queues.size(); ++i) {
    std::vector<std::int64_t> ages = qs[i].ages;
    ages.push_back(qs[i].pointer);
    comm.broadcast(ages.data(), ages.size(), 0, "broadcast of the queue ages");
    qs[i].pointer = index_t(ages.back());
    ages.pop_back();
    qs[i].ages = ages;
    queues[i]->load_state(qs[i]);
  }
}

/// Stops every rank when any rank's loss is non-finite (one rank throwing alone would leave
/// the others waiting at the next collective). The rank that saw it throws from the usual
/// check in the loop; the others throw here.
inline void agree_on_finite_losses(dist::communicator& comm, const ssl::mscl_step_stats& stats, long it,
                                   const std::string& out_dir) {
  bool finite = true;
  for (const auto& kv : stats.losses) finite = finite && std::isfinite(kv.second);
  std::int64_t bad = finite ? 0 : 1;
  comm.all_reduce_sum(&bad, 1, "non-finite loss check");
  MSCL_CHECK(!finite || bad == 0, numeric_error,
             "pretrain: a loss term is non-finite on " << bad << " other rank(s) at iteration " << it + 1
                                                       << "; the last good checkpoint in " << out_dir << " is left intact");
}

/// Rank-averaged copy of the logged numbers (loss, per-term losses and accuracies).
inline void average_logged(dist::communicator& comm, double& loss, ssl::mscl_step_stats& stats) {
  std::vector<double> v{loss};
  for (const auto& kv : stats.losses) v.push_back(kv.second);
  for (const auto& kv : stats.accuracies) v.push_back(kv.second);
  comm.all_reduce_sum(v.data(), v.size(), "average of the logged losses");
  for (auto& x : v) x /= double(comm.size());
  std::size_t i = 0;
  loss = v[i++];
  for (auto& kv : stats.losses) kv.second = v[i++];
  for (auto& kv : stats.accuracies) kv.second = v[i++];
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
  const bool parallel = o.comm && o.comm->size() > 1;
  const bool lead = !parallel || o.comm->rank() == 0;  // logs, shows progress, checkpoints
  MSCL_CHECK(o.time_budget_s >= 0, config_error, "pretrain: time_budget_s must be >= 0, got " << o.time_budget_s);
  if (parallel)
    MSCL_CHECK((o.comm->memory() == dist::memory_kind::host || !std::is_same_v<B, cpu>), config_error,
               "pretrain: the '" << o.comm->name() << "' communicator works on device memory; CPU training needs mpi");

  pretrain_result res;
  long start = 0;
  double previous_seconds = 0;  // training time of the segments before a resume (time budget)
  if (lead && o.resume && has_checkpoint(o.out_dir)) {
    const auto ck = load_latest_checkpoint<T>(o.out_dir);
    start = detail::restore_checkpoint(ck, objective, opt, o.config_hash, o.out_dir);
    previous_seconds = ck.state.value("train_seconds", 0.0);
    std::fprintf(stderr, "pretrain: resumed from %s at iteration %ld\n", o.out_dir.c_str(), start);
  }
  std::unique_ptr<dist::gradient_buckets<T, B>> buckets;
  struct hooks_reset {  // the objective is single-process again when pretrain returns or throws
    ssl::mscl_objective<T, B>& obj;
    ~hooks_reset() { obj.data_parallel = {}; }
  };
  std::unique_ptr<hooks_reset> reset_hooks;
  if (parallel) {
    detail::share_training_state(*o.comm, objective, opt, start);
    if (o.time_budget_s > 0) o.comm->broadcast(&previous_seconds, 1, 0, "broadcast of the time already spent");
    std::shared_ptr<dist::communicator> comm = o.comm;
    objective.data_parallel = {comm->rank(), comm->size(),
                               [comm](const tensor<T, B>& x) { return dist::all_gather_rows(*comm, x, "key all-gather"); }};
    reset_hooks.reset(new hooks_reset{objective});
    buckets = std::make_unique<dist::gradient_buckets<T, B>>(objective.trainable_parameters(),
                                                             std::size_t(o.bucket_mb * double(1 << 20)));
  }
  res.first_iteration = start;
  jsonl_writer log;
  if (lead) {
    std::filesystem::create_directories(o.out_dir);
    log.open(o.out_dir + "/log.jsonl", /*append=*/start > 0);
  }
  progress_bar bar(o.iterations, "pretrain", o.log_every > 0 ? o.log_every : 10);
  const auto t0 = std::chrono::steady_clock::now();
  double data_seconds = 0;
  long window_steps = 0;
  double window_data = 0;
  auto window_start = std::chrono::steady_clock::now();

  auto train_seconds = [&] {
    return previous_seconds + std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  // a resumed run whose budget is already spent has nothing left to do
  const long end = o.time_budget_s > 0 && previous_seconds >= o.time_budget_s ? start : o.iterations;
  res.last_iteration = start;
  for (long it = start; it < end; ++it) {
    double position = per_epoch ? std::floor(double(it) / double(o.iterations_per_epoch)) : double(it);
    if (o.time_budget_s > 0) position = std::max(position, total * std::min(1.0, train_seconds() / o.time_budget_s));
    // Clocks differ between ranks: rank 0's position is everybody's (the same lr on every rank).
    if (parallel && o.time_budget_s > 0) o.comm->broadcast(&position, 1, 0, "time-budget schedule position");
    const double lr = schedule(position);
    opt.set_lr(lr);

    const auto d0 = std::chrono::steady_clock::now();
    ssl::mscl_batch<T, B> batch = source.batch(it);
    const double wait = std::chrono::duration<double>(std::chrono::steady_clock::now() - d0).count();
    data_seconds += wait;
    window_data += wait;

    ssl::mscl_step_stats stats;
    tensor<T, B> loss;
    {
      std::optional<dist::sync_batch_norm_scope> sync_bn;
      if (parallel && o.sync_bn) sync_bn.emplace(o.comm);
      loss = objective.forward(batch, &stats);
    }
    if (parallel) detail::agree_on_finite_losses(*o.comm, stats, it, o.out_dir);
    for (const auto& [name, value] : stats.losses)
      MSCL_CHECK(std::isfinite(value), numeric_error,
                 "pretrain: loss term '" << name << "' is " << value << " at iteration " << it + 1
                                         << "; the last good checkpoint in " << o.out_dir << " is left intact");
    opt.zero_grad();
    if (parallel)  // mean gradient of the global batch, then clip
      buckets->backward_and_average(*o.comm, loss, o.overlap_backward);
    else
      loss.backward();
    const double grad_norm = o.clip_norm > 0 ? optim::clip_grad_norm(objective.trainable_parameters(), o.clip_norm) : 0.0;
    MSCL_CHECK(std::isfinite(grad_norm), numeric_error,
               "pretrain: gradient norm is " << grad_norm << " at iteration " << it + 1
                                             << "; the last good checkpoint in " << o.out_dir << " is left intact");
    opt.step();
    // DDP's broadcast_buffers, after the step so that every rank (and rank 0's checkpoint)
    // holds the same BN running statistics: rank 0's.
    if (parallel) dist::broadcast_module_buffers(*o.comm, objective);
    res.last = stats;
    ++window_steps;

    const long done = it + 1;
    bool budget_spent = o.time_budget_s > 0 && train_seconds() >= o.time_budget_s;
    if (parallel && o.time_budget_s > 0) {  // rank 0 decides when to stop
      std::int64_t stop = budget_spent ? 1 : 0;
      o.comm->broadcast(&stop, 1, 0, "time-budget stop decision");
      budget_spent = stop != 0;
    }
    if (o.time_budget_s > 0 && !budget_spent) {  // expected steps at the current rate, for the bar's ETA
      const double spent_here = train_seconds() - previous_seconds;
      const double steps_per_s = spent_here > 0 ? double(done - start) / spent_here : 0.0;
      bar.set_total(std::min(o.iterations, done + 1 + long((o.time_budget_s - train_seconds()) * steps_per_s)));
    }
    if (budget_spent) bar.set_total(done);
    if (o.progress && lead) bar.update(done, "loss " + std::to_string(loss.item()).substr(0, 6) + " | " + detail::format_terms(stats));
    if (o.log_every > 0 && (done % o.log_every == 0 || done == o.iterations || budget_spent)) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
      const index_t nb = batch.rgb_q.shape()[0] * (parallel ? o.comm->size() : 1);  // global clips
      double loss_value = double(loss.item());
      ssl::mscl_step_stats shown = stats;
      if (parallel) detail::average_logged(*o.comm, loss_value, shown);
      nlohmann::json rec = {{"iteration", done}, {"loss", loss_value}, {"lr", lr},
                            {"momentum_rgb", stats.momentum_rgb}, {"momentum_flow", stats.momentum_flow},
                            {"grad_norm", grad_norm}, {"clips_per_s", secs > 0 ? double(window_steps * nb) / secs : 0.0},
                            {"data_wait_s", window_data}, {"elapsed_s", bar.seconds_since_start()}};
      for (const auto& [k, v] : shown.losses) rec[k] = v;
      for (const auto& [k, v] : shown.accuracies) rec["acc_" + k] = v;
      if (parallel) {
        rec["world_size"] = o.comm->size();
        rec["grad_wait_s"] = buckets->take_wait_seconds();  // this rank's (rank 0's) exposed all-reduce wait
      }
      if (lead) log.write(rec);
      window_steps = 0;
      window_data = 0;
      window_start = std::chrono::steady_clock::now();
    }
    if (lead && ((o.checkpoint_every > 0 && done % o.checkpoint_every == 0) || done == o.iterations || budget_spent)) {
      auto ck = detail::make_checkpoint(objective, opt, o.config_hash);
      ck.state["train_seconds"] = train_seconds();
      save_checkpoint(o.out_dir, done, ck, o.keep_checkpoints);
    }
    res.last_iteration = done;
    if (budget_spent) {
      if (lead) std::fprintf(stderr, "\npretrain: time budget of %.0f s spent after %ld iterations\n", o.time_budget_s, done);
      break;
    }
    if (o.on_step && !o.on_step(done, stats)) break;
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  res.data_seconds = data_seconds;
  return res;
}

}  // namespace mscl::train
