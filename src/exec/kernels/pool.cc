// Pooling: MaxPool (optional Indices output), AveragePool, LpPool, and their Global forms, for
// 1-D, 2-D and 3-D inputs [N, C, spatial...]. Every shape is handled as 3-D with leading unit
// axes; work is split over (plane, output row) pairs.
//   Output size per axis (explicit pads): floor or ceil((in + pb + pe - ext) / s) + 1, with
//   ext = (k - 1) * d + 1; in ceil mode the last window must start inside the input or the
//   left padding. SAME_*: out = ceil(in / s), the total pad split evenly (odd pixel at the end
//   for SAME_UPPER, at the start for SAME_LOWER). Padded positions never enter a max; for
//   averages they count only with count_include_pad (and only up to the explicit pads).

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernel_util.h"
#include "kernels.h"
#include "nncompress/ir/conv_geometry.h"
#include "tensor_util.h"

namespace nnc::exec {
namespace {

enum class PoolKind { kMax, kAverage, kLp };

struct PoolAttrs {
  PoolKind kind = PoolKind::kMax;
  ConvWindow window;  // auto_pad, kernel_shape, strides, pads, dilations
  bool ceil_mode = false;
  bool count_include_pad = false;
  int64_t storage_order = 0;
  float p = 2.f;
};

// Three spatial axes; 1-D and 2-D pools have leading unit axes.
struct PoolGeometry {
  int64_t in[3], out[3], k[3], s[3], d[3], pb[3], pe[3];
};

StatusOr<PoolGeometry> poolGeometry(const PoolAttrs& a, const Shape& x, const char* op) {
  const int nsp = static_cast<int>(x.size()) - 2;
  if (nsp < 1 || nsp > 3)
    return unsupported(std::string(op) + " on a " + std::to_string(x.size()) +
                       "-D input (1-D to 3-D pooling is supported)");
  if (static_cast<int>(a.window.kernel_shape.size()) != nsp)
    return invalidModel(std::string(op) + ": kernel_shape has " +
                        std::to_string(a.window.kernel_shape.size()) + " dims for a " +
                        std::to_string(nsp) + "-D input");
  PoolGeometry g;
  const int off = 3 - nsp;
  for (int i = 0; i < off; ++i) {
    g.in[i] = g.out[i] = g.k[i] = g.s[i] = g.d[i] = 1;
    g.pb[i] = g.pe[i] = 0;
  }
  for (int j = 0; j < nsp; ++j) {
    const int i = off + j;
    const int64_t in = x[2 + j], k = a.window.kernel_shape[j];
    auto axis = convAxis(a.window, j, nsp, in, k, a.ceil_mode);
    if (!axis.isOk())
      return axis.status().code() == StatusCode::kShapeMismatch
                 ? shapeMismatch(std::string(op) + ": window larger than the padded input " +
                                 shapeToString(x))
                 : axis.status().withContext(op);
    const int64_t s = a.window.stride(j), d = a.window.dilation(j);
    const int64_t out = axis->out, pb = axis->pad_begin, pe = axis->pad_end;
    g.in[i] = in;
    g.out[i] = out;
    g.k[i] = k;
    g.s[i] = s;
    g.d[i] = d;
    g.pb[i] = pb;
    g.pe[i] = pe;
  }
  return g;
}

// Per output position of one axis: the first input position a window reads, how many taps
// land inside the input (they are `d` apart), and how many land inside input + explicit pads.
struct AxisTaps {
  std::vector<int64_t> first, count, padded_count;
};

AxisTaps axisTaps(const PoolGeometry& g, int a) {
  AxisTaps t;
  const int64_t k = g.k[a], d = g.d[a], in = g.in[a];
  for (int64_t o = 0; o < g.out[a]; ++o) {
    const int64_t start = o * g.s[a] - g.pb[a];
    const int64_t lo = start < 0 ? (-start + d - 1) / d : 0;
    const int64_t hi = in - start <= 0 ? 0 : std::min(k, (in - start + d - 1) / d);
    // start >= -pb always; taps stop at in + pe (ceil mode can run past it).
    const int64_t phi = std::min(k, (in + g.pe[a] - start + d - 1) / d);
    t.first.push_back(start + lo * d);
    t.count.push_back(std::max<int64_t>(0, hi - lo));
    t.padded_count.push_back(std::max<int64_t>(0, phi));
  }
  return t;
}

// Calls fn(plane, od, oh, y_offset) for every output row, in parallel.
template <typename Fn>
void forEachOutputRow(const PoolGeometry& g, int64_t planes, const RunContext& ctx, Fn&& fn) {
  const int64_t rows = planes * g.out[0] * g.out[1];
  const int64_t work = g.out[2] * g.k[0] * g.k[1] * g.k[2];
  parallelFor(rows, ctx, work, [&](int64_t r) {
    const int64_t oh = r % g.out[1], od = (r / g.out[1]) % g.out[0], p = r / (g.out[0] * g.out[1]);
    fn(p, od, oh, r * g.out[2]);
  });
}

// The innermost axis, for one input row read by every window of an output row:
// acc[ow] = combine(acc[ow], x) over the window's taps in that row. Outputs whose window lies
// wholly inside the row [ia, ib) go tap by tap over contiguous outputs (vectorisable); the few
// border outputs go window by window.
struct RowPlan {
  int64_t ia = 0, ib = 0;
};

RowPlan rowPlan(const PoolGeometry& g) {
  RowPlan r;
  const int64_t s = g.s[2], ext = (g.k[2] - 1) * g.d[2] + 1;
  r.ia = std::min(g.out[2], (g.pb[2] + s - 1) / s);
  const int64_t last_start = g.in[2] - ext + g.pb[2];  // ow * s <= last_start
  r.ib = last_start < 0 ? 0 : std::min(g.out[2], last_start / s + 1);
  r.ib = std::max(r.ib, r.ia);
  return r;
}

template <typename T, typename Combine>
void accumulateRow(const T* row, T* acc, const PoolGeometry& g, const AxisTaps& t2,
                   const RowPlan& plan, Combine combine) {
  const int64_t s2 = g.s[2], d2 = g.d[2];
  auto border = [&](int64_t ow) {
    const T* src = row + t2.first[ow];
    for (int64_t i = 0, n = t2.count[ow]; i < n; ++i) acc[ow] = combine(acc[ow], src[i * d2]);
  };
  for (int64_t ow = 0; ow < plan.ia; ++ow) border(ow);
  const int64_t n = plan.ib - plan.ia;
  if (n > 0) {
    T* a = acc + plan.ia;
    for (int64_t j = 0; j < g.k[2]; ++j) {
      const T* src = row + plan.ia * s2 - g.pb[2] + j * d2;
      if (s2 == 1) {
        for (int64_t i = 0; i < n; ++i) a[i] = combine(a[i], src[i]);
      } else {
        for (int64_t i = 0; i < n; ++i) a[i] = combine(a[i], src[i * s2]);
      }
    }
  }
  for (int64_t ow = plan.ib; ow < g.out[2]; ++ow) border(ow);
}

// 2-D max pooling whose windows all lie inside the input (no padding, no dilation, no ceil-mode
// overhang) and without indices: one loop per plane. The small planes of CNN classifiers made the
// general row-by-row path cost more per row than the maxima themselves.
template <typename T>
bool simpleMaxPool(const T* x, T* y, int64_t planes, const PoolGeometry& g, const RunContext& ctx) {
  for (int a = 0; a < 3; ++a)
    if (g.pb[a] || g.pe[a] || g.d[a] != 1 || (g.out[a] - 1) * g.s[a] + g.k[a] > g.in[a])
      return false;
  if (g.in[0] != 1 || g.k[0] != 1) return false;
  const int64_t ih = g.in[1], iw = g.in[2], oh = g.out[1], ow = g.out[2];
  const int64_t kh = g.k[1], kw = g.k[2], sh = g.s[1], sw = g.s[2];
  parallelFor(planes, ctx, oh * ow * kh * kw, [&](int64_t p) {
    const T* xp = x + p * ih * iw;
    T* yp = y + p * oh * ow;
    if (kh == 2 && kw == 2 && sh == 2 && sw == 2) {  // the usual 2x2/2 (taps in window order)
      for (int64_t oy = 0; oy < oh; ++oy) {
        const T *r0 = xp + 2 * oy * iw, *r1 = r0 + iw;
        for (int64_t ox = 0; ox < ow; ++ox) {
          T best = std::numeric_limits<T>::lowest();
          best = r0[2 * ox] > best ? r0[2 * ox] : best;
          best = r0[2 * ox + 1] > best ? r0[2 * ox + 1] : best;
          best = r1[2 * ox] > best ? r1[2 * ox] : best;
          best = r1[2 * ox + 1] > best ? r1[2 * ox + 1] : best;
          yp[oy * ow + ox] = best;
        }
      }
      return;
    }
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        const T* win = xp + oy * sh * iw + ox * sw;
        T best = std::numeric_limits<T>::lowest();  // as the general path: NaN never wins
        for (int64_t i = 0; i < kh; ++i)
          for (int64_t j = 0; j < kw; ++j) {
            const T v = win[i * iw + j];
            best = v > best ? v : best;
          }
        yp[oy * ow + ox] = best;
      }
  });
  return true;
}

template <typename T>
void maxPool(const T* x, T* y, int64_t* indices, int64_t planes, const PoolGeometry& g,
             bool column_major, const RunContext& ctx) {
  if (!indices && simpleMaxPool(x, y, planes, g, ctx)) return;
  const int64_t in_plane = g.in[0] * g.in[1] * g.in[2];
  const AxisTaps t0 = axisTaps(g, 0), t1 = axisTaps(g, 1), t2 = axisTaps(g, 2);
  const RowPlan plan = rowPlan(g);
  const int64_t d0 = g.d[0], d1 = g.d[1], d2 = g.d[2], w = g.in[2], hw = g.in[1] * g.in[2];
  forEachOutputRow(g, planes, ctx, [&](int64_t p, int64_t od, int64_t oh, int64_t yo) {
    const T* xp = x + p * in_plane;
    const int64_t z0 = t0.first[od], n0 = t0.count[od], y0 = t1.first[oh], n1 = t1.count[oh];
    if (!indices) {
      T* acc = y + yo;
      std::fill(acc, acc + g.out[2], std::numeric_limits<T>::lowest());
      for (int64_t i0 = 0; i0 < n0; ++i0)
        for (int64_t i1 = 0; i1 < n1; ++i1)
          accumulateRow(xp + (z0 + i0 * d0) * hw + (y0 + i1 * d1) * w, acc, g, t2, plan,
                        [](T a, T v) { return v > a ? v : a; });
      return;
    }
    // With indices: the first maximum in window order (row-major over the taps).
    for (int64_t ow = 0; ow < g.out[2]; ++ow) {
      const int64_t x0 = t2.first[ow], n2 = t2.count[ow];
      T best = std::numeric_limits<T>::lowest();
      int64_t best_at = -1;
      for (int64_t i0 = 0; i0 < n0; ++i0)
        for (int64_t i1 = 0; i1 < n1; ++i1) {
          const int64_t base = (z0 + i0 * d0) * hw + (y0 + i1 * d1) * w + x0;
          for (int64_t i2 = 0; i2 < n2; ++i2) {
            const T v = xp[base + i2 * d2];
            if (v > best || best_at < 0) {
              best = v;
              best_at = base + i2 * d2;
            }
          }
        }
      y[yo + ow] = best;
      int64_t idx = std::max<int64_t>(best_at, 0);
      if (column_major) {
        const int64_t xx = idx % w, yy = (idx / w) % g.in[1], z = idx / hw;
        idx = z + g.in[0] * (yy + g.in[1] * xx);
      }
      indices[yo + ow] = p * in_plane + idx;
    }
  });
}

// Sums term(x) over each window (identity for averages, |x|^p for Lp), then finishes with
// the average or the p-th root.
template <typename T, typename Term>
void sumPool(const T* x, T* y, int64_t planes, const PoolGeometry& g, PoolKind kind,
             bool count_include_pad, float p_norm, const RunContext& ctx, Term term) {
  const int64_t in_plane = g.in[0] * g.in[1] * g.in[2];
  const AxisTaps t0 = axisTaps(g, 0), t1 = axisTaps(g, 1), t2 = axisTaps(g, 2);
  const RowPlan plan = rowPlan(g);
  const int64_t d0 = g.d[0], d1 = g.d[1], w = g.in[2], hw = g.in[1] * g.in[2];
  const bool average = kind == PoolKind::kAverage;
  forEachOutputRow(g, planes, ctx, [&](int64_t p, int64_t od, int64_t oh, int64_t yo) {
    const T* xp = x + p * in_plane;
    const int64_t z0 = t0.first[od], n0 = t0.count[od], y0 = t1.first[oh], n1 = t1.count[oh];
    T* acc = y + yo;
    std::fill(acc, acc + g.out[2], T(0));
    for (int64_t i0 = 0; i0 < n0; ++i0)
      for (int64_t i1 = 0; i1 < n1; ++i1)
        accumulateRow(xp + (z0 + i0 * d0) * hw + (y0 + i1 * d1) * w, acc, g, t2, plan,
                      [&](T a, T v) { return a + term(v); });
    if (average) {
      const int64_t rows = count_include_pad ? t0.padded_count[od] * t1.padded_count[oh] : n0 * n1;
      const auto& cols = count_include_pad ? t2.padded_count : t2.count;
      for (int64_t ow = 0; ow < g.out[2]; ++ow) {
        const int64_t count = rows * cols[ow];
        acc[ow] = count > 0 ? acc[ow] / static_cast<T>(count) : T(0);
      }
    } else if (p_norm == 2.f) {
      for (int64_t ow = 0; ow < g.out[2]; ++ow) acc[ow] = std::sqrt(acc[ow]);
    } else if (p_norm != 1.f) {
      for (int64_t ow = 0; ow < g.out[2]; ++ow)
        acc[ow] = static_cast<T>(std::pow(acc[ow], T(1) / T(p_norm)));
    }
  });
}

template <typename T>
void averageOrLpPool(const T* x, T* y, int64_t planes, const PoolGeometry& g, PoolKind kind,
                     bool count_include_pad, float p_norm, const RunContext& ctx) {
  if (kind == PoolKind::kAverage)
    sumPool(x, y, planes, g, kind, count_include_pad, p_norm, ctx, [](T v) { return v; });
  else if (p_norm == 2.f)
    sumPool(x, y, planes, g, kind, false, p_norm, ctx, [](T v) { return v * v; });
  else if (p_norm == 1.f)
    sumPool(x, y, planes, g, kind, false, p_norm, ctx, [](T v) { return std::abs(v); });
  else
    sumPool(x, y, planes, g, kind, false, p_norm, ctx,
            [p_norm](T v) { return static_cast<T>(std::pow(std::abs(v), T(p_norm))); });
}

class PoolKernel : public Kernel {
 public:
  explicit PoolKernel(PoolAttrs a) : a_(std::move(a)) {}

