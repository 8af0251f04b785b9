// Checks of dist::all_gather_rows, dist::broadcast_tensors and dist::gradient_buckets for tensors
// of backend B against testing::scripted_peer_communicator (the other rank's elements are all
// `peer`). Shared by the CPU unit test (host memory) and the CUDA test (device tensors, with
// host-memory staging and with device-memory buffers), so that every flat_buffer path runs the
// same expectations. `upload` turns a host tensor into a tensor<float, B>.
#pragma once
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include <mscl/dist/gradient_buckets.hpp>
#include <mscl/dist/tensor_collectives.hpp>

namespace mscl_test {

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

template <class B, class Upload>
void check_tensor_collectives(mscl::dist::communicator& comm, float peer, Upload upload) {
  using mscl::index_t;
  using host_t = mscl::tensor<float, mscl::cpu>;
  const int r = comm.rank();
  const std::vector<float> xv{1, 2, 3, 4, 5, 6};

  SECTION("all_gather_rows places this rank's rows at its rank, of contiguous and strided inputs") {
    const auto x = upload(host_t::from_vector({2, 3}, xv));
    const auto g = mscl::dist::all_gather_rows(comm, x, "test gather");
    REQUIRE(g.shape() == mscl::shape_t{4, 3});
    std::vector<float> expect(12, peer);
    for (std::size_t i = 0; i < 6; ++i) expect[std::size_t(r) * 6 + i] = xv[i];
    CHECK(max_abs_diff(g.to_vector(), expect) == 0);
    // a transposed view [3, 2] of the same storage: gathered in its logical (row-major) order
    const auto xt = x.view_as_strided({3, 2}, {1, 3}, x.offset());
    const auto gt = mscl::dist::all_gather_rows(comm, xt, "test gather (strided)");
    REQUIRE(gt.shape() == mscl::shape_t{6, 2});
    std::vector<float> expect_t(12, peer);
    const std::vector<float> xt_rows{1, 4, 2, 5, 3, 6};
    for (std::size_t i = 0; i < 6; ++i) expect_t[std::size_t(r) * 6 + i] = xt_rows[i];
    CHECK(max_abs_diff(gt.to_vector(), expect_t) == 0);
  }

  SECTION("broadcast_tensors: from this rank nothing changes, from the peer every element is the peer's") {
    auto a = upload(host_t::from_vector({3}, {7, 8, 9}));
    auto b = upload(host_t::from_vector({2, 2}, {-1, -2, -3, -4}));
    mscl::dist::broadcast_tensors(comm, std::vector<mscl::tensor<float, B>>{a, b}, r, "test broadcast (own)");
    CHECK(max_abs_diff(a.to_vector(), {7, 8, 9}) == 0);
    CHECK(max_abs_diff(b.to_vector(), {-1, -2, -3, -4}) == 0);
    mscl::dist::broadcast_tensors(comm, std::vector<mscl::tensor<float, B>>{a, b}, 1 - r, "test broadcast (peer)");
    CHECK(max_abs_diff(a.to_vector(), std::vector<float>(3, peer)) == 0);
    CHECK(max_abs_diff(b.to_vector(), std::vector<float>(4, peer)) == 0);
  }

  SECTION("gradient_buckets: every gradient becomes (own + peer) / 2, in shared buckets, with strided and missing gradients") {
    std::vector<mscl::tensor<float, B>> params{upload(host_t::zeros({3})), upload(host_t::zeros({2, 2})),
                                               upload(host_t::zeros({5})), upload(host_t::zeros({4}))};
    const std::vector<std::vector<float>> grads{{1, 2, 3}, {10, 20, 30, 40}, {}, {-1, -2, -3, -4}};
    for (std::size_t k = 0; k < params.size(); ++k) {
      if (grads[k].empty()) continue;  // parameter 2 got no gradient on this rank
      auto g = upload(host_t::from_vector(params[k].shape(), grads[k]));
      if (k == 1) g = upload(host_t::from_vector({2, 2}, {10, 30, 20, 40})).view_as_strided({2, 2}, {1, 2}, 0);
      params[k].set_grad(g);
    }
    // 8 floats per bucket, filled in reverse order: {p3}, {p2}, {p1, p0} (p0 at offset 4).
    mscl::dist::gradient_buckets<float, B> buckets(params, 8 * sizeof(float));
    REQUIRE(buckets.bucket_count() == 3);
    CHECK(buckets.bucket_elements(2) == 7);
    buckets.average(comm);
    for (std::size_t k = 0; k < params.size(); ++k) {
      INFO("parameter " << k);
      REQUIRE(params[k].grad().defined());
      std::vector<float> expect(std::size_t(params[k].numel()));
      for (std::size_t i = 0; i < expect.size(); ++i) expect[i] = ((grads[k].empty() ? 0.f : grads[k][i]) + peer) / 2;
      CHECK(max_abs_diff(params[k].grad().to_vector(), expect) <= 1e-6);
    }
  }
}

}  // namespace mscl_test
