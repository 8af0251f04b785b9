// Tests of eval/classification.hpp, eval/finetune.hpp, eval/gradcam.hpp and ops/dropout.hpp:
// score averaging and metrics against hand-computed answers, weight transfer round trips and
// errors, dropout gradients and evaluation identity, Grad-CAM against the closed form computed
// from the activations and the fc weights, and exact resume of the fine-tuning loop.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <mscl/eval/classification.hpp>
#include <mscl/eval/finetune.hpp>
#include <mscl/eval/gradcam.hpp>
#include <mscl/ops/dropout.hpp>
#include <mscl/testing/gradient_check.hpp>
#include <mscl/train/checkpoint.hpp>

namespace fs = std::filesystem;
using mscl::index_t;
using mscl::tensor;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("mscl_eval_classification_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

mscl::eval::classifier_options tiny_options(std::uint64_t seed, index_t classes = 3) {
  mscl::eval::classifier_options o;
  o.num_classes = classes;
  o.depth = 10;
  o.width = 4;
  o.seed = seed;
  return o;
}

tensor<float> random_tensor(const mscl::shape_t& s, std::uint64_t seed, double lo = -1, double hi = 1) {
  tensor<float> t = tensor<float>::empty(s);
  mscl::generator g(seed);
  g.fill_uniform(t.data(), t.numel(), lo, hi);
  return t;
}

void require_equal(const tensor<float>& a, const tensor<float>& b, const std::string& what) {
  INFO(what);
  REQUIRE(a.shape() == b.shape());
  const auto va = a.to_vector(), vb = b.to_vector();
  for (std::size_t i = 0; i < va.size(); ++i) REQUIRE(va[i] == vb[i]);
}

bool any_difference(const tensor<float>& a, const tensor<float>& b) {
  const auto va = a.to_vector(), vb = b.to_vector();
  for (std::size_t i = 0; i < va.size(); ++i)
    if (va[i] != vb[i]) return true;
  return false;
}

}  // namespace

// ------------------------------------------------------------------------------ averaging

TEST_CASE("average_view_scores: prob averages softmaxes, score averages logits (hand computed)", "[eval]") {
  // 2 videos × 2 views × 3 classes.
  const std::vector<float> l = {0.f, 1.f, 2.f,   2.f, 0.f, 0.f,     // video 0
                                -1.f, 3.f, 0.5f, 1.f, 1.f, 1.f};    // video 1
  const auto logits = tensor<float>::from_vector({4, 3}, l);
  // Softmax rows by hand: e^(x) / Σ e^(x).
  auto sm = [](double a, double b, double c, int k) {
    const double s = std::exp(a) + std::exp(b) + std::exp(c);
    return std::exp(k == 0 ? a : k == 1 ? b : c) / s;
  };
  const auto p = mscl::eval::average_view_scores(logits, 2, mscl::eval::score_average::prob);
  REQUIRE(p.rows == 2);
  REQUIRE(p.classes == 3);
  for (int k = 0; k < 3; ++k) {
    CHECK(p.at(0, k) == Approx(0.5 * (sm(0, 1, 2, k) + sm(2, 0, 0, k))).epsilon(1e-6));
    CHECK(p.at(1, k) == Approx(0.5 * (sm(-1, 3, 0.5, k) + sm(1, 1, 1, k))).epsilon(1e-6));
  }
  // Video 0: averaged probabilities favour class 0 slightly less than class 2? Check the numbers.
  CHECK(p.at(0, 2) == Approx(0.5 * (0.66524096 + 0.10650698)).epsilon(1e-6));
  const auto s = mscl::eval::average_view_scores(logits, 2, mscl::eval::score_average::score);
  CHECK(s.at(0, 0) == Approx(1.0));
  CHECK(s.at(0, 1) == Approx(0.5));
  CHECK(s.at(0, 2) == Approx(1.0));
  CHECK(s.at(1, 1) == Approx(2.0));
  CHECK(s.at(1, 2) == Approx(0.75));
  // prob and score can disagree on the winner: one very confident view for class 0 against two
  // moderately confident ones for class 2 (score: (10+0+0)/3 > (0+3+3)/3; prob: 0.36 < 0.61).
  const auto three = tensor<float>::from_vector({3, 3}, {10.f, 0.f, 0.f, 0.f, 0.f, 3.f, 0.f, 0.f, 3.f});
  const auto p3 = mscl::eval::average_view_scores(three, 3, mscl::eval::score_average::prob);
  const auto s3 = mscl::eval::average_view_scores(three, 3, mscl::eval::score_average::score);
  CHECK(p3.at(0, 2) == Approx((sm(10, 0, 0, 2) + 2 * sm(0, 0, 3, 2)) / 3).epsilon(1e-6));
  CHECK(mscl::eval::compute_metrics(p3, {2}).predictions[0] == 2);
  CHECK(mscl::eval::compute_metrics(s3, {2}).predictions[0] == 0);
  CHECK_THROWS_AS(mscl::eval::average_view_scores(logits, 3, mscl::eval::score_average::prob), mscl::shape_error);
  CHECK_THROWS_AS(mscl::eval::parse_score_average("mean"), mscl::config_error);
}

