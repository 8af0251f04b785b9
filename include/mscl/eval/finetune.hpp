/// \file finetune.hpp
/// \brief Supervised fine-tuning (or training from scratch) of a `video_classifier`
///        (ALGORITHM.md §9): SGD with momentum and weight decay, global-norm clipping, cosine lr
///        with linear warm-up (or step decay), training augmentation, progress bar, JSON-lines
///        log, atomic checkpoints with exact resume, and evaluation with the full test protocol
///        every k epochs and at the end (metrics JSON, confusion-matrix PNG, final weights).
///
/// Data: any train source with `index_t size() const`, `index_t label(index_t) const` and
/// `tensor<T> sample(index_t item, generator& gen) const` (one augmented 3×T×H×W clip), and a test
/// source as `eval::evaluate` takes (classification.hpp). `rawframes_train_source` and
/// `rawframes_test_source` (rawframes_sources.hpp, included here in builds with MSCL_WITH_JPEG)
/// read MMAction2 rawframes trees (ECOSYSTEM.md §1.1, §2.2). The loop itself needs no JPEG: it
/// also runs on sources in memory, and on the cuda backend (clips are built on the host and
/// copied to the device per batch).
///
/// Determinism: the batch of iteration i (which videos, their temporal offsets, crops and flips)
/// and its dropout masks are a pure function of (seed, i): the epoch permutation comes from the
/// epoch number, each sample's augmentation from its own counter range, so batches are the same
/// for any thread count and a resumed run continues exactly (checkpoints are written at epoch
/// boundaries with model, BatchNorm statistics and momentum buffers).
///
/// Data parallelism (`finetune_options::comm` with W > 1 ranks, docs/distributed.md): `batch` is
/// per rank; iteration i's global batch is slots [i·W·B, (i+1)·W·B) of the epoch permutation and
/// rank r takes [r·B, (r+1)·B) of them, each sample augmented from its GLOBAL slot's counters, so
/// W ranks × B see exactly the clips of 1 rank × W·B. Rank 0 alone reads a checkpoint and
/// broadcasts parameters, buffers, momentum buffers and the iteration (resume with any W that
/// keeps the global batch); gradients are averaged in buckets (started during backward when
/// `overlap_backward`); training-mode BatchNorm uses the global batch's statistics when
/// `sync_bn` (the default here: per-rank BN would change the recipe's statistics); BN buffers
/// are broadcast from rank 0 after each step. Every rank evaluates (the same model, the same
/// numbers: no rank waits idle on another's evaluation); only rank 0 logs, shows progress and
/// writes files. Dropout masks are drawn per rank (stream i·W + r), so with dropout > 0 they differ
/// from a one-process run's. `on_step` must answer the same on every rank.
#pragma once
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "../core/rng.hpp"
#include "../dist/communicator.hpp"
#include "../dist/tensor_collectives.hpp"
#include "../dist/data_parallel.hpp"
#include "../dist/gradient_buckets.hpp"
#include "../dist/sync_batch_norm.hpp"
#include "../io/atomic_file.hpp"
#include "../ops/loss.hpp"
#include "../optim/schedule.hpp"
#include "../optim/sgd.hpp"
#include "../train/checkpoint.hpp"
#include "../train/progress.hpp"
#include "../viz/canvas.hpp"
#include "classification.hpp"
#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG
#include "rawframes_sources.hpp"
#endif

