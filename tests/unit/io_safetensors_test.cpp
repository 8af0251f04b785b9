// Tests for include/mscl/io/{safetensors,atomic_file,key_map}.hpp.
//
// Oracles: byte vectors from the reference implementation's own tests, hand-built byte buffers for
// every malformed-file rule, and files from scripts/make_io_fixtures.py (a standard-library-only
// Python writer/checker that shares no code with mscl).
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "mscl/io/atomic_file.hpp"
#include "mscl/io/key_map.hpp"
#include "mscl/io/safetensors.hpp"
#include "mscl/io/state_dict.hpp"
#include "mscl/models/video_resnet.hpp"

namespace fs = std::filesystem;
using mscl::io::key_map;
using mscl::io::safetensors_dtype;
using mscl::io::safetensors_file;
using mscl::io::safetensors_writer;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::path(MSCL_BINARY_DIR) / "io_test_tmp" / ("safetensors_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in.good());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void spit(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

std::string u64le(std::uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[std::size_t(i)] = char((n >> (8 * i)) & 0xff);
  return s;
}

/// A file image: length field (the true header length unless overridden), header, data.
std::string st_bytes(const std::string& header, const std::string& data, long long n_override = -1) {
  return u64le(n_override >= 0 ? std::uint64_t(n_override) : header.size()) + header + data;
}

/// Runs the fixture script; returns its exit status, or -1 when python3 cannot be started.
int run_fixture_script(const std::string& args) {
  const std::string py = fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  const std::string cmd = py + " '" + std::string(MSCL_SOURCE_DIR) + "/scripts/make_io_fixtures.py' " + args;
  const int rc = std::system(cmd.c_str());
  if (rc == -1 || !WIFEXITED(rc)) return -1;
  const int code = WEXITSTATUS(rc);
  return code == 127 ? -1 : code;
}

/// Message of the io_error thrown when validating `bytes` (fails the test when nothing is thrown).
std::string validation_error(const std::string& bytes) {
  try {
    safetensors_file::from_bytes(bytes, "bad.safetensors");
  } catch (const mscl::io_error& e) {
    return e.what();
  }
  FAIL("expected mscl::io_error for a malformed file");
  return {};
}

#define CHECK_REJECTED(bytes, ...)                                               \
  do {                                                                           \
    const std::string msg_ = validation_error(bytes);                            \
    INFO("message: " << msg_);                                                   \
    CHECK(msg_.find("bad.safetensors") != std::string::npos);                    \
    for (const char* part_ : {__VA_ARGS__}) CHECK(msg_.find(part_) != std::string::npos); \
  } while (0)

const std::string kF32_0to5 = std::string(
    "\x00\x00\x00\x00\x00\x00\x80\x3f\x00\x00\x00\x40\x00\x00\x40\x40\x00\x00\x80\x40\x00\x00\xa0\x40", 24);

std::vector<float> f4_values(int n) {  // same formula as make_io_fixtures.py
  std::vector<float> v;
  for (int i = 0; i < n; ++i) v.push_back(float(double(i) / 10.0 - 1.0));  // no a*b+c: FMA-proof
  return v;
}
std::vector<double> f8_values(int n) {
  std::vector<double> v;
  for (int i = 0; i < n; ++i) v.push_back(double(i) / 3.0 - 2.5);
  return v;
}
std::vector<std::int64_t> i8_values(int n) {
  std::vector<std::int64_t> v;
  for (int i = 0; i < n; ++i) v.push_back(std::int64_t(i) * 1000003 - (std::int64_t(1) << 40));
  return v;
}

}  // namespace

// ================================================================================ reference vectors

TEST_CASE("safetensors writer reproduces the reference implementation's test vectors", "[io][safetensors]") {
  SECTION("one F32 tensor, header padded with 7 spaces to 72 bytes") {
    const std::string header =
        "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       ";
    REQUIRE(header.size() == 72);
    const std::string expected = st_bytes(header, kF32_0to5);
    safetensors_writer w;
    w.add("attn0", mscl::tensor<float>::from_vector({1, 1, 2, 3}, {0, 1, 2, 3, 4, 5}));
    CHECK(w.serialize() == expected);

    auto f = safetensors_file::from_bytes(expected);
    CHECK(f.names() == std::vector<std::string>{"attn0"});
    CHECK(f.info("attn0").dtype == safetensors_dtype::F32);
    CHECK(f.info("attn0").shape == mscl::shape_t{1, 1, 2, 3});
    CHECK(f.info("attn0").byte_size() == 24);
    CHECK(f.get<float>("attn0").to_vector() == std::vector<float>{0, 1, 2, 3, 4, 5});
  }
  SECTION("no tensors, with and without metadata") {
    CHECK(safetensors_writer().serialize() == st_bytes("{}      ", ""));
    const std::string with_meta = st_bytes("{\"__metadata__\":{\"framework\":\"pt\"}}     ", "");
    REQUIRE(with_meta.size() == 48);
    CHECK(safetensors_writer().set_metadata("framework", "pt").serialize() == with_meta);
    auto f = safetensors_file::from_bytes(with_meta);
    CHECK(f.size() == 0);
    CHECK(f.metadata() == std::map<std::string, std::string>{{"framework", "pt"}});
  }
}

