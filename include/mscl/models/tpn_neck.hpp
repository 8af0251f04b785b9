/// \file tpn_neck.hpp
/// \brief `tpn_neck`: MSCL's RGB neck "TPNMoCo" (ALGORITHM.md §1.2) — a 3-D FPN over r3d_18's
///        layer2/3/4 followed by SEPC (stacked PConv layers) — that turns the backbone taps into
///        the frame-level feature P0 (B×128×4×28×28) consumed by LMCL.
///
/// Structure (L = number of levels, 3 by default; level 0 is the finest):
///  1. FPN: lateral_l = Conv3d 1×1×1 (bias) in_channels[l] → C; top-down for l = L−1 … 1:
///     lateral_{l−1} += nearest_resize(lateral_l, size of lateral_{l−1}) (cumulative, as mmdet's
///     FPN); p_l = Conv3d (1,3,3) pad (0,1,1) (bias) C → C of lateral_l. No norm, no activation.
///  2. SEPC: `pconv_num` PConv layers; each owns three Conv3d C → C, kernel 3×3×3, pad 1, bias,
///     shared by all levels: `mid` (stride 1), `from_coarser` (stride 1, applied to the coarser
///     level x_{l+1} and then trilinearly resized up to x_l's size, align_corners = false) and
///     `from_finer` (stride `sepc_stride`, (2,2,2) here, applied to the finer level x_{l−1}, whose
///     stride-2 output has x_l's size). Output level l =
///       ReLU( mid(x_l) + [l>0]·from_finer(x_{l−1}) + [l<L−1]·resize(from_coarser(x_{l+1})) ),
///     summed in that order (mmdet's PConv order). iBN is off (the released config).
///  3. Init: every Conv3d weight Xavier-uniform with gain 1, every bias 0.
///
/// Shapes at r3d_18 with an 8×112×112 clip: inputs 128×4×28×28, 256×2×14×14, 512×1×7×7 →
/// outputs 128×4×28×28, 128×2×14×14, 128×1×7×7. The input sizes must satisfy
/// size_l = floor((size_{l−1} − 1)/stride) + 1 per axis (what a 3×3×3, pad-1 conv of that stride
/// gives), otherwise `from_finer` could not be added; this is checked up front.
///
/// `forward_level0` returns exactly (bit for bit) `forward(...)[0]` but computes only what level 0
/// depends on: level l of PConv k needs levels l−1..l+1 of its input, so the last PConv computes
/// level 0, the one before levels 0..1, and so on; with two PConvs the first computes levels 0..1
/// and the second level 0 only (the FPN still needs every lateral for its top-down path). Both
/// paths evaluate the same ops in the same order, which is why the results are identical.
///
/// Parameter names (state dict, registration order), with the official mmaction/mmdet names
/// they would correspond to — the official names are an educated guess (FPN built from
/// ConvModule, PConv with `pconv[0..2]` = from_coarser, mid, from_finer) and are NOT verified
/// against a checkpoint; loading an official state dict needs a key map:
///   fpn.lateral.{l}.weight / .bias       C×in_channels[l]×1×1×1   (≈ neck.fpn.lateral_convs.{l}.conv.*)
///   fpn.output.{l}.weight / .bias        C×C×1×3×3                (≈ neck.fpn.fpn_convs.{l}.conv.*)
///   sepc.{k}.mid.weight / .bias          C×C×3×3×3                (≈ neck.sepc.pconvs.{k}.pconv.1.*)
///   sepc.{k}.from_coarser.weight / .bias C×C×3×3×3                (≈ neck.sepc.pconvs.{k}.pconv.0.*)
///   sepc.{k}.from_finer.weight / .bias   C×C×3×3×3                (≈ neck.sepc.pconvs.{k}.pconv.2.*)
/// With the defaults that is 6 + 6 FPN tensors and 12 SEPC tensors, 3,212,800 parameters.
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../nn/init.hpp"
#include "../nn/layers.hpp"
#include "../ops/elementwise.hpp"
#include "../ops/resize.hpp"
#include "video_resnet.hpp"

