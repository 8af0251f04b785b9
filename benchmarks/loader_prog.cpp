// loader_prog: sustained throughput of the MSCL rawframes loader (data/loader.hpp +
// data/mscl_clip_source.hpp) against the CPU training step's consumption.
//
//   loader_prog [--dir DIR] [--videos 16] [--frames 96] [--height 128] [--width 171] [--batch 8]
//               [--batches 8] [--workers 1,2] [--fast-atan2] [--step-iters 2] [--step-threads 2]
//               [--step-seconds S] [--keep] [--raw-flow] [--device-augment]
//
// Writes (unless DIR already holds it) a rawframes data set like UCF101 at 128 px short side:
// rendered synthetic-motion RGB JPEGs (quality 95) and quantised flow JPEG pairs (bound 20, the
// MMAction2 layout) of a smooth moving field, one flow per frame. Then, for each worker count,
// builds `--batches` batches of 8 clips x 8 frames (stride 8) at 112x112 with the full MSCL view
// pipeline (crop synced RGB/flow, flip, colour jitter/grey/blur, normalise, FRA pairing, colour
// coding) after one warm-up batch, and reports clips/s. The bar: loader clips/s >= 2x the
// training step's clips/s (batch / step seconds). The step is measured in the same run, on a
// batch this loader produced: the full MSCL step at the paper's shapes (R3D-18, K = 65536, SGD),
// `--step-threads` threads, median of `--step-iters` steps after one warm-up step — so the ratio
// compares two numbers taken under the same machine load. `--step-seconds S` skips that
// measurement and uses S (e.g. a figure from benchmarks/mscl_step_prog). A component profile
// (one thread) says where a sample's time goes. `--raw-flow` also times, for each worker count
// and in the same run, the loader handing over raw 2-channel flows (mscl_clip_options::
// color_code_flow = false: the colour coding then runs on the training device,
// data::on_backend_source). `--device-augment` also times the loader as `mscl-pretrain --device
// cuda` runs it by default: raw flows, and RGB views cropped and flipped only, their jitter, grey,
// blur and normalisation left to the training device as well (mscl_clip_options::rgb_photometric
// = false, augment/photometric_batch.hpp).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <mscl/data/loader.hpp>
#include <mscl/data/mscl_clip_source.hpp>
#include <mscl/data/synthetic.hpp>
#include <mscl/optim/sgd.hpp>
#include <mscl/ssl/mscl_objective.hpp>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace fs = std::filesystem;
using namespace mscl;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct args_t {
  std::string dir = (fs::temp_directory_path() / "mscl_loader_bench").string();
  int videos = 16, frames = 96, height = 128, width = 171, batches = 8;
  index_t batch = 8;
  std::vector<int> workers{1, 2};
  bool fast_atan2 = false, keep = false, raw_flow = false, device_augment = false;
  double step_seconds = 0;  ///< > 0: use this instead of measuring the step
  int step_iters = 2, step_threads = 2;
};