// ================================================================================ round trip

TEST_CASE("safetensors round trip is byte exact and value exact", "[io][safetensors]") {
  const fs::path dir = fresh_dir("roundtrip");
  const std::string path = (dir / "model.safetensors").string();

  auto w32 = mscl::tensor<float>::from_vector({2, 3}, f4_values(6));
  auto w64 = mscl::tensor<double>::from_vector({4}, f8_values(4));
  // A transposed (non-contiguous) view must be stored in row-major order of its own shape.
  auto base = mscl::tensor<float>::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
  auto transposed = base.view_as_strided({3, 2}, {1, 3}, 0);
  REQUIRE_FALSE(transposed.is_contiguous());

  safetensors_writer w;
  w.add("stem.0.weight", w32)
      .add("stem.1.running_var", w64)
      .add("t", transposed)
      .add("scalar", mscl::tensor<float>::scalar(2.5f))
      .add("empty", mscl::tensor<float>::zeros({0, 4}))
      .add_int64("stem.1.num_batches_tracked", {12345}, {})
      .add_int64("ids", i8_values(6), {2, 3})
      .set_metadata("format", "pt")
      .set_metadata("arch", "r3d_18");
  // Decreasing dtype rank (I64 > F64 > F32), then name.
  CHECK(w.file_order() == std::vector<std::string>{"ids", "stem.1.num_batches_tracked", "stem.1.running_var",
                                                   "empty", "scalar", "stem.0.weight", "t"});
  w.write(path);
  const std::string bytes = slurp(path);
  CHECK(bytes == w.serialize());
  std::uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n % 8 == 0);
  // Data section starts 8-byte aligned, so every F64/I64 tensor is naturally aligned too.
  CHECK((8 + n) % 8 == 0);

  auto f = safetensors_file::open(path);
  CHECK(f.path() == path);
  CHECK(f.names() == std::vector<std::string>{"empty", "ids", "scalar", "stem.0.weight", "stem.1.num_batches_tracked",
                                              "stem.1.running_var", "t"});
  CHECK(f.contains("t"));
  CHECK_FALSE(f.contains("missing"));
  CHECK(f.metadata() == std::map<std::string, std::string>{{"arch", "r3d_18"}, {"format", "pt"}});
  CHECK(f.get<float>("stem.0.weight").to_vector() == f4_values(6));
  CHECK(f.get<double>("stem.1.running_var").to_vector() == f8_values(4));
  CHECK(f.info("stem.1.running_var").dtype == safetensors_dtype::F64);
  CHECK(f.get<float>("t").to_vector() == std::vector<float>{1, 4, 2, 5, 3, 6});
  CHECK(f.get<float>("t").shape() == mscl::shape_t{3, 2});
  CHECK(f.get<float>("scalar").shape().empty());
  CHECK(f.get<float>("scalar").item() == 2.5f);
  CHECK(f.get<float>("empty").shape() == mscl::shape_t{0, 4});
  CHECK(f.get_int64("stem.1.num_batches_tracked") == std::vector<std::int64_t>{12345});
  CHECK(f.info("stem.1.num_batches_tracked").shape.empty());
  CHECK(f.get_int64("ids") == i8_values(6));

  // Rebuild from what was read: identical bytes.
  safetensors_writer again;
  for (const auto& name : f.names()) {
    const auto& info = f.info(name);
    if (info.dtype == safetensors_dtype::F32) again.add(name, f.get<float>(name));
    if (info.dtype == safetensors_dtype::F64) again.add(name, f.get<double>(name));
    if (info.dtype == safetensors_dtype::I64) again.add_int64(name, f.get_int64(name), info.shape);
  }
  for (const auto& [k, v] : f.metadata()) again.set_metadata(k, v);
  CHECK(again.serialize() == bytes);
  // The writer snapshots: changing a tensor after add() does not change the file.
  w32.data()[0] = 99.f;
  CHECK(w.serialize() == bytes);
}

