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
//
// RoiAlign (10, 16): Y[r, c] is X[batch_indices[r], c] pooled over roi r split into
// output_height x output_width bins, each bin the avg (or max) of a grid of bilinear samples.
//
//   X [N, C, H, W] float or double; rois [R, 4] (x1, y1, x2, y2) in image coordinates, scaled
//   by spatial_scale; batch_indices [R] int64  ->  Y [R, C, output_height, output_width]
//   sampling_ratio > 0: that many samples per bin along each axis; 0: ceil(roi size / bins)
//   coordinate_transformation_mode (16): half_pixel (default) shifts rois by -0.5 pixel;
//   output_half_pixel (RoiAlign-10's behaviour) does not, and widens rois under 1 pixel to 1
//
// Computed as ONNX Runtime's CPU kernel does, in the data type: samples outside [-1, H] x
// [-1, W] read 0, others clamp into the image; max mode takes the largest weighted corner term
// w_k * X[p_k] of the samples, not the largest interpolated value (ORT issue 6146).

#include <algorithm>
#include <cctype>
#include <cmath>

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

// ---- RoiAlign ----

enum class RoiPool { kAvg, kMax };

struct RoiAlignAttrs {
  int64_t out_h = 1, out_w = 1, sampling_ratio = 0;
  float spatial_scale = 1;
  RoiPool mode = RoiPool::kAvg;
  bool half_pixel = true;
};

StatusOr<RoiAlignAttrs> roiAlignAttrs(const KernelBuildContext& b) {
  NNC_RETURN_IF_ERROR(requireOpVersion("RoiAlign", b.opset, 10));
  RoiAlignAttrs a;
  a.out_h = b.node.intAttr("output_height", 1);
  a.out_w = b.node.intAttr("output_width", 1);
  a.sampling_ratio = b.node.intAttr("sampling_ratio", 0);
  a.spatial_scale = b.node.floatAttr("spatial_scale", 1.f);
  std::string mode = b.node.stringAttr("mode", "avg");
  for (char& ch : mode) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  // RoiAlign-10 has no coordinate_transformation_mode: it behaves as output_half_pixel.
  const bool v16 = b.opset <= 0 || b.opset >= 16;
  const std::string ctm =
      b.node.stringAttr("coordinate_transformation_mode", v16 ? "half_pixel" : "output_half_pixel");
  if (a.out_h < 1 || a.out_w < 1 || a.sampling_ratio < 0)
    return invalidModel("RoiAlign: needs output_height, output_width >= 1, sampling_ratio >= 0");
  if (mode != "avg" && mode != "max")
    return invalidModel("RoiAlign: mode must be avg or max, got '" + mode + "'");
  if (ctm != "half_pixel" && ctm != "output_half_pixel")
    return invalidModel("RoiAlign: unknown coordinate_transformation_mode '" + ctm + "'");
  a.mode = mode == "avg" ? RoiPool::kAvg : RoiPool::kMax;
  a.half_pixel = ctm == "half_pixel";
  return a;
}

// Bounds the samples of one roi (ORT would try to allocate them all and fail).
constexpr double kMaxRoiSamples = double(int64_t{1} << 26);

// Where one roi's samples fall, in ORT's arithmetic.
template <typename T>
struct RoiGeometry {
  T start_h, start_w, bin_h, bin_w;
  int64_t grid_h, grid_w;  // samples per bin along each axis (0: none)
};

// sampling_ratio, or when 0 ceil(roi / bins): negative for a reversed half_pixel roi.
template <typename T>
StatusOr<int64_t> gridSize(T roi_len, int64_t bins, int64_t sampling_ratio) {
  const double g =
      sampling_ratio > 0 ? double(sampling_ratio) : double(std::ceil(roi_len / T(bins)));
  if (!(std::abs(g) <= kMaxRoiSamples))  // also NaN
    return invalidArgument("needs too many sampling points");
  return static_cast<int64_t>(g);
}

