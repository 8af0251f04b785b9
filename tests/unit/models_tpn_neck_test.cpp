// Tests for models/tpn_neck.hpp (MSCL's RGB neck, ALGORITHM.md §1.2): parameter names, shapes and
// init at r3d_18's shapes; forward_level0 == forward()[0] bit for bit; an end-to-end
// finite-difference gradient check of a tiny neck in double (inputs and every parameter);
// agreement with a PyTorch re-implementation of FPN + SEPC (scripts/torch_ref_resize.py, when
// /usr/bin/python3 has torch); bad input. A hidden [.bench] case times forward + backward at
// batch 8 (report only).
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <mscl/core/rng.hpp>
#include <mscl/models/tpn_neck.hpp>
#include <mscl/models/video_resnet.hpp>
#include <mscl/ops/shape_ops.hpp>
#include <mscl/testing/gradient_check.hpp>

using namespace mscl;

namespace {

template <class T>
tensor<T> randn(const shape_t& shape, std::uint64_t seed, double stddev = 1.0) {
  std::vector<double> v(std::size_t(numel_of(shape)));
  generator gen(seed);
  gen.fill_normal(v.data(), index_t(v.size()), 0.0, stddev);
  return tensor<T>::from_vector(shape, std::vector<T>(v.begin(), v.end()));
}

/// r3d_18's layer2/3/4 at an 8×112×112 clip.
template <class T>
std::vector<tensor<T>> r3d18_levels(index_t n, std::uint64_t seed) {
  return {randn<T>({n, 128, 4, 28, 28}, seed), randn<T>({n, 256, 2, 14, 14}, seed + 1),
          randn<T>({n, 512, 1, 7, 7}, seed + 2)};
}

/// A tiny neck: 3 levels of channels 3/5/6, width 4; level extents follow the stride rule.
models::tpn_neck_options tiny_options(int pconv_num = 2, ops::triple stride = {2, 2, 2}) {
  models::tpn_neck_options o;
  o.in_channels = {3, 5, 6};
  o.channels = 4;
  o.pconv_num = pconv_num;
  o.sepc_stride = stride;
  o.seed = 7;
  return o;
}
template <class T>
std::vector<tensor<T>> tiny_levels(std::uint64_t seed, bool temporal_stride = true) {
  if (temporal_stride)
    return {randn<T>({2, 3, 3, 5, 6}, seed), randn<T>({2, 5, 2, 3, 3}, seed + 1), randn<T>({2, 6, 1, 2, 2}, seed + 2)};
  return {randn<T>({2, 3, 2, 5, 6}, seed), randn<T>({2, 5, 2, 3, 3}, seed + 1), randn<T>({2, 6, 2, 2, 2}, seed + 2)};
}

/// The module's parameter handles (members), in named_parameters() order.
template <class T>
std::vector<tensor<T>*> param_slots(models::tpn_neck<T>& n) {
  std::vector<tensor<T>*> s;
  auto add = [&](nn::conv3d<T>& c) {
    s.push_back(&c.weight);
    s.push_back(&c.bias);
  };
  for (auto& c : n.lateral->items) add(*c);
  for (auto& c : n.output->items) add(*c);
  for (auto& p : n.pconvs) {
    add(*p->mid);
    add(*p->from_coarser);
    add(*p->from_finer);
  }
  return s;
}

/// All levels flattened per sample and concatenated: one tensor for the gradient check.
template <class T>
tensor<T> concat_levels(const std::vector<tensor<T>>& ys) {
  std::vector<tensor<T>> flat;
  for (const auto& y : ys) flat.push_back(ops::flatten(y, 1));
  return ops::cat(flat, 1);
}

std::string dotted_to_file(std::string s) {
  std::replace(s.begin(), s.end(), '.', '_');
  return s;
}

bool torch_available() {
  static const bool ok = std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
  return ok;
}

void write_bin(const std::filesystem::path& p, const std::vector<double>& v) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(double)));
}
std::vector<double> read_bin(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary | std::ios::ate);
  REQUIRE(f.good());
  const auto bytes = std::size_t(f.tellg());
  std::vector<double> v(bytes / sizeof(double));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(v.data()), std::streamsize(bytes));
  return v;
}
double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

}  // namespace

