/// \file median_network.hpp
/// \brief Branch-free 3x3 and 5x5 median filters (replicate border) for flow planes, built from
///        min/max selection networks applied to 8 pixels at once.
///
/// TV-L1 median-filters both flow components once per outer iteration (Wedel et al.), so the
/// filter must cost about as much as a few solver iterations, not a sort per pixel. The window's
/// columns are sorted first (shared by all pixels whose windows contain that column), then a fixed
/// network selects the median from the k column-sorted columns. The networks were derived offline:
/// Batcher's odd-even merge sort on the next power of two (wires past k*k hold +inf, so comparators
/// touching them are no-ops), minus every comparator that is a no-op on all column-sorted inputs
/// (0-1 principle: checked on all (k+1)^k column-sorted 0-1 inputs), pruned backward to the one
/// output wire (the median). 5x5: 85 comparators (24 of them half: only min or max is used);
/// 3x3: 17 (8 half). Wire index = column * k + rank. tests/unit/flow_tvl1_test.cpp checks both
/// filters against a sort-based reference, ties included.
#pragma once
#include <algorithm>
#include <cstddef>
#include <iterator>
#include <utility>

#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace mscl::flow::detail {

/// One comparator: after it, wire a holds min (if `keep & 1`) and wire b holds max (if `keep & 2`);
/// a half comparator skips the side that no later step reads.
struct comparator { int a, b, keep; };

// clang-format off
inline constexpr comparator k_median25_net[] = {
  {4,5,3}, {14,15,3}, {5,7,3}, {8,10,3}, {9,11,3}, {12,14,3}, {5,6,3}, {9,10,3}, {13,14,3}, {0,4,3},
  {1,5,3}, {2,6,3}, {8,12,3}, {10,14,3}, {11,15,3}, {16,20,3}, {17,21,3}, {18,22,3}, {19,23,3}, {2,4,3},
  {3,5,3}, {10,12,3}, {11,13,3}, {18,20,3}, {19,21,3}, {1,2,3}, {3,4,3}, {5,6,3}, {9,10,3}, {11,12,3},
  {13,14,3}, {17,18,3}, {19,20,3}, {21,22,3}, {0,8,3}, {1,9,3}, {2,10,3}, {3,11,3}, {4,12,3}, {5,13,3},
  {6,14,3}, {7,15,1}, {4,8,3}, {5,9,3}, {6,10,3}, {7,11,3}, {20,24,3}, {2,4,3}, {3,5,3}, {6,8,3},
  {7,9,3}, {10,12,3}, {11,13,3}, {22,24,3}, {1,2,3}, {3,4,3}, {5,6,3}, {7,8,3}, {9,10,3}, {11,12,3},
  {13,14,1}, {21,22,3}, {23,24,3}, {0,16,2}, {1,17,2}, {2,18,2}, {3,19,2}, {4,20,2}, {5,21,2}, {6,22,1},
  {7,23,1}, {8,24,1}, {8,16,2}, {9,17,2}, {10,18,1}, {11,19,1}, {12,20,1}, {13,21,1}, {6,10,2}, {7,11,2},
  {12,16,1}, {13,17,1}, {10,12,2}, {11,13,1}, {11,12,2}};
inline constexpr comparator k_median9_net[] = {
  {2,3,3}, {0,2,3}, {4,6,3}, {5,7,3}, {1,2,3}, {5,6,3}, {0,4,2}, {1,5,3}, {2,6,1}, {3,7,1},
  {2,4,3}, {3,5,1}, {1,2,2}, {3,4,3}, {4,8,1}, {2,4,2}, {3,4,2}};
// clang-format on

// Eight lanes: AVX registers where available, otherwise a plain array the compiler may vectorise.
#if defined(__AVX__)
struct lanes8 {
  __m256 v;
  static lanes8 load(const float* p) { return {_mm256_loadu_ps(p)}; }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  friend lanes8 vmin(lanes8 a, lanes8 b) { return {_mm256_min_ps(a.v, b.v)}; }
  friend lanes8 vmax(lanes8 a, lanes8 b) { return {_mm256_max_ps(a.v, b.v)}; }
};
#else
struct lanes8 {
  float v[8];
  static lanes8 load(const float* p) { lanes8 r; for (int i = 0; i < 8; ++i) r.v[i] = p[i]; return r; }
  void store(float* p) const { for (int i = 0; i < 8; ++i) p[i] = v[i]; }
  friend lanes8 vmin(lanes8 a, lanes8 b) { lanes8 r; for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] < b.v[i] ? a.v[i] : b.v[i]; return r; }
  friend lanes8 vmax(lanes8 a, lanes8 b) { lanes8 r; for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] < b.v[i] ? b.v[i] : a.v[i]; return r; }
};
#endif

