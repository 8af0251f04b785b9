// mscl-finetune: supervised fine-tuning of a pretrained R3D backbone (or training from scratch)
// on an MMAction2 rawframes dataset, with the test protocol of ECOSYSTEM.md §2.2 at the end.
//
//   mscl-finetune --config configs/finetune_small_cpu.json [--set key=value ...] [--init CKPT]
//                 [--out DIR] [--resume] [--print-config] [--device cpu|cuda]
//                 [--precision tf32|fp32|bf16]
//
// --init takes a pretraining checkpoint (mscl-pretrain's ckpt-*.safetensors: the RGB query
// backbone "model.rgb_q.backbone." is transferred), an MSCL release / MMAction2 / torchvision
// safetensors file (prefix detected; or give --set init_key_map=...); without it the network
// starts from random initialisation. Writes DIR/config.json, DIR/log.jsonl, checkpoints,
// DIR/model.safetensors (MMAction2 names), DIR/metrics.json and DIR/confusion.png, and prints the
// final metrics as one JSON line on stdout.
//
// Data parallel: `mpirun -np W mscl-finetune ...` (or srun) runs W ranks; "batch" is then per
// rank (global batch W x batch; reference_batch scales the lr to the global batch), BatchNorm is
// synchronised over ranks unless --set sync_bn=false, and only rank 0 writes (docs/distributed.md).
//
// --device cuda (builds with MSCL_WITH_CUDA): the classifier trains and is evaluated on the GPU;
// clips are decoded and augmented on the host as before and copied to the device per batch.
#include <filesystem>
#include <fstream>
#include <iostream>

#include <mscl/dist/launch.hpp>
#include <mscl/eval/classification.hpp>
#include <mscl/eval/finetune.hpp>
#include <mscl/train/config.hpp>

#include "cuda/cuda_placement.hpp"
#if MSCL_PROGRAMS_WITH_CUDA
#include "cuda/finetune_on_cuda.hpp"
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

using mscl::train::json;


json default_config() {
  return json{
      {"description", ""},
      // data
      {"train_root", ""}, {"train_list", ""}, {"test_root", ""}, {"test_list", ""}, {"class_index", ""}, {"num_classes", 0},
      {"sampler", "clips"}, {"clip_len", 16}, {"frame_interval", 1},
      // training augmentation
      {"train_crop", "random_resized_crop"}, {"crop_size", 112}, {"area_lo", 0.08}, {"area_hi", 1.0}, {"flip", true},
      {"normalize", true},
      // test protocol
      {"test_clips", 10}, {"test_crop", "center"}, {"test_crop_size", 0}, {"test_resize_short", 0}, {"average", "prob"},
      {"eval_videos_per_batch", 4},
      // model
      {"depth", 18}, {"width", 64}, {"dropout", 0.5}, {"init_std", 0.01}, {"init", ""}, {"init_key_map", ""},
      // optimisation
      {"epochs", 22}, {"batch", 32}, {"lr", 0.12}, {"reference_batch", 0}, {"min_lr", 0.0}, {"warmup_epochs", 0.0},
      {"schedule", "step"}, {"milestones", json::array({14, 18})}, {"gamma", 0.1}, {"lr_by_epoch", true},
      {"sgd_momentum", 0.9}, {"weight_decay", 1e-6}, {"clip_norm", 40.0},
      // run
      {"eval_every", 2}, {"checkpoint_every", 1}, {"keep_checkpoints", 2}, {"log_every", 10}, {"out_dir", "runs/finetune"},
      {"seed", 0}, {"threads", 2},
      // data parallelism (mpirun -np W): BN statistics over all ranks, bucket all-reduce during backward
      {"sync_bn", true}, {"overlap_backward", true}};
}