/// Median seconds of the full MSCL training step (paper shapes) on `batch`, with `threads` threads.
double measure_step_seconds(const ssl::mscl_batch<float>& batch, int iters, int threads) {
#ifdef _OPENMP
  const int previous = omp_get_max_threads();
  omp_set_num_threads(threads);
#endif
  ssl::mscl_objective<float> obj(ssl::mscl_options{});
  optim::sgd<float> opt(obj.trainable_parameters(), {0.02, 0.9, 1e-4, false});
  std::vector<double> t;
  for (int i = 0; i < iters + 1; ++i) {  // the first one warms up (allocator, caches)
    const double t0 = now();
    auto loss = obj.forward(batch);
    opt.zero_grad();
    loss.backward();
    optim::clip_grad_norm(obj.trainable_parameters(), 40.0);
    opt.step();
    if (i > 0) t.push_back(now() - t0);
  }
#ifdef _OPENMP
  omp_set_num_threads(previous);
#endif
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void write_dataset(const args_t& a) {
  const std::string stamp = a.dir + "/dataset.txt";
  std::ostringstream id;
  id << a.videos << " " << a.frames << " " << a.height << " " << a.width << "\n";
  {
    std::ifstream in(stamp);
    std::stringstream have;
    have << in.rdbuf();
    if (in.good() && have.str() == id.str()) return;  // already there
  }
  fs::create_directories(a.dir);
  data::synthetic_motion_options so;
  so.frames = a.frames;
  so.height = a.height;
  so.width = a.width;
  so.motion_px = 4.0;
  const data::synthetic_motion_generator gen(so);
  std::ofstream list(a.dir + "/list.txt");
  std::fprintf(stderr, "loader_prog: writing %d videos x %d frames (%dx%d) to %s\n", a.videos, a.frames, a.height, a.width,
               a.dir.c_str());
  for (int v = 0; v < a.videos; ++v) {
    const std::string d = a.dir + "/vid_" + std::to_string(v);
    fs::create_directories(d);
    const data::frame_sequence frames = gen.render(v);
    for (int f = 0; f < a.frames; ++f) {
      char name[64];
      std::snprintf(name, sizeof name, "/img_%05d.jpg", f + 1);
      io::write_jpeg(d + name, frames[std::size_t(f)], 95);
      // a smooth field that changes over time: what TV-L1 gives for moving textured objects
      data::image_u8 qx(a.height, a.width, 1), qy(a.height, a.width, 1);
      for (int y = 0; y < a.height; ++y)
        for (int x = 0; x < a.width; ++x) {
          const double u = 6.0 * std::sin(0.05 * x + 0.2 * f + v) + 2.0 * std::cos(0.11 * y);
          const double w = 5.0 * std::cos(0.07 * y - 0.15 * f) + 1.5 * std::sin(0.09 * x + v);
          qx.at(y, x, 0) = flow::quantize_flow_value(float(u));
          qy.at(y, x, 0) = flow::quantize_flow_value(float(w));
        }
      std::snprintf(name, sizeof name, "/flow_x_%05d.jpg", f + 1);
      io::write_jpeg(d + name, qx, 95);
      std::snprintf(name, sizeof name, "/flow_y_%05d.jpg", f + 1);
      io::write_jpeg(d + name, qy, 95);
    }
    list << "vid_" << v << " " << a.frames << " " << gen.label_of(v) << "\n";
  }
  list.close();
  std::ofstream(stamp) << id.str();
}

data::mscl_clip_options clip_options(const args_t& a, bool color_code_flow = true, bool rgb_photometric = true) {
  data::mscl_clip_options o;
  o.data_root = a.dir;
  o.annotation_file = a.dir + "/list.txt";
  o.batch = a.batch;
  o.fast_atan2 = a.fast_atan2;
  o.color_code_flow = color_code_flow;
  o.rgb_photometric = rgb_photometric;
  o.seed = 1;
  return o;  // everything else: the MSCL defaults (8 x stride 8, 128 short side, 112 crop, FRA, all augmentations)
}

}  // namespace

