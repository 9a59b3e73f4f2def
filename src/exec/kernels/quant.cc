// Quantization kernels: QuantizeLinear / DequantizeLinear (per-tensor, per-axis, blocked; 8-,
// 16- and packed 4-bit integers), DynamicQuantizeLinear, and the integer compute ops
// ConvInteger / MatMulInteger (int32 outputs) and QLinearConv / QLinearMatMul (requantized).
//
// Integer results are exact. The products are computed by an Eigen float or double GEMM on
// operands with their zero points subtracted: every operand is then a small integer, and every
// partial sum of a dot product is bounded by max|a| * max_row L1(b). When that bound is at most
// 2^24 a float GEMM is exact whatever the summation order; otherwise a double GEMM is (up to
// 2^53, far past any real layer), and its result is wrapped to int32 as an int32 accumulator
// would. Requantization follows ONNX Runtime: multiplier = x_scale * w_scale / y_scale in float32,
// float(acc) * multiplier clamped to the output range, rounded half to even, plus zero point.

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "kernel_util.h"
#include "kernels.h"
#include "nncompress/ir/conv_geometry.h"
#include "quant_util.h"

namespace nnc::exec {
namespace {

using namespace quant;

template <typename T>
using MatrixRM = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using MapRM = Eigen::Map<MatrixRM<T>>;
template <typename T>
using ConstMapRM = Eigen::Map<const MatrixRM<T>>;

constexpr double kFloatExactLimit = 16777216.0;  // 2^24: every integer up to it is a float

// An exact integer held in T (float or double) as an int32 accumulator would hold it.
inline int32_t toInt32(float v) { return static_cast<int32_t>(v); }
inline int32_t toInt32(double v) { return static_cast<int32_t>(static_cast<int64_t>(v)); }

inline int32_t wrappingAdd(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
}

const Tensor* optionalInput(std::span<const Tensor* const> in, size_t i) {
  return i < in.size() ? in[i] : nullptr;
}

// Calls fn(ptr) with the typed data of a uint8 or int8 tensor.
template <typename Fn>
Status visitInt8(const Tensor& t, const char* what, Fn&& fn) {
  if (t.dtype() == DType::kUInt8) {
    fn(t.data<uint8_t>().data());
  } else if (t.dtype() == DType::kInt8) {
    fn(t.data<int8_t>().data());
  } else {
    return unsupported(std::string(what) + " must be uint8 or int8, got " + dtypeName(t.dtype()));
  }
  return Status::ok();
}

// A single (per-tensor) zero point; absent means 0.
StatusOr<int32_t> scalarZeroPoint(const Tensor* zp, const char* what) {
  if (!zp) return 0;
  if (zp->numel() != 1)
    return unsupported(std::string(what) + " must be a scalar (per-tensor), got shape " +
                       shapeToString(zp->shape()));
  std::vector<int32_t> v;
  NNC_RETURN_IF_ERROR(loadInts(*zp, v, what));
  return v[0];
}

StatusOr<float> scalarScale(const Tensor& s, const char* what) {
  if (s.numel() != 1)
    return unsupported(std::string(what) + " must be a scalar (per-tensor), got shape " +
                       shapeToString(s.shape()));
  std::vector<float> v;
  NNC_RETURN_IF_ERROR(loadFloats(s, v, what));
  return v[0];
}

// ---------------------------------------------------------------------------------------------
// QuantizeLinear / DequantizeLinear

// x viewed as [outer, dim, inner] around the quantization axis. Element (o, d, i) uses parameter
//   per-tensor: 0;   per-axis: d;   blocked: (o * pdim + d / block) * inner + i.
struct ParamLayout {
  enum Mode { kPerTensor, kPerAxis, kBlocked } mode = kPerTensor;
  int64_t outer = 1, dim = 1, inner = 1, pdim = 1, block = 1;
};

StatusOr<ParamLayout> paramLayout(const Shape& x, const Tensor& scale, const Tensor* zp,
                                  int64_t axis_attr, int64_t block_size, const std::string& op) {
  if (zp && zp->shape() != scale.shape() && !(zp->numel() == 1 && scale.numel() == 1))
    return invalidModel(op + ": zero point shape " + shapeToString(zp->shape()) +
                        " differs from scale shape " + shapeToString(scale.shape()));
  ParamLayout l;
  if (scale.numel() == 1) {
    l.inner = shapeNumel(x);
    return l;
  }
  const int rank = static_cast<int>(x.size());
  NNC_ASSIGN_OR_RETURN(int axis, normaliseAxis(axis_attr, rank));
  for (int i = 0; i < axis; ++i) l.outer *= x[i];
  l.dim = x[axis];
  for (int i = axis + 1; i < rank; ++i) l.inner *= x[i];
  if (block_size <= 0) {
    if (scale.rank() != 1 || scale.numel() != l.dim)
      return shapeMismatch(op + ": per-axis scale " + shapeToString(scale.shape()) +
                           " does not match axis " + std::to_string(axis) + " of input " +
                           shapeToString(x));
    l.mode = ParamLayout::kPerAxis;
    return l;
  }
  bool ok = scale.rank() == rank;
  for (int i = 0; ok && i < rank; ++i)
    if (i != axis && scale.dim(i) != x[i]) ok = false;
  if (ok) {
    l.pdim = scale.dim(axis);
    ok = l.pdim == (l.dim + block_size - 1) / block_size;
  }
  if (!ok)
    return shapeMismatch(op + ": blocked scale " + shapeToString(scale.shape()) +
                         " does not fit input " + shapeToString(x) + " with block_size " +
                         std::to_string(block_size) + " along axis " + std::to_string(axis));
  l.mode = ParamLayout::kBlocked;
  l.block = block_size;
  return l;
}

// Calls fn(begin, count, param_begin, param_step) over contiguous runs covering x once; element
// begin + k uses parameter param_begin + k * param_step. Runs go to threads.
template <typename Fn>
void forEachRun(const ParamLayout& l, const RunContext& ctx, Fn&& fn) {
  if (l.mode == ParamLayout::kPerTensor) {
    constexpr int64_t kChunk = 1 << 14;
    const int64_t n = l.inner, chunks = (n + kChunk - 1) / kChunk;
    parallelFor(chunks, ctx, kChunk, [&](int64_t c) {
      const int64_t b = c * kChunk;
      fn(b, std::min(kChunk, n - b), int64_t{0}, int64_t{0});
    });
    return;
  }
  parallelFor(l.outer * l.dim, ctx, l.inner, [&](int64_t r) {
    const int64_t o = r / l.dim, d = r % l.dim;
    if (l.mode == ParamLayout::kPerAxis)
      fn(r * l.inner, l.inner, d, int64_t{0});
    else
      fn(r * l.inner, l.inner, (o * l.pdim + d / l.block) * l.inner, int64_t{1});
  });
}

template <typename Out>
void quantizeInto(const float* x, const ParamLayout& l, const std::vector<float>& scale,
                  const std::vector<int32_t>& zp, int32_t lo, int32_t hi, Out* y,
                  const RunContext& ctx) {
  forEachRun(l, ctx, [&](int64_t b, int64_t n, int64_t p, int64_t step) {
    if (step == 0) {
      const float s = scale[p];
      const int32_t z = zp[p];
      for (int64_t k = 0; k < n; ++k)
        y[b + k] = static_cast<Out>(saturateRound(x[b + k] / s, z, lo, hi));
    } else {
      for (int64_t k = 0; k < n; ++k)
        y[b + k] = static_cast<Out>(saturateRound(x[b + k] / scale[p + k], zp[p + k], lo, hi));
    }
  });
}

StatusOr<KernelFn> makeQuantizeLinear(const KernelBuildContext& bc) {
  const int64_t axis = bc.node.intAttr("axis", 1);
  const int64_t block_size = bc.node.intAttr("block_size", 0);
  const int64_t output_dtype = bc.node.intAttr("output_dtype", 0);
  return KernelFn([=](std::span<const Tensor* const> in, std::span<Tensor> out,
                      const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "x"));
    NNC_RETURN_IF_ERROR(requireInput(in, 1, "y_scale"));
    const Tensor& x = *in[0];
    const Tensor& s = *in[1];
    const Tensor* zp = optionalInput(in, 2);
    DType qt = zp ? zp->dtype() : DType::kUInt8;
    if (output_dtype != 0) {
      const auto t = dtypeFromOnnx(static_cast<int32_t>(output_dtype));
      if (!t)
        return unsupported("QuantizeLinear: unknown output_dtype " + std::to_string(output_dtype));
      if (zp && *t != zp->dtype())
        return invalidModel(std::string("QuantizeLinear: output_dtype ") + dtypeName(*t) +
                            " differs from the zero point type " + dtypeName(zp->dtype()));
      qt = *t;
    }
    if (!isQuantIntType(qt))
      return unsupported(std::string("QuantizeLinear to ") + dtypeName(qt) +
                         " is not supported (integer outputs only; no float8)");
    NNC_ASSIGN_OR_RETURN(ParamLayout l,
                         paramLayout(x.shape(), s, zp, axis, block_size, "QuantizeLinear"));
    std::vector<float> scale;
    NNC_RETURN_IF_ERROR(loadFloats(s, scale, "QuantizeLinear y_scale"));
    std::vector<int32_t> zps;
    if (zp) {
      NNC_RETURN_IF_ERROR(loadInts(*zp, zps, "QuantizeLinear y_zero_point"));
    } else {
      zps.assign(scale.size(), 0);
    }
    std::vector<float> xf;
    const float* xd;
    if (x.dtype() == DType::kFloat32) {
      xd = x.data<float>().data();
    } else if (x.dtype() == DType::kInt32) {
      const auto xi = x.data<int32_t>();
      xf.assign(xi.begin(), xi.end());
      xd = xf.data();
    } else {
      NNC_RETURN_IF_ERROR(loadFloats(x, xf, "QuantizeLinear x"));
      xd = xf.data();
    }
    int32_t lo, hi;
    quantRange(qt, lo, hi);
    Tensor y(qt, x.shape());
    switch (qt) {
      case DType::kUInt8:
        quantizeInto(xd, l, scale, zps, lo, hi, y.mutableData<uint8_t>().data(), ctx);
        break;
      case DType::kInt8:
        quantizeInto(xd, l, scale, zps, lo, hi, y.mutableData<int8_t>().data(), ctx);
        break;
      case DType::kUInt16:
        quantizeInto(xd, l, scale, zps, lo, hi, y.mutableData<uint16_t>().data(), ctx);
        break;
      case DType::kInt16:
        quantizeInto(xd, l, scale, zps, lo, hi, y.mutableData<int16_t>().data(), ctx);
        break;
      default: {  // 4-bit: quantize unpacked, then pack (neighbouring runs share bytes)
        std::vector<int8_t> tmp(static_cast<size_t>(x.numel()));
        quantizeInto(xd, l, scale, zps, lo, hi, tmp.data(), ctx);
        std::string& bytes = y.mutableBytes();
        for (int64_t i = 0; i < x.numel(); ++i) setPackedNibble(bytes, i, tmp[i]);
      }
    }
    out[0] = std::move(y);
    return Status::ok();
  });
}

