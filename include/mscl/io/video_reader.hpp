/// \file video_reader.hpp
/// \brief Video-file decoding through FFmpeg's libraries (libavformat/libavcodec/libswscale 5.1):
///        properties (frame count, fps, size, duration), all frames or an arbitrary list of frame
///        indices as RGB `image_u8`, optionally resized so that the short side has a given length.
///        This is the "video list" half of ECOSYSTEM.md §1.2 (UCF101 .avi, Kinetics .mp4, SSv2
///        .webm) next to the rawframes reader.
///
/// Only compiled when `MSCL_WITH_FFMPEG` is set (CMake target `mscl::ffmpeg`); otherwise the
/// header declares nothing.
///
/// Frame indices. A frame's index is its rank in presentation order. At open (default
/// `frame_count_mode::packets`) the reader demuxes the whole file once without decoding (cheap:
/// no pixel work) and records every video packet's timestamp and key flag; sorted timestamps give
/// the index of every frame, so indices stay exact with B-frames, variable frame rate and
/// containers whose header count is wrong. `read_frames` seeks to the last keyframe at or before
/// the first wanted index, decodes forward and maps each decoded frame's pts back to its index
/// (decord's approach; torchvision's pts·fps rounding drifts on VFR files). A seek that lands too
/// late is retried from the start; files whose packets carry no usable timestamps are decoded
/// sequentially from the start and counted.
///
/// Failure model (why each check exists):
///  - a missing file, a file FFmpeg cannot parse, a file without a video stream or without a
///    decoder for it: `io_error` naming the file, at open;
///  - truncation: the demux pass checks that the packets' timestamps reach the declared length
///    (stream duration, or nb_frames / fps when longer), within 2 frames or 2 %; without
///    timestamps it compares the packet count with the declared count. Short is an `io_error` at
///    open ("looks truncated") unless `allow_short`, because a truncated AVI or WebM still opens
///    and would otherwise decode to silently fewer frames. A truncated MP4 with its index at the
///    end fails to open ("moov atom not found"). Raw elementary streams (.h264, .m4v) declare
///    neither length nor count: truncation there is undetectable;
///  - gaps: packets missing *between* the first and the last timestamp (AVI "drop frames", which
///    the demuxer skips like OpenCV and decord do, or chunks lost to damage) are not frames: the
///    count excludes them (as in rawframes extracted with OpenCV/denseflow), `missing_frames`
///    reports them, strict mode rejects them;
///  - a packet the decoder skips without an error (MPEG-4 "not coded" VOPs) repeats the previous
///    picture, as players do (`stats().held`; an error in strict mode);
///  - a requested frame lost to a decode error or an early end: `io_error`; with `allow_short`
///    the nearest earlier decoded frame is returned instead (`stats().substituted`);
///  - corruption inside the compressed data: decoders conceal it (grey or smeared blocks) and
///    report success. Default (non-strict) mode accepts concealed frames like every other loader;
///    `strict` asks the decoder to fail on bitstream errors (`AV_EF_EXPLODE` and friends) and
///    rejects frames flagged corrupt or with `decode_error_flags`, so damage becomes an
///    `io_error` naming the file and frame. Strict detection is only as good as the codec's
///    error checks: measured with the tests' damage, MPEG-4 part 2, MJPEG and H.264 reject it,
///    VP8/VP9 decode the garbage without complaint (and WebM carries no CRC elements).
///
/// Every FFmpeg object is owned by a `std::unique_ptr` with its FFmpeg free function, so an
/// exception anywhere leaks nothing. A reader is movable, not copyable, and not thread-safe; data
/// loaders open one reader per video per worker. Decoder threads default to 1 because loaders
/// parallelise across videos.
///
/// Not handled: display-matrix rotation (phone videos come out unrotated), non-square sample
/// aspect ratio (frames keep their coded width), audio.
#pragma once
#if defined(MSCL_WITH_FFMPEG) && MSCL_WITH_FFMPEG

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

#include "../core/error.hpp"
#include "../data/frame.hpp"

