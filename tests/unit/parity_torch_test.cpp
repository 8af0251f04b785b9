// Parity with PyTorch/torchvision on the same weights and inputs: r3d_18 and the MSCL flow
// backbone (float32), and a narrow R3D in float64 (tight). Fixtures come from
// scripts/torch_parity.py, run at test time with Debian's /usr/bin/python3; the test is skipped
// with a message when torch is not installed. Max relative errors are appended to
// <build>/parity_report.jsonl (docs/parity.md quotes them).
#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <iostream>
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
};

template <class T, class Net>
worst compare(Net& net, const std::string& dir, bool with_fc, double tol_out, double tol_grad) {
  worst w;
  io::load_state_dict(net, dir + "/weights.safetensors");
  const auto input = io::read_npy<T>(dir + "/input.npy");
  const auto train_ref = io::safetensors_file::open(dir + "/train_outputs.safetensors");
  const auto eval_ref = io::safetensors_file::open(dir + "/eval_outputs.safetensors");

  net.train();
  models::video_resnet_taps<T, cpu> taps;
  tensor<T> out = net.forward(input, &taps);
  tensor<T> loss;
  if (with_fc) {
    const auto labels = io::read_npy_int64(dir + "/labels.npy").first;
    loss = ops::cross_entropy(out, std::vector<index_t>(labels.begin(), labels.end()));
  } else {
    loss = ops::sum(ops::mul(out, io::read_npy<T>(dir + "/proj.npy")));
  }
  w.outputs = std::max(w.outputs, rel_error(out, train_ref.get<T>("output")));
  w.outputs = std::max(w.outputs, rel_error(loss, train_ref.get<T>("loss")));
  const std::pair<const char*, tensor<T>*> tap_list[] = {{"tap.stem", &taps.stem},     {"tap.layer1", &taps.layer1},
                                                         {"tap.layer2", &taps.layer2}, {"tap.layer3", &taps.layer3},
                                                         {"tap.layer4", &taps.layer4}};
  for (const auto& [name, t] : tap_list) w.outputs = std::max(w.outputs, rel_error(*t, train_ref.get<T>(name)));
  net.zero_grad();
  loss.backward();
  for (const auto& [name, p] : net.named_parameters()) {
    const double e = rel_error(p.grad(), train_ref.get<T>("grad." + name));
    if (e > w.grads) {
      w.grads = e;
      w.worst_grad = name;
    }
  }
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
  INFO("worst gradient: " << w.worst_grad);
  CHECK(w.outputs < tol_out);
  CHECK(w.buffers < tol_out);
  CHECK(w.eval < tol_out);
  CHECK(w.grads < tol_grad);
  return w;
}

void report(const std::string& name, const worst& w) {
  std::ofstream f(std::string(MSCL_BINARY_DIR) + "/parity_report.jsonl", std::ios::app);
  f << "{\"case\":\"" << name << "\",\"max_rel_output\":" << w.outputs << ",\"max_rel_grad\":" << w.grads
    << ",\"worst_grad\":\"" << w.worst_grad << "\",\"max_rel_buffer\":" << w.buffers << ",\"max_rel_eval\":" << w.eval
    << "}\n";
  std::cout << name << ": outputs " << w.outputs << ", grads " << w.grads << " (" << w.worst_grad << "), buffers "
            << w.buffers << ", eval " << w.eval << "\n";
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
