/// \file conv.hpp
/// \brief conv3d (and conv2d through it) on cuDNN 9: forward, backward-data, backward-filter
///        and the bias terms, with the algorithm chosen once per shape and cached.
///
/// A `conv_plan` per (geometry, element type, TF32 setting) holds the cuDNN descriptors and, per
/// direction, the chosen algorithm, its math type and workspace size. The choice is made on
/// the first call in that direction: with `settings().benchmark_conv_algorithms` (the default,
/// like PyTorch's cudnn.benchmark=True) by timing cuDNN's candidates on the real buffers
/// (cudnnFind*AlgorithmEx), otherwise by cuDNN's heuristics (cudnnGet*Algorithm_v7). Candidates
/// needing more workspace than `settings().max_conv_workspace_bytes` (or than half the free
/// device memory) are skipped. With TF32 disallowed the descriptors use CUDNN_FMA_MATH (no
/// tensor-core rounding of float inputs). For float, the benchmark search also times the engines
/// of cuDNN's graph API (conv_engines.hpp) against the legacy choice and keeps the faster one
/// (`settings().search_graph_engines`).
///
/// bf16 autocast (`settings().autocast_bf16`, float tensors only): the convolution casts its
/// input and weight to bf16 scratch, runs cuDNN on bf16 tensors with float accumulation and
/// casts the bf16 output back to float; backward casts the incoming gradient and returns float
/// gradients computed the same way (the bias gradient stays float). The bf16 copies, not the
/// float operands, are what backward keeps. The plans of bf16 tensors are separate entries of
/// the same cache, searched the same way.
#pragma once
#include <array>
#include <map>
#include <memory>
#include <mutex>

#include <cstdio>
#include <cstdlib>

#include "../../backend/cpu/conv.hpp"  // conv3d_geometry (the op's shape contract)
#include "conv_engines.hpp"
#include "ops_basic.hpp"