TEST_CASE("safetensors accessors: conversions, expected shapes, errors", "[io][safetensors]") {
  safetensors_writer w;
  w.add("w", mscl::tensor<float>::from_vector({2, 2}, {0.5f, -1.f, 3.f, 1e-8f}));
  w.add("d", mscl::tensor<double>::from_vector({2}, {0.1, 1e300}));
  w.add_int64("n", {-3, 1ll << 40}, {2});
  const auto f = safetensors_file::from_bytes(w.serialize(), "acc.safetensors");

  CHECK(f.get<double>("w").to_vector() == std::vector<double>{0.5, -1.0, 3.0, double(1e-8f)});
  CHECK(f.get<float>("d").to_vector()[0] == 0.1f);
  CHECK(f.get<double>("n").to_vector() == std::vector<double>{-3.0, double(1ll << 40)});
  CHECK(f.get<float>("w", {2, 2}).numel() == 4);
  CHECK(f.raw("w").size() == 16);

  try {
    f.get<float>("w", {4});
    FAIL("expected shape_error");
  } catch (const mscl::shape_error& e) {
    const std::string m = e.what();
    CHECK(m.find("'w'") != std::string::npos);
    CHECK(m.find("[4]") != std::string::npos);
    CHECK(m.find("[2, 2]") != std::string::npos);
  }
  CHECK_THROWS_AS(f.get_int64("w"), mscl::shape_error);
  try {
    f.get<float>("nope");
    FAIL("expected io_error");
  } catch (const mscl::io_error& e) {
    CHECK(std::string(e.what()).find("nope") != std::string::npos);
    CHECK(std::string(e.what()).find("acc.safetensors") != std::string::npos);
  }
  CHECK_THROWS_AS(safetensors_file::open("/nonexistent/dir/x.safetensors"), mscl::io_error);
}

TEST_CASE("safetensors writer rejects bad input", "[io][safetensors]") {
  safetensors_writer w;
  w.add("a", mscl::tensor<float>::zeros({1}));
  CHECK_THROWS_AS(w.add("a", mscl::tensor<float>::zeros({1})), mscl::value_error);
  CHECK_THROWS_AS(w.add("__metadata__", mscl::tensor<float>::zeros({1})), mscl::value_error);
  CHECK_THROWS_AS(w.add("", mscl::tensor<float>::zeros({1})), mscl::value_error);
  CHECK_THROWS_AS(w.add(std::string("bad\xff"), mscl::tensor<float>::zeros({1})), mscl::value_error);
  CHECK_THROWS_AS(w.add_int64("i", {1, 2, 3}, {2}), mscl::shape_error);
  CHECK_THROWS_AS(w.add_raw("r", safetensors_dtype::F16, {3}, std::string(4, '\0')), mscl::shape_error);
  CHECK_THROWS_AS(w.set_metadata("k", std::string("\xc3")), mscl::value_error);
  CHECK_THROWS_AS(w.write("/nonexistent/dir/x.safetensors"), mscl::io_error);
  // Raw entries of other dtypes keep the ordering rule: U8 sorts after F32.
  w.add_raw("u", safetensors_dtype::U8, {2}, std::string("\x01\x02", 2));
  w.add_raw("h", safetensors_dtype::F16, {1}, std::string("\x00\x3c", 2));  // 1.0
  CHECK(w.file_order() == std::vector<std::string>{"a", "h", "u"});
  const auto f = safetensors_file::from_bytes(w.serialize());
  CHECK(f.get<float>("h").item() == 1.0f);
  CHECK(f.get_int64("u") == std::vector<std::int64_t>{1, 2});
}

// ================================================================================ cross-check