// ====================================================================== structure

TEST_CASE("tpn_neck has the documented parameter names, shapes, count and init", "[models][tpn]") {
  models::tpn_neck<float> neck;
  const auto named = neck.named_parameters();
  REQUIRE(named.size() == 24);  // 3 lateral + 3 output + 2 PConvs × 3 convs, weight and bias each
  // 128·(128+256+512) + 3·128 lateral, 3·(128·128·9 + 128) output, 6·(128·128·27 + 128) SEPC.
  REQUIRE(neck.parameter_count() == 115072 + 442752 + 2654976);
  std::map<std::string, shape_t> shapes;
  for (const auto& [name, p] : named) shapes[name] = p.shape();
  CHECK(shapes.at("fpn.lateral.0.weight") == shape_t{128, 128, 1, 1, 1});
  CHECK(shapes.at("fpn.lateral.2.weight") == shape_t{128, 512, 1, 1, 1});
  CHECK(shapes.at("fpn.lateral.1.bias") == shape_t{128});
  CHECK(shapes.at("fpn.output.2.weight") == shape_t{128, 128, 1, 3, 3});
  CHECK(shapes.at("sepc.0.mid.weight") == shape_t{128, 128, 3, 3, 3});
  CHECK(shapes.at("sepc.1.from_coarser.bias") == shape_t{128});
  CHECK(shapes.at("sepc.1.from_finer.weight") == shape_t{128, 128, 3, 3, 3});
  CHECK(named.front().first == "fpn.lateral.0.weight");
  CHECK(named.back().first == "sepc.1.from_finer.bias");
  CHECK(neck.pconvs[1]->from_finer->options().stride == ops::triple{2, 2, 2});
  CHECK(neck.pconvs[1]->from_coarser->options().stride == ops::triple{1, 1, 1});
  // The slots the gradient check binds are these very tensors.
  const auto slots = param_slots(neck);
  REQUIRE(slots.size() == named.size());
  for (std::size_t i = 0; i < slots.size(); ++i) CHECK(slots[i]->same_as(named[i].second));

  // Xavier-uniform (gain 1): |w| <= sqrt(6/(fan_in+fan_out)), variance bound²/3; biases 0.
  for (const auto& [name, p] : named) {
    CAPTURE(name);
    const auto v = p.to_vector();
    if (p.dim() == 1) {
      CHECK(std::all_of(v.begin(), v.end(), [](float x) { return x == 0.0f; }));
      continue;
    }
    const auto [fan_in, fan_out] = nn::init::fans(p);
    const double bound = std::sqrt(6.0 / double(fan_in + fan_out));
    double ss = 0, mx = 0;
    for (float x : v) ss += double(x) * x, mx = std::max(mx, double(std::abs(x)));
    CHECK(mx <= bound);
    CHECK(std::sqrt(ss / double(v.size())) == Approx(bound / std::sqrt(3.0)).epsilon(0.05));
  }
}

TEST_CASE("tpn_neck output shapes at r3d_18's layer2/3/4 shapes", "[models][tpn]") {
  models::tpn_neck<float> neck;
  no_grad guard;
  const auto ys = neck.forward(r3d18_levels<float>(1, 3));
  REQUIRE(ys.size() == 3);
  CHECK(ys[0].shape() == shape_t{1, 128, 4, 28, 28});
  CHECK(ys[1].shape() == shape_t{1, 128, 2, 14, 14});
  CHECK(ys[2].shape() == shape_t{1, 128, 1, 7, 7});
  // SEPC ends with a ReLU.
  for (const auto& y : ys) {
    const auto v = y.to_vector();
    CHECK(*std::min_element(v.begin(), v.end()) >= 0.0f);
    CHECK(*std::max_element(v.begin(), v.end()) > 0.0f);
  }
  const auto fpn = neck.forward_fpn(r3d18_levels<float>(1, 3));
  CHECK(fpn[0].shape() == shape_t{1, 128, 4, 28, 28});
  CHECK(fpn[2].shape() == shape_t{1, 128, 1, 7, 7});
}

