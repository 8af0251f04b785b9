// Time of the MSCL augmentation (mscl::augment) per sample on ONE thread: the q and k views
// (RGB 3×8×128×171 + flow 2×16×128×171 in, RGB 3×8×112×112 + colour-coded flow 3×16×112×112
// out, each view) and its stages. The loader needs >= 2× the training step's clips/s on 2 cores;
// the "clips/s" counter (= items_per_second) is per thread.
#include <benchmark/benchmark.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "mscl/augment/policies.hpp"

using namespace mscl;
using namespace mscl::augment;

namespace {

struct inputs {
  clip_tensor rgb, flow;
  inputs() {
#ifdef _OPENMP
    omp_set_num_threads(1);
#endif
    rgb = clip_tensor::empty({3, 8, 128, 171});
    flow = clip_tensor::empty({2, 16, 128, 171});
    generator g(1);
    g.fill_uniform(rgb.data(), rgb.numel(), 0.0, 1.0);
    g.fill_uniform(flow.data(), flow.numel(), -4.0, 4.0);
    flow_max_length_normalize().apply_flow({}, flow);
  }
};
const inputs& data() {
  static const inputs d;
  return d;
}

void set_rate(benchmark::State& st) {
  st.SetItemsProcessed(st.iterations());
  st.counters["clips/s"] = benchmark::Counter(double(st.iterations()), benchmark::Counter::kIsRate);
}

// The full q + k pipeline for one sample: draw both views' params, apply to RGB and flow.
void BM_mscl_two_views(benchmark::State& st) {
  const auto& d = data();
  const auto pipe = make_mscl_view_pipeline();
  generator gen(7);
  for (auto _ : st) {
    view_pair v = pipe(gen, d.rgb, d.flow);
    benchmark::DoNotOptimize(v.q.rgb.data());
    benchmark::DoNotOptimize(v.k.flow.data());
  }
  set_rate(st);
}
BENCHMARK(BM_mscl_two_views)->Name("mscl_two_views/3x8x128x171+2x16x128x171")->Unit(benchmark::kMillisecond);

// The same with the polynomial-atan2 flow colour coding (flow_color_code_options::fast_atan2).
void BM_mscl_two_views_fast_coding(benchmark::State& st) {
  const auto& d = data();
  mscl_view_options o;
  o.flow_coding.fast_atan2 = true;
  const auto pipe = make_mscl_view_pipeline(o);
  generator gen(7);
  for (auto _ : st) {
    view_pair v = pipe(gen, d.rgb, d.flow);
    benchmark::DoNotOptimize(v.q.rgb.data());
    benchmark::DoNotOptimize(v.k.flow.data());
  }
  set_rate(st);
}
BENCHMARK(BM_mscl_two_views_fast_coding)->Name("mscl_two_views_fast_coding/3x8x128x171+2x16x128x171")->Unit(benchmark::kMillisecond);

// Worst case: every random op applied (flip, jitter, grey, blur) on both views.
void BM_mscl_two_views_all_ops(benchmark::State& st) {
  const auto& d = data();
  mscl_view_options o;
  o.flip_p = o.jitter_p = o.grey_p = o.blur_p = 1.0;
  const auto pipe = make_mscl_view_pipeline(o);
  generator gen(7);
  for (auto _ : st) {
    view_pair v = pipe(gen, d.rgb, d.flow);
    benchmark::DoNotOptimize(v.q.rgb.data());
  }
  set_rate(st);
}
BENCHMARK(BM_mscl_two_views_all_ops)->Name("mscl_two_views_all_ops/3x8x128x171+2x16x128x171")->Unit(benchmark::kMillisecond);

// Data-stage FRA per sample (before the views): rotated copy of 16 normalised maps.
void BM_fra_rotated_copy(benchmark::State& st) {
  const auto& d = data();
  flow_rotation rot;
  generator gen(3);
  for (auto _ : st) {
    clip_tensor r = rot.rotated_copy(rot.sample(gen, {}), d.flow);
    benchmark::DoNotOptimize(r.data());
  }
  set_rate(st);
}
BENCHMARK(BM_fra_rotated_copy)->Name("fra_rotated_copy/2x16x128x171")->Unit(benchmark::kMillisecond);

// Stages of one view, for where the time goes.
template <class F>
void stage(benchmark::State& st, F&& f) {
  for (auto _ : st) f();
  set_rate(st);
}
const random_resized_crop::params& crop_params() {
  static const random_resized_crop::params p = [] {
    generator g(11);
    return random_resized_crop().sample(g, clip_geometry::of(data().rgb, &data().flow));
  }();
  return p;
}
void BM_stage_crop_rgb(benchmark::State& st) {
  stage(st, [&] {
    clip_tensor x = data().rgb;
    random_resized_crop().apply(crop_params(), x);
    benchmark::DoNotOptimize(x.data());
  });
}
void BM_stage_crop_flow(benchmark::State& st) {
  stage(st, [&] {
    clip_tensor x = data().flow;
    random_resized_crop().apply_flow(crop_params(), x);
    benchmark::DoNotOptimize(x.data());
  });
}
clip_tensor small_rgb() { return clip_tensor::full({3, 8, 112, 112}, 0.4f); }
void BM_stage_jitter(benchmark::State& st) {
  clip_tensor x = small_rgb();
  jitter_factors f;
  f.brightness = 1.1;
  f.contrast = 0.9;
  f.saturation = 1.2;
  f.hue = 0.05;
  stage(st, [&] { color_jitter().apply({{f}}, x); });
}
void BM_stage_grayscale(benchmark::State& st) {
  clip_tensor x = small_rgb();
  stage(st, [&] { grayscale().apply({}, x); });
}
void BM_stage_blur(benchmark::State& st) {
  clip_tensor x = small_rgb();
  stage(st, [&] { gaussian_blur().apply({1.0}, x); });
}
void BM_stage_normalize(benchmark::State& st) {
  clip_tensor x = small_rgb();
  stage(st, [&] { normalize().apply({}, x); });
}
void BM_stage_flip_flow(benchmark::State& st) {
  clip_tensor x = clip_tensor::full({2, 16, 112, 112}, 0.1f);
  stage(st, [&] { horizontal_flip().apply_flow({}, x); });
}
void BM_stage_color_code(benchmark::State& st) {
  clip_tensor src = clip_tensor::empty({2, 16, 112, 112});
  generator g(5);
  g.fill_uniform(src.data(), src.numel(), -0.7, 0.7);
  stage(st, [&] {
    clip_tensor x = src;
    flow_color_code().apply_flow({}, x);
    benchmark::DoNotOptimize(x.data());
  });
}
void BM_stage_color_code_fast(benchmark::State& st) {
  clip_tensor src = clip_tensor::empty({2, 16, 112, 112});
  generator g(5);
  g.fill_uniform(src.data(), src.numel(), -0.7, 0.7);
  flow_color_code_options o;
  o.fast_atan2 = true;
  stage(st, [&] {
    clip_tensor x = src;
    flow_color_code(o).apply_flow({}, x);
    benchmark::DoNotOptimize(x.data());
  });
}
BENCHMARK(BM_stage_crop_rgb)->Name("stage/crop_resize_rgb/3x8x128x171->112")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_stage_crop_flow)->Name("stage/crop_resize_flow/2x16x128x171->112")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_stage_jitter)->Name("stage/color_jitter/3x8x112x112")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_stage_grayscale)->Name("stage/grayscale/3x8x112x112")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_stage_blur)->Name("stage/gaussian_blur11/3x8x112x112")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_stage_normalize)->Name("stage/normalize/3x8x112x112")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_stage_flip_flow)->Name("stage/flip_flow/2x16x112x112")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_stage_color_code)->Name("stage/flow_color_code/2x16x112x112")->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_stage_color_code_fast)->Name("stage/flow_color_code_fast/2x16x112x112")->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
