// r3d_18 / flow backbone structure (names, counts, shapes) and an end-to-end finite-difference
// gradient check of a narrow R3D in double.
#include <catch2/catch.hpp>

#include <mscl/mscl.hpp>
#include <mscl/testing/gradient_check.hpp>

using namespace mscl;

TEST_CASE("r3d_18 has torchvision's parameter names, buffers and count", "[models]") {
  auto net = models::r3d_18<float>(400);
  REQUIRE(net.parameter_count() == 33371472);  // torchvision r3d_18 with the 400-class fc
  const auto state = net.state_dict();
  REQUIRE(state.size() == 122);                 // 102 + 20 num_batches_tracked
  std::map<std::string, shape_t> shapes;
  for (const auto& e : state) shapes[e.name] = e.value.shape();
  REQUIRE(shapes.at("stem.0.weight") == shape_t{64, 3, 3, 7, 7});
  REQUIRE(shapes.at("stem.1.running_var") == shape_t{64});
  REQUIRE(shapes.at("layer1.0.conv1.0.weight") == shape_t{64, 64, 3, 3, 3});
  REQUIRE(shapes.at("layer2.0.downsample.0.weight") == shape_t{128, 64, 1, 1, 1});
  REQUIRE(shapes.at("layer4.1.conv2.1.num_batches_tracked") == shape_t{});
  REQUIRE(shapes.at("fc.weight") == shape_t{400, 512});
  REQUIRE(shapes.count("layer1.0.downsample.0.weight") == 0);
  // torchvision's state-dict order: stem first, fc last.
  REQUIRE(state.front().name == "stem.0.weight");
  REQUIRE(state.back().name == "fc.bias");
}

TEST_CASE("flow backbone follows ALGORITHM.md §1.2 shapes", "[models]") {
  auto flow = models::r2d_18_flow<float>();
  models::video_resnet_taps<float, cpu> taps;
  auto x = tensor<float>::ones({1, 3, 8, 32, 32});
  no_grad guard;
  flow.eval();
  auto f = flow.forward(x, &taps);
  REQUIRE(f.shape() == shape_t{1, 128});
  REQUIRE(taps.stem.shape() == shape_t{1, 16, 4, 16, 16});
  REQUIRE(taps.layer1.shape() == shape_t{1, 16, 4, 16, 16});
  REQUIRE(taps.layer2.shape() == shape_t{1, 32, 4, 8, 8});
  REQUIRE(taps.layer4.shape() == shape_t{1, 128, 4, 2, 2});
  for (const auto& e : flow.state_dict())
    if (e.name.find("conv1.0.weight") != std::string::npos) REQUIRE(e.value.shape()[2] == 1);  // (1,3,3)
}

TEST_CASE("r3d_18 taps at the paper's input shape", "[models][slow]") {
  auto net = models::r3d_18<float>(400);
  models::video_resnet_taps<float, cpu> taps;
  auto x = tensor<float>::zeros({1, 3, 8, 112, 112});
  no_grad guard;
  net.eval();
  auto y = net.forward(x, &taps);
  REQUIRE(y.shape() == shape_t{1, 400});
  REQUIRE(taps.layer1.shape() == shape_t{1, 64, 8, 56, 56});
  REQUIRE(taps.layer2.shape() == shape_t{1, 128, 4, 28, 28});
  REQUIRE(taps.layer3.shape() == shape_t{1, 256, 2, 14, 14});
  REQUIRE(taps.layer4.shape() == shape_t{1, 512, 1, 7, 7});
}

TEST_CASE("bad input to a model names the expected and the actual shape", "[models]") {
  auto net = models::r3d_tiny<float>(4);
  try {
    net.forward(tensor<float>::zeros({1, 2, 4, 16, 16}));
    FAIL("accepted a 2-channel clip");
  } catch (const shape_error& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("[1, 2, 4, 16, 16]"));
  }
}

TEST_CASE("narrow R3D end to end: finite-difference gradients in double", "[models][grad]") {
  // Width 2, one block per stage, train-mode BN: every parameter's gradient is probed.
  auto net = models::r3d_tiny<double>(3, /*seed=*/7, /*width=*/2);
  auto clip = tensor<double>::empty({2, 3, 4, 8, 8});
  generator g(3);
  g.fill_normal(clip.data(), clip.numel(), 0, 1);
  clip.set_requires_grad(true);
  const std::vector<index_t> labels{0, 2};
  auto params = net.parameters();
  params.push_back(clip);  // the input gradient is checked too
  auto loss_of = [&]() { return ops::cross_entropy(net.forward(clip), labels); };
  loss_of().backward();
  int checked = 0;
  for (auto& p : params) {
    auto grad = p.grad();
    REQUIRE(grad.defined());
    const index_t n = p.numel();
    for (index_t j = 0; j < std::min<index_t>(n, 3); ++j) {
      const index_t i = (j * 7919) % n;
      double* w = p.data() + i;
      const double saved = *w;
      const double eps = 1e-6;
      double lp, lm;
      {
        no_grad ng;
        *w = saved + eps;
        lp = loss_of().item();
        *w = saved - eps;
        lm = loss_of().item();
        *w = saved;
      }
      const double numeric = (lp - lm) / (2 * eps);
      INFO("parameter element " << i << " of shape " << to_string(p.shape()));
      REQUIRE(grad.data()[i] == Approx(numeric).epsilon(1e-4).margin(1e-7));
      ++checked;
    }
  }
  REQUIRE(checked > 40);
}
