// The CUDA data-parallel machinery with a REAL NCCL communicator (dist/nccl.hpp) on the one GPU
// that a test machine has: device flat buffers, the tensor collectives, gradient buckets on
// device tensors (with the autograd engine's gradient-ready hook), sync-BN on the device and the
// module / optimiser state broadcasts. Built only with MSCL_WITH_NCCL (cmake/cuda_targets.cmake:
// target cuda_nccl_test, ctest labels cuda;nccl); scripts/gpu-check.sh runs it against a
// libnccl.so.2 found on the GPU machine (PyTorch's pip wheel brings one).
//
// Two communicators, both on the real NCCL communicator of this process (rank 0 of 1):
//
//  - `nccl` itself (world size 1). Every collective is an identity, so every result is checked
//    bit-exactly against values computed without the communicator. The public tensor-level
//    calls short-circuit at one rank (all_gather_rows returns its input, broadcast_tensors and
//    gradient_buckets::average / backward_and_average do nothing but backward, and
//    sync_batch_norm_scope installs no reducer), so the world-1 checks drive the layer below
//    them directly: flat buffers, comm.all_reduce_sum / start_all_reduce_sum / wait_all,
//    gradient_buckets::mark_ready / finish from a gradient-ready hook, and the sync-BN reducer.
//
//  - `mirrored_pair` (world size 2): rank 0 of a job whose rank 1 is an identical copy of this
//    process. Every collective first runs through NCCL on the caller's real buffers, then adds
//    rank 1's identical contribution (sums doubled on the device, the gathered block repeated,
//    a broadcast from rank 1 equal to our data). It makes the public calls take the multi-rank
//    path they take in a real job — all_gather_rows, broadcast_tensors, backward_and_average
//    with and without overlap, sync_batch_norm_scope, broadcast_module_state — with NCCL doing
//    the transport, and the results stay predictable: an average over two identical ranks is
//    exactly the single-process value (x + x is exact in floating point, and so is the halving).
//
// Without a GPU every case prints "MSCL_CUDA_SKIP: ..." and returns (ctest: skipped).
//
// Tolerances: collectives, flat buffers and gradient averaging are compared bit-exactly. Where
// two separate backward passes are compared (gradients averaged during backward against a plain
// backward), cuDNN's weight-gradient algorithms may accumulate with atomics, so the bound is
// max|d| <= 1e-5 · max|ref| per tensor (the plain-vs-plain floor is printed). Sync-BN (this
// backend's own kernels, double statistics) against cuDNN's batch norm: max|d| <= 1e-5 ·
// max(1, max|ref|).
#include <catch2/catch.hpp>

#include "../gpu_skip.hpp"

#include <cuda_runtime.h>
#include <link.h>
#include <nccl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <mscl/core/rng.hpp>
#include <mscl/dist/communicator.hpp>
#include <mscl/dist/data_parallel.hpp>
#include <mscl/dist/flat_buffer.hpp>
#include <mscl/dist/gradient_buckets.hpp>
#include <mscl/dist/nccl.hpp>
#include <mscl/dist/sync_batch_norm.hpp>
#include <mscl/dist/tensor_collectives.hpp>
#include <mscl/models/video_resnet.hpp>
#include <mscl/ops/conv.hpp>
#include <mscl/ops/elementwise.hpp>
#include <mscl/ops/loss.hpp>
#include <mscl/ops/norm.hpp>
#include <mscl/ops/pool.hpp>
#include <mscl/ops/reduce.hpp>
#include <mscl/ops/shape_ops.hpp>
#include <mscl/optim/sgd.hpp>
// last, as mscl/mscl.hpp does: the backend's ops check their arguments with the ops/ headers' helpers
#include <mscl/backend/cuda/cuda.hpp>

using mscl::cpu;
using mscl::cuda;
using mscl::index_t;
using mscl::shape_t;
namespace dist = mscl::dist;
template <class B>
using tensor = mscl::tensor<float, B>;

