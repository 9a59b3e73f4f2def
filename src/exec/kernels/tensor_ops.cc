// Data-movement and shape ops: Concat, Split, Slice, Pad, Reshape, Transpose, Squeeze,
// Unsqueeze, Flatten, Identity, Dropout (inference), Shape, Size, Gather, GatherElements,
// Expand, Tile, ConstantOfShape, Range, DepthToSpace, SpaceToDepth, EyeLike, Trilu.
// All but Range are dtype-generic: elements move as opaque blocks of their byte size (see
// tensor_util.h); shape-only ops (Reshape, Squeeze, ...) also carry string tensors.
// Operands that became inputs in later opsets (Split's split, Slice's starts, Pad's pads,
// Squeeze's axes, ...) are read from the input when present, else from the older attribute.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <type_traits>

#include "kernel_util.h"
#include "kernels.h"
#include "tensor_util.h"

namespace nnc::exec {
namespace {

using Inputs = std::span<const Tensor* const>;
using Outputs = std::span<Tensor>;

const Tensor* optionalInput(Inputs in, size_t i) { return i < in.size() ? in[i] : nullptr; }

int64_t product(const Shape& s, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end && i < s.size(); ++i) p *= s[i];
  return p;
}

std::string listToString(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  return s + "]";
}

// Normalises a list of axes against `rank`; fails on out-of-range or repeated axes.
StatusOr<std::vector<int>> normaliseAxes(const std::vector<int64_t>& axes, int rank,
                                         const char* op) {
  std::vector<int> out;
  std::vector<bool> seen(rank, false);
  for (int64_t a : axes) {
    NNC_ASSIGN_OR_RETURN(int ax, normaliseAxis(a, rank));
    if (seen[ax]) return invalidModel(std::string(op) + ": repeated axis " + std::to_string(a));
    seen[ax] = true;
    out.push_back(ax);
  }
  return out;
}

// ---- Concat ----

StatusOr<KernelFn> makeConcat(const KernelBuildContext& b) {
  const int64_t axis_attr = b.node.intAttr("axis", 1);
  return KernelFn([=](Inputs in, Outputs out, const RunContext& ctx) -> Status {
    std::vector<const Tensor*> xs;
    for (const Tensor* t : in)
      if (t) xs.push_back(t);
    if (xs.empty()) return invalidModel("Concat without inputs");
    const Tensor& first = *xs[0];
    NNC_ASSIGN_OR_RETURN(size_t es, movableElementSize(first.dtype(), "Concat"));
    NNC_ASSIGN_OR_RETURN(int axis, normaliseAxis(axis_attr, first.rank()));
    Shape os = first.shape();
    os[axis] = 0;
    for (const Tensor* t : xs) {
      if (t->dtype() != first.dtype()) return invalidModel("Concat inputs differ in dtype");
      bool ok = t->rank() == first.rank();
      for (int d = 0; ok && d < first.rank(); ++d) ok = d == axis || t->dim(d) == os[d];
      if (!ok)
        return shapeMismatch("Concat input " + shapeToString(t->shape()) + " does not fit " +
                             shapeToString(first.shape()) + " on axis " + std::to_string(axis));
      os[axis] += t->dim(axis);
    }
    Tensor y = ctx.newTensor(first.dtype(), os);  // every element is written
    const int64_t outer = product(os, 0, axis);
    if (outer > 0 && y.numel() > 0) {
      const int64_t row = y.numel() / outer;
      std::vector<size_t> chunk(xs.size());
      for (size_t i = 0; i < xs.size(); ++i) chunk[i] = xs[i]->numel() / outer * es;
      char* yd = y.mutableBytes().data();
      parallelFor(outer, ctx, row, [&](int64_t o) {
        char* dst = yd + o * row * es;
        for (size_t i = 0; i < xs.size(); ++i) {
          if (chunk[i]) std::memcpy(dst, xs[i]->bytes().data() + o * chunk[i], chunk[i]);
          dst += chunk[i];
        }
      });
    }
    out[0] = std::move(y);
    return Status::ok();
  });
}

// ---- Split ----

StatusOr<KernelFn> makeSplit(const KernelBuildContext& b) {
  const int64_t axis_attr = b.node.intAttr("axis", 0);
  const std::vector<int64_t> split_attr = b.node.intsAttr("split");
  const int64_t num_outputs = b.node.intAttr("num_outputs", 0);
  return KernelFn([=](Inputs in, Outputs out, const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "input"));
    const Tensor& x = *in[0];
    NNC_ASSIGN_OR_RETURN(size_t es, movableElementSize(x.dtype(), "Split"));
    NNC_ASSIGN_OR_RETURN(int axis, normaliseAxis(axis_attr, x.rank()));
    const int64_t dim = x.dim(axis);
    const Tensor* split_in = optionalInput(in, 1);
    std::vector<int64_t> sizes = split_in ? readIndices(*split_in) : split_attr;
    if (sizes.empty()) {
      const int64_t parts = num_outputs > 0 ? num_outputs : static_cast<int64_t>(out.size());
      const int64_t chunk = (dim + parts - 1) / parts;  // uneven: the last chunk is smaller
      for (int64_t i = 0; i < parts; ++i)
        sizes.push_back(std::clamp<int64_t>(dim - i * chunk, 0, chunk));
    }
    int64_t total = 0;
    for (int64_t s : sizes) {
      if (s < 0) return invalidModel("Split: negative size " + listToString(sizes));
      total += s;
    }
    if (sizes.size() != out.size() || total != dim)
      return shapeMismatch("Split sizes " + listToString(sizes) + " do not split axis of " +
                           std::to_string(dim) + " into " + std::to_string(out.size()) +
                           " outputs");
    const int64_t outer = product(x.shape(), 0, axis);
    const size_t inner = static_cast<size_t>(product(x.shape(), axis + 1, x.rank())) * es;
    const char* xd = x.bytes().data();
    int64_t offset = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      Shape s = x.shape();
      s[axis] = sizes[i];
      Tensor y(x.dtype(), s);
      const size_t chunk = sizes[i] * inner;
      if (chunk) {
        char* yd = y.mutableBytes().data();
        parallelFor(outer, ctx, static_cast<int64_t>(chunk / es), [&](int64_t o) {
          std::memcpy(yd + o * chunk, xd + (o * dim + offset) * inner, chunk);
        });
      }
      offset += sizes[i];
      out[i] = std::move(y);
    }
    return Status::ok();
  });
}