TEST_CASE("compute_metrics: top-1, top-5, per-class, mean-class and confusion on hand-built scores", "[eval]") {
  // 7 classes so that top-5 is not trivially 100 %.
  mscl::eval::score_table t;
  t.classes = 7;
  auto row = [&](std::vector<double> r) {
    t.values.insert(t.values.end(), r.begin(), r.end());
    ++t.rows;
  };
  row({.9, .1, 0, 0, 0, 0, 0});          // label 0: top-1 right
  row({.1, .8, .05, 0, 0, 0, .05});      // label 0: predicted 1, rank of 0 = 1 → top-5 right
  row({.0, .5, .1, .1, .1, .1, .1});     // label 1: right
  row({.7, .2, .1, .0, .0, .0, .0});     // label 6: predicted 0; class 6 ties with 3,4,5 at 0 → rank 6 → top-5 wrong
  row({.3, .3, .1, .1, .1, .05, .05});   // label 1: tie 0/1 → argmax 0 (first), rank of 1 = 1
  row({0, 0, 0, 0, 0, 0, 1});            // label 6: right
  const std::vector<index_t> labels = {0, 0, 1, 6, 1, 6};
  const auto m = mscl::eval::compute_metrics(t, labels);
  CHECK(m.count == 6);
  CHECK(m.top5_k == 5);
  CHECK(m.top1 == Approx(3.0 / 6));
  CHECK(m.top5 == Approx(5.0 / 6));
  CHECK(m.predictions == std::vector<index_t>{0, 1, 1, 0, 0, 6});
  CHECK(m.per_class_count == std::vector<index_t>{2, 2, 0, 0, 0, 0, 2});
  CHECK(m.per_class_accuracy[0] == Approx(0.5));
  CHECK(m.per_class_accuracy[1] == Approx(0.5));
  CHECK(std::isnan(m.per_class_accuracy[2]));
  CHECK(m.per_class_accuracy[6] == Approx(0.5));
  CHECK(m.mean_class_accuracy == Approx(0.5));  // classes without videos are left out
  CHECK(m.confusion_at(0, 0) == 1);
  CHECK(m.confusion_at(0, 1) == 1);
  CHECK(m.confusion_at(1, 1) == 1);
  CHECK(m.confusion_at(1, 0) == 1);
  CHECK(m.confusion_at(6, 0) == 1);
  CHECK(m.confusion_at(6, 6) == 1);
  index_t total = 0;
  for (auto v : m.confusion) total += v;
  CHECK(total == 6);
  const auto j = m.to_json({"a", "b", "c", "d", "e", "f", "g"});
  CHECK(j.at("per_class").at(2).at("accuracy").is_null());
  CHECK(j.at("per_class").at(6).at("name") == "g");
  CHECK(j.at("confusion").at(6).at(0) == 1);
  // Fewer than five classes: top-k uses all of them.
  mscl::eval::score_table two{1, 2, {0.2, 0.8}};
  CHECK(mscl::eval::compute_metrics(two, {0}).top5 == Approx(1.0));
  CHECK(mscl::eval::compute_metrics(two, {0}).top5_k == 2);
  CHECK_THROWS_AS(mscl::eval::compute_metrics(two, {2}), mscl::value_error);
  CHECK_THROWS_AS(mscl::eval::compute_metrics(two, {0, 1}), mscl::shape_error);
}