TEST_CASE("safetensors cross-check with an independent Python writer and checker", "[io][safetensors][python]") {
  const fs::path dir = fresh_dir("python");
  const int rc = run_fixture_script("safetensors '" + dir.string() + "'");
  if (rc == -1 || rc == 77) {
    WARN("skipped: python3 could not run scripts/make_io_fixtures.py (status " << rc << ")");
    return;
  }
  REQUIRE(rc == 0);

  // 1. Read the Python-written file and compare against the formulas computed here.
  const std::string ref_path = (dir / "ref.safetensors").string();
  const auto f = safetensors_file::open(ref_path);
  CHECK(f.names() == std::vector<std::string>{"a\"quote\\back", "fc.bias", "fc.empty", "layer1.0.idx",
                                              "stem.0.weight", "stem.1.num_batches_tracked", "stem.1.running_var"});
  CHECK(f.metadata() ==
        std::map<std::string, std::string>{{"arch", "r3d_18"}, {"format", "pt"}, {"layout", "NCTHW"}});
  CHECK(f.get<float>("stem.0.weight", {2, 3}).to_vector() == f4_values(6));
  CHECK(f.get<double>("stem.1.running_var", {4}).to_vector() == f8_values(4));
  CHECK(f.get_int64("stem.1.num_batches_tracked") == std::vector<std::int64_t>{7});
  CHECK(f.get_int64("layer1.0.idx") == i8_values(3));
  CHECK(f.get<float>("fc.bias", {}).item() == -0.1f);
  CHECK(f.get<float>("fc.empty", {0, 2}).numel() == 0);
  CHECK(f.get<double>("a\"quote\\back").item() == 1.0);

  // 2. The same tensors written by mscl are byte-identical to the independent writer's file.
  safetensors_writer w;
  w.add("stem.0.weight", mscl::tensor<float>::from_vector({2, 3}, f4_values(6)))
      .add("stem.1.running_var", mscl::tensor<double>::from_vector({4}, f8_values(4)))
      .add_int64("stem.1.num_batches_tracked", {7}, {})
      .add_int64("layer1.0.idx", i8_values(3), {3})
      .add("fc.bias", mscl::tensor<float>::scalar(-0.1f))
      .add("fc.empty", mscl::tensor<float>::zeros({0, 2}))
      .add("a\"quote\\back", mscl::tensor<double>::from_vector({1}, {1.0}))
      .set_metadata("layout", "NCTHW")
      .set_metadata("format", "pt")
      .set_metadata("arch", "r3d_18");
  CHECK(w.serialize() == slurp(ref_path));

  // 3. Vice versa: the Python checker accepts mscl's file.
  const std::string mine = (dir / "mscl.safetensors").string();
  w.write(mine);
  CHECK(run_fixture_script("check-safetensors '" + mine + "'") == 0);

  // 4. Every decodable dtype, values written by Python's struct module.
  const auto mixed = safetensors_file::open((dir / "ref_mixed.safetensors").string());
  std::ifstream ej(dir / "expected.json");
  const auto expected = nlohmann::json::parse(ej);
  CHECK(mixed.size() == expected.size());
  CHECK(mixed.metadata().at("source") == "mixed");
  for (auto it = expected.begin(); it != expected.end(); ++it) {
    const std::string name = it.key();
    INFO("tensor " << name);
    REQUIRE(mixed.contains(name));
    const auto& info = mixed.info(name);
    CHECK(std::string(mscl::io::to_string(info.dtype)) == it.value()["dtype"].get<std::string>());
    CHECK(info.shape == it.value()["shape"].get<mscl::shape_t>());
    const auto got = mixed.get<double>(name).to_vector();
    std::vector<double> want;
    for (const auto& v : it.value()["values"]) want.push_back(v.get<double>());
    CHECK(got == want);
    const std::string dt = it.value()["dtype"].get<std::string>();
    if (dt[0] == 'I' || dt[0] == 'U' || dt == "BOOL") {
      std::vector<std::int64_t> want_i;
      for (const auto& v : it.value()["values"]) want_i.push_back(v.get<std::int64_t>());
      CHECK(mixed.get_int64(name) == want_i);
    }
  }
}

// ================================================================================ malformed files