template <const comparator* Net, std::size_t I>
inline void apply_comparator(lanes8* w) {
  constexpr comparator c = Net[I];
  const lanes8 a = w[c.a], b = w[c.b];
  if constexpr ((c.keep & 1) != 0) w[c.a] = vmin(a, b);
  if constexpr ((c.keep & 2) != 0) w[c.b] = vmax(a, b);
}
// Fully unrolled with compile-time wire indices, so the wires live in registers.
template <const comparator* Net, std::size_t... I>
inline void apply_network(lanes8* w, std::index_sequence<I...>) {
  (apply_comparator<Net, I>(w), ...);
}

/// Sorts k values in place (k = 3 or 5), ascending; used on columns.
template <int K>
inline void sort_small(float* v) {
  auto cs = [&](int i, int j) { const float a = v[i], b = v[j]; v[i] = a < b ? a : b; v[j] = a < b ? b : a; };
  if constexpr (K == 3) {
    cs(0, 1); cs(1, 2); cs(0, 1);
  } else {
    static_assert(K == 5, "sort_small: only 3 and 5");
    cs(0, 1); cs(3, 4); cs(2, 4); cs(2, 3); cs(0, 3); cs(0, 2); cs(1, 4); cs(1, 3); cs(1, 2);
  }
}

/// Median of the K x K window around each pixel of one output row `y`, replicate border.
/// `src(yy)` returns a pointer to row yy of the source (0 <= yy < height); `cols` is scratch of at
/// least K * (round_up(width, 8) + K) floats; `out` must have room for round_up(width, 8) floats
/// (lanes past `width` are written with junk that the caller ignores).
template <int K, class RowFn>
inline void median_row(RowFn src, std::ptrdiff_t y, std::ptrdiff_t height, std::ptrdiff_t width,
                       float* cols, float* out) {
  constexpr int r = K / 2;
  const std::ptrdiff_t wpad = (width + 7) / 8 * 8;
  const std::ptrdiff_t ncol = wpad + 2 * r;  // sorted columns for x = -r .. wpad + r - 1
  const float* rows[K];
  for (int k = 0; k < K; ++k) rows[k] = src(std::clamp<std::ptrdiff_t>(y + k - r, 0, height - 1));
  // Column sort, stored rank-major: cols[rank * ncol + (x + r)].
  auto scalar_column = [&](std::ptrdiff_t c) {
    const std::ptrdiff_t sx = std::clamp<std::ptrdiff_t>(c - r, 0, width - 1);
    float v[K];
    for (int k = 0; k < K; ++k) v[k] = rows[k][sx];
    sort_small<K>(v);
    for (int k = 0; k < K; ++k) cols[k * ncol + c] = v[k];
  };
  std::ptrdiff_t c = 0;
  for (; c < r; ++c) scalar_column(c);
  // Interior columns (no clamping): 8 at a time.
  for (; c + 8 - r <= width; c += 8) {
    lanes8 v[K];
    for (int k = 0; k < K; ++k) v[k] = lanes8::load(rows[k] + c - r);
    auto cs = [&](int i, int j) { const lanes8 a = v[i], b = v[j]; v[i] = vmin(a, b); v[j] = vmax(a, b); };
    if constexpr (K == 3) {
      cs(0, 1); cs(1, 2); cs(0, 1);
    } else {
      cs(0, 1); cs(3, 4); cs(2, 4); cs(2, 3); cs(0, 3); cs(0, 2); cs(1, 4); cs(1, 3); cs(1, 2);
    }
    for (int k = 0; k < K; ++k) v[k].store(cols + k * ncol + c);
  }
  for (; c < ncol; ++c) scalar_column(c);
  for (std::ptrdiff_t x = 0; x < wpad; x += 8) {
    lanes8 w[K * K];
    for (int c = 0; c < K; ++c)
      for (int k = 0; k < K; ++k) w[c * K + k] = lanes8::load(cols + k * ncol + x + c);
    if constexpr (K == 5) {
      apply_network<k_median25_net>(w, std::make_index_sequence<std::size(k_median25_net)>{});
      w[12].store(out + x);
    } else {
      static_assert(K == 3, "median_row: only 3x3 and 5x5");
      apply_network<k_median9_net>(w, std::make_index_sequence<std::size(k_median9_net)>{});
      w[4].store(out + x);
    }
  }
}

}  // namespace mscl::flow::detail