int main(int argc, char** argv) {
  try {
    args_t a;
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      auto value = [&]() -> std::string {
        MSCL_CHECK(i + 1 < argc, config_error, "loader_prog: " << k << " needs a value");
        return argv[++i];
      };
      if (k == "--help" || k == "-h") {
        std::cout << "usage: loader_prog [--dir DIR] [--videos 16] [--frames 96] [--height 128] [--width 171] [--batch 8]\n"
                     "                   [--batches 8] [--workers 1,2] [--fast-atan2] [--step-iters 2] [--step-threads 2]\n"
                     "                   [--step-seconds S] [--keep] [--raw-flow] [--device-augment]\n"
                     "Loader clips/s (8 frames x 112 px, RGB + flow + FRA views) vs the training step's clips/s,\n"
                     "the step (R3D-18 MSCL, K 65536) measured in the same run unless --step-seconds is given.\n"
                     "--raw-flow: also the loader with raw 2-channel flows (colour coding left to the training device).\n"
                     "--device-augment: also raw flows plus RGB cropped and flipped only (jitter, grey, blur, normalisation\n"
                     "left to the training device), the default of mscl-pretrain --device cuda.\n";
        return 0;
      } else if (k == "--dir") a.dir = value();
      else if (k == "--videos") a.videos = std::stoi(value());
      else if (k == "--frames") a.frames = std::stoi(value());
      else if (k == "--height") a.height = std::stoi(value());
      else if (k == "--width") a.width = std::stoi(value());
      else if (k == "--batch") a.batch = std::stol(value());
      else if (k == "--batches") a.batches = std::stoi(value());
      else if (k == "--step-seconds") a.step_seconds = std::stod(value());
      else if (k == "--step-iters") a.step_iters = std::stoi(value());
      else if (k == "--step-threads") a.step_threads = std::stoi(value());
      else if (k == "--fast-atan2") a.fast_atan2 = true;
      else if (k == "--keep") a.keep = true;
      else if (k == "--raw-flow") a.raw_flow = true;
      else if (k == "--device-augment") a.device_augment = true;
      else if (k == "--workers") {
        a.workers.clear();
        std::stringstream ss(value());
        for (std::string w; std::getline(ss, w, ',');) a.workers.push_back(std::stoi(w));
      } else throw config_error("loader_prog: unknown option " + k + " (see --help)");
    }
    MSCL_CHECK(a.videos >= 1 && a.frames >= 2 && a.batches >= 1 && a.batch >= 1, config_error, "loader_prog: bad sizes");
    MSCL_CHECK(a.step_seconds > 0 || (a.step_iters >= 1 && a.step_threads >= 1), config_error,
               "loader_prog: --step-iters and --step-threads must be >= 1 (or give --step-seconds)");
    write_dataset(a);
    auto src = std::make_shared<const data::mscl_clip_source>(clip_options(a));

    // Component profile, one thread: what one sample costs and where it goes.
    {
      const auto vi = src->info(0);
      const int reps = 32;
      double t = now();
      for (int r = 0; r < reps; ++r) (void)io::read_jpeg(vi->rgb.rgb_path(r % a.frames), 3);
      const double rgb_ms = (now() - t) / reps * 1e3;
      t = now();
      for (int r = 0; r < reps; ++r) (void)vi->flow.read_flow(r % (a.frames - 1));
      const double flow_ms = (now() - t) / reps * 1e3;
      tensor<float> f = tensor<float>::empty({2, 32, 112, 112});
      generator g(3);
      g.fill_uniform(f.data(), f.numel(), -0.7, 0.7);
      double code_ms[2];
      for (int fast = 0; fast < 2; ++fast) {
        augment::flow_color_code_options co;
        co.fast_atan2 = fast == 1;
        const augment::flow_color_code coder(co);
        tensor<float> c = f.clone();
        t = now();
        coder.apply_flow({}, c);
        code_ms[fast] = (now() - t) * 1e3;
      }
      t = now();
      const int samples = 8;
      for (int s = 0; s < samples; ++s) (void)src->sample(1000 + s, s % a.batch);
      const double sample_ms = (now() - t) / samples * 1e3;
      std::printf("profile (1 thread): one sample %.1f ms = 16 RGB JPEG decodes (%.2f ms each) + 16 flow pairs (%.2f ms each)"
                  " + colour coding 4x8 maps at 112^2 (%.1f ms libm atan2, %.1f ms fast_atan2) + the rest (crop, resize,"
                  " augment, FRA: %.1f ms)\n",
                  sample_ms, rgb_ms, flow_ms, code_ms[0], code_ms[1],
                  sample_ms - 16 * (rgb_ms + flow_ms) - code_ms[a.fast_atan2 ? 1 : 0]);
    }

    bool step_measured = false;
    if (a.step_seconds <= 0) {
      data::loader_options lo;
      lo.workers = 1;
      data::prefetch_loader<data::mscl_clip_source> one(src, lo);
      const auto b = one.batch(0);
      a.step_seconds = measure_step_seconds(b, a.step_iters, a.step_threads);
      step_measured = true;
      std::printf("training step (R3D-18 MSCL, K 65536, batch %ld, %d threads, median of %d): %.2f s\n", long(a.batch),
                  a.step_threads, a.step_iters, a.step_seconds);
      std::fflush(stdout);
    }
    const double step_clips = double(a.batch) / a.step_seconds;
    auto raw_src = std::make_shared<const data::mscl_clip_source>(clip_options(a, false));
    auto device_src = std::make_shared<const data::mscl_clip_source>(clip_options(a, false, false));
    const char* labels[] = {"colour-coded by the loader", "raw (coded on the training device)",
                            "raw, RGB jitter/grey/blur/normalisation on the training device"};
    for (int w : a.workers)
      for (int mode : {0, 1, 2}) {
        if ((mode == 1 && !a.raw_flow) || (mode == 2 && !a.device_augment)) continue;
        data::loader_options lo;
        lo.workers = w;
        lo.queue_depth = 4;
        data::prefetch_loader<data::mscl_clip_source> loader(mode == 0 ? src : mode == 1 ? raw_src : device_src, lo);
        (void)loader.batch(0);  // warm-up (probes, first permutation)
        const double t0 = now();
        for (long i = 1; i <= a.batches; ++i) (void)loader.batch(i);
        const double secs = now() - t0;
        const double clips = double(a.batches) * double(a.batch) / secs;
        std::printf("{\"workers\": %d, \"batches\": %d, \"batch\": %ld, \"seconds\": %.3f, \"loader_clips_per_s\": %.2f, "
                    "\"step_clips_per_s\": %.3f, \"step_measured_in_this_run\": %s, \"ratio\": %.1f, \"bar_2x_met\": %s, "
                    "\"fast_atan2\": %s, \"flow\": \"%s\"}\n",
                    w, a.batches, long(a.batch), secs, clips, step_clips, step_measured ? "true" : "false",
                    clips / step_clips, clips >= 2 * step_clips ? "true" : "false", a.fast_atan2 ? "true" : "false",
                    labels[mode]);
        std::fflush(stdout);
      }
    if (!a.keep && a.dir == (fs::temp_directory_path() / "mscl_loader_bench").string()) fs::remove_all(a.dir);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
