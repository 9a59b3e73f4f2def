// NonMaxSuppression (10, 11; the same semantics): per batch and class, the boxes in descending
// score order, each kept unless its IoU with a box already kept exceeds iou_threshold.
//
//   boxes [B, S, 4]: center_point_box 0 -> any two diagonal corners (y1, x1, y2, x2);
//                    1 -> (x_center, y_center, width, height)
//   scores [B, C, S]; max_output_boxes_per_class (int64 scalar, default 0: no output);
//   iou_threshold (default 0), score_threshold (absent: no threshold)
//   selected_indices [K, 3] int64: (batch, class, box), batch-major, then class, then score order
//
// As ONNX Runtime: only scores strictly above score_threshold compete; equal scores keep the
// lower box index first; a box pair with no overlap or a degenerate box is never suppressed.
// Detectors exported with their post-processing end in it: calibrating them runs it.

#include <algorithm>

#include "kernel_util.h"
#include "kernels.h"

namespace nnc::exec {
namespace {

struct Corners {
  float y1, x1, y2, x2;
  float area() const { return (y2 - y1) * (x2 - x1); }
};

Corners cornersOf(const float* b, bool center_point) {
  if (center_point) {
    const float hw = b[2] / 2, hh = b[3] / 2;
    return {b[1] - hh, b[0] - hw, b[1] + hh, b[0] + hw};
  }
  return {std::min(b[0], b[2]), std::min(b[1], b[3]), std::max(b[0], b[2]), std::max(b[1], b[3])};
}

bool overlapsTooMuch(const Corners& a, const Corners& b, float iou_threshold) {
  const float h = std::min(a.y2, b.y2) - std::max(a.y1, b.y1);
  const float w = std::min(a.x2, b.x2) - std::max(a.x1, b.x1);
  if (h <= 0 || w <= 0) return false;
  const float inter = h * w, area_a = a.area(), area_b = b.area();
  const float uni = area_a + area_b - inter;
  if (area_a <= 0 || area_b <= 0 || uni <= 0) return false;
  return inter / uni > iou_threshold;
}

struct NmsLimits {
  int64_t max_per_class = 0;
  float iou_threshold = 0;
  bool has_score_threshold = false;
  float score_threshold = 0;
};

StatusOr<NmsLimits> readLimits(std::span<const Tensor* const> in) {
  NmsLimits l;
  auto scalar = [&](size_t i, const char* what) -> StatusOr<const Tensor*> {
    if (in.size() <= i || !in[i]) return nullptr;
    if (in[i]->numel() != 1)
      return invalidModel(std::string("NonMaxSuppression: ") + what + " must be a scalar, got " +
                          shapeToString(in[i]->shape()));
    return in[i];
  };
  NNC_ASSIGN_OR_RETURN(const Tensor* max_boxes, scalar(2, "max_output_boxes_per_class"));
  NNC_ASSIGN_OR_RETURN(const Tensor* iou, scalar(3, "iou_threshold"));
  NNC_ASSIGN_OR_RETURN(const Tensor* score, scalar(4, "score_threshold"));
  if (max_boxes) l.max_per_class = std::max<int64_t>(0, max_boxes->toInt64Vector()[0]);
  if (iou) l.iou_threshold = static_cast<float>(iou->elementAsDouble(0));
  if (score) l.has_score_threshold = true, l.score_threshold = float(score->elementAsDouble(0));
  if (l.iou_threshold < 0 || l.iou_threshold > 1)
    return invalidModel("NonMaxSuppression: iou_threshold must be in [0, 1], got " +
                        std::to_string(l.iou_threshold));
  return l;
}

// The kept box indices of one (batch, class), in selection order.
std::vector<int64_t> selectBoxes(const std::vector<Corners>& boxes, const float* scores,
                                 const NmsLimits& l) {
  std::vector<int64_t> order;
  for (int64_t i = 0; i < static_cast<int64_t>(boxes.size()); ++i)
    if (!l.has_score_threshold || scores[i] > l.score_threshold) order.push_back(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
  std::vector<int64_t> kept;
  for (int64_t i : order) {
    if (static_cast<int64_t>(kept.size()) >= l.max_per_class) break;
    const bool suppressed = std::any_of(kept.begin(), kept.end(), [&](int64_t k) {
      return overlapsTooMuch(boxes[k], boxes[i], l.iou_threshold);
    });
    if (!suppressed) kept.push_back(i);
  }
  return kept;
}

Status nonMaxSuppression(std::span<const Tensor* const> in, bool center_point, Tensor& out) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "NonMaxSuppression boxes"));
  NNC_RETURN_IF_ERROR(requireInput(in, 1, "NonMaxSuppression scores"));
  const Tensor &boxes = *in[0], &scores = *in[1];
  NNC_RETURN_IF_ERROR(requireDType(boxes, DType::kFloat32, "NonMaxSuppression boxes"));
  NNC_RETURN_IF_ERROR(requireDType(scores, DType::kFloat32, "NonMaxSuppression scores"));
  if (boxes.rank() != 3 || boxes.dim(2) != 4 || scores.rank() != 3 ||
      scores.dim(0) != boxes.dim(0) || scores.dim(2) != boxes.dim(1))
    return shapeMismatch("NonMaxSuppression: boxes " + shapeToString(boxes.shape()) +
                         " and scores " + shapeToString(scores.shape()) +
                         " must be [B, S, 4] and [B, C, S]");
  NNC_ASSIGN_OR_RETURN(const NmsLimits limits, readLimits(in));
  const int64_t batches = boxes.dim(0), classes = scores.dim(1), spatial = boxes.dim(1);
  const float *bd = boxes.data<float>().data(), *sd = scores.data<float>().data();
  std::vector<int64_t> triples;
  for (int64_t b = 0; b < batches; ++b) {
    std::vector<Corners> corners(spatial);
    for (int64_t s = 0; s < spatial; ++s)
      corners[s] = cornersOf(bd + (b * spatial + s) * 4, center_point);
    for (int64_t c = 0; c < classes; ++c)
      for (int64_t i : selectBoxes(corners, sd + (b * classes + c) * spatial, limits))
        triples.insert(triples.end(), {b, c, i});
  }
  out = Tensor(DType::kInt64, {static_cast<int64_t>(triples.size() / 3), 3});
  std::copy(triples.begin(), triples.end(), out.mutableData<int64_t>().begin());
  return Status::ok();
}

}  // namespace

void registerDetectionKernels(KernelRegistry& r) {
  r.addFunction("NonMaxSuppression", [](const KernelBuildContext& b) -> StatusOr<KernelFn> {
    const int64_t center = b.node.intAttr("center_point_box", 0);
    if (center != 0 && center != 1)
      return invalidModel("NonMaxSuppression: center_point_box must be 0 or 1, got " +
                          std::to_string(center));
    return KernelFn([center](std::span<const Tensor* const> in, std::span<Tensor> out,
                             const RunContext&) -> Status {
      return nonMaxSuppression(in, center == 1, out[0]);
    });
  });
}

}  // namespace nnc::exec
