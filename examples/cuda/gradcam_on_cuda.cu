// mscl-gradcam --device cuda (see cuda_placement.hpp).
#include "gradcam_on_cuda.hpp"
#include "device_setup.cuh"

namespace mscl::programs {

host_gradcam_function cuda_gradcam_function(const eval::video_classifier<float, cpu>& classifier,
                                            const cuda_placement& placement) {
  detail::placed_device(placement);
  auto device_classifier = std::make_shared<eval::video_classifier<float, cuda>>(classifier.options());
  copy_state(classifier, *device_classifier);
  return [device_classifier](const tensor<float>& clip, index_t target) {
    return eval::gradcam(*device_classifier, on_backend<cuda>(clip), target);
  };
}

}  // namespace mscl::programs
