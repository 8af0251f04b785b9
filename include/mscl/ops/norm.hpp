/// \file norm.hpp
/// \brief Batch normalisation as autograd ops: `batch_norm` and the fused `batch_norm_relu`
///        (PyTorch `F.batch_norm` semantics), over any input of rank >= 2 with channels on axis 1
///        (`nc`, `ncl`, `nchw`, `ncthw`).
///
/// Training mode normalises with the batch statistics (biased variance) and updates the running
/// buffers in place exactly as PyTorch does:
/// \f$ \mu_r \leftarrow (1-m)\mu_r + m\,\mu_B,\quad \sigma^2_r \leftarrow (1-m)\sigma^2_r + m\,\frac{M}{M-1}\sigma^2_B \f$
/// (M = elements per channel; the running variance takes the UNBIASED batch variance).
/// Evaluation mode normalises with the running statistics. The fused variant exists because in
/// a ResNet almost every BN is followed by a ReLU: one pass writes the activated output and the
/// backward pass masks by its sign, which saves a full read+write of the activation each way.
///
/// Sync-BN (data parallelism): while a `batch_norm_reducer` is installed on the calling thread
/// (`scoped_batch_norm_reducer`; dist/sync_batch_norm.hpp adapts a communicator), training-mode
/// calls made with grad mode enabled compute their batch statistics over every participating
/// process — per-channel count, sum and centred sum of squares all-reduced in forward, the two
/// per-channel gradient sums all-reduced in backward — exactly as PyTorch SyncBatchNorm (running
/// variance from the global unbiased variance); the CUDA backend does the same with its own
/// kernels (backend/cuda/norm_pool.hpp). Calls under no_grad (momentum key encoders,
/// which use shuffle-BN instead; feature extraction) keep per-process statistics. Without a
/// reducer (the default) the code path is the single-process one, unchanged: one thread-local
/// pointer test per call.
#pragma once
#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "../backend/cpu/batch_norm.hpp"
#include "common.hpp"

namespace mscl::ops {

/// Sums per-channel batch-norm statistics over the processes of a data-parallel job (sync-BN).
/// Every process must make the same calls in the same order (one per synchronised BN layer in
/// forward, one per layer in backward), as with any collective.
class batch_norm_reducer {
 public:
  virtual ~batch_norm_reducer() = default;
  /// values[i] <- sum over processes of values[i], in place (same n on every process).
  virtual void all_reduce_sum(double* values, std::size_t n) = 0;
  /// Where `values` must live: false = host memory (MPI), true = CUDA device memory (NCCL). The
  /// CUDA backend passes device buffers to a device reducer and stages through the host
  /// otherwise; the CPU backend needs a host reducer.
  virtual bool reduces_device_memory() const { return false; }
};

namespace detail {
inline std::shared_ptr<batch_norm_reducer>& batch_norm_reducer_slot() {
  thread_local std::shared_ptr<batch_norm_reducer> slot;
  return slot;
}
}  // namespace detail

/// The reducer installed on this thread (null: per-process statistics, the default).
inline const std::shared_ptr<batch_norm_reducer>& current_batch_norm_reducer() { return detail::batch_norm_reducer_slot(); }

/// Installs `r` on this thread while alive (null uninstalls); restores the previous one. The
/// backward pass of a synchronised call uses the reducer captured at forward time, so the scope
/// need not cover `backward()`.
class scoped_batch_norm_reducer {
 public:
  explicit scoped_batch_norm_reducer(std::shared_ptr<batch_norm_reducer> r)
      : previous_(std::exchange(detail::batch_norm_reducer_slot(), std::move(r))) {}
  ~scoped_batch_norm_reducer() { detail::batch_norm_reducer_slot() = std::move(previous_); }
  scoped_batch_norm_reducer(const scoped_batch_norm_reducer&) = delete;
  scoped_batch_norm_reducer& operator=(const scoped_batch_norm_reducer&) = delete;

