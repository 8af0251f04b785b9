/// \file node.hpp
/// \brief A recorded op in the autograd graph and the helper that op authors call to record one.
///
/// An op computes its output, then calls `record(out, "name", {inputs...}, backward)`. The
/// backward function receives the gradient of the output and returns one gradient per input
/// (an undefined tensor where an input needs none). It captures what it needs (saved tensors,
/// shapes); those are released after the backward pass.
#pragma once
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "../core/tensor.hpp"
#include "grad_mode.hpp"

namespace mscl::autograd {

template <class T, class Backend>
struct node {
  using tensor_t = tensor<T, Backend>;
  using backward_fn = std::function<std::vector<tensor_t>(const tensor_t& grad_output)>;

  std::string name;
  std::vector<std::shared_ptr<tensor_impl<T, Backend>>> inputs;  ///< null where no grad is needed
  backward_fn backward;
};

/// True when any input requires grad and recording is on.
template <class T, class Backend>
bool any_requires_grad(std::initializer_list<tensor<T, Backend>> inputs) {
  if (!is_grad_enabled()) return false;
  for (const auto& t : inputs)
    if (t.requires_grad()) return true;
  return false;
}

/// Attaches a graph node to `out` if any input requires grad; returns `out`.
template <class T, class Backend>
tensor<T, Backend> record(tensor<T, Backend> out, const char* name,
                          std::initializer_list<tensor<T, Backend>> inputs,
                          typename node<T, Backend>::backward_fn backward) {
  if (!is_grad_enabled()) return out;
  bool any = false;
  for (const auto& t : inputs) any = any || t.requires_grad();
  if (!any) return out;
  auto n = std::make_shared<node<T, Backend>>();
  n->name = name;
  n->inputs.reserve(inputs.size());
  for (const auto& t : inputs) n->inputs.push_back(t.requires_grad() ? t.impl() : nullptr);
  n->backward = std::move(backward);
  out.impl()->grad_fn = std::move(n);
  out.impl()->requires_grad = true;
  return out;
}

/// Variant for ops with a runtime-sized input list (cat).
template <class T, class Backend>
tensor<T, Backend> record(tensor<T, Backend> out, const char* name, const std::vector<tensor<T, Backend>>& inputs,
                          typename node<T, Backend>::backward_fn backward) {
  if (!is_grad_enabled()) return out;
  bool any = false;
  for (const auto& t : inputs) any = any || t.requires_grad();
  if (!any) return out;
  auto n = std::make_shared<node<T, Backend>>();
  n->name = name;
  for (const auto& t : inputs) n->inputs.push_back(t.requires_grad() ? t.impl() : nullptr);
  n->backward = std::move(backward);
  out.impl()->grad_fn = std::move(n);
  out.impl()->requires_grad = true;
  return out;
}

}  // namespace mscl::autograd
