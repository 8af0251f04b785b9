// ssl_synthetic_prog: the demo's research question in one in-memory program — does MSCL make the
// RGB backbone more motion-sensitive than MoCo-RGB on the built-in synthetic motion dataset, at
// the same budget? It renders the videos, extracts TV-L1 flow (cached in --cache), pretrains one
// objective with the real library pieces (mscl_objective, augment presets, FRA flow packs) and
// evaluates the RGB query backbone by retrieval (test queries vs train gallery, Recall@k).
//
// This is the fast experiment loop behind the main job's settings (docs/demo.md); the main job
// itself runs the same objective through the on-disk pipeline and programs.
//
// Output: JSON lines on stdout — {"step":..,"loss":..,"terms":{..},"acc":{..}} every --log-every
// steps, {"eval":..} at each evaluation and a final {"final":true,...}.
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <mscl/augment/presets.hpp>
#include <mscl/data/synthetic.hpp>
#include <mscl/eval/retrieval.hpp>
#include <mscl/flow/tvl1.hpp>
#include <mscl/mscl.hpp>
#include <mscl/optim/schedule.hpp>
#include <mscl/optim/sgd.hpp>
#include <mscl/ssl/flow_views.hpp>
#include <mscl/ssl/mscl_objective.hpp>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {
using mscl::index_t;
using mscl::tensor;
using json = nlohmann::json;

struct args_t {
  mscl::data::synthetic_motion_options data;
  long train = 1200, test = 240;
  int frames = 8, stride = 2, crop = 32;
  std::string objective = "mscl";  // mscl | moco | random
  mscl::ssl::mscl_options obj;
  long batch = 32, steps = 300, log_every = 10, eval_every = 0;
  double lr = 0.05, wd = 1e-4, warmup = 10, budget_s = 0, area_lo = 0.3;
  double jitter_p = 0.8, grey_p = 0.2, blur_p = 0.0;
  int threads = 2, eval_clips = 2;
  std::uint64_t seed = 0;
  std::string cache = "/tmp/mscl_synth_cache";
  bool different_clips = true;
  bool eval_flow = false;
  mscl::ssl::fra_options fra;  // FRA angle grid (ALGORITHM.md §4): ratios (0.2, 1.8), 8 chunks  // also evaluate the flow query backbone (is the teacher class-informative?)
};

const char* usage =
    "usage: ssl_synthetic_prog [--objective mscl|moco|random] [--set key=value ...]\n"
    "  data:  --classes 6 --train 1200 --test 240 --data-seed 0 --motion 2.0\n"
    "         (data seed 0 renders the demo's own videos, its test split included: choose\n"
    "         settings on another, e.g. --data-seed 1000 as docs/demo.md's fourth round)\n"
    "  clip:  --frames 8 --stride 2 --crop 32 --same-clip (q and k from one clip)\n"
    "  obj:   --rgb-width 16 --rgb-depth 10 --flow-width 8 --dim 64 --queue 512 --tau 0.1 --m 0.99\n"
    "         --w name=value (w_rgb w_flow w_flow_aug w_mx w_mx_r w_mx_aug w_mx_r_aug w_pos w_distill)\n"
    "         --motion-warmup 0 --distill-fade 0 (samples)\n"
    "         --no-lmcl --no-fra --no-mx --no-flow-moco --bn-splits 2 --no-batch-keys --neck-pconvs 2\n"
    "  train: --batch 32 --steps 300 --lr 0.05 --wd 1e-4 --warmup 10 --budget-s 0 --seed 0\n"
    "         --jitter-p 0.8 --grey-p 0.2 --blur-p 0 --area-lo 0.3 --threads 2 --eval-every 0\n"
    "  fra:   --fra-grid 0.2,1.8,8 (lo,hi,chunks of the rotation grid, in units of pi)\n"
    "  eval:  --eval-clips 2 --eval-flow (also report R@k of the flow query backbone)\n";