  Status run(std::span<const Tensor* const> in, std::span<Tensor> out,
             const RunContext& ctx) override {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "X"));
    const Tensor& x = *in[0];
    const char* op = a_.kind == PoolKind::kMax       ? "MaxPool"
                     : a_.kind == PoolKind::kAverage ? "AveragePool"
                                                     : "LpPool";
    NNC_ASSIGN_OR_RETURN(PoolGeometry g, poolGeometry(a_, x.shape(), op));
    Shape os = {x.dim(0), x.dim(1)};
    for (int i = 3 - (x.rank() - 2); i < 3; ++i) os.push_back(g.out[i]);
    const int64_t planes = x.dim(0) * x.dim(1);
    Tensor y = ctx.newTensor(x.dtype(), os);  // every element is written
    Tensor indices;
    const bool want_indices = a_.kind == PoolKind::kMax && out.size() > 1;
    if (want_indices) indices = Tensor(DType::kInt64, os);
    int64_t* ind = want_indices ? indices.mutableData<int64_t>().data() : nullptr;
    const bool col = a_.storage_order != 0;
    bool done = true;
    switch (x.dtype()) {
      case DType::kFloat32:
        run<float>(x, y, ind, planes, g, col, ctx);
        break;
      case DType::kFloat64:
        run<double>(x, y, ind, planes, g, col, ctx);
        break;
      case DType::kUInt8:
        if (a_.kind != PoolKind::kMax)
          done = false;
        else
          maxPool(x.data<uint8_t>().data(), y.mutableData<uint8_t>().data(), ind, planes, g, col,
                  ctx);
        break;
      case DType::kInt8:
        if (a_.kind != PoolKind::kMax)
          done = false;
        else
          maxPool(x.data<int8_t>().data(), y.mutableData<int8_t>().data(), ind, planes, g, col,
                  ctx);
        break;
      default:
        done = false;
    }
    if (!done) return unsupported(std::string(op) + " on " + dtypeName(x.dtype()));
    out[0] = std::move(y);
    if (want_indices) out[1] = std::move(indices);
    return Status::ok();
  }

 private:
  template <typename T>
  void run(const Tensor& x, Tensor& y, int64_t* ind, int64_t planes, const PoolGeometry& g,
           bool col, const RunContext& ctx) {
    if (a_.kind == PoolKind::kMax)
      maxPool(x.data<T>().data(), y.mutableData<T>().data(), ind, planes, g, col, ctx);
    else
      averageOrLpPool(x.data<T>().data(), y.mutableData<T>().data(), planes, g, a_.kind,
                      a_.count_include_pad, a_.p, ctx);
  }

  PoolAttrs a_;
};

