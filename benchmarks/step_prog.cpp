// r3d_18 (or the flow backbone) training step / forward timing, the mscl side of
// benchmarks/peer_pytorch.py. Prints one JSON line:
//   {"mode":..,"arch":..,"batch":..,"median_ms":..,"min_ms":..,"max_ms":..,"peak_rss_mb":..}
// The training step matches the PyTorch peer: train-mode forward, 400-way cross-entropy,
// backward, SGD(momentum 0.9, weight decay 1e-4).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mscl/mscl.hpp>
#include <string>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {
struct args_t {
  std::string mode = "train", arch = "r3d_18";
  long batch = 8, frames = 8, size = 112, iters = 5, warmup = 1, threads = 2;
};

args_t parse(int argc, char** argv) {
  args_t a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw mscl::config_error("step_prog: " + k + " needs a value");
      return argv[++i];
    };
    if (k == "--mode") a.mode = next();
    else if (k == "--arch") a.arch = next();
    else if (k == "--batch") a.batch = std::stol(next());
    else if (k == "--frames") a.frames = std::stol(next());
    else if (k == "--size") a.size = std::stol(next());
    else if (k == "--iters") a.iters = std::stol(next());
    else if (k == "--warmup") a.warmup = std::stol(next());
    else if (k == "--threads") a.threads = std::stol(next());
    else if (k == "--help" || k == "-h") {
      std::cout << "step_prog --mode forward|train --arch r3d_18|r2d_18_flow --batch N --frames T --size S "
                   "--iters K --warmup W --threads P\n";
      std::exit(0);
    } else throw mscl::config_error("step_prog: unknown option " + k);
  }
  if (a.mode != "train" && a.mode != "forward") throw mscl::config_error("step_prog: --mode must be train or forward");
  return a;
}

template <class Net>
int run(Net& net, const args_t& a) {
  using tensor_t = mscl::tensor<float>;
  tensor_t clip = tensor_t::empty({a.batch, 3, a.frames, a.size, a.size});
  mscl::generator gen(1);
  gen.fill_normal(clip.data(), clip.numel(), 0, 1);
  std::vector<mscl::index_t> labels;
  for (long i = 0; i < a.batch; ++i) labels.push_back(i % 400);
  mscl::optim::sgd<float> opt(net.parameters(), {0.01, 0.9, 1e-4, false});
  std::vector<double> times;
  for (long it = 0; it < a.warmup + a.iters; ++it) {
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
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (it >= a.warmup) times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  std::printf("{\"mode\":\"%s\",\"arch\":\"%s\",\"batch\":%ld,\"frames\":%ld,\"size\":%ld,\"threads\":%ld,"
              "\"median_ms\":%.3f,\"min_ms\":%.3f,\"max_ms\":%.3f,\"peak_rss_mb\":%.1f,\"conv_engine\":\"%s\"}\n",
              a.mode.c_str(), a.arch.c_str(), a.batch, a.frames, a.size, a.threads, times[times.size() / 2],
              times.front(), times.back(), double(ru.ru_maxrss) / 1024.0,
              mscl::backend::cpu_kernels::get_conv_engine() == mscl::backend::cpu_kernels::conv_engine::portable
                  ? "portable"
                  : "automatic");
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    const args_t a = parse(argc, argv);
#ifdef _OPENMP
    omp_set_num_threads(int(a.threads));
#endif
    if (a.arch == "r3d_18") {
      auto net = mscl::models::r3d_18<float>(400);
      return run(net, a);
    }
    if (a.arch == "r2d_18_flow") {
      auto net = mscl::models::r2d_18_flow<float>(400);
      return run(net, a);
    }
    throw mscl::config_error("step_prog: unknown --arch " + a.arch);
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
}
