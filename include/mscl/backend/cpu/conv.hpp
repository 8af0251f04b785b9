/// \file conv.hpp
/// \brief CPU 3D/2D convolution kernels on raw pointers (forward, grad-input, grad-weight+bias):
///        a portable im2col + Eigen GEMM path for any T, and a oneDNN fast path for float.
///
/// Why this layer exists: convolutions are >95 % of r3d_18's FLOPs, so this file decides the
/// library's speed. It knows nothing about tensors or autograd; the conv ops (ops/conv*.hpp) check
/// shapes, allocate outputs and call these functions.
///
/// Layouts (all contiguous, row-major):
///   x  : n × c_in × t × h × w          (ncthw)
///   w  : c_out × c_in × kt × kh × kw   (kctrs)
///   y  : n × c_out × ot × oh × ow
/// conv2d is the case t = kt = 1, pt = 0 (the oneDNN path then uses 2D primitives).
///
/// Engines: `conv_engine::automatic` (the default) sends float to oneDNN when the library was
/// built with MSCL_WITH_ONEDNN (CMake target mscl::onednn), except for the few kinds of
/// convolution where the portable kernel measured faster (onednn::prefer_portable: strided 1×1×1
/// downsamples, grad-weight where oneDNN has no direct kernel); double always goes to the portable
/// path (oneDNN has no f64 convolution, and double is what the gradient checks use). `portable`
/// forces the fallback for every T (for benchmarking it); `onednn` forces oneDNN for every float
/// convolution, and for double still means portable.
/// The environment variable MSCL_CONV_ENGINE=portable|onednn|automatic sets the initial value.
///
/// Threading: both paths use OpenMP and follow omp_set_num_threads(); they never nest parallel
/// regions (Eigen's GEMM runs single-threaded when called inside one).
#pragma once
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include <Eigen/Core>

#include "../../config.hpp"
#include "../../core/allocator.hpp"
#include "../../core/error.hpp"
#include "../../core/shape.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

#if MSCL_WITH_ONEDNN
#include <dnnl.hpp>
#endif

namespace mscl::backend::cpu_kernels {

// ============================================================================ geometry

/// Sizes, strides and (symmetric) zero paddings of one 3D convolution.
struct conv3d_geometry {
  index_t n = 0, c_in = 0, t = 0, h = 0, w = 0, c_out = 0, kt = 0, kh = 0, kw = 0;
  index_t st = 1, sh = 1, sw = 1, pt = 0, ph = 0, pw = 0;

  index_t out_t() const { return out_size(t, kt, st, pt); }
  index_t out_h() const { return out_size(h, kh, sh, ph); }
  index_t out_w() const { return out_size(w, kw, sw, pw); }

  index_t x_numel() const { return n * c_in * t * h * w; }
  index_t w_numel() const { return c_out * c_in * kt * kh * kw; }
  index_t y_numel() const { return n * c_out * out_t() * out_h() * out_w(); }
  /// Multiply-adds of one forward pass (the FLOP count is twice this).
  double macs() const {
    return double(n) * double(c_out) * double(out_t()) * double(out_h()) * double(out_w()) *
           double(c_in) * double(kt) * double(kh) * double(kw);
  }

  /// "x=[n, c, t, h, w] w=[co, ci, kt, kh, kw] stride=(..) pad=(..)"
  std::string to_string() const {
    std::ostringstream os;
    os << "x=[" << n << ", " << c_in << ", " << t << ", " << h << ", " << w << "] w=[" << c_out << ", "
       << c_in << ", " << kt << ", " << kh << ", " << kw << "] stride=(" << st << ", " << sh << ", " << sw
       << ") pad=(" << pt << ", " << ph << ", " << pw << ")";
    return os.str();
  }

  /// Throws mscl::shape_error naming `who` and the geometry when a size is not positive, a
  /// padding is negative or the output would be empty.
  void validate(const char* who) const {
    MSCL_CHECK(n > 0 && c_in > 0 && t > 0 && h > 0 && w > 0 && c_out > 0 && kt > 0 && kh > 0 && kw > 0,
               shape_error,
               who << ": every size of a convolution must be positive; got " << to_string());
    MSCL_CHECK(st > 0 && sh > 0 && sw > 0, shape_error,
               who << ": convolution strides must be positive; got " << to_string());
    MSCL_CHECK(pt >= 0 && ph >= 0 && pw >= 0, shape_error,
               who << ": convolution paddings must be non-negative; got " << to_string());
    MSCL_CHECK(t + 2 * pt >= kt && h + 2 * ph >= kh && w + 2 * pw >= kw, shape_error,
               who << ": the kernel is larger than the padded input, so the output would be empty; got "
                   << to_string());
  }

