// Flow extraction (include/mscl/flow/extract.hpp): rawframes of a texture translated by a known
// motion go in, and the written flow files must decode to that motion (the reference is the
// translation used to render the frames, not anything the extractor computed); plus the file
// names and counts of both layouts, resume/skip, option-change refusal, failure isolation, stale
// temporaries, and (with FFmpeg) one encoded video.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <mscl/flow/extract.hpp>

#if defined(MSCL_WITH_FFMPEG) && MSCL_WITH_FFMPEG
#include "video_test_util.hpp"
#endif

namespace fs = std::filesystem;
using namespace mscl;

#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG

namespace {

constexpr int H = 48, W = 64;
constexpr double DX = 1.5, DY = -1.0;  // pixels per frame

/// A fresh directory under the system temp dir, removed at scope exit.
struct temp_dir {
  fs::path path;
  explicit temp_dir(const std::string& tag) {
    path = fs::temp_directory_path() / ("mscl_flow_extract_" + tag + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

/// Smooth texture with gradients in every direction, frame t moved by t·(DX, DY): I_t(x) = T(x − t·d).
data::image_u8 shifted_frame(int t, double phase) {
  data::image_u8 img(H, W, 3);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const double u = x - t * DX, v = y - t * DY;
      const double g = 128 + 45 * std::sin(0.37 * u + 0.21 * v + phase) + 35 * std::sin(0.16 * u - 0.43 * v + 1.0) +
                       25 * std::sin(0.55 * u + 0.31 * v + 2.0 + phase);
      const auto q = std::uint8_t(std::clamp(std::lround(g), 0L, 255L));
      img.at(y, x, 0) = q;
      img.at(y, x, 1) = q;
      img.at(y, x, 2) = q;
    }
  return img;
}

void write_rawframes(const fs::path& dir, int frames, double phase) {
  fs::create_directories(dir);
  for (int t = 0; t < frames; ++t) {
    char name[32];
    std::snprintf(name, sizeof name, "img_%05d.jpg", t + 1);
    io::write_jpeg((dir / name).string(), shifted_frame(t, phase), 95);
  }
}

/// Mean endpoint error against a constant motion, ignoring a border where the texture leaves the frame.
double mean_epe(const std::vector<float>& u, const std::vector<float>& v, int h, int w, double du, double dv) {
  const int b = 6;
  double s = 0;
  int n = 0;
  for (int y = b; y < h - b; ++y)
    for (int x = b; x < w - b; ++x, ++n) {
      const std::size_t i = std::size_t(y) * std::size_t(w) + std::size_t(x);
      s += std::hypot(u[i] - du, v[i] - dv);
    }
  return s / n;
}

std::vector<std::string> sorted_files(const fs::path& dir) {
  std::vector<std::string> f;
  for (const auto& e : fs::directory_iterator(dir)) f.push_back(e.path().filename().string());
  std::sort(f.begin(), f.end());
  return f;
}

flow::extract_options fast_options() {
  flow::extract_options o;
  o.durable = false;  // tests need no syncfs
  return o;
}

}  // namespace

TEST_CASE("extract quantised flow from rawframes decodes to the rendered translation", "[flow][extract]") {
  temp_dir tmp("jpeg");
  write_rawframes(tmp.path / "in" / "classA" / "vid1", 4, 0.0);
  const auto jobs = flow::discover_rawframes_dirs((tmp.path / "in").string());
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].name == "classA/vid1");

  const auto opt = fast_options();
  const auto s = flow::extract_batch(jobs, (tmp.path / "out").string(), opt, {});
  REQUIRE(s.done == 1);
  CHECK(s.failed == 0);
  CHECK(s.flows == 3);  // 4 frames -> 3 pairs
  const fs::path out = tmp.path / "out" / "classA" / "vid1";
  const std::vector<std::string> expect = {".mscl-extract-flow.json", "flow_x_00001.jpg", "flow_x_00002.jpg",
                                           "flow_x_00003.jpg",        "flow_y_00001.jpg", "flow_y_00002.jpg",
                                           "flow_y_00003.jpg"};
  CHECK(sorted_files(out) == expect);
  CHECK(sorted_files(tmp.path / "out" / "classA") == std::vector<std::string>{"vid1"});  // no temporaries left