TEST_CASE("tpn_neck::forward_level0 equals level 0 of the full forward exactly", "[models][tpn]") {
  SECTION("default neck at r3d_18's shapes (float)") {
    models::tpn_neck<float> neck;
    no_grad guard;
    const auto in = r3d18_levels<float>(1, 5);
    const auto full = neck.forward(in);
    const auto p0 = neck.forward_level0(in);
    REQUIRE(p0.shape() == full[0].shape());
    CHECK(p0.to_vector() == full[0].to_vector());
  }
  SECTION("tiny necks with 0..3 PConv layers (double), values and gradients") {
    for (int pconv_num : {0, 1, 2, 3}) {
      CAPTURE(pconv_num);
      models::tpn_neck<double> neck(tiny_options(pconv_num));
      for (auto* p : param_slots(neck)) *p = randn<double>(p->shape(), 100 + p->numel()).set_requires_grad();
      const auto in = tiny_levels<double>(9);
      const auto full = neck.forward(in);
      const auto p0 = neck.forward_level0(in);
      CHECK(p0.to_vector() == full[0].to_vector());
      // Same gradients into the parameters when only P0 carries a loss.
      const auto g = randn<double>(p0.shape(), 10);
      std::vector<std::vector<double>> grads_full, grads_p0;
      full[0].backward(g);
      for (auto* p : param_slots(neck)) {
        grads_full.push_back(p->grad().defined() ? p->grad().to_vector() : std::vector<double>(p->numel(), 0.0));
        p->zero_grad();
      }
      p0.backward(g);
      for (auto* p : param_slots(neck))
        grads_p0.push_back(p->grad().defined() ? p->grad().to_vector() : std::vector<double>(p->numel(), 0.0));
      for (std::size_t i = 0; i < grads_full.size(); ++i) CHECK(max_abs_diff(grads_full[i], grads_p0[i]) <= 1e-12);
    }
  }
}

TEST_CASE("tpn_neck composes with video_resnet taps (narrow r3d)", "[models][tpn]") {
  auto net = models::r3d_tiny<float>(0, 3);  // width 8: layer2/3/4 have 16/32/64 channels
  models::tpn_neck_options o;
  o.in_channels = {16, 32, 64};
  o.channels = 8;
  models::tpn_neck<float> neck(o);
  models::video_resnet_taps<float, cpu> taps;
  net.forward(randn<float>({2, 3, 8, 32, 32}, 4), &taps);
  const auto ys = neck.forward_from_taps(taps);
  CHECK(ys[0].shape() == shape_t{2, 8, 4, 8, 8});
  CHECK(ys[1].shape() == shape_t{2, 8, 2, 4, 4});
  CHECK(ys[2].shape() == shape_t{2, 8, 1, 2, 2});
  const auto p0 = neck.forward_level0_from_taps(taps);
  CHECK(p0.to_vector() == ys[0].to_vector());
  // Gradient reaches the backbone through P0 (LMCL's path).
  p0.backward(tensor<float>::ones(p0.shape()));
  CHECK(net.stem->conv->weight.grad().defined());
}

// ====================================================================== finite differences

TEST_CASE("tpn_neck gradients match finite differences end to end (inputs and every parameter)",
          "[models][tpn][gradcheck]") {
  for (int pconv_num : {2, 1}) {
    CAPTURE(pconv_num);
    const ops::triple stride = pconv_num == 2 ? ops::triple{2, 2, 2} : ops::triple{1, 2, 2};
    models::tpn_neck<double> neck(tiny_options(pconv_num, stride));
    auto slots = param_slots(neck);
    std::vector<tensor<double>> inputs = tiny_levels<double>(11, pconv_num == 2);
    const std::size_t n_in = inputs.size();
    // Random (not Xavier/zero) parameters so that biases and every path carry signal.
    for (std::size_t i = 0; i < slots.size(); ++i) inputs.push_back(randn<double>(slots[i]->shape(), 50 + i, 0.5));
    testing::gradient_check_options opt;
    opt.max_probes_per_input = 24;
    const auto r = testing::check_gradients(
        [&](const std::vector<tensor<double>>& in) {
          for (std::size_t i = 0; i < slots.size(); ++i) *slots[i] = in[n_in + i];
          return concat_levels(neck.forward({in[0], in[1], in[2]}));
        },
        inputs, opt);
    INFO(r.report);
    CHECK(r.ok);
  }
}

