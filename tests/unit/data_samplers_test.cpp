// Tests for include/mscl/data/samplers.hpp.
//
// Oracles: offsets hand-computed from MMAction2 0.x's formulas (the arithmetic is written out next
// to each case), including the branches that differ from naive C++ (Python floor division of a
// negative numerator, np.around ties to even, np.linspace with an integer dtype, repeat_last's
// fill), and statistical checks of the random branches against their documented ranges.
#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <vector>

#include "mscl/data/samplers.hpp"

using mscl::generator;
using mscl::index_t;
using namespace mscl::data;
using V = std::vector<index_t>;

TEST_CASE("floor_div matches Python's //", "[data][samplers]") {
  CHECK(detail::floor_div(7, 3) == 2);
  CHECK(detail::floor_div(-1, 4) == -1);
  CHECK(detail::floor_div(-4, 4) == -1);
  CHECK(detail::floor_div(-5, 4) == -2);
  CHECK(detail::floor_div(0, 4) == 0);
}

TEST_CASE("SampleFrames test mode: offset_i = floor(i a + a/2)", "[data][samplers]") {
  // N = 100, clip 8 x interval 2 (ori 16), 3 clips: a = 85/3 = 28.33; offsets 14.17, 42.5, 70.83.
  CHECK(mmaction_test_clip_offsets(100, 8, 2, 3) == V{14, 42, 70});
  // twice_sample appends trunc(i a) = 0, 28, 56.
  CHECK(mmaction_test_clip_offsets(100, 8, 2, 3, true) == V{14, 42, 70, 0, 28, 56});
  // N = 16 = ori: a = 1/3 -> 0.17, 0.5, 0.83 -> zeros; N = 15 = ori - 1 is "too short" -> zeros.
  CHECK(mmaction_test_clip_offsets(16, 8, 2, 3) == V{0, 0, 0});
  CHECK(mmaction_test_clip_offsets(15, 8, 2, 3) == V{0, 0, 0});
  CHECK(mmaction_test_clip_offsets(15, 8, 2, 3, true) == V{0, 0, 0});
  // 10 clips of 16x1 over 250 frames: a = 23.5 -> 11.75, 35.25, ..., 223.25.
  V expect;
  for (int i = 0; i < 10; ++i) expect.push_back(index_t(23.5 * i + 11.75));
  CHECK(mmaction_test_clip_offsets(250, 16, 1, 10) == expect);
  CHECK(expect.front() == 11);
  CHECK(expect.back() == 223);

  sample_frames s;
  s.clip_len = 8;
  s.frame_interval = 2;
  s.num_clips = 3;
  s.test_mode = true;
  generator g(1);
  const V f = s(100, g);
  REQUIRE(f.size() == 24);
  CHECK(V(f.begin(), f.begin() + 8) == V{14, 16, 18, 20, 22, 24, 26, 28});
  CHECK(V(f.begin() + 16, f.end()) == V{70, 72, 74, 76, 78, 80, 82, 84});
  CHECK(g.state() == 0);  // test mode draws nothing
  s.start_index = 1;      // rawframes are 1-based in MMAction2
  CHECK(s.test_indices(100)[0] == 15);
}

TEST_CASE("too-short videos: loop wraps, repeat_last repeats", "[data][samplers]") {
  // N = 10, clip 8 x 2: offsets 0; indices 0..14 step 2.
  sample_frames s;
  s.clip_len = 8;
  s.frame_interval = 2;
  s.test_mode = true;
  CHECK(s.test_indices(10) == V{0, 2, 4, 6, 8, 0, 2, 4});
  s.out_of_bound = out_of_bound_policy::repeat_last;
  CHECK(s.test_indices(10) == V{0, 2, 4, 6, 8, 8, 8, 8});
  s.start_index = 1;
  CHECK(s.test_indices(10) == V{1, 3, 5, 7, 9, 9, 9, 9});
  // repeat_last per clip; a clip with nothing in range becomes all 0 (numpy's max of zeros).
  CHECK(clip_offsets_to_frame_indices({5, 12}, 10, 4, 2, out_of_bound_policy::repeat_last) ==
        V{5, 7, 9, 9, 0, 0, 0, 0});
  CHECK(clip_offsets_to_frame_indices({5, 12}, 10, 4, 2, out_of_bound_policy::loop) == V{5, 7, 9, 1, 2, 4, 6, 8});
  // MSCL's pretraining clip: 8 frames at stride 8 from start 50 of a 60-frame sequence.
  CHECK(clip_offsets_to_frame_indices({50}, 60, 8, 8) == V{50, 58, 6, 14, 22, 30, 38, 46});
}