  // Read back through the rawframes reader, as a training loader would.
  const auto d = data::rawframes_dir::probe(out.string());
  REQUIRE(d.flow == data::flow_layout::two_grey);
  CHECK(d.flow_start == 1);
  REQUIRE(d.flow_count == 3);
  for (std::int64_t i = 0; i < d.flow_count; ++i) {
    const data::flow_field f = d.read_flow(i, 20.f);
    CHECK(f.height == H);
    CHECK(f.width == W);
    // Quantisation step 0.157 px plus TV-L1 error on a 48x64 JPEG texture: loose bound.
    CHECK(mean_epe(f.u, f.v, H, W, DX, DY) < 0.15);
  }
  const auto m = flow::read_extract_manifest(out);
  REQUIRE(m);
  CHECK((*m)["flows"] == 3);
  CHECK((*m)["input_frames"] == 4);
  CHECK((*m)["options"] == opt.to_json());
}

TEST_CASE("float layout with frame stride and pair offset, plus RGB frames", "[flow][extract]") {
  temp_dir tmp("flo");
  write_rawframes(tmp.path / "in" / "v", 6, 0.7);
  auto opt = fast_options();
  opt.layout = flow::flow_output_layout::flo;
  opt.frame_stride = 2;
  opt.pair_offset = 2;  // pairs (0,2), (2,4): frame 5 has no partner
  opt.also_rgb = true;
  const auto s = flow::extract_batch(flow::discover_rawframes_dirs((tmp.path / "in").string()),
                                     (tmp.path / "out").string(), opt, {});
  REQUIRE(s.done == 1);
  const fs::path out = tmp.path / "out" / "v";
  const std::vector<std::string> expect = {".mscl-extract-flow.json", "flow_00001.flo", "flow_00002.flo",
                                           "img_00001.jpg",           "img_00002.jpg",  "img_00003.jpg"};
  CHECK(sorted_files(out) == expect);
  for (int k = 1; k <= 2; ++k) {
    char name[32];
    std::snprintf(name, sizeof name, "flow_%05d.flo", k);
    const data::flow_field f = io::read_flo((out / name).string());
    REQUIRE(f.height == H);
    REQUIRE(f.width == W);
    CHECK(mean_epe(f.u, f.v, H, W, 2 * DX, 2 * DY) < 0.1);  // float: no quantisation
  }
  // RGB file k is original frame 2(k-1), byte for byte (rawframes input without resizing: linked).
  auto bytes = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  CHECK(bytes(out / "img_00002.jpg") == bytes(tmp.path / "in" / "v" / "img_00003.jpg"));
  CHECK(bytes(out / "img_00003.jpg") == bytes(tmp.path / "in" / "v" / "img_00005.jpg"));

  // MSCL's release pairs on 20 frames: ceil((20 - 8) / 2) = 6 flows (ALGORITHM.md §1.1).
  CHECK(flow::flow_pair_count(20, 2, 8) == 6);
  CHECK(flow::flow_pair_count(8, 2, 8) == 0);
  CHECK(flow::flow_pair_count(9, 2, 8) == 1);
  CHECK(flow::flow_pair_count(10, 1, 1) == 9);
}