namespace mscl::io {

/// How `video_reader::open` settles the frame count.
enum class frame_count_mode {
  header,   ///< trust the container (nb_frames, else duration × fps); no scan at open (index built on first read)
  packets,  ///< demux every packet without decoding (default): exact unless packets ≠ frames
  decode,   ///< also decode every frame once: exact, validates the whole file (slow)
};

inline const char* frame_count_mode_name(frame_count_mode m) {
  switch (m) {
    case frame_count_mode::header: return "header";
    case frame_count_mode::packets: return "packets";
    case frame_count_mode::decode: return "decode";
  }
  return "?";
}

/// swscale filter for the RGB conversion / resize.
enum class video_scaling {
  automatic,  ///< area when shrinking, bilinear when enlarging or same size
  area,
  bilinear,
  bicubic,
};

/// Options of `video_reader::open`.
struct video_options {
  frame_count_mode count = frame_count_mode::packets;
  bool allow_short = false;  ///< accept a file shorter than its header and undecodable frames (substituted)
  bool strict = false;       ///< decoder errors, corrupt packets and concealed frames are io_errors
  video_scaling scaling = video_scaling::automatic;
  int threads = 1;  ///< decoder threads (0: FFmpeg chooses)
};

/// What the container and the scan say about the video stream.
struct video_properties {
  std::string path;
  std::string container;  ///< demuxer name, e.g. "avi", "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"
  std::string codec;      ///< decoder name, e.g. "mpeg4", "h264", "vp9"
  std::string pixel_format;
  int width = 0, height = 0;
  double fps = 0;       ///< average frame rate (0 when unknown)
  double duration = 0;  ///< seconds (stream duration, else container duration; 0 when unknown)
  std::int64_t frame_count = 0;         ///< frames readable by index: 0..frame_count-1
  frame_count_mode count_source = frame_count_mode::header;  ///< how frame_count was obtained
  std::int64_t header_frame_count = 0;  ///< what the container declares (0: unknown)
  bool header_count_exact = false;      ///< header count came from nb_frames (not duration × fps)
  std::int64_t packets = 0;             ///< video packets found by the scan (0 before a scan)
  std::int64_t keyframes = 0;           ///< key packets found by the scan
  std::int64_t discarded_packets = 0;   ///< packets the demuxer marks discard (mp4 edit lists): not frames
  std::int64_t missing_frames = 0;      ///< frame slots without a packet inside the covered time (AVI drop frames, lost chunks)
  double covered_duration = 0;          ///< seconds spanned by the packets' timestamps (0: unknown)
  std::int64_t decoded_frames = 0;      ///< frames the decoder produced (frame_count_mode::decode only)
  bool timestamps_usable = false;       ///< packet timestamps index frames (else sequential decoding)
};

/// Counters since open (or the last `reset_stats`).
struct video_read_stats {
  std::int64_t decoded = 0;        ///< frames that came out of the decoder
  std::int64_t converted = 0;      ///< frames converted to RGB
  std::int64_t seeks = 0;          ///< demuxer seeks
  std::int64_t decode_errors = 0;  ///< packets the decoder rejected (non-strict mode)
  std::int64_t substituted = 0;    ///< requested frames replaced by an earlier one after a decode error (allow_short)
  std::int64_t held = 0;           ///< requested frames the decoder skipped without error: previous picture repeated
};

/// Sets FFmpeg's global log level (AV_LOG_QUIET, AV_LOG_ERROR, ...). FFmpeg prints decoder
/// warnings for damaged files to stderr; loaders usually silence them and rely on exceptions.
inline void set_ffmpeg_log_level(int level) { av_log_set_level(level); }

namespace detail {

inline std::string av_error_string(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  if (av_strerror(err, buf, sizeof buf) < 0) return "FFmpeg error " + std::to_string(err);
  return buf;
}

struct av_format_deleter {
  void operator()(AVFormatContext* p) const { avformat_close_input(&p); }
};
struct av_codec_deleter {
  void operator()(AVCodecContext* p) const { avcodec_free_context(&p); }
};
struct av_frame_deleter {
  void operator()(AVFrame* p) const { av_frame_free(&p); }
};
struct av_packet_deleter {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct sws_deleter {
  void operator()(SwsContext* p) const { sws_freeContext(p); }
};
struct av_buffer_deleter {
  void operator()(std::uint8_t* p) const { av_free(p); }
};

using format_ptr = std::unique_ptr<AVFormatContext, av_format_deleter>;
using codec_ptr = std::unique_ptr<AVCodecContext, av_codec_deleter>;
using frame_ptr = std::unique_ptr<AVFrame, av_frame_deleter>;
using packet_ptr = std::unique_ptr<AVPacket, av_packet_deleter>;
using sws_ptr = std::unique_ptr<SwsContext, sws_deleter>;
using av_bytes_ptr = std::unique_ptr<std::uint8_t, av_buffer_deleter>;

inline double q2d_or_zero(AVRational r) { return (r.num > 0 && r.den > 0) ? av_q2d(r) : 0.0; }

/// The output size for `short_side` (0: unchanged), rounding like mmcv.rescale_size.
inline std::pair<int, int> short_side_size(int h, int w, int short_side) {
  if (short_side <= 0) return {h, w};
  if (h <= w) return {short_side, std::max(1, int(double(w) * short_side / h + 0.5))};
  return {std::max(1, int(double(h) * short_side / w + 0.5)), short_side};
}

/// The non-deprecated twin of a "J" (full-range) pixel format, and whether it was one.
inline AVPixelFormat dejpeg_format(AVPixelFormat f, bool* full_range) {
  switch (f) {
    case AV_PIX_FMT_YUVJ420P: *full_range = true; return AV_PIX_FMT_YUV420P;
    case AV_PIX_FMT_YUVJ422P: *full_range = true; return AV_PIX_FMT_YUV422P;
    case AV_PIX_FMT_YUVJ444P: *full_range = true; return AV_PIX_FMT_YUV444P;
    case AV_PIX_FMT_YUVJ440P: *full_range = true; return AV_PIX_FMT_YUV440P;
    case AV_PIX_FMT_YUVJ411P: *full_range = true; return AV_PIX_FMT_YUV411P;
    default: return f;
  }
}

inline int sws_colorspace(AVColorSpace cs) {
  switch (cs) {
    case AVCOL_SPC_BT709: return SWS_CS_ITU709;
    case AVCOL_SPC_FCC: return SWS_CS_FCC;
    case AVCOL_SPC_SMPTE240M: return SWS_CS_SMPTE240M;
    case AVCOL_SPC_BT2020_NCL:
    case AVCOL_SPC_BT2020_CL: return SWS_CS_BT2020;
    default: return SWS_CS_ITU601;  // unspecified: swscale's and OpenCV's default
  }
}

}  // namespace detail

/// Decodes one video file. See the file comment for indexing and the failure model.
class video_reader {
 public:
  /// Opens `path` and settles its properties (see frame_count_mode). Throws io_error naming the
  /// file when it is missing, unparsable, has no decodable video stream or looks truncated.
  static video_reader open(const std::string& path, const video_options& opt = {}) {
    video_reader r;
    r.opt_ = opt;
    r.props_.path = path;
    std::error_code ec;
    MSCL_CHECK(std::filesystem::exists(path, ec), io_error, "io::video_reader::open: '" << path << "' does not exist");
    MSCL_CHECK(!std::filesystem::is_directory(path, ec), io_error,
               "io::video_reader::open: '" << path << "' is a directory, expected a video file");
    MSCL_CHECK(opt.threads >= 0, value_error, "io::video_reader::open: threads must be >= 0, got " << opt.threads);
    r.open_input();
    r.read_header_properties();
    if (opt.count != frame_count_mode::header) r.ensure_index();
    if (opt.count == frame_count_mode::decode) r.count_by_decoding();
    return r;
  }

