// Parity with PyTorch/torchvision on the same weights and inputs: r3d_18 and the MSCL flow
// backbone (float32), and a narrow R3D in float64 (tight). Fixtures come from
// scripts/torch_parity.py, run at test time with Debian's /usr/bin/python3; the test is skipped
// with a message when torch is not installed. Max relative errors are appended to
// <build>/parity_report.jsonl (docs/parity.md quotes them).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <mscl/io/npy.hpp>
#include <mscl/io/state_dict.hpp>
#include <mscl/mscl.hpp>

using namespace mscl;

namespace {

bool torch_available() {
  return std::system("/usr/bin/python3 -c 'import torch, torchvision' >/dev/null 2>&1") == 0;
}

std::string make_fixture(const std::string& name, const std::string& args) {
  const std::string dir = std::string(MSCL_BINARY_DIR) + "/parity_fixtures/" + name;
  const std::string cmd = "/usr/bin/python3 " + std::string(MSCL_SOURCE_DIR) + "/scripts/torch_parity.py " + args +
                          " --out " + dir + " > " + dir + ".log 2>&1";
  std::system(("mkdir -p " + std::string(MSCL_BINARY_DIR) + "/parity_fixtures").c_str());
  INFO("fixture command: " << cmd);
  REQUIRE(std::system(cmd.c_str()) == 0);
  return dir;
}

// max |a - b| / max |b| over the tensor (norm-relative, robust to tiny elements).
template <class T>
double rel_error(const tensor<T>& ours, const tensor<T>& ref) {
  REQUIRE(ours.shape() == ref.shape());
  const auto a = ours.to_vector(), b = ref.to_vector();
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return diff / std::max(scale, 1e-30);
}

struct worst {
  double outputs = 0, grads = 0, buffers = 0, eval = 0;
  std::string worst_grad;
  int widened = 0;            ///< float32: gradients off PyTorch by the engines' disagreement (see compare)
  double sensitivity = 0;     ///< the largest such disagreement
  std::string most_sensitive;
};

// The training-mode loss of `net` on `input` (cross-entropy with the fixture's labels, or
// sum(features ⊙ R) for the fc-less flow net); features tapped into *taps when given.
template <class T, class Net>
tensor<T> training_loss(Net& net, const std::string& dir, bool with_fc, const tensor<T>& input, tensor<T>* out,
                        models::video_resnet_taps<T, cpu>* taps) {
  net.train();
  *out = net.forward(input, taps);
  if (with_fc) {
    const auto labels = io::read_npy_int64(dir + "/labels.npy").first;
    return ops::cross_entropy(*out, std::vector<index_t>(labels.begin(), labels.end()));
  }
  return ops::sum(ops::mul(*out, io::read_npy<T>(dir + "/proj.npy")));
}

/// Compares every output, tap, gradient, buffer and the eval output with the fixture.
/// float32 gradients of a ReLU/max-pool network are only defined up to which activations sit
/// within rounding of a kink: a pre-activation within ~1e-6 of 0 (or a max-pool near-tie) flips
/// with the summation order and routes a whole gradient term elsewhere. On the flow fixture a
/// 1e-6 relative perturbation of the input moves a BN bias gradient by 8 % in any implementation,
/// and on an AVX-512 CPU oneDNN's summation order flips it where the AVX2 kernels and PyTorch do
/// not. So in float32 a gradient tensor passes when it is within tol_grad of PyTorch with the
/// default convolution engine, or when mscl's portable engine is within tol_grad and the default
/// engine's deviation is explained by the two engines' own disagreement (at most 3× it). One of
/// mscl's two engines must always match PyTorch tightly; the float64 cases check every gradient
/// to ~1e-14, where no such flips occur, and backend_conv_test checks each engine's kernels.
template <class T, class Net>
worst compare(Net& net, const std::string& dir, bool with_fc, double tol_out, double tol_grad) {
  worst w;
  io::load_state_dict(net, dir + "/weights.safetensors");
  const auto input = io::read_npy<T>(dir + "/input.npy");
  const auto train_ref = io::safetensors_file::open(dir + "/train_outputs.safetensors");
  const auto eval_ref = io::safetensors_file::open(dir + "/eval_outputs.safetensors");

  models::video_resnet_taps<T, cpu> taps;
  tensor<T> out;
  tensor<T> loss = training_loss(net, dir, with_fc, input, &out, &taps);
  w.outputs = std::max(w.outputs, rel_error(out, train_ref.get<T>("output")));
  w.outputs = std::max(w.outputs, rel_error(loss, train_ref.get<T>("loss")));
  const std::pair<const char*, tensor<T>*> tap_list[] = {{"tap.stem", &taps.stem},     {"tap.layer1", &taps.layer1},
                                                         {"tap.layer2", &taps.layer2}, {"tap.layer3", &taps.layer3},
                                                         {"tap.layer4", &taps.layer4}};
  for (const auto& [name, t] : tap_list) w.outputs = std::max(w.outputs, rel_error(*t, train_ref.get<T>(name)));
  net.zero_grad();
  loss.backward();
  std::vector<std::pair<std::string, tensor<T>>> grads;
  for (const auto& [name, p] : net.named_parameters()) grads.emplace_back(name, p.grad().clone());
  for (const auto& e : net.state_dict())
    if (!e.is_parameter && !e.is_integer)
      w.buffers = std::max(w.buffers, rel_error(e.value, train_ref.get<T>("buffer." + e.name)));
  {
    no_grad guard;
    net.eval();
    models::video_resnet_taps<T, cpu> eval_taps;
    w.eval = std::max(w.eval, rel_error(net.forward(input, &eval_taps), eval_ref.get<T>("output")));
    w.eval = std::max(w.eval, rel_error(eval_taps.layer4, eval_ref.get<T>("tap.layer4")));
  }
  // float32 with oneDNN: the same passes from the same state with the portable engine.
  std::map<std::string, tensor<T>> portable_grads;
#if MSCL_WITH_ONEDNN
  if constexpr (std::is_same_v<T, float>) {
    namespace K = backend::cpu_kernels;
    const K::conv_engine engine = K::get_conv_engine();
    K::set_conv_engine(K::conv_engine::portable);
    io::load_state_dict(net, dir + "/weights.safetensors");
    tensor<T> out2;
    tensor<T> loss2 = training_loss(net, dir, with_fc, input, &out2, static_cast<models::video_resnet_taps<T, cpu>*>(nullptr));
    net.zero_grad();
    loss2.backward();
    K::set_conv_engine(engine);
    for (const auto& [name, p] : net.named_parameters()) portable_grads[name] = p.grad().clone();
  }
#endif
  bool gradients_ok = true;
  for (const auto& [name, g] : grads) {
    const tensor<T> ref = train_ref.get<T>("grad." + name);
    const double e = rel_error(g, ref);
    if (e > w.grads) {
      w.grads = e;
      w.worst_grad = name;
    }
    if (e < tol_grad) continue;
    const auto it = portable_grads.find(name);
    const double engines = it == portable_grads.end() ? 0.0 : rel_error(g, it->second);
    const double portable = it == portable_grads.end() ? 1.0 : rel_error(it->second, ref);
    if (portable < tol_grad && e <= 3 * engines) {
      ++w.widened;
      if (engines > w.sensitivity) {
        w.sensitivity = engines;
        w.most_sensitive = name;
      }
      continue;
    }
    gradients_ok = false;
    UNSCOPED_INFO("gradient " << name << ": " << e << " from PyTorch (portable engine " << portable
                              << ", engines apart " << engines << ")");
  }
  INFO("worst gradient: " << w.worst_grad << " (" << w.grads << "); " << w.widened
                          << " explained by the two engines' disagreement");
  CHECK(w.outputs < tol_out);
  CHECK(w.buffers < tol_out);
  CHECK(w.eval < tol_out);
  CHECK(gradients_ok);
  return w;
}

void report(const std::string& name, const worst& w) {
  std::ofstream f(std::string(MSCL_BINARY_DIR) + "/parity_report.jsonl", std::ios::app);
  f << "{\"case\":\"" << name << "\",\"max_rel_output\":" << w.outputs << ",\"max_rel_grad\":" << w.grads
    << ",\"worst_grad\":\"" << w.worst_grad << "\",\"max_rel_buffer\":" << w.buffers << ",\"max_rel_eval\":" << w.eval
    << ",\"grads_explained_by_engines\":" << w.widened << ",\"engine_difference\":" << w.sensitivity << "}\n";
  std::cout << name << ": outputs " << w.outputs << ", grads " << w.grads << " (" << w.worst_grad << "), buffers "
            << w.buffers << ", eval " << w.eval;
  if (w.widened > 0)
    std::cout << "; " << w.widened << " gradient tensors off PyTorch where mscl's two convolution engines also differ"
              << " (float32 conditioning; largest engine difference " << w.sensitivity << ", " << w.most_sensitive
              << "), the portable engine within the bound";
  std::cout << "\n";
}

}  // namespace

