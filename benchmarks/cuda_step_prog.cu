// r3d_18 training step / forward timing on the cuda backend: the mscl side of
// benchmarks/peer_pytorch_gpu.py (scripts/gpu-check.sh runs both). Prints one JSON line:
//   {"engine":"mscl","device":..,"mode":..,"arch":..,"batch":..,"median_ms":..,"min_ms":..,
//    "max_ms":..,"clips_per_s":..,"peak_device_mb":..,"tf32":..,"bf16":..}
// --bf16 runs the steps under bf16 autocast (convolutions and GEMMs on bf16 operands with float
// accumulation; the peer's torch.autocast("cuda", torch.bfloat16)).
// The training step matches the PyTorch peer: train-mode forward, 400-way cross-entropy on
// labels i % 400, backward, SGD(lr 0.01, momentum 0.9, weight decay 1e-4). Each iteration ends
// with a stream synchronisation, so the time is the step's wall time on the GPU.
//
// --mode mscl times one full MSCL training step (ssl::mscl_objective on the device, every term
// on: RGB r3d_18 + flow r2d_18_flow query/key encoders, TPN neck, FRA and LMCL, queues of
// --queue keys of dimension 128): objective forward (EMA updates, shuffle-BN keys, the eight
// loss terms, enqueue), backward, SGD. Six input clips per sample (RGB q/k, flow q/k, rotated
// flow q/k), each B×3×T×S×S. No PyTorch peer exists for this mode (the released MSCL code needs
// its mmaction fork); scripts/gpu-check.sh prints its clips/s without a ratio.
//
// --mode augment times the loader's device stage per batch (what data::on_backend_source runs for
// mscl-pretrain --device cuda): augment::photometric_batch on two RGB views with tables drawn by
// the MSCL view policy, and augment::color_code_flow_batch on four raw B×2×T×S×S flows.
//
// The timed steps run between cudaProfilerStart and cudaProfilerStop and inside an NVTX range
// "timed" (both free without a profiler attached): `ncu --profile-from-start off` then sees them
// and not cuDNN's algorithm search in the warm-up (MSCL_GPU_PROFILE=1 scripts/gpu-check.sh does
// this for both engines; an NVTX push/pop range would miss PyTorch's backward, which runs on the
// autograd engine's own thread).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mscl/augment/flow_color_batch.hpp>
#include <mscl/mscl.hpp>
#include <mscl/ssl/mscl_objective.hpp>
#include <cuda_profiler_api.h>  // cudaProfilerStart/Stop bracket the timed steps for ncu --profile-from-start off
#include <nvtx3/nvToolsExt.h>    // header-only; the timed steps are also an NVTX range "timed"
#include <string>
#include <vector>

namespace {
struct args_t {
  std::string mode = "train", arch = "r3d_18";
  long batch = 32, frames = 8, size = 112, iters = 10, warmup = 3, queue = 65536;
  bool tf32 = true, benchmark = true, bf16 = false;
};

args_t parse(int argc, char** argv) {
  args_t a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw mscl::config_error("cuda_step_prog: " + k + " needs a value");
      return argv[++i];
    };
    if (k == "--mode") a.mode = next();
    else if (k == "--arch") a.arch = next();
    else if (k == "--batch") a.batch = std::stol(next());
    else if (k == "--frames") a.frames = std::stol(next());
    else if (k == "--size") a.size = std::stol(next());
    else if (k == "--iters") a.iters = std::stol(next());
    else if (k == "--warmup") a.warmup = std::stol(next());
    else if (k == "--queue") a.queue = std::stol(next());
    else if (k == "--no-tf32") a.tf32 = false;
    else if (k == "--bf16") a.bf16 = true;
    else if (k == "--heuristic-algos") a.benchmark = false;
    else if (k == "--help" || k == "-h") {
      std::cout << "cuda_step_prog --mode train|forward|mscl|augment --arch r3d_18|r2d_18_flow --batch N --frames T --size S\n"
                   "               --iters K --warmup W [--queue K (mscl, default 65536)] [--no-tf32] [--bf16]\n"
                   "               [--heuristic-algos]\n"
                   "Times one r3d_18 training step (or forward), or with --mode mscl one full MSCL objective\n"
                   "training step (R3D-18 RGB + flow encoders, all terms), or with --mode augment the loader's device\n"
                   "stage (RGB jitter/grey/blur/normalisation of 2 views, colour coding of 4 raw flows), on the GPU;\n"
                   "prints one JSON line.\n";
      std::exit(0);
    } else {
      throw mscl::config_error("cuda_step_prog: unknown option " + k + " (see --help)");
    }
  }
  MSCL_CHECK(a.mode == "train" || a.mode == "forward" || a.mode == "mscl" || a.mode == "augment", mscl::config_error,
             "cuda_step_prog: --mode must be train, forward, mscl or augment");
  MSCL_CHECK(a.queue >= a.batch, mscl::config_error, "cuda_step_prog: --queue must be at least --batch");
  MSCL_CHECK(a.batch > 0 && a.iters > 0 && a.warmup >= 1, mscl::config_error,
             "cuda_step_prog: --batch and --iters must be positive and --warmup >= 1 (the first step searches "
             "cuDNN algorithms)");
  return a;
}

