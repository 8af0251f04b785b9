// JPEG codec, rawframes descriptor and dataset verify on small trees written by the test with the
// library's own encoder. The decoder is checked against bytes and pixels produced by OpenCV 4.6
// (cv2.imencode quality 90 / cv2.imdecode of an 8x16 RGB pattern), an independent reference.
//
// MSCL_WITH_JPEG comes from the CMake target mscl::jpeg (linked into every test when libjpeg is
// found); without it only a placeholder test runs.
#include <catch2/catch.hpp>

#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

#include <mscl/data/rawframes.hpp>
#include <mscl/data/verify.hpp>
#include <mscl/io/jpeg.hpp>

namespace fs = std::filesystem;
using namespace mscl::data;
using mscl::io::read_jpeg;
using mscl::io::write_jpeg;

namespace {

const std::uint8_t cv2_jpeg[] = {
    255, 216, 255, 224, 0, 16, 74, 70, 73, 70, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0, 255, 219, 0, 67,
    0, 3, 2, 2, 3, 2, 2, 3, 3, 3, 3, 4, 3, 3, 4, 5, 8, 5, 5, 4, 4, 5, 10, 7,
    7, 6, 8, 12, 10, 12, 12, 11, 10, 11, 11, 13, 14, 18, 16, 13, 14, 17, 14, 11, 11, 16, 22, 16,
    17, 19, 20, 21, 21, 21, 12, 15, 23, 24, 22, 20, 24, 18, 20, 21, 20, 255, 219, 0, 67, 1, 3, 4,
    4, 5, 4, 5, 9, 5, 5, 9, 20, 13, 11, 13, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20,
    20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20,
    20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 255, 192, 0, 17, 8, 0, 8, 0, 16, 3,
    1, 34, 0, 2, 17, 1, 3, 17, 1, 255, 196, 0, 31, 0, 0, 1, 5, 1, 1, 1, 1, 1, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 255, 196, 0, 181, 16, 0,
    2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 125, 1, 2, 3, 0, 4, 17, 5, 18, 33,
    49, 65, 6, 19, 81, 97, 7, 34, 113, 20, 50, 129, 145, 161, 8, 35, 66, 177, 193, 21, 82, 209, 240, 36,
    51, 98, 114, 130, 9, 10, 22, 23, 24, 25, 26, 37, 38, 39, 40, 41, 42, 52, 53, 54, 55, 56, 57, 58,
    67, 68, 69, 70, 71, 72, 73, 74, 83, 84, 85, 86, 87, 88, 89, 90, 99, 100, 101, 102, 103, 104, 105, 106,
    115, 116, 117, 118, 119, 120, 121, 122, 131, 132, 133, 134, 135, 136, 137, 138, 146, 147, 148, 149, 150, 151, 152, 153,
    154, 162, 163, 164, 165, 166, 167, 168, 169, 170, 178, 179, 180, 181, 182, 183, 184, 185, 186, 194, 195, 196, 197, 198,
    199, 200, 201, 202, 210, 211, 212, 213, 214, 215, 216, 217, 218, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 241,
    242, 243, 244, 245, 246, 247, 248, 249, 250, 255, 196, 0, 31, 1, 0, 3, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 255, 196, 0, 181, 17, 0,
    2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 119, 0, 1, 2, 3, 17, 4, 5, 33, 49,
    6, 18, 65, 81, 7, 97, 113, 19, 34, 50, 129, 8, 20, 66, 145, 161, 177, 193, 9, 35, 51, 82, 240, 21,
    98, 114, 209, 10, 22, 36, 52, 225, 37, 241, 23, 24, 25, 26, 38, 39, 40, 41, 42, 53, 54, 55, 56, 57,
    58, 67, 68, 69, 70, 71, 72, 73, 74, 83, 84, 85, 86, 87, 88, 89, 90, 99, 100, 101, 102, 103, 104, 105,
    106, 115, 116, 117, 118, 119, 120, 121, 122, 130, 131, 132, 133, 134, 135, 136, 137, 138, 146, 147, 148, 149, 150, 151,
    152, 153, 154, 162, 163, 164, 165, 166, 167, 168, 169, 170, 178, 179, 180, 181, 182, 183, 184, 185, 186, 194, 195, 196,
    197, 198, 199, 200, 201, 202, 210, 211, 212, 213, 214, 215, 216, 217, 218, 226, 227, 228, 229, 230, 231, 232, 233, 234,
    242, 243, 244, 245, 246, 247, 248, 249, 250, 255, 218, 0, 12, 3, 1, 0, 2, 17, 3, 17, 0, 63, 0, 241,
    79, 2, 254, 200, 223, 106, 242, 255, 0, 208, 179, 159, 246, 107, 222, 60, 45, 251, 33, 90, 91, 60, 113, 201,
    100, 210, 75, 198, 82, 56, 242, 71, 215, 183, 255, 0, 174, 138, 43, 243, 111, 237, 58, 180, 114, 104, 99, 92,
    99, 41, 202, 113, 143, 188, 174, 172, 211, 109, 165, 125, 244, 235, 117, 228, 124, 199, 135, 92, 105, 157, 58, 144,
    143, 182, 211, 250, 243, 63, 255, 217,
};
const std::uint8_t cv2_decoded_rgb[] = {
    0, 5, 0, 8, 8, 0, 23, 8, 0, 37, 9, 0, 55, 5, 0, 72, 4, 3, 88, 2, 11, 102, 2, 12,
    117, 4, 8, 130, 4, 7, 147, 6, 14, 159, 2, 9, 184, 11, 13, 192, 6, 7, 205, 10, 8, 212, 10, 8,
    8, 29, 0, 16, 31, 0, 30, 34, 1, 47, 33, 4, 64, 31, 14, 80, 30, 21, 98, 30, 31, 111, 29, 35,
    129, 33, 37, 146, 35, 41, 158, 32, 43, 172, 30, 42, 187, 29, 43, 203, 31, 45, 220, 34, 55, 234, 42, 63,
    7, 62, 4, 15, 64, 8, 29, 66, 14, 47, 66, 20, 64, 65, 31, 82, 64, 40, 98, 64, 52, 112, 63, 59,
    123, 58, 62, 145, 65, 74, 161, 64, 81, 184, 70, 95, 195, 64, 98, 212, 65, 110, 220, 58, 118, 232, 63, 130,
    4, 92, 8, 13, 94, 15, 29, 96, 27, 46, 97, 38, 62, 96, 46, 80, 96, 57, 97, 97, 69, 112, 96, 81,
    128, 96, 97, 144, 96, 110, 157, 91, 118, 177, 93, 127, 196, 94, 134, 219, 98, 149, 230, 96, 157, 242, 101, 167,
    4, 125, 12, 14, 126, 24, 29, 128, 46, 45, 128, 60, 60, 129, 66, 79, 130, 74, 95, 132, 81, 110, 131, 100,
    129, 131, 130, 144, 129, 150, 165, 129, 167, 181, 126, 168, 203, 131, 168, 218, 129, 157, 233, 134, 152, 245, 139, 153,
    3, 155, 8, 13, 159, 26, 28, 160, 51, 43, 160, 71, 59, 160, 80, 76, 161, 93, 94, 163, 108, 110, 161, 128,
    122, 157, 153, 144, 161, 171, 171, 170, 176, 182, 164, 162, 200, 164, 148, 203, 151, 127, 217, 152, 124, 225, 154, 124,
    5, 189, 5, 14, 192, 20, 30, 194, 46, 45, 195, 70, 61, 193, 91, 78, 193, 116, 96, 194, 147, 113, 192, 170,
    133, 198, 192, 147, 198, 179, 158, 199, 133, 167, 193, 96, 183, 189, 79, 196, 185, 80, 216, 184, 107, 230, 191, 126,
    13, 214, 11, 23, 218, 26, 39, 220, 53, 54, 221, 79, 71, 219, 107, 87, 218, 138, 107, 218, 176, 123, 217, 199,
    143, 222, 217, 153, 220, 185, 155, 216, 113, 173, 221, 77, 194, 222, 62, 221, 229, 84, 235, 222, 118, 250, 225, 143,
};

std::vector<std::uint8_t> bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& b) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

