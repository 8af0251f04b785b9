// Convolution kernels (include/mscl/backend/cpu/conv.hpp) on every distinct r3d_18 conv shape at
// input 3×8×112×112, N = 1 and 8, forward / grad-input / grad-weight, per engine, 2 OpenMP threads.
// Counter GFLOP/s = 2·MACs / wall time (the same FLOP convention as shared/spec/BASELINES.md).
//
// Engines (the last path component of each name):
//   onednn          oneDNN forced for every conv (blocked layouts chosen by oneDNN + reorders)
//   portable        im2col + Eigen GEMM, default threading schedule
//   automatic       the library default: oneDNN except where prefer_portable() routes to portable
//                   (only in the r3d18_all_convs rows; per shape it is one of the two above)
//   onednn_plain    oneDNN on our plain ncdhw/oidhw buffers (the layout experiment)
//   portable_split / portable_tasks  (fwd only) the two portable threading schedules forced
// r3d18_all_convs/<pass>/N:8/<engine> runs the 20 convolutions of one r3d_18 forward (or
// backward) pass in order, so its time compares with PyTorch's full forward in BASELINES.md.
//
// Run:  OMP_NUM_THREADS is ignored; the program calls omp_set_num_threads(2) (--threads=K to change).
//   build-<you>/benchmarks/conv_bench --benchmark_min_time=0.2
#include <benchmark/benchmark.h>

#include <cstdint>
#include <ctime>
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <mscl/backend/cpu/conv.hpp>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace ck = mscl::backend::cpu_kernels;
using mscl::index_t;

