// mscl-retrieve: nearest-neighbour video retrieval with a frozen backbone (ECOSYSTEM.md §2.1):
// one feature per video (mean over its test clips), query = test list, gallery = train list,
// Recall@k for k = 1, 5, 10, 20, 50, printed with the protocol; optionally a linear probe on the
// same features and a PNG grid of queries with their top-5 neighbours.
//
//   mscl-retrieve --checkpoint RUN_DIR_OR_FILE --root DATA [--json out.json] [--grid out.png]
//   mscl-retrieve --random-init --depth 10 --width 16 --root DATA      (the untrained floor)
//
// --device cuda (builds with MSCL_WITH_CUDA): the backbone runs on the GPU; frames are read on the host.
//
// Build: examples/CMakeLists.txt makes every examples/*.cpp a program (needs MSCL_WITH_JPEG).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include <mscl/config.hpp>
#include <mscl/data/annotations.hpp>
#include <mscl/eval/clip_reader.hpp>
#include <mscl/eval/features.hpp>
#include <mscl/eval/linear_probe.hpp>
#include <mscl/eval/retrieval.hpp>
#include <mscl/io/atomic_file.hpp>
#include <mscl/io/npy.hpp>
#include <mscl/viz/canvas.hpp>

#include "cuda/cuda_placement.hpp"
#if MSCL_PROGRAMS_WITH_CUDA
#include "cuda/features_on_cuda.hpp"
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace fs = std::filesystem;
using mscl::index_t;
using json = nlohmann::json;

namespace {

const char* usage =
    "usage: mscl-retrieve (--checkpoint PATH [--prefix P] | --weights FILE [--key-map RULES] | --random-init [--seed S])\n"
    "         --root DIR [--train-list FILE] [--test-list FILE] [--class-index FILE]\n"
    "         [--depth 10|18|34] [--width W] [--preset demo|ucf101]\n"
    "         [--clip-len T] [--interval I] [--clips N] [--short-side S] [--crop C] [--three-crop]\n"
    "         [--normalize imagenet|none] [--centering gallery|per-set|none] [--no-l2] [--ks 1,5,10,20,50]\n"
    "         [--batch B] [--threads P] [--cache DIR] [--json OUT.json] [--linear-probe] [--probe-l2 L]\n"
    "         [--grid OUT.png] [--grid-queries Q] [--limit-train N] [--limit-test N] [--quiet]\n"
    "         [--device cpu|cuda] [--precision tf32|fp32|bf16]\n"
    "\n"
    "Weights: --checkpoint takes a pretraining output directory (latest.json) or checkpoint file and\n"
    "  loads the RGB query backbone under --prefix (default model.rgb_q.backbone.); --weights takes\n"
    "  torchvision-named safetensors (fc.* ignored; --key-map rules first, e.g. 'backbone.='); \n"
    "  --random-init evaluates an untrained backbone of the same architecture (the floor).\n"
    "  Depth/width are read from the weights; give --depth/--width for --random-init (default 18/64)\n"
    "  or to check them.\n"
    "Data: MMAction2 rawframes under --root; lists default to ROOT/train_list.txt (gallery) and\n"
    "  ROOT/test_list.txt (queries), as mscl-make-synthetic writes them; class names from\n"
    "  ROOT/classInd.txt when present.\n"
    "Protocol (defaults = --preset demo: the synthetic demo data): 10 clips x 8 frames @ interval 2 at\n"
    "  MMAction2 test offsets, no resize, centre crop 32, ImageNet normalisation. --preset ucf101:\n"
    "  short side 128, centre crop 112, 10 clips x 8 frames @ interval 8. Explicit options override.\n"
    "  Features: mean over a video's views of the pooled backbone output; centering with the gallery\n"
    "  mean (--centering per-set reproduces CoCLR/MSCL's each-set mean, none = VCOP's plain cosine),\n"
    "  L2 normalisation, cosine similarity, ties to the lower gallery index; k beyond the gallery is\n"
    "  evaluated at the gallery size (reported).\n"
    "--cache DIR: reuse DIR/{gallery,query}_features.npy when DIR/features_meta.json matches this\n"
    "  run's weights, architecture, lists and protocol; else extract and write them.\n"
    "--linear-probe: multinomial logistic regression (L2 --probe-l2, default 1e-3) on the standardised\n"
    "  gallery features, top-1 on the queries.\n"
    "--grid: PNG of --grid-queries (default 6) evenly spaced queries, each with its top-5 gallery\n"
    "  neighbours (middle frame; green border = same class, red = other).\n"
    "--device cuda: the backbone runs on the GPU (builds with the CUDA backend); frames are read on the host.\n"
    "  --precision: the GPU's float arithmetic, tf32 (default), fp32, or bf16 autocast.\n";

struct args_t {
  std::string checkpoint, prefix = mscl::eval::k_pretrain_rgb_backbone_prefix, weights, key_map;
  bool random_init = false;
  std::uint64_t seed = 0;
  std::string root, train_list, test_list, class_index;
  int depth = 0;
  index_t width = 0;
  mscl::eval::test_clip_options clips;
  std::string normalize = "imagenet";
  mscl::eval::retrieval_options retrieval;
  index_t batch = 32;
  int threads = 2;
  std::string cache, json_out, grid;
  int grid_queries = 6;
  bool linear_probe = false;
  double probe_l2 = 1e-3;
  long limit_train = 0, limit_test = 0;
  bool quiet = false;
  std::string device = "cpu";
  std::string precision;  ///< --precision (checked_precision: tf32 when not given)
};

std::vector<int> parse_ks(const std::string& s) {
  std::vector<int> ks;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    MSCL_CHECK(!item.empty() && item.find_first_not_of("0123456789") == std::string::npos, mscl::config_error,
               "mscl-retrieve: --ks expects positive integers separated by commas, got '" << s << "'");
    ks.push_back(std::stoi(item));
  }
  MSCL_CHECK(!ks.empty(), mscl::config_error, "mscl-retrieve: --ks is empty");
  return ks;
}

