/// \file module.hpp
/// \brief `nn::module`: owns named parameters, buffers and child modules, so that parameter
///        lists, state dicts (with torchvision's names), train/eval and zero_grad are generic.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../core/tensor.hpp"

namespace mscl::nn {

/// One entry of a state dict. Integer entries (BatchNorm's num_batches_tracked) are stored in a
/// floating tensor but written to safetensors as I64, as PyTorch does.
template <class T, class B>
struct state_entry {
  std::string name;
  tensor<T, B> value;
  bool is_parameter = false;
  bool is_integer = false;
};

template <class T, class B = cpu>
class module {
 public:
  using tensor_t = tensor<T, B>;
  virtual ~module() = default;
  module() = default;
  module(const module&) = delete;
  module& operator=(const module&) = delete;

  /// Parameters (recursively, registration order) with dotted names.
  std::vector<std::pair<std::string, tensor_t>> named_parameters(const std::string& prefix = "") const {
    std::vector<std::pair<std::string, tensor_t>> out;
    collect(prefix, out, nullptr);
    return out;
  }
  std::vector<tensor_t> parameters() const {
    std::vector<tensor_t> out;
    for (auto& kv : named_parameters()) out.push_back(kv.second);
    return out;
  }
  /// Parameters and buffers in torchvision's state-dict order.
  std::vector<state_entry<T, B>> state_dict(const std::string& prefix = "") const {
    std::vector<state_entry<T, B>> out;
    collect_state(prefix, out);
    return out;
  }
  index_t parameter_count() const {
    index_t n = 0;
    for (auto& kv : named_parameters()) n += kv.second.numel();
    return n;
  }

  /// Copies values into this module's state. `lookup(name)` returns the stored tensor or an
  /// undefined one. strict: every entry must be found; shapes must always match.
  template <class Lookup>
  void load_state(Lookup&& lookup, bool strict = true, const std::string& source = "state dict") {
    for (auto& e : state_dict()) {
      tensor_t v = lookup(e.name);
      if (!v.defined()) {
        MSCL_CHECK(!strict, io_error, "load_state: " << source << " has no entry '" << e.name << "' (shape "
                                                      << to_string(e.value.shape()) << ")");
        continue;
      }
      MSCL_CHECK(v.shape() == e.value.shape(), shape_error,
                 "load_state: entry '" << e.name << "' of " << source << " has shape " << to_string(v.shape())
                                       << " but the model expects " << to_string(e.value.shape()));
      e.value.copy_from(v);
    }
  }

  void train(bool on = true) {
    training_ = on;
    for (auto& c : children_) c.second->train(on);
  }
  void eval() { train(false); }
  bool is_training() const { return training_; }

  void zero_grad() {
    for (auto& p : parameters()) p.zero_grad();
  }
  /// Freezes (or unfreezes) every parameter.
  void set_requires_grad(bool on) {
    for (auto& p : parameters()) p.set_requires_grad(on);
  }

 protected:
  /// Returns a handle sharing the registered tensor (keep it as a member).
  tensor_t register_parameter(const std::string& name, tensor_t value) {
    value.set_requires_grad(true);
    entries_.push_back({name, value, true, false});
    return value;
  }
  tensor_t register_buffer(const std::string& name, tensor_t value, bool is_integer = false) {
    entries_.push_back({name, value, false, is_integer});
    return value;
  }
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> child) {
    MSCL_CHECK(child != nullptr, value_error, "register_module: null child '" << name << "'");
    child->train(training_);
    children_.push_back({name, child});
    return child;
  }

 private:
  void collect(const std::string& prefix, std::vector<std::pair<std::string, tensor_t>>& out, void*) const {
    for (const auto& e : entries_)
      if (e.is_parameter) out.push_back({prefix + e.name, e.value});
    for (const auto& c : children_) c.second->collect(prefix + c.first + ".", out, nullptr);
  }
  void collect_state(const std::string& prefix, std::vector<state_entry<T, B>>& out) const {
    for (const auto& e : entries_)
      if (e.is_parameter) out.push_back({prefix + e.name, e.value, true, false});
    for (const auto& e : entries_)
      if (!e.is_parameter) out.push_back({prefix + e.name, e.value, false, e.is_integer});
    for (const auto& c : children_) c.second->collect_state(prefix + c.first + ".", out);
  }

  std::vector<state_entry<T, B>> entries_;  // handles: members and entries share the same tensors
  std::vector<std::pair<std::string, std::shared_ptr<module>>> children_;
  bool training_ = true;
};

}  // namespace mscl::nn