TEST_CASE("rerun skips finished videos and refuses changed options", "[flow][extract]") {
  temp_dir tmp("resume");
  write_rawframes(tmp.path / "in" / "a", 3, 0.0);
  write_rawframes(tmp.path / "in" / "b", 3, 1.3);
  const auto jobs = flow::discover_rawframes_dirs((tmp.path / "in").string());
  REQUIRE(jobs.size() == 2);
  const std::string out = (tmp.path / "out").string();
  const auto opt = fast_options();
  REQUIRE(flow::extract_batch(jobs, out, opt, {2, 1, false}).done == 2);

  const fs::path probe_file = tmp.path / "out" / "a" / "flow_x_00002.jpg";
  const auto t_before = fs::last_write_time(probe_file);
  const auto s = flow::extract_batch(jobs, out, opt, {2, 1, false});
  CHECK(s.done == 0);
  CHECK(s.skipped == 2);
  CHECK(s.failed == 0);
  CHECK(s.results[0].stats.flows == 2);  // counts come from the manifest
  CHECK(fs::last_write_time(probe_file) == t_before);
  CHECK(flow::format_summary(s) == "0 ok, 2 skipped (already done), 0 failed");

  auto other = opt;
  other.bound = 10.f;
  std::string why;
  CHECK(flow::check_output(out, "a", other, &why) == flow::output_state::other_options);
  CHECK(why.find("bound") != std::string::npos);
  CHECK(flow::conflicting_outputs(jobs, out, other).size() == 2);
  const auto refused = flow::extract_batch(jobs, out, other, {1, 1, false});
  CHECK(refused.failed == 2);
  CHECK(fs::last_write_time(probe_file) == t_before);  // untouched
  // Thread counts and the device are not part of the identity of an output.
  auto threads = opt;
  threads.tvl1.threads = 7;
  CHECK(flow::check_output(out, "a", threads) == flow::output_state::complete);

  // With overwrite the output is replaced and the manifest records the new options.
  const auto s2 = flow::extract_batch({jobs[0]}, out, other, {1, 1, true});
  CHECK(s2.done == 1);
  CHECK(flow::check_output(out, "a", other) == flow::output_state::complete);
  CHECK(sorted_files(tmp.path / "out") == std::vector<std::string>{"a", "b"});  // no .old / .tmp siblings

  // A directory without a manifest (made by another tool) is refused too.
  fs::create_directories(tmp.path / "out" / "c");
  CHECK(flow::check_output(out, "c", opt) == flow::output_state::foreign);
}

TEST_CASE("a corrupt frame fails only its video, and stale temporaries are removed", "[flow][extract]") {
  temp_dir tmp("fail");
  write_rawframes(tmp.path / "in" / "good1", 3, 0.0);
  write_rawframes(tmp.path / "in" / "bad", 3, 0.5);
  write_rawframes(tmp.path / "in" / "good2", 3, 1.0);
  {  // truncate the second frame of "bad" to half its bytes
    const fs::path p = tmp.path / "in" / "bad" / "img_00002.jpg";
    fs::resize_file(p, fs::file_size(p) / 2);
  }
  // Leftover of an interrupted run of good1.
  const fs::path stale = tmp.path / "out" / ".good1.mscl-flow-tmp";
  fs::create_directories(stale);
  std::ofstream(stale / "flow_x_00001.jpg") << "half";

  const auto jobs = flow::discover_rawframes_dirs((tmp.path / "in").string());
  REQUIRE(jobs.size() == 3);
  const auto s = flow::extract_batch(jobs, (tmp.path / "out").string(), fast_options(), {2, 1, false});
  CHECK(s.done == 2);
  CHECK(s.failed == 1);
  REQUIRE(s.failed_names == std::vector<std::string>{"bad"});
  CHECK(flow::format_summary(s) == "2 ok, 0 skipped (already done), 1 failed: bad");
  const auto& bad = s.results[0];  // jobs are sorted by name: bad, good1, good2
  REQUIRE(bad.job.name == "bad");
  CHECK(bad.status == flow::job_status::failed);
  CHECK(bad.error.find("img_00002.jpg") != std::string::npos);  // the message names the file
  CHECK(s.results[1].removed_stale_temp);
  CHECK(s.stale_removed == 1);
  // Neither a final nor a temporary directory for the failed video; good1 complete.
  CHECK(sorted_files(tmp.path / "out") == std::vector<std::string>{"good1", "good2"});
  CHECK(flow::read_extract_manifest(tmp.path / "out" / "good1"));
  CHECK(flow::job_result_json(bad)["status"] == "failed");
}

