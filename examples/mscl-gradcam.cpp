// mscl-gradcam: Grad-CAM strips (include/mscl/eval/gradcam.hpp) for videos of a fine-tuned
// classifier's test list: frames on top, frames with the class-activation heatmap below.
//
//   mscl-gradcam --run DIR [--model FILE] [--videos 0,5,17] [--class C] [--scale 4] [--out OUTDIR]
//                [--device cpu|cuda] [--precision tf32|fp32|bf16]
//
// DIR is an mscl-finetune output directory: DIR/config.json gives the model shape, the data and
// the clip sampling; DIR/model.safetensors the weights (or --model: any classifier file
// eval::load_classifier reads). Each video's centre clip (first test clip, centre crop) is
// explained for class C (default: the predicted class). Writes OUTDIR/gradcam_<index>.png
// (default OUTDIR = DIR/gradcam) and prints one JSON line per video. --device cuda (builds with
// MSCL_WITH_CUDA): the forward and backward passes run on the GPU, the map's small arithmetic on
// the host.
#include <filesystem>
#include <functional>
#include <iostream>
#include <sstream>

#include <mscl/eval/classification.hpp>
#include <mscl/eval/finetune.hpp>
#include <mscl/eval/gradcam.hpp>
#include <mscl/dist/launch.hpp>
#include <mscl/train/config.hpp>