// ---- Slice ----

StatusOr<KernelFn> makeSlice(const KernelBuildContext& b) {
  const std::vector<int64_t> starts_attr = b.node.intsAttr("starts"),
                             ends_attr = b.node.intsAttr("ends"),
                             axes_attr = b.node.intsAttr("axes");
  return KernelFn([=](Inputs in, Outputs out, const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "data"));
    const Tensor& x = *in[0];
    NNC_ASSIGN_OR_RETURN(size_t es, movableElementSize(x.dtype(), "Slice"));
    std::vector<int64_t> starts, ends, axes, steps;
    if (optionalInput(in, 1)) {
      NNC_RETURN_IF_ERROR(requireInput(in, 2, "ends"));
      starts = readIndices(*in[1]);
      ends = readIndices(*in[2]);
      if (const Tensor* t = optionalInput(in, 3)) axes = readIndices(*t);
      if (const Tensor* t = optionalInput(in, 4)) steps = readIndices(*t);
    } else {
      starts = starts_attr;
      ends = ends_attr;
      axes = axes_attr;
    }
    if (axes.empty())
      for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
    if (steps.empty()) steps.assign(starts.size(), 1);
    if (ends.size() != starts.size() || axes.size() != starts.size() ||
        steps.size() != starts.size())
      return invalidModel("Slice: starts, ends, axes and steps differ in length");
    NNC_ASSIGN_OR_RETURN(std::vector<int> ax, normaliseAxes(axes, x.rank(), "Slice"));
    const std::vector<int64_t> in_strides = contiguousStrides(x.shape());
    Shape os = x.shape();
    std::vector<int64_t> strides = in_strides;
    int64_t offset = 0;
    for (size_t i = 0; i < ax.size(); ++i) {
      const int a = ax[i];
      const int64_t dim = x.dim(a), step = steps[i];
      if (step == 0) return invalidModel("Slice: step 0");
      int64_t s = starts[i], e = ends[i], len = 0;
      if (s < 0) s += dim;
      if (e < 0) e += dim;
      if (step > 0) {
        s = std::clamp<int64_t>(s, 0, dim);
        e = std::clamp<int64_t>(e, 0, dim);
        if (e > s) len = (e - s - 1) / step + 1;
      } else {
        s = std::clamp<int64_t>(s, 0, dim - 1);
        e = std::clamp<int64_t>(e, -1, dim - 1);
        const int64_t mag = step == std::numeric_limits<int64_t>::min()
                                ? std::numeric_limits<int64_t>::max()
                                : -step;
        if (s > e) len = (s - e - 1) / mag + 1;
      }
      os[a] = len;
      if (len > 0) offset += s * in_strides[a];
      strides[a] = len > 1 ? in_strides[a] * step : 0;
    }
    Tensor y(x.dtype(), os);
    stridedCopy(x.bytes().data(), y.mutableBytes().data(), es, os, strides, offset, ctx);
    out[0] = std::move(y);
    return Status::ok();
  });
}

// ---- Pad ----

enum class PadMode { kConstant, kReflect, kEdge, kWrap };

int64_t floorMod(int64_t a, int64_t n) {
  const int64_t r = a % n;
  return r < 0 ? r + n : r;
}

// The source index of padded position j on an axis of n kept elements, or -1 for the constant.
int64_t padSource(PadMode mode, int64_t j, int64_t n) {
  if (j >= 0 && j < n) return j;
  switch (mode) {
    case PadMode::kEdge:
      return std::clamp<int64_t>(j, 0, n - 1);
    case PadMode::kWrap:
      return floorMod(j, n);
    case PadMode::kReflect: {
      if (n == 1) return 0;
      const int64_t period = 2 * (n - 1), m = floorMod(j, period);
      return m < n ? m : period - m;
    }
    default:
      return -1;
  }
}

// Per axis: crop (negative pads) then pad; table[a][o] = source index, or -1 for the constant.
struct PadTables {
  Shape out_shape;
  std::vector<std::vector<int64_t>> table;
};