template <typename In>
void dequantizeFrom(const In* x, const ParamLayout& l, const std::vector<float>& scale,
                    const std::vector<int32_t>& zp, float* y, const RunContext& ctx) {
  forEachRun(l, ctx, [&](int64_t b, int64_t n, int64_t p, int64_t step) {
    if (step == 0) {
      const float s = scale[p];
      const int64_t z = zp[p];
      for (int64_t k = 0; k < n; ++k)
        y[b + k] = static_cast<float>(static_cast<int64_t>(x[b + k]) - z) * s;
    } else {
      for (int64_t k = 0; k < n; ++k)
        y[b + k] = static_cast<float>(static_cast<int64_t>(x[b + k]) - zp[p + k]) * scale[p + k];
    }
  });
}

StatusOr<KernelFn> makeDequantizeLinear(const KernelBuildContext& bc) {
  const int64_t axis = bc.node.intAttr("axis", 1);
  const int64_t block_size = bc.node.intAttr("block_size", 0);
  const int64_t output_dtype = bc.node.intAttr("output_dtype", 0);
  return KernelFn([=](std::span<const Tensor* const> in, std::span<Tensor> out,
                      const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "x"));
    NNC_RETURN_IF_ERROR(requireInput(in, 1, "x_scale"));
    const Tensor& x = *in[0];
    const Tensor& s = *in[1];
    const Tensor* zp = optionalInput(in, 2);
    if (!isLoadableInt(x.dtype()))
      return unsupported(std::string("DequantizeLinear from ") + dtypeName(x.dtype()) +
                         " is not supported (integer inputs only; no float8)");
    if (zp && zp->dtype() != x.dtype())
      return invalidModel(std::string("DequantizeLinear: zero point type ") +
                          dtypeName(zp->dtype()) + " differs from input type " +
                          dtypeName(x.dtype()));
    DType yt = s.dtype();
    if (output_dtype != 0) {
      const auto t = dtypeFromOnnx(static_cast<int32_t>(output_dtype));
      if (!t)
        return unsupported("DequantizeLinear: unknown output_dtype " +
                           std::to_string(output_dtype));
      yt = *t;
    }
    if (!isLoadableFloat(yt))
      return unsupported(std::string("DequantizeLinear to ") + dtypeName(yt) + " is not supported");
    NNC_ASSIGN_OR_RETURN(ParamLayout l,
                         paramLayout(x.shape(), s, zp, axis, block_size, "DequantizeLinear"));
    std::vector<float> scale;
    NNC_RETURN_IF_ERROR(loadFloats(s, scale, "DequantizeLinear x_scale"));
    std::vector<int32_t> zps;
    if (zp) {
      NNC_RETURN_IF_ERROR(loadInts(*zp, zps, "DequantizeLinear x_zero_point"));
    } else {
      zps.assign(scale.size(), 0);
    }
    Tensor y(DType::kFloat32, x.shape());
    float* yd = y.mutableData<float>().data();
    switch (x.dtype()) {
      case DType::kUInt8:
        dequantizeFrom(x.data<uint8_t>().data(), l, scale, zps, yd, ctx);
        break;
      case DType::kInt8:
        dequantizeFrom(x.data<int8_t>().data(), l, scale, zps, yd, ctx);
        break;
      case DType::kUInt16:
        dequantizeFrom(x.data<uint16_t>().data(), l, scale, zps, yd, ctx);
        break;
      case DType::kInt16:
        dequantizeFrom(x.data<int16_t>().data(), l, scale, zps, yd, ctx);
        break;
      case DType::kInt32:
        dequantizeFrom(x.data<int32_t>().data(), l, scale, zps, yd, ctx);
        break;
      default: {  // packed 4-bit
        std::vector<int32_t> xi;
        NNC_RETURN_IF_ERROR(loadInts(x, xi, "DequantizeLinear x"));
        dequantizeFrom(xi.data(), l, scale, zps, yd, ctx);
      }
    }
    out[0] = convertFloats(std::move(y), yt);
    return Status::ok();
  });
}

