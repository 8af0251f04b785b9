/// \file video_resnet.hpp
/// \brief `video_resnet`: torchvision's VideoResNet composed from policy types (block, conv
///        builder, stem, depths, width), with torchvision's parameter and buffer names, so a
///        torchvision state dict maps one to one. Aliases: r3d_18 / r3d_10 / r3d_34, the narrow
///        r3d_tiny for tests and demos, and MSCL's flow backbone r2d_18_flow (ALGORITHM.md §1.2).
///
/// Layout: input n×3×t×h×w (ncthw). Feature taps (stem, layer1..layer4) are returned by
/// `forward_features`; the MSCL neck uses layers 2–4 of the RGB net and LMCL layer4 of the
/// flow net.
#pragma once
#include <array>
#include <memory>
#include <string>

#include "../nn/layers.hpp"
#include "../ops/elementwise.hpp"
#include "../ops/pool.hpp"

namespace mscl::models {

using ops::triple;

// ---------------------------------------------------------------- conv builder policies
/// torchvision Conv3DSimple: 3×3×3, stride s in time and space.
struct conv3d_simple {
  static triple kernel() { return {3, 3, 3}; }
  static triple padding() { return {1, 1, 1}; }
  static triple stride(index_t s) { return {s, s, s}; }
  static triple downsample_stride(index_t s) { return {s, s, s}; }
};
/// MSCL flow backbone: (1,3,3) kernels, no temporal mixing and no temporal stride.
struct conv2d_no_temporal {
  static triple kernel() { return {1, 3, 3}; }
  static triple padding() { return {0, 1, 1}; }
  static triple stride(index_t s) { return {1, s, s}; }
  static triple downsample_stride(index_t s) { return {1, s, s}; }
};

// ---------------------------------------------------------------- stem policies
/// torchvision BasicStem: conv (3,7,7) stride (1,2,2) pad (1,3,3), no max-pool.
struct basic_stem {
  static triple kernel() { return {3, 7, 7}; }
  static triple stride() { return {1, 2, 2}; }
  static triple padding() { return {1, 3, 3}; }
};
/// MSCL flow stem: conv (1,7,7) stride (2,2,2) pad (0,3,3): sees flow frames 0,2,4,6 (§1.2, A13).
struct flow_stem {
  static triple kernel() { return {1, 7, 7}; }
  static triple stride() { return {2, 2, 2}; }
  static triple padding() { return {0, 3, 3}; }
};

/// Blocks per stage.
template <int D1, int D2, int D3, int D4>
struct depths {
  static constexpr std::array<int, 4> value{D1, D2, D3, D4};
};

/// Conv + BN as torchvision's Sequential(conv, bn[, relu]): children "0" and "1".
template <class T, class B>
class conv_bn : public nn::module<T, B> {
 public:
  conv_bn(const nn::conv3d_options& o, generator& gen) {
    conv = this->register_module("0", std::make_shared<nn::conv3d<T, B>>(o, gen));
    bn = this->register_module("1", std::make_shared<nn::batch_norm<T, B>>(nn::batch_norm_options{o.out_channels}));
  }
  tensor<T, B> forward(const tensor<T, B>& x, bool with_relu) { return bn->forward(conv->forward(x), with_relu); }
  std::shared_ptr<nn::conv3d<T, B>> conv;
  std::shared_ptr<nn::batch_norm<T, B>> bn;
};

/// torchvision BasicBlock (expansion 1): conv1 (conv-bn-relu), conv2 (conv-bn), optional
/// downsample (1×1×1 conv-bn), add, relu.
template <class ConvBuilder>
struct basic_block {
  template <class T, class B>
  class type : public nn::module<T, B> {
   public:
    type(index_t in_planes, index_t planes, index_t stride, generator& gen) {
      conv1 = this->register_module("conv1", std::make_shared<conv_bn<T, B>>(
          nn::conv3d_options{in_planes, planes, ConvBuilder::kernel(), ConvBuilder::stride(stride), ConvBuilder::padding()}, gen));
      conv2 = this->register_module("conv2", std::make_shared<conv_bn<T, B>>(
          nn::conv3d_options{planes, planes, ConvBuilder::kernel(), ConvBuilder::stride(1), ConvBuilder::padding()}, gen));
      if (stride != 1 || in_planes != planes)
        downsample = this->register_module("downsample", std::make_shared<conv_bn<T, B>>(
            nn::conv3d_options{in_planes, planes, {1, 1, 1}, ConvBuilder::downsample_stride(stride), {0, 0, 0}}, gen));
    }
    tensor<T, B> forward(const tensor<T, B>& x) {
      tensor<T, B> out = conv2->forward(conv1->forward(x, true), false);
      tensor<T, B> identity = downsample ? downsample->forward(x, false) : x;
      return ops::relu(ops::add(out, identity));
    }
    std::shared_ptr<conv_bn<T, B>> conv1, conv2, downsample;
  };
};

/// What a forward pass can hand back besides the output.
template <class T, class B>
struct video_resnet_taps {
  tensor<T, B> stem, layer1, layer2, layer3, layer4;
};

/// VideoResNet<Block, ConvBuilder, Stem, Depths> of base width `width` (64 for torchvision).
/// num_classes = 0 builds no fc: forward() then returns the pooled features.
template <class T, class B, class Block, class Stem, class Depths>
class video_resnet : public nn::module<T, B> {
 public:
  using tensor_t = tensor<T, B>;
  using block_t = typename Block::template type<T, B>;