template <typename T>
StatusOr<RoiGeometry<T>> roiGeometry(const T* roi, const RoiAlignAttrs& a) {
  const T offset = a.half_pixel ? T(0.5) : T(0);
  RoiGeometry<T> g;
  g.start_w = roi[0] * a.spatial_scale - offset;
  g.start_h = roi[1] * a.spatial_scale - offset;
  T roi_w = roi[2] * a.spatial_scale - offset - g.start_w;
  T roi_h = roi[3] * a.spatial_scale - offset - g.start_h;
  if (!a.half_pixel) roi_w = std::max(roi_w, T(1)), roi_h = std::max(roi_h, T(1));
  g.bin_h = roi_h / static_cast<T>(a.out_h);
  g.bin_w = roi_w / static_cast<T>(a.out_w);
  NNC_ASSIGN_OR_RETURN(g.grid_h, gridSize(roi_h, a.out_h, a.sampling_ratio));
  NNC_ASSIGN_OR_RETURN(g.grid_w, gridSize(roi_w, a.out_w, a.sampling_ratio));
  // Reversed along both axes, ORT takes no samples; along one, it fails (a negative count).
  if (g.grid_h * g.grid_w < 0)
    return invalidArgument("reversed along one axis only (no sampling grid)");
  g.grid_h = std::max<int64_t>(g.grid_h, 0), g.grid_w = std::max<int64_t>(g.grid_w, 0);
  if (double(g.grid_h * g.grid_w) * double(a.out_h) * double(a.out_w) > kMaxRoiSamples)
    return invalidArgument("needs more than 2^26 sampling points");
  return g;
}

// One bilinear sample: four offsets into a channel plane and their weights (all 0 outside).
template <typename T>
struct RoiSample {
  int64_t pos[4] = {0, 0, 0, 0};
  T w[4] = {0, 0, 0, 0};
};

// One axis of a sample inside [-1, len]: ORT clamps it into [0, len - 1].
template <typename T>
void clampTap(T& v, int64_t len, int64_t& lo, int64_t& hi) {
  if (v <= 0) v = 0;
  lo = static_cast<int64_t>(v);
  if (lo >= len - 1) {
    lo = hi = len - 1;
    v = static_cast<T>(lo);
  } else {
    hi = lo + 1;
  }
}

template <typename T>
RoiSample<T> bilinearSample(T y, T x, int64_t height, int64_t width) {
  RoiSample<T> s;
  // Written so that a NaN coordinate reads nothing too.
  if (!(y >= -1.0 && y <= height && x >= -1.0 && x <= width)) return s;
  int64_t y0, y1, x0, x1;
  clampTap(y, height, y0, y1);
  clampTap(x, width, x0, x1);
  const T ly = y - y0, lx = x - x0, hy = T(1) - ly, hx = T(1) - lx;
  s.pos[0] = y0 * width + x0, s.pos[1] = y0 * width + x1;
  s.pos[2] = y1 * width + x0, s.pos[3] = y1 * width + x1;
  s.w[0] = hy * hx, s.w[1] = hy * lx, s.w[2] = ly * hx, s.w[3] = ly * lx;
  return s;
}

// The samples of every bin of one roi, bin-major (shared by all channels).
template <typename T>
void roiSamples(const RoiGeometry<T>& g, const RoiAlignAttrs& a, int64_t height, int64_t width,
                std::vector<RoiSample<T>>& out) {
  out.clear();
  for (int64_t ph = 0; ph < a.out_h; ++ph)
    for (int64_t pw = 0; pw < a.out_w; ++pw)
      for (int64_t iy = 0; iy < g.grid_h; ++iy) {
        const T y = g.start_h + ph * g.bin_h +
                    static_cast<T>(iy + .5f) * g.bin_h / static_cast<T>(g.grid_h);
        for (int64_t ix = 0; ix < g.grid_w; ++ix) {
          const T x = g.start_w + pw * g.bin_w +
                      static_cast<T>(ix + .5f) * g.bin_w / static_cast<T>(g.grid_w);
          out.push_back(bilinearSample(y, x, height, width));
        }
      }
}

// As ORT, a bin without samples averages to 0.
template <typename T>
T avgBin(const T* p, const RoiSample<T>* s, int64_t n) {
  T sum = 0;
  for (int64_t i = 0; i < n; ++i, ++s)
    sum += s->w[0] * p[s->pos[0]] + s->w[1] * p[s->pos[1]] + s->w[2] * p[s->pos[2]] +
           s->w[3] * p[s->pos[3]];
  return sum / static_cast<T>(std::max<int64_t>(n, 1));
}

template <typename T>
T maxBin(const T* p, const RoiSample<T>* s, int64_t n) {
  T best = 0;
  for (int64_t i = 0; i < n; ++i, ++s) {
    const T v = std::max(
        std::max(std::max(s->w[0] * p[s->pos[0]], s->w[1] * p[s->pos[1]]), s->w[2] * p[s->pos[2]]),
        s->w[3] * p[s->pos[3]]);
    best = i == 0 ? v : std::max(best, v);
  }
  return best;
}

