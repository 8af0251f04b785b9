// mscl-pretrain: MSCL (or, with the motion parts switched off, MoCo-RGB) pretraining.
//
//   mscl-pretrain [--config configs/small_cpu.json] [--set key=value ...] [--out DIR] [--resume]
//                 [--print-config]
//
// Every key of the configuration (see --print-config) can be overridden with --set. The data
// source today is "random_pairs" (synthetic views of random prototypes: a learnable stand-in
// until the video pipeline lands). Writes DIR/log.jsonl, DIR/ckpt-*.safetensors,
// DIR/latest.json and DIR/config.json; --resume continues exactly from the latest checkpoint.
#include <iostream>
#include <mscl/data/random_pair_source.hpp>
#include <mscl/mscl.hpp>
#include <mscl/train/config.hpp>
#include <mscl/train/pretrain.hpp>
#ifdef _OPENMP
#include <omp.h>
#endif

int main(int argc, char** argv) {
  using mscl::train::json;
  try {
    json cfg = mscl::train::default_pretrain_config();
    bool resume = false, print_only = false;
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw mscl::config_error("mscl-pretrain: " + k + " needs a value");
        return argv[++i];
      };
      if (k == "--help" || k == "-h") {
        std::cout << "usage: mscl-pretrain [--config FILE.json] [--set key=value ...] [--out DIR] [--resume] "
                     "[--print-config]\n"
                     "Presets: --set flow_moco=false --set cross_modal=false --set lmcl=false --set fra=false gives the\n"
                     "MoCo-RGB baseline. --print-config lists every key with its current value.\n";
        return 0;
      } else if (k == "--config") {
        const std::string path = value();
        mscl::train::merge_config(cfg, mscl::train::read_json_file(path), path);
      } else if (k == "--set") {
        mscl::train::merge_config(cfg, mscl::train::parse_override(value()), "--set");
      } else if (k == "--out") {
        cfg["out_dir"] = value();
      } else if (k == "--resume") {
        resume = true;
      } else if (k == "--print-config") {
        print_only = true;
      } else {
        throw mscl::config_error("mscl-pretrain: unknown option " + k + " (see --help)");
      }
    }
    if (print_only) {
      std::cout << cfg.dump(2) << "\n";
      return 0;
    }
#ifdef _OPENMP
    omp_set_num_threads(cfg.at("threads").get<int>());
#endif
    const auto mopts = mscl::train::objective_options(cfg);
    auto topts = mscl::train::training_options(cfg);
    topts.resume = resume;
    topts.config_hash = mscl::train::config_hash(cfg);
    MSCL_CHECK(cfg.at("source") == "random_pairs", mscl::config_error,
               "mscl-pretrain: unknown source " << cfg.at("source").dump() << " (available: \"random_pairs\")");
    mscl::data::random_pair_source<float>::options so;
    so.batch = cfg.at("batch"); so.frames = cfg.at("frames"); so.size = cfg.at("size");
    so.prototypes = cfg.at("prototypes"); so.noise = cfg.at("noise"); so.seed = cfg.at("seed").get<std::uint64_t>() + 100;
    so.with_flow = mopts.uses_flow(); so.with_aug = mopts.fra;
    so.official_literal_flow_views = cfg.at("official_literal_flow_views");
    mscl::data::random_pair_source<float> source(so);

    std::filesystem::create_directories(topts.out_dir);
    {
      std::ofstream(topts.out_dir + "/config.json") << cfg.dump(2) << "\n";
    }
    mscl::ssl::mscl_objective<float> objective(mopts);
    std::cerr << "mscl-pretrain: " << (mopts.uses_flow() ? "MSCL" : "MoCo-RGB") << " objective, "
              << objective.trainable_parameters().size() << " trainable tensors, batch " << so.batch << ", "
              << topts.iterations << " iterations, lr " << topts.lr << ", config " << topts.config_hash << " -> "
              << topts.out_dir << "\n";
    const auto res = mscl::train::pretrain(objective, source, topts);
    std::cerr << "mscl-pretrain: iterations " << res.first_iteration << ".." << res.last_iteration << " in "
              << res.seconds << " s (data wait " << res.data_seconds << " s)\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
