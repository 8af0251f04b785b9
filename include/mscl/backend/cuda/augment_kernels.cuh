/// \file augment_kernels.cuh
/// \brief Device kernels of the RGB photometric stage (augment/photometric_batch.hpp): colour
///        jitter → grey → Gaussian blur → ImageNet normalisation of a B×3×T×H×W batch, from the
///        plan the host decoded. Compiled by nvcc only; the host wrapper is in augment.hpp.
///
/// Three launches:
///   photometric_frames   one block per (sample, frame): the jitter ops in their order, then
///                        grey, then (samples without blur) normalisation, in → out. The
///                        pixel-local ops (brightness, saturation, hue, grey, normalise) of a run
///                        are fused into one pass; contrast needs the frame's mean grey at its
///                        point in the order, so the pass before it also sums the grey values
///                        (in double) and a block reduction gives the mean: at most two passes.
///   photometric_blur_rows     blur samples only: horizontal pass, out → tmp (reflect border).
///   photometric_blur_cols     blur samples only: vertical pass, tmp → out, then normalisation.
///
/// The arithmetic is the CPU's (augment/color.hpp) expression by expression, each product, sum
/// and quotient rounded once through the `__f*_rn` intrinsics, so that nvcc can neither contract
/// a·x + k into an FMA nor use an approximate division: every op is bit-identical to the CPU
/// code of a translation unit built without -march (nvcc passes the host compiler none). The one
/// difference is the order of the contrast mean's double sum (a block reduction instead of a
/// sequential loop), which can move the float mean by an ulp.
#pragma once
#include "elementwise.cuh"

namespace mscl::cuda_backend::kernels {

#define MSCL_PHOTO_GRID_STRIDE(i, n) \
  for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += i64(blockDim.x) * gridDim.x)

/// One frame's jitter, as augment::jitter_coefficients (ops −1: none).
struct photometric_frame {
  int ops[4];
  float brightness, contrast, contrast_rest, saturation, saturation_rest, hue;
};

/// One sample's per-clip decisions; `kernel` 0: no blur, else the odd kernel size, whose weights
/// are `kernel` floats from weights + b·max_kernel + (max_kernel − kernel)/2.
struct photometric_sample {
  int grey, normalize, kernel;
};

namespace photo {

__device__ inline float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ inline float add(float a, float b) { return __fadd_rn(a, b); }
__device__ inline float sub(float a, float b) { return __fsub_rn(a, b); }
__device__ inline float div(float a, float b) { return __fdiv_rn(a, b); }
/// augment::detail::clamp01 (NaN passes through, as there).
__device__ inline float clamp01(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }
/// std::max / std::min as the CPU's hue_pixel calls them (the first argument wins ties).
__device__ inline float smax(float a, float b) { return a < b ? b : a; }
__device__ inline float smin(float a, float b) { return b < a ? b : a; }

/// color_jitter::grey (torchvision's weights).
__device__ inline float jitter_grey(float r, float g, float b) {
  return add(add(mul(0.2989f, r), mul(0.587f, g)), mul(0.114f, b));
}

/// color_jitter::hue_pixel: torchvision's _rgb2hsv → (H + shift) mod 1 → _hsv2rgb.
__device__ inline void hue_pixel(float& r, float& g, float& b, float shift) {
  const float maxc = smax(r, smax(g, b)), minc = smin(r, smin(g, b));
  const bool eqc = maxc == minc;
  const float cr = sub(maxc, minc);
  const float s = div(cr, eqc ? 1.f : maxc);
  const float dv = eqc ? 1.f : cr;
  const float rc = div(sub(maxc, r), dv), gc = div(sub(maxc, g), dv), bc = div(sub(maxc, b), dv);
  float h;
  if (maxc == r) h = sub(bc, gc);
  else if (maxc == g) h = sub(add(2.f, rc), bc);
  else h = sub(add(4.f, gc), rc);
  h = fmodf(add(div(h, 6.f), 1.f), 1.f);
  h = add(h, shift);
  h = sub(h, floorf(h));
  const float v = maxc;
  const float h6 = mul(h, 6.f), fi = floorf(h6), fr = sub(h6, fi);
  const float pp = clamp01(mul(v, sub(1.f, s))), q = clamp01(mul(v, sub(1.f, mul(s, fr)))),
              t = clamp01(mul(v, sub(1.f, mul(s, sub(1.f, fr)))));
  switch (((int(fi) % 6) + 6) % 6) {
    case 0: r = v; g = t; b = pp; break;
    case 1: r = q; g = v; b = pp; break;
    case 2: r = pp; g = v; b = t; break;
    case 3: r = pp; g = q; b = v; break;
    case 4: r = t; g = pp; b = v; break;
    default: r = v; g = pp; b = q; break;
  }
}

/// One pixel through ops[from, to) of c (contrast with the offset k = contrast_rest·mean).
/// (Unrolled, so that c.ops is indexed statically and c stays in registers.)
__device__ inline void jitter_ops(const photometric_frame& c, int from, int to, float k, float& r, float& g, float& b) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if (i < from || i >= to) continue;
    const int op = c.ops[i];
    if (op == 0) {
      r = clamp01(mul(c.brightness, r));
      g = clamp01(mul(c.brightness, g));
      b = clamp01(mul(c.brightness, b));
    } else if (op == 1) {
      r = clamp01(add(mul(c.contrast, r), k));
      g = clamp01(add(mul(c.contrast, g), k));
      b = clamp01(add(mul(c.contrast, b), k));
    } else if (op == 2) {
      const float y = mul(c.saturation_rest, jitter_grey(r, g, b));
      r = clamp01(add(mul(c.saturation, r), y));
      g = clamp01(add(mul(c.saturation, g), y));
      b = clamp01(add(mul(c.saturation, b), y));
    } else if (op == 3) {
      hue_pixel(r, g, b, c.hue);
    }
  }
}

