// mscl-video-info: prints what the video reader sees in a video file (container, codec, size,
// fps, duration, frame count and how it was obtained) and optionally converts the video into an
// MMAction2 rawframes directory of JPEGs (img_00001.jpg, ...), resized by short side: the
// "videos -> rawframes" step that users otherwise do with denseflow or mmaction's build_rawframes.
// Exit status: 0 fine, 1 the video could not be read, 2 bad usage.
//
//   mscl-video-info v_ApplyEyeMakeup_g08_c01.avi
//   mscl-video-info v_ApplyEyeMakeup_g08_c01.avi --dump rawframes/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01 --short-side 256
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <mscl/core/error.hpp>
#include <mscl/data/rawframes.hpp>
#include <mscl/io/video_reader.hpp>
#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG
#include <mscl/io/jpeg.hpp>
#endif

namespace {

const char* usage =
    "usage: mscl-video-info VIDEO [options]\n"
    "Prints the properties of a video file; with --dump writes its frames as an MMAction2 rawframes\n"
    "directory (RGB JPEGs img_00001.jpg, ...).\n"
    "\n"
    "options:\n"
    "  --count MODE         header | packets | decode: how to settle the frame count (default packets;\n"
    "                       decode reads every frame and so also validates the whole file)\n"
    "  --strict             decoder errors and concealed frames are errors\n"
    "  --allow-short        accept a file shorter than its header says (truncated downloads)\n"
    "  --keyframes          list the keyframe indices\n"
    "  --dump DIR           write every frame as a JPEG into DIR (created)\n"
    "  --short-side N       resize so the shorter side is N pixels (default 0: keep the size)\n"
    "  --template T         frame file template (default img_{:05d}.jpg)\n"
    "  --start-index N      number of the first file (default 1, mmaction's convention)\n"
    "  --quality Q          JPEG quality 1..100 (default 95)\n"
    "  --threads N          decoder threads (default 1; 0 lets FFmpeg choose)\n"
    "  --verbose            let FFmpeg print its warnings\n"
    "  --help               this text\n"
    "\n"
    "exit status: 0 fine, 1 the video could not be read or written, 2 bad usage\n";

long to_long(const std::string& flag, const std::string& v) {
  std::size_t used = 0;
  long x = 0;
  try {
    x = std::stol(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty()) {
    std::cerr << "mscl-video-info: " << flag << " needs an integer, got '" << v << "'\n";
    std::exit(2);
  }
  return x;
}

}  // namespace

int main(int argc, char** argv) {
  const std::map<std::string, bool> known = {  // flag -> takes a value
      {"--count", true},        {"--strict", false},      {"--allow-short", false}, {"--keyframes", false},
      {"--dump", true},         {"--short-side", true},   {"--template", true},     {"--start-index", true},
      {"--quality", true},      {"--threads", true},      {"--verbose", false},     {"--help", false}};
  std::map<std::string, std::string> opts;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << usage;
      return 0;
    }
    if (a.rfind("--", 0) == 0) {
      auto it = known.find(a);
      if (it == known.end()) {
        std::cerr << "mscl-video-info: unknown option '" << a << "'\n" << usage;
        return 2;
      }
      if (it->second) {
        if (i + 1 >= argc) {
          std::cerr << "mscl-video-info: " << a << " needs a value\n";
          return 2;
        }
        opts[a] = argv[++i];
      } else {
        opts[a] = "1";
      }
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 1) {
    std::cerr << "mscl-video-info: expected exactly one video file\n" << usage;
    return 2;
  }
  const std::string video = positional.front();

#if !(defined(MSCL_WITH_FFMPEG) && MSCL_WITH_FFMPEG)
  std::cerr << "mscl-video-info: this build has no FFmpeg support (install libavformat-dev libavcodec-dev "
               "libswscale-dev and reconfigure)\n";
  (void)video;
  return 2;
#else
  mscl::io::video_options vo;
  if (opts.count("--count")) {
    const std::string m = opts["--count"];
    if (m == "header") vo.count = mscl::io::frame_count_mode::header;
    else if (m == "packets") vo.count = mscl::io::frame_count_mode::packets;
    else if (m == "decode") vo.count = mscl::io::frame_count_mode::decode;
    else {
      std::cerr << "mscl-video-info: --count must be header, packets or decode, got '" << m << "'\n";
      return 2;
    }
  }
  vo.strict = opts.count("--strict") > 0;
  vo.allow_short = opts.count("--allow-short") > 0;
  if (opts.count("--threads")) vo.threads = int(to_long("--threads", opts["--threads"]));
  const int short_side = opts.count("--short-side") ? int(to_long("--short-side", opts["--short-side"])) : 0;
  const long start_index = opts.count("--start-index") ? to_long("--start-index", opts["--start-index"]) : 1;
  const int quality = opts.count("--quality") ? int(to_long("--quality", opts["--quality"])) : 95;
  if (short_side < 0 || start_index < 0 || quality < 1 || quality > 100 || vo.threads < 0) {
    std::cerr << "mscl-video-info: --short-side, --start-index and --threads must be >= 0, --quality in 1..100\n";
    return 2;
  }
  mscl::data::frame_template tmpl;
  try {
    if (opts.count("--template")) tmpl = mscl::data::frame_template::parse(opts["--template"]);
  } catch (const mscl::error& e) {
    std::cerr << "mscl-video-info: " << e.what() << "\n";
    return 2;
  }
#if !(defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG)
  if (opts.count("--dump")) {
    std::cerr << "mscl-video-info: --dump needs JPEG support (libjpeg62-turbo-dev), which this build lacks\n";
    return 2;
  }
#endif
  if (!opts.count("--verbose")) mscl::io::set_ffmpeg_log_level(AV_LOG_FATAL);

