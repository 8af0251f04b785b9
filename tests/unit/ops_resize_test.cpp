// Tests for ops/resize.hpp and backend/cpu/resize.hpp: forward values and gradients against naive
// per-output loops written from the interpolation formulas (independent of the kernels' axis
// tables), finite-difference gradients in double, agreement with PyTorch's F.interpolate (when
// /usr/bin/python3 has torch; float32 included, where PyTorch's float index arithmetic shows),
// thread-count independence, and bad input.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <mscl/core/rng.hpp>
#include <mscl/ops/resize.hpp>
#include <mscl/ops/shape_ops.hpp>
#include <mscl/testing/gradient_check.hpp>

using namespace mscl;
using ops::resize3d_size;

namespace {

template <class T>
tensor<T> randn(const shape_t& shape, std::uint64_t seed) {
  std::vector<double> v(std::size_t(numel_of(shape)));
  generator gen(seed);
  gen.fill_normal(v.data(), index_t(v.size()), 0.0, 1.0);
  return tensor<T>::from_vector(shape, std::vector<T>(v.begin(), v.end()));
}

struct cfg {
  shape_t in;          // n, c, t, h, w
  resize3d_size out;   // t, h, w
};

// Exact 2x, non-integer up, down, identity, size-1 axes in both directions, mixed up/down per axis.
const std::vector<cfg> cfgs = {
    {{2, 3, 3, 5, 4}, {6, 10, 8}}, {{2, 3, 3, 5, 4}, {7, 9, 11}}, {{2, 3, 5, 7, 8}, {2, 3, 5}},
    {{1, 2, 4, 6, 6}, {4, 6, 6}},  {{2, 2, 1, 7, 1}, {3, 1, 4}},  {{1, 3, 4, 3, 9}, {2, 8, 4}},
    {{1, 1, 1, 7, 7}, {1, 28, 28}}};

std::string cfg_string(const cfg& c) { return to_string(c.in) + " -> " + ops::detail::resize_size_string(c.out); }

// ---------------------------------------------------------------- naive references
// Each output element as a list of (flat input index within the plane, weight); forward sums
// weight·x, backward scatters weight·gy. Written from the formulas in exact rational / double
// arithmetic (the nearest rule agrees with PyTorch's float rule for every size used here; the
// one place where they differ has its own test below).
using taps = std::vector<std::pair<index_t, double>>;

std::vector<std::pair<index_t, double>> axis_nearest(index_t in, index_t out, index_t d) {
  return {{std::min(d * in / out, in - 1), 1.0}};
}
std::vector<std::pair<index_t, double>> axis_linear(index_t in, index_t out, index_t d, bool align) {
  double src;
  if (align) src = out > 1 ? double(d) * double(in - 1) / double(out - 1) : 0.0;
  else src = std::max((double(d) + 0.5) * double(in) / double(out) - 0.5, 0.0);
  const index_t i0 = index_t(std::floor(src));
  const index_t i1 = std::min(i0 + 1, in - 1);
  const double l1 = src - double(i0);
  return {{i0, 1.0 - l1}, {i1, l1}};
}

enum class mode { nearest, linear, linear_align };

std::vector<taps> naive_taps(const shape_t& in, const resize3d_size& out, mode m) {
  auto axis = [m](index_t i, index_t o, index_t d) {
    return m == mode::nearest ? axis_nearest(i, o, d) : axis_linear(i, o, d, m == mode::linear_align);
  };
  std::vector<taps> r;
  for (index_t a = 0; a < out[0]; ++a)
    for (index_t b = 0; b < out[1]; ++b)
      for (index_t c = 0; c < out[2]; ++c) {
        taps t;
        for (auto [ti, tw] : axis(in[2], out[0], a))
          for (auto [hi, hw] : axis(in[3], out[1], b))
            for (auto [wi, ww] : axis(in[4], out[2], c)) t.push_back({(ti * in[3] + hi) * in[4] + wi, tw * hw * ww});
        r.push_back(t);
      }
  return r;
}

std::vector<double> naive_forward(const std::vector<double>& x, const shape_t& in, const resize3d_size& out, mode m) {
  const auto tp = naive_taps(in, out, m);
  const index_t planes = in[0] * in[1], ip = in[2] * in[3] * in[4];
  std::vector<double> y;
  for (index_t q = 0; q < planes; ++q)
    for (const auto& t : tp) {
      double s = 0;
      for (auto [j, w] : t) s += w * x[std::size_t(q * ip + j)];
      y.push_back(s);
    }
  return y;
}

std::vector<double> naive_backward(const std::vector<double>& gy, const shape_t& in, const resize3d_size& out, mode m) {
  const auto tp = naive_taps(in, out, m);
  const index_t planes = in[0] * in[1], ip = in[2] * in[3] * in[4], op = index_t(tp.size());
  std::vector<double> gx(std::size_t(planes * ip), 0.0);
  for (index_t q = 0; q < planes; ++q)
    for (index_t o = 0; o < op; ++o)
      for (auto [j, w] : tp[std::size_t(o)]) gx[std::size_t(q * ip + j)] += w * gy[std::size_t(q * op + o)];
  return gx;
}

template <class T>
tensor<T> run(const tensor<T>& x, const resize3d_size& s, mode m) {
  if (m == mode::nearest) return ops::interpolate_nearest3d(x, s);
  return ops::interpolate_trilinear3d(x, s, m == mode::linear_align);
}

template <class T>
double max_abs_diff(const std::vector<T>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - b[i]));
  return m;
}