// Geometry of every roi, checked before the parallel loop (which cannot fail).
template <typename T>
StatusOr<std::vector<RoiGeometry<T>>> roiGeometries(const Tensor& rois,
                                                    const std::vector<int64_t>& batch,
                                                    int64_t batches, const RoiAlignAttrs& a) {
  const T* rd = rois.data<T>().data();
  std::vector<RoiGeometry<T>> geo;
  for (size_t r = 0; r < batch.size(); ++r) {
    if (batch[r] < 0 || batch[r] >= batches)
      return invalidArgument("RoiAlign: batch_indices[" + std::to_string(r) +
                             "] = " + std::to_string(batch[r]) + " is out of range for " +
                             std::to_string(batches) + " images");
    auto g = roiGeometry(rd + 4 * r, a);
    if (!g.isOk()) return g.status().withContext("RoiAlign: roi " + std::to_string(r));
    geo.push_back(g.value());
  }
  return geo;
}

template <typename T>
Status roiAlignT(const Tensor& x, const Tensor& rois, const std::vector<int64_t>& batch,
                 const RoiAlignAttrs& a, Tensor& y, const RunContext& ctx) {
  const int64_t num_rois = rois.dim(0), channels = x.dim(1), height = x.dim(2), width = x.dim(3);
  NNC_ASSIGN_OR_RETURN(const auto geo, roiGeometries<T>(rois, batch, x.dim(0), a));
  if (num_rois > 0 && channels > 0 && height * width == 0)
    return shapeMismatch("RoiAlign: X " + shapeToString(x.shape()) + " has no pixels to sample");
  y = ctx.newTensor(x.dtype(), {num_rois, channels, a.out_h, a.out_w});
  const int64_t bins = a.out_h * a.out_w;
  const T* xd = x.data<T>().data();
  T* yd = y.mutableData<T>().data();
  // Per roi (its samples serve every channel); the first roi stands for the cost of all.
  const int64_t work = channels * bins * 4 * (geo.empty() ? 1 : geo[0].grid_h * geo[0].grid_w + 1);
  parallelFor(num_rois, ctx, work, [&](int64_t r) {
    std::vector<RoiSample<T>> samples;
    roiSamples(geo[r], a, height, width, samples);
    const int64_t n = geo[r].grid_h * geo[r].grid_w;
    for (int64_t c = 0; c < channels; ++c) {
      const T* p = xd + (batch[r] * channels + c) * height * width;
      T* out = yd + (r * channels + c) * bins;
      for (int64_t b = 0; b < bins; ++b)
        out[b] = a.mode == RoiPool::kAvg ? avgBin(p, samples.data() + b * n, n)
                                         : maxBin(p, samples.data() + b * n, n);
    }
  });
  return Status::ok();
}

Status roiAlign(std::span<const Tensor* const> in, const RoiAlignAttrs& a, Tensor& out,
                const RunContext& ctx) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "RoiAlign X"));
  NNC_RETURN_IF_ERROR(requireInput(in, 1, "RoiAlign rois"));
  NNC_RETURN_IF_ERROR(requireInput(in, 2, "RoiAlign batch_indices"));
  const Tensor &x = *in[0], &rois = *in[1], &idx = *in[2];
  if (x.dtype() != DType::kFloat32 && x.dtype() != DType::kFloat64)
    return unsupported(std::string("RoiAlign on ") + dtypeName(x.dtype()) + " X");
  NNC_RETURN_IF_ERROR(requireDType(rois, x.dtype(), "RoiAlign rois"));
  NNC_RETURN_IF_ERROR(requireDType(idx, DType::kInt64, "RoiAlign batch_indices"));
  if (x.rank() != 4 || rois.rank() != 2 || rois.dim(1) != 4 || idx.rank() != 1 ||
      idx.dim(0) != rois.dim(0))
    return shapeMismatch("RoiAlign: X " + shapeToString(x.shape()) + ", rois " +
                         shapeToString(rois.shape()) + " and batch_indices " +
                         shapeToString(idx.shape()) + " must be [N, C, H, W], [R, 4] and [R]");
  const auto bd = idx.data<int64_t>();
  const std::vector<int64_t> batch(bd.begin(), bd.end());
  if (x.dtype() == DType::kFloat64) return roiAlignT<double>(x, rois, batch, a, out, ctx);
  return roiAlignT<float>(x, rois, batch, a, out, ctx);
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
  r.addFunction("RoiAlign", [](const KernelBuildContext& b) -> StatusOr<KernelFn> {
    NNC_ASSIGN_OR_RETURN(const RoiAlignAttrs a, roiAlignAttrs(b));
    return KernelFn([a](std::span<const Tensor* const> in, std::span<Tensor> out,
                        const RunContext& ctx) { return roiAlign(in, a, out[0], ctx); });
  });
}

}  // namespace nnc::exec
