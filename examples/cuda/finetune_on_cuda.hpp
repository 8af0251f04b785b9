// mscl-finetune's GPU half (finetune_on_cuda.cu; see cuda_placement.hpp for the arrangement).
#pragma once
#include <functional>

#include <mscl/core/rng.hpp>
#include <mscl/core/tensor.hpp>
#include <mscl/eval/classification.hpp>
#include <mscl/eval/finetune.hpp>

#include "cuda_placement.hpp"

namespace mscl::programs {

/// A fine-tuning training set seen through host functions (eval::finetune's TrainSource).
struct host_train_source {
  index_t videos = 0;
  std::function<index_t(index_t)> label_of;
  std::function<tensor<float>(index_t, generator&)> sample_of;  ///< 3×T×H×W, host
  index_t size() const { return videos; }
  index_t label(index_t i) const { return label_of(i); }
  tensor<float> sample(index_t i, generator& gen) const { return sample_of(i, gen); }
};

/// A test set seen through host functions (eval::evaluate's Source).
struct host_test_source {
  index_t videos = 0, views_each = 0;
  std::function<index_t(index_t)> label_of;
  std::function<tensor<float>(index_t)> views_of;  ///< views×3×T×H×W, host
  index_t size() const { return videos; }
  index_t views_per_video() const { return views_each; }
  index_t label(index_t i) const { return label_of(i); }
  tensor<float> views(index_t i) const { return views_of(i); }
};

/// Fine-tuning on the GPU: a device classifier with `initial`'s options and weights (the program
/// loads the pretrained backbone on the host, with the CPU path's checks and messages), trained by
/// eval::finetune (which writes the same files as on the CPU).
eval::finetune_result finetune_on_cuda(const eval::video_classifier<float, cpu>& initial, const host_train_source& train,
                                       const host_test_source* test, eval::finetune_options options,
                                       const cuda_placement& placement);

}  // namespace mscl::programs