TEST_CASE("SampleFrames train mode: the four branches of _get_train_clips", "[data][samplers]") {
  generator g(7);
  SECTION("avg_interval > 0: one uniform draw inside each interval") {
    // N = 100, ori 16, 3 clips: avg = 85 // 3 = 28; offsets in [0,27], [28,55], [56,83].
    std::set<index_t> seen[3];
    for (int t = 0; t < 2000; ++t) {
      const V o = mmaction_train_clip_offsets(100, 8, 2, 3, g);
      REQUIRE(o.size() == 3);
      for (int i = 0; i < 3; ++i) {
        REQUIRE(o[i] >= 28 * i);
        REQUIRE(o[i] <= 28 * i + 27);
        seen[i].insert(o[i]);
      }
    }
    for (auto& s : seen) CHECK(s.size() == 28);  // every value reachable
    // Uniformity: 1 clip, N = 20, ori 16 -> avg 5, values 0..4.
    std::map<index_t, int> count;
    for (int t = 0; t < 5000; ++t) ++count[mmaction_train_clip_offsets(20, 8, 2, 1, g)[0]];
    REQUIRE(count.size() == 5);
    for (auto& kv : count) CHECK(std::abs(kv.second - 1000) < 150);
  }
  SECTION("avg_interval == 0 but N > max(num_clips, ori): sorted draws in [0, N - ori]") {
    // N = 20, ori 16, 10 clips: 5 // 10 = 0; 20 > 16 -> sorted randint(5, size=10).
    std::set<index_t> seen;
    for (int t = 0; t < 200; ++t) {
      const V o = mmaction_train_clip_offsets(20, 8, 2, 10, g);
      REQUIRE(o.size() == 10);
      REQUIRE(std::is_sorted(o.begin(), o.end()));
      for (index_t x : o) {
        REQUIRE(x >= 0);
        REQUIRE(x <= 4);
        seen.insert(x);
      }
    }
    CHECK(seen.size() == 5);
  }
  SECTION("avg_interval == 0 otherwise: np.around(i * ratio), ties to even") {
    // SSv2 segments on a 10-frame video: 16 clips of 1, ratio = 10/16 = 0.625;
    // 4 * 0.625 = 2.5 -> 2 and 12 * 0.625 = 7.5 -> 8 (half to even).
    const V o = mmaction_train_clip_offsets(10, 1, 1, 16, g);
    CHECK(o == V{0, 1, 1, 2, 2, 3, 4, 4, 5, 6, 6, 7, 8, 8, 9, 9});
    // N = ori - 1: ratio 0 -> zeros.
    CHECK(mmaction_train_clip_offsets(15, 8, 2, 1, g) == V{0});
  }
  SECTION("negative numerator: Python floor division gives avg < 0 -> zeros") {
    // N = 14, ori 16, 4 clips: (14 - 16 + 1) // 4 = -1 (C++ division would give 0 and then
    // np.around(i * -0.25) = 0, 0, 0, -1: a negative offset).
    CHECK(mmaction_train_clip_offsets(14, 8, 2, 4, g) == V{0, 0, 0, 0});
    CHECK(mmaction_train_clip_offsets(3, 8, 8, 1, g) == V{0});
  }
}

TEST_CASE("a seed fixes the indices, one stream per call", "[data][samplers]") {
  sample_frames s;
  s.clip_len = 8;
  s.frame_interval = 8;
  s.num_clips = 2;
  generator a(123), b(123), c(124);
  std::vector<V> ra, rb, rc;
  for (int t = 0; t < 20; ++t) {
    ra.push_back(s(300, a));
    rb.push_back(s(300, b));
    rc.push_back(s(300, c));
  }
  CHECK(ra == rb);
  CHECK(ra != rc);
  CHECK(a.state() == 20);
}

