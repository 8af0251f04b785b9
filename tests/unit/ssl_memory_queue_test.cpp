// ssl::memory_queue: initialisation, FIFO order, pointer, ages and age-decay weights,
// wrap-around, copy-on-write against a live info_nce graph, checkpoint state round trips.
#include <catch2/catch.hpp>

#include <cmath>

#include <mscl/ssl/info_nce.hpp>
#include <mscl/ssl/memory_queue.hpp>

using namespace mscl;
using TF = tensor<float>;
using TD = tensor<double>;

namespace {
// keys b×d with value = base + 10·row + 0.01·col, easy to recognise in the buffer.
TF tagged_keys(index_t b, index_t d, float base) {
  TF k = TF::empty({b, d});
  for (index_t i = 0; i < b; ++i)
    for (index_t c = 0; c < d; ++c) k.data()[i * d + c] = base + 10.0f * float(i) + 0.01f * float(c);
  return k;
}
void require_column(const TF& buf, index_t col, const TF& keys, index_t row) {
  const index_t d = buf.shape()[0];
  for (index_t c = 0; c < d; ++c) REQUIRE(buf.at({c, col}) == keys.at({row, c}));
}
}  // namespace

TEST_CASE("memory_queue initialisation: unit columns, seeded, ages 0", "[ssl][queue]") {
  generator g1(7), g2(7), g3(8);
  ssl::memory_queue<float> a(16, 64, g1), b(16, 64, g2), c(16, 64, g3);
  REQUIRE(a.dim() == 16);
  REQUIRE(a.size() == 64);
  REQUIRE(a.pointer() == 0);
  REQUIRE(a.buffer().to_vector() == b.buffer().to_vector());
  REQUIRE(a.buffer().to_vector() != c.buffer().to_vector());
  for (index_t j = 0; j < 64; ++j) {
    double s = 0;
    for (index_t i = 0; i < 16; ++i) s += double(a.buffer().at({i, j})) * a.buffer().at({i, j});
    REQUIRE(s == Approx(1.0).epsilon(1e-6));
  }
  for (auto age : a.ages()) REQUIRE(age == 0);
  // Not all-equal columns: the N(0,1) draw went through (mean |x| of a unit 16-vector ~ 0.2).
  REQUIRE(std::abs(a.buffer().at({0, 0}) - a.buffer().at({0, 1})) > 0);
}

TEST_CASE("memory_queue enqueue: FIFO order, pointer and ages", "[ssl][queue]") {
  generator gen(1);
  const index_t D = 3, K = 12, Bsz = 4;
  ssl::memory_queue<float> q(D, K, gen);
  const TF init = q.buffer().clone();
  TF k1 = tagged_keys(Bsz, D, 100), k2 = tagged_keys(Bsz, D, 200), k3 = tagged_keys(Bsz, D, 300);

  q.enqueue(k1);
  REQUIRE(q.pointer() == 4);
  for (index_t i = 0; i < 4; ++i) require_column(q.buffer(), i, k1, i);
  for (index_t j = 4; j < K; ++j)
    for (index_t c = 0; c < D; ++c) REQUIRE(q.buffer().at({c, j}) == init.at({c, j}));
  REQUIRE(q.ages() == std::vector<std::int64_t>{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1});  // initial slots 0 → 1 too

  q.enqueue(k2);
  REQUIRE(q.pointer() == 8);
  for (index_t i = 0; i < 4; ++i) {
    require_column(q.buffer(), i, k1, i);
    require_column(q.buffer(), 4 + i, k2, i);
  }
  REQUIRE(q.ages() == std::vector<std::int64_t>{2, 2, 2, 2, 1, 1, 1, 1, 2, 2, 2, 2});

  q.enqueue(k3);
  REQUIRE(q.pointer() == 0);  // full cycle
  for (index_t i = 0; i < 4; ++i) {
    require_column(q.buffer(), i, k1, i);
    require_column(q.buffer(), 4 + i, k2, i);
    require_column(q.buffer(), 8 + i, k3, i);
  }
  REQUIRE(q.ages() == std::vector<std::int64_t>{3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1});

  // A fourth batch overwrites the oldest (k1) slots.
  TF k4 = tagged_keys(Bsz, D, 400);
  q.enqueue(k4);
  REQUIRE(q.pointer() == 4);
  for (index_t i = 0; i < 4; ++i) require_column(q.buffer(), i, k4, i);
  REQUIRE(q.ages() == std::vector<std::int64_t>{1, 1, 1, 1, 3, 3, 3, 3, 2, 2, 2, 2});

  // Age-decay weights, and decay 1 → ones.
  const double decay = 0.9;
  TF w = q.weights(decay);
  REQUIRE(w.shape() == shape_t{K});
  for (index_t j = 0; j < K; ++j) REQUIRE(w.at({j}) == Approx(std::pow(decay, double(q.ages()[std::size_t(j)]))));
  REQUIRE(q.weights(1.0).to_vector() == std::vector<float>(std::size_t(K), 1.0f));
  REQUIRE(q.weights().at({4}) == Approx(std::pow(0.99999, 3.0)));
  auto snap = q.snapshot(decay);
  REQUIRE(snap.weights.to_vector() == w.to_vector());
  REQUIRE_FALSE(q.snapshot(1.0).weights.defined());
  REQUIRE_THROWS_AS(q.weights(0.0), value_error);
  REQUIRE_THROWS_AS(q.weights(1.5), value_error);
}

