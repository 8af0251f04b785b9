/// \file on_backend_source.hpp
/// \brief A batch source that hands another source's batches to the training loop on backend
///        `B`: the data pipeline (video decoding, augmentation, the prefetching loader) builds
///        host batches, and CUDA training copies each one to the device as the loop asks for it.
///
/// The batch of iteration i is still a function of i alone (the wrapped source's contract), so
/// resumed runs stay exact. The copy is one host→device transfer per tensor of the batch; the
/// loader's prefetching hides the host side, the copy itself is a few MB per step.
#pragma once
#include <utility>

#include "../ssl/mscl_objective.hpp"

namespace mscl::data {

template <class B, class Source>
class on_backend_source {
 public:
  explicit on_backend_source(Source& host_source) : source_(host_source) {}
  auto batch(long iteration) const { return ssl::batch_on_backend<B>(source_.batch(iteration)); }

 private:
  Source& source_;
};

/// on_backend_source<B, Source> with Source deduced: `data::batches_on_backend<cuda>(loader)`.
template <class B, class Source>
on_backend_source<B, Source> batches_on_backend(Source& host_source) {
  return on_backend_source<B, Source>(host_source);
}

}  // namespace mscl::data