TEST_CASE("safetensors reader rejects each malformed-file rule with the file and tensor named",
          "[io][safetensors]") {
  const std::string f32x2 = std::string(8, '\0');  // 2 x F32 zeros
  auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape, std::uint64_t b,
                  std::uint64_t e) {
    return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
           std::to_string(b) + "," + std::to_string(e) + "]}";
  };
  const std::string ok_entry = entry("ok", "F32", "[2]", 0, 8);

  SECTION("a valid baseline is accepted (so each rejection below is due to its one change)") {
    const auto f = safetensors_file::from_bytes(st_bytes("{" + ok_entry + "}", f32x2), "bad.safetensors");
    CHECK(f.names() == std::vector<std::string>{"ok"});
  }
  SECTION("file shorter than 8 bytes") { CHECK_REJECTED(std::string("\x02\0\0\0\0", 5), "5 bytes", "8-byte"); }
  SECTION("header length above 100 MB") {
    CHECK_REJECTED(st_bytes("{}", "", 100'000'001), "100000001", "100 MB");
  }
  SECTION("header length beyond the file size") {
    CHECK_REJECTED(st_bytes("{" + ok_entry + "}", f32x2, 1000), "1000", "past the end");
  }
  SECTION("header not starting with '{'") {
    CHECK_REJECTED(st_bytes(" {" + ok_entry + "}", f32x2), "start with '{'");
    CHECK_REJECTED(st_bytes("[1]", ""), "start with '{'");
    CHECK_REJECTED(st_bytes("", ""), "start with '{'");
  }
  SECTION("header not valid JSON") {
    CHECK_REJECTED(st_bytes("{\"ok\":{\"dtype\":", f32x2), "not valid JSON");
    CHECK_REJECTED(st_bytes("{" + ok_entry + std::string("}\0\0\0", 4), f32x2), "not valid JSON");  // NUL pad
    CHECK_REJECTED(st_bytes("{" + ok_entry + "} x", f32x2), "not valid JSON");      // trailing text
    CHECK_REJECTED(st_bytes("{\"o\xff\":{}}", ""), "not valid JSON");               // invalid UTF-8
  }
  SECTION("entry not an object") { CHECK_REJECTED(st_bytes("{\"w\":[1,2]}", ""), "'w'", "object"); }
  SECTION("entry missing dtype / shape / data_offsets") {
    CHECK_REJECTED(st_bytes("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", f32x2), "'w'", "dtype");
    CHECK_REJECTED(st_bytes("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", f32x2), "'w'", "shape");
    CHECK_REJECTED(st_bytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", f32x2), "'w'", "data_offsets");
  }
  SECTION("unknown dtype") {
    CHECK_REJECTED(st_bytes("{" + entry("w", "F31", "[2]", 0, 8) + "}", f32x2), "'w'", "unknown dtype", "F31");
    CHECK_REJECTED(st_bytes("{" + entry("w", "f32", "[2]", 0, 8) + "}", f32x2), "'w'", "unknown dtype");
  }
  SECTION("negative or non-integer shape") {
    CHECK_REJECTED(st_bytes("{" + entry("w", "F32", "[-2]", 0, 8) + "}", f32x2), "'w'", "non-negative integers");
    CHECK_REJECTED(st_bytes("{" + entry("w", "F32", "[2.0]", 0, 8) + "}", f32x2), "'w'", "non-negative integers");
    CHECK_REJECTED(st_bytes("{" + entry("w", "F32", "[\"2\"]", 0, 8) + "}", f32x2), "'w'", "non-negative integers");
    CHECK_REJECTED(st_bytes("{" + entry("w", "F32", "2", 0, 8) + "}", f32x2), "'w'", "shape must be an array");
  }
  SECTION("malformed data_offsets") {
    CHECK_REJECTED(st_bytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", f32x2), "'w'",
                   "two non-negative integers");
    CHECK_REJECTED(st_bytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", f32x2), "'w'",
                   "two non-negative integers");
  }
  SECTION("begin > end") {
    CHECK_REJECTED(st_bytes("{" + entry("w", "F32", "[0]", 8, 0) + "}", f32x2), "'w'", "begin 8 > end 0");
  }
  SECTION("end beyond the data section") {
    CHECK_REJECTED(st_bytes("{" + entry("w", "F32", "[4]", 0, 16) + "}", f32x2), "'w'", "beyond the data section");
  }
  SECTION("byte count != numel x dtype size") {
    CHECK_REJECTED(st_bytes("{" + entry("w", "F32", "[3]", 0, 8) + "}", f32x2), "'w'", "needs 12");
    CHECK_REJECTED(st_bytes("{" + entry("w", "F64", "[2]", 0, 8) + "}", f32x2), "'w'", "needs 16");
  }
  SECTION("overlapping ranges") {
    const std::string h = "{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[2]", 4, 12) + "}";
    CHECK_REJECTED(st_bytes(h, std::string(12, '\0')), "'b'", "overlap", "'a'");
  }
  SECTION("holes in the data section") {
    const std::string mid = "{" + entry("a", "F32", "[1]", 0, 4) + "," + entry("b", "F32", "[1]", 8, 12) + "}";
    CHECK_REJECTED(st_bytes(mid, std::string(12, '\0')), "'b'", "hole", "[4, 8)");
    CHECK_REJECTED(st_bytes("{" + entry("a", "F32", "[1]", 0, 4) + "}", f32x2), "hole", "[4, 8)");
    CHECK_REJECTED(st_bytes("{}", "x"), "hole", "[0, 1)");
  }
  SECTION("duplicate names") {
    const std::string h = "{" + ok_entry + "," + entry("ok", "F32", "[0]", 8, 8) + "}";
    CHECK_REJECTED(st_bytes(h, f32x2), "'ok'", "more than once");
    const std::string dup_field = "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    CHECK_REJECTED(st_bytes(dup_field, f32x2), "'w'", "'dtype'", "more than once");
  }
  SECTION("__metadata__ not a string-to-string map") {
    CHECK_REJECTED(st_bytes("{\"__metadata__\":\"pt\"," + ok_entry + "}", f32x2), "__metadata__");
    CHECK_REJECTED(st_bytes("{\"__metadata__\":{\"epoch\":3}," + ok_entry + "}", f32x2), "__metadata__", "'epoch'");
    CHECK_REJECTED(st_bytes("{\"__metadata__\":{\"a\":{\"b\":\"c\"}}," + ok_entry + "}", f32x2), "__metadata__");
  }
  SECTION("the file on disk is named in the message") {
    const fs::path dir = fresh_dir("malformed");
    const fs::path p = dir / "bad.safetensors";
    spit(p, st_bytes("{" + entry("w", "F32", "[3]", 0, 8) + "}", f32x2));
    try {
      safetensors_file::open(p.string());
      FAIL("expected io_error");
    } catch (const mscl::io_error& e) {
      CHECK(std::string(e.what()).find(p.string()) != std::string::npos);
    }
  }
}