void print_result(const args_t& a, const std::string& arch, std::vector<double> times) {
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  const auto stats = mscl::cuda_backend::device_allocator::instance().stats();
  std::printf("{\"engine\":\"mscl\",\"device\":\"%s\",\"mode\":\"%s\",\"arch\":\"%s\",\"batch\":%ld,\"frames\":%ld,"
              "\"size\":%ld,\"median_ms\":%.3f,\"min_ms\":%.3f,\"max_ms\":%.3f,\"clips_per_s\":%.2f,"
              "\"peak_device_mb\":%.1f,\"tf32\":%s,\"bf16\":%s}\n",
              mscl::cuda_backend::context().properties.name, a.mode.c_str(), arch.c_str(), a.batch, a.frames, a.size,
              median, times.front(), times.back(), 1000.0 * double(a.batch) / median,
              double(stats.peak_bytes_in_use) / (1024.0 * 1024.0), a.tf32 ? "true" : "false",
              a.bf16 ? "true" : "false");
}

/// One full MSCL training step per iteration (the paper's R18 configuration, all terms on).
int run_mscl(const args_t& a) {
  using dtensor = mscl::tensor<float, mscl::cuda>;
  mscl::ssl::mscl_options o;  // defaults: r3d_18 width 64, flow width 16, neck 128, dim 128, τ 0.07
  o.queue_size = a.queue;
  o.seed = 1;
  mscl::ssl::mscl_objective<float, mscl::cuda> obj(o);
  mscl::generator gen(2);
  auto clip = [&](bool flow) {
    mscl::tensor<float> host = mscl::tensor<float>::empty({a.batch, 3, a.frames, a.size, a.size});
    if (flow) gen.fill_uniform(host.data(), host.numel(), 0, 1);  // colour-coded flow lies in [0, 1]
    else gen.fill_normal(host.data(), host.numel(), 0, 1);
    return mscl::to_device(host);
  };
  mscl::ssl::mscl_batch<float, mscl::cuda> batch;
  batch.rgb_q = clip(false);
  batch.rgb_k = clip(false);
  batch.flow_q = clip(true);
  batch.flow_k = clip(true);
  batch.flow_aug_q = clip(true);
  batch.flow_aug_k = clip(true);
  mscl::optim::sgd<float, mscl::cuda> opt(obj.trainable_parameters(), {0.03, 0.9, 1e-4, false});
  obj.train();
  std::vector<double> times;
  mscl::ssl::mscl_step_stats stats;
  for (long it = 0; it < a.warmup + a.iters; ++it) {
    mscl::cuda_control::synchronize();
    if (it == a.warmup) cudaProfilerStart();
    if (it >= a.warmup) nvtxRangePushA("timed");
    const auto t0 = std::chrono::steady_clock::now();
    dtensor loss = obj.forward(batch, &stats);
    opt.zero_grad();
    loss.backward();
    opt.step();
    mscl::cuda_control::synchronize();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (it >= a.warmup) {
      nvtxRangePop();
      times.push_back(ms);
    }
  }
  std::cerr << "cuda_step_prog: last step's terms:";
  for (const auto& [name, v] : stats.losses) std::cerr << " " << name << "=" << v;
  std::cerr << "\n";
  cudaProfilerStop();
  print_result(a, "mscl_r18_q" + std::to_string(a.queue), times);
  return 0;
}