// DynamicQuantizeLinear: uint8 with scale and zero point from the data range widened to hold 0
// (as ONNX Runtime: an all-zero input gets scale 1 rather than 0).
Status dynamicQuantizeLinear(std::span<const Tensor* const> in, std::span<Tensor> out,
                             const RunContext& ctx) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "x"));
  std::vector<float> xf;
  const Tensor& x = *in[0];
  const float* xd;
  if (x.dtype() == DType::kFloat32) {
    xd = x.data<float>().data();
  } else {
    NNC_RETURN_IF_ERROR(loadFloats(x, xf, "DynamicQuantizeLinear x"));
    xd = xf.data();
  }
  const int64_t n = x.numel();
  float mn = 0.f, mx = 0.f;
  for (int64_t i = 0; i < n; ++i) {
    mn = xd[i] < mn ? xd[i] : mn;
    mx = xd[i] > mx ? xd[i] : mx;
  }
  const float scale = mx == mn ? 1.f : (mx - mn) / 255.f;
  const int32_t zp = saturateRound(0.f - mn / scale, 0, 0, 255);
  Tensor y(DType::kUInt8, x.shape());
  uint8_t* yd = y.mutableData<uint8_t>().data();
  constexpr int64_t kChunk = 1 << 14;
  parallelFor((n + kChunk - 1) / kChunk, ctx, kChunk, [&](int64_t c) {
    const int64_t e = std::min(n, (c + 1) * kChunk);
    for (int64_t i = c * kChunk; i < e; ++i)
      yd[i] = static_cast<uint8_t>(saturateRound(xd[i] / scale, zp, 0, 255));
  });
  out[0] = std::move(y);
  if (out.size() > 1) out[1] = Tensor::fromVector<float>({}, {scale});
  if (out.size() > 2) out[2] = Tensor::fromVector<uint8_t>({}, {static_cast<uint8_t>(zp)});
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// Integer convolution (ConvInteger, QLinearConv)

using QConvAttrs = ConvWindow;

// 2-D geometry of one convolution call; 1-D convolutions are 2-D with height 1.
struct QConvGeometry {
  int64_t n = 0, c = 0, m = 0, groups = 1, cg = 0, mg = 0;
  int64_t ih = 1, iw = 1, kh = 1, kw = 1, oh = 1, ow = 1;
  int64_t sh = 1, sw = 1, dh = 1, dw = 1, pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  bool one_d = false;
  Shape outShape() const { return one_d ? Shape{n, m, ow} : Shape{n, m, oh, ow}; }
};

