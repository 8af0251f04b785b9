// Google Benchmark: r3d_18 forward (eval, no_grad) and full training step (train-mode forward,
// 400-way cross-entropy, backward, SGD momentum 0.9 wd 1e-4) at N×3×8×112×112, 2 threads.
// Items/s = clips/s. The PyTorch comparison in one run is benchmarks/peer_pytorch.py.
//   build/benchmarks/model_bench --benchmark_filter=r3d_18
#include <benchmark/benchmark.h>

#include <mscl/mscl.hpp>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {
constexpr double fwd_gflop_per_clip = 40.70;    // conv/linear MACs × 2, 8 frames at 112² (BASELINES.md)
constexpr double train_gflop_per_clip = 120.7;  // 3× forward minus the stem's input gradient

void set_threads() {
#ifdef _OPENMP
  omp_set_num_threads(2);
#endif
}

void r3d_18_forward(benchmark::State& state) {
  set_threads();
  const long n = state.range(0);
  auto net = mscl::models::r3d_18<float>(400);
  net.eval();
  auto clip = mscl::tensor<float>::empty({n, 3, 8, 112, 112});
  mscl::generator(1).fill_normal(clip.data(), clip.numel(), 0, 1);
  for (auto _ : state) {
    mscl::no_grad guard;
    auto y = net.forward(clip);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.counters["GFLOP/s"] =
      benchmark::Counter(fwd_gflop_per_clip * 1e9 * double(n), benchmark::Counter::kIsIterationInvariantRate);
}

void r3d_18_train_step(benchmark::State& state) {
  set_threads();
  const long n = state.range(0);
  auto net = mscl::models::r3d_18<float>(400);
  net.train();
  auto clip = mscl::tensor<float>::empty({n, 3, 8, 112, 112});
  mscl::generator(1).fill_normal(clip.data(), clip.numel(), 0, 1);
  std::vector<mscl::index_t> labels;
  for (long i = 0; i < n; ++i) labels.push_back(i);
  mscl::optim::sgd<float> opt(net.parameters(), {0.01, 0.9, 1e-4, false});
  for (auto _ : state) {
    auto loss = mscl::ops::cross_entropy(net.forward(clip), labels);
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.counters["GFLOP/s"] =
      benchmark::Counter(train_gflop_per_clip * 1e9 * double(n), benchmark::Counter::kIsIterationInvariantRate);
}
}  // namespace

BENCHMARK(r3d_18_forward)->Name("r3d_18/forward/8x112x112")->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond)
    ->Iterations(3)->UseRealTime();
BENCHMARK(r3d_18_train_step)->Name("r3d_18/train_step/8x112x112")->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond)
    ->Iterations(3)->UseRealTime();
BENCHMARK_MAIN();
