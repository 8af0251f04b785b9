// mscl-gen-samples: computes the Motion Differential Sampling statistic (ALGORITHM.md §5.1) for
// every video of a flow tree and writes the per-video sample file that the MDS load-time sampler
// reads (format: include/mscl/data/mds.hpp, docs/data_formats_mds.md).
//
//   mscl-gen-samples --flow-root DIR --out samples.jsonl [--list LIST] [--threads N] [options]
//
// Resumable: videos already in --out (with the same options) are skipped and a partial last line
// left by a killed run is dropped; each finished video is appended as one flushed line.
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <mscl/data/mds.hpp>
#include <mscl/io/flo.hpp>
#include <mscl/io/npy.hpp>
#include <mscl/train/progress.hpp>
#if MSCL_WITH_JPEG
#include <mscl/data/rawframes.hpp>
#endif

namespace fs = std::filesystem;

namespace {

const char* usage =
    "usage: mscl-gen-samples --flow-root DIR --out SAMPLES.jsonl [--list LIST] [--threads N]\n"
    "         [--weight-type rgb_map|motion_map|attention_map] [--att-type max|sum|none]\n"
    "         [--pool-type avg|max] [--clip-len 8] [--clip-stride 4] [--block 28] [--eps 1e-6]\n"
    "         [--official-nan] [--sobel-border reflect|reflect_101] [--bound 20] [--overwrite] [--no-sort]\n"
    "\n"
    "Computes the MDS clip scores and chosen starts of every video and writes one JSON line per video.\n"
    "A video is a path relative to --flow-root holding its flow maps in time order, as either\n"
    "  * a directory of Middlebury .flo files (read in file-name order),\n"
    "  * an .npy file (float32/float64, N x H x W x 2; VIDEO or VIDEO.npy),\n"
    "  * an MMAction2 rawframes directory with quantised flow JPEGs (flow_x_/flow_y_, x_/y_ or packed\n"
    "    flow_), dequantised with --bound (needs the JPEG build).\n"
    "Index i of the statistic is flow map i of that sequence: give the flows that are aligned with\n"
    "the training frame sequence (MSCL: one flow per kept frame, ALGORITHM.md §1.1).\n"
    "--list: one video per line, first whitespace field (MMAction2 rawframe/video lists work as is);\n"
    "  without it every such video under --flow-root is used (recursively).\n"
    "Defaults reproduce the released config (rgb_map, max, avg, 8 x stride 4, 28-pixel cells) except\n"
    "the attention normaliser, which gets + eps (--official-nan: bare max as the official tool).\n"
    "--overwrite: start over instead of resuming; --no-sort: keep completion order at the end.\n";

struct video_source {
  std::string name;  // as written to the file
  std::string kind;  // flo | npy | rawframes
  fs::path path;
  std::vector<fs::path> flo_files;
};

bool has_flo(const fs::path& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().extension() == ".flo") return true;
  return false;
}

bool has_flow_jpegs(const fs::path& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string f = it->path().filename().string();
    if (it->path().extension() == ".jpg" && (f.rfind("flow_", 0) == 0 || f.rfind("x_", 0) == 0)) return true;
  }
  return false;
}

// Resolves one video name (relative to root) to its source; throws io_error when nothing fits.
video_source resolve(const fs::path& root, const std::string& name) {
  video_source v;
  v.name = name;
  const fs::path p = root / name;
  std::error_code ec;
  if (fs::is_directory(p, ec) && has_flo(p)) {
    v.kind = "flo";
    v.path = p;
    for (fs::directory_iterator it(p, ec), end; !ec && it != end; it.increment(ec))
      if (it->path().extension() == ".flo") v.flo_files.push_back(it->path());
    std::sort(v.flo_files.begin(), v.flo_files.end());
    return v;
  }
  if (p.extension() == ".npy" && fs::is_regular_file(p, ec)) {
    v.kind = "npy";
    v.path = p;
    return v;
  }
  if (fs::is_regular_file(fs::path(p.string() + ".npy"), ec)) {
    v.kind = "npy";
    v.path = p.string() + ".npy";
    return v;
  }
  if (fs::is_directory(p, ec) && has_flow_jpegs(p)) {
#if MSCL_WITH_JPEG
    v.kind = "rawframes";
    v.path = p;
    return v;
#else
    throw mscl::io_error("mscl-gen-samples: '" + p.string() +
                         "' holds flow JPEGs but this build has no JPEG support (MSCL_WITH_JPEG)");
#endif
  }
  throw mscl::io_error("mscl-gen-samples: no flow for video '" + name + "': expected .flo files in " + p.string() +
                       ", " + p.string() + ".npy or flow JPEGs");
}

