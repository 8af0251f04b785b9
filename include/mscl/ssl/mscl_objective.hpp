/// \file mscl_objective.hpp
/// \brief The MSCL objective (ALGORITHM.md §1–§4): RGB and flow MoCo v2 branches with momentum
///        key encoders and negative queues, the cross-modal head (same_kn), FRA's augmented-flow
///        terms and LMCL — one code path whose parts are switched by `mscl_options`. The MoCo-RGB
///        baseline is this objective with every motion part off (`mscl_options::moco_rgb()`).
///
/// Inputs per step (`mscl_batch`): two RGB views I_q, I_k (B×3×T×H×W, normalised) and four
/// colour-coded flow clips X_q, X_k, Y_q, Y_k (B×3×T×H×W in [0,1]). What the flow tensors hold
/// is the data pipeline's business (ALGORITHM.md §1.6): the intended pairing (§11 A1, default of
/// the pipeline) is X = F(clip), Y = R_β F(clip) with one β per sample.
///
/// Defaults follow §11's fixes; each has a compatibility switch reproducing the release:
///  - A3: one EMA update and one momentum clock per step for the flow key encoder
///        (`official_double_flow_ema` = two updates and a double clock);
///  - A4: all negatives come from the banks as they were before this step's enqueue, both banks
///        are enqueued after the losses (`official_bank_order` = flow-aug and RGB→flow terms see
///        the flow bank after the base flow keys were enqueued);
///  - A5: the augmented cross-modal terms have a real weight (default 1.0 = release).
///
/// The eight loss terms and their log names: loss_cls (RGB), loss_cls_flow, loss_cls_flow_aug,
/// loss_cls_mx (RGB→flow), loss_cls_mx_r (flow→RGB), loss_cls_mx_aug, loss_cls_mx_r_aug, loss_pos
/// (LMCL). Shuffle-BN is emulated in one process by encoding the shuffled key batch in
/// sub-batches (`key_bn_splits`), see `encode_keys`.
#pragma once
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../models/tpn_neck.hpp"
#include "../models/video_resnet.hpp"
#include "../ops/shape_ops.hpp"
#include "fra.hpp"
#include "info_nce.hpp"
#include "lmcl.hpp"
#include "memory_queue.hpp"
#include "momentum.hpp"
#include "projection.hpp"

