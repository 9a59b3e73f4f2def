// GridSample (16, 20, 22) on 4-D inputs: Y[n, c, h, w] is X[n, c] sampled at the point
// grid[n, h, w] = (x, y), given normalised to [-1, 1] over the width and height of X.
//
//   X [N, C, H_in, W_in], grid [N, H_out, W_out, 2]  ->  Y [N, C, H_out, W_out]
//   align_corners=1: px = (x + 1) / 2 * (W_in - 1)    (-1 and 1 are the corner pixel centres)
//   align_corners=0: px = ((x + 1) * W_in - 1) / 2    (-1 and 1 are the outer pixel edges)
//   (py likewise with H_in)
//   mode nearest: the pixel at (nearbyint(py), nearbyint(px)), ties to even
//   mode bilinear (16) / linear (20): the 2x2 pixels around the point
//   mode bicubic (16) / cubic (20): the 4x4 pixels around it, Keys kernel with A = -0.75
//   padding_mode, applied to each tap's integer index: zeros (0 outside the image), border
//   (clamp into the image), reflection (mirror about the borders: pixel centres 0 and W_in - 1
//   with align_corners=1, outer edges -0.5 and W_in - 0.5 with 0; then clamp)
//
// Computed as ONNX Runtime's CPU kernel (1.17+) does. PyTorch, and the ONNX reference, first clamp
// or reflect the sample point itself; the results agree on the ONNX backend tests but can differ
// for reflection with align_corners=0 far outside the image and for bicubic near the border.
// Opset 20 allows N-D inputs; only 4-D (2 spatial axes) is implemented here.

#include <algorithm>
#include <cmath>
#include <string>

#include "kernel_util.h"
#include "kernels.h"

namespace nnc::exec {
namespace {

using In = std::span<const Tensor* const>;
using Out = std::span<Tensor>;

enum class Mode { kNearest, kLinear, kCubic };
enum class Padding { kZeros, kBorder, kReflection };

struct GridSampleAttrs {
  Mode mode = Mode::kLinear;
  Padding padding = Padding::kZeros;
  bool align_corners = false;
};

// Opset 20 renamed bilinear / bicubic to linear / cubic; each opset accepts only its own names.
StatusOr<Mode> modeOf(const Node& node, int64_t opset) {
  const bool v20 = opset >= 20;
  const std::string m = node.stringAttr("mode", v20 ? "linear" : "bilinear");
  if (m == "nearest") return Mode::kNearest;
  if (m == (v20 ? "linear" : "bilinear")) return Mode::kLinear;
  if (m == (v20 ? "cubic" : "bicubic")) return Mode::kCubic;
  return invalidModel("GridSample: mode '" + m + "' is not defined at opset " +
                      std::to_string(opset));
}

StatusOr<Padding> paddingOf(const Node& node) {
  const std::string p = node.stringAttr("padding_mode", "zeros");
  if (p == "zeros") return Padding::kZeros;
  if (p == "border") return Padding::kBorder;
  if (p == "reflection") return Padding::kReflection;
  return invalidModel("GridSample: unknown padding_mode '" + p + "'");
}

// Pixel coordinate of a normalised one (ORT's GsDenormalize, same float operations).
template <typename T>
T denormalize(T n, int64_t len, bool align_corners) {
  if (align_corners) return static_cast<T>((n + 1) / 2.f * static_cast<T>(len - 1));
  return static_cast<T>(((n + 1) * static_cast<T>(len) - 1) / 2.f);
}

// An integral coordinate as an index. Far-out (or NaN) points only ever read padding, so they
// are pinned to +-2^40, which keeps the tap arithmetic and the int conversion defined.
template <typename T>
int64_t toIndex(T integral) {
  constexpr T kLimit = static_cast<T>(int64_t{1} << 40);
  if (!(integral > -kLimit)) return -(int64_t{1} << 40);
  if (integral > kLimit) return int64_t{1} << 40;
  return static_cast<int64_t>(integral);
}

// ORT's GsReflect: mirrors x about the nearer border until it lies within [lo, hi].
template <typename T>
T reflect(T x, T lo, T hi) {
  const T range = hi - lo;
  if (!(range > 0)) return lo;  // a single pixel with align_corners=1: nothing to mirror across
  if (x < lo) {
    const T dx = lo - x;
    const auto n = static_cast<int64_t>(dx / range);
    const T r = dx - static_cast<T>(n) * range;
    return n % 2 == 0 ? lo + r : hi - r;
  }
  if (x > hi) {
    const T dx = x - hi;
    const auto n = static_cast<int64_t>(dx / range);
    const T r = dx - static_cast<T>(n) * range;
    return n % 2 == 0 ? hi - r : lo + r;
  }
  return x;
}

// Keys cubic convolution weights of the taps at -1, 0, 1, 2 for a point t in [0, 1) past tap 0.
template <typename T>
void cubicCoeffs(T t, T c[4]) {
  constexpr T a = static_cast<T>(-0.75);
  t = std::abs(t);
  c[0] = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a;
  c[1] = ((a + 2) * t - (a + 3)) * t * t + 1;
  c[2] = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1;
  c[3] = ((a * (2 - t) - 5 * a) * (2 - t) + 8 * a) * (2 - t) - 4 * a;
}

// Samples one [h, w] image plane at grid points; the same for every plane of a run.
template <typename T>
struct Sampler {
  GridSampleAttrs attrs;
  int64_t h = 0, w = 0;
  T x_min = 0, x_max = 0, y_min = 0, y_max = 0;  // reflection borders