StatusOr<std::unique_ptr<Kernel>> makePool(const KernelBuildContext& b, PoolKind kind) {
  PoolAttrs a;
  a.kind = kind;
  const Node& n = b.node;
  a.window = ConvWindow::of(n);
  a.ceil_mode = n.intAttr("ceil_mode", 0) != 0;
  a.count_include_pad = n.intAttr("count_include_pad", 0) != 0;
  a.storage_order = n.intAttr("storage_order", 0);
  a.p = kind == PoolKind::kLp ? static_cast<float>(n.intAttr("p", 2)) : 2.f;
  if (a.window.kernel_shape.empty()) return invalidModel(n.opType() + " without kernel_shape");
  if (kind == PoolKind::kLp && a.p <= 0) return invalidModel("LpPool: p must be positive");
  return std::unique_ptr<Kernel>(new PoolKernel(std::move(a)));
}

// Global pools: one value per (n, c) plane; output [N, C, 1, ...].
template <typename T>
void globalPool(const T* x, T* y, int64_t planes, int64_t size, PoolKind kind, float p_norm,
                const RunContext& ctx) {
  parallelFor(planes, ctx, size, [&](int64_t p) {
    const T* xp = x + p * size;
    if (kind == PoolKind::kMax) {
      T best = size > 0 ? xp[0] : T(0);
      for (int64_t i = 1; i < size; ++i) best = xp[i] > best ? xp[i] : best;
      y[p] = best;
      return;
    }
    double acc = 0;
    if (kind == PoolKind::kAverage) {
      // Four partial sums: one chain of dependent double adds was most of this op's time.
      double part[4] = {0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 4 <= size; i += 4)
        for (int j = 0; j < 4; ++j) part[j] += xp[i + j];
      for (; i < size; ++i) part[0] += xp[i];
      acc = (part[0] + part[1]) + (part[2] + part[3]);
      y[p] = static_cast<T>(size > 0 ? acc / double(size) : 0.0);
    } else if (p_norm == 2.f) {
      for (int64_t i = 0; i < size; ++i) acc += double(xp[i]) * xp[i];
      y[p] = static_cast<T>(std::sqrt(acc));
    } else {
      for (int64_t i = 0; i < size; ++i) acc += std::pow(std::abs(double(xp[i])), double(p_norm));
      y[p] = static_cast<T>(std::pow(acc, 1.0 / double(p_norm)));
    }
  });
}

