/// \file jpeg.hpp
/// \brief JPEG decode/encode through libjpeg-turbo (libjpeg API) for rawframes: RGB frames,
///        grey flow planes and CoCLR's packed 3-channel flow images.
///
/// Only compiled when `MSCL_WITH_JPEG` is set (the CMake target `mscl::jpeg` defines it and links
/// `JPEG::JPEG`); without it the header declares nothing, so code that needs JPEG fails at compile
/// time with a clear missing-name error instead of at run time.
///
/// Failure model: libjpeg's default error handler calls `exit()`, and throwing a C++ exception
/// through libjpeg's C frames is not safe, so every libjpeg call runs inside a small function that
/// `setjmp`s and owns no objects with destructors; the error handler `longjmp`s back there, the
/// decompressor is destroyed, and the caller turns the stored message into `mscl::io_error`
/// naming the file. Warnings (libjpeg's "premature end of data", "corrupt data: N extraneous
/// bytes") are errors by default (`strict`): libjpeg would otherwise pad a truncated file with grey
/// and return it as if nothing happened, and a silently grey frame is worse than a skipped video.
#pragma once
#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG

#include <csetjmp>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <jpeglib.h>

#include "../core/error.hpp"
#include "../data/frame.hpp"

namespace mscl::io {

/// Width, height and channels as stored in the file (1 for grey, 3 for colour).
struct jpeg_info {
  int height = 0, width = 0, channels = 0;
};

/// How to decode.
struct jpeg_decode_options {
  int channels = 0;    ///< 0: grey stays 1 channel, colour becomes RGB; 1: force grey; 3: force RGB
  bool strict = true;  ///< treat libjpeg warnings (truncation, corrupt segments) as errors
};

namespace detail {

struct jpeg_error_mgr_ex {
  jpeg_error_mgr pub;  // must be first: libjpeg hands us a jpeg_error_mgr*
  std::jmp_buf jump;
  bool strict = true;
  char message[JMSG_LENGTH_MAX + 1];
};

extern "C" inline void mscl_jpeg_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<jpeg_error_mgr_ex*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// libjpeg reports warnings (msg_level -1) for data it can paper over; in strict mode they abort.
extern "C" inline void mscl_jpeg_emit_message(j_common_ptr cinfo, int msg_level) {
  auto* err = reinterpret_cast<jpeg_error_mgr_ex*>(cinfo->err);
  if (msg_level < 0) {
    cinfo->err->num_warnings++;
    if (err->strict) {
      (*cinfo->err->format_message)(cinfo, err->message);
      std::longjmp(err->jump, 1);
    }
  }
}

extern "C" inline void mscl_jpeg_output_message(j_common_ptr) {}  // never print to stderr

inline void jpeg_install_errors(jpeg_error_mgr_ex& err, bool strict) {
  jpeg_std_error(&err.pub);
  err.pub.error_exit = mscl_jpeg_error_exit;
  err.pub.emit_message = mscl_jpeg_emit_message;
  err.pub.output_message = mscl_jpeg_output_message;
  err.strict = strict;
  err.message[0] = '\0';
}

/// Everything a libjpeg call touches lives in a context owned by the caller, so that nothing the
/// error path reads after `longjmp` is an automatic variable of the function that called `setjmp`
/// (whose values would be indeterminate) and no C++ object with a destructor is skipped.
struct jpeg_decode_ctx {
  jpeg_decompress_struct cinfo;
  jpeg_error_mgr_ex err;
  int height = 0, width = 0, file_channels = 0;
  data::image_u8* out = nullptr;  // null: header only
  bool alloc_failed = false;
};

/// Returns false with `ctx->err.message` set on any libjpeg error.
inline bool jpeg_decode_raw(const unsigned char* bytes, unsigned long n, int want_channels, bool strict,
                            jpeg_decode_ctx* ctx) {
  std::memset(&ctx->cinfo, 0, sizeof(ctx->cinfo));
  ctx->cinfo.err = &ctx->err.pub;
  jpeg_install_errors(ctx->err, strict);
  if (setjmp(ctx->err.jump)) {
    jpeg_destroy_decompress(&ctx->cinfo);
    return false;
  }
  jpeg_create_decompress(&ctx->cinfo);
  jpeg_mem_src(&ctx->cinfo, const_cast<unsigned char*>(bytes), n);
  jpeg_read_header(&ctx->cinfo, TRUE);
  ctx->file_channels = ctx->cinfo.num_components == 1 ? 1 : 3;
  ctx->height = int(ctx->cinfo.image_height);
  ctx->width = int(ctx->cinfo.image_width);
  if (ctx->out == nullptr) {
    jpeg_destroy_decompress(&ctx->cinfo);
    return true;
  }
  ctx->cinfo.out_color_space = (want_channels == 0 ? ctx->file_channels : want_channels) == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&ctx->cinfo);
  ctx->height = int(ctx->cinfo.output_height);
  ctx->width = int(ctx->cinfo.output_width);
  // Allocation is C++ and may throw; catch here so the exception never crosses libjpeg state.
  try {
    *ctx->out = data::image_u8(ctx->height, ctx->width, int(ctx->cinfo.output_components));
  } catch (...) {
    ctx->alloc_failed = true;
    std::snprintf(ctx->err.message, sizeof(ctx->err.message), "cannot allocate a %dx%dx%d image", ctx->height,
                  ctx->width, int(ctx->cinfo.output_components));
    jpeg_destroy_decompress(&ctx->cinfo);
    return false;
  }
  const std::size_t stride = std::size_t(ctx->width) * std::size_t(ctx->out->channels);
  while (ctx->cinfo.output_scanline < ctx->cinfo.output_height) {
    JSAMPROW row = ctx->out->pixels.data() + std::size_t(ctx->cinfo.output_scanline) * stride;
    jpeg_read_scanlines(&ctx->cinfo, &row, 1);
  }
  jpeg_finish_decompress(&ctx->cinfo);
  jpeg_destroy_decompress(&ctx->cinfo);
  return true;
}

struct jpeg_encode_ctx {
  jpeg_compress_struct cinfo;
  jpeg_error_mgr_ex err;
  unsigned char* buffer = nullptr;  // malloc'd by libjpeg's memory destination; caller frees
  unsigned long size = 0;
};

inline bool jpeg_encode_raw(const std::uint8_t* pixels, int h, int w, int c, int quality, jpeg_encode_ctx* ctx) {
  std::memset(&ctx->cinfo, 0, sizeof(ctx->cinfo));
  ctx->cinfo.err = &ctx->err.pub;
  jpeg_install_errors(ctx->err, true);
  if (setjmp(ctx->err.jump)) {
    jpeg_destroy_compress(&ctx->cinfo);
    return false;
  }
  jpeg_create_compress(&ctx->cinfo);
  jpeg_mem_dest(&ctx->cinfo, &ctx->buffer, &ctx->size);
  ctx->cinfo.image_width = JDIMENSION(w);
  ctx->cinfo.image_height = JDIMENSION(h);
  ctx->cinfo.input_components = c;
  ctx->cinfo.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&ctx->cinfo);
  jpeg_set_quality(&ctx->cinfo, quality, TRUE);
  jpeg_start_compress(&ctx->cinfo, TRUE);
  while (ctx->cinfo.next_scanline < ctx->cinfo.image_height) {
    JSAMPROW row = const_cast<std::uint8_t*>(pixels) + std::size_t(ctx->cinfo.next_scanline) * std::size_t(w) * std::size_t(c);
    jpeg_write_scanlines(&ctx->cinfo, &row, 1);
  }
  jpeg_finish_compress(&ctx->cinfo);
  jpeg_destroy_compress(&ctx->cinfo);
  return true;
}

