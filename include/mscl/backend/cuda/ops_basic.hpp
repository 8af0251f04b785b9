/// \file ops_basic.hpp
/// \brief The cuda implementations of the elementwise, reduction, GEMM (cuBLAS) and loss ops
///        of ops/, and of the non-op host loops that touch tensor memory (gradient
///        accumulation, SGD, gradient clipping, parameter initialisation).
///
/// Each function has the semantics (shapes, checks, gradients) of the ops/ function of the same
/// name; ops/ dispatches here for `tensor<T, cuda>`. Checks that only read shapes are repeated
/// here because ops/ dispatches before its own checks.
#pragma once
#include <vector>

#include "../../autograd/engine.hpp"
#include "../../autograd/node.hpp"
#include "../../core/rng.hpp"
#include "../../ops/common.hpp"
#include "memory.hpp"
#include "rows.cuh"

namespace mscl::cuda_backend {

namespace detail {
template <class T>
using dtensor = tensor<T, cuda>;

template <class T>
dtensor<T> contiguous(const dtensor<T>& t) {
  return t.is_contiguous() ? t : t.clone();
}

template <class T, class F>
dtensor<T> map_unary(const dtensor<T>& x, F f) {
  const dtensor<T> xc = contiguous(x);
  dtensor<T> out = dtensor<T>::empty(x.shape());
  const index_t n = out.numel();
  if (n > 0) {
    kernels::map_unary<<<grid_for(kernels::vector_work<T>(n)), 256, 0, stream()>>>(xc.data(), out.data(), n, f);
    MSCL_CUDA_CHECK_LAUNCH();
  }
  return out;
}

template <class T, class F>
dtensor<T> map_binary(const dtensor<T>& x, const dtensor<T>& y, F f, const char* who) {
  MSCL_CHECK(x.shape() == y.shape(), shape_error,
             who << ": shapes must match; got " << to_string(x.shape()) << " and " << to_string(y.shape()));
  const dtensor<T> xc = contiguous(x), yc = contiguous(y);
  dtensor<T> out = dtensor<T>::empty(x.shape());
  const index_t n = out.numel();
  if (n > 0) {
    kernels::map_binary<<<grid_for(kernels::vector_work<T>(n)), 256, 0, stream()>>>(xc.data(), yc.data(), out.data(), n, f);
    MSCL_CUDA_CHECK_LAUNCH();
  }
  return out;
}

/// A zeroed device double (accumulator for atomics).
inline dtensor<double> zero_accumulator() { return dtensor<double>::zeros({1}); }

/// Sum of f(x) over all elements, on the device, as double.
template <class T, class F>
dtensor<double> sum_all_double(const dtensor<T>& x, F f) {
  const dtensor<T> xc = contiguous(x);
  dtensor<double> acc = zero_accumulator();
  const index_t n = xc.numel();
  if (n > 0) {
    const unsigned grid = std::min<unsigned>(grid_for(n), unsigned(4 * context().properties.multiProcessorCount));
    kernels::sum_all<<<grid, 256, 0, stream()>>>(xc.data(), n, acc.data(), f);
    MSCL_CUDA_CHECK_LAUNCH();
  }
  return acc;
}

inline void split_around(const shape_t& s, int axis, index_t& outer, index_t& n, index_t& inner) {
  outer = 1;
  inner = 1;
  for (int d = 0; d < axis; ++d) outer *= s[std::size_t(d)];
  n = s[std::size_t(axis)];
  for (std::size_t d = std::size_t(axis) + 1; d < s.size(); ++d) inner *= s[d];
}

/// Labels as a device int64 array (stored in a double-typed tensor's memory would be
/// confusing; a raw allocation from the caching allocator, freed by the shared_ptr).
inline std::shared_ptr<long long> upload_labels(const std::vector<index_t>& labels) {
  const std::size_t bytes = sizeof(long long) * std::max<std::size_t>(labels.size(), 1);
  auto* p = static_cast<long long*>(device_allocator::instance().allocate(bytes));
  std::shared_ptr<long long> out(p, [bytes](long long* q) { device_allocator::instance().deallocate(q, bytes); });
  std::vector<long long> host(labels.begin(), labels.end());
  if (!host.empty()) memory_ops::upload(host.data(), p, index_t(host.size()));
  return out;
}
}  // namespace detail

struct basic_ops {
  template <class T>
  using dtensor = tensor<T, cuda>;
  template <class T>
  using grads = std::vector<dtensor<T>>;