/// augment::normalize's defaults (ImageNet mean / std) for channel c.
__device__ inline float normalized(float x, int c) {
  const float mean = c == 0 ? 0.485f : (c == 1 ? 0.456f : 0.406f);
  const float sd = c == 0 ? 0.229f : (c == 1 ? 0.224f : 0.225f);
  return div(sub(x, mean), sd);
}

/// The reflect index of position i in [0, n) (mirror without repeating the edge; |overhang| < n).
__device__ inline i64 reflect(i64 i, i64 n) { return i < 0 ? -i : (i >= n ? 2 * (n - 1) - i : i); }

}  // namespace photo

/// One block per (sample b, frame t) of a B×3×T×H×W batch (blockIdx.x = b·nt + t; blockDim a
/// multiple of 32): the frame's jitter ops in order, grey (kornia weights) when the sample asks,
/// and normalisation for samples that ask and have no blur (blurred samples are normalised after
/// the blur, in photometric_blur_cols). Samples without any op are copied unchanged. (in and out
/// are not __restrict__: the final pass may reread out, and must not go through the read-only
/// cache for it.)
__global__ void photometric_frames(const float* in, float* out, i64 nt, i64 hw,
                                   const photometric_frame* __restrict__ frames,
                                   const photometric_sample* __restrict__ samples) {
  __shared__ double shared[32];
  __shared__ float offset;
  const i64 bt = blockIdx.x, b = bt / nt, t = bt % nt;
  const photometric_frame c = frames[bt];
  const photometric_sample s = samples[b];
  const bool grey = s.grey != 0, norm = s.normalize != 0 && s.kernel == 0;
  const i64 plane = nt * hw, base = b * 3 * plane + t * hw;
  const float* ir = in + base;
  const float* ig = ir + plane;
  const float* ib = ig + plane;
  float* orr = out + base;
  float* og = orr + plane;
  float* ob = og + plane;
  int cpos = 4;  // position of contrast in the order (4: none)
#pragma unroll
  for (int i = 0; i < 4; ++i)
    if (c.ops[i] == 1) cpos = i;
  const float* sr = ir;  // where the final pass reads
  const float* sg = ig;
  const float* sb = ib;
  float k = 0.f;
  if (cpos < 4) {
    // Pass 1: the ops before contrast (written to out when there are any) and the grey sum.
    double sum = 0;
    for (i64 i = threadIdx.x; i < hw; i += blockDim.x) {
      float r = ir[i], g = ig[i], bl = ib[i];
      if (cpos > 0) {
        photo::jitter_ops(c, 0, cpos, 0.f, r, g, bl);
        orr[i] = r;
        og[i] = g;
        ob[i] = bl;
      }
      sum += double(photo::jitter_grey(r, g, bl));
    }
    sum = block_sum(sum, shared);
    if (threadIdx.x == 0) offset = photo::mul(c.contrast_rest, float(sum / double(hw)));
    __syncthreads();
    k = offset;
    if (cpos > 0) {  // each thread rereads only the pixels it wrote itself
      sr = orr;
      sg = og;
      sb = ob;
    }
  }
  // Final pass: contrast and the ops after it (or all ops), grey, normalisation.
  const int from = cpos < 4 ? cpos : 0;
  for (i64 i = threadIdx.x; i < hw; i += blockDim.x) {
    float r = sr[i], g = sg[i], bl = sb[i];
    photo::jitter_ops(c, from, 4, k, r, g, bl);
    if (grey) {
      const float y = photo::add(photo::add(photo::mul(0.299f, r), photo::mul(0.587f, g)), photo::mul(0.114f, bl));
      r = g = bl = y;
    }
    if (norm) {
      r = photo::normalized(r, 0);
      g = photo::normalized(g, 1);
      bl = photo::normalized(bl, 2);
    }
    orr[i] = r;
    og[i] = g;
    ob[i] = bl;
  }
}