StatusOr<PadTables> padTables(PadMode mode, const std::string& mode_name, const Shape& in_shape,
                              const std::vector<int64_t>& pb, const std::vector<int64_t>& pe) {
  const int rank = static_cast<int>(in_shape.size());
  PadTables t{Shape(rank), std::vector<std::vector<int64_t>>(rank)};
  for (int a = 0; a < rank; ++a) {
    const int64_t dim = in_shape[a], lo = std::max<int64_t>(0, -pb[a]),
                  hi = dim - std::max<int64_t>(0, -pe[a]), n = hi - lo,
                  before = std::max<int64_t>(0, pb[a]), after = std::max<int64_t>(0, pe[a]);
    if (n < 0)
      return invalidModel("Pad: negative pads remove more than axis " + std::to_string(a) +
                          " holds");
    t.out_shape[a] = n + before + after;
    if (n == 0 && t.out_shape[a] > 0 && mode != PadMode::kConstant)
      return invalidModel("Pad: cannot " + mode_name + "-pad an empty axis");
    t.table[a].resize(t.out_shape[a]);
    for (int64_t o = 0; o < t.out_shape[a]; ++o) {
      const int64_t src = padSource(mode, o - before, n);
      t.table[a][o] = src < 0 ? -1 : lo + src;
    }
  }
  return t;
}

// Writes y (rank >= 1, non-empty) from x through the tables. The innermost axis is cut into
// segments: runs of consecutive sources (one memcpy) or of padding.
void copyPadded(const Tensor& x, Tensor& y, const PadTables& t, const std::string& value, size_t es,
                const RunContext& ctx) {
  const int rank = x.rank();
  struct Segment {
    int64_t dst, src, len;  // src -1: padding
  };
  std::vector<Segment> segs;
  const auto& last = t.table[rank - 1];
  for (int64_t o = 0; o < static_cast<int64_t>(last.size()); ++o) {
    if (!segs.empty()) {
      Segment& s = segs.back();
      const bool extends = s.src < 0 ? last[o] < 0 : last[o] == s.src + s.len;
      if (extends) {
        ++s.len;
        continue;
      }
    }
    segs.push_back({o, last[o], 1});
  }
  const Shape& os = t.out_shape;
  const std::vector<int64_t> xs = contiguousStrides(x.shape());
  const int64_t inner = os[rank - 1], rows = y.numel() / inner;
  const char* xd = x.bytes().data();
  char* yd = y.mutableBytes().data();
  parallelFor(rows, ctx, inner, [&](int64_t r) {
    char* dst = yd + r * inner * es;
    int64_t rem = r, off = 0;
    bool pad_row = false;
    for (int a = rank - 2; a >= 0; --a) {
      const int64_t src = t.table[a][rem % os[a]];
      rem /= os[a];
      if (src < 0) pad_row = true;
      off += src * xs[a];
    }
    if (pad_row) {
      fillElements(dst, inner, value.data(), es);
      return;
    }
    for (const Segment& s : segs) {
      if (s.src < 0)
        fillElements(dst + s.dst * es, s.len, value.data(), es);
      else
        std::memcpy(dst + s.dst * es, xd + (off + s.src) * es, s.len * es);
    }
  });
}

StatusOr<PadMode> parsePadMode(const std::string& name) {
  static const std::map<std::string, PadMode> kModes = {{"constant", PadMode::kConstant},
                                                        {"reflect", PadMode::kReflect},
                                                        {"edge", PadMode::kEdge},
                                                        {"wrap", PadMode::kWrap}};
  const auto it = kModes.find(name);
  if (it == kModes.end()) return unsupported("Pad mode '" + name + "'");
  return it->second;
}

// Pads before/after per axis (opset 2 attribute pads/paddings; 11+ input pads; 18+ axes).
StatusOr<std::pair<std::vector<int64_t>, std::vector<int64_t>>> padAmounts(
    Inputs in, const std::vector<int64_t>& pads_attr, int rank) {
  const std::vector<int64_t> pads = optionalInput(in, 1) ? readIndices(*in[1]) : pads_attr;
  std::vector<int> axes;
  if (const Tensor* t = optionalInput(in, 3)) {
    NNC_ASSIGN_OR_RETURN(axes, normaliseAxes(readIndices(*t), rank, "Pad"));
  } else {
    for (int a = 0; a < rank; ++a) axes.push_back(a);
  }
  if (pads.size() != 2 * axes.size())
    return invalidModel("Pad: " + std::to_string(pads.size()) + " pads for " +
                        std::to_string(axes.size()) + " axes");
  std::vector<int64_t> pb(rank, 0), pe(rank, 0);
  for (size_t i = 0; i < axes.size(); ++i) {
    pb[axes[i]] = pads[i];
    pe[axes[i]] = pads[i + axes.size()];
  }
  return std::make_pair(pb, pe);
}

StatusOr<KernelFn> makePad(const KernelBuildContext& b) {
  const std::string mode_name = b.node.stringAttr("mode", "constant");
  NNC_ASSIGN_OR_RETURN(const PadMode mode, parsePadMode(mode_name));
  const std::vector<int64_t> pads_attr =
      b.node.hasAttribute("pads") ? b.node.intsAttr("pads") : b.node.intsAttr("paddings");
  const float value_attr = b.node.floatAttr("value", 0.f);
  return KernelFn([=](Inputs in, Outputs out, const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "data"));
    const Tensor& x = *in[0];
    NNC_ASSIGN_OR_RETURN(size_t es, movableElementSize(x.dtype(), "Pad"));
    NNC_ASSIGN_OR_RETURN(auto amounts, padAmounts(in, pads_attr, x.rank()));
    std::string value;
    const Tensor* cv = optionalInput(in, 2);
    if (cv && cv->numel() > 0) {
      if (cv->dtype() != x.dtype()) return invalidModel("Pad: constant_value dtype differs");
      value = cv->bytes().substr(0, es);
    } else {
      NNC_ASSIGN_OR_RETURN(value, scalarBytes(x.dtype(), value_attr));
    }
    NNC_ASSIGN_OR_RETURN(PadTables tables,
                         padTables(mode, mode_name, x.shape(), amounts.first, amounts.second));
    Tensor y(x.dtype(), tables.out_shape);
    if (x.rank() == 0)
      y = x;
    else if (y.numel() > 0)
      copyPadded(x, y, tables, value, es, ctx);
    out[0] = std::move(y);
    return Status::ok();
  });
}