args_t parse(int argc, char** argv) {
  args_t a;
  a.obj.rgb_width = 16;
  a.obj.rgb_depth = 10;
  a.obj.flow_width = 8;
  a.obj.neck_channels = 64;
  a.obj.embedding_dim = 64;
  a.obj.queue_size = 512;
  a.obj.temperature = 0.1;
  a.obj.fixed_momentum = true;
  a.obj.fixed_momentum_value = 0.99;
  a.obj.queue_decay = 1.0;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--help" || k == "-h") {
      std::cout << usage;
      std::exit(0);
    }
    auto flag = [&](const char* name) { return k == name; };
    if (flag("--no-lmcl")) { a.obj.lmcl = false; continue; }
    if (flag("--no-fra")) { a.obj.fra = false; continue; }
    if (flag("--no-mx")) { a.obj.cross_modal = false; continue; }
    if (flag("--no-flow-moco")) { a.obj.flow_moco = false; continue; }
    if (flag("--no-batch-keys")) { a.obj.batch_keys_as_negatives = false; continue; }
    if (flag("--same-clip")) { a.different_clips = false; continue; }
    if (flag("--eval-flow")) { a.eval_flow = true; continue; }
    MSCL_CHECK(i + 1 < argc, mscl::config_error, "ssl_synthetic_prog: option " << k << " needs a value");
    const std::string v = argv[++i];
    if (k == "--objective") a.objective = v;
    else if (k == "--classes") a.data.num_classes = std::stoi(v);
    else if (k == "--train") a.train = std::stol(v);
    else if (k == "--test") a.test = std::stol(v);
    else if (k == "--data-seed") a.data.seed = std::stoull(v);
    else if (k == "--motion") a.data.motion_px = std::stod(v);
    else if (k == "--frames") a.frames = std::stoi(v);
    else if (k == "--stride") a.stride = std::stoi(v);
    else if (k == "--crop") a.crop = std::stoi(v);
    else if (k == "--rgb-width") a.obj.rgb_width = std::stol(v);
    else if (k == "--rgb-depth") a.obj.rgb_depth = std::stoi(v);
    else if (k == "--flow-width") { a.obj.flow_width = std::stol(v); a.obj.neck_channels = 8 * a.obj.flow_width; }
    else if (k == "--dim") a.obj.embedding_dim = std::stol(v);
    else if (k == "--queue") a.obj.queue_size = std::stol(v);
    else if (k == "--tau") a.obj.temperature = std::stod(v);
    else if (k == "--m") a.obj.fixed_momentum_value = std::stod(v);
    else if (k == "--bn-splits") a.obj.key_bn_splits = std::stoi(v);
    else if (k == "--neck-pconvs") a.obj.neck_pconvs = std::stoi(v);
    else if (k == "--motion-warmup") a.obj.motion_warmup_samples = std::stoll(v);
    else if (k == "--distill-fade") a.obj.distill_fade_samples = std::stoll(v);
    else if (k == "--w") {
      const auto eq = v.find('=');
      MSCL_CHECK(eq != std::string::npos, mscl::config_error, "--w needs name=value");
      const std::string n = v.substr(0, eq);
      const double x = std::stod(v.substr(eq + 1));
      auto& o = a.obj;
      if (n == "w_rgb") o.w_rgb = x; else if (n == "w_flow") o.w_flow = x; else if (n == "w_flow_aug") o.w_flow_aug = x;
      else if (n == "w_mx") o.w_mx = x; else if (n == "w_mx_r") o.w_mx_r = x; else if (n == "w_mx_aug") o.w_mx_aug = x;
      else if (n == "w_mx_r_aug") o.w_mx_r_aug = x; else if (n == "w_pos") o.w_pos = x;
      else if (n == "w_distill") o.w_distill = x;
      else throw mscl::config_error("unknown weight " + n);
    } else if (k == "--batch") a.batch = std::stol(v);
    else if (k == "--steps") a.steps = std::stol(v);
    else if (k == "--lr") a.lr = std::stod(v);
    else if (k == "--wd") a.wd = std::stod(v);
    else if (k == "--warmup") a.warmup = std::stod(v);
    else if (k == "--budget-s") a.budget_s = std::stod(v);
    else if (k == "--seed") a.seed = std::stoull(v);
    else if (k == "--jitter-p") a.jitter_p = std::stod(v);
    else if (k == "--grey-p") a.grey_p = std::stod(v);
    else if (k == "--blur-p") a.blur_p = std::stod(v);
    else if (k == "--area-lo") a.area_lo = std::stod(v);
    else if (k == "--threads") a.threads = std::stoi(v);
    else if (k == "--eval-every") a.eval_every = std::stol(v);
    else if (k == "--eval-clips") a.eval_clips = std::stoi(v);
    else if (k == "--log-every") a.log_every = std::stol(v);
    else if (k == "--cache") a.cache = v;
    else if (k == "--fra-grid") {  // lo,hi,chunks: beta = pi (lo + (hi - lo)/chunks * c), c < chunks
      MSCL_CHECK(std::sscanf(v.c_str(), "%lf,%lf,%d", &a.fra.ratio_lo, &a.fra.ratio_hi, &a.fra.num_chunks) == 3,
                 mscl::config_error, "--fra-grid needs lo,hi,chunks, got " << v);
    }
    else throw mscl::config_error("ssl_synthetic_prog: unknown option " + k + " (see --help)");
  }
  if (a.objective == "moco") {
    a.obj.flow_moco = a.obj.cross_modal = a.obj.lmcl = a.obj.fra = false;
  }
  a.obj.seed = a.seed;
  return a;
}

