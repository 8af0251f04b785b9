/// \file engine.hpp
/// \brief The reverse-mode pass: topological order over the recorded graph, gradient
///        accumulation, and release of saved tensors as soon as a node has run.
#pragma once
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "../core/tensor.hpp"
#include "node.hpp"

namespace mscl::autograd {

namespace detail {
template <class T, class Backend>
void accumulate_into(std::shared_ptr<tensor_impl<T, Backend>>& slot, const tensor<T, Backend>& g,
                     const shape_t& expected, const std::string& who) {
  MSCL_CHECK(g.shape() == expected, shape_error,
             "autograd: backward of '" << who << "' produced a gradient of shape " << to_string(g.shape())
                                       << " for an input of shape " << to_string(expected));
  // A gradient that nobody else can see is adopted as is; otherwise it is copied, so that
  // in-place accumulation (and in-place clipping of leaf gradients later) never writes through
  // an alias (add() returns the same gradient for both inputs, for instance).
  const bool unique = g.impl().use_count() == 1 && g.impl()->store.use_count() == 1 && g.is_contiguous();
  if (!slot) {
    slot = unique ? g.impl() : g.clone().impl();
    return;
  }
  tensor<T, Backend> acc(slot);
  const tensor<T, Backend> gc = g.is_contiguous() ? g : g.clone();
  T* a = acc.data();
  const T* b = gc.data();
  const index_t n = acc.numel();
#pragma omp parallel for schedule(static) if (n > 32768)
  for (index_t i = 0; i < n; ++i) a[i] += b[i];
}
}  // namespace detail

/// Runs backward from `root` with initial gradient `grad_root` (same shape as root).
/// Leaves that require grad receive their gradient in `grad()` (accumulated across calls).
/// The graph is consumed: saved tensors are released and a second backward through the same
/// graph throws.
template <class T, class Backend>
void run_backward(const tensor<T, Backend>& root, const tensor<T, Backend>& grad_root) {
  using impl_t = tensor_impl<T, Backend>;
  using tensor_t = tensor<T, Backend>;
  MSCL_CHECK(root.requires_grad(), value_error,
             "backward: the tensor does not require grad (no input of its graph requires grad, "
             "or it was computed under no_grad)");
  MSCL_CHECK(grad_root.shape() == root.shape(), shape_error,
             "backward: gradient of shape " << to_string(grad_root.shape()) << " for a tensor of shape "
                                            << to_string(root.shape()));
  no_grad guard;  // backward functions are not themselves recorded

  // Topological order (iterative DFS, post-order), over tensors that have a grad_fn.
  std::vector<impl_t*> order;
  std::unordered_set<impl_t*> visited;
  std::vector<std::pair<impl_t*, std::size_t>> stack;
  if (root.impl()->grad_fn) stack.push_back({root.impl().get(), 0});
  visited.insert(root.impl().get());
  while (!stack.empty()) {
    auto& [cur, next] = stack.back();
    const auto& ins = cur->grad_fn->inputs;
    if (next < ins.size()) {
      impl_t* child = ins[next++].get();
      if (child && child->grad_fn && !visited.count(child)) {
        visited.insert(child);
        stack.push_back({child, 0});
      }
    } else {
      order.push_back(cur);
      stack.pop_back();
    }
  }

  std::unordered_map<impl_t*, std::shared_ptr<impl_t>> pending;
  if (root.impl()->grad_fn) {
    pending[root.impl().get()] = grad_root.clone().impl();
  } else {  // root is a leaf
    detail::accumulate_into(root.impl()->grad, grad_root, root.shape(), "root");
    return;
  }

  for (std::size_t k = order.size(); k-- > 0;) {
    impl_t* cur = order[k];
    auto node_ptr = cur->grad_fn;
    MSCL_CHECK(node_ptr && node_ptr->backward, value_error,
               "backward: the graph was already consumed by an earlier backward pass");
    auto it = pending.find(cur);
    if (it == pending.end()) continue;  // no gradient reached this tensor
    tensor_t gout(it->second);
    pending.erase(it);
    std::vector<tensor_t> grads = node_ptr->backward(gout);
    MSCL_CHECK(grads.size() == node_ptr->inputs.size(), value_error,
               "autograd: backward of '" << node_ptr->name << "' returned " << grads.size()
                                         << " gradients for " << node_ptr->inputs.size() << " inputs");
    for (std::size_t i = 0; i < grads.size(); ++i) {
      const auto& in = node_ptr->inputs[i];
      if (!in || !grads[i].defined()) continue;
      if (in->grad_fn)
        detail::accumulate_into(pending[in.get()], grads[i], in->shape, node_ptr->name);
      else if (in->requires_grad)
        detail::accumulate_into(in->grad, grads[i], in->shape, node_ptr->name);
    }
    // Release saved tensors and the edges: the graph is consumed.
    node_ptr->backward = nullptr;
    node_ptr->inputs.clear();
  }
}

}  // namespace mscl::autograd

namespace mscl {
template <class T, class Backend>
void tensor<T, Backend>::backward() const {
  MSCL_CHECK(numel() == 1, shape_error,
             "backward(): implicit gradient needs a single-element tensor, shape is " << to_string(shape())
                                                                                      << "; pass a gradient");
  autograd::run_backward(*this, tensor::full(shape(), T(1)));
}
template <class T, class Backend>
void tensor<T, Backend>::backward(const tensor& grad_output) const {
  autograd::run_backward(*this, grad_output);
}
}  // namespace mscl