/// The device stage data::on_backend_source runs per batch when mscl-pretrain --device cuda hands
/// it the loader's tables and raw flows: augment::photometric_batch on rgb_q and rgb_k (tables
/// drawn by the MSCL view policy as the loader draws them: jitter p 0.8, grey 0.2, blur 0.5 with
/// kernel 11) and augment::color_code_flow_batch on the four B×2×T×S×S flows.
int run_augment(const args_t& a) {
  namespace aug = mscl::augment;
  aug::mscl_view_options vo;
  vo.crop.out_height = vo.crop.out_width = a.size;
  vo.blur.kernel_size = int(std::max<long>(1, (a.size / 10) / 2 * 2 + 1));
  const aug::mscl_view_policy policy = aug::make_mscl_view_policy(vo);
  mscl::generator gen(3);
  aug::clip_geometry g;
  g.frames = a.frames;
  g.height = g.width = a.size;
  auto table = [&] {
    std::vector<float> rows;
    for (long b = 0; b < a.batch; ++b) {
      const auto prm = policy.sample(gen, g);
      aug::photometric_view v;
      if (std::get<2>(prm).applied)
        for (const auto& f : std::get<2>(prm).inner.frames) v.jitter.push_back(policy.part<2>().policy().coefficients(f));
      v.grey = std::get<3>(prm).applied;
      if (std::get<4>(prm).applied) {
        v.blur_sigma = std::get<4>(prm).inner.sigma;
        v.blur_kernel = vo.blur.kernel_size;
      }
      const auto r = aug::photometric_rows(v, a.frames);
      rows.insert(rows.end(), r.begin(), r.end());
    }
    return mscl::tensor<float>::from_vector({a.batch, a.frames, aug::photometric_columns}, rows);
  };
  const mscl::tensor<float> table_q = table(), table_k = table();
  auto device_clip = [&](long channels, double lo, double hi) {
    mscl::tensor<float> host = mscl::tensor<float>::empty({a.batch, channels, a.frames, a.size, a.size});
    gen.fill_uniform(host.data(), host.numel(), lo, hi);
    return mscl::to_device(host);
  };
  const auto rgb_q = device_clip(3, 0, 1), rgb_k = device_clip(3, 0, 1);
  std::vector<mscl::tensor<float, mscl::cuda>> flows;
  for (int i = 0; i < 4; ++i) flows.push_back(device_clip(2, -0.7, 0.7));
  std::vector<double> times;
  for (long it = 0; it < a.warmup + a.iters; ++it) {
    mscl::cuda_control::synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    const auto q = aug::photometric_batch(rgb_q, table_q);
    const auto k = aug::photometric_batch(rgb_k, table_k);
    for (const auto& f : flows) (void)aug::color_code_flow_batch(f);
    mscl::cuda_control::synchronize();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (it >= a.warmup) times.push_back(ms);
  }
  print_result(a, "augment_stage", times);
  return 0;
}

template <class Net>
int run(Net& net, const args_t& a) {
  using dtensor = mscl::tensor<float, mscl::cuda>;
  mscl::tensor<float> host = mscl::tensor<float>::empty({a.batch, 3, a.frames, a.size, a.size});
  mscl::generator gen(1);
  gen.fill_normal(host.data(), host.numel(), 0, 1);
  const dtensor clip = mscl::to_device(host);
  std::vector<mscl::index_t> labels;
  for (long i = 0; i < a.batch; ++i) labels.push_back(i % 400);
  mscl::optim::sgd<float, mscl::cuda> opt(net.parameters(), {0.01, 0.9, 1e-4, false});
  std::vector<double> times;
  for (long it = 0; it < a.warmup + a.iters; ++it) {
    mscl::cuda_control::synchronize();
    if (it == a.warmup) cudaProfilerStart();
    if (it >= a.warmup) nvtxRangePushA("timed");
    const auto t0 = std::chrono::steady_clock::now();
    if (a.mode == "forward") {
      mscl::no_grad guard;
      net.eval();
      auto y = net.forward(clip);
      (void)y;
    } else {
      net.train();
      auto y = net.forward(clip);
      auto loss = y.shape()[1] == 400 ? mscl::ops::cross_entropy(y, labels) : mscl::ops::mean(y);
      opt.zero_grad();
      loss.backward();
      opt.step();
    }
    mscl::cuda_control::synchronize();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (it >= a.warmup) {
      nvtxRangePop();
      times.push_back(ms);
    }
  }
  cudaProfilerStop();
  print_result(a, a.arch, times);
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    const args_t a = parse(argc, argv);
    std::string why;
    if (!mscl::cuda_control::device_available(&why)) {
      std::cerr << "cuda_step_prog: no CUDA device (" << why << ")\n";
      return 3;
    }
    mscl::cuda_control::set_allow_tf32(a.tf32);
    mscl::cuda_control::settings().benchmark_conv_algorithms = a.benchmark;
    mscl::cuda_control::set_autocast_bf16(a.bf16);  // for the whole run: every step, warm-up included
    if (a.mode == "mscl") return run_mscl(a);
    if (a.mode == "augment") return run_augment(a);
    if (a.arch == "r3d_18") {
      auto net = mscl::models::r3d_18<float, mscl::cuda>(400);
      return run(net, a);
    }
    if (a.arch == "r2d_18_flow") {
      auto net = mscl::models::r2d_18_flow<float, mscl::cuda>(400);
      return run(net, a);
    }
    throw mscl::config_error("cuda_step_prog: unknown --arch " + a.arch);
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
}
