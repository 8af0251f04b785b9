// synthetic_learnability_prog: the learnability bar of the built-in synthetic motion dataset
// (include/mscl/data/synthetic.hpp). Trains the demo backbone SUPERVISED on N_train videos and
// reports test accuracy against wall and CPU time. This supervised figure is the ceiling every
// self-supervised result on the same data is read against (shared/spec/PROTOTYPE.md finding 1).
//
// Output (stdout): one JSON line per evaluation
//   {"step":..,"epoch":..,"wall_s":..,"train_wall_s":..,"cpu_s":..,"lr":..,"train_loss":..,
//    "train_acc":..,"test_acc":..}
// and a final line {"final":true, "best_test_acc":.., "final_test_acc":.., "time_to_target_s":.., ...}.
// wall_s includes evaluation; train_wall_s excludes it; cpu_s is process user+system time (the
// machine is shared, so wall times are noisy; cpu_s/threads is the better cost figure).
//
// Defaults are the demo settings (see --help); exit status 0 when the target accuracy is reached.
#include <sys/resource.h>
#include <sys/time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <mscl/data/synthetic.hpp>
#include <mscl/mscl.hpp>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

const char* usage =
    "usage: synthetic_learnability_prog [options]   (defaults = the demo settings)\n"
    "  data:   --classes 6 --train 2000 --test 200 --video-frames 32 --size 40 --objects 4,6\n"
    "          --object-size 0.15,0.25 --motion 2.0 --background static|drifting|flat --bg-contrast 0.12\n"
    "          --textures noise,stripes,checkers --pause-prob 0.2 --jitter 20 --data-seed 0\n"
    "  clip:   --frames 8 --stride 2 --crop 32\n"
    "  model:  --width 16 (r3d_10: one basic block per stage, widths w,2w,4w,8w) --model-seed 0\n"
    "  recipe: --batch 16 --lr 0.01 --wd 5e-4 --steps 800 --warmup 20 (cosine to 0) --eval-every 100\n"
    "          --budget-s 0 (stop after this much train wall time; 0 = none) --target 0.9 --threads 2\n"
    "          --aug-seed 1\n";

struct args_t {
  mscl::data::synthetic_motion_options data;
  long train = 2000, test = 200;
  int frames = 8, stride = 2, crop = 32;
  long width = 16;
  std::uint64_t model_seed = 0, aug_seed = 1;
  long batch = 16, steps = 800, warmup = 20, eval_every = 100;
  double lr = 0.01, wd = 5e-4, budget_s = 0, target = 0.9;
  int threads = 2;
};

args_t parse(int argc, char** argv) {
  args_t a;
  a.data.num_classes = 6;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--help" || k == "-h") {
      std::cout << usage;
      std::exit(0);
    }
    MSCL_CHECK(i + 1 < argc, mscl::config_error, "synthetic_learnability_prog: option " << k << " needs a value");
    const std::string v = argv[++i];
    auto& d = a.data;
    if (k == "--classes") d.num_classes = std::stoi(v);
    else if (k == "--train") a.train = std::stol(v);
    else if (k == "--test") a.test = std::stol(v);
    else if (k == "--video-frames") d.frames = std::stoi(v);
    else if (k == "--size") d.height = d.width = std::stoi(v);
    else if (k == "--objects") {
      const auto comma = v.find(',');
      d.min_objects = std::stoi(v.substr(0, comma));
      d.max_objects = comma == std::string::npos ? d.min_objects : std::stoi(v.substr(comma + 1));
    } else if (k == "--object-size") {
      const auto comma = v.find(',');
      d.object_size_min = std::stod(v.substr(0, comma));
      d.object_size_max = comma == std::string::npos ? d.object_size_min : std::stod(v.substr(comma + 1));
    } else if (k == "--motion") d.motion_px = std::stod(v);
    else if (k == "--textures") {
      unsigned mask = 0;
      for (std::size_t b = 0; b < v.size();) {
        const std::size_t e = std::min(v.find(',', b), v.size());
        const std::string t = v.substr(b, e - b);
        if (t == "noise") mask |= mscl::data::texture_noise;
        else if (t == "stripes") mask |= mscl::data::texture_stripes;
        else if (t == "checkers") mask |= mscl::data::texture_checkers;
        else if (t == "flat") mask |= mscl::data::texture_flat;
        else throw mscl::config_error("synthetic_learnability_prog: unknown texture '" + t + "'");
        b = e + 1;
      }
      d.texture_kinds = mask;
    } else if (k == "--pause-prob") d.pause_probability = std::stod(v);
    else if (k == "--jitter") d.direction_jitter_deg = std::stod(v);
    else if (k == "--bg-contrast") d.background_contrast = std::stod(v);
    else if (k == "--background") {
      if (v == "static") d.background = mscl::data::background_kind::static_texture;
      else if (v == "drifting") d.background = mscl::data::background_kind::drifting;
      else if (v == "flat") d.background = mscl::data::background_kind::flat;
      else throw mscl::config_error("synthetic_learnability_prog: --background must be static, drifting or flat");
    } else if (k == "--data-seed") d.seed = std::stoull(v);
    else if (k == "--frames") a.frames = std::stoi(v);
    else if (k == "--stride") a.stride = std::stoi(v);
    else if (k == "--crop") a.crop = std::stoi(v);
    else if (k == "--width") a.width = std::stol(v);
    else if (k == "--model-seed") a.model_seed = std::stoull(v);
    else if (k == "--aug-seed") a.aug_seed = std::stoull(v);
    else if (k == "--batch") a.batch = std::stol(v);
    else if (k == "--lr") a.lr = std::stod(v);
    else if (k == "--wd") a.wd = std::stod(v);
    else if (k == "--steps") a.steps = std::stol(v);
    else if (k == "--warmup") a.warmup = std::stol(v);
    else if (k == "--eval-every") a.eval_every = std::stol(v);
    else if (k == "--budget-s") a.budget_s = std::stod(v);
    else if (k == "--target") a.target = std::stod(v);
    else if (k == "--threads") a.threads = std::stoi(v);
    else throw mscl::config_error("synthetic_learnability_prog: unknown option " + k + " (see --help)");
  }
  MSCL_CHECK(a.train >= a.batch && a.test > 0 && a.batch > 0 && a.steps > 0 && a.eval_every > 0, mscl::config_error,
             "synthetic_learnability_prog: need train >= batch > 0, test > 0, steps > 0, eval-every > 0");
  return a;
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