  Sampler(const GridSampleAttrs& a, int64_t height, int64_t width) : attrs(a), h(height), w(width) {
    const T edge = a.align_corners ? T(0) : static_cast<T>(0.5);
    x_min = -edge;
    y_min = -edge;
    x_max = static_cast<T>(width - 1) + edge;
    y_max = static_cast<T>(height - 1) + edge;
  }

  // Reflected index; the clamp only matters for rounding far outside the image.
  static int64_t reflectIndex(int64_t i, T lo, T hi, int64_t len) {
    const T r = reflect(static_cast<T>(i), lo, hi);
    return std::clamp<int64_t>(static_cast<int64_t>(r), 0, len - 1);
  }

  // The value of tap (r, c), which may lie outside the image (ORT's PixelAtGrid).
  T pixel(const T* image, int64_t r, int64_t c) const {
    switch (attrs.padding) {
      case Padding::kZeros:
        return r >= 0 && r < h && c >= 0 && c < w ? image[r * w + c] : T(0);
      case Padding::kBorder:
        r = std::clamp<int64_t>(r, 0, h - 1);
        c = std::clamp<int64_t>(c, 0, w - 1);
        break;
      case Padding::kReflection:
        r = reflectIndex(r, y_min, y_max, h);
        c = reflectIndex(c, x_min, x_max, w);
        break;
    }
    return image[r * w + c];
  }

  T nearest(const T* image, T x, T y) const {
    return pixel(image, toIndex(std::nearbyint(y)), toIndex(std::nearbyint(x)));
  }

  T bilinear(const T* image, T x, T y) const {
    const int64_t x1 = toIndex(std::floor(x)), y1 = toIndex(std::floor(y));
    const int64_t x2 = x1 + 1, y2 = y1 + 1;
    const T p11 = pixel(image, y1, x1), p12 = pixel(image, y1, x2);
    const T p21 = pixel(image, y2, x1), p22 = pixel(image, y2, x2);
    const T dx2 = static_cast<T>(x2) - x, dx1 = x - static_cast<T>(x1);
    const T dy2 = static_cast<T>(y2) - y, dy1 = y - static_cast<T>(y1);
    return dy2 * (dx2 * p11 + dx1 * p12) + dy1 * (dx2 * p21 + dx1 * p22);
  }

  // Rows first, then the column of row results (ORT's GsBicubicInterpolate).
  T bicubic(const T* image, T x, T y) const {
    const int64_t x0 = toIndex(std::floor(x)) - 1, y0 = toIndex(std::floor(y)) - 1;
    T cx[4], cy[4], v[4];
    cubicCoeffs(x - static_cast<T>(x0) - 1, cx);
    cubicCoeffs(y - static_cast<T>(y0) - 1, cy);
    for (int64_t i = 0; i < 4; ++i) {
      T p[4];
      for (int64_t j = 0; j < 4; ++j) p[j] = pixel(image, y0 + i, x0 + j);
      v[i] = cx[0] * p[0] + cx[1] * p[1] + cx[2] * p[2] + cx[3] * p[3];
    }
    return cy[0] * v[0] + cy[1] * v[1] + cy[2] * v[2] + cy[3] * v[3];
  }

