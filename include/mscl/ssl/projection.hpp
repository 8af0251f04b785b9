/// \file projection.hpp
/// \brief The MoCo v2 projection MLP (ALGORITHM.md §1.2): Linear(in→hidden) + ReLU +
///        Linear(hidden→out), biases on, PyTorch default init, optional L2 normalisation of
///        the output (z = norm(mlp(e))).
///
/// Parameter names follow `nn.Sequential(Linear, ReLU, Linear)`: "0.weight", "0.bias",
/// "2.weight", "2.bias" (the ReLU at index 1 owns nothing). Under a parent registered as
/// "mlp_q" or "fc" this gives the usual MoCo v2 keys (`fc.0.weight`, …), so checkpoints map
/// with a key-map prefix rule only.
#pragma once
#include <memory>

#include "../nn/layers.hpp"
#include "../ops/elementwise.hpp"
#include "../ops/reduce.hpp"
#include "../ops/loss.hpp"

namespace mscl::ssl {

template <class T = float, class B = cpu>
class projection_head : public nn::module<T, B> {
 public:
  using tensor_t = tensor<T, B>;

  /// in → hidden → out. `normalize_output`: forward returns rows of unit L2 norm.
  projection_head(index_t in_features, index_t hidden_features, index_t out_features, generator& gen,
                  bool normalize_output = false)
      : normalize_output_(normalize_output) {
    fc1 = this->register_module("0", std::make_shared<nn::linear<T, B>>(in_features, hidden_features, gen));
    fc2 = this->register_module("2", std::make_shared<nn::linear<T, B>>(hidden_features, out_features, gen));
  }

  /// x: N×in → N×out.
  tensor_t forward(const tensor_t& x) const {
    tensor_t y = fc2->forward(ops::relu(fc1->forward(x)));
    return normalize_output_ ? ops::l2_normalize(y, 1) : y;
  }

  bool normalizes_output() const { return normalize_output_; }
  index_t in_features() const { return fc1->weight.shape()[1]; }
  index_t out_features() const { return fc2->weight.shape()[0]; }

  std::shared_ptr<nn::linear<T, B>> fc1;  ///< "0"
  std::shared_ptr<nn::linear<T, B>> fc2;  ///< "2"

 private:
  bool normalize_output_ = false;
};

/// RGB projector of the R18 config: 512 → 512 → 128.
template <class T = float, class B = cpu>
std::shared_ptr<projection_head<T, B>> make_rgb_projection(generator& gen, bool normalize_output = false) {
  return std::make_shared<projection_head<T, B>>(512, 512, 128, gen, normalize_output);
}
/// Flow projector of the R18 config: 128 → 128 → 128.
template <class T = float, class B = cpu>
std::shared_ptr<projection_head<T, B>> make_flow_projection(generator& gen, bool normalize_output = false) {
  return std::make_shared<projection_head<T, B>>(128, 128, 128, gen, normalize_output);
}

}  // namespace mscl::ssl