// ====================================================================== PyTorch

TEST_CASE("tpn_neck matches a PyTorch FPN + SEPC (forward and backward, float64)", "[models][tpn][torch]") {
  if (!torch_available()) {
    WARN("skipped: /usr/bin/python3 cannot import torch");
    return;
  }
  struct variant {
    int pconv_num;
    ops::triple stride;
    bool temporal;
  };
  std::string cmd = std::string("/usr/bin/python3 ") + MSCL_SOURCE_DIR + "/scripts/torch_ref_resize.py";
  std::vector<std::pair<std::filesystem::path, std::vector<std::pair<std::string, std::vector<double>>>>> cases;
  int k = 0;
  for (const variant& v : {variant{2, {2, 2, 2}, true}, variant{1, {1, 2, 2}, false}}) {
    const auto dir = std::filesystem::path(MSCL_BINARY_DIR) / "tests" / "torch_ref_tpn" / std::to_string(k++);
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    models::tpn_neck<double> neck(tiny_options(v.pconv_num, v.stride));
    auto named = neck.named_parameters();
    for (std::size_t i = 0; i < named.size(); ++i)  // random values in place, so biases are non-zero
      named[i].second.copy_from(randn<double>(named[i].second.shape(), 200 + i, 0.5));
    auto in = tiny_levels<double>(13, v.temporal);
    for (auto& x : in) x.set_requires_grad();
    const auto ys = neck.forward(in);
    nlohmann::json spec;
    spec["op"] = "tpn_neck";
    spec["params"] = {{"levels", 3}, {"pconv_num", v.pconv_num}, {"sepc_stride", v.stride}};
    std::vector<std::pair<std::string, std::vector<double>>> expected;
    std::vector<tensor<double>> dys;
    for (std::size_t l = 0; l < 3; ++l) {
      dys.push_back(randn<double>(ys[l].shape(), 300 + l));
      write_bin(dir / ("x" + std::to_string(l) + ".bin"), in[l].to_vector());
      write_bin(dir / ("dy" + std::to_string(l) + ".bin"), dys[l].to_vector());
      spec["inputs"]["x" + std::to_string(l)] = in[l].shape();
      spec["inputs"]["dy" + std::to_string(l)] = dys[l].shape();
      expected.push_back({"out" + std::to_string(l), ys[l].to_vector()});
    }
    concat_levels(ys).backward(concat_levels(dys));  // one pass: the levels share the graph
    for (std::size_t l = 0; l < 3; ++l) expected.push_back({"grad_x" + std::to_string(l), in[l].grad().to_vector()});
    for (const auto& [name, p] : named) {
      write_bin(dir / (dotted_to_file(name) + ".bin"), p.to_vector());
      spec["inputs"][dotted_to_file(name)] = p.shape();
      expected.push_back({"grad_" + dotted_to_file(name), p.grad().to_vector()});
    }
    std::ofstream(dir / "case.json") << spec.dump();
    cmd += " " + dir.string();
    cases.push_back({dir, expected});
  }
  REQUIRE(std::system(cmd.c_str()) == 0);
  for (const auto& [dir, expected] : cases)
    for (const auto& [name, mine] : expected) {
      CAPTURE(dir.filename().string(), name);
      const auto ref = read_bin(dir / (name + ".bin"));
      double scale = 1;
      for (double r : ref) scale = std::max(scale, std::abs(r));
      CHECK(max_abs_diff(mine, ref) <= 1e-12 * scale);
    }
}

// ====================================================================== bad input