namespace {

void cuda_ok(cudaError_t st, const char* what) {
  MSCL_CHECK(st == cudaSuccess, mscl::error, "cuda_nccl_test: " << what << ": " << cudaGetErrorString(st));
}

bool is_device_pointer(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

/// "NCCL 2.x.y (library <path>), built against 2.a.b": the log line that shows NCCL really ran.
std::string nccl_description() {
  int v = 0;
  ncclGetVersion(&v);
  const auto split = [](int code) {  // 2.9 and later: major·10000 + minor·100 + patch
    return code >= 10000 ? std::to_string(code / 10000) + "." + std::to_string(code / 100 % 100) + "." +
                               std::to_string(code % 100)
                         : std::to_string(code / 1000) + "." + std::to_string(code / 100 % 10) + "." +
                               std::to_string(code % 100);
  };
  std::string where;  // the loaded objects whose path names libnccl
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* out) {
        const std::string name = info->dlpi_name ? info->dlpi_name : "";
        auto& w = *static_cast<std::string*>(out);
        if (name.find("libnccl") != std::string::npos) w += (w.empty() ? "" : ", ") + name;
        return 0;
      },
      &where);
  if (where.empty()) where = "?";
  return "NCCL " + split(v) + " (library " + where + "), built against " + split(NCCL_VERSION_CODE);
}

/// A fresh NCCL communicator: rank 0 of 1 on device 0, 60 s watchdog.
std::shared_ptr<dist::nccl_communicator> make_nccl() {
  ncclUniqueId id{};
  REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
  auto c = std::make_shared<dist::nccl_communicator>(0, 1, id, 0, 60.0);
  REQUIRE(c->size() == 1);
  REQUIRE(c->name() == "nccl");
  REQUIRE(c->memory() == dist::memory_kind::cuda_device);
  return c;
}

template <class T>
__global__ void twice_kernel(T* p, unsigned long long n) {
  for (unsigned long long i = blockIdx.x * 1ull * blockDim.x + threadIdx.x; i < n; i += 1ull * blockDim.x * gridDim.x)
    p[i] = p[i] + p[i];
}

template <class F>
void with_type(dist::dtype t, F&& f) {
  if (t == dist::dtype::f32) f(float{});
  else if (t == dist::dtype::f64) f(double{});
  else f(std::int64_t{});
}

/// Rank 0 of two identical ranks, on a real NCCL communicator of one rank (see the file comment).
/// `events` records the calls in order: R all-reduce, S start, W wait_all, P poll, G gather,
/// B broadcast, X barrier.
class mirrored_pair final : public dist::communicator {
 public:
  explicit mirrored_pair(std::shared_ptr<dist::nccl_communicator> inner) : inner_(std::move(inner)) {}
  int rank() const override { return 0; }
  int size() const override { return 2; }
  std::string name() const override { return "nccl (mirrored to 2 ranks)"; }
  dist::memory_kind memory() const override { return inner_->memory(); }
  double timeout_seconds() const override { return inner_->timeout_seconds(); }
  [[noreturn]] void abort(const std::string& message, int code) override { inner_->abort(message, code); }

  std::string events;
  std::size_t device_elements = 0;  ///< elements that went through NCCL from device memory

 protected:
  void do_all_reduce_sum(void* data, std::size_t n, dist::dtype t, const char* what) override {
    events += 'R';
    count(data, n);
    with_type(t, [&](auto z) { inner_->all_reduce_sum(static_cast<decltype(z)*>(data), n, what); });
    add_twin(data, n, t);
  }
  void do_all_gather(const void* in, std::size_t n, void* out, dist::dtype t, const char* what) override {
    events += 'G';
    count(in, n);
    with_type(t, [&](auto z) {
      using E = decltype(z);
      inner_->all_gather(static_cast<const E*>(in), n, static_cast<E*>(out), what);
    });
    const std::size_t bytes = n * dist::dtype_size(t);
    char* o = static_cast<char*>(out);
    if (is_device_pointer(out)) {  // NCCL's stream is drained (its wait()); then ours, on it
      cuda_ok(cudaMemcpyAsync(o + bytes, o, bytes, cudaMemcpyDeviceToDevice, inner_->stream()), "mirror copy");
      cuda_ok(cudaStreamSynchronize(inner_->stream()), "mirror copy");
    } else {
      std::memcpy(o + bytes, o, bytes);
    }
  }
  void do_broadcast(void* data, std::size_t n, dist::dtype t, int root, const char* what) override {
    events += 'B';
    count(data, n);
    // From rank 0: ours. From rank 1: its data, which equals ours. Either way NCCL's root 0.
    with_type(t, [&](auto z) { inner_->broadcast(static_cast<decltype(z)*>(data), n, 0, what); });
    (void)root;
  }
  void do_start_all_reduce_sum(void* data, std::size_t n, dist::dtype t, const char* what) override {
    events += 'S';
    count(data, n);
    with_type(t, [&](auto z) { inner_->start_all_reduce_sum(static_cast<decltype(z)*>(data), n, what); });
    pending_.push_back({data, n, t});
  }
  void do_wait_all(const char* what) override {
    events += 'W';
    inner_->wait_all(what);
    for (const auto& p : pending_) add_twin(p.data, p.n, p.t);
    pending_.clear();
  }
  void do_barrier(const char* what) override {
    events += 'X';
    inner_->barrier(what);
  }
  void do_poll() override {
    events += 'P';
    inner_->poll();
  }