StatusOr<QConvGeometry> qconvGeometry(const QConvAttrs& a, const Shape& x, const Shape& w,
                                      const char* op) {
  if (x.size() != w.size() || x.size() < 3)
    return shapeMismatch(std::string(op) + ": input " + shapeToString(x) + " and weight " +
                         shapeToString(w) + " ranks do not fit");
  if (x.size() > 4)
    return unsupported(std::string(op) + ": only 1-D and 2-D convolutions are supported (input " +
                       shapeToString(x) + ")");
  QConvGeometry g;
  g.one_d = x.size() == 3;
  const int64_t rank = g.one_d ? 1 : 2;
  g.n = x[0];
  g.c = x[1];
  g.m = w[0];
  g.groups = a.group;
  if (g.groups <= 0 || g.c % g.groups || g.m % g.groups || w[1] != g.c / g.groups)
    return shapeMismatch(std::string(op) + ": weight " + shapeToString(w) + " does not fit input " +
                         shapeToString(x) + " with group " + std::to_string(g.groups));
  g.cg = g.c / g.groups;
  g.mg = g.m / g.groups;
  g.ih = g.one_d ? 1 : x[2];
  g.iw = x.back();
  g.kh = g.one_d ? 1 : w[2];
  g.kw = w.back();
  if (!a.kernel_shape.empty() &&
      (static_cast<int64_t>(a.kernel_shape.size()) != rank || a.kernel_shape.back() != g.kw ||
       (!g.one_d && a.kernel_shape[0] != g.kh)))
    return shapeMismatch(std::string(op) + ": kernel_shape does not match the weight " +
                         shapeToString(w));
  g.sh = g.one_d ? 1 : a.stride(0);
  g.sw = a.stride(rank - 1);
  g.dh = g.one_d ? 1 : a.dilation(0);
  g.dw = a.dilation(rank - 1);
  if (!g.one_d) {
    NNC_ASSIGN_OR_RETURN(g.oh, convAxisPads(a, 0, g.ih, g.kh, rank, g.pad_top, g.pad_bottom));
  }
  NNC_ASSIGN_OR_RETURN(g.ow, convAxisPads(a, rank - 1, g.iw, g.kw, rank, g.pad_left, g.pad_right));
  return g;
}

// Weights [M, K] with their zero point subtracted (exact integers, stored as float), and the
// largest row L1 norm: with max|x - x_zp| it bounds every partial sum of the convolution.
struct PackedWeights {
  Shape shape;
  int64_t m = 0, k = 0;
  std::vector<float> values;
  double max_row_l1 = 0;
};

StatusOr<PackedWeights> packWeights(const Tensor& w, const Tensor* w_zp, const char* op) {
  PackedWeights p;
  p.shape = w.shape();
  if (w.rank() < 1) return shapeMismatch(std::string(op) + ": weight must not be a scalar");
  p.m = w.dim(0);
  p.k = p.m ? w.numel() / p.m : 0;
  std::vector<int32_t> zp(static_cast<size_t>(p.m), 0);
  if (w_zp) {
    std::vector<int32_t> z;
    NNC_RETURN_IF_ERROR(loadInts(*w_zp, z, "weight zero point"));
    if (w_zp->dtype() != w.dtype())
      return invalidModel(std::string(op) + ": weight zero point type differs from the weight's");
    if (z.size() == 1) {
      std::fill(zp.begin(), zp.end(), z[0]);
    } else if (w_zp->rank() == 1 && static_cast<int64_t>(z.size()) == p.m) {
      zp = z;
    } else {
      return shapeMismatch(std::string(op) + ": weight zero point " + shapeToString(w_zp->shape()) +
                           " is neither per-tensor nor per-channel");
    }
  }
  p.values.resize(static_cast<size_t>(w.numel()));
  NNC_RETURN_IF_ERROR(visitInt8(w, op, [&](auto* wd) {
    for (int64_t r = 0; r < p.m; ++r) {
      double l1 = 0;
      for (int64_t j = 0; j < p.k; ++j) {
        const int32_t v = static_cast<int32_t>(wd[r * p.k + j]) - zp[r];
        p.values[r * p.k + j] = static_cast<float>(v);
        l1 += std::abs(v);
      }
      p.max_row_l1 = std::max(p.max_row_l1, l1);
    }
  }));
  return p;
}

// (x - zp) of a uint8/int8 tensor as T, with max |x - zp|.
template <typename T>
Status shiftedCopy(const Tensor& x, int32_t zp, std::vector<T>& out, double& max_abs,
                   const char* what, const RunContext& ctx) {
  const int64_t n = x.numel();
  out.resize(static_cast<size_t>(n));
  return visitInt8(x, what, [&](auto* xd) {
    int32_t lo = std::numeric_limits<int32_t>::max(), hi = std::numeric_limits<int32_t>::min();
    for (int64_t i = 0; i < n; ++i) {
      lo = std::min<int32_t>(lo, xd[i]);
      hi = std::max<int32_t>(hi, xd[i]);
    }
    max_abs = n ? std::max(std::abs(double(hi) - zp), std::abs(double(lo) - zp)) : 0.0;
    constexpr int64_t kChunk = 1 << 14;
    parallelFor((n + kChunk - 1) / kChunk, ctx, kChunk, [&](int64_t c) {
      const int64_t e = std::min(n, (c + 1) * kChunk);
      for (int64_t i = c * kChunk; i < e; ++i)
        out[i] = static_cast<T>(static_cast<int32_t>(xd[i]) - zp);
    });
  });
}

// col[(c*kh + i)*kw + j, y*ow + x] = x[c, y*sh - pt + i*dh, x*sw - pl + j*dw] (0 outside).
template <typename T>
void im2col(const T* x, int64_t channels, const QConvGeometry& g, T* col) {
  const int64_t rows = channels * g.kh * g.kw, oh = g.oh, ow = g.ow;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t c = r / (g.kh * g.kw), i = (r / g.kw) % g.kh, j = r % g.kw;
    const T* xc = x + c * g.ih * g.iw;
    T* dst = col + r * oh * ow;
    for (int64_t y = 0; y < oh; ++y) {
      const int64_t sy = y * g.sh - g.pad_top + i * g.dh;
      T* row = dst + y * ow;
      if (sy < 0 || sy >= g.ih) {
        std::fill(row, row + ow, T(0));
        continue;
      }
      const T* src = xc + sy * g.iw;
      const int64_t off = j * g.dw - g.pad_left;
      if (g.sw == 1) {
        const int64_t lo = std::clamp<int64_t>(-off, 0, ow),
                      hi = std::clamp<int64_t>(g.iw - off, 0, ow);
        std::fill(row, row + lo, T(0));
        if (hi > lo) std::copy(src + lo + off, src + hi + off, row + lo);
        std::fill(row + std::max(lo, hi), row + ow, T(0));
      } else {
        for (int64_t xo = 0; xo < ow; ++xo) {
          const int64_t sx = xo * g.sw + off;
          row[xo] = (sx >= 0 && sx < g.iw) ? src[sx] : T(0);
        }
      }
    }
  }
}

