// mscl-retrieve's and mscl-extract-features' GPU half (features_on_cuda.cu; see cuda_placement.hpp for
// the arrangement).
#pragma once
#include <functional>

#include <mscl/core/tensor.hpp>
#include <mscl/models/video_resnet.hpp>

#include "cuda_placement.hpp"

namespace mscl::programs {

/// eval's feature extractors take a `Net` (features / eval / train / is_training); this one runs
/// a feature function, e.g. the GPU one below, so that the same extraction code serves both devices.
struct feature_function_net {
  std::function<tensor<float>(const tensor<float>&)> run;
  bool training = false;
  tensor<float> features(const tensor<float>& clips) { return run(clips); }
  bool is_training() const { return training; }
  void eval() { training = false; }
  void train(bool on = true) { training = on; }
};

/// Pooled backbone features on the GPU for the retrieval and feature programs: returns a function
/// from host clips (n×3×T×H×W) to host features (n×D) computed by a device copy of `backbone`
/// in eval mode under no_grad. One overload per architecture the programs load.
using host_feature_function = std::function<tensor<float>(const tensor<float>&)>;
host_feature_function cuda_feature_function(const models::r3d_18_t<float, cpu>& backbone, const cuda_placement& placement);
host_feature_function cuda_feature_function(const models::r3d_10_t<float, cpu>& backbone, const cuda_placement& placement);
host_feature_function cuda_feature_function(const models::r3d_34_t<float, cpu>& backbone, const cuda_placement& placement);
host_feature_function cuda_feature_function(const models::r2d_18_flow_t<float, cpu>& backbone,
                                            const cuda_placement& placement);

}  // namespace mscl::programs