TEST_CASE("safetensors reader accepts the format's legal corner cases", "[io][safetensors]") {
  auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape, int b, int e) {
    return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
           std::to_string(b) + "," + std::to_string(e) + "]}";
  };
  // Entries out of offset order, zero-size tensors at both ends, rank 0, an unknown extra field,
  // whitespace inside the JSON and no padding to 8.
  const std::string h = "{ " + entry("z", "F32", "[]", 4, 8) + " , " + entry("e0", "F64", "[0,3]", 0, 0) + "," +
                        entry("e1", "I64", "[5,0]", 8, 8) + ",\"x\":{\"dtype\":\"I32\",\"shape\":[1],\"extra\":1," +
                        "\"data_offsets\":[0,4]}}";
  std::string data(8, '\0');
  const float two = 2.0f;
  std::memcpy(&data[4], &two, 4);
  const std::int32_t minus = -5;
  std::memcpy(&data[0], &minus, 4);
  const auto f = safetensors_file::from_bytes(st_bytes(h, data));
  CHECK(f.names() == std::vector<std::string>{"e0", "e1", "x", "z"});
  CHECK(f.get<float>("z").item() == 2.0f);
  CHECK(f.get_int64("x") == std::vector<std::int64_t>{-5});
  CHECK(f.get<double>("e0").shape() == mscl::shape_t{0, 3});
  CHECK(f.get_int64("e1").empty());
  CHECK(f.metadata().empty());
}

TEST_CASE("safetensors half, bfloat16 and fp8 decoders match hand-computed values", "[io][safetensors]") {
  // Independent of Python: bit patterns with known values.
  auto half = [](std::uint16_t bits) { return mscl::io::detail::st_half_to_float(bits); };
  CHECK(half(0x3c00) == 1.0f);
  CHECK(half(0xc000) == -2.0f);
  CHECK(half(0x7bff) == 65504.0f);
  CHECK(half(0x0400) == std::ldexp(1.0f, -14));
  CHECK(half(0x0001) == std::ldexp(1.0f, -24));
  CHECK(half(0x3555) == 0.333251953125f);
  CHECK(std::isinf(half(0x7c00)));
  CHECK(std::isnan(half(0x7e00)));
  CHECK(std::signbit(half(0x8000)));
  CHECK(mscl::io::detail::st_bf16_to_float(0x3f80) == 1.0f);
  CHECK(mscl::io::detail::st_bf16_to_float(0xc060) == -3.5f);
  CHECK(mscl::io::detail::st_f8_e4m3_to_float(0x7e) == 448.0f);
  CHECK(std::isnan(mscl::io::detail::st_f8_e4m3_to_float(0x7f)));
  CHECK(mscl::io::detail::st_f8_e4m3_to_float(0x08) == std::ldexp(1.0f, -6));
  CHECK(mscl::io::detail::st_f8_e5m2_to_float(0x7b) == 57344.0f);
  CHECK(mscl::io::detail::st_f8_e8m0_to_float(127) == 1.0f);
  // Sub-byte types validate but do not convert.
  const std::string h = "{\"q\":{\"dtype\":\"F4\",\"shape\":[4],\"data_offsets\":[0,2]}}";
  const auto f = safetensors_file::from_bytes(st_bytes(h, std::string(2, '\0')), "f4.safetensors");
  CHECK(f.info("q").byte_size() == 2);
  CHECK_THROWS_AS(f.get<float>("q"), mscl::io_error);
  const std::string odd = "{\"q\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}";
  CHECK_THROWS_AS(safetensors_file::from_bytes(st_bytes(odd, std::string(2, '\0'))), mscl::io_error);
}

