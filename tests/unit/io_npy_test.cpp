// Tests for include/mscl/io/npy.hpp.
//
// Oracles: a hand-built numpy header (bytes known from numpy.save), hand-built malformed files,
// and numpy itself through scripts/make_io_fixtures.py (numpy loads mscl's files and compares
// them with numpy.save byte for byte; mscl loads numpy's files, versions 1.0/2.0/3.0).
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "mscl/io/npy.hpp"

namespace fs = std::filesystem;
using mscl::io::read_npy;
using mscl::io::read_npy_header;
using mscl::io::read_npy_int64;
using mscl::io::write_npy;
using mscl::io::write_npy_int64;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::path(MSCL_BINARY_DIR) / "io_test_tmp" / ("npy_" + name);
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

int run_fixture_script(const std::string& args) {
  const std::string py = fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  const std::string cmd = py + " '" + std::string(MSCL_SOURCE_DIR) + "/scripts/make_io_fixtures.py' " + args;
  const int rc = std::system(cmd.c_str());
  if (rc == -1 || !WIFEXITED(rc)) return -1;
  const int code = WEXITSTATUS(rc);
  return code == 127 ? -1 : code;
}

// Same formulas as make_io_fixtures.py.
std::vector<float> f4_values(int n) {
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

/// A v1.0 file with header dict `dict` (padded like numpy) followed by `data`.
std::string npy_bytes(const std::string& dict, const std::string& data, int major = 1) {
  std::string h = dict;
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  std::size_t total = h.size() + 1;
  total += 64 - (6 + 2 + len_bytes + total) % 64;
  h.append(total - dict.size() - 1, ' ');
  h += '\n';
  std::string out = "\x93NUMPY";
  out += char(major);
  out += char(0);
  for (std::size_t k = 0; k < len_bytes; ++k) out += char((total >> (8 * k)) & 0xff);
  return out + h + data;
}

std::string read_error(const fs::path& p, bool as_int = false) {
  try {
    if (as_int)
      read_npy_int64(p.string());
    else
      read_npy<float>(p.string());
  } catch (const mscl::io_error& e) {
    return e.what();
  }
  FAIL("expected mscl::io_error reading " << p);
  return {};
}

}  // namespace

TEST_CASE("npy header is byte-identical to numpy.save", "[io][npy]") {
  const fs::path dir = fresh_dir("header");
  const fs::path p = dir / "a.npy";
  write_npy(p.string(), mscl::tensor<float>::from_vector({2, 3}, {1, 2, 3, 4, 5, 6}));
  const std::string bytes = slurp(p);
  // numpy 1.24: dict, 21 - len("2") spaces of growth room, padding to 64, newline.
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  std::string expected = std::string("\x93NUMPY\x01\x00\x76\x00", 10) + dict;
  expected.append(128 - 1 - expected.size(), ' ');
  expected += '\n';
  REQUIRE(bytes.size() == 128 + 24);
  CHECK(bytes.substr(0, 128) == expected);
  float v[6];
  std::memcpy(v, bytes.data() + 128, 24);
  CHECK(v[0] == 1.0f);
  CHECK(v[5] == 6.0f);
  const auto h = read_npy_header(p.string());
  CHECK(h.major == 1);
  CHECK(h.descr == "<f4");
  CHECK(h.data_offset == 128);
}

