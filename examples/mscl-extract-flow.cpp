// mscl-extract-flow: computes TV-L1 optical flow for every video of a data set and writes it as
// MMAction2 rawframes flow directories (quantised flow_x_/flow_y_ JPEGs, bound 20) or as float
// Middlebury .flo files, one output directory per video, in parallel over videos; resumable and
// crash-safe (include/mscl/flow/extract.hpp; docs/data_formats.md, "Flow extraction").
//
//   mscl-extract-flow --input videos/ --out rawframes/ --also-rgb --short-side 256 --workers 8
//   mscl-extract-flow --input-kind rawframes --input rawframes/ --out flow/ --layout float
//                     --frame-stride 2 --pair-offset 8          (MSCL's release pairs, float flow)
//
// Exit status: 0 every video done or already done, 1 some videos failed (the others are done),
// 2 bad usage, an output made with other options, or another run holding the output root.
#include <sys/file.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <mscl/core/error.hpp>
#include <mscl/flow/extract.hpp>
#include <mscl/train/progress.hpp>

namespace fs = std::filesystem;

namespace {

const char* usage =
    "usage: mscl-extract-flow --input PATH --out DIR [options]\n"
    "Computes TV-L1 optical flow for every video and writes one output directory per video,\n"
    "OUT/<name>/flow_x_00001.jpg, flow_y_00001.jpg, ... (or flow_00001.flo with --layout float).\n"
    "\n"
    "input:\n"
    "  --input PATH          a directory (searched recursively) or a list file (one input per line,\n"
    "                        first field: MMAction2 video/rawframe lists work as they are)\n"
    "  --input-kind K        video (default: .avi .mp4 .webm .mkv .mov .m4v files, needs FFmpeg) or\n"
    "                        rawframes (directories of img_00001.jpg / image_00001.jpg frames)\n"
    "  --root DIR            base of relative list entries (default: the current directory)\n"
    "                        <name> is the input path relative to the input directory (or --root)\n"
    "                        without its video extension\n"
    "output:\n"
    "  --out DIR             output root (created); must not be the input root\n"
    "  --layout L            jpeg (default: two grey JPEGs per flow, q = 255 (v + B) / 2B) or\n"
    "                        float (one Middlebury .flo per flow, float32 pixels, lossless)\n"
    "  --bound B             jpeg: quantisation bound in pixels (default 20)\n"
    "  --rounding R          jpeg: nearest (default; denseflow, CoCLR) or truncate (mmaction's Python tool)\n"
    "  --flow-template T     jpeg: flow_{}_{:05d}.jpg (default) or {}_{:05d}.jpg\n"
    "  --start-index N       number of the first file (default 1, MMAction2's convention)\n"
    "  --quality Q           JPEG quality 1..100 (default 95)\n"
    "  --also-rgb            also write the RGB frames img_00001.jpg ... (frames k*S; rawframes input\n"
    "                        without resizing: hard links to the input files)\n"
    "frames and pairs:\n"
    "  --short-side N        resize so the shorter side is N pixels before flow (default 0: keep)\n"
    "  --frame-stride S      flow k starts at frame k*S (default 1)\n"
    "  --pair-offset A       flow k ends at frame k*S + A (default A = S; MSCL release: S 2, A 8)\n"
    "compute:\n"
    "  --device D            cpu (default) or cuda (the CUDA TV-L1, same parameters; builds configured\n"
    "                        with -DMSCL_WITH_CUDA=ON only; one GPU stream per worker, so use several\n"
    "                        --workers to keep the GPU busy while frames are decoded)\n"
    "  --workers N           videos in parallel (default: the number of cores)\n"
    "  --flow-threads T      OpenMP threads per worker's TV-L1 (default 1; for fewer videos than cores\n"
    "                        try cores / workers, with OMP_WAIT_POLICY=passive on a shared machine)\n"
    "  --tvl1-scales N --tvl1-warps N --tvl1-epsilon E --tvl1-lambda L   solver parameters\n"
    "                        (defaults: OpenCV DualTVL1's 5, 5, 0.01, 0.15)\n"
    "run:\n"
    "  --overwrite           replace outputs made with other options (default: refuse, exit 2)\n"
    "  --log FILE            JSON-lines log, one record per video (default OUT/extract_flow.jsonl, appended)\n"
    "  --no-sync             do not sync the file system before a video is renamed into place\n"
    "  --verbose             let FFmpeg print its warnings\n"
    "  --help                this text\n"
    "\n"
    "Every video is written into a hidden temporary directory and renamed into place when complete,\n"
    "with a manifest (.mscl-extract-flow.json); a rerun skips finished videos and removes leftovers.\n"
    "exit status: 0 all done, 1 some videos failed (listed; the others are done), 2 bad usage,\n"
    "an output made with other options (see --overwrite) or the output root locked by another run\n";

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

long to_long(const std::string& flag, const std::string& v) {
  std::size_t used = 0;
  long x = 0;
  try {
    x = std::stol(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty()) throw usage_error(flag + " needs an integer, got '" + v + "'");
  return x;
}

double to_double(const std::string& flag, const std::string& v) {
  std::size_t used = 0;
  double x = 0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty()) throw usage_error(flag + " needs a number, got '" + v + "'");
  return x;
}

/// Holds an exclusive flock on OUT/.mscl-extract-flow.lock for the life of the run, so that two
/// runs never delete each other's temporaries.
class root_lock {
 public:
  explicit root_lock(const fs::path& root) {
    const std::string path = (root / ".mscl-extract-flow.lock").string();
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd_ < 0) throw mscl::io_error("mscl-extract-flow: cannot create the lock file " + path);
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd_);
      fd_ = -1;
      throw usage_error("another mscl-extract-flow run is writing to " + root.string() + " (" + path + " is locked)");
    }
  }
  ~root_lock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  int fd_ = -1;
};