/// Horizontal blur pass of the blurred samples: tmp[j] (the j-th blurred sample, sample
/// blurred[j] of x) = Σ_t w[t]·x[row, reflect(col + t − r)], accumulated from 0 in t order.
__global__ void photometric_blur_rows(const float* __restrict__ x, float* __restrict__ tmp, i64 nblur,
                                      const int* __restrict__ blurred, i64 nt, i64 h, i64 w,
                                      const photometric_sample* __restrict__ samples,
                                      const float* __restrict__ weights, int max_kernel) {
  const i64 per = 3 * nt * h * w;
  MSCL_PHOTO_GRID_STRIDE(e, nblur * per) {
    const i64 j = e / per, rest = e % per, col = rest % w, row = rest / w;  // row over 3·nt·h
    const int b = blurred[j], K = samples[b].kernel, r = K / 2;
    const float* wt = weights + i64(b) * max_kernel + (max_kernel - K) / 2;
    const float* src = x + i64(b) * per + row * w;
    float acc = 0.f;
    for (int t = 0; t < K; ++t) acc = photo::add(acc, photo::mul(wt[t], src[photo::reflect(col + t - r, w)]));
    tmp[e] = acc;
  }
}

/// Vertical blur pass tmp → x for the blurred samples (same accumulation), then normalisation
/// when the sample asks.
__global__ void photometric_blur_cols(const float* __restrict__ tmp, float* __restrict__ x, i64 nblur,
                                      const int* __restrict__ blurred, i64 nt, i64 h, i64 w,
                                      const photometric_sample* __restrict__ samples,
                                      const float* __restrict__ weights, int max_kernel) {
  const i64 hw = h * w, per = 3 * nt * hw;
  MSCL_PHOTO_GRID_STRIDE(e, nblur * per) {
    const i64 j = e / per, rest = e % per, pl = rest / hw, y = (rest % hw) / w, col = rest % w;
    const int b = blurred[j];
    const photometric_sample s = samples[b];
    const int K = s.kernel, r = K / 2;
    const float* wt = weights + i64(b) * max_kernel + (max_kernel - K) / 2;
    const float* src = tmp + j * per + pl * hw + col;
    float acc = 0.f;
    for (int t = 0; t < K; ++t) acc = photo::add(acc, photo::mul(wt[t], src[photo::reflect(y + t - r, h) * w]));
    if (s.normalize) acc = photo::normalized(acc, int(pl / nt));
    x[i64(b) * per + rest] = acc;
  }
}

#undef MSCL_PHOTO_GRID_STRIDE

}  // namespace mscl::cuda_backend::kernels
