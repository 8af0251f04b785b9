// Data-parallel building blocks: the single-process communicator, the distributed sampler and
// the sharded random-pair source (one process), and — under `mpirun -np 2` (ctest entries
// dist_collectives_mpi, dist_watchdog_*; hidden Catch tags [.mpi], [.watchdog_*]) — MPI
// collectives against hand-computed answers, bucketed gradient averaging, and the watchdog
// turning a stalled or killed peer into a clear error instead of a hang. Also the autograd
// engine's gradient-ready hook (one process), and sync-BN of one BatchNorm layer over 2 ranks
// against single-process BN over the concatenated batch (forward, backward, running buffers).
// The tensor collectives and gradient buckets also run against a scripted second rank in one
// process (testing/scripted_peer_communicator.hpp; the CUDA test runs the same checks on the GPU).
#include <catch2/catch.hpp>

#include <csignal>
#include <cstring>
#include <set>
#include <thread>

#include <mscl/data/random_pair_source.hpp>
#include <mscl/dist/communicator.hpp>
#include <mscl/dist/tensor_collectives.hpp>
#include <mscl/dist/data_parallel.hpp>
#include <mscl/dist/gradient_buckets.hpp>
#include <mscl/dist/launch.hpp>
#include <mscl/dist/sync_batch_norm.hpp>
#include <mscl/ops/elementwise.hpp>
#include <mscl/ops/norm.hpp>
#include <mscl/ops/reduce.hpp>
#include <mscl/ops/shape_ops.hpp>
#include <mscl/testing/scripted_peer_communicator.hpp>

#include "../shared/tensor_collectives_checks.hpp"
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

TEST_CASE("tensor collectives and gradient buckets against a scripted peer, as rank 0 and as rank 1", "[dist]") {
  const int r = GENERATE(0, 1);
  INFO("this process is rank " << r << " of 2");
  testing::scripted_peer_communicator comm(r, 1.5);
  mscl_test::check_tensor_collectives<cpu>(comm, 1.5f, [](const tensor<float>& h) { return h.clone(); });
  CHECK(comm.collectives() > 0);
}

TEST_CASE("CPU tensors with a device-memory (NCCL-like) communicator are refused with a clear error", "[dist][error]") {
  const auto copy = [](void* dst, const void* src, std::size_t n) { std::memcpy(dst, src, n); };
  testing::scripted_peer_communicator device_comm(0, 1.5, dist::memory_kind::cuda_device, copy, copy);
  REQUIRE_THROWS_AS((dist::flat_buffer<float, cpu>(device_comm, 4, "test")), config_error);
  try {
    (void)dist::all_gather_rows(device_comm, tensor<float>::ones({2, 2}), "key all-gather");
    FAIL("no error");
  } catch (const config_error& e) {
    CHECK(std::string(e.what()).find("CPU tensors need a host communicator") != std::string::npos);
  }
}