namespace mscl::ssl {

struct mscl_options {
  // ---- which parts run (ablations); the MoCo-RGB baseline switches all four off
  bool flow_moco = true;    ///< L_flow: flow↔flow MoCo
  bool cross_modal = true;  ///< L_mx, L_mx_r (and their aug versions when fra)
  bool lmcl = true;         ///< L_pos
  bool fra = true;          ///< augmented (rotated) flow: L_flow_aug, aug cross-modal terms, LMCL negatives
  // ---- sizes
  index_t rgb_width = 64;   ///< r3d_18 base width (64 = torchvision)
  int rgb_depth = 18;       ///< 18 (the paper), 10 (one block per stage: the CPU demo) or 34
  index_t flow_width = 16;  ///< flow backbone base width (16 = release)
  index_t neck_channels = 128;
  /// SEPC PConv layers of the RGB TPN neck (2 = the R18 release, 1 = its R50 variant, 0 = FPN
  /// only). Why an option: at the CPU demo's sizes the neck's 3×3×3 convolutions at level-0
  /// resolution cost as much as the RGB backbone itself (docs/demo.md, "Fourth round").
  int neck_pconvs = 2;
  index_t embedding_dim = 128;
  index_t queue_size = 65536;
  // ---- contrastive hyper-parameters
  double temperature = 0.07;
  double queue_decay = 0.99999;        ///< age decay of bank entries (§1.4, A6); 1 = off
  double momentum_base = 0.994;        ///< cosine schedule start (§1.3)
  std::int64_t momentum_samples = std::int64_t(219136) * 400;  ///< samples over which m reaches 1
  bool fixed_momentum = false;         ///< MoCo baseline configs: constant `fixed_momentum_value`
  double fixed_momentum_value = 0.999;
  // ---- loss weights (all 1 in the release)
  double w_rgb = 1, w_flow = 1, w_flow_aug = 1, w_mx = 1, w_mx_r = 1, w_mx_aug = 1, w_mx_r_aug = 1, w_pos = 1;
  /// Linear warm-up of the terms that tie RGB to flow (the four cross-modal terms and LMCL):
  /// their weights ramp from 0 to w_* over this many samples seen (0 = off, the release). Why:
  /// at the start the flow key encoder maps every clip to nearly the same embedding while the
  /// bank still holds its random initial entries, so the RGB→flow terms are minimised by pulling
  /// every RGB embedding onto that one direction — at small scale this collapsed the RGB branch
  /// (RGB MoCo loss stuck at ln(K+B), docs/demo.md). The intra-modal terms shape both encoders
  /// first.
  std::int64_t motion_warmup_samples = 0;
  /// Experimental, not in the paper or the release (0 = off, the default): a flow-feature
  /// distillation curriculum. A predictor MLP maps the RGB query backbone's pooled features onto
  /// the flow query backbone's pooled features of the same clip, centred over the batch
  /// (stop-gradient target), loss 2 − 2·cos, weight w_distill fading linearly to 0 over
  /// distill_fade_samples (0 = constant). Why: at small scale the RGB→flow InfoNCE terms need
  /// hundreds of steps to leave chance (docs/demo.md); this asks whether a denser target speeds
  /// that transfer up. Measured: it does not (docs/demo.md item 13).
  double w_distill = 0;
  std::int64_t distill_fade_samples = 0;
  // ---- compatibility with the released code (§11)
  bool official_double_flow_ema = false;  ///< A3
  bool official_bank_order = false;       ///< A4
  /// Shuffle-BN in one process: the key batch is permuted and encoded in this many sub-batches
  /// (each with its own BN statistics), then un-permuted — what MoCo's per-GPU shuffle gives on
  /// several GPUs. Without it, query and positive key are normalised with statistics of the same
  /// samples, a known shortcut (matching through batch statistics). 1 = off.
  int key_bn_splits = 2;
  /// The current batch's keys (of the positive's modality, own positive excluded) join each
  /// term's negatives (§11 "batch keys among negatives"). Without them, keys fresh from the
  /// current key encoder could be told from the queue's older keys by the encoder's drift.
  /// With data parallelism these are the keys of all ranks (N_g = W·B, as one process with the
  /// global batch would see). false = the release (queue negatives only).
  bool batch_keys_as_negatives = true;
  std::uint64_t seed = 0;

