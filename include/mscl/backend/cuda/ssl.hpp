/// \file ssl.hpp
/// \brief The cuda implementations of the MSCL objective's own ops (ssl/) and of the two op
///        families it needs that had no device path: the fused InfoNCE (cuBLAS GEMMs straight into
///        the wide logits buffer + one block per row, in place, as the CPU op), LMCL, the queue's
///        ring-buffer write, the momentum EMA, FRA's rotation and flow normalisation, row gathers
///        for shuffle-BN, dropout, and the TPN neck's nearest/trilinear 3-D resizing.
///
/// ssl/*.hpp, ops/dropout.hpp and ops/resize.hpp dispatch here for `tensor<T, cuda>` after
/// their own argument checks; shapes, gradients and saved state are those of the CPU code.
/// Host-side parts (queue ages, pointer, FRA angles, permutations, resize tables) stay on the
/// host and are uploaded per call (a few hundred bytes; each upload waits for the stream).
/// Differences from the CPU, by design: the resize backward passes and nothing else use atomics
/// (their sums are order-dependent at the last bit); InfoNCE runs one GEMM instead of 4096-column
/// chunks; exp/log are the device's. Exact: queue writes, EMA, rotation, dropout masks.
#pragma once
#include <cmath>
#include <memory>
#include <vector>

#include "../../autograd/engine.hpp"
#include "../../autograd/node.hpp"
#include "../../ops/common.hpp"
#include "../../ops/resize.hpp"
#include "memory.hpp"
#include "runtime.hpp"
#include "ssl_kernels.cuh"