  struct options {
    index_t num_classes = 400;
    index_t width = 64;
    index_t in_channels = 3;
    std::uint64_t seed = 0;
    /// Blocks per stage at run time; all zero = the type's `Depths` (so r3d_18_t can also build
    /// the one-block-per-stage R3D-10 of a configuration file without another type).
    std::array<int, 4> stage_depths{0, 0, 0, 0};
  };

  /// Stage depths of the usual names: 10 → 1,1,1,1; 18 → 2,2,2,2; 34 → 3,4,6,3.
  static std::array<int, 4> depths_for(int depth) {
    MSCL_CHECK(depth == 10 || depth == 18 || depth == 34, value_error,
               "video_resnet: depth must be 10, 18 or 34, got " << depth);
    return depth == 10 ? std::array<int, 4>{1, 1, 1, 1} : depth == 18 ? std::array<int, 4>{2, 2, 2, 2} : std::array<int, 4>{3, 4, 6, 3};
  }

  explicit video_resnet(const options& o) : options_(o) {
    MSCL_CHECK(o.width > 0 && o.num_classes >= 0 && o.in_channels > 0, value_error,
               "video_resnet: invalid options width=" << o.width << " num_classes=" << o.num_classes);
    generator gen(o.seed);
    stem = this->register_module("stem", std::make_shared<conv_bn<T, B>>(
        nn::conv3d_options{o.in_channels, o.width, Stem::kernel(), Stem::stride(), Stem::padding()}, gen));
    index_t in_planes = o.width;
    const bool runtime_depths = o.stage_depths != std::array<int, 4>{0, 0, 0, 0};
    for (int d : o.stage_depths)
      MSCL_CHECK(d >= 0 && (d > 0 || !runtime_depths), value_error, "video_resnet: stage depths must all be positive (or all 0)");
    for (int s = 0; s < 4; ++s) {
      const index_t planes = o.width << s;
      auto layer = std::make_shared<nn::module<T, B>>();
      auto& blocks = stages_[std::size_t(s)];
      const int depth = runtime_depths ? o.stage_depths[std::size_t(s)] : Depths::value[std::size_t(s)];
      for (int b = 0; b < depth; ++b) {
        const index_t stride = (s > 0 && b == 0) ? 2 : 1;
        blocks.push_back(std::make_shared<block_t>(in_planes, planes, stride, gen));
        in_planes = planes;
      }
      stage_modules_[std::size_t(s)] = this->register_module("layer" + std::to_string(s + 1),
                                                             std::make_shared<stage_module>(blocks));
    }
    feature_dim_ = in_planes;
    if (o.num_classes > 0) fc = this->register_module("fc", std::make_shared<nn::linear<T, B>>(in_planes, o.num_classes, gen));
    reset_parameters(gen);
  }

  /// torchvision VideoResNet init: conv kaiming_normal(fan_out, relu), BN γ=1 β=0, fc N(0, 0.01)
  /// with zero bias.
  void reset_parameters(generator& gen) {
    for (auto& [name, p] : this->named_parameters()) {
      const bool is_bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
      if (name.rfind("fc.", 0) == 0) {
        if (is_bias) p.fill_(T(0));
        else nn::init::normal_(p, 0.0, 0.01, gen);
      } else if (p.dim() == 5) {
        nn::init::kaiming_normal_fan_out_(p, gen);
      } else {
        p.fill_(is_bias ? T(0) : T(1));  // BN γ, β
      }
    }
  }