StatusOr<KernelFn> makeGlobalPool(const KernelBuildContext& b, PoolKind kind) {
  const float p_norm = kind == PoolKind::kLp ? static_cast<float>(b.node.intAttr("p", 2)) : 2.f;
  const std::string op = b.node.opType();
  return KernelFn([=](std::span<const Tensor* const> in, std::span<Tensor> out,
                      const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "X"));
    const Tensor& x = *in[0];
    if (x.rank() < 3) return shapeMismatch(op + " input must be [N, C, spatial...]");
    Shape os(x.rank(), 1);
    os[0] = x.dim(0);
    os[1] = x.dim(1);
    const int64_t planes = x.dim(0) * x.dim(1), size = planes ? x.numel() / planes : 0;
    Tensor y = ctx.newTensor(x.dtype(), os);  // every element is written
    if (x.dtype() == DType::kFloat32)
      globalPool(x.data<float>().data(), y.mutableData<float>().data(), planes, size, kind, p_norm,
                 ctx);
    else if (x.dtype() == DType::kFloat64)
      globalPool(x.data<double>().data(), y.mutableData<double>().data(), planes, size, kind,
                 p_norm, ctx);
    else
      return unsupported(op + " on " + dtypeName(x.dtype()));
    out[0] = std::move(y);
    return Status::ok();
  });
}

