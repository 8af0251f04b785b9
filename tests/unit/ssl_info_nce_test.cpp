// ssl::info_nce against an independent naive formulation (explicit loops over the logits,
// log-sum-exp in long double) with age weights and extra negatives, finite-difference gradient
// checks in double, accuracy, memory footprint and input checks.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>
#if defined(_OPENMP)
#include <omp.h>
#endif

#include <mscl/ops/linalg.hpp>
#include <mscl/ops/reduce.hpp>  // before loss.hpp, which uses reduce.hpp's split_around without including it
#include <mscl/ops/loss.hpp>
#include <mscl/ssl/info_nce.hpp>
#include <mscl/testing/gradient_check.hpp>

using namespace mscl;
using TD = tensor<double>;
using TF = tensor<float>;

namespace {
template <class T>
tensor<T> random_tensor(const shape_t& s, std::uint64_t seed, double lo = -1, double hi = 1) {
  tensor<T> t = tensor<T>::empty(s);
  generator g(seed);
  g.fill_uniform(t.data(), t.numel(), lo, hi);
  return t;
}
template <class T>
tensor<T> unit_rows(const shape_t& s, std::uint64_t seed) {  // random N(0,1) rows, L2-normalised
  tensor<T> t = tensor<T>::empty(s);
  generator g(seed);
  g.fill_normal(t.data(), t.numel(), 0.0, 1.0);
  const index_t n = s[0], d = s[1];
  for (index_t i = 0; i < n; ++i) {
    double ss = 0;
    for (index_t c = 0; c < d; ++c) ss += double(t.data()[i * d + c]) * double(t.data()[i * d + c]);
    for (index_t c = 0; c < d; ++c) t.data()[i * d + c] = T(double(t.data()[i * d + c]) / std::sqrt(ss));
  }
  return t;
}

struct naive_result {
  double loss = 0;
  index_t correct = 0;
};
// The definition, literally: logits_i = [q_i·k_i, w_n q_i·Q_n (n < K), q_i·e_m (m < M)] / τ;
// loss = mean_i (log Σ_j exp(logit_ij) − logit_i0); correct if argmax_j logit_ij = 0 (first on ties).
template <class T>
naive_result naive_info_nce(const tensor<T>& q, const tensor<T>& k, const tensor<T>& bank, const tensor<T>& w,
                            double tau, const tensor<T>& extra, index_t exclude_offset = -1) {
  const index_t n = q.shape()[0], d = q.shape()[1];
  const index_t K = bank.defined() ? bank.shape()[1] : 0, M = extra.defined() ? extra.shape()[0] : 0;
  naive_result r;
  long double total = 0;
  for (index_t i = 0; i < n; ++i) {
    std::vector<long double> logits;
    long double pos = 0;
    for (index_t c = 0; c < d; ++c) pos += (long double)q.at({i, c}) * k.at({i, c});
    logits.push_back(pos / tau);
    for (index_t j = 0; j < K; ++j) {
      long double dot = 0;
      for (index_t c = 0; c < d; ++c) dot += (long double)q.at({i, c}) * ((long double)w.at({j}) * bank.at({c, j}));
      logits.push_back(dot / tau);
    }
    for (index_t m = 0; m < M; ++m) {
      if (exclude_offset >= 0 && m == exclude_offset + i) continue;  // the query's own key
      long double dot = 0;
      for (index_t c = 0; c < d; ++c) dot += (long double)q.at({i, c}) * extra.at({m, c});
      logits.push_back(dot / tau);
    }
    long double mx = logits[0];
    std::size_t arg = 0;
    for (std::size_t j = 1; j < logits.size(); ++j)
      if (logits[j] > mx) {
        mx = logits[j];
        arg = j;
      }
    long double s = 0;
    for (auto l : logits) s += std::exp(l - mx);
    total += mx + std::log(s) - logits[0];
    r.correct += arg == 0 ? 1 : 0;
  }
  r.loss = double(total / n);
  return r;
}
void require_ok(const testing::gradient_check_result& r) {
  INFO(r.report);
  REQUIRE(r.ok);
}
}  // namespace

