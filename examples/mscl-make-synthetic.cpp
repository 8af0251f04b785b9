// mscl-make-synthetic: writes the built-in synthetic motion dataset (include/mscl/data/synthetic.hpp)
// to disk in the MMAction2 rawframes layout, so that every tool that reads rawframes (flow
// extraction, MDS sample generation, the trainers) can use it like UCF101:
//
//   OUT/<class>/<video>/img_00001.jpg ...        (1-based, one directory per video)
//   OUT/train_list.txt, OUT/test_list.txt        (`<class>/<video> <total_frames> <label>`, 0-based labels)
//   OUT/classInd.txt                             (`1 right` ...)
//   OUT/synthetic_meta.json                      (every generator option, to regenerate or serve
//                                                 the same videos from memory)
//
// Without JPEG support (MSCL_WITH_JPEG unset) frames are written as binary PPM (img_00001.ppm),
// which the rawframes reader does not open; the program says so.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <mscl/config.hpp>
#include <mscl/data/annotations.hpp>
#include <mscl/data/synthetic.hpp>
#include <mscl/train/progress.hpp>
#if MSCL_WITH_JPEG
#include <mscl/io/jpeg.hpp>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace fs = std::filesystem;

namespace {

const char* usage =
    "usage: mscl-make-synthetic --out DIR [--train N] [--test N] [--classes K] [--frames T]\n"
    "         [--size S | --height H --width W] [--objects MIN,MAX] [--motion PX] [--seed S]\n"
    "         [--pause-prob P] [--speed-change-prob P] [--direction-change-prob P] [--jitter DEG]\n"
    "         [--background static|drifting|flat] [--textures noise,stripes,checkers,flat]\n"
    "         [--format jpg|ppm] [--quality Q] [--threads N]\n"
    "\n"
    "Renders the synthetic motion dataset (classes defined only by motion) as MMAction2 rawframes.\n"
    "Videos 0..N_train-1 form the train split, the next N_test videos the test split; label of\n"
    "video i is i mod K, so splits whose sizes are multiples of K are exactly balanced.\n"
    "Classes (first K of): right left down up oscillate still rotate_cw rotate_ccw zoom_in zoom_out.\n"
    "Defaults (the demo data): --train 2000 --test 200 --classes 6 --frames 32 --size 40 --objects 4,6\n"
    "          --motion 2.0 --seed 0 --background static --format jpg (ppm without JPEG support) --quality 95.\n"
    "--motion is the nominal speed in pixels per rendered frame; speed changes within a video\n"
    "(levels x0.5..x1.5, pauses, heading changes, oscillation reversals), see synthetic.hpp.\n";

struct args_t {
  std::string out;
  long train = 2000, test = 200;
  std::string format;
  int quality = 95, threads = 0;
  mscl::data::synthetic_motion_options opt;
};

args_t parse(int argc, char** argv) {
  args_t a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--help" || k == "-h") {
      std::cout << usage;
      std::exit(0);
    }
    MSCL_CHECK(i + 1 < argc, mscl::config_error, "mscl-make-synthetic: option " << k << " needs a value");
    const std::string v = argv[++i];
    auto& o = a.opt;
    if (k == "--out") a.out = v;
    else if (k == "--train") a.train = std::stol(v);
    else if (k == "--test") a.test = std::stol(v);
    else if (k == "--classes") o.num_classes = std::stoi(v);
    else if (k == "--frames") o.frames = std::stoi(v);
    else if (k == "--size") o.height = o.width = std::stoi(v);
    else if (k == "--height") o.height = std::stoi(v);
    else if (k == "--width") o.width = std::stoi(v);
    else if (k == "--objects") {
      const auto comma = v.find(',');
      o.min_objects = std::stoi(v.substr(0, comma));
      o.max_objects = comma == std::string::npos ? o.min_objects : std::stoi(v.substr(comma + 1));
    } else if (k == "--motion") o.motion_px = std::stod(v);
    else if (k == "--seed") o.seed = std::stoull(v);
    else if (k == "--pause-prob") o.pause_probability = std::stod(v);
    else if (k == "--speed-change-prob") o.speed_change_probability = std::stod(v);
    else if (k == "--direction-change-prob") o.direction_change_probability = std::stod(v);
    else if (k == "--jitter") o.direction_jitter_deg = std::stod(v);
    else if (k == "--background") {
      if (v == "static") o.background = mscl::data::background_kind::static_texture;
      else if (v == "drifting") o.background = mscl::data::background_kind::drifting;
      else if (v == "flat") o.background = mscl::data::background_kind::flat;
      else throw mscl::config_error("mscl-make-synthetic: --background must be static, drifting or flat, got " + v);
    } else if (k == "--textures") {
      unsigned mask = 0;
      std::stringstream ss(v);
      std::string t;
      while (std::getline(ss, t, ',')) {
        if (t == "noise") mask |= mscl::data::texture_noise;
        else if (t == "stripes") mask |= mscl::data::texture_stripes;
        else if (t == "checkers") mask |= mscl::data::texture_checkers;
        else if (t == "flat") mask |= mscl::data::texture_flat;
        else throw mscl::config_error("mscl-make-synthetic: unknown texture '" + t + "' in --textures " + v);
      }
      o.texture_kinds = mask;
    } else if (k == "--format") a.format = v;
    else if (k == "--quality") a.quality = std::stoi(v);
    else if (k == "--threads") a.threads = std::stoi(v);
    else throw mscl::config_error("mscl-make-synthetic: unknown option " + k + " (see --help)");
  }
  MSCL_CHECK(!a.out.empty(), mscl::config_error, "mscl-make-synthetic: --out DIR is required (see --help)");
  MSCL_CHECK(a.train >= 0 && a.test >= 0 && a.train + a.test > 0, mscl::config_error,
             "mscl-make-synthetic: need --train/--test >= 0 with at least one video, got " << a.train << "/" << a.test);
  MSCL_CHECK(a.quality >= 1 && a.quality <= 100, mscl::config_error,
             "mscl-make-synthetic: --quality must be in [1, 100], got " << a.quality);
