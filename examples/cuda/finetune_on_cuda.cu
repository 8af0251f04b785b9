// mscl-finetune --device cuda (see cuda_placement.hpp).
#include "finetune_on_cuda.hpp"
#include "device_setup.cuh"

namespace mscl::programs {

eval::finetune_result finetune_on_cuda(const eval::video_classifier<float, cpu>& initial, const host_train_source& train,
                                       const host_test_source* test, eval::finetune_options options,
                                       const cuda_placement& placement) {
  const int device = detail::placed_device(placement);
  options.comm = detail::device_communicator(options.comm, placement, device);
  eval::video_classifier<float, cuda> classifier(initial.options());
  copy_state(initial, classifier);
  return eval::finetune(classifier, train, test, options);
}

}  // namespace mscl::programs
