/// \file tvl1.hpp
/// \brief CPU dual TV-L1 optical flow (Zach, Pock & Bischof 2007; Wedel et al. 2009) with an image
///        pyramid, warping and median filtering: the algorithm behind OpenCV's
///        `DualTVL1OpticalFlow`, which produced the flow of the video SSL data sets (denseflow,
///        mmaction), so MSCL can compute comparable flow without OpenCV.
///
/// Plain float buffers in and out (row-major H x W, grey values 0..255 like OpenCV's 8-bit input;
/// flow u right, v down, in pixels, defined on the first image: I0(x) ~ I1(x + (u, v))), so that the
/// CUDA version can mirror it and no tensor type is involved. One `tvl1_workspace` holds every
/// buffer; the solver loops allocate nothing. Rows are split over OpenMP threads; results do not
/// depend on the thread count (per-row error sums are added in row order). The three hot loops
/// (primal, dual, warp) use AVX/AVX2 intrinsics when the compiler targets them, with plain scalar
/// loops otherwise: GCC did not vectorise them by itself (float reduction, std::sqrt's errno,
/// gathers), and 8-lane code also runs on AVX-512 machines.
///
/// Per scale and warp, the solver alternates (Zach et al.'s notation, l_t = lambda * theta,
/// taut = tau / theta):
///   v = u + TH(rho(u))              pointwise thresholding of the linearised data term
///   u = v + theta * div(p)          primal step
///   p = (p + taut * grad u) / (1 + taut * |grad u|)   dual step (one p pair per flow component)
/// The primal step of row y and the dual step of row y-1 are fused into one sweep (the dual step of
/// a row needs the new u of the next row, the primal step of a row needs the old p of the row
/// above), which gives exactly the Jacobi order of the textbook algorithm with one pass over memory
/// per iteration; threads own row bands and finish their band's last dual row after a barrier.
/// Stopping follows OpenCV: at most inner * outer iterations per warp, median filter before every
/// block of `inner_iterations`, stop once sum |u_new - u_old|^2 <= epsilon^2 * pixels.
///
/// Differences from OpenCV, on purpose: the pyramid is Gaussian-prefiltered before resampling (less
/// aliasing; `pyramid_sigma = 0` gives plain decimation); warps sample I1 with Catmull-Rom bicubic
/// interpolation and take the gradient of that same interpolant (OpenCV interpolates precomputed
/// central differences); pixels warped outside I1 get no data term (OpenCV samples zeros there);
/// flow is upsampled with the true size ratio per axis. `gamma` (illumination term) must be 0.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../core/error.hpp"
#include "detail/median_network.hpp"

