/// \file norm_pool.hpp
/// \brief Batch normalisation (cuDNN 9, spatial mode) and pooling (norm_pool.cuh) for
///        `tensor<T, cuda>`, with the semantics of ops/norm.hpp and ops/pool.hpp.
///
/// Batch-norm: training statistics, the running-buffer update (cuDNN uses the unbiased batch
/// variance for the running variance, as PyTorch and the CPU backend) and the backward pass are
/// cuDNN's; the input is viewed as [n, c, s, 1] (s = product of the axes >= 2), which is the
/// same per-channel reduction for any rank. The fused ReLU is applied in place after the
/// normalisation and its mask is applied to the incoming gradient before cuDNN's backward.
/// Evaluation mode uses cuDNN's inference kernel forward and norm_pool.cuh backward (cuDNN has
/// no evaluation-mode backward). Sync-BN (a reducer installed, ops/norm.hpp) has its own kernels
/// in norm_pool.cuh with the CPU's arithmetic.
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "../../ops/norm.hpp"
#include "../../ops/pool.hpp"
#include "conv.hpp"  // cudnn_type
#include "norm_pool.cuh"
#include "ops_basic.hpp"

namespace mscl::cuda_backend {

namespace detail {

/// A cuDNN tensor descriptor owned by a shared_ptr (so backward closures can keep it).
inline std::shared_ptr<cudnnTensorStruct> make_tensor_desc() {
  cudnnTensorDescriptor_t d = nullptr;
  MSCL_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d));
  return std::shared_ptr<cudnnTensorStruct>(d, [](cudnnTensorDescriptor_t p) { cudnnDestroyTensorDescriptor(p); });
}

inline kernels::pool_geom to_geom(const backend::cpu_kernels::pool3d_params& p) {
  return {p.planes, p.it, p.ih, p.iw, p.ot, p.oh, p.ow, p.kt, p.kh, p.kw, p.st, p.sh, p.sw, p.pt, p.ph, p.pw};
}

/// Running buffers are updated in a contiguous copy when the caller's are strided views: this
/// writes the copy back (nothing to do when `updated` is the caller's tensor itself).
template <class T>
void write_back(const tensor<T, cuda>& target, const tensor<T, cuda>& updated) {
  if (updated.same_as(target)) return;
  tensor<T, cuda> t = target;
  t.copy_from(updated);
}

/// Sums a sync-BN buffer over the processes through the reducer: in place on the device when
/// the reducer works on device memory (NCCL; the compute stream is drained first, the
/// collective runs on the communicator's stream), otherwise through a host copy (MPI).
inline void reduce_bn_sums(ops::batch_norm_reducer& reducer, tensor<double, cuda>& buf) {
  const std::size_t n = std::size_t(buf.numel());
  if (reducer.reduces_device_memory()) {
    synchronize();
    reducer.all_reduce_sum(buf.data(), n);
    return;
  }
  std::vector<double> host = buf.to_vector();
  reducer.all_reduce_sum(host.data(), n);
  buf.copy_from(tensor<double, cuda>::from_vector(buf.shape(), host));
}

}  // namespace detail

struct norm_pool_ops {
  template <class T>
  using dtensor = tensor<T, cuda>;