  video_reader(video_reader&&) noexcept = default;
  video_reader& operator=(video_reader&&) noexcept = default;
  video_reader(const video_reader&) = delete;
  video_reader& operator=(const video_reader&) = delete;

  const video_properties& properties() const { return props_; }
  const std::string& path() const { return props_.path; }
  std::int64_t frame_count() const { return props_.frame_count; }
  double fps() const { return props_.fps; }
  int width() const { return props_.width; }
  int height() const { return props_.height; }
  double duration() const { return props_.duration; }
  const video_options& options() const { return opt_; }
  const video_read_stats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

  /// Frame indices of the key packets (builds the index if needed).
  std::vector<std::int64_t> keyframe_indices() {
    ensure_index();
    return key_index_;
  }

  /// Decodes every frame to RGB; `short_side` > 0 resizes so the shorter side has that length.
  /// Returns exactly frame_count() frames (io_error otherwise, unless allow_short).
  data::frame_sequence read_all(int short_side = 0) {
    ensure_index();
    std::vector<std::int64_t> all(std::size_t(props_.frame_count));
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = std::int64_t(i);
    return read_frames(all, short_side);
  }

  /// The frames at `indices` (0-based, any order, duplicates allowed), in that order, as RGB.
  /// Throws value_error for an index outside [0, frame_count()), io_error when a frame cannot be
  /// decoded (unless allow_short, see the file comment).
  data::frame_sequence read_frames(const std::vector<std::int64_t>& indices, int short_side = 0) {
    MSCL_CHECK(short_side >= 0, value_error, "io::video_reader::read_frames: short_side must be >= 0, got " << short_side);
    ensure_index();
    for (std::int64_t i : indices)
      MSCL_CHECK(i >= 0 && i < props_.frame_count, value_error,
                 "io::video_reader::read_frames: frame " << i << " is outside [0, " << props_.frame_count << ") of '"
                                                         << props_.path << "'");
    std::vector<std::int64_t> want(indices);
    std::sort(want.begin(), want.end());
    want.erase(std::unique(want.begin(), want.end()), want.end());
    std::vector<data::image_u8> got(want.size());
    fill(want, got, short_side);
    data::frame_sequence out;
    out.reserve(indices.size());
    for (std::int64_t i : indices) {
      const std::size_t k = std::size_t(std::lower_bound(want.begin(), want.end(), i) - want.begin());
      out.push_back(got[k]);
    }
    return out;
  }

  /// One frame.
  data::image_u8 read_frame(std::int64_t index, int short_side = 0) { return std::move(read_frames({index}, short_side).front()); }

 private:
  video_reader() = default;