namespace mscl::eval {

// ------------------------------------------------------------------------------- figures

/// The confusion matrix as a PNG: rows = true class, columns = predicted, cells coloured and
/// labelled by the row-normalised fraction (recall per class on the diagonal).
inline void save_confusion_png(const classification_metrics& m, const std::vector<std::string>& class_names,
                               const std::string& path, const std::string& title = "") {
  const index_t C = m.num_classes;
  std::vector<double> frac(std::size_t(C * C), 0.0);
  for (index_t t = 0; t < C; ++t) {
    const index_t n = m.per_class_count[std::size_t(t)];
    for (index_t p = 0; p < C; ++p) frac[std::size_t(t * C + p)] = n ? double(m.confusion_at(t, p)) / double(n) : std::nan("");
  }
  viz::heatmap_options o;
  o.cell = C <= 12 ? 36 : C <= 30 ? 20 : C <= 60 ? 10 : 6;
  o.cell_text = C <= 12;
  o.v_min = 0.0;
  o.v_max = 1.0;
  char buf[160];
  std::snprintf(buf, sizeof buf, "top-1 %.1f%%  mean class %.1f%%  (%lld videos; rows true, columns predicted)", 100.0 * m.top1,
                100.0 * m.mean_class_accuracy, static_cast<long long>(m.count));
  o.title = title.empty() ? std::string(buf) : title + "  " + buf;
  if (C <= 60) {
    for (index_t c = 0; c < C; ++c) {
      std::string n = std::size_t(c) < class_names.size() ? class_names[std::size_t(c)] : std::to_string(c);
      if (n.size() > 18) n = n.substr(0, 17) + "~";
      o.row_labels.push_back(n);
      o.col_labels.push_back(n);
    }
  }
  viz::heatmap(frac, int(C), int(C), o).save_png(path);
}

// ------------------------------------------------------------------------------- training

struct finetune_options {
  long epochs = 22;
  index_t batch = 32;              ///< per rank when data parallel (global batch = W x batch)
  double lr = 0.12;                ///< already scaled for the batch
  double min_lr = 0.0;
  double warmup_epochs = 0;        ///< linear warm-up from 0 (cosine schedule only)
  std::string schedule = "cosine"; ///< "cosine" | "step"
  std::vector<double> milestones;  ///< step schedule, epochs
  double gamma = 0.1;
  bool lr_by_epoch = false;        ///< true: lr changes at epoch boundaries only (MMCV by_epoch)
  double sgd_momentum = 0.9;
  double weight_decay = 1e-6;
  double clip_norm = 40.0;         ///< <= 0: no clipping
  long eval_every = 0;             ///< epochs; 0 = only at the end
  long checkpoint_every = 1;       ///< epochs; <= 0 = only at the end
  int keep_checkpoints = 2;
  long log_every = 10;             ///< iterations
  index_t eval_videos_per_batch = 8;
  score_average average = score_average::prob;
  std::string out_dir = "runs/finetune";
  bool resume = false;
  std::string config_hash;
  std::uint64_t seed = 0;          ///< epoch order and augmentation
  bool progress = true;
  std::vector<std::string> class_names;  ///< for metrics.json and the confusion PNG
  nlohmann::json protocol;               ///< written into metrics.json (what the numbers mean)
  /// Called after every step with (iteration, loss); return false to stop.
  std::function<bool(long, double)> on_step;
  /// Data parallelism: null or one rank = this process alone (the loop is unchanged).
  std::shared_ptr<dist::communicator> comm;
  double bucket_mb = 25;         ///< gradient all-reduce bucket size
  bool sync_bn = true;           ///< data parallel: training-mode BN over the global batch
  bool overlap_backward = true;  ///< data parallel: bucket all-reduces start during backward
};

struct finetune_result {
  long first_iteration = 0, last_iteration = 0, iterations_per_epoch = 0;
  double seconds = 0, data_seconds = 0, eval_seconds = 0;
  evaluation_result final_eval;  ///< metrics.count == 0 when there was no test source
  nlohmann::json evaluations = nlohmann::json::array();
};

namespace detail {
/// The items of epoch e in order: a Fisher–Yates permutation from a generator seeded by (seed, e).
inline std::vector<index_t> epoch_order(index_t n, std::uint64_t seed, long epoch) {
  std::vector<index_t> order(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) order[std::size_t(i)] = i;
  generator gen(seed ^ 0xa0761d6478bd642fULL, std::uint64_t(epoch) << 20);
  for (index_t i = n - 1; i > 0; --i) std::swap(order[std::size_t(i)], order[std::size_t(gen.randint(0, i))]);
  return order;
}

/// Rank 0's state → every rank: iteration, parameters, buffers, SGD momentum buffers.
template <class T, class B>
void share_finetune_state(dist::communicator& comm, const video_classifier<T, B>& clf, optim::sgd<T, B>& opt, long& start) {
  std::int64_t it = start;
  comm.broadcast(&it, 1, 0, "broadcast of the iteration");
  start = long(it);
  std::vector<tensor<T, B>> ts = dist::module_state_tensors(clf, true, true);
  dist::append_optimizer_state(comm, opt, ts);
  dist::broadcast_tensors(comm, ts, 0, "broadcast of the fine-tuning state");
}

template <class T, class B>
train::checkpoint<T> finetune_checkpoint(const video_classifier<T, B>& clf, optim::sgd<T, B>& opt,
                                         const finetune_options& o, const nlohmann::json& evaluations) {
  train::checkpoint<T> ck;
  ck.add_module("model.", clf);
  auto& bufs = opt.momentum_buffers();
  for (std::size_t i = 0; i < bufs.size(); ++i)
    if (bufs[i].defined()) ck.tensors["optim.momentum." + std::to_string(i)] = on_backend<cpu>(bufs[i]);
  ck.state["config_hash"] = o.config_hash;
  ck.state["evaluations"] = evaluations;
  return ck;
}
}  // namespace detail

/// Writes metrics.json (atomically) for an evaluation.
inline void write_metrics_json(const std::string& path, const evaluation_result& ev, const finetune_options& o,
                               const nlohmann::json& extra = {}) {
  nlohmann::json j = ev.metrics.to_json(o.class_names);
  j["protocol"] = o.protocol;
  j["average"] = score_average_name(o.average);
  j["eval_seconds"] = ev.seconds;
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
  const std::string text = j.dump(2) + "\n";
  io::write_file_atomic(path, [&](io::atomic_file& f) { f.write(text.data(), text.size()); });
}

/// Trains `clf` on `train`, evaluating on `test` (may be null) every `eval_every` epochs and at the
/// end. Writes into out_dir: log.jsonl, ckpt-*.safetensors + latest.json, and at the end
/// model.safetensors (MMAction2 names), metrics.json, confusion.png.
template <class T, class B, class TrainSource, class TestSource>
finetune_result finetune(video_classifier<T, B>& clf, const TrainSource& train, const TestSource* test,
                         const finetune_options& o) {
  MSCL_CHECK(o.epochs > 0 && o.batch > 0, config_error, "finetune: epochs and batch must be positive, got " << o.epochs << " and " << o.batch);
  const bool parallel = o.comm && o.comm->size() > 1;
  const bool lead = !parallel || o.comm->rank() == 0;  // logs, shows progress, writes files
  const index_t world = parallel ? index_t(o.comm->size()) : 1, rank = parallel ? index_t(o.comm->rank()) : 0;
  const index_t global_batch = o.batch * world;
  if (parallel)
    MSCL_CHECK((o.comm->memory() == dist::memory_kind::host || !std::is_same_v<B, cpu>), config_error,
               "finetune: the '" << o.comm->name() << "' communicator works on device memory; CPU training needs mpi");
  MSCL_CHECK(train.size() >= global_batch, config_error,
             "finetune: the training set has " << train.size() << " videos, fewer than one global batch of " << global_batch
                                               << " (" << world << " rank(s) x " << o.batch << ")");
  MSCL_CHECK(o.schedule == "cosine" || o.schedule == "step", config_error,
             "finetune: schedule must be \"cosine\" or \"step\", got \"" << o.schedule << "\"");
  for (index_t i = 0; i < train.size(); ++i)
    MSCL_CHECK(train.label(i) >= 0 && train.label(i) < clf.num_classes(), value_error,
               "finetune: training item " << i << " has label " << train.label(i) << ", outside the classifier's [0, "
                                          << clf.num_classes() << ")");
  const long per_epoch = long(train.size() / global_batch);  // drop_last
  const long total = per_epoch * o.epochs;
  optim::sgd<T, B> opt(clf.parameters(), {o.lr, o.sgd_momentum, o.weight_decay, false});
  const optim::cosine_schedule cosine{o.lr, o.min_lr, double(o.epochs), o.warmup_epochs, 0.0};
  const optim::step_schedule step{o.lr, o.milestones, o.gamma};

  finetune_result res;
  res.iterations_per_epoch = per_epoch;
  long start = 0;
  if (lead && o.resume && train::has_checkpoint(o.out_dir)) {
    const auto ck = train::load_latest_checkpoint<T>(o.out_dir);
    const std::string stored = ck.state.value("config_hash", std::string());
    MSCL_CHECK(stored == o.config_hash, config_error,
               "finetune: cannot resume from " << o.out_dir << ": it was written with configuration " << stored
                                               << " but this run's configuration is " << o.config_hash);
    ck.restore_module("model.", clf, "checkpoint in " + o.out_dir);
    auto& bufs = opt.momentum_buffers();
    for (std::size_t i = 0; i < bufs.size(); ++i) {
      auto it = ck.tensors.find("optim.momentum." + std::to_string(i));
      if (it != ck.tensors.end()) bufs[i] = on_backend<B>(it->second.clone());
    }
    if (ck.state.contains("evaluations")) res.evaluations = ck.state["evaluations"];
    start = ck.state.at("iteration").template get<long>();
    std::fprintf(stderr, "finetune: resumed from %s at iteration %ld (epoch %ld)\n", o.out_dir.c_str(), start,
                 per_epoch ? start / per_epoch : 0);
  }
  std::unique_ptr<dist::gradient_buckets<T, B>> buckets;
  if (parallel) {
    detail::share_finetune_state(*o.comm, clf, opt, start);
    buckets = std::make_unique<dist::gradient_buckets<T, B>>(clf.parameters(), std::size_t(o.bucket_mb * double(1 << 20)));
  }
  res.first_iteration = start;
  res.last_iteration = start;
  train::jsonl_writer log;
  if (lead) {
    std::filesystem::create_directories(o.out_dir);
    log.open(o.out_dir + "/log.jsonl", /*append=*/start > 0);
  }

  auto run_eval = [&](long epoch, long iteration, bool final_eval) {
    evaluation_result ev;
    if (!test) return ev;
    train::progress_bar bar(test->size(), final_eval ? "test" : "eval", std::max<long>(1, long(test->size() / 10)));
    ev = evaluate(clf, *test, o.eval_videos_per_batch, o.average, [&](index_t done, index_t) {
      if (o.progress && lead) bar.update(long(done));
    });
    res.eval_seconds += ev.seconds;
    nlohmann::json rec = {{"eval", true}, {"epoch", epoch}, {"iteration", iteration}, {"top1", ev.metrics.top1},
                          {"top" + std::to_string(ev.metrics.top5_k), ev.metrics.top5},
                          {"mean_class_accuracy", ev.metrics.mean_class_accuracy}, {"videos", ev.metrics.count},
                          {"eval_s", ev.seconds}};
    if (lead) log.write(rec);
    res.evaluations.push_back(rec);
    if (lead)
      std::fprintf(stderr, "finetune: %s after epoch %ld: top-1 %.2f%%, top-%lld %.2f%%, mean class %.2f%% (%lld videos, %.1f s)\n",
                 final_eval ? "test" : "eval", epoch, 100 * ev.metrics.top1, static_cast<long long>(ev.metrics.top5_k),
                 100 * ev.metrics.top5, 100 * ev.metrics.mean_class_accuracy, static_cast<long long>(ev.metrics.count), ev.seconds);
    return ev;
  };

  train::progress_bar bar(total, "finetune", o.log_every > 0 ? o.log_every : 10);
  const auto t0 = std::chrono::steady_clock::now();
  double window_loss = 0, window_data = 0;
  long window_steps = 0, window_right = 0, window_seen = 0;
  auto window_start = t0;
  std::vector<index_t> order;
  long order_epoch = -1;
  clf.train();

  for (long it = start; it < total; ++it) {
    const long epoch = it / per_epoch, j = it % per_epoch;
    if (epoch != order_epoch) {
      order = detail::epoch_order(train.size(), o.seed, epoch);
      order_epoch = epoch;
    }
    const double position = o.lr_by_epoch ? double(epoch) : double(it) / double(per_epoch);
    const double lr = o.schedule == "cosine" ? cosine(position) : step(position);
    opt.set_lr(lr);

    // Batch: each sample's randomness from its own counter range (thread-count independent).
    const auto d0 = std::chrono::steady_clock::now();
    std::vector<tensor<T, cpu>> clips(std::size_t(o.batch));  // decoded and augmented on the host
    std::vector<index_t> labels(std::size_t(o.batch));
    std::vector<std::string> errors(std::size_t(o.batch));
#pragma omp parallel for schedule(dynamic)
    for (index_t s = 0; s < o.batch; ++s) {
      const index_t slot = rank * o.batch + s;  // position in the global batch
      const index_t item = order[std::size_t(j * global_batch + slot)];
      try {
        generator gen(o.seed, (std::uint64_t(it) * std::uint64_t(global_batch) + std::uint64_t(slot)) << 16);
        clips[std::size_t(s)] = train.sample(item, gen);
        labels[std::size_t(s)] = train.label(item);
      } catch (const std::exception& e) {
        errors[std::size_t(s)] = e.what();
      }
    }
    for (const auto& e : errors) MSCL_CHECK(e.empty(), io_error, "finetune: iteration " << it + 1 << ": " << e);
    const tensor<T, B> x = on_backend<B>(ops::stack(clips, 0));
    const double wait = std::chrono::duration<double>(std::chrono::steady_clock::now() - d0).count();
    res.data_seconds += wait;
    window_data += wait;

    clf.dropout_seed = o.seed ^ 0xd1b54a32d192ed03ULL;  // a function of the run, not of the weights' init
    clf.dropout_stream = std::uint64_t(it) * std::uint64_t(world) + std::uint64_t(rank);
    tensor<T, B> logits;
    {
      std::optional<dist::sync_batch_norm_scope> sync_bn;
      if (parallel && o.sync_bn) sync_bn.emplace(o.comm);
      logits = clf.forward(x);
    }
    tensor<T, B> loss = ops::cross_entropy(logits, labels);
    const double lv = double(loss.item());
    if (parallel) {  // a non-finite loss on any rank stops every rank
      std::int64_t bad = std::isfinite(lv) ? 0 : 1;
      o.comm->all_reduce_sum(&bad, 1, "non-finite loss check");
      MSCL_CHECK(!std::isfinite(lv) || bad == 0, numeric_error,
                 "finetune: the loss is non-finite on " << bad << " other rank(s) at iteration " << it + 1
                                                        << "; the last good checkpoint in " << o.out_dir << " is left intact");
    }
    MSCL_CHECK(std::isfinite(lv), numeric_error,
               "finetune: loss is " << lv << " at iteration " << it + 1 << "; the last good checkpoint in " << o.out_dir
                                    << " is left intact");
    opt.zero_grad();
    if (parallel)  // the mean gradient of the global batch, then clip (DDP + clip_grad_norm)
      buckets->backward_and_average(*o.comm, loss, o.overlap_backward);
    else
      loss.backward();
    const double grad_norm = o.clip_norm > 0 ? optim::clip_grad_norm(clf.parameters(), o.clip_norm) : 0.0;
    MSCL_CHECK(std::isfinite(grad_norm), numeric_error,
               "finetune: gradient norm is " << grad_norm << " at iteration " << it + 1 << "; the last good checkpoint in "
                                             << o.out_dir << " is left intact");
    opt.step();
    if (parallel) dist::broadcast_module_buffers(*o.comm, clf);  // DDP's broadcast_buffers
    {
      const tensor<T, cpu> l = on_backend<cpu>(logits.detach());
      const index_t C = l.size(1);
      for (index_t r = 0; r < o.batch; ++r) {
        const T* row = l.data() + r * C;
        window_right += index_t(std::max_element(row, row + C) - row) == labels[std::size_t(r)];
      }
      window_seen += long(o.batch);
    }
    window_loss += lv;
    ++window_steps;

    const long done = it + 1;
    char extra[96];
    std::snprintf(extra, sizeof extra, "epoch %ld loss %.4f lr %.4g", epoch + 1, lv, lr);
    if (o.progress && lead) bar.update(done, extra);
    if (o.log_every > 0 && (done % o.log_every == 0 || done == total)) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
      if (parallel) {  // losses and accuracy of the global batch (every rank reaches this step)
        double v[3] = {window_loss / double(world), double(window_right), double(window_seen)};
        o.comm->all_reduce_sum(v, 3, "average of the logged losses");
        window_loss = v[0];
        window_right = long(v[1]);
        window_seen = long(v[2]);
      }
      if (lead) log.write({{"iteration", done}, {"epoch", double(done) / double(per_epoch)}, {"lr", lr},
                 {"loss", window_loss / double(window_steps)}, {"train_acc", double(window_right) / double(std::max(1L, window_seen))},
                 {"grad_norm", grad_norm}, {"clips_per_s", secs > 0 ? double(window_steps * global_batch) / secs : 0.0},
                 {"data_wait_s", window_data}, {"elapsed_s", bar.seconds_since_start()}});
      window_loss = window_data = 0;
      window_steps = window_right = window_seen = 0;
      window_start = std::chrono::steady_clock::now();
    }
    const bool epoch_end = done % per_epoch == 0;
    if (epoch_end) {
      const long ep = done / per_epoch;
      if (test && o.eval_every > 0 && ep % o.eval_every == 0 && done != total) {
        run_eval(ep, done, false);
        clf.train();
      }
      if (lead && ((o.checkpoint_every > 0 && ep % o.checkpoint_every == 0) || done == total))
        train::save_checkpoint(o.out_dir, done, detail::finetune_checkpoint(clf, opt, o, res.evaluations), o.keep_checkpoints);
    }
    res.last_iteration = done;
    if (o.on_step && !o.on_step(done, lv)) break;
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  if (lead) save_classifier(clf, o.out_dir + "/model.safetensors", {{"source", "mscl-finetune"}});
  if (test && res.last_iteration == total) {
    res.final_eval = run_eval(o.epochs, total, true);
    if (lead) {
    write_metrics_json(o.out_dir + "/metrics.json", res.final_eval, o,
                       {{"epochs", o.epochs}, {"iterations", total}, {"train_seconds", res.seconds - (res.eval_seconds - res.final_eval.seconds)},
                        {"evaluations", res.evaluations}});
    save_confusion_png(res.final_eval.metrics, o.class_names, o.out_dir + "/confusion.png");
    }
  }
  clf.eval();
  return res;
}

}  // namespace mscl::eval
