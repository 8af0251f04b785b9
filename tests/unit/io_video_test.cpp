// Tests for io::video_reader: clips encoded inside the test (frame index drawn as a binary
// pattern) decode to the right count and content, seeking returns exactly the requested frames,
// resizing gives the right size and pixels, and damaged files fail with an io_error naming them.
#include <catch2/catch.hpp>

#if defined(MSCL_WITH_FFMPEG) && MSCL_WITH_FFMPEG

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <unistd.h>
#include <random>
#include <string>
#include <vector>

#include <mscl/io/video_reader.hpp>

#include "video_test_util.hpp"

namespace fs = std::filesystem;
namespace tv = mscl::testing::video;
using mscl::io::video_options;
using mscl::io::video_reader;

namespace {

struct format_case {
  const char* name;
  const char* ext;
  std::vector<const char*> encoders;  // first one present wins
  double tolerance;                   // mean |decoded - source| per channel value
  int b_frames;
  bool strict_detects;  // the decoder has error checks that strict mode turns into io_errors (VP8/VP9: none)
};

const std::vector<format_case>& formats() {
  static const std::vector<format_case> f = {
      {"avi-mpeg4", "avi", {"mpeg4"}, 6.0, 0, true},
      {"avi-mjpeg", "avi", {"mjpeg"}, 6.0, 0, true},
      {"mp4", "mp4", {"libx264", "mpeg4"}, 6.0, 2, true},
      {"webm-vp9", "webm", {"libvpx-vp9"}, 8.0, 0, false},
      {"webm-vp8", "webm", {"libvpx"}, 8.0, 0, false},
  };
  return f;
}

/// One scratch directory per process, removed at exit.
fs::path test_dir() {
  struct scratch {
    fs::path dir = fs::temp_directory_path() / ("mscl_io_video_test_" + std::to_string(::getpid()));
    scratch() { fs::create_directories(dir); }
    ~scratch() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  };
  static const scratch s;
  return s.dir;
}

struct clip {
  std::string path, encoder;
  tv::encode_spec spec;
  double tolerance = 0;
};

/// Encodes the clip for `fc` once per process; empty path when no encoder exists.
const clip& get_clip(const format_case& fc) {
  static std::map<std::string, clip> cache;
  auto it = cache.find(fc.name);
  if (it != cache.end()) return it->second;
  clip c;
  for (const char* enc : fc.encoders) {
    tv::encode_spec s;
    s.encoder = enc;
    s.b_frames = (std::string(enc) == "mpeg4" && std::string(fc.ext) == "avi") ? 0 : fc.b_frames;
    const std::string path = (test_dir() / (std::string(fc.name) + "." + fc.ext)).string();
    const std::string err = tv::encode_synthetic(path, s);
    if (err.empty()) {
      c.path = path;
      c.encoder = enc;
      c.spec = s;
      c.tolerance = fc.tolerance;
      break;
    }
    WARN(fc.name << ": cannot encode with " << enc << ": " << err);
  }
  if (c.path.empty()) WARN(fc.name << ": no encoder available, format skipped");
  return cache.emplace(fc.name, c).first->second;
}

/// Runs `fn` and requires an mscl::io_error whose message names `path`; returns the message.
std::string require_io_error_naming(const std::function<void()>& fn, const std::string& path) {
  try {
    fn();
  } catch (const mscl::io_error& e) {
    const std::string msg = e.what();
    INFO("message: " << msg);
    CHECK(msg.find(path) != std::string::npos);
    return msg;
  } catch (const std::exception& e) {
    FAIL("expected mscl::io_error naming " << path << ", got another exception: " << e.what());
  }
  FAIL("expected mscl::io_error naming " << path << ", nothing was thrown");
  return "";
}

std::vector<char> slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<char>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void spit(const std::string& p, const std::vector<char>& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(b.data(), std::streamsize(b.size()));
}

/// Strict mode must reject `bad` with an io_error naming it when the codec can detect damage;
/// for codecs without error checks (VP8/VP9 bool coder) the outcome is only reported.
void expect_strict_detection(const format_case& fc, const std::string& bad, const char* what) {
  video_options strict;
  strict.strict = true;
  if (fc.strict_detects) {
    const std::string msg = require_io_error_naming([&] { video_reader::open(bad, strict).read_all(); }, bad);
    WARN(fc.name << " " << what << ", strict mode: " << msg);
    return;
  }
  try {
    const auto frames = video_reader::open(bad, strict).read_all();
    WARN(fc.name << " " << what << ", strict mode: not detected (known: no error checks in this codec), " << frames.size()
                 << " frames returned");
  } catch (const mscl::io_error& e) {
    CHECK(std::string(e.what()).find(bad) != std::string::npos);
    WARN(fc.name << " " << what << ", strict mode: " << e.what());
  }
}

struct quiet_ffmpeg {
  quiet_ffmpeg() { mscl::io::set_ffmpeg_log_level(AV_LOG_QUIET); }
};
const quiet_ffmpeg quiet_instance;

}  // namespace