int run(std::map<std::string, std::string>& o) {
  auto has = [&](const char* k) { return o.count(k) > 0; };
  if (!has("--input") || !has("--out")) throw usage_error("--input and --out are required");
  mscl::flow::extract_options opt;
  mscl::flow::batch_options bo;
  if (has("--layout")) opt.layout = mscl::flow::parse_flow_output_layout(o["--layout"]);
  if (has("--bound")) opt.bound = float(to_double("--bound", o["--bound"]));
  if (has("--rounding")) {
    const std::string r = o["--rounding"];
    if (r == "nearest") opt.rounding = mscl::flow::flow_rounding::nearest;
    else if (r == "truncate") opt.rounding = mscl::flow::flow_rounding::truncate;
    else throw usage_error("--rounding must be nearest or truncate, got '" + r + "'");
  }
  if (has("--flow-template")) opt.flow_template = o["--flow-template"];
  if (has("--start-index")) opt.start_index = int(to_long("--start-index", o["--start-index"]));
  if (has("--quality")) opt.jpeg_quality = int(to_long("--quality", o["--quality"]));
  opt.also_rgb = has("--also-rgb");
  if (has("--short-side")) opt.short_side = int(to_long("--short-side", o["--short-side"]));
  if (has("--frame-stride")) opt.frame_stride = int(to_long("--frame-stride", o["--frame-stride"]));
  if (has("--pair-offset")) opt.pair_offset = int(to_long("--pair-offset", o["--pair-offset"]));
  if (has("--device")) opt.device = mscl::flow::parse_flow_device(o["--device"]);
  if (has("--tvl1-scales")) opt.tvl1.nscales = int(to_long("--tvl1-scales", o["--tvl1-scales"]));
  if (has("--tvl1-warps")) opt.tvl1.warps = int(to_long("--tvl1-warps", o["--tvl1-warps"]));
  if (has("--tvl1-epsilon")) opt.tvl1.epsilon = float(to_double("--tvl1-epsilon", o["--tvl1-epsilon"]));
  if (has("--tvl1-lambda")) opt.tvl1.lambda = float(to_double("--tvl1-lambda", o["--tvl1-lambda"]));
  if (opt.tvl1.nscales < 1 || opt.tvl1.warps < 1) throw usage_error("--tvl1-scales and --tvl1-warps must be >= 1");
  // An unusable device (a build without CUDA, no GPU) fails here, before the output is touched.
  if (opt.device != mscl::flow::flow_device::cpu) (void)mscl::flow::make_flow_engine(opt.device, opt.tvl1, 1);
  opt.durable = !has("--no-sync");
  bo.overwrite = has("--overwrite");
  opt.validate();

  mscl::flow::input_kind kind = mscl::flow::input_kind::video;
  if (has("--input-kind")) {
    const std::string k = o["--input-kind"];
    if (k == "video" || k == "videos") kind = mscl::flow::input_kind::video;
    else if (k == "rawframes") kind = mscl::flow::input_kind::rawframes;
    else throw usage_error("--input-kind must be video or rawframes, got '" + k + "'");
  }
#if !(defined(MSCL_WITH_FFMPEG) && MSCL_WITH_FFMPEG)
  if (kind == mscl::flow::input_kind::video)
    throw usage_error("this build has no FFmpeg support: video input is unavailable (use --input-kind rawframes, "
                      "or install libavformat-dev libavcodec-dev libswscale-dev and reconfigure)");
#else
  if (!has("--verbose")) mscl::io::set_ffmpeg_log_level(AV_LOG_FATAL);
#endif
#if !(defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG)
  if (kind == mscl::flow::input_kind::rawframes || opt.layout == mscl::flow::flow_output_layout::jpeg || opt.also_rgb)
    throw usage_error("this build has no JPEG support: rawframes input, --layout jpeg and --also-rgb are unavailable");
#endif

  // Inputs.
  const fs::path input = o["--input"];
  const fs::path out = o["--out"];
  std::error_code ec;
  std::vector<mscl::flow::extract_job> jobs;
  if (fs::is_directory(input, ec)) {
    if (fs::exists(out, ec) && fs::equivalent(input, out, ec))
      throw usage_error("--out must differ from the input root " + input.string());
    // Rawframes discovery would find finished outputs (with --also-rgb) as new inputs on a rerun.
    const std::string in_c = fs::weakly_canonical(input, ec).string() + "/";
    const std::string out_c = fs::weakly_canonical(out, ec).string() + "/";
    if (kind == mscl::flow::input_kind::rawframes && out_c.rfind(in_c, 0) == 0)
      throw usage_error("--out " + out.string() + " lies inside the rawframes input root " + input.string());
    jobs = kind == mscl::flow::input_kind::video ? mscl::flow::discover_video_files(input.string())
                                                 : mscl::flow::discover_rawframes_dirs(input.string());
  } else if (fs::is_regular_file(input, ec)) {
    jobs = mscl::flow::read_job_list(input.string(), kind, has("--root") ? o["--root"] : std::string());
  } else {
    throw usage_error("--input '" + input.string() + "' is neither a directory nor a list file");
  }
  if (jobs.empty())
    throw usage_error("no " + std::string(kind == mscl::flow::input_kind::video ? "video files" : "rawframes directories") +
                      " found under " + input.string());

  fs::create_directories(out);
  root_lock lock(out);

  // Refuse before doing anything when an existing output was made with other options.
  std::size_t todo = 0, done_before = 0;
  if (!bo.overwrite) {
    const auto conflicts = mscl::flow::conflicting_outputs(jobs, out.string(), opt);
    if (!conflicts.empty()) {
      std::cerr << "mscl-extract-flow: " << conflicts.size() << " existing output(s) would change:\n";
      for (std::size_t i = 0; i < conflicts.size() && i < 10; ++i) std::cerr << "  " << conflicts[i] << "\n";
      if (conflicts.size() > 10) std::cerr << "  ... and " << conflicts.size() - 10 << " more\n";
      std::cerr << "mscl-extract-flow: refusing; rerun with the original options, another --out, or --overwrite\n";
      return 2;
    }
  }
  for (const auto& j : jobs) {
    const bool complete = mscl::flow::check_output(out.string(), j.name, opt) == mscl::flow::output_state::complete;
    if (complete && !bo.overwrite) ++done_before;
    else ++todo;
  }

  // Parallelism: videos over workers, each worker's TV-L1 single-threaded by default. Video-level
  // parallelism needs no synchronisation; TV-L1's row bands meet at a barrier every iteration, and
  // with OpenMP's default spin-waiting a worker whose second thread is descheduled by other load
  // runs many times slower (measured 16x on a loaded 2-core machine; docs/data_formats.md).
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  bo.workers = has("--workers") ? int(to_long("--workers", o["--workers"])) : cores;
  if (bo.workers < 1) throw usage_error("--workers must be >= 1");
  const int active = std::max(1, std::min<int>(bo.workers, int(std::max<std::size_t>(todo, 1))));
  bo.threads_per_worker = has("--flow-threads") ? int(to_long("--flow-threads", o["--flow-threads"])) : 1;
  if (bo.threads_per_worker < 1) throw usage_error("--flow-threads must be >= 1");

  const std::string log_path = has("--log") ? o["--log"] : (out / "extract_flow.jsonl").string();
  mscl::train::jsonl_writer log(log_path, true);
  std::cerr << "mscl-extract-flow: " << jobs.size() << " videos (" << done_before << " already done), "
            << mscl::flow::flow_output_layout_name(opt.layout) << " layout, device "
            << mscl::flow::flow_device_name(opt.device) << ", " << active << " worker(s) x " << bo.threads_per_worker
            << " thread(s) -> " << out.string() << "\n";

  mscl::train::progress_bar bar(long(jobs.size()), "flow", std::max<long>(1, long(jobs.size()) / 20));
  std::mutex bar_mu;
  std::atomic<long> pairs{0};
  std::atomic<long> videos_finished{0};
  auto last_draw = std::chrono::steady_clock::now();
  auto extra = [&] {
    const double s = bar.seconds_since_start();
    char buf[96];
    std::snprintf(buf, sizeof buf, "%ld pairs %.1f pairs/s", pairs.load(), s > 0 ? double(pairs.load()) / s : 0.0);
    return std::string(buf);
  };
  auto on_pair = [&] {
    ++pairs;
    if (!bar.is_terminal()) return;
    std::lock_guard<std::mutex> l(bar_mu);
    const auto now = std::chrono::steady_clock::now();
    if (now - last_draw < std::chrono::milliseconds(500)) return;
    last_draw = now;
    bar.update(videos_finished.load(), extra());
  };
  auto on_result = [&](const mscl::flow::job_result& r, std::size_t finished, std::size_t) {
    log.write(mscl::flow::job_result_json(r));
    std::lock_guard<std::mutex> l(bar_mu);
    videos_finished = long(finished);
    if (r.status == mscl::flow::job_status::failed) {
      std::fprintf(stderr, "%smscl-extract-flow: FAILED %s: %s\n", bar.is_terminal() ? "\r\033[K" : "", r.job.name.c_str(),
                   r.error.c_str());
    } else if (!bar.is_terminal() && r.status == mscl::flow::job_status::done) {
      std::fprintf(stderr, "mscl-extract-flow: ok %s: %lld frames -> %lld flows %dx%d in %.1f s (%.2f pairs/s)\n",
                   r.job.name.c_str(), (long long)r.stats.input_frames, (long long)r.stats.flows, r.stats.width,
                   r.stats.height, r.stats.seconds, r.stats.seconds > 0 ? double(r.stats.flows) / r.stats.seconds : 0.0);
    }
    bar.update(long(finished), extra());
  };
  const auto summary = mscl::flow::extract_batch(jobs, out.string(), opt, bo, on_result, on_pair);
  std::cerr << "mscl-extract-flow: " << mscl::flow::format_summary(summary) << "; " << summary.flows << " flows in "
            << mscl::train::progress_bar::format_duration(summary.seconds) << " (" << summary.pairs_per_second()
            << " pairs/s)";
  if (summary.stale_removed) std::cerr << "; removed " << summary.stale_removed << " stale temporaries";
  std::cerr << "\n";
  return summary.failed > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::map<std::string, bool> known = {  // flag -> takes a value
      {"--input", true},        {"--input-kind", true},   {"--root", true},          {"--out", true},
      {"--layout", true},       {"--bound", true},        {"--rounding", true},      {"--flow-template", true},
      {"--start-index", true},  {"--quality", true},      {"--also-rgb", false},     {"--short-side", true},
      {"--frame-stride", true}, {"--pair-offset", true},  {"--device", true},        {"--workers", true},
      {"--flow-threads", true}, {"--tvl1-scales", true},  {"--tvl1-warps", true},    {"--tvl1-epsilon", true},
      {"--tvl1-lambda", true},  {"--overwrite", false},   {"--log", true},           {"--no-sync", false},
      {"--verbose", false}};
  std::map<std::string, std::string> opts;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << usage;
      return 0;
    }
    auto it = known.find(a);
    if (it == known.end()) {
      std::cerr << "mscl-extract-flow: unknown argument '" << a << "'\n" << usage;
      return 2;
    }
    if (it->second) {
      if (i + 1 >= argc) {
        std::cerr << "mscl-extract-flow: " << a << " needs a value\n";
        return 2;
      }
      opts[a] = argv[++i];
    } else {
      opts[a] = "1";
    }
  }
  try {
    return run(opts);
  } catch (const usage_error& e) {
    std::cerr << "mscl-extract-flow: " << e.what() << "\n";
    return 2;
  } catch (const mscl::config_error& e) {
    std::cerr << "mscl-extract-flow: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "mscl-extract-flow: " << e.what() << "\n";
    return 1;
  }
}