template <class T>
std::vector<double> as_double(const std::vector<T>& v) { return std::vector<double>(v.begin(), v.end()); }

// ---------------------------------------------------------------- PyTorch reference runner
bool torch_available() {
  static const bool ok = std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
  return ok;
}

struct torch_case {
  std::filesystem::path dir;
  nlohmann::json spec;
  std::vector<std::pair<std::string, std::vector<double>>> expected;
  double tol = 0;
  torch_case(const std::string& name, const std::string& op, nlohmann::json params, const std::string& dtype, double tol_)
      : tol(tol_) {
    dir = std::filesystem::path(MSCL_BINARY_DIR) / "tests" / "torch_ref_resize" / name;
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    spec["op"] = op;
    spec["dtype"] = dtype;
    spec["params"] = std::move(params);
    spec["inputs"] = nlohmann::json::object();
  }
  void input(const std::string& name, const std::vector<double>& v, const shape_t& shape) {
    std::ofstream f(dir / (name + ".bin"), std::ios::binary);
    f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(double)));
    spec["inputs"][name] = shape;
  }
  void expect(const std::string& name, std::vector<double> v) { expected.push_back({name, std::move(v)}); }
  std::vector<double> read(const std::string& name) const {
    std::ifstream f(dir / (name + ".bin"), std::ios::binary | std::ios::ate);
    REQUIRE(f.good());
    const auto bytes = std::size_t(f.tellg());
    std::vector<double> v(bytes / sizeof(double));
    f.seekg(0);
    f.read(reinterpret_cast<char*>(v.data()), std::streamsize(bytes));
    return v;
  }
};

void check_against_torch(const std::vector<torch_case>& cases) {
  std::string cmd = std::string("/usr/bin/python3 ") + MSCL_SOURCE_DIR + "/scripts/torch_ref_resize.py";
  for (const auto& c : cases) {
    std::ofstream(c.dir / "case.json") << c.spec.dump();
    cmd += " " + c.dir.string();
  }
  REQUIRE(std::system(cmd.c_str()) == 0);
  for (const auto& c : cases)
    for (const auto& [name, mine] : c.expected) {
      CAPTURE(c.dir.filename().string(), name);
      CHECK(max_abs_diff(mine, c.read(name)) <= c.tol);
    }
}

/// Adds a forward+backward case of op m on x (values as T) to `cases`.
template <class T>
void add_torch_case(std::vector<torch_case>& cases, const std::string& name, const shape_t& in,
                    const resize3d_size& out, mode m, std::uint64_t seed, double tol) {
  nlohmann::json params;
  params["size"] = std::vector<index_t>(out.begin(), out.end());
  if (m != mode::nearest) params["align_corners"] = m == mode::linear_align;
  torch_case c(name, m == mode::nearest ? "nearest" : "trilinear", params,
               std::is_same_v<T, float> ? "float32" : "float64", tol);
  auto x = randn<T>(in, seed).set_requires_grad();
  auto y = run(x, out, m);
  const auto g = randn<T>(y.shape(), seed + 1);
  y.backward(g);
  c.input("x", as_double(x.to_vector()), in);
  c.input("dy", as_double(g.to_vector()), y.shape());
  c.expect("out", as_double(y.to_vector()));
  c.expect("grad_x", as_double(x.grad().to_vector()));
  cases.push_back(std::move(c));
}

}  // namespace

// ====================================================================== naive loops