 private:
  struct pending {
    void* data;
    std::size_t n;
    dist::dtype t;
  };
  void count(const void* p, std::size_t n) {
    if (is_device_pointer(p)) device_elements += n;
  }
  /// data += data: rank 1's identical contribution to a sum (exact in floating point).
  void add_twin(void* data, std::size_t n, dist::dtype t) {
    with_type(t, [&](auto z) {
      using E = decltype(z);
      E* p = static_cast<E*>(data);
      if (is_device_pointer(data)) {
        const unsigned blocks = unsigned(std::min<std::size_t>((n + 255) / 256, 4096));
        twice_kernel<E><<<blocks, 256, 0, inner_->stream()>>>(p, n);
        cuda_ok(cudaGetLastError(), "mirror sum kernel");
        cuda_ok(cudaStreamSynchronize(inner_->stream()), "mirror sum kernel");
      } else {
        for (std::size_t i = 0; i < n; ++i) p[i] = p[i] + p[i];
      }
    });
  }

  std::shared_ptr<dist::nccl_communicator> inner_;
  std::vector<pending> pending_;
};

std::size_t count_of(const std::string& s, char c) { return std::size_t(std::count(s.begin(), s.end(), c)); }

/// A device tensor of N(mean, sd) values.
tensor<cuda> random_device(const shape_t& shape, std::uint64_t seed, double mean = 0, double sd = 1) {
  mscl::generator gen(seed);
  tensor<cpu> h = tensor<cpu>::empty(shape);
  gen.fill_normal(h.data(), h.numel(), mean, sd);
  return mscl::to_device(h);
}

/// max |a - b| (NaN counts as infinite).
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::fabs(double(a[i]) - double(b[i]));
    if (!(d <= m)) m = std::isnan(d) ? INFINITY : d;
  }
  return m;
}
double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, double(std::fabs(x)));
  return m;
}
/// Bit-exact equality of two float vectors (memcmp: also tells -0 from 0 and NaN payloads).
bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

std::vector<std::vector<float>> gradients_of(const std::vector<tensor<cuda>>& params) {
  std::vector<std::vector<float>> out;
  for (const auto& p : params) out.push_back(p.grad().defined() ? p.grad().to_vector() : std::vector<float>{});
  return out;
}

/// Largest per-tensor max|got - ref| / max|ref| (0 when ref is all zeros and got equals it).
double worst_relative(const std::vector<std::vector<float>>& ref, const std::vector<std::vector<float>>& got) {
  REQUIRE(ref.size() == got.size());
  double worst = 0;
  for (std::size_t k = 0; k < ref.size(); ++k) {
    INFO("parameter " << k);
    REQUIRE(!ref[k].empty());
    REQUIRE(got[k].size() == ref[k].size());
    const double d = max_abs_diff(ref[k], got[k]), m = max_abs(ref[k]);
    worst = std::max(worst, m > 0 ? d / m : (d > 0 ? INFINITY : 0.0));
  }
  return worst;
}

}  // namespace