// ---- Reshape, Flatten, Squeeze, Unsqueeze, Identity ----

StatusOr<KernelFn> makeReshape(const KernelBuildContext& b) {
  const bool allowzero = b.node.intAttr("allowzero", 0) != 0;
  const std::vector<int64_t> shape_attr = b.node.intsAttr("shape");
  return KernelFn([=](Inputs in, Outputs out, const RunContext&) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "data"));
    const Tensor& x = *in[0];
    const std::vector<int64_t> spec = optionalInput(in, 1) ? readIndices(*in[1]) : shape_attr;
    Shape os(spec.size());
    int infer = -1;
    int64_t known = 1;
    for (size_t i = 0; i < spec.size(); ++i) {
      int64_t v = spec[i];
      if (v == 0 && !allowzero) {
        if (static_cast<int>(i) >= x.rank())
          return invalidModel("Reshape: 0 at position " + std::to_string(i) + " of " +
                              listToString(spec) + " beyond the input rank");
        v = x.dim(static_cast<int>(i));
      }
      if (v == -1) {
        if (infer >= 0) return invalidModel("Reshape: more than one -1 in " + listToString(spec));
        infer = static_cast<int>(i);
        continue;
      }
      if (v < 0) return invalidModel("Reshape: bad shape " + listToString(spec));
      os[i] = v;
      known *= v;
    }
    if (infer >= 0) {
      if (known == 0 || x.numel() % known != 0)
        return shapeMismatch("Reshape: cannot infer -1 reshaping " + shapeToString(x.shape()) +
                             " to " + listToString(spec));
      os[infer] = x.numel() / known;
    }
    NNC_ASSIGN_OR_RETURN(out[0], withShape(x, os));
    return Status::ok();
  });
}

StatusOr<KernelFn> makeFlatten(const KernelBuildContext& b) {
  const int64_t axis_attr = b.node.intAttr("axis", 1);
  return KernelFn([=](Inputs in, Outputs out, const RunContext&) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "input"));
    const Tensor& x = *in[0];
    const int64_t axis = axis_attr < 0 ? axis_attr + x.rank() : axis_attr;
    if (axis < 0 || axis > x.rank())
      return invalidModel("Flatten: axis " + std::to_string(axis_attr) + " out of range");
    const Shape os{product(x.shape(), 0, axis), product(x.shape(), axis, x.rank())};
    NNC_ASSIGN_OR_RETURN(out[0], withShape(x, os));
    return Status::ok();
  });
}

StatusOr<KernelFn> makeSqueeze(const KernelBuildContext& b) {
  const std::vector<int64_t> axes_attr = b.node.intsAttr("axes");
  return KernelFn([=](Inputs in, Outputs out, const RunContext&) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "data"));
    const Tensor& x = *in[0];
    const std::vector<int64_t> axes = optionalInput(in, 1) ? readIndices(*in[1]) : axes_attr;
    std::vector<bool> drop(x.rank(), false);
    if (axes.empty()) {
      for (int a = 0; a < x.rank(); ++a) drop[a] = x.dim(a) == 1;
    } else {
      NNC_ASSIGN_OR_RETURN(std::vector<int> ax, normaliseAxes(axes, x.rank(), "Squeeze"));
      for (int a : ax) {
        if (x.dim(a) != 1)
          return shapeMismatch("Squeeze: axis " + std::to_string(a) + " of " +
                               shapeToString(x.shape()) + " is not 1");
        drop[a] = true;
      }
    }
    Shape os;
    for (int a = 0; a < x.rank(); ++a)
      if (!drop[a]) os.push_back(x.dim(a));
    NNC_ASSIGN_OR_RETURN(out[0], withShape(x, os));
    return Status::ok();
  });
}

StatusOr<KernelFn> makeUnsqueeze(const KernelBuildContext& b) {
  const std::vector<int64_t> axes_attr = b.node.intsAttr("axes");
  return KernelFn([=](Inputs in, Outputs out, const RunContext&) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "data"));
    const Tensor& x = *in[0];
    const std::vector<int64_t> axes = optionalInput(in, 1) ? readIndices(*in[1]) : axes_attr;
    const int rank = x.rank() + static_cast<int>(axes.size());
    NNC_ASSIGN_OR_RETURN(std::vector<int> ax, normaliseAxes(axes, rank, "Unsqueeze"));
    std::vector<bool> inserted(rank, false);
    for (int a : ax) inserted[a] = true;
    Shape os;
    int src = 0;
    for (int a = 0; a < rank; ++a) os.push_back(inserted[a] ? 1 : x.dim(src++));
    NNC_ASSIGN_OR_RETURN(out[0], withShape(x, os));
    return Status::ok();
  });
}

Status identity(Inputs in, Outputs out, const RunContext&) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "input"));
  out[0] = *in[0];
  return Status::ok();
}