TEST_CASE("info_nce matches the naive definition (double, age weights, extra negatives)", "[ssl][info_nce]") {
  const index_t n = 5, d = 8, K = 37, M = 4;
  TD q = unit_rows<double>({n, d}, 1), k = unit_rows<double>({n, d}, 2);
  TD bank = random_tensor<double>({d, K}, 3), w = random_tensor<double>({K}, 4, 0.5, 1.0);
  TD extra = unit_rows<double>({M, d}, 5);
  for (double tau : {0.07, 0.5}) {
    auto got = ssl::info_nce(q, k, bank, w, tau, extra);
    auto ref = naive_info_nce(q, k, bank, w, tau, extra);
    REQUIRE(got.loss.shape() == shape_t{});
    REQUIRE(got.loss.item() == Approx(ref.loss).epsilon(1e-12));
    REQUIRE(got.correct == ref.correct);
    REQUIRE(got.accuracy == Approx(double(ref.correct) / n));
    REQUIRE(got.columns == 1 + K + M);
  }
  // Without weights (= all ones), without extra, without bank.
  TD ones = TD::ones({K});
  REQUIRE(ssl::info_nce(q, k, bank, TD(), 0.2).loss.item() ==
          Approx(naive_info_nce(q, k, bank, ones, 0.2, TD()).loss).epsilon(1e-12));
  REQUIRE(ssl::info_nce(q, k, TD(), TD(), 0.2, extra).loss.item() ==
          Approx(naive_info_nce(q, k, TD(), TD(), 0.2, extra).loss).epsilon(1e-12));
  // The weights matter: a different weight vector gives a different loss.
  REQUIRE(std::abs(ssl::info_nce(q, k, bank, w, 0.07).loss.item() - ssl::info_nce(q, k, bank, ones, 0.07).loss.item()) > 1e-3);
}

TEST_CASE("info_nce in float agrees with the double definition at MoCo scale", "[ssl][info_nce]") {
  const index_t n = 4, d = 128, K = 9000;  // > 2 GEMM chunks of 4096, the last one partial
  TF q = unit_rows<float>({n, d}, 11), k = unit_rows<float>({n, d}, 12);
  TF bank_rows = unit_rows<float>({K, d}, 13);
  TF bank = TF::empty({d, K});
  for (index_t j = 0; j < K; ++j)
    for (index_t c = 0; c < d; ++c) bank.data()[c * K + j] = bank_rows.data()[j * d + c];
  TF w = TF::empty({K});
  for (index_t j = 0; j < K; ++j) w.data()[j] = float(std::pow(0.99999, double(j % 512)));
  auto got = ssl::info_nce(q, k, bank, w, 0.07);
  auto ref = naive_info_nce(q, k, bank, w, 0.07, TF());
  REQUIRE(got.loss.item() == Approx(ref.loss).epsilon(1e-5));
}

TEST_CASE("info_nce results do not depend on the thread count", "[ssl][info_nce]") {
#if defined(_OPENMP)
  const index_t n = 6, d = 32, K = 9000, M = 6;
  TF q0 = unit_rows<float>({n, d}, 61), k = unit_rows<float>({n, d}, 62), e = unit_rows<float>({M, d}, 63);
  TF bank = random_tensor<float>({d, K}, 64), w = random_tensor<float>({K}, 65, 0.9, 1.0);
  auto run = [&](int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    TF q = q0.clone();
    q.set_requires_grad(true);
    auto r = ssl::info_nce(q, k, bank, w, 0.07, e);
    r.loss.backward();
    omp_set_num_threads(saved);
    std::vector<float> out = q.grad().to_vector();
    out.push_back(r.loss.item());
    return out;
  };
  REQUIRE(run(1) == run(2));
  REQUIRE(run(3) == run(2));
#else
  SUCCEED("built without OpenMP");
#endif
}

TEST_CASE("info_nce accuracy counts rows whose positive is the top logit", "[ssl][info_nce]") {
  // Rows 0, 2: positive equals the query (logit 1/τ, the maximum for unit vectors) → correct.
  // Row 1: positive is −q → wrong. Row 3: positive orthogonal, one bank column equals q → wrong.
  const index_t d = 4, K = 3;
  TD q = TD::from_vector({4, d}, {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1});
  TD k = TD::from_vector({4, d}, {1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0});
  TD bank = TD::from_vector({d, K}, {0, 0.1, 0, 0, 0, 0, 0.2, 0, 0, 0, 0, 1});
  auto r = ssl::info_nce(q, k, bank, TD(), 0.07);
  REQUIRE(r.correct == 2);
  REQUIRE(r.accuracy == Approx(0.5));
  REQUIRE(r.correct == naive_info_nce(q, k, bank, TD::ones({K}), 0.07, TD()).correct);
}