namespace mscl::cuda_backend {

namespace detail {

/// The element types a convolution runs on: float and double tensors, and bf16 scratch under
/// autocast.
template <class S>
constexpr cudnnDataType_t cudnn_type() {
  return std::is_same_v<S, float> ? CUDNN_DATA_FLOAT : std::is_same_v<S, double> ? CUDNN_DATA_DOUBLE : CUDNN_DATA_BFLOAT16;
}
/// The type of cuDNN's alpha/beta scaling factors (and the accumulation): double for double,
/// float for float and bf16.
template <class S>
using conv_scale_t = std::conditional_t<std::is_same_v<S, double>, double, float>;

/// Scratch memory from the caching allocator, released at scope exit.
struct workspace {
  void* ptr = nullptr;
  std::size_t bytes = 0;
  explicit workspace(std::size_t b) : bytes(b) {
    if (bytes) ptr = device_allocator::instance().allocate(bytes);
  }
  workspace(const workspace&) = delete;
  workspace& operator=(const workspace&) = delete;
  ~workspace() {
    if (ptr) device_allocator::instance().deallocate(ptr, bytes);
  }
};

struct algo_choice {
  bool chosen = false;
  int algo = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  std::size_t workspace = 0;
};

/// The graph-API side of a direction's choice (float, benchmark mode): whether its best engine
/// beat the legacy algorithm on the first call's buffers, and both times for the log.
struct engine_choice {
  bool use = false;
  engine_plan plan;
  double legacy_ms = -1, engine_ms = -1;
  int candidates = 0;
};

struct conv_plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr, bias = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  algo_choice fwd, bwd_data, bwd_filter;
  engine_choice fwd_engine, bwd_data_engine, bwd_filter_engine;
  cudnnMathType_t base_math = CUDNN_DEFAULT_MATH;
};

inline void set_5d(cudnnTensorDescriptor_t d, cudnnDataType_t type, std::array<int, 5> dims) {
  std::array<int, 5> strides;
  int s = 1;
  for (int i = 4; i >= 0; --i) {
    strides[std::size_t(i)] = s;
    s *= dims[std::size_t(i)];
  }
  MSCL_CUDNN_CHECK(cudnnSetTensorNdDescriptor(d, type, 5, dims.data(), strides.data()));
}

/// The plan for a geometry, created on first use (descriptors only; algorithms lazily).
template <class T>
conv_plan& plan_for(const backend::cpu_kernels::conv3d_geometry& g) {
  static std::mutex mutex;
  static std::map<std::array<index_t, 19>, std::unique_ptr<conv_plan>> cache;
  const bool tf32 = std::is_same_v<T, float> && settings().allow_tf32;
  // sizeof tells float (4), double (8) and bf16 (2) apart.
  const std::array<index_t, 19> key{g.n,  g.c_in, g.t,  g.h,  g.w,  g.c_out, g.kt, g.kh, g.kw,
                                    g.st, g.sh,   g.sw, g.pt, g.ph, g.pw,    index_t(sizeof(T)), index_t(tf32),
                                    index_t(settings().benchmark_conv_algorithms),
                                    index_t(settings().search_graph_engines)};
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = cache[key];
  if (slot) return *slot;
  auto p = std::make_unique<conv_plan>();
  const cudnnDataType_t type = cudnn_type<T>();
  MSCL_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->x));
  MSCL_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->y));
  MSCL_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->bias));
  MSCL_CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->w));
  MSCL_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->conv));
  set_5d(p->x, type, {int(g.n), int(g.c_in), int(g.t), int(g.h), int(g.w)});
  set_5d(p->y, type, {int(g.n), int(g.c_out), int(g.out_t()), int(g.out_h()), int(g.out_w())});
  set_5d(p->bias, type, {1, int(g.c_out), 1, 1, 1});
  const std::array<int, 5> wdims{int(g.c_out), int(g.c_in), int(g.kt), int(g.kh), int(g.kw)};
  MSCL_CUDNN_CHECK(cudnnSetFilterNdDescriptor(p->w, type, CUDNN_TENSOR_NCHW, 5, wdims.data()));
  const std::array<int, 3> pad{int(g.pt), int(g.ph), int(g.pw)}, stride{int(g.st), int(g.sh), int(g.sw)},
      dilation{1, 1, 1};
  // bf16 tensors compute in float (cuDNN's PSEUDO_BFLOAT16_CONFIG).
  const cudnnDataType_t compute = std::is_same_v<T, double> ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
  MSCL_CUDNN_CHECK(cudnnSetConvolutionNdDescriptor(p->conv, 3, pad.data(), stride.data(), dilation.data(),
                                                   CUDNN_CROSS_CORRELATION, compute));
  p->base_math = (std::is_same_v<T, float> && !tf32) ? CUDNN_FMA_MATH
                 : cudnn_type<T>() == CUDNN_DATA_BFLOAT16 ? CUDNN_TENSOR_OP_MATH
                                                          : CUDNN_DEFAULT_MATH;
  MSCL_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->base_math));
  std::array<int, 5> out{};
  MSCL_CUDNN_CHECK(cudnnGetConvolutionNdForwardOutputDim(p->conv, p->x, p->w, 5, out.data()));
  MSCL_CHECK(out[2] == g.out_t() && out[3] == g.out_h() && out[4] == g.out_w(), shape_error,
             "cuda conv3d: cuDNN's output extent [" << out[2] << ", " << out[3] << ", " << out[4]
                                                    << "] differs from mscl's for " << g.to_string());
  slot = std::move(p);
  return *slot;
}

/// Workspace budget for the algorithm search.
inline std::size_t search_budget() {
  std::size_t free_b = 0, total_b = 0;
  MSCL_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  return std::min(settings().max_conv_workspace_bytes, free_b / 2);
}