// Inference: the identity. Training mode with a nonzero ratio is random and not supported.
StatusOr<KernelFn> makeDropout(const KernelBuildContext& b) {
  const float ratio_attr = b.node.floatAttr("ratio", 0.5f);
  const bool want_mask = b.node.numOutputs() > 1 && b.node.output(1) != nullptr;
  const bool bool_mask = b.opset >= 10 || b.opset <= 0;
  return KernelFn([=](Inputs in, Outputs out, const RunContext&) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "data"));
    const Tensor& x = *in[0];
    const Tensor* ratio_t = optionalInput(in, 1);
    const Tensor* training_t = optionalInput(in, 2);
    const double ratio =
        ratio_t && ratio_t->numel() > 0 ? ratio_t->elementAsDouble(0) : double(ratio_attr);
    const bool training =
        training_t && training_t->numel() > 0 && training_t->elementAsDouble(0) != 0;
    if (training && ratio != 0)
      return unsupported("Dropout in training mode with a nonzero ratio (random)");
    out[0] = x;
    if (want_mask && out.size() > 1) {
      const DType mdt = bool_mask ? DType::kBool : x.dtype();
      NNC_ASSIGN_OR_RETURN(size_t es, movableElementSize(mdt, "Dropout mask"));
      NNC_ASSIGN_OR_RETURN(std::string one, scalarBytes(mdt, 1.0));
      Tensor mask(mdt, x.shape());
      fillElements(mask.mutableBytes().data(), mask.numel(), one.data(), es);
      out[1] = std::move(mask);
    }
    return Status::ok();
  });
}

// ---- Shape, Size ----

StatusOr<KernelFn> makeShape(const KernelBuildContext& b) {
  const bool has_end = b.node.hasAttribute("end");
  const int64_t start_attr = b.node.intAttr("start", 0), end_attr = b.node.intAttr("end", 0);
  return KernelFn([=](Inputs in, Outputs out, const RunContext&) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "data"));
    const Tensor& x = *in[0];
    const int64_t r = x.rank();
    int64_t s = start_attr, e = has_end ? end_attr : r;
    if (s < 0) s += r;
    if (e < 0) e += r;
    s = std::clamp<int64_t>(s, 0, r);
    e = std::clamp<int64_t>(e, 0, r);
    std::vector<int64_t> dims;
    for (int64_t i = s; i < e; ++i) dims.push_back(x.dim(static_cast<int>(i)));
    const int64_t n = static_cast<int64_t>(dims.size());
    out[0] = Tensor::fromVector<int64_t>({n}, dims);
    return Status::ok();
  });
}

Status sizeOp(Inputs in, Outputs out, const RunContext&) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "data"));
  out[0] = Tensor::fromVector<int64_t>({}, {in[0]->numel()});
  return Status::ok();
}

// ---- Gather, GatherElements ----

StatusOr<KernelFn> makeGather(const KernelBuildContext& b) {
  const int64_t axis_attr = b.node.intAttr("axis", 0);
  return KernelFn([=](Inputs in, Outputs out, const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "data"));
    NNC_RETURN_IF_ERROR(requireInput(in, 1, "indices"));
    const Tensor& x = *in[0];
    const Tensor& it = *in[1];
    NNC_ASSIGN_OR_RETURN(size_t es, movableElementSize(x.dtype(), "Gather"));
    NNC_ASSIGN_OR_RETURN(int axis, normaliseAxis(axis_attr, x.rank()));
    const int64_t dim = x.dim(axis);
    std::vector<int64_t> idx = readIndices(it);
    for (int64_t& k : idx) {
      if (k < -dim || k >= dim)
        return invalidModel("Gather: index " + std::to_string(k) + " out of range for axis of " +
                            std::to_string(dim));
      if (k < 0) k += dim;
    }
    Shape os(x.shape().begin(), x.shape().begin() + axis);
    os.insert(os.end(), it.shape().begin(), it.shape().end());
    os.insert(os.end(), x.shape().begin() + axis + 1, x.shape().end());
    Tensor y(x.dtype(), os);
    const int64_t outer = product(x.shape(), 0, axis), n = static_cast<int64_t>(idx.size());
    const int64_t inner = product(x.shape(), axis + 1, x.rank());
    const size_t chunk = static_cast<size_t>(inner) * es;
    if (chunk && outer * n > 0) {
      const char* xd = x.bytes().data();
      char* yd = y.mutableBytes().data();
      const bool typed = inner == 1 && dispatchElementSize(es, [&]<typename T>() {
                           // One element per index (gathering along the last axis): a typed loop,
                           // not memcpy.
                           const T* src = reinterpret_cast<const T*>(xd);
                           T* dst = reinterpret_cast<T*>(yd);
                           parallelFor(outer, ctx, n, [&](int64_t o) {
                             for (int64_t j = 0; j < n; ++j) dst[o * n + j] = src[o * dim + idx[j]];
                           });
                         });
      if (!typed) {
        parallelFor(outer * n, ctx, inner, [&](int64_t i) {
          const int64_t o = i / n, k = idx[i % n];
          std::memcpy(yd + i * chunk, xd + (o * dim + k) * chunk, chunk);
        });
      }
    }
    out[0] = std::move(y);
    return Status::ok();
  });
}