#include "cuda/cuda_placement.hpp"
#if MSCL_PROGRAMS_WITH_CUDA
#include "cuda/gradcam_on_cuda.hpp"
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {
const char* usage =
    "usage: mscl-gradcam --run DIR [--model FILE] [--videos I,J,...] [--class C] [--scale S] [--alpha A] [--out OUTDIR]\n"
    "Grad-CAM on layer4 of a fine-tuned classifier for test videos I,J,... (indices into the run's test list;\n"
    "default 0). --class: the class to explain (default: each video's predicted class). Reads DIR/config.json and\n"
    "DIR/model.safetensors (written by mscl-finetune); writes OUTDIR/gradcam_<I>.png (default DIR/gradcam).\n"
    "--device cpu|cuda: where the classifier runs (cuda: builds with the CUDA backend); --precision (with cuda):\n"
    "tf32 (default), fp32, or bf16 autocast.\n";

std::vector<mscl::index_t> parse_list(const std::string& s) {
  std::vector<mscl::index_t> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(std::stol(item));
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  using mscl::train::json;
  try {
    std::string run, model, out, device = "cpu", precision;
    std::vector<mscl::index_t> videos{0};
    mscl::index_t target = -1;
    int scale = 4;
    float alpha = 0.5f;
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw mscl::config_error("mscl-gradcam: " + k + " needs a value");
        return argv[++i];
      };
      if (k == "--help" || k == "-h") {
        std::cout << usage;
        return 0;
      } else if (k == "--run") run = value();
      else if (k == "--model") model = value();
      else if (k == "--videos") videos = parse_list(value());
      else if (k == "--class") target = std::stol(value());
      else if (k == "--scale") scale = std::stoi(value());
      else if (k == "--alpha") alpha = std::stof(value());
      else if (k == "--out") out = value();
      else if (k == "--device") device = value();
      else if (k == "--precision") precision = value();
      else throw mscl::config_error("mscl-gradcam: unknown option " + k + " (see --help)");
    }
    MSCL_CHECK(!run.empty(), mscl::config_error, "mscl-gradcam: --run DIR is required (an mscl-finetune output directory)");
    MSCL_CHECK(device == "cpu" || device == "cuda", mscl::config_error,
               "mscl-gradcam: --device expects cpu or cuda, got '" << device << "'");
    precision = mscl::programs::checked_precision("mscl-gradcam", precision, device);
#if MSCL_PROGRAMS_WITH_CUDA
    // Bound to its GPU before any output is written.
    const auto where = mscl::programs::place_for_device(device, "mscl-gradcam", 0, mscl::dist::local_rank_from_launcher(),
                                                        false, precision);
#else
    MSCL_CHECK(device != "cuda", mscl::config_error,
               "mscl-gradcam: --device cuda needs a build with the CUDA backend (configure with -DMSCL_WITH_CUDA=ON)");
#endif
    const json cfg = mscl::train::read_json_file(run + "/config.json");
    if (model.empty()) model = run + "/model.safetensors";
    if (out.empty()) out = run + "/gradcam";
#ifdef _OPENMP
    omp_set_num_threads(cfg.value("threads", 2));
#endif
    std::string root = cfg.at("test_root");
    if (root.empty()) root = cfg.at("train_root").get<std::string>();
    const std::string list = cfg.at("test_list");
    MSCL_CHECK(!list.empty(), mscl::config_error, "mscl-gradcam: the run's config has no test_list");
    mscl::eval::clip_sampling_options s;
    s.sampler = cfg.at("sampler");
    s.clip_len = cfg.at("clip_len");
    s.frame_interval = cfg.at("frame_interval");
    mscl::eval::test_view_options v;
    v.num_clips = 1;  // the centre clip
    v.crop = "center";
    v.crop_size = cfg.at("test_crop_size").get<mscl::index_t>() > 0 ? cfg.at("test_crop_size").get<mscl::index_t>()
                                                                    : cfg.at("crop_size").get<mscl::index_t>();
    v.resize_short = cfg.at("test_resize_short");
    v.normalize = cfg.at("normalize");
    const mscl::eval::rawframes_test_source test(root, list, s, v);

    mscl::eval::classifier_options co;
    co.depth = cfg.at("depth");
    co.width = cfg.at("width");
    co.num_classes = cfg.at("num_classes");
    if (co.num_classes == 0) {
      const auto file = mscl::io::safetensors_file::open(model);
      const auto names = file.names();
      const bool ckpt = std::find(names.begin(), names.end(), "model.cls_head.fc_cls.bias") != names.end();
      co.num_classes = file.info(ckpt ? "model.cls_head.fc_cls.bias" : "cls_head.fc_cls.bias").shape.at(0);
    }
    mscl::eval::video_classifier<float> clf(co);
    mscl::eval::load_classifier(clf, model);
    std::function<mscl::eval::gradcam_result(const mscl::tensor<float>&, mscl::index_t)> explain =
        [&clf](const mscl::tensor<float>& clip, mscl::index_t c) { return mscl::eval::gradcam(clf, clip, c); };
#if MSCL_PROGRAMS_WITH_CUDA
    if (where.device >= 0) explain = mscl::programs::cuda_gradcam_function(clf, where);
#endif
    std::vector<std::string> names;
    const std::filesystem::path ci = cfg.at("class_index").get<std::string>().empty()
                                         ? std::filesystem::path(cfg.at("train_root").get<std::string>()) / "classInd.txt"
                                         : std::filesystem::path(cfg.at("class_index").get<std::string>());
    if (std::filesystem::exists(ci)) names = mscl::data::read_class_index(ci.string()).names;
    auto name_of = [&](mscl::index_t c) { return std::size_t(c) < names.size() ? names[std::size_t(c)] : std::to_string(c); };

    std::filesystem::create_directories(out);
    for (mscl::index_t i : videos) {
      MSCL_CHECK(i >= 0 && i < test.size(), mscl::value_error,
                 "mscl-gradcam: video " << i << " is outside the test list's [0, " << test.size() << ")");
      const auto clip = test.views(i);  // 1×3×T×S×S
      const auto r = explain(clip, target);
      char title[256];
      std::snprintf(title, sizeof title, "%s | true %s | pred %s | cam for %s (p=%.2f)", test.name(i).c_str(),
                    name_of(test.label(i)).c_str(), name_of(r.predicted_class).c_str(), name_of(r.target_class).c_str(),
                    r.probability);
      mscl::eval::gradcam_strip_options so;
      so.scale = scale;
      so.alpha = alpha;
      so.imagenet_normalized = v.normalize;
      so.title = title;
      const std::string path = out + "/gradcam_" + std::to_string(i) + ".png";
      mscl::eval::gradcam_strip(clip, r.map, so).save_png(path);
      std::cout << json{{"video", i}, {"name", test.name(i)}, {"label", test.label(i)}, {"predicted", r.predicted_class},
                        {"class", r.target_class}, {"probability", r.probability}, {"png", path}}
                       .dump()
                << std::endl;
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