#if MSCL_WITH_JPEG
  if (a.format.empty()) a.format = "jpg";
#else
  if (a.format.empty()) a.format = "ppm";
  MSCL_CHECK(a.format == "ppm", mscl::config_error,
             "mscl-make-synthetic: this build has no JPEG support (MSCL_WITH_JPEG unset); only --format ppm works");
#endif
  MSCL_CHECK(a.format == "jpg" || a.format == "ppm", mscl::config_error,
             "mscl-make-synthetic: --format must be jpg or ppm, got " << a.format);
  a.opt.validate("mscl-make-synthetic");
  return a;
}

void write_ppm(const std::string& path, const mscl::data::image_u8& img) {
  std::ofstream f(path, std::ios::binary);
  MSCL_CHECK(f.good(), mscl::io_error, "mscl-make-synthetic: cannot open " << path << " for writing");
  f << "P6\n" << img.width << " " << img.height << "\n255\n";
  f.write(reinterpret_cast<const char*>(img.pixels.data()), std::streamsize(img.pixels.size()));
  MSCL_CHECK(f.good(), mscl::io_error, "mscl-make-synthetic: write to " << path << " failed");
}

nlohmann::json options_json(const mscl::data::synthetic_motion_options& o) {
  const char* bg = o.background == mscl::data::background_kind::static_texture ? "static"
                   : o.background == mscl::data::background_kind::drifting     ? "drifting"
                                                                                : "flat";
  std::vector<std::string> classes;
  for (int k = 0; k < o.num_classes; ++k) classes.push_back(mscl::data::motion_class_name(k));
  return {{"num_classes", o.num_classes},
          {"classes", classes},
          {"frames", o.frames},
          {"height", o.height},
          {"width", o.width},
          {"min_objects", o.min_objects},
          {"max_objects", o.max_objects},
          {"object_size_min", o.object_size_min},
          {"object_size_max", o.object_size_max},
          {"motion_px", o.motion_px},
          {"speed_min", o.speed_min},
          {"speed_max", o.speed_max},
          {"segment_min", o.segment_min},
          {"segment_max", o.segment_max},
          {"speed_change_probability", o.speed_change_probability},
          {"pause_probability", o.pause_probability},
          {"pause_max", o.pause_max},
          {"direction_change_probability", o.direction_change_probability},
          {"direction_jitter_deg", o.direction_jitter_deg},
          {"osc_half_period_min", o.osc_half_period_min},
          {"osc_half_period_max", o.osc_half_period_max},
          {"zoom_rate", o.zoom_rate},
          {"zoom_min", o.zoom_min},
          {"zoom_max", o.zoom_max},
          {"max_spin", o.max_spin},
          {"texture_kinds", o.texture_kinds},
          {"background", bg},
          {"background_contrast", o.background_contrast},
          {"background_drift_px", o.background_drift_px},
          {"min_object_contrast", o.min_object_contrast},
          {"seed", o.seed}};
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const args_t a = parse(argc, argv);
#ifdef _OPENMP
    if (a.threads > 0) omp_set_num_threads(a.threads);
#endif
    const mscl::data::synthetic_motion_generator gen(a.opt);
    const long total = a.train + a.test;
    fs::create_directories(a.out);
    for (int k = 0; k < a.opt.num_classes; ++k) fs::create_directories(fs::path(a.out) / mscl::data::motion_class_name(k));

    std::vector<mscl::data::rawframe_entry> entries(static_cast<std::size_t>(total));
    mscl::train::progress_bar bar(total, "videos", std::max(1L, total / 20));
    std::atomic<long> done{0};
    std::mutex bar_mutex;
    std::string failure;
    std::mutex failure_mutex;
#pragma omp parallel for schedule(dynamic, 1)
    for (long i = 0; i < total; ++i) {
      try {
        const int label = gen.label_of(i);
        char name[64];
        std::snprintf(name, sizeof name, "v_%s_%06ld", mscl::data::motion_class_name(label), i);
        const std::string rel = std::string(mscl::data::motion_class_name(label)) + "/" + name;
        const fs::path dir = fs::path(a.out) / rel;
        fs::create_directories(dir);
        const auto plan = gen.plan(i);
        mscl::data::image_u8 frame;
        for (int t = 0; t < plan.frames; ++t) {
          mscl::data::synthetic_motion_generator::render_frame(plan, t, frame);
          char file[32];
          std::snprintf(file, sizeof file, "img_%05d.%s", t + 1, a.format.c_str());
          const std::string path = (dir / file).string();
#if MSCL_WITH_JPEG
          if (a.format == "jpg") mscl::io::write_jpeg(path, frame, a.quality);
          else write_ppm(path, frame);
#else
          write_ppm(path, frame);
#endif
        }
        auto& e = entries[std::size_t(i)];
        e.frame_dir = rel;
        e.total_frames = plan.frames;
        e.labels = {label};
        const long d = ++done;
        std::lock_guard<std::mutex> lock(bar_mutex);
        bar.update(d);
      } catch (const std::exception& ex) {
        std::lock_guard<std::mutex> lock(failure_mutex);
        if (failure.empty()) failure = ex.what();
      }
    }
    MSCL_CHECK(failure.empty(), mscl::io_error, failure);

    const std::vector<mscl::data::rawframe_entry> train(entries.begin(), entries.begin() + a.train);
    const std::vector<mscl::data::rawframe_entry> test(entries.begin() + a.train, entries.end());
    mscl::data::write_rawframe_list((fs::path(a.out) / "train_list.txt").string(), train);
    mscl::data::write_rawframe_list((fs::path(a.out) / "test_list.txt").string(), test);
    mscl::data::class_index ci;
    for (int k = 0; k < a.opt.num_classes; ++k) ci.names.push_back(mscl::data::motion_class_name(k));
    mscl::data::write_class_index((fs::path(a.out) / "classInd.txt").string(), ci);
    nlohmann::json meta = {{"generator", "mscl::data::synthetic_motion_generator"},
                           {"mscl_version", mscl::version_string},
                           {"options", options_json(a.opt)},
                           {"train_videos", {0, a.train}},
                           {"test_videos", {a.train, total}},
                           {"frame_template", std::string("img_{:05d}.") + a.format},
                           {"frame_start", 1}};
    mscl::data::write_text_file((fs::path(a.out) / "synthetic_meta.json").string(), meta.dump(2) + "\n");
    std::cout << "wrote " << total << " videos (" << a.train << " train, " << a.test << " test, " << a.opt.num_classes
              << " classes, " << a.opt.frames << " frames of " << a.opt.height << "x" << a.opt.width << ") to " << a.out
              << " as " << a.format << "\n";
    if (a.format == "ppm")
      std::cout << "note: PPM frames; mscl's rawframes reader and MMAction2 expect JPEG (build with libjpeg for --format jpg)\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