  bool uses_flow() const { return flow_moco || cross_modal || lmcl || fra; }
  /// The MoCo-RGB baseline: the same objective with every motion part off.
  static mscl_options moco_rgb() {
    mscl_options o;
    o.flow_moco = o.cross_modal = o.lmcl = o.fra = false;
    return o;
  }
};

template <class T, class B = cpu>
struct mscl_batch {
  tensor<T, B> rgb_q, rgb_k;                      ///< B×3×T×H×W
  tensor<T, B> flow_q, flow_k, flow_aug_q, flow_aug_k;  ///< B×3×T×H×W colour-coded flow (unused parts may be undefined)
  /// Photometric augmentation still to apply to rgb_q / rgb_k (B×T×augment::photometric_columns,
  /// host tensors whatever B): set by a loader that leaves it to the training device
  /// (data::mscl_clip_options::rgb_photometric = false), applied and cleared by
  /// data::on_backend_source. The objective refuses a batch that still carries them.
  tensor<float, cpu> rgb_photometric_q, rgb_photometric_k;
};

/// The same batch on backend `To` (host batches to the GPU for CUDA training; parts left
/// undefined stay undefined). A no-op when the batch is already there.
template <class To, class T, class From>
mscl_batch<T, To> batch_on_backend(const mscl_batch<T, From>& b) {
  return {on_backend<To>(b.rgb_q),  on_backend<To>(b.rgb_k),      on_backend<To>(b.flow_q),
          on_backend<To>(b.flow_k), on_backend<To>(b.flow_aug_q), on_backend<To>(b.flow_aug_k),
          b.rgb_photometric_q,      b.rgb_photometric_k};
}

struct mscl_step_stats {
  std::map<std::string, double> losses;      ///< per term, unweighted
  std::map<std::string, double> accuracies;  ///< top-1 of the positive per term
  double momentum_rgb = 0, momentum_flow = 0;
};

/// Query or key encoder of one modality: backbone (no fc) + projection MLP, L2-normalised output.
template <class T, class B, class Backbone>
class embedding_encoder : public nn::module<T, B> {
 public:
  embedding_encoder(std::shared_ptr<Backbone> net, index_t dim, std::uint64_t seed) {
    backbone = this->register_module("backbone", std::move(net));
    generator gen(seed);
    const index_t f = backbone->feature_dim();
    mlp = this->register_module("mlp", std::make_shared<projection_head<T, B>>(f, f, dim, gen, true));
  }
  /// z = norm(mlp(pool(backbone(x)))); fills taps when given.
  tensor<T, B> forward(const tensor<T, B>& x, models::video_resnet_taps<T, B>* taps = nullptr) {
    return mlp->forward(backbone->features(x, taps));
  }
  /// The same, also returning the pooled backbone features (before the MLP) in `pooled`.
  tensor<T, B> forward(const tensor<T, B>& x, models::video_resnet_taps<T, B>* taps, tensor<T, B>& pooled) {
    pooled = backbone->features(x, taps);
    return mlp->forward(pooled);
  }
  std::shared_ptr<Backbone> backbone;
  std::shared_ptr<projection_head<T, B>> mlp;
};

template <class T = float, class B = cpu>
class mscl_objective : public nn::module<T, B> {
 public:
  using tensor_t = tensor<T, B>;
  using rgb_net = models::r3d_18_t<T, B>;
  using flow_net = models::r2d_18_flow_t<T, B>;
  using rgb_encoder = embedding_encoder<T, B, rgb_net>;
  using flow_encoder = embedding_encoder<T, B, flow_net>;