TEST_CASE("gradient-ready hook: every graph leaf reported once, with its final gradient", "[dist]") {
  // loss = sum(a*b) + sum(a*a) + sum(c): a has three edges (mul twice as x and y), b one, c one;
  // d requires grad but is not in the graph. By hand: da = b + 2a, db = a, dc = 1.
  auto leaf = [](std::vector<float> v) {
    auto t = tensor<float>::from_vector({index_t(v.size())}, v);
    t.set_requires_grad(true);
    return t;
  };
  auto a = leaf({1, -2}), b = leaf({3, 0.5f}), c = leaf({4, 5}), d = leaf({7});
  const auto loss = ops::add(ops::add(ops::sum(ops::mul(a, b)), ops::sum(ops::mul(a, a))), ops::sum(c));
  std::vector<std::pair<const void*, std::vector<float>>> reported;  // (leaf, its gradient when reported)
  autograd::grad_ready_fn<float, cpu> hook = [&](const tensor<float>& t) {
    reported.push_back({t.impl().get(), t.grad().defined() ? t.grad().to_vector() : std::vector<float>{}});
  };
  {
    autograd::scoped_grad_ready_hook<float, cpu> scope(hook);
    loss.backward();
  }
  REQUIRE(reported.size() == 3);
  std::set<const void*> seen;
  for (const auto& [p, g] : reported) seen.insert(p);
  REQUIRE(seen == std::set<const void*>{a.impl().get(), b.impl().get(), c.impl().get()});
  for (const auto& [p, g] : reported) {
    const tensor<float>& t = p == a.impl().get() ? a : p == b.impl().get() ? b : c;
    REQUIRE(g == t.grad().to_vector());  // final when reported: nothing was added afterwards
  }
  REQUIRE(a.grad().to_vector() == std::vector<float>{3 + 2 * 1, 0.5f + 2 * -2});
  REQUIRE(b.grad().to_vector() == std::vector<float>{1, -2});
  REQUIRE(c.grad().to_vector() == std::vector<float>{1, 1});
  REQUIRE(!d.grad().defined());
  // uninstalled after the scope: a second backward reports nothing
  reported.clear();
  ops::sum(ops::mul(a, b)).backward();
  REQUIRE(reported.empty());
}

TEST_CASE("local_rank_from_launcher: the launchers' variables in order, 0 alone, a bad value named", "[dist]") {
  const char* vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "PMI_LOCAL_RANK", "LOCAL_RANK"};
  std::vector<std::pair<std::string, std::string>> saved;  // restored at the end (ctest may run under a launcher)
  for (const char* v : vars)
    if (const char* x = std::getenv(v)) saved.emplace_back(v, x);
  for (const char* v : vars) unsetenv(v);
  CHECK(dist::local_rank_from_launcher() == 0);
  setenv("LOCAL_RANK", "5", 1);
  CHECK(dist::local_rank_from_launcher() == 5);
  setenv("SLURM_LOCALID", "2", 1);  // Slurm's comes before the generic LOCAL_RANK
  CHECK(dist::local_rank_from_launcher() == 2);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
  CHECK(dist::local_rank_from_launcher() == 1);
  for (const char* bad : {"x", "-1", "3a", ""}) {
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", bad, 1);
    CHECK_THROWS_WITH(dist::local_rank_from_launcher(), Catch::Contains("OMPI_COMM_WORLD_LOCAL_RANK") &&
                                                             Catch::Contains("not a non-negative integer"));
  }
  for (const char* v : vars) unsetenv(v);
  for (const auto& [k, v] : saved) setenv(k.c_str(), v.c_str(), 1);
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
  // host buffers (the training loop's scalars) are staged through device memory
  double sums[3] = {0.25, -1, 4};
  c.all_reduce_sum(sums, 3);
  c.start_all_reduce_sum(sums, 3);
  c.wait_all();
  std::int64_t mine = 7, all = 0;
  c.all_gather(&mine, 1, &all);
  c.broadcast(sums, 3, 0);
  REQUIRE(sums[0] == 0.25);
  REQUIRE(sums[2] == 4);
  REQUIRE(all == 7);
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

