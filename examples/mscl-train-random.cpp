// mscl-train-random: trains a narrow R3D for a few dozen steps on a fixed set of random clips
// with random labels and prints the loss falling (the network memorises the set). A smoke test
// of the whole stack: model, autograd, SGD, progress output and JSON-lines log.
//
//   mscl-train-random [--steps 40] [--batch 8] [--clips 16] [--frames 8] [--size 32]
//                     [--width 16] [--classes 4] [--lr 0.05] [--seed 0] [--log FILE.jsonl]
#include <cstdlib>
#include <iostream>
#include <mscl/mscl.hpp>
#include <mscl/train/progress.hpp>
#include <string>

int main(int argc, char** argv) {
  long steps = 40, batch = 8, clips = 16, frames = 8, size = 32, width = 16, classes = 4;
  double lr = 0.05;
  std::uint64_t seed = 0;
  std::string log_path;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      if (k == "--help" || k == "-h") {
        std::cout << "usage: mscl-train-random [--steps N] [--batch N] [--clips N] [--frames T] [--size S]\n"
                     "                         [--width W] [--classes K] [--lr LR] [--seed S] [--log FILE.jsonl]\n";
        return 0;
      }
      if (i + 1 >= argc) throw mscl::config_error("mscl-train-random: option " + k + " needs a value");
      const std::string v = argv[++i];
      if (k == "--steps") steps = std::stol(v);
      else if (k == "--batch") batch = std::stol(v);
      else if (k == "--clips") clips = std::stol(v);
      else if (k == "--frames") frames = std::stol(v);
      else if (k == "--size") size = std::stol(v);
      else if (k == "--width") width = std::stol(v);
      else if (k == "--classes") classes = std::stol(v);
      else if (k == "--lr") lr = std::stod(v);
      else if (k == "--seed") seed = std::stoull(v);
      else if (k == "--log") log_path = v;
      else throw mscl::config_error("mscl-train-random: unknown option " + k);
    }
    MSCL_CHECK(steps > 0 && batch > 0 && clips >= batch, mscl::config_error,
               "mscl-train-random: need steps > 0 and clips >= batch > 0");

    using tensor_t = mscl::tensor<float>;
    auto net = mscl::models::r3d_10<float>(classes, seed, width);
    mscl::generator gen(seed + 1);
    tensor_t data = tensor_t::empty({clips, 3, frames, size, size});
    gen.fill_normal(data.data(), data.numel(), 0, 1);
    std::vector<mscl::index_t> labels(static_cast<std::size_t>(clips));
    for (auto& l : labels) l = gen.randint(0, classes - 1);

    mscl::optim::sgd<float> opt(net.parameters(), {lr, 0.9, 1e-4, false});
    mscl::train::progress_bar bar(steps, "train", 5);
    mscl::train::jsonl_writer log;
    if (!log_path.empty()) log.open(log_path, false);
    std::cout << "mscl " << mscl::version_string << ": r3d (width " << width << ", " << net.parameter_count()
              << " parameters) on " << clips << " random clips " << frames << "x" << size << "x" << size << ", "
              << classes << " classes\n";
    double first = 0, last = 0;
    for (long step = 0; step < steps; ++step) {
      const long start = (step * batch) % clips;
      tensor_t x = mscl::ops::slice(data, 0, start, std::min(start + batch, clips)).clone();
      std::vector<mscl::index_t> y(labels.begin() + start, labels.begin() + start + x.shape()[0]);
      auto loss = mscl::ops::cross_entropy(net.forward(x), y);
      opt.zero_grad();
      loss.backward();
      mscl::optim::clip_grad_norm(net.parameters(), 40.0);
      opt.step();
      const double l = loss.item();
      if (step == 0) first = l;
      last = l;
      bar.update(step + 1, "loss " + std::to_string(l));
      log.write({{"step", step + 1}, {"loss", l}, {"lr", lr}});
    }
    std::cout << "loss: first step " << first << ", last step " << last << (last < first ? " (falling)" : " (NOT falling)")
              << "\n";
    return last < first ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