/// Picks the first usable candidate (cuDNN sorts them fastest first).
template <class Perf>
algo_choice pick(const Perf* results, int count, std::size_t budget, const conv_plan& p, const char* what,
                 const backend::cpu_kernels::conv3d_geometry& g) {
  for (int i = 0; i < count; ++i) {
    if (results[i].status != CUDNN_STATUS_SUCCESS || results[i].memory > budget) continue;
    algo_choice c;
    c.chosen = true;
    c.algo = int(results[i].algo);
    // Without TF32 keep FMA math whatever cuDNN reports for the candidate.
    c.math = p.base_math == CUDNN_FMA_MATH ? CUDNN_FMA_MATH : results[i].mathType;
    c.workspace = results[i].memory;
    return c;
  }
  MSCL_CHECK(false, cuda_error, "cuda conv3d: cuDNN offers no usable " << what << " algorithm for " << g.to_string());
  return {};
}

/// After the legacy choice of a direction: times it and the graph API's engines on the same
/// buffers and records whether an engine is faster. A failure of the graph API itself (not of
/// one engine) is reported once on stderr and leaves the legacy algorithm in use.
template <class T, class LegacyRun>
void consider_engines(engine_choice& choice, const backend::cpu_kernels::conv3d_geometry& g, conv_direction dir,
                      const conv_pointers& io, LegacyRun&& legacy_run) {
  if constexpr (!std::is_same_v<T, double>) {
    if (!settings().benchmark_conv_algorithms || !settings().search_graph_engines || !io.aligned()) return;
    try {
      choice.legacy_ms = time_on_stream([&] {
        legacy_run();
        return true;
      });
      const auto r = search_engines(g, dir, settings().allow_tf32, search_budget(), io,
                                    [](std::size_t bytes) { return std::make_unique<workspace>(bytes); },
                                    cudnn_type<T>());
      choice.candidates = r.candidates;
      choice.engine_ms = r.ms;
      if (r.ms >= 0 && r.ms < choice.legacy_ms) {
        choice.use = true;
        choice.plan = r.best;
      }
    } catch (const cuda_error& e) {
      static bool reported = false;
      if (!reported) {
        std::fprintf(stderr, "mscl: cuDNN graph-API engine search unavailable (%s); using the legacy algorithms\n",
                     e.what());
        reported = true;
      }
      choice = engine_choice{};
    }
    if (std::getenv("MSCL_CUDNN_LOG"))
      std::fprintf(stderr, "mscl conv%s %s %s: legacy %.3f ms, best of %d engines %.3f ms (engine %lld) -> %s\n",
                   std::is_same_v<T, float> ? "" : " bf16", direction_name(dir), g.to_string().c_str(), choice.legacy_ms, choice.candidates, choice.engine_ms,
                   static_cast<long long>(choice.plan.engine_index), choice.use ? "engine" : "legacy");
  } else {
    (void)choice, (void)g, (void)dir, (void)io, (void)legacy_run;
  }
}

/// Runs a direction with its chosen engine when one won the search and the call's pointers
/// allow it, else with the legacy algorithm.
template <class LegacyRun>
void run_chosen(const engine_choice& choice, const conv_pointers& io, LegacyRun&& legacy_run) {
  if (choice.use && io.aligned()) {
    workspace ws(choice.plan.workspace);
    MSCL_CUDNN_CHECK(execute_plan(context().cudnn, choice.plan, io, ws.ptr));
  } else {
    legacy_run();
  }
}

/// bf16 scratch of n elements from the caching allocator (autocast's operand copies).
inline std::shared_ptr<workspace> bf16_scratch(index_t n) {
  return std::make_shared<workspace>(std::size_t(n) * sizeof(__nv_bfloat16));
}
inline __nv_bfloat16* bf16_data(const workspace& w) { return static_cast<__nv_bfloat16*>(w.ptr); }

/// A bf16 copy of n floats (round to nearest even).
inline std::shared_ptr<workspace> to_bf16(const float* x, index_t n) {
  auto out = bf16_scratch(n);
  if (n > 0) {
    kernels::float_to_bf16<<<grid_for(kernels::vector_work<float>(n)), 256, 0, stream()>>>(x, bf16_data(*out), n);
    MSCL_CUDA_CHECK_LAUNCH();
  }
  return out;
}

