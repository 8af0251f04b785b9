// Tensor geometry, views, allocator, RNG and the autograd engine itself.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mscl/mscl.hpp>
#include <mscl/testing/bfloat16_reference.hpp>
#include <thread>

using namespace mscl;

TEST_CASE("tensor factories, strides and element access", "[core]") {
  auto t = tensor<float>::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
  REQUIRE(t.shape() == shape_t{2, 3});
  REQUIRE(t.strides() == shape_t{3, 1});
  REQUIRE(t.is_contiguous());
  REQUIRE(t.at({1, 2}) == 6);
  auto tt = ops::transpose(t, 0, 1);
  REQUIRE_FALSE(tt.is_contiguous());
  REQUIRE(tt.to_vector() == std::vector<float>{1, 4, 2, 5, 3, 6});
  REQUIRE(tt.shares_storage_with(t));
  auto c = tt.clone();
  REQUIRE(c.is_contiguous());
  REQUIRE_FALSE(c.shares_storage_with(t));
  REQUIRE_THROWS_AS(t.at({2, 0}), shape_error);
  REQUIRE_THROWS_AS(tensor<float>::from_vector({2, 2}, {1, 2, 3}), shape_error);
  REQUIRE_THROWS_AS(tensor<float>().shape(), value_error);
}

TEST_CASE("slice and cat are views/copies with correct values", "[core]") {
  auto t = tensor<double>::from_vector({2, 4}, {0, 1, 2, 3, 4, 5, 6, 7});
  auto s = ops::slice(t, 1, 1, 4, 2);
  REQUIRE(s.shape() == shape_t{2, 2});
  REQUIRE(s.to_vector() == std::vector<double>{1, 3, 5, 7});
  auto c = ops::cat<double, cpu>({t, s}, 1);
  REQUIRE(c.shape() == shape_t{2, 6});
  REQUIRE(c.to_vector() == std::vector<double>{0, 1, 2, 3, 1, 3, 4, 5, 6, 7, 5, 7});
  try {
    ops::cat<double, cpu>({t, tensor<double>::zeros({3, 4})}, 1);
    FAIL("cat accepted mismatched shapes");
  } catch (const shape_error& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("[2, 4]") && Catch::Contains("[3, 4]"));
  }
}

TEST_CASE("strided copies (clone, copy_from into views) match index arithmetic on random views", "[core]") {
  // Views made by permutes, steps, slices, size-1 axes and broadcasting; values read and written
  // through explicit offset = Σ index·stride, independently of the run-based copy.
  generator gen(91);
  for (int trial = 0; trial < 300; ++trial) {
    const std::size_t rank = std::size_t(gen.randint(1, 5));
    shape_t base_shape(rank);
    for (auto& d : base_shape) d = gen.randint(1, 6);
    shape_t storage_shape = base_shape;
    for (auto& d : storage_shape) d += gen.randint(0, 3);  // room for slices with an offset
    auto storage = tensor<float>::empty(storage_shape);
    gen.fill_uniform(storage.data(), storage.numel(), -1.0, 1.0);
    // The view: a random sub-box of the storage, some axes stepped, axes permuted, maybe one broadcast.
    shape_t st = storage.strides(), shape = base_shape, strides(rank);
    index_t offset = 0;
    for (std::size_t d = 0; d < rank; ++d) {
      const index_t step = (storage_shape[d] >= 2 * shape[d] && gen.randint(0, 3) == 0) ? 2 : 1;
      const index_t room = storage_shape[d] - (shape[d] - 1) * step - 1;
      const index_t start = room > 0 ? gen.randint(0, room) : 0;
      offset += start * st[d];
      strides[d] = st[d] * step;
    }
    if (gen.randint(0, 4) == 0) strides[std::size_t(gen.randint(0, index_t(rank) - 1))] = 0;  // broadcast
    std::vector<std::size_t> order(rank);
    for (std::size_t d = 0; d < rank; ++d) order[d] = d;
    if (gen.randint(0, 1) == 1)
      for (std::size_t d = rank; d > 1; --d) std::swap(order[d - 1], order[std::size_t(gen.randint(0, index_t(d) - 1))]);
    shape_t pshape(rank), pstrides(rank);
    for (std::size_t d = 0; d < rank; ++d) pshape[d] = shape[order[d]], pstrides[d] = strides[order[d]];
    const tensor<float> view = storage.view_as_strided(pshape, pstrides, offset);
    // Reference: row-major enumeration by explicit index arithmetic.
    std::vector<index_t> offsets;
    std::vector<index_t> idx(rank, 0);
    for (index_t i = 0; i < view.numel(); ++i) {
      index_t off = offset;
      for (std::size_t d = 0; d < rank; ++d) off += idx[d] * pstrides[d];
      offsets.push_back(off);
      for (std::size_t d = rank; d-- > 0;) {
        if (++idx[d] < pshape[d]) break;
        idx[d] = 0;
      }
    }
    const tensor<float> c = view.clone();
    REQUIRE(c.is_contiguous());
    INFO("shape " << to_string(pshape) << " strides " << to_string(pstrides) << " offset " << offset);
    for (std::size_t i = 0; i < offsets.size(); ++i) REQUIRE(c.data()[i] == storage.data()[offsets[i]]);
    // Writing through a (non-broadcast) view lands at exactly those offsets, nowhere else.
    if (std::find(pstrides.begin(), pstrides.end(), 0) != pstrides.end()) continue;
    auto target = tensor<float>::zeros(storage_shape);
    tensor<float> tview = target.view_as_strided(pshape, pstrides, offset);
    auto src = tensor<float>::empty(pshape);
    for (index_t i = 0; i < src.numel(); ++i) src.data()[i] = float(i + 1);
    tview.copy_from(src);
    std::vector<float> expected(std::size_t(target.numel()), 0.f);
    for (std::size_t i = 0; i < offsets.size(); ++i) expected[std::size_t(offsets[i])] = float(i + 1);
    REQUIRE(target.to_vector() == expected);
  }
}