  /// Runs the backbone; fills `taps` if given.
  tensor_t forward_backbone(const tensor_t& x, video_resnet_taps<T, B>* taps = nullptr) {
    MSCL_CHECK(x.dim() == 5 && x.shape()[1] == options_.in_channels, shape_error,
               "video_resnet: expected input (n, " << options_.in_channels << ", t, h, w), got " << to_string(x.shape()));
    tensor_t h = stem->forward(x, true);
    if (taps) taps->stem = h;
    for (int s = 0; s < 4; ++s) {
      for (auto& blk : stages_[std::size_t(s)]) h = blk->forward(h);
      if (taps) (s == 0 ? taps->layer1 : s == 1 ? taps->layer2 : s == 2 ? taps->layer3 : taps->layer4) = h;
    }
    return h;
  }
  /// Global-average-pooled features, n × feature_dim().
  tensor_t features(const tensor_t& x, video_resnet_taps<T, B>* taps = nullptr) {
    return ops::global_avg_pool(forward_backbone(x, taps));
  }
  /// Logits (n × num_classes), or the pooled features when there is no fc.
  tensor_t forward(const tensor_t& x, video_resnet_taps<T, B>* taps = nullptr) {
    tensor_t f = features(x, taps);
    return fc ? fc->forward(f) : f;
  }

  index_t feature_dim() const { return feature_dim_; }
  const options& config() const { return options_; }

  std::shared_ptr<conv_bn<T, B>> stem;
  std::shared_ptr<nn::linear<T, B>> fc;

 private:
  class stage_module : public nn::module<T, B> {
   public:
    explicit stage_module(const std::vector<std::shared_ptr<block_t>>& blocks) {
      for (std::size_t i = 0; i < blocks.size(); ++i) this->register_module(std::to_string(i), blocks[i]);
    }
  };
  options options_;
  index_t feature_dim_ = 0;
  std::array<std::vector<std::shared_ptr<block_t>>, 4> stages_;
  std::array<std::shared_ptr<nn::module<T, B>>, 4> stage_modules_;
};

// ---------------------------------------------------------------- aliases
template <class T = float, class B = cpu>
using r3d_18_t = video_resnet<T, B, basic_block<conv3d_simple>, basic_stem, depths<2, 2, 2, 2>>;
template <class T = float, class B = cpu>
using r3d_10_t = video_resnet<T, B, basic_block<conv3d_simple>, basic_stem, depths<1, 1, 1, 1>>;
template <class T = float, class B = cpu>
using r3d_34_t = video_resnet<T, B, basic_block<conv3d_simple>, basic_stem, depths<3, 4, 6, 3>>;
template <class T = float, class B = cpu>
using r2d_18_flow_t = video_resnet<T, B, basic_block<conv2d_no_temporal>, flow_stem, depths<2, 2, 2, 2>>;

/// torchvision r3d_18 (33,371,472 parameters with 400 classes).
template <class T = float, class B = cpu>
r3d_18_t<T, B> r3d_18(index_t num_classes = 400, std::uint64_t seed = 0, index_t width = 64) {
  return r3d_18_t<T, B>({num_classes, width, 3, seed});
}
template <class T = float, class B = cpu>
r3d_10_t<T, B> r3d_10(index_t num_classes = 400, std::uint64_t seed = 0, index_t width = 64) {
  return r3d_10_t<T, B>({num_classes, width, 3, seed});
}
template <class T = float, class B = cpu>
r3d_34_t<T, B> r3d_34(index_t num_classes = 400, std::uint64_t seed = 0, index_t width = 64) {
  return r3d_34_t<T, B>({num_classes, width, 3, seed});
}
/// A narrow, shallow R3D (width 8, one block per stage) for tests and tiny demos.
template <class T = float, class B = cpu>
r3d_10_t<T, B> r3d_tiny(index_t num_classes = 10, std::uint64_t seed = 0, index_t width = 8) {
  return r3d_10_t<T, B>({num_classes, width, 3, seed});
}
/// MSCL's flow backbone (ALGORITHM.md §1.2): width 16, (1,3,3) convs, 128-d features, no fc.
template <class T = float, class B = cpu>
r2d_18_flow_t<T, B> r2d_18_flow(index_t num_classes = 0, std::uint64_t seed = 0, index_t width = 16) {
  return r2d_18_flow_t<T, B>({num_classes, width, 3, seed});
}

}  // namespace mscl::models