const char* usage =
    "usage: mscl-finetune [--config FILE.json] [--set key=value ...] [--init CKPT.safetensors] [--out DIR]\n"
    "                     [--resume] [--print-config] [--dist auto|mpi|nccl|none] [--dist-timeout S]\n"
    "                     [--device cpu|cuda] [--precision tf32|fp32|bf16]\n"
    "Fine-tunes (or, without --init, trains from scratch) an R3D classifier on MMAction2 rawframes\n"
    "(train_root/train_list, test_root/test_list), then evaluates with the test protocol\n"
    "(test_clips clips x test_crop crops, scores averaged as `average`). --print-config lists every key\n"
    "with its current value. Configs: configs/finetune_ucf101.json (paper recipe), configs/finetune_small_cpu.json\n"
    "(the synthetic demo). Outputs in DIR: config.json log.jsonl ckpt-*.safetensors latest.json\n"
    "model.safetensors metrics.json confusion.png.\n"
    "Data parallel: mpirun -np W mscl-finetune ... ('batch' is per rank; BN synchronised over ranks unless\n"
    "--set sync_bn=false). --dist auto|mpi|none (auto: MPI when started by mpirun/srun), --dist-timeout S:\n"
    "a collective waiting longer than S seconds aborts the job (default $MSCL_DIST_TIMEOUT or 300); --dist nccl\n"
    "(with --device cuda): MPI starts the ranks, NCCL carries the collectives.\n"
    "--precision (with --device cuda): tf32 (default), fp32, or bf16 autocast for convolutions and GEMMs.\n"
    "--device cuda: train and evaluate on the GPU (local rank modulo the GPU count); clips are read on the host.\n";

}  // namespace

int main(int argc, char** argv) {
  std::shared_ptr<mscl::dist::communicator> comm;
  try {
    json cfg = default_config();
    bool resume = false, print_only = false;
    std::string dist_mode = "auto", device = "cpu", precision;
    double dist_timeout = 0;
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw mscl::config_error("mscl-finetune: " + k + " needs a value");
        return argv[++i];
      };
      if (k == "--help" || k == "-h") {
        std::cout << usage;
        return 0;
      } else if (k == "--config") {
        const std::string path = value();
        mscl::train::merge_config(cfg, mscl::train::read_json_file(path), path);
      } else if (k == "--set") {
        mscl::train::merge_config(cfg, mscl::train::parse_override(value()), "--set");
      } else if (k == "--init") {
        cfg["init"] = value();
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
                   "mscl-finetune: --device expects cpu or cuda, got '" << device << "'");
      } else if (k == "--precision") {
        precision = value();
      } else if (k == "--dist-timeout") {
        dist_timeout = std::stod(value());
        MSCL_CHECK(dist_timeout > 0, mscl::config_error, "mscl-finetune: --dist-timeout must be positive");
      } else {
        throw mscl::config_error("mscl-finetune: unknown option " + k + " (see --help)");
      }
    }
    const bool nccl = dist_mode == "nccl";
    precision = mscl::programs::checked_precision("mscl-finetune", precision, device);
    MSCL_CHECK(!nccl || device == "cuda", mscl::config_error, "mscl-finetune: --dist nccl needs --device cuda");
#if !MSCL_PROGRAMS_WITH_CUDA
    MSCL_CHECK(device != "cuda", mscl::config_error,
               "mscl-finetune: --device cuda needs a build with the CUDA backend (configure with -DMSCL_WITH_CUDA=ON)");
#endif
    comm = mscl::dist::communicator_for(nccl ? "mpi" : dist_mode, &argc, &argv, dist_timeout, "mscl-finetune");
    const int rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
    const bool lead = rank == 0;
    if (print_only) {
      if (lead) std::cout << cfg.dump(2) << "\n";
      return 0;
    }
#if MSCL_PROGRAMS_WITH_CUDA
    // Bound to its GPU before any output is written.
    const auto where = mscl::programs::place_for_device(device, "mscl-finetune", rank, mscl::dist::local_rank_from_launcher(), nccl,
                                                      precision);
#endif
#ifdef _OPENMP
    omp_set_num_threads(cfg.at("threads").get<int>());