TEST_CASE("io::video_reader decodes every frame with the right index and content", "[io][video]") {
  for (const format_case& fc : formats()) {
    const clip& c = get_clip(fc);
    if (c.path.empty()) continue;
    SECTION(fc.name) {
      INFO(fc.name << " via " << c.encoder << ": " << c.path);
      video_reader r = video_reader::open(c.path);
      const auto& p = r.properties();
      CHECK(p.width == c.spec.width);
      CHECK(p.height == c.spec.height);
      CHECK(p.fps == Approx(c.spec.fps).epsilon(1e-3));
      CHECK(p.frame_count == c.spec.frames);
      CHECK(p.count_source == mscl::io::frame_count_mode::packets);
      CHECK(p.duration == Approx(double(c.spec.frames) / c.spec.fps).margin(0.1));
      CHECK(p.keyframes >= 1);
      const auto frames = r.read_all();
      REQUIRE(frames.size() == std::size_t(c.spec.frames));
      for (int i = 0; i < c.spec.frames; ++i) {
        INFO("frame " << i);
        REQUIRE(frames[i].height == c.spec.height);
        REQUIRE(frames[i].width == c.spec.width);
        REQUIRE(frames[i].channels == 3);
        CHECK(tv::decode_pattern(frames[i], c.spec.height, c.spec.width) == i);
        CHECK(tv::mean_abs_diff(frames[i], tv::synthetic_frame(i, c.spec.height, c.spec.width)) < c.tolerance);
        // RGB order: the red patch is red.
        const auto& f = frames[i];
        const int y = c.spec.height - 16, x = 16;
        CHECK(int(f.at(y, x, 0)) > 170);
        CHECK(int(f.at(y, x, 1)) < 80);
        CHECK(int(f.at(y, x, 2)) < 80);
      }
      // header and decode count modes agree on a healthy file
      video_options hdr;
      hdr.count = mscl::io::frame_count_mode::header;
      CHECK(video_reader::open(c.path, hdr).frame_count() == Approx(c.spec.frames).margin(1));
      video_options dec;
      dec.count = mscl::io::frame_count_mode::decode;
      video_reader rd = video_reader::open(c.path, dec);
      CHECK(rd.frame_count() == c.spec.frames);
      CHECK(rd.properties().count_source == mscl::io::frame_count_mode::decode);
      // strict mode accepts a healthy file
      video_options strict;
      strict.strict = true;
      CHECK(video_reader::open(c.path, strict).read_all().size() == std::size_t(c.spec.frames));
    }
  }
}

TEST_CASE("io::video_reader::read_frames seeks and returns exactly the requested frames", "[io][video]") {
  std::mt19937 rng(1234);
  for (const format_case& fc : formats()) {
    const clip& c = get_clip(fc);
    if (c.path.empty()) continue;
    SECTION(fc.name) {
      INFO(fc.name << " via " << c.encoder);
      video_reader seq = video_reader::open(c.path);
      const auto all = seq.read_all();
      REQUIRE(all.size() == std::size_t(c.spec.frames));
      const int n = c.spec.frames;
      std::vector<std::vector<std::int64_t>> lists = {
          {n - 1, 0, 17, 17, 5, n - 2, 12, 11, 25, 0},
          {30, 29, 28, 27, 3, 2, 1},
          {13, 13, 13},
          {n - 1},
          {0},
      };
      for (int k = 0; k < 6; ++k) {
        std::vector<std::int64_t> l(std::uniform_int_distribution<int>(1, 12)(rng));
        for (auto& v : l) v = std::uniform_int_distribution<int>(0, n - 1)(rng);
        if (k % 2 == 0 && !l.empty()) l.push_back(l.front());  // a duplicate
        lists.push_back(l);
      }
      video_reader r = video_reader::open(c.path);
      for (const auto& l : lists) {
        std::string s;
        for (auto v : l) s += std::to_string(v) + " ";
        INFO("indices: " << s);
        const auto got = r.read_frames(l);
        REQUIRE(got.size() == l.size());
        for (std::size_t j = 0; j < l.size(); ++j) {
          CHECK(tv::decode_pattern(got[j], c.spec.height, c.spec.width) == l[j]);
          // After a seek the decoder must produce the same pixels as the sequential pass.
          CHECK(got[j].pixels == all[std::size_t(l[j])].pixels);
        }
      }
      CHECK(r.stats().seeks > 1);
      // Frame-threaded decoding (output delayed by the thread count) gives the same frames.
      video_options threaded;
      threaded.threads = 3;
      video_reader rt = video_reader::open(c.path, threaded);
      for (const auto& l : {lists[0], lists[1]}) {
        const auto got = rt.read_frames(l);
        for (std::size_t j = 0; j < l.size(); ++j) CHECK(got[j].pixels == all[std::size_t(l[j])].pixels);
      }
      if (c.encoder != "mjpeg") CHECK(r.keyframe_indices().size() < std::size_t(n));  // inter-coded: seeking matters
      CHECK(r.read_frame(7).pixels == all[7].pixels);
      CHECK_THROWS_AS(r.read_frames({0, n}), mscl::value_error);
      CHECK_THROWS_AS(r.read_frames({-1}), mscl::value_error);
    }
  }
}