TEST_CASE("npy round trip for f4, f8, i8, scalars, empty and strided tensors", "[io][npy]") {
  const fs::path dir = fresh_dir("roundtrip");
  auto t32 = mscl::tensor<float>::from_vector({2, 3, 4}, f4_values(24));
  write_npy((dir / "f4.npy").string(), t32);
  CHECK(read_npy<float>((dir / "f4.npy").string()).to_vector() == f4_values(24));
  CHECK(read_npy<float>((dir / "f4.npy").string()).shape() == mscl::shape_t{2, 3, 4});
  // f4 -> double widens exactly.
  const auto wide = read_npy<double>((dir / "f4.npy").string()).to_vector();
  for (std::size_t i = 0; i < wide.size(); ++i) CHECK(wide[i] == double(f4_values(24)[i]));

  auto t64 = mscl::tensor<double>::from_vector({5}, f8_values(5));
  write_npy((dir / "f8.npy").string(), t64);
  CHECK(read_npy<double>((dir / "f8.npy").string()).to_vector() == f8_values(5));
  CHECK(read_npy<float>((dir / "f8.npy").string()).to_vector()[1] == float(f8_values(5)[1]));
  CHECK(read_npy_header((dir / "f8.npy").string()).descr == "<f8");

  write_npy_int64((dir / "i8.npy").string(), i8_values(6), {3, 2});
  const auto [vals, shape] = read_npy_int64((dir / "i8.npy").string());
  CHECK(vals == i8_values(6));
  CHECK(shape == mscl::shape_t{3, 2});

  write_npy((dir / "s.npy").string(), mscl::tensor<double>::scalar(-0.1));
  CHECK(read_npy<double>((dir / "s.npy").string()).shape().empty());
  CHECK(read_npy<double>((dir / "s.npy").string()).item() == -0.1);

  write_npy((dir / "e.npy").string(), mscl::tensor<float>::zeros({0, 3}));
  CHECK(read_npy<float>((dir / "e.npy").string()).shape() == mscl::shape_t{0, 3});

  auto base = mscl::tensor<float>::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
  write_npy((dir / "t.npy").string(), base.view_as_strided({3, 2}, {1, 3}, 0));
  CHECK(read_npy<float>((dir / "t.npy").string()).to_vector() == std::vector<float>{1, 4, 2, 5, 3, 6});

  // Header longer than 65535 bytes: written as version 2.0 (like numpy) and read back.
  const mscl::shape_t many(22000, 1);
  write_npy((dir / "v2.npy").string(), mscl::tensor<float>::full(many, 7.f));
  const auto h = read_npy_header((dir / "v2.npy").string());
  CHECK(h.major == 2);
  CHECK(h.data_offset % 64 == 0);
  CHECK(read_npy<float>((dir / "v2.npy").string()).shape() == many);
  CHECK(read_npy<float>((dir / "v2.npy").string()).to_vector() == std::vector<float>{7.f});
}

TEST_CASE("npy cross-check with numpy in both directions", "[io][npy][python]") {
  const fs::path dir = fresh_dir("numpy");
  const auto d = [&](const char* name) { return (dir / name).string(); };
  write_npy(d("mscl_f4.npy"), mscl::tensor<float>::from_vector({2, 3, 4}, f4_values(24)));
  write_npy(d("mscl_f8.npy"), mscl::tensor<double>::from_vector({5}, f8_values(5)));
  write_npy_int64(d("mscl_i8.npy"), i8_values(6), {3, 2});
  write_npy(d("mscl_scalar.npy"), mscl::tensor<double>::scalar(-0.1));
  write_npy(d("mscl_empty.npy"), mscl::tensor<float>::zeros({0, 3}));

  const int rc = run_fixture_script("npy '" + dir.string() + "'");
  if (rc == -1 || rc == 77) {
    WARN("skipped: numpy is not available to scripts/make_io_fixtures.py (status " << rc << ")");
    return;
  }
  // numpy loaded every mscl file, found the formula values and identical bytes to numpy.save.
  REQUIRE(rc == 0);

  CHECK(read_npy<float>(d("np_f4.npy")).to_vector() == f4_values(24));
  CHECK(read_npy<float>(d("np_f4.npy")).shape() == mscl::shape_t{2, 3, 4});
  CHECK(read_npy<double>(d("np_f8.npy")).to_vector() == f8_values(5));
  const auto [iv, ishape] = read_npy_int64(d("np_i8.npy"));
  CHECK(iv == i8_values(6));
  CHECK(ishape == mscl::shape_t{3, 2});
  CHECK(read_npy<double>(d("np_scalar.npy")).item() == -0.1);
  CHECK(read_npy<float>(d("np_empty.npy")).shape() == mscl::shape_t{0, 3});

  CHECK(read_npy_header(d("np_v2.npy")).major == 2);
  CHECK(read_npy<float>(d("np_v2.npy")).to_vector() == f4_values(24));
  CHECK(read_npy_header(d("np_v3.npy")).major == 3);
  CHECK(read_npy<double>(d("np_v3.npy")).to_vector() == f8_values(6));
  CHECK(read_npy<double>(d("np_v3.npy")).shape() == mscl::shape_t{3, 2});

  const std::string fortran = read_error(d("np_fortran.npy"));
  CHECK(fortran.find("Fortran") != std::string::npos);
  CHECK(fortran.find("np_fortran.npy") != std::string::npos);
  CHECK(read_error(d("np_bigendian.npy")).find("'>f4'") != std::string::npos);
  CHECK(read_error(d("np_i4.npy"), true).find("'<i4'") != std::string::npos);
}