#if defined(__AVX__)
#include <immintrin.h>
#endif

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace mscl::flow {

/// Solver parameters; the defaults are OpenCV's `DualTVL1OpticalFlow` defaults.
struct tvl1_options {
  float tau = 0.25f;            ///< time step of the dual update (stable for tau <= 1/4)
  float lambda = 0.15f;         ///< weight of the data term (larger: less smoothing)
  float theta = 0.3f;           ///< coupling of u and v
  int nscales = 5;              ///< pyramid levels (fewer if the coarsest would be below 16 px)
  int warps = 5;                ///< re-linearisations per level
  float epsilon = 0.01f;        ///< stop when the mean squared update is below epsilon^2
  int inner_iterations = 30;    ///< iterations between two median filterings
  int outer_iterations = 10;    ///< median-filtered blocks per warp
  float scale_step = 0.8f;      ///< size ratio between pyramid levels, in (0, 1)
  float gamma = 0.f;            ///< illumination-change term; only 0 is implemented
  int median_filtering = 5;     ///< median window: 5, 3, or 0/1 (off)
  bool use_initial_flow = false;///< start from the u, v passed in (finest-scale pixels)
  int threads = 0;              ///< OpenMP threads; 0 = omp_get_max_threads()
  /// Gaussian pre-blur sigma of each pyramid step = pyramid_sigma * sqrt(1/scale_step^2 - 1);
  /// 0 = plain bilinear decimation as in OpenCV.
  float pyramid_sigma = 0.6f;
};

/// Counters of the last call (for benchmarks and tuning).
struct tvl1_stats {
  std::int64_t iterations = 0;       ///< solver iterations summed over levels and warps
  std::int64_t pixel_iterations = 0; ///< iterations weighted by the level's pixel count
  std::int64_t median_passes = 0;
  int levels = 0;
};

/// Every buffer one call needs; keep one per thread of the caller and reuse it across frame pairs
/// of the same size so that nothing is allocated after the first call.
class tvl1_workspace {
 public:
  tvl1_stats stats;

 private:
  friend void tvl1(const float*, const float*, std::int64_t, std::int64_t, float*, float*,
                   const tvl1_options&, tvl1_workspace&);
  std::vector<float> buf_;
  std::vector<double> err_;
  std::int64_t h_ = -1, w_ = -1, threads_ = -1;
};

namespace detail {

using idx = std::ptrdiff_t;

inline int tvl1_thread_count(int requested) {
#if defined(_OPENMP)
  return requested > 0 ? requested : omp_get_max_threads();
#else
  (void)requested;
  return 1;
#endif
}

/// Separable Gaussian blur, replicate border; `tmp` holds h*w floats. Small images only go through
/// here once per call (pyramid construction), so clarity beats speed.
inline void gaussian_blur(const float* src, float* dst, float* tmp, idx h, idx w, float sigma, int nt) {
  const int rad = std::max(1, static_cast<int>(std::ceil(3.f * sigma)));
  float kern[64];
  const int r = std::min(rad, 31);
  float sum = 0.f;
  for (int k = -r; k <= r; ++k) sum += kern[k + r] = std::exp(-0.5f * k * k / (sigma * sigma));
  for (int k = 0; k <= 2 * r; ++k) kern[k] /= sum;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (idx y = 0; y < h; ++y) {
    const float* s = src + y * w;
    float* t = tmp + y * w;
    for (idx x = 0; x < w; ++x) {
      float acc = 0.f;
      for (int k = -r; k <= r; ++k) acc += kern[k + r] * s[std::clamp<idx>(x + k, 0, w - 1)];
      t[x] = acc;
    }
  }
#pragma omp parallel for schedule(static) num_threads(nt)
  for (idx y = 0; y < h; ++y) {
    float* d = dst + y * w;
    for (idx x = 0; x < w; ++x) d[x] = 0.f;
    for (int k = -r; k <= r; ++k) {
      const float* t = tmp + std::clamp<idx>(y + k, 0, h - 1) * w;
      const float c = kern[k + r];
      for (idx x = 0; x < w; ++x) d[x] += c * t[x];
    }
  }
}

/// Bilinear resize with pixel-centre alignment (OpenCV's INTER_LINEAR convention), optional
/// multiplication of the values (flow rescaling). dst has dh rows of stride dstride.
inline void resize_bilinear(const float* src, idx sh, idx sw, idx sstride, float* dst, idx dh, idx dw,
                            idx dstride, float mul, int nt) {
  const float fy = static_cast<float>(sh) / dh, fx = static_cast<float>(sw) / dw;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (idx y = 0; y < dh; ++y) {
    const float sy = std::clamp((y + 0.5f) * fy - 0.5f, 0.f, static_cast<float>(sh - 1));
    const idx y0 = std::min(static_cast<idx>(sy), sh - 1), y1 = std::min(y0 + 1, sh - 1);
    const float ay = sy - y0;
    const float* r0 = src + y0 * sstride;
    const float* r1 = src + y1 * sstride;
    float* d = dst + y * dstride;
    for (idx x = 0; x < dw; ++x) {
      const float sx = std::clamp((x + 0.5f) * fx - 0.5f, 0.f, static_cast<float>(sw - 1));
      const idx x0 = std::min(static_cast<idx>(sx), sw - 1), x1 = std::min(x0 + 1, sw - 1);
      const float ax = sx - x0;
      const float top = r0[x0] + ax * (r0[x1] - r0[x0]);
      const float bot = r1[x0] + ax * (r1[x1] - r1[x0]);
      d[x] = mul * (top + ay * (bot - top));
    }
  }
}

/// Catmull-Rom weights (and their derivatives d/dt) for the taps at offsets -1, 0, 1, 2 around a
/// fractional position t in [0, 1).
inline void cubic_weights(float t, float* wt, float* dw) {
  const float t2 = t * t, t3 = t2 * t;
  wt[0] = 0.5f * (-t3 + 2.f * t2 - t);
  wt[1] = 0.5f * (3.f * t3 - 5.f * t2 + 2.f);
  wt[2] = 0.5f * (-3.f * t3 + 4.f * t2 + t);
  wt[3] = 0.5f * (t3 - t2);
  dw[0] = 0.5f * (-3.f * t2 + 4.f * t - 1.f);
  dw[1] = 0.5f * (9.f * t2 - 10.f * t);
  dw[2] = 0.5f * (-9.f * t2 + 8.f * t + 1.f);
  dw[3] = 0.5f * (3.f * t2 - 2.f * t);
}

/// One pyramid level's planes. Flow (u1, u2) and dual (p11 .. p22) planes are padded: stride `s`,
/// row -1 and column -1 exist and are zero for p (so the divergence needs no border branches);
/// column `w` of u repeats column w-1 (so the forward difference is zero at the right border).
struct level_planes {
  idx h = 0, w = 0, s = 0;
  float *u1 = nullptr, *u2 = nullptr, *p11 = nullptr, *p12 = nullptr, *p21 = nullptr, *p22 = nullptr;
  float *m1 = nullptr, *m2 = nullptr;  // median output (then swapped with u1/u2)
  float *ix = nullptr, *iy = nullptr, *rc = nullptr, *gr = nullptr, *ig = nullptr;  // stride w
};

/// Primal step of row y: thresholding, divergence, new u; returns sum of squared updates.
inline double primal_row(const level_planes& L, idx y, float lt, float theta) {
  const idx w = L.w, s = L.s;
  float* __restrict u1 = L.u1 + y * s;
  float* __restrict u2 = L.u2 + y * s;
  const float* __restrict p11 = L.p11 + y * s;
  const float* __restrict p12 = L.p12 + y * s;
  const float* __restrict p12u = L.p12 + (y - 1) * s;
  const float* __restrict p21 = L.p21 + y * s;
  const float* __restrict p22 = L.p22 + y * s;
  const float* __restrict p22u = L.p22 + (y - 1) * s;
  const float* __restrict ix = L.ix + y * w;
  const float* __restrict iy = L.iy + y * w;
  const float* __restrict rc = L.rc + y * w;
  const float* __restrict gr = L.gr + y * w;
  const float* __restrict ig = L.ig + y * w;
  float err = 0.f;
  idx x = 0;
#if defined(__AVX__)
  // Intrinsics: GCC kept this loop scalar when it was inlined into the OpenMP region (and does not
  // reorder the float error sum without -ffast-math); 8 lanes also suit AVX-512 machines.
  {
    const __m256 vlt = _mm256_set1_ps(lt), vnlt = _mm256_set1_ps(-lt), vth = _mm256_set1_ps(theta);
    __m256 verr = _mm256_setzero_ps();
    for (; x + 8 <= w; x += 8) {
      const __m256 a1 = _mm256_loadu_ps(u1 + x), a2 = _mm256_loadu_ps(u2 + x);
      const __m256 gx = _mm256_loadu_ps(ix + x), gy = _mm256_loadu_ps(iy + x);
      const __m256 rho = _mm256_add_ps(_mm256_loadu_ps(rc + x),
                                       _mm256_add_ps(_mm256_mul_ps(gx, a1), _mm256_mul_ps(gy, a2)));
      const __m256 thr = _mm256_mul_ps(vlt, _mm256_loadu_ps(gr + x));
      const __m256 inside = _mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), rho), _mm256_loadu_ps(ig + x));
      const __m256 lo = _mm256_cmp_ps(rho, _mm256_sub_ps(_mm256_setzero_ps(), thr), _CMP_LT_OQ);
      const __m256 hi = _mm256_cmp_ps(rho, thr, _CMP_GT_OQ);
      const __m256 fi = _mm256_blendv_ps(_mm256_blendv_ps(inside, vnlt, hi), vlt, lo);
      const __m256 d1 = _mm256_add_ps(_mm256_sub_ps(_mm256_loadu_ps(p11 + x), _mm256_loadu_ps(p11 + x - 1)),
                                      _mm256_sub_ps(_mm256_loadu_ps(p12 + x), _mm256_loadu_ps(p12u + x)));
      const __m256 d2 = _mm256_add_ps(_mm256_sub_ps(_mm256_loadu_ps(p21 + x), _mm256_loadu_ps(p21 + x - 1)),
                                      _mm256_sub_ps(_mm256_loadu_ps(p22 + x), _mm256_loadu_ps(p22u + x)));
      const __m256 c1 = _mm256_add_ps(_mm256_mul_ps(fi, gx), _mm256_mul_ps(vth, d1));
      const __m256 c2 = _mm256_add_ps(_mm256_mul_ps(fi, gy), _mm256_mul_ps(vth, d2));
      _mm256_storeu_ps(u1 + x, _mm256_add_ps(a1, c1));
      _mm256_storeu_ps(u2 + x, _mm256_add_ps(a2, c2));
      verr = _mm256_add_ps(verr, _mm256_add_ps(_mm256_mul_ps(c1, c1), _mm256_mul_ps(c2, c2)));
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, verr);
    for (float e : lanes) err += e;
  }