TEST_CASE("io::video_reader short-side resize", "[io][video]") {
  CHECK(mscl::io::detail::short_side_size(120, 160, 64) == std::pair<int, int>(64, 85));
  CHECK(mscl::io::detail::short_side_size(160, 120, 64) == std::pair<int, int>(85, 64));
  CHECK(mscl::io::detail::short_side_size(240, 320, 256) == std::pair<int, int>(256, 341));
  CHECK(mscl::io::detail::short_side_size(120, 160, 0) == std::pair<int, int>(120, 160));
  for (const format_case& fc : formats()) {
    const clip& c = get_clip(fc);
    if (c.path.empty()) continue;
    SECTION(fc.name) {
      video_reader r = video_reader::open(c.path);
      const auto full = r.read_frames({3, 20});
      const auto small = r.read_frames({3, 20}, 60);  // exactly half: 2x2 box filter is the reference
      const auto big = r.read_frames({20}, 180);
      REQUIRE(small.size() == 2);
      for (int k = 0; k < 2; ++k) {
        REQUIRE(small[k].height == 60);
        REQUIRE(small[k].width == 80);
        CHECK(tv::decode_pattern(small[k], c.spec.height, c.spec.width) == (k == 0 ? 3 : 20));
        mscl::data::image_u8 ref(60, 80, 3);
        for (int y = 0; y < 60; ++y)
          for (int x = 0; x < 80; ++x)
            for (int ch = 0; ch < 3; ++ch)
              ref.at(y, x, ch) = std::uint8_t((full[k].at(2 * y, 2 * x, ch) + full[k].at(2 * y + 1, 2 * x, ch) +
                                               full[k].at(2 * y, 2 * x + 1, ch) + full[k].at(2 * y + 1, 2 * x + 1, ch) + 2) /
                                              4);
        // Area scaling of the RGB frame vs. scaling in YUV then converting: close, not identical.
        CHECK(tv::mean_abs_diff(small[k], ref) < 2.5);
      }
      REQUIRE(big[0].height == 180);
      REQUIRE(big[0].width == 240);
      CHECK(tv::decode_pattern(big[0], c.spec.height, c.spec.width) == 20);
    }
  }
}