// acc[n, m, p] = sum over the receptive field of (x - x_zp) * (w[m] - w_zp[m]), zero padding.
template <typename T>
void integerConvT(const std::vector<T>& xs, const PackedWeights& pw, const QConvGeometry& g,
                  const RunContext& ctx, int32_t* acc) {
  std::vector<T> wconv;
  const T* wd;
  if constexpr (std::is_same_v<T, float>) {
    wd = pw.values.data();
  } else {
    wconv.assign(pw.values.begin(), pw.values.end());
    wd = wconv.data();
  }
  const int64_t p = g.oh * g.ow, k = g.cg * g.kh * g.kw, in_plane = g.ih * g.iw;
  const T* xd = xs.data();
  if (g.groups == g.c && g.cg == 1) {
    // Depthwise: direct loops.
    const int64_t mult = g.mg;
    parallelFor(g.n * g.m, ctx, p * g.kh * g.kw, [&](int64_t item) {
      const int64_t s = item / g.m, oc = item % g.m, ic = oc / mult;
      const T* xc = xd + (s * g.c + ic) * in_plane;
      const T* wk = wd + oc * g.kh * g.kw;
      int32_t* yc = acc + item * p;
      for (int64_t yo = 0; yo < g.oh; ++yo) {
        for (int64_t xo = 0; xo < g.ow; ++xo) {
          T sum = 0;
          for (int64_t i = 0; i < g.kh; ++i) {
            const int64_t sy = yo * g.sh - g.pad_top + i * g.dh;
            if (sy < 0 || sy >= g.ih) continue;
            const T* row = xc + sy * g.iw;
            for (int64_t j = 0; j < g.kw; ++j) {
              const int64_t sx = xo * g.sw - g.pad_left + j * g.dw;
              if (sx >= 0 && sx < g.iw) sum += row[sx] * wk[i * g.kw + j];
            }
          }
          yc[yo * g.ow + xo] = toInt32(sum);
        }
      }
    });
    return;
  }
  const bool pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pad_top == 0 &&
                         g.pad_left == 0 && g.pad_bottom == 0 && g.pad_right == 0;
  const int64_t items = g.n * g.groups;
  const bool per_item_threads = ctx.num_threads > 1 && items >= ctx.num_threads;
  Eigen::setNbThreads(per_item_threads ? 1 : ctx.num_threads);
  auto work = [&](int64_t item) {
    const int64_t s = item / g.groups, gi = item % g.groups;
    const T* xg = xd + (s * g.c + gi * g.cg) * in_plane;
    std::vector<T> col;
    const T* colp = xg;
    if (!pointwise) {
      col.resize(static_cast<size_t>(k * p));
      im2col(xg, g.cg, g, col.data());
      colp = col.data();
    }
    MatrixRM<T> tile = ConstMapRM<T>(wd + gi * g.mg * k, g.mg, k) * ConstMapRM<T>(colp, k, p);
    int32_t* dst = acc + (s * g.m + gi * g.mg) * p;
    const T* src = tile.data();
    for (int64_t i = 0; i < g.mg * p; ++i) dst[i] = toInt32(src[i]);
  };
  if (per_item_threads) {
#pragma omp parallel for num_threads(ctx.num_threads) schedule(dynamic)
    for (int64_t item = 0; item < items; ++item) work(item);
  } else {
    for (int64_t item = 0; item < items; ++item) work(item);
  }
}

// Exact int32 convolution of a uint8/int8 input against packed weights.
Status integerConv(const Tensor& x, int32_t x_zp, const PackedWeights& pw, const QConvGeometry& g,
                   const RunContext& ctx, Tensor& acc) {
  acc = Tensor(DType::kInt32, g.outShape());
  int32_t* ad = acc.mutableData<int32_t>().data();
  std::vector<float> xf;
  double max_abs = 0;
  NNC_RETURN_IF_ERROR(shiftedCopy(x, x_zp, xf, max_abs, "convolution input", ctx));
  if (max_abs * pw.max_row_l1 <= kFloatExactLimit) {
    integerConvT(xf, pw, g, ctx, ad);
  } else {
    std::vector<double> xd(xf.begin(), xf.end());
    xf = {};
    integerConvT(xd, pw, g, ctx, ad);
  }
  return Status::ok();
}

class QConvKernel : public Kernel {
 public:
  // ConvInteger: x, w, x_zp?, w_zp?.  QLinearConv: x, x_scale, x_zp, w, w_scale, w_zp,
  // y_scale, y_zp, B?.
  QConvKernel(bool qlinear, QConvAttrs attrs, std::optional<PackedWeights> packed)
      : qlinear_(qlinear), attrs_(std::move(attrs)), packed_(std::move(packed)) {}

  static constexpr size_t wIndex(bool q) { return q ? 3 : 1; }
  static constexpr size_t kXZpIndex = 2;
  static constexpr size_t wZpIndex(bool q) { return q ? 5 : 3; }

