/// \file on_backend_source.hpp
/// \brief A batch source that hands another source's batches to the training loop on backend
///        `B`: the data pipeline (video decoding, augmentation, the prefetching loader) builds
///        host batches, and CUDA training copies each one to the device as the loop asks for it.
///
/// Optionally the flows arrive raw (2 channels: the loader ran with
/// `mscl_clip_options::color_code_flow = false`) and are colour-coded after the copy, on `B`
/// (augment/flow_color_batch.hpp): that moves about half of a loader worker's time per sample to
/// the GPU and copies 2 flow channels instead of 3.
///
/// The batch of iteration i is still a function of i alone (the wrapped source's contract), so
/// resumed runs stay exact. The copy is one host→device transfer per tensor of the batch, from
/// pageable memory and synchronous: the loader's prefetching hides the host side, but the copy
/// itself is not overlapped with the GPU's work on the previous step (at the paper's shapes about
/// 180 MB per batch of 32; scripts/gpu-check.sh measures the program's rate with it).
#pragma once
#include <utility>

#include "../augment/flow_color_batch.hpp"
#include "../ssl/mscl_objective.hpp"

namespace mscl::data {

struct on_backend_options {
  /// The wrapped source's flows are raw N×2×T×H×W: colour-code them on the target backend.
  bool color_code_flow = false;
  bool fast_atan2 = false;  ///< the coding's atan2 (augment::flow_color_code_options::fast_atan2)
};

template <class B, class Source>
class on_backend_source {
 public:
  explicit on_backend_source(Source& host_source, on_backend_options o = {}) : source_(host_source), o_(o) {}

  auto batch(long iteration) const {
    auto b = ssl::batch_on_backend<B>(source_.batch(iteration));
    if (o_.color_code_flow)
      for (auto* f : {&b.flow_q, &b.flow_k, &b.flow_aug_q, &b.flow_aug_k})
        if (f->defined()) {
          MSCL_CHECK(f->dim() == 5 && f->shape()[1] == 2, shape_error,
                     "data::on_backend_source: colour coding expects raw N×2×T×H×W flows (the loader's "
                     "color_code_flow = false), got " << to_string(f->shape()));
          *f = augment::color_code_flow_batch(*f, o_.fast_atan2);
        }
    return b;
  }

 private:
  Source& source_;
  on_backend_options o_;
};

/// on_backend_source<B, Source> with Source deduced: `data::batches_on_backend<cuda>(loader)`.
template <class B, class Source>
on_backend_source<B, Source> batches_on_backend(Source& host_source, on_backend_options o = {}) {
  return on_backend_source<B, Source>(host_source, o);
}

}  // namespace mscl::data