  // ------------------------------------------------------------------ opening
  void open_input() {
    const std::string& path = props_.path;
    AVFormatContext* raw = avformat_alloc_context();
    MSCL_CHECK(raw, io_error, "io::video_reader::open: out of memory opening '" << path << "'");
    if (opt_.strict) {
      // Container-level checks too: matroska/webm clusters carry CRC-32 elements (FFmpeg's muxer
      // writes them by default) that the demuxer verifies only when asked.
      raw->error_recognition |= AV_EF_CRCCHECK | AV_EF_BITSTREAM | AV_EF_BUFFER | AV_EF_EXPLODE | AV_EF_CAREFUL;
    }
    // On failure avformat_open_input frees the context and nulls `raw`.
    int r = avformat_open_input(&raw, path.c_str(), nullptr, nullptr);
    MSCL_CHECK(r >= 0, io_error, "io::video_reader::open: cannot open '" << path << "' as a video: " << detail::av_error_string(r));
    fmt_.reset(raw);
    r = avformat_find_stream_info(fmt_.get(), nullptr);
    MSCL_CHECK(r >= 0, io_error,
               "io::video_reader::open: cannot read stream information of '" << path << "': " << detail::av_error_string(r));
    const AVCodec* codec = nullptr;
    r = av_find_best_stream(fmt_.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    MSCL_CHECK(r != AVERROR_STREAM_NOT_FOUND, io_error, "io::video_reader::open: '" << path << "' has no video stream");
    MSCL_CHECK(r >= 0 && codec, io_error,
               "io::video_reader::open: no decoder for the video stream of '"
                   << path << "' (codec " << (r >= 0 ? avcodec_get_name(fmt_->streams[r]->codecpar->codec_id) : "?")
                   << "): " << detail::av_error_string(r < 0 ? r : AVERROR_DECODER_NOT_FOUND));
    stream_ = r;
    AVStream* st = fmt_->streams[stream_];
    for (unsigned i = 0; i < fmt_->nb_streams; ++i)
      if (int(i) != stream_) fmt_->streams[i]->discard = AVDISCARD_ALL;  // audio etc.: never read
    open_decoder(codec);
    props_.container = fmt_->iformat && fmt_->iformat->name ? fmt_->iformat->name : "?";
    props_.codec = codec->name;
    props_.width = st->codecpar->width;
    props_.height = st->codecpar->height;
    MSCL_CHECK(props_.width > 0 && props_.height > 0, io_error,
               "io::video_reader::open: the video stream of '" << path << "' has no frame size (" << props_.width << "x"
                                                               << props_.height << ")");
    const char* pf = av_get_pix_fmt_name(AVPixelFormat(st->codecpar->format));
    props_.pixel_format = pf ? pf : "?";
  }

  void open_decoder(const AVCodec* codec) {
    AVStream* st = fmt_->streams[stream_];
    dec_.reset(avcodec_alloc_context3(codec));
    MSCL_CHECK(dec_, io_error, "io::video_reader::open: out of memory allocating a decoder for '" << props_.path << "'");
    int r = avcodec_parameters_to_context(dec_.get(), st->codecpar);
    MSCL_CHECK(r >= 0, io_error, "io::video_reader::open: bad codec parameters in '" << props_.path << "': " << detail::av_error_string(r));
    dec_->pkt_timebase = st->time_base;
    dec_->thread_count = opt_.threads;
    if (opt_.strict) {
      dec_->err_recognition |= AV_EF_CRCCHECK | AV_EF_BITSTREAM | AV_EF_BUFFER | AV_EF_EXPLODE | AV_EF_CAREFUL | AV_EF_COMPLIANT;
    }
    r = avcodec_open2(dec_.get(), codec, nullptr);
    MSCL_CHECK(r >= 0, io_error,
               "io::video_reader::open: cannot open the " << codec->name << " decoder for '" << props_.path
                                                          << "': " << detail::av_error_string(r));
    frame_.reset(av_frame_alloc());
    prev_.reset(av_frame_alloc());
    pkt_.reset(av_packet_alloc());
    MSCL_CHECK(frame_ && prev_ && pkt_, io_error, "io::video_reader::open: out of memory for '" << props_.path << "'");
  }

  void read_header_properties() {
    AVStream* st = fmt_->streams[stream_];
    props_.fps = detail::q2d_or_zero(st->avg_frame_rate);
    if (props_.fps <= 0) props_.fps = detail::q2d_or_zero(st->r_frame_rate);
    if (st->duration != AV_NOPTS_VALUE && st->duration > 0)
      props_.duration = double(st->duration) * av_q2d(st->time_base);
    else if (fmt_->duration != AV_NOPTS_VALUE && fmt_->duration > 0)
      props_.duration = double(fmt_->duration) / AV_TIME_BASE;
    if (st->nb_frames > 0) {
      props_.header_frame_count = st->nb_frames;
      props_.header_count_exact = true;
    } else if (props_.duration > 0 && props_.fps > 0) {
      props_.header_frame_count = std::int64_t(std::llround(props_.duration * props_.fps));
    }
    props_.frame_count = props_.header_frame_count;
    props_.count_source = frame_count_mode::header;
  }

  // ------------------------------------------------------------------ index
  struct packet_entry {
    std::int64_t ts;   // pts, else dts
    std::int64_t dts;  // seek target (index entries hold dts in most demuxers)
    bool key;
  };

  /// Demuxes every packet once: timestamps, key flags, the frame count, the truncation check.
  void ensure_index() {
    if (indexed_) return;
    std::vector<packet_entry> entries;
    bool all_ts = true;
    std::int64_t corrupt = 0, discarded = 0;
    std::int64_t min_ts = std::numeric_limits<std::int64_t>::max(), end_ts = std::numeric_limits<std::int64_t>::min();
    for (;;) {
      int r = av_read_frame(fmt_.get(), pkt_.get());
      if (r == AVERROR_EOF) break;
      if (r < 0) {
        // Mid-file read error: with allow_short the file ends here, otherwise it is damaged.
        MSCL_CHECK(opt_.allow_short, io_error,
                   "io::video_reader: read error in '" << props_.path << "' after " << entries.size()
                                                       << " video packets: " << detail::av_error_string(r));
        break;
      }
      if (pkt_->stream_index == stream_) {
        if (pkt_->flags & AV_PKT_FLAG_CORRUPT) ++corrupt;
        const std::int64_t ts = pkt_->pts != AV_NOPTS_VALUE ? pkt_->pts : pkt_->dts;
        if (ts == AV_NOPTS_VALUE) {
          all_ts = false;
        } else {
          min_ts = std::min(min_ts, ts);
          end_ts = std::max(end_ts, ts + std::max<std::int64_t>(pkt_->duration, 0));
        }
        // Discarded packets (outside an mp4 edit list) are decoded but never output as frames.
        if (pkt_->flags & AV_PKT_FLAG_DISCARD)
          ++discarded;
        else
          entries.push_back({ts, pkt_->dts != AV_NOPTS_VALUE ? pkt_->dts : ts, (pkt_->flags & AV_PKT_FLAG_KEY) != 0});
      }
      av_packet_unref(pkt_.get());
    }
    MSCL_CHECK(!(opt_.strict && corrupt > 0), io_error,
               "io::video_reader: '" << props_.path << "' has " << corrupt << " packets flagged corrupt by the demuxer");
    MSCL_CHECK(!entries.empty(), io_error, "io::video_reader: '" << props_.path << "' contains no video packets");

    // Frame i has the i-th smallest timestamp. Duplicate or missing timestamps make that mapping
    // ambiguous: fall back to sequential decoding.
    pts_.clear();
    key_index_.clear();
    key_seek_.clear();
    bool usable = all_ts;
    if (usable) {
      for (const auto& e : entries) pts_.push_back(e.ts);
      std::sort(pts_.begin(), pts_.end());
      usable = std::adjacent_find(pts_.begin(), pts_.end()) == pts_.end();
    }
    if (usable) {
      for (const auto& e : entries) {
        if (!e.key) continue;
        const auto it = std::lower_bound(pts_.begin(), pts_.end(), e.ts);
        key_index_.push_back(std::int64_t(it - pts_.begin()));
        key_seek_.push_back(std::min(e.ts, e.dts));
      }
      // Keep keys sorted by frame index (with their seek timestamps).
      std::vector<std::size_t> order(key_index_.size());
      for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return key_index_[a] < key_index_[b]; });
      std::vector<std::int64_t> ki, ks;
      for (std::size_t i : order) {
        ki.push_back(key_index_[i]);
        ks.push_back(key_seek_[i]);
      }
      key_index_ = std::move(ki);
      key_seek_ = std::move(ks);
      min_gap_ = std::numeric_limits<std::int64_t>::max();
      for (std::size_t i = 1; i < pts_.size(); ++i) min_gap_ = std::min(min_gap_, pts_[i] - pts_[i - 1]);
    } else {
      pts_.clear();
      for (const auto& e : entries)
        if (e.key) ++keys_seq_;
    }
    props_.timestamps_usable = usable;
    props_.packets = std::int64_t(entries.size());
    props_.keyframes = usable ? std::int64_t(key_index_.size()) : keys_seq_;
    props_.frame_count = props_.packets;
    props_.count_source = frame_count_mode::packets;
    props_.discarded_packets = discarded;
    check_completeness(all_ts, min_ts, end_ts);
    indexed_ = true;
    rewind();
  }

