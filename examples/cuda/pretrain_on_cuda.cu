// mscl-pretrain --device cuda (see cuda_placement.hpp).
#include <mscl/data/on_backend_source.hpp>

#include "pretrain_on_cuda.hpp"
#include "device_setup.cuh"

namespace mscl::programs {

namespace {
struct function_source {  // the program's host batches as a batch source
  const std::function<ssl::mscl_batch<float, cpu>(long)>& make;
  ssl::mscl_batch<float, cpu> batch(long iteration) const { return make(iteration); }
};
}  // namespace

train::pretrain_result pretrain_on_cuda(const ssl::mscl_options& objective_options,
                                        const std::function<ssl::mscl_batch<float, cpu>(long)>& host_batch,
                                        train::pretrain_options options, const cuda_placement& placement,
                                        const data::on_backend_options& transfer,
                                        const std::function<void(std::size_t)>& on_objective) {
  const int device = detail::placed_device(placement);
  options.comm = detail::device_communicator(options.comm, placement, device);
  ssl::mscl_objective<float, cuda> objective(objective_options);
  if (on_objective) on_objective(objective.trainable_parameters().size());
  function_source host{host_batch};
  const auto device_batches = data::batches_on_backend<cuda>(host, transfer);
  return train::pretrain(objective, device_batches, options);
}

}  // namespace mscl::programs
