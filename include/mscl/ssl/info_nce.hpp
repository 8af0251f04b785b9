/// \file info_nce.hpp
/// \brief The fused MoCo InfoNCE loss (ALGORITHM.md §2.1/§2.2): logits = [q·k⁺, q·(w_n Q_n)…,
///        q·e_m…]/τ with the positive in column 0, mean cross-entropy with label 0, and top-1
///        accuracy of the positive — one GEMM forward, one GEMM backward (each split into fixed
///        column chunks), B×(1+K+M) memory.
///
/// Why fused: with K = 65 536 negatives the logits matrix dominates the step's memory traffic.
/// Composing matmul + cat + scale + cross_entropy would materialise it four or five times (and
/// keep several copies alive for backward). Here the bank GEMM writes straight into columns
/// 1..K of one B×(1+K+M) buffer, softmax runs in place over it, that buffer (the probabilities)
/// is the only large thing kept for backward, and backward turns it in place into dL/dlogits
/// and feeds it to one GEMM for dq. Nothing else of size B×K is ever allocated (the backward
/// GEMM keeps ⌈K/4096⌉ partial B×D products, 256 KiB at MoCo scale; see detail::nce_chunk).
///
/// Column layout of the logits (what `accuracy` and the tests refer to):
///   0            the positive q_i·k_i
///   1 … K        the bank columns, scaled by their age weights w_n (ALGORITHM.md §1.4)
///   K+1 … K+M    optional extra negatives (rows of `extra_negatives`, e.g. the current batch's
///                keys — the ALGORITHM.md §11 A4 remedy "batch keys among negatives"); unweighted
/// All logits are divided by τ. The same op serves the intra-modality MoCo terms and the
/// cross-modal head (§2.2: RGB query, flow positive key, flow bank — just different inputs).
///
/// Gradients: to `q`, to `k_pos` and to `extra_negatives` when they require grad. `bank` and
/// `bank_weights` are constants (a queue never receives gradients); passing a bank that
/// requires grad while recording throws instead of silently dropping its gradient.
///
/// Aliasing: the backward pass needs the bank as it was in the forward pass. The op keeps a
/// handle to the bank's memory, so a caller must not overwrite that memory in place before
/// backward. `ssl::memory_queue` guarantees this by copy-on-write (its enqueue writes into a
/// fresh buffer while a graph still holds the old one) — the same reason PyTorch MoCo passes
/// `queue.clone().detach()`.
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <Eigen/Core>

#include "../ops/common.hpp"

