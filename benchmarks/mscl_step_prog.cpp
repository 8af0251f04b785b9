// One full MSCL training step (both branches, key encoders, neck, all heads, queues, SGD) at
// the paper's shapes, and the same step's parts measured alone, so the overhead of everything
// that is not a network forward/backward is visible. Prints a table and one JSON line.
//
//   mscl_step_prog [--batch 8] [--frames 8] [--size 112] [--queue 65536] [--iters 3] [--warmup 1]
//                  [--threads 2] [--rgb-width 64] [--flow-width 16] [--rgb-depth 18] [--neck 8*flow-width]
//                  [--neck-pconvs 2]
//                  [--dim 128]
// The CPU demo's shapes: --batch 32 --size 32 --queue 256 --rgb-width 16 --rgb-depth 10 --flow-width 8
//                        --neck 64 --dim 64 --neck-pconvs 0
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <mscl/data/random_pair_source.hpp>
#include <mscl/mscl.hpp>
#include <mscl/ssl/mscl_objective.hpp>
#include <string>
#ifdef _OPENMP
#include <omp.h>
#endif

using namespace mscl;
using tensor_t = tensor<float>;

namespace {
double median_ms(int warmup, int iters, const std::function<void()>& f) {
  std::vector<double> t;
  for (int i = 0; i < warmup + iters; ++i) {
    const auto a = std::chrono::steady_clock::now();
    f();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count();
    if (i >= warmup) t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
tensor_t randn(const shape_t& s, std::uint64_t seed, bool grad = false) {
  tensor_t x = tensor_t::empty(s);
  generator(seed).fill_normal(x.data(), x.numel(), 0, 1);
  if (grad) x.set_requires_grad(true);
  return x;
}
}  // namespace

int main(int argc, char** argv) {
  long batch = 8, frames = 8, size = 112, queue = 65536, iters = 3, warmup = 1, threads = 2, rgb_width = 64, flow_width = 16,
       rgb_depth = 18, neck_channels = 0, neck_pconvs = 2, dim = 128;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const long v = std::stol(argv[i + 1]);
    if (k == "--batch") batch = v;
    else if (k == "--frames") frames = v;
    else if (k == "--size") size = v;
    else if (k == "--queue") queue = v;
    else if (k == "--iters") iters = v;
    else if (k == "--warmup") warmup = v;
    else if (k == "--threads") threads = v;
    else if (k == "--rgb-width") rgb_width = v;
    else if (k == "--flow-width") flow_width = v;
    else if (k == "--rgb-depth") rgb_depth = v;
    else if (k == "--neck") neck_channels = v;
    else if (k == "--neck-pconvs") neck_pconvs = v;
    else if (k == "--dim") dim = v;
    else { std::cerr << "unknown option " << k << "\n"; return 2; }
  }
#ifdef _OPENMP
  omp_set_num_threads(int(threads));
#endif
  ssl::mscl_options o;
  o.queue_size = queue;
  o.rgb_width = rgb_width;
  o.flow_width = flow_width;
  o.neck_channels = neck_channels > 0 ? neck_channels : 8 * flow_width;
  o.rgb_depth = int(rgb_depth);
  o.neck_pconvs = int(neck_pconvs);
  o.embedding_dim = dim;
  ssl::mscl_objective<float> obj(o);
  data::random_pair_source<float>::options so;
  so.batch = batch; so.frames = frames; so.size = size;
  data::random_pair_source<float> src(so);
  const auto b = src.batch(0);
  optim::sgd<float> opt(obj.trainable_parameters(), {0.02, 0.9, 1e-4, false});
  const int W = int(warmup), I = int(iters);

  // ---- the full step
  const double step = median_ms(W, I, [&] {
    auto loss = obj.forward(b);
    opt.zero_grad();
    loss.backward();
    optim::clip_grad_norm(obj.trainable_parameters(), 40.0);
    opt.step();
  });

  // ---- parts alone
  models::video_resnet_taps<float, cpu> taps;
  const double rgb_q = median_ms(W, I, [&] {
    obj.rgb_q->train();
    auto z = obj.rgb_q->forward(b.rgb_q, &taps);
    ops::sum(z).backward();
  });
  const double rgb_k = median_ms(W, I, [&] { no_grad g; obj.rgb_k->forward(b.rgb_k); });
  const double flow_q = median_ms(W, I, [&] {
    for (const auto* x : {&b.flow_q, &b.flow_aug_q}) {
      auto z = obj.flow_q->forward(*x);
      ops::sum(z).backward();
    }
  });
  const double flow_k = median_ms(W, I, [&] {
    no_grad g;
    obj.flow_k->forward(b.flow_k);
    obj.flow_k->forward(b.flow_aug_k);
  });
  obj.rgb_q->forward(b.rgb_q, &taps);
  const tensor_t l2 = taps.layer2.detach().clone().set_requires_grad(true), l3 = taps.layer3.detach().clone().set_requires_grad(true),
                 l4 = taps.layer4.detach().clone().set_requires_grad(true);
  const double neck = median_ms(W, I, [&] { ops::sum(obj.neck->forward_level0({l2, l3, l4})).backward(); });

  const index_t d = o.embedding_dim;
  const tensor_t zr = ops::l2_normalize(randn({batch, d}, 1)), zf = ops::l2_normalize(randn({batch, d}, 2)),
                 za = ops::l2_normalize(randn({batch, d}, 3));
  const double heads = median_ms(W, I, [&] {
    auto qr = zr.clone().set_requires_grad(true), qf = zf.clone().set_requires_grad(true), qa = za.clone().set_requires_grad(true);
    const auto br = obj.rgb_queue->snapshot(o.queue_decay), bf = obj.flow_queue->snapshot(o.queue_decay);
    auto total = ssl::info_nce(qr, zr, br.bank, br.weights, 0.07).loss;
    for (const auto& [q, k, bank] : {std::tuple{qf, zf, &bf}, std::tuple{qa, za, &bf}, std::tuple{qr, zf, &bf},
                                     std::tuple{qf, zr, &br}, std::tuple{qr, za, &bf}, std::tuple{qa, zr, &br}})
      total = ops::add(total, ssl::info_nce(q, k, bank->bank, bank->weights, 0.07).loss);
    auto rf = randn({batch, 8 * flow_width, 4}, 4, true), fb = randn({batch, 8 * flow_width, 4}, 5, true),
         fa = randn({batch, 8 * flow_width, 4}, 6, true);
    total = ops::add(total, ssl::lmcl(rf, fb, fa, 0.07).loss);
    total.backward();
  });
  const double queues = median_ms(W, I, [&] {
    obj.rgb_queue->enqueue(zr);
    obj.flow_queue->enqueue(zf);
  });
  const double optim_ms = median_ms(W, I, [&] {
    optim::clip_grad_norm(obj.trainable_parameters(), 40.0);
    opt.step();
  });

  const double nets = rgb_q + rgb_k + flow_q + flow_k + neck;
  const double overhead = heads + queues + optim_ms;
  std::printf("MSCL training step, batch %ld, %ldx%ldx%ld, K=%ld, %ld threads (median of %ld after %ld warm-up)\n", batch,
              frames, size, size, queue, threads, iters, warmup);
  std::printf("  %-44s %10.1f ms\n", "full step", step);
  std::printf("  %-44s %10.1f ms  %5.1f %%\n", "RGB query backbone+MLP fwd+bwd", rgb_q, 100 * rgb_q / step);
  std::printf("  %-44s %10.1f ms  %5.1f %%\n", "RGB key encoder fwd", rgb_k, 100 * rgb_k / step);
  std::printf("  %-44s %10.1f ms  %5.1f %%\n", "flow query fwd+bwd (base + aug)", flow_q, 100 * flow_q / step);
  std::printf("  %-44s %10.1f ms  %5.1f %%\n", "flow key encoder fwd (base + aug)", flow_k, 100 * flow_k / step);
  std::printf("  %-44s %10.1f ms  %5.1f %%\n", "TPN neck level 0 fwd+bwd", neck, 100 * neck / step);
  std::printf("  %-44s %10.1f ms  %5.1f %%\n", "heads: 7 InfoNCE + LMCL fwd+bwd", heads, 100 * heads / step);
  std::printf("  %-44s %10.1f ms  %5.1f %%\n", "queues: 2 enqueues", queues, 100 * queues / step);
  std::printf("  %-44s %10.1f ms  %5.1f %%\n", "optimiser: clip + SGD", optim_ms, 100 * optim_ms / step);
  std::printf("  heads+queues+optimiser = %.1f %% of the step (bar < 10 %%)\n", 100 * overhead / step);
  std::printf("  step / sum of network parts alone = %.3f (bar <= 1.15)\n", step / nets);
  std::printf("{\"batch\":%ld,\"frames\":%ld,\"size\":%ld,\"queue\":%ld,\"threads\":%ld,\"step_ms\":%.1f,\"rgb_q_ms\":%.1f,"
              "\"rgb_k_ms\":%.1f,\"flow_q_ms\":%.1f,\"flow_k_ms\":%.1f,\"neck_ms\":%.1f,\"heads_ms\":%.1f,\"queues_ms\":%.1f,"
              "\"optim_ms\":%.1f,\"overhead_fraction\":%.4f,\"step_over_parts\":%.4f}\n",
              batch, frames, size, queue, threads, step, rgb_q, rgb_k, flow_q, flow_k, neck, heads, queues, optim_ms,
              overhead / step, step / nets);
  return 0;
}