TEST_CASE("npy reader rejects malformed files, naming the file", "[io][npy]") {
  const fs::path dir = fresh_dir("malformed");
  const std::string ok_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::string data8(8, '\0');
  auto rejected = [&](const std::string& bytes, std::initializer_list<const char*> parts, bool as_int = false) {
    const fs::path p = dir / "bad.npy";
    spit(p, bytes);
    const std::string msg = read_error(p, as_int);
    INFO("message: " << msg);
    CHECK(msg.find(p.string()) != std::string::npos);
    for (const char* part : parts) CHECK(msg.find(part) != std::string::npos);
  };

  SECTION("baseline is accepted") {
    spit(dir / "ok.npy", npy_bytes(ok_dict, data8));
    CHECK(read_npy<float>((dir / "ok.npy").string()).numel() == 2);
    spit(dir / "ok2.npy", npy_bytes("{\"shape\": (2L,), \"fortran_order\": False, \"descr\": \"<f4\"}", data8, 2));
    CHECK(read_npy<float>((dir / "ok2.npy").string()).shape() == mscl::shape_t{2});
  }
  SECTION("bad magic") {
    std::string b = npy_bytes(ok_dict, data8);
    b[1] = 'n';
    rejected(b, {"magic"});
    rejected("PK\x03\x04", {"magic"});
  }
  SECTION("unsupported version") {
    std::string b = npy_bytes(ok_dict, data8);
    b[6] = 4;
    rejected(b, {"version 4.0"});
  }
  SECTION("truncated header and data") {
    const std::string b = npy_bytes(ok_dict, data8);
    rejected(b.substr(0, 40), {"truncated"});
    rejected(b.substr(0, 9), {"truncated"});
    rejected(b.substr(0, b.size() - 1), {"truncated", "needs 8", "only 7"});
    rejected(b + "x", {"1 unexpected bytes"});
  }
  SECTION("unsupported dtype is named") {
    rejected(npy_bytes("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", data8), {"'<i4'"});
    rejected(npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (8,), }", data8), {"'|u1'"});
    rejected(npy_bytes("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", data8),
             {"malformed header"});
    rejected(npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", data8), {"read_npy_int64"});
    rejected(npy_bytes(ok_dict, data8), {"'<f4'", "not int64"}, true);
  }
  SECTION("fortran order") {
    rejected(npy_bytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", data8), {"Fortran"});
  }
  SECTION("malformed header dict") {
    rejected(npy_bytes("{'descr': '<f4', 'shape': (2,), }", data8), {"malformed", "'fortran_order'"});
    rejected(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1, }", data8),
             {"malformed", "unexpected key 'x'"});
    rejected(npy_bytes("{'descr': '<f4', 'fortran_order': false, 'shape': (2,), }", data8), {"True or False"});
    rejected(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2), }", data8), {"trailing comma"});
    rejected(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", data8), {"non-negative"});
    rejected(npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': [2], }", data8), {"expected '('"});
    rejected(npy_bytes("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", data8),
             {"appears twice"});
    rejected(npy_bytes("{'descr': '<f4, 'fortran_order': False, 'shape': (2,), }", data8), {"malformed"});
    rejected(npy_bytes("'descr': '<f4', 'fortran_order': False, 'shape': (2,)", data8), {"expected '{'"});
    rejected(npy_bytes(ok_dict + " junk", data8), {"after the closing"});
  }
  SECTION("missing file") {
    CHECK_THROWS_AS(read_npy<float>((dir / "absent.npy").string()), mscl::io_error);
  }
}

TEST_CASE("npy writers check their input", "[io][npy]") {
  const fs::path dir = fresh_dir("writer");
  CHECK_THROWS_AS(write_npy_int64((dir / "x.npy").string(), {1, 2, 3}, {2}), mscl::shape_error);
  CHECK_THROWS_AS(write_npy_int64((dir / "x.npy").string(), {}, {-1}), mscl::shape_error);
  const std::string bad = (dir / "missing" / "x.npy").string();
  try {
    write_npy(bad, mscl::tensor<float>::zeros({1}));
    FAIL("expected io_error");
  } catch (const mscl::io_error& e) {
    CHECK(std::string(e.what()).find(bad) != std::string::npos);
  }
  CHECK_FALSE(fs::exists(dir / "x.npy"));
}