TEST_CASE("caching allocator reuses freed blocks", "[core]") {
  auto& a = caching_allocator::instance();
  const auto before = a.stats();
  { auto t = tensor<float>::empty({1 << 20}); }
  const auto mid = a.stats();
  { auto t = tensor<float>::empty({1 << 20}); }
  const auto after = a.stats();
  REQUIRE(after.os_allocations == mid.os_allocations);  // the second took the cached block
  REQUIRE(after.cache_hits > before.cache_hits);
  REQUIRE(caching_allocator::round_size(1) == 512);
  REQUIRE(caching_allocator::round_size((1u << 20) + 1) >= (1u << 20) + 1);
}

TEST_CASE("Philox generator: seeded, counter-based, independent of thread count", "[core][rng]") {
  // Known-answer: Philox4x32-10 with zero key and counter (Random123 test vector).
  const auto w = detail::philox4x32_10({0, 0, 0, 0}, {0, 0});
  REQUIRE(w[0] == 0x6627e8d5u);
  REQUIRE(w[1] == 0xe169c58du);
  REQUIRE(w[2] == 0xbc57ac4cu);
  REQUIRE(w[3] == 0x9b00dbd8u);

  std::vector<float> a(200000), b(200000);
  generator g1(42), g2(42);
  g1.fill_normal(a.data(), index_t(a.size()), 0.0, 1.0);
  g2.fill_normal(b.data(), index_t(b.size()), 0.0, 1.0);
  REQUIRE(a == b);
  double mean = 0, var = 0;
  for (float v : a) mean += v;
  mean /= double(a.size());
  for (float v : a) var += (v - mean) * (v - mean);
  var /= double(a.size());
  REQUIRE(std::abs(mean) < 0.01);
  REQUIRE(std::abs(var - 1.0) < 0.02);
  generator g3(43);
  g3.fill_normal(b.data(), index_t(b.size()), 0.0, 1.0);
  REQUIRE(a != b);
}

TEST_CASE("autograd: diamond graph accumulates, leaves get grads, graph is consumed", "[autograd]") {
  auto x = tensor<double>::from_vector({3}, {1, -2, 3}).set_requires_grad();
  auto y = ops::mul(x, x);        // x²
  auto z = ops::add(y, x);        // x² + x
  auto w = ops::add(z, y);        // 2x² + x
  auto l = ops::sum(w);
  l.backward();
  REQUIRE(x.grad().to_vector() == std::vector<double>{5, -7, 13});  // 4x + 1
  REQUIRE_THROWS_AS(l.backward(), value_error);                    // consumed
  {
    no_grad guard;
    auto q = ops::mul(x, x);
    REQUIRE_FALSE(q.requires_grad());
  }
  // Gradient accumulation across two passes, and aliasing safety: add() hands the same
  // gradient to both inputs; scaling one leaf's grad must not change the other's.
  auto a = tensor<double>::from_vector({2}, {1, 2}).set_requires_grad();
  auto b = tensor<double>::from_vector({2}, {3, 4}).set_requires_grad();
  ops::sum(ops::add(a, b)).backward();
  a.grad().data()[0] = 100;
  REQUIRE(b.grad().to_vector() == std::vector<double>{1, 1});
  ops::sum(ops::add(a, b)).backward();
  REQUIRE(b.grad().to_vector() == std::vector<double>{2, 2});
}

