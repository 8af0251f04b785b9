/// \file gradcam.hpp
/// \brief Grad-CAM (Selvaraju et al., ICCV 2017) for a `video_classifier`, on the backbone's last
///        stage (layer4): which spatio-temporal regions of a clip drive the logit of a class.
///
/// For class c with logit y_c and layer4 activations A (K channels × t' × h' × w'):
///   α_k = mean over (t', h', w') of ∂y_c/∂A_k        (spatio-temporally averaged gradients)
///   L   = ReLU(Σ_k α_k · A_k)                          (t' × h' × w')
/// then L is resized trilinearly (align_corners = false) to the clip's T × H × W and scaled by its
/// maximum into [0, 1]. The gradients come from autograd through the classifier's head
/// (`video_classifier::head`, in evaluation mode, so dropout is off); with the global-average-pool
/// + linear head this equals CAM (α_k = w_ck / (t'h'w')), but any head is handled the same way.
/// A map that is zero everywhere (no positive evidence, or zero gradients) stays zero: no 0/0.
#pragma once
#include <algorithm>
#include <string>
#include <vector>

#include "../ops/reduce.hpp"
#include "../ops/resize.hpp"
#include "../ops/shape_ops.hpp"
#include "../viz/canvas.hpp"
#include "classification.hpp"

