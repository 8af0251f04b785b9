/// \file retrieval.hpp
/// \brief Nearest-neighbour video retrieval (ECOSYSTEM.md §2.1, ALGORITHM.md §9.3): centre the
///        features, L2-normalise, rank the gallery by cosine similarity for every query, and report
///        Recall@k — a query is a hit at k if any of its k most similar gallery videos has its label.
///
/// Centring (`centering`):
///  - `gallery_mean` (default): queries and gallery both subtract the *gallery* mean. The query
///    (test) set contributes no statistic, so a query's ranking does not depend on which other
///    test videos are evaluated with it.
///  - `per_set`: each set subtracts its own mean — what CoCLR's and MSCL's retrieval scripts do
///    (ECOSYSTEM §2.1 "subtract the mean feature of each set"); use it to reproduce published tables.
///  - `none` + L2: VCOP's plain cosine similarity.
///  With train and test drawn from one distribution the two means nearly agree and so do the
///  recalls; the choice is printed with every result.
/// Ranking is deterministic: similarities are accumulated in a fixed order (float, dimension by
/// dimension, independent of thread count and blocking), and ties are broken by the lower gallery
/// index. A zero vector stays zero after normalisation (similarity 0 to everything).
/// k larger than the gallery: with `k_policy::clamp` (default) Recall@k is computed at k = gallery
/// size and `effective_ks` records it; with `k_policy::error` it is a value_error.
#pragma once
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"

namespace mscl::eval {

enum class centering { gallery_mean, per_set, none };
inline const char* centering_name(centering c) {
  return c == centering::gallery_mean ? "gallery-mean" : c == centering::per_set ? "per-set" : "none";
}

/// What to do with a k larger than the gallery.
enum class k_policy { clamp, error };

struct retrieval_options {
  std::vector<int> ks{1, 5, 10, 20, 50};
  centering center = centering::gallery_mean;
  bool l2_normalize = true;
  k_policy beyond_gallery = k_policy::clamp;
  /// Neighbours kept per query in the result; 0 = the largest effective k.
  index_t keep_neighbours = 0;
};

struct retrieval_result {
  std::vector<int> ks;            ///< as requested
  std::vector<int> effective_ks;  ///< after clamping to the gallery size
  std::vector<double> recall;     ///< hit fraction per k
  std::vector<index_t> hits;      ///< hit count per k
  index_t num_queries = 0, num_gallery = 0, dim = 0;
  index_t neighbours_per_query = 0;
  std::vector<index_t> neighbours;  ///< num_queries × neighbours_per_query gallery indices, best first
  std::vector<float> similarities;  ///< matching similarities
  centering center = centering::gallery_mean;

  index_t neighbour(index_t q, index_t r) const { return neighbours[std::size_t(q * neighbours_per_query + r)]; }
  float similarity(index_t q, index_t r) const { return similarities[std::size_t(q * neighbours_per_query + r)]; }
  /// Recall at a requested k (value_error if k was not requested).
  double recall_at(int k) const {
    for (std::size_t i = 0; i < ks.size(); ++i)
      if (ks[i] == k) return recall[i];
    MSCL_CHECK(false, value_error, "retrieval_result::recall_at: k = " << k << " was not evaluated");
    return 0;
  }
};

namespace detail {
inline void check_feature_matrix(const tensor<float>& x, const char* what) {
  MSCL_CHECK(x.dim() == 2 && x.shape()[0] > 0 && x.shape()[1] > 0, shape_error,
             "eval::retrieve: " << what << " features must be a non-empty N x D matrix, got " << to_string(x.shape()));
}
/// Column means of an N×D row-major matrix, in double.
inline std::vector<double> column_mean(const float* x, index_t n, index_t d) {
  std::vector<double> m(static_cast<std::size_t>(d), 0.0);
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < d; ++j) m[std::size_t(j)] += x[i * d + j];
  for (auto& v : m) v /= double(n);
  return m;
}
/// (x − mean), then optional L2 normalisation per row; double arithmetic, float result.
inline std::vector<float> centre_normalise(const float* x, index_t n, index_t d, const std::vector<double>* mean, bool l2) {
  std::vector<float> out(static_cast<std::size_t>(n * d));
  std::vector<double> row(static_cast<std::size_t>(d));
  for (index_t i = 0; i < n; ++i) {
    double ss = 0;
    for (index_t j = 0; j < d; ++j) {
      row[std::size_t(j)] = double(x[i * d + j]) - (mean ? (*mean)[std::size_t(j)] : 0.0);
      ss += row[std::size_t(j)] * row[std::size_t(j)];
    }
    const double inv = (l2 && ss > 0) ? 1.0 / std::sqrt(ss) : 1.0;
    for (index_t j = 0; j < d; ++j) out[std::size_t(i * d + j)] = float(row[std::size_t(j)] * inv);
  }
  return out;
}
}  // namespace detail