  Status run(std::span<const Tensor* const> in, std::span<Tensor> out,
             const RunContext& ctx) override {
    const char* op = qlinear_ ? "QLinearConv" : "ConvInteger";
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "x"));
    NNC_RETURN_IF_ERROR(requireInput(in, wIndex(qlinear_), "w"));
    const Tensor& x = *in[0];
    const Tensor& w = *in[wIndex(qlinear_)];
    if (x.dtype() != DType::kUInt8 && x.dtype() != DType::kInt8)
      return unsupported(std::string(op) + " input must be uint8 or int8, got " +
                         dtypeName(x.dtype()));
    const Tensor* x_zp_t = optionalInput(in, kXZpIndex);
    if (x_zp_t && x_zp_t->dtype() != x.dtype())
      return invalidModel(std::string(op) + ": input zero point type differs from the input's");
    NNC_ASSIGN_OR_RETURN(int32_t x_zp, scalarZeroPoint(x_zp_t, "input zero point"));
    NNC_ASSIGN_OR_RETURN(QConvGeometry g, qconvGeometry(attrs_, x.shape(), w.shape(), op));
    std::optional<PackedWeights> local;
    const PackedWeights* pw = packed_ ? &*packed_ : nullptr;
    if (!pw || pw->shape != w.shape()) {
      NNC_ASSIGN_OR_RETURN(local, packWeights(w, optionalInput(in, wZpIndex(qlinear_)), op));
      pw = &*local;
    }
    Tensor acc;
    NNC_RETURN_IF_ERROR(integerConv(x, x_zp, *pw, g, ctx, acc));
    if (!qlinear_) {
      out[0] = std::move(acc);
      return Status::ok();
    }
    return requantize(in, g, std::move(acc), out, ctx);
  }

 private:
  Status requantize(std::span<const Tensor* const> in, const QConvGeometry& g, Tensor acc,
                    std::span<Tensor> out, const RunContext& ctx) {
    NNC_RETURN_IF_ERROR(requireInput(in, 1, "x_scale"));
    NNC_RETURN_IF_ERROR(requireInput(in, 4, "w_scale"));
    NNC_RETURN_IF_ERROR(requireInput(in, 6, "y_scale"));
    NNC_ASSIGN_OR_RETURN(float x_scale, scalarScale(*in[1], "QLinearConv x_scale"));
    NNC_ASSIGN_OR_RETURN(float y_scale, scalarScale(*in[6], "QLinearConv y_scale"));
    std::vector<float> w_scale;
    NNC_RETURN_IF_ERROR(loadFloats(*in[4], w_scale, "QLinearConv w_scale"));
    if (w_scale.size() != 1 && (in[4]->rank() != 1 || static_cast<int64_t>(w_scale.size()) != g.m))
      return shapeMismatch("QLinearConv w_scale " + shapeToString(in[4]->shape()) +
                           " is neither per-tensor nor per-output-channel");
    const Tensor* y_zp_t = optionalInput(in, 7);
    const DType yt = y_zp_t ? y_zp_t->dtype() : DType::kUInt8;
    if (yt != DType::kUInt8 && yt != DType::kInt8)
      return unsupported(std::string("QLinearConv output must be uint8 or int8, got ") +
                         dtypeName(yt));
    NNC_ASSIGN_OR_RETURN(int32_t y_zp, scalarZeroPoint(y_zp_t, "QLinearConv y_zero_point"));
    std::vector<int32_t> bias;
    if (const Tensor* b = optionalInput(in, 8)) {
      if (b->dtype() != DType::kInt32 || b->numel() != g.m)
        return shapeMismatch("QLinearConv bias must be int32[" + std::to_string(g.m) + "]");
      const auto bd = b->data<int32_t>();
      bias.assign(bd.begin(), bd.end());
    }
    std::vector<float> mult(static_cast<size_t>(g.m));
    for (int64_t m = 0; m < g.m; ++m)
      mult[m] = x_scale * w_scale[w_scale.size() == 1 ? 0 : m] / y_scale;
    int32_t lo, hi;
    quantRange(yt, lo, hi);
    Tensor y(yt, g.outShape());
    const int32_t* ad = acc.data<int32_t>().data();
    const int64_t p = g.oh * g.ow;
    auto emit = [&](auto* yd) {
      parallelFor(g.n * g.m, ctx, p, [&](int64_t item) {
        const int64_t m = item % g.m;
        const float f = mult[m];
        const int32_t b = bias.empty() ? 0 : bias[m];
        const int32_t* a = ad + item * p;
        auto* dst = yd + item * p;
        for (int64_t i = 0; i < p; ++i)
          dst[i] = static_cast<std::remove_reference_t<decltype(*dst)>>(
              saturateRound(static_cast<float>(wrappingAdd(a[i], b)) * f, y_zp, lo, hi));
      });
    };
    if (yt == DType::kUInt8)
      emit(y.mutableData<uint8_t>().data());
    else
      emit(y.mutableData<int8_t>().data());
    out[0] = std::move(y);
    return Status::ok();
  }

  bool qlinear_;
  QConvAttrs attrs_;
  std::optional<PackedWeights> packed_;
};

StatusOr<std::unique_ptr<Kernel>> makeQConv(const KernelBuildContext& bc, bool qlinear) {
  std::optional<PackedWeights> packed;
  const Value* w = bc.node.input(QConvKernel::wIndex(qlinear));
  const Value* w_zp = bc.node.input(QConvKernel::wZpIndex(qlinear));
  const Tensor* wc = w ? w->constantData() : nullptr;
  const Tensor* zc = w_zp ? w_zp->constantData() : nullptr;
  // Pre-pack constant weights (zero point subtracted) once; a failure here is reported at run.
  if (wc && (!w_zp || zc)) {
    auto p = packWeights(*wc, zc, qlinear ? "QLinearConv" : "ConvInteger");
    if (p.isOk()) packed = std::move(p).value();
  }
  return std::unique_ptr<Kernel>(
      new QConvKernel(qlinear, QConvAttrs::of(bc.node), std::move(packed)));
}

// ---------------------------------------------------------------------------------------------
// Integer matrix products (MatMulInteger, QLinearMatMul), numpy matmul semantics.

struct MatMulShapes {
  Shape as, bs;  // operands with 1-D promoted to 2-D
  Shape batch, out;
  std::vector<int64_t> a_strides, b_strides;  // per output batch axis, in matrices
  int64_t m = 0, k = 0, n = 0, batches = 1;
};

StatusOr<MatMulShapes> matmulShapes(const Shape& a, const Shape& b, const char* op) {
  if (a.empty() || b.empty())
    return shapeMismatch(std::string(op) + " operands must not be scalars");
  MatMulShapes s;
  s.as = a;
  s.bs = b;
  if (s.as.size() == 1) s.as.insert(s.as.begin(), 1);
  if (s.bs.size() == 1) s.bs.push_back(1);
  s.m = s.as[s.as.size() - 2];
  s.k = s.as.back();
  s.n = s.bs.back();
  if (s.k != s.bs[s.bs.size() - 2])
    return shapeMismatch(std::string(op) + " inner dimensions differ: " + shapeToString(a) +
                         " and " + shapeToString(b));
  const Shape a_batch(s.as.begin(), s.as.end() - 2), b_batch(s.bs.begin(), s.bs.end() - 2);
  NNC_ASSIGN_OR_RETURN(s.batch, broadcastShapes(a_batch, b_batch));
  s.a_strides = broadcastStrides(a_batch, s.batch);
  s.b_strides = broadcastStrides(b_batch, s.batch);
  s.batches = shapeNumel(s.batch);
  s.out = s.batch;
  if (a.size() > 1) s.out.push_back(s.m);
  if (b.size() > 1) s.out.push_back(s.n);
  return s;
}