long parse_long(const std::string& k, const std::string& v, long lo) {
  std::size_t used = 0;
  long x = 0;
  try {
    x = std::stol(v, &used);
  } catch (...) {
    used = 0;
  }
  MSCL_CHECK(used == v.size() && x >= lo, mscl::config_error,
             "mscl-retrieve: " << k << " expects an integer >= " << lo << ", got '" << v << "'");
  return x;
}

args_t parse(int argc, char** argv) {
  args_t a;
  // Demo preset first; --preset and explicit options override in order of appearance.
  a.clips.clip_len = 8;
  a.clips.frame_interval = 2;
  a.clips.num_clips = 10;
  a.clips.crop_size = 32;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--help" || k == "-h") {
      std::cout << usage;
      std::exit(0);
    }
    if (k == "--random-init") { a.random_init = true; continue; }
    if (k == "--three-crop") { a.clips.crop = mscl::eval::crop_mode::three; continue; }
    if (k == "--no-l2") { a.retrieval.l2_normalize = false; continue; }
    if (k == "--linear-probe") { a.linear_probe = true; continue; }
    if (k == "--quiet") { a.quiet = true; continue; }
    MSCL_CHECK(i + 1 < argc, mscl::config_error, "mscl-retrieve: option " << k << " needs a value (see --help)");
    const std::string v = argv[++i];
    if (k == "--checkpoint") a.checkpoint = v;
    else if (k == "--prefix") a.prefix = v;
    else if (k == "--weights") a.weights = v;
    else if (k == "--key-map") a.key_map = v;
    else if (k == "--seed") a.seed = std::uint64_t(parse_long(k, v, 0));
    else if (k == "--root") a.root = v;
    else if (k == "--device") {
      MSCL_CHECK(v == "cpu" || v == "cuda", mscl::config_error, "mscl-retrieve: --device expects cpu or cuda, got '" << v << "'");
#if !MSCL_PROGRAMS_WITH_CUDA
      MSCL_CHECK(v != "cuda", mscl::config_error,
                 "mscl-retrieve: --device cuda needs a build with the CUDA backend (configure with -DMSCL_WITH_CUDA=ON)");
#endif
      a.device = v;
    }
    else if (k == "--precision") a.precision = v;
    else if (k == "--train-list") a.train_list = v;
    else if (k == "--test-list") a.test_list = v;
    else if (k == "--class-index") a.class_index = v;
    else if (k == "--depth") a.depth = int(parse_long(k, v, 1));
    else if (k == "--width") a.width = parse_long(k, v, 1);
    else if (k == "--preset") {
      if (v == "demo") {
        a.clips.clip_len = 8; a.clips.frame_interval = 2; a.clips.num_clips = 10;
        a.clips.short_side = 0; a.clips.crop_size = 32;
      } else if (v == "ucf101") {
        a.clips.clip_len = 8; a.clips.frame_interval = 8; a.clips.num_clips = 10;
        a.clips.short_side = 128; a.clips.crop_size = 112;
      } else {
        throw mscl::config_error("mscl-retrieve: --preset must be demo or ucf101, got '" + v + "'");
      }
    }
    else if (k == "--clip-len") a.clips.clip_len = parse_long(k, v, 1);
    else if (k == "--interval") a.clips.frame_interval = parse_long(k, v, 1);
    else if (k == "--clips") a.clips.num_clips = parse_long(k, v, 1);
    else if (k == "--short-side") a.clips.short_side = int(parse_long(k, v, 0));
    else if (k == "--crop") a.clips.crop_size = int(parse_long(k, v, 0));
    else if (k == "--normalize") a.normalize = v;
    else if (k == "--centering") {
      if (v == "gallery") a.retrieval.center = mscl::eval::centering::gallery_mean;
      else if (v == "per-set") a.retrieval.center = mscl::eval::centering::per_set;
      else if (v == "none") a.retrieval.center = mscl::eval::centering::none;
      else throw mscl::config_error("mscl-retrieve: --centering must be gallery, per-set or none, got '" + v + "'");
    }
    else if (k == "--ks") a.retrieval.ks = parse_ks(v);
    else if (k == "--batch") a.batch = parse_long(k, v, 1);
    else if (k == "--threads") a.threads = int(parse_long(k, v, 1));
    else if (k == "--cache") a.cache = v;
    else if (k == "--json") a.json_out = v;
    else if (k == "--grid") a.grid = v;
    else if (k == "--grid-queries") a.grid_queries = int(parse_long(k, v, 1));
    else if (k == "--probe-l2") a.probe_l2 = std::stod(v);
    else if (k == "--limit-train") a.limit_train = parse_long(k, v, 1);
    else if (k == "--limit-test") a.limit_test = parse_long(k, v, 1);
    else throw mscl::config_error("mscl-retrieve: unknown option " + k + " (see --help)");
  }
  const int sources = int(!a.checkpoint.empty()) + int(!a.weights.empty()) + int(a.random_init);
  MSCL_CHECK(sources == 1, mscl::config_error,
             "mscl-retrieve: give exactly one of --checkpoint, --weights, --random-init (see --help)");
  MSCL_CHECK(!a.root.empty(), mscl::config_error, "mscl-retrieve: --root is required (see --help)");
  if (a.train_list.empty()) a.train_list = (fs::path(a.root) / "train_list.txt").string();
  if (a.test_list.empty()) a.test_list = (fs::path(a.root) / "test_list.txt").string();
  if (a.class_index.empty() && fs::exists(fs::path(a.root) / "classInd.txt"))
    a.class_index = (fs::path(a.root) / "classInd.txt").string();
  if (a.normalize == "none") a.clips.no_normalization();
  else MSCL_CHECK(a.normalize == "imagenet", mscl::config_error,
                  "mscl-retrieve: --normalize must be imagenet or none, got '" << a.normalize << "'");
  a.clips.validate("mscl-retrieve");
  a.precision = mscl::programs::checked_precision("mscl-retrieve", a.precision, a.device);
  return a;
}