#endif
  for (; x < w; ++x) {
    const float a1 = u1[x], a2 = u2[x];
    const float gx = ix[x], gy = iy[x];
    const float rho = rc[x] + gx * a1 + gy * a2;
    const float thr = lt * gr[x];
    const float inside = -rho * ig[x];  // loaded unconditionally so the selects are branch-free
    // TH: step to the data term's minimiser along grad I1, at most l_t * |grad I1| long.
    const float fi = rho < -thr ? lt : (rho > thr ? -lt : inside);
    const float d1 = p11[x] - p11[x - 1] + p12[x] - p12u[x];
    const float d2 = p21[x] - p21[x - 1] + p22[x] - p22u[x];
    const float c1 = fi * gx + theta * d1;
    const float c2 = fi * gy + theta * d2;
    u1[x] = a1 + c1;
    u2[x] = a2 + c2;
    err += c1 * c1 + c2 * c2;
  }
  u1[w] = u1[w - 1];
  u2[w] = u2[w - 1];
  return err;
}

/// Dual step of row y from the (new) u of rows y and y+1 (y+1 = y on the last row: zero
/// vertical difference).
inline void dual_row(const level_planes& L, idx y, float taut) {
  const idx w = L.w, s = L.s;
  const idx yn = y + 1 < L.h ? y + 1 : y;
  const float* __restrict u1 = L.u1 + y * s;
  const float* __restrict u2 = L.u2 + y * s;
  const float* __restrict u1n = L.u1 + yn * s;
  const float* __restrict u2n = L.u2 + yn * s;
  float* __restrict p11 = L.p11 + y * s;
  float* __restrict p12 = L.p12 + y * s;
  float* __restrict p21 = L.p21 + y * s;
  float* __restrict p22 = L.p22 + y * s;
  idx x = 0;
#if defined(__AVX__)
  // Written with intrinsics because GCC does not vectorise std::sqrt unless -fno-math-errno is
  // given on the command line, which a header cannot require.
  const __m256 vt = _mm256_set1_ps(taut), one = _mm256_set1_ps(1.f);
  for (; x + 8 <= w; x += 8) {
    const __m256 a1 = _mm256_loadu_ps(u1 + x), a2 = _mm256_loadu_ps(u2 + x);
    const __m256 u1x = _mm256_sub_ps(_mm256_loadu_ps(u1 + x + 1), a1);
    const __m256 u1y = _mm256_sub_ps(_mm256_loadu_ps(u1n + x), a1);
    const __m256 u2x = _mm256_sub_ps(_mm256_loadu_ps(u2 + x + 1), a2);
    const __m256 u2y = _mm256_sub_ps(_mm256_loadu_ps(u2n + x), a2);
    const __m256 n1 = _mm256_sqrt_ps(_mm256_add_ps(_mm256_mul_ps(u1x, u1x), _mm256_mul_ps(u1y, u1y)));
    const __m256 n2 = _mm256_sqrt_ps(_mm256_add_ps(_mm256_mul_ps(u2x, u2x), _mm256_mul_ps(u2y, u2y)));
    const __m256 g1 = _mm256_div_ps(one, _mm256_add_ps(one, _mm256_mul_ps(vt, n1)));
    const __m256 g2 = _mm256_div_ps(one, _mm256_add_ps(one, _mm256_mul_ps(vt, n2)));
    _mm256_storeu_ps(p11 + x, _mm256_mul_ps(_mm256_add_ps(_mm256_loadu_ps(p11 + x), _mm256_mul_ps(vt, u1x)), g1));
    _mm256_storeu_ps(p12 + x, _mm256_mul_ps(_mm256_add_ps(_mm256_loadu_ps(p12 + x), _mm256_mul_ps(vt, u1y)), g1));
    _mm256_storeu_ps(p21 + x, _mm256_mul_ps(_mm256_add_ps(_mm256_loadu_ps(p21 + x), _mm256_mul_ps(vt, u2x)), g2));
    _mm256_storeu_ps(p22 + x, _mm256_mul_ps(_mm256_add_ps(_mm256_loadu_ps(p22 + x), _mm256_mul_ps(vt, u2y)), g2));
  }
#endif
  for (; x < w; ++x) {
    const float u1x = u1[x + 1] - u1[x], u1y = u1n[x] - u1[x];
    const float u2x = u2[x + 1] - u2[x], u2y = u2n[x] - u2[x];
    const float ng1 = 1.f / (1.f + taut * std::sqrt(u1x * u1x + u1y * u1y));
    const float ng2 = 1.f / (1.f + taut * std::sqrt(u2x * u2x + u2y * u2y));
    p11[x] = (p11[x] + taut * u1x) * ng1;
    p12[x] = (p12[x] + taut * u1y) * ng1;
    p21[x] = (p21[x] + taut * u2x) * ng2;
    p22[x] = (p22[x] + taut * u2y) * ng2;
  }
}