/// y = float(x) for n elements of bf16 scratch.
inline void from_bf16(const workspace& x, float* y, index_t n) {
  if (n <= 0) return;
  kernels::bf16_to_float<<<grid_for(kernels::vector_work<float>(n)), 256, 0, stream()>>>(bf16_data(x), y, n);
  MSCL_CUDA_CHECK_LAUNCH();
}

}  // namespace detail

struct conv_ops {
  template <class T>
  using dtensor = tensor<T, cuda>;

  /// y = conv3d(x, w) + bias; the forward/backward contract of ops::conv3d.
  template <class T>
  static dtensor<T> conv3d(const dtensor<T>& x, const dtensor<T>& w, const dtensor<T>& bias, std::array<index_t, 3> stride,
                           std::array<index_t, 3> padding) {
    const auto g = ops::detail::conv3d_geometry_of(x, w, bias, stride, padding, "conv3d");
    const dtensor<T> xc = detail::contiguous(x), wc = detail::contiguous(w);
    if constexpr (std::is_same_v<T, float>) {
      if (settings().autocast_bf16) return conv3d_bf16(g, x, w, bias, xc, wc);
    }
    dtensor<T> y = dtensor<T>::empty({g.n, g.c_out, g.out_t(), g.out_h(), g.out_w()});
    forward<T>(g, xc.data(), wc.data(), y.data());
    add_bias(g, bias, y);
    const bool gx = x.requires_grad(), gw = w.requires_grad(), gb = bias.requires_grad();
    if (!(gx || gw || gb) || !autograd::is_grad_enabled()) return y;
    dtensor<T> xs = gw ? xc.detach() : dtensor<T>(), ws = gx ? wc.detach() : dtensor<T>();
    return autograd::record(y, "conv3d", {x, w, bias}, [g, xs, ws, gx, gw, gb](const dtensor<T>& gout) {
      const dtensor<T> gy = detail::contiguous(gout);
      dtensor<T> grad_x, grad_w, grad_b;
      if (gx) {
        grad_x = dtensor<T>::empty({g.n, g.c_in, g.t, g.h, g.w});
        backward_data<T>(g, gy.data(), ws.data(), grad_x.data());
      }
      if (gw) {
        grad_w = dtensor<T>::empty({g.c_out, g.c_in, g.kt, g.kh, g.kw});
        backward_filter<T>(g, xs.data(), gy.data(), grad_w.data());
      }
      if (gb) {
        grad_b = dtensor<T>::empty({g.c_out});
        backward_bias(g, gy, grad_b);
      }
      return std::vector<dtensor<T>>{grad_x, grad_w, grad_b};
    });
  }

 private:
  using bf16 = __nv_bfloat16;