  explicit mscl_objective(const mscl_options& o) : options_(o) {
    MSCL_CHECK(o.temperature > 0 && o.embedding_dim > 0 && o.queue_size > 0, value_error,
               "mscl_objective: temperature, embedding_dim and queue_size must be positive");
    auto make_rgb = [&](std::uint64_t s) { return std::make_shared<rgb_net>(typename rgb_net::options{0, o.rgb_width, 3, s, rgb_net::depths_for(o.rgb_depth)}); };
    auto make_flow = [&](std::uint64_t s) { return std::make_shared<flow_net>(typename flow_net::options{0, o.flow_width, 3, s}); };
    rgb_q = this->register_module("rgb_q", std::make_shared<rgb_encoder>(make_rgb(o.seed + 1), o.embedding_dim, o.seed + 2));
    rgb_k = this->register_module("rgb_k", std::make_shared<rgb_encoder>(make_rgb(o.seed + 1), o.embedding_dim, o.seed + 2));
    copy_module_state(*rgb_k, *rgb_q);
    rgb_k->set_requires_grad(false);
    generator qgen(o.seed + 7);
    rgb_queue = std::make_unique<memory_queue<T, B>>(o.embedding_dim, o.queue_size, qgen);
    if (o.lmcl) {
      models::tpn_neck_options no;
      no.in_channels = {2 * o.rgb_width, 4 * o.rgb_width, 8 * o.rgb_width};
      no.channels = o.neck_channels;
      no.pconv_num = o.neck_pconvs;
      no.seed = o.seed + 3;
      neck = this->register_module("neck", std::make_shared<models::tpn_neck<T, B>>(no));
      MSCL_CHECK(o.neck_channels == 8 * o.flow_width, value_error,
                 "mscl_objective: LMCL compares TPN level-0 features (" << o.neck_channels
                 << " channels) with flow layer4 features (" << 8 * o.flow_width
                 << " channels); they must match (identity projections, §3)");
    }
    if (o.uses_flow()) {
      flow_q = this->register_module("flow_q", std::make_shared<flow_encoder>(make_flow(o.seed + 4), o.embedding_dim, o.seed + 5));
      flow_k = this->register_module("flow_k", std::make_shared<flow_encoder>(make_flow(o.seed + 4), o.embedding_dim, o.seed + 5));
      copy_module_state(*flow_k, *flow_q);
      flow_k->set_requires_grad(false);
      flow_queue = std::make_unique<memory_queue<T, B>>(o.embedding_dim, o.queue_size, qgen);
    }
    MSCL_CHECK(o.w_distill >= 0 && o.distill_fade_samples >= 0, value_error,
               "mscl_objective: w_distill and distill_fade_samples must be >= 0, got " << o.w_distill << " and "
                                                                                      << o.distill_fade_samples);
    if (o.w_distill > 0) {
      MSCL_CHECK(o.uses_flow(), value_error, "mscl_objective: w_distill > 0 needs the flow branch (its target)");
      generator dgen(o.seed + 9);
      const index_t fr = rgb_q->backbone->feature_dim(), ff = flow_q->backbone->feature_dim();
      distill = this->register_module("distill", std::make_shared<projection_head<T, B>>(fr, fr, ff, dgen, true));
    }
  }

  const mscl_options& options() const { return options_; }

  /// Trainable parameters (query encoders, neck).
  std::vector<tensor_t> trainable_parameters() const {
    std::vector<tensor_t> out;
    for (auto& [name, p] : this->named_parameters())
      if (p.requires_grad()) out.push_back(p);
    return out;
  }

  double momentum_at(std::int64_t n_seen) const {
    if (options_.fixed_momentum) return options_.fixed_momentum_value;
    return cosine_momentum(options_.momentum_base, options_.momentum_samples)(n_seen);
  }