TEMPLATE_TEST_CASE("3-D resize forward matches naive loops (nearest, trilinear, align_corners)", "[ops][resize]",
                   float, double) {
  using T = TestType;
  const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-14;
  for (const auto& c : cfgs)
    for (mode m : {mode::nearest, mode::linear, mode::linear_align}) {
      CAPTURE(cfg_string(c), int(m));
      const auto x = randn<T>(c.in, 11);
      const auto y = run(x, c.out, m);
      REQUIRE(y.shape() == shape_t{c.in[0], c.in[1], c.out[0], c.out[1], c.out[2]});
      CHECK(max_abs_diff(y.to_vector(), naive_forward(as_double(x.to_vector()), c.in, c.out, m)) <= tol);
    }
}

TEMPLATE_TEST_CASE("3-D resize backward is the naive adjoint scatter", "[ops][resize]", float, double) {
  using T = TestType;
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-13;
  for (const auto& c : cfgs)
    for (mode m : {mode::nearest, mode::linear, mode::linear_align}) {
      CAPTURE(cfg_string(c), int(m));
      auto x = randn<T>(c.in, 12).set_requires_grad();
      const auto y = run(x, c.out, m);
      const auto g = randn<T>(y.shape(), 13);
      y.backward(g);
      REQUIRE(x.grad().shape() == c.in);
      CHECK(max_abs_diff(x.grad().to_vector(), naive_backward(as_double(g.to_vector()), c.in, c.out, m)) <= tol);
    }
}

TEST_CASE("trilinear resize reproduces known values", "[ops][resize]") {
  // 1-D along w: [0, 1] -> 4 outputs. align_corners=false: src = (d+0.5)/2 - 0.5 = -0.25 (->0),
  // 0.25, 0.75, 1.25 (i0=1 at the border, i1 clamped) -> 0, 0.25, 0.75, 1.
  auto x = tensor<double>::from_vector({1, 1, 1, 1, 2}, {0.0, 1.0});
  CHECK(ops::interpolate_trilinear3d(x, {1, 1, 4}).to_vector() == std::vector<double>{0.0, 0.25, 0.75, 1.0});
  // align_corners=true: src = d/3 -> 0, 1/3, 2/3, 1.
  const auto a = ops::interpolate_trilinear3d(x, {1, 1, 4}, true).to_vector();
  CHECK(a[1] == Approx(1.0 / 3.0));
  CHECK(a[2] == Approx(2.0 / 3.0));
  CHECK(a[3] == 1.0);
  // Downsampling 4 -> 2 averages neighbours: src = 0.5, 2.5.
  auto x4 = tensor<double>::from_vector({1, 1, 1, 1, 4}, {1.0, 3.0, 5.0, 11.0});
  CHECK(ops::interpolate_trilinear3d(x4, {1, 1, 2}).to_vector() == std::vector<double>{2.0, 8.0});
  // Nearest 4 -> 2 takes floor(d·2): elements 0 and 2.
  CHECK(ops::interpolate_nearest3d(x4, {1, 1, 2}).to_vector() == std::vector<double>{1.0, 5.0});
}

TEST_CASE("nearest resize uses PyTorch's float index arithmetic, not the exact rational floor", "[ops][resize]") {
  // in 26 -> out 22 at d = 11: exact floor(11·26/22) = 13, but PyTorch evaluates
  // floorf(11 · (26.f/22.f)) = 12. Likewise in 2 -> out 82 at d = 41: exact 1, PyTorch 0.
  std::vector<double> v(26);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = double(i);
  auto x = tensor<double>::from_vector({1, 1, 1, 1, 26}, v);
  CHECK(ops::interpolate_nearest3d(x, {1, 1, 22}).to_vector()[11] == 12.0);
  auto x2 = tensor<double>::from_vector({1, 1, 1, 1, 2}, {0.0, 1.0});
  const auto y2 = ops::interpolate_nearest3d(x2, {1, 1, 82}).to_vector();
  CHECK(y2[41] == 0.0);
  CHECK(y2[42] == 1.0);
}

// ====================================================================== finite differences

TEST_CASE("3-D resize gradients match finite differences", "[ops][resize][gradcheck]") {
  for (const auto& c : cfgs)
    for (mode m : {mode::nearest, mode::linear, mode::linear_align}) {
      CAPTURE(cfg_string(c), int(m));
      const auto r = testing::check_gradients(
          [&](const std::vector<tensor<double>>& in) { return run(in[0], c.out, m); }, {randn<double>(c.in, 21)});
      INFO(r.report);
      CHECK(r.ok);
    }
}

TEST_CASE("3-D resize gradients through a strided (non-contiguous) input", "[ops][resize][gradcheck]") {
  const auto r = testing::check_gradients(
      [](const std::vector<tensor<double>>& in) {
        return ops::interpolate_trilinear3d(ops::transpose(in[0], 3, 4), {3, 7, 5});
      },
      {randn<double>({1, 2, 2, 4, 3}, 22)});
  INFO(r.report);
  CHECK(r.ok);
}