inline std::vector<unsigned char> jpeg_slurp(const std::string& path, const char* who) {
  std::ifstream in(path, std::ios::binary);
  MSCL_CHECK(in.good(), io_error, who << ": cannot open '" << path << "': " << std::strerror(errno));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  MSCL_CHECK(size >= 0, io_error, who << ": cannot determine the size of '" << path << "'");
  in.seekg(0, std::ios::beg);
  std::vector<unsigned char> bytes(static_cast<std::size_t>(size));
  if (size > 0) in.read(reinterpret_cast<char*>(bytes.data()), size);
  MSCL_CHECK(in.gcount() == size, io_error,
             who << ": read " << in.gcount() << " of " << size << " bytes of '" << path << "'");
  return bytes;
}

}  // namespace detail

/// Decodes JPEG bytes; `name` appears in error messages (a file name, or "<memory>").
/// Throws io_error on any decode failure (and on warnings when `opt.strict`), value_error for a
/// channel request other than 0, 1 or 3.
inline data::image_u8 decode_jpeg(const std::uint8_t* bytes, std::size_t n, const std::string& name,
                                  const jpeg_decode_options& opt = {}) {
  MSCL_CHECK(opt.channels == 0 || opt.channels == 1 || opt.channels == 3, value_error,
             "io::decode_jpeg: channels must be 0 (as stored), 1 or 3, got " << opt.channels << " for '" << name << "'");
  MSCL_CHECK(n >= 4 && bytes[0] == 0xFF && bytes[1] == 0xD8, io_error,
             "io::decode_jpeg: '" << name << "' is not a JPEG (" << n << " bytes, no SOI marker FF D8)");
  data::image_u8 img;
  detail::jpeg_decode_ctx ctx;
  ctx.out = &img;
  const bool ok = detail::jpeg_decode_raw(bytes, static_cast<unsigned long>(n), opt.channels, opt.strict, &ctx);
  MSCL_CHECK(ok, io_error, "io::decode_jpeg: cannot decode '" << name << "' (" << n << " bytes): " << ctx.err.message);
  return img;
}