  /// One forward of the whole objective: momentum updates, keys, every enabled term, then the
  /// enqueue of this step's keys. Returns the weighted total (call backward on it).
  /// update_state = false evaluates the same loss without touching the key encoders, queues or
  /// clocks (gradient checks, evaluation of a fixed state).
  tensor_t forward(const mscl_batch<T, B>& batch, mscl_step_stats* stats = nullptr, bool update_state = true) {
    const mscl_options& o = options_;
    check_batch(batch);
    const index_t nb = batch.rgb_q.shape()[0];
    const index_t ng = data_parallel.active() ? nb * data_parallel.world_size : nb;  // global batch N_g
    // The keys of all ranks in rank order (this rank's batch at rows rank·B …), gathered once
    // per key tensor: for the enqueues and, with batch_keys_as_negatives, as the extra negatives
    // of every term, so that W ranks × B see the same negatives as one process with W·B.
    std::vector<std::pair<const void*, tensor_t>> gathered;
    auto all_keys = [&](const tensor_t& k) -> tensor_t {
      if (!data_parallel.active()) return k;
      for (const auto& [id, g] : gathered)
        if (id == k.data()) return g;
      gathered.emplace_back(k.data(), data_parallel.all_gather(k));
      return gathered.back().second;
    };
    const index_t own_keys_at = data_parallel.active() ? index_t(data_parallel.rank) * nb : 0;
    mscl_step_stats local;
    mscl_step_stats& st = stats ? *stats : local;
    st = mscl_step_stats{};
    const double tau = o.temperature;
    tensor_t total;
    auto nce = [&](const tensor_t& q, const tensor_t& k, const queue_snapshot<T, B>& bank) {
      return o.batch_keys_as_negatives ? info_nce(q, k, bank.bank, bank.weights, tau, all_keys(k), true, own_keys_at)
                                       : info_nce(q, k, bank.bank, bank.weights, tau);
    };
    const double motion_ramp = o.motion_warmup_samples > 0
                                   ? std::min(1.0, double(n_seen_rgb_) / double(o.motion_warmup_samples))
                                   : 1.0;
    auto add_term = [&](const char* name, const info_nce_output<T, B>& r, double w) {
      st.losses[name] = double(r.loss.item());
      st.accuracies[name] = r.accuracy;
      tensor_t weighted = w == 1.0 ? r.loss : ops::scale(r.loss, T(w));
      total = total.defined() ? ops::add(total, weighted) : weighted;
    };

    // ---------------- RGB MoCo (§1.5 step 2)
    models::video_resnet_taps<T, B> rgb_taps;
    tensor_t h_r;  // pooled RGB query features (for the distillation curriculum)
    tensor_t zq_r = rgb_q->forward(batch.rgb_q, o.lmcl ? &rgb_taps : nullptr, h_r);
    st.momentum_rgb = momentum_at(n_seen_rgb_);
    tensor_t zk_r;
    {
      no_grad guard;
      if (update_state) ema_update(*rgb_k, *rgb_q, st.momentum_rgb);
      zk_r = encode_keys(*rgb_k, batch.rgb_k, 1);
    }
    const auto bank_r = rgb_queue->snapshot(o.queue_decay);  // W_r: pre-enqueue (both modes)
    add_term("loss_cls", nce(zq_r, zk_r, bank_r), o.w_rgb);

    // ---------------- flow branch (§1.5 steps 3–7)
    tensor_t zk_f, zk_a;
    if (o.uses_flow()) {
      models::video_resnet_taps<T, B> flow_taps, aug_taps;
      tensor_t h_f;
      tensor_t zq_f = flow_q->forward(batch.flow_q, o.lmcl ? &flow_taps : nullptr, h_f);
      if (distill) {  // experimental curriculum (mscl_options::w_distill): RGB features predict flow features
        const double fade = o.distill_fade_samples > 0
                                ? std::max(0.0, 1.0 - double(n_seen_rgb_) / double(o.distill_fade_samples))
                                : 1.0;
        // Centred over the batch: the pooled features come out of ReLUs and share a large mean
        // direction, which a constant prediction would match (cos ≈ 0.85 at step 30, measured);
        // only the variation between clips carries motion information.
        const tensor_t hf = h_f.detach();
        const tensor_t batch_mean = ops::mean(hf, 0, true);
        const tensor_t target = ops::l2_normalize(
            ops::sub(hf, ops::cat(std::vector<tensor_t>(std::size_t(hf.shape()[0]), batch_mean), 0)), 1);
        const tensor_t mean_cos = ops::mean(ops::sum(ops::mul(distill->forward(h_r), target), 1));
        st.losses["loss_distill"] = 2.0 - 2.0 * double(mean_cos.item());
        if (fade > 0) total = ops::add(total, ops::scale(mean_cos, T(-2.0 * o.w_distill * fade)));
      }
      st.momentum_flow = momentum_at(n_seen_flow_);
      {
        no_grad guard;
        if (update_state) ema_update(*flow_k, *flow_q, st.momentum_flow);
        zk_f = encode_keys(*flow_k, batch.flow_k, 2);
      }
      auto bank_f = flow_queue->snapshot(o.queue_decay);  // W_f before any enqueue
      if (o.flow_moco) add_term("loss_cls_flow", nce(zq_f, zk_f, bank_f), o.w_flow);
      if (o.official_bank_order && update_state) {  // A4 literal: base flow keys enter the bank first
        flow_queue->enqueue(all_keys(zk_f));
        bank_f = flow_queue->snapshot(o.queue_decay);
      }
      tensor_t zq_a;
      if (o.fra) {
        zq_a = flow_q->forward(batch.flow_aug_q, o.lmcl ? &aug_taps : nullptr);
        {
          no_grad guard;
          if (o.official_double_flow_ema && update_state) {  // A3 literal: second EMA, clock advanced
            ema_update(*flow_k, *flow_q, momentum_at(n_seen_flow_ + ng));
          }
          zk_a = encode_keys(*flow_k, batch.flow_aug_k, 3);
        }
        add_term("loss_cls_flow_aug", nce(zq_a, zk_a, bank_f), o.w_flow_aug);
      }
      if (o.cross_modal) {  // same_kn: negatives from the positive key's modality (§2.2)
        add_term("loss_cls_mx", nce(zq_r, zk_f, bank_f), motion_ramp * o.w_mx);
        add_term("loss_cls_mx_r", nce(zq_f, zk_r, bank_r), motion_ramp * o.w_mx_r);
        if (o.fra) {
          add_term("loss_cls_mx_aug", nce(zq_r, zk_a, bank_f), motion_ramp * o.w_mx_aug);
          add_term("loss_cls_mx_r_aug", nce(zq_a, zk_r, bank_r), motion_ramp * o.w_mx_r_aug);
        }
      }
      if (o.lmcl) {  // §3: RGB TPN level 0 vs flow layer4 of the base (and aug) query clips
        tensor_t p0 = neck->forward_level0_from_taps(rgb_taps);
        tensor_t rgb_frames = spatial_mean(p0);
        tensor_t flow_frames = spatial_mean(flow_taps.layer4);
        tensor_t aug_frames = o.fra ? spatial_mean(aug_taps.layer4) : tensor_t();
        MSCL_CHECK(rgb_frames.shape() == flow_frames.shape(), shape_error,
                   "mscl_objective: LMCL needs time-aligned features; RGB level 0 gives "
                       << to_string(rgb_frames.shape()) << ", flow layer4 gives " << to_string(flow_frames.shape()));
        auto r = lmcl(rgb_frames, flow_frames, aug_frames, tau);
        st.losses["loss_pos"] = double(r.loss.item());
        st.accuracies["loss_pos"] = r.accuracy;
        const double w_pos = motion_ramp * o.w_pos;
        tensor_t weighted = w_pos == 1.0 ? r.loss : ops::scale(r.loss, T(w_pos));
        total = ops::add(total, weighted);
      }
      if (update_state) {
        if (!o.official_bank_order) flow_queue->enqueue(all_keys(zk_f));
        n_seen_flow_ += o.official_double_flow_ema && o.fra ? 2 * ng : ng;
      }
    }
    if (update_state) {
      rgb_queue->enqueue(all_keys(zk_r));
      n_seen_rgb_ += ng;
    }
    return total;
  }

