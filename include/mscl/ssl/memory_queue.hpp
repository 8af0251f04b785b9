/// \file memory_queue.hpp
/// \brief The MoCo negative queue (ALGORITHM.md §1.4): a D×K ring buffer of past keys with a
///        write pointer and a per-slot age counter giving the age-decay weights w_n = decay^age_n,
///        plus checkpoint state (buffer, ages, pointer).
///
/// Layout: D×K row-major, one key per column, as in MoCo (`queue[:, ptr:ptr+B] = keys.T`), so
/// that the buffer is directly the `bank` operand of `ssl::info_nce`.
///
/// Ages (official MSCL moco.py behaviour): every slot starts at age 0; on every enqueue all ages
/// grow by 1 and then the freshly written slots are set to 1. Weights are decay^age (with
/// K/B = 512 enqueues per cycle the smallest weight is 0.99999^512 ≈ 0.9949).
///
/// Wrap-around: MoCo requires K to be a multiple of the (global) batch. This queue also accepts
/// other batch sizes: key i of a batch goes to column (pointer + i) mod K, in order, and the
/// pointer advances by B mod K — exact FIFO either way, and identical to MoCo when B divides K.
/// A batch larger than K is refused (its first keys would be overwritten by its last ones).
///
/// Copy-on-write: `enqueue` never writes into memory that someone else still holds. If a
/// handle to the buffer is alive (a `snapshot()`, or an autograd graph of `info_nce` that will
/// need the bank in its backward pass), the queue first moves to a fresh copy. This is what makes
/// ALGORITHM.md §1.5's order "loss on the pre-enqueue bank, enqueue, backward later" correct,
/// and what makes §11 A4's "snapshot both banks before any enqueue" free until a write happens.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../core/tensor.hpp"
#include "../nn/module.hpp"

namespace mscl::ssl {

/// Everything needed to restore a queue exactly (deep copies).
template <class T, class B = cpu>
struct memory_queue_state {
  tensor<T, B> buffer;              ///< D×K
  std::vector<std::int64_t> ages;   ///< K
  index_t pointer = 0;              ///< next column to write
};

/// The bank operands of one loss term, frozen at the time of the call.
template <class T, class B = cpu>
struct queue_snapshot {
  tensor<T, B> bank;      ///< D×K, shares memory with the queue until its next enqueue
  tensor<T, B> weights;   ///< K age weights, or undefined when age decay is off
};

template <class T = float, class B = cpu>
class memory_queue {
 public:
  using tensor_t = tensor<T, B>;
  static constexpr double default_decay = 0.99999;

  /// dim × size buffer of i.i.d. N(0,1) entries, each column then L2-normalised; ages 0.
  memory_queue(index_t dim, index_t size, generator& gen) {
    MSCL_CHECK(dim > 0 && size > 0, value_error,
               "ssl::memory_queue: dimension and size must be positive, got D = " << dim << ", K = " << size);
    if constexpr (std::is_same_v<B, cpu>) {
      buffer_ = tensor_t::empty({dim, size});
      gen.fill_normal(buffer_.data(), buffer_.numel(), 0.0, 1.0);
      T* p = buffer_.data();
      for (index_t j = 0; j < size; ++j) {
        double s = 0;
        for (index_t c = 0; c < dim; ++c) s += double(p[c * size + j]) * double(p[c * size + j]);
        const double nrm = std::max(std::sqrt(s), 1e-12);  // F.normalize(dim=0) semantics
        for (index_t c = 0; c < dim; ++c) p[c * size + j] = T(double(p[c * size + j]) / nrm);
      }
    } else {  // device queues start as the host queue of the same generator state, uploaded
      const memory_queue<T, cpu> host(dim, size, gen);
      buffer_ = tensor_t::from_vector({dim, size}, host.buffer().to_vector());
    }
    ages_.assign(std::size_t(size), 0);
  }

  index_t dim() const { return buffer_.shape()[0]; }
  index_t size() const { return buffer_.shape()[1]; }
  index_t pointer() const { return pointer_; }
  /// The D×K bank (a shared handle: holding it makes the next enqueue copy first).
  const tensor_t& buffer() const { return buffer_; }
  const std::vector<std::int64_t>& ages() const { return ages_; }

  /// w_n = decay^{age_n} for every slot, shape [K]. decay = 1 gives ones.
  tensor_t weights(double decay = default_decay) const {
    MSCL_CHECK(decay > 0 && decay <= 1, value_error,
               "ssl::memory_queue::weights: decay must be in (0, 1], got " << decay);
    std::int64_t max_age = 0;
    for (auto a : ages_) max_age = std::max(max_age, a);
    // Ages take at most K/B + 1 distinct values: one pow per value, not per slot.
    std::vector<T> table(std::size_t(max_age) + 1);
    for (std::size_t a = 0; a < table.size(); ++a) table[a] = T(std::pow(decay, double(a)));
    if constexpr (std::is_same_v<B, cpu>) {
      tensor_t w = tensor_t::empty({size()});
      for (std::size_t j = 0; j < ages_.size(); ++j) w.data()[j] = table[std::size_t(ages_[j])];
      return w;
    } else {
      std::vector<T> w(ages_.size());
      for (std::size_t j = 0; j < ages_.size(); ++j) w[j] = table[std::size_t(ages_[j])];
      return tensor_t::from_vector({size()}, w);
    }
  }