// Offsets (in matrices) of operands A and B for output batch bi.
void batchOffsets(const MatMulShapes& s, int64_t bi, int64_t& ao, int64_t& bo) {
  ao = bo = 0;
  int64_t rem = bi;
  for (size_t d = s.batch.size(); d-- > 0;) {
    const int64_t idx = rem % s.batch[d];
    rem /= s.batch[d];
    ao += idx * s.a_strides[d];
    bo += idx * s.b_strides[d];
  }
}

// Per-tensor, per-row (of A: axis -2) or per-column (of B: axis -1) parameters expanded to one
// value per (operand matrix, row | column). Accepts a scalar, a 1-D vector of rows | columns, or a
// tensor shaped like the operand with the other matrix axis 1 (batch axes broadcast).
template <typename V>
StatusOr<std::vector<V>> expandMatrixParams(const std::vector<V>& vals, const Shape& pshape,
                                            const Shape& operand, bool per_row,
                                            const std::string& what) {
  const size_t r = operand.size();
  const int64_t count = per_row ? operand[r - 2] : operand[r - 1];
  const Shape obatch(operand.begin(), operand.end() - 2);
  const int64_t mats = shapeNumel(obatch);
  std::vector<V> out(static_cast<size_t>(mats * count));
  if (vals.size() == 1) {
    std::fill(out.begin(), out.end(), vals[0]);
    return out;
  }
  if (pshape.size() == 1 && pshape[0] == count) {
    for (int64_t i = 0; i < mats; ++i) std::copy(vals.begin(), vals.end(), out.begin() + i * count);
    return out;
  }
  if (pshape.size() >= 2 && pshape.size() <= r) {
    Shape ps(r - pshape.size(), 1);
    ps.insert(ps.end(), pshape.begin(), pshape.end());
    const bool fits =
        per_row ? (ps[r - 2] == count && ps[r - 1] == 1) : (ps[r - 2] == 1 && ps[r - 1] == count);
    const Shape pbatch(ps.begin(), ps.end() - 2);
    bool batch_ok = fits;
    for (size_t i = 0; batch_ok && i < pbatch.size(); ++i)
      batch_ok = pbatch[i] == 1 || pbatch[i] == obatch[i];
    if (batch_ok) {
      const auto strides = broadcastStrides(pbatch, obatch);
      for (int64_t mi = 0; mi < mats; ++mi) {
        int64_t off = 0, rem = mi;
        for (size_t d = obatch.size(); d-- > 0;) {
          off += (rem % obatch[d]) * strides[d];
          rem /= obatch[d];
        }
        std::copy(vals.begin() + off * count, vals.begin() + (off + 1) * count,
                  out.begin() + mi * count);
      }
      return out;
    }
  }
  return shapeMismatch(what + " " + shapeToString(pshape) + " is neither per-tensor nor per-" +
                       (per_row ? "row" : "column") + " for an operand of shape " +
                       shapeToString(operand));
}

// An operand with its (per-row or per-column) zero point subtracted, with max |value| and the
// largest L1 norm along K (of a row of A, or a column of B).
struct ShiftedOperand {
  std::vector<int32_t> values;
  double max_abs = 0, max_l1 = 0;
};

StatusOr<ShiftedOperand> shiftOperand(const Tensor& t, const Tensor* zp, const Shape& shape,
                                      bool is_a, const std::string& what) {
  if (t.dtype() != DType::kUInt8 && t.dtype() != DType::kInt8)
    return unsupported(what + " must be uint8 or int8, got " + dtypeName(t.dtype()));
  ShiftedOperand s;
  NNC_RETURN_IF_ERROR(loadInts(t, s.values, what.c_str()));
  const size_t r = shape.size();
  const int64_t rows = shape[r - 2], cols = shape[r - 1];
  const int64_t mats = shapeNumel(Shape(shape.begin(), shape.end() - 2));
  std::vector<int32_t> zps(static_cast<size_t>(mats * (is_a ? rows : cols)), 0);
  if (zp) {
    if (zp->dtype() != t.dtype())
      return invalidModel(what + " zero point type differs from the operand's");
    std::vector<int32_t> z;
    NNC_RETURN_IF_ERROR(loadInts(*zp, z, "zero point"));
    NNC_ASSIGN_OR_RETURN(zps,
                         expandMatrixParams(z, zp->shape(), shape, is_a, what + " zero point"));
  }
  std::vector<double> l1(static_cast<size_t>(is_a ? mats * rows : mats * cols), 0.0);
  for (int64_t mi = 0; mi < mats; ++mi)
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t idx = (mi * rows + i) * cols + j;
        const int32_t v = s.values[idx] - zps[is_a ? mi * rows + i : mi * cols + j];
        s.values[idx] = v;
        s.max_abs = std::max<double>(s.max_abs, std::abs(v));
        l1[is_a ? mi * rows + i : mi * cols + j] += std::abs(v);
      }
  for (double v : l1) s.max_l1 = std::max(s.max_l1, v);
  return s;
}

template <typename T>
void integerMatMulT(const ShiftedOperand& a, const ShiftedOperand& b, const MatMulShapes& s,
                    const RunContext& ctx, int32_t* acc) {
  const std::vector<T> at(a.values.begin(), a.values.end()), bt(b.values.begin(), b.values.end());
  const bool per_batch_threads = ctx.num_threads > 1 && s.batches >= ctx.num_threads;
  Eigen::setNbThreads(per_batch_threads ? 1 : ctx.num_threads);
  auto one = [&](int64_t bi) {
    int64_t ao, bo;
    batchOffsets(s, bi, ao, bo);
    MatrixRM<T> tile = ConstMapRM<T>(at.data() + ao * s.m * s.k, s.m, s.k) *
                       ConstMapRM<T>(bt.data() + bo * s.k * s.n, s.k, s.n);
    int32_t* dst = acc + bi * s.m * s.n;
    for (int64_t i = 0; i < s.m * s.n; ++i) dst[i] = toInt32(tile.data()[i]);
  };
  if (per_batch_threads) {
#pragma omp parallel for num_threads(ctx.num_threads)
    for (int64_t bi = 0; bi < s.batches; ++bi) one(bi);
  } else {
    for (int64_t bi = 0; bi < s.batches; ++bi) one(bi);
  }
}