  // ------------------------------------------------------------------ elementwise
  template <class T>
  static dtensor<T> add(const dtensor<T>& x, const dtensor<T>& y) {
    auto out = detail::map_binary(x, y, kernels::f_add{}, "add");
    return autograd::record(out, "add", {x, y}, [](const dtensor<T>& g) { return grads<T>{g, g}; });
  }
  template <class T>
  static dtensor<T> sub(const dtensor<T>& x, const dtensor<T>& y) {
    auto out = detail::map_binary(x, y, kernels::f_sub{}, "sub");
    return autograd::record(out, "sub", {x, y}, [](const dtensor<T>& g) {
      return grads<T>{g, detail::map_unary(g, kernels::f_scale<T>{T(-1)})};
    });
  }
  template <class T>
  static dtensor<T> mul(const dtensor<T>& x, const dtensor<T>& y) {
    auto out = detail::map_binary(x, y, kernels::f_mul{}, "mul");
    const bool gx = x.requires_grad(), gy = y.requires_grad();
    dtensor<T> xs = gy ? x.detach() : dtensor<T>(), ys = gx ? y.detach() : dtensor<T>();
    return autograd::record(out, "mul", {x, y}, [xs, ys, gx, gy](const dtensor<T>& g) {
      return grads<T>{gx ? detail::map_binary(g, ys, kernels::f_mul{}, "mul backward") : dtensor<T>(),
                      gy ? detail::map_binary(g, xs, kernels::f_mul{}, "mul backward") : dtensor<T>()};
    });
  }
  template <class T>
  static dtensor<T> scale(const dtensor<T>& x, T s) {
    auto out = detail::map_unary(x, kernels::f_scale<T>{s});
    return autograd::record(out, "scale", {x}, [s](const dtensor<T>& g) {
      return grads<T>{detail::map_unary(g, kernels::f_scale<T>{s})};
    });
  }
  template <class T>
  static dtensor<T> add_scalar(const dtensor<T>& x, T s) {
    auto out = detail::map_unary(x, kernels::f_add_scalar<T>{s});
    return autograd::record(out, "add_scalar", {x}, [](const dtensor<T>& g) { return grads<T>{g}; });
  }
  template <class T>
  static dtensor<T> relu(const dtensor<T>& x) {
    auto out = detail::map_unary(x, kernels::f_relu{});
    if (!autograd::any_requires_grad({x})) return out;
    dtensor<T> saved = out.detach();
    return autograd::record(out, "relu", {x}, [saved](const dtensor<T>& g) {
      return grads<T>{detail::map_binary(g, saved, kernels::f_relu_grad{}, "relu backward")};
    });
  }
  template <class T>
  static dtensor<T> exp(const dtensor<T>& x) {
    auto out = detail::map_unary(x, kernels::f_exp{});
    dtensor<T> saved = out.detach();
    return autograd::record(out, "exp", {x}, [saved](const dtensor<T>& g) {
      return grads<T>{detail::map_binary(g, saved, kernels::f_mul{}, "exp backward")};
    });
  }
  template <class T>
  static dtensor<T> log(const dtensor<T>& x) {
    auto out = detail::map_unary(x, kernels::f_log{});
    dtensor<T> saved = x.detach();
    return autograd::record(out, "log", {x}, [saved](const dtensor<T>& g) {
      return grads<T>{detail::map_binary(g, saved, kernels::f_div{}, "log backward")};
    });
  }
  template <class T>
  static dtensor<T> square(const dtensor<T>& x) {
    auto out = detail::map_unary(x, kernels::f_square{});
    dtensor<T> saved = x.detach();
    return autograd::record(out, "square", {x}, [saved](const dtensor<T>& g) {
      return grads<T>{detail::map_binary(g, saved, kernels::f_square_grad{}, "square backward")};
    });
  }
  template <class T>
  static dtensor<T> sqrt(const dtensor<T>& x) {
    auto out = detail::map_unary(x, kernels::f_sqrt{});
    dtensor<T> saved = out.detach();
    return autograd::record(out, "sqrt", {x}, [saved](const dtensor<T>& g) {
      return grads<T>{detail::map_binary(g, saved, kernels::f_sqrt_grad{}, "sqrt backward")};
    });
  }

