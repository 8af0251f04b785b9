/// \file samplers.hpp
/// \brief Frame-index samplers with MMAction2 0.x semantics: `SampleFrames` (train and test
///        mode), `DenseSampleFrames`, and the TSN-style segment sampler used for SSv2.
///
/// Downstream numbers are only comparable with published ones when the clips are taken from the
/// same frames, so these reproduce MMAction2 0.x (the code base MSCL is built on) branch by branch,
/// including the odd corners (Python floor division, `np.around` ties to even, `np.linspace` with
/// an integer dtype, the `repeat_last` fill). Every function returns frame indices; clip c occupies
/// positions [c·clip_len, (c+1)·clip_len) of the returned vector. Randomness comes from
/// `mscl::generator`: each sampling call takes one fresh stream and draws element i of it for the
/// i-th random number, so a seed fixes the indices and the result does not depend on threads.
///
/// Not reproduced (off in every MSCL config): `temporal_jitter`, `keep_tail_frames`, `frame_uniform`,
/// target-fps sampling. MMAction2 1.x changed the test rule (ori_clip_len = (clip_len−1)·interval+1,
/// PySlowFast spacing); the 0.x rule below is the one in ECOSYSTEM.md §2.2.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../core/error.hpp"
#include "../core/rng.hpp"
#include "../core/shape.hpp"