TEST_CASE("io::video_reader: missing, random and truncated files give an io_error naming the file", "[io][video]") {
  const fs::path dir = test_dir();
  const std::string missing = (dir / "no_such_video.avi").string();
  require_io_error_naming([&] { video_reader::open(missing); }, missing);
  require_io_error_naming([&] { video_reader::open(dir.string()); }, dir.string());

  const std::string noise = (dir / "noise.mp4").string();
  {
    std::vector<char> b(50000);
    std::mt19937 rng(7);
    for (auto& x : b) x = char(rng() & 0xff);
    spit(noise, b);
  }
  require_io_error_naming([&] { video_reader::open(noise); }, noise);
  const std::string text = (dir / "text.avi").string();
  spit(text, std::vector<char>{'h', 'e', 'l', 'l', 'o', '\n'});
  require_io_error_naming([&] { video_reader::open(text); }, text);

  for (const format_case& fc : formats()) {
    const clip& c = get_clip(fc);
    if (c.path.empty()) continue;
    SECTION(fc.name) {
      std::vector<char> b = slurp(c.path);
      b.resize(b.size() * 6 / 10);
      const std::string cut = (dir / (std::string("cut60_") + fc.name + "." + fc.ext)).string();
      spit(cut, b);
      const std::string msg = require_io_error_naming([&] { video_reader::open(cut).read_all(); }, cut);
      WARN(fc.name << " cut at 60%: " << msg);
      // With allow_short a truncated but parsable file yields the frames that survive, correctly indexed.
      video_options o;
      o.allow_short = true;
      try {
        video_reader r = video_reader::open(cut, o);
        const auto frames = r.read_all();
        CHECK(frames.size() < std::size_t(c.spec.frames));
        CHECK(frames.size() == std::size_t(r.frame_count()));
        int ok = 0;
        for (std::size_t i = 0; i < frames.size(); ++i) ok += tv::decode_pattern(frames[i], c.spec.height, c.spec.width) == int(i);
        CHECK(ok >= int(frames.size()) - 1 - int(r.stats().substituted));  // the last one may be partial
      } catch (const mscl::io_error& e) {
        // Containers whose index lives at the end (mp4) cannot be opened at all.
        CHECK(std::string(e.what()).find(cut) != std::string::npos);
        WARN(fc.name << " cut at 60% with allow_short: " << e.what());
      }
    }
  }
}

TEST_CASE("io::video_reader: mp4 whose edit list hides the last frame", "[io][video]") {
  // FFmpeg's mp4 muxer, given B-frames and packets without durations, writes an edit list that
  // ends at the last pts; the demuxer then flags that frame "discard" and decoders drop it. The
  // header still counts it (nb_frames = 40): the reader must report 39 and not call it truncated.
  tv::encode_spec s;
  s.encoder = "libx264";
  s.b_frames = 2;
  s.packet_durations = false;
  const std::string path = (test_dir() / "editlist.mp4").string();
  const std::string err = tv::encode_synthetic(path, s);
  if (!err.empty()) {
    WARN("edit-list case skipped: " << err);
    return;
  }
  video_reader r = video_reader::open(path);
  const auto& p = r.properties();
  if (p.discarded_packets == 0) {
    WARN("this FFmpeg wrote no discarded frame; nothing to check (frames: " << p.frame_count << ")");
    CHECK(p.frame_count == s.frames);
    return;
  }
  CHECK(p.discarded_packets == 1);
  CHECK(p.header_frame_count == s.frames);
  REQUIRE(p.frame_count == s.frames - 1);
  const auto all = r.read_all();
  REQUIRE(all.size() == std::size_t(s.frames - 1));
  for (int i = 0; i < s.frames - 1; ++i) CHECK(tv::decode_pattern(all[std::size_t(i)], s.height, s.width) == i);
  const auto some = r.read_frames({s.frames - 2, 0, 30});
  CHECK(some[0].pixels == all[std::size_t(s.frames - 2)].pixels);
  CHECK(some[1].pixels == all[0].pixels);
  CHECK(some[2].pixels == all[30].pixels);
  video_options dec;
  dec.count = mscl::io::frame_count_mode::decode;
  CHECK(video_reader::open(path, dec).frame_count() == s.frames - 1);
}

TEST_CASE("io::video_reader: raw H.264 stream without timestamps decodes sequentially", "[io][video]") {
  // An elementary stream has no container timestamps (and no declared frame count): the reader
  // must notice that timestamps cannot index frames and count decoded frames from the start.
  tv::encode_spec s;
  s.encoder = "libx264";
  s.b_frames = 2;
  const std::string path = (test_dir() / "raw.h264").string();
  const std::string err = tv::encode_synthetic(path, s);
  if (!err.empty()) {
    WARN("raw H.264 case skipped: " << err);
    return;
  }
  video_reader r = video_reader::open(path);
  CHECK_FALSE(r.properties().timestamps_usable);
  REQUIRE(r.frame_count() == s.frames);
  const auto all = r.read_all();
  REQUIRE(all.size() == std::size_t(s.frames));
  for (int i = 0; i < s.frames; ++i) CHECK(tv::decode_pattern(all[std::size_t(i)], s.height, s.width) == i);
  const std::vector<std::int64_t> l = {39, 3, 20, 20, 0, 21};
  const auto got = r.read_frames(l);
  REQUIRE(got.size() == l.size());
  for (std::size_t j = 0; j < l.size(); ++j) CHECK(got[j].pixels == all[std::size_t(l[j])].pixels);
}