  /// Truncation and gaps. With timestamps, a file is truncated when its packets stop well before
  /// the declared duration; packets missing *inside* the covered time are gaps, not truncation:
  /// AVI "drop frames" are empty chunks the demuxer skips, and OpenCV/decord (hence most
  /// extracted rawframes) skip them too, so they are reported (`missing_frames`) and rejected only
  /// in strict mode, where they may also mean chunks lost to corruption. Without timestamps or a
  /// duration the packet count is compared with the declared count instead.
  void check_completeness(bool all_ts, std::int64_t min_ts, std::int64_t end_ts) {
    const AVStream* st = fmt_->streams[stream_];
    const std::int64_t n = props_.packets + props_.discarded_packets;
    const double frame_dur = props_.fps > 0 ? 1.0 / props_.fps : 0.0;
    // The declared length: the duration, or nb_frames / fps when longer (a truncated AVI without
    // its index gets its duration re-estimated from the bytes present, but keeps the header count).
    double declared = props_.duration;
    if (props_.header_count_exact && props_.fps > 0) declared = std::max(declared, double(props_.header_frame_count) / props_.fps);
    if (all_ts && end_ts > min_ts && declared > 0) {
      const std::int64_t start = st->start_time != AV_NOPTS_VALUE ? std::min(st->start_time, min_ts) : min_ts;
      const double covered = double(end_ts - start) * av_q2d(st->time_base);
      props_.covered_duration = covered;
      const double tol = std::max(2.0 * frame_dur, 0.02 * declared);
      MSCL_CHECK(opt_.allow_short || covered + tol >= declared, io_error,
                 "io::video_reader: '" << props_.path << "' looks truncated: its " << n << " video packets cover " << covered
                                       << " s of the " << declared << " s the container declares (use allow_short to accept it)");
      if (props_.fps > 0) props_.missing_frames = std::max<std::int64_t>(0, std::llround(std::min(covered, declared) * props_.fps) - n);
      if (props_.header_count_exact && covered + tol >= declared)
        props_.missing_frames = std::max(props_.missing_frames, props_.header_frame_count - n);
      const std::int64_t slack = props_.header_count_exact ? 0 : std::max<std::int64_t>(1, n / 100);
      MSCL_CHECK(!opt_.strict || props_.missing_frames <= slack, io_error,
                 "io::video_reader: '" << props_.path << "' has " << props_.missing_frames
                                       << " frames missing between its first and last packet (dropped or lost to damage; strict mode)");
      return;
    }
    const std::int64_t h = props_.header_frame_count;
    if (h <= 0) return;
    // duration × fps is an estimate (rounding, a last frame's duration): allow a little slack.
    const std::int64_t slack = props_.header_count_exact ? 0 : std::max<std::int64_t>(2, h / 50);
    props_.missing_frames = std::max<std::int64_t>(0, h - n);
    MSCL_CHECK(opt_.allow_short || n + slack >= h, io_error,
               "io::video_reader: '" << props_.path << "' looks truncated or damaged: the container declares "
                                     << (props_.header_count_exact ? "" : "about ") << h << " frames but only " << n
                                     << " video packets are present (use allow_short to accept it)");
  }