TEST_CASE("nccl one rank: tensor collectives on device tensors (raw NCCL, flat buffers, host scalars, gather and broadcast of tensors)",
          "[nccl]") {
  REQUIRE_GPU_OR_SKIP();
  auto comm = make_nccl();
  std::cout << "cuda_nccl_test: " << nccl_description() << "; communicator '" << comm->name() << "' rank "
            << comm->rank() << " of " << comm->size() << "\n";

  // 1. NCCL itself, out of place on the communicator's stream: the receive buffers start as
  //    zeros, so an operation that moved nothing fails.
  {
    const std::vector<float> v{1.5f, -2.f, 3.25f, 0.f, 1e-30f, 7e30f, -123456.75f};
    const std::size_t n = v.size(), bytes = n * sizeof(float);
    float *send = nullptr, *recv = nullptr;
    cuda_ok(cudaMalloc(&send, bytes), "cudaMalloc");
    cuda_ok(cudaMalloc(&recv, bytes), "cudaMalloc");
    cuda_ok(cudaMemcpy(send, v.data(), bytes, cudaMemcpyHostToDevice), "upload");
    cuda_ok(cudaDeviceSynchronize(), "upload");  // a pageable upload may return before its DMA lands
    std::vector<float> back(n);
    const auto fetch = [&] {
      cuda_ok(cudaStreamSynchronize(comm->stream()), "NCCL stream");
      cuda_ok(cudaMemcpy(back.data(), recv, bytes, cudaMemcpyDeviceToHost), "download");
      cuda_ok(cudaMemset(recv, 0, bytes), "cudaMemset");
      cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    };
    cuda_ok(cudaMemset(recv, 0, bytes), "cudaMemset");
    cuda_ok(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    REQUIRE(ncclAllReduce(send, recv, n, ncclFloat32, ncclSum, comm->native(), comm->stream()) == ncclSuccess);
    fetch();
    CHECK(bit_equal(back, v));
    REQUIRE(ncclAllGather(send, recv, n, ncclFloat32, comm->native(), comm->stream()) == ncclSuccess);
    fetch();
    CHECK(bit_equal(back, v));
    REQUIRE(ncclBroadcast(send, recv, n, ncclFloat32, 0, comm->native(), comm->stream()) == ncclSuccess);
    fetch();
    CHECK(bit_equal(back, v));
    cudaFree(send);
    cudaFree(recv);
  }

  // 2. A flat buffer of several device tensors of different shapes (one a transposed view),
  //    summed in device memory through the communicator, taken back into new tensors.
  const auto a = random_device({5}, 1), b = random_device({3, 4}, 2), c3 = random_device({2, 3, 4}, 3);
  const auto bt = mscl::ops::transpose(b, 0, 1);  // [4, 3], strided
  const std::vector<tensor<cuda>> parts{a, bt, c3};
  std::size_t total = 0;
  for (const auto& t : parts) total += std::size_t(t.numel());
  {
    dist::flat_buffer<float, cuda> flat(*comm, total, "test flat buffer");
    REQUIRE(flat.in_device_memory());
    REQUIRE(is_device_pointer(flat.data()));
    std::size_t at = 0;
    for (const auto& t : parts) {
      flat.put(at, t);
      at += std::size_t(t.numel());
    }
    flat.ready_for_collective();
    comm->all_reduce_sum(flat.data(), total, "test all-reduce of a flat buffer");
    at = 0;
    for (const auto& t : parts) {
      auto out = tensor<cuda>::zeros(t.shape());
      flat.take(at, out);
      at += std::size_t(t.numel());
      CHECK(bit_equal(out.to_vector(), t.to_vector()));
    }
    // all_gather of the whole buffer into a second one (1 · total elements: a real copy)
    dist::flat_buffer<float, cuda> gathered(*comm, total, "test gather buffer");
    gathered.fill_zero(0, total);
    gathered.ready_for_collective();
    comm->all_gather(flat.data(), total, gathered.data(), "test all-gather of a flat buffer");
    at = 0;
    for (const auto& t : parts) {
      auto out = tensor<cuda>::zeros(t.shape());
      gathered.take(at, out, 2.f);  // the scaled take path too
      at += std::size_t(t.numel());
      auto expect = t.clone().to_vector();
      for (float& x : expect) x *= 2.f;
      CHECK(bit_equal(out.to_vector(), expect));
    }
    // two buffers in flight at once (the gradient buckets' pattern), then one wait
    dist::flat_buffer<float, cuda> second(*comm, std::size_t(c3.numel()), "test second buffer");
    second.put(0, c3);
    second.ready_for_collective();
    comm->start_all_reduce_sum(flat.data(), total, "test started all-reduce 1");
    comm->start_all_reduce_sum(second.data(), std::size_t(c3.numel()), "test started all-reduce 2");
    comm->wait_all("test wait_all");
    auto out = tensor<cuda>::zeros(c3.shape());
    second.take(0, out);
    CHECK(bit_equal(out.to_vector(), c3.to_vector()));
    auto out_a = tensor<cuda>::zeros(a.shape());
    flat.take(0, out_a);
    CHECK(bit_equal(out_a.to_vector(), a.to_vector()));
  }
  {  // double tensors (the sync-BN statistics' type) through a device flat buffer
    mscl::generator gen(9);
    std::vector<double> dv(13);
    gen.fill_normal(dv.data(), index_t(dv.size()), 0, 1);
    const auto d = mscl::tensor<double, cuda>::from_vector({13}, dv);
    dist::flat_buffer<double, cuda> flat(*comm, 13, "test double buffer");
    flat.put(0, d);
    flat.ready_for_collective();
    comm->all_reduce_sum(flat.data(), 13, "test all-reduce of doubles");
    auto out = mscl::tensor<double, cuda>::zeros({13});
    flat.take(0, out);
    CHECK(out.to_vector() == dv);
  }

  // 3. Host scalars (the training loop's counters and checks): staged through device memory.
  {
    double sums[3] = {0.25, -1e300, 4.5};
    comm->all_reduce_sum(sums, 3, "test host doubles");
    CHECK(sums[0] == 0.25);
    CHECK(sums[1] == -1e300);
    CHECK(sums[2] == 4.5);
    comm->start_all_reduce_sum(sums, 3, "test started host doubles");
    comm->wait_all("test wait_all (host)");
    comm->broadcast(sums, 3, 0, "test host broadcast");
    CHECK(sums[1] == -1e300);
    CHECK(sums[2] == 4.5);
    std::int64_t mine[2] = {7, -(std::int64_t(1) << 60)}, all[2] = {0, 0};
    comm->all_gather(mine, 2, all, "test host int64 gather");
    CHECK(all[0] == 7);
    CHECK(all[1] == -(std::int64_t(1) << 60));
    std::int64_t counter = (std::int64_t(1) << 53) + 1;  // not representable as a double
    comm->all_reduce_sum(&counter, 1, "test host int64 sum");
    CHECK(counter == (std::int64_t(1) << 53) + 1);
    comm->barrier("test barrier");
    REQUIRE_THROWS_AS(comm->broadcast(sums, 3, 1), mscl::value_error);  // root outside [0, 1)
  }

  // 4. The tensor-level calls at world size 1 return at once (no collective): checked for
  //    completeness; the mirrored pair below makes them run through NCCL.
  {
    auto g = dist::all_gather_rows(*comm, b, "test gather (world 1)");
    CHECK(bit_equal(g.to_vector(), b.to_vector()));
    auto a2 = a.clone();
    dist::broadcast_tensors(*comm, std::vector<tensor<cuda>>{a2}, 0, "test broadcast (world 1)");
    CHECK(bit_equal(a2.to_vector(), a.to_vector()));
  }

  // 5. The same calls as rank 0 of two identical ranks (transport: NCCL).
  {
    mirrored_pair pair(comm);
    const auto g = dist::all_gather_rows(pair, b, "test gather (mirrored)");
    REQUIRE(g.shape() == shape_t{6, 4});
    auto expect = b.to_vector();
    const auto once = expect;
    expect.insert(expect.end(), once.begin(), once.end());
    CHECK(bit_equal(g.to_vector(), expect));
    const auto gt = dist::all_gather_rows(pair, bt, "test gather of a strided view (mirrored)");
    REQUIRE(gt.shape() == shape_t{8, 3});
    auto expect_t = bt.clone().to_vector();
    const auto once_t = expect_t;
    expect_t.insert(expect_t.end(), once_t.begin(), once_t.end());
    CHECK(bit_equal(gt.to_vector(), expect_t));
    auto a2 = a.clone(), c2 = c3.clone();
    for (int root : {0, 1}) {
      dist::broadcast_tensors(pair, std::vector<tensor<cuda>>{a2, c2}, root, "test broadcast (mirrored)");
      CHECK(bit_equal(a2.to_vector(), a.to_vector()));
      CHECK(bit_equal(c2.to_vector(), c3.to_vector()));
    }
    CHECK(count_of(pair.events, 'G') == 4);  // two shape checks (host int64) + two device gathers
    CHECK(count_of(pair.events, 'B') == 2);
    CHECK(pair.device_elements == std::size_t(b.numel() + bt.numel() + 2 * (a.numel() + c3.numel())));
    std::cout << "cuda_nccl_test: collectives ran: raw NCCL out of place, flat buffers (" << total
              << " floats, 13 doubles), host scalars, all_gather_rows / broadcast_tensors as rank 0 of a mirrored pair ("
              << pair.events << ", " << pair.device_elements << " device elements through NCCL)\n";
  }
}

TEST_CASE("nccl one rank: gradient buckets on device tensors average like a plain backward (hook, overlap on and off)",
          "[nccl]") {
  REQUIRE_GPU_OR_SKIP();
  auto comm = make_nccl();
  auto mirror = std::make_shared<mirrored_pair>(comm);
  auto net = mscl::models::r3d_tiny<float, cuda>(10, /*seed=*/11);
  net.train();
  const auto params = net.parameters();
  // Batch 4 of 8×32×32 (as cuda_backend_test's r3d_tiny step): layer4's batch norm normalises
  // 16 values per channel, so the gradients are not dominated by float chaos.
  const auto clip = random_device({4, 3, 8, 32, 32}, 60);
  const std::vector<index_t> labels{3, 7, 1, 9};
  const auto loss_of = [&] { return mscl::ops::cross_entropy(net.forward(clip), labels); };

  net.zero_grad();
  loss_of().backward();
  const auto ref = gradients_of(params);
  net.zero_grad();
  loss_of().backward();
  const double plain_floor = worst_relative(ref, gradients_of(params));  // two plain backward passes
  constexpr double tol = 1e-5;
  INFO("plain backward vs plain backward: worst relative difference " << plain_floor);
  REQUIRE(plain_floor <= tol);

  // 32 KiB buckets: several of them, so buckets start while later ones are still being packed.
  const std::size_t bucket_bytes = std::size_t(32) << 10;
  std::size_t buckets_made = 0;

  SECTION("world 1: buckets packed and summed by NCCL from the gradient-ready hook during backward") {
    dist::gradient_buckets<float, cuda> buckets(params, bucket_bytes);
    buckets_made = buckets.bucket_count();
    REQUIRE(buckets_made >= 3);
    std::unordered_map<const void*, std::size_t> index;
    for (std::size_t k = 0; k < params.size(); ++k) index[params[k].impl().get()] = k;
    std::vector<char> marked(params.size(), 0);
    std::size_t marked_in_hook = 0;
    mscl::autograd::grad_ready_fn<float, cuda> hook = [&](const tensor<cuda>& leaf) {
      auto it = index.find(leaf.impl().get());
      if (it != index.end() && !marked[it->second]) {
        marked[it->second] = 1;
        ++marked_in_hook;
        buckets.mark_ready(*comm, it->second);
      }
      comm->poll();
    };
    net.zero_grad();
    {
      mscl::autograd::scoped_grad_ready_hook<float, cuda> scope(hook);
      loss_of().backward();
    }
    for (std::size_t k = params.size(); k-- > 0;)
      if (!marked[k]) buckets.mark_ready(*comm, k);
    buckets.finish(*comm);
    CHECK(marked_in_hook == params.size());  // every parameter is reached by r3d_tiny's graph
    const double worst = worst_relative(ref, gradients_of(params));
    INFO("worst relative difference " << worst);
    CHECK(worst <= tol);
    std::cout << "cuda_nccl_test: gradient buckets, world 1 through NCCL from the hook: " << params.size()
              << " parameters in " << buckets_made << " buckets, worst relative difference " << worst
              << " (plain-vs-plain floor " << plain_floor << ")\n";
  }

  SECTION("world 1 and mirrored pair: averaging the gradients of one backward gives them back bit-exactly") {
    for (bool mirrored : {false, true}) {
      INFO((mirrored ? "mirrored pair" : "world 1"));
      dist::gradient_buckets<float, cuda> buckets(params, bucket_bytes);
      net.zero_grad();
      loss_of().backward();
      const auto before = gradients_of(params);
      if (mirrored) {
        mirror->events.clear();
        buckets.average(*mirror);  // (g + g) / 2 on the device
        CHECK(count_of(mirror->events, 'S') == buckets.bucket_count());
        CHECK(count_of(mirror->events, 'W') == 1);
      } else {
        for (std::size_t k = params.size(); k-- > 0;) buckets.mark_ready(*comm, k);
        buckets.finish(*comm);  // g / 1
      }
      const auto after = gradients_of(params);
      for (std::size_t k = 0; k < params.size(); ++k) {
        INFO("parameter " << k);
        CHECK(bit_equal(after[k], before[k]));
      }
    }
    std::cout << "cuda_nccl_test: gradient buckets, average() at world 1 and as a mirrored pair: bit-exact\n";
  }

  SECTION("mirrored pair: backward_and_average with overlap on and off") {
    for (bool overlap : {true, false}) {
      INFO("overlap " << overlap);
      dist::gradient_buckets<float, cuda> buckets(params, bucket_bytes);
      buckets_made = buckets.bucket_count();
      mirror->events.clear();
      net.zero_grad();
      buckets.backward_and_average(*mirror, loss_of(), overlap);
      const std::string ev = mirror->events;
      CHECK(count_of(ev, 'S') == buckets_made);
      CHECK(count_of(ev, 'W') == 1);
      CHECK(ev.back() == 'W');
      if (overlap) {
        // The hook ran once per parameter, and the first bucket (fc and the last BN layer's
        // parameters) started while most gradients were still to come.
        CHECK(count_of(ev, 'P') >= params.size());
        REQUIRE(ev.find('S') != std::string::npos);
        CHECK(count_of(ev.substr(ev.find('S')), 'P') > params.size() / 2);
      } else {
        CHECK(count_of(ev, 'P') == 0);
      }
      const double worst = worst_relative(ref, gradients_of(params));
      INFO("worst relative difference " << worst);
      CHECK(worst <= tol);
      std::cout << "cuda_nccl_test: backward_and_average(overlap=" << (overlap ? "true" : "false")
                << ") as rank 0 of a mirrored pair: " << buckets_made << " buckets, worst relative difference "
                << worst << "\n";
    }
  }

  SECTION("world 1: backward_and_average is a plain backward") {
    for (bool overlap : {true, false}) {
      dist::gradient_buckets<float, cuda> buckets(params, bucket_bytes);
      net.zero_grad();
      buckets.backward_and_average(*comm, loss_of(), overlap);
      CHECK(worst_relative(ref, gradients_of(params)) <= tol);
    }
  }
}

TEST_CASE("nccl one rank: sync-BN on the device through NCCL equals plain batch norm (5-D, training, gradients)",
          "[nccl]") {
  REQUIRE_GPU_OR_SKIP();
  auto comm = make_nccl();
  auto mirror = std::make_shared<mirrored_pair>(comm);

  /// communicator_bn_reducer over NCCL, counting its calls and checking they hand device memory.
  struct counting_reducer : mscl::ops::batch_norm_reducer {
    std::shared_ptr<dist::communicator_bn_reducer> inner;
    std::vector<std::size_t> lengths;
    bool all_device = true;
    void all_reduce_sum(double* v, std::size_t n) override {
      lengths.push_back(n);
      all_device = all_device && is_device_pointer(v);
      inner->all_reduce_sum(v, n);
    }
    bool reduces_device_memory() const override { return inner->reduces_device_memory(); }
  };

  const shape_t shape{3, 4, 3, 5, 6};
  const index_t C = 4;
  const double N = 3.0 * 3 * 5 * 6;  // values per channel
  const double momentum = 0.1, eps = 1e-5;
  const auto close = [](const std::vector<float>& ref, const std::vector<float>& got, const char* what) {
    const double d = max_abs_diff(ref, got), bound = 1e-5 * std::max(1.0, max_abs(ref));
    INFO(what << ": max |d| = " << d << ", bound " << bound);
    CHECK(d <= bound);
    return d;
  };

  for (bool relu : {false, true}) {
    for (int mode = 0; mode < 2; ++mode) {  // 0: world 1 (reducer over NCCL), 1: mirrored pair (sync_batch_norm_scope)
      INFO("relu " << relu << ", " << (mode == 0 ? "world 1" : "mirrored pair"));
      const auto xv = random_device(shape, 40, 0.5, 2.0), wv = random_device({C}, 41), bv = random_device({C}, 42);
      const auto rm0 = random_device({C}, 43), rv0 = random_device({C}, 44, 2.0, 0.1);
      const auto g = random_device(shape, 45);
      struct run_t {
        tensor<cuda> x, w, b, rm, rv, y;
      };
      const auto make = [&] {
        run_t r{xv.clone(), wv.clone(), bv.clone(), rm0.clone(), rv0.clone(), {}};
        r.x.set_requires_grad(true);
        r.w.set_requires_grad(true);
        r.b.set_requires_grad(true);
        return r;
      };
      const auto forward = [&](run_t& r) {
        r.y = relu ? mscl::ops::batch_norm_relu(r.x, r.w, r.b, r.rm, r.rv, true, momentum, eps)
                   : mscl::ops::batch_norm(r.x, r.w, r.b, r.rm, r.rv, true, momentum, eps);
      };
      run_t plain = make(), synced = make();
      forward(plain);  // cuDNN's batch norm: no reducer installed
      mirror->events.clear();
      auto counter = std::make_shared<counting_reducer>();
      counter->inner = std::make_shared<dist::communicator_bn_reducer>(comm);
      if (mode == 0) {
        mscl::ops::scoped_batch_norm_reducer scope(counter);
        forward(synced);
      } else {
        dist::sync_batch_norm_scope scope(mirror);  // installs a reducer: size() is 2
        REQUIRE(mscl::ops::current_batch_norm_reducer() != nullptr);
        forward(synced);
      }
      REQUIRE(mscl::ops::current_batch_norm_reducer() == nullptr);
      mscl::ops::sum(mscl::ops::mul(plain.y, g)).backward();
      mscl::ops::sum(mscl::ops::mul(synced.y, g)).backward();  // uses the reducer captured in forward
      if (mode == 0) {
        CHECK(counter->lengths == std::vector<std::size_t>{std::size_t(2 * C + 1), std::size_t(2 * C)});
        CHECK(counter->all_device);
      } else {
        CHECK(mirror->events == "RR");
        CHECK(mirror->device_elements > 0);
      }
      close(plain.y.to_vector(), synced.y.to_vector(), "output");
      close(plain.rm.to_vector(), synced.rm.to_vector(), "running_mean");
      if (mode == 0) {
        close(plain.rv.to_vector(), synced.rv.to_vector(), "running_var");
      } else {
        // Two ranks normalise over 2N values: the unbiased variance in the running buffer uses
        // 2N/(2N-1) where one process uses N/(N-1). Expected value derived from the plain run.
        const auto rp = plain.rv.to_vector(), r0 = rv0.to_vector();
        std::vector<float> expect(rp.size());
        for (std::size_t i = 0; i < rp.size(); ++i) {
          const double var = (double(rp[i]) - (1 - momentum) * double(r0[i])) / momentum * (N - 1) / N;
          expect[i] = float((1 - momentum) * double(r0[i]) + momentum * var * (2 * N) / (2 * N - 1));
        }
        close(expect, synced.rv.to_vector(), "running_var (global count 2N)");
        CHECK(max_abs_diff(rp, synced.rv.to_vector()) > 1e-5);  // the 2N count really arrived
      }
      const double dx = close(plain.x.grad().to_vector(), synced.x.grad().to_vector(), "grad x");
      const double dw = close(plain.w.grad().to_vector(), synced.w.grad().to_vector(), "grad weight");
      close(plain.b.grad().to_vector(), synced.b.grad().to_vector(), "grad bias");
      std::cout << "cuda_nccl_test: sync-BN " << (relu ? "(fused relu) " : "")
                << (mode == 0 ? "at world 1 through the NCCL reducer" : "as rank 0 of a mirrored pair (sync_batch_norm_scope)")
                << " vs cuDNN batch norm: max |d| grad x " << dx << ", grad weight " << dw << "\n";
    }
  }
}

TEST_CASE("nccl one rank: broadcasting module state, buffers and optimiser state leaves the model unchanged",
          "[nccl]") {
  REQUIRE_GPU_OR_SKIP();
  auto comm = make_nccl();
  mirrored_pair mirror(comm);
  auto net = mscl::models::r3d_tiny<float, cuda>(10, /*seed=*/5);
  net.train();
  mscl::optim::sgd<float, cuda> opt(net.parameters(), {0.05, 0.9, 1e-4, false});
  // One step, so that running statistics and momentum buffers hold non-trivial values.
  const auto clip = random_device({2, 3, 4, 16, 16}, 61);
  opt.zero_grad();
  mscl::ops::cross_entropy(net.forward(clip), std::vector<index_t>{1, 2}).backward();
  opt.step();

  const auto snapshot = [&] {
    std::vector<std::vector<float>> s;
    for (const auto& e : net.state_dict()) s.push_back(e.value.to_vector());
    for (const auto& m : opt.momentum_buffers()) s.push_back(m.defined() ? m.to_vector() : std::vector<float>{});
    return s;
  };
  const auto before = snapshot();
  std::size_t defined_buffers = 0;
  for (const auto& m : opt.momentum_buffers()) defined_buffers += m.defined() ? 1 : 0;
  REQUIRE(defined_buffers == net.parameters().size());

  for (int mode = 0; mode < 2; ++mode) {
    dist::communicator& c = mode == 0 ? static_cast<dist::communicator&>(*comm) : mirror;
    INFO(c.name());
    mirror.events.clear();
    dist::broadcast_module_state(c, net, 0);
    dist::broadcast_module_buffers(c, net, 0);
    if (mode == 1) dist::broadcast_module_buffers(c, net, 1);
    std::vector<tensor<cuda>> state = dist::module_state_tensors(net, true, false);
    dist::append_optimizer_state(c, opt, state);  // the layout goes through NCCL at world 1 too
    REQUIRE(state.size() == 2 * net.parameters().size());
    dist::broadcast_tensors(c, state, 0, "test broadcast of parameters and momentum");
    const auto after = snapshot();
    REQUIRE(after.size() == before.size());
    for (std::size_t i = 0; i < before.size(); ++i) {
      INFO("state tensor " << i);
      CHECK(bit_equal(after[i], before[i]));
    }
    if (mode == 1) CHECK(mirror.events == "BBBBB");
    std::cout << "cuda_nccl_test: module state / buffers / optimiser state broadcast "
              << (mode == 0 ? "at world 1" : "as rank 0 of a mirrored pair (" + mirror.events + ")")
              << ": " << before.size() << " tensors unchanged\n";
  }
}