/// Warps I1 by the current flow with Catmull-Rom bicubic interpolation and takes the gradient of
/// that same interpolant (derivative weights on the same 16 taps: one gather instead of three, and
/// value and gradient are consistent; on grid points the gradient is the central difference). Stores
/// the linearised data term rho(u) = rc + ix*u1 + iy*u2 with rc = I1w - ix*u1_0 - iy*u2_0 - I0.
/// Scalar warp of one pixel (tails and non-AVX2 builds).
inline void warp_pixel(const level_planes& L, const float* i0, const float* i1, idx y, idx x, float a1,
                       float a2) {
  const idx h = L.h, w = L.w, o = y * w + x;
  const float fx = x + a1, fy = y + a2;
  if (!(fx >= 0.f && fx <= w - 1 && fy >= 0.f && fy <= h - 1)) {
    // Outside I1 there is no information: leave this pixel to the regulariser.
    L.ix[o] = L.iy[o] = L.rc[o] = L.gr[o] = L.ig[o] = 0.f;
    return;
  }
  const idx x0 = std::min(static_cast<idx>(fx), w - 1), y0 = std::min(static_cast<idx>(fy), h - 1);
  float wx[4], wy[4], dx[4], dy[4];
  cubic_weights(fx - x0, wx, dx);
  cubic_weights(fy - y0, wy, dy);
  idx xs[4];
  for (int k = 0; k < 4; ++k) xs[k] = std::clamp<idx>(x0 + k - 1, 0, w - 1);
  float sv = 0.f, sx = 0.f, sy = 0.f;
  for (int j = 0; j < 4; ++j) {
    const float* q = i1 + std::clamp<idx>(y0 + j - 1, 0, h - 1) * w;
    float r = 0.f, rd = 0.f;
    for (int k = 0; k < 4; ++k) { r += wx[k] * q[xs[k]]; rd += dx[k] * q[xs[k]]; }
    sv += wy[j] * r;
    sy += dy[j] * r;
    sx += wy[j] * rd;
  }
  const float g = sx * sx + sy * sy;
  L.ix[o] = sx;
  L.iy[o] = sy;
  L.rc[o] = sv - sx * a1 - sy * a2 - i0[o];
  L.gr[o] = g;
  L.ig[o] = g > 1e-10f ? 1.f / g : 0.f;
}

