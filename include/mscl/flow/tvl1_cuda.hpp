/// \file tvl1_cuda.hpp
/// \brief CUDA dual TV-L1 optical flow: the CPU solver of `tvl1.hpp` (same `tvl1_options`, same
///        pyramid, warps, median filtering, stopping rule and border rules) on device buffers,
///        for a batch of frame pairs per call. nvcc only (MSCL_WITH_CUDA); docs/cuda.md, "CUDA
///        TV-L1".
///
/// Why this shape: one 320x240 pair is ~77k pixels, too little work to fill a GPU, and the solver
/// runs thousands of short iterations, so a per-pair loop would be bound by kernel launches. So
///  * every kernel serves a whole batch of B pairs (grid z = pair), one kernel per stage of an
///    iteration (primal, dual; median + copy-back once per outer block; one warp kernel per warp);
///  * the whole pyramid and every solver buffer stay on the device and are reused across calls
///    (allocated through the backend's caching `device_allocator`, grown only when a call needs
///    more);
///  * the stopping rule (stop a warp once sum |u_new - u_old|^2 <= epsilon^2 * pixels) is decided
///    per pair on the device (tvl1_cuda.cuh: error slots), so the host never waits inside the
///    iterations. The host only skips enqueueing the rest of a warp once a non-blocking probe
///    (`cudaEventQuery` on a pinned counter written after each outer block) says that no pair of
///    the batch still runs; the result does not depend on when that probe completes.
/// All work of a solver runs on its stream (the backend's stream by default), in order; the
/// caller's device buffers must stay valid until the stream has passed the call.
///
/// Differences from the CPU solver are floating-point only: nvcc contracts a*b + c into FMAs,
/// error sums are added in another order (per block, then atomically in double), which can move
/// a warp's stopping iteration by one when the sum sits at the threshold. tests/cuda/
/// cuda_flow_test.cu bounds the effect (docs/cuda.md).
#pragma once
#if !defined(__CUDACC__)
#error "mscl/flow/tvl1_cuda.hpp is compiled by nvcc only: use it from a .cu file linked with mscl::cuda"
#endif
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../backend/cuda/device_allocator.hpp"
#include "../backend/cuda/runtime.hpp"
#include "../core/error.hpp"
#include "engine.hpp"
#include "tvl1.hpp"
#include "tvl1_cuda.cuh"