struct temp_dir {
  fs::path path;
  temp_dir() {
    static int counter = 0;
    path = fs::temp_directory_path() / ("mscl_rf_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string sub(const std::string& rel) const {
    const fs::path p = path / rel;
    fs::create_directories(p);
    return p.string();
  }
};

image_u8 solid(int h, int w, int c, std::uint8_t v0, std::uint8_t v1 = 0, std::uint8_t v2 = 0) {
  image_u8 im(h, w, c);
  for (std::size_t k = 0; k < std::size_t(h) * std::size_t(w); ++k) {
    im.pixels[k * std::size_t(c)] = v0;
    if (c == 3) {
      im.pixels[k * 3 + 1] = v1;
      im.pixels[k * 3 + 2] = v2;
    }
  }
  return im;
}

// Writes RGB frames numbered first..first+n-1 (frame k has grey level 20k+10) with `prefix`.
void write_rgb(const std::string& dir, const std::string& prefix, int first, int n) {
  frame_template t{prefix, 5, ".jpg"};
  for (int k = 0; k < n; ++k) {
    const auto v = std::uint8_t(20 * k + 10);
    write_jpeg(dir + "/" + t.name(first + k), solid(12, 16, 3, v, v, v), 90);
  }
}

// Writes n flow pairs numbered from `first`: x plane constant 100 + k, y plane constant 200 - k.
void write_flow_xy(const std::string& dir, const std::string& xp, const std::string& yp, int first, int n) {
  for (int k = 0; k < n; ++k) {
    write_jpeg(dir + "/" + frame_template{xp, 5, ".jpg"}.name(first + k), solid(12, 16, 1, std::uint8_t(100 + k)), 90);
    write_jpeg(dir + "/" + frame_template{yp, 5, ".jpg"}.name(first + k), solid(12, 16, 1, std::uint8_t(200 - k)), 90);
  }
}

float deq(int q, float bound = 20.f) { return float(q) * 2.f * bound / 255.f - bound; }

template <class F>
std::string io_error_message(F&& f) {
  try {
    f();
  } catch (const mscl::io_error& e) {
    return e.what();
  }
  return "<no io_error>";
}

}  // namespace

