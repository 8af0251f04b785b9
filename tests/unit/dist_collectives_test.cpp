// Data-parallel building blocks: the single-process communicator, the distributed sampler and
// the sharded random-pair source (one process), and — under `mpirun -np 2` (ctest entries
// dist_collectives_mpi, dist_watchdog_*; hidden Catch tags [.mpi], [.watchdog_*]) — MPI
// collectives against hand-computed answers, bucketed gradient averaging, and the watchdog
// turning a stalled or killed peer into a clear error instead of a hang.
#include <catch2/catch.hpp>

#include <csignal>
#include <set>
#include <thread>

#include <mscl/data/random_pair_source.hpp>
#include <mscl/dist/communicator.hpp>
#include <mscl/dist/data_parallel.hpp>
#include <mscl/dist/gradient_buckets.hpp>
#if defined(MSCL_WITH_MPI)
#include <mscl/dist/mpi.hpp>
#endif

using namespace mscl;

TEST_CASE("single_process communicator: sums and broadcasts keep the data, a gather copies", "[dist]") {
  dist::single_process c;
  REQUIRE(c.rank() == 0);
  REQUIRE(c.size() == 1);
  std::vector<double> v{1.5, -2};
  c.all_reduce_sum(v.data(), v.size());
  c.broadcast(v.data(), v.size(), 0);
  REQUIRE(v == std::vector<double>{1.5, -2});
  std::vector<std::int64_t> in{7, 8, 9}, out(3, 0);
  c.all_gather(in.data(), 3, out.data());
  REQUIRE(out == in);
  REQUIRE_THROWS_AS(c.broadcast(v.data(), v.size(), 1), value_error);
  auto t = tensor<float>::from_vector({2, 2}, {1, 2, 3, 4});
  REQUIRE(dist::all_gather_rows(c, t).to_vector() == t.to_vector());
  // averaging over one rank leaves gradients untouched
  auto p = tensor<float>::from_vector({3}, {1, 2, 3});
  p.set_requires_grad(true);
  p.set_grad(tensor<float>::from_vector({3}, {0.5f, 0.25f, -1}));
  dist::gradient_buckets<float> gb({p});
  gb.average(c);
  REQUIRE(p.grad().to_vector() == std::vector<float>{0.5f, 0.25f, -1});
}

TEST_CASE("gradient_buckets: reverse order, capacity in bytes", "[dist]") {
  std::vector<tensor<float>> ps;
  for (index_t n : {3, 5, 2, 4}) {
    auto p = tensor<float>::zeros({n});
    p.set_requires_grad(true);
    ps.push_back(p);
  }
  // 6 floats per bucket, filled from the last parameter: {4, 2}, {5}, {3}
  dist::gradient_buckets<float> gb(ps, 6 * sizeof(float));
  REQUIRE(gb.bucket_count() == 3);
  REQUIRE(gb.bucket_elements(0) == 6);
  REQUIRE(gb.bucket_elements(1) == 5);
  REQUIRE(gb.bucket_elements(2) == 3);
}

TEST_CASE("distributed_sampler: disjoint shards whose union is the global batch", "[dist]") {
  const index_t n = 23, b = 3;
  dist::distributed_sampler one(n, 2 * b, {0, 1}, 42), r0(n, b, {0, 2}, 42), r1(n, b, {1, 2}, 42);
  REQUIRE(r0.iterations_per_epoch() == 3);  // 23 / 6, drop_last
  for (long it = 0; it < 7; ++it) {  // crosses epoch boundaries (3 iterations per epoch)
    auto a = r0.indices(it), c = r1.indices(it), g = one.indices(it);
    std::vector<index_t> cat = a;
    cat.insert(cat.end(), c.begin(), c.end());
    REQUIRE(cat == g);  // rank slots [r·B, (r+1)·B) of the one-rank batch of 2B
  }
  std::set<index_t> seen;  // one epoch: no index twice, on either rank
  for (long it = 0; it < 3; ++it)
    for (auto v : {r0.indices(it), r1.indices(it)})
      for (auto i : v) {
        REQUIRE(i >= 0);
        REQUIRE(i < n);
        REQUIRE(seen.insert(i).second);
      }
  REQUIRE(seen.size() == 18);
  REQUIRE(r0.indices(0) != r0.indices(3));  // another epoch, another order
  REQUIRE_THROWS_AS(dist::distributed_sampler(5, 3, {0, 2}, 1), value_error);
  REQUIRE_THROWS_AS(dist::distributed_sampler(50, 3, {2, 2}, 1), value_error);
}

TEST_CASE("random_pair_source: two ranks x B are the rows of one rank x 2B", "[dist]") {
  data::random_pair_source<float>::options so;
  so.batch = 4; so.frames = 8; so.size = 8; so.prototypes = 5; so.seed = 9;
  const auto whole = data::random_pair_source<float>(so).batch(3);
  so.batch = 2;
  so.world_size = 2;
  for (int r = 0; r < 2; ++r) {
    so.rank = r;
    const auto part = data::random_pair_source<float>(so).batch(3);
    for (auto [p, w] : {std::pair{part.rgb_q, whole.rgb_q}, std::pair{part.rgb_k, whole.rgb_k},
                        std::pair{part.flow_q, whole.flow_q}, std::pair{part.flow_aug_k, whole.flow_aug_k}}) {
      const auto expect = ops::slice(w, 0, 2 * r, 2 * r + 2).clone().to_vector();
      REQUIRE(p.to_vector() == expect);  // bitwise
    }
  }
  so.rank = 2;
  REQUIRE_THROWS_AS(data::random_pair_source<float>(so), value_error);
}

