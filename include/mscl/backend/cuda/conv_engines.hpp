/// \file conv_engines.hpp
/// \brief cuDNN graph-API ("backend") engine search for one convolution direction: the engine
///        configurations cuDNN's heuristics offer (modes A and fallback), filtered by numerical
///        notes, each built into an execution plan and timed on the real buffers.
///
/// Why: the legacy cudnnFind*AlgorithmEx search of conv.hpp sees only the eight-odd algorithm
/// enums per direction, and on an H200 it picked an sm80 kernel for r3d_18's layer-1 forward
/// convolutions that is slower than the sm90 engine PyTorch's benchmark mode finds through this
/// API (docs/cuda.md, "Convolution engine search"). conv.hpp times the legacy choice and the best
/// engine here on the same buffers with the same timer and keeps the faster one, so the search
/// can only add candidates.
///
/// Numerics: for float, engines whose notes say they down-convert inputs (FP16/BF16) or reduce in
/// reduced precision are never used; without TF32 (`settings().allow_tf32 == false`) engines
/// noted as tensor-core engines are excluded too, which for float inputs is the FP32 (FMA) path
/// of the legacy search. Engines that need run-time compilation (NVRTC) are skipped. For bf16
/// tensors (bf16 autocast) every engine is a tensor-core engine and the inputs are already
/// bf16; engines that reduce in reduced precision stay excluded (float accumulation, as PyTorch).
///
/// Tensors are declared 16-byte aligned; conv.hpp uses a plan found here only when the three
/// pointers of a call are (a view with an odd storage offset takes the legacy algorithm).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../../backend/cpu/conv.hpp"  // conv3d_geometry
#include "runtime.hpp"

namespace mscl::cuda_backend::detail {

enum class conv_direction { forward, backward_data, backward_filter };

inline const char* direction_name(conv_direction d) {
  return d == conv_direction::forward ? "forward" : d == conv_direction::backward_data ? "backward-data"
                                                                                        : "backward-filter";
}

/// Owner of one cuDNN backend descriptor.
class backend_descriptor {
 public:
  explicit backend_descriptor(cudnnBackendDescriptorType_t type) {
    MSCL_CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &d_));
  }
  backend_descriptor(const backend_descriptor&) = delete;
  backend_descriptor& operator=(const backend_descriptor&) = delete;
  ~backend_descriptor() {
    if (d_) cudnnBackendDestroyDescriptor(d_);
  }
  cudnnBackendDescriptor_t get() const { return d_; }
  template <class V>
  void set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, std::int64_t count, const V* values) {
    MSCL_CUDNN_CHECK(cudnnBackendSetAttribute(d_, name, type, count, values));
  }
  void set_descriptor(cudnnBackendAttributeName_t name, const backend_descriptor& other) {
    cudnnBackendDescriptor_t o = other.get();
    MSCL_CUDNN_CHECK(cudnnBackendSetAttribute(d_, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &o));
  }
  void finalize() { MSCL_CUDNN_CHECK(cudnnBackendFinalize(d_)); }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

/// The device pointers of one call, in the graph's tensor order: the x-shaped tensor (x or dx),
/// the w-shaped one (w or dw) and the y-shaped one (y or dy).
struct conv_pointers {
  void* x = nullptr;
  void* w = nullptr;
  void* y = nullptr;
  bool aligned() const {
    const auto ok = [](const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; };
    return ok(x) && ok(w) && ok(y);
  }
};

class conv_graph;

/// A finalized execution plan and what running it needs. The engine configuration and the
/// operation graph it was built from are kept alive with it (cuDNN documents no copy semantics
/// for descriptors set as attributes).
struct engine_plan {
  std::shared_ptr<backend_descriptor> plan;
  std::shared_ptr<backend_descriptor> config;
  std::shared_ptr<const conv_graph> graph;
  std::size_t workspace = 0;
  std::int64_t engine_index = -1;
};

/// Runs a plan; returns cuDNN's status (the search treats a failure as "not a candidate").
inline cudnnStatus_t execute_plan(cudnnHandle_t h, const engine_plan& e, const conv_pointers& io, void* workspace) {
  cudnnBackendDescriptor_t vp = nullptr;
  cudnnStatus_t st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &vp);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  const std::int64_t uids[3] = {1, 2, 3};
  void* ptrs[3] = {io.x, io.w, io.y};
  st = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 3, uids);
  if (st == CUDNN_STATUS_SUCCESS)
    st = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 3, ptrs);
  if (st == CUDNN_STATUS_SUCCESS)
    st = cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendFinalize(vp);
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendExecute(h, e.plan->get(), vp);
  cudnnBackendDestroyDescriptor(vp);
  return st;
}