TEST_CASE("evaluate: per-video averaging over views of a source", "[eval]") {
  // A source whose views are constant clips; the classifier's logits per view are computed
  // independently by running the classifier on each view alone.
  struct source_t {
    index_t size() const { return 3; }
    index_t label(index_t i) const { return i % 2; }
    index_t views_per_video() const { return 2; }
    tensor<float> views(index_t i) const { return random_tensor({2, 3, 2, 8, 8}, 100 + std::uint64_t(i)); }
  } src;
  mscl::eval::video_classifier<float> clf(tiny_options(3, 2));
  clf.train();
  const auto res = mscl::eval::evaluate(clf, src, 2, mscl::eval::score_average::prob, [](index_t, index_t) {}, false);
  CHECK(clf.is_training());  // mode restored
  REQUIRE(res.scores.rows == 3);
  clf.eval();
  mscl::no_grad guard;
  for (index_t v = 0; v < 3; ++v) {
    const tensor<float> x = src.views(v);
    double p[2] = {0, 0};
    for (index_t k = 0; k < 2; ++k) {
      const auto l = clf.forward(mscl::ops::slice(x, 0, k, k + 1).clone()).to_vector();
      const double e0 = std::exp(double(l[0])), e1 = std::exp(double(l[1]));
      p[0] += 0.5 * e0 / (e0 + e1);
      p[1] += 0.5 * e1 / (e0 + e1);
    }
    CHECK(res.scores.at(v, 0) == Approx(p[0]).epsilon(1e-5));
    CHECK(res.scores.at(v, 1) == Approx(p[1]).epsilon(1e-5));
  }
  CHECK(res.labels == std::vector<index_t>{0, 1, 0});
}

// --------------------------------------------------------------------------------- dropout

TEST_CASE("dropout: finite-difference gradient, mask statistics, evaluation identity", "[ops][dropout]") {
  const auto x = tensor<double>::from_vector({4, 5}, [] {
    std::vector<double> v;
    for (int i = 0; i < 20; ++i) v.push_back(0.3 * i - 2.0);
    return v;
  }());
  const auto res = mscl::testing::check_gradients(
      [](const std::vector<tensor<double>>& in) { return mscl::ops::dropout(in[0], 0.4, true, 7, 3); }, {x});
  INFO(res.report);
  CHECK(res.ok);

  // Kept elements are x / (1 − p), dropped ones 0; the mask depends only on (seed, stream).
  const auto y = mscl::ops::dropout(x, 0.4, true, 7, 3).to_vector();
  const auto y2 = mscl::ops::dropout(x, 0.4, true, 7, 3).to_vector();
  const auto y3 = mscl::ops::dropout(x, 0.4, true, 7, 4).to_vector();
  CHECK(y == y2);
  CHECK(y != y3);
  const auto xv = x.to_vector();
  for (std::size_t i = 0; i < xv.size(); ++i) {
    const bool keep = mscl::philox_uniform(7, 3, i) >= 0.4;
    CHECK(y[i] == Approx(keep ? xv[i] / 0.6 : 0.0));
  }
  // Fraction kept ≈ 1 − p over many elements (binomial: 3σ ≈ 0.005 at n = 100k).
  const auto big = mscl::ops::dropout(tensor<float>::ones({100000}), 0.5, true, 1, 0).to_vector();
  double kept = 0;
  for (float v : big) kept += v != 0.f;
  CHECK(kept / 100000.0 == Approx(0.5).margin(0.01));

  // Evaluation mode and p = 0 return the input itself.
  const auto xe = mscl::ops::dropout(x, 0.5, false, 1, 0);
  CHECK(xe.data() == x.data());
  CHECK(mscl::ops::dropout(x, 0.0, true, 1, 0).data() == x.data());
  CHECK(mscl::ops::dropout(x, 1.0, true, 1, 0).to_vector() == std::vector<double>(20, 0.0));
  CHECK_THROWS_AS(mscl::ops::dropout(x, 1.5, true, 1, 0), mscl::value_error);

  // In the classifier: training-mode logits depend on the dropout stream, eval-mode ones do not.
  mscl::eval::video_classifier<float> clf(tiny_options(1));
  const auto clip = random_tensor({2, 3, 2, 8, 8}, 9);
  clf.eval();
  const auto e1 = clf.forward(clip).to_vector();
  const auto e2 = clf.forward(clip).to_vector();
  CHECK(e1 == e2);
}

