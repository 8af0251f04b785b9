// cuda_tvl1_prog: frame pairs per second of the CUDA TV-L1 (include/mscl/flow/tvl1_cuda.hpp) at
// 320x240 (issue 6's bar: >= 1000 pairs/s), with the CPU TV-L1 on a few of the same pairs in the
// same run as the reference (ratio, and the mean |cuda - cpu| of their flow).
//
// usage: cuda_tvl1_prog [--height 240] [--width 320] [--batch 64] [--pairs 512] [--warmup 2]
//                       [--cpu-pairs 4] [--cpu-threads 0 (all)]
// Frames: a smooth multi-scale texture plus fixed pseudo-random detail, each pair translated by a
// different sub-pixel shift in [-3, 3] px; they live on the device, so the timing covers the
// solver (pyramids included), not decoding or host transfers. Options: tvl1_options defaults
// (OpenCV DualTVL1's). Prints one JSON line on stdout; exit 77 (and a "skipped" line) without a GPU.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <mscl/flow/tvl1.hpp>
#include <mscl/flow/tvl1_cuda.hpp>

namespace {

float tex(double x, double y) {
  return float(128 + 40 * std::sin(0.031 * x + 0.017 * y) + 30 * std::cos(0.053 * y - 0.021 * x + 1.0) +
               20 * std::sin(0.19 * x) * std::cos(0.17 * y) + 15 * std::sin(0.9 * x + 0.7 * y + 2.0));
}
/// Fixed detail: a hash of the integer texture coordinates, bilinearly interpolated, so that the
/// shifted frame is the same continuous image sampled elsewhere.
float detail(double x, double y) {
  auto h = [](long long i, long long j) {
    std::uint64_t v = std::uint64_t(i) * 0x9E3779B97F4A7C15ull ^ std::uint64_t(j) * 0xC2B2AE3D27D4EB4Full;
    v ^= v >> 31;
    v *= 0xBF58476D1CE4E5B9ull;
    v ^= v >> 29;
    return float(v % 1000) / 1000.f - 0.5f;
  };
  const double fx = std::floor(x / 3), fy = std::floor(y / 3), ax = x / 3 - fx, ay = y / 3 - fy;
  const long long i = (long long)fx, j = (long long)fy;
  return float(24 * ((1 - ay) * ((1 - ax) * h(i, j) + ax * h(i + 1, j)) + ay * ((1 - ax) * h(i, j + 1) + ax * h(i + 1, j + 1))));
}
float image(double x, double y) { return tex(x, y) + detail(x + 1000, y + 1000); }

long arg_long(int argc, char** argv, const char* name, long def) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atol(argv[i + 1]);
  return def;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::cout << "usage: cuda_tvl1_prog [--height 240] [--width 320] [--batch 64] [--pairs 512] [--warmup 2] "
                   "[--cpu-pairs 4] [--cpu-threads 0]\n";
      return 0;
    }
  const int H = int(arg_long(argc, argv, "--height", 240)), W = int(arg_long(argc, argv, "--width", 320));
  const int batch = int(arg_long(argc, argv, "--batch", 64));
  const long pairs = arg_long(argc, argv, "--pairs", 512);
  const int warmup = int(arg_long(argc, argv, "--warmup", 2));
  const int cpu_pairs = int(arg_long(argc, argv, "--cpu-pairs", 4));
  int cpu_threads = int(arg_long(argc, argv, "--cpu-threads", 0));
  if (cpu_threads <= 0) cpu_threads = int(std::max(1u, std::thread::hardware_concurrency()));
  if (H < 16 || W < 16 || batch < 1 || pairs < batch || cpu_pairs < 1 || cpu_pairs > batch) {
    std::cerr << "cuda_tvl1_prog: need height, width >= 16, batch >= 1, pairs >= batch, 1 <= cpu-pairs <= batch\n";
    return 2;
  }
  std::string why;
  if (!mscl::cuda_backend::device_available(&why)) {
    std::cout << "MSCL_CUDA_SKIP: no CUDA device (" << why << ")\n";
    std::cout << "{\"bench\":\"cuda_tvl1\",\"skipped\":\"no CUDA device\"}\n";
    return 77;
  }
  try {
    // One batch of distinct pairs (cycled over), with their true shifts.
    const std::size_t px = std::size_t(H) * std::size_t(W), n = px * std::size_t(batch);
    std::vector<float> i0(n), i1(n), sx(static_cast<std::size_t>(batch)), sy(static_cast<std::size_t>(batch));
    for (int b = 0; b < batch; ++b) {
      sx[std::size_t(b)] = float(-3.0 + 6.0 * ((b * 37) % 101) / 100.0);
      sy[std::size_t(b)] = float(-3.0 + 6.0 * ((b * 61 + 13) % 97) / 96.0);
      for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
          const std::size_t o = std::size_t(b) * px + std::size_t(y) * std::size_t(W) + std::size_t(x);
          i0[o] = image(x + 7.0 * b, y);
          i1[o] = image(x + 7.0 * b - sx[std::size_t(b)], y - sy[std::size_t(b)]);
        }
    }
    mscl::flow::tvl1_options opt;
    mscl::flow::tvl1_cuda solver(opt);
    auto& alloc = mscl::cuda_backend::device_allocator::instance();
    float* d = static_cast<float*>(alloc.allocate(4 * n * sizeof(float)));
    float *d0 = d, *d1 = d + n, *du = d + 2 * n, *dv = d + 3 * n;
    MSCL_CUDA_CHECK(cudaMemcpyAsync(d0, i0.data(), n * sizeof(float), cudaMemcpyHostToDevice, solver.stream()));
    MSCL_CUDA_CHECK(cudaMemcpyAsync(d1, i1.data(), n * sizeof(float), cudaMemcpyHostToDevice, solver.stream()));
    for (int i = 0; i < warmup; ++i) solver.compute_device(d0, d1, batch, H, W, du, dv);
    MSCL_CUDA_CHECK(cudaStreamSynchronize(solver.stream()));

    const long calls = (pairs + batch - 1) / batch;
    std::int64_t iterations = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (long c = 0; c < calls; ++c) solver.compute_device(d0, d1, batch, H, W, du, dv);
    MSCL_CUDA_CHECK(cudaStreamSynchronize(solver.stream()));
    const double cuda_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (const auto& s : solver.last_stats()) iterations += s.iterations;
    std::vector<float> u(n), v(n);
    MSCL_CUDA_CHECK(cudaMemcpy(u.data(), du, n * sizeof(float), cudaMemcpyDeviceToHost));
    MSCL_CUDA_CHECK(cudaMemcpy(v.data(), dv, n * sizeof(float), cudaMemcpyDeviceToHost));
    alloc.deallocate(d, 4 * n * sizeof(float));

    // End-point error against the true shift (8 px border excluded), over the whole batch.
    double epe = 0;
    long cnt = 0;
    for (int b = 0; b < batch; ++b)
      for (int y = 8; y < H - 8; ++y)
        for (int x = 8; x < W - 8; ++x) {
          const std::size_t o = std::size_t(b) * px + std::size_t(y) * std::size_t(W) + std::size_t(x);
          epe += std::hypot(double(u[o]) - sx[std::size_t(b)], double(v[o]) - sy[std::size_t(b)]);
          ++cnt;
        }
    epe /= double(cnt);

    // The CPU solver on the first cpu_pairs pairs, all threads, same options.
    mscl::flow::tvl1_options copt = opt;
    copt.threads = cpu_threads;
    mscl::flow::tvl1_workspace ws;
    std::vector<float> cu(px), cv(px);
    double diff = 0, cpu_s = 0;
    for (int b = 0; b < cpu_pairs; ++b) {
      const auto c0 = std::chrono::steady_clock::now();
      mscl::flow::tvl1(i0.data() + std::size_t(b) * px, i1.data() + std::size_t(b) * px, H, W, cu.data(), cv.data(), copt, ws);
      cpu_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
      for (std::size_t i = 0; i < px; ++i)
        diff += std::fabs(double(cu[i]) - u[std::size_t(b) * px + i]) + std::fabs(double(cv[i]) - v[std::size_t(b) * px + i]);
    }
    diff /= double(2 * px * std::size_t(cpu_pairs));

    const double cuda_pps = double(calls * batch) / cuda_s, cpu_pps = double(cpu_pairs) / cpu_s;
    std::printf(
        "{\"bench\":\"cuda_tvl1\",\"device\":\"%s\",\"height\":%d,\"width\":%d,\"batch\":%d,\"pairs\":%ld,"
        "\"cuda_pairs_per_s\":%.1f,\"cuda_ms_per_batch\":%.3f,\"cuda_mean_iterations\":%.1f,\"epe_cuda\":%.4f,"
        "\"cpu_pairs\":%d,\"cpu_threads\":%d,\"cpu_pairs_per_s\":%.3f,\"speedup\":%.1f,\"mean_abs_diff_cpu\":%.5f}\n",
        mscl::cuda_backend::context().properties.name, H, W, batch, calls * batch, cuda_pps, 1e3 * cuda_s / double(calls),
        double(iterations) / batch, epe, cpu_pairs, cpu_threads, cpu_pps, cuda_pps / cpu_pps, diff);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "cuda_tvl1_prog: " << e.what() << "\n";
    return 1;
  }
}