TEST_CASE("jpeg: decoder matches OpenCV on an RGB pattern", "[io][jpeg]") {
  const image_u8 im = mscl::io::decode_jpeg(cv2_jpeg, sizeof(cv2_jpeg), "fixture");
  REQUIRE(im.height == 8);
  REQUIRE(im.width == 16);
  REQUIRE(im.channels == 3);
  int maxdiff = 0;
  for (std::size_t k = 0; k < im.pixels.size(); ++k) maxdiff = std::max(maxdiff, std::abs(int(im.pixels[k]) - int(cv2_decoded_rgb[k])));
  CHECK(maxdiff <= 1);  // same libjpeg-turbo algorithms: expected 0, allow 1 for a different IDCT build
  const mscl::io::jpeg_info info = [] {
    temp_dir t;
    const std::string p = (t.path / "f.jpg").string();
    write_bytes(p, std::vector<std::uint8_t>(cv2_jpeg, cv2_jpeg + sizeof(cv2_jpeg)));
    return mscl::io::read_jpeg_info(p);
  }();
  CHECK(info.height == 8);
  CHECK(info.width == 16);
  CHECK(info.channels == 3);
  // Forced grey: the luma of the RGB decode, within rounding.
  mscl::io::jpeg_decode_options g;
  g.channels = 1;
  const image_u8 grey = mscl::io::decode_jpeg(cv2_jpeg, sizeof(cv2_jpeg), "fixture", g);
  REQUIRE(grey.channels == 1);
  for (std::size_t k = 0; k < grey.pixels.size(); k += 7) {
    const double y = 0.299 * im.pixels[3 * k] + 0.587 * im.pixels[3 * k + 1] + 0.114 * im.pixels[3 * k + 2];
    CHECK(std::abs(double(grey.pixels[k]) - y) < 3.0);
  }
}