namespace mscl::models {

struct tpn_neck_options {
  std::vector<index_t> in_channels{128, 256, 512};  ///< backbone channels per level, finest first
  index_t channels = 128;                            ///< neck width C
  int pconv_num = 2;                                 ///< stacked PConv layers (0: FPN only)
  triple sepc_stride{2, 2, 2};                       ///< stride of `from_finer` ((1,2,2) in the R50 variant)
  std::uint64_t seed = 0;                            ///< Xavier init stream
};

/// A parameter-less module that only groups children under a dotted-name scope ("fpn", "sepc").
template <class T, class B>
class module_scope : public nn::module<T, B> {
 public:
  template <class M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> m) {
    return this->register_module(name, std::move(m));
  }
};

/// A list of conv3d modules registered as children "0", "1", ... (torch.nn.ModuleList).
template <class T, class B>
class conv3d_list : public nn::module<T, B> {
 public:
  std::shared_ptr<nn::conv3d<T, B>> add(const nn::conv3d_options& o, generator& gen) {
    auto c = this->register_module(std::to_string(items.size()), std::make_shared<nn::conv3d<T, B>>(o, gen));
    items.push_back(c);
    return c;
  }
  std::vector<std::shared_ptr<nn::conv3d<T, B>>> items;
};

/// One SEPC PConv layer: three convolutions shared across levels (see the file comment).
template <class T, class B>
class sepc_pconv : public nn::module<T, B> {
 public:
  using tensor_t = tensor<T, B>;
  sepc_pconv(index_t channels, triple finer_stride, generator& gen) {
    const nn::conv3d_options same{channels, channels, {3, 3, 3}, {1, 1, 1}, {1, 1, 1}, true};
    nn::conv3d_options down = same;
    down.stride = finer_stride;
    mid = this->register_module("mid", std::make_shared<nn::conv3d<T, B>>(same, gen));
    from_coarser = this->register_module("from_coarser", std::make_shared<nn::conv3d<T, B>>(same, gen));
    from_finer = this->register_module("from_finer", std::make_shared<nn::conv3d<T, B>>(down, gen));
  }

  /// Output level l of this layer; x holds (at least) levels 0..min(l+1, num_levels−1) of the
  /// input, num_levels is the total level count (it decides whether a coarser level exists).
  tensor_t forward_level(const std::vector<tensor_t>& x, std::size_t l, std::size_t num_levels) const {
    tensor_t y = mid->forward(x[l]);
    if (l > 0) y = ops::add(y, from_finer->forward(x[l - 1]));
    if (l + 1 < num_levels) {
      const auto& s = x[l].shape();
      y = ops::add(y, ops::interpolate_trilinear3d(from_coarser->forward(x[l + 1]), {s[2], s[3], s[4]}, false));
    }
    return ops::relu(y);
  }

  /// Output levels 0..count−1.
  std::vector<tensor_t> forward(const std::vector<tensor_t>& x, std::size_t count, std::size_t num_levels) const {
    std::vector<tensor_t> out;
    out.reserve(count);
    for (std::size_t l = 0; l < count; ++l) out.push_back(forward_level(x, l, num_levels));
    return out;
  }

  std::shared_ptr<nn::conv3d<T, B>> mid, from_coarser, from_finer;
};

template <class T = float, class B = cpu>
class tpn_neck : public nn::module<T, B> {
 public:
  using tensor_t = tensor<T, B>;
  using options = tpn_neck_options;