#if defined(__AVX2__)
/// Catmull-Rom weights and derivatives for 8 fractional positions at once.
inline void cubic_weights8(__m256 t, __m256* wt, __m256* dw) {
  const __m256 h = _mm256_set1_ps(0.5f), t2 = _mm256_mul_ps(t, t), t3 = _mm256_mul_ps(t2, t);
  auto c = [](float v) { return _mm256_set1_ps(v); };
  auto poly = [&](float a3, float a2, float a1, float a0) {  // 0.5 * (a3 t^3 + a2 t^2 + a1 t + a0)
    return _mm256_mul_ps(h, _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(c(a3), t3), _mm256_mul_ps(c(a2), t2)),
                                          _mm256_add_ps(_mm256_mul_ps(c(a1), t), c(a0))));
  };
  wt[0] = poly(-1.f, 2.f, -1.f, 0.f);
  wt[1] = poly(3.f, -5.f, 0.f, 2.f);
  wt[2] = poly(-3.f, 4.f, 1.f, 0.f);
  wt[3] = poly(1.f, -1.f, 0.f, 0.f);
  dw[0] = poly(0.f, -3.f, 4.f, -1.f);
  dw[1] = poly(0.f, 9.f, -10.f, 0.f);
  dw[2] = poly(0.f, -9.f, 8.f, 1.f);
  dw[3] = poly(0.f, 3.f, -2.f, 0.f);
}
#endif

