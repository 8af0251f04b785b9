// Tests for include/mscl/eval/{retrieval,clip_reader,features,linear_probe}.hpp and
// include/mscl/viz/canvas.hpp.
//
// Oracles: hand-built feature sets whose rankings and recalls are worked out in the comments
// (ties, k beyond the gallery, the centring variants); per-clip features computed from clips
// assembled by hand at hand-computed MMAction2 offsets (frame indices and crop written out in the
// test, not taken from the code under test), averaged by hand; a checkpoint written with a prefix
// and read back; linear separability / shuffled labels for the probe plus an independently coded
// gradient of its objective; canvas pixels read back, and the PNG decoded by Debian's python3 PIL
// when available (else signature and chunk CRCs checked by an independent CRC routine).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "mscl/eval/clip_reader.hpp"
#include "mscl/eval/features.hpp"
#include "mscl/eval/linear_probe.hpp"
#include "mscl/eval/retrieval.hpp"
#include "mscl/io/safetensors.hpp"
#include "mscl/mscl.hpp"
#include "mscl/train/checkpoint.hpp"
#include "mscl/viz/canvas.hpp"

using namespace mscl;
using mscl::index_t;

namespace {

tensor<float> matrix(index_t rows, index_t cols, std::vector<float> v) {
  REQUIRE(index_t(v.size()) == rows * cols);
  tensor<float> t = tensor<float>::empty({rows, cols});
  std::copy(v.begin(), v.end(), t.data());
  return t;
}

std::string temp_dir(const std::string& name) {
  const auto p = std::filesystem::temp_directory_path() / ("mscl_eval_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

data::frame_sequence random_frames(int n, int h, int w, std::uint32_t seed) {
  std::mt19937 rng(seed);
  data::frame_sequence f;
  for (int i = 0; i < n; ++i) {
    data::image_u8 im(h, w, 3);
    for (auto& p : im.pixels) p = std::uint8_t(rng() & 255u);
    f.push_back(std::move(im));
  }
  return f;
}

}  // namespace

// ------------------------------------------------------------------ retrieval

TEST_CASE("retrieval: recall@k on a hand-built set, ties and neighbours", "[eval][retrieval]") {
  // Gallery on the unit circle (no centring, L2 is a no-op): angles 0, 90, 180, 270 and a duplicate
  // of angle 0 with another label.
  //   g0 (1,0) L0, g1 (0,1) L1, g2 (-1,0) L2, g3 (0,-1) L3, g4 (1,0) L1
  // q0 = (1, 0.1) label 1: sims g0 = g4 (tie, 0.995) > g1 (0.0995) > g3 (-0.0995) > g2.
  //   The tie goes to the lower index: ranking g0, g4, g1, g3, g2 → first hit (label 1) at rank 1.
  // q1 = (0, 1) label 3: ranking g1 (1), then g0 = g2 = g4 (0, ties by index: g0, g2, g4), g3 (-1)
  //   → first label-3 neighbour at rank 4.
  // q2 = (-1, 0) label 2: g2 first → hit at rank 0.
  const auto gallery = matrix(5, 2, {1, 0, 0, 1, -1, 0, 0, -1, 1, 0});
  const std::vector<int> gl{0, 1, 2, 3, 1};
  const auto query = matrix(3, 2, {1, 0.1f, 0, 1, -1, 0});
  const std::vector<int> ql{1, 3, 2};
  eval::retrieval_options o;
  o.center = eval::centering::none;
  o.ks = {1, 2, 5};
  const auto r = eval::retrieve(query, ql, gallery, gl, o);
  REQUIRE(r.neighbours_per_query == 5);
  CHECK(std::vector<index_t>{r.neighbour(0, 0), r.neighbour(0, 1), r.neighbour(0, 2), r.neighbour(0, 3), r.neighbour(0, 4)} ==
        std::vector<index_t>{0, 4, 1, 3, 2});
  CHECK(std::vector<index_t>{r.neighbour(1, 0), r.neighbour(1, 1), r.neighbour(1, 2), r.neighbour(1, 3), r.neighbour(1, 4)} ==
        std::vector<index_t>{1, 0, 2, 4, 3});
  CHECK(r.neighbour(2, 0) == 2);
  CHECK(r.similarity(2, 0) == Approx(1.0));
  // R@1: q2 only → 1/3; R@2: q0, q2 → 2/3; R@5: all → 1.
  CHECK(r.hits == std::vector<index_t>{1, 2, 3});
  CHECK(r.recall_at(1) == Approx(1.0 / 3));
  CHECK(r.recall_at(2) == Approx(2.0 / 3));
  CHECK(r.recall_at(5) == Approx(1.0));
  CHECK_THROWS_AS(r.recall_at(10), value_error);
}

TEST_CASE("retrieval: k beyond the gallery clamps or errors", "[eval][retrieval]") {
  const auto gallery = matrix(3, 2, {1, 0, 0, 1, -1, 0});
  const auto query = matrix(2, 2, {1, 0, 0, 1});
  // Query 0 (label 5) has no same-label gallery video: never a hit, even at the gallery size.
  const std::vector<int> gl{0, 1, 2}, ql{5, 2};
  eval::retrieval_options o;
  o.center = eval::centering::none;
  o.ks = {1, 50};
  const auto r = eval::retrieve(query, ql, gallery, gl, o);
  CHECK(r.effective_ks == std::vector<int>{1, 3});
  CHECK(r.recall_at(1) == 0.0);
  CHECK(r.recall_at(50) == Approx(0.5));  // query 1 finds label 2 at rank 2 (of 3)
  o.beyond_gallery = eval::k_policy::error;
  REQUIRE_THROWS_AS(eval::retrieve(query, ql, gallery, gl, o), value_error);
  try {
    eval::retrieve(query, ql, gallery, gl, o);
  } catch (const value_error& e) {
    CHECK(std::string(e.what()).find("Recall@50") != std::string::npos);
  }
  // Shape errors name the mismatch.
  CHECK_THROWS_AS(eval::retrieve(query, {1}, gallery, gl, o), shape_error);
  CHECK_THROWS_AS(eval::retrieve(matrix(1, 3, {1, 2, 3}), {0}, gallery, gl, o), shape_error);
}

TEST_CASE("retrieval: centring variants", "[eval][retrieval]") {
  // Gallery mean (1, 1) + (±1, 0): g0 = (2, 1) L0, g1 = (0, 1) L1. Queries are the same two
  // directions around another mean (1, 5): q0 = (2, 5) L0, q1 = (0, 5) L1.
  //  - none: q1 · g: both gallery vectors point up-ish; cos(q1, g1) = 1 > cos(q1, g0) → q1 hits;
  //    q0 = (2,5): cos to g0 = (4+5)/(√29·√5) = 0.747, to g1 = 5/√29 = 0.928 → q0 misses at R@1.
  //  - gallery-mean: q − (1,1) = (1,4) and (−1,4); g − (1,1) = (1,0), (−1,0) → q0 → g0, q1 → g1.
  //  - per-set: q − (1,5) = (1,0), (−1,0) → exact matches.
  const auto gallery = matrix(2, 2, {2, 1, 0, 1});
  const auto query = matrix(2, 2, {2, 5, 0, 5});
  const std::vector<int> labels{0, 1};
  eval::retrieval_options o;
  o.ks = {1};
  o.center = eval::centering::none;
  CHECK(eval::retrieve(query, labels, gallery, labels, o).recall_at(1) == Approx(0.5));
  o.center = eval::centering::gallery_mean;
  auto r = eval::retrieve(query, labels, gallery, labels, o);
  CHECK(r.recall_at(1) == Approx(1.0));
  CHECK(r.similarity(0, 0) == Approx(1.0 / std::sqrt(17.0)));  // (1,4)/√17 · (1,0)
  o.center = eval::centering::per_set;
  r = eval::retrieve(query, labels, gallery, labels, o);
  CHECK(r.recall_at(1) == Approx(1.0));
  CHECK(r.similarity(0, 0) == Approx(1.0));
}

// ------------------------------------------------------------------ clips and features

TEST_CASE("clip reader: offsets, resize sizes and crop boxes", "[eval][clips]") {
  eval::test_clip_options o;
  o.clip_len = 4;
  o.frame_interval = 2;
  o.num_clips = 3;
  // a = (20 − 8 + 1)/3 = 4.333: offsets ⌊a/2⌋ = 2, ⌊a + a/2⌋ = 6, ⌊2a + a/2⌋ = 10.
  CHECK(eval::test_frame_indices(20, o) == std::vector<index_t>{2, 4, 6, 8, 6, 8, 10, 12, 10, 12, 14, 16});
  // Too short (5 frames < 8): offsets 0, indices loop.
  CHECK(eval::test_frame_indices(5, o) == std::vector<index_t>{0, 2, 4, 1, 0, 2, 4, 1, 0, 2, 4, 1});
  // UCF101's 320×240 at short side 128 → 171×128 (mmcv's ⌊w·f + 0.5⌋).
  CHECK(eval::short_side_size(240, 320, 128) == std::make_pair(128, 171));
  o.crop_size = 128;
  o.crop = eval::crop_mode::three;
  const auto boxes = eval::test_crop_boxes(128, 171, o);  // step (171 − 128) // 2 = 21: x = 0, 42, 21
  REQUIRE(boxes.size() == 3);
  CHECK(boxes[0].x == 0);
  CHECK(boxes[1].x == 42);
  CHECK(boxes[2].x == 21);
  CHECK(o.views() == 9);
  o.crop_size = 112;  // three-crop must span the short side
  CHECK_THROWS_AS(eval::test_crop_boxes(128, 171, o), value_error);
  o.crop = eval::crop_mode::centre;
  o.crop_size = 200;
  CHECK_THROWS_AS(eval::test_crop_boxes(128, 171, o), value_error);
}

TEST_CASE("features: multi-clip average equals the mean of hand-built per-clip features", "[eval][features]") {
  const auto frames = random_frames(20, 12, 12, 3);
  eval::test_clip_options o;
  o.clip_len = 4;
  o.frame_interval = 2;
  o.num_clips = 3;
  o.crop_size = 8;  // centre crop from 12×12: top-left (2, 2)
  auto net = eval::make_backbone({{1, 1, 1, 1}, 4}, 11);
  const index_t starts[3] = {2, 6, 10};  // hand-computed above
  const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
  std::vector<double> expected;
  for (index_t s : starts) {
    tensor<float> clip = tensor<float>::empty({1, 3, 4, 8, 8});
    for (int c = 0; c < 3; ++c)
      for (int t = 0; t < 4; ++t)
        for (int y = 0; y < 8; ++y)
          for (int x = 0; x < 8; ++x)
            clip.data()[((c * 4 + t) * 8 + y) * 8 + x] =
                (float(frames[std::size_t(s + 2 * t)].at(y + 2, x + 2, c)) / 255.f - mean[c]) / stdv[c];
    net->eval();
    no_grad g;
    const auto f = net->features(clip);
    if (expected.empty()) expected.assign(std::size_t(f.shape()[1]), 0.0);
    for (index_t j = 0; j < f.shape()[1]; ++j) expected[std::size_t(j)] += f.data()[j] / 3.0;
  }
  net->train();
  eval::extract_options eo;
  eo.progress = false;
  eo.batch_clips = 4;  // two videos never share a batch of 3-view videos → one video per forward
  const auto feats = eval::extract_video_features(*net, std::vector<data::frame_sequence>{frames, frames}, o, eo);
  REQUIRE(feats.shape() == shape_t{2, 32});
  for (index_t v = 0; v < 2; ++v)
    for (index_t j = 0; j < 32; ++j) CHECK(feats.data()[v * 32 + j] == Approx(expected[std::size_t(j)]).margin(1e-5));
  CHECK(net->is_training());  // the extraction restored the mode
  // The single-video helper agrees.
  const auto one = eval::video_feature(*net, eval::test_clips_from_frames(frames, o));
  for (index_t j = 0; j < 32; ++j) CHECK(one.data()[j] == Approx(expected[std::size_t(j)]).margin(1e-5));
}

#if defined(MSCL_WITH_JPEG) && MSCL_WITH_JPEG
TEST_CASE("features: rawframes path equals the in-memory path on the decoded frames", "[eval][features]") {
  const std::string root = temp_dir("raw");
  std::vector<data::rawframe_entry> entries;
  std::vector<data::frame_sequence> decoded;
  for (int v = 0; v < 2; ++v) {
    const std::string rel = "cls/vid" + std::to_string(v);
    std::filesystem::create_directories(root + "/" + rel);
    const auto frames = random_frames(9 + v, 10, 14, 20u + unsigned(v));
    data::frame_sequence back;
    for (std::size_t i = 0; i < frames.size(); ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "/img_%05d.jpg", int(i) + 1);
      io::write_jpeg(root + "/" + rel + name, frames[i], 90);
      back.push_back(io::read_jpeg(root + "/" + rel + name, 3));
    }
    decoded.push_back(back);
    data::rawframe_entry e;
    e.frame_dir = rel;
    e.total_frames = index_t(frames.size());
    e.labels = {v};
    entries.push_back(e);
  }
  eval::test_clip_options o;
  o.clip_len = 3;
  o.num_clips = 2;
  o.short_side = 8;  // 10×14 → 8×11
  o.crop_size = 8;
  o.crop = eval::crop_mode::three;
  auto net = eval::make_backbone({{1, 1, 1, 1}, 4}, 5);
  eval::extract_options eo;
  eo.progress = false;
  const auto a = eval::extract_rawframes_features(*net, root, entries, o, eo);
  const auto b = eval::extract_video_features(*net, decoded, o, eo);
  REQUIRE(a.shape() == b.shape());
  for (index_t i = 0; i < a.numel(); ++i) CHECK(a.data()[i] == b.data()[i]);
  entries[1].total_frames = 50;  // more than the directory holds: error names the directory
  REQUIRE_THROWS_AS(eval::extract_rawframes_features(*net, root, entries, o, eo), io_error);
  try {
    eval::extract_rawframes_features(*net, root, entries, o, eo);
  } catch (const io_error& e) {
    CHECK(std::string(e.what()).find("cls/vid1") != std::string::npos);
  }
  std::filesystem::remove_all(root);
}
#endif

TEST_CASE("features: backbone loads from a prefixed pretraining checkpoint", "[eval][features]") {
  const std::string dir = temp_dir("ckpt");
  auto src = eval::make_backbone({{1, 1, 1, 1}, 4}, 1);
  // Make the BN running statistics non-trivial so that buffers are checked too.
  for (auto& e : src->state_dict()) {
    float* p = e.value.data();
    for (index_t i = 0; i < e.value.numel(); ++i) p[i] += 0.001f * float(i % 7);
  }
  train::checkpoint<float> ck;
  ck.add_module(eval::k_pretrain_rgb_backbone_prefix, *src);
  ck.tensors["model.rgb_q.mlp.0.weight"] = tensor<float>::zeros({3, 3});  // other modules: ignored
  ck.tensors["model.rgb_k.backbone.stem.0.weight"] = tensor<float>::zeros({2, 2});
  ck.integers["queue.rgb.pointer"] = {4};
  train::save_checkpoint(dir, 7, ck);

  const auto file = eval::resolve_checkpoint_path(dir);
  CHECK(file == dir + "/" + train::checkpoint_file_name(7));
  const auto spec = eval::infer_backbone_spec(io::safetensors_file::open(file), eval::k_pretrain_rgb_backbone_prefix, file);
  CHECK(spec == eval::backbone_spec::of_depth(10, 4));
  auto dst = eval::make_backbone(spec, 99);
  const auto rep = eval::load_backbone_from_checkpoint(*dst, dir);
  CHECK(rep.loaded == src->state_dict().size());
  CHECK(rep.ignored == 3);
  const auto a = src->state_dict(), b = dst->state_dict();
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].name);
    CHECK(a[i].value.to_vector() == b[i].value.to_vector());
  }

  // A missing entry is named.
  {
    io::safetensors_writer w;
    for (const auto& e : src->state_dict())
      if (e.name != "layer2.0.conv1.0.weight") w.add("model.rgb_q.backbone." + e.name, e.value);
    w.write(dir + "/missing.safetensors");
    auto net = eval::make_backbone(spec, 0);
    REQUIRE_THROWS_AS(eval::load_backbone_from_checkpoint(*net, dir + "/missing.safetensors"), io_error);
    try {
      eval::load_backbone_from_checkpoint(*net, dir + "/missing.safetensors");
    } catch (const io_error& e) {
      CHECK(std::string(e.what()).find("layer2.0.conv1.0.weight") != std::string::npos);
    }
  }
  // A deeper backbone misses layer1.1.*; a wider one mismatches the stem's shape.
  auto deeper = eval::make_backbone(eval::backbone_spec::of_depth(18, 4));
  try {
    eval::load_backbone_from_checkpoint(*deeper, dir);
    FAIL("expected an error");
  } catch (const io_error& e) {
    CHECK(std::string(e.what()).find("layer1.1.") != std::string::npos);
  }
  auto wider = eval::make_backbone(eval::backbone_spec::of_depth(10, 8));
  try {
    eval::load_backbone_from_checkpoint(*wider, dir);
    FAIL("expected an error");
  } catch (const shape_error& e) {
    CHECK(std::string(e.what()).find("stem.0.weight") != std::string::npos);
  }
  // Wrong prefix: nothing found, the first backbone entry is named.
  CHECK_THROWS_AS(eval::load_backbone_from_checkpoint(*dst, dir, "model.flow_q.backbone."), io_error);
  std::filesystem::remove_all(dir);
}