  /// Decodes everything once (frame_count_mode::decode): validates the whole file. Frames the
  /// decoder skips without error (held pictures) keep their index; more frames than packets
  /// (several pictures per packet) switch to sequential counting.
  void count_by_decoding() {
    rewind();
    std::int64_t n = 0;
    while (next_frame()) ++n;
    MSCL_CHECK(n > 0, io_error, "io::video_reader: no frame of '" << props_.path << "' could be decoded");
    props_.decoded_frames = n;
    MSCL_CHECK(!opt_.strict || n == props_.packets, io_error,
               "io::video_reader: '" << props_.path << "': " << props_.packets << " video packets decode to " << n
                                     << " frames (strict mode)");
    MSCL_CHECK(opt_.allow_short || n >= props_.packets || stats_.decode_errors == 0, io_error,
               "io::video_reader: '" << props_.path << "': " << stats_.decode_errors << " video packets could not be decoded ("
                                     << n << " frames from " << props_.packets << " packets; use allow_short to accept it)");
    if (n > props_.packets) {
      props_.timestamps_usable = false;
      pts_.clear();
      props_.frame_count = n;
    }
    props_.count_source = frame_count_mode::decode;
    rewind();
  }

  // ------------------------------------------------------------------ decoding
  /// Back to the first frame; the decoder then counts frames sequentially.
  void rewind() {
    const std::int64_t ts = (props_.timestamps_usable && !key_seek_.empty()) ? key_seek_.front() : std::numeric_limits<std::int64_t>::min();
    int r = av_seek_frame(fmt_.get(), stream_, ts, AVSEEK_FLAG_BACKWARD);
    if (r < 0) r = avformat_seek_file(fmt_.get(), stream_, std::numeric_limits<std::int64_t>::min(), ts, ts, 0);
    if (r < 0) r = av_seek_frame(fmt_.get(), stream_, 0, AVSEEK_FLAG_BYTE | AVSEEK_FLAG_BACKWARD);
    if (r < 0) {
      // Unseekable input: reopen it.
      fmt_.reset();
      dec_.reset();
      const bool was = indexed_;
      open_input();
      indexed_ = was;
    } else {
      ++stats_.seeks;
    }
    avcodec_flush_buffers(dec_.get());
    input_eof_ = false;
    pos_ = -1;
    seq_valid_ = true;  // frames now come from the start
  }

  /// Seek so that the next decoded frames start at or before index `w`.
  void seek_before(std::int64_t w) {
    if (!props_.timestamps_usable) {
      rewind();
      return;
    }
    auto it = std::upper_bound(key_index_.begin(), key_index_.end(), w);
    if (it == key_index_.begin()) {
      rewind();
      return;
    }
    const std::size_t k = std::size_t(it - key_index_.begin()) - 1;
    if (k == 0) {
      rewind();
      return;
    }
    int r = av_seek_frame(fmt_.get(), stream_, key_seek_[k], AVSEEK_FLAG_BACKWARD);
    if (r < 0) {
      rewind();
      return;
    }
    ++stats_.seeks;
    avcodec_flush_buffers(dec_.get());
    input_eof_ = false;
    pos_ = -1;
    seq_valid_ = false;
  }