TEST_CASE("jpeg: encoder round trip (grey exact on flat images, colour close)", "[io][jpeg]") {
  // A flat grey image has only DC coefficients, which JPEG keeps exactly at any quality >= 50.
  for (int v : {0, 37, 128, 255}) {
    const image_u8 g = solid(9, 13, 1, std::uint8_t(v));
    const auto bytes = mscl::io::encode_jpeg(g, 90);
    const image_u8 d = mscl::io::decode_jpeg(bytes.data(), bytes.size(), "mem");
    REQUIRE(d.channels == 1);
    REQUIRE(d.height == 9);
    REQUIRE(d.width == 13);
    CHECK(std::all_of(d.pixels.begin(), d.pixels.end(), [&](std::uint8_t p) { return p == v; }));
  }
  image_u8 rgb(24, 40, 3);
  for (int y = 0; y < 24; ++y)
    for (int x = 0; x < 40; ++x) {
      rgb.at(y, x, 0) = std::uint8_t(6 * x);
      rgb.at(y, x, 1) = std::uint8_t(10 * y);
      rgb.at(y, x, 2) = std::uint8_t(128);
    }
  const auto bytes = mscl::io::encode_jpeg(rgb, 95);
  CHECK(bytes.size() > 100);
  CHECK(bytes[0] == 0xFF);
  CHECK(bytes[1] == 0xD8);
  const image_u8 d = mscl::io::decode_jpeg(bytes.data(), bytes.size(), "mem");
  REQUIRE(d.channels == 3);
  double err = 0;
  for (std::size_t k = 0; k < d.pixels.size(); ++k) err += std::abs(int(d.pixels[k]) - int(rgb.pixels[k]));
  CHECK(err / double(d.pixels.size()) < 2.0);
  CHECK_THROWS_AS(mscl::io::encode_jpeg(rgb, 0), mscl::value_error);
  CHECK_THROWS_AS(mscl::io::encode_jpeg(image_u8(), 90), mscl::shape_error);
}

TEST_CASE("jpeg: truncated, corrupt and missing files give io_error naming the file", "[io][jpeg]") {
  temp_dir t;
  const std::string good = (t.path / "good.jpg").string();
  image_u8 im(32, 32, 3);
  for (std::size_t k = 0; k < im.pixels.size(); ++k) im.pixels[k] = std::uint8_t((k * 37) ^ (k >> 3));
  write_jpeg(good, im, 90);
  const std::vector<std::uint8_t> b = bytes_of(good);
  REQUIRE(b.size() > 400);

  const std::string trunc = (t.path / "trunc.jpg").string();
  write_bytes(trunc, std::vector<std::uint8_t>(b.begin(), b.begin() + std::ptrdiff_t(b.size() * 3 / 4)));
  std::string msg = io_error_message([&] { read_jpeg(trunc); });
  CHECK(msg.find(trunc) != std::string::npos);
  CHECK(msg.find("Premature end") != std::string::npos);
  // Lenient mode returns libjpeg's padded image instead.
  mscl::io::jpeg_decode_options lenient;
  lenient.strict = false;
  CHECK(read_jpeg(trunc, lenient).height == 32);

  const std::string header_only = (t.path / "header.jpg").string();
  write_bytes(header_only, std::vector<std::uint8_t>(b.begin(), b.begin() + 100));
  msg = io_error_message([&] { read_jpeg(header_only); });
  CHECK(msg.find(header_only) != std::string::npos);

  const std::string garbage = (t.path / "garbage.jpg").string();
  write_bytes(garbage, std::vector<std::uint8_t>{'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'});
  msg = io_error_message([&] { read_jpeg(garbage); });
  CHECK(msg.find(garbage) != std::string::npos);
  CHECK(msg.find("not a JPEG") != std::string::npos);

  // SOI then a bogus marker segment.
  const std::string bogus = (t.path / "bogus.jpg").string();
  write_bytes(bogus, std::vector<std::uint8_t>{0xFF, 0xD8, 0xFF, 0x01, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xD9});
  msg = io_error_message([&] { read_jpeg(bogus); });
  CHECK(msg.find(bogus) != std::string::npos);
  msg = io_error_message([&] { mscl::io::read_jpeg_info(bogus); });
  CHECK(msg.find(bogus) != std::string::npos);

  const std::string missing = (t.path / "missing.jpg").string();
  msg = io_error_message([&] { read_jpeg(missing); });
  CHECK(msg.find(missing) != std::string::npos);
  CHECK(msg.find("cannot open") != std::string::npos);
  const std::string empty = (t.path / "empty.jpg").string();
  write_bytes(empty, {});
  CHECK(io_error_message([&] { read_jpeg(empty); }).find(empty) != std::string::npos);
}