// ------------------------------------------------------------------ linear probe

TEST_CASE("linear probe: separable problem, shuffled labels, optimality", "[eval][probe]") {
  std::mt19937 rng(5);
  std::normal_distribution<float> n01(0.f, 1.f);
  // Three Gaussian blobs in 6-D, centres 8 apart on three axes, unit noise, plus a large constant
  // offset and one scaled-up dimension that standardisation must take care of.
  auto blobs = [&](int per_class) {
    std::vector<float> v;
    std::vector<int> l;
    for (int i = 0; i < 3 * per_class; ++i) {
      const int c = i % 3;
      for (int j = 0; j < 6; ++j) v.push_back(n01(rng) + (j == c ? 8.f : 0.f) + 100.f + (j == 5 ? 50.f * n01(rng) : 0.f));
      l.push_back(c);
    }
    return std::make_pair(matrix(3 * per_class, 6, v), l);
  };
  const auto [xtr, ytr] = blobs(30);
  const auto [xte, yte] = blobs(20);
  const auto r = eval::linear_probe(xtr, ytr, xte, yte);
  CHECK(r.converged);
  CHECK(r.train_accuracy == 1.0);
  CHECK(r.test_accuracy >= 0.95);

  // Independent check of optimality: the gradient of (1/N) Σ CE + λ/2 ‖W‖² at the returned
  // weights, recomputed here with plain loops on the standardised features, is ~0.
  const double lam = 1e-3;
  std::vector<double> gw(3 * 6, 0.0), gb(3, 0.0);
  for (int i = 0; i < 90; ++i) {
    double z[3], x[6];
    for (int j = 0; j < 6; ++j) x[j] = (double(xtr.data()[i * 6 + j]) - r.mean(j)) / r.scale(j);
    double m = -1e300;
    for (int k = 0; k < 3; ++k) {
      z[k] = r.bias(k);
      for (int j = 0; j < 6; ++j) z[k] += r.weights(k, j) * x[j];
      m = std::max(m, z[k]);
    }
    double s = 0;
    for (double& v : z) s += (v = std::exp(v - m));
    for (int k = 0; k < 3; ++k) {
      const double d = z[k] / s - (ytr[std::size_t(i)] == k ? 1.0 : 0.0);
      gb[std::size_t(k)] += d / 90;
      for (int j = 0; j < 6; ++j) gw[std::size_t(k * 6 + j)] += d * x[j] / 90;
    }
  }
  for (int k = 0; k < 3; ++k) {
    CHECK(std::abs(gb[std::size_t(k)]) < 1e-5);
    for (int j = 0; j < 6; ++j) CHECK(std::abs(gw[std::size_t(k * 6 + j)] + lam * r.weights(k, j)) < 1e-5);
  }

  // Random features with labels unrelated to them: the probe fits training noise but stays near
  // chance (1/4) on 400 test videos (binomial sd ≈ 0.022).
  std::vector<float> a, b;
  std::vector<int> la, lb;
  for (int i = 0; i < 200 * 16; ++i) a.push_back(n01(rng));
  for (int i = 0; i < 400 * 16; ++i) b.push_back(n01(rng));
  for (int i = 0; i < 200; ++i) la.push_back(int(rng() % 4));
  for (int i = 0; i < 400; ++i) lb.push_back(int(rng() % 4));
  const auto s = eval::linear_probe(matrix(200, 16, a), la, matrix(400, 16, b), lb);
  CHECK(s.test_accuracy < 0.35);
  CHECK(s.train_accuracy > 0.35);  // it did fit something
  // Label range errors.
  CHECK_THROWS_AS(eval::linear_probe(xtr, ytr, xte, std::vector<int>(60, 3)), value_error);
}

