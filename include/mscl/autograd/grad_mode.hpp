/// \file grad_mode.hpp
/// \brief Thread-local switch for recording the autograd graph, and the `no_grad` scope.
#pragma once

namespace mscl::autograd {

inline bool& grad_enabled_flag() {
  thread_local bool enabled = true;
  return enabled;
}
inline bool is_grad_enabled() { return grad_enabled_flag(); }

/// While alive, ops record no graph (key encoders, feature extraction, evaluation).
class no_grad {
 public:
  no_grad() : previous_(grad_enabled_flag()) { grad_enabled_flag() = false; }
  ~no_grad() { grad_enabled_flag() = previous_; }
  no_grad(const no_grad&) = delete;
  no_grad& operator=(const no_grad&) = delete;

 private:
  bool previous_;
};

/// Re-enables recording inside a no_grad region.
class enable_grad {
 public:
  enable_grad() : previous_(grad_enabled_flag()) { grad_enabled_flag() = true; }
  ~enable_grad() { grad_enabled_flag() = previous_; }
  enable_grad(const enable_grad&) = delete;
  enable_grad& operator=(const enable_grad&) = delete;

 private:
  bool previous_;
};

}  // namespace mscl::autograd

namespace mscl {
using autograd::no_grad;
}  // namespace mscl