// ================================================================================ atomic_file

TEST_CASE("atomic_file replaces the target atomically and cleans up on failure", "[io][atomic_file]") {
  const fs::path dir = fresh_dir("atomic");
  const std::string target = (dir / "ckpt.bin").string();
  auto leftovers = [&] {
    int n = 0;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.path().filename().string().find(".tmp.") != std::string::npos) ++n;
    return n;
  };

  SECTION("write, commit, permissions follow the umask") {
    mscl::io::write_file_atomic(target, std::string("first"));
    CHECK(slurp(target) == "first");
    mscl::io::write_file_atomic(target, std::string("second, longer"));
    CHECK(slurp(target) == "second, longer");
    CHECK(leftovers() == 0);
    const mode_t mask = ::umask(0);
    ::umask(mask);
    struct stat st {};
    REQUIRE(::stat(target.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == (0666 & ~mask));
  }
  SECTION("the temporary sits beside the target and is invisible until commit") {
    mscl::io::write_file_atomic(target, std::string("old"));
    mscl::io::atomic_file f(target);
    CHECK(fs::path(f.temp_path()).parent_path() == dir);
    f.write("new");
    CHECK(slurp(target) == "old");
    CHECK(leftovers() == 1);
    f.commit();
    CHECK(slurp(target) == "new");
    CHECK(f.temp_path().empty());
    CHECK(leftovers() == 0);
  }
  SECTION("a throwing writer leaves the old file and no temporary") {
    mscl::io::write_file_atomic(target, std::string("old"));
    CHECK_THROWS_AS(mscl::io::write_file_atomic(target,
                                                [](mscl::io::atomic_file& f) {
                                                  f.write("partial");
                                                  throw std::runtime_error("disk on fire");
                                                }),
                    std::runtime_error);
    CHECK(slurp(target) == "old");
    CHECK(leftovers() == 0);
  }
  SECTION("missing directory: io_error naming the path") {
    const std::string bad = (dir / "no" / "such" / "dir" / "x.bin").string();
    try {
      mscl::io::write_file_atomic(bad, std::string("x"));
      FAIL("expected io_error");
    } catch (const mscl::io_error& e) {
      CHECK(std::string(e.what()).find(bad) != std::string::npos);
    }
  }
  SECTION("rename failure (target is a non-empty directory): io_error, temporary removed") {
    const fs::path blocker = dir / "blocker";
    fs::create_directories(blocker / "child");
    try {
      mscl::io::write_file_atomic(blocker.string(), std::string("x"));
      FAIL("expected io_error");
    } catch (const mscl::io_error& e) {
      CHECK(std::string(e.what()).find(blocker.string()) != std::string::npos);
      CHECK(std::string(e.what()).find("rename") != std::string::npos);
    }
    CHECK(leftovers() == 0);
    CHECK(fs::is_directory(blocker / "child"));
  }
  SECTION("bare file name resolves against the working directory's '.'") {
    CHECK(mscl::io::detail::parent_directory("x.bin") == ".");
    CHECK(mscl::io::detail::parent_directory("/x.bin") == "/");
    CHECK(mscl::io::detail::parent_directory("a/b/x.bin") == "a/b");
  }
}

// ================================================================================ key_map