/// Warps I1 by the current flow with Catmull-Rom bicubic interpolation and takes the gradient of
/// that same interpolant (derivative weights on the same 16 taps: one gather instead of three, and
/// value and gradient are consistent; on grid points the gradient is the central difference). Stores
/// the linearised data term rho(u) = rc + ix*u1 + iy*u2 with rc = I1w - ix*u1_0 - iy*u2_0 - I0.
/// Border taps are clamped (replicate); pixels whose target leaves I1 get no data term.
inline void warp_level(const level_planes& L, const float* i0, const float* i1) {
  const idx h = L.h, w = L.w;
#pragma omp for schedule(static)
  for (idx y = 0; y < h; ++y) {
    const float* u1 = L.u1 + y * L.s;
    const float* u2 = L.u2 + y * L.s;
    idx x = 0;
#if defined(__AVX2__)
    const __m256 fw1 = _mm256_set1_ps(static_cast<float>(w - 1)), fh1 = _mm256_set1_ps(static_cast<float>(h - 1));
    const __m256 zero = _mm256_setzero_ps();
    const __m256i iw1 = _mm256_set1_epi32(static_cast<int>(w - 1)), ih1 = _mm256_set1_epi32(static_cast<int>(h - 1));
    const __m256i izero = _mm256_setzero_si256(), iw = _mm256_set1_epi32(static_cast<int>(w));
    const __m256 lane = _mm256_setr_ps(0.f, 1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f);
    for (; x + 8 <= w; x += 8) {
      const __m256 a1 = _mm256_loadu_ps(u1 + x), a2 = _mm256_loadu_ps(u2 + x);
      __m256 fx = _mm256_add_ps(_mm256_add_ps(_mm256_set1_ps(static_cast<float>(x)), lane), a1);
      __m256 fy = _mm256_add_ps(_mm256_set1_ps(static_cast<float>(y)), a2);
      const __m256 inside = _mm256_and_ps(
          _mm256_and_ps(_mm256_cmp_ps(fx, zero, _CMP_GE_OQ), _mm256_cmp_ps(fx, fw1, _CMP_LE_OQ)),
          _mm256_and_ps(_mm256_cmp_ps(fy, zero, _CMP_GE_OQ), _mm256_cmp_ps(fy, fh1, _CMP_LE_OQ)));
      // Keep the taps in range for outside (and NaN) lanes; their results are zeroed below.
      fx = _mm256_blendv_ps(zero, fx, inside);
      fy = _mm256_blendv_ps(zero, fy, inside);
      const __m256i x0 = _mm256_cvttps_epi32(fx), y0 = _mm256_cvttps_epi32(fy);
      __m256 wx[4], dx[4], wy[4], dy[4];
      cubic_weights8(_mm256_sub_ps(fx, _mm256_cvtepi32_ps(x0)), wx, dx);
      cubic_weights8(_mm256_sub_ps(fy, _mm256_cvtepi32_ps(y0)), wy, dy);
      __m256i xs[4];
      for (int k = 0; k < 4; ++k)
        xs[k] = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(x0, _mm256_set1_epi32(k - 1)), izero), iw1);
      __m256 sv = zero, sx = zero, sy = zero;
      for (int j = 0; j < 4; ++j) {
        const __m256i row = _mm256_mullo_epi32(
            _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(y0, _mm256_set1_epi32(j - 1)), izero), ih1), iw);
        __m256 r = zero, rd = zero;
        for (int k = 0; k < 4; ++k) {
          const __m256 q = _mm256_i32gather_ps(i1, _mm256_add_epi32(row, xs[k]), 4);
          r = _mm256_add_ps(r, _mm256_mul_ps(wx[k], q));
          rd = _mm256_add_ps(rd, _mm256_mul_ps(dx[k], q));
        }
        sv = _mm256_add_ps(sv, _mm256_mul_ps(wy[j], r));
        sy = _mm256_add_ps(sy, _mm256_mul_ps(dy[j], r));
        sx = _mm256_add_ps(sx, _mm256_mul_ps(wy[j], rd));
      }
      sx = _mm256_and_ps(sx, inside);
      sy = _mm256_and_ps(sy, inside);
      const __m256 g = _mm256_add_ps(_mm256_mul_ps(sx, sx), _mm256_mul_ps(sy, sy));
      const __m256 rcv = _mm256_sub_ps(
          _mm256_sub_ps(sv, _mm256_add_ps(_mm256_mul_ps(sx, a1), _mm256_mul_ps(sy, a2))), _mm256_loadu_ps(i0 + y * w + x));
      const __m256 big = _mm256_cmp_ps(g, _mm256_set1_ps(1e-10f), _CMP_GT_OQ);
      const __m256 igv = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.f), _mm256_max_ps(g, _mm256_set1_ps(1e-10f))), big);
      _mm256_storeu_ps(L.ix + y * w + x, sx);
      _mm256_storeu_ps(L.iy + y * w + x, sy);
      _mm256_storeu_ps(L.rc + y * w + x, _mm256_and_ps(rcv, inside));
      _mm256_storeu_ps(L.gr + y * w + x, g);
      _mm256_storeu_ps(L.ig + y * w + x, igv);
    }
#endif
    for (; x < w; ++x) warp_pixel(L, i0, i1, y, x, u1[x], u2[x]);
  }
}

}  // namespace detail