  /// conv3d under bf16 autocast (see the file comment). Backward is fixed at the forward's
  /// choice: it runs in bf16 even if autocast was switched off in between, as PyTorch's.
  static dtensor<float> conv3d_bf16(const backend::cpu_kernels::conv3d_geometry& g, const dtensor<float>& x,
                                    const dtensor<float>& w, const dtensor<float>& bias, const dtensor<float>& xc,
                                    const dtensor<float>& wc) {
    const auto x16 = detail::to_bf16(xc.data(), xc.numel()), w16 = detail::to_bf16(wc.data(), wc.numel());
    dtensor<float> y = dtensor<float>::empty({g.n, g.c_out, g.out_t(), g.out_h(), g.out_w()});
    {
      const auto y16 = detail::bf16_scratch(y.numel());
      forward<bf16>(g, detail::bf16_data(*x16), detail::bf16_data(*w16), detail::bf16_data(*y16));
      detail::from_bf16(*y16, y.data(), y.numel());
    }
    add_bias(g, bias, y);
    const bool gx = x.requires_grad(), gw = w.requires_grad(), gb = bias.requires_grad();
    if (!(gx || gw || gb) || !autograd::is_grad_enabled()) return y;
    // Backward keeps the bf16 copies (half the float operands' memory).
    const auto xs = gw ? x16 : nullptr, ws = gx ? w16 : nullptr;
    return autograd::record(y, "conv3d", {x, w, bias}, [g, xs, ws, gx, gw, gb](const dtensor<float>& gout) {
      const dtensor<float> gy = detail::contiguous(gout);
      dtensor<float> grad_x, grad_w, grad_b;
      if (gx || gw) {
        const auto gy16 = detail::to_bf16(gy.data(), gy.numel());
        if (gx) {
          grad_x = dtensor<float>::empty({g.n, g.c_in, g.t, g.h, g.w});
          const auto gx16 = detail::bf16_scratch(grad_x.numel());
          backward_data<bf16>(g, detail::bf16_data(*gy16), detail::bf16_data(*ws), detail::bf16_data(*gx16));
          detail::from_bf16(*gx16, grad_x.data(), grad_x.numel());
        }
        if (gw) {
          grad_w = dtensor<float>::empty({g.c_out, g.c_in, g.kt, g.kh, g.kw});
          const auto gw16 = detail::bf16_scratch(grad_w.numel());
          backward_filter<bf16>(g, detail::bf16_data(*xs), detail::bf16_data(*gy16), detail::bf16_data(*gw16));
          detail::from_bf16(*gw16, grad_w.data(), grad_w.numel());
        }
      }
      if (gb) {
        grad_b = dtensor<float>::empty({g.c_out});
        backward_bias(g, gy, grad_b);
      }
      return std::vector<dtensor<float>>{grad_x, grad_w, grad_b};
    });
  }

  template <class T>
  static void add_bias(const backend::cpu_kernels::conv3d_geometry& g, const dtensor<T>& bias, dtensor<T>& y) {
    if (!bias.defined()) return;
    auto& p = detail::plan_for<T>(g);
    const T one = T(1);
    const dtensor<T> bc = detail::contiguous(bias);
    MSCL_CUDNN_CHECK(cudnnAddTensor(context().cudnn, &one, p.bias, bc.data(), &one, p.y, y.data()));
  }