TEST_CASE("key_map renames, strips and drops state-dict prefixes", "[io][key_map]") {
  SECTION("MSCL pretraining checkpoint -> torchvision names") {
    const auto m = key_map::parse("recognizer.encoder_q.fc.=DROP, recognizer.encoder_q.=, *=DROP");
    CHECK(m.apply("recognizer.encoder_q.stem.0.weight") == std::optional<std::string>("stem.0.weight"));
    CHECK(m.apply("recognizer.encoder_q.layer1.0.conv1.1.num_batches_tracked") ==
          std::optional<std::string>("layer1.0.conv1.1.num_batches_tracked"));
    CHECK_FALSE(m.apply("recognizer.encoder_q.fc.0.weight"));
    CHECK_FALSE(m.apply("recognizer.encoder_k.stem.0.weight"));
    CHECK_FALSE(m.apply("recognizer.queue"));
    CHECK_FALSE(m.apply("recognizer_flow.conv1.weight"));
  }
  SECTION("fine-tuned MMAction model: strip backbone., drop cls_head., pass the rest through") {
    const auto m = key_map::parse("backbone.=\ncls_head.=DROP");
    CHECK(m.apply("backbone.layer4.1.conv2.0.weight") == std::optional<std::string>("layer4.1.conv2.0.weight"));
    CHECK_FALSE(m.apply("cls_head.fc_cls.weight"));
    CHECK(m.apply("fc.weight") == std::optional<std::string>("fc.weight"));
  }
  SECTION("first matching rule wins; replacement is applied once") {
    key_map m;
    m.rename("a.", "a.a.").rename("a.b.", "x.").drop("a.");
    CHECK(m.apply("a.b.c") == std::optional<std::string>("a.a.b.c"));
    const auto n = key_map::parse("a.b.=x.,a.=DROP,*=backbone.");
    CHECK(n.apply("a.b.c") == std::optional<std::string>("x.c"));
    CHECK_FALSE(n.apply("a.c"));
    CHECK(n.apply("fc.bias") == std::optional<std::string>("backbone.fc.bias"));
    CHECK(key_map::parse(n.to_string()).to_string() == n.to_string());
    CHECK(n.to_string() == "a.b.=x.,a.=DROP,*=backbone.");
  }
  SECTION("empty map is the identity") {
    const auto m = key_map::parse("  ");
    CHECK(m.empty());
    CHECK(m.apply("anything") == std::optional<std::string>("anything"));
  }
  SECTION("syntax errors name the rule") {
    try {
      key_map::parse("backbone.=,cls_head.");
      FAIL("expected config_error");
    } catch (const mscl::config_error& e) {
      CHECK(std::string(e.what()).find("rule 2 'cls_head.'") != std::string::npos);
    }
    CHECK_THROWS_AS(key_map::parse("=x."), mscl::config_error);
    CHECK_THROWS_AS(key_map::parse("a=b=c"), mscl::config_error);
  }
  SECTION("apply_all detects collisions and returns new -> old") {
    const auto m = key_map::parse("backbone.=,cls_head.=DROP");
    const auto out = m.apply_all({"backbone.fc.weight", "cls_head.fc_cls.bias", "stem.0.weight"});
    CHECK(out == std::map<std::string, std::string>{{"fc.weight", "backbone.fc.weight"},
                                                    {"stem.0.weight", "stem.0.weight"}});
    try {
      m.apply_all({"backbone.fc.weight", "fc.weight"});
      FAIL("expected config_error");
    } catch (const mscl::config_error& e) {
      CHECK(std::string(e.what()).find("'backbone.fc.weight' and 'fc.weight'") != std::string::npos);
    }
  }
}

// load_state_dict with a renaming key map: a file written under a prefix (as a pretraining
// checkpoint nests the backbone) loads into the bare model through "prefix.=" (this direction
// of apply_all's result was once read backwards, so every renaming map failed).
TEST_CASE("load_state_dict maps prefixed file keys onto the model", "[io][key_map]") {
  auto src = mscl::models::r3d_tiny<float>(3, /*seed=*/1, /*width=*/2);
  auto dst = mscl::models::r3d_tiny<float>(3, /*seed=*/2, /*width=*/2);
  const std::string path = (std::filesystem::temp_directory_path() / "mscl_prefixed_state.safetensors").string();
  mscl::io::save_state_dict(src, path, {}, "pre.");
  const auto report = mscl::io::load_state_dict(dst, path, key_map::parse("pre.="));
  CHECK(report.missing.empty());
  CHECK(report.unexpected.empty());
  const auto a = src.state_dict(), b = dst.state_dict();
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i].name == b[i].name);
    const auto x = a[i].value.to_vector(), y = b[i].value.to_vector();
    CHECK(x == y);
  }
  // without the map every model entry is missing, and the error names one
  CHECK_THROWS_WITH(mscl::io::load_state_dict(dst, path), Catch::Contains("has no tensor for model entry"));
  std::filesystem::remove(path);
}