TEST_CASE("area resize matches block means", "[flow][extract]") {
  data::image_u8 img(4, 4, 1);
  for (int i = 0; i < 16; ++i) img.pixels[std::size_t(i)] = std::uint8_t(i * 10);
  const auto r = flow::detail::resize_image(img, 2, 2);
  // Block means of {0,10,40,50}, {20,30,60,70}, {80,90,120,130}, {100,110,140,150}.
  CHECK(r.pixels == std::vector<std::uint8_t>{25, 45, 105, 125});
  CHECK(flow::detail::extract_short_side_size(240, 320, 120) == std::pair<int, int>{120, 160});
  CHECK(flow::detail::extract_short_side_size(320, 240, 120) == std::pair<int, int>{160, 120});
}

#if defined(MSCL_WITH_FFMPEG) && MSCL_WITH_FFMPEG
TEST_CASE("extract flow and RGB frames from an encoded video", "[flow][extract][video]") {
  namespace tv = mscl::testing::video;
  temp_dir tmp("video");
  fs::create_directories(tmp.path / "videos");
  tv::encode_spec spec;
  spec.encoder = "mjpeg";  // intra-only: the moving square is sharp in every frame
  spec.frames = 5;
  const std::string path = (tmp.path / "videos" / "clip.avi").string();
  const std::string err = tv::encode_synthetic(path, spec);
  if (err == "missing encoder") {
    WARN("FFmpeg has no mjpeg encoder; skipping");
    return;
  }
  REQUIRE(err.empty());
  const auto jobs = flow::discover_video_files((tmp.path / "videos").string());
  REQUIRE(jobs.size() == 1);
  CHECK(jobs[0].name == "clip");
  auto opt = fast_options();
  opt.also_rgb = true;
  const auto s = flow::extract_batch(jobs, (tmp.path / "out").string(), opt, {});
  REQUIRE(s.done == 1);
  const fs::path out = tmp.path / "out" / "clip";
  const auto d = data::rawframes_dir::probe(out.string());
  CHECK(d.rgb_count == 5);
  CHECK(d.rgb_start == 1);
  REQUIRE(d.flow_count == 4);
  // The bright 16x16 square moves 5 px right per frame (video_test_util.hpp); the flow inside it,
  // away from its edges, must point right by about 5 px.
  const data::flow_field f = d.read_flow(1, 20.f);
  const int y0 = spec.height / 2 + 4, x0 = 4 + 5;  // square of frame 1
  double su = 0, sv = 0;
  int n = 0;
  for (int y = y0 + 4; y < y0 + 12; ++y)
    for (int x = x0 + 4; x < x0 + 12; ++x, ++n) {
      su += f.u[std::size_t(y) * std::size_t(f.width) + std::size_t(x)];
      sv += f.v[std::size_t(y) * std::size_t(f.width) + std::size_t(x)];
    }
  CHECK(su / n == Approx(5.0).margin(1.5));
  CHECK(sv / n == Approx(0.0).margin(1.0));
  // The decoded RGB frame 0 matches what was encoded (codec tolerance).
  const auto rgb0 = io::read_jpeg((out / "img_00001.jpg").string(), 3);
  CHECK(tv::mean_abs_diff(rgb0, tv::synthetic_frame(0, spec.height, spec.width)) < 6.0);
}
#endif

#else
TEST_CASE("flow extraction needs JPEG support for these tests", "[flow][extract]") { SUCCEED("built without MSCL_WITH_JPEG"); }
#endif