  // The three directions on device pointers of element type S (float, double, or bf16 scratch).
  template <class S>
  static void forward(const backend::cpu_kernels::conv3d_geometry& g, const S* x, const S* w, S* y) {
    auto& p = detail::plan_for<S>(g);
    cudnnHandle_t h = context().cudnn;
    const detail::conv_scale_t<S> one = 1, zero = 0;
    const detail::conv_pointers io{(void*)x, (void*)w, (void*)y};
    const auto legacy = [&] {
      MSCL_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.fwd.math));
      detail::workspace ws(p.fwd.workspace);
      MSCL_CUDNN_CHECK(cudnnConvolutionForward(h, &one, p.x, x, p.w, w, p.conv, cudnnConvolutionFwdAlgo_t(p.fwd.algo),
                                               ws.ptr, ws.bytes, &zero, p.y, y));
    };
    if (!p.fwd.chosen) {
      int max_count = 0;
      MSCL_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max_count));
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(std::size_t(std::max(max_count, 1)));
      int count = 0;
      const std::size_t budget = detail::search_budget();
      MSCL_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.base_math));
      if (settings().benchmark_conv_algorithms) {
        detail::workspace ws(budget);
        MSCL_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(h, p.x, x, p.w, w, p.conv, p.y, y, max_count, &count,
                                                                perf.data(), ws.ptr, ws.bytes));
      } else {
        MSCL_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, p.x, p.w, p.conv, p.y, max_count, &count, perf.data()));
      }
      p.fwd = detail::pick(perf.data(), count, budget, p, "forward", g);
      detail::consider_engines<S>(p.fwd_engine, g, detail::conv_direction::forward, io, legacy);
    }
    detail::run_chosen(p.fwd_engine, io, legacy);
  }

  template <class S>
  static void backward_data(const backend::cpu_kernels::conv3d_geometry& g, const S* gy, const S* w, S* gx) {
    auto& p = detail::plan_for<S>(g);
    cudnnHandle_t h = context().cudnn;
    const detail::conv_scale_t<S> one = 1, zero = 0;
    const detail::conv_pointers io{(void*)gx, (void*)w, (void*)gy};
    const auto legacy = [&] {
      MSCL_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.bwd_data.math));
      detail::workspace ws(p.bwd_data.workspace);
      MSCL_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &one, p.w, w, p.y, gy, p.conv,
                                                    cudnnConvolutionBwdDataAlgo_t(p.bwd_data.algo), ws.ptr, ws.bytes,
                                                    &zero, p.x, gx));
    };
    if (!p.bwd_data.chosen) {
      int max_count = 0;
      MSCL_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max_count));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(std::size_t(std::max(max_count, 1)));
      int count = 0;
      const std::size_t budget = detail::search_budget();
      MSCL_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.base_math));
      if (settings().benchmark_conv_algorithms) {
        detail::workspace ws(budget);
        MSCL_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(h, p.w, w, p.y, gy, p.conv, p.x, gx, max_count,
                                                                     &count, perf.data(), ws.ptr, ws.bytes));
      } else {
        MSCL_CUDNN_CHECK(
            cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.w, p.y, p.conv, p.x, max_count, &count, perf.data()));
      }
      p.bwd_data = detail::pick(perf.data(), count, budget, p, "backward-data", g);
      detail::consider_engines<S>(p.bwd_data_engine, g, detail::conv_direction::backward_data, io, legacy);
    }
    detail::run_chosen(p.bwd_data_engine, io, legacy);
  }

  template <class S>
  static void backward_filter(const backend::cpu_kernels::conv3d_geometry& g, const S* x, const S* gy, S* gw) {
    auto& p = detail::plan_for<S>(g);
    cudnnHandle_t h = context().cudnn;
    const detail::conv_scale_t<S> one = 1, zero = 0;
    const detail::conv_pointers io{(void*)x, (void*)gw, (void*)gy};
    const auto legacy = [&] {
      MSCL_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.bwd_filter.math));
      detail::workspace ws(p.bwd_filter.workspace);
      MSCL_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &one, p.x, x, p.y, gy, p.conv,
                                                      cudnnConvolutionBwdFilterAlgo_t(p.bwd_filter.algo), ws.ptr,
                                                      ws.bytes, &zero, p.w, gw));
    };
    if (!p.bwd_filter.chosen) {
      int max_count = 0;
      MSCL_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max_count));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(std::size_t(std::max(max_count, 1)));
      int count = 0;
      const std::size_t budget = detail::search_budget();
      MSCL_CUDNN_CHECK(cudnnSetConvolutionMathType(p.conv, p.base_math));
      if (settings().benchmark_conv_algorithms) {
        detail::workspace ws(budget);
        MSCL_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, p.x, x, p.y, gy, p.conv, p.w, gw, max_count,
                                                                       &count, perf.data(), ws.ptr, ws.bytes));
      } else {
        MSCL_CUDNN_CHECK(
            cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p.x, p.y, p.conv, p.w, max_count, &count, perf.data()));
      }
      p.bwd_filter = detail::pick(perf.data(), count, budget, p, "backward-filter", g);
      detail::consider_engines<S>(p.bwd_filter_engine, g, detail::conv_direction::backward_filter, io, legacy);
    }
    detail::run_chosen(p.bwd_filter_engine, io, legacy);
  }

  template <class T>
  static void backward_bias(const backend::cpu_kernels::conv3d_geometry& g, const dtensor<T>& gy, dtensor<T>& gb) {
    auto& p = detail::plan_for<T>(g);
    const T one = T(1), zero = T(0);
    MSCL_CUDNN_CHECK(cudnnConvolutionBackwardBias(context().cudnn, &one, p.y, gy.data(), &zero, p.bias, gb.data()));
  }
};

}  // namespace mscl::cuda_backend