// MaxUnpool (9, 11): the partial inverse of MaxPool, zero except output.flat[I[i]] = X[i], I
// holding linear indices into the whole output (as MaxPool's Indices output does). The output
// shape is output_shape when given (pads ignored), else [N, C, (in - 1) * stride + kernel -
// pad_begin - pad_end per spatial axis].
struct UnpoolAttrs {
  std::vector<int64_t> kernel, strides, pads;
};

StatusOr<Shape> unpoolShape(const Tensor& x, const Tensor* output_shape, const UnpoolAttrs& a) {
  const int64_t nsp = x.rank() - 2;
  if (output_shape) {
    Shape shape = readIndices(*output_shape);
    if (output_shape->rank() != 1 || static_cast<int64_t>(shape.size()) != x.rank() ||
        shape[0] != x.dim(0) || shape[1] != x.dim(1) ||
        std::any_of(shape.begin(), shape.end(), [](int64_t d) { return d < 0; }))
      return invalidModel("MaxUnpool: output_shape " + shapeToString(shape) + " for X " +
                          shapeToString(x.shape()));
    return shape;
  }
  if (static_cast<int64_t>(a.kernel.size()) != nsp)
    return invalidModel("MaxUnpool: kernel_shape has " + std::to_string(a.kernel.size()) +
                        " dims for X " + shapeToString(x.shape()));
  Shape shape = {x.dim(0), x.dim(1)};
  for (int64_t j = 0; j < nsp; ++j) {
    const int64_t s = a.strides.empty() ? 1 : a.strides[j];
    const int64_t pads = a.pads.empty() ? 0 : a.pads[j] + a.pads[j + nsp];
    const int64_t dim = (x.dim(static_cast<int>(2 + j)) - 1) * s + a.kernel[j] - pads;
    if (dim < 0) return invalidModel("MaxUnpool: negative output size");
    shape.push_back(dim);
  }
  return shape;
}

