// mscl-retrieve / mscl-extract-features --device cuda (see cuda_placement.hpp).
#include "features_on_cuda.hpp"
#include "device_setup.cuh"

namespace mscl::programs {

std::function<tensor<float>(const tensor<float>&)> cuda_feature_function(const models::r3d_18_t<float, cpu>& backbone,
                                                                         const cuda_placement& placement) {
  detail::placed_device(placement);
  using device_net = models::r3d_18_t<float, cuda>;
  const auto& c = backbone.config();
  auto net = std::make_shared<device_net>(typename device_net::options{c.num_classes, c.width, c.in_channels, c.seed, c.stage_depths});
  copy_state(backbone, *net);
  net->eval();
  return [net](const tensor<float>& clips) {
    no_grad guard;
    return on_backend<cpu>(net->features(on_backend<cuda>(clips)));
  };
}

}  // namespace mscl::programs