TEST_CASE("io::video_reader: AVI drop frames and not-coded VOPs", "[io][video]") {
  const fs::path dir = test_dir();
  SECTION("empty chunks are skipped like OpenCV does, reported as missing frames") {
    tv::encode_spec s;
    s.encoder = "mpeg4";
    s.empty_every = 5;
    const std::string path = (dir / "drop_frames.avi").string();
    REQUIRE(tv::encode_synthetic(path, s).empty());
    video_reader r = video_reader::open(path);
    CHECK(r.properties().header_frame_count == s.frames);
    REQUIRE(r.frame_count() == s.frames - s.frames / 5);
    CHECK(r.properties().missing_frames == s.frames / 5);
    const auto all = r.read_all();
    REQUIRE(all.size() == std::size_t(r.frame_count()));
    std::vector<int> expect;
    for (int i = 0; i < s.frames; ++i)
      if (i % 5 != 4) expect.push_back(i);
    for (std::size_t j = 0; j < all.size(); ++j) CHECK(tv::decode_pattern(all[j], s.height, s.width) == expect[j]);
    const auto some = r.read_frames({20, 3, 4});
    CHECK(tv::decode_pattern(some[0], s.height, s.width) == expect[20]);
    CHECK(tv::decode_pattern(some[2], s.height, s.width) == expect[4]);
    video_options strict;
    strict.strict = true;
    require_io_error_naming([&] { video_reader::open(path, strict); }, path);
  }
  SECTION("a not-coded VOP holds the previous picture") {
    tv::encode_spec s;
    s.encoder = "mpeg4";
    s.empty_every = 5;
    s.nvop = true;
    const std::string path = (dir / "nvop.avi").string();
    REQUIRE(tv::encode_synthetic(path, s).empty());
    video_reader r = video_reader::open(path);
    REQUIRE(r.frame_count() == s.frames);
    const auto all = r.read_all();
    REQUIRE(all.size() == std::size_t(s.frames));
    for (int i = 0; i < s.frames; ++i) CHECK(tv::decode_pattern(all[std::size_t(i)], s.height, s.width) == (i % 5 == 4 ? i - 1 : i));
    CHECK(r.stats().held == s.frames / 5);
    CHECK(r.stats().substituted == 0);
    const auto some = r.read_frames({9, 4, 30, 29});
    CHECK(tv::decode_pattern(some[0], s.height, s.width) == 8);
    CHECK(tv::decode_pattern(some[1], s.height, s.width) == 3);
    CHECK(tv::decode_pattern(some[3], s.height, s.width) == 28);
    video_options dec;
    dec.count = mscl::io::frame_count_mode::decode;
    video_reader rd = video_reader::open(path, dec);
    CHECK(rd.frame_count() == s.frames);
    CHECK(rd.properties().decoded_frames == s.frames - s.frames / 5);
    video_options strict;
    strict.strict = true;
    require_io_error_naming([&] { video_reader::open(path, strict).read_all(); }, path);
  }
}

TEST_CASE("io::video_reader: truncated mp4 with its index first (faststart)", "[io][video]") {
  tv::encode_spec s;
  s.encoder = avcodec_find_encoder_by_name("libx264") ? "libx264" : "mpeg4";
  s.faststart = true;
  const std::string path = (test_dir() / "faststart.mp4").string();
  REQUIRE(tv::encode_synthetic(path, s).empty());
  REQUIRE(video_reader::open(path).frame_count() == s.frames);
  std::vector<char> b = slurp(path);
  b.resize(b.size() * 6 / 10);
  const std::string cut = (test_dir() / "cut60_faststart.mp4").string();
  spit(cut, b);
  const std::string msg = require_io_error_naming([&] { video_reader::open(cut).read_all(); }, cut);
  WARN("faststart mp4 cut at 60%: " << msg);
  video_options o;
  o.allow_short = true;
  video_reader r = video_reader::open(cut, o);
  const auto frames = r.read_all();
  CHECK(frames.size() < std::size_t(s.frames));
  CHECK(frames.size() >= std::size_t(s.frames / 3));
}