TEST_CASE("r3d_18 matches torchvision (float32): outputs, taps, gradients, BN buffers", "[parity][slow]") {
  if (!torch_available()) {
    WARN("SKIPPED: /usr/bin/python3 cannot import torch/torchvision (scripts/setup.sh installs them)");
    return;
  }
  const auto dir = make_fixture("r3d_18_f32", "--arch r3d_18 --num-classes 10 --batch 2 --frames 4 --size 32 "
                                              "--seed 3 --perturb-bn");
  auto net = models::r3d_18<float>(10);
  report("r3d_18 float32 (2x3x4x32x32)", compare<float>(net, dir, true, 1e-4, 2e-3));
}

TEST_CASE("MSCL flow backbone matches the PyTorch definition (float32)", "[parity]") {
  if (!torch_available()) {
    WARN("SKIPPED: /usr/bin/python3 cannot import torch/torchvision");
    return;
  }
  const auto dir = make_fixture("r2d_18_flow_f32", "--arch r2d_18_flow --num-classes 0 --batch 2 --frames 8 --size 32 "
                                                   "--seed 4 --perturb-bn --input-dist uniform");
  auto net = models::r2d_18_flow<float>(0);
  report("r2d_18_flow float32 (2x3x8x32x32)", compare<float>(net, dir, false, 1e-4, 2e-3));
}

