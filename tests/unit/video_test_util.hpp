/// \file video_test_util.hpp
/// \brief Test-only helpers for the video reader: a synthetic clip whose frame index is drawn as a
///        large binary pattern (so every decoded frame says which frame it is, within codec
///        tolerance), and an encoder that writes it with libavcodec/libavformat to avi, mp4 or
///        webm. Encoders missing from the local FFmpeg build are reported, not failed, so the
///        caller can skip that format with a WARN.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}

#include <mscl/data/frame.hpp>

namespace mscl::testing::video {

constexpr int bits = 6;        // up to 64 distinct frames
constexpr int cell = 22;       // bit cell size in pixels
constexpr int cell_x0 = 8, cell_y0 = 8;

/// Frame `i` of the synthetic clip: colour gradient background, a row of `bits` cells (bright =
/// bit set, dark = clear, LSB first), a bright square moving with i, and a pure red patch at the
/// bottom left (checks channel order).
inline data::image_u8 synthetic_frame(int i, int h, int w) {
  data::image_u8 img(h, w, 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      img.at(y, x, 0) = std::uint8_t(40 + (x * 120) / w);
      img.at(y, x, 1) = std::uint8_t(40 + (y * 120) / h);
      img.at(y, x, 2) = 110;
    }
  auto rect = [&](int y0, int x0, int hh, int ww, int r, int g, int b) {
    for (int y = y0; y < y0 + hh && y < h; ++y)
      for (int x = x0; x < x0 + ww && x < w; ++x) {
        img.at(y, x, 0) = std::uint8_t(r);
        img.at(y, x, 1) = std::uint8_t(g);
        img.at(y, x, 2) = std::uint8_t(b);
      }
  };
  for (int b = 0; b < bits; ++b) {
    const int v = ((i >> b) & 1) ? 235 : 16;
    rect(cell_y0, cell_x0 + b * (cell + 2), cell, cell, v, v, v);
  }
  rect(h / 2 + 4, 4 + (i * 5) % (w - 24), 16, 16, 250, 250, 250);
  rect(h - 26, 4, 20, 24, 220, 20, 20);
  return img;
}

/// The index a (possibly resized) decoded frame shows; -1 when a cell is ambiguous.
inline int decode_pattern(const data::image_u8& img, int src_h, int src_w) {
  const double sy = double(img.height) / src_h, sx = double(img.width) / src_w;
  int v = 0;
  for (int b = 0; b < bits; ++b) {
    // The central half of the cell, mapped into the image's size.
    const int x0 = int((cell_x0 + b * (cell + 2) + cell / 4) * sx), x1 = int((cell_x0 + b * (cell + 2) + 3 * cell / 4) * sx);
    const int y0 = int((cell_y0 + cell / 4) * sy), y1 = int((cell_y0 + 3 * cell / 4) * sy);
    double sum = 0;
    int n = 0;
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x, ++n) sum += (img.at(y, x, 0) + img.at(y, x, 1) + img.at(y, x, 2)) / 3.0;
    const double m = sum / std::max(n, 1);
    if (m > 170) v |= 1 << b;
    else if (m > 80) return -1;
  }
  return v;
}

inline double mean_abs_diff(const data::image_u8& a, const data::image_u8& b) {
  if (a.height != b.height || a.width != b.width || a.channels != b.channels) return 1e9;
  double s = 0;
  for (std::size_t i = 0; i < a.pixels.size(); ++i) s += std::abs(int(a.pixels[i]) - int(b.pixels[i]));
  return s / double(a.pixels.size());
}

struct encode_spec {
  std::string encoder;  ///< libavcodec encoder name: mpeg4, mjpeg, libx264, libvpx-vp9, libvpx
  int frames = 40, height = 120, width = 160, fps = 25, gop = 12, b_frames = 0;
  int empty_every = 0;  ///< > 0: frames i with i % empty_every == empty_every-1 become empty packets (AVI "drop frames")
  bool nvop = false;    ///< with empty_every and mpeg4: write a "not coded" VOP instead of an empty packet
  bool packet_durations = true;
  bool faststart = false;  ///< mp4: index (moov) before the data, so a truncated file still opens  ///< false reproduces FFmpeg-written mp4s whose edit list drops the last frame
};