// --------------------------------------------------------------------------- weight transfer

TEST_CASE("load_pretrained_backbone: mscl-pretrain checkpoint, MMAction2 and torchvision names", "[eval][io]") {
  const fs::path dir = temp_dir("transfer");
  mscl::eval::video_classifier<float> src(tiny_options(11));
  // Make BN statistics non-trivial so that buffers are checked too.
  for (auto& e : src.state_dict()) {
    if (!e.is_parameter && !e.is_integer) e.value.copy_from(random_tensor(e.value.shape(), 5, 0.5, 1.5));
    if (e.is_integer) e.value.fill_(7.f);
  }
  mscl::eval::video_classifier<float> decoy(tiny_options(12));

  SECTION("mscl-pretrain checkpoint: the query backbone, not the key one") {
    mscl::train::checkpoint<float> ck;
    ck.add_module("model.rgb_k.backbone.", *decoy.backbone);  // the key encoder: must not be chosen
    ck.add_module("model.rgb_q.backbone.", *src.backbone);
    ck.tensors["model.rgb_q.mlp.0.weight"] = random_tensor({4, 4}, 1);
    const std::string path = mscl::train::save_checkpoint((dir / "pre").string(), 10, ck);
    mscl::eval::video_classifier<float> dst(tiny_options(13));
    const auto fc_before = dst.cls_head->fc_cls->weight.clone();
    const auto r = mscl::eval::load_pretrained_backbone(dst, path);
    CHECK(r.format.find("mscl-pretrain") != std::string::npos);
    const auto a = src.backbone->state_dict(), b = dst.backbone->state_dict();
    REQUIRE(a.size() == b.size());
    CHECK(r.loaded == index_t(a.size()));
    for (std::size_t i = 0; i < a.size(); ++i) require_equal(a[i].value, b[i].value, a[i].name);
    require_equal(dst.cls_head->fc_cls->weight, fc_before, "fc untouched");
  }
  SECTION("MMAction2 names (save_classifier) round trip, backbone only and whole classifier") {
    const std::string path = (dir / "model.safetensors").string();
    mscl::eval::save_classifier(src, path);
    mscl::eval::video_classifier<float> dst(tiny_options(13));
    CHECK(any_difference(dst.backbone->stem->conv->weight, src.backbone->stem->conv->weight));
    mscl::eval::load_pretrained_backbone(dst, path);
    require_equal(dst.backbone->stem->conv->weight, src.backbone->stem->conv->weight, "stem");
    CHECK(any_difference(dst.cls_head->fc_cls->weight, src.cls_head->fc_cls->weight));
    mscl::eval::load_classifier(dst, path);
    const auto a = src.state_dict(), b = dst.state_dict();
    for (std::size_t i = 0; i < a.size(); ++i) require_equal(a[i].value, b[i].value, a[i].name);
    CHECK(a[1].name.rfind("backbone.", 0) == 0);
    const auto file = mscl::io::safetensors_file::open(path);
    const auto names = file.names();
    CHECK(std::find(names.begin(), names.end(), "cls_head.fc_cls.weight") != names.end());
    CHECK(std::find(names.begin(), names.end(), "backbone.layer4.0.conv2.1.running_var") != names.end());
  }
  SECTION("torchvision top-level names with a Kinetics fc, and an explicit key map") {
    auto tv = mscl::models::r3d_10<float>(400, 21, 4);
    const std::string path = (dir / "tv.safetensors").string();
    mscl::io::save_state_dict(tv, path);
    mscl::eval::video_classifier<float> dst(tiny_options(13));
    const auto r = mscl::eval::load_pretrained_backbone(dst, path);
    CHECK(r.format == "torchvision r3d");
    require_equal(dst.backbone->stem->conv->weight, tv.stem->conv->weight, "stem");
    CHECK(r.loaded == index_t(dst.backbone->state_dict().size()));
    mscl::eval::video_classifier<float> dst2(tiny_options(14));
    mscl::eval::load_pretrained_backbone(dst2, path, "fc.=DROP");
    require_equal(dst2.backbone->stem->conv->weight, tv.stem->conv->weight, "stem via key map");
  }
  SECTION("errors name the missing entry, the file and the prefix") {
    mscl::io::safetensors_writer w;
    for (const auto& e : src.backbone->state_dict("backbone."))
      if (e.name != "backbone.layer4.0.conv2.1.running_var") w.add(e.name, e.value);
    const std::string path = (dir / "partial.safetensors").string();
    w.write(path);
    mscl::eval::video_classifier<float> dst(tiny_options(13));
    try {
      mscl::eval::load_pretrained_backbone(dst, path);
      FAIL("expected io_error");
    } catch (const mscl::io_error& e) {
      const std::string msg = e.what();
      CHECK(msg.find("layer4.0.conv2.1.running_var") != std::string::npos);
      CHECK(msg.find("partial.safetensors") != std::string::npos);
      CHECK(msg.find("backbone.=") != std::string::npos);
    }
    mscl::io::safetensors_writer none;
    none.add("something.else", random_tensor({2}, 1));
    none.write((dir / "none.safetensors").string());
    CHECK_THROWS_WITH(mscl::eval::load_pretrained_backbone(dst, (dir / "none.safetensors").string()),
                      Catch::Contains("stem.0.weight"));
    // A backbone of another width: shape error naming the entry.
    mscl::eval::video_classifier<float> wide([] { auto o = tiny_options(1); o.width = 8; return o; }());
    mscl::eval::save_classifier(wide, (dir / "wide.safetensors").string());
    CHECK_THROWS_AS(mscl::eval::load_pretrained_backbone(dst, (dir / "wide.safetensors").string()), mscl::shape_error);
    CHECK_THROWS_AS(mscl::eval::load_classifier(dst, (dir / "none.safetensors").string()), mscl::io_error);
  }
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------------- Grad-CAM

namespace {
/// PyTorch trilinear (align_corners=False) resize of a t×h×w volume, written out per axis.
std::vector<double> naive_trilinear(const std::vector<double>& in, index_t t, index_t h, index_t w, index_t T, index_t H,
                                    index_t W) {
  auto taps = [](index_t n_in, index_t n_out, index_t o, index_t& i0, index_t& i1, double& l1) {
    const double s = double(n_in) / double(n_out);
    double src = std::max(0.0, s * (double(o) + 0.5) - 0.5);
    i0 = std::min(index_t(std::floor(src)), n_in - 1);
    i1 = std::min(i0 + 1, n_in - 1);
    l1 = src - double(i0);
  };
  std::vector<double> out(std::size_t(T * H * W));
  for (index_t a = 0; a < T; ++a)
    for (index_t b = 0; b < H; ++b)
      for (index_t c = 0; c < W; ++c) {
        index_t t0, t1, y0, y1, x0, x1;
        double lt, ly, lx;
        taps(t, T, a, t0, t1, lt);
        taps(h, H, b, y0, y1, ly);
        taps(w, W, c, x0, x1, lx);
        auto at = [&](index_t i, index_t j, index_t k) { return in[std::size_t((i * h + j) * w + k)]; };
        double v = 0;
        for (int dt = 0; dt < 2; ++dt)
          for (int dy = 0; dy < 2; ++dy)
            for (int dx = 0; dx < 2; ++dx)
              v += (dt ? lt : 1 - lt) * (dy ? ly : 1 - ly) * (dx ? lx : 1 - lx) * at(dt ? t1 : t0, dy ? y1 : y0, dx ? x1 : x0);
        out[std::size_t((a * H + b) * W + c)] = v;
      }
  return out;
}
}  // namespace

TEST_CASE("gradcam: equals the closed form from layer4 activations and fc weights, and is zero-safe", "[eval][gradcam]") {
  mscl::eval::video_classifier<float> clf(tiny_options(4, 3));
  clf.train();  // gradcam must switch to eval (no dropout) and back
  const auto x = random_tensor({1, 3, 4, 16, 16}, 77, 0, 1);
  // Independent path: layer4 activations from the taps of a plain eval forward, CAM weights from
  // the fc: ∂y_c/∂A_k(i) = w_ck / S for global average pooling + linear.
  clf.eval();
  mscl::models::video_resnet_taps<float, mscl::cpu> taps;
  std::vector<float> logits;
  {
    mscl::no_grad g;
    logits = clf.forward(x, &taps).to_vector();
  }
  clf.train();
  const tensor<float> A = taps.layer4.clone();
  const index_t K = A.size(1), t = A.size(2), h = A.size(3), w = A.size(4), S = t * h * w;
  const index_t c = 1;
  const auto r = mscl::eval::gradcam(clf, x, c);
  CHECK(clf.is_training());
  CHECK(r.target_class == c);
  CHECK(r.logit == Approx(logits[1]).epsilon(1e-5));
  const auto W = clf.cls_head->fc_cls->weight.to_vector();  // C × K
  std::vector<double> cam(static_cast<std::size_t>(S));
  double mx = 0;
  for (index_t i = 0; i < S; ++i) {
    double s = 0;
    for (index_t k = 0; k < K; ++k) s += double(W[std::size_t(c * K + k)]) / double(S) * A.data()[k * S + i];
    cam[std::size_t(i)] = std::max(0.0, s);
  }
  for (index_t k = 0; k < K; ++k) CHECK(r.weights.data()[k] == Approx(W[std::size_t(c * K + k)] / double(S)).margin(1e-7));
  REQUIRE(r.low_res.shape() == mscl::shape_t{t, h, w});
  for (index_t i = 0; i < S; ++i) CHECK(r.low_res.data()[i] == Approx(cam[std::size_t(i)]).margin(1e-6));
  const auto up = naive_trilinear(cam, t, h, w, 4, 16, 16);
  for (double v : up) mx = std::max(mx, v);
  REQUIRE(mx > 0);
  REQUIRE(r.map.shape() == mscl::shape_t{4, 16, 16});
  for (std::size_t i = 0; i < up.size(); ++i) CHECK(r.map.data()[i] == Approx(up[i] / mx).margin(1e-5));
  // Predicted class and probability agree with the eval-mode logits.
  const index_t pred = index_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  CHECK(mscl::eval::gradcam(clf, x).target_class == pred);

  // Zero gradients (fc weights zero): a zero map, no NaN.
  clf.cls_head->fc_cls->weight.fill_(0.f);
  const auto z = mscl::eval::gradcam(clf, x, 0);
  for (float v : z.map.to_vector()) REQUIRE(v == 0.f);
  CHECK(z.max_value == 0.0);
  CHECK(z.probability == Approx(1.0 / 3));
  // The PNG strip has one column per frame and two rows.
  const auto strip = mscl::eval::gradcam_strip(x, r.map, {2, 0.5f, false, ""});
  CHECK(strip.width() == 4 * (32 + 4) + 4);
  CHECK(strip.height() == 2 * 32 + 12);
  CHECK_THROWS_AS(mscl::eval::gradcam(clf, x, 3), mscl::value_error);
  CHECK_THROWS_AS(mscl::eval::gradcam(clf, random_tensor({2, 3, 4, 16, 16}, 1)), mscl::shape_error);
}

// ------------------------------------------------------------------------------ fine-tuning

namespace {
/// Items whose class is the sign pattern of a bright square's horizontal motion, generated from
/// the per-sample generator (so augmentation randomness flows through `gen`).
struct toy_source {
  index_t n = 16;
  index_t size() const { return n; }
  index_t label(index_t i) const { return i % 2; }
  tensor<float> sample(index_t i, mscl::generator& gen) const {
    tensor<float> x = tensor<float>::zeros({3, 4, 8, 8});
    const index_t x0 = gen.randint(0, 3), dir = label(i) ? 1 : -1;
    for (index_t t = 0; t < 4; ++t)
      for (index_t c = 0; c < 3; ++c)
        for (index_t y = 2; y < 5; ++y) x.data()[((c * 4 + t) * 8 + y) * 8 + std::min<index_t>(7, std::max<index_t>(0, x0 + 2 + dir * t))] = 1.f;
    return x;
  }
  index_t views_per_video() const { return 2; }
  tensor<float> views(index_t i) const {
    mscl::generator g(1000 + std::uint64_t(i));
    return mscl::ops::stack(std::vector<tensor<float>>{sample(i, g), sample(i, g)}, 0);
  }
};
}  // namespace

TEST_CASE("finetune: outputs, and a resumed run ends bit-identical to an uninterrupted one", "[eval][finetune]") {
  const fs::path dir = temp_dir("finetune");
  toy_source src;
  mscl::eval::finetune_options o;
  o.epochs = 2;
  o.batch = 4;
  o.lr = 0.05;
  o.schedule = "cosine";
  o.warmup_epochs = 0.5;
  o.weight_decay = 1e-4;
  o.eval_every = 1;
  o.progress = false;
  o.log_every = 1;
  o.class_names = {"left", "right"};
  o.config_hash = "toy";

  o.out_dir = (dir / "full").string();
  mscl::eval::video_classifier<float> a(tiny_options(5, 2));
  const auto ra = mscl::eval::finetune(a, src, &src, o);
  CHECK(ra.last_iteration == 8);
  CHECK(ra.final_eval.metrics.count == 16);
  CHECK(ra.evaluations.size() == 2);  // after epoch 1 and the final one
  for (const char* f : {"model.safetensors", "metrics.json", "confusion.png", "log.jsonl", "latest.json"})
    CHECK(fs::exists(dir / "full" / f));

  // Interrupted after 5 iterations (mid-epoch 2: the epoch-1 checkpoint is the restart point).
  o.out_dir = (dir / "resumed").string();
  mscl::eval::video_classifier<float> b(tiny_options(5, 2));
  auto stop = o;
  stop.on_step = [](long it, double) { return it < 5; };
  mscl::eval::finetune(b, src, static_cast<const toy_source*>(nullptr), stop);
  mscl::eval::video_classifier<float> c(tiny_options(99, 2));  // different init: all must come from the checkpoint
  auto again = o;
  again.resume = true;
  const auto rc = mscl::eval::finetune(c, src, &src, again);
  CHECK(rc.first_iteration == 4);
  const auto sa = a.state_dict(), sc = c.state_dict();
  for (std::size_t i = 0; i < sa.size(); ++i) require_equal(sa[i].value, sc[i].value, sa[i].name);
  CHECK(rc.final_eval.metrics.top1 == ra.final_eval.metrics.top1);

  auto other = o;
  other.resume = true;
  other.config_hash = "different";
  mscl::eval::video_classifier<float> d(tiny_options(5, 2));
  CHECK_THROWS_AS(mscl::eval::finetune(d, src, &src, other), mscl::config_error);
  fs::remove_all(dir);
}