namespace mscl::ssl {

/// What `info_nce` hands back.
template <class T, class B = cpu>
struct info_nce_output {
  tensor<T, B> loss;      ///< scalar []: mean over rows of −log softmax(logits_i)[0]
  double accuracy = 0;    ///< fraction in [0, 1] of rows whose positive logit is the largest
                          ///< (ties go to the positive, as argmax picks the first index)
  index_t correct = 0;    ///< number of such rows
  index_t columns = 0;    ///< 1 + K + M, the width of the logits
};

namespace detail {
template <class T>
using nce_row_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using nce_cmap = Eigen::Map<const nce_row_matrix<T>>;
template <class T>
using nce_map = Eigen::Map<nce_row_matrix<T>>;
/// A column block of a row-major buffer (rows keep the buffer's full width as stride).
template <class T>
using nce_block = Eigen::Map<nce_row_matrix<T>, 0, Eigen::OuterStride<>>;
template <class T>
using nce_cblock = Eigen::Map<const nce_row_matrix<T>, 0, Eigen::OuterStride<>>;
template <class T>
using nce_array = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using nce_carray = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

/// Bank columns per GEMM task. The bank GEMMs are split into fixed column chunks run in
/// parallel, each a single-threaded Eigen GEMM (Eigen does not nest inside an OpenMP region):
/// Eigen's own parallel GEMM synchronises its threads once per depth panel, and the backward
/// product (B×K)·(K×D) has depth K = 65 536 — on a loaded 2-core machine that cost seconds per
/// call instead of tens of milliseconds. Fixed chunks (not one per thread) also make the
/// results independent of the thread count.
constexpr index_t nce_chunk = 4096;

// L[:, 1 + j] = Σ_c Q[:, c]·bank[c, j] for j < K, into a row-major buffer of row stride C.
template <class T>
void nce_bank_logits(const T* q, index_t n, index_t d, const T* bank, index_t K, T* L, index_t C) {
  const index_t chunks = (K + nce_chunk - 1) / nce_chunk;
  nce_cmap<T> Qm(q, n, d);
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (index_t c = 0; c < chunks; ++c) {
    const index_t j0 = c * nce_chunk, w = std::min(nce_chunk, K - j0);
    nce_block<T> Lb(L + 1 + j0, n, w, Eigen::OuterStride<>(C));
    Lb.noalias() = Qm * nce_cblock<T>(bank + j0, d, w, Eigen::OuterStride<>(K));
  }
}

// dq = Σ_j dL[:, 1 + j]·bank[:, j]ᵀ: per-chunk partial products in parallel, summed in chunk order.
template <class T>
void nce_bank_grad(const T* dl, index_t n, index_t C, const T* bank, index_t d, index_t K, T* dq) {
  const index_t chunks = (K + nce_chunk - 1) / nce_chunk;
  std::vector<T> partial(std::size_t(chunks * n * d));
#pragma omp parallel for schedule(static) if (chunks > 1)
  for (index_t c = 0; c < chunks; ++c) {
    const index_t j0 = c * nce_chunk, w = std::min(nce_chunk, K - j0);
    nce_map<T>(partial.data() + c * n * d, n, d).noalias() =
        nce_cblock<T>(dl + 1 + j0, n, w, Eigen::OuterStride<>(C)) *
        nce_cblock<T>(bank + j0, d, w, Eigen::OuterStride<>(K)).transpose();
  }
  std::copy_n(partial.data(), n * d, dq);
  for (index_t c = 1; c < chunks; ++c) {
    const T* p = partial.data() + c * n * d;
    for (index_t i = 0; i < n * d; ++i) dq[i] += p[i];
  }
}
}  // namespace detail

/// InfoNCE with a negative bank, fused with its backward pass.
///
/// \param q               B×D queries (usually L2-normalised; not required). Gradient: yes.
/// \param k_pos           B×D positive keys, row i is the positive of query i. Gradient if it
///                        requires one (MoCo keys do not).
/// \param bank            D×K negative bank (the queue layout), or an undefined tensor / K = 0
///                        for no bank. Constant.
/// \param bank_weights    K age weights w_n (logit column n+1 is w_n·q·Q_n), or undefined for
///                        all ones. Constant.
/// \param tau             temperature τ > 0.
/// \param extra_negatives M×D extra negatives (undefined for none); gradient if it requires one.
/// \param exclude_own_extra row i ignores extra negative `own_extra_offset + i` (the current
///                          batch's keys as negatives, without each query's own positive among
///                          them); needs own_extra_offset + B <= M.
/// \param own_extra_offset where this batch's keys start among the extra negatives: 0 when they
///                          are the batch itself (M = B), rank · B when they are the keys of all
///                          ranks in rank order (data parallelism, M = W · B).
template <class T, class B>
info_nce_output<T, B> info_nce(const tensor<T, B>& q, const tensor<T, B>& k_pos, const tensor<T, B>& bank,
                               const tensor<T, B>& bank_weights, double tau,
                               const tensor<T, B>& extra_negatives = tensor<T, B>(),
                               bool exclude_own_extra = false, index_t own_extra_offset = 0) {
  using tensor_t = tensor<T, B>;
  using ops::detail::check_rank;
  check_rank(q, 2, "ssl::info_nce", "q (B×D)");
  check_rank(k_pos, 2, "ssl::info_nce", "k_pos (B×D)");
  const index_t n = q.shape()[0], d = q.shape()[1];
  MSCL_CHECK(n > 0 && d > 0, shape_error, "ssl::info_nce: q must be non-empty B×D, got " << to_string(q.shape()));
  MSCL_CHECK(k_pos.shape() == q.shape(), shape_error,
             "ssl::info_nce: k_pos must match q (B×D = " << to_string(q.shape()) << "), got " << to_string(k_pos.shape()));
  MSCL_CHECK(std::isfinite(tau) && tau > 0, value_error, "ssl::info_nce: temperature must be finite and > 0, got " << tau);
  index_t K = 0, M = 0;
  if (bank.defined()) {
    check_rank(bank, 2, "ssl::info_nce", "bank (D×K)");
    MSCL_CHECK(bank.shape()[0] == d, shape_error,
               "ssl::info_nce: bank must be D×K with D = " << d << " (from q " << to_string(q.shape()) << "), got "
                                                          << to_string(bank.shape()));
    K = bank.shape()[1];
  }
  if (bank_weights.defined()) {
    MSCL_CHECK(bank_weights.shape() == shape_t{K}, shape_error,
               "ssl::info_nce: bank_weights must have shape [K] = [" << K << "] (bank " << (bank.defined() ? to_string(bank.shape()) : "undefined")
                                                                     << "), got " << to_string(bank_weights.shape()));
  }
  if (extra_negatives.defined()) {
    check_rank(extra_negatives, 2, "ssl::info_nce", "extra_negatives (M×D)");
    MSCL_CHECK(extra_negatives.shape()[1] == d, shape_error,
               "ssl::info_nce: extra_negatives must be M×D with D = " << d << ", got " << to_string(extra_negatives.shape()));
    M = extra_negatives.shape()[0];
    MSCL_CHECK(!exclude_own_extra || (own_extra_offset >= 0 && own_extra_offset + n <= M), shape_error,
               "ssl::info_nce: exclude_own_extra needs the batch's " << n << " keys at extra negatives ["
                   << own_extra_offset << ", " << own_extra_offset + n << "), but there are M = " << M);
  }
  MSCL_CHECK(exclude_own_extra || own_extra_offset == 0, value_error,
             "ssl::info_nce: own_extra_offset " << own_extra_offset << " given without exclude_own_extra");
  const bool recording = autograd::is_grad_enabled();
  MSCL_CHECK(!recording || (!bank.requires_grad() && !bank_weights.requires_grad()), value_error,
             "ssl::info_nce: the bank and its weights are constants (a queue gets no gradient); pass bank.detach() — "
             "negatives that need a gradient go in extra_negatives");

  if constexpr (std::is_same_v<B, cuda>) {  // backend/cuda/ssl.hpp: the same op on the device
    const auto r = backend::cuda_ops<B>::info_nce(q, k_pos, bank, bank_weights, tau, extra_negatives,
                                                  exclude_own_extra ? own_extra_offset : index_t(-1), K, M);
    info_nce_output<T, B> result;
    result.loss = r.loss;
    result.correct = r.correct;
    result.accuracy = double(r.correct) / double(n);
    result.columns = 1 + K + M;
    return result;
  } else {
  ops::detail::require_cpu<B>();
  const index_t C = 1 + K + M;
  const T inv_tau = T(1.0 / tau);
  const tensor_t qc = ops::detail::contiguous_data(q), kc = ops::detail::contiguous_data(k_pos);
  const tensor_t bc = K > 0 ? ops::detail::contiguous_data(bank) : tensor_t();
  const tensor_t wc = bank_weights.defined() && K > 0 ? ops::detail::contiguous_data(bank_weights) : tensor_t();
  const tensor_t ec = M > 0 ? ops::detail::contiguous_data(extra_negatives) : tensor_t();

  // ---- logits: one GEMM for the bank block, written in place into the wide buffer.
  tensor_t buf = tensor_t::empty({n, C});
  T* L = buf.data();
  detail::nce_cmap<T> Qm(qc.data(), n, d);
  if (K > 0) detail::nce_bank_logits(qc.data(), n, d, bc.data(), K, L, C);
  if (M > 0) {
    detail::nce_block<T> Le(L + 1 + K, n, M, Eigen::OuterStride<>(C));
    Le.noalias() = Qm * detail::nce_cmap<T>(ec.data(), M, d).transpose();
  }

  // ---- per row: scale, stable log-sum-exp, loss; then the buffer becomes softmax probabilities.
  std::vector<double> row_loss(std::size_t(n), 0.0);
  std::vector<char> row_correct(std::size_t(n), 0);
  const T* wv = wc.defined() ? wc.data() : nullptr;
  const T* qv = qc.data();
  const T* kv = kc.data();
  ops::detail::parallel_for(n, [&](index_t i) {
    T* row = L + i * C;
    double pos = 0;
    for (index_t c = 0; c < d; ++c) pos += double(qv[i * d + c]) * double(kv[i * d + c]);
    row[0] = T(pos) * inv_tau;
    // Eigen array expressions: vectorised scaling, max, exp (Eigen's SIMD exp, ~1 ulp) and a
    // double-precision sum; the exp pass was a third of the forward time with scalar std::exp.
    detail::nce_array<T> r(row, C);
    if (K > 0) {
      if (wv) r.segment(1, K) *= detail::nce_carray<T>(wv, K) * inv_tau;
      else r.segment(1, K) *= inv_tau;
    }
    if (M > 0) r.segment(1 + K, M) *= inv_tau;
    if (exclude_own_extra) row[1 + K + own_extra_offset + i] = -std::numeric_limits<T>::infinity();
    const T neg_max = C > 1 ? r.segment(1, C - 1).maxCoeff() : -std::numeric_limits<T>::infinity();
    const T l0 = row[0];
    row_correct[std::size_t(i)] = l0 >= neg_max ? 1 : 0;
    const T mx = std::max(l0, neg_max);
    r = (r - mx).exp();
    const double s = r.template cast<double>().sum();
    row_loss[std::size_t(i)] = double(mx) + std::log(s) - double(l0);
    r *= T(1.0 / s);
  }, 1);

  double total = 0;
  index_t correct = 0;
  for (index_t i = 0; i < n; ++i) {
    total += row_loss[std::size_t(i)];
    correct += row_correct[std::size_t(i)];
  }
  info_nce_output<T, B> result;
  result.correct = correct;
  result.accuracy = double(correct) / double(n);
  result.columns = C;
  tensor_t out = tensor_t::scalar(T(total / double(n)));

  const bool gq = q.requires_grad(), gk = k_pos.requires_grad(), ge = M > 0 && extra_negatives.requires_grad();
  if (!recording || !(gq || gk || ge)) {
    result.loss = out;
    return result;
  }
  // Saved: the probabilities (the only B×C buffer) and handles to the inputs' memory.
  const tensor_t qs = (gk || ge) ? qc.detach() : tensor_t();
  const tensor_t ks = gq ? kc.detach() : tensor_t();
  const tensor_t bs = gq && K > 0 ? bc.detach() : tensor_t();
  const tensor_t ws = gq && K > 0 && wc.defined() ? wc.detach() : tensor_t();
  const tensor_t es = gq && M > 0 ? ec.detach() : tensor_t();
  tensor_t prob = buf;
  auto backward = [prob, qs, ks, bs, ws, es, n, d, K, M, C, inv_tau, gq, gk, ge](const tensor_t& g) mutable {
    // dL/dlogit = g/B·(p − onehot₀); the chain through "/τ" and "·w_n" is folded in here, in place
    // (the graph is consumed by this call, so nobody reads the probabilities afterwards).
    const T scale = g.item() / T(n) * inv_tau;
    T* D = prob.data();
    const T* w = ws.defined() ? ws.data() : nullptr;
    ops::detail::parallel_for(n, [&](index_t i) {
      T* row = D + i * C;
      row[0] = (row[0] - T(1)) * scale;
      if (w) {
        for (index_t j = 0; j < K; ++j) row[1 + j] *= scale * w[j];
      } else {
        for (index_t j = 0; j < K; ++j) row[1 + j] *= scale;
      }
      for (index_t j = 1 + K; j < C; ++j) row[j] *= scale;
    }, 1);
    tensor_t dq, dk, de;
    if (gq) {
      dq = tensor_t::empty({n, d});
      detail::nce_map<T> dQ(dq.data(), n, d);
      if (K > 0) detail::nce_bank_grad(D, n, C, bs.data(), d, K, dq.data());
      else dQ.setZero();
      if (M > 0)
        dQ.noalias() += detail::nce_block<T>(D + 1 + K, n, M, Eigen::OuterStride<>(C)) * detail::nce_cmap<T>(es.data(), M, d);
      const T* kv2 = ks.data();
      for (index_t i = 0; i < n; ++i)
        for (index_t c = 0; c < d; ++c) dq.data()[i * d + c] += D[i * C] * kv2[i * d + c];
    }
    if (gk) {
      dk = tensor_t::empty({n, d});
      for (index_t i = 0; i < n; ++i)
        for (index_t c = 0; c < d; ++c) dk.data()[i * d + c] = D[i * C] * qs.data()[i * d + c];
    }
    if (ge) {
      de = tensor_t::empty({M, d});
      detail::nce_map<T>(de.data(), M, d).noalias() =
          detail::nce_block<T>(D + 1 + K, n, M, Eigen::OuterStride<>(C)).transpose() * detail::nce_cmap<T>(qs.data(), n, d);
    }
    prob = tensor_t();  // release the B×C buffer as soon as possible
    return std::vector<tensor_t>{dq, dk, tensor_t(), tensor_t(), de};
  };
  result.loss = autograd::record(out, "info_nce", {q, k_pos, bank, bank_weights, extra_negatives}, backward);
  return result;
  }
}

}  // namespace mscl::ssl