  // The output value for normalised grid point (gx, gy).
  T sample(const T* image, T gx, T gy) const {
    const T x = denormalize(gx, w, attrs.align_corners);
    const T y = denormalize(gy, h, attrs.align_corners);
    switch (attrs.mode) {
      case Mode::kNearest:
        return nearest(image, x, y);
      case Mode::kLinear:
        return bilinear(image, x, y);
      case Mode::kCubic:
        return bicubic(image, x, y);
    }
    return T(0);
  }
};

int64_t tapsPerPoint(Mode mode) {
  return mode == Mode::kNearest ? 1 : mode == Mode::kLinear ? 4 : 16;
}

// Fills y [N, C, H_out, W_out]; one parallel item per output row of a plane.
template <typename T>
void sampleAll(const GridSampleAttrs& a, const Tensor& x, const Tensor& grid, Tensor& y,
               const RunContext& ctx) {
  const int64_t planes = x.dim(0) * x.dim(1), channels = x.dim(1);
  const int64_t h_in = x.dim(2), w_in = x.dim(3), h_out = grid.dim(1), w_out = grid.dim(2);
  const Sampler<T> sampler(a, h_in, w_in);
  const T* src = x.data<T>().data();
  const T* points = grid.data<T>().data();
  T* dst = y.mutableData<T>().data();
  parallelFor(planes * h_out, ctx, w_out * tapsPerPoint(a.mode), [&](int64_t row) {
    const int64_t plane = row / h_out, oy = row % h_out;
    const T* image = src + plane * h_in * w_in;
    const T* g = points + ((plane / channels) * h_out + oy) * w_out * 2;
    T* out = dst + row * w_out;
    for (int64_t ox = 0; ox < w_out; ++ox)
      out[ox] = sampler.sample(image, g[2 * ox], g[2 * ox + 1]);
  });
}

Status checkGridSampleInputs(const Tensor& x, const Tensor& grid) {
  if (x.rank() < 3) return invalidModel("GridSample: X needs rank >= 3");
  if (x.rank() != 4) return unsupported("GridSample on " + std::to_string(x.rank()) + "-D inputs");
  if (grid.rank() != 4 || grid.dim(0) != x.dim(0) || grid.dim(3) != 2)
    return shapeMismatch("GridSample: grid " + shapeToString(grid.shape()) + " for X " +
                         shapeToString(x.shape()) + ", expected [N, H_out, W_out, 2]");
  const bool same_float =
      x.dtype() == grid.dtype() && (x.dtype() == DType::kFloat32 || x.dtype() == DType::kFloat64);
  if (!same_float)
    return unsupported(std::string("GridSample on X ") + dtypeName(x.dtype()) + ", grid " +
                       dtypeName(grid.dtype()) + " (float32 or float64, both the same)");
  return Status::ok();
}

Status runGridSample(const GridSampleAttrs& a, const Tensor& x, const Tensor& grid, Tensor& y,
                     const RunContext& ctx) {
  NNC_RETURN_IF_ERROR(checkGridSampleInputs(x, grid));
  const Shape out_shape{x.dim(0), x.dim(1), grid.dim(1), grid.dim(2)};
  if (x.dim(2) * x.dim(3) == 0 && shapeNumel(out_shape) > 0) {
    // Every tap of an empty image is outside it: only zeros padding has a value to give.
    if (a.padding != Padding::kZeros)
      return invalidModel("GridSample: border / reflection padding of an empty image");
    y = Tensor(x.dtype(), out_shape);
    return Status::ok();
  }
  y = ctx.newTensor(x.dtype(), out_shape);
  if (y.numel() == 0) return Status::ok();
  if (x.dtype() == DType::kFloat64)
    sampleAll<double>(a, x, grid, y, ctx);
  else
    sampleAll<float>(a, x, grid, y, ctx);
  return Status::ok();
}

StatusOr<KernelFn> makeGridSample(const KernelBuildContext& b) {
  GridSampleAttrs a;
  NNC_ASSIGN_OR_RETURN(a.mode, modeOf(b.node, b.opset));
  NNC_ASSIGN_OR_RETURN(a.padding, paddingOf(b.node));
  a.align_corners = b.node.intAttr("align_corners", 0) != 0;
  return KernelFn([a](In in, Out out, const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "X"));
    NNC_RETURN_IF_ERROR(requireInput(in, 1, "grid"));
    return runGridSample(a, *in[0], *in[1], out[0], ctx);
  });
}

}  // namespace

void registerGridSampleKernels(KernelRegistry& r) { r.addFunction("GridSample", makeGridSample); }

}  // namespace nnc::exec