Status maxUnpool(std::span<const Tensor* const> in, std::span<Tensor> out, const UnpoolAttrs& a) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "MaxUnpool X"));
  NNC_RETURN_IF_ERROR(requireInput(in, 1, "MaxUnpool I"));
  const Tensor &x = *in[0], &indices = *in[1];
  if (x.dtype() != DType::kFloat32 && x.dtype() != DType::kFloat64 && x.dtype() != DType::kFloat16)
    return unsupported(std::string("MaxUnpool on ") + dtypeName(x.dtype()) + " tensors");
  if (x.rank() < 3) return invalidModel("MaxUnpool: X must be [N, C, D1, ...]");
  if (indices.shape() != x.shape() || indices.dtype() != DType::kInt64)
    return invalidModel("MaxUnpool: I must be int64 of X's shape " + shapeToString(x.shape()));
  const Tensor* output_shape = in.size() > 2 ? in[2] : nullptr;
  NNC_ASSIGN_OR_RETURN(Shape shape, unpoolShape(x, output_shape, a));
  Tensor y(x.dtype(), shape);  // zero-filled
  const size_t es = static_cast<size_t>(dtypeBits(x.dtype()) / 8);
  const char* src = x.bytes().data();
  char* dst = y.mutableBytes().data();
  const auto idx = indices.data<int64_t>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (idx[i] < 0 || idx[i] >= y.numel())
      return invalidModel("MaxUnpool: index " + std::to_string(idx[i]) + " outside an output of " +
                          std::to_string(y.numel()) + " elements");
    std::memcpy(dst + idx[i] * es, src + i * es, es);
  }
  out[0] = std::move(y);
  return Status::ok();
}