// ====================================================================== threads

TEST_CASE("3-D resize results do not depend on the thread count", "[ops][resize]") {
#if defined(_OPENMP)
  const shape_t in{4, 32, 4, 14, 14};  // large enough to take the parallel path
  for (mode m : {mode::nearest, mode::linear}) {
    std::vector<std::vector<float>> outs, grads;
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      auto x = randn<float>(in, 31).set_requires_grad();
      auto y = run(x, {4, 28, 28}, m);
      y.backward(randn<float>(y.shape(), 32));
      outs.push_back(y.to_vector());
      grads.push_back(x.grad().to_vector());
    }
    omp_set_num_threads(omp_get_num_procs());
    CHECK(outs[0] == outs[1]);
    CHECK(grads[0] == grads[1]);
  }
#else
  SUCCEED("built without OpenMP");
#endif
}

// ====================================================================== PyTorch

TEST_CASE("3-D resize matches PyTorch F.interpolate (forward and backward)", "[ops][resize][torch]") {
  if (!torch_available()) {
    WARN("skipped: /usr/bin/python3 cannot import torch");
    return;
  }
  std::vector<torch_case> cases;
  int k = 0;
  for (const auto& c : cfgs)
    for (mode m : {mode::nearest, mode::linear, mode::linear_align}) {
      add_torch_case<double>(cases, "f64_" + std::to_string(k), c.in, c.out, m, 40 + std::uint64_t(k), 1e-13);
      ++k;
    }
  // The neck's shapes (level 2 -> 1 -> 0 of r3d_18) and an odd mixed case, in float64 and float32
  // (PyTorch's opmath on CPU is float for float).
  const std::vector<cfg> extra = {{{1, 4, 1, 7, 7}, {2, 14, 14}}, {{1, 4, 2, 14, 14}, {4, 28, 28}},
                                  {{2, 3, 5, 9, 7}, {3, 4, 13}}};
  for (const auto& c : extra)
    for (mode m : {mode::nearest, mode::linear, mode::linear_align}) {
      add_torch_case<double>(cases, "f64_" + std::to_string(k), c.in, c.out, m, 40 + std::uint64_t(k), 1e-13);
      add_torch_case<float>(cases, "f32_" + std::to_string(k), c.in, c.out, m, 40 + std::uint64_t(k), 1e-5);
      ++k;
    }
  // Sizes where PyTorch's float index rule for "nearest" departs from the exact rational one
  // (26 -> 22, 2 -> 82): float32 only. PyTorch 1.13 itself is inconsistent there for float64
  // inputs with more than one channel: its forward (generic kernel) evaluates the index in double,
  // its backward (nearest_idx) in float, so forward and gradient use different neighbours. mscl
  // uses the float rule in both directions for every T (the gradient stays the exact adjoint).
  for (const cfg& c : {cfg{{1, 2, 1, 3, 26}, {2, 5, 22}}, cfg{{1, 2, 2, 1, 2}, {3, 2, 82}}})
    for (mode m : {mode::nearest, mode::linear}) {
      add_torch_case<float>(cases, "f32_" + std::to_string(k), c.in, c.out, m, 40 + std::uint64_t(k), 1e-5);
      ++k;
    }
  check_against_torch(cases);
}

// ====================================================================== bad input

TEST_CASE("3-D resize rejects bad input with a message naming the op", "[ops][resize]") {
  const auto x = randn<float>({1, 2, 3, 4, 5}, 1);
  CHECK_THROWS_AS(ops::interpolate_nearest3d(randn<float>({2, 3, 4, 5}, 1), {1, 2, 2}), shape_error);
  CHECK_THROWS_WITH(ops::interpolate_trilinear3d(randn<float>({2, 3, 4, 5}, 1), {1, 2, 2}),
                    Catch::Contains("interpolate_trilinear3d") && Catch::Contains("rank 5"));
  CHECK_THROWS_AS(ops::interpolate_nearest3d(x, {0, 2, 2}), value_error);
  CHECK_THROWS_WITH(ops::interpolate_trilinear3d(x, {1, -2, 2}), Catch::Contains("[1, -2, 2]"));
  CHECK_THROWS_AS(ops::interpolate_nearest3d(tensor<float>(), {1, 1, 1}), shape_error);
  CHECK_THROWS_AS(ops::interpolate_nearest3d(tensor<float>::zeros({1, 0, 3, 4, 5}), {1, 1, 1}), shape_error);
}