  // ------------------------------------------------------------------ reductions
  template <class T>
  static dtensor<T> sum(const dtensor<T>& x) {
    dtensor<double> acc = detail::sum_all_double(x, kernels::f_identity_d{});
    dtensor<T> out = dtensor<T>::empty({});
    kernels::finish_scalar<<<1, 32, 0, stream()>>>(acc.data(), out.data(), 1.0);
    MSCL_CUDA_CHECK_LAUNCH();
    const shape_t in_shape = x.shape();
    return autograd::record(out, "sum", {x}, [in_shape](const dtensor<T>& g) {
      dtensor<T> gx = dtensor<T>::empty(in_shape);
      const index_t n = gx.numel();
      if (n > 0) {
        kernels::fill_from_scalar<<<grid_for(n), 256, 0, stream()>>>(gx.data(), n, g.data(), T(1));
        MSCL_CUDA_CHECK_LAUNCH();
      }
      return grads<T>{gx};
    });
  }
  template <class T>
  static dtensor<T> sum(const dtensor<T>& x, int axis, bool keepdim) {
    const int a = normalize_axis(axis, x.shape().size(), "sum");
    index_t outer, n, inner;
    detail::split_around(x.shape(), a, outer, n, inner);
    const dtensor<T> xc = detail::contiguous(x);
    shape_t s = x.shape();
    s[std::size_t(a)] = 1;
    dtensor<T> out = dtensor<T>::empty(s);
    if (outer * inner > 0) {
      kernels::sum_axis<<<grid_for(outer * inner), 256, 0, stream()>>>(xc.data(), out.data(), outer, n, inner);
      MSCL_CUDA_CHECK_LAUNCH();
    }
    if (!keepdim) s.erase(s.begin() + a);
    out = out.view_as_strided(s, contiguous_strides(s), 0);
    const shape_t in_shape = x.shape();
    return autograd::record(out, "sum_axis", {x}, [in_shape, a](const dtensor<T>& g) {
      index_t outer2, n2, inner2;
      detail::split_around(in_shape, a, outer2, n2, inner2);
      const dtensor<T> gc = detail::contiguous(g);
      dtensor<T> gx = dtensor<T>::empty(in_shape);
      const index_t total = gx.numel();
      if (total > 0) {
        kernels::broadcast_axis<<<grid_for(total), 256, 0, stream()>>>(gc.data(), gx.data(), outer2, n2, inner2);
        MSCL_CUDA_CHECK_LAUNCH();
      }
      return grads<T>{gx};
    });
  }