// ------------------------------------------------------------------ canvas

namespace {
std::uint32_t crc32_reference(const std::uint8_t* p, std::size_t n) {  // bitwise, no table
  std::uint32_t c = 0xffffffffu;
  for (std::size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return c ^ 0xffffffffu;
}
std::uint32_t be32(const std::uint8_t* p) { return (std::uint32_t(p[0]) << 24) | (p[1] << 16) | (p[2] << 8) | p[3]; }
}  // namespace

TEST_CASE("canvas: rectangles, text, blits and a PNG that decodes", "[viz]") {
  viz::canvas c(20, 30, viz::colors::white);
  const viz::rgb red{200, 10, 20};
  c.rect(2, 3, 10, 8, red, 2);  // box x 2..11, y 3..10, border 2 px inside
  CHECK(c.get(2, 3) == red);
  CHECK(c.get(3, 4) == red);
  CHECK(c.get(11, 10) == red);
  CHECK(c.get(10, 9) == red);
  CHECK(c.get(4, 5) == viz::colors::white);   // interior
  CHECK(c.get(9, 8) == viz::colors::white);
  CHECK(c.get(12, 10) == viz::colors::white);  // outside
  CHECK(c.get(11, 11) == viz::colors::white);
  c.rect(-5, -5, 100, 100, red, 1);  // clipped silently
  CHECK_THROWS_AS(c.get(30, 0), value_error);

  // 'I' of the 5×7 font: column 2 fully set, columns 1 and 3 set only in rows 0 and 6, columns 0 and 4 empty.
  viz::canvas t(10, 10, viz::colors::white);
  t.text(1, 1, "I", viz::colors::black);
  for (int row = 0; row < 7; ++row) CHECK(t.get(3, 1 + row) == viz::colors::black);
  CHECK(t.get(1, 1) == viz::colors::white);
  CHECK(t.get(2, 1) == viz::colors::black);
  CHECK(t.get(2, 4) == viz::colors::white);
  CHECK(viz::text_width("abc") == 17);

  // Nearest blit of a 2×2 image to 4×4: quadrants; float frame through a range mapping.
  data::image_u8 im(2, 2, 3);
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 2; ++x)
      for (int ch = 0; ch < 3; ++ch) im.at(y, x, ch) = std::uint8_t(60 * (2 * y + x) + ch);
  viz::canvas b(6, 6, viz::colors::black);
  b.blit(im, 1, 1, 4, 4);
  CHECK(b.get(1, 1) == viz::rgb{0, 1, 2});
  CHECK(b.get(4, 1) == viz::rgb{60, 61, 62});
  CHECK(b.get(2, 4) == viz::rgb{120, 121, 122});
  CHECK(b.get(4, 4) == viz::rgb{180, 181, 182});
  CHECK(b.get(0, 0) == viz::colors::black);
  const float plane[4] = {-1.f, 0.f, 0.5f, 1.f};
  b.blit(viz::float_frame_view{plane, 1, 2, 2}, 0, 0, 0, 0, viz::interpolation::nearest, viz::float_frame_mapping::range(-1, 1));
  CHECK(b.get(0, 0) == viz::rgb{0, 0, 0});
  CHECK(b.get(1, 1) == viz::rgb{255, 255, 255});
  CHECK(b.get(1, 0).r == 128);  // 0 → 127.5 → rounds to 128