namespace mscl::flow {

/// Batched TV-L1 solver on one CUDA stream. Not thread-safe: one solver per host thread (each may
/// have its own stream).
class tvl1_cuda {
 public:
  /// `stream` = nullptr: the backend's stream (cuda_backend::stream()). A solver given its own
  /// stream waits for it before it returns its buffers to the caching allocator.
  explicit tvl1_cuda(const tvl1_options& opt = {}, cudaStream_t stream = nullptr) : opt_(opt) {
    validate_options(opt_);
    std::string why;
    MSCL_CHECK(cuda_backend::device_available(&why), cuda_error, "flow::tvl1_cuda: no usable CUDA device (" << why << ")");
    stream_ = stream ? stream : cuda_backend::stream();
    const int chunk = std::min(opt_.inner_iterations, probe_every);
    const int nprobes = opt_.outer_iterations * ((opt_.inner_iterations + chunk - 1) / chunk);
    MSCL_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&probe_host_), sizeof(int) * std::size_t(nprobes),
                                  cudaHostAllocDefault));
    probes_.resize(std::size_t(nprobes), nullptr);
    for (auto& e : probes_) MSCL_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
  tvl1_cuda(const tvl1_cuda&) = delete;
  tvl1_cuda& operator=(const tvl1_cuda&) = delete;
  ~tvl1_cuda() {
    cudaStreamSynchronize(stream_);  // queued kernels may still use the buffers
    release();
    release_staging();
    for (auto e : probes_)
      if (e) cudaEventDestroy(e);
    if (probe_host_) cudaFreeHost(probe_host_);
  }

  /// Early exit of the host loop: after every `probe_every` iterations the device counts the pairs
  /// still running into pinned memory; before enqueueing more, the host waits for the probe
  /// `probe_lag` probes back (so that much work stays queued and the GPU never starves) and stops
  /// the warp when a finished probe found none. Only the number of launches depends on these.
  static constexpr int probe_every = 5, probe_lag = 2;

  const tvl1_options& options() const { return opt_; }
  cudaStream_t stream() const { return stream_; }

  /// Flow of `batch` pairs on the device, asynchronously on stream(): i0, i1, u, v are device
  /// pointers to batch planes of height x width floats each ([batch][height][width], row-major,
  /// grey values ~0..255); on completion u[b], v[b] hold the flow of pair b (i0[b](x) ~
  /// i1[b](x + (u, v))). With `use_initial_flow`, u and v are read first as the starting flow.
  void compute_device(const float* i0, const float* i1, int batch, int height, int width, float* u, float* v) {
    MSCL_CHECK(i0 != nullptr && i1 != nullptr && u != nullptr && v != nullptr, shape_error,
               "flow::tvl1_cuda: null image or flow pointer");
    MSCL_CHECK(height >= 8 && width >= 8, shape_error,
               "flow::tvl1_cuda: images must be at least 8x8 (H x W), got " << height << "x" << width);
    MSCL_CHECK(batch >= 1 && batch <= 65535, shape_error,
               "flow::tvl1_cuda: batch must be in 1..65535 pairs, got " << batch);
    namespace K = cuda_kernels;
    plan(batch, height, width);
    const int nl = int(hs_.size());
    const long long n0 = (long long)height * width, B = batch;
    MSCL_CUDA_CHECK(cudaMemsetAsync(counters_, 0, sizeof(unsigned long long) * 2 * std::size_t(B), stream_));
    unsigned long long* iters = counters_;
    unsigned long long* medians = counters_ + B;

    // Pyramids: level 0 is the caller's images; level l = bilinear decimation of blurred level l-1.
    std::vector<const float*> py0(static_cast<std::size_t>(nl)), py1(static_cast<std::size_t>(nl));
    py0[0] = i0;
    py1[0] = i1;
    for (int l = 1; l < nl; ++l) {
      py0[std::size_t(l)] = pyr_[std::size_t(2 * l)];
      py1[std::size_t(l)] = pyr_[std::size_t(2 * l + 1)];
    }
    for (int l = 1; l < nl; ++l) {
      const int ph = hs_[std::size_t(l - 1)], pw = ws_[std::size_t(l - 1)];
      for (int k = 0; k < 2; ++k) {
        const float* src = k == 0 ? py0[std::size_t(l - 1)] : py1[std::size_t(l - 1)];
        float* dst = pyr_[std::size_t(2 * l + k)];
        if (blur_.r > 0) {
          K::blur_rows<<<grid(ph, pw, batch), block(), 0, stream_>>>(src, warp_.ix, ph, pw, blur_);
          MSCL_CUDA_CHECK_LAUNCH();
          K::blur_cols<<<grid(ph, pw, batch), block(), 0, stream_>>>(warp_.ix, warp_.iy, ph, pw, blur_);
          MSCL_CUDA_CHECK_LAUNCH();
          src = warp_.iy;
        }
        K::resize_bilinear<<<grid(hs_[std::size_t(l)], ws_[std::size_t(l)], batch), block(), 0, stream_>>>(
            src, ph, pw, dst, hs_[std::size_t(l)], ws_[std::size_t(l)], 1.f);
        MSCL_CUDA_CHECK_LAUNCH();
      }
    }

    const float lt = opt_.lambda * opt_.theta, taut = opt_.tau / opt_.theta, theta = opt_.theta;
    const int med = opt_.median_filtering >= 3 ? opt_.median_filtering : 0;
    float *u1 = u1_, *u2 = u2_, *m1 = m1_, *m2 = m2_;
    for (int l = nl - 1; l >= 0; --l) {
      const int h = hs_[std::size_t(l)], w = ws_[std::size_t(l)];
      const long long n = (long long)h * w;
      const dim3 g = grid(h, w, batch);
      // Dual variables restart at zero on every level (as the CPU and OpenCV).
      MSCL_CUDA_CHECK(cudaMemsetAsync(dual_.p11, 0, sizeof(float) * std::size_t(4 * cap_), stream_));
      if (l == nl - 1) {
        if (opt_.use_initial_flow) {
          K::resize_bilinear<<<g, block(), 0, stream_>>>(u, height, width, u1, h, w, float(w) / float(width));
          MSCL_CUDA_CHECK_LAUNCH();
          K::resize_bilinear<<<g, block(), 0, stream_>>>(v, height, width, u2, h, w, float(h) / float(height));
          MSCL_CUDA_CHECK_LAUNCH();
        } else {
          MSCL_CUDA_CHECK(cudaMemsetAsync(u1, 0, sizeof(float) * std::size_t(B * n), stream_));
          MSCL_CUDA_CHECK(cudaMemsetAsync(u2, 0, sizeof(float) * std::size_t(B * n), stream_));
        }
      } else {
        const int hc = hs_[std::size_t(l + 1)], wc = ws_[std::size_t(l + 1)];
        K::resize_bilinear<<<g, block(), 0, stream_>>>(u1, hc, wc, m1, h, w, float(w) / float(wc));
        MSCL_CUDA_CHECK_LAUNCH();
        K::resize_bilinear<<<g, block(), 0, stream_>>>(u2, hc, wc, m2, h, w, float(h) / float(hc));
        MSCL_CUDA_CHECK_LAUNCH();
        std::swap(u1, m1);  // every pair took this step, so a host-side swap is exact
        std::swap(u2, m2);
      }

      const double stop = double(opt_.epsilon) * opt_.epsilon * double(n);
      auto slot = [&](int k) { return err_ + ((k % 3 + 3) % 3) * B; };
      for (int wp = 0; wp < opt_.warps; ++wp) {
        K::warp<<<g, block(), 0, stream_>>>(py0[std::size_t(l)], py1[std::size_t(l)], u1, u2, warp_, h, w, err_, batch);
        MSCL_CUDA_CHECK_LAUNCH();
        int k = 0;  // iteration of this warp: error slots k % 3 (current), (k - 1) % 3 (previous)
        int q = 0;  // probes recorded in this warp
        bool finished = false;
        for (int outer = 0; outer < opt_.outer_iterations && !finished; ++outer) {
          if (med) {
            if (med == 5)
              K::median<5><<<g, block(), 0, stream_>>>(u1, u2, m1, m2, h, w, slot(k - 1), stop, medians);
            else
              K::median<3><<<g, block(), 0, stream_>>>(u1, u2, m1, m2, h, w, slot(k - 1), stop, medians);
            MSCL_CUDA_CHECK_LAUNCH();
            const dim3 gc(unsigned(std::min<long long>((n + 255) / 256, 1024)), 1, unsigned(batch));
            K::copy_back<<<gc, 256, 0, stream_>>>(m1, m2, u1, u2, int(n), slot(k - 1), stop);
            MSCL_CUDA_CHECK_LAUNCH();
          }
          for (int inner = 0; inner < opt_.inner_iterations && !finished;) {
            const int m = std::min(probe_every, opt_.inner_iterations - inner);
            for (int j = 0; j < m; ++j, ++k) {
              K::primal<<<g, block(), 0, stream_>>>(u1, u2, dual_, warp_, h, w, lt, theta, slot(k - 1), slot(k), stop,
                                                    iters);
              MSCL_CUDA_CHECK_LAUNCH();
              K::dual<<<g, block(), 0, stream_>>>(u1, u2, dual_, h, w, taut, slot(k - 1), slot(k + 1), stop);
              MSCL_CUDA_CHECK_LAUNCH();
            }
            inner += m;
            // Probe: how many pairs still run (read later; the kernels above do not depend on it).
            K::count_running<<<1, 256, 0, stream_>>>(slot(k - 1), batch, stop, probe_dev_ + q);
            MSCL_CUDA_CHECK_LAUNCH();
            MSCL_CUDA_CHECK(cudaMemcpyAsync(probe_host_ + q, probe_dev_ + q, sizeof(int), cudaMemcpyDeviceToHost, stream_));
            MSCL_CUDA_CHECK(cudaEventRecord(probes_[std::size_t(q)], stream_));
            ++q;
            finished = batch_finished(q);
          }
        }
      }
    }
    MSCL_CUDA_CHECK(cudaMemcpyAsync(u, u1, sizeof(float) * std::size_t(B * n0), cudaMemcpyDeviceToDevice, stream_));
    MSCL_CUDA_CHECK(cudaMemcpyAsync(v, u2, sizeof(float) * std::size_t(B * n0), cudaMemcpyDeviceToDevice, stream_));
    last_batch_ = batch;
  }

  /// Host convenience: copies `batch` pairs in, computes, copies the flow out and waits. Same
  /// layout as compute_device, host pointers.
  void compute(const float* i0, const float* i1, int batch, int height, int width, float* u, float* v) {
    MSCL_CHECK(i0 != nullptr && i1 != nullptr && u != nullptr && v != nullptr, shape_error,
               "flow::tvl1_cuda: null image or flow pointer");
    MSCL_CHECK(height >= 8 && width >= 8 && batch >= 1, shape_error,
               "flow::tvl1_cuda: need batch >= 1 and images of at least 8x8, got batch " << batch << " of " << height
                                                                                        << "x" << width);
    const std::size_t n = std::size_t(batch) * std::size_t(height) * std::size_t(width);
    if (staging_floats_ < n) {
      release_staging();
      staging_ = static_cast<float*>(cuda_backend::device_allocator::instance().allocate(n * 4 * sizeof(float)));
      staging_floats_ = n;
      adopt_blocks();
    }
    float *d0 = staging_, *d1 = staging_ + n, *du = staging_ + 2 * n, *dv = staging_ + 3 * n;
    MSCL_CUDA_CHECK(cudaMemcpyAsync(d0, i0, n * sizeof(float), cudaMemcpyHostToDevice, stream_));
    MSCL_CUDA_CHECK(cudaMemcpyAsync(d1, i1, n * sizeof(float), cudaMemcpyHostToDevice, stream_));
    if (opt_.use_initial_flow) {
      MSCL_CUDA_CHECK(cudaMemcpyAsync(du, u, n * sizeof(float), cudaMemcpyHostToDevice, stream_));
      MSCL_CUDA_CHECK(cudaMemcpyAsync(dv, v, n * sizeof(float), cudaMemcpyHostToDevice, stream_));
    }
    compute_device(d0, d1, batch, height, width, du, dv);
    MSCL_CUDA_CHECK(cudaMemcpyAsync(u, du, n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    MSCL_CUDA_CHECK(cudaMemcpyAsync(v, dv, n * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    MSCL_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  /// Host convenience with size checks: i0 and i1 hold `batch` = size / (height * width) planes
  /// each; returns one flow field per pair. Throws shape_error naming the sizes on a mismatch.
  std::vector<flow_field> compute(const std::vector<float>& i0, const std::vector<float>& i1, std::int64_t height,
                                  std::int64_t width) {
    const std::int64_t px = height * width;
    MSCL_CHECK(height >= 8 && width >= 8 && !i0.empty() && i0.size() == i1.size() &&
                   std::int64_t(i0.size()) % px == 0,
               shape_error,
               "flow::tvl1_cuda: expected i0 and i1 to hold the same number of " << height << "x" << width
                                                                                 << " planes, got " << i0.size() << " and "
                                                                                 << i1.size() << " values");
    const int batch = int(std::int64_t(i0.size()) / px);
    std::vector<float> u(i0.size(), 0.f), v(i0.size(), 0.f);
    compute(i0.data(), i1.data(), batch, int(height), int(width), u.data(), v.data());
    std::vector<flow_field> out(static_cast<std::size_t>(batch));
    for (int b = 0; b < batch; ++b) {
      auto& f = out[std::size_t(b)];
      f.height = height;
      f.width = width;
      f.u.assign(u.begin() + b * px, u.begin() + (b + 1) * px);
      f.v.assign(v.begin() + b * px, v.begin() + (b + 1) * px);
    }
    return out;
  }

  /// Counters of each pair of the last call (waits for the stream). pixel_iterations is not
  /// tracked per level on the device and stays 0.
  std::vector<tvl1_stats> last_stats() {
    std::vector<unsigned long long> c(static_cast<std::size_t>(2 * last_batch_));
    if (last_batch_ > 0)
      MSCL_CUDA_CHECK(cudaMemcpyAsync(c.data(), counters_, sizeof(unsigned long long) * c.size(),
                                      cudaMemcpyDeviceToHost, stream_));
    MSCL_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::vector<tvl1_stats> s(static_cast<std::size_t>(last_batch_));
    for (int b = 0; b < last_batch_; ++b) {
      s[std::size_t(b)].iterations = std::int64_t(c[std::size_t(b)]);
      s[std::size_t(b)].median_passes = std::int64_t(c[std::size_t(last_batch_ + b)]);
      s[std::size_t(b)].levels = int(hs_.size());
    }
    return s;
  }

  /// The checks of the CPU solver (tvl1.hpp), with this class's name in the messages.
  static void validate_options(const tvl1_options& opt) {
    MSCL_CHECK(opt.tau > 0.f && opt.lambda > 0.f && opt.theta > 0.f && opt.epsilon >= 0.f, value_error,
               "flow::tvl1_cuda: tau, lambda, theta must be > 0 and epsilon >= 0, got tau="
                   << opt.tau << " lambda=" << opt.lambda << " theta=" << opt.theta << " epsilon=" << opt.epsilon);
    MSCL_CHECK(opt.scale_step > 0.f && opt.scale_step < 1.f && opt.nscales >= 1 && opt.warps >= 1 &&
                   opt.inner_iterations >= 1 && opt.outer_iterations >= 1,
               value_error,
               "flow::tvl1_cuda: need 0 < scale_step < 1 and nscales, warps, inner_iterations, outer_iterations >= 1, got "
                   << opt.scale_step << ", " << opt.nscales << ", " << opt.warps << ", " << opt.inner_iterations << ", "
                   << opt.outer_iterations);
    MSCL_CHECK(opt.median_filtering == 0 || opt.median_filtering == 1 || opt.median_filtering == 3 ||
                   opt.median_filtering == 5,
               value_error, "flow::tvl1_cuda: median_filtering must be 0, 1, 3 or 5, got " << opt.median_filtering);
    MSCL_CHECK(opt.gamma == 0.f, value_error, "flow::tvl1_cuda: gamma (illumination term) must be 0, got " << opt.gamma);
  }

 private:
  static dim3 block() { return dim3(cuda_kernels::block_x, cuda_kernels::block_y, 1); }
  static dim3 grid(int h, int w, int batch) {
    return dim3(unsigned((w + cuda_kernels::block_x - 1) / cuda_kernels::block_x),
                unsigned((h + cuda_kernels::block_y - 1) / cuda_kernels::block_y), unsigned(batch));
  }

  /// Whether the newest completed probe of this warp (of the first `q`) found no running pair (a
  /// stopped pair stays stopped, so any completed probe with zero decides). Waits only for probe
  /// q - 1 - probe_lag; newer probes still in flight count as "maybe running".
  bool batch_finished(int q) {
    if (q - 1 - probe_lag >= 0) MSCL_CUDA_CHECK(cudaEventSynchronize(probes_[std::size_t(q - 1 - probe_lag)]));
    for (int j = q - 1; j >= 0; --j) {
      const cudaError_t st = cudaEventQuery(probes_[std::size_t(j)]);
      if (st == cudaSuccess) return probe_host_[j] == 0;
      MSCL_CHECK(st == cudaErrorNotReady, cuda_error,
                 "flow::tvl1_cuda: cudaEventQuery failed: " << cudaGetErrorName(st) << " (" << cudaGetErrorString(st) << ")");
      (void)cudaGetLastError();  // "not ready" is a state, not an error
    }
    return false;
  }

  /// Level sizes (the CPU's rule) and buffers for `batch` pairs; keeps the buffers when they
  /// suffice.
  void plan(int batch, int height, int width) {
    if (height != h0_ || width != w0_) {
      hs_.assign(1, height);
      ws_.assign(1, width);
      for (int s = 1; s < opt_.nscales; ++s) {
        const double f = std::pow(double(opt_.scale_step), s);
        const int hh = int(std::lround(height * f)), ww = int(std::lround(width * f));
        if (std::min(hh, ww) < 16) break;
        hs_.push_back(hh);
        ws_.push_back(ww);
      }
      h0_ = height;
      w0_ = width;
      // Gaussian pre-blur of each pyramid step, with the CPU's weights (tvl1.hpp gaussian_blur).
      const float sigma = opt_.pyramid_sigma * std::sqrt(1.f / (opt_.scale_step * opt_.scale_step) - 1.f);
      blur_ = {};
      if (sigma > 0.f) {
        const int rad = std::max(1, static_cast<int>(std::ceil(3.f * sigma)));
        const int r = std::min(rad, 31);
        float sum = 0.f;
        for (int k = -r; k <= r; ++k) sum += blur_.k[k + r] = std::exp(-0.5f * k * k / (sigma * sigma));
        for (int k = 0; k <= 2 * r; ++k) blur_.k[k] /= sum;
        blur_.r = r;
      }
    }
    const long long n0 = (long long)height * width;
    long long pyr = 0;  // levels >= 1, both images
    for (std::size_t l = 1; l < hs_.size(); ++l) pyr += 2LL * hs_[l] * ws_[l];
    const long long cap = n0 * batch;
    const std::size_t floats = std::size_t(pyr * batch + 13 * cap);
    if (floats > floats_ || batch > batch_cap_) {
      release();
      auto& A = cuda_backend::device_allocator::instance();
      base_ = static_cast<float*>(A.allocate(floats * sizeof(float)));
      floats_ = floats;
      err_ = static_cast<double*>(A.allocate(sizeof(double) * 3 * std::size_t(batch)));
      counters_ = static_cast<unsigned long long*>(A.allocate(sizeof(unsigned long long) * 2 * std::size_t(batch)));
      probe_dev_ = static_cast<int*>(A.allocate(sizeof(int) * probes_.size()));
      batch_cap_ = batch;
      adopt_blocks();
    }
    float* p = base_;
    auto take = [&](long long count) { float* q = p; p += count; return q; };
    pyr_.assign(2 * hs_.size(), nullptr);
    for (std::size_t l = 1; l < hs_.size(); ++l) {
      pyr_[2 * l] = take((long long)hs_[l] * ws_[l] * batch);
      pyr_[2 * l + 1] = take((long long)hs_[l] * ws_[l] * batch);
    }
    u1_ = take(cap); u2_ = take(cap); m1_ = take(cap); m2_ = take(cap);
    dual_.p11 = take(cap); dual_.p12 = take(cap); dual_.p21 = take(cap); dual_.p22 = take(cap);  // contiguous: one memset
    warp_.ix = take(cap); warp_.iy = take(cap); warp_.rc = take(cap); warp_.gr = take(cap); warp_.ig = take(cap);
    cap_ = cap;
  }

  /// Cached blocks may have been freed by work still queued on the backend's stream; a solver on
  /// its own stream waits for that stream once after allocating (rare: buffers only grow).
  void adopt_blocks() {
    if (stream_ != cuda_backend::stream()) MSCL_CUDA_CHECK(cudaStreamSynchronize(cuda_backend::stream()));
  }
  void free_block(void* ptr, std::size_t bytes) {
    if (ptr) cuda_backend::device_allocator::instance().deallocate(ptr, bytes);
  }
  /// Returns the buffers to the caching allocator. With a private stream, its queued work must be
  /// finished first (the allocator's reuse rule assumes the backend's single stream).
  void release() {
    if (!base_) return;
    if (stream_ != cuda_backend::stream()) cudaStreamSynchronize(stream_);
    free_block(base_, floats_ * sizeof(float));
    free_block(err_, sizeof(double) * 3 * std::size_t(batch_cap_));
    free_block(counters_, sizeof(unsigned long long) * 2 * std::size_t(batch_cap_));
    free_block(probe_dev_, sizeof(int) * probes_.size());
    base_ = nullptr;
    err_ = nullptr;
    counters_ = nullptr;
    probe_dev_ = nullptr;
    floats_ = 0;
    batch_cap_ = 0;
  }
  void release_staging() {
    if (!staging_) return;
    if (stream_ != cuda_backend::stream()) cudaStreamSynchronize(stream_);
    free_block(staging_, staging_floats_ * 4 * sizeof(float));
    staging_ = nullptr;
    staging_floats_ = 0;
  }

  tvl1_options opt_;
  cudaStream_t stream_ = nullptr;
  int h0_ = -1, w0_ = -1;
  std::vector<int> hs_, ws_;
  cuda_kernels::blur_kernel blur_{};
  float* base_ = nullptr;
  std::size_t floats_ = 0;
  int batch_cap_ = 0, last_batch_ = 0;
  long long cap_ = 0;
  std::vector<float*> pyr_;
  float *u1_ = nullptr, *u2_ = nullptr, *m1_ = nullptr, *m2_ = nullptr;
  cuda_kernels::dual_planes dual_{};
  cuda_kernels::warp_planes warp_{};
  double* err_ = nullptr;
  unsigned long long* counters_ = nullptr;
  int* probe_dev_ = nullptr;
  int* probe_host_ = nullptr;
  std::vector<cudaEvent_t> probes_;
  float* staging_ = nullptr;
  std::size_t staging_floats_ = 0;
};

/// `flow_engine` adapter for extract.hpp: one pair per call, on a private stream, so that the
/// workers of mscl-extract-flow (one engine each) keep the GPU busy together.
class tvl1_cuda_engine final : public flow_engine {
 public:
  explicit tvl1_cuda_engine(const tvl1_options& opt) : stream_(make_stream()), solver_(opt, stream_.get()) {}
  const char* name() const override { return "tvl1-cuda"; }
  void compute(const float* i0, const float* i1, int height, int width, float* u, float* v) override {
    solver_.compute(i0, i1, 1, height, width, u, v);
  }

 private:
  struct stream_deleter {
    void operator()(CUstream_st* s) const { cudaStreamDestroy(s); }
  };
  static std::unique_ptr<CUstream_st, stream_deleter> make_stream() {
    std::string why;
    MSCL_CHECK(cuda_backend::device_available(&why), cuda_error,
               "flow: the CUDA TV-L1 engine needs a GPU, but there is no usable CUDA device (" << why << ")");
    cudaStream_t s = nullptr;
    MSCL_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return std::unique_ptr<CUstream_st, stream_deleter>(s);
  }
  std::unique_ptr<CUstream_st, stream_deleter> stream_;  // destroyed after solver_ (declared first)
  tvl1_cuda solver_;
};

}  // namespace mscl::flow
