// mscl-pretrain: MSCL (or, with the motion parts switched off, MoCo-RGB) pretraining.
//
//   mscl-pretrain [--config configs/small_cpu.json] [--set key=value ...] [--out DIR] [--resume]
//                 [--print-config] [--device cpu|cuda] [--flow-coding host|device]
//                 [--rgb-photometric host|device] [--precision tf32|fp32|bf16]
//
// Every key of the configuration (see --print-config) can be overridden with --set. The data
// source is "random_pairs" (synthetic views of random prototypes: a learnable stand-in) or
// "rawframes" (MMAction2 rawframes + flow JPEGs + optional MDS sample file through the prefetching
// loader; keys data_root, annotation_file, flow_root, samples_file, workers, queue_depth, ...). Writes DIR/log.jsonl, DIR/ckpt-*.safetensors,
// DIR/latest.json and DIR/config.json; --resume continues exactly from the latest checkpoint.
//
// --device cuda (builds with MSCL_WITH_CUDA): the objective and the training step run on the GPU;
// batches are built on the host as before and copied to the device. Checkpoints hold host tensors,
// so a run resumes on either device (the device is not part of the configuration's hash). With the
// rawframes source the flows' colour coding then runs on the GPU too (--flow-coding device, the
// default with --device cuda: about half of a loader worker's time per sample; --flow-coding host
// keeps it in the loader), and so do the RGB views' jitter, grey, blur and normalisation
// (--rgb-photometric device, the same default: the loader only crops and flips them and hands
// over what it drew; --rgb-photometric host keeps them in the loader). --precision picks the
// GPU's float arithmetic: tf32 (default), fp32, or bf16 autocast (docs/cuda.md).
//
// Data parallel: `mpirun -np W mscl-pretrain ...` (or `srun`) runs W ranks; "batch" is then the
// per-rank batch, the global batch is W·batch (lr scaling and the config hash use it, so a run
// resumes with another W that keeps the global batch); rank 0 logs and checkpoints
// (docs/distributed.md).
#include <cstdlib>
#include <iostream>
#include <mscl/data/mscl_clip_source.hpp>
#include <mscl/data/random_pair_source.hpp>
#include <mscl/dist/launch.hpp>
#include <mscl/mscl.hpp>
#include <mscl/train/config.hpp>
#include <mscl/train/pretrain.hpp>

#include "cuda/pretrain_on_cuda.hpp"
#ifdef _OPENMP
#include <omp.h>
#endif

int main(int argc, char** argv) {
  using mscl::train::json;
  std::shared_ptr<mscl::dist::communicator> comm;
  try {
    json cfg = mscl::train::default_pretrain_config();
    bool resume = false, print_only = false;
    std::string dist_mode = "auto", device = "cpu", flow_coding, rgb_photometric, precision;
    double dist_timeout = 0;
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw mscl::config_error("mscl-pretrain: " + k + " needs a value");
        return argv[++i];
      };
      if (k == "--help" || k == "-h") {
        std::cout << "usage: mscl-pretrain [--config FILE.json] [--set key=value ...] [--out DIR] [--resume] "
                     "[--print-config] [--device cpu|cuda] [--flow-coding host|device]\n"
                     "                     [--rgb-photometric host|device] [--precision tf32|fp32|bf16]\n"
                     "Presets: --set flow_moco=false --set cross_modal=false --set lmcl=false --set fra=false gives the\n"
                     "MoCo-RGB baseline. --print-config lists every key with its current value.\n"
                     "Data parallel: mpirun -np W mscl-pretrain ... ('batch' is per rank). --dist auto|mpi|none (auto:\n"
                     "MPI when started by mpirun/srun), --dist-timeout S: a collective waiting longer than S seconds\n"
                     "for a dead or stuck peer ends the job with an error (default $MSCL_DIST_TIMEOUT or 300); --dist nccl\n"
                     "(with --device cuda): MPI starts the ranks, NCCL carries the collectives.\n"
                     "--device cuda: train on the GPU (local rank modulo the GPU count); batches are built on the host,\n"
                     "the rawframes source's flow colour coding runs on the GPU unless --flow-coding host, and its RGB\n"
                     "jitter/grey/blur/normalisation unless --rgb-photometric host. --precision\n"
                     "(with --device cuda): tf32 (default), fp32, or bf16 autocast for convolutions and GEMMs.\n";
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
      } else if (k == "--dist") {
        dist_mode = value();
      } else if (k == "--device") {
        device = value();
        MSCL_CHECK(device == "cpu" || device == "cuda", mscl::config_error,
                   "mscl-pretrain: --device expects cpu or cuda, got '" << device << "'");
      } else if (k == "--flow-coding") {
        flow_coding = value();
        MSCL_CHECK(flow_coding == "host" || flow_coding == "device", mscl::config_error,
                   "mscl-pretrain: --flow-coding expects host or device, got '" << flow_coding << "'");
      } else if (k == "--rgb-photometric") {
        rgb_photometric = value();
        MSCL_CHECK(rgb_photometric == "host" || rgb_photometric == "device", mscl::config_error,
                   "mscl-pretrain: --rgb-photometric expects host or device, got '" << rgb_photometric << "'");
      } else if (k == "--precision") {
        precision = value();
      } else if (k == "--dist-timeout") {
        dist_timeout = std::stod(value());
        MSCL_CHECK(dist_timeout > 0, mscl::config_error, "mscl-pretrain: --dist-timeout must be positive");
      } else {
        throw mscl::config_error("mscl-pretrain: unknown option " + k + " (see --help)");
      }
    }
    const bool nccl = dist_mode == "nccl";
    precision = mscl::programs::checked_precision("mscl-pretrain", precision, device);
    if (flow_coding.empty()) flow_coding = device == "cuda" ? "device" : "host";
    MSCL_CHECK(flow_coding == "host" || device == "cuda", mscl::config_error,
               "mscl-pretrain: --flow-coding device needs --device cuda (on the CPU the loader codes the flows)");
    // Raw flows from the loader, coded on the training device (rawframes source only: the random
    // pairs are synthetic and coded where they are made).
    const bool code_flow_on_device = flow_coding == "device" && cfg.at("source") == "rawframes";
    if (rgb_photometric.empty()) rgb_photometric = device == "cuda" ? "device" : "host";
    MSCL_CHECK(rgb_photometric == "host" || device == "cuda", mscl::config_error,
               "mscl-pretrain: --rgb-photometric device needs --device cuda (on the CPU the loader augments the RGB views)");
    const bool rgb_photometric_on_device = rgb_photometric == "device" && cfg.at("source") == "rawframes";
    MSCL_CHECK(!nccl || device == "cuda", mscl::config_error, "mscl-pretrain: --dist nccl needs --device cuda");