  // Charts render without throwing and refuse nonsense.
  viz::series s{"loss", {0, 1, 2}, {3, 2, 1}};
  CHECK(viz::line_chart({s}).width() == 640);
  CHECK_THROWS_AS(viz::line_chart({viz::series{"bad", {0, 1}, {1}}}), value_error);
  CHECK(viz::heatmap({1, 2, 3, 4}, 2, 2, {}).height() > 48);
  CHECK_THROWS_AS(viz::heatmap({1, 2, 3}, 2, 2, {}), shape_error);

  // The PNG: signature, chunk CRCs (independent bitwise CRC-32), then decode with PIL if present.
  const std::string dir = temp_dir("png");
  const std::string path = dir + "/c.png";
  c.save_png(path);
  std::ifstream in(path, std::ios::binary);
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE(bytes.size() > 8 + 25);
  CHECK(std::vector<std::uint8_t>(bytes.begin(), bytes.begin() + 8) ==
        std::vector<std::uint8_t>{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'});
  std::size_t pos = 8;
  int chunks = 0;
  while (pos + 12 <= bytes.size()) {
    const std::uint32_t len = be32(&bytes[pos]);
    REQUIRE(pos + 12 + len <= bytes.size());
    CHECK(be32(&bytes[pos + 8 + len]) == crc32_reference(&bytes[pos + 4], len + 4));
    if (chunks == 0) {
      CHECK(std::string(bytes.begin() + std::ptrdiff_t(pos) + 4, bytes.begin() + std::ptrdiff_t(pos) + 8) == "IHDR");
      CHECK(be32(&bytes[pos + 8]) == 30);   // width
      CHECK(be32(&bytes[pos + 12]) == 20);  // height
    }
    pos += 12 + len;
    ++chunks;
  }
  CHECK(pos == bytes.size());
  CHECK(chunks == 3);
  const std::string cmd = "/usr/bin/python3 -c \"from PIL import Image; im = Image.open('" + path +
                          "'); im.load(); print(im.size[0], im.size[1], *im.getpixel((2, 3)), *im.getpixel((5, 6)))\" 2>/dev/null";
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char line[128] = {0};
    const bool got = std::fgets(line, sizeof line, p) != nullptr;
    ::pclose(p);
    if (got) CHECK(std::string(line) == "30 20 200 10 20 255 255 255\n");
    else WARN("python3 with PIL not available: PNG checked by signature and CRCs only");
  }
  std::filesystem::remove_all(dir);
}