StatusOr<KernelFn> makeGatherElements(const KernelBuildContext& b) {
  const int64_t axis_attr = b.node.intAttr("axis", 0);
  return KernelFn([=](Inputs in, Outputs out, const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "data"));
    NNC_RETURN_IF_ERROR(requireInput(in, 1, "indices"));
    const Tensor& x = *in[0];
    const Tensor& it = *in[1];
    NNC_ASSIGN_OR_RETURN(size_t es, movableElementSize(x.dtype(), "GatherElements"));
    NNC_ASSIGN_OR_RETURN(int axis, normaliseAxis(axis_attr, x.rank()));
    if (it.rank() != x.rank())
      return shapeMismatch("GatherElements: indices rank differs from data rank");
    for (int d = 0; d < x.rank(); ++d)
      if (d != axis && it.dim(d) > x.dim(d))
        return shapeMismatch("GatherElements: indices " + shapeToString(it.shape()) +
                             " exceed data " + shapeToString(x.shape()));
    const int64_t dim = x.dim(axis);
    std::vector<int64_t> idx = readIndices(it);
    for (int64_t& k : idx) {
      if (k < -dim || k >= dim)
        return invalidModel("GatherElements: index " + std::to_string(k) + " out of range");
      if (k < 0) k += dim;
    }
    Tensor y(x.dtype(), it.shape());
    const int rank = x.rank();
    if (y.numel() > 0) {
      const std::vector<int64_t> xs = contiguousStrides(x.shape());
      const int64_t inner = it.dim(rank - 1), rows = y.numel() / inner;
      const char* xd = x.bytes().data();
      char* yd = y.mutableBytes().data();
      dispatchElementSize(es, [&]<typename T>() {
        const T* src = reinterpret_cast<const T*>(xd);
        T* dst = reinterpret_cast<T*>(yd);
        parallelFor(rows, ctx, inner, [&](int64_t r) {
          int64_t rem = r, off = 0;
          for (int d = rank - 2; d >= 0; --d) {
            const int64_t i = rem % it.dim(d);
            rem /= it.dim(d);
            if (d != axis) off += i * xs[d];
          }
          const int64_t* ir = idx.data() + r * inner;
          T* yr = dst + r * inner;
          if (axis == rank - 1) {
            for (int64_t j = 0; j < inner; ++j) yr[j] = src[off + ir[j]];
          } else {
            for (int64_t j = 0; j < inner; ++j) yr[j] = src[off + j + ir[j] * xs[axis]];
          }
        });
      });
    }
    out[0] = std::move(y);
    return Status::ok();
  });
}

// ---- Expand, Tile ----

Status expand(Inputs in, Outputs out, const RunContext& ctx) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "input"));
  NNC_RETURN_IF_ERROR(requireInput(in, 1, "shape"));
  const Tensor& x = *in[0];
  NNC_ASSIGN_OR_RETURN(size_t es, movableElementSize(x.dtype(), "Expand"));
  const Shape target = readIndices(*in[1]);
  NNC_ASSIGN_OR_RETURN(Shape os, broadcastShapes(x.shape(), target));
  Tensor y(x.dtype(), os);
  stridedCopy(x.bytes().data(), y.mutableBytes().data(), es, os, broadcastStrides(x.shape(), os), 0,
              ctx);
  out[0] = std::move(y);
  return Status::ok();
}

Status tile(Inputs in, Outputs out, const RunContext& ctx) {
  NNC_RETURN_IF_ERROR(requireInput(in, 0, "input"));
  NNC_RETURN_IF_ERROR(requireInput(in, 1, "repeats"));
  const Tensor& x = *in[0];
  NNC_ASSIGN_OR_RETURN(size_t es, movableElementSize(x.dtype(), "Tile"));
  const std::vector<int64_t> reps = readIndices(*in[1]);
  if (static_cast<int>(reps.size()) != x.rank())
    return invalidModel("Tile: repeats " + listToString(reps) + " do not match rank " +
                        std::to_string(x.rank()));
  // The output as [r0, d0, r1, d1, ...]: the source index ignores each r axis.
  const std::vector<int64_t> xs = contiguousStrides(x.shape());
  Shape os, view;
  std::vector<int64_t> strides;
  for (int d = 0; d < x.rank(); ++d) {
    if (reps[d] < 0) return invalidModel("Tile: negative repeat");
    os.push_back(x.dim(d) * reps[d]);
    view.insert(view.end(), {reps[d], x.dim(d)});
    strides.insert(strides.end(), {0, xs[d]});
  }
  Tensor y(x.dtype(), os);
  stridedCopy(x.bytes().data(), y.mutableBytes().data(), es, view, strides, 0, ctx);
  out[0] = std::move(y);
  return Status::ok();
}

// ---- ConstantOfShape, Range, EyeLike, Trilu ----

StatusOr<KernelFn> makeConstantOfShape(const KernelBuildContext& b) {
  Tensor value(DType::kFloat32, {1});
  if (const Attribute* a = b.node.findAttribute("value")) {
    if (a->kind != AttrKind::kTensor || a->tensors.size() != 1 || a->tensors[0].numel() != 1)
      return invalidModel("ConstantOfShape: value must be a one-element tensor");
    value = a->tensors[0];
  }
  NNC_ASSIGN_OR_RETURN(size_t es, movableElementSize(value.dtype(), "ConstantOfShape"));
  return KernelFn([=](Inputs in, Outputs out, const RunContext&) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "input"));
    const Shape shape = readIndices(*in[0]);
    if (shapeNumel(shape) < 0)
      return invalidModel("ConstantOfShape: bad shape " + listToString(shape));
    Tensor y(value.dtype(), shape);
    fillElements(y.mutableBytes().data(), y.numel(), value.bytes().data(), es);
    out[0] = std::move(y);
    return Status::ok();
  });
}

