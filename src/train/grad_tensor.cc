// Backward of data-movement ops and Softmax.
// - Reshape-like ops (Identity, Dropout, Flatten, Reshape, Squeeze, Unsqueeze): dX = dY reshaped.
// - Index tracing (Slice, Pad, Transpose, Resize nearest, Expand, Tile, Gather, DepthToSpace,
//   SpaceToDepth): the forward kernel is run once more on an image of source indices (float i+1,
//   exact below 2^24; two passes above), so every output element names the input element it
//   copies (0: padding); dX is dY scatter-added through that map. One rule for every op that
//   only moves elements, and it matches the forward kernel by construction.
// - Concat / Split: slices of dY / concatenation of the dY.
// - Softmax: dX = y * (dY - sum(dY * y)); LogSoftmax: dX = dY - exp(y) * sum(dY).

#include <algorithm>
#include <cmath>
#include <vector>

#include "backward.h"
#include "kernel_util.h"

namespace nnc::train {
namespace {

Status reshapeBackward(const BackwardContext& c, std::span<Tensor> g) {
  g[0] = reshaped(takeOutputGrad(c, 0), c.input_shapes[0]);
  return Status::ok();
}

// Runs the forward kernel on `index` in place of input 0; returns output 0.
StatusOr<Tensor> runOnIndex(const BackwardContext& c, const Tensor& index) {
  std::vector<const Tensor*> in(c.inputs.begin(), c.inputs.end());
  in[0] = &index;
  Tensor zero = Tensor::fromVector<float>({}, {0.f});
  if (c.node.isOp("Pad") && in.size() > 2 && in[2]) in[2] = &zero;  // padding reads as 0
  for (size_t i = 1; i < in.size(); ++i)
    if (!in[i] && c.node.input(i)) return internalError("input " + std::to_string(i) + " not kept");
  std::vector<Tensor> out(c.outputs.size());
  exec::RunContext ctx = c.ctx;
  ctx.pool = nullptr;
  NNC_RETURN_IF_ERROR(c.forward_kernel->run(in, out, ctx));
  return std::move(out[0]);
}

// For every output element, the flat index of the input element it copies (-1: none).
StatusOr<std::vector<int64_t>> traceSources(const BackwardContext& c) {
  const Shape& xs = c.input_shapes[0];
  const int64_t n = shapeNumel(xs);
  constexpr int64_t kExact = int64_t{1} << 24, kSplit = 4096;
  const bool two_pass = n + 1 >= kExact;
  Tensor index(DType::kFloat32, xs);
  float* d = fdata(index);
  for (int64_t i = 0; i < n; ++i) d[i] = static_cast<float>(two_pass ? i % kSplit + 1 : i + 1);
  NNC_ASSIGN_OR_RETURN(Tensor lo, runOnIndex(c, index));
  std::vector<int64_t> src(static_cast<size_t>(lo.numel()));
  const float* l = fdata(lo);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<int64_t>(l[i]) - 1;
  if (two_pass) {
    for (int64_t i = 0; i < n; ++i) d[i] = static_cast<float>(i / kSplit + 1);
    NNC_ASSIGN_OR_RETURN(Tensor hi, runOnIndex(c, index));
    const float* h = fdata(hi);
    for (size_t i = 0; i < src.size(); ++i)
      src[i] = src[i] < 0 ? -1 : (static_cast<int64_t>(h[i]) - 1) * kSplit + src[i];
  }
  return src;
}

Status tracedBackward(const BackwardContext& c, std::span<Tensor> g) {
  NNC_ASSIGN_OR_RETURN(std::vector<int64_t> src, traceSources(c));
  const Tensor& dy = *c.output_grads[0];
  if (static_cast<int64_t>(src.size()) != dy.numel())
    return internalError("traced map size differs from the output gradient");
  Tensor dx = zeros(c.input_shapes[0], &c.ctx);
  float* d = fdata(dx);
  const float* gy = fdata(dy);
  for (size_t i = 0; i < src.size(); ++i)
    if (src[i] >= 0) d[src[i]] += gy[i];
  g[0] = std::move(dx);
  return Status::ok();
}

std::string padCheck(const Node& n, int64_t opset) {
  if (opset < 11 && n.floatAttr("value", 0.f) != 0.f) return "nonzero pad value before opset 11";
  return "";
}

std::string resizeCheck(const Node& n, int64_t) {
  const std::string mode = n.stringAttr("mode", "nearest");
  return mode == "nearest" ? "" : "mode " + mode + " (only nearest has a backward)";
}

// (outer, axis length, inner) of `shape` around `axis`.
void splitAround(const Shape& shape, int axis, int64_t& outer, int64_t& inner) {
  outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= shape[d];
  for (size_t d = axis + 1; d < shape.size(); ++d) inner *= shape[d];
}

Status concatBackward(const BackwardContext& c, std::span<Tensor> g) {
  const Tensor& dy = *c.output_grads[0];
  NNC_ASSIGN_OR_RETURN(int axis, exec::normaliseAxis(c.node.intAttr("axis", 0), dy.rank()));
  int64_t outer, inner;
  splitAround(dy.shape(), axis, outer, inner);
  const int64_t total = dy.dim(axis);
  int64_t offset = 0;
  for (size_t i = 0; i < c.input_shapes.size(); ++i) {
    const Shape& xs = c.input_shapes[i];
    const int64_t len = xs.empty() ? 0 : xs[axis];
    if (c.needs_grad[i]) {
      Tensor dx = c.ctx.newTensor(DType::kFloat32, xs);  // every element is copied
      for (int64_t o = 0; o < outer; ++o)
        std::copy_n(fdata(dy) + (o * total + offset) * inner, len * inner,
                    fdata(dx) + o * len * inner);
      g[i] = std::move(dx);
    }
    offset += len;
  }
  return Status::ok();
}

// Split sizes along the axis: the `split` attribute or input, else equal parts.
std::vector<int64_t> splitSizes(const BackwardContext& c, int64_t dim, size_t parts) {
  std::vector<int64_t> sizes = c.node.intsAttr("split");
  if (sizes.empty() && c.inputs.size() > 1 && c.inputs[1]) sizes = c.inputs[1]->toInt64Vector();
  if (!sizes.empty()) return sizes;
  const int64_t chunk = (dim + static_cast<int64_t>(parts) - 1) / static_cast<int64_t>(parts);
  for (size_t i = 0; i < parts; ++i)
    sizes.push_back(std::clamp<int64_t>(dim - chunk * static_cast<int64_t>(i), 0, chunk));
  return sizes;
}

Status splitBackward(const BackwardContext& c, std::span<Tensor> g) {
  const Shape& xs = c.input_shapes[0];
  NNC_ASSIGN_OR_RETURN(int axis,
                       exec::normaliseAxis(c.node.intAttr("axis", 0), static_cast<int>(xs.size())));
  int64_t outer, inner;
  splitAround(xs, axis, outer, inner);
  const std::vector<int64_t> sizes = splitSizes(c, xs[axis], c.output_grads.size());
  if (sizes.size() != c.output_grads.size()) return internalError("Split sizes");
  Tensor dx = zeros(xs, &c.ctx);
  int64_t offset = 0;
  for (size_t o = 0; o < sizes.size(); ++o) {
    if (const Tensor* dy = c.output_grads[o])
      for (int64_t b = 0; b < outer; ++b)
        std::copy_n(fdata(*dy) + b * sizes[o] * inner, sizes[o] * inner,
                    fdata(dx) + (b * xs[axis] + offset) * inner);
    offset += sizes[o];
  }
  g[0] = std::move(dx);
  return Status::ok();
}

template <bool kLog>
Status softmaxBackward(const BackwardContext& c, std::span<Tensor> g) {
  const Tensor& y = *c.outputs[0];
  const Tensor& dy = *c.output_grads[0];
  const int rank = y.rank();
  NNC_ASSIGN_OR_RETURN(int axis,
                       exec::normaliseAxis(c.node.intAttr("axis", c.opset < 13 ? 1 : -1), rank));
  int64_t outer, inner, len;
  if (c.opset < 13) {  // coerced to 2-D: [prod(:axis), prod(axis:)]
    outer = 1, len = 1, inner = 1;
    for (int d = 0; d < rank; ++d) (d < axis ? outer : len) *= y.dim(d);
  } else {
    splitAround(y.shape(), axis, outer, inner);
    len = y.dim(axis);
  }
  Tensor dx = c.ctx.newTensor(DType::kFloat32, y.shape());  // every element is written
  const float *yv = fdata(y), *gv = fdata(dy);
  float* d = fdata(dx);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t base = o * len * inner + i;
      double dot = 0;
      for (int64_t k = 0; k < len; ++k)
        dot += kLog ? gv[base + k * inner] : gv[base + k * inner] * yv[base + k * inner];
      for (int64_t k = 0; k < len; ++k) {
        const int64_t at = base + k * inner;
        d[at] = kLog ? static_cast<float>(gv[at] - std::exp(yv[at]) * dot)
                     : static_cast<float>(yv[at] * (gv[at] - dot));
      }
    }
  g[0] = std::move(dx);
  return Status::ok();
}

}  // namespace

void registerTensorBackward(BackwardRegistry& r) {
  for (const char* op : {"Identity", "Dropout", "Flatten", "Reshape", "Squeeze", "Unsqueeze"})
    r.add(op, {reshapeBackward, 0, 0});
  constexpr uint32_t kAllButData = ~uint32_t{1};  // shape/index inputs for the re-run
  for (const char* op :
       {"Slice", "Transpose", "Expand", "Tile", "Gather", "DepthToSpace", "SpaceToDepth"})
    r.add(op, {tracedBackward, kAllButData, 0});
  r.add("Pad", {tracedBackward, kAllButData, 0, padCheck});
  r.add("Resize", {tracedBackward, kAllButData, 0, resizeCheck});
  r.add("Upsample", {tracedBackward, kAllButData, 0, resizeCheck});
  r.add("Concat", {concatBackward, 0, 0});
  r.add("Split", {splitBackward, 0b10, 0});
  r.add("Softmax", {softmaxBackward<false>, 0, 1});
  r.add("LogSoftmax", {softmaxBackward<true>, 0, 1});
}

}  // namespace nnc::train