// All frames of all videos (uint8 RGB, HWC per frame) and the TV-L1 flow between consecutive
// frames (MMAction2 quantisation, bound 20: value = round(255 (f + 20) / 40)).
struct video_store {
  int n = 0, frames = 0, h = 0, w = 0;
  std::vector<std::uint8_t> rgb, flow;
  std::size_t rgb_frame() const { return std::size_t(h) * std::size_t(w) * 3; }
  std::size_t flow_map() const { return std::size_t(h) * std::size_t(w) * 2; }
  const std::uint8_t* rgb_at(int v, int t) const { return rgb.data() + (std::size_t(v) * std::size_t(frames) + std::size_t(t)) * rgb_frame(); }
  const std::uint8_t* flow_at(int v, int t) const {
    return flow.data() + (std::size_t(v) * std::size_t(frames - 1) + std::size_t(t)) * flow_map();
  }
};

video_store build_store(const mscl::data::synthetic_motion_generator& gen, std::int64_t first, int count, const std::string& cache_file) {
  const auto& o = gen.options();
  video_store s;
  s.n = count;
  s.frames = o.frames;
  s.h = o.height;
  s.w = o.width;
  s.rgb.resize(std::size_t(count) * std::size_t(o.frames) * s.rgb_frame());
  s.flow.resize(std::size_t(count) * std::size_t(o.frames - 1) * s.flow_map());
  {
    std::ifstream in(cache_file, std::ios::binary);
    if (in) {
      in.read(reinterpret_cast<char*>(s.rgb.data()), std::streamsize(s.rgb.size()));
      in.read(reinterpret_cast<char*>(s.flow.data()), std::streamsize(s.flow.size()));
      if (in) return s;
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::fprintf(stderr, "rendering %d videos + TV-L1 flow -> %s\n", count, cache_file.c_str());
#pragma omp parallel for schedule(dynamic, 1)
  for (int v = 0; v < count; ++v) {
    const auto plan = gen.plan(first + v);
    mscl::data::image_u8 img;
    std::vector<std::vector<float>> grey(std::size_t(o.frames));
    for (int t = 0; t < o.frames; ++t) {
      mscl::data::synthetic_motion_generator::render_frame(plan, t, img);
      std::copy(img.pixels.begin(), img.pixels.end(), s.rgb.begin() + std::ptrdiff_t(s.rgb_at(v, t) - s.rgb.data()));
      auto& g = grey[std::size_t(t)];
      g.resize(std::size_t(s.h) * std::size_t(s.w));
      for (std::size_t p = 0; p < g.size(); ++p)
        g[p] = 0.299f * img.pixels[3 * p] + 0.587f * img.pixels[3 * p + 1] + 0.114f * img.pixels[3 * p + 2];
    }
    mscl::flow::tvl1_options fo;
    fo.threads = 1;
    mscl::flow::tvl1_workspace ws;
    std::vector<float> u(grey[0].size()), vv(grey[0].size());
    for (int t = 0; t + 1 < o.frames; ++t) {
      mscl::flow::tvl1(grey[std::size_t(t)].data(), grey[std::size_t(t + 1)].data(), s.h, s.w, u.data(), vv.data(), fo, ws);
      std::uint8_t* dst = s.flow.data() + std::ptrdiff_t(s.flow_at(v, t) - s.flow.data());
      const std::size_t plane = u.size();
      for (std::size_t p = 0; p < plane; ++p) {
        auto q = [](float f) {
          const float x = std::round(255.f * (std::clamp(f, -20.f, 20.f) + 20.f) / 40.f);
          return std::uint8_t(x);
        };
        dst[p] = q(u[p]);
        dst[plane + p] = q(vv[p]);
      }
    }
  }
  std::fprintf(stderr, "  done in %.1f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  std::ofstream out(cache_file + ".tmp", std::ios::binary);
  out.write(reinterpret_cast<const char*>(s.rgb.data()), std::streamsize(s.rgb.size()));
  out.write(reinterpret_cast<const char*>(s.flow.data()), std::streamsize(s.flow.size()));
  out.close();
  std::rename((cache_file + ".tmp").c_str(), cache_file.c_str());
  return s;
}

// 3×T×H×W RGB clip in [0,1] from frames start + t*stride.
tensor<float> rgb_clip(const video_store& s, int v, int start, int T, int stride) {
  tensor<float> c = tensor<float>::empty({3, T, s.h, s.w});
  const std::size_t plane = std::size_t(s.h) * std::size_t(s.w);
  for (int t = 0; t < T; ++t) {
    const std::uint8_t* f = s.rgb_at(v, start + t * stride);
    for (int ch = 0; ch < 3; ++ch) {
      float* d = c.data() + (std::size_t(ch) * std::size_t(T) + std::size_t(t)) * plane;
      for (std::size_t p = 0; p < plane; ++p) d[p] = float(f[3 * p + std::size_t(ch)]) / 255.f;
    }
  }
  return c;
}
// 1×2×T×H×W raw flow (pixels) of the flow maps start + t*stride.
tensor<float> flow_clip(const video_store& s, int v, int start, int T, int stride) {
  tensor<float> c = tensor<float>::empty({1, 2, T, s.h, s.w});
  const std::size_t plane = std::size_t(s.h) * std::size_t(s.w);
  for (int t = 0; t < T; ++t) {
    const std::uint8_t* f = s.flow_at(v, start + t * stride);
    for (int ch = 0; ch < 2; ++ch) {
      float* d = c.data() + (std::size_t(ch) * std::size_t(T) + std::size_t(t)) * plane;
      for (std::size_t p = 0; p < plane; ++p) d[p] = float(f[std::size_t(ch) * plane + p]) * (40.f / 255.f) - 20.f;
    }
  }
  return c;
}

tensor<float> stack_batch(const std::vector<tensor<float>>& xs) {
  mscl::shape_t s = xs[0].shape();
  s.insert(s.begin(), index_t(xs.size()));
  tensor<float> out = tensor<float>::empty(s);
  const index_t per = xs[0].numel();
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const tensor<float> c = xs[i].is_contiguous() ? xs[i] : xs[i].clone();
    std::copy(c.data(), c.data() + per, out.data() + index_t(i) * per);
  }
  return out;
}

// Recall@1/5/10 with each set centred by its own mean (ALGORITHM.md §9.3), L2, cosine.
struct recall_1_5_10 {
  double r1 = 0, r5 = 0, r10 = 0;
};
recall_1_5_10 retrieval(const std::vector<std::vector<double>>& q, const std::vector<int>& ql,
                        const std::vector<std::vector<double>>& g, const std::vector<int>& gl) {
  auto to_tensor = [](const std::vector<std::vector<double>>& rows) {
    tensor<float> t = tensor<float>::empty({index_t(rows.size()), index_t(rows[0].size())});
    for (std::size_t i = 0; i < rows.size(); ++i)
      for (std::size_t j = 0; j < rows[i].size(); ++j) t.data()[i * rows[i].size() + j] = float(rows[i][j]);
    return t;
  };
  mscl::eval::retrieval_options o;
  o.ks = {1, 5, 10};
  o.center = mscl::eval::centering::per_set;
  const auto r = mscl::eval::retrieve(to_tensor(q), ql, to_tensor(g), gl, o);
  return {r.recall[0], r.recall[1], r.recall[2]};
}

}  // namespace

int main(int argc, char** argv) {
  try {
    args_t a = parse(argc, argv);
#ifdef _OPENMP
    omp_set_num_threads(a.threads);
#endif
    using clock = std::chrono::steady_clock;
    const mscl::data::synthetic_motion_generator gen(a.data);
    ::mkdir(a.cache.c_str(), 0755);
    const std::string tag = a.cache + "/c" + std::to_string(a.data.num_classes) + "_s" + std::to_string(a.data.seed) + "_m" +
                            std::to_string(int(a.data.motion_px * 100)) + "_";
    const video_store train = build_store(gen, 0, int(a.train), tag + "train" + std::to_string(a.train) + ".bin");
    // The test videos follow the training videos (indices train, train+1, ...): the cache name
    // carries the first index, or another --train would load test videos that are training videos.
    const video_store test = build_store(gen, a.train, int(a.test),
                                         tag + "test" + std::to_string(a.test) + "_from" + std::to_string(a.train) + ".bin");
    std::vector<int> train_labels, test_labels;
    for (long i = 0; i < a.train; ++i) train_labels.push_back(gen.label_of(i));
    for (long i = 0; i < a.test; ++i) test_labels.push_back(gen.label_of(a.train + i));

    mscl::ssl::mscl_objective<float> objective(a.obj);
    const bool with_flow = a.obj.uses_flow();
    mscl::augment::mscl_view_options vo;
    vo.crop.out_height = vo.crop.out_width = a.crop;
    vo.crop.area_lo = a.area_lo;
    vo.flip_p = 0.0;  // a flip swaps right/left (and cw/ccw) on this data
    vo.jitter_p = a.jitter_p;
    vo.grey_p = a.grey_p;
    vo.blur_p = a.blur_p;
    vo.flow_coding.fast_atan2 = true;
    const auto pipeline = mscl::augment::make_mscl_view_pipeline(vo);
    const int span = (a.frames - 1) * a.stride + 1;
    const int max_start = train.frames - 1 - span;  // flow maps need t+1

    auto make_batch = [&](long it) {
      mscl::ssl::mscl_batch<float> b;
      std::vector<tensor<float>> rq(std::size_t(a.batch)), rk(rq.size()), fq(rq.size()), fk(rq.size()), aq(rq.size()), ak(rq.size());
#pragma omp parallel for schedule(dynamic, 1)
      for (long j = 0; j < a.batch; ++j) {
        mscl::generator g(a.seed * 1000003u + 17, std::uint64_t(it) * 4096u + std::uint64_t(j) * 64u);
        const int v = int(g.randint(0, index_t(a.train - 1)));
        const int sa = int(g.randint(0, max_start));
        const int sb = a.different_clips ? int(g.randint(0, max_start)) : sa;
        const tensor<float> ra = rgb_clip(train, v, sa, a.frames, a.stride), rb = rgb_clip(train, v, sb, a.frames, a.stride);
        tensor<float> pack_q, pack_k;
        if (with_flow) {
          const tensor<float> fa = mscl::ssl::normalize_flow_max_length(flow_clip(train, v, sa, a.frames, a.stride));
          const tensor<float> fb = mscl::ssl::normalize_flow_max_length(flow_clip(train, v, sb, a.frames, a.stride));
          const double angle = mscl::ssl::fra_angle(int(g.randint(0, a.fra.num_chunks - 1)), a.fra);
          const auto packs = mscl::ssl::make_flow_packs(fa, fb, {angle}, false);
          pack_q = mscl::ops::reshape(packs.q, {2, 2 * a.frames, train.h, train.w});
          pack_k = mscl::ops::reshape(packs.k, {2, 2 * a.frames, train.h, train.w});
        }
        const auto gq = mscl::augment::clip_geometry::of(ra, with_flow ? &pack_q : nullptr);
        const auto gk = mscl::augment::clip_geometry::of(rb, with_flow ? &pack_k : nullptr);
        const auto p = pipeline.sample(g, gq, gk);
        const auto views = pipeline(p, ra, pack_q, rb, pack_k);
        rq[std::size_t(j)] = views.q.rgb;
        rk[std::size_t(j)] = views.k.rgb;
        if (with_flow) {
          auto [xq, yq] = mscl::ssl::split_flow_pack(mscl::ops::reshape(views.q.flow, {1, 3, 2 * a.frames, a.crop, a.crop}));
          auto [xk, yk] = mscl::ssl::split_flow_pack(mscl::ops::reshape(views.k.flow, {1, 3, 2 * a.frames, a.crop, a.crop}));
          fq[std::size_t(j)] = xq; aq[std::size_t(j)] = yq; fk[std::size_t(j)] = xk; ak[std::size_t(j)] = yk;
        }
      }
      b.rgb_q = stack_batch(rq);
      b.rgb_k = stack_batch(rk);
      if (with_flow) {
        auto s4 = [&](std::vector<tensor<float>>& v) {
          for (auto& x : v) x = mscl::ops::reshape(x, {3, a.frames, a.crop, a.crop});
          return stack_batch(v);
        };
        b.flow_q = s4(fq); b.flow_k = s4(fk); b.flow_aug_q = s4(aq); b.flow_aug_k = s4(ak);
      }
      return b;
    };

    // evaluation: RGB query backbone, eval_clips clips per video (evenly spread), centre crop
    // Per-video features of a backbone: eval_clips clips per video (evenly spread), centre crop,
    // averaged; `input(s, v, start)` makes the network's input clip (3×T×crop×crop).
    auto backbone_features = [&](auto& net, const video_store& s, auto&& input) {
      mscl::no_grad guard;
      net.eval();
      std::vector<std::vector<double>> out(std::size_t(s.n));
      const int chunk = 64;
      for (int c = 0; c < a.eval_clips; ++c) {
        const int start = a.eval_clips == 1 ? max_start / 2 : int(double(max_start) * c / double(a.eval_clips - 1));
        for (int v0 = 0; v0 < s.n; v0 += chunk) {
          std::vector<tensor<float>> xs;
          for (int v = v0; v < std::min(s.n, v0 + chunk); ++v) xs.push_back(input(s, v, start));
          const tensor<float> f = net.features(stack_batch(xs));
          const index_t d = f.shape()[1];
          for (int v = v0; v < std::min(s.n, v0 + chunk); ++v) {
            auto& row = out[std::size_t(v)];
            row.resize(std::size_t(d), 0.0);
            for (index_t k = 0; k < d; ++k) row[std::size_t(k)] += double(f.data()[index_t(v - v0) * d + k]) / a.eval_clips;
          }
        }
      }
      net.train();
      return out;
    };
    auto centre_crop = [&](const tensor<float>& clip, const video_store& s) {
      const int y0 = (s.h - a.crop) / 2, x0 = (s.w - a.crop) / 2;
      return mscl::ops::contiguous(mscl::ops::slice(mscl::ops::slice(clip, 2, y0, y0 + a.crop), 3, x0, x0 + a.crop));
    };
    // the RGB query backbone (the evaluated model)
    auto features = [&](const video_store& s) {
      const mscl::augment::normalize norm;
      return backbone_features(*objective.rgb_q->backbone, s, [&](const video_store& st, int v, int start) {
        tensor<float> clip = centre_crop(rgb_clip(st, v, start, a.frames, a.stride), st);
        norm.apply({}, clip);
        return clip;
      });
    };
    // the same protocol on the flow query backbone (colour-coded flow)
    auto flow_features = [&](const video_store& s) {
      const mscl::augment::flow_color_code coder(vo.flow_coding);
      return backbone_features(*objective.flow_q->backbone, s, [&](const video_store& st, int v, int start) {
        tensor<float> f = mscl::ssl::normalize_flow_max_length(flow_clip(st, v, start, a.frames, a.stride));
        f = centre_crop(mscl::ops::reshape(f, {2, a.frames, st.h, st.w}), st);
        coder.apply_flow({}, f);
        return f;
      });
    };
    auto evaluate = [&](long step, double elapsed) {
      const auto e0 = clock::now();
      const auto r = retrieval(features(test), test_labels, features(train), train_labels);
      json j = {{"eval", step}, {"r1", r.r1}, {"r5", r.r5}, {"r10", r.r10}, {"train_s", elapsed},
                {"eval_s", std::chrono::duration<double>(clock::now() - e0).count()}};
      if (a.eval_flow && with_flow) {
        const auto rf = retrieval(flow_features(test), test_labels, flow_features(train), train_labels);
        j["flow_r1"] = rf.r1;
        j["flow_r5"] = rf.r5;
      }
      std::cout << j.dump() << std::endl;
      return r;
    };

    json header = {{"config", true}, {"objective", a.objective}, {"train", a.train}, {"test", a.test}, {"batch", a.batch},
                   {"steps", a.steps}, {"lr", a.lr}, {"tau", a.obj.temperature}, {"queue", a.obj.queue_size},
                   {"parameters", objective.trainable_parameters().size()}, {"seed", a.seed}};
    std::cout << header.dump() << std::endl;
    if (a.objective == "random") {
      const auto r = evaluate(0, 0);
      std::cout << json{{"final", true}, {"objective", a.objective}, {"r1", r.r1}, {"r5", r.r5}, {"r10", r.r10}}.dump() << std::endl;
      return 0;
    }
    mscl::optim::sgd<float> opt(objective.trainable_parameters(), {a.lr, 0.9, a.wd, false});
    const mscl::optim::cosine_schedule sched{a.lr, 0.0, double(a.steps), a.warmup, 0.0};
    const auto t0 = clock::now();
    double data_s = 0, train_s = 0;
    long step = 0;
    for (step = 1; step <= a.steps; ++step) {
      const auto d0 = clock::now();
      const auto b = make_batch(step);
      data_s += std::chrono::duration<double>(clock::now() - d0).count();
      opt.set_lr(sched(double(step - 1)));
      mscl::ssl::mscl_step_stats st;
      auto loss = objective.forward(b, &st);
      opt.zero_grad();
      loss.backward();
      mscl::optim::clip_grad_norm(objective.trainable_parameters(), 40.0);
      opt.step();
      train_s = std::chrono::duration<double>(clock::now() - t0).count();
      if (step % a.log_every == 0 || step == 1) {
        json j = {{"step", step}, {"loss", double(loss.item())}, {"wall_s", train_s}, {"data_s", data_s}};
        for (auto& [k, v] : st.losses) j["terms"][k] = v;
        for (auto& [k, v] : st.accuracies) j["acc"][k] = v;
        std::cout << j.dump() << std::endl;
      }
      if (a.eval_every > 0 && step % a.eval_every == 0 && step < a.steps) evaluate(step, train_s);
      if (a.budget_s > 0 && train_s > a.budget_s) break;
    }
    const auto r = evaluate(std::min(step, a.steps), train_s);
    std::cout << json{{"final", true}, {"objective", a.objective}, {"steps", std::min(step, a.steps)}, {"train_s", train_s},
                      {"data_s", data_s}, {"r1", r.r1}, {"r5", r.r5}, {"r10", r.r10}}.dump()
              << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "ssl_synthetic_prog: " << e.what() << "\n";
    return 1;
  }
}