namespace mscl::data {

/// What happens to indices at or past the last frame (`out_of_bound_opt`).
enum class out_of_bound_policy {
  loop,         ///< index mod num_frames (MMAction2 default; MSCL's clips wrap this way)
  repeat_last,  ///< replaced by the clip's largest in-range index (0 if none is in range)
};

namespace detail {

/// Python's `a // b` for b > 0 (floors towards −inf, unlike C++ division).
inline index_t floor_div(index_t a, index_t b) {
  index_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

/// Uniform integer in [0, n) from element i of a Philox stream (np.random.randint(n)).
inline index_t uniform_below(std::uint64_t seed, std::uint64_t stream, std::uint64_t i, index_t n) {
  const double u = philox_uniform(seed, stream, i);  // open interval (0, 1)
  index_t v = static_cast<index_t>(u * double(n));
  return v >= n ? n - 1 : v;
}

inline void check_clip_args(const char* who, index_t num_frames, index_t clip_len, index_t frame_interval,
                            index_t num_clips) {
  MSCL_CHECK(num_frames >= 1, value_error, who << ": need a video with at least one frame, got num_frames = " << num_frames);
  MSCL_CHECK(clip_len >= 1 && frame_interval >= 1 && num_clips >= 1, value_error,
             who << ": clip_len, frame_interval and num_clips must be >= 1, got " << clip_len << ", " << frame_interval
                 << ", " << num_clips);
}

}  // namespace detail

/// `SampleFrames._get_train_clips` (MMAction2 0.x), with ori = clip_len·frame_interval:
///   avg = (N − ori + 1) // num_clips                       (Python floor division)
///   avg > 0                      : offset_i = i·avg + randint(avg)            (one random per clip)
///   N > max(num_clips, ori)      : sorted(randint(N − ori + 1, size=num_clips))
///   avg == 0                     : offset_i = around(i·(N − ori + 1)/num_clips) (ties to even)
///   otherwise (N < ori − 1 ...)  : all zeros
inline std::vector<index_t> mmaction_train_clip_offsets(index_t num_frames, index_t clip_len, index_t frame_interval,
                                                        index_t num_clips, generator& gen) {
  detail::check_clip_args("mmaction_train_clip_offsets", num_frames, clip_len, frame_interval, num_clips);
  const index_t ori = clip_len * frame_interval;
  const index_t avg = detail::floor_div(num_frames - ori + 1, num_clips);
  std::vector<index_t> off(static_cast<std::size_t>(num_clips), 0);
  if (avg > 0) {
    const std::uint64_t s = gen.take_stream();
    for (index_t i = 0; i < num_clips; ++i)
      off[std::size_t(i)] = i * avg + detail::uniform_below(gen.seed(), s, std::uint64_t(i), avg);
  } else if (num_frames > std::max(num_clips, ori)) {
    const std::uint64_t s = gen.take_stream();
    for (index_t i = 0; i < num_clips; ++i)
      off[std::size_t(i)] = detail::uniform_below(gen.seed(), s, std::uint64_t(i), num_frames - ori + 1);
    std::sort(off.begin(), off.end());
  } else if (avg == 0) {
    // np.around(np.arange(num_clips) * ratio): float64 product, round half to even.
    const double ratio = (double(num_frames - ori) + 1.0) / double(num_clips);
    for (index_t i = 0; i < num_clips; ++i) off[std::size_t(i)] = static_cast<index_t>(std::nearbyint(double(i) * ratio));
  }
  return off;
}

/// `SampleFrames._get_test_clips` (MMAction2 0.x): a = (N − clip_len·interval + 1)/num_clips (float);
/// if N > clip_len·interval − 1: offset_i = trunc(i·a + a/2) (a > 0 so trunc = floor), else all zeros.
/// With `twice_sample` the truncated base offsets trunc(i·a) follow (TSM's twice sampling).
inline std::vector<index_t> mmaction_test_clip_offsets(index_t num_frames, index_t clip_len, index_t frame_interval,
                                                       index_t num_clips, bool twice_sample = false) {
  detail::check_clip_args("mmaction_test_clip_offsets", num_frames, clip_len, frame_interval, num_clips);
  const index_t ori = clip_len * frame_interval;
  const double a = double(num_frames - ori + 1) / double(num_clips);
  std::vector<index_t> off(static_cast<std::size_t>(num_clips), 0);
  if (num_frames > ori - 1) {
    for (index_t i = 0; i < num_clips; ++i) off[std::size_t(i)] = static_cast<index_t>(double(i) * a + a / 2.0);
    if (twice_sample)
      for (index_t i = 0; i < num_clips; ++i) off.push_back(static_cast<index_t>(double(i) * a));
  }  // else: num_clips zeros; MMAction2 ignores twice_sample for too-short videos
  return off;
}

/// `SampleFrames.__call__` after the offsets: frame = offset + j·frame_interval (j < clip_len), then
/// the out-of-bound policy per clip, then + start_index (1 for MMAction2 rawframes, 0 for videos).
inline std::vector<index_t> clip_offsets_to_frame_indices(const std::vector<index_t>& offsets, index_t num_frames,
                                                          index_t clip_len, index_t frame_interval,
                                                          out_of_bound_policy oob = out_of_bound_policy::loop,
                                                          index_t start_index = 0) {
  detail::check_clip_args("clip_offsets_to_frame_indices", num_frames, clip_len, frame_interval, 1);
  std::vector<index_t> inds;
  inds.reserve(offsets.size() * std::size_t(clip_len));
  for (index_t o : offsets) {
    MSCL_CHECK(o >= 0, value_error, "clip_offsets_to_frame_indices: negative clip offset " << o);
    const std::size_t first = inds.size();
    index_t last_safe = 0;  // np.max(safe * inds): 0 when no index of the clip is in range
    for (index_t j = 0; j < clip_len; ++j) {
      const index_t f = o + j * frame_interval;
      inds.push_back(f);
      if (f < num_frames) last_safe = std::max(last_safe, f);
    }
    for (std::size_t k = first; k < inds.size(); ++k) {
      if (oob == out_of_bound_policy::loop) inds[k] %= num_frames;
      else if (inds[k] >= num_frames) inds[k] = last_safe;
    }
  }
  for (auto& f : inds) f += start_index;
  return inds;
}

/// MMAction2 `SampleFrames(clip_len, frame_interval, num_clips, test_mode, out_of_bound_opt)`.
struct sample_frames {
  index_t clip_len = 8;
  index_t frame_interval = 1;
  index_t num_clips = 1;
  bool test_mode = false;
  bool twice_sample = false;  ///< test mode only
  out_of_bound_policy out_of_bound = out_of_bound_policy::loop;
  index_t start_index = 0;