TEST_CASE("MSCL flow backbone matches the PyTorch definition in float64 to near machine precision", "[parity]") {
  if (!torch_available()) {
    WARN("SKIPPED: /usr/bin/python3 cannot import torch/torchvision");
    return;
  }
  // The float32 case's fixture in float64 (same draws, cast): gradients compared tightly, where
  // no activation sits within rounding of a ReLU kink or a max-pool tie.
  const auto dir = make_fixture("r2d_18_flow_f64", "--arch r2d_18_flow --num-classes 0 --batch 2 --frames 8 --size 32 "
                                                   "--seed 4 --perturb-bn --input-dist uniform --dtype float64");
  auto net = models::r2d_18_flow<double>(0);
  report("r2d_18_flow float64 (2x3x8x32x32)", compare<double>(net, dir, false, 1e-10, 1e-9));
}

TEST_CASE("narrow R3D matches PyTorch in float64 to near machine precision", "[parity]") {
  if (!torch_available()) {
    WARN("SKIPPED: /usr/bin/python3 cannot import torch/torchvision");
    return;
  }
  const auto dir = make_fixture("r3d_narrow_f64", "--arch r3d_narrow --width 4 --num-classes 7 --batch 2 --frames 4 "
                                                  "--size 24 --seed 5 --perturb-bn --dtype float64");
  auto net = models::r3d_18<double>(7, 0, 4);
  report("r3d_18 width 4 float64 (2x3x4x24x24)", compare<double>(net, dir, true, 1e-10, 1e-9));
}
