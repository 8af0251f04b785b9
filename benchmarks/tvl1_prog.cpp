// tvl1_prog: runs mscl::flow::tvl1 on frame pairs from a raw float32 file and prints JSON timings;
// driven by benchmarks/tvl1_peer.py, which compares it with OpenCV's DualTVL1 on the same pairs.
//
// usage: tvl1_prog PAIRS.f32 N H W [--flow OUT.f32] [--repeat R] [--threads T] [key=value ...]
//   PAIRS.f32: N x 2 x H x W float32 (i0, i1 per pair, grey 0..255), little-endian, no header.
//   OUT.f32:   N x 2 x H x W float32 (u, v per pair) of the last repeat.
//   key=value: any tvl1_options field (tau lambda theta nscales warps epsilon inner outer
//              scale_step median pyramid_sigma).
// Output (stdout): {"ms":[per-pair median wall ms over repeats], "cpu_ms":[same, process CPU time],
//                  "iterations":[...], "pixel_iterations":[...]}
#include <mscl/flow/tvl1.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <time.h>

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: tvl1_prog PAIRS.f32 N H W [--flow OUT.f32] [--repeat R] [--threads T] [key=value ...]\n";
    return 2;
  }
  const std::string in = argv[1];
  const long n = std::atol(argv[2]), h = std::atol(argv[3]), w = std::atol(argv[4]);
  std::string out;
  int repeat = 3;
  mscl::flow::tvl1_options opt;
  opt.threads = 2;
  for (int i = 5; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--flow" && i + 1 < argc) { out = argv[++i]; continue; }
    if (a == "--repeat" && i + 1 < argc) { repeat = std::atoi(argv[++i]); continue; }
    if (a == "--threads" && i + 1 < argc) { opt.threads = std::atoi(argv[++i]); continue; }
    const auto eq = a.find('=');
    if (eq == std::string::npos) { std::cerr << "tvl1_prog: bad argument " << a << "\n"; return 2; }
    const std::string k = a.substr(0, eq);
    const double val = std::atof(a.c_str() + eq + 1);
    if (k == "tau") opt.tau = float(val);
    else if (k == "lambda") opt.lambda = float(val);
    else if (k == "theta") opt.theta = float(val);
    else if (k == "nscales") opt.nscales = int(val);
    else if (k == "warps") opt.warps = int(val);
    else if (k == "epsilon") opt.epsilon = float(val);
    else if (k == "inner") opt.inner_iterations = int(val);
    else if (k == "outer") opt.outer_iterations = int(val);
    else if (k == "scale_step") opt.scale_step = float(val);
    else if (k == "median") opt.median_filtering = int(val);
    else if (k == "pyramid_sigma") opt.pyramid_sigma = float(val);
    else { std::cerr << "tvl1_prog: unknown option " << k << "\n"; return 2; }
  }
  const std::size_t plane = static_cast<std::size_t>(h * w);
  std::vector<float> pairs(static_cast<std::size_t>(n) * 2 * plane);
  {
    std::ifstream f(in, std::ios::binary);
    if (!f.read(reinterpret_cast<char*>(pairs.data()), static_cast<std::streamsize>(pairs.size() * 4))) {
      std::cerr << "tvl1_prog: cannot read " << pairs.size() * 4 << " bytes from " << in << "\n";
      return 1;
    }
  }
  std::vector<float> flow(static_cast<std::size_t>(n) * 2 * plane, 0.f);
  mscl::flow::tvl1_workspace ws;
  std::vector<double> ms(n), cpu(n);
  auto cpu_ms = [] {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
  };
  std::vector<long long> iters(n), pix(n);
  // Warm-up (first-touch of the workspace, OpenMP thread start).
  mscl::flow::tvl1(pairs.data(), pairs.data() + plane, h, w, flow.data(), flow.data() + plane, opt, ws);
  for (long p = 0; p < n; ++p) {
    std::vector<double> t, c;
    for (int r = 0; r < repeat; ++r) {
      const double c0 = cpu_ms();
      const auto t0 = std::chrono::steady_clock::now();
      mscl::flow::tvl1(pairs.data() + 2 * p * plane, pairs.data() + (2 * p + 1) * plane, h, w,
                       flow.data() + 2 * p * plane, flow.data() + (2 * p + 1) * plane, opt, ws);
      t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      c.push_back(cpu_ms() - c0);
    }
    std::sort(t.begin(), t.end());
    std::sort(c.begin(), c.end());
    ms[p] = t[t.size() / 2];
    cpu[p] = c[c.size() / 2];
    iters[p] = ws.stats.iterations;
    pix[p] = ws.stats.pixel_iterations;
  }
  if (!out.empty()) {
    std::ofstream f(out, std::ios::binary);
    f.write(reinterpret_cast<const char*>(flow.data()), static_cast<std::streamsize>(flow.size() * 4));
  }
  std::printf("{\"ms\":[");
  for (long p = 0; p < n; ++p) std::printf("%s%.3f", p ? "," : "", ms[p]);
  std::printf("],\"cpu_ms\":[");
  for (long p = 0; p < n; ++p) std::printf("%s%.3f", p ? "," : "", cpu[p]);
  std::printf("],\"iterations\":[");
  for (long p = 0; p < n; ++p) std::printf("%s%lld", p ? "," : "", iters[p]);
  std::printf("],\"pixel_iterations\":[");
  for (long p = 0; p < n; ++p) std::printf("%s%lld", p ? "," : "", pix[p]);
  std::printf("],\"threads\":%d}\n", opt.threads);
  return 0;
}