  // ---------------- state for checkpoints
  std::int64_t samples_seen_rgb() const { return n_seen_rgb_; }
  std::int64_t samples_seen_flow() const { return n_seen_flow_; }
  void set_samples_seen(std::int64_t rgb, std::int64_t flow) {
    n_seen_rgb_ = rgb;
    n_seen_flow_ = flow;
  }

  std::shared_ptr<rgb_encoder> rgb_q, rgb_k;
  std::shared_ptr<flow_encoder> flow_q, flow_k;
  std::shared_ptr<models::tpn_neck<T, B>> neck;
  std::shared_ptr<projection_head<T, B>> distill;  ///< only with w_distill > 0
  std::unique_ptr<memory_queue<T, B>> rgb_queue, flow_queue;

  /// Data parallelism (set by train::pretrain from a dist::communicator; default: one process).
  /// `all_gather` concatenates every rank's rows (axis 0) in rank order. When active, the queues
  /// enqueue the keys of all ranks, the momentum clocks advance by the global batch N_g, and
  /// shuffle-BN permutes the global key batch across ranks (ALGORITHM.md §1.2, §1.4).
  struct data_parallel_hooks {
    int rank = 0, world_size = 1;
    std::function<tensor_t(const tensor_t&)> all_gather;
    bool active() const { return world_size > 1 && bool(all_gather); }
  } data_parallel;