std::vector<mscl::index_t> argmax_rows(const mscl::tensor<float>& logits) {
  const auto n = logits.shape()[0], c = logits.shape()[1];
  const mscl::tensor<float> l = logits.is_contiguous() ? logits : logits.clone();
  std::vector<mscl::index_t> out;
  for (mscl::index_t i = 0; i < n; ++i) {
    const float* r = l.data() + i * c;
    out.push_back(mscl::index_t(std::max_element(r, r + c) - r));
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const args_t a = parse(argc, argv);
#ifdef _OPENMP
    omp_set_num_threads(a.threads);
#endif
    using clock = std::chrono::steady_clock;
    mscl::data::clip_sampling s;
    s.frames = a.frames;
    s.stride = a.stride;
    s.crop_height = s.crop_width = a.crop;
    const mscl::data::synthetic_motion_dataset train(a.data, 0, a.train, s);
    const mscl::data::synthetic_motion_dataset test(a.data, a.train, a.test, s);
    auto net = mscl::models::r3d_10<float>(a.data.num_classes, a.model_seed, a.width);
    mscl::optim::sgd<float> opt(net.parameters(), {a.lr, 0.9, a.wd, false});
    const mscl::optim::cosine_schedule sched{a.lr, 0.0, double(a.steps), double(a.warmup), 0.0};
    mscl::generator aug(a.aug_seed);

    nlohmann::json header = {{"config", true},
                             {"classes", a.data.num_classes},
                             {"train_videos", a.train},
                             {"test_videos", a.test},
                             {"video", {a.data.frames, a.data.height, a.data.width}},
                             {"objects", {a.data.min_objects, a.data.max_objects}},
                             {"motion_px", a.data.motion_px},
                             {"clip", {a.frames, a.stride, a.crop}},
                             {"model", "r3d_10"},
                             {"width", a.width},
                             {"parameters", net.parameter_count()},
                             {"batch", a.batch},
                             {"lr", a.lr},
                             {"wd", a.wd},
                             {"steps", a.steps},
                             {"warmup", a.warmup},
                             {"threads", a.threads}};
    std::cout << header.dump() << std::endl;

    const auto t0 = clock::now();
    const double cpu0 = cpu_seconds();
    double eval_s = 0, best = 0, last_acc = 0, time_to_target = -1, cpu_to_target = -1;
    long step_to_target = -1;
    std::vector<std::int64_t> order(static_cast<std::size_t>(a.train));
    std::iota(order.begin(), order.end(), 0);
    std::size_t cursor = order.size();
    double loss_sum = 0;
    long loss_n = 0, correct = 0, seen = 0, step = 0;

    std::vector<long> per_class_right, per_class_n;
    auto evaluate = [&]() {
      const auto e0 = clock::now();
      mscl::no_grad guard;
      net.eval();
      long right = 0;
      per_class_right.assign(std::size_t(a.data.num_classes), 0);
      per_class_n.assign(std::size_t(a.data.num_classes), 0);
      for (std::int64_t b = 0; b < a.test; b += a.batch) {
        std::vector<std::int64_t> ks;
        for (std::int64_t k = b; k < std::min<std::int64_t>(a.test, b + a.batch); ++k) ks.push_back(k);
        auto [x, y] = test.batch(ks, nullptr);
        const auto pred = argmax_rows(net.forward(x));
        for (std::size_t j = 0; j < y.size(); ++j) {
          right += pred[j] == y[j];
          per_class_right[std::size_t(y[j])] += pred[j] == y[j];
          per_class_n[std::size_t(y[j])]++;
        }
      }
      net.train();
      eval_s += std::chrono::duration<double>(clock::now() - e0).count();
      return double(right) / double(a.test);
    };

    for (step = 1; step <= a.steps; ++step) {
      if (cursor + std::size_t(a.batch) > order.size()) {  // new epoch: reshuffle (Fisher–Yates)
        for (std::size_t i = order.size() - 1; i > 0; --i)
          std::swap(order[i], order[std::size_t(aug.randint(0, mscl::index_t(i)))]);
        cursor = 0;
      }
      std::vector<std::int64_t> ks(order.begin() + std::ptrdiff_t(cursor), order.begin() + std::ptrdiff_t(cursor + a.batch));
      cursor += std::size_t(a.batch);
      auto [x, y] = train.batch(ks, &aug);
      const double lr = sched(double(step - 1));
      opt.set_lr(lr);
      auto logits = net.forward(x);
      auto loss = mscl::ops::cross_entropy(logits, y);
      opt.zero_grad();
      loss.backward();
      mscl::optim::clip_grad_norm(net.parameters(), 10.0);
      opt.step();
      loss_sum += loss.item();
      ++loss_n;
      const auto pred = argmax_rows(logits.detach());
      for (std::size_t j = 0; j < y.size(); ++j) correct += pred[j] == y[j];
      seen += long(y.size());

      const double train_wall = std::chrono::duration<double>(clock::now() - t0).count() - eval_s;
      const bool out_of_time = a.budget_s > 0 && train_wall >= a.budget_s;
      if (step % a.eval_every == 0 || step == a.steps || out_of_time) {
        last_acc = evaluate();
        best = std::max(best, last_acc);
        const double wall = std::chrono::duration<double>(clock::now() - t0).count();
        const double cpu = cpu_seconds() - cpu0;
        if (last_acc >= a.target && time_to_target < 0) {
          time_to_target = wall;
          cpu_to_target = cpu;
          step_to_target = step;
        }
        nlohmann::json rec = {{"step", step},
                              {"epoch", double(step * a.batch) / double(a.train)},
                              {"wall_s", wall},
                              {"train_wall_s", wall - eval_s},
                              {"cpu_s", cpu},
                              {"lr", lr},
                              {"train_loss", loss_sum / double(std::max(1L, loss_n))},
                              {"train_acc", double(correct) / double(std::max(1L, seen))},
                              {"test_acc", last_acc}};
        std::cout << rec.dump() << std::endl;
        loss_sum = 0;
        loss_n = correct = seen = 0;
      }
      if (out_of_time) break;
    }
    const double wall = std::chrono::duration<double>(clock::now() - t0).count();
    nlohmann::json per_class = nlohmann::json::object();
    for (std::size_t c = 0; c < per_class_n.size(); ++c)
      per_class[mscl::data::motion_class_name(int(c))] = double(per_class_right[c]) / double(std::max(1L, per_class_n[c]));
    nlohmann::json fin = {{"final", true},
                          {"final_per_class_acc", per_class},
                          {"steps", std::min(step, a.steps)},
                          {"best_test_acc", best},
                          {"final_test_acc", last_acc},
                          {"target", a.target},
                          {"reached", time_to_target >= 0},
                          {"time_to_target_wall_s", time_to_target},
                          {"time_to_target_cpu_s", cpu_to_target},
                          {"step_to_target", step_to_target},
                          {"wall_s", wall},
                          {"train_wall_s", wall - eval_s},
                          {"eval_wall_s", eval_s},
                          {"cpu_s", cpu_seconds() - cpu0},
                          {"threads", a.threads}};
    std::cout << fin.dump() << std::endl;
    return time_to_target >= 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