// Sync-BN of one layer: rank 0 holds rows [0, 3) and rank 1 rows [3, 5) of a batch of 5 (unequal
// on purpose: the statistics are weighted by the global count). Loss = sum(y * G) with a fixed G,
// so the upstream gradient of every row is the same in both runs; then dx rows, and the sum over
// ranks of dweight / dbias, must equal single-process BN over all 5 rows; so must y and the
// running buffers (unbiased variance of the 5·S values per channel).
TEST_CASE("mpi: sync-BN of one layer over 2 ranks equals single-process BN over the whole batch", "[.mpi]") {
  auto c = world();
  const int r = c->rank();
  REQUIRE(c->size() == 2);
  const index_t n = 5, C = 3, S = 4, first = r == 0 ? 0 : 3, rows = r == 0 ? 3 : 2;
  std::vector<float> xv(std::size_t(n * C * S)), gv(xv.size());
  for (std::size_t i = 0; i < xv.size(); ++i) {  // channel-dependent offsets and scales
    xv[i] = float(std::sin(0.7 * double(i)) * (1 + double((i / S) % C)) + 2.0 * double((i / S) % C));
    gv[i] = float(std::cos(1.3 * double(i)));
  }
  const auto X = tensor<float>::from_vector({n, C, S}, xv), G = tensor<float>::from_vector({n, C, S}, gv);
  for (bool relu : {false, true}) {
    INFO("fused relu: " << relu);
    auto run = [&](const tensor<float>& x_in, const tensor<float>& g, bool sync) {
      auto x = x_in.clone();
      x.set_requires_grad(true);
      auto w = tensor<float>::from_vector({C}, {1.5f, -0.5f, 2}), b = tensor<float>::from_vector({C}, {0.1f, 0.2f, -0.3f});
      w.set_requires_grad(true);
      b.set_requires_grad(true);
      auto rm = tensor<float>::from_vector({C}, {0.5f, 0, -1}), rv = tensor<float>::from_vector({C}, {1, 2, 0.5f});
      tensor<float> y;
      {
        dist::sync_batch_norm_scope scope(c, sync);
        y = relu ? ops::batch_norm_relu(x, w, b, rm, rv, true, 0.1, 1e-5) : ops::batch_norm(x, w, b, rm, rv, true, 0.1, 1e-5);
      }
      ops::sum(ops::mul(y, g)).backward();  // backward outside the scope: the reducer was captured
      return std::vector<tensor<float>>{y.detach(), x.grad(), w.grad(), b.grad(), rm, rv};
    };
    const auto ref = run(X, G, false);
    const auto mine_x = ops::slice(X, 0, first, first + rows).clone(), mine_g = ops::slice(G, 0, first, first + rows).clone();
    const auto par = run(mine_x, mine_g, true);
    auto rows_of = [&](const tensor<float>& t) { return ops::slice(t, 0, first, first + rows).clone().to_vector(); };
    auto close = [](const std::vector<float>& a, const std::vector<float>& b) {
      REQUIRE(a.size() == b.size());
      double m = 0;
      for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])) / (1 + std::abs(double(b[i]))));
      return m;
    };
    const double tol = 2e-6;  // float32 rounding of values of order 10
    REQUIRE(close(par[0].to_vector(), rows_of(ref[0])) <= tol);  // y
    REQUIRE(close(par[1].to_vector(), rows_of(ref[1])) <= tol);  // dx
    for (int k : {2, 3}) {                                     // dweight, dbias: the ranks' parts add up
      auto v = par[std::size_t(k)].to_vector();
      c->all_reduce_sum(v.data(), v.size());
      REQUIRE(close(v, ref[std::size_t(k)].to_vector()) <= tol);
    }
    REQUIRE(close(par[4].to_vector(), ref[4].to_vector()) <= tol);  // running mean
    REQUIRE(close(par[5].to_vector(), ref[5].to_vector()) <= tol);  // running var (unbiased over 5·S)
    // not vacuous: per-rank statistics give another output
    const auto alone = run(mine_x, mine_g, false);
    REQUIRE(close(alone[0].to_vector(), rows_of(ref[0])) > 1e-2);
  }
  // under no_grad (momentum key encoders) the statistics stay per rank
  {
    dist::sync_batch_norm_scope scope(c);
    no_grad guard;
    const auto mine = ops::slice(X, 0, first, first + rows).clone();
    const auto y = ops::batch_norm(mine, tensor<float>(), tensor<float>(), tensor<float>(), tensor<float>(), true);
    ops::scoped_batch_norm_reducer none(nullptr);
    const auto y_alone = ops::batch_norm(mine, tensor<float>(), tensor<float>(), tensor<float>(), tensor<float>(), true);
    REQUIRE(y.to_vector() == y_alone.to_vector());
  }
  c->barrier();
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