TEST_CASE("frame_template: names, matching, parsing", "[data][rawframes]") {
  const frame_template t = frame_template::parse("img_{:05d}.jpg");
  CHECK(t.prefix == "img_");
  CHECK(t.digits == 5);
  CHECK(t.suffix == ".jpg");
  CHECK(t.name(7) == "img_00007.jpg");
  CHECK(t.name(123456) == "img_123456.jpg");
  std::int64_t n = -1;
  CHECK(t.match("img_00042.jpg", &n));
  CHECK(n == 42);
  CHECK(t.match("img_123456.jpg", &n));
  CHECK(n == 123456);
  CHECK_FALSE(t.match("img_0042.jpg"));
  CHECK_FALSE(t.match("img_012345.jpg"));
  CHECK_FALSE(t.match("img_00042.png"));
  CHECK_FALSE(t.match("flow_x_00042.jpg"));
  CHECK(frame_template::parse("img_{:05}.jpg") == t);
  const frame_template c = frame_template::parse("image_%05d.jpg");
  CHECK(c.name(1) == "image_00001.jpg");
  const auto xy = frame_template::parse_flow("flow_{}_{:05d}.jpg");
  CHECK(xy.first.name(0) == "flow_x_00000.jpg");
  CHECK(xy.second.name(3) == "flow_y_00003.jpg");
  CHECK(frame_template::parse_flow("{}_{:05d}.jpg").first.name(1) == "x_00001.jpg");
  const frame_template packed{"flow_", 5, ".jpg"};
  CHECK_FALSE(packed.match("flow_x_00001.jpg"));
  CHECK_FALSE(frame_template{"flow_x_", 5, ".jpg"}.match("flow_x_p2_00000.jpg"));
  CHECK_THROWS_AS(frame_template::parse("img.jpg"), mscl::value_error);
}