/// Applies the centring / normalisation of `o` to both sets (returned row-major N×D, float).
inline std::pair<std::vector<float>, std::vector<float>> prepare_retrieval_features(const tensor<float>& query,
                                                                                    const tensor<float>& gallery,
                                                                                    centering c, bool l2) {
  detail::check_feature_matrix(query, "query");
  detail::check_feature_matrix(gallery, "gallery");
  const index_t nq = query.shape()[0], ng = gallery.shape()[0], d = query.shape()[1];
  MSCL_CHECK(gallery.shape()[1] == d, shape_error,
             "eval::retrieve: query features have " << d << " dimensions, gallery features " << gallery.shape()[1]);
  const tensor<float> q = query.is_contiguous() ? query : query.clone();
  const tensor<float> g = gallery.is_contiguous() ? gallery : gallery.clone();
  std::vector<double> gm, qm;
  if (c != centering::none) gm = detail::column_mean(g.data(), ng, d);
  if (c == centering::per_set) qm = detail::column_mean(q.data(), nq, d);
  const std::vector<double>* qmean = c == centering::none ? nullptr : c == centering::per_set ? &qm : &gm;
  const std::vector<double>* gmean = c == centering::none ? nullptr : &gm;
  return {detail::centre_normalise(q.data(), nq, d, qmean, l2), detail::centre_normalise(g.data(), ng, d, gmean, l2)};
}

/// Ranks `gallery` (N_g × D, labels `gallery_labels`) for every row of `query` (N_q × D,
/// `query_labels`) and computes Recall@k.
inline retrieval_result retrieve(const tensor<float>& query, const std::vector<int>& query_labels,
                                 const tensor<float>& gallery, const std::vector<int>& gallery_labels,
                                 const retrieval_options& o = {}) {
  detail::check_feature_matrix(query, "query");
  detail::check_feature_matrix(gallery, "gallery");
  const index_t nq = query.shape()[0], ng = gallery.shape()[0], d = query.shape()[1];
  MSCL_CHECK(gallery.shape()[1] == d, shape_error,
             "eval::retrieve: query features have " << d << " dimensions, gallery features " << gallery.shape()[1]);
  MSCL_CHECK(index_t(query_labels.size()) == nq && index_t(gallery_labels.size()) == ng, shape_error,
             "eval::retrieve: " << query_labels.size() << " query labels for " << nq << " queries, "
                                << gallery_labels.size() << " gallery labels for " << ng << " gallery videos");
  MSCL_CHECK(!o.ks.empty() && o.keep_neighbours >= 0, value_error, "eval::retrieve: need at least one k");
  retrieval_result r;
  r.ks = o.ks;
  r.num_queries = nq;
  r.num_gallery = ng;
  r.dim = d;
  r.center = o.center;
  index_t kmax = 1;
  for (int k : o.ks) {
    MSCL_CHECK(k >= 1, value_error, "eval::retrieve: k must be >= 1, got " << k);
    MSCL_CHECK(o.beyond_gallery == k_policy::clamp || k <= ng, value_error,
               "eval::retrieve: Recall@" << k << " needs at least " << k << " gallery videos, the gallery has " << ng
                                         << " (use k_policy::clamp to evaluate at the gallery size)");
    r.effective_ks.push_back(int(std::min<index_t>(k, ng)));
    kmax = std::max<index_t>(kmax, r.effective_ks.back());
  }
  const index_t keep = std::min<index_t>(ng, std::max(kmax, o.keep_neighbours));
  r.neighbours_per_query = keep;
  r.neighbours.assign(std::size_t(nq * keep), 0);
  r.similarities.assign(std::size_t(nq * keep), 0.f);

  const auto [qf, gf] = prepare_retrieval_features(query, gallery, o.center, o.l2_normalize);
  // Gallery transposed (D × N_g) so that the inner loop runs over gallery videos: every
  // similarity is summed over dimensions 0..D-1 in order, whatever the vector width.
  std::vector<float> gt(static_cast<std::size_t>(d * ng));
  for (index_t i = 0; i < ng; ++i)
    for (index_t j = 0; j < d; ++j) gt[std::size_t(j * ng + i)] = gf[std::size_t(i * d + j)];
  std::vector<index_t> first_hit(static_cast<std::size_t>(nq), ng);  // rank of the first same-label neighbour (ng: none)
#pragma omp parallel
  {
    std::vector<float> sim(static_cast<std::size_t>(ng));
    std::vector<index_t> order(static_cast<std::size_t>(ng));
#pragma omp for schedule(dynamic, 16)
    for (index_t q = 0; q < nq; ++q) {
      std::fill(sim.begin(), sim.end(), 0.f);
      const float* qr = qf.data() + q * d;
      for (index_t j = 0; j < d; ++j) {
        const float a = qr[j];
        const float* grow = gt.data() + j * ng;
        for (index_t i = 0; i < ng; ++i) sim[std::size_t(i)] += a * grow[i];
      }
      std::iota(order.begin(), order.end(), index_t(0));
      auto better = [&](index_t a, index_t b) {
        return sim[std::size_t(a)] > sim[std::size_t(b)] || (sim[std::size_t(a)] == sim[std::size_t(b)] && a < b);
      };
      std::partial_sort(order.begin(), order.begin() + keep, order.end(), better);
      for (index_t k = 0; k < keep; ++k) {
        const index_t g = order[std::size_t(k)];
        r.neighbours[std::size_t(q * keep + k)] = g;
        r.similarities[std::size_t(q * keep + k)] = sim[std::size_t(g)];
        if (first_hit[std::size_t(q)] == ng && gallery_labels[std::size_t(g)] == query_labels[std::size_t(q)])
          first_hit[std::size_t(q)] = k;
      }
    }
  }
  for (int k : r.effective_ks) {
    index_t h = 0;
    for (index_t q = 0; q < nq; ++q) h += first_hit[std::size_t(q)] < k ? 1 : 0;
    r.hits.push_back(h);
    r.recall.push_back(double(h) / double(nq));
  }
  return r;
}

}  // namespace mscl::eval