#endif
    const std::string train_root = cfg.at("train_root"), train_list = cfg.at("train_list");
    std::string test_root = cfg.at("test_root"), test_list = cfg.at("test_list");
    MSCL_CHECK(!train_root.empty() && !train_list.empty(), mscl::config_error,
               "mscl-finetune: set train_root and train_list (e.g. --set train_root=DATA --set train_list=DATA/train_list.txt)");
    if (test_root.empty()) test_root = train_root;

    mscl::eval::clip_sampling_options sampling;
    sampling.sampler = cfg.at("sampler");
    sampling.clip_len = cfg.at("clip_len");
    sampling.frame_interval = cfg.at("frame_interval");
    mscl::eval::train_augment_options aug;
    aug.crop = cfg.at("train_crop");
    aug.crop_size = cfg.at("crop_size");
    aug.area_lo = cfg.at("area_lo");
    aug.area_hi = cfg.at("area_hi");
    aug.flip = cfg.at("flip");
    aug.normalize = cfg.at("normalize");
    mscl::eval::test_view_options views;
    views.num_clips = cfg.at("test_clips");
    views.crop = cfg.at("test_crop");
    views.crop_size = cfg.at("test_crop_size").get<mscl::index_t>() > 0 ? cfg.at("test_crop_size").get<mscl::index_t>() : aug.crop_size;
    views.resize_short = cfg.at("test_resize_short");
    views.normalize = aug.normalize;

    if (lead) std::cerr << "mscl-finetune: indexing " << train_list << " ...\n";
    const mscl::eval::rawframes_train_source train(train_root, train_list, sampling, aug);
    std::unique_ptr<mscl::eval::rawframes_test_source> test;
    if (!test_list.empty()) test = std::make_unique<mscl::eval::rawframes_test_source>(test_root, test_list, sampling, views);

    mscl::index_t num_classes = cfg.at("num_classes");
    if (num_classes == 0) num_classes = std::max(train.max_label(), test ? test->max_label() : -1) + 1;
    std::vector<std::string> names;
    std::string class_index = cfg.at("class_index");
    if (class_index.empty() && std::filesystem::exists(std::filesystem::path(train_root) / "classInd.txt"))
      class_index = (std::filesystem::path(train_root) / "classInd.txt").string();
    if (!class_index.empty()) {
      names = mscl::data::read_class_index(class_index).names;
      MSCL_CHECK(mscl::index_t(names.size()) == num_classes, mscl::config_error,
                 "mscl-finetune: " << class_index << " names " << names.size() << " classes but the run has " << num_classes);
    }

    mscl::eval::classifier_options co;
    co.num_classes = num_classes;
    co.depth = cfg.at("depth");
    co.width = cfg.at("width");
    co.dropout = cfg.at("dropout");
    co.init_std = cfg.at("init_std");
    co.seed = cfg.at("seed");
    mscl::eval::video_classifier<float> clf(co);
    const std::string init = cfg.at("init");
    if (!init.empty()) {
      const auto r = mscl::eval::load_pretrained_backbone(clf, init, cfg.at("init_key_map").get<std::string>());
      if (lead) std::cerr << "mscl-finetune: backbone from " << init << " (" << r.format << ", key map '" << r.key_map << "'): "
                << r.loaded << " entries loaded, " << r.file_unused << " file tensors not used\n";
    } else {
      if (lead) std::cerr << "mscl-finetune: random initialisation (training from scratch)\n";
    }

    mscl::eval::finetune_options fo;
    fo.epochs = cfg.at("epochs");
    fo.batch = cfg.at("batch");
    const double ref = cfg.at("reference_batch");
    // lr for the global batch (W x batch); every rank starts from rank 0's weights (broadcast).
    fo.lr = ref > 0 ? mscl::optim::scaled_lr(cfg.at("lr"), ref, double(fo.batch * world)) : double(cfg.at("lr"));
    fo.min_lr = cfg.at("min_lr");
    fo.warmup_epochs = cfg.at("warmup_epochs");
    fo.schedule = cfg.at("schedule");
    fo.milestones = cfg.at("milestones").get<std::vector<double>>();
    fo.gamma = cfg.at("gamma");
    fo.lr_by_epoch = cfg.at("lr_by_epoch");
    fo.sgd_momentum = cfg.at("sgd_momentum");
    fo.weight_decay = cfg.at("weight_decay");
    fo.clip_norm = cfg.at("clip_norm");
    fo.eval_every = cfg.at("eval_every");
    fo.checkpoint_every = cfg.at("checkpoint_every");
    fo.keep_checkpoints = cfg.at("keep_checkpoints");
    fo.log_every = cfg.at("log_every");
    fo.eval_videos_per_batch = cfg.at("eval_videos_per_batch");
    fo.average = mscl::eval::parse_score_average(cfg.at("average"));
    fo.out_dir = cfg.at("out_dir");
    fo.seed = cfg.at("seed");
    fo.resume = resume;
    // The run's numbers depend on the global batch, not on its split over ranks (with sync-BN):
    // a run resumes with any world size that keeps batch x W.
    json global_cfg = cfg;
    global_cfg["batch"] = cfg.at("batch").get<std::int64_t>() * world;
    global_cfg.erase("sync_bn");
    global_cfg.erase("overlap_backward");
    if (world > 1 && !cfg.at("sync_bn").get<bool>()) global_cfg["per_rank_bn"] = true;
    fo.config_hash = mscl::train::config_hash(global_cfg);
    fo.comm = world > 1 ? comm : nullptr;
    fo.sync_bn = cfg.at("sync_bn");
    fo.overlap_backward = cfg.at("overlap_backward");
    fo.progress = lead;
    fo.class_names = names;
    fo.protocol = {{"test_list", test_list}, {"sampler", sampling.sampler}, {"clip_len", sampling.clip_len},
                   {"frame_interval", sampling.frame_interval}, {"num_clips", views.num_clips}, {"crop", views.crop},
                   {"crops_per_clip", test ? test->crops_per_clip() : 0}, {"crop_size", views.crop_size},
                   {"resize_short", views.resize_short}, {"average", mscl::eval::score_average_name(fo.average)}, {"init", init.empty() ? "random" : init}};

    if (lead) {
      std::filesystem::create_directories(fo.out_dir);
      // As mscl-pretrain: a resume keeps the run's own config.json (a refused one must not touch it).
      if (!(resume && mscl::train::has_checkpoint(fo.out_dir)))
        mscl::io::write_file_atomic(fo.out_dir + "/config.json", cfg.dump(2) + "\n");
    }
    if (lead)
      std::cerr << "mscl-finetune: r3d_" << co.depth << " width " << co.width << " (" << clf.parameter_count()
              << " parameters), " << num_classes << " classes, " << train.size() << " train / "
              << (test ? test->size() : 0) << " test videos, batch " << fo.batch << " x " << world << " rank(s), " << fo.epochs << " epochs ("
              << train.size() / (fo.batch * world) << " iterations each), lr " << fo.lr << " (" << fo.schedule << "), config "
              << fo.config_hash << " -> " << fo.out_dir << " on " << device << "\n";
    mscl::eval::finetune_result res;
    if (device == "cuda") {
#if MSCL_PROGRAMS_WITH_CUDA
      mscl::programs::host_train_source host_train;
      host_train.videos = train.size();
      host_train.label_of = [&](mscl::index_t i) { return train.label(i); };
      host_train.sample_of = [&](mscl::index_t i, mscl::generator& gen) { return train.sample(i, gen); };
      mscl::programs::host_test_source host_test;
      if (test) {
        host_test.videos = test->size();
        host_test.views_each = test->views_per_video();
        host_test.label_of = [&](mscl::index_t i) { return test->label(i); };
        host_test.views_of = [&](mscl::index_t i) { return test->views(i); };
      }
      res = mscl::programs::finetune_on_cuda(clf, host_train, test ? &host_test : nullptr, fo, where);
#endif
    } else {
      res = mscl::eval::finetune(clf, train, test.get(), fo);
    }
    json out = {{"iterations", res.last_iteration}, {"first_iteration", res.first_iteration}, {"wall_s", res.seconds},
                {"data_wait_s", res.data_seconds}, {"eval_s", res.eval_seconds}, {"threads", cfg.at("threads")},
                {"out_dir", fo.out_dir}};
    if (test && res.final_eval.metrics.count > 0) {
      const auto& m = res.final_eval.metrics;
      out["top1"] = m.top1;
      out["top" + std::to_string(m.top5_k)] = m.top5;
      out["mean_class_accuracy"] = m.mean_class_accuracy;
      out["test_videos"] = m.count;
    }
    if (world > 1) out["world_size"] = world;
    if (lead) std::cout << out.dump() << std::endl;
    return 0;
  } catch (const std::exception& e) {
    // One failing rank ends the whole job with its message instead of leaving the others waiting.
    if (comm && comm->size() > 1) comm->abort("error (rank " + std::to_string(comm->rank()) + "): " + e.what(), 2);
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