TEST_CASE("rawframes: 1-based RGB with 0-based flow_x_/flow_y_ (denseflow)", "[data][rawframes]") {
  temp_dir t;
  const std::string d = t.sub("Class/v_a");
  write_rgb(d, "img_", 1, 5);
  write_flow_xy(d, "flow_x_", "flow_y_", 0, 4);
  const rawframes_dir r = rawframes_dir::probe(d);
  CHECK(r.rgb_template.prefix == "img_");
  CHECK(r.rgb_start == 1);
  CHECK(r.rgb_count == 5);
  CHECK(r.flow == flow_layout::two_grey);
  CHECK(r.flow_x_template.prefix == "flow_x_");
  CHECK(r.flow_y_template.prefix == "flow_y_");
  CHECK(r.flow_start == 0);
  CHECK(r.flow_count == 4);
  CHECK(r.rgb_path(0) == d + "/img_00001.jpg");
  CHECK(r.rgb_path(4) == d + "/img_00005.jpg");
  CHECK(r.flow_x_path(0) == d + "/flow_x_00000.jpg");
  CHECK(r.flow_y_path(3) == d + "/flow_y_00003.jpg");
  for (int i = 0; i < 5; ++i) {
    const image_u8 im = r.read_rgb(i);
    REQUIRE(im.channels == 3);
    REQUIRE(im.height == 12);
    REQUIRE(im.width == 16);
    CHECK(std::abs(int(im.at(5, 7, 1)) - (20 * i + 10)) <= 1);
  }
  for (int i = 0; i < 4; ++i) {
    const flow_field f = r.read_flow(i);
    REQUIRE(f.height == 12);
    REQUIRE(f.width == 16);
    CHECK(f.u[17] == Approx(deq(100 + i)).margin(1e-5));
    CHECK(f.v[17] == Approx(deq(200 - i)).margin(1e-5));
    const flow_field f5 = r.read_flow(i, 5.f);  // the bound scales the dequantisation
    CHECK(f5.u[3] == Approx(deq(100 + i, 5.f)).margin(1e-5));
  }
  CHECK_THROWS_AS(r.read_rgb(5), mscl::value_error);
  CHECK_THROWS_AS(r.read_flow(4), mscl::value_error);
  // Overriding the start index: RGB from 0 finds no file 0, so no contiguous frames.
  rawframes_options o;
  o.rgb_start = 0;
  o.flow_start = 1;
  const rawframes_dir r0 = rawframes_dir::probe(d, o);
  CHECK(r0.rgb_start == 0);
  CHECK(r0.rgb_count == 0);
  CHECK(r0.flow_start == 1);
  CHECK(r0.flow_count == 3);
  CHECK(r0.flow_x_path(0) == d + "/flow_x_00001.jpg");
}

TEST_CASE("rawframes: 0-based RGB with 1-based x_/y_ (mmaction Python extractor)", "[data][rawframes]") {
  temp_dir t;
  const std::string d = t.sub("v_b");
  write_rgb(d, "img_", 0, 4);
  write_flow_xy(d, "x_", "y_", 1, 4);
  const rawframes_dir r = rawframes_dir::probe(d);
  CHECK(r.rgb_start == 0);
  CHECK(r.rgb_count == 4);
  CHECK(r.flow == flow_layout::two_grey);
  CHECK(r.flow_x_template.prefix == "x_");
  CHECK(r.flow_y_template.prefix == "y_");
  CHECK(r.flow_start == 1);
  CHECK(r.flow_count == 4);
  CHECK(r.rgb_path(0) == d + "/img_00000.jpg");
  CHECK(r.flow_y_path(0) == d + "/y_00001.jpg");
  CHECK(std::abs(int(r.read_rgb(3).at(0, 0, 0)) - 70) <= 1);
  CHECK(r.read_flow(2).v[0] == Approx(deq(198)).margin(1e-5));
  // Explicit templates from mmaction's config strings.
  rawframes_options o;
  o.flow_xy = frame_template::parse_flow("{}_{:05d}.jpg");
  o.rgb = frame_template::parse("img_{:05}.jpg");
  const rawframes_dir r2 = rawframes_dir::probe(d, o);
  CHECK(r2.flow_count == 4);
  CHECK(r2.rgb_count == 4);
}