  /// The bank and its weights as they are now. decay = 1 disables age weighting (weights left
  /// undefined, so `info_nce` skips the multiply).
  queue_snapshot<T, B> snapshot(double decay = default_decay) const {
    queue_snapshot<T, B> s;
    s.bank = buffer_.detach();
    if (decay != 1.0) s.weights = weights(decay);
    return s;
  }

  /// Writes keys (B×D, one key per row, no gradient is recorded) into the next B columns, in
  /// row order, wrapping around; ages += 1 then written slots = 1; pointer += B (mod K).
  void enqueue(const tensor_t& keys) {
    MSCL_CHECK(keys.defined() && keys.dim() == 2 && keys.shape()[1] == dim(), shape_error,
               "ssl::memory_queue::enqueue: keys must be B×D with D = " << dim() << ", got "
                                                                          << (keys.defined() ? to_string(keys.shape()) : "undefined"));
    const index_t nb = keys.shape()[0], K = size(), D = dim();
    MSCL_CHECK(nb >= 1 && nb <= K, value_error,
               "ssl::memory_queue::enqueue: batch of " << nb << " keys for a queue of K = " << K
                                                       << " slots (need 1 <= B <= K)");
    const tensor_t kc = keys.is_contiguous() ? keys : keys.clone();
    // Copy-on-write: keep memory that a snapshot or an autograd graph still holds intact.
    if (buffer_.impl().use_count() > 1 || buffer_.impl()->store.use_count() > 1) buffer_ = buffer_.clone();
    for (auto& a : ages_) ++a;
    if constexpr (std::is_same_v<B, cuda>) {
      backend::cuda_ops<B>::queue_write(buffer_, kc, pointer_);
      for (index_t i = 0; i < nb; ++i) ages_[std::size_t((pointer_ + i) % K)] = 1;
    } else {
      T* p = buffer_.data();
      const T* kv = kc.data();
      for (index_t i = 0; i < nb; ++i) {
        const index_t col = (pointer_ + i) % K;
        for (index_t c = 0; c < D; ++c) p[c * K + col] = kv[i * D + c];
        ages_[std::size_t(col)] = 1;
      }
    }
    pointer_ = (pointer_ + nb) % K;
  }

  /// Deep copy of the state (for checkpoints).
  memory_queue_state<T, B> state() const { return {buffer_.clone(), ages_, pointer_}; }

  void load_state(const memory_queue_state<T, B>& s) {
    MSCL_CHECK(s.buffer.defined() && s.buffer.shape() == buffer_.shape(), shape_error,
               "ssl::memory_queue::load_state: buffer must be " << to_string(buffer_.shape()) << ", got "
                                                                << (s.buffer.defined() ? to_string(s.buffer.shape()) : "undefined"));
    MSCL_CHECK(index_t(s.ages.size()) == size(), shape_error,
               "ssl::memory_queue::load_state: " << s.ages.size() << " ages for K = " << size() << " slots");
    for (std::size_t j = 0; j < s.ages.size(); ++j)
      MSCL_CHECK(s.ages[j] >= 0, value_error, "ssl::memory_queue::load_state: negative age " << s.ages[j] << " at slot " << j);
    MSCL_CHECK(s.pointer >= 0 && s.pointer < size(), value_error,
               "ssl::memory_queue::load_state: pointer " << s.pointer << " outside [0, " << size() << ")");
    buffer_ = s.buffer.clone();
    ages_ = s.ages;
    pointer_ = s.pointer;
  }

  /// State as state-dict entries: `<prefix>queue` (D×K), `<prefix>queue_age` ([K], integer) and
  /// `<prefix>queue_ptr` ([1], integer, MoCo's name), ready for io::save through the same path
  /// as module state. Ages and pointer are exact in float up to 2^24.
  std::vector<nn::state_entry<T, B>> state_dict(const std::string& prefix = "") const {
    std::vector<T> ages(ages_.size());
    for (std::size_t j = 0; j < ages_.size(); ++j) ages[j] = T(ages_[j]);
    const tensor_t age = tensor_t::from_vector({size()}, ages);
    return {{prefix + "queue", buffer_.clone(), false, false},
            {prefix + "queue_age", age, false, true},
            {prefix + "queue_ptr", tensor_t::full({1}, T(pointer_)), false, true}};
  }
  /// Inverse of state_dict: `lookup(name)` returns the stored tensor (undefined if missing).
  template <class Lookup>
  void load_state_dict(Lookup&& lookup, const std::string& prefix = "", const std::string& source = "state dict") {
    memory_queue_state<T, B> s;
    s.buffer = lookup(prefix + "queue");
    const tensor_t age = lookup(prefix + "queue_age"), ptr = lookup(prefix + "queue_ptr");
    MSCL_CHECK(s.buffer.defined() && age.defined() && ptr.defined(), io_error,
               "ssl::memory_queue::load_state_dict: " << source << " lacks one of '" << prefix << "queue', '" << prefix
                                                      << "queue_age', '" << prefix << "queue_ptr'");
    MSCL_CHECK(age.numel() == size() && ptr.numel() == 1, shape_error,
               "ssl::memory_queue::load_state_dict: " << source << " has queue_age " << to_string(age.shape())
                                                      << " and queue_ptr " << to_string(ptr.shape()) << " for K = " << size());
    for (T a : age.to_vector()) s.ages.push_back(std::int64_t(std::llround(double(a))));
    s.pointer = index_t(std::llround(double(ptr.to_vector()[0])));
    load_state(s);
  }

 private:
  tensor_t buffer_;
  std::vector<std::int64_t> ages_;
  index_t pointer_ = 0;
};

}  // namespace mscl::ssl