#if defined(MSCL_WITH_NCCL)
#include <mscl/dist/nccl.hpp>
// Compiled whenever MSCL_WITH_NCCL is on; runs only where a CUDA device exists (one rank).
TEST_CASE("nccl: one rank sums, gathers and broadcasts device buffers", "[dist][nccl]") {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    WARN("no CUDA device: the NCCL communicator is compiled but not run");
    return;
  }
  ncclUniqueId id;
  REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
  dist::nccl_communicator c(0, 1, id, 0, 30);
  float host[2] = {1.5f, -2.f}, back[2] = {0, 0};
  float *d = nullptr, *g = nullptr;
  REQUIRE(cudaMalloc(&d, sizeof host) == cudaSuccess);
  REQUIRE(cudaMalloc(&g, sizeof host) == cudaSuccess);
  cudaMemcpy(d, host, sizeof host, cudaMemcpyHostToDevice);
  c.all_reduce_sum(d, 2);
  c.all_gather(d, 2, g);
  c.broadcast(g, 2, 0);
  cudaMemcpy(back, g, sizeof back, cudaMemcpyDeviceToHost);
  REQUIRE(back[0] == 1.5f);
  REQUIRE(back[1] == -2.f);
  cudaFree(d);
  cudaFree(g);
}
#endif

#if defined(MSCL_WITH_MPI)
namespace {
std::shared_ptr<dist::mpi_communicator> world() {
  static auto c = std::make_shared<dist::mpi_communicator>();
  return c;
}
}  // namespace

TEST_CASE("mpi: all-reduce, all-gather and broadcast give the hand-computed answers", "[.mpi]") {
  auto& c = *world();
  const int r = c.rank(), w = c.size();
  REQUIRE(w >= 2);
  std::vector<float> f{float(r + 1), 0.5f};
  c.all_reduce_sum(f.data(), 2);
  REQUIRE(f[0] == float(w * (w + 1) / 2));
  REQUIRE(f[1] == 0.5f * float(w));
  std::vector<std::int64_t> in{r, 10 * r}, out(std::size_t(2 * w));
  c.all_gather(in.data(), 2, out.data());
  for (int k = 0; k < w; ++k) {
    REQUIRE(out[std::size_t(2 * k)] == k);
    REQUIRE(out[std::size_t(2 * k + 1)] == 10 * k);
  }
  double d = r == 1 ? 3.25 : -1.0;
  c.broadcast(&d, 1, /*root=*/1);
  REQUIRE(d == 3.25);
  auto rows = dist::all_gather_rows(c, tensor<float>::full({1, 3}, float(r)));
  REQUIRE(rows.shape() == shape_t{w, 3});
  for (int k = 0; k < w; ++k) REQUIRE(rows.data()[3 * k + 2] == float(k));
  // unequal per-rank batches are refused on every rank (no rank is left waiting)
  REQUIRE_THROWS_AS(dist::all_gather_rows(c, tensor<float>::zeros({r + 1, 2})), shape_error);
  c.barrier();
}

TEST_CASE("mpi: gradient buckets average over ranks, and a missing gradient counts as zero", "[.mpi]") {
  auto& c = *world();
  const int r = c.rank(), w = c.size();
  std::vector<tensor<double>> ps;
  for (index_t n : {5, 1, 7}) {
    auto p = tensor<double>::zeros({n});
    p.set_requires_grad(true);
    std::vector<double> g(static_cast<std::size_t>(n));
    for (index_t i = 0; i < n; ++i) g[std::size_t(i)] = double((r + 1) * (i + 1));
    p.set_grad(tensor<double>::from_vector({n}, g));
    ps.push_back(p);
  }
  if (r == 1) ps[1].zero_grad();                             // no gradient on rank 1
  dist::gradient_buckets<double> gb(ps, 6 * sizeof(double));  // several buckets in flight
  REQUIRE(gb.bucket_count() >= 2);
  gb.average(c);
  const double mean_factor = double(w + 1) / 2.0;  // mean of 1..w
  for (std::size_t k : {std::size_t(0), std::size_t(2)})
    for (index_t i = 0; i < ps[k].numel(); ++i) REQUIRE(ps[k].grad().data()[i] == Approx(mean_factor * double(i + 1)));
  // parameter 1: every rank but rank 1 contributed r+1
  double expect = 0;
  for (int k = 0; k < w; ++k) expect += k == 1 ? 0.0 : double(k + 1);
  REQUIRE(ps[1].grad().data()[0] == Approx(expect / double(w)));
}

// Rank 1 stops answering; rank 0's collective must end the job with the watchdog message
// (ctest: PASS_REGULAR_EXPRESSION on the message, TIMEOUT far below the stall).
TEST_CASE("mpi watchdog: a stalled peer ends the job with a clear error", "[.watchdog_stall]") {
  auto c = world();
  c->set_timeout_seconds(2);
  if (c->rank() == 1) std::this_thread::sleep_for(std::chrono::seconds(120));
  double x = 1;
  c->all_reduce_sum(&x, 1, "test all-reduce");
  FAIL("the collective returned although a peer never joined it");
}

// Rank 1 is killed (SIGKILL) before the collective: the job must end, by mpirun noticing the
// death or by the watchdog, never hang.
TEST_CASE("mpi watchdog: a killed peer ends the job", "[.watchdog_killed]") {
  auto c = world();
  c->set_timeout_seconds(5);
  if (c->rank() == 1) std::raise(SIGKILL);
  double x = 1;
  c->all_reduce_sum(&x, 1, "test all-reduce");
  FAIL("the collective returned although a peer died");
}
#endif