namespace mscl::eval {

struct gradcam_result {
  index_t target_class = 0;
  double logit = 0;            ///< y_c of the clip
  double probability = 0;      ///< softmax(y)_c
  index_t predicted_class = 0; ///< argmax of the logits
  tensor<float> weights;       ///< α, K
  tensor<float> low_res;       ///< ReLU(Σ α_k A_k), t' × h' × w' (before resizing and scaling)
  tensor<float> map;           ///< T × H × W in [0, 1] (all zero when low_res is)
  double max_value = 0;        ///< max of the resized map before scaling
};

/// Grad-CAM of class `target` (< 0: the predicted class) for one clip x (1×3×T×H×W).
/// The classifier is used in evaluation mode and restored to its previous mode afterwards. On any
/// backend B the forward and backward passes run on B; the result is host data.
template <class B>
gradcam_result gradcam(video_classifier<float, B>& clf, const tensor<float, B>& x, index_t target = -1) {
  MSCL_CHECK(x.defined() && x.dim() == 5 && x.size(0) == 1 && x.size(1) == 3, shape_error,
             "gradcam: expected one clip of shape (1, 3, T, H, W), got "
                 << (x.defined() ? mscl::to_string(x.shape()) : std::string("undefined")));
  MSCL_CHECK(target < clf.num_classes(), value_error,
             "gradcam: class " << target << " is outside [0, " << clf.num_classes() << ")");
  const bool was_training = clf.is_training();
  clf.eval();
  tensor<float, B> act;
  {
    no_grad guard;
    act = clf.backbone->forward_backbone(x).detach();  // 1 × K × t' × h' × w'
  }
  tensor<float, B> leaf = act.clone();
  leaf.set_requires_grad(true);
  const tensor<float, B> logits = clf.head(leaf);  // 1 × C
  clf.train(was_training);

  gradcam_result r;
  const auto lv = logits.detach().to_vector();
  const index_t C = index_t(lv.size());
  r.predicted_class = index_t(std::max_element(lv.begin(), lv.end()) - lv.begin());
  r.target_class = target < 0 ? r.predicted_class : target;
  r.logit = lv[std::size_t(r.target_class)];
  {
    double mx = *std::max_element(lv.begin(), lv.end()), s = 0;
    for (float v : lv) s += std::exp(double(v) - mx);
    r.probability = std::exp(r.logit - mx) / s;
  }
  // ∂y_c/∂A: backward from the logits with a one-hot gradient.
  std::vector<float> hot(std::size_t(C), 0.f);
  hot[std::size_t(r.target_class)] = 1.f;
  logits.backward(on_backend<B>(tensor<float>::from_vector({1, C}, hot)));
  // The rest is small (K channels × t'h'w' positions, one clip) and runs on the host for every
  // backend: the activations and their gradient are copied over.
  const auto contiguous_host = [](const tensor<float, B>& t) {
    const tensor<float> h = on_backend<cpu>(t);  // on the cpu tag: t itself, maybe a view
    return h.is_contiguous() ? h : h.clone();
  };
  const tensor<float> g = leaf.grad().defined() ? contiguous_host(leaf.grad()) : tensor<float>();
  const tensor<float> act_host = contiguous_host(act);
  const index_t K = act.size(1), S = act.numel() / K;
  const shape_t low_shape{act.size(2), act.size(3), act.size(4)};
  r.weights = tensor<float>::zeros({K});
  r.low_res = tensor<float>::zeros(low_shape);
  if (g.defined()) {
    for (index_t k = 0; k < K; ++k) {
      double s = 0;
      for (index_t i = 0; i < S; ++i) s += g.data()[k * S + i];
      r.weights.data()[k] = float(s / double(S));
    }
  }
  const float* a = act_host.data();
  float* l = r.low_res.data();
  for (index_t i = 0; i < S; ++i) {
    double s = 0;
    for (index_t k = 0; k < K; ++k) s += double(r.weights.data()[k]) * a[k * S + i];
    l[i] = s > 0 ? float(s) : 0.f;
  }
  no_grad guard;
  const tensor<float> up = ops::interpolate_trilinear3d(ops::reshape(r.low_res, {1, 1, low_shape[0], low_shape[1], low_shape[2]}),
                                                           {x.size(2), x.size(3), x.size(4)});
  r.map = ops::reshape(up, {x.size(2), x.size(3), x.size(4)}).clone();
  float* m = r.map.data();
  float mx = 0.f;
  for (index_t i = 0; i < r.map.numel(); ++i) mx = std::max(mx, m[i]);
  r.max_value = mx;
  if (mx > 0.f)
    for (index_t i = 0; i < r.map.numel(); ++i) m[i] = std::max(0.f, m[i]) / mx;
  return r;
}

struct gradcam_strip_options {
  int scale = 4;                 ///< each frame drawn at scale × its size
  float alpha = 0.5f;            ///< heatmap opacity over the frame
  bool imagenet_normalized = true;  ///< the clip holds ImageNet-normalised pixels (else [0, 1])
  std::string title;
};

/// A two-row PNG strip: the clip's frames on top, the same frames with the Grad-CAM map
/// (jet colours, opacity `alpha`) below; one column per frame. clip: 3×T×H×W (or 1×3×T×H×W).
inline viz::canvas gradcam_strip(const tensor<float>& clip, const tensor<float>& map, const gradcam_strip_options& o = {}) {
  const tensor<float> c = clip.dim() == 5 ? ops::reshape(clip, {clip.size(1), clip.size(2), clip.size(3), clip.size(4)}) : clip;
  MSCL_CHECK(c.dim() == 4 && c.size(0) == 3, shape_error,
             "gradcam_strip: expected a 3×T×H×W clip, got " << mscl::to_string(clip.shape()));
  MSCL_CHECK(map.dim() == 3 && map.size(0) == c.size(1) && map.size(1) == c.size(2) && map.size(2) == c.size(3), shape_error,
             "gradcam_strip: map " << mscl::to_string(map.shape()) << " does not match the clip " << mscl::to_string(c.shape()));
  MSCL_CHECK(o.scale >= 1 && o.alpha >= 0 && o.alpha <= 1, value_error, "gradcam_strip: need scale >= 1 and alpha in [0, 1]");
  const tensor<float> cc = c.is_contiguous() ? c : c.clone();
  const int T = int(c.size(1)), H = int(c.size(2)), W = int(c.size(3));
  const int fw = W * o.scale, fh = H * o.scale, gap = 4;
  const int title_h = o.title.empty() ? 0 : viz::text_height(1) + 8;
  viz::canvas cv(title_h + 2 * fh + 3 * gap, T * (fw + gap) + gap, viz::colors::white);
  if (!o.title.empty()) cv.text(gap, 4, o.title);
  const auto mapping = o.imagenet_normalized ? viz::float_frame_mapping::imagenet() : viz::float_frame_mapping{};
  const std::int64_t plane = std::int64_t(H) * W, cstride = std::int64_t(T) * plane;
  for (int t = 0; t < T; ++t) {
    const int x0 = gap + t * (fw + gap), y0 = title_h + gap, y1 = y0 + fh + gap;
    viz::float_frame_view f{cc.data() + t * plane, 3, H, W, cstride};
    cv.blit(f, x0, y0, fw, fh, viz::interpolation::nearest, mapping);
    cv.blit(f, x0, y1, fw, fh, viz::interpolation::nearest, mapping);
    const float* mp = map.data() + t * plane;
    for (int y = 0; y < fh; ++y)
      for (int x = 0; x < fw; ++x) cv.blend(x0 + x, y1 + y, viz::jet(mp[(y / o.scale) * W + x / o.scale]), o.alpha);
  }
  return cv;
}

}  // namespace mscl::eval
