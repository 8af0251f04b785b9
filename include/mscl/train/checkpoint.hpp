/// \file checkpoint.hpp
/// \brief Atomic training checkpoints: one safetensors file holding every tensor of the run
///        (model weights, key encoders, optimiser buffers, queues) and the JSON state (iteration,
///        RNG states, schedule clocks, config hash) in its `__metadata__`, plus `latest.json`
///        naming the newest checkpoint. Both are written through io/atomic_file.hpp (temporary
///        file, fsync, rename), `latest.json` last, so a run killed at any instant leaves the
///        previous checkpoint intact and findable.
#pragma once
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../io/atomic_file.hpp"
#include "../io/safetensors.hpp"
#include "../nn/module.hpp"

namespace mscl::train {

template <class T = float>
struct checkpoint {
  nlohmann::json state = nlohmann::json::object();
  std::map<std::string, tensor<T>> tensors;
  std::map<std::string, std::vector<std::int64_t>> integers;  ///< small integer arrays (ages, pointers)

  /// Adds a module's parameters and buffers under `prefix` (e.g. "model."), as host tensors
  /// (a device module's values are copied to the host: checkpoints move between backends).
  template <class B>
  void add_module(const std::string& prefix, const nn::module<T, B>& m) {
    for (const auto& e : m.state_dict()) tensors[prefix + e.name] = on_backend<cpu>(e.value);
  }
  /// Copies the stored values back into a module of any backend (every entry must exist with
  /// its shape).
  template <class B>
  void restore_module(const std::string& prefix, nn::module<T, B>& m, const std::string& source) const {
    m.load_state([&](const std::string& name) {
      auto it = tensors.find(prefix + name);
      return it == tensors.end() ? tensor<T, B>() : on_backend<B>(it->second);
    }, true, source);
  }
  const tensor<T>& at(const std::string& name, const std::string& source) const {
    auto it = tensors.find(name);
    MSCL_CHECK(it != tensors.end(), io_error, "checkpoint " << source << " has no tensor '" << name << "'");
    return it->second;
  }
};

inline std::string checkpoint_file_name(long iteration) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "ckpt-%08ld.safetensors", iteration);
  return buf;
}

/// Writes `ckpt` as <dir>/ckpt-<iteration>.safetensors and then points <dir>/latest.json at it.
/// Older checkpoints beyond `keep` are removed after the pointer moved.
template <class T>
std::string save_checkpoint(const std::string& dir, long iteration, const checkpoint<T>& ckpt, int keep = 2) {
  std::filesystem::create_directories(dir);
  io::safetensors_writer w;
  for (const auto& [name, t] : ckpt.tensors) w.add(name, t);
  for (const auto& [name, v] : ckpt.integers) w.add_int64(name, v, {index_t(v.size())});
  nlohmann::json state = ckpt.state;
  state["iteration"] = iteration;
  w.set_metadata("mscl_state", state.dump());
  w.set_metadata("format", "mscl-checkpoint");
  const std::string file = checkpoint_file_name(iteration);
  w.write(dir + "/" + file);
  nlohmann::json latest = {{"file", file}, {"iteration", iteration}};
  const std::string text = latest.dump(2) + "\n";
  io::write_file_atomic(dir + "/latest.json", [&](io::atomic_file& f) { f.write(text.data(), text.size()); });
  // Retention: keep the newest `keep` checkpoint files.
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string n = entry.path().filename().string();
    if (n.rfind("ckpt-", 0) == 0 && n.size() > 12 && n.compare(n.size() - 12, 12, ".safetensors") == 0) files.push_back(n);
  }
  std::sort(files.begin(), files.end());
  for (std::size_t i = 0; i + std::size_t(keep) < files.size(); ++i)
    if (files[i] != file) std::filesystem::remove(dir + "/" + files[i]);
  return dir + "/" + file;
}

/// True when <dir>/latest.json exists.
inline bool has_checkpoint(const std::string& dir) { return std::filesystem::exists(dir + "/latest.json"); }

/// Loads the checkpoint that <dir>/latest.json names. A truncated or corrupt file is an
/// io_error naming it (the safetensors reader validates every byte range).
template <class T = float>
checkpoint<T> load_latest_checkpoint(const std::string& dir) {
  const std::string pointer = dir + "/latest.json";
  std::ifstream in(pointer);
  MSCL_CHECK(in.good(), io_error, "load_latest_checkpoint: cannot read " << pointer);
  nlohmann::json latest;
  try {
    in >> latest;
  } catch (const std::exception& e) {
    MSCL_CHECK(false, io_error, "load_latest_checkpoint: " << pointer << " is not valid JSON: " << e.what());
  }
  MSCL_CHECK(latest.contains("file") && latest["file"].is_string(), io_error,
             "load_latest_checkpoint: " << pointer << " has no \"file\" entry");
  const std::string path = dir + "/" + latest["file"].get<std::string>();
  const auto file = io::safetensors_file::open(path);
  checkpoint<T> ck;
  const auto& meta = file.metadata();
  auto it = meta.find("mscl_state");
  MSCL_CHECK(it != meta.end(), io_error, "load_latest_checkpoint: " << path << " carries no mscl_state metadata");
  try {
    ck.state = nlohmann::json::parse(it->second);
  } catch (const std::exception& e) {
    MSCL_CHECK(false, io_error, "load_latest_checkpoint: " << path << ": state metadata is not JSON: " << e.what());
  }
  for (const auto& name : file.names()) {
    const auto& info = file.info(name);
    if (info.dtype == io::safetensors_dtype::I64) ck.integers[name] = file.get_int64(name);
    else ck.tensors[name] = file.template get<T>(name);
  }
  return ck;
}

}  // namespace mscl::train
