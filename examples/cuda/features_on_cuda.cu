// mscl-retrieve / mscl-extract-features --device cuda (see cuda_placement.hpp).
#include "features_on_cuda.hpp"
#include "device_setup.cuh"

namespace mscl::programs {

namespace {
/// The same architecture on the cuda tag.
template <class HostNet>
struct on_cuda;
template <class T, class Block, class Stem, class Depths>
struct on_cuda<models::video_resnet<T, cpu, Block, Stem, Depths>> {
  using type = models::video_resnet<T, cuda, Block, Stem, Depths>;
};

template <class HostNet>
host_feature_function device_feature_function(const HostNet& backbone, const cuda_placement& placement) {
  detail::placed_device(placement);
  using device_net = typename on_cuda<HostNet>::type;
  const auto& c = backbone.config();
  auto net = std::make_shared<device_net>(typename device_net::options{c.num_classes, c.width, c.in_channels, c.seed, c.stage_depths});
  copy_state(backbone, *net);
  net->eval();
  return [net](const tensor<float>& clips) {
    no_grad guard;
    return on_backend<cpu>(net->features(on_backend<cuda>(clips)));
  };
}
}  // namespace

host_feature_function cuda_feature_function(const models::r3d_18_t<float, cpu>& backbone, const cuda_placement& placement) {
  return device_feature_function(backbone, placement);
}
host_feature_function cuda_feature_function(const models::r3d_10_t<float, cpu>& backbone, const cuda_placement& placement) {
  return device_feature_function(backbone, placement);
}
host_feature_function cuda_feature_function(const models::r3d_34_t<float, cpu>& backbone, const cuda_placement& placement) {
  return device_feature_function(backbone, placement);
}
host_feature_function cuda_feature_function(const models::r2d_18_flow_t<float, cpu>& backbone,
                                            const cuda_placement& placement) {
  return device_feature_function(backbone, placement);
}

}  // namespace mscl::programs
