// mscl-extract-features: loads a backbone from safetensors (torchvision names, optional key
// map), reads clips N×3×T×H×W from .npy, writes the pooled features (N×C) to .npy, and the
// logits (N×K) too when the weights contain an fc.
//
//   mscl-extract-features --weights r3d.safetensors --clips clips.npy --out features.npy
//                         [--logits-out logits.npy] [--arch r3d_18|r3d_10|r3d_34|r2d_18_flow]
//                         [--width 64] [--key-map "recognizer.encoder_q.backbone.=,cls_head.=DROP"]
//                         [--batch 8] [--threads 2] [--device cpu|cuda] [--precision tf32|fp32|bf16]
//
// --device cuda (builds with MSCL_WITH_CUDA): the backbone runs on the GPU (a device copy of the
// loaded weights; clips go over batch by batch), the fc of --logits-out on the host.
#include <functional>
#include <iostream>
#include <mscl/dist/launch.hpp>
#include <mscl/io/npy.hpp>
#include <mscl/io/state_dict.hpp>
#include <mscl/mscl.hpp>
#include <string>

#include "cuda/cuda_placement.hpp"
#if MSCL_PROGRAMS_WITH_CUDA
#include "cuda/features_on_cuda.hpp"
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {
const char* usage =
    "usage: mscl-extract-features --weights FILE.safetensors --clips CLIPS.npy --out FEATURES.npy\n"
    "         [--logits-out LOGITS.npy] [--arch r3d_18|r3d_10|r3d_34|r2d_18_flow] [--width W]\n"
    "         [--key-map RULES] [--batch N] [--threads P] [--device cpu|cuda] [--precision tf32|fp32|bf16]\n"
    "Clips: float32/float64 N x 3 x T x H x W (already normalised as the weights expect).\n"
    "Key map: comma-separated PREFIX=NEW, PREFIX= (strip) or PREFIX=DROP rules applied to the file's names,\n"
    "  e.g. 'recognizer.encoder_q.backbone.=' for an MSCL pretraining checkpoint.\n"
    "--device cuda: the backbone runs on the GPU (builds with the CUDA backend); --precision (with it):\n"
    "  tf32 (default), fp32, or bf16 autocast.\n";

template <class Net>
int run(Net& net, const mscl::io::safetensors_file& file, const std::map<std::string, std::string>& opts,
        const mscl::programs::cuda_placement& where) {
  using tensor_t = mscl::tensor<float>;
  const std::string& weights = opts.at("--weights");
  mscl::io::key_map keys = mscl::io::key_map::parse(opts.count("--key-map") ? opts.at("--key-map") : "");
  mscl::io::load_state_dict(net, weights, keys, true);
  const tensor_t clips = mscl::io::read_npy<float>(opts.at("--clips"));
  MSCL_CHECK(clips.dim() == 5 && clips.shape()[1] == 3, mscl::shape_error,
             "mscl-extract-features: " << opts.at("--clips") << " holds shape " << mscl::to_string(clips.shape())
                                       << ", expected N x 3 x T x H x W");
  const long batch = std::stol(opts.count("--batch") ? opts.at("--batch") : "8");
  MSCL_CHECK(batch > 0, mscl::config_error, "mscl-extract-features: --batch must be positive");
  const mscl::index_t n = clips.shape()[0];
  net.eval();
  mscl::no_grad guard;
  std::function<tensor_t(const tensor_t&)> features = [&net](const tensor_t& x) { return net.features(x); };
#if MSCL_PROGRAMS_WITH_CUDA
  if (where.device >= 0) features = mscl::programs::cuda_feature_function(net, where);  // after the weights are loaded
#else
  (void)where;
#endif
  std::vector<tensor_t> feats, logits;
  mscl::train::progress_bar bar(n, "extract", 1);
  for (mscl::index_t s = 0; s < n; s += batch) {
    tensor_t x = mscl::ops::slice(clips, 0, s, std::min<mscl::index_t>(s + batch, n)).clone();
    tensor_t f = features(x);
    feats.push_back(f);
    if (net.fc) logits.push_back(net.fc->forward(f));
    bar.update(std::min<mscl::index_t>(s + batch, n));
  }
  mscl::io::write_npy(opts.at("--out"), mscl::ops::cat(feats, 0));
  std::cout << "features " << mscl::to_string({n, net.feature_dim()}) << " -> " << opts.at("--out") << "\n";
  if (opts.count("--logits-out")) {
    MSCL_CHECK(net.fc != nullptr, mscl::config_error,
               "mscl-extract-features: --logits-out given but " << weights << " has no fc.weight");
    mscl::io::write_npy(opts.at("--logits-out"), mscl::ops::cat(logits, 0));
    std::cout << "logits -> " << opts.at("--logits-out") << "\n";
  }
  (void)file;
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opts;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      if (k == "--help" || k == "-h") {
        std::cout << usage;
        return 0;
      }
      static const char* known[] = {"--weights", "--clips",   "--out",     "--logits-out", "--arch",   "--width",
                                    "--key-map", "--batch", "--threads", "--device",     "--precision"};
      bool ok = false;
      for (const char* name : known) ok = ok || k == name;
      if (!ok) throw mscl::config_error("mscl-extract-features: unknown option " + k + "\n" + usage);
      if (i + 1 >= argc) throw mscl::config_error("mscl-extract-features: " + k + " needs a value");
      opts[k] = argv[++i];
    }
    for (const char* required : {"--weights", "--clips", "--out"})
      if (!opts.count(required))
        throw mscl::config_error(std::string("mscl-extract-features: missing ") + required + "\n" + usage);
    const std::string device = opts.count("--device") ? opts.at("--device") : "cpu";
    MSCL_CHECK(device == "cpu" || device == "cuda", mscl::config_error,
               "mscl-extract-features: --device expects cpu or cuda, got '" << device << "'");
    const std::string precision = mscl::programs::checked_precision(
        "mscl-extract-features", opts.count("--precision") ? opts.at("--precision") : "", device);
#if MSCL_PROGRAMS_WITH_CUDA
    // Bound to its GPU before any output is written.
    const auto where = mscl::programs::place_for_device(device, "mscl-extract-features", 0,
                                                        mscl::dist::local_rank_from_launcher(), false, precision);
#else
    MSCL_CHECK(device != "cuda", mscl::config_error,
               "mscl-extract-features: --device cuda needs a build with the CUDA backend (configure with "
               "-DMSCL_WITH_CUDA=ON)");
    const mscl::programs::cuda_placement where;
#endif
#ifdef _OPENMP
    omp_set_num_threads(std::stoi(opts.count("--threads") ? opts.at("--threads") : "2"));
#endif
    const auto file = mscl::io::safetensors_file::open(opts.at("--weights"));
    // The number of classes comes from the (mapped) fc.weight when present.
    mscl::io::key_map keys = mscl::io::key_map::parse(opts.count("--key-map") ? opts.at("--key-map") : "");
    mscl::index_t num_classes = 0;
    for (const auto& [model_key, file_key] : keys.apply_all(file.names()))  // model key -> file key
      if (model_key == "fc.weight") num_classes = file.info(file_key).shape.at(0);
    const std::string arch = opts.count("--arch") ? opts.at("--arch") : "r3d_18";
    const mscl::index_t width = std::stol(opts.count("--width") ? opts.at("--width") : (arch == "r2d_18_flow" ? "16" : "64"));
    if (arch == "r3d_18") {
      auto net = mscl::models::r3d_18<float>(num_classes, 0, width);
      return run(net, file, opts, where);
    }
    if (arch == "r3d_10") {
      auto net = mscl::models::r3d_10<float>(num_classes, 0, width);
      return run(net, file, opts, where);
    }
    if (arch == "r3d_34") {
      auto net = mscl::models::r3d_34<float>(num_classes, 0, width);
      return run(net, file, opts, where);
    }
    if (arch == "r2d_18_flow") {
      auto net = mscl::models::r2d_18_flow<float>(num_classes, 0, width);
      return run(net, file, opts, where);
    }
    throw mscl::config_error("mscl-extract-features: unknown --arch " + arch);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