TEST_CASE("info_nce gradients: finite differences in double", "[ssl][info_nce][grad]") {
  const index_t n = 3, d = 5, K = 7, M = 2;
  TD q = random_tensor<double>({n, d}, 21), k = random_tensor<double>({n, d}, 22);
  TD bank = random_tensor<double>({d, K}, 23), w = random_tensor<double>({K}, 24, 0.3, 1.0);
  TD extra = random_tensor<double>({M, d}, 25);
  const double tau = 0.3;
  // q and k with grad, weighted bank.
  require_ok(testing::check_gradients<>(
      [&](const std::vector<TD>& v) { return ssl::info_nce(v[0], v[1], bank, w, tau).loss; }, {q, k}));
  // q, k, extra negatives with grad.
  require_ok(testing::check_gradients<>(
      [&](const std::vector<TD>& v) { return ssl::info_nce(v[0], v[1], bank, w, tau, v[2]).loss; }, {q, k, extra}));
  // Unweighted bank, q only (k constant as in MoCo).
  require_ok(testing::check_gradients<>(
      [&](const std::vector<TD>& v) { return ssl::info_nce(v[0], k, bank, TD(), tau).loss; }, {q}));
  // No bank at all.
  require_ok(testing::check_gradients<>(
      [&](const std::vector<TD>& v) { return ssl::info_nce(v[0], v[1], TD(), TD(), tau, v[2]).loss; }, {q, k, extra}));
  // Through l2_normalize, as the objective uses it (and with a non-unit upstream gradient).
  require_ok(testing::check_gradients<>(
      [&](const std::vector<TD>& v) {
        return ops::scale(ssl::info_nce(ops::l2_normalize(v[0], 1), k, bank, w, 0.07).loss, 2.5);
      },
      {q}));
}

TEST_CASE("info_nce gradient equals the composed matmul/cat/cross_entropy graph", "[ssl][info_nce][grad]") {
  const index_t n = 4, d = 6;
  for (index_t K : {9, 9000}) {  // one GEMM chunk; three chunks (4096, 4096, 808)
    TD q0 = random_tensor<double>({n, d}, 31), k = random_tensor<double>({n, d}, 32);
    TD bank = random_tensor<double>({d, K}, 33), w = random_tensor<double>({K}, 34, 0.5, 1.0);
    const double tau = 0.1;
    TD q1 = q0.clone(), q2 = q0.clone();
    q1.set_requires_grad(true);
    q2.set_requires_grad(true);
    ssl::info_nce(q1, k, bank, w, tau).loss.backward();
    // Composed: l_pos = rowsum(q ⊙ k), l_neg = q · (bank ⊙ w), logits = cat/τ, CE with label 0.
    TD wb = bank.clone();
    for (index_t c = 0; c < d; ++c)
      for (index_t j = 0; j < K; ++j) wb.data()[c * K + j] *= w.data()[j];
    TD lpos = ops::reshape(ops::sum(ops::mul(q2, k), 1), {n, 1});
    TD logits = ops::scale(ops::cat<double, cpu>({lpos, ops::matmul(q2, wb)}, 1), 1.0 / tau);
    ops::cross_entropy(logits, std::vector<index_t>(std::size_t(n), 0)).backward();
    const auto g1 = q1.grad().to_vector(), g2 = q2.grad().to_vector();
    for (std::size_t i = 0; i < g1.size(); ++i) REQUIRE(g1[i] == Approx(g2[i]).margin(1e-12));
  }
}

