/// \file state_dict.hpp
/// \brief Saving and loading a module's parameters and buffers as safetensors with torchvision
///        names, through an optional key map (e.g. "recognizer.encoder_q.backbone.=" strips the
///        MSCL pretraining prefix).
#pragma once
#include <map>
#include <set>
#include <string>

#include "../nn/module.hpp"
#include "key_map.hpp"
#include "safetensors.hpp"

namespace mscl::io {

struct load_report {
  std::vector<std::string> loaded;      ///< model names that received a value
  std::vector<std::string> missing;     ///< model names absent from the file (non-strict loads only)
  std::vector<std::string> unexpected;  ///< file names (after mapping) that the model does not have
};

/// Loads `module`'s state from `path`. Each file key is mapped through `keys` (dropped keys are
/// ignored); strict: every model entry must be present and no mapped file key may be left
/// unused. Shapes must always match (shape_error naming the entry, both shapes and the file).
template <class T, class B>
load_report load_state_dict(nn::module<T, B>& module, const std::string& path, const key_map& keys = {},
                            bool strict = true) {
  const auto file = safetensors_file::open(path);
  // apply_all returns model key -> file key (and refuses two file keys mapping to one model key)
  const std::map<std::string, std::string> by_model = keys.apply_all(file.names());
  load_report report;
  std::set<std::string> used;
  for (auto& e : module.state_dict()) {
    auto it = by_model.find(e.name);
    if (it == by_model.end()) {
      MSCL_CHECK(!strict, io_error,
                 "load_state_dict: '" << path << "' has no tensor for model entry '" << e.name << "' (shape "
                                      << mscl::to_string(e.value.shape()) << ")");
      report.missing.push_back(e.name);
      continue;
    }
    const auto& info = file.info(it->second);
    MSCL_CHECK(info.shape == e.value.shape(), shape_error,
               "load_state_dict: '" << path << "': tensor '" << it->second << "' has shape " << mscl::to_string(info.shape)
                                    << " but model entry '" << e.name << "' expects " << mscl::to_string(e.value.shape()));
    if (e.is_integer) {
      const auto v = file.get_int64(it->second);
      e.value.copy_from(tensor<T, B>::from_vector(e.value.shape(), std::vector<T>(v.begin(), v.end())));
    } else {
      e.value.copy_from(on_backend<B>(file.template get<T>(it->second)));
    }
    used.insert(e.name);
    report.loaded.push_back(e.name);
  }
  for (const auto& [model_key, file_key] : by_model)
    if (!used.count(model_key)) report.unexpected.push_back(file_key);
  MSCL_CHECK(!strict || report.unexpected.empty(), io_error,
             "load_state_dict: '" << path << "' holds " << report.unexpected.size()
                                  << " tensor(s) the model does not have, first '"
                                  << (report.unexpected.empty() ? "" : report.unexpected.front())
                                  << "' (map or drop them with a key map, or load non-strictly)");
  return report;
}

/// Writes `module`'s state (parameters and buffers; integer buffers as I64) atomically.
template <class T, class B>
void save_state_dict(const nn::module<T, B>& module, const std::string& path,
                     const std::map<std::string, std::string>& metadata = {}, const std::string& prefix = "") {
  safetensors_writer w;
  for (const auto& e : module.state_dict(prefix)) {
    if (e.is_integer) {
      std::vector<std::int64_t> v;
      for (const T x : e.value.to_vector()) v.push_back(std::int64_t(x));
      w.add_int64(e.name, v, e.value.shape());
    } else {
      w.add(e.name, on_backend<cpu>(e.value));  // device tensors are written from a host copy
    }
  }
  w.set_metadata("format", "pt");
  for (const auto& [k, v] : metadata) w.set_metadata(k, v);
  w.write(path);
}

}  // namespace mscl::io