 private:
  std::shared_ptr<batch_norm_reducer> previous_;
};

namespace detail {

/// Sync-BN forward statistics: local count n_r, mean m_r and centred sum of squares M2_r per
/// channel (double, shifted one-pass like the kernel), combined over processes through one
/// all-reduce of [n_r, n_r·m_r, M2_r + n_r·m_r²] (Chan's parallel variance written as sums):
/// M2 = Σ(M2_r + n_r m_r²) − n·mean². Writes the global mean and biased variance; returns the
/// global count per channel.
template <class T>
double sync_bn_statistics(batch_norm_reducer& red, const T* x, const backend::cpu_kernels::bn_dims& d, double* mean,
                          double* var) {
  const index_t cs = d.c * d.s;
  const double local_n = double(d.per_channel());
  std::vector<double> buf(std::size_t(2 * d.c + 1));
  buf[std::size_t(2 * d.c)] = local_n;
#pragma omp parallel for schedule(static) if (d.numel() > (1 << 15))
  for (index_t c = 0; c < d.c; ++c) {
    double k0 = 0;
    for (index_t k = 0; k < d.s; ++k) k0 += double(x[c * d.s + k]);
    k0 /= double(d.s);
    double s1 = 0, s2 = 0;
    for (index_t i = 0; i < d.n; ++i) {
      const T* p = x + i * cs + c * d.s;
      double a1 = 0, a2 = 0;
#pragma omp simd reduction(+ : a1, a2)
      for (index_t k = 0; k < d.s; ++k) {
        const double dv = double(p[k]) - k0;
        a1 += dv;
        a2 += dv * dv;
      }
      s1 += a1;
      s2 += a2;
    }
    const double shift = s1 / local_n, m = k0 + shift;
    const double m2 = std::max(s2 - s1 * shift, 0.0);
    buf[std::size_t(c)] = local_n * m;
    buf[std::size_t(d.c + c)] = m2 + local_n * m * m;
  }
  red.all_reduce_sum(buf.data(), buf.size());
  const double n = buf[std::size_t(2 * d.c)];
  for (index_t c = 0; c < d.c; ++c) {
    const double m = buf[std::size_t(c)] / n;
    mean[c] = m;
    var[c] = std::max(buf[std::size_t(d.c + c)] / n - m * m, 0.0);
  }
  return n;
}

/// Sync-BN backward: local per-channel Σg and Σg·(x − mean) (g masked by y > 0 when relu),
/// all-reduced; dx = w·is·(g − Σg/n − (x − mean)·is²·Σg(x−mean)/n) with the global sums and
/// count; dweight, dbias from the LOCAL sums (gradient averaging adds the ranks' parts).
template <class T>
void sync_bn_backward(batch_norm_reducer& red, const T* x, const T* y, const T* dy, const double* mean,
                      const double* invstd, const T* weight, T* dx, T* dweight, T* dbias,
                      const backend::cpu_kernels::bn_dims& d, double global_n) {
  const index_t cs = d.c * d.s;
  std::vector<double> sums(std::size_t(2 * d.c));
#pragma omp parallel for schedule(static) if (d.numel() > (1 << 15))
  for (index_t c = 0; c < d.c; ++c) {
    double sg = 0, sgx = 0;
    for (index_t i = 0; i < d.n; ++i) {
      const index_t off = i * cs + c * d.s;
      for (index_t k = 0; k < d.s; ++k) {
        const double g = (y && !(y[off + k] > T(0))) ? 0.0 : double(dy[off + k]);
        sg += g;
        sgx += g * (double(x[off + k]) - mean[c]);
      }
    }
    sums[std::size_t(c)] = sg;
    sums[std::size_t(d.c + c)] = sgx;
    if (dbias) dbias[c] = T(sg);
    if (dweight) dweight[c] = T(sgx * invstd[c]);
  }
  red.all_reduce_sum(sums.data(), sums.size());
  if (!dx) return;
#pragma omp parallel for schedule(static) if (d.numel() > (1 << 15))
  for (index_t c = 0; c < d.c; ++c) {
    const double is = invstd[c], w = weight ? double(weight[c]) : 1.0;
    const T k1 = T(w * is), m = T(mean[c]);
    const T k2 = T(-w * is * is * is * sums[std::size_t(d.c + c)] / global_n);
    const T k3 = T(-w * is * sums[std::size_t(c)] / global_n);
    for (index_t i = 0; i < d.n; ++i) {
      const index_t off = i * cs + c * d.s;
      for (index_t k = 0; k < d.s; ++k) {
        const T g = (y && !(y[off + k] > T(0))) ? T(0) : dy[off + k];
        dx[off + k] = k1 * g + k2 * (x[off + k] - m) + k3;
      }
    }
  }
}

template <class T, class B>
void check_bn_param(const tensor<T, B>& p, index_t channels, const tensor<T, B>& x, const char* who,
                    const char* what) {
  if (!p.defined()) return;
  MSCL_CHECK(p.dim() == 1 && p.size(0) == channels, shape_error,
             who << ": " << what << " must have shape [" << channels << "] (channels of x, axis 1); got " << what
                 << " shape " << to_string(p.shape()) << " for x shape " << to_string(x.shape()));
}

/// A contiguous 1-D copy of a per-channel tensor, or an empty vector when undefined.
template <class T, class B>
std::vector<T> channel_values(const tensor<T, B>& p) {
  return p.defined() ? p.to_vector() : std::vector<T>();
}

template <class T, class B>
tensor<T, B> batch_norm_impl(const tensor<T, B>& x, const tensor<T, B>& weight, const tensor<T, B>& bias,
                             const tensor<T, B>& running_mean, const tensor<T, B>& running_var, bool training,
                             double momentum, double eps, bool relu, const char* who) {
  MSCL_CUDA_DISPATCH(B, batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps, relu, who)) {
  require_cpu<B>();
  MSCL_CHECK(x.defined(), shape_error, who << ": x is an undefined tensor");
  MSCL_CHECK(x.dim() >= 2, shape_error,
             who << ": x must have rank >= 2 with channels on axis 1 (nc, nchw, ncthw), got shape "
                 << to_string(x.shape()));
  check_nonempty(x, who);
  const index_t channels = x.size(1);
  check_bn_param(weight, channels, x, who, "weight");
  check_bn_param(bias, channels, x, who, "bias");
  check_bn_param(running_mean, channels, x, who, "running_mean");
  check_bn_param(running_var, channels, x, who, "running_var");
  MSCL_CHECK(running_mean.defined() == running_var.defined(), value_error,
             who << ": running_mean and running_var must both be given or both be undefined");
  MSCL_CHECK(eps > 0, value_error, who << ": eps must be positive, got " << eps);
  MSCL_CHECK(momentum >= 0 && momentum <= 1, value_error, who << ": momentum must lie in [0, 1], got " << momentum);

  backend::cpu_kernels::bn_dims d;
  d.n = x.size(0);
  d.c = channels;
  d.s = x.numel() / (d.n * d.c);
  // Like PyTorch: without running buffers, evaluation mode also uses batch statistics.
  const bool batch_stats = training || !running_mean.defined();
  MSCL_CHECK(!batch_stats || d.per_channel() > 1, value_error,
             who << ": expected more than 1 value per channel when using batch statistics, got input shape "
                 << to_string(x.shape()));

  const tensor<T, B> xc = contiguous_data(x);
  const std::vector<T> w = channel_values(weight), b = channel_values(bias);
  const T* wp = w.empty() ? nullptr : w.data();
  const T* bp = b.empty() ? nullptr : b.data();
  tensor<T, B> out = tensor<T, B>::empty(x.shape());
  auto mean = std::make_shared<std::vector<double>>(std::size_t(d.c));
  auto invstd = std::make_shared<std::vector<double>>(std::size_t(d.c));

  // Sync-BN: only with a reducer installed, batch statistics, and grad mode on (see the file comment).
  std::shared_ptr<batch_norm_reducer> reducer;
  if (batch_stats && current_batch_norm_reducer() && autograd::is_grad_enabled()) reducer = current_batch_norm_reducer();
  MSCL_CHECK(!reducer || !reducer->reduces_device_memory(), config_error,
             who << ": sync-BN of CPU tensors needs a reducer on host memory (an MPI communicator); the installed "
                    "one works on CUDA device memory (NCCL)");
  double count = double(d.per_channel());  // elements per channel behind the statistics

  if (batch_stats) {
    std::vector<double> var(std::size_t(d.c));
    if (reducer) {
      count = sync_bn_statistics(*reducer, xc.data(), d, mean->data(), var.data());
      for (index_t c = 0; c < d.c; ++c) (*invstd)[std::size_t(c)] = 1.0 / std::sqrt(var[std::size_t(c)] + eps);
      backend::cpu_kernels::batch_norm_forward_apply(xc.data(), mean->data(), invstd->data(), wp, bp, out.data(), d,
                                                     relu);
    } else {
      backend::cpu_kernels::batch_norm_forward_train(xc.data(), wp, bp, out.data(), mean->data(), var.data(), d, eps,
                                                     relu);
      for (index_t c = 0; c < d.c; ++c) (*invstd)[std::size_t(c)] = 1.0 / std::sqrt(var[std::size_t(c)] + eps);
    }
    if (training && running_mean.defined()) {
      // In place on the caller's buffers (handles share storage); strided 1-D views are fine.
      tensor<T, B> rm = running_mean, rv = running_var;
      const index_t sm = rm.strides()[0], sv = rv.strides()[0];
      const double unbias = count / (count - 1);
      for (index_t c = 0; c < d.c; ++c) {
        T& m = rm.data()[c * sm];
        T& v = rv.data()[c * sv];
        m = T((1 - momentum) * double(m) + momentum * (*mean)[std::size_t(c)]);
        v = T((1 - momentum) * double(v) + momentum * var[std::size_t(c)] * unbias);
      }
    }
  } else {
    const std::vector<T> rm = running_mean.to_vector(), rv = running_var.to_vector();
    for (index_t c = 0; c < d.c; ++c) {
      (*mean)[std::size_t(c)] = double(rm[std::size_t(c)]);
      (*invstd)[std::size_t(c)] = 1.0 / std::sqrt(double(rv[std::size_t(c)]) + eps);
    }
    backend::cpu_kernels::batch_norm_forward_apply(xc.data(), mean->data(), invstd->data(), wp, bp, out.data(), d,
                                                   relu);
  }

  if (!autograd::any_requires_grad({x, weight, bias})) return out;
  const bool gx = x.requires_grad(), gw = weight.requires_grad(), gb = bias.requires_grad();
  const tensor<T, B> xs = xc.detach();
  const tensor<T, B> ys = relu ? out.detach() : tensor<T, B>();
  auto wv = std::make_shared<std::vector<T>>(w);
  const shape_t xshape = x.shape();
  return autograd::record(
      out, relu ? "batch_norm_relu" : "batch_norm", {x, weight, bias},
      [=](const tensor<T, B>& g) {
        const tensor<T, B> gc = contiguous_data(g);
        tensor<T, B> dx = gx ? tensor<T, B>::empty(xshape) : tensor<T, B>();
        tensor<T, B> dw = gw ? tensor<T, B>::empty({d.c}) : tensor<T, B>();
        tensor<T, B> db = gb ? tensor<T, B>::empty({d.c}) : tensor<T, B>();
        if (reducer)
          sync_bn_backward(*reducer, xs.data(), relu ? ys.data() : nullptr, gc.data(), mean->data(), invstd->data(),
                           wv->empty() ? nullptr : wv->data(), gx ? dx.data() : nullptr, gw ? dw.data() : nullptr,
                           gb ? db.data() : nullptr, d, count);
        else
          backend::cpu_kernels::batch_norm_backward(xs.data(), relu ? ys.data() : nullptr, gc.data(), mean->data(),
                                                    invstd->data(), wv->empty() ? nullptr : wv->data(),
                                                    gx ? dx.data() : nullptr, gw ? dw.data() : nullptr,
                                                    gb ? db.data() : nullptr, d, batch_stats);
        return std::vector<tensor<T, B>>{dx, dw, db};
      });
  }
}

}  // namespace detail