  /// The next frame out of the decoder into frame_; false at the end of the stream.
  bool next_frame() {
    for (;;) {
      int r = avcodec_receive_frame(dec_.get(), frame_.get());
      if (r == 0) {
        ++stats_.decoded;
        gap_had_errors_ = stats_.decode_errors != errors_at_output_;
        errors_at_output_ = stats_.decode_errors;
        if (opt_.strict) {
          MSCL_CHECK(!(frame_->flags & AV_FRAME_FLAG_CORRUPT) && frame_->decode_error_flags == 0, io_error,
                     "io::video_reader: '" << props_.path << "': the decoder reports a damaged frame near index "
                                           << (pos_ + 1) << " (strict mode)");
        }
        return true;
      }
      if (r == AVERROR_EOF) {
        gap_had_errors_ = stats_.decode_errors != errors_at_output_;
        return false;
      }
      if (r != AVERROR(EAGAIN)) {
        MSCL_CHECK(!opt_.strict, io_error,
                   "io::video_reader: decoding '" << props_.path << "' failed near frame " << (pos_ + 1) << ": "
                                                  << detail::av_error_string(r));
        ++stats_.decode_errors;
        continue;
      }
      if (input_eof_) {
        gap_had_errors_ = stats_.decode_errors != errors_at_output_;
        return false;
      }
      r = av_read_frame(fmt_.get(), pkt_.get());
      if (r == AVERROR_EOF || (r < 0 && opt_.allow_short)) {
        avcodec_send_packet(dec_.get(), nullptr);  // drain the frames the decoder still holds
        input_eof_ = true;
        continue;
      }
      MSCL_CHECK(r >= 0, io_error,
                 "io::video_reader: read error in '" << props_.path << "' near frame " << (pos_ + 1) << ": "
                                                     << detail::av_error_string(r));
      if (pkt_->stream_index != stream_) {
        av_packet_unref(pkt_.get());
        continue;
      }
      const bool corrupt = (pkt_->flags & AV_PKT_FLAG_CORRUPT) != 0;
      r = avcodec_send_packet(dec_.get(), pkt_.get());
      av_packet_unref(pkt_.get());
      MSCL_CHECK(!(opt_.strict && corrupt), io_error,
                 "io::video_reader: '" << props_.path << "': packet near frame " << (pos_ + 1) << " is flagged corrupt (strict mode)");
      if (r < 0 && r != AVERROR(EAGAIN)) {
        MSCL_CHECK(!opt_.strict, io_error,
                   "io::video_reader: '" << props_.path << "': the decoder rejected the packet near frame " << (pos_ + 1)
                                         << ": " << detail::av_error_string(r) << " (strict mode)");
        ++stats_.decode_errors;
      }
    }
  }

  /// Index of the frame in frame_: by timestamp, else by counting from the start; -1 unknown.
  std::int64_t current_index() {
    if (props_.timestamps_usable) {
      std::int64_t t = frame_->pts;
      if (t == AV_NOPTS_VALUE) t = frame_->best_effort_timestamp;
      if (t != AV_NOPTS_VALUE) {
        auto it = std::lower_bound(pts_.begin(), pts_.end(), t);
        std::int64_t best = -1, dist = std::numeric_limits<std::int64_t>::max();
        if (it != pts_.end()) {
          best = std::int64_t(it - pts_.begin());
          dist = *it - t;
        }
        if (it != pts_.begin() && t - *(it - 1) < dist) {
          best = std::int64_t(it - pts_.begin()) - 1;
          dist = t - *(it - 1);
        }
        if (best >= 0 && 2 * dist < std::max<std::int64_t>(min_gap_, 1)) return best;
      }
    }
    if (seq_valid_) return pos_ + 1;
    return -1;
  }

  /// Decodes forward and fills got[j] with frame want[j] (want sorted, unique).
  void fill(const std::vector<std::int64_t>& want, std::vector<data::image_u8>& got, int short_side) {
    std::size_t next = 0;
    bool have_prev = false;
    bool retried_from_start = false;
    // A wanted frame the decoder skipped. Without a decode error in between, the decoder dropped
    // the packet on purpose (MPEG-4 "not coded" VOPs, empty packets): players hold the previous
    // picture, and so does the reader. After an error only allow_short substitutes.
    auto missing = [&](std::int64_t w, const char* why) {
      if (have_prev && !opt_.strict && !gap_had_errors_) {
        ++stats_.held;
      } else {
        MSCL_CHECK(opt_.allow_short && have_prev, io_error,
                   "io::video_reader: frame " << w << " of '" << props_.path << "' (" << props_.frame_count
                                              << " frames) could not be decoded: " << why
                                              << (gap_had_errors_ ? " after a decode error" : "")
                                              << (opt_.strict && !gap_had_errors_ ? " (skipped by the decoder; strict mode)" : ""));
        ++stats_.substituted;
      }
      got[next] = convert(prev_.get(), short_side);
      ++next;
    };
    while (next < want.size()) {
      const std::int64_t w = want[next];
      // Continue decoding when the frames up to w follow without a keyframe to skip to.
      bool cont = pos_ >= 0 && pos_ < w;
      if (cont && props_.timestamps_usable) {
        auto it = std::upper_bound(key_index_.begin(), key_index_.end(), w);
        const std::int64_t key = it == key_index_.begin() ? 0 : *(it - 1);
        cont = key <= pos_ + 1;
      }
      if (!cont) seek_before(w);
      bool first_after_seek = !cont;
      for (;;) {
        if (!next_frame()) {
          // End of stream: whatever is still wanted is missing.
          while (next < want.size()) missing(want[next], "the video ended before it");
          return;
        }
        std::int64_t idx = current_index();
        if (idx < 0) {
          // Timestamps do not identify this frame: decode from the start and count.
          props_.timestamps_usable = false;
          rewind();
          first_after_seek = true;
          continue;
        }
        pos_ = idx;
        auto keep_as_prev = [&] {
          av_frame_unref(prev_.get());
          MSCL_CHECK(av_frame_ref(prev_.get(), frame_.get()) >= 0, io_error,
                     "io::video_reader: out of memory while decoding '" << props_.path << "'");
          have_prev = true;
        };
        if (idx < w) {
          first_after_seek = false;
          keep_as_prev();
          continue;
        }
        if (idx > w && first_after_seek && !seq_valid_ && !retried_from_start) {
          // The seek landed after w (index entries by dts, open GOPs): start over from frame 0.
          retried_from_start = true;
          rewind();
          have_prev = false;
          continue;
        }
        first_after_seek = false;
        while (next < want.size() && want[next] < idx) missing(want[next], "the decoder produced no frame for it");
        keep_as_prev();
        if (next < want.size() && want[next] == idx) {
          got[next] = convert(frame_.get(), short_side);
          ++next;
        }
        break;
      }
    }
  }