  template <class T>
  static dtensor<T> batch_norm(const dtensor<T>& x, const dtensor<T>& weight, const dtensor<T>& bias,
                               const dtensor<T>& running_mean, const dtensor<T>& running_var, bool training,
                               double momentum, double eps, bool relu, const char* who) {
    MSCL_CHECK(x.defined(), shape_error, who << ": x is an undefined tensor");
    MSCL_CHECK(x.dim() >= 2, shape_error,
               who << ": x must have rank >= 2 with channels on axis 1 (nc, nchw, ncthw), got shape "
                   << to_string(x.shape()));
    ops::detail::check_nonempty(x, who);
    const index_t channels = x.size(1);
    ops::detail::check_bn_param(weight, channels, x, who, "weight");
    ops::detail::check_bn_param(bias, channels, x, who, "bias");
    ops::detail::check_bn_param(running_mean, channels, x, who, "running_mean");
    ops::detail::check_bn_param(running_var, channels, x, who, "running_var");
    MSCL_CHECK(running_mean.defined() == running_var.defined(), value_error,
               who << ": running_mean and running_var must both be given or both be undefined");
    MSCL_CHECK(eps > 0, value_error, who << ": eps must be positive, got " << eps);
    MSCL_CHECK(momentum >= 0 && momentum <= 1, value_error,
               who << ": momentum must lie in [0, 1], got " << momentum);
    const index_t n = x.size(0), c = channels, s = x.numel() / (n * c);
    const bool batch_stats = training || !running_mean.defined();
    MSCL_CHECK(!batch_stats || n * s > 1, value_error,
               who << ": expected more than 1 value per channel when using batch statistics, got input shape "
                   << to_string(x.shape()));
    MSCL_CHECK(n * c * s < (index_t(1) << 31), shape_error, who << ": input " << to_string(x.shape())
                                                                << " exceeds cuDNN's 32-bit element count");

    // Sync-BN: as on the CPU, only with a reducer installed, batch statistics and grad mode on.
    if (batch_stats && ops::current_batch_norm_reducer() && autograd::is_grad_enabled())
      return sync_batch_norm(ops::current_batch_norm_reducer(), x, weight, bias, running_mean, running_var, training,
                             momentum, eps, relu, n, c, s);

    const cudnnDataType_t type = detail::cudnn_type<T>();
    auto xd = detail::make_tensor_desc(), pd = detail::make_tensor_desc();
    MSCL_CUDNN_CHECK(cudnnSetTensor4dDescriptor(xd.get(), CUDNN_TENSOR_NCHW, type, int(n), int(c), int(s), 1));
    MSCL_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(pd.get(), xd.get(), CUDNN_BATCHNORM_SPATIAL));

    const dtensor<T> xc = detail::contiguous(x);
    const dtensor<T> w = weight.defined() ? detail::contiguous(weight) : dtensor<T>::ones({c});
    const dtensor<T> b = bias.defined() ? detail::contiguous(bias) : dtensor<T>::zeros({c});
    dtensor<T> out = dtensor<T>::empty(x.shape());
    dtensor<T> mean = dtensor<T>::empty({c}), invstd = dtensor<T>::empty({c});
    cudnnHandle_t h = context().cudnn;
    const T one = T(1), zero = T(0);

