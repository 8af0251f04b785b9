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
/// Likewise RGB views may arrive cropped and flipped only, with a table of the photometric
/// augmentation the loader drew (`mscl_clip_options::rgb_photometric = false`,
/// `ssl::mscl_batch::rgb_photometric_q/k`): jitter, grey, blur and normalisation then run on `B`
/// (augment/photometric_batch.hpp), whatever the options say — a batch with tables must get them.
///
/// The batch of iteration i is still a function of i alone (the wrapped source's contract), so
/// resumed runs stay exact.
///
/// The copy. On the cpu tag there is none (the host batch is handed over as it is). On the cuda
/// tag with `on_backend_options::overlap_copies` (the default), after handing out the batch of
/// iteration i the wrapper prepares iteration i+1 in a background thread while the GPU runs step
/// i: it asks the wrapped source for it, copies it into a pinned host buffer and from there, on
/// a copy stream of its own, into a device staging buffer of its own; batch(i+1) then only waits
/// for that copy and copies staging → the batch's tensors on the compute stream (device to
/// device). About 180 MB per batch of 32 at the paper's shapes no longer pass through a
/// synchronous pageable copy while the GPU waits (backend/cuda/batch_prefetch.hpp has the
/// streams, events and buffers). Consequences: the wrapped source is called from that thread
/// (never concurrently: while a batch is being prepared only the thread calls it), it is asked
/// for one batch beyond the last one the loop uses (the destructor waits for that call), and
/// asking for another iteration than the next one (resume, a jump) copies that one
/// synchronously and prepares from there. A failure while preparing iteration i is re-thrown by
/// batch(i), its type kept and its message prefixed with the iteration. One consumer thread;
/// the cuda wrapper owns buffers and a thread, so it is movable but not copyable.
/// `overlap_copies = false` (or the cpu tag) keeps the synchronous copy from pageable memory;
/// MSCL_OVERLAP_COPIES=0 in the environment makes that the default (the programs' switch).
#pragma once
#include <cstdlib>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "../augment/flow_color_batch.hpp"
#include "../augment/photometric_batch.hpp"
#include "../ssl/mscl_objective.hpp"
#if defined(MSCL_WITH_CUDA) && defined(__CUDACC__)
#include "../backend/cuda/batch_prefetch.hpp"
#endif

namespace mscl::data {

struct on_backend_options {
  /// The wrapped source's flows are raw N×2×T×H×W: colour-code them on the target backend.
  bool color_code_flow = false;
  bool fast_atan2 = false;  ///< the coding's atan2 (augment::flow_color_code_options::fast_atan2)
  /// cuda tag only (ignored on cpu): prepare and copy the next iteration's batch in the background,
  /// through pinned memory on a copy stream, while the GPU trains on this one. false = one
  /// synchronous pageable copy per tensor as the loop asks for the batch. Default true; the
  /// environment variable MSCL_OVERLAP_COPIES=0 (or off, false) makes the default false, which
  /// turns the overlap off in the programs (`mscl-pretrain --device cuda`) without a rebuild.
  bool overlap_copies = overlap_copies_default();

  static bool overlap_copies_default() {
    const char* v = std::getenv("MSCL_OVERLAP_COPIES");
    if (!v) return true;
    const std::string s(v);
    return !(s == "0" || s == "off" || s == "false");
  }
};

/// How batches reached the backend (cuda with overlap_copies; all zero otherwise).
struct on_backend_stats {
  long overlapped = 0;   ///< prepared and copied in the background
  long synchronous = 0;  ///< copied on request: the first batch and each one after a jump
  long discarded = 0;    ///< prepared batches dropped because another iteration was asked for
};

namespace detail {
/// The overlap machinery of on_backend_source: none for the cpu tag (an empty base: no cost) and
/// wherever the cuda backend is not compiled in (host compilers).
template <class B, class Source>
struct on_backend_overlap {
  static constexpr bool available = false;
};
#if defined(MSCL_WITH_CUDA) && defined(__CUDACC__)
template <class Source>
struct on_backend_overlap<cuda, Source> {
  using source_batch = std::decay_t<decltype(std::declval<Source&>().batch(0L))>;
  using value_type = typename std::decay_t<decltype(std::declval<source_batch&>().rgb_q)>::value_type;
  /// Only host batches go through the staging; a source already on the device is handed over.
  static constexpr bool available = std::is_same_v<source_batch, ssl::mscl_batch<value_type, cpu>>;

  auto overlapped_batch(Source& source, long iteration) const {
    if (!prefetcher) {
      Source* s = &source;  // the wrapped source outlives the wrapper (and does not move with it)
      prefetcher = std::make_unique<cuda_backend::batch_prefetcher<value_type>>([s](long i) { return s->batch(i); });
    }
    return prefetcher->batch(iteration);
  }
  on_backend_stats overlap_stats() const {
    on_backend_stats s;
    if (prefetcher) {
      const auto& p = prefetcher->stats();
      s.overlapped = p.overlapped;
      s.synchronous = p.synchronous;
      s.discarded = p.discarded;
    }
    return s;
  }

 private:
  mutable std::unique_ptr<cuda_backend::batch_prefetcher<value_type>> prefetcher;  // made by the first batch()
};
#endif
}  // namespace detail

template <class B, class Source>
class on_backend_source : private detail::on_backend_overlap<B, Source> {
  using overlap = detail::on_backend_overlap<B, Source>;

 public:
  explicit on_backend_source(Source& host_source, on_backend_options o = {}) : source_(host_source), o_(o) {}

  auto batch(long iteration) const {
    auto b = on_target(iteration);
    // RGB views the loader left without their photometric augmentation (rgb_photometric = false)
    // get it here, on B, from the tables it drew.
    if (b.rgb_photometric_q.defined()) b.rgb_q = augment::photometric_batch(b.rgb_q, b.rgb_photometric_q);
    if (b.rgb_photometric_k.defined()) b.rgb_k = augment::photometric_batch(b.rgb_k, b.rgb_photometric_k);
    b.rgb_photometric_q = b.rgb_photometric_k = tensor<float, cpu>();
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

  /// How the batches reached the device (cuda tag with overlap_copies; all zero otherwise).
  on_backend_stats stats() const {
    if constexpr (overlap::available) return this->overlap_stats();
    else return {};
  }

 private:
  auto on_target(long iteration) const {
    if constexpr (overlap::available)
      if (o_.overlap_copies) return this->overlapped_batch(source_, iteration);
    return ssl::batch_on_backend<B>(source_.batch(iteration));
  }

  Source& source_;
  on_backend_options o_;
};

/// on_backend_source<B, Source> with Source deduced: `data::batches_on_backend<cuda>(loader)`
/// (returned as a prvalue: no copy or move happens).
template <class B, class Source>
on_backend_source<B, Source> batches_on_backend(Source& host_source, on_backend_options o = {}) {
  return on_backend_source<B, Source>(host_source, o);
}

}  // namespace mscl::data
