// mscl-pretrain's GPU half (pretrain_on_cuda.cu; see cuda_placement.hpp for the arrangement).
#pragma once
#include <functional>

#include <mscl/data/on_backend_source.hpp>
#include <mscl/ssl/mscl_objective.hpp>
#include <mscl/train/pretrain.hpp>

#include "cuda_placement.hpp"

namespace mscl::programs {

/// Pretraining on the GPU: the objective is built on the device from `objective_options` (the same
/// initial weights as on the CPU), each iteration's batch comes from `host_batch(i)` (the
/// program's random-pair source or prefetching video loader) and is copied to the device; the
/// loop, logs and checkpoints are train::pretrain's (checkpoints hold host tensors: a GPU run
/// resumes on the CPU and back). `on_objective(trainable tensors)` runs once the objective exists.
/// `transfer.color_code_flow`: the host batches carry raw 2-channel flows, colour-coded on the GPU.
/// Host batches with photometric tables (the loader's rgb_photometric = false) get their RGB
/// jitter/grey/blur/normalisation on the GPU (data::on_backend_source applies any it finds).
train::pretrain_result pretrain_on_cuda(const ssl::mscl_options& objective_options,
                                        const std::function<ssl::mscl_batch<float, cpu>(long)>& host_batch,
                                        train::pretrain_options options, const cuda_placement& placement,
                                        const data::on_backend_options& transfer = {},
                                        const std::function<void(std::size_t)>& on_objective = {});

}  // namespace mscl::programs