TEST_CASE("numpy_linspace_int and DenseSampleFrames", "[data][samplers]") {
  // linspace(0, 236, 10): step 26.22 -> 0, 26, 52, 78, 104, 131, 157, 183, 209, 236.
  CHECK(numpy_linspace_int(236, 10) == V{0, 26, 52, 78, 104, 131, 157, 183, 209, 236});
  CHECK(numpy_linspace_int(0, 10) == V(10, 0));
  CHECK(numpy_linspace_int(9, 4) == V{0, 3, 6, 9});

  dense_sample_frames d;  // clip 32 x 2, 1 clip, range 64, 10 positions
  d.test_mode = true;
  generator g(3);
  // N = 300: P = 237 -> starts above; each clip = start + 2j.
  V o = d.clip_offsets(300, g);
  CHECK(o == V{0, 26, 52, 78, 104, 131, 157, 183, 209, 236});
  const V f = d(300, g);
  REQUIRE(f.size() == 320);
  CHECK(f[32] == 26);
  CHECK(f[319] == 236 + 62);
  // N = 50: P = 1 -> ten clips at 0; indices 0..62 wrap modulo 50.
  const V f50 = d(50, g);
  REQUIRE(f50.size() == 320);
  CHECK(f50[24] == 48);
  CHECK(f50[25] == 0);
  CHECK(f50[31] == 12);
  // Two clips per position: interval 64 // 2 = 32, offsets (start + 32 i) mod N.
  d.num_clips = 2;
  o = d.clip_offsets(100, g);  // P = 37 -> linspace(0, 36, 10) = 0, 4, 8, 12, 16, 20, 24, 28, 32, 36
  REQUIRE(o.size() == 20);
  CHECK(V(o.begin(), o.begin() + 4) == V{0, 32, 4, 36});
  CHECK(o[19] == 68);
  // Train: start = randint(0, P - 1) in [0, P - 2].
  d.test_mode = false;
  d.num_clips = 2;
  std::set<index_t> starts;
  for (int t = 0; t < 3000; ++t) {
    const V x = d.clip_offsets(100, g);
    REQUIRE(x.size() == 2);
    REQUIRE(x[1] == (x[0] + 32) % 100);
    starts.insert(x[0]);
  }
  CHECK(*starts.begin() == 0);
  CHECK(*starts.rbegin() == 35);
  CHECK(starts.size() == 36);
  CHECK(d.clip_offsets(64, g) == V{0, 32});  // P = 1: no draw
}

TEST_CASE("segment sampler: random frame per segment / segment centres", "[data][samplers]") {
  segment_sampler s;
  s.num_segments = 8;
  s.test_mode = true;
  generator g(11);
  // N = 50: a = 6.25 -> floor(6.25 i + 3.125).
  CHECK(s(50, g) == V{3, 9, 15, 21, 28, 34, 40, 46});
  s.test_mode = false;
  for (int t = 0; t < 500; ++t) {
    const V f = s(50, g);  // avg = 50 // 8 = 6: frame i in [6i, 6i + 5]
    REQUIRE(f.size() == 8);
    for (int i = 0; i < 8; ++i) {
      REQUIRE(f[i] >= 6 * i);
      REQUIRE(f[i] <= 6 * i + 5);
    }
  }
  s.num_segments = 16;  // short SSv2 video, the np.around branch
  CHECK(s(10, g) == V{0, 1, 1, 2, 2, 3, 4, 4, 5, 6, 6, 7, 8, 8, 9, 9});
}

TEST_CASE("sampler argument checks", "[data][samplers]") {
  generator g(0);
  CHECK_THROWS_AS(mmaction_train_clip_offsets(0, 8, 1, 1, g), mscl::value_error);
  CHECK_THROWS_AS(mmaction_test_clip_offsets(10, 0, 1, 1), mscl::value_error);
  CHECK_THROWS_AS(clip_offsets_to_frame_indices({-1}, 10, 2, 1), mscl::value_error);
  CHECK_THROWS_AS(numpy_linspace_int(5, 0), mscl::value_error);
}