std::vector<std::string> discover(const fs::path& root) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec), end;
       !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    if (it->is_directory() && (has_flo(p) || has_flow_jpegs(p))) {
      names.push_back(fs::relative(p, root).generic_string());
      it.disable_recursion_pending();
    } else if (it->is_regular_file() && p.extension() == ".npy") {
      fs::path rel = fs::relative(p, root);
      names.push_back(rel.replace_extension().generic_string());
    }
  }
  MSCL_CHECK(!ec, mscl::io_error, "mscl-gen-samples: listing '" << root.string() << "' failed: " << ec.message());
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<std::string> read_list(const std::string& path) {
  std::ifstream in(path);
  MSCL_CHECK(in.good(), mscl::io_error, "mscl-gen-samples: cannot open list '" << path << "'");
  std::vector<std::string> names;
  std::string line;
  while (std::getline(in, line)) {
    const auto b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    const auto e = line.find_first_of(" \t\r", b);
    names.push_back(line.substr(b, e == std::string::npos ? std::string::npos : e - b));
  }
  return names;
}

// Streams the video's flows into the accumulator and returns its sample record.
mscl::data::mds_video_samples process(const video_source& v, const mscl::data::mds_options& opt, float bound) {
  mscl::data::mds_accumulator acc(opt);
  if (v.kind == "flo") {
    for (const auto& f : v.flo_files) acc.push(mscl::io::read_flo(f.string()));
  } else if (v.kind == "npy") {
    const auto t = mscl::io::read_npy<float>(v.path.string());
    const auto& s = t.shape();
    MSCL_CHECK(s.size() == 4 && s[3] == 2 && s[0] >= 1 && s[1] >= 1 && s[2] >= 1, mscl::shape_error,
               "mscl-gen-samples: " << v.path.string() << " has shape " << mscl::to_string(s) << ", expected N x H x W x 2");
    const float* d = t.data();
    const std::size_t hw = std::size_t(s[1] * s[2]);
    for (mscl::index_t i = 0; i < s[0]; ++i) {
      mscl::data::flow_field f{int(s[1]), int(s[2])};
      for (std::size_t k = 0; k < hw; ++k) {
        f.u[k] = d[(std::size_t(i) * hw + k) * 2];
        f.v[k] = d[(std::size_t(i) * hw + k) * 2 + 1];
      }
      acc.push(f);
    }
  } else {
#if MSCL_WITH_JPEG
    const auto dir = mscl::data::rawframes_dir::probe(v.path.string());
    MSCL_CHECK(dir.flow_count >= 1, mscl::io_error, "mscl-gen-samples: no complete flow frames in " << v.path.string());
    for (std::int64_t i = 0; i < dir.flow_count; ++i) acc.push(dir.read_flow(i, bound));
#endif
  }
  MSCL_CHECK(acc.size() >= 1, mscl::io_error, "mscl-gen-samples: video '" << v.name << "' has no flow maps");
  const mscl::index_t n = acc.size();
  auto r = acc.finish();
  return {v.name, n, std::move(r.scores), std::move(r.chosen)};
}

