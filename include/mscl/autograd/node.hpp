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

/// Where an input's gradient goes: the node that produced it, or the leaf tensor itself.
/// Edges do not own intermediate tensors (only their producers), so activations are freed as
/// soon as nothing but the graph would refer to them; only what a backward function captured
/// is kept.
template <class T, class Backend>
struct edge {
  std::shared_ptr<node<T, Backend>> producer;       ///< set for non-leaf inputs
  std::shared_ptr<tensor_impl<T, Backend>> leaf;     ///< set for leaves that require grad
  shape_t shape;
  bool active() const { return producer || leaf; }
};

template <class T, class Backend>
struct node {
  using tensor_t = tensor<T, Backend>;
  using backward_fn = std::function<std::vector<tensor_t>(const tensor_t& grad_output)>;

  std::string name;
  std::vector<edge<T, Backend>> inputs;  ///< inactive where no grad is needed
  backward_fn backward;
};

namespace detail {
template <class T, class Backend>
edge<T, Backend> edge_to(const tensor<T, Backend>& t) {
  edge<T, Backend> e;
  if (!t.requires_grad()) return e;
  e.shape = t.shape();
  if (t.impl()->grad_fn) e.producer = t.impl()->grad_fn;
  else e.leaf = t.impl();
  return e;
}
}  // namespace detail

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
  for (const auto& t : inputs) n->inputs.push_back(detail::edge_to(t));
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
  for (const auto& t : inputs) n->inputs.push_back(detail::edge_to(t));
  n->backward = std::move(backward);
  out.impl()->grad_fn = std::move(n);
  out.impl()->requires_grad = true;
  return out;
}

}  // namespace mscl::autograd