#if !MSCL_PROGRAMS_WITH_CUDA
    MSCL_CHECK(device != "cuda", mscl::config_error,
               "mscl-pretrain: --device cuda needs a build with the CUDA backend (configure with -DMSCL_WITH_CUDA=ON)");
#endif
    comm = mscl::dist::communicator_for(nccl ? "mpi" : dist_mode, &argc, &argv, dist_timeout, "mscl-pretrain");
    const int rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
    const bool lead = rank == 0;
    if (print_only) {
      if (lead) std::cout << cfg.dump(2) << "\n";
      return 0;
    }
#if MSCL_PROGRAMS_WITH_CUDA
    // Bound to its GPU before any output is written.
    const auto where = mscl::programs::place_for_device(device, "mscl-pretrain", rank, mscl::dist::local_rank_from_launcher(), nccl,
                                                      precision);
#endif
#ifdef _OPENMP
    omp_set_num_threads(cfg.at("threads").get<int>());
#endif
    const auto mopts = mscl::train::objective_options(cfg);
    auto topts = mscl::train::training_options(cfg);
    topts.resume = resume;
    // The run's numbers depend on the global batch, not on how it is split over ranks.
    json global_cfg = cfg;
    global_cfg["batch"] = cfg.at("batch").get<std::int64_t>() * world;
    if (cfg.at("reference_batch").get<double>() > 0)
      topts.lr = mscl::optim::scaled_lr(cfg.at("lr"), cfg.at("reference_batch"), double(global_cfg.at("batch")));
    topts.config_hash = mscl::train::config_hash(global_cfg);
    topts.comm = world > 1 ? comm : nullptr;
    const std::string source_name = cfg.at("source");
    MSCL_CHECK(source_name == "random_pairs" || source_name == "rawframes", mscl::config_error,
               "mscl-pretrain: unknown source " << cfg.at("source").dump() << " (available: \"random_pairs\", \"rawframes\")");
    mscl::data::random_pair_source<float>::options so;
    so.batch = cfg.at("batch"); so.frames = cfg.at("frames"); so.size = cfg.at("size");
    so.prototypes = cfg.at("prototypes"); so.noise = cfg.at("noise"); so.seed = cfg.at("seed").get<std::uint64_t>() + 100;
    so.with_flow = mopts.uses_flow(); so.with_aug = mopts.fra;
    so.official_literal_flow_views = cfg.at("official_literal_flow_views");
    so.rank = rank; so.world_size = world;  // this rank's disjoint slots of each global batch
    mscl::data::random_pair_source<float> source(so);
    // "rawframes": the video pipeline (data/mscl_clip_source.hpp) behind the prefetching loader.
    std::unique_ptr<mscl::data::mscl_rawframes_loader> loader;
    if (source_name == "rawframes") {
#if MSCL_WITH_JPEG
      mscl::data::mscl_clip_options co;
      co.data_root = cfg.at("data_root"); co.annotation_file = cfg.at("annotation_file");
      co.flow_root = cfg.at("flow_root"); co.samples_file = cfg.at("samples_file");
      MSCL_CHECK(!co.data_root.empty() && !co.annotation_file.empty(), mscl::config_error,
                 "mscl-pretrain: source \"rawframes\" needs data_root and annotation_file");
      co.batch = cfg.at("batch").get<mscl::index_t>() * world;  // global batch; this rank builds its slots
      co.clip_len = cfg.at("frames"); co.frame_interval = cfg.at("frame_interval");
      co.short_side = cfg.at("short_side"); co.crop_size = cfg.at("size"); co.crop_area_min = cfg.at("crop_area_min");
      co.with_flow = mopts.uses_flow(); co.fra = mopts.fra;
      co.official_literal_flow_views = cfg.at("official_literal_flow_views");
      co.flip = cfg.at("flip"); co.flip_negates_flow = cfg.at("flip_negates_flow"); co.color_aug = cfg.at("color_aug");
      co.blur_p = cfg.at("blur_p");
      co.normalize_rgb = cfg.at("normalize_rgb"); co.fast_atan2 = cfg.at("fast_atan2"); co.flow_bound = cfg.at("flow_bound");
      co.color_code_flow = !code_flow_on_device;
      co.rgb_photometric = !rgb_photometric_on_device;  // the tables it leaves are applied by on_backend_source
      co.seed = cfg.at("seed").get<std::uint64_t>() + 200;
      mscl::data::loader_options lo;
      lo.workers = cfg.at("workers"); lo.queue_depth = cfg.at("queue_depth");
      lo.rank = rank; lo.world_size = world;
      if (resume && mscl::train::has_checkpoint(topts.out_dir))  // prefetch from where the run resumes
        lo.start_iteration = mscl::train::read_json_file(topts.out_dir + "/latest.json").value("iteration", 0L);
      auto clips = std::make_shared<const mscl::data::mscl_clip_source>(co);
      if (lead)
        std::cerr << "mscl-pretrain: rawframes " << co.data_root << ", " << clips->num_videos() << " videos ("
                  << co.annotation_file << ")" << (co.samples_file.empty() ? "" : ", MDS " + co.samples_file) << ", "
                  << lo.workers << " loader workers\n";
      loader = std::make_unique<mscl::data::mscl_rawframes_loader>(clips, lo);
#else
      MSCL_CHECK(false, mscl::config_error, "mscl-pretrain: source \"rawframes\" needs a build with JPEG support (libjpeg-turbo)");
#endif
    }

    if (lead) {
      std::filesystem::create_directories(topts.out_dir);
      // A resumed run keeps the config.json it started with: pretrain() refuses a checkpoint made
      // with another configuration, and writing first would overwrite the record of the very run
      // it then refuses to touch (the numeric keys are equal when it does resume: config_hash).
      if (!(resume && mscl::train::has_checkpoint(topts.out_dir)))
        mscl::io::write_file_atomic(topts.out_dir + "/config.json", cfg.dump(2) + "\n");
    }
    auto announce = [&](std::size_t trainable_tensors) {
      if (lead)
        std::cerr << "mscl-pretrain: " << (mopts.uses_flow() ? "MSCL" : "MoCo-RGB") << " objective on " << device << ", "
                  << trainable_tensors << " trainable tensors, batch " << so.batch
                  << (world > 1 ? " per rank x " + std::to_string(world) + " ranks" : std::string()) << ", "
                  << topts.iterations << " iterations, lr " << topts.lr << ", config " << topts.config_hash << " -> "
                  << topts.out_dir << (code_flow_on_device ? " (flows colour-coded on the device)" : "")
                  << (rgb_photometric_on_device ? " (RGB jitter/grey/blur/normalisation on the device)" : "") << "\n";
    };
    mscl::train::pretrain_result res;
    if (device == "cuda") {
#if MSCL_PROGRAMS_WITH_CUDA
      const std::function<mscl::ssl::mscl_batch<float, mscl::cpu>(long)> host_batch = [&](long it) {
        return loader ? loader->batch(it) : source.batch(it);
      };
      mscl::data::on_backend_options transfer;
      transfer.color_code_flow = code_flow_on_device;
      transfer.fast_atan2 = cfg.at("fast_atan2");
      res = mscl::programs::pretrain_on_cuda(mopts, host_batch, topts, where, transfer, announce);
#endif
    } else {
      mscl::ssl::mscl_objective<float> objective(mopts);
      announce(objective.trainable_parameters().size());
      res = loader ? mscl::train::pretrain(objective, *loader, topts) : mscl::train::pretrain(objective, source, topts);
    }
    if (loader && lead) {
      const auto ls = loader->stats();
      std::cerr << "mscl-pretrain: loader waited " << ls.wait_seconds << " s over " << ls.batches << " batches; "
                << ls.samples_built << " samples at " << (ls.samples_built ? ls.sample_seconds / double(ls.samples_built) : 0.0)
                << " s each (per worker)\n";
    }
    if (lead)
      std::cerr << "mscl-pretrain: iterations " << res.first_iteration << ".." << res.last_iteration << " in "
                << res.seconds << " s (data wait " << res.data_seconds << " s)\n";
    return 0;
  } catch (const std::exception& e) {
    // One failing rank ends the whole job with its message instead of leaving the others waiting.
    if (comm && comm->size() > 1) comm->abort("error (rank " + std::to_string(comm->rank()) + "): " + e.what(), 2);
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