 private:
  /// Shuffle-BN (see mscl_options::key_bn_splits): permute, encode in sub-batches, un-permute.
  /// The permutation is a pure function of (seed, samples seen, which key), so resumed runs
  /// repeat it exactly.
  template <class Encoder>
  tensor_t encode_keys(Encoder& enc, const tensor_t& x, std::uint64_t which) {
    const index_t n = x.shape()[0];
    const int splits = std::max(1, std::min<int>(options_.key_bn_splits, int(n / 2)));
    if (data_parallel.active()) return encode_keys_across_ranks(enc, x, which);
    if (splits <= 1) return enc.forward(x).detach();
    const std::vector<index_t> perm = key_permutation(n, which);
    const tensor_t xc = x.is_contiguous() ? x : x.clone();
    const index_t per = xc.numel() / n;
    tensor_t shuffled;
    if constexpr (std::is_same_v<B, cuda>) {
      shuffled = backend::cuda_ops<B>::gather_rows(xc, perm);
    } else {
      shuffled = tensor_t::empty(x.shape());
      for (index_t i = 0; i < n; ++i)
        std::copy_n(xc.data() + perm[std::size_t(i)] * per, per, shuffled.data() + i * per);
    }
    std::vector<tensor_t> parts;
    for (int s = 0; s < splits; ++s) {
      const index_t a = n * s / splits, b = n * (s + 1) / splits;
      parts.push_back(enc.forward(ops::slice(shuffled, 0, a, b).clone()));
    }
    const tensor_t z = ops::cat(parts, 0);
    const index_t d = z.shape()[1];
    if constexpr (std::is_same_v<B, cuda>) {  // out[perm[i]] = z[i], as a gather by the inverse
      std::vector<index_t> inverse(perm.size());
      for (std::size_t i = 0; i < perm.size(); ++i) inverse[std::size_t(perm[i])] = index_t(i);
      return backend::cuda_ops<B>::gather_rows(z, inverse);
    } else {
      tensor_t out = tensor_t::empty(z.shape());
      for (index_t i = 0; i < n; ++i) std::copy_n(z.data() + i * d, d, out.data() + perm[std::size_t(i)] * d);
      return out;
    }
  }

  /// The shuffle of a key batch of n: a pure function of (seed, samples seen, which key).
  std::vector<index_t> key_permutation(index_t n, std::uint64_t which) const {
    std::vector<index_t> perm(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) perm[std::size_t(i)] = i;
    const std::uint64_t stream = 0xB0000000ull + std::uint64_t(n_seen_rgb_) * 4 + which;
    for (index_t i = n - 1; i > 0; --i) {  // Fisher-Yates with counter-based draws
      const index_t j = index_t(philox_uniform(options_.seed, stream, std::uint64_t(i)) * double(i + 1)) % (i + 1);
      std::swap(perm[std::size_t(i)], perm[std::size_t(j)]);
    }
    return perm;
  }