template <typename T>
Status rangeT(const Tensor& s, const Tensor& l, const Tensor& d, Tensor& y) {
  const T start = s.data<T>()[0], limit = l.data<T>()[0], delta = d.data<T>()[0];
  if (delta == T(0)) return invalidModel("Range: delta is 0");
  // As ONNX Runtime counts: limit - start in T for floats (integers in double, which cannot
  // overflow), then divided in double.
  const double span =
      std::is_floating_point_v<T> ? double(limit - start) : double(limit) - double(start);
  const double n = std::ceil(span / double(delta));
  if (n > double(int64_t{1} << 40))  // also an infinite span: no tensor that large
    return invalidModel("Range: " + std::to_string(n) + " elements");
  const int64_t count = n > 0 ? static_cast<int64_t>(n) : 0;
  y = Tensor(s.dtype(), {count});
  T* yd = y.mutableData<T>().data();
  for (int64_t i = 0; i < count; ++i) yd[i] = static_cast<T>(start + static_cast<T>(i) * delta);
  return Status::ok();
}

Status range(Inputs in, Outputs out, const RunContext&) {
  for (size_t i = 0; i < 3; ++i) NNC_RETURN_IF_ERROR(requireInput(in, i, "Range operand"));
  const Tensor &s = *in[0], &l = *in[1], &d = *in[2];
  if (l.dtype() != s.dtype() || d.dtype() != s.dtype())
    return invalidModel("Range: operands differ in dtype");
  if (s.numel() != 1 || l.numel() != 1 || d.numel() != 1)
    return invalidModel("Range: operands must be scalars");
  switch (s.dtype()) {
    case DType::kFloat32:
      return rangeT<float>(s, l, d, out[0]);
    case DType::kFloat64:
      return rangeT<double>(s, l, d, out[0]);
    case DType::kInt16:
      return rangeT<int16_t>(s, l, d, out[0]);
    case DType::kInt32:
      return rangeT<int32_t>(s, l, d, out[0]);
    case DType::kInt64:
      return rangeT<int64_t>(s, l, d, out[0]);
    default:
      return unsupported(std::string("Range on ") + dtypeName(s.dtype()));
  }
}

StatusOr<KernelFn> makeEyeLike(const KernelBuildContext& b) {
  const int64_t dtype_attr = b.node.intAttr("dtype", 0);
  const int64_t k = b.node.intAttr("k", 0);
  std::optional<DType> dtype;
  if (dtype_attr != 0) {
    dtype = dtypeFromOnnx(static_cast<int32_t>(dtype_attr));
    if (!dtype) return invalidModel("EyeLike: unknown dtype " + std::to_string(dtype_attr));
  }
  return KernelFn([=](Inputs in, Outputs out, const RunContext&) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "input"));
    const Tensor& x = *in[0];
    if (x.rank() != 2) return shapeMismatch("EyeLike input must be 2-D");
    const DType dt = dtype ? *dtype : x.dtype();
    NNC_ASSIGN_OR_RETURN(size_t es, movableElementSize(dt, "EyeLike"));
    NNC_ASSIGN_OR_RETURN(std::string one, scalarBytes(dt, 1.0));
    Tensor y(dt, x.shape());
    char* yd = y.mutableBytes().data();
    const int64_t rows = x.dim(0), cols = x.dim(1);
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t j = i + k;
      if (j >= 0 && j < cols) std::memcpy(yd + (i * cols + j) * es, one.data(), es);
    }
    out[0] = std::move(y);
    return Status::ok();
  });
}

StatusOr<KernelFn> makeTrilu(const KernelBuildContext& b) {
  const bool upper = b.node.intAttr("upper", 1) != 0;
  return KernelFn([=](Inputs in, Outputs out, const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "input"));
    const Tensor& x = *in[0];
    NNC_ASSIGN_OR_RETURN(size_t es, movableElementSize(x.dtype(), "Trilu"));
    if (x.rank() < 2) return shapeMismatch("Trilu input must be at least 2-D");
    int64_t k = 0;
    if (const Tensor* kt = optionalInput(in, 1)) {
      if (kt->numel() != 1) return invalidModel("Trilu: k must be a scalar");
      k = readIndices(*kt)[0];
    }
    Tensor y = x;
    const int64_t rows = x.dim(x.rank() - 2), cols = x.dim(x.rank() - 1);
    const int64_t mats = rows > 0 && cols > 0 ? x.numel() / (rows * cols) : 0;
    char* yd = y.mutableBytes().data();
    parallelFor(mats * rows, ctx, cols, [&](int64_t r) {
      const int64_t i = r % rows;
      char* row = yd + r * cols * es;
      // Keep j >= i + k (upper) or j <= i + k (lower); zero the rest.
      const int64_t edge = std::clamp<int64_t>(upper ? i + k : i + k + 1, 0, cols);
      if (upper)
        std::memset(row, 0, edge * es);
      else
        std::memset(row + edge * es, 0, (cols - edge) * es);
    });
    out[0] = std::move(y);
    return Status::ok();
  });
}

// ---- Transpose, DepthToSpace, SpaceToDepth ----

StatusOr<KernelFn> makeTranspose(const KernelBuildContext& b) {
  const std::vector<int64_t> perm_attr = b.node.intsAttr("perm");
  return KernelFn([=](Inputs in, Outputs out, const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "data"));
    const Tensor& x = *in[0];
    NNC_ASSIGN_OR_RETURN(size_t es, movableElementSize(x.dtype(), "Transpose"));
    const int rank = x.rank();
    std::vector<int64_t> perm = perm_attr;
    if (perm.empty())
      for (int a = rank - 1; a >= 0; --a) perm.push_back(a);
    if (static_cast<int>(perm.size()) != rank)
      return invalidModel("Transpose: perm " + listToString(perm) + " for rank " +
                          std::to_string(rank));
    NNC_ASSIGN_OR_RETURN(std::vector<int> p, normaliseAxes(perm, rank, "Transpose"));
    const std::vector<int64_t> xs = contiguousStrides(x.shape());
    Shape os(rank);
    std::vector<int64_t> strides(rank);
    for (int a = 0; a < rank; ++a) {
      os[a] = x.dim(p[a]);
      strides[a] = xs[p[a]];
    }
    Tensor y(x.dtype(), os);
    stridedCopy(x.bytes().data(), y.mutableBytes().data(), es, os, strides, 0, ctx);
    out[0] = std::move(y);
    return Status::ok();
  });
}