  explicit tpn_neck(const options& o = options()) : options_(o) {
    MSCL_CHECK(!o.in_channels.empty(), value_error, "tpn_neck: in_channels must name at least one level");
    for (index_t c : o.in_channels)
      MSCL_CHECK(c > 0, value_error, "tpn_neck: in_channels must be positive, got " << to_string(o.in_channels));
    MSCL_CHECK(o.channels > 0 && o.pconv_num >= 0, value_error,
               "tpn_neck: channels must be positive and pconv_num >= 0, got channels=" << o.channels
                                                                                       << " pconv_num=" << o.pconv_num);
    MSCL_CHECK(o.sepc_stride[0] > 0 && o.sepc_stride[1] > 0 && o.sepc_stride[2] > 0, value_error,
               "tpn_neck: sepc_stride must be positive, got [" << o.sepc_stride[0] << ", " << o.sepc_stride[1]
                                                               << ", " << o.sepc_stride[2] << "]");
    generator gen(o.seed);
    const index_t c = o.channels;
    fpn = this->register_module("fpn", std::make_shared<module_scope<T, B>>());
    lateral = fpn->add("lateral", std::make_shared<conv3d_list<T, B>>());
    output = fpn->add("output", std::make_shared<conv3d_list<T, B>>());
    for (index_t in : o.in_channels) lateral->add({in, c, {1, 1, 1}, {1, 1, 1}, {0, 0, 0}, true}, gen);
    for (std::size_t l = 0; l < o.in_channels.size(); ++l) output->add({c, c, {1, 3, 3}, {1, 1, 1}, {0, 1, 1}, true}, gen);
    sepc = this->register_module("sepc", std::make_shared<module_scope<T, B>>());
    for (int k = 0; k < o.pconv_num; ++k)
      pconvs.push_back(sepc->add(std::to_string(k), std::make_shared<sepc_pconv<T, B>>(c, o.sepc_stride, gen)));
    reset_parameters(gen);
  }

  /// ALGORITHM.md §1.2 init: Conv3d weights Xavier-uniform (gain 1), biases 0, drawn in
  /// parameter-name order from `gen`.
  void reset_parameters(generator& gen) {
    for (auto& [name, p] : this->named_parameters()) {
      if (p.dim() == 5) nn::init::xavier_uniform_(p, gen, 1.0);
      else p.fill_(T(0));
    }
  }

  /// All output levels (finest first), each n×C×t_l×h_l×w_l with the input's level extents.
  std::vector<tensor_t> forward(const std::vector<tensor_t>& inputs) const {
    check_inputs(inputs, "tpn_neck::forward");
    const std::size_t L = levels();
    std::vector<tensor_t> x = forward_fpn_unchecked(inputs, L);
    for (const auto& pc : pconvs) x = pc->forward(x, L, L);
    return x;
  }
  /// forward({layer2, layer3, layer4}) of a video_resnet's taps (needs exactly 3 levels). A
  /// separate name, not an overload: a braced list of three tensors would also initialise the
  /// taps aggregate and make `forward({a, b, c})` ambiguous.
  std::vector<tensor_t> forward_from_taps(const video_resnet_taps<T, B>& taps) const {
    return forward(taps_levels(taps));
  }

  /// Exactly forward(inputs)[0] (P0, what LMCL consumes), computing only what it depends on.
  tensor_t forward_level0(const std::vector<tensor_t>& inputs) const {
    check_inputs(inputs, "tpn_neck::forward_level0");
    const std::size_t L = levels(), P = pconvs.size();
    // need[k]: how many levels PConv k must produce; working backwards from 1 at the last one.
    std::vector<std::size_t> need(P);
    std::size_t n = 1;
    for (std::size_t k = P; k-- > 0;) {
      need[k] = n;
      n = std::min(n + 1, L);
    }
    std::vector<tensor_t> x = forward_fpn_unchecked(inputs, n);
    for (std::size_t k = 0; k < P; ++k) x = pconvs[k]->forward(x, need[k], L);
    return x[0];
  }
  tensor_t forward_level0_from_taps(const video_resnet_taps<T, B>& taps) const {
    return forward_level0(taps_levels(taps));
  }