std::string label_name(const std::vector<std::string>& names, int label) {
  return label >= 0 && label < int(names.size()) ? names[std::size_t(label)] : std::to_string(label);
}

/// A PNG of `rows` queries, each followed by its 5 best gallery neighbours (middle frames).
void write_grid(const std::string& path, const args_t& a, const std::vector<mscl::data::rawframe_entry>& query,
                const std::vector<mscl::data::rawframe_entry>& gallery, const mscl::eval::retrieval_result& r,
                const std::vector<std::string>& names) {
  const index_t rows = std::min<index_t>(a.grid_queries, r.num_queries);
  const index_t cols = std::min<index_t>(5, r.neighbours_per_query);
  auto middle_frame = [&](const mscl::data::rawframe_entry& e) {
    const auto d = mscl::data::rawframes_dir::probe((fs::path(a.root) / e.frame_dir).string());
    return d.read_rgb(e.offset + e.total_frames / 2);
  };
  const auto probe = middle_frame(query[0]);
  const int tile_h = 96, tile_w = std::max(48, int(double(tile_h) * probe.width / probe.height + 0.5));
  const int border = 4, gap = 8, text_h = 2 * mscl::viz::k_glyph_height + 2, cell_w = tile_w + 2 * border;
  const int cell_h = tile_h + 2 * border + text_h, header = 2 * mscl::viz::k_glyph_height * 2 + 12;
  const int width = gap + int(cols + 1) * (cell_w + gap) + gap, height = header + int(rows) * (cell_h + gap) + gap;
  mscl::viz::canvas cv(height, width, mscl::viz::colors::white);
  std::ostringstream title;
  title << "retrieval: R@1 " << std::fixed;
  title.precision(3);
  title << r.recall[0] << " (k=" << r.ks[0] << ")";
  cv.text(gap, 6, title.str(), mscl::viz::colors::black, 2);
  const int y_head = 6 + 2 * mscl::viz::k_glyph_height + 2;
  cv.text(gap + border, y_head, "query", mscl::viz::colors::black);
  for (index_t c = 0; c < cols; ++c)
    cv.text(gap + int(c + 1) * (cell_w + gap) + border, y_head, "rank " + std::to_string(c + 1), mscl::viz::colors::black);
  auto fit = [&](std::string s) {
    const std::size_t max_chars = std::size_t(std::max(1, (cell_w + 1) / mscl::viz::k_glyph_width));
    if (s.size() > max_chars) s = s.substr(0, max_chars);
    return s;
  };
  for (index_t i = 0; i < rows; ++i) {
    const index_t q = rows > 1 ? i * (r.num_queries - 1) / (rows - 1) : 0;  // evenly spaced queries
    const int y = header + int(i) * (cell_h + gap);
    const int qlabel = query[std::size_t(q)].labels.at(0);
    auto draw = [&](int x, const mscl::data::rawframe_entry& e, mscl::viz::rgb col, const std::string& line1,
                    const std::string& line2) {
      cv.fill_rect(x, y, cell_w, tile_h + 2 * border, col);
      cv.blit(middle_frame(e), x + border, y + border, tile_w, tile_h, mscl::viz::interpolation::nearest);
      cv.text(x, y + tile_h + 2 * border + 2, fit(line1), mscl::viz::colors::black);
      cv.text(x, y + tile_h + 2 * border + 2 + mscl::viz::k_glyph_height, fit(line2), mscl::viz::colors::grey);
    };
    draw(gap, query[std::size_t(q)], mscl::viz::colors::blue, label_name(names, qlabel), "query " + std::to_string(q));
    for (index_t c = 0; c < cols; ++c) {
      const index_t g = r.neighbour(q, c);
      const int gl = gallery[std::size_t(g)].labels.at(0);
      char sim[32];
      std::snprintf(sim, sizeof sim, "%.3f", double(r.similarity(q, c)));
      draw(gap + int(c + 1) * (cell_w + gap), gallery[std::size_t(g)],
           gl == qlabel ? mscl::viz::colors::green : mscl::viz::colors::red, label_name(names, gl), sim);
    }
  }
  cv.save_png(path);
}

}  // namespace