namespace {

struct shape_case {
  const char* name;
  index_t ci, t, h, w, co;
  index_t k[3], s[3], p[3];
  int count;  // how many times r3d_18 uses this shape
};

// r3d_18 at 3×8×112×112 (torchvision.models.video.r3d_18): stem, 4 layers × 2 BasicBlocks, a
// 1×1×1 stride-2 downsample in layers 2–4. 20 convolutions, 20.35 GMAC per clip with the fc.
const shape_case r3d18_shapes[] = {
    {"stem", 3, 8, 112, 112, 64, {3, 7, 7}, {1, 2, 2}, {1, 3, 3}, 1},
    {"layer1", 64, 8, 56, 56, 64, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 4},
    {"layer2_first", 64, 8, 56, 56, 128, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, 1},
    {"layer2", 128, 4, 28, 28, 128, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 3},
    {"layer2_down", 64, 8, 56, 56, 128, {1, 1, 1}, {2, 2, 2}, {0, 0, 0}, 1},
    {"layer3_first", 128, 4, 28, 28, 256, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, 1},
    {"layer3", 256, 2, 14, 14, 256, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 3},
    {"layer3_down", 128, 4, 28, 28, 256, {1, 1, 1}, {2, 2, 2}, {0, 0, 0}, 1},
    {"layer4_first", 256, 2, 14, 14, 512, {3, 3, 3}, {2, 2, 2}, {1, 1, 1}, 1},
    {"layer4", 512, 1, 7, 7, 512, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, 3},
    {"layer4_down", 256, 2, 14, 14, 512, {1, 1, 1}, {2, 2, 2}, {0, 0, 0}, 1},
};

ck::conv3d_geometry geometry(const shape_case& c, index_t n) {
  ck::conv3d_geometry g;
  g.n = n; g.c_in = c.ci; g.t = c.t; g.h = c.h; g.w = c.w; g.c_out = c.co;
  g.kt = c.k[0]; g.kh = c.k[1]; g.kw = c.k[2];
  g.st = c.s[0]; g.sh = c.s[1]; g.sw = c.s[2];
  g.pt = c.p[0]; g.ph = c.p[1]; g.pw = c.p[2];
  return g;
}

std::string shape_name(const shape_case& c) {
  auto s = [](index_t v) { return std::to_string(v); };
  return std::string(c.name) + "_" + s(c.ci) + "x" + s(c.t) + "x" + s(c.h) + "x" + s(c.w) + "_to" + s(c.co) +
         "_k" + s(c.k[0]) + s(c.k[1]) + s(c.k[2]) + "_s" + s(c.s[0]) + s(c.s[1]) + s(c.s[2]) + "_p" + s(c.p[0]) +
         s(c.p[1]) + s(c.p[2]);
}

enum class pass { fwd, bwd_data, bwd_weight };
const char* pass_name(pass p) { return p == pass::fwd ? "fwd" : p == pass::bwd_data ? "bwd_data" : "bwd_weight"; }

enum class engine { onednn, portable, onednn_plain, portable_split, portable_tasks, automatic };
const char* engine_name(engine e) {
  switch (e) {
    case engine::onednn: return "onednn";
    case engine::portable: return "portable";
    case engine::onednn_plain: return "onednn_plain";
    case engine::portable_split: return "portable_split";
    case engine::portable_tasks: return "portable_tasks";
    case engine::automatic: return "automatic";
  }
  return "?";
}

void select(engine e) {
  const bool dnn = e == engine::onednn || e == engine::onednn_plain;
  ck::set_conv_engine(e == engine::automatic ? ck::conv_engine::automatic
                      : dnn                   ? ck::conv_engine::onednn
                                              : ck::conv_engine::portable);
#if MSCL_WITH_ONEDNN
  ck::onednn::set_layout(e == engine::onednn_plain ? ck::onednn::layout::plain : ck::onednn::layout::blocked);
#endif
  ck::portable::forward_strategy() = e == engine::portable_split ? 1 : e == engine::portable_tasks ? 2 : 0;
}

void fill(std::vector<float>& v, std::uint32_t seed) {
  std::uint32_t s = seed * 2654435761u + 1;
  for (auto& x : v) {
    s = s * 1664525u + 1013904223u;
    x = float(s >> 8) * (1.0f / 16777216.0f) - 0.5f;
  }
}

struct buffers {
  std::vector<float> x, w, b, y, gy, gx, gw, gb;
  explicit buffers(const ck::conv3d_geometry& g)
      : x(g.x_numel()), w(g.w_numel()), b(g.c_out), y(g.y_numel()), gy(g.y_numel()), gx(g.x_numel()),
        gw(g.w_numel()), gb(g.c_out) {
    fill(x, 1); fill(w, 2); fill(b, 3); fill(gy, 4);
  }
  void run(const ck::conv3d_geometry& g, pass p) {
    switch (p) {
      case pass::fwd: ck::conv3d_forward<float>(g, x.data(), w.data(), nullptr, y.data()); break;
      case pass::bwd_data: ck::conv3d_backward_data<float>(g, gy.data(), w.data(), gx.data()); break;
      case pass::bwd_weight: ck::conv3d_backward_weight<float>(g, x.data(), gy.data(), gw.data(), nullptr); break;
    }
  }
};

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

int bench_threads = 2;

// The dev host is shared and often oversubscribed (load 5-9 on 2 vCPUs), so wall-clock rates
// mostly measure the neighbours. "GFLOP/s_cpu" divides the work by the process's CPU time over
// the thread count instead: the rate the kernel would reach on dedicated cores if every CPU cycle
// it got was useful (OpenMP spin-waiting counts as used, so it errs low).
void set_counters(benchmark::State& state, double macs, double cpu_seconds) {
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * macs * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s_cpu"] =
      2.0 * macs * 1e-9 * double(state.iterations()) / std::max(1e-9, cpu_seconds / bench_threads);
}

void bm_conv(benchmark::State& state, shape_case c, index_t n, pass p, engine e) {
  select(e);
  const auto g = geometry(c, n);
  buffers buf(g);
  buf.run(g, p);  // primitive creation, workspace allocation
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    buf.run(g, p);
    benchmark::ClobberMemory();
  }
  set_counters(state, g.macs(), process_cpu_seconds() - cpu0);
#if MSCL_WITH_ONEDNN
  if (e == engine::onednn || e == engine::onednn_plain) {
    const auto kind = p == pass::fwd ? ck::onednn::op_kind::forward
                      : p == pass::bwd_data ? ck::onednn::op_kind::backward_data
                                            : ck::onednn::op_kind::backward_weight;
    state.SetLabel(ck::onednn::implementation(g, kind, false));
  }
#endif
}