/// Milliseconds per run of `run()` on the backend's stream: one untimed run, then the mean of
/// `reps`. Returns a negative value when `run` reports failure.
template <class Run>
double time_on_stream(Run&& run, int reps = 3) {
  if (!run()) return -1;
  cudaEvent_t a = nullptr, b = nullptr;
  MSCL_CUDA_CHECK(cudaEventCreate(&a));
  MSCL_CUDA_CHECK(cudaEventCreate(&b));
  MSCL_CUDA_CHECK(cudaEventRecord(a, stream()));
  bool ok = true;
  for (int i = 0; i < reps && ok; ++i) ok = run();
  MSCL_CUDA_CHECK(cudaEventRecord(b, stream()));
  MSCL_CUDA_CHECK(cudaEventSynchronize(b));
  float ms = 0;
  MSCL_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ok ? double(ms) / reps : -1;
}

/// The three tensor descriptors, the convolution and the operation graph of one direction.
class conv_graph {
 public:
  /// `io_type`: the data type of the three tensors (float, or bf16 under autocast); the
  /// computation is float either way.
  conv_graph(const backend::cpu_kernels::conv3d_geometry& g, conv_direction dir, cudnnHandle_t h,
             cudnnDataType_t io_type = CUDNN_DATA_FLOAT)
      : x_(CUDNN_BACKEND_TENSOR_DESCRIPTOR),
        w_(CUDNN_BACKEND_TENSOR_DESCRIPTOR),
        y_(CUDNN_BACKEND_TENSOR_DESCRIPTOR),
        conv_(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR),
        op_(dir == conv_direction::forward         ? CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR
            : dir == conv_direction::backward_data ? CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR
                                                   : CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR),
        graph_(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR) {
    tensor(x_, 1, {g.n, g.c_in, g.t, g.h, g.w}, io_type);
    tensor(w_, 2, {g.c_out, g.c_in, g.kt, g.kh, g.kw}, io_type);
    tensor(y_, 3, {g.n, g.c_out, g.out_t(), g.out_h(), g.out_w()}, io_type);
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
    const std::int64_t dims = 3, pad[3] = {g.pt, g.ph, g.pw}, stride[3] = {g.st, g.sh, g.sw}, dil[3] = {1, 1, 1};
    conv_.set(CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
    conv_.set(CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode);
    conv_.set(CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &dims);
    conv_.set(CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 3, dil);
    conv_.set(CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 3, stride);
    conv_.set(CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 3, pad);
    conv_.set(CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 3, pad);
    conv_.finalize();
    // The operation's attributes per direction; the graph's tensors are always x-, w- and
    // y-shaped (uids 1, 2, 3): x/w/y forward, dx/w/dy backward-data, x/dw/dy backward-filter.
    struct attributes {
      cudnnBackendAttributeName_t x, w, y, conv, alpha, beta;
    };
    const attributes a =
        dir == conv_direction::forward
            ? attributes{CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W,
                         CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
                         CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA}
        : dir == conv_direction::backward_data
            ? attributes{CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W,
                         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
                         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA}
            : attributes{CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW,
                         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY,
                         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC,
                         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA,
                         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA};
    const float alpha = 1.f, beta = 0.f;
    op_.set_descriptor(a.x, x_);
    op_.set_descriptor(a.w, w_);
    op_.set_descriptor(a.y, y_);
    op_.set_descriptor(a.conv, conv_);
    op_.set(a.alpha, CUDNN_TYPE_FLOAT, 1, &alpha);
    op_.set(a.beta, CUDNN_TYPE_FLOAT, 1, &beta);
    op_.finalize();
    cudnnBackendDescriptor_t ops[1] = {op_.get()};
    graph_.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, ops);
    graph_.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
    graph_.finalize();
  }
  const backend_descriptor& graph() const { return graph_; }

 private:
  static void tensor(backend_descriptor& d, std::int64_t uid, std::array<index_t, 5> dims_in, cudnnDataType_t type) {
    std::int64_t dims[5], strides[5], s = 1;
    for (int i = 4; i >= 0; --i) {
      dims[i] = std::int64_t(dims_in[std::size_t(i)]);
      strides[i] = s;
      s *= dims[i];
    }
    const std::int64_t alignment = 16;
    d.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
    d.set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 5, dims);
    d.set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 5, strides);
    d.set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    d.set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment);
    d.finalize();
  }
  backend_descriptor x_, w_, y_, conv_, op_, graph_;
};