  /// Shuffle-BN across ranks (§1.2): gather the global key batch, permute it (every rank derives
  /// the same permutation from the counters; the release broadcasts one from rank 0), encode
  /// this rank's slice [r·B, (r+1)·B) of the shuffled batch in key_bn_splits / W sub-batches,
  /// gather the embeddings and undo the permutation. So key_bn_splits = W·s on W ranks × B
  /// computes what key_bn_splits = W·s computes in one process × W·B. key_bn_splits = 1: no
  /// shuffle, each rank encodes its own keys with its own BN statistics.
  template <class Encoder>
  tensor_t encode_keys_across_ranks(Encoder& enc, const tensor_t& x, std::uint64_t which) {
    if (options_.key_bn_splits <= 1) return enc.forward(x).detach();
    const index_t nb = x.shape()[0];
    const tensor_t all = data_parallel.all_gather(x.is_contiguous() ? x : x.clone());
    const index_t n = all.shape()[0], per = all.numel() / n, first = index_t(data_parallel.rank) * nb;
    const std::vector<index_t> perm = key_permutation(n, which);
    tensor_t mine;
    if constexpr (std::is_same_v<B, cuda>) {
      mine = backend::cuda_ops<B>::gather_rows(all, std::vector<index_t>(perm.begin() + first, perm.begin() + first + nb));
    } else {
      mine = tensor_t::empty(x.shape());
      for (index_t i = 0; i < nb; ++i)
        std::copy_n(all.data() + perm[std::size_t(first + i)] * per, per, mine.data() + i * per);
    }
    const int splits = std::max(1, std::min<int>(options_.key_bn_splits / data_parallel.world_size, int(nb / 2)));
    std::vector<tensor_t> parts;
    for (int s = 0; s < splits; ++s) {
      const index_t a = nb * s / splits, b = nb * (s + 1) / splits;
      parts.push_back(splits == 1 ? enc.forward(mine) : enc.forward(ops::slice(mine, 0, a, b).clone()));
    }
    const tensor_t z_all = data_parallel.all_gather(splits == 1 ? parts[0] : ops::cat(parts, 0));  // shuffled order
    const index_t d = z_all.shape()[1];
    if constexpr (std::is_same_v<B, cuda>) {
      std::vector<index_t> source(std::size_t(nb), 0);  // row g − first comes from shuffled position j
      for (index_t j = 0; j < n; ++j) {
        const index_t g = perm[std::size_t(j)];
        if (g >= first && g < first + nb) source[std::size_t(g - first)] = j;
      }
      return backend::cuda_ops<B>::gather_rows(z_all, source);
    } else {
      tensor_t out = tensor_t::empty({nb, d});
      for (index_t j = 0; j < n; ++j) {  // shuffled position j holds global sample perm[j]
        const index_t g = perm[std::size_t(j)];
        if (g >= first && g < first + nb) std::copy_n(z_all.data() + j * d, d, out.data() + (g - first) * d);
      }
      return out;
    }
  }

  void check_batch(const mscl_batch<T, B>& b) const {
    auto need = [&](const tensor_t& t, const char* what) {
      MSCL_CHECK(t.defined() && t.dim() == 5 && t.shape()[1] == 3, shape_error,
                 "mscl_objective: " << what << " must be B×3×T×H×W, got "
                                    << (t.defined() ? to_string(t.shape()) : std::string("undefined")));
      MSCL_CHECK(t.shape()[0] == b.rgb_q.shape()[0], shape_error,
                 "mscl_objective: " << what << " has batch " << t.shape()[0] << " but rgb_q has " << b.rgb_q.shape()[0]);
    };
    need(b.rgb_q, "rgb_q");
    need(b.rgb_k, "rgb_k");
    MSCL_CHECK(!b.rgb_photometric_q.defined() && !b.rgb_photometric_k.defined(), value_error,
               "mscl_objective: the batch's RGB views still wait for their photometric augmentation (the loader ran "
               "with rgb_photometric = false): pass the loader through data::on_backend_source, which applies it");
    if (options_.uses_flow()) {
      need(b.flow_q, "flow_q");
      need(b.flow_k, "flow_k");
      if (options_.fra) {
        need(b.flow_aug_q, "flow_aug_q");
        need(b.flow_aug_k, "flow_aug_k");
      }
    }
  }

  mscl_options options_;
  std::int64_t n_seen_rgb_ = 0, n_seen_flow_ = 0;
};

}  // namespace mscl::ssl