namespace detail {
struct oc_del {
  void operator()(AVFormatContext* p) const {
    if (p->pb && !(p->oformat->flags & AVFMT_NOFILE)) avio_closep(&p->pb);
    avformat_free_context(p);
  }
};
struct cc_del {
  void operator()(AVCodecContext* p) const { avcodec_free_context(&p); }
};
struct fr_del {
  void operator()(AVFrame* p) const { av_frame_free(&p); }
};
struct pk_del {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct sw_del {
  void operator()(SwsContext* p) const { sws_freeContext(p); }
};
}  // namespace detail

/// Writes the synthetic clip to `path` (container from the extension). Returns "" on success,
/// "missing encoder" when this FFmpeg build lacks it, or an error description.
inline std::string encode_synthetic(const std::string& path, const encode_spec& s) {
  const AVCodec* codec = avcodec_find_encoder_by_name(s.encoder.c_str());
  if (!codec) return "missing encoder";
  AVFormatContext* raw = nullptr;
  if (avformat_alloc_output_context2(&raw, nullptr, nullptr, path.c_str()) < 0 || !raw) return "no muxer for " + path;
  std::unique_ptr<AVFormatContext, detail::oc_del> oc(raw);
  AVStream* st = avformat_new_stream(oc.get(), nullptr);
  std::unique_ptr<AVCodecContext, detail::cc_del> cc(avcodec_alloc_context3(codec));
  if (!st || !cc) return "out of memory";
  const bool jpeg = s.encoder == "mjpeg";
  cc->width = s.width;
  cc->height = s.height;
  cc->time_base = AVRational{1, s.fps};
  cc->framerate = AVRational{s.fps, 1};
  cc->pix_fmt = jpeg ? AV_PIX_FMT_YUVJ420P : AV_PIX_FMT_YUV420P;
  cc->gop_size = s.gop;
  cc->max_b_frames = s.b_frames;
  cc->bit_rate = 3000000;
  cc->thread_count = 1;
  if (s.encoder == "mpeg4" || jpeg) {
    cc->flags |= AV_CODEC_FLAG_QSCALE;  // constant quality: small frames stay sharp
    cc->global_quality = FF_QP2LAMBDA * 3;
  }
  if (oc->oformat->flags & AVFMT_GLOBALHEADER) cc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  AVDictionary* opts = nullptr;
  if (s.encoder == "libx264") {
    av_dict_set(&opts, "preset", "veryfast", 0);
    av_dict_set(&opts, "crf", "16", 0);
    cc->bit_rate = 0;
    cc->max_b_frames = s.b_frames > 0 ? s.b_frames : 2;
  } else if (s.encoder == "libvpx-vp9" || s.encoder == "libvpx") {
    av_dict_set(&opts, "deadline", "realtime", 0);
    av_dict_set(&opts, "cpu-used", "8", 0);
    av_dict_set(&opts, "crf", "10", 0);
    cc->bit_rate = 2000000;
  }
  int r = avcodec_open2(cc.get(), codec, &opts);
  av_dict_free(&opts);
  if (r < 0) return "cannot open encoder " + s.encoder;
  if (avcodec_parameters_from_context(st->codecpar, cc.get()) < 0) return "codec parameters";
  st->time_base = cc->time_base;
  if (!(oc->oformat->flags & AVFMT_NOFILE) && avio_open(&oc->pb, path.c_str(), AVIO_FLAG_WRITE) < 0) return "cannot write " + path;
  AVDictionary* mux_opts = nullptr;
  if (s.faststart) av_dict_set(&mux_opts, "movflags", "faststart", 0);
  r = avformat_write_header(oc.get(), &mux_opts);
  av_dict_free(&mux_opts);
  if (r < 0) return "write header";

  std::unique_ptr<AVFrame, detail::fr_del> fr(av_frame_alloc());
  std::unique_ptr<AVPacket, detail::pk_del> pk(av_packet_alloc());
  fr->format = cc->pix_fmt;
  fr->width = s.width;
  fr->height = s.height;
  if (av_frame_get_buffer(fr.get(), 0) < 0) return "frame buffer";
  std::unique_ptr<SwsContext, detail::sw_del> sws(sws_getContext(s.width, s.height, AV_PIX_FMT_RGB24, s.width, s.height,
                                                                 jpeg ? AV_PIX_FMT_YUV420P : cc->pix_fmt,
                                                                 SWS_BILINEAR | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP, nullptr,
                                                                 nullptr, nullptr));
  if (!sws) return "swscale";
  if (jpeg) {  // full-range output for the JPEG-range pixel format
    sws_setColorspaceDetails(sws.get(), sws_getCoefficients(SWS_CS_DEFAULT), 0, sws_getCoefficients(SWS_CS_DEFAULT), 1, 0,
                             1 << 16, 1 << 16);
  }
  auto drain = [&]() -> bool {
    for (;;) {
      int e = avcodec_receive_packet(cc.get(), pk.get());
      if (e == AVERROR(EAGAIN) || e == AVERROR_EOF) return true;
      if (e < 0) return false;
      // Without a duration the mp4 muxer's edit list ends at the last pts and the demuxer then
      // marks the last frame "discard" (a real-world artefact the reader handles, not wanted here).
      if (s.packet_durations && pk->duration <= 0) pk->duration = 1;
      av_packet_rescale_ts(pk.get(), cc->time_base, st->time_base);
      pk->stream_index = st->index;
      if (av_interleaved_write_frame(oc.get(), pk.get()) < 0) return false;
    }
  };
  for (int i = 0; i < s.frames; ++i) {
    if (s.empty_every > 0 && i % s.empty_every == s.empty_every - 1) {
      // A zero-length chunk: players hold the previous picture (needs an encoder without delay).
      std::unique_ptr<AVPacket, detail::pk_del> empty(av_packet_alloc());
      if (s.nvop) {
        // MPEG-4 VOP header with vop_coded = 0 (what DivX/Xvid write for a repeated frame):
        // start code, P type '01', modulo_time_base '0', marker, 5-bit time increment (fps 25),
        // marker, vop_coded '0', then stuffing '0' '1111' to the byte boundary.
        if (s.encoder != "mpeg4" || s.fps != 25) return "nvop needs mpeg4 at 25 fps";
        const unsigned bits = (0x1u << 14) | (0u << 13) | (1u << 12) | (unsigned(i % 25) << 7) | (1u << 6) | (0u << 5) | 0x0Fu;
        if (av_new_packet(empty.get(), 6) < 0) return "nvop packet";
        const std::uint8_t b[6] = {0, 0, 1, 0xB6, std::uint8_t(bits >> 8), std::uint8_t(bits & 0xff)};
        std::memcpy(empty->data, b, 6);
      }
      empty->pts = empty->dts = i;
      empty->duration = 1;
      av_packet_rescale_ts(empty.get(), cc->time_base, st->time_base);
      empty->stream_index = st->index;
      if (av_interleaved_write_frame(oc.get(), empty.get()) < 0) return "write empty packet";
      continue;
    }
    if (av_frame_make_writable(fr.get()) < 0) return "frame writable";
    const data::image_u8 img = synthetic_frame(i, s.height, s.width);
    const std::uint8_t* src[1] = {img.pixels.data()};
    const int src_stride[1] = {3 * s.width};
    sws_scale(sws.get(), src, src_stride, 0, s.height, fr->data, fr->linesize);
    fr->pts = i;
    if (avcodec_send_frame(cc.get(), fr.get()) < 0 || !drain()) return "encode frame " + std::to_string(i);
  }
  if (avcodec_send_frame(cc.get(), nullptr) < 0 || !drain()) return "flush encoder";
  if (av_write_trailer(oc.get()) < 0) return "write trailer";
  return "";
}

}  // namespace mscl::testing::video