TEST_CASE("io::video_reader: corruption in the middle of the file", "[io][video]") {
  // Random bytes over 3 % of the file starting at its middle. Decoders conceal damaged blocks, so
  // the default mode may return all frames (some visibly damaged); it must never return fewer
  // frames or crash. Strict mode must turn the damage into an io_error naming the file.
  const fs::path dir = test_dir();
  for (const format_case& fc : formats()) {
    const clip& c = get_clip(fc);
    if (c.path.empty()) continue;
    SECTION(fc.name) {
      std::vector<char> b = slurp(c.path);
      std::mt19937 rng(99);
      const std::size_t start = b.size() / 2, len = std::max<std::size_t>(64, b.size() * 3 / 100);
      for (std::size_t i = start; i < start + len && i < b.size(); ++i) b[i] = char(rng() & 0xff);
      const std::string bad = (dir / (std::string("corrupt_") + fc.name + "." + fc.ext)).string();
      spit(bad, b);
      try {
        video_reader r = video_reader::open(bad);
        const auto frames = r.read_all();
        // Never fewer frames than the reader announces; chunks the demuxer lost are announced as gaps.
        CHECK(frames.size() == std::size_t(r.frame_count()));
        CHECK(r.frame_count() + r.properties().missing_frames >= c.spec.frames - 1);
        int ok = 0;
        for (std::size_t i = 0; i < frames.size(); ++i) ok += tv::decode_pattern(frames[i], c.spec.height, c.spec.width) == int(i);
        WARN(fc.name << " corrupted, default mode: " << frames.size() << " frames, " << r.properties().missing_frames
                     << " missing (gaps), " << ok << " with the right pattern at the right index, " << r.stats().decode_errors
                     << " packets rejected by the decoder");
      } catch (const mscl::io_error& e) {
        CHECK(std::string(e.what()).find(bad) != std::string::npos);
        WARN(fc.name << " corrupted, default mode: " << e.what());
      }
      video_options strict;
      strict.strict = true;
      expect_strict_detection(fc, bad, "random bytes in the middle");
    }
  }
}

namespace {
/// Byte offset and size of video packet `k` (demux order), from libavformat.
std::pair<std::int64_t, int> packet_position(const std::string& path, int k) {
  AVFormatContext* f = nullptr;
  if (avformat_open_input(&f, path.c_str(), nullptr, nullptr) < 0) return {-1, 0};
  std::pair<std::int64_t, int> out{-1, 0};
  AVPacket* p = av_packet_alloc();
  int n = 0;
  while (av_read_frame(f, p) >= 0) {
    if (n++ == k) out = {p->pos, p->size};
    av_packet_unref(p);
    if (out.first >= 0) break;
  }
  av_packet_free(&p);
  avformat_close_input(&f);
  return out;
}
}  // namespace

TEST_CASE("io::video_reader: damaged compressed data inside one packet", "[io][video]") {
  // The container stays intact; only the payload of one keyframe packet (the second GOP's) is
  // overwritten, so whatever happens is the decoder's doing.
  const fs::path dir = test_dir();
  for (const format_case& fc : formats()) {
    const clip& c = get_clip(fc);
    if (c.path.empty()) continue;
    SECTION(fc.name) {
      const auto [pos, size] = packet_position(c.path, c.spec.gop);
      REQUIRE(pos > 0);
      REQUIRE(size > 64);
      std::vector<char> b = slurp(c.path);
      std::mt19937 rng(5);
      for (std::int64_t i = pos + size / 3; i < pos + 2 * size / 3; ++i) b[std::size_t(i)] = char(rng() & 0xff);
      const std::string bad = (dir / (std::string("payload_") + fc.name + "." + fc.ext)).string();
      spit(bad, b);
      try {
        video_reader r = video_reader::open(bad);
        const auto frames = r.read_all();
        CHECK(frames.size() == std::size_t(c.spec.frames));
        int ok = 0;
        for (std::size_t i = 0; i < frames.size(); ++i) ok += tv::decode_pattern(frames[i], c.spec.height, c.spec.width) == int(i);
        WARN(fc.name << " payload damage, default mode: " << frames.size() << " frames, " << ok << " with the right pattern, "
                     << r.stats().decode_errors << " packets rejected, " << r.stats().substituted << " substituted");
      } catch (const mscl::io_error& e) {
        CHECK(std::string(e.what()).find(bad) != std::string::npos);
        WARN(fc.name << " payload damage, default mode: " << e.what());
      }
      expect_strict_detection(fc, bad, "payload damage");
    }
  }
}

#else
TEST_CASE("io::video_reader is disabled without FFmpeg", "[io][video]") { SUCCEED("MSCL_WITH_FFMPEG not set"); }
#endif