TEST_CASE("memory_queue wraps batches that do not divide K, and checks shapes", "[ssl][queue]") {
  generator gen(2);
  ssl::memory_queue<float> q(2, 5, gen);
  TF a = tagged_keys(3, 2, 100), b = tagged_keys(3, 2, 200);
  q.enqueue(a);
  q.enqueue(b);  // columns 3, 4, 0
  REQUIRE(q.pointer() == 1);
  require_column(q.buffer(), 0, b, 2);
  require_column(q.buffer(), 1, a, 1);
  require_column(q.buffer(), 2, a, 2);
  require_column(q.buffer(), 3, b, 0);
  require_column(q.buffer(), 4, b, 1);
  REQUIRE(q.ages() == std::vector<std::int64_t>{1, 2, 2, 1, 1});
  REQUIRE_THROWS_AS(q.enqueue(tagged_keys(6, 2, 0)), value_error);  // B > K
  REQUIRE_THROWS_AS(q.enqueue(tagged_keys(2, 3, 0)), shape_error);  // wrong D
  REQUIRE_THROWS_AS(q.enqueue(TF::zeros({2})), shape_error);
  REQUIRE_THROWS_AS(ssl::memory_queue<float>(0, 4, gen), value_error);
}

TEST_CASE("memory_queue copy-on-write keeps the bank of a live graph intact", "[ssl][queue][info_nce]") {
  generator gen(3);
  const index_t D = 6, K = 16, Bsz = 4;
  ssl::memory_queue<double> queue(D, K, gen);
  TD q = TD::empty({Bsz, D}), k = TD::empty({Bsz, D});
  gen.fill_normal(q.data(), q.numel(), 0, 1);
  gen.fill_normal(k.data(), k.numel(), 0, 1);

  // Reference: gradient without any enqueue in between.
  TD q_ref = q.clone();
  q_ref.set_requires_grad(true);
  auto snap0 = queue.snapshot();
  ssl::info_nce(q_ref, k, snap0.bank, snap0.weights, 0.07).loss.backward();
  snap0 = {};

  // Same loss, but the queue is written (with the keys) between forward and backward.
  TD q2 = q.clone();
  q2.set_requires_grad(true);
  const TD before = queue.buffer().clone();
  auto snap = queue.snapshot();
  auto r = ssl::info_nce(q2, k, snap.bank, snap.weights, 0.07);
  snap = {};  // only the graph holds the bank now
  queue.enqueue(k);
  for (index_t c = 0; c < D; ++c) REQUIRE(queue.buffer().at({c, 0}) == k.at({0, c}));  // the queue did change
  r.loss.backward();
  REQUIRE(q2.grad().to_vector() == q_ref.grad().to_vector());
  // Once the graph is gone, the next enqueue writes in place (no copy).
  const double* data_before = queue.buffer().data();
  queue.enqueue(k);
  REQUIRE(queue.buffer().data() == data_before);
  (void)before;
}

TEST_CASE("memory_queue state round trips (struct and state-dict entries)", "[ssl][queue][checkpoint]") {
  generator gen(4);
  ssl::memory_queue<float> a(4, 8, gen), b(4, 8, gen);
  a.enqueue(tagged_keys(2, 4, 1));
  a.enqueue(tagged_keys(2, 4, 2));
  auto st = a.state();
  REQUIRE(st.pointer == 4);
  REQUIRE(st.ages == a.ages());
  b.load_state(st);
  REQUIRE(b.buffer().to_vector() == a.buffer().to_vector());
  REQUIRE(b.ages() == a.ages());
  REQUIRE(b.pointer() == a.pointer());
  // The state is a deep copy: changing the queue later does not change it.
  a.enqueue(tagged_keys(2, 4, 3));
  REQUIRE(st.pointer == 4);
  REQUIRE(st.buffer.to_vector() != a.buffer().to_vector());

  // State-dict entries.
  auto entries = a.state_dict("rgb_");
  REQUIRE(entries.size() == 3);
  REQUIRE(entries[0].name == "rgb_queue");
  REQUIRE(entries[1].name == "rgb_queue_age");
  REQUIRE(entries[1].is_integer);
  REQUIRE(entries[2].name == "rgb_queue_ptr");
  ssl::memory_queue<float> c(4, 8, gen);
  c.load_state_dict([&](const std::string& name) {
    for (auto& e : entries)
      if (e.name == name) return e.value;
    return TF();
  }, "rgb_");
  REQUIRE(c.buffer().to_vector() == a.buffer().to_vector());
  REQUIRE(c.ages() == a.ages());
  REQUIRE(c.pointer() == a.pointer());
  // Resumed queue continues identically.
  a.enqueue(tagged_keys(2, 4, 9));
  c.enqueue(tagged_keys(2, 4, 9));
  REQUIRE(c.buffer().to_vector() == a.buffer().to_vector());
  REQUIRE(c.ages() == a.ages());

  auto bad = st;
  bad.pointer = 8;
  REQUIRE_THROWS_AS(b.load_state(bad), value_error);
  bad = st;
  bad.ages.pop_back();
  REQUIRE_THROWS_AS(b.load_state(bad), shape_error);
  REQUIRE_THROWS_AS(c.load_state_dict([](const std::string&) { return TF(); }), io_error);
}