TEST_CASE("rawframes: CoCLR image_ frames with packed 3-channel flow_", "[data][rawframes]") {
  temp_dir t;
  const std::string d = t.sub("v_c");
  write_rgb(d, "image_", 1, 3);
  // CoCLR wrote (u, v, 128) through OpenCV, i.e. B = u, G = v, R = 128; our images are RGB.
  for (int k = 1; k <= 2; ++k)
    write_jpeg(d + "/" + frame_template{"flow_", 5, ".jpg"}.name(k), solid(8, 8, 3, 128, std::uint8_t(60 + k), std::uint8_t(180 + k)), 100);
  const rawframes_dir r = rawframes_dir::probe(d);
  CHECK(r.rgb_template.prefix == "image_");
  CHECK(r.rgb_start == 1);
  CHECK(r.rgb_count == 3);
  CHECK(r.flow == flow_layout::packed_rgb);
  CHECK(r.flow_start == 1);
  CHECK(r.flow_count == 2);
  const flow_field f = r.read_flow(1);
  // Colour JPEG goes through YCbCr, so allow one code of error (0.16 px at B = 20).
  CHECK(std::abs(f.u[5] - deq(182)) <= deq(1) - deq(0) + 1e-4f);
  CHECK(std::abs(f.v[5] - deq(62)) <= deq(1) - deq(0) + 1e-4f);
  rawframes_options no_packed;
  no_packed.allow_packed_flow = false;
  CHECK(rawframes_dir::probe(d, no_packed).flow == flow_layout::none);
  // Counter callback for list writing.
  const frame_count_fn rgb_n = rawframes_counter(t.path.string());
  const frame_count_fn flow_n = rawframes_counter(t.path.string(), frame_kind::flow);
  CHECK(rgb_n("v_c") == 3);
  CHECK(flow_n("v_c") == 2);
  CHECK(rgb_n("nope") == -1);
  CHECK_THROWS_AS(rawframes_dir::probe((t.path / "nope").string()), mscl::io_error);
}

TEST_CASE("rawframes: a corrupt frame gives io_error naming the file", "[data][rawframes]") {
  temp_dir t;
  const std::string d = t.sub("v_d");
  write_rgb(d, "img_", 1, 3);
  const std::string p = d + "/img_00002.jpg";
  std::vector<std::uint8_t> b = bytes_of(p);
  b.resize(b.size() / 2);
  write_bytes(p, b);
  const rawframes_dir r = rawframes_dir::probe(d);
  REQUIRE(r.rgb_count == 3);
  CHECK_NOTHROW(r.read_rgb(0));
  const std::string msg = io_error_message([&] { r.read_rgb(1); });
  CHECK(msg.find(p) != std::string::npos);
}