namespace mscl::cuda_backend {

/// A scalar loss on the device and the host count of rows whose positive won (accuracy).
template <class T>
struct loss_and_correct {
  tensor<T, cuda> loss;
  index_t correct = 0;
};

namespace ssl_detail {
template <class T>
using dtensor = tensor<T, cuda>;

/// n uninitialised elements of U from the caching allocator (freed with the last handle).
template <class U>
std::shared_ptr<U> device_array(std::size_t n) {
  const std::size_t bytes = sizeof(U) * std::max<std::size_t>(n, 1);
  auto* p = static_cast<U*>(device_allocator::instance().allocate(bytes));
  return std::shared_ptr<U>(p, [bytes](U* q) { device_allocator::instance().deallocate(q, bytes); });
}
template <class U>
std::shared_ptr<U> device_copy(const std::vector<U>& host) {
  auto p = device_array<U>(host.size());
  if (!host.empty()) memory_ops::upload(host.data(), p.get(), index_t(host.size()));
  return p;
}
template <class T>
dtensor<T> contiguous(const dtensor<T>& t) {
  return t.is_contiguous() ? t : t.clone();
}

/// Row-major C(m×n) = op(A)·op(B) + beta·C with explicit leading dimensions (row strides), as
/// the column-major product Cᵀ = op(B)ᵀ·op(A)ᵀ (see basic_ops::gemm).
template <class T>
void gemm_rm(bool ta, bool tb, index_t m, index_t n, index_t k, const T* A, index_t lda, const T* B, index_t ldb,
             T beta, T* C, index_t ldc) {
  if (m == 0 || n == 0 || k == 0) return;
  const T one = T(1);
  cublasHandle_t h = context().cublas;
  const cublasOperation_t op_a = ta ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  if constexpr (std::is_same_v<T, float>) {
    MSCL_CUBLAS_CHECK(cublasSetMathMode(h, settings().allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    MSCL_CUBLAS_CHECK(cublasSgemm(h, op_b, op_a, int(n), int(m), int(k), &one, B, int(ldb), A, int(lda), &beta, C,
                                  int(ldc)));
  } else {
    MSCL_CUBLAS_CHECK(cublasDgemm(h, op_b, op_a, int(n), int(m), int(k), &one, B, int(ldb), A, int(lda), &beta, C,
                                  int(ldc)));
  }
}

/// Mean of per-row losses into a device scalar, and the host count of correct rows.
template <class T>
loss_and_correct<T> finish_rows(const std::shared_ptr<double>& row_loss, const std::shared_ptr<int>& row_correct,
                                index_t rows) {
  loss_and_correct<T> r;
  r.loss = dtensor<T>::empty({});
  auto correct = device_array<long long>(1);
  kernels::mean_rows<<<1, 256, 0, stream()>>>(row_loss.get(), row_correct.get(), rows, r.loss.data(), correct.get());
  MSCL_CUDA_CHECK_LAUNCH();
  long long host = 0;
  memory_ops::download(correct.get(), &host, 1);
  r.correct = index_t(host);
  return r;
}

/// Device tables of one axis of a trilinear resize: indices [i0 | i1], weights [l0 | l1].
template <class T>
struct linear_tables {
  std::shared_ptr<long long> idx;
  std::shared_ptr<T> lam;
};
template <class T>
linear_tables<T> upload_linear(index_t in, index_t out, bool align_corners) {
  const auto a = backend::cpu_kernels::linear_axis_table<T>(in, out, align_corners);
  std::vector<long long> idx(a.i0.begin(), a.i0.end());
  idx.insert(idx.end(), a.i1.begin(), a.i1.end());
  std::vector<T> lam(a.l0.begin(), a.l0.end());
  lam.insert(lam.end(), a.l1.begin(), a.l1.end());
  return {device_copy(idx), device_copy(lam)};
}
inline std::shared_ptr<long long> upload_nearest(index_t in, index_t out) {
  const auto s = backend::cpu_kernels::nearest_source_indices(in, out);
  return device_copy(std::vector<long long>(s.begin(), s.end()));
}
inline kernels::resize_geom geom_of(const backend::cpu_kernels::resize3d_params& p) {
  return {p.planes, p.it, p.ih, p.iw, p.ot, p.oh, p.ow};
}
}  // namespace ssl_detail

struct ssl_ops {
  template <class T>
  using dtensor = tensor<T, cuda>;
  template <class T>
  using grads = std::vector<dtensor<T>>;

  // ------------------------------------------------------------------ ssl::info_nce
  /// The device body of ssl::info_nce (inputs already checked there; K, M as computed there;
  /// own_extra_offset < 0: no exclusion, else row i ignores extra negative own_extra_offset + i).
  template <class T>
  static loss_and_correct<T> info_nce(const dtensor<T>& q, const dtensor<T>& k_pos, const dtensor<T>& bank,
                                      const dtensor<T>& bank_weights, double tau, const dtensor<T>& extra,
                                      index_t own_extra_offset, index_t K, index_t M) {
    using ssl_detail::contiguous;
    const index_t n = q.shape()[0], d = q.shape()[1], C = 1 + K + M;
    const T inv_tau = T(1.0 / tau);
    const dtensor<T> qc = contiguous(q), kc = contiguous(k_pos);
    const dtensor<T> bc = K > 0 ? contiguous(bank) : dtensor<T>();
    const dtensor<T> wc = bank_weights.defined() && K > 0 ? contiguous(bank_weights) : dtensor<T>();
    const dtensor<T> ec = M > 0 ? contiguous(extra) : dtensor<T>();
    dtensor<T> buf = dtensor<T>::empty({n, C});
    T* L = buf.data();
    if (K > 0) ssl_detail::gemm_rm(false, false, n, K, d, qc.data(), d, bc.data(), K, T(0), L + 1, C);
    if (M > 0) ssl_detail::gemm_rm(false, true, n, M, d, qc.data(), d, ec.data(), d, T(0), L + 1 + K, C);
    auto row_loss = ssl_detail::device_array<double>(std::size_t(n));
    auto row_correct = ssl_detail::device_array<int>(std::size_t(n));
    kernels::nce_rows<<<unsigned(n), 1024, 0, stream()>>>(L, qc.data(), kc.data(), wc.defined() ? wc.data() : nullptr,
                                                          d, K, M, inv_tau, own_extra_offset, row_loss.get(),
                                                          row_correct.get());
    MSCL_CUDA_CHECK_LAUNCH();
    loss_and_correct<T> result = ssl_detail::finish_rows<T>(row_loss, row_correct, n);

    const bool recording = autograd::is_grad_enabled();
    const bool gq = q.requires_grad(), gk = k_pos.requires_grad(), ge = M > 0 && extra.requires_grad();
    if (!recording || !(gq || gk || ge)) return result;
    const dtensor<T> qs = (gk || ge) ? qc.detach() : dtensor<T>();
    const dtensor<T> ks = gq ? kc.detach() : dtensor<T>();
    const dtensor<T> bs = gq && K > 0 ? bc.detach() : dtensor<T>();
    const dtensor<T> ws = wc.defined() ? wc.detach() : dtensor<T>();  // also scales dL/dlogits
    const dtensor<T> es = gq && M > 0 ? ec.detach() : dtensor<T>();
    dtensor<T> prob = buf;
    auto backward = [prob, qs, ks, bs, ws, es, n, d, K, M, C, inv_tau, gq, gk, ge](const dtensor<T>& g) mutable {
      T* D = prob.data();
      kernels::nce_grad_scale<<<grid_for(n * C), 256, 0, stream()>>>(D, ws.defined() ? ws.data() : nullptr, g.data(),
                                                                      n, K, C, inv_tau);
      MSCL_CUDA_CHECK_LAUNCH();
      dtensor<T> dq, dk, de;
      if (gq) {
        dq = dtensor<T>::empty({n, d});
        if (K > 0) ssl_detail::gemm_rm(false, true, n, d, K, D + 1, C, bs.data(), K, T(0), dq.data(), d);
        else dq.fill_(T(0));
        if (M > 0) ssl_detail::gemm_rm(false, false, n, d, M, D + 1 + K, C, es.data(), d, T(1), dq.data(), d);
      }
      if (gk) dk = dtensor<T>::empty({n, d});
      if (gq || gk) {
        kernels::nce_positive_grad<<<grid_for(n * d), 256, 0, stream()>>>(
            D, C, gk ? qs.data() : nullptr, gq ? ks.data() : nullptr, gq ? dq.data() : nullptr,
            gk ? dk.data() : nullptr, n, d);
        MSCL_CUDA_CHECK_LAUNCH();
      }
      if (ge) {
        de = dtensor<T>::empty({M, d});
        ssl_detail::gemm_rm(true, false, M, d, n, D + 1 + K, C, qs.data(), d, T(0), de.data(), d);
      }
      prob = dtensor<T>();
      return grads<T>{dq, dk, dtensor<T>(), dtensor<T>(), de};
    };
    result.loss = autograd::record(result.loss, "info_nce", {q, k_pos, bank, bank_weights, extra}, backward);
    return result;
  }

  // ------------------------------------------------------------------ ssl::lmcl
  /// The device body of ssl::lmcl (inputs checked there).
  template <class T>
  static loss_and_correct<T> lmcl(const dtensor<T>& rgb, const dtensor<T>& flow_base, const dtensor<T>& flow_aug,
                                  double tau) {
    using ssl_detail::contiguous;
    const double eps = 1e-12, inv_tau = 1.0 / tau;
    const bool has_aug = flow_aug.defined();
    const index_t nb = rgb.shape()[0], C = rgb.shape()[1], nt = rgb.shape()[2];
    const index_t J = has_aug ? 2 * nt : nt;
    const dtensor<T> rc = contiguous(rgb), bc = contiguous(flow_base);
    const dtensor<T> ac = has_aug ? contiguous(flow_aug) : dtensor<T>();
    dtensor<T> rh = dtensor<T>::empty({nb, nt, C}), rn = dtensor<T>::empty({nb, nt});
    dtensor<T> fh = dtensor<T>::empty({nb, J, C}), fn = dtensor<T>::empty({nb, J});
    const unsigned grid = grid_for(nb * nt, 128);
    kernels::lmcl_normalize<<<grid, 128, 0, stream()>>>(rc.data(), nb, C, nt, rh.data(), rn.data(), nt, 0, eps);
    kernels::lmcl_normalize<<<grid, 128, 0, stream()>>>(bc.data(), nb, C, nt, fh.data(), fn.data(), J, 0, eps);
    if (has_aug)
      kernels::lmcl_normalize<<<grid, 128, 0, stream()>>>(ac.data(), nb, C, nt, fh.data(), fn.data(), J, nt, eps);
    MSCL_CUDA_CHECK_LAUNCH();
    dtensor<T> prob = dtensor<T>::empty({nb, nt, J});
    auto row_loss = ssl_detail::device_array<double>(std::size_t(nb * nt));
    auto row_correct = ssl_detail::device_array<int>(std::size_t(nb * nt));
    kernels::lmcl_rows<<<grid, 128, 0, stream()>>>(rh.data(), fh.data(), nb, nt, J, C, inv_tau, prob.data(),
                                                   row_loss.get(), row_correct.get());
    MSCL_CUDA_CHECK_LAUNCH();
    loss_and_correct<T> result = ssl_detail::finish_rows<T>(row_loss, row_correct, nb * nt);
    if (!autograd::any_requires_grad<T, cuda>({rgb, flow_base, flow_aug})) return result;
    const bool gr = rgb.requires_grad(), gb = flow_base.requires_grad(), ga = has_aug && flow_aug.requires_grad();
    auto backward = [rh, rn, fh, fn, prob, nb, C, nt, J, inv_tau, eps, gr, gb, ga](const dtensor<T>& g) {
      dtensor<T> drh = dtensor<T>::empty({nb, nt, C}), dfh = dtensor<T>::empty({nb, J, C});
      kernels::lmcl_grad_rgb<<<grid_for(nb * nt, 128), 128, 0, stream()>>>(prob.data(), fh.data(), g.data(), nb, nt,
                                                                           J, C, inv_tau, drh.data());
      kernels::lmcl_grad_flow<<<grid_for(nb * J, 128), 128, 0, stream()>>>(prob.data(), rh.data(), g.data(), nb, nt,
                                                                           J, C, inv_tau, dfh.data());
      MSCL_CUDA_CHECK_LAUNCH();
      const unsigned grid2 = grid_for(nb * nt, 128);
      dtensor<T> dr, db, da;
      if (gr) {
        dr = dtensor<T>::empty({nb, C, nt});
        kernels::lmcl_normalize_backward<<<grid2, 128, 0, stream()>>>(drh.data(), rh.data(), rn.data(), nb, C, nt, nt,
                                                                      0, eps, dr.data());
      }
      if (gb) {
        db = dtensor<T>::empty({nb, C, nt});
        kernels::lmcl_normalize_backward<<<grid2, 128, 0, stream()>>>(dfh.data(), fh.data(), fn.data(), nb, C, nt, J,
                                                                      0, eps, db.data());
      }
      if (ga) {
        da = dtensor<T>::empty({nb, C, nt});
        kernels::lmcl_normalize_backward<<<grid2, 128, 0, stream()>>>(dfh.data(), fh.data(), fn.data(), nb, C, nt, J,
                                                                      nt, eps, da.data());
      }
      MSCL_CUDA_CHECK_LAUNCH();
      return grads<T>{dr, db, da};
    };
    result.loss = autograd::record(result.loss, "lmcl", {rgb, flow_base, flow_aug}, backward);
    return result;
  }

  // ------------------------------------------------------------------ queue, EMA, gathers
  /// queue[:, (ptr + i) mod K] = keys[i, :] (keys contiguous B×D; queue D×K).
  template <class T>
  static void queue_write(dtensor<T>& queue, const dtensor<T>& keys, index_t ptr) {
    const index_t nb = keys.shape()[0], D = keys.shape()[1], K = queue.shape()[1];
    if (nb * D == 0) return;
    kernels::queue_write<<<grid_for(nb * D), 256, 0, stream()>>>(queue.data(), keys.data(), nb, D, K, ptr);
    MSCL_CUDA_CHECK_LAUNCH();
  }
  /// k = k·mk + q·mq elementwise (same shapes, contiguous).
  template <class T>
  static void ema_update_param(dtensor<T>& k, const dtensor<T>& q, T mk, T mq) {
    const index_t n = k.numel();
    if (n == 0) return;
    kernels::ema<<<grid_for(n), 256, 0, stream()>>>(k.data(), q.data(), n, mk, mq);
    MSCL_CUDA_CHECK_LAUNCH();
  }
  /// out[i] = x[index[i]] along axis 0 (no gradient recorded).
  template <class T>
  static dtensor<T> gather_rows(const dtensor<T>& x, const std::vector<index_t>& index) {
    const dtensor<T> xc = ssl_detail::contiguous(x);
    shape_t s = x.shape();
    const index_t per = s[0] > 0 ? xc.numel() / s[0] : 0;
    for (index_t i : index)
      MSCL_CHECK(i >= 0 && i < s[0], value_error, "gather_rows: row " << i << " outside [0, " << s[0] << ")");
    s[0] = index_t(index.size());
    dtensor<T> out = dtensor<T>::empty(s);
    if (out.numel() == 0) return out;
    auto idx = ssl_detail::device_copy(std::vector<long long>(index.begin(), index.end()));
    kernels::gather_rows<<<grid_for(out.numel()), 256, 0, stream()>>>(xc.data(), idx.get(), out.data(),
                                                                       index_t(index.size()), per);
    MSCL_CUDA_CHECK_LAUNCH();
    return out;
  }

  // ------------------------------------------------------------------ FRA
  /// out[b] = R(sign·angles[b]) in[b] for B×2×inner planes (raw device pointers).
  template <class T>
  static void rotate_planes(const T* in, T* out, index_t nb, index_t inner, const std::vector<double>& angles,
                            double sign) {
    if (nb * inner == 0) return;
    std::vector<double> cs(static_cast<std::size_t>(nb)), sn(static_cast<std::size_t>(nb));
    for (std::size_t b = 0; b < cs.size(); ++b) {  // the CPU's expressions, on the host
      cs[b] = std::cos(angles[b]);
      sn[b] = sign * std::sin(angles[b]);
    }
    auto dc = ssl_detail::device_copy(cs), ds = ssl_detail::device_copy(sn);
    kernels::rotate_planes<<<grid_for(nb * inner), 256, 0, stream()>>>(in, out, nb, inner, dc.get(), ds.get());
    MSCL_CUDA_CHECK_LAUNCH();
  }
  /// Each of nb·maps maps (hw values per channel, channel stride inner) divided by max‖(u,v)‖ + eps.
  template <class T>
  static void flow_max_normalize(const T* in, T* out, index_t nb, index_t maps, index_t hw, index_t inner, double eps) {
    if (nb * maps == 0 || hw == 0) return;
    kernels::flow_max_normalize<<<unsigned(nb * maps), 256, 0, stream()>>>(in, out, maps, hw, inner, eps);
    MSCL_CUDA_CHECK_LAUNCH();
  }

  /// Colour codes nb flows (u, v planes of `inner` values) into nb × 3 planes (augment/flow_color_batch.hpp).
  template <class T>
  static void flow_color_code(const T* in, T* out, index_t nb, index_t inner, bool fast_atan2) {
    if (nb * inner == 0) return;
    kernels::flow_color_code<<<grid_for(nb * inner), 256, 0, stream()>>>(in, out, nb, inner, fast_atan2);
    MSCL_CUDA_CHECK_LAUNCH();
  }

  // ------------------------------------------------------------------ ops::dropout
  /// Training-mode dropout with 0 < p <= 1 (ops::dropout handles the identity cases). The mask is
  /// the CPU's: the device Philox produces the same words for (seed, stream, i).
  template <class T>
  static dtensor<T> dropout(const dtensor<T>& x, double p, std::uint64_t seed, std::uint64_t stream_id) {
    const index_t n = x.numel();
    dtensor<T> mask = dtensor<T>::empty(x.shape());
    const T keep_scale = p < 1.0 ? T(1.0 / (1.0 - p)) : T(0);
    if (n > 0) {
      kernels::dropout_mask<<<grid_for(n), 256, 0, stream()>>>(mask.data(), n, seed, stream_id, p, keep_scale);
      MSCL_CUDA_CHECK_LAUNCH();
    }
    const dtensor<T> xc = ssl_detail::contiguous(x);
    dtensor<T> out = dtensor<T>::empty(x.shape());
    if (n > 0) {
      kernels::map_binary<<<grid_for(n), 256, 0, stream()>>>(xc.data(), mask.data(), out.data(), n, kernels::f_mul{});
      MSCL_CUDA_CHECK_LAUNCH();
    }
    if (!autograd::any_requires_grad<T, cuda>({x})) return out;
    return autograd::record(out, "dropout", {x}, [mask](const dtensor<T>& g) {
      const dtensor<T> gc = ssl_detail::contiguous(g);
      dtensor<T> gx = dtensor<T>::empty(g.shape());
      const index_t m = gx.numel();
      if (m > 0) {
        kernels::map_binary<<<grid_for(m), 256, 0, stream()>>>(gc.data(), mask.data(), gx.data(), m, kernels::f_mul{});
        MSCL_CUDA_CHECK_LAUNCH();
      }
      return grads<T>{gx};
    });
  }

  // ------------------------------------------------------------------ ops::interpolate_*3d
  template <class T>
  static dtensor<T> interpolate_nearest3d(const dtensor<T>& x, const ops::resize3d_size& size) {
    const auto p = ops::detail::resize_params(x, size, "interpolate_nearest3d");
    const dtensor<T> xc = ssl_detail::contiguous(x);
    dtensor<T> out = dtensor<T>::empty({x.size(0), x.size(1), p.ot, p.oh, p.ow});
    auto st = ssl_detail::upload_nearest(p.it, p.ot), sh = ssl_detail::upload_nearest(p.ih, p.oh),
         sw = ssl_detail::upload_nearest(p.iw, p.ow);
    const auto g = ssl_detail::geom_of(p);
    kernels::nearest3d<<<grid_for(out.numel()), 256, 0, stream()>>>(xc.data(), out.data(), g, st.get(), sh.get(),
                                                                    sw.get());
    MSCL_CUDA_CHECK_LAUNCH();
    const shape_t xshape = x.shape();
    return autograd::record(out, "interpolate_nearest3d", {x}, [g, st, sh, sw, xshape](const dtensor<T>& gy) {
      const dtensor<T> gc = ssl_detail::contiguous(gy);
      dtensor<T> gx = dtensor<T>::zeros(xshape);
      kernels::nearest3d_backward<<<grid_for(gc.numel()), 256, 0, stream()>>>(gc.data(), gx.data(), g, st.get(),
                                                                              sh.get(), sw.get());
      MSCL_CUDA_CHECK_LAUNCH();
      return grads<T>{gx};
    });
  }
  template <class T>
  static dtensor<T> interpolate_trilinear3d(const dtensor<T>& x, const ops::resize3d_size& size, bool align_corners) {
    const auto p = ops::detail::resize_params(x, size, "interpolate_trilinear3d");
    const dtensor<T> xc = ssl_detail::contiguous(x);
    dtensor<T> out = dtensor<T>::empty({x.size(0), x.size(1), p.ot, p.oh, p.ow});
    const auto at = ssl_detail::upload_linear<T>(p.it, p.ot, align_corners);
    const auto ah = ssl_detail::upload_linear<T>(p.ih, p.oh, align_corners);
    const auto aw = ssl_detail::upload_linear<T>(p.iw, p.ow, align_corners);
    const auto g = ssl_detail::geom_of(p);
    kernels::trilinear3d<<<grid_for(out.numel()), 256, 0, stream()>>>(xc.data(), out.data(), g, at.idx.get(),
                                                                      at.lam.get(), ah.idx.get(), ah.lam.get(),
                                                                      aw.idx.get(), aw.lam.get());
    MSCL_CUDA_CHECK_LAUNCH();
    const shape_t xshape = x.shape();
    return autograd::record(out, "interpolate_trilinear3d", {x}, [g, at, ah, aw, xshape](const dtensor<T>& gy) {
      const dtensor<T> gc = ssl_detail::contiguous(gy);
      dtensor<T> gx = dtensor<T>::zeros(xshape);
      kernels::trilinear3d_backward<<<grid_for(gc.numel()), 256, 0, stream()>>>(
          gc.data(), gx.data(), g, at.idx.get(), at.lam.get(), ah.idx.get(), ah.lam.get(), aw.idx.get(), aw.lam.get());
      MSCL_CUDA_CHECK_LAUNCH();
      return grads<T>{gx};
    });
  }
};

}  // namespace mscl::cuda_backend