/// Reads and decodes a JPEG file; every failure is an io_error naming `path`.
inline data::image_u8 read_jpeg(const std::string& path, const jpeg_decode_options& opt = {}) {
  const std::vector<unsigned char> bytes = detail::jpeg_slurp(path, "io::read_jpeg");
  return decode_jpeg(bytes.data(), bytes.size(), path, opt);
}

/// Convenience: read_jpeg with a channel request (0 as stored, 1 grey, 3 RGB).
inline data::image_u8 read_jpeg(const std::string& path, int channels) {
  jpeg_decode_options opt;
  opt.channels = channels;
  return read_jpeg(path, opt);
}

/// Parses only the header (cheap validity check, size without decoding).
inline jpeg_info read_jpeg_info(const std::string& path) {
  const std::vector<unsigned char> bytes = detail::jpeg_slurp(path, "io::read_jpeg_info");
  MSCL_CHECK(bytes.size() >= 4 && bytes[0] == 0xFF && bytes[1] == 0xD8, io_error,
             "io::read_jpeg_info: '" << path << "' is not a JPEG (" << bytes.size() << " bytes, no SOI marker FF D8)");
  detail::jpeg_decode_ctx ctx;
  const bool ok = detail::jpeg_decode_raw(bytes.data(), static_cast<unsigned long>(bytes.size()), 0, true, &ctx);
  MSCL_CHECK(ok, io_error, "io::read_jpeg_info: cannot parse the header of '" << path << "': " << ctx.err.message);
  return jpeg_info{ctx.height, ctx.width, ctx.file_channels};
}

/// Encodes an image (1 channel → grey JPEG, 3 → YCbCr JPEG with libjpeg's default 2×2 chroma
/// subsampling, like cv2.imwrite). quality in [1, 100]; 95 is OpenCV's default.
inline std::vector<std::uint8_t> encode_jpeg(const data::image_u8& img, int quality = 95) {
  MSCL_CHECK(!img.empty() && (img.channels == 1 || img.channels == 3) &&
                 img.pixels.size() == std::size_t(img.height) * std::size_t(img.width) * std::size_t(img.channels),
             shape_error,
             "io::encode_jpeg: need a non-empty 1- or 3-channel image, got " << img.height << "x" << img.width << "x"
                                                                             << img.channels);
  MSCL_CHECK(quality >= 1 && quality <= 100, value_error, "io::encode_jpeg: quality must be in [1, 100], got " << quality);
  detail::jpeg_encode_ctx ctx;
  const bool ok = detail::jpeg_encode_raw(img.pixels.data(), img.height, img.width, img.channels, quality, &ctx);
  std::vector<std::uint8_t> out;
  if (ok && ctx.buffer) out.assign(ctx.buffer, ctx.buffer + ctx.size);
  std::free(ctx.buffer);
  MSCL_CHECK(ok, io_error, "io::encode_jpeg: libjpeg failed on a " << img.height << "x" << img.width << "x" << img.channels
                                                                  << " image: " << ctx.err.message);
  return out;
}

/// Encodes and writes `path` (plain write, no fsync: frames are bulk data, not checkpoints).
inline void write_jpeg(const std::string& path, const data::image_u8& img, int quality = 95) {
  const std::vector<std::uint8_t> bytes = encode_jpeg(img, quality);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  MSCL_CHECK(out.good(), io_error, "io::write_jpeg: cannot create '" << path << "': " << std::strerror(errno));
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  out.close();
  MSCL_CHECK(!out.fail(), io_error, "io::write_jpeg: writing " << bytes.size() << " bytes to '" << path << "' failed");
}

}  // namespace mscl::io

#endif  // MSCL_WITH_JPEG