  // ------------------------------------------------------------------ GEMM (cuBLAS)
  /// out = op(a) * op(b) for row-major a, b: computed as the column-major product
  /// out^T = op(b)^T * op(a)^T, where a row-major matrix read as column-major is its transpose.
  template <class T>
  static dtensor<T> gemm(const dtensor<T>& a, bool ta, const dtensor<T>& b, bool tb) {
    const dtensor<T> ac = detail::contiguous(a), bc = detail::contiguous(b);
    const index_t m = ta ? a.shape()[1] : a.shape()[0];
    const index_t k = ta ? a.shape()[0] : a.shape()[1];
    const index_t n = tb ? b.shape()[0] : b.shape()[1];
    dtensor<T> out = dtensor<T>::empty({m, n});
    if (m == 0 || n == 0) return out;
    if (k == 0) {
      out.fill_(T(0));
      return out;
    }
    const T one = T(1), zero = T(0);
    cublasHandle_t h = context().cublas;
    const cublasOperation_t op_a = ta ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int lda = int(a.shape()[1]), ldb = int(b.shape()[1]), ldc = int(n);
    if constexpr (std::is_same_v<T, float>) {
      if (settings().autocast_bf16) {
        // bf16 autocast: the float matrices' elements are rounded to bf16 inside cuBLAS, products
        // accumulate in float, the result stays float. The gradients are GEMMs too and read the
        // setting when backward runs (convolutions keep their forward's choice): keep forward
        // and backward in one autocast scope.
        MSCL_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
        MSCL_CUBLAS_CHECK(cublasGemmEx(h, op_b, op_a, int(n), int(m), int(k), &one, bc.data(), CUDA_R_32F, ldb,
                                       ac.data(), CUDA_R_32F, lda, &zero, out.data(), CUDA_R_32F, ldc,
                                       CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT));
        return out;
      }
      MSCL_CUBLAS_CHECK(cublasSetMathMode(h, settings().allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
      MSCL_CUBLAS_CHECK(cublasSgemm(h, op_b, op_a, int(n), int(m), int(k), &one, bc.data(), ldb, ac.data(), lda, &zero,
                                    out.data(), ldc));
    } else {
      MSCL_CUBLAS_CHECK(cublasDgemm(h, op_b, op_a, int(n), int(m), int(k), &one, bc.data(), ldb, ac.data(), lda, &zero,
                                    out.data(), ldc));
    }
    return out;
  }

  template <class T>
  static dtensor<T> linear(const dtensor<T>& x, const dtensor<T>& weight, const dtensor<T>& bias) {
    ops::detail::check_rank(x, 2, "linear", "input");
    ops::detail::check_rank(weight, 2, "linear", "weight");
    MSCL_CHECK(x.shape()[1] == weight.shape()[1], shape_error,
               "linear: input " << to_string(x.shape()) << " has " << x.shape()[1] << " features, weight "
                                << to_string(weight.shape()) << " expects " << weight.shape()[1]);
    if (bias.defined())
      MSCL_CHECK(bias.shape() == shape_t{weight.shape()[0]}, shape_error,
                 "linear: bias " << to_string(bias.shape()) << " does not match weight " << to_string(weight.shape()));
    dtensor<T> out = gemm(x, false, weight, true);
    if (bias.defined() && out.numel() > 0) {
      const dtensor<T> bc = detail::contiguous(bias);
      kernels::add_row_bias<<<grid_for(out.numel()), 256, 0, stream()>>>(out.data(), bc.data(), out.shape()[0],
                                                                           out.shape()[1]);
      MSCL_CUDA_CHECK_LAUNCH();
    }
    const bool gx = x.requires_grad(), gw = weight.requires_grad(), gb = bias.requires_grad();
    dtensor<T> xs = gw ? x.detach() : dtensor<T>(), ws = gx ? weight.detach() : dtensor<T>();
    auto backward = [xs, ws, gx, gw, gb](const dtensor<T>& g) {
      dtensor<T> gbias;
      if (gb) {
        // Column sums of g: sum over axis 0 of (1, rows, cols).
        const dtensor<T> gc = detail::contiguous(g);
        const index_t rows = g.shape()[0], cols = g.shape()[1];
        gbias = dtensor<T>::empty({cols});
        if (cols > 0) {
          kernels::sum_axis<<<grid_for(cols), 256, 0, stream()>>>(gc.data(), gbias.data(), 1, rows, cols);
          MSCL_CUDA_CHECK_LAUNCH();
        }
      }
      return grads<T>{gx ? gemm(g, false, ws, false) : dtensor<T>(), gw ? gemm(g, true, xs, false) : dtensor<T>(),
                      gbias};
    };
    return autograd::record(out, "linear", {x, weight, bias}, backward);
  }

  // ------------------------------------------------------------------ losses
  template <class T>
  static dtensor<T> log_softmax(const dtensor<T>& x) {
    ops::detail::check_rank(x, 2, "log_softmax", "input");
    ops::detail::check_nonempty(x, "log_softmax");
    const dtensor<T> xc = detail::contiguous(x);
    const index_t n = x.shape()[0], c = x.shape()[1];
    dtensor<T> out = dtensor<T>::empty(x.shape());
    kernels::log_softmax_rows<<<unsigned(n), 256, 0, stream()>>>(xc.data(), out.data(), c);
    MSCL_CUDA_CHECK_LAUNCH();
    dtensor<T> saved = out.detach();
    return autograd::record(out, "log_softmax", {x}, [saved, n, c](const dtensor<T>& g) {
      const dtensor<T> gc = detail::contiguous(g);
      dtensor<T> gx = dtensor<T>::empty(saved.shape());
      kernels::log_softmax_rows_backward<<<unsigned(n), 256, 0, stream()>>>(gc.data(), saved.data(), gx.data(), c);
      MSCL_CUDA_CHECK_LAUNCH();
      return grads<T>{gx};
    });
  }

  template <class T>
  static dtensor<T> cross_entropy(const dtensor<T>& logits, const std::vector<index_t>& labels) {
    ops::detail::check_rank(logits, 2, "cross_entropy", "logits");
    const index_t n = logits.shape()[0], c = logits.shape()[1];
    MSCL_CHECK(index_t(labels.size()) == n, shape_error,
               "cross_entropy: " << labels.size() << " labels for logits of shape " << to_string(logits.shape()));
    for (std::size_t i = 0; i < labels.size(); ++i)
      MSCL_CHECK(labels[i] >= 0 && labels[i] < c, value_error,
                 "cross_entropy: label " << labels[i] << " of row " << i << " is outside [0, " << c << ")");
    MSCL_CHECK(n > 0, shape_error, "cross_entropy: no rows in logits of shape " << to_string(logits.shape()));
    const dtensor<T> xc = detail::contiguous(logits);
    auto dev_labels = detail::upload_labels(labels);
    dtensor<T> prob = dtensor<T>::empty(logits.shape());
    dtensor<double> acc = detail::zero_accumulator();
    kernels::cross_entropy_rows<<<unsigned(n), 256, 0, stream()>>>(xc.data(), dev_labels.get(), prob.data(), acc.data(),
                                                                   c);
    MSCL_CUDA_CHECK_LAUNCH();
    dtensor<T> out = dtensor<T>::empty({});
    kernels::finish_scalar<<<1, 32, 0, stream()>>>(acc.data(), out.data(), 1.0 / double(n));
    MSCL_CUDA_CHECK_LAUNCH();
    return autograd::record(out, "cross_entropy", {logits}, [prob, dev_labels, n, c](const dtensor<T>& g) {
      dtensor<T> gx = dtensor<T>::empty(prob.shape());
      kernels::cross_entropy_backward<<<grid_for(n * c), 256, 0, stream()>>>(prob.data(), dev_labels.get(), g.data(),
                                                                             gx.data(), n, c);
      MSCL_CUDA_CHECK_LAUNCH();
      return grads<T>{gx};
    });
  }

  template <class T>
  static dtensor<T> l2_normalize(const dtensor<T>& x, int axis, double eps) {
    ops::detail::check_nonempty(x, "l2_normalize");
    const int a = normalize_axis(axis, x.shape().size(), "l2_normalize");
    index_t outer, n, inner;
    detail::split_around(x.shape(), a, outer, n, inner);
    const dtensor<T> xc = detail::contiguous(x);
    dtensor<T> out = dtensor<T>::empty(x.shape());
    dtensor<T> norms = dtensor<T>::empty({outer, inner});
    kernels::l2_normalize_axis<<<grid_for(outer * inner), 128, 0, stream()>>>(xc.data(), out.data(), norms.data(),
                                                                             outer, n, inner, eps);
    MSCL_CUDA_CHECK_LAUNCH();
    dtensor<T> y = out.detach();
    return autograd::record(out, "l2_normalize", {x}, [y, norms, outer, n, inner, eps](const dtensor<T>& g) {
      const dtensor<T> gc = detail::contiguous(g);
      dtensor<T> gx = dtensor<T>::empty(y.shape());
      kernels::l2_normalize_axis_backward<<<grid_for(outer * inner), 128, 0, stream()>>>(
          gc.data(), y.data(), norms.data(), gx.data(), outer, n, inner, eps);
      MSCL_CUDA_CHECK_LAUNCH();
      return grads<T>{gx};
    });
  }

  // ------------------------------------------------------------------ non-op memory loops
  /// acc += g (autograd's gradient accumulation; both contiguous, same shape).
  template <class T>
  static void accumulate(dtensor<T>& acc, const dtensor<T>& g) {
    const dtensor<T> gc = detail::contiguous(g);
    const index_t n = acc.numel();
    if (n == 0) return;
    kernels::add_inplace<<<grid_for(kernels::vector_work<T>(n)), 256, 0, stream()>>>(acc.data(), gc.data(), n);
    MSCL_CUDA_CHECK_LAUNCH();
  }

  /// One SGD step for one parameter (optim/sgd.hpp); allocates `buf` on the first step when
  /// momentum is used.
  template <class T>
  static void sgd_update(dtensor<T>& p, const dtensor<T>& grad, dtensor<T>& buf, T lr, T mom, T wd, bool nesterov) {
    const index_t n = p.numel();
    const dtensor<T> gc = detail::contiguous(grad);
    const bool first = !buf.defined();
    if (mom != T(0) && first) buf = dtensor<T>::empty(p.shape());
    if (n == 0) return;
    kernels::sgd_update<<<grid_for(n), 256, 0, stream()>>>(p.data(), gc.data(), mom == T(0) ? nullptr : buf.data(), n,
                                                           lr, mom, wd, nesterov, first);
    MSCL_CUDA_CHECK_LAUNCH();
  }

  /// Sum of squares of all elements (gradient clipping); returns to the host.
  template <class T>
  static double sum_of_squares(const dtensor<T>& x) {
    return detail::sum_all_double(x, kernels::f_square_d{}).item();
  }
  template <class T>
  static void scale_inplace(dtensor<T>& x, double s) {
    const index_t n = x.numel();
    if (n == 0) return;
    kernels::scale_inplace<<<grid_for(n), 256, 0, stream()>>>(x.data(), n, s);
    MSCL_CUDA_CHECK_LAUNCH();
  }

  /// Random initialisation: drawn on the host with the same generator calls as for a host
  /// tensor (so a cpu and a cuda model built from the same seed are identical), then uploaded.
  template <class T>
  static void fill_uniform(dtensor<T>& t, double lo, double hi, generator& gen) {
    std::vector<T> v(std::size_t(t.numel()));
    gen.fill_uniform(v.data(), t.numel(), lo, hi);
    t.copy_from(dtensor<T>::from_vector(t.shape(), v));
  }
  template <class T>
  static void fill_normal(dtensor<T>& t, double mean, double stddev, generator& gen) {
    std::vector<T> v(std::size_t(t.numel()));
    gen.fill_normal(v.data(), t.numel(), mean, stddev);
    t.copy_from(dtensor<T>::from_vector(t.shape(), v));
  }
  /// t += v for a one-element tensor (BatchNorm's num_batches_tracked) without a host round trip.
  template <class T>
  static void add_scalar_inplace(dtensor<T>& t, T v) {
    dtensor<T> one = t.detach();
    const dtensor<T> inc = dtensor<T>::full(t.shape(), v);
    accumulate(one, inc);
  }
};

}  // namespace mscl::cuda_backend