/// Engine configurations of a graph from one heuristics mode (empty when the mode has none).
inline std::vector<std::shared_ptr<backend_descriptor>> heuristic_configs(const conv_graph& cg, cudnnBackendHeurMode_t mode) {
  std::vector<std::shared_ptr<backend_descriptor>> out;
  backend_descriptor heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  cudnnBackendDescriptor_t graph = cg.graph().get();
  heur.set(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph);
  heur.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
  if (cudnnBackendFinalize(heur.get()) != CUDNN_STATUS_SUCCESS) return out;
  std::int64_t count = 0;
  if (cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                               nullptr) != CUDNN_STATUS_SUCCESS ||
      count <= 0)
    return out;
  std::vector<cudnnBackendDescriptor_t> raw(std::size_t(count), nullptr);
  for (std::int64_t i = 0; i < count; ++i) {
    out.push_back(std::make_shared<backend_descriptor>(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
    raw[std::size_t(i)] = out.back()->get();
  }
  std::int64_t got = 0;
  if (cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got,
                               raw.data()) != CUDNN_STATUS_SUCCESS)
    return {};
  out.resize(std::size_t(std::max<std::int64_t>(0, std::min(got, count))));
  return out;
}

/// Whether a configuration's engine may run under the numeric policy above; its global index.
inline bool engine_allowed(const backend_descriptor& cfg, bool tf32, bool bf16, std::int64_t* index) {
  backend_descriptor engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
  cudnnBackendDescriptor_t e = engine.get();
  std::int64_t n = 0;
  if (cudnnBackendGetAttribute(cfg.get(), CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n, &e) !=
      CUDNN_STATUS_SUCCESS)
    return false;
  cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  std::int64_t count = 0;
  if (cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                               CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &count, notes) != CUDNN_STATUS_SUCCESS)
    return false;
  for (std::int64_t i = 0; i < count; ++i) {
    if (notes[i] == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS || notes[i] == CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION)
      return false;
    if (!tf32 && !bf16 && notes[i] == CUDNN_NUMERICAL_NOTE_TENSOR_CORE) return false;
  }
  cudnnBackendBehaviorNote_t behaviour[CUDNN_BEHAVIOR_NOTE_TYPE_COUNT];
  if (cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE, CUDNN_TYPE_BEHAVIOR_NOTE,
                               CUDNN_BEHAVIOR_NOTE_TYPE_COUNT, &count, behaviour) == CUDNN_STATUS_SUCCESS)
    for (std::int64_t i = 0; i < count; ++i)
      if (behaviour[i] == CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION) return false;
  *index = -1;
  cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n, index);
  return true;
}

/// The result of a search: the fastest plan (undefined when none ran) and its time.
struct engine_search_result {
  engine_plan best;
  double ms = -1;
  int candidates = 0;  ///< plans that were built and ran
};

/// Builds every allowed plan of the graph (heuristics mode A, then fallback; at most
/// `max_candidates`), times each on `io` with a workspace of up to `budget` bytes, and returns
/// the fastest. Float or bf16 tensors (`io_type`). Never throws for an engine that fails: it is
/// not a candidate.
template <class AllocateWorkspace>
engine_search_result search_engines(const backend::cpu_kernels::conv3d_geometry& g, conv_direction dir, bool tf32,
                                    std::size_t budget, const conv_pointers& io, AllocateWorkspace&& workspace_of,
                                    cudnnDataType_t io_type = CUDNN_DATA_FLOAT, int max_candidates = 64) {
  engine_search_result result;
  cudnnHandle_t h = context().cudnn;
  const bool bf16 = io_type == CUDNN_DATA_BFLOAT16;
  const auto cg = std::make_shared<const conv_graph>(g, dir, h, io_type);
  auto configs = heuristic_configs(*cg, CUDNN_HEUR_MODE_A);
  for (auto& c : heuristic_configs(*cg, CUDNN_HEUR_MODE_FALLBACK)) configs.push_back(std::move(c));
  for (const auto& cfg : configs) {
    if (result.candidates >= max_candidates) break;
    std::int64_t index = -1;
    if (!engine_allowed(*cfg, tf32, bf16, &index)) continue;
    auto plan = std::make_shared<backend_descriptor>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
    cudnnBackendDescriptor_t c = cfg->get();
    plan->set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h);
    plan->set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c);
    if (cudnnBackendFinalize(plan->get()) != CUDNN_STATUS_SUCCESS) continue;
    std::int64_t ws = 0, n = 0;
    if (cudnnBackendGetAttribute(plan->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n, &ws) !=
            CUDNN_STATUS_SUCCESS ||
        ws < 0 || std::size_t(ws) > budget)
      continue;
    engine_plan candidate{plan, cfg, cg, std::size_t(ws), index};
    auto scratch = workspace_of(candidate.workspace);
    const double ms = time_on_stream([&] { return execute_plan(h, candidate, io, scratch->ptr) == CUDNN_STATUS_SUCCESS; });
    cudaGetLastError();  // a failed engine must not leave a sticky launch error behind
    if (ms < 0) continue;
    ++result.candidates;
    if (result.ms < 0 || ms < result.ms) {
      result.ms = ms;
      result.best = candidate;
    }
  }
  return result;
}

}  // namespace mscl::cuda_backend::detail