/// Batch normalisation over axis 1 (PyTorch `F.batch_norm`).
///
/// \tparam T float or double.  \tparam B backend (cpu).
/// Requires: x of rank >= 2 and non-empty; weight, bias, running_mean, running_var each either
/// undefined or of shape [C] with C = x.size(1); running_mean and running_var both defined or
/// both undefined; eps > 0; momentum in [0, 1]; more than one value per channel when batch
/// statistics are used. Throws shape_error / value_error otherwise, naming both shapes.
/// Ensures: training (or no running buffers): y = (x - mean_B)/sqrt(var_B + eps)*weight + bias with
/// the biased batch variance; the running buffers (when given and training) are updated in place:
/// running = (1 - momentum)*running + momentum*batch, using the unbiased batch variance.
/// Evaluation: the running statistics are used and not modified. Undefined weight/bias mean
/// affine=false. Gradients flow to x, weight and bias (never to the running buffers).
template <class T, class B>
tensor<T, B> batch_norm(const tensor<T, B>& x, const tensor<T, B>& weight, const tensor<T, B>& bias,
                        const tensor<T, B>& running_mean, const tensor<T, B>& running_var, bool training,
                        double momentum = 0.1, double eps = 1e-5) {
  return detail::batch_norm_impl(x, weight, bias, running_mean, running_var, training, momentum, eps, false,
                                 "batch_norm");
}

/// relu(batch_norm(...)) in one pass (same requirements and buffer updates as batch_norm); the
/// backward pass masks the incoming gradient by the sign of the output.
template <class T, class B>
tensor<T, B> batch_norm_relu(const tensor<T, B>& x, const tensor<T, B>& weight, const tensor<T, B>& bias,
                             const tensor<T, B>& running_mean, const tensor<T, B>& running_var, bool training,
                             double momentum = 0.1, double eps = 1e-5) {
  return detail::batch_norm_impl(x, weight, bias, running_mean, running_var, training, momentum, eps, true,
                                 "batch_norm_relu");
}

}  // namespace mscl::ops
