/// \file layers.hpp
/// \brief Parameter-owning layers with PyTorch names: conv3d (weight[, bias]), batch_norm
///        (weight, bias, running_mean, running_var, num_batches_tracked), linear (weight, bias).
#pragma once
#include "../ops/conv.hpp"
#include "../ops/linalg.hpp"
#include "../ops/norm.hpp"
#include "init.hpp"
#include "module.hpp"

namespace mscl::nn {

using ops::triple;

struct conv3d_options {
  index_t in_channels = 0, out_channels = 0;
  triple kernel{3, 3, 3}, stride{1, 1, 1}, padding{0, 0, 0};
  bool bias = false;
};

template <class T, class B = cpu>
class conv3d : public module<T, B> {
 public:
  using tensor_t = tensor<T, B>;
  /// Weights drawn with PyTorch's default Conv3d init; models re-initialise as they need.
  conv3d(const conv3d_options& o, generator& gen) : options_(o) {
    MSCL_CHECK(o.in_channels > 0 && o.out_channels > 0, value_error,
               "nn::conv3d: channel counts must be positive, got in=" << o.in_channels << " out=" << o.out_channels);
    weight = this->register_parameter(
        "weight", tensor_t::empty({o.out_channels, o.in_channels, o.kernel[0], o.kernel[1], o.kernel[2]}));
    init::default_weight_(weight, gen);
    if (o.bias) {
      bias = this->register_parameter("bias", tensor_t::empty({o.out_channels}));
      init::default_bias_(bias, weight, gen);
    }
  }
  tensor_t forward(const tensor_t& x) const { return ops::conv3d(x, weight, bias, options_.stride, options_.padding); }
  const conv3d_options& options() const { return options_; }

  tensor_t weight, bias;

 private:
  conv3d_options options_;
};

struct batch_norm_options {
  index_t num_features = 0;
  double eps = 1e-5, momentum = 0.1;
};

/// BatchNorm over channel axis 1 (works for 2-d and 3-d inputs alike).
template <class T, class B = cpu>
class batch_norm : public module<T, B> {
 public:
  using tensor_t = tensor<T, B>;
  explicit batch_norm(const batch_norm_options& o) : options_(o) {
    MSCL_CHECK(o.num_features > 0, value_error, "nn::batch_norm: num_features must be positive, got " << o.num_features);
    weight = this->register_parameter("weight", tensor_t::ones({o.num_features}));
    bias = this->register_parameter("bias", tensor_t::zeros({o.num_features}));
    running_mean = this->register_buffer("running_mean", tensor_t::zeros({o.num_features}));
    running_var = this->register_buffer("running_var", tensor_t::ones({o.num_features}));
    num_batches_tracked = this->register_buffer("num_batches_tracked", tensor_t::zeros({}), /*is_integer=*/true);
  }
  tensor_t forward(const tensor_t& x, bool fuse_relu = false) {
    if (this->is_training()) {
      if constexpr (std::is_same_v<B, cuda>) backend::cuda_ops<B>::add_scalar_inplace(num_batches_tracked, T(1));
      else num_batches_tracked.data()[0] += T(1);
    }
    if (fuse_relu)
      return ops::batch_norm_relu(x, weight, bias, running_mean, running_var, this->is_training(), options_.momentum,
                                  options_.eps);
    return ops::batch_norm(x, weight, bias, running_mean, running_var, this->is_training(), options_.momentum,
                           options_.eps);
  }

  tensor_t weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  batch_norm_options options_;
};

template <class T, class B = cpu>
class linear : public module<T, B> {
 public:
  using tensor_t = tensor<T, B>;
  linear(index_t in_features, index_t out_features, generator& gen, bool with_bias = true) {
    MSCL_CHECK(in_features > 0 && out_features > 0, value_error,
               "nn::linear: sizes must be positive, got " << in_features << "→" << out_features);
    weight = this->register_parameter("weight", tensor_t::empty({out_features, in_features}));
    init::default_weight_(weight, gen);
    if (with_bias) {
      bias = this->register_parameter("bias", tensor_t::empty({out_features}));
      init::default_bias_(bias, weight, gen);
    }
  }
  tensor_t forward(const tensor_t& x) const { return ops::linear(x, weight, bias); }

  tensor_t weight, bias;
};

}  // namespace mscl::nn