int main(int argc, char** argv) {
  try {
#if !(defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG)
    (void)argc;
    (void)argv;
    std::cerr << "error: mscl-retrieve reads rawframes JPEGs and was built without MSCL_WITH_JPEG\n";
    return 2;
#else
    args_t a = parse(argc, argv);
#ifdef _OPENMP
    omp_set_num_threads(a.threads);
#endif
    namespace ev = mscl::eval;
    // ---- lists
    auto gallery = mscl::data::read_rawframe_list(a.train_list);
    auto query = mscl::data::read_rawframe_list(a.test_list);
    if (a.limit_train > 0 && std::size_t(a.limit_train) < gallery.size()) gallery.resize(std::size_t(a.limit_train));
    if (a.limit_test > 0 && std::size_t(a.limit_test) < query.size()) query.resize(std::size_t(a.limit_test));
    MSCL_CHECK(!gallery.empty() && !query.empty(), mscl::config_error,
               "mscl-retrieve: empty list (" << a.train_list << ": " << gallery.size() << ", " << a.test_list << ": "
                                             << query.size() << ")");
    std::vector<int> gl, ql;
    for (const auto& e : gallery) gl.push_back(e.labels.at(0));
    for (const auto& e : query) ql.push_back(e.labels.at(0));
    std::vector<std::string> names;
    if (!a.class_index.empty()) names = mscl::data::read_class_index(a.class_index).names;

    // ---- backbone
    ev::backbone_spec spec;
    std::string source;
    if (a.random_init) {
      spec = ev::backbone_spec::of_depth(a.depth ? a.depth : 18, a.width ? a.width : 64);
      source = "random init (seed " + std::to_string(a.seed) + ")";
    } else {
      const std::string file = ev::resolve_checkpoint_path(a.checkpoint.empty() ? a.weights : a.checkpoint);
      const auto f = mscl::io::safetensors_file::open(file);
      if (!a.checkpoint.empty() || a.key_map.empty()) {
        spec = ev::infer_backbone_spec(f, a.checkpoint.empty() ? "" : a.prefix, file);
        if (a.depth) MSCL_CHECK(ev::backbone_spec::of_depth(a.depth, spec.width) == spec, mscl::config_error,
                                "mscl-retrieve: --depth " << a.depth << " but " << file << " holds " << spec.name());
        if (a.width) MSCL_CHECK(a.width == spec.width, mscl::config_error,
                                "mscl-retrieve: --width " << a.width << " but " << file << " holds " << spec.name());
      } else {
        MSCL_CHECK(a.depth && a.width, mscl::config_error,
                   "mscl-retrieve: with --key-map give --depth and --width (the architecture is not inferred)");
        spec = ev::backbone_spec::of_depth(a.depth, a.width);
      }
      source = file + (a.checkpoint.empty() ? std::string(" (torchvision names)") : " (prefix " + a.prefix + ")");
    }
    auto net = ev::make_backbone(spec, a.seed);
    if (!a.checkpoint.empty()) ev::load_backbone_from_checkpoint(*net, a.checkpoint, a.prefix);
    else if (!a.weights.empty()) ev::load_backbone_from_torchvision(*net, a.weights, mscl::io::key_map::parse(a.key_map));

    const std::string protocol_line = "query = " + a.test_list + " (" + std::to_string(query.size()) +
                                      " videos), gallery = " + a.train_list + " (" + std::to_string(gallery.size()) +
                                      " videos); feature = mean over " + a.clips.describe() + "; centering " +
                                      ev::centering_name(a.retrieval.center) +
                                      (a.retrieval.l2_normalize ? ", L2-normalised" : ", not normalised") +
                                      ", cosine similarity";
    if (!a.quiet) {
      std::cout << "backbone: " << spec.name() << " from " << source << "\n";
      std::cout << "protocol: " << protocol_line << "\n";
    }

    // ---- features (optionally cached)
    json meta = {{"source", source}, {"backbone", spec.name()}, {"protocol", a.clips.describe()},
                 {"train_list", a.train_list}, {"test_list", a.test_list}, {"train_videos", gallery.size()},
                 {"test_videos", query.size()}, {"root", a.root}};
    if (!a.random_init) {
      const std::string file = ev::resolve_checkpoint_path(a.checkpoint.empty() ? a.weights : a.checkpoint);
      meta["weights_bytes"] = fs::file_size(file);
      meta["weights_mtime"] = (long long)fs::last_write_time(file).time_since_epoch().count();
    }
    mscl::tensor<float> gf, qf;
    double t_gallery = 0, t_query = 0;
    bool cached = false;
    const std::string meta_path = a.cache.empty() ? "" : (fs::path(a.cache) / "features_meta.json").string();
    const std::string g_path = a.cache.empty() ? "" : (fs::path(a.cache) / "gallery_features.npy").string();
    const std::string q_path = a.cache.empty() ? "" : (fs::path(a.cache) / "query_features.npy").string();
    if (!a.cache.empty() && fs::exists(meta_path) && fs::exists(g_path) && fs::exists(q_path)) {
      std::ifstream in(meta_path);
      json old;
      try { in >> old; } catch (...) { old = json(); }
      if (old == meta) {
        gf = mscl::io::read_npy<float>(g_path);
        qf = mscl::io::read_npy<float>(q_path);
        cached = gf.dim() == 2 && qf.dim() == 2 && gf.shape()[0] == index_t(gallery.size()) &&
                 qf.shape()[0] == index_t(query.size());
        if (cached && !a.quiet) std::cout << "features: loaded from cache " << a.cache << "\n";
      }
    }
    if (!cached) {
      ev::extract_options eo;
      eo.batch_clips = a.batch;
      eo.progress = !a.quiet;
      eo.label = "gallery";
      // Features on the host network, or through the GPU copy of it (same extraction code).
      auto extract = [&](auto& features_net) {
        auto t0 = std::chrono::steady_clock::now();
        gf = ev::extract_rawframes_features(features_net, a.root, gallery, a.clips, eo);
        auto t1 = std::chrono::steady_clock::now();
        eo.label = "query";
        qf = ev::extract_rawframes_features(features_net, a.root, query, a.clips, eo);
        return std::make_pair(t0, t1);
      };
      std::pair<std::chrono::steady_clock::time_point, std::chrono::steady_clock::time_point> marks;
      if (a.device == "cuda") {
#if MSCL_PROGRAMS_WITH_CUDA
        mscl::programs::cuda_placement where;
        where.precision = a.precision;
        where.announce = [&](const std::string& line) { if (!a.quiet) std::cout << "device: " << line << "\n"; };
        mscl::programs::feature_function_net device_net{mscl::programs::cuda_feature_function(*net, where)};
        marks = extract(device_net);
#endif
      } else {
        marks = extract(*net);
      }
      const auto t0 = marks.first, t1 = marks.second;
      auto t2 = std::chrono::steady_clock::now();
      t_gallery = std::chrono::duration<double>(t1 - t0).count();
      t_query = std::chrono::duration<double>(t2 - t1).count();
      if (!a.cache.empty()) {
        fs::create_directories(a.cache);
        mscl::io::write_npy(g_path, gf);
        mscl::io::write_npy(q_path, qf);
        mscl::io::write_file_atomic(meta_path, meta.dump(2) + "\n");
      }
    }

    // ---- retrieval
    const auto t3 = std::chrono::steady_clock::now();
    const auto r = ev::retrieve(qf, ql, gf, gl, a.retrieval);
    const double t_retrieval = std::chrono::duration<double>(std::chrono::steady_clock::now() - t3).count();
    const double videos = double(gallery.size() + query.size());
    std::printf("  %-6s %-8s %s\n", "k", "R@k", "hits");
    for (std::size_t i = 0; i < r.ks.size(); ++i)
      std::printf("  %-6d %-8.4f %lld/%lld%s\n", r.ks[i], r.recall[i], (long long)r.hits[i], (long long)r.num_queries,
                  r.effective_ks[i] != r.ks[i] ? (" (evaluated at k=" + std::to_string(r.effective_ks[i]) + ", the gallery size)").c_str() : "");
    if (!a.quiet) {
      if (!cached)
        std::printf("features: %.0f videos in %.2f s (%.2f videos/s, %d threads, %lld views per video)\n", videos,
                    t_gallery + t_query, videos / std::max(1e-9, t_gallery + t_query), a.threads,
                    (long long)a.clips.views());
      std::printf("retrieval: %lld queries x %lld gallery x %lld dims in %.4f s\n", (long long)r.num_queries,
                  (long long)r.num_gallery, (long long)r.dim, t_retrieval);
    }

    json out = {{"protocol", protocol_line}, {"backbone", spec.name()}, {"source", source},
                {"num_queries", r.num_queries}, {"num_gallery", r.num_gallery}, {"feature_dim", r.dim},
                {"centering", ev::centering_name(a.retrieval.center)}, {"l2_normalize", a.retrieval.l2_normalize},
                {"clips", {{"clip_len", a.clips.clip_len}, {"frame_interval", a.clips.frame_interval},
                           {"num_clips", a.clips.num_clips}, {"short_side", a.clips.short_side},
                           {"crop_size", a.clips.crop_size}, {"crop", ev::crop_mode_name(a.clips.crop)},
                           {"normalize", a.normalize}}},
                {"features_cached", cached},
                {"seconds", {{"gallery_features", t_gallery}, {"query_features", t_query}, {"retrieval", t_retrieval}}}};
    for (std::size_t i = 0; i < r.ks.size(); ++i) {
      const std::string k = std::to_string(r.ks[i]);
      out["recall"][k] = r.recall[i];
      out["hits"][k] = r.hits[i];
      out["effective_k"][k] = r.effective_ks[i];
    }
    if (!cached) out["videos_per_second"] = videos / std::max(1e-9, t_gallery + t_query);

    // ---- linear probe
    if (a.linear_probe) {
      ev::linear_probe_options po;
      po.l2 = a.probe_l2;
      int k = 0;
      for (int l : gl) k = std::max(k, l + 1);
      for (int l : ql) k = std::max(k, l + 1);
      const auto t4 = std::chrono::steady_clock::now();
      const auto p = ev::linear_probe(gf, gl, qf, ql, k, po);
      const double t_probe = std::chrono::duration<double>(std::chrono::steady_clock::now() - t4).count();
      std::printf("linear probe: top-1 %.4f on %lld queries (train %.4f; L2 %g; %d L-BFGS iterations%s; %.2f s)\n",
                  p.test_accuracy, (long long)qf.shape()[0], p.train_accuracy, po.l2, p.iterations,
                  p.converged ? "" : ", not converged", t_probe);
      out["linear_probe"] = {{"top1", p.test_accuracy}, {"train_top1", p.train_accuracy}, {"l2", po.l2},
                             {"iterations", p.iterations}, {"converged", p.converged}, {"seconds", t_probe}};
    }
    if (!a.grid.empty()) {
      write_grid(a.grid, a, query, gallery, r, names);
      if (!a.quiet) std::cout << "grid: " << a.grid << "\n";
    }
    if (!a.json_out.empty()) mscl::io::write_file_atomic(a.json_out, out.dump(2) + "\n");
    return 0;
#endif
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