StatusOr<KernelFn> makeMaxUnpool(const KernelBuildContext& b) {
  // MaxUnpool-22 only widens the types, but this kernel follows versions 9 and 11.
  NNC_RETURN_IF_ERROR(requireOpVersion("MaxUnpool", b.opset, 9, 22));
  UnpoolAttrs a;
  a.kernel = b.node.intsAttr("kernel_shape");
  a.strides = b.node.intsAttr("strides");
  a.pads = b.node.intsAttr("pads");
  const size_t nsp = a.kernel.size();
  if (nsp == 0) return invalidModel("MaxUnpool: kernel_shape is required");
  if ((!a.strides.empty() && a.strides.size() != nsp) ||
      (!a.pads.empty() && a.pads.size() != 2 * nsp))
    return invalidModel("MaxUnpool: strides or pads do not match kernel_shape");
  for (int64_t v : a.kernel)
    if (v < 1) return invalidModel("MaxUnpool: kernel_shape must be positive");
  for (int64_t v : a.strides)
    if (v < 1) return invalidModel("MaxUnpool: strides must be positive");
  for (int64_t v : a.pads)
    if (v < 0) return invalidModel("MaxUnpool: pads must be non-negative");
  return KernelFn([a](std::span<const Tensor* const> in, std::span<Tensor> out, const RunContext&) {
    return maxUnpool(in, out, a);
  });
}

}  // namespace

void registerPoolKernels(KernelRegistry& r) {
  r.add("MaxPool", [](const KernelBuildContext& b) { return makePool(b, PoolKind::kMax); });
  r.add("AveragePool", [](const KernelBuildContext& b) { return makePool(b, PoolKind::kAverage); });
  r.add("LpPool", [](const KernelBuildContext& b) { return makePool(b, PoolKind::kLp); });
  r.addFunction("GlobalMaxPool",
                [](const KernelBuildContext& b) { return makeGlobalPool(b, PoolKind::kMax); });
  r.addFunction("GlobalAveragePool",
                [](const KernelBuildContext& b) { return makeGlobalPool(b, PoolKind::kAverage); });
  r.addFunction("GlobalLpPool",
                [](const KernelBuildContext& b) { return makeGlobalPool(b, PoolKind::kLp); });
  r.addFunction("MaxUnpool", makeMaxUnpool);
}

}  // namespace nnc::exec