    if (batch_stats) {
      const bool update = training && running_mean.defined();
      // cuDNN updates contiguous buffers in place; strided views go through a copy.
      dtensor<T> rm = update ? detail::contiguous(running_mean) : dtensor<T>();
      dtensor<T> rv = update ? detail::contiguous(running_var) : dtensor<T>();
      MSCL_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
          h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, xd.get(), xc.data(), xd.get(), out.data(), pd.get(), w.data(),
          b.data(), momentum, update ? rm.data() : nullptr, update ? rv.data() : nullptr, eps, mean.data(),
          invstd.data()));
      if (update) {
        detail::write_back(running_mean, rm);
        detail::write_back(running_var, rv);
      }
    } else {
      const dtensor<T> rm = detail::contiguous(running_mean), rv = detail::contiguous(running_var);
      MSCL_CUDNN_CHECK(cudnnBatchNormalizationForwardInference(h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, xd.get(),
                                                               xc.data(), xd.get(), out.data(), pd.get(), w.data(),
                                                               b.data(), rm.data(), rv.data(), eps));
      mean.copy_from(rm);
      kernels::invstd_from_var<<<grid_for(c), 256, 0, stream()>>>(rv.data(), invstd.data(), c, eps);
      MSCL_CUDA_CHECK_LAUNCH();
    }
    if (relu) {
      kernels::relu_inplace<<<grid_for(kernels::vector_work<T>(out.numel())), 256, 0, stream()>>>(out.data(), out.numel());
      MSCL_CUDA_CHECK_LAUNCH();
    }

    if (!autograd::any_requires_grad({x, weight, bias})) return out;
    const bool gx = x.requires_grad(), gw = weight.requires_grad(), gb = bias.requires_grad();
    const dtensor<T> xs = xc.detach(), ys = relu ? out.detach() : dtensor<T>();
    const dtensor<T> ws = w.detach();
    const bool has_weight = weight.defined();
    const shape_t xshape = x.shape();
    return autograd::record(out, relu ? "batch_norm_relu" : "batch_norm", {x, weight, bias}, [=](const dtensor<T>& g) {
      dtensor<T> gc = detail::contiguous(g);
      if (relu) gc = detail::map_binary(gc, ys, kernels::f_relu_grad{}, "batch_norm_relu backward");
      dtensor<T> dx = dtensor<T>::empty(xshape), dw = dtensor<T>::empty({c}), db = dtensor<T>::empty({c});
      if (batch_stats) {
        const T one_ = T(1), zero_ = T(0);
        MSCL_CUDNN_CHECK(cudnnBatchNormalizationBackward(context().cudnn, CUDNN_BATCHNORM_SPATIAL, &one_, &zero_, &one_,
                                                         &zero_, xd.get(), xs.data(), xd.get(), gc.data(), xd.get(),
                                                         dx.data(), pd.get(), ws.data(), dw.data(), db.data(), eps,
                                                         mean.data(), invstd.data()));
      } else {
        dtensor<double> sums = dtensor<double>::zeros({2, c});
        const unsigned per_channel_blocks = unsigned(std::min<index_t>((n * s + 255) / 256, 64));
        kernels::bn_channel_sums<<<dim3(per_channel_blocks, unsigned(c)), 256, 0, stream()>>>(
            xs.data(), gc.data(), mean.data(), invstd.data(), sums.data(), sums.data() + c, n, c, s);
        MSCL_CUDA_CHECK_LAUNCH();
        kernels::double_to<<<grid_for(c), 256, 0, stream()>>>(sums.data(), db.data(), c);
        kernels::double_to<<<grid_for(c), 256, 0, stream()>>>(sums.data() + c, dw.data(), c);
        kernels::bn_eval_dx<<<grid_for(dx.numel()), 256, 0, stream()>>>(gc.data(), has_weight ? ws.data() : nullptr,
                                                                         invstd.data(), dx.data(), dx.numel(), c, s);
        MSCL_CUDA_CHECK_LAUNCH();
      }
      return std::vector<dtensor<T>>{gx ? dx : dtensor<T>(), gw ? dw : dtensor<T>(), gb ? db : dtensor<T>()};
    });
  }

  /// Sync-BN on the device (norm_pool.cuh): cuDNN's batch-norm cannot take outside statistics,
  /// so the statistics, normalisation and backward are this file's kernels; the two per-layer
  /// all-reduces go through `reducer` in device memory (NCCL) or staged through the host (MPI).
  template <class T>
  static dtensor<T> sync_batch_norm(const std::shared_ptr<ops::batch_norm_reducer>& reducer, const dtensor<T>& x,
                                    const dtensor<T>& weight, const dtensor<T>& bias, const dtensor<T>& running_mean,
                                    const dtensor<T>& running_var, bool training, double momentum, double eps,
                                    bool relu, index_t n, index_t c, index_t s) {
    const dtensor<T> xc = detail::contiguous(x);
    const dtensor<T> w = weight.defined() ? detail::contiguous(weight) : dtensor<T>();
    const dtensor<T> b = bias.defined() ? detail::contiguous(bias) : dtensor<T>();
    const unsigned per_channel_blocks = unsigned(std::min<index_t>((n * s + 255) / 256, 64));
    const dim3 channel_grid(per_channel_blocks, unsigned(c));

    dtensor<double> stats = dtensor<double>::zeros({2 * c + 1});  // [n·m, M2 + n·m², n]
    kernels::bn_shifted_sums<<<channel_grid, 256, 0, stream()>>>(xc.data(), stats.data(), stats.data() + c, n, c, s);
    MSCL_CUDA_CHECK_LAUNCH();
    kernels::bn_sync_local_statistics<<<grid_for(c), 256, 0, stream()>>>(xc.data(), stats.data(), c, s, double(n * s));
    MSCL_CUDA_CHECK_LAUNCH();
    detail::reduce_bn_sums(*reducer, stats);

    const bool update = training && running_mean.defined();
    dtensor<T> rm = update ? detail::contiguous(running_mean) : dtensor<T>();
    dtensor<T> rv = update ? detail::contiguous(running_var) : dtensor<T>();
    dtensor<double> mean = dtensor<double>::empty({c}), invstd = dtensor<double>::empty({c});
    dtensor<T> scale = dtensor<T>::empty({c}), shift = dtensor<T>::empty({c});
    kernels::bn_sync_finalize<<<grid_for(c), 256, 0, stream()>>>(
        stats.data(), c, eps, w.defined() ? w.data() : nullptr, b.defined() ? b.data() : nullptr, mean.data(),
        invstd.data(), scale.data(), shift.data(), update ? rm.data() : nullptr, update ? rv.data() : nullptr,
        momentum);
    MSCL_CUDA_CHECK_LAUNCH();
    if (update) {
      detail::write_back(running_mean, rm);
      detail::write_back(running_var, rv);
    }
    dtensor<T> out = dtensor<T>::empty(x.shape());
    kernels::bn_scale_shift<<<grid_for(out.numel()), 256, 0, stream()>>>(xc.data(), scale.data(), shift.data(),
                                                                         out.data(), out.numel(), c, s, relu);
    MSCL_CUDA_CHECK_LAUNCH();

    if (!autograd::any_requires_grad({x, weight, bias})) return out;
    const bool gx = x.requires_grad(), gw = weight.requires_grad(), gb = bias.requires_grad();
    const dtensor<T> xs = xc.detach(), ys = relu ? out.detach() : dtensor<T>(), ws = w.defined() ? w.detach() : w;
    const shape_t xshape = x.shape();
    return autograd::record(out, relu ? "batch_norm_relu" : "batch_norm", {x, weight, bias}, [=](const dtensor<T>& g) {
      const dtensor<T> gc = detail::contiguous(g);
      const T* mask = relu ? ys.data() : nullptr;
      dtensor<double> sums = dtensor<double>::zeros({2 * c});  // [Σg, Σg(x − mean)]
      kernels::bn_sync_gradient_sums<<<channel_grid, 256, 0, stream()>>>(xs.data(), mask, gc.data(), mean.data(),
                                                                         sums.data(), n, c, s);
      MSCL_CUDA_CHECK_LAUNCH();
      dtensor<T> dw = dtensor<T>::empty({c}), db = dtensor<T>::empty({c});
      kernels::bn_sync_parameter_grads<<<grid_for(c), 256, 0, stream()>>>(sums.data(), invstd.data(), dw.data(),
                                                                          db.data(), c);
      MSCL_CUDA_CHECK_LAUNCH();
      detail::reduce_bn_sums(*reducer, sums);  // every process makes this call, whatever it needs
      dtensor<T> dx;
      if (gx) {
        dtensor<T> coef = dtensor<T>::empty({4 * c});
        kernels::bn_sync_dx_coefficients<<<grid_for(c), 256, 0, stream()>>>(
            mean.data(), invstd.data(), ws.defined() ? ws.data() : nullptr, sums.data(), stats.data() + 2 * c,
            coef.data(), c);
        MSCL_CUDA_CHECK_LAUNCH();
        dx = dtensor<T>::empty(xshape);
        kernels::bn_sync_dx<<<grid_for(dx.numel()), 256, 0, stream()>>>(xs.data(), mask, gc.data(), coef.data(),
                                                                        dx.data(), dx.numel(), c, s);
        MSCL_CUDA_CHECK_LAUNCH();
      }
      return std::vector<dtensor<T>>{dx, gw ? dw : dtensor<T>(), gb ? db : dtensor<T>()};
    });
  }

  // ------------------------------------------------------------------ pooling
  template <class T>
  static dtensor<T> max_pool(const dtensor<T>& x, const ops::pool3d_size& kernel, const ops::pool3d_size& stride,
                             const ops::pool3d_size& padding, bool two_d, const char* who) {
    ops::detail::check_pool_input(x, two_d ? 4 : 5, who);
    const auto p = ops::detail::windowed_params(x, kernel, stride, padding, two_d, who);
    const dtensor<T> xc = detail::contiguous(x);
    dtensor<T> out = dtensor<T>::empty(ops::detail::pool_out_shape(x.shape(), p, two_d));
    const std::size_t arg_bytes = sizeof(std::int32_t) * std::size_t(std::max<index_t>(out.numel(), 1));
    auto* raw = static_cast<std::int32_t*>(device_allocator::instance().allocate(arg_bytes));
    std::shared_ptr<std::int32_t> argmax(raw, [arg_bytes](std::int32_t* q) {
      device_allocator::instance().deallocate(q, arg_bytes);
    });
    const auto geom = detail::to_geom(p);
    kernels::max_pool_forward<<<grid_for(out.numel()), 256, 0, stream()>>>(xc.data(), out.data(), argmax.get(), geom);
    MSCL_CUDA_CHECK_LAUNCH();
    const shape_t xshape = x.shape();
    return autograd::record(out, who, {x}, [geom, argmax, xshape](const dtensor<T>& g) {
      const dtensor<T> gc = detail::contiguous(g);
      dtensor<T> dx = dtensor<T>::zeros(xshape);
      kernels::max_pool_backward<<<grid_for(gc.numel()), 256, 0, stream()>>>(gc.data(), argmax.get(), dx.data(), geom);
      MSCL_CUDA_CHECK_LAUNCH();
      return std::vector<dtensor<T>>{dx};
    });
  }

  template <class T>
  static dtensor<T> avg_pool(const dtensor<T>& x, const ops::pool3d_size& kernel, const ops::pool3d_size& stride,
                             const ops::pool3d_size& padding, bool count_include_pad, bool two_d, const char* who) {
    ops::detail::check_pool_input(x, two_d ? 4 : 5, who);
    const auto p = ops::detail::windowed_params(x, kernel, stride, padding, two_d, who);
    const dtensor<T> xc = detail::contiguous(x);
    dtensor<T> out = dtensor<T>::empty(ops::detail::pool_out_shape(x.shape(), p, two_d));
    const auto geom = detail::to_geom(p);
    kernels::avg_pool_forward<<<grid_for(out.numel()), 256, 0, stream()>>>(xc.data(), out.data(), geom,
                                                                           count_include_pad);
    MSCL_CUDA_CHECK_LAUNCH();
    const shape_t xshape = x.shape();
    return autograd::record(out, who, {x}, [geom, xshape, count_include_pad](const dtensor<T>& g) {
      const dtensor<T> gc = detail::contiguous(g);
      dtensor<T> dx = dtensor<T>::zeros(xshape);
      kernels::avg_pool_backward<<<grid_for(gc.numel()), 256, 0, stream()>>>(gc.data(), dx.data(), geom,
                                                                             count_include_pad);
      MSCL_CUDA_CHECK_LAUNCH();
      return std::vector<dtensor<T>>{dx};
    });
  }

  template <class T>
  static dtensor<T> adaptive_avg_pool(const dtensor<T>& x, const ops::pool3d_size& output_size, bool two_d,
                                      const char* who) {
    ops::detail::check_pool_input(x, two_d ? 4 : 5, who);
    for (int a = 0; a < 3; ++a)
      MSCL_CHECK(output_size[a] > 0, value_error,
                 who << ": output size must be positive, got " << ops::detail::pool_size_string(output_size));
    backend::cpu_kernels::pool3d_params p;
    p.planes = x.size(0) * x.size(1);
    p.it = two_d ? 1 : x.size(2), p.ih = x.size(two_d ? 2 : 3), p.iw = x.size(two_d ? 3 : 4);
    p.ot = output_size[0], p.oh = output_size[1], p.ow = output_size[2];
    const dtensor<T> xc = detail::contiguous(x);
    dtensor<T> out = dtensor<T>::empty(ops::detail::pool_out_shape(x.shape(), p, two_d));
    const auto geom = detail::to_geom(p);
    kernels::adaptive_avg_pool_forward<<<grid_for(out.numel()), 256, 0, stream()>>>(xc.data(), out.data(), geom);
    MSCL_CUDA_CHECK_LAUNCH();
    const shape_t xshape = x.shape();
    return autograd::record(out, who, {x}, [geom, xshape](const dtensor<T>& g) {
      const dtensor<T> gc = detail::contiguous(g);
      dtensor<T> dx = dtensor<T>::zeros(xshape);
      kernels::adaptive_avg_pool_backward<<<grid_for(gc.numel()), 256, 0, stream()>>>(gc.data(), dx.data(), geom);
      MSCL_CUDA_CHECK_LAUNCH();
      return std::vector<dtensor<T>>{dx};
    });
  }

  template <class T>
  static dtensor<T> global_avg_pool(const dtensor<T>& x) {
    MSCL_CHECK(x.defined(), shape_error, "global_avg_pool: x is an undefined tensor");
    MSCL_CHECK(x.dim() >= 3, shape_error,
               "global_avg_pool: x must have rank >= 3 ([n, c, ...], e.g. ncthw), got shape " << to_string(x.shape()));
    ops::detail::check_nonempty(x, "global_avg_pool");
    const index_t planes = x.size(0) * x.size(1), s = x.numel() / planes;
    const dtensor<T> xc = detail::contiguous(x);
    dtensor<T> out = dtensor<T>::empty({x.size(0), x.size(1)});
    kernels::plane_mean<<<unsigned(planes), 256, 0, stream()>>>(xc.data(), out.data(), s);
    MSCL_CUDA_CHECK_LAUNCH();
    const shape_t xshape = x.shape();
    return autograd::record(out, "global_avg_pool", {x}, [xshape, planes, s](const dtensor<T>& g) {
      const dtensor<T> gc = detail::contiguous(g);
      dtensor<T> dx = dtensor<T>::empty(xshape);
      kernels::plane_mean_backward<<<grid_for(planes * s), 256, 0, stream()>>>(gc.data(), dx.data(), planes, s);
      MSCL_CUDA_CHECK_LAUNCH();
      return std::vector<dtensor<T>>{dx};
    });
  }
};

}  // namespace mscl::cuda_backend