TEST_CASE("verify: finds missing dirs and frames, count and flow mismatches, bad files and labels", "[data][verify]") {
  temp_dir t;
  const std::string root = t.path.string();
  // good: 6 RGB 1-based, 5 flow pairs 0-based (N-1).
  write_rgb(t.sub("A/good"), "img_", 1, 6);
  write_flow_xy(t.sub("A/good"), "flow_x_", "flow_y_", 0, 5);
  // hole: frame 3 of 6 deleted.
  write_rgb(t.sub("A/hole"), "img_", 1, 6);
  fs::remove(t.path / "A/hole/img_00003.jpg");
  // short: list says 8, disk has 6.
  write_rgb(t.sub("B/short"), "img_", 1, 6);
  // flow: y has one file fewer than x, and 3 flow steps for 6 frames.
  write_rgb(t.sub("B/flow"), "img_", 1, 6);
  write_flow_xy(t.sub("B/flow"), "x_", "y_", 1, 3);
  fs::remove(t.path / "B/flow/y_00003.jpg");
  // truncated: one frame cut in half.
  write_rgb(t.sub("B/trunc"), "img_", 1, 4);
  {
    const std::string p = (t.path / "B/trunc/img_00004.jpg").string();
    std::vector<std::uint8_t> b = bytes_of(p);
    b.resize(b.size() - 40);
    write_bytes(p, b);
  }
  std::istringstream list(
      "A/good 6 0\n"
      "A/hole 6 1\n"
      "B/short 8 1\n"
      "B/flow 6 2\n"
      "B/trunc 4 0\n"
      "B/missing 10 0\n"
      "A/good 6 7\n");
  const auto entries = parse_rawframe_list(list, "list.txt");

  verify_options opt;
  opt.num_classes = 3;
  const verify_report rep = verify_rawframes(root, entries, opt);
  std::ostringstream os;
  rep.print(os);
  const std::string text = os.str();
  INFO(text);
  CHECK_FALSE(rep.ok());
  CHECK(rep.entries == 7);
  CHECK(rep.bad_entries == 6);
  CHECK(rep.count(problem_kind::missing_dir) == 1);
  CHECK(rep.count(problem_kind::missing_frame) == 1);
  CHECK(rep.count(problem_kind::count_mismatch) == 1);
  CHECK(rep.count(problem_kind::bad_label) == 1);
  CHECK(rep.count(problem_kind::unreadable) == 1);
  CHECK(rep.count(problem_kind::flow_mismatch) == 2);  // x/y differ, and 3 steps for 6 frames
  CHECK(text.find("img_00003.jpg") != std::string::npos);
  CHECK(text.find("list says 8 RGB frames, directory has 6") != std::string::npos);
  CHECK(text.find("label 7 is outside [0, 3)") != std::string::npos);
  CHECK(text.find("B/trunc/img_00004.jpg") != std::string::npos);
  CHECK(text.find("B/missing") != std::string::npos);
  CHECK(text.find("line 7") != std::string::npos);
  CHECK(text.find("FAILED") != std::string::npos);
  CHECK(rep.files_checked == 6 + 10 + 5 + 6 + 6 + 5 + 4 + 6 + 10);
  CHECK(rep.with_flow == 3);

  // Decoding catches what the marker check cannot: a frame whose body was overwritten.
  {
    const std::string p = (t.path / "A/good/img_00005.jpg").string();
    std::vector<std::uint8_t> b = bytes_of(p);
    std::vector<std::uint8_t> c(b.begin(), b.begin() + 20);  // SOI + part of APP0, then EOI
    c.push_back(0xFF);
    c.push_back(0xD9);
    write_bytes(p, c);
  }
  std::istringstream good_only("A/good 6 0\n");
  const auto g = parse_rawframe_list(good_only, "g.txt");
  verify_options dec;
  dec.decode_every = 2;  // frames 0, 2, 4 → img_00001, _3, _5 and flow 0, 2, 4
  const verify_report r2 = verify_rawframes(root, g, dec);
  CHECK(r2.count(problem_kind::unreadable) == 1);
  CHECK(r2.files_decoded == 3 + 3 + 3);
  REQUIRE_FALSE(r2.examples.empty());
  CHECK(r2.examples[0].detail.find("img_00005.jpg") != std::string::npos);

  // A clean list passes; flow lists compare against flow steps.
  std::istringstream clean("B/short 6 1\nA/good 5 0\n");
  const auto cl = parse_rawframe_list(clean, "c.txt");
  verify_options fast;
  fast.check_files = false;
  const verify_report r3 = verify_rawframes(root, {cl[0]}, fast);
  CHECK(r3.ok());
  fast.counts_are_flow = true;
  CHECK(verify_rawframes(root, {cl[1]}, fast).ok());
  CHECK(verify_rawframes(root, {cl[0]}, fast).count(problem_kind::flow_mismatch) == 1);  // no flow at all
  // with_offset entries: the segment must fit.
  std::istringstream off("B/short 2 4 1\nB/short 3 4 1\nB/short 0 5 1\n");
  list_options wo;
  wo.with_offset = true;
  const auto oe = parse_rawframe_list(off, "o.txt", wo);
  verify_options vo;
  vo.with_offset = true;
  const verify_report r4 = verify_rawframes(root, oe, vo);
  CHECK(r4.count(problem_kind::count_mismatch) == 1);
  CHECK(r4.examples.at(0).line == 2);
  // The same entries read as whole videos: offset 0 with 5 of 6 frames is a mismatch then.
  CHECK(verify_rawframes(root, oe, verify_options{}).count(problem_kind::count_mismatch) == 2);
}

#else  // MSCL_WITH_JPEG

TEST_CASE("rawframes tests need JPEG support", "[data][rawframes]") { WARN("built without MSCL_WITH_JPEG; skipped"); }

#endif