TEST_CASE("tpn_neck rejects bad input naming level, expected and actual shapes", "[models][tpn]") {
  models::tpn_neck<double> neck(tiny_options());
  auto in = tiny_levels<double>(1);
  CHECK_THROWS_WITH(neck.forward({in[0], in[1]}), Catch::Contains("expected 3 input levels, got 2"));
  CHECK_THROWS_WITH(neck.forward({in[0], in[2], in[1]}),
                    Catch::Contains("level 1") && Catch::Contains("(n, 5, t, h, w)"));
  CHECK_THROWS_AS(neck.forward({in[0], in[1], tensor<double>()}), shape_error);
  // Level 1 with the wrong spatial size for a stride-2 3x3x3 conv of level 0.
  CHECK_THROWS_WITH(neck.forward_level0({in[0], randn<double>({2, 5, 2, 4, 3}, 2), in[2]}),
                    Catch::Contains("forward_level0") && Catch::Contains("expected extent 3"));
  CHECK_THROWS_WITH(neck.forward({in[0], in[1], randn<double>({1, 6, 1, 2, 2}, 2)}), Catch::Contains("batch sizes differ"));
  models::tpn_neck_options bad = tiny_options();
  bad.in_channels = {};
  CHECK_THROWS_AS(models::tpn_neck<double>(bad), value_error);
  bad = tiny_options();
  bad.channels = 0;
  CHECK_THROWS_AS(models::tpn_neck<double>(bad), value_error);
  models::video_resnet_taps<double, cpu> taps;
  models::tpn_neck_options two = tiny_options();
  two.in_channels = {3, 5};
  CHECK_THROWS_WITH(models::tpn_neck<double>(two).forward_from_taps(taps), Catch::Contains("3-level"));
}

// ====================================================================== timing (report only)

// Run with: models_tpn_neck_test "[bench]". Prints the median of 3 runs (after one warm-up) as
// wall time and as process CPU time / 2 (what the wall time would be on two otherwise idle cores,
// when the machine is shared), for the neck alone and for r3d_18's backbone at the same batch,
// so that the neck's share of an MSCL step's RGB query branch can be read off.
TEST_CASE("tpn_neck forward+backward time at batch 8, r3d_18 shapes, 2 threads", "[.][bench][tpn]") {
#if defined(_OPENMP)
  omp_set_num_threads(2);
#endif
  using clock = std::chrono::steady_clock;
  struct timing {
    double wall_ms, cpu_ms;
  };
  auto measure = [](auto&& f) {
    std::vector<double> wall, cpu;
    f();  // warm-up (oneDNN primitive creation, allocator)
    for (int i = 0; i < 3; ++i) {
      const auto t0 = clock::now();
      const std::clock_t c0 = std::clock();
      f();
      cpu.push_back(1000.0 * double(std::clock() - c0) / CLOCKS_PER_SEC / 2.0);
      wall.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
    }
    std::sort(wall.begin(), wall.end());
    std::sort(cpu.begin(), cpu.end());
    return timing{wall[1], cpu[1]};
  };
  auto report = [](const char* what, timing t) {
    std::cout << "  " << what << ": wall " << t.wall_ms << " ms, cpu/2 " << t.cpu_ms << " ms\n";
  };

  models::tpn_neck<float> neck;
  auto in = r3d18_levels<float>(8, 21);
  for (auto& x : in) x.set_requires_grad();
  const auto g0 = randn<float>({8, 128, 4, 28, 28}, 22);
  std::cout << "tpn_neck at batch 8, r3d_18 shapes, 2 OpenMP threads (median of 3):\n";
  const timing full_fb = measure([&] {
    const auto ys = neck.forward(in);
    auto flat = concat_levels(ys);
    flat.backward(tensor<float>::ones(flat.shape()));
  });
  report("neck forward (all levels) + backward", full_fb);
  const timing p0_fb = measure([&] { neck.forward_level0(in).backward(g0); });
  report("neck forward_level0 + backward (LMCL's use)", p0_fb);
  report("neck forward_level0, no_grad", measure([&] {
           no_grad guard;
           (void)neck.forward_level0(in);
         }));
  report("neck forward (all levels), no_grad", measure([&] {
           no_grad guard;
           (void)neck.forward(in);
         }));

  auto net = models::r3d_18<float>(0);
  const auto clip = randn<float>({8, 3, 8, 112, 112}, 23);
  const timing bb = measure([&] {
    auto f = net.features(clip);
    f.backward(tensor<float>::ones(f.shape()));
  });
  report("r3d_18 backbone forward + backward (for scale)", bb);
  std::cout << "  neck share of backbone+neck (forward_level0 path): wall "
            << 100.0 * p0_fb.wall_ms / (p0_fb.wall_ms + bb.wall_ms) << " %, cpu "
            << 100.0 * p0_fb.cpu_ms / (p0_fb.cpu_ms + bb.cpu_ms) << " %\n";
  SUCCEED();
}