// All 20 convolutions of one r3d_18 pass, in network order (shapes repeated `count` times).
void bm_all(benchmark::State& state, index_t n, pass p, engine e) {
  select(e);
  std::vector<ck::conv3d_geometry> geoms;
  std::vector<std::unique_ptr<buffers>> bufs;
  double macs = 0;
  for (const auto& c : r3d18_shapes) {
    geoms.push_back(geometry(c, n));
    bufs.push_back(std::make_unique<buffers>(geoms.back()));
  }
  auto one_pass = [&] {
    for (std::size_t i = 0; i < geoms.size(); ++i)
      for (int r = 0; r < r3d18_shapes[i].count; ++r) {
        // A training step does not need grad-input of the stem (the clip has no gradient).
        if (p == pass::bwd_data && i == 0) continue;
        bufs[i]->run(geoms[i], p);
      }
  };
  for (std::size_t i = 0; i < geoms.size(); ++i)
    if (!(p == pass::bwd_data && i == 0)) macs += r3d18_shapes[i].count * geoms[i].macs();
  one_pass();
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    one_pass();
    benchmark::ClobberMemory();
  }
  set_counters(state, macs, process_cpu_seconds() - cpu0);
  state.counters["GMAC"] = macs * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--threads=", 10) == 0) bench_threads = std::atoi(argv[i] + 10);
#if defined(_OPENMP)
  omp_set_num_threads(bench_threads);
#endif
  const std::vector<engine> main_engines = ck::onednn_available()
                                               ? std::vector<engine>{engine::onednn, engine::portable}
                                               : std::vector<engine>{engine::portable};
  std::vector<engine> extra;
  if (ck::onednn_available()) extra.push_back(engine::onednn_plain);
  for (index_t n : {1, 8})
    for (pass p : {pass::fwd, pass::bwd_data, pass::bwd_weight})
      for (const auto& c : r3d18_shapes) {
        std::vector<engine> engines = main_engines;
        engines.insert(engines.end(), extra.begin(), extra.end());
        if (p == pass::fwd) {
          engines.push_back(engine::portable_split);
          engines.push_back(engine::portable_tasks);
        }
        for (engine e : engines) {
          const std::string name = std::string(pass_name(p)) + "/" + shape_name(c) + "/N:" + std::to_string(n) +
                                   "/" + engine_name(e);
          benchmark::RegisterBenchmark(name.c_str(), bm_conv, c, n, p, e)->UseRealTime()->Unit(benchmark::kMillisecond);
        }
      }
  for (index_t n : {1, 8})
    for (pass p : {pass::fwd, pass::bwd_data, pass::bwd_weight}) {
      std::vector<engine> engines = main_engines;
      if (ck::onednn_available()) engines.insert(engines.begin(), engine::automatic);
      engines.insert(engines.end(), extra.begin(), extra.end());
      for (engine e : engines) {
        const std::string name = std::string("r3d18_all_convs/") + pass_name(p) + "/N:" + std::to_string(n) + "/" +
                                 engine_name(e);
        benchmark::RegisterBenchmark(name.c_str(), bm_all, n, p, e)->UseRealTime()->Unit(benchmark::kMillisecond);
      }
    }
  // Drop our own flag before Google Benchmark parses the rest.
  int out = 1;
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--threads=", 10) != 0) argv[out++] = argv[i];
  argc = out;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