/// Dense flow from i0 to i1 (both h x w, row-major, values ~0..255): on return u[y*w+x], v[y*w+x]
/// hold the displacement such that i0(x, y) ~ i1(x + u, y + v). With `use_initial_flow`, u and v are
/// read first as the starting flow. Throws shape_error for null/empty/too small (< 8 px) inputs and
/// value_error for parameters out of range.
inline void tvl1(const float* i0, const float* i1, std::int64_t height, std::int64_t width, float* u,
                 float* v, const tvl1_options& opt, tvl1_workspace& ws) {
  using detail::idx;
  MSCL_CHECK(i0 != nullptr && i1 != nullptr && u != nullptr && v != nullptr, shape_error,
             "flow::tvl1: null image or flow pointer");
  MSCL_CHECK(height >= 8 && width >= 8, shape_error,
             "flow::tvl1: images must be at least 8x8 (H x W), got " << height << "x" << width);
  MSCL_CHECK(opt.tau > 0.f && opt.lambda > 0.f && opt.theta > 0.f && opt.epsilon >= 0.f, value_error,
             "flow::tvl1: tau, lambda, theta must be > 0 and epsilon >= 0, got tau=" << opt.tau << " lambda="
                 << opt.lambda << " theta=" << opt.theta << " epsilon=" << opt.epsilon);
  MSCL_CHECK(opt.scale_step > 0.f && opt.scale_step < 1.f && opt.nscales >= 1 && opt.warps >= 1 &&
                 opt.inner_iterations >= 1 && opt.outer_iterations >= 1,
             value_error,
             "flow::tvl1: need 0 < scale_step < 1 and nscales, warps, inner_iterations, outer_iterations >= 1, got "
                 << opt.scale_step << ", " << opt.nscales << ", " << opt.warps << ", " << opt.inner_iterations
                 << ", " << opt.outer_iterations);
  MSCL_CHECK(opt.median_filtering == 0 || opt.median_filtering == 1 || opt.median_filtering == 3 ||
                 opt.median_filtering == 5,
             value_error, "flow::tvl1: median_filtering must be 0, 1, 3 or 5, got " << opt.median_filtering);
  MSCL_CHECK(opt.gamma == 0.f, value_error, "flow::tvl1: gamma (illumination term) must be 0, got " << opt.gamma);

  const idx h0 = height, w0 = width;
  const int nt = detail::tvl1_thread_count(opt.threads);
  ws.stats = {};

  // Level sizes; stop before a level drops below 16 px on its short side.
  std::vector<idx> hs{h0}, ws_{w0};
  for (int s = 1; s < opt.nscales; ++s) {
    const double f = std::pow(static_cast<double>(opt.scale_step), s);
    const idx hh = static_cast<idx>(std::lround(h0 * f)), ww = static_cast<idx>(std::lround(w0 * f));
    if (std::min(hh, ww) < 16) break;
    hs.push_back(hh);
    ws_.push_back(ww);
  }
  const int nl = static_cast<int>(hs.size());
  ws.stats.levels = nl;

  // Workspace layout (floats): pyramids, per-level planes sized for level 0, coarse-flow copy.
  const idx s0 = (w0 + 7) / 8 * 8 + 16;  // padded stride: 8 left (col -1 zero), >= 8 right
  const idx padded = (h0 + 2) * s0;
  idx pyr = 0;
  for (int l = 0; l < nl; ++l) pyr += hs[l] * ws_[l];
  const idx n0 = h0 * w0;
  const idx colbuf = 5 * (s0 + 8);
  const idx total = 2 * pyr + 7 * n0 + 8 * padded + 2 * n0 + nt * colbuf + 64;
  if (static_cast<idx>(ws.buf_.size()) < total) ws.buf_.assign(total, 0.f);
  if (static_cast<idx>(ws.err_.size()) < h0) ws.err_.assign(h0, 0.0);
  float* base = ws.buf_.data();
  idx off = 0;
  auto take = [&](idx n) { float* p = base + off; off += (n + 15) / 16 * 16; return p; };
  std::vector<float*> py0(nl), py1(nl);
  for (int l = 0; l < nl; ++l) { py0[l] = take(hs[l] * ws_[l]); py1[l] = take(hs[l] * ws_[l]); }
  float* tmp = take(n0);
  float* tmp2 = take(n0);
  float* cu1 = take(n0);
  float* cu2 = take(n0);
  detail::level_planes L;
  L.ix = take(n0); L.iy = take(n0); L.rc = take(n0); L.gr = take(n0); L.ig = take(n0);
  float* pl[8];
  for (auto& p : pl) p = take(padded);
  float* cols = take(nt * colbuf);
  MSCL_ASSERT(off <= static_cast<idx>(ws.buf_.size()));

  // Pyramid: level l+1 = bilinear decimation of (blurred) level l.
  std::copy(i0, i0 + n0, py0[0]);
  std::copy(i1, i1 + n0, py1[0]);
  const float sig = opt.pyramid_sigma * std::sqrt(1.f / (opt.scale_step * opt.scale_step) - 1.f);
  for (int l = 1; l < nl; ++l) {
    for (int k = 0; k < 2; ++k) {
      const float* src = k == 0 ? py0[l - 1] : py1[l - 1];
      float* dst = k == 0 ? py0[l] : py1[l];
      const float* from = src;
      if (sig > 0.f) {
        detail::gaussian_blur(src, tmp2, tmp, hs[l - 1], ws_[l - 1], sig, nt);
        from = tmp2;
      }
      detail::resize_bilinear(from, hs[l - 1], ws_[l - 1], ws_[l - 1], dst, hs[l], ws_[l], ws_[l], 1.f, nt);
    }
  }

  const float lt = opt.lambda * opt.theta, taut = opt.tau / opt.theta, theta = opt.theta;
  const int med = opt.median_filtering >= 3 ? opt.median_filtering : 0;

  for (int l = nl - 1; l >= 0; --l) {
    const idx h = hs[l], w = ws_[l], s = (w + 7) / 8 * 8 + 16;
    L.h = h; L.w = w; L.s = s;
    // Row -1 and column -1 of every padded plane are at offset s + 8.
    L.u1 = pl[0] + s + 8; L.u2 = pl[1] + s + 8;
    L.p11 = pl[2] + s + 8; L.p12 = pl[3] + s + 8; L.p21 = pl[4] + s + 8; L.p22 = pl[5] + s + 8;
    L.m1 = pl[6] + s + 8; L.m2 = pl[7] + s + 8;
    // Dual variables restart at zero on every level (as OpenCV), including the zero borders.
    for (int k = 2; k < 6; ++k) std::fill(pl[k], pl[k] + (h + 2) * s, 0.f);

    // Initial flow of this level.
    if (l == nl - 1) {
      if (opt.use_initial_flow) {
        const float fx = static_cast<float>(w) / w0, fy = static_cast<float>(h) / h0;
        detail::resize_bilinear(u, h0, w0, w0, L.u1, h, w, s, fx, nt);
        detail::resize_bilinear(v, h0, w0, w0, L.u2, h, w, s, fy, nt);
      } else {
        for (idx y = 0; y < h; ++y) {
          std::fill(L.u1 + y * s, L.u1 + y * s + w, 0.f);
          std::fill(L.u2 + y * s, L.u2 + y * s + w, 0.f);
        }
      }
    } else {
      const idx hc = hs[l + 1], wc = ws_[l + 1];
      detail::resize_bilinear(cu1, hc, wc, wc, L.u1, h, w, s, static_cast<float>(w) / wc, nt);
      detail::resize_bilinear(cu2, hc, wc, wc, L.u2, h, w, s, static_cast<float>(h) / hc, nt);
    }
    for (idx y = 0; y < h; ++y) { L.u1[y * s + w] = L.u1[y * s + w - 1]; L.u2[y * s + w] = L.u2[y * s + w - 1]; }

    const double stop = static_cast<double>(opt.epsilon) * opt.epsilon * static_cast<double>(h * w);
    double* err_row = ws.err_.data();
    std::int64_t iters = 0, medians = 0;
    const int ntl = static_cast<int>(std::min<idx>(nt, std::max<idx>(1, h / 4)));

#pragma omp parallel num_threads(ntl)
    {
#if defined(_OPENMP)
      const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
      const int tid = 0, nth = 1;
#endif
      const idx ya = h * tid / nth, yb = h * (tid + 1) / nth;
      float* mycols = cols + tid * colbuf;
      detail::level_planes P = L;  // thread-local copy: u/m pointers are swapped identically
      for (int wp = 0; wp < opt.warps; ++wp) {
        detail::warp_level(P, py0[l], py1[l]);  // omp for: ends with a barrier
        double err = 1e300;
        for (int outer = 0; outer < opt.outer_iterations && err > stop; ++outer) {
          if (med) {
            for (int c = 0; c < 2; ++c) {
              const float* src = c == 0 ? P.u1 : P.u2;
              float* dst = c == 0 ? P.m1 : P.m2;
              auto row = [&](idx yy) { return src + yy * s; };
              for (idx y = ya; y < yb; ++y) {
                if (med == 5) detail::median_row<5>(row, y, h, w, mycols, dst + y * s);
                else detail::median_row<3>(row, y, h, w, mycols, dst + y * s);
                dst[y * s + w] = dst[y * s + w - 1];
              }
            }
            std::swap(P.u1, P.m1);
            std::swap(P.u2, P.m2);
#pragma omp barrier
            if (tid == 0) ++medians;
          }
          for (int inner = 0; inner < opt.inner_iterations && err > stop; ++inner) {
            for (idx y = ya; y < yb; ++y) {
              err_row[y] = detail::primal_row(P, y, lt, theta);
              if (y > ya) detail::dual_row(P, y - 1, taut);
            }
#pragma omp barrier
            if (yb > ya) detail::dual_row(P, yb - 1, taut);
            double e = 0.0;
            for (idx y = 0; y < h; ++y) e += err_row[y];
            err = e;
            if (tid == 0) ++iters;
#pragma omp barrier
          }
        }
      }
      if (tid == 0) { L.u1 = P.u1; L.u2 = P.u2; }
    }
    ws.stats.iterations += iters;
    ws.stats.pixel_iterations += iters * h * w;
    ws.stats.median_passes += medians;

    // Hand the flow to the next finer level (or the caller).
    float* o1 = l == 0 ? u : cu1;
    float* o2 = l == 0 ? v : cu2;
    for (idx y = 0; y < h; ++y) {
      std::copy(L.u1 + y * s, L.u1 + y * s + w, o1 + y * w);
      std::copy(L.u2 + y * s, L.u2 + y * s + w, o2 + y * w);
    }
  }
}

/// A dense flow field: u (x, right) and v (y, down) planes, row-major height x width.
struct flow_field {
  std::int64_t height = 0, width = 0;
  std::vector<float> u, v;
};

/// Convenience overload: sizes checked, fresh workspace.
inline flow_field tvl1(const std::vector<float>& i0, const std::vector<float>& i1, std::int64_t height,
                       std::int64_t width, const tvl1_options& opt = {}) {
  MSCL_CHECK(height > 0 && width > 0 && static_cast<std::int64_t>(i0.size()) == height * width &&
                 static_cast<std::int64_t>(i1.size()) == height * width,
             shape_error,
             "flow::tvl1: expected two images of " << height << "x" << width << " = " << height * width
                                                   << " values, got " << i0.size() << " and " << i1.size());
  flow_field f{height, width, std::vector<float>(i0.size(), 0.f), std::vector<float>(i0.size(), 0.f)};
  tvl1_workspace ws;
  tvl1(i0.data(), i1.data(), height, width, f.u.data(), f.v.data(), opt, ws);
  return f;
}

}  // namespace mscl::flow