  // ------------------------------------------------------------------ conversion
  data::image_u8 convert(const AVFrame* f, int short_side) {
    MSCL_CHECK(f->width > 0 && f->height > 0 && f->format >= 0, io_error,
               "io::video_reader: '" << props_.path << "' decoded an empty frame");
    const auto [oh, ow] = detail::short_side_size(f->height, f->width, short_side);
    bool full_range = f->color_range == AVCOL_RANGE_JPEG;
    const AVPixelFormat src_fmt = detail::dejpeg_format(AVPixelFormat(f->format), &full_range);
    int flags = SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT;
    switch (opt_.scaling) {
      case video_scaling::area: flags |= SWS_AREA; break;
      case video_scaling::bilinear: flags |= SWS_BILINEAR; break;
      case video_scaling::bicubic: flags |= SWS_BICUBIC; break;
      case video_scaling::automatic: flags |= (oh < f->height || ow < f->width) ? SWS_AREA : SWS_BILINEAR; break;
    }
    const int cs = detail::sws_colorspace(f->colorspace);
    const std::vector<int> key = {f->width, f->height, int(src_fmt), ow, oh, flags, cs, full_range ? 1 : 0};
    if (!sws_ || key != sws_key_) {
      // A fresh context per parameter set (not sws_getCachedContext): the colour details below
      // must be applied to every new context, and a freed-then-reallocated context can reuse the
      // old address, so pointer comparison cannot tell.
      sws_.reset(sws_getContext(f->width, f->height, src_fmt, ow, oh, AV_PIX_FMT_RGB24, flags, nullptr, nullptr, nullptr));
      MSCL_CHECK(sws_, io_error,
                 "io::video_reader: cannot convert " << (av_get_pix_fmt_name(AVPixelFormat(f->format)) ? av_get_pix_fmt_name(AVPixelFormat(f->format)) : "?")
                                                     << " frames of '" << props_.path << "' to RGB");
      sws_setColorspaceDetails(sws_.get(), sws_getCoefficients(cs), full_range ? 1 : 0, sws_getCoefficients(SWS_CS_DEFAULT), 1, 0,
                               1 << 16, 1 << 16);
      sws_key_ = key;
    }
    SwsContext* ctx = sws_.get();
    // swscale wants aligned rows; convert into an aligned scratch buffer, then copy rows.
    const int stride = FFALIGN(ow * 3, 64);
    const std::size_t need = std::size_t(stride) * std::size_t(oh) + 64;
    if (need > scratch_size_) {
      scratch_.reset(static_cast<std::uint8_t*>(av_malloc(need)));
      MSCL_CHECK(scratch_, io_error, "io::video_reader: out of memory converting a frame of '" << props_.path << "'");
      scratch_size_ = need;
    }
    std::uint8_t* dst[4] = {scratch_.get(), nullptr, nullptr, nullptr};
    int dst_stride[4] = {stride, 0, 0, 0};
    const int rows = sws_scale(ctx, f->data, f->linesize, 0, f->height, dst, dst_stride);
    MSCL_CHECK(rows == oh, io_error, "io::video_reader: RGB conversion of a frame of '" << props_.path << "' failed");
    data::image_u8 img(oh, ow, 3);
    for (int y = 0; y < oh; ++y)
      std::memcpy(img.pixels.data() + std::size_t(y) * std::size_t(ow) * 3, scratch_.get() + std::size_t(y) * std::size_t(stride),
                  std::size_t(ow) * 3);
    ++stats_.converted;
    return img;
  }

  video_options opt_;
  video_properties props_;
  video_read_stats stats_;
  detail::format_ptr fmt_;
  detail::codec_ptr dec_;
  detail::frame_ptr frame_, prev_;
  detail::packet_ptr pkt_;
  detail::sws_ptr sws_;
  detail::av_bytes_ptr scratch_;
  std::size_t scratch_size_ = 0;
  std::vector<int> sws_key_;
  int stream_ = -1;
  bool indexed_ = false;
  std::vector<std::int64_t> pts_;        // sorted presentation timestamps: frame i has pts_[i]
  std::vector<std::int64_t> key_index_;  // frame indices of key packets, ascending
  std::vector<std::int64_t> key_seek_;   // their seek timestamps
  std::int64_t min_gap_ = 1;
  std::int64_t keys_seq_ = 0;
  bool input_eof_ = false;
  std::int64_t pos_ = -1;   // index of the last decoded frame (-1: none since the last seek)
  bool seq_valid_ = false;  // decoding started at frame 0, so counting gives indices
  std::int64_t errors_at_output_ = 0;  // stats_.decode_errors when the last frame came out
  bool gap_had_errors_ = false;        // decode errors between the previous and the latest output
};

}  // namespace mscl::io

#endif  // MSCL_WITH_FFMPEG