 private:
  static index_t out_size(index_t in, index_t k, index_t s, index_t p) {
    // Floor division that stays correct when (in + 2p - k) is negative (invalid geometry), so
    // that validate() sees out <= 0 instead of a rounded-up 1.
    const index_t num = in + 2 * p - k;
    if (s <= 0) return 0;
    return (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
  }
};

// ============================================================================ engine switch

enum class conv_engine { automatic, portable, onednn };

namespace detail {

inline conv_engine conv_engine_from_env() {
  const char* v = std::getenv("MSCL_CONV_ENGINE");
  if (!v || !*v) return conv_engine::automatic;
  const std::string s(v);
  if (s == "portable") return conv_engine::portable;
  if (s == "onednn") return conv_engine::onednn;
  if (s == "automatic" || s == "auto") return conv_engine::automatic;
  MSCL_CHECK(false, value_error,
             "MSCL_CONV_ENGINE: expected portable, onednn or automatic; got '" << s << "'");
  return conv_engine::automatic;
}

inline std::atomic<int>& conv_engine_slot() {
  static std::atomic<int> slot{static_cast<int>(conv_engine_from_env())};
  return slot;
}


inline int max_threads() {
#if defined(_OPENMP)
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// A block from the caching allocator, returned on scope exit (so workspaces are reused across
/// calls instead of faulting fresh pages in every time).
class scratch_block {
 public:
  scratch_block() = default;
  explicit scratch_block(std::size_t bytes) { reset(bytes); }
  scratch_block(const scratch_block&) = delete;
  scratch_block& operator=(const scratch_block&) = delete;
  ~scratch_block() { release(); }
  void reset(std::size_t bytes) {
    release();
    if (bytes) {
      p_ = caching_allocator::instance().allocate(bytes);
      bytes_ = bytes;
    }
  }
  void* get() const { return p_; }
  template <class T>
  T* as() const { return static_cast<T*>(p_); }

 private:
  void release() {
    if (p_) caching_allocator::instance().deallocate(p_, bytes_);
    p_ = nullptr;
    bytes_ = 0;
  }
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace detail

/// Process-wide engine switch (thread-safe; takes effect on the next call).
inline void set_conv_engine(conv_engine e) {
  detail::conv_engine_slot().store(static_cast<int>(e), std::memory_order_relaxed);
}
inline conv_engine get_conv_engine() {
  return static_cast<conv_engine>(detail::conv_engine_slot().load(std::memory_order_relaxed));
}
/// Whether oneDNN was compiled in (MSCL_WITH_ONEDNN).
inline constexpr bool onednn_available() { return MSCL_WITH_ONEDNN != 0; }

// ============================================================================ portable path
//
// Per batch item, the output positions (ot, oh, ow) are cut into chunks of whole output rows
// (ot, oh); each chunk's im2col matrix col[K × pc] (K = c_in·kt·kh·kw, pc = rows·ow) is built in a
// reused workspace and multiplied by the weight matrix W[c_out × K] with Eigen. Chunking keeps the
// workspace small (r3d_18 layer1 would need a 173 MB im2col matrix per clip otherwise) and in L2/L3.
// A 1×1×1 stride-1 unpadded convolution needs no im2col: x_n itself is the K × P matrix.
//
// Threading: every kernel opens one OpenMP region and gives each thread a disjoint slice of the
// work (output columns, output channels, input channels or weight columns), calling Eigen's GEMM
// single-threaded on its slice. Measured on the 2-vCPU dev box (conv_bench, fwd rows
// "portable_eigenmt" of the first version): letting Eigen thread each GEMM over a serial chunk loop
// was 3-17x slower than this (e.g. r3d_18 layer1 fwd N=1: 4.7 s vs 0.28 s), because each chunk GEMM
// is small and Eigen synchronises its threads several times per GEMM; on a shared host a
// descheduled thread stalls every barrier.
namespace portable {

template <class T>
using matrix_rm = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using map_rm = Eigen::Map<matrix_rm<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using cmap_rm = Eigen::Map<const matrix_rm<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

/// Sizes that every portable kernel derives from a geometry.
struct plan {
  index_t K, P, ot, oh, ow, rows, rows_per_chunk, chunks, in_plane;
  index_t pitch;   // row stride of an im2col workspace: the widest chunk's column count. Fixed for
                   // all chunks, so threads that own different rows of a shared workspace never
                   // overlap even while they work on chunks of different widths.
  bool pointwise;  // 1×1×1, stride 1, no padding: no im2col needed
};

/// Elements of an im2col chunk we aim for (4 MiB of float): big enough for GEMM efficiency
/// (pc >= a few hundred columns for r3d_18 shapes), small enough to stay near the caches.
inline constexpr index_t chunk_target_elems = index_t(1) << 20;

inline plan make_plan(const conv3d_geometry& g) {
  plan p{};
  p.K = g.c_in * g.kt * g.kh * g.kw;
  p.ot = g.out_t();
  p.oh = g.out_h();
  p.ow = g.out_w();
  p.P = p.ot * p.oh * p.ow;
  p.rows = p.ot * p.oh;
  p.in_plane = g.t * g.h * g.w;
  p.pointwise = g.kt == 1 && g.kh == 1 && g.kw == 1 && g.st == 1 && g.sh == 1 && g.sw == 1 &&
                g.pt == 0 && g.ph == 0 && g.pw == 0;
  p.rows_per_chunk = std::max<index_t>(1, chunk_target_elems / std::max<index_t>(1, p.K * p.ow));
  p.rows_per_chunk = std::min(p.rows_per_chunk, p.rows);
  p.chunks = (p.rows + p.rows_per_chunk - 1) / p.rows_per_chunk;
  p.pitch = p.rows_per_chunk * p.ow;
  return p;
}

/// Valid output-column range [lo, hi) for kernel tap d: 0 <= o*s - p + d < in.
inline void valid_range(index_t out, index_t in, index_t s, index_t p, index_t d, index_t& lo, index_t& hi) {
  // o >= ceil((p - d) / s), o <= floor((in - 1 + p - d) / s)
  const index_t a = p - d;
  lo = a <= 0 ? 0 : (a + s - 1) / s;
  const index_t b = in - 1 + p - d;
  hi = b < 0 ? 0 : std::min(out, b / s + 1);
  if (hi < lo) hi = lo;
}

/// col[k * p.pitch + j] for the output rows [r0, r1) of one batch item, k in [k0, k1).
template <class T>
void im2col_rows(const conv3d_geometry& g, const plan& p, const T* xn, index_t r0, index_t r1,
                 index_t k0, index_t k1, T* col) {
  const index_t ksp = g.kt * g.kh * g.kw, khw = g.kh * g.kw;
  for (index_t k = k0; k < k1; ++k) {
    const index_t ci = k / ksp, rem = k % ksp;
    const index_t dt = rem / khw, dh = (rem % khw) / g.kw, dw = rem % g.kw;
    index_t lo, hi;
    valid_range(p.ow, g.w, g.sw, g.pw, dw, lo, hi);
    T* dst_k = col + k * p.pitch;
    const T* xc = xn + ci * p.in_plane;
    for (index_t r = r0; r < r1; ++r) {
      T* dst = dst_k + (r - r0) * p.ow;
      const index_t it = (r / p.oh) * g.st - g.pt + dt;
      const index_t ih = (r % p.oh) * g.sh - g.ph + dh;
      if (it < 0 || it >= g.t || ih < 0 || ih >= g.h) {
        std::fill(dst, dst + p.ow, T(0));
        continue;
      }
      const T* src = xc + (it * g.h + ih) * g.w - g.pw + dw;  // src[o*sw] is column o
      std::fill(dst, dst + lo, T(0));
      if (g.sw == 1) {
        std::copy(src + lo, src + hi, dst + lo);
      } else {
        for (index_t o = lo; o < hi; ++o) dst[o] = src[o * g.sw];
      }
      std::fill(dst + hi, dst + p.ow, T(0));
    }
  }
}

/// gx_n += col2im(gcol) for output rows [r0, r1), input channels [c0, c1).
template <class T>
void col2im_rows(const conv3d_geometry& g, const plan& p, const T* gcol, index_t r0, index_t r1,
                 index_t c0, index_t c1, T* gxn) {
  const index_t ksp = g.kt * g.kh * g.kw, khw = g.kh * g.kw;
  for (index_t ci = c0; ci < c1; ++ci) {
    T* gxc = gxn + ci * p.in_plane;
    for (index_t rem = 0; rem < ksp; ++rem) {
      const index_t k = ci * ksp + rem;
      const index_t dt = rem / khw, dh = (rem % khw) / g.kw, dw = rem % g.kw;
      index_t lo, hi;
      valid_range(p.ow, g.w, g.sw, g.pw, dw, lo, hi);
      const T* src_k = gcol + k * p.pitch;
      for (index_t r = r0; r < r1; ++r) {
        const index_t it = (r / p.oh) * g.st - g.pt + dt;
        const index_t ih = (r % p.oh) * g.sh - g.ph + dh;
        if (it < 0 || it >= g.t || ih < 0 || ih >= g.h) continue;
        const T* src = src_k + (r - r0) * p.ow;
        T* dst = gxc + (it * g.h + ih) * g.w - g.pw + dw;
        if (g.sw == 1) {
          for (index_t o = lo; o < hi; ++o) dst[o] += src[o];
        } else {
          for (index_t o = lo; o < hi; ++o) dst[o * g.sw] += src[o];
        }
      }
    }
  }
}

/// Runs f(thread_id, thread_count) on every thread of one OpenMP parallel region (or once,
/// serially, without OpenMP or when `parallel` is false). Eigen GEMMs called inside run
/// single-threaded (Eigen checks omp_get_num_threads() > 1), so nothing is oversubscribed.
template <class F>
void parallel_region(bool parallel, F&& f) {
#if defined(_OPENMP)
  if (parallel && omp_get_max_threads() > 1 && !omp_in_parallel()) {
#pragma omp parallel
    f(index_t(omp_get_thread_num()), index_t(omp_get_num_threads()));
    return;
  }
#endif
  f(index_t(0), index_t(1));
}

/// [begin, end) of part `id` of `nt` of [0, total), boundaries rounded to multiples of `align`
/// (so GEMM row blocks keep whole SIMD panels).
inline void split(index_t total, index_t id, index_t nt, index_t align, index_t& begin, index_t& end) {
  const index_t units = (total + align - 1) / align;
  begin = std::min(total, units * id / nt * align);
  end = std::min(total, units * (id + 1) / nt * align);
}

/// Forward-pass schedule switch, exposed for the threading measurement in conv_bench:
/// 0 = choose, 1 = always the shared-im2col / split-c_out schedule, 2 = always the task loop.
inline std::atomic<int>& forward_strategy() {
  static std::atomic<int> s{0};
  return s;
}

/// Work below which a kernel stays on one thread (OpenMP fork/join costs a few microseconds).
inline constexpr index_t parallel_min_work = 1 << 16;

template <class T>
void add_bias(const conv3d_geometry& g, const plan& p, const T* bias, T* y) {
  if (!bias) return;
  const index_t planes = g.n * g.c_out;
#pragma omp parallel for schedule(static) if (planes * p.P > parallel_min_work)
  for (index_t i = 0; i < planes; ++i) {
    const T b = bias[i % g.c_out];
    T* yi = y + i * p.P;
    for (index_t j = 0; j < p.P; ++j) yi[j] += b;
  }
}

/// Forward. Two schedules:
///  task loop — OpenMP over (batch item, chunk); each thread builds its own im2col chunk and runs a
///    single-threaded GEMM into its own output columns: no barriers, im2col overlaps GEMMs.
///  split — for too few tasks (small N, deep layers with a handful of output rows): the threads
///    build one im2col chunk together (split over K), meet at a barrier, then each multiplies its
///    block of output channels.
template <class T>
void forward(const conv3d_geometry& g, const T* x, const T* w, const T* bias, T* y) {
  const plan p = make_plan(g);
  const cmap_rm<T> W(w, g.c_out, p.K, Eigen::OuterStride<>(p.K));
  const bool big = double(g.c_out) * double(p.K) * double(p.P) > parallel_min_work;
  if (p.pointwise) {  // x_n is already the K × P matrix; split output channels
    parallel_region(big, [&](index_t id, index_t nt) {
      index_t c0, c1;
      split(g.c_out, id, nt, 16, c0, c1);
      if (c0 >= c1) return;
      for (index_t b = 0; b < g.n; ++b) {
        const cmap_rm<T> X(x + b * g.c_in * p.P, p.K, p.P, Eigen::OuterStride<>(p.P));
        map_rm<T> Y(y + (b * g.c_out + c0) * p.P, c1 - c0, p.P, Eigen::OuterStride<>(p.P));
        Y.noalias() = W.middleRows(c0, c1 - c0) * X;
      }
    });
    add_bias(g, p, bias, y);
    return;
  }
  const index_t nthreads = detail::max_threads();
  const index_t tasks = g.n * p.chunks;
  const int strategy = forward_strategy().load(std::memory_order_relaxed);
  const bool task_loop = strategy == 2 || (strategy == 0 && (nthreads == 1 || tasks >= 2 * nthreads));
  const std::size_t col_elems = std::size_t(p.K * p.rows_per_chunk * p.ow);
  if (task_loop) {
    detail::scratch_block ws(sizeof(T) * col_elems * std::size_t(nthreads));
#pragma omp parallel for schedule(dynamic, 1) if (big)
    for (index_t task = 0; task < tasks; ++task) {
#if defined(_OPENMP)
      T* col = ws.as<T>() + std::size_t(omp_get_thread_num()) * col_elems;
#else
      T* col = ws.as<T>();
#endif
      const index_t b = task / p.chunks, c = task % p.chunks;
      const index_t r0 = c * p.rows_per_chunk, r1 = std::min(p.rows, r0 + p.rows_per_chunk);
      const index_t pc = (r1 - r0) * p.ow;
      im2col_rows(g, p, x + b * g.c_in * p.in_plane, r0, r1, 0, p.K, col);
      const cmap_rm<T> C(col, p.K, pc, Eigen::OuterStride<>(p.pitch));
      map_rm<T> Y(y + b * g.c_out * p.P + r0 * p.ow, g.c_out, pc, Eigen::OuterStride<>(p.P));
      Y.noalias() = W * C;
    }
  } else {
    detail::scratch_block ws(sizeof(T) * col_elems);
    T* col = ws.as<T>();
    parallel_region(big, [&](index_t id, index_t nt) {
      index_t k0, k1, c0, c1;
      split(p.K, id, nt, 1, k0, k1);
      split(g.c_out, id, nt, 16, c0, c1);
      for (index_t b = 0; b < g.n; ++b) {
        for (index_t c = 0; c < p.chunks; ++c) {
          const index_t r0 = c * p.rows_per_chunk, r1 = std::min(p.rows, r0 + p.rows_per_chunk);
          const index_t pc = (r1 - r0) * p.ow;
          im2col_rows(g, p, x + b * g.c_in * p.in_plane, r0, r1, k0, k1, col);
#pragma omp barrier
          if (c0 < c1) {
            const cmap_rm<T> C(col, p.K, pc, Eigen::OuterStride<>(p.pitch));
            map_rm<T> Y(y + (b * g.c_out + c0) * p.P + r0 * p.ow, c1 - c0, pc, Eigen::OuterStride<>(p.P));
            Y.noalias() = W.middleRows(c0, c1 - c0) * C;
          }
#pragma omp barrier
        }
      }
    });
  }
  add_bias(g, p, bias, y);
}

/// Grad-input. Each thread owns a block of input channels: it computes the rows of the column
/// gradient gcol = Wᵀ·gy that belong to its channels and scatters them (col2im) into its own planes
/// of gx, so no two threads touch the same memory and no barrier is needed.
template <class T>
void backward_data(const conv3d_geometry& g, const T* gy, const T* w, T* gx) {
  const plan p = make_plan(g);
  const cmap_rm<T> W(w, g.c_out, p.K, Eigen::OuterStride<>(p.K));
  const bool big = double(g.c_out) * double(p.K) * double(p.P) > parallel_min_work;
  const index_t ksp = g.kt * g.kh * g.kw;
  if (p.pointwise) {
    parallel_region(big, [&](index_t id, index_t nt) {
      index_t c0, c1;
      split(g.c_in, id, nt, 16, c0, c1);
      if (c0 >= c1) return;
      for (index_t b = 0; b < g.n; ++b) {
        const cmap_rm<T> GY(gy + b * g.c_out * p.P, g.c_out, p.P, Eigen::OuterStride<>(p.P));
        map_rm<T> GX(gx + (b * g.c_in + c0) * p.P, c1 - c0, p.P, Eigen::OuterStride<>(p.P));
        GX.noalias() = W.middleCols(c0, c1 - c0).transpose() * GY;
      }
    });
    return;
  }
  detail::scratch_block ws(sizeof(T) * std::size_t(p.K * p.rows_per_chunk * p.ow));
  T* gcol = ws.as<T>();
  parallel_region(big, [&](index_t id, index_t nt) {
    index_t c0, c1;
    split(g.c_in, id, nt, 1, c0, c1);
    if (c0 >= c1) return;
    const index_t k0 = c0 * ksp, k1 = c1 * ksp;
    for (index_t b = 0; b < g.n; ++b) {
      T* gxn = gx + b * g.c_in * p.in_plane;
      std::fill(gxn + c0 * p.in_plane, gxn + c1 * p.in_plane, T(0));
      for (index_t c = 0; c < p.chunks; ++c) {
        const index_t r0 = c * p.rows_per_chunk, r1 = std::min(p.rows, r0 + p.rows_per_chunk);
        const index_t pc = (r1 - r0) * p.ow;
        const cmap_rm<T> GY(gy + b * g.c_out * p.P + r0 * p.ow, g.c_out, pc, Eigen::OuterStride<>(p.P));
        map_rm<T> GC(gcol + k0 * p.pitch, k1 - k0, pc, Eigen::OuterStride<>(p.pitch));
        GC.noalias() = W.middleCols(k0, k1 - k0).transpose() * GY;
        col2im_rows(g, p, gcol, r0, r1, c0, c1, gxn);
      }
    }
  });
}

/// Grad-weight (+ grad-bias). Each thread owns a block of the K columns of gw (= rows of the
/// im2col matrix): it builds only those im2col rows and accumulates gy·colᵀ into its own columns,
/// so again no barriers and no per-thread copies of gw to reduce.
template <class T>
void backward_weight(const conv3d_geometry& g, const T* x, const T* gy, T* gw, T* gbias) {
  const plan p = make_plan(g);
  const bool big = double(g.c_out) * double(p.K) * double(p.P) > parallel_min_work;
  if (gbias) {
#pragma omp parallel for schedule(static) if (g.n * g.c_out * p.P > parallel_min_work)
    for (index_t co = 0; co < g.c_out; ++co) {
      T s = T(0);
      for (index_t b = 0; b < g.n; ++b) {
        const T* row = gy + (b * g.c_out + co) * p.P;
        T sb = T(0);
        for (index_t j = 0; j < p.P; ++j) sb += row[j];
        s += sb;
      }
      gbias[co] = s;
    }
  }
  detail::scratch_block ws(p.pointwise ? 0 : sizeof(T) * std::size_t(p.K * p.rows_per_chunk * p.ow));
  T* col = ws.as<T>();
  parallel_region(big, [&](index_t id, index_t nt) {
    index_t k0, k1;
    split(p.K, id, nt, 16, k0, k1);
    if (k0 >= k1) return;
    map_rm<T> GW(gw + k0, g.c_out, k1 - k0, Eigen::OuterStride<>(p.K));
    GW.setZero();
    for (index_t b = 0; b < g.n; ++b) {
      if (p.pointwise) {
        const cmap_rm<T> GY(gy + b * g.c_out * p.P, g.c_out, p.P, Eigen::OuterStride<>(p.P));
        const cmap_rm<T> X(x + (b * g.c_in + k0) * p.P, k1 - k0, p.P, Eigen::OuterStride<>(p.P));
        GW.noalias() += GY * X.transpose();
        continue;
      }
      for (index_t c = 0; c < p.chunks; ++c) {
        const index_t r0 = c * p.rows_per_chunk, r1 = std::min(p.rows, r0 + p.rows_per_chunk);
        const index_t pc = (r1 - r0) * p.ow;
        im2col_rows(g, p, x + b * g.c_in * p.in_plane, r0, r1, k0, k1, col);
        const cmap_rm<T> C(col + k0 * p.pitch, k1 - k0, pc, Eigen::OuterStride<>(p.pitch));
        const cmap_rm<T> GY(gy + b * g.c_out * p.P + r0 * p.ow, g.c_out, pc, Eigen::OuterStride<>(p.P));
        GW.noalias() += GY * C.transpose();
      }
    }
  });
}

}  // namespace portable

// ============================================================================ oneDNN path
#if MSCL_WITH_ONEDNN
namespace onednn {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

inline dnnl::engine& cpu_engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}
/// One stream per thread: a oneDNN stream must not be used by two threads at once.
inline dnnl::stream& thread_stream() {
  thread_local dnnl::stream s(cpu_engine());
  return s;
}

/// Which memory formats the primitives are created with.
///  blocked: format_tag::any for src/weights/dst, oneDNN picks (nCdhw16c / OIdhw16i16o on AVX-512)
///           and we reorder our plain buffers in and out;
///  plain:   the primitives work on our ncdhw/oidhw buffers directly (no reorders).
/// Measured on the 2-core AVX-512 VM, r3d_18 shapes (benchmarks/conv_bench.cpp, "layout" rows):
/// see `default_layout()` for the finding.
enum class layout { blocked, plain };

/// Finding (conv_bench, r3d18_all_convs rows, 2 threads; measured on the 2-vCPU AVX2 dev host
/// (AMD EPYC, no AVX-512), oneDNN 2.6.3, rates from process CPU time because the host was shared):
///   fwd  N=8: blocked 161 GFLOP/s, plain 68;  fwd N=1: 79 vs 62;  bwd-data N=1: 80 vs 46.
/// With plain formats oneDNN falls back to gemm:jit (im2col + its sgemm) for every conv except a
/// few, while "any" gets the direct jit kernels (jit:avx2 here, jit:avx512_core on AVX-512) whose
/// speed more than pays for reordering in and out. Where oneDNN picks gemm:jit even with "any"
/// (grad-weight on AVX2, strided grad-input) the formats it asks for are the plain ones, so no
/// reorder is run and both settings are the same primitive. Default: blocked.
/// MSCL_ONEDNN_LAYOUT=plain|blocked overrides it (for re-measuring on another CPU).
inline std::atomic<int>& layout_slot() {
  static std::atomic<int> s{[] {
    const char* v = std::getenv("MSCL_ONEDNN_LAYOUT");
    return static_cast<int>(v && std::string(v) == "plain" ? layout::plain : layout::blocked);
  }()};
  return s;
}
inline void set_layout(layout l) { layout_slot().store(static_cast<int>(l)); }
inline layout get_layout() { return static_cast<layout>(layout_slot().load()); }

struct problem_dims {
  memory::dims src, wei, dst, bias, strides, pad_l, pad_r;
  tag act_tag, wei_tag;
};

inline problem_dims make_dims(const conv3d_geometry& g) {
  problem_dims d;
  const index_t ot = g.out_t(), oh = g.out_h(), ow = g.out_w();
  // The right padding that oneDNN's consistency check expects: (in - k + pl + pr) / s + 1 == out
  // with C division; symmetric padding satisfies it because out_*() uses the same floor.
  if (g.t == 1 && g.kt == 1 && g.pt == 0) {  // a 2D convolution: oneDNN's 2D kernels
    d.src = {g.n, g.c_in, g.h, g.w};
    d.wei = {g.c_out, g.c_in, g.kh, g.kw};
    d.dst = {g.n, g.c_out, oh, ow};
    d.strides = {g.sh, g.sw};
    d.pad_l = {g.ph, g.pw};
    d.act_tag = tag::nchw;
    d.wei_tag = tag::oihw;
  } else {
    d.src = {g.n, g.c_in, g.t, g.h, g.w};
    d.wei = {g.c_out, g.c_in, g.kt, g.kh, g.kw};
    d.dst = {g.n, g.c_out, ot, oh, ow};
    d.strides = {g.st, g.sh, g.sw};
    d.pad_l = {g.pt, g.ph, g.pw};
    d.act_tag = tag::ncdhw;
    d.wei_tag = tag::oidhw;
  }
  d.pad_r = d.pad_l;
  d.bias = {g.c_out};
  return d;
}

/// One argument of a primitive: the caller's plain buffer and, when the primitive wants another
/// layout, an inner buffer (from the caching allocator, per call) plus the reorder between them.
struct operand {
  memory user, inner;
  dnnl::reorder to_inner, to_user;
  bool reordered = false;
  std::size_t inner_bytes = 0;

  void init(const memory::desc& user_md, const memory::desc& want_md, bool is_input) {
    auto& eng = cpu_engine();
    user = memory(user_md, eng, DNNL_MEMORY_NONE);
    if (want_md != user_md) {
      reordered = true;
      inner = memory(want_md, eng, DNNL_MEMORY_NONE);
      inner_bytes = want_md.get_size();
      if (is_input)
        to_inner = dnnl::reorder(user, inner);
      else
        to_user = dnnl::reorder(inner, user);
    }
  }
  memory& arg() { return reordered ? inner : user; }
  /// Binds the caller's pointer and, if needed, a workspace for the inner buffer.
  void bind(const void* p, detail::scratch_block& ws) {
    user.set_data_handle(const_cast<void*>(p));
    if (reordered) {
      ws.reset(inner_bytes);
      inner.set_data_handle(ws.get());
    }
  }
  void pull(dnnl::stream& s) {
    if (reordered) to_inner.execute(s, user, inner);
  }
  void push(dnnl::stream& s) {
    if (reordered) to_user.execute(s, inner, user);
  }
};

enum class op_kind : int { forward = 0, backward_data = 1, backward_weight = 2 };

/// A cached primitive with its operands; `mutex` serialises calls (operands hold per-call handles).
struct cached_conv {
  std::mutex mutex;
  dnnl::primitive prim;
  operand a, b, c, d;  // forward: src, wei, bias, dst; bwd-data: diff_dst, wei, -, diff_src;
                       // bwd-weight: src, diff_dst, diff_bias, diff_wei
  bool has_bias = false;
  std::size_t scratch_bytes = 0;
  memory scratch;
  std::string impl;  // oneDNN implementation name, for benchmark labels
};

using cache_key = std::array<index_t, 18>;

inline cache_key make_key(const conv3d_geometry& g, op_kind k, bool has_bias, layout l) {
  return {g.n, g.c_in, g.t, g.h, g.w, g.c_out, g.kt, g.kh, g.kw, g.st, g.sh, g.sw,
          g.pt, g.ph, g.pw, static_cast<index_t>(k), has_bias ? 1 : 0, static_cast<index_t>(l)};
}

inline dnnl::convolution_forward::primitive_desc make_forward_pd(const problem_dims& d, bool has_bias,
                                                                 layout l, const dnnl::primitive_attr& attr) {
  const tag at = l == layout::plain ? d.act_tag : tag::any;
  const tag wt = l == layout::plain ? d.wei_tag : tag::any;
  const memory::desc src(d.src, dt::f32, at), wei(d.wei, dt::f32, wt), dst(d.dst, dt::f32, at);
  if (has_bias) {
    const memory::desc bias(d.bias, dt::f32, tag::x);
    dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                         src, wei, bias, dst, d.strides, d.pad_l, d.pad_r);
    return {desc, attr, cpu_engine()};
  }
  dnnl::convolution_forward::desc desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                       src, wei, dst, d.strides, d.pad_l, d.pad_r);
  return {desc, attr, cpu_engine()};
}

inline std::unique_ptr<cached_conv> build(const conv3d_geometry& g, op_kind kind, bool has_bias, layout l) {
  auto e = std::make_unique<cached_conv>();
  const problem_dims d = make_dims(g);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const memory::desc user_src(d.src, dt::f32, d.act_tag), user_wei(d.wei, dt::f32, d.wei_tag),
      user_dst(d.dst, dt::f32, d.act_tag), user_bias(d.bias, dt::f32, tag::x);
  const tag at = l == layout::plain ? d.act_tag : tag::any;
  const tag wt = l == layout::plain ? d.wei_tag : tag::any;
  e->has_bias = has_bias;
  memory::desc scratch_md;
  if (kind == op_kind::forward) {
    auto pd = make_forward_pd(d, has_bias, l, attr);
    e->a.init(user_src, pd.src_desc(), true);
    e->b.init(user_wei, pd.weights_desc(), true);
    if (has_bias) e->c.init(user_bias, pd.bias_desc(), true);
    e->d.init(user_dst, pd.dst_desc(), false);
    scratch_md = pd.scratchpad_desc();
    e->impl = pd.impl_info_str();
    e->prim = dnnl::convolution_forward(pd);
  } else if (kind == op_kind::backward_data) {
    auto hint = make_forward_pd(d, false, l, dnnl::primitive_attr());
    const memory::desc dsrc(d.src, dt::f32, at), wei(d.wei, dt::f32, wt), ddst(d.dst, dt::f32, at);
    dnnl::convolution_backward_data::desc desc(dnnl::algorithm::convolution_direct, dsrc, wei, ddst,
                                               d.strides, d.pad_l, d.pad_r);
    dnnl::convolution_backward_data::primitive_desc pd(desc, attr, cpu_engine(), hint);
    e->a.init(user_dst, pd.diff_dst_desc(), true);
    e->b.init(user_wei, pd.weights_desc(), true);
    e->d.init(user_src, pd.diff_src_desc(), false);
    scratch_md = pd.scratchpad_desc();
    e->impl = pd.impl_info_str();
    e->prim = dnnl::convolution_backward_data(pd);
  } else {
    auto hint = make_forward_pd(d, has_bias, l, dnnl::primitive_attr());
    const memory::desc src(d.src, dt::f32, at), dwei(d.wei, dt::f32, wt), ddst(d.dst, dt::f32, at);
    auto make = [&]() {
      if (has_bias) {
        const memory::desc dbias(d.bias, dt::f32, tag::x);
        dnnl::convolution_backward_weights::desc desc(dnnl::algorithm::convolution_direct, src, dwei, dbias,
                                                      ddst, d.strides, d.pad_l, d.pad_r);
        return dnnl::convolution_backward_weights::primitive_desc(desc, attr, cpu_engine(), hint);
      }
      dnnl::convolution_backward_weights::desc desc(dnnl::algorithm::convolution_direct, src, dwei, ddst,
                                                    d.strides, d.pad_l, d.pad_r);
      return dnnl::convolution_backward_weights::primitive_desc(desc, attr, cpu_engine(), hint);
    };
    auto pd = make();
    e->a.init(user_src, pd.src_desc(), true);
    e->b.init(user_dst, pd.diff_dst_desc(), true);
    if (has_bias) e->c.init(user_bias, pd.diff_bias_desc(), false);
    e->d.init(user_wei, pd.diff_weights_desc(), false);
    scratch_md = pd.scratchpad_desc();
    e->impl = pd.impl_info_str();
    e->prim = dnnl::convolution_backward_weights(pd);
  }
  e->scratch_bytes = scratch_md.get_size();
  e->scratch = memory(scratch_md, cpu_engine(), DNNL_MEMORY_NONE);
  return e;
}

/// Thread-safe cache of primitives keyed by geometry, op, bias and layout. Entries are never
/// evicted: a network has a few dozen distinct convolutions.
inline cached_conv& lookup(const conv3d_geometry& g, op_kind kind, bool has_bias) {
  static std::mutex mutex;
  static std::map<cache_key, std::unique_ptr<cached_conv>> cache;
  const layout l = get_layout();
  const cache_key key = make_key(g, kind, has_bias, l);
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(key);
  if (it != cache.end()) return *it->second;
  std::unique_ptr<cached_conv> e;
  try {
    e = build(g, kind, has_bias, l);
  } catch (const dnnl::error& err) {
    MSCL_CHECK(false, error,
               "conv3d (oneDNN): cannot create the primitive for " << g.to_string() << ": " << err.what());
  }
  return *cache.emplace(key, std::move(e)).first->second;
}

/// Runs a cached primitive: binds the four operands, reorders inputs in, executes, reorders out.
inline void run(cached_conv& e, const void* a, const void* b, const void* c, void* d, int arg_a, int arg_b,
                int arg_c, int arg_d) {
  std::lock_guard<std::mutex> lock(e.mutex);
  dnnl::stream& s = thread_stream();
  detail::scratch_block wa, wb, wc, wd, wscratch(e.scratch_bytes);
  e.a.bind(a, wa);
  e.b.bind(b, wb);
  if (c) e.c.bind(c, wc);
  e.d.bind(d, wd);
  e.scratch.set_data_handle(wscratch.get());
  e.a.pull(s);
  e.b.pull(s);
  if (c && arg_c != DNNL_ARG_DIFF_BIAS) e.c.pull(s);
  std::unordered_map<int, memory> args{
      {arg_a, e.a.arg()}, {arg_b, e.b.arg()}, {arg_d, e.d.arg()}, {DNNL_ARG_SCRATCHPAD, e.scratch}};
  if (c) args.emplace(arg_c, e.c.arg());
  e.prim.execute(s, args);
  e.d.push(s);
  if (c && arg_c == DNNL_ARG_DIFF_BIAS) e.c.push(s);
  s.wait();
}

inline void forward(const conv3d_geometry& g, const float* x, const float* w, const float* bias, float* y) {
  cached_conv& e = lookup(g, op_kind::forward, bias != nullptr);
  run(e, x, w, bias, y, DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST);
}
inline void backward_data(const conv3d_geometry& g, const float* gy, const float* w, float* gx) {
  cached_conv& e = lookup(g, op_kind::backward_data, false);
  run(e, gy, w, nullptr, gx, DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, 0, DNNL_ARG_DIFF_SRC);
}
inline void backward_weight(const conv3d_geometry& g, const float* x, const float* gy, float* gw, float* gbias) {
  cached_conv& e = lookup(g, op_kind::backward_weight, gbias != nullptr);
  run(e, x, gy, gbias, gw, DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_BIAS, DNNL_ARG_DIFF_WEIGHTS);
}

/// Whether `automatic` should send this float convolution to the portable path instead of
/// oneDNN. Measured per shape on the AVX2 dev host (conv_bench, N = 1 and 8, CPU-time rates):
///  * 1×1×1 convolutions with a stride (the ResNet downsample): oneDNN is 3-5× slower in forward
///    and grad-weight (13 vs 34-46 GFLOP/s fwd N=8), since it reorders the whole full-resolution
///    input to the blocked layout for a conv that reads an eighth of it; grad-input is even.
///  * grad-weight where oneDNN only offers gemm:jit (every 3×3×3 / stem shape on AVX2): the
///    portable path was faster on the heavy shapes (layer1 78 vs 55, stem 67 vs 22 GFLOP/s at
///    N=8; r3d_18 total 80 vs 49 at N=1). Where oneDNN has a direct jit kernel (AVX-512) it is kept.
/// Grad-input stays on oneDNN: even its gemm:jit beat the portable col2im path (100 vs 78 on
/// layer2_first N=8). `conv_engine::onednn` bypasses these rules.
inline bool prefer_portable(const conv3d_geometry& g, op_kind kind, bool has_bias) {
  const bool strided_pointwise = g.kt == 1 && g.kh == 1 && g.kw == 1 && (g.st > 1 || g.sh > 1 || g.sw > 1);
  if (strided_pointwise) return kind != op_kind::backward_data;
  if (kind == op_kind::backward_weight) return lookup(g, kind, has_bias).impl.rfind("jit", 0) != 0;
  return false;
}

/// The oneDNN implementation chosen for a convolution ("jit:avx512_core", "gemm:jit", ...).
inline std::string implementation(const conv3d_geometry& g, op_kind kind, bool has_bias) {
  return lookup(g, kind, has_bias).impl;
}

}  // namespace onednn
#endif  // MSCL_WITH_ONEDNN

// ============================================================================ entry points

namespace detail {
#if MSCL_WITH_ONEDNN
/// Float routing: `portable` never, `onednn` always, `automatic` unless prefer_portable() says the
/// portable kernel measured faster for this kind of convolution.
inline bool use_onednn(const conv3d_geometry& g, onednn::op_kind kind, bool has_bias) {
  switch (get_conv_engine()) {
    case conv_engine::portable: return false;
    case conv_engine::onednn: return true;
    case conv_engine::automatic: break;
  }
  return !onednn::prefer_portable(g, kind, has_bias);
}
#endif

inline void check_pointers(const char* who, const void* a, const char* an, const void* b, const char* bn,
                           const void* c, const char* cn) {
  MSCL_CHECK(a && b && c, value_error,
             who << ": null buffer (" << an << "=" << a << ", " << bn << "=" << b << ", " << cn << "=" << c << ")");
}
}  // namespace detail

/// y = conv(x, w) + bias; y is overwritten. bias may be null.
template <class T>
void conv3d_forward(const conv3d_geometry& g, const T* x, const T* w, const T* bias, T* y) {
  static_assert(std::is_floating_point_v<T>, "conv3d_forward: T must be float or double");
  g.validate("conv3d_forward");
  detail::check_pointers("conv3d_forward", x, "x", w, "w", y, "y");
#if MSCL_WITH_ONEDNN
  if constexpr (std::is_same_v<T, float>) {
    if (detail::use_onednn(g, onednn::op_kind::forward, bias != nullptr)) return onednn::forward(g, x, w, bias, y);
  }
#endif
  portable::forward(g, x, w, bias, y);
}

/// gx = dL/dx given gy = dL/dy; gx is overwritten.
template <class T>
void conv3d_backward_data(const conv3d_geometry& g, const T* gy, const T* w, T* gx) {
  static_assert(std::is_floating_point_v<T>, "conv3d_backward_data: T must be float or double");
  g.validate("conv3d_backward_data");
  detail::check_pointers("conv3d_backward_data", gy, "gy", w, "w", gx, "gx");
#if MSCL_WITH_ONEDNN
  if constexpr (std::is_same_v<T, float>) {
    if (detail::use_onednn(g, onednn::op_kind::backward_data, false)) return onednn::backward_data(g, gy, w, gx);
  }
#endif
  portable::backward_data(g, gy, w, gx);
}

/// gw = dL/dw (and gbias = dL/dbias when non-null) given x and gy; both are overwritten.
template <class T>
void conv3d_backward_weight(const conv3d_geometry& g, const T* x, const T* gy, T* gw, T* gbias) {
  static_assert(std::is_floating_point_v<T>, "conv3d_backward_weight: T must be float or double");
  g.validate("conv3d_backward_weight");
  detail::check_pointers("conv3d_backward_weight", x, "x", gy, "gy", gw, "gw");
#if MSCL_WITH_ONEDNN
  if constexpr (std::is_same_v<T, float>) {
    if (detail::use_onednn(g, onednn::op_kind::backward_weight, gbias != nullptr))
      return onednn::backward_weight(g, x, gy, gw, gbias);
  }
#endif
  portable::backward_weight(g, x, gy, gw, gbias);
}

}  // namespace mscl::backend::cpu_kernels