TEST_CASE("info_nce keeps one B×(1+K) buffer for backward", "[ssl][info_nce][memory]") {
  const index_t n = 8, d = 16, K = 65536;
  TF q = unit_rows<float>({n, d}, 41), k = unit_rows<float>({n, d}, 42);
  TF bank = random_tensor<float>({d, K}, 43), w = TF::ones({K});
  q.set_requires_grad(true);
  auto& alloc = caching_allocator::instance();
  const std::size_t before = alloc.stats().bytes_in_use;
  auto r = ssl::info_nce(q, k, bank, w, 0.07);
  const std::size_t held = alloc.stats().bytes_in_use - before;
  const std::size_t logits_bytes = caching_allocator::round_size(std::size_t(n * (K + 1)) * sizeof(float));
  CHECK(held >= logits_bytes);
  CHECK(held <= logits_bytes + 4096);  // + the scalar loss
  r.loss.backward();
  REQUIRE(q.grad().shape() == shape_t{n, d});
}

TEST_CASE("info_nce excludes each query's own key among the extra negatives, also at an offset (keys of all ranks)", "[ssl][info_nce]") {
  const index_t n = 4, d = 8, K = 11;
  TD q = unit_rows<double>({n, d}, 21), bank = random_tensor<double>({d, K}, 23), w = random_tensor<double>({K}, 24, 0.5, 1.0);
  TD all_keys = unit_rows<double>({3 * n, d}, 22);  // three "ranks" of n keys; this batch is rank 1
  TD k = ops::slice(all_keys, 0, n, 2 * n).clone();
  for (const index_t offset : {index_t(0), n, 2 * n}) {
    INFO("offset " << offset);
    TD own = offset == n ? k : ops::slice(all_keys, 0, offset, offset + n).clone();
    const auto got = ssl::info_nce(q, own, bank, w, 0.1, all_keys, true, offset);
    const auto ref = naive_info_nce(q, own, bank, w, 0.1, all_keys, offset);
    REQUIRE(got.loss.item() == Approx(ref.loss).epsilon(1e-12));
    REQUIRE(got.correct == ref.correct);
  }
  // The exclusion matters: without it the positive also appears among the negatives.
  REQUIRE(std::abs(ssl::info_nce(q, k, bank, w, 0.1, all_keys, true, n).loss.item() -
                   ssl::info_nce(q, k, bank, w, 0.1, all_keys).loss.item()) > 1e-3);
  // Gradients of q through the offset exclusion (finite differences).
  require_ok(testing::check_gradients<>(
      [&](const std::vector<TD>& v) { return ssl::info_nce(v[0], k, bank, w, 0.1, all_keys, true, n).loss; }, {q}));
  // Bad offsets name the range.
  REQUIRE_THROWS_AS(ssl::info_nce(q, k, bank, w, 0.1, all_keys, true, 2 * n + 1), shape_error);
  REQUIRE_THROWS_AS(ssl::info_nce(q, k, bank, w, 0.1, all_keys, true, -1), shape_error);
  REQUIRE_THROWS_AS(ssl::info_nce(q, k, bank, w, 0.1, all_keys, false, n), value_error);
}

TEST_CASE("info_nce checks its inputs", "[ssl][info_nce][errors]") {
  TD q = random_tensor<double>({3, 4}, 51), k = random_tensor<double>({3, 4}, 52), bank = random_tensor<double>({4, 6}, 53);
  REQUIRE_THROWS_AS(ssl::info_nce(q, random_tensor<double>({2, 4}, 1), bank, TD(), 0.07), shape_error);
  REQUIRE_THROWS_AS(ssl::info_nce(q, k, random_tensor<double>({5, 6}, 1), TD(), 0.07), shape_error);
  REQUIRE_THROWS_AS(ssl::info_nce(q, k, bank, TD::ones({5}), 0.07), shape_error);
  REQUIRE_THROWS_AS(ssl::info_nce(q, k, bank, TD(), 0.07, random_tensor<double>({2, 3}, 1)), shape_error);
  REQUIRE_THROWS_AS(ssl::info_nce(q, k, bank, TD(), 0.0), value_error);
  REQUIRE_THROWS_AS(ssl::info_nce(q, k, bank, TD(), -1.0), value_error);
  TD gbank = bank.clone();
  gbank.set_requires_grad(true);
  REQUIRE_THROWS_AS(ssl::info_nce(q, k, gbank, TD(), 0.07), value_error);
  {
    no_grad guard;  // under no_grad a bank that requires grad is just data
    REQUIRE_NOTHROW(ssl::info_nce(q, k, gbank, TD(), 0.07));
  }
}