int run(const std::map<std::string, std::string>& o, const std::map<std::string, bool>& flags) {
  auto get = [&](const char* k, const std::string& def) { return o.count(k) ? o.at(k) : def; };
  auto number = [&](const char* k, const std::string& def) {
    const std::string s = get(k, def);
    try {
      std::size_t used = 0;
      const double v = std::stod(s, &used);
      if (used == s.size()) return v;
    } catch (const std::exception&) {
    }
    throw mscl::config_error(std::string("mscl-gen-samples: ") + k + " expects a number, got '" + s + "'");
  };
  MSCL_CHECK(o.count("--flow-root") && o.count("--out"), mscl::config_error,
             "mscl-gen-samples: --flow-root and --out are required\n" << usage);
  mscl::data::mds_options opt;
  nlohmann::json j = opt.to_json();
  j["weight_type"] = get("--weight-type", j["weight_type"].get<std::string>());
  j["att_type"] = get("--att-type", j["att_type"].get<std::string>());
  j["pool_type"] = get("--pool-type", j["pool_type"].get<std::string>());
  j["sobel_border"] = get("--sobel-border", j["sobel_border"].get<std::string>());
  j["clip_len"] = int(number("--clip-len", "8"));
  j["clip_stride"] = int(number("--clip-stride", "4"));
  j["block"] = int(number("--block", "28"));
  j["attention_eps"] = number("--eps", "1e-6");
  j["official_nan"] = flags.count("--official-nan") > 0;
  opt = mscl::data::mds_options::from_json(j, "mscl-gen-samples options");
  const float bound = float(number("--bound", "20"));
  const int threads = int(number("--threads", std::to_string(std::max(1u, std::thread::hardware_concurrency()))));
  MSCL_CHECK(threads >= 1, mscl::config_error, "mscl-gen-samples: --threads must be >= 1, got " << threads);

  const fs::path root = o.at("--flow-root");
  MSCL_CHECK(fs::is_directory(root), mscl::io_error, "mscl-gen-samples: --flow-root '" << root.string() << "' is not a directory");
  const std::vector<std::string> names = o.count("--list") ? read_list(o.at("--list")) : discover(root);
  MSCL_CHECK(!names.empty(), mscl::io_error, "mscl-gen-samples: no videos found (root " << root.string() << ")");

  // Resume or start the output file.
  const std::string out = o.at("--out");
  std::map<std::string, bool> done;
  if (fs::exists(out) && !flags.count("--overwrite")) {
    const auto prev = mscl::data::read_mds_samples(out, true);
    MSCL_CHECK(prev.options.to_json() == opt.to_json(), mscl::config_error,
               "mscl-gen-samples: " << out << " was made with options " << prev.options.to_json().dump() << ", now "
                                    << opt.to_json().dump() << "; use --overwrite or another --out");
    fs::resize_file(out, prev.valid_bytes);  // drop a partial last line
    if (prev.valid_bytes > 0) {
      std::ifstream in(out, std::ios::binary);
      in.seekg(std::streamoff(prev.valid_bytes) - 1);
      if (in.get() != '\n') std::ofstream(out, std::ios::app) << '\n';
    }
    for (const auto& v : prev.videos()) done[v.video] = true;
    std::cerr << "mscl-gen-samples: resuming " << out << " (" << done.size() << " videos done"
              << (prev.dropped_incomplete_tail ? ", dropped a partial last line" : "") << ")\n";
  } else {
    mscl::io::write_file_atomic(out, mscl::data::mds_header_line(opt) + "\n");
  }
  std::vector<std::string> todo;
  for (const auto& n : names)
    if (!done.count(n)) todo.push_back(n);

  std::ofstream sink(out, std::ios::app | std::ios::binary);
  MSCL_CHECK(sink.good(), mscl::io_error, "mscl-gen-samples: cannot append to " << out);
  mscl::train::progress_bar bar(long(todo.size()), "mds", std::max<long>(1, long(todo.size()) / 100));
  std::mutex mu;
  std::atomic<std::size_t> next{0};
  long finished = 0;
  std::vector<std::string> failures;
  auto worker = [&] {
    for (std::size_t i; (i = next.fetch_add(1)) < todo.size();) {
      std::string line, err;
      try {
        line = mscl::data::mds_record_line(process(resolve(root, todo[i]), opt, bound));
      } catch (const std::exception& e) {
        err = e.what();
      }
      std::lock_guard<std::mutex> lock(mu);
      if (err.empty()) {
        sink << line << '\n';
        sink.flush();
        if (!sink.good()) err = "write to " + out + " failed";
      }
      if (!err.empty()) failures.push_back(todo[i] + ": " + err);
      bar.update(++finished);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < std::min<int>(threads, int(std::max<std::size_t>(1, todo.size()))); ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  sink.close();

  for (const auto& f : failures) std::cerr << "mscl-gen-samples: FAILED " << f << "\n";
  if (!failures.empty()) {
    std::cerr << "mscl-gen-samples: " << failures.size() << " of " << todo.size()
              << " videos failed; fix them and run again to resume\n";
    return 1;
  }
  // Final pass: list order instead of completion order, so the file does not depend on threads.
  const auto all = mscl::data::read_mds_samples(out);
  if (!flags.count("--no-sort")) {
    std::map<std::string, std::size_t> rank;
    for (std::size_t i = 0; i < names.size(); ++i) rank.emplace(names[i], i);
    std::vector<mscl::data::mds_video_samples> v = all.videos();
    std::stable_sort(v.begin(), v.end(), [&](const auto& a, const auto& b) {
      const auto ra = rank.count(a.video) ? rank[a.video] : names.size();
      const auto rb = rank.count(b.video) ? rank[b.video] : names.size();
      return ra < rb;
    });
    mscl::data::write_mds_samples(out, opt, v);
  }
  std::size_t chosen = 0, frames = 0;
  for (const auto& v : all.videos()) chosen += v.chosen.size(), frames += std::size_t(v.num_frames);
  std::cout << "mscl-gen-samples: " << all.videos().size() << " videos, " << frames << " clip starts, " << chosen
            << " chosen (" << (frames ? 100.0 * double(chosen) / double(frames) : 0.0) << "%) -> " << out << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::map<std::string, std::string> opts;
    std::map<std::string, bool> flags;
    static const char* with_value[] = {"--flow-root", "--out",   "--list",  "--threads",      "--weight-type",
                                       "--att-type",  "--pool-type", "--clip-len", "--clip-stride", "--block",
                                       "--eps",       "--sobel-border", "--bound"};
    static const char* switches[] = {"--official-nan", "--overwrite", "--no-sort"};
    for (int i = 1; i < argc; ++i) {
      const std::string k = argv[i];
      if (k == "--help" || k == "-h") {
        std::cout << usage;
        return 0;
      }
      bool is_switch = false, takes_value = false;
      for (const char* s : switches) is_switch = is_switch || k == s;
      for (const char* s : with_value) takes_value = takes_value || k == s;
      if (is_switch) {
        flags[k] = true;
        continue;
      }
      if (!takes_value) throw mscl::config_error("mscl-gen-samples: unknown option " + k + "\n" + usage);
      if (i + 1 >= argc) throw mscl::config_error("mscl-gen-samples: " + k + " needs a value");
      opts[k] = argv[++i];
    }
    return run(opts, flags);
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
}