  /// Clip start offsets (before the out-of-bound policy and start_index).
  std::vector<index_t> clip_offsets(index_t num_frames, generator& gen) const {
    return test_mode ? mmaction_test_clip_offsets(num_frames, clip_len, frame_interval, num_clips, twice_sample)
                     : mmaction_train_clip_offsets(num_frames, clip_len, frame_interval, num_clips, gen);
  }
  /// Frame indices, clip after clip (size = clips × clip_len).
  std::vector<index_t> operator()(index_t num_frames, generator& gen) const {
    return clip_offsets_to_frame_indices(clip_offsets(num_frames, gen), num_frames, clip_len, frame_interval,
                                         out_of_bound, start_index);
  }
  /// Test-mode convenience: no randomness is used.
  std::vector<index_t> test_indices(index_t num_frames) const {
    generator unused(0);
    sample_frames t = *this;
    t.test_mode = true;
    return t(num_frames, unused);
  }
};

/// `np.linspace(0, stop, num, dtype=int)` as numpy computes it: y_i = i·(stop/(num−1)) in float64,
/// last value exactly stop, then floor.
inline std::vector<index_t> numpy_linspace_int(index_t stop, index_t num) {
  MSCL_CHECK(num >= 1, value_error, "numpy_linspace_int: num must be >= 1, got " << num);
  std::vector<index_t> out(static_cast<std::size_t>(num));
  if (num == 1) {
    out[0] = 0;
    return out;
  }
  const double step = double(stop) / double(num - 1);
  for (index_t i = 0; i < num; ++i) out[std::size_t(i)] = static_cast<index_t>(std::floor(double(i) * step));
  out.back() = stop;
  return out;
}

/// MMAction2 `DenseSampleFrames` (I3D/SlowFast dense protocol). With P = max(1, 1 + N − sample_range)
/// and interval = sample_range // num_clips:
///   train: start = 0 if P == 1 else randint(0, P − 1) (upper bound exclusive, as numpy);
///          offset_i = (start + i·interval) mod N
///   test : starts = linspace(0, P − 1, num_sample_positions, dtype=int); for each start the
///          num_clips offsets (start + i·interval) mod N → num_sample_positions·num_clips clips.
struct dense_sample_frames {
  index_t clip_len = 32;
  index_t frame_interval = 2;
  index_t num_clips = 1;
  index_t sample_range = 64;
  index_t num_sample_positions = 10;
  bool test_mode = false;
  out_of_bound_policy out_of_bound = out_of_bound_policy::loop;
  index_t start_index = 0;

  std::vector<index_t> clip_offsets(index_t num_frames, generator& gen) const {
    detail::check_clip_args("dense_sample_frames", num_frames, clip_len, frame_interval, num_clips);
    MSCL_CHECK(sample_range >= 1 && num_sample_positions >= 1, value_error,
               "dense_sample_frames: sample_range and num_sample_positions must be >= 1, got "
                   << sample_range << ", " << num_sample_positions);
    const index_t positions = std::max<index_t>(1, 1 + num_frames - sample_range);
    const index_t interval = sample_range / num_clips;
    std::vector<index_t> off;
    if (!test_mode) {
      index_t start = 0;
      if (positions > 1) {
        const std::uint64_t s = gen.take_stream();
        start = detail::uniform_below(gen.seed(), s, 0, positions - 1);  // randint(0, P-1) excludes P-1
      }
      for (index_t i = 0; i < num_clips; ++i) off.push_back((i * interval + start) % num_frames);
    } else {
      for (index_t start : numpy_linspace_int(positions - 1, num_sample_positions))
        for (index_t i = 0; i < num_clips; ++i) off.push_back((i * interval + start) % num_frames);
    }
    return off;
  }
  std::vector<index_t> operator()(index_t num_frames, generator& gen) const {
    return clip_offsets_to_frame_indices(clip_offsets(num_frames, gen), num_frames, clip_len, frame_interval,
                                         out_of_bound, start_index);
  }
};

/// TSN-style segment sampling (MSCL's SSv2 recipe, ALGORITHM.md §9.2): `SampleFrames(clip_len=1,
/// frame_interval=1, num_clips=num_segments)`, whose indices are then read as one clip of
/// num_segments frames. Train: one random frame per segment of length N // K (MMAction2's short-video
/// branches when N < K); test: the centre frame trunc((i + 1/2)·N/K) of each segment.
struct segment_sampler {
  index_t num_segments = 8;
  bool test_mode = false;
  index_t start_index = 0;

  std::vector<index_t> operator()(index_t num_frames, generator& gen) const {
    sample_frames s;
    s.clip_len = 1;
    s.frame_interval = 1;
    s.num_clips = num_segments;
    s.test_mode = test_mode;
    s.start_index = start_index;
    return s(num_frames, gen);
  }
};

}  // namespace mscl::data
