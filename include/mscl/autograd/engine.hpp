/// \file engine.hpp
/// \brief The reverse-mode pass: topological order over the recorded graph, gradient
///        accumulation, and release of saved tensors as soon as a node has run.
///
/// Gradient-ready hook (data parallelism, dist/gradient_buckets.hpp): while a
/// `scoped_grad_ready_hook` is installed on the calling thread, `run_backward` calls it once per
/// leaf that requires grad as soon as that leaf's gradient is final — after the last node with
/// an edge to it has run (whether or not that node produced a gradient for it; the leaf's
/// `grad()` may then be undefined). Leaves outside the graph are never reported. The calls come
/// in an order that depends only on the graph's structure, so ranks running the same model
/// report the same leaves in the same order. Without a hook (the default) the pass is unchanged:
/// no counting, one thread-local pointer test per backward.
#pragma once
#include <functional>
#include <unordered_map>
#include <unordered_set>
#include <utility>
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
  if constexpr (std::is_same_v<Backend, cuda>) {
    backend::cuda_ops<Backend>::accumulate(acc, g);
    return;
  } else {
  const tensor<T, Backend> gc = g.is_contiguous() ? g : g.clone();
  T* a = acc.data();
  const T* b = gc.data();
  const index_t n = acc.numel();
#pragma omp parallel for schedule(static) if (n > 32768)
  for (index_t i = 0; i < n; ++i) a[i] += b[i];
  }
}
}  // namespace detail

/// Called with each leaf whose gradient is final (see the file comment).
template <class T, class Backend>
using grad_ready_fn = std::function<void(const tensor<T, Backend>& leaf)>;

namespace detail {
template <class T, class Backend>
grad_ready_fn<T, Backend>*& grad_ready_slot() {
  thread_local grad_ready_fn<T, Backend>* slot = nullptr;
  return slot;
}
}  // namespace detail

/// Installs `fn` as this thread's gradient-ready hook for tensor<T, Backend> while alive;
/// restores the previous one. `fn` must outlive the scope.
template <class T, class Backend>
class scoped_grad_ready_hook {
 public:
  explicit scoped_grad_ready_hook(grad_ready_fn<T, Backend>& fn)
      : previous_(std::exchange(detail::grad_ready_slot<T, Backend>(), &fn)) {}
  ~scoped_grad_ready_hook() { detail::grad_ready_slot<T, Backend>() = previous_; }
  scoped_grad_ready_hook(const scoped_grad_ready_hook&) = delete;
  scoped_grad_ready_hook& operator=(const scoped_grad_ready_hook&) = delete;

 private:
  grad_ready_fn<T, Backend>* previous_;
};

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

  using node_t = node<T, Backend>;
  grad_ready_fn<T, Backend>* ready_hook = detail::grad_ready_slot<T, Backend>();
  if (!root.impl()->grad_fn) {  // root is a leaf
    detail::accumulate_into(root.impl()->grad, grad_root, root.shape(), "root");
    if (ready_hook) (*ready_hook)(root);
    return;
  }
  // Topological order of nodes (iterative DFS, post-order).
  std::vector<std::shared_ptr<node_t>> order;
  std::unordered_set<node_t*> visited;
  std::vector<std::pair<std::shared_ptr<node_t>, std::size_t>> stack;
  stack.push_back({root.impl()->grad_fn, 0});
  visited.insert(root.impl()->grad_fn.get());
  while (!stack.empty()) {
    auto& top = stack.back();
    MSCL_CHECK(top.first->backward, value_error,
               "backward: the graph was already consumed by an earlier backward pass (node '"
                   << top.first->name << "')");
    const auto& ins = top.first->inputs;
    if (top.second < ins.size()) {
      std::shared_ptr<node_t> child = ins[top.second++].producer;
      if (child && !visited.count(child.get())) {
        visited.insert(child.get());
        stack.push_back({std::move(child), 0});
      }
    } else {
      order.push_back(top.first);
      stack.pop_back();
    }
  }

  // With a hook: how many edges of not-yet-run nodes still point at each leaf.
  std::unordered_map<impl_t*, std::size_t> leaf_edges_left;
  if (ready_hook)
    for (const auto& n : order)
      for (const auto& e : n->inputs)
        if (e.leaf) ++leaf_edges_left[e.leaf.get()];

  std::unordered_map<node_t*, std::shared_ptr<impl_t>> pending;
  pending[root.impl()->grad_fn.get()] = grad_root.clone().impl();

  for (std::size_t k = order.size(); k-- > 0;) {
    node_t* cur = order[k].get();
    auto it = pending.find(cur);
    if (it != pending.end()) {
      tensor_t gout(it->second);
      pending.erase(it);
      std::vector<tensor_t> grads = cur->backward(gout);
      MSCL_CHECK(grads.size() == cur->inputs.size(), value_error,
                 "autograd: backward of '" << cur->name << "' returned " << grads.size() << " gradients for "
                                           << cur->inputs.size() << " inputs");
      for (std::size_t i = 0; i < grads.size(); ++i) {
        const auto& e = cur->inputs[i];
        if (!e.active() || !grads[i].defined()) continue;
        if (e.producer)
          detail::accumulate_into(pending[e.producer.get()], grads[i], e.shape, cur->name);
        else
          detail::accumulate_into(e.leaf->grad, grads[i], e.shape, cur->name);
      }
    }
    if (ready_hook)
      for (const auto& e : cur->inputs)
        if (e.leaf && --leaf_edges_left[e.leaf.get()] == 0) (*ready_hook)(tensor_t(e.leaf));
    // Release saved tensors and edges: the graph is consumed.
    cur->backward = nullptr;
    cur->inputs.clear();
    order[k].reset();
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