  try {
    mscl::io::video_reader r = mscl::io::video_reader::open(video, vo);
    const auto& p = r.properties();
    std::cout << "file:          " << p.path << "\n"
              << "container:     " << p.container << "\n"
              << "codec:         " << p.codec << " (" << p.pixel_format << ")\n"
              << "size:          " << p.width << "x" << p.height << " (width x height)\n"
              << "fps:           " << p.fps << "\n"
              << "duration:      " << p.duration << " s\n"
              << "frames:        " << p.frame_count << " (from " << mscl::io::frame_count_mode_name(p.count_source) << ")\n"
              << "header frames: " << p.header_frame_count << (p.header_count_exact ? " (nb_frames)" : " (duration x fps)") << "\n"
              << "packets:       " << p.packets;
    if (p.discarded_packets) std::cout << " + " << p.discarded_packets << " discarded (edit list)";
    std::cout << "\n"
              << "keyframes:     " << p.keyframes << "\n"
              << "timestamps:    " << (p.timestamps_usable ? "index frames (seekable)" : "unusable (sequential decoding)") << "\n";
    if (opts.count("--keyframes")) {
      std::cout << "keyframe indices:";
      for (auto k : r.keyframe_indices()) std::cout << " " << k;
      std::cout << "\n";
    }
#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG
    if (opts.count("--dump")) {
      const std::string dir = opts["--dump"];
      std::filesystem::create_directories(dir);
      const std::int64_t n = r.frame_count();
      const std::int64_t chunk = 32;  // bounded memory; consecutive chunks continue decoding without seeking
      int oh = 0, ow = 0;
      for (std::int64_t b = 0; b < n; b += chunk) {
        std::vector<std::int64_t> idx;
        for (std::int64_t i = b; i < std::min(n, b + chunk); ++i) idx.push_back(i);
        const auto frames = r.read_frames(idx, short_side);
        for (std::size_t k = 0; k < frames.size(); ++k) {
          mscl::io::write_jpeg((std::filesystem::path(dir) / tmpl.name(start_index + idx[k])).string(), frames[k], quality);
          oh = frames[k].height;
          ow = frames[k].width;
        }
      }
      std::cout << "dumped:        " << n << " frames " << ow << "x" << oh << " to " << dir << " ("
                << tmpl.name(start_index) << " .. " << tmpl.name(start_index + n - 1) << ")\n"
                << "list line:     " << dir << " " << n << " <label>\n";
      if (r.stats().substituted) std::cout << "substituted:   " << r.stats().substituted << " undecodable frames (allow-short)\n";
    }
#endif
  } catch (const mscl::error& e) {
    std::cerr << "mscl-video-info: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "mscl-video-info: " << e.what() << "\n";
    return 1;
  }
  return 0;
#endif
}