// The host bf16 rounding that the CUDA bf16 autocast tests build their references from.
// Expected values are derived by hand from the format (8 significant bits: the spacing of bf16
// values in [1, 2) is 2^-7), and, where Debian's PyTorch is importable, every result is also
// compared with torch's own float -> bfloat16 -> float conversion.
TEST_CASE("round_to_bfloat16: nearest, ties to even, specials, and torch agrees", "[core][bf16]") {
  using mscl::testing::round_to_bfloat16;
  using mscl::testing::is_bfloat16_value;
  const float one = 1.0f, step = std::ldexp(1.0f, -7), half = std::ldexp(1.0f, -8);
  CHECK(round_to_bfloat16(one) == one);
  CHECK(round_to_bfloat16(one + step) == one + step);                                        // exact
  CHECK(round_to_bfloat16(one + half) == one);                                               // tie -> even (down)
  CHECK(round_to_bfloat16(one + 3 * half) == one + 2 * step);                                // tie -> even (up)
  CHECK(round_to_bfloat16(one + half + std::ldexp(1.0f, -20)) == one + step);                // above the tie
  CHECK(round_to_bfloat16(one + half - std::ldexp(1.0f, -20)) == one);                       // below the tie
  CHECK(round_to_bfloat16(-(one + half + std::ldexp(1.0f, -20))) == -(one + step));          // sign kept
  CHECK(round_to_bfloat16(std::numeric_limits<float>::max()) == std::numeric_limits<float>::infinity());
  const float bf16_max = std::ldexp(2.0f - step, 127);
  CHECK(round_to_bfloat16(bf16_max) == bf16_max);
  CHECK(round_to_bfloat16(std::numeric_limits<float>::infinity()) == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(round_to_bfloat16(std::numeric_limits<float>::quiet_NaN())));
  CHECK(round_to_bfloat16(std::ldexp(1.0f, -149)) == 0.0f);                                  // smallest subnormal
  CHECK(round_to_bfloat16(std::ldexp(1.0f, -133)) == std::ldexp(1.0f, -133));                // a bf16 subnormal

  // Random floats over many binades: the result is a bf16 value within half a spacing of x.
  mscl::generator gen(17);
  std::vector<float> values(20000);
  gen.fill_normal(values.data(), index_t(values.size()), 0, 1);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = std::ldexp(values[i], int(i % 200) - 100);
  values.push_back(std::numeric_limits<float>::max());
  values.push_back(-std::numeric_limits<float>::infinity());
  values.push_back(std::ldexp(1.0f, -149));
  values.push_back(one + half);
  values.push_back(one + 3 * half);
  std::size_t bad = 0;
  for (float x : values) {
    const float r = round_to_bfloat16(x);
    if (!std::isfinite(x) || !std::isfinite(r)) continue;
    const int e = std::ilogb(x == 0 ? 1.0f : x);
    const double spacing = std::ldexp(1.0, std::max(e, -126) - 7);
    if (!is_bfloat16_value(r) || std::fabs(double(r) - double(x)) > spacing / 2) ++bad;
  }
  CHECK(bad == 0);

  if (std::system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0) {
    WARN("torch not importable: the comparison with torch's bfloat16 conversion is skipped");
    return;
  }
  const auto dir = std::filesystem::temp_directory_path() / ("mscl_bf16_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream f(dir / "in.bin", std::ios::binary);
    f.write(reinterpret_cast<const char*>(values.data()), std::streamsize(values.size() * sizeof(float)));
  }
  const std::string cmd = "/usr/bin/python3 -c 'import sys, numpy, torch; a = numpy.fromfile(sys.argv[1], "
                          "dtype=numpy.float32); torch.from_numpy(a).to(torch.bfloat16).float().numpy()"
                          ".tofile(sys.argv[2])' " + (dir / "in.bin").string() + " " + (dir / "out.bin").string();
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::vector<float> torch_values(values.size());
  {
    std::ifstream f(dir / "out.bin", std::ios::binary);
    f.read(reinterpret_cast<char*>(torch_values.data()), std::streamsize(torch_values.size() * sizeof(float)));
    REQUIRE(f.gcount() == std::streamsize(torch_values.size() * sizeof(float)));
  }
  std::filesystem::remove_all(dir);
  std::size_t differ = 0, first = 0;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const float r = round_to_bfloat16(values[i]);
    const bool same = std::isnan(r) ? std::isnan(torch_values[i]) : r == torch_values[i];
    if (!same && differ++ == 0) first = i;
  }
  INFO("first difference at " << first << ": x = " << values[first] << ", mscl " << round_to_bfloat16(values[first])
                              << ", torch " << torch_values[first]);
  CHECK(differ == 0);
}
