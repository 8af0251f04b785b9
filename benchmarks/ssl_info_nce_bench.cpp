// The fused InfoNCE (include/mscl/ssl/info_nce.hpp) at MoCo scale: B = 32 queries, D = 128,
// K = 65 536 age-weighted negatives, τ = 0.07, float; forward only and forward + backward
// (gradient to q), against the same loss composed from generic ops (mul/sum for the positive,
// matmul against the pre-weighted bank, cat, scale, cross_entropy) and the bank GEMM alone
// (the floor: 2·B·D·K FLOP forward, the same again backward).
// Also the queue's per-step work: snapshot weights and one enqueue of 128 keys.
//
// Run: build-<you>/benchmarks/ssl_info_nce_bench --benchmark_min_time=1
//      (2 OpenMP threads unless OMP_NUM_THREADS says otherwise)
#include <benchmark/benchmark.h>

#include <mscl/ops/linalg.hpp>
#include <mscl/ops/reduce.hpp>
#include <mscl/ops/loss.hpp>
#include <mscl/ssl/info_nce.hpp>
#include <mscl/ssl/memory_queue.hpp>

using namespace mscl;
using TF = tensor<float>;

namespace {
constexpr index_t kB = 32, kD = 128, kK = 65536;

struct inputs {
  TF q, k, bank, w, wbank;
  inputs() {
    generator g(1);
    ssl::memory_queue<float> queue(kD, kK, g);
    for (int i = 0; i < kK / 128; ++i) {  // realistic ages
      TF keys = TF::empty({128, kD});
      g.fill_normal(keys.data(), keys.numel(), 0, 0.1);
      if (i % 7 == 0) queue.enqueue(keys);
    }
    bank = queue.buffer().clone();
    w = queue.weights();
    q = ops::l2_normalize(TF::empty({kB, kD}), 1);
    g.fill_normal(q.data(), q.numel(), 0, 1);
    q = ops::l2_normalize(q, 1);
    k = TF::empty({kB, kD});
    g.fill_normal(k.data(), k.numel(), 0, 1);
    k = ops::l2_normalize(k, 1);
    wbank = bank.clone();
    for (index_t c = 0; c < kD; ++c)
      for (index_t j = 0; j < kK; ++j) wbank.data()[c * kK + j] *= w.data()[j];
  }
};
inputs& data() {
  static inputs d;
  return d;
}
void set_flops(benchmark::State& st, double passes) {
  st.counters["GFLOP/s"] = benchmark::Counter(passes * 2.0 * kB * kD * kK * double(st.iterations()) / 1e9,
                                              benchmark::Counter::kIsRate);
}

void fused_forward(benchmark::State& st) {
  auto& d = data();
  no_grad guard;
  for (auto _ : st) benchmark::DoNotOptimize(ssl::info_nce(d.q, d.k, d.bank, d.w, 0.07).loss.item());
  set_flops(st, 1);
}
void fused_forward_backward(benchmark::State& st) {
  auto& d = data();
  for (auto _ : st) {
    TF q = d.q.detach();
    q.set_requires_grad(true);
    ssl::info_nce(q, d.k, d.bank, d.w, 0.07).loss.backward();
    benchmark::DoNotOptimize(q.grad().data()[0]);
  }
  set_flops(st, 2);
}
void composed_forward_backward(benchmark::State& st) {
  auto& d = data();
  const std::vector<index_t> labels(std::size_t(kB), 0);
  for (auto _ : st) {
    TF q = d.q.detach();
    q.set_requires_grad(true);
    TF lpos = ops::reshape(ops::sum(ops::mul(q, d.k), 1), {kB, 1});
    TF logits = ops::scale(ops::cat<float, cpu>({lpos, ops::matmul(q, d.wbank)}, 1), 1.0f / 0.07f);
    ops::cross_entropy(logits, labels).backward();
    benchmark::DoNotOptimize(q.grad().data()[0]);
  }
  set_flops(st, 2);
}
void bank_gemm_only(benchmark::State& st) {
  auto& d = data();
  no_grad guard;
  for (auto _ : st) benchmark::DoNotOptimize(ops::matmul(d.q, d.bank).data()[0]);
  set_flops(st, 1);
}
void queue_weights(benchmark::State& st) {
  generator g(2);
  ssl::memory_queue<float> queue(kD, kK, g);
  for (auto _ : st) benchmark::DoNotOptimize(queue.weights().data()[0]);
}
void queue_enqueue_128(benchmark::State& st) {
  generator g(3);
  ssl::memory_queue<float> queue(kD, kK, g);
  TF keys = TF::empty({128, kD});
  g.fill_normal(keys.data(), keys.numel(), 0, 1);
  for (auto _ : st) queue.enqueue(keys);
}
}  // namespace

BENCHMARK(fused_forward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(fused_forward_backward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(composed_forward_backward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bank_gemm_only)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(queue_weights)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(queue_enqueue_128)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_MAIN();
