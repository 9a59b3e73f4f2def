// Resize (opset 10: scales input, asymmetric; 11+: roi / scales / sizes inputs and the full
// attribute set; 18: axes, keep_aspect_ratio_policy) and Upsample (opset 7 attribute scales,
// 9 input scales), modes nearest / linear / cubic on any number of axes.
//
// Per resized axis, every output index gets taps (input index, weight) computed once from the
// coordinate transformation (1 tap for nearest, 2 linear, 4 cubic). Nearest is a single gather
// over all axes copying raw elements (any dtype); linear / cubic are separable, one pass per
// resized axis over a [outer, in, inner] view, on float32 (float16 via widening).
// tf_crop_and_resize marks out-of-range indexes, whose outputs take extrapolation_value.

#include <algorithm>
#include <cmath>
#include <cstring>

#include "elementwise_util.h"
#include "kernel_util.h"
#include "kernels.h"

namespace nnc::exec {
namespace {

using In = std::span<const Tensor* const>;
using Out = std::span<Tensor>;

enum class Mode { kNearest, kLinear, kCubic };
enum class Coord {
  kHalfPixel,
  kHalfPixelSymmetric,
  kPytorchHalfPixel,
  kAlignCorners,
  kAsymmetric,
  kTfHalfPixelForNn,
  kTfCropAndResize
};
enum class Nearest { kRoundPreferFloor, kRoundPreferCeil, kFloor, kCeil, kSimple };

struct ResizeAttrs {
  Mode mode = Mode::kNearest;
  Coord coord = Coord::kHalfPixel;
  Nearest nearest = Nearest::kRoundPreferFloor;
  double cubic_a = -0.75;
  bool exclude_outside = false;
  double extrapolation = 0;
  bool antialias = false;
  std::vector<int64_t> axes;       // opset 18: the axes scales / sizes / roi refer to
  std::string aspect = "stretch";  // keep_aspect_ratio_policy
};

// One axis: for each output index, `taps` (input index, weight) pairs, or "extrapolate".
struct AxisPlan {
  int64_t in_len = 0, out_len = 0;
  int taps = 1;
  std::vector<int64_t> idx;
  std::vector<float> w;
  std::vector<uint8_t> extrap;
};

std::array<double, 4> cubicCoeffs(double r, double a) {
  const double s = 1 - r;
  return {((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a,
          ((a + 2) * r - (a + 3)) * r * r + 1, ((a + 2) * s - (a + 3)) * s * s + 1,
          ((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a};
}

// The input coordinate output index x maps to (coordinate_transformation_mode); `length_resized`
// is in_len * scale (float) as the spec defines it for the transformations. Sets `outside` for
// tf_crop_and_resize coordinates outside the input.
double sourceCoordinate(Coord coord, int64_t x, int64_t in_len, int64_t out_len, double scale,
                        double length_resized, double roi_start, double roi_end, bool& outside) {
  const double xr = static_cast<double>(x);
  const double last = static_cast<double>(in_len - 1);
  switch (coord) {
    case Coord::kHalfPixel:
      return (xr + 0.5) / scale - 0.5;
    case Coord::kHalfPixelSymmetric: {
      const double adj = static_cast<double>(out_len) / length_resized;
      const double center = static_cast<double>(in_len) / 2;
      return center * (1 - adj) + (xr + 0.5) / scale - 0.5;
    }
    case Coord::kPytorchHalfPixel:
      return length_resized > 1 ? (xr + 0.5) / scale - 0.5 : 0;
    case Coord::kAlignCorners:
      return length_resized == 1 ? 0 : xr * last / (length_resized - 1);
    case Coord::kAsymmetric:
      return xr / scale;
    case Coord::kTfHalfPixelForNn:
      return (xr + 0.5) / scale;
    case Coord::kTfCropAndResize: {
      const double xo = length_resized > 1 ? roi_start * last + xr * (roi_end - roi_start) * last /
                                                                    (length_resized - 1)
                                           : 0.5 * (roi_start + roi_end) * last;
      outside = xo < 0 || xo > last;
      return xo;
    }
  }
  return 0;
}

// The input index nearest_mode picks for coordinate xo (not yet clamped).
int64_t nearestIndex(Nearest mode, double xo, double scale) {
  const double fl = std::floor(xo);
  const double frac = xo - fl;
  const auto base = static_cast<int64_t>(fl);
  switch (mode) {
    case Nearest::kRoundPreferFloor:
      return frac <= 0.5 ? base : base + 1;
    case Nearest::kRoundPreferCeil:
      return frac < 0.5 ? base : base + 1;
    case Nearest::kFloor:
      return base;
    case Nearest::kCeil:
      return static_cast<int64_t>(std::ceil(xo));
    case Nearest::kSimple:
      return scale < 1 ? static_cast<int64_t>(std::ceil(xo)) : static_cast<int64_t>(xo);
  }
  return base;
}

// Cubic taps at base-1 .. base+2; exclude_outside zeroes the taps outside and renormalises.
void cubicTaps(const ResizeAttrs& a, double xo, int64_t in_len, int64_t* ti, float* tw) {
  const double fl = std::floor(xo);
  const auto base = static_cast<int64_t>(fl);
  const auto c = cubicCoeffs(xo - fl, a.cubic_a);
  double sum = 0;
  double cw[4];
  for (int t = 0; t < 4; ++t) {
    const int64_t i = base - 1 + t;
    cw[t] = (a.exclude_outside && (i < 0 || i >= in_len)) ? 0 : c[t];
    sum += cw[t];
    ti[t] = std::clamp<int64_t>(i, 0, in_len - 1);
  }
  for (int t = 0; t < 4; ++t)
    tw[t] = static_cast<float>(a.exclude_outside && sum != 0 ? cw[t] / sum : cw[t]);
}

AxisPlan planAxis(const ResizeAttrs& a, int64_t in_len, int64_t out_len, double scale,
                  double length_resized, double roi_start, double roi_end) {
  AxisPlan p;
  p.in_len = in_len;
  p.out_len = out_len;
  p.taps = a.mode == Mode::kNearest ? 1 : a.mode == Mode::kLinear ? 2 : 4;
  p.idx.resize(out_len * p.taps);
  p.w.resize(out_len * p.taps);
  p.extrap.assign(out_len, 0);
  auto clampIdx = [in_len](int64_t i) { return std::clamp<int64_t>(i, 0, in_len - 1); };
  for (int64_t x = 0; x < out_len; ++x) {
    bool outside = false;
    const double xo = sourceCoordinate(a.coord, x, in_len, out_len, scale, length_resized,
                                       roi_start, roi_end, outside);
    p.extrap[x] = outside ? 1 : 0;
    int64_t* ti = &p.idx[x * p.taps];
    float* tw = &p.w[x * p.taps];
    if (a.mode == Mode::kNearest) {
      ti[0] = clampIdx(nearestIndex(a.nearest, xo, scale));
      tw[0] = 1;
    } else if (a.mode == Mode::kLinear) {
      const double fl = std::floor(xo);
      const auto base = static_cast<int64_t>(fl);
      ti[0] = clampIdx(base);
      ti[1] = clampIdx(base + 1);
      tw[0] = static_cast<float>(1 - (xo - fl));
      tw[1] = static_cast<float>(xo - fl);
    } else {
      cubicTaps(a, xo, in_len, ti, tw);
    }
  }
  return p;
}

// Nearest: one gather pass over all axes (raw element copies, any dtype). Each output row
// (all axes but the last) reads one input row through the per-axis index tables; a row whose
// source equals the previous row's (upsampling) is copied from the output instead.
template <typename U>
void nearestGather(const Shape& in_shape, const Shape& out_shape,
                   const std::vector<const AxisPlan*>& plans, const U* src, U* dst, U extrap,
                   const RunContext& ctx) {
  const int rank = static_cast<int>(in_shape.size());
  std::vector<int64_t> in_strides(rank);
  int64_t st = 1;
  for (int d = rank; d-- > 0;) {
    in_strides[d] = st;
    st *= in_shape[d];
  }
  const int64_t out_w = rank ? out_shape[rank - 1] : 1;
  int64_t rows = 1;
  for (int d = 0; d + 1 < rank; ++d) rows *= out_shape[d];
  // Last-axis table (identity when the axis is not resized).
  std::vector<int64_t> last_idx(out_w);
  std::vector<uint8_t> last_ex(out_w, 0);
  bool any_last_ex = false;
  for (int64_t j = 0; j < out_w; ++j) {
    const AxisPlan* p = rank ? plans[rank - 1] : nullptr;
    last_idx[j] = p ? p->idx[j] : j;
    last_ex[j] = p ? p->extrap[j] : 0;
    any_last_ex = any_last_ex || last_ex[j];
  }
  constexpr int64_t kRowsPerItem = 64;
  const int64_t items = (rows + kRowsPerItem - 1) / kRowsPerItem;
  parallelFor(items, ctx, kRowsPerItem * out_w, [&](int64_t item) {
    const int64_t r0 = item * kRowsPerItem, r1 = std::min(rows, r0 + kRowsPerItem);
    int64_t prev_base = -1;
    bool prev_ex = false;
    for (int64_t r = r0; r < r1; ++r) {
      int64_t rem = r, base = 0;
      bool ex = false;
      for (int d = rank - 1; d-- > 0;) {
        const int64_t j = rem % out_shape[d];
        rem /= out_shape[d];
        const AxisPlan* p = plans[d];
        base += (p ? p->idx[j] : j) * in_strides[d];
        ex = ex || (p && p->extrap[j]);
      }
      U* out = dst + r * out_w;
      if (r > r0 && base == prev_base && ex == prev_ex) {
        std::memcpy(out, out - out_w, out_w * sizeof(U));
        continue;
      }
      prev_base = base;
      prev_ex = ex;
      if (ex) {
        std::fill(out, out + out_w, extrap);
        continue;
      }
      const U* in = src + base;
      if (any_last_ex) {
        for (int64_t j = 0; j < out_w; ++j) out[j] = last_ex[j] ? extrap : in[last_idx[j]];
      } else {
        for (int64_t j = 0; j < out_w; ++j) out[j] = in[last_idx[j]];
      }
    }
  });
}

// Linear / cubic pass on float32 over a [outer, in, inner] view.
template <int kTaps>
void weightedPass(const AxisPlan& p, int64_t outer, int64_t inner, const float* src, float* dst,
                  float extrap, const RunContext& ctx) {
  bool any_ex = false;
  for (uint8_t e : p.extrap) any_ex = any_ex || e;
  if (inner == 1) {
    parallelFor(outer, ctx, p.out_len * kTaps, [&](int64_t o) {
      const float* s = src + o * p.in_len;
      float* d = dst + o * p.out_len;
      for (int64_t j = 0; j < p.out_len; ++j) {
        const int64_t* ti = &p.idx[j * kTaps];
        const float* tw = &p.w[j * kTaps];
        float v = 0;
        for (int t = 0; t < kTaps; ++t) v += tw[t] * s[ti[t]];
        d[j] = v;
      }
      if (any_ex)
        for (int64_t j = 0; j < p.out_len; ++j)
          if (p.extrap[j]) d[j] = extrap;
    });
    return;
  }
  parallelFor(outer * p.out_len, ctx, inner * kTaps, [&](int64_t item) {
    const int64_t o = item / p.out_len, j = item % p.out_len;
    float* d = dst + item * inner;
    if (p.extrap[j]) {
      std::fill(d, d + inner, extrap);
      return;
    }
    const int64_t* ti = &p.idx[j * kTaps];
    const float* tw = &p.w[j * kTaps];
    const float* s0 = src + (o * p.in_len + ti[0]) * inner;
    const float w0 = tw[0];
    for (int64_t i = 0; i < inner; ++i) d[i] = w0 * s0[i];
    for (int t = 1; t < kTaps; ++t) {
      const float* sp = src + (o * p.in_len + ti[t]) * inner;
      const float wt = tw[t];
      for (int64_t i = 0; i < inner; ++i) d[i] += wt * sp[i];
    }
  });
}

// extrapolation_value as the bits of one element of `dtype`.
uint64_t extrapolationBits(DType dtype, double v) {
  Tensor e(dtype, {1});
  switch (dtype) {
    case DType::kFloat32:
      e.mutableData<float>()[0] = static_cast<float>(v);
      break;
    case DType::kFloat64:
      e.mutableData<double>()[0] = v;
      break;
    case DType::kInt8:
      e.mutableData<int8_t>()[0] = static_cast<int8_t>(v);
      break;
    case DType::kUInt8:
      e.mutableData<uint8_t>()[0] = static_cast<uint8_t>(v);
      break;
    case DType::kInt32:
      e.mutableData<int32_t>()[0] = static_cast<int32_t>(v);
      break;
    case DType::kInt64:
      e.mutableData<int64_t>()[0] = static_cast<int64_t>(v);
      break;
    default:
      break;
  }
  uint64_t bits = 0;
  std::memcpy(&bits, e.bytes().data(), dtypeBits(dtype) / 8);
  return bits;
}

template <typename U>
void nearestGatherAs(const Tensor& x, Tensor& y, const std::vector<const AxisPlan*>& plans,
                     uint64_t extrap_bits, const RunContext& ctx) {
  nearestGather(x.shape(), y.shape(), plans, reinterpret_cast<const U*>(x.bytes().data()),
                reinterpret_cast<U*>(y.mutableBytes().data()), static_cast<U>(extrap_bits), ctx);
}

Tensor nearestResize(const Tensor& x, const Shape& out_shape,
                     const std::vector<std::unique_ptr<AxisPlan>>& plans, uint64_t extrap_bits,
                     const RunContext& ctx) {
  Tensor y(x.dtype(), out_shape);
  if (y.numel() == 0) return y;
  std::vector<const AxisPlan*> p(x.rank());
  for (int d = 0; d < x.rank(); ++d) p[d] = plans[d].get();
  switch (dtypeBits(x.dtype())) {
    case 8:
      nearestGatherAs<uint8_t>(x, y, p, extrap_bits, ctx);
      break;
    case 16:
      nearestGatherAs<uint16_t>(x, y, p, extrap_bits, ctx);
      break;
    case 32:
      nearestGatherAs<uint32_t>(x, y, p, extrap_bits, ctx);
      break;
    default:
      nearestGatherAs<uint64_t>(x, y, p, extrap_bits, ctx);
      break;
  }
  return y;
}

// Linear / cubic: separable float32 passes, the most shrinking axes first (less work for the
// later passes).
StatusOr<Tensor> separableResize(const Tensor& x, const Shape& out_shape,
                                 const std::vector<std::unique_ptr<AxisPlan>>& plans, float extrap,
                                 const RunContext& ctx) {
  const int rank = x.rank();
  std::vector<int> order;
  for (int d = 0; d < rank; ++d)
    if (plans[d]) order.push_back(d);
  std::stable_sort(order.begin(), order.end(),
                   [&](int l, int r) { return out_shape[l] * x.dim(r) < out_shape[r] * x.dim(l); });
  Tensor cur = x;
  Shape shape = x.shape();
  for (int d : order) {
    const AxisPlan& p = *plans[d];
    int64_t outer = 1, inner = 1;
    for (int k = 0; k < d; ++k) outer *= shape[k];
    for (int k = d + 1; k < rank; ++k) inner *= shape[k];
    Shape next_shape = shape;
    next_shape[d] = p.out_len;
    Tensor next(x.dtype(), next_shape);
    if (next.numel() > 0 && cur.numel() > 0) {
      const float* src = cur.data<float>().data();
      float* dst = next.mutableData<float>().data();
      if (p.taps == 2)
        weightedPass<2>(p, outer, inner, src, dst, extrap, ctx);
      else
        weightedPass<4>(p, outer, inner, src, dst, extrap, ctx);
    }
    cur = std::move(next);
    shape = std::move(next_shape);
  }
  if (shape != out_shape) return internalError("Resize produced the wrong shape");
  return cur;
}

// Resizes x to out_shape with one plan per axis (nullptr: axis unchanged).
StatusOr<Tensor> resizeTensor(const ResizeAttrs& a, const Tensor& x, const Shape& out_shape,
                              const std::vector<std::unique_ptr<AxisPlan>>& plans,
                              const RunContext& ctx) {
  if (a.mode != Mode::kNearest && x.dtype() != DType::kFloat32)
    return unsupported(std::string("Resize linear/cubic on ") + dtypeName(x.dtype()));
  const int bits = dtypeBits(x.dtype());
  if (bits != 8 && bits != 16 && bits != 32 && bits != 64)
    return unsupported(std::string("Resize on ") + dtypeName(x.dtype()));
  const uint64_t extrap_bits = extrapolationBits(x.dtype(), a.extrapolation);
  if (a.mode == Mode::kNearest) return nearestResize(x, out_shape, plans, extrap_bits, ctx);
  float extrap;
  std::memcpy(&extrap, &extrap_bits, 4);
  return separableResize(x, out_shape, plans, extrap, ctx);
}

// Output shape, scale and resized length per axis, from sizes or scales.
struct ResizeGeometry {
  Shape out_shape;
  std::vector<double> scale, length;
};

// sizes with keep_aspect_ratio_policy not_larger / not_smaller: one scale for all `axes`.
Status applyAspectSizes(const ResizeAttrs& a, const Tensor& x, const std::vector<int>& axes,
                        const std::vector<int64_t>& sz, ResizeGeometry& g) {
  const bool not_larger = a.aspect == "not_larger";
  if (!not_larger && a.aspect != "not_smaller")
    return invalidModel("Resize: bad keep_aspect_ratio_policy '" + a.aspect + "'");
  double s = not_larger ? 1e300 : 0;
  for (size_t i = 0; i < axes.size(); ++i) {
    const double r = static_cast<double>(sz[i]) / static_cast<double>(x.dim(axes[i]));
    s = not_larger ? std::min(s, r) : std::max(s, r);
  }
  for (int d : axes) {
    g.out_shape[d] = static_cast<int64_t>(std::round(s * static_cast<double>(x.dim(d))));
    g.scale[d] = s;
    g.length[d] = s * static_cast<double>(x.dim(d));
  }
  return Status::ok();
}

StatusOr<ResizeGeometry> resizeGeometry(const ResizeAttrs& a, const Tensor& x,
                                        const std::vector<int>& axes, const Tensor* scales,
                                        const Tensor* sizes) {
  const int rank = x.rank();
  const size_t na = axes.size();
  ResizeGeometry g{x.shape(), std::vector<double>(rank, 1.0), std::vector<double>(rank)};
  for (int d = 0; d < rank; ++d) g.length[d] = static_cast<double>(x.dim(d));
  if (sizes && sizes->numel() > 0) {
    const auto sz = sizes->toInt64Vector();
    if (sz.size() != na) return invalidModel("Resize: sizes has the wrong length");
    if (a.aspect != "stretch") {
      NNC_RETURN_IF_ERROR(applyAspectSizes(a, x, axes, sz, g));
      return g;
    }
    for (size_t i = 0; i < na; ++i) {
      const int d = axes[i];
      g.out_shape[d] = sz[i];
      g.scale[d] = x.dim(d) == 0 ? 1.0 : static_cast<double>(sz[i]) / static_cast<double>(x.dim(d));
      g.length[d] = static_cast<double>(sz[i]);
    }
    return g;
  }
  if (!scales || scales->numel() == 0) return invalidModel("Resize needs scales or sizes");
  if (static_cast<size_t>(scales->numel()) != na)
    return invalidModel("Resize: scales has the wrong length");
  for (size_t i = 0; i < na; ++i) {
    const int d = axes[i];
    const double s = static_cast<double>(static_cast<float>(scales->elementAsDouble(i)));
    if (!(s > 0)) return invalidModel("Resize: scales must be positive");
    g.scale[d] = s;
    g.length[d] = s * static_cast<double>(x.dim(d));
    g.out_shape[d] = static_cast<int64_t>(std::floor(g.length[d]));
  }
  return g;
}

// Computes output shape and per-axis plans, then resizes.
Status runResize(const ResizeAttrs& a, const Tensor& x, const Tensor* roi, const Tensor* scales,
                 const Tensor* sizes, Out out, const RunContext& ctx) {
  const int rank = x.rank();
  // Axes the scales / sizes / roi refer to.
  std::vector<int> axes;
  for (int d = 0; a.axes.empty() && d < rank; ++d) axes.push_back(d);
  for (int64_t ax : a.axes) {
    NNC_ASSIGN_OR_RETURN(int d, normaliseAxis(ax, rank));
    axes.push_back(d);
  }
  const size_t na = axes.size();
  NNC_ASSIGN_OR_RETURN(ResizeGeometry g, resizeGeometry(a, x, axes, scales, sizes));
  std::vector<double> roi_start(rank, 0.0), roi_end(rank, 1.0);
  if (a.coord == Coord::kTfCropAndResize && roi && roi->numel() > 0) {
    if (static_cast<size_t>(roi->numel()) != 2 * na)
      return invalidModel("Resize: roi has the wrong length");
    for (size_t i = 0; i < na; ++i) {
      roi_start[axes[i]] = roi->elementAsDouble(i);
      roi_end[axes[i]] = roi->elementAsDouble(i + na);
    }
  }
  if (a.antialias && a.mode != Mode::kNearest)
    for (int d = 0; d < rank; ++d)
      if (g.scale[d] < 1) return unsupported("Resize with antialias when downsampling");
  std::vector<std::unique_ptr<AxisPlan>> plans(rank);
  for (int d = 0; d < rank; ++d) {
    const bool identity = g.out_shape[d] == x.dim(d) && g.scale[d] == 1.0 &&
                          a.coord != Coord::kTfCropAndResize && a.coord != Coord::kTfHalfPixelForNn;
    if (identity) continue;
    if (g.out_shape[d] < 0) return invalidModel("Resize: negative output size");
    if (x.dim(d) == 0 && g.out_shape[d] > 0) return invalidModel("Resize: empty input axis");
    plans[d] = std::make_unique<AxisPlan>(
        planAxis(a, x.dim(d), g.out_shape[d], g.scale[d], g.length[d], roi_start[d], roi_end[d]));
  }
  NNC_ASSIGN_OR_RETURN(out[0], resizeTensor(a, x, g.out_shape, plans, ctx));
  return Status::ok();
}

StatusOr<Mode> parseMode(const std::string& m) {
  if (m == "nearest") return Mode::kNearest;
  if (m == "linear" || m == "bilinear") return Mode::kLinear;
  if (m == "cubic" || m == "bicubic") return Mode::kCubic;
  return invalidModel("Resize: unknown mode '" + m + "'");
}

StatusOr<KernelFn> makeResize(const KernelBuildContext& b) {
  const Node& n = b.node;
  ResizeAttrs a;
  NNC_ASSIGN_OR_RETURN(a.mode, parseMode(n.stringAttr("mode", "nearest")));
  const bool v10 = b.opset < 11;
  if (v10) {
    a.coord = Coord::kAsymmetric;
    a.nearest = Nearest::kSimple;
  } else {
    const std::string c = n.stringAttr("coordinate_transformation_mode", "half_pixel");
    if (c == "half_pixel")
      a.coord = Coord::kHalfPixel;
    else if (c == "half_pixel_symmetric")
      a.coord = Coord::kHalfPixelSymmetric;
    else if (c == "pytorch_half_pixel")
      a.coord = Coord::kPytorchHalfPixel;
    else if (c == "align_corners")
      a.coord = Coord::kAlignCorners;
    else if (c == "asymmetric")
      a.coord = Coord::kAsymmetric;
    else if (c == "tf_half_pixel_for_nn")
      a.coord = Coord::kTfHalfPixelForNn;
    else if (c == "tf_crop_and_resize")
      a.coord = Coord::kTfCropAndResize;
    else
      return invalidModel("Resize: unknown coordinate_transformation_mode '" + c + "'");
    const std::string nm = n.stringAttr("nearest_mode", "round_prefer_floor");
    if (nm == "round_prefer_floor")
      a.nearest = Nearest::kRoundPreferFloor;
    else if (nm == "round_prefer_ceil")
      a.nearest = Nearest::kRoundPreferCeil;
    else if (nm == "floor")
      a.nearest = Nearest::kFloor;
    else if (nm == "ceil")
      a.nearest = Nearest::kCeil;
    else
      return invalidModel("Resize: unknown nearest_mode '" + nm + "'");
    a.cubic_a = n.floatAttr("cubic_coeff_a", -0.75f);
    a.exclude_outside = n.intAttr("exclude_outside", 0) != 0;
    a.extrapolation = n.floatAttr("extrapolation_value", 0.f);
    a.antialias = n.intAttr("antialias", 0) != 0;
    a.axes = n.intsAttr("axes");
    a.aspect = n.stringAttr("keep_aspect_ratio_policy", "stretch");
  }
  return withHalfAsFloat([a, v10](In in, Out out, const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "X"));
    auto opt = [&](size_t i) -> const Tensor* { return i < in.size() ? in[i] : nullptr; };
    if (v10) return runResize(a, *in[0], nullptr, opt(1), nullptr, out, ctx);
    return runResize(a, *in[0], opt(1), opt(2), opt(3), out, ctx);
  });
}

// Upsample: nearest (floor of the asymmetric coordinate) or linear.
StatusOr<KernelFn> makeUpsample(const KernelBuildContext& b) {
  ResizeAttrs a;
  NNC_ASSIGN_OR_RETURN(a.mode, parseMode(b.node.stringAttr("mode", "nearest")));
  if (a.mode == Mode::kCubic) return unsupported("Upsample cubic mode");
  a.coord = Coord::kAsymmetric;
  a.nearest = Nearest::kSimple;
  const bool attr_form = b.opset < 9;
  std::vector<float> scales_attr;
  if (attr_form) {
    const Attribute* s = b.node.findAttribute("scales");
    if (!s) return invalidModel("Upsample: missing scales attribute");
    scales_attr = s->floats;
  }
  return withHalfAsFloat([a, attr_form, scales_attr](In in, Out out,
                                                     const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "X"));
    if (attr_form) {
      Tensor s = Tensor::fromVector<float>({static_cast<int64_t>(scales_attr.size())}, scales_attr);
      return runResize(a, *in[0], nullptr, &s, nullptr, out, ctx);
    }
    NNC_RETURN_IF_ERROR(requireInput(in, 1, "scales"));
    return runResize(a, *in[0], nullptr, in[1], nullptr, out, ctx);
  });
}

}  // namespace

void registerResizeKernels(KernelRegistry& r) {
  r.addFunction("Resize", makeResize);
  r.addFunction("Upsample", makeUpsample);
}

}  // namespace nnc::exec