// Exact int32 product of two shifted operands, shaped [batch..., M, N] (before 1-D squeeze).
void integerMatMul(const ShiftedOperand& a, const ShiftedOperand& b, const MatMulShapes& s,
                   const RunContext& ctx, int32_t* acc) {
  const double bound = std::min(a.max_abs * b.max_l1, b.max_abs * a.max_l1);
  if (bound <= kFloatExactLimit)
    integerMatMulT<float>(a, b, s, ctx, acc);
  else
    integerMatMulT<double>(a, b, s, ctx, acc);
}

Status matMulInteger(std::span<const Tensor* const> in, std::span<Tensor> out,
                     const RunContext& ctx) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "A"));
  NNC_RETURN_IF_ERROR(requireInput(in, 1, "B"));
  NNC_ASSIGN_OR_RETURN(MatMulShapes s,
                       matmulShapes(in[0]->shape(), in[1]->shape(), "MatMulInteger"));
  NNC_ASSIGN_OR_RETURN(ShiftedOperand a,
                       shiftOperand(*in[0], optionalInput(in, 2), s.as, true, "MatMulInteger A"));
  NNC_ASSIGN_OR_RETURN(ShiftedOperand b,
                       shiftOperand(*in[1], optionalInput(in, 3), s.bs, false, "MatMulInteger B"));
  Tensor y(DType::kInt32, s.out);
  integerMatMul(a, b, s, ctx, y.mutableData<int32_t>().data());
  out[0] = std::move(y);
  return Status::ok();
}

Status qlinearMatMul(std::span<const Tensor* const> in, std::span<Tensor> out,
                     const RunContext& ctx) {
  static const char* const kNames[] = {"a",       "a_scale",      "a_zero_point", "b",
                                       "b_scale", "b_zero_point", "y_scale"};
  for (size_t i = 0; i < 7; ++i)
    if (i != 2 && i != 5) NNC_RETURN_IF_ERROR(requireInput(in, i, kNames[i]));
  NNC_ASSIGN_OR_RETURN(MatMulShapes s,
                       matmulShapes(in[0]->shape(), in[3]->shape(), "QLinearMatMul"));
  NNC_ASSIGN_OR_RETURN(ShiftedOperand a,
                       shiftOperand(*in[0], optionalInput(in, 2), s.as, true, "QLinearMatMul a"));
  NNC_ASSIGN_OR_RETURN(ShiftedOperand b,
                       shiftOperand(*in[3], optionalInput(in, 5), s.bs, false, "QLinearMatMul b"));
  std::vector<float> as_raw, bs_raw;
  NNC_RETURN_IF_ERROR(loadFloats(*in[1], as_raw, "QLinearMatMul a_scale"));
  NNC_RETURN_IF_ERROR(loadFloats(*in[4], bs_raw, "QLinearMatMul b_scale"));
  NNC_ASSIGN_OR_RETURN(
      std::vector<float> a_scale,
      expandMatrixParams(as_raw, in[1]->shape(), s.as, true, "QLinearMatMul a_scale"));
  NNC_ASSIGN_OR_RETURN(
      std::vector<float> b_scale,
      expandMatrixParams(bs_raw, in[4]->shape(), s.bs, false, "QLinearMatMul b_scale"));
  NNC_ASSIGN_OR_RETURN(float y_scale, scalarScale(*in[6], "QLinearMatMul y_scale"));
  const Tensor* y_zp_t = optionalInput(in, 7);
  const DType yt = y_zp_t ? y_zp_t->dtype() : DType::kUInt8;
  if (yt != DType::kUInt8 && yt != DType::kInt8)
    return unsupported(std::string("QLinearMatMul output must be uint8 or int8, got ") +
                       dtypeName(yt));
  NNC_ASSIGN_OR_RETURN(int32_t y_zp, scalarZeroPoint(y_zp_t, "QLinearMatMul y_zero_point"));
  std::vector<int32_t> acc(static_cast<size_t>(s.batches * s.m * s.n));
  integerMatMul(a, b, s, ctx, acc.data());
  int32_t lo, hi;
  quantRange(yt, lo, hi);
  Tensor y(yt, s.out);
  auto emit = [&](auto* yd) {
    parallelFor(s.batches * s.m, ctx, s.n, [&](int64_t row) {
      const int64_t bi = row / s.m, i = row % s.m;
      int64_t ao, bo;
      batchOffsets(s, bi, ao, bo);
      const float sa = a_scale[ao * s.m + i];
      const float* sb = b_scale.data() + bo * s.n;
      const int32_t* src = acc.data() + row * s.n;
      auto* dst = yd + row * s.n;
      for (int64_t j = 0; j < s.n; ++j)
        dst[j] = static_cast<std::remove_reference_t<decltype(*dst)>>(
            saturateRound(static_cast<float>(src[j]) * (sa * sb[j] / y_scale), y_zp, lo, hi));
    });
  };
  if (yt == DType::kUInt8)
    emit(y.mutableData<uint8_t>().data());
  else
    emit(y.mutableData<int8_t>().data());
  out[0] = std::move(y);
  return Status::ok();
}

}  // namespace

void registerQuantKernels(KernelRegistry& r) {
  r.addFunction("QuantizeLinear", makeQuantizeLinear);
  r.addFunction("DequantizeLinear", makeDequantizeLinear);
  r.addFunction("DynamicQuantizeLinear", [](const KernelBuildContext&) -> StatusOr<KernelFn> {
    return KernelFn(dynamicQuantizeLinear);
  });
  r.add("ConvInteger", [](const KernelBuildContext& bc) { return makeQConv(bc, false); });
  r.add("QLinearConv", [](const KernelBuildContext& bc) { return makeQConv(bc, true); });
  r.addFunction("MatMulInteger", [](const KernelBuildContext&) -> StatusOr<KernelFn> {
    return KernelFn(matMulInteger);
  });
  r.addFunction("QLinearMatMul", [](const KernelBuildContext&) -> StatusOr<KernelFn> {
    return KernelFn(qlinearMatMul);
  });
}

}  // namespace nnc::exec