// Copies x viewed as `view` (contiguous) and permuted by `perm` into a tensor of `out_shape`.
StatusOr<Tensor> permutedCopy(const Tensor& x, size_t es, const Shape& view,
                              const std::vector<int>& perm, const Shape& out_shape,
                              const RunContext& ctx) {
  const std::vector<int64_t> vs = contiguousStrides(view);
  Shape ps(perm.size());
  std::vector<int64_t> strides(perm.size());
  for (size_t a = 0; a < perm.size(); ++a) {
    ps[a] = view[perm[a]];
    strides[a] = vs[perm[a]];
  }
  Tensor y(x.dtype(), out_shape);
  stridedCopy(x.bytes().data(), y.mutableBytes().data(), es, ps, strides, 0, ctx);
  return y;
}

StatusOr<KernelFn> makeDepthToSpace(const KernelBuildContext& b) {
  const int64_t bs = b.node.intAttr("blocksize", 0);
  const std::string mode = b.node.stringAttr("mode", "DCR");
  if (bs <= 0) return invalidModel("DepthToSpace: blocksize must be positive");
  if (mode != "DCR" && mode != "CRD") return invalidModel("DepthToSpace: mode '" + mode + "'");
  return KernelFn([=](Inputs in, Outputs out, const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "input"));
    const Tensor& x = *in[0];
    NNC_ASSIGN_OR_RETURN(size_t es, movableElementSize(x.dtype(), "DepthToSpace"));
    if (x.rank() != 4) return shapeMismatch("DepthToSpace input must be 4-D");
    const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3);
    if (c % (bs * bs)) return shapeMismatch("DepthToSpace: channels not divisible by blocksize^2");
    const int64_t co = c / (bs * bs);
    const Shape os{n, co, h * bs, w * bs};
    if (mode == "DCR") {
      NNC_ASSIGN_OR_RETURN(
          out[0], (permutedCopy(x, es, {n, bs, bs, co, h, w}, {0, 3, 4, 1, 5, 2}, os, ctx)));
    } else {
      NNC_ASSIGN_OR_RETURN(
          out[0], (permutedCopy(x, es, {n, co, bs, bs, h, w}, {0, 1, 4, 2, 5, 3}, os, ctx)));
    }
    return Status::ok();
  });
}

StatusOr<KernelFn> makeSpaceToDepth(const KernelBuildContext& b) {
  const int64_t bs = b.node.intAttr("blocksize", 0);
  if (bs <= 0) return invalidModel("SpaceToDepth: blocksize must be positive");
  return KernelFn([=](Inputs in, Outputs out, const RunContext& ctx) -> Status {
    NNC_RETURN_IF_ERROR(requireInput(in, 0, "input"));
    const Tensor& x = *in[0];
    NNC_ASSIGN_OR_RETURN(size_t es, movableElementSize(x.dtype(), "SpaceToDepth"));
    if (x.rank() != 4) return shapeMismatch("SpaceToDepth input must be 4-D");
    const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3);
    if (h % bs || w % bs)
      return shapeMismatch("SpaceToDepth: spatial size not divisible by blocksize");
    NNC_ASSIGN_OR_RETURN(out[0],
                         (permutedCopy(x, es, {n, c, h / bs, bs, w / bs, bs}, {0, 3, 5, 1, 2, 4},
                                       {n, c * bs * bs, h / bs, w / bs}, ctx)));
    return Status::ok();
  });
}

template <typename F>
std::function<StatusOr<KernelFn>(const KernelBuildContext&)> stateless(F f) {
  return [f](const KernelBuildContext&) -> StatusOr<KernelFn> { return KernelFn(f); };
}

}  // namespace

void registerTensorKernels(KernelRegistry& r) {
  r.addFunction("Concat", makeConcat);
  r.addFunction("Split", makeSplit);
  r.addFunction("Slice", makeSlice);
  r.addFunction("Pad", makePad);
  r.addFunction("Reshape", makeReshape);
  r.addFunction("Transpose", makeTranspose);
  r.addFunction("Squeeze", makeSqueeze);
  r.addFunction("Unsqueeze", makeUnsqueeze);
  r.addFunction("Flatten", makeFlatten);
  r.addFunction("Identity", stateless(identity));
  r.addFunction("Dropout", makeDropout);
  r.addFunction("Shape", makeShape);
  r.addFunction("Size", stateless(sizeOp));
  r.addFunction("Gather", makeGather);
  r.addFunction("GatherElements", makeGatherElements);
  r.addFunction("Expand", stateless(expand));
  r.addFunction("Tile", stateless(tile));
  r.addFunction("ConstantOfShape", makeConstantOfShape);
  r.addFunction("Range", [](const KernelBuildContext& b) -> StatusOr<KernelFn> {
    NNC_RETURN_IF_ERROR(requireOpVersion("Range", b.opset, 11));
    return stateless(range)(b);
  });
  r.addFunction("DepthToSpace", makeDepthToSpace);
  r.addFunction("SpaceToDepth", makeSpaceToDepth);
  r.addFunction("EyeLike", makeEyeLike);
  r.addFunction("Trilu", makeTrilu);
}

}  // namespace nnc::exec