  /// The FPN part alone (all levels), for tests and for necks without SEPC.
  std::vector<tensor_t> forward_fpn(const std::vector<tensor_t>& inputs) const {
    check_inputs(inputs, "tpn_neck::forward_fpn");
    return forward_fpn_unchecked(inputs, levels());
  }

  std::size_t levels() const { return options_.in_channels.size(); }
  const options& config() const { return options_; }

  std::shared_ptr<module_scope<T, B>> fpn, sepc;          ///< name scopes "fpn" and "sepc"
  std::shared_ptr<conv3d_list<T, B>> lateral, output;     ///< fpn.lateral.{l}, fpn.output.{l}
  std::vector<std::shared_ptr<sepc_pconv<T, B>>> pconvs;  ///< sepc.{k}

 private:
  /// FPN outputs of levels 0..count−1 (every lateral is still computed: the top-down path
  /// carries the coarsest level down to level 0).
  std::vector<tensor_t> forward_fpn_unchecked(const std::vector<tensor_t>& inputs, std::size_t count) const {
    const std::size_t L = levels();
    std::vector<tensor_t> lat(L);
    for (std::size_t l = 0; l < L; ++l) lat[l] = lateral->items[l]->forward(inputs[l]);
    for (std::size_t l = L - 1; l > 0; --l) {
      const auto& s = lat[l - 1].shape();
      lat[l - 1] = ops::add(lat[l - 1], ops::interpolate_nearest3d(lat[l], {s[2], s[3], s[4]}));
    }
    std::vector<tensor_t> out;
    out.reserve(count);
    for (std::size_t l = 0; l < count; ++l) out.push_back(output->items[l]->forward(lat[l]));
    return out;
  }

  std::vector<tensor_t> taps_levels(const video_resnet_taps<T, B>& taps) const {
    MSCL_CHECK(levels() == 3, value_error,
               "tpn_neck: forward_from_taps feeds layer2/3/4 and needs a 3-level neck, this one has " << levels());
    return {taps.layer2, taps.layer3, taps.layer4};
  }

  void check_inputs(const std::vector<tensor_t>& x, const char* who) const {
    const std::size_t L = levels();
    MSCL_CHECK(x.size() == L, shape_error, who << ": expected " << L << " input levels, got " << x.size());
    for (std::size_t l = 0; l < L; ++l) {
      MSCL_CHECK(x[l].defined() && x[l].dim() == 5 && x[l].shape()[1] == options_.in_channels[l] &&
                     x[l].numel() > 0,
                 shape_error,
                 who << ": level " << l << " must be a non-empty (n, " << options_.in_channels[l]
                     << ", t, h, w) tensor, got " << (x[l].defined() ? to_string(x[l].shape()) : "undefined"));
      MSCL_CHECK(x[l].shape()[0] == x[0].shape()[0], shape_error,
                 who << ": batch sizes differ, level 0 " << to_string(x[0].shape()) << " vs level " << l << " "
                     << to_string(x[l].shape()));
      if (l == 0 || pconvs.empty()) continue;
      // from_finer (3×3×3, pad 1, sepc_stride) of level l−1 is added to level l.
      for (int a = 0; a < 3; ++a) {
        const index_t prev = x[l - 1].shape()[std::size_t(2 + a)], cur = x[l].shape()[std::size_t(2 + a)];
        const index_t expect = (prev - 1) / options_.sepc_stride[std::size_t(a)] + 1;
        MSCL_CHECK(cur == expect, shape_error,
                   who << ": level " << l << " " << to_string(x[l].shape()) << " does not match level " << l - 1
                       << " " << to_string(x[l - 1].shape()) << " under SEPC's stride-"
                       << options_.sepc_stride[std::size_t(a)] << " 3x3x3 convolution (expected extent " << expect
                       << " along axis " << 2 + a << ")");
      }
    }
  }

  options options_;
};

}  // namespace mscl::models
