/// \file torch_reference.hpp
/// \brief Test-only helpers shared by the op tests that compare against PyTorch: a max-abs-diff
///        and a runner that writes inputs, calls scripts/torch_ref_norm_pool.py once for many
///        cases (importing torch takes seconds) and compares each expected output.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mscl/core/tensor.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mscl_test {
using mscl::tensor;

template <class T>
double max_abs_diff(const std::vector<T>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - b[i]));
  return m;
}

inline bool torch_available() {
  static const bool ok = std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
  return ok;
}

struct torch_case {
  std::filesystem::path dir;
  nlohmann::json spec;
  torch_case(const std::string& name, const std::string& op, nlohmann::json params) {
    dir = std::filesystem::path(MSCL_BINARY_DIR) / "tests" / "torch_ref" / name;
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    spec["op"] = op;
    spec["params"] = std::move(params);
    spec["inputs"] = nlohmann::json::object();
  }
  void input(const std::string& name, const tensor<double>& t) {
    const auto v = t.to_vector();
    std::ofstream f(dir / (name + ".bin"), std::ios::binary);
    f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(double)));
    spec["inputs"][name] = t.shape();
  }
  /// mscl's result for output file `name` (out, grad_x, running_mean, ...), compared later.
  void expect(const std::string& name, const tensor<double>& t) { expected.push_back({name, t.to_vector()}); }
  std::vector<std::pair<std::string, std::vector<double>>> expected;
  std::vector<double> read(const std::string& name) const {
    std::ifstream f(dir / (name + ".bin"), std::ios::binary | std::ios::ate);
    REQUIRE(f.good());
    const auto bytes = std::size_t(f.tellg());
    std::vector<double> v(bytes / sizeof(double));
    f.seekg(0);
    f.read(reinterpret_cast<char*>(v.data()), std::streamsize(bytes));
    return v;
  }
};

/// Runs every case in one Python call (importing torch takes seconds) and compares each expected
/// output with PyTorch's to within tol.
inline void check_against_torch(const std::vector<torch_case>& cases, double tol) {
  std::string cmd = std::string("/usr/bin/python3 ") + MSCL_SOURCE_DIR + "/scripts/torch_ref_norm_pool.py";
  for (const auto& c : cases) {
    std::ofstream(c.dir / "case.json") << c.spec.dump();
    cmd += " " + c.dir.string();
  }
  REQUIRE(std::system(cmd.c_str()) == 0);
  for (const auto& c : cases)
    for (const auto& [name, mine] : c.expected) {
      CAPTURE(c.dir.filename().string(), name);
      CHECK(max_abs_diff(mine, c.read(name)) < tol);
    }
}

}  // namespace mscl_test
